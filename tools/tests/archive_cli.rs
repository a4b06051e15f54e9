//! `tern archive` as an operator runs it: a driver with an archive in its process, a
//! recording made from the command line, then every inspection and repair command, on a
//! catalog that holds valid, invalid and deleted recordings.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

fn tern_in(args: &[&str], input: Option<&str>) -> Output {
    let mut child = Command::new(env!("CARGO_BIN_EXE_tern"))
        .args(args)
        .stdin(if input.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("tern runs");
    if let Some(input) = input {
        child
            .stdin
            .take()
            .unwrap()
            .write_all(input.as_bytes())
            .unwrap();
    }
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

fn tern(args: &[&str]) -> Output {
    tern_in(args, None)
}

fn text(output: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

fn ok(args: &[&str]) -> String {
    let output = tern(args);
    assert!(output.status.success(), "tern {args:?}: {}", text(&output));
    String::from_utf8_lossy(&output.stdout).into_owned()
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
    let dir = std::env::temp_dir().join(format!("tern-archive-cli-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    dir
}

fn start_driver_with_archive(dir: &Path, archive: &Path) -> Running {
    start_driver_with_archive_and(dir, archive, &[])
}

fn start_driver_with_archive_and(dir: &Path, archive: &Path, extra: &[&str]) -> Running {
    let child = Command::new(env!("CARGO_BIN_EXE_tern"))
        .args(["driver", "--dir"])
        .arg(dir)
        .arg("--archive-dir")
        .arg(archive)
        .args(["--segment-length", "64k", "--ipc-term-length", "64k"])
        .args(extra)
        .stderr(Stdio::piped())
        .spawn()
        .expect("driver starts");
    let deadline = Instant::now() + Duration::from_secs(10);
    while !archive.join("archive.catalog").exists() {
        assert!(
            Instant::now() < deadline,
            "the archive never created its catalog"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    Running(child)
}

fn stop(driver: &mut Running) {
    // SAFETY: kill with a valid pid of our own child and a standard signal.
    unsafe { libc::kill(i32::try_from(driver.0.id()).unwrap(), libc::SIGTERM) };
    let status = driver.0.wait().unwrap();
    assert!(
        status.success(),
        "the driver and archive stop cleanly on SIGTERM"
    );
}

#[test]
fn record_list_replay_then_inspect_and_repair_from_the_command_line() {
    let dir = scratch("driver");
    let archive = scratch("archive");
    let driver_dir = dir.to_str().unwrap();
    let archive_dir = archive.to_str().unwrap();
    let mut driver = start_driver_with_archive(&dir, &archive);

    ok(&[
        "archive", "record", "tern:ipc", "--stream", "4100", "--dir", driver_dir,
    ]);
    let lines: String = (0..3000)
        .map(|index| format!("message {index} of the recorded stream\n"))
        .collect();
    let published = tern_in(
        &["pub", "--dir", driver_dir, "--stream", "4100"],
        Some(&lines),
    );
    assert!(published.status.success(), "{}", text(&published));
    // The publication closed: its recording stops by itself.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let listed = ok(&["archive", "list", "--archive-dir", archive_dir]);
        if !listed.contains("recording") || Instant::now() > deadline {
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    ok(&[
        "archive", "record", "tern:ipc", "--stream", "4101", "--dir", driver_dir,
    ]);
    let published = tern_in(
        &["pub", "--dir", driver_dir, "--stream", "4101"],
        Some("one\ntwo\nthree\n"),
    );
    assert!(published.status.success(), "{}", text(&published));

    // While a recording runs, `tern stat` shows its position counter.
    ok(&[
        "archive", "record", "tern:ipc", "--stream", "4102", "--dir", driver_dir,
    ]);
    let mut open_publisher = Command::new(env!("CARGO_BIN_EXE_tern"))
        .args(["pub", "--dir", driver_dir, "--stream", "4102"])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("tern pub runs");
    let mut stdin = open_publisher.stdin.take().unwrap();
    stdin.write_all(b"one line, still open\n").unwrap();
    stdin.flush().unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let stat = ok(&["stat", "--dir", driver_dir]);
        if let Some(line) = stat.lines().find(|line| line.contains("rec-pos: 2 ")) {
            assert!(line.contains("4102 tern:ipc"), "{line}");
            if !line.contains(" 0 - ") {
                break;
            }
        }
        assert!(
            Instant::now() < deadline,
            "no recording position in tern stat: {stat}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    drop(stdin);
    assert!(open_publisher.wait().unwrap().success());

    let listed = ok(&["archive", "list", "--archive-dir", archive_dir]);
    let rows: Vec<&str> = listed.lines().collect();
    assert!(
        rows[0].starts_with("id") && rows[0].contains("channel"),
        "{listed}"
    );
    assert!(
        rows[1].contains("4100") && rows[1].contains("valid") && rows[1].contains("KiB"),
        "{listed}"
    );
    // Aligned: every row puts the channel at the same column.
    let column = rows[0].find("channel").unwrap();
    assert!(
        rows[1..]
            .iter()
            .all(|row| row.find("tern:ipc") == Some(column)),
        "{listed}"
    );

    let replayed = ok(&["archive", "replay", "0", "--dir", driver_dir]);
    assert_eq!(replayed, lines);
    let dumped = ok(&[
        "archive",
        "dump",
        "0",
        "--count",
        "2",
        "--archive-dir",
        archive_dir,
    ]);
    assert_eq!(dumped.lines().count(), 2, "{dumped}");
    assert!(
        dumped
            .lines()
            .all(|line| line.contains("DATA") && line.contains("stream=4100")),
        "{dumped}"
    );
    let verified = ok(&["archive", "verify", "--archive-dir", archive_dir]);
    assert!(
        verified.contains("recording 0: valid (")
            && verified.contains("recording 1: valid (3 frames"),
        "{verified}"
    );
    // Changing the catalog needs the archive stopped.
    let refused = tern(&["archive", "mark-invalid", "1", "--archive-dir", archive_dir]);
    assert!(
        !refused.status.success() && text(&refused).contains("stop the archive"),
        "{}",
        text(&refused)
    );
    stop(&mut driver);

    // A flipped byte in the middle of recording 0: verify names it and marks it invalid.
    let segment = archive.join("0-65536.rec");
    let mut bytes = std::fs::read(&segment).unwrap();
    // Frames here are 96 bytes: this byte is in the payload of the frame at 65536 + 4992.
    bytes[4096 + 5040] ^= 0x40;
    std::fs::write(&segment, &bytes).unwrap();
    let verified = tern(&["archive", "verify", "--archive-dir", archive_dir]);
    assert!(!verified.status.success());
    let report = text(&verified);
    assert!(
        report.contains("recording 0: INVALID at position 70528") && report.contains("checksum"),
        "{report}"
    );
    assert!(report.contains("recording 1: valid"), "{report}");
    assert!(
        ok(&["archive", "list", "--archive-dir", archive_dir])
            .lines()
            .nth(1)
            .unwrap()
            .contains("invalid")
    );
    ok(&["archive", "mark-valid", "0", "--archive-dir", archive_dir]);
    ok(&["archive", "mark-invalid", "0", "--archive-dir", archive_dir]);

    // Truncate recording 1 to its first message, purge recording 0; every command still works.
    let first_frame = ok(&[
        "archive",
        "dump",
        "1",
        "--count",
        "1",
        "--archive-dir",
        archive_dir,
    ]);
    assert!(first_frame.contains("len=35"), "{first_frame}");
    ok(&[
        "archive",
        "truncate",
        "1",
        &(first_frame
            .split_whitespace()
            .next()
            .unwrap()
            .parse::<i64>()
            .unwrap()
            + 64)
            .to_string(),
        "--archive-dir",
        archive_dir,
    ]);
    let refused = tern(&[
        "archive",
        "truncate",
        "1",
        "40",
        "--archive-dir",
        archive_dir,
    ]);
    assert!(!refused.status.success(), "{}", text(&refused));
    ok(&["archive", "purge", "0", "--archive-dir", archive_dir]);
    assert!(!archive.join("0-0.rec").exists());
    let listed = ok(&["archive", "list", "--archive-dir", archive_dir]);
    assert!(
        listed.lines().nth(1).unwrap().contains("deleted"),
        "{listed}"
    );
    assert!(ok(&["archive", "describe", "0", "--archive-dir", archive_dir]).contains("deleted"));
    assert!(
        ok(&["archive", "describe", "1", "--archive-dir", archive_dir])
            .contains("stop position    64")
    );
    assert!(
        ok(&["archive", "verify", "--archive-dir", archive_dir]).contains("recording 0: deleted")
    );
    assert!(
        ok(&["archive", "migrate", "--archive-dir", archive_dir]).contains("nothing to migrate")
    );
    let dumped = tern(&["archive", "dump", "0", "--archive-dir", archive_dir]);
    assert!(
        !dumped.status.success() && text(&dumped).contains("missing"),
        "{}",
        text(&dumped)
    );
    let _ = std::fs::remove_dir_all(&archive);
    let _ = std::fs::remove_dir_all(&dir);
}

fn free_port() -> u16 {
    std::net::UdpSocket::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

#[test]
fn replicate_between_two_archive_processes_then_replay_the_copy() {
    let (source_dir, source_archive) = (scratch("source"), scratch("source-archive"));
    let (copy_dir, copy_archive) = (scratch("copy"), scratch("copy-archive"));
    let source_control = format!("tern:udp?endpoint=127.0.0.1:{}", free_port());
    let response = format!("tern:udp?endpoint=127.0.0.1:{}", free_port());
    let replication = format!("tern:udp?endpoint=127.0.0.1:{}", free_port());
    let mut source = start_driver_with_archive_and(
        &source_dir,
        &source_archive,
        &["--control-channel", &source_control],
    );
    let mut copy = start_driver_with_archive_and(
        &copy_dir,
        &copy_archive,
        &["--replication-response-channel", &response],
    );
    let source_driver = source_dir.to_str().unwrap();
    ok(&[
        "archive",
        "record",
        "tern:ipc",
        "--stream",
        "4200",
        "--dir",
        source_driver,
        "--control-channel",
        &source_control,
    ]);
    let lines: String = (0..2000)
        .map(|index| format!("replicated line {index}\n"))
        .collect();
    let published = tern_in(
        &["pub", "--dir", source_driver, "--stream", "4200"],
        Some(&lines),
    );
    assert!(published.status.success(), "{}", text(&published));
    let deadline = Instant::now() + Duration::from_secs(10);
    while ok(&[
        "archive",
        "list",
        "--archive-dir",
        source_archive.to_str().unwrap(),
    ])
    .contains("recording")
    {
        assert!(
            Instant::now() < deadline,
            "the source recording never stopped"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    let copied = ok(&[
        "archive",
        "replicate",
        "0",
        "--dir",
        copy_dir.to_str().unwrap(),
        "--source-control-channel",
        &source_control,
        "--replication-channel",
        &replication,
    ]);
    assert!(copied.contains("copied as recording 0"), "{copied}");
    let replayed = ok(&[
        "archive",
        "replay",
        "0",
        "--dir",
        copy_dir.to_str().unwrap(),
    ]);
    assert_eq!(replayed, lines);
    let source_row = ok(&[
        "archive",
        "list",
        "--archive-dir",
        source_archive.to_str().unwrap(),
    ]);
    let copy_row = ok(&[
        "archive",
        "list",
        "--archive-dir",
        copy_archive.to_str().unwrap(),
    ]);
    let columns = |listing: &str| -> Vec<String> {
        listing
            .lines()
            .nth(1)
            .unwrap()
            .split_whitespace()
            .take(7)
            .map(str::to_owned)
            .collect()
    };
    assert_eq!(
        columns(&source_row),
        columns(&copy_row),
        "same stream, session, positions and size"
    );
    // A replication from a recording the source does not have fails with its reason.
    let missing = tern(&[
        "archive",
        "replicate",
        "9",
        "--dir",
        copy_dir.to_str().unwrap(),
        "--source-control-channel",
        &source_control,
        "--replication-channel",
        &replication,
    ]);
    assert!(
        !missing.status.success() && text(&missing).contains("no recording 9"),
        "{}",
        text(&missing)
    );
    stop(&mut copy);
    stop(&mut source);
    for dir in [source_dir, source_archive, copy_dir, copy_archive] {
        let _ = std::fs::remove_dir_all(dir);
    }
}
