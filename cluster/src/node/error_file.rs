//! A member's distinct error log: a file in its directory (`errors`), each distinct error once
//! with how often it happened and when first and last (the engine's distinct error log, mapped
//! from a file instead of the CnC). `tern cluster errors --dir DIR` reads it whether or not the
//! member runs; it survives restarts, so the error that stopped a member is there afterwards.
//!
//! Memory and threads: the member agent is the one writer; it records only coarse, bounded
//! texts (a kind of error, not each hostile message's bytes), so the log stays small and a
//! flood of one kind costs a count, not a record.

use std::path::Path;

use tern_engine::concurrent::error_log::{DistinctErrorLog, ErrorObservation, read_errors};
use tern_engine::mapped_file::MappedFile;

/// The file's name in the member's directory.
pub const FILE_NAME: &str = "errors";
/// The file's length: room for thousands of distinct errors.
const LENGTH: usize = 1024 * 1024;
/// Distinct texts said on standard error at most (later ones are only recorded).
const SAID_MAX: usize = 1024;

/// The member's error log, mapped.
#[derive(Debug)]
pub(crate) struct ErrorFile {
    map: MappedFile,
    /// Texts already said on standard error: each is said once, then only counted.
    said: std::cell::RefCell<std::collections::HashSet<String>>,
}

impl ErrorFile {
    /// Opens the log in `dir`, or creates it; a file of another length (not one of ours) is
    /// replaced.
    pub(crate) fn open(dir: &Path) -> std::io::Result<Self> {
        let path = dir.join(FILE_NAME);
        if let Ok(map) = MappedFile::open(&path)
            && map.len() == LENGTH
        {
            return Ok(Self {
                map,
                said: Default::default(),
            });
        }
        let _ = std::fs::remove_file(&path);
        Ok(Self {
            map: MappedFile::create(&path, LENGTH)?,
            said: Default::default(),
        })
    }

    /// Records `text` at `now_ms` (the caller's clock, ms since the epoch), and says it on
    /// standard error (a warning) the first time.
    pub(crate) fn record(&self, now_ms: i64, text: &str) {
        let mut said = self.said.borrow_mut();
        if said.len() < SAID_MAX && said.insert(text.to_owned()) {
            tracing::warn!("{text}");
        }
        drop(said);
        // A writer that resumes the log finds its end; errors are rare enough for the walk.
        DistinctErrorLog::new(self.map.buffer()).record(now_ms, text);
    }
}

/// Visits every error the member in `dir` recorded, in the order first seen; returns how many.
pub fn read(dir: &Path, visit: impl FnMut(ErrorObservation<'_>)) -> std::io::Result<usize> {
    let map = MappedFile::open(&dir.join(FILE_NAME))?;
    Ok(read_errors(map.buffer(), visit))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errors_are_kept_once_with_their_counts_across_reopening() {
        let dir = tempfile::tempdir().unwrap();
        assert!(read(dir.path(), |_| {}).is_err(), "no log yet");
        let errors = ErrorFile::open(dir.path()).unwrap();
        errors.record(1, "a snapshot does not load");
        errors.record(1, "a consensus message was refused");
        errors.record(1, "a snapshot does not load");
        drop(errors);
        let errors = ErrorFile::open(dir.path()).unwrap();
        errors.record(1, "a snapshot does not load");
        let mut seen = Vec::new();
        let count = read(dir.path(), |error| {
            seen.push((error.text.to_owned(), error.count))
        })
        .unwrap();
        assert_eq!(count, 2);
        assert_eq!(
            seen,
            [
                ("a snapshot does not load".to_owned(), 3),
                ("a consensus message was refused".to_owned(), 1)
            ]
        );
        // A file that is not one of ours is replaced, not trusted.
        drop(errors);
        std::fs::write(dir.path().join(FILE_NAME), b"not an error log").unwrap();
        let errors = ErrorFile::open(dir.path()).unwrap();
        errors.record(1, "after");
        assert_eq!(read(dir.path(), |_| {}).unwrap(), 1);
    }
}
