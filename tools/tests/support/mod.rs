//! A cluster of `tern cluster node` processes for tests, and a client load against it.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use tern_cluster::client::{ClusterClient, ClusterClientConfig};
use tern_cluster::kv::{Command as KvCommand, decode_response};
use tern_cluster::node::Members;
use tern_cluster::node::counters::{MemberStatus, member_status};
use tern_engine::client::{ClientConfig, Tern};
use tern_engine::driver::{DriverConfig, MediaDriver};

const TERN: &str = env!("CARGO_BIN_EXE_tern");

/// A member process, killed when dropped.
struct Running(Child);

impl Drop for Running {
    fn drop(&mut self) {
        // A stopped process must be resumed to die of SIGKILL promptly and be reaped.
        let pid = libc::pid_t::try_from(self.0.id()).expect("pids fit");
        // SAFETY: kill has no memory preconditions; the pid is our own child's, not yet reaped.
        unsafe { libc::kill(pid, libc::SIGCONT) };
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Member processes in a scratch directory.
pub(crate) struct Cluster {
    root: PathBuf,
    pub(crate) members: Members,
    processes: Vec<Option<Running>>,
    client_driver: Option<MediaDriver>,
    extra: Vec<String>,
}

impl Cluster {
    /// Starts `count` members.
    pub(crate) fn start(name: &str, count: u32) -> Self {
        Self::start_with(name, count, &[])
    }

    /// Starts `count` members, each given `extra` arguments too.
    pub(crate) fn start_with(name: &str, count: u32, extra: &[&str]) -> Self {
        static CLUSTERS: AtomicU64 = AtomicU64::new(0);
        let root = std::env::temp_dir().join(format!(
            "tern-cluster-{name}-{count}-{}-{}",
            std::process::id(),
            CLUSTERS.fetch_add(1, Ordering::Relaxed)
        ));
        let _ = std::fs::remove_dir_all(&root);
        std::fs::create_dir_all(&root).expect("scratch directory");
        let client_dir = root.join("client-driver");
        let client_driver = MediaDriver::launch(DriverConfig {
            dir: client_dir,
            ..DriverConfig::default()
        })
        .expect("the clients' driver starts");
        let mut cluster = Self {
            root,
            members: Members::free_loopback(count).expect("free ports"),
            processes: (0..count).map(|_| None).collect(),
            client_driver: Some(client_driver),
            extra: extra.iter().map(|&arg| arg.to_owned()).collect(),
        };
        for member in 0..count {
            cluster.restart(member);
        }
        cluster
    }

    /// Member `member`'s directory.
    pub(crate) fn dir(&self, member: u32) -> PathBuf {
        self.root.join(format!("member-{member}"))
    }

    /// The clients' media driver's directory.
    pub(crate) fn client_driver_dir(&self) -> PathBuf {
        self.root.join("client-driver")
    }

    /// Starts `member` (again), in its directory.
    pub(crate) fn restart(&mut self, member: u32) {
        let index = usize::try_from(member).expect("small");
        self.processes[index] = None;
        let log = std::fs::File::create(self.root.join(format!("member-{member}.log")))
            .expect("a log file");
        let child = Command::new(TERN)
            .args(["cluster", "node", "--id", &member.to_string(), "--members"])
            .arg(self.members.to_string())
            .arg("--dir")
            .arg(self.dir(member))
            .arg("--driver-dir")
            .arg(self.root.join(format!("driver-{member}")))
            .args(&self.extra)
            .env("RUST_LOG", "info")
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("a member starts");
        self.processes[index] = Some(Running(child));
        // Wait for it to publish its counters, so no check reads the previous run's.
        let started = Instant::now();
        while self.status(member).is_none() {
            assert!(
                started.elapsed() < Duration::from_secs(20),
                "member {member} did not start: {}",
                self.log(member)
            );
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// What member `member` wrote on standard error (its control-plane events).
    pub(crate) fn log(&self, member: u32) -> String {
        std::fs::read_to_string(self.root.join(format!("member-{member}.log"))).unwrap_or_default()
    }

    /// Sends `signal` to `member`; SIGKILL also reaps it.
    pub(crate) fn kill(&mut self, member: u32, signal: i32) {
        let index = usize::try_from(member).expect("small");
        if signal == libc::SIGKILL {
            if let Some(mut running) = self.processes[index].take() {
                let _ = running.0.kill();
                let _ = running.0.wait();
            }
            return;
        }
        let process = self.processes[index].as_ref().expect("running");
        let pid = libc::pid_t::try_from(process.0.id()).expect("pids fit");
        // SAFETY: kill has no memory preconditions; the pid is our own running child's.
        let result = unsafe { libc::kill(pid, signal) };
        assert_eq!(result, 0, "signal {signal} to member {member}");
    }

    /// What `member`'s counters say, when it runs.
    pub(crate) fn status(&self, member: u32) -> Option<MemberStatus> {
        let process = self.processes[usize::try_from(member).expect("small")].as_ref()?;
        member_status(&self.dir(member), Some(process.0.id())).map(|(_, status)| status)
    }

    fn statuses(&self) -> Vec<(u32, MemberStatus)> {
        (0..self.members.count())
            .filter_map(|member| self.status(member).map(|status| (member, status)))
            .collect()
    }

    /// The member that leads the highest term among the running ones, if one does.
    pub(crate) fn leader(&self) -> Option<u32> {
        let statuses = self.statuses();
        let term = statuses.iter().map(|(_, status)| status.term).max()?;
        statuses
            .iter()
            .find(|(_, status)| status.role == 4 && status.term == term)
            .map(|(member, _)| *member)
    }

    /// A leader that is not `member`.
    pub(crate) fn leader_other_than(&self, member: u32) -> Option<u32> {
        let statuses: Vec<_> = self
            .statuses()
            .into_iter()
            .filter(|(id, _)| *id != member)
            .collect();
        let term = statuses.iter().map(|(_, status)| status.term).max()?;
        statuses
            .iter()
            .find(|(_, status)| status.role == 4 && status.term == term)
            .map(|(id, _)| *id)
    }

    /// Waits for a leader.
    pub(crate) fn wait_for_leader(&self, timeout: Duration) -> u32 {
        let started = Instant::now();
        loop {
            if let Some(leader) = self.leader() {
                return leader;
            }
            assert!(
                started.elapsed() < timeout,
                "no leader: {:?}",
                self.statuses()
            );
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// Waits until `member` has applied what the leader had committed when the wait began.
    pub(crate) fn wait_caught_up(&self, member: u32, timeout: Duration) {
        let started = Instant::now();
        let leader = self.wait_for_leader(timeout);
        let target = self
            .status(leader)
            .map_or(0, |status| status.commit_position);
        loop {
            if self
                .status(member)
                .is_some_and(|status| status.applied_position >= target)
            {
                return;
            }
            assert!(
                started.elapsed() < timeout,
                "member {member} did not catch up to {target}: {:?}",
                self.status(member)
            );
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// Waits until every member runs and has applied the same log to the same state digest.
    pub(crate) fn wait_for_equal_digests(&self, timeout: Duration) {
        let started = Instant::now();
        loop {
            let statuses = self.statuses();
            let first = statuses.first().map(|(_, status)| *status);
            if statuses.len() == self.processes.len()
                && first.is_some_and(|first| {
                    first.applied_position > 0
                        && statuses.iter().all(|(_, status)| {
                            status.applied_position == first.applied_position
                                && status.state_digest == first.state_digest
                        })
                })
            {
                return;
            }
            assert!(started.elapsed() < timeout, "members differ: {statuses:?}");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Asks for a cluster-wide snapshot; returns its position.
    pub(crate) fn snapshot(&self) -> u64 {
        let tern = connect(&self.client_driver_dir());
        let mut client = ClusterClient::connect(
            &tern,
            ClusterClientConfig::new(self.members.clone()).expect("a local address"),
        )
        .expect("a client");
        client
            .snapshot(Duration::from_secs(30))
            .expect("a snapshot's answer")
            .position
    }

    /// Reads each key through a new session: each must equal its session's acknowledged adds.
    pub(crate) fn check_counts(&self, acks: &[(u64, u64)]) {
        let tern = connect(&self.client_driver_dir());
        let mut client = ClusterClient::connect(
            &tern,
            ClusterClientConfig::new(self.members.clone()).expect("a local address"),
        )
        .expect("a client");
        for &(key, acknowledged) in acks {
            let reply = client
                .call(&KvCommand::Get { key }.encode(0), Duration::from_secs(30))
                .expect("a get's answer");
            let (_, value) = decode_response(&reply.payload).expect("a KV answer");
            assert_eq!(
                value, acknowledged,
                "key {key}: every acknowledged add applied exactly once"
            );
        }
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        for process in &mut self.processes {
            *process = None;
        }
        if let Some(mut driver) = self.client_driver.take() {
            driver.close();
        }
        if !std::thread::panicking() {
            let _ = std::fs::remove_dir_all(&self.root);
        } else {
            eprintln!("member logs kept in {}", self.root.display());
        }
    }
}

fn connect(dir: &std::path::Path) -> Tern {
    Tern::connect(ClientConfig {
        dir: dir.to_path_buf(),
        ..ClientConfig::default()
    })
    .expect("the clients' driver runs")
}

/// Client sessions adding 1 to a key each, back to back, on threads of their own.
pub(crate) struct Load {
    stop: Arc<AtomicBool>,
    acks: Vec<Arc<AtomicU64>>,
    threads: Vec<JoinHandle<Result<(u64, u64), String>>>,
}

impl Load {
    /// Starts `sessions` sessions against `cluster`.
    pub(crate) fn start(cluster: &Cluster, sessions: u64) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let mut acks = Vec::new();
        let mut threads = Vec::new();
        // Every session of the test binary adds to a key of its own.
        static NEXT_KEY: AtomicU64 = AtomicU64::new(1);
        for _ in 0..sessions {
            let key = NEXT_KEY.fetch_add(1, Ordering::Relaxed);
            let count = Arc::new(AtomicU64::new(0));
            acks.push(Arc::clone(&count));
            let stop = Arc::clone(&stop);
            let members = cluster.members.clone();
            let dir = cluster.client_driver_dir();
            threads.push(std::thread::spawn(move || {
                let tern = connect(&dir);
                let mut client = ClusterClient::connect(
                    &tern,
                    ClusterClientConfig::new(members).map_err(|error| error.to_string())?,
                )
                .map_err(|error| error.to_string())?;
                let command = KvCommand::Add { key, delta: 1 }.encode(0);
                while !stop.load(Ordering::Acquire) {
                    // A call is never abandoned: the last one is answered before the count is
                    // final, so the count is exactly what the cluster must hold.
                    client
                        .call(&command, Duration::from_secs(60))
                        .map_err(|error| format!("key {key}: {error}"))?;
                    count.fetch_add(1, Ordering::AcqRel);
                }
                Ok((key, count.load(Ordering::Acquire)))
            }));
        }
        Self {
            stop,
            acks,
            threads,
        }
    }

    /// Acknowledged adds so far, all sessions together.
    pub(crate) fn total_acks(&self) -> u64 {
        self.acks
            .iter()
            .map(|count| count.load(Ordering::Acquire))
            .sum()
    }

    /// Waits until `total` adds were acknowledged.
    pub(crate) fn wait_for_acks(&self, total: u64, timeout: Duration) {
        let started = Instant::now();
        while self.total_acks() < total {
            assert!(
                started.elapsed() < timeout,
                "only {} of {total} adds acknowledged",
                self.total_acks()
            );
            assert!(
                !self.threads.iter().any(JoinHandle::is_finished),
                "a session stopped"
            );
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    /// Stops the sessions; returns each key and its acknowledged count.
    pub(crate) fn stop(self) -> Vec<(u64, u64)> {
        self.stop.store(true, Ordering::Release);
        self.threads
            .into_iter()
            .map(|thread| thread.join().expect("no panic").expect("no session failed"))
            .collect()
    }
}
