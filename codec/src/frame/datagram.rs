//! Walking the frames batched in one datagram.
//!
//! A sender batches consecutive frames up to the MTU; each starts at a multiple of
//! [`FRAME_ALIGNMENT`](super::FRAME_ALIGNMENT) from the datagram's start. The walk is bounded:
//! every step advances at least 32 bytes, and the first malformed frame ends it, because nothing
//! after a frame whose length cannot be trusted can be located.

use super::Frame;
use crate::error::DecodeError;

/// An iterator over the frames of a datagram; yields one error at most, then stops.
#[derive(Debug, Clone)]
pub struct DatagramFrames<'a> {
    datagram: &'a [u8],
    offset: usize,
}

impl<'a> DatagramFrames<'a> {
    /// Walks `datagram` from its start.
    pub fn new(datagram: &'a [u8]) -> Self {
        Self {
            datagram,
            offset: 0,
        }
    }
}

impl<'a> Iterator for DatagramFrames<'a> {
    type Item = Result<Frame<'a>, DecodeError>;

    fn next(&mut self) -> Option<Self::Item> {
        let rest = self.datagram.get(self.offset..)?;
        if rest.is_empty() {
            return None;
        }
        match Frame::decode(rest) {
            Ok(frame) => {
                self.offset += frame.datagram_length();
                Some(Ok(frame))
            }
            Err(error) => {
                self.offset = self.datagram.len();
                Some(Err(error))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::frame::{DataFrame, DataHeader, FrameType, data_flags};

    #[test]
    fn walks_batched_frames_and_stops_at_garbage() {
        let mut datagram = [0u8; 160];
        let header = DataHeader {
            frame_length: 0,
            flags: data_flags::UNFRAGMENTED,
            frame_type: FrameType::Data,
            term_offset: 0,
            session_id: 1,
            stream_id: 2,
            term_id: 3,
            reserved_value: 0,
        };
        DataFrame {
            header,
            payload: &[1; 10],
        }
        .encode(&mut datagram)
        .unwrap();
        DataFrame {
            header,
            payload: &[2; 20],
        }
        .encode(&mut datagram[64..])
        .unwrap();
        let frames: Vec<_> = DatagramFrames::new(&datagram[..116]).collect();
        assert_eq!(frames.len(), 2);
        assert!(frames.iter().all(Result::is_ok));

        datagram[132] = 9; // the version byte of a third frame at 128
        let frames: Vec<_> = DatagramFrames::new(&datagram).collect();
        assert_eq!(frames.len(), 3);
        assert!(frames[2].is_err());
    }
}
