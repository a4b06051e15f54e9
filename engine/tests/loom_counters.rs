//! Loom model of counter allocation: a reader that sees a counter allocated sees its whole
//! record (label and zeroed value), never a half-written one.
//!
//! `RUSTFLAGS="--cfg loom" cargo test -p tern-engine --release --test loom_counters`
#![cfg(loom)]

use loom::sync::Arc;
use loom::thread;
use tern_engine::concurrent::atomic_buffer::AlignedBuffer;
use tern_engine::concurrent::counters::{
    CounterSpec, CountersManager, CountersReader, METADATA_LENGTH, VALUE_LENGTH,
};

#[test]
fn a_published_counter_is_whole() {
    let mut builder = loom::model::Builder::new();
    builder.preemption_bound = Some(2);
    builder.max_branches = 100_000;
    builder.check(|| {
        let metadata = Arc::new(AlignedBuffer::new(METADATA_LENGTH));
        let values = Arc::new(AlignedBuffer::new(VALUE_LENGTH));
        let writer = {
            let (metadata, values) = (Arc::clone(&metadata), Arc::clone(&values));
            thread::spawn(move || {
                let mut manager =
                    CountersManager::new(metadata.buffer(), values.buffer(), 0).unwrap();
                let spec = CounterSpec {
                    type_id: 3,
                    key: b"",
                    label: "ab",
                    registration_id: 9,
                    owner_id: 0,
                    reference_id: 0,
                };
                manager.allocate(&spec, 0).unwrap().set(5);
            })
        };
        let reader = CountersReader::new(metadata.buffer(), values.buffer()).unwrap();
        let mut visited = 0;
        while visited == 0 {
            reader.for_each(|info| {
                assert_eq!(info.type_id, 3);
                assert_eq!(info.label, "ab");
                assert_eq!(info.registration_id, 9);
                assert!(info.value == 0 || info.value == 5);
                visited += 1;
            });
            thread::yield_now();
        }
        writer.join().unwrap();
    });
}
