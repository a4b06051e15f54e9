//! The simulated world: one thread, one event queue, every member, link, disk, clock and client.
//!
//! Events are ordered by simulated time and then by the order they were scheduled, and every
//! random draw comes from generators forked from the seed, so a seed replays exactly. Each event
//! is folded into the trace hash as it is processed.

mod clients;
mod faults;
mod install;
mod liveness;

use std::cmp::Reverse;
use std::collections::BinaryHeap;

use super::checker::{Checker, SentAck};
use super::client::Client;
use super::clock::Clock;
use super::network::{Fate, Network, NetworkFaults};
use super::storage::{InFlight, SimStorage};
use super::{FaultCounts, SimConfig, Swarm};
use crate::consensus::{Consensus, Output, RecoveredState, Role};
use crate::container::{ContainerOutput, ServiceContainer};
use crate::digest::{hash_bytes, hash_words};
use crate::kv::KvStore;
use crate::log_entry::{self, LogFormat};
use crate::protocol::Message;
use crate::rng::Rng;
use crate::session_protocol::{Response, ResponseCode};

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
    /// A crash in the middle of a sync (before it completes).
    CrashDuringSync {
        member: usize,
        incarnation: u64,
        marker: u64,
    },
    EndPartition {
        links: Vec<(usize, usize)>,
    },
    Heal,
    ClientWake {
        client: usize,
        generation: u64,
    },
    /// A leader's snapshot reaches a member behind its log start.
    Install {
        from: usize,
        to: usize,
        transfer: Box<install::Transfer>,
    },
}

impl Event {
    /// What the trace hash folds in for the event.
    fn signature(&self) -> [u64; 4] {
        let index = |value: usize| u64::try_from(value).expect("fits");
        match self {
            Event::Tick => [1, 0, 0, 0],
            Event::Deliver { from, to, bytes } => [2, index(*from), index(*to), hash_bytes(bytes)],
            Event::SyncDone {
                member,
                sync_id,
                marker,
                ..
            } => [3, index(*member), *sync_id, *marker],
            Event::Restart {
                member,
                incarnation,
            } => [4, index(*member), *incarnation, 0],
            Event::Nemesis => [5, 0, 0, 0],
            Event::EndPartition { links } => [6, index(links.len()), 0, 0],
            Event::Heal => [7, 0, 0, 0],
            Event::ClientWake { client, generation } => [8, index(*client), *generation, 0],
            Event::StrikeLeader {
                member,
                incarnation,
            } => [9, index(*member), *incarnation, 0],
            Event::CrashDuringSync {
                member,
                incarnation,
                marker,
            } => [10, index(*member), *incarnation, *marker],
            Event::Install { from, to, transfer } => [
                11,
                index(*from),
                index(*to),
                hash_words(&[transfer.term, transfer.position]),
            ],
        }
    }

    /// The endpoint whose process handles the event (a member, or a client past the members), when
    /// a paused process must wait for it.
    fn receiver(&self) -> Option<usize> {
        match self {
            Event::Deliver { to, .. } | Event::Install { to, .. } => Some(*to),
            Event::SyncDone { member, .. } => Some(*member),
            _ => None,
        }
    }
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
    pub term_ends: u64,
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
    /// Chooses crashes in the middle of a drain (its own stream: adding it changed no other
    /// stream's draws before the first such crash).
    drain_rng: Rng,
    /// Chooses crashes in the middle of a write or a sync (its own stream, likewise).
    output_rng: Rng,
    /// Draws this seed's slow disk and its slow syncs and stalls (its own stream, likewise).
    disk_rng: Rng,
    /// This seed's slow disk, if it has one.
    slow_disk: Option<SlowDisk>,
    /// This seed's log format: half the seeds use the shortest terms, so that entries often
    /// meet a term's end and the leader pads it.
    log_format: LogFormat,
    /// Whether members purge their logs past the log floor in this seed (half the seeds), so
    /// that lagging members fall behind a leader's log start and install its snapshot.
    purge_past_floor: bool,
    members: Vec<Member>,
    clients: Vec<Client>,
    checker: Checker,
    faults: FaultCounts,
    elections: u64,
    /// Log term ends that leaders' appends spanned (a workload measure: that term ends are
    /// reached, not how they were padded).
    term_ends: u64,
    trace_hash: u64,
    trace: Option<Vec<String>>,
    healed_at_ns: Option<u64>,
    leader_found_ns: Option<u64>,
    finished: bool,
}

/// A seed's slow disk: how often a sync is slow, how slow, and how often the disk stalls.
#[derive(Debug, Clone, Copy)]
struct SlowDisk {
    tail_per_million: u32,
    tail_max_ns: u64,
    stall_per_million: u32,
}

impl SlowDisk {
    /// Half the seeds have one: 0.5–5 % of syncs slow (20 ms up to 50–500 ms), 0.05–0.2 %
    /// stalling the disk for 0.1–1 s.
    fn draw(rng: &mut Rng) -> Option<Self> {
        if !rng.chance(500_000) {
            return None;
        }
        Some(Self {
            tail_per_million: u32::try_from(rng.between(5_000, 50_000)).expect("fits"),
            tail_max_ns: rng.between(50_000_000, 500_000_000),
            stall_per_million: u32::try_from(rng.between(500, 2_000)).expect("fits"),
        })
    }
}

/// A crash between two outputs is this many times less likely per output (with another still
/// queued) than a crash per nemesis interval: outputs come by the thousand each simulated
/// second.
const MID_DRAIN_CRASH_DIVISOR: u32 = 200;
/// A crash in the middle of a write or a sync is this many times less likely per write or sync
/// than a crash per nemesis interval: they are a tenth of the outputs or fewer.
const MID_OUTPUT_CRASH_DIVISOR: u32 = 200;
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
            term_ends: 0,
            trace_hash: 0,
            trace: config.trace.then(Vec::new),
            healed_at_ns: None,
            leader_found_ns: None,
            finished: false,
            drain_rng: Rng::new(0),
            output_rng: Rng::new(0),
            disk_rng: Rng::new(0),
            slow_disk: None,
            log_format: LogFormat::default(),
            purge_past_floor: false,
        };
        // Forked after every other stream, so that adding them changed no other stream's seed.
        world.drain_rng = root.fork();
        world.disk_rng = root.fork();
        world.slow_disk = SlowDisk::draw(&mut world.disk_rng);
        world.output_rng = root.fork();
        let mut format_rng = root.fork();
        world.log_format = match format_rng.below(4) {
            0 | 1 => LogFormat::new(log_entry::TERM_LENGTH_MIN),
            2 => LogFormat::new(64 * 1024),
            _ => Ok(LogFormat::default()),
        }
        .expect("valid term lengths");
        world.purge_past_floor = root.fork().chance(500_000);
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
        self.faults.stale_duplicates = self.network.stale_duplicates;
        RunResult {
            trace_hash: self.trace_hash,
            simulated_ns: self.now_ns,
            faults: self.faults,
            commands_committed: self.checker.acks_verified(),
            elections: self.elections,
            term_ends: self.term_ends,
            violations,
            trace: self.trace.unwrap_or_default(),
        }
    }

    fn handle(&mut self, event: Event) {
        let [kind, a, b, c] = event.signature();
        self.hash_event(kind, a, b, c);
        let members = self.members.len();
        if let Some(member) = event.receiver().filter(|&member| member < members) {
            let paused_until = self.members[member].paused_until_ns;
            if paused_until > self.now_ns {
                // A paused process reads its socket and its completions when it wakes.
                self.schedule(paused_until - self.now_ns, event);
                return;
            }
        }
        match event {
            Event::Tick => self.tick_members(),
            Event::Deliver { from, to, bytes } => self.deliver(from, to, &bytes),
            Event::SyncDone {
                member,
                incarnation,
                sync_id,
                marker,
            } => self.sync_done(member, incarnation, sync_id, marker),
            Event::Restart {
                member,
                incarnation,
            } => {
                let slot = &self.members[member];
                if slot.incarnation == incarnation && slot.node.is_none() {
                    self.start_member(member);
                }
            }
            Event::Nemesis => {
                if self.healed_at_ns.is_none() {
                    self.nemesis();
                    self.schedule(NEMESIS_INTERVAL_NS, Event::Nemesis);
                }
            }
            Event::StrikeLeader {
                member,
                incarnation,
            } => self.strike_leader(member, incarnation),
            Event::CrashDuringSync {
                member,
                incarnation,
                marker,
            } => self.crash_during_sync(member, incarnation, marker),
            Event::EndPartition { links } => self.end_partition(links),
            Event::Heal => self.heal(),
            Event::ClientWake { client, generation } => {
                if self.clients[client].generation == generation {
                    self.client_wake(client);
                }
            }
            Event::Install { from, to, transfer } => self.install(from, to, *transfer),
        }
    }

    fn tick_members(&mut self) {
        for member in 0..self.members.len() {
            if self.members[member].paused_until_ns > self.now_ns {
                continue;
            }
            let now = self.local_now(member);
            let slot = &mut self.members[member];
            if let Some(node) = &mut slot.node {
                node.consensus.on_tick(now, &slot.storage.view());
                self.drain(member);
            }
        }
        if self.healed_at_ns.is_some() {
            self.check_liveness();
        }
        self.schedule(self.config.tick_ns, Event::Tick);
    }

    fn sync_done(&mut self, member: usize, incarnation: u64, sync_id: u64, marker: u64) {
        if self.members[member].incarnation != incarnation {
            // The sync belonged to an incarnation that crashed before it completed.
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
        if let Err(error) = node.consensus.on_message(now, bytes, &slot.storage.view()) {
            self.checker.record(
                "protocol",
                format!("member {to} refused a message from {from}: {error}"),
            );
        }
        self.drain(to);
    }

    fn send(&mut self, from: usize, to: usize, bytes: Vec<u8>) {
        let Some((at_ns, duplicate_at_ns)) = self.route(from, to) else {
            return;
        };
        if let Some(duplicate_ns) = duplicate_at_ns {
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

    /// A message's fate on the network: when it arrives, and when a duplicate does, if it is
    /// not lost or partitioned away (counted).
    fn route(&mut self, from: usize, to: usize) -> Option<(u64, Option<u64>)> {
        match self
            .network
            .send(&mut self.network_rng, self.now_ns, from, to)
        {
            Fate::Partitioned => {
                self.faults.partitioned_messages += 1;
                None
            }
            Fate::Lost => {
                self.faults.lost_messages += 1;
                None
            }
            Fate::Delivered {
                at_ns,
                duplicate_at_ns,
            } => {
                self.faults.duplicated_messages += u64::from(duplicate_at_ns.is_some());
                Some((at_ns, duplicate_at_ns))
            }
        }
    }

    /// A sync on this seed's slow disk, during the faults: now and then one takes tens to
    /// hundreds of milliseconds (far slower than the network), and now and then the disk stalls
    /// for up to a second; syncs complete in order, so a stalled one holds back those after it.
    fn slow_sync(&mut self, latency_ns: u64) -> u64 {
        let Some(disk) = self.slow_disk else {
            return latency_ns;
        };
        if self.healed_at_ns.is_some() {
            return latency_ns;
        }
        let mut latency_ns = latency_ns;
        if self.disk_rng.chance(disk.tail_per_million) {
            latency_ns = latency_ns.max(self.disk_rng.between(20_000_000, disk.tail_max_ns));
            self.faults.slow_syncs += 1;
        }
        if self.disk_rng.chance(disk.stall_per_million) {
            latency_ns = latency_ns.max(self.disk_rng.between(100_000_000, 1_000_000_000));
            self.faults.disk_stalls += 1;
        }
        latency_ns
    }

    /// During the faults, in seeds that crash members, a member may crash right after carrying
    /// out any one of its outputs, before the next: between a vote's persistence and its send,
    /// a write and its sync, a sync and the acknowledgement it allows. What the write or sync in
    /// flight had done is what the storage model's crash keeps (a prefix, perhaps torn).
    fn crash_mid_drain(&mut self, member: usize) -> bool {
        let chance = self.swarm.crash_per_million / MID_DRAIN_CRASH_DIVISOR;
        // Only between two outputs: after the last one a crash is one between events.
        let queued = self.members[member]
            .node
            .as_ref()
            .is_some_and(|node| node.consensus.has_queued_output());
        if self.healed_at_ns.is_some() || chance == 0 || !queued || !self.drain_rng.chance(chance) {
            return false;
        }
        self.faults.mid_drain_crashes += 1;
        self.note(|| format!("m{member} crashes between two outputs"));
        self.crash(member);
        true
    }

    /// Whether a member crashes in the middle of the write or sync it has just begun (its own
    /// stream, during the faults, in seeds that crash members).
    fn crash_mid_output(&mut self) -> bool {
        let chance = self.swarm.crash_per_million / MID_OUTPUT_CRASH_DIVISOR;
        self.healed_at_ns.is_none() && chance != 0 && self.output_rng.chance(chance)
    }

    /// The crash a sync in flight was chosen for, if the member still runs the incarnation that
    /// began the sync and the faults go on: the disk had flushed part of what the sync covers.
    fn crash_during_sync(&mut self, member: usize, incarnation: u64, marker: u64) {
        let slot = &self.members[member];
        let live = slot.incarnation == incarnation && slot.node.is_some();
        if !live || self.healed_at_ns.is_some() {
            return;
        }
        self.faults.mid_sync_crashes += 1;
        self.note(|| format!("m{member} crashes during a sync"));
        self.crash_in(member, InFlight::Sync { marker });
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
                // A crash in the middle of that output ends the drain as well.
                if self.members[member].node.is_none() || self.crash_mid_drain(member) {
                    return;
                }
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
                self.check_durable_before_sent(member, &message);
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
                if leading && !entries.is_empty() {
                    let term_length = self.log_format.term_length();
                    let last = position + u64::try_from(entries.len()).expect("fits") - 1;
                    self.term_ends += last / term_length - position / term_length;
                }
                slot.storage.append(position, term, entries);
                let log = slot.storage.log();
                let start = usize::try_from(position).expect("fits");
                let history = node.consensus.term_history();
                self.checker
                    .on_append(id, leading, position, term, &log[start..], history);
                if self.crash_mid_output() {
                    self.faults.mid_write_crashes += 1;
                    self.note(|| format!("m{member} crashes writing at {position}"));
                    self.crash_in(member, InFlight::Write);
                }
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
                let latency = self.slow_sync(latency);
                let slot = &mut self.members[member];
                let marker = slot.storage.sync_marker();
                let done_ns = (self.now_ns + latency).max(slot.last_sync_done_ns);
                slot.last_sync_done_ns = done_ns;
                let incarnation = slot.incarnation;
                if done_ns > self.now_ns && self.crash_mid_output() {
                    let at = self.output_rng.below(done_ns - self.now_ns);
                    self.schedule(
                        at,
                        Event::CrashDuringSync {
                            member,
                            incarnation,
                            marker,
                        },
                    );
                }
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
                log_term_length,
            } => {
                self.checker.record(
                    "protocol",
                    format!(
                        "member {member} found member {peer} incompatible: version {version}, \
                         log term length {log_term_length}"
                    ),
                );
            }
            Output::SendSnapshot { to } => {
                self.send_snapshot(member, usize::try_from(to).expect("fits"));
            }
        }
    }

    /// What a member says in a message must be on its disk when it says it: the message's
    /// term, a candidate's vote for itself, a granted vote, and an acknowledged position with
    /// the bytes below it (read from the simulated disk, not from the core's outputs).
    fn check_durable_before_sent(&mut self, member: usize, message: &[u8]) {
        let id = u32::try_from(member).expect("fits");
        let storage = &self.members[member].storage;
        let durable_vote = storage.durable_vote();
        let Ok(decoded) = Message::decode(message) else {
            self.checker.record(
                "protocol",
                format!("member {member} sent bytes that are no consensus message"),
            );
            return;
        };
        let (term, candidate) = match &decoded {
            Message::Canvass(canvass) => (canvass.current_term(), false),
            Message::RequestVote(request) => (request.candidate_term(), true),
            Message::Vote(vote) => (vote.term(), false),
            Message::AppendRequest(request) => (request.term(), false),
            Message::AppendResponse(response) => (response.term(), false),
            Message::SnapshotChunk(chunk) => (chunk.term(), false),
        };
        self.checker
            .on_message_sent(id, term, candidate, durable_vote);
        match decoded {
            Message::Vote(vote) if vote.granted() == 1 => {
                self.checker
                    .on_vote_sent(id, vote.term(), vote.candidate_id(), durable_vote);
            }
            Message::AppendResponse(response) if response.success() == 1 => {
                // The term's leader, while it still leads that term.
                let leader_log = self
                    .members
                    .iter()
                    .find(|slot| {
                        slot.node.as_ref().is_some_and(|node| {
                            node.consensus.role() == Role::Leader
                                && node.consensus.current_term() == term
                        })
                    })
                    .map(|slot| slot.storage.log().as_slice());
                self.checker.on_ack_sent(&SentAck {
                    member: id,
                    term,
                    position: response.position(),
                    durable: storage.durable_log(),
                    durable_cuts: storage.durable_cuts(),
                    log: storage.log(),
                    leader_log,
                });
            }
            _ => {}
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
            let mut durable: [(&[u8], u64); crate::consensus::MEMBERS_MAX as usize] =
                [(&[], 0); crate::consensus::MEMBERS_MAX as usize];
            for (log, slot) in durable.iter_mut().zip(&self.members) {
                *log = (slot.storage.durable_log(), slot.storage.durable_cuts());
            }
            let count = self.members.len();
            self.checker
                .on_commit_durable(id, commit, &durable[..count]);
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
        let result = node.container.apply(&slot.storage.view(), applicable);
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
                // The simulator takes its snapshots on a byte interval of its own; no seed
                // appends a snapshot request.
                ContainerOutput::Snapshot { .. } => {}
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
            self.purge(member);
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

    fn start_member(&mut self, member: usize) {
        let now = self.local_now(member);
        let mut config = self.config.consensus_config();
        config.log_format = self.log_format;
        let digest_interval = self.config.digest_interval_bytes;
        let slot = &mut self.members[member];
        let recovered = slot.storage.recover(self.log_format, |bytes| {
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
        if snapshot_position < recovered.log_start {
            self.checker.record(
                "recovery",
                format!(
                    "member {member} cannot restart: its log starts at {} above its newest \
                     usable snapshot (at {snapshot_position})",
                    recovered.log_start
                ),
            );
            return;
        }
        let state = RecoveredState {
            current_term: recovered.vote.0,
            voted_for: recovered.vote.1,
            term_history: recovered.terms,
            log_end: recovered.log_end,
            commit_position: snapshot_position,
            // The simulated disks lose only what was not synced: no member loses its log.
            rebuilding: false,
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
        Ok(Message::SnapshotChunk(m)) => format!(
            "snapshot-chunk term {} at {} bytes {}..{} of {}",
            m.term(),
            m.snapshot_position(),
            m.offset(),
            m.offset() + u64::try_from(m.bytes().len()).unwrap_or(u64::MAX),
            m.transfer_length()
        ),
        Err(error) => format!("undecodable: {error}"),
    }
}
