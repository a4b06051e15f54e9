//! Replays the cluster fuzz targets' corpora (`fuzz/corpus/cluster_*/`) through the checks the
//! fuzzer runs, so stable CI exercises every input the fuzzer kept, plus generated garbage.
//! `cargo test -p tern-cluster --test fuzz_corpus -- --ignored` rewrites the seed inputs.

use std::path::PathBuf;

use tern_cluster::fuzz_checks;
use tern_cluster::kv::Command;
use tern_cluster::local::LocalCluster;
use tern_cluster::rng::Rng;

fn corpus(target: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../fuzz/corpus")
        .join(target)
}

fn replay(target: &str, check: fn(&[u8])) {
    let dir = corpus(target);
    let mut inputs = 0;
    for entry in std::fs::read_dir(&dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display())) {
        let bytes = std::fs::read(entry.unwrap().path()).unwrap();
        check(&bytes);
        // Every truncation and a flipped byte at each offset of a corpus input, too.
        for cut in 0..bytes.len().min(256) {
            check(&bytes[..cut]);
        }
        let mut flipped = bytes.clone();
        for index in 0..flipped.len().min(256) {
            flipped[index] ^= 0x5A;
            check(&flipped);
            flipped[index] ^= 0x5A;
        }
        inputs += 1;
    }
    assert!(
        inputs >= 3,
        "{target}: the corpus holds only {inputs} inputs"
    );
}

fn random_garbage(check: fn(&[u8])) {
    let mut rng = Rng::new(2026);
    for _ in 0..2_000 {
        let length = usize::try_from(rng.below(512)).unwrap();
        let bytes: Vec<u8> = (0..length)
            .map(|_| u8::try_from(rng.below(256)).unwrap())
            .collect();
        check(&bytes);
    }
}

#[test]
fn consensus_message_corpus() {
    replay("cluster_message", fuzz_checks::consensus_message);
    random_garbage(fuzz_checks::consensus_message);
}

#[test]
fn log_corpus() {
    replay("cluster_log", fuzz_checks::log_entries);
    random_garbage(fuzz_checks::log_entries);
}

#[test]
fn snapshot_corpus() {
    replay("cluster_snapshot", fuzz_checks::snapshot);
    random_garbage(fuzz_checks::snapshot);
}

/// Writes seed inputs: messages, logs and snapshots from a real local cluster.
#[test]
#[ignore = "rewrites the fuzz corpus seeds; run by hand"]
fn seed_corpus() {
    let mut cluster = LocalCluster::new(3, 9).unwrap();
    let leader = cluster.elect(1_000_000, 10_000_000_000).unwrap();
    for request in 1..=20 {
        let command = Command::PutWithExpiry {
            key: request % 4,
            value: request,
            ttl_ns: 5,
        };
        cluster
            .submit(leader, 1, request, &command.encode(0))
            .unwrap();
    }
    cluster.tick();
    cluster.advance(200_000_000);
    let member = cluster.member(leader);
    let write = |target: &str, name: &str, bytes: &[u8]| {
        let dir = corpus(target);
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join(name), bytes).unwrap();
    };
    write("cluster_log", "whole", &member.log);
    write(
        "cluster_log",
        "first-entries",
        &member.log[..member.log.len().min(200)],
    );
    write("cluster_log", "torn", &member.log[..member.log.len() - 3]);
    write("cluster_snapshot", "kv", &member.container.take_snapshot());
    write(
        "cluster_snapshot",
        "empty",
        &tern_cluster::container::ServiceContainer::new(tern_cluster::kv::KvStore::default(), 64)
            .take_snapshot(),
    );
    write(
        "cluster_snapshot",
        "header-only",
        &member.container.take_snapshot()[..16],
    );
    for (index, message) in cluster.sent_messages().iter().enumerate().take(12) {
        write("cluster_message", &format!("message-{index:02}"), message);
    }
}
