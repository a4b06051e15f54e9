//! # tern-archive
//!
//! Records streams into segment files with a memory-mapped catalog, replays them from any
//! position, and replicates recordings between archives (see `../shared/DESIGN.md` §1–§2). The
//! archive is a client of the media driver: recording reads an image's raw frames, headers
//! included, so a recording is the stream byte for byte.
//!
//! ## Files
//!
//! An archive directory holds `archive.catalog` ([`catalog`]) and one file per segment of each
//! recording. Every file starts with a magic number and a semantic version; a reader refuses a
//! major version it does not know, naming both.
//!
//! ## Threads and memory
//!
//! The catalog is written by one process, which holds a lock on it ([`catalog::Catalog::open`]);
//! other processes may map it to read.

#![forbid(unsafe_code)]

pub mod archive;
pub mod catalog;
pub mod client;
pub mod control_protocol;
pub mod control_session;
pub mod error;
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
