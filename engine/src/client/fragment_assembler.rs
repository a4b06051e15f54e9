//! Reassembling fragmented messages.
//!
//! A message longer than a frame's payload arrives as BEGIN, middle and END fragments of one
//! session. The assembler passes unfragmented messages straight through (zero copy) and gathers
//! fragments per session in a buffer it keeps and reuses, so after warm-up it allocates nothing.
//!
//! Its memory is bounded: at most [`AssemblerLimits::sessions`] sessions are assembled at once,
//! each up to [`AssemblerLimits::message_length`] bytes. A message that grows past the length
//! limit is dropped whole (never delivered cut short), and a message that begins while every
//! session slot holds a partly assembled message is dropped; both are counted
//! ([`FragmentAssembler::dropped_messages`]). A slot is reused by any session once its message
//! is complete, so sessions that come and go do not grow the table.

use crate::logbuffer::frame_header::FragmentHeader;

/// Limits on what an assembler holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AssemblerLimits {
    /// Sessions assembled at once.
    pub sessions: usize,
    /// The longest message assembled, in bytes.
    pub message_length: usize,
}

impl Default for AssemblerLimits {
    /// 64 sessions of up to 16 MiB (the longest message a log of the largest term carries).
    fn default() -> Self {
        Self {
            sessions: 64,
            message_length: 16 * 1024 * 1024,
        }
    }
}

/// A session's partly assembled message.
struct Slot {
    session_id: i32,
    buffer: Vec<u8>,
    /// Whether a BEGIN was seen and the message is still wanted.
    assembling: bool,
}

/// Wraps a message handler so that it sees whole messages.
pub struct FragmentAssembler<F> {
    handler: F,
    assembler: MessageAssembler,
}

impl<F: FnMut(&[u8], &FragmentHeader)> FragmentAssembler<F> {
    /// Delivers whole messages to `handler`, within the default limits.
    pub fn new(handler: F) -> Self {
        Self::with_limits(handler, AssemblerLimits::default())
    }

    /// Delivers whole messages to `handler`, within `limits`.
    pub fn with_limits(handler: F, limits: AssemblerLimits) -> Self {
        Self {
            handler,
            assembler: MessageAssembler::with_limits(limits),
        }
    }

    /// Messages dropped for breaking a limit.
    pub fn dropped_messages(&self) -> u64 {
        self.assembler.dropped_messages()
    }

    /// The fragment handler to give `poll`.
    pub fn on_fragment(&mut self, fragment: &[u8], header: &FragmentHeader) {
        self.assembler
            .on_fragment(fragment, header, &mut self.handler);
    }

    /// The wrapped handler.
    pub fn handler(&mut self) -> &mut F {
        &mut self.handler
    }
}

/// The assembling state alone, for a reader that hands each poll its own handler (one that
/// borrows the reader's state for that poll), where [`FragmentAssembler`] keeps one handler.
pub struct MessageAssembler {
    limits: AssemblerLimits,
    slots: Vec<Slot>,
    dropped_messages: u64,
}

impl MessageAssembler {
    /// An assembler within `limits`.
    pub fn with_limits(limits: AssemblerLimits) -> Self {
        assert!(limits.sessions > 0, "an assembler needs a session slot");
        Self {
            limits,
            slots: Vec::new(),
            dropped_messages: 0,
        }
    }

    /// Messages dropped for breaking a limit.
    pub fn dropped_messages(&self) -> u64 {
        self.dropped_messages
    }

    /// Takes a fragment; a whole message (the fragment itself when unfragmented) goes to
    /// `handler`.
    pub fn on_fragment(
        &mut self,
        fragment: &[u8],
        header: &FragmentHeader,
        handler: &mut impl FnMut(&[u8], &FragmentHeader),
    ) {
        if header.is_begin() && header.is_end() {
            handler(fragment, header);
            return;
        }
        let index = match self.slot_of(header.session_id, header.is_begin()) {
            Some(index) => index,
            None => {
                if header.is_begin() {
                    self.dropped_messages += 1;
                }
                return;
            }
        };
        let slot = &mut self.slots[index];
        if header.is_begin() {
            slot.buffer.clear();
            slot.assembling = true;
        } else if !slot.assembling {
            // A middle or end without its beginning (joined mid-message, or dropped): skip it.
            return;
        }
        if slot.buffer.len() + fragment.len() > self.limits.message_length {
            slot.assembling = false;
            slot.buffer.clear();
            self.dropped_messages += 1;
            return;
        }
        slot.buffer.extend_from_slice(fragment);
        if header.is_end() {
            slot.assembling = false;
            handler(&slot.buffer, header);
            slot.buffer.clear();
        }
    }

    /// The slot of `session_id`; for a BEGIN, a free slot (or a new one within the limit).
    fn slot_of(&mut self, session_id: i32, begin: bool) -> Option<usize> {
        if let Some(index) = self
            .slots
            .iter()
            .position(|slot| slot.session_id == session_id)
        {
            return Some(index);
        }
        if !begin {
            return None;
        }
        if let Some(index) = self.slots.iter().position(|slot| !slot.assembling) {
            self.slots[index].session_id = session_id;
            return Some(index);
        }
        if self.slots.len() < self.limits.sessions {
            self.slots.push(Slot {
                session_id,
                buffer: Vec::new(),
                assembling: false,
            });
            return Some(self.slots.len() - 1);
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tern_codec::frame::data_flags;

    fn header(session_id: i32, flags: u8) -> FragmentHeader {
        FragmentHeader {
            frame_length: 0,
            flags,
            term_offset: 0,
            session_id,
            stream_id: 1,
            term_id: 0,
            reserved_value: 0,
            position: 0,
        }
    }

    #[test]
    fn memory_is_bounded_by_sessions_and_message_length() {
        let mut delivered = Vec::new();
        let limits = AssemblerLimits {
            sessions: 2,
            message_length: 8,
        };
        let mut assembler = FragmentAssembler::with_limits(
            |message: &[u8], _: &_| delivered.push(message.to_vec()),
            limits,
        );
        // Two sessions mid-message fill the table; a third session's message is dropped.
        assembler.on_fragment(b"ab", &header(1, data_flags::BEGIN));
        assembler.on_fragment(b"cd", &header(2, data_flags::BEGIN));
        assembler.on_fragment(b"xx", &header(3, data_flags::BEGIN));
        assembler.on_fragment(b"yy", &header(3, data_flags::END));
        assert_eq!(assembler.dropped_messages(), 1);
        // A message past the length limit is dropped whole, never cut short.
        assembler.on_fragment(b"efghijk", &header(2, 0));
        assembler.on_fragment(b"l", &header(2, data_flags::END));
        assert_eq!(assembler.dropped_messages(), 2);
        assembler.on_fragment(b"ef", &header(1, data_flags::END));
        // Session 1's slot is free again: a new session takes it instead of growing the table.
        assembler.on_fragment(b"12", &header(4, data_flags::BEGIN));
        assembler.on_fragment(b"34", &header(4, data_flags::END));
        assert_eq!(assembler.assembler.slots.len(), 2);
        assert!(
            assembler
                .assembler
                .slots
                .iter()
                .all(|slot| slot.buffer.capacity() <= 8)
        );
        drop(assembler);
        assert_eq!(delivered, [b"abef".to_vec(), b"1234".to_vec()]);
    }
}
