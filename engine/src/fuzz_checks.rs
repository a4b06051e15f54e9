//! The checks the shared-memory fuzz target runs, kept here so that its corpus replays as an
//! ordinary test on stable Rust (`tests/hostile_bytes.rs`) and libFuzzer explores them
//! (`fuzz/fuzz_targets/shared_memory.rs`).
//!
//! Each check writes arbitrary bytes over a structure that other processes write (the command
//! ring, the broadcast buffer, the counters, the error log, a term), exactly as a broken or
//! hostile process could, then runs the reader the driver or a client runs over it. The reader
//! may report errors, skip records or stop; it must never panic or touch memory outside the
//! structure. A check panics only when that contract is broken.

use crate::concurrent::atomic_buffer::AlignedBuffer;
use crate::concurrent::broadcast::{self, BroadcastReceiver};
use crate::concurrent::counters::{CountersReader, METADATA_LENGTH, VALUE_LENGTH};
use crate::concurrent::error_log::read_errors;
use crate::concurrent::ring_buffer::{self, ManyToOneRingBuffer};
use crate::logbuffer::descriptor::{LOG_META_DATA_LENGTH, LogMetadata};
use crate::logbuffer::frame_header::HeaderTemplate;
use crate::logbuffer::term_reader::{self, ControlledAction};
use crate::logbuffer::{term_scanner, unblocker};

/// Bytes of records in the fuzzed ring and broadcast buffers.
const CAPACITY: usize = 1024;
/// Counters in the fuzzed counters region.
const COUNTERS: usize = 4;
/// Bytes in the fuzzed term (the smallest a log allows).
const TERM_LENGTH: usize = 64 * 1024;

/// Fills `memory` with `data`, repeated to the end.
fn fill(memory: &AlignedBuffer, length: usize, data: &[u8]) {
    if data.is_empty() {
        return;
    }
    let buffer = memory.buffer();
    let mut offset = 0;
    while offset < length {
        let chunk = data.len().min(length - offset);
        buffer.put_bytes(offset, &data[..chunk]);
        offset += chunk;
    }
}

/// The first byte picks the structure; the rest is what a broken writer left in it.
pub fn shared_memory(data: &[u8]) {
    let Some((&selector, bytes)) = data.split_first() else {
        return;
    };
    match selector % 5 {
        0 => ring(bytes),
        1 => broadcast(bytes),
        2 => counters(bytes),
        3 => error_log(bytes),
        _ => term(bytes),
    }
}

/// The driver's command reader over a ring whose records and trailer are arbitrary.
pub fn ring(bytes: &[u8]) {
    let length = CAPACITY + ring_buffer::TRAILER_LENGTH;
    let memory = AlignedBuffer::new(length);
    fill(&memory, length, bytes);
    let ring = ManyToOneRingBuffer::new(memory.buffer()).expect("a valid capacity");
    for _ in 0..4 {
        let outcome = ring.read(
            &mut [0u8; CAPACITY],
            |_, body| assert!(body.len() <= CAPACITY),
            64,
        );
        assert!(outcome.skipped_bytes <= 2 * CAPACITY);
    }
    let _ = ring.unblock();
    let _ = ring.size();
}

/// A client's broadcast receiver over arbitrary records and trailer.
pub fn broadcast(bytes: &[u8]) {
    let length = CAPACITY + broadcast::TRAILER_LENGTH;
    let memory = AlignedBuffer::new(length);
    fill(&memory, length, bytes);
    let Ok(mut receiver) = BroadcastReceiver::new(memory.buffer()) else {
        return;
    };
    // The receiver joined at the tail; move the tail (and the intent with it) ahead by an
    // amount from the input, so that it parses the records in between.
    let buffer = memory.buffer();
    let tail_offset = CAPACITY + 8;
    let ahead = bytes.first().map_or(8, |byte| i64::from(*byte) * 8);
    let tail = buffer.get_i64(tail_offset).max(0) & !7;
    buffer.put_i64(tail_offset, tail.saturating_add(ahead));
    buffer.put_i64(CAPACITY, tail.saturating_add(ahead));
    let mut scratch = [0u8; CAPACITY / 8];
    for _ in 0..8 {
        match receiver.receive(&mut scratch, |_, body| assert!(body.len() <= CAPACITY / 8)) {
            Ok(true) => {}
            Ok(false) | Err(_) => break,
        }
    }
}

/// `tern stat`'s reader over arbitrary counter metadata and values.
pub fn counters(bytes: &[u8]) {
    let metadata = AlignedBuffer::new(COUNTERS * METADATA_LENGTH);
    let values = AlignedBuffer::new(COUNTERS * VALUE_LENGTH);
    let (first, second) = bytes.split_at(bytes.len() / 2);
    fill(&metadata, COUNTERS * METADATA_LENGTH, first);
    fill(&values, COUNTERS * VALUE_LENGTH, second);
    let reader =
        CountersReader::new(metadata.buffer(), values.buffer()).expect("a valid counters region");
    reader.for_each(|info| assert!(info.label.len() <= METADATA_LENGTH));
    for id in [-1, 0, 3, 4, i32::MAX] {
        let _ = reader.value(id);
        let _ = reader.owned_counter(id, 1);
        let _ = reader.counter_reader(id);
    }
}

/// `tern errors`' reader over an arbitrary error log.
pub fn error_log(bytes: &[u8]) {
    let memory = AlignedBuffer::new(CAPACITY);
    fill(&memory, CAPACITY, bytes);
    read_errors(memory.buffer(), |error| {
        assert!(error.text.len() <= CAPACITY);
    });
}

/// Subscribers' readers (in place and copying), the sender's scanner and the driver's unblocker
/// over a term and log metadata of arbitrary bytes.
pub fn term(bytes: &[u8]) {
    let memory = AlignedBuffer::new(TERM_LENGTH + LOG_META_DATA_LENGTH);
    fill(&memory, TERM_LENGTH + LOG_META_DATA_LENGTH, bytes);
    let term = memory.buffer().view(0, TERM_LENGTH);
    let metadata = LogMetadata::new(memory.buffer().view(TERM_LENGTH, LOG_META_DATA_LENGTH));
    let start = bytes.first_chunk::<2>().map_or(0, |start| {
        usize::from(u16::from_le_bytes(*start)) * 32 % TERM_LENGTH
    });
    let outcome = term_reader::read(
        &term,
        start,
        64,
        |_| 0,
        |payload, _| assert!(payload.len() < TERM_LENGTH),
    );
    assert!(outcome.term_offset <= TERM_LENGTH);
    let controlled =
        term_reader::read_controlled(&term, start, 64, |_| 0, |_, _| ControlledAction::Continue);
    assert!(controlled.term_offset <= TERM_LENGTH);
    let mut scratch = vec![0u8; 1408];
    let copied = term_reader::read_copied(&term, &metadata, 0, start, 64, &mut scratch, |_, _| {
        ControlledAction::Continue
    });
    assert!(copied.term_offset <= TERM_LENGTH);
    let scan = term_scanner::scan_for_availability(&term, start, 1408);
    assert!(start + scan.available + scan.padding <= TERM_LENGTH);
    let template = HeaderTemplate::new(metadata.default_header());
    let _ = unblocker::unblock(&term, &template, 0, start, TERM_LENGTH);
}
