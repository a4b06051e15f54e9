//! The member agent: one duty cycle reads consensus messages and client sessions, ticks the
//! consensus core, carries out its outputs against the member's log and files, applies what is
//! committed and answers clients.
//!
//! Memory and threads: the agent owns everything here and runs on one thread. Messages are
//! reassembled into buffers the assemblers keep; outputs' buffers go back to the core. Session
//! egress publications are created when a client connects (a control-plane event that waits for
//! the driver) and closed when the session falls silent.

use std::collections::HashMap;
use std::path::PathBuf;

use tern_engine::agent::{Agent, Now};
use tern_engine::client::{
    AssemblerLimits, FragmentHeader, MessageAssembler, OfferResult, Publication, Subscription, Tern,
};

use crate::consensus::{
    AppendError, ConfigError, Consensus, Output, RecoveredState, Role, SnapshotOffer,
};
use crate::container::{ContainerOutput, ServiceContainer};
use crate::kv::KvStore;
use crate::member_log::{MemberLog, MemberLogError};
use crate::node_state::{NodeState, NodeStateError, TermAndVote};
use crate::protocol::{CONSENSUS_PROTOCOL, snapshot_chunk};
use crate::recording_log::{Record, RecordingLog, RecordingLogError, SnapshotRecord, TermMismatch};
use crate::session_protocol::{
    ADMIN_SNAPSHOT, NO_LEADER, ResponseCode, SESSION_PROTOCOL, SESSION_TIMEOUT_NS, admin_request,
    session_connect, session_request,
};

use super::counters::{self, MemberCounters};
use super::error_file::ErrorFile;
use super::snapshot_transfer::{
    CHUNKS_PER_CYCLE, ChunkOutcome, Receiving, Sending, TRANSFER_LENGTH_MAX, parse_transfer,
    transfer_bytes,
};
use super::{CONSENSUS_STREAM_ID, INGRESS_STREAM_ID, NodeConfig, NodeInfo, SESSION_TERM_LENGTH};

/// Fragments read from a subscription per duty cycle at most.
const FRAGMENT_LIMIT: usize = 256;
/// How often idle sessions are looked for.
const SESSION_SWEEP_NS: u64 = 1_000_000_000;
/// Sessions a member serves at once at most; connects beyond it are not answered.
const SESSIONS_MAX: usize = 4096;
/// Distinct response channels (client endpoints) a member sends to at most.
const EGRESS_MAX: usize = 256;
/// A leader appends at most one operator's snapshot request in this long; others are answered
/// busy. (Each makes every member serialise its state and sync it.)
const ADMIN_SNAPSHOT_INTERVAL_NS: u64 = 1_000_000_000;

/// The file that marks a snapshot install in progress: a member that finds it at start-up was
/// stopped part way through replacing its log with a leader's snapshot, and starts empty.
pub(super) const INSTALL_MARKER: &str = "snapshot-install";

/// The file that marks a member rebuilding its log: its log was lost while its term and vote
/// were kept, so it neither votes nor stands until it has caught up with a leader
/// ([`RecoveredState::rebuilding`]). Kept across restarts until then.
pub(super) const REBUILD_MARKER: &str = "rebuilding";

/// Why a member cannot start or must stop.
#[derive(Debug, thiserror::Error)]
pub enum MemberError {
    /// The term-and-vote file refused.
    #[error(transparent)]
    NodeState(#[from] NodeStateError),
    /// The recording log refused.
    #[error(transparent)]
    RecordingLog(#[from] RecordingLogError),
    /// The log refused.
    #[error(transparent)]
    Log(#[from] MemberLogError),
    /// The recorded term history does not describe the log.
    #[error("the recording log's terms do not match the log: {0}")]
    Terms(#[from] TermMismatch),
    /// The configuration or the recovered state cannot start a core.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// The media driver refused a publication or subscription.
    #[error("transport: {0}")]
    Transport(String),
    /// The member's files cannot give it a state to start from.
    #[error("cannot recover: {0}")]
    Unrecoverable(String),
}

/// A client session's egress.
struct Session {
    /// Index into the egress publications.
    egress: usize,
    last_heard_ns: u64,
}

/// One egress publication, shared by the sessions that name its channel and stream.
struct Egress {
    endpoint: std::net::SocketAddr,
    stream_id: i32,
    publication: Publication,
    sessions: usize,
}

/// Everything a duty cycle changes besides the subscriptions being read.
struct State {
    id: u32,
    dir: PathBuf,
    digest_interval_bytes: u64,
    consensus: Consensus,
    container: ServiceContainer<KvStore>,
    log: MemberLog,
    node_state: NodeState,
    recording_log: RecordingLog,
    /// The last term the recording log holds a record for.
    recorded_term: u64,
    tern: Tern,
    /// Publications to each other member (`None` at this member's own index).
    peers: Vec<Option<Publication>>,
    sessions: HashMap<u64, Session>,
    egress: Vec<Option<Egress>>,
    next_sweep_ns: u64,
    /// Consensus messages that did not decode or named no member.
    bad_messages: u64,
    /// Sends that failed (back-pressure, a member not connected).
    failed_sends: u64,
    /// Why the member stopped, once it has.
    failure: Option<String>,
    /// The member's distinct error log.
    errors: ErrorFile,
    /// The wall clock of the current duty cycle (the runner's reading), in ms since the epoch.
    now_ms: i64,
    counters: MemberCounters,
    elections: i64,
    /// The leader's snapshot schedule, and when the next is due.
    snapshot_interval_ns: Option<u64>,
    next_snapshot_ns: u64,
    snapshots_retained: usize,
    /// Snapshots this member has recorded since it started.
    snapshots_taken: u64,
    /// Snapshots it could not record or retain.
    snapshot_failures: u64,
    /// The log's segment length (the purge's margin below the floor).
    log_segment_length: u64,
    /// When the leader last appended an operator's snapshot request.
    last_admin_snapshot_ns: Option<u64>,
    /// The position of the snapshot it started from, or -1.
    recovered_from: i64,
    response: Vec<u8>,
    clock_offset_ns: i64,
    /// Leader: snapshot transfers to members behind its log start, one per member at most.
    sending: Vec<Sending>,
    /// Follower: the leader's snapshot transfer being gathered.
    receiving: Option<Receiving>,
    /// Where a snapshot chunk is encoded.
    chunk: Vec<u8>,
    /// Leaders' snapshots installed since the member started.
    snapshots_installed: u64,
    /// Snapshot recordings found damaged at start-up: retention deletes them and never counts
    /// them among the snapshots kept.
    damaged_snapshots: Vec<i64>,
    /// Whether the rebuild marker is on disk (removed once the core has caught up).
    rebuilding: bool,
    /// Leader: the snapshot recording last found to load, so a transfer of it is not checked
    /// again.
    checked_snapshot: Option<i64>,
}

/// The member agent; see the [module docs](self).
pub struct MemberAgent {
    consensus_in: Subscription,
    consensus_assembler: MessageAssembler,
    ingress: Subscription,
    ingress_assembler: MessageAssembler,
    state: State,
    role_name: String,
}

impl std::fmt::Debug for MemberAgent {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MemberAgent")
            .field("id", &self.state.id)
            .field("role", &self.state.consensus.role())
            .finish_non_exhaustive()
    }
}

impl MemberAgent {
    /// Recovers member `config.member_id` from its directory and opens its streams.
    pub fn open(config: NodeConfig, tern: Tern, now: Now) -> Result<Self, MemberError> {
        let id = config.member_id;
        let consensus_config = config.consensus_config();
        std::fs::create_dir_all(&config.dir).map_err(|source| {
            MemberError::NodeState(NodeStateError::Io {
                path: config.dir.clone(),
                source,
            })
        })?;
        let node_state = if config.dir.join(crate::node_state::FILE_NAME).exists() {
            NodeState::open(&config.dir, id)?
        } else {
            NodeState::create(&config.dir, id)?
        };
        let errors = ErrorFile::open(&config.dir).map_err(|source| {
            MemberError::NodeState(NodeStateError::Io {
                path: config.dir.join(super::error_file::FILE_NAME),
                source,
            })
        })?;
        // A log missing beside a term already taken part in was lost (a disk replaced, an
        // install interrupted): what this member acknowledged is gone, so it must not vote or
        // stand until it has caught up. Decided, and the marker written, before anything is
        // created or cleared, so that a crash in between cannot forget it; the marker keeps it
        // across restarts. A member alone is its own majority: it has no one to catch up from.
        let interrupted = config.dir.join(INSTALL_MARKER).exists();
        let log_missing = !config
            .dir
            .join("archive")
            .join(tern_archive::catalog::CATALOG_FILE_NAME)
            .exists();
        let rebuild_marker = config.dir.join(REBUILD_MARKER);
        let term_on_disk = node_state.current().current_term;
        let rebuilding = config.members.count() > 1
            && (rebuild_marker.exists() || ((log_missing || interrupted) && term_on_disk > 0));
        if rebuilding && !rebuild_marker.exists() {
            crate::durable_file::create_whole(&config.dir, REBUILD_MARKER, b"rebuilding\n")
                .map_err(|source| {
                    MemberError::NodeState(NodeStateError::Io {
                        path: rebuild_marker.clone(),
                        source,
                    })
                })?;
            errors.record(
                now.epoch_ms,
                &format!(
                    "the log is gone but the member took part in term {term_on_disk}: it \
                     rebuilds, and neither votes nor stands until it has caught up with a leader"
                ),
            );
        }
        if interrupted {
            // Stopped part way through installing a leader's snapshot: the old log was being
            // replaced because it lacked the leader's byte before the snapshot, so nothing in
            // it past what the snapshot covers was committed (log matching). Start empty and
            // catch up again; the term and vote stay.
            clear_interrupted_install(&config.dir).map_err(|source| {
                MemberError::NodeState(NodeStateError::Io {
                    path: config.dir.clone(),
                    source,
                })
            })?;
            errors.record(
                now.epoch_ms,
                "a snapshot install was interrupted: the member's log and snapshots were \
                 cleared, and it catches up from the leader again",
            );
        }
        let mut recording_log = if config.dir.join(crate::recording_log::FILE_NAME).exists() {
            RecordingLog::open(&config.dir, id)?
        } else {
            RecordingLog::create(&config.dir, id)?
        };
        if recording_log.repaired_bytes() > 0 {
            errors.record(
                now.epoch_ms,
                &format!(
                    "the recording log's torn last record was repaired ({} bytes)",
                    recording_log.repaired_bytes()
                ),
            );
        }
        let opened = MemberLog::open_with(
            &config.dir.join("archive"),
            config.log_format,
            config.durability,
            id,
            now.epoch_ms,
            config.log_segment_length,
        );
        let (log, recovery) = match opened {
            Ok(opened) => opened,
            Err(error) => {
                errors.record(now.epoch_ms, &format!("the member did not start: {error}"));
                return Err(error.into());
            }
        };
        if let Some(damage) = &recovery.damaged {
            errors.record(
                now.epoch_ms,
                &format!(
                    "the log's damaged tail was cut away at {}: {damage}",
                    recovery.log_end
                ),
            );
        }
        let history = recording_log.term_history(recovery.log_end)?;
        if recording_log.term_history(u64::MAX)?.entries() != history.entries() {
            // The recording log names terms past the recovered log (a crash after a term's
            // record and before its bytes, or a tail lost with the page cache): record the cut,
            // so that the next term recorded follows the history that remains.
            recording_log.append(Record::Truncate {
                position: recovery.log_end,
            })?;
            errors.record(now.epoch_ms, &format!(
                "the recording log named terms past the log's end {}: a truncation was recorded",
                recovery.log_end
            ));
        }
        let (container, snapshot_position, damaged_snapshots) = restore(
            &config,
            &recording_log,
            &log,
            recovery.log_end,
            &errors,
            now.epoch_ms,
        );
        if snapshot_position < log.start() {
            errors.record(
                now.epoch_ms,
                "the member did not start: its log starts above every usable snapshot",
            );
            return Err(MemberError::Unrecoverable(format!(
                "the log starts at {} and no usable snapshot covers it (the newest that loads is \
                 at {snapshot_position}): move the member's archive/ and recording-log aside \
                 and start it again, and it installs the leader's snapshot",
                log.start()
            )));
        }
        crate::recording_log::check_terms_against_log(
            &history,
            &log,
            snapshot_position.max(log.start()),
            recovery.log_end,
        )?;
        let TermAndVote {
            current_term,
            voted_for,
        } = node_state.current();
        let recorded_term = history.last_term();
        let clock_offset_ns = epoch_offset_ns(now);
        let now_ns = local_ns(now, clock_offset_ns);
        let seed = crate::rng::mix64(now_ns ^ u64::from(id).rotate_left(32));
        let consensus = Consensus::new(
            consensus_config,
            id,
            RecoveredState {
                current_term,
                voted_for,
                term_history: history,
                log_end: recovery.log_end,
                commit_position: snapshot_position,
                rebuilding,
            },
            seed,
            now_ns,
        )?;
        tracing::info!(
            member = id,
            term = current_term,
            log_end = recovery.log_end,
            snapshot_position,
            durability = ?config.durability,
            "member recovered"
        );
        let transport =
            |error: tern_engine::client::ClientError| MemberError::Transport(error.to_string());
        let members = &config.members;
        let consensus_in = tern
            .add_subscription(&members.consensus_channel(id), CONSENSUS_STREAM_ID)
            .map_err(transport)?;
        let ingress = tern
            .add_subscription(&members.ingress_channel(id), INGRESS_STREAM_ID)
            .map_err(transport)?;
        let mut peers = Vec::new();
        for member in 0..members.count() {
            peers.push(if member == id {
                None
            } else {
                Some(
                    tern.add_publication(&members.consensus_channel(member), CONSENSUS_STREAM_ID)
                        .map_err(transport)?,
                )
            });
        }
        let counters = MemberCounters::add(&tern, id).map_err(transport)?;
        let log_segment_length = log.segment_length();
        NodeInfo {
            member_id: id,
            members: config.members.clone(),
            driver_dir: config.driver_dir.clone(),
            pid: std::process::id(),
        }
        .write(&config.dir)
        .map_err(|source| {
            MemberError::NodeState(NodeStateError::Io {
                path: config.dir.join(super::NODE_INFO_FILE),
                source,
            })
        })?;
        let limits = AssemblerLimits {
            sessions: 64,
            message_length: 128 * 1024,
        };
        Ok(Self {
            consensus_in,
            consensus_assembler: MessageAssembler::with_limits(limits),
            ingress,
            ingress_assembler: MessageAssembler::with_limits(AssemblerLimits {
                sessions: 1024,
                message_length: 8 * 1024,
            }),
            role_name: format!("cluster-member-{id}"),
            state: State {
                id,
                consensus,
                container,
                log,
                node_state,
                recording_log,
                recorded_term,
                tern,
                peers,
                sessions: HashMap::new(),
                egress: Vec::new(),
                next_sweep_ns: now_ns + SESSION_SWEEP_NS,
                bad_messages: 0,
                failed_sends: 0,
                failure: None,
                errors,
                now_ms: now.epoch_ms,
                counters,
                elections: 0,
                snapshot_interval_ns: config
                    .snapshot_interval
                    .map(|interval| u64::try_from(interval.as_nanos()).unwrap_or(u64::MAX)),
                next_snapshot_ns: u64::MAX,
                snapshots_retained: config.snapshots_retained.max(1),
                snapshots_taken: 0,
                snapshot_failures: 0,
                log_segment_length,
                last_admin_snapshot_ns: None,
                recovered_from: if snapshot_position > 0 {
                    i64::try_from(snapshot_position).unwrap_or(i64::MAX)
                } else {
                    -1
                },
                response: Vec::with_capacity(4096 + 64),
                clock_offset_ns,
                sending: Vec::new(),
                receiving: None,
                chunk: Vec::new(),
                snapshots_installed: 0,
                rebuilding,
                checked_snapshot: None,
                damaged_snapshots,
                dir: config.dir.clone(),
                digest_interval_bytes: config.digest_interval_bytes,
            },
        })
    }
}

impl Agent for MemberAgent {
    fn do_work(&mut self, now: Now) -> usize {
        let state = &mut self.state;
        if let Some(failure) = &state.failure {
            panic!("member {} stopped: {failure}", state.id);
        }
        let now_ns = local_ns(now, state.clock_offset_ns);
        state.now_ms = now.epoch_ms;
        let mut work = 0;
        let assembler = &mut self.consensus_assembler;
        work += self.consensus_in.poll(
            |fragment, header| {
                assembler.on_fragment(fragment, header, &mut |message, _| {
                    state.on_consensus_message(now_ns, message);
                });
            },
            FRAGMENT_LIMIT,
        );
        let assembler = &mut self.ingress_assembler;
        work += self.ingress.poll(
            |fragment, header| {
                assembler.on_fragment(fragment, header, &mut |message, header| {
                    state.on_ingress(now_ns, message, header);
                });
            },
            FRAGMENT_LIMIT,
        );
        // What the polls queued (a command's append) is written before the tick replicates,
        // so the tick sends it now rather than a heartbeat.
        work += state.carry_out(now_ns);
        state.consensus.on_tick(now_ns, &state.log);
        work += state.carry_out(now_ns);
        work += state.apply(now_ns);
        work += state.send_transfers();
        if state.rebuilding && !state.consensus.rebuilding() {
            state.end_rebuild();
        }
        if now_ns >= state.next_sweep_ns {
            state.next_sweep_ns = now_ns + SESSION_SWEEP_NS;
            state.sweep_sessions(now_ns);
        }
        if work > 0 {
            state.update_counters();
        }
        if let Some(failure) = &state.failure {
            state
                .errors
                .record(state.now_ms, &format!("the member stopped: {failure}"));
            panic!("member {} stopped: {failure}", state.id);
        }
        work
    }

    fn role_name(&self) -> &str {
        &self.role_name
    }

    fn on_close(&mut self) {
        let state = &mut self.state;
        if let Err(error) = state.log.close(state.now_ms) {
            tracing::error!(%error, "closing the log");
        }
        tracing::info!(member = state.id, "member stopped");
    }
}

impl State {
    fn update_counters(&self) {
        let consensus = &self.consensus;
        let wide = |value: u64| i64::try_from(value).unwrap_or(i64::MAX);
        let set = |kind, value| self.counters.set(kind, value);
        set(counters::ROLE, counters::role_code(consensus.role()));
        set(counters::TERM, wide(consensus.current_term()));
        set(counters::LEADER, consensus.leader().map_or(-1, i64::from));
        set(counters::COMMIT_POSITION, wide(consensus.commit_position()));
        set(
            counters::APPENDED_POSITION,
            wide(consensus.appended_position()),
        );
        set(
            counters::APPLIED_POSITION,
            wide(self.container.applied_position()),
        );
        set(counters::ELECTIONS, self.elections);
        set(
            counters::SESSIONS,
            wide(u64::try_from(self.sessions.len()).expect("fits")),
        );
        set(counters::BAD_MESSAGES, wide(self.bad_messages));
        set(counters::FAILED_SENDS, wide(self.failed_sends));
        set(
            counters::STATE_DIGEST,
            self.container.state_digest().cast_signed(),
        );
        set(counters::SNAPSHOTS, wide(self.snapshots_taken));
        set(counters::RECOVERED_FROM, self.recovered_from);
        set(counters::LOG_FLOOR, wide(consensus.log_floor()));
        set(counters::SNAPSHOT_FAILURES, wide(self.snapshot_failures));
        set(
            counters::SNAPSHOTS_INSTALLED,
            wide(self.snapshots_installed),
        );
    }

    fn on_consensus_message(&mut self, now_ns: u64, message: &[u8]) {
        // A snapshot transfer's chunks are gathered here; everything else is the core's.
        if tern_codec::MessageHeader::decode(message).is_ok_and(|header| {
            header.schema_id == CONSENSUS_PROTOCOL.id
                && header.template_id == snapshot_chunk::TEMPLATE_ID
        }) {
            self.on_snapshot_chunk(now_ns, message);
            return;
        }
        if let Err(error) = self.consensus.on_message(now_ns, message, &self.log) {
            self.bad_messages += 1;
            tracing::debug!(%error, "a consensus message was refused");
            // One record for the kind, counted: a flood of bad messages stays one line.
            self.errors.record(
                self.now_ms,
                "a consensus message was refused (malformed, unknown, or from no member)",
            );
        }
        self.carry_out(now_ns);
    }

    fn refuse_consensus_message(&mut self, why: &str) {
        self.bad_messages += 1;
        tracing::debug!(why, "a consensus message was refused");
        self.errors.record(self.now_ms, why);
    }

    /// Follower: takes a chunk of a leader's snapshot transfer; installs the transfer once whole.
    fn on_snapshot_chunk(&mut self, now_ns: u64, message: &[u8]) {
        let Ok(chunk) = snapshot_chunk::Decoder::decode(message) else {
            self.refuse_consensus_message("a snapshot chunk does not decode");
            return;
        };
        let leader = chunk.leader_id();
        if leader == self.id || usize::try_from(leader).map_or(true, |l| l >= self.peers.len()) {
            self.refuse_consensus_message("a snapshot chunk names no other member");
            return;
        }
        if !self
            .consensus
            .on_snapshot_chunk(now_ns, chunk.term(), leader)
        {
            // Not from this member's leader in its term (a deposed leader's, or one it has not
            // heard from yet): it never touches the transfer being gathered.
            tracing::debug!(
                leader,
                term = chunk.term(),
                "a snapshot chunk from no current leader"
            );
            return;
        }
        match Receiving::on_chunk(&mut self.receiving, &chunk) {
            ChunkOutcome::More => {}
            ChunkOutcome::Dropped => {
                tracing::debug!(
                    leader,
                    "a snapshot chunk out of place: the transfer is dropped"
                );
            }
            ChunkOutcome::Refused => self.refuse_consensus_message(
                "a snapshot transfer too long, or a chunk past its length, was refused",
            ),
            ChunkOutcome::Whole => {
                if let Some(receiving) = self.receiving.take() {
                    self.on_transfer_whole(now_ns, &receiving);
                }
            }
        }
    }

    /// Follower: a leader's snapshot transfer arrived whole. Installs it when the core says
    /// this log lacks the snapshot's position (a failure part way stops the member, whose
    /// next start finds the install marker and starts empty).
    fn on_transfer_whole(&mut self, now_ns: u64, receiving: &Receiving) {
        let position = receiving.position;
        let (history, snapshot) = match parse_transfer(receiving.bytes(), position) {
            Ok(parsed) => parsed,
            Err(error) => {
                self.refuse_consensus_message(&format!(
                    "a snapshot transfer from member {} does not parse: {error}",
                    receiving.leader
                ));
                return;
            }
        };
        let offer = self.consensus.on_snapshot_offered(
            now_ns,
            receiving.term,
            receiving.leader,
            position,
            history.last_term(),
        );
        if offer != SnapshotOffer::Install {
            tracing::info!(
                member = self.id,
                position,
                ?offer,
                "a leader's snapshot was not installed"
            );
            self.carry_out(now_ns);
            return;
        }
        let container = match load_snapshot(snapshot, position, self.digest_interval_bytes) {
            Ok(container) => container,
            Err(problem) => {
                self.refuse_consensus_message(&format!(
                    "a leader's snapshot at {position} was not installed: {problem}"
                ));
                return;
            }
        };
        if let Err(error) = self.install(position, history, snapshot, container) {
            self.failure = Some(format!(
                "installing a leader's snapshot at {position}: {error}"
            ));
            return;
        }
        self.carry_out(now_ns);
    }

    /// Replaces this member's log, term history and state with a leader's snapshot at
    /// `position`. The install marker is durable before the first change and removed after the
    /// last, so a crash part way is found at the next start.
    fn install(
        &mut self,
        position: u64,
        history: crate::term_history::TermHistory,
        snapshot: &[u8],
        container: ServiceContainer<KvStore>,
    ) -> Result<(), MemberError> {
        let io = |path: PathBuf| {
            move |source| MemberError::NodeState(NodeStateError::Io { path, source })
        };
        crate::durable_file::create_whole(&self.dir, INSTALL_MARKER, b"installing\n")
            .map_err(io(self.dir.join(INSTALL_MARKER)))?;
        self.log.restart_at(position)?;
        let recording_id = self.log.record_snapshot(snapshot, position, self.now_ms)?;
        let mut records = vec![Record::Truncate { position: 0 }];
        records.extend(history.entries().iter().map(|start| Record::Term {
            term: start.term,
            base: start.base,
        }));
        records.push(Record::Snapshot(SnapshotRecord {
            term: history.last_term(),
            position,
            recording_id,
            timestamp_ns: container.cluster_time_ns(),
        }));
        self.recording_log.append_all(&records)?;
        std::fs::remove_file(self.dir.join(INSTALL_MARKER))
            .and_then(|()| crate::durable_file::sync_dir(&self.dir))
            .map_err(io(self.dir.join(INSTALL_MARKER)))?;
        self.recorded_term = history.last_term();
        self.container = container;
        self.recovered_from = i64::try_from(position).unwrap_or(i64::MAX);
        self.snapshots_installed += 1;
        self.consensus.install_snapshot(position, history);
        tracing::info!(
            member = self.id,
            position,
            recording_id,
            bytes = snapshot.len(),
            "installed the leader's snapshot"
        );
        if let Err(error) = self.apply_retention() {
            self.snapshot_failures += 1;
            self.errors.record(
                self.now_ms,
                &format!("retention after installing a snapshot: {error}"),
            );
        }
        Ok(())
    }

    /// Leader: begins a transfer to member `to` of the newest snapshot at or above the log's
    /// start that reads back and loads (one found damaged at start-up is skipped), unless one
    /// to it is under way; one longer than a member accepts is not sent.
    fn start_transfer(&mut self, to: u32) {
        if self.sending.iter().any(|sending| sending.to == to) {
            return;
        }
        let start = self.log.start();
        let snapshots: Vec<SnapshotRecord> = self
            .recording_log
            .snapshots(self.log.end())
            .take_while(|snapshot| snapshot.position >= start)
            .filter(|snapshot| !self.damaged_snapshots.contains(&snapshot.recording_id))
            .collect();
        for snapshot in snapshots {
            let position = snapshot.position;
            let bytes = match self.log.read_snapshot(snapshot.recording_id) {
                Ok(bytes) => bytes,
                Err(error) => {
                    self.errors.record(
                        self.now_ms,
                        &format!(
                            "a member needs a snapshot and the one at {position} does not read \
                             back: {error}"
                        ),
                    );
                    continue;
                }
            };
            let transfer =
                transfer_bytes(self.consensus.term_history().entries(), position, &bytes);
            if u64::try_from(transfer.len()).unwrap_or(u64::MAX) > TRANSFER_LENGTH_MAX {
                self.errors.record(
                    self.now_ms,
                    &format!(
                        "member {to} is behind the log's start and the snapshot at {position} \
                         ({} bytes) is longer than a member accepts ({TRANSFER_LENGTH_MAX})",
                        transfer.len()
                    ),
                );
                return;
            }
            // What the member would refuse is not sent: it must load, at its position. Checked
            // once per snapshot (loading a large state takes a while on this thread).
            if self.checked_snapshot != Some(snapshot.recording_id) {
                if let Err(problem) = load_snapshot(&bytes, position, self.digest_interval_bytes) {
                    self.errors.record(
                        self.now_ms,
                        &format!(
                            "a member needs a snapshot and the one at {position} is not \
                             usable: {problem}"
                        ),
                    );
                    self.damaged_snapshots.push(snapshot.recording_id);
                    continue;
                }
                self.checked_snapshot = Some(snapshot.recording_id);
            }
            tracing::info!(
                member = self.id,
                to,
                position,
                bytes = transfer.len(),
                "sending a snapshot to a member behind the log's start"
            );
            self.sending.push(Sending::new(
                to,
                self.consensus.current_term(),
                position,
                transfer,
            ));
            return;
        }
        self.errors.record(
            self.now_ms,
            &format!(
                "member {to} is behind the log's start {start} and no snapshot at or above it \
                 is usable: it cannot catch up from this member"
            ),
        );
    }

    /// The core caught up after a lost log: the marker goes, and the member votes again.
    fn end_rebuild(&mut self) {
        let removed = std::fs::remove_file(self.dir.join(REBUILD_MARKER))
            .and_then(|()| crate::durable_file::sync_dir(&self.dir));
        match removed {
            Ok(()) => {
                self.rebuilding = false;
                tracing::info!(
                    member = self.id,
                    "rebuilt: the member votes and stands again"
                );
            }
            Err(error) => {
                self.failure = Some(format!("removing the rebuild marker: {error}"));
            }
        }
    }

    /// Leader: sends a few chunks of each transfer under way; a transfer ends with its last
    /// chunk, or with this member's leadership. Returns the chunks sent.
    fn send_transfers(&mut self) -> usize {
        if self.sending.is_empty() {
            return 0;
        }
        let (leading, term) = (
            self.consensus.role() == Role::Leader,
            self.consensus.current_term(),
        );
        self.sending
            .retain(|sending| leading && sending.term == term);
        let mut sent = 0;
        for sending in &mut self.sending {
            let Some(Some(publication)) =
                self.peers.get(usize::try_from(sending.to).expect("small"))
            else {
                continue;
            };
            for _ in 0..CHUNKS_PER_CYCLE {
                let Some(length) = sending.next_chunk(self.id, &mut self.chunk) else {
                    break;
                };
                if !super::offer(publication, &self.chunk[..length]).is_ok() {
                    break;
                }
                sending.advance();
                sent += 1;
            }
        }
        self.sending.retain(|sending| !sending.done());
        sent
    }

    fn on_ingress(&mut self, now_ns: u64, message: &[u8], header: &FragmentHeader) {
        let Ok(decoded) = tern_codec::MessageHeader::decode(message) else {
            return;
        };
        if decoded.schema_id != SESSION_PROTOCOL.id {
            return;
        }
        match decoded.template_id {
            session_connect::TEMPLATE_ID => {
                if let Ok(connect) = session_connect::Decoder::decode(message) {
                    self.on_connect(
                        now_ns,
                        connect.session_id(),
                        connect.response_channel(),
                        connect.response_stream_id(),
                    );
                }
            }
            session_request::TEMPLATE_ID => {
                if let Ok(request) = session_request::Decoder::decode(message) {
                    self.on_request(
                        now_ns,
                        request.session_id(),
                        request.request_id(),
                        request.payload(),
                    );
                }
            }
            admin_request::TEMPLATE_ID => {
                if let Ok(request) = admin_request::Decoder::decode(message) {
                    self.on_admin(
                        now_ns,
                        request.session_id(),
                        request.request_id(),
                        request.action(),
                    );
                }
            }
            _ => {
                tracing::debug!(
                    session = header.session_id,
                    template = decoded.template_id,
                    "an unknown session message was ignored"
                );
            }
        }
    }

    fn on_connect(&mut self, now_ns: u64, session_id: u64, channel: &str, stream_id: i32) {
        if let Some(session) = self.sessions.get_mut(&session_id) {
            session.last_heard_ns = now_ns;
        } else {
            if self.sessions.len() >= SESSIONS_MAX {
                self.errors
                    .record(self.now_ms, "too many sessions: a connect was not answered");
                return;
            }
            let Some(egress) = self.egress_for(channel, stream_id) else {
                return;
            };
            self.sessions.insert(
                session_id,
                Session {
                    egress,
                    last_heard_ns: now_ns,
                },
            );
        }
        let code = if self.consensus.role() == Role::Leader {
            ResponseCode::Applied
        } else {
            ResponseCode::Redirect
        };
        self.respond(session_id, 0, 0, code, &[]);
    }

    fn egress_for(&mut self, channel: &str, stream_id: i32) -> Option<usize> {
        // Only `tern:udp?endpoint=<IP:port>` is taken, and the member writes the channel
        // itself: a client chooses where its responses go, not how the member's driver sends
        // them (no host name to resolve on this thread, no term length of its choosing).
        let Some(endpoint) = egress_endpoint(channel) else {
            tracing::warn!(
                channel,
                "a session's response channel is not tern:udp?endpoint=IP:PORT: refused"
            );
            return None;
        };
        if let Some(index) = self.egress.iter().position(|egress| {
            egress
                .as_ref()
                .is_some_and(|e| e.endpoint == endpoint && e.stream_id == stream_id)
        }) {
            if let Some(egress) = self.egress[index].as_mut() {
                egress.sessions += 1;
            }
            return Some(index);
        }
        if self.egress.iter().flatten().count() >= EGRESS_MAX {
            self.errors.record(
                self.now_ms,
                "too many response endpoints: a connect was not answered",
            );
            return None;
        }
        let uri = format!("tern:udp?endpoint={endpoint}|term-length={SESSION_TERM_LENGTH}");
        let publication = match self.tern.add_publication(&uri, stream_id) {
            Ok(publication) => publication,
            Err(error) => {
                tracing::warn!(%error, channel, "a session's response channel was refused");
                return None;
            }
        };
        let egress = Egress {
            endpoint,
            stream_id,
            publication,
            sessions: 1,
        };
        if let Some(index) = self.egress.iter().position(Option::is_none) {
            self.egress[index] = Some(egress);
            Some(index)
        } else {
            self.egress.push(Some(egress));
            Some(self.egress.len() - 1)
        }
    }

    fn on_request(&mut self, now_ns: u64, session_id: u64, request_id: u64, payload: &[u8]) {
        let Some(session) = self.sessions.get_mut(&session_id) else {
            // No egress to answer on: the client connects first, and again after a member
            // forgot it.
            return;
        };
        session.last_heard_ns = now_ns;
        match self
            .consensus
            .append_session_message(now_ns, session_id, request_id, payload)
        {
            Ok(_) => {}
            Err(AppendError::NotLeader { .. }) => {
                self.respond(session_id, request_id, 0, ResponseCode::Redirect, &[]);
            }
            Err(AppendError::BackPressure { .. }) => {
                self.respond(session_id, request_id, 0, ResponseCode::Busy, &[]);
            }
            Err(AppendError::Encode(error)) => {
                tracing::debug!(%error, session_id, "a request does not fit a log entry");
            }
        }
    }

    fn on_admin(&mut self, now_ns: u64, session_id: u64, request_id: u64, action: u8) {
        let Some(session) = self.sessions.get_mut(&session_id) else {
            return;
        };
        session.last_heard_ns = now_ns;
        if action != ADMIN_SNAPSHOT {
            tracing::warn!(session_id, action, "an unknown admin action was ignored");
            return;
        }
        if self.consensus.role() == Role::Leader
            && self
                .last_admin_snapshot_ns
                .is_some_and(|last| now_ns.saturating_sub(last) < ADMIN_SNAPSHOT_INTERVAL_NS)
        {
            self.respond(session_id, request_id, 0, ResponseCode::Busy, &[]);
            return;
        }
        match self
            .consensus
            .append_snapshot_request(now_ns, session_id, request_id)
        {
            Ok(_) => {
                self.last_admin_snapshot_ns = Some(now_ns);
                tracing::info!(session_id, request_id, "snapshot requested");
            }
            Err(AppendError::NotLeader { .. }) => {
                self.respond(session_id, request_id, 0, ResponseCode::Redirect, &[]);
            }
            Err(AppendError::BackPressure { .. }) => {
                self.respond(session_id, request_id, 0, ResponseCode::Busy, &[]);
            }
            Err(AppendError::Encode(error)) => {
                tracing::error!(%error, "a snapshot request does not encode");
            }
        }
    }

    /// Records a snapshot the container took at `position`, lists it in the recording log, and
    /// applies retention.
    fn record_snapshot(
        &mut self,
        position: u64,
        cluster_time_ns: u64,
        bytes: &[u8],
    ) -> Result<(), MemberError> {
        let recording_id = self.log.record_snapshot(bytes, position, self.now_ms)?;
        let term = self.consensus.term_history().term_before(position);
        self.recording_log.append(Record::Snapshot(SnapshotRecord {
            term,
            position,
            recording_id,
            timestamp_ns: cluster_time_ns,
        }))?;
        self.snapshots_taken += 1;
        tracing::info!(
            member = self.id,
            position,
            recording_id,
            bytes = bytes.len(),
            "snapshot recorded"
        );
        self.apply_retention()
    }

    /// Keeps the newest `snapshots_retained` snapshots the recording log lists and deletes
    /// every other snapshot recording (older ones, and any a crash left unlisted); then purges
    /// the log below the oldest snapshot kept, but never below the cluster's log floor (what
    /// the slowest member acknowledged to a leader, `Consensus::log_floor`), nor below what
    /// this member has applied.
    fn apply_retention(&mut self) -> Result<(), MemberError> {
        let recordings = self.log.snapshot_recordings();
        let kept: Vec<SnapshotRecord> = self
            .recording_log
            .snapshots(self.log.end())
            .filter(|snapshot| {
                recordings.contains(&snapshot.recording_id)
                    && !self.damaged_snapshots.contains(&snapshot.recording_id)
            })
            .take(self.snapshots_retained)
            .collect();
        for recording_id in recordings {
            if !kept
                .iter()
                .any(|snapshot| snapshot.recording_id == recording_id)
            {
                self.log.delete_snapshot(recording_id)?;
                tracing::info!(member = self.id, recording_id, "snapshot recording deleted");
            }
        }
        if kept.len() < self.snapshots_retained {
            return Ok(());
        }
        let Some(oldest) = kept.last() else {
            return Ok(());
        };
        // One segment of margin below the floor: in `written` mode a member's acknowledged
        // position may lie past what a machine crash leaves of its last (unsynced) segment,
        // and what it keeps then ends at that segment's base at the lowest.
        let floor = oldest
            .position
            .min(self.container.applied_position())
            .min(self.consensus.log_floor())
            .saturating_sub(self.log_segment_length);
        let start = self.log.purge_below(floor)?;
        tracing::info!(
            member = self.id,
            start,
            "log purged below the oldest snapshot kept"
        );
        Ok(())
    }

    fn respond(
        &mut self,
        session_id: u64,
        request_id: u64,
        position: u64,
        code: ResponseCode,
        payload: &[u8],
    ) {
        let Some(session) = self.sessions.get(&session_id) else {
            return;
        };
        let Some(Some(egress)) = self.egress.get(session.egress) else {
            return;
        };
        let leader_hint = self.consensus.leader().unwrap_or(NO_LEADER);
        self.response.resize(64 + payload.len(), 0);
        let Ok(mut encoder) =
            crate::session_protocol::session_response::Encoder::wrap(&mut self.response)
        else {
            return;
        };
        encoder
            .session_id(session_id)
            .request_id(request_id)
            .position(position)
            .leader_hint(leader_hint)
            .code(code);
        let Ok(encoder) = encoder.payload(payload) else {
            return;
        };
        let length = encoder.finish();
        // A response that cannot be sent now is lost: the client asks again.
        if !super::offer(&egress.publication, &self.response[..length]).is_ok() {
            self.failed_sends += 1;
        }
    }

    fn sweep_sessions(&mut self, now_ns: u64) {
        let egress = &mut self.egress;
        self.sessions.retain(|_, session| {
            let live = now_ns.saturating_sub(session.last_heard_ns) < SESSION_TIMEOUT_NS;
            if !live && let Some(Some(e)) = egress.get_mut(session.egress) {
                e.sessions -= 1;
            }
            live
        });
        for slot in egress.iter_mut() {
            if slot.as_ref().is_some_and(|e| e.sessions == 0) {
                *slot = None;
            }
        }
    }

    /// Carries out the core's outputs in order. Returns how many.
    fn carry_out(&mut self, now_ns: u64) -> usize {
        let mut count = 0;
        while self.failure.is_none()
            && let Some(output) = self.consensus.poll_output()
        {
            count += 1;
            if let Err(error) = self.carry_out_one(now_ns, output) {
                self.failure = Some(error.to_string());
            }
        }
        count
    }

    fn carry_out_one(&mut self, now_ns: u64, output: Output) -> Result<(), MemberError> {
        match output {
            Output::Send { to, message } => {
                let sent = self.peers[usize::try_from(to).expect("small")]
                    .as_ref()
                    .map(|publication| super::offer(publication, &message));
                if !matches!(sent, Some(OfferResult::Ok(_))) {
                    self.failed_sends += 1;
                    self.consensus.on_send_failed(to, &message);
                }
                self.consensus.recycle(message);
            }
            Output::Append {
                position,
                term,
                entries,
            } => {
                if term != self.recorded_term {
                    // The term's record is durable before any of its bytes.
                    self.recording_log.append(Record::Term {
                        term,
                        base: position,
                    })?;
                    self.recorded_term = term;
                }
                self.log.append(position, &entries)?;
                self.consensus.recycle(entries);
            }
            Output::Truncate { position } => {
                // The cut is durable before the record that says so, and both before anything
                // written after them.
                self.log.truncate(position)?;
                self.recording_log.append(Record::Truncate { position })?;
                self.recorded_term = self.recording_log.term_history(position)?.last_term();
                tracing::info!(member = self.id, position, "log truncated");
            }
            Output::Sync { sync_id, .. } => {
                self.log.sync()?;
                self.consensus.on_durable(now_ns, sync_id);
            }
            Output::PersistVote { term, voted_for } => {
                self.node_state.persist(TermAndVote {
                    current_term: term,
                    voted_for,
                })?;
            }
            Output::RoleChanged { role, term, leader } => {
                if role == Role::Canvass {
                    self.elections += 1;
                }
                // A new leader starts the snapshot schedule afresh.
                self.next_snapshot_ns = match (role, self.snapshot_interval_ns) {
                    (Role::Leader, Some(interval)) => now_ns.saturating_add(interval),
                    _ => u64::MAX,
                };
                tracing::info!(member = self.id, ?role, term, ?leader, "role changed");
            }
            Output::SendSnapshot { to } => self.start_transfer(to),
            Output::IncompatiblePeer {
                member,
                version,
                log_term_length,
            } => {
                tracing::warn!(
                    member,
                    %version,
                    log_term_length,
                    "a member of another protocol major version or log term length is kept out of elections"
                );
            }
        }
        Ok(())
    }

    /// Applies what is committed, answers clients (the leader) and appends the leader's digest
    /// checkpoints and due timers. Returns how much it did.
    fn apply(&mut self, now_ns: u64) -> usize {
        let commit = self.consensus.commit_position();
        let mut work = 0;
        if self.container.applied_position() < commit {
            match self.container.apply(&self.log, commit) {
                Ok(applied) => work += applied,
                Err(error) => {
                    self.failure = Some(format!("applying the log: {error}"));
                    return work;
                }
            }
        }
        let leading = self.consensus.role() == Role::Leader;
        while let Some(output) = self.container.poll_output() {
            match output {
                ContainerOutput::Response {
                    session_id,
                    request_id,
                    position,
                    payload,
                    ..
                } => {
                    if leading {
                        self.respond(
                            session_id,
                            request_id,
                            position,
                            ResponseCode::Applied,
                            &payload,
                        );
                    }
                }
                ContainerOutput::Checkpoint { position, digest } => {
                    if leading {
                        let _ = self.consensus.append_digest(now_ns, position, digest);
                    }
                }
                ContainerOutput::Snapshot {
                    position,
                    cluster_time_ns,
                    bytes,
                } => {
                    // A snapshot is an optimisation of recovery: one that cannot be recorded
                    // (a full disk, a full catalog) is said and counted, and the member goes
                    // on, as every member meets the same request at the same entry.
                    if let Err(error) = self.record_snapshot(position, cluster_time_ns, &bytes) {
                        self.snapshot_failures += 1;
                        self.errors.record(
                            self.now_ms,
                            &format!("a snapshot at {position} could not be recorded: {error}"),
                        );
                    }
                }
            }
        }
        if leading
            && let Some(interval) = self.snapshot_interval_ns
            && now_ns >= self.next_snapshot_ns
            && self.consensus.append_snapshot_request(now_ns, 0, 0).is_ok()
        {
            self.next_snapshot_ns = now_ns.saturating_add(interval);
        }
        if leading {
            let term = self.consensus.current_term();
            while let Some(timer) = self.container.poll_due_timer(now_ns, term) {
                let _ = self.consensus.append_timer(now_ns, timer);
            }
        }
        work + self.carry_out(now_ns)
    }
}

/// The `IP:port` of a `tern:udp?endpoint=IP:port` channel with nothing else, or `None`.
fn egress_endpoint(channel: &str) -> Option<std::net::SocketAddr> {
    let endpoint = channel.strip_prefix("tern:udp?endpoint=")?;
    let address: std::net::SocketAddr = endpoint.parse().ok()?;
    (address.port() != 0 && !address.ip().is_unspecified() && !address.ip().is_multicast())
        .then_some(address)
}

/// Deletes the log's archive and the recording log of a member whose snapshot install was
/// interrupted, then the marker, each step durable before the next.
fn clear_interrupted_install(dir: &std::path::Path) -> std::io::Result<()> {
    let archive = dir.join("archive");
    if archive.exists() {
        std::fs::remove_dir_all(&archive)?;
    }
    let recording_log = dir.join(crate::recording_log::FILE_NAME);
    if recording_log.exists() {
        std::fs::remove_file(&recording_log)?;
    }
    crate::durable_file::sync_dir(dir)?;
    std::fs::remove_file(dir.join(INSTALL_MARKER))?;
    crate::durable_file::sync_dir(dir)
}

/// The newest snapshot the recording log lists that reads back whole and loads, and its
/// position; a fresh container at 0 when there is none. A snapshot that fails (its frames'
/// or its own checksum, a deleted recording) is skipped for the one before, and said; the
/// recordings skipped come back too, so that retention never counts them as kept.
fn restore(
    config: &NodeConfig,
    recording_log: &RecordingLog,
    log: &MemberLog,
    log_end: u64,
    errors: &ErrorFile,
    now_ms: i64,
) -> (ServiceContainer<KvStore>, u64, Vec<i64>) {
    let interval = config.digest_interval_bytes;
    let mut damaged = Vec::new();
    for snapshot in recording_log.snapshots(log_end) {
        let loaded = log
            .read_snapshot(snapshot.recording_id)
            .map_err(|error| error.to_string())
            .and_then(|bytes| load_snapshot(&bytes, snapshot.position, interval));
        match loaded {
            Ok(container) => return (container, snapshot.position, damaged),
            Err(problem) => errors.record(
                now_ms,
                &format!(
                    "the snapshot at {} (recording {}) is not usable ({problem}): falling back \
                     to the one before",
                    snapshot.position, snapshot.recording_id
                ),
            ),
        }
        damaged.push(snapshot.recording_id);
    }
    (
        ServiceContainer::new(KvStore::default(), interval),
        0,
        damaged,
    )
}

/// The state `bytes`, a snapshot said to be at `position`, loads into, or why it cannot be
/// used: it must load and cover exactly `position`. Start-up, a leader about to send a snapshot
/// and a member about to install one all ask this.
fn load_snapshot(
    bytes: &[u8],
    position: u64,
    digest_interval_bytes: u64,
) -> Result<ServiceContainer<KvStore>, String> {
    match ServiceContainer::from_snapshot(KvStore::default(), digest_interval_bytes, bytes) {
        Ok(container) if container.applied_position() == position => Ok(container),
        Ok(container) => Err(format!(
            "it covers {}, not {position}",
            container.applied_position()
        )),
        Err(error) => Err(format!("it does not load: {error}")),
    }
}

/// Epoch nanoseconds minus the runner's monotonic reading, so that the member's clock is
/// monotonic (timeouts) and near the wall clock (cluster time in the log, which other members
/// continue when they lead).
fn epoch_offset_ns(now: Now) -> i64 {
    now.epoch_ms
        .saturating_mul(1_000_000)
        .saturating_sub(now.nanos)
}

fn local_ns(now: Now, offset_ns: i64) -> u64 {
    u64::try_from(now.nanos.saturating_add(offset_ns)).unwrap_or(0)
}
