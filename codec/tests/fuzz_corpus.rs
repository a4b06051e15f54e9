//! Replays every fuzz target's corpus (`fuzz/corpus/<target>/`) through the same checks the
//! fuzzer runs, so stable CI exercises every input the fuzzer ever kept.

use std::path::PathBuf;

use tern_codec::MessageHeader;
use tern_codec::flags::FeatureFlags;
use tern_codec::frame::Frame;
use tern_codec::fuzz_checks::{self, fuzz_order};

/// Runs `check` on every input of `target`'s corpus; returns how many `valid` accepts.
fn replay(target: &str, check: fn(&[u8]), valid: fn(&[u8]) -> bool) -> usize {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../fuzz/corpus")
        .join(target);
    let mut inputs = 0;
    let mut accepted = 0;
    for entry in std::fs::read_dir(&dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display())) {
        let path = entry.unwrap().path();
        let bytes = std::fs::read(&path).unwrap();
        check(&bytes);
        inputs += 1;
        accepted += usize::from(valid(&bytes));
    }
    assert!(
        inputs >= 5,
        "{target}: the corpus holds only {inputs} inputs"
    );
    accepted
}

#[test]
fn message_header_corpus() {
    let valid = replay("message_header", fuzz_checks::message_header, |bytes| {
        MessageHeader::decode(bytes).is_ok()
    });
    assert!(valid >= 4);
}

#[test]
fn frame_corpus() {
    let valid = replay("frame", fuzz_checks::frame, |bytes| {
        Frame::decode(bytes).is_ok()
    });
    assert!(valid >= 10, "every frame type has a valid seed");
}

#[test]
fn feature_flags_corpus() {
    let valid = replay("feature_flags", fuzz_checks::feature_flags, |bytes| {
        FeatureFlags::decode(bytes).is_ok()
    });
    assert!(valid >= 2);
}

#[test]
fn message_corpus() {
    let valid = replay("message", fuzz_checks::message, |bytes| {
        fuzz_order::Decoder::decode(bytes).is_ok()
    });
    assert!(valid >= 3, "seeds at minor 0, 1 and a future minor decode");
}
