//! The Aeron UDP protocol, version 0, byte for byte.
//!
//! Every frame starts with the same 8-byte header, little-endian:
//!
//! ```text
//!  0                   1                   2                   3
//!  0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
//! +---------------------------------------------------------------+
//! |R|                       Frame Length                          |
//! +---------------+---------------+-------------------------------+
//! |   Version     |     Flags     |               Type            |
//! +---------------+---------------+-------------------------------+
//! ```
//!
//! Frames are aligned to [`FRAME_ALIGNMENT`] bytes in term buffers and datagrams. A frame whose
//! version is not [`FRAME_VERSION`] is rejected (Aeron counts and drops it; there is no version
//! negotiation on the wire). Frame types this build does not know decode as
//! [`Frame::Unknown`] so that a receiver can count and skip them: tern's own extensions use
//! types or flags Aeron ignores.
//!
//! Each frame type has its own module with its layout; [`Frame::decode`] dispatches on the type
//! and [`DatagramFrames`] walks the frames batched in one datagram.

mod data;
mod datagram;
mod error_frame;
mod fixed;
mod status;

pub use data::{
    DATA_FRAME_TYPE, DATA_HEADER_LENGTH, DataFrame, DataHeader, PAD_FRAME_TYPE, data_flags,
    data_offsets,
};
pub use datagram::DatagramFrames;
pub use error_frame::{ERROR_FRAME_LENGTH, ERROR_TEXT_MAX, ErrorFrame, error_flags};
pub use fixed::{
    NAK_LENGTH, Nak, RESPONSE_SETUP_LENGTH, RTTM_LENGTH, ResponseSetup, Rttm, SETUP_LENGTH, Setup,
    rttm_flags, setup_flags,
};
pub use status::{
    STATUS_MESSAGE_LENGTH, STATUS_MESSAGE_TAGGED_LENGTH, StatusMessage, status_flags,
};

use crate::error::{DecodeError, EncodeError, need, room};
use crate::wire::{read_field, write_field};

/// Bytes in the common frame header.
pub const FRAME_HEADER_LENGTH: usize = 8;
/// The only protocol version on the wire.
pub const FRAME_VERSION: u8 = 0;
/// Frames start at multiples of this many bytes.
pub const FRAME_ALIGNMENT: usize = 32;
/// [`FRAME_ALIGNMENT`] as the `u32` that lengths on the wire use.
pub const FRAME_ALIGNMENT_U32: u32 = 32;
const _: () = assert!(FRAME_ALIGNMENT_U32 as usize == FRAME_ALIGNMENT);
const DATA_HEADER_LENGTH_U32: u32 = 32;
const _: () = assert!(DATA_HEADER_LENGTH_U32 as usize == DATA_HEADER_LENGTH);
/// The default MTU of a channel.
pub const MTU_DEFAULT: u32 = 1408;
/// The largest MTU a channel may use (the largest UDP payload, rounded down to the alignment).
pub const MTU_MAX: u32 = 65504;
/// The longest message a stream may carry, whatever its term length.
pub const MESSAGE_LENGTH_MAX: u32 = 16 * 1024 * 1024;

const FRAME_LENGTH_OFFSET: usize = 0;
const VERSION_OFFSET: usize = 4;
const FLAGS_OFFSET: usize = 5;
const TYPE_OFFSET: usize = 6;
const _: () = assert!(TYPE_OFFSET + 2 == FRAME_HEADER_LENGTH);

crate::enumeration! {
    /// The type field of a frame header.
    pub enum FrameType: u16 {
        /// Padding to the end of a term.
        Pad = 0x00,
        /// Message data.
        Data = 0x01,
        /// A negative acknowledgement asking for a retransmit.
        Nak = 0x02,
        /// A status message: the receiver's position and window.
        StatusMessage = 0x03,
        /// An error from a receiver.
        Error = 0x04,
        /// Stream setup from a sender.
        Setup = 0x05,
        /// Round-trip time measurement.
        Rttm = 0x06,
        /// Name-resolution gossip.
        Resolution = 0x07,
        /// Setup of a response channel.
        ResponseSetup = 0x0B,
        /// Extension frames.
        Extension = 0xFFFF,
    }
}

/// The common header of every frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FrameHeader {
    /// Bytes in the frame, header included (0 for a heartbeat).
    pub frame_length: i32,
    /// The protocol version, [`FRAME_VERSION`] on every valid frame.
    pub version: u8,
    /// Type-specific flags.
    pub flags: u8,
    /// What the frame is.
    pub frame_type: FrameType,
}

impl FrameHeader {
    /// Reads the common header, accepting only [`FRAME_VERSION`].
    #[inline]
    pub fn decode(buf: &[u8]) -> Result<Self, DecodeError> {
        need("frame header", buf, FRAME_HEADER_LENGTH)?;
        let version = read_field::<u8>(buf, VERSION_OFFSET);
        if version != FRAME_VERSION {
            return Err(DecodeError::FrameVersion {
                version,
                supported: FRAME_VERSION,
            });
        }
        Ok(Self {
            frame_length: read_field(buf, FRAME_LENGTH_OFFSET),
            version,
            flags: read_field(buf, FLAGS_OFFSET),
            frame_type: read_field(buf, TYPE_OFFSET),
        })
    }

    /// Writes the common header.
    #[inline]
    pub fn encode(&self, buf: &mut [u8]) -> Result<usize, EncodeError> {
        room("frame header", buf, FRAME_HEADER_LENGTH)?;
        write_field(buf, FRAME_LENGTH_OFFSET, self.frame_length);
        write_field(buf, VERSION_OFFSET, self.version);
        write_field(buf, FLAGS_OFFSET, self.flags);
        write_field(buf, TYPE_OFFSET, self.frame_type);
        Ok(FRAME_HEADER_LENGTH)
    }
}

/// Decodes the common header of a fixed-size frame of `frame_type` and checks that the buffer
/// holds its `length` bytes and that its frame length covers them and fits the buffer.
#[inline]
fn decode_fixed_header(
    buf: &[u8],
    what: &'static str,
    frame_type: FrameType,
    length: usize,
) -> Result<FrameHeader, DecodeError> {
    let header = FrameHeader::decode(buf)?;
    check_type(&header, frame_type)?;
    need(what, buf, length)?;
    let frame_length = usize::try_from(header.frame_length).unwrap_or(0);
    if frame_length < length || frame_length > buf.len() {
        return Err(DecodeError::InvalidValue {
            field: "frame_length",
            value: i64::from(header.frame_length),
            reason: "a frame's length must cover its fixed fields and fit the buffer",
        });
    }
    Ok(header)
}

#[inline]
fn check_type(header: &FrameHeader, expected: FrameType) -> Result<(), DecodeError> {
    if header.frame_type != expected {
        return Err(DecodeError::FrameType {
            expected: expected.to_wire(),
            actual: header.frame_type.to_wire(),
        });
    }
    Ok(())
}

/// Writes a frame header of `frame_type` with `frame_length` after checking room for `length`.
#[inline]
fn encode_fixed_header(
    buf: &mut [u8],
    what: &'static str,
    frame_type: FrameType,
    flags: u8,
    frame_length: usize,
) -> Result<(), EncodeError> {
    room(what, buf, frame_length)?;
    let header = FrameHeader {
        frame_length: i32::try_from(frame_length).map_err(|_| EncodeError::InvalidValue {
            field: "frame_length",
            value: i64::try_from(frame_length).unwrap_or(i64::MAX),
            reason: "a frame is shorter than 2 GiB",
        })?,
        version: FRAME_VERSION,
        flags,
        frame_type,
    };
    header.encode(buf)?;
    Ok(())
}

/// One decoded frame of any type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Frame<'a> {
    /// Message data, or a heartbeat (a DATA frame of length 0).
    Data(DataFrame<'a>),
    /// Padding to the end of a term; on the wire only its header travels.
    Pad(DataHeader),
    /// A receiver's status message.
    StatusMessage(StatusMessage),
    /// A receiver's request for retransmission.
    Nak(Nak),
    /// A sender's stream setup.
    Setup(Setup),
    /// A round-trip time measurement.
    Rttm(Rttm),
    /// An error from a receiver.
    Error(ErrorFrame<'a>),
    /// Setup of a response channel.
    ResponseSetup(ResponseSetup),
    /// A valid version-0 frame of a type this build does not read: count it and skip it.
    Unknown {
        /// Its header.
        header: FrameHeader,
        /// Its bytes, header included, as far as the buffer holds them.
        bytes: &'a [u8],
    },
}

impl<'a> Frame<'a> {
    /// Decodes the frame at the start of `buf`.
    pub fn decode(buf: &'a [u8]) -> Result<Self, DecodeError> {
        let header = FrameHeader::decode(buf)?;
        Ok(match header.frame_type {
            FrameType::Data => Frame::Data(DataFrame::decode(buf)?),
            FrameType::Pad => Frame::Pad(DataHeader::decode_pad(buf)?),
            FrameType::StatusMessage => Frame::StatusMessage(StatusMessage::decode(buf)?),
            FrameType::Nak => Frame::Nak(Nak::decode(buf)?),
            FrameType::Setup => Frame::Setup(Setup::decode(buf)?),
            FrameType::Rttm => Frame::Rttm(Rttm::decode(buf)?),
            FrameType::Error => Frame::Error(ErrorFrame::decode(buf)?),
            FrameType::ResponseSetup => Frame::ResponseSetup(ResponseSetup::decode(buf)?),
            FrameType::Resolution | FrameType::Extension | FrameType::Unknown(_) => {
                let length = usize::try_from(header.frame_length).unwrap_or(0);
                // FrameHeader::decode guaranteed at least a header's bytes.
                let end = length.max(FRAME_HEADER_LENGTH).min(buf.len());
                Frame::Unknown {
                    header,
                    bytes: buf.get(..end).unwrap_or(buf),
                }
            }
        })
    }

    /// Writes the frame at the start of `buf` and returns its length (not aligned). A heartbeat
    /// or PAD frame writes its 32-byte header; an unknown frame writes its bytes as they came.
    pub fn encode(&self, buf: &mut [u8]) -> Result<usize, EncodeError> {
        match self {
            Frame::Data(frame) if frame.header.is_heartbeat() => frame.header.encode(buf),
            Frame::Data(frame) => frame.encode(buf),
            Frame::Pad(header) => header.encode(buf),
            Frame::StatusMessage(frame) => frame.encode(buf),
            Frame::Nak(frame) => frame.encode(buf),
            Frame::Setup(frame) => frame.encode(buf),
            Frame::Rttm(frame) => frame.encode(buf),
            Frame::Error(frame) => frame.encode(buf),
            Frame::ResponseSetup(frame) => frame.encode(buf),
            Frame::Unknown { bytes, .. } => {
                room("frame", buf, bytes.len())?;
                if let Some(room) = buf.get_mut(..bytes.len()) {
                    room.copy_from_slice(bytes);
                }
                Ok(bytes.len())
            }
        }
    }

    /// Bytes this frame occupies in a datagram, aligned: how far a reader steps to the next
    /// frame. A heartbeat or a PAD frame travels as its 32-byte header alone.
    pub fn datagram_length(&self) -> usize {
        let frame_length = match self {
            Frame::Data(frame) => frame.header.frame_length,
            Frame::Pad(_) => 0,
            Frame::StatusMessage(frame) => frame.frame_length,
            Frame::Nak(frame) => frame.frame_length,
            Frame::Setup(frame) => frame.frame_length,
            Frame::Rttm(frame) => frame.frame_length,
            Frame::Error(frame) => frame.frame_length,
            Frame::ResponseSetup(frame) => frame.frame_length,
            Frame::Unknown { header, .. } => header.frame_length,
        };
        align(
            usize::try_from(frame_length)
                .unwrap_or(0)
                .max(DATA_HEADER_LENGTH),
        )
    }
}

/// Rounds `length` up to the frame alignment.
#[inline]
pub const fn align(length: usize) -> usize {
    (length + FRAME_ALIGNMENT - 1) & !(FRAME_ALIGNMENT - 1)
}

/// Checks an MTU: greater than a DATA header, a multiple of [`FRAME_ALIGNMENT`], at most
/// [`MTU_MAX`].
pub const fn validate_mtu(mtu: u32) -> Result<u32, DecodeError> {
    let reason = if mtu <= DATA_HEADER_LENGTH_U32 {
        "an MTU must exceed the 32-byte DATA header"
    } else if !mtu.is_multiple_of(FRAME_ALIGNMENT_U32) {
        "an MTU must be a multiple of 32"
    } else if mtu > MTU_MAX {
        "an MTU must be at most 65504"
    } else {
        return Ok(mtu);
    };
    Err(DecodeError::InvalidValue {
        field: "mtu",
        value: mtu as i64,
        reason,
    })
}

/// The most payload one DATA frame carries under `mtu`.
pub const fn max_payload_length(mtu: u32) -> u32 {
    mtu.saturating_sub(DATA_HEADER_LENGTH_U32)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mtu_rules() {
        assert_eq!(validate_mtu(MTU_DEFAULT), Ok(1408));
        assert_eq!(validate_mtu(64), Ok(64));
        assert!(validate_mtu(32).is_err());
        assert!(validate_mtu(1400).is_err());
        assert!(validate_mtu(65536).is_err());
        assert_eq!(max_payload_length(1408), 1376);
    }

    #[test]
    fn alignment() {
        assert_eq!(align(0), 0);
        assert_eq!(align(1), 32);
        assert_eq!(align(32), 32);
        assert_eq!(align(33), 64);
    }

    #[test]
    fn header_rejects_other_versions() {
        let mut buf = [0u8; 8];
        buf[4] = 1;
        assert_eq!(
            FrameHeader::decode(&buf),
            Err(DecodeError::FrameVersion {
                version: 1,
                supported: 0
            })
        );
    }
}
