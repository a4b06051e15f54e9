//! An in-process cluster with zero network delay and in-memory logs: the consensus cores and
//! service containers wired directly together, for unit tests, examples and the core benchmark.
//!
//! Messages are delivered in send order as soon as [`LocalCluster::run_until_idle`] runs; log
//! appends go to a `Vec<u8>` per member and syncs complete at once (the benchmark's "no fsync",
//! as in the reference figures it is compared with). Time moves only when the caller advances
//! it, so nothing times out in a benchmark. Links can be cut to test elections and replication.
//!
//! In [`Mode::Apply`] every member's container applies the committed log to a [`KvStore`] and
//! the leader's answers carry the service's response. In [`Mode::CommitOnly`] nothing is applied:
//! a command is answered as soon as the leader's commit position passes it, which is what "the
//! consensus core alone" means in the benchmark.

use std::collections::VecDeque;

use crate::consensus::{
    AppendError, ConfigError, Consensus, ConsensusConfig, Output, RecoveredState, Role,
};
use crate::container::{ContainerOutput, ServiceContainer};
use crate::kv::KvStore;
use tern_codec::SemanticVersion;

/// Log bytes between digest checkpoints in a local cluster.
const DIGEST_INTERVAL_BYTES: u64 = 64 * 1024;
/// Messages kept as examples by [`LocalCluster::sent_messages`].
const SENT_KEPT: usize = 64;
/// Messages delivered per [`LocalCluster::run_until_idle`] at most, so a bug cannot spin forever.
const DELIVERIES_MAX: usize = 10_000_000;

/// One member of a local cluster.
#[derive(Debug)]
pub struct LocalMember {
    /// The consensus core.
    pub consensus: Consensus,
    /// The member's log.
    pub log: Vec<u8>,
    /// The service container.
    pub container: ServiceContainer<KvStore>,
    /// Syncs requested and not yet completed.
    pending_syncs: Vec<u64>,
    /// Whether syncs complete by themselves.
    auto_sync: bool,
}

/// What a local cluster does with committed entries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Apply them to every member's key-value store; answers carry the service's response.
    Apply,
    /// Apply nothing; answer each command once the leader's commit position passes it.
    CommitOnly,
}

/// An answer to a client, produced by the leader's container.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Answer {
    /// The session.
    pub session_id: u64,
    /// The request.
    pub request_id: u64,
    /// Where it was applied.
    pub position: u64,
    /// The service's response.
    pub payload: Vec<u8>,
}

/// An in-process cluster; see the [module docs](self).
#[derive(Debug)]
pub struct LocalCluster {
    members: Vec<LocalMember>,
    messages: VecDeque<(u32, u32, Vec<u8>)>,
    /// `cut[from * n + to]`: messages on the link are dropped.
    cut: Vec<bool>,
    now_ns: u64,
    answers: Vec<Answer>,
    /// The first messages exchanged, kept as examples (fuzz corpus seeds, traces).
    sent: Vec<Vec<u8>>,
    /// Reports of incompatible members, as (reporter, member, version).
    incompatible: Vec<(u32, u32, SemanticVersion)>,
    mode: Mode,
    /// Commit-only mode: commands waiting for the commit, as (session, request, start, end).
    waiting: VecDeque<(u64, u64, u64, u64)>,
}

impl LocalCluster {
    /// A cluster of `members` fresh members with the default configuration.
    pub fn new(members: u32, seed: u64) -> Result<Self, ConfigError> {
        Self::with_config(ConsensusConfig::new(members), seed)
    }

    /// A cluster of fresh members with `config`.
    pub fn with_config(config: ConsensusConfig, seed: u64) -> Result<Self, ConfigError> {
        let configs = vec![config.clone(); usize::try_from(config.member_count).expect("fits")];
        Self::with_configs(configs, seed)
    }

    /// A cluster whose member `i` runs `configs[i]` (all must agree on the member count): for
    /// members of different protocol versions, as in a rolling upgrade.
    pub fn with_configs(configs: Vec<ConsensusConfig>, seed: u64) -> Result<Self, ConfigError> {
        let count = u32::try_from(configs.len()).unwrap_or(u32::MAX);
        if configs.iter().any(|config| config.member_count != count) {
            return Err(ConfigError::MemberCount(count));
        }
        let members = configs
            .into_iter()
            .zip(0..count)
            .map(|(config, id)| {
                Ok(LocalMember {
                    consensus: Consensus::new(
                        config,
                        id,
                        RecoveredState::default(),
                        seed.wrapping_add(u64::from(id)),
                        0,
                    )?,
                    log: Vec::new(),
                    container: ServiceContainer::new(KvStore::default(), DIGEST_INTERVAL_BYTES),
                    pending_syncs: Vec::new(),
                    auto_sync: true,
                })
            })
            .collect::<Result<Vec<_>, ConfigError>>()?;
        let links = usize::try_from(count * count).expect("fits");
        Ok(Self {
            members,
            messages: VecDeque::new(),
            cut: vec![false; links],
            now_ns: 0,
            answers: Vec::new(),
            sent: Vec::new(),
            incompatible: Vec::new(),
            mode: Mode::Apply,
            waiting: VecDeque::new(),
        })
    }

    /// Every report of a member of another major protocol version, as (reporter, member,
    /// version).
    pub fn incompatible_reports(&self) -> &[(u32, u32, SemanticVersion)] {
        &self.incompatible
    }

    /// Reserves and touches room for `bytes` of log on every member, so a benchmark measures
    /// consensus rather than the growth of a `Vec` and first-touch page faults (a real log is a
    /// preallocated segment file, mapped with its pages populated).
    pub fn reserve_log(&mut self, bytes: usize) {
        for member in &mut self.members {
            let length = member.log.len();
            member.log.resize(length + bytes, 0);
            member.log.truncate(length);
        }
    }

    /// Chooses what happens to committed entries (default [`Mode::Apply`]).
    pub fn set_mode(&mut self, mode: Mode) {
        self.mode = mode;
    }

    /// A member.
    pub fn member(&self, id: u32) -> &LocalMember {
        &self.members[index(id)]
    }

    /// A member, to drive its core directly (tests of one rule).
    pub fn member_mut(&mut self, id: u32) -> &mut LocalMember {
        &mut self.members[index(id)]
    }

    /// The current (virtual) time.
    pub fn now_ns(&self) -> u64 {
        self.now_ns
    }

    /// Cuts or restores the link from `from` to `to`.
    pub fn set_link(&mut self, from: u32, to: u32, connected: bool) {
        let count = self.members.len();
        self.cut[index(from) * count + index(to)] = !connected;
    }

    /// Cuts or restores every link of `member`, both ways.
    pub fn set_isolated(&mut self, member: u32, isolated: bool) {
        for other in 0..u32::try_from(self.members.len()).expect("fits") {
            if other != member {
                self.set_link(member, other, !isolated);
                self.set_link(other, member, !isolated);
            }
        }
    }

    /// Queues `message` as if `from` had just sent it to `to`: a stale, duplicated or forged
    /// message, for tests of what a member does with one.
    pub fn inject(&mut self, from: u32, to: u32, message: Vec<u8>) {
        self.messages.push_back((from, to, message));
    }

    /// Makes a member's syncs wait for [`LocalCluster::complete_syncs`] (or complete at once).
    pub fn set_auto_sync(&mut self, member: u32, auto_sync: bool) {
        self.members[index(member)].auto_sync = auto_sync;
    }

    /// Completes a member's outstanding syncs.
    pub fn complete_syncs(&mut self, member: u32) {
        let slot = &mut self.members[index(member)];
        if let Some(&last) = slot.pending_syncs.last() {
            slot.pending_syncs.clear();
            let now = self.now_ns;
            slot.consensus.on_durable(now, last);
        }
        self.run_until_idle();
    }

    /// The leader, if exactly one member leads the highest term.
    pub fn leader(&self) -> Option<u32> {
        let term = self
            .members
            .iter()
            .map(|m| m.consensus.current_term())
            .max()?;
        let mut leaders = self
            .members
            .iter()
            .filter(|m| m.consensus.role() == Role::Leader && m.consensus.current_term() == term);
        let leader = leaders.next()?;
        leaders.next().is_none().then(|| leader.consensus.id())
    }

    /// Advances time by `step_ns` at a time until a leader is elected, at most `limit_ns`.
    pub fn elect(&mut self, step_ns: u64, limit_ns: u64) -> Option<u32> {
        let deadline = self.now_ns + limit_ns;
        while self.now_ns < deadline {
            if let Some(leader) = self.leader() {
                return Some(leader);
            }
            self.advance(step_ns);
        }
        self.leader()
    }

    /// Moves time forward, ticks every member and runs until idle.
    pub fn advance(&mut self, step_ns: u64) {
        self.now_ns += step_ns;
        self.tick();
    }

    /// Ticks every member at the current time and runs until idle.
    pub fn tick(&mut self) {
        for member in &mut self.members {
            member.consensus.on_tick(self.now_ns, &member.log);
        }
        self.run_until_idle();
    }

    /// Appends a client command on `member` (which must lead).
    pub fn submit(
        &mut self,
        member: u32,
        session_id: u64,
        request_id: u64,
        payload: &[u8],
    ) -> Result<u64, AppendError> {
        let now = self.now_ns;
        let consensus = &mut self.members[index(member)].consensus;
        let start = consensus.append_session_message(now, session_id, request_id, payload)?;
        if self.mode == Mode::CommitOnly {
            let end = consensus.appended_position();
            self.waiting.push_back((session_id, request_id, start, end));
        }
        Ok(start)
    }

    /// Answers produced by leaders since the last call.
    pub fn take_answers(&mut self) -> Vec<Answer> {
        std::mem::take(&mut self.answers)
    }

    /// The first messages the members sent each other (up to 64 of them).
    pub fn sent_messages(&self) -> &[Vec<u8>] {
        &self.sent
    }

    /// Forgets the answers produced so far, keeping their buffer.
    pub fn clear_answers(&mut self) {
        self.answers.clear();
    }

    /// Answers produced so far, without taking them.
    pub fn answers(&self) -> &[Answer] {
        &self.answers
    }

    /// Carries out every output and delivers every message until nothing is left to do.
    pub fn run_until_idle(&mut self) {
        let mut delivered = 0;
        loop {
            let mut progressed = false;
            for id in 0..self.members.len() {
                progressed |= self.drain(id);
            }
            if let Some((from, to, bytes)) = self.messages.pop_front() {
                progressed = true;
                delivered += 1;
                assert!(delivered < DELIVERIES_MAX, "a local cluster is storming");
                let count = self.members.len();
                if !self.cut[index(from) * count + index(to)] {
                    let now = self.now_ns;
                    let member = &mut self.members[index(to)];
                    // Messages between members of this process are well formed; an error here
                    // is a bug the caller's test should see.
                    member
                        .consensus
                        .on_message(now, &bytes, &member.log)
                        .expect("members exchange valid messages");
                }
                self.members[index(from)].consensus.recycle(bytes);
            }
            if !progressed {
                return;
            }
        }
    }

    fn drain(&mut self, id: usize) -> bool {
        let mut progressed = false;
        let now = self.now_ns;
        let member = &mut self.members[id];
        while let Some(output) = member.consensus.poll_output() {
            progressed = true;
            match output {
                Output::Send { to, message } => {
                    let from = u32::try_from(id).expect("fits");
                    if self.sent.len() < SENT_KEPT {
                        self.sent.push(message.clone());
                    }
                    self.messages.push_back((from, to, message));
                }
                Output::Append {
                    position, entries, ..
                } => {
                    assert_eq!(u64::try_from(member.log.len()).expect("fits"), position);
                    member.log.extend_from_slice(&entries);
                    member.consensus.recycle(entries);
                }
                Output::Truncate { position } => {
                    member
                        .log
                        .truncate(usize::try_from(position).expect("fits"));
                }
                Output::Sync { sync_id, .. } => {
                    if member.auto_sync {
                        member.consensus.on_durable(now, sync_id);
                    } else {
                        member.pending_syncs.push(sync_id);
                    }
                }
                Output::IncompatiblePeer {
                    member: peer,
                    version,
                    ..
                } => {
                    let reporter = u32::try_from(id).expect("fits");
                    if self.incompatible.len() < SENT_KEPT {
                        self.incompatible.push((reporter, peer, version));
                    }
                }
                // Logs here are never purged, so no member is ever behind a log's start.
                Output::PersistVote { .. }
                | Output::RoleChanged { .. }
                | Output::SendSnapshot { .. } => {}
            }
        }
        let leading = member.consensus.role() == Role::Leader;
        if self.mode == Mode::CommitOnly {
            if leading {
                let commit = member.consensus.commit_position();
                while let Some(&(session_id, request_id, position, end)) = self.waiting.front() {
                    if end > commit {
                        break;
                    }
                    self.waiting.pop_front();
                    self.answers.push(Answer {
                        session_id,
                        request_id,
                        position,
                        payload: Vec::new(),
                    });
                }
            }
            return progressed;
        }
        let commit = member.consensus.applicable_position();
        if member.container.applied_position() < commit {
            member
                .container
                .apply(&member.log, commit)
                .expect("a local cluster's committed log applies");
            progressed = true;
        }
        while let Some(output) = member.container.poll_output() {
            if let ContainerOutput::Response {
                session_id,
                request_id,
                position,
                payload,
                ..
            } = output
                && leading
            {
                self.answers.push(Answer {
                    session_id,
                    request_id,
                    position,
                    payload,
                });
            }
        }
        progressed
    }
}

fn index(member: u32) -> usize {
    usize::try_from(member).expect("member ids are small")
}
