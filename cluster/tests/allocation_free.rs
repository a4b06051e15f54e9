//! The consensus core's steady state allocates nothing: after warm-up, thousands of rounds of
//! client commands replicated and committed by three members in one process (the local cluster,
//! commit-only) make no allocation, because the caller hands every carried-out buffer back with
//! `Consensus::recycle`.

use tern_cluster::kv::Command;
use tern_cluster::local::{LocalCluster, Mode};

#[path = "../../codec/tests/support/counting_allocator.rs"]
mod counting_allocator;
use counting_allocator::counted;

const SESSIONS: u64 = 64;

fn rounds(cluster: &mut LocalCluster, leader: u32, next_request: &mut u64, count: u64) {
    let command = Command::Add { key: 1, delta: 1 }.encode(0);
    for _ in 0..count {
        *next_request += 1;
        for session in 1..=SESSIONS {
            cluster
                .submit(leader, session, *next_request, &command)
                .unwrap();
        }
        cluster.tick();
        assert_eq!(cluster.answers().len(), usize::try_from(SESSIONS).unwrap());
        cluster.clear_answers();
    }
}

#[test]
fn replicating_and_committing_allocates_nothing_after_warm_up() {
    let mut cluster = LocalCluster::new(3, 5).unwrap();
    cluster.set_mode(Mode::CommitOnly);
    cluster.reserve_log(64 << 20);
    let leader = cluster.elect(1_000_000, 10_000_000_000).unwrap();
    let mut next_request = 0;
    rounds(&mut cluster, leader, &mut next_request, 2_000);

    let ((), allocations) = counted(|| rounds(&mut cluster, leader, &mut next_request, 5_000));
    assert_eq!(
        allocations, 0,
        "{allocations} allocations in 5 000 rounds of {SESSIONS} commands"
    );
    let end = cluster.member(leader).consensus.commit_position();
    assert!(
        end > 7_000 * SESSIONS * 128,
        "the commands really committed: {end}"
    );
}
