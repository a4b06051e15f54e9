//! Feature flags: a self-describing, typed record set whose flags each carry their own version.
//!
//! Flags are versioned apart from any protocol (the seed talk's last section): a new flag, or a
//! new version of one, can be rolled out before the protocol that uses it, and a reader that
//! does not know a flag still knows its type and what it must do about it.
//!
//! The record is an SBE-shaped repeating group, so the same rules as every group apply:
//!
//! ```text
//! | block_length u16 (16) | num_in_group u16 (<= 64) | entry ... |
//!
//! entry, `block_length` bytes then its text:
//!  0  key      u16   the flag's id in the registry of whoever defines it
//!  2  kind     u8    0 bool, 1 u64, 2 i64, 3 string; other values: a kind this build lacks
//!  3  policy   u8    bits 1..0: what a reader that does not know this flag does
//!                    (0 reject, 1 ignore, 2 terminate, 3 reserved = terminate)
//!  4  version  u16   the version of this flag's definition
//!  6  reserved u16   zero
//!  8  value    u64   bool 0 or 1; u64; i64 two's complement; 0 for a string
//! 16  text length u16 (<= 256), then the text: UTF-8, and empty unless kind is string
//! ```
//!
//! Entries are sorted by key with no duplicates, so equal flag sets are equal bytes. The wire
//! block length lets a later version grow an entry; readers step over what they do not know.

use crate::error::{DecodeError, EncodeError, room};
use crate::policy::UnknownPolicy;
use crate::wire::{read_field, write_field};

/// The most flags one record holds.
pub const FLAGS_MAX: usize = 64;
/// The longest string value.
pub const FLAG_TEXT_MAX: usize = 256;
/// Bytes in an entry's fixed block as this build writes it.
pub const FLAG_BLOCK_LENGTH: usize = 16;
const GROUP_HEADER_LENGTH: usize = 4;
const TEXT_HEADER_LENGTH: usize = 2;

const KEY_OFFSET: usize = 0;
const KIND_OFFSET: usize = 2;
const POLICY_OFFSET: usize = 3;
const VERSION_OFFSET: usize = 4;
const RESERVED_OFFSET: usize = 6;
const VALUE_OFFSET: usize = 8;
const _: () = assert!(VALUE_OFFSET + 8 == FLAG_BLOCK_LENGTH);
const _: () = assert!(RESERVED_OFFSET + 2 == VALUE_OFFSET);

crate::enumeration! {
    /// The type of a flag's value.
    pub enum FlagKind: u8 {
        /// `true` or `false`.
        Bool = 0,
        /// An unsigned integer.
        U64 = 1,
        /// A signed integer.
        I64 = 2,
        /// UTF-8 text of at most [`FLAG_TEXT_MAX`] bytes.
        Str = 3,
    }
}

/// A flag's value, borrowed from the record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FlagValue<'a> {
    /// A boolean.
    Bool(bool),
    /// An unsigned integer.
    U64(u64),
    /// A signed integer.
    I64(i64),
    /// Text.
    Str(&'a str),
    /// A kind this build does not know, kept raw.
    Unknown {
        /// The kind byte.
        kind: u8,
        /// The value slot.
        raw: u64,
        /// The text bytes.
        bytes: &'a [u8],
    },
}

impl FlagValue<'_> {
    /// The kind of this value.
    pub fn kind(&self) -> FlagKind {
        match self {
            Self::Bool(_) => FlagKind::Bool,
            Self::U64(_) => FlagKind::U64,
            Self::I64(_) => FlagKind::I64,
            Self::Str(_) => FlagKind::Str,
            Self::Unknown { kind, .. } => FlagKind::from_wire(*kind),
        }
    }
}

/// One flag.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Flag<'a> {
    /// Its id.
    pub key: u16,
    /// The version of its definition.
    pub version: u16,
    /// What a reader that does not know it must do.
    pub policy: UnknownPolicy,
    /// Its value.
    pub value: FlagValue<'a>,
}

/// What a reader knows about a flag: its key, type and the newest version it understands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FlagDefinition {
    /// A name for tools and errors.
    pub name: &'static str,
    /// Its id.
    pub key: u16,
    /// Its type.
    pub kind: FlagKind,
    /// The newest version of it this reader understands.
    pub version: u16,
}

/// A flag the reader could not accept, and whether it must reject or terminate.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error(
    "feature flag {key} (kind {kind:?}, version {version}) is unknown here; its policy is {policy:?}"
)]
pub struct UnknownFlag {
    /// Its id.
    pub key: u16,
    /// Its kind as sent.
    pub kind: FlagKind,
    /// Its version as sent.
    pub version: u16,
    /// [`UnknownPolicy::Reject`] or [`UnknownPolicy::Terminate`].
    pub policy: UnknownPolicy,
}

/// Types a flag's value can be read as.
pub trait FlagType<'a>: Sized {
    /// The kind that holds this type.
    const KIND: FlagKind;
    /// The value, when it is of this type.
    fn from_value(value: FlagValue<'a>) -> Option<Self>;
}

macro_rules! flag_type {
    ($ty:ty, $kind:ident) => {
        impl<'a> FlagType<'a> for $ty {
            const KIND: FlagKind = FlagKind::$kind;
            fn from_value(value: FlagValue<'a>) -> Option<Self> {
                match value {
                    FlagValue::$kind(value) => Some(value),
                    _ => None,
                }
            }
        }
    };
}
flag_type!(bool, Bool);
flag_type!(u64, U64);
flag_type!(i64, I64);
flag_type!(&'a str, Str);

/// A validated record of feature flags.
#[derive(Debug, Clone, Copy)]
pub struct FeatureFlags<'a> {
    entries: &'a [u8],
    block_length: usize,
    count: usize,
    encoded_length: usize,
}

impl<'a> FeatureFlags<'a> {
    /// Decodes and validates a whole record: count, block length, order, kinds, values, text.
    pub fn decode(buf: &'a [u8]) -> Result<Self, DecodeError> {
        crate::error::need("feature flags", buf, GROUP_HEADER_LENGTH)?;
        let block_length = usize::from(read_field::<u16>(buf, 0));
        let count = usize::from(read_field::<u16>(buf, 2));
        if count > FLAGS_MAX {
            return Err(DecodeError::GroupTooLarge {
                group: "feature flags",
                count,
                max: FLAGS_MAX,
            });
        }
        if block_length < FLAG_BLOCK_LENGTH {
            return Err(DecodeError::BlockTooShort {
                what: "feature flag",
                block_length,
                minimum: FLAG_BLOCK_LENGTH,
                acting_minor: 0,
            });
        }
        let entries = buf.get(GROUP_HEADER_LENGTH..).unwrap_or(&[]);
        let mut walk = EntryWalk {
            entries,
            block_length,
            offset: 0,
            left: count,
        };
        let mut previous: Option<u16> = None;
        while let Some(flag) = walk.next_flag()? {
            if let Some(previous) = previous
                && flag.key <= previous
            {
                return Err(DecodeError::FlagsOutOfOrder {
                    previous,
                    key: flag.key,
                });
            }
            previous = Some(flag.key);
        }
        Ok(Self {
            entries,
            block_length,
            count,
            encoded_length: GROUP_HEADER_LENGTH + walk.offset,
        })
    }

    /// Bytes the record occupies.
    pub fn encoded_length(&self) -> usize {
        self.encoded_length
    }

    /// How many flags the record holds.
    pub fn len(&self) -> usize {
        self.count
    }

    /// Whether the record holds no flags.
    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    /// The flags in key order.
    pub fn iter(&self) -> impl Iterator<Item = Flag<'a>> + use<'a> {
        let mut walk = EntryWalk {
            entries: self.entries,
            block_length: self.block_length,
            offset: 0,
            left: self.count,
        };
        // Validated in decode: every entry reads without error.
        core::iter::from_fn(move || walk.next_flag().ok().flatten())
    }

    /// The flag with `key`, if present.
    pub fn flag(&self, key: u16) -> Option<Flag<'a>> {
        self.iter().find(|flag| flag.key == key)
    }

    /// The value of the flag `definition` describes, as `T`: `None` when it is absent, of
    /// another kind, or of a newer version than the definition (see [`Self::resolve`]).
    pub fn get<T: FlagType<'a>>(&self, definition: &FlagDefinition) -> Option<T> {
        debug_assert_eq!(
            T::KIND,
            definition.kind,
            "flag {} read as another type",
            definition.name
        );
        let flag = self.flag(definition.key)?;
        if flag.version > definition.version || flag.value.kind() != definition.kind {
            return None;
        }
        T::from_value(flag.value)
    }

    /// Applies each flag's policy against what this reader knows: a flag with an unknown key,
    /// another kind, or a newer version than known is ignored (counted) or refused. Returns the
    /// number ignored, or the first flag that must be rejected or that terminates the reader.
    pub fn resolve(&self, known: &[FlagDefinition]) -> Result<usize, UnknownFlag> {
        let mut ignored = 0;
        for flag in self.iter() {
            let understood = known.iter().any(|definition| {
                definition.key == flag.key
                    && definition.kind == flag.value.kind()
                    && flag.version <= definition.version
            });
            if understood {
                continue;
            }
            match flag.policy {
                UnknownPolicy::Ignore => ignored += 1,
                policy => {
                    return Err(UnknownFlag {
                        key: flag.key,
                        kind: flag.value.kind(),
                        version: flag.version,
                        policy,
                    });
                }
            }
        }
        Ok(ignored)
    }
}

/// Walks entries, validating each one.
struct EntryWalk<'a> {
    entries: &'a [u8],
    block_length: usize,
    offset: usize,
    left: usize,
}

impl<'a> EntryWalk<'a> {
    fn next_flag(&mut self) -> Result<Option<Flag<'a>>, DecodeError> {
        if self.left == 0 {
            return Ok(None);
        }
        let truncated = |needed| DecodeError::Truncated {
            what: "feature flag",
            needed,
            available: self.entries.len(),
        };
        let block_end = self.offset + self.block_length;
        let block = self
            .entries
            .get(self.offset..block_end)
            .ok_or(truncated(block_end))?;
        let text_start = block_end + TEXT_HEADER_LENGTH;
        let text_header = self
            .entries
            .get(block_end..text_start)
            .ok_or(truncated(text_start))?;
        let text_length = usize::from(read_field::<u16>(text_header, 0));
        if text_length > FLAG_TEXT_MAX {
            return Err(DecodeError::VarDataTooLong {
                field: "feature flag text",
                length: text_length,
                max: FLAG_TEXT_MAX,
            });
        }
        let text_end = text_start + text_length;
        let text = self
            .entries
            .get(text_start..text_end)
            .ok_or(truncated(text_end))?;
        self.offset = text_end;
        self.left -= 1;

        let key = read_field::<u16>(block, KEY_OFFSET);
        let kind = read_field::<u8>(block, KIND_OFFSET);
        let raw = read_field::<u64>(block, VALUE_OFFSET);
        let invalid = |reason| DecodeError::InvalidValue {
            field: "feature flag",
            value: i64::from(key),
            reason,
        };
        if read_field::<u16>(block, RESERVED_OFFSET) != 0 {
            return Err(invalid("reserved bytes must be zero"));
        }
        let known_kind = FlagKind::from_wire(kind);
        if !matches!(known_kind, FlagKind::Str | FlagKind::Unknown(_)) && !text.is_empty() {
            return Err(invalid("only string flags carry text"));
        }
        let value = match known_kind {
            FlagKind::Bool => match raw {
                0 => FlagValue::Bool(false),
                1 => FlagValue::Bool(true),
                _ => return Err(invalid("a bool flag holds 0 or 1")),
            },
            FlagKind::U64 => FlagValue::U64(raw),
            FlagKind::I64 => FlagValue::I64(i64::from_le_bytes(raw.to_le_bytes())),
            FlagKind::Str => {
                if raw != 0 {
                    return Err(invalid("a string flag's value slot is zero"));
                }
                FlagValue::Str(core::str::from_utf8(text).map_err(|_| {
                    DecodeError::InvalidUtf8 {
                        field: "feature flag text",
                    }
                })?)
            }
            FlagKind::Unknown(kind) => FlagValue::Unknown {
                kind,
                raw,
                bytes: text,
            },
        };
        Ok(Some(Flag {
            key,
            version: read_field(block, VERSION_OFFSET),
            policy: policy_from_bits(read_field(block, POLICY_OFFSET)),
            value,
        }))
    }
}

fn policy_from_bits(bits: u8) -> UnknownPolicy {
    match bits & 0b11 {
        0 => UnknownPolicy::Reject,
        1 => UnknownPolicy::Ignore,
        _ => UnknownPolicy::Terminate,
    }
}

fn policy_bits(policy: UnknownPolicy) -> u8 {
    match policy {
        UnknownPolicy::Reject => 0,
        UnknownPolicy::Ignore => 1,
        UnknownPolicy::Terminate => 2,
    }
}

/// Writes a record of feature flags in place, in ascending key order.
#[derive(Debug)]
pub struct FeatureFlagsEncoder<'a> {
    buf: &'a mut [u8],
    limit: usize,
    count: usize,
    last_key: Option<u16>,
}

impl<'a> FeatureFlagsEncoder<'a> {
    /// Starts an empty record at the start of `buf`.
    pub fn wrap(buf: &'a mut [u8]) -> Result<Self, EncodeError> {
        room("feature flags", buf, GROUP_HEADER_LENGTH)?;
        write_field(buf, 0, u16::try_from(FLAG_BLOCK_LENGTH).unwrap_or(u16::MAX));
        write_field(buf, 2, 0_u16);
        Ok(Self {
            buf,
            limit: GROUP_HEADER_LENGTH,
            count: 0,
            last_key: None,
        })
    }

    /// Appends a flag; its key must be greater than every key before it.
    pub fn add(&mut self, flag: Flag<'_>) -> Result<&mut Self, EncodeError> {
        if let Some(previous) = self.last_key
            && flag.key <= previous
        {
            return Err(EncodeError::FlagsOutOfOrder {
                previous,
                key: flag.key,
            });
        }
        if self.count == FLAGS_MAX {
            return Err(EncodeError::TooManyEntries {
                group: "feature flags",
                count: self.count + 1,
                max: FLAGS_MAX,
            });
        }
        let (kind, raw, text): (u8, u64, &[u8]) = match flag.value {
            FlagValue::Bool(value) => (0, u64::from(value), &[]),
            FlagValue::U64(value) => (1, value, &[]),
            FlagValue::I64(value) => (2, u64::from_le_bytes(value.to_le_bytes()), &[]),
            FlagValue::Str(value) => (3, 0, value.as_bytes()),
            FlagValue::Unknown { kind, raw, bytes } => (kind, raw, bytes),
        };
        if text.len() > FLAG_TEXT_MAX {
            return Err(EncodeError::VarDataTooLong {
                field: "feature flag text",
                length: text.len(),
                max: FLAG_TEXT_MAX,
            });
        }
        let start = self.limit;
        let text_start = start + FLAG_BLOCK_LENGTH + TEXT_HEADER_LENGTH;
        let end = text_start + text.len();
        room("feature flag", self.buf, end)?;
        let buf = &mut *self.buf;
        write_field(buf, start + KEY_OFFSET, flag.key);
        write_field(buf, start + KIND_OFFSET, kind);
        write_field(buf, start + POLICY_OFFSET, policy_bits(flag.policy));
        write_field(buf, start + VERSION_OFFSET, flag.version);
        write_field(buf, start + RESERVED_OFFSET, 0_u16);
        write_field(buf, start + VALUE_OFFSET, raw);
        // text.len() <= FLAG_TEXT_MAX was checked above.
        let text_length = u16::try_from(text.len()).unwrap_or(0);
        write_field(buf, start + FLAG_BLOCK_LENGTH, text_length);
        if let Some(room) = buf.get_mut(text_start..end) {
            room.copy_from_slice(text);
        }
        self.limit = end;
        self.count += 1;
        self.last_key = Some(flag.key);
        // count <= FLAGS_MAX fits u16.
        write_field(buf, 2, u16::try_from(self.count).unwrap_or(0));
        Ok(self)
    }

    /// Ends the record and returns its length.
    pub fn finish(self) -> usize {
        self.limit
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const COMPRESSION: FlagDefinition = FlagDefinition {
        name: "compression",
        key: 1,
        kind: FlagKind::Bool,
        version: 1,
    };
    const WINDOW: FlagDefinition = FlagDefinition {
        name: "window",
        key: 2,
        kind: FlagKind::U64,
        version: 1,
    };

    fn flag(key: u16, version: u16, policy: UnknownPolicy, value: FlagValue<'_>) -> Flag<'_> {
        Flag {
            key,
            version,
            policy,
            value,
        }
    }

    fn record(buf: &mut [u8], flags: &[Flag<'_>]) -> usize {
        let mut encoder = FeatureFlagsEncoder::wrap(buf).unwrap();
        for flag in flags {
            encoder.add(*flag).unwrap();
        }
        encoder.finish()
    }

    #[test]
    fn typed_reads_check_kind_and_version() {
        let mut buf = [0u8; 256];
        let length = record(
            &mut buf,
            &[
                flag(1, 1, UnknownPolicy::Terminate, FlagValue::Bool(true)),
                flag(2, 2, UnknownPolicy::Ignore, FlagValue::U64(9)),
                flag(3, 1, UnknownPolicy::Ignore, FlagValue::Str("lz4")),
            ],
        );
        let flags = FeatureFlags::decode(&buf[..length]).unwrap();
        assert_eq!(flags.len(), 3);
        assert_eq!(flags.get::<bool>(&COMPRESSION), Some(true));
        // Version 2 of `window` is newer than this reader's version 1.
        assert_eq!(flags.get::<u64>(&WINDOW), None);
        assert_eq!(
            flags.flag(3).map(|flag| flag.value),
            Some(FlagValue::Str("lz4"))
        );
        assert_eq!(flags.resolve(&[COMPRESSION, WINDOW]), Ok(2));
    }

    #[test]
    fn policies_decide_unknown_flags() {
        let mut buf = [0u8; 256];
        let length = record(
            &mut buf,
            &[
                flag(1, 1, UnknownPolicy::Terminate, FlagValue::Bool(true)),
                flag(7, 1, UnknownPolicy::Reject, FlagValue::I64(-1)),
            ],
        );
        let flags = FeatureFlags::decode(&buf[..length]).unwrap();
        let error = flags.resolve(&[COMPRESSION]).unwrap_err();
        assert_eq!(error.key, 7);
        assert_eq!(error.policy, UnknownPolicy::Reject);
        let error = flags.resolve(&[]).unwrap_err();
        assert_eq!((error.key, error.policy), (1, UnknownPolicy::Terminate));
    }

    #[test]
    fn order_and_values_are_enforced_both_ways() {
        let mut buf = [0u8; 256];
        let mut encoder = FeatureFlagsEncoder::wrap(&mut buf).unwrap();
        encoder
            .add(flag(5, 1, UnknownPolicy::Ignore, FlagValue::Bool(false)))
            .unwrap();
        assert!(
            encoder
                .add(flag(5, 1, UnknownPolicy::Ignore, FlagValue::Bool(false)))
                .is_err()
        );
        assert!(
            encoder
                .add(flag(4, 1, UnknownPolicy::Ignore, FlagValue::Bool(false)))
                .is_err()
        );

        let length = record(
            &mut buf,
            &[
                flag(1, 1, UnknownPolicy::Ignore, FlagValue::Bool(true)),
                flag(2, 1, UnknownPolicy::Ignore, FlagValue::Bool(true)),
            ],
        );
        let mut swapped = buf;
        swapped[4] = 3; // first key 3 > second key 2
        assert_eq!(
            FeatureFlags::decode(&swapped[..length]).unwrap_err(),
            DecodeError::FlagsOutOfOrder {
                previous: 3,
                key: 2
            }
        );
        let mut bad_bool = buf;
        bad_bool[4 + VALUE_OFFSET] = 2;
        assert!(FeatureFlags::decode(&bad_bool[..length]).is_err());
        assert!(FeatureFlags::decode(&buf[..length - 1]).is_err());
    }

    #[test]
    fn longer_entries_from_a_newer_writer_are_stepped_over() {
        // One bool flag written with a 24-byte block: 8 bytes this build does not know.
        let mut buf = [0u8; 4 + 24 + 2];
        buf[..4].copy_from_slice(&[24, 0, 1, 0]);
        buf[4..6].copy_from_slice(&9_u16.to_le_bytes());
        buf[4 + VERSION_OFFSET] = 1;
        buf[4 + VALUE_OFFSET] = 1;
        buf[4 + 16] = 0xEE;
        let flags = FeatureFlags::decode(&buf).unwrap();
        assert_eq!(flags.encoded_length(), buf.len());
        assert_eq!(
            flags.flag(9).map(|flag| flag.value),
            Some(FlagValue::Bool(true))
        );
    }
}
