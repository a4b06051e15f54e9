//! The archive's typed errors. Each names the file, recording or position it is about, so an
//! operator can act on the message alone.

use std::path::{Path, PathBuf};

use tern_codec::{EncodeError, SemanticVersion};

use crate::catalog::RecordingState;
use crate::segment::{FrameFault, SegmentHeader, SegmentHeaderError};

/// What went wrong with the catalog.
#[derive(Debug, thiserror::Error)]
pub enum CatalogError {
    /// The file system refused.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// No catalog where one was expected.
    #[error("{path}: no catalog here (is this an archive directory?)")]
    Missing {
        /// Where it was looked for.
        path: PathBuf,
    },
    /// The file is not a tern catalog, or its header is damaged.
    #[error("{path} is not a tern catalog: {reason}")]
    NotACatalog {
        /// The file.
        path: PathBuf,
        /// What gave it away.
        reason: String,
    },
    /// A catalog of another major version: its layout is unknown to this build.
    #[error(
        "{path} is catalog version {found}; this build reads major version {}.x ({supported}): \
         use a tern that matches, or migrate it with one that reads both",
        supported.major
    )]
    IncompatibleVersion {
        /// The file.
        path: PathBuf,
        /// The file's version.
        found: SemanticVersion,
        /// This build's.
        supported: SemanticVersion,
    },
    /// An older minor version: readable, but a writer must migrate it first.
    #[error("{path} is catalog version {found}, older than {current}: run `tern archive migrate`")]
    NeedsMigration {
        /// The file.
        path: PathBuf,
        /// The file's version.
        found: SemanticVersion,
        /// This build's.
        current: SemanticVersion,
    },
    /// Another process (a running archive) holds the catalog.
    #[error(
        "{path} is in use by a running archive: stop it, or ask it through its control channel"
    )]
    Locked {
        /// The file.
        path: PathBuf,
    },
    /// A write through a catalog opened for reading.
    #[error("{path} was opened read-only")]
    ReadOnly {
        /// The file.
        path: PathBuf,
    },
    /// No recording with this id.
    #[error("no recording {recording_id} in the catalog")]
    UnknownRecording {
        /// The id asked for.
        recording_id: i64,
    },
    /// A descriptor's body does not match its checksum.
    #[error(
        "recording {recording_id}: descriptor checksum {stored:#010x} does not match its bytes \
         ({computed:#010x})"
    )]
    ChecksumMismatch {
        /// The recording.
        recording_id: i64,
        /// The checksum stored.
        stored: u32,
        /// The checksum of the bytes found.
        computed: u32,
    },
    /// A descriptor that does not hold together.
    #[error("recording {recording_id}: corrupt descriptor: {what}")]
    Corrupt {
        /// The recording.
        recording_id: i64,
        /// What is wrong.
        what: String,
    },
    /// A state that cannot be set.
    #[error("recording {recording_id}: cannot set state {state:?}")]
    InvalidState {
        /// The recording.
        recording_id: i64,
        /// The state asked for.
        state: RecordingState,
    },
    /// A position that cannot be stored.
    #[error("{what} {position} is not a non-negative multiple of 32")]
    InvalidPosition {
        /// Which position.
        what: &'static str,
        /// Its value.
        position: i64,
    },
    /// The catalog holds as many recordings as it may.
    #[error("{path} holds {capacity} recordings, its limit")]
    Full {
        /// The file.
        path: PathBuf,
        /// Its capacity.
        capacity: usize,
    },
    /// A descriptor does not fit (a channel or source identity too long).
    #[error("descriptor does not fit: {0}")]
    Encode(EncodeError),
}

impl CatalogError {
    pub(crate) fn io(path: &Path, source: std::io::Error) -> Self {
        Self::Io {
            path: path.to_path_buf(),
            source,
        }
    }
}

/// What went wrong with a segment file or a frame in it.
#[derive(Debug, thiserror::Error)]
pub enum SegmentError {
    /// The file system refused.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// A segment header that does not check.
    #[error("{path}: {error}")]
    Header {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        error: SegmentHeaderError,
    },
    /// A segment that belongs to another recording or layout.
    #[error("{path}: header {found:?} does not match the recording's {expected:?}")]
    Mismatch {
        /// The file.
        path: PathBuf,
        /// The header found.
        found: Box<SegmentHeader>,
        /// The header expected.
        expected: Box<SegmentHeader>,
    },
    /// A segment the catalog says exists is not there.
    #[error("recording {recording_id}: segment {path} for position {position} is missing")]
    MissingSegment {
        /// The file.
        path: PathBuf,
        /// The recording.
        recording_id: i64,
        /// The position wanted.
        position: i64,
    },
    /// A recording whose layout does not hold together.
    #[error("recording {recording_id}: {what}")]
    Layout {
        /// The recording.
        recording_id: i64,
        /// What is wrong.
        what: String,
    },
    /// A position that cannot be read from.
    #[error("recording {recording_id}: position {position} is {reason}")]
    Position {
        /// The recording.
        recording_id: i64,
        /// The position.
        position: i64,
        /// Why.
        reason: &'static str,
    },
    /// A block handed to a writer that it cannot take.
    #[error("recording {recording_id} at position {position}: {reason}")]
    Block {
        /// The recording.
        recording_id: i64,
        /// Where.
        position: i64,
        /// Why.
        reason: String,
    },
    /// A frame that must not be trusted.
    #[error("recording {recording_id} at position {position}: {fault}")]
    Frame {
        /// The recording.
        recording_id: i64,
        /// Where the frame lies.
        position: i64,
        /// What is wrong.
        fault: FrameFault,
    },
}

impl SegmentError {
    pub(crate) fn io(path: &Path, source: std::io::Error) -> Self {
        Self::Io {
            path: path.to_path_buf(),
            source,
        }
    }
}

/// What went wrong in the archive's own work.
#[derive(Debug, thiserror::Error)]
pub enum ArchiveError {
    /// The catalog refused.
    #[error(transparent)]
    Catalog(#[from] CatalogError),
    /// A segment file refused.
    #[error(transparent)]
    Segment(#[from] SegmentError),
    /// The media driver refused, or did not answer.
    #[error("driver: {0}")]
    Driver(String),
    /// A request that cannot be carried out, and why.
    #[error("{0}")]
    Refused(String),
    /// The file system refused.
    #[error("{path}: {source}")]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
}

impl ArchiveError {
    pub(crate) fn io(path: &Path, source: std::io::Error) -> Self {
        Self::Io {
            path: path.to_path_buf(),
            source,
        }
    }
}
