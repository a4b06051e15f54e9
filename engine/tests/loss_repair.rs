//! Loss repair without a network: a term written by a publisher is sent frame by frame through a
//! seeded lossy, duplicating, reordering channel into a term the receiver rebuilds; the gap
//! scanner and the loss detector ask for what is missing, and the "sender" answers each NAK from
//! its term. Whatever the seed, the rebuilt term ends byte-identical to the original, unicast
//! NAKs wait their delay, and nothing is asked for that arrived. Time is a stepped number.
#![cfg(not(loom))]

use tern_engine::concurrent::atomic_buffer::AlignedBuffer;
use tern_engine::driver::loss_detector::{FeedbackDelay, LossDetector};
use tern_engine::logbuffer::descriptor::{LOG_META_DATA_LENGTH, LogMetadata};
use tern_engine::logbuffer::frame_header::{HeaderTemplate, PAD_TYPE, frame_type};
use tern_engine::logbuffer::term_appender::{Appended, ExclusiveTermAppender};
use tern_engine::logbuffer::term_gap_scanner::{Gap, scan_for_gap};
use tern_engine::logbuffer::term_rebuilder::{Inserted, RebuildError, insert};

const TERM_LENGTH: usize = 64 * 1024;
const TERM_ID: i32 = 7;

struct Random(u64);

impl Random {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    fn below(&mut self, bound: u64) -> u64 {
        self.next() % bound
    }
}

/// A term filled by an exclusive appender with messages of varied sizes, ending in padding.
fn publisher_term(memory: &AlignedBuffer, random: &mut Random) -> Vec<(usize, usize)> {
    let whole = memory.buffer();
    let term = whole.view(0, TERM_LENGTH);
    let metadata = LogMetadata::new(whole.view(TERM_LENGTH, LOG_META_DATA_LENGTH));
    let mut header = [0u8; 32];
    header[6..8].copy_from_slice(&1u16.to_le_bytes());
    header[12..16].copy_from_slice(&77i32.to_le_bytes());
    header[16..20].copy_from_slice(&9i32.to_le_bytes());
    let template = HeaderTemplate::new(header);
    let appender = ExclusiveTermAppender::new(term, metadata, 0);
    let mut frames = Vec::new();
    let mut offset = 0;
    loop {
        let size = usize::try_from(random.below(300)).unwrap();
        let body: Vec<u8> = (0..size)
            .map(|index| u8::try_from(index % 251).unwrap())
            .collect();
        match appender.append(&template, TERM_ID, offset, &[&body], 1376, 0) {
            Appended::Ok { term_offset, .. } => {
                let end = usize::try_from(term_offset).unwrap();
                frames.push((offset, end - offset));
                offset = end;
            }
            Appended::Tripped { .. } => {
                // The term ends in padding, unless the last message filled it exactly.
                if offset < TERM_LENGTH {
                    frames.push((offset, TERM_LENGTH - offset));
                }
                return frames;
            }
        }
    }
}

/// The bytes a sender puts on the wire for the frame at `offset`: the whole frame, or a PAD
/// header alone.
fn wire(term: &tern_engine::concurrent::atomic_buffer::AtomicBuffer<'_>, offset: usize) -> Vec<u8> {
    let length = usize::try_from(term.get_i32(offset)).unwrap();
    let sent = if frame_type(term, offset) == PAD_TYPE {
        32
    } else {
        length
    };
    let mut bytes = vec![0u8; sent];
    term.get_bytes(offset, &mut bytes);
    bytes
}

fn run(seed: u64, delay: FeedbackDelay) {
    let mut random = Random(seed | 1);
    let original = AlignedBuffer::new(TERM_LENGTH + LOG_META_DATA_LENGTH);
    let frames = publisher_term(&original, &mut random);
    let sent = original.buffer().view(0, TERM_LENGTH);
    let rebuilt_memory = AlignedBuffer::new(TERM_LENGTH);
    let rebuilt = rebuilt_memory.buffer();

    // First transmission: 10 % lost, 5 % duplicated, delivered in a shuffled order.
    let mut in_flight: Vec<(usize, Vec<u8>)> = Vec::new();
    for &(offset, _) in &frames {
        if random.below(100) < 10 {
            continue;
        }
        in_flight.push((offset, wire(&sent, offset)));
        if random.below(100) < 5 {
            in_flight.push((offset, wire(&sent, offset)));
        }
    }
    for index in (1..in_flight.len()).rev() {
        let other = usize::try_from(random.below(u64::try_from(index + 1).unwrap())).unwrap();
        in_flight.swap(index, other);
    }
    for (offset, bytes) in &in_flight {
        insert(&rebuilt, *offset, bytes).unwrap();
    }
    // The sender's heartbeat tells the receiver where the stream ends: the term's end.
    let high_water = TERM_LENGTH;
    let unicast = matches!(delay, FeedbackDelay::Static { .. });
    let mut first_seen = std::collections::HashMap::new();

    let mut detector = LossDetector::new(delay);
    let mut rebuild_offset = 0;
    let mut now_ns = 0;
    let mut naks = 0;
    for _ in 0..100_000 {
        let scan = scan_for_gap(&rebuilt, TERM_ID, rebuild_offset, high_water);
        assert!(
            scan.rebuild_offset >= rebuild_offset,
            "the rebuild offset never goes back"
        );
        rebuild_offset = scan.rebuild_offset;
        if rebuild_offset == TERM_LENGTH {
            break;
        }
        if let Some(gap) = scan.gap {
            first_seen.entry(gap.term_offset).or_insert(now_ns);
        }
        if let Some(gap) = detector.on_scan(scan.gap, now_ns) {
            naks += 1;
            if unicast {
                let seen = first_seen[&gap.term_offset];
                assert!(
                    now_ns - seen >= 100_000,
                    "a unicast NAK waits 100 us: {seen} {now_ns}"
                );
            }
            // Nothing in the gap had arrived.
            for slot in (gap.term_offset..gap.term_offset + gap.length).step_by(32) {
                assert_eq!(
                    rebuilt.get_i32(slot),
                    0,
                    "NAK for an arrived frame at {slot}"
                );
            }
            // The sender answers from its term: every frame the gap touches, each maybe lost
            // again (10 %) or duplicated.
            for &(offset, length) in &frames {
                if offset + length > gap.term_offset && offset < gap.term_offset + gap.length {
                    if random.below(100) < 10 {
                        continue;
                    }
                    let bytes = wire(&sent, offset);
                    let inserted = insert(&rebuilt, offset, &bytes).unwrap();
                    assert_eq!(inserted, Inserted::Written);
                    assert_eq!(insert(&rebuilt, offset, &bytes), Ok(Inserted::Duplicate));
                }
            }
        }
        now_ns += 50_000;
    }
    assert_eq!(
        rebuild_offset, TERM_LENGTH,
        "seed {seed}: the term was rebuilt"
    );
    assert!(naks > 0, "seed {seed}: loss was repaired by NAKs");
    let mut expected = vec![0u8; TERM_LENGTH];
    let mut actual = vec![0u8; TERM_LENGTH];
    sent.get_bytes(0, &mut expected);
    rebuilt.get_bytes(0, &mut actual);
    assert!(
        expected == actual,
        "seed {seed}: rebuilt term differs from the original"
    );
}

#[test]
fn every_seed_rebuilds_the_term_byte_for_byte_under_loss_duplication_and_reordering() {
    for seed in 0..64 {
        run(seed, FeedbackDelay::unicast());
        run(seed, FeedbackDelay::multicast(seed));
    }
}

#[test]
fn a_unicast_nak_waits_its_delay_then_retries_at_its_interval_until_filled() {
    let mut detector = LossDetector::new(FeedbackDelay::unicast());
    let gap = Gap {
        term_id: 1,
        term_offset: 256,
        length: 64,
    };
    assert_eq!(detector.on_scan(Some(gap), 0), None, "not at once");
    assert_eq!(detector.on_scan(Some(gap), 99_999), None);
    assert_eq!(
        detector.on_scan(Some(gap), 100_000),
        Some(gap),
        "after 100 us"
    );
    assert_eq!(detector.on_scan(Some(gap), 100_001), None);
    assert_eq!(detector.deadline_ns(), Some(10_100_000));
    let grown = Gap { length: 128, ..gap };
    assert_eq!(
        detector.on_scan(Some(grown), 10_100_000),
        Some(grown),
        "retried, as it is now"
    );
    assert_eq!(detector.on_scan(None, 10_100_001), None, "filled");
    assert_eq!(detector.deadline_ns(), None);
    let next = Gap {
        term_offset: 512,
        ..gap
    };
    assert_eq!(
        detector.on_scan(Some(next), 20_000_000),
        None,
        "a new gap waits anew"
    );
    assert_eq!(detector.on_scan(Some(next), 20_100_000), Some(next));
}

#[test]
fn multicast_delays_are_seeded_bounded_and_lean_towards_the_maximum() {
    let gap = Gap {
        term_id: 1,
        term_offset: 0,
        length: 32,
    };
    let delays = |seed| {
        let mut detector = LossDetector::new(FeedbackDelay::multicast(seed));
        (0..2000)
            .map(|round| {
                // A new gap each round (a different start) draws a new initial delay.
                let gap = Gap {
                    term_offset: round * 32,
                    ..gap
                };
                detector.on_scan(Some(gap), 0);
                detector.deadline_ns().unwrap()
            })
            .collect::<Vec<_>>()
    };
    let first = delays(42);
    assert_eq!(first, delays(42), "the same seed, the same delays");
    assert_ne!(first, delays(43));
    assert!(first.iter().all(|delay| (0..10_000_000).contains(delay)));
    let mean = first.iter().sum::<i64>() / 2000;
    // λ = ln 10 + 1: the truncated exponential's mean is about 0.7 of the maximum.
    assert!((6_000_000..8_000_000).contains(&mean), "mean {mean}");
}

#[test]
fn frames_that_do_not_fit_are_refused_and_nothing_is_written() {
    let memory = AlignedBuffer::new(TERM_LENGTH);
    let term = memory.buffer();
    let mut frame = vec![0u8; 64];
    frame[..4].copy_from_slice(&64i32.to_le_bytes());
    frame[6..8].copy_from_slice(&1u16.to_le_bytes());
    assert_eq!(insert(&term, 8, &frame), Err(RebuildError::Misaligned(8)));
    assert_eq!(
        insert(&term, 0, &frame[..20]),
        Err(RebuildError::Truncated(20))
    );
    assert!(matches!(
        insert(&term, 0, &frame[..40]),
        Err(RebuildError::Length {
            declared: 64,
            actual: 40
        })
    ));
    assert!(matches!(
        insert(&term, TERM_LENGTH - 32, &frame),
        Err(RebuildError::PastTermEnd { .. })
    ));
    assert!(matches!(
        insert(&term, TERM_LENGTH, &frame),
        Err(RebuildError::PastTermEnd { .. })
    ));
    let mut pad = [0u8; 32];
    pad[..4].copy_from_slice(&i32::try_from(TERM_LENGTH).unwrap().to_le_bytes());
    assert!(matches!(
        insert(&term, 32, &pad),
        Err(RebuildError::PastTermEnd { .. })
    ));
    let mut negative = frame.clone();
    negative[..4].copy_from_slice(&(-64i32).to_le_bytes());
    assert!(matches!(
        insert(&term, 0, &negative),
        Err(RebuildError::Length { .. })
    ));
    let mut untouched = vec![0u8; TERM_LENGTH];
    term.get_bytes(0, &mut untouched);
    assert!(untouched.iter().all(|byte| *byte == 0), "nothing written");
    assert_eq!(insert(&term, 0, &frame), Ok(Inserted::Written));
    // A frame, or a PAD header, reaching over a frame already received is refused.
    let mut long = vec![0u8; 128];
    long[..4].copy_from_slice(&128i32.to_le_bytes());
    long[6..8].copy_from_slice(&1u16.to_le_bytes());
    let mut later = frame.clone();
    later[..4].copy_from_slice(&64i32.to_le_bytes());
    assert_eq!(insert(&term, 256, &later), Ok(Inserted::Written));
    assert_eq!(insert(&term, 192, &long), Err(RebuildError::Overlaps(192)));
    let mut wide_pad = [0u8; 32];
    wide_pad[..4].copy_from_slice(&1024i32.to_le_bytes());
    assert_eq!(
        insert(&term, 128, &wide_pad),
        Err(RebuildError::Overlaps(128))
    );
    assert_eq!(scan_for_gap(&term, 1, 0, 64).rebuild_offset, 64);
    assert_eq!(
        scan_for_gap(&term, 1, 0, 256).gap,
        Some(Gap {
            term_id: 1,
            term_offset: 64,
            length: 192
        })
    );
}
