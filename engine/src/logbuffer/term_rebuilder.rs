//! Rebuilding a term from frames that arrive over the network, in any order, any number of
//! times: each frame is written at its own offset, once (Aeron's `TermRebuilder`).
//!
//! The receiver is the term's only writer (one thread, the receiver agent). It writes a frame's
//! header after its first word, then the payload, then the frame length (release), the order
//! publishers use, so a subscriber that loads a positive length (acquire) sees the whole frame.
//! A PAD frame arrives as its header alone: its length covers bytes the cleaner already zeroed,
//! so only the header is written. Term memory is written at the slot widths
//! ([`super::descriptor`]).

use tern_codec::frame::{DATA_HEADER_LENGTH, FRAME_ALIGNMENT};

use super::frame_header::PAD_TYPE;
use crate::concurrent::atomic_buffer::{AtomicBuffer, SlotRest};

/// What inserting a frame did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Inserted {
    /// The frame was written.
    Written,
    /// A frame was already there (a duplicate or a retransmission): nothing was written.
    Duplicate,
}

/// Why a frame cannot be inserted; the receiver counts it as invalid and drops it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum RebuildError {
    /// The offset is not a multiple of the frame alignment.
    #[error("term offset {0} is off the frame alignment")]
    Misaligned(usize),
    /// The bytes are shorter than a header.
    #[error("{0} bytes are shorter than a frame header")]
    Truncated(usize),
    /// The header's length disagrees with the bytes (DATA) or is shorter than a header (PAD).
    #[error("frame length {declared} does not match {actual} bytes")]
    Length {
        /// The length the header declares.
        declared: i32,
        /// The bytes received for the frame.
        actual: usize,
    },
    /// The frame would cover a frame already received (a sender whose frames disagree).
    #[error("a frame at {0} overlaps a frame already received")]
    Overlaps(usize),
    /// The frame would run past the end of the term.
    #[error("a frame of {length} bytes at {offset} runs past a term of {term_length}")]
    PastTermEnd {
        /// Its offset.
        offset: usize,
        /// Its length.
        length: usize,
        /// The term's length.
        term_length: usize,
    },
}

/// Inserts `frame` (one DATA frame, header and payload, or a PAD header) at `term_offset` of
/// `term`, unless a frame is already there.
pub fn insert(
    term: &AtomicBuffer<'_>,
    term_offset: usize,
    frame: &[u8],
) -> Result<Inserted, RebuildError> {
    insert_within(term, term_offset, frame, term.capacity())
}

/// [`insert`], checking for frames it would overlap only up to `written_until`: the caller
/// knows no frame was written at or past that offset in this term (its high-water mark), so a
/// PAD declaring a whole term costs the slots actually written, not the term.
pub fn insert_within(
    term: &AtomicBuffer<'_>,
    term_offset: usize,
    frame: &[u8],
    written_until: usize,
) -> Result<Inserted, RebuildError> {
    if !term_offset.is_multiple_of(FRAME_ALIGNMENT) {
        return Err(RebuildError::Misaligned(term_offset));
    }
    let Some(header) = frame.first_chunk::<DATA_HEADER_LENGTH>() else {
        return Err(RebuildError::Truncated(frame.len()));
    };
    let word = |at: usize| i64::from_le_bytes(header[at..at + 8].try_into().unwrap_or([0; 8]));
    let declared = i32::from_le_bytes([header[0], header[1], header[2], header[3]]);
    let rest = SlotRest {
        at4: i32::from_le_bytes([header[4], header[5], header[6], header[7]]),
        at8: word(8),
        at16: word(16),
        at24: word(24),
    };
    let is_pad = u16::from_le_bytes([header[6], header[7]]) == PAD_TYPE;
    let length = usize::try_from(declared).unwrap_or(0);
    let consistent = if is_pad {
        frame.len() == DATA_HEADER_LENGTH && length >= DATA_HEADER_LENGTH
    } else {
        length == frame.len()
    };
    if !consistent {
        return Err(RebuildError::Length {
            declared,
            actual: frame.len(),
        });
    }
    let term_length = term.capacity();
    if term_offset >= term_length
        || length.next_multiple_of(FRAME_ALIGNMENT) > term_length - term_offset
    {
        return Err(RebuildError::PastTermEnd {
            offset: term_offset,
            length,
            term_length,
        });
    }
    if term.get_i32_volatile(term_offset) != 0 {
        return Ok(Inserted::Duplicate);
    }
    // A frame overlapping one already here (a forged or inconsistent sender) would write over
    // published bytes that subscribers may be reading: every slot it covers must be empty.
    let extent = length.next_multiple_of(FRAME_ALIGNMENT);
    let checked_end = (term_offset + extent).min(written_until.max(term_offset));
    if (term_offset + FRAME_ALIGNMENT..checked_end)
        .step_by(FRAME_ALIGNMENT)
        .any(|slot| term.get_i32_volatile(slot) != 0)
    {
        return Err(RebuildError::Overlaps(term_offset));
    }
    term.put_slot_rest(term_offset, rest);
    if !is_pad {
        term.put_bytes(
            term_offset + DATA_HEADER_LENGTH,
            &frame[DATA_HEADER_LENGTH..],
        );
    }
    // Pairs with the acquire load of the length in the term reader and the gap scanner.
    term.put_i32_ordered(term_offset, declared);
    Ok(Inserted::Written)
}
