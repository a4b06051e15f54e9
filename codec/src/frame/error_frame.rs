//! ERR frames: a receiver tells a sender why it refused or closed a stream.
//!
//! ```text
//!  0                   1                   2                   3
//!  0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
//! +---------------------------------------------------------------+
//! |                 Frame Length (>= 40 + error length)           |   0
//! +---------------+-------+-+-----+-------------------------------+
//! |   Version     |       |G|     |          Type (=0x04)         |   4
//! +---------------+-------+-+-----+-------------------------------+
//! |                          Session ID                           |   8
//! +---------------------------------------------------------------+
//! |                          Stream ID                            |  12
//! +---------------------------------------------------------------+
//! |                          Receiver ID                          |  16
//! |                                                               |
//! +---------------------------------------------------------------+
//! |                           Group Tag                           |  24
//! |                                                               |
//! +---------------------------------------------------------------+
//! |                          Error Code                           |  32
//! +---------------------------------------------------------------+
//! |                         Error Length                          |  36
//! +---------------------------------------------------------------+
//! |                 Error Text (at most 1023 bytes) ...           |  40
//! ```
//!
//! The group tag is always present; `G` says whether it is meaningful. Aeron sends a frame
//! length of 40 + 1023 whatever the text's length; tern sends exactly 40 + the text, and reads
//! both.

use super::{FrameType, decode_fixed_header, encode_fixed_header};
use crate::error::{DecodeError, EncodeError};
use crate::wire::{read_field, write_field};

/// Bytes in an ERR frame before its text.
pub const ERROR_FRAME_LENGTH: usize = 40;
/// The longest error text.
pub const ERROR_TEXT_MAX: usize = 1023;

const SESSION_ID_OFFSET: usize = 8;
const STREAM_ID_OFFSET: usize = 12;
const RECEIVER_ID_OFFSET: usize = 16;
const GROUP_TAG_OFFSET: usize = 24;
const ERROR_CODE_OFFSET: usize = 32;
const ERROR_LENGTH_OFFSET: usize = 36;
const _: () = assert!(ERROR_LENGTH_OFFSET + 4 == ERROR_FRAME_LENGTH);

/// Flags of ERR frames.
pub mod error_flags {
    /// The group tag field is meaningful.
    pub const HAS_GROUP_TAG: u8 = 0x08;
}

/// An ERR frame and its text.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ErrorFrame<'a> {
    /// Bytes in the frame as sent.
    pub frame_length: i32,
    /// [`error_flags`].
    pub flags: u8,
    /// The publication's session.
    pub session_id: i32,
    /// The stream.
    pub stream_id: i32,
    /// The receiver reporting the error.
    pub receiver_id: i64,
    /// The receiver's group tag, meaningful only with [`error_flags::HAS_GROUP_TAG`].
    pub group_tag: i64,
    /// What went wrong, as a code.
    pub error_code: i32,
    /// What went wrong, in words (bytes as sent; Aeron does not promise UTF-8).
    pub text: &'a [u8],
}

impl<'a> ErrorFrame<'a> {
    /// Decodes an ERR frame whose text fits both its frame length and [`ERROR_TEXT_MAX`].
    pub fn decode(buf: &'a [u8]) -> Result<Self, DecodeError> {
        let header = decode_fixed_header(buf, "ERR frame", FrameType::Error, ERROR_FRAME_LENGTH)?;
        let error_length = read_field::<i32>(buf, ERROR_LENGTH_OFFSET);
        let text_length = usize::try_from(error_length).unwrap_or(usize::MAX);
        let frame_length = usize::try_from(header.frame_length).unwrap_or(0);
        if text_length > ERROR_TEXT_MAX || ERROR_FRAME_LENGTH + text_length > frame_length {
            return Err(DecodeError::InvalidValue {
                field: "error_length",
                value: i64::from(error_length),
                reason: "error text is 0 to 1023 bytes within the frame",
            });
        }
        Ok(Self {
            frame_length: header.frame_length,
            flags: header.flags,
            session_id: read_field(buf, SESSION_ID_OFFSET),
            stream_id: read_field(buf, STREAM_ID_OFFSET),
            receiver_id: read_field(buf, RECEIVER_ID_OFFSET),
            group_tag: read_field(buf, GROUP_TAG_OFFSET),
            error_code: read_field(buf, ERROR_CODE_OFFSET),
            text: buf
                .get(ERROR_FRAME_LENGTH..ERROR_FRAME_LENGTH + text_length)
                .unwrap_or(&[]),
        })
    }

    /// The group tag when the flags say it is meaningful.
    pub fn group_tag(&self) -> Option<i64> {
        (self.flags & error_flags::HAS_GROUP_TAG != 0).then_some(self.group_tag)
    }

    /// Writes the frame, 40 bytes plus the text. Returns the length.
    pub fn encode(&self, buf: &mut [u8]) -> Result<usize, EncodeError> {
        if self.text.len() > ERROR_TEXT_MAX {
            return Err(EncodeError::VarDataTooLong {
                field: "error text",
                length: self.text.len(),
                max: ERROR_TEXT_MAX,
            });
        }
        let length = ERROR_FRAME_LENGTH + self.text.len();
        encode_fixed_header(buf, "ERR frame", FrameType::Error, self.flags, length)?;
        write_field(buf, SESSION_ID_OFFSET, self.session_id);
        write_field(buf, STREAM_ID_OFFSET, self.stream_id);
        write_field(buf, RECEIVER_ID_OFFSET, self.receiver_id);
        write_field(buf, GROUP_TAG_OFFSET, self.group_tag);
        write_field(buf, ERROR_CODE_OFFSET, self.error_code);
        // text.len() <= 1023 was checked above.
        write_field(
            buf,
            ERROR_LENGTH_OFFSET,
            i32::try_from(self.text.len()).unwrap_or(0),
        );
        if let Some(text) = buf.get_mut(ERROR_FRAME_LENGTH..length) {
            text.copy_from_slice(self.text);
        }
        Ok(length)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame(text: &[u8]) -> ErrorFrame<'_> {
        ErrorFrame {
            frame_length: 0,
            flags: error_flags::HAS_GROUP_TAG,
            session_id: 1,
            stream_id: 2,
            receiver_id: 3,
            group_tag: 4,
            error_code: 5,
            text,
        }
    }

    #[test]
    fn round_trips_and_reads_aerons_fixed_length() {
        let mut buf = [0u8; ERROR_FRAME_LENGTH + ERROR_TEXT_MAX];
        let length = frame(b"no").encode(&mut buf).unwrap();
        assert_eq!(length, 42);
        let decoded = ErrorFrame::decode(&buf[..length]).unwrap();
        assert_eq!(decoded.text, b"no");
        assert_eq!(decoded.group_tag(), Some(4));
        // Aeron's length: the whole text buffer.
        buf[..4].copy_from_slice(&1063_i32.to_le_bytes());
        assert_eq!(ErrorFrame::decode(&buf).unwrap().text, b"no");
    }

    #[test]
    fn text_longer_than_the_frame_or_the_limit_is_refused() {
        let mut buf = [0u8; 64];
        frame(b"abc").encode(&mut buf).unwrap();
        buf[36..40].copy_from_slice(&20_i32.to_le_bytes());
        assert!(ErrorFrame::decode(&buf[..43]).is_err());
        buf[36..40].copy_from_slice(&(-1_i32).to_le_bytes());
        assert!(ErrorFrame::decode(&buf[..43]).is_err());
        assert!(frame(&[0; 1024]).encode(&mut [0; 2048]).is_err());
    }
}
