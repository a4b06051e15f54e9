//! A many-to-one ring buffer of typed records: every client writes commands, the driver's
//! conductor alone reads them.
//!
//! ```text
//! +-----------------------------+ 0
//! | records (capacity bytes,    |
//! | a power of two)             |
//! +-----------------------------+ capacity
//! | tail position         i64   |  +0    written by producers (compare-and-set)
//! | head cache position   i64   |  +128  written by producers (a stale copy of head)
//! | head position         i64   |  +256  written by the consumer
//! | correlation counter   i64   |  +384  producers (get-and-add): unique ids
//! | consumer heartbeat    i64   |  +512  written by the consumer: its liveness
//! +-----------------------------+ capacity + TRAILER_LENGTH
//!
//! record, 8-byte aligned:
//! | length i32 | type i32 | body ... |      length covers the 8-byte header and the body
//! ```
//!
//! Each trailer field has its own 128-byte slot, so producers claiming space and the consumer
//! releasing it do not share cache lines. Positions only grow; a position's index in the
//! records is `position & (capacity - 1)`.
//!
//! Publication (habit 6): a producer claims space by compare-and-set on the tail, writes the
//! record's length as its negation (release), the type and the body, then the positive length
//! (release). The consumer reads the length (acquire) and stops at the first that is not
//! positive. A record that does not fit before the end of the records is preceded by a padding
//! record to the end. After reading, the consumer zeroes what it read and then releases it by
//! storing the new head (release), which producers read (acquire) before reusing the space.
//!
//! A producer that dies between claiming and publishing would block the consumer forever;
//! [`ManyToOneRingBuffer::unblock`] turns such a record into padding once the consumer has
//! waited past its timeout.

use super::atomic_buffer::AtomicBuffer;
use super::{as_position, masked_index};

/// Alignment of records.
pub const RECORD_ALIGNMENT: usize = 8;
/// Bytes in a record header.
pub const RECORD_HEADER_LENGTH: usize = 8;
/// Bytes in the trailer.
pub const TRAILER_LENGTH: usize = 5 * 128;
/// The type of a padding record; message types are positive.
pub const PADDING_MESSAGE_TYPE: i32 = -1;

const TAIL_POSITION_OFFSET: usize = 0;
const HEAD_CACHE_POSITION_OFFSET: usize = 128;
const HEAD_POSITION_OFFSET: usize = 256;
const CORRELATION_COUNTER_OFFSET: usize = 384;
const CONSUMER_HEARTBEAT_OFFSET: usize = 512;
const _: () = assert!(CONSUMER_HEARTBEAT_OFFSET + 128 == TRAILER_LENGTH);

/// Why a write was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum WriteError {
    /// The consumer has not caught up: no room now, try again later.
    #[error("the ring buffer is full")]
    Full,
    /// The record is longer than the buffer allows.
    #[error("a {length}-byte message exceeds the ring buffer's {max}-byte maximum")]
    TooLong {
        /// The message's length.
        length: usize,
        /// The largest message the buffer accepts.
        max: usize,
    },
    /// Message types are positive.
    #[error("message type {0} is not positive")]
    InvalidType(i32),
}

/// What one [`ManyToOneRingBuffer::read`] did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ReadOutcome {
    /// Records handed to the handler.
    pub messages: usize,
    /// Bytes released unread because a record's length was corrupt; 0 normally.
    pub skipped_bytes: usize,
    /// The first corrupt length met (when `skipped_bytes > 0`).
    pub corrupt_length: i32,
}

/// Why memory cannot hold a ring buffer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error(
    "{length} bytes cannot hold a ring buffer: it needs a power-of-two capacity plus {TRAILER_LENGTH} trailer bytes"
)]
pub struct InvalidCapacity {
    /// The bytes offered.
    pub length: usize,
}

/// A many-to-one ring buffer over shared memory. Any number of threads or processes write;
/// one reads.
#[derive(Clone, Copy, Debug)]
pub struct ManyToOneRingBuffer<'a> {
    buffer: AtomicBuffer<'a>,
    capacity: usize,
    mask: i64,
    max_message_length: usize,
}

impl<'a> ManyToOneRingBuffer<'a> {
    /// Wraps `buffer`: a power-of-two capacity followed by the trailer.
    pub fn new(buffer: AtomicBuffer<'a>) -> Result<Self, InvalidCapacity> {
        let length = buffer.capacity();
        let capacity = length.wrapping_sub(TRAILER_LENGTH);
        if length < TRAILER_LENGTH || !capacity.is_power_of_two() || capacity < 2 * RECORD_ALIGNMENT
        {
            return Err(InvalidCapacity { length });
        }
        Ok(Self {
            buffer,
            capacity,
            mask: as_position(capacity) - 1,
            max_message_length: capacity / 8,
        })
    }

    /// Bytes of records.
    pub fn capacity(&self) -> usize {
        self.capacity
    }

    /// The longest message body a record may carry: an eighth of the capacity.
    pub fn max_message_length(&self) -> usize {
        self.max_message_length
    }

    fn trailer(&self, field: usize) -> usize {
        self.capacity + field
    }

    /// Writes one record of `message_type` (positive) carrying `body`.
    pub fn write(&self, message_type: i32, body: &[u8]) -> Result<(), WriteError> {
        self.write_parts(message_type, &[body])
    }

    /// Writes one record whose body is `parts` laid end to end (no copy into a staging buffer).
    pub fn write_parts(&self, message_type: i32, parts: &[&[u8]]) -> Result<(), WriteError> {
        if message_type < 1 {
            return Err(WriteError::InvalidType(message_type));
        }
        let length: usize = parts.iter().map(|part| part.len()).sum();
        if length > self.max_message_length {
            return Err(WriteError::TooLong {
                length,
                max: self.max_message_length,
            });
        }
        let record_length = RECORD_HEADER_LENGTH + length;
        let required = align(record_length);
        let index = self.claim(required).ok_or(WriteError::Full)?;
        // record_length <= capacity / 8 + 8, far below i32::MAX for any mappable capacity.
        let record_length_i32 = i32::try_from(record_length).expect("record length fits i32");
        self.buffer.put_i32_ordered(index, -record_length_i32);
        self.buffer.put_i32(index + 4, message_type);
        let mut offset = index + RECORD_HEADER_LENGTH;
        for part in parts {
            self.buffer.put_bytes(offset, part);
            offset += part.len();
        }
        // Publishes the record: pairs with the acquire load of the length in `read`.
        self.buffer.put_i32_ordered(index, record_length_i32);
        Ok(())
    }

    /// Claims `required` bytes (aligned) and returns their index, padding to the end of the
    /// records first when they would not fit before it. `None` when the consumer is too far
    /// behind.
    fn claim(&self, required: usize) -> Option<usize> {
        let capacity = as_position(self.capacity);
        let required_i64 = as_position(required);
        let mut head = self
            .buffer
            .get_i64_volatile(self.trailer(HEAD_CACHE_POSITION_OFFSET));
        loop {
            let tail = self
                .buffer
                .get_i64_volatile(self.trailer(TAIL_POSITION_OFFSET));
            if required_i64 > capacity - (tail - head) {
                head = self
                    .buffer
                    .get_i64_volatile(self.trailer(HEAD_POSITION_OFFSET));
                if required_i64 > capacity - (tail - head) {
                    return None;
                }
                self.buffer
                    .put_i64_ordered(self.trailer(HEAD_CACHE_POSITION_OFFSET), head);
            }
            let mut padding = 0;
            let tail_index = masked_index(tail, self.mask);
            let to_end = capacity - as_position(tail_index);
            if required_i64 > to_end {
                // The record goes at index 0: it must not overrun the unread record at head.
                let mut head_index = masked_index(head, self.mask);
                if required > head_index {
                    head = self
                        .buffer
                        .get_i64_volatile(self.trailer(HEAD_POSITION_OFFSET));
                    head_index = masked_index(head, self.mask);
                    if required > head_index {
                        return None;
                    }
                    self.buffer
                        .put_i64_ordered(self.trailer(HEAD_CACHE_POSITION_OFFSET), head);
                }
                padding = to_end;
            }
            let new_tail = tail + required_i64 + padding;
            if self
                .buffer
                .compare_and_set_i64(self.trailer(TAIL_POSITION_OFFSET), tail, new_tail)
            {
                if padding != 0 {
                    let padding = i32::try_from(padding).expect("padding below capacity");
                    self.buffer.put_i32(tail_index + 4, PADDING_MESSAGE_TYPE);
                    // Publishes the padding: pairs with the acquire load in `read`.
                    self.buffer.put_i32_ordered(tail_index, padding);
                    return Some(0);
                }
                return Some(tail_index);
            }
        }
    }

    /// Reads up to `limit` records in order, calling `handler(type, body)` for each with a copy
    /// of its body in `scratch` (at least [`ManyToOneRingBuffer::max_message_length`] bytes),
    /// then releases their space. Consumer only.
    ///
    /// Producers are other processes, so every record length is input: a record must start with
    /// a length of at least a header whose aligned extent stays inside the bytes producers have
    /// claimed (below the tail) and before the end of the records. A length that breaks this is
    /// never trusted: the reader releases one aligned word and reads on from the next, so the
    /// records producers claimed after it still arrive. The outcome says how many bytes were
    /// skipped.
    pub fn read(
        &self,
        scratch: &mut [u8],
        mut handler: impl FnMut(i32, &[u8]),
        limit: usize,
    ) -> ReadOutcome {
        assert!(
            scratch.len() >= self.max_message_length,
            "the scratch holds the longest message"
        );
        // The records may wrap: read to the end of the buffer, then once more from its start.
        let mut outcome = ReadOutcome::default();
        for _ in 0..2 {
            let reached_end = self.read_contiguous(scratch, &mut handler, limit, &mut outcome);
            if !reached_end || outcome.messages == limit {
                break;
            }
        }
        outcome
    }

    /// Reads records from the head to the end of the buffer at most; returns whether it reached
    /// the end.
    fn read_contiguous(
        &self,
        scratch: &mut [u8],
        handler: &mut impl FnMut(i32, &[u8]),
        limit: usize,
        outcome: &mut ReadOutcome,
    ) -> bool {
        let stored_head = self.buffer.get_i64(self.trailer(HEAD_POSITION_OFFSET));
        // The head is the consumer's own field, but it lies in memory any process can write: a
        // head off the record alignment is moved up to it, and the bytes passed are skipped.
        let head = align_position(stored_head);
        if head != stored_head {
            outcome.skipped_bytes += usize::try_from(head.wrapping_sub(stored_head)).unwrap_or(0);
        }
        let head_index = masked_index(head, self.mask);
        let to_end = self.capacity - head_index;
        // Only claimed bytes may hold records, and head and tail are at most a capacity apart
        // with the tail ahead. Anything else is memory another process scribbled on: the ring
        // is repaired by moving the head to the tail (what lay between cannot be told apart from
        // garbage), so that producers see room again instead of a ring that is full for ever.
        let tail = self.producer_position();
        let claimed = tail.wrapping_sub(head);
        if !(0..=as_position(self.capacity)).contains(&claimed) || tail != align_position(tail) {
            let repaired = align_position(tail);
            // A tail off the alignment would have every producer write records off it.
            let _ =
                self.buffer
                    .compare_and_set_i64(self.trailer(TAIL_POSITION_OFFSET), tail, repaired);
            outcome.skipped_bytes += self.capacity;
            if outcome.corrupt_length == 0 {
                outcome.corrupt_length = i32::MIN;
            }
            self.buffer.set_memory(0, self.capacity, 0);
            self.buffer
                .put_i64_ordered(self.trailer(HEAD_CACHE_POSITION_OFFSET), repaired);
            self.buffer
                .put_i64_ordered(self.trailer(HEAD_POSITION_OFFSET), repaired);
            return false;
        }
        let claimed = usize::try_from(claimed).unwrap_or(0);
        let readable = to_end.min(claimed);
        let mut bytes_read = 0;
        while bytes_read < readable && outcome.messages < limit {
            let index = head_index + bytes_read;
            // Pairs with the release store of the length in `write_parts` and `claim`.
            let length = self.buffer.get_i32_volatile(index);
            if length <= 0 {
                break;
            }
            let length = usize::try_from(length).unwrap_or(usize::MAX);
            let message_type = self.buffer.get_i32(index + 4);
            if length < RECORD_HEADER_LENGTH
                || align(length) > readable - bytes_read
                || (message_type != PADDING_MESSAGE_TYPE
                    && length - RECORD_HEADER_LENGTH > self.max_message_length)
            {
                // Not a record any producer claimed. Step over one aligned word and look for the
                // next record there: the records other producers claimed after this one are
                // still delivered, and bytes a broken producer left behind it are skipped (or,
                // if they parse as a record, read as one, which that producer could have
                // written anyway).
                if outcome.skipped_bytes == 0 {
                    outcome.corrupt_length = i32::try_from(length).unwrap_or(i32::MAX);
                }
                outcome.skipped_bytes += RECORD_ALIGNMENT;
                bytes_read += RECORD_ALIGNMENT;
                continue;
            }
            bytes_read += align(length);
            if message_type == PADDING_MESSAGE_TYPE {
                continue;
            }
            outcome.messages += 1;
            // Copied out with word loads, not lent in place: the bytes lie in memory other
            // processes write, and a broken producer's record may overlap another's claim.
            let body = &mut scratch[..length - RECORD_HEADER_LENGTH];
            self.buffer.get_words(index + RECORD_HEADER_LENGTH, body);
            handler(message_type, body);
        }
        if bytes_read > 0 || head != stored_head {
            self.buffer.set_memory(head_index, bytes_read, 0);
            // Releases the space: pairs with the acquire loads of head in `claim`.
            self.buffer.put_i64_ordered(
                self.trailer(HEAD_POSITION_OFFSET),
                head.wrapping_add(as_position(bytes_read)),
            );
        }
        bytes_read == to_end
    }

    /// A new id, unique among all users of this buffer (for correlating requests).
    pub fn next_correlation_id(&self) -> i64 {
        self.buffer
            .get_and_add_i64(self.trailer(CORRELATION_COUNTER_OFFSET), 1)
    }

    /// Records that the consumer is alive at `now_ms`. Consumer only.
    pub fn set_consumer_heartbeat(&self, now_ms: i64) {
        self.buffer
            .put_i64_ordered(self.trailer(CONSUMER_HEARTBEAT_OFFSET), now_ms);
    }

    /// When the consumer last said it was alive.
    pub fn consumer_heartbeat(&self) -> i64 {
        self.buffer
            .get_i64_volatile(self.trailer(CONSUMER_HEARTBEAT_OFFSET))
    }

    /// Bytes written and not yet read (0 when the positions make no sense).
    pub fn size(&self) -> usize {
        let head = self.consumer_position();
        usize::try_from(self.producer_position().wrapping_sub(head))
            .map_or(0, |size| size.min(self.capacity))
    }

    /// The consumer's position.
    pub fn consumer_position(&self) -> i64 {
        self.buffer
            .get_i64_volatile(self.trailer(HEAD_POSITION_OFFSET))
    }

    /// The producers' position.
    pub fn producer_position(&self) -> i64 {
        self.buffer
            .get_i64_volatile(self.trailer(TAIL_POSITION_OFFSET))
    }

    /// Turns a record that a producer claimed but never published (it died, or stalled past the
    /// consumer's timeout) into padding, so the consumer can move past it. Consumer only; call
    /// it only after the head has not moved for longer than any live producer takes to publish.
    /// Returns whether it unblocked anything.
    pub fn unblock(&self) -> bool {
        let head = self.consumer_position();
        let tail = self.producer_position();
        if head == tail || head != align_position(head) {
            return false;
        }
        let head_index = masked_index(head, self.mask);
        let tail_index = masked_index(tail, self.mask);
        let limit = if tail_index > head_index {
            tail_index
        } else {
            self.capacity
        };
        let length = self.buffer.get_i32_volatile(head_index);
        if length > 0 {
            return false;
        }
        if length < 0 {
            // Claimed, length written negative, never completed: pad over the claimed length,
            // if it is one a producer could have claimed here.
            let claimed = usize::try_from(length.unsigned_abs()).unwrap_or(usize::MAX);
            if claimed >= RECORD_HEADER_LENGTH && align(claimed) <= limit - head_index {
                self.pad(head_index, align(claimed));
                return true;
            }
        }
        // Claimed but not even a plausible length written: pad up to the next record that has
        // started, verifying that the blocked word is unchanged and the gap still zero. With no
        // started record before the tail, a live producer's claim may be among the zeros: wait
        // for one to appear, unless the tail has wrapped, which proves every byte to the end
        // was claimed before it (Aeron's pad-to-end rule).
        let unchanged = |end: usize| {
            self.buffer.get_i32_volatile(head_index) == length
                && (head_index + RECORD_ALIGNMENT..end)
                    .step_by(RECORD_ALIGNMENT)
                    .all(|gap| self.buffer.get_i32_volatile(gap) == 0)
        };
        let mut index = head_index + RECORD_ALIGNMENT;
        while index < limit {
            if self.buffer.get_i32_volatile(index) != 0 {
                let padded = unchanged(index);
                if padded {
                    self.pad(head_index, index - head_index);
                }
                return padded;
            }
            index += RECORD_ALIGNMENT;
        }
        if limit == self.capacity && unchanged(limit) {
            self.pad(head_index, limit - head_index);
            return true;
        }
        false
    }

    /// Writes a padding record of `length` bytes at `index` (consumer only, when unblocking).
    fn pad(&self, index: usize, length: usize) {
        let length = i32::try_from(length).expect("padding below capacity");
        self.buffer.put_i32(index + 4, PADDING_MESSAGE_TYPE);
        // Publishes the padding: pairs with the acquire load of the length in `read`.
        self.buffer.put_i32_ordered(index, length);
    }
}

/// Rounds a position up to the record alignment (wrapping at the end of the i64 range).
fn align_position(position: i64) -> i64 {
    let alignment = as_position(RECORD_ALIGNMENT);
    position.wrapping_add(alignment - 1) & !(alignment - 1)
}

/// Rounds a record length up to the record alignment.
#[inline]
pub const fn align(length: usize) -> usize {
    (length + RECORD_ALIGNMENT - 1) & !(RECORD_ALIGNMENT - 1)
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;
    use crate::concurrent::atomic_buffer::AlignedBuffer;

    fn ring(capacity: usize) -> AlignedBuffer {
        AlignedBuffer::new(capacity + TRAILER_LENGTH)
    }

    fn drain(ring: &ManyToOneRingBuffer<'_>) -> Vec<(i32, Vec<u8>)> {
        let mut out = Vec::new();
        ring.read(
            &mut [0u8; 64],
            |kind, body| out.push((kind, body.to_vec())),
            usize::MAX,
        );
        out
    }

    #[test]
    fn records_come_out_in_order_and_wrap_with_padding() {
        let memory = ring(256);
        let ring = ManyToOneRingBuffer::new(memory.buffer()).unwrap();
        assert_eq!(ring.max_message_length(), 32);
        for round in 0u8..100 {
            let body = [round; 20];
            ring.write(i32::from(round) + 1, &body).unwrap();
            ring.write_parts(7, &[&[round], &[round, round]]).unwrap();
            let read = drain(&ring);
            assert_eq!(
                read,
                [(i32::from(round) + 1, body.to_vec()), (7, vec![round; 3])]
            );
        }
        assert_eq!(ring.size(), 0);
    }

    #[test]
    fn full_and_invalid_writes_are_refused() {
        let memory = ring(64);
        let ring = ManyToOneRingBuffer::new(memory.buffer()).unwrap();
        assert_eq!(ring.write(0, b""), Err(WriteError::InvalidType(0)));
        assert_eq!(
            ring.write(1, &[0; 9]),
            Err(WriteError::TooLong { length: 9, max: 8 })
        );
        for _ in 0..4 {
            ring.write(1, &[1; 8]).unwrap();
        }
        assert_eq!(ring.write(1, &[1; 8]), Err(WriteError::Full));
        assert_eq!(ring.read(&mut [0u8; 64], |_, _| {}, 1).messages, 1);
        ring.write(1, &[2; 8]).unwrap();
        assert_eq!(
            drain(&ring),
            [
                (1, vec![1; 8]),
                (1, vec![1; 8]),
                (1, vec![1; 8]),
                (1, vec![2; 8])
            ]
        );
    }

    #[test]
    fn capacity_must_be_a_power_of_two() {
        assert!(ManyToOneRingBuffer::new(ring(96).buffer()).is_err());
        assert!(ManyToOneRingBuffer::new(AlignedBuffer::new(64).buffer()).is_err());
    }

    #[test]
    fn a_producer_that_died_mid_write_is_padded_over() {
        let memory = ring(256);
        let buffer = memory.buffer();
        let ring = ManyToOneRingBuffer::new(buffer).unwrap();
        // A producer claims 24 bytes and dies after writing its negative length.
        assert!(buffer.compare_and_set_i64(256, 0, 24));
        buffer.put_i32_ordered(0, -24);
        ring.write(3, b"after").unwrap();
        assert_eq!(
            ring.read(&mut [0u8; 64], |_, _| {}, 10).messages,
            0,
            "blocked behind the dead record"
        );
        assert!(ring.unblock());
        assert_eq!(drain(&ring), [(3, b"after".to_vec())]);

        // One that died before writing anything at all.
        let tail = ring.producer_position();
        assert!(buffer.compare_and_set_i64(256, tail, tail + 16));
        ring.write(4, b"next").unwrap();
        assert!(ring.unblock());
        assert_eq!(drain(&ring), [(4, b"next".to_vec())]);
        assert!(!ring.unblock());

        // A dead claim that runs to the end of the records, with the tail wrapped past it: padded
        // to the end, and the record after the wrap is read.
        let tail = ring.producer_position();
        let to_end = 256 - usize::try_from(tail).unwrap() % 256;
        assert!(buffer.compare_and_set_i64(256, tail, tail + i64::try_from(to_end).unwrap()));
        ring.write(7, b"wrapped").unwrap();
        assert_eq!(
            ring.read(&mut [0u8; 64], |_, _| {}, 10).messages,
            0,
            "blocked at the dead claim"
        );
        assert!(ring.unblock());
        assert_eq!(drain(&ring), [(7, b"wrapped".to_vec())]);

        // A dead claim followed by a live one that has not written yet: nothing proves where
        // the dead one ends, so nothing is padded until the live one writes.
        let tail = ring.producer_position();
        assert!(buffer.compare_and_set_i64(256, tail, tail + 32));
        let live = usize::try_from(tail + 16).unwrap() % 256;
        assert!(!ring.unblock(), "padded over a live producer's claim");
        buffer.put_i32(live + 4, 5);
        buffer.put_bytes(live + 8, b"live");
        buffer.put_i32_ordered(live, 12);
        assert!(ring.unblock());
        assert_eq!(drain(&ring), [(5, b"live".to_vec())]);
        // A negative length no producer could have claimed is not trusted either.
        let tail = ring.producer_position();
        assert!(buffer.compare_and_set_i64(256, tail, tail + 16));
        buffer.put_i32_ordered(usize::try_from(tail).unwrap() % 256, i32::MIN);
        ring.write(6, b"x").unwrap();
        assert!(ring.unblock());
        assert_eq!(drain(&ring), [(6, b"x".to_vec())]);
    }

    #[test]
    fn a_record_length_past_the_claimed_records_is_skipped_not_lent() {
        let memory = ring(256);
        let buffer = memory.buffer();
        let ring = ManyToOneRingBuffer::new(buffer).unwrap();
        ring.write(1, b"first").unwrap();
        ring.write(2, b"second").unwrap();
        // A broken producer rewrites the second record's length to run into the trailer.
        buffer.put_i32_ordered(16, 1000);
        let mut seen = Vec::new();
        let outcome = ring.read(
            &mut [0u8; 64],
            |kind, body| seen.push((kind, body.to_vec())),
            10,
        );
        assert_eq!(seen, [(1, b"first".to_vec())]);
        assert_eq!(outcome.messages, 1);
        assert_eq!(outcome.skipped_bytes, 16);
        assert_eq!(outcome.corrupt_length, 1000);
        assert_eq!(ring.size(), 0, "head caught up with the tail, not past it");
        assert_eq!(
            ring.producer_position(),
            32,
            "the trailer was neither lent nor zeroed"
        );
        // A length too short to hold a header is corrupt too; records after the skip flow.
        ring.write(3, b"x").unwrap();
        buffer.put_i32_ordered(32, 3);
        assert_eq!(ring.read(&mut [0u8; 64], |_, _| {}, 10).skipped_bytes, 16);
        ring.write(4, b"after").unwrap();
        assert_eq!(drain(&ring), [(4, b"after".to_vec())]);
    }

    #[test]
    fn a_record_longer_than_the_longest_message_is_not_copied() {
        let memory = ring(256);
        let buffer = memory.buffer();
        let ring = ManyToOneRingBuffer::new(buffer).unwrap();
        // A broken producer claims 64 bytes and publishes a 48-byte record (a 40-byte body,
        // past the 32-byte maximum), then a good record follows.
        assert!(buffer.compare_and_set_i64(256, 0, 64));
        buffer.put_i32(4, 9);
        buffer.put_bytes(8, &[0x7F; 40]); // a body whose words are no record lengths either
        buffer.put_i32(48 + 4, PADDING_MESSAGE_TYPE);
        buffer.put_i32_ordered(48, 16);
        buffer.put_i32_ordered(0, 48);
        ring.write(2, b"good").unwrap();
        let mut scratch = [0u8; 32];
        let mut seen = Vec::new();
        let outcome = ring.read(
            &mut scratch,
            |kind, body| seen.push((kind, body.to_vec())),
            10,
        );
        assert_eq!(seen, [(2, b"good".to_vec())]);
        assert!(outcome.skipped_bytes > 0);
    }

    #[test]
    fn a_tail_behind_the_head_claims_nothing() {
        let memory = ring(64);
        let buffer = memory.buffer();
        let ring = ManyToOneRingBuffer::new(buffer).unwrap();
        ring.write(1, b"a").unwrap();
        assert_eq!(ring.read(&mut [0u8; 64], |_, _| {}, 10).messages, 1);
        // Leftover bytes that look like a record, and a tail a broken producer moved back.
        buffer.put_i32_ordered(16, 16);
        buffer.put_i32(20, 9);
        buffer.put_i64_ordered(64, 0);
        assert_eq!(
            ring.read(&mut [0u8; 64], |_, _| panic!("nothing is claimed"), 10)
                .messages,
            0
        );
    }

    #[test]
    fn correlation_ids_are_unique_and_heartbeats_read_back() {
        let memory = ring(64);
        let ring = ManyToOneRingBuffer::new(memory.buffer()).unwrap();
        assert_eq!(ring.next_correlation_id(), 0);
        assert_eq!(ring.next_correlation_id(), 1);
        ring.set_consumer_heartbeat(1234);
        assert_eq!(ring.consumer_heartbeat(), 1234);
    }
}
