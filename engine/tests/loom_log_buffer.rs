//! Loom models of the log buffer, through the same code paths production runs. Under loom every
//! access of `AtomicBuffer` is a checked atomic, plain byte copies included (production copies
//! payloads with `memcpy`, which loom cannot model): the models check the orderings, fences and
//! the clean-position protocol, not the formal race between a publisher's plain copy and a
//! lapped reader's atomic loads (see the note in `term_reader::read_copied`).
//!
//! - two publishers append by atomic add, one of them through a term end (padding, trip,
//!   rotation), while a subscriber reads in place: every message once, in order per publisher,
//!   never a frame before it is published;
//! - the cleaner announces, zeroes a term and a publisher rewrites it while a lapped subscriber
//!   copies a frame out of it: the copy is delivered only if it is the original frame, whole;
//!   otherwise the reader reports it was lapped. Never a zeroed, rewritten or mixed frame.
//!
//! Terms here are 64 bytes (two 32-byte frames), far below a real log's 64 KiB, so that the
//! models stay small; the appender, reader and cleaner take their term length from the memory
//! they are given.
//!
//! `RUSTFLAGS="--cfg loom" cargo test -p tern-engine --release --test loom_log_buffer`
#![cfg(loom)]

use loom::sync::Arc;
use loom::thread;
use tern_engine::concurrent::atomic_buffer::{AlignedBuffer, AtomicBuffer};
use tern_engine::logbuffer::descriptor::{
    LOG_META_DATA_LENGTH, LogMetadata, LogParameters, index_by_term_count, zero_slots,
};
use tern_engine::logbuffer::frame_header::{HeaderTemplate, publish};
use tern_engine::logbuffer::term_appender::{Appended, TermAppender};
use tern_engine::logbuffer::term_reader::{self, ControlledAction};

const TERM_LENGTH: usize = 64;

fn model(test: impl Fn() + Sync + Send + 'static) {
    let mut builder = loom::model::Builder::new();
    builder.preemption_bound = Some(2);
    builder.check(test);
}

struct Log {
    memory: AlignedBuffer,
}

impl Log {
    fn new() -> Self {
        let log = Self {
            memory: AlignedBuffer::new(3 * TERM_LENGTH + LOG_META_DATA_LENGTH),
        };
        log.metadata().initialise(&LogParameters {
            term_length: 65536, // what the metadata declares; the models use their own terms
            initial_term_id: 0,
            mtu: 1408,
            page_size: 4096,
            correlation_id: 1,
            session_id: 7,
            stream_id: 1,
            publication_window: 32,
        });
        log
    }

    fn term(&self, index: usize) -> AtomicBuffer<'_> {
        self.memory.buffer().view(index * TERM_LENGTH, TERM_LENGTH)
    }

    fn metadata(&self) -> LogMetadata<'_> {
        LogMetadata::new(
            self.memory
                .buffer()
                .view(3 * TERM_LENGTH, LOG_META_DATA_LENGTH),
        )
    }

    fn template(&self) -> HeaderTemplate {
        HeaderTemplate::new(self.metadata().default_header())
    }

    /// Appends an empty message whose reserved value names it, rotating on a trip.
    fn offer(&self, name: i64) {
        loop {
            let term_count = self.metadata().active_term_count();
            let index = index_by_term_count(i64::from(term_count));
            let appender = TermAppender::new(self.term(index), self.metadata(), index);
            match appender.append(&self.template(), &[], 1376, name) {
                Appended::Ok { .. } => return,
                Appended::Tripped { term_id } => {
                    self.metadata().rotate(term_count, term_id);
                }
            }
        }
    }
}

#[test]
fn publishers_through_a_rotation_and_an_in_place_reader() {
    model(|| {
        let log = Arc::new(Log::new());
        let first = {
            let log = Arc::clone(&log);
            thread::spawn(move || {
                log.offer(11);
                log.offer(12);
            })
        };
        let second = {
            let log = Arc::clone(&log);
            thread::spawn(move || log.offer(21))
        };
        // The subscriber reads term 0 while the publishers run (it sees only published
        // frames), then, once they are done, the rest of term 0 and term 1.
        let mut seen = Vec::new();
        let read = |index: usize, offset: usize, seen: &mut Vec<i64>| {
            term_reader::read(
                &log.term(index),
                offset,
                4,
                |_| 0,
                |payload, header| {
                    assert!(payload.is_empty());
                    assert_eq!(header.term_id, i32::try_from(index).unwrap());
                    seen.push(header.reserved_value);
                },
            )
            .term_offset
        };
        let offset = read(0, 0, &mut seen);
        first.join().unwrap();
        second.join().unwrap();
        assert_eq!(
            read(0, offset, &mut seen),
            TERM_LENGTH,
            "term 0 is full or padded"
        );
        read(1, 0, &mut seen);
        assert_eq!(seen.len(), 3, "each message once: {seen:?}");
        let first_publisher: Vec<i64> = seen.iter().copied().filter(|name| *name < 20).collect();
        assert_eq!(
            first_publisher,
            [11, 12],
            "in order per publisher: {seen:?}"
        );
        assert!(seen.contains(&21), "{seen:?}");
    });
}

#[test]
fn a_lapped_copying_reader_never_delivers_a_cleaned_or_rewritten_frame() {
    model(|| {
        let log = Arc::new(Log::new());
        log.offer(111); // frame A at position 0, term 0
        let lapper = {
            let log = Arc::clone(&log);
            thread::spawn(move || {
                // The driver cleans term 0 for reuse (every subscriber it counts is past it)...
                log.metadata()
                    .announce_clean_position(i64::try_from(TERM_LENGTH).unwrap());
                zero_slots(&log.term(0), 0, TERM_LENGTH);
                // ...and a publisher three terms on writes frame B where A was.
                let term = log.term(0);
                log.template().write(&term, 0, 32, 0xC0, 3, 222);
                publish(&term, 0, 32);
            })
        };
        let mut scratch = [0u8; 64];
        let mut delivered = Vec::new();
        let outcome = term_reader::read_copied(
            &log.term(0),
            &log.metadata(),
            0,
            0,
            1,
            &mut scratch,
            |payload, header| {
                delivered.push((header.term_id, header.reserved_value, payload.len()));
                ControlledAction::Continue
            },
        );
        lapper.join().unwrap();
        // Either the original frame, whole, or nothing: the frame was already zeroed (no frame
        // there), or the reader found out it had been lapped.
        match delivered.as_slice() {
            [] => assert_eq!(outcome.fragments, 0),
            [(0, 111, 0)] => assert_eq!(outcome.fragments, 1),
            other => panic!("delivered {other:?}: not the original frame, whole"),
        }
    });
}
