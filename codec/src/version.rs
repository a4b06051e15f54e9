//! Semantic versions and schemas.
//!
//! Every tern format is versioned MAJOR.MINOR.PATCH (the seed talk's rule: version everything from
//! the first day):
//!
//! - **major** changes break the layout. A reader refuses a message whose major differs from its
//!   own, with an error that names both versions.
//! - **minor** changes only append: fields at the end of a block, var-data fields at the end of a
//!   message, each element marked with the minor version that added it. Old readers skip what they
//!   do not know by block length; new readers see `None` for what an older writer did not send.
//! - **patch** changes fix behaviour without touching a byte, so patch is not carried per message;
//!   it travels where whole versions are exchanged (handshakes, file headers) as a composed `u32`.
//!
//! In a message header the `u16` version field is `major << 8 | minor`, so the SBE header layout
//! is kept byte for byte while the reader can still tell a breaking change from an append.

use core::fmt;

use crate::error::DecodeError;

/// A MAJOR.MINOR.PATCH version, each part one byte.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct SemanticVersion {
    /// Incremented for a change old readers cannot follow.
    pub major: u8,
    /// Incremented for an append that old readers can skip.
    pub minor: u8,
    /// Incremented for a fix that changes no byte.
    pub patch: u8,
}

impl SemanticVersion {
    /// Makes a version from its three parts.
    pub const fn new(major: u8, minor: u8, patch: u8) -> Self {
        Self {
            major,
            minor,
            patch,
        }
    }

    /// The version as one `u32`: `major << 16 | minor << 8 | patch`, the top byte zero.
    pub const fn compose(self) -> u32 {
        ((self.major as u32) << 16) | ((self.minor as u32) << 8) | self.patch as u32
    }

    /// Reads a version composed by [`SemanticVersion::compose`]. A non-zero top byte is an error,
    /// because it can only come from a layout we do not know.
    pub const fn decompose(composed: u32) -> Result<Self, DecodeError> {
        if composed >> 24 != 0 {
            return Err(DecodeError::InvalidValue {
                field: "semantic_version",
                value: composed as i64,
                reason: "the top byte of a composed semantic version must be zero",
            });
        }
        let [patch, minor, major, _] = composed.to_le_bytes();
        Ok(Self::new(major, minor, patch))
    }

    /// The `u16` carried in a message header: `major << 8 | minor`.
    pub const fn wire_version(self) -> u16 {
        ((self.major as u16) << 8) | self.minor as u16
    }

    /// Whether a peer at `other` can exchange messages with this version (same major).
    pub const fn is_compatible_with(self, other: SemanticVersion) -> bool {
        self.major == other.major
    }
}

impl fmt::Display for SemanticVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}.{}", self.major, self.minor, self.patch)
    }
}

/// A schema: a numbered family of templates that evolve together under one semantic version.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Schema {
    /// A short name for messages and tools.
    pub name: &'static str,
    /// The schema id carried in every message header.
    pub id: u16,
    /// The version this build of the schema writes and understands.
    pub version: SemanticVersion,
}

impl Schema {
    /// Declares a schema.
    pub const fn new(name: &'static str, id: u16, version: SemanticVersion) -> Self {
        Self { name, id, version }
    }

    /// Checks a header's `u16` version against this schema and returns the message's minor
    /// version (the *acting* version that gates fields). A different major is an error naming
    /// both versions.
    pub const fn acting_minor(&self, wire_version: u16) -> Result<u8, DecodeError> {
        let [message_minor, message_major] = wire_version.to_le_bytes();
        if message_major != self.version.major {
            return Err(DecodeError::IncompatibleVersion {
                schema_id: self.id,
                reader: self.version,
                message_major,
                message_minor,
            });
        }
        Ok(message_minor)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn compose_and_decompose_round_trip() {
        let version = SemanticVersion::new(1, 2, 3);
        assert_eq!(version.compose(), 0x0001_0203);
        assert_eq!(SemanticVersion::decompose(0x0001_0203), Ok(version));
        assert_eq!(version.to_string(), "1.2.3");
    }

    #[test]
    fn decompose_rejects_a_top_byte() {
        assert!(matches!(
            SemanticVersion::decompose(0x0100_0000),
            Err(DecodeError::InvalidValue { .. })
        ));
    }

    #[test]
    fn acting_minor_checks_major_and_names_both_versions() {
        let schema = Schema::new("sample", 7, SemanticVersion::new(1, 3, 0));
        assert_eq!(schema.acting_minor(0x0105), Ok(5));
        assert_eq!(schema.acting_minor(0x0100), Ok(0));
        let error = schema.acting_minor(0x0201).unwrap_err();
        assert_eq!(
            error.to_string(),
            "incompatible version of schema 7: the message is 2.1.x but this reader understands \
             1.3.0 (major versions differ)"
        );
        assert!(schema.acting_minor(0x0003).is_err());
    }
}
