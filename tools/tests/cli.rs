//! The `tern` binary, run as a user runs it: a driver, a publisher and a subscriber as three
//! processes, the inspection commands, the benchmarks, and what the codec tools print.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

/// Runs `tern` to completion; a run longer than a minute is killed and fails the test.
fn tern(args: &[&str]) -> Output {
    let child = Command::new(env!("CARGO_BIN_EXE_tern"))
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("tern runs");
    finish(child, args)
}

/// Waits for a child's output; one still running after a minute is killed and fails the test.
fn finish(child: Child, args: &[&str]) -> Output {
    let pid = child.id();
    let (sender, receiver) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = sender.send(child.wait_with_output());
    });
    match receiver.recv_timeout(Duration::from_secs(60)) {
        Ok(output) => output.expect("tern's output"),
        Err(_) => {
            // SAFETY: kill with our own child's pid and a standard signal.
            unsafe { libc::kill(i32::try_from(pid).unwrap(), libc::SIGKILL) };
            panic!("tern {args:?} ran for over a minute");
        }
    }
}

fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

/// A child process killed when the test ends, whatever happens.
struct Running(Child);

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("tern-cli-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    dir
}

fn start_driver(dir: &Path, extra: &[&str]) -> Running {
    let child = Command::new(env!("CARGO_BIN_EXE_tern"))
        .arg("driver")
        .arg("--dir")
        .arg(dir)
        .args(extra)
        .stderr(Stdio::piped())
        .spawn()
        .expect("driver starts");
    let deadline = Instant::now() + Duration::from_secs(10);
    while !dir.join("cnc.dat").exists() {
        assert!(
            Instant::now() < deadline,
            "the driver never created its CnC file"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    Running(child)
}

fn terminate(driver: &mut Running) -> std::process::ExitStatus {
    // SAFETY: kill with a valid pid of our own child and a standard signal.
    unsafe { libc::kill(i32::try_from(driver.0.id()).unwrap(), libc::SIGTERM) };
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        if let Some(status) = driver.0.try_wait().unwrap() {
            return status;
        }
        assert!(Instant::now() < deadline, "the driver ignored SIGTERM");
        std::thread::sleep(Duration::from_millis(10));
    }
}

#[test]
fn help_and_version() {
    let output = tern(&["--help"]);
    assert!(output.status.success());
    for command in [
        "driver", "stat", "errors", "pub", "sub", "bench", "decode", "position",
    ] {
        assert!(stdout(&output).contains(command), "--help lists {command}");
    }
    let output = tern(&["--version"]);
    assert_eq!(
        stdout(&output).trim(),
        format!("tern {}", env!("CARGO_PKG_VERSION"))
    );
}

#[test]
fn driver_publisher_and_subscriber_as_three_processes() {
    let dir = scratch("three");
    let mut driver = start_driver(&dir, &[]);
    let dir_text = dir.to_str().unwrap();
    let subscriber = Running(
        Command::new(env!("CARGO_BIN_EXE_tern"))
            .args(["sub", "--dir", dir_text, "--stream", "7", "--count", "3"])
            .stdout(Stdio::piped())
            .spawn()
            .unwrap(),
    );
    let mut publisher = Command::new(env!("CARGO_BIN_EXE_tern"))
        .args(["pub", "--dir", dir_text, "--stream", "7"])
        .stdin(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    publisher
        .stdin
        .take()
        .unwrap()
        .write_all(b"first\nsecond line\nthird\n")
        .unwrap();
    let published = finish(publisher, &["pub"]);
    assert!(published.status.success(), "{}", stderr(&published));
    assert!(stderr(&published).contains("published 3 messages"));
    let mut subscriber = subscriber;
    let output = finish(
        std::mem::replace(&mut subscriber.0, Command::new("true").spawn().unwrap()),
        &["sub"],
    );
    assert!(output.status.success());
    assert_eq!(stdout(&output), "first\nsecond line\nthird\n");

    let stat = tern(&["stat", "--dir", dir_text]);
    assert!(stat.status.success(), "{}", stderr(&stat));
    assert!(
        stdout(&stat).contains("commands received"),
        "{}",
        stdout(&stat)
    );
    let watched = tern(&[
        "stat",
        "--dir",
        dir_text,
        "--watch",
        "--interval-ms",
        "50",
        "--iterations",
        "2",
    ]);
    assert!(
        stdout(&watched).contains("/s)"),
        "watch prints rates: {}",
        stdout(&watched)
    );
    let errors = tern(&["errors", "--dir", dir_text]);
    assert!(stdout(&errors).contains("distinct errors"));

    assert!(terminate(&mut driver).success());
    assert!(!dir.exists(), "the driver removes its files unless --keep");
}

#[test]
fn generated_messages_and_quiet_counting() {
    let dir = scratch("generated");
    let mut driver = start_driver(&dir, &["--keep", "--ipc-term-length", "64k"]);
    let dir_text = dir.to_str().unwrap();
    let subscriber = Command::new(env!("CARGO_BIN_EXE_tern"))
        .args(["sub", "--dir", dir_text, "--count", "5000", "--quiet"])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let published = tern(&["pub", "--dir", dir_text, "--count", "5000", "--size", "100"]);
    assert!(published.status.success(), "{}", stderr(&published));
    let output = finish(subscriber, &["sub", "--quiet"]);
    assert_eq!(stdout(&output).trim(), "5000 messages");
    assert!(terminate(&mut driver).success());
    assert!(dir.join("cnc.dat").exists(), "--keep keeps the files");
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn a_second_driver_and_bad_settings_are_refused_clearly() {
    let dir = scratch("refuse");
    let mut driver = start_driver(&dir, &[]);
    let second = tern(&["driver", "--dir", dir.to_str().unwrap()]);
    assert!(!second.status.success());
    assert!(
        stderr(&second).contains("already running"),
        "{}",
        stderr(&second)
    );
    assert!(terminate(&mut driver).success());

    let bad = tern(&[
        "driver",
        "--dir",
        dir.to_str().unwrap(),
        "--ipc-term-length",
        "1000",
    ]);
    assert!(!bad.status.success());
    assert!(
        stderr(&bad).contains("--ipc-term-length"),
        "{}",
        stderr(&bad)
    );

    let config = scratch("config-file");
    std::fs::create_dir_all(&config).unwrap();
    let file = config.join("driver.toml");
    std::fs::write(&file, "linger = \"soon\"\n").unwrap();
    let bad = tern(&[
        "driver",
        "--dir",
        dir.to_str().unwrap(),
        "--config",
        file.to_str().unwrap(),
    ]);
    assert!(!bad.status.success());
    assert!(stderr(&bad).contains("linger"), "{}", stderr(&bad));
    std::fs::remove_dir_all(&config).unwrap();

    let nobody = tern(&[
        "pub",
        "--dir",
        scratch("nobody").to_str().unwrap(),
        "--timeout-ms",
        "100",
    ]);
    assert!(!nobody.status.success());
    assert!(stderr(&nobody).contains("no driver"), "{}", stderr(&nobody));
}

#[test]
fn benchmarks_print_percentiles_rates_and_probes() {
    let hgrm = scratch("hgrm");
    std::fs::create_dir_all(&hgrm).unwrap();
    let file = hgrm.join("ping.hgrm");
    let output = tern(&[
        "bench",
        "ping",
        "--count",
        "2000",
        "--warmup",
        "200",
        "--hgrm",
        file.to_str().unwrap(),
    ]);
    assert!(output.status.success(), "{}", stderr(&output));
    let distribution = std::fs::read_to_string(&file).unwrap();
    assert!(distribution.contains("Percentile") && distribution.contains("Total count"));
    std::fs::remove_dir_all(&hgrm).unwrap();
    let text = stdout(&output);
    for needle in [
        "cache-line round trip before",
        "p50",
        "p99.99",
        "max",
        "cache-line round trip after",
    ] {
        assert!(text.contains(needle), "{needle} missing from {text}");
    }
    let output = tern(&[
        "bench",
        "throughput",
        "--duration-secs",
        "0.2",
        "--warmup-secs",
        "0.1",
        "--size",
        "1024",
    ]);
    assert!(output.status.success(), "{}", stderr(&output));
    assert!(stdout(&output).contains("M msg/s"), "{}", stdout(&output));
    // Ping echoes single frames: a message that needs two is refused, not left to hang.
    let output = tern(&["bench", "ping", "--count", "10", "--size", "2000"]);
    assert!(!output.status.success());
    assert!(
        stderr(&output).contains("more than one frame carries (1376 bytes"),
        "{}",
        stderr(&output)
    );
}

#[test]
fn decodes_a_captured_datagram() {
    let data = "25000000 00c0 0100 40000000 07000000 e9030000 fbffffff 0000000000000000 68656c6c6f";
    let output = tern(&["decode", data]);
    assert!(output.status.success(), "{}", stderr(&output));
    let text = stdout(&output);
    assert!(text.contains("session_id: 7"), "{text}");
    assert!(text.contains("payload=hello"), "{text}");
    let output = tern(&["decode", "2500"]);
    assert!(
        stderr(&output).contains("frame 0 is malformed"),
        "{}",
        stderr(&output)
    );
    let output = tern(&["decode", "25000000 01c00100"]);
    assert!(
        stderr(&output).contains("frame version 1 is not supported"),
        "{}",
        stderr(&output)
    );
}

#[test]
fn position_math_both_ways() {
    let output = tern(&[
        "position",
        "--term-length",
        "65536",
        "--initial-term-id",
        "-5",
        "--position",
        "131104",
    ]);
    assert_eq!(
        stdout(&output).trim(),
        "position 131104 = term id -3 offset 32"
    );
    let output = tern(&[
        "position",
        "--term-length",
        "65536",
        "--initial-term-id",
        "-5",
        "--term-id",
        "-3",
        "--term-offset",
        "32",
    ]);
    assert_eq!(
        stdout(&output).trim(),
        "term id -3 offset 32 = position 131104"
    );
    let output = tern(&["position", "--term-length", "1000", "--position", "1"]);
    assert!(stderr(&output).contains("power of two"));
}

#[test]
fn the_cluster_simulator_summarises_replays_and_fails_loudly() {
    let output = tern(&[
        "cluster",
        "sim",
        "--members",
        "3",
        "--seeds",
        "4",
        "--threads",
        "1",
    ]);
    assert!(output.status.success(), "{}", stderr(&output));
    let summary = stdout(&output);
    for expected in [
        "seeds 4",
        "members 3",
        "simulated",
        "crash",
        "commands committed",
        "violations 0",
        "real time",
    ] {
        assert!(
            summary.contains(expected),
            "{expected:?} missing from {summary}"
        );
    }
    let replay = |extra: &[&str]| {
        let mut args = vec!["cluster", "sim", "--members", "3", "--seed", "11"];
        args.extend_from_slice(extra);
        let output = tern(&args);
        assert!(output.status.success(), "{}", stderr(&output));
        stdout(&output)
    };
    let first = replay(&[]);
    let hash = first
        .split("trace hash ")
        .nth(1)
        .and_then(|rest| rest.split_whitespace().next())
        .expect("a trace hash")
        .to_string();
    assert!(
        replay(&[]).contains(&hash),
        "the same seed gives the same hash"
    );
    let traced = replay(&["--trace"]);
    assert!(traced.contains("is Leader in term") && traced.contains(&hash));
    let refused = tern(&["cluster", "sim", "--members", "9", "--seeds", "1"]);
    assert!(!refused.status.success());
    assert!(
        stderr(&refused).contains("1 to 7 members"),
        "{}",
        stderr(&refused)
    );
}

#[test]
fn the_cluster_benchmark_prints_rates_and_percentiles() {
    let output = tern(&[
        "cluster",
        "bench",
        "--round-trips",
        "2000",
        "--commands",
        "40000",
        "--clients",
        "64",
        "--sim-seeds",
        "2",
    ]);
    assert!(output.status.success(), "{}", stderr(&output));
    let text = stdout(&output);
    for expected in [
        "one client",
        "p99.99",
        "64 clients",
        "batches of 4",
        "x real time",
    ] {
        assert!(text.contains(expected), "{expected:?} missing from {text}");
    }
}

/// The OS names of process `pid`'s threads.
fn thread_names(pid: u32) -> Vec<String> {
    std::fs::read_dir(format!("/proc/{pid}/task"))
        .map(|tasks| {
            tasks
                .flatten()
                .filter_map(|task| std::fs::read_to_string(task.path().join("comm")).ok())
                .map(|name| name.trim_end().to_owned())
                .collect()
        })
        .unwrap_or_default()
}

#[test]
fn the_driver_runs_each_threading_mode_it_is_given() {
    for (mode, threads) in [
        (
            "dedicated",
            &["driver-conducto", "driver-sender", "driver-receiver"][..],
        ),
        ("invoker", &[][..]),
    ] {
        let dir = scratch(&format!("mode-{mode}"));
        let mut driver = start_driver(&dir, &["--threading-mode", mode]);
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let names = thread_names(driver.0.id());
            if threads
                .iter()
                .all(|thread| names.iter().any(|name| name == thread))
            {
                assert!(
                    names.iter().all(
                        |name| !name.starts_with("driver-") || threads.contains(&name.as_str())
                    ),
                    "{mode}: {names:?}"
                );
                break;
            }
            assert!(Instant::now() < deadline, "{mode}: threads {names:?}");
            std::thread::sleep(Duration::from_millis(10));
        }
        // In every mode the driver serves: a publication connects, and stat shows each agent.
        let client = tern_engine::client::Tern::connect(tern_engine::client::ClientConfig {
            dir: dir.clone(),
            ..tern_engine::client::ClientConfig::default()
        })
        .unwrap();
        let publication = client.add_publication("tern:ipc", 4).unwrap();
        let _subscription = client.add_subscription("tern:ipc", 4).unwrap();
        publication.wait_connected(Duration::from_secs(10)).unwrap();
        let stat = tern(&["stat", "--dir", dir.to_str().unwrap()]);
        for agent in ["driver-conductor", "driver-sender", "driver-receiver"] {
            assert!(
                stdout(&stat).contains(&format!("{agent} duty cycle max ns")),
                "{mode}: {}",
                stdout(&stat)
            );
        }
        drop((publication, client));
        assert!(terminate(&mut driver).success(), "{mode}");
    }
}

#[test]
fn stat_says_who_holds_a_publisher_back() {
    let dir = scratch("slow");
    let mut driver = start_driver(&dir, &["--ipc-term-length", "64k"]);
    let dir_text = dir.to_str().unwrap();
    let tern_client = |dir: &Path| {
        tern_engine::client::Tern::connect(tern_engine::client::ClientConfig {
            dir: dir.to_path_buf(),
            ..tern_engine::client::ClientConfig::default()
        })
        .unwrap()
    };
    let publisher = tern_client(&dir);
    let slow = tern_client(&dir);
    let publication = publisher.add_publication("tern:ipc", 9).unwrap();
    let _slow_subscription = slow.add_subscription("tern:ipc", 9).unwrap();
    publication.wait_connected(Duration::from_secs(10)).unwrap();
    // The slow subscriber reads nothing: fill the window until the publisher is refused.
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut refused = 0;
    while refused < 100 {
        assert!(Instant::now() < deadline, "never back-pressured");
        match publication.offer(&[0u8; 100]) {
            tern_engine::client::OfferResult::BackPressured => refused += 1,
            tern_engine::client::OfferResult::Ok(_)
            | tern_engine::client::OfferResult::AdminAction => {}
            other => panic!("{other:?}"),
        }
    }
    // The driver mirrors the refusals into its counters on its next duty cycles.
    let deadline = Instant::now() + Duration::from_secs(30);
    let stat = loop {
        let stat = tern(&["stat", "--dir", dir_text]);
        assert!(stat.status.success(), "{}", stderr(&stat));
        if stdout(&stat).contains("100 back-pressured") || Instant::now() > deadline {
            break stdout(&stat);
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    assert!(stat.contains("100 back-pressured"), "{stat}");
    assert!(
        stat.contains(&format!(
            "slowest of 1 subscribers: client {}",
            slow.client_id()
        )),
        "{stat}"
    );
    assert!(
        stat.contains("(holding the publisher at its limit)"),
        "{stat}"
    );
    assert!(
        stat.contains("driver-conductor duty cycle max ns"),
        "{stat}"
    );
    drop((publication, publisher, slow));
    assert!(terminate(&mut driver).success());
}
