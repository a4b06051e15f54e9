//! Many threads against the shared-memory structures: every message arrives exactly once, in
//! order per producer, intact; a broadcast receiver either sees every message in order or
//! reports that it was lapped, never a torn one.
#![cfg(not(loom))]

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use tern_engine::concurrent::atomic_buffer::AlignedBuffer;
use tern_engine::concurrent::broadcast::{
    BroadcastError, BroadcastReceiver, BroadcastTransmitter, TRAILER_LENGTH as BROADCAST_TRAILER,
};
use tern_engine::concurrent::counters::{
    CounterSpec, CountersManager, METADATA_LENGTH, VALUE_LENGTH,
};
use tern_engine::concurrent::ring_buffer::{ManyToOneRingBuffer, TRAILER_LENGTH, WriteError};

const PRODUCERS: u32 = 4;
const MESSAGES: u32 = 100_000;
const DEADLINE: Duration = Duration::from_secs(60);

fn body(producer: u32, sequence: u32) -> [u8; 12] {
    let mut body = [0u8; 12];
    body[..4].copy_from_slice(&producer.to_le_bytes());
    body[4..8].copy_from_slice(&sequence.to_le_bytes());
    body[8..].copy_from_slice(&(producer ^ sequence.rotate_left(7)).to_le_bytes());
    body
}

#[test]
fn many_producers_one_consumer_exactly_once_in_order() {
    let memory = Arc::new(AlignedBuffer::new(4096 + TRAILER_LENGTH));
    let producers: Vec<_> = (0..PRODUCERS)
        .map(|producer| {
            let memory = Arc::clone(&memory);
            thread::spawn(move || {
                let ring = ManyToOneRingBuffer::new(memory.buffer()).unwrap();
                let start = Instant::now();
                for sequence in 0..MESSAGES {
                    loop {
                        match ring.write(1, &body(producer, sequence)) {
                            Ok(()) => break,
                            Err(WriteError::Full) => {
                                assert!(start.elapsed() < DEADLINE, "consumer stalled");
                                thread::yield_now();
                            }
                            Err(error) => panic!("{error}"),
                        }
                    }
                }
            })
        })
        .collect();

    let ring = ManyToOneRingBuffer::new(memory.buffer()).unwrap();
    let mut next = [0u32; PRODUCERS as usize];
    let mut received = 0;
    let start = Instant::now();
    while received < PRODUCERS * MESSAGES {
        let read = ring
            .read(
                &mut vec![0u8; 1 << 16],
                |kind, bytes| {
                    assert_eq!(kind, 1);
                    let producer = u32::from_le_bytes(bytes[..4].try_into().unwrap());
                    let sequence = u32::from_le_bytes(bytes[4..8].try_into().unwrap());
                    assert_eq!(bytes, body(producer, sequence), "payload intact");
                    assert_eq!(sequence, next[producer as usize], "in order per producer");
                    next[producer as usize] += 1;
                },
                64,
            )
            .messages;
        received += u32::try_from(read).unwrap();
        if read == 0 {
            assert!(
                start.elapsed() < DEADLINE,
                "producers stalled at {received}"
            );
            thread::yield_now();
        }
    }
    for producer in producers {
        producer.join().unwrap();
    }
    assert_eq!(next, [MESSAGES; PRODUCERS as usize]);
    assert_eq!(ring.size(), 0);
}

#[test]
fn broadcast_receivers_see_order_or_report_a_lap() {
    let memory = Arc::new(AlignedBuffer::new(1024 + BROADCAST_TRAILER));
    let done = Arc::new(AtomicBool::new(false));
    let ready = Arc::new(AtomicUsize::new(0));
    let receivers: Vec<_> = (0..2)
        .map(|_| {
            let memory = Arc::clone(&memory);
            let done = Arc::clone(&done);
            let ready = Arc::clone(&ready);
            thread::spawn(move || {
                let mut receiver = BroadcastReceiver::new(memory.buffer()).unwrap();
                ready.fetch_add(1, Ordering::AcqRel);
                let mut scratch = [0u8; 64];
                let mut last: Option<u32> = None;
                let mut received = 0_u64;
                let mut lapped_last = false;
                loop {
                    let finished = done.load(Ordering::Acquire);
                    match receiver.receive(&mut scratch, |_, bytes| {
                        let sequence = u32::from_le_bytes(bytes[4..8].try_into().unwrap());
                        assert_eq!(bytes, body(9, sequence), "never a torn message");
                        if let Some(last) = last {
                            assert!(sequence > last, "in order");
                        }
                        last = Some(sequence);
                        received += 1;
                    }) {
                        Ok(true) => lapped_last = false,
                        Ok(false) if finished => return (last, received, lapped_last),
                        Ok(false) => thread::yield_now(),
                        Err(BroadcastError::Lapped { .. }) => {
                            // Rejoin at the latest record, as a client that restarts would.
                            lapped_last = true;
                            receiver = BroadcastReceiver::new(memory.buffer()).unwrap();
                        }
                        Err(error) => panic!("{error}"),
                    }
                }
            })
        })
        .collect();
    let mut transmitter = BroadcastTransmitter::new(memory.buffer()).unwrap();
    while ready.load(Ordering::Acquire) < 2 {
        thread::yield_now();
    }
    for sequence in 0..MESSAGES {
        transmitter.transmit(2, &body(9, sequence)).unwrap();
        if sequence % 16 == 0 {
            // Give receivers on a two-core machine a chance to keep up some of the time.
            thread::yield_now();
        }
    }
    done.store(true, Ordering::Release);
    let mut total = 0;
    for receiver in receivers {
        let (last, received, lapped_last) = receiver.join().unwrap();
        total += received;
        // A receiver that kept up ends at the last message; one lapped at the end rejoined at
        // the tail, after which nothing was left to read.
        assert!(
            last == Some(MESSAGES - 1) || lapped_last,
            "ended at {last:?} without being lapped"
        );
    }
    assert!(total > 0, "the receivers received something");
}

#[test]
fn counters_increment_from_many_threads() {
    let metadata = AlignedBuffer::new(8 * METADATA_LENGTH);
    let values = AlignedBuffer::new(8 * VALUE_LENGTH);
    let mut manager = CountersManager::new(metadata.buffer(), values.buffer(), 0).unwrap();
    let spec = CounterSpec {
        type_id: 1,
        key: b"",
        label: "frames",
        registration_id: 1,
        owner_id: 0,
        reference_id: 0,
    };
    let counter = manager.allocate(&spec, 0).unwrap();
    thread::scope(|scope| {
        for _ in 0..4 {
            scope.spawn(|| {
                for _ in 0..100_000 {
                    counter.increment(1);
                }
            });
        }
    });
    assert_eq!(manager.reader().value(counter.id()), 400_000);
}
