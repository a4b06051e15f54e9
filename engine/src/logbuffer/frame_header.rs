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

use crate::concurrent::atomic_buffer::AtomicBuffer;

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

/// The parts of a DATA header that are the same for every frame of a publication.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HeaderTemplate {
    header: [u8; DATA_HEADER_LENGTH],
}

impl HeaderTemplate {
    /// A template from a log's default header.
    pub fn new(default_header: [u8; DATA_HEADER_LENGTH]) -> Self {
        Self {
            header: default_header,
        }
    }

    /// The session id.
    pub fn session_id(&self) -> i32 {
        let field = &self.header[SESSION_ID_OFFSET..SESSION_ID_OFFSET + 4];
        i32::from_le_bytes(field.try_into().unwrap_or([0; 4]))
    }

    /// The stream id.
    pub fn stream_id(&self) -> i32 {
        let field = &self.header[STREAM_ID_OFFSET..STREAM_ID_OFFSET + 4];
        i32::from_le_bytes(field.try_into().unwrap_or([0; 4]))
    }

    /// Writes the header of a frame of `frame_length` bytes at `term_offset` of `term`, with the
    /// length negated. The caller then writes the payload and calls [`publish`].
    #[inline]
    pub fn write(
        &self,
        term: &AtomicBuffer<'_>,
        term_offset: usize,
        frame_length: usize,
        flags: u8,
        term_id: i32,
        reserved_value: i64,
    ) {
        let length = i32::try_from(frame_length).expect("frames are shorter than a term");
        term.put_i32_ordered(term_offset + FRAME_LENGTH_OFFSET, -length);
        let mut header = self.header;
        header[FLAGS_OFFSET] = flags;
        header[TERM_OFFSET_OFFSET..TERM_OFFSET_OFFSET + 4].copy_from_slice(
            &i32::try_from(term_offset)
                .expect("terms are at most 1 GiB")
                .to_le_bytes(),
        );
        header[TERM_ID_OFFSET..TERM_ID_OFFSET + 4].copy_from_slice(&term_id.to_le_bytes());
        header[RESERVED_VALUE_OFFSET..].copy_from_slice(&reserved_value.to_le_bytes());
        term.put_bytes(term_offset + 4, &header[4..]);
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
    template.write(term, term_offset, length, 0, term_id, 0);
    term.put_bytes(term_offset + TYPE_OFFSET, &PAD_TYPE.to_le_bytes());
    publish(term, term_offset, length);
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

    /// Reads the header of a published frame at `term_offset`; `position` is the caller's.
    pub(crate) fn read(term: &AtomicBuffer<'_>, term_offset: usize, position: i64) -> Self {
        let mut bytes = [0u8; DATA_HEADER_LENGTH];
        term.get_bytes(term_offset, &mut bytes);
        Self::parse(&bytes, position)
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
