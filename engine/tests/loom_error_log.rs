//! Loom model of the distinct error log: a reader that sees a record sees all of it (its
//! text and a count of at least one), never a half-written one.
//!
//! `RUSTFLAGS="--cfg loom" cargo test -p tern-engine --release --test loom_error_log`
#![cfg(loom)]

use loom::sync::Arc;
use loom::thread;
use tern_engine::concurrent::atomic_buffer::AlignedBuffer;
use tern_engine::concurrent::error_log::{DistinctErrorLog, read_errors};

#[test]
fn a_published_error_is_whole() {
    let mut builder = loom::model::Builder::new();
    builder.preemption_bound = Some(2);
    builder.max_branches = 100_000;
    builder.check(|| {
        let memory = Arc::new(AlignedBuffer::new(128));
        let writer = {
            let memory = Arc::clone(&memory);
            thread::spawn(move || {
                let mut log = DistinctErrorLog::new(memory.buffer());
                log.record(5, "ab");
                log.record(6, "ab");
            })
        };
        let mut seen = 0;
        while seen == 0 {
            read_errors(memory.buffer(), |error| {
                assert_eq!(error.text, "ab");
                assert!(error.count >= 1);
                assert_eq!(error.first_observation_ms, 5);
                assert!(error.last_observation_ms >= 5);
                seen += 1;
            });
            thread::yield_now();
        }
        writer.join().unwrap();
    });
}
