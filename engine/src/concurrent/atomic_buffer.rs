//! A view of memory shared between threads or processes, with bounds-checked accessors whose
//! memory orderings are named at every call.
//!
//! Memory is a slice of 64-bit words (`AtomicU64`), so that a buffer over a heap allocation is
//! built without `unsafe` and a buffer over a memory-mapped file is built with one checked cast.
//! Orderings follow Agrona's vocabulary:
//!
//! | method | ordering | use |
//! |---|---|---|
//! | `get_*` / `put_*` | relaxed | fields owned by one thread at the time of access |
//! | `get_*_volatile` | acquire | read what another thread published |
//! | `put_*_ordered` | release | publish everything written before |
//! | `get_and_add_*`, `compare_and_set_*` | acquire-release | claim space, count |
//!
//! Rules every structure built on this keeps:
//! - a location is always accessed at one width: a 4-byte field is never read or written as
//!   part of an 8-byte access while another thread may touch it;
//! - byte copies (`put_bytes`, `get_bytes`, `set_memory`) touch only bytes that the protocol
//!   gives the caller exclusively (claimed and not yet published, or published and not yet
//!   released), so they never race with another thread's access.
//!
//! Out-of-bounds or misaligned offsets are bugs in the structure using the buffer, not bad
//! input, and panic.

#[cfg(not(loom))]
use std::sync::atomic::AtomicI32;

use crate::sync::{AtomicU64, Ordering};

/// Bytes in a word of the buffer.
pub const WORD: usize = 8;

/// Bytes in a slot of term memory: the frame alignment, and a frame header's length.
pub const SLOT: usize = 32;

/// A slot of term memory after its first 4 bytes, at the widths term memory is accessed at
/// (`logbuffer::descriptor`): a frame header's version, flags and type, then three 8-byte words.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct SlotRest {
    /// Bytes 4..8.
    pub at4: i32,
    /// Bytes 8..16.
    pub at8: i64,
    /// Bytes 16..24.
    pub at16: i64,
    /// Bytes 24..32.
    pub at24: i64,
}

/// A shared, bounds-checked view of 8-byte-aligned memory.
#[derive(Clone, Copy, Debug)]
pub struct AtomicBuffer<'a> {
    words: &'a [AtomicU64],
}

impl<'a> AtomicBuffer<'a> {
    /// A buffer over `words`.
    pub fn new(words: &'a [AtomicU64]) -> Self {
        Self { words }
    }

    /// A buffer over `length` bytes at `address`, typically a memory-mapped file.
    ///
    /// # Safety
    /// `address` must be 8-byte aligned, valid for reads and writes of `length` bytes for `'a`,
    /// and accessed by anyone else (other threads, other processes) only with the rules in the
    /// module documentation.
    #[cfg(not(loom))]
    pub unsafe fn from_raw_parts(address: *mut u8, length: usize) -> Self {
        assert!(
            address.align_offset(WORD) == 0,
            "shared memory must be 8-byte aligned"
        );
        assert!(
            length.is_multiple_of(WORD),
            "shared memory is a whole number of words"
        );
        // SAFETY: the caller guarantees the region is valid, aligned and shared only through
        // atomic or protocol-exclusive access; AtomicU64 has the size and alignment of u64 and
        // may alias memory that other processes also access atomically.
        let words =
            unsafe { std::slice::from_raw_parts(address.cast::<AtomicU64>(), length / WORD) };
        Self { words }
    }

    /// Bytes in the buffer.
    #[inline]
    pub fn capacity(&self) -> usize {
        self.words.len() * WORD
    }

    /// The sub-buffer of `length` bytes at `offset`; both are multiples of 8.
    pub fn view(&self, offset: usize, length: usize) -> AtomicBuffer<'a> {
        assert!(
            offset.is_multiple_of(WORD) && length.is_multiple_of(WORD),
            "views are whole words"
        );
        let words = self
            .words
            .get(offset / WORD..(offset + length) / WORD)
            .expect("view within the buffer");
        AtomicBuffer { words }
    }

    #[inline]
    fn word(&self, offset: usize) -> &'a AtomicU64 {
        assert!(
            offset.is_multiple_of(WORD),
            "8-byte fields are 8-byte aligned: {offset}"
        );
        match self.words.get(offset / WORD) {
            Some(word) => word,
            None => panic!(
                "offset {offset} is outside a buffer of {} bytes",
                self.capacity()
            ),
        }
    }

    /// Reads an `i64` (relaxed).
    #[inline]
    pub fn get_i64(&self, offset: usize) -> i64 {
        self.word(offset).load(Ordering::Relaxed).cast_signed()
    }

    /// Reads an `i64` (acquire): sees everything its publisher wrote before publishing it.
    #[inline]
    pub fn get_i64_volatile(&self, offset: usize) -> i64 {
        self.word(offset).load(Ordering::Acquire).cast_signed()
    }

    /// Writes an `i64` (relaxed).
    #[inline]
    pub fn put_i64(&self, offset: usize, value: i64) {
        self.word(offset)
            .store(value.cast_unsigned(), Ordering::Relaxed);
    }

    /// Writes an `i64` (release): publishes everything written before it.
    #[inline]
    pub fn put_i64_ordered(&self, offset: usize, value: i64) {
        self.word(offset)
            .store(value.cast_unsigned(), Ordering::Release);
    }

    /// Adds to an `i64` and returns the value before (acquire-release).
    #[inline]
    pub fn get_and_add_i64(&self, offset: usize, delta: i64) -> i64 {
        self.word(offset)
            .fetch_add(delta.cast_unsigned(), Ordering::AcqRel)
            .cast_signed()
    }

    /// Replaces an `i64` if it equals `expected` (acquire-release); returns whether it did.
    #[inline]
    pub fn compare_and_set_i64(&self, offset: usize, expected: i64, value: i64) -> bool {
        self.word(offset)
            .compare_exchange(
                expected.cast_unsigned(),
                value.cast_unsigned(),
                Ordering::AcqRel,
                Ordering::Acquire,
            )
            .is_ok()
    }

    /// Reads an `i32` (relaxed).
    #[inline]
    pub fn get_i32(&self, offset: usize) -> i32 {
        self.load_i32(offset, Ordering::Relaxed)
    }

    /// Reads an `i32` (acquire).
    #[inline]
    pub fn get_i32_volatile(&self, offset: usize) -> i32 {
        self.load_i32(offset, Ordering::Acquire)
    }

    /// Writes an `i32` (relaxed).
    #[inline]
    pub fn put_i32(&self, offset: usize, value: i32) {
        self.store_i32(offset, value, Ordering::Relaxed);
    }

    /// Writes an `i32` (release).
    #[inline]
    pub fn put_i32_ordered(&self, offset: usize, value: i32) {
        self.store_i32(offset, value, Ordering::Release);
    }

    /// Copies `source` to `offset` (8-aligned) as relaxed 8-byte stores, the last word completed
    /// with zeros: for memory that a reader may copy while it is written (a seqlock), where a
    /// plain copy would be a data race. The zeroed tail of the last word must be the caller's.
    pub fn put_words(&self, offset: usize, source: &[u8]) {
        let mut chunks = source.chunks_exact(WORD);
        let mut at = offset;
        for chunk in &mut chunks {
            let word = u64::from_le_bytes(chunk.try_into().unwrap_or([0; WORD]));
            self.word(at).store(word, Ordering::Relaxed);
            at += WORD;
        }
        let rest = chunks.remainder();
        if !rest.is_empty() {
            let mut word = [0u8; WORD];
            word[..rest.len()].copy_from_slice(rest);
            self.word(at)
                .store(u64::from_le_bytes(word), Ordering::Relaxed);
        }
    }

    /// Copies bytes at `offset` (8-aligned) into `destination` with relaxed 8-byte loads: the
    /// reading side of [`AtomicBuffer::put_words`]. What it copies may be torn if a writer was
    /// at work; the caller checks afterwards whether it was (a seqlock's validation).
    pub fn get_words(&self, offset: usize, destination: &mut [u8]) {
        let mut chunks = destination.chunks_exact_mut(WORD);
        let mut at = offset;
        for chunk in &mut chunks {
            chunk.copy_from_slice(&self.word(at).load(Ordering::Relaxed).to_le_bytes());
            at += WORD;
        }
        let rest = chunks.into_remainder();
        if !rest.is_empty() {
            let word = self.word(at).load(Ordering::Relaxed).to_le_bytes();
            let length = rest.len();
            rest.copy_from_slice(&word[..length]);
        }
    }

    fn check_range(&self, offset: usize, length: usize) {
        let end = offset.checked_add(length);
        assert!(
            end.is_some_and(|end| end <= self.capacity()),
            "bytes {offset}..+{length} are outside a buffer of {} bytes",
            self.capacity()
        );
    }
}

#[cfg(not(loom))]
impl AtomicBuffer<'_> {
    /// Zeroes `length` bytes at `offset` (both multiples of 32) with relaxed stores at the widths
    /// term memory is accessed at: in each 32-byte slot two 4-byte words, then three 8-byte
    /// words. The range is checked once, so the loop is stores only.
    pub fn zero_in_slots(&self, offset: usize, length: usize) {
        assert!(
            offset.is_multiple_of(32) && length.is_multiple_of(32),
            "slots are 32 bytes"
        );
        let words = self
            .words
            .get(offset / WORD..(offset + length) / WORD)
            .expect("slots within the buffer");
        for slot in words.chunks_exact(4) {
            // SAFETY: the word is valid, 8-byte aligned memory for the buffer's lifetime, so its
            // two 4-byte halves are valid and 4-byte aligned. The cleaner zeroes only bytes no
            // counted reader or publisher is using (below every tethered position, announced
            // first), so these stores race at most with a lapped copying reader, which reads
            // these halves as 4-byte atomics too and discards what it copied.
            let halves = unsafe {
                let base = slot[0].as_ptr().cast::<i32>();
                [AtomicI32::from_ptr(base), AtomicI32::from_ptr(base.add(1))]
            };
            halves[0].store(0, Ordering::Relaxed);
            halves[1].store(0, Ordering::Relaxed);
            slot[1].store(0, Ordering::Relaxed);
            slot[2].store(0, Ordering::Relaxed);
            slot[3].store(0, Ordering::Relaxed);
        }
    }

    /// The four words of the slot at `offset` (a multiple of 32), with one range check.
    #[inline]
    fn slot(&self, offset: usize) -> &[AtomicU64] {
        assert!(
            offset.is_multiple_of(SLOT),
            "slots are 32-byte aligned: {offset}"
        );
        match self.words.get(offset / WORD..offset / WORD + SLOT / WORD) {
            Some(words) => words,
            None => panic!(
                "slot {offset} is outside a buffer of {} bytes",
                self.capacity()
            ),
        }
    }

    /// The two 4-byte halves of a slot's first word.
    #[inline]
    fn halves(word: &AtomicU64) -> [&AtomicI32; 2] {
        // SAFETY: the word is valid, 8-byte aligned memory for the buffer's lifetime, so its two
        // 4-byte halves are valid and 4-byte aligned; term memory is accessed at these widths
        // only (one width per location), so no access of another width races with them.
        unsafe {
            let base = word.as_ptr().cast::<i32>();
            [AtomicI32::from_ptr(base), AtomicI32::from_ptr(base.add(1))]
        }
    }

    /// Writes a frame header slot at `offset` at the slot widths: `at0` first (release), then
    /// the rest (relaxed). One range check for the whole slot.
    #[inline]
    pub fn put_slot(&self, offset: usize, at0: i32, rest: SlotRest) {
        let slot = self.slot(offset);
        let [first, second] = Self::halves(&slot[0]);
        first.store(at0, Ordering::Release);
        second.store(rest.at4, Ordering::Relaxed);
        slot[1].store(rest.at8.cast_unsigned(), Ordering::Relaxed);
        slot[2].store(rest.at16.cast_unsigned(), Ordering::Relaxed);
        slot[3].store(rest.at24.cast_unsigned(), Ordering::Relaxed);
    }

    /// Writes a slot after its first 4 bytes (relaxed), one range check: a frame's header
    /// whose length the caller stores last (a frame received from the network).
    #[inline]
    pub fn put_slot_rest(&self, offset: usize, rest: SlotRest) {
        let slot = self.slot(offset);
        let [_, second] = Self::halves(&slot[0]);
        second.store(rest.at4, Ordering::Relaxed);
        slot[1].store(rest.at8.cast_unsigned(), Ordering::Relaxed);
        slot[2].store(rest.at16.cast_unsigned(), Ordering::Relaxed);
        slot[3].store(rest.at24.cast_unsigned(), Ordering::Relaxed);
    }

    /// Reads a slot after its first 4 bytes (relaxed): a published frame's header, after the
    /// acquire load of its length.
    #[inline]
    pub fn get_slot_rest(&self, offset: usize) -> SlotRest {
        let slot = self.slot(offset);
        let [_, second] = Self::halves(&slot[0]);
        SlotRest {
            at4: second.load(Ordering::Relaxed),
            at8: slot[1].load(Ordering::Relaxed).cast_signed(),
            at16: slot[2].load(Ordering::Relaxed).cast_signed(),
            at24: slot[3].load(Ordering::Relaxed).cast_signed(),
        }
    }

    #[inline]
    fn atomic_i32(&self, offset: usize) -> &AtomicI32 {
        assert!(
            offset.is_multiple_of(4),
            "4-byte fields are 4-byte aligned: {offset}"
        );
        let word = self.word(offset - offset % WORD);
        // SAFETY: the word is valid, 8-byte aligned memory for the buffer's lifetime, so each
        // of its 4-byte halves is valid and 4-byte aligned; the buffer's rule that a location
        // is accessed at one width keeps 4-byte and 8-byte accesses of it from racing.
        unsafe { AtomicI32::from_ptr(word.as_ptr().cast::<i32>().add((offset % WORD) / 4)) }
    }

    #[inline]
    fn load_i32(&self, offset: usize, ordering: Ordering) -> i32 {
        self.atomic_i32(offset).load(ordering)
    }

    #[inline]
    fn store_i32(&self, offset: usize, value: i32, ordering: Ordering) {
        self.atomic_i32(offset).store(value, ordering);
    }

    #[inline]
    fn base(&self) -> *mut u8 {
        self.words.as_ptr().cast::<u8>().cast_mut()
    }

    /// Copies `source` into the buffer at `offset`.
    #[inline]
    pub fn put_bytes(&self, offset: usize, source: &[u8]) {
        self.check_range(offset, source.len());
        // SAFETY: the range is inside the buffer (checked above) and the protocol gives the
        // caller these bytes exclusively (module rules), so no other access races with the copy;
        // AtomicU64's interior mutability permits writing through a shared reference.
        unsafe {
            std::ptr::copy_nonoverlapping(source.as_ptr(), self.base().add(offset), source.len());
        }
    }

    /// Copies bytes at `offset` into `destination`.
    #[inline]
    pub fn get_bytes(&self, offset: usize, destination: &mut [u8]) {
        self.check_range(offset, destination.len());
        // SAFETY: the range is inside the buffer (checked above) and published to the caller,
        // so no writer touches it during the copy.
        unsafe {
            std::ptr::copy_nonoverlapping(
                self.base().add(offset),
                destination.as_mut_ptr(),
                destination.len(),
            );
        }
    }

    /// Sets `length` bytes at `offset` to `value`.
    #[inline]
    pub fn set_memory(&self, offset: usize, length: usize, value: u8) {
        self.check_range(offset, length);
        // SAFETY: as for `put_bytes`: in bounds, and exclusively the caller's.
        unsafe { std::ptr::write_bytes(self.base().add(offset), value, length) }
    }

    /// Lends `length` bytes at `offset` to `read`.
    ///
    /// # Safety
    /// No other thread or process may write those bytes while `read` runs: the caller holds
    /// them under the module rules (published to it and not yet released).
    #[inline]
    pub unsafe fn with_bytes<R>(
        &self,
        offset: usize,
        length: usize,
        read: impl FnOnce(&[u8]) -> R,
    ) -> R {
        self.check_range(offset, length);
        // SAFETY: in bounds (checked above); the caller guarantees no writer touches the bytes
        // while they are lent, so a shared slice over them is sound.
        let bytes = unsafe { std::slice::from_raw_parts(self.base().add(offset), length) };
        read(bytes)
    }

    /// Lends `length` bytes at `offset` to `write`, to fill in place.
    ///
    /// # Safety
    /// No other thread or process may read or write those bytes while `write` runs: the caller
    /// has claimed them and not yet published them.
    #[inline]
    pub unsafe fn with_bytes_mut<R>(
        &self,
        offset: usize,
        length: usize,
        write: impl FnOnce(&mut [u8]) -> R,
    ) -> R {
        self.check_range(offset, length);
        // SAFETY: in bounds (checked above); the caller guarantees exclusive access for the
        // duration, and AtomicU64's interior mutability permits writing through `&self`.
        let bytes = unsafe { std::slice::from_raw_parts_mut(self.base().add(offset), length) };
        write(bytes)
    }
}

/// Under loom every access is a word-level atomic, so the model checker sees each one.
#[cfg(loom)]
impl AtomicBuffer<'_> {
    /// As for the non-loom version, through the model's checked accessors.
    pub fn put_slot(&self, offset: usize, at0: i32, rest: SlotRest) {
        assert!(
            offset.is_multiple_of(SLOT),
            "slots are 32-byte aligned: {offset}"
        );
        self.put_i32_ordered(offset, at0);
        self.put_i32(offset + 4, rest.at4);
        self.put_i64(offset + 8, rest.at8);
        self.put_i64(offset + 16, rest.at16);
        self.put_i64(offset + 24, rest.at24);
    }

    /// As for the non-loom version.
    pub fn put_slot_rest(&self, offset: usize, rest: SlotRest) {
        assert!(
            offset.is_multiple_of(SLOT),
            "slots are 32-byte aligned: {offset}"
        );
        self.put_i32(offset + 4, rest.at4);
        self.put_i64(offset + 8, rest.at8);
        self.put_i64(offset + 16, rest.at16);
        self.put_i64(offset + 24, rest.at24);
    }

    /// As for the non-loom version.
    pub fn get_slot_rest(&self, offset: usize) -> SlotRest {
        assert!(
            offset.is_multiple_of(SLOT),
            "slots are 32-byte aligned: {offset}"
        );
        SlotRest {
            at4: self.get_i32(offset + 4),
            at8: self.get_i64(offset + 8),
            at16: self.get_i64(offset + 16),
            at24: self.get_i64(offset + 24),
        }
    }

    fn load_i32(&self, offset: usize, ordering: Ordering) -> i32 {
        assert!(offset.is_multiple_of(4));
        let word = self.word(offset - offset % WORD).load(ordering);
        let shift = (offset % WORD) * 8;
        let [a, b, c, d, ..] = (word >> shift).to_le_bytes();
        i32::from_le_bytes([a, b, c, d])
    }

    fn store_i32(&self, offset: usize, value: i32, ordering: Ordering) {
        assert!(offset.is_multiple_of(4));
        let shift = (offset % WORD) * 8;
        let mask = 0xFFFF_FFFF_u64 << shift;
        let bits = u64::from(value.cast_unsigned()) << shift;
        self.update_word(offset - offset % WORD, ordering, |word| {
            (word & !mask) | bits
        });
    }

    fn update_word(&self, offset: usize, ordering: Ordering, update: impl Fn(u64) -> u64) {
        let word = self.word(offset);
        let mut current = word.load(Ordering::Relaxed);
        loop {
            match word.compare_exchange(current, update(current), ordering, Ordering::Relaxed) {
                Ok(_) => return,
                Err(actual) => current = actual,
            }
        }
    }

    fn put_byte(&self, offset: usize, value: u8) {
        let shift = (offset % WORD) * 8;
        let mask = 0xFF_u64 << shift;
        self.update_word(offset - offset % WORD, Ordering::Relaxed, |word| {
            (word & !mask) | (u64::from(value) << shift)
        });
    }

    fn get_byte(&self, offset: usize) -> u8 {
        let word = self.word(offset - offset % WORD).load(Ordering::Relaxed);
        word.to_le_bytes()[offset % WORD]
    }

    /// Writes `bytes` at `offset`: whole words with one store, partial words byte by byte.
    fn put_each(&self, offset: usize, length: usize, byte_at: impl Fn(usize) -> u8) {
        self.check_range(offset, length);
        let mut index = 0;
        while index < length {
            let at = offset + index;
            if at.is_multiple_of(WORD) && length - index >= WORD {
                let word: [u8; WORD] = core::array::from_fn(|byte| byte_at(index + byte));
                self.word(at)
                    .store(u64::from_le_bytes(word), Ordering::Relaxed);
                index += WORD;
            } else {
                self.put_byte(at, byte_at(index));
                index += 1;
            }
        }
    }

    /// Copies `source` into the buffer at `offset`.
    pub fn put_bytes(&self, offset: usize, source: &[u8]) {
        self.put_each(offset, source.len(), |index| source[index]);
    }

    /// Copies bytes at `offset` into `destination`.
    pub fn get_bytes(&self, offset: usize, destination: &mut [u8]) {
        self.check_range(offset, destination.len());
        let mut index = 0;
        while index < destination.len() {
            let at = offset + index;
            if at.is_multiple_of(WORD) && destination.len() - index >= WORD {
                let word = self.word(at).load(Ordering::Relaxed).to_le_bytes();
                destination[index..index + WORD].copy_from_slice(&word);
                index += WORD;
            } else {
                destination[index] = self.get_byte(at);
                index += 1;
            }
        }
    }

    /// Sets `length` bytes at `offset` to `value`.
    pub fn set_memory(&self, offset: usize, length: usize, value: u8) {
        self.put_each(offset, length, |_| value);
    }

    /// Lends a copy of `length` bytes at `offset` to `read`.
    ///
    /// # Safety
    /// As for the non-loom version; under loom every access is checked by the model anyway.
    pub unsafe fn with_bytes<R>(
        &self,
        offset: usize,
        length: usize,
        read: impl FnOnce(&[u8]) -> R,
    ) -> R {
        let mut copy = vec![0u8; length];
        self.get_bytes(offset, &mut copy);
        read(&copy)
    }

    /// Lends a scratch copy of `length` bytes at `offset` to `write`, then stores it back.
    ///
    /// # Safety
    /// As for the non-loom version.
    pub unsafe fn with_bytes_mut<R>(
        &self,
        offset: usize,
        length: usize,
        write: impl FnOnce(&mut [u8]) -> R,
    ) -> R {
        let mut copy = vec![0u8; length];
        self.get_bytes(offset, &mut copy);
        let result = write(&mut copy);
        self.put_bytes(offset, &copy);
        result
    }
}

/// Heap memory for an [`AtomicBuffer`]: embedded structures and tests.
#[derive(Debug)]
pub struct AlignedBuffer {
    words: Box<[AtomicU64]>,
}

impl AlignedBuffer {
    /// Zeroed memory of `length` bytes, a multiple of 8.
    pub fn new(length: usize) -> Self {
        assert!(
            length.is_multiple_of(WORD),
            "a buffer is a whole number of words"
        );
        Self {
            words: (0..length / WORD).map(|_| AtomicU64::new(0)).collect(),
        }
    }

    /// The buffer over this memory.
    pub fn buffer(&self) -> AtomicBuffer<'_> {
        AtomicBuffer::new(&self.words)
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;

    #[test]
    fn widths_and_bytes_share_one_little_endian_memory() {
        let memory = AlignedBuffer::new(32);
        let buffer = memory.buffer();
        buffer.put_i64(0, 0x0102_0304_0506_0708);
        assert_eq!(buffer.get_i32(0), 0x0506_0708);
        assert_eq!(buffer.get_i32(4), 0x0102_0304);
        buffer.put_i32_ordered(8, -1);
        buffer.put_bytes(12, &[1, 2, 3, 4]);
        let mut bytes = [0u8; 8];
        buffer.get_bytes(8, &mut bytes);
        assert_eq!(bytes, [0xFF, 0xFF, 0xFF, 0xFF, 1, 2, 3, 4]);
        assert_eq!(buffer.get_and_add_i64(16, 5), 0);
        assert!(buffer.compare_and_set_i64(16, 5, 9));
        assert!(!buffer.compare_and_set_i64(16, 5, 10));
        assert_eq!(buffer.get_i64_volatile(16), 9);
        buffer.set_memory(8, 8, 0);
        assert_eq!(buffer.get_i64(8), 0);
        assert_eq!(buffer.view(16, 16).get_i64(0), 9);
        // SAFETY: no other thread uses this buffer.
        let lent = unsafe { buffer.with_bytes(0, 2, |bytes| bytes.to_vec()) };
        assert_eq!(lent, [8, 7]);
        // SAFETY: as above.
        unsafe { buffer.with_bytes_mut(0, 1, |bytes| bytes[0] = 9) };
        assert_eq!(buffer.get_i32(0) & 0xFF, 9);
    }

    #[test]
    #[should_panic(expected = "outside a buffer")]
    fn out_of_bounds_is_a_bug_that_panics() {
        AlignedBuffer::new(16).buffer().get_i64(16);
    }

    #[test]
    #[should_panic(expected = "outside a buffer")]
    fn byte_ranges_are_checked() {
        AlignedBuffer::new(16).buffer().put_bytes(12, &[0; 8]);
    }
}
