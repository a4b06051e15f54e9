//! Files mapped into memory and shared between processes: the CnC file and log buffers.
//!
//! A mapping is created with its final length (never grown while mapped), permissions 0600, its
//! pages populated when it is mapped (a page fault on the data path costs microseconds), and
//! handed out as an [`AtomicBuffer`] whose lifetime is tied to the mapping, so no view outlives
//! the memory behind it.

use std::fs::{File, OpenOptions};
use std::io;
#[cfg(unix)]
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use memmap2::MmapMut;

#[cfg(not(loom))]
use crate::concurrent::atomic_buffer::AtomicBuffer;

/// A file mapped read-write and shared.
#[derive(Debug)]
pub struct MappedFile {
    map: MmapMut,
    path: PathBuf,
}

impl MappedFile {
    /// Creates `path` (it must not exist) with `length` zero bytes (a multiple of 8) and maps it.
    pub fn create(path: &Path, length: usize) -> io::Result<Self> {
        if length == 0 || !length.is_multiple_of(8) {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("a mapped file's length must be a positive multiple of 8, not {length}"),
            ));
        }
        let mut options = OpenOptions::new();
        options.read(true).write(true).create_new(true);
        #[cfg(unix)]
        options.mode(0o600);
        let file = options.open(path)?;
        file.set_len(u64::try_from(length).expect("usize fits u64"))?;
        Self::map(file, path)
    }

    /// Maps an existing file read-write.
    pub fn open(path: &Path) -> io::Result<Self> {
        let file = OpenOptions::new().read(true).write(true).open(path)?;
        Self::map(file, path)
    }

    fn map(file: File, path: &Path) -> io::Result<Self> {
        let length = file.metadata()?.len();
        if length == 0 || !length.is_multiple_of(8) {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!(
                    "{} is {length} bytes: not a tern shared-memory file",
                    path.display()
                ),
            ));
        }
        // SAFETY: the file is shared with other tern processes on purpose; every access to the
        // mapped bytes goes through AtomicBuffer's rules, and the file is never truncated while
        // mapped by tern (it is created at its final length). Pages are populated up front so
        // that no page fault lands in the middle of an offer or a poll.
        let map = unsafe { memmap2::MmapOptions::new().populate().map_mut(&file)? };
        Ok(Self {
            map,
            path: path.to_path_buf(),
        })
    }

    /// The file's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Bytes mapped.
    pub fn len(&self) -> usize {
        self.map.len()
    }

    /// Whether nothing is mapped (never, for a mapping that was created or opened).
    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }

    /// Writes the mapping's dirty pages to the file and waits for them (msync): what was stored
    /// before this call survives a machine crash, not only a process crash.
    pub fn flush(&self) -> io::Result<()> {
        self.map.flush()
    }

    /// The mapped memory as a shared buffer.
    #[cfg(not(loom))]
    pub fn buffer(&self) -> AtomicBuffer<'_> {
        // SAFETY: a mapping is page-aligned, valid for its whole length while `self` lives (the
        // returned buffer borrows `self`), and shared only under AtomicBuffer's rules.
        unsafe { AtomicBuffer::from_raw_parts(self.map.as_ptr().cast_mut(), self.map.len()) }
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;

    #[test]
    fn two_mappings_of_one_file_share_memory() {
        let dir = std::env::temp_dir().join(format!("tern-mapped-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("shared.dat");
        let _ = std::fs::remove_file(&path);
        let writer = MappedFile::create(&path, 4096).unwrap();
        let reader = MappedFile::open(&path).unwrap();
        writer.buffer().put_i64_ordered(64, 42);
        assert_eq!(reader.buffer().get_i64_volatile(64), 42);
        assert!(
            MappedFile::create(&path, 4096).is_err(),
            "never clobbers an existing file"
        );
        assert!(MappedFile::create(&dir.join("odd.dat"), 12).is_err());
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&path).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        drop((writer, reader));
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
