//! The catalog: one memory-mapped file, `archive.catalog`, describing every recording.
//!
//! ```text
//! file header (1024 bytes, offset 0):
//!    0  magic              u64   "TERNCATG"
//!    8  version            u32   semantic version, composed (major << 16 | minor << 8 | patch)
//!   12  header_length      u32   1024
//!   16  descriptor_length  u32   1024
//!   20  header_checksum    u32   CRC32C of bytes 0..20
//!   24  next_recording_id  i64   ids below it have been handed out (release store)
//!   32  reserved, zero
//!
//! descriptor slot (1024 bytes at 1024 + recording_id * 1024):
//!    0  state              i32   0 free, 1 valid, 2 invalid, 3 deleted (stored last, release)
//!    4  body_length        u32   bytes of body at offset 64
//!    8  body_checksum      u32   CRC32C of the body
//!   12  reserved           u32
//!   16  start_position     i64   first recorded position (moves up when segments are detached)
//!   24  stop_position      i64   end of what is recorded: advanced while recording (release)
//!   32  stop_timestamp     i64   epoch ms when the recording stopped; -1 while it is active
//!   40  reserved, zero
//!   64  body               a `recording_descriptor` message (tern message header + block +
//!                          channel + source identity), at most 960 bytes
//! ```
//!
//! The body holds what never changes once a recording starts, so its checksum is written once;
//! the three positions and the timestamp in the slot header change while recording and are
//! checked by range instead (`start <= stop`, both frame-aligned) and, after a crash, repaired
//! from the segment files. Ids are slot indexes and are never reused: a deleted recording keeps
//! its slot, so an id in an operator's notes never names a different recording later.
//!
//! Memory and threads: the archive agent that opened the catalog with [`Catalog::open`] is its
//! only writer; it holds an exclusive lock on the file while it has it open, so a tool that
//! would write (`tern archive mark-valid`, ...) is refused while the archive runs. Readers in
//! other processes ([`Catalog::open_read_only`]) map the same file and read the slot header's
//! positions with atomic loads; they see a new slot once its state is stored (release after the
//! body and checksum).

use std::fs::{File, OpenOptions};
use std::path::{Path, PathBuf};

use tern_codec::SemanticVersion;
use tern_engine::concurrent::atomic_buffer::AtomicBuffer;
use tern_engine::mapped_file::MappedFile;

use crate::ARCHIVE_CATALOG;
use crate::error::CatalogError;

/// The catalog format's version, written in the file header and every descriptor body.
pub const ARCHIVE_CATALOG_VERSION: SemanticVersion = ARCHIVE_CATALOG.version;
/// The catalog file's name inside the archive directory.
pub const CATALOG_FILE_NAME: &str = "archive.catalog";
/// "TERNCATG", little-endian.
pub const CATALOG_MAGIC: u64 = u64::from_le_bytes(*b"TERNCATG");
/// Bytes of the file header.
pub const HEADER_LENGTH: usize = 1024;
/// Bytes of each descriptor slot.
pub const DESCRIPTOR_LENGTH: usize = 1024;
/// Bytes of a slot's header, before the body.
pub const SLOT_HEADER_LENGTH: usize = 64;
/// The most bytes a descriptor body may take.
pub const BODY_MAX_LENGTH: usize = DESCRIPTOR_LENGTH - SLOT_HEADER_LENGTH;
/// The most recordings one catalog holds: 2^20 slots, a 1 GiB file.
pub const RECORDINGS_MAX: usize = 1 << 20;
/// Slots a new catalog has room for; it doubles when full.
pub const INITIAL_CAPACITY: usize = 64;
/// The longest channel a descriptor holds.
pub const CHANNEL_MAX: usize = 512;
/// A position or timestamp not known yet.
pub const NULL_VALUE: i64 = -1;

const MAGIC_OFFSET: usize = 0;
const VERSION_OFFSET: usize = 8;
const HEADER_LENGTH_OFFSET: usize = 12;
const DESCRIPTOR_LENGTH_OFFSET: usize = 16;
const HEADER_CHECKSUM_OFFSET: usize = 20;
const NEXT_RECORDING_ID_OFFSET: usize = 24;

const STATE_OFFSET: usize = 0;
const BODY_LENGTH_OFFSET: usize = 4;
const BODY_CHECKSUM_OFFSET: usize = 8;
const START_POSITION_OFFSET: usize = 16;
const STOP_POSITION_OFFSET: usize = 24;
const STOP_TIMESTAMP_OFFSET: usize = 32;
const _: () = assert!(STOP_TIMESTAMP_OFFSET + 8 <= SLOT_HEADER_LENGTH);
const _: () =
    assert!(SLOT_HEADER_LENGTH.is_multiple_of(8) && DESCRIPTOR_LENGTH.is_multiple_of(1024));
const _: () = assert!(
    NEXT_RECORDING_ID_OFFSET.is_multiple_of(8) && NEXT_RECORDING_ID_OFFSET + 8 <= HEADER_LENGTH
);

tern_codec::enumeration! {
    /// What a descriptor slot says of its recording.
    pub enum RecordingState: i32 {
        /// Never used.
        Free = 0,
        /// A recording that can be listed, replayed and extended.
        Valid = 1,
        /// Kept, but refused for replay and extension until marked valid again (an operator's
        /// call, or a repair that found it inconsistent).
        Invalid = 2,
        /// Deleted: its segment files are gone; the slot stays so the id is never reused.
        Deleted = 3,
    }
}

tern_codec::message! {
    /// What never changes about a recording once it starts: the catalog body of a descriptor.
    pub mod recording_descriptor (schema = ARCHIVE_CATALOG, template = 1, policy = Terminate) {
        block {
            /// The recording's id, equal to its slot index.
            recording_id @ 0 since 0: i64,
            /// Epoch ms when recording started.
            start_timestamp @ 8 since 0: i64,
            /// The stream's initial term id.
            initial_term_id @ 16 since 0: i32,
            /// The stream's term length.
            term_length @ 20 since 0: u32,
            /// The stream's MTU.
            mtu @ 24 since 0: u32,
            /// Bytes of stream per segment file (a multiple of the term length).
            segment_length @ 28 since 0: u32,
            /// The recorded publication's session.
            session_id @ 32 since 0: i32,
            /// The stream.
            stream_id @ 36 since 0: i32,
            /// The position the recording started at: segment files are laid out from its term.
            origin_position @ 40 since 0: i64,
        }
        groups {}
        var_data {
            /// The channel recorded.
            channel (max = 512) since 0: str,
            /// Where the stream came from (`ipc`, or a UDP source address).
            source_identity (max = 256) since 0: str,
        }
    }
}

/// What a recording is, as the catalog describes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordingDescriptor {
    /// The recording's id.
    pub recording_id: i64,
    /// Its state.
    pub state: RecordingState,
    /// First position held (moves up when segments are detached or purged).
    pub start_position: i64,
    /// End of what is recorded; advanced while recording.
    pub stop_position: i64,
    /// Epoch ms when recording started.
    pub start_timestamp: i64,
    /// Epoch ms when it stopped; [`NULL_VALUE`] while active.
    pub stop_timestamp: i64,
    /// The position the recording started at; segment files are laid out from its term.
    pub origin_position: i64,
    /// The stream's initial term id.
    pub initial_term_id: i32,
    /// The stream's term length.
    pub term_length: u32,
    /// The stream's MTU.
    pub mtu: u32,
    /// Bytes of stream per segment file.
    pub segment_length: u32,
    /// The recorded publication's session.
    pub session_id: i32,
    /// The stream.
    pub stream_id: i32,
    /// The channel recorded.
    pub channel: String,
    /// Where the stream came from.
    pub source_identity: String,
}

impl RecordingDescriptor {
    /// Whether the recording is still being written (no stop timestamp yet).
    pub fn is_active(&self) -> bool {
        self.stop_timestamp == NULL_VALUE
    }

    /// Bytes of stream held.
    pub fn length(&self) -> i64 {
        self.stop_position - self.start_position
    }
}

/// What a new recording starts from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewRecording<'a> {
    /// Where recording starts (the image's position when it joined).
    pub start_position: i64,
    /// Epoch ms now.
    pub start_timestamp: i64,
    /// The stream's initial term id.
    pub initial_term_id: i32,
    /// The stream's term length.
    pub term_length: u32,
    /// The stream's MTU.
    pub mtu: u32,
    /// Bytes per segment file.
    pub segment_length: u32,
    /// The publication's session.
    pub session_id: i32,
    /// The stream.
    pub stream_id: i32,
    /// The channel.
    pub channel: &'a str,
    /// Where the stream came from.
    pub source_identity: &'a str,
}

/// The catalog, mapped.
#[derive(Debug)]
pub struct Catalog {
    map: MappedFile,
    path: PathBuf,
    /// Slots the mapping holds.
    capacity: usize,
    /// Held with an exclusive lock by a writer; `None` for a reader.
    lock: Option<File>,
    version: SemanticVersion,
}

impl Catalog {
    /// Opens the catalog in `dir` for writing, creating it when absent, and locks it: one writer
    /// at a time. Fails with [`CatalogError::Locked`] when another process holds it.
    pub fn open(dir: &Path) -> Result<Self, CatalogError> {
        let path = dir.join(CATALOG_FILE_NAME);
        if !path.exists() {
            create(&path)?;
        }
        let lock = lock(&path)?;
        let mut catalog = Self::map(&path, Some(lock))?;
        if catalog.version < ARCHIVE_CATALOG.version {
            return Err(CatalogError::NeedsMigration {
                path,
                found: catalog.version,
                current: ARCHIVE_CATALOG.version,
            });
        }
        catalog.repair_next_recording_id();
        Ok(catalog)
    }

    /// Opens the catalog in `dir` for reading while an archive may be writing it. Writes through
    /// a reader are refused.
    pub fn open_read_only(dir: &Path) -> Result<Self, CatalogError> {
        let path = dir.join(CATALOG_FILE_NAME);
        if !path.exists() {
            return Err(CatalogError::Missing { path });
        }
        Self::map(&path, None)
    }

    fn map(path: &Path, lock: Option<File>) -> Result<Self, CatalogError> {
        let map = MappedFile::open(path).map_err(|source| CatalogError::io(path, source))?;
        let version = validate_header(path, &map.buffer())?;
        let capacity = (map.len() - HEADER_LENGTH) / DESCRIPTOR_LENGTH;
        Ok(Self {
            map,
            path: path.to_path_buf(),
            capacity,
            lock,
            version,
        })
    }

    /// The file's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The version of the file as found (a writer's is always the current one).
    pub fn version(&self) -> SemanticVersion {
        self.version
    }

    /// The id the next recording will get: every id below it has a slot.
    pub fn next_recording_id(&self) -> i64 {
        let next = self.map.buffer().get_i64_volatile(NEXT_RECORDING_ID_OFFSET);
        // A reader's mapping may be older than the writer's file: count only the slots it maps.
        next.clamp(0, i64::try_from(self.capacity).unwrap_or(i64::MAX))
    }

    fn slot(&self, recording_id: i64) -> Result<AtomicBuffer<'_>, CatalogError> {
        if recording_id < 0 || recording_id >= self.next_recording_id() {
            return Err(CatalogError::UnknownRecording { recording_id });
        }
        let index = usize::try_from(recording_id).expect("checked non-negative");
        Ok(self
            .map
            .buffer()
            .view(HEADER_LENGTH + index * DESCRIPTOR_LENGTH, DESCRIPTOR_LENGTH))
    }

    fn writer(&self) -> Result<(), CatalogError> {
        match self.lock {
            Some(_) => Ok(()),
            None => Err(CatalogError::ReadOnly {
                path: self.path.clone(),
            }),
        }
    }

    /// Adds a recording; returns its id. Its state is valid, its stop position its start, and it
    /// is active until [`Catalog::stop`].
    pub fn add(&mut self, new: &NewRecording<'_>) -> Result<i64, CatalogError> {
        self.writer()?;
        if new.start_position < 0 || new.start_position % 32 != 0 {
            return Err(CatalogError::InvalidPosition {
                what: "start position",
                position: new.start_position,
            });
        }
        let recording_id = self.next_recording_id();
        if usize::try_from(recording_id).unwrap_or(usize::MAX) >= self.capacity {
            self.grow()?;
        }
        let mut body = [0u8; BODY_MAX_LENGTH];
        let length = encode_body(&mut body, recording_id, new)?;
        let next = recording_id + 1;
        let buffer = self.map.buffer();
        buffer.put_i64_ordered(NEXT_RECORDING_ID_OFFSET, next);
        let slot = self.slot(recording_id)?;
        write_body(&slot, &body[..length]);
        slot.put_i64(START_POSITION_OFFSET, new.start_position);
        slot.put_i64(STOP_POSITION_OFFSET, new.start_position);
        slot.put_i64(STOP_TIMESTAMP_OFFSET, NULL_VALUE);
        // Published last: pairs with the acquire load in `descriptor`.
        slot.put_i32_ordered(STATE_OFFSET, RecordingState::Valid.to_wire());
        Ok(recording_id)
    }

    fn grow(&mut self) -> Result<(), CatalogError> {
        let capacity = (self.capacity * 2).min(RECORDINGS_MAX);
        if capacity <= self.capacity {
            return Err(CatalogError::Full {
                path: self.path.clone(),
                capacity: self.capacity,
            });
        }
        let length = HEADER_LENGTH + capacity * DESCRIPTOR_LENGTH;
        let file = OpenOptions::new()
            .write(true)
            .open(&self.path)
            .map_err(|source| CatalogError::io(&self.path, source))?;
        file.set_len(u64::try_from(length).expect("under 1 GiB"))
            .map_err(|source| CatalogError::io(&self.path, source))?;
        self.map =
            MappedFile::open(&self.path).map_err(|source| CatalogError::io(&self.path, source))?;
        self.capacity = capacity;
        tracing::info!(path = %self.path.display(), capacity, "catalog grown");
        Ok(())
    }

    /// The recording's descriptor, checked: its state, its body's checksum and version, its id,
    /// and its positions' ranges.
    pub fn descriptor(&self, recording_id: i64) -> Result<RecordingDescriptor, CatalogError> {
        let slot = self.slot(recording_id)?;
        // Pairs with the release store of the state in `add`.
        let state = slot.get_i32_volatile(STATE_OFFSET);
        let state = match RecordingState::from_wire(state) {
            RecordingState::Unknown(value) => {
                return Err(CatalogError::Corrupt {
                    recording_id,
                    what: format!("state {value} is not one of 0 to 3"),
                });
            }
            known => known,
        };
        if state == RecordingState::Free {
            return Err(CatalogError::UnknownRecording { recording_id });
        }
        let mut body = [0u8; BODY_MAX_LENGTH];
        let body = read_body(&slot, recording_id, &mut body)?;
        let stored = slot.get_i32(BODY_CHECKSUM_OFFSET).cast_unsigned();
        let computed = crc32c::crc32c(body);
        if stored != computed {
            return Err(CatalogError::ChecksumMismatch {
                recording_id,
                stored,
                computed,
            });
        }
        let decoded =
            recording_descriptor::Decoder::decode(body).map_err(|error| CatalogError::Corrupt {
                recording_id,
                what: format!("descriptor body: {error}"),
            })?;
        if decoded.recording_id() != recording_id {
            return Err(CatalogError::Corrupt {
                recording_id,
                what: format!("its body names recording {}", decoded.recording_id()),
            });
        }
        let descriptor = RecordingDescriptor {
            recording_id,
            state,
            start_position: slot.get_i64_volatile(START_POSITION_OFFSET),
            stop_position: slot.get_i64_volatile(STOP_POSITION_OFFSET),
            start_timestamp: decoded.start_timestamp(),
            stop_timestamp: slot.get_i64_volatile(STOP_TIMESTAMP_OFFSET),
            origin_position: decoded.origin_position(),
            initial_term_id: decoded.initial_term_id(),
            term_length: decoded.term_length(),
            mtu: decoded.mtu(),
            segment_length: decoded.segment_length(),
            session_id: decoded.session_id(),
            stream_id: decoded.stream_id(),
            channel: decoded.channel().to_owned(),
            source_identity: decoded.source_identity().to_owned(),
        };
        check_ranges(&descriptor)?;
        Ok(descriptor)
    }

    /// A recording's stop position and whether it is active, read from its slot alone (no
    /// body check): what a replay following a live recording asks every cycle.
    pub fn extent(&self, recording_id: i64) -> Result<(i64, bool), CatalogError> {
        let slot = self.slot(recording_id)?;
        let stop = slot.get_i64_volatile(STOP_POSITION_OFFSET);
        let active = slot.get_i64_volatile(STOP_TIMESTAMP_OFFSET) == NULL_VALUE;
        Ok((stop, active))
    }

    /// The state stored in a slot, read without checking the rest: tools use it to name what
    /// they found in a slot whose descriptor does not check.
    pub fn raw_state(&self, recording_id: i64) -> Result<i32, CatalogError> {
        Ok(self.slot(recording_id)?.get_i32_volatile(STATE_OFFSET))
    }

    /// Every slot in id order, each checked: a corrupt one is reported in place, not skipped.
    pub fn entries(&self) -> impl Iterator<Item = Result<RecordingDescriptor, CatalogError>> + '_ {
        (0..self.next_recording_id()).map(|recording_id| self.descriptor(recording_id))
    }

    /// Advances a recording's stop position (release): everything below it is written.
    pub fn set_stop_position(&self, recording_id: i64, position: i64) -> Result<(), CatalogError> {
        self.writer()?;
        self.slot(recording_id)?
            .put_i64_ordered(STOP_POSITION_OFFSET, position);
        Ok(())
    }

    /// Marks a recording stopped at `position`.
    pub fn stop(
        &self,
        recording_id: i64,
        position: i64,
        timestamp: i64,
    ) -> Result<(), CatalogError> {
        self.writer()?;
        let slot = self.slot(recording_id)?;
        slot.put_i64_ordered(STOP_POSITION_OFFSET, position);
        slot.put_i64_ordered(STOP_TIMESTAMP_OFFSET, timestamp);
        Ok(())
    }

    /// Reopens a stopped recording for extension: it is active again from its stop position.
    pub fn reactivate(&self, recording_id: i64) -> Result<(), CatalogError> {
        self.writer()?;
        self.slot(recording_id)?
            .put_i64_ordered(STOP_TIMESTAMP_OFFSET, NULL_VALUE);
        Ok(())
    }

    /// Moves a recording's start position (segments detached or purged below it).
    pub fn set_start_position(&self, recording_id: i64, position: i64) -> Result<(), CatalogError> {
        self.writer()?;
        self.slot(recording_id)?
            .put_i64_ordered(START_POSITION_OFFSET, position);
        Ok(())
    }

    /// Sets a recording's state. A slot that was never used stays free.
    pub fn set_state(&self, recording_id: i64, state: RecordingState) -> Result<(), CatalogError> {
        self.writer()?;
        if matches!(state, RecordingState::Free | RecordingState::Unknown(_)) {
            return Err(CatalogError::InvalidState {
                recording_id,
                state,
            });
        }
        let slot = self.slot(recording_id)?;
        if slot.get_i32_volatile(STATE_OFFSET) == RecordingState::Free.to_wire() {
            return Err(CatalogError::UnknownRecording { recording_id });
        }
        slot.put_i32_ordered(STATE_OFFSET, state.to_wire());
        Ok(())
    }

    /// Writes the body checksum again from the body as it is: `verify --apply-checksum`, for an
    /// operator who has checked a body by other means. Returns the checksum stored.
    pub fn apply_checksum(&self, recording_id: i64) -> Result<u32, CatalogError> {
        self.writer()?;
        let slot = self.slot(recording_id)?;
        let mut body = [0u8; BODY_MAX_LENGTH];
        let checksum = crc32c::crc32c(read_body(&slot, recording_id, &mut body)?);
        slot.put_i32(BODY_CHECKSUM_OFFSET, checksum.cast_signed());
        Ok(checksum)
    }

    /// Upgrades the catalog in `dir` from an older minor version to `target` (this build's):
    /// every descriptor body is read at its version and written again at `target`'s (fields a
    /// minor version added take their defaults), then the header says `target`. Takes the
    /// writer's lock. Returns the version found; a catalog at `target` is left as it is, and
    /// one newer than `target` (written by a newer tern) is refused.
    pub fn migrate(
        dir: &Path,
        target: SemanticVersion,
        mut progress: impl FnMut(i64, i64),
    ) -> Result<SemanticVersion, CatalogError> {
        let path = dir.join(CATALOG_FILE_NAME);
        if !path.exists() {
            return Err(CatalogError::Missing { path });
        }
        let lock = lock(&path)?;
        let catalog = Self::map(&path, Some(lock))?;
        let found = catalog.version;
        if found == target {
            return Ok(found);
        }
        if (found.major, found.minor) > (target.major, target.minor) {
            return Err(CatalogError::IncompatibleVersion {
                path,
                found,
                supported: target,
            });
        }
        let total = catalog.next_recording_id();
        for recording_id in 0..total {
            progress(recording_id, total);
            let slot = catalog.slot(recording_id)?;
            if slot.get_i32_volatile(STATE_OFFSET) == RecordingState::Free.to_wire() {
                continue;
            }
            let descriptor = catalog.descriptor(recording_id)?;
            let mut body = [0u8; BODY_MAX_LENGTH];
            let length = encode_body(
                &mut body,
                recording_id,
                &NewRecording {
                    start_position: descriptor.origin_position,
                    start_timestamp: descriptor.start_timestamp,
                    initial_term_id: descriptor.initial_term_id,
                    term_length: descriptor.term_length,
                    mtu: descriptor.mtu,
                    segment_length: descriptor.segment_length,
                    session_id: descriptor.session_id,
                    stream_id: descriptor.stream_id,
                    channel: &descriptor.channel,
                    source_identity: &descriptor.source_identity,
                },
            )?;
            write_body(&slot, &body[..length]);
        }
        write_header(&catalog.map.buffer(), target);
        catalog.flush()?;
        progress(total, total);
        tracing::info!(path = %path.display(), %found, %target, "catalog migrated");
        Ok(found)
    }

    /// Writes the mapping's dirty pages to the file (msync) and waits for them.
    pub fn flush(&self) -> Result<(), CatalogError> {
        self.map
            .flush()
            .map_err(|source| CatalogError::io(&self.path, source))
    }

    /// After a crash between handing out an id and storing its slot's state, the id is handed
    /// out again: the next id is one past the last slot in use.
    fn repair_next_recording_id(&mut self) {
        let buffer = self.map.buffer();
        let stored = buffer.get_i64_volatile(NEXT_RECORDING_ID_OFFSET);
        let mut next = stored.clamp(0, i64::try_from(self.capacity).unwrap_or(i64::MAX));
        while next > 0 {
            let index = usize::try_from(next - 1).expect("positive");
            let state = buffer.get_i32_volatile(HEADER_LENGTH + index * DESCRIPTOR_LENGTH);
            if state != RecordingState::Free.to_wire() {
                break;
            }
            next -= 1;
        }
        if next != stored {
            tracing::warn!(
                stored,
                repaired = next,
                "catalog next recording id repaired"
            );
            buffer.put_i64_ordered(NEXT_RECORDING_ID_OFFSET, next);
        }
    }
}

/// Reads a slot's body into `buffer`, its length checked; returns the body.
fn read_body<'b>(
    slot: &AtomicBuffer<'_>,
    recording_id: i64,
    buffer: &'b mut [u8; BODY_MAX_LENGTH],
) -> Result<&'b [u8], CatalogError> {
    let length = usize::try_from(slot.get_i32(BODY_LENGTH_OFFSET)).unwrap_or(usize::MAX);
    if length > BODY_MAX_LENGTH {
        return Err(CatalogError::Corrupt {
            recording_id,
            what: format!("body length {length} exceeds {BODY_MAX_LENGTH}"),
        });
    }
    slot.get_bytes(SLOT_HEADER_LENGTH, &mut buffer[..length]);
    Ok(&buffer[..length])
}

/// Writes a slot's body, its length and its checksum (the state is the caller's to publish).
fn write_body(slot: &AtomicBuffer<'_>, body: &[u8]) {
    slot.put_bytes(SLOT_HEADER_LENGTH, body);
    slot.put_i32(
        BODY_LENGTH_OFFSET,
        i32::try_from(body.len()).expect("under 1024"),
    );
    slot.put_i32(BODY_CHECKSUM_OFFSET, crc32c::crc32c(body).cast_signed());
}

/// Writes a new, empty catalog file.
fn create(path: &Path) -> Result<(), CatalogError> {
    let length = HEADER_LENGTH + INITIAL_CAPACITY * DESCRIPTOR_LENGTH;
    let map = MappedFile::create(path, length).map_err(|source| CatalogError::io(path, source))?;
    let buffer = map.buffer();
    write_header(&buffer, ARCHIVE_CATALOG_VERSION);
    buffer.put_i64_ordered(NEXT_RECORDING_ID_OFFSET, 0);
    map.flush()
        .map_err(|source| CatalogError::io(path, source))?;
    tracing::info!(path = %path.display(), "catalog created");
    Ok(())
}

/// Writes the file header's fixed fields and their checksum at `version`.
fn write_header(buffer: &AtomicBuffer<'_>, version: SemanticVersion) {
    let mut header = [0u8; HEADER_CHECKSUM_OFFSET];
    header[MAGIC_OFFSET..VERSION_OFFSET].copy_from_slice(&CATALOG_MAGIC.to_le_bytes());
    header[VERSION_OFFSET..HEADER_LENGTH_OFFSET].copy_from_slice(&version.compose().to_le_bytes());
    header[HEADER_LENGTH_OFFSET..DESCRIPTOR_LENGTH_OFFSET]
        .copy_from_slice(&u32::try_from(HEADER_LENGTH).expect("1024").to_le_bytes());
    header[DESCRIPTOR_LENGTH_OFFSET..HEADER_CHECKSUM_OFFSET].copy_from_slice(
        &u32::try_from(DESCRIPTOR_LENGTH)
            .expect("1024")
            .to_le_bytes(),
    );
    buffer.put_bytes(0, &header);
    buffer.put_i32(
        HEADER_CHECKSUM_OFFSET,
        crc32c::crc32c(&header).cast_signed(),
    );
}

/// Takes the writer's lock on the catalog file.
fn lock(path: &Path) -> Result<File, CatalogError> {
    let file = OpenOptions::new()
        .read(true)
        .open(path)
        .map_err(|source| CatalogError::io(path, source))?;
    match file.try_lock() {
        Ok(()) => Ok(file),
        Err(std::fs::TryLockError::WouldBlock) => Err(CatalogError::Locked {
            path: path.to_path_buf(),
        }),
        Err(std::fs::TryLockError::Error(source)) => Err(CatalogError::io(path, source)),
    }
}

/// Checks the file header; returns the file's version.
fn validate_header(
    path: &Path,
    buffer: &AtomicBuffer<'_>,
) -> Result<SemanticVersion, CatalogError> {
    let length = buffer.capacity();
    let not_a_catalog = |reason: String| CatalogError::NotACatalog {
        path: path.to_path_buf(),
        reason,
    };
    if length < HEADER_LENGTH || !(length - HEADER_LENGTH).is_multiple_of(DESCRIPTOR_LENGTH) {
        return Err(not_a_catalog(format!(
            "{length} bytes is not a 1024-byte header plus whole 1024-byte descriptors"
        )));
    }
    let mut header = [0u8; HEADER_CHECKSUM_OFFSET];
    buffer.get_bytes(0, &mut header);
    let magic = u64::from_le_bytes(header[..8].try_into().expect("8 bytes"));
    if magic != CATALOG_MAGIC {
        return Err(not_a_catalog(format!(
            "magic {magic:#018x} is not TERNCATG"
        )));
    }
    let composed = u32::from_le_bytes(header[8..12].try_into().expect("4 bytes"));
    let version = SemanticVersion::decompose(composed)
        .map_err(|_| not_a_catalog(format!("version field {composed:#x} is not a version")))?;
    if version.major != ARCHIVE_CATALOG.version.major {
        return Err(CatalogError::IncompatibleVersion {
            path: path.to_path_buf(),
            found: version,
            supported: ARCHIVE_CATALOG.version,
        });
    }
    let stored = buffer.get_i32(HEADER_CHECKSUM_OFFSET).cast_unsigned();
    let computed = crc32c::crc32c(&header);
    if stored != computed {
        return Err(not_a_catalog(format!(
            "header checksum {stored:#010x} does not match its bytes ({computed:#010x})"
        )));
    }
    let header_length = u32::from_le_bytes(header[12..16].try_into().expect("4 bytes"));
    let descriptor_length = u32::from_le_bytes(header[16..20].try_into().expect("4 bytes"));
    if usize::try_from(header_length).ok() != Some(HEADER_LENGTH)
        || usize::try_from(descriptor_length).ok() != Some(DESCRIPTOR_LENGTH)
    {
        return Err(not_a_catalog(format!(
            "header length {header_length} and descriptor length {descriptor_length} are not 1024"
        )));
    }
    Ok(version)
}

fn encode_body(
    body: &mut [u8],
    recording_id: i64,
    new: &NewRecording<'_>,
) -> Result<usize, CatalogError> {
    let mut encoder = recording_descriptor::Encoder::wrap(body).map_err(CatalogError::Encode)?;
    encoder
        .recording_id(recording_id)
        .start_timestamp(new.start_timestamp)
        .initial_term_id(new.initial_term_id)
        .term_length(new.term_length)
        .mtu(new.mtu)
        .segment_length(new.segment_length)
        .session_id(new.session_id)
        .stream_id(new.stream_id)
        .origin_position(new.start_position);
    Ok(encoder
        .channel(new.channel)
        .map_err(CatalogError::Encode)?
        .source_identity(new.source_identity)
        .map_err(CatalogError::Encode)?
        .finish())
}

/// The range checks a descriptor's positions must pass.
fn check_ranges(descriptor: &RecordingDescriptor) -> Result<(), CatalogError> {
    let corrupt = |what: String| CatalogError::Corrupt {
        recording_id: descriptor.recording_id,
        what,
    };
    let RecordingDescriptor {
        start_position,
        stop_position,
        origin_position,
        term_length,
        segment_length,
        ..
    } = *descriptor;
    if origin_position < 0 || origin_position % 32 != 0 {
        return Err(corrupt(format!("origin position {origin_position}")));
    }
    if start_position < origin_position || start_position % 32 != 0 {
        return Err(corrupt(format!(
            "start position {start_position} (origin {origin_position})"
        )));
    }
    if stop_position < start_position || stop_position % 32 != 0 {
        return Err(corrupt(format!(
            "stop position {stop_position} (start {start_position})"
        )));
    }
    if !term_length.is_power_of_two()
        || segment_length < term_length
        || segment_length % term_length != 0
    {
        return Err(corrupt(format!(
            "segment length {segment_length} is not a multiple of term length {term_length}"
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::FileExt;

    fn new_recording(channel: &str) -> NewRecording<'_> {
        NewRecording {
            start_position: 4096,
            start_timestamp: 1_700_000_000_000,
            initial_term_id: 7,
            term_length: 65536,
            mtu: 1408,
            segment_length: 4 * 65536,
            session_id: -12,
            stream_id: 1001,
            channel,
            source_identity: "ipc",
        }
    }

    fn poke(dir: &Path, offset: u64, bytes: &[u8]) {
        let file = OpenOptions::new()
            .write(true)
            .open(dir.join(CATALOG_FILE_NAME))
            .unwrap();
        file.write_all_at(bytes, offset).unwrap();
    }

    fn slot_offset(recording_id: u64) -> u64 {
        (HEADER_LENGTH + DESCRIPTOR_LENGTH * usize::try_from(recording_id).unwrap()) as u64
    }

    #[test]
    fn a_recording_added_reads_back_and_survives_reopening() {
        let dir = tempfile::tempdir().unwrap();
        let mut catalog = Catalog::open(dir.path()).unwrap();
        let id = catalog.add(&new_recording("tern:ipc")).unwrap();
        assert_eq!(id, 0);
        catalog.set_stop_position(id, 8192).unwrap();
        let descriptor = catalog.descriptor(id).unwrap();
        assert!(descriptor.is_active());
        assert_eq!(descriptor.stop_position, 8192);
        assert_eq!(descriptor.length(), 4096);
        catalog.stop(id, 8224, 1_700_000_000_500).unwrap();
        drop(catalog);
        let catalog = Catalog::open_read_only(dir.path()).unwrap();
        let descriptor = catalog.descriptor(id).unwrap();
        assert_eq!(
            descriptor,
            RecordingDescriptor {
                recording_id: 0,
                state: RecordingState::Valid,
                start_position: 4096,
                stop_position: 8224,
                start_timestamp: 1_700_000_000_000,
                stop_timestamp: 1_700_000_000_500,
                origin_position: 4096,
                initial_term_id: 7,
                term_length: 65536,
                mtu: 1408,
                segment_length: 262_144,
                session_id: -12,
                stream_id: 1001,
                channel: "tern:ipc".to_owned(),
                source_identity: "ipc".to_owned(),
            }
        );
        assert_eq!(catalog.version(), ARCHIVE_CATALOG.version);
    }

    #[test]
    fn the_catalog_grows_past_its_first_capacity_and_ids_stay_in_order() {
        let dir = tempfile::tempdir().unwrap();
        let mut catalog = Catalog::open(dir.path()).unwrap();
        let count = INITIAL_CAPACITY * 2 + 3;
        for expected in 0..count {
            let channel = format!("tern:udp?endpoint=localhost:{}", 20000 + expected);
            let id = catalog.add(&new_recording(&channel)).unwrap();
            assert_eq!(id, i64::try_from(expected).unwrap());
        }
        let channels: Vec<String> = catalog
            .entries()
            .map(|entry| entry.unwrap().channel)
            .collect();
        assert_eq!(channels.len(), count);
        assert_eq!(
            channels[count - 1],
            format!("tern:udp?endpoint=localhost:{}", 20000 + count - 1)
        );
    }

    #[test]
    fn a_second_writer_is_refused_while_the_first_holds_the_catalog() {
        let dir = tempfile::tempdir().unwrap();
        let catalog = Catalog::open(dir.path()).unwrap();
        let error = Catalog::open(dir.path()).unwrap_err();
        assert!(matches!(error, CatalogError::Locked { .. }), "{error}");
        let reader = Catalog::open_read_only(dir.path()).unwrap();
        let error = reader.set_stop_position(0, 0).unwrap_err();
        assert!(matches!(error, CatalogError::ReadOnly { .. }), "{error}");
        drop(catalog);
        Catalog::open(dir.path()).unwrap();
    }

    #[test]
    fn a_flipped_body_byte_is_named_by_recording_and_checksum() {
        let dir = tempfile::tempdir().unwrap();
        let mut catalog = Catalog::open(dir.path()).unwrap();
        catalog.add(&new_recording("tern:ipc")).unwrap();
        catalog.add(&new_recording("tern:ipc")).unwrap();
        poke(dir.path(), slot_offset(1) + 64 + 40, &[0xFF]);
        let error = catalog.descriptor(1).unwrap_err();
        assert!(
            matches!(
                error,
                CatalogError::ChecksumMismatch {
                    recording_id: 1,
                    ..
                }
            ),
            "{error}"
        );
        // The other recording is untouched, and listing reports the bad one in place.
        let listed: Vec<_> = catalog.entries().collect();
        assert!(listed[0].is_ok());
        assert!(listed[1].is_err());
        // An operator who vouches for the bytes re-applies the checksum.
        catalog.apply_checksum(1).unwrap();
        assert!(catalog.descriptor(1).is_ok());
    }

    #[test]
    fn hostile_slot_headers_are_errors_not_panics() {
        let dir = tempfile::tempdir().unwrap();
        let mut catalog = Catalog::open(dir.path()).unwrap();
        catalog.add(&new_recording("tern:ipc")).unwrap();
        let at = slot_offset(0);
        poke(dir.path(), at + 4, &u32::MAX.to_le_bytes());
        assert!(matches!(
            catalog.descriptor(0),
            Err(CatalogError::Corrupt { .. })
        ));
        assert!(matches!(
            catalog.apply_checksum(0),
            Err(CatalogError::Corrupt { .. })
        ));
        catalog.add(&new_recording("tern:ipc")).unwrap();
        poke(dir.path(), slot_offset(1), &9i32.to_le_bytes());
        let error = catalog.descriptor(1).unwrap_err();
        assert!(error.to_string().contains("state 9"), "{error}");
        catalog.add(&new_recording("tern:ipc")).unwrap();
        poke(dir.path(), slot_offset(2) + 24, &(-64i64).to_le_bytes());
        let error = catalog.descriptor(2).unwrap_err();
        assert!(error.to_string().contains("stop position -64"), "{error}");
        assert!(matches!(
            catalog.descriptor(3),
            Err(CatalogError::UnknownRecording { recording_id: 3 })
        ));
        assert!(matches!(
            catalog.descriptor(-1),
            Err(CatalogError::UnknownRecording { recording_id: -1 })
        ));
    }

    #[test]
    fn an_incompatible_major_version_is_refused_naming_both() {
        let dir = tempfile::tempdir().unwrap();
        drop(Catalog::open(dir.path()).unwrap());
        let mut header = [0u8; HEADER_CHECKSUM_OFFSET];
        header[..8].copy_from_slice(&CATALOG_MAGIC.to_le_bytes());
        header[8..12].copy_from_slice(&SemanticVersion::new(2, 0, 0).compose().to_le_bytes());
        header[12..16].copy_from_slice(&1024u32.to_le_bytes());
        header[16..20].copy_from_slice(&1024u32.to_le_bytes());
        poke(dir.path(), 0, &header);
        poke(dir.path(), 20, &crc32c::crc32c(&header).to_le_bytes());
        let error = Catalog::open_read_only(dir.path()).unwrap_err();
        let message = error.to_string();
        assert!(matches!(error, CatalogError::IncompatibleVersion { .. }));
        assert!(
            message.contains("2.0.0") && message.contains("1.0.0"),
            "{message}"
        );
    }

    #[test]
    fn a_damaged_header_or_a_stranger_file_is_not_a_catalog() {
        let dir = tempfile::tempdir().unwrap();
        drop(Catalog::open(dir.path()).unwrap());
        poke(dir.path(), 13, &[1]);
        let error = Catalog::open(dir.path()).unwrap_err();
        assert!(error.to_string().contains("header checksum"), "{error}");
        std::fs::write(dir.path().join(CATALOG_FILE_NAME), [0u8; 1000]).unwrap();
        let error = Catalog::open_read_only(dir.path()).unwrap_err();
        assert!(matches!(error, CatalogError::NotACatalog { .. }), "{error}");
        let empty = tempfile::tempdir().unwrap();
        assert!(matches!(
            Catalog::open_read_only(empty.path()),
            Err(CatalogError::Missing { .. })
        ));
    }

    #[test]
    fn an_id_handed_out_but_never_published_is_handed_out_again() {
        let dir = tempfile::tempdir().unwrap();
        let mut catalog = Catalog::open(dir.path()).unwrap();
        catalog.add(&new_recording("tern:ipc")).unwrap();
        drop(catalog);
        // A crash after the next id was stored and before the slot's state was.
        poke(dir.path(), 24, &3i64.to_le_bytes());
        let mut catalog = Catalog::open(dir.path()).unwrap();
        assert_eq!(catalog.next_recording_id(), 1);
        assert_eq!(catalog.add(&new_recording("tern:ipc")).unwrap(), 1);
    }

    #[test]
    fn states_change_but_a_slot_never_goes_back_to_free() {
        let dir = tempfile::tempdir().unwrap();
        let mut catalog = Catalog::open(dir.path()).unwrap();
        let id = catalog.add(&new_recording("tern:ipc")).unwrap();
        for state in [
            RecordingState::Invalid,
            RecordingState::Valid,
            RecordingState::Deleted,
        ] {
            catalog.set_state(id, state).unwrap();
            assert_eq!(catalog.descriptor(id).unwrap().state, state);
        }
        assert!(matches!(
            catalog.set_state(id, RecordingState::Free),
            Err(CatalogError::InvalidState { .. })
        ));
        let long = "x".repeat(513);
        assert!(matches!(
            catalog.add(&new_recording(&long)),
            Err(CatalogError::Encode(_))
        ));
        let mut unaligned = new_recording("tern:ipc");
        unaligned.start_position = 100;
        assert!(matches!(
            catalog.add(&unaligned),
            Err(CatalogError::InvalidPosition { .. })
        ));
        assert_eq!(catalog.next_recording_id(), 1);
    }

    #[test]
    fn migration_rewrites_every_descriptor_at_the_new_version_and_never_goes_back() {
        let dir = tempfile::tempdir().unwrap();
        let mut catalog = Catalog::open(dir.path()).unwrap();
        catalog.add(&new_recording("tern:ipc")).unwrap();
        catalog
            .add(&new_recording("tern:udp?endpoint=localhost:9000"))
            .unwrap();
        catalog.set_state(1, RecordingState::Invalid).unwrap();
        let before: Vec<_> = catalog.entries().map(Result::unwrap).collect();
        drop(catalog);
        assert_eq!(
            Catalog::migrate(dir.path(), ARCHIVE_CATALOG_VERSION, |_, _| {}).unwrap(),
            ARCHIVE_CATALOG_VERSION
        );
        let newer = SemanticVersion::new(
            ARCHIVE_CATALOG_VERSION.major,
            ARCHIVE_CATALOG_VERSION.minor + 1,
            0,
        );
        assert_eq!(
            Catalog::migrate(dir.path(), newer, |_, _| {}).unwrap(),
            ARCHIVE_CATALOG_VERSION
        );
        let catalog = Catalog::open_read_only(dir.path()).unwrap();
        assert_eq!(catalog.version(), newer);
        let after: Vec<_> = catalog.entries().map(Result::unwrap).collect();
        assert_eq!(before, after);
        drop(catalog);
        let error = Catalog::migrate(dir.path(), ARCHIVE_CATALOG_VERSION, |_, _| {}).unwrap_err();
        assert!(
            matches!(error, CatalogError::IncompatibleVersion { .. }),
            "{error}"
        );
        let held = Catalog::open(dir.path()).unwrap();
        assert!(matches!(
            Catalog::migrate(dir.path(), newer, |_, _| {}),
            Err(CatalogError::Locked { .. })
        ));
        drop(held);
    }
}
