//! Cluster members as separate `tern cluster node` processes on loopback, under a steady load of
//! client sessions (in this process, each with its own session): the leader killed with SIGKILL
//! ten times in a row, the leader stopped with SIGSTOP past its timeout and resumed, the whole
//! cluster killed and restarted from a snapshot and the log after it, a damaged snapshot skipped
//! for the one before. After each, every acknowledged add was applied exactly once
//! (each key's value equals its session's acknowledged count) and every member applied the same
//! log to the same state digest.

mod support;

use std::time::{Duration, Instant};

use support::{Cluster, Load};

/// Kills the leader `kills` times under load, restarting it each time and waiting for it to
/// catch up; then checks every count and digest.
fn kill_the_leader_repeatedly(members: u32, kills: u32, extra: &[&str]) {
    let mut cluster = Cluster::start_with("kill", members, extra);
    let load = Load::start(&cluster, 2);
    load.wait_for_acks(50, Duration::from_secs(30));
    for round in 0..kills {
        let leader = cluster.wait_for_leader(Duration::from_secs(20));
        let before = load.total_acks();
        cluster.kill(leader, libc::SIGKILL);
        load.wait_for_acks(before + 20, Duration::from_secs(30));
        let new_leader = cluster.wait_for_leader(Duration::from_secs(20));
        assert_ne!(new_leader, leader, "round {round}: a new leader");
        cluster.restart(leader);
        cluster.wait_caught_up(leader, Duration::from_secs(30));
    }
    let acks = load.stop();
    cluster.check_counts(&acks);
    cluster.wait_for_equal_digests(Duration::from_secs(30));
}

#[test]
fn three_members_survive_ten_leader_kills_with_nothing_lost_or_applied_twice() {
    kill_the_leader_repeatedly(3, 10, &[]);
}

#[test]
fn five_members_survive_ten_leader_kills_with_nothing_lost_or_applied_twice() {
    kill_the_leader_repeatedly(5, 10, &[]);
}

#[test]
fn members_that_sync_before_acknowledging_survive_leader_kills_too() {
    kill_the_leader_repeatedly(3, 4, &["--durability", "synced"]);
}

#[test]
fn a_leader_stopped_past_its_timeout_steps_down_and_its_late_appends_never_commit() {
    let mut cluster = Cluster::start("stop", 3);
    let load = Load::start(&cluster, 2);
    load.wait_for_acks(50, Duration::from_secs(30));
    let leader = cluster.wait_for_leader(Duration::from_secs(20));
    let term = cluster.status(leader).expect("the leader runs").term;
    cluster.kill(leader, libc::SIGSTOP);
    // The others elect a leader in a later term while the old one sleeps; clients follow it.
    let started = Instant::now();
    let new_leader = loop {
        assert!(started.elapsed() < Duration::from_secs(20), "no new leader");
        if let Some(new_leader) = cluster.leader_other_than(leader)
            && cluster
                .status(new_leader)
                .is_some_and(|status| status.term > term)
        {
            break new_leader;
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let before = load.total_acks();
    load.wait_for_acks(before + 20, Duration::from_secs(30));
    cluster.kill(leader, libc::SIGCONT);
    // Resumed, it hears of the later term and follows; whatever it appended as a stale leader
    // is cut from its log, never committed: the counts below would show a command applied twice
    // or one acknowledged and lost.
    let started = Instant::now();
    loop {
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "the old leader did not step down"
        );
        if let Some(status) = cluster.status(leader)
            && status.role == 0
            && status.term > term
        {
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    assert_eq!(cluster.wait_for_leader(Duration::from_secs(20)), new_leader);
    let before = load.total_acks();
    load.wait_for_acks(before + 20, Duration::from_secs(30));
    let acks = load.stop();
    cluster.wait_caught_up(leader, Duration::from_secs(30));
    cluster.check_counts(&acks);
    cluster.wait_for_equal_digests(Duration::from_secs(30));
}

#[test]
fn the_whole_cluster_killed_and_restarted_keeps_its_state() {
    let mut cluster = Cluster::start("restart", 3);
    let load = Load::start(&cluster, 2);
    load.wait_for_acks(100, Duration::from_secs(30));
    let snapshot = cluster.snapshot();
    load.wait_for_acks(load.total_acks() + 100, Duration::from_secs(30));
    let acks = load.stop();
    let started = Instant::now();
    while (0..3).any(|member| {
        cluster
            .status(member)
            .is_none_or(|status| status.snapshots < 1)
    }) {
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "snapshot not recorded"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    for member in 0..3 {
        cluster.kill(member, libc::SIGKILL);
    }
    for member in 0..3 {
        cluster.restart(member);
    }
    cluster.wait_for_leader(Duration::from_secs(20));
    // Each member started from the snapshot and replayed the log after it.
    for member in 0..3 {
        let status = cluster.status(member).expect("running");
        assert_eq!(u64::try_from(status.recovered_from).ok(), Some(snapshot));
    }
    cluster.check_counts(&acks);
    cluster.wait_for_equal_digests(Duration::from_secs(30));
    // And it goes on taking commands.
    let load = Load::start(&cluster, 1);
    load.wait_for_acks(20, Duration::from_secs(30));
    let more = load.stop();
    cluster.check_counts(&more);
}

#[path = "../../cluster/tests/support/linearizability.rs"]
mod linearizability;

/// Clients that run random puts, adds and gets on a few shared keys and record what they saw.
fn run_history_client(
    client_index: u32,
    members: tern_cluster::node::Members,
    driver_dir: std::path::PathBuf,
    keys: [u64; 3],
    epoch: Instant,
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
) -> Vec<linearizability::Operation> {
    use linearizability::{KvOp, Operation};
    use tern_cluster::client::{ClusterClient, ClusterClientConfig};
    use tern_cluster::kv::{Command as KvCommand, decode_response};
    let tern = tern_engine::client::Tern::connect(tern_engine::client::ClientConfig {
        dir: driver_dir,
        ..tern_engine::client::ClientConfig::default()
    })
    .expect("the clients' driver");
    let mut client = ClusterClient::connect(&tern, ClusterClientConfig::new(members).unwrap())
        .expect("a client");
    let mut random = u64::from(client_index).wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    let mut next = move || {
        random ^= random << 13;
        random ^= random >> 7;
        random ^= random << 17;
        random
    };
    let mut history = Vec::new();
    while !stop.load(std::sync::atomic::Ordering::Acquire) {
        let key = keys[usize::try_from(next() % 3).unwrap()];
        let (op, command) = match next() % 10 {
            0..=3 => {
                let delta = next() % 10 + 1;
                (KvOp::Add(delta), KvCommand::Add { key, delta })
            }
            4 | 5 => {
                let value = next() % 1000;
                (KvOp::Put(value), KvCommand::Put { key, value })
            }
            _ => (KvOp::Get, KvCommand::Get { key }),
        };
        let nanos = |at: Instant| u64::try_from(at.duration_since(epoch).as_nanos()).unwrap();
        let invoked_ns = nanos(Instant::now());
        let reply = client
            .call(&command.encode(0), Duration::from_secs(60))
            .expect("an answer");
        let completed_ns = nanos(Instant::now());
        let (status, value) = decode_response(&reply.payload).expect("a KV answer");
        // Status 1 is a get of a missing key.
        let result = (status != 1).then_some(value);
        history.push(Operation {
            client: client_index,
            key,
            op,
            invoked_ns,
            completed: Some((completed_ns, result)),
        });
    }
    history
}

#[test]
fn concurrent_clients_see_a_linearizable_history_while_members_are_killed_and_paused() {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, Ordering};
    let mut cluster = Cluster::start("linearizable", 3);
    let keys = [10_001, 10_002, 10_003];
    let epoch = Instant::now();
    let stop = Arc::new(AtomicBool::new(false));
    let clients: Vec<_> = (0..4)
        .map(|index| {
            let members = cluster.members.clone();
            let dir = cluster.client_driver_dir();
            let stop = Arc::clone(&stop);
            std::thread::spawn(move || run_history_client(index, members, dir, keys, epoch, stop))
        })
        .collect();
    std::thread::sleep(Duration::from_millis(300));
    for round in 0..3 {
        // The leader killed and restarted.
        let leader = cluster.wait_for_leader(Duration::from_secs(20));
        cluster.kill(leader, libc::SIGKILL);
        std::thread::sleep(Duration::from_millis(700));
        cluster.restart(leader);
        // A member (the leader on odd rounds) paused past its timeouts, then resumed.
        let leader = cluster.wait_for_leader(Duration::from_secs(20));
        let paused = if round % 2 == 1 {
            leader
        } else {
            (leader + 1) % 3
        };
        cluster.kill(paused, libc::SIGSTOP);
        std::thread::sleep(Duration::from_millis(800));
        cluster.kill(paused, libc::SIGCONT);
        std::thread::sleep(Duration::from_millis(300));
    }
    stop.store(true, Ordering::Release);
    let history: Vec<_> = clients
        .into_iter()
        .flat_map(|client| client.join().expect("no client panicked"))
        .collect();
    assert!(history.len() > 100, "only {} operations", history.len());
    match linearizability::check(&history) {
        linearizability::Verdict::Linearizable => {}
        verdict => panic!("{} operations: {verdict:?}", history.len()),
    }
    cluster.wait_for_equal_digests(Duration::from_secs(30));
    eprintln!("{} operations, linearizable", history.len());
}

#[test]
fn a_snapshot_corrupted_on_disk_is_skipped_for_the_one_before_and_said() {
    use tern_cluster::recording_log::{Record, RecordingLog};
    let mut cluster = Cluster::start("snapshot", 3);
    let load = Load::start(&cluster, 1);
    load.wait_for_acks(50, Duration::from_secs(30));
    let first = cluster.snapshot();
    load.wait_for_acks(load.total_acks() + 50, Duration::from_secs(30));
    let second = cluster.snapshot();
    assert!(second > first);
    load.wait_for_acks(load.total_acks() + 50, Duration::from_secs(30));
    let acks = load.stop();
    // Every member records both snapshots (the second a moment after its answer, on followers).
    let started = Instant::now();
    while (0..3).any(|member| {
        cluster
            .status(member)
            .is_none_or(|status| status.snapshots < 2)
    }) {
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "snapshots not recorded"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    for member in 0..3 {
        cluster.kill(member, libc::SIGKILL);
    }
    // Damage member 0's newest snapshot in the middle of its recording.
    let records = RecordingLog::read_records(&cluster.dir(0), 0).unwrap();
    let newest = records
        .iter()
        .rev()
        .find_map(|record| match record {
            Record::Snapshot(snapshot) => Some(*snapshot),
            _ => None,
        })
        .expect("a snapshot record");
    assert_eq!(newest.position, second);
    let path = cluster
        .dir(0)
        .join("archive")
        .join(tern_archive::segment::segment_file_name(
            newest.recording_id,
            0,
        ));
    let mut bytes = std::fs::read(&path).unwrap();
    let at = usize::try_from(tern_archive::segment::SEGMENT_HEADER_LENGTH_U64).unwrap() + 100;
    bytes[at] ^= 0xFF;
    std::fs::write(&path, bytes).unwrap();
    for member in 0..3 {
        cluster.restart(member);
    }
    cluster.wait_for_leader(Duration::from_secs(20));
    let recovered = |member| {
        cluster
            .status(member)
            .map(|status| u64::try_from(status.recovered_from).unwrap_or(0))
    };
    assert_eq!(
        recovered(0),
        Some(first),
        "member 0 fell back to the first snapshot"
    );
    assert_eq!(recovered(1), Some(second));
    assert_eq!(recovered(2), Some(second));
    assert!(
        cluster.log(0).contains("falling back to the one before"),
        "the fall-back is said: {}",
        cluster.log(0)
    );
    // And kept in its error log, which the operator reads with `tern cluster errors`.
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_tern"))
        .args(["cluster", "errors", "--dir"])
        .arg(cluster.dir(0))
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success() && text.contains("falling back to the one before"),
        "tern cluster errors: {text}"
    );
    cluster.check_counts(&acks);
    cluster.wait_for_equal_digests(Duration::from_secs(30));
    // The damaged snapshot never counts among the two kept: the next snapshot's retention
    // deletes it (and keeps the new one and the first).
    cluster.snapshot();
    let damaged_gone = || {
        tern_archive::catalog::Catalog::open_read_only(&cluster.dir(0).join("archive"))
            .unwrap()
            .descriptor(newest.recording_id)
            .unwrap()
            .state
            == tern_archive::catalog::RecordingState::Deleted
    };
    let started = Instant::now();
    while !damaged_gone() {
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "the damaged snapshot was kept"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// The log's start in member `member`'s archive (raised by purges).
fn log_start(cluster: &Cluster, member: u32) -> i64 {
    let catalog =
        tern_archive::catalog::Catalog::open_read_only(&cluster.dir(member).join("archive"))
            .unwrap();
    catalog
        .entries()
        .filter_map(Result::ok)
        .find(|descriptor| descriptor.channel == tern_cluster::member_log::LOG_CHANNEL)
        .expect("a log recording")
        .start_position
}

/// Short segments (the unit of purging) and one snapshot kept, so purges happen.
const PURGING: [&str; 6] = [
    "--term-length",
    "64k",
    "--log-segment-length",
    "128k",
    "--snapshots-retained",
    "1",
];

#[test]
fn a_member_down_while_the_others_snapshot_and_purge_still_catches_up_from_their_logs() {
    let mut cluster = Cluster::start_with("purge", 3, &PURGING);
    let load = Load::start(&cluster, 2);
    load.wait_for_acks(200, Duration::from_secs(30));
    let leader = cluster.wait_for_leader(Duration::from_secs(20));
    let down = (leader + 1) % 3;
    cluster.kill(down, libc::SIGKILL);
    // While it is down: several segments of log, snapshots, purges limited by what it had.
    for _ in 0..3 {
        load.wait_for_acks(load.total_acks() + 1500, Duration::from_secs(60));
        cluster.snapshot();
    }
    let leader_start = log_start(&cluster, leader);
    // No member purged what the one that is down lacks (the log floor), the follower that
    // took the leader's floor included.
    let down_end =
        tern_archive::catalog::Catalog::open_read_only(&cluster.dir(down).join("archive"))
            .unwrap()
            .entries()
            .filter_map(Result::ok)
            .find(|descriptor| descriptor.channel == tern_cluster::member_log::LOG_CHANNEL)
            .expect("a log recording")
            .stop_position;
    let third = 3 - leader - down;
    let floor = cluster.status(leader).expect("the leader runs").log_floor;
    assert!(
        floor <= down_end,
        "the leader's log floor {floor} stays at or below what member {down} had ({down_end})"
    );
    for member in [leader, third] {
        assert!(
            log_start(&cluster, member) <= down_end,
            "member {member} purged below {down_end}, which member {down} lacks"
        );
    }
    // Move the leadership to the follower that purged on its leader's word, when it can be
    // done, so the member that was down catches up from it.
    for _ in 0..5 {
        if cluster.wait_for_leader(Duration::from_secs(20)) == third {
            break;
        }
        let current = cluster.wait_for_leader(Duration::from_secs(20));
        cluster.kill(current, libc::SIGKILL);
        cluster.restart(current);
    }
    cluster.restart(down);
    cluster.wait_caught_up(down, Duration::from_secs(60));
    // Once every member has the log, the next snapshots purge it.
    for _ in 0..2 {
        load.wait_for_acks(load.total_acks() + 1500, Duration::from_secs(60));
        cluster.snapshot();
    }
    let acks = load.stop();
    cluster.check_counts(&acks);
    cluster.wait_for_equal_digests(Duration::from_secs(30));
    let purged = log_start(&cluster, leader);
    assert!(
        purged > leader_start && purged > 0,
        "the log was purged once the lagging member had caught up ({leader_start} -> {purged})"
    );
    // And a whole-cluster restart recovers from the snapshots and the purged logs.
    for member in 0..3 {
        cluster.kill(member, libc::SIGKILL);
    }
    for member in 0..3 {
        cluster.restart(member);
    }
    cluster.wait_for_leader(Duration::from_secs(20));
    cluster.check_counts(&acks);
    cluster.wait_for_equal_digests(Duration::from_secs(30));
}

/// A member whose log and snapshots are lost (a disk replaced: `archive/` and `recording-log`
/// gone, `node-state` kept) comes back below the leader's purged log start: it installs the
/// leader's snapshot and catches up from there. A crash part way through an install (its marker
/// left behind) makes the member start empty and install again, and says so.
#[test]
fn a_member_rebuilt_empty_installs_the_leaders_snapshot_and_catches_up() {
    let mut cluster = Cluster::start_with("install", 3, &PURGING);
    let load = Load::start(&cluster, 2);
    // Enough log and snapshots, with every member up, for the leader to purge.
    let leader = cluster.wait_for_leader(Duration::from_secs(20));
    let started = Instant::now();
    while log_start(&cluster, leader) == 0 {
        assert!(
            started.elapsed() < Duration::from_secs(120),
            "the leader never purged"
        );
        load.wait_for_acks(load.total_acks() + 1500, Duration::from_secs(60));
        cluster.snapshot();
    }
    let rebuilt = (leader + 1) % 3;
    cluster.kill(rebuilt, libc::SIGKILL);
    std::fs::remove_dir_all(cluster.dir(rebuilt).join("archive")).unwrap();
    std::fs::remove_file(cluster.dir(rebuilt).join("recording-log")).unwrap();
    cluster.restart(rebuilt);
    // Its term and vote were kept and its log is gone: it rebuilds, voting for nobody until
    // it has caught up (its error log says so, below, and a marker while it does).
    let rebuilding = cluster.dir(rebuilt).join("rebuilding");
    cluster.wait_caught_up(rebuilt, Duration::from_secs(60));
    let status = cluster.status(rebuilt).expect("it runs");
    assert_eq!(status.snapshots_installed, 1, "{status:?}");
    let started = Instant::now();
    while rebuilding.exists() {
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "still rebuilding after catching up"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    assert!(
        status.recovered_from > 0 && log_start(&cluster, rebuilt) == status.recovered_from,
        "its log starts at the installed snapshot: {status:?}"
    );
    load.wait_for_acks(load.total_acks() + 300, Duration::from_secs(60));
    // Restarted, it recovers from the installed snapshot and the log after it.
    cluster.kill(rebuilt, libc::SIGKILL);
    cluster.restart(rebuilt);
    cluster.wait_caught_up(rebuilt, Duration::from_secs(60));
    let status = cluster.status(rebuilt).expect("it runs");
    assert_eq!(
        status.snapshots_installed, 0,
        "recovered, not installed again"
    );
    assert!(status.recovered_from > 0);
    // An install interrupted: the marker left, the member clears itself and installs again.
    cluster.kill(rebuilt, libc::SIGKILL);
    std::fs::write(
        cluster.dir(rebuilt).join("snapshot-install"),
        b"installing\n",
    )
    .unwrap();
    cluster.restart(rebuilt);
    cluster.wait_caught_up(rebuilt, Duration::from_secs(60));
    assert_eq!(
        cluster
            .status(rebuilt)
            .expect("it runs")
            .snapshots_installed,
        1
    );
    assert!(!cluster.dir(rebuilt).join("snapshot-install").exists());
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_tern"))
        .args(["cluster", "errors", "--dir"])
        .arg(cluster.dir(rebuilt))
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&output.stdout);
    assert!(
        text.contains("a snapshot install was interrupted") && text.contains("it rebuilds"),
        "tern cluster errors: {text}"
    );
    let acks = load.stop();
    cluster.check_counts(&acks);
    cluster.wait_for_equal_digests(Duration::from_secs(30));
}
