//! `tern cluster bench --network`: a real cluster measured beside the transport it runs on.
//!
//! The run starts the members as `tern cluster node` processes on loopback (each with its own
//! media driver) and measures, in this order, all in one run so the figures share the
//! machine's state:
//! 1. **UDP ping**: 32-byte round trips between two media drivers in this process over loopback
//!    UDP, echoed by a thread under the members' idle strategy: the floor a commit is measured
//!    against (a commit takes two such round trips: client to leader and back, leader to a
//!    follower and back).
//! 2. **Commit round trip**: one client session sending 32-byte adds one after another.
//! 3. **Failover**: two sessions under load while the leader is SIGKILLed (and restarted) again
//!    and again; the client-visible pause of each kill is the longest gap between a session's
//!    last answer before the kill and its first after. (Before the throughput figure, so that
//!    restarted members replay a short log, as they would from a recent snapshot.)
//! 4. **Throughput**: many sessions over one client, each sending adds back to back.
//! 5. **Recovery**: a member killed and restarted (after a snapshot and `--recovery-entries`
//!    more entries, when asked); the time from its start until it has applied what the leader
//!    had committed.

use std::path::PathBuf;
use std::process::{Child, Command as Process, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use hdrhistogram::Histogram;
use tern_cluster::client::{ClusterClient, ClusterClientConfig};
use tern_cluster::kv::Command;
use tern_cluster::node::Members;
use tern_cluster::node::counters::{MemberStatus, member_status};
use tern_engine::agent::{IdleStrategy, Idler};
use tern_engine::client::{ClientConfig, OfferResult, Tern};
use tern_engine::driver::{DriverConfig, MediaDriver};

/// Options of the network benchmark.
#[derive(Debug, Clone, clap::Args)]
pub(crate) struct NetworkArgs {
    /// Members in the cluster.
    #[arg(long = "network-members", default_value_t = 3)]
    members: u32,
    /// Measured round trips of the UDP ping and of the commit (a tenth more warm up first).
    #[arg(long, default_value_t = 20_000)]
    network_round_trips: u64,
    /// Sessions for the throughput figure.
    #[arg(long, default_value_t = 32)]
    sessions: usize,
    /// How long the throughput figure runs.
    #[arg(long, value_parser = crate::cluster_node::parse_duration, default_value = "5s")]
    duration: Duration,
    /// Leader kills for the failover figure.
    #[arg(long, default_value_t = 20)]
    kills: u32,
    /// The idle strategy of the members, their drivers, the client's driver and the ping's echo.
    #[arg(long = "network-idle", default_value = "backoff")]
    idle: IdleStrategy,
    /// `written` or `synced` (see `tern cluster node --durability`).
    #[arg(long, default_value = "written")]
    durability: String,
    /// Entries loaded after a snapshot before a member is restarted for the recovery figure (0:
    /// the member replays the run's log from its start).
    #[arg(long, default_value_t = 0)]
    recovery_entries: u64,
    /// The members' timeouts: `lan` (20 ms heartbeats, 400 ms leader timeout, 200 ms
    /// elections) or `fast` (10 ms, 100 ms, 60 ms).
    #[arg(long, default_value = "lan")]
    timeouts: String,
}

/// A member process, killed when dropped.
struct Member(Child);

impl Drop for Member {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

struct Cluster {
    root: PathBuf,
    members: Members,
    processes: Vec<Option<Member>>,
    args: NetworkArgs,
}

impl Cluster {
    fn start(args: &NetworkArgs) -> anyhow::Result<Self> {
        let root = std::env::temp_dir().join(format!("tern-cluster-bench-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&root);
        std::fs::create_dir_all(&root)?;
        let mut cluster = Self {
            root,
            members: Members::free_loopback(args.members)?,
            processes: (0..args.members).map(|_| None).collect(),
            args: args.clone(),
        };
        for member in 0..args.members {
            cluster.launch(member)?;
        }
        Ok(cluster)
    }

    fn launch(&mut self, member: u32) -> anyhow::Result<Instant> {
        let (heartbeat, leader, election) = match self.args.timeouts.as_str() {
            "lan" => ("20ms", "400ms", "200ms"),
            "fast" => ("10ms", "100ms", "60ms"),
            other => bail!("--timeouts {other:?} is not lan or fast"),
        };
        let index = usize::try_from(member)?;
        self.processes[index] = None;
        let driver_dir = tern_engine::directory::default_directory().with_file_name(format!(
            "tern-bench-cluster-{}-{member}",
            std::process::id()
        ));
        let started = Instant::now();
        let child = Process::new(std::env::current_exe()?)
            .args(["cluster", "node", "--id", &member.to_string(), "--members"])
            .arg(self.members.to_string())
            .arg("--dir")
            .arg(self.root.join(format!("member-{member}")))
            .arg("--driver-dir")
            .arg(driver_dir)
            .args(["--idle-strategy", &idle_name(self.args.idle)])
            .args(["--durability", &self.args.durability])
            .args(["--heartbeat-interval", heartbeat])
            .args(["--leader-timeout", leader])
            .args(["--election-timeout", election])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .context("starting a member")?;
        self.processes[index] = Some(Member(child));
        while self.status(member).is_none() {
            if started.elapsed() > Duration::from_secs(20) {
                bail!("member {member} did not start");
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        Ok(started)
    }

    fn kill(&mut self, member: u32) {
        self.processes[usize::try_from(member).expect("small")] = None;
    }

    fn status(&self, member: u32) -> Option<MemberStatus> {
        let process = self.processes[usize::try_from(member).ok()?].as_ref()?;
        let dir = self.root.join(format!("member-{member}"));
        member_status(&dir, Some(process.0.id())).map(|(_, status)| status)
    }

    fn leader(&self, timeout: Duration) -> anyhow::Result<u32> {
        let started = Instant::now();
        loop {
            let statuses: Vec<_> = (0..self.members.count())
                .filter_map(|member| self.status(member).map(|status| (member, status)))
                .collect();
            let term = statuses.iter().map(|(_, status)| status.term).max();
            if let Some((member, _)) = statuses
                .iter()
                .find(|(_, status)| status.role == 4 && Some(status.term) == term)
            {
                return Ok(*member);
            }
            if started.elapsed() > timeout {
                bail!("no leader within {timeout:?}");
            }
            std::thread::sleep(Duration::from_millis(2));
        }
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        self.processes.clear();
        let _ = std::fs::remove_dir_all(&self.root);
    }
}

fn idle_name(idle: IdleStrategy) -> String {
    match idle {
        IdleStrategy::BusySpin => "busy-spin".to_owned(),
        IdleStrategy::Yield => "yield".to_owned(),
        backoff @ IdleStrategy::Backoff { max_park, .. } => {
            if backoff == IdleStrategy::default() {
                "backoff".to_owned()
            } else {
                format!("backoff-{}ns", max_park.as_nanos())
            }
        }
        IdleStrategy::Sleep(duration) => format!("sleep-{}ns", duration.as_nanos()),
    }
}

/// A media driver in this process, in a fresh directory, and a client of it.
struct LocalDriver {
    driver: MediaDriver,
    tern: Tern,
}

impl LocalDriver {
    fn launch(name: &str, idle: IdleStrategy) -> anyhow::Result<Self> {
        let dir = tern_engine::directory::default_directory()
            .with_file_name(format!("tern-bench-{name}-{}", std::process::id()));
        let driver = MediaDriver::launch(DriverConfig {
            dir: dir.clone(),
            idle_strategy: idle,
            ..DriverConfig::default()
        })?;
        let tern = Tern::connect(ClientConfig {
            dir,
            ..ClientConfig::default()
        })?;
        Ok(Self { driver, tern })
    }
}

impl Drop for LocalDriver {
    fn drop(&mut self) {
        self.tern.close();
        self.driver.close();
    }
}

fn free_port() -> anyhow::Result<u16> {
    Ok(std::net::UdpSocket::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

/// 32-byte round trips over loopback UDP between two drivers, echoed under `idle`.
fn udp_ping(idle: IdleStrategy, warmup: u64, count: u64) -> anyhow::Result<Histogram<u64>> {
    let a = LocalDriver::launch("ping-a", idle)?;
    let b = LocalDriver::launch("ping-b", idle)?;
    let to_b = format!("tern:udp?endpoint=127.0.0.1:{}", free_port()?);
    let to_a = format!("tern:udp?endpoint=127.0.0.1:{}", free_port()?);
    let ping = a.tern.add_publication(&to_b, 1)?;
    let mut pings = b.tern.add_subscription(&to_b, 1)?;
    let pong = b.tern.add_publication(&to_a, 2)?;
    let mut pongs = a.tern.add_subscription(&to_a, 2)?;
    ping.wait_connected(Duration::from_secs(10))?;
    pong.wait_connected(Duration::from_secs(10))?;
    let running = Arc::new(AtomicBool::new(true));
    let echo = {
        let running = Arc::clone(&running);
        std::thread::spawn(move || {
            let mut idler = Idler::new(idle);
            while running.load(Ordering::Relaxed) {
                let work = pings.poll(|message, _| while !pong.offer(message).is_ok() {}, 16);
                idler.idle(work);
            }
        })
    };
    let mut histogram = Histogram::<u64>::new_with_bounds(1, 60_000_000_000, 3)?;
    let message = [7u8; 32];
    let mut idler = Idler::new(idle);
    for round in 0..warmup + count {
        let sent = Instant::now();
        while !matches!(ping.offer(&message), OfferResult::Ok(_)) {}
        let mut got = false;
        while !got {
            pongs.poll(|_, _| got = true, 1);
            idler.idle(usize::from(got));
        }
        if round >= warmup {
            histogram.saturating_record(nanos(sent.elapsed()));
        }
    }
    running.store(false, Ordering::Relaxed);
    let _ = echo.join();
    Ok(histogram)
}

fn nanos(duration: Duration) -> u64 {
    u64::try_from(duration.as_nanos()).unwrap_or(u64::MAX)
}

fn client(tern: &Tern, members: &Members) -> anyhow::Result<ClusterClient> {
    let mut config = ClusterClientConfig::new(members.clone())?;
    config.request_timeout = Duration::from_millis(100);
    Ok(ClusterClient::connect(tern, config)?)
}

/// Sends `command` and polls until its answer, idling between polls as the members do (a
/// client spinning on a core of two would starve them).
fn round_trip(client: &mut ClusterClient, command: &[u8], idler: &mut Idler) -> anyhow::Result<()> {
    client.send(command)?;
    let started = Instant::now();
    while client.poll().is_none() {
        if started.elapsed() > Duration::from_secs(30) {
            bail!("no answer within 30 s");
        }
        idler.idle(0);
    }
    idler.idle(1);
    Ok(())
}

/// One line of HDR percentiles, in microseconds.
pub(crate) fn print_percentiles(name: &str, histogram: &Histogram<u64>) {
    let us = |quantile: f64| histogram.value_at_quantile(quantile) as f64 / 1000.0;
    println!(
        "{name:<26} µs: p50 {:>8.1} · p90 {:>8.1} · p99 {:>8.1} · p99.9 {:>8.1} · p99.99 {:>8.1} · max {:>8.1} ({} samples)",
        us(0.5),
        us(0.9),
        us(0.99),
        us(0.999),
        us(0.9999),
        histogram.max() as f64 / 1000.0,
        histogram.len()
    );
}

pub(crate) fn run(args: &NetworkArgs) -> anyhow::Result<()> {
    let round_trips = args.network_round_trips;
    let warmup = (round_trips / 10).max(100);
    println!(
        "cluster bench --network: {} members over loopback UDP, idle strategy {}, durability {}, {} timeouts",
        args.members,
        idle_name(args.idle),
        args.durability,
        args.timeouts
    );
    let ping = udp_ping(args.idle, warmup, round_trips)?;
    print_percentiles("UDP ping round trip", &ping);

    let mut cluster = Cluster::start(args)?;
    let local = LocalDriver::launch("cluster-client", args.idle)?;
    cluster.leader(Duration::from_secs(20))?;
    let mut session = client(&local.tern, &cluster.members)?;
    let mut commit = Histogram::<u64>::new_with_bounds(1, 60_000_000_000, 3)?;
    let mut idler = Idler::new(args.idle);
    for round in 0..warmup + round_trips {
        let command = Command::Add {
            key: round % 64,
            delta: 1,
        }
        .encode(0);
        let started = Instant::now();
        round_trip(&mut session, &command, &mut idler)?;
        if round >= warmup {
            commit.saturating_record(nanos(started.elapsed()));
        }
    }
    print_percentiles("commit round trip", &commit);
    let ratio = |quantile: f64| {
        commit.value_at_quantile(quantile) as f64 / ping.value_at_quantile(quantile).max(1) as f64
    };
    println!(
        "commit / UDP ping: p50 {:.2}× · p99 {:.2}× · p99.9 {:.2}× · p99.99 {:.2}× (two round trips: 2× is the floor)",
        ratio(0.5),
        ratio(0.99),
        ratio(0.999),
        ratio(0.9999)
    );

    failover(&mut cluster, &local.tern, args)?;
    let (completed, elapsed) = throughput(&local.tern, &cluster.members, args)?;
    println!(
        "throughput: {completed} commands of 32 B in {:.1} s from {} sessions: {:.0} commands/s",
        elapsed.as_secs_f64(),
        args.sessions,
        completed as f64 / elapsed.as_secs_f64()
    );

    recovery(&mut cluster, &local.tern, args)?;
    Ok(())
}

fn throughput(
    tern: &Tern,
    members: &Members,
    args: &NetworkArgs,
) -> anyhow::Result<(u64, Duration)> {
    drive(tern, members, args.sessions, Some(args.duration), u64::MAX)
}

/// Sessions sending adds back to back until `duration` passes or `count` are answered,
/// whichever comes first; returns how many were answered and how long it took.
fn drive(
    tern: &Tern,
    members: &Members,
    sessions: usize,
    duration: Option<Duration>,
    count: u64,
) -> anyhow::Result<(u64, Duration)> {
    let mut config = ClusterClientConfig::new(members.clone())?;
    config.request_timeout = Duration::from_millis(100);
    let mut client = ClusterClient::connect_sessions(tern, config, sessions)?;
    let mut waiting = vec![false; sessions];
    let mut in_flight = 0usize;
    let started = Instant::now();
    let mut completed = 0u64;
    let mut sent = 0u64;
    let mut key = 0u64;
    loop {
        let sending = duration.is_none_or(|duration| started.elapsed() < duration) && sent < count;
        if !sending && in_flight == 0 {
            break;
        }
        while let Some((index, _)) = client.poll_any() {
            waiting[index] = false;
            in_flight -= 1;
            completed += 1;
        }
        if sending {
            for (index, waiting) in waiting.iter_mut().enumerate() {
                if !*waiting && sent < count {
                    key += 1;
                    client.send_on(
                        index,
                        &Command::Add {
                            key: key % 1024,
                            delta: 1,
                        }
                        .encode(0),
                    )?;
                    *waiting = true;
                    in_flight += 1;
                    sent += 1;
                }
            }
        }
        if let Some(duration) = duration
            && started.elapsed() > duration + Duration::from_secs(60)
        {
            bail!("sessions still waiting a minute after the run");
        }
    }
    Ok((completed, started.elapsed()))
}

fn failover(cluster: &mut Cluster, tern: &Tern, args: &NetworkArgs) -> anyhow::Result<()> {
    if args.kills == 0 {
        return Ok(());
    }
    let mut sessions = vec![
        client(tern, &cluster.members)?,
        client(tern, &cluster.members)?,
    ];
    let mut pauses = Histogram::<u64>::new_with_bounds(1, 600_000_000_000, 3)?;
    let command = Command::Add { key: 1, delta: 1 }.encode(0);
    for _ in 0..args.kills {
        let leader = cluster.leader(Duration::from_secs(20))?;
        // Load for a moment, kill, and go on until every session had ten answers after the
        // kill: the pause is the longest gap between two answers of a session in the round.
        let mut last_answer = vec![Instant::now(); sessions.len()];
        let mut longest = Duration::ZERO;
        let mut after_kill = vec![0u32; sessions.len()];
        let mut killed = false;
        for session in &mut sessions {
            while session.is_waiting() {
                session.poll();
            }
            session.send(&command)?;
        }
        let started = Instant::now();
        while after_kill.iter().any(|&answers| answers < 10) {
            if !killed && started.elapsed() > Duration::from_millis(100) {
                cluster.kill(leader);
                killed = true;
            }
            for (index, session) in sessions.iter_mut().enumerate() {
                if session.poll().is_some() {
                    let now = Instant::now();
                    longest = longest.max(now.duration_since(last_answer[index]));
                    last_answer[index] = now;
                    if killed {
                        after_kill[index] += 1;
                    }
                    session.send(&command)?;
                }
            }
            if started.elapsed() > Duration::from_secs(60) {
                bail!("no answer a minute after killing the leader");
            }
        }
        pauses.saturating_record(nanos(longest));
        // Restarted and caught up before the next kill: each kill meets a whole cluster.
        let started = cluster.launch(leader)?;
        let new_leader = cluster.leader(Duration::from_secs(20))?;
        let target = cluster
            .status(new_leader)
            .map_or(0, |status| status.commit_position);
        while cluster
            .status(leader)
            .is_none_or(|status| status.applied_position < target)
        {
            if started.elapsed() > Duration::from_secs(60) {
                bail!("member {leader} did not catch up within a minute of its restart");
            }
            std::thread::sleep(Duration::from_millis(1));
        }
    }
    for session in &mut sessions {
        while session.is_waiting() {
            session.poll();
        }
    }
    print_percentiles(&format!("failover pause ({} kills)", args.kills), &pauses);
    Ok(())
}

fn recovery(cluster: &mut Cluster, tern: &Tern, args: &NetworkArgs) -> anyhow::Result<()> {
    let mut snapshot_position = None;
    if args.recovery_entries > 0 {
        // A snapshot, then the entries a restarted member replays after it.
        let mut session = client(tern, &cluster.members)?;
        snapshot_position = Some(session.snapshot(Duration::from_secs(60))?.position);
        let started = Instant::now();
        let (done, _) = drive(
            tern,
            &cluster.members,
            args.sessions,
            None,
            args.recovery_entries,
        )?;
        println!(
            "loaded {done} entries after the snapshot in {:.1} s",
            started.elapsed().as_secs_f64()
        );
    }
    let leader = cluster.leader(Duration::from_secs(20))?;
    let member = (leader + 1) % cluster.members.count();
    let target = cluster
        .status(leader)
        .map_or(0, |status| status.commit_position);
    cluster.kill(member);
    let started = cluster.launch(member)?;
    loop {
        if cluster
            .status(member)
            .is_some_and(|status| status.applied_position >= target)
        {
            break;
        }
        if started.elapsed() > Duration::from_secs(600) {
            bail!("member {member} did not recover within 10 minutes");
        }
        std::thread::sleep(Duration::from_millis(1));
    }
    let from = snapshot_position.unwrap_or(0);
    println!(
        "recovery: a member restarted from {} and replayed {:.1} MiB of log to its leader's commit in {:.1} ms (process start included)",
        snapshot_position.map_or_else(
            || "the log's start".to_owned(),
            |position| format!("the snapshot at {position}")
        ),
        (target as f64 - from as f64) / 1_048_576.0,
        started.elapsed().as_secs_f64() * 1000.0
    );
    Ok(())
}
