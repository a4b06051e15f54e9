//! # tern-archive
//!
//! Records streams into memory-mapped segment files with a catalog, replays them from any
//! position, and replicates recordings between archives (see `../shared/DESIGN.md` §1–§2). The
//! archive is a client of the media driver: recording reads an image's raw frames, headers
//! included, so a recording is the stream byte for byte.
//!
//! Status: not built yet; it arrives with the archive issue, after the engine. Its catalog and
//! segment headers will carry a magic number and a semantic version from [`tern_codec`].
//!
//! Threads and memory: none yet.

#![forbid(unsafe_code)]
