//! Loom model of the many-to-one ring buffer: every interleaving of two producers and the
//! consumer (up to the preemption bound) delivers each record once, intact, in order per
//! producer, including across the wrap.
//!
//! `RUSTFLAGS="--cfg loom" cargo test -p tern-engine --release --test loom_ring_buffer`
#![cfg(loom)]

use loom::sync::Arc;
use loom::thread;
use tern_engine::concurrent::atomic_buffer::AlignedBuffer;
use tern_engine::concurrent::ring_buffer::{ManyToOneRingBuffer, TRAILER_LENGTH, WriteError};

fn model(test: impl Fn() + Sync + Send + 'static) {
    let mut builder = loom::model::Builder::new();
    builder.preemption_bound = Some(3);
    builder.check(test);
}

fn write_retrying(ring: &ManyToOneRingBuffer<'_>, kind: i32, body: &[u8]) {
    loop {
        match ring.write(kind, body) {
            Ok(()) => return,
            Err(WriteError::Full) => thread::yield_now(),
            Err(error) => panic!("{error}"),
        }
    }
}

#[test]
fn two_producers_one_consumer() {
    model(|| {
        let memory = Arc::new(AlignedBuffer::new(32 + TRAILER_LENGTH));
        let producers: Vec<_> = [1, 2]
            .into_iter()
            .map(|kind| {
                let memory = Arc::clone(&memory);
                thread::spawn(move || {
                    let ring = ManyToOneRingBuffer::new(memory.buffer()).unwrap();
                    write_retrying(&ring, kind, &[u8::try_from(kind).unwrap() * 10]);
                })
            })
            .collect();
        let ring = ManyToOneRingBuffer::new(memory.buffer()).unwrap();
        let mut seen = Vec::new();
        while seen.len() < 2 {
            if ring
                .read(
                    &mut vec![0u8; 1 << 16],
                    |kind, body| seen.push((kind, body.to_vec())),
                    10,
                )
                .messages
                == 0
            {
                thread::yield_now();
            }
        }
        for producer in producers {
            producer.join().unwrap();
        }
        seen.sort();
        assert_eq!(seen, [(1, vec![10]), (2, vec![20])]);
    });
}

#[test]
fn one_producer_wraps_past_the_consumer() {
    model(|| {
        let memory = Arc::new(AlignedBuffer::new(32 + TRAILER_LENGTH));
        let producer = {
            let memory = Arc::clone(&memory);
            thread::spawn(move || {
                let ring = ManyToOneRingBuffer::new(memory.buffer()).unwrap();
                for round in 1..=3u8 {
                    write_retrying(&ring, 1, &[round]);
                }
            })
        };
        let ring = ManyToOneRingBuffer::new(memory.buffer()).unwrap();
        let mut seen = Vec::new();
        while seen.len() < 3 {
            if ring
                .read(&mut vec![0u8; 1 << 16], |_, body| seen.push(body[0]), 1)
                .messages
                == 0
            {
                thread::yield_now();
            }
        }
        producer.join().unwrap();
        assert_eq!(seen, [1, 2, 3]);
    });
}
