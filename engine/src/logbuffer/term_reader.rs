//! Reading published frames from a term, for subscribers of a log.
//!
//! The reader starts at its own position, loads each frame's length (acquire) and stops at the
//! first that is not positive: that frame is not published yet. PAD frames are skipped. The
//! number of fragments handled per call is bounded by the caller's limit. A length that does not
//! fit the rest of the term is never trusted: the reader stops there.
//!
//! [`read`] and [`read_controlled`] lend the handler the payload where it lies: sound only for a
//! reader that no cleaner or publisher can lap while it reads, which the driver guarantees for a
//! tethered subscriber (it holds publishers and the cleaner behind the slowest one).
//! [`read_copied`] is for a reader that may be lapped (an untethered subscriber, which the driver
//! leaves behind when it is slow): it copies each frame out at the slot widths with relaxed
//! atomic loads, then checks the log's clean position, and hands the handler the copy only if no
//! byte of the frame can have been cleaned or rewritten while it was copied.

use super::descriptor::{ALIGNMENT, LogMetadata, copy_slots};
use super::frame_header::{FragmentHeader, PAD_TYPE, TYPE_OFFSET};
use crate::concurrent::atomic_buffer::AtomicBuffer;
use crate::concurrent::atomic_buffer::SlotRest;
use crate::sync::{Ordering, fence};
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
    if !term_offset.is_multiple_of(ALIGNMENT) {
        // A position another process wrote off the frame alignment: no frame starts there.
        return ReadOutcome {
            fragments: 0,
            term_offset,
        };
    }
    while fragments < fragment_limit && term_offset < term_length {
        // Pairs with the release store of the length in `frame_header::publish`.
        let published = term.get_i32_volatile(term_offset);
        let Ok(frame_length) = usize::try_from(published) else {
            break;
        };
        if frame_length < DATA_HEADER_LENGTH || frame_length > term_length - term_offset {
            // Not published yet, or not a frame: shared memory another process corrupted.
            // Stop here rather than read outside the frame.
            break;
        }
        let frame_offset = term_offset;
        let aligned = tern_codec::frame::align(frame_length);
        term_offset += aligned;
        let rest = term.get_slot_rest(frame_offset);
        if rest_type(rest) == PAD_TYPE {
            continue;
        }
        let header = FragmentHeader::from_slot(published, rest, position_of(term_offset));
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

/// A block of published frames a reader may take in one piece.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ScannedBlock {
    /// Bytes to lend: whole frames, and a PAD that ends the block as its 32-byte header only.
    pub length: usize,
    /// Bytes of term the block moves the reader past (the PAD's whole length included).
    pub extent: usize,
}

/// Finds the block of whole published frames from `term_offset`: at most `max_length` bytes of
/// term, never past the term. A PAD ends the block and is lent as its header only: its body is
/// padding nobody reads, and a PAD the driver wrote over a stalled claim may be written again
/// by that publisher if it resumes. A frame is counted only once its positive length is
/// published (acquire), so every byte lent is too.
pub fn scan_block(term: &AtomicBuffer<'_>, term_offset: usize, max_length: usize) -> ScannedBlock {
    let term_length = term.capacity();
    let mut block = ScannedBlock {
        length: 0,
        extent: 0,
    };
    if !term_offset.is_multiple_of(ALIGNMENT) || term_offset >= term_length {
        return block;
    }
    let limit = max_length.min(term_length - term_offset);
    while block.extent < limit {
        let offset = term_offset + block.extent;
        // Pairs with the release store of the length in `frame_header::publish`.
        let published = term.get_i32_volatile(offset);
        let Ok(frame_length) = usize::try_from(published) else {
            break;
        };
        if frame_length < DATA_HEADER_LENGTH || frame_length > term_length - offset {
            break;
        }
        let aligned = tern_codec::frame::align(frame_length);
        if rest_type(term.get_slot_rest(offset)) == PAD_TYPE {
            block.length += DATA_HEADER_LENGTH;
            block.extent += aligned;
            break;
        }
        if block.extent + aligned > limit {
            break;
        }
        block.length += aligned;
        block.extent += aligned;
    }
    block
}

/// The frame type in a slot's version-flags-type word.
#[inline]
fn rest_type(rest: SlotRest) -> u16 {
    let [_, _, low, high] = rest.at4.to_le_bytes();
    u16::from_le_bytes([low, high])
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
    if !term_offset.is_multiple_of(ALIGNMENT) {
        // A position another process wrote off the frame alignment: no frame starts there.
        return ControlledOutcome {
            fragments: 0,
            term_offset,
        };
    }
    while fragments < fragment_limit && term_offset < term_length {
        // Pairs with the release store of the length in `frame_header::publish`.
        let published = term.get_i32_volatile(term_offset);
        let Ok(frame_length) = usize::try_from(published) else {
            break;
        };
        if frame_length < DATA_HEADER_LENGTH || frame_length > term_length - term_offset {
            // Not published yet, or not a frame: shared memory another process corrupted.
            // Stop here rather than read outside the frame.
            break;
        }
        let frame_offset = term_offset;
        let next_offset = term_offset + (tern_codec::frame::align(frame_length));
        let rest = term.get_slot_rest(frame_offset);
        if rest_type(rest) == PAD_TYPE {
            term_offset = next_offset;
            continue;
        }
        let header = FragmentHeader::from_slot(published, rest, position_of(next_offset));
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

/// What a copying read did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CopiedOutcome {
    /// Fragments handed to the handler.
    pub fragments: usize,
    /// The term offset after the last frame read (padding included).
    pub term_offset: usize,
    /// Whether the reader found it had been lapped: it must stop reading this log.
    pub lapped: bool,
}

/// Reads like [`read_controlled`] for a reader that may be lapped: each frame is copied into
/// `scratch` and delivered from there, only once the log's clean position shows that no byte of
/// it was cleaned while it was copied. `term_base` is the stream position of the term's start.
/// A DATA frame longer than `scratch` is not delivered (the reader stops, as for a corrupt
/// length); padding of any length is skipped.
///
/// What this does not cover: publishers write headers and payloads with plain copies. When a
/// reader is lapped, its relaxed atomic loads can overlap such a copy; the copy it made is then
/// discarded, and across processes no compiler sees both sides, but within one process that
/// overlap is a race in Rust's memory model all the same. Publishing with relaxed word stores
/// would close it at a cost to large messages; it is left open, and documented, for now.
pub fn read_copied(
    term: &AtomicBuffer<'_>,
    metadata: &LogMetadata<'_>,
    term_base: i64,
    mut term_offset: usize,
    fragment_limit: usize,
    scratch: &mut [u8],
    mut handler: impl FnMut(&[u8], &FragmentHeader) -> ControlledAction,
) -> CopiedOutcome {
    let term_length = term.capacity();
    let position_of = |offset: usize| term_base + i64::try_from(offset).unwrap_or(i64::MAX);
    let mut outcome = CopiedOutcome {
        fragments: 0,
        term_offset,
        lapped: metadata.clean_position() > position_of(term_offset),
    };
    if !term_offset.is_multiple_of(ALIGNMENT) {
        // A position another process wrote off the frame alignment: no frame starts there.
        return outcome;
    }
    while !outcome.lapped && outcome.fragments < fragment_limit && term_offset < term_length {
        // Pairs with the release store of the length in `frame_header::publish`.
        let published = term.get_i32_volatile(term_offset);
        let Ok(frame_length) = usize::try_from(published) else {
            break;
        };
        if frame_length < DATA_HEADER_LENGTH || frame_length > term_length - term_offset {
            break;
        }
        let next_offset = term_offset + frame_length.next_multiple_of(ALIGNMENT);
        let mut first_slot = [0u8; ALIGNMENT];
        copy_slots(term, term_offset, &mut first_slot);
        if u16::from_le_bytes([first_slot[TYPE_OFFSET], first_slot[TYPE_OFFSET + 1]]) == PAD_TYPE {
            // Padding of any length (a term's end, an unblocked claim) is skipped, once the
            // type just read is known not to have been rewritten under the reader.
            fence(Ordering::Acquire);
            if metadata.clean_position() > position_of(term_offset) {
                outcome.lapped = true;
                break;
            }
            term_offset = next_offset;
            outcome.term_offset = term_offset;
            continue;
        }
        if frame_length > scratch.len() {
            // A DATA frame longer than the MTU the log declares: not one a publisher wrote.
            break;
        }
        let frame = &mut scratch[..frame_length];
        copy_slots(term, term_offset, frame);
        // Every byte copied happens-before this fence; a byte the cleaner zeroed after
        // announcing makes its announcement visible here (pairs with the release fence in
        // `LogMetadata::announce_clean_position`).
        fence(Ordering::Acquire);
        if metadata.clean_position() > position_of(term_offset) {
            outcome.lapped = true;
            break;
        }
        let header = FragmentHeader::parse(frame, position_of(next_offset));
        let action = handler(&frame[DATA_HEADER_LENGTH..], &header);
        if action == ControlledAction::Abort {
            break;
        }
        term_offset = next_offset;
        outcome.term_offset = term_offset;
        outcome.fragments += 1;
        if action == ControlledAction::Break {
            break;
        }
    }
    outcome
}
