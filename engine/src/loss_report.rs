//! The loss report (`loss-report.dat` in the driver directory): one entry per stream and source
//! that lost data, with how often loss was seen, how many bytes went missing, and when it was
//! first and last seen. `tern loss` prints it; it survives the images it describes, so an
//! operator can see after the fact which links dropped what.
//!
//! The receiver agent is the only writer (it sees a gap when its loss detector first asks for
//! it); readers in other processes map the file, only read it, and validate everything they
//! read.
//!
//! Layout (little-endian, 64-byte header, then 256-byte entries):
//!
//! | offset | header field |
//! |---|---|
//! | 0 | magic `TERNLOSS` (u64) |
//! | 8 | layout version (semantic, packed as [`tern_codec::SemanticVersion::compose`]) (i64) |
//! | 16 | entry length (i64) |
//!
//! | offset | entry field |
//! |---|---|
//! | 0 | observations (i64; written last, release: 0 ends the report) |
//! | 8 | bytes lost (i64) |
//! | 16 | first observed, ms since the epoch (i64) |
//! | 24 | last observed, ms since the epoch (i64) |
//! | 32 | session id (i32) |
//! | 36 | stream id (i32) |
//! | 40 | channel length (i32, at most [`CHANNEL_MAX`]) |
//! | 44 | source length (i32, at most [`SOURCE_MAX`]) |
//! | 48 | channel (UTF-8) |
//! | 48 + [`CHANNEL_MAX`] | source (UTF-8) |

use std::path::{Path, PathBuf};
use std::sync::Arc;

use tern_codec::SemanticVersion as Version;

use crate::concurrent::atomic_buffer::AtomicBuffer;
use crate::mapped_file::MappedFile;
use crate::mapped_view::MappedView;

/// The report's file name in the driver directory.
pub const FILE_NAME: &str = "loss-report.dat";
/// Bytes of the header.
pub const HEADER_LENGTH: usize = 64;
/// Bytes of an entry.
pub const ENTRY_LENGTH: usize = 256;
/// Bytes of a channel kept in an entry (longer channels are cut at a character boundary).
pub const CHANNEL_MAX: usize = 144;
/// Bytes of a source address kept in an entry.
pub const SOURCE_MAX: usize = 64;
/// The layout this build writes and reads.
pub const LAYOUT_VERSION: Version = Version::new(1, 0, 0);
/// The default file length: 4 095 entries.
pub const DEFAULT_LENGTH: usize = 1024 * 1024;

const MAGIC: u64 = u64::from_le_bytes(*b"TERNLOSS");
const VERSION_OFFSET: usize = 8;
const ENTRY_LENGTH_OFFSET: usize = 16;
const OBSERVATIONS: usize = 0;
const BYTES: usize = 8;
const FIRST: usize = 16;
const LAST: usize = 24;
const SESSION: usize = 32;
const STREAM: usize = 36;
const CHANNEL_LENGTH: usize = 40;
const SOURCE_LENGTH: usize = 44;
const CHANNEL: usize = 48;
const SOURCE: usize = CHANNEL + CHANNEL_MAX;
const _: () = assert!(SOURCE + SOURCE_MAX <= ENTRY_LENGTH);

/// The writer: the receiver's handle on the report.
pub struct LossReport {
    buffer: MappedView<AtomicBuffer<'static>>,
    /// Entries written so far.
    entries: usize,
    path: PathBuf,
}

impl std::fmt::Debug for LossReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LossReport")
            .field("path", &self.path)
            .field("entries", &self.entries)
            .finish()
    }
}

/// Where an entry is: returned by [`LossReport::create_entry`], kept by whoever reports on it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EntryIndex(usize);

impl LossReport {
    /// Creates the report in `dir` with room for `length` bytes (a multiple of 8, at least one
    /// entry beyond the header).
    pub fn create(dir: &Path, length: usize) -> std::io::Result<Self> {
        if length < HEADER_LENGTH + ENTRY_LENGTH {
            return Err(std::io::Error::new(
                std::io::ErrorKind::InvalidInput,
                format!(
                    "a loss report needs at least {} bytes",
                    HEADER_LENGTH + ENTRY_LENGTH
                ),
            ));
        }
        let path = dir.join(FILE_NAME);
        let file = Arc::new(MappedFile::create(&path, length)?);
        let buffer = MappedView::<AtomicBuffer<'static>>::new(file, MappedFile::buffer);
        {
            let view = buffer.view();
            view.put_i64(
                ENTRY_LENGTH_OFFSET,
                i64::try_from(ENTRY_LENGTH).unwrap_or(0),
            );
            view.put_i64(VERSION_OFFSET, i64::from(LAYOUT_VERSION.compose()));
            // Published last: a reader that sees the magic sees the header.
            view.put_i64_ordered(0, i64::from_le_bytes(MAGIC.to_le_bytes()));
        }
        Ok(Self {
            buffer,
            entries: 0,
            path,
        })
    }

    /// Entries the file holds at most.
    pub fn capacity(&self) -> usize {
        (self.buffer.view().capacity() - HEADER_LENGTH) / ENTRY_LENGTH
    }

    /// A new entry for loss of `bytes` seen at `now_ms` on `session_id`/`stream_id` from
    /// `source` over `channel`; `None` when the report is full (the loss is still counted by
    /// the driver's counters).
    pub fn create_entry(
        &mut self,
        bytes: u64,
        now_ms: i64,
        session_id: i32,
        stream_id: i32,
        channel: &str,
        source: &str,
    ) -> Option<EntryIndex> {
        if self.entries >= self.capacity() {
            return None;
        }
        let index = self.entries;
        let at = HEADER_LENGTH + index * ENTRY_LENGTH;
        let view = self.buffer.view();
        let channel = cut(channel, CHANNEL_MAX);
        let source = cut(source, SOURCE_MAX);
        view.put_i64(at + BYTES, i64::try_from(bytes).unwrap_or(i64::MAX));
        view.put_i64(at + FIRST, now_ms);
        view.put_i64(at + LAST, now_ms);
        view.put_i32(at + SESSION, session_id);
        view.put_i32(at + STREAM, stream_id);
        view.put_i32(
            at + CHANNEL_LENGTH,
            i32::try_from(channel.len()).unwrap_or(0),
        );
        view.put_i32(at + SOURCE_LENGTH, i32::try_from(source.len()).unwrap_or(0));
        view.put_bytes(at + CHANNEL, channel.as_bytes());
        view.put_bytes(at + SOURCE, source.as_bytes());
        // Published last: a reader that sees the count sees the entry.
        view.put_i64_ordered(at + OBSERVATIONS, 1);
        self.entries += 1;
        Some(EntryIndex(index))
    }

    /// More loss of `bytes` at `now_ms` on an existing entry.
    pub fn record_observation(&mut self, entry: EntryIndex, bytes: u64, now_ms: i64) {
        let at = HEADER_LENGTH + entry.0 * ENTRY_LENGTH;
        let view = self.buffer.view();
        let total = view.get_i64(at + BYTES);
        view.put_i64(
            at + BYTES,
            total.saturating_add(i64::try_from(bytes).unwrap_or(i64::MAX)),
        );
        view.put_i64(at + LAST, now_ms);
        let observations = view.get_i64(at + OBSERVATIONS);
        view.put_i64_ordered(at + OBSERVATIONS, observations.saturating_add(1));
    }
}

/// `text` cut to at most `max` bytes, at a character boundary.
fn cut(text: &str, max: usize) -> &str {
    let mut end = text.len().min(max);
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    &text[..end]
}

/// One entry as read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LossEntry {
    /// How many times loss was seen.
    pub observations: i64,
    /// Bytes that went missing (each gap counted when first seen).
    pub bytes: i64,
    /// When loss was first seen, ms since the epoch.
    pub first_ms: i64,
    /// When loss was last seen, ms since the epoch.
    pub last_ms: i64,
    /// The session.
    pub session_id: i32,
    /// The stream.
    pub stream_id: i32,
    /// The subscription's channel.
    pub channel: String,
    /// The sender's address.
    pub source: String,
}

/// Why a loss report cannot be read.
#[derive(Debug, thiserror::Error)]
pub enum LossReportError {
    /// The file could not be opened or mapped.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: String,
        /// Why.
        source: std::io::Error,
    },
    /// The file is not a loss report this build reads.
    #[error("{path}: {reason}")]
    Invalid {
        /// The file.
        path: String,
        /// What is wrong.
        reason: String,
    },
}

/// Reads the report in `dir`, entry by entry; a malformed entry ends the read with an error
/// naming it (what came before was delivered).
pub fn read(dir: &Path, mut entry: impl FnMut(LossEntry)) -> Result<usize, LossReportError> {
    let path = dir.join(FILE_NAME);
    let display = path.display().to_string();
    let file = MappedFile::open(&path).map_err(|source| LossReportError::Io {
        path: display.clone(),
        source,
    })?;
    let buffer = file.buffer();
    let invalid = |reason: String| LossReportError::Invalid {
        path: display.clone(),
        reason,
    };
    if buffer.capacity() < HEADER_LENGTH {
        return Err(invalid(format!("{} bytes: no header", buffer.capacity())));
    }
    if buffer.get_i64_volatile(0) != i64::from_le_bytes(MAGIC.to_le_bytes()) {
        return Err(invalid("not a tern loss report (no magic)".to_owned()));
    }
    let version = u32::try_from(buffer.get_i64(VERSION_OFFSET))
        .ok()
        .and_then(|composed| Version::decompose(composed).ok())
        .ok_or_else(|| invalid("its layout version is not a version".to_owned()))?;
    if version.major != LAYOUT_VERSION.major {
        return Err(invalid(format!(
            "layout {version}, this build reads {}.x",
            LAYOUT_VERSION.major
        )));
    }
    if usize::try_from(buffer.get_i64(ENTRY_LENGTH_OFFSET)).ok() != Some(ENTRY_LENGTH) {
        return Err(invalid("entry length is not 256".to_owned()));
    }
    let capacity = (buffer.capacity() - HEADER_LENGTH) / ENTRY_LENGTH;
    let mut read = 0;
    for index in 0..capacity {
        let at = HEADER_LENGTH + index * ENTRY_LENGTH;
        let observations = buffer.get_i64_volatile(at + OBSERVATIONS);
        if observations <= 0 {
            break;
        }
        let text = |offset: usize, length_at: usize, max: usize, what: &str| {
            let length = usize::try_from(buffer.get_i32(at + length_at))
                .ok()
                .filter(|length| *length <= max)
                .ok_or_else(|| invalid(format!("entry {index}: {what} length out of range")))?;
            let mut bytes = vec![0u8; length];
            buffer.get_bytes(at + offset, &mut bytes);
            Ok::<_, LossReportError>(String::from_utf8_lossy(&bytes).into_owned())
        };
        entry(LossEntry {
            observations,
            bytes: buffer.get_i64(at + BYTES),
            first_ms: buffer.get_i64(at + FIRST),
            last_ms: buffer.get_i64(at + LAST),
            session_id: buffer.get_i32(at + SESSION),
            stream_id: buffer.get_i32(at + STREAM),
            channel: text(CHANNEL, CHANNEL_LENGTH, CHANNEL_MAX, "channel")?,
            source: text(SOURCE, SOURCE_LENGTH, SOURCE_MAX, "source")?,
        });
        read += 1;
    }
    Ok(read)
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;

    #[test]
    fn entries_are_written_updated_and_read_back_and_bad_files_refused() {
        let dir = std::env::temp_dir().join(format!("tern-loss-report-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let mut report = LossReport::create(&dir, HEADER_LENGTH + 2 * ENTRY_LENGTH).unwrap();
        assert_eq!(report.capacity(), 2);
        let long = "x".repeat(500);
        let first = report
            .create_entry(
                1024,
                10,
                7,
                9,
                "tern:udp?endpoint=10.0.0.2:40456",
                "10.0.0.1:5555",
            )
            .unwrap();
        report.record_observation(first, 96, 20);
        report
            .create_entry(32, 30, 8, 9, &long, "é".repeat(40).as_str())
            .unwrap();
        assert!(report.create_entry(1, 40, 9, 9, "c", "s").is_none(), "full");
        let mut entries = Vec::new();
        assert_eq!(read(&dir, |entry| entries.push(entry)).unwrap(), 2);
        assert_eq!(
            entries[0],
            LossEntry {
                observations: 2,
                bytes: 1120,
                first_ms: 10,
                last_ms: 20,
                session_id: 7,
                stream_id: 9,
                channel: "tern:udp?endpoint=10.0.0.2:40456".to_owned(),
                source: "10.0.0.1:5555".to_owned(),
            }
        );
        assert_eq!(entries[1].channel.len(), CHANNEL_MAX);
        assert_eq!(
            entries[1].source,
            "é".repeat(32),
            "cut at a character boundary"
        );
        // A length another process scribbled is refused, not trusted.
        let file = MappedFile::open(&dir.join(FILE_NAME)).unwrap();
        file.buffer()
            .put_i32(HEADER_LENGTH + ENTRY_LENGTH + CHANNEL_LENGTH, 100_000);
        let error = read(&dir, |_| {}).unwrap_err().to_string();
        assert!(error.contains("entry 1: channel length"), "{error}");
        file.buffer().put_i64(0, 0);
        assert!(
            read(&dir, |_| {})
                .unwrap_err()
                .to_string()
                .contains("magic")
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
