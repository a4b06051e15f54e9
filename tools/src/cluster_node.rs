//! `tern cluster node` and `tern cluster client`: a cluster member as a process, and a client
//! session against the members from the command line.
//!
//! - `tern cluster node --id I --members 0=HOST:PORT,... --dir DIR` runs member I with the
//!   sample key-value service until SIGINT or SIGTERM (member I uses `PORT` for consensus and
//!   `PORT+1` for client sessions; see `tern_cluster::node`).
//! - `tern cluster client --members ... add KEY DELTA [--count N]` sends N adds one after another
//!   and prints `N acknowledged, KEY = VALUE`; `get KEY` prints the value (0 for a key never
//!   set); `load --clients C --duration S` runs C sessions that each send adds back to back and
//!   prints commands per second and round-trip percentiles. The client runs its own media
//!   driver (in `--driver-dir`, a fresh directory by default) for the length of the command.

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use hdrhistogram::Histogram;
use tern_cluster::client::{ClusterClient, ClusterClientConfig};
use tern_cluster::kv::{Command, decode_response};
use tern_cluster::log_entry::LogFormat;
use tern_cluster::member_log::LogDurability;
use tern_cluster::node::{Members, Node, NodeConfig};
use tern_engine::client::{ClientConfig, Tern};
use tern_engine::driver::{DriverConfig, MediaDriver};

pub(crate) fn parse_duration(text: &str) -> Result<Duration, String> {
    tern_engine::channel::parse_duration_ns(text)
        .map(Duration::from_nanos)
        .ok_or_else(|| format!("{text:?} is not a duration such as 200ms or 5s"))
}

fn members(text: &str) -> Result<Members, String> {
    Members::parse(text)
}

/// The service a member runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub(crate) enum Service {
    /// The sample key-value store (`tern_cluster::kv`).
    Kv,
}

/// Options of `tern cluster node`.
#[derive(Debug, clap::Args)]
pub(crate) struct NodeArgs {
    /// This member's id.
    #[arg(long)]
    id: u32,
    /// Every member: `0=HOST:PORT,1=HOST:PORT,...` (each uses PORT and PORT+1).
    #[arg(long, value_parser = members)]
    members: Members,
    /// The member's directory: term and vote, recording log, and the log's archive.
    #[arg(long)]
    dir: PathBuf,
    /// The replicated service.
    #[arg(long, value_enum, default_value_t = Service::Kv)]
    service: Service,
    /// When an entry counts as durable: `written` (to the file; a process crash loses nothing)
    /// or `synced` (fdatasync before acknowledging).
    #[arg(long, default_value = "written")]
    durability: LogDurability,
    /// The embedded media driver's directory (default: <driver dir>-cluster-<PORT>).
    #[arg(long)]
    driver_dir: Option<PathBuf>,
    /// How often a leader sends to an idle follower.
    #[arg(long, value_parser = parse_duration, default_value = "20ms")]
    heartbeat_interval: Duration,
    /// Silence from the leader (or, for a leader, from a quorum) after which an election starts.
    #[arg(long, value_parser = parse_duration, default_value = "400ms")]
    leader_timeout: Duration,
    /// How long a canvass and a ballot last.
    #[arg(long, value_parser = parse_duration, default_value = "200ms")]
    election_timeout: Duration,
    /// The log's term length (a power of two, 16k to 1g; the same on every member).
    #[arg(long, default_value = "16m")]
    term_length: String,
    /// The idle strategy of the member and its media driver: backoff (the default: spin, yield,
    /// then sleep up to 1 ms), yield, busy-spin (a core each, for latency on a machine with
    /// cores to spare) or sleep-<duration>.
    #[arg(long, default_value = "backoff")]
    idle_strategy: tern_engine::agent::IdleStrategy,
    /// Ask for a cluster-wide snapshot this often while leading (default: only when asked,
    /// with `tern cluster snapshot`).
    #[arg(long, value_parser = parse_duration)]
    snapshot_interval: Option<Duration>,
    /// Snapshots kept; older ones are deleted and the log is purged below the oldest kept.
    #[arg(long, default_value_t = 3)]
    snapshots_retained: usize,
    /// Bytes of log per segment file of a new log (whole terms; the unit of purging).
    #[arg(long, default_value = "64m")]
    log_segment_length: String,
}

/// Options of `tern cluster snapshot`.
#[derive(Debug, clap::Args)]
pub(crate) struct SnapshotArgs {
    /// Every member: `0=HOST:PORT,1=HOST:PORT,...`.
    #[arg(long, value_parser = members)]
    members: Members,
    /// The client's media driver directory (default: a fresh one, removed at exit).
    #[arg(long)]
    driver_dir: Option<PathBuf>,
    /// Give up after this long without an answer.
    #[arg(long, value_parser = parse_duration, default_value = "30s")]
    timeout: Duration,
}

/// Options of `tern cluster client`.
#[derive(Debug, clap::Args)]
pub(crate) struct ClientArgs {
    /// Every member: `0=HOST:PORT,1=HOST:PORT,...`.
    #[arg(long, value_parser = members)]
    members: Members,
    /// The client's media driver directory (default: a fresh one, removed at exit).
    #[arg(long)]
    driver_dir: Option<PathBuf>,
    /// A request without an answer for this long is sent again, to the next member.
    #[arg(long, value_parser = parse_duration, default_value = "300ms")]
    request_timeout: Duration,
    /// Give up on a command after this long without an answer.
    #[arg(long, value_parser = parse_duration, default_value = "30s")]
    timeout: Duration,
    #[command(subcommand)]
    action: ClientAction,
}

/// What `tern cluster client` does.
#[derive(Debug, clap::Subcommand)]
pub(crate) enum ClientAction {
    /// Add DELTA to KEY, COUNT times one after another; prints how many were acknowledged.
    Add {
        /// The key.
        key: u64,
        /// The amount.
        delta: u64,
        /// Adds to send.
        #[arg(long, default_value_t = 1)]
        count: u64,
    },
    /// Print KEY's value (0 for a key never set).
    Get {
        /// The key.
        key: u64,
    },
    /// Run C sessions sending adds back to back for S; print commands/s and round trips.
    Load {
        /// Concurrent sessions.
        #[arg(long, default_value_t = 8)]
        clients: usize,
        /// How long.
        #[arg(long, value_parser = parse_duration, default_value = "10s")]
        duration: Duration,
    },
}

pub(crate) fn node(args: &NodeArgs) -> anyhow::Result<()> {
    let Service::Kv = args.service;
    let stop = Arc::new(AtomicBool::new(false));
    for signal in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
        signal_hook::flag::register(signal, Arc::clone(&stop))
            .context("installing signal handlers")?;
    }
    if args.id >= args.members.count() {
        bail!(
            "--id {}: the member list has members 0 to {}",
            args.id,
            args.members.count() - 1
        );
    }
    let term_length = tern_engine::channel::parse_size(&args.term_length)
        .with_context(|| format!("--term-length {:?} is not a size", args.term_length))?;
    let mut config = NodeConfig::new(args.id, args.members.clone(), args.dir.clone());
    config.log_format = LogFormat::new(term_length).context("--term-length")?;
    config.durability = args.durability;
    config.heartbeat_interval = args.heartbeat_interval;
    config.leader_heartbeat_timeout = args.leader_timeout;
    config.election_timeout = args.election_timeout;
    config.idle_strategy = args.idle_strategy;
    config.snapshot_interval = args.snapshot_interval;
    if args.snapshots_retained == 0 {
        bail!("--snapshots-retained must be at least 1");
    }
    config.snapshots_retained = args.snapshots_retained;
    config.log_segment_length = tern_engine::channel::parse_size(&args.log_segment_length)
        .filter(|&length| length > 0 && length <= 1 << 30)
        .with_context(|| {
            format!(
                "--log-segment-length {:?} is not a size up to 1g",
                args.log_segment_length
            )
        })?;
    if let Some(dir) = &args.driver_dir {
        config.driver_dir.clone_from(dir);
    }
    let driver_dir = config.driver_dir.clone();
    let mut node = Node::launch(config).context("starting the member")?;
    eprintln!(
        "tern cluster node: member {} of {} running (pid {}, dir {}, driver {}, consensus {}, ingress port {})",
        args.id,
        args.members,
        std::process::id(),
        args.dir.display(),
        driver_dir.display(),
        args.members.address(args.id),
        args.members.address(args.id).port() + 1,
    );
    while !stop.load(Ordering::Acquire) {
        if let Some(failure) = node.failure() {
            node.close();
            bail!("member {} stopped: {failure}", args.id);
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    node.close();
    Ok(())
}

/// The client's own media driver, for the length of a command.
struct ClientDriver {
    driver: MediaDriver,
    tern: Tern,
}

impl ClientDriver {
    fn launch(dir: Option<&PathBuf>) -> anyhow::Result<Self> {
        let dir = dir.cloned().unwrap_or_else(|| {
            let mut dir = tern_engine::directory::default_directory().into_os_string();
            dir.push(format!("-client-{}", std::process::id()));
            dir.into()
        });
        let driver = MediaDriver::launch(DriverConfig {
            dir: dir.clone(),
            ..DriverConfig::default()
        })
        .context("starting the client's media driver")?;
        let tern = Tern::connect(ClientConfig {
            dir,
            ..ClientConfig::default()
        })
        .context("connecting to the client's media driver")?;
        Ok(Self { driver, tern })
    }
}

impl Drop for ClientDriver {
    fn drop(&mut self) {
        self.tern.close();
        self.driver.close();
    }
}

fn new_client(args: &ClientArgs, tern: &Tern) -> anyhow::Result<ClusterClient> {
    let mut config =
        ClusterClientConfig::new(args.members.clone()).context("finding the local address")?;
    config.request_timeout = args.request_timeout;
    Ok(ClusterClient::connect(tern, config)?)
}

pub(crate) fn client(args: &ClientArgs) -> anyhow::Result<()> {
    let driver = ClientDriver::launch(args.driver_dir.as_ref())?;
    match &args.action {
        ClientAction::Add { key, delta, count } => {
            let mut client = new_client(args, &driver.tern)?;
            let mut acknowledged = 0u64;
            let mut value = 0;
            let mut failure = None;
            for _ in 0..*count {
                let command = Command::Add {
                    key: *key,
                    delta: *delta,
                }
                .encode(0);
                match client.call(&command, args.timeout) {
                    Ok(reply) => {
                        acknowledged += 1;
                        value = decode_response(&reply.payload).map_or(0, |(_, value)| value);
                    }
                    Err(error) => {
                        failure = Some(error);
                        break;
                    }
                }
            }
            println!("{acknowledged} acknowledged, {key} = {value}");
            if let Some(error) = failure {
                bail!("add {acknowledged} of {count}: {error}");
            }
        }
        ClientAction::Get { key } => {
            let mut client = new_client(args, &driver.tern)?;
            let reply = client.call(&Command::Get { key: *key }.encode(0), args.timeout)?;
            let (_, value) = decode_response(&reply.payload).context("a malformed response")?;
            println!("{value}");
        }
        ClientAction::Load { clients, duration } => load(args, &driver.tern, *clients, *duration)?,
    }
    Ok(())
}

pub(crate) fn snapshot(args: &SnapshotArgs) -> anyhow::Result<()> {
    let driver = ClientDriver::launch(args.driver_dir.as_ref())?;
    let config =
        ClusterClientConfig::new(args.members.clone()).context("finding the local address")?;
    let mut client = ClusterClient::connect(&driver.tern, config)?;
    let reply = client.snapshot(args.timeout)?;
    println!("snapshot taken at log position {}", reply.position);
    Ok(())
}

fn load(args: &ClientArgs, tern: &Tern, clients: usize, duration: Duration) -> anyhow::Result<()> {
    if clients == 0 || clients > tern_cluster::client::SESSIONS_MAX {
        bail!(
            "--clients must be 1 to {}",
            tern_cluster::client::SESSIONS_MAX
        );
    }
    // One client carries every session over one set of streams: each session has one request
    // in flight, so `clients` requests are in flight together.
    let mut config =
        ClusterClientConfig::new(args.members.clone()).context("finding the local address")?;
    config.request_timeout = args.request_timeout;
    let mut client = ClusterClient::connect_sessions(tern, config, clients)?;
    let mut sent_at = vec![None::<Instant>; clients];
    let mut histogram = Histogram::<u64>::new_with_bounds(1_000, 60_000_000_000, 3)?;
    let mut completed = 0u64;
    let started = Instant::now();
    let end = started + duration;
    let mut key = 0u64;
    let mut in_flight = 0usize;
    loop {
        let now = Instant::now();
        let sending = now < end;
        while let Some((index, _)) = client.poll_any_at(now) {
            if let Some(at) = sent_at[index].take() {
                histogram.saturating_record(
                    u64::try_from(now.duration_since(at).as_nanos()).unwrap_or(u64::MAX),
                );
                completed += 1;
                in_flight -= 1;
            }
        }
        if let Some(oldest) = sent_at.iter().flatten().min()
            && now.duration_since(*oldest) > args.timeout
        {
            bail!("a request went unanswered for {:?}", args.timeout);
        }
        if sending {
            for (index, sent) in sent_at.iter_mut().enumerate() {
                if sent.is_none() {
                    key = key.wrapping_add(1);
                    client.send_on(
                        index,
                        &Command::Add {
                            key: key % 1024,
                            delta: 1,
                        }
                        .encode(0),
                    )?;
                    *sent = Some(now);
                    in_flight += 1;
                }
            }
        } else if in_flight == 0 {
            break;
        }
    }
    let seconds = duration.as_secs_f64();
    println!(
        "{completed} commands in {seconds:.1} s from {clients} sessions: {:.0} commands/s",
        completed as f64 / seconds
    );
    crate::cluster_bench::print_percentiles("round trip", &histogram);
    Ok(())
}
