//! Processes that die: a publisher killed with SIGKILL in the middle of a claim. The driver
//! unblocks the log after its timeout (and not before), cleans up the dead client, and every
//! other publisher and subscriber carries on. This test binary runs itself again as the doomed
//! publisher; the driver's time is stepped on a manual clock.
#![cfg(all(not(loom), unix))]

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

mod support;

use support::Stepped;
use tern_engine::client::{ClientConfig, OfferResult, Tern};
use tern_engine::cnc::CncFile;
use tern_engine::concurrent::counters::CountersReader;

const ROLE: &str = "TERN_PROCESS_FAILURE_ROLE";
const DIR: &str = "TERN_PROCESS_FAILURE_DIR";

/// The doomed publisher: claims space, says so, and waits to be killed.
#[test]
fn doomed_publisher() {
    if std::env::var(ROLE).as_deref() != Ok("doomed") {
        return;
    }
    let dir = PathBuf::from(std::env::var(DIR).unwrap());
    let tern = Tern::connect(ClientConfig {
        dir,
        ..ClientConfig::default()
    })
    .unwrap();
    let publication = tern.add_publication("tern:ipc", 40).unwrap();
    publication.wait_connected(Duration::from_secs(10)).unwrap();
    let claim = publication.try_claim(100).unwrap();
    println!("claimed");
    std::thread::sleep(Duration::from_secs(60));
    drop(claim);
}

fn counter_value(dir: &std::path::Path, label: &str) -> i64 {
    let cnc = CncFile::open(dir).unwrap();
    let sections = cnc.sections();
    let reader = CountersReader::new(sections.counters_metadata, sections.counters_values).unwrap();
    let mut value = 0;
    reader.for_each(|info| {
        if info.label == label {
            value = info.value;
        }
    });
    value
}

#[test]
fn a_publisher_killed_mid_claim_does_not_stop_the_others() {
    // The driver runs in this process, stepped on a manual clock; the doomed publisher is a
    // real process on the real clock, which only needs the driver's heartbeat to look fresh
    // while it starts (the manual clock starts at the real time).
    let mut stepped = Stepped::new("sigkill", |config| {
        config.publication_unblock_timeout = Duration::from_secs(15);
        config.client_liveness_timeout = Duration::from_secs(10);
    });
    let dir = stepped.driver.dir().to_path_buf();
    let tern = stepped.client(|_| {});
    let mut subscription = stepped.add_subscription(&tern, "tern:ipc", 40);
    let survivor = stepped.add_publication(&tern, "tern:ipc", 40);

    let mut child = KillOnDrop(
        Command::new(std::env::current_exe().unwrap())
            .args([
                "--exact",
                "doomed_publisher",
                "--nocapture",
                "--test-threads",
                "1",
            ])
            .env(ROLE, "doomed")
            .env(DIR, &dir)
            .stdout(Stdio::piped())
            .spawn()
            .unwrap(),
    );
    let stdout = child.0.stdout.take().unwrap();
    let (claimed_tx, claimed) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let claimed = BufReader::new(stdout)
            .lines()
            .any(|line| line.is_ok_and(|line| line.contains("claimed")));
        let _ = claimed_tx.send(claimed);
    });
    // Serve the doomed publisher's commands (in real time: it waits on its own clock) until it
    // has claimed, then kill it mid-claim.
    let started = Instant::now();
    let mut followed = Instant::now();
    let claimed = loop {
        // The child checks the driver's heartbeat against its real clock: the manual clock
        // follows real time until the child has claimed, however slowly it starts.
        let now = Instant::now();
        stepped.clock.advance(now - followed);
        followed = now;
        stepped.step(&[&tern]);
        if let Ok(claimed) = claimed.try_recv() {
            break claimed;
        }
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "the doomed publisher never claimed"
        );
        std::thread::yield_now();
    };
    assert!(claimed, "the doomed publisher exited without claiming");
    child.0.kill().unwrap();
    child.0.wait().unwrap();

    // The survivor's messages land behind the dead claim. They stay there until the unblock
    // timeout, and arrive once the driver pads the claim.
    let mut sent = 0u32;
    let mut received = Vec::new();
    for step in 0..160 {
        if step == 140 {
            // 14 s: all sent, nothing delivered past the unpublished claim yet.
            assert_eq!(sent, 100);
            assert_eq!(received.len(), 0, "delivered past an unpublished claim");
        }
        stepped.clock.advance(Duration::from_millis(100));
        if sent < 100
            && let OfferResult::Ok(_) = survivor.offer(&sent.to_le_bytes())
        {
            sent += 1;
        }
        subscription.poll(
            |body, _| received.push(u32::from_le_bytes(body.try_into().unwrap())),
            100,
        );
        stepped.step(&[&tern]);
    }
    assert_eq!(received, (0..100).collect::<Vec<_>>());
    assert_eq!(counter_value(&dir, "unblocked publications"), 1);
    // The dead client was closed by its liveness timeout, which is shorter.
    assert_eq!(counter_value(&dir, "client timeouts"), 1);
}

/// Kills the child process if the test fails before it does.
struct KillOnDrop(std::process::Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}
