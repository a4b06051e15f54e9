//! Appending frames to a term: concurrently (many publishers, the tail claimed by atomic add) or
//! exclusively (one publisher, the tail kept locally and stored with release).
//!
//! A message longer than the MTU's payload becomes consecutive frames, BEGIN on the first and END
//! on the last, claimed together so that no other publisher's frame falls between them. A
//! message never straddles a term: when the claim would pass the term's end, the appender pads
//! the rest of the term and reports [`Appended::Tripped`]; the caller then rotates the log and
//! offers again.

use tern_codec::frame::{
    DATA_FRAME_TYPE, DATA_HEADER_LENGTH, PAD_FRAME_TYPE, data_flags, data_offsets,
};

use super::descriptor::{ALIGNMENT, LogMetadata, pack_tail, tail_term_id};
use super::frame_header::{HeaderTemplate, publish, write_padding};
use crate::concurrent::atomic_buffer::AtomicBuffer;

/// What an append did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Appended {
    /// The frames were written; the term's tail is now at `term_offset`.
    Ok {
        /// The term written.
        term_id: i32,
        /// The offset after the last frame.
        term_offset: u32,
    },
    /// The term is full: its remainder was padded (if this call got there first); rotate.
    Tripped {
        /// The term that filled up.
        term_id: i32,
    },
}

/// Why a block of frames was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum BlockError {
    /// Empty, or not a whole number of frame slots.
    #[error("a block of {0} bytes is not whole 32-byte frame slots")]
    Length(usize),
    /// A frame's length that does not fit the block or the term.
    #[error("the frame at block offset {offset} has length {length}, which does not fit")]
    FrameLength {
        /// Where in the block.
        offset: usize,
        /// Its length.
        length: i32,
    },
    /// A frame that names another place in the stream.
    #[error(
        "the frame at block offset {offset} says term {term_id} offset {term_offset}, \
         not term {expected_term_id} offset {expected_term_offset}"
    )]
    Misplaced {
        /// Where in the block.
        offset: usize,
        /// Its term id.
        term_id: i32,
        /// Its term offset.
        term_offset: i32,
        /// The publication's term id.
        expected_term_id: i32,
        /// Where it would go.
        expected_term_offset: usize,
    },
    /// Neither DATA nor PAD, or a PAD that is not last or does not run to the term's end.
    #[error("the frame at block offset {offset} (type {frame_type:#06x}) cannot go here")]
    Frame {
        /// Where in the block.
        offset: usize,
        /// Its type.
        frame_type: u16,
    },
}

/// Checks that `block` is whole frames that belong at `term_offset` of `term_id` in a term of
/// `term_length` bytes: each frame's length fits, its header names its place, DATA frames fill
/// the block exactly, and a PAD comes only last, as its header alone, within the term.
/// Returns the bytes of term the block takes (a PAD's whole length included).
pub fn check_block(
    block: &[u8],
    term_id: i32,
    term_offset: usize,
    term_length: usize,
) -> Result<usize, BlockError> {
    if block.is_empty()
        || !block.len().is_multiple_of(DATA_HEADER_LENGTH)
        || term_offset + block.len() > term_length
    {
        return Err(BlockError::Length(block.len()));
    }
    let read_i32 = |at: usize| i32::from_le_bytes(block[at..at + 4].try_into().expect("in block"));
    let mut offset = 0;
    while offset < block.len() {
        let length = read_i32(offset + data_offsets::FRAME_LENGTH);
        let frame_type = u16::from_le_bytes([
            block[offset + data_offsets::TYPE],
            block[offset + data_offsets::TYPE + 1],
        ]);
        let found_term_id = read_i32(offset + data_offsets::TERM_ID);
        let found_offset = read_i32(offset + data_offsets::TERM_OFFSET);
        let expected_term_offset = term_offset + offset;
        if found_term_id != term_id
            || usize::try_from(found_offset).ok() != Some(expected_term_offset)
        {
            return Err(BlockError::Misplaced {
                offset,
                term_id: found_term_id,
                term_offset: found_offset,
                expected_term_id: term_id,
                expected_term_offset,
            });
        }
        let frame_length = usize::try_from(length)
            .ok()
            .filter(|&frame_length| frame_length >= DATA_HEADER_LENGTH)
            .ok_or(BlockError::FrameLength { offset, length })?;
        match frame_type {
            DATA_FRAME_TYPE => {
                let aligned = align_frame(frame_length);
                if aligned > block.len() - offset {
                    return Err(BlockError::FrameLength { offset, length });
                }
                offset += aligned;
            }
            PAD_FRAME_TYPE if offset + DATA_HEADER_LENGTH == block.len() => {
                // Padding to the end of the term, or over a claim the driver unblocked.
                if !frame_length.is_multiple_of(ALIGNMENT)
                    || frame_length > term_length - expected_term_offset
                {
                    return Err(BlockError::FrameLength { offset, length });
                }
                return Ok(offset + frame_length);
            }
            _ => return Err(BlockError::Frame { offset, frame_type }),
        }
    }
    Ok(block.len())
}

/// Rounds up to the frame alignment.
#[inline]
pub const fn align_frame(length: usize) -> usize {
    tern_codec::frame::align(length)
}

/// Bytes of term that a message of `length` bytes takes in frames of at most `max_payload`.
pub fn framed_length(length: usize, max_payload: usize) -> usize {
    if length <= max_payload {
        return align_frame(length + DATA_HEADER_LENGTH);
    }
    let full = length / max_payload;
    let rest = length % max_payload;
    let last = if rest > 0 {
        align_frame(rest + DATA_HEADER_LENGTH)
    } else {
        0
    };
    full * align_frame(max_payload + DATA_HEADER_LENGTH) + last
}

/// Copies bytes `from..from + length` of the message made of `parts` into `term` at `offset`.
#[inline]
fn copy_parts(term: &AtomicBuffer<'_>, offset: usize, parts: &[&[u8]], from: usize, length: usize) {
    if let [part] = parts {
        // One part, the usual offer: a single copy.
        term.put_bytes(offset, &part[from..from + length]);
        return;
    }
    let mut part_start = 0;
    let mut written = 0;
    for part in parts {
        if written == length {
            break;
        }
        let part_end = part_start + part.len();
        let wanted = from + written;
        if part_end > wanted {
            // Every earlier part ended at or before `wanted`, so this one starts at or before it.
            let start = wanted - part_start;
            let take = (part.len() - start).min(length - written);
            term.put_bytes(offset + written, &part[start..start + take]);
            written += take;
        }
        part_start = part_end;
    }
}

/// Writes and publishes one frame of `payload` bytes at `term_offset`: its header (length
/// negated), the payload (copied by `copy` at the offset it is given), then its length.
#[allow(clippy::too_many_arguments)]
#[inline(always)]
fn write_frame(
    term: &AtomicBuffer<'_>,
    template: &HeaderTemplate,
    term_offset: usize,
    payload: usize,
    flags: u8,
    term_id: i32,
    reserved_value: i64,
    copy: impl FnOnce(usize),
) {
    let frame_length = payload + DATA_HEADER_LENGTH;
    template.write(
        term,
        term_offset,
        frame_length,
        flags,
        term_id,
        reserved_value,
    );
    copy(term_offset + DATA_HEADER_LENGTH);
    publish(term, term_offset, frame_length);
}

/// Writes a message's frames at `term_offset` (already claimed, `framed` bytes in all).
#[allow(clippy::too_many_arguments)]
#[inline]
fn write_frames(
    term: &AtomicBuffer<'_>,
    template: &HeaderTemplate,
    term_offset: usize,
    parts: &[&[u8]],
    length: usize,
    max_payload: usize,
    term_id: i32,
    reserved_value: i64,
) {
    if length <= max_payload {
        // One frame, an empty message included.
        let copy = |at| copy_parts(term, at, parts, 0, length);
        let flags = data_flags::UNFRAGMENTED;
        write_frame(
            term,
            template,
            term_offset,
            length,
            flags,
            term_id,
            reserved_value,
            copy,
        );
        return;
    }
    let mut offset = term_offset;
    let mut from = 0;
    while from < length {
        let payload = (length - from).min(max_payload);
        let mut flags = 0;
        if from == 0 {
            flags |= data_flags::BEGIN;
        }
        if from + payload == length {
            flags |= data_flags::END;
        }
        let copy = |at| copy_parts(term, at, parts, from, payload);
        write_frame(
            term,
            template,
            offset,
            payload,
            flags,
            term_id,
            reserved_value,
            copy,
        );
        offset += align_frame(payload + DATA_HEADER_LENGTH);
        from += payload;
    }
}

/// Appends to one partition of a log, with any number of other publishers.
#[derive(Debug, Clone, Copy)]
pub struct TermAppender<'a> {
    term: AtomicBuffer<'a>,
    metadata: LogMetadata<'a>,
    tail_offset: usize,
}

impl<'a> TermAppender<'a> {
    /// The appender of partition `index`.
    pub fn new(term: AtomicBuffer<'a>, metadata: LogMetadata<'a>, index: usize) -> Self {
        Self {
            term,
            metadata,
            tail_offset: LogMetadata::tail_counter_offset(index),
        }
    }

    /// The partition's raw tail (acquire).
    pub fn raw_tail(&self) -> i64 {
        self.metadata.buffer().get_i64_volatile(self.tail_offset)
    }

    /// Appends a message made of `parts`, fragmenting it into frames of at most `max_payload`
    /// bytes. The caller has checked the message against the stream's maximum length.
    pub fn append(
        &self,
        template: &HeaderTemplate,
        parts: &[&[u8]],
        max_payload: usize,
        reserved_value: i64,
    ) -> Appended {
        let length: usize = parts.iter().map(|part| part.len()).sum();
        let framed = framed_length(length, max_payload);
        let (term_id, term_offset) = match self.claim_space(template, framed) {
            Ok(claimed) => claimed,
            Err(tripped) => return tripped,
        };
        write_frames(
            &self.term,
            template,
            term_offset,
            parts,
            length,
            max_payload,
            term_id,
            reserved_value,
        );
        Appended::Ok {
            term_id,
            term_offset: u32::try_from(term_offset + framed).expect("within the term"),
        }
    }

    /// Appends a message that fits one frame (`message.len()` at most the publication's
    /// largest payload, which the caller checked): [`TermAppender::append`] without the
    /// fragmentation and the gathering of parts, for the usual offer.
    #[inline]
    pub fn append_unfragmented(
        &self,
        template: &HeaderTemplate,
        message: &[u8],
        reserved_value: i64,
    ) -> Appended {
        let frame_length = message.len() + DATA_HEADER_LENGTH;
        let framed = align_frame(frame_length);
        let (term_id, term_offset) = match self.claim_space(template, framed) {
            Ok(claimed) => claimed,
            Err(tripped) => return tripped,
        };
        let copy = |at| self.term.put_bytes(at, message);
        let (term, length, flags) = (&self.term, message.len(), data_flags::UNFRAGMENTED);
        write_frame(
            term,
            template,
            term_offset,
            length,
            flags,
            term_id,
            reserved_value,
            copy,
        );
        Appended::Ok {
            term_id,
            term_offset: u32::try_from(term_offset + framed).expect("within the term"),
        }
    }

    /// Claims `length` payload bytes (at most one frame's) for the caller to fill in place.
    pub fn claim(
        &self,
        template: &HeaderTemplate,
        length: usize,
        reserved_value: i64,
    ) -> Result<BufferClaim<'a>, Appended> {
        let frame_length = length + DATA_HEADER_LENGTH;
        let (term_id, term_offset) = self.claim_space(template, align_frame(frame_length))?;
        template.write(
            &self.term,
            term_offset,
            frame_length,
            data_flags::UNFRAGMENTED,
            term_id,
            reserved_value,
        );
        Ok(BufferClaim {
            term: self.term,
            frame_offset: term_offset,
            frame_length,
            term_id,
            resulting_offset: u32::try_from(term_offset + align_frame(frame_length))
                .expect("within the term"),
            completed: false,
        })
    }

    /// Claims `framed` bytes by atomic add; pads and trips at the end of the term.
    #[inline(always)]
    fn claim_space(
        &self,
        template: &HeaderTemplate,
        framed: usize,
    ) -> Result<(i32, usize), Appended> {
        let term_length = self.term.capacity();
        let raw_tail = self.metadata.buffer().get_and_add_i64(
            self.tail_offset,
            i64::try_from(framed).expect("framed fits"),
        );
        let term_id = tail_term_id(raw_tail);
        // The low half is the offset before this claim; others' overshoots may exceed the term.
        let term_offset = usize::try_from(raw_tail & 0xFFFF_FFFF).unwrap_or(usize::MAX);
        if !term_offset.is_multiple_of(DATA_HEADER_LENGTH) {
            // A tail another process moved off the frame alignment: no frame can start there.
            // Every claim made since then is off it too, and every claim before it ends at or
            // before the offset rounded down, so the rest of the term is padded from there and
            // the log moves on to the next term, where readers follow.
            let start = term_offset - term_offset % DATA_HEADER_LENGTH;
            if start < term_length {
                write_padding(&self.term, template, start, term_length - start, term_id);
            }
            return Err(Appended::Tripped { term_id });
        }
        if term_offset + framed > term_length {
            if term_offset < term_length {
                write_padding(
                    &self.term,
                    template,
                    term_offset,
                    term_length - term_offset,
                    term_id,
                );
            }
            return Err(Appended::Tripped { term_id });
        }
        Ok((term_id, term_offset))
    }
}

/// Space claimed in a term for one frame, to be filled in place and then committed or aborted.
/// A claim dropped without either (a panic between claim and commit, say) is aborted, so the log
/// is never left blocked by a live process.
#[derive(Debug)]
#[must_use = "a claim is aborted unless it is committed"]
pub struct BufferClaim<'a> {
    term: AtomicBuffer<'a>,
    frame_offset: usize,
    frame_length: usize,
    term_id: i32,
    resulting_offset: u32,
    completed: bool,
}

impl BufferClaim<'_> {
    /// Bytes of payload claimed.
    pub fn length(&self) -> usize {
        self.frame_length - DATA_HEADER_LENGTH
    }

    /// Lends the claimed payload to `write`.
    pub fn with_payload<R>(&mut self, write: impl FnOnce(&mut [u8]) -> R) -> R {
        // SAFETY: the frame was claimed by this claim alone (atomic add or exclusive tail) and
        // is not published until `commit`, so nobody else reads or writes these bytes now.
        unsafe {
            self.term
                .with_bytes_mut(self.frame_offset + DATA_HEADER_LENGTH, self.length(), write)
        }
    }

    /// Sets the frame's reserved value.
    pub fn set_reserved_value(&mut self, value: i64) {
        // At the slot width of that word, as every other access to it.
        self.term.put_i64(
            self.frame_offset + super::frame_header::RESERVED_VALUE_OFFSET,
            value,
        );
    }

    /// Publishes the frame. Returns the term id and the offset after it.
    pub fn commit(mut self) -> (i32, u32) {
        publish(&self.term, self.frame_offset, self.frame_length);
        self.completed = true;
        (self.term_id, self.resulting_offset)
    }

    /// Gives the space up: the frame becomes padding that subscribers skip.
    pub fn abort(mut self) -> (i32, u32) {
        self.pad();
        (self.term_id, self.resulting_offset)
    }

    fn pad(&mut self) {
        super::frame_header::set_pad_type(&self.term, self.frame_offset);
        publish(
            &self.term,
            self.frame_offset,
            align_frame(self.frame_length),
        );
        self.completed = true;
    }
}

impl Drop for BufferClaim<'_> {
    fn drop(&mut self) {
        if !self.completed {
            self.pad();
        }
    }
}

/// Appends to a log with one publisher, which keeps the tail itself.
#[derive(Debug, Clone, Copy)]
pub struct ExclusiveTermAppender<'a> {
    term: AtomicBuffer<'a>,
    metadata: LogMetadata<'a>,
    tail_offset: usize,
}

impl<'a> ExclusiveTermAppender<'a> {
    /// The appender of partition `index`.
    pub fn new(term: AtomicBuffer<'a>, metadata: LogMetadata<'a>, index: usize) -> Self {
        Self {
            term,
            metadata,
            tail_offset: LogMetadata::tail_counter_offset(index),
        }
    }

    /// Appends a message at `term_offset` of `term_id` (the publisher's own tail).
    pub fn append(
        &self,
        template: &HeaderTemplate,
        term_id: i32,
        term_offset: usize,
        parts: &[&[u8]],
        max_payload: usize,
        reserved_value: i64,
    ) -> Appended {
        let length: usize = parts.iter().map(|part| part.len()).sum();
        let framed = framed_length(length, max_payload);
        if let Err(tripped) = self.check_space(template, term_id, term_offset, framed) {
            return tripped;
        }
        write_frames(
            &self.term,
            template,
            term_offset,
            parts,
            length,
            max_payload,
            term_id,
            reserved_value,
        );
        self.advance_tail(term_id, term_offset + framed)
    }

    /// Appends a message that fits one frame (`message.len()` at most the publication's
    /// largest payload, which the caller checked): [`ExclusiveTermAppender::append`] without
    /// the fragmentation and the gathering of parts, for the usual offer.
    #[inline]
    pub fn append_unfragmented(
        &self,
        template: &HeaderTemplate,
        term_id: i32,
        term_offset: usize,
        message: &[u8],
        reserved_value: i64,
    ) -> Appended {
        let frame_length = message.len() + DATA_HEADER_LENGTH;
        let framed = align_frame(frame_length);
        if let Err(tripped) = self.check_space(template, term_id, term_offset, framed) {
            return tripped;
        }
        let copy = |at| self.term.put_bytes(at, message);
        let (term, length, flags) = (&self.term, message.len(), data_flags::UNFRAGMENTED);
        write_frame(
            term,
            template,
            term_offset,
            length,
            flags,
            term_id,
            reserved_value,
            copy,
        );
        self.advance_tail(term_id, term_offset + framed)
    }

    /// Appends padding of `length` payload bytes (a gap that subscribers skip, as archive replay
    /// and the cluster log need).
    pub fn append_padding(
        &self,
        template: &HeaderTemplate,
        term_id: i32,
        term_offset: usize,
        length: usize,
    ) -> Appended {
        let framed = align_frame(length + DATA_HEADER_LENGTH);
        if let Err(tripped) = self.check_space(template, term_id, term_offset, framed) {
            return tripped;
        }
        write_padding(&self.term, template, term_offset, framed, term_id);
        self.advance_tail(term_id, term_offset + framed)
    }

    /// Appends `block`, whole frames as another log held them, at `term_offset` of `term_id`
    /// (the publisher's own tail), with each frame's session and stream ids set to this log's.
    /// The block is checked first ([`check_block`]); nothing is written if it fails. Returns the
    /// tail after it: the term's end when the block ends with a PAD.
    pub fn append_block(
        &self,
        template: &HeaderTemplate,
        term_id: i32,
        term_offset: usize,
        block: &[u8],
    ) -> Result<Appended, BlockError> {
        let extent = check_block(block, term_id, term_offset, self.term.capacity())?;
        // Everything but the first frame's length goes in first; storing that length (release)
        // publishes the whole block: a reader reads the frames after it only once it has read
        // the first (pairs with the acquire load in the readers).
        let first_length = i32::from_le_bytes(block[..4].try_into().expect("checked"));
        self.term.put_bytes(term_offset + 4, &block[4..]);
        let mut offset = 0;
        while offset < block.len() {
            let at = term_offset + offset;
            self.term
                .put_i32(at + data_offsets::SESSION_ID, template.session_id());
            self.term
                .put_i32(at + data_offsets::STREAM_ID, template.stream_id());
            let length = i32::from_le_bytes(block[offset..offset + 4].try_into().expect("checked"));
            offset += align_frame(usize::try_from(length).expect("checked"));
        }
        publish(
            &self.term,
            term_offset,
            usize::try_from(first_length).expect("checked"),
        );
        Ok(self.advance_tail(term_id, term_offset + extent))
    }

    #[inline(always)]
    fn check_space(
        &self,
        template: &HeaderTemplate,
        term_id: i32,
        term_offset: usize,
        framed: usize,
    ) -> Result<(), Appended> {
        let term_length = self.term.capacity();
        if term_offset + framed > term_length {
            if term_offset < term_length {
                write_padding(
                    &self.term,
                    template,
                    term_offset,
                    term_length - term_offset,
                    term_id,
                );
            }
            self.advance_tail(term_id, term_length);
            return Err(Appended::Tripped { term_id });
        }
        Ok(())
    }

    #[inline(always)]
    fn advance_tail(&self, term_id: i32, term_offset: usize) -> Appended {
        let term_offset = u32::try_from(term_offset).expect("within the term");
        // Publishes the tail for the driver and for a publisher that reopens the log.
        self.metadata
            .buffer()
            .put_i64_ordered(self.tail_offset, pack_tail(term_id, term_offset));
        Appended::Ok {
            term_id,
            term_offset,
        }
    }
}
