//! The linearizability checker (`support/linearizability.rs`) on histories whose verdict is
//! known: classic non-linearizable ones (a stale read, a lost update, a value that goes back, a
//! read of a value never written, an effect seen and then unseen), linearizable ones with
//! overlapping and unfinished operations, and many random histories built from a sequential run,
//! which must all pass.

#[path = "support/linearizability.rs"]
mod linearizability;

use linearizability::{KvOp, Operation, Verdict, check};
use tern_cluster::rng::Rng;

fn op(client: u32, op: KvOp, invoked_ns: u64, completed: Option<(u64, Option<u64>)>) -> Operation {
    Operation {
        client,
        key: 7,
        op,
        invoked_ns,
        completed,
    }
}

fn assert_not_linearizable(history: &[Operation]) {
    match check(history) {
        Verdict::NotLinearizable { key, operations } => {
            assert_eq!(key, 7);
            assert_eq!(operations.len(), history.len());
        }
        other => panic!("{history:?} was judged {other:?}"),
    }
}

#[test]
fn a_sequential_history_is_linearizable() {
    let history = [
        op(0, KvOp::Get, 0, Some((1, None))),
        op(0, KvOp::Put(5), 2, Some((3, Some(5)))),
        op(1, KvOp::Add(2), 4, Some((5, Some(7)))),
        op(0, KvOp::Get, 6, Some((7, Some(7)))),
    ];
    assert_eq!(check(&history), Verdict::Linearizable);
    assert_eq!(check(&[]), Verdict::Linearizable);
}

#[test]
fn a_stale_read_after_a_completed_write_is_not() {
    assert_not_linearizable(&[
        op(0, KvOp::Put(1), 0, Some((10, Some(1)))),
        op(1, KvOp::Get, 20, Some((30, None))),
    ]);
}

#[test]
fn a_lost_update_is_not() {
    // Two concurrent adds of 1 cannot both see 1.
    assert_not_linearizable(&[
        op(0, KvOp::Add(1), 0, Some((10, Some(1)))),
        op(1, KvOp::Add(1), 5, Some((15, Some(1)))),
    ]);
    // Either order is fine when the results say so.
    assert_eq!(
        check(&[
            op(0, KvOp::Add(1), 0, Some((10, Some(2)))),
            op(1, KvOp::Add(1), 5, Some((15, Some(1)))),
        ]),
        Verdict::Linearizable
    );
}

#[test]
fn a_value_that_goes_back_is_not_even_during_a_slow_write() {
    // While the put is in flight a read may see either value, but once one read saw the new
    // value a later read may not see the old one.
    let put = op(0, KvOp::Put(5), 0, Some((100, Some(5))));
    assert_eq!(
        check(&[
            put,
            op(1, KvOp::Get, 10, Some((20, None))),
            op(1, KvOp::Get, 30, Some((40, Some(5)))),
        ]),
        Verdict::Linearizable
    );
    assert_not_linearizable(&[
        put,
        op(1, KvOp::Get, 10, Some((20, Some(5)))),
        op(1, KvOp::Get, 30, Some((40, None))),
    ]);
}

#[test]
fn a_read_of_a_value_never_written_is_not() {
    assert_not_linearizable(&[
        op(0, KvOp::Put(1), 0, Some((10, Some(1)))),
        op(1, KvOp::Get, 0, Some((10, Some(2)))),
    ]);
}

#[test]
fn an_unanswered_operation_may_take_effect_or_not_but_not_be_undone() {
    let lost = op(0, KvOp::Add(1), 0, None);
    // Never applied.
    assert_eq!(
        check(&[lost, op(1, KvOp::Get, 50, Some((60, None)))]),
        Verdict::Linearizable
    );
    // Applied, late.
    assert_eq!(
        check(&[
            lost,
            op(1, KvOp::Get, 50, Some((60, None))),
            op(1, KvOp::Get, 70, Some((80, Some(1)))),
        ]),
        Verdict::Linearizable
    );
    // Seen, then gone.
    assert_not_linearizable(&[
        lost,
        op(1, KvOp::Get, 50, Some((60, Some(1)))),
        op(1, KvOp::Get, 70, Some((80, None))),
    ]);
    // Applied twice (a retried command applied again): no single effect explains a 2.
    assert_not_linearizable(&[lost, op(1, KvOp::Get, 50, Some((60, Some(2))))]);
}

#[test]
fn keys_are_checked_apart_and_the_bad_one_is_named() {
    let mut history = vec![
        op(0, KvOp::Put(1), 0, Some((10, Some(1)))),
        op(1, KvOp::Get, 20, Some((30, Some(1)))),
    ];
    history.push(Operation {
        key: 9,
        ..op(2, KvOp::Put(3), 0, Some((10, Some(3))))
    });
    history.push(Operation {
        key: 9,
        ..op(2, KvOp::Get, 20, Some((30, Some(4))))
    });
    match check(&history) {
        Verdict::NotLinearizable { key, operations } => {
            assert_eq!(key, 9);
            assert_eq!(operations.len(), 2);
        }
        other => panic!("judged {other:?}"),
    }
}

/// Builds a history from a sequential run: each operation takes effect at its own instant and
/// its client's call and return lie around it, overlapping its neighbours'; some answers are
/// lost (the client gave up).
fn random_history(rng: &mut Rng, operations: usize) -> Vec<Operation> {
    let mut state = [None::<u64>; 3];
    (0..operations)
        .map(|index| {
            let key = rng.below(3);
            let slot = usize::try_from(key).unwrap();
            let op = match rng.below(3) {
                0 => KvOp::Put(rng.below(4)),
                1 => KvOp::Add(rng.below(3)),
                _ => KvOp::Get,
            };
            let result = match op {
                KvOp::Put(value) => Some(value),
                KvOp::Add(delta) => Some(state[slot].unwrap_or(0).wrapping_add(delta)),
                KvOp::Get => state[slot],
            };
            if !matches!(op, KvOp::Get) {
                state[slot] = result;
            }
            let at = 1_000 + 100 * u64::try_from(index).unwrap();
            let completed = (!rng.chance(50_000)).then(|| (at + rng.below(400), result));
            Operation {
                client: u32::try_from(index % 5).unwrap(),
                key,
                op,
                invoked_ns: at - rng.below(400),
                completed,
            }
        })
        .collect()
}

#[test]
fn histories_from_a_sequential_run_with_overlaps_are_linearizable() {
    let mut rng = Rng::new(11);
    for round in 0..300 {
        let history = random_history(&mut rng, 60);
        assert_eq!(check(&history), Verdict::Linearizable, "round {round}");
    }
}

#[test]
fn a_changed_answer_in_an_otherwise_sequential_history_is_found() {
    // Without overlap every operation has one place; any wrong answer is caught.
    let mut rng = Rng::new(12);
    for round in 0..100 {
        let mut history = random_history(&mut rng, 40);
        // One after another, every answer known (recomputed in order).
        let mut state = [None::<u64>; 3];
        for (index, operation) in history.iter_mut().enumerate() {
            let slot = usize::try_from(operation.key).unwrap();
            let result = match operation.op {
                KvOp::Put(value) => Some(value),
                KvOp::Add(delta) => Some(state[slot].unwrap_or(0).wrapping_add(delta)),
                KvOp::Get => state[slot],
            };
            if !matches!(operation.op, KvOp::Get) {
                state[slot] = result;
            }
            operation.invoked_ns = 10 * u64::try_from(index).unwrap();
            operation.completed = Some((operation.invoked_ns + 1, result));
        }
        assert_eq!(check(&history), Verdict::Linearizable, "round {round}");
        let victim = usize::try_from(rng.below(40)).unwrap();
        let (at, result) = history[victim].completed.unwrap();
        history[victim].completed = Some((at, Some(result.unwrap_or(0).wrapping_add(100))));
        assert!(
            matches!(check(&history), Verdict::NotLinearizable { .. }),
            "round {round}: a wrong answer at {victim} passed"
        );
    }
}
