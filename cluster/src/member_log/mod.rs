//! A member's replicated log on disk: one recording in the member's archive directory, written
//! through the archive's segment files at the log's own positions, so `tern archive list`,
//! `verify` and `dump --archive-dir DIR/archive` read it like any other recording.
//!
//! The consensus module is the recording's only writer (it plays the archive's recorder for this
//! stream): [`MemberLog::append`] writes whole entries with `pwrite`, [`MemberLog::truncate`] cuts
//! the segment files, [`MemberLog::sync`] makes what was written durable when the
//! [`LogDurability`] asks for it. Reads go through read-only maps of the segment files (one per
//! segment, made when the segment is first written or found at start-up), so the consensus core
//! and the service container read the log in place ([`LogView`]), a segment at a time: a segment
//! holds whole terms, and no entry crosses a term, so no entry crosses a segment.
//!
//! Opening a log scans it from its start with the log's own frame check (header, placement,
//! checksum), cuts a torn or damaged tail away, and reports where it ended.
//!
//! Threads and memory: one thread (the consensus module's agent) owns a `MemberLog`. It holds the
//! archive catalog's lock, so no archive tool cuts or deletes its segment files while they are
//! mapped; writes happen only through `&mut self`, while no slice of a map is lent out.

mod snapshots;

pub use snapshots::{CHUNK_LENGTH, SNAPSHOT_CHANNEL, SnapshotReadError, read_snapshot_in};

use std::collections::BTreeMap;
use std::fs::File;
use std::path::{Path, PathBuf};

use tern_archive::catalog::{Catalog, NewRecording, RecordingDescriptor};
use tern_archive::error::ArchiveError;
use tern_archive::segment::{SEGMENT_HEADER_LENGTH_U64, SegmentHeader, SegmentLayout};
use tern_archive::segment_files::{self, layout_of};
use tern_archive::segment_writer::{Durability, SegmentWriter};

use crate::consensus::LogView;
use crate::log_entry::{
    ENTRY_ALIGNMENT, EntryError, LOG_SESSION_ID, LOG_STREAM_ID, LogFormat, Scan, padded_length,
};

/// The channel the log's recording names in the catalog.
pub const LOG_CHANNEL: &str = "tern:cluster-log";
/// A segment holds at least this many bytes of log by default (whole terms, at least one).
pub const SEGMENT_LENGTH_DEFAULT: u64 = 64 * 1024 * 1024;
/// The most bytes handed to the segment writer at once (its stamping buffer's size).
const WRITE_BLOCK_MAX: usize = 256 * 1024;

/// When a member may count written log bytes as durable.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum LogDurability {
    /// Once written to the file (the page cache): a process crash loses nothing, a machine crash
    /// may lose what the kernel had not written back of the last segment (a full segment is
    /// synced). A majority of machines must fail at once to lose a committed entry. Aeron
    /// Cluster's default.
    #[default]
    Written,
    /// Once synced (`fdatasync`): an entry is acknowledged only when it is on the disk.
    Synced,
}

impl std::str::FromStr for LogDurability {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, String> {
        match text {
            "written" => Ok(Self::Written),
            "synced" => Ok(Self::Synced),
            other => Err(format!("durability {other:?} is not written or synced")),
        }
    }
}

/// Why the log cannot be opened or written.
#[derive(Debug, thiserror::Error)]
pub enum MemberLogError {
    /// The archive refused (catalog, segment files, file system).
    #[error("member log: {0}")]
    Archive(#[from] ArchiveError),
    /// The catalog holds a log recording of another shape than the configuration's.
    #[error("member log: the recording has term length {found}, the configuration {configured}")]
    TermLength {
        /// The recording's.
        found: u32,
        /// The configuration's.
        configured: u64,
    },
    /// An append that does not start at the log's end, or is not whole aligned entries.
    #[error("member log: {0}")]
    Append(String),
    /// The log is damaged below its tail (a missing segment, a gap, a bad frame with segments
    /// after it): cutting there would throw away log that may be committed, so the member
    /// refuses to start. Move the damaged files aside or rebuild this member from its peers.
    #[error(
        "member log: damaged at {position} below its last segment (at {last_segment}): {detail}; \
         refusing to cut the log there"
    )]
    Damaged {
        /// Where the valid log ends.
        position: u64,
        /// The base of the last segment holding log.
        last_segment: u64,
        /// What the scan found.
        detail: String,
    },
    /// A segment file could not be mapped.
    #[error("member log: mapping {path}: {source}")]
    Map {
        /// The segment.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
}

/// What opening the log found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogRecovery {
    /// The end of the valid log.
    pub log_end: u64,
    /// Why the scan stopped before the bytes did: a torn or damaged tail, cut away.
    pub damaged: Option<EntryError>,
    /// Whether the log was created now.
    pub created: bool,
}

/// A member's log; see the [module docs](self).
#[derive(Debug)]
pub struct MemberLog {
    dir: PathBuf,
    catalog: Catalog,
    descriptor: RecordingDescriptor,
    layout: SegmentLayout,
    header: SegmentHeader,
    durability: LogDurability,
    writer: SegmentWriter,
    maps: BTreeMap<u64, memmap2::Mmap>,
    start: u64,
    end: u64,
}

impl MemberLog {
    /// Opens the log in the archive directory `dir` (created if need be), checks and repairs its
    /// tail, and returns it with what recovery found. `member_id` names the recording's source.
    pub fn open(
        dir: &Path,
        format: LogFormat,
        durability: LogDurability,
        member_id: u32,
        now_ms: i64,
    ) -> Result<(Self, LogRecovery), MemberLogError> {
        Self::open_with(
            dir,
            format,
            durability,
            member_id,
            now_ms,
            SEGMENT_LENGTH_DEFAULT,
        )
    }

    /// [`MemberLog::open`] with a new log's segments holding at least `segment_length_min`
    /// bytes (whole terms, at least one): the unit the log is purged in.
    pub fn open_with(
        dir: &Path,
        format: LogFormat,
        durability: LogDurability,
        member_id: u32,
        now_ms: i64,
        segment_length_min: u64,
    ) -> Result<(Self, LogRecovery), MemberLogError> {
        std::fs::create_dir_all(dir).map_err(|source| ArchiveError::Io {
            path: dir.to_path_buf(),
            source,
        })?;
        let mut catalog = Catalog::open(dir).map_err(ArchiveError::from)?;
        // A descriptor that does not check might be the log's: refuse rather than start a new
        // log beside it.
        let mut existing = None;
        for descriptor in catalog.entries() {
            let descriptor = descriptor.map_err(ArchiveError::from)?;
            if descriptor.stream_id == LOG_STREAM_ID && descriptor.channel == LOG_CHANNEL {
                existing = Some(descriptor);
                break;
            }
        }
        let term_length = u32::try_from(format.term_length()).expect("terms are at most 1 GiB");
        let (descriptor, created) = match existing {
            Some(descriptor) => {
                if descriptor.term_length != term_length {
                    return Err(MemberLogError::TermLength {
                        found: descriptor.term_length,
                        configured: format.term_length(),
                    });
                }
                if !descriptor.is_active() {
                    catalog
                        .reactivate(descriptor.recording_id)
                        .map_err(ArchiveError::from)?;
                }
                (descriptor, false)
            }
            None => {
                let terms = segment_length_min.div_ceil(format.term_length()).max(1);
                let segment_length = u32::try_from(terms * format.term_length())
                    .expect("a segment is at most one 1 GiB term or 64 MiB");
                let source = format!("member {member_id}");
                let recording_id = catalog
                    .add(&NewRecording {
                        start_position: 0,
                        start_timestamp: now_ms,
                        initial_term_id: 0,
                        term_length,
                        mtu: u32::try_from(crate::log_entry::ENTRY_LENGTH_MAX).expect("small"),
                        segment_length,
                        session_id: LOG_SESSION_ID,
                        stream_id: LOG_STREAM_ID,
                        channel: LOG_CHANNEL,
                        source_identity: &source,
                    })
                    .map_err(ArchiveError::from)?;
                let descriptor = catalog
                    .descriptor(recording_id)
                    .map_err(ArchiveError::from)?;
                (descriptor, true)
            }
        };
        let layout = layout_of(&descriptor)?;
        let header = SegmentHeader {
            recording_id: descriptor.recording_id,
            base_position: 0,
            segment_length: descriptor.segment_length,
            term_length,
            initial_term_id: 0,
            stream_id: LOG_STREAM_ID,
            session_id: LOG_SESSION_ID,
            checksums: true,
        };
        let start = u64::try_from(descriptor.start_position).unwrap_or(0);
        let mut log = Self {
            dir: dir.to_path_buf(),
            writer: new_writer(dir, header, layout, descriptor.start_position, durability),
            catalog,
            descriptor,
            layout,
            header,
            durability,
            maps: BTreeMap::new(),
            start,
            end: start,
        };
        for base in segment_files::list_segments(dir, log.descriptor.recording_id)? {
            let base = u64::try_from(base).unwrap_or(0);
            if base + u64::from(log.descriptor.segment_length) > start {
                log.map_segment(base)?;
            }
        }
        // The scan reads every segment mapped, from the recording's start, with the log's frame
        // check: the stored stop position may claim more than a machine crash left. Whatever
        // follows the valid end (a torn entry, pages written back out of order) is cut away, so
        // it can never be read as log.
        log.end = u64::MAX;
        let scan = log.scan(format, start);
        // Only a tail is cut: damage must lie in the last segment that holds log. Anything
        // lower (a segment missing at the start or in the middle, a bad frame with whole
        // segments after it) is refused, not cut, as it may be committed log.
        let last_segment = log.maps.keys().next_back().copied().unwrap_or(start);
        if scan.valid_end < last_segment {
            return Err(MemberLogError::Damaged {
                position: scan.valid_end,
                last_segment,
                detail: scan.stopped_by.map_or_else(
                    || "no log there (a missing segment or a gap)".to_owned(),
                    |error| error.to_string(),
                ),
            });
        }
        log.end = scan.valid_end;
        log.cut_files(scan.valid_end)?;
        let at = to_i64(log.end);
        log.writer = new_writer(dir, header, layout, at, durability);
        log.catalog
            .set_stop_position(log.descriptor.recording_id, at)
            .map_err(ArchiveError::from)?;
        Ok((
            log,
            LogRecovery {
                log_end: scan.valid_end,
                damaged: scan.stopped_by,
                created,
            },
        ))
    }

    /// The end of the log (appended, not necessarily durable).
    pub fn end(&self) -> u64 {
        self.end
    }

    /// The first position held.
    pub fn start(&self) -> u64 {
        self.start
    }

    /// Bytes of log per segment file.
    pub fn segment_length(&self) -> u64 {
        u64::from(self.descriptor.segment_length)
    }

    /// The log's recording in the member's archive.
    pub fn recording_id(&self) -> i64 {
        self.descriptor.recording_id
    }

    /// The durability mode.
    pub fn durability(&self) -> LogDurability {
        self.durability
    }

    /// Writes whole entries at `position`, the log's end.
    pub fn append(&mut self, position: u64, entries: &[u8]) -> Result<(), MemberLogError> {
        if position != self.end || !position.is_multiple_of(ENTRY_ALIGNMENT) {
            return Err(MemberLogError::Append(format!(
                "an append at {position} does not start at the log's end {}",
                self.end
            )));
        }
        let mut offset = 0;
        while offset < entries.len() {
            let at = self.end;
            let (block, run) = next_run(&entries[offset..], at, &self.layout)?;
            self.writer
                .write(&entries[offset..offset + block], run)
                .map_err(ArchiveError::from)?;
            let base = u64::try_from(self.layout.base_of(to_i64(at))).expect("non-negative");
            if !self.maps.contains_key(&base) {
                self.map_segment(base)?;
            }
            self.end += widen(run);
            offset += run;
        }
        Ok(())
    }

    /// Cuts the log at `position` (an entry boundary at or below its end): nothing after it
    /// remains on disk, and the cut is synced before anything is written after it.
    pub fn truncate(&mut self, position: u64) -> Result<(), MemberLogError> {
        assert!(position <= self.end && position >= self.start);
        self.cut_files(position)?;
        self.end = position;
        self.writer = new_writer(
            &self.dir,
            self.header,
            self.layout,
            to_i64(position),
            self.durability,
        );
        self.catalog
            .set_stop_position(self.descriptor.recording_id, to_i64(position))
            .map_err(ArchiveError::from)?;
        Ok(())
    }

    /// Makes what was written durable as the mode asks (a sync in [`LogDurability::Synced`],
    /// nothing in [`LogDurability::Written`]) and records the end in the catalog.
    pub fn sync(&mut self) -> Result<(), MemberLogError> {
        let position = self.writer.commit().map_err(ArchiveError::from)?;
        self.catalog
            .set_stop_position(self.descriptor.recording_id, position)
            .map_err(ArchiveError::from)?;
        Ok(())
    }

    /// Marks the recording stopped at the log's end (a clean shutdown), syncing what was
    /// written whatever the mode.
    pub fn close(&mut self, now_ms: i64) -> Result<(), MemberLogError> {
        if let Some((&base, _)) = self.maps.last_key_value() {
            let path = self.segment_path(base);
            File::open(&path)
                .and_then(|file| file.sync_data())
                .map_err(|source| ArchiveError::Io { path, source })?;
        }
        self.catalog
            .stop(self.descriptor.recording_id, to_i64(self.end), now_ms)
            .map_err(ArchiveError::from)?;
        Ok(())
    }

    fn cut_files(&mut self, position: u64) -> Result<(), MemberLogError> {
        let base = u64::try_from(self.layout.base_of(to_i64(position))).expect("non-negative");
        // Segments the cut deletes are unmapped first; the one it shortens and regrows keeps
        // its map (no read happens in between, and it reads zeros after).
        self.maps
            .retain(|&segment, _| segment < base || (segment == base && position > base));
        segment_files::cut_at(&self.dir, &self.descriptor, to_i64(position))?;
        Ok(())
    }

    /// Walks the log from `from` a segment at a time with the log's frame check.
    fn scan(&self, format: LogFormat, from: u64) -> Scan {
        let mut position = from;
        loop {
            let bytes = self.read_unbounded(position, u64::MAX);
            let scan = format.scan_at(bytes, position);
            if scan.stopped_by.is_some() || scan.valid_end < position + widen(bytes.len()) {
                return scan;
            }
            if bytes.is_empty() {
                return scan;
            }
            position = scan.valid_end;
        }
    }

    fn segment_path(&self, base: u64) -> PathBuf {
        tern_archive::segment::segment_path(&self.dir, self.descriptor.recording_id, to_i64(base))
    }

    #[allow(unsafe_code)]
    fn map_segment(&mut self, base: u64) -> Result<(), MemberLogError> {
        let path = self.segment_path(base);
        let file = File::open(&path).map_err(|source| MemberLogError::Map {
            path: path.clone(),
            source,
        })?;
        let expected = SEGMENT_HEADER_LENGTH_U64 + u64::from(self.descriptor.segment_length);
        let length = file
            .metadata()
            .map_err(|source| MemberLogError::Map {
                path: path.clone(),
                source,
            })?
            .len();
        if length != expected {
            return Err(MemberLogError::Map {
                path,
                source: std::io::Error::other(format!("{length} bytes, a segment has {expected}")),
            });
        }
        // SAFETY: segment files are created at their full length and never shortened while
        // mapped except by `cut_files`, on this thread, with no slice of the map lent out
        // (it takes `&mut self`; reads lend slices only for a `&self` borrow) and the file
        // regrown before the next read. The bytes change only through this member's `pwrite`s,
        // also made through `&mut self`. The catalog's lock, held for the member's life, keeps
        // the archive tools from cutting or deleting the files.
        let map = unsafe { memmap2::Mmap::map(&file) }
            .map_err(|source| MemberLogError::Map { path, source })?;
        self.maps.insert(base, map);
        Ok(())
    }

    fn read_unbounded(&self, position: u64, max: u64) -> &[u8] {
        let base = u64::try_from(self.layout.base_of(to_i64(position))).expect("non-negative");
        let Some(map) = self.maps.get(&base) else {
            return &[];
        };
        let segment_end = base + u64::from(self.descriptor.segment_length);
        let end = segment_end.min(self.end).min(position.saturating_add(max));
        if position >= end {
            return &[];
        }
        let from = usize::try_from(SEGMENT_HEADER_LENGTH_U64 + position - base).expect("fits");
        let to = usize::try_from(SEGMENT_HEADER_LENGTH_U64 + end - base).expect("fits");
        &map[from..to]
    }
}

impl LogView for MemberLog {
    fn read(&self, position: u64, max: u64) -> &[u8] {
        if position < self.start || position >= self.end {
            return &[];
        }
        self.read_unbounded(position, max)
    }

    fn start(&self) -> u64 {
        self.start
    }
}

/// The next write of whole entries from the start of `entries`, which go at `at`: a run that
/// fits the segment and the writer's buffer, as (bytes handed to the writer, stream bytes it
/// covers). A PAD ends its term and so the run, and goes to the writer as its header alone (the
/// archive's convention: the sparse file holds its zeros).
fn next_run(
    entries: &[u8],
    at: u64,
    layout: &SegmentLayout,
) -> Result<(usize, usize), MemberLogError> {
    let room = u64::try_from(layout.remaining_in_segment(to_i64(at))).expect("non-negative");
    let mut run = 0usize;
    let mut block = 0usize;
    while run < entries.len() {
        let rest = &entries[run..];
        let Some(length) = padded_length(rest) else {
            return Err(MemberLogError::Append(format!(
                "bytes at {} are not a whole entry",
                at + widen(run)
            )));
        };
        let next = run + usize::try_from(length).expect("entries are small");
        if next > entries.len() || widen(next) > room || next > WRITE_BLOCK_MAX {
            break;
        }
        run = next;
        if tern_archive::segment::is_pad(rest) {
            block += crate::log_entry::FRAME_HEADER_LENGTH;
            break;
        }
        block = run;
    }
    if run == 0 {
        return Err(MemberLogError::Append(format!(
            "the entry at {at} crosses a segment end or is cut short"
        )));
    }
    Ok((block, run))
}

fn new_writer(
    dir: &Path,
    header: SegmentHeader,
    layout: SegmentLayout,
    position: i64,
    durability: LogDurability,
) -> SegmentWriter {
    let level = match durability {
        // A segment is synced when full (and a new one's name with its directory): after a
        // machine crash only the last segment can be torn, which is what opening cuts.
        LogDurability::Written => Durability::SegmentEnd,
        LogDurability::Synced => Durability::Position,
    };
    // Every entry carries its CRC-32C already (the leader framed it, a follower checked it
    // whole before appending): the archive's writer need not copy and checksum it again.
    SegmentWriter::new(dir, header, layout, position, level, WRITE_BLOCK_MAX).with_stamped_blocks()
}

fn to_i64(position: u64) -> i64 {
    i64::try_from(position).expect("log positions fit i64")
}

fn widen(length: usize) -> u64 {
    u64::try_from(length).expect("fits")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::log_entry::session_message;
    use std::os::unix::fs::FileExt;
    use tern_archive::inspect::{Verdict, verify_recording};

    const TERM: u64 = 16 * 1024;
    const SEGMENT: u64 = 2 * TERM;

    fn index(position: u64) -> usize {
        usize::try_from(position).unwrap()
    }

    fn format() -> LogFormat {
        LogFormat::new(TERM).unwrap()
    }

    fn open(dir: &Path) -> (MemberLog, LogRecovery) {
        MemberLog::open_with(dir, format(), LogDurability::Synced, 1, 0, SEGMENT).unwrap()
    }

    /// Entries of assorted sizes from `position`, framed as the leader frames them.
    fn entries(position: u64, count: u64, seed: u64) -> Vec<u8> {
        let mut out = Vec::new();
        let mut at = position;
        for i in 0..count {
            let payload = vec![
                u8::try_from((seed + i) % 251).unwrap();
                usize::try_from((seed * 7 + i * 13) % 700).unwrap()
            ];
            let written = format()
                .append_entry(&mut out, at, |buf| {
                    let mut encoder = session_message::Encoder::wrap(buf)?;
                    encoder.session_id(seed).request_id(i).timestamp_ns(i);
                    Ok(encoder.payload(&payload)?.finish())
                })
                .unwrap();
            at += written.length;
        }
        out
    }

    fn read_all(log: &MemberLog) -> Vec<u8> {
        let mut out = Vec::new();
        let mut position = log.start();
        loop {
            let bytes = log.read(position, u64::MAX);
            if bytes.is_empty() {
                return out;
            }
            assert!(
                bytes.len() as u64 <= SEGMENT,
                "a read stops at a segment end"
            );
            out.extend_from_slice(bytes);
            position += bytes.len() as u64;
        }
    }

    #[test]
    fn appends_cross_terms_and_segments_and_read_back_after_reopening() {
        let dir = tempfile::tempdir().unwrap();
        let (mut log, recovery) = open(dir.path());
        assert!(recovery.created && recovery.log_end == 0);
        let mut expected = Vec::new();
        for batch in 0..40 {
            let bytes = entries(log.end(), 20, batch);
            log.append(log.end(), &bytes).unwrap();
            expected.extend_from_slice(&bytes);
            log.sync().unwrap();
        }
        assert!(log.end() > 3 * SEGMENT, "the test crosses segments");
        assert_eq!(read_all(&log), expected);
        drop(log);
        let (log, recovery) = open(dir.path());
        assert_eq!(
            recovery,
            LogRecovery {
                log_end: expected.len() as u64,
                damaged: None,
                created: false
            }
        );
        assert_eq!(read_all(&log), expected);
        // The archive reads it as a valid recording, every checksum included.
        let verdict =
            verify_recording(dir.path(), &log.catalog, log.recording_id(), |_| {}).unwrap();
        assert!(matches!(verdict, Verdict::Valid { .. }), "{verdict:?}");
    }

    #[test]
    fn truncation_cuts_the_files_and_appends_continue_from_the_cut() {
        let dir = tempfile::tempdir().unwrap();
        let (mut log, _) = open(dir.path());
        let mut expected = Vec::new();
        for batch in 0..30 {
            let bytes = entries(log.end(), 20, batch);
            log.append(log.end(), &bytes).unwrap();
            expected.extend_from_slice(&bytes);
        }
        // Cut inside a segment, then exactly at a segment's base: what follows is gone.
        let inside = format().scan(&expected, 0);
        assert_eq!(inside.valid_end, expected.len() as u64);
        let mut cut = 0;
        while cut < SEGMENT + 1000 {
            cut += padded_length(&expected[index(cut)..]).unwrap();
        }
        log.truncate(cut).unwrap();
        expected.truncate(index(cut));
        assert_eq!(read_all(&log), expected);
        let more = entries(cut, 10, 99);
        log.append(cut, &more).unwrap();
        expected.extend_from_slice(&more);
        log.truncate(SEGMENT).unwrap();
        expected.truncate(index(SEGMENT));
        log.sync().unwrap();
        drop(log);
        let (log, recovery) = open(dir.path());
        assert_eq!(recovery.log_end, SEGMENT);
        assert_eq!(read_all(&log), expected);
        assert_eq!(
            segment_files::list_segments(dir.path(), log.recording_id()).unwrap(),
            vec![0],
            "segments after the cut are deleted"
        );
    }

    #[test]
    fn a_torn_or_damaged_tail_is_found_and_cut_away() {
        let dir = tempfile::tempdir().unwrap();
        let (mut log, _) = open(dir.path());
        let bytes = entries(0, 50, 3);
        log.append(0, &bytes).unwrap();
        let end = log.end();
        let path = log.segment_path(0);
        drop(log);
        // A torn write: half an entry's header past the end, and a damaged byte in the last
        // entry (its checksum fails).
        let file = std::fs::OpenOptions::new().write(true).open(&path).unwrap();
        file.write_all_at(&[0x60, 0, 0, 0, 0, 0xC0], SEGMENT_HEADER_LENGTH_U64 + end)
            .unwrap();
        let (log, recovery) = open(dir.path());
        assert_eq!(
            recovery.log_end, end,
            "a torn header after the end is not log"
        );
        assert!(recovery.damaged.is_some());
        assert_eq!(log.read(end, 64), &[] as &[u8]);
        drop(log);
        let (_, recovery) = open(dir.path());
        assert_eq!(
            (recovery.log_end, recovery.damaged),
            (end, None),
            "the torn bytes were zeroed"
        );
        let mut last = 0;
        let mut at = 0;
        while at < end {
            last = at;
            at += padded_length(&bytes[index(at)..]).unwrap();
        }
        file.write_all_at(&[0xFF], SEGMENT_HEADER_LENGTH_U64 + last + 40)
            .unwrap();
        let (log, recovery) = open(dir.path());
        assert_eq!(recovery.log_end, last, "the damaged last entry is cut");
        assert!(
            matches!(recovery.damaged, Some(EntryError::Checksum { .. })),
            "{recovery:?}"
        );
        assert_eq!(read_all(&log), bytes[..index(last)]);
    }

    #[test]
    fn bad_appends_and_another_term_length_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let (mut log, _) = open(dir.path());
        let bytes = entries(0, 3, 1);
        assert!(matches!(
            log.append(32, &bytes),
            Err(MemberLogError::Append(_))
        ));
        assert!(matches!(
            log.append(0, &bytes[..40]),
            Err(MemberLogError::Append(_))
        ));
        assert_eq!(log.end(), 0, "nothing was written");
        log.append(0, &bytes).unwrap();
        drop(log);
        let other = LogFormat::new(2 * TERM).unwrap();
        let refused =
            MemberLog::open_with(dir.path(), other, LogDurability::Written, 1, 0, SEGMENT);
        assert!(
            matches!(refused, Err(MemberLogError::TermLength { .. })),
            "{refused:?}"
        );
    }

    #[test]
    fn a_closed_log_reopens_and_goes_on() {
        let dir = tempfile::tempdir().unwrap();
        let (mut log, _) = open(dir.path());
        let first = entries(0, 10, 5);
        log.append(0, &first).unwrap();
        log.close(1).unwrap();
        drop(log);
        let (mut log, recovery) = open(dir.path());
        assert_eq!(recovery.log_end, first.len() as u64);
        let second = entries(log.end(), 10, 6);
        log.append(log.end(), &second).unwrap();
        assert_eq!(read_all(&log), [first, second].concat());
    }

    #[test]
    fn snapshots_are_recordings_that_read_back_whole_and_damage_is_found() {
        let dir = tempfile::tempdir().unwrap();
        let (mut log, _) = open(dir.path());
        // Larger than one frame and than a segment's first term boundary would matter.
        let snapshot: Vec<u8> = (0..100_000u32)
            .map(|i| u8::try_from(i % 251).unwrap())
            .collect();
        let id = log.record_snapshot(&snapshot, 4096, 7).unwrap();
        assert_ne!(id, log.recording_id());
        assert_eq!(log.read_snapshot(id).unwrap(), snapshot);
        assert_eq!(log.snapshot_recordings(), vec![id]);
        let empty = log.record_snapshot(&[], 0, 7).unwrap();
        assert_eq!(log.read_snapshot(empty).unwrap(), Vec::<u8>::new());
        // The archive verifies it like any recording.
        let verdict = verify_recording(dir.path(), &log.catalog, id, |_| {}).unwrap();
        assert!(matches!(verdict, Verdict::Valid { .. }), "{verdict:?}");
        // A flipped byte fails a frame's checksum.
        let path = tern_archive::segment::segment_path(dir.path(), id, 0);
        let file = std::fs::OpenOptions::new().write(true).open(&path).unwrap();
        file.write_all_at(&[0xAA], SEGMENT_HEADER_LENGTH_U64 + 5000)
            .unwrap();
        assert!(log.read_snapshot(id).is_err());
        assert!(
            log.read_snapshot(log.recording_id()).is_err(),
            "the log is not a snapshot"
        );
        log.delete_snapshot(id).unwrap();
        assert!(log.read_snapshot(id).is_err(), "deleted");
        assert_eq!(log.snapshot_recordings(), vec![empty]);
        assert!(!path.exists());
    }

    #[test]
    fn purging_deletes_whole_segments_below_and_moves_the_start() {
        let dir = tempfile::tempdir().unwrap();
        let (mut log, _) = open(dir.path());
        let mut expected = Vec::new();
        for batch in 0..40 {
            let bytes = entries(log.end(), 20, batch);
            log.append(log.end(), &bytes).unwrap();
            expected.extend_from_slice(&bytes);
        }
        let end = log.end();
        assert_eq!(
            log.purge_below(SEGMENT - 32).unwrap(),
            0,
            "nothing whole below"
        );
        assert_eq!(log.purge_below(2 * SEGMENT + 64).unwrap(), 2 * SEGMENT);
        assert_eq!(log.start(), 2 * SEGMENT);
        assert_eq!(
            log.read(0, 64),
            &[] as &[u8],
            "below the start reads nothing"
        );
        assert_eq!(read_all(&log), expected[index(2 * SEGMENT)..]);
        drop(log);
        let (log, recovery) = open(dir.path());
        assert_eq!((log.start(), recovery.log_end), (2 * SEGMENT, end));
        assert_eq!(read_all(&log), expected[index(2 * SEGMENT)..]);
    }

    #[test]
    fn a_log_restarted_at_a_snapshot_position_holds_nothing_below_it_and_goes_on() {
        let dir = tempfile::tempdir().unwrap();
        let (mut log, _) = open(dir.path());
        for batch in 0..40 {
            let bytes = entries(log.end(), 20, batch);
            log.append(log.end(), &bytes).unwrap();
        }
        let old_end = log.end();
        assert!(
            log.restart_at(old_end + 100).is_err(),
            "not an entry boundary"
        );
        // Above the old end, part way into a segment (an installed snapshot's position).
        let position = old_end + 3 * SEGMENT + 4096;
        log.restart_at(position).unwrap();
        assert_eq!((log.start(), log.end()), (position, position));
        assert_eq!(log.read(0, 64), &[] as &[u8], "the old log is gone");
        assert_eq!(
            segment_files::list_segments(dir.path(), log.recording_id())
                .unwrap()
                .len(),
            0
        );
        let bytes = entries(position, 30, 7);
        log.append(position, &bytes).unwrap();
        log.sync().unwrap();
        assert_eq!(read_all(&log), bytes);
        drop(log);
        let (mut log, recovery) = open(dir.path());
        assert_eq!(
            (log.start(), recovery.log_end, recovery.damaged),
            (position, position + bytes.len() as u64, None)
        );
        assert_eq!(read_all(&log), bytes);
        // And back below where it was (a member that installs an older leader's snapshot).
        log.restart_at(SEGMENT).unwrap();
        let lower = entries(SEGMENT, 5, 9);
        log.append(SEGMENT, &lower).unwrap();
        log.sync().unwrap();
        drop(log);
        let (log, recovery) = open(dir.path());
        assert_eq!(
            (log.start(), recovery.log_end),
            (SEGMENT, SEGMENT + lower.len() as u64)
        );
        assert_eq!(read_all(&log), lower);
    }

    #[test]
    fn damage_below_the_last_segment_is_refused_not_cut() {
        let dir = tempfile::tempdir().unwrap();
        let (mut log, _) = open(dir.path());
        for batch in 0..40 {
            let bytes = entries(log.end(), 20, batch);
            log.append(log.end(), &bytes).unwrap();
        }
        log.sync().unwrap();
        let end = log.end();
        assert!(end > 3 * SEGMENT);
        drop(log);
        // A bad byte in the first segment, with whole segments after it.
        let first = tern_archive::segment::segment_path(dir.path(), 0, 0);
        let at = usize::try_from(SEGMENT_HEADER_LENGTH_U64).unwrap() + 100;
        let original = std::fs::read(&first).unwrap()[at];
        let file = std::fs::OpenOptions::new()
            .write(true)
            .open(&first)
            .unwrap();
        file.write_all_at(&[!original], widen(at)).unwrap();
        let refused =
            MemberLog::open_with(dir.path(), format(), LogDurability::Synced, 1, 0, SEGMENT);
        assert!(
            matches!(refused, Err(MemberLogError::Damaged { .. })),
            "{refused:?}"
        );
        // Nothing was cut: every segment is still there, and mended it opens whole.
        assert_eq!(
            segment_files::list_segments(dir.path(), 0).unwrap().len(),
            usize::try_from(end.div_ceil(SEGMENT)).unwrap()
        );
        file.write_all_at(&[original], widen(at)).unwrap();
        let (log, recovery) = open(dir.path());
        assert_eq!(recovery.log_end, end);
        drop(log);
        // A missing middle segment is refused too.
        std::fs::remove_file(tern_archive::segment::segment_path(
            dir.path(),
            0,
            i64::try_from(SEGMENT).unwrap(),
        ))
        .unwrap();
        let refused =
            MemberLog::open_with(dir.path(), format(), LogDurability::Synced, 1, 0, SEGMENT);
        assert!(
            matches!(refused, Err(MemberLogError::Damaged { .. })),
            "{refused:?}"
        );
    }
}
