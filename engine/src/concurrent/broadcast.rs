//! A one-to-many broadcast buffer: the driver's conductor transmits responses and events, every
//! client receives all of them.
//!
//! ```text
//! +-----------------------------+ 0
//! | records (capacity bytes,    |
//! | a power of two)             |
//! +-----------------------------+ capacity
//! | tail intent position  i64   |  +0    transmitter: where the tail is about to move
//! | tail position         i64   |  +8    transmitter: end of the last complete record
//! | latest position       i64   |  +16   transmitter: start of the last complete record
//! | (padding to 128 bytes)      |
//! +-----------------------------+ capacity + TRAILER_LENGTH
//!
//! record, 8-byte aligned: | length i32 | type i32 | body ... |
//! ```
//!
//! Receivers copy records while the transmitter may be overwriting them (they find out
//! afterwards), so both sides touch record memory only with relaxed 8-byte atomic accesses:
//! the header as one word (length in the low half, type in the high half), the body as whole
//! words ([`AtomicBuffer::put_words`] / [`AtomicBuffer::get_words`]). A racing copy may be torn,
//! and is then discarded, but it is never a data race, and every location has one width.
//!
//! The transmitter never waits for receivers: it overwrites the oldest records. It announces
//! each write by storing the *tail intent* before touching record bytes (release, then a
//! release fence so that no record byte is written before the intent is visible), and stores the
//! tail after the record is complete (release). A receiver reads the tail (acquire), reads a
//! record, then checks with an acquire fence and the tail intent that the transmitter has not
//! since moved more than a capacity past that record. If it has, the record may have been
//! overwritten while it was read: the receiver was **lapped**, and [`BroadcastReceiver`] reports
//! it as an error rather than hand out bytes that may be torn. A client that is lapped has
//! missed responses and must fail loudly.

use super::atomic_buffer::AtomicBuffer;
use super::ring_buffer::{PADDING_MESSAGE_TYPE, RECORD_HEADER_LENGTH, align};
use super::{as_position, masked_index};
use crate::sync::{Ordering, fence};

/// Bytes in the trailer.
pub const TRAILER_LENGTH: usize = 128;
const TAIL_INTENT_OFFSET: usize = 0;
const TAIL_OFFSET: usize = 8;
const LATEST_OFFSET: usize = 16;

/// Why a broadcast buffer could not be used.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum BroadcastError {
    /// The memory is not a power-of-two capacity plus the trailer.
    #[error(
        "{length} bytes cannot hold a broadcast buffer: it needs a power-of-two capacity plus {TRAILER_LENGTH} trailer bytes"
    )]
    InvalidCapacity {
        /// The bytes offered.
        length: usize,
    },
    /// The message is longer than the buffer allows.
    #[error("a {length}-byte message exceeds the broadcast buffer's {max}-byte maximum")]
    TooLong {
        /// The message's length.
        length: usize,
        /// The largest message the buffer carries.
        max: usize,
    },
    /// Message types are positive.
    #[error("message type {0} is not positive")]
    InvalidType(i32),
    /// The transmitter overwrote records this receiver had not read: it missed messages.
    #[error("lapped by the broadcast transmitter: {missed_bytes} bytes of messages were missed")]
    Lapped {
        /// How far behind the receiver was, in bytes.
        missed_bytes: i64,
    },
}

/// A record header as the one word both sides access: length low, type high.
fn record_header(length: usize, message_type: i32) -> i64 {
    // Lengths are below the capacity, far below i32::MAX.
    let length = u32::try_from(length).expect("record lengths fit u32");
    (i64::from(message_type) << 32) | i64::from(length)
}

/// A record header word split into its length (negative lengths read as 0) and type.
fn split_header(word: i64) -> (usize, i32) {
    let [l0, l1, l2, l3, t0, t1, t2, t3] = word.to_le_bytes();
    let length = usize::try_from(i32::from_le_bytes([l0, l1, l2, l3])).unwrap_or(0);
    (length, i32::from_le_bytes([t0, t1, t2, t3]))
}

fn check_capacity(buffer: &AtomicBuffer<'_>) -> Result<usize, BroadcastError> {
    let length = buffer.capacity();
    let capacity = length.wrapping_sub(TRAILER_LENGTH);
    if length < TRAILER_LENGTH || !capacity.is_power_of_two() || capacity < 2 * RECORD_HEADER_LENGTH
    {
        return Err(BroadcastError::InvalidCapacity { length });
    }
    Ok(capacity)
}

/// The single transmitter of a broadcast buffer.
#[derive(Debug)]
pub struct BroadcastTransmitter<'a> {
    buffer: AtomicBuffer<'a>,
    capacity: usize,
    mask: i64,
    max_message_length: usize,
    /// The tail, kept here: the transmitter is its only writer, and the copy in shared memory
    /// (which any process can scribble on) is stored to, never read back.
    tail: i64,
}

impl<'a> BroadcastTransmitter<'a> {
    /// Wraps `buffer`: a power-of-two capacity followed by the trailer.
    /// Carries on from the tail stored there (0 in new memory), moved onto the record
    /// alignment.
    pub fn new(buffer: AtomicBuffer<'a>) -> Result<Self, BroadcastError> {
        let capacity = check_capacity(&buffer)?;
        let stored = buffer.get_i64(capacity + TAIL_OFFSET);
        Ok(Self {
            buffer,
            capacity,
            mask: as_position(capacity) - 1,
            max_message_length: capacity / 8,
            tail: stored.max(0) & !(as_position(RECORD_HEADER_LENGTH) - 1),
        })
    }

    /// The longest body a record may carry: an eighth of the capacity.
    pub fn max_message_length(&self) -> usize {
        self.max_message_length
    }

    /// Broadcasts one record of `message_type` (positive) carrying `body`.
    pub fn transmit(&mut self, message_type: i32, body: &[u8]) -> Result<(), BroadcastError> {
        if message_type < 1 {
            return Err(BroadcastError::InvalidType(message_type));
        }
        if body.len() > self.max_message_length {
            return Err(BroadcastError::TooLong {
                length: body.len(),
                max: self.max_message_length,
            });
        }
        let tail_offset = self.capacity + TAIL_OFFSET;
        let mut tail = self.tail;
        let mut index = masked_index(tail, self.mask);
        let record_length = RECORD_HEADER_LENGTH + body.len();
        let aligned = align(record_length);
        let to_end = self.capacity - index;
        if to_end < aligned {
            self.signal_intent(tail + as_position(to_end + aligned));
            self.buffer
                .put_i64(index, record_header(to_end, PADDING_MESSAGE_TYPE));
            tail += as_position(to_end);
            index = 0;
        } else {
            self.signal_intent(tail + as_position(aligned));
        }
        self.buffer
            .put_i64(index, record_header(record_length, message_type));
        self.buffer.put_words(index + RECORD_HEADER_LENGTH, body);
        self.buffer
            .put_i64_ordered(self.capacity + LATEST_OFFSET, tail);
        // Publishes the record: pairs with the acquire load of the tail in `receive_next`.
        self.tail = tail + as_position(aligned);
        self.buffer.put_i64_ordered(tail_offset, self.tail);
        Ok(())
    }

    fn signal_intent(&self, intent: i64) {
        self.buffer
            .put_i64_ordered(self.capacity + TAIL_INTENT_OFFSET, intent);
        // No record byte may become visible before the intent: pairs with the acquire fence in
        // `BroadcastReceiver::validate`.
        fence(Ordering::Release);
    }
}

/// One receiver of a broadcast buffer. Each client has its own; receivers never write.
#[derive(Debug)]
pub struct BroadcastReceiver<'a> {
    buffer: AtomicBuffer<'a>,
    capacity: usize,
    mask: i64,
    cursor: i64,
    next_record: i64,
    record_offset: usize,
}

impl<'a> BroadcastReceiver<'a> {
    /// Joins `buffer` at its latest record: a new receiver sees what is broadcast from now on.
    pub fn new(buffer: AtomicBuffer<'a>) -> Result<Self, BroadcastError> {
        let capacity = check_capacity(&buffer)?;
        let mask = as_position(capacity) - 1;
        // Aligned: the tail is the transmitter's, but any process can write that memory.
        let latest = buffer.get_i64_volatile(capacity + TAIL_OFFSET).max(0)
            & !(as_position(RECORD_HEADER_LENGTH) - 1);
        Ok(Self {
            buffer,
            capacity,
            mask,
            cursor: latest,
            next_record: latest,
            record_offset: masked_index(latest, mask),
        })
    }

    /// Reads the next message into `scratch` and hands it to `handler(type, body)`. Returns
    /// whether there was one. A body longer than `scratch` or a lapped receiver is an error.
    pub fn receive(
        &mut self,
        scratch: &mut [u8],
        handler: impl FnOnce(i32, &[u8]),
    ) -> Result<bool, BroadcastError> {
        let tail = self.buffer.get_i64_volatile(self.capacity + TAIL_OFFSET);
        if tail <= self.next_record {
            return Ok(false);
        }
        self.advance()?;
        let offset = self.record_offset;
        let (length, message_type) = split_header(self.buffer.get_i64(offset));
        let body_length = length.saturating_sub(RECORD_HEADER_LENGTH);
        if offset + RECORD_HEADER_LENGTH + body_length > self.capacity {
            // A record cannot run past the end of the records: this header was torn by the
            // transmitter lapping the receiver, or written by someone else.
            self.validate()?;
            return Err(BroadcastError::TooLong {
                length: body_length,
                max: self.capacity - offset - RECORD_HEADER_LENGTH,
            });
        }
        if body_length > scratch.len() || body_length > self.capacity / 8 {
            // A torn length if lapped; a message larger than promised otherwise.
            self.validate()?;
            return Err(BroadcastError::TooLong {
                length: body_length,
                max: scratch.len(),
            });
        }
        let body = &mut scratch[..body_length];
        self.buffer.get_words(offset + RECORD_HEADER_LENGTH, body);
        self.validate()?;
        handler(message_type, body);
        Ok(true)
    }

    /// Moves to the next record, skipping padding. Fails when the next record was overwritten.
    fn advance(&mut self) -> Result<(), BroadcastError> {
        let cursor = self.next_record;
        self.cursor = cursor;
        self.record_offset = masked_index(cursor, self.mask);
        self.validate()?;
        let (length, message_type) = self.header_at(self.record_offset);
        // Positions wrap rather than overflow: they come from memory any process can write.
        self.next_record = cursor.wrapping_add(as_position(align(length)));
        if message_type == PADDING_MESSAGE_TYPE {
            self.cursor = self.next_record;
            self.record_offset = 0;
            self.validate()?;
            let (length, _) = self.header_at(0);
            self.next_record = self.next_record.wrapping_add(as_position(align(length)));
        }
        Ok(())
    }

    /// A record's length, at least a header so that the cursor always moves, and its type.
    fn header_at(&self, offset: usize) -> (usize, i32) {
        let (length, message_type) = split_header(self.buffer.get_i64(offset));
        (
            length.clamp(RECORD_HEADER_LENGTH, self.capacity),
            message_type,
        )
    }

    fn validate(&self) -> Result<(), BroadcastError> {
        // Every record byte read so far happens-before this fence; pairs with the release fence
        // after the transmitter's tail intent.
        fence(Ordering::Acquire);
        let intent = self
            .buffer
            .get_i64_volatile(self.capacity + TAIL_INTENT_OFFSET);
        let behind = intent.wrapping_sub(self.cursor);
        if behind > as_position(self.capacity) {
            return Err(BroadcastError::Lapped {
                missed_bytes: behind - as_position(self.capacity),
            });
        }
        Ok(())
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;
    use crate::concurrent::atomic_buffer::AlignedBuffer;

    fn memory(capacity: usize) -> AlignedBuffer {
        AlignedBuffer::new(capacity + TRAILER_LENGTH)
    }

    fn receive_all(
        receiver: &mut BroadcastReceiver<'_>,
    ) -> Result<Vec<(i32, Vec<u8>)>, BroadcastError> {
        let mut scratch = [0u8; 1024];
        let mut out = Vec::new();
        while receiver.receive(&mut scratch, |kind, body| out.push((kind, body.to_vec())))? {}
        Ok(out)
    }

    #[test]
    fn every_receiver_sees_every_message_in_order_across_wraps() {
        let memory = memory(512);
        let mut transmitter = BroadcastTransmitter::new(memory.buffer()).unwrap();
        let mut first = BroadcastReceiver::new(memory.buffer()).unwrap();
        let mut second = BroadcastReceiver::new(memory.buffer()).unwrap();
        for round in 0u8..200 {
            let body = vec![round; usize::from(round % 40)];
            transmitter.transmit(i32::from(round) + 1, &body).unwrap();
            let expected = vec![(i32::from(round) + 1, body)];
            assert_eq!(first.receive_all_now(), expected);
            assert_eq!(receive_all(&mut second).unwrap(), expected);
        }
    }

    impl BroadcastReceiver<'_> {
        fn receive_all_now(&mut self) -> Vec<(i32, Vec<u8>)> {
            receive_all(self).unwrap()
        }
    }

    #[test]
    fn a_late_receiver_starts_at_the_latest_record() {
        let memory = memory(256);
        let mut transmitter = BroadcastTransmitter::new(memory.buffer()).unwrap();
        transmitter.transmit(1, b"before").unwrap();
        let mut late = BroadcastReceiver::new(memory.buffer()).unwrap();
        transmitter.transmit(2, b"after").unwrap();
        assert_eq!(late.receive_all_now(), [(2, b"after".to_vec())]);
    }

    #[test]
    fn a_lapped_receiver_fails_loudly() {
        let memory = memory(256);
        let mut transmitter = BroadcastTransmitter::new(memory.buffer()).unwrap();
        let mut slow = BroadcastReceiver::new(memory.buffer()).unwrap();
        for round in 0..20 {
            transmitter.transmit(1, &[round; 24]).unwrap();
        }
        let mut scratch = [0u8; 64];
        assert!(matches!(
            slow.receive(&mut scratch, |_, _| panic!("no torn message is handed out")),
            Err(BroadcastError::Lapped { .. })
        ));
    }

    #[test]
    fn limits_are_enforced() {
        let memory = memory(256);
        let mut transmitter = BroadcastTransmitter::new(memory.buffer()).unwrap();
        assert_eq!(transmitter.max_message_length(), 32);
        assert!(matches!(
            transmitter.transmit(0, b""),
            Err(BroadcastError::InvalidType(0))
        ));
        assert!(matches!(
            transmitter.transmit(1, &[0; 33]),
            Err(BroadcastError::TooLong { .. })
        ));
        assert!(BroadcastTransmitter::new(AlignedBuffer::new(200).buffer()).is_err());
        let mut receiver = BroadcastReceiver::new(memory.buffer()).unwrap();
        transmitter.transmit(1, &[0; 32]).unwrap();
        let mut small = [0u8; 8];
        assert!(matches!(
            receiver.receive(&mut small, |_, _| {}),
            Err(BroadcastError::TooLong { length: 32, max: 8 })
        ));
    }
}
