//! Segment files attacked directly: frames written through the writer read back identical,
//! across terms and segments; damage of every kind is reported by recording, position and reason,
//! after the good frames before it, and never handed back as data.

use std::os::unix::fs::FileExt;

use tern_archive::catalog::{NULL_VALUE, RecordingDescriptor, RecordingState};
use tern_archive::error::SegmentError;
use tern_archive::segment::{
    FrameFault, SEGMENT_HEADER_LENGTH_U64, SegmentHeader, SegmentLayout, segment_path,
};
use tern_archive::segment_reader::SegmentReader;
use tern_archive::segment_writer::{Durability, FileIo, SegmentWriter};
use tern_codec::frame::{DATA_HEADER_LENGTH, DataHeader, FrameType, align, data_flags};
use tern_codec::position::TermGeometry;

const TERM_LENGTH: u32 = 64 * 1024;
const SEGMENT_LENGTH: u32 = 2 * TERM_LENGTH;
const INITIAL_TERM_ID: i32 = 100;
const SESSION_ID: i32 = 5;
const STREAM_ID: i32 = 9;

/// A stream as a log holds it: frames of assorted lengths (some fragments of one message),
/// a PAD where the next frame would not fit its term.
struct Stream {
    geometry: TermGeometry,
    origin: i64,
    bytes: Vec<u8>,
    /// (position, aligned length) of every frame, PADs included.
    frames: Vec<(i64, usize)>,
}

impl Stream {
    fn new(origin: i64, seed: u64, end: i64) -> Self {
        let geometry = TermGeometry::new(TERM_LENGTH, INITIAL_TERM_ID).unwrap();
        let mut stream = Self {
            geometry,
            origin,
            bytes: Vec::new(),
            frames: Vec::new(),
        };
        let mut state = seed | 1;
        let mut position = origin;
        while position < end {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            let payload = usize::try_from(state % 1400).unwrap();
            let flags = match state % 5 {
                0 => data_flags::BEGIN,
                1 => 0,
                2 => data_flags::END,
                _ => data_flags::UNFRAGMENTED,
            };
            position = stream.append(position, payload, flags);
        }
        stream
    }

    fn append(&mut self, position: i64, payload: usize, flags: u8) -> i64 {
        let term_offset = self.geometry.term_offset(position);
        let room = usize::try_from(TERM_LENGTH - term_offset).unwrap();
        let length = DATA_HEADER_LENGTH + payload;
        let (frame_type, frame_length, fill) = if align(length) > room {
            (FrameType::Pad, room, 0u8)
        } else {
            (
                FrameType::Data,
                length,
                u8::try_from(position % 251).unwrap(),
            )
        };
        let header = DataHeader {
            frame_length: i32::try_from(frame_length).unwrap(),
            flags: if frame_type == FrameType::Pad {
                data_flags::UNFRAGMENTED
            } else {
                flags
            },
            frame_type,
            term_offset: i32::try_from(term_offset).unwrap(),
            session_id: SESSION_ID,
            stream_id: STREAM_ID,
            term_id: self.geometry.term_id(position),
            reserved_value: 0x0102_0304_0506_0708,
        };
        let start = self.bytes.len();
        self.bytes.resize(start + align(frame_length), 0);
        header.encode(&mut self.bytes[start..]).unwrap();
        if frame_type == FrameType::Data {
            self.bytes[start + DATA_HEADER_LENGTH..start + frame_length].fill(fill);
        }
        self.frames.push((position, align(frame_length)));
        position + i64::try_from(align(frame_length)).unwrap()
    }

    fn end(&self) -> i64 {
        self.origin + i64::try_from(self.bytes.len()).unwrap()
    }

    fn at(&self, position: i64, length: usize) -> &[u8] {
        let start = usize::try_from(position - self.origin).unwrap();
        &self.bytes[start..start + length]
    }

    /// Blocks of whole frames, none crossing a term, of up to `max` bytes.
    fn blocks(&self, max: usize) -> Vec<(i64, usize)> {
        let mut blocks = Vec::new();
        let mut start = self.origin;
        let mut length = 0usize;
        for &(position, aligned) in &self.frames {
            let crosses_term = self.geometry.term_id(position) != self.geometry.term_id(start);
            if length > 0 && (length + aligned > max || crosses_term) {
                blocks.push((start, length));
                start = position;
                length = 0;
            }
            length += aligned;
        }
        if length > 0 {
            blocks.push((start, length));
        }
        blocks
    }
}

/// A block as an image lends it: a PAD that ends it as its header alone.
fn lent(block: &[u8]) -> &[u8] {
    let mut offset = 0;
    while offset < block.len() {
        let length = usize::try_from(i32::from_le_bytes(
            block[offset..offset + 4].try_into().unwrap(),
        ))
        .unwrap();
        if block[offset + 6] == 0 {
            return &block[..offset + DATA_HEADER_LENGTH];
        }
        offset += align(length);
    }
    block
}

fn descriptor(origin: i64, stop: i64) -> RecordingDescriptor {
    RecordingDescriptor {
        recording_id: 3,
        state: RecordingState::Valid,
        start_position: origin,
        stop_position: stop,
        start_timestamp: 0,
        stop_timestamp: NULL_VALUE,
        origin_position: origin,
        initial_term_id: INITIAL_TERM_ID,
        term_length: TERM_LENGTH,
        mtu: 1408,
        segment_length: SEGMENT_LENGTH,
        session_id: SESSION_ID,
        stream_id: STREAM_ID,
        channel: "tern:ipc".to_owned(),
        source_identity: "ipc".to_owned(),
    }
}

fn write(dir: &std::path::Path, stream: &Stream, checksums: bool, durability: Durability) {
    write_through(dir, stream, checksums, durability, FileIo::Pwrite);
}

fn write_through(
    dir: &std::path::Path,
    stream: &Stream,
    checksums: bool,
    durability: Durability,
    file_io: FileIo,
) {
    let header = SegmentHeader {
        recording_id: 3,
        base_position: 0,
        segment_length: SEGMENT_LENGTH,
        term_length: TERM_LENGTH,
        initial_term_id: INITIAL_TERM_ID,
        stream_id: STREAM_ID,
        session_id: SESSION_ID,
        checksums,
    };
    let layout = SegmentLayout::new(stream.origin, SEGMENT_LENGTH, stream.geometry);
    let mut writer = SegmentWriter::new(dir, header, layout, stream.origin, durability, 16 * 1024)
        .with_file_io(file_io)
        .unwrap();
    for (position, length) in stream.blocks(16 * 1024) {
        assert_eq!(writer.position(), position);
        let block = stream.at(position, length);
        writer.write(lent(block), length).unwrap();
        assert_eq!(
            writer.commit().unwrap(),
            position + i64::try_from(length).unwrap()
        );
    }
    assert_eq!(writer.close().unwrap(), stream.end());
}

/// Reads everything back, frame by frame, checking each against the stream.
fn read_all(
    dir: &std::path::Path,
    stream: &Stream,
    from: i64,
    checksums: bool,
) -> Result<usize, SegmentError> {
    let mut reader = SegmentReader::new(
        dir,
        &descriptor(stream.origin, stream.end()),
        from,
        64 * 1024,
    )?;
    let mut frames = 0;
    while let Some(block) = reader.read(stream.end())? {
        let mut offset = 0;
        while offset < block.bytes.len() {
            let position = block.position + i64::try_from(offset).unwrap();
            let got = &block.bytes[offset..];
            let length = usize::try_from(i32::from_le_bytes(got[..4].try_into().unwrap())).unwrap();
            let is_pad = got[6] == 0;
            let compared = if is_pad { DATA_HEADER_LENGTH } else { length };
            let expected = stream.at(position, compared);
            assert_eq!(got[..24], expected[..24], "header at {position}");
            assert_eq!(
                got[32..compared],
                expected[32..compared],
                "payload at {position}"
            );
            if !checksums {
                assert_eq!(
                    got[24..32],
                    expected[24..32],
                    "reserved value at {position}"
                );
            }
            frames += 1;
            offset += if is_pad {
                DATA_HEADER_LENGTH
            } else {
                align(length)
            };
        }
        let (position, length, next) = (block.position, block.bytes.len(), block.next_position);
        // A block not used (a back-pressured replay) is handed back again, unchanged.
        let again = reader.read(stream.end())?.expect("the same block");
        assert_eq!(
            (again.position, again.bytes.len(), again.next_position),
            (position, length, next)
        );
        reader.advance_to(next);
    }
    assert_eq!(reader.position(), stream.end());
    Ok(frames)
}

#[test]
fn frames_written_across_terms_and_segments_read_back_identical() {
    let io_uring = tern_engine::file_ring::probe().is_ok()
        || std::env::var_os("TERN_REQUIRE_IO_URING").is_some();
    for (checksums, durability, file_io) in [
        (true, Durability::None, FileIo::Pwrite),
        (true, Durability::Position, FileIo::Pwrite),
        (false, Durability::SegmentEnd, FileIo::Pwrite),
        (true, Durability::SegmentEnd, FileIo::IoUring),
        (false, Durability::None, FileIo::IoUring),
    ] {
        if file_io == FileIo::IoUring && !io_uring {
            eprintln!("io_uring unavailable here: its cases skipped");
            continue;
        }
        let dir = tempfile::tempdir().unwrap();
        // Starts mid-term, runs through six segments.
        let origin = 3 * i64::from(TERM_LENGTH) + 4096;
        let stream = Stream::new(origin, 42, origin + 11 * i64::from(TERM_LENGTH) + 777 * 32);
        write_through(dir.path(), &stream, checksums, durability, file_io);
        let frames = read_all(dir.path(), &stream, origin, checksums).unwrap();
        assert_eq!(frames, stream.frames.len());
        // A reader may start at any frame.
        let (middle, _) = stream.frames[stream.frames.len() / 2];
        read_all(dir.path(), &stream, middle, checksums).unwrap();
        let segments = std::fs::read_dir(dir.path()).unwrap().count();
        assert_eq!(segments, 6, "segments of two terms from term 3 to term 14");
    }
}

fn frame_file_offset(position: i64, origin: i64) -> (std::path::PathBuf, u64) {
    let geometry = TermGeometry::new(TERM_LENGTH, INITIAL_TERM_ID).unwrap();
    let layout = SegmentLayout::new(origin, SEGMENT_LENGTH, geometry);
    let base = layout.base_of(position);
    (
        std::path::PathBuf::from(format!("3-{base}.rec")),
        SEGMENT_HEADER_LENGTH_U64 + u64::try_from(position - base).unwrap(),
    )
}

fn poke(dir: &std::path::Path, origin: i64, position: i64, delta: u64, bytes: &[u8]) {
    let (name, offset) = frame_file_offset(position, origin);
    let file = std::fs::OpenOptions::new()
        .write(true)
        .open(dir.join(name))
        .unwrap();
    file.write_all_at(bytes, offset + delta).unwrap();
}

fn expect_fault(dir: &std::path::Path, stream: &Stream, at: i64) -> FrameFault {
    match read_all(dir, stream, stream.origin, true) {
        Err(SegmentError::Frame {
            recording_id: 3,
            position,
            fault,
        }) => {
            assert_eq!(position, at);
            fault
        }
        other => panic!("expected a fault at {at}, got {other:?}"),
    }
}

#[test]
fn a_flipped_payload_byte_is_reported_at_its_frame_and_never_handed_back() {
    let dir = tempfile::tempdir().unwrap();
    let stream = Stream::new(0, 7, 3 * i64::from(TERM_LENGTH));
    write(dir.path(), &stream, true, Durability::None);
    let (victim, _) = *stream
        .frames
        .iter()
        .find(|&&(position, aligned)| position > 70_000 && aligned > 64)
        .unwrap();
    poke(dir.path(), 0, victim, 40, &[0xEE]);
    let fault = expect_fault(dir.path(), &stream, victim);
    assert!(matches!(fault, FrameFault::Checksum { .. }), "{fault}");
}

#[test]
fn a_torn_length_a_misplaced_header_and_a_strange_type_are_each_named() {
    let stream = Stream::new(0, 9, 2 * i64::from(TERM_LENGTH));
    let (victim, _) = stream.frames[10];
    type Case<'a> = (&'a [u8], u64, fn(&FrameFault) -> bool);
    let cases: [Case<'_>; 4] = [
        (&(-5i32).to_le_bytes(), 0, |fault| {
            matches!(fault, FrameFault::Length { length: -5, .. })
        }),
        (&i32::MAX.to_le_bytes(), 0, |fault| {
            matches!(fault, FrameFault::Length { .. })
        }),
        (&77i32.to_le_bytes(), 20, |fault| {
            matches!(fault, FrameFault::Misplaced { term_id: 77, .. })
        }),
        (&[9, 0], 6, |fault| matches!(fault, FrameFault::Type(9))),
    ];
    for (bytes, delta, expected) in cases {
        let dir = tempfile::tempdir().unwrap();
        write(dir.path(), &stream, true, Durability::None);
        poke(dir.path(), 0, victim, delta, bytes);
        let fault = expect_fault(dir.path(), &stream, victim);
        assert!(expected(&fault), "{fault}");
    }
}

#[test]
fn a_frame_cut_short_by_a_crash_reads_as_torn_or_unwritten() {
    let dir = tempfile::tempdir().unwrap();
    let stream = Stream::new(0, 11, i64::from(TERM_LENGTH));
    write(dir.path(), &stream, true, Durability::None);
    let &(victim, aligned) = stream
        .frames
        .iter()
        .rev()
        .find(|&&(position, aligned)| aligned > 256 && stream.at(position, 8)[6] == 1)
        .unwrap();
    // The tail of the frame never reached the file.
    poke(dir.path(), 0, victim, 64, &vec![0u8; aligned - 64]);
    assert!(matches!(
        expect_fault(dir.path(), &stream, victim),
        FrameFault::Checksum { .. }
    ));
    // Nothing of it did.
    poke(dir.path(), 0, victim, 0, &vec![0u8; aligned]);
    assert_eq!(
        expect_fault(dir.path(), &stream, victim),
        FrameFault::Unwritten
    );
}

#[test]
fn a_missing_or_foreign_segment_is_named() {
    let dir = tempfile::tempdir().unwrap();
    let stream = Stream::new(0, 13, 3 * i64::from(TERM_LENGTH));
    write(dir.path(), &stream, true, Durability::None);
    let second = segment_path(dir.path(), 3, i64::from(SEGMENT_LENGTH));
    let kept = std::fs::read(&second).unwrap();
    std::fs::remove_file(&second).unwrap();
    let error = read_all(dir.path(), &stream, 0, true).unwrap_err();
    assert!(
        matches!(error, SegmentError::MissingSegment { position, .. } if position == i64::from(SEGMENT_LENGTH)),
        "{error}"
    );
    // A segment of another recording put in its place.
    let mut foreign = kept;
    let header = SegmentHeader {
        recording_id: 4,
        base_position: i64::from(SEGMENT_LENGTH),
        segment_length: SEGMENT_LENGTH,
        term_length: TERM_LENGTH,
        initial_term_id: INITIAL_TERM_ID,
        stream_id: STREAM_ID,
        session_id: SESSION_ID,
        checksums: true,
    };
    foreign[..4096].copy_from_slice(&header.encode());
    std::fs::write(&second, &foreign).unwrap();
    let error = read_all(dir.path(), &stream, 0, true).unwrap_err();
    assert!(matches!(error, SegmentError::Layout { .. }), "{error}");
    // A damaged header.
    foreign[30] ^= 1;
    std::fs::write(&second, &foreign).unwrap();
    let error = read_all(dir.path(), &stream, 0, true).unwrap_err();
    assert!(error.to_string().contains("header checksum"), "{error}");
}
