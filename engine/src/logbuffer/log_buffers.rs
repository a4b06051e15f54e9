//! A log buffer file mapped into this process: its three terms and its metadata.
//!
//! The driver creates the file ([`LogBuffers::create`]); publishers and subscribers map it
//! ([`LogBuffers::map`]), which checks its magic, version and geometry first.

use std::path::Path;

use tern_codec::position::TermGeometry;

use super::descriptor::{
    LOG_META_DATA_LENGTH, LogBufferError, LogMetadata, LogParameters, PARTITION_COUNT, log_length,
};
use crate::concurrent::atomic_buffer::AtomicBuffer;
use crate::mapped_file::MappedFile;
use crate::mapped_view::{MappedView, View, views};

/// Why a log buffer could not be created or mapped.
#[derive(Debug, thiserror::Error)]
pub enum LogFileError {
    /// The file system said no.
    #[error("log buffer {path}: {source}")]
    Io {
        /// The file.
        path: String,
        /// Why.
        source: std::io::Error,
    },
    /// The file is not a valid log buffer.
    #[error("log buffer {path}: {source}")]
    Invalid {
        /// The file.
        path: String,
        /// What is wrong.
        source: LogBufferError,
    },
}

/// The views of a log buffer file, made once when it is mapped.
#[derive(Debug, Clone, Copy)]
pub(crate) struct LogViews<'a> {
    terms: [AtomicBuffer<'a>; PARTITION_COUNT],
    metadata: LogMetadata<'a>,
}

views!(LogViews);

/// A mapped log buffer.
#[derive(Debug)]
pub struct LogBuffers {
    views: MappedView<LogViews<'static>>,
    path: std::path::PathBuf,
    file_length: usize,
    geometry: TermGeometry,
}

impl LogBuffers {
    /// Creates the file at `path` for a new log and writes its metadata.
    pub fn create(path: &Path, parameters: &LogParameters) -> Result<Self, LogFileError> {
        let term_length = usize::try_from(parameters.term_length).unwrap_or(0);
        let page_size = usize::try_from(parameters.page_size).unwrap_or(0);
        let length = log_length(term_length, page_size);
        let file = MappedFile::create(path, length).map_err(|source| LogFileError::Io {
            path: path.display().to_string(),
            source,
        })?;
        let buffers = Self::from_file(file, term_length);
        buffers.metadata().initialise(parameters);
        // The geometry depends on the initial term id, which only now is written.
        let geometry = TermGeometry::new(parameters.term_length, parameters.initial_term_id)
            .map_err(|error| LogFileError::Invalid {
                path: path.display().to_string(),
                source: LogBufferError::TermLength(error),
            })?;
        Ok(Self {
            geometry,
            ..buffers
        })
    }

    /// Maps an existing log buffer, validating it.
    pub fn map(path: &Path) -> Result<Self, LogFileError> {
        let file = MappedFile::open(path).map_err(|source| LogFileError::Io {
            path: path.display().to_string(),
            source,
        })?;
        let invalid = |source| LogFileError::Invalid {
            path: path.display().to_string(),
            source,
        };
        if file.len() < LOG_META_DATA_LENGTH {
            return Err(invalid(LogBufferError::Length {
                expected: LOG_META_DATA_LENGTH,
                actual: file.len(),
            }));
        }
        // The metadata sits after three terms of a power-of-two length from 64 KiB to 1 GiB:
        // find the one whose metadata declares that length, then validate it fully.
        let probe = file.buffer();
        let term_length_offset = LogMetadata::TERM_LENGTH_OFFSET;
        let mut candidate = 0;
        for shift in 16..=30u32 {
            let term_length = 1usize << shift;
            let metadata_offset = PARTITION_COUNT * term_length;
            if metadata_offset + LOG_META_DATA_LENGTH > file.len() {
                break;
            }
            let declared = probe.get_i32(metadata_offset + term_length_offset);
            if usize::try_from(declared).ok() == Some(term_length) {
                candidate = term_length;
                break;
            }
        }
        if candidate == 0 {
            return Err(invalid(LogBufferError::Length {
                expected: 0,
                actual: file.len(),
            }));
        }
        let buffers = Self::from_file(file, candidate);
        let geometry = buffers
            .metadata()
            .validate(buffers.file_length)
            .map_err(invalid)?;
        Ok(Self {
            geometry,
            ..buffers
        })
    }

    fn from_file(file: MappedFile, term_length: usize) -> Self {
        let path = file.path().to_path_buf();
        let file_length = file.len();
        let views = MappedView::<LogViews<'static>>::new(std::sync::Arc::new(file), |file| {
            let whole = file.buffer();
            LogViews {
                terms: [0, 1, 2].map(|index| whole.view(index * term_length, term_length)),
                metadata: LogMetadata::new(
                    whole.view(PARTITION_COUNT * term_length, LOG_META_DATA_LENGTH),
                ),
            }
        });
        let geometry = TermGeometry::new(
            u32::try_from(term_length).unwrap_or(0),
            views.view().metadata.initial_term_id(),
        )
        .unwrap_or_else(|_| TermGeometry::new(65536, 0).expect("a valid geometry"));
        Self {
            views,
            path,
            file_length,
            geometry,
        }
    }

    /// Term `index` (0, 1 or 2).
    #[inline]
    pub fn term(&self, index: usize) -> AtomicBuffer<'_> {
        self.views.view().terms[index]
    }

    /// The metadata.
    #[inline]
    pub fn metadata(&self) -> LogMetadata<'_> {
        self.views.view().metadata
    }

    /// The stream's geometry.
    pub fn geometry(&self) -> TermGeometry {
        self.geometry
    }

    /// The file's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Zeroes the log from `clean_position` towards `target` (a frame-aligned position past
    /// it), within one partition, so that the next writer of those bytes (three terms on)
    /// finds them clean; returns the new clean position. Run only by the log's cleaner (the
    /// conductor for a publication, the receiver for an image), never over bytes a reader may
    /// still read: the clean position is announced first, so a lapped reader that copies a
    /// byte zeroed here finds out.
    pub(crate) fn clean_step(&self, clean_position: i64, target: i64) -> i64 {
        let geometry = self.geometry;
        let term_id = geometry.term_id(clean_position);
        let index = super::descriptor::index_by_term(geometry.initial_term_id(), term_id);
        let term_offset = geometry.term_offset(clean_position);
        let term_length = i64::from(geometry.term_length());
        let length = (target - clean_position).min(term_length - i64::from(term_offset));
        if length <= 0 {
            return clean_position;
        }
        let alignment = super::descriptor::ALIGNMENT;
        debug_assert!(length % i64::try_from(alignment).unwrap_or(1) == 0);
        let offset = usize::try_from(term_offset).unwrap_or(0);
        let length_bytes = usize::try_from(length).unwrap_or(0);
        let term = self.term(index);
        self.metadata()
            .announce_clean_position(clean_position + length);
        // Zero all but the first frame length, at the slot widths every term access uses, then
        // the first frame length (release), as readers read nothing of a frame before it.
        super::descriptor::zero_slots(&term, offset + alignment, length_bytes - alignment);
        term.put_i32(offset + 4, 0);
        term.put_i64(offset + 8, 0);
        term.put_i64(offset + 16, 0);
        term.put_i64(offset + 24, 0);
        term.put_i32_ordered(offset, 0);
        clean_position + length
    }
}
