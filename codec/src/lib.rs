//! # tern-codec
//!
//! Every byte format tern reads or writes: the Aeron UDP protocol frames (version 0, byte for
//! byte), position math over log buffers, versioned SBE-layout messages declared with the
//! [`message!`] macro, and self-describing feature flags.
//!
//! ## Rules every format here follows
//!
//! - **Zero copy, zero allocation.** Decoders are `Copy` views over the caller's bytes; encoders
//!   write in place into the caller's `&mut [u8]` and return the length written. Nothing in this
//!   crate allocates.
//! - **Validate once, never panic.** A decoder checks every length, count, version and value it
//!   depends on when it wraps a buffer and returns a typed [`DecodeError`]; after that its
//!   accessors cannot fail. Hostile input is an error, never a panic or an out-of-bounds read
//!   (fuzz targets under `fuzz/` hold us to it).
//! - **Versioned.** Messages carry a schema id and a semantic version ([`version`]); fields are
//!   only appended, each marked with the minor version that added it; a different major is an
//!   error naming both versions. Every template carries its unknown-message policy
//!   ([`policy`]), and [`on_unknown`] is the one place that decides what a reader does with a
//!   message it does not know.
//! - **Deterministic bytes.** Encoders zero every padding and reserved byte, so equal messages
//!   are equal bytes, as replicated logs and archives need.
//! - **Pointer-width independent.** Only fixed-width little-endian integers are stored or sent;
//!   `clippy.toml` bans `usize` byte conversions.
//!
//! ## Threads and memory
//!
//! None: every function works on the buffers it is given, on the caller's thread.

#![forbid(unsafe_code)]

pub mod body;
pub mod error;
pub mod flags;
pub mod frame;
#[doc(hidden)]
pub mod fuzz_checks;

pub mod header;
pub mod policy;
pub mod position;

pub mod schema_macro;
pub mod version;
pub mod wire;

pub use error::{DecodeError, EncodeError};
pub use header::{MESSAGE_HEADER_LENGTH, MessageHeader};
pub use policy::{UnknownAction, UnknownMessage, UnknownPolicy, on_unknown};
pub use version::{Schema, SemanticVersion};

/// This crate's own version, for tools that report what they speak.
pub const CRATE_VERSION: &str = env!("CARGO_PKG_VERSION");
