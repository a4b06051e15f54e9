//! # tern-archive
//!
//! Records streams into segment files with a memory-mapped catalog, replays them at their
//! original positions, merges a replay into the live stream, and replicates recordings between
//! archives (see `../shared/DESIGN.md` §1–§2). The archive is a client of the media driver:
//! recording takes an image's frames whole, headers included, so a recording is the stream
//! byte for byte.
//!
//! ## Using it
//!
//! Run an archive inside a driver (`tern driver --archive-dir DIR`), as its own process
//! (`tern archive serve --archive-dir DIR`), or embedded: [`archive::Archive`] is an agent
//! (`tern_engine::agent::Agent`) that runs on its own thread (`AgentRunner`) or composed with
//! others. Talk to it with [`client::ArchiveClient`] (blocking, or non-blocking with
//! [`client::ArchiveClient::send`] and [`client::ArchiveClient::poll`]):
//!
//! ```
//! use std::sync::Arc;
//! use std::time::{Duration, Instant};
//! use tern_archive::archive::{Archive, ArchiveConfig};
//! use tern_archive::client::{ArchiveClient, ArchiveClientConfig};
//! use tern_engine::agent::{AgentRunner, Clock, IdleStrategy, SystemClock};
//! use tern_engine::client::{ClientConfig, OfferResult, Tern};
//! use tern_engine::driver::{DriverConfig, MediaDriver};
//!
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! # let base = std::env::temp_dir().join(format!("tern-archive-doc-{}", std::process::id()));
//! let driver_dir = base.join("driver"); // usually the default: /dev/shm/tern-<user>
//! let driver = MediaDriver::launch(DriverConfig { dir: driver_dir.clone(), ..DriverConfig::default() })?;
//! let connect = || Tern::connect(ClientConfig { dir: driver_dir.clone(), ..ClientConfig::default() });
//!
//! // The archive: an agent on its own thread, a client of the driver.
//! let clock: Arc<dyn Clock> = Arc::new(SystemClock);
//! let config = ArchiveConfig { dir: base.join("archive"), ..ArchiveConfig::default() };
//! let archive = Archive::launch(config, connect()?, clock.now())?;
//! let mut runner = AgentRunner::start(Box::new(archive), IdleStrategy::default(), clock)?;
//!
//! // Record every publication of tern:ipc stream 1001, and publish three messages.
//! let tern = connect()?;
//! let mut archive = ArchiveClient::connect(&tern, ArchiveClientConfig::default())?;
//! archive.start_recording("tern:ipc", 1001)?;
//! let publication = tern.add_publication("tern:ipc", 1001)?;
//! publication.wait_connected(Duration::from_secs(10))?;
//! let mut end = 0;
//! for message in [&b"one"[..], b"two", b"three"] {
//!     loop {
//!         // Back-pressure and the like: offer again.
//!         if let OfferResult::Ok(position) = publication.offer(message) { end = position; break; }
//!     }
//! }
//! // The recording (id 0, the first) catches up with the publication.
//! while archive.recording_position(0).ok().flatten() != Some(end) {
//!     std::thread::sleep(Duration::from_millis(1));
//! }
//! archive.stop_recording("tern:ipc", 1001)?;
//!
//! // Replay recording 0 from its start onto stream 2002: the same messages, same positions.
//! let mut replayed = tern.add_subscription("tern:ipc", 2002)?;
//! archive.replay(0, -1, -1, "tern:ipc", 2002)?;
//! let mut got = Vec::new();
//! let deadline = Instant::now() + Duration::from_secs(10);
//! while got.len() < 3 && Instant::now() < deadline {
//!     replayed.poll(|payload, header| got.push((payload.to_vec(), header.position)), 10);
//! }
//! assert_eq!(got[2], (b"three".to_vec(), end));
//! # drop((replayed, publication, archive, tern));
//! runner.close();
//! # drop(driver);
//! # let _ = std::fs::remove_dir_all(base);
//! # Ok(())
//! # }
//! ```
//!
//! [`replay_merge::ReplayMerge`] reads a recording from any position and then the live stream
//! it records, with no gap and no duplicate, over IPC or UDP.
//!
//! ## Files
//!
//! An archive directory holds `archive.catalog` ([`catalog`]: a 1 KiB header and a 1 KiB
//! descriptor per recording, each checksummed, with a state valid, invalid or deleted) and
//! `<recording id>-<base position>.rec` segment files ([`segment`]: a 4 KiB header, then the
//! stream, each frame carrying a CRC32C checksum in its reserved value unless checksums are
//! off). Every file starts with a magic number and a semantic version; a reader refuses a
//! major version it does not know, naming both. `tern archive` lists, describes, dumps,
//! verifies, truncates, purges, marks and migrates them.
//!
//! ## Durability and crashes
//!
//! [`segment_writer::Durability`]: level 0 never syncs; level 1 (the default) syncs a segment
//! when it is full and a recording when it stops; level 2 syncs before the recording position
//! advances. At every level the recording position and the catalog's stop position move only
//! after the bytes below them are written, so a process crash (SIGKILL) loses nothing they
//! claimed. An archive that starts finds the recordings it did not stop and repairs them
//! ([`segment_files::recover`]): the end is found by scanning frames from the stored stop
//! position, a torn final frame is cut away, and a recording damaged below its stored stop is
//! marked invalid rather than stopping the archive. With checksums off, a torn frame is found
//! by its length alone: one whose header reached the disk and whose body did not is kept.
//! Levels 0 and 1 promise nothing about the unsynced tail after a machine crash (power loss);
//! `tern archive verify` finds and marks a recording that lost it.
//!
//! ## Threads and memory
//!
//! The archive agent owns everything it uses and runs on one thread: control sessions,
//! recordings (a subscription per recorded channel and stream; the blocks its images lend are
//! read in place and copied once into a buffer allocated when the recording starts),
//! replays (a reader buffer and an exclusive publication each) and replications (a client of
//! the other archive each). After warm-up, recording and replaying allocate nothing
//! (`tests/allocation_free.rs`) but when a segment file is opened, once per segment. Control
//! requests that add a publication, subscription or counter wait for the driver's answer (a
//! round trip of microseconds) inside the duty cycle, as does starting a recording. The catalog is written by that one process, which holds a lock
//! on the file ([`catalog::Catalog::open`]); other processes map it to read, and see each
//! position through an atomic load.

#![forbid(unsafe_code)]

pub mod archive;
pub mod catalog;
pub mod client;
pub mod control_protocol;
pub mod control_session;
pub mod error;
#[doc(hidden)]
pub mod fuzz_checks;
pub mod inspect;
pub mod recorder;
pub mod replay_merge;
pub mod replayer;
pub mod replication;
pub mod segment;
pub mod segment_files;
pub mod segment_reader;
pub mod segment_writer;

use tern_codec::{Schema, SemanticVersion};

/// The catalog's schema: its file header and descriptor bodies carry this version.
pub const ARCHIVE_CATALOG: Schema =
    Schema::new("archive-catalog", 30, SemanticVersion::new(1, 0, 0));
