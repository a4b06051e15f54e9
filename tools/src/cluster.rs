//! `tern cluster`: the consensus simulator and the consensus core benchmark; members and
//! clients are in [`crate::cluster_node`].
//!
//! - `tern cluster sim` runs seeds of the deterministic simulator (see `tern_cluster::sim`) and
//!   prints one summary line per cluster size; `--seed S` replays one seed and prints its trace
//!   hash, and `--trace` its readable trace. The exit status is non-zero when a seed fails.
//! - `tern cluster bench` measures the consensus core alone: three members in one process, zero
//!   network delay, in-memory logs, syncs that complete at once, 32-byte commands.

use std::time::Instant;

use anyhow::{Context, bail};
use hdrhistogram::Histogram;
use tern_cluster::kv::Command;
use tern_cluster::local::{LocalCluster, Mode};
use tern_cluster::sim::{self, SimConfig};

/// Cluster tools.
#[derive(Debug, clap::Subcommand)]
pub(crate) enum ClusterCommand {
    /// Run the deterministic consensus simulator over many seeds, or replay one.
    Sim(SimArgs),
    /// Measure commands committed per second and the commit round trip of the consensus core.
    Bench(BenchArgs),
    /// Run a cluster member with the sample key-value service until SIGINT or SIGTERM.
    Node(crate::cluster_node::NodeArgs),
    /// Send commands to a cluster as a client session.
    Client(crate::cluster_node::ClientArgs),
    /// Ask the cluster for a snapshot: every member records one at the same log position.
    Snapshot(crate::cluster_node::SnapshotArgs),
    /// Print how a member would recover (its snapshot, the log to replay) and how long it
    /// should take, measured on this machine.
    RecoveryPlan(crate::cluster_ops::MemberDirArg),
    /// A member's role, term, leader, positions, elections and sessions (or its files, when
    /// it is not running).
    Describe(crate::cluster_ops::MemberDirArg),
    /// Exit 0 and say so when the member leads; exit 1 otherwise.
    IsLeader(crate::cluster_ops::MemberDirArg),
    /// The members, with the leader as this member knows it.
    ListMembers(crate::cluster_ops::MemberDirArg),
    /// A member's recording log: its terms, truncations and snapshots.
    RecordingLog(crate::cluster_ops::MemberDirArg),
    /// A member's distinct error log: each error once, with its count and when first and last.
    Errors(crate::cluster_ops::MemberDirArg),
}

/// Options of `tern cluster sim`.
#[derive(Debug, clap::Args)]
pub(crate) struct SimArgs {
    /// Cluster sizes to simulate, comma-separated; one summary line each.
    #[arg(long, value_delimiter = ',', default_values_t = [3u32, 4, 5])]
    members: Vec<u32>,
    /// Seeds per cluster size.
    #[arg(long, default_value_t = 1000)]
    seeds: u64,
    /// The first seed of the range.
    #[arg(long, default_value_t = 0)]
    first_seed: u64,
    /// Replay this one seed and print its trace hash (and violations).
    #[arg(long, conflicts_with_all = ["seeds", "first_seed"])]
    seed: Option<u64>,
    /// With --seed: print the readable trace of the run.
    #[arg(long, requires = "seed")]
    trace: bool,
    /// Threads to run seeds on (default: the machine's cores).
    #[arg(long)]
    threads: Option<usize>,
    /// Churn leaders in every seed (a quarter of seeds churn by default).
    #[arg(long)]
    churn: bool,
    /// Simulated seconds of faults before the heal.
    #[arg(long, default_value_t = 20)]
    fault_seconds: u64,
}

/// Options of `tern cluster bench`.
#[derive(Debug, clap::Args)]
pub(crate) struct BenchArgs {
    /// Round trips measured for the one-client figure.
    #[arg(long, default_value_t = 200_000)]
    round_trips: u64,
    /// Commands committed for each throughput figure.
    #[arg(long, default_value_t = 4_000_000)]
    commands: u64,
    /// Concurrent client sessions for the many-clients figure.
    #[arg(long, default_value_t = 4096)]
    clients: u64,
    /// Seeds of the simulator run for its speed figure.
    #[arg(long, default_value_t = 200)]
    sim_seeds: u64,
    /// Measure only the core (`commit`), only the core with the service applied (`apply`), or
    /// both.
    #[arg(long, value_enum, default_value_t = BenchMode::Both)]
    mode: BenchMode,
    /// Measure a real cluster instead: members as processes over loopback UDP, beside a UDP
    /// ping of the same run (commit round trip, throughput, failover, recovery).
    #[arg(long)]
    network: bool,
    #[command(flatten)]
    network_args: crate::cluster_bench::NetworkArgs,
}

/// Which figures `tern cluster bench` measures.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub(crate) enum BenchMode {
    /// The consensus core alone: commands are answered at commit.
    Commit,
    /// The core with the key-value service applied on every member.
    Apply,
    /// Both.
    Both,
}

pub(crate) fn run(command: &ClusterCommand) -> anyhow::Result<()> {
    match command {
        ClusterCommand::Sim(args) => simulate(args),
        ClusterCommand::Bench(args) => bench(args),
        ClusterCommand::Node(args) => crate::cluster_node::node(args),
        ClusterCommand::Client(args) => crate::cluster_node::client(args),
        ClusterCommand::Snapshot(args) => crate::cluster_node::snapshot(args),
        ClusterCommand::RecoveryPlan(args) => crate::cluster_ops::recovery_plan(args),
        ClusterCommand::Describe(args) => crate::cluster_ops::describe(args),
        ClusterCommand::IsLeader(args) => crate::cluster_ops::is_leader(args),
        ClusterCommand::ListMembers(args) => crate::cluster_ops::list_members(args),
        ClusterCommand::RecordingLog(args) => crate::cluster_ops::recording_log(args),
        ClusterCommand::Errors(args) => crate::cluster_ops::errors(args),
    }
}

fn simulate(args: &SimArgs) -> anyhow::Result<()> {
    let mut failed = false;
    for &members in &args.members {
        if !(1..=tern_cluster::consensus::MEMBERS_MAX).contains(&members) {
            bail!(
                "--members {members}: a cluster has 1 to {} members",
                tern_cluster::consensus::MEMBERS_MAX
            );
        }
        let mut config = SimConfig::new(members);
        config.leader_churn = args.churn;
        config.fault_phase_ns = args.fault_seconds * 1_000_000_000;
        if let Some(seed) = args.seed {
            config.trace = args.trace;
            let outcome = sim::run_seed(&config, seed);
            for line in &outcome.trace {
                println!("{line}");
            }
            println!(
                "seed {seed} · members {members} · trace hash {:016x} · simulated {} · elections {} · commands committed {} · violations {}",
                outcome.trace_hash,
                sim::format_duration_ns(outcome.simulated_ns),
                outcome.elections,
                outcome.commands_committed,
                outcome.violations.len()
            );
            for violation in &outcome.violations {
                println!(
                    "violation at {} ns: {}: {}",
                    violation.time_ns, violation.checker, violation.detail
                );
                failed = true;
            }
            continue;
        }
        let threads = args
            .threads
            .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, usize::from));
        let seeds: Vec<u64> = (args.first_seed..args.first_seed + args.seeds).collect();
        let summary = sim::run_seeds(&config, &seeds, threads);
        println!("{}", summary.line(members));
        for (seed, violation) in &summary.failures {
            println!(
                "failed seed {seed} at {} ns: {}: {} (replay: tern cluster sim --members {members} --seed {seed} --trace)",
                violation.time_ns, violation.checker, violation.detail
            );
            failed = true;
        }
    }
    if failed {
        bail!("the simulator found violations");
    }
    Ok(())
}

fn command(index: u64) -> [u8; 32] {
    Command::Add {
        key: index % 1024,
        delta: 1,
    }
    .encode(index)
}

fn leader_of(cluster: &mut LocalCluster) -> anyhow::Result<u32> {
    cluster
        .elect(1_000_000, 10_000_000_000)
        .context("no leader elected in 10 s of virtual time")
}

/// One client: submit a command, run the cluster until its answer comes back, repeat.
fn one_client(round_trips: u64, mode: Mode) -> anyhow::Result<(Histogram<u64>, f64)> {
    let mut cluster = LocalCluster::new(3, 1)?;
    cluster.set_mode(mode);
    cluster.reserve_log(usize::try_from(round_trips + round_trips / 10)? * 80 + (1 << 20));
    let leader = leader_of(&mut cluster)?;
    let mut histogram = Histogram::<u64>::new_with_bounds(1, 10_000_000_000, 3)?;
    let warm_up = round_trips / 10;
    let mut measured = 0u64;
    let started = Instant::now();
    let mut measuring_since = started;
    for request in 1..=warm_up + round_trips {
        if request == warm_up + 1 {
            measuring_since = Instant::now();
        }
        let sent = Instant::now();
        cluster.submit(leader, 1, request, &command(request))?;
        cluster.tick();
        let answers = cluster.answers();
        if answers.len() != 1 || answers[0].request_id != request {
            bail!("request {request} was not answered in its round trip");
        }
        cluster.clear_answers();
        if request > warm_up {
            histogram.record(u64::try_from(sent.elapsed().as_nanos()).unwrap_or(u64::MAX))?;
            measured += 1;
        }
    }
    let seconds = measuring_since.elapsed().as_secs_f64();
    Ok((histogram, rate(measured, seconds)))
}

/// Commands a leader takes from its clients in one duty cycle before it replicates them, as a
/// consensus module agent polls its ingress with a bounded limit (1024 commands are 80 KiB of log).
const DUTY_CYCLE_COMMANDS: u64 = 1024;

/// `clients` sessions with one command each in flight, or one session sending `batch` commands
/// per round trip: commands committed per second.
fn throughput(commands: u64, clients: u64, batch: u64, mode: Mode) -> anyhow::Result<f64> {
    let mut cluster = LocalCluster::new(3, 1)?;
    cluster.set_mode(mode);
    // A 32-byte command is an 80-byte entry.
    cluster.reserve_log(usize::try_from(commands)? * 80 + (1 << 20));
    let leader = leader_of(&mut cluster)?;
    let per_round = clients * batch;
    let rounds = commands.div_ceil(per_round);
    let mut next_request = vec![1u64; usize::try_from(clients)?];
    let mut committed = 0u64;
    let started = Instant::now();
    for _ in 0..rounds {
        let mut taken = 0u64;
        for (session, request) in next_request.iter_mut().enumerate() {
            for _ in 0..batch {
                cluster.submit(
                    leader,
                    u64::try_from(session)? + 1,
                    *request,
                    &command(*request),
                )?;
                *request += 1;
                taken += 1;
                if taken.is_multiple_of(DUTY_CYCLE_COMMANDS) {
                    cluster.tick();
                }
            }
        }
        cluster.tick();
        let answered = u64::try_from(cluster.answers().len())?;
        cluster.clear_answers();
        if answered != per_round {
            bail!("{answered} of {per_round} commands were answered in a round");
        }
        committed += answered;
    }
    Ok(rate(committed, started.elapsed().as_secs_f64()))
}

// Counts of at most a few billion convert to f64 without a loss that a rate can show.
#[allow(clippy::cast_precision_loss)]
fn rate(count: u64, seconds: f64) -> f64 {
    count as f64 / seconds
}

fn bench(args: &BenchArgs) -> anyhow::Result<()> {
    if args.network {
        return crate::cluster_bench::run(&args.network_args);
    }
    println!(
        "3 members in one process, zero network delay, in-memory log, no fsync, 32-byte commands"
    );
    for (mode, what) in [
        (Mode::CommitOnly, "consensus core (answered at commit)"),
        (
            Mode::Apply,
            "core + key-value service applied on every member",
        ),
    ] {
        let wanted = match args.mode {
            BenchMode::Commit => mode == Mode::CommitOnly,
            BenchMode::Apply => mode == Mode::Apply,
            BenchMode::Both => true,
        };
        if !wanted {
            continue;
        }
        let (histogram, one_client_rate) = one_client(args.round_trips, mode)?;
        println!(
            "{what}: one client {one_client_rate:.0} commands/s, commit round trip p50 {} ns · p90 {} · p99 {} · p99.9 {} · p99.99 {} · max {} ns",
            histogram.value_at_quantile(0.5),
            histogram.value_at_quantile(0.9),
            histogram.value_at_quantile(0.99),
            histogram.value_at_quantile(0.999),
            histogram.value_at_quantile(0.9999),
            histogram.max()
        );
        let many = throughput(args.commands, args.clients, 1, mode)?;
        let many_batched = throughput(args.commands, args.clients, 4, mode)?;
        let batched = throughput(args.commands / 4, 1, 4, mode)?;
        println!(
            "{what}: {clients} clients {many:.0} commands/s · {clients} clients in batches of 4 \
             {many_batched:.0} commands/s · one client in batches of 4 {batched:.0} commands/s",
            clients = args.clients
        );
    }
    let config = SimConfig::new(3);
    let seeds: Vec<u64> = (0..args.sim_seeds).collect();
    let summary = sim::run_seeds(&config, &seeds, 1);
    println!(
        "simulator: {} seeds of 3 members, {} simulated in {:.1} s on one thread: {:.0}x real time",
        summary.seeds,
        sim::format_duration_ns(summary.simulated_ns),
        summary.real.as_secs_f64(),
        summary.speed_ratio()
    );
    if !summary.failures.is_empty() {
        bail!("the simulator found violations while being timed");
    }
    Ok(())
}
