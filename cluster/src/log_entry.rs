//! The replicated log's entries: framing with a checksum, and the log events as versioned schemas.
//!
//! The log is a byte stream addressed by 64-bit positions. It holds whole entries, each framed and
//! padded to [`ENTRY_ALIGNMENT`]:
//!
//! ```text
//!  0                   1                   2                   3
//!  0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
//! +---------------------------------------------------------------+
//! |                 frame length (8 + message bytes)              |
//! +---------------------------------------------------------------+
//! |        CRC-32C of the frame length's 4 bytes, then message    |
//! +---------------------------------------------------------------+
//! |  message: tern header + block + var data (one log event)    ...
//! +---------------------------------------------------------------+
//! |  zero padding to the next multiple of 8                     ...
//! ```
//!
//! The checksum is what lets recovery find the end of a log whose last write was torn by a
//! crash: [`scan`] walks frames from a known-good position and stops at the first frame whose
//! length or checksum is wrong. Every position the consensus core hands out (appended, durable,
//! commit) is an entry boundary.
//!
//! Log events use the *terminate* policy: a service must stop rather than skip an event that
//! changes replicated state.

use tern_codec::{DecodeError, MessageHeader, Schema, SemanticVersion, UnknownAction, on_unknown};

/// The log events' schema and semantic version.
pub const LOG_PROTOCOL: Schema = Schema::new("log", 21, SemanticVersion::new(1, 0, 0));
/// Every entry starts at a multiple of this.
pub const ENTRY_ALIGNMENT: u64 = 8;
const _: () = assert!(
    ENTRY_ALIGNMENT == 8,
    "write_frame pads from an 8-byte array"
);
/// Bytes of framing before an entry's message.
pub const FRAME_HEADER_LENGTH: usize = 8;
/// The largest payload a session message may carry.
pub const SESSION_PAYLOAD_MAX: usize = 4096;
/// The largest frame, padding included.
pub const ENTRY_LENGTH_MAX: usize = 8192;

tern_codec::message! {
    /// The first entry of every leadership term (the Raft no-op): it lets the new leader commit
    /// its term and carries the leader's protocol version into the log.
    pub mod new_leadership_term (schema = LOG_PROTOCOL, template = 1, policy = Terminate) {
        block {
            /// The term.
            term @ 0 since 0: u64,
            /// Cluster time when the term began.
            timestamp_ns @ 8 since 0: u64,
            /// The leader.
            leader_id @ 16 since 0: u32,
            /// The leader's consensus protocol version, composed.
            protocol_version @ 20 since 0: u32,
        }
        groups {}
        var_data {}
    }
}

tern_codec::message! {
    /// A client's command, sequenced by the leader.
    pub mod session_message (schema = LOG_PROTOCOL, template = 2, policy = Terminate) {
        block {
            /// The client session.
            session_id @ 0 since 0: u64,
            /// The session's request number: requests of one session are applied at most once.
            request_id @ 8 since 0: u64,
            /// Cluster time of the command.
            timestamp_ns @ 16 since 0: u64,
        }
        groups {}
        var_data {
            /// The service's command bytes.
            payload (max = 4096) since 0: bytes,
        }
    }
}

tern_codec::message! {
    /// A service timer whose deadline passed on the leader's clock.
    pub mod timer_fired (schema = LOG_PROTOCOL, template = 3, policy = Terminate) {
        block {
            /// The timer the service scheduled.
            correlation_id @ 0 since 0: u64,
            /// Cluster time when it fired.
            timestamp_ns @ 8 since 0: u64,
        }
        groups {}
        var_data {}
    }
}

tern_codec::message! {
    /// The leader's service-state digest at a log position, for every replica to compare with its
    /// own at the same position.
    pub mod digest_checkpoint (schema = LOG_PROTOCOL, template = 4, policy = Terminate) {
        block {
            /// The entry boundary the digest describes.
            position @ 0 since 0: u64,
            /// The leader's digest there.
            digest @ 8 since 0: u64,
            /// Cluster time of the checkpoint.
            timestamp_ns @ 16 since 0: u64,
        }
        groups {}
        var_data {}
    }
}

/// A decoded log event.
#[derive(Debug, Clone, Copy)]
pub enum LogEvent<'a> {
    /// See [`new_leadership_term`].
    NewLeadershipTerm(new_leadership_term::Decoder<'a>),
    /// See [`session_message`].
    SessionMessage(session_message::Decoder<'a>),
    /// See [`timer_fired`].
    TimerFired(timer_fired::Decoder<'a>),
    /// See [`digest_checkpoint`].
    DigestCheckpoint(digest_checkpoint::Decoder<'a>),
}

impl LogEvent<'_> {
    /// The cluster time the event carries.
    pub fn timestamp_ns(&self) -> u64 {
        match self {
            Self::NewLeadershipTerm(event) => event.timestamp_ns(),
            Self::SessionMessage(event) => event.timestamp_ns(),
            Self::TimerFired(event) => event.timestamp_ns(),
            Self::DigestCheckpoint(event) => event.timestamp_ns(),
        }
    }
}

/// Why bytes in the log are not a valid entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum EntryError {
    /// The log ends inside the entry.
    #[error("log entry at {position} is cut off: it needs {needed} bytes, {available} remain")]
    Truncated {
        /// Where the entry starts.
        position: u64,
        /// Bytes the entry needs.
        needed: u64,
        /// Bytes left in the log.
        available: u64,
    },
    /// The frame length is outside the allowed range.
    #[error("log entry at {position} has an invalid frame length {length}")]
    InvalidLength {
        /// Where the entry starts.
        position: u64,
        /// The length read.
        length: u32,
    },
    /// The padding after the frame is not zero: a torn write.
    #[error("log entry at {position} has non-zero padding")]
    Padding {
        /// Where the entry starts.
        position: u64,
    },
    /// The checksum does not match: a torn or corrupted write.
    #[error(
        "log entry at {position} fails its checksum (stored {stored:#010x}, computed {computed:#010x})"
    )]
    Checksum {
        /// Where the entry starts.
        position: u64,
        /// The stored checksum.
        stored: u32,
        /// The checksum of the bytes.
        computed: u32,
    },
    /// The message does not decode.
    #[error("log entry at {position} does not decode: {error}")]
    Malformed {
        /// Where the entry starts.
        position: u64,
        /// Why.
        error: DecodeError,
    },
    /// An event this build does not know; its policy says the reader must stop.
    #[error("log entry at {position} is an unknown event ({message}); the reader stops")]
    Unknown {
        /// Where the entry starts.
        position: u64,
        /// Its identity.
        message: tern_codec::UnknownMessage,
    },
}

/// Rounds a length up to the entry alignment.
pub const fn aligned(length: u64) -> u64 {
    (length + ENTRY_ALIGNMENT - 1) & !(ENTRY_ALIGNMENT - 1)
}

fn checksum(frame_length: u32, message: &[u8]) -> u32 {
    crc32c::crc32c_append(crc32c::crc32c(&frame_length.to_le_bytes()), message)
}

fn widen(length: usize) -> u64 {
    u64::try_from(length).expect("lengths fit in u64")
}

/// Appends one framed entry to `out`; `write` encodes the message into the buffer it is given and
/// returns the message's length. Returns the frame's padded length.
pub fn append_entry(
    out: &mut Vec<u8>,
    write: impl FnOnce(&mut [u8]) -> Result<usize, tern_codec::EncodeError>,
) -> Result<u64, tern_codec::EncodeError> {
    let mut scratch = [0u8; ENTRY_LENGTH_MAX - FRAME_HEADER_LENGTH];
    let length = write(&mut scratch)?;
    Ok(write_frame(out, &scratch[..length]))
}

/// Appends a frame around an encoded message (at most
/// `ENTRY_LENGTH_MAX - FRAME_HEADER_LENGTH` bytes) to `out`, padding included. Returns the
/// frame's padded length.
pub fn write_frame(out: &mut Vec<u8>, message: &[u8]) -> u64 {
    assert!(
        message.len() <= ENTRY_LENGTH_MAX - FRAME_HEADER_LENGTH,
        "a log entry's message is at most {} bytes",
        ENTRY_LENGTH_MAX - FRAME_HEADER_LENGTH
    );
    let frame_length = FRAME_HEADER_LENGTH + message.len();
    let frame_length_u32 = u32::try_from(frame_length).expect("frames are under 8 KiB");
    let padded = aligned(widen(frame_length));
    let padding = usize::try_from(padded).expect("frames are under 8 KiB") - frame_length;
    out.extend_from_slice(&frame_length_u32.to_le_bytes());
    out.extend_from_slice(&checksum(frame_length_u32, message).to_le_bytes());
    out.extend_from_slice(message);
    out.extend_from_slice(&[0u8; 8][..padding]);
    padded
}

/// The padded length of the frame at the start of `bytes`, without checking its checksum; `None`
/// when the bytes cannot hold a frame of the length they declare.
pub fn padded_length(bytes: &[u8]) -> Option<u64> {
    let length = u32::from_le_bytes(bytes.get(..4)?.try_into().ok()?);
    let frame = usize::try_from(length).ok()?;
    if frame <= FRAME_HEADER_LENGTH || frame > ENTRY_LENGTH_MAX {
        return None;
    }
    let padded = aligned(u64::from(length));
    (padded <= widen(bytes.len())).then_some(padded)
}

/// One valid frame read from the log.
#[derive(Debug, Clone, Copy)]
pub struct Entry<'a> {
    /// Where the entry starts.
    pub position: u64,
    /// The padded frame length: the next entry starts at `position + length`.
    pub length: u64,
    /// The message bytes (header included).
    pub message: &'a [u8],
}

impl<'a> Entry<'a> {
    /// Reads and checks the frame at the start of `bytes`, which sits at `position` in the log.
    pub fn read(bytes: &'a [u8], position: u64) -> Result<Self, EntryError> {
        let available = widen(bytes.len());
        if bytes.len() < FRAME_HEADER_LENGTH {
            return Err(EntryError::Truncated {
                position,
                needed: widen(FRAME_HEADER_LENGTH),
                available,
            });
        }
        let frame_length = u32::from_le_bytes(bytes[0..4].try_into().expect("4 bytes"));
        let stored = u32::from_le_bytes(bytes[4..8].try_into().expect("4 bytes"));
        let frame = usize::try_from(frame_length).unwrap_or(usize::MAX);
        if frame <= FRAME_HEADER_LENGTH || frame > ENTRY_LENGTH_MAX {
            return Err(EntryError::InvalidLength {
                position,
                length: frame_length,
            });
        }
        let padded = aligned(u64::from(frame_length));
        if padded > available {
            return Err(EntryError::Truncated {
                position,
                needed: padded,
                available,
            });
        }
        let padding_end = usize::try_from(padded).expect("below the slice length");
        if bytes[frame..padding_end].iter().any(|&byte| byte != 0) {
            // Padding is outside the checksum: a torn write can leave garbage there, and two
            // logs that hold the same entries must hold the same bytes.
            return Err(EntryError::Padding { position });
        }
        let message = &bytes[FRAME_HEADER_LENGTH..frame];
        let computed = checksum(frame_length, message);
        if computed != stored {
            return Err(EntryError::Checksum {
                position,
                stored,
                computed,
            });
        }
        Ok(Self {
            position,
            length: padded,
            message,
        })
    }

    /// Decodes the entry's event. An event this build does not know is `Ok(None)` when its
    /// policy says it may be ignored, and an error otherwise.
    pub fn event(&self) -> Result<Option<LogEvent<'a>>, EntryError> {
        let position = self.position;
        let malformed = |error| EntryError::Malformed { position, error };
        let header = MessageHeader::decode(self.message).map_err(malformed)?;
        if header.schema_id != LOG_PROTOCOL.id {
            return Err(malformed(DecodeError::WrongSchema {
                expected: LOG_PROTOCOL.id,
                actual: header.schema_id,
            }));
        }
        let bytes = self.message;
        Ok(Some(match header.template_id {
            new_leadership_term::TEMPLATE_ID => LogEvent::NewLeadershipTerm(
                new_leadership_term::Decoder::decode(bytes).map_err(malformed)?,
            ),
            session_message::TEMPLATE_ID => LogEvent::SessionMessage(
                session_message::Decoder::decode(bytes).map_err(malformed)?,
            ),
            timer_fired::TEMPLATE_ID => {
                LogEvent::TimerFired(timer_fired::Decoder::decode(bytes).map_err(malformed)?)
            }
            digest_checkpoint::TEMPLATE_ID => LogEvent::DigestCheckpoint(
                digest_checkpoint::Decoder::decode(bytes).map_err(malformed)?,
            ),
            _ => {
                return match on_unknown(&header) {
                    UnknownAction::Ignore => Ok(None),
                    UnknownAction::Reject(message) | UnknownAction::Terminate(message) => {
                        Err(EntryError::Unknown { position, message })
                    }
                };
            }
        }))
    }
}

/// How far a log's valid entries reach.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Scan {
    /// The end of the last valid entry: where the log must be truncated.
    pub valid_end: u64,
    /// Why the scan stopped before the end of the bytes, if it did.
    pub stopped_by: Option<EntryError>,
}

/// Walks the frames of `log` (which starts at log position 0) from `from`, an entry boundary,
/// and returns the end of the valid prefix. Recovery truncates the log there: a torn last write
/// fails its length or checksum. A run of zero bytes (space never written) ends the scan quietly.
pub fn scan(log: &[u8], from: u64) -> Scan {
    let end = widen(log.len());
    assert!(
        from <= end,
        "scan starts at {from}, past the log's {end} bytes"
    );
    let mut position = from;
    while position < end {
        let start = usize::try_from(position).expect("position is within the slice");
        let bytes = &log[start..];
        if bytes.len() >= 4 && bytes[..4] == [0; 4] {
            return Scan {
                valid_end: position,
                stopped_by: None,
            };
        }
        match Entry::read(bytes, position) {
            Ok(entry) => position += entry.length,
            Err(error) => {
                return Scan {
                    valid_end: position,
                    stopped_by: Some(error),
                };
            }
        }
    }
    Scan {
        valid_end: position,
        stopped_by: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn timer_entry(out: &mut Vec<u8>, correlation_id: u64) -> u64 {
        append_entry(out, |buf| {
            let mut encoder = timer_fired::Encoder::wrap(buf)?;
            encoder.correlation_id(correlation_id).timestamp_ns(5);
            Ok(encoder.finish())
        })
        .unwrap()
    }

    #[test]
    fn entries_round_trip_at_aligned_positions() {
        let mut log = Vec::new();
        let first = timer_entry(&mut log, 1);
        let mut payload_log = log.clone();
        append_entry(&mut payload_log, |buf| {
            let mut encoder = session_message::Encoder::wrap(buf)?;
            encoder.session_id(3).request_id(4).timestamp_ns(6);
            Ok(encoder.payload(b"hello")?.finish())
        })
        .unwrap();
        assert_eq!(first % ENTRY_ALIGNMENT, 0);
        assert_eq!(widen(payload_log.len()) % ENTRY_ALIGNMENT, 0);
        let entry = Entry::read(&payload_log[usize::try_from(first).unwrap()..], first).unwrap();
        let Some(LogEvent::SessionMessage(message)) = entry.event().unwrap() else {
            panic!("wrong event");
        };
        assert_eq!(message.payload(), b"hello");
        assert_eq!(scan(&payload_log, 0).valid_end, widen(payload_log.len()));
    }

    #[test]
    fn a_torn_or_corrupt_tail_ends_the_scan_at_the_last_good_entry() {
        let mut log = Vec::new();
        let first = timer_entry(&mut log, 1);
        timer_entry(&mut log, 2);
        for cut in 1..log.len() - usize::try_from(first).unwrap() {
            let torn = &log[..log.len() - cut];
            assert_eq!(scan(torn, 0).valid_end, first, "cut {cut}");
        }
        let mut flipped = log.clone();
        let index = usize::try_from(first).unwrap() + 20;
        flipped[index] ^= 0x10;
        let result = scan(&flipped, 0);
        assert_eq!(result.valid_end, first);
        assert!(matches!(
            result.stopped_by,
            Some(EntryError::Checksum { .. })
        ));
        let mut padded = log.clone();
        let first_end = usize::try_from(first).unwrap();
        let frame_length = u32::from_le_bytes(padded[0..4].try_into().unwrap());
        if u64::from(frame_length) < first {
            padded[first_end - 1] = 0xAB;
            assert!(matches!(
                scan(&padded, 0).stopped_by,
                Some(EntryError::Padding { .. })
            ));
        }
        let mut zeroed = log.clone();
        zeroed.extend_from_slice(&[0; 64]);
        assert_eq!(
            scan(&zeroed, 0),
            Scan {
                valid_end: widen(log.len()),
                stopped_by: None
            }
        );
    }

    #[test]
    fn bad_lengths_and_unknown_events_are_errors_not_panics() {
        let mut bytes = [0u8; 16];
        bytes[0..4].copy_from_slice(&u32::MAX.to_le_bytes());
        assert!(matches!(
            Entry::read(&bytes, 0),
            Err(EntryError::InvalidLength { .. })
        ));
        assert!(matches!(
            Entry::read(&bytes[..3], 0),
            Err(EntryError::Truncated { .. })
        ));
        let mut log = Vec::new();
        append_entry(&mut log, |buf| {
            let header = MessageHeader {
                block_length: 0,
                template_id: tern_codec::UnknownPolicy::Ignore.template_id(77),
                schema_id: LOG_PROTOCOL.id,
                version: LOG_PROTOCOL.version.wire_version(),
            };
            header.encode(buf)
        })
        .unwrap();
        let entry = Entry::read(&log, 0).unwrap();
        assert!(
            matches!(entry.event(), Ok(None)),
            "an ignorable event is skipped"
        );
        let terminate = tern_codec::UnknownPolicy::Terminate.template_id(77);
        let offset = FRAME_HEADER_LENGTH + 2;
        log[offset..offset + 2].copy_from_slice(&terminate.to_le_bytes());
        let frame_length = u32::from_le_bytes(log[0..4].try_into().unwrap());
        let sum = checksum(
            frame_length,
            &log[8..usize::try_from(frame_length).unwrap()],
        );
        log[4..8].copy_from_slice(&sum.to_le_bytes());
        let entry = Entry::read(&log, 0).unwrap();
        assert!(matches!(entry.event(), Err(EntryError::Unknown { .. })));
    }
}
