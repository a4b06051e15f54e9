//! The service container: feeds a [`ClusteredService`] the committed log, keeps the replicated
//! state that surrounds it (client sessions, timers, cluster time), and compares state digests.
//!
//! - **Sessions**: each client session's last applied request id and response. A request id at
//!   or below the last one is a retry of a command already applied (a client that timed out and
//!   sent again, possibly to a new leader, so the command is in the log twice): it is not applied
//!   again and the stored response is returned, so every command applies exactly once.
//! - **Timers**: scheduled by the service; [`ServiceContainer::poll_due_timer`] tells the
//!   leader which to append as timer entries; a timer fires when its entry is applied.
//! - **Digests**: every `digest_interval_bytes` of log the container records the state digest
//!   at that entry boundary; the leader appends its own as a digest-checkpoint entry, and every
//!   replica that applies one compares it with the digest it recorded there. A replica whose
//!   digest differs stops applying and reports [`Divergence`]: a silently diverged replica is
//!   worse than a dead one (DESIGN §7).
//!
//! Threads and memory: one thread (the service's) owns a container; responses and checkpoints
//! are queued as outputs that the caller pulls.

use std::collections::{BTreeMap, VecDeque};

use crate::consensus::LogView;
use crate::digest::{SetDigest, hash_words};
use crate::log_entry::{Entry, EntryError, LogEvent};
use crate::rng::mix64;
use crate::service::{ClusteredService, ServiceContext, SnapshotError, Timers};
use crate::snapshot::{SnapshotReader, SnapshotWriter};

/// Entries applied per call at most.
pub const APPLY_ENTRIES_MAX: usize = 4096;
/// Recent digest checkpoints a container remembers.
const CHECKPOINTS_MAX: usize = 256;

/// A replica whose state digest differs from the leader's at the same position.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error(
    "service state diverged at log position {position}: the leader's digest is {leader_digest:#018x}, \
     this replica's is {local_digest:#018x}"
)]
pub struct Divergence {
    /// The position compared.
    pub position: u64,
    /// The leader's digest there.
    pub leader_digest: u64,
    /// This replica's digest there.
    pub local_digest: u64,
}

/// Why the container stopped applying.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum ApplyError {
    /// A committed entry is unreadable: the log is damaged.
    #[error("{0}")]
    Entry(#[from] EntryError),
    /// The replica diverged and has stopped.
    #[error("{0}")]
    Diverged(#[from] Divergence),
}

/// What applying produced, in log order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ContainerOutput {
    /// The outcome of a session message: the leader sends it to the client.
    Response {
        /// The session.
        session_id: u64,
        /// The request.
        request_id: u64,
        /// The position of the entry just applied.
        entry_position: u64,
        /// The position where the request was first applied (the entry's own, unless it is a
        /// duplicate).
        position: u64,
        /// Whether this entry was a retry of a request applied before (not applied again).
        duplicate: bool,
        /// The service's response.
        payload: Vec<u8>,
    },
    /// A snapshot request was applied: the state after it, to record (every member takes one
    /// at the same position).
    Snapshot {
        /// The position the snapshot covers: the end of the request's entry.
        position: u64,
        /// Cluster time there.
        cluster_time_ns: u64,
        /// [`ServiceContainer::take_snapshot`]'s bytes.
        bytes: Vec<u8>,
    },
    /// The state digest at an entry boundary: the leader appends it for replicas to compare.
    Checkpoint {
        /// The boundary.
        position: u64,
        /// The digest there.
        digest: u64,
    },
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct SessionRecord {
    last_request_id: u64,
    position: u64,
    response: Vec<u8>,
}

impl SessionRecord {
    fn element(session_id: u64, record: &SessionRecord) -> u64 {
        mix64(session_id) ^ record.last_request_id.rotate_left(21) ^ record.position
    }
}

/// Runs a service over the committed log; see the [module docs](self).
#[derive(Debug)]
pub struct ServiceContainer<S> {
    service: S,
    applied_position: u64,
    cluster_time_ns: u64,
    sessions: BTreeMap<u64, SessionRecord>,
    sessions_digest: SetDigest,
    timers: Timers,
    /// Timers whose entry the leader appended, and the term it appended them in.
    timers_requested: BTreeMap<u64, u64>,
    digest_interval_bytes: u64,
    next_checkpoint_position: u64,
    checkpoints: VecDeque<(u64, u64)>,
    diverged: Option<Divergence>,
    outputs: VecDeque<ContainerOutput>,
    response: Vec<u8>,
}

impl<S: ClusteredService> ServiceContainer<S> {
    /// A container for a fresh service at log position 0.
    pub fn new(service: S, digest_interval_bytes: u64) -> Self {
        assert!(
            digest_interval_bytes > 0,
            "digest interval must be positive"
        );
        Self {
            service,
            applied_position: 0,
            cluster_time_ns: 0,
            sessions: BTreeMap::new(),
            sessions_digest: SetDigest::default(),
            timers: Timers::default(),
            timers_requested: BTreeMap::new(),
            digest_interval_bytes,
            next_checkpoint_position: digest_interval_bytes,
            checkpoints: VecDeque::new(),
            diverged: None,
            outputs: VecDeque::new(),
            response: Vec::new(),
        }
    }

    /// The service.
    pub fn service(&self) -> &S {
        &self.service
    }

    /// The end of the last applied entry.
    pub fn applied_position(&self) -> u64 {
        self.applied_position
    }

    /// Cluster time of the last applied entry.
    pub fn cluster_time_ns(&self) -> u64 {
        self.cluster_time_ns
    }

    /// The divergence that stopped this replica, if any.
    pub fn divergence(&self) -> Option<Divergence> {
        self.diverged
    }

    /// The digest of the whole replicated state: service, sessions and timers.
    pub fn state_digest(&self) -> u64 {
        hash_words(&[
            self.service.state_digest(),
            self.sessions_digest.value(),
            self.timers.digest(),
        ])
    }

    /// The next output, in log order.
    pub fn poll_output(&mut self) -> Option<ContainerOutput> {
        self.outputs.pop_front()
    }

    /// Applies committed entries from the applied position up to `commit_position` (an entry
    /// boundary), at most [`APPLY_ENTRIES_MAX`] of them. Returns how many were applied.
    pub fn apply(
        &mut self,
        log: &(impl LogView + ?Sized),
        commit_position: u64,
    ) -> Result<usize, ApplyError> {
        if let Some(divergence) = self.diverged {
            return Err(divergence.into());
        }
        let mut applied = 0;
        while self.applied_position < commit_position && applied < APPLY_ENTRIES_MAX {
            let position = self.applied_position;
            let bytes = log.read(position, commit_position - position);
            let entry = Entry::read(bytes, position)?;
            if position + entry.length > commit_position {
                return Err(EntryError::Truncated {
                    position,
                    needed: entry.length,
                    available: commit_position - position,
                }
                .into());
            }
            let end = position + entry.length;
            let mut snapshot = None;
            if let Some(event) = entry.event()? {
                self.cluster_time_ns = self.cluster_time_ns.max(event.timestamp_ns());
                if let LogEvent::SnapshotRequest(request) = &event {
                    snapshot = Some((request.session_id(), request.request_id()));
                }
                self.apply_event(&event, position)?;
            }
            self.applied_position = end;
            if let Some((session_id, request_id)) = snapshot {
                self.apply_snapshot_request(session_id, request_id, position);
            }
            applied += 1;
            if end >= self.next_checkpoint_position {
                self.record_checkpoint(end);
            }
        }
        Ok(applied)
    }

    fn apply_event(&mut self, event: &LogEvent<'_>, position: u64) -> Result<(), ApplyError> {
        match event {
            // Taken once the entry is applied: see `apply_snapshot_request`.
            LogEvent::NewLeadershipTerm(_) | LogEvent::SnapshotRequest(_) => {}
            LogEvent::SessionMessage(message) => self.apply_session_message(
                message.session_id(),
                message.request_id(),
                message.payload(),
                position,
            ),
            LogEvent::TimerFired(timer) => {
                let id = timer.correlation_id();
                self.timers_requested.remove(&id);
                // A timer appended twice (by two leaders) or cancelled meanwhile fires once.
                if self.timers.cancel(id) {
                    let mut context = ServiceContext {
                        cluster_time_ns: self.cluster_time_ns,
                        log_position: position,
                        timers: &mut self.timers,
                    };
                    self.service.on_timer(&mut context, id);
                }
            }
            LogEvent::DigestCheckpoint(checkpoint) => {
                let checked = checkpoint.position();
                let own = self
                    .checkpoints
                    .iter()
                    .find(|(recorded, _)| *recorded == checked)
                    .map(|(_, digest)| *digest);
                if let Some(local_digest) = own
                    && local_digest != checkpoint.digest()
                {
                    let divergence = Divergence {
                        position: checked,
                        leader_digest: checkpoint.digest(),
                        local_digest,
                    };
                    self.diverged = Some(divergence);
                    // The entry is not applied: the replica stops before it.
                    return Err(divergence.into());
                }
            }
        }
        Ok(())
    }

    /// A snapshot request, applied: the snapshot of the state after it, once per request (a
    /// session's retry, in the log twice, is answered as a duplicate and takes none).
    fn apply_snapshot_request(&mut self, session_id: u64, request_id: u64, position: u64) {
        if session_id != 0 {
            if let Some(record) = self.sessions.get(&session_id)
                && request_id <= record.last_request_id
            {
                self.outputs.push_back(ContainerOutput::Response {
                    session_id,
                    request_id,
                    entry_position: position,
                    position: record.position,
                    duplicate: true,
                    payload: Vec::new(),
                });
                return;
            }
            self.record_session(session_id, request_id, self.applied_position, Vec::new());
        }
        // The session's record is part of the snapshot: a retry after a restart from it is
        // still known as one.
        let bytes = self.take_snapshot();
        self.outputs.push_back(ContainerOutput::Snapshot {
            position: self.applied_position,
            cluster_time_ns: self.cluster_time_ns,
            bytes,
        });
        if session_id != 0 {
            self.outputs.push_back(ContainerOutput::Response {
                session_id,
                request_id,
                entry_position: position,
                position: self.applied_position,
                duplicate: false,
                payload: Vec::new(),
            });
        }
    }

    fn record_session(
        &mut self,
        session_id: u64,
        request_id: u64,
        position: u64,
        response: Vec<u8>,
    ) {
        let record = SessionRecord {
            last_request_id: request_id,
            position,
            response,
        };
        if let Some(old) = self.sessions.insert(session_id, record.clone()) {
            self.sessions_digest
                .remove(SessionRecord::element(session_id, &old));
        }
        self.sessions_digest
            .add(SessionRecord::element(session_id, &record));
    }

    fn apply_session_message(
        &mut self,
        session_id: u64,
        request_id: u64,
        payload: &[u8],
        position: u64,
    ) {
        if let Some(record) = self.sessions.get(&session_id)
            && request_id <= record.last_request_id
        {
            let output = ContainerOutput::Response {
                session_id,
                request_id,
                entry_position: position,
                position: record.position,
                duplicate: true,
                payload: if request_id == record.last_request_id {
                    record.response.clone()
                } else {
                    Vec::new()
                },
            };
            self.outputs.push_back(output);
            return;
        }
        let mut response = std::mem::take(&mut self.response);
        response.clear();
        let mut context = ServiceContext {
            cluster_time_ns: self.cluster_time_ns,
            log_position: position,
            timers: &mut self.timers,
        };
        self.service
            .on_session_message(&mut context, session_id, payload, &mut response);
        self.record_session(session_id, request_id, position, response.clone());
        self.outputs.push_back(ContainerOutput::Response {
            session_id,
            request_id,
            entry_position: position,
            position,
            duplicate: false,
            payload: response.clone(),
        });
        self.response = response;
    }

    fn record_checkpoint(&mut self, position: u64) {
        let digest = self.state_digest();
        if self.checkpoints.len() == CHECKPOINTS_MAX {
            self.checkpoints.pop_front();
        }
        self.checkpoints.push_back((position, digest));
        self.next_checkpoint_position =
            (position / self.digest_interval_bytes + 1) * self.digest_interval_bytes;
        self.outputs
            .push_back(ContainerOutput::Checkpoint { position, digest });
    }

    /// Leader: the next timer whose deadline passed at `now_ns` and that has not been appended in
    /// `term` yet; the caller appends it and it is not offered again in this term.
    pub fn poll_due_timer(&mut self, now_ns: u64, term: u64) -> Option<u64> {
        let requested = &self.timers_requested;
        let id = self
            .timers
            .due(now_ns)
            .find(|id| requested.get(id) != Some(&term))?;
        self.timers_requested.insert(id, term);
        Some(id)
    }

    /// Writes a snapshot of the container and service state at the applied position.
    pub fn take_snapshot(&self) -> Vec<u8> {
        let mut writer = SnapshotWriter::new(self.applied_position, self.cluster_time_ns);
        writer.u32(u32::try_from(self.sessions.len()).expect("sessions are bounded"));
        for (&session_id, record) in &self.sessions {
            writer.u64(session_id);
            writer.u64(record.last_request_id);
            writer.u64(record.position);
            writer.bytes(&record.response);
        }
        writer.u32(u32::try_from(self.timers.len()).expect("timers are bounded"));
        for (id, deadline) in self.timers.iter() {
            writer.u64(id);
            writer.u64(deadline);
        }
        let mut service = Vec::new();
        self.service.take_snapshot(&mut service);
        writer.bytes(&service);
        writer.finish()
    }

    /// A container restored from a snapshot, over `service` (whose state the snapshot replaces).
    pub fn from_snapshot(
        service: S,
        digest_interval_bytes: u64,
        snapshot: &[u8],
    ) -> Result<Self, SnapshotError> {
        let mut reader = SnapshotReader::open(snapshot)?;
        let mut container = Self::new(service, digest_interval_bytes);
        container.applied_position = reader.u64("position")?;
        container.cluster_time_ns = reader.u64("cluster time")?;
        container.next_checkpoint_position =
            (container.applied_position / digest_interval_bytes + 1) * digest_interval_bytes;
        for _ in 0..reader.count("sessions")? {
            let session_id = reader.u64("session")?;
            let record = SessionRecord {
                last_request_id: reader.u64("session")?,
                position: reader.u64("session")?,
                response: reader.bytes("session response")?.to_vec(),
            };
            container
                .sessions_digest
                .add(SessionRecord::element(session_id, &record));
            container.sessions.insert(session_id, record);
        }
        for _ in 0..reader.count("timers")? {
            let id = reader.u64("timer")?;
            let deadline = reader.u64("timer")?;
            container.timers.schedule(id, deadline);
        }
        container.service.load_snapshot(reader.bytes("service")?)?;
        reader.finish()?;
        Ok(container)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kv::{Command, KvStore};
    use crate::log_entry::{append_entry, digest_checkpoint, session_message, snapshot_request};

    fn put(log: &mut Vec<u8>, request: u64, value: u64) {
        append_entry(log, |buf| {
            let mut encoder = session_message::Encoder::wrap(buf)?;
            encoder
                .session_id(1)
                .request_id(request)
                .timestamp_ns(request);
            Ok(encoder
                .payload(&Command::Put { key: 1, value }.encode(0))?
                .finish())
        })
        .unwrap();
    }

    fn checkpoint(log: &mut Vec<u8>, position: u64, digest: u64) {
        append_entry(log, |buf| {
            let mut encoder = digest_checkpoint::Encoder::wrap(buf)?;
            encoder.position(position).digest(digest);
            Ok(encoder.finish())
        })
        .unwrap();
    }

    fn end(log: &[u8]) -> u64 {
        u64::try_from(log.len()).unwrap()
    }

    /// The leader's log, and the digest its container recorded at the first checkpoint.
    fn leader_log() -> (Vec<u8>, u64, u64) {
        let mut log = Vec::new();
        put(&mut log, 1, 10);
        put(&mut log, 2, 20);
        let mut leader = ServiceContainer::new(KvStore::default(), 64);
        leader.apply(&log, end(&log)).unwrap();
        let (position, digest) = std::iter::from_fn(|| leader.poll_output())
            .find_map(|output| match output {
                ContainerOutput::Checkpoint { position, digest } => Some((position, digest)),
                _ => None,
            })
            .expect("a checkpoint within the first 64 bytes' interval");
        (log, position, digest)
    }

    #[test]
    fn replicas_with_equal_state_pass_the_leaders_checkpoint() {
        let (mut log, position, digest) = leader_log();
        checkpoint(&mut log, position, digest);
        let mut replica = ServiceContainer::new(KvStore::default(), 64);
        replica.apply(&log, end(&log)).unwrap();
        assert_eq!(replica.divergence(), None);
        assert_eq!(replica.applied_position(), end(&log));
    }

    #[test]
    fn a_replica_whose_digest_differs_stops_and_says_where() {
        let (mut log, position, digest) = leader_log();
        checkpoint(&mut log, position, digest ^ 1);
        put(&mut log, 3, 30);
        let mut replica = ServiceContainer::new(KvStore::default(), 64);
        let error = replica.apply(&log, end(&log)).unwrap_err();
        let ApplyError::Diverged(divergence) = error else {
            panic!("expected a divergence, got {error}");
        };
        assert_eq!(divergence.position, position);
        assert_eq!(divergence.local_digest, digest);
        assert!(error.to_string().contains("diverged"), "{error}");
        let stopped_at = replica.applied_position();
        assert!(
            stopped_at < end(&log),
            "it stops before the checkpoint entry"
        );
        assert!(replica.apply(&log, end(&log)).is_err(), "and stays stopped");
        assert_eq!(replica.applied_position(), stopped_at);
        assert_eq!(
            replica.service().get(1),
            Some(20),
            "nothing after the checkpoint applied"
        );
    }

    #[test]
    fn a_commit_position_inside_an_entry_is_an_error_not_a_misread() {
        let (log, _, _) = leader_log();
        let mut replica = ServiceContainer::new(KvStore::default(), 64);
        let error = replica.apply(&log, end(&log) - 8).unwrap_err();
        assert!(matches!(
            error,
            ApplyError::Entry(EntryError::Truncated { .. })
        ));
    }

    fn snapshot_request(log: &mut Vec<u8>, session: u64, request: u64) {
        append_entry(log, |buf| {
            let mut encoder = snapshot_request::Encoder::wrap(buf)?;
            encoder
                .session_id(session)
                .request_id(request)
                .timestamp_ns(99);
            Ok(encoder.finish())
        })
        .unwrap();
    }

    #[test]
    fn a_snapshot_request_snapshots_once_after_itself_and_a_retry_is_a_duplicate() {
        let mut log = Vec::new();
        put(&mut log, 1, 10);
        snapshot_request(&mut log, 5, 1);
        let after_request = end(&log);
        put(&mut log, 2, 20);
        snapshot_request(&mut log, 5, 1);
        let mut container = ServiceContainer::new(KvStore::default(), 1 << 20);
        container.apply(&log, end(&log)).unwrap();
        let outputs: Vec<_> = std::iter::from_fn(|| container.poll_output()).collect();
        let snapshots: Vec<_> = outputs
            .iter()
            .filter_map(|output| match output {
                ContainerOutput::Snapshot {
                    position, bytes, ..
                } => Some((*position, bytes.clone())),
                _ => None,
            })
            .collect();
        assert_eq!(snapshots.len(), 1, "the retry takes no second snapshot");
        assert_eq!(snapshots[0].0, after_request);
        let answers: Vec<_> = outputs
            .iter()
            .filter_map(|output| match output {
                ContainerOutput::Response {
                    session_id: 5,
                    duplicate,
                    position,
                    ..
                } => Some((*duplicate, *position)),
                _ => None,
            })
            .collect();
        assert_eq!(answers, [(false, after_request), (true, after_request)]);
        // The snapshot is the state right after the request: the first put, not the second,
        // and the session's record (so the retry is known as one after a restart from it).
        let mut restored =
            ServiceContainer::from_snapshot(KvStore::default(), 1 << 20, &snapshots[0].1).unwrap();
        assert_eq!(restored.applied_position(), after_request);
        // (Both puts write key 1: 10 first, then 20 after the request.)
        assert_eq!(restored.service().get(1), Some(10));
        restored.apply(&log, end(&log)).unwrap();
        assert_eq!(restored.state_digest(), container.state_digest());
    }
}
