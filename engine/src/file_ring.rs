//! File writes through io_uring: the archive's recorder may write its blocks this way
//! (`file_io = io_uring`) instead of with `pwrite`.
//!
//! A write is one `IORING_OP_WRITE` request submitted and waited for with one
//! `io_uring_enter`; a short write is continued with another request until the whole buffer is
//! written, as `write_all_at` does. The call returns only once the kernel has completed every
//! request it made, whatever `io_uring_enter` says meanwhile (it retries): the requests point at
//! the caller's buffer, which is borrowed for no longer than the call. Owned by one thread.

use std::fs::File;
use std::io;
use std::os::fd::AsRawFd;

use io_uring::{IoUring, opcode, types};

/// Submission entries: one write is in flight at a time.
const RING_ENTRIES: u32 = 4;
/// How long a write pauses before retrying an `io_uring_enter` that failed while its request
/// is in flight.
const RETRY_PAUSE: std::time::Duration = std::time::Duration::from_micros(50);

/// A ring for writing files.
pub struct FileRing {
    ring: IoUring,
}

impl std::fmt::Debug for FileRing {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FileRing").finish_non_exhaustive()
    }
}

impl FileRing {
    /// A ring; fails where the kernel refuses io_uring (too old, or disabled).
    pub fn new() -> io::Result<Self> {
        Ok(Self {
            ring: IoUring::new(RING_ENTRIES)?,
        })
    }

    /// Writes all of `buf` at `offset` of `file`.
    pub fn write_all_at(&mut self, file: &File, buf: &[u8], offset: u64) -> io::Result<()> {
        let mut written = 0usize;
        while written < buf.len() {
            let rest = &buf[written..];
            let length = u32::try_from(rest.len()).unwrap_or(u32::MAX);
            let at = offset + u64::try_from(written).map_err(|_| io::ErrorKind::InvalidInput)?;
            let entry = opcode::Write::new(types::Fd(file.as_raw_fd()), rest.as_ptr(), length)
                .offset(at)
                .build()
                .user_data(1);
            // SAFETY: the entry points at `rest`, borrowed from the caller until this call
            // returns, and `reap` returns only once the request has completed: the kernel is
            // done reading the buffer before the borrow ends.
            if unsafe { self.ring.submission().push(&entry) }.is_err() {
                return Err(io::Error::other("the io_uring submission queue is full"));
            }
            let result = self.reap();
            let count =
                usize::try_from(result).map_err(|_| io::Error::from_raw_os_error(-result))?;
            if count == 0 {
                return Err(io::ErrorKind::WriteZero.into());
            }
            written += count;
        }
        Ok(())
    }

    /// Submits and waits for the one request in flight; returns its result. Retries an
    /// `io_uring_enter` that fails until the completion comes: the request points at the
    /// caller's buffer, so this never returns while the kernel may still read it.
    fn reap(&mut self) -> i32 {
        loop {
            if let Some(completion) = self.ring.completion().next() {
                return completion.result();
            }
            if let Err(error) = self.ring.submit_and_wait(1)
                && error.kind() != io::ErrorKind::Interrupted
            {
                std::thread::sleep(RETRY_PAUSE);
            }
        }
    }
}

/// Whether io_uring can write files here.
pub fn probe() -> io::Result<()> {
    FileRing::new().map(|_| ())
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;
    use std::os::unix::fs::FileExt;

    #[test]
    fn writes_land_where_asked_and_a_bad_descriptor_is_an_error() {
        let Ok(mut ring) = FileRing::new() else {
            assert!(
                std::env::var_os("TERN_REQUIRE_IO_URING").is_none(),
                "io_uring is required here"
            );
            return;
        };
        let path = std::env::temp_dir().join(format!("tern-file-ring-{}", std::process::id()));
        let file = File::options()
            .create(true)
            .truncate(true)
            .read(true)
            .write(true)
            .open(&path)
            .unwrap();
        let block: Vec<u8> = (0..100_000u32).map(|at| (at % 251) as u8).collect();
        ring.write_all_at(&file, &block, 4096).unwrap();
        let mut back = vec![0u8; block.len()];
        file.read_exact_at(&mut back, 4096).unwrap();
        assert_eq!(back, block);
        let read_only = File::open(&path).unwrap();
        assert!(ring.write_all_at(&read_only, &block[..10], 0).is_err());
        std::fs::remove_file(path).unwrap();
    }
}
