//! Several hosts on one machine: each host is a network namespace with its own `tern driver`,
//! joined by a veth pair to a bridge in a switch namespace (10.77.0.N/24). Publishers and
//! subscribers are the `tern pub` and `tern sub --verify` an operator runs. Unicast between two
//! hosts and multicast to three, under loss (drops, duplicates and reordering injected by the
//! drivers' loss generators), and links cut and restored. Multicast is only ever sent inside
//! these namespaces, never on the host's own network.
//!
//! Needs root and iproute2 (`ip netns`): without them each test says why it is skipped, unless
//! `TERN_REQUIRE_NETNS` is set (as `.ci/run` sets it), when each fails instead.
#![cfg(target_os = "linux")]

use std::path::PathBuf;
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

const TERN: &str = env!("CARGO_BIN_EXE_tern");

/// Why these tests cannot run here, if they cannot.
fn unavailable() -> Option<String> {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        return Some("network namespaces need root".to_owned());
    }
    match Command::new("ip").args(["netns", "list"]).output() {
        Ok(output) if output.status.success() => None,
        Ok(output) => Some(format!(
            "`ip netns` fails: {}",
            String::from_utf8_lossy(&output.stderr).trim()
        )),
        Err(error) => Some(format!("iproute2's `ip` is missing: {error}")),
    }
}

fn run(args: &[&str]) {
    let output = Command::new("ip").args(args).output().expect("ip runs");
    assert!(
        output.status.success(),
        "ip {}: {}",
        args.join(" "),
        String::from_utf8_lossy(&output.stderr)
    );
}

/// Hosts joined by a switch, removed (with every process started in them) when dropped.
struct Network {
    prefix: String,
    hosts: usize,
    processes: Vec<Child>,
    dirs: Vec<PathBuf>,
}

impl Network {
    /// `hosts` namespaces `<prefix>-h1` .. and a switch `<prefix>-sw`.
    fn new(tag: &str, hosts: usize) -> Option<Self> {
        if let Some(reason) = unavailable() {
            // CI sets TERN_REQUIRE_NETNS: there, a machine that cannot run these fails them.
            assert!(
                std::env::var_os("TERN_REQUIRE_NETNS").is_none(),
                "TERN_REQUIRE_NETNS is set, but {reason}"
            );
            eprintln!("skipped: {reason}");
            return None;
        }
        let prefix = format!("tern{}-{tag}", std::process::id());
        let network = Self {
            prefix,
            hosts,
            processes: Vec::new(),
            dirs: Vec::new(),
        };
        let switch = network.switch();
        run(&["netns", "add", &switch]);
        run(&["-n", &switch, "link", "set", "lo", "up"]);
        run(&["-n", &switch, "link", "add", "br0", "type", "bridge"]);
        // Flood multicast to every port: no IGMP querier runs here.
        run(&[
            "-n",
            &switch,
            "link",
            "set",
            "br0",
            "type",
            "bridge",
            "mcast_snooping",
            "0",
        ]);
        run(&["-n", &switch, "link", "set", "br0", "up"]);
        for host in 1..=hosts {
            let namespace = network.host(host);
            let port = format!("p{host}");
            run(&["netns", "add", &namespace]);
            run(&[
                "link", "add", "eth1", "netns", &namespace, "type", "veth", "peer", "name", &port,
                "netns", &switch,
            ]);
            run(&["-n", &switch, "link", "set", &port, "master", "br0"]);
            run(&["-n", &switch, "link", "set", &port, "up"]);
            run(&["-n", &namespace, "link", "set", "lo", "up"]);
            run(&[
                "-n",
                &namespace,
                "addr",
                "add",
                &format!("{}/24", ip(host)),
                "dev",
                "eth1",
            ]);
            run(&["-n", &namespace, "link", "set", "eth1", "up"]);
            run(&[
                "-n",
                &namespace,
                "route",
                "add",
                "224.0.0.0/4",
                "dev",
                "eth1",
            ]);
        }
        Some(network)
    }

    fn switch(&self) -> String {
        format!("{}-sw", self.prefix)
    }

    fn host(&self, host: usize) -> String {
        format!("{}-h{host}", self.prefix)
    }

    fn dir(&self, host: usize) -> PathBuf {
        std::env::temp_dir().join(format!("{}-h{host}", self.prefix))
    }

    /// Takes host `host`'s link down or up (at the switch).
    fn set_link(&self, host: usize, up: bool) {
        let state = if up { "up" } else { "down" };
        run(&[
            "-n",
            &self.switch(),
            "link",
            "set",
            &format!("p{host}"),
            state,
        ]);
    }

    /// A `tern` command on `host`, with its driver directory.
    fn command(&self, host: usize, args: &[&str]) -> Command {
        let mut command = Command::new("ip");
        let dir = self.dir(host);
        command
            .args(["netns", "exec", &self.host(host), TERN])
            .args(args)
            .args(["--dir", dir.to_str().expect("a UTF-8 path")]);
        command
    }

    /// Starts a driver on `host` with `flags` and waits until it serves.
    fn driver(&mut self, host: usize, flags: &[String]) {
        let mut args = vec!["driver", "--udp-term-length", "64k", "--linger", "1s"];
        args.extend(flags.iter().map(String::as_str));
        let child = self
            .command(host, &args)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("tern driver starts");
        self.processes.push(child);
        self.dirs.push(self.dir(host));
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let status = self
                .command(host, &["stat"])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status()
                .expect("tern stat runs");
            if status.success() {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "the driver on host {host} never served"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Starts `tern` with `args` on `host`, its output captured.
    fn spawn(&mut self, host: usize, args: &[&str]) -> usize {
        let child = self
            .command(host, args)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("tern runs");
        self.processes.push(child);
        self.processes.len() - 1
    }

    /// Waits for process `index` (at most `limit`), killing it past that; its output.
    fn finish(&mut self, index: usize, limit: Duration) -> Output {
        let deadline = Instant::now() + limit;
        loop {
            let child = &mut self.processes[index];
            if child.try_wait().expect("waitable").is_some() {
                let child =
                    std::mem::replace(child, Command::new("true").spawn().expect("a placeholder"));
                return child.wait_with_output().expect("the output");
            }
            if Instant::now() >= deadline {
                let _ = child.kill();
                for host in 1..=self.hosts {
                    let output = self.command(host, &["stat"]).output().expect("tern stat");
                    let text = String::from_utf8_lossy(&output.stdout);
                    let lines: Vec<&str> = text
                        .lines()
                        .filter(|line| !line.contains(" 0 - ") && !line.contains("duty cycle"))
                        .collect();
                    eprintln!("host {host}:\n{}", lines.join("\n"));
                }
                let child = &mut self.processes[index];
                let output =
                    std::mem::replace(child, Command::new("true").spawn().expect("a placeholder"))
                        .wait_with_output()
                        .expect("the output");
                panic!(
                    "process {index} ran past {limit:?}: {}{}",
                    String::from_utf8_lossy(&output.stdout),
                    String::from_utf8_lossy(&output.stderr)
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// The value of the system counter labelled `label` in host `host`'s driver.
    fn counter(&self, host: usize, label: &str) -> i64 {
        let output = self.command(host, &["stat"]).output().expect("tern stat");
        let text = String::from_utf8_lossy(&output.stdout);
        text.lines()
            .find_map(|line| {
                let (value, name) = line.split_once(" - ")?;
                (name.trim() == label).then(|| value.rsplit(':').next()?.trim().parse().ok())?
            })
            .unwrap_or_else(|| panic!("no counter {label:?} in {text}"))
    }
}

impl Drop for Network {
    fn drop(&mut self) {
        for child in &mut self.processes {
            // SIGTERM first: a driver removes its files when it stops.
            // SAFETY: kill with our own child's pid and a standard signal.
            unsafe { libc::kill(i32::try_from(child.id()).unwrap_or(0), libc::SIGTERM) };
        }
        for child in &mut self.processes {
            let deadline = Instant::now() + Duration::from_secs(5);
            while child.try_wait().ok().flatten().is_none() && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(20));
            }
            let _ = child.kill();
            let _ = child.wait();
        }
        for host in 1..=self.hosts {
            let _ = Command::new("ip")
                .args(["netns", "del", &self.host(host)])
                .status();
        }
        let _ = Command::new("ip")
            .args(["netns", "del", &self.switch()])
            .status();
        for dir in &self.dirs {
            let _ = std::fs::remove_dir_all(dir);
        }
    }
}

fn ip(host: usize) -> String {
    format!("10.77.0.{host}")
}

/// The driver flag for loss at `rate` with 5 % duplicates and 5 % reordering; none at 0.
fn loss_flags(flag: &'static str, rate: f64, seed: u64) -> Vec<String> {
    if rate == 0.0 {
        return Vec::new();
    }
    vec![
        flag.to_owned(),
        format!("drop={rate},duplicate=0.05,reorder=0.05,seed={seed}"),
    ]
}

/// Publishes `count` generated messages from host 1 on `channel(1)` and checks that each of
/// `subscribers` receives them all, exactly once and in order, on `channel(host)`.
fn exchange(
    network: &mut Network,
    subscribers: &[usize],
    channel: impl Fn(usize) -> String,
    count: u64,
) {
    let arguments = |host| vec!["--channel".to_owned(), channel(host)];
    exchange_with(network, subscribers, arguments, &arguments(1), count);
}

/// [`exchange`] with each side's channel arguments (`--channel`, `--destination`) given.
fn exchange_with(
    network: &mut Network,
    subscribers: &[usize],
    subscriber_arguments: impl Fn(usize) -> Vec<String>,
    publisher_arguments: &[String],
    count: u64,
) {
    let count_text = count.to_string();
    let readers: Vec<usize> = subscribers
        .iter()
        .map(|&host| {
            let mut args = vec!["sub", "--stream", "7", "--count", &count_text, "--verify"];
            args.push("--quiet");
            let channel = subscriber_arguments(host);
            args.extend(channel.iter().map(String::as_str));
            network.spawn(host, &args)
        })
        .collect();
    // The subscriptions exist before the publication connects (or it would wait for them).
    std::thread::sleep(Duration::from_millis(300));
    let mut args = vec![
        "pub",
        "--stream",
        "7",
        "--count",
        &count_text,
        "--size",
        "200",
    ];
    args.extend(["--timeout-ms", "60000"]);
    args.extend(publisher_arguments.iter().map(String::as_str));
    let writer = network.spawn(1, &args);
    for (reader, host) in readers.into_iter().zip(subscribers) {
        let output = network.finish(reader, Duration::from_secs(120));
        let printed = String::from_utf8_lossy(&output.stdout);
        assert!(
            output.status.success() && printed.trim() == format!("{count} messages, in order"),
            "host {host}: {printed}{}",
            String::from_utf8_lossy(&output.stderr)
        );
    }
    let output = network.finish(writer, Duration::from_secs(60));
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
}

fn unicast(host: usize) -> impl Fn(usize) -> String {
    move |_| format!("tern:udp?endpoint={}:40456", ip(host))
}

fn multicast(_: usize) -> impl Fn(usize) -> String {
    |host| {
        format!(
            "tern:udp?endpoint=239.77.0.1:40457|interface={}|ttl=1|fc=min,g:/3",
            ip(host)
        )
    }
}

fn unicast_under_loss(tag: &str, rate: f64, count: u64) {
    let Some(mut network) = Network::new(tag, 2) else {
        return;
    };
    network.driver(1, &loss_flags("--sender-loss", rate, 1));
    network.driver(2, &loss_flags("--receiver-loss", rate, 2));
    exchange(&mut network, &[2], unicast(2), count);
    if rate > 0.0 {
        assert!(network.counter(2, "naks sent") > 0);
        assert!(network.counter(1, "retransmits") > 0);
        let output = network.command(2, &["loss"]).output().expect("tern loss");
        let report = String::from_utf8_lossy(&output.stdout);
        assert!(output.status.success(), "{report}");
        assert!(
            report.contains("1 streams with loss")
                && report.contains(&format!("tern:udp?endpoint={}:40456  {}:", ip(2), ip(1))),
            "{report}"
        );
    }
}

fn multicast_under_loss(tag: &str, rate: f64, count: u64) {
    let Some(mut network) = Network::new(tag, 4) else {
        return;
    };
    network.driver(1, &loss_flags("--sender-loss", rate, 1));
    for host in 2..=4 {
        let seed = u64::try_from(host).unwrap();
        network.driver(host, &loss_flags("--receiver-loss", rate, seed));
    }
    exchange(&mut network, &[2, 3, 4], multicast(0), count);
    for host in 2..=4 {
        assert_eq!(network.counter(host, "images created"), 1, "host {host}");
        if rate > 0.0 {
            assert!(network.counter(host, "naks sent") > 0, "host {host}");
        }
    }
}

/// Host 1 sends one stream to two ports of host 2 (manual multi-destination cast, `tern pub
/// --destination`); host 2 receives both into one image (a multi-destination subscription,
/// `tern sub --destination`, its driver on io_uring), under 10 % loss at each end.
#[test]
fn a_multi_destination_subscription_merges_two_paths_from_another_host() {
    let Some(mut network) = Network::new("mds", 2) else {
        return;
    };
    // Drops only (no generated duplicates), so that duplicates say what the second path
    // brought: with both paths up nine frames in ten arrive twice.
    let drops = |flag: &str, seed: u64| vec![flag.to_owned(), format!("drop=0.1,seed={seed}")];
    network.driver(1, &drops("--sender-loss", 1));
    // The receiving driver on io_uring where the kernel allows it (required in CI).
    let mut receiving = drops("--receiver-loss", 2);
    match tern_engine::udp_ring::probe(false) {
        Ok(()) => receiving.extend(["--udp-io".to_owned(), "io_uring".to_owned()]),
        Err(error) => assert!(
            std::env::var_os("TERN_REQUIRE_IO_URING").is_none(),
            "io_uring is required here: {error}"
        ),
    }
    network.driver(2, &receiving);
    let destinations: Vec<String> = [40461, 40462]
        .iter()
        .flat_map(|port| {
            [
                "--destination".to_owned(),
                format!("tern:udp?endpoint={}:{port}", ip(2)),
            ]
        })
        .collect();
    let subscriber = |_| {
        let mut args = vec![
            "--channel".to_owned(),
            "tern:udp?control-mode=manual".to_owned(),
        ];
        args.extend(destinations.iter().cloned());
        args
    };
    let mut publisher = vec![
        "--channel".to_owned(),
        format!("tern:udp?control={}:40460|control-mode=manual", ip(1)),
    ];
    publisher.extend(destinations.iter().cloned());
    exchange_with(&mut network, &[2], subscriber, &publisher, 20_000);
    assert_eq!(network.counter(2, "images created"), 1);
    let duplicates = network.counter(2, "duplicate frames");
    assert!(duplicates > 5_000, "both paths delivered: {duplicates}");
}

#[test]
fn two_hosts_exchange_a_unicast_stream() {
    unicast_under_loss("u0", 0.0, 20_000);
}

#[test]
fn unicast_survives_one_percent_loss() {
    unicast_under_loss("u1", 0.01, 20_000);
}

#[test]
fn unicast_survives_ten_percent_loss() {
    unicast_under_loss("u10", 0.10, 5_000);
}

#[test]
fn unicast_survives_thirty_percent_loss() {
    unicast_under_loss("u30", 0.30, 1_000);
}

#[test]
fn multicast_reaches_three_hosts() {
    multicast_under_loss("m0", 0.0, 20_000);
}

#[test]
fn multicast_to_three_hosts_survives_one_percent_loss() {
    multicast_under_loss("m1", 0.01, 20_000);
}

#[test]
fn multicast_to_three_hosts_survives_ten_percent_loss() {
    multicast_under_loss("m10", 0.10, 5_000);
}

#[test]
fn multicast_to_three_hosts_survives_thirty_percent_loss() {
    multicast_under_loss("m30", 0.30, 1_000);
}

/// Waits (at most `limit`) until `done`.
fn eventually(what: &str, limit: Duration, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + limit;
    while !done() {
        assert!(Instant::now() < deadline, "{what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn a_link_cut_for_less_than_the_liveness_timeout_loses_nothing() {
    let Some(mut network) = Network::new("cut", 2) else {
        return;
    };
    network.driver(1, &[]);
    network.driver(2, &[]);
    let channel = format!("tern:udp?endpoint={}:40458", ip(2));
    let reader = network.spawn(
        2,
        &[
            "sub",
            "--channel",
            &channel,
            "--stream",
            "7",
            "--count",
            "6000",
            "--verify",
            "--quiet",
        ],
    );
    std::thread::sleep(Duration::from_millis(300));
    let writer = network.spawn(
        1,
        &[
            "pub",
            "--channel",
            &channel,
            "--stream",
            "7",
            "--count",
            "6000",
            "--rate",
            "2000",
            "--size",
            "200",
            "--timeout-ms",
            "60000",
        ],
    );
    eventually("the stream flows", Duration::from_secs(20), || {
        network.counter(2, "bytes received") > 100_000
    });
    network.set_link(2, false);
    std::thread::sleep(Duration::from_secs(1));
    network.set_link(2, true);
    let output = network.finish(reader, Duration::from_secs(60));
    let printed = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success() && printed.trim() == "6000 messages, in order",
        "{printed}{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(
        network
            .finish(writer, Duration::from_secs(60))
            .status
            .success()
    );
    assert_eq!(
        network.counter(2, "images created"),
        1,
        "the image outlived the cut"
    );
    assert!(
        network.counter(2, "naks sent") > 0,
        "what the cut lost was asked for"
    );
}

#[test]
fn a_link_cut_past_the_liveness_timeout_ends_the_image_and_the_stream_resumes_after() {
    let Some(mut network) = Network::new("outage", 2) else {
        return;
    };
    network.driver(1, &[]);
    network.driver(2, &["--image-liveness-timeout".to_owned(), "1s".to_owned()]);
    let channel = format!("tern:udp?endpoint={}:40459", ip(2));
    network.spawn(
        2,
        &["sub", "--channel", &channel, "--stream", "7", "--quiet"],
    );
    std::thread::sleep(Duration::from_millis(300));
    network.spawn(
        1,
        &[
            "pub",
            "--channel",
            &channel,
            "--stream",
            "7",
            "--count",
            "1000000",
            "--rate",
            "1000",
            "--size",
            "200",
            "--timeout-ms",
            "60000",
        ],
    );
    eventually("the stream flows", Duration::from_secs(20), || {
        network.counter(2, "bytes received") > 20_000
    });
    network.set_link(2, false);
    let cut = Instant::now();
    eventually(
        "the image goes after its liveness timeout",
        Duration::from_secs(5),
        || network.counter(2, "images gone") == 1,
    );
    assert!(
        cut.elapsed() >= Duration::from_millis(900),
        "gone after {:?}, before its timeout",
        cut.elapsed()
    );
    let before = network.counter(2, "bytes received");
    network.set_link(2, true);
    eventually(
        "a new image resumes the stream",
        Duration::from_secs(20),
        || {
            network.counter(2, "images created") == 2
                && network.counter(2, "bytes received") > before + 20_000
        },
    );
}

/// `tern` with `args` on `host`, run to completion (killed past two minutes); its stdout, read
/// while it runs (a replay prints more than a pipe holds).
fn archive_on(network: &mut Network, host: usize, args: &[&str]) -> String {
    use std::io::Read;
    let mut child = network
        .command(host, args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("tern runs");
    let mut stdout = child.stdout.take().expect("piped");
    let reader = std::thread::spawn(move || {
        let mut bytes = Vec::new();
        let _ = stdout.read_to_end(&mut bytes);
        bytes
    });
    let deadline = Instant::now() + Duration::from_secs(120);
    while child.try_wait().expect("waitable").is_none() {
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("host {host}: tern {args:?} ran past two minutes");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let status = child.wait().expect("waitable");
    let stdout = reader.join().expect("the reader");
    let mut stderr = String::new();
    if let Some(mut pipe) = child.stderr.take() {
        let _ = pipe.read_to_string(&mut stderr);
    }
    assert!(
        status.success(),
        "host {host}: tern {args:?}: {}{stderr}",
        String::from_utf8_lossy(&stdout)
    );
    String::from_utf8_lossy(&stdout).into_owned()
}

#[test]
fn an_archive_on_another_host_replicates_a_recording_over_a_lossy_link() {
    let Some(mut network) = Network::new("archive", 2) else {
        return;
    };
    let archive_dir =
        |host: usize| std::env::temp_dir().join(format!("{}-archive-h{host}", network.prefix));
    let (source_archive, copy_archive) = (archive_dir(1), archive_dir(2));
    let control = format!("tern:udp?endpoint={}:8010", ip(1));
    let response = format!("tern:udp?endpoint={}:8020", ip(2));
    let replication = format!("tern:udp?endpoint={}:8030", ip(2));
    network.driver(
        1,
        &[
            "--archive-dir".to_owned(),
            source_archive.display().to_string(),
            "--control-channel".to_owned(),
            control.clone(),
            "--segment-length".to_owned(),
            "64k".to_owned(),
        ],
    );
    let mut flags = vec![
        "--archive-dir".to_owned(),
        copy_archive.display().to_string(),
        "--replication-response-channel".to_owned(),
        response,
        "--segment-length".to_owned(),
        "64k".to_owned(),
    ];
    flags.extend(loss_flags("--receiver-loss", 0.05, 11));
    network.driver(2, &flags);
    network
        .dirs
        .extend([source_archive.clone(), copy_archive.clone()]);
    archive_on(
        &mut network,
        1,
        &[
            "archive",
            "record",
            "tern:ipc",
            "--stream",
            "9",
            "--control-channel",
            &control,
        ],
    );
    archive_on(
        &mut network,
        1,
        &["pub", "--stream", "9", "--count", "3000", "--size", "300"],
    );
    eventually(
        "the recording to stop with its publication",
        Duration::from_secs(30),
        || {
            let listed = Command::new(TERN)
                .args(["archive", "list", "--archive-dir"])
                .arg(&source_archive)
                .output()
                .expect("tern archive list");
            let text = String::from_utf8_lossy(&listed.stdout);
            text.lines().count() == 2 && !text.contains("recording ")
        },
    );
    let copied = archive_on(
        &mut network,
        2,
        &[
            "archive",
            "replicate",
            "0",
            "--source-control-channel",
            &control,
            "--replication-channel",
            &replication,
        ],
    );
    assert!(copied.contains("copied as recording 0"), "{copied}");
    let original = archive_on(
        &mut network,
        1,
        &["archive", "replay", "0", "--control-channel", &control],
    );
    let copy = archive_on(&mut network, 2, &["archive", "replay", "0"]);
    // 3000 generated messages of 300 bytes, each printed on its own line (bytes that are not
    // UTF-8 print wider).
    assert!(
        original.len() >= 3000 * 301,
        "{} bytes replayed",
        original.len()
    );
    assert_eq!(copy, original, "the copy replays as the original does");
    // The copy was checked frame by frame as it was written and still checks.
    let verified = Command::new(TERN)
        .args(["archive", "verify", "--archive-dir"])
        .arg(&copy_archive)
        .output()
        .expect("tern archive verify");
    assert!(String::from_utf8_lossy(&verified.stdout).contains("recording 0: valid"));
}

/// `tern` on `host` with exactly `args` (no driver directory added).
fn tern_on(network: &Network, host: usize, args: &[&str]) -> Command {
    let mut command = Command::new("ip");
    command
        .args(["netns", "exec", &network.host(host), TERN])
        .args(args);
    command
}

#[test]
fn a_cluster_across_three_hosts_elects_on_the_majority_side_when_the_leaders_link_is_cut() {
    let Some(mut network) = Network::new("cluster", 3) else {
        return;
    };
    let members = format!("0={}:9000,1={}:9000,2={}:9000", ip(1), ip(2), ip(3));
    let dirs: Vec<PathBuf> = (1..=3).map(|host| network.dir(host)).collect();
    let member_dir = |member: u32| dirs[usize::try_from(member).unwrap()].clone();
    for member in 0..3u32 {
        let host = usize::try_from(member).unwrap() + 1;
        let dir = network.dir(host);
        let driver_dir = format!("{}-driver", dir.display());
        let child = tern_on(
            &network,
            host,
            &[
                "cluster",
                "node",
                "--id",
                &member.to_string(),
                "--members",
                &members,
                "--dir",
                dir.to_str().unwrap(),
                "--driver-dir",
                &driver_dir,
            ],
        )
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("a member starts");
        network.processes.push(child);
        network.dirs.push(dir);
        network.dirs.push(PathBuf::from(driver_dir));
    }
    let status = |member: u32| {
        tern_cluster::node::counters::member_status(&member_dir(member), None)
            .map(|(_, status)| status)
    };
    let leader_among = |candidates: &[u32]| {
        let statuses: Vec<_> = candidates
            .iter()
            .filter_map(|&member| status(member).map(|status| (member, status)))
            .collect();
        let term = statuses.iter().map(|(_, status)| status.term).max()?;
        statuses
            .iter()
            .find(|(_, status)| status.role == 4 && status.term == term)
            .map(|(member, status)| (*member, status.term))
    };
    let add = |host: usize, count: &str| {
        let output = tern_on(
            &network,
            host,
            &[
                "cluster",
                "client",
                "--members",
                &members,
                "add",
                "5",
                "1",
                "--count",
                count,
            ],
        )
        .output()
        .expect("the client runs");
        assert!(
            output.status.success(),
            "client on host {host}: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        String::from_utf8_lossy(&output.stdout).into_owned()
    };
    let mut leader = None;
    eventually("a leader", Duration::from_secs(20), || {
        leader = leader_among(&[0, 1, 2]);
        leader.is_some()
    });
    let (old, term) = leader.unwrap();
    assert!(add(1, "20").starts_with("20 acknowledged"));
    // Cut the leader's link: the two others elect one of themselves, in a later term.
    let old_host = usize::try_from(old).unwrap() + 1;
    network.set_link(old_host, false);
    let cut = Instant::now();
    let others: Vec<u32> = (0..3).filter(|&member| member != old).collect();
    let mut new_leader = None;
    eventually(
        "a leader on the majority side",
        Duration::from_secs(10),
        || {
            new_leader = leader_among(&others).filter(|&(_, new_term)| new_term > term);
            new_leader.is_some()
        },
    );
    let elected_after = cut.elapsed();
    // Silence for the leader timeout (400 ms), then a canvass and a ballot (200 ms each at
    // most): well under three seconds even on a busy machine.
    assert!(
        elected_after < Duration::from_secs(3),
        "elected {elected_after:?} after the cut"
    );
    // The old leader, cut off from a quorum, steps down after its leader timeout.
    eventually("the old leader steps down", Duration::from_secs(10), || {
        status(old).is_some_and(|status| status.role != 4)
    });
    // Clients on the majority side carry on.
    let majority_host = usize::try_from(others[0]).unwrap() + 1;
    assert!(add(majority_host, "20").starts_with("20 acknowledged"));
    network.set_link(old_host, true);
    // All converge: the old leader follows the new term and applies what it missed.
    eventually("every member converges", Duration::from_secs(20), || {
        let statuses: Vec<_> = (0..3).filter_map(status).collect();
        statuses.len() == 3
            && statuses.iter().all(|status| {
                status.applied_position == statuses[0].applied_position
                    && status.state_digest == statuses[0].state_digest
                    && status.term == statuses[0].term
            })
            && statuses.iter().filter(|status| status.role == 4).count() == 1
    });
    assert!(add(old_host, "1").starts_with("1 acknowledged, 5 = 41"));
    eprintln!(
        "new leader {} elected {:.0} ms after the cut (leader timeout 400 ms, election timeout 200 ms)",
        new_leader.unwrap().0,
        elected_after.as_secs_f64() * 1000.0
    );
}
