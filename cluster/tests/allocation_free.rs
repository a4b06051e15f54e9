//! The consensus core's steady state allocates nothing: after warm-up, thousands of rounds of
//! client commands replicated and committed by three members in one process (the local cluster,
//! commit-only) make no allocation, because the caller hands every carried-out buffer back with
//! `Consensus::recycle`.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::sync::atomic::{AtomicU64, Ordering};

use tern_cluster::kv::Command;
use tern_cluster::local::{LocalCluster, Mode};

struct CountingAllocator;

static ALLOCATIONS: AtomicU64 = AtomicU64::new(0);

thread_local! {
    static COUNTING: Cell<bool> = const { Cell::new(false) };
}

// SAFETY: every call is forwarded unchanged to the system allocator; the bookkeeping touches
// only a const-initialised thread-local flag and an atomic, neither of which allocates.
unsafe impl GlobalAlloc for CountingAllocator {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        if COUNTING.with(Cell::get) {
            ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        }
        // SAFETY: the caller's layout obligations pass straight through.
        unsafe { System.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: `ptr` came from `System.alloc` with this layout.
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        if COUNTING.with(Cell::get) {
            ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        }
        // SAFETY: `ptr` came from this allocator with `layout`; the caller upholds the rest.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: CountingAllocator = CountingAllocator;

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

    COUNTING.with(|counting| counting.set(true));
    rounds(&mut cluster, leader, &mut next_request, 5_000);
    COUNTING.with(|counting| counting.set(false));

    let allocations = ALLOCATIONS.load(Ordering::Relaxed);
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
