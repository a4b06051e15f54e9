//! Reading a recording's frames back from its segment files, every frame checked.
//!
//! [`SegmentReader::read`] reads (`pread`) from its position up to a limit, at most one term
//! and one buffer at a time, and hands back the longest run of frames that pass
//! [`check_frame`]: a block that replay writes whole into a publication, or that `dump` and
//! `verify` walk. A frame that fails is reported as [`SegmentError::Frame`] with the recording,
//! the position and the reason, after the good frames before it were handed back: a corrupt
//! byte is never replayed as data. A PAD frame ends a block and is handed back as its header
//! alone (its body is padding to the end of its term), with the block's next position past it.
//!
//! Memory and threads: the reader owns its buffer, allocated once; one reader per replay (or
//! tool), used on one thread.

use std::fs::{File, OpenOptions};
use std::path::{Path, PathBuf};

use tern_codec::frame::DATA_HEADER_LENGTH;
use tern_codec::position::TermGeometry;

use crate::catalog::RecordingDescriptor;
use crate::error::SegmentError;
use crate::segment::{SEGMENT_HEADER_LENGTH_U64, SegmentLayout, check_frame, is_pad, segment_path};
use crate::segment_writer::{read_at_most, read_header};

/// The smallest read buffer: room for the longest frame (an MTU of 64 KiB).
pub const READ_BUFFER_MIN: usize = 64 * 1024;

/// Frames read, ready to hand on.
#[derive(Debug, PartialEq, Eq)]
pub struct Block<'a> {
    /// The stream position of the first byte.
    pub position: i64,
    /// Whole frames; a PAD, if any, is last and only its header is here.
    pub bytes: &'a [u8],
    /// The position after the block (past a PAD's whole length).
    pub next_position: i64,
}

#[derive(Debug)]
struct OpenSegment {
    file: File,
    path: PathBuf,
    base_position: i64,
    checksums: bool,
}

/// Reads one recording's frames in order.
#[derive(Debug)]
pub struct SegmentReader {
    dir: PathBuf,
    recording_id: i64,
    stream_id: i32,
    layout: SegmentLayout,
    segment: Option<OpenSegment>,
    position: i64,
    buffer: Vec<u8>,
    /// The block the last read checked and handed back, still in `buffer`: (its length, its
    /// next position). A caller that could not use it (a back-pressured replay) reads it again
    /// without another `pread` and checksum pass.
    checked: Option<(usize, i64)>,
}

impl SegmentReader {
    /// A reader of `descriptor`'s recording in `dir` from `position` (frame-aligned, at or past
    /// the recording's start), with a buffer of `buffer_length` bytes (at least
    /// [`READ_BUFFER_MIN`], a multiple of 32).
    pub fn new(
        dir: &Path,
        descriptor: &RecordingDescriptor,
        position: i64,
        buffer_length: usize,
    ) -> Result<Self, SegmentError> {
        assert!(buffer_length >= READ_BUFFER_MIN && buffer_length.is_multiple_of(32));
        let geometry = TermGeometry::new(descriptor.term_length, descriptor.initial_term_id)
            .map_err(|_| SegmentError::Layout {
                recording_id: descriptor.recording_id,
                what: format!("term length {}", descriptor.term_length),
            })?;
        if position < descriptor.start_position || position % 32 != 0 {
            return Err(SegmentError::Position {
                recording_id: descriptor.recording_id,
                position,
                reason: "before the recording's start or off the frame alignment",
            });
        }
        Ok(Self {
            dir: dir.to_path_buf(),
            recording_id: descriptor.recording_id,
            stream_id: descriptor.stream_id,
            layout: SegmentLayout::new(
                descriptor.origin_position,
                descriptor.segment_length,
                geometry,
            ),
            segment: None,
            position,
            buffer: vec![0u8; buffer_length],
            checked: None,
        })
    }

    /// Where the next read starts.
    pub fn position(&self) -> i64 {
        self.position
    }

    /// The stream's terms.
    pub fn geometry(&self) -> TermGeometry {
        self.layout.geometry
    }

    /// Moves the reader on to `position` without reading (a block handed back and used).
    pub fn advance_to(&mut self, position: i64) {
        assert!(position >= self.position && position % 32 == 0);
        if position != self.position {
            self.checked = None;
        }
        self.position = position;
    }

    /// Reads frames from the position, not past `limit`; does not move the position (call
    /// [`SegmentReader::advance_to`] with the block's next position once it is used). `None`
    /// when the position is at `limit`. A frame that `limit` cuts is reported as
    /// [`FrameFault::Truncated`] with `available` the bytes before `limit`: a caller with a
    /// bound of its own ends there; for a recorded position it is damage.
    pub fn read(&mut self, limit: i64) -> Result<Option<Block<'_>>, SegmentError> {
        if self.position >= limit {
            return Ok(None);
        }
        if let Some((length, next_position)) = self.checked
            && next_position <= limit
        {
            return Ok(Some(Block {
                position: self.position,
                bytes: &self.buffer[..length],
                next_position,
            }));
        }
        self.checked = None;
        let geometry = self.layout.geometry;
        let term_remaining =
            i64::from(geometry.term_length() - geometry.term_offset(self.position));
        let wanted = (limit - self.position)
            .min(term_remaining)
            .min(i64::try_from(self.buffer.len()).expect("buffer fits i64"));
        let wanted = usize::try_from(wanted).expect("positive and at most the buffer");
        let position = self.position;
        let in_segment = position - self.layout.base_of(position);
        let offset = SEGMENT_HEADER_LENGTH_U64 + u64::try_from(in_segment).expect("non-negative");
        let recording_id = self.recording_id;
        self.open_segment()?;
        let segment = self.segment.as_ref().expect("opened above");
        let checksums = segment.checksums;
        let read = read_at_most(&segment.file, &mut self.buffer[..wanted], offset)
            .map_err(|source| SegmentError::io(&segment.path, source))?;
        let bytes = &self.buffer[..read];
        let mut length = 0;
        let mut next_position = position;
        while length < bytes.len() {
            let frame_position = position + i64::try_from(length).expect("fits");
            match check_frame(&bytes[length..], frame_position, &geometry, checksums) {
                Ok(aligned) => {
                    let pad = is_pad(&bytes[length..]);
                    next_position = frame_position + i64::try_from(aligned).expect("fits");
                    if pad {
                        length += DATA_HEADER_LENGTH;
                        break;
                    }
                    length += aligned;
                }
                Err(_) if length > 0 => {
                    // Hand back the good frames first; the next read starts at this one and
                    // reports it if it is still at fault (it may only have been cut by the
                    // buffer).
                    break;
                }
                Err(fault) => {
                    return Err(SegmentError::Frame {
                        recording_id,
                        position: frame_position,
                        fault,
                    });
                }
            }
        }
        if length == 0 {
            return Ok(None);
        }
        self.checked = Some((length, next_position));
        Ok(Some(Block {
            position,
            bytes: &self.buffer[..length],
            next_position,
        }))
    }

    fn open_segment(&mut self) -> Result<(), SegmentError> {
        let base_position = self.layout.base_of(self.position);
        if self
            .segment
            .as_ref()
            .is_none_or(|open| open.base_position != base_position)
        {
            self.segment = None;
            let path = segment_path(&self.dir, self.recording_id, base_position);
            let file = OpenOptions::new()
                .read(true)
                .open(&path)
                .map_err(|source| {
                    if source.kind() == std::io::ErrorKind::NotFound {
                        SegmentError::MissingSegment {
                            path: path.clone(),
                            recording_id: self.recording_id,
                            position: self.position,
                        }
                    } else {
                        SegmentError::io(&path, source)
                    }
                })?;
            let header = read_header(&file, &path)?;
            let expected = (
                self.recording_id,
                base_position,
                self.layout.segment_length,
                self.layout.geometry.term_length(),
                self.layout.geometry.initial_term_id(),
                self.stream_id,
            );
            let found = (
                header.recording_id,
                header.base_position,
                header.segment_length,
                header.term_length,
                header.initial_term_id,
                header.stream_id,
            );
            if found != expected {
                return Err(SegmentError::Layout {
                    recording_id: self.recording_id,
                    what: format!(
                        "{}: header says (recording, base, segment length, term length, \
                         initial term id, stream) {found:?}, the catalog {expected:?}",
                        path.display()
                    ),
                });
            }
            self.segment = Some(OpenSegment {
                file,
                path,
                base_position,
                checksums: header.checksums,
            });
        }
        Ok(())
    }
}
