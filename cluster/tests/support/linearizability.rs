//! A linearizability checker for histories of the sample key-value service, in the style of
//! Wing and Gong with Lowe's memoisation (as Knossos and Porcupine do it), for tests that run
//! clients against a real cluster while members are killed and paused.
//!
//! A history is what the clients saw: each operation's invocation time, its completion time and
//! result if it completed, or no completion if the client gave up (a timeout, a lost connection:
//! the command may or may not have been applied). The history is linearizable if every
//! operation can be given one instant between its invocation and completion at which it takes
//! effect, such that the effects in that order, applied to a sequential store, give every
//! completed operation the result its client saw. An operation that never completed may take
//! effect at any instant after its invocation, or never.
//!
//! Keys are independent (the store's operations each touch one key), so the history is split by
//! key and each key's history checked alone: a search exponential in the concurrency of one key's
//! operations, not of the whole history.
//!
//! The search walks the history's calls and returns in time order. At a call it tries to
//! linearize that operation next (apply it to the model and compare results); at a return whose
//! operation has not been linearized yet it backtracks. A set of (linearized operations, model
//! state) pairs already explored prunes the search, which is what makes it practical. Memory:
//! the cache holds one bitset per explored configuration, bounded by `CONFIGURATIONS_MAX`.

use std::collections::{BTreeMap, HashSet};

/// Configurations explored per key before the checker gives up (and says so, rather than
/// passing a history it could not decide).
const CONFIGURATIONS_MAX: usize = 2_000_000;

/// One operation on one key, as its client invoked it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum KvOp {
    /// Set the key's value.
    Put(u64),
    /// Add to the key's value (a missing key counts as 0), wrapping.
    Add(u64),
    /// Read the key.
    Get,
}

/// What a client saw: the key's value after the operation, or that the key was missing.
pub(crate) type KvResult = Option<u64>;

/// One operation in a history.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Operation {
    /// The client that ran it (for reports).
    pub(crate) client: u32,
    /// The key.
    pub(crate) key: u64,
    /// What was asked.
    pub(crate) op: KvOp,
    /// When the client sent it.
    pub(crate) invoked_ns: u64,
    /// When the client got the answer and what it said; `None` if it never did.
    pub(crate) completed: Option<(u64, KvResult)>,
}

/// Why a history is not linearizable, or could not be decided.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Verdict {
    /// Every key's history is linearizable.
    Linearizable,
    /// A key's history admits no linearization; `operations` are that key's operations.
    NotLinearizable {
        /// The key.
        key: u64,
        /// Its operations, in invocation order.
        operations: Vec<Operation>,
    },
    /// The search for a key explored [`CONFIGURATIONS_MAX`] configurations without an answer.
    Undecided {
        /// The key.
        key: u64,
    },
}

/// The sequential model of one key.
fn step(state: KvResult, op: KvOp) -> (KvResult, KvResult) {
    match op {
        KvOp::Put(value) => (Some(value), Some(value)),
        KvOp::Add(delta) => {
            let value = state.unwrap_or(0).wrapping_add(delta);
            (Some(value), Some(value))
        }
        KvOp::Get => (state, state),
    }
}

/// Checks a whole history, key by key.
pub(crate) fn check(history: &[Operation]) -> Verdict {
    let mut by_key: BTreeMap<u64, Vec<Operation>> = BTreeMap::new();
    for operation in history {
        by_key.entry(operation.key).or_default().push(*operation);
    }
    for (key, mut operations) in by_key {
        operations.sort_by_key(|operation| (operation.invoked_ns, operation.client));
        match check_key(&operations) {
            Some(true) => {}
            Some(false) => return Verdict::NotLinearizable { key, operations },
            None => return Verdict::Undecided { key },
        }
    }
    Verdict::Linearizable
}

/// A call or return in the time-ordered walk, linked to its neighbours.
#[derive(Debug, Clone, Copy)]
struct Event {
    operation: usize,
    is_call: bool,
    /// The operation's return event, for a call.
    partner: usize,
    previous: usize,
    next: usize,
}

/// The head sentinel's index; every list index is shifted by one past it.
const HEAD: usize = 0;
const NONE: usize = usize::MAX;

/// Decides one key's history: `Some(true)` linearizable, `Some(false)` not, `None` undecided.
fn check_key(operations: &[Operation]) -> Option<bool> {
    // Calls and returns in time order; a return at the same instant as a call sorts first (the
    // first operation finished before the second began). Operations that never completed
    // return after everything.
    let mut points: Vec<(u64, bool, usize)> = Vec::with_capacity(operations.len() * 2);
    for (index, operation) in operations.iter().enumerate() {
        points.push((operation.invoked_ns, true, index));
        let returned = operation.completed.map_or(u64::MAX, |(at, _)| at);
        assert!(
            returned >= operation.invoked_ns,
            "operation {index} completes before it is invoked"
        );
        points.push((returned, false, index));
    }
    points.sort_by_key(|&(at, is_call, index)| (at, is_call, index));
    let mut events = vec![Event {
        operation: NONE,
        is_call: false,
        partner: NONE,
        previous: NONE,
        next: NONE,
    }];
    let mut call_of = vec![NONE; operations.len()];
    let mut return_of = vec![NONE; operations.len()];
    for &(_, is_call, operation) in &points {
        let index = events.len();
        let previous = index - 1;
        events[previous].next = index;
        events.push(Event {
            operation,
            is_call,
            partner: NONE,
            previous,
            next: NONE,
        });
        if is_call {
            call_of[operation] = index;
        } else {
            return_of[operation] = index;
        }
    }
    for operation in 0..operations.len() {
        events[call_of[operation]].partner = return_of[operation];
    }

    let words = operations.len().div_ceil(64);
    let mut linearized = vec![0u64; words];
    let mut cache: HashSet<(Vec<u64>, KvResult)> = HashSet::new();
    // The stack of (call event, state before it) linearized so far.
    let mut stack: Vec<(usize, KvResult)> = Vec::new();
    let mut state: KvResult = None;
    let mut cursor = events[HEAD].next;
    while events[HEAD].next != NONE {
        if cursor == NONE {
            // Only returns of linearized operations can end the list; a call always has its
            // return after it, so reaching the end means backtracking already failed.
            return Some(false);
        }
        let event = events[cursor];
        if event.is_call {
            let operation = &operations[event.operation];
            let (next_state, result) = step(state, operation.op);
            let matches = operation.completed.is_none_or(|(_, seen)| seen == result);
            let mut advanced = false;
            if matches {
                linearized[event.operation / 64] |= 1 << (event.operation % 64);
                if cache.insert((linearized.clone(), next_state)) {
                    if cache.len() > CONFIGURATIONS_MAX {
                        return None;
                    }
                    stack.push((cursor, state));
                    state = next_state;
                    lift(&mut events, cursor);
                    cursor = events[HEAD].next;
                    advanced = true;
                } else {
                    linearized[event.operation / 64] &= !(1 << (event.operation % 64));
                }
            }
            if !advanced {
                cursor = event.next;
            }
        } else {
            // A return whose operation is not linearized yet: the choices so far cannot work.
            let Some((call, previous_state)) = stack.pop() else {
                return Some(false);
            };
            let operation = events[call].operation;
            state = previous_state;
            linearized[operation / 64] &= !(1 << (operation % 64));
            unlift(&mut events, call);
            cursor = events[call].next;
        }
    }
    Some(true)
}

/// Takes a call and its return out of the list (they stay linked to where they were).
fn lift(events: &mut [Event], call: usize) {
    for index in [call, events[call].partner] {
        let Event { previous, next, .. } = events[index];
        events[previous].next = next;
        if next != NONE {
            events[next].previous = previous;
        }
    }
}

/// Puts a lifted call and its return back, in the reverse order of [`lift`].
fn unlift(events: &mut [Event], call: usize) {
    for index in [events[call].partner, call] {
        let Event { previous, next, .. } = events[index];
        events[previous].next = index;
        if next != NONE {
            events[next].previous = index;
        }
    }
}
