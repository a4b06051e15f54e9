//! Operations on a recording's segment files as a whole: finding them, cutting a recording back
//! to a position, deleting segments, and repairing the end of a recording after a crash.
//!
//! Cutting at a position leaves nothing of the old stream after it: the segment holding the
//! position is shortened to it and grown back to its full length (the file system gives back
//! zeros), and every later segment is deleted. So a frame written before the cut can never be
//! mistaken for one written after it, by a replay or by the next repair.

use std::fs::OpenOptions;
use std::path::Path;

use tern_codec::position::TermGeometry;

use crate::catalog::{Catalog, RecordingDescriptor};
use crate::error::{ArchiveError, SegmentError};
use crate::segment::{
    FrameFault, SEGMENT_HEADER_LENGTH_U64, SegmentLayout, parse_segment_file_name, segment_path,
};
use crate::segment_reader::{READ_BUFFER_MIN, SegmentReader};

/// The base positions of `recording_id`'s segment files in `dir`, in order.
pub fn list_segments(dir: &Path, recording_id: i64) -> Result<Vec<i64>, ArchiveError> {
    let entries = std::fs::read_dir(dir).map_err(|source| ArchiveError::io(dir, source))?;
    let mut bases = Vec::new();
    for entry in entries {
        let entry = entry.map_err(|source| ArchiveError::io(dir, source))?;
        let name = entry.file_name();
        if let Some((id, base)) = name.to_str().and_then(parse_segment_file_name)
            && id == recording_id
        {
            bases.push(base);
        }
    }
    bases.sort_unstable();
    Ok(bases)
}

/// The layout of a descriptor's segments.
pub fn layout_of(descriptor: &RecordingDescriptor) -> Result<SegmentLayout, ArchiveError> {
    let geometry = TermGeometry::new(descriptor.term_length, descriptor.initial_term_id)
        .map_err(|error| ArchiveError::Refused(error.to_string()))?;
    Ok(SegmentLayout::new(
        descriptor.origin_position,
        descriptor.segment_length,
        geometry,
    ))
}

/// Cuts `descriptor`'s files at `position`: nothing at or after it remains.
pub fn cut_at(
    dir: &Path,
    descriptor: &RecordingDescriptor,
    position: i64,
) -> Result<(), ArchiveError> {
    let layout = layout_of(descriptor)?;
    let base = layout.base_of(position);
    // From the highest segment down: a crash part way leaves a shorter recording whose end is
    // a torn or cut last segment, never a gap with segments after it.
    for segment in list_segments(dir, descriptor.recording_id)?
        .into_iter()
        .rev()
    {
        let path = segment_path(dir, descriptor.recording_id, segment);
        if segment > base || (segment == base && position == base) {
            std::fs::remove_file(&path).map_err(|source| ArchiveError::io(&path, source))?;
            sync_directory(dir)?;
        } else if segment == base {
            let file = OpenOptions::new()
                .write(true)
                .open(&path)
                .map_err(|source| ArchiveError::io(&path, source))?;
            let keep =
                SEGMENT_HEADER_LENGTH_U64 + u64::try_from(position - base).expect("in segment");
            let full = SEGMENT_HEADER_LENGTH_U64 + u64::from(descriptor.segment_length);
            file.set_len(keep)
                .and_then(|()| file.set_len(full))
                .and_then(|()| file.sync_all())
                .map_err(|source| ArchiveError::io(&path, source))?;
        }
    }
    Ok(())
}

/// Syncs a directory: names created, renamed or removed in it survive a machine crash.
pub fn sync_directory(dir: &Path) -> Result<(), ArchiveError> {
    std::fs::File::open(dir)
        .and_then(|directory| directory.sync_all())
        .map_err(|source| ArchiveError::io(dir, source))
}

/// Deletes `recording_id`'s segments whose whole stream lies below `position`; returns how many.
pub fn delete_segments_below(
    dir: &Path,
    descriptor: &RecordingDescriptor,
    position: i64,
) -> Result<usize, ArchiveError> {
    let mut deleted = 0;
    for base in list_segments(dir, descriptor.recording_id)? {
        if base.saturating_add(i64::from(descriptor.segment_length)) <= position {
            let path = segment_path(dir, descriptor.recording_id, base);
            std::fs::remove_file(&path).map_err(|source| ArchiveError::io(&path, source))?;
            deleted += 1;
        }
    }
    if deleted > 0 {
        sync_directory(dir)?;
    }
    Ok(deleted)
}

/// Deletes all of `recording_id`'s segments; returns how many.
pub fn delete_all_segments(dir: &Path, recording_id: i64) -> Result<usize, ArchiveError> {
    let bases = list_segments(dir, recording_id)?;
    for base in &bases {
        let path = segment_path(dir, recording_id, *base);
        std::fs::remove_file(&path).map_err(|source| ArchiveError::io(&path, source))?;
    }
    if !bases.is_empty() {
        sync_directory(dir)?;
    }
    Ok(bases.len())
}

/// Removes segments whose creation a crash interrupted (`.rec.tmp` files).
fn remove_temporary_segments(dir: &Path) -> Result<(), ArchiveError> {
    let entries = std::fs::read_dir(dir).map_err(|source| ArchiveError::io(dir, source))?;
    for entry in entries {
        let entry = entry.map_err(|source| ArchiveError::io(dir, source))?;
        let path = entry.path();
        if path
            .file_name()
            .and_then(|name| name.to_str())
            .is_some_and(|name| name.ends_with(crate::segment_writer::TEMPORARY_SUFFIX))
        {
            tracing::warn!(path = %path.display(), "a segment whose creation was interrupted: removed");
            std::fs::remove_file(&path).map_err(|source| ArchiveError::io(&path, source))?;
        }
    }
    Ok(())
}

/// Whether a frame of `descriptor`'s recording starts at `position` (or `position` is its stop):
/// truncation and replay start only on frame boundaries. One frame is read, not the recording.
/// A frame there that fails its checksum is an error, not an answer.
pub fn frame_starts_at(
    dir: &Path,
    descriptor: &RecordingDescriptor,
    position: i64,
) -> Result<bool, ArchiveError> {
    if position == descriptor.stop_position {
        return Ok(true);
    }
    if position < descriptor.start_position || position > descriptor.stop_position {
        return Ok(false);
    }
    let mut reader = SegmentReader::new(dir, descriptor, position, READ_BUFFER_MIN)?;
    match reader.read(descriptor.stop_position) {
        Ok(_) => Ok(true),
        Err(SegmentError::Frame {
            fault:
                FrameFault::Misplaced { .. }
                | FrameFault::Length { .. }
                | FrameFault::Unwritten
                | FrameFault::Type(_),
            ..
        }) => Ok(false),
        Err(error) => Err(error.into()),
    }
}

/// What repairing a recording found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Repair {
    /// The recording.
    pub recording_id: i64,
    /// The stop position the catalog held.
    pub stored_stop: i64,
    /// The stop position found: the end of the last frame that checks.
    pub stop: i64,
    /// What ended the scan when it was not clean (a torn or damaged frame, now cut away).
    pub fault: Option<FrameFault>,
}

/// Finds where a recording really ends, scanning frames from `from` (a frame boundary known
/// to be written, such as the stored stop position): the first place with no frame, or with one
/// that fails its checks. Returns that position and the fault, if any.
pub fn scan_end(
    dir: &Path,
    descriptor: &RecordingDescriptor,
    from: i64,
) -> Result<(i64, Option<FrameFault>), ArchiveError> {
    let mut reader = SegmentReader::new(dir, descriptor, from, READ_BUFFER_MIN)?;
    loop {
        let position = reader.position();
        match reader.read(i64::MAX) {
            Ok(Some(block)) => {
                let next = block.next_position;
                reader.advance_to(next);
            }
            Ok(None) => return Ok((reader.position(), None)),
            Err(SegmentError::Frame {
                fault: FrameFault::Unwritten,
                position,
                ..
            }) => return Ok((position, None)),
            Err(SegmentError::Frame {
                fault, position, ..
            }) => return Ok((position, Some(fault))),
            // A segment never created: the recording ends where it would have begun. One
            // missing below that (holding the stored stop) is damage, reported below.
            Err(SegmentError::MissingSegment { position, .. })
                if layout_of(descriptor)?.base_of(position) == position =>
            {
                return Ok((position, None));
            }
            // The scan reached the start of a segment (at or past the stored stop, so nothing
            // in it was ever committed) whose header never made it: the recording ends there.
            Err(SegmentError::Header { .. })
                if layout_of(descriptor)?.base_of(position) == position =>
            {
                return Ok((position, None));
            }
            Err(error) => return Err(error.into()),
        }
    }
}

/// Repairs every recording the catalog holds as active (an archive that stopped without
/// stopping them: a crash): scans from the stored stop position to the real end, cuts away a
/// torn or damaged final frame and anything after it, and marks the recording stopped there at
/// `now_ms`. Returns what was found.
pub fn recover(
    dir: &Path,
    catalog: &mut Catalog,
    now_ms: i64,
) -> Result<Vec<Repair>, ArchiveError> {
    remove_temporary_segments(dir)?;
    let mut repairs = Vec::new();
    for recording_id in 0..catalog.next_recording_id() {
        let descriptor = match catalog.descriptor(recording_id) {
            Ok(descriptor) => descriptor,
            Err(error) => {
                tracing::warn!(%error, recording_id, "a recording's descriptor does not check: left as it is");
                continue;
            }
        };
        if !descriptor.is_active() {
            continue;
        }
        let (stop, fault) = match scan_end(dir, &descriptor, descriptor.stop_position) {
            Ok(end) => end,
            Err(error) => {
                // Damage below the stored stop position (a segment the recording had written
                // to, gone or unreadable): the recording is kept as it was and marked invalid
                // for an operator to look at; the archive goes on with the others.
                tracing::error!(%error, recording_id, "a recording could not be repaired: marked invalid");
                catalog.stop(recording_id, descriptor.stop_position, now_ms)?;
                catalog.set_state(recording_id, crate::catalog::RecordingState::Invalid)?;
                repairs.push(Repair {
                    recording_id,
                    stored_stop: descriptor.stop_position,
                    stop: descriptor.stop_position,
                    fault: None,
                });
                continue;
            }
        };
        cut_at(dir, &descriptor, stop)?;
        catalog.stop(recording_id, stop, now_ms)?;
        tracing::warn!(
            recording_id,
            stored_stop = descriptor.stop_position,
            stop,
            fault = ?fault,
            "recording repaired after the archive stopped without stopping it"
        );
        repairs.push(Repair {
            recording_id,
            stored_stop: descriptor.stop_position,
            stop,
            fault,
        });
    }
    catalog.flush()?;
    Ok(repairs)
}
