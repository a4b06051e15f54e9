//! The replicated log's entries: tern frames with a checksum, and the log events as versioned
//! schemas.
//!
//! The log is a tern stream: a byte stream addressed by 64-bit positions, cut into terms of
//! [`LogFormat::term_length`] bytes, holding whole frames, each a 32-byte tern DATA header, one
//! log event, and zero padding to [`ENTRY_ALIGNMENT`]. Consensus positions are the stream's
//! positions (headers, alignment and term-end padding included), so the log maps byte for byte
//! onto an archive recording of it, with no translation table:
//!
//! ```text
//!  0                   1                   2                   3
//!  0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
//! +---------------------------------------------------------------+
//! |                 frame length (32 + message bytes)             |
//! +---------------+---------------+-------------------------------+
//! |  version (0)  | flags (B|E)   |        type (DATA = 1)        |
//! +---------------+---------------+-------------------------------+
//! |      term offset of the frame (position mod term length)      |
//! +---------------------------------------------------------------+
//! |            session id (LOG_SESSION_ID)                        |
//! +---------------------------------------------------------------+
//! |            stream id (LOG_STREAM_ID)                          |
//! +---------------------------------------------------------------+
//! |            term id (position / term length)                   |
//! +---------------------------------------------------------------+
//! |  reserved value: CRC-32C of the frame with these 8 bytes      |
//! |  taken as zero (the archive's per-frame checksum)             |
//! +---------------------------------------------------------------+
//! |  message: tern header + block + var data (one log event)    ...
//! +---------------------------------------------------------------+
//! |  zero padding to the next multiple of 32                    ...
//! ```
//!
//! An entry never crosses a term's end: when the next one does not fit, the leader first fills
//! the term with a PAD frame (a header of type PAD whose length covers the rest of the term, its
//! body zero), as a tern publication does. A PAD is an entry like any other to positions,
//! truncation and replication; services skip it.
//!
//! The checksum is what lets recovery find the end of a log whose last write was torn by a
//! crash: [`LogFormat::scan`] walks frames from a known-good position and stops at the first
//! frame whose length, header, placement or checksum is wrong. Every position the consensus core
//! hands out (appended, durable, commit) is an entry boundary.
//!
//! Log events use the *terminate* policy: a service must stop rather than skip an event that
//! changes replicated state.

use tern_codec::frame::{DATA_FRAME_TYPE, FRAME_VERSION, PAD_FRAME_TYPE, data_flags, data_offsets};
use tern_codec::{DecodeError, MessageHeader, Schema, SemanticVersion, UnknownAction, on_unknown};

/// The log events' schema and semantic version.
///
/// 1.1.0: `snapshot_request`, after which every member takes a snapshot (a 1.0 member stops at
/// it, the template's policy being terminate, rather than skip a snapshot point).
pub const LOG_PROTOCOL: Schema = Schema::new("log", 21, SemanticVersion::new(1, 1, 0));
/// Every entry starts at a multiple of this: tern's frame alignment.
pub const ENTRY_ALIGNMENT: u64 = 32;
const _: () = assert!(
    ENTRY_ALIGNMENT == tern_codec::frame::FRAME_ALIGNMENT as u64,
    "entries are tern frames"
);
/// Bytes of framing before an entry's message: a tern DATA header.
pub const FRAME_HEADER_LENGTH: usize = tern_codec::frame::DATA_HEADER_LENGTH;
/// The stream id in every frame of the log.
pub const LOG_STREAM_ID: i32 = 100;
/// The session id in every frame of the log.
pub const LOG_SESSION_ID: i32 = 0;
/// The default log term length: 16 MiB.
pub const DEFAULT_TERM_LENGTH: u64 = 16 * 1024 * 1024;
/// The shortest log term: two of the largest entries. (A log replayed through a tern
/// publication needs terms of at least 64 KiB, an initial term id of 0 and an MTU that carries
/// the largest entry unfragmented; the simulator uses shorter terms to cross term ends often.)
pub const TERM_LENGTH_MIN: u64 = 2 * ENTRY_LENGTH_MAX as u64;
/// The longest log term.
pub const TERM_LENGTH_MAX: u64 = 1 << 30;
/// The largest payload a session message may carry.
pub const SESSION_PAYLOAD_MAX: usize = 4096;
/// The largest frame, padding included (a PAD's too).
pub const ENTRY_LENGTH_MAX: usize = 8192;

tern_codec::message! {
    /// The first event of every leadership term (the Raft no-op; a PAD may precede it): it lets the new leader commit
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

tern_codec::message! {
    /// Every member takes a snapshot of its replicated state once it has applied this entry: a
    /// cluster-wide snapshot at one log position. Asked by a client session (an operator's
    /// `tern cluster snapshot`), or by the leader's schedule with session 0.
    pub mod snapshot_request (schema = LOG_PROTOCOL, template = 5, policy = Terminate) {
        block {
            /// The session that asked (0: the leader's schedule).
            session_id @ 0 since 0: u64,
            /// The session's request number.
            request_id @ 8 since 0: u64,
            /// Cluster time of the request.
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
    /// See [`snapshot_request`].
    SnapshotRequest(snapshot_request::Decoder<'a>),
}

impl LogEvent<'_> {
    /// The cluster time the event carries.
    pub fn timestamp_ns(&self) -> u64 {
        match self {
            Self::NewLeadershipTerm(event) => event.timestamp_ns(),
            Self::SessionMessage(event) => event.timestamp_ns(),
            Self::TimerFired(event) => event.timestamp_ns(),
            Self::DigestCheckpoint(event) => event.timestamp_ns(),
            Self::SnapshotRequest(event) => event.timestamp_ns(),
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
    /// The padding after the frame (or a PAD's body) is not zero: a torn write.
    #[error("log entry at {position} has non-zero padding")]
    Padding {
        /// Where the entry starts.
        position: u64,
    },
    /// The header's version, type or flags are not those of a log entry.
    #[error("log entry at {position} has a bad header: {reason}")]
    Header {
        /// Where the entry starts.
        position: u64,
        /// What is wrong.
        reason: &'static str,
    },
    /// The frame says it sits elsewhere in the stream, or it crosses a term's end.
    #[error(
        "log entry at {position} is misplaced: it names term {term_id} offset {term_offset}, \
         the position is term {expected_term_id} offset {expected_term_offset}"
    )]
    Misplaced {
        /// Where the entry starts.
        position: u64,
        /// The term id the frame names.
        term_id: i32,
        /// The term offset the frame names.
        term_offset: u32,
        /// The term id of the position.
        expected_term_id: i32,
        /// The term offset of the position.
        expected_term_offset: u32,
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

fn widen(length: usize) -> u64 {
    u64::try_from(length).expect("lengths fit in u64")
}

fn read_u32(bytes: &[u8], offset: usize) -> u32 {
    u32::from_le_bytes(bytes[offset..offset + 4].try_into().expect("4 bytes"))
}

/// The archive's per-frame checksum: CRC-32C of the frame (its header alone for a PAD) with the
/// reserved value's 8 bytes taken as zero.
///
/// Two calls rather than three (the header copied with its reserved value zeroed, then the
/// body): on entries of about a hundred bytes each call's fixed cost is most of the work.
fn frame_checksum(frame: &[u8], pad: bool) -> u32 {
    let mut header = [0u8; FRAME_HEADER_LENGTH];
    header[..data_offsets::RESERVED_VALUE].copy_from_slice(&frame[..data_offsets::RESERVED_VALUE]);
    let checksum = crc32c::crc32c(&header);
    if pad {
        return checksum;
    }
    crc32c::crc32c_append(checksum, &frame[FRAME_HEADER_LENGTH..])
}

/// [`frame_checksum`] of a frame being written, whose reserved value is still zero: one call.
fn fresh_frame_checksum(frame: &[u8]) -> u32 {
    debug_assert!(frame[data_offsets::RESERVED_VALUE..FRAME_HEADER_LENGTH] == [0; 8]);
    crc32c::crc32c(frame)
}

/// A log term length that is not a power of two in range.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error(
    "a log term length is a power of two from {TERM_LENGTH_MIN} to {TERM_LENGTH_MAX} bytes, not {0}"
)]
pub struct TermLengthError(pub u64);

/// Where an entry went: a PAD may have filled the rest of a term before it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Written {
    /// Where the entry starts.
    pub position: u64,
    /// Bytes written, the PAD's included.
    pub length: u64,
}

/// The log's shape as a tern stream: its term length fixes each position's term id and term
/// offset, which every frame carries, and the term ends no entry may cross.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LogFormat {
    term_length: u64,
}

impl Default for LogFormat {
    fn default() -> Self {
        Self {
            term_length: DEFAULT_TERM_LENGTH,
        }
    }
}

impl LogFormat {
    /// A log of terms of `term_length` bytes.
    pub const fn new(term_length: u64) -> Result<Self, TermLengthError> {
        if !term_length.is_power_of_two()
            || term_length < TERM_LENGTH_MIN
            || term_length > TERM_LENGTH_MAX
        {
            return Err(TermLengthError(term_length));
        }
        Ok(Self { term_length })
    }

    /// Bytes in a term.
    pub const fn term_length(self) -> u64 {
        self.term_length
    }

    /// The term id of a position (the initial term id is 0; term ids wrap as tern's do).
    pub fn term_id(self, position: u64) -> i32 {
        let term = (position / self.term_length) & u64::from(u32::MAX);
        u32::try_from(term).expect("masked").cast_signed()
    }

    /// The offset of a position in its term.
    pub fn term_offset(self, position: u64) -> u32 {
        u32::try_from(position % self.term_length).expect("terms are at most 1 GiB")
    }

    /// Frames `message` (at most `ENTRY_LENGTH_MAX - FRAME_HEADER_LENGTH` bytes) as the entry at
    /// `position`, an entry boundary, appending it to `out`, which ends there; when the entry
    /// does not fit before the term's end, a PAD fills the term first.
    pub fn write_entry(self, out: &mut Vec<u8>, position: u64, message: &[u8]) -> Written {
        assert!(
            message.len() <= ENTRY_LENGTH_MAX - FRAME_HEADER_LENGTH,
            "a log entry's message is at most {} bytes",
            ENTRY_LENGTH_MAX - FRAME_HEADER_LENGTH
        );
        assert!(
            position.is_multiple_of(ENTRY_ALIGNMENT),
            "entries start at aligned positions"
        );
        let frame_length = FRAME_HEADER_LENGTH + message.len();
        let padded = aligned(widen(frame_length));
        let room = self.term_length - u64::from(self.term_offset(position));
        let mut entry_position = position;
        if padded > room {
            let pad = usize::try_from(room).expect("a pad is shorter than an entry");
            let start = self.write_header(out, position, pad, PAD_FRAME_TYPE);
            out.resize(start + pad, 0);
            entry_position += room;
        }
        let start = self.write_header(out, entry_position, frame_length, DATA_FRAME_TYPE);
        out.extend_from_slice(message);
        let checksum = fresh_frame_checksum(&out[start..]);
        out[start + data_offsets::RESERVED_VALUE..start + FRAME_HEADER_LENGTH]
            .copy_from_slice(&u64::from(checksum).to_le_bytes());
        out.resize(start + usize::try_from(padded).expect("small"), 0);
        Written {
            position: entry_position,
            length: entry_position - position + padded,
        }
    }

    /// Writes a header (a PAD's with its checksum) at the end of `out`; returns where it starts.
    fn write_header(self, out: &mut Vec<u8>, position: u64, length: usize, kind: u16) -> usize {
        let start = out.len();
        let length = u32::try_from(length).expect("frames are under 8 KiB");
        out.extend_from_slice(&length.to_le_bytes());
        out.push(FRAME_VERSION);
        out.push(data_flags::UNFRAGMENTED);
        out.extend_from_slice(&kind.to_le_bytes());
        out.extend_from_slice(&self.term_offset(position).to_le_bytes());
        out.extend_from_slice(&LOG_SESSION_ID.to_le_bytes());
        out.extend_from_slice(&LOG_STREAM_ID.to_le_bytes());
        out.extend_from_slice(&self.term_id(position).to_le_bytes());
        out.extend_from_slice(&[0u8; 8]);
        if kind == PAD_FRAME_TYPE {
            let checksum = fresh_frame_checksum(&out[start..]);
            out[start + data_offsets::RESERVED_VALUE..]
                .copy_from_slice(&u64::from(checksum).to_le_bytes());
        }
        start
    }

    /// Frames the message `write` encodes (into the buffer it is given, returning its length)
    /// as the entry at `position`, as [`LogFormat::write_entry`] does.
    pub fn append_entry(
        self,
        out: &mut Vec<u8>,
        position: u64,
        write: impl FnOnce(&mut [u8]) -> Result<usize, tern_codec::EncodeError>,
    ) -> Result<Written, tern_codec::EncodeError> {
        let mut scratch = [0u8; ENTRY_LENGTH_MAX - FRAME_HEADER_LENGTH];
        let length = write(&mut scratch)?;
        Ok(self.write_entry(out, position, &scratch[..length]))
    }

    /// Checks that the frame at the start of `bytes` sits where it says, at `position`: its term
    /// id and offset are the position's, it ends at or before the term's end, and a PAD ends
    /// exactly there. Returns its padded length; the rest of the frame is not read.
    pub fn check_placement(self, bytes: &[u8], position: u64) -> Result<u64, EntryError> {
        let Some(length) = padded_length(bytes) else {
            return Err(EntryError::InvalidLength {
                position,
                length: bytes.get(..4).map_or(0, |_| read_u32(bytes, 0)),
            });
        };
        let term_id = read_u32(bytes, data_offsets::TERM_ID).cast_signed();
        let term_offset = read_u32(bytes, data_offsets::TERM_OFFSET);
        let expected_term_id = self.term_id(position);
        let expected_term_offset = self.term_offset(position);
        let end_in_term = u64::from(term_offset) + length;
        let pad = u16::from_le_bytes(
            bytes[data_offsets::TYPE..data_offsets::TYPE + 2]
                .try_into()
                .expect("2 bytes"),
        ) == PAD_FRAME_TYPE;
        if term_id != expected_term_id
            || term_offset != expected_term_offset
            || end_in_term > self.term_length
            || (pad && end_in_term != self.term_length)
        {
            return Err(EntryError::Misplaced {
                position,
                term_id,
                term_offset,
                expected_term_id,
                expected_term_offset,
            });
        }
        Ok(length)
    }

    /// Reads and checks the frame at the start of `bytes`, at `position`, whole: what
    /// [`Entry::read`] checks and its placement ([`LogFormat::check_placement`]). Everything
    /// that reaches a log goes through this: a follower's append and recovery's scan.
    pub fn check_frame<'a>(self, bytes: &'a [u8], position: u64) -> Result<Entry<'a>, EntryError> {
        let entry = Entry::read(bytes, position)?;
        self.check_placement(bytes, position)?;
        Ok(entry)
    }

    /// Whether `entries`, to go at `position`, is a run of whole frames, each valid and where
    /// it says it is, ending at a position that fits in 64 bits.
    pub fn whole_frames(self, entries: &[u8], position: u64) -> bool {
        if position.checked_add(widen(entries.len())).is_none() {
            return false;
        }
        let mut offset = 0;
        while offset < entries.len() {
            match self.check_frame(&entries[offset..], position + widen(offset)) {
                Ok(entry) => offset += usize::try_from(entry.length).expect("frames are small"),
                Err(_) => return false,
            }
        }
        true
    }

    /// Walks the frames of `log` (which starts at log position 0) from `from`, an entry
    /// boundary, and returns the end of the valid prefix. Recovery truncates the log there: a
    /// torn last write fails its length, header, placement or checksum. A run of zero bytes
    /// (space never written) ends the scan quietly.
    pub fn scan(self, log: &[u8], from: u64) -> Scan {
        let end = widen(log.len());
        assert!(
            from <= end,
            "scan starts at {from}, past the log's {end} bytes"
        );
        let start = usize::try_from(from).expect("position is within the slice");
        self.scan_at(&log[start..], from)
    }

    /// Walks the frames of `bytes`, which lie at log position `position` (an entry boundary),
    /// as [`LogFormat::scan`] does: a log held in pieces (segment files) is scanned a piece at
    /// a time.
    pub fn scan_at(self, bytes: &[u8], position: u64) -> Scan {
        let mut at = 0usize;
        while at < bytes.len() {
            let rest = &bytes[at..];
            if rest.len() >= 4 && rest[..4] == [0; 4] {
                break;
            }
            match self.check_frame(rest, position + widen(at)) {
                Ok(entry) => at += usize::try_from(entry.length).expect("entries are small"),
                Err(error) => {
                    return Scan {
                        valid_end: position + widen(at),
                        stopped_by: Some(error),
                    };
                }
            }
        }
        Scan {
            valid_end: position + widen(at),
            stopped_by: None,
        }
    }
}

/// Appends one entry to `out`, a log held whole from position 0 in the default format (tests,
/// examples); `write` encodes the message into the buffer it is given and returns its length.
/// Returns the bytes written.
pub fn append_entry(
    out: &mut Vec<u8>,
    write: impl FnOnce(&mut [u8]) -> Result<usize, tern_codec::EncodeError>,
) -> Result<u64, tern_codec::EncodeError> {
    let position = widen(out.len());
    Ok(LogFormat::default()
        .append_entry(out, position, write)?
        .length)
}

/// The padded length of the frame at the start of `bytes` (a DATA or a PAD), without checking
/// its checksum or placement; `None` when the bytes cannot hold a frame of the length and type
/// they declare.
pub fn padded_length(bytes: &[u8]) -> Option<u64> {
    if bytes.len() < FRAME_HEADER_LENGTH {
        return None;
    }
    let frame = usize::try_from(read_u32(bytes, data_offsets::FRAME_LENGTH)).ok()?;
    let kind = u16::from_le_bytes(
        bytes[data_offsets::TYPE..data_offsets::TYPE + 2]
            .try_into()
            .expect("2 bytes"),
    );
    let valid = match kind {
        DATA_FRAME_TYPE => length_valid(frame, false),
        PAD_FRAME_TYPE => length_valid(frame, true),
        _ => false,
    };
    let padded = aligned(widen(frame));
    (valid && padded <= widen(bytes.len())).then_some(padded)
}

/// Whether a frame length is one a log entry may have: a DATA frame carries a message and is at
/// most [`ENTRY_LENGTH_MAX`]; a PAD covers whole alignment units, up to the same limit.
fn length_valid(frame: usize, pad: bool) -> bool {
    if pad {
        (FRAME_HEADER_LENGTH..=ENTRY_LENGTH_MAX).contains(&frame)
            && widen(frame).is_multiple_of(ENTRY_ALIGNMENT)
    } else {
        frame > FRAME_HEADER_LENGTH && frame <= ENTRY_LENGTH_MAX
    }
}

/// One valid frame read from the log.
#[derive(Debug, Clone, Copy)]
pub struct Entry<'a> {
    /// Where the entry starts.
    pub position: u64,
    /// The padded frame length: the next entry starts at `position + length`.
    pub length: u64,
    /// Whether the entry is a PAD (filling a term's end; it carries no event).
    pub pad: bool,
    /// The message bytes (header included; empty for a PAD).
    pub message: &'a [u8],
}

impl<'a> Entry<'a> {
    /// Reads and checks the frame at the start of `bytes`, which sits at `position` in the log:
    /// its length, header, zero padding and checksum (not its placement in the stream, which
    /// [`LogFormat::check_placement`] checks where bytes arrive: recovery, a follower's append).
    pub fn read(bytes: &'a [u8], position: u64) -> Result<Self, EntryError> {
        let available = widen(bytes.len());
        if bytes.len() < FRAME_HEADER_LENGTH {
            return Err(EntryError::Truncated {
                position,
                needed: widen(FRAME_HEADER_LENGTH),
                available,
            });
        }
        let header = |reason| EntryError::Header { position, reason };
        if bytes[data_offsets::VERSION] != FRAME_VERSION {
            return Err(header("not frame version 0"));
        }
        let kind = u16::from_le_bytes(
            bytes[data_offsets::TYPE..data_offsets::TYPE + 2]
                .try_into()
                .expect("2 bytes"),
        );
        let pad = match kind {
            DATA_FRAME_TYPE => false,
            PAD_FRAME_TYPE => true,
            _ => return Err(header("neither a DATA nor a PAD frame")),
        };
        if bytes[data_offsets::FLAGS] != data_flags::UNFRAGMENTED {
            return Err(header("a log entry is one unfragmented frame"));
        }
        if read_u32(bytes, data_offsets::STREAM_ID).cast_signed() != LOG_STREAM_ID
            || read_u32(bytes, data_offsets::SESSION_ID).cast_signed() != LOG_SESSION_ID
        {
            return Err(header("another stream's frame"));
        }
        let frame_length = read_u32(bytes, data_offsets::FRAME_LENGTH);
        let frame = usize::try_from(frame_length).unwrap_or(usize::MAX);
        if !length_valid(frame, pad) {
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
        // Padding is outside the checksum (a PAD's body too): a torn write can leave garbage
        // there, and two logs that hold the same entries must hold the same bytes.
        let checked_end = if pad { FRAME_HEADER_LENGTH } else { frame };
        if bytes[checked_end..padding_end]
            .iter()
            .any(|&byte| byte != 0)
        {
            return Err(EntryError::Padding { position });
        }
        let stored = u64::from_le_bytes(
            bytes[data_offsets::RESERVED_VALUE..FRAME_HEADER_LENGTH]
                .try_into()
                .expect("8 bytes"),
        );
        let computed = frame_checksum(&bytes[..checked_end], pad);
        if stored != u64::from(computed) {
            return Err(EntryError::Checksum {
                position,
                stored: u32::try_from(stored & u64::from(u32::MAX)).expect("masked"),
                computed,
            });
        }
        Ok(Self {
            position,
            length: padded,
            pad,
            message: if pad {
                &[]
            } else {
                &bytes[FRAME_HEADER_LENGTH..frame]
            },
        })
    }

    /// Decodes the entry's event. A PAD carries none (`Ok(None)`); an event this build does not
    /// know is `Ok(None)` when its policy says it may be ignored, and an error otherwise.
    pub fn event(&self) -> Result<Option<LogEvent<'a>>, EntryError> {
        if self.pad {
            return Ok(None);
        }
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
            snapshot_request::TEMPLATE_ID => LogEvent::SnapshotRequest(
                snapshot_request::Decoder::decode(bytes).map_err(malformed)?,
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

    fn scan(log: &[u8], from: u64) -> Scan {
        LogFormat::default().scan(log, from)
    }

    /// Rewrites the checksum of the frame at the start of `frame` after a test changed it.
    fn reseal(frame: &mut [u8]) {
        let pad = u16::from_le_bytes(frame[6..8].try_into().unwrap()) == PAD_FRAME_TYPE;
        let length = usize::try_from(read_u32(frame, 0)).unwrap();
        let end = if pad { FRAME_HEADER_LENGTH } else { length };
        let sum = frame_checksum(&frame[..end], pad);
        frame[24..32].copy_from_slice(&u64::from(sum).to_le_bytes());
    }

    #[test]
    fn entries_round_trip_at_aligned_positions_as_tern_data_frames() {
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
        let second = &payload_log[usize::try_from(first).unwrap()..];
        let entry = Entry::read(second, first).unwrap();
        let Some(LogEvent::SessionMessage(message)) = entry.event().unwrap() else {
            panic!("wrong event");
        };
        assert_eq!(message.payload(), b"hello");
        assert_eq!(scan(&payload_log, 0).valid_end, widen(payload_log.len()));
        // The header is a tern DATA header that the codec reads.
        let frame = tern_codec::frame::DataFrame::decode(second).unwrap();
        let header = frame.header;
        assert_eq!(frame.payload, entry.message);
        assert_eq!(u64::try_from(header.term_offset).unwrap(), first);
        assert_eq!(header.term_id, 0);
        assert_eq!(header.stream_id, LOG_STREAM_ID);
        assert_eq!(header.flags, data_flags::UNFRAGMENTED);
    }

    #[test]
    fn an_entry_that_does_not_fit_before_the_terms_end_follows_a_pad() {
        let format = LogFormat::new(TERM_LENGTH_MIN).unwrap();
        let message = [7u8; 1000];
        let mut log = Vec::new();
        let mut pads = 0;
        for _ in 0..60 {
            let position = widen(log.len());
            let written = format.write_entry(&mut log, position, &message);
            assert_eq!(widen(log.len()), position + written.length);
            if written.position != position {
                pads += 1;
                assert_eq!(
                    written.position % format.term_length(),
                    0,
                    "at a term start"
                );
                let pad = Entry::read(&log[usize::try_from(position).unwrap()..], position);
                let pad = pad.unwrap();
                assert!(pad.pad && pad.event().unwrap().is_none());
                assert_eq!(position + pad.length, written.position);
            }
        }
        assert!(pads >= 3, "{pads} pads in {} bytes", log.len());
        let result = format.scan(&log, 0);
        assert_eq!(
            result.valid_end,
            widen(log.len()),
            "{:?}",
            result.stopped_by
        );
        assert!(format.whole_frames(&log, 0));
        // Any entry boundary starts a valid run of frames; a shifted run is misplaced.
        let mut boundary = 0;
        while boundary < log.len() {
            let tail = &log[boundary..];
            assert!(
                format.whole_frames(tail, widen(boundary)),
                "from {boundary}"
            );
            boundary += usize::try_from(padded_length(tail).unwrap()).unwrap();
        }
        assert!(!format.whole_frames(&log[..1056], 32));
    }

    proptest::proptest! {
        /// Any run of entries of any sizes, in a log of short terms: every frame sits inside
        /// its term, PADs only end terms, the scan takes the whole log, and the frames from any
        /// entry boundary on are a valid run there and nowhere else.
        #[test]
        fn any_run_of_entries_tiles_the_terms(
            lengths in proptest::collection::vec(1usize..=ENTRY_LENGTH_MAX - FRAME_HEADER_LENGTH, 1..60),
        ) {
            let format = LogFormat::new(TERM_LENGTH_MIN).unwrap();
            let mut log = Vec::new();
            for (index, length) in lengths.iter().enumerate() {
                let position = widen(log.len());
                let message = vec![u8::try_from(index % 251).unwrap(); *length];
                let written = format.write_entry(&mut log, position, &message);
                proptest::prop_assert_eq!(widen(log.len()), position + written.length);
            }
            proptest::prop_assert_eq!(format.scan(&log, 0).valid_end, widen(log.len()));
            let mut position = 0usize;
            while position < log.len() {
                let at = widen(position);
                let entry = format.check_frame(&log[position..], at).unwrap();
                let end = at + entry.length;
                let term = format.term_length();
                proptest::prop_assert!(at / term == (end - 1) / term, "crosses a term at {}", at);
                if entry.pad {
                    proptest::prop_assert_eq!(end % term, 0);
                }
                proptest::prop_assert!(format.whole_frames(&log[position..], at));
                if position > 0 {
                    proptest::prop_assert!(!format.whole_frames(&log[position..], at - 32));
                }
                position += usize::try_from(entry.length).unwrap();
            }
        }
    }

    #[test]
    fn a_frame_elsewhere_than_it_says_is_misplaced() {
        let format = LogFormat::new(TERM_LENGTH_MIN).unwrap();
        let mut log = Vec::new();
        let first = timer_entry(&mut log, 1);
        timer_entry(&mut log, 2);
        // The second frame, copied to the log's start, names its own offset, not 0.
        let second = log[usize::try_from(first).unwrap()..].to_vec();
        assert!(Entry::read(&second, 0).is_ok(), "intact as a frame");
        assert!(matches!(
            format.scan(&second, 0).stopped_by,
            Some(EntryError::Misplaced { term_offset, .. }) if u64::from(term_offset) == first
        ));
        // A frame whose term id is another term's.
        let mut other_term = log.clone();
        other_term[20..24].copy_from_slice(&1i32.to_le_bytes());
        reseal(&mut other_term);
        assert!(matches!(
            format.scan(&other_term, 0).stopped_by,
            Some(EntryError::Misplaced { term_id: 1, .. })
        ));
        assert!(!format.whole_frames(&other_term, 0));
    }

    #[test]
    fn a_frame_across_a_terms_end_or_a_pad_short_of_it_is_misplaced() {
        let format = LogFormat::new(TERM_LENGTH_MIN).unwrap();
        let near_end = format.term_length() - 32;
        // A 64-byte frame that names its place correctly but runs past the term's end.
        let mut crossing = Vec::new();
        timer_entry(&mut crossing, 1);
        assert_eq!(crossing.len(), 64);
        crossing[8..12].copy_from_slice(&u32::try_from(near_end).unwrap().to_le_bytes());
        reseal(&mut crossing);
        assert!(
            Entry::read(&crossing, near_end).is_ok(),
            "intact as a frame"
        );
        assert!(matches!(
            format.check_frame(&crossing, near_end),
            Err(EntryError::Misplaced { .. })
        ));
        assert!(!format.whole_frames(&crossing, near_end));
        // A PAD that stops short of the term's end.
        let mut short_pad = Vec::new();
        format.write_header(&mut short_pad, 0, 64, PAD_FRAME_TYPE);
        short_pad.resize(64, 0);
        assert!(Entry::read(&short_pad, 0).unwrap().pad);
        assert!(!format.whole_frames(&short_pad, 0));
        // The same PAD at the term's end is where a PAD belongs.
        let mut end_pad = Vec::new();
        format.write_header(&mut end_pad, near_end - 32, 64, PAD_FRAME_TYPE);
        end_pad.resize(64, 0);
        assert!(format.whole_frames(&end_pad, near_end - 32));
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
        let index = usize::try_from(first).unwrap() + 40;
        flipped[index] ^= 0x10;
        let result = scan(&flipped, 0);
        assert_eq!(result.valid_end, first);
        assert!(matches!(
            result.stopped_by,
            Some(EntryError::Checksum { .. })
        ));
        let first_end = usize::try_from(first).unwrap();
        let frame_length = read_u32(&log, 0);
        assert!(u64::from(frame_length) < first, "the first entry is padded");
        let mut padded = log.clone();
        padded[first_end - 1] = 0xAB;
        assert!(matches!(
            scan(&padded, 0).stopped_by,
            Some(EntryError::Padding { .. })
        ));
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
    fn headers_of_other_versions_types_flags_and_streams_are_refused() {
        let mut log = Vec::new();
        timer_entry(&mut log, 1);
        for (offset, value) in [(4, 1u8), (6, 9), (5, 0x80), (16, 7), (12, 3)] {
            let mut bad = log.clone();
            bad[offset] = value;
            reseal(&mut bad);
            assert!(
                matches!(Entry::read(&bad, 0), Err(EntryError::Header { .. })),
                "byte {offset} = {value}: {:?}",
                Entry::read(&bad, 0)
            );
        }
        let mut garbage_pad = Vec::new();
        let format = LogFormat::default();
        format.write_header(&mut garbage_pad, 0, 64, PAD_FRAME_TYPE);
        garbage_pad.resize(64, 0);
        assert!(Entry::read(&garbage_pad, 0).unwrap().pad);
        garbage_pad[40] = 1;
        assert!(matches!(
            Entry::read(&garbage_pad, 0),
            Err(EntryError::Padding { .. })
        ));
    }

    #[test]
    fn the_checksum_is_the_same_however_it_is_computed() {
        let mut log = Vec::new();
        append_entry(&mut log, |buf| {
            let mut encoder = session_message::Encoder::wrap(buf)?;
            encoder.session_id(3).request_id(4).timestamp_ns(6);
            Ok(encoder.payload(&[9; 45])?.finish())
        })
        .unwrap();
        let length = usize::try_from(read_u32(&log, 0)).unwrap();
        let stored = u64::from_le_bytes(log[24..32].try_into().unwrap());
        // The definition: the CRC-32C of the frame with the reserved value's bytes as zero.
        let mut zeroed = log[..length].to_vec();
        zeroed[24..32].fill(0);
        assert_eq!(stored, u64::from(crc32c::crc32c(&zeroed)));
        assert_eq!(stored, u64::from(frame_checksum(&log[..length], false)));
    }

    #[test]
    fn term_lengths_are_powers_of_two_in_range() {
        assert!(LogFormat::new(TERM_LENGTH_MIN).is_ok());
        assert!(LogFormat::new(TERM_LENGTH_MAX).is_ok());
        for bad in [
            0,
            TERM_LENGTH_MIN / 2,
            TERM_LENGTH_MIN + 32,
            TERM_LENGTH_MAX * 2,
        ] {
            assert_eq!(LogFormat::new(bad), Err(TermLengthError(bad)));
        }
        let format = LogFormat::new(TERM_LENGTH_MIN).unwrap();
        assert_eq!(format.term_id(3 * TERM_LENGTH_MIN + 64), 3);
        assert_eq!(format.term_offset(3 * TERM_LENGTH_MIN + 64), 64);
        assert_eq!(
            format.term_id((1 << 32) * TERM_LENGTH_MIN),
            0,
            "term ids wrap"
        );
    }

    #[test]
    fn bad_lengths_and_unknown_events_are_errors_not_panics() {
        let mut bytes = [0u8; 40];
        bytes[0..4].copy_from_slice(&u32::MAX.to_le_bytes());
        bytes[6] = 1;
        bytes[5] = data_flags::UNFRAGMENTED;
        bytes[16..20].copy_from_slice(&LOG_STREAM_ID.to_le_bytes());
        assert!(matches!(
            Entry::read(&bytes, 0),
            Err(EntryError::InvalidLength { .. })
        ));
        assert!(matches!(
            Entry::read(&bytes[..3], 0),
            Err(EntryError::Truncated { .. })
        ));
        assert_eq!(padded_length(&bytes), None);
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
        reseal(&mut log);
        let entry = Entry::read(&log, 0).unwrap();
        assert!(matches!(entry.event(), Err(EntryError::Unknown { .. })));
    }
}
