//! The message header that starts every tern message: the SBE header, byte for byte.
//!
//! ```text
//!  0                   1                   2                   3
//!  0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
//! +-------------------------------+-------------------------------+
//! |         block_length          |P P|      template number      |
//! +-------------------------------+-------------------------------+
//! |           schema_id           |  major (hi) | minor (lo)      |
//! +-------------------------------+-------------------------------+
//! ```
//!
//! All fields are `u16`, little-endian. `PP` are the unknown-message policy bits
//! ([`crate::policy`]); the version is `major << 8 | minor` ([`crate::version`]).

use crate::error::{DecodeError, EncodeError, need, room};
use crate::policy::UnknownPolicy;
use crate::wire::{read_field, write_field};

/// Bytes in a message header.
pub const MESSAGE_HEADER_LENGTH: usize = 8;
const BLOCK_LENGTH_OFFSET: usize = 0;
const TEMPLATE_ID_OFFSET: usize = 2;
const SCHEMA_ID_OFFSET: usize = 4;
const VERSION_OFFSET: usize = 6;
const _: () = assert!(VERSION_OFFSET + 2 == MESSAGE_HEADER_LENGTH);

/// The decoded header of a tern message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct MessageHeader {
    /// Bytes in the message's fixed block, as written (may exceed what an old reader knows).
    pub block_length: u16,
    /// The template id, policy bits included.
    pub template_id: u16,
    /// The schema the template belongs to.
    pub schema_id: u16,
    /// `major << 8 | minor` of the schema the writer used.
    pub version: u16,
}

impl MessageHeader {
    /// Reads a header from the start of `buf`.
    #[inline]
    pub fn decode(buf: &[u8]) -> Result<Self, DecodeError> {
        need("message header", buf, MESSAGE_HEADER_LENGTH)?;
        Ok(Self {
            block_length: read_field(buf, BLOCK_LENGTH_OFFSET),
            template_id: read_field(buf, TEMPLATE_ID_OFFSET),
            schema_id: read_field(buf, SCHEMA_ID_OFFSET),
            version: read_field(buf, VERSION_OFFSET),
        })
    }

    /// Writes the header at the start of `buf` and returns its length.
    #[inline]
    pub fn encode(&self, buf: &mut [u8]) -> Result<usize, EncodeError> {
        room("message header", buf, MESSAGE_HEADER_LENGTH)?;
        write_field(buf, BLOCK_LENGTH_OFFSET, self.block_length);
        write_field(buf, TEMPLATE_ID_OFFSET, self.template_id);
        write_field(buf, SCHEMA_ID_OFFSET, self.schema_id);
        write_field(buf, VERSION_OFFSET, self.version);
        Ok(MESSAGE_HEADER_LENGTH)
    }

    /// What a reader that does not know this template must do.
    pub const fn policy(&self) -> UnknownPolicy {
        UnknownPolicy::of_template(self.template_id)
    }

    /// The writer's major version.
    pub const fn major(&self) -> u8 {
        self.version.to_le_bytes()[1]
    }

    /// The writer's minor version.
    pub const fn minor(&self) -> u8 {
        self.version.to_le_bytes()[0]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_layout_is_sbe() {
        let header = MessageHeader {
            block_length: 0x0018,
            template_id: 0x8001,
            schema_id: 0x0065,
            version: 0x0102,
        };
        let mut buf = [0xAA; 9];
        assert_eq!(header.encode(&mut buf), Ok(8));
        assert_eq!(buf, [0x18, 0, 0x01, 0x80, 0x65, 0, 0x02, 0x01, 0xAA]);
        assert_eq!(MessageHeader::decode(&buf), Ok(header));
        assert_eq!(header.major(), 1);
        assert_eq!(header.minor(), 2);
        assert_eq!(header.policy(), UnknownPolicy::Terminate);
    }

    #[test]
    fn short_buffers_are_errors() {
        assert!(matches!(
            MessageHeader::decode(&[0; 7]),
            Err(DecodeError::Truncated {
                needed: 8,
                available: 7,
                ..
            })
        ));
        let header = MessageHeader::decode(&[0; 8]).unwrap();
        assert!(header.encode(&mut [0; 7]).is_err());
    }
}
