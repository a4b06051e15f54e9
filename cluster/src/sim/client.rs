//! Simulated clients: each is one session that sends key-value commands one at a time and
//! retries each on a timeout, to another member, until it is answered.

use crate::kv::Command;
use crate::rng::Rng;

/// A request waiting for its answer.
#[derive(Debug, Clone)]
pub struct Outstanding {
    /// The request number.
    pub request_id: u64,
    /// The encoded command.
    pub payload: [u8; crate::kv::COMMAND_LENGTH],
}

/// One simulated client session.
#[derive(Debug, Clone)]
pub struct Client {
    /// The session id (client index + 1).
    pub session_id: u64,
    /// The member it sends to next.
    pub target: u32,
    /// The request in flight.
    pub outstanding: Option<Outstanding>,
    /// The last request number used.
    pub last_request_id: u64,
    /// Bumped whenever a wake-up is scheduled, so stale ones are ignored.
    pub generation: u64,
    /// Answers received.
    pub acked: u64,
    /// Answers received after the heal.
    pub acked_after_heal: u64,
    /// Sends, retries included.
    pub sends: u64,
    rng: Rng,
}

/// Keys the clients touch: few, so that commands contend.
const KEYS: u64 = 16;

impl Client {
    /// Client `index` of a cluster of `members`.
    pub fn new(index: u32, members: u32, rng: Rng) -> Self {
        Self {
            session_id: u64::from(index) + 1,
            target: index % members,
            outstanding: None,
            last_request_id: 0,
            generation: 0,
            acked: 0,
            acked_after_heal: 0,
            sends: 0,
            rng,
        }
    }

    /// Starts the next request.
    pub fn next_request(&mut self) -> &Outstanding {
        self.last_request_id += 1;
        let key = self.rng.below(KEYS);
        let command = match self.rng.below(10) {
            0..=4 => Command::Add {
                key,
                delta: self.rng.between(1, 100),
            },
            5 | 6 => Command::Put {
                key,
                value: self.rng.next_u64() >> 1,
            },
            7 => Command::Get { key },
            _ => Command::PutWithExpiry {
                key,
                value: self.rng.between(1, 1000),
                ttl_ns: self.rng.between(10_000_000, 500_000_000),
            },
        };
        self.outstanding.insert(Outstanding {
            request_id: self.last_request_id,
            payload: command.encode(self.session_id),
        })
    }

    /// A think time before the next request.
    pub fn think_ns(&mut self) -> u64 {
        self.rng.below(10_000_000)
    }

    /// Moves to another member after a timeout or a redirect without a hint.
    pub fn next_target(&mut self, members: u32) {
        self.target = (self.target + 1) % members;
    }
}
