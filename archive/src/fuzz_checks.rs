//! The checks the archive's fuzz target runs, kept here so that its corpus replays as an
//! ordinary test on stable Rust (`tests/hostile_bytes.rs`) and libFuzzer explores them
//! (`fuzz/fuzz_targets/archive.rs`).
//!
//! Every decoder of bytes the archive did not write itself meets arbitrary input: a segment
//! header and the frames after it (files on disk), a catalog descriptor body, every control
//! request and response (the network), and a block offered for replay. Each may refuse the
//! input; none may panic or read outside it. A check panics only when that contract breaks.

use tern_codec::position::TermGeometry;

use crate::catalog::recording_descriptor;
use crate::control_protocol as protocol;
use crate::segment::{SegmentHeader, check_frame};

/// Runs every archive decoder over `data`.
pub fn archive_bytes(data: &[u8]) {
    let _ = SegmentHeader::decode(data);
    let _ = recording_descriptor::Decoder::decode(data);
    control_messages(data);
    frames(data);
    let _ = tern_engine::logbuffer::term_appender::check_block(data, 7, 64, 64 * 1024);
}

fn control_messages(data: &[u8]) {
    let _ =
        protocol::connect::Decoder::decode(data).map(|decoded| decoded.response_channel().len());
    let _ = protocol::close_session::Decoder::decode(data);
    let _ = protocol::start_recording::Decoder::decode(data).map(|decoded| decoded.channel().len());
    let _ = protocol::stop_recording::Decoder::decode(data).map(|decoded| decoded.channel().len());
    let _ = protocol::replay::Decoder::decode(data).map(|decoded| decoded.replay_channel().len());
    let _ = protocol::stop_replay::Decoder::decode(data);
    let _ = protocol::list_recordings::Decoder::decode(data)
        .map(|decoded| decoded.channel_fragment().len());
    let _ = protocol::list_recording::Decoder::decode(data);
    let _ = protocol::recording_request::Decoder::decode(data).map(|decoded| decoded.operation());
    let _ =
        protocol::extend_recording::Decoder::decode(data).map(|decoded| decoded.channel().len());
    let _ = protocol::replicate::Decoder::decode(data).map(|decoded| {
        decoded.source_control_channel().len() + decoded.replication_channel().len()
    });
    let _ = protocol::stop_replication::Decoder::decode(data);
    let _ = protocol::control_response::Decoder::decode(data)
        .map(|decoded| decoded.error_message().len());
    let _ = protocol::recording_descriptor::Decoder::decode(data)
        .map(|decoded| decoded.channel().len() + decoded.source_identity().len());
    let _ = protocol::recording_event::Decoder::decode(data).map(|decoded| decoded.channel().len());
    let _ = protocol::recording_signal::Decoder::decode(data).map(|decoded| decoded.signal());
}

/// Walks `data` as frames of a segment, at a position its first bytes choose, with and
/// without checksums, as a replay, `dump` and repair do.
fn frames(data: &[u8]) {
    let Ok(geometry) = TermGeometry::new(64 * 1024, 11) else {
        return;
    };
    let start = i64::from(data.first().copied().unwrap_or(0)) * 32;
    for checksums in [false, true] {
        let mut offset = 0usize;
        let mut position = start;
        while offset < data.len() {
            match check_frame(&data[offset..], position, &geometry, checksums) {
                Ok(aligned) => {
                    assert!(
                        aligned >= 32 && aligned.is_multiple_of(32),
                        "a checked frame has a frame's length"
                    );
                    offset += aligned.min(data.len() - offset);
                    position += i64::try_from(aligned).unwrap_or(i64::MAX / 2);
                }
                Err(_) => break,
            }
        }
    }
}
