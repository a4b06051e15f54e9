//! Shared-memory primitives: the structures through which the driver and its clients talk.
//!
//! | structure | writers | readers |
//! |---|---|---|
//! | [`ManyToOneRingBuffer`](ring_buffer::ManyToOneRingBuffer) | every client | the driver's conductor |
//! | [`BroadcastTransmitter`](broadcast::BroadcastTransmitter) / [`BroadcastReceiver`](broadcast::BroadcastReceiver) | the driver's conductor | every client |
//! | [`CountersManager`](counters::CountersManager) metadata / each [`Counter`](counters::Counter) value | the conductor / the counter's owner | anyone (`tern stat`) |
//! | [`DistinctErrorLog`](error_log::DistinctErrorLog) | the driver | anyone (`tern errors`) |
//! | [`spsc_queue`] | one thread (the driver's conductor) | one thread (the sender or the receiver) |
//!
//! Each but the queue is a view over an [`AtomicBuffer`](atomic_buffer::AtomicBuffer), whether
//! that memory is a heap allocation (an embedded driver, tests) or a memory-mapped file shared
//! between processes; the queue carries Rust values between threads of one process. None
//! allocates after construction, takes a lock or makes a system call.

pub mod atomic_buffer;
pub mod broadcast;
pub mod counters;
pub mod error_log;
pub mod ring_buffer;
pub mod spsc_queue;

/// A value alone on a 128-byte slot (two cache lines, for the adjacent-line prefetcher), so
/// that writes near it do not evict it.
#[repr(align(128))]
#[derive(Debug, Default)]
pub struct CachePadded<T>(pub T);

impl<T> std::ops::Deref for CachePadded<T> {
    type Target = T;

    fn deref(&self) -> &T {
        &self.0
    }
}

/// A length of shared memory as a position delta. Mapped memory is far smaller than `i64::MAX`.
#[inline]
pub(crate) fn as_position(length: usize) -> i64 {
    i64::try_from(length).expect("lengths of mapped memory fit i64")
}

/// The index of `position` in a power-of-two buffer whose `mask` is its capacity less one.
#[inline]
pub(crate) fn masked_index(position: i64, mask: i64) -> usize {
    // The masked value lies in 0..capacity, so it is non-negative and fits usize.
    usize::try_from(position & mask).unwrap_or(0)
}

/// `text` cut to at most `max` bytes on a character boundary, for fixed-size text fields.
pub fn truncate_utf8(text: &str, max: usize) -> &str {
    if text.len() <= max {
        return text;
    }
    let mut end = max;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    &text[..end]
}
