//! The distinct error log: each distinct error once, with how often it happened and when first
//! and last, so that a storm of one failure cannot push every other out of view.
//!
//! ```text
//! record, 8-byte aligned, appended in order:
//!   0  length                 i32   record bytes, header included; 0 marks the end of the log
//!   4  observation_count      i32   how many times it happened (written with release)
//!   8  last_observation_ms    i64   written with release after the count
//!  16  first_observation_ms   i64
//!  24  text                   UTF-8, `length - 24` bytes
//! ```
//!
//! One writer (the driver, which serialises its agents' errors through `&mut`) appends a record
//! by writing everything but the length, then the length (release). Readers (`tern errors`) read
//! the length (acquire) and stop at the first zero. A repeat of a known error bumps its count
//! and last time in place. When the log is full a new distinct error is dropped and counted
//! (`dropped`), never written over an old one.

use super::atomic_buffer::AtomicBuffer;
use super::ring_buffer::align;

/// Bytes before an error's text.
pub const RECORD_HEADER_LENGTH: usize = 24;
/// The longest text kept; longer texts are cut on a character boundary.
pub const TEXT_MAX_LENGTH: usize = 4096;

const LENGTH_OFFSET: usize = 0;
const COUNT_OFFSET: usize = 4;
const LAST_OFFSET: usize = 8;
const FIRST_OFFSET: usize = 16;

/// One distinct error as a reader sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ErrorObservation<'t> {
    /// How many times it happened.
    pub count: i32,
    /// When it first happened (ms since the epoch).
    pub first_observation_ms: i64,
    /// When it last happened.
    pub last_observation_ms: i64,
    /// What happened.
    pub text: &'t str,
}

/// Appends distinct errors: one writer.
#[derive(Debug)]
pub struct DistinctErrorLog<'a> {
    buffer: AtomicBuffer<'a>,
    next_offset: usize,
    dropped: u64,
}

impl<'a> DistinctErrorLog<'a> {
    /// Starts a log over `buffer` (zeroed, or a log this writer resumes: appending continues after
    /// its last record).
    pub fn new(buffer: AtomicBuffer<'a>) -> Self {
        let mut next_offset = 0;
        while next_offset + RECORD_HEADER_LENGTH <= buffer.capacity() {
            let length = usize::try_from(buffer.get_i32_volatile(next_offset)).unwrap_or(0);
            if length == 0 {
                break;
            }
            next_offset += align(length);
        }
        Self {
            buffer,
            next_offset,
            dropped: 0,
        }
    }

    /// Distinct errors that did not fit.
    pub fn dropped(&self) -> u64 {
        self.dropped
    }

    /// Records `text` at `now_ms`. Returns false when it is new and the log is full.
    pub fn record(&mut self, now_ms: i64, text: &str) -> bool {
        let text = super::truncate_utf8(text, TEXT_MAX_LENGTH);
        if let Some(offset) = self.find(text) {
            let count = self.buffer.get_i32(offset + COUNT_OFFSET);
            self.buffer
                .put_i32_ordered(offset + COUNT_OFFSET, count.saturating_add(1));
            self.buffer.put_i64_ordered(offset + LAST_OFFSET, now_ms);
            return true;
        }
        let length = RECORD_HEADER_LENGTH + text.len();
        let offset = self.next_offset;
        if offset + align(length) > self.buffer.capacity() {
            self.dropped += 1;
            return false;
        }
        self.buffer.put_i32(offset + COUNT_OFFSET, 1);
        self.buffer.put_i64(offset + LAST_OFFSET, now_ms);
        self.buffer.put_i64(offset + FIRST_OFFSET, now_ms);
        self.buffer
            .put_bytes(offset + RECORD_HEADER_LENGTH, text.as_bytes());
        // Publishes the record: pairs with the acquire load of the length in `read_errors`.
        self.buffer.put_i32_ordered(
            offset + LENGTH_OFFSET,
            i32::try_from(length).expect("records are at most 4 KiB"),
        );
        self.next_offset = offset + align(length);
        true
    }

    /// The record holding `text`. The lengths walked lie in memory any process can write, so
    /// each is checked against the end of the log, and the text is compared from a copy.
    fn find(&self, text: &str) -> Option<usize> {
        let mut stored = [0u8; TEXT_MAX_LENGTH];
        let stored = &mut stored[..text.len()];
        let mut offset = 0;
        while offset < self.next_offset {
            let length = usize::try_from(self.buffer.get_i32(offset)).unwrap_or(0);
            if length > self.buffer.capacity() - offset {
                return None;
            }
            if length == RECORD_HEADER_LENGTH + text.len() {
                self.buffer.get_bytes(offset + RECORD_HEADER_LENGTH, stored);
                if stored == text.as_bytes() {
                    return Some(offset);
                }
            }
            offset += align(length.max(RECORD_HEADER_LENGTH));
        }
        None
    }
}

/// Visits every error in `buffer` in the order first seen; returns how many. Any process.
pub fn read_errors(buffer: AtomicBuffer<'_>, mut visit: impl FnMut(ErrorObservation<'_>)) -> usize {
    let mut text = vec![0u8; TEXT_MAX_LENGTH];
    let mut offset = 0;
    let mut count = 0;
    while offset + RECORD_HEADER_LENGTH <= buffer.capacity() {
        // Pairs with the release store of the length in `DistinctErrorLog::record`.
        let length = usize::try_from(buffer.get_i32_volatile(offset + LENGTH_OFFSET)).unwrap_or(0);
        if length < RECORD_HEADER_LENGTH || offset + length > buffer.capacity() {
            break;
        }
        let text_length = (length - RECORD_HEADER_LENGTH).min(TEXT_MAX_LENGTH);
        buffer.get_bytes(offset + RECORD_HEADER_LENGTH, &mut text[..text_length]);
        visit(ErrorObservation {
            count: buffer.get_i32_volatile(offset + COUNT_OFFSET),
            last_observation_ms: buffer.get_i64_volatile(offset + LAST_OFFSET),
            first_observation_ms: buffer.get_i64(offset + FIRST_OFFSET),
            text: std::str::from_utf8(&text[..text_length]).unwrap_or("<error text is not UTF-8>"),
        });
        count += 1;
        offset += align(length);
    }
    count
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;
    use crate::concurrent::atomic_buffer::AlignedBuffer;

    fn read(buffer: AtomicBuffer<'_>) -> Vec<(i32, i64, i64, String)> {
        let mut out = Vec::new();
        read_errors(buffer, |error| {
            out.push((
                error.count,
                error.first_observation_ms,
                error.last_observation_ms,
                error.text.to_owned(),
            ))
        });
        out
    }

    #[test]
    fn repeats_are_counted_not_repeated() {
        let memory = AlignedBuffer::new(1024);
        let mut log = DistinctErrorLog::new(memory.buffer());
        assert!(log.record(10, "bad frame from 10.0.0.1"));
        assert!(log.record(11, "client 7 timed out"));
        assert!(log.record(12, "bad frame from 10.0.0.1"));
        assert!(log.record(15, "bad frame from 10.0.0.1"));
        assert_eq!(
            read(memory.buffer()),
            [
                (3, 10, 15, "bad frame from 10.0.0.1".to_owned()),
                (1, 11, 11, "client 7 timed out".to_owned()),
            ]
        );
        // A writer that resumes the log appends after what is there.
        let mut resumed = DistinctErrorLog::new(memory.buffer());
        resumed.record(20, "third");
        assert_eq!(read(memory.buffer()).len(), 3);
    }

    #[test]
    fn a_full_log_drops_new_errors_and_keeps_old_ones() {
        let memory = AlignedBuffer::new(64);
        let mut log = DistinctErrorLog::new(memory.buffer());
        assert!(log.record(1, "first error"));
        assert!(!log.record(2, "a second error that does not fit"));
        assert_eq!(log.dropped(), 1);
        assert!(log.record(3, "first error"));
        assert_eq!(read(memory.buffer()), [(2, 1, 3, "first error".to_owned())]);
    }
}
