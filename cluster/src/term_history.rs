//! The term history (Aeron's recording log, in memory): which leadership term wrote which range of
//! the log.
//!
//! Each entry says "term T's bytes start at position B"; a term's bytes run to the next entry's
//! base or to the end of the log. Terms and bases both strictly increase, and an entry exists only
//! for a term that wrote at least one byte here, so "the term of the byte at position p" is well
//! defined for every appended byte. This is what the Raft log-matching check compares: two logs
//! that hold a byte of the same term at the same position hold identical bytes up to there.
//!
//! The owner (the consensus core) persists it through the same log actions that write the bytes,
//! so after a crash the history and the log agree up to the recovered end.

/// The start of one term's range of the log.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct TermStart {
    /// The leadership term id.
    pub term: u64,
    /// The position of the term's first byte.
    pub base: u64,
}

/// Why a recovered term history cannot be used.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum TermHistoryError {
    /// Terms or bases do not strictly increase.
    #[error("term history entry {index} (term {term} at {base}) does not follow the one before it")]
    OutOfOrder {
        /// The entry's index.
        index: usize,
        /// Its term.
        term: u64,
        /// Its base.
        base: u64,
    },
    /// The first term does not start at position 0.
    #[error("the first term starts at {base}, not at 0")]
    FirstBase {
        /// Its base.
        base: u64,
    },
    /// Term 0 is reserved for "no term".
    #[error("term 0 is reserved")]
    ZeroTerm,
}

/// The terms of a log, oldest first.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TermHistory {
    terms: Vec<TermStart>,
}

impl TermHistory {
    /// A history from recovered entries, checked.
    pub fn from_entries(terms: Vec<TermStart>) -> Result<Self, TermHistoryError> {
        if let Some(first) = terms.first()
            && first.base != 0
        {
            return Err(TermHistoryError::FirstBase { base: first.base });
        }
        for (index, entry) in terms.iter().enumerate() {
            if entry.term == 0 {
                return Err(TermHistoryError::ZeroTerm);
            }
            if index > 0 {
                let before = terms[index - 1];
                if entry.term <= before.term || entry.base <= before.base {
                    return Err(TermHistoryError::OutOfOrder {
                        index,
                        term: entry.term,
                        base: entry.base,
                    });
                }
            }
        }
        Ok(Self { terms })
    }

    /// The entries, oldest first.
    pub fn entries(&self) -> &[TermStart] {
        &self.terms
    }

    /// The term of the last byte in the log, or 0 for an empty log.
    pub fn last_term(&self) -> u64 {
        self.terms.last().map_or(0, |entry| entry.term)
    }

    fn index_at(&self, position: u64) -> Option<usize> {
        let after = self.terms.partition_point(|entry| entry.base <= position);
        after.checked_sub(1)
    }

    /// The term that wrote the byte at `position`, or 0 when no term covers it. The caller knows
    /// whether `position` is below its appended position.
    pub fn term_at(&self, position: u64) -> u64 {
        self.index_at(position)
            .map_or(0, |index| self.terms[index].term)
    }

    /// The term of the byte just before `position` (0 at position 0): the Raft "previous term".
    pub fn term_before(&self, position: u64) -> u64 {
        position
            .checked_sub(1)
            .map_or(0, |before| self.term_at(before))
    }

    /// Where `term` starts in this log, if it wrote here.
    pub fn base_of(&self, term: u64) -> Option<u64> {
        self.terms
            .binary_search_by_key(&term, |entry| entry.term)
            .ok()
            .map(|index| self.terms[index].base)
    }

    /// Where `term`'s bytes end in a log appended to `appended`, if it wrote here.
    pub fn end_of(&self, term: u64, appended: u64) -> Option<u64> {
        let index = self
            .terms
            .binary_search_by_key(&term, |entry| entry.term)
            .ok()?;
        Some(self.terms.get(index + 1).map_or(appended, |next| next.base))
    }

    /// The base of the first term that starts after `position`, if any: a range of bytes of one
    /// term that begins at `position` ends there.
    pub fn next_base_after(&self, position: u64) -> Option<u64> {
        let after = self.terms.partition_point(|entry| entry.base <= position);
        self.terms.get(after).map(|entry| entry.base)
    }

    /// Records that `term` writes from `base`, unless it already does. Returns whether an entry
    /// was added.
    pub fn record(&mut self, term: u64, base: u64) -> bool {
        assert!(term > 0, "term 0 is reserved");
        if let Some(last) = self.terms.last() {
            if last.term == term {
                return false;
            }
            assert!(
                term > last.term && base > last.base,
                "term {term} at {base} must follow term {} at {}",
                last.term,
                last.base
            );
        } else {
            assert_eq!(base, 0, "the first term starts at position 0");
        }
        self.terms.push(TermStart { term, base });
        true
    }

    /// Forgets the terms that start at or after `position` (the log is cut there).
    pub fn truncate(&mut self, position: u64) {
        let keep = self.terms.partition_point(|entry| entry.base < position);
        self.terms.truncate(keep);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn history() -> TermHistory {
        TermHistory::from_entries(vec![
            TermStart { term: 1, base: 0 },
            TermStart { term: 3, base: 100 },
            TermStart { term: 4, base: 160 },
        ])
        .unwrap()
    }

    #[test]
    fn terms_cover_their_ranges() {
        let history = history();
        assert_eq!(history.term_at(0), 1);
        assert_eq!(history.term_at(99), 1);
        assert_eq!(history.term_at(100), 3);
        assert_eq!(history.term_before(100), 1);
        assert_eq!(history.term_before(0), 0);
        assert_eq!(history.end_of(3, 200), Some(160));
        assert_eq!(history.end_of(4, 200), Some(200));
        assert_eq!(history.end_of(2, 200), None);
        assert_eq!(history.base_of(4), Some(160));
        assert_eq!(history.next_base_after(100), Some(160));
        assert_eq!(history.next_base_after(170), None);
        assert_eq!(history.last_term(), 4);
    }

    #[test]
    fn truncation_forgets_terms_that_start_at_or_after_the_cut() {
        let mut history = history();
        history.truncate(160);
        assert_eq!(history.last_term(), 3);
        history.truncate(101);
        assert_eq!(history.last_term(), 3);
        history.truncate(100);
        assert_eq!(history.last_term(), 1);
        assert!(history.record(5, 40));
        assert!(!history.record(5, 48));
    }

    #[test]
    fn recovered_histories_are_checked() {
        let bad = |terms: Vec<TermStart>| TermHistory::from_entries(terms).is_err();
        assert!(bad(vec![TermStart { term: 1, base: 8 }]));
        assert!(bad(vec![TermStart { term: 0, base: 0 }]));
        assert!(bad(vec![
            TermStart { term: 2, base: 0 },
            TermStart { term: 2, base: 8 }
        ]));
        assert!(bad(vec![
            TermStart { term: 1, base: 0 },
            TermStart { term: 2, base: 0 }
        ]));
    }
}
