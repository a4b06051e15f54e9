//! A cluster member as a real process: the consensus core, the service container and the member's
//! log, run by one agent over tern UDP streams, beside an embedded media driver.
//!
//! # Ports and streams
//! Member `i` is given `HOST:PORT` in the member list and uses:
//! - `HOST:PORT`, stream [`CONSENSUS_STREAM_ID`]: consensus messages from the other members (each
//!   member publishes to each other member's endpoint);
//! - `HOST:PORT+1`, stream [`INGRESS_STREAM_ID`]: client sessions' connects and requests.
//!
//! Responses go to the channel and stream each client names when it connects
//! ([`crate::session_protocol::session_connect`]). `HOST` must be an address of the member's own
//! machine: its subscriptions bind there.
//!
//! # Storage
//! Under the member's directory: [`crate::node_state`] (term and vote), [`crate::recording_log`]
//! (terms, truncations), and `archive/`, an archive directory whose one recording is the log
//! ([`crate::member_log`]). Restarting a member in the same directory recovers all three.
//!
//! # Agents and threads
//! [`Node::launch`] starts a media driver (shared threading: one thread, backing off when idle) in
//! its own directory and runs the member's agent ([`MemberAgent`]) on a thread of its own: the
//! consensus module and the service container share that agent, so the service applies the log
//! on the thread that commits it, with no hand-off. The agent takes its time from the runner
//! (`tern_engine::agent::Now`), never from a clock of its own.

pub mod counters;
pub mod error_file;
mod member;
mod snapshot_transfer;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use tern_engine::agent::{AgentRunner, Clock, IdleStrategy, SystemClock};
use tern_engine::client::{ClientConfig, Tern};
use tern_engine::driver::{DriverConfig, MediaDriver};

pub use member::{MemberAgent, MemberError};

use crate::consensus::{ConsensusConfig, MEMBERS_MAX};
use crate::log_entry::LogFormat;
use crate::member_log::LogDurability;

/// The stream consensus messages travel on, to each member's `HOST:PORT`.
pub const CONSENSUS_STREAM_ID: i32 = 108;
/// The stream client sessions send on, to each member's `HOST:PORT+1`.
pub const INGRESS_STREAM_ID: i32 = 101;
/// The stream responses travel on to a client, unless it names another.
pub const EGRESS_STREAM_ID: i32 = 102;
/// The term length of the streams between members: an append request (64 KiB of entries) is at
/// most an eighth of a term.
pub const CONSENSUS_TERM_LENGTH: &str = "1m";
/// The term length of ingress and egress streams (a command is at most 4 KiB).
pub const SESSION_TERM_LENGTH: &str = "256k";

/// Offers `message`, again at once when the offer met the log's rotation to a new term (which
/// asks for exactly that); any other refusal is the caller's to handle.
pub(crate) fn offer(
    publication: &tern_engine::client::Publication,
    message: &[u8],
) -> tern_engine::client::OfferResult {
    use tern_engine::client::OfferResult;
    let mut result = publication.offer(message);
    // A rotation completes within the offer that meets it; two in a row cannot happen for a
    // message shorter than a term, so a few tries are plenty.
    for _ in 0..3 {
        if result != OfferResult::AdminAction {
            break;
        }
        result = publication.offer(message);
    }
    result
}

/// The members of a cluster, in id order: each one's `HOST:PORT`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Members(Vec<SocketAddr>);

impl Members {
    /// Parses `0=HOST:PORT,1=HOST:PORT,...`: ids from 0, each once, at most
    /// [`MEMBERS_MAX`]; ports below 65535 (each member uses `PORT` and `PORT+1`).
    pub fn parse(text: &str) -> Result<Self, String> {
        let mut members: Vec<Option<SocketAddr>> = Vec::new();
        for part in text
            .split(',')
            .map(str::trim)
            .filter(|part| !part.is_empty())
        {
            let (id, address) = part
                .split_once('=')
                .ok_or_else(|| format!("{part:?} is not ID=HOST:PORT"))?;
            let id: usize = id
                .trim()
                .parse()
                .map_err(|_| format!("{id:?} is not a member id"))?;
            let address = resolve(address.trim())?;
            if address.port() == u16::MAX || address.port() == 0 {
                return Err(format!("{address}: a member needs PORT and PORT+1, from 1"));
            }
            if id >= usize::try_from(MEMBERS_MAX).expect("small") {
                return Err(format!(
                    "member id {id}: a cluster has at most {MEMBERS_MAX} members"
                ));
            }
            if members.len() <= id {
                members.resize(id + 1, None);
            }
            if members[id].replace(address).is_some() {
                return Err(format!("member {id} is given twice"));
            }
        }
        if members.is_empty() {
            return Err("no members given".to_owned());
        }
        let members = members
            .into_iter()
            .enumerate()
            .map(|(id, address)| address.ok_or_else(|| format!("member {id} is missing")))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Self(members))
    }

    /// A list of the given addresses, member `i` at `addresses[i]`.
    pub fn new(addresses: Vec<SocketAddr>) -> Result<Self, String> {
        let text = addresses
            .iter()
            .enumerate()
            .map(|(id, address)| format!("{id}={address}"))
            .collect::<Vec<_>>()
            .join(",");
        Self::parse(&text)
    }

    /// `count` members on 127.0.0.1 for tests and benchmarks, each `PORT` and `PORT+1` free
    /// when looked at and below the machine's ephemeral port range: a socket bound to port 0
    /// (a client's, a publication's) can then never take a member's port while it restarts.
    /// Members in production take fixed ports outside that range for the same reason.
    pub fn free_loopback(count: u32) -> std::io::Result<Self> {
        use std::sync::atomic::{AtomicU32, Ordering};
        static NEXT: AtomicU32 = AtomicU32::new(0);
        let ephemeral_low = std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
            .ok()
            .and_then(|range| range.split_whitespace().next()?.parse::<u32>().ok())
            .unwrap_or(32_768)
            .clamp(12_000, 65_000);
        let low = 10_000u32;
        let span = (ephemeral_low - low) / 2;
        let mut candidate = (std::process::id().wrapping_mul(7_919)
            + NEXT.fetch_add(1, Ordering::Relaxed) * 97)
            % span;
        let mut addresses = Vec::new();
        for _ in 0..span {
            if addresses.len() == usize::try_from(count).expect("small") {
                break;
            }
            candidate = (candidate + 1) % span;
            let port = u16::try_from(low + 2 * candidate).expect("below the ephemeral range");
            let address = SocketAddr::from(([127, 0, 0, 1], port));
            let next = SocketAddr::from(([127, 0, 0, 1], port + 1));
            if std::net::UdpSocket::bind(address).is_ok() && std::net::UdpSocket::bind(next).is_ok()
            {
                addresses.push(address);
            }
        }
        Self::new(addresses).map_err(std::io::Error::other)
    }

    /// How many.
    pub fn count(&self) -> u32 {
        u32::try_from(self.0.len()).expect("at most MEMBERS_MAX")
    }

    /// Member `id`'s `HOST:PORT`.
    pub fn address(&self, id: u32) -> SocketAddr {
        self.0[usize::try_from(id).expect("small")]
    }

    /// Member `id`'s consensus channel.
    pub fn consensus_channel(&self, id: u32) -> String {
        format!(
            "tern:udp?endpoint={}|term-length={CONSENSUS_TERM_LENGTH}",
            self.address(id)
        )
    }

    /// Member `id`'s ingress channel (`PORT+1`).
    pub fn ingress_channel(&self, id: u32) -> String {
        let mut address = self.address(id);
        address.set_port(address.port() + 1);
        format!("tern:udp?endpoint={address}|term-length={SESSION_TERM_LENGTH}")
    }
}

impl std::fmt::Display for Members {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        for (id, address) in self.0.iter().enumerate() {
            if id > 0 {
                write!(f, ",")?;
            }
            write!(f, "{id}={address}")?;
        }
        Ok(())
    }
}

fn resolve(text: &str) -> Result<SocketAddr, String> {
    use std::net::ToSocketAddrs;
    text.to_socket_addrs()
        .map_err(|error| format!("{text:?}: {error}"))?
        .find(SocketAddr::is_ipv4)
        .ok_or_else(|| format!("{text:?} has no IPv4 address"))
}

/// The file in a member's directory that says how to reach the running member's counters.
pub const NODE_INFO_FILE: &str = "node-info";

/// What a running member writes in its directory for the operator tools: which member it is
/// and where its media driver (and so its counters) is. Rewritten at every start.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeInfo {
    /// The member's id.
    pub member_id: u32,
    /// The members.
    pub members: Members,
    /// Its media driver's directory.
    pub driver_dir: PathBuf,
    /// Its process.
    pub pid: u32,
}

impl NodeInfo {
    /// Writes the file whole (a temporary file renamed over the old one).
    pub fn write(&self, dir: &std::path::Path) -> std::io::Result<()> {
        let text = format!(
            "version=1\nmember_id={}\nmembers={}\ndriver_dir={}\npid={}\n",
            self.member_id,
            self.members,
            self.driver_dir.display(),
            self.pid
        );
        let temporary = dir.join(format!("{NODE_INFO_FILE}.tmp"));
        std::fs::write(&temporary, text)?;
        std::fs::rename(&temporary, dir.join(NODE_INFO_FILE))
    }

    /// Reads the file a member wrote in `dir`.
    pub fn read(dir: &std::path::Path) -> Result<Self, String> {
        let path = dir.join(NODE_INFO_FILE);
        let text = std::fs::read_to_string(&path).map_err(|error| {
            format!(
                "{}: {error} (has a member run in this directory?)",
                path.display()
            )
        })?;
        let field = |name: &str| {
            text.lines()
                .find_map(|line| line.strip_prefix(name)?.strip_prefix('='))
                .ok_or_else(|| format!("{}: no {name}", path.display()))
        };
        if field("version")? != "1" {
            return Err(format!("{}: an unknown version", path.display()));
        }
        let number = |name: &str| {
            field(name)?
                .parse::<u32>()
                .map_err(|_| format!("{}: {name} is not a number", path.display()))
        };
        Ok(Self {
            member_id: number("member_id")?,
            members: Members::parse(field("members")?)?,
            driver_dir: PathBuf::from(field("driver_dir")?),
            pid: number("pid")?,
        })
    }
}

/// How a member runs.
#[derive(Debug, Clone)]
pub struct NodeConfig {
    /// This member's id.
    pub member_id: u32,
    /// Every member's `HOST:PORT`.
    pub members: Members,
    /// The member's directory: its term and vote, recording log and archive.
    pub dir: PathBuf,
    /// The embedded media driver's directory (memory-backed by default).
    pub driver_dir: PathBuf,
    /// When written log bytes count as durable.
    pub durability: LogDurability,
    /// How often a leader sends to each follower when it has nothing new.
    pub heartbeat_interval: Duration,
    /// A follower that has not heard from its leader for this long looks for a new one; a
    /// leader that has not heard from a quorum for this long steps down.
    pub leader_heartbeat_timeout: Duration,
    /// How long a canvass waits for every member, and how long a ballot lasts.
    pub election_timeout: Duration,
    /// The log's term length (every member must use the same).
    pub log_format: LogFormat,
    /// Log bytes between service-state digest checkpoints.
    pub digest_interval_bytes: u64,
    /// The idle strategy of the member agent and of its media driver.
    pub idle_strategy: IdleStrategy,
    /// How often the leader asks for a cluster-wide snapshot (`None`: only when asked).
    pub snapshot_interval: Option<Duration>,
    /// Snapshots kept; older ones are deleted and the log is purged below the oldest kept.
    pub snapshots_retained: usize,
    /// Bytes of log per segment file of a new log (rounded up to whole terms): the unit the
    /// log is purged in.
    pub log_segment_length: u64,
}

impl NodeConfig {
    /// The defaults for member `member_id` of `members` in `dir`: LAN timeouts (heartbeats every
    /// 20 ms, a leader given up after 400 ms of silence, 200 ms elections), writes count once
    /// written, 16 MiB log terms, the driver in `<default driver dir>-cluster-<PORT>`.
    pub fn new(member_id: u32, members: Members, dir: PathBuf) -> Self {
        let port = if member_id < members.count() {
            members.address(member_id).port()
        } else {
            0
        };
        let mut driver_dir = tern_engine::directory::default_directory().into_os_string();
        driver_dir.push(format!("-cluster-{port}"));
        Self {
            member_id,
            members,
            dir,
            driver_dir: driver_dir.into(),
            durability: LogDurability::default(),
            heartbeat_interval: Duration::from_millis(20),
            leader_heartbeat_timeout: Duration::from_millis(400),
            election_timeout: Duration::from_millis(200),
            log_format: LogFormat::default(),
            digest_interval_bytes: 1024 * 1024,
            idle_strategy: IdleStrategy::default(),
            snapshot_interval: None,
            snapshots_retained: 3,
            log_segment_length: crate::member_log::SEGMENT_LENGTH_DEFAULT,
        }
    }

    /// The consensus core's configuration.
    pub fn consensus_config(&self) -> ConsensusConfig {
        let nanos = |duration: Duration| u64::try_from(duration.as_nanos()).unwrap_or(u64::MAX);
        let mut config = ConsensusConfig::new(self.members.count());
        config.heartbeat_interval_ns = nanos(self.heartbeat_interval);
        config.leader_heartbeat_timeout_ns = nanos(self.leader_heartbeat_timeout);
        config.election_timeout_ns = nanos(self.election_timeout);
        config.log_format = self.log_format;
        config
    }
}

/// Why a member could not start.
#[derive(Debug, thiserror::Error)]
pub enum NodeError {
    /// The member's state or transport refused.
    #[error(transparent)]
    Member(#[from] MemberError),
    /// The media driver refused.
    #[error("media driver: {0}")]
    Driver(String),
    /// The agent's thread could not start.
    #[error("member agent thread: {0}")]
    Thread(#[from] std::io::Error),
}

/// A running member: its media driver and its agent's thread.
pub struct Node {
    runner: Option<AgentRunner>,
    driver: Option<MediaDriver>,
}

impl std::fmt::Debug for Node {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Node")
            .field("running", &self.runner.is_some())
            .finish_non_exhaustive()
    }
}

impl Node {
    /// Starts a media driver and the member's agent: the member recovers its state from its
    /// directory and joins the cluster.
    pub fn launch(config: NodeConfig) -> Result<Self, NodeError> {
        let driver = MediaDriver::launch(DriverConfig {
            dir: config.driver_dir.clone(),
            idle_strategy: config.idle_strategy,
            ..DriverConfig::default()
        })
        .map_err(|error| NodeError::Driver(error.to_string()))?;
        let tern = Tern::connect(ClientConfig {
            dir: config.driver_dir.clone(),
            ..ClientConfig::default()
        })
        .map_err(|error| NodeError::Driver(error.to_string()))?;
        let clock: Arc<dyn Clock> = Arc::new(SystemClock);
        let idle = config.idle_strategy;
        let agent = MemberAgent::open(config, tern, clock.now())?;
        let runner = AgentRunner::start(Box::new(agent), idle, clock)?;
        Ok(Self {
            runner: Some(runner),
            driver: Some(driver),
        })
    }

    /// Why the member's agent stopped, if it did (a disk that refused a write, a damaged log).
    pub fn failure(&self) -> Option<String> {
        self.runner
            .as_ref()
            .and_then(|runner| runner.failure().map(str::to_owned))
    }

    /// Stops the member (its log is closed cleanly) and then its driver.
    pub fn close(&mut self) {
        if let Some(mut runner) = self.runner.take() {
            runner.close();
        }
        if let Some(mut driver) = self.driver.take() {
            driver.close();
        }
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        self.close();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn node_info_round_trips_and_a_bad_file_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        assert!(NodeInfo::read(dir.path()).is_err());
        let info = NodeInfo {
            member_id: 2,
            members: Members::parse("0=127.0.0.1:9000,1=127.0.0.1:9010,2=127.0.0.1:9020").unwrap(),
            driver_dir: PathBuf::from("/dev/shm/x"),
            pid: 42,
        };
        info.write(dir.path()).unwrap();
        assert_eq!(NodeInfo::read(dir.path()).unwrap(), info);
        std::fs::write(dir.path().join(NODE_INFO_FILE), "version=2\n").unwrap();
        assert!(NodeInfo::read(dir.path()).is_err());
    }

    #[test]
    fn member_lists_parse_and_bad_ones_are_refused() {
        let members =
            Members::parse("1=127.0.0.1:9002, 0=127.0.0.1:9000,2=localhost:9004").unwrap();
        assert_eq!(members.count(), 3);
        assert_eq!(members.address(0).port(), 9000);
        assert_eq!(
            members.ingress_channel(1),
            "tern:udp?endpoint=127.0.0.1:9003|term-length=256k"
        );
        assert_eq!(Members::parse(&members.to_string()).unwrap(), members);
        for bad in [
            "",
            "0=127.0.0.1:9000,2=127.0.0.1:9004",
            "0=127.0.0.1:9000,0=127.0.0.1:9002",
            "0=127.0.0.1",
            "x=127.0.0.1:9000",
            "0=127.0.0.1:65535",
            "7=127.0.0.1:9000",
        ] {
            assert!(Members::parse(bad).is_err(), "{bad:?}");
        }
    }
}
