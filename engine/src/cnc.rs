//! The command-and-control (CnC) file: the one file through which clients find and talk to a
//! driver.
//!
//! ```text
//! header (256 bytes):
//!    0  magic                      u64  "TERNCNC1"
//!    8  version                    i32  semantic version, composed; written last (release),
//!                                       so 0 means "the driver is still setting up"
//!   12  to-driver length           i32  ring buffer bytes (capacity + trailer)
//!   16  to-clients length          i32  broadcast bytes (capacity + trailer)
//!   20  counters metadata length   i32
//!   24  counters values length     i32
//!   28  error log length           i32
//!   32  client liveness timeout    i64  ns: a client silent this long is closed by the driver
//!   40  driver start time          i64  ms since the epoch
//!   48  driver pid                 i64
//! sections, in order from offset 256, each a multiple of 128 bytes:
//!   to-driver ring buffer   (clients write commands; the driver's conductor reads)
//!   to-clients broadcast    (the conductor writes responses; every client reads)
//!   counters metadata       (the conductor writes)
//!   counters values         (each counter's owner writes)
//!   distinct error log      (the driver writes)
//! ```
//!
//! Liveness both ways: the driver stamps the ring buffer's consumer heartbeat every duty cycle
//! in which it runs its timers, and a client that sees it older than its driver timeout reports
//! the driver dead; each client sends a keepalive command, and the driver closes a client it has
//! not heard from for the client liveness timeout.

use std::path::{Path, PathBuf};

use tern_codec::SemanticVersion;

use crate::concurrent::atomic_buffer::AtomicBuffer;
use crate::concurrent::{broadcast, counters, ring_buffer};
use crate::mapped_file::MappedFile;

/// The CnC file's name in the driver directory.
pub const CNC_FILE: &str = "cnc.dat";
/// Identifies a tern CnC file.
pub const CNC_MAGIC: u64 = u64::from_le_bytes(*b"TERNCNC1");
/// The version of this layout.
pub const CNC_VERSION: SemanticVersion = SemanticVersion::new(0, 1, 0);
/// Bytes of header before the sections.
pub const HEADER_LENGTH: usize = 256;

const MAGIC_OFFSET: usize = 0;
const VERSION_OFFSET: usize = 8;
const TO_DRIVER_LENGTH_OFFSET: usize = 12;
const TO_CLIENTS_LENGTH_OFFSET: usize = 16;
const COUNTERS_METADATA_LENGTH_OFFSET: usize = 20;
const COUNTERS_VALUES_LENGTH_OFFSET: usize = 24;
const ERROR_LOG_LENGTH_OFFSET: usize = 28;
const CLIENT_LIVENESS_TIMEOUT_OFFSET: usize = 32;
const START_TIMESTAMP_OFFSET: usize = 40;
const PID_OFFSET: usize = 48;
const _: () = assert!(PID_OFFSET + 8 <= HEADER_LENGTH);

/// The sizes of a CnC file's sections.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CncLayout {
    /// Capacity of the to-driver ring buffer (a power of two).
    pub to_driver_capacity: usize,
    /// Capacity of the to-clients broadcast buffer (a power of two).
    pub to_clients_capacity: usize,
    /// How many counters.
    pub counters: usize,
    /// Bytes of distinct error log (a multiple of 128).
    pub error_log_length: usize,
}

impl Default for CncLayout {
    fn default() -> Self {
        Self {
            to_driver_capacity: 1024 * 1024,
            to_clients_capacity: 1024 * 1024,
            counters: 8192,
            error_log_length: 1024 * 1024,
        }
    }
}

impl CncLayout {
    fn lengths(&self) -> [usize; 5] {
        [
            self.to_driver_capacity + ring_buffer::TRAILER_LENGTH,
            self.to_clients_capacity + broadcast::TRAILER_LENGTH,
            self.counters * counters::METADATA_LENGTH,
            self.counters * counters::VALUE_LENGTH,
            self.error_log_length,
        ]
    }

    /// Bytes of the whole file.
    pub fn file_length(&self) -> usize {
        HEADER_LENGTH + self.lengths().iter().sum::<usize>()
    }
}

/// What is wrong with a CnC file.
#[derive(Debug, thiserror::Error)]
pub enum CncError {
    /// No driver has created the file.
    #[error("no driver in {dir}: {CNC_FILE} does not exist (start one with `tern driver`)")]
    Missing {
        /// The directory looked in.
        dir: PathBuf,
    },
    /// The file could not be mapped.
    #[error("cannot map {path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// Not a tern CnC file.
    #[error("{path} is not a tern CnC file (magic {magic:#018x})")]
    Magic {
        /// The file.
        path: PathBuf,
        /// What was found.
        magic: u64,
    },
    /// The driver has not finished creating it.
    #[error("the driver in {0} is still starting")]
    NotReady(PathBuf),
    /// Written by an incompatible version.
    #[error(
        "{path} has CnC version {found}; this build speaks {CNC_VERSION} (major versions differ)"
    )]
    Version {
        /// The file.
        path: PathBuf,
        /// The version found.
        found: SemanticVersion,
    },
    /// The header's section lengths do not add up to the file.
    #[error("{path} is corrupt: its sections do not fit its {length} bytes")]
    Corrupt {
        /// The file.
        path: PathBuf,
        /// Its length.
        length: usize,
    },
}

/// The driver's identity, from the CnC header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DriverIdentity {
    /// The driver's process id.
    pub pid: i64,
    /// When it started (ms since the epoch).
    pub start_timestamp_ms: i64,
    /// How long it waits for a silent client (ns).
    pub client_liveness_timeout_ns: i64,
}

/// A mapped CnC file.
#[derive(Debug)]
pub struct CncFile {
    file: MappedFile,
    layout: CncLayout,
}

/// The sections of a CnC file.
#[derive(Debug, Clone, Copy)]
pub struct Sections<'a> {
    /// Commands from clients.
    pub to_driver: AtomicBuffer<'a>,
    /// Responses and events to clients.
    pub to_clients: AtomicBuffer<'a>,
    /// Counter metadata.
    pub counters_metadata: AtomicBuffer<'a>,
    /// Counter values.
    pub counters_values: AtomicBuffer<'a>,
    /// The distinct error log.
    pub error_log: AtomicBuffer<'a>,
}

impl CncFile {
    /// Creates the CnC file in `dir` (which must not hold one) and writes its header; the
    /// version is written last, when [`CncFile::publish`] is called.
    pub fn create(
        dir: &Path,
        layout: CncLayout,
        identity: DriverIdentity,
    ) -> Result<Self, CncError> {
        let path = dir.join(CNC_FILE);
        let file =
            MappedFile::create(&path, layout.file_length()).map_err(|source| CncError::Io {
                path: path.clone(),
                source,
            })?;
        let header = file.buffer();
        header.put_i64(MAGIC_OFFSET, CNC_MAGIC.cast_signed());
        let lengths = layout.lengths();
        for (index, offset) in [
            TO_DRIVER_LENGTH_OFFSET,
            TO_CLIENTS_LENGTH_OFFSET,
            COUNTERS_METADATA_LENGTH_OFFSET,
            COUNTERS_VALUES_LENGTH_OFFSET,
            ERROR_LOG_LENGTH_OFFSET,
        ]
        .into_iter()
        .enumerate()
        {
            header.put_i32(
                offset,
                i32::try_from(lengths[index]).expect("sections below 2 GiB"),
            );
        }
        header.put_i64(
            CLIENT_LIVENESS_TIMEOUT_OFFSET,
            identity.client_liveness_timeout_ns,
        );
        header.put_i64(START_TIMESTAMP_OFFSET, identity.start_timestamp_ms);
        header.put_i64(PID_OFFSET, identity.pid);
        Ok(Self { file, layout })
    }

    /// Marks the file ready: clients may connect from now on.
    pub fn publish(&self) {
        // Pairs with the acquire load of the version in `open`.
        self.file.buffer().put_i32_ordered(
            VERSION_OFFSET,
            i32::try_from(CNC_VERSION.compose()).unwrap_or(0),
        );
    }

    /// Opens the CnC file in `dir`, checking magic, version and layout.
    pub fn open(dir: &Path) -> Result<Self, CncError> {
        let path = dir.join(CNC_FILE);
        if !path.exists() {
            return Err(CncError::Missing {
                dir: dir.to_path_buf(),
            });
        }
        let file = MappedFile::open(&path).map_err(|source| CncError::Io {
            path: path.clone(),
            source,
        })?;
        let header = file.buffer();
        if file.len() < HEADER_LENGTH {
            return Err(CncError::Corrupt {
                path,
                length: file.len(),
            });
        }
        let magic = header.get_i64(MAGIC_OFFSET).cast_unsigned();
        if magic != CNC_MAGIC {
            return Err(CncError::Magic { path, magic });
        }
        let composed = header.get_i32_volatile(VERSION_OFFSET).cast_unsigned();
        if composed == 0 {
            return Err(CncError::NotReady(dir.to_path_buf()));
        }
        let found = SemanticVersion::decompose(composed).unwrap_or(SemanticVersion::new(255, 0, 0));
        if !found.is_compatible_with(CNC_VERSION) {
            return Err(CncError::Version { path, found });
        }
        let length = |offset| usize::try_from(header.get_i32(offset)).unwrap_or(0);
        let to_driver = length(TO_DRIVER_LENGTH_OFFSET);
        let to_clients = length(TO_CLIENTS_LENGTH_OFFSET);
        let metadata = length(COUNTERS_METADATA_LENGTH_OFFSET);
        let values = length(COUNTERS_VALUES_LENGTH_OFFSET);
        let error_log = length(ERROR_LOG_LENGTH_OFFSET);
        let layout = CncLayout {
            to_driver_capacity: to_driver.saturating_sub(ring_buffer::TRAILER_LENGTH),
            to_clients_capacity: to_clients.saturating_sub(broadcast::TRAILER_LENGTH),
            counters: values / counters::VALUE_LENGTH,
            error_log_length: error_log,
        };
        let consistent = layout.lengths() == [to_driver, to_clients, metadata, values, error_log]
            && layout.file_length() == file.len()
            && layout
                .lengths()
                .iter()
                .all(|length| length.is_multiple_of(128));
        if !consistent {
            return Err(CncError::Corrupt {
                path,
                length: file.len(),
            });
        }
        Ok(Self { file, layout })
    }

    /// The sections.
    pub fn sections(&self) -> Sections<'_> {
        let buffer = self.file.buffer();
        let [to_driver, to_clients, metadata, values, error_log] = self.layout.lengths();
        let mut offset = HEADER_LENGTH;
        let mut next = |length: usize| {
            let view = buffer.view(offset, length);
            offset += length;
            view
        };
        Sections {
            to_driver: next(to_driver),
            to_clients: next(to_clients),
            counters_metadata: next(metadata),
            counters_values: next(values),
            error_log: next(error_log),
        }
    }

    /// The driver's identity.
    pub fn identity(&self) -> DriverIdentity {
        let header = self.file.buffer();
        DriverIdentity {
            pid: header.get_i64(PID_OFFSET),
            start_timestamp_ms: header.get_i64(START_TIMESTAMP_OFFSET),
            client_liveness_timeout_ns: header.get_i64(CLIENT_LIVENESS_TIMEOUT_OFFSET),
        }
    }

    /// The layout.
    pub fn layout(&self) -> CncLayout {
        self.layout
    }

    /// The file's path.
    pub fn path(&self) -> &Path {
        self.file.path()
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;

    fn small() -> CncLayout {
        CncLayout {
            to_driver_capacity: 4096,
            to_clients_capacity: 4096,
            counters: 16,
            error_log_length: 4096,
        }
    }

    fn identity() -> DriverIdentity {
        DriverIdentity {
            pid: 42,
            start_timestamp_ms: 1000,
            client_liveness_timeout_ns: 10_000_000_000,
        }
    }

    #[test]
    fn create_publish_open() {
        let dir = std::env::temp_dir().join(format!("tern-cnc-test-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        assert!(matches!(CncFile::open(&dir), Err(CncError::Missing { .. })));
        let cnc = CncFile::create(&dir, small(), identity()).unwrap();
        assert!(matches!(CncFile::open(&dir), Err(CncError::NotReady(_))));
        cnc.publish();
        let opened = CncFile::open(&dir).unwrap();
        assert_eq!(opened.identity(), identity());
        assert_eq!(opened.layout(), small());
        cnc.sections().to_driver.put_i64(0, 7);
        assert_eq!(opened.sections().to_driver.get_i64(0), 7);
        assert_eq!(opened.sections().error_log.capacity(), 4096);

        // A future major version is refused, naming both versions.
        cnc.file
            .buffer()
            .put_i32_ordered(VERSION_OFFSET, 0x0001_0000);
        let error = CncFile::open(&dir).unwrap_err();
        assert_eq!(
            error.to_string(),
            format!(
                "{} has CnC version 1.0.0; this build speaks 0.1.0 (major versions differ)",
                dir.join(CNC_FILE).display()
            )
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
