//! # tern-cluster
//!
//! Raft consensus over a log of byte positions, deterministic replicated services, and the seeded
//! deterministic simulator that proves them (see `../shared/DESIGN.md` §5 and §7).
//!
//! - [`consensus`]: the sans-IO consensus core, one state machine per member. Its module docs
//!   state the model and the five Raft safety properties.
//! - [`protocol`]: consensus messages as `tern-codec` schemas (terminate policy).
//! - [`log_entry`]: the replicated log's framing (tern DATA frames with a CRC-32C, PADs at term
//!   ends: the log is a tern stream) and its events.
//! - [`member_log`]: a member's log on disk, a recording in its archive directory, read in place.
//! - [`node_state`]: a member's durable term and vote (two checksummed slots, synced);
//!   [`recording_log`]: its durable term history and snapshots (append-only, checksummed).
//! - [`term_history`]: which term wrote which range of the log.
//! - [`service`] and [`container`]: the clustered-service interface and the container that feeds a
//!   service only committed entries, fires timers through the log and compares state digests.
//! - [`kv`]: a sample deterministic service (a key-value store with expiry timers).
//! - [`session_protocol`]: what clients send the cluster and what they get back.
//! - [`snapshot`]: the versioned, checksummed snapshot format.
//! - [`sim`]: the deterministic simulator: members, network, storage with fsync semantics,
//!   crashes, clocks, clients and the checkers; [`planted`]: the bugs it must catch.
//! - [`local`]: an in-process cluster with zero network delay, for tests and the benchmark.
//! - [`rng`] and [`digest`]: the seeded generator and the state digests; [`fuzz_checks`]: what
//!   the fuzz targets check.
//!
//! The crate depends on `tern-codec` only: the adapters that run the core over real streams and
//! the archive come with the engine and archive integration.
//!
//! Threads and memory: everything here is single-threaded state owned by its caller; the
//! simulator runs a whole cluster on one thread.

// One module maps files (the member's log segments, read in place): it allows `unsafe` for
// that one call and says why it is sound; everything else is safe code.
#![deny(unsafe_code)]

pub mod client;
pub mod consensus;
pub mod container;
pub mod digest;
pub mod durable_file;
pub mod fuzz_checks;
pub mod kv;
pub mod local;
pub mod log_entry;
pub mod member_log;
pub mod node;
pub mod node_state;
pub mod planted;
pub mod protocol;
pub mod recording_log;
pub mod rng;
pub mod service;
pub mod session_protocol;
pub mod sim;
pub mod snapshot;
pub mod term_history;
