//! Typed errors for every decoder and encoder in the crate.
//!
//! Decoders never panic on external bytes: every length, count, version and enumerated value they
//! depend on is checked when they wrap a buffer, and a failure names what was wrong.

use crate::version::SemanticVersion;

/// Why bytes could not be decoded. Each variant names the offending value.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    /// The buffer ends before the structure it should hold.
    #[error("truncated: {what} needs {needed} bytes but only {available} are available")]
    Truncated {
        /// The structure being read.
        what: &'static str,
        /// Bytes the structure needs.
        needed: usize,
        /// Bytes the buffer holds.
        available: usize,
    },
    /// The message belongs to another schema.
    #[error("wrong schema: expected schema id {expected}, found {actual}")]
    WrongSchema {
        /// The schema the decoder reads.
        expected: u16,
        /// The schema id in the message header.
        actual: u16,
    },
    /// The message is another template of the schema.
    #[error("wrong template: expected template id {expected:#06x}, found {actual:#06x}")]
    WrongTemplate {
        /// The template the decoder reads.
        expected: u16,
        /// The template id in the message header.
        actual: u16,
    },
    /// The message's major version differs from the reader's: its layout cannot be trusted.
    #[error(
        "incompatible version of schema {schema_id}: the message is {message_major}.{message_minor}.x \
         but this reader understands {reader} (major versions differ)"
    )]
    IncompatibleVersion {
        /// The schema both sides name.
        schema_id: u16,
        /// The reader's own semantic version of the schema.
        reader: SemanticVersion,
        /// The major version the message was written with.
        message_major: u8,
        /// The minor version the message was written with.
        message_minor: u8,
    },
    /// A block is shorter than the fields that its acting version promises.
    #[error(
        "{what} block of {block_length} bytes is shorter than the {minimum} bytes version \
         {acting_minor} requires"
    )]
    BlockTooShort {
        /// The block being read (a message or a group entry).
        what: &'static str,
        /// The block length on the wire.
        block_length: usize,
        /// The smallest block the acting version allows.
        minimum: usize,
        /// The minor version the message was written with.
        acting_minor: u8,
    },
    /// A repeating group holds more entries than its schema allows.
    #[error("group {group} holds {count} entries; at most {max} are allowed")]
    GroupTooLarge {
        /// The group's name.
        group: &'static str,
        /// The entry count on the wire.
        count: usize,
        /// The schema's maximum.
        max: usize,
    },
    /// A variable-length field is longer than its schema allows.
    #[error("{field} is {length} bytes long; at most {max} are allowed")]
    VarDataTooLong {
        /// The field's name.
        field: &'static str,
        /// The length on the wire.
        length: usize,
        /// The schema's maximum.
        max: usize,
    },
    /// A string field is not valid UTF-8.
    #[error("{field} is not valid UTF-8")]
    InvalidUtf8 {
        /// The field's name.
        field: &'static str,
    },
    /// A field holds a value its definition forbids.
    #[error("{field} holds {value}, which is invalid: {reason}")]
    InvalidValue {
        /// The field's name.
        field: &'static str,
        /// The value on the wire, widened to i64.
        value: i64,
        /// What the definition requires.
        reason: &'static str,
    },
    /// A UDP protocol frame carries a version other than the one this codec speaks.
    #[error("frame version {version} is not supported (only version {supported})")]
    FrameVersion {
        /// The version byte on the wire.
        version: u8,
        /// The only version this codec reads.
        supported: u8,
    },
    /// A UDP protocol frame is of another type than the decoder reads.
    #[error("frame type {actual:#06x} found where {expected:#06x} was expected")]
    FrameType {
        /// The type the decoder reads.
        expected: u16,
        /// The type on the wire.
        actual: u16,
    },
    /// Feature flags are not sorted by key, or a key repeats.
    #[error("feature flag key {key} follows key {previous}: keys must be strictly ascending")]
    FlagsOutOfOrder {
        /// The key before.
        previous: u16,
        /// The key that is not greater than it.
        key: u16,
    },
}

/// Why a value could not be encoded. Encoders check space and limits before writing anything that
/// depends on them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum EncodeError {
    /// The destination buffer is too small.
    #[error("buffer too small: {what} needs {needed} bytes but only {available} are available")]
    BufferTooSmall {
        /// The structure being written.
        what: &'static str,
        /// Bytes needed in all, from the start of the buffer.
        needed: usize,
        /// Bytes the buffer holds.
        available: usize,
    },
    /// A repeating group would hold more entries than its schema allows.
    #[error("group {group} would hold {count} entries; at most {max} are allowed")]
    TooManyEntries {
        /// The group's name.
        group: &'static str,
        /// The count asked for.
        count: usize,
        /// The schema's maximum.
        max: usize,
    },
    /// A variable-length value is longer than its schema allows.
    #[error("{field} is {length} bytes long; at most {max} are allowed")]
    VarDataTooLong {
        /// The field's name.
        field: &'static str,
        /// The value's length.
        length: usize,
        /// The schema's maximum.
        max: usize,
    },
    /// A field would hold a value its definition forbids.
    #[error("{field} cannot hold {value}: {reason}")]
    InvalidValue {
        /// The field's name.
        field: &'static str,
        /// The value offered, widened to i64.
        value: i64,
        /// What the definition requires.
        reason: &'static str,
    },
    /// Feature flags must be added in strictly ascending key order.
    #[error("feature flag key {key} follows key {previous}: keys must be strictly ascending")]
    FlagsOutOfOrder {
        /// The key before.
        previous: u16,
        /// The key that is not greater than it.
        key: u16,
    },
}

/// Returns `Truncated` unless `buf` holds at least `needed` bytes.
#[inline]
pub(crate) fn need(what: &'static str, buf: &[u8], needed: usize) -> Result<(), DecodeError> {
    if buf.len() < needed {
        return Err(DecodeError::Truncated {
            what,
            needed,
            available: buf.len(),
        });
    }
    Ok(())
}

/// Returns `BufferTooSmall` unless `buf` holds at least `needed` bytes.
#[inline]
pub(crate) fn room(what: &'static str, buf: &[u8], needed: usize) -> Result<(), EncodeError> {
    if buf.len() < needed {
        return Err(EncodeError::BufferTooSmall {
            what,
            needed,
            available: buf.len(),
        });
    }
    Ok(())
}
