//! Purges and snapshot installs in the simulated world: members purge their logs below their
//! oldest kept snapshot (and, in half the seeds, the log floor: the others purge past it, so
//! that members fall behind a leader's log start and need its snapshot), and a leader asked to
//! send a member a snapshot ([`Output::SendSnapshot`](crate::consensus::Output)) sends its
//! newest one with the term history and its log up to it, as one message through the network
//! model (lost, delayed, duplicated or partitioned like any other).
//!
//! The installed log holds the leader's bytes below the snapshot, which the member never reads
//! (its log starts at the snapshot) but the checkers compare: they are what the snapshot stands
//! for, committed bytes.

use super::{Event, World};
use crate::consensus::SnapshotOffer;
use crate::container::ServiceContainer;
use crate::kv::KvStore;
use crate::term_history::TermHistory;

/// A leader's snapshot on its way to a member.
#[derive(Debug, Clone)]
pub(super) struct Transfer {
    /// The leader's term when it sent it.
    pub(super) term: u64,
    /// The snapshot's position.
    pub(super) position: u64,
    /// The leader's term history up to the snapshot.
    pub(super) terms: TermHistory,
    /// The leader's log up to the snapshot (for the checkers).
    pub(super) log: Vec<u8>,
    /// The snapshot.
    pub(super) snapshot: Vec<u8>,
}

impl World<'_> {
    /// After member `member` saved a snapshot: purges its log below the oldest of the two
    /// snapshots it keeps and what it has applied, and below the log floor unless this seed purges past it.
    pub(super) fn purge(&mut self, member: usize) {
        let past_floor = self.purge_past_floor;
        let slot = &mut self.members[member];
        let Some(node) = slot.node.as_ref() else {
            return;
        };
        let Some(oldest) = slot.storage.purge_floor() else {
            return;
        };
        let mut floor = oldest.min(node.container.applied_position());
        if !past_floor {
            floor = floor.min(node.consensus.log_floor());
        }
        slot.storage.purge_below(floor);
    }

    /// Leader `from` was asked to send member `to` a snapshot.
    pub(super) fn send_snapshot(&mut self, from: usize, to: usize) {
        let digest_interval = self.config.digest_interval_bytes;
        let slot = &self.members[from];
        let Some(node) = slot.node.as_ref() else {
            return;
        };
        let valid = |bytes: &[u8]| {
            ServiceContainer::from_snapshot(KvStore::default(), digest_interval, bytes).is_ok()
        };
        let Some((position, snapshot)) = slot.storage.newest_snapshot(valid) else {
            self.checker.record(
                "recovery",
                format!("member {from} has no snapshot at or above its log start for {to}"),
            );
            return;
        };
        let mut terms = node.consensus.term_history().clone();
        terms.truncate(position);
        let transfer = Transfer {
            term: node.consensus.current_term(),
            position,
            terms,
            log: slot.storage.log()[..usize::try_from(position).expect("fits")].to_vec(),
            snapshot: snapshot.to_vec(),
        };
        self.faults.snapshots_sent += 1;
        self.note(|| format!("m{from} sends m{to} its snapshot at {position}"));
        let Some((at_ns, duplicate_at_ns)) = self.route(from, to) else {
            return;
        };
        if let Some(duplicate_ns) = duplicate_at_ns {
            self.schedule(
                duplicate_ns - self.now_ns,
                Event::Install {
                    from,
                    to,
                    transfer: Box::new(transfer.clone()),
                },
            );
        }
        self.schedule(
            at_ns - self.now_ns,
            Event::Install {
                from,
                to,
                transfer: Box::new(transfer),
            },
        );
    }

    /// A leader's snapshot reached member `to`: installed when its core says so.
    pub(super) fn install(&mut self, from: usize, to: usize, transfer: Transfer) {
        let now = self.local_now(to);
        let digest_interval = self.config.digest_interval_bytes;
        let id = u32::try_from(to).expect("fits");
        let slot = &mut self.members[to];
        let Some(node) = slot.node.as_mut() else {
            return;
        };
        let offer = node.consensus.on_snapshot_offered(
            now,
            transfer.term,
            u32::try_from(from).expect("fits"),
            transfer.position,
            transfer.terms.last_term(),
        );
        if offer == SnapshotOffer::Install {
            let container = ServiceContainer::from_snapshot(
                KvStore::default(),
                digest_interval,
                &transfer.snapshot,
            )
            .expect("the leader sent a snapshot that loads");
            // Installing replaces the log: what this member had committed must survive it, and
            // the snapshot must stand for committed bytes.
            self.checker
                .on_install(id, transfer.position, &transfer.log);
            let role = node.consensus.role();
            self.checker
                .on_truncate(id, role, transfer.position, node.last_commit);
            node.last_commit = node.last_commit.min(transfer.position);
            node.last_snapshot_position = transfer.position;
            node.container = container;
            node.consensus
                .install_snapshot(transfer.position, transfer.terms.clone());
            slot.storage
                .install(transfer.log, transfer.terms, transfer.snapshot);
            self.faults.snapshots_installed += 1;
            self.note(|| format!("m{to} installs m{from}'s snapshot at {}", transfer.position));
        }
        self.drain(to);
    }
}
