//! A bounded single-producer single-consumer queue of Rust values between two threads of one
//! process: how the driver's conductor hands work to its sender and receiver agents.
//!
//! The producer and the consumer are each one value ([`Producer`], [`Consumer`]), neither
//! `Clone`, so the type system keeps each end on one thread at a time. Slots are allocated once
//! by [`channel`]; `offer` and `poll` allocate nothing, take no lock and make no system call.
//!
//! ```text
//! tail (producer writes, Release)   head (consumer writes, Release)   each on its own 128 bytes
//! slots[position & mask]            written by the producer before it publishes the tail,
//!                                   read by the consumer before it publishes the head
//! ```
//!
//! Each end keeps a private copy of the other end's position and reloads the shared one only
//! when the queue looks full (producer) or empty (consumer), so the two threads share a cache
//! line only when they must.

use std::mem::MaybeUninit;

#[cfg(loom)]
use loom::sync::Arc;
#[cfg(not(loom))]
use std::sync::Arc;

use super::CachePadded;
use crate::sync::{AtomicU64, Ordering, UnsafeCell};

/// The largest capacity a queue may have.
pub const CAPACITY_MAX: usize = 1 << 20;

struct Shared<T> {
    /// The next position the producer writes; written by the producer only.
    tail: CachePadded<AtomicU64>,
    /// The next position the consumer reads; written by the consumer only.
    head: CachePadded<AtomicU64>,
    slots: Box<[UnsafeCell<MaybeUninit<T>>]>,
    mask: u64,
}

// SAFETY: a value moves from the producer's thread to the consumer's thread through a slot;
// each slot is accessed by one side at a time, handed over by the Release/Acquire pairs on
// `tail` and `head`. Moving values across threads needs `T: Send`; nothing is shared by
// reference, so `Sync` of `T` is not needed.
unsafe impl<T: Send> Send for Shared<T> {}
// SAFETY: as above: `&Shared` gives access to a slot only through the protocol of `Producer` and
// `Consumer`, of which there is one each.
unsafe impl<T: Send> Sync for Shared<T> {}

/// The producing end.
pub struct Producer<T> {
    shared: Arc<Shared<T>>,
    tail: u64,
    head_cache: u64,
}

/// The consuming end.
pub struct Consumer<T> {
    shared: Arc<Shared<T>>,
    head: u64,
    tail_cache: u64,
}

/// A queue of `capacity` slots (a power of two from 2 to [`CAPACITY_MAX`]).
pub fn channel<T: Send>(capacity: usize) -> (Producer<T>, Consumer<T>) {
    assert!(
        capacity.is_power_of_two() && (2..=CAPACITY_MAX).contains(&capacity),
        "a queue's capacity is a power of two from 2 to {CAPACITY_MAX}, not {capacity}"
    );
    let slots = (0..capacity)
        .map(|_| UnsafeCell::new(MaybeUninit::uninit()))
        .collect();
    let shared = Arc::new(Shared {
        tail: CachePadded(AtomicU64::new(0)),
        head: CachePadded(AtomicU64::new(0)),
        slots,
        mask: u64::try_from(capacity - 1).unwrap_or(0),
    });
    (
        Producer {
            shared: Arc::clone(&shared),
            tail: 0,
            head_cache: 0,
        },
        Consumer {
            shared,
            head: 0,
            tail_cache: 0,
        },
    )
}

impl<T> Shared<T> {
    fn capacity(&self) -> u64 {
        self.mask + 1
    }

    fn slot(&self, position: u64) -> &UnsafeCell<MaybeUninit<T>> {
        // The mask keeps the index below the slot count, which fits usize.
        &self.slots[usize::try_from(position & self.mask).unwrap_or(0)]
    }
}

impl<T: Send> Producer<T> {
    /// Appends `value`, or gives it back if the queue is full.
    pub fn offer(&mut self, value: T) -> Result<(), T> {
        let shared = &*self.shared;
        if self.tail - self.head_cache >= shared.capacity() {
            // Pairs with the consumer's Release store of the head: the slots it freed are read.
            self.head_cache = shared.head.load(Ordering::Acquire);
            if self.tail - self.head_cache >= shared.capacity() {
                return Err(value);
            }
        }
        // SAFETY: positions in [head, tail) belong to the consumer and this one is outside them
        // (tail - head < capacity), so no other access to this slot is in progress; the
        // consumer finished reading it before publishing the head loaded above.
        shared
            .slot(self.tail)
            .with_mut(|slot| unsafe { slot.write(MaybeUninit::new(value)) });
        self.tail += 1;
        // Pairs with the consumer's Acquire load: the value is written before it is visible.
        shared.tail.store(self.tail, Ordering::Release);
        Ok(())
    }

    /// How many more values fit now (the consumer may free more at any time).
    pub fn remaining(&self) -> usize {
        let head = self.shared.head.load(Ordering::Acquire);
        usize::try_from(self.shared.capacity() - (self.tail - head)).unwrap_or(0)
    }
}

impl<T: Send> Consumer<T> {
    /// Takes the oldest value, if there is one.
    pub fn poll(&mut self) -> Option<T> {
        let shared = &*self.shared;
        if self.head == self.tail_cache {
            // Pairs with the producer's Release store of the tail: the value is visible.
            self.tail_cache = shared.tail.load(Ordering::Acquire);
            if self.head == self.tail_cache {
                return None;
            }
        }
        // SAFETY: head < tail, so the producer wrote this slot and published it (the Acquire
        // load above), and will not write it again until the head passes it (below). The value
        // is read out once; the slot is logically uninitialised from here on.
        let value = shared
            .slot(self.head)
            .with_mut(|slot| unsafe { slot.read().assume_init() });
        self.head += 1;
        // Pairs with the producer's Acquire load of the head: the slot is free to reuse.
        shared.head.store(self.head, Ordering::Release);
        Some(value)
    }

    /// Takes up to `limit` values in order, giving each to `handle`; returns how many.
    pub fn drain(&mut self, limit: usize, mut handle: impl FnMut(T)) -> usize {
        let mut taken = 0;
        while taken < limit {
            let Some(value) = self.poll() else { break };
            handle(value);
            taken += 1;
        }
        taken
    }
}

impl<T> Drop for Shared<T> {
    fn drop(&mut self) {
        // Both ends are gone (this is the last Arc), so every store is visible and nothing
        // else touches the slots. Drop the values offered and never polled.
        let head = self.head.load(Ordering::Acquire);
        let tail = self.tail.load(Ordering::Acquire);
        for position in head..tail {
            // SAFETY: positions in [head, tail) hold values written and not read; each is
            // dropped once, here, and the slots are never read again.
            self.slot(position)
                .with_mut(|slot| unsafe { (*slot).assume_init_drop() });
        }
    }
}

impl<T> std::fmt::Debug for Producer<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Producer")
            .field("tail", &self.tail)
            .finish()
    }
}

impl<T> std::fmt::Debug for Consumer<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Consumer")
            .field("head", &self.head)
            .finish()
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;

    #[test]
    fn values_arrive_in_order_and_a_full_queue_gives_the_value_back() {
        let (mut producer, mut consumer) = channel::<String>(4);
        for round in 0..3 {
            for index in 0..4 {
                producer.offer(format!("{round}-{index}")).unwrap();
            }
            assert_eq!(producer.offer("extra".to_owned()), Err("extra".to_owned()));
            assert_eq!(producer.remaining(), 0);
            let mut seen = Vec::new();
            assert_eq!(consumer.drain(3, |value| seen.push(value)), 3);
            assert_eq!(
                consumer.poll().as_deref(),
                Some(format!("{round}-3").as_str())
            );
            assert_eq!(seen, [0, 1, 2].map(|index| format!("{round}-{index}")));
            assert_eq!(consumer.poll(), None);
        }
    }

    #[test]
    fn values_never_polled_are_dropped_with_the_queue() {
        let value = Arc::new(());
        let (mut producer, consumer) = channel::<Arc<()>>(2);
        producer.offer(Arc::clone(&value)).unwrap();
        producer.offer(Arc::clone(&value)).unwrap();
        assert_eq!(Arc::strong_count(&value), 3);
        drop(producer);
        assert_eq!(
            Arc::strong_count(&value),
            3,
            "the consumer still holds the queue"
        );
        drop(consumer);
        assert_eq!(Arc::strong_count(&value), 1);
    }

    #[test]
    #[should_panic(expected = "power of two")]
    fn a_capacity_that_is_not_a_power_of_two_is_refused() {
        let _ = channel::<u8>(3);
    }

    #[test]
    fn a_million_values_cross_threads_in_order() {
        let (mut producer, mut consumer) = channel::<u64>(64);
        let writer = std::thread::spawn(move || {
            for value in 0..1_000_000u64 {
                let mut pending = value;
                while let Err(back) = producer.offer(pending) {
                    pending = back;
                    std::thread::yield_now();
                }
            }
        });
        let mut expected = 0;
        while expected < 1_000_000 {
            match consumer.poll() {
                Some(value) => {
                    assert_eq!(value, expected);
                    expected += 1;
                }
                None => std::thread::yield_now(),
            }
        }
        writer.join().unwrap();
    }
}
