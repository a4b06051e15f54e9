//! Loom model of the broadcast buffer: in every interleaving a receiver either reads each
//! message in order and intact, or reports that it was lapped; it never hands out a torn one.
//!
//! `RUSTFLAGS="--cfg loom" cargo test -p tern-engine --release --test loom_broadcast`
#![cfg(loom)]

use loom::sync::Arc;
use loom::thread;
use tern_engine::concurrent::atomic_buffer::AlignedBuffer;
use tern_engine::concurrent::broadcast::{
    BroadcastError, BroadcastReceiver, BroadcastTransmitter, TRAILER_LENGTH,
};

#[test]
fn receiver_reads_in_order_or_reports_a_lap() {
    let mut builder = loom::model::Builder::new();
    builder.preemption_bound = Some(3);
    builder.check(|| {
        let memory = Arc::new(AlignedBuffer::new(32 + TRAILER_LENGTH));
        let mut receiver = BroadcastReceiver::new(memory.buffer()).unwrap();
        let transmitter = {
            let memory = Arc::clone(&memory);
            thread::spawn(move || {
                let mut transmitter = BroadcastTransmitter::new(memory.buffer()).unwrap();
                for round in 1..=3u8 {
                    // Each message's bytes all equal its round: a torn read would mix rounds.
                    transmitter.transmit(1, &[round, round]).unwrap();
                }
            })
        };
        let mut scratch = [0u8; 8];
        let mut last = 0;
        for _ in 0..6 {
            match receiver.receive(&mut scratch, |_, body| {
                assert_eq!(body[0], body[1], "a torn message was handed out");
                assert!(body[0] > last, "out of order");
                last = body[0];
            }) {
                Ok(_) => {}
                Err(BroadcastError::Lapped { .. }) => break,
                Err(error) => panic!("{error}"),
            }
            thread::yield_now();
        }
        transmitter.join().unwrap();
    });
}
