//! Finding what is missing in a term being rebuilt: the frames from the rebuild offset up to
//! the highest offset received, and the first gap among them (Aeron's `TermGapScanner`).
//!
//! Run by the receiver agent, the term's only writer, between insertions: every frame it sees is
//! complete (its length is stored last). Bytes not yet received are zero (the cleaner zeroed
//! them before the term was reused), so a gap is the run of 32-byte slots whose first word is
//! zero, up to the next frame that arrived.

use tern_codec::frame::{DATA_HEADER_LENGTH, FRAME_ALIGNMENT};

use crate::concurrent::atomic_buffer::AtomicBuffer;

/// A range of a term that has not arrived.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Gap {
    /// The term it lies in.
    pub term_id: i32,
    /// Where it starts.
    pub term_offset: usize,
    /// How long it is (up to the next frame received, or the scan's limit).
    pub length: usize,
}

/// What a scan found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Scan {
    /// The offset up to which the term is complete: the new rebuild offset.
    pub rebuild_offset: usize,
    /// The first gap after it, before `limit_offset`.
    pub gap: Option<Gap>,
}

/// Scans `term` (of `term_id`) from `rebuild_offset` to `limit_offset` (the highest offset
/// received in this term, at most its length). A frame length that is not a whole frame inside
/// the term ends the complete part there, as a gap would: nothing past it is trusted.
pub fn scan_for_gap(
    term: &AtomicBuffer<'_>,
    term_id: i32,
    rebuild_offset: usize,
    limit_offset: usize,
) -> Scan {
    let term_length = term.capacity();
    let limit = limit_offset.min(term_length);
    let mut offset = rebuild_offset;
    if !offset.is_multiple_of(FRAME_ALIGNMENT) {
        return Scan {
            rebuild_offset: offset,
            gap: None,
        };
    }
    while offset < limit {
        // Pairs with the release store of the length by the rebuilder.
        let length = usize::try_from(term.get_i32_volatile(offset)).unwrap_or(0);
        if length < DATA_HEADER_LENGTH
            || length.next_multiple_of(FRAME_ALIGNMENT) > term_length - offset
        {
            break;
        }
        offset += length.next_multiple_of(FRAME_ALIGNMENT);
    }
    if offset >= limit {
        return Scan {
            rebuild_offset: offset,
            gap: None,
        };
    }
    let start = offset;
    let mut end = start + FRAME_ALIGNMENT;
    while end < limit && term.get_i32_volatile(end) == 0 {
        end += FRAME_ALIGNMENT;
    }
    Scan {
        rebuild_offset: start,
        gap: Some(Gap {
            term_id,
            term_offset: start,
            length: end.min(limit) - start,
        }),
    }
}
