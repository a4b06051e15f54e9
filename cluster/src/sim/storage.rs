//! Simulated storage with real fsync semantics, for one member.
//!
//! Writes (log appends, truncations) go to a *volatile* image at once (what reads see, like the
//! page cache) and are queued as pending operations; a sync makes the operations queued before it
//! *durable*. A crash keeps the durable image plus a random prefix of the pending operations, and
//! may tear the first operation it loses (a prefix of its bytes reaches the disk, sometimes with
//! garbage after it). The term history travels in the same operations as the bytes, as it would in
//! a log whose records carry their term, so the two always agree up to the recovered end.
//!
//! The vote record and snapshots are written durably at once (the caller fsyncs before it goes
//! on), but a crash right after a snapshot write may tear the snapshot; recovery then falls back
//! to the previous one, which is why two are kept.

use crate::log_entry;
use crate::rng::Rng;
use crate::term_history::TermHistory;

#[derive(Debug, Clone)]
enum Operation {
    Append {
        position: u64,
        term: u64,
        bytes: Vec<u8>,
    },
    Truncate {
        position: u64,
    },
}

#[derive(Debug, Clone, Default)]
struct Image {
    log: Vec<u8>,
    terms: TermHistory,
}

impl Image {
    fn apply(&mut self, operation: &Operation) {
        match operation {
            Operation::Append {
                position,
                term,
                bytes,
            } => {
                let start = usize::try_from(*position).expect("fits");
                assert!(start <= self.log.len(), "appends are contiguous");
                self.log.truncate(start);
                self.log.extend_from_slice(bytes);
                self.terms.truncate(*position);
                if !bytes.is_empty() {
                    self.terms.record(*term, *position);
                }
            }
            Operation::Truncate { position } => {
                self.log.truncate(usize::try_from(*position).expect("fits"));
                self.terms.truncate(*position);
            }
        }
    }
}

/// What a crash did to the pending writes.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CrashDamage {
    /// Pending operations lost.
    pub lost_operations: u64,
    /// Whether the first lost operation was torn (partly written).
    pub torn: bool,
}

/// What recovery found.
#[derive(Debug, Clone)]
pub struct Recovered {
    /// The current term and vote.
    pub vote: (u64, Option<u32>),
    /// The term history, cut to the valid log.
    pub terms: TermHistory,
    /// The end of the valid log.
    pub log_end: u64,
    /// The newest snapshot that reads back whole, with its position.
    pub snapshot: Option<(u64, Vec<u8>)>,
    /// Snapshots that failed their checks and were skipped.
    pub bad_snapshots: u64,
}

/// One member's simulated disk.
#[derive(Debug, Clone, Default)]
pub struct SimStorage {
    durable: Image,
    volatile: Image,
    pending: Vec<Operation>,
    /// Operations synced so far, counted from the start: a sync marker.
    operations_done: u64,
    vote: (u64, Option<u32>),
    snapshots: Vec<(u64, Vec<u8>)>,
}

/// Snapshots kept (the newest may be torn by a crash, so one more is kept).
const SNAPSHOTS_KEPT: usize = 2;

impl SimStorage {
    /// The log as reads see it.
    pub fn log(&self) -> &Vec<u8> {
        &self.volatile.log
    }

    /// The log's length.
    pub fn log_end(&self) -> u64 {
        u64::try_from(self.volatile.log.len()).expect("fits")
    }

    /// The durable log, for checkers.
    pub fn durable_log(&self) -> &[u8] {
        &self.durable.log
    }

    /// Writes entries at the end of the log.
    pub fn append(&mut self, position: u64, term: u64, bytes: Vec<u8>) {
        assert_eq!(position, self.log_end(), "appends go at the end of the log");
        let operation = Operation::Append {
            position,
            term,
            bytes,
        };
        self.volatile.apply(&operation);
        self.pending.push(operation);
    }

    /// Cuts the log.
    pub fn truncate(&mut self, position: u64) {
        let operation = Operation::Truncate { position };
        self.volatile.apply(&operation);
        self.pending.push(operation);
    }

    /// A marker for every operation issued so far; [`SimStorage::sync_to`] with it makes them
    /// durable.
    pub fn sync_marker(&self) -> u64 {
        self.operations_done + u64::try_from(self.pending.len()).expect("fits")
    }

    /// Makes the operations before `marker` durable.
    pub fn sync_to(&mut self, marker: u64) {
        let count = marker.saturating_sub(self.operations_done);
        let count = usize::try_from(count)
            .expect("fits")
            .min(self.pending.len());
        for operation in self.pending.drain(..count) {
            self.durable.apply(&operation);
        }
        self.operations_done += u64::try_from(count).expect("fits");
    }

    /// The term and vote as the disk holds them, for checkers.
    pub fn durable_vote(&self) -> (u64, Option<u32>) {
        self.vote
    }

    /// Persists the term and vote durably.
    pub fn persist_vote(&mut self, term: u64, voted_for: Option<u32>) {
        self.vote = (term, voted_for);
    }

    /// Persists a snapshot durably (the newest two are kept).
    pub fn save_snapshot(&mut self, position: u64, bytes: Vec<u8>) {
        self.snapshots.push((position, bytes));
        if self.snapshots.len() > SNAPSHOTS_KEPT {
            self.snapshots.remove(0);
        }
    }

    /// The crash: a random prefix of the pending operations survives and the next may be torn;
    /// `tear_snapshot` damages the newest snapshot (a crash during its write).
    pub fn crash(&mut self, rng: &mut Rng, tear_snapshot: bool) -> CrashDamage {
        let pending = std::mem::take(&mut self.pending);
        let kept = usize::try_from(rng.below(u64::try_from(pending.len()).expect("fits") + 1))
            .expect("fits");
        let mut damage = CrashDamage {
            lost_operations: u64::try_from(pending.len() - kept).expect("fits"),
            torn: false,
        };
        for operation in &pending[..kept] {
            self.durable.apply(operation);
        }
        if let Some(Operation::Append {
            position,
            term,
            bytes,
        }) = pending.get(kept)
            && bytes.len() > 1
            && rng.chance(500_000)
        {
            let cut = usize::try_from(rng.below(u64::try_from(bytes.len()).expect("fits")))
                .expect("fits");
            let mut torn = bytes[..cut].to_vec();
            // Half the time the sectors after the cut hold garbage rather than zeros.
            if rng.chance(500_000) {
                torn.extend((0..8).map(|_| u8::try_from(rng.below(256)).expect("byte")));
            }
            self.durable.apply(&Operation::Append {
                position: *position,
                term: *term,
                bytes: torn,
            });
            damage.torn = true;
        }
        if tear_snapshot && let Some((_, bytes)) = self.snapshots.last_mut() {
            let keep = bytes.len() / 2;
            bytes.truncate(keep);
        }
        self.operations_done = 0;
        self.volatile = self.durable.clone();
        damage
    }

    /// Recovery after a restart: scans the log, cuts it (and the term history) at the first
    /// invalid entry, and finds the newest snapshot that reads back whole.
    pub fn recover(&mut self, snapshot_is_valid: impl Fn(&[u8]) -> bool) -> Recovered {
        let scan = log_entry::scan(&self.volatile.log, 0);
        let cut = Operation::Truncate {
            position: scan.valid_end,
        };
        self.volatile.apply(&cut);
        self.durable.apply(&cut);
        let mut bad_snapshots = 0;
        let mut snapshot = None;
        for (position, bytes) in self.snapshots.iter().rev() {
            if *position <= scan.valid_end && snapshot_is_valid(bytes) {
                snapshot = Some((*position, bytes.clone()));
                break;
            }
            bad_snapshots += 1;
        }
        Recovered {
            vote: self.vote,
            terms: self.volatile.terms.clone(),
            log_end: scan.valid_end,
            snapshot,
            bad_snapshots,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::log_entry::{append_entry, timer_fired};

    fn entry(id: u64) -> Vec<u8> {
        let mut bytes = Vec::new();
        append_entry(&mut bytes, |buf| {
            let mut encoder = timer_fired::Encoder::wrap(buf)?;
            encoder.correlation_id(id);
            Ok(encoder.finish())
        })
        .unwrap();
        bytes
    }

    #[test]
    fn synced_writes_survive_a_crash_and_unsynced_ones_may_not() {
        for seed in 0..200 {
            let mut rng = Rng::new(seed);
            let mut storage = SimStorage::default();
            storage.append(0, 1, entry(1));
            let synced = storage.log_end();
            storage.sync_to(storage.sync_marker());
            storage.append(synced, 1, entry(2));
            storage.append(storage.log_end(), 2, entry(3));
            storage.crash(&mut rng, false);
            let recovered = storage.recover(|_| true);
            assert!(recovered.log_end >= synced, "seed {seed}");
            assert_eq!(recovered.log_end % 8, 0);
            assert_eq!(
                log_entry::scan(&storage.log()[..], 0).valid_end,
                recovered.log_end
            );
            assert!(recovered.terms.last_term() <= 2);
        }
    }

    #[test]
    fn an_unsynced_truncation_can_be_undone_by_a_crash() {
        let mut storage = SimStorage::default();
        storage.append(0, 1, entry(1));
        let end = storage.log_end();
        storage.sync_to(storage.sync_marker());
        storage.truncate(0);
        let mut rng = Rng::new(3);
        // With nothing kept from the pending operations the truncation is lost.
        while storage.crash(&mut rng, false).lost_operations == 0 {
            storage.truncate(0);
        }
        assert_eq!(storage.recover(|_| true).log_end, end);
    }

    #[test]
    fn a_torn_snapshot_falls_back_to_the_one_before() {
        let mut storage = SimStorage::default();
        storage.save_snapshot(0, vec![1; 8]);
        storage.save_snapshot(0, vec![2; 8]);
        storage.crash(&mut Rng::new(1), true);
        let recovered = storage.recover(|bytes| bytes.len() == 8);
        assert_eq!(recovered.snapshot, Some((0, vec![1; 8])));
        assert_eq!(recovered.bad_snapshots, 1);
    }
}
