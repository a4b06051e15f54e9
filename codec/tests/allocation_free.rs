//! The codec never allocates: a counting global allocator (`support/counting_allocator.rs`) watches a million encode/decode
//! cycles of a message, a DATA frame, a status message and a feature-flag record after warm-up.
//! This file holds one test so that nothing else runs in the process while it counts.

mod common;
#[path = "support/counting_allocator.rs"]
mod counting_allocator;

use common::v1_1;
use counting_allocator::counted;
use tern_codec::UnknownPolicy;
use tern_codec::flags::{FeatureFlags, FeatureFlagsEncoder, Flag, FlagValue};
use tern_codec::frame::{DataFrame, DataHeader, DatagramFrames, FrameType, StatusMessage};

fn cycle(round: u64, message: &mut [u8], frame: &mut [u8], flags: &mut [u8]) -> u64 {
    let mut encoder = v1_1::order::Encoder::wrap(message).unwrap();
    encoder
        .order_id(round)
        .price(-1)
        .side(v1_1::Side::Buy)
        .quantity(3);
    let length = encoder
        .fills(2, |index, fill| {
            fill.price(i64::try_from(index).unwrap()).size(1).venue(2);
        })
        .unwrap()
        .symbol("TERN")
        .unwrap()
        .note(b"n")
        .unwrap()
        .finish();
    let order = v1_1::order::Decoder::decode(&message[..length]).unwrap();
    let mut sum = order.order_id()
        + order
            .fills()
            .map(|fill| u64::from(fill.size()))
            .sum::<u64>();

    let header = DataHeader {
        frame_length: 0,
        flags: 0xC0,
        frame_type: FrameType::Data,
        term_offset: 64,
        session_id: 1,
        stream_id: 2,
        term_id: 3,
        reserved_value: 0,
    };
    let length = DataFrame {
        header,
        payload: b"payload",
    }
    .encode(frame)
    .unwrap();
    let sm = StatusMessage {
        frame_length: 36,
        flags: 0,
        session_id: 1,
        stream_id: 2,
        consumption_term_id: 3,
        consumption_term_offset: 0,
        receiver_window: 65536,
        receiver_id: 9,
        group_tag: Some(4),
    };
    sm.encode(&mut frame[64..]).unwrap();
    for decoded in DatagramFrames::new(&frame[..64 + 44]) {
        sum += u64::from(decoded.is_ok());
    }
    sum += u64::try_from(length).unwrap();

    let mut encoder = FeatureFlagsEncoder::wrap(flags).unwrap();
    encoder
        .add(Flag {
            key: 1,
            version: 1,
            policy: UnknownPolicy::Ignore,
            value: FlagValue::U64(round),
        })
        .unwrap()
        .add(Flag {
            key: 2,
            version: 1,
            policy: UnknownPolicy::Ignore,
            value: FlagValue::Str("x"),
        })
        .unwrap();
    let length = encoder.finish();
    let record = FeatureFlags::decode(&flags[..length]).unwrap();
    sum + u64::try_from(record.len()).unwrap()
}

#[test]
fn a_million_cycles_allocate_nothing() {
    let mut message = [0u8; 128];
    let mut frame = [0u8; 128];
    let mut flags = [0u8; 128];
    let mut checksum = 0;
    for round in 0..1_000 {
        checksum += cycle(round, &mut message, &mut frame, &mut flags);
    }
    let ((), allocations) = counted(|| {
        for round in 0..1_000_000 {
            checksum += cycle(round, &mut message, &mut frame, &mut flags);
        }
    });
    assert_eq!(allocations, 0, "the codec allocated {allocations} times");
    assert!(checksum > 0);
}
