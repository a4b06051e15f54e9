//! A member's durable term and vote: the record the consensus core asks to be on disk before it
//! carries out any later output ([`Output::PersistVote`](crate::consensus::Output::PersistVote)).
//!
//! The file `node-state` in a member's directory is 8 KiB: two slots, each at the start of its
//! own 4 KiB block (offsets 0 and 4096), so that writing one never rewrites the other's sector
//! or page. Slot `i` holds the records whose sequence number is `i` modulo 2; each write goes
//! to the slot of the older record, one sequence past the newer, and is synced before
//! [`NodeState::persist`] returns. A write torn by a crash therefore leaves the newer of the two
//! earlier records whole, and that is what the member had said before the torn write began (the
//! core sends nothing that depends on a vote before the vote is persisted). A slot reads:
//!
//! ```text
//! 0  magic "TERNNODE"   8  version (composed semantic)   12  member id
//! 16 sequence (u64)     24 current term (u64)            32  voted for (i64, -1: none)
//! 40 CRC-32C of bytes 0..40
//! ```
//!
//! [`NodeState::create`] writes the whole file (sequences 0 and 1, term 0, no vote) under a
//! temporary name, syncs it, renames it into place and syncs the directory: the file exists
//! whole or not at all. [`NodeState::open`] refuses a missing file, a file of another length
//! (a bad disk cut it), two valid slots whose sequences are not consecutive, a slot whose
//! sequence is in the other slot's parity, and a file with no valid slot; each error names what
//! it found. A member that read an old or blank vote could vote twice in one term, so nothing
//! here guesses. Only the member's node knows whether its directory is new, and so whether to
//! create or to open.
//!
//! One owner writes the file: the member running in the directory (whose node holds the
//! directory's lock), on the thread that carries out its consensus core's outputs. A failed
//! [`NodeState::persist`] is fatal to the member: the record may be half on disk, and the core
//! must not go on as if it were either.

use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use tern_codec::SemanticVersion;

use crate::durable_file::{self, OwnerError};

/// The file's name in a member's directory.
pub const FILE_NAME: &str = "node-state";
/// This build's version of the file.
pub const VERSION: SemanticVersion = SemanticVersion::new(1, 0, 0);
const MAGIC: [u8; 8] = *b"TERNNODE";
/// Bytes between the slots: a page, so that no device writes both in one operation.
const SLOT_STRIDE: usize = 4096;
/// The file's only valid length.
const FILE_LENGTH: u64 = 2 * SLOT_STRIDE as u64;
/// Bytes of a record the checksum covers.
const CHECKED: usize = 40;
/// Bytes of a record.
const RECORD_LENGTH: usize = CHECKED + 4;
const NO_VOTE: i64 = -1;

/// The term and vote a member has made durable.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TermAndVote {
    /// The current term.
    pub current_term: u64,
    /// The member voted for in `current_term`, if any.
    pub voted_for: Option<u32>,
}

/// Why the file cannot be created, opened or written.
#[derive(Debug, thiserror::Error)]
pub enum NodeStateError {
    /// A file or directory could not be read, written or synced.
    #[error("{path}: {source}")]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// The failure.
        source: io::Error,
    },
    /// The file is not as long as a node-state file is: a bad disk or another program cut or
    /// grew it.
    #[error("{path} is {found} bytes; a node-state file is {FILE_LENGTH}")]
    Length {
        /// The file.
        path: PathBuf,
        /// Its length.
        found: u64,
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
    /// Both slots are valid but their sequences are not consecutive: not what alternating
    /// writes leave.
    #[error("{path}: the slots hold sequences {first} and {second}, which are not consecutive")]
    Inconsistent {
        /// The file.
        path: PathBuf,
        /// The first slot's sequence.
        first: u64,
        /// The second slot's sequence.
        second: u64,
    },
    /// The file is another member's, or of a version this build does not read.
    #[error(transparent)]
    Owner(#[from] OwnerError),
    /// The sequence numbers are used up (only a forged file gets there).
    #[error("{path}: the record sequence is exhausted")]
    Exhausted {
        /// The file.
        path: PathBuf,
    },
}

/// A member's open node-state file.
#[derive(Debug)]
pub struct NodeState {
    file: File,
    path: PathBuf,
    member_id: u32,
    current: TermAndVote,
    /// The sequence of the newest record, and so (by its parity) which slot holds it.
    sequence: u64,
}

impl NodeState {
    /// Creates the file in `dir` for `member_id` (term 0, no vote), whole or not at all; fails
    /// if it exists.
    pub fn create(dir: &Path, member_id: u32) -> Result<Self, NodeStateError> {
        let mut bytes = vec![0u8; SLOT_STRIDE * 2];
        for sequence in [0u64, 1] {
            let start = SLOT_STRIDE * usize::from(sequence == 1);
            bytes[start..start + RECORD_LENGTH].copy_from_slice(&encode(
                member_id,
                sequence,
                TermAndVote::default(),
            ));
        }
        durable_file::create_whole(dir, FILE_NAME, &bytes).map_err(|source| {
            NodeStateError::Io {
                path: dir.join(FILE_NAME),
                source,
            }
        })?;
        Self::open(dir, member_id)
    }

    /// Opens the file in `dir` for `member_id` and reads the newest valid record.
    pub fn open(dir: &Path, member_id: u32) -> Result<Self, NodeStateError> {
        let path = dir.join(FILE_NAME);
        let io = |source| NodeStateError::Io {
            path: path.clone(),
            source,
        };
        let (file, length) = durable_file::open_existing(&path).map_err(io)?;
        if length != FILE_LENGTH {
            return Err(NodeStateError::Length {
                path,
                found: length,
            });
        }
        let mut slots = [[0u8; RECORD_LENGTH]; 2];
        for (index, slot) in slots.iter_mut().enumerate() {
            let offset = u64::try_from(index * SLOT_STRIDE).expect("small");
            file.read_exact_at(slot, offset).map_err(io)?;
        }
        let first = decode(&slots[0], 0);
        let second = decode(&slots[1], 1);
        for record in [&first, &second].into_iter().flatten() {
            durable_file::check_version(&path, record.version, VERSION)?;
            durable_file::check_member(&path, record.member_id, member_id)?;
        }
        let newest = match (first, second) {
            (Ok(a), Ok(b)) => {
                if a.sequence.abs_diff(b.sequence) != 1 {
                    return Err(NodeStateError::Inconsistent {
                        path,
                        first: a.sequence,
                        second: b.sequence,
                    });
                }
                if a.sequence > b.sequence { a } else { b }
            }
            (Ok(a), Err(_)) => a,
            (Err(_), Ok(b)) => b,
            (Err(first), Err(second)) => {
                return Err(NodeStateError::NoValidRecord {
                    path,
                    first,
                    second,
                });
            }
        };
        if newest.sequence == u64::MAX {
            return Err(NodeStateError::Exhausted { path });
        }
        durable_file::sync_dir(dir).map_err(|source| NodeStateError::Io {
            path: dir.to_path_buf(),
            source,
        })?;
        Ok(Self {
            file,
            path,
            member_id,
            current: newest.state,
            sequence: newest.sequence,
        })
    }

    /// The durable term and vote.
    pub fn current(&self) -> TermAndVote {
        self.current
    }

    /// Writes `state` over the older record and syncs it; when this returns, a crash keeps it.
    /// An error is fatal to the member (see the module docs).
    pub fn persist(&mut self, state: TermAndVote) -> Result<(), NodeStateError> {
        let Some(sequence) = self.sequence.checked_add(1) else {
            return Err(NodeStateError::Exhausted {
                path: self.path.clone(),
            });
        };
        let slot = encode(self.member_id, sequence, state);
        let offset = u64::try_from(slot_of(sequence) * SLOT_STRIDE).expect("small");
        self.file
            .write_all_at(&slot, offset)
            .and_then(|()| self.file.sync_data())
            .map_err(|source| NodeStateError::Io {
                path: self.path.clone(),
                source,
            })?;
        self.sequence = sequence;
        self.current = state;
        Ok(())
    }
}

/// The slot a sequence's record lives in.
fn slot_of(sequence: u64) -> usize {
    usize::from(sequence % 2 == 1)
}

struct Record {
    version: SemanticVersion,
    member_id: u32,
    sequence: u64,
    state: TermAndVote,
}

fn encode(member_id: u32, sequence: u64, state: TermAndVote) -> [u8; RECORD_LENGTH] {
    let mut slot = [0u8; RECORD_LENGTH];
    slot[0..8].copy_from_slice(&MAGIC);
    slot[8..12].copy_from_slice(&VERSION.compose().to_le_bytes());
    slot[12..16].copy_from_slice(&member_id.to_le_bytes());
    slot[16..24].copy_from_slice(&sequence.to_le_bytes());
    slot[24..32].copy_from_slice(&state.current_term.to_le_bytes());
    let voted_for = state.voted_for.map_or(NO_VOTE, i64::from);
    slot[32..40].copy_from_slice(&voted_for.to_le_bytes());
    let checksum = crc32c::crc32c(&slot[..CHECKED]);
    slot[CHECKED..].copy_from_slice(&checksum.to_le_bytes());
    slot
}

/// Reads the record in slot `index`: its magic and version first (a later major may lay the
/// rest out otherwise), then its checksum, its sequence's parity and its vote.
fn decode(slot: &[u8; RECORD_LENGTH], index: usize) -> Result<Record, &'static str> {
    if slot[0..8] != MAGIC {
        return Err("not a node-state record");
    }
    let u32_at = |at: usize| u32::from_le_bytes(slot[at..at + 4].try_into().expect("4 bytes"));
    let u64_at = |at: usize| u64::from_le_bytes(slot[at..at + 8].try_into().expect("8 bytes"));
    let version = SemanticVersion::decompose(u32_at(8)).map_err(|_| "an unreadable version")?;
    if !version.is_compatible_with(VERSION) {
        // Reported as a version error by the caller, whatever the rest holds.
        return Ok(Record {
            version,
            member_id: u32_at(12),
            sequence: 0,
            state: TermAndVote::default(),
        });
    }
    if crc32c::crc32c(&slot[..CHECKED]) != u32_at(CHECKED) {
        return Err("checksum mismatch (torn or damaged)");
    }
    let sequence = u64_at(16);
    if slot_of(sequence) != index {
        return Err("a sequence of the other slot's parity");
    }
    let voted_for = match u64_at(32).cast_signed() {
        NO_VOTE => None,
        id => Some(u32::try_from(id).map_err(|_| "a vote for no member")?),
    };
    Ok(Record {
        version,
        member_id: u32_at(12),
        sequence,
        state: TermAndVote {
            current_term: u64_at(24),
            voted_for,
        },
    })
}

#[cfg(test)]
mod tests {
    use std::fs::OpenOptions;

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

    fn reseal(slot: &mut [u8; RECORD_LENGTH]) {
        let checksum = crc32c::crc32c(&slot[..CHECKED]);
        slot[CHECKED..].copy_from_slice(&checksum.to_le_bytes());
    }

    #[test]
    fn a_created_file_reads_as_term_zero_and_every_persisted_state_reads_back() {
        let dir = tempfile::tempdir().unwrap();
        assert!(matches!(
            NodeState::open(dir.path(), 2),
            Err(NodeStateError::Io { .. })
        ));
        let mut node = NodeState::create(dir.path(), 2).unwrap();
        assert_eq!(node.current(), TermAndVote::default());
        assert!(NodeState::create(dir.path(), 2).is_err(), "created once");
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
    fn a_torn_newest_record_falls_back_to_the_one_before_and_is_written_over_next() {
        let dir = tempfile::tempdir().unwrap();
        let mut node = NodeState::create(dir.path(), 0).unwrap();
        node.persist(state(3, Some(1))).unwrap(); // sequence 2: the first slot
        node.persist(state(4, Some(0))).unwrap(); // sequence 3: the second slot
        drop(node);
        // The write of sequence 3 torn: part of its record reached the disk.
        scribble(dir.path(), 4096 + 20, &[0xAB; 12]);
        let mut node = NodeState::open(dir.path(), 0).unwrap();
        assert_eq!(node.current(), state(3, Some(1)));
        // The next write goes over the torn slot, never over the good one.
        node.persist(state(5, None)).unwrap();
        scribble(dir.path(), 30, &[0xCD; 4]);
        assert_eq!(
            NodeState::open(dir.path(), 0).unwrap().current(),
            state(5, None)
        );
    }

    #[test]
    fn a_cut_or_zeroed_file_is_refused_not_read_as_an_older_vote() {
        let dir = tempfile::tempdir().unwrap();
        let mut node = NodeState::create(dir.path(), 1).unwrap();
        node.persist(state(7, Some(1))).unwrap();
        drop(node);
        let path = dir.path().join(FILE_NAME);
        for length in [0, 100, 4096, 4200, 8193] {
            let file = OpenOptions::new().write(true).open(&path).unwrap();
            file.set_len(length).unwrap();
            let error = NodeState::open(dir.path(), 1).unwrap_err();
            assert!(
                matches!(error, NodeStateError::Length { found, .. } if found == length),
                "{length}: {error}"
            );
        }
        let zeroed = tempfile::tempdir().unwrap();
        std::fs::write(zeroed.path().join(FILE_NAME), vec![0u8; 8192]).unwrap();
        let error = NodeState::open(zeroed.path(), 1).unwrap_err();
        assert!(
            matches!(error, NodeStateError::NoValidRecord { .. }),
            "{error}"
        );
        assert!(error.to_string().contains("not a node-state record"));
    }

    #[test]
    fn slots_that_alternating_writes_could_not_leave_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        drop(NodeState::create(dir.path(), 1).unwrap());
        // A record of odd sequence in the first slot is not trusted: the second is read.
        scribble(dir.path(), 0, &encode(1, 5, state(2, Some(1))));
        assert_eq!(
            NodeState::open(dir.path(), 1).unwrap().current(),
            TermAndVote::default()
        );
        // And with an even sequence in the second slot too, nothing is left to trust.
        scribble(dir.path(), 4096, &encode(1, 4, state(2, Some(1))));
        let error = NodeState::open(dir.path(), 1).unwrap_err();
        assert!(
            matches!(error, NodeStateError::NoValidRecord { .. }),
            "{error}"
        );
        assert!(error.to_string().contains("parity"), "{error}");
    }

    #[test]
    fn another_member_another_major_a_forged_sequence_or_a_bad_vote_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        drop(NodeState::create(dir.path(), 1).unwrap());
        assert!(matches!(
            NodeState::open(dir.path(), 2),
            Err(NodeStateError::Owner(OwnerError::OtherMember {
                found: 1,
                expected: 2,
                ..
            }))
        ));
        // Sequences 4 and 1: both valid, not consecutive.
        scribble(dir.path(), 0, &encode(1, 4, state(2, None)));
        assert!(matches!(
            NodeState::open(dir.path(), 1),
            Err(NodeStateError::Inconsistent {
                first: 4,
                second: 1,
                ..
            })
        ));
        // The newest at the last sequence there is.
        scribble(dir.path(), 0, &encode(1, u64::MAX - 1, state(2, None)));
        scribble(dir.path(), 4096, &encode(1, u64::MAX, state(2, None)));
        assert!(matches!(
            NodeState::open(dir.path(), 1),
            Err(NodeStateError::Exhausted { .. })
        ));
        // Another major version, whatever its checksum says.
        let mut newer = encode(1, 2, state(2, None));
        newer[8..12].copy_from_slice(&SemanticVersion::new(2, 0, 0).compose().to_le_bytes());
        scribble(dir.path(), 0, &newer);
        assert!(matches!(
            NodeState::open(dir.path(), 1),
            Err(NodeStateError::Owner(OwnerError::Version { .. }))
        ));
        let mut bad_vote = encode(1, 2, state(1, None));
        bad_vote[32..40].copy_from_slice(&(-5i64).to_le_bytes());
        reseal(&mut bad_vote);
        assert_eq!(decode(&bad_vote, 0).err(), Some("a vote for no member"));
        let most = encode(1, 2, state(1, Some(u32::MAX)));
        assert_eq!(
            decode(&most, 0).ok().map(|record| record.state.voted_for),
            Some(Some(u32::MAX))
        );
    }
}
