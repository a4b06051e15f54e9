//! Starting a file's writeback early, without waiting for it.
//!
//! A writer that syncs a large file at the end (the archive at the end of each segment) waits
//! for every dirty page at once: the kernel had no reason to write them earlier. Asking it to
//! start writing each range as soon as it is complete (`sync_file_range` with
//! `SYNC_FILE_RANGE_WRITE`: start, do not wait, no metadata) spreads the disk's work over the
//! writing and leaves the final sync little to wait for. It makes nothing durable by itself.

use std::fs::File;
use std::io;

/// Asks the kernel to start writing `length` bytes of `file` at `offset` back to its device,
/// and returns at once. A no-op where the call does not exist.
pub fn start_writeback(file: &File, offset: u64, length: u64) -> io::Result<()> {
    #[cfg(target_os = "linux")]
    {
        use std::os::fd::AsRawFd;
        let offset = i64::try_from(offset).map_err(|_| io::ErrorKind::InvalidInput)?;
        let length = i64::try_from(length).map_err(|_| io::ErrorKind::InvalidInput)?;
        // SAFETY: the descriptor is open for as long as `file` is borrowed; the call reads no
        // memory of ours and only schedules I/O on that file.
        let result = unsafe {
            libc::sync_file_range(
                file.as_raw_fd(),
                offset,
                length,
                libc::SYNC_FILE_RANGE_WRITE,
            )
        };
        if result != 0 {
            return Err(io::Error::last_os_error());
        }
    }
    #[cfg(not(target_os = "linux"))]
    let _ = (file, offset, length);
    Ok(())
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;
    use std::os::unix::fs::FileExt;

    #[test]
    fn writeback_of_written_bytes_starts_and_a_bad_range_is_an_error() {
        let path = std::env::temp_dir().join(format!("tern-writeback-{}", std::process::id()));
        let file = File::options()
            .create(true)
            .truncate(true)
            .read(true)
            .write(true)
            .open(&path)
            .unwrap();
        file.write_all_at(&[7u8; 8192], 0).unwrap();
        start_writeback(&file, 0, 8192).unwrap();
        assert!(start_writeback(&file, u64::MAX, 1).is_err());
        drop(file);
        std::fs::remove_file(path).unwrap();
    }
}
