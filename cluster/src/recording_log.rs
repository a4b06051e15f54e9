//! A member's recording log: the durable record of which leadership term wrote which range of
//! its log, of where its log was cut, and of its snapshots, from which recovery rebuilds the
//! term history (Aeron Cluster's `RecordingLog`, append-only here).
//!
//! The term history cannot be rebuilt from the log's bytes alone (a PAD at a term's start may
//! belong to either term, and an entry does not name the term that wrote it), so it is written
//! down as it changes. The file `recording-log` in a member's directory holds a 64-byte header
//! and then 64-byte records, each with its own CRC-32C, appended and synced one at a time:
//!
//! ```text
//! header  0 magic "TERNRLOG"  8 version (composed)  12 member id  60 CRC-32C of 0..60
//! record  0 kind (1 term, 2 truncate, 3 snapshot)   8 a   16 b   24 c (i64)   32 d
//!         60 CRC-32C of 0..60
//!   term:     a = term, b = base position
//!   truncate: a = position
//!   snapshot: a = term, b = log position, c = recording id, d = timestamp (ns)
//! ```
//!
//! Replaying the records in order gives the term history: a truncate forgets the terms that
//! start at or after its position, a term record adds a term. Recovery then cuts the history to
//! the log's recovered end, which drops a term whose bytes a crash lost.
//!
//! The caller keeps one ordering, which is what makes this sound: a term record is durable
//! before any byte of its term is written, and a truncate record is appended after the log's
//! cut is durable and before anything is written after the cut. A byte on disk then always has
//! its term on disk, and a term recorded for bytes that were lost is cut with them.
//!
//! [`RecordingLog::create`] writes the header under a temporary name, syncs it, renames it into
//! place and syncs the directory, so the file exists whole or not at all; [`RecordingLog::open`]
//! refuses a missing file (only the member's node knows whether its directory is new). A torn
//! last record (a crash during its append) is cut off when the file is opened, and said so; a
//! bad record anywhere else, a bad header, another member's file or another major version's is
//! refused with an error that names it: records are never rewritten in place, so such damage
//! is not a crash's. (A file cut at a record boundary by a bad disk reads as fewer records; the
//! member cross-checks what it rebuilds against its log.)
//!
//! One owner writes the file: the member running in the directory, on the thread that carries
//! out its consensus core's outputs.

use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use tern_codec::SemanticVersion;

use crate::durable_file::OwnerError;
use crate::term_history::{TermHistory, TermHistoryError, TermStart};

/// The file's name in a member's directory.
pub const FILE_NAME: &str = "recording-log";
/// This build's version of the file.
pub const VERSION: SemanticVersion = SemanticVersion::new(1, 0, 0);
const MAGIC: [u8; 8] = *b"TERNRLOG";
/// Bytes in the header and in each record.
const RECORD_LENGTH: usize = 64;
const RECORD_LENGTH_U64: u64 = 64;
const CHECKED: usize = 60;

const KIND_TERM: u8 = 1;
const KIND_TRUNCATE: u8 = 2;
const KIND_SNAPSHOT: u8 = 3;

/// A snapshot the log records: where it was taken and where the archive holds it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SnapshotRecord {
    /// The leadership term at the snapshot's position.
    pub term: u64,
    /// The log position the snapshot covers (everything before it is in the snapshot).
    pub position: u64,
    /// The archive recording holding it.
    pub recording_id: i64,
    /// When it was taken (cluster time).
    pub timestamp_ns: u64,
}

/// One record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Record {
    /// `term` writes from `base`.
    Term {
        /// The leadership term.
        term: u64,
        /// The position of its first byte.
        base: u64,
    },
    /// The log was cut at `position`.
    Truncate {
        /// The new end of the log.
        position: u64,
    },
    /// A snapshot was taken.
    Snapshot(SnapshotRecord),
}

/// Why the file cannot be opened, replayed or written.
#[derive(Debug, thiserror::Error)]
pub enum RecordingLogError {
    /// The file could not be read, written or synced.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The failure.
        source: io::Error,
    },
    /// The header is not a recording log's, or fails its checksum.
    #[error("{path}: not a recording log ({reason})")]
    Header {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        reason: &'static str,
    },
    /// The file is another member's, or of a version this build does not read.
    #[error(transparent)]
    Owner(#[from] OwnerError),
    /// A record before the last is damaged, or the records contradict each other.
    #[error("{path}: record {index} {reason}")]
    Record {
        /// The file.
        path: PathBuf,
        /// The record's index.
        index: usize,
        /// What is wrong.
        reason: &'static str,
    },
}

/// A member's open recording log.
#[derive(Debug)]
pub struct RecordingLog {
    file: File,
    path: PathBuf,
    records: Vec<Record>,
    /// Bytes of a torn last record cut off when the file was opened.
    repaired_bytes: u64,
}

impl RecordingLog {
    /// Creates the file in `dir` for `member_id`, with no records, whole or not at all; fails
    /// if it exists.
    pub fn create(dir: &Path, member_id: u32) -> Result<Self, RecordingLogError> {
        crate::durable_file::create_whole(dir, FILE_NAME, &header(member_id)).map_err(
            |source| RecordingLogError::Io {
                path: dir.join(FILE_NAME),
                source,
            },
        )?;
        Self::open(dir, member_id)
    }

    /// Opens the file in `dir` for `member_id`, reads every record and cuts off a torn last
    /// one ([`RecordingLog::repaired_bytes`]).
    pub fn open(dir: &Path, member_id: u32) -> Result<Self, RecordingLogError> {
        let path = dir.join(FILE_NAME);
        let io = |source| RecordingLogError::Io {
            path: path.clone(),
            source,
        };
        let (file, length) = crate::durable_file::open_existing(&path).map_err(io)?;
        let mut log = Self {
            file,
            path: path.clone(),
            records: Vec::new(),
            repaired_bytes: 0,
        };
        if length < RECORD_LENGTH_U64 {
            return Err(RecordingLogError::Header {
                path,
                reason: "shorter than its header",
            });
        }
        let mut bytes = vec![0u8; usize::try_from(length).expect("a recording log fits memory")];
        log.file.read_exact_at(&mut bytes, 0).map_err(io)?;
        log.records = parse(&path, &bytes, member_id)?;
        let valid_end = RECORD_LENGTH_U64 * (1 + u64::try_from(log.records.len()).expect("fits"));
        if valid_end < length {
            // A torn last record: part of an append that never completed.
            log.file
                .set_len(valid_end)
                .and_then(|()| log.file.sync_all())
                .map_err(io)?;
            log.repaired_bytes = length - valid_end;
        }
        // The records must replay; a file whose records contradict each other is refused now,
        // not when the member needs its history.
        log.term_history(u64::MAX)?;
        crate::durable_file::sync_dir(dir).map_err(|source| RecordingLogError::Io {
            path: dir.to_path_buf(),
            source,
        })?;
        Ok(log)
    }

    /// Reads the records in `dir` without changing the file, as the operator tools do while
    /// the member may be appending: a torn or half-written last record is left out, not cut.
    pub fn read_records(dir: &Path, member_id: u32) -> Result<Vec<Record>, RecordingLogError> {
        let path = dir.join(FILE_NAME);
        let bytes = std::fs::read(&path).map_err(|source| RecordingLogError::Io {
            path: path.clone(),
            source,
        })?;
        if bytes.len() < RECORD_LENGTH {
            return Err(RecordingLogError::Header {
                path,
                reason: "shorter than its header",
            });
        }
        parse(&path, &bytes, member_id)
    }

    /// Bytes of a torn last record cut off when the file was opened (0 when none).
    pub fn repaired_bytes(&self) -> u64 {
        self.repaired_bytes
    }

    /// Every record, oldest first.
    pub fn records(&self) -> &[Record] {
        &self.records
    }

    /// Appends `record` and syncs it; when this returns, a crash keeps it.
    pub fn append(&mut self, record: Record) -> Result<(), RecordingLogError> {
        self.append_all(std::slice::from_ref(&record))
    }

    /// Appends `records` in order with one sync at the end; when this returns, a crash keeps
    /// them all. A crash before may keep any part of them (pages reach the disk in no set
    /// order, and a damaged record before the last makes opening refuse the file), so a caller
    /// marks the change elsewhere until this returns, as a snapshot install does with its
    /// marker file, which clears the recording log at the next start.
    pub fn append_all(&mut self, records: &[Record]) -> Result<(), RecordingLogError> {
        let offset = RECORD_LENGTH_U64 * (1 + u64::try_from(self.records.len()).expect("fits"));
        let mut bytes = Vec::with_capacity(records.len() * RECORD_LENGTH);
        for &record in records {
            bytes.extend_from_slice(&encode(record));
        }
        self.file
            .write_all_at(&bytes, offset)
            .and_then(|()| self.file.sync_data())
            .map_err(|source| RecordingLogError::Io {
                path: self.path.clone(),
                source,
            })?;
        self.records.extend_from_slice(records);
        Ok(())
    }

    /// The term history the records give, cut to `log_end` (the log's recovered end).
    pub fn term_history(&self, log_end: u64) -> Result<TermHistory, RecordingLogError> {
        let mut terms: Vec<TermStart> = Vec::new();
        for (index, record) in self.records.iter().enumerate() {
            let refuse = |reason| RecordingLogError::Record {
                path: self.path.clone(),
                index,
                reason,
            };
            match *record {
                Record::Truncate { position } => {
                    let keep = terms.partition_point(|start| start.base < position);
                    terms.truncate(keep);
                }
                Record::Term { term, base } => {
                    let follows = match terms.last() {
                        Some(last) => term > last.term && base > last.base,
                        None => base == 0 && term > 0,
                    };
                    if !follows {
                        return Err(refuse("records a term that does not follow the one before"));
                    }
                    terms.push(TermStart { term, base });
                }
                Record::Snapshot(_) => {}
            }
        }
        let keep = terms.partition_point(|start| start.base < log_end);
        terms.truncate(keep);
        TermHistory::from_entries(terms).map_err(|error: TermHistoryError| {
            RecordingLogError::Record {
                path: self.path.clone(),
                index: self.records.len(),
                reason: match error {
                    TermHistoryError::OutOfOrder { .. } => "leaves terms out of order",
                    _ => "leaves an invalid term history",
                },
            }
        })
    }

    /// The snapshots recorded at or below `log_end`, newest first: recovery tries them in this
    /// order and takes the first that reads back whole.
    pub fn snapshots(&self, log_end: u64) -> impl Iterator<Item = SnapshotRecord> + '_ {
        self.records
            .iter()
            .rev()
            .filter_map(move |record| match *record {
                Record::Snapshot(snapshot) if snapshot.position <= log_end => Some(snapshot),
                _ => None,
            })
    }
}

/// The records of a whole file's bytes (its header checked): a last record that does not
/// decode is torn and left out; any other that does not is damage, refused.
fn parse(path: &Path, bytes: &[u8], member_id: u32) -> Result<Vec<Record>, RecordingLogError> {
    check_header(path, &bytes[..RECORD_LENGTH], member_id)?;
    let body = &bytes[RECORD_LENGTH..];
    let whole = body.len() / RECORD_LENGTH;
    let mut records = Vec::with_capacity(whole);
    for index in 0..whole {
        let raw = &body[index * RECORD_LENGTH..(index + 1) * RECORD_LENGTH];
        match decode(raw) {
            Ok(record) => records.push(record),
            Err(_) if index + 1 == whole => break,
            Err(reason) => {
                return Err(RecordingLogError::Record {
                    path: path.to_path_buf(),
                    index,
                    reason,
                });
            }
        }
    }
    Ok(records)
}

/// Where a rebuilt term history and the log disagree.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum TermMismatch {
    /// A term's first bytes are not its leader's first entry (a PAD may come before it).
    #[error("term {term} starts at {base}, but no new-leadership-term entry of term {term} does")]
    NoTermStart {
        /// The term.
        term: u64,
        /// Its recorded base.
        base: u64,
    },
    /// A new-leadership-term entry lies in another term's range.
    #[error("a new-leadership-term entry of term {found} lies at {position}, in term {recorded}")]
    Misattributed {
        /// The entry's position.
        position: u64,
        /// The term it names.
        found: u64,
        /// The term the history gives that position.
        recorded: u64,
    },
    /// The log does not read as valid entries in the range checked.
    #[error("the log does not read at {position}: {error}")]
    Unreadable {
        /// Where.
        position: u64,
        /// Why.
        error: crate::log_entry::EntryError,
    },
}

/// Checks a rebuilt term history against the log it describes, from `from` (an entry boundary:
/// the start, or a snapshot's position) to `to` (the log's end): every term that starts in the
/// range starts with its leader's new-leadership-term entry (after a PAD at most), and every
/// such entry lies in its own term. A term record lost to a bad disk (a file cut at a record
/// boundary reads as fewer records) shows up here, before the member trusts the history.
pub fn check_terms_against_log(
    history: &TermHistory,
    log: &(impl crate::consensus::LogView + ?Sized),
    from: u64,
    to: u64,
) -> Result<(), TermMismatch> {
    use crate::log_entry::{ENTRY_LENGTH_MAX, Entry, LogEvent};
    let read = |position: u64| {
        let bytes = log.read(position, u64::try_from(ENTRY_LENGTH_MAX).expect("fits"));
        Entry::read(bytes, position)
            .and_then(|entry| entry.event().map(|event| (entry, event)))
            .map_err(|error| TermMismatch::Unreadable { position, error })
    };
    for start in history.entries() {
        if start.base < from || start.base >= to {
            continue;
        }
        let (entry, event) = read(start.base)?;
        let event = if entry.pad {
            if start.base + entry.length >= to {
                // The PAD is all that survived of the term: its first entry was lost with the
                // log's tail.
                continue;
            }
            read(start.base + entry.length)?.1
        } else {
            event
        };
        let starts_term = matches!(
            event,
            Some(LogEvent::NewLeadershipTerm(ref term)) if term.term() == start.term
        );
        if !starts_term {
            return Err(TermMismatch::NoTermStart {
                term: start.term,
                base: start.base,
            });
        }
    }
    let mut position = from;
    while position < to {
        let (entry, event) = read(position)?;
        if let Some(LogEvent::NewLeadershipTerm(term)) = event {
            let recorded = history.term_at(position);
            if recorded != term.term() {
                return Err(TermMismatch::Misattributed {
                    position,
                    found: term.term(),
                    recorded,
                });
            }
        }
        position += entry.length;
    }
    Ok(())
}

fn header(member_id: u32) -> [u8; RECORD_LENGTH] {
    let mut bytes = [0u8; RECORD_LENGTH];
    bytes[0..8].copy_from_slice(&MAGIC);
    bytes[8..12].copy_from_slice(&VERSION.compose().to_le_bytes());
    bytes[12..16].copy_from_slice(&member_id.to_le_bytes());
    seal(&mut bytes);
    bytes
}

fn seal(bytes: &mut [u8; RECORD_LENGTH]) {
    let checksum = crc32c::crc32c(&bytes[..CHECKED]);
    bytes[CHECKED..].copy_from_slice(&checksum.to_le_bytes());
}

fn sealed(bytes: &[u8]) -> bool {
    let stored = u32::from_le_bytes(bytes[CHECKED..RECORD_LENGTH].try_into().expect("4 bytes"));
    crc32c::crc32c(&bytes[..CHECKED]) == stored
}

fn u32_at(bytes: &[u8], offset: usize) -> u32 {
    u32::from_le_bytes(bytes[offset..offset + 4].try_into().expect("4 bytes"))
}

fn u64_at(bytes: &[u8], offset: usize) -> u64 {
    u64::from_le_bytes(bytes[offset..offset + 8].try_into().expect("8 bytes"))
}

fn check_header(path: &Path, bytes: &[u8], member_id: u32) -> Result<(), RecordingLogError> {
    let refuse = |reason| RecordingLogError::Header {
        path: path.to_path_buf(),
        reason,
    };
    if bytes[0..8] != MAGIC {
        return Err(refuse("no magic"));
    }
    // The version before the checksum: a later major may lay the rest out otherwise.
    let version = SemanticVersion::decompose(u32_at(bytes, 8))
        .map_err(|_| refuse("an unreadable version"))?;
    crate::durable_file::check_version(path, version, VERSION)?;
    if !sealed(bytes) {
        return Err(refuse("checksum mismatch"));
    }
    crate::durable_file::check_member(path, u32_at(bytes, 12), member_id)?;
    Ok(())
}

fn encode(record: Record) -> [u8; RECORD_LENGTH] {
    let mut bytes = [0u8; RECORD_LENGTH];
    let (kind, a, b, c, d) = match record {
        Record::Term { term, base } => (KIND_TERM, term, base, 0, 0),
        Record::Truncate { position } => (KIND_TRUNCATE, position, 0, 0, 0),
        Record::Snapshot(snapshot) => (
            KIND_SNAPSHOT,
            snapshot.term,
            snapshot.position,
            snapshot.recording_id,
            snapshot.timestamp_ns,
        ),
    };
    bytes[0] = kind;
    bytes[8..16].copy_from_slice(&a.to_le_bytes());
    bytes[16..24].copy_from_slice(&b.to_le_bytes());
    bytes[24..32].copy_from_slice(&c.to_le_bytes());
    bytes[32..40].copy_from_slice(&d.to_le_bytes());
    seal(&mut bytes);
    bytes
}

fn decode(bytes: &[u8]) -> Result<Record, &'static str> {
    if !sealed(bytes) {
        return Err("fails its checksum");
    }
    let (a, b) = (u64_at(bytes, 8), u64_at(bytes, 16));
    match bytes[0] {
        KIND_TERM => Ok(Record::Term { term: a, base: b }),
        KIND_TRUNCATE => Ok(Record::Truncate { position: a }),
        KIND_SNAPSHOT => Ok(Record::Snapshot(SnapshotRecord {
            term: a,
            position: b,
            recording_id: u64_at(bytes, 24).cast_signed(),
            timestamp_ns: u64_at(bytes, 32),
        })),
        _ => Err("is of no known kind"),
    }
}

#[cfg(test)]
mod tests {
    use std::fs::OpenOptions;

    use super::*;

    fn snapshot(position: u64) -> Record {
        Record::Snapshot(SnapshotRecord {
            term: 2,
            position,
            recording_id: 7,
            timestamp_ns: 99,
        })
    }

    fn starts(history: &TermHistory) -> Vec<(u64, u64)> {
        history
            .entries()
            .iter()
            .map(|start| (start.term, start.base))
            .collect()
    }

    fn scribble(dir: &Path, offset: u64, bytes: &[u8]) {
        let file = OpenOptions::new()
            .write(true)
            .open(dir.join(FILE_NAME))
            .unwrap();
        file.write_all_at(bytes, offset).unwrap();
    }

    #[test]
    fn records_read_back_and_replay_into_the_term_history() {
        let dir = tempfile::tempdir().unwrap();
        let mut log = RecordingLog::create(dir.path(), 1).unwrap();
        assert!(log.records().is_empty());
        log.append(Record::Term { term: 1, base: 0 }).unwrap();
        log.append(Record::Term { term: 2, base: 640 }).unwrap();
        log.append(snapshot(512)).unwrap();
        // A follower cut back into term 1 and took term 1's later bytes from its leader: the
        // truncate record is what says term 2's range is gone.
        log.append(Record::Truncate { position: 640 }).unwrap();
        log.append(Record::Term {
            term: 3,
            base: 1024,
        })
        .unwrap();
        drop(log);
        let log = RecordingLog::open(dir.path(), 1).unwrap();
        assert_eq!(log.records().len(), 5);
        assert_eq!(log.repaired_bytes(), 0);
        assert_eq!(
            starts(&log.term_history(2048).unwrap()),
            [(1, 0), (3, 1024)]
        );
        // Term 3's bytes lost in a crash: recovery's log end cuts its record.
        assert_eq!(starts(&log.term_history(1024).unwrap()), [(1, 0)]);
        assert_eq!(log.snapshots(2048).collect::<Vec<_>>().len(), 1);
        assert_eq!(log.snapshots(500).count(), 0, "a snapshot past the log end");
    }

    /// An installed snapshot's records: the log cut to nothing, the leader's terms, the
    /// snapshot, written at once, replay into the leader's history from a log that starts at the
    /// snapshot, whatever terms the member had recorded before.
    #[test]
    fn records_appended_together_replay_in_order() {
        let dir = tempfile::tempdir().unwrap();
        let mut log = RecordingLog::create(dir.path(), 2).unwrap();
        log.append(Record::Term { term: 1, base: 0 }).unwrap();
        log.append(Record::Term { term: 2, base: 320 }).unwrap();
        log.append_all(&[
            Record::Truncate { position: 0 },
            Record::Term { term: 1, base: 0 },
            Record::Term { term: 3, base: 256 },
            snapshot(4096),
        ])
        .unwrap();
        drop(log);
        let log = RecordingLog::open(dir.path(), 2).unwrap();
        assert_eq!(log.records().len(), 6);
        assert_eq!(starts(&log.term_history(4096).unwrap()), [(1, 0), (3, 256)]);
        assert_eq!(
            log.snapshots(4096).map(|s| s.position).collect::<Vec<_>>(),
            [4096]
        );
    }

    #[test]
    fn a_torn_last_record_is_cut_off_and_said() {
        let dir = tempfile::tempdir().unwrap();
        let mut log = RecordingLog::create(dir.path(), 0).unwrap();
        log.append(Record::Term { term: 1, base: 0 }).unwrap();
        log.append(Record::Term { term: 4, base: 96 }).unwrap();
        drop(log);
        // Half of the second record's bytes made it.
        scribble(dir.path(), 128 + 20, &[0xEE; 10]);
        // The operator tools read it as it is, leaving the file alone.
        assert_eq!(
            RecordingLog::read_records(dir.path(), 0).unwrap(),
            [Record::Term { term: 1, base: 0 }]
        );
        assert_eq!(
            std::fs::metadata(dir.path().join(FILE_NAME)).unwrap().len(),
            64 * 3
        );
        assert!(
            RecordingLog::read_records(dir.path(), 1).is_err(),
            "another member's"
        );
        let mut log = RecordingLog::open(dir.path(), 0).unwrap();
        assert_eq!(log.repaired_bytes(), 64);
        assert_eq!(log.records(), [Record::Term { term: 1, base: 0 }]);
        // A partial record past the end (the file grew by less than a record).
        log.append(Record::Term { term: 5, base: 96 }).unwrap();
        drop(log);
        let file = OpenOptions::new()
            .write(true)
            .open(dir.path().join(FILE_NAME))
            .unwrap();
        file.set_len(64 * 3 + 17).unwrap();
        drop(file);
        let log = RecordingLog::open(dir.path(), 0).unwrap();
        assert_eq!(log.repaired_bytes(), 17);
        assert_eq!(starts(&log.term_history(200).unwrap()), [(1, 0), (5, 96)]);
        let length = std::fs::metadata(dir.path().join(FILE_NAME)).unwrap().len();
        assert_eq!(length, 64 * 3, "the repair is on disk");
    }

    #[test]
    fn damage_before_the_last_record_another_member_or_version_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let mut log = RecordingLog::create(dir.path(), 2).unwrap();
        log.append(Record::Term { term: 1, base: 0 }).unwrap();
        log.append(Record::Term { term: 2, base: 64 }).unwrap();
        drop(log);
        assert!(matches!(
            RecordingLog::open(dir.path(), 3),
            Err(RecordingLogError::Owner(OwnerError::OtherMember {
                found: 2,
                expected: 3,
                ..
            }))
        ));
        scribble(dir.path(), 64 + 9, &[1]);
        let error = RecordingLog::open(dir.path(), 2).unwrap_err();
        assert!(
            matches!(error, RecordingLogError::Record { index: 0, .. }),
            "{error}"
        );

        let other = tempfile::tempdir().unwrap();
        drop(RecordingLog::create(other.path(), 2).unwrap());
        let mut newer = header(2);
        newer[8..12].copy_from_slice(&SemanticVersion::new(2, 0, 0).compose().to_le_bytes());
        seal(&mut newer);
        scribble(other.path(), 0, &newer);
        assert!(matches!(
            RecordingLog::open(other.path(), 2),
            Err(RecordingLogError::Owner(OwnerError::Version { .. }))
        ));
        scribble(other.path(), 0, b"NOTALOG!");
        assert!(matches!(
            RecordingLog::open(other.path(), 2),
            Err(RecordingLogError::Header { .. })
        ));
    }

    #[test]
    fn records_that_contradict_each_other_are_refused_not_a_panic() {
        let dir = tempfile::tempdir().unwrap();
        let mut log = RecordingLog::create(dir.path(), 0).unwrap();
        log.append(Record::Term { term: 3, base: 0 }).unwrap();
        log.append(Record::Term { term: 2, base: 64 }).unwrap();
        drop(log);
        let error = RecordingLog::open(dir.path(), 0).unwrap_err();
        assert!(
            matches!(error, RecordingLogError::Record { index: 1, .. }),
            "{error}"
        );
        let first_not_at_zero = tempfile::tempdir().unwrap();
        let mut log = RecordingLog::create(first_not_at_zero.path(), 0).unwrap();
        log.append(Record::Term { term: 1, base: 32 }).unwrap();
        drop(log);
        assert!(RecordingLog::open(first_not_at_zero.path(), 0).is_err());
    }

    #[test]
    fn a_history_that_lost_a_term_record_disagrees_with_the_log() {
        use crate::local::LocalCluster;
        // A real log of three terms: elect, commit, isolate the leader, elect again, twice.
        let mut cluster = LocalCluster::new(3, 13).unwrap();
        let mut leader = cluster.elect(1_000_000, 10_000_000_000).unwrap();
        for round in 0..3 {
            let command = crate::kv::Command::Put {
                key: 1,
                value: round,
            }
            .encode(0);
            cluster.submit(leader, 1, round + 1, &command).unwrap();
            cluster.tick();
            cluster.advance(100_000_000);
            if round < 2 {
                cluster.set_isolated(leader, true);
                let old = leader;
                for _ in 0..400 {
                    cluster.advance(10_000_000);
                    if let Some(new) = cluster.leader().filter(|&new| new != old) {
                        leader = new;
                        break;
                    }
                }
                cluster.set_isolated(old, false);
                cluster.advance(300_000_000);
            }
        }
        let member = cluster.member(leader);
        let log = member.log.clone();
        let history = member.consensus.term_history().clone();
        let end = u64::try_from(log.len()).unwrap();
        assert!(history.entries().len() >= 3, "{:?}", history.entries());
        check_terms_against_log(&history, &log, 0, end).unwrap();

        // The last term's record lost: its entries are taken for the term before.
        let mut lost = history.entries().to_vec();
        let last = lost.pop().unwrap();
        let cut = TermHistory::from_entries(lost).unwrap();
        assert!(matches!(
            check_terms_against_log(&cut, &log, 0, end),
            Err(TermMismatch::Misattributed { position, found, .. })
                if position == last.base && found == last.term
        ));
        // A term recorded where its leader did not start.
        let mut shifted = history.entries().to_vec();
        let index = shifted.len() - 1;
        shifted[index].base += 32 * 4;
        let shifted = TermHistory::from_entries(shifted).unwrap();
        assert!(check_terms_against_log(&shifted, &log, 0, end).is_err());
    }

    #[test]
    fn a_term_may_start_with_a_pad_and_a_pad_alone_may_survive_of_it() {
        use crate::log_entry::{
            LogFormat, TERM_LENGTH_MIN, new_leadership_term, session_message, timer_fired,
        };
        let format = LogFormat::new(TERM_LENGTH_MIN).unwrap();
        let mut log = Vec::new();
        let append = |log: &mut Vec<u8>, term: Option<u64>| {
            let position = u64::try_from(log.len()).unwrap();
            format
                .append_entry(log, position, |buf| match term {
                    Some(term) => {
                        let mut encoder = new_leadership_term::Encoder::wrap(buf)?;
                        encoder.term(term);
                        Ok(encoder.finish())
                    }
                    None => {
                        let mut encoder = timer_fired::Encoder::wrap(buf)?;
                        encoder.correlation_id(position);
                        Ok(encoder.finish())
                    }
                })
                .unwrap()
        };
        append(&mut log, Some(1));
        // One 96-byte entry, then 64-byte ones: the term's last 32 bytes are too few for the
        // next term's 64-byte first entry.
        format
            .append_entry(&mut log, 64, |buf| {
                let mut encoder = session_message::Encoder::wrap(buf)?;
                encoder.session_id(1).request_id(1);
                Ok(encoder.payload(&[0; 28])?.finish())
            })
            .unwrap();
        assert_eq!(log.len(), 160);
        while log.len() < 16 * 1024 - 32 {
            append(&mut log, None);
        }
        let pad_at = u64::try_from(log.len()).unwrap();
        let written = append(&mut log, Some(2));
        assert!(
            written.position > pad_at,
            "the new term's entry follows a PAD"
        );
        let end = u64::try_from(log.len()).unwrap();
        let two_terms = TermHistory::from_entries(vec![
            TermStart { term: 1, base: 0 },
            TermStart {
                term: 2,
                base: pad_at,
            },
        ])
        .unwrap();
        check_terms_against_log(&two_terms, &log, 0, end).unwrap();
        // Only the PAD survived a crash: the term's first entry went with the tail.
        check_terms_against_log(&two_terms, &log, 0, written.position).unwrap();
        // Term 2's record lost.
        let one_term = TermHistory::from_entries(vec![TermStart { term: 1, base: 0 }]).unwrap();
        assert!(matches!(
            check_terms_against_log(&one_term, &log, 0, end),
            Err(TermMismatch::Misattributed {
                found: 2,
                recorded: 1,
                ..
            })
        ));
    }

    #[test]
    fn a_missing_or_headless_file_is_refused_and_a_file_is_created_once() {
        let dir = tempfile::tempdir().unwrap();
        assert!(matches!(
            RecordingLog::open(dir.path(), 6),
            Err(RecordingLogError::Io { .. })
        ));
        drop(RecordingLog::create(dir.path(), 6).unwrap());
        assert!(RecordingLog::create(dir.path(), 6).is_err(), "created once");
        std::fs::write(dir.path().join(FILE_NAME), b"TERN").unwrap();
        assert!(matches!(
            RecordingLog::open(dir.path(), 6),
            Err(RecordingLogError::Header { .. })
        ));
    }
}
