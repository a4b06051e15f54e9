//! Counters: named 64-bit values that anyone can read (`tern stat`) and only their owner writes.
//!
//! Metadata and values live in two buffers, so that the values that change all the time do not
//! share cache lines with the text that never does:
//!
//! ```text
//! metadata record (512 bytes), counter id = record index:
//!   0  state        i32   0 unused, 1 allocated, -1 reclaimed (reusable after its deadline)
//!   4  type_id      i32   what kind of counter (a registry the driver defines)
//!   8  reuse_deadline_ms i64   when a reclaimed id may be allocated again
//!  16  key          112 bytes, for tools to match on (stream id, session id, ...)
//! 128  label_length i32
//! 132  label        380 bytes of UTF-8
//!
//! value record (128 bytes, its own pair of cache lines):
//!   0  value            i64   written by the owner only
//!   8  registration_id  i64   the resource the counter belongs to
//!  16  owner_id         i64   the client that owns it (driver-owned: 0)
//!  24  reference_id     i64   another resource it refers to (or 0)
//! ```
//!
//! Only the [`CountersManager`] (the driver's conductor) allocates and frees. It writes a
//! record's metadata and zeroes its value before it stores the state `allocated` (release), so a
//! reader that sees the state (acquire) sees the whole record. A freed counter is *reclaimed*
//! and its id held back until a deadline passes, so a reader that cached the id does not read a
//! stranger's value in the meantime.

use super::atomic_buffer::AtomicBuffer;

/// Bytes in a metadata record.
pub const METADATA_LENGTH: usize = 512;
/// Bytes in a value record.
pub const VALUE_LENGTH: usize = 128;
/// Bytes of key.
pub const KEY_MAX_LENGTH: usize = 112;
/// Bytes of label.
pub const LABEL_MAX_LENGTH: usize = 380;

const STATE_OFFSET: usize = 0;
const TYPE_ID_OFFSET: usize = 4;
const REUSE_DEADLINE_OFFSET: usize = 8;
const KEY_OFFSET: usize = 16;
const LABEL_LENGTH_OFFSET: usize = 128;
const LABEL_OFFSET: usize = 132;
const _: () = assert!(KEY_OFFSET + KEY_MAX_LENGTH == LABEL_LENGTH_OFFSET);
const _: () = assert!(LABEL_OFFSET + LABEL_MAX_LENGTH == METADATA_LENGTH);

const VALUE_OFFSET: usize = 0;
const REGISTRATION_ID_OFFSET: usize = 8;
const OWNER_ID_OFFSET: usize = 16;
const REFERENCE_ID_OFFSET: usize = 24;

const STATE_ALLOCATED: i32 = 1;
const STATE_RECLAIMED: i32 = -1;

/// The state of a counter id.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CounterState {
    /// Never used.
    Unused,
    /// In use.
    Allocated,
    /// Freed; reusable after its deadline.
    Reclaimed,
}

/// Why counters could not be used or allocated.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum CountersError {
    /// Every id is in use or held back.
    #[error("all {0} counters are in use")]
    Full(usize),
    /// The key is longer than a record holds.
    #[error("a counter key of {0} bytes exceeds {KEY_MAX_LENGTH}")]
    KeyTooLong(usize),
    /// The buffers do not describe the same number of counters.
    #[error(
        "a metadata buffer of {metadata} bytes does not match a values buffer of {values} bytes"
    )]
    MismatchedBuffers {
        /// Metadata bytes.
        metadata: usize,
        /// Value bytes.
        values: usize,
    },
    /// The id is not an allocated counter.
    #[error("counter {0} is not allocated")]
    NotAllocated(i32),
}

/// Reads counters: anyone, any process.
#[derive(Debug, Clone, Copy)]
pub struct CountersReader<'a> {
    metadata: AtomicBuffer<'a>,
    values: AtomicBuffer<'a>,
    max_counters: usize,
}

impl<'a> CountersReader<'a> {
    /// Wraps the two buffers; the metadata holds 4 × the value bytes (512 against 128 per id).
    pub fn new(
        metadata: AtomicBuffer<'a>,
        values: AtomicBuffer<'a>,
    ) -> Result<Self, CountersError> {
        let max_counters = values.capacity() / VALUE_LENGTH;
        if metadata.capacity() / METADATA_LENGTH != max_counters {
            return Err(CountersError::MismatchedBuffers {
                metadata: metadata.capacity(),
                values: values.capacity(),
            });
        }
        Ok(Self {
            metadata,
            values,
            max_counters,
        })
    }

    /// How many counter ids the buffers hold.
    pub fn max_counters(&self) -> usize {
        self.max_counters
    }

    fn metadata_offset(&self, id: i32) -> Option<usize> {
        let index = usize::try_from(id)
            .ok()
            .filter(|index| *index < self.max_counters)?;
        Some(index * METADATA_LENGTH)
    }

    fn value_offset(&self, id: i32) -> Option<usize> {
        let index = usize::try_from(id)
            .ok()
            .filter(|index| *index < self.max_counters)?;
        Some(index * VALUE_LENGTH)
    }

    /// The state of `id`; ids outside the buffers read as unused.
    pub fn state(&self, id: i32) -> CounterState {
        let Some(offset) = self.metadata_offset(id) else {
            return CounterState::Unused;
        };
        // Pairs with the release store of the state in `CountersManager::allocate`.
        match self.metadata.get_i32_volatile(offset + STATE_OFFSET) {
            STATE_ALLOCATED => CounterState::Allocated,
            STATE_RECLAIMED => CounterState::Reclaimed,
            _ => CounterState::Unused,
        }
    }

    /// The current value of `id` (acquire), or 0 for an id outside the buffers.
    pub fn value(&self, id: i32) -> i64 {
        self.value_offset(id).map_or(0, |offset| {
            self.values.get_i64_volatile(offset + VALUE_OFFSET)
        })
    }

    /// The writer of counter `id`'s value, for the client `owner_id` that owns it (the driver
    /// allocated it for that client, such as a subscriber's position or a counter the client
    /// added). `None` unless it is allocated and owned by `owner_id`: a client never gets a
    /// writer for the driver's counters (owner 0) or another client's.
    pub fn owned_counter(&self, id: i32, owner_id: i64) -> Option<Counter<'a>> {
        let offset = self.value_offset(id)?;
        if owner_id == 0
            || self.state(id) != CounterState::Allocated
            || self.values.get_i64(offset + OWNER_ID_OFFSET) != owner_id
        {
            return None;
        }
        Some(Counter {
            values: self.values,
            offset,
            id,
        })
    }

    /// A reader of counter `id`'s value (a publisher's limit, say). `None` unless allocated.
    pub fn counter_reader(&self, id: i32) -> Option<CounterReader<'a>> {
        if self.state(id) != CounterState::Allocated {
            return None;
        }
        Some(CounterReader {
            values: self.values,
            offset: self.value_offset(id)?,
        })
    }

    /// Visits every allocated counter in id order: `(id, type_id, key, label)`. A label that is
    /// not valid UTF-8 (a writer bug or a torn read of a counter being freed) reads as empty.
    pub fn for_each(&self, mut visit: impl FnMut(CounterInfo<'_>)) {
        let mut key = [0u8; KEY_MAX_LENGTH];
        let mut label = [0u8; LABEL_MAX_LENGTH];
        for index in 0..self.max_counters {
            let id = i32::try_from(index).expect("counter ids fit i32");
            if self.state(id) != CounterState::Allocated {
                // Unused records follow only unused ones: nothing beyond was ever allocated.
                if self.state(id) == CounterState::Unused {
                    break;
                }
                continue;
            }
            let offset = index * METADATA_LENGTH;
            self.metadata.get_bytes(offset + KEY_OFFSET, &mut key);
            let label_length = usize::try_from(self.metadata.get_i32(offset + LABEL_LENGTH_OFFSET))
                .unwrap_or(0)
                .min(LABEL_MAX_LENGTH);
            self.metadata
                .get_bytes(offset + LABEL_OFFSET, &mut label[..label_length]);
            let value_offset = index * VALUE_LENGTH;
            visit(CounterInfo {
                id,
                type_id: self.metadata.get_i32(offset + TYPE_ID_OFFSET),
                key: &key,
                label: std::str::from_utf8(&label[..label_length]).unwrap_or(""),
                value: self.values.get_i64_volatile(value_offset + VALUE_OFFSET),
                registration_id: self.values.get_i64(value_offset + REGISTRATION_ID_OFFSET),
                owner_id: self.values.get_i64(value_offset + OWNER_ID_OFFSET),
                reference_id: self.values.get_i64(value_offset + REFERENCE_ID_OFFSET),
            });
        }
    }
}

/// What a reader sees of one counter.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CounterInfo<'k> {
    /// Its id.
    pub id: i32,
    /// Its kind.
    pub type_id: i32,
    /// Its key bytes.
    pub key: &'k [u8; KEY_MAX_LENGTH],
    /// Its label.
    pub label: &'k str,
    /// Its value when visited.
    pub value: i64,
    /// The resource it belongs to.
    pub registration_id: i64,
    /// The client that owns it.
    pub owner_id: i64,
    /// Another resource it refers to.
    pub reference_id: i64,
}

/// Allocates and frees counters: the driver's conductor alone.
#[derive(Debug)]
pub struct CountersManager<'a> {
    reader: CountersReader<'a>,
    reuse_timeout_ms: i64,
    high_water: usize,
}

/// What a new counter is.
#[derive(Debug, Clone, Copy)]
pub struct CounterSpec<'s> {
    /// Its kind.
    pub type_id: i32,
    /// Key bytes, at most [`KEY_MAX_LENGTH`].
    pub key: &'s [u8],
    /// Its label; cut at [`LABEL_MAX_LENGTH`] bytes on a character boundary.
    pub label: &'s str,
    /// The resource it belongs to.
    pub registration_id: i64,
    /// The client that owns it.
    pub owner_id: i64,
    /// Another resource it refers to.
    pub reference_id: i64,
}

impl<'a> CountersManager<'a> {
    /// Manages counters in the two buffers; a freed id is held back for `reuse_timeout_ms`.
    pub fn new(
        metadata: AtomicBuffer<'a>,
        values: AtomicBuffer<'a>,
        reuse_timeout_ms: i64,
    ) -> Result<Self, CountersError> {
        Ok(Self {
            reader: CountersReader::new(metadata, values)?,
            reuse_timeout_ms,
            high_water: 0,
        })
    }

    /// The reader over the same buffers.
    pub fn reader(&self) -> CountersReader<'a> {
        self.reader
    }

    /// Allocates a counter at `now_ms` and returns its id.
    pub fn allocate(
        &mut self,
        spec: &CounterSpec<'_>,
        now_ms: i64,
    ) -> Result<Counter<'a>, CountersError> {
        if spec.key.len() > KEY_MAX_LENGTH {
            return Err(CountersError::KeyTooLong(spec.key.len()));
        }
        let index = self.free_index(now_ms)?;
        let id = i32::try_from(index).expect("counter ids fit i32");
        let metadata = &self.reader.metadata;
        let offset = index * METADATA_LENGTH;
        metadata.put_i32(offset + TYPE_ID_OFFSET, spec.type_id);
        metadata.put_i64(offset + REUSE_DEADLINE_OFFSET, 0);
        metadata.set_memory(offset + KEY_OFFSET, KEY_MAX_LENGTH, 0);
        metadata.put_bytes(offset + KEY_OFFSET, spec.key);
        let label = super::truncate_utf8(spec.label, LABEL_MAX_LENGTH);
        metadata.put_i32(
            offset + LABEL_LENGTH_OFFSET,
            i32::try_from(label.len()).expect("label below 380 bytes"),
        );
        metadata.set_memory(offset + LABEL_OFFSET, LABEL_MAX_LENGTH, 0);
        metadata.put_bytes(offset + LABEL_OFFSET, label.as_bytes());
        let values = &self.reader.values;
        let value_offset = index * VALUE_LENGTH;
        values.set_memory(value_offset, VALUE_LENGTH, 0);
        values.put_i64(value_offset + REGISTRATION_ID_OFFSET, spec.registration_id);
        values.put_i64(value_offset + OWNER_ID_OFFSET, spec.owner_id);
        values.put_i64(value_offset + REFERENCE_ID_OFFSET, spec.reference_id);
        // Publishes the record: pairs with the acquire load in `CountersReader::state`.
        metadata.put_i32_ordered(offset + STATE_OFFSET, STATE_ALLOCATED);
        Ok(Counter {
            values: *values,
            offset: value_offset,
            id,
        })
    }

    fn free_index(&mut self, now_ms: i64) -> Result<usize, CountersError> {
        let metadata = &self.reader.metadata;
        for index in 0..self.high_water {
            let offset = index * METADATA_LENGTH;
            if metadata.get_i32(offset + STATE_OFFSET) == STATE_RECLAIMED
                && now_ms >= metadata.get_i64(offset + REUSE_DEADLINE_OFFSET)
            {
                return Ok(index);
            }
        }
        if self.high_water < self.reader.max_counters {
            self.high_water += 1;
            return Ok(self.high_water - 1);
        }
        Err(CountersError::Full(self.reader.max_counters))
    }

    /// Frees `id` at `now_ms`; the id is reused only after the reuse timeout.
    pub fn free(&mut self, id: i32, now_ms: i64) -> Result<(), CountersError> {
        if self.reader.state(id) != CounterState::Allocated {
            return Err(CountersError::NotAllocated(id));
        }
        let offset = self
            .reader
            .metadata_offset(id)
            .expect("allocated ids are in range");
        self.reader.metadata.put_i64(
            offset + REUSE_DEADLINE_OFFSET,
            now_ms + self.reuse_timeout_ms,
        );
        self.reader
            .metadata
            .put_i32_ordered(offset + STATE_OFFSET, STATE_RECLAIMED);
        Ok(())
    }

    /// The writer of an allocated counter's value, for its owner.
    pub fn counter(&self, id: i32) -> Result<Counter<'a>, CountersError> {
        if self.reader.state(id) != CounterState::Allocated {
            return Err(CountersError::NotAllocated(id));
        }
        Ok(Counter {
            values: self.reader.values,
            offset: self
                .reader
                .value_offset(id)
                .expect("allocated ids are in range"),
            id,
        })
    }
}

/// A counter's value, for reading only.
#[derive(Debug, Clone, Copy)]
pub struct CounterReader<'a> {
    values: AtomicBuffer<'a>,
    offset: usize,
}

impl CounterReader<'_> {
    /// Reads the value (acquire).
    #[inline]
    pub fn get(&self) -> i64 {
        self.values.get_i64_volatile(self.offset + VALUE_OFFSET)
    }
}

/// A counter's value, for its owner to write and anyone to read.
#[derive(Debug, Clone, Copy)]
pub struct Counter<'a> {
    values: AtomicBuffer<'a>,
    offset: usize,
    id: i32,
}

impl Counter<'_> {
    /// The counter's id.
    pub fn id(&self) -> i32 {
        self.id
    }

    /// Reads the value (acquire).
    #[inline]
    pub fn get(&self) -> i64 {
        self.values.get_i64_volatile(self.offset + VALUE_OFFSET)
    }

    /// Writes the value (release): the owner only.
    #[inline]
    pub fn set(&self, value: i64) {
        self.values
            .put_i64_ordered(self.offset + VALUE_OFFSET, value);
    }

    /// Adds to the value and returns the value before; safe from any thread.
    #[inline]
    pub fn increment(&self, delta: i64) -> i64 {
        self.values
            .get_and_add_i64(self.offset + VALUE_OFFSET, delta)
    }

    /// Raises the value to `value` if it is higher (owner only): for positions.
    #[inline]
    pub fn propose_max(&self, value: i64) -> bool {
        if value > self.values.get_i64(self.offset + VALUE_OFFSET) {
            self.set(value);
            return true;
        }
        false
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;
    use crate::concurrent::atomic_buffer::AlignedBuffer;

    fn spec<'s>(label: &'s str, key: &'s [u8]) -> CounterSpec<'s> {
        CounterSpec {
            type_id: 7,
            key,
            label,
            registration_id: 11,
            owner_id: 12,
            reference_id: 13,
        }
    }

    #[test]
    fn allocate_write_read_free_and_reuse_after_the_deadline() {
        let metadata = AlignedBuffer::new(4 * METADATA_LENGTH);
        let values = AlignedBuffer::new(4 * VALUE_LENGTH);
        let mut manager = CountersManager::new(metadata.buffer(), values.buffer(), 1000).unwrap();
        let bytes_sent = manager.allocate(&spec("bytes sent", b"k1"), 0).unwrap();
        let naks = manager.allocate(&spec("naks", b""), 0).unwrap();
        bytes_sent.increment(5);
        naks.set(3);
        assert!(naks.propose_max(9));
        assert!(!naks.propose_max(4));

        let reader = manager.reader();
        let mut seen = Vec::new();
        reader.for_each(|info| {
            seen.push((info.id, info.label.to_owned(), info.value, info.owner_id))
        });
        assert_eq!(
            seen,
            [(0, "bytes sent".into(), 5, 12), (1, "naks".into(), 9, 12)]
        );

        manager.free(0, 100).unwrap();
        assert_eq!(reader.state(0), CounterState::Reclaimed);
        assert!(manager.free(0, 100).is_err());
        // Held back until 1100: the next id is fresh.
        assert_eq!(manager.allocate(&spec("c", b""), 500).unwrap().id(), 2);
        assert_eq!(manager.allocate(&spec("d", b""), 1100).unwrap().id(), 0);
        assert_eq!(reader.value(0), 0, "a reused counter starts at zero");
        manager.allocate(&spec("e", b""), 1100).unwrap();
        assert_eq!(
            manager.allocate(&spec("f", b""), 1100).unwrap_err(),
            CountersError::Full(4)
        );
    }

    #[test]
    fn limits_and_mismatches_are_errors() {
        let metadata = AlignedBuffer::new(2 * METADATA_LENGTH);
        let values = AlignedBuffer::new(4 * VALUE_LENGTH);
        assert!(CountersReader::new(metadata.buffer(), values.buffer()).is_err());
        let values = AlignedBuffer::new(2 * VALUE_LENGTH);
        let mut manager = CountersManager::new(metadata.buffer(), values.buffer(), 0).unwrap();
        assert_eq!(
            manager.allocate(&spec("x", &[0; 113]), 0).unwrap_err(),
            CountersError::KeyTooLong(113)
        );
        let long = "é".repeat(300);
        let counter = manager.allocate(&spec(&long, b""), 0).unwrap();
        let mut label_length = 0;
        manager
            .reader()
            .for_each(|info| label_length = info.label.len());
        assert_eq!(label_length, 380);
        assert_eq!(manager.reader().value(counter.id()), 0);
        assert_eq!(manager.reader().value(99), 0);
        assert!(manager.counter(1).is_err());
    }
}
