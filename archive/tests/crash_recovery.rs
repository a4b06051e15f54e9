//! Repair after a crash, driven directly: a recording the catalog still holds as active is
//! scanned from its stored stop position, frames written after it are kept, a torn frame and
//! everything after it are cut away, a segment whose creation was interrupted is removed, and
//! damage below the stored stop marks the recording invalid without stopping the archive.

use std::os::unix::fs::FileExt;

use tern_archive::catalog::{Catalog, NewRecording, RecordingState};
use tern_archive::segment::{
    SEGMENT_HEADER_LENGTH_U64, SegmentHeader, SegmentLayout, segment_path,
};
use tern_archive::segment_files::recover;
use tern_archive::segment_writer::{Durability, SegmentWriter};
use tern_codec::frame::{DATA_HEADER_LENGTH, DataHeader, FrameType, data_flags};
use tern_codec::position::TermGeometry;

const TERM_LENGTH: u32 = 64 * 1024;
const SEGMENT_LENGTH: u32 = 64 * 1024;

/// Frames of 256 bytes from `from` up to `to`, as a term holds them.
fn frames(from: i64, to: i64) -> Vec<u8> {
    let geometry = TermGeometry::new(TERM_LENGTH, 0).unwrap();
    let mut bytes = vec![0u8; usize::try_from(to - from).unwrap()];
    let mut position = from;
    while position < to {
        let at = usize::try_from(position - from).unwrap();
        DataHeader {
            frame_length: 256,
            flags: data_flags::UNFRAGMENTED,
            frame_type: FrameType::Data,
            term_offset: i32::try_from(geometry.term_offset(position)).unwrap(),
            session_id: 1,
            stream_id: 2,
            term_id: geometry.term_id(position),
            reserved_value: 0,
        }
        .encode(&mut bytes[at..])
        .unwrap();
        bytes[at + DATA_HEADER_LENGTH..at + 256].fill(u8::try_from(position / 256 % 251).unwrap());
        position += 256;
    }
    bytes
}

/// A recording of `written` bytes whose catalog entry says only `stored` were committed.
fn crashed_recording(dir: &std::path::Path, written: i64, stored: i64) -> Catalog {
    let mut catalog = Catalog::open(dir).unwrap();
    let id = catalog
        .add(&NewRecording {
            start_position: 0,
            start_timestamp: 1,
            initial_term_id: 0,
            term_length: TERM_LENGTH,
            mtu: 1408,
            segment_length: SEGMENT_LENGTH,
            session_id: 1,
            stream_id: 2,
            channel: "tern:ipc",
            source_identity: "ipc",
        })
        .unwrap();
    let header = SegmentHeader {
        recording_id: id,
        base_position: 0,
        segment_length: SEGMENT_LENGTH,
        term_length: TERM_LENGTH,
        initial_term_id: 0,
        stream_id: 2,
        session_id: 1,
        checksums: true,
    };
    let geometry = TermGeometry::new(TERM_LENGTH, 0).unwrap();
    let layout = SegmentLayout::new(0, SEGMENT_LENGTH, geometry);
    let mut writer = SegmentWriter::new(dir, header, layout, 0, Durability::None, 65536);
    let stream = frames(0, written);
    for chunk in stream.chunks(8192) {
        writer.write(chunk, chunk.len()).unwrap();
    }
    writer.commit().unwrap();
    catalog.set_stop_position(id, stored).unwrap();
    catalog
}

#[test]
fn frames_written_after_the_stored_stop_are_kept_and_a_torn_one_is_cut() {
    let dir = tempfile::tempdir().unwrap();
    let mut catalog = crashed_recording(dir.path(), 100 * 1024, 40 * 1024);
    // A torn frame right after the last whole one: its header, half its payload.
    let path = segment_path(dir.path(), 0, 65536);
    let file = std::fs::OpenOptions::new().write(true).open(&path).unwrap();
    let torn = frames(100 * 1024, 100 * 1024 + 256);
    let at = SEGMENT_HEADER_LENGTH_U64 + (100 * 1024 - 65536);
    file.write_all_at(&torn[..128], at).unwrap();
    // And stale bytes further on, as a reused file might hold.
    file.write_all_at(&[0xEE; 64], at + 4096).unwrap();
    let repairs = recover(dir.path(), &mut catalog, 99).unwrap();
    assert_eq!(repairs.len(), 1);
    assert_eq!(
        (repairs[0].stored_stop, repairs[0].stop),
        (40 * 1024, 100 * 1024)
    );
    assert!(repairs[0].fault.is_some(), "the torn frame was seen");
    let descriptor = catalog.descriptor(0).unwrap();
    assert_eq!(
        (descriptor.stop_position, descriptor.stop_timestamp),
        (100 * 1024, 99)
    );
    // Nothing of the torn frame or the stale bytes remains past the stop.
    let bytes = std::fs::read(&path).unwrap();
    let end = usize::try_from(at).unwrap();
    assert!(bytes[end..].iter().all(|&byte| byte == 0));
    // A second repair finds nothing to do.
    assert!(recover(dir.path(), &mut catalog, 100).unwrap().is_empty());
}

#[test]
fn a_segment_whose_creation_was_interrupted_is_removed() {
    let dir = tempfile::tempdir().unwrap();
    // The recording filled its first segment exactly; the next was being created.
    let mut catalog = crashed_recording(dir.path(), 65536, 65536);
    std::fs::write(dir.path().join("0-65536.rec.tmp"), b"").unwrap();
    let repairs = recover(dir.path(), &mut catalog, 5).unwrap();
    assert_eq!(repairs[0].stop, 65536);
    assert!(!dir.path().join("0-65536.rec.tmp").exists());
    // A next segment with a header that never made it: the recording ends where it begins.
    let mut catalog = {
        drop(catalog);
        let second = tempfile::tempdir().unwrap();
        let catalog = crashed_recording(second.path(), 65536, 65536);
        std::fs::write(segment_path(second.path(), 0, 65536), vec![0u8; 100]).unwrap();
        (second, catalog)
    };
    let repairs = recover(catalog.0.path(), &mut catalog.1, 5).unwrap();
    assert_eq!(repairs[0].stop, 65536);
    assert!(!segment_path(catalog.0.path(), 0, 65536).exists());
    assert_eq!(
        catalog.1.descriptor(0).unwrap().state,
        RecordingState::Valid
    );
}

#[test]
fn damage_below_the_stored_stop_marks_the_recording_invalid_and_repair_goes_on() {
    let dir = tempfile::tempdir().unwrap();
    let mut catalog = crashed_recording(dir.path(), 100 * 1024, 80 * 1024);
    // The segment holding the stored stop lost its header.
    let path = segment_path(dir.path(), 0, 65536);
    let file = std::fs::OpenOptions::new().write(true).open(&path).unwrap();
    file.write_all_at(&[0u8; 64], 0).unwrap();
    let repairs = recover(dir.path(), &mut catalog, 7).unwrap();
    assert_eq!(repairs[0].stop, 80 * 1024);
    let descriptor = catalog.descriptor(0).unwrap();
    assert_eq!(descriptor.state, RecordingState::Invalid);
    assert!(!descriptor.is_active());
}

#[test]
fn a_missing_segment_that_held_committed_frames_marks_the_recording_invalid() {
    let dir = tempfile::tempdir().unwrap();
    let mut catalog = crashed_recording(dir.path(), 100 * 1024, 80 * 1024);
    std::fs::remove_file(segment_path(dir.path(), 0, 65536)).unwrap();
    let repairs = recover(dir.path(), &mut catalog, 7).unwrap();
    assert_eq!(repairs[0].stop, 80 * 1024);
    assert_eq!(
        catalog.descriptor(0).unwrap().state,
        RecordingState::Invalid
    );
}
