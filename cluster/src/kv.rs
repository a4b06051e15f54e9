//! A sample deterministic service: a key-value store of `u64` values with expiry timers.
//!
//! Commands are 32 bytes (the size the benchmarks use), little-endian:
//!
//! ```text
//! 0 op (1 put, 2 add, 3 get, 4 put with expiry)   1..8 zero
//! 8 key (u64)   16 value, delta or time-to-live ns (u64)
//! 24 client tag (u64, not interpreted), or the value of a put with expiry
//! ```
//!
//! Responses are 16 bytes: a status byte (0 ok, 1 not found, 2 malformed, 3 full), 7 zero bytes,
//! and the key's value after the command. A put with expiry schedules a timer (its correlation id
//! is the key) through the cluster; when the timer's entry is applied the key is removed. The
//! state digest is the order-independent digest of the key-value pairs.

use std::collections::BTreeMap;

use crate::digest::SetDigest;
use crate::rng::mix64;
use crate::service::{ClusteredService, ServiceContext, SnapshotError};

/// Bytes in a command.
pub const COMMAND_LENGTH: usize = 32;
/// Bytes in a response.
pub const RESPONSE_LENGTH: usize = 16;
/// The most keys the store holds; a put of a new key beyond it answers [`Status::Full`].
pub const KEYS_MAX: usize = 1 << 20;

/// A key-value command.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Command {
    /// Set `key` to `value`.
    Put {
        /// The key.
        key: u64,
        /// The value.
        value: u64,
    },
    /// Add `delta` to `key` (missing keys count as 0), wrapping.
    Add {
        /// The key.
        key: u64,
        /// The amount.
        delta: u64,
    },
    /// Read `key`.
    Get {
        /// The key.
        key: u64,
    },
    /// Set `key` to `value` and remove it `ttl_ns` of cluster time later.
    PutWithExpiry {
        /// The key.
        key: u64,
        /// The value.
        value: u64,
        /// Time to live.
        ttl_ns: u64,
    },
}

impl Command {
    /// Encodes the command with a client tag (a put with expiry carries its value in the tag's
    /// place, so that every command stays 32 bytes).
    pub fn encode(self, tag: u64) -> [u8; COMMAND_LENGTH] {
        let (op, key, argument, last) = match self {
            Self::Put { key, value } => (1u8, key, value, tag),
            Self::Add { key, delta } => (2, key, delta, tag),
            Self::Get { key } => (3, key, 0, tag),
            Self::PutWithExpiry { key, value, ttl_ns } => (4, key, ttl_ns, value),
        };
        let mut bytes = [0u8; COMMAND_LENGTH];
        bytes[0] = op;
        bytes[8..16].copy_from_slice(&key.to_le_bytes());
        bytes[16..24].copy_from_slice(&argument.to_le_bytes());
        bytes[24..32].copy_from_slice(&last.to_le_bytes());
        bytes
    }

    /// Decodes a command; `None` when it is malformed.
    pub fn decode(bytes: &[u8]) -> Option<Self> {
        if bytes.len() != COMMAND_LENGTH || bytes[1..8] != [0; 7] {
            return None;
        }
        let word = |offset: usize| {
            u64::from_le_bytes(bytes[offset..offset + 8].try_into().expect("8 bytes"))
        };
        let (key, value) = (word(8), word(16));
        Some(match bytes[0] {
            1 => Self::Put { key, value },
            2 => Self::Add { key, delta: value },
            3 => Self::Get { key },
            4 => Self::PutWithExpiry {
                key,
                value: word(24),
                ttl_ns: value,
            },
            _ => return None,
        })
    }
}

/// A response's status.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    /// Done.
    Ok = 0,
    /// A get of a missing key.
    NotFound = 1,
    /// The command did not decode.
    Malformed = 2,
    /// The store is full.
    Full = 3,
}

/// Decodes a response into its status byte and value.
pub fn decode_response(bytes: &[u8]) -> Option<(u8, u64)> {
    if bytes.len() != RESPONSE_LENGTH {
        return None;
    }
    Some((
        bytes[0],
        u64::from_le_bytes(bytes[8..16].try_into().expect("8 bytes")),
    ))
}

/// The key-value store.
#[derive(Debug, Clone, Default)]
pub struct KvStore {
    values: BTreeMap<u64, u64>,
    digest: SetDigest,
    expired: u64,
}

impl KvStore {
    /// The value of `key`.
    pub fn get(&self, key: u64) -> Option<u64> {
        self.values.get(&key).copied()
    }

    /// How many keys expired through timers.
    pub fn expired(&self) -> u64 {
        self.expired
    }

    /// How many keys are held.
    pub fn len(&self) -> usize {
        self.values.len()
    }

    /// Whether no key is held.
    pub fn is_empty(&self) -> bool {
        self.values.is_empty()
    }

    fn element(key: u64, value: u64) -> u64 {
        mix64(key) ^ value
    }

    fn set(&mut self, key: u64, value: u64) -> Status {
        if !self.values.contains_key(&key) && self.values.len() >= KEYS_MAX {
            return Status::Full;
        }
        if let Some(old) = self.values.insert(key, value) {
            self.digest.remove(Self::element(key, old));
        }
        self.digest.add(Self::element(key, value));
        Status::Ok
    }

    fn remove(&mut self, key: u64) {
        if let Some(old) = self.values.remove(&key) {
            self.digest.remove(Self::element(key, old));
        }
    }
}

fn respond(response: &mut Vec<u8>, status: Status, value: u64) {
    response.push(status as u8);
    response.extend_from_slice(&[0; 7]);
    response.extend_from_slice(&value.to_le_bytes());
}

impl ClusteredService for KvStore {
    fn on_session_message(
        &mut self,
        context: &mut ServiceContext<'_>,
        _session_id: u64,
        payload: &[u8],
        response: &mut Vec<u8>,
    ) {
        let Some(command) = Command::decode(payload) else {
            respond(response, Status::Malformed, 0);
            return;
        };
        let (status, value) = match command {
            Command::Put { key, value } => (self.set(key, value), value),
            Command::Add { key, delta } => {
                let value = self.get(key).unwrap_or(0).wrapping_add(delta);
                (self.set(key, value), value)
            }
            Command::Get { key } => match self.get(key) {
                Some(value) => (Status::Ok, value),
                None => (Status::NotFound, 0),
            },
            Command::PutWithExpiry { key, value, ttl_ns } => {
                let status = self.set(key, value);
                if status == Status::Ok {
                    let deadline = context.cluster_time_ns().saturating_add(ttl_ns);
                    context.schedule_timer(key, deadline);
                }
                (status, value)
            }
        };
        respond(response, status, value);
    }

    fn on_timer(&mut self, _context: &mut ServiceContext<'_>, correlation_id: u64) {
        self.remove(correlation_id);
        self.expired += 1;
    }

    fn take_snapshot(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.expired.to_le_bytes());
        out.extend_from_slice(
            &u64::try_from(self.values.len())
                .expect("fits")
                .to_le_bytes(),
        );
        for (&key, &value) in &self.values {
            out.extend_from_slice(&key.to_le_bytes());
            out.extend_from_slice(&value.to_le_bytes());
        }
    }

    fn load_snapshot(&mut self, snapshot: &[u8]) -> Result<(), SnapshotError> {
        let truncated = |needed: usize| SnapshotError::Truncated {
            what: "key-value snapshot",
            needed: u64::try_from(needed).unwrap_or(u64::MAX),
            available: u64::try_from(snapshot.len()).unwrap_or(u64::MAX),
        };
        let word = |index: usize| -> Result<u64, SnapshotError> {
            let start = index * 8;
            let bytes = snapshot.get(start..start + 8).ok_or(truncated(start + 8))?;
            Ok(u64::from_le_bytes(bytes.try_into().expect("8 bytes")))
        };
        let expired = word(0)?;
        let count = usize::try_from(word(1)?).unwrap_or(usize::MAX);
        if count > KEYS_MAX {
            return Err(SnapshotError::Invalid {
                field: "key count",
                reason: "more keys than the store holds",
            });
        }
        if snapshot.len() != 16 + count * 16 {
            return Err(truncated(16 + count * 16));
        }
        let mut store = KvStore {
            expired,
            ..KvStore::default()
        };
        for index in 0..count {
            let key = word(2 + index * 2)?;
            let value = word(3 + index * 2)?;
            store.set(key, value);
        }
        *self = store;
        Ok(())
    }

    fn state_digest(&self) -> u64 {
        self.digest.value() ^ self.expired.rotate_left(7)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::container::{ContainerOutput, ServiceContainer};
    use crate::log_entry::{append_entry, session_message, timer_fired};

    fn session_entry(log: &mut Vec<u8>, session: u64, request: u64, time: u64, command: Command) {
        append_entry(log, |buf| {
            let mut encoder = session_message::Encoder::wrap(buf)?;
            encoder
                .session_id(session)
                .request_id(request)
                .timestamp_ns(time);
            Ok(encoder.payload(&command.encode(0))?.finish())
        })
        .unwrap();
    }

    #[test]
    fn commands_round_trip_and_malformed_ones_are_refused() {
        for command in [
            Command::Put { key: 1, value: 2 },
            Command::Add { key: 3, delta: 4 },
            Command::Get { key: 5 },
            Command::PutWithExpiry {
                key: 6,
                value: 7,
                ttl_ns: 8,
            },
        ] {
            assert_eq!(Command::decode(&command.encode(9)), Some(command));
        }
        assert_eq!(Command::decode(&[0; 31]), None);
        assert_eq!(Command::decode(&[9; 32]), None);
    }

    #[test]
    fn the_container_applies_once_fires_timers_and_snapshots() {
        let mut log = Vec::new();
        session_entry(&mut log, 1, 1, 10, Command::Add { key: 7, delta: 5 });
        session_entry(&mut log, 1, 1, 11, Command::Add { key: 7, delta: 5 });
        session_entry(
            &mut log,
            2,
            1,
            12,
            Command::PutWithExpiry {
                key: 9,
                value: 1,
                ttl_ns: 100,
            },
        );
        let mut container = ServiceContainer::new(KvStore::default(), 64);
        let end = u64::try_from(log.len()).unwrap();
        assert_eq!(container.apply(&log, end).unwrap(), 3);
        assert_eq!(
            container.service().get(7),
            Some(5),
            "the retry applied once"
        );
        let responses: Vec<_> = std::iter::from_fn(|| container.poll_output())
            .filter_map(|output| match output {
                ContainerOutput::Response {
                    duplicate, payload, ..
                } => Some((duplicate, payload)),
                _ => None,
            })
            .collect();
        assert_eq!(responses.len(), 3);
        assert!(responses[1].0, "the second is a duplicate");
        assert_eq!(
            responses[0].1, responses[1].1,
            "with the first one's response"
        );

        assert_eq!(container.poll_due_timer(111, 1), None);
        assert_eq!(container.poll_due_timer(112, 1), Some(9));
        assert_eq!(
            container.poll_due_timer(112, 1),
            None,
            "offered once per term"
        );
        assert_eq!(
            container.poll_due_timer(112, 2),
            Some(9),
            "and again in a new term"
        );

        let snapshot = container.take_snapshot();
        let restored = ServiceContainer::from_snapshot(KvStore::default(), 64, &snapshot).unwrap();
        assert_eq!(restored.state_digest(), container.state_digest());
        assert_eq!(restored.applied_position(), end);

        append_entry(&mut log, |buf| {
            let mut encoder = timer_fired::Encoder::wrap(buf)?;
            encoder.correlation_id(9).timestamp_ns(112);
            Ok(encoder.finish())
        })
        .unwrap();
        let end = u64::try_from(log.len()).unwrap();
        container.apply(&log, end).unwrap();
        assert_eq!(container.service().get(9), None);
        assert_eq!(container.service().expired(), 1);
        assert_ne!(restored.state_digest(), container.state_digest());
    }
}
