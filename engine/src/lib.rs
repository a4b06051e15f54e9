//! # tern-engine
//!
//! The media driver and the client library that applications link. This crate will own the
//! shared-memory primitives (atomic buffers, the many-to-one ring buffer that carries client
//! commands to the driver, the broadcast buffer that carries responses back, counters and the
//! distinct error log), the log buffers that carry every message, the driver's conductor, sender
//! and receiver agents, channel URIs and idle strategies (see `../shared/DESIGN.md` §1–§5).
//!
//! Status: not built yet; it arrives with the engine issue. Every byte format it will use
//! (Aeron UDP frames, position math, versioned control messages) already lives in [`tern_codec`].
//!
//! Threads and memory: none yet. When it lands, each region of shared memory has exactly one
//! writer, named in the module that owns it.

#![forbid(unsafe_code)]
