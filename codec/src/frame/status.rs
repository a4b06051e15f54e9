//! Status messages: a receiver's consumption position and window, which drive flow control.
//!
//! ```text
//!  0                   1                   2                   3
//!  0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
//! +---------------------------------------------------------------+
//! |                 Frame Length (= 36 or 44)                     |   0
//! +---------------+-+-+-----------+-------------------------------+
//! |   Version     |S|E|           |          Type (=0x03)         |   4
//! +---------------+-+-+-----------+-------------------------------+
//! |                          Session ID                           |   8
//! +---------------------------------------------------------------+
//! |                          Stream ID                            |  12
//! +---------------------------------------------------------------+
//! |                      Consumption Term ID                      |  16
//! +---------------------------------------------------------------+
//! |                    Consumption Term Offset                    |  20
//! +---------------------------------------------------------------+
//! |                        Receiver Window                        |  24
//! +---------------------------------------------------------------+
//! |                          Receiver ID                          |  28
//! |                                                               |
//! +---------------------------------------------------------------+
//! |                  Group Tag (optional, 8 bytes)                |  36
//! |                                                               |
//! +---------------------------------------------------------------+
//! ```
//!
//! `S` asks the sender for a SETUP; `E` says the receiver is leaving (end of stream). The group
//! tag is present when the frame length is at least 44.

use super::{FrameType, decode_fixed_header, encode_fixed_header};
use crate::error::{DecodeError, EncodeError};
use crate::wire::{read_field, write_field};

/// Bytes in a status message without a group tag.
pub const STATUS_MESSAGE_LENGTH: usize = 36;
/// Bytes in a status message with a group tag.
pub const STATUS_MESSAGE_TAGGED_LENGTH: usize = 44;

const SESSION_ID_OFFSET: usize = 8;
const STREAM_ID_OFFSET: usize = 12;
const CONSUMPTION_TERM_ID_OFFSET: usize = 16;
const CONSUMPTION_TERM_OFFSET_OFFSET: usize = 20;
const RECEIVER_WINDOW_OFFSET: usize = 24;
const RECEIVER_ID_OFFSET: usize = 28;
const GROUP_TAG_OFFSET: usize = 36;
const _: () = assert!(RECEIVER_ID_OFFSET + 8 == STATUS_MESSAGE_LENGTH);
const _: () = assert!(GROUP_TAG_OFFSET + 8 == STATUS_MESSAGE_TAGGED_LENGTH);

/// Flags of status messages.
pub mod status_flags {
    /// The receiver has no image yet: send a SETUP.
    pub const SEND_SETUP: u8 = 0x80;
    /// The receiver is going away.
    pub const END_OF_STREAM: u8 = 0x40;
}

/// A status message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct StatusMessage {
    /// Bytes in the frame as sent.
    pub frame_length: i32,
    /// [`status_flags`].
    pub flags: u8,
    /// The publication's session.
    pub session_id: i32,
    /// The stream.
    pub stream_id: i32,
    /// The term the receiver has consumed up to.
    pub consumption_term_id: i32,
    /// The offset in that term.
    pub consumption_term_offset: i32,
    /// Bytes the receiver can take beyond its consumption position.
    pub receiver_window: i32,
    /// Identifies the receiver for multicast flow control.
    pub receiver_id: i64,
    /// The receiver's group tag, for tagged flow control.
    pub group_tag: Option<i64>,
}

impl StatusMessage {
    /// Decodes a status message, with its group tag when the frame length includes one.
    pub fn decode(buf: &[u8]) -> Result<Self, DecodeError> {
        let header = decode_fixed_header(
            buf,
            "status message",
            FrameType::StatusMessage,
            STATUS_MESSAGE_LENGTH,
        )?;
        let tagged =
            usize::try_from(header.frame_length).unwrap_or(0) >= STATUS_MESSAGE_TAGGED_LENGTH;
        Ok(Self {
            frame_length: header.frame_length,
            flags: header.flags,
            session_id: read_field(buf, SESSION_ID_OFFSET),
            stream_id: read_field(buf, STREAM_ID_OFFSET),
            consumption_term_id: read_field(buf, CONSUMPTION_TERM_ID_OFFSET),
            consumption_term_offset: read_field(buf, CONSUMPTION_TERM_OFFSET_OFFSET),
            receiver_window: read_field(buf, RECEIVER_WINDOW_OFFSET),
            receiver_id: read_field(buf, RECEIVER_ID_OFFSET),
            group_tag: tagged.then(|| read_field(buf, GROUP_TAG_OFFSET)),
        })
    }

    /// Writes the status message, 44 bytes with a group tag and 36 without. Returns the length.
    pub fn encode(&self, buf: &mut [u8]) -> Result<usize, EncodeError> {
        let length = match self.group_tag {
            Some(_) => STATUS_MESSAGE_TAGGED_LENGTH,
            None => STATUS_MESSAGE_LENGTH,
        };
        encode_fixed_header(
            buf,
            "status message",
            FrameType::StatusMessage,
            self.flags,
            length,
        )?;
        write_field(buf, SESSION_ID_OFFSET, self.session_id);
        write_field(buf, STREAM_ID_OFFSET, self.stream_id);
        write_field(buf, CONSUMPTION_TERM_ID_OFFSET, self.consumption_term_id);
        write_field(
            buf,
            CONSUMPTION_TERM_OFFSET_OFFSET,
            self.consumption_term_offset,
        );
        write_field(buf, RECEIVER_WINDOW_OFFSET, self.receiver_window);
        write_field(buf, RECEIVER_ID_OFFSET, self.receiver_id);
        if let Some(tag) = self.group_tag {
            write_field(buf, GROUP_TAG_OFFSET, tag);
        }
        Ok(length)
    }
}
