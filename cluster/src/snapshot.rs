//! The container's snapshot file format: the container's state (sessions, timers, position,
//! cluster time) and the service's own snapshot, behind a versioned, checksummed header.
//!
//! ```text
//! 0   magic "TERNSNAP" (u64)
//! 8   format version, composed major.minor.patch (u32)
//! 12  CRC-32C of every byte from 16 to the end (u32)
//! 16  log position (u64)        24  cluster time ns (u64)
//! 32  session count (u32), then per session:
//!       session id u64, last request id u64, position u64, response length u32, response
//!     timer count (u32), then per timer: correlation id u64, deadline ns u64
//!     service snapshot length (u32), service snapshot bytes
//! ```
//!
//! All integers little-endian. A reader refuses another major version, a bad checksum (a torn
//! write) and any count or length that runs past the end.

use tern_codec::SemanticVersion;

use crate::service::SnapshotError;

/// The snapshot format's magic number: "TERNSNAP".
pub const SNAPSHOT_MAGIC: u64 = u64::from_le_bytes(*b"TERNSNAP");
/// The snapshot format's version.
pub const SNAPSHOT_VERSION: SemanticVersion = SemanticVersion::new(1, 0, 0);
/// Bytes before the checksummed body.
pub const SNAPSHOT_HEADER_LENGTH: usize = 16;
/// The most sessions or timers a snapshot may list.
pub const SNAPSHOT_ITEMS_MAX: u32 = 1 << 20;

/// Writes a snapshot body; [`SnapshotWriter::finish`] fills in the header.
#[derive(Debug)]
pub struct SnapshotWriter {
    bytes: Vec<u8>,
}

impl SnapshotWriter {
    /// Starts a snapshot at `position` with `cluster_time_ns`.
    pub fn new(position: u64, cluster_time_ns: u64) -> Self {
        let mut bytes = vec![0u8; SNAPSHOT_HEADER_LENGTH];
        bytes.extend_from_slice(&position.to_le_bytes());
        bytes.extend_from_slice(&cluster_time_ns.to_le_bytes());
        Self { bytes }
    }

    /// Appends a u64.
    pub fn u64(&mut self, value: u64) {
        self.bytes.extend_from_slice(&value.to_le_bytes());
    }

    /// Appends a u32.
    pub fn u32(&mut self, value: u32) {
        self.bytes.extend_from_slice(&value.to_le_bytes());
    }

    /// Appends a u32 length and the bytes.
    pub fn bytes(&mut self, value: &[u8]) {
        self.u32(u32::try_from(value.len()).expect("snapshot fields are under 4 GiB"));
        self.bytes.extend_from_slice(value);
    }

    /// Writes the header and returns the snapshot.
    pub fn finish(mut self) -> Vec<u8> {
        let sum = crc32c::crc32c(&self.bytes[SNAPSHOT_HEADER_LENGTH..]);
        self.bytes[0..8].copy_from_slice(&SNAPSHOT_MAGIC.to_le_bytes());
        self.bytes[8..12].copy_from_slice(&SNAPSHOT_VERSION.compose().to_le_bytes());
        self.bytes[12..16].copy_from_slice(&sum.to_le_bytes());
        self.bytes
    }
}

/// Reads a snapshot body after checking its header.
#[derive(Debug)]
pub struct SnapshotReader<'a> {
    bytes: &'a [u8],
    offset: usize,
}

impl<'a> SnapshotReader<'a> {
    /// Checks magic, version and checksum.
    pub fn open(bytes: &'a [u8]) -> Result<Self, SnapshotError> {
        let mut reader = Self { bytes, offset: 0 };
        let magic = reader.u64("header")?;
        if magic != SNAPSHOT_MAGIC {
            return Err(SnapshotError::Magic(magic));
        }
        let found = SemanticVersion::decompose(reader.u32("header")?).map_err(|_| {
            SnapshotError::Invalid {
                field: "version",
                reason: "the top byte of a composed version must be zero",
            }
        })?;
        if !found.is_compatible_with(SNAPSHOT_VERSION) {
            return Err(SnapshotError::Version {
                found,
                supported: SNAPSHOT_VERSION,
            });
        }
        let stored = reader.u32("header")?;
        if crc32c::crc32c(&bytes[SNAPSHOT_HEADER_LENGTH..]) != stored {
            return Err(SnapshotError::Checksum);
        }
        Ok(reader)
    }

    fn take(&mut self, what: &'static str, length: usize) -> Result<&'a [u8], SnapshotError> {
        let available = self.bytes.len() - self.offset;
        if length > available {
            return Err(SnapshotError::Truncated {
                what,
                needed: u64::try_from(length).unwrap_or(u64::MAX),
                available: u64::try_from(available).unwrap_or(u64::MAX),
            });
        }
        let slice = &self.bytes[self.offset..self.offset + length];
        self.offset += length;
        Ok(slice)
    }

    /// Reads a u64.
    pub fn u64(&mut self, what: &'static str) -> Result<u64, SnapshotError> {
        Ok(u64::from_le_bytes(
            self.take(what, 8)?.try_into().expect("8 bytes"),
        ))
    }

    /// Reads a u32.
    pub fn u32(&mut self, what: &'static str) -> Result<u32, SnapshotError> {
        Ok(u32::from_le_bytes(
            self.take(what, 4)?.try_into().expect("4 bytes"),
        ))
    }

    /// Reads a count, checked against [`SNAPSHOT_ITEMS_MAX`].
    pub fn count(&mut self, what: &'static str) -> Result<u32, SnapshotError> {
        let count = self.u32(what)?;
        if count > SNAPSHOT_ITEMS_MAX {
            return Err(SnapshotError::Invalid {
                field: what,
                reason: "more items than a snapshot may hold",
            });
        }
        Ok(count)
    }

    /// Reads a u32 length and that many bytes.
    pub fn bytes(&mut self, what: &'static str) -> Result<&'a [u8], SnapshotError> {
        let length = usize::try_from(self.u32(what)?).unwrap_or(usize::MAX);
        self.take(what, length)
    }

    /// Checks that every byte was read.
    pub fn finish(self) -> Result<(), SnapshotError> {
        if self.offset == self.bytes.len() {
            Ok(())
        } else {
            Err(SnapshotError::Invalid {
                field: "length",
                reason: "bytes follow the last field",
            })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn snapshots_round_trip_and_refuse_damage() {
        let mut writer = SnapshotWriter::new(64, 7);
        writer.u32(2);
        writer.bytes(b"abc");
        let bytes = writer.finish();
        let mut reader = SnapshotReader::open(&bytes).unwrap();
        assert_eq!(reader.u64("position").unwrap(), 64);
        assert_eq!(reader.u64("time").unwrap(), 7);
        assert_eq!(reader.count("items").unwrap(), 2);
        assert_eq!(reader.bytes("blob").unwrap(), b"abc");
        reader.finish().unwrap();

        for cut in 0..bytes.len() {
            assert!(SnapshotReader::open(&bytes[..cut]).is_err(), "cut at {cut}");
        }
        let mut flipped = bytes.clone();
        flipped[20] ^= 1;
        assert_eq!(
            SnapshotReader::open(&flipped).unwrap_err(),
            SnapshotError::Checksum
        );
        let mut newer = bytes.clone();
        newer[8..12].copy_from_slice(&SemanticVersion::new(2, 0, 0).compose().to_le_bytes());
        assert!(matches!(
            SnapshotReader::open(&newer),
            Err(SnapshotError::Version { .. })
        ));
        let mut magic = bytes;
        magic[0] ^= 1;
        assert!(matches!(
            SnapshotReader::open(&magic),
            Err(SnapshotError::Magic(_))
        ));
    }
}
