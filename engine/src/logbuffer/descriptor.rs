//! The layout of a log buffer: three terms and a metadata section in one memory-mapped file.
//!
//! ```text
//! +----------------------------+ 0
//! | term 0 (term_length bytes) |
//! +----------------------------+ term_length
//! | term 1                     |
//! +----------------------------+ 2 × term_length
//! | term 2                     |
//! +----------------------------+ 3 × term_length
//! | metadata (4 KiB)           |
//! +----------------------------+ 3 × term_length + 4096, rounded up to the page size
//!
//! metadata:
//!    0  tail counter 0       i64   publishers: term_id << 32 | term offset (may overshoot)
//!    8  tail counter 1       i64
//!   16  tail counter 2       i64
//!   24  active term count    i64   publishers, on rotation (compare-and-set); an i32 value
//!  128  end of stream pos.   i64   driver: where a closed publication ends
//!  136  is connected         i32   driver: whether any subscriber is attached
//!  140  active transports    i32   driver
//!  192  clean position       i64   driver: bytes below this position may be zeroed or
//!                                  rewritten (stored before the cleaner touches them)
//!  256  correlation id       i64   the registration that created the log
//!  264  initial term id      i32
//!  268  default header len.  i32   32
//!  272  mtu                  i32
//!  276  term length          i32
//!  280  page size            i32
//!  284  publication window   i32
//!  320  default DATA header  32 bytes: version, flags, type, session and stream ids
//!  448  magic                u64   "TERNLOG1"
//!  456  layout version       u32   semantic version, composed
//!  512  back-pressured offers i64  publishers (atomic add): offers refused at the limit
//!  640  not-connected offers  i64  publishers (atomic add): offers refused with no subscriber
//! ```
//!
//! Term memory is accessed in 32-byte slots (the frame alignment) at fixed widths, whoever
//! touches it: a 4-byte word at +0 (where a frame length lives when a frame starts there), a
//! 4-byte word at +4, and 8-byte words at +8, +16 and +24. The cleaner zeroes at those widths and
//! a reader that may be lapped copies at them ([`zero_slots`], [`copy_slots`]).
//!
//! A frame in a term is a wire frame: the Aeron DATA header of `tern_codec::frame`, 32-byte
//! aligned, so the sender can send term bytes as they are. Each partition's tail counter packs
//! the term id it holds with the next free offset; the active term count says which partition
//! publishers append to (`count % 3`).

use tern_codec::SemanticVersion;
use tern_codec::frame::{DATA_HEADER_LENGTH, FRAME_ALIGNMENT, data_offsets};
use tern_codec::position::{TermGeometry, validate_log_term_length};

use crate::concurrent::atomic_buffer::AtomicBuffer;

/// Terms in a log buffer.
pub const PARTITION_COUNT: usize = 3;
/// Bytes in the metadata section.
pub const LOG_META_DATA_LENGTH: usize = 4096;
/// The version of this layout.
///
/// 0.2 added the clean position and the refused-offer counts.
pub const LOG_LAYOUT_VERSION: SemanticVersion = SemanticVersion::new(0, 2, 0);
/// Identifies a tern log buffer.
pub const LOG_MAGIC: u64 = u64::from_le_bytes(*b"TERNLOG1");
/// The smallest page size a log may declare.
pub const PAGE_SIZE_MIN: usize = 4096;
/// The largest page size a log may declare.
pub const PAGE_SIZE_MAX: usize = 1 << 30;

const TAIL_COUNTERS_OFFSET: usize = 0;
const ACTIVE_TERM_COUNT_OFFSET: usize = 24;
const END_OF_STREAM_POSITION_OFFSET: usize = 128;
const IS_CONNECTED_OFFSET: usize = 136;
const ACTIVE_TRANSPORT_COUNT_OFFSET: usize = 140;
const CLEAN_POSITION_OFFSET: usize = 192;
const BACK_PRESSURED_OFFSET: usize = 512;
const NOT_CONNECTED_OFFSET: usize = 640;
const _: () = assert!(NOT_CONNECTED_OFFSET + 128 <= LOG_META_DATA_LENGTH);
const CORRELATION_ID_OFFSET: usize = 256;
const INITIAL_TERM_ID_OFFSET: usize = 264;
const DEFAULT_HEADER_LENGTH_OFFSET: usize = 268;
const MTU_OFFSET: usize = 272;
const TERM_LENGTH_OFFSET: usize = 276;
const PAGE_SIZE_OFFSET: usize = 280;
const PUBLICATION_WINDOW_OFFSET: usize = 284;
const DEFAULT_HEADER_OFFSET: usize = 320;
const MAGIC_OFFSET: usize = 448;
const LAYOUT_VERSION_OFFSET: usize = 456;
const _: () = assert!(DEFAULT_HEADER_OFFSET + 128 == MAGIC_OFFSET);
const _: () = assert!(LAYOUT_VERSION_OFFSET + 8 <= LOG_META_DATA_LENGTH);

/// Why bytes are not a usable log buffer.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LogBufferError {
    /// The term length is not a power of two from 64 KiB to 1 GiB.
    #[error(transparent)]
    TermLength(#[from] tern_codec::DecodeError),
    /// The page size is not a power of two from 4 KiB to 1 GiB.
    #[error("page size {0} is not a power of two from 4 KiB to 1 GiB")]
    PageSize(usize),
    /// The file's length does not match its declared geometry.
    #[error("a log of {actual} bytes does not match its geometry ({expected} bytes)")]
    Length {
        /// The length the geometry implies.
        expected: usize,
        /// The length found.
        actual: usize,
    },
    /// Not a tern log buffer.
    #[error("not a tern log buffer (magic {0:#018x})")]
    Magic(u64),
    /// A log written by an incompatible layout version.
    #[error("log buffer layout {found} is incompatible with this build's {LOG_LAYOUT_VERSION}")]
    Version {
        /// The version found.
        found: SemanticVersion,
    },
}

/// Bytes a log buffer of this geometry occupies.
pub fn log_length(term_length: usize, page_size: usize) -> usize {
    let length = PARTITION_COUNT * term_length + LOG_META_DATA_LENGTH;
    length.div_ceil(page_size) * page_size
}

/// Checks a page size.
pub fn validate_page_size(page_size: usize) -> Result<usize, LogBufferError> {
    if !page_size.is_power_of_two() || !(PAGE_SIZE_MIN..=PAGE_SIZE_MAX).contains(&page_size) {
        return Err(LogBufferError::PageSize(page_size));
    }
    Ok(page_size)
}

/// Packs a tail counter: the term id in the high 32 bits, the offset in the low.
#[inline]
pub const fn pack_tail(term_id: i32, term_offset: u32) -> i64 {
    ((term_id as i64) << 32) | term_offset as i64
}

/// The term id of a raw tail.
#[inline]
#[allow(clippy::cast_possible_truncation)]
pub const fn tail_term_id(raw_tail: i64) -> i32 {
    // The high 32 bits are the term id: the shift leaves exactly them.
    (raw_tail >> 32) as i32
}

/// The offset of a raw tail, clamped to the term: publishers may overshoot the end.
#[inline]
#[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
pub const fn tail_term_offset(raw_tail: i64, term_length: u32) -> u32 {
    // The low 32 bits are the offset, read unsigned.
    let offset = raw_tail as u32;
    if offset < term_length {
        offset
    } else {
        term_length
    }
}

/// The partition that holds the term `term_count` terms after the initial one.
#[inline]
pub fn index_by_term_count(term_count: i64) -> usize {
    usize::try_from(term_count.rem_euclid(3)).unwrap_or(0)
}

/// The partition that holds `term_id`.
#[inline]
pub fn index_by_term(initial_term_id: i32, term_id: i32) -> usize {
    index_by_term_count(i64::from(term_id.wrapping_sub(initial_term_id)))
}

/// The parameters of a new log.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LogParameters {
    /// Bytes per term: a power of two from 64 KiB to 1 GiB.
    pub term_length: u32,
    /// The term id at position 0.
    pub initial_term_id: i32,
    /// The MTU of the stream.
    pub mtu: u32,
    /// The page size the file is aligned to.
    pub page_size: u32,
    /// The registration that created the log.
    pub correlation_id: i64,
    /// The publication's session.
    pub session_id: i32,
    /// The stream.
    pub stream_id: i32,
    /// How far a publisher may run ahead of the slowest subscriber.
    pub publication_window: u32,
}

/// Accessors of a log's metadata section.
#[derive(Debug, Clone, Copy)]
pub struct LogMetadata<'a> {
    buffer: AtomicBuffer<'a>,
}

impl<'a> LogMetadata<'a> {
    /// Wraps a metadata section.
    pub fn new(buffer: AtomicBuffer<'a>) -> Self {
        assert!(
            buffer.capacity() >= LOG_META_DATA_LENGTH,
            "a log's metadata is 4 KiB"
        );
        Self { buffer }
    }

    /// Writes a new log's metadata: its geometry, the default header, and the tail of term 0
    /// at the initial term id (the other partitions hold the terms before it, for rotation).
    pub fn initialise(&self, parameters: &LogParameters) {
        let buffer = &self.buffer;
        let initial = parameters.initial_term_id;
        buffer.put_i64(TAIL_COUNTERS_OFFSET, pack_tail(initial, 0));
        for index in 1..PARTITION_COUNT {
            let earlier = initial.wrapping_sub(i32::try_from(PARTITION_COUNT - index).unwrap_or(0));
            buffer.put_i64(TAIL_COUNTERS_OFFSET + index * 8, pack_tail(earlier, 0));
        }
        buffer.put_i64(ACTIVE_TERM_COUNT_OFFSET, 0);
        buffer.put_i64(END_OF_STREAM_POSITION_OFFSET, i64::MAX);
        buffer.put_i64(CLEAN_POSITION_OFFSET, 0);
        buffer.put_i64(BACK_PRESSURED_OFFSET, 0);
        buffer.put_i64(NOT_CONNECTED_OFFSET, 0);
        buffer.put_i64(CORRELATION_ID_OFFSET, parameters.correlation_id);
        buffer.put_i32(INITIAL_TERM_ID_OFFSET, initial);
        buffer.put_i32(DEFAULT_HEADER_LENGTH_OFFSET, 32);
        buffer.put_i32(MTU_OFFSET, parameters.mtu.cast_signed());
        buffer.put_i32(TERM_LENGTH_OFFSET, parameters.term_length.cast_signed());
        buffer.put_i32(PAGE_SIZE_OFFSET, parameters.page_size.cast_signed());
        buffer.put_i32(
            PUBLICATION_WINDOW_OFFSET,
            parameters.publication_window.cast_signed(),
        );
        let mut header = [0u8; DATA_HEADER_LENGTH];
        // version 0, flags BEGIN|END, type DATA, then session and stream ids.
        header[data_offsets::VERSION] = tern_codec::frame::FRAME_VERSION;
        header[data_offsets::FLAGS] = tern_codec::frame::data_flags::UNFRAGMENTED;
        header[data_offsets::TYPE..data_offsets::TYPE + 2]
            .copy_from_slice(&tern_codec::frame::DATA_FRAME_TYPE.to_le_bytes());
        header[data_offsets::SESSION_ID..data_offsets::SESSION_ID + 4]
            .copy_from_slice(&parameters.session_id.to_le_bytes());
        header[data_offsets::STREAM_ID..data_offsets::STREAM_ID + 4]
            .copy_from_slice(&parameters.stream_id.to_le_bytes());
        buffer.put_bytes(DEFAULT_HEADER_OFFSET, &header);
        buffer.put_i64(MAGIC_OFFSET, LOG_MAGIC.cast_signed());
        // Published last: a reader that sees the version sees the whole layout.
        buffer.put_i64_ordered(
            LAYOUT_VERSION_OFFSET,
            i64::from(LOG_LAYOUT_VERSION.compose()),
        );
    }

    /// Moves a log just initialised (and not yet handed to any client) to start at `term_id`,
    /// `term_offset` instead of position 0: the active term count and that term's tail say so,
    /// and the other partitions hold the two terms before it, as rotation expects. An exclusive
    /// publication that replays a recording starts where the recording's frames lie.
    pub fn start_at(&self, term_id: i32, term_offset: u32) {
        let term_count = term_id.wrapping_sub(self.initial_term_id());
        assert!(term_count >= 0, "a start term at or after the initial term");
        assert!(
            term_offset < self.term_length() && term_offset.is_multiple_of(32),
            "a start offset is a frame inside the term"
        );
        let index = index_by_term_count(i64::from(term_count));
        for step in 0..PARTITION_COUNT {
            let partition = (index + step) % PARTITION_COUNT;
            let (partition_term_id, offset) = match step {
                0 => (term_id, term_offset),
                _ => (
                    term_id.wrapping_sub(i32::try_from(PARTITION_COUNT - step).unwrap_or(0)),
                    0,
                ),
            };
            self.buffer.put_i64(
                TAIL_COUNTERS_OFFSET + partition * 8,
                pack_tail(partition_term_id, offset),
            );
        }
        self.buffer.put_i64_ordered(
            ACTIVE_TERM_COUNT_OFFSET,
            i64::from(term_count.cast_unsigned()),
        );
    }

    /// Checks magic and version, and returns the geometry the log declares.
    pub fn validate(&self, log_length_found: usize) -> Result<TermGeometry, LogBufferError> {
        let magic = self.buffer.get_i64(MAGIC_OFFSET).cast_unsigned();
        if magic != LOG_MAGIC {
            return Err(LogBufferError::Magic(magic));
        }
        let composed =
            u32::try_from(self.buffer.get_i64_volatile(LAYOUT_VERSION_OFFSET)).unwrap_or(u32::MAX);
        let found = SemanticVersion::decompose(composed).unwrap_or(SemanticVersion::new(255, 0, 0));
        if !found.is_compatible_with(LOG_LAYOUT_VERSION) {
            return Err(LogBufferError::Version { found });
        }
        let term_length = validate_log_term_length(self.term_length())?;
        let page_size = validate_page_size(usize::try_from(self.page_size()).unwrap_or(0))?;
        let expected = log_length(usize::try_from(term_length).unwrap_or(0), page_size);
        if expected != log_length_found {
            return Err(LogBufferError::Length {
                expected,
                actual: log_length_found,
            });
        }
        Ok(TermGeometry::new(term_length, self.initial_term_id())?)
    }

    /// The offset of the term length in the metadata, for finding a log's geometry.
    pub const TERM_LENGTH_OFFSET: usize = TERM_LENGTH_OFFSET;

    /// The offset of partition `index`'s tail counter in the metadata.
    pub fn tail_counter_offset(index: usize) -> usize {
        assert!(index < PARTITION_COUNT);
        TAIL_COUNTERS_OFFSET + index * 8
    }

    /// The metadata's buffer.
    pub fn buffer(&self) -> AtomicBuffer<'a> {
        self.buffer
    }

    /// The raw tail of partition `index` (acquire).
    pub fn raw_tail(&self, index: usize) -> i64 {
        self.buffer
            .get_i64_volatile(Self::tail_counter_offset(index))
    }

    /// How many terms the log has rotated through (acquire).
    pub fn active_term_count(&self) -> i32 {
        // Stored as a whole word so that its compare-and-set and its loads have one width.
        let word = self.buffer.get_i64_volatile(ACTIVE_TERM_COUNT_OFFSET);
        i32::from_le_bytes(word.to_le_bytes()[..4].try_into().unwrap_or([0; 4]))
    }

    /// Moves the log from term `term_id` (at `term_count`) to the next: sets the next
    /// partition's tail to `(term_id + 1, 0)` unless another publisher already did, then
    /// advances the active term count. Safe to race: every racer ends in the same state.
    pub fn rotate(&self, term_count: i32, term_id: i32) -> bool {
        let next_term_id = term_id.wrapping_add(1);
        let next_index = index_by_term_count(i64::from(term_count) + 1);
        let expected_term_id = next_term_id.wrapping_sub(3);
        let tail_offset = Self::tail_counter_offset(next_index);
        loop {
            let raw_tail = self.buffer.get_i64_volatile(tail_offset);
            if tail_term_id(raw_tail) != expected_term_id {
                break;
            }
            if self
                .buffer
                .compare_and_set_i64(tail_offset, raw_tail, pack_tail(next_term_id, 0))
            {
                break;
            }
        }
        self.compare_and_set_term_count(term_count, term_count.wrapping_add(1))
    }

    fn compare_and_set_term_count(&self, expected: i32, value: i32) -> bool {
        // The word at 24 holds the count in its low half and zero above.
        self.buffer.compare_and_set_i64(
            ACTIVE_TERM_COUNT_OFFSET,
            i64::from(expected.cast_unsigned()),
            i64::from(value.cast_unsigned()),
        )
    }

    /// The initial term id.
    pub fn initial_term_id(&self) -> i32 {
        self.buffer.get_i32(INITIAL_TERM_ID_OFFSET)
    }

    /// The term length.
    pub fn term_length(&self) -> u32 {
        self.buffer.get_i32(TERM_LENGTH_OFFSET).cast_unsigned()
    }

    /// The page size.
    pub fn page_size(&self) -> u32 {
        self.buffer.get_i32(PAGE_SIZE_OFFSET).cast_unsigned()
    }

    /// The MTU.
    pub fn mtu(&self) -> u32 {
        self.buffer.get_i32(MTU_OFFSET).cast_unsigned()
    }

    /// The publication window.
    pub fn publication_window(&self) -> u32 {
        self.buffer
            .get_i32(PUBLICATION_WINDOW_OFFSET)
            .cast_unsigned()
    }

    /// The registration that created the log.
    pub fn correlation_id(&self) -> i64 {
        self.buffer.get_i64(CORRELATION_ID_OFFSET)
    }

    /// The default DATA header: version, flags, type, session and stream ids.
    pub fn default_header(&self) -> [u8; DATA_HEADER_LENGTH] {
        let mut header = [0u8; DATA_HEADER_LENGTH];
        self.buffer.get_bytes(DEFAULT_HEADER_OFFSET, &mut header);
        header
    }

    /// Whether a subscriber is attached (acquire).
    pub fn is_connected(&self) -> bool {
        self.buffer.get_i32_volatile(IS_CONNECTED_OFFSET) == 1
    }

    /// Marks the log connected or not (release): the driver.
    pub fn set_connected(&self, connected: bool) {
        self.buffer
            .put_i32_ordered(IS_CONNECTED_OFFSET, i32::from(connected));
    }

    /// Transports attached (acquire).
    pub fn active_transport_count(&self) -> i32 {
        self.buffer.get_i32_volatile(ACTIVE_TRANSPORT_COUNT_OFFSET)
    }

    /// Sets the transports attached (release): the driver.
    pub fn set_active_transport_count(&self, count: i32) {
        self.buffer
            .put_i32_ordered(ACTIVE_TRANSPORT_COUNT_OFFSET, count);
    }

    /// The position below which the driver may be zeroing or publishers rewriting term bytes
    /// (acquire): a reader whose position is below it has been lapped.
    pub fn clean_position(&self) -> i64 {
        self.buffer.get_i64_volatile(CLEAN_POSITION_OFFSET)
    }

    /// Announces that the driver is about to clean term bytes below `position`: the driver,
    /// before it touches them. The release fence after the store keeps every cleaning store
    /// after it, so a reader that copied a cleaned byte and then fences (acquire) sees the
    /// announcement (pairs with the acquire fence in the checked term reader).
    pub fn announce_clean_position(&self, position: i64) {
        self.buffer.put_i64_ordered(CLEAN_POSITION_OFFSET, position);
        crate::sync::fence(crate::sync::Ordering::Release);
    }

    /// Counts an offer refused at the publisher limit (any publisher; an atomic add on a line of
    /// its own, only on the refused path).
    pub fn count_back_pressured(&self) {
        self.buffer.get_and_add_i64(BACK_PRESSURED_OFFSET, 1);
    }

    /// Counts an offer refused because no subscriber is connected.
    pub fn count_not_connected(&self) {
        self.buffer.get_and_add_i64(NOT_CONNECTED_OFFSET, 1);
    }

    /// Offers refused at the limit, and offers refused with nobody connected, so far.
    pub fn refused_offers(&self) -> (i64, i64) {
        (
            self.buffer.get_i64_volatile(BACK_PRESSURED_OFFSET),
            self.buffer.get_i64_volatile(NOT_CONNECTED_OFFSET),
        )
    }

    /// Where the stream ends, `i64::MAX` while it is open (acquire).
    pub fn end_of_stream_position(&self) -> i64 {
        self.buffer.get_i64_volatile(END_OF_STREAM_POSITION_OFFSET)
    }

    /// Sets where the stream ends (release): the driver, when the publication closes.
    pub fn set_end_of_stream_position(&self, position: i64) {
        self.buffer
            .put_i64_ordered(END_OF_STREAM_POSITION_OFFSET, position);
    }
}

/// Frames in a term start at multiples of this.
pub const ALIGNMENT: usize = FRAME_ALIGNMENT;

/// Zeroes `length` bytes of `term` at `offset` (both slot-aligned) at the slot widths, every
/// store relaxed; the caller publishes with an ordering of its own.
pub fn zero_slots(term: &AtomicBuffer<'_>, offset: usize, length: usize) {
    #[cfg(not(loom))]
    term.zero_in_slots(offset, length);
    // Under loom, the same widths through the model's checked accessors.
    #[cfg(loom)]
    for slot in (offset..offset + length).step_by(ALIGNMENT) {
        term.put_i32(slot, 0);
        term.put_i32(slot + 4, 0);
        term.put_i64(slot + 8, 0);
        term.put_i64(slot + 16, 0);
        term.put_i64(slot + 24, 0);
    }
}

/// Copies `destination.len()` bytes of `term` from `offset` (slot-aligned) at the slot widths,
/// every load relaxed: a copy that may race with the cleaner or a publisher and is validated
/// afterwards, never a data race. Reads whole slots; bytes past the copy's end in its last slot
/// are read and dropped.
pub fn copy_slots(term: &AtomicBuffer<'_>, offset: usize, destination: &mut [u8]) {
    debug_assert!(offset.is_multiple_of(ALIGNMENT));
    let mut slot_bytes = [0u8; ALIGNMENT];
    for (index, chunk) in destination.chunks_mut(ALIGNMENT).enumerate() {
        let slot = offset + index * ALIGNMENT;
        slot_bytes[..4].copy_from_slice(&term.get_i32(slot).to_le_bytes());
        slot_bytes[4..8].copy_from_slice(&term.get_i32(slot + 4).to_le_bytes());
        slot_bytes[8..16].copy_from_slice(&term.get_i64(slot + 8).to_le_bytes());
        slot_bytes[16..24].copy_from_slice(&term.get_i64(slot + 16).to_le_bytes());
        slot_bytes[24..].copy_from_slice(&term.get_i64(slot + 24).to_le_bytes());
        let length = chunk.len();
        chunk.copy_from_slice(&slot_bytes[..length]);
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;
    use crate::concurrent::atomic_buffer::AlignedBuffer;

    fn parameters() -> LogParameters {
        LogParameters {
            term_length: 65536,
            initial_term_id: 7,
            mtu: 1408,
            page_size: 4096,
            correlation_id: 99,
            session_id: 5,
            stream_id: 1001,
            publication_window: 32768,
        }
    }

    #[test]
    fn initialise_then_validate() {
        let memory = AlignedBuffer::new(LOG_META_DATA_LENGTH);
        let metadata = LogMetadata::new(memory.buffer());
        metadata.initialise(&parameters());
        let length = log_length(65536, 4096);
        assert_eq!(length, 3 * 65536 + 4096);
        let geometry = metadata.validate(length).unwrap();
        assert_eq!(geometry.initial_term_id(), 7);
        assert_eq!(tail_term_id(metadata.raw_tail(0)), 7);
        assert_eq!(tail_term_id(metadata.raw_tail(1)), 5);
        assert_eq!(tail_term_id(metadata.raw_tail(2)), 6);
        assert_eq!(metadata.default_header()[12..16], 5_i32.to_le_bytes());
        assert!(matches!(
            metadata.validate(length + 4096),
            Err(LogBufferError::Length { .. })
        ));
        memory.buffer().put_i64(MAGIC_OFFSET, 1);
        assert!(matches!(
            metadata.validate(length),
            Err(LogBufferError::Magic(1))
        ));
    }

    #[test]
    fn rotation_is_idempotent_under_races() {
        let memory = AlignedBuffer::new(LOG_META_DATA_LENGTH);
        let metadata = LogMetadata::new(memory.buffer());
        metadata.initialise(&parameters());
        assert!(metadata.rotate(0, 7));
        assert!(!metadata.rotate(0, 7), "a second racer finds the work done");
        assert_eq!(metadata.active_term_count(), 1);
        assert_eq!(metadata.raw_tail(1), pack_tail(8, 0));
        assert!(metadata.rotate(1, 8));
        assert!(metadata.rotate(2, 9));
        assert_eq!(
            metadata.raw_tail(0),
            pack_tail(10, 0),
            "partition 0 reused for term 10"
        );
    }

    #[test]
    fn tails_pack_and_clamp() {
        let raw = pack_tail(-3, 70000);
        assert_eq!(tail_term_id(raw), -3);
        assert_eq!(tail_term_offset(raw, 65536), 65536);
        assert_eq!(tail_term_offset(pack_tail(1, 64), 65536), 64);
        assert_eq!(index_by_term(7, 10), 0);
        assert_eq!(index_by_term(i32::MAX, i32::MIN), 1);
    }
}
