//! Writing and reading the DATA header of a frame inside a term.
//!
//! Publication order (habit 6): a writer stores the frame's length as its negation (release),
//! then the rest of the header and the payload, then the positive length (release). A reader
//! loads the length (acquire) and reads nothing of a frame whose length is not positive. The
//! negative length also tells the driver's unblocker how long a frame was claimed to be when its
//! writer died before publishing it.

use tern_codec::frame::{
    DATA_FRAME_TYPE, DATA_HEADER_LENGTH, PAD_FRAME_TYPE, data_flags, data_offsets,
};

use crate::concurrent::atomic_buffer::{AtomicBuffer, SlotRest};

/// Offset of the frame length in a header (the layout is `tern_codec::frame::data_offsets`).
pub const FRAME_LENGTH_OFFSET: usize = data_offsets::FRAME_LENGTH;
/// Offset of the flags byte.
pub const FLAGS_OFFSET: usize = data_offsets::FLAGS;
/// Offset of the frame type.
pub const TYPE_OFFSET: usize = data_offsets::TYPE;
/// Offset of the term offset.
pub const TERM_OFFSET_OFFSET: usize = data_offsets::TERM_OFFSET;
/// Offset of the session id.
pub const SESSION_ID_OFFSET: usize = data_offsets::SESSION_ID;
/// Offset of the stream id.
pub const STREAM_ID_OFFSET: usize = data_offsets::STREAM_ID;
/// Offset of the term id.
pub const TERM_ID_OFFSET: usize = data_offsets::TERM_ID;
/// Offset of the reserved value.
pub const RESERVED_VALUE_OFFSET: usize = data_offsets::RESERVED_VALUE;
/// The PAD frame type.
pub const PAD_TYPE: u16 = PAD_FRAME_TYPE;
/// The DATA frame type.
pub const DATA_TYPE: u16 = DATA_FRAME_TYPE;

/// The parts of a DATA header that are the same for every frame of a publication, kept as the
/// words they are written as: a header is five stores at the slot widths (see
/// [`super::descriptor`]), as Aeron's header writer does, not a copy of a template.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HeaderTemplate {
    /// Bytes 4..8 of the default header (version, flags, type) with the flags cleared.
    version_and_type: i32,
    session_id: i32,
    stream_id: i32,
}

/// Bytes 4..8 of a header (little-endian): version, flags, type.
const fn version_flags_type(version: u8, flags: u8, frame_type: u16) -> i32 {
    i32::from_le_bytes([
        version,
        flags,
        frame_type.to_le_bytes()[0],
        frame_type.to_le_bytes()[1],
    ])
}

/// Two 4-byte fields as the 8-byte word they share (the first in the low half).
#[inline]
fn pair(low: i32, high: i32) -> i64 {
    i64::from(low.cast_unsigned()) | (i64::from(high) << 32)
}

impl HeaderTemplate {
    /// A template from a log's default header.
    pub fn new(default_header: [u8; DATA_HEADER_LENGTH]) -> Self {
        let field = |offset: usize| {
            i32::from_le_bytes(
                default_header[offset..offset + 4]
                    .try_into()
                    .unwrap_or([0; 4]),
            )
        };
        let frame_type =
            u16::from_le_bytes([default_header[TYPE_OFFSET], default_header[TYPE_OFFSET + 1]]);
        Self {
            version_and_type: version_flags_type(
                default_header[data_offsets::VERSION],
                0,
                frame_type,
            ),
            session_id: field(SESSION_ID_OFFSET),
            stream_id: field(STREAM_ID_OFFSET),
        }
    }

    /// The session id.
    pub fn session_id(&self) -> i32 {
        self.session_id
    }

    /// The stream id.
    pub fn stream_id(&self) -> i32 {
        self.stream_id
    }

    /// Writes the header of a frame of `frame_length` bytes at `term_offset` of `term`, with the
    /// length negated. The caller then writes the payload and calls [`publish`].
    #[inline(always)]
    pub fn write(
        &self,
        term: &AtomicBuffer<'_>,
        term_offset: usize,
        frame_length: usize,
        flags: u8,
        term_id: i32,
        reserved_value: i64,
    ) {
        self.write_with(
            term,
            term_offset,
            frame_length,
            self.version_and_type | (i32::from(flags) << 8),
            term_id,
            reserved_value,
        );
    }

    /// Writes a PAD header of `frame_length` bytes, length negated.
    fn write_pad(
        &self,
        term: &AtomicBuffer<'_>,
        term_offset: usize,
        frame_length: usize,
        term_id: i32,
    ) {
        let version_and_type = (self.version_and_type & 0xFFFF) | (i32::from(PAD_TYPE) << 16);
        self.write_with(
            term,
            term_offset,
            frame_length,
            version_and_type,
            term_id,
            0,
        );
    }

    #[inline(always)]
    fn write_with(
        &self,
        term: &AtomicBuffer<'_>,
        term_offset: usize,
        frame_length: usize,
        version_flags_type: i32,
        term_id: i32,
        reserved_value: i64,
    ) {
        let length = i32::try_from(frame_length).expect("frames are shorter than a term");
        // The slot check in `put_slot` bounds the offset by the term (at most 1 GiB).
        let offset = i32::try_from(term_offset).expect("terms are at most 1 GiB");
        term.put_slot(
            term_offset,
            -length,
            SlotRest {
                at4: version_flags_type,
                at8: pair(offset, self.session_id),
                at16: pair(self.stream_id, term_id),
                at24: reserved_value,
            },
        );
    }
}

/// Publishes a frame: stores its positive length (release).
#[inline]
pub fn publish(term: &AtomicBuffer<'_>, term_offset: usize, frame_length: usize) {
    let length = i32::try_from(frame_length).expect("frames are shorter than a term");
    // Pairs with the acquire load of the length in the term reader.
    term.put_i32_ordered(term_offset + FRAME_LENGTH_OFFSET, length);
}

/// Writes and publishes a PAD frame covering `length` bytes at `term_offset`.
pub fn write_padding(
    term: &AtomicBuffer<'_>,
    template: &HeaderTemplate,
    term_offset: usize,
    length: usize,
    term_id: i32,
) {
    template.write_pad(term, term_offset, length, term_id);
    publish(term, term_offset, length);
}

/// The type of the frame at `term_offset` (read at the 4-byte width of its word).
#[inline]
pub fn frame_type(term: &AtomicBuffer<'_>, term_offset: usize) -> u16 {
    let [_, _, low, high] = term.get_i32(term_offset + 4).to_le_bytes();
    u16::from_le_bytes([low, high])
}

/// Turns the unpublished frame at `term_offset` into padding (a claim aborted), keeping its
/// version and flags; the caller publishes it.
pub fn set_pad_type(term: &AtomicBuffer<'_>, term_offset: usize) {
    let [version, flags, ..] = term.get_i32(term_offset + 4).to_le_bytes();
    term.put_i32(
        term_offset + 4,
        version_flags_type(version, flags, PAD_TYPE),
    );
}

/// What a subscriber sees of a fragment's header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FragmentHeader {
    /// Bytes in the frame, header included.
    pub frame_length: i32,
    /// BEGIN, END and EOS flags.
    pub flags: u8,
    /// Where the frame starts in its term.
    pub term_offset: i32,
    /// The publication's session.
    pub session_id: i32,
    /// The stream.
    pub stream_id: i32,
    /// The frame's term.
    pub term_id: i32,
    /// The publisher's reserved value.
    pub reserved_value: i64,
    /// The stream position just after this frame (aligned).
    pub position: i64,
}

impl FragmentHeader {
    /// Whether the fragment begins a message.
    pub fn is_begin(&self) -> bool {
        self.flags & data_flags::BEGIN != 0
    }

    /// Whether the fragment ends a message.
    pub fn is_end(&self) -> bool {
        self.flags & data_flags::END != 0
    }

    /// The header from a slot's words.
    #[inline]
    pub(crate) fn from_slot(frame_length: i32, rest: SlotRest, position: i64) -> Self {
        let [_, flags, ..] = rest.at4.to_le_bytes();
        let low =
            |word: i64| i32::from_le_bytes(word.to_le_bytes()[..4].try_into().unwrap_or([0; 4]));
        let high =
            |word: i64| i32::from_le_bytes(word.to_le_bytes()[4..].try_into().unwrap_or([0; 4]));
        Self {
            frame_length,
            flags,
            term_offset: low(rest.at8),
            session_id: high(rest.at8),
            stream_id: low(rest.at16),
            term_id: high(rest.at16),
            reserved_value: rest.at24,
            position,
        }
    }

    /// The header at the start of `bytes` (at least a header long); `position` is the caller's.
    pub(crate) fn parse(bytes: &[u8], position: i64) -> Self {
        let field = |offset: usize| {
            i32::from_le_bytes(bytes[offset..offset + 4].try_into().unwrap_or([0; 4]))
        };
        Self {
            frame_length: field(FRAME_LENGTH_OFFSET),
            flags: bytes[FLAGS_OFFSET],
            term_offset: field(TERM_OFFSET_OFFSET),
            session_id: field(SESSION_ID_OFFSET),
            stream_id: field(STREAM_ID_OFFSET),
            term_id: field(TERM_ID_OFFSET),
            reserved_value: i64::from_le_bytes(
                bytes[RESERVED_VALUE_OFFSET..RESERVED_VALUE_OFFSET + 8]
                    .try_into()
                    .unwrap_or([0; 8]),
            ),
            position,
        }
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;
    use crate::concurrent::atomic_buffer::AlignedBuffer;

    /// The bytes of a header as Aeron lays out a DATA frame (little-endian): length, version,
    /// flags, type, term offset, session, stream, term id, reserved value.
    fn aeron_header(fields: (i32, u8, u8, u16, i32, i32, i32, i32, i64)) -> Vec<u8> {
        let (length, version, flags, frame_type, offset, session, stream, term, reserved) = fields;
        let mut bytes = Vec::new();
        bytes.extend(length.to_le_bytes());
        bytes.extend([version, flags]);
        bytes.extend(frame_type.to_le_bytes());
        for field in [offset, session, stream, term] {
            bytes.extend(field.to_le_bytes());
        }
        bytes.extend(reserved.to_le_bytes());
        bytes
    }

    fn bytes_at(term: &AtomicBuffer<'_>, offset: usize) -> Vec<u8> {
        let mut bytes = vec![0u8; DATA_HEADER_LENGTH];
        term.get_bytes(offset, &mut bytes);
        bytes
    }

    /// The header words pack to exactly Aeron's bytes: the sender puts term bytes on the wire
    /// as they are, so a symmetric packing mistake in writer and reader must not pass.
    #[test]
    fn headers_are_written_byte_for_byte_as_aeron_lays_them_out() {
        let memory = AlignedBuffer::new(4096);
        let term = memory.buffer();
        let default = aeron_header((0, 0, 0xC0, DATA_TYPE, 0, 0x1122_3344, -2, 0, 0));
        let template = HeaderTemplate::new(default.try_into().unwrap());
        assert_eq!(
            (template.session_id(), template.stream_id()),
            (0x1122_3344, -2)
        );

        template.write(&term, 64, 100, 0x80, -7, -0x0102_0304_0506_0708);
        let reserved = -0x0102_0304_0506_0708;
        assert_eq!(
            bytes_at(&term, 64),
            aeron_header((-100, 0, 0x80, DATA_TYPE, 64, 0x1122_3344, -2, -7, reserved))
        );
        publish(&term, 64, 100);
        assert_eq!(
            bytes_at(&term, 64),
            aeron_header((100, 0, 0x80, DATA_TYPE, 64, 0x1122_3344, -2, -7, reserved))
        );
        assert_eq!(frame_type(&term, 64), DATA_TYPE);
        let read = FragmentHeader::from_slot(100, term.get_slot_rest(64), 192);
        assert_eq!(
            (
                read.flags,
                read.term_offset,
                read.session_id,
                read.stream_id,
                read.term_id
            ),
            (0x80, 64, 0x1122_3344, -2, -7)
        );
        assert_eq!((read.reserved_value, read.position), (reserved, 192));

        // An aborted claim keeps version and flags and becomes padding.
        set_pad_type(&term, 64);
        assert_eq!(
            bytes_at(&term, 64),
            aeron_header((100, 0, 0x80, PAD_TYPE, 64, 0x1122_3344, -2, -7, reserved))
        );

        write_padding(&term, &template, 3072, 1024, 9);
        assert_eq!(
            bytes_at(&term, 3072),
            aeron_header((1024, 0, 0, PAD_TYPE, 3072, 0x1122_3344, -2, 9, 0))
        );
        assert_eq!(frame_type(&term, 3072), PAD_TYPE);
    }
}
