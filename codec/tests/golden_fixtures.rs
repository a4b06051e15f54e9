//! Golden hex fixtures: every UDP frame type, each version of the sample message, and a feature
//! flag record, written by hand from the layouts. Encoders must produce exactly these bytes and
//! decoders must read exactly these values, so a layout can never drift unnoticed.

mod common;

use common::{fixture, v1_0, v1_1, v1_2};
use tern_codec::UnknownPolicy;
use tern_codec::flags::{FeatureFlags, FeatureFlagsEncoder, Flag, FlagValue};
use tern_codec::frame::{
    DataFrame, DataHeader, ErrorFrame, Frame, FrameType, Nak, ResponseSetup, Rttm, Setup,
    StatusMessage, data_flags, error_flags, rttm_flags, status_flags,
};

fn data_header(frame_length: i32, term_offset: i32) -> DataHeader {
    DataHeader {
        frame_length,
        flags: data_flags::UNFRAGMENTED,
        frame_type: FrameType::Data,
        term_offset,
        session_id: 7,
        stream_id: 1001,
        term_id: -5,
        reserved_value: 0,
    }
}

/// Encodes with `encode`, compares with the fixture, and decodes the fixture as `Frame`.
fn check_frame(name: &str, expected: Frame<'_>) {
    let golden = fixture(name);
    let mut buf = vec![0u8; golden.len() + 64];
    let length = expected.encode(&mut buf).unwrap();
    assert_eq!(
        &buf[..length],
        &golden[..],
        "{name}: encoding differs from the fixture"
    );
    assert_eq!(
        Frame::decode(&golden).unwrap(),
        expected,
        "{name}: decoding differs"
    );
}

#[test]
fn data_frame() {
    let golden = fixture("frame_data");
    let frame = DataFrame {
        header: data_header(37, 64),
        payload: b"hello",
    };
    check_frame("frame_data", Frame::Data(frame));
    assert_eq!(DataFrame::decode(&golden).unwrap().payload, b"hello");
}

#[test]
fn heartbeat_frame() {
    let frame = DataFrame {
        header: data_header(0, 4096),
        payload: &[],
    };
    check_frame("frame_heartbeat", Frame::Data(frame));
}

#[test]
fn pad_frame() {
    let pad = DataHeader {
        frame_length: 4096,
        flags: 0,
        frame_type: FrameType::Pad,
        term_offset: 61440,
        session_id: 7,
        stream_id: 1001,
        term_id: 3,
        reserved_value: 0,
    };
    check_frame("frame_pad", Frame::Pad(pad));
}

fn status_message(frame_length: i32, flags: u8, group_tag: Option<i64>) -> StatusMessage {
    StatusMessage {
        frame_length,
        flags,
        session_id: 7,
        stream_id: 1001,
        consumption_term_id: 3,
        consumption_term_offset: 1024,
        receiver_window: 128 * 1024,
        receiver_id: 0x0102_0304_0506_0708,
        group_tag,
    }
}

#[test]
fn status_message_frames() {
    check_frame(
        "frame_sm",
        Frame::StatusMessage(status_message(36, 0, None)),
    );
    check_frame(
        "frame_sm_tagged",
        Frame::StatusMessage(status_message(44, status_flags::SEND_SETUP, Some(-1))),
    );
}

#[test]
fn nak_frame() {
    let nak = Nak {
        frame_length: 28,
        flags: 0,
        session_id: 7,
        stream_id: 1001,
        term_id: 3,
        term_offset: 1024,
        length: 1408,
    };
    check_frame("frame_nak", Frame::Nak(nak));
}

#[test]
fn setup_frame() {
    let setup = Setup {
        frame_length: 40,
        flags: 0,
        term_offset: 0,
        session_id: 7,
        stream_id: 1001,
        initial_term_id: -5,
        active_term_id: -3,
        term_length: 65536,
        mtu: 1408,
        ttl: 0,
    };
    check_frame("frame_setup", Frame::Setup(setup));
}

#[test]
fn rttm_frame() {
    let rttm = Rttm {
        frame_length: 40,
        flags: rttm_flags::REPLY,
        session_id: 7,
        stream_id: 1001,
        echo_timestamp_ns: 1_000_000_000,
        reception_delta_ns: 500,
        receiver_id: 0x0102_0304_0506_0708,
    };
    check_frame("frame_rttm", Frame::Rttm(rttm));
}

#[test]
fn error_frame() {
    let error = ErrorFrame {
        frame_length: 45,
        flags: error_flags::HAS_GROUP_TAG,
        session_id: 7,
        stream_id: 1001,
        receiver_id: 0x0102_0304_0506_0708,
        group_tag: 42,
        error_code: 1,
        text: b"nope!",
    };
    check_frame("frame_err", Frame::Error(error));
}

#[test]
fn response_setup_frame() {
    let setup = ResponseSetup {
        frame_length: 20,
        flags: 0,
        session_id: 7,
        stream_id: 1001,
        response_session_id: 99,
    };
    check_frame("frame_rsp_setup", Frame::ResponseSetup(setup));
}

#[test]
fn sample_message_at_each_version() {
    let mut buf = [0u8; 128];
    let length = common::encode_v1_0(&mut buf);
    assert_eq!(&buf[..length], &fixture("order_v1_0")[..]);
    let length = common::encode_v1_1(&mut buf);
    assert_eq!(&buf[..length], &fixture("order_v1_1")[..]);
    let length = common::encode_v1_2(&mut buf);
    assert_eq!(&buf[..length], &fixture("order_v1_2")[..]);

    let golden = fixture("order_v1_0");
    let order = v1_0::order::Decoder::decode(&golden).unwrap();
    assert_eq!(
        (order.order_id(), order.price(), order.side()),
        (1, 100, v1_0::Side::Sell)
    );
    assert_eq!(order.encoded_length(), golden.len());

    let golden = fixture("order_v1_1");
    let order = v1_1::order::Decoder::decode(&golden).unwrap();
    assert_eq!(order.quantity(), Some(5));
    assert_eq!(order.note(), Some(&[0xFF][..]));

    let golden = fixture("order_v1_2");
    let order = v1_2::order::Decoder::decode(&golden).unwrap();
    assert_eq!(order.flags(), Some(7));
    assert_eq!(order.trace(), Some(&b"t"[..]));
}

#[test]
fn feature_flag_record() {
    let golden = fixture("flags");
    let mut buf = [0u8; 128];
    let mut encoder = FeatureFlagsEncoder::wrap(&mut buf).unwrap();
    encoder
        .add(Flag {
            key: 1,
            version: 1,
            policy: UnknownPolicy::Terminate,
            value: FlagValue::Bool(true),
        })
        .unwrap()
        .add(Flag {
            key: 5,
            version: 2,
            policy: UnknownPolicy::Ignore,
            value: FlagValue::Str("lz4"),
        })
        .unwrap();
    let length = encoder.finish();
    assert_eq!(&buf[..length], &golden[..]);
    let flags = FeatureFlags::decode(&golden).unwrap();
    assert_eq!(flags.flag(5).unwrap().value, FlagValue::Str("lz4"));
}
