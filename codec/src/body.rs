//! The variable part of a message body: repeating groups and var data, SBE byte for byte.
//!
//! A message body is its fixed block, then its repeating groups in order, then its var-data
//! fields in order. Each group starts with a dimension header; each entry is a fixed block of the
//! group's *wire* block length (a newer writer's entries may be longer; readers step over what
//! they do not know). Each var-data field is a `u32` length and that many bytes.
//!
//! ```text
//! group:     | block_length u16 | num_in_group u16 | entry 0 | entry 1 | ... |
//! var data:  | length u32 | bytes ... |
//! ```
//!
//! Evolution: a minor version may append fields to a block and append var-data fields. It may
//! append a group only while the message has no older var data, because an old reader would take
//! the new group's header for its var data; the `message!` macro asserts this at compile time.
//! Each count and length has a limit, and [`BodyReader`] checks every one before it lends a byte.

use core::marker::PhantomData;

use crate::error::{DecodeError, EncodeError, room};
use crate::wire::{read_field, write_field};

/// Bytes in a group's dimension header.
pub const GROUP_HEADER_LENGTH: usize = 4;
/// Bytes in a var-data length prefix.
pub const VAR_DATA_HEADER_LENGTH: usize = 4;
/// The longest var-data field any schema may declare (1 GiB, as SBE's `varDataEncoding`).
pub const VAR_DATA_MAX: usize = 1 << 30;
/// The most entries any group may declare (the width of `num_in_group`).
pub const GROUP_COUNT_MAX: usize = u16::MAX as usize;

/// A cursor over a message body that validates each structure as it steps over it.
#[derive(Debug)]
pub struct BodyReader<'a> {
    buf: &'a [u8],
    position: usize,
}

impl<'a> BodyReader<'a> {
    /// Starts at the beginning of `buf`.
    #[inline]
    pub fn new(buf: &'a [u8]) -> Self {
        Self { buf, position: 0 }
    }

    /// Bytes consumed so far.
    #[inline]
    pub fn position(&self) -> usize {
        self.position
    }

    /// Lends the next `length` bytes.
    #[inline]
    pub fn take(&mut self, what: &'static str, length: usize) -> Result<&'a [u8], DecodeError> {
        let end = self.position.checked_add(length);
        match end.and_then(|end| self.buf.get(self.position..end)) {
            Some(bytes) => {
                self.position += length;
                Ok(bytes)
            }
            None => Err(DecodeError::Truncated {
                what,
                needed: self.position.saturating_add(length),
                available: self.buf.len(),
            }),
        }
    }

    /// Steps over a group, checking its count against `max_count` and its wire block length
    /// against `min_block_length` (what the acting version promises).
    #[inline]
    pub fn group(
        &mut self,
        name: &'static str,
        max_count: usize,
        min_block_length: usize,
        acting_minor: u8,
    ) -> Result<RawGroup<'a>, DecodeError> {
        let header = self.take(name, GROUP_HEADER_LENGTH)?;
        let block_length = usize::from(read_field::<u16>(header, 0));
        let count = usize::from(read_field::<u16>(header, 2));
        if count > max_count {
            return Err(DecodeError::GroupTooLarge {
                group: name,
                count,
                max: max_count,
            });
        }
        if block_length < min_block_length {
            return Err(DecodeError::BlockTooShort {
                what: name,
                block_length,
                minimum: min_block_length,
                acting_minor,
            });
        }
        // Both factors are at most u16::MAX, so the product fits any usize of 32 bits or more.
        let entries = self.take(name, block_length * count)?;
        Ok(RawGroup {
            entries,
            block_length,
            count,
            acting_minor,
        })
    }

    /// Steps over a var-data field no longer than `max`.
    #[inline]
    pub fn var_data(&mut self, name: &'static str, max: usize) -> Result<&'a [u8], DecodeError> {
        let header = self.take(name, VAR_DATA_HEADER_LENGTH)?;
        let length = read_field::<u32>(header, 0);
        let length = usize::try_from(length).unwrap_or(usize::MAX);
        if length > max {
            return Err(DecodeError::VarDataTooLong {
                field: name,
                length,
                max,
            });
        }
        self.take(name, length)
    }
}

/// Checks that var data declared as a string is UTF-8.
#[inline]
pub fn utf8<'a>(field: &'static str, bytes: &'a [u8]) -> Result<&'a str, DecodeError> {
    core::str::from_utf8(bytes).map_err(|_| DecodeError::InvalidUtf8 { field })
}

/// A validated group: `count` entries of `block_length` bytes each.
#[derive(Debug, Clone, Copy, Default)]
pub struct RawGroup<'a> {
    entries: &'a [u8],
    block_length: usize,
    count: usize,
    acting_minor: u8,
}

impl<'a> RawGroup<'a> {
    /// Iterates the entries as views of type `E`.
    #[inline]
    pub fn iter<E: EntryView<'a>>(&self) -> GroupIter<'a, E> {
        GroupIter {
            group: *self,
            next: 0,
            entry: PhantomData,
        }
    }
}

/// A decoder of one group entry's fixed block, generated by the `message!` macro.
pub trait EntryView<'a>: Sized {
    /// Wraps an entry's block, already validated to be long enough for `acting_minor`.
    fn from_block(block: &'a [u8], acting_minor: u8) -> Self;
}

/// Iterates a group's entries in order.
pub struct GroupIter<'a, E> {
    group: RawGroup<'a>,
    next: usize,
    entry: PhantomData<E>,
}

impl<'a, E: EntryView<'a>> Iterator for GroupIter<'a, E> {
    type Item = E;

    #[inline]
    fn next(&mut self) -> Option<E> {
        if self.next >= self.group.count {
            return None;
        }
        let start = self.next * self.group.block_length;
        let block = self
            .group
            .entries
            .get(start..start + self.group.block_length)?;
        self.next += 1;
        Some(E::from_block(block, self.group.acting_minor))
    }

    #[inline]
    fn size_hint(&self) -> (usize, Option<usize>) {
        let left = self.group.count - self.next;
        (left, Some(left))
    }
}

impl<E> Clone for GroupIter<'_, E> {
    fn clone(&self) -> Self {
        Self {
            group: self.group,
            next: self.next,
            entry: PhantomData,
        }
    }
}

impl<'a, E: EntryView<'a>> ExactSizeIterator for GroupIter<'a, E> {}

impl<'a, E: EntryView<'a> + core::fmt::Debug> core::fmt::Debug for GroupIter<'a, E> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_list().entries(self.clone()).finish()
    }
}

/// Writes a group's dimension header at `limit` and zeroes room for `count` entries of
/// `block_length` bytes. Returns where the entries start.
#[inline]
pub fn write_group(
    buf: &mut [u8],
    limit: usize,
    name: &'static str,
    count: usize,
    max_count: usize,
    block_length: usize,
) -> Result<usize, EncodeError> {
    if count > max_count {
        return Err(EncodeError::TooManyEntries {
            group: name,
            count,
            max: max_count,
        });
    }
    let entries = limit + GROUP_HEADER_LENGTH;
    room(name, buf, entries + block_length * count)?;
    // Both narrowings are checked: block lengths are asserted to fit u16 at compile time and
    // count <= max_count <= u16::MAX.
    let block_length_u16 = u16::try_from(block_length).unwrap_or(u16::MAX);
    let count_u16 = u16::try_from(count).unwrap_or(u16::MAX);
    write_field(buf, limit, block_length_u16);
    write_field(buf, limit + 2, count_u16);
    if let Some(room) = buf.get_mut(entries..entries + block_length * count) {
        room.fill(0);
    }
    Ok(entries)
}

/// Writes a var-data field at `limit` and returns the new limit.
#[inline]
pub fn write_var_data(
    buf: &mut [u8],
    limit: usize,
    name: &'static str,
    bytes: &[u8],
    max: usize,
) -> Result<usize, EncodeError> {
    if bytes.len() > max {
        return Err(EncodeError::VarDataTooLong {
            field: name,
            length: bytes.len(),
            max,
        });
    }
    let start = limit + VAR_DATA_HEADER_LENGTH;
    let end = start + bytes.len();
    room(name, buf, end)?;
    // max <= VAR_DATA_MAX (asserted by the schema) so the length fits u32.
    write_field(buf, limit, u32::try_from(bytes.len()).unwrap_or(u32::MAX));
    if let Some(room) = buf.get_mut(start..end) {
        room.copy_from_slice(bytes);
    }
    Ok(end)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn var_data_round_trips_and_checks_its_limit() {
        let mut buf = [0u8; 16];
        let end = write_var_data(&mut buf, 2, "name", b"abc", 8).unwrap();
        assert_eq!(end, 9);
        assert_eq!(&buf[..9], &[0, 0, 3, 0, 0, 0, b'a', b'b', b'c']);
        let mut reader = BodyReader::new(&buf[2..]);
        assert_eq!(reader.var_data("name", 8), Ok(&b"abc"[..]));
        assert_eq!(reader.position(), 7);
        let mut reader = BodyReader::new(&buf[2..]);
        assert!(matches!(
            reader.var_data("name", 2),
            Err(DecodeError::VarDataTooLong {
                length: 3,
                max: 2,
                ..
            })
        ));
        assert!(write_var_data(&mut buf, 0, "name", b"abc", 2).is_err());
        assert!(write_var_data(&mut buf, 10, "name", b"abc", 8).is_err());
    }

    #[test]
    fn a_huge_var_data_length_is_an_error_not_an_overflow() {
        let buf = [0xFF, 0xFF, 0xFF, 0xFF, 0];
        let mut reader = BodyReader::new(&buf);
        assert!(reader.var_data("blob", VAR_DATA_MAX).is_err());
    }

    #[test]
    fn groups_check_count_block_length_and_room() {
        let mut buf = [0u8; 32];
        let entries = write_group(&mut buf, 0, "legs", 3, 4, 8).unwrap();
        assert_eq!(entries, 4);
        assert_eq!(&buf[..4], &[8, 0, 3, 0]);
        assert!(write_group(&mut buf, 0, "legs", 5, 4, 8).is_err());
        assert!(write_group(&mut buf, 8, "legs", 4, 4, 8).is_err());

        let group = BodyReader::new(&buf).group("legs", 4, 8, 0).unwrap();
        assert_eq!(group.iter::<Block>().count(), 3);
        assert!(BodyReader::new(&buf).group("legs", 2, 8, 0).is_err());
        assert!(BodyReader::new(&buf).group("legs", 4, 9, 0).is_err());
        assert!(BodyReader::new(&buf[..20]).group("legs", 4, 8, 0).is_err());
    }

    struct Block;

    impl EntryView<'_> for Block {
        fn from_block(_: &[u8], _: u8) -> Self {
            Block
        }
    }
}
