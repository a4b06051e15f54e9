//! Reading published frames from a term, for subscribers of a log.
//!
//! The reader starts at its own position, loads each frame's length (acquire) and stops at the
//! first that is not positive: that frame is not published yet. PAD frames are skipped. The
//! number of fragments handled per call is bounded by the caller's limit.

use super::descriptor::ALIGNMENT;
use super::frame_header::{FragmentHeader, PAD_TYPE, TYPE_OFFSET};
use crate::concurrent::atomic_buffer::AtomicBuffer;
use tern_codec::frame::DATA_HEADER_LENGTH;

/// What a read did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReadOutcome {
    /// Fragments handed to the handler.
    pub fragments: usize,
    /// The term offset after the last frame read (padding included).
    pub term_offset: usize,
}

/// Reads up to `fragment_limit` fragments from `term_offset`. `position_of(offset)` maps a term
/// offset to a stream position, for the header the handler sees.
pub fn read(
    term: &AtomicBuffer<'_>,
    mut term_offset: usize,
    fragment_limit: usize,
    position_of: impl Fn(usize) -> i64,
    mut handler: impl FnMut(&[u8], &FragmentHeader),
) -> ReadOutcome {
    let term_length = term.capacity();
    let mut fragments = 0;
    while fragments < fragment_limit && term_offset < term_length {
        // Pairs with the release store of the length in `frame_header::publish`.
        let frame_length = term.get_i32_volatile(term_offset);
        let Ok(frame_length) = usize::try_from(frame_length) else {
            break;
        };
        if frame_length < DATA_HEADER_LENGTH {
            break;
        }
        let frame_offset = term_offset;
        let aligned = (frame_length + ALIGNMENT - 1) & !(ALIGNMENT - 1);
        term_offset += aligned;
        let mut frame_type = [0u8; 2];
        term.get_bytes(frame_offset + TYPE_OFFSET, &mut frame_type);
        if u16::from_le_bytes(frame_type) == PAD_TYPE {
            continue;
        }
        let header = FragmentHeader::read(term, frame_offset, position_of(term_offset));
        // SAFETY: the frame is published (acquire of its positive length) and publishers never
        // write a published frame again; the driver cleans the term only after every subscriber
        // has passed it, which this one has not until it stores its new position.
        unsafe {
            term.with_bytes(
                frame_offset + DATA_HEADER_LENGTH,
                frame_length - DATA_HEADER_LENGTH,
                |payload| handler(payload, &header),
            );
        }
        fragments += 1;
    }
    ReadOutcome {
        fragments,
        term_offset,
    }
}
