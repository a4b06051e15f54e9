//! DATA and PAD frames: the header every message fragment carries, in the log and on the wire.
//!
//! ```text
//!  0                   1                   2                   3
//!  0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
//! +---------------------------------------------------------------+
//! |R|                       Frame Length                          |   0
//! +---------------+-+-+-+---------+-------------------------------+
//! |   Version     |B|E|S|         |          Type (DATA/PAD)      |   4
//! +---------------+-+-+-+---------+-------------------------------+
//! |R|                        Term Offset                          |   8
//! +---------------------------------------------------------------+
//! |                         Session ID                            |  12
//! +---------------------------------------------------------------+
//! |                         Stream ID                             |  16
//! +---------------------------------------------------------------+
//! |                          Term ID                              |  20
//! +---------------------------------------------------------------+
//! |                       Reserved Value                          |  24
//! |                                                               |
//! +---------------------------------------------------------------+
//! |                         Payload ...                           |  32
//! ```
//!
//! `B` begins a message, `E` ends it (a message in one frame has both), `S` marks the end of the
//! stream. A DATA frame of length 0 with `B|E` is a heartbeat. A PAD frame fills the rest of a
//! term; only its header travels on the wire and the receiver regenerates the padding.

use super::{FrameHeader, FrameType, check_type, encode_fixed_header};
use crate::error::{DecodeError, EncodeError, need};
use crate::wire::{read_field, write_field};

/// Bytes in a DATA or PAD header.
pub const DATA_HEADER_LENGTH: usize = 32;

/// Where each field of a DATA or PAD header lies: the one definition the engine's term code
/// (appenders, readers, scanner, unblocker) and this codec share.
pub mod data_offsets {
    /// Frame length, i32 (a reader loads it first, with acquire).
    pub const FRAME_LENGTH: usize = 0;
    /// Version, u8.
    pub const VERSION: usize = 4;
    /// Flags, u8 ([`super::data_flags`]).
    pub const FLAGS: usize = 5;
    /// Frame type, u16.
    pub const TYPE: usize = 6;
    /// Term offset, i32.
    pub const TERM_OFFSET: usize = 8;
    /// Session id, i32.
    pub const SESSION_ID: usize = 12;
    /// Stream id, i32.
    pub const STREAM_ID: usize = 16;
    /// Term id, i32.
    pub const TERM_ID: usize = 20;
    /// Reserved value, i64.
    pub const RESERVED_VALUE: usize = 24;
    const _: () = assert!(FLAGS == VERSION + 1 && TYPE == FLAGS + 1 && TERM_OFFSET == TYPE + 2);
    const _: () = assert!(RESERVED_VALUE + 8 == super::DATA_HEADER_LENGTH);
}

use data_offsets::TERM_OFFSET as TERM_OFFSET_OFFSET;
use data_offsets::{RESERVED_VALUE as RESERVED_VALUE_OFFSET, SESSION_ID as SESSION_ID_OFFSET};
use data_offsets::{STREAM_ID as STREAM_ID_OFFSET, TERM_ID as TERM_ID_OFFSET};

/// The frame type of a DATA frame, as the u16 at [`data_offsets::TYPE`].
pub const DATA_FRAME_TYPE: u16 = 0x01;
/// The frame type of a PAD frame.
pub const PAD_FRAME_TYPE: u16 = 0x00;

/// Flags of DATA frames.
pub mod data_flags {
    /// The frame begins a message.
    pub const BEGIN: u8 = 0x80;
    /// The frame ends a message.
    pub const END: u8 = 0x40;
    /// A message in one frame.
    pub const UNFRAGMENTED: u8 = BEGIN | END;
    /// The stream ends here.
    pub const END_OF_STREAM: u8 = 0x20;
}

/// The 32-byte header of a DATA or PAD frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct DataHeader {
    /// Bytes in the frame, header included; 0 for a heartbeat.
    pub frame_length: i32,
    /// [`data_flags`].
    pub flags: u8,
    /// [`FrameType::Data`] or [`FrameType::Pad`].
    pub frame_type: FrameType,
    /// Where the frame starts in its term.
    pub term_offset: i32,
    /// The publication's session.
    pub session_id: i32,
    /// The stream.
    pub stream_id: i32,
    /// The term the frame belongs to.
    pub term_id: i32,
    /// A value the publisher may set per frame (Aeron uses it for checksums or timestamps).
    pub reserved_value: i64,
}

impl DataHeader {
    #[inline]
    fn read(buf: &[u8], header: FrameHeader) -> Self {
        Self {
            frame_length: header.frame_length,
            flags: header.flags,
            frame_type: header.frame_type,
            term_offset: read_field(buf, TERM_OFFSET_OFFSET),
            session_id: read_field(buf, SESSION_ID_OFFSET),
            stream_id: read_field(buf, STREAM_ID_OFFSET),
            term_id: read_field(buf, TERM_ID_OFFSET),
            reserved_value: read_field(buf, RESERVED_VALUE_OFFSET),
        }
    }

    /// Decodes a PAD header. Its frame length covers the padding, which a datagram does not carry.
    #[inline]
    pub fn decode_pad(buf: &[u8]) -> Result<Self, DecodeError> {
        let header = FrameHeader::decode(buf)?;
        check_type(&header, FrameType::Pad)?;
        need("PAD frame", buf, DATA_HEADER_LENGTH)?;
        let length = usize::try_from(header.frame_length).unwrap_or(0);
        if length < DATA_HEADER_LENGTH || length % super::FRAME_ALIGNMENT != 0 {
            return Err(DecodeError::InvalidValue {
                field: "frame_length",
                value: i64::from(header.frame_length),
                reason: "padding is a positive multiple of 32 bytes",
            });
        }
        Ok(Self::read(buf, header))
    }

    /// Whether this is a heartbeat: a DATA frame of length 0.
    #[inline]
    pub fn is_heartbeat(&self) -> bool {
        self.frame_type == FrameType::Data && self.frame_length == 0
    }

    /// Writes the 32-byte header; the caller writes any payload after it.
    #[inline]
    pub fn encode(&self, buf: &mut [u8]) -> Result<usize, EncodeError> {
        encode_fixed_header(
            buf,
            "DATA header",
            self.frame_type,
            self.flags,
            DATA_HEADER_LENGTH,
        )?;
        write_field(buf, 0, self.frame_length);
        write_field(buf, TERM_OFFSET_OFFSET, self.term_offset);
        write_field(buf, SESSION_ID_OFFSET, self.session_id);
        write_field(buf, STREAM_ID_OFFSET, self.stream_id);
        write_field(buf, TERM_ID_OFFSET, self.term_id);
        write_field(buf, RESERVED_VALUE_OFFSET, self.reserved_value);
        Ok(DATA_HEADER_LENGTH)
    }
}

/// A DATA frame: its header and the payload it carries (empty for a heartbeat).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DataFrame<'a> {
    /// The header.
    pub header: DataHeader,
    /// The fragment's bytes.
    pub payload: &'a [u8],
}

impl<'a> DataFrame<'a> {
    /// Decodes a DATA frame: length 0 (heartbeat) or at least a header, and within `buf`.
    #[inline]
    pub fn decode(buf: &'a [u8]) -> Result<Self, DecodeError> {
        let frame_header = FrameHeader::decode(buf)?;
        check_type(&frame_header, FrameType::Data)?;
        need("DATA frame", buf, DATA_HEADER_LENGTH)?;
        let header = DataHeader::read(buf, frame_header);
        let length = usize::try_from(header.frame_length).unwrap_or(usize::MAX);
        let payload = if length == 0 {
            &[][..]
        } else if length < DATA_HEADER_LENGTH {
            return Err(DecodeError::InvalidValue {
                field: "frame_length",
                value: i64::from(header.frame_length),
                reason: "a DATA frame is a heartbeat (0) or at least its 32-byte header",
            });
        } else {
            buf.get(DATA_HEADER_LENGTH..length)
                .ok_or(DecodeError::Truncated {
                    what: "DATA frame",
                    needed: length,
                    available: buf.len(),
                })?
        };
        Ok(Self { header, payload })
    }

    /// Writes the header with a frame length covering `payload`, then the payload. Returns the
    /// frame length (not aligned).
    #[inline]
    pub fn encode(&self, buf: &mut [u8]) -> Result<usize, EncodeError> {
        let length = DATA_HEADER_LENGTH + self.payload.len();
        crate::error::room("DATA frame", buf, length)?;
        let mut header = self.header;
        header.frame_type = FrameType::Data;
        header.frame_length = i32::try_from(length).map_err(|_| EncodeError::InvalidValue {
            field: "frame_length",
            value: i64::MAX,
            reason: "a frame is shorter than 2 GiB",
        })?;
        header.encode(buf)?;
        if let Some(body) = buf.get_mut(DATA_HEADER_LENGTH..length) {
            body.copy_from_slice(self.payload);
        }
        Ok(length)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header(frame_length: i32) -> DataHeader {
        DataHeader {
            frame_length,
            flags: data_flags::UNFRAGMENTED,
            frame_type: FrameType::Data,
            term_offset: 64,
            session_id: 7,
            stream_id: 1001,
            term_id: -5,
            reserved_value: 0,
        }
    }

    #[test]
    fn frame_round_trips_with_payload() {
        let mut buf = [0u8; 64];
        let frame = DataFrame {
            header: header(0),
            payload: b"hello",
        };
        assert_eq!(frame.encode(&mut buf), Ok(37));
        let decoded = DataFrame::decode(&buf).unwrap();
        assert_eq!(decoded.payload, b"hello");
        assert_eq!(decoded.header.frame_length, 37);
        assert!(!decoded.header.is_heartbeat());
    }

    #[test]
    fn heartbeat_has_no_payload() {
        let mut buf = [0u8; 32];
        header(0).encode(&mut buf).unwrap();
        let decoded = DataFrame::decode(&buf).unwrap();
        assert!(decoded.header.is_heartbeat());
        assert!(decoded.payload.is_empty());
    }

    #[test]
    fn lengths_that_lie_are_errors() {
        let mut buf = [0u8; 40];
        header(41).encode(&mut buf).unwrap();
        assert!(DataFrame::decode(&buf).is_err());
        header(31).encode(&mut buf).unwrap();
        assert!(DataFrame::decode(&buf).is_err());
        header(-32).encode(&mut buf).unwrap();
        assert!(DataFrame::decode(&buf).is_err());
        assert!(DataFrame::decode(&buf[..31]).is_err());
    }

    #[test]
    fn pad_length_need_not_fit_the_datagram() {
        let mut buf = [0u8; 32];
        let mut pad = header(4096);
        pad.frame_type = FrameType::Pad;
        pad.flags = 0;
        pad.encode(&mut buf).unwrap();
        assert_eq!(DataHeader::decode_pad(&buf), Ok(pad));
        assert!(DataFrame::decode(&buf).is_err());
        let mut odd = pad;
        odd.frame_length = 4010;
        odd.encode(&mut buf).unwrap();
        assert!(DataHeader::decode_pad(&buf).is_err());
    }
}
