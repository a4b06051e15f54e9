//! The clustered-service interface: what a user implements to run a replicated state machine.
//!
//! A service sees only the log. It is fed committed entries, in log order, on one thread; cluster
//! time comes from the entry being applied (the leader's clock when it sequenced the entry), never
//! from a clock the service reads; timers are scheduled through the [`ServiceContext`] and fire as
//! log entries. For replicas to agree, a service must be deterministic: no wall clocks, no
//! unseeded randomness, no iteration over hash maps whose order can differ between processes, no
//! reads of files or the network. Its [`ClusteredService::state_digest`] is what catches a
//! service that breaks the rule: replicas compare digests at equal log positions and a replica
//! whose digest differs stops ([`crate::container::Divergence`]).
//!
//! A counter service, fed a committed log by a [`ServiceContainer`](crate::container::ServiceContainer)
//! (in a cluster the log comes from the consensus core; here it is built by hand):
//!
//! ```
//! use tern_cluster::container::{ContainerOutput, ServiceContainer};
//! use tern_cluster::log_entry::{append_entry, session_message};
//! use tern_cluster::service::{ClusteredService, ServiceContext, SnapshotError};
//!
//! #[derive(Default)]
//! struct Counter {
//!     total: u64,
//! }
//!
//! impl ClusteredService for Counter {
//!     fn on_session_message(
//!         &mut self,
//!         context: &mut ServiceContext<'_>,
//!         _session_id: u64,
//!         payload: &[u8],
//!         response: &mut Vec<u8>,
//!     ) {
//!         self.total += payload.len() as u64;
//!         // Timers are replicated state too: this one fires through the log a second later.
//!         context.schedule_timer(7, context.cluster_time_ns() + 1_000_000_000);
//!         response.extend_from_slice(&self.total.to_le_bytes());
//!     }
//!
//!     fn on_timer(&mut self, _context: &mut ServiceContext<'_>, _correlation_id: u64) {
//!         self.total = 0;
//!     }
//!
//!     fn take_snapshot(&self, out: &mut Vec<u8>) {
//!         out.extend_from_slice(&self.total.to_le_bytes());
//!     }
//!
//!     fn load_snapshot(&mut self, snapshot: &[u8]) -> Result<(), SnapshotError> {
//!         let bytes: [u8; 8] = snapshot.try_into().map_err(|_| SnapshotError::Invalid {
//!             field: "total",
//!             reason: "a counter snapshot is 8 bytes",
//!         })?;
//!         self.total = u64::from_le_bytes(bytes);
//!         Ok(())
//!     }
//!
//!     fn state_digest(&self) -> u64 {
//!         self.total
//!     }
//! }
//!
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let mut log = Vec::new();
//! for (request, payload) in [(1, &b"abc"[..]), (2, &b"de"[..]), (2, &b"de"[..])] {
//!     append_entry(&mut log, |buf| {
//!         let mut encoder = session_message::Encoder::wrap(buf)?;
//!         encoder.session_id(9).request_id(request).timestamp_ns(request * 1_000);
//!         Ok(encoder.payload(payload)?.finish())
//!     })?;
//! }
//! let mut container = ServiceContainer::new(Counter::default(), 4096);
//! let commit_position = log.len() as u64;
//! container.apply(&log, commit_position)?;
//! assert_eq!(container.service().total, 5, "the retried request applied once");
//! let duplicates = std::iter::from_fn(|| container.poll_output())
//!     .filter(|output| matches!(output, ContainerOutput::Response { duplicate: true, .. }))
//!     .count();
//! assert_eq!(duplicates, 1);
//! assert_eq!(container.poll_due_timer(1_000_002_000, 1), Some(7), "the leader appends it");
//! # Ok(())
//! # }
//! ```

use std::collections::{BTreeMap, BTreeSet};

use crate::digest::SetDigest;
use crate::rng::mix64;

/// Why a snapshot cannot be loaded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SnapshotError {
    /// The bytes end before the structure they should hold.
    #[error("snapshot truncated: {what} needs {needed} bytes, {available} remain")]
    Truncated {
        /// The structure being read.
        what: &'static str,
        /// Bytes it needs.
        needed: u64,
        /// Bytes left.
        available: u64,
    },
    /// The header's magic is wrong: not a tern snapshot.
    #[error("not a tern snapshot (magic {0:#018x})")]
    Magic(u64),
    /// The snapshot's major version differs from this reader's.
    #[error("snapshot version {found} cannot be read by this build ({supported})")]
    Version {
        /// The version in the snapshot.
        found: tern_codec::SemanticVersion,
        /// The version this build reads.
        supported: tern_codec::SemanticVersion,
    },
    /// The checksum does not match: a torn or corrupted snapshot.
    #[error("snapshot checksum mismatch")]
    Checksum,
    /// A value is out of its range.
    #[error("snapshot field {field} is invalid: {reason}")]
    Invalid {
        /// The field.
        field: &'static str,
        /// Why.
        reason: &'static str,
    },
}

/// Timers scheduled by a service: part of the replicated state.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Timers {
    by_id: BTreeMap<u64, u64>,
    by_deadline: BTreeSet<(u64, u64)>,
    digest: SetDigest,
}

impl Timers {
    /// Schedules (or moves) timer `correlation_id` to fire at cluster time `deadline_ns`.
    pub fn schedule(&mut self, correlation_id: u64, deadline_ns: u64) {
        self.cancel(correlation_id);
        self.by_id.insert(correlation_id, deadline_ns);
        self.by_deadline.insert((deadline_ns, correlation_id));
        self.digest.add(Self::element(correlation_id, deadline_ns));
    }

    /// Cancels a timer; returns whether it was scheduled.
    pub fn cancel(&mut self, correlation_id: u64) -> bool {
        let Some(deadline_ns) = self.by_id.remove(&correlation_id) else {
            return false;
        };
        self.by_deadline.remove(&(deadline_ns, correlation_id));
        self.digest
            .remove(Self::element(correlation_id, deadline_ns));
        true
    }

    /// The timers whose deadline is at or before `now_ns`, earliest first.
    pub fn due(&self, now_ns: u64) -> impl Iterator<Item = u64> + '_ {
        self.by_deadline
            .iter()
            .take_while(move |(deadline, _)| *deadline <= now_ns)
            .map(|(_, id)| *id)
    }

    /// Every timer as (correlation id, deadline), by id.
    pub fn iter(&self) -> impl Iterator<Item = (u64, u64)> + '_ {
        self.by_id.iter().map(|(&id, &deadline)| (id, deadline))
    }

    /// How many timers are scheduled.
    pub fn len(&self) -> usize {
        self.by_id.len()
    }

    /// Whether no timer is scheduled.
    pub fn is_empty(&self) -> bool {
        self.by_id.is_empty()
    }

    /// An order-independent digest of the schedule.
    pub fn digest(&self) -> u64 {
        self.digest.value()
    }

    fn element(correlation_id: u64, deadline_ns: u64) -> u64 {
        mix64(correlation_id) ^ deadline_ns.rotate_left(29)
    }
}

/// What a service may ask of the cluster while it handles an entry.
#[derive(Debug)]
pub struct ServiceContext<'a> {
    pub(crate) cluster_time_ns: u64,
    pub(crate) log_position: u64,
    pub(crate) timers: &'a mut Timers,
}

impl ServiceContext<'_> {
    /// Cluster time of the entry being applied: the same on every replica.
    pub fn cluster_time_ns(&self) -> u64 {
        self.cluster_time_ns
    }

    /// The log position of the entry being applied.
    pub fn log_position(&self) -> u64 {
        self.log_position
    }

    /// Schedules timer `correlation_id` to fire at cluster time `deadline_ns` (rescheduling it
    /// if it exists). It fires as a log entry once the leader's clock passes the deadline.
    pub fn schedule_timer(&mut self, correlation_id: u64, deadline_ns: u64) {
        self.timers.schedule(correlation_id, deadline_ns);
    }

    /// Cancels a timer; returns whether it was scheduled.
    pub fn cancel_timer(&mut self, correlation_id: u64) -> bool {
        self.timers.cancel(correlation_id)
    }
}

/// A replicated, deterministic service (see the [module docs](self)).
pub trait ClusteredService {
    /// A client's committed command. Write the response for the client into `response` (it is
    /// empty on entry); the leader sends it, every replica computes it.
    fn on_session_message(
        &mut self,
        context: &mut ServiceContext<'_>,
        session_id: u64,
        payload: &[u8],
        response: &mut Vec<u8>,
    );

    /// A timer the service scheduled has fired (it is no longer scheduled).
    fn on_timer(&mut self, context: &mut ServiceContext<'_>, correlation_id: u64);

    /// Writes the whole service state to `out`, in a form [`Self::load_snapshot`] reads.
    fn take_snapshot(&self, out: &mut Vec<u8>);

    /// Replaces the service state with a snapshot's.
    fn load_snapshot(&mut self, snapshot: &[u8]) -> Result<(), SnapshotError>;

    /// A digest of the service state: equal states give equal digests.
    fn state_digest(&self) -> u64;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timers_fire_in_deadline_order_and_digest_their_schedule() {
        let mut timers = Timers::default();
        timers.schedule(1, 300);
        timers.schedule(2, 100);
        timers.schedule(3, 200);
        assert_eq!(timers.due(250).collect::<Vec<_>>(), vec![2, 3]);
        let mut other = Timers::default();
        other.schedule(3, 200);
        other.schedule(1, 300);
        other.schedule(2, 100);
        assert_eq!(timers.digest(), other.digest());
        timers.schedule(2, 400);
        assert_eq!(timers.due(250).collect::<Vec<_>>(), vec![3]);
        assert!(timers.cancel(3));
        assert!(!timers.cancel(3));
        assert_eq!(timers.len(), 2);
        assert_ne!(timers.digest(), other.digest());
    }
}
