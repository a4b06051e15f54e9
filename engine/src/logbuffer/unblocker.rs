//! Unblocking a log whose publisher died between claiming a frame and publishing it.
//!
//! Subscribers stop at an unpublished frame, so one dead publisher of a concurrent publication
//! would stop every other. The driver watches each log's consumer position; when it has not
//! moved for longer than any live publisher takes to publish (the unblock timeout) while the
//! tail is ahead of it, the driver pads over the blocked frame:
//!
//! - a negative length is a frame whose header was started: pad its claimed length;
//! - a zero length is a claim whose writer did not even store the negative length: pad up to the
//!   next frame that has started, or to the tail, whichever is first.

use super::descriptor::ALIGNMENT;
use super::frame_header::{FRAME_LENGTH_OFFSET, HeaderTemplate, write_padding};
use crate::concurrent::atomic_buffer::AtomicBuffer;

/// Pads over a blocked frame at `blocked_offset` of `term` (term `term_id`), given the offset
/// the tail has reached in that term. Returns whether anything was padded.
pub fn unblock(
    term: &AtomicBuffer<'_>,
    template: &HeaderTemplate,
    term_id: i32,
    blocked_offset: usize,
    tail_offset: usize,
) -> bool {
    let tail_offset = tail_offset.min(term.capacity());
    if blocked_offset >= tail_offset {
        return false;
    }
    let frame_length = term.get_i32_volatile(blocked_offset + FRAME_LENGTH_OFFSET);
    if frame_length < 0 {
        let length = usize::try_from(frame_length.unsigned_abs()).unwrap_or(0);
        let aligned = (length + ALIGNMENT - 1) & !(ALIGNMENT - 1);
        write_padding(term, template, blocked_offset, aligned, term_id);
        return true;
    }
    if frame_length > 0 {
        return false;
    }
    let mut offset = blocked_offset + ALIGNMENT;
    while offset < tail_offset && term.get_i32_volatile(offset + FRAME_LENGTH_OFFSET) == 0 {
        offset += ALIGNMENT;
    }
    write_padding(
        term,
        template,
        blocked_offset,
        offset - blocked_offset,
        term_id,
    );
    true
}
