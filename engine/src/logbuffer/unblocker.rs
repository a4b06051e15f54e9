//! Unblocking a log whose publisher died between claiming a frame and publishing it.
//!
//! Subscribers stop at an unpublished frame, so one dead publisher of a concurrent publication
//! would stop every other. The driver watches each log's consumer position; when it has not
//! moved for longer than any live publisher takes to publish (the unblock timeout) while the
//! tail is ahead of it, the driver pads over the blocked frame, and over nothing it cannot prove
//! is that dead claim:
//!
//! - a negative length is a frame whose header was started: its magnitude is the claimed
//!   length. It is used only when it is at least a header and its aligned extent ends at or
//!   before the tail; otherwise it is treated as unknown, as below;
//! - a zero length (or an unusable negative one) is a claim whose extent is unknown: pad up to
//!   the next frame that has started, after checking that every word in between is still zero.
//!   Claims made after the dead one may not have stored their header yet, so when no started
//!   frame lies before the tail nothing is padded, and the next check tries again; only a tail
//!   at the end of the term proves the claim ran to the end, and then the rest of the term is
//!   padded (Aeron's `TermUnblocker` rule).
//!
//! Frame lengths in a term are written by publishers in other processes: input. No value found
//! there makes the unblocker panic or write outside `[blocked_offset, tail_offset)`.

use tern_codec::frame::DATA_HEADER_LENGTH;

use super::descriptor::ALIGNMENT;
use super::frame_header::{FRAME_LENGTH_OFFSET, HeaderTemplate, write_padding};
use crate::concurrent::atomic_buffer::AtomicBuffer;

/// What an unblock attempt did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unblocked {
    /// Nothing was padded: the frame is published, or no proof of the claim's extent yet.
    No,
    /// A dead claim was padded over.
    Padded,
    /// The rest of the term was padded (the dead claim ran to its end).
    ToEnd,
}

/// Pads over a blocked frame at `blocked_offset` of `term` (term `term_id`), given the offset
/// the tail has reached in that term.
pub fn unblock(
    term: &AtomicBuffer<'_>,
    template: &HeaderTemplate,
    term_id: i32,
    blocked_offset: usize,
    tail_offset: usize,
) -> Unblocked {
    let term_length = term.capacity();
    let tail_offset = tail_offset.min(term_length);
    if blocked_offset >= tail_offset || !blocked_offset.is_multiple_of(ALIGNMENT) {
        return Unblocked::No;
    }
    let frame_length = term.get_i32_volatile(blocked_offset + FRAME_LENGTH_OFFSET);
    if frame_length > 0 {
        return Unblocked::No;
    }
    if frame_length < 0 {
        let claimed = usize::try_from(frame_length.unsigned_abs()).unwrap_or(usize::MAX);
        let aligned = claimed.next_multiple_of(ALIGNMENT);
        if claimed >= DATA_HEADER_LENGTH && aligned <= tail_offset - blocked_offset {
            write_padding(term, template, blocked_offset, aligned, term_id);
            return Unblocked::Padded;
        }
    }
    // The blocked word must still hold what was read, and the gap still be zero: a slow live
    // writer that stored its header meanwhile is not padded over.
    let unchanged = |end: usize| {
        term.get_i32_volatile(blocked_offset + FRAME_LENGTH_OFFSET) == frame_length
            && still_zero(term, blocked_offset + ALIGNMENT, end)
    };
    let mut offset = blocked_offset + ALIGNMENT;
    while offset < tail_offset {
        if term.get_i32_volatile(offset + FRAME_LENGTH_OFFSET) != 0 {
            if !unchanged(offset) {
                return Unblocked::No;
            }
            write_padding(
                term,
                template,
                blocked_offset,
                offset - blocked_offset,
                term_id,
            );
            return Unblocked::Padded;
        }
        offset += ALIGNMENT;
    }
    if tail_offset == term_length && unchanged(term_length) {
        write_padding(
            term,
            template,
            blocked_offset,
            term_length - blocked_offset,
            term_id,
        );
        return Unblocked::ToEnd;
    }
    Unblocked::No
}

/// Whether the frame-length words of `[from, to)` are all still zero: a claim in that range
/// whose writer woke up since the scan forbids padding over it.
fn still_zero(term: &AtomicBuffer<'_>, from: usize, to: usize) -> bool {
    (from..to)
        .step_by(ALIGNMENT)
        .rev()
        .all(|offset| term.get_i32_volatile(offset + FRAME_LENGTH_OFFSET) == 0)
}
