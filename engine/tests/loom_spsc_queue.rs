//! Loom model of the conductor-to-agent queue: in every interleaving (up to the preemption
//! bound) of the producer and the consumer, each value arrives once, in order, across the wrap
//! of a two-slot queue, and values never polled are dropped with the queue.
//!
//! `RUSTFLAGS="--cfg loom" cargo test -p tern-engine --release --test loom_spsc_queue`
#![cfg(loom)]

use loom::sync::Arc;
use loom::thread;
use tern_engine::concurrent::spsc_queue::channel;

fn model(test: impl Fn() + Sync + Send + 'static) {
    let mut builder = loom::model::Builder::new();
    builder.preemption_bound = Some(3);
    builder.check(test);
}

#[test]
fn three_values_through_two_slots_arrive_once_in_order() {
    model(|| {
        let (mut producer, mut consumer) = channel::<Box<u32>>(2);
        let writer = thread::spawn(move || {
            for value in 1..=3u32 {
                let mut pending = Box::new(value);
                while let Err(back) = producer.offer(pending) {
                    pending = back;
                    thread::yield_now();
                }
            }
        });
        let mut seen = Vec::new();
        while seen.len() < 3 {
            match consumer.poll() {
                Some(value) => seen.push(*value),
                None => thread::yield_now(),
            }
        }
        writer.join().unwrap();
        assert_eq!(seen, [1, 2, 3]);
    });
}

#[test]
fn values_left_in_the_queue_are_dropped_once() {
    model(|| {
        let token = Arc::new(());
        let (mut producer, mut consumer) = channel::<Arc<()>>(2);
        let sent = Arc::clone(&token);
        let writer = thread::spawn(move || {
            producer.offer(Arc::clone(&sent)).unwrap();
            producer.offer(sent).unwrap();
        });
        let taken = consumer.poll();
        writer.join().unwrap();
        drop(taken);
        drop(consumer);
        assert_eq!(Arc::strong_count(&token), 1);
    });
}
