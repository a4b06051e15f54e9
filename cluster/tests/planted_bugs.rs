//! Each classic consensus bug, planted on purpose, is caught by the simulator's checkers within
//! 2,000 seeds: proof that the checkers can fail.
//!
//! Runs with `cargo test -p tern-cluster --features planted-bugs --test planted_bugs`.

#![cfg(feature = "planted-bugs")]

use tern_cluster::planted::PlantedBug;
use tern_cluster::sim::checker::SAFETY_CHECKERS;
use tern_cluster::sim::{SimConfig, run_seed};

/// Seeds tried per bug before the test gives up.
const SEEDS_MAX: u64 = 2_000;

/// The first seed in which a safety checker ([`SAFETY_CHECKERS`]) reports a violation, with
/// that violation: a bug only liveness or the product's own divergence stop notices is not
/// caught well.
fn first_catch(bug: PlantedBug, members: u32) -> Option<(u64, &'static str, String)> {
    let mut config = SimConfig::new(members);
    config.planted_bug = Some(bug);
    // Figure 8 needs several leaders in a row to lose their followers right after election; the
    // default swarm churns leaders in a quarter of the seeds, this test in all of them.
    config.leader_churn = bug == PlantedBug::CommitPriorTermByCounting;
    (0..SEEDS_MAX).find_map(|seed| {
        let outcome = run_seed(&config, seed);
        outcome
            .violations
            .iter()
            .find(|violation| SAFETY_CHECKERS.contains(&violation.checker))
            .map(|violation| (seed, violation.checker, violation.detail.clone()))
    })
}

fn assert_caught(bug: PlantedBug) {
    let caught = first_catch(bug, 3);
    let Some((seed, checker, detail)) = caught else {
        panic!("{bug:?} survived {SEEDS_MAX} seeds: the checkers cannot see it");
    };
    println!("{bug:?}: caught at seed {seed} by {checker}: {detail}");
}

#[test]
fn committing_an_earlier_terms_entry_by_counting_is_caught() {
    assert_caught(PlantedBug::CommitPriorTermByCounting);
}

#[test]
fn acknowledging_before_fsync_is_caught() {
    assert_caught(PlantedBug::AckBeforeFsync);
}

#[test]
fn forgetting_the_vote_across_a_restart_is_caught() {
    assert_caught(PlantedBug::ForgetVoteOnRestart);
}

#[test]
fn accepting_appends_from_a_stale_term_is_caught() {
    assert_caught(PlantedBug::AcceptStaleTermAppend);
}

#[test]
fn applying_before_commit_is_caught() {
    assert_caught(PlantedBug::ApplyBeforeCommit);
}

#[test]
fn a_leader_counting_its_own_unsynced_bytes_is_caught_by_the_durable_commit_checker() {
    let Some((seed, checker, detail)) = first_catch(PlantedBug::LeaderCountsUnsyncedOwn, 3) else {
        panic!("LeaderCountsUnsyncedOwn survived {SEEDS_MAX} seeds");
    };
    println!("LeaderCountsUnsyncedOwn: caught at seed {seed} by {checker}: {detail}");
    assert_eq!(
        checker, "durable commit",
        "a safety checker over what is on disk sees it"
    );
}

#[test]
fn a_vote_sent_before_it_is_persisted_is_caught_by_a_checker_of_the_disk() {
    let Some((seed, checker, detail)) = first_catch(PlantedBug::VoteSentBeforePersist, 3) else {
        panic!("VoteSentBeforePersist survived {SEEDS_MAX} seeds");
    };
    println!("VoteSentBeforePersist: caught at seed {seed} by {checker}: {detail}");
    assert_eq!(checker, "vote durable before sent");
}

/// The cluster sizes a bug shows on: the even ones for the quorum that rounds down (on odd
/// sizes it is right), 3 and 5 for the rest.
fn sizes_for(bug: PlantedBug) -> &'static [u32] {
    match bug {
        PlantedBug::QuorumRoundsDown => &[2, 4, 6],
        _ => &[3, 5],
    }
}

/// Every planted bug, old and new, is caught by a *safety* checker within 2,000 seeds on each
/// size it affects; prints the table (bug, size, first failing seed, checker).
#[test]
fn every_planted_bug_is_caught_by_a_safety_checker_within_two_thousand_seeds() {
    println!(
        "{:<28} {:>7} {:>6}  checker",
        "planted bug", "members", "seed"
    );
    for bug in PlantedBug::ALL {
        for &members in sizes_for(bug) {
            let Some((seed, checker, _)) = first_catch(bug, members) else {
                panic!("{bug:?} on {members} members: no safety checker caught it in 2,000 seeds");
            };
            println!(
                "{:<28} {members:>7} {seed:>6}  {checker}",
                format!("{bug:?}")
            );
        }
    }
}

#[test]
fn a_quorum_that_rounds_down_is_caught_on_an_even_cluster() {
    let Some((seed, checker, detail)) = first_catch(PlantedBug::QuorumRoundsDown, 4) else {
        panic!("QuorumRoundsDown survived {SEEDS_MAX} seeds on 4 members");
    };
    println!("QuorumRoundsDown: caught at seed {seed} by {checker}: {detail}");
}

#[test]
fn a_second_vote_in_a_term_is_caught() {
    assert_caught(PlantedBug::VoteTwiceInTerm);
}

#[test]
fn a_vote_ignoring_the_candidates_log_is_caught() {
    assert_caught(PlantedBug::VoteIgnoringLog);
}

#[test]
fn acknowledging_bytes_not_known_to_match_is_caught() {
    assert_caught(PlantedBug::AckBeyondMatch);
}

#[test]
fn a_follower_committing_past_what_matches_is_caught() {
    assert_caught(PlantedBug::FollowerCommitBeyondMatch);
}

#[test]
fn syncs_not_cut_back_at_a_truncation_are_caught() {
    assert_caught(PlantedBug::SyncsNotCutAtTruncation);
}

#[test]
fn truncating_without_a_conflict_is_caught() {
    assert_caught(PlantedBug::TruncateWithoutConflict);
}

#[test]
fn counting_a_refusal_as_a_match_is_caught() {
    assert_caught(PlantedBug::CountRefusals);
}

#[test]
fn installing_a_snapshot_over_a_log_that_holds_it_is_caught() {
    assert_caught(PlantedBug::InstallOverHeldLog);
}

#[test]
fn every_planted_bug_has_a_test() {
    assert_eq!(
        PlantedBug::ALL.len(),
        16,
        "add a test above for each new planted bug"
    );
}
