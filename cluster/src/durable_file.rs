//! Creating a member's small state files so that they exist whole or not at all.
//!
//! A file is written under a temporary name, synced, renamed into place and its directory
//! synced: a crash leaves either no file (or a stray temporary one, replaced next time) or the
//! whole file, never a short one, and a file once created does not vanish in a later crash.
//! Used by the member's node-state file and recording log, on the thread that owns them.

use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::path::Path;

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
