//! The driver directory: where the CnC file and log buffers live, and who may use it.
//!
//! Default: `$TERN_DIR`, else `/dev/shm/tern-<user>` (memory-backed, so log buffers never touch a
//! disk), else `<temp dir>/tern-<user>` where `/dev/shm` does not exist. The directory is created
//! with mode 0700 and its files 0600: only the user who runs the driver can read its streams.
//! A directory that is a symbolic link or owned by another user is refused, since either would
//! let someone else read or redirect the streams.
//!
//! A driver refuses a directory in which a live driver runs (its process exists and it stamped
//! its heartbeat within the driver timeout), naming that driver's pid. A directory left by a
//! driver that died is stale: its files are removed and it is reused.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use crate::cnc::{CncError, CncFile};
use crate::concurrent::ring_buffer::ManyToOneRingBuffer;

/// The environment variable that names the driver directory.
pub const DIR_ENV: &str = "TERN_DIR";

/// Why a directory cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum DirectoryError {
    /// A live driver already uses it.
    #[error("a driver ({}) is already running in {dir}; stop it first or use another --dir",
        pid.map_or_else(|| "still starting".to_owned(), |pid| format!("pid {pid}")))]
    DriverActive {
        /// The directory.
        dir: PathBuf,
        /// The running driver's pid, unless it is still writing its CnC file.
        pid: Option<i64>,
    },
    /// It is a symbolic link.
    #[error("{0} is a symbolic link; refusing to use it as a driver directory")]
    Symlink(PathBuf),
    /// It belongs to another user.
    #[error("{dir} belongs to user {owner}, not to this user ({user}); refusing to use it")]
    ForeignOwner {
        /// The directory.
        dir: PathBuf,
        /// Its owner's uid.
        owner: u32,
        /// This process's effective uid.
        user: u32,
    },
    /// It exists and is not a directory.
    #[error("{0} exists and is not a directory")]
    NotADirectory(PathBuf),
    /// The file system said no.
    #[error("{path}: {source}")]
    Io {
        /// The path.
        path: PathBuf,
        /// Why.
        source: io::Error,
    },
}

fn io_error(path: &Path) -> impl FnOnce(io::Error) -> DirectoryError + '_ {
    move |source| DirectoryError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// The directory a driver or client uses when none is given.
pub fn default_directory() -> PathBuf {
    if let Some(dir) = std::env::var_os(DIR_ENV).filter(|dir| !dir.is_empty()) {
        return PathBuf::from(dir);
    }
    let user = std::env::var("USER").unwrap_or_else(|_| effective_uid().to_string());
    let shm = Path::new("/dev/shm");
    let base = if shm.is_dir() {
        shm.to_path_buf()
    } else {
        std::env::temp_dir()
    };
    base.join(format!("tern-{user}"))
}

#[cfg(unix)]
fn effective_uid() -> u32 {
    // SAFETY: geteuid has no preconditions and cannot fail.
    unsafe { libc::geteuid() }
}

#[cfg(not(unix))]
fn effective_uid() -> u32 {
    0
}

/// Whether a process with `pid` exists (it may belong to another user).
#[cfg(unix)]
pub fn process_exists(pid: i64) -> bool {
    let Ok(pid) = libc::pid_t::try_from(pid) else {
        return false;
    };
    if pid <= 0 {
        return false;
    }
    // SAFETY: signal 0 only checks that the process exists and may be signalled.
    let result = unsafe { libc::kill(pid, 0) };
    result == 0 || io::Error::last_os_error().raw_os_error() == Some(libc::EPERM)
}

/// Whether a process with `pid` exists.
#[cfg(not(unix))]
pub fn process_exists(_pid: i64) -> bool {
    true
}

/// Checks that `dir` is safe to use: a real directory, owned by this user.
pub fn check_directory(dir: &Path) -> Result<(), DirectoryError> {
    let metadata = fs::symlink_metadata(dir).map_err(io_error(dir))?;
    if metadata.file_type().is_symlink() {
        return Err(DirectoryError::Symlink(dir.to_path_buf()));
    }
    if !metadata.is_dir() {
        return Err(DirectoryError::NotADirectory(dir.to_path_buf()));
    }
    #[cfg(unix)]
    {
        use std::os::unix::fs::MetadataExt;
        let user = effective_uid();
        if metadata.uid() != user {
            return Err(DirectoryError::ForeignOwner {
                dir: dir.to_path_buf(),
                owner: metadata.uid(),
                user,
            });
        }
    }
    Ok(())
}

/// Whether the driver whose CnC file is in `dir` is alive at `now_ms`: its process exists and
/// it stamped its heartbeat within `driver_timeout_ms`. Returns `Some(Some(pid))` when alive,
/// `Some(None)` for a CnC file that cannot be read yet but was written within the timeout (a
/// driver still creating it), and `None` when nothing live is there.
pub fn live_driver(dir: &Path, now_ms: i64, driver_timeout_ms: i64) -> Option<Option<i64>> {
    let cnc = match CncFile::open(dir) {
        Ok(cnc) => cnc,
        Err(CncError::Missing { .. }) => return None,
        // Not readable yet (header half written, version not yet published) or written by
        // another version: alive if it was touched recently, since deleting the files of a
        // driver that is starting would be far worse than asking the user to retry.
        Err(_) => return recently_modified(dir, driver_timeout_ms).then_some(None),
    };
    let identity = cnc.identity();
    let ring = ManyToOneRingBuffer::new(cnc.sections().to_driver).ok()?;
    let heartbeat_ms = ring.consumer_heartbeat();
    let fresh = now_ms - heartbeat_ms.max(identity.start_timestamp_ms) <= driver_timeout_ms;
    (fresh && process_exists(identity.pid)).then_some(Some(identity.pid))
}

fn recently_modified(dir: &Path, timeout_ms: i64) -> bool {
    fs::metadata(dir.join(crate::cnc::CNC_FILE))
        .and_then(|metadata| metadata.modified())
        .ok()
        .and_then(|modified| modified.elapsed().ok())
        .is_some_and(|age| i64::try_from(age.as_millis()).unwrap_or(i64::MAX) <= timeout_ms)
}

/// Prepares `dir` for a new driver at `now_ms`: creates it (0700), or checks it and clears what a
/// dead driver left. Refuses a directory with a live driver.
pub fn prepare_for_driver(
    dir: &Path,
    now_ms: i64,
    driver_timeout_ms: i64,
) -> Result<(), DirectoryError> {
    match fs::symlink_metadata(dir) {
        Err(error) if error.kind() == io::ErrorKind::NotFound => {
            create_private(dir)?;
            return Ok(());
        }
        Err(error) => return Err(io_error(dir)(error)),
        Ok(_) => check_directory(dir)?,
    }
    if let Some(pid) = live_driver(dir, now_ms, driver_timeout_ms) {
        return Err(DirectoryError::DriverActive {
            dir: dir.to_path_buf(),
            pid,
        });
    }
    // Stale: a dead driver's files.
    for entry in fs::read_dir(dir).map_err(io_error(dir))? {
        let path = entry.map_err(io_error(dir))?.path();
        let removed = if path.is_dir() {
            fs::remove_dir_all(&path)
        } else {
            fs::remove_file(&path)
        };
        removed.map_err(io_error(&path))?;
    }
    set_private(dir)
}

fn create_private(dir: &Path) -> Result<(), DirectoryError> {
    let mut builder = fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::DirBuilderExt;
        builder.mode(0o700);
    }
    builder.create(dir).map_err(io_error(dir))?;
    set_private(dir)
}

fn set_private(dir: &Path) -> Result<(), DirectoryError> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        fs::set_permissions(dir, fs::Permissions::from_mode(0o700)).map_err(io_error(dir))?;
    }
    Ok(())
}

#[cfg(all(test, not(loom), unix))]
mod tests {
    use super::*;
    use crate::cnc::{CncLayout, DriverIdentity};

    fn scratch(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("tern-dir-test-{name}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        dir
    }

    fn layout() -> CncLayout {
        CncLayout {
            to_driver_capacity: 1024,
            to_clients_capacity: 1024,
            counters: 4,
            error_log_length: 1024,
        }
    }

    #[test]
    fn creates_private_directory() {
        use std::os::unix::fs::PermissionsExt;
        let dir = scratch("create").join("nested");
        prepare_for_driver(&dir, 0, 10_000).unwrap();
        assert_eq!(
            fs::metadata(&dir).unwrap().permissions().mode() & 0o777,
            0o700
        );
        fs::remove_dir_all(dir.parent().unwrap()).unwrap();
    }

    #[test]
    fn refuses_a_symlink() {
        let base = scratch("symlink");
        fs::create_dir_all(base.join("real")).unwrap();
        std::os::unix::fs::symlink(base.join("real"), base.join("link")).unwrap();
        assert!(matches!(
            prepare_for_driver(&base.join("link"), 0, 10_000),
            Err(DirectoryError::Symlink(_))
        ));
        fs::remove_dir_all(&base).unwrap();
    }

    #[test]
    fn refuses_a_live_driver_and_clears_a_dead_one() {
        let dir = scratch("live");
        prepare_for_driver(&dir, 0, 10_000).unwrap();
        let identity = DriverIdentity {
            pid: i64::from(std::process::id()),
            start_timestamp_ms: 1_000,
            client_liveness_timeout_ns: 0,
        };
        let cnc = CncFile::create(&dir, layout(), identity).unwrap();
        cnc.publish();
        let ring = ManyToOneRingBuffer::new(cnc.sections().to_driver).unwrap();
        ring.set_consumer_heartbeat(5_000);
        let error = prepare_for_driver(&dir, 6_000, 10_000).unwrap_err();
        assert!(
            error
                .to_string()
                .contains(&format!("pid {}", std::process::id())),
            "{error}"
        );
        // A CnC file still being written (no magic yet) counts as a driver starting.
        let starting = dir.join("starting");
        fs::create_dir_all(&starting).unwrap();
        fs::write(starting.join(crate::cnc::CNC_FILE), [0u8; 64]).unwrap();
        let error = prepare_for_driver(&starting, 6_000, 10_000).unwrap_err();
        assert!(error.to_string().contains("still starting"), "{error}");
        fs::remove_dir_all(&starting).unwrap();
        // The heartbeat is older than the timeout: stale, cleared and reused.
        prepare_for_driver(&dir, 20_000, 10_000).unwrap();
        assert!(!dir.join(crate::cnc::CNC_FILE).exists());
        drop(cnc);

        // A dead process with a fresh heartbeat is stale too.
        let dead = DriverIdentity {
            pid: i64::from(i32::MAX - 1),
            ..identity
        };
        let cnc = CncFile::create(&dir, layout(), dead).unwrap();
        cnc.publish();
        ManyToOneRingBuffer::new(cnc.sections().to_driver)
            .unwrap()
            .set_consumer_heartbeat(5_000);
        prepare_for_driver(&dir, 6_000, 10_000).unwrap();
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn default_directory_honours_the_environment_variable() {
        // Only read here; set by the harness of nothing else in this process.
        let dir = default_directory();
        assert!(dir.to_string_lossy().contains("tern"));
    }
}
