//! Creating a member's small state files so that they exist whole or not at all.
//!
//! A file is written under a temporary name, synced, renamed into place and its directory
//! synced: a crash leaves either no file (or a stray temporary one, replaced next time) or the
//! whole file, never a short one, and a file once created does not vanish in a later crash.
//! Used by the member's node-state file and recording log, on the thread that owns them, and
//! so is [`OwnerError`]: whose file a state file is, checked before anything else in it is
//! trusted.

use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use tern_codec::SemanticVersion;

/// A member's state file that is not this member's, or not of a version this build reads.
#[derive(Debug, thiserror::Error)]
pub enum OwnerError {
    /// The file belongs to another member.
    #[error("{path} belongs to member {found}, not member {expected}")]
    OtherMember {
        /// The file.
        path: PathBuf,
        /// The member the file names.
        found: u32,
        /// The member opening it.
        expected: u32,
    },
    /// The file was written by a build of another major version.
    #[error("{path} is version {found}; this build reads {supported}")]
    Version {
        /// The file.
        path: PathBuf,
        /// The version found.
        found: SemanticVersion,
        /// The version this build writes.
        supported: SemanticVersion,
    },
}

/// Checks the version a state file's header names against the one this build writes.
pub(crate) fn check_version(
    path: &Path,
    found: SemanticVersion,
    supported: SemanticVersion,
) -> Result<(), OwnerError> {
    if found.is_compatible_with(supported) {
        return Ok(());
    }
    Err(OwnerError::Version {
        path: path.to_path_buf(),
        found,
        supported,
    })
}

/// Checks the member a state file's header names.
pub(crate) fn check_member(path: &Path, found: u32, expected: u32) -> Result<(), OwnerError> {
    if found == expected {
        return Ok(());
    }
    Err(OwnerError::OtherMember {
        path: path.to_path_buf(),
        found,
        expected,
    })
}

/// Creates `dir/name` holding `bytes`, whole or not at all; fails if it exists already.
pub(crate) fn create_whole(dir: &Path, name: &str, bytes: &[u8]) -> io::Result<()> {
    let path = dir.join(name);
    if path.exists() {
        return Err(io::Error::new(
            io::ErrorKind::AlreadyExists,
            format!("{} exists already", path.display()),
        ));
    }
    let temporary = dir.join(format!("{name}.new"));
    let mut file = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .open(&temporary)?;
    file.write_all(bytes)?;
    file.sync_all()?;
    drop(file);
    std::fs::rename(&temporary, &path)?;
    sync_dir(dir)
}

/// Syncs a directory, so that the names in it survive a machine crash.
pub(crate) fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

/// Opens an existing state file for reading and writing, with its length.
pub(crate) fn open_existing(path: &Path) -> io::Result<(File, u64)> {
    let file = OpenOptions::new().read(true).write(true).open(path)?;
    let length = file.metadata()?.len();
    Ok((file, length))
}
