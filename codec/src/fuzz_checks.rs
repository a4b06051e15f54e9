//! The checks every fuzz target runs, kept here so that the corpus replays as an ordinary test on
//! stable Rust (`codec/tests/fuzz_corpus.rs`) and libFuzzer explores them (`fuzz/`).
//!
//! Each check feeds arbitrary bytes to one decoder. The decoder must return an error or a value,
//! never panic; a value must encode again, and the encoding must decode to the same value.
//! A check panics only when that contract is broken, which is what a fuzzer looks for.

use crate::flags::{FeatureFlags, FeatureFlagsEncoder};
use crate::frame::{DatagramFrames, Frame};
use crate::version::{Schema, SemanticVersion};
use crate::{MessageHeader, on_unknown};

/// The largest input any check looks at; longer inputs are cut, to bound each run.
pub const INPUT_MAX: usize = 64 * 1024;

fn bounded(data: &[u8]) -> &[u8] {
    data.get(..INPUT_MAX).unwrap_or(data)
}

/// The message header and the unknown-message policy.
pub fn message_header(data: &[u8]) {
    let data = bounded(data);
    if let Ok(header) = MessageHeader::decode(data) {
        let mut buf = [0u8; crate::MESSAGE_HEADER_LENGTH];
        assert_eq!(header.encode(&mut buf), Ok(buf.len()));
        assert_eq!(MessageHeader::decode(&buf), Ok(header));
        let _ = on_unknown(&header);
    }
    if let Some(composed) = data.first_chunk::<4>()
        && let Ok(version) = SemanticVersion::decompose(u32::from_le_bytes(*composed))
    {
        assert_eq!(SemanticVersion::decompose(version.compose()), Ok(version));
    }
}

/// Every UDP frame type through [`Frame::decode`], and the datagram walk.
pub fn frame(data: &[u8]) {
    let data = bounded(data);
    let mut buf = [0u8; 2048];
    if let Ok(frame) = Frame::decode(data)
        && let Ok(length) = frame.encode(&mut buf)
    {
        let again = Frame::decode(buf.get(..length).unwrap_or(&buf));
        match (frame, again) {
            (Frame::Unknown { .. }, _) => {}
            (frame, Ok(again)) => assert_eq!(normalise(frame), normalise(again)),
            (frame, Err(error)) => panic!("{frame:?} encoded to bytes that fail: {error}"),
        }
    }
    let mut steps = 0;
    for _ in DatagramFrames::new(data) {
        steps += 1;
        assert!(
            steps <= data.len() / 32 + 1,
            "the datagram walk must advance"
        );
    }
}

/// Frame lengths are free to be longer than what tern writes; compare the fields.
fn normalise(frame: Frame<'_>) -> Frame<'_> {
    match frame {
        Frame::StatusMessage(mut sm) => {
            sm.frame_length = 0;
            Frame::StatusMessage(sm)
        }
        Frame::Nak(mut nak) => {
            nak.frame_length = 0;
            Frame::Nak(nak)
        }
        Frame::Setup(mut setup) => {
            setup.frame_length = 0;
            Frame::Setup(setup)
        }
        Frame::Rttm(mut rttm) => {
            rttm.frame_length = 0;
            Frame::Rttm(rttm)
        }
        Frame::Error(mut error) => {
            error.frame_length = 0;
            Frame::Error(error)
        }
        Frame::ResponseSetup(mut setup) => {
            setup.frame_length = 0;
            Frame::ResponseSetup(setup)
        }
        other => other,
    }
}

/// Feature-flag records.
pub fn feature_flags(data: &[u8]) {
    let data = bounded(data);
    let Ok(flags) = FeatureFlags::decode(data) else {
        return;
    };
    let mut buf = [0u8; 4 + 64 * (16 + 2 + 256)];
    let mut encoder = FeatureFlagsEncoder::wrap(&mut buf).expect("room for any record");
    for flag in flags.iter() {
        encoder.add(flag).expect("a decoded record encodes again");
    }
    let length = encoder.finish();
    let again = FeatureFlags::decode(&buf[..length]).expect("an encoded record decodes");
    assert!(flags.iter().eq(again.iter()));
    let _ = flags.resolve(&[]);
}

/// The schema the `message` check decodes: every feature of the [`message!`](crate::message)
/// macro, at minor version 1.
pub const FUZZ_SCHEMA: Schema = Schema::new("fuzz", 0x7E57, SemanticVersion::new(1, 1, 0));

crate::enumeration! {
    /// A sample enumeration.
    pub enum FuzzSide: u8 {
        /// Buy.
        Buy = 0,
        /// Sell.
        Sell = 1,
    }
}

crate::message! {
    /// A message with every kind of element, to fuzz the macro's generated decoder.
    pub mod fuzz_order (schema = FUZZ_SCHEMA, template = 1, policy = Terminate) {
        block {
            /// An id.
            order_id @ 0 since 0: u64,
            /// A side.
            side @ 8 since 0: FuzzSide,
            /// A later field.
            quantity @ 9 since 1: u32,
        }
        groups {
            /// Fills.
            fills (max = 8) since 0 {
                /// A price.
                price @ 0 since 0: i64,
                /// A later field.
                size @ 8 since 1: u32,
            }
        }
        var_data {
            /// Text.
            symbol (max = 32) since 0: str,
            /// Later bytes.
            note (max = 64) since 1: bytes,
        }
    }
}

/// A message decoded by a macro-generated decoder.
pub fn message(data: &[u8]) {
    let data = bounded(data);
    let Ok(decoded) = fuzz_order::Decoder::decode(data) else {
        return;
    };
    let mut buf = [0u8; 512];
    let length = reencode(&decoded, &mut buf);
    let again = fuzz_order::Decoder::decode(&buf[..length]).expect("re-encoded message decodes");
    assert_eq!(again.order_id(), decoded.order_id());
    assert_eq!(again.side(), decoded.side());
    assert_eq!(again.quantity(), Some(decoded.quantity().unwrap_or(0)));
    assert!(
        again
            .fills()
            .map(|fill| fill.price())
            .eq(decoded.fills().map(|fill| fill.price()))
    );
    assert_eq!(again.symbol(), decoded.symbol());
    assert_eq!(again.note(), Some(decoded.note().unwrap_or(&[])));
    let mut twice = [0u8; 512];
    assert_eq!(reencode(&again, &mut twice), length);
    assert_eq!(buf[..length], twice[..length], "encoding is deterministic");
}

fn reencode(decoded: &fuzz_order::Decoder<'_>, buf: &mut [u8]) -> usize {
    let mut encoder = fuzz_order::Encoder::wrap(buf).expect("room");
    encoder
        .order_id(decoded.order_id())
        .side(decoded.side())
        .quantity(decoded.quantity().unwrap_or(0));
    let fills: [(i64, u32); 8] = core::array::from_fn(|index| {
        decoded
            .fills()
            .nth(index)
            .map_or((0, 0), |fill| (fill.price(), fill.size().unwrap_or(0)))
    });
    encoder
        .fills(decoded.fills().len(), |index, fill| {
            fill.price(fills[index].0).size(fills[index].1);
        })
        .and_then(|encoder| encoder.symbol(decoded.symbol()))
        .and_then(|encoder| encoder.note(decoded.note().unwrap_or(&[])))
        .expect("a decoded message fits its limits")
        .finish()
}
