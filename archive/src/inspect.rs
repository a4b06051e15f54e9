//! Offline inspection of an archive directory: walking a recording's frames (`tern archive
//! dump`), checking recordings end to end (`verify`), and upgrading the catalog (`migrate`).
//!
//! These read the files directly and work whether or not an archive is running (reads take no
//! lock; writes, such as marking a recording invalid after it fails verification, need the
//! catalog's writer lock and so a stopped archive). Every walk is bounded by the recording's
//! stop position and reports progress through a callback, so a tool can draw a progress bar.

use std::path::Path;

use tern_codec::frame::DATA_HEADER_LENGTH;

use crate::catalog::{ARCHIVE_CATALOG_VERSION, Catalog, RecordingDescriptor, RecordingState};
use crate::error::{ArchiveError, CatalogError, SegmentError};
use crate::segment::{FrameFault, parse_segment_file_name};
use crate::segment_files;
use crate::segment_reader::{READ_BUFFER_MIN, SegmentReader};

/// One frame as `dump` shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FrameView {
    /// The stream position of its first byte.
    pub position: i64,
    /// Its length field.
    pub frame_length: i32,
    /// Its flags.
    pub flags: u8,
    /// Its type (1 DATA, 0 PAD).
    pub frame_type: u16,
    /// Its term id.
    pub term_id: i32,
    /// Its term offset.
    pub term_offset: i32,
    /// Its session.
    pub session_id: i32,
    /// Its stream.
    pub stream_id: i32,
    /// Its reserved value (the checksum, when checksums are on).
    pub reserved_value: i64,
    /// Up to the first 32 bytes of its payload.
    pub payload_head: Vec<u8>,
}

/// Walks the frames of `descriptor`'s recording from `from` (a frame boundary; -1 for its
/// start), at most `count`, handing each to `visit`. Returns the position after the last
/// frame visited. A frame that fails its checks ends the walk with its error.
pub fn walk_frames(
    dir: &Path,
    descriptor: &RecordingDescriptor,
    from: i64,
    count: u64,
    mut visit: impl FnMut(&FrameView),
) -> Result<i64, SegmentError> {
    let from = if from < 0 {
        descriptor.start_position
    } else {
        from
    };
    let mut reader = SegmentReader::new(dir, descriptor, from, READ_BUFFER_MIN)?;
    let mut visited = 0;
    while visited < count {
        let Some(block) = reader.read(descriptor.stop_position)? else {
            break;
        };
        let mut offset = 0;
        let mut next = block.next_position;
        while offset < block.bytes.len() && visited < count {
            let frame = &block.bytes[offset..];
            let view = view_of(frame, block.position + i64::try_from(offset).expect("fits"));
            let aligned = if view.frame_type == tern_codec::frame::PAD_FRAME_TYPE {
                DATA_HEADER_LENGTH
            } else {
                usize::try_from(view.frame_length)
                    .unwrap_or(0)
                    .next_multiple_of(32)
            };
            visit(&view);
            visited += 1;
            offset += aligned;
            if visited == count && offset < block.bytes.len() {
                next = block.position + i64::try_from(offset).expect("fits");
            }
        }
        reader.advance_to(next);
    }
    Ok(reader.position())
}

fn view_of(frame: &[u8], position: i64) -> FrameView {
    let i32_at = |at: usize| i32::from_le_bytes(frame[at..at + 4].try_into().expect("header"));
    let frame_length = i32_at(0);
    let payload_end = usize::try_from(frame_length).unwrap_or(0).min(frame.len());
    let payload = frame
        .get(DATA_HEADER_LENGTH..payload_end.max(DATA_HEADER_LENGTH))
        .unwrap_or(&[]);
    FrameView {
        position,
        frame_length,
        flags: frame[5],
        frame_type: u16::from_le_bytes([frame[6], frame[7]]),
        term_offset: i32_at(8),
        session_id: i32_at(12),
        stream_id: i32_at(16),
        term_id: i32_at(20),
        reserved_value: i64::from_le_bytes(frame[24..32].try_into().expect("header")),
        payload_head: payload[..payload.len().min(32)].to_vec(),
    }
}

/// What verifying one recording found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// Every frame from start to stop checks.
    Valid {
        /// Frames checked.
        frames: u64,
    },
    /// The descriptor does not check (its error).
    BadDescriptor(String),
    /// A segment or frame fails: where and why.
    BadData {
        /// The first position that fails.
        position: i64,
        /// Why.
        reason: String,
    },
    /// Deleted: its files should be gone; how many are still there.
    Deleted {
        /// Segment files left behind.
        leftover_segments: usize,
    },
}

/// Verifies one recording: its descriptor, then every frame from its start to its stop.
/// `progress` is told the position reached now and then.
pub fn verify_recording(
    dir: &Path,
    catalog: &Catalog,
    recording_id: i64,
    mut progress: impl FnMut(i64),
) -> Result<Verdict, ArchiveError> {
    let descriptor = match catalog.descriptor(recording_id) {
        Ok(descriptor) => descriptor,
        Err(CatalogError::UnknownRecording { recording_id }) => {
            return Err(CatalogError::UnknownRecording { recording_id }.into());
        }
        Err(error) => return Ok(Verdict::BadDescriptor(error.to_string())),
    };
    if descriptor.state == RecordingState::Deleted {
        let leftover_segments = segment_files::list_segments(dir, recording_id)?.len();
        return Ok(Verdict::Deleted { leftover_segments });
    }
    let mut frames = 0u64;
    let mut last_report = descriptor.start_position;
    let result = walk_frames(dir, &descriptor, -1, u64::MAX, |frame| {
        frames += 1;
        if frame.position - last_report >= 1 << 20 {
            last_report = frame.position;
            progress(frame.position);
        }
    });
    match result {
        Ok(end) if end == descriptor.stop_position => {
            progress(end);
            Ok(Verdict::Valid { frames })
        }
        Ok(end) => Ok(Verdict::BadData {
            position: end,
            reason: format!(
                "the frames end at {end}, before the stop position {}",
                descriptor.stop_position
            ),
        }),
        Err(SegmentError::Frame {
            position, fault, ..
        }) => Ok(Verdict::BadData {
            position,
            reason: describe_fault(&fault),
        }),
        Err(SegmentError::MissingSegment { position, path, .. }) => Ok(Verdict::BadData {
            position,
            reason: format!("segment {} is missing", path.display()),
        }),
        Err(error) => Ok(Verdict::BadData {
            position: descriptor.start_position,
            reason: error.to_string(),
        }),
    }
}

fn describe_fault(fault: &FrameFault) -> String {
    fault.to_string()
}

/// Segment files in `dir` that belong to no recording in the catalog.
pub fn orphan_segments(dir: &Path, catalog: &Catalog) -> Result<Vec<String>, ArchiveError> {
    let entries = std::fs::read_dir(dir).map_err(|source| ArchiveError::io(dir, source))?;
    let mut orphans = Vec::new();
    for entry in entries {
        let entry = entry.map_err(|source| ArchiveError::io(dir, source))?;
        let Some(name) = entry.file_name().to_str().map(str::to_owned) else {
            continue;
        };
        if let Some((recording_id, _)) = parse_segment_file_name(&name)
            && (recording_id < 0 || recording_id >= catalog.next_recording_id())
        {
            orphans.push(name);
        }
    }
    orphans.sort();
    Ok(orphans)
}

/// Upgrades the catalog in `dir` to this build's minor version. Returns the version found.
/// `progress` is told (descriptors done, descriptors in all).
pub fn migrate(
    dir: &Path,
    progress: impl FnMut(i64, i64),
) -> Result<tern_codec::SemanticVersion, CatalogError> {
    Catalog::migrate(dir, ARCHIVE_CATALOG_VERSION, progress)
}
