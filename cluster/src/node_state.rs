//! A member's durable term and vote: the record the consensus core asks to be on disk before it
//! carries out any later output ([`Output::PersistVote`](crate::consensus::Output::PersistVote)).
//!
//! The file `node-state` in a member's directory holds two 512-byte slots, at offsets 0 and
//! 512. Each write goes to the slot the older record is in, with a sequence number one past the
//! newer one, and is synced before [`NodeState::persist`] returns; so a write torn by a crash
//! leaves the newer of the two earlier records whole, and that record is what the member had
//! said before the torn write began (the core sends nothing that depends on a vote before the
//! vote is persisted). A slot reads:
//!
//! ```text
//! 0  magic "TERNNODE"   8  version (composed semantic)   12  member id
//! 16 sequence (u64)     24 current term (u64)            32  voted for (i64, -1: none)
//! 40 CRC-32C of bytes 0..40
//! ```
//!
//! Creating the file writes and syncs an initial record (term 0, no vote, sequence 0) in the
//! first slot and syncs the directory, so the file never vanishes in a crash once a vote is in
//! it, and a torn first vote leaves the initial record. Opening reads both slots and keeps the
//! valid one with the higher sequence; a torn initial record with the second slot never written
//! means nothing was ever persisted, and reads as the initial record. Any other file with no
//! valid slot, one of another member, or one of another major version is refused with an error
//! that names what was found: a member that forgot its vote could vote twice in one term.
//!
//! One owner writes the file: the member running in the directory (whose node holds the
//! directory's lock), on the thread that carries out its consensus core's outputs.

use std::fs::{File, OpenOptions};
use std::io;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use tern_codec::SemanticVersion;

/// The file's name in a member's directory.
pub const FILE_NAME: &str = "node-state";
/// This build's version of the file.
pub const VERSION: SemanticVersion = SemanticVersion::new(1, 0, 0);
const MAGIC: [u8; 8] = *b"TERNNODE";
/// Bytes in a slot: a sector, which most devices write whole, though nothing here relies on it.
const SLOT_LENGTH: usize = 512;
/// Bytes of a record the checksum covers.
const RECORD_LENGTH: usize = 40;
const NO_VOTE: i64 = -1;
/// Why a slot of zeros is not a record.
const NEVER_WRITTEN: &str = "never written";

/// The term and vote a member has made durable.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TermAndVote {
    /// The current term.
    pub current_term: u64,
    /// The member voted for in `current_term`, if any.
    pub voted_for: Option<u32>,
}

/// Why the file cannot be opened or written.
#[derive(Debug, thiserror::Error)]
pub enum NodeStateError {
    /// The file could not be read, written or synced.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The failure.
        source: io::Error,
    },
    /// Neither slot holds a valid record: the member cannot know what it voted.
    #[error(
        "{path}: neither slot holds a valid record ({first}; {second}); the member must not start"
    )]
    NoValidRecord {
        /// The file.
        path: PathBuf,
        /// What is wrong with the first slot.
        first: &'static str,
        /// What is wrong with the second slot.
        second: &'static str,
    },
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
    #[error("{path} is version {found}; this build reads {VERSION}")]
    Version {
        /// The file.
        path: PathBuf,
        /// The version found.
        found: SemanticVersion,
    },
}

/// A member's open node-state file.
#[derive(Debug)]
pub struct NodeState {
    file: File,
    path: PathBuf,
    member_id: u32,
    current: TermAndVote,
    /// The sequence of the newest record, and so which slot holds it.
    sequence: u64,
}

impl NodeState {
    /// Opens (or creates, empty) the file in `dir` for `member_id`, and reads the newest valid
    /// record; a new file reads as term 0 with no vote.
    pub fn open(dir: &Path, member_id: u32) -> Result<Self, NodeStateError> {
        let path = dir.join(FILE_NAME);
        let io = |source| NodeStateError::Io {
            path: path.clone(),
            source,
        };
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)
            .map_err(io)?;
        let length = file.metadata().map_err(io)?.len();
        let mut state = Self {
            file,
            path: path.clone(),
            member_id,
            current: TermAndVote::default(),
            sequence: 0,
        };
        if length == 0 {
            state.write_initial_record()?;
            File::open(dir).and_then(|dir| dir.sync_all()).map_err(io)?;
            return Ok(state);
        }
        let mut slots = [[0u8; SLOT_LENGTH]; 2];
        for (index, slot) in slots.iter_mut().enumerate() {
            let offset = u64::try_from(index * SLOT_LENGTH).expect("small");
            read_fully(&state.file, slot, offset).map_err(io)?;
        }
        let first = decode(&slots[0]);
        let second = decode(&slots[1]);
        let newest = match (first, second) {
            (Ok(a), Ok(b)) => Some(if a.sequence >= b.sequence { a } else { b }),
            (Ok(a), Err(_)) => Some(a),
            (Err(_), Ok(b)) => Some(b),
            (Err(_), Err(NEVER_WRITTEN)) => {
                // Only the initial record was ever written, and its write was torn.
                state.write_initial_record()?;
                return Ok(state);
            }
            (Err(first), Err(second)) => {
                return Err(NodeStateError::NoValidRecord {
                    path,
                    first,
                    second,
                });
            }
        };
        let record = newest.expect("one slot is valid");
        if !record.version.is_compatible_with(VERSION) {
            return Err(NodeStateError::Version {
                path,
                found: record.version,
            });
        }
        if record.member_id != member_id {
            return Err(NodeStateError::OtherMember {
                path,
                found: record.member_id,
                expected: member_id,
            });
        }
        state.current = record.state;
        state.sequence = record.sequence;
        Ok(state)
    }

    /// Writes and syncs the initial record (sequence 0: term 0, no vote) in the first slot.
    fn write_initial_record(&mut self) -> Result<(), NodeStateError> {
        let slot = encode(self.member_id, 0, TermAndVote::default());
        self.write_slot(&slot, 0)
    }

    fn write_slot(&mut self, slot: &[u8; SLOT_LENGTH], offset: u64) -> Result<(), NodeStateError> {
        let io = |source| NodeStateError::Io {
            path: self.path.clone(),
            source,
        };
        self.file.write_all_at(slot, offset).map_err(io)?;
        self.file.sync_data().map_err(io)
    }

    /// The durable term and vote.
    pub fn current(&self) -> TermAndVote {
        self.current
    }

    /// Writes `state` over the older record and syncs it; when this returns, a crash keeps it.
    pub fn persist(&mut self, state: TermAndVote) -> Result<(), NodeStateError> {
        let sequence = self.sequence + 1;
        let slot = encode(self.member_id, sequence, state);
        let offset = u64::try_from(usize::try_from(sequence % 2).expect("0 or 1") * SLOT_LENGTH)
            .expect("small");
        self.write_slot(&slot, offset)?;
        self.sequence = sequence;
        self.current = state;
        Ok(())
    }
}

/// Reads `buf.len()` bytes at `offset`, zeros past the file's end.
fn read_fully(file: &File, buf: &mut [u8], offset: u64) -> io::Result<()> {
    let mut done = 0;
    while done < buf.len() {
        let at = offset + u64::try_from(done).expect("small");
        match file.read_at(&mut buf[done..], at) {
            Ok(0) => {
                buf[done..].fill(0);
                return Ok(());
            }
            Ok(read) => done += read,
            Err(error) if error.kind() == io::ErrorKind::Interrupted => {}
            Err(error) => return Err(error),
        }
    }
    Ok(())
}

struct Record {
    version: SemanticVersion,
    member_id: u32,
    sequence: u64,
    state: TermAndVote,
}

fn encode(member_id: u32, sequence: u64, state: TermAndVote) -> [u8; SLOT_LENGTH] {
    let mut slot = [0u8; SLOT_LENGTH];
    slot[0..8].copy_from_slice(&MAGIC);
    slot[8..12].copy_from_slice(&VERSION.compose().to_le_bytes());
    slot[12..16].copy_from_slice(&member_id.to_le_bytes());
    slot[16..24].copy_from_slice(&sequence.to_le_bytes());
    slot[24..32].copy_from_slice(&state.current_term.to_le_bytes());
    let voted_for = state.voted_for.map_or(NO_VOTE, i64::from);
    slot[32..40].copy_from_slice(&voted_for.to_le_bytes());
    let checksum = crc32c::crc32c(&slot[..RECORD_LENGTH]);
    slot[RECORD_LENGTH..RECORD_LENGTH + 4].copy_from_slice(&checksum.to_le_bytes());
    slot
}

fn decode(slot: &[u8; SLOT_LENGTH]) -> Result<Record, &'static str> {
    if slot[..RECORD_LENGTH + 4].iter().all(|&byte| byte == 0) {
        return Err(NEVER_WRITTEN);
    }
    if slot[0..8] != MAGIC {
        return Err("not a node-state record");
    }
    let stored = u32::from_le_bytes(
        slot[RECORD_LENGTH..RECORD_LENGTH + 4]
            .try_into()
            .expect("4"),
    );
    if crc32c::crc32c(&slot[..RECORD_LENGTH]) != stored {
        return Err("checksum mismatch (a torn write)");
    }
    let word = |range: std::ops::Range<usize>| -> [u8; 8] { slot[range].try_into().expect("8") };
    let version =
        SemanticVersion::decompose(u32::from_le_bytes(slot[8..12].try_into().expect("4")))
            .map_err(|_| "an unreadable version")?;
    let voted_for = match i64::from_le_bytes(word(32..40)) {
        NO_VOTE => None,
        id => Some(u32::try_from(id).map_err(|_| "a vote for no member")?),
    };
    Ok(Record {
        version,
        member_id: u32::from_le_bytes(slot[12..16].try_into().expect("4")),
        sequence: u64::from_le_bytes(word(16..24)),
        state: TermAndVote {
            current_term: u64::from_le_bytes(word(24..32)),
            voted_for,
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn state(term: u64, vote: Option<u32>) -> TermAndVote {
        TermAndVote {
            current_term: term,
            voted_for: vote,
        }
    }

    /// Overwrites bytes of the file, as a torn write or a bad disk would.
    fn scribble(dir: &Path, offset: u64, bytes: &[u8]) {
        let file = OpenOptions::new()
            .write(true)
            .open(dir.join(FILE_NAME))
            .unwrap();
        file.write_all_at(bytes, offset).unwrap();
    }

    #[test]
    fn a_new_file_reads_as_term_zero_and_every_persisted_state_reads_back() {
        let dir = tempfile::tempdir().unwrap();
        let mut node = NodeState::open(dir.path(), 2).unwrap();
        assert_eq!(node.current(), TermAndVote::default());
        for term in 1..=5 {
            node.persist(state(term, Some(1))).unwrap();
            node.persist(state(term, None)).unwrap();
            assert_eq!(
                NodeState::open(dir.path(), 2).unwrap().current(),
                state(term, None)
            );
        }
        node.persist(state(9, Some(0))).unwrap();
        drop(node);
        assert_eq!(
            NodeState::open(dir.path(), 2).unwrap().current(),
            state(9, Some(0))
        );
    }

    #[test]
    fn a_torn_newest_record_falls_back_to_the_one_before() {
        let dir = tempfile::tempdir().unwrap();
        let mut node = NodeState::open(dir.path(), 0).unwrap();
        node.persist(state(3, Some(1))).unwrap(); // sequence 1: the second slot
        node.persist(state(4, Some(0))).unwrap(); // sequence 2: the first slot
        drop(node);
        // The write of sequence 2 torn: half its record reached the disk over garbage.
        scribble(dir.path(), 20, &[0xAB; 12]);
        let node = NodeState::open(dir.path(), 0).unwrap();
        assert_eq!(node.current(), state(3, Some(1)));
        // The next write goes over the torn slot, never over the good one.
        let mut node = node;
        node.persist(state(5, None)).unwrap();
        scribble(dir.path(), 512 + 30, &[0xCD; 4]);
        assert_eq!(
            NodeState::open(dir.path(), 0).unwrap().current(),
            state(5, None)
        );
    }

    #[test]
    fn a_file_with_no_valid_record_another_member_or_major_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let mut node = NodeState::open(dir.path(), 1).unwrap();
        node.persist(state(2, Some(1))).unwrap();
        drop(node);
        let error = NodeState::open(dir.path(), 2).unwrap_err();
        assert!(matches!(
            error,
            NodeStateError::OtherMember {
                found: 1,
                expected: 2,
                ..
            }
        ));

        // Another major version, with a valid checksum.
        let mut newer = encode(1, 7, state(8, None));
        newer[8..12].copy_from_slice(&SemanticVersion::new(2, 0, 0).compose().to_le_bytes());
        let checksum = crc32c::crc32c(&newer[..RECORD_LENGTH]);
        newer[RECORD_LENGTH..RECORD_LENGTH + 4].copy_from_slice(&checksum.to_le_bytes());
        scribble(dir.path(), 0, &newer);
        let error = NodeState::open(dir.path(), 1).unwrap_err();
        assert!(matches!(error, NodeStateError::Version { .. }), "{error}");

        scribble(dir.path(), 0, &[0x11; 64]);
        let mut torn = encode(1, 9, state(9, Some(1)));
        torn[20] ^= 0xFF;
        scribble(dir.path(), 512, &torn);
        let error = NodeState::open(dir.path(), 1).unwrap_err();
        let text = error.to_string();
        assert!(
            matches!(error, NodeStateError::NoValidRecord { .. }),
            "{text}"
        );
        assert!(
            text.contains("not a node-state record") && text.contains("checksum"),
            "{text}"
        );
    }

    #[test]
    fn a_torn_first_vote_leaves_the_initial_record_and_a_torn_initial_record_reads_as_new() {
        let dir = tempfile::tempdir().unwrap();
        drop(NodeState::open(dir.path(), 4).unwrap());
        assert_eq!(
            std::fs::metadata(dir.path().join(FILE_NAME)).unwrap().len(),
            u64::try_from(SLOT_LENGTH).unwrap(),
            "the initial record is on disk"
        );
        // The first vote (the second slot) torn.
        scribble(dir.path(), 512, &[0x5A; 30]);
        let mut node = NodeState::open(dir.path(), 4).unwrap();
        assert_eq!(node.current(), TermAndVote::default());
        node.persist(state(1, Some(4))).unwrap();
        assert_eq!(
            NodeState::open(dir.path(), 4).unwrap().current(),
            state(1, Some(4))
        );

        // The initial record itself torn, nothing after it: nothing was ever persisted.
        let fresh = tempfile::tempdir().unwrap();
        drop(NodeState::open(fresh.path(), 4).unwrap());
        scribble(fresh.path(), 16, &[0x77; 8]);
        let mut node = NodeState::open(fresh.path(), 4).unwrap();
        assert_eq!(node.current(), TermAndVote::default());
        node.persist(state(2, None)).unwrap();
        assert_eq!(
            NodeState::open(fresh.path(), 4).unwrap().current(),
            state(2, None)
        );
    }

    #[test]
    fn a_vote_for_no_member_is_not_a_valid_record() {
        let mut slot = encode(0, 1, state(1, None));
        slot[32..40].copy_from_slice(&(-5i64).to_le_bytes());
        let checksum = crc32c::crc32c(&slot[..RECORD_LENGTH]);
        slot[RECORD_LENGTH..RECORD_LENGTH + 4].copy_from_slice(&checksum.to_le_bytes());
        assert!(decode(&slot).is_err());
        let slot = encode(0, 1, state(1, Some(u32::MAX)));
        assert_eq!(decode(&slot).unwrap().state.voted_for, Some(u32::MAX));
    }
}
