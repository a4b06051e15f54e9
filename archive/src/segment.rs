//! Segment files: a recording's stream, frame for frame, in files of a fixed stream length.
//!
//! A recording of a stream that started at `origin_position` is cut into segments of
//! `segment_length` bytes of stream (a multiple of the term length), laid out from the start of
//! the origin's term, so a segment never splits a term and a position's segment is arithmetic.
//! Segment `<recording id>-<base position>.rec` holds positions `[base, base + segment_length)`:
//!
//! ```text
//! segment file:
//!      0  header (4096 bytes, below)
//!   4096  the stream from `base`: byte `position - base` of the data is the stream's byte at
//!         `position`. Bytes before the recording's start, and past its end, are zero.
//!
//! header:
//!    0  magic            u64   "TERNSEGM"
//!    8  version          u32   semantic version, composed
//!   12  flags            u32   bit 0: frames carry CRC32C checksums
//!   16  recording_id     i64
//!   24  base_position    i64
//!   32  segment_length   u32
//!   36  term_length      u32
//!   40  initial_term_id  i32
//!   44  stream_id        i32
//!   48  session_id       i32
//!   52  header_checksum  u32   CRC32C of bytes 0..52
//!   56  zero to 4096
//! ```
//!
//! **Frame checksums.** With checksums on (the default), each frame's reserved value (header
//! bytes 24..32) holds the CRC32C of the whole frame with those eight bytes taken as zero, in
//! the low four bytes, the high four zero. A PAD frame's checksum covers its header only: its
//! body is padding that nobody reads. The checksum replaces whatever reserved value the publisher put
//! there: replayed frames carry it.
//!
//! A frame found in a segment is trusted only after [`check_frame`]: its length fits what is
//! left of the term and of the bytes read, its term id and term offset name the position it
//! was found at, its type is DATA or PAD, and its checksum matches. Whatever fails is reported
//! with the position and the reason, never replayed.

use std::path::{Path, PathBuf};

use tern_codec::SemanticVersion;
use tern_codec::frame::{DATA_HEADER_LENGTH, FRAME_ALIGNMENT, data_offsets};
use tern_codec::position::TermGeometry;

/// The segment file format's version.
pub const SEGMENT_VERSION: SemanticVersion = SemanticVersion::new(1, 0, 0);
/// "TERNSEGM", little-endian.
pub const SEGMENT_MAGIC: u64 = u64::from_le_bytes(*b"TERNSEGM");
/// Bytes before a segment's data: one page, so the data stays page-aligned in the file.
pub const SEGMENT_HEADER_LENGTH: usize = 4096;
/// [`SEGMENT_HEADER_LENGTH`] as a file offset.
pub const SEGMENT_HEADER_LENGTH_U64: u64 = 4096;
/// The header's flag bit: frames carry checksums.
pub const FLAG_CHECKSUMS: u32 = 1;
/// The longest segment: 1 GiB of stream.
pub const SEGMENT_LENGTH_MAX: u32 = 1 << 30;
/// The default segment length: 128 MiB of stream.
pub const SEGMENT_LENGTH_DEFAULT: u32 = 128 * 1024 * 1024;
/// The file name suffix.
pub const SEGMENT_SUFFIX: &str = ".rec";

const MAGIC_OFFSET: usize = 0;
const VERSION_OFFSET: usize = 8;
const FLAGS_OFFSET: usize = 12;
const RECORDING_ID_OFFSET: usize = 16;
const BASE_POSITION_OFFSET: usize = 24;
const SEGMENT_LENGTH_OFFSET: usize = 32;
const TERM_LENGTH_OFFSET: usize = 36;
const INITIAL_TERM_ID_OFFSET: usize = 40;
const STREAM_ID_OFFSET: usize = 44;
const SESSION_ID_OFFSET: usize = 48;
const HEADER_CHECKSUM_OFFSET: usize = 52;
/// Bytes of the header that carry fields.
pub const HEADER_FIELDS_LENGTH: usize = 56;
const _: () = assert!(HEADER_CHECKSUM_OFFSET + 4 == HEADER_FIELDS_LENGTH);
const _: () = assert!(HEADER_FIELDS_LENGTH <= SEGMENT_HEADER_LENGTH);
const _: () = assert!(SEGMENT_HEADER_LENGTH as u64 == SEGMENT_HEADER_LENGTH_U64);

/// What a segment's header says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SegmentHeader {
    /// The recording it belongs to.
    pub recording_id: i64,
    /// The stream position of its first data byte.
    pub base_position: i64,
    /// Bytes of stream it holds.
    pub segment_length: u32,
    /// The stream's term length.
    pub term_length: u32,
    /// The stream's initial term id.
    pub initial_term_id: i32,
    /// The stream.
    pub stream_id: i32,
    /// The publication's session.
    pub session_id: i32,
    /// Whether frames carry checksums.
    pub checksums: bool,
}

/// Why a segment header was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SegmentHeaderError {
    /// Shorter than a header.
    #[error("{0} bytes is shorter than a segment header")]
    Short(usize),
    /// Not a segment file.
    #[error("magic {0:#018x} is not TERNSEGM")]
    Magic(u64),
    /// Another major version.
    #[error("segment version {found}; this build reads {supported}")]
    Version {
        /// The file's.
        found: SemanticVersion,
        /// This build's.
        supported: SemanticVersion,
    },
    /// A damaged header.
    #[error("header checksum {stored:#010x} does not match its bytes ({computed:#010x})")]
    Checksum {
        /// Stored.
        stored: u32,
        /// Computed.
        computed: u32,
    },
}

impl SegmentHeader {
    /// Writes the header's [`SEGMENT_HEADER_LENGTH`] bytes.
    pub fn encode(&self) -> [u8; SEGMENT_HEADER_LENGTH] {
        let mut bytes = [0u8; SEGMENT_HEADER_LENGTH];
        put(&mut bytes, MAGIC_OFFSET, &SEGMENT_MAGIC.to_le_bytes());
        put(
            &mut bytes,
            VERSION_OFFSET,
            &SEGMENT_VERSION.compose().to_le_bytes(),
        );
        let flags = if self.checksums { FLAG_CHECKSUMS } else { 0 };
        put(&mut bytes, FLAGS_OFFSET, &flags.to_le_bytes());
        put(
            &mut bytes,
            RECORDING_ID_OFFSET,
            &self.recording_id.to_le_bytes(),
        );
        put(
            &mut bytes,
            BASE_POSITION_OFFSET,
            &self.base_position.to_le_bytes(),
        );
        put(
            &mut bytes,
            SEGMENT_LENGTH_OFFSET,
            &self.segment_length.to_le_bytes(),
        );
        put(
            &mut bytes,
            TERM_LENGTH_OFFSET,
            &self.term_length.to_le_bytes(),
        );
        put(
            &mut bytes,
            INITIAL_TERM_ID_OFFSET,
            &self.initial_term_id.to_le_bytes(),
        );
        put(&mut bytes, STREAM_ID_OFFSET, &self.stream_id.to_le_bytes());
        put(
            &mut bytes,
            SESSION_ID_OFFSET,
            &self.session_id.to_le_bytes(),
        );
        let checksum = crc32c::crc32c(&bytes[..HEADER_CHECKSUM_OFFSET]);
        put(&mut bytes, HEADER_CHECKSUM_OFFSET, &checksum.to_le_bytes());
        bytes
    }

    /// Reads and checks a header.
    pub fn decode(bytes: &[u8]) -> Result<Self, SegmentHeaderError> {
        if bytes.len() < HEADER_FIELDS_LENGTH {
            return Err(SegmentHeaderError::Short(bytes.len()));
        }
        let magic = u64::from_le_bytes(array(bytes, MAGIC_OFFSET));
        if magic != SEGMENT_MAGIC {
            return Err(SegmentHeaderError::Magic(magic));
        }
        let composed = u32::from_le_bytes(array(bytes, VERSION_OFFSET));
        let found = SemanticVersion::decompose(composed).unwrap_or(SemanticVersion::new(0, 0, 0));
        if found.major != SEGMENT_VERSION.major {
            return Err(SegmentHeaderError::Version {
                found,
                supported: SEGMENT_VERSION,
            });
        }
        let stored = u32::from_le_bytes(array(bytes, HEADER_CHECKSUM_OFFSET));
        let computed = crc32c::crc32c(&bytes[..HEADER_CHECKSUM_OFFSET]);
        if stored != computed {
            return Err(SegmentHeaderError::Checksum { stored, computed });
        }
        let flags = u32::from_le_bytes(array(bytes, FLAGS_OFFSET));
        Ok(Self {
            recording_id: i64::from_le_bytes(array(bytes, RECORDING_ID_OFFSET)),
            base_position: i64::from_le_bytes(array(bytes, BASE_POSITION_OFFSET)),
            segment_length: u32::from_le_bytes(array(bytes, SEGMENT_LENGTH_OFFSET)),
            term_length: u32::from_le_bytes(array(bytes, TERM_LENGTH_OFFSET)),
            initial_term_id: i32::from_le_bytes(array(bytes, INITIAL_TERM_ID_OFFSET)),
            stream_id: i32::from_le_bytes(array(bytes, STREAM_ID_OFFSET)),
            session_id: i32::from_le_bytes(array(bytes, SESSION_ID_OFFSET)),
            checksums: flags & FLAG_CHECKSUMS != 0,
        })
    }
}

fn put(bytes: &mut [u8], offset: usize, value: &[u8]) {
    bytes[offset..offset + value.len()].copy_from_slice(value);
}

fn array<const N: usize>(bytes: &[u8], offset: usize) -> [u8; N] {
    bytes[offset..offset + N]
        .try_into()
        .expect("length checked")
}

/// The layout of one recording's segments.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SegmentLayout {
    /// The start of the origin position's term: segment bases are this plus multiples of the
    /// segment length.
    pub first_base: i64,
    /// Bytes of stream per segment.
    pub segment_length: u32,
    /// The stream's terms.
    pub geometry: TermGeometry,
}

impl SegmentLayout {
    /// The layout of a recording that started at `origin_position`.
    pub fn new(origin_position: i64, segment_length: u32, geometry: TermGeometry) -> Self {
        let term_length = i64::from(geometry.term_length());
        assert!(origin_position >= 0, "positions are non-negative");
        assert!(
            segment_length >= geometry.term_length()
                && segment_length.is_multiple_of(geometry.term_length()),
            "a segment holds whole terms"
        );
        Self {
            first_base: origin_position - origin_position % term_length,
            segment_length,
            geometry,
        }
    }

    /// The base position of the segment holding `position`.
    pub fn base_of(&self, position: i64) -> i64 {
        debug_assert!(position >= self.first_base);
        let length = i64::from(self.segment_length);
        self.first_base + (position - self.first_base) / length * length
    }

    /// Bytes of the segment holding `position` from `position` to its end.
    pub fn remaining_in_segment(&self, position: i64) -> i64 {
        self.base_of(position) + i64::from(self.segment_length) - position
    }
}

/// The file name of a recording's segment.
pub fn segment_file_name(recording_id: i64, base_position: i64) -> String {
    format!("{recording_id}-{base_position}{SEGMENT_SUFFIX}")
}

/// The path of a recording's segment in `dir`.
pub fn segment_path(dir: &Path, recording_id: i64, base_position: i64) -> PathBuf {
    dir.join(segment_file_name(recording_id, base_position))
}

/// Reads `<recording id>-<base position>.rec`.
pub fn parse_segment_file_name(name: &str) -> Option<(i64, i64)> {
    let stem = name.strip_suffix(SEGMENT_SUFFIX)?;
    let (id, base) = stem.split_once('-')?;
    Some((id.parse().ok()?, base.parse().ok()?))
}

/// The checksum of one frame: the CRC32C of its bytes with the eight bytes of its reserved
/// value taken as zero (a PAD: its header alone).
pub fn frame_checksum(frame: &[u8]) -> u32 {
    debug_assert!(frame.len() >= DATA_HEADER_LENGTH);
    let reserved = data_offsets::RESERVED_VALUE;
    let checksum = crc32c::crc32c(&frame[..reserved]);
    let checksum = crc32c::crc32c_append(checksum, &[0u8; 8]);
    if frame_type(frame) == tern_codec::frame::PAD_FRAME_TYPE {
        return checksum;
    }
    crc32c::crc32c_append(checksum, &frame[DATA_HEADER_LENGTH..])
}

fn frame_type(frame: &[u8]) -> u16 {
    u16::from_le_bytes(array(frame, data_offsets::TYPE))
}

/// Whether the frame header at the start of `frame` (at least its first 8 bytes) is a PAD.
pub fn is_pad(frame: &[u8]) -> bool {
    frame_type(frame) == tern_codec::frame::PAD_FRAME_TYPE
}

fn frame_length(frame: &[u8]) -> i32 {
    i32::from_le_bytes(array(frame, data_offsets::FRAME_LENGTH))
}

/// Copies `source` (whole frames as a log lends them, a PAD that ends the block as its header
/// alone) into `destination` with each frame's checksum in its reserved value, frame by frame
/// so each is checksummed while the copy is still in cache. Lengths are read from the copy, not
/// the shared source, and checked: a block that is not whole frames (a writer that raced the
/// reader) is refused with the offset of the first frame that does not fit.
pub fn copy_stamped(source: &[u8], destination: &mut [u8]) -> Result<(), usize> {
    if source.len() != destination.len() {
        return Err(0);
    }
    let mut offset = 0;
    while offset < source.len() {
        if source.len() - offset < DATA_HEADER_LENGTH {
            return Err(offset);
        }
        destination[offset..offset + DATA_HEADER_LENGTH]
            .copy_from_slice(&source[offset..offset + DATA_HEADER_LENGTH]);
        let header = &destination[offset..offset + DATA_HEADER_LENGTH];
        let length = usize::try_from(frame_length(header)).unwrap_or(0);
        let pad = frame_type(header) == tern_codec::frame::PAD_FRAME_TYPE;
        let (covered, aligned) = if pad {
            (DATA_HEADER_LENGTH, DATA_HEADER_LENGTH)
        } else {
            (length, tern_codec::frame::align(length))
        };
        if length < DATA_HEADER_LENGTH
            || aligned > source.len() - offset
            || (pad && offset + DATA_HEADER_LENGTH != source.len())
        {
            return Err(offset);
        }
        let frame = &mut destination[offset..offset + aligned];
        frame[DATA_HEADER_LENGTH..]
            .copy_from_slice(&source[offset + DATA_HEADER_LENGTH..offset + aligned]);
        // Zeroed first, the reserved value takes part as zeros: one pass over the frame.
        let reserved = data_offsets::RESERVED_VALUE;
        frame[reserved..reserved + 8].fill(0);
        let checksum = crc32c::crc32c(&frame[..covered]);
        frame[reserved..reserved + 8].copy_from_slice(&u64::from(checksum).to_le_bytes());
        offset += aligned;
    }
    Ok(())
}

/// Why the bytes at a position are not a frame to trust.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum FrameFault {
    /// Zero: nothing was written here (the end of a recording, or a write that never landed).
    #[error("no frame (zero length)")]
    Unwritten,
    /// A length that does not fit.
    #[error("frame length {length} does not fit ({room} bytes left in the term)")]
    Length {
        /// The length found.
        length: i32,
        /// Bytes from the position to the end of its term.
        room: usize,
    },
    /// A frame that runs past the bytes at hand: torn, or cut by the end of what was read.
    #[error("frame of {length} bytes runs past the {available} bytes written")]
    Truncated {
        /// The frame's length.
        length: usize,
        /// Bytes available.
        available: usize,
    },
    /// A header naming another place in the stream.
    #[error(
        "header says term {term_id} offset {term_offset}, but the frame lies at term {expected_term_id} offset {expected_term_offset}"
    )]
    Misplaced {
        /// The header's term id.
        term_id: i32,
        /// The header's term offset.
        term_offset: i32,
        /// The term id of the position.
        expected_term_id: i32,
        /// The term offset of the position.
        expected_term_offset: u32,
    },
    /// Neither DATA nor PAD.
    #[error("frame type {0:#06x} is neither DATA nor PAD")]
    Type(u16),
    /// The bytes do not match the checksum.
    #[error("checksum {stored:#010x} does not match the frame's bytes ({computed:#010x})")]
    Checksum {
        /// The checksum in the frame.
        stored: u32,
        /// The checksum of the bytes found.
        computed: u32,
    },
}

/// Checks the frame at the start of `bytes`, which lie at `position` of a stream of `geometry`.
/// Returns the frame's aligned length (for a PAD, to the end of its term; `bytes` need only hold
/// its header).
pub fn check_frame(
    bytes: &[u8],
    position: i64,
    geometry: &TermGeometry,
    checksums: bool,
) -> Result<usize, FrameFault> {
    if bytes.len() < DATA_HEADER_LENGTH {
        if bytes.iter().all(|&byte| byte == 0) {
            return Err(FrameFault::Unwritten);
        }
        return Err(FrameFault::Truncated {
            length: DATA_HEADER_LENGTH,
            available: bytes.len(),
        });
    }
    let length = frame_length(bytes);
    if length == 0 {
        return Err(FrameFault::Unwritten);
    }
    let term_offset = geometry.term_offset(position);
    let room = usize::try_from(geometry.term_length() - term_offset).expect("u32 fits usize");
    let Some(length_found) = usize::try_from(length)
        .ok()
        .filter(|&found| (DATA_HEADER_LENGTH..=room).contains(&found))
    else {
        return Err(FrameFault::Length { length, room });
    };
    let expected_term_id = geometry.term_id(position);
    let term_id = i32::from_le_bytes(array(bytes, data_offsets::TERM_ID));
    let offset_found = i32::from_le_bytes(array(bytes, data_offsets::TERM_OFFSET));
    if term_id != expected_term_id || i64::from(offset_found) != i64::from(term_offset) {
        return Err(FrameFault::Misplaced {
            term_id,
            term_offset: offset_found,
            expected_term_id,
            expected_term_offset: term_offset,
        });
    }
    let kind = frame_type(bytes);
    let aligned = tern_codec::frame::align(length_found);
    let checked = match kind {
        tern_codec::frame::PAD_FRAME_TYPE => DATA_HEADER_LENGTH,
        tern_codec::frame::DATA_FRAME_TYPE => {
            if length_found > bytes.len() {
                return Err(FrameFault::Truncated {
                    length: length_found,
                    available: bytes.len(),
                });
            }
            length_found
        }
        other => return Err(FrameFault::Type(other)),
    };
    if checksums {
        let stored_value = u64::from_le_bytes(array(bytes, data_offsets::RESERVED_VALUE));
        let computed = frame_checksum(&bytes[..checked]);
        if stored_value != u64::from(computed) {
            return Err(FrameFault::Checksum {
                stored: u32::try_from(stored_value & u64::from(u32::MAX)).expect("masked"),
                computed,
            });
        }
    }
    debug_assert!(aligned.is_multiple_of(FRAME_ALIGNMENT));
    Ok(aligned)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn segment_names_round_trip_and_strangers_are_not_segments() {
        assert_eq!(segment_file_name(12, 134_217_728), "12-134217728.rec");
        assert_eq!(
            parse_segment_file_name("12-134217728.rec"),
            Some((12, 134_217_728))
        );
        for stranger in [
            "archive.catalog",
            "12.rec",
            "a-0.rec",
            "1-2.rec.tmp",
            "-1.rec",
        ] {
            assert_eq!(parse_segment_file_name(stranger), None, "{stranger}");
        }
    }

    #[test]
    fn segments_are_laid_out_from_the_origin_term() {
        let geometry = TermGeometry::new(65536, 0).unwrap();
        let layout = SegmentLayout::new(3 * 65536 + 4096, 4 * 65536, geometry);
        assert_eq!(layout.first_base, 3 * 65536);
        assert_eq!(layout.base_of(3 * 65536 + 4096), 3 * 65536);
        assert_eq!(layout.base_of(7 * 65536 - 32), 3 * 65536);
        assert_eq!(layout.base_of(7 * 65536), 7 * 65536);
        assert_eq!(layout.remaining_in_segment(7 * 65536 - 32), 32);
    }

    #[test]
    fn a_header_round_trips_and_a_newer_major_is_refused() {
        let header = SegmentHeader {
            recording_id: 1,
            base_position: 65536,
            segment_length: 131_072,
            term_length: 65536,
            initial_term_id: -3,
            stream_id: 10,
            session_id: 11,
            checksums: true,
        };
        let mut bytes = header.encode();
        assert_eq!(SegmentHeader::decode(&bytes), Ok(header));
        assert_eq!(
            SegmentHeader::decode(&bytes[..20]),
            Err(SegmentHeaderError::Short(20))
        );
        bytes[VERSION_OFFSET..VERSION_OFFSET + 4]
            .copy_from_slice(&SemanticVersion::new(2, 1, 0).compose().to_le_bytes());
        let error = SegmentHeader::decode(&bytes).unwrap_err();
        assert!(error.to_string().contains("2.1.0"), "{error}");
    }
}
