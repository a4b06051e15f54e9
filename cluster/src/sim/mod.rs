//! The deterministic simulator: whole clusters of real consensus cores and service containers on
//! one thread, with every fault driven by a seed.
//!
//! One seed fixes everything: the fault settings drawn for the run (a *swarm*: each seed gets its
//! own loss rate, duplication rate, delays, fsync latency and partition, clog, crash and clock-jump
//! frequencies, so some runs are calm and some brutal), every message's fate, every crash's
//! damage, every client's commands. The same seed gives the same trace hash.
//!
//! A run has two phases. In the **fault phase** ([`SimConfig::fault_phase_ns`]) the network
//! loses, duplicates (now and then seconds late), delays and reorders messages; partitions
//! (symmetric, one-way, or a split) and clogged links come and go; members crash (losing unsynced
//! writes, sometimes tearing the last one or a snapshot; between events, between two outputs of
//! one drain, or in the middle of a write or a sync) and restart from their disk; half the seeds
//! have a slow disk whose syncs now and then take far longer than a message, or stall; clocks
//! drift and jump; clients send commands and retry on timeouts. Members snapshot and purge their
//! logs, so lagging ones install a leader's snapshot (the world's `install` module). At the **heal** every fault stops and crashed members restart;
//! then a leader that every member follows must appear within [`SimConfig::leader_bound_ns`], and
//! every member must converge (equal logs, everything committed and applied, equal digests, every
//! client answered) before [`SimConfig::convergence_timeout_ns`].
//!
//! The checkers ([`checker`]) run as each event happens; the first violation ends the run.

pub mod checker;
pub mod client;
pub mod clock;
pub mod network;
pub mod storage;
mod world;

use std::time::{Duration, Instant};

pub use checker::Violation;
pub use world::describe;

use crate::consensus::ConsensusConfig;
#[cfg(feature = "planted-bugs")]
use crate::planted::PlantedBug;
use network::NetworkFaults;

/// What a simulation run looks like.
#[derive(Debug, Clone)]
pub struct SimConfig {
    /// Members, 1 to 7 (3, 4 and 5 at length in the test suite).
    pub members: u32,
    /// Client sessions.
    pub clients: u32,
    /// Simulated time with faults, before the heal.
    pub fault_phase_ns: u64,
    /// Simulated time after the heal by which every member must converge.
    pub convergence_timeout_ns: u64,
    /// How often every member's consensus core is ticked.
    pub tick_ns: u64,
    /// Whether faults are injected at all (off: a calm network, for benchmarks and examples).
    pub faults: bool,
    /// Keep a readable trace of the run.
    pub trace: bool,
    /// Leader churn in every seed (a quarter of the seeds churn anyway): every newly elected
    /// leader is struck (isolated or crashed) at once or within 200 ms, and partitions last up to
    /// 6 s instead of 3, on top of the seed's
    /// other faults. The schedule that exposes Raft's figure-8 bug
    /// (committing an earlier term's entry by counting) needs several leaders in a row to lose
    /// their followers just after election.
    pub leader_churn: bool,
    /// Log bytes between state-digest checkpoints.
    pub digest_interval_bytes: u64,
    /// Log bytes between local snapshots.
    pub snapshot_interval_bytes: u64,
    /// A planted bug every member runs with.
    #[cfg(feature = "planted-bugs")]
    pub planted_bug: Option<PlantedBug>,
}

impl SimConfig {
    /// The defaults for `members`: 3 clients, 20 s of faults, 30 s to converge, 1 ms ticks.
    pub fn new(members: u32) -> Self {
        Self {
            members,
            clients: 3,
            fault_phase_ns: 20_000_000_000,
            convergence_timeout_ns: 30_000_000_000,
            tick_ns: 1_000_000,
            faults: true,
            trace: false,
            leader_churn: false,
            digest_interval_bytes: 2048,
            snapshot_interval_bytes: 8192,
            #[cfg(feature = "planted-bugs")]
            planted_bug: None,
        }
    }

    /// The consensus configuration every member runs.
    pub fn consensus_config(&self) -> ConsensusConfig {
        #[allow(unused_mut)]
        let mut config = ConsensusConfig::new(self.members);
        #[cfg(feature = "planted-bugs")]
        {
            config.planted_bug = self.planted_bug;
        }
        config
    }

    /// The bound on electing a leader after the heal: one leader heartbeat timeout (to notice
    /// the old leader is gone) plus ten election timeouts.
    pub fn leader_bound_ns(&self) -> u64 {
        let consensus = self.consensus_config();
        consensus.leader_heartbeat_timeout_ns + 10 * consensus.election_timeout_ns
    }
}

/// The fault settings one seed draws.
#[derive(Debug, Clone, Copy)]
pub struct Swarm {
    /// Loss, duplication and delay.
    pub network: NetworkFaults,
    /// Fastest fsync.
    pub fsync_min_ns: u64,
    /// Slowest fsync.
    pub fsync_max_ns: u64,
    /// Chance per 100 ms of a partition starting (when none is active).
    pub partition_per_million: u32,
    /// Chance per 100 ms of a link clogging.
    pub clog_per_million: u32,
    /// Chance per 100 ms of a member crashing.
    pub crash_per_million: u32,
    /// Chance per 100 ms of a clock jump.
    pub clock_jump_per_million: u32,
    /// Chance per 100 ms of a member pausing (a stalled process: no ticks, messages queue up).
    pub pause_per_million: u32,
    /// Chance that a newly elected leader is isolated or crashed a few milliseconds later.
    pub leader_strike_per_million: u32,
    /// Whether this seed churns leaders (every new leader struck, partitions short).
    pub leader_churn: bool,
    /// Whether member clocks drift.
    pub drift: bool,
}

impl Swarm {
    /// Draws the settings for a seed; each fault class is on in most seeds, at its own rate.
    pub fn draw(rng: &mut crate::rng::Rng, config: &SimConfig) -> Self {
        let mut rate = |max_per_million: u64| {
            if rng.chance(800_000) {
                u32::try_from(rng.between(max_per_million / 10, max_per_million)).expect("fits")
            } else {
                0
            }
        };
        let loss = rate(300_000);
        let duplicate = rate(300_000);
        let partition = rate(80_000);
        let clog = rate(50_000);
        let crash = rate(50_000);
        let clock_jump = rate(30_000);
        let spike = rate(20_000);
        let leader_strike = rate(1_000_000);
        let pause = rate(30_000);
        let delay_min_ns = rng.below(2_000_000);
        let delay_jitter_ns = rng.between(100_000, 20_000_000);
        let fsync_max_ns = rng.between(100_000, 10_000_000);
        let drift = rng.chance(800_000);
        // A quarter of the seeds churn leaders; a configuration can ask for it in every seed.
        let churn = rng.chance(250_000) || config.leader_churn;
        Self {
            network: NetworkFaults {
                loss_per_million: loss,
                duplicate_per_million: duplicate,
                delay_min_ns,
                delay_jitter_ns,
                spike_per_million: spike,
                spike_max_ns: 3_000_000_000,
            },
            pause_per_million: pause,
            leader_strike_per_million: if churn { 1_000_000 } else { leader_strike },
            leader_churn: churn,
            fsync_min_ns: 50_000.min(fsync_max_ns),
            fsync_max_ns,
            partition_per_million: partition,
            clog_per_million: clog,
            crash_per_million: crash,
            clock_jump_per_million: clock_jump,
            drift,
        }
    }
}

/// Faults injected, by class.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct FaultCounts {
    /// Messages lost at random.
    pub lost_messages: u64,
    /// Messages delivered twice.
    pub duplicated_messages: u64,
    /// Messages delivered after one sent later on the same link.
    pub reordered_messages: u64,
    /// Messages dropped by a partition.
    pub partitioned_messages: u64,
    /// Messages held in a delay spike.
    pub delay_spikes: u64,
    /// Messages delivered again seconds later (a stale duplicate, terms after it was sent).
    pub stale_duplicates: u64,
    /// Member pauses.
    pub pauses: u64,
    /// Newly elected leaders isolated or crashed on purpose.
    pub leader_strikes: u64,
    /// Symmetric partitions (an isolated member or a split).
    pub symmetric_partitions: u64,
    /// One-way partitions.
    pub asymmetric_partitions: u64,
    /// Clogged links.
    pub clogs: u64,
    /// Member crashes.
    pub crashes: u64,
    /// Of those, crashes between two outputs of one drain.
    pub mid_drain_crashes: u64,
    /// Of those, crashes in the middle of writing an append (it reached the disk torn, if at
    /// all).
    pub mid_write_crashes: u64,
    /// Of those, crashes in the middle of a sync (it had flushed part of what it covers).
    pub mid_sync_crashes: u64,
    /// Syncs on a slow disk that took tens to hundreds of milliseconds.
    pub slow_syncs: u64,
    /// Disk stalls (up to a second).
    pub disk_stalls: u64,
    /// Unsynced write operations lost in crashes.
    pub lost_writes: u64,
    /// Writes torn by a crash.
    pub torn_writes: u64,
    /// Snapshots torn by a crash.
    pub torn_snapshots: u64,
    /// Snapshots recovery found damaged and skipped.
    pub bad_snapshots_skipped: u64,
    /// Clock jumps.
    pub clock_jumps: u64,
    /// Members whose clock drifts.
    pub drifting_clocks: u64,
    /// Snapshots leaders sent to members behind their log start.
    pub snapshots_sent: u64,
    /// Snapshots members installed from a leader.
    pub snapshots_installed: u64,
}

impl FaultCounts {
    /// Adds another run's counts.
    pub fn add(&mut self, other: &FaultCounts) {
        self.lost_messages += other.lost_messages;
        self.duplicated_messages += other.duplicated_messages;
        self.reordered_messages += other.reordered_messages;
        self.partitioned_messages += other.partitioned_messages;
        self.delay_spikes += other.delay_spikes;
        self.stale_duplicates += other.stale_duplicates;
        self.pauses += other.pauses;
        self.leader_strikes += other.leader_strikes;
        self.symmetric_partitions += other.symmetric_partitions;
        self.asymmetric_partitions += other.asymmetric_partitions;
        self.clogs += other.clogs;
        self.crashes += other.crashes;
        self.mid_drain_crashes += other.mid_drain_crashes;
        self.mid_write_crashes += other.mid_write_crashes;
        self.mid_sync_crashes += other.mid_sync_crashes;
        self.slow_syncs += other.slow_syncs;
        self.disk_stalls += other.disk_stalls;
        self.lost_writes += other.lost_writes;
        self.torn_writes += other.torn_writes;
        self.torn_snapshots += other.torn_snapshots;
        self.bad_snapshots_skipped += other.bad_snapshots_skipped;
        self.clock_jumps += other.clock_jumps;
        self.drifting_clocks += other.drifting_clocks;
        self.snapshots_sent += other.snapshots_sent;
        self.snapshots_installed += other.snapshots_installed;
    }

    /// Each class with its count, for reports and minimum-count assertions.
    pub fn classes(&self) -> [(&'static str, u64); 24] {
        [
            ("loss", self.lost_messages),
            ("duplication", self.duplicated_messages),
            ("reordering", self.reordered_messages),
            ("partitioned", self.partitioned_messages),
            ("delay-spike", self.delay_spikes),
            ("stale-duplicate", self.stale_duplicates),
            ("pause", self.pauses),
            ("leader-strike", self.leader_strikes),
            ("partition", self.symmetric_partitions),
            ("asymmetric-partition", self.asymmetric_partitions),
            ("clog", self.clogs),
            ("crash", self.crashes),
            ("mid-drain-crash", self.mid_drain_crashes),
            ("mid-write-crash", self.mid_write_crashes),
            ("mid-sync-crash", self.mid_sync_crashes),
            ("slow-sync", self.slow_syncs),
            ("disk-stall", self.disk_stalls),
            ("lost-write", self.lost_writes),
            ("torn-write", self.torn_writes),
            ("torn-snapshot", self.torn_snapshots),
            ("clock-jump", self.clock_jumps),
            ("clock-drift", self.drifting_clocks),
            ("snapshot-sent", self.snapshots_sent),
            ("snapshot-installed", self.snapshots_installed),
        ]
    }
}

/// The result of one seed.
#[derive(Debug, Clone)]
pub struct SeedOutcome {
    /// The seed.
    pub seed: u64,
    /// Members simulated.
    pub members: u32,
    /// The hash of every event processed: equal for equal seeds.
    pub trace_hash: u64,
    /// Simulated time covered.
    pub simulated_ns: u64,
    /// Real time taken.
    pub real: Duration,
    /// Faults injected.
    pub faults: FaultCounts,
    /// Client commands answered and verified against the committed log.
    pub commands_committed: u64,
    /// Leaders elected.
    pub elections: u64,
    /// Log term ends the leaders' appends crossed (a PAD filled each, unless an entry ended
    /// exactly there).
    pub term_ends: u64,
    /// What the checkers found (empty for a correct run).
    pub violations: Vec<Violation>,
    /// The readable trace, when asked for.
    pub trace: Vec<String>,
}

/// Runs one seed.
pub fn run_seed(config: &SimConfig, seed: u64) -> SeedOutcome {
    let started = Instant::now();
    let result = world::World::new(config, seed).run();
    let faults = result.faults;
    SeedOutcome {
        seed,
        members: config.members,
        trace_hash: result.trace_hash,
        simulated_ns: result.simulated_ns,
        real: started.elapsed(),
        faults,
        commands_committed: result.commands_committed,
        elections: result.elections,
        term_ends: result.term_ends,
        violations: result.violations,
        trace: result.trace,
    }
}

/// Runs one seed; a panic anywhere in the run (an assertion in the core, the container or the
/// simulator) becomes the seed's violation instead of taking the whole batch down unnamed.
pub fn run_seed_catching_panics(config: &SimConfig, seed: u64) -> SeedOutcome {
    let started = Instant::now();
    match std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| run_seed(config, seed))) {
        Ok(outcome) => outcome,
        Err(payload) => {
            let detail = payload
                .downcast_ref::<&str>()
                .map(|text| (*text).to_string())
                .or_else(|| payload.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "a panic without a message".to_string());
            SeedOutcome {
                seed,
                members: config.members,
                trace_hash: 0,
                simulated_ns: 0,
                real: started.elapsed(),
                faults: FaultCounts::default(),
                commands_committed: 0,
                elections: 0,
                term_ends: 0,
                violations: vec![Violation {
                    checker: "panic",
                    time_ns: 0,
                    detail,
                }],
                trace: Vec::new(),
            }
        }
    }
}

/// The totals of many seeds.
#[derive(Debug, Clone, Default)]
pub struct Summary {
    /// Seeds run.
    pub seeds: u64,
    /// Simulated time, summed.
    pub simulated_ns: u64,
    /// Real time, wall clock, for the whole batch.
    pub real: Duration,
    /// CPU time spent in runs, summed over threads.
    pub run_time: Duration,
    /// Faults, summed.
    pub faults: FaultCounts,
    /// Commands committed, summed.
    pub commands_committed: u64,
    /// Leaders elected, summed.
    pub elections: u64,
    /// Log term ends crossed, summed.
    pub term_ends: u64,
    /// The seeds that failed, with their first violation.
    pub failures: Vec<(u64, Violation)>,
}

impl Summary {
    /// Simulated seconds per second of one thread's real time.
    pub fn speed_ratio(&self) -> f64 {
        let run = self.run_time.as_secs_f64();
        if run == 0.0 {
            return 0.0;
        }
        // u64 nanoseconds to f64 loses nothing a ratio can show.
        #[allow(clippy::cast_precision_loss)]
        let simulated = self.simulated_ns as f64 / 1e9;
        simulated / run
    }

    /// The one-line report `tern cluster sim` prints.
    pub fn line(&self, members: u32) -> String {
        let faults: Vec<String> = self
            .faults
            .classes()
            .iter()
            .map(|(name, count)| format!("{name} {count}"))
            .collect();
        format!(
            "seeds {} · members {members} · simulated {} · faults: {} · elections {} · log term ends {} · commands committed {} · violations {} · {:.0}x real time per thread",
            self.seeds,
            format_duration_ns(self.simulated_ns),
            faults.join(", "),
            self.elections,
            self.term_ends,
            self.commands_committed,
            self.failures.len(),
            self.speed_ratio()
        )
    }
}

/// Formats nanoseconds as hours, minutes and seconds.
pub fn format_duration_ns(ns: u64) -> String {
    let seconds = ns / 1_000_000_000;
    format!(
        "{}h {:02}m {:02}s",
        seconds / 3600,
        seconds / 60 % 60,
        seconds % 60
    )
}

/// Runs `seeds` on `threads` threads and sums them up. Seeds are handed out in order; the
/// summary does not depend on the thread count.
pub fn run_seeds(config: &SimConfig, seeds: &[u64], threads: usize) -> Summary {
    let started = Instant::now();
    let next = std::sync::atomic::AtomicUsize::new(0);
    let outcomes = std::sync::Mutex::new(Vec::with_capacity(seeds.len()));
    std::thread::scope(|scope| {
        for _ in 0..threads.max(1) {
            scope.spawn(|| {
                loop {
                    let index = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    let Some(&seed) = seeds.get(index) else {
                        break;
                    };
                    let outcome = run_seed_catching_panics(config, seed);
                    outcomes
                        .lock()
                        .expect("no thread panics holding it")
                        .push(outcome);
                }
            });
        }
    });
    let mut outcomes = outcomes
        .into_inner()
        .expect("no thread panicked holding it");
    outcomes.sort_by_key(|outcome| outcome.seed);
    let mut summary = Summary {
        real: started.elapsed(),
        ..Summary::default()
    };
    for outcome in outcomes {
        summary.seeds += 1;
        summary.simulated_ns += outcome.simulated_ns;
        summary.run_time += outcome.real;
        summary.faults.add(&outcome.faults);
        summary.commands_committed += outcome.commands_committed;
        summary.elections += outcome.elections;
        summary.term_ends += outcome.term_ends;
        if let Some(violation) = outcome.violations.into_iter().next() {
            summary.failures.push((outcome.seed, violation));
        }
    }
    summary
}
