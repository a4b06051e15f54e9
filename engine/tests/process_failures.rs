//! Processes that die: a publisher killed with SIGKILL in the middle of a claim. The driver
//! unblocks the log after its timeout, cleans up the dead client, and every other publisher and
//! subscriber carries on. This test binary runs itself again as the doomed publisher.
#![cfg(all(not(loom), unix))]

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use tern_engine::client::{ClientConfig, OfferResult, Tern};
use tern_engine::cnc::CncFile;
use tern_engine::concurrent::counters::CountersReader;
use tern_engine::driver::{DriverConfig, MediaDriver};

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
    let dir = std::env::temp_dir().join(format!("tern-test-sigkill-{}", std::process::id()));
    let mut config = DriverConfig {
        dir: dir.clone(),
        ..DriverConfig::default()
    };
    config.ipc_term_length = 64 * 1024;
    config.publication_unblock_timeout = Duration::from_millis(300);
    config.client_liveness_timeout = Duration::from_millis(500);
    let driver = MediaDriver::launch(config).unwrap();
    let tern = Tern::connect(ClientConfig {
        dir: dir.clone(),
        keepalive_interval: Duration::from_millis(50),
        ..ClientConfig::default()
    })
    .unwrap();
    let mut subscription = tern.add_subscription("tern:ipc", 40).unwrap();
    let survivor = tern.add_publication("tern:ipc", 40).unwrap();

    let mut child = Command::new(std::env::current_exe().unwrap())
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
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let claimed = lines.any(|line| line.is_ok_and(|line| line.contains("claimed")));
    assert!(claimed, "the doomed publisher never claimed");
    child.kill().unwrap();
    child.wait().unwrap();

    // The survivor's messages land behind the dead claim; they arrive once the driver pads it.
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut sent = 0u32;
    let mut received = Vec::new();
    while received.len() < 100 {
        if sent < 100 {
            match survivor.offer(&sent.to_le_bytes()) {
                OfferResult::Ok(_) => sent += 1,
                OfferResult::BackPressured | OfferResult::AdminAction => {}
                other => panic!("{other:?}"),
            }
        }
        subscription.poll(
            |body, _| received.push(u32::from_le_bytes(body.try_into().unwrap())),
            100,
        );
        assert!(
            Instant::now() < deadline,
            "still blocked after {} messages",
            received.len()
        );
        std::thread::sleep(Duration::from_micros(100));
    }
    assert_eq!(received, (0..100).collect::<Vec<_>>());
    assert!(counter_value(&dir, "unblocked publications") >= 1);
    // The dead client is closed by its liveness timeout.
    while counter_value(&dir, "client timeouts") < 1 {
        assert!(
            Instant::now() < deadline,
            "the dead client was never timed out"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    drop(driver);
}
