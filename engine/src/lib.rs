//! # tern-engine
//!
//! The media driver and the client library that applications link (see `../shared/DESIGN.md`
//! §1–§5), over IPC today; UDP comes next.
//!
//! | module | what |
//! |---|---|
//! | [`concurrent`] | shared-memory primitives: atomic buffer, ring buffer, broadcast, counters, error log |
//! | [`cnc`], [`directory`], [`mapped_file`], [`mapped_view`] | the CnC file, the driver directory and its rules, mapped files, views kept with their mapping |
//! | [`logbuffer`] | log buffers: layout, appenders, reader, scanner, unblocker |
//! | [`command`] | the driver protocol: versioned commands and responses |
//! | [`driver`] | the media driver (conductor agent), embedded or standalone |
//! | [`client`] | the client library: publications, subscriptions, images, fragment assembly |
//! | [`placement`] | pinning threads to CPUs; the cache-line round-trip probe benchmarks bracket runs with |
//! | [`channel`], [`udp_channel`], [`udp_transport`], [`udp_ring`] | channel URIs, UDP channels resolved, UDP sockets that send and receive in batches (`sendmmsg`/`recvmmsg` or io_uring) |
//! | [`file_sync`], [`file_ring`] | starting a file's writeback early; file writes through io_uring |
//! | [`agent`], [`duty_cycle`] | agents, runners, clocks and idle strategies; duty-cycle timing |
//!
//! ## Threads and memory
//!
//! Every region of shared memory has exactly one writer role, named in the module that owns it
//! (the table in [`concurrent`]). All cross-thread and cross-process access goes through
//! [`concurrent::atomic_buffer::AtomicBuffer`], whose atomics come from one crate-private shim
//! so that loom models can check the orderings (`tests/loom_*.rs`).

// Every shared-memory and wire layout here is little-endian, and words are stored natively.
#[cfg(not(target_endian = "little"))]
compile_error!("tern's shared-memory and wire layouts are little-endian; this target is not");

pub mod agent;
pub mod channel;
#[cfg(not(loom))]
pub mod client;
// Loom models cover the shared-memory structures; what maps files is built without loom.
#[cfg(not(loom))]
pub mod cnc;
pub mod command;
pub mod concurrent;
#[cfg(not(loom))]
pub mod directory;
#[cfg(not(loom))]
pub mod driver;
pub mod duty_cycle;
pub mod file_sync;
#[cfg(not(loom))]
pub mod fuzz_checks;
pub mod logbuffer;
#[cfg(not(loom))]
pub mod loss_report;
pub mod mapped_file;
pub mod mapped_view;
#[cfg(not(loom))]
pub mod placement;
mod sync;
#[cfg(not(loom))]
pub mod udp_channel;
// sendmmsg and recvmmsg as Linux has them.
#[cfg(all(not(loom), target_os = "linux"))]
pub mod udp_transport;
// The io_uring backend of the UDP transport.
#[cfg(all(not(loom), target_os = "linux"))]
pub mod udp_ring;
// File writes through io_uring (the archive's recorder, selectable).
#[cfg(all(not(loom), target_os = "linux"))]
pub mod file_ring;
