//! Snapshots as recordings in the member's archive, beside the log: each snapshot is one
//! recording (channel [`SNAPSHOT_CHANNEL`]) of tern frames in the log's format, the snapshot's
//! bytes cut into frames of at most [`CHUNK_LENGTH`] bytes, each frame with the archive's
//! CRC-32C. So `tern archive list`, `verify` and `dump` read snapshots too, and a damaged one is
//! found by its frames' checksums (and by the snapshot's own checksum, `crate::snapshot`).
//!
//! A snapshot is written whole and synced before it is listed in the recording log; a crash
//! while it is written leaves a recording no record names, which retention deletes later.
//! Reading one goes through the archive's segment reader, so it works while the member runs
//! (the operator tools) as well as at start-up.

use std::path::Path;

use tern_archive::catalog::{Catalog, NewRecording, RecordingState};
use tern_archive::error::ArchiveError;
use tern_archive::segment::SegmentHeader;
use tern_archive::segment_files::{self, layout_of};
use tern_archive::segment_reader::{READ_BUFFER_MIN, SegmentReader};
use tern_archive::segment_writer::{Durability, SegmentWriter};

use super::{MemberLog, MemberLogError, WRITE_BLOCK_MAX, next_run, to_i64};
use crate::log_entry::{
    ENTRY_ALIGNMENT, ENTRY_LENGTH_MAX, FRAME_HEADER_LENGTH, LOG_SESSION_ID, LOG_STREAM_ID,
    LogFormat,
};

/// The channel snapshot recordings name in the catalog.
pub const SNAPSHOT_CHANNEL: &str = "tern:cluster-snapshot";
/// Snapshot bytes per frame at most.
pub const CHUNK_LENGTH: usize = ENTRY_LENGTH_MAX - FRAME_HEADER_LENGTH;
/// The term length of snapshot recordings.
const SNAPSHOT_TERM_LENGTH: u64 = 16 * 1024 * 1024;
/// The segment length of snapshot recordings.
const SNAPSHOT_SEGMENT_LENGTH: u32 = 64 * 1024 * 1024;

/// Why a snapshot cannot be read back.
#[derive(Debug, thiserror::Error)]
pub enum SnapshotReadError {
    /// The catalog or the files refused.
    #[error("snapshot recording {recording_id}: {source}")]
    Archive {
        /// The recording.
        recording_id: i64,
        /// Why.
        source: ArchiveError,
    },
    /// The recording is not a snapshot's, or was deleted.
    #[error("recording {recording_id} is not a snapshot recording in this archive ({reason})")]
    NotASnapshot {
        /// The recording.
        recording_id: i64,
        /// Why.
        reason: &'static str,
    },
}

impl MemberLog {
    /// Records `bytes` (a snapshot at log position `position`) as a new recording, synced;
    /// returns its id.
    pub fn record_snapshot(
        &mut self,
        bytes: &[u8],
        position: u64,
        now_ms: i64,
    ) -> Result<i64, MemberLogError> {
        let format = LogFormat::new(SNAPSHOT_TERM_LENGTH).expect("a valid term length");
        let mut framed = Vec::with_capacity(bytes.len() + bytes.len() / CHUNK_LENGTH * 64 + 64);
        let mut at = 0u64;
        for chunk in bytes.chunks(CHUNK_LENGTH) {
            at += format.write_entry(&mut framed, at, chunk).length;
        }
        let term_length = u32::try_from(SNAPSHOT_TERM_LENGTH).expect("fits");
        let source = format!("snapshot at {position}");
        let recording_id = self
            .catalog
            .add(&NewRecording {
                start_position: 0,
                start_timestamp: now_ms,
                initial_term_id: 0,
                term_length,
                mtu: u32::try_from(ENTRY_LENGTH_MAX).expect("small"),
                segment_length: SNAPSHOT_SEGMENT_LENGTH,
                session_id: LOG_SESSION_ID,
                stream_id: LOG_STREAM_ID,
                channel: SNAPSHOT_CHANNEL,
                source_identity: &source,
            })
            .map_err(ArchiveError::from)?;
        let descriptor = self
            .catalog
            .descriptor(recording_id)
            .map_err(ArchiveError::from)?;
        let layout = layout_of(&descriptor)?;
        let header = SegmentHeader {
            recording_id,
            base_position: 0,
            segment_length: SNAPSHOT_SEGMENT_LENGTH,
            term_length,
            initial_term_id: 0,
            stream_id: LOG_STREAM_ID,
            session_id: LOG_SESSION_ID,
            checksums: true,
        };
        let mut writer = SegmentWriter::new(
            &self.dir,
            header,
            layout,
            0,
            Durability::Position,
            WRITE_BLOCK_MAX,
        )
        .with_stamped_blocks();
        let mut offset = 0usize;
        let mut written = 0u64;
        while offset < framed.len() {
            let (block, run) = next_run(&framed[offset..], written, &layout)?;
            writer
                .write(&framed[offset..offset + block], run)
                .map_err(ArchiveError::from)?;
            offset += run;
            written += u64::try_from(run).expect("fits");
        }
        // Level 2 syncs on close, and the catalog is flushed: the snapshot and its descriptor
        // are on disk before the recording log names it.
        writer.close().map_err(ArchiveError::from)?;
        self.catalog
            .stop(recording_id, to_i64(written), now_ms)
            .and_then(|()| self.catalog.flush())
            .map_err(ArchiveError::from)?;
        Ok(recording_id)
    }

    /// Reads snapshot recording `recording_id` back whole, every frame's checksum checked.
    pub fn read_snapshot(&self, recording_id: i64) -> Result<Vec<u8>, SnapshotReadError> {
        read_snapshot_in(&self.dir, &self.catalog, recording_id)
    }

    /// Deletes snapshot recording `recording_id`'s files and marks it deleted in the catalog.
    pub fn delete_snapshot(&mut self, recording_id: i64) -> Result<(), MemberLogError> {
        let descriptor = self
            .catalog
            .descriptor(recording_id)
            .map_err(ArchiveError::from)?;
        if descriptor.channel != SNAPSHOT_CHANNEL {
            return Err(MemberLogError::Append(format!(
                "recording {recording_id} is not a snapshot's"
            )));
        }
        segment_files::delete_all_segments(&self.dir, recording_id)?;
        self.catalog
            .set_state(recording_id, RecordingState::Deleted)
            .map_err(ArchiveError::from)?;
        Ok(())
    }

    /// The snapshot recordings the catalog holds (not deleted): (id, stop position).
    pub fn snapshot_recordings(&self) -> Vec<i64> {
        // A descriptor that does not check is left alone (and never deleted from here).
        self.catalog
            .entries()
            .filter_map(Result::ok)
            .filter(|d| d.channel == SNAPSHOT_CHANNEL && d.state != RecordingState::Deleted)
            .map(|d| d.recording_id)
            .collect()
    }

    /// Empties the log and starts it again at `position` (an installed snapshot's): every
    /// segment file is deleted and the recording's start and stop are moved there, flushed. The
    /// segment grid stays the recording's, so a log that starts part way into a segment writes
    /// that segment from there.
    pub fn restart_at(&mut self, position: u64) -> Result<(), MemberLogError> {
        if !position.is_multiple_of(ENTRY_ALIGNMENT) {
            return Err(MemberLogError::Append(format!(
                "a log cannot start at {position}, which is not an entry boundary"
            )));
        }
        let id = self.descriptor.recording_id;
        let at = to_i64(position);
        self.maps.clear();
        segment_files::delete_all_segments(&self.dir, id)?;
        // The catalog holds a recording's start at or below its stop at every step.
        let (stop, _) = self.catalog.extent(id).map_err(ArchiveError::from)?;
        let catalog = &self.catalog;
        if at >= stop {
            catalog
                .set_stop_position(id, at)
                .and_then(|()| catalog.set_start_position(id, at))
        } else {
            catalog
                .set_start_position(id, at)
                .and_then(|()| catalog.set_stop_position(id, at))
        }
        .map_err(ArchiveError::from)?;
        self.catalog.flush().map_err(ArchiveError::from)?;
        self.descriptor.start_position = at;
        self.start = position;
        self.end = position;
        self.writer = super::new_writer(&self.dir, self.header, self.layout, at, self.durability);
        Ok(())
    }

    /// Deletes the log's whole segments below `position` (the oldest position anything still
    /// needs) and moves the log's start up to the first one kept. Returns the new start.
    pub fn purge_below(&mut self, position: u64) -> Result<u64, MemberLogError> {
        let position = position.min(self.end);
        let base = u64::try_from(self.layout.base_of(to_i64(position))).expect("non-negative");
        if base <= self.start {
            return Ok(self.start);
        }
        // The new start is on disk before any file goes: a crash in between leaves segments
        // below the start (deleted at the next purge), never a start whose segment is gone.
        // The stop first: the catalog holds a recording's start at or below its stop.
        // (The stop is raised to the new start only if it lags below it: the catalog's stop
        // claims what was synced, never more.)
        let id = self.descriptor.recording_id;
        let (stop, _) = self.catalog.extent(id).map_err(ArchiveError::from)?;
        if stop < to_i64(base) {
            self.catalog
                .set_stop_position(id, to_i64(base))
                .map_err(ArchiveError::from)?;
        }
        self.catalog
            .set_start_position(id, to_i64(base))
            .and_then(|()| self.catalog.flush())
            .map_err(ArchiveError::from)?;
        self.descriptor.start_position = to_i64(base);
        self.start = base;
        // Unmapped before the files go.
        self.maps.retain(|&segment, _| segment >= base);
        segment_files::delete_segments_below(&self.dir, &self.descriptor, to_i64(base))?;
        Ok(base)
    }
}

/// Reads snapshot recording `recording_id` of the archive in `dir` back whole (the operator
/// tools read with a read-only catalog).
pub fn read_snapshot_in(
    dir: &Path,
    catalog: &Catalog,
    recording_id: i64,
) -> Result<Vec<u8>, SnapshotReadError> {
    let archive = |source: ArchiveError| SnapshotReadError::Archive {
        recording_id,
        source,
    };
    let descriptor = catalog
        .descriptor(recording_id)
        .map_err(|error| archive(error.into()))?;
    if descriptor.channel != SNAPSHOT_CHANNEL {
        return Err(SnapshotReadError::NotASnapshot {
            recording_id,
            reason: "another channel",
        });
    }
    if descriptor.state != RecordingState::Valid {
        return Err(SnapshotReadError::NotASnapshot {
            recording_id,
            reason: "deleted or marked invalid",
        });
    }
    let mut reader = SegmentReader::new(dir, &descriptor, 0, READ_BUFFER_MIN)
        .map_err(|error| archive(error.into()))?;
    let mut out = Vec::new();
    loop {
        let block = match reader.read(descriptor.stop_position) {
            Ok(Some(block)) => block,
            Ok(None) => break,
            Err(error) => return Err(archive(error.into())),
        };
        let next = block.next_position;
        let mut at = 0usize;
        while at + FRAME_HEADER_LENGTH <= block.bytes.len() {
            let frame = &block.bytes[at..];
            let length = usize::try_from(u32::from_le_bytes(
                frame[..4].try_into().expect("four bytes"),
            ))
            .expect("fits")
            .max(FRAME_HEADER_LENGTH);
            if tern_archive::segment::is_pad(frame) {
                break;
            }
            // The reader handed whole frames whose checksums it checked.
            out.extend_from_slice(&frame[FRAME_HEADER_LENGTH..length.min(frame.len())]);
            at += length.next_multiple_of(32);
        }
        reader.advance_to(next);
    }
    Ok(out)
}
