//! Log buffers: fragmentation at every boundary, padding and rotation through many terms,
//! claims, exclusive appends, concurrent publishers, and unblocking a dead publisher's claim.
#![cfg(not(loom))]

use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use proptest::prelude::*;
use tern_codec::position::TermGeometry;
use tern_engine::concurrent::atomic_buffer::{AlignedBuffer, AtomicBuffer};
use tern_engine::logbuffer::descriptor::{
    LOG_META_DATA_LENGTH, LogMetadata, LogParameters, index_by_term, index_by_term_count,
    tail_term_id, tail_term_offset, zero_slots,
};
use tern_engine::logbuffer::frame_header::{self, FragmentHeader, HeaderTemplate};
use tern_engine::logbuffer::term_appender::{
    Appended, ExclusiveTermAppender, TermAppender, align_frame, framed_length,
};
use tern_engine::logbuffer::term_reader::ControlledAction;
use tern_engine::logbuffer::unblocker::Unblocked;
use tern_engine::logbuffer::{term_reader, unblocker};

const TERM_LENGTH: usize = 64 * 1024;
const MTU: usize = 1408;
const MAX_PAYLOAD: usize = MTU - 32;

/// A log in heap memory: three terms and the metadata.
struct Log {
    memory: AlignedBuffer,
}

impl Log {
    fn new(initial_term_id: i32) -> Self {
        let log = Self {
            memory: AlignedBuffer::new(3 * TERM_LENGTH + LOG_META_DATA_LENGTH),
        };
        log.metadata().initialise(&LogParameters {
            term_length: u32::try_from(TERM_LENGTH).unwrap(),
            initial_term_id,
            mtu: u32::try_from(MTU).unwrap(),
            page_size: 4096,
            correlation_id: 1,
            session_id: 77,
            stream_id: 1001,
            publication_window: u32::try_from(TERM_LENGTH / 2).unwrap(),
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

    fn geometry(&self) -> TermGeometry {
        TermGeometry::new(
            u32::try_from(TERM_LENGTH).unwrap(),
            self.metadata().initial_term_id(),
        )
        .unwrap()
    }

    /// Offers like a concurrent publication (without a limit): append, rotating on trips.
    fn offer(&self, parts: &[&[u8]]) -> i64 {
        loop {
            let term_count = self.metadata().active_term_count();
            let index = index_by_term_count(i64::from(term_count));
            let appender = TermAppender::new(self.term(index), self.metadata(), index);
            match appender.append(&self.template(), parts, MAX_PAYLOAD, 0) {
                Appended::Ok {
                    term_id,
                    term_offset,
                } => {
                    return self.geometry().position(term_id, term_offset);
                }
                Appended::Tripped { term_id } => {
                    self.metadata().rotate(term_count, term_id);
                }
            }
        }
    }

    /// Reads from `position` like a subscriber, reassembling fragments; cleans each term it
    /// leaves so that publishers can reuse it. Returns the new position.
    fn poll(
        &self,
        position: i64,
        assembler: &mut Vec<u8>,
        messages: &mut Vec<(i32, Vec<u8>)>,
    ) -> i64 {
        let geometry = self.geometry();
        let term_id = geometry.term_id(position);
        let index = index_by_term(geometry.initial_term_id(), term_id);
        let term_offset = usize::try_from(geometry.term_offset(position)).unwrap();
        let term_base = position - i64::try_from(term_offset).unwrap();
        let outcome = term_reader::read(
            &self.term(index),
            term_offset,
            64,
            |offset| term_base + i64::try_from(offset).unwrap(),
            |payload, header: &FragmentHeader| {
                assert_eq!(header.session_id, 77);
                assert_eq!(header.stream_id, 1001);
                assert_eq!(header.term_id, term_id);
                if header.is_begin() {
                    assembler.clear();
                }
                assembler.extend_from_slice(payload);
                if header.is_end() {
                    messages.push((header.term_id, std::mem::take(assembler)));
                }
            },
        );
        let new_position = term_base + i64::try_from(outcome.term_offset).unwrap();
        if outcome.term_offset == TERM_LENGTH {
            // Leaving this term: the one before it will be reused two rotations from now.
            let previous = index_by_term(geometry.initial_term_id(), term_id.wrapping_sub(1));
            self.term(previous).set_memory(0, TERM_LENGTH, 0);
        }
        new_position
    }
}

fn message(length: usize, seed: u8) -> Vec<u8> {
    (0..length)
        .map(|index| seed.wrapping_add(u8::try_from(index % 251).unwrap()))
        .collect()
}

#[test]
fn fragments_at_every_mtu_boundary_reassemble() {
    let log = Log::new(-2);
    let mut position = 0;
    let mut assembler = Vec::new();
    let mut received = Vec::new();
    let mut sent = Vec::new();
    for multiple in 0..=4 {
        for delta in [-1_isize, 0, 1] {
            let length = (multiple * MAX_PAYLOAD).saturating_add_signed(delta);
            let body = message(length, u8::try_from(sent.len() % 256).unwrap());
            let after = log.offer(&[&body]);
            assert!(after > position);
            sent.push(body);
            while position < after {
                position = log.poll(position, &mut assembler, &mut received);
            }
        }
    }
    let received: Vec<_> = received.into_iter().map(|(_, body)| body).collect();
    assert_eq!(received, sent);
}

#[test]
fn rotation_through_many_terms_pads_and_loses_nothing() {
    let log = Log::new(i32::MAX - 3);
    let mut position = 0;
    let mut assembler = Vec::new();
    let mut received = Vec::new();
    let mut count = 0;
    // About 20 terms of messages whose sizes do not divide the term, so every end pads.
    while position < 20 * i64::try_from(TERM_LENGTH).unwrap() {
        let body = message(
            100 + (count * 37) % 3000,
            u8::try_from(count % 256).unwrap(),
        );
        log.offer(&[&body[..10], &body[10..]]);
        count += 1;
        loop {
            let next = log.poll(position, &mut assembler, &mut received);
            if next == position {
                break;
            }
            position = next;
        }
    }
    assert_eq!(received.len(), count);
    for (index, (_, body)) in received.iter().enumerate() {
        assert_eq!(
            body,
            &message(
                100 + (index * 37) % 3000,
                u8::try_from(index % 256).unwrap()
            )
        );
    }
    assert!(
        received
            .windows(2)
            .any(|pair| pair[0].0 == i32::MAX && pair[1].0 == i32::MIN),
        "term ids wrapped through i32::MAX"
    );
}

#[test]
fn a_claim_commits_in_place_or_aborts_to_padding() {
    let log = Log::new(0);
    let appender = TermAppender::new(log.term(0), log.metadata(), 0);
    let mut claim = appender.claim(&log.template(), 11, 0).unwrap();
    claim.with_payload(|payload| payload.copy_from_slice(b"hello claim"));
    claim.set_reserved_value(42);
    assert_eq!(claim.commit(), (0, 64));
    let aborted = appender.claim(&log.template(), 5, 0).unwrap();
    assert_eq!(aborted.abort(), (0, 128));
    {
        let _dropped = appender.claim(&log.template(), 3, 0).unwrap();
        // Dropped without commit (as by a panic): aborted, not left blocking.
    }
    log.offer(&[b"after"]);
    let mut received = Vec::new();
    let outcome = term_reader::read(
        &log.term(0),
        0,
        10,
        |offset| i64::try_from(offset).unwrap(),
        |payload, header| {
            received.push((payload.to_vec(), header.reserved_value, header.position));
        },
    );
    assert_eq!(outcome.fragments, 2);
    assert_eq!(
        received,
        [
            (b"hello claim".to_vec(), 42, 64),
            (b"after".to_vec(), 0, 256)
        ]
    );
}

#[test]
fn exclusive_appends_keep_their_own_tail_and_can_pad() {
    let log = Log::new(5);
    let appender = ExclusiveTermAppender::new(log.term(0), log.metadata(), 0);
    let template = log.template();
    assert_eq!(
        appender.append(&template, 5, 0, &[b"one"], MAX_PAYLOAD, 0),
        Appended::Ok {
            term_id: 5,
            term_offset: 64
        }
    );
    assert_eq!(
        appender.append_padding(&template, 5, 64, 100),
        Appended::Ok {
            term_id: 5,
            term_offset: 64 + 160
        }
    );
    assert_eq!(tail_term_offset(log.metadata().raw_tail(0), 65536), 224);
    // A message that does not fit trips and pads the rest of the term.
    let big = vec![0u8; 1000];
    assert_eq!(
        appender.append(&template, 5, TERM_LENGTH - 64, &[&big], MAX_PAYLOAD, 0),
        Appended::Tripped { term_id: 5 }
    );
    let mut payloads = Vec::new();
    let outcome = term_reader::read(
        &log.term(0),
        0,
        10,
        |_| 0,
        |payload, _| payloads.push(payload.to_vec()),
    );
    assert_eq!(payloads, [b"one".to_vec()]);
    assert_eq!(
        outcome.term_offset, 224,
        "stops at the unwritten gap before the end padding"
    );
    assert_eq!(tail_term_id(log.metadata().raw_tail(0)), 5);
}

#[test]
fn a_dead_publishers_claim_is_padded_over() {
    let log = Log::new(0);
    let appender = TermAppender::new(log.term(0), log.metadata(), 0);
    let template = log.template();
    // Dies after writing the header (negative length) of a claimed frame: its claim is never
    // dropped, as in a process that was killed.
    let claim = appender.claim(&template, 100, 0).unwrap();
    std::mem::forget(claim);
    log.offer(&[b"behind the dead one"]);
    let read = |offset| term_reader::read(&log.term(0), offset, 10, |_| 0, |_, _| {});
    assert_eq!(read(0).fragments, 0, "blocked");
    let tail = tail_term_offset(log.metadata().raw_tail(0), 65536);
    assert_eq!(
        unblocker::unblock(
            &log.term(0),
            &template,
            0,
            0,
            usize::try_from(tail).unwrap()
        ),
        Unblocked::Padded
    );
    let outcome = read(0);
    assert_eq!(outcome.fragments, 1);

    // Dies after the atomic add, before writing anything: pad up to the next started frame.
    let raw_tail = log.metadata().raw_tail(0);
    let blocked = usize::try_from(tail_term_offset(raw_tail, 65536)).unwrap();
    log.metadata().buffer().get_and_add_i64(0, 96);
    log.offer(&[b"next"]);
    assert_eq!(read(blocked).fragments, 0);
    let tail = usize::try_from(tail_term_offset(log.metadata().raw_tail(0), 65536)).unwrap();
    assert_eq!(
        unblocker::unblock(&log.term(0), &template, 0, blocked, tail),
        Unblocked::Padded
    );
    assert_eq!(read(blocked).fragments, 1);
    assert_eq!(
        unblocker::unblock(&log.term(0), &template, 0, tail, tail),
        Unblocked::No
    );
}

#[test]
fn unblocking_never_pads_over_a_live_publishers_unwritten_claim() {
    let log = Log::new(0);
    let template = log.template();
    // A dead publisher claims 96 bytes and writes nothing; a live one claims the 64 bytes after
    // it and has not written its header yet.
    log.metadata().buffer().get_and_add_i64(0, 96);
    let mut live = TermAppender::new(log.term(0), log.metadata(), 0)
        .claim(&template, 32, 0)
        .unwrap();
    log.term(0).put_i32_ordered(96, 0); // as if its header were not stored yet
    let tail = usize::try_from(tail_term_offset(log.metadata().raw_tail(0), 65536)).unwrap();
    assert_eq!(
        unblocker::unblock(&log.term(0), &template, 0, 0, tail),
        Unblocked::No,
        "no started frame proves where the dead claim ends"
    );
    // The live publisher writes its header and commits: now the dead claim is bounded.
    log.term(0).put_i32_ordered(96, -64);
    live.with_payload(|payload| payload[..5].copy_from_slice(b"alive"));
    live.commit();
    assert_eq!(
        unblocker::unblock(&log.term(0), &template, 0, 0, tail),
        Unblocked::Padded
    );
    let mut payloads = Vec::new();
    term_reader::read(
        &log.term(0),
        0,
        10,
        |_| 0,
        |payload, _| payloads.push(payload[..5].to_vec()),
    );
    assert_eq!(
        payloads,
        [b"alive".to_vec()],
        "the live publisher's message is delivered"
    );
}

#[test]
fn unblocking_survives_any_frame_length_a_publisher_leaves() {
    let template = Log::new(0).template();
    for hostile in [i32::MIN, i32::MIN + 1, -1, -31, -65537, -160, 1 - 65536] {
        let log = Log::new(0);
        log.metadata().buffer().get_and_add_i64(0, 64);
        log.offer(&[b"after"]);
        log.term(0).put_i32_ordered(0, hostile);
        let tail = usize::try_from(tail_term_offset(log.metadata().raw_tail(0), 65536)).unwrap();
        let outcome = unblocker::unblock(&log.term(0), &template, 0, 0, tail);
        assert_eq!(outcome, Unblocked::Padded, "length {hostile}");
        let fragments = term_reader::read(&log.term(0), 0, 10, |_| 0, |_, _| {}).fragments;
        assert_eq!(
            fragments, 1,
            "length {hostile}: padded only up to the next frame"
        );
    }
}

#[test]
fn concurrent_publishers_through_rotation_exactly_once_in_order() {
    const PUBLISHERS: u32 = 4;
    const MESSAGES: u32 = 50_000;
    let log = Arc::new(Log::new(100));
    let window = i64::try_from(TERM_LENGTH / 2).unwrap();
    let subscriber_position = Arc::new(std::sync::atomic::AtomicI64::new(0));
    let publishers: Vec<_> = (0..PUBLISHERS)
        .map(|publisher| {
            let log = Arc::clone(&log);
            let subscriber_position = Arc::clone(&subscriber_position);
            thread::spawn(move || {
                let start = Instant::now();
                for sequence in 0..MESSAGES {
                    let mut body = [0u8; 40];
                    body[..4].copy_from_slice(&publisher.to_le_bytes());
                    body[4..8].copy_from_slice(&sequence.to_le_bytes());
                    // Back-pressure: stay within the window of the subscriber, as the driver's
                    // publisher limit will enforce.
                    loop {
                        let metadata = log.metadata();
                        let count = metadata.active_term_count();
                        let raw = metadata.raw_tail(index_by_term_count(i64::from(count)));
                        let position = log
                            .geometry()
                            .position(tail_term_id(raw), tail_term_offset(raw, 65536));
                        if position
                            < subscriber_position.load(std::sync::atomic::Ordering::Acquire)
                                + window
                        {
                            break;
                        }
                        assert!(start.elapsed() < Duration::from_secs(60));
                        thread::yield_now();
                    }
                    log.offer(&[&body]);
                }
            })
        })
        .collect();
    let mut position = 0;
    let mut assembler = Vec::new();
    let mut received = Vec::new();
    let mut next = [0u32; PUBLISHERS as usize];
    let start = Instant::now();
    let total = usize::try_from(PUBLISHERS * MESSAGES).unwrap();
    let mut seen = 0;
    while seen < total {
        let before = position;
        position = log.poll(position, &mut assembler, &mut received);
        subscriber_position.store(position, std::sync::atomic::Ordering::Release);
        for (_, body) in received.drain(..) {
            let publisher = u32::from_le_bytes(body[..4].try_into().unwrap());
            let sequence = u32::from_le_bytes(body[4..8].try_into().unwrap());
            assert_eq!(sequence, next[publisher as usize]);
            next[publisher as usize] += 1;
            seen += 1;
        }
        if position == before {
            assert!(
                start.elapsed() < Duration::from_secs(60),
                "stalled at {seen}"
            );
            thread::yield_now();
        }
    }
    for publisher in publishers {
        publisher.join().unwrap();
    }
    assert_eq!(next, [MESSAGES; PUBLISHERS as usize]);
    assert!(
        position > 3 * i64::try_from(TERM_LENGTH).unwrap(),
        "rotated through every partition"
    );
}

proptest! {
    #[test]
    fn framed_length_matches_what_is_written(length in 0usize..20_000) {
        let log = Log::new(0);
        let body = message(length, 1);
        let position = log.offer(&[&body]);
        prop_assert_eq!(usize::try_from(position).unwrap(), framed_length(length, MAX_PAYLOAD));
        prop_assert_eq!(framed_length(0, MAX_PAYLOAD), align_frame(32));
    }
}

#[test]
fn a_corrupt_frame_length_stops_the_reader_instead_of_reading_past_the_term() {
    let log = Log::new(0);
    log.offer(&[b"good"]);
    // Another process scribbles a huge length over the next frame.
    log.term(0).put_i32_ordered(64, 0x0808_0808);
    let mut payloads = Vec::new();
    let outcome = term_reader::read(
        &log.term(0),
        0,
        10,
        |_| 0,
        |payload, _| payloads.push(payload.to_vec()),
    );
    assert_eq!(payloads, [b"good".to_vec()]);
    assert_eq!(outcome.term_offset, 64);
}

/// A reader that may be lapped (an untethered subscriber the driver left behind) while it reads:
/// the cleaner announces, zeroes and a publisher rewrites the next frame from inside the
/// handler of the frame before it. Lent in place, the rewritten frame would be delivered as if
/// it were the old one; copied and checked, it is not, and the reader learns it was lapped.
#[test]
fn a_reader_lapped_while_it_reads_delivers_no_rewritten_frame() {
    let log = Log::new(0);
    log.offer(&[b"first"]);
    log.offer(&[b"second"]);
    let term = log.term(0);
    let lap = |term: &AtomicBuffer<'_>| {
        // The driver cleans term 0 (every subscriber it counts is past it)...
        log.metadata()
            .announce_clean_position(i64::try_from(TERM_LENGTH).unwrap());
        zero_slots(term, 0, TERM_LENGTH);
        // ...and a publisher three terms on writes its own frame where "second" was.
        let template = log.template();
        template.write(term, 64, 32 + 6, 0xC0, 3, 0);
        term.put_bytes(64 + 32, b"SECOND");
        frame_header::publish(term, 64, 38);
    };
    let mut scratch = vec![0u8; MTU];
    let mut delivered = Vec::new();
    let mut lapped_once = false;
    let outcome = term_reader::read_copied(
        &term,
        &log.metadata(),
        0,
        0,
        10,
        &mut scratch,
        |payload, _| {
            delivered.push(payload.to_vec());
            if !lapped_once {
                lapped_once = true;
                lap(&term);
            }
            ControlledAction::Continue
        },
    );
    assert_eq!(delivered, [b"first".to_vec()]);
    assert!(outcome.lapped);
    assert_eq!(outcome.fragments, 1);
    // A reader that starts below the clean position finds out before it reads anything.
    let again =
        term_reader::read_copied(&term, &log.metadata(), 0, 64, 10, &mut scratch, |_, _| {
            panic!("nothing is delivered to a lapped reader")
        });
    assert!(again.lapped);
    // The same bytes lent in place: the rewritten frame reads as valid (the defect).
    let mut in_place = Vec::new();
    term_reader::read(
        &term,
        64,
        10,
        |_| 0,
        |payload, _| in_place.push(payload.to_vec()),
    );
    assert_eq!(in_place, [b"SECOND".to_vec()]);
}
