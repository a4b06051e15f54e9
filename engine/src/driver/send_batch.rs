//! Datagrams gathered for one batched send, and where they go.
//!
//! The sans-IO cores (a network publication, a publication image) write the datagrams they want
//! sent into a [`SendBatch`] and hand it to a [`DatagramSink`]: the agent's socket in the
//! driver, a list in tests. The batch is owned by the agent (one per sender or receiver, made
//! with it) and reused every duty cycle, so sending allocates nothing.

use std::net::SocketAddr;

use crate::udp_transport::BATCH_MAX;

/// Bytes a batch holds: [`BATCH_MAX`] datagrams of the default MTU with room to spare, or four
/// of the largest MTU.
pub const BATCH_BYTES: usize = 256 * 1024;

/// Where datagrams go.
pub trait DatagramSink {
    /// Sends `datagrams` to `destination`, in order; returns how many went (fewer when the
    /// socket is full: the caller sends the rest later, or not at all).
    fn send(&mut self, datagrams: &[&[u8]], destination: SocketAddr) -> usize;

    /// The sends that follow leave from the agent's socket `socket` (a destination of a
    /// multi-destination subscription, by its id); a sink with one socket ignores it.
    fn use_socket(&mut self, socket: u32) {
        let _ = socket;
    }
}

/// Datagrams waiting to be sent together.
pub struct SendBatch {
    bytes: Box<[u8]>,
    /// Where each datagram ends in `bytes`.
    ends: [usize; BATCH_MAX],
    count: usize,
}

impl std::fmt::Debug for SendBatch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SendBatch")
            .field("count", &self.count)
            .finish_non_exhaustive()
    }
}

impl Default for SendBatch {
    fn default() -> Self {
        Self::new()
    }
}

impl SendBatch {
    /// An empty batch with its memory allocated.
    pub fn new() -> Self {
        Self {
            bytes: vec![0u8; BATCH_BYTES].into_boxed_slice(),
            ends: [0; BATCH_MAX],
            count: 0,
        }
    }

    /// Datagrams gathered.
    pub fn len(&self) -> usize {
        self.count
    }

    /// Whether nothing is gathered.
    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    /// Forgets what was gathered.
    pub fn clear(&mut self) {
        self.count = 0;
    }

    /// Adds a datagram of `length` bytes that `fill` writes; false (and nothing added) when the
    /// batch has no room for it.
    pub fn push_with(&mut self, length: usize, fill: impl FnOnce(&mut [u8])) -> bool {
        let start = self.count.checked_sub(1).map_or(0, |last| self.ends[last]);
        let end = start + length;
        if self.count == BATCH_MAX || end > self.bytes.len() {
            return false;
        }
        fill(&mut self.bytes[start..end]);
        self.ends[self.count] = end;
        self.count += 1;
        true
    }

    /// Sends everything gathered to `destination` through `sink` and empties the batch; returns
    /// how many datagrams went.
    pub fn flush(&mut self, sink: &mut dyn DatagramSink, destination: SocketAddr) -> usize {
        let sent = self.send_to(sink, destination);
        self.count = 0;
        sent
    }

    /// Sends everything gathered to `destination` through `sink`, keeping it for the next
    /// destination; returns how many datagrams went.
    pub fn send_to(&self, sink: &mut dyn DatagramSink, destination: SocketAddr) -> usize {
        if self.count == 0 {
            return 0;
        }
        let mut datagrams: [&[u8]; BATCH_MAX] = [&[]; BATCH_MAX];
        let mut start = 0;
        for (datagram, &end) in datagrams.iter_mut().zip(&self.ends[..self.count]) {
            *datagram = &self.bytes[start..end];
            start = end;
        }
        sink.send(&datagrams[..self.count], destination)
    }
}

/// A sink that keeps what it is given (tests and simulations).
#[derive(Debug, Default)]
pub struct RecordingSink {
    /// Datagrams sent, with their destinations.
    pub sent: Vec<(Vec<u8>, SocketAddr)>,
    /// How many datagrams each call takes at most (`None`: all).
    pub capacity: Option<usize>,
    /// The socket each datagram in `sent` left from (see [`DatagramSink::use_socket`]).
    pub sockets: Vec<u32>,
    socket: u32,
}

impl DatagramSink for RecordingSink {
    fn send(&mut self, datagrams: &[&[u8]], destination: SocketAddr) -> usize {
        let count = self
            .capacity
            .map_or(datagrams.len(), |capacity| capacity.min(datagrams.len()));
        for datagram in &datagrams[..count] {
            self.sent.push((datagram.to_vec(), destination));
            self.sockets.push(self.socket);
        }
        count
    }

    fn use_socket(&mut self, socket: u32) {
        self.socket = socket;
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;

    #[test]
    fn a_batch_fills_to_its_limits_and_flushes_in_order() {
        let mut batch = SendBatch::new();
        let destination: SocketAddr = "127.0.0.1:9".parse().unwrap();
        for index in 0..BATCH_MAX {
            assert!(batch.push_with(8, |bytes| bytes.fill(u8::try_from(index).unwrap())));
        }
        assert!(!batch.push_with(8, |_| {}), "the datagram count is bounded");
        let mut sink = RecordingSink {
            capacity: Some(3),
            ..RecordingSink::default()
        };
        assert_eq!(batch.flush(&mut sink, destination), 3);
        assert!(batch.is_empty());
        assert_eq!(sink.sent[2].0, [2u8; 8]);
        assert!(
            !batch.push_with(BATCH_BYTES + 1, |_| {}),
            "the bytes are bounded"
        );
        assert!(batch.push_with(BATCH_BYTES, |_| {}));
    }
}
