//! The simulated world: one thread, one event queue, every member, link, disk, clock and client.
//!
//! Events are ordered by simulated time and then by the order they were scheduled, and every
//! random draw comes from generators forked from the seed, so a seed replays exactly. Each event
//! is folded into the trace hash as it is processed.

use std::cmp::Reverse;
use std::collections::BinaryHeap;

use super::checker::Checker;
use super::client::Client;
use super::clock::Clock;
use super::network::{Fate, Network, NetworkFaults};
use super::storage::SimStorage;
use super::{FaultCounts, SimConfig, Swarm};
use crate::consensus::{AppendError, Consensus, Output, RecoveredState, Role};
use crate::container::{ContainerOutput, ServiceContainer};
use crate::digest::{hash_bytes, hash_words};
use crate::kv::KvStore;
use crate::protocol::Message;
use crate::rng::Rng;
use crate::session_protocol::{NO_LEADER, Response, ResponseCode, session_request};

#[derive(Debug)]
enum Event {
    Tick,
    Deliver {
        from: usize,
        to: usize,
        bytes: Vec<u8>,
    },
    SyncDone {
        member: usize,
        incarnation: u64,
        sync_id: u64,
        marker: u64,
    },
    Restart {
        member: usize,
        incarnation: u64,
    },
    Nemesis,
    /// A targeted fault on a member that just became leader.
    StrikeLeader {
        member: usize,
        incarnation: u64,
    },
    EndPartition {
        links: Vec<(usize, usize)>,
    },
    Heal,
    ClientWake {
        client: usize,
        generation: u64,
    },
}

#[derive(Debug)]
struct Scheduled {
    at_ns: u64,
    sequence: u64,
    event: Event,
}

impl PartialEq for Scheduled {
    fn eq(&self, other: &Self) -> bool {
        (self.at_ns, self.sequence) == (other.at_ns, other.sequence)
    }
}
impl Eq for Scheduled {}
impl PartialOrd for Scheduled {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for Scheduled {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        (self.at_ns, self.sequence).cmp(&(other.at_ns, other.sequence))
    }
}

struct Node {
    consensus: Consensus,
    container: ServiceContainer<KvStore>,
    last_commit: u64,
    last_snapshot_position: u64,
}

struct Member {
    storage: SimStorage,
    node: Option<Node>,
    incarnation: u64,
    clock: Clock,
    last_sync_done_ns: u64,
    stopped: bool,
    /// A paused member processes nothing before this time.
    paused_until_ns: u64,
}

/// What a finished run reports to [`super::run_seed`].
pub(super) struct RunResult {
    pub trace_hash: u64,
    pub simulated_ns: u64,
    pub faults: FaultCounts,
    pub commands_committed: u64,
    pub elections: u64,
    pub violations: Vec<super::Violation>,
    pub trace: Vec<String>,
}

pub(super) struct World<'a> {
    config: &'a SimConfig,
    swarm: Swarm,
    seed: u64,
    now_ns: u64,
    sequence: u64,
    queue: BinaryHeap<Reverse<Scheduled>>,
    network: Network,
    network_rng: Rng,
    fault_rng: Rng,
    storage_rng: Rng,
    members: Vec<Member>,
    clients: Vec<Client>,
    checker: Checker,
    faults: FaultCounts,
    elections: u64,
    trace_hash: u64,
    trace: Option<Vec<String>>,
    healed_at_ns: Option<u64>,
    leader_found_ns: Option<u64>,
    finished: bool,
}

const NEMESIS_INTERVAL_NS: u64 = 100_000_000;
const CLIENT_RETRY_NS: u64 = 300_000_000;
const COMMANDS_AFTER_HEAL: u64 = 3;
/// A run that needs more events than this is storming (a message loop), not simulating.
const EVENTS_MAX: u64 = 5_000_000;
/// Events waiting at once beyond this are a storm too.
const QUEUE_MAX: usize = 200_000;

impl<'a> World<'a> {
    pub(super) fn new(config: &'a SimConfig, seed: u64) -> Self {
        let mut root = Rng::new(seed);
        let mut fault_rng = root.fork();
        let swarm = Swarm::draw(&mut fault_rng, config);
        let network = Network::new(
            usize::try_from(config.members).expect("fits"),
            if config.faults {
                swarm.network
            } else {
                NetworkFaults::CALM
            },
        );
        let members = (0..config.members)
            .map(|_| Member {
                storage: SimStorage::default(),
                node: None,
                incarnation: 0,
                clock: Clock {
                    drift_ppm: if config.faults && swarm.drift {
                        i64::try_from(fault_rng.below(20_001)).expect("fits") - 10_000
                    } else {
                        0
                    },
                    offset_ns: 0,
                },
                last_sync_done_ns: 0,
                stopped: false,
                paused_until_ns: 0,
            })
            .collect::<Vec<_>>();
        let mut client_rng = root.fork();
        let clients = (0..config.clients)
            .map(|index| Client::new(index, config.members, client_rng.fork()))
            .collect();
        let faults = FaultCounts {
            drifting_clocks: u64::try_from(
                members
                    .iter()
                    .filter(|member| member.clock.drift_ppm != 0)
                    .count(),
            )
            .expect("fits"),
            ..FaultCounts::default()
        };
        let mut world = Self {
            config,
            swarm,
            seed,
            now_ns: 0,
            sequence: 0,
            queue: BinaryHeap::new(),
            network,
            network_rng: root.fork(),
            fault_rng,
            storage_rng: root.fork(),
            members,
            clients,
            checker: Checker::default(),
            faults,
            elections: 0,
            trace_hash: 0,
            trace: config.trace.then(Vec::new),
            healed_at_ns: None,
            leader_found_ns: None,
            finished: false,
        };
        for member in 0..world.members.len() {
            world.start_member(member);
        }
        world.schedule(0, Event::Tick);
        if config.faults {
            world.schedule(NEMESIS_INTERVAL_NS, Event::Nemesis);
        }
        world.schedule(config.fault_phase_ns, Event::Heal);
        for client in 0..world.clients.len() {
            let delay = world.network_rng.below(50_000_000);
            world.schedule_client(client, delay);
        }
        world
    }

    fn schedule(&mut self, delay_ns: u64, event: Event) {
        self.sequence += 1;
        self.queue.push(Reverse(Scheduled {
            at_ns: self.now_ns + delay_ns,
            sequence: self.sequence,
            event,
        }));
    }

    fn note(&mut self, line: impl FnOnce() -> String) {
        if let Some(trace) = &mut self.trace {
            let now = self.now_ns;
            trace.push(format!(
                "{:>4}.{:06} {}",
                now / 1_000_000_000,
                now / 1_000 % 1_000_000,
                line()
            ));
        }
    }

    fn local_now(&self, member: usize) -> u64 {
        self.members[member].clock.read(self.now_ns)
    }

    fn hash_event(&mut self, kind: u64, a: u64, b: u64, c: u64) {
        self.trace_hash = hash_words(&[self.trace_hash, self.now_ns, kind, a, b, c]);
    }

    /// Runs the world until it converges after the heal, a checker fails, or time runs out.
    pub(super) fn run(mut self) -> RunResult {
        let deadline_ns = self.config.fault_phase_ns + self.config.convergence_timeout_ns;
        let mut events: u64 = 0;
        while let Some(Reverse(scheduled)) = self.queue.pop() {
            events += 1;
            if events > EVENTS_MAX || self.queue.len() > QUEUE_MAX {
                self.checker.record(
                    "event budget",
                    format!(
                        "{events} events processed and {} queued: a message storm",
                        self.queue.len()
                    ),
                );
                break;
            }
            self.now_ns = scheduled.at_ns;
            self.checker.set_time(self.now_ns);
            if self.now_ns > deadline_ns {
                self.liveness_failure();
                break;
            }
            self.handle(scheduled.event);
            if self.finished || !self.checker.violations().is_empty() {
                break;
            }
        }
        let violations = self.checker.violations().to_vec();
        self.faults.reordered_messages = self.network.reordered;
        self.faults.delay_spikes = self.network.spikes;
        RunResult {
            trace_hash: self.trace_hash,
            simulated_ns: self.now_ns,
            faults: self.faults,
            commands_committed: self.checker.acks_verified(),
            elections: self.elections,
            violations,
            trace: self.trace.unwrap_or_default(),
        }
    }

    fn handle(&mut self, event: Event) {
        match event {
            Event::Tick => {
                self.hash_event(1, 0, 0, 0);
                for member in 0..self.members.len() {
                    if self.members[member].paused_until_ns > self.now_ns {
                        continue;
                    }
                    let now = self.local_now(member);
                    let slot = &mut self.members[member];
                    if let Some(node) = &mut slot.node {
                        node.consensus.on_tick(now, slot.storage.log());
                        self.drain(member);
                    }
                }
                if self.healed_at_ns.is_some() {
                    self.check_liveness();
                }
                self.schedule(self.config.tick_ns, Event::Tick);
            }
            Event::Deliver { from, to, bytes } => {
                self.hash_event(
                    2,
                    u64::try_from(from).expect("fits"),
                    u64::try_from(to).expect("fits"),
                    hash_bytes(&bytes),
                );
                let paused_until = self
                    .members
                    .get(to)
                    .map_or(0, |member| member.paused_until_ns);
                if paused_until > self.now_ns {
                    // A paused process reads its socket when it wakes.
                    self.schedule(
                        paused_until - self.now_ns,
                        Event::Deliver { from, to, bytes },
                    );
                    return;
                }
                self.deliver(from, to, &bytes);
            }
            Event::SyncDone {
                member,
                incarnation,
                sync_id,
                marker,
            } => {
                self.hash_event(3, u64::try_from(member).expect("fits"), sync_id, marker);
                if self.members[member].incarnation != incarnation {
                    return;
                }
                let paused_until = self.members[member].paused_until_ns;
                if paused_until > self.now_ns {
                    self.schedule(
                        paused_until - self.now_ns,
                        Event::SyncDone {
                            member,
                            incarnation,
                            sync_id,
                            marker,
                        },
                    );
                    return;
                }
                let now = self.local_now(member);
                let slot = &mut self.members[member];
                slot.storage.sync_to(marker);
                if let Some(node) = &mut slot.node {
                    node.consensus.on_durable(now, sync_id);
                    self.drain(member);
                }
            }
            Event::Restart {
                member,
                incarnation,
            } => {
                self.hash_event(4, u64::try_from(member).expect("fits"), incarnation, 0);
                if self.members[member].incarnation == incarnation
                    && self.members[member].node.is_none()
                {
                    self.start_member(member);
                }
            }
            Event::Nemesis => {
                self.hash_event(5, 0, 0, 0);
                if self.healed_at_ns.is_none() {
                    self.nemesis();
                    self.schedule(NEMESIS_INTERVAL_NS, Event::Nemesis);
                }
            }
            Event::StrikeLeader {
                member,
                incarnation,
            } => {
                self.hash_event(9, u64::try_from(member).expect("fits"), incarnation, 0);
                let live = self.members[member].incarnation == incarnation
                    && self.members[member].node.is_some();
                if live && self.healed_at_ns.is_none() {
                    if self.fault_rng.chance(500_000) {
                        self.faults.leader_strikes += 1;
                        self.crash(member);
                    } else {
                        self.faults.leader_strikes += 1;
                        self.isolate(member);
                    }
                }
            }
            Event::EndPartition { links } => {
                self.hash_event(6, u64::try_from(links.len()).expect("fits"), 0, 0);
                for (from, to) in links {
                    self.network.unblock(from, to);
                }
                self.note(|| "partition healed".to_string());
            }
            Event::Heal => {
                self.hash_event(7, 0, 0, 0);
                self.heal();
            }
            Event::ClientWake { client, generation } => {
                self.hash_event(8, u64::try_from(client).expect("fits"), generation, 0);
                if self.clients[client].generation == generation {
                    self.client_wake(client);
                }
            }
        }
    }

    fn member_count(&self) -> usize {
        self.members.len()
    }

    fn deliver(&mut self, from: usize, to: usize, bytes: &[u8]) {
        let members = self.member_count();
        if to >= members {
            self.client_receive(to - members, bytes);
            return;
        }
        if self.members[to].node.is_none() {
            return;
        }
        if from >= members {
            self.member_receive_request(to, from, bytes);
            return;
        }
        if self.trace.is_some() {
            let description = describe(bytes);
            self.note(|| format!("m{to} <- m{from} {description}"));
        }
        let now = self.local_now(to);
        let slot = &mut self.members[to];
        let node = slot.node.as_mut().expect("live");
        if let Err(error) = node.consensus.on_message(now, bytes, slot.storage.log()) {
            self.checker.record(
                "protocol",
                format!("member {to} refused a message from {from}: {error}"),
            );
        }
        self.drain(to);
    }

    fn send(&mut self, from: usize, to: usize, bytes: Vec<u8>) {
        match self
            .network
            .send(&mut self.network_rng, self.now_ns, from, to)
        {
            Fate::Partitioned => self.faults.partitioned_messages += 1,
            Fate::Lost => self.faults.lost_messages += 1,
            Fate::Delivered {
                at_ns,
                duplicate_at_ns,
            } => {
                if let Some(duplicate_ns) = duplicate_at_ns {
                    self.faults.duplicated_messages += 1;
                    self.schedule(
                        duplicate_ns - self.now_ns,
                        Event::Deliver {
                            from,
                            to,
                            bytes: bytes.clone(),
                        },
                    );
                }
                self.schedule(at_ns - self.now_ns, Event::Deliver { from, to, bytes });
            }
        }
    }

    /// Carries out a member's outputs, applies what committed, fires due timers, and repeats
    /// until the member has nothing more to do.
    fn drain(&mut self, member: usize) {
        for _ in 0..64 {
            let mut progressed = false;
            while let Some(output) = self.members[member]
                .node
                .as_mut()
                .and_then(|node| node.consensus.poll_output())
            {
                progressed = true;
                self.carry_out(member, output);
            }
            if self.members[member].node.is_none() {
                return;
            }
            self.observe_commit(member);
            progressed |= self.apply(member);
            progressed |= self.fire_timers(member);
            if !progressed {
                return;
            }
        }
    }

    fn carry_out(&mut self, member: usize, output: Output) {
        let id = u32::try_from(member).expect("fits");
        match output {
            Output::Send { to, message } => {
                self.send(member, usize::try_from(to).expect("fits"), message);
            }
            Output::Append {
                position,
                term,
                entries,
            } => {
                let slot = &mut self.members[member];
                let node = slot.node.as_ref().expect("live");
                let leading =
                    node.consensus.role() == Role::Leader && node.consensus.current_term() == term;
                slot.storage.append(position, term, entries);
                let log = slot.storage.log();
                let start = usize::try_from(position).expect("fits");
                let history = node.consensus.term_history();
                self.checker
                    .on_append(id, leading, position, term, &log[start..], history);
            }
            Output::Truncate { position } => {
                let slot = &mut self.members[member];
                let node = slot.node.as_ref().expect("live");
                let role = node.consensus.role();
                let commit = node.last_commit;
                slot.storage.truncate(position);
                self.checker.on_truncate(id, role, position, commit);
                self.note(|| format!("m{member} truncates its log to {position}"));
            }
            Output::Sync { sync_id, .. } => {
                let latency = self
                    .fault_rng
                    .between(self.swarm.fsync_min_ns, self.swarm.fsync_max_ns);
                let slot = &mut self.members[member];
                let marker = slot.storage.sync_marker();
                let done_ns = (self.now_ns + latency).max(slot.last_sync_done_ns);
                slot.last_sync_done_ns = done_ns;
                let incarnation = slot.incarnation;
                self.schedule(
                    done_ns - self.now_ns,
                    Event::SyncDone {
                        member,
                        incarnation,
                        sync_id,
                        marker,
                    },
                );
            }
            Output::PersistVote { term, voted_for } => {
                self.members[member].storage.persist_vote(term, voted_for);
                self.checker.on_vote(id, term, voted_for);
            }
            Output::RoleChanged { role, term, leader } => {
                if role == Role::Leader {
                    self.elections += 1;
                    if self.config.faults
                        && self.healed_at_ns.is_none()
                        && self.fault_rng.chance(self.swarm.leader_strike_per_million)
                    {
                        // Jepsen's "partition the primary" and "kill the primary", aimed at a
                        // leader that has just been elected, before it has replicated much.
                        let incarnation = self.members[member].incarnation;
                        // Half the strikes land before the leader's first send (its followers
                        // never hear of its term), half within its first 200 ms.
                        let delay = if self.fault_rng.chance(500_000) {
                            0
                        } else {
                            self.fault_rng.below(200_000_000)
                        };
                        self.schedule(
                            delay,
                            Event::StrikeLeader {
                                member,
                                incarnation,
                            },
                        );
                    }
                }
                self.note(|| format!("m{member} is {role:?} in term {term} (leader {leader:?})"));
                let log = self.members[member].storage.log().clone();
                self.checker.on_role(id, role, term, &log);
            }
            Output::IncompatiblePeer {
                member: peer,
                version,
            } => {
                self.checker.record(
                    "protocol",
                    format!(
                        "member {member} found member {peer} at incompatible version {version}"
                    ),
                );
            }
        }
    }

    fn observe_commit(&mut self, member: usize) {
        let slot = &mut self.members[member];
        let node = slot.node.as_mut().expect("live");
        let commit = node.consensus.commit_position();
        if commit > node.last_commit {
            let from = node.last_commit;
            node.last_commit = commit;
            let term = node.consensus.current_term();
            let id = u32::try_from(member).expect("fits");
            self.checker
                .on_commit(id, term, from, commit, slot.storage.log());
        }
    }

    fn apply(&mut self, member: usize) -> bool {
        let id = u32::try_from(member).expect("fits");
        let now = self.local_now(member);
        let slot = &mut self.members[member];
        if slot.stopped {
            return false;
        }
        let node = slot.node.as_mut().expect("live");
        let applicable = node.consensus.applicable_position();
        let result = node.container.apply(slot.storage.log(), applicable);
        let mut progressed = matches!(result, Ok(count) if count > 0);
        if let Err(error) = result {
            slot.stopped = true;
            self.checker.record(
                "replica stopped",
                format!("member {member} stopped applying: {error}"),
            );
        }
        let leading = node.consensus.role() == Role::Leader;
        let mut sends = Vec::new();
        while let Some(output) = node.container.poll_output() {
            match output {
                ContainerOutput::Response {
                    session_id,
                    request_id,
                    entry_position,
                    position,
                    duplicate,
                    payload,
                } => {
                    self.checker.on_apply(
                        id,
                        entry_position,
                        session_id,
                        request_id,
                        duplicate,
                        &payload,
                    );
                    if leading {
                        let response = Response {
                            session_id,
                            request_id,
                            position,
                            leader_hint: id,
                            code: ResponseCode::Applied,
                            payload,
                        };
                        sends.push((session_id, response.encode().expect("responses fit")));
                    }
                }
                ContainerOutput::Checkpoint { position, digest } => {
                    self.checker.on_checkpoint(id, position, digest);
                    if leading {
                        let _ = node.consensus.append_digest(now, position, digest);
                        progressed = true;
                    }
                }
            }
        }
        let applied = node.container.applied_position();
        if applied >= node.last_snapshot_position + self.config.snapshot_interval_bytes
            && applied <= node.consensus.durable_position()
        {
            node.last_snapshot_position = applied;
            let snapshot = node.container.take_snapshot();
            slot.storage.save_snapshot(applied, snapshot);
        }
        let members = self.member_count();
        for (session_id, bytes) in sends {
            let client = usize::try_from(session_id - 1).expect("fits");
            if client < self.clients.len() {
                self.send(member, members + client, bytes);
            }
        }
        progressed
    }

    fn fire_timers(&mut self, member: usize) -> bool {
        let now = self.local_now(member);
        if self.members[member].stopped {
            return false;
        }
        let node = self.members[member].node.as_mut().expect("live");
        if node.consensus.role() != Role::Leader {
            return false;
        }
        let term = node.consensus.current_term();
        let mut fired = false;
        while let Some(timer) = node.container.poll_due_timer(now, term) {
            if node.consensus.append_timer(now, timer).is_ok() {
                fired = true;
            }
        }
        fired
    }

    fn member_receive_request(&mut self, member: usize, from: usize, bytes: &[u8]) {
        let now = self.local_now(member);
        let stopped = self.members[member].stopped;
        let node = self.members[member].node.as_mut().expect("live");
        let Ok(request) = session_request::Decoder::decode(bytes) else {
            self.checker.record(
                "protocol",
                format!("member {member} got a malformed client request"),
            );
            return;
        };
        let session_id = request.session_id();
        let request_id = request.request_id();
        let refusal = if stopped {
            Some((ResponseCode::Busy, None))
        } else {
            match node.consensus.append_session_message(
                now,
                session_id,
                request_id,
                request.payload(),
            ) {
                Ok(_) => None,
                Err(AppendError::NotLeader { leader }) => Some((ResponseCode::Redirect, leader)),
                Err(AppendError::BackPressure { .. } | AppendError::Encode(_)) => {
                    Some((ResponseCode::Busy, None))
                }
            }
        };
        if let Some((code, leader)) = refusal {
            let response = Response {
                session_id,
                request_id,
                position: 0,
                leader_hint: leader.unwrap_or(NO_LEADER),
                code,
                payload: Vec::new(),
            };
            self.send(member, from, response.encode().expect("responses fit"));
        }
        self.drain(member);
    }

    fn schedule_client(&mut self, client: usize, delay_ns: u64) {
        let state = &mut self.clients[client];
        state.generation += 1;
        let generation = state.generation;
        self.schedule(delay_ns, Event::ClientWake { client, generation });
    }

    fn client_wants_more(&self, client: usize) -> bool {
        self.healed_at_ns.is_none() || self.clients[client].acked_after_heal < COMMANDS_AFTER_HEAL
    }

    fn client_wake(&mut self, client: usize) {
        let members = self.config.members;
        let state = &mut self.clients[client];
        if state.outstanding.is_some() {
            // The answer did not come in time: try another member.
            state.next_target(members);
        } else {
            if !self.client_wants_more(client) {
                return;
            }
            self.clients[client].next_request();
        }
        self.client_send(client);
    }

    fn client_send(&mut self, client: usize) {
        let state = &mut self.clients[client];
        let outstanding = state.outstanding.clone().expect("a request to send");
        state.sends += 1;
        let target = usize::try_from(state.target).expect("fits");
        let bytes = crate::session_protocol::encode_request(
            state.session_id,
            outstanding.request_id,
            &outstanding.payload,
        )
        .expect("commands fit");
        let endpoint = self.member_count() + client;
        self.send(endpoint, target, bytes);
        self.schedule_client(client, CLIENT_RETRY_NS);
    }

    fn client_receive(&mut self, client: usize, bytes: &[u8]) {
        let Ok(response) = Response::decode(bytes) else {
            self.checker.record(
                "protocol",
                format!("client {client} got a malformed response"),
            );
            return;
        };
        let state = &mut self.clients[client];
        let current = state
            .outstanding
            .as_ref()
            .map(|outstanding| outstanding.request_id);
        if current != Some(response.request_id) {
            return;
        }
        match response.code {
            ResponseCode::Applied => {
                state.outstanding = None;
                state.acked += 1;
                if self.healed_at_ns.is_some() {
                    state.acked_after_heal += 1;
                }
                let think = state.think_ns();
                self.checker.on_ack(
                    response.session_id,
                    response.request_id,
                    response.position,
                    &response.payload,
                );
                self.note(|| {
                    format!(
                        "client {client} request {} applied at {}",
                        response.request_id, response.position
                    )
                });
                self.schedule_client(client, think);
            }
            ResponseCode::Redirect => {
                if response.leader_hint == NO_LEADER || response.leader_hint == state.target {
                    state.next_target(self.config.members);
                    self.schedule_client(client, 20_000_000);
                } else {
                    state.target = response.leader_hint % self.config.members;
                    self.client_send(client);
                }
            }
            ResponseCode::Busy | ResponseCode::Unknown(_) => {
                self.schedule_client(client, 20_000_000);
            }
        }
    }

    fn start_member(&mut self, member: usize) {
        let now = self.local_now(member);
        let config = self.config.consensus_config();
        let digest_interval = self.config.digest_interval_bytes;
        let slot = &mut self.members[member];
        let recovered = slot.storage.recover(|bytes| {
            ServiceContainer::from_snapshot(KvStore::default(), digest_interval, bytes).is_ok()
        });
        self.faults.bad_snapshots_skipped += recovered.bad_snapshots;
        let (container, snapshot_position) = match &recovered.snapshot {
            Some((position, bytes)) => (
                ServiceContainer::from_snapshot(KvStore::default(), digest_interval, bytes)
                    .expect("checked during recovery"),
                *position,
            ),
            None => (
                ServiceContainer::new(KvStore::default(), digest_interval),
                0,
            ),
        };
        let state = RecoveredState {
            current_term: recovered.vote.0,
            voted_for: recovered.vote.1,
            term_history: recovered.terms,
            log_end: recovered.log_end,
            commit_position: snapshot_position,
        };
        let seed = hash_words(&[
            self.seed,
            u64::try_from(member).expect("fits"),
            slot.incarnation,
        ]);
        let id = u32::try_from(member).expect("fits");
        match Consensus::new(config, id, state, seed, now) {
            Ok(consensus) => {
                self.checker
                    .on_start(id, consensus.current_term(), consensus.voted_for());
                slot.node = Some(Node {
                    consensus,
                    container,
                    last_commit: snapshot_position,
                    last_snapshot_position: snapshot_position,
                });
                slot.stopped = false;
                self.note(|| {
                    format!(
                        "m{member} starts (log {} bytes, snapshot at {snapshot_position})",
                        recovered.log_end
                    )
                });
                self.drain(member);
            }
            Err(error) => {
                self.checker.record(
                    "recovery",
                    format!("member {member} cannot restart: {error}"),
                );
            }
        }
    }

    fn crash(&mut self, member: usize) {
        let tear_snapshot = self.fault_rng.chance(100_000);
        let slot = &mut self.members[member];
        slot.node = None;
        slot.incarnation += 1;
        let damage = slot.storage.crash(&mut self.storage_rng, tear_snapshot);
        self.faults.crashes += 1;
        self.faults.lost_writes += damage.lost_operations;
        self.faults.torn_writes += u64::from(damage.torn);
        self.faults.torn_snapshots += u64::from(tear_snapshot);
        let incarnation = slot.incarnation;
        self.note(|| {
            format!(
                "m{member} crashes ({} pending writes lost, torn {})",
                damage.lost_operations, damage.torn
            )
        });
        let downtime = self.fault_rng.between(100_000_000, 2_000_000_000);
        self.schedule(
            downtime,
            Event::Restart {
                member,
                incarnation,
            },
        );
    }

    fn nemesis(&mut self) {
        let members = self.member_count();
        let live: Vec<usize> = (0..members)
            .filter(|&m| self.members[m].node.is_some())
            .collect();
        if self.swarm.crash_per_million > 0
            && !live.is_empty()
            && self.fault_rng.chance(self.swarm.crash_per_million)
        {
            let victim = live[usize::try_from(
                self.fault_rng
                    .below(u64::try_from(live.len()).expect("fits")),
            )
            .expect("fits")];
            self.crash(victim);
        }
        if self.fault_rng.chance(self.swarm.partition_per_million) {
            self.partition();
        }
        if self.fault_rng.chance(self.swarm.clog_per_million) {
            let from = self.pick_member();
            let to = (from + 1 + self.pick_below(members - 1)) % members;
            let until = self.now_ns + self.fault_rng.between(100_000_000, 2_000_000_000);
            self.network.clog(from, to, until);
            self.faults.clogs += 1;
            self.note(|| format!("link m{from} -> m{to} clogged"));
        }
        if self.fault_rng.chance(self.swarm.pause_per_million) {
            let member = self.pick_member();
            let until = self.now_ns + self.fault_rng.between(200_000_000, 3_000_000_000);
            self.members[member].paused_until_ns = until;
            self.faults.pauses += 1;
            self.note(|| format!("m{member} pauses until {until}"));
        }
        if self.fault_rng.chance(self.swarm.clock_jump_per_million) {
            let member = self.pick_member();
            let delta = if self.fault_rng.chance(500_000) {
                i64::try_from(self.fault_rng.between(100_000_000, 3_000_000_000)).expect("fits")
            } else {
                -i64::try_from(self.fault_rng.between(100_000_000, 1_000_000_000)).expect("fits")
            };
            self.members[member].clock.jump(delta);
            self.faults.clock_jumps += 1;
            self.note(|| format!("m{member}'s clock jumps {delta} ns"));
        }
    }

    fn pick_below(&mut self, bound: usize) -> usize {
        usize::try_from(self.fault_rng.below(u64::try_from(bound).expect("fits"))).expect("fits")
    }

    fn pick_member(&mut self) -> usize {
        self.pick_below(self.member_count())
    }

    fn partition(&mut self) {
        let members = self.member_count();
        let mut links = Vec::new();
        match self.fault_rng.below(3) {
            0 => {
                let isolated = self.pick_member();
                self.isolate(isolated);
                return;
            }
            1 => {
                let member = self.pick_member();
                let outgoing = self.fault_rng.chance(500_000);
                for other in (0..members).filter(|&other| other != member) {
                    links.push(if outgoing {
                        (member, other)
                    } else {
                        (other, member)
                    });
                }
                self.faults.asymmetric_partitions += 1;
                self.note(|| format!("partition: m{member} one-way (outgoing cut: {outgoing})"));
            }
            _ => {
                let minority = 1 + self.pick_below(members / 2);
                let mut order: Vec<usize> = (0..members).collect();
                for index in (1..members).rev() {
                    let swap = self.pick_below(index + 1);
                    order.swap(index, swap);
                }
                let (side, rest) = order.split_at(minority);
                for &a in side {
                    for &b in rest {
                        links.push((a, b));
                        links.push((b, a));
                    }
                }
                self.faults.symmetric_partitions += 1;
                let side = side.to_vec();
                self.note(|| format!("partition: {side:?} split from the rest"));
            }
        }
        self.cut(links);
    }

    /// Cuts the given directions for a random while.
    fn cut(&mut self, links: Vec<(usize, usize)>) {
        for &(from, to) in &links {
            self.network.block(from, to);
        }
        // Under leader churn partitions last longer: the figure-8 schedule needs a struck
        // leader to stay away while two more terms come and go.
        let longest = if self.swarm.leader_churn {
            6_000_000_000
        } else {
            3_000_000_000
        };
        let duration = self.fault_rng.between(200_000_000, longest);
        self.schedule(duration, Event::EndPartition { links });
    }

    /// Cuts a member off from every other member, both ways, for a random while.
    fn isolate(&mut self, isolated: usize) {
        let members = self.member_count();
        let mut links = Vec::new();
        for other in (0..members).filter(|&other| other != isolated) {
            links.push((isolated, other));
            links.push((other, isolated));
        }
        self.faults.symmetric_partitions += 1;
        self.note(|| format!("partition: m{isolated} isolated"));
        self.cut(links);
    }

    fn heal(&mut self) {
        self.healed_at_ns = Some(self.now_ns);
        self.network.set_faults(NetworkFaults::CALM);
        self.network.heal();
        self.note(|| "heal: faults stop, crashed members restart".to_string());
        for member in 0..self.member_count() {
            self.members[member].paused_until_ns = 0;
            if self.members[member].node.is_none() {
                self.members[member].incarnation += 1;
                self.start_member(member);
            }
        }
        for client in 0..self.clients.len() {
            if self.clients[client].outstanding.is_none() {
                self.schedule_client(client, 0);
            }
        }
    }

    /// After the heal: a leader that every member follows within the election bound, then every
    /// member converged and every client's commands answered.
    fn check_liveness(&mut self) {
        let healed_at = self.healed_at_ns.expect("healed");
        let nodes: Vec<&Node> = self
            .members
            .iter()
            .filter_map(|m| m.node.as_ref())
            .collect();
        if nodes.len() < self.members.len() {
            return;
        }
        let leader = nodes
            .iter()
            .find(|node| node.consensus.role() == Role::Leader);
        if self.leader_found_ns.is_none() {
            if let Some(leader) = leader {
                let term = leader.consensus.current_term();
                let id = leader.consensus.id();
                if nodes.iter().all(|node| {
                    node.consensus.current_term() == term && node.consensus.leader() == Some(id)
                }) {
                    self.leader_found_ns = Some(self.now_ns);
                }
            }
            let bound = self.config.leader_bound_ns();
            if self.leader_found_ns.is_none() && self.now_ns > healed_at + bound {
                self.checker.record(
                    "liveness",
                    format!(
                        "no leader followed by every member {} ms after the heal",
                        bound / 1_000_000
                    ),
                );
                self.finished = true;
            }
            return;
        }
        let Some(leader) = leader else { return };
        let end = leader.consensus.appended_position();
        let converged = nodes.iter().all(|node| {
            node.consensus.appended_position() == end
                && node.consensus.commit_position() == end
                && node.container.applied_position() == end
        }) && self.clients.iter().all(|client| {
            client.outstanding.is_none() && client.acked_after_heal >= COMMANDS_AFTER_HEAL
        });
        if !converged {
            return;
        }
        let digest = nodes[0].container.state_digest();
        if nodes
            .iter()
            .any(|node| node.container.state_digest() != digest)
        {
            self.checker.record(
                "convergence",
                "members hold equal logs but different service digests".to_string(),
            );
        }
        let log = self.members[0].storage.log().clone();
        if self
            .members
            .iter()
            .any(|member| *member.storage.log() != log)
        {
            self.checker.record(
                "convergence",
                "members converged to different log bytes".to_string(),
            );
        }
        self.checker.verify_acks(true);
        self.note(|| format!("converged at {end}"));
        self.finished = true;
    }

    fn liveness_failure(&mut self) {
        let detail = match self.leader_found_ns {
            None => "no leader before the run's deadline".to_string(),
            Some(_) => {
                let states: Vec<String> = self
                    .members
                    .iter()
                    .map(|member| match &member.node {
                        Some(node) => format!(
                            "{:?} t{} app {} com {} applied {}",
                            node.consensus.role(),
                            node.consensus.current_term(),
                            node.consensus.appended_position(),
                            node.consensus.commit_position(),
                            node.container.applied_position()
                        ),
                        None => "down".to_string(),
                    })
                    .collect();
                format!("members did not converge before the run's deadline: {states:?}")
            }
        };
        self.checker.record("liveness", detail);
    }
}

/// A readable one-line description of a consensus message, for traces.
pub fn describe(bytes: &[u8]) -> String {
    match Message::decode(bytes) {
        Ok(Message::Canvass(m)) => format!(
            "canvass term {} log {}@{} live-leader {}",
            m.current_term(),
            m.log_term(),
            m.log_position(),
            m.follows_live_leader()
        ),
        Ok(Message::RequestVote(m)) => format!(
            "request-vote term {} log {}@{}",
            m.candidate_term(),
            m.log_term(),
            m.log_position()
        ),
        Ok(Message::Vote(m)) => format!(
            "vote term {} for m{} granted {}",
            m.term(),
            m.candidate_id(),
            m.granted()
        ),
        Ok(Message::AppendRequest(m)) => format!(
            "append term {} at {} prev-term {} entries {} bytes of term {} commit {}",
            m.term(),
            m.prev_position(),
            m.prev_term(),
            m.entries().len(),
            m.entry_term(),
            m.commit_position()
        ),
        Ok(Message::AppendResponse(m)) => format!(
            "append-response term {} success {} position {} conflict {}@{}",
            m.term(),
            m.success(),
            m.position(),
            m.conflict_term(),
            m.conflict_base()
        ),
        Err(error) => format!("undecodable: {error}"),
    }
}
