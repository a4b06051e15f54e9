//! One connected archive client: its response publication and the responses waiting to go.
//!
//! Each session answers on an exclusive publication of its own, even when clients share a
//! response channel: a new publication announces itself (SETUP) to the client's receiver and
//! connects only once that receiver has an image of it, so no response is sent into a stream
//! the client cannot read yet (a shared publication, already connected to another client's
//! image, would send the first responses before the new client could hear them).
//!
//! Responses are encoded when a request is handled and offered at once; one the publication
//! does not take (back-pressure, not connected yet) waits in the session's queue, in order, and
//! is offered again each duty cycle. A queue past [`PENDING_MAX`] means the client stopped
//! reading: the session is closed rather than let it hold the archive's memory. A session whose
//! publication has not connected within [`CONNECT_TIMEOUT`], or has lost its subscriber for as
//! long, is closed too.
//!
//! Memory and threads: owned by the archive agent, on its thread.

use std::collections::VecDeque;
use std::time::Duration;

use tern_engine::client::{ExclusivePublication, OfferResult};

use crate::control_protocol::{RecordingSignal, ResponseCode, control_response, recording_signal};

/// The most responses one session may have waiting.
pub const PENDING_MAX: usize = 4096;
/// How long a session may be without a connected client.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// A connected client.
#[derive(Debug)]
pub struct ControlSession {
    /// The session's id.
    pub id: i64,
    publication: ExclusivePublication,
    pending: VecDeque<Vec<u8>>,
    /// When the publication was last seen connected (or the session opened).
    connected_ns: i64,
    closing: bool,
}

impl ControlSession {
    /// A session answering on `publication`, opened at `now_ns`.
    pub fn new(id: i64, publication: ExclusivePublication, now_ns: i64) -> Self {
        Self {
            id,
            publication,
            pending: VecDeque::new(),
            connected_ns: now_ns,
            closing: false,
        }
    }

    /// Queues a response, and sends what it can.
    pub fn respond(
        &mut self,
        correlation_id: i64,
        relevant_id: i64,
        code: ResponseCode,
        message: &str,
    ) {
        let mut buf = vec![0u8; 64 + message.len().min(1024)];
        let Ok(mut encoder) = control_response::Encoder::wrap(&mut buf) else {
            return;
        };
        encoder
            .control_session_id(self.id)
            .correlation_id(correlation_id)
            .relevant_id(relevant_id)
            .code(code);
        let message = tern_engine::concurrent::truncate_utf8(message, 1024);
        let Ok(encoder) = encoder.error_message(message) else {
            return;
        };
        let length = encoder.finish();
        buf.truncate(length);
        self.send(buf);
    }

    /// Queues a recording signal for the request `correlation_id`, and sends what it can.
    pub fn signal(
        &mut self,
        correlation_id: i64,
        recording_id: i64,
        position: i64,
        signal: RecordingSignal,
    ) {
        let mut buf = vec![0u8; 64];
        let Ok(mut encoder) = recording_signal::Encoder::wrap(&mut buf) else {
            return;
        };
        encoder
            .control_session_id(self.id)
            .correlation_id(correlation_id)
            .recording_id(recording_id)
            .position(position)
            .signal(signal);
        let length = encoder.finish();
        buf.truncate(length);
        self.send(buf);
    }

    /// Queues an encoded message, and sends what it can.
    pub fn send(&mut self, message: Vec<u8>) {
        if self.pending.len() >= PENDING_MAX {
            if !self.closing {
                tracing::warn!(
                    control_session_id = self.id,
                    "a client stopped reading its responses: session closed"
                );
            }
            self.closing = true;
            return;
        }
        self.pending.push_back(message);
        self.flush();
    }

    /// Offers what waits; returns how many went.
    pub fn flush(&mut self) -> usize {
        let mut sent = 0;
        while let Some(message) = self.pending.front() {
            match self.publication.offer(message) {
                OfferResult::Ok(_) => {
                    self.pending.pop_front();
                    sent += 1;
                }
                OfferResult::MessageTooLong { .. }
                | OfferResult::Closed
                | OfferResult::MaxPositionExceeded => {
                    self.closing = true;
                    break;
                }
                OfferResult::BackPressured
                | OfferResult::NotConnected
                | OfferResult::AdminAction => break,
            }
        }
        sent
    }

    /// Marks the session for closing once what waits is sent (or at once if it cannot be).
    pub fn close_after_flush(&mut self) {
        self.closing = true;
    }

    /// Whether the session is done: asked to close with nothing left to send, or its client
    /// gone past the timeout.
    pub fn is_done(&mut self, now_ns: i64) -> bool {
        if self.publication.is_connected() {
            self.connected_ns = now_ns;
        } else if now_ns - self.connected_ns
            > i64::try_from(CONNECT_TIMEOUT.as_nanos()).unwrap_or(i64::MAX)
        {
            return true;
        }
        self.closing && (self.pending.is_empty() || !self.publication.is_connected())
    }
}
