//! The fixed-size control frames: NAK, SETUP, RTTM and RSP_SETUP.
//!
//! Each is the common header and a run of little-endian integers at fixed offsets. A decoder
//! accepts a frame length of at least the fixed size (a later protocol may append fields, which
//! are skipped) that fits the buffer; an encoder writes exactly the fixed size.

use super::{FrameType, decode_fixed_header, encode_fixed_header};
use crate::error::{DecodeError, EncodeError};
use crate::wire::{read_field, write_field};

/// Declares a fixed-size frame: its struct, length, offsets (asserted to tile after the common
/// header), decoder and encoder.
macro_rules! fixed_frame {
    (
        $(#[$meta:meta])*
        $name:ident, $length_const:ident = $length:literal, $frame_type:expr, $what:literal {
            $( $(#[$fmeta:meta])* $field:ident @ $offset:literal : $ty:ty ),* $(,)?
        }
    ) => {
        /// Bytes in this frame.
        pub const $length_const: usize = $length;

        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        pub struct $name {
            /// Bytes in the frame as sent; [`Self::LENGTH`] or more.
            pub frame_length: i32,
            /// Type-specific flags.
            pub flags: u8,
            $( $(#[$fmeta])* pub $field: $ty, )*
        }

        const _: () = {
            let mut next = super::FRAME_HEADER_LENGTH;
            $(
                assert!($offset == next, concat!(stringify!($field), " does not tile"));
                next += core::mem::size_of::<$ty>();
            )*
            assert!(next == $length);
        };

        impl $name {
            /// Bytes in this frame.
            pub const LENGTH: usize = $length;

            /// Decodes the frame at the start of `buf`.
            pub fn decode(buf: &[u8]) -> Result<Self, DecodeError> {
                let header = decode_fixed_header(buf, $what, $frame_type, $length)?;
                Ok(Self {
                    frame_length: header.frame_length,
                    flags: header.flags,
                    $( $field: read_field(buf, $offset), )*
                })
            }

            /// Writes the frame with its fixed length and returns that length.
            pub fn encode(&self, buf: &mut [u8]) -> Result<usize, EncodeError> {
                encode_fixed_header(buf, $what, $frame_type, self.flags, $length)?;
                $( write_field(buf, $offset, self.$field); )*
                Ok($length)
            }
        }
    };
}

fixed_frame! {
    /// A NAK: the receiver asks the sender to resend a range of a term.
    ///
    /// ```text
    ///  0                   1                   2                   3
    ///  0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
    /// +---------------------------------------------------------------+
    /// |                 Frame Length (= 28)                           |   0
    /// +---------------+---------------+-------------------------------+
    /// |   Version     |     Flags     |          Type (=0x02)         |   4
    /// +---------------+---------------+-------------------------------+
    /// |                          Session ID                           |   8
    /// +---------------------------------------------------------------+
    /// |                          Stream ID                            |  12
    /// +---------------------------------------------------------------+
    /// |                           Term ID                             |  16
    /// +---------------------------------------------------------------+
    /// |                         Term Offset                           |  20
    /// +---------------------------------------------------------------+
    /// |                           Length                              |  24
    /// +---------------------------------------------------------------+
    /// ```
    Nak, NAK_LENGTH = 28, FrameType::Nak, "NAK" {
        /// The publication's session.
        session_id @ 8: i32,
        /// The stream.
        stream_id @ 12: i32,
        /// The term with the gap.
        term_id @ 16: i32,
        /// Where the gap starts in the term.
        term_offset @ 20: i32,
        /// Bytes missing.
        length @ 24: i32,
    }
}

fixed_frame! {
    /// A SETUP: the sender announces a stream's geometry so a receiver can build its image.
    ///
    /// ```text
    ///  0                   1                   2                   3
    ///  0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
    /// +---------------------------------------------------------------+
    /// |                 Frame Length (= 40)                           |   0
    /// +---------------+-+-+-----------+-------------------------------+
    /// |   Version     |R|G|           |          Type (=0x05)         |   4
    /// +---------------+-+-+-----------+-------------------------------+
    /// |                         Term Offset                           |   8
    /// +---------------------------------------------------------------+
    /// |                          Session ID                           |  12
    /// +---------------------------------------------------------------+
    /// |                          Stream ID                            |  16
    /// +---------------------------------------------------------------+
    /// |                       Initial Term ID                         |  20
    /// +---------------------------------------------------------------+
    /// |                        Active Term ID                         |  24
    /// +---------------------------------------------------------------+
    /// |                         Term Length                           |  28
    /// +---------------------------------------------------------------+
    /// |                             MTU                               |  32
    /// +---------------------------------------------------------------+
    /// |                             TTL                               |  36
    /// +---------------------------------------------------------------+
    /// ```
    ///
    /// `R` asks for a response setup, `G` marks a group (multicast-style) stream; see
    /// [`setup_flags`].
    Setup, SETUP_LENGTH = 40, FrameType::Setup, "SETUP" {
        /// The sender's offset in the active term.
        term_offset @ 8: i32,
        /// The publication's session.
        session_id @ 12: i32,
        /// The stream.
        stream_id @ 16: i32,
        /// The term id at position 0.
        initial_term_id @ 20: i32,
        /// The term the sender is in.
        active_term_id @ 24: i32,
        /// Bytes in each term.
        term_length @ 28: i32,
        /// The sender's MTU.
        mtu @ 32: i32,
        /// The multicast TTL.
        ttl @ 36: i32,
    }
}

fixed_frame! {
    /// An RTTM: a round-trip time measurement, echoed by the other side with `REPLY` set.
    ///
    /// ```text
    ///  0                   1                   2                   3
    ///  0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
    /// +---------------------------------------------------------------+
    /// |                 Frame Length (= 40)                           |   0
    /// +---------------+-+-------------+-------------------------------+
    /// |   Version     |R|             |          Type (=0x06)         |   4
    /// +---------------+-+-------------+-------------------------------+
    /// |                          Session ID                           |   8
    /// +---------------------------------------------------------------+
    /// |                          Stream ID                            |  12
    /// +---------------------------------------------------------------+
    /// |                      Echo Timestamp (ns)                      |  16
    /// |                                                               |
    /// +---------------------------------------------------------------+
    /// |                     Reception Delta (ns)                      |  24
    /// |                                                               |
    /// +---------------------------------------------------------------+
    /// |                          Receiver ID                          |  32
    /// |                                                               |
    /// +---------------------------------------------------------------+
    /// ```
    Rttm, RTTM_LENGTH = 40, FrameType::Rttm, "RTTM" {
        /// The publication's session.
        session_id @ 8: i32,
        /// The stream.
        stream_id @ 12: i32,
        /// The originator's timestamp, echoed back.
        echo_timestamp_ns @ 16: i64,
        /// Time the replier held the measurement before answering.
        reception_delta_ns @ 24: i64,
        /// The receiver taking part.
        receiver_id @ 32: i64,
    }
}

fixed_frame! {
    /// A RSP_SETUP: tells a response publication which session to answer on.
    ///
    /// ```text
    ///  0                   1                   2                   3
    ///  0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
    /// +---------------------------------------------------------------+
    /// |                 Frame Length (= 20)                           |   0
    /// +---------------+---------------+-------------------------------+
    /// |   Version     |     Flags     |          Type (=0x0B)         |   4
    /// +---------------+---------------+-------------------------------+
    /// |                          Session ID                           |   8
    /// +---------------------------------------------------------------+
    /// |                          Stream ID                            |  12
    /// +---------------------------------------------------------------+
    /// |                     Response Session ID                       |  16
    /// +---------------------------------------------------------------+
    /// ```
    ResponseSetup, RESPONSE_SETUP_LENGTH = 20, FrameType::ResponseSetup, "RSP_SETUP" {
        /// The publication's session.
        session_id @ 8: i32,
        /// The stream.
        stream_id @ 12: i32,
        /// The session the response should use.
        response_session_id @ 16: i32,
    }
}

/// Flags of SETUP frames.
pub mod setup_flags {
    /// The receiver should set up a response channel.
    pub const SEND_RESPONSE_SETUP: u8 = 0x80;
    /// The stream is a group stream.
    pub const GROUP: u8 = 0x40;
}

/// Flags of RTTM frames.
pub mod rttm_flags {
    /// This RTTM is a reply to one received.
    pub const REPLY: u8 = 0x80;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nak_round_trips() {
        let nak = Nak {
            frame_length: 28,
            flags: 0,
            session_id: 1,
            stream_id: 2,
            term_id: 3,
            term_offset: 4,
            length: 5,
        };
        let mut buf = [0u8; 28];
        assert_eq!(nak.encode(&mut buf), Ok(28));
        assert_eq!(Nak::decode(&buf), Ok(nak));
        assert!(Nak::decode(&buf[..27]).is_err());
        assert!(Nak::encode(&nak, &mut [0u8; 27]).is_err());
    }

    #[test]
    fn a_longer_frame_length_is_accepted_a_shorter_is_not() {
        let mut buf = [0u8; 48];
        let setup = Setup {
            frame_length: 40,
            flags: setup_flags::GROUP,
            term_offset: 0,
            session_id: 1,
            stream_id: 2,
            initial_term_id: 3,
            active_term_id: 4,
            term_length: 65536,
            mtu: 1408,
            ttl: 0,
        };
        setup.encode(&mut buf).unwrap();
        buf[0] = 48;
        assert_eq!(Setup::decode(&buf).unwrap().frame_length, 48);
        buf[0] = 36;
        assert!(Setup::decode(&buf).is_err());
        buf[0] = 40;
        buf[6] = 0x02; // NAK
        assert!(matches!(
            Setup::decode(&buf),
            Err(DecodeError::FrameType { .. })
        ));
    }
}
