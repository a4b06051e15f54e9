//! Reassembling fragmented messages.
//!
//! A message longer than a frame's payload arrives as BEGIN, middle and END fragments of one
//! session. The assembler passes unfragmented messages straight through (zero copy) and gathers
//! fragments per session in a buffer it keeps and reuses, so after warm-up it allocates nothing.

use crate::logbuffer::frame_header::FragmentHeader;

/// Wraps a message handler so that it sees whole messages.
pub struct FragmentAssembler<F> {
    handler: F,
    sessions: Vec<(i32, Vec<u8>)>,
}

impl<F: FnMut(&[u8], &FragmentHeader)> FragmentAssembler<F> {
    /// Delivers whole messages to `handler`.
    pub fn new(handler: F) -> Self {
        Self {
            handler,
            sessions: Vec::new(),
        }
    }

    /// The fragment handler to give `poll`.
    pub fn on_fragment(&mut self, fragment: &[u8], header: &FragmentHeader) {
        if header.is_begin() && header.is_end() {
            (self.handler)(fragment, header);
            return;
        }
        let index = match self
            .sessions
            .iter()
            .position(|(session, _)| *session == header.session_id)
        {
            Some(index) => index,
            None => {
                self.sessions
                    .push((header.session_id, Vec::with_capacity(fragment.len() * 4)));
                self.sessions.len() - 1
            }
        };
        let buffer = &mut self.sessions[index].1;
        if header.is_begin() {
            buffer.clear();
            buffer.extend_from_slice(fragment);
            return;
        }
        if buffer.is_empty() {
            // A middle or end without its beginning (joined mid-message): drop it.
            return;
        }
        buffer.extend_from_slice(fragment);
        if header.is_end() {
            let message = std::mem::take(buffer);
            (self.handler)(&message, header);
            let buffer = &mut self.sessions[index].1;
            *buffer = message;
            buffer.clear();
        }
    }

    /// The wrapped handler.
    pub fn handler(&mut self) -> &mut F {
        &mut self.handler
    }
}
