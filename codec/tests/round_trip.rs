//! Property tests: everything encoded decodes to itself, every truncation of a valid message is
//! an error (never a panic), trailing bytes are ignored, and arbitrary bytes never panic a
//! decoder.

mod common;

use common::v1_1;
use proptest::prelude::*;
use tern_codec::flags::{FeatureFlags, FeatureFlagsEncoder, Flag, FlagValue};
use tern_codec::frame::{
    DataFrame, DataHeader, ErrorFrame, Frame, FrameType, Nak, Setup, StatusMessage,
};
use tern_codec::fuzz_checks;
use tern_codec::position::TermGeometry;
use tern_codec::{MessageHeader, UnknownPolicy};

fn data_header() -> impl Strategy<Value = DataHeader> {
    (
        any::<u8>(),
        any::<i32>(),
        any::<i32>(),
        any::<i32>(),
        any::<i32>(),
        any::<i64>(),
    )
        .prop_map(
            |(flags, term_offset, session_id, stream_id, term_id, reserved_value)| DataHeader {
                frame_length: 0,
                flags,
                frame_type: FrameType::Data,
                term_offset,
                session_id,
                stream_id,
                term_id,
                reserved_value,
            },
        )
}

proptest! {
    #[test]
    fn data_frames_round_trip(header in data_header(), payload in prop::collection::vec(any::<u8>(), 1..1400)) {
        let mut buf = vec![0u8; 1500];
        let frame = DataFrame { header, payload: &payload };
        let length = frame.encode(&mut buf).unwrap();
        let decoded = DataFrame::decode(&buf[..length]).unwrap();
        prop_assert_eq!(decoded.payload, &payload[..]);
        prop_assert_eq!(decoded.header.session_id, header.session_id);
        prop_assert_eq!(decoded.header.reserved_value, header.reserved_value);
        for cut in 0..length.min(40) {
            prop_assert!(DataFrame::decode(&buf[..cut]).is_err());
        }
    }

    #[test]
    fn control_frames_round_trip(
        values in any::<[i32; 8]>(),
        receiver_id in any::<i64>(),
        group_tag in any::<Option<i64>>(),
        flags in any::<u8>(),
        text in prop::collection::vec(any::<u8>(), 0..1023),
    ) {
        let frames = [
            Frame::Nak(Nak {
                frame_length: 28, flags, session_id: values[0], stream_id: values[1],
                term_id: values[2], term_offset: values[3], length: values[4],
            }),
            Frame::Setup(Setup {
                frame_length: 40, flags, term_offset: values[0], session_id: values[1],
                stream_id: values[2], initial_term_id: values[3], active_term_id: values[4],
                term_length: values[5], mtu: values[6], ttl: values[7],
            }),
            Frame::StatusMessage(StatusMessage {
                frame_length: if group_tag.is_some() { 44 } else { 36 }, flags,
                session_id: values[0], stream_id: values[1], consumption_term_id: values[2],
                consumption_term_offset: values[3], receiver_window: values[4], receiver_id,
                group_tag,
            }),
            Frame::Error(ErrorFrame {
                frame_length: i32::try_from(40 + text.len()).unwrap(), flags,
                session_id: values[0], stream_id: values[1], receiver_id,
                group_tag: group_tag.unwrap_or(0), error_code: values[2], text: &text,
            }),
        ];
        let mut buf = vec![0u8; 1100];
        for frame in frames {
            let length = frame.encode(&mut buf).unwrap();
            prop_assert_eq!(Frame::decode(&buf[..length]).unwrap(), frame);
            prop_assert!(Frame::decode(&buf[..length - 1]).is_err());
        }
    }

    #[test]
    fn messages_round_trip_and_reject_every_truncation(
        order_id in any::<u64>(),
        price in any::<i64>(),
        quantity in any::<u32>(),
        fills in prop::collection::vec((any::<i64>(), any::<u32>(), any::<u16>()), 0..=4),
        symbol in "[a-zA-Z0-9]{0,8}",
        note in prop::collection::vec(any::<u8>(), 0..=32),
        trailing in prop::collection::vec(any::<u8>(), 0..16),
    ) {
        let mut buf = vec![0u8; 256];
        let mut encoder = v1_1::order::Encoder::wrap(&mut buf).unwrap();
        encoder.order_id(order_id).price(price).side(v1_1::Side::Buy).quantity(quantity);
        let length = encoder
            .fills(fills.len(), |index, fill| {
                let (price, size, venue) = fills[index];
                fill.price(price).size(size).venue(venue);
            })
            .unwrap()
            .symbol(&symbol)
            .unwrap()
            .note(&note)
            .unwrap()
            .finish();

        let mut with_trailing = buf[..length].to_vec();
        with_trailing.extend_from_slice(&trailing);
        let order = v1_1::order::Decoder::decode(&with_trailing).unwrap();
        prop_assert_eq!(order.encoded_length(), length);
        prop_assert_eq!(order.order_id(), order_id);
        prop_assert_eq!(order.price(), price);
        prop_assert_eq!(order.quantity(), Some(quantity));
        let decoded: Vec<_> = order
            .fills()
            .map(|fill| (fill.price(), fill.size(), fill.venue().unwrap()))
            .collect();
        prop_assert_eq!(decoded, fills);
        prop_assert_eq!(order.symbol(), symbol.as_str());
        prop_assert_eq!(order.note(), Some(&note[..]));

        for cut in 0..length {
            prop_assert!(v1_1::order::Decoder::decode(&buf[..cut]).is_err(), "cut at {}", cut);
        }
    }

    #[test]
    fn feature_flags_round_trip(
        entries in prop::collection::btree_map(any::<u16>(), (0u8..4, any::<u64>(), "[a-z]{0,16}", any::<u16>(), 0u8..3), 0..=64)
    ) {
        let values: Vec<Flag<'_>> = entries
            .iter()
            .map(|(key, (kind, raw, text, version, policy))| Flag {
                key: *key,
                version: *version,
                policy: [UnknownPolicy::Reject, UnknownPolicy::Ignore, UnknownPolicy::Terminate][usize::from(*policy)],
                value: match kind {
                    0 => FlagValue::Bool(raw % 2 == 1),
                    1 => FlagValue::U64(*raw),
                    2 => FlagValue::I64(i64::from_le_bytes(raw.to_le_bytes())),
                    _ => FlagValue::Str(text),
                },
            })
            .collect();
        let mut buf = vec![0u8; 4 + 64 * (18 + 16)];
        let mut encoder = FeatureFlagsEncoder::wrap(&mut buf).unwrap();
        for flag in &values {
            encoder.add(*flag).unwrap();
        }
        let length = encoder.finish();
        let flags = FeatureFlags::decode(&buf[..length]).unwrap();
        prop_assert!(flags.iter().eq(values.iter().copied()));
        for cut in (0..length).step_by(7) {
            prop_assert!(FeatureFlags::decode(&buf[..cut]).is_err() || values.is_empty());
        }
    }

    #[test]
    fn positions_round_trip(
        shift in 5u32..=30,
        initial_term_id in any::<i32>(),
        raw in 0i64..i64::MAX,
    ) {
        let geometry = TermGeometry::new(1 << shift, initial_term_id).unwrap();
        // Any position below the maximum, aligned to a frame.
        let position = (raw % geometry.max_position()) & !31;
        let term_id = geometry.term_id(position);
        let term_offset = geometry.term_offset(position);
        prop_assert!(term_offset < geometry.term_length());
        prop_assert_eq!(geometry.position(term_id, term_offset), position);
    }

    #[test]
    fn arbitrary_bytes_never_panic_a_decoder(bytes in prop::collection::vec(any::<u8>(), 0..512)) {
        fuzz_checks::message_header(&bytes);
        fuzz_checks::frame(&bytes);
        fuzz_checks::feature_flags(&bytes);
        fuzz_checks::message(&bytes);
        let _ = v1_1::order::Decoder::decode(&bytes);
    }

    #[test]
    fn bytes_behind_a_valid_header_never_panic_a_decoder(
        block_length in any::<u16>(),
        minor in 0u8..4,
        body in prop::collection::vec(any::<u8>(), 0..256),
    ) {
        let mut bytes = vec![0u8; 8];
        MessageHeader {
            block_length,
            template_id: v1_1::order::TEMPLATE_ID,
            schema_id: v1_1::SCHEMA.id,
            version: 0x0100 | u16::from(minor),
        }
        .encode(&mut bytes)
        .unwrap();
        bytes.extend_from_slice(&body);
        let _ = v1_1::order::Decoder::decode(&bytes);
        let mut fuzz = bytes.clone();
        fuzz[2..6].copy_from_slice(&[0x01, 0x80, 0x57, 0x7E]);
        fuzz_checks::message(&fuzz);
    }
}
