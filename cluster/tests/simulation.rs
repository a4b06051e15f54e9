//! The deterministic simulator over the real consensus core and service container: hundreds of
//! seeds across 3, 4 and 5 members with every fault class (an even size too: a quorum computed
//! as (n + 1) / 2 is wrong only there), a few on every other size from 1 to 7, determinism of
//! the trace, and every seed that ever failed.
//!
//! A run's first violation fails the test with its seed, so a failure is reproduced with
//! `tern cluster sim --members M --seed S --trace`.

use tern_cluster::sim::{FaultCounts, SimConfig, Summary, run_seed, run_seeds};

/// Seeds per member count in the suite (the CI figure: 3 × 400).
const SEEDS_PER_SIZE: u64 = 400;
/// Seeds for each of the sizes 1, 2, 6 and 7.
const SEEDS_OTHER_SIZES: u64 = 25;

fn threads() -> usize {
    std::thread::available_parallelism().map_or(2, usize::from)
}

fn assert_clean(summary: &Summary, members: u32) {
    println!("{}", summary.line(members));
    if let Some((seed, violation)) = summary.failures.first() {
        panic!(
            "{} of {} seeds failed; first: seed {seed} ({members} members) at {} ns: {}: {} \
             (replay: tern cluster sim --members {members} --seed {seed} --trace)",
            summary.failures.len(),
            summary.seeds,
            violation.time_ns,
            violation.checker,
            violation.detail
        );
    }
}

/// Each fault class must have happened at least this often across the suite's seeds, so a fault
/// that is silently switched off fails the build.
fn assert_faults_injected(faults: &FaultCounts) {
    let minimum = |class: &str| match class {
        "torn-write"
        | "torn-snapshot"
        | "asymmetric-partition"
        | "pause"
        | "leader-strike"
        | "mid-drain-crash"
        | "mid-write-crash"
        | "mid-sync-crash"
        | "disk-stall" => 20,
        // Members fall behind a leader's log start only in the seeds that purge past the log
        // floor, and only when they lag by two snapshots.
        "snapshot-installed" => 40,
        "lost-write" => 40,
        _ => 100,
    };
    for (class, count) in faults.classes() {
        assert!(
            count >= minimum(class),
            "fault class {class} was injected {count} times; at least {} expected",
            minimum(class)
        );
    }
}

#[test]
fn three_four_and_five_member_clusters_survive_every_fault_class() {
    let mut faults = FaultCounts::default();
    let mut commands = 0;
    let mut term_ends = 0;
    for members in [3, 4, 5] {
        let config = SimConfig::new(members);
        let seeds: Vec<u64> = (0..SEEDS_PER_SIZE).collect();
        let summary = run_seeds(&config, &seeds, threads());
        assert_clean(&summary, members);
        assert_eq!(summary.seeds, SEEDS_PER_SIZE);
        faults.add(&summary.faults);
        commands += summary.commands_committed;
        term_ends += summary.term_ends;
        assert!(
            summary.elections >= summary.seeds,
            "every seed elects at least one leader"
        );
    }
    assert_faults_injected(&faults);
    assert!(commands > 10_000, "only {commands} commands committed");
    // Half the seeds use the shortest log terms: leaders pad term ends and members replicate,
    // truncate and recover across them.
    assert!(term_ends > 300, "only {term_ends} log term ends crossed");
}

/// The sizes CI does not run at length still run clean, faults and all: one member (no links
/// to cut, a quorum of itself), two (a quorum of both), and six and seven (the most a cluster
/// has); the documented long run covers every size (BENCHMARKS.md).
#[test]
fn every_other_cluster_size_from_one_to_seven_runs_clean() {
    for members in [1, 2, 6, 7] {
        let seeds: Vec<u64> = (0..SEEDS_OTHER_SIZES).collect();
        let summary = run_seeds(&SimConfig::new(members), &seeds, threads());
        assert_clean(&summary, members);
        assert!(
            summary.commands_committed > 10 * SEEDS_OTHER_SIZES,
            "{members} members committed only {} commands",
            summary.commands_committed
        );
    }
}

#[test]
fn the_same_seed_gives_the_same_trace() {
    for members in [3, 5] {
        let config = SimConfig::new(members);
        let hashes: Vec<u64> = (1000..1010)
            .map(|seed| {
                let first = run_seed(&config, seed);
                let second = run_seed(&config, seed);
                assert_eq!(first.trace_hash, second.trace_hash, "seed {seed}");
                assert_eq!(first.simulated_ns, second.simulated_ns, "seed {seed}");
                assert_eq!(first.faults, second.faults, "seed {seed}");
                first.trace_hash
            })
            .collect();
        let mut distinct = hashes.clone();
        distinct.sort_unstable();
        distinct.dedup();
        assert_eq!(
            distinct.len(),
            hashes.len(),
            "different seeds, different runs"
        );
    }
}

#[test]
fn every_seed_that_ever_failed_still_passes() {
    let list = include_str!("regression_seeds.txt");
    let mut count = 0;
    for line in list.lines() {
        let line = line.split('#').next().unwrap_or("").trim();
        if line.is_empty() {
            continue;
        }
        let mut fields = line.split_whitespace();
        let members: u32 = fields.next().unwrap().parse().expect("member count");
        let seed: u64 = fields.next().unwrap().parse().expect("seed");
        let outcome = run_seed(&SimConfig::new(members), seed);
        assert!(
            outcome.violations.is_empty(),
            "regression seed {seed} ({members} members): {:?}",
            outcome.violations
        );
        count += 1;
    }
    assert!(count >= 5, "the regression list lost its seeds");
}

#[test]
fn a_trace_reads_as_the_story_of_the_run() {
    let mut config = SimConfig::new(3);
    config.trace = true;
    let outcome = run_seed(&config, 7);
    let trace = outcome.trace.join("\n");
    for expected in [
        "starts",
        "is Leader in term",
        "append term",
        "applied at",
        "converged at",
    ] {
        assert!(trace.contains(expected), "the trace lacks {expected:?}");
    }
    let quiet = run_seed(&SimConfig::new(3), 7);
    assert_eq!(
        quiet.trace_hash, outcome.trace_hash,
        "tracing does not change the run"
    );
    assert!(quiet.trace.is_empty());
}

#[test]
fn a_panic_in_a_run_is_reported_with_its_seed() {
    // A cluster of no members makes the world's start-up panic (clients pick a member modulo the
    // member count); the batch runner turns that into the seed's violation instead of aborting
    // the whole batch. (A member count the core refuses is a "recovery" violation, not a panic.)
    let config = SimConfig::new(0);
    let summary = run_seeds(&config, &[3, 4], 1);
    assert_eq!(summary.failures.len(), 2);
    assert_eq!(summary.failures[0].0, 3);
    assert_eq!(summary.failures[0].1.checker, "panic");
}
