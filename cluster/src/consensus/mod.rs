//! The consensus core: one member's Raft over a log of byte positions, sans-IO.
//!
//! # Model
//! The model follows Aeron Cluster. The log is a byte stream of whole entries ([`crate::log_entry`])
//! with 64-bit positions; terms are 64-bit leadership term ids recorded in a
//! [`TermHistory`]. Followers report the position up to which their log is *durable* and matches
//! the leader's; the leader's commit position is the quorum position of those reports (its own
//! durable position included) and travels in every append request and heartbeat. An election
//! first *canvasses* positions (the pre-vote: a member only stands when a quorum that has also lost
//! its leader has seen no better log, so a partitioned member cannot disrupt a healthy leader),
//! then *nominates* itself after a random delay of up to half the election timeout, then asks for
//! *votes*. A new leader appends a new-leadership-term entry, replicates missing log to lagging
//! followers, and followers truncate divergent uncommitted suffixes.
//!
//! # Inputs and outputs
//! [`Consensus`] never reads a clock, a socket or a file. Inputs: messages from other members
//! ([`Consensus::on_message`]), the passage of time ([`Consensus::on_tick`]), the local log's
//! durable position after an fsync ([`Consensus::on_durable`]) and, on the leader, entries to
//! append ([`Consensus::append_session_message`] and friends). Outputs are pulled with
//! [`Consensus::poll_output`] and must be carried out **in order**: sends, log appends,
//! truncations, syncs and vote persistence ([`Output`]). A [`Output::PersistVote`] must be durable
//! before any later output is carried out, because a vote that is sent and then forgotten in a
//! crash can elect two leaders. Reads of the log (the leader replicating to a follower) go through
//! a [`LogView`] the caller lends to each call, so the log stays owned by the caller (the
//! simulator's storage, or the archive in a real node).
//!
//! # Safety properties
//! These are the five properties of the Raft paper (Ongaro and Ousterhout, 2014, figure 3),
//! stated over byte positions. The simulator's checkers ([`crate::sim`]) assert each one after
//! every step.
//! 1. **Election safety**: at most one leader is elected in a term.
//! 2. **Leader append-only**: a leader never overwrites or truncates its log during its term; it
//!    only appends.
//! 3. **Log matching**: if two logs hold a byte written in the same term at the same position,
//!    the logs are identical up to and including that byte.
//! 4. **Leader completeness**: a log prefix committed in a term is present in the logs of the
//!    leaders of every later term.
//! 5. **State-machine safety**: if a member has applied the entry at a position, no member ever
//!    applies a different entry at that position.
//!
//! Two implementation rules carry most of the weight: a leader only advances its commit position
//! to a quorum position that includes an entry of its own term (figure 8 of the paper), and a
//! follower only reports bytes that are durable and known to match the current leader's log.
//!
//! # Threads and memory
//! One thread owns a `Consensus` (the consensus module agent, or the simulator). Messages and log
//! actions are `Vec<u8>` outputs; a caller that hands each one back once carried out
//! ([`Consensus::recycle`]) lets the core reuse them, so its steady state allocates nothing
//! (`tests/allocation_free.rs`). Every positional limit is explicit: at most [`MEMBERS_MAX`]
//! members, 64 KiB per append request, [`ConsensusConfig::inflight_bytes_max`] unacknowledged
//! per follower, 16 MiB appended but not yet durable on the leader before commands are refused.

mod election;
mod replication;

use std::collections::VecDeque;

use tern_codec::SemanticVersion;

use crate::log_entry::LogFormat;
use crate::planted::PlantedBug;
use crate::protocol::{CONSENSUS_PROTOCOL, Message, ProtocolError};
use crate::rng::Rng;
use crate::term_history::{TermHistory, TermHistoryError};

/// Appends are coalesced into one output up to about this many bytes, so a burst of commands is
/// one write without growing one buffer without bound.
const APPEND_COALESCE_BYTES: usize = 64 * 1024;
/// The capacity an append's buffer is given: room for what may join it (the last entry may
/// start just below the coalescing limit, after a PAD to the term's end), and for a whole
/// append request's entries, so that a term's end does not grow a warm buffer. (A follower's
/// request that joins an append near the limit grows that buffer once; the pool keeps it.)
pub(crate) const APPEND_BUFFER_CAPACITY: usize =
    APPEND_COALESCE_BYTES + 2 * crate::log_entry::ENTRY_LENGTH_MAX;
const _: () = assert!(crate::protocol::APPEND_BYTES_MAX <= APPEND_BUFFER_CAPACITY);

/// The most members a cluster may have.
pub const MEMBERS_MAX: u32 = 7;

/// Timeouts and limits of the consensus core.
#[derive(Debug, Clone)]
pub struct ConsensusConfig {
    /// Members in the cluster, ids `0..member_count` (1 to [`MEMBERS_MAX`]).
    pub member_count: u32,
    /// How often a leader sends to each follower when it has nothing new.
    pub heartbeat_interval_ns: u64,
    /// A follower that has not heard from its leader for this long starts canvassing; a leader
    /// that has not heard from a quorum for this long steps down.
    pub leader_heartbeat_timeout_ns: u64,
    /// How long a canvass waits for every member before settling for a quorum, how long a
    /// ballot lasts, and twice the longest nomination delay.
    pub election_timeout_ns: u64,
    /// The most log bytes in one append request.
    pub append_bytes_max: u64,
    /// The most bytes a leader sends a follower beyond what it has acknowledged.
    pub inflight_bytes_max: u64,
    /// The protocol version this member speaks (normally [`CONSENSUS_PROTOCOL`]'s).
    pub protocol_version: SemanticVersion,
    /// The log's shape as a tern stream (its term length); every member must use the same.
    pub log_format: LogFormat,
    /// A classic consensus bug to plant, to prove the simulator's checkers catch it.
    #[cfg(feature = "planted-bugs")]
    pub planted_bug: Option<PlantedBug>,
}

impl ConsensusConfig {
    /// The defaults for a cluster of `member_count`: heartbeats every 100 ms, a 1 s leader
    /// heartbeat timeout and a 500 ms election timeout.
    pub fn new(member_count: u32) -> Self {
        Self {
            member_count,
            heartbeat_interval_ns: 100_000_000,
            leader_heartbeat_timeout_ns: 1_000_000_000,
            election_timeout_ns: 500_000_000,
            append_bytes_max: 64 * 1024,
            inflight_bytes_max: 1024 * 1024,
            protocol_version: CONSENSUS_PROTOCOL.version,
            log_format: LogFormat::default(),
            #[cfg(feature = "planted-bugs")]
            planted_bug: None,
        }
    }

    /// Members that make a majority.
    pub fn quorum(&self) -> u32 {
        if self.planted(PlantedBug::QuorumRoundsDown) {
            // The planted mistake: right for odd sizes, one short for even ones.
            return self.member_count.div_ceil(2);
        }
        self.member_count / 2 + 1
    }

    fn validate(&self) -> Result<(), ConfigError> {
        if self.member_count == 0 || self.member_count > MEMBERS_MAX {
            return Err(ConfigError::MemberCount(self.member_count));
        }
        if self.heartbeat_interval_ns == 0
            || self.leader_heartbeat_timeout_ns <= self.heartbeat_interval_ns
            || self.election_timeout_ns < 2
        {
            return Err(ConfigError::Timeouts);
        }
        let batch_max = u64::try_from(crate::protocol::APPEND_BYTES_MAX).expect("fits");
        if self.append_bytes_max < u64::try_from(crate::log_entry::ENTRY_LENGTH_MAX).expect("fits")
            || self.append_bytes_max > batch_max
        {
            return Err(ConfigError::AppendBytes(self.append_bytes_max));
        }
        Ok(())
    }

    pub(crate) fn planted(&self, bug: PlantedBug) -> bool {
        #[cfg(feature = "planted-bugs")]
        {
            self.planted_bug == Some(bug)
        }
        #[cfg(not(feature = "planted-bugs"))]
        {
            let _ = bug;
            false
        }
    }
}

/// Why a configuration or recovered state cannot start a member.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConfigError {
    /// The member count is out of range.
    #[error("a cluster has 1 to {MEMBERS_MAX} members, not {0}")]
    MemberCount(u32),
    /// The member id is not below the member count.
    #[error("member id {id} is not a member of a {count}-member cluster")]
    MemberId {
        /// The id.
        id: u32,
        /// The member count.
        count: u32,
    },
    /// The timeouts are inconsistent.
    #[error("heartbeat interval must be positive and below the leader heartbeat timeout")]
    Timeouts,
    /// The append batch limit is out of range.
    #[error("append_bytes_max {0} must hold one whole entry and at most 64 KiB")]
    AppendBytes(u64),
    /// The recovered term history is invalid.
    #[error("recovered term history: {0}")]
    TermHistory(#[from] TermHistoryError),
    /// A recovered position is not an entry boundary of a tern-framed log.
    #[error(
        "recovered positions (commit {commit}, log end {log_end}) must be multiples of {}",
        crate::log_entry::ENTRY_ALIGNMENT
    )]
    Unaligned {
        /// The commit position.
        commit: u64,
        /// The log end.
        log_end: u64,
    },
    /// The recovered positions disagree.
    #[error("recovered commit position {commit} is beyond the recovered log end {log_end}")]
    Positions {
        /// The commit position.
        commit: u64,
        /// The log end.
        log_end: u64,
    },
}

/// What a member recovered from its storage at start-up.
#[derive(Debug, Clone, Default)]
pub struct RecoveredState {
    /// The persisted current term.
    pub current_term: u64,
    /// The member voted for in `current_term`, if any.
    pub voted_for: Option<u32>,
    /// The persisted term history, cut to `log_end`.
    pub term_history: TermHistory,
    /// The end of the valid log after the recovery scan (appended = durable).
    pub log_end: u64,
    /// A position known to be committed (a snapshot's position), 0 if none.
    pub commit_position: u64,
    /// The member lost log it may have acknowledged (its log is gone but its term and vote are
    /// not: a disk replaced, or an install interrupted): it neither votes nor stands until its
    /// commit reaches the commit of the first leader it hears from and covers an entry of its
    /// current term (then it holds everything committed before, as the leader does). An empty
    /// log is never behind a candidate's, so without this its vote could elect a member that
    /// lacks entries a majority, this member included, once held.
    pub rebuilding: bool,
}

/// A member's role.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Role {
    /// Following a leader, or waiting to hear from one.
    Follower,
    /// Looking for a leader: exchanging log positions with the other members.
    Canvass,
    /// The best log in a canvass: waiting a random delay before standing.
    Nominate,
    /// Asking for votes in a new term.
    Candidate,
    /// Leading the term.
    Leader,
}

impl Role {
    /// The transitions the core makes, in one place (Raft figure 4 with Aeron's canvass and
    /// nomination before candidacy).
    const fn may_become(self, next: Role) -> bool {
        use Role::{Candidate, Canvass, Follower, Leader, Nominate};
        matches!(
            (self, next),
            (_, Follower)
                | (Follower | Leader | Candidate | Nominate, Canvass)
                | (Canvass, Nominate)
                | (Nominate, Candidate)
                | (Candidate, Leader)
        )
    }
}

/// Something the caller must do, or be told, in the order given.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Output {
    /// Send a consensus message to a member.
    Send {
        /// The member.
        to: u32,
        /// The encoded message.
        message: Vec<u8>,
    },
    /// Write entries of `term` at `position` (the current end of the log), recording the term
    /// in the term history if it is new there.
    Append {
        /// Where the bytes go.
        position: u64,
        /// The term that wrote them.
        term: u64,
        /// Whole entries.
        entries: Vec<u8>,
    },
    /// Cut the log (and its term history) at `position`.
    Truncate {
        /// The new end of the log.
        position: u64,
    },
    /// Make every earlier action durable, then call [`Consensus::on_durable`] with `sync_id`.
    Sync {
        /// Identifies the request; completing it completes every earlier one too.
        sync_id: u64,
        /// The log position the sync covers.
        position: u64,
    },
    /// Persist the current term and vote durably before carrying out any later output.
    PersistVote {
        /// The current term.
        term: u64,
        /// The vote in that term.
        voted_for: Option<u32>,
    },
    /// The member's role changed.
    RoleChanged {
        /// The new role.
        role: Role,
        /// The current term.
        term: u64,
        /// The leader, when known.
        leader: Option<u32>,
    },
    /// A member speaks another major version of the protocol or frames the log with another
    /// term length; this member refused to take part in an election with it.
    IncompatiblePeer {
        /// The member.
        member: u32,
        /// Its protocol version.
        version: SemanticVersion,
        /// Its log term length.
        log_term_length: u32,
    },
    /// Leader: member `to` lacks log below this log's start (purged after a snapshot), so no
    /// append can bring it up to date: send it a snapshot at or above the log's start and the
    /// term history up to it (Raft's InstallSnapshot). Asked again at most once a leader
    /// heartbeat timeout while the member stays behind; the member's acknowledgement of the
    /// snapshot's position ends it.
    SendSnapshot {
        /// The member.
        to: u32,
    },
}

/// What a follower should do with a leader's snapshot transfer that arrived whole
/// ([`Consensus::on_snapshot_offered`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SnapshotOffer {
    /// Install it: its log lacks the snapshot's position (or holds another term's byte there).
    Install,
    /// Its log already holds the snapshot's position in the same term, so it matches the
    /// leader's up to there; it acknowledged that instead.
    Held,
    /// Not from this member's current leader in its current term, or not a log position: drop it.
    Stale,
}

/// Why the leader could not append.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum AppendError {
    /// This member is not the leader; `leader` is the one it knows of.
    #[error("not the leader (leader: {leader:?})")]
    NotLeader {
        /// The leader this member follows, if any.
        leader: Option<u32>,
    },
    /// The entry does not encode (a payload over its limit).
    #[error("entry does not encode: {0}")]
    Encode(#[from] tern_codec::EncodeError),
    /// The leader has this many bytes not yet durable locally; the caller should back off.
    #[error("back pressure: {unsynced_bytes} bytes wait for the local fsync")]
    BackPressure {
        /// Bytes appended but not durable.
        unsynced_bytes: u64,
    },
}

/// Read access to the local log, lent by the caller for a call.
pub trait LogView {
    /// The bytes from `position` up to at most `max` bytes; may be shorter (at a segment end),
    /// and empty at or past the end of the log.
    fn read(&self, position: u64, max: u64) -> &[u8];

    /// The first position the log holds: below it the log was purged (its effect is in a
    /// snapshot). 0 for a log that was never purged.
    fn start(&self) -> u64 {
        0
    }
}

impl LogView for [u8] {
    fn read(&self, position: u64, max: u64) -> &[u8] {
        let length = u64::try_from(self.len()).expect("fits");
        if position >= length {
            return &[];
        }
        let end = length.min(position.saturating_add(max));
        let start = usize::try_from(position).expect("below a slice length");
        &self[start..usize::try_from(end).expect("below a slice length")]
    }
}

impl LogView for Vec<u8> {
    fn read(&self, position: u64, max: u64) -> &[u8] {
        self.as_slice().read(position, max)
    }
}

/// After a send to a member fails (back-pressure, or the member is down), the leader sends to it
/// again after this long, doubled for each further failure before it answers.
const SEND_RETRY_NS: u64 = 1_000_000;
/// The most bytes a message without var data takes (header and block).
const FIXED_MESSAGE_MAX: usize = 64;
/// Buffers kept for reuse at most.
const POOL_BUFFERS_MAX: usize = 256;
/// Larger buffers are not kept for reuse.
const POOL_BUFFER_CAPACITY_MAX: usize = 256 * 1024;

/// What this member knows of another.
#[derive(Debug, Clone, Default)]
struct Peer {
    /// The latest canvass position heard from it, and when.
    canvass: Option<(CanvassInfo, u64)>,
    /// Leader: the next position to send.
    next_position: u64,
    /// Leader: the position up to which it acknowledged a durable, matching log.
    matched_position: u64,
    /// Leader: when it last answered.
    last_contact_ns: u64,
    /// Leader: when an append was last sent to it.
    last_sent_ns: u64,
    /// Leader: after a refusal, the leader probes for the match point with one append at a
    /// time instead of pipelining (etcd's probe state), so duplicated or reordered refusals
    /// cannot multiply into a storm of resends.
    probing: bool,
    /// Leader, probing: an append is out and no answer has come back to it yet.
    probe_in_flight: bool,
    /// Leader, probing: where the append in flight starts.
    probe_position: u64,
    /// Leader: when it last asked for a snapshot to be sent to this member.
    snapshot_asked_ns: Option<u64>,
    /// Leader: after a send to it failed, nothing is sent to it before this time.
    retry_at_ns: u64,
    /// Leader: sends to it that failed since it last answered.
    send_failures: u32,
    /// Leader: it refused an append with a log end below what it had acknowledged, and has
    /// not accepted one since.
    refused_below_match: bool,
    /// Candidate: whether it granted its vote.
    voted: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct CanvassInfo {
    current_term: u64,
    log_term: u64,
    log_position: u64,
    follows_live_leader: bool,
}

/// One member's consensus state machine; see the [module docs](self).
#[derive(Debug)]
pub struct Consensus {
    config: ConsensusConfig,
    id: u32,
    rng: Rng,
    role: Role,
    current_term: u64,
    voted_for: Option<u32>,
    history: TermHistory,
    appended_position: u64,
    durable_position: u64,
    commit_position: u64,
    leader: Option<u32>,
    /// Follower: when the leader was last heard from (or a vote granted).
    leader_contact_ns: u64,
    /// Follower: the position up to which this log is known to match the current leader's.
    leader_matched_position: u64,
    /// The highest log floor a leader has sent this member ([`Consensus::log_floor`]).
    leader_log_floor: u64,
    /// While rebuilding ([`RecoveredState::rebuilding`]): the commit to reach before voting or
    /// standing again, 0 until a leader is heard from.
    rebuilding: Option<u64>,
    canvass_started_ns: u64,
    next_canvass_ns: u64,
    nominate_at_ns: u64,
    ballot_deadline_ns: u64,
    /// Leader: where its term's first entry starts.
    leader_term_base: u64,
    last_timestamp_ns: u64,
    peers: Vec<Peer>,
    next_sync_id: u64,
    synced_requested_position: u64,
    /// Syncs requested and not yet completed: (id, position they may make durable).
    pending_syncs: VecDeque<(u64, u64)>,
    now_ns: u64,
    outputs: VecDeque<Output>,
    /// Where the leader encodes an entry's message before framing it into the log.
    scratch: Vec<u8>,
    /// Buffers the caller handed back ([`Consensus::recycle`]), reused for messages and appends
    /// so that a steady state allocates nothing.
    pool: Vec<Vec<u8>>,
}

impl Consensus {
    /// Starts member `id` from what it recovered, at time `now_ns`, with `seed` for its
    /// nomination delays. Every member starts by canvassing.
    pub fn new(
        config: ConsensusConfig,
        id: u32,
        recovered: RecoveredState,
        seed: u64,
        now_ns: u64,
    ) -> Result<Self, ConfigError> {
        config.validate()?;
        if id >= config.member_count {
            return Err(ConfigError::MemberId {
                id,
                count: config.member_count,
            });
        }
        if !recovered
            .log_end
            .is_multiple_of(crate::log_entry::ENTRY_ALIGNMENT)
            || !recovered
                .commit_position
                .is_multiple_of(crate::log_entry::ENTRY_ALIGNMENT)
        {
            return Err(ConfigError::Unaligned {
                commit: recovered.commit_position,
                log_end: recovered.log_end,
            });
        }
        if recovered.commit_position > recovered.log_end {
            return Err(ConfigError::Positions {
                commit: recovered.commit_position,
                log_end: recovered.log_end,
            });
        }
        let history = TermHistory::from_entries(recovered.term_history.entries().to_vec())?;
        let voted_for = if config.planted(PlantedBug::ForgetVoteOnRestart) {
            None
        } else {
            recovered.voted_for
        };
        let peers = vec![Peer::default(); usize::try_from(config.member_count).expect("fits")];
        let mut consensus = Self {
            id,
            rng: Rng::new(seed),
            role: Role::Canvass,
            current_term: recovered.current_term.max(history.last_term()),
            voted_for,
            history,
            appended_position: recovered.log_end,
            durable_position: recovered.log_end,
            commit_position: recovered.commit_position,
            rebuilding: recovered.rebuilding.then_some(0),
            leader: None,
            leader_contact_ns: now_ns,
            leader_matched_position: 0,
            leader_log_floor: 0,
            canvass_started_ns: now_ns,
            next_canvass_ns: now_ns,
            nominate_at_ns: 0,
            ballot_deadline_ns: 0,
            leader_term_base: 0,
            last_timestamp_ns: 0,
            peers,
            next_sync_id: 1,
            synced_requested_position: recovered.log_end,
            pending_syncs: VecDeque::new(),
            now_ns,
            outputs: VecDeque::new(),
            scratch: vec![
                0;
                crate::log_entry::ENTRY_LENGTH_MAX - crate::log_entry::FRAME_HEADER_LENGTH
            ],
            pool: Vec::with_capacity(POOL_BUFFERS_MAX),
            config,
        };
        consensus.push_role_change();
        Ok(consensus)
    }

    /// This member's id.
    pub const fn id(&self) -> u32 {
        self.id
    }

    /// The current role.
    pub const fn role(&self) -> Role {
        self.role
    }

    /// The current term.
    pub const fn current_term(&self) -> u64 {
        self.current_term
    }

    /// The vote cast in the current term.
    pub const fn voted_for(&self) -> Option<u32> {
        self.voted_for
    }

    /// The leader this member follows (itself when leading).
    pub const fn leader(&self) -> Option<u32> {
        self.leader
    }

    /// The end of the local log.
    pub const fn appended_position(&self) -> u64 {
        self.appended_position
    }

    /// The position up to which the local log is durable.
    pub const fn durable_position(&self) -> u64 {
        self.durable_position
    }

    /// Whether this member is rebuilding its log ([`RecoveredState::rebuilding`]) and so
    /// neither votes nor stands yet.
    pub const fn rebuilding(&self) -> bool {
        self.rebuilding.is_some()
    }

    /// While rebuilding: takes the first commit a leader sent as the one to reach, and ends
    /// the rebuild once the member's own commit has reached it and covers an entry of the
    /// current term (a leader's first entry follows everything committed in earlier terms).
    fn note_leader_commit(&mut self, leader_commit: u64) {
        let Some(target) = self.rebuilding else {
            return;
        };
        let target = if target == 0 { leader_commit } else { target };
        let caught_up = target > 0
            && self.commit_position >= target
            && self.history.term_before(self.commit_position) == self.current_term;
        self.rebuilding = (!caught_up).then_some(target);
    }

    /// The commit position: entries below it are stable at a majority and may be applied.
    pub const fn commit_position(&self) -> u64 {
        self.commit_position
    }

    /// How far the service may apply the log: the commit position.
    pub fn applicable_position(&self) -> u64 {
        if self.config.planted(PlantedBug::ApplyBeforeCommit) {
            self.appended_position
        } else {
            self.commit_position
        }
    }

    /// The position below which this member may purge its log: nothing below it is needed by
    /// any member. A leader's is the lowest position a follower has acknowledged in its term (0
    /// until every follower has answered: a member that is down may need everything it had),
    /// at most the commit; a follower's is the highest its leaders have sent it.
    pub fn log_floor(&self) -> u64 {
        if self.role != Role::Leader {
            return self.leader_log_floor;
        }
        self.other_members()
            .map(|member| self.peers[usize::try_from(member).expect("small")].matched_position)
            .min()
            .unwrap_or(self.commit_position)
            .min(self.commit_position)
    }

    /// The term history.
    pub const fn term_history(&self) -> &TermHistory {
        &self.history
    }

    /// The configuration.
    pub const fn config(&self) -> &ConsensusConfig {
        &self.config
    }

    /// Hands back the buffer of an output that has been carried out (a sent message, an append
    /// that was written), so that the core reuses it instead of allocating: with every buffer
    /// handed back, a steady state allocates nothing. Optional; small and bounded in number.
    pub fn recycle(&mut self, mut buffer: Vec<u8>) {
        if self.pool.len() < POOL_BUFFERS_MAX && buffer.capacity() <= POOL_BUFFER_CAPACITY_MAX {
            buffer.clear();
            self.pool.push(buffer);
        }
    }

    /// An empty buffer, reused when one was handed back.
    fn buffer(&mut self, capacity: usize) -> Vec<u8> {
        let mut buffer = self.pool.pop().unwrap_or_default();
        buffer.reserve(capacity);
        buffer
    }

    /// Encodes a message without var data: `write` encodes into a zeroed buffer and returns the
    /// length; the buffer comes back cut to it.
    fn encode_fixed(&mut self, write: impl FnOnce(&Self, &mut [u8]) -> usize) -> Vec<u8> {
        let mut buffer = self.buffer(FIXED_MESSAGE_MAX);
        buffer.resize(FIXED_MESSAGE_MAX, 0);
        let length = write(self, &mut buffer);
        buffer.truncate(length);
        buffer
    }

    /// The next output to carry out, in order.
    pub fn poll_output(&mut self) -> Option<Output> {
        if let Some(output) = self.outputs.pop_front() {
            return Some(output);
        }
        self.request_sync()
    }

    /// Whether outputs are queued (a sync the core would ask for next is not counted): lets a
    /// caller tell the middle of a batch of outputs from its end.
    pub fn has_queued_output(&self) -> bool {
        !self.outputs.is_empty()
    }

    /// Handles the passage of time: timeouts, canvass and heartbeat sends, leader replication.
    pub fn on_tick(&mut self, now_ns: u64, log: &(impl LogView + ?Sized)) {
        self.advance_clock(now_ns);
        match self.role {
            Role::Follower => self.follower_tick(),
            Role::Canvass => self.canvass_tick(),
            Role::Nominate => self.nominate_tick(),
            Role::Candidate => self.candidate_tick(),
            Role::Leader => self.leader_tick(log),
        }
    }

    /// Handles a message from another member. Bytes that do not decode, or that name a member
    /// outside the cluster, are an error the caller counts; the state is unchanged.
    pub fn on_message(
        &mut self,
        now_ns: u64,
        bytes: &[u8],
        log: &(impl LogView + ?Sized),
    ) -> Result<(), ProtocolError> {
        self.advance_clock(now_ns);
        let message = Message::decode(bytes)?;
        let sender = match &message {
            Message::Canvass(m) => m.member_id(),
            Message::RequestVote(m) => m.candidate_id(),
            Message::Vote(m) => m.voter_id(),
            Message::AppendRequest(m) => m.leader_id(),
            Message::AppendResponse(m) => m.follower_id(),
            Message::SnapshotChunk(m) => m.leader_id(),
        };
        if sender >= self.config.member_count || sender == self.id {
            return Err(ProtocolError::Malformed(
                tern_codec::DecodeError::InvalidValue {
                    field: "member_id",
                    value: i64::from(sender),
                    reason: "not another member of this cluster",
                },
            ));
        }
        match message {
            Message::Canvass(m) => self.on_canvass(&m),
            Message::RequestVote(m) => self.on_request_vote(&m),
            Message::Vote(m) => self.on_vote(&m),
            Message::AppendRequest(m) => self.on_append_request(&m, log.start())?,
            Message::AppendResponse(m) => self.on_append_response(&m, log),
            // A transfer's chunks are gathered by the caller, which hands the whole to
            // `on_snapshot_offered`; one that reaches the core is left alone.
            Message::SnapshotChunk(_) => {}
        }
        Ok(())
    }

    /// The caller could not send `message` to `to` (its stream was back-pressured or not
    /// connected): an append request's entries count as not sent, so the leader sends them
    /// again from there, a millisecond later, instead of waiting for a refusal to tell it.
    /// Back-pressure is an input.
    /// Any other message is simply lost, as the network may lose it.
    pub fn on_send_failed(&mut self, to: u32, message: &[u8]) {
        if self.role != Role::Leader || to >= self.config.member_count || to == self.id {
            return;
        }
        let Ok(Message::AppendRequest(request)) = Message::decode(message) else {
            return;
        };
        if request.term() != self.current_term || request.entries().is_empty() {
            return;
        }
        let from = request.prev_position();
        let now_ns = self.now_ns;
        let longest_ns = self.config.heartbeat_interval_ns;
        let peer = self.peer(to);
        if from >= peer.matched_position && from < peer.next_position {
            peer.next_position = from;
            // Not sent, so nothing is in flight. Sent again after a pause that doubles with each
            // failure in a row up to a heartbeat interval, one append per try until the member
            // answers: a member that is down costs neither a spinning thread nor a window of
            // appends encoded again each time.
            peer.probe_in_flight = false;
            peer.last_sent_ns = 0;
            let pause_ns = (SEND_RETRY_NS << peer.send_failures.min(16)).min(longest_ns);
            peer.send_failures = peer.send_failures.saturating_add(1);
            peer.retry_at_ns = now_ns.saturating_add(pause_ns);
        }
    }

    /// The caller finished the sync with `sync_id` (and every earlier one).
    pub fn on_durable(&mut self, now_ns: u64, sync_id: u64) {
        self.advance_clock(now_ns);
        let mut durable = self.durable_position;
        while let Some(&(id, position)) = self.pending_syncs.front() {
            if id > sync_id {
                break;
            }
            durable = durable.max(position);
            self.pending_syncs.pop_front();
        }
        let durable = durable.min(self.appended_position);
        if durable <= self.durable_position {
            return;
        }
        self.durable_position = durable;
        match self.role {
            Role::Leader => self.update_commit(),
            Role::Follower => self.acknowledge_leader(),
            _ => {}
        }
    }

    fn advance_clock(&mut self, now_ns: u64) {
        // Time passed in must be monotonic; a clock that steps back is held where it was, so a
        // jump backwards delays timeouts instead of corrupting them.
        self.now_ns = self.now_ns.max(now_ns);
    }

    fn request_sync(&mut self) -> Option<Output> {
        if self.appended_position <= self.synced_requested_position {
            return None;
        }
        let sync_id = self.next_sync_id;
        self.next_sync_id += 1;
        self.synced_requested_position = self.appended_position;
        self.pending_syncs
            .push_back((sync_id, self.appended_position));
        Some(Output::Sync {
            sync_id,
            position: self.appended_position,
        })
    }

    fn become_role(&mut self, role: Role) {
        assert!(
            self.role.may_become(role),
            "invalid transition {:?} -> {role:?}",
            self.role
        );
        let changed = self.role != role;
        self.role = role;
        if changed {
            self.push_role_change();
        }
    }

    fn push_role_change(&mut self) {
        self.outputs.push_back(Output::RoleChanged {
            role: self.role,
            term: self.current_term,
            leader: self.leader,
        });
    }

    fn send(&mut self, to: u32, message: Vec<u8>) {
        debug_assert_ne!(to, self.id);
        self.outputs.push_back(Output::Send { to, message });
    }

    fn other_members(&self) -> impl Iterator<Item = u32> + use<> {
        let id = self.id;
        (0..self.config.member_count).filter(move |&member| member != id)
    }

    fn peer(&mut self, member: u32) -> &mut Peer {
        &mut self.peers[usize::try_from(member).expect("member ids are small")]
    }

    /// Adopts a higher term seen in a message: the vote is cleared and persisted, and a member
    /// that was leading or standing becomes a follower without a leader.
    fn adopt_term(&mut self, term: u64) {
        assert!(term > self.current_term, "terms only increase");
        self.current_term = term;
        self.voted_for = None;
        self.leader = None;
        self.leader_matched_position = 0;
        self.outputs.push_back(Output::PersistVote {
            term,
            voted_for: None,
        });
        self.leader_contact_ns = self.now_ns;
        if self.role == Role::Follower {
            self.push_role_change();
        } else {
            self.become_role(Role::Follower);
        }
    }

    fn truncate_log(&mut self, position: u64) {
        assert!(position <= self.appended_position, "truncation only cuts");
        self.outputs.push_back(Output::Truncate { position });
        self.history.truncate(position);
        self.appended_position = position;
        self.durable_position = self.durable_position.min(position);
        self.synced_requested_position = self.synced_requested_position.min(position);
        // The planted mistake: syncs in flight keep claiming the bytes that were cut.
        if !self.config.planted(PlantedBug::SyncsNotCutAtTruncation) {
            for pending in &mut self.pending_syncs {
                pending.1 = pending.1.min(position);
            }
        }
    }

    fn append_local(&mut self, term: u64, entries: Vec<u8>) {
        let length = u64::try_from(entries.len()).expect("fits");
        let target = self.append_target(term);
        // A fresh append takes the entries' buffer whole; a coalescing one copies them in.
        let spare = if target.is_empty() {
            std::mem::replace(target, entries)
        } else {
            target.extend_from_slice(&entries);
            entries
        };
        self.recycle(spare);
        self.appended_position += length;
    }

    /// Frames the message in the scratch buffer into the log at its end, as an entry of `term`
    /// (after a PAD to the term's end when it does not fit before it). Returns where the entry
    /// starts.
    fn append_scratch(&mut self, term: u64, message_length: usize) -> u64 {
        let scratch = std::mem::take(&mut self.scratch);
        let position = self.appended_position;
        let format = self.config.log_format;
        let target = self.append_target(term);
        let written = format.write_entry(target, position, &scratch[..message_length]);
        self.scratch = scratch;
        self.appended_position += written.length;
        written.position
    }

    /// The entries of the append output that the next bytes of `term` at the end of the log join:
    /// the last output when it is an append that ends there (a burst of commands is one write),
    /// else a new one.
    fn append_target(&mut self, term: u64) -> &mut Vec<u8> {
        let position = self.appended_position;
        self.history.record(term, position);
        let coalesce = matches!(
            self.outputs.back(),
            Some(Output::Append { position: last_position, term: last_term, entries })
                if *last_term == term
                    && entries.len() < APPEND_COALESCE_BYTES
                    && *last_position + u64::try_from(entries.len()).expect("fits") == position
        );
        if !coalesce {
            let entries = self.buffer(APPEND_BUFFER_CAPACITY);
            self.outputs.push_back(Output::Append {
                position,
                term,
                entries,
            });
        }
        let Some(Output::Append { entries, .. }) = self.outputs.back_mut() else {
            unreachable!("the last output is an append");
        };
        entries
    }
}

#[cfg(test)]
mod tests;
