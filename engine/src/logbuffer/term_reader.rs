//! Reading published frames from a term, for subscribers of a log.
//!
//! The reader starts at its own position, loads each frame's length (acquire) and stops at the
//! first that is not positive: that frame is not published yet. PAD frames are skipped. The
//! number of fragments handled per call is bounded by the caller's limit. A length that does not
//! fit the rest of the term is never trusted: the reader stops there.

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
        if frame_length < DATA_HEADER_LENGTH || frame_length > term_length - term_offset {
            // Not published yet, or not a frame: shared memory another process corrupted.
            // Stop here rather than read outside the frame.
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

/// What a controlled handler wants after a fragment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ControlledAction {
    /// Keep going.
    Continue,
    /// Stop after this fragment; it counts as read.
    Break,
    /// Stop before this fragment; it will be delivered again.
    Abort,
    /// Keep going, and record the position now (a consumer that may stop for a while).
    Commit,
}

/// What a controlled read did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ControlledOutcome {
    /// Fragments consumed (aborted ones excluded).
    pub fragments: usize,
    /// The term offset after the last consumed frame.
    pub term_offset: usize,
}

/// Reads like [`read`], but lets the handler stop, abort or commit at each fragment. Kept apart
/// from [`read`] rather than sharing one loop: measured, the shared loop cost the plain poll a
/// fifth of its time.
pub fn read_controlled(
    term: &AtomicBuffer<'_>,
    mut term_offset: usize,
    fragment_limit: usize,
    position_of: impl Fn(usize) -> i64,
    mut handler: impl FnMut(&[u8], &FragmentHeader) -> ControlledAction,
) -> ControlledOutcome {
    let term_length = term.capacity();
    let mut fragments = 0;
    while fragments < fragment_limit && term_offset < term_length {
        // Pairs with the release store of the length in `frame_header::publish`.
        let frame_length = term.get_i32_volatile(term_offset);
        let Ok(frame_length) = usize::try_from(frame_length) else {
            break;
        };
        if frame_length < DATA_HEADER_LENGTH || frame_length > term_length - term_offset {
            // Not published yet, or not a frame: shared memory another process corrupted.
            // Stop here rather than read outside the frame.
            break;
        }
        let frame_offset = term_offset;
        let next_offset = term_offset + ((frame_length + ALIGNMENT - 1) & !(ALIGNMENT - 1));
        let mut frame_type = [0u8; 2];
        term.get_bytes(frame_offset + TYPE_OFFSET, &mut frame_type);
        if u16::from_le_bytes(frame_type) == PAD_TYPE {
            term_offset = next_offset;
            continue;
        }
        let header = FragmentHeader::read(term, frame_offset, position_of(next_offset));
        // SAFETY: as in `read`: a published frame is not written again until this subscriber's
        // position passes it.
        let action = unsafe {
            term.with_bytes(
                frame_offset + DATA_HEADER_LENGTH,
                frame_length - DATA_HEADER_LENGTH,
                |payload| handler(payload, &header),
            )
        };
        if action == ControlledAction::Abort {
            break;
        }
        term_offset = next_offset;
        fragments += 1;
        if action == ControlledAction::Break {
            break;
        }
    }
    ControlledOutcome {
        fragments,
        term_offset,
    }
}
