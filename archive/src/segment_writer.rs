//! Writing a recording's frames into its segment files, in order, with `pwrite`.
//!
//! The recorder hands [`SegmentWriter::write`] blocks of whole frames exactly as the image's
//! term holds them. With checksums on, a block is copied once into the writer's buffer (sized
//! at start-up to the largest block) and each frame's checksum stamped into its reserved value
//! there; with checksums off the block is written from where it lies. A block never crosses a
//! term, so it never crosses a segment. [`SegmentWriter::commit`] makes what was written as
//! durable as the [`Durability`] asks and returns the position the recording may now claim.
//!
//! Memory and threads: one writer per recording, owned and run by the archive's recorder on
//! its thread. Segment files are created with their full length (sparse), so an append never
//! changes a file's size.

use std::fs::{File, OpenOptions};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use crate::error::SegmentError;
use crate::segment::{
    SEGMENT_HEADER_LENGTH, SEGMENT_HEADER_LENGTH_U64, SegmentHeader, SegmentLayout, copy_stamped,
    segment_path,
};

/// How hard the archive works to keep a recording through a machine crash (a process crash
/// loses nothing written at any level: the page cache survives it).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Durability {
    /// Level 0: never sync; the kernel writes back when it likes. Fastest; a machine crash
    /// loses what the kernel had not written yet, and the catalog may claim more than survives.
    #[default]
    None,
    /// Level 1: sync a segment when it is full and the recording when it stops: a machine
    /// crash loses at most the open segment's unsynced tail.
    SegmentEnd,
    /// Level 2: sync before the recording position advances: what the recording position
    /// (and the catalog's stop position) claims is on disk.
    Position,
}

impl Durability {
    /// The level, 0 to 2.
    pub fn level(self) -> u8 {
        match self {
            Self::None => 0,
            Self::SegmentEnd => 1,
            Self::Position => 2,
        }
    }

    /// The durability of a level, 0 to 2.
    pub fn from_level(level: u8) -> Option<Self> {
        match level {
            0 => Some(Self::None),
            1 => Some(Self::SegmentEnd),
            2 => Some(Self::Position),
            _ => None,
        }
    }
}

/// How a writer hands its blocks to the kernel.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum FileIo {
    /// One `pwrite` per block (the default).
    #[default]
    Pwrite,
    /// One io_uring write request per block, submitted and waited for with one system call.
    IoUring,
}

impl std::str::FromStr for FileIo {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, String> {
        match text {
            "pwrite" => Ok(Self::Pwrite),
            "io_uring" => Ok(Self::IoUring),
            other => Err(format!("file io {other:?} is not pwrite or io_uring")),
        }
    }
}

/// One open segment.
#[derive(Debug)]
struct OpenSegment {
    file: File,
    path: PathBuf,
    base_position: i64,
    /// Written since the last sync.
    dirty: bool,
    /// The file offset up to which writeback has been started.
    writeback_from: u64,
}

/// How much a segment accumulates before the writer asks the kernel to start writing it back
/// (levels 1 and 2): the final sync then waits for little.
pub const WRITEBACK_CHUNK: u64 = 8 * 1024 * 1024;

/// Writes one recording's segments.
#[derive(Debug)]
pub struct SegmentWriter {
    dir: PathBuf,
    header: SegmentHeader,
    layout: SegmentLayout,
    durability: Durability,
    segment: Option<OpenSegment>,
    position: i64,
    /// Where checksummed blocks are stamped; empty when checksums are off or blocks come
    /// stamped.
    scratch: Vec<u8>,
    /// Blocks come with every frame's checksum already in its reserved value
    /// ([`SegmentWriter::with_stamped_blocks`]): written as they are.
    stamped: bool,
    /// The ring blocks are written through, when [`FileIo::IoUring`].
    #[cfg(target_os = "linux")]
    ring: Option<tern_engine::file_ring::FileRing>,
}

impl SegmentWriter {
    /// A writer that appends from `position` (a recording's start, or its stop position when it
    /// is extended). `header` says what every segment's header holds (its base is set per
    /// segment); blocks are at most `block_length_max` bytes.
    pub fn new(
        dir: &Path,
        header: SegmentHeader,
        layout: SegmentLayout,
        position: i64,
        durability: Durability,
        block_length_max: usize,
    ) -> Self {
        assert!(position >= layout.first_base && position % 32 == 0);
        let scratch = if header.checksums {
            vec![0u8; block_length_max]
        } else {
            Vec::new()
        };
        Self {
            dir: dir.to_path_buf(),
            header,
            layout,
            durability,
            segment: None,
            position,
            scratch,
            stamped: false,
            #[cfg(target_os = "linux")]
            ring: None,
        }
    }

    /// Writes through `file_io`: with [`FileIo::IoUring`], a ring of its own (refused where
    /// the kernel refuses io_uring).
    pub fn with_file_io(mut self, file_io: FileIo) -> Result<Self, SegmentError> {
        match file_io {
            FileIo::Pwrite => Ok(self),
            #[cfg(target_os = "linux")]
            FileIo::IoUring => {
                let ring = tern_engine::file_ring::FileRing::new()
                    .map_err(|source| SegmentError::io(&self.dir, source))?;
                self.ring = Some(ring);
                Ok(self)
            }
            #[cfg(not(target_os = "linux"))]
            FileIo::IoUring => Err(SegmentError::io(
                &self.dir,
                std::io::Error::other("io_uring is Linux's"),
            )),
        }
    }

    /// A writer whose caller hands it blocks whose frames already carry the archive's checksum
    /// in their reserved value (frames it checksummed itself, or checked on receipt): they are
    /// written as they are, with no copy and no second CRC. The recording is still a
    /// checksummed one for its readers.
    pub fn with_stamped_blocks(mut self) -> Self {
        self.stamped = true;
        self.scratch = Vec::new();
        self
    }

    /// The position after the last byte written.
    pub fn position(&self) -> i64 {
        self.position
    }

    /// Appends `block`, whole frames that lie at [`SegmentWriter::position`] in the stream and
    /// cover `extent` bytes of it (more than the block when it ends with a PAD lent as its
    /// header alone: the padding is not written, the sparse file holds zeros there).
    pub fn write(&mut self, block: &[u8], extent: usize) -> Result<(), SegmentError> {
        let extent_bytes = i64::try_from(extent).expect("a block is at most a term");
        if extent < block.len() || extent_bytes > self.layout.remaining_in_segment(self.position) {
            return Err(SegmentError::Block {
                recording_id: self.header.recording_id,
                position: self.position,
                reason: format!(
                    "{} bytes covering {extent} do not fit the segment",
                    block.len()
                ),
            });
        }
        if block.is_empty() {
            return Ok(());
        }
        let offset = self.file_offset();
        self.open_segment()?;
        let Self {
            segment,
            scratch,
            header,
            position,
            stamped,
            #[cfg(target_os = "linux")]
            ring,
            ..
        } = self;
        let segment = segment.as_mut().expect("opened above");
        let bytes = if header.checksums && !*stamped {
            let copy = &mut scratch[..block.len()];
            copy_stamped(block, copy).map_err(|at| SegmentError::Block {
                recording_id: header.recording_id,
                position: *position + i64::try_from(at).unwrap_or(0),
                reason: "the block is not whole frames (a writer raced the recorder)".to_owned(),
            })?;
            &*copy
        } else {
            block
        };
        #[cfg(target_os = "linux")]
        let written = match ring {
            Some(ring) => ring.write_all_at(&segment.file, bytes, offset),
            None => segment.file.write_all_at(bytes, offset),
        };
        #[cfg(not(target_os = "linux"))]
        let written = segment.file.write_all_at(bytes, offset);
        written.map_err(|source| SegmentError::io(&segment.path, source))?;
        segment.dirty = true;
        let written_to = offset + u64::try_from(bytes.len()).expect("fits");
        if self.durability != Durability::None
            && written_to - segment.writeback_from >= WRITEBACK_CHUNK
        {
            // Best effort: a kernel that refuses only loses the head start.
            let _ = tern_engine::file_sync::start_writeback(
                &segment.file,
                segment.writeback_from,
                written_to - segment.writeback_from,
            );
            segment.writeback_from = written_to;
        }
        self.position += extent_bytes;
        if self.layout.remaining_in_segment(self.position) == i64::from(self.layout.segment_length)
        {
            self.finish_segment()?;
        }
        Ok(())
    }

    fn file_offset(&self) -> u64 {
        let in_segment = self.position - self.layout.base_of(self.position);
        SEGMENT_HEADER_LENGTH_U64 + u64::try_from(in_segment).expect("non-negative")
    }

    fn open_segment(&mut self) -> Result<(), SegmentError> {
        let base_position = self.layout.base_of(self.position);
        if self
            .segment
            .as_ref()
            .is_none_or(|open| open.base_position != base_position)
        {
            let header = SegmentHeader {
                base_position,
                ..self.header
            };
            let path = segment_path(&self.dir, header.recording_id, base_position);
            let (file, created) = open_or_create(&path, &header)?;
            if created && self.durability != Durability::None {
                // The new name must survive a machine crash as the bytes written under it will.
                File::open(&self.dir)
                    .and_then(|directory| directory.sync_all())
                    .map_err(|source| SegmentError::io(&self.dir, source))?;
            }
            let writeback_from = SEGMENT_HEADER_LENGTH_U64
                + u64::try_from(self.position - base_position).expect("in segment");
            self.segment = Some(OpenSegment {
                file,
                path,
                base_position,
                dirty: false,
                writeback_from,
            });
        }
        Ok(())
    }

    /// A full segment: synced at level 1 and up, then closed.
    fn finish_segment(&mut self) -> Result<(), SegmentError> {
        if let Some(segment) = self.segment.take()
            && self.durability != Durability::None
            && segment.dirty
        {
            sync(&segment)?;
        }
        Ok(())
    }

    /// Makes what was written as durable as the policy asks; returns the position the recording
    /// may now claim.
    pub fn commit(&mut self) -> Result<i64, SegmentError> {
        if self.durability == Durability::Position
            && let Some(segment) = self.segment.as_mut()
            && segment.dirty
        {
            sync(segment)?;
            segment.dirty = false;
        }
        Ok(self.position)
    }

    /// Ends the writing: syncs at level 1 and up.
    pub fn close(&mut self) -> Result<i64, SegmentError> {
        if let Some(segment) = self.segment.take()
            && self.durability != Durability::None
            && segment.dirty
        {
            sync(&segment)?;
        }
        Ok(self.position)
    }
}

fn sync(segment: &OpenSegment) -> Result<(), SegmentError> {
    segment
        .file
        .sync_data()
        .map_err(|source| SegmentError::io(&segment.path, source))
}

/// Opens a segment to append to, checking that its header is this recording's, or creates it
/// at its full length with its header.
fn open_or_create(path: &Path, header: &SegmentHeader) -> Result<(File, bool), SegmentError> {
    match OpenOptions::new().read(true).write(true).open(path) {
        Ok(file) => {
            let found = read_header(&file, path)?;
            // The session is the first publication's: an extension may come from another.
            let comparable = SegmentHeader {
                session_id: header.session_id,
                ..found
            };
            if comparable != *header {
                return Err(SegmentError::Mismatch {
                    path: path.to_path_buf(),
                    found: Box::new(found),
                    expected: Box::new(*header),
                });
            }
            Ok((file, false))
        }
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => {
            create(path, header).map(|file| (file, true))
        }
        Err(source) => Err(SegmentError::io(path, source)),
    }
}

/// Creates a segment whole: at its full length with its header, under a temporary name that
/// is renamed to the segment's only when both are written, so a crash never leaves a segment
/// without its header (only a `.tmp` file, which repair removes).
fn create(path: &Path, header: &SegmentHeader) -> Result<File, SegmentError> {
    let temporary = path.with_extension(TEMPORARY_SUFFIX);
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(true)
        .open(&temporary)
        .map_err(|source| SegmentError::io(&temporary, source))?;
    let length = SEGMENT_HEADER_LENGTH_U64 + u64::from(header.segment_length);
    file.set_len(length)
        .and_then(|()| file.write_all_at(&header.encode(), 0))
        .and_then(|()| std::fs::rename(&temporary, path))
        .map_err(|source| SegmentError::io(path, source))?;
    Ok(file)
}

/// The extension of a segment being created.
pub const TEMPORARY_SUFFIX: &str = "rec.tmp";

/// Reads and checks a segment file's header.
pub fn read_header(file: &File, path: &Path) -> Result<SegmentHeader, SegmentError> {
    let mut bytes = [0u8; SEGMENT_HEADER_LENGTH];
    let read =
        read_at_most(file, &mut bytes, 0).map_err(|source| SegmentError::io(path, source))?;
    SegmentHeader::decode(&bytes[..read]).map_err(|error| SegmentError::Header {
        path: path.to_path_buf(),
        error,
    })
}

/// Reads into `buf` from `offset` until it is full or the file ends; returns bytes read.
pub fn read_at_most(file: &File, buf: &mut [u8], offset: u64) -> std::io::Result<usize> {
    let mut read = 0;
    while read < buf.len() {
        match file.read_at(
            &mut buf[read..],
            offset + u64::try_from(read).expect("fits"),
        ) {
            Ok(0) => break,
            Ok(count) => read += count,
            Err(error) if error.kind() == std::io::ErrorKind::Interrupted => {}
            Err(error) => return Err(error),
        }
    }
    Ok(read)
}
