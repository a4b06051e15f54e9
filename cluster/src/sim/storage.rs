//! Simulated storage with real fsync semantics, for one member.
//!
//! Writes (log appends, truncations) go to a *volatile* image at once (what reads see, like the
//! page cache) and are queued as pending operations; a sync makes the operations queued before it
//! *durable*. A crash keeps the durable image plus a random prefix of the pending operations, and
//! may tear the first operation it loses (a prefix of its bytes reaches the disk, sometimes with
//! garbage after it). The term history travels in the same operations as the bytes, as it would in
//! a log whose records carry their term, so the two always agree up to the recovered end.
//!
//! A crash may also fall in the middle of a disk operation ([`InFlight`]): an append being
//! written never reaches the disk whole (a prefix of its entries, or of its bytes, perhaps with
//! garbage after it), and a sync in flight has flushed only a prefix of what it covers.
//!
//! The vote record and snapshots are written durably at once (the caller fsyncs before it goes
//! on), but a crash right after a snapshot write may tear the snapshot; recovery then falls back
//! to the previous one, which is why two are kept.
//!
//! Purges move the log's start up ([`SimStorage::purge_below`]); reads through
//! [`SimStorage::view`], as the consensus core and the service make them, see nothing below it,
//! while the bytes stay for the checkers, which compare whole logs. An installed snapshot
//! ([`SimStorage::install`]) replaces the log with the leader's bytes up to the snapshot, the
//! same way: the member's log starts there, and the checkers see the committed bytes the
//! snapshot stands for. Both are durable at once, as the member node makes them.

use crate::consensus::LogView;
use crate::log_entry::{self, LogFormat};
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
    /// Operations that cut or overwrote bytes below the end, counted: a checker that found a
    /// prefix equal may keep that finding only while this stays the same.
    cuts: u64,
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
                self.cuts += u64::from(start < self.log.len());
                self.log.truncate(start);
                self.log.extend_from_slice(bytes);
                self.terms.truncate(*position);
                if !bytes.is_empty() {
                    self.terms.record(*term, *position);
                }
            }
            Operation::Truncate { position } => {
                let end = usize::try_from(*position).expect("fits");
                self.cuts += u64::from(end < self.log.len());
                self.log.truncate(end);
                self.terms.truncate(*position);
            }
        }
    }
}

/// What the member was doing with its disk when it died.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InFlight {
    /// Nothing: the crash fell between two disk operations.
    Nothing,
    /// Writing its newest operation, an append, which therefore never reaches the disk whole.
    Write,
    /// A sync up to `marker` (a [`SimStorage::sync_marker`]): it had flushed, in order, part of
    /// what it covers (perhaps all of it, unreported) and nothing after.
    Sync {
        /// The sync's marker.
        marker: u64,
    },
}

/// What a crash did to the pending writes.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CrashDamage {
    /// Pending operations lost.
    pub lost_operations: u64,
    /// Whether the first lost operation was torn (partly written).
    pub torn: bool,
    /// Whether the newest snapshot was torn.
    pub snapshot_torn: bool,
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
    /// Where the log starts (purged below).
    pub log_start: u64,
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
    /// The log's start: nothing below it is read.
    start: u64,
    /// Whether a crash may tear the newest snapshot: only one this incarnation wrote (a crash
    /// while writing it), and not one installed from a leader (the member node lists an
    /// installed snapshot once it is synced; a crash before that leaves its install marker,
    /// which makes the member start empty, a path the node's process tests cover).
    tearable: bool,
}

/// A member's log as its core and service read it: nothing below the start.
#[derive(Debug, Clone, Copy)]
pub struct SimLog<'a> {
    bytes: &'a [u8],
    start: u64,
}

impl LogView for SimLog<'_> {
    fn read(&self, position: u64, max: u64) -> &[u8] {
        if position < self.start {
            return &[];
        }
        self.bytes.read(position, max)
    }

    fn start(&self) -> u64 {
        self.start
    }
}

/// Snapshots kept (the newest may be torn by a crash, so one more is kept).
const SNAPSHOTS_KEPT: usize = 2;

impl SimStorage {
    /// The log as reads see it.
    pub fn log(&self) -> &Vec<u8> {
        &self.volatile.log
    }

    /// The log as the member reads it (nothing below its start).
    pub fn view(&self) -> SimLog<'_> {
        SimLog {
            bytes: &self.volatile.log,
            start: self.start,
        }
    }

    /// Where the log starts.
    pub fn start(&self) -> u64 {
        self.start
    }

    /// Moves the log's start up to `position` (at most the log's end): nothing below it is read
    /// again. Durable at once.
    pub fn purge_below(&mut self, position: u64) {
        self.start = self.start.max(position.min(self.log_end()));
    }

    /// Replaces the log with `bytes` (the leader's log up to an installed snapshot, whose
    /// position is their length) and `terms`, starting at the snapshot, and keeps the snapshot.
    /// Durable at once; writes not yet synced are void.
    pub fn install(&mut self, bytes: Vec<u8>, terms: TermHistory, snapshot: Vec<u8>) {
        let position = u64::try_from(bytes.len()).expect("fits");
        let cuts = self.durable.cuts.max(self.volatile.cuts) + 1;
        self.durable = Image {
            log: bytes.clone(),
            terms: terms.clone(),
            cuts,
        };
        self.volatile = Image {
            log: bytes,
            terms,
            cuts,
        };
        // Markers given out before stay valid: they now cover nothing.
        self.operations_done += u64::try_from(self.pending.len()).expect("fits");
        self.pending.clear();
        self.start = position;
        self.save_snapshot(position, snapshot);
        self.tearable = false;
    }

    /// The newest snapshot at or above the log's start that `is_valid` accepts, with its
    /// position (what a leader sends a member behind its start).
    pub fn newest_snapshot(&self, is_valid: impl Fn(&[u8]) -> bool) -> Option<(u64, &[u8])> {
        self.snapshots
            .iter()
            .rev()
            .find(|(position, bytes)| *position >= self.start && is_valid(bytes))
            .map(|(position, bytes)| (*position, bytes.as_slice()))
    }

    /// The oldest snapshot kept once as many are kept as may be (the newest may be torn by a
    /// crash, and recovery falls back to the one before): the lowest a purge may go.
    pub fn purge_floor(&self) -> Option<u64> {
        (self.snapshots.len() == SNAPSHOTS_KEPT)
            .then(|| self.snapshots.first().map(|(position, _)| *position))
            .flatten()
    }

    /// The log's length.
    pub fn log_end(&self) -> u64 {
        u64::try_from(self.volatile.log.len()).expect("fits")
    }

    /// The durable log, for checkers.
    pub fn durable_log(&self) -> &[u8] {
        &self.durable.log
    }

    /// How many times durable bytes below the durable end were cut or overwritten, for checkers
    /// that verify the durable log incrementally.
    pub fn durable_cuts(&self) -> u64 {
        self.durable.cuts
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
        self.tearable = true;
        self.snapshots.push((position, bytes));
        if self.snapshots.len() > SNAPSHOTS_KEPT {
            self.snapshots.remove(0);
        }
    }

    /// The crash: a random prefix of the pending operations survives and the next may be torn
    /// (see [`InFlight`] for a crash in the middle of one); `tear_snapshot` damages the newest
    /// snapshot (a crash during its write).
    pub fn crash(
        &mut self,
        rng: &mut Rng,
        in_flight: InFlight,
        tear_snapshot: bool,
    ) -> CrashDamage {
        let pending = std::mem::take(&mut self.pending);
        let count = pending.len();
        let writing = in_flight == InFlight::Write
            && matches!(pending.last(), Some(Operation::Append { .. }));
        // The operations the crash may keep: with a sync in flight, only those it covers.
        let reach = match in_flight {
            InFlight::Sync { marker } => {
                usize::try_from(marker.saturating_sub(self.operations_done))
                    .expect("fits")
                    .min(count)
            }
            InFlight::Nothing | InFlight::Write => count,
        };
        let kept = match in_flight {
            // Half the time everything before the write in flight had reached the disk.
            InFlight::Write if writing && rng.chance(500_000) => count - 1,
            InFlight::Write if writing => below(rng, count - 1),
            InFlight::Nothing | InFlight::Write | InFlight::Sync { .. } => below(rng, reach),
        };
        let mut damage = CrashDamage {
            lost_operations: u64::try_from(count - kept).expect("fits"),
            torn: false,
            snapshot_torn: false,
        };
        for operation in &pending[..kept] {
            self.durable.apply(operation);
        }
        // The write in flight is always torn when the crash reaches it; another first lost
        // append half the time, if the crash may keep part of it.
        let tear = (writing && kept == count - 1) || (kept < reach && rng.chance(500_000));
        if let Some(Operation::Append {
            position,
            term,
            bytes,
        }) = pending.get(kept)
            && bytes.len() > 1
            && tear
        {
            self.durable.apply(&Operation::Append {
                position: *position,
                term: *term,
                bytes: torn_prefix(rng, bytes),
            });
            damage.torn = true;
        }
        if tear_snapshot
            && self.tearable
            && let Some((_, bytes)) = self.snapshots.last_mut()
        {
            let keep = bytes.len() / 2;
            bytes.truncate(keep);
            damage.snapshot_torn = true;
        }
        self.tearable = false;
        self.operations_done = 0;
        self.volatile = self.durable.clone();
        damage
    }

    /// Recovery after a restart: scans the log, cuts it (and the term history) at the first
    /// invalid entry, and finds the newest snapshot that reads back whole.
    pub fn recover(
        &mut self,
        format: LogFormat,
        snapshot_is_valid: impl Fn(&[u8]) -> bool,
    ) -> Recovered {
        let scan = format.scan(&self.volatile.log, 0);
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
        // The ones skipped are gone for good: no later purge may count on them.
        self.snapshots
            .truncate(self.snapshots.len() - usize::try_from(bad_snapshots).expect("fits"));
        Recovered {
            vote: self.vote,
            terms: self.volatile.terms.clone(),
            log_end: scan.valid_end,
            snapshot,
            log_start: self.start,
            bad_snapshots,
        }
    }
}

/// A number in `0..=most`, drawn.
fn below(rng: &mut Rng, most: usize) -> usize {
    usize::try_from(rng.below(u64::try_from(most).expect("fits") + 1)).expect("fits")
}

/// What reaches the disk of an append torn by a crash, never all of it: half the time its
/// first whole entries (a valid, shorter write, when it holds more than one entry); otherwise a
/// prefix cut anywhere, half of those with garbage after the cut (up to eight bytes, never past
/// the write's end).
fn torn_prefix(rng: &mut Rng, bytes: &[u8]) -> Vec<u8> {
    let mut boundaries = Vec::new();
    let mut offset = 0;
    while let Some(length) = log_entry::padded_length(&bytes[offset..]) {
        offset += usize::try_from(length).expect("fits");
        if offset >= bytes.len() {
            break;
        }
        boundaries.push(offset);
    }
    if !boundaries.is_empty() && rng.chance(500_000) {
        let pick = below(rng, boundaries.len() - 1);
        return bytes[..boundaries[pick]].to_vec();
    }
    let cut = below(rng, bytes.len() - 1);
    let mut torn = bytes[..cut].to_vec();
    if rng.chance(500_000) {
        // Within the write's own sectors: never past what it was writing.
        let garbage = (bytes.len() - cut).min(8);
        torn.extend((0..garbage).map(|_| u8::try_from(rng.below(256)).expect("byte")));
    }
    torn
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::log_entry::timer_fired;

    /// Timer entries with these ids, framed to go at `at` in the log.
    fn entries(at: u64, ids: &[u64]) -> Vec<u8> {
        let mut bytes = Vec::new();
        for &id in ids {
            let position = at + u64::try_from(bytes.len()).unwrap();
            LogFormat::default()
                .append_entry(&mut bytes, position, |buf| {
                    let mut encoder = timer_fired::Encoder::wrap(buf)?;
                    encoder.correlation_id(id);
                    Ok(encoder.finish())
                })
                .unwrap();
        }
        bytes
    }

    #[test]
    fn synced_writes_survive_a_crash_and_unsynced_ones_may_not() {
        for seed in 0..200 {
            let mut rng = Rng::new(seed);
            let mut storage = SimStorage::default();
            storage.append(0, 1, entries(0, &[1]));
            let synced = storage.log_end();
            storage.sync_to(storage.sync_marker());
            storage.append(synced, 1, entries(synced, &[2]));
            storage.append(storage.log_end(), 2, entries(storage.log_end(), &[3]));
            storage.crash(&mut rng, InFlight::Nothing, false);
            let recovered = storage.recover(LogFormat::default(), |_| true);
            assert!(recovered.log_end >= synced, "seed {seed}");
            assert_eq!(recovered.log_end % log_entry::ENTRY_ALIGNMENT, 0);
            assert_eq!(
                LogFormat::default().scan(&storage.log()[..], 0).valid_end,
                recovered.log_end
            );
            assert!(recovered.terms.last_term() <= 2);
        }
    }

    #[test]
    fn an_unsynced_truncation_can_be_undone_by_a_crash() {
        let mut storage = SimStorage::default();
        storage.append(0, 1, entries(0, &[1]));
        let end = storage.log_end();
        storage.sync_to(storage.sync_marker());
        storage.truncate(0);
        let mut rng = Rng::new(3);
        // With nothing kept from the pending operations the truncation is lost.
        while storage
            .crash(&mut rng, InFlight::Nothing, false)
            .lost_operations
            == 0
        {
            storage.truncate(0);
        }
        assert_eq!(storage.recover(LogFormat::default(), |_| true).log_end, end);
    }

    #[test]
    fn a_write_in_flight_never_reaches_the_disk_whole_and_sometimes_leaves_whole_entries() {
        let mut shorter_but_valid = 0;
        let mut cut_mid_entry = 0;
        for seed in 0..400 {
            let mut rng = Rng::new(seed);
            let mut storage = SimStorage::default();
            storage.append(0, 1, entries(0, &[1]));
            let synced = storage.log_end();
            storage.sync_to(storage.sync_marker());
            let three = entries(synced, &[2, 3, 4]);
            let whole = synced + u64::try_from(three.len()).unwrap();
            storage.append(synced, 1, three);
            storage.crash(&mut rng, InFlight::Write, false);
            let written = storage.durable_log().len();
            let recovered = storage.recover(LogFormat::default(), |_| true);
            assert!(recovered.log_end >= synced, "seed {seed}");
            assert!(
                recovered.log_end < whole,
                "seed {seed}: the write landed whole"
            );
            if recovered.log_end > synced && u64::try_from(written).unwrap() == recovered.log_end {
                shorter_but_valid += 1;
            }
            if u64::try_from(written).unwrap() > recovered.log_end {
                cut_mid_entry += 1;
            }
        }
        assert!(
            shorter_but_valid > 20,
            "{shorter_but_valid} cut at an entry boundary"
        );
        assert!(cut_mid_entry > 20, "{cut_mid_entry} cut inside an entry");
    }

    #[test]
    fn a_sync_in_flight_flushes_part_of_what_it_covers_and_nothing_after() {
        let mut ends = std::collections::BTreeSet::new();
        for seed in 0..200 {
            let mut rng = Rng::new(seed);
            let mut storage = SimStorage::default();
            storage.append(0, 1, entries(0, &[1]));
            storage.append(storage.log_end(), 1, entries(storage.log_end(), &[2]));
            let marker = storage.sync_marker();
            let covered = storage.log_end();
            let after = entries(storage.log_end(), &[3, 4]);
            storage.append(storage.log_end(), 1, after);
            let damage = storage.crash(&mut rng, InFlight::Sync { marker }, false);
            assert!(
                u64::try_from(storage.durable_log().len()).unwrap() <= covered,
                "seed {seed}: a byte past the sync reached the disk"
            );
            let recovered = storage.recover(LogFormat::default(), |_| true);
            assert!(
                recovered.log_end <= covered,
                "seed {seed}: flushed past the sync"
            );
            assert!(damage.lost_operations >= 1, "seed {seed}");
            ends.insert(recovered.log_end);
        }
        // None, one or both of the covered appends reached the disk, depending on the seed.
        assert_eq!(ends.len(), 3, "{ends:?}");
    }

    #[test]
    fn durable_cuts_count_what_was_cut_or_overwritten_on_disk() {
        let mut storage = SimStorage::default();
        storage.append(0, 1, entries(0, &[1]));
        let one = storage.log_end();
        storage.append(one, 1, entries(one, &[2]));
        storage.sync_to(storage.sync_marker());
        assert_eq!(storage.durable_cuts(), 0, "appends at the end cut nothing");
        storage.truncate(one);
        assert_eq!(storage.durable_cuts(), 0, "not durable yet");
        storage.sync_to(storage.sync_marker());
        assert_eq!(storage.durable_cuts(), 1);
        storage.truncate(one);
        storage.sync_to(storage.sync_marker());
        assert_eq!(storage.durable_cuts(), 1, "a cut at the end cuts nothing");
    }

    #[test]
    fn a_torn_snapshot_falls_back_to_the_one_before() {
        let mut storage = SimStorage::default();
        storage.save_snapshot(0, vec![1; 8]);
        storage.save_snapshot(0, vec![2; 8]);
        storage.crash(&mut Rng::new(1), InFlight::Nothing, true);
        let recovered = storage.recover(LogFormat::default(), |bytes| bytes.len() == 8);
        assert_eq!(recovered.snapshot, Some((0, vec![1; 8])));
        assert_eq!(recovered.bad_snapshots, 1);
    }
}
