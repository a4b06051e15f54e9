//! Counters and the distinct error log against models: any sequence of allocations, frees,
//! writes and records reads back as the model says.
#![cfg(not(loom))]

use std::collections::BTreeMap;

use proptest::prelude::*;
use tern_engine::concurrent::atomic_buffer::AlignedBuffer;
use tern_engine::concurrent::counters::{
    CounterSpec, CountersError, CountersManager, METADATA_LENGTH, VALUE_LENGTH,
};
use tern_engine::concurrent::error_log::{DistinctErrorLog, read_errors};

#[derive(Debug, Clone)]
enum Step {
    Allocate(u8),
    Free(usize),
    Set(usize, i64),
    Advance(i64),
}

fn step() -> impl Strategy<Value = Step> {
    prop_oneof![
        any::<u8>().prop_map(Step::Allocate),
        any::<usize>().prop_map(Step::Free),
        (any::<usize>(), any::<i64>()).prop_map(|(index, value)| Step::Set(index, value)),
        (0i64..500).prop_map(Step::Advance),
    ]
}

proptest! {
    #[test]
    fn counters_behave_as_a_map(steps in prop::collection::vec(step(), 1..120)) {
        const MAX: usize = 8;
        let metadata = AlignedBuffer::new(MAX * METADATA_LENGTH);
        let values = AlignedBuffer::new(MAX * VALUE_LENGTH);
        let mut manager = CountersManager::new(metadata.buffer(), values.buffer(), 100).unwrap();
        let mut model: BTreeMap<i32, (String, i64)> = BTreeMap::new();
        let mut held_until: BTreeMap<i32, i64> = BTreeMap::new();
        let mut now = 0;
        for step in steps {
            match step {
                Step::Allocate(tag) => {
                    let label = format!("counter {tag}");
                    let spec = CounterSpec { type_id: 1, key: &[tag], label: &label, registration_id: 0, owner_id: 0, reference_id: 0 };
                    match manager.allocate(&spec, now) {
                        Ok(counter) => {
                            prop_assert!(!model.contains_key(&counter.id()), "an id in use was reused");
                            prop_assert!(held_until.get(&counter.id()).is_none_or(|until| now >= *until), "reused before its deadline");
                            held_until.remove(&counter.id());
                            model.insert(counter.id(), (label, 0));
                        }
                        Err(CountersError::Full(max)) => {
                            prop_assert_eq!(max, MAX);
                            let reusable = held_until.values().filter(|until| now >= **until).count();
                            prop_assert_eq!(model.len() + held_until.len(), MAX);
                            prop_assert_eq!(reusable, 0);
                        }
                        Err(error) => prop_assert!(false, "{}", error),
                    }
                }
                Step::Free(index) => {
                    if let Some(id) = model.keys().nth(index % MAX.max(1)).copied() {
                        manager.free(id, now).unwrap();
                        model.remove(&id);
                        held_until.insert(id, now + 100);
                    }
                }
                Step::Set(index, value) => {
                    if let Some(id) = model.keys().nth(index % MAX.max(1)).copied() {
                        manager.counter(id).unwrap().set(value);
                        model.get_mut(&id).unwrap().1 = value;
                    }
                }
                Step::Advance(by) => now += by,
            }
        }
        let mut seen = BTreeMap::new();
        manager.reader().for_each(|info| {
            seen.insert(info.id, (info.label.to_owned(), info.value));
        });
        prop_assert_eq!(seen, model);
    }

    #[test]
    fn the_error_log_keeps_each_distinct_error_once(
        records in prop::collection::vec((0u8..6, 0i64..1000), 1..80)
    ) {
        let memory = AlignedBuffer::new(4096);
        let mut log = DistinctErrorLog::new(memory.buffer());
        let mut model: Vec<(String, i32, i64, i64)> = Vec::new();
        let mut now = 0;
        for (kind, delta) in records {
            now += delta;
            let text = format!("error kind {kind}: {}", "x".repeat(usize::from(kind) * 10));
            prop_assert!(log.record(now, &text));
            match model.iter_mut().find(|entry| entry.0 == text) {
                Some(entry) => {
                    entry.1 += 1;
                    entry.3 = now;
                }
                None => model.push((text, 1, now, now)),
            }
        }
        let mut seen = Vec::new();
        read_errors(memory.buffer(), |error| {
            seen.push((error.text.to_owned(), error.count, error.first_observation_ms, error.last_observation_ms));
        });
        prop_assert_eq!(seen, model);
    }
}
