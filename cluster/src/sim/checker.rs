//! The simulator's checkers: the five Raft safety properties, the client oracle, digests and
//! monotonic state, checked as each event happens.
//!
//! The checkers build *canonical* records as the run goes: the bytes each term's leader wrote
//! (from its own appends), the committed log prefix (from the first member to commit each byte),
//! what was applied at each position (from the first member to apply it) and the digest at each
//! checkpoint. Every later observation must agree with them:
//!
//! | property | checked when |
//! |---|---|
//! | election safety | a member becomes leader: no other leader in its term |
//! | leader append-only | a member truncates while leading |
//! | log matching | a member appends: its bytes of term T equal T's leader's bytes at those positions, and a term's first byte follows the same term as in the leader's log (so, by induction over terms, equal terms at a position mean equal prefixes) |
//! | leader completeness | a member becomes leader of term T: its log holds everything committed in terms before T |
//! | state-machine safety | a member commits (its committed bytes equal the canonical committed prefix), applies (the same session request at the same position) or installs a snapshot (it stands for a committed prefix) |
//! | durable commit | a member's commit advances: the committed prefix is in the durable logs (the simulated disks, not the cores' word) of a majority |
//! | vote durable before sent | a member sends a granted vote: its disk already holds that term and vote |
//! | term durable before sent | a member sends any message: its disk holds that message's term or a later one; a vote request: its disk holds the candidate's vote for itself in that term |
//! | acknowledged durable | a member sends a positive append response: its disk holds the log up to the acknowledged position, equal byte for byte to the log of that term's leader (while it still leads) |
//! | committed immutable | a member truncates below its own commit position |
//! | client oracle | a client gets an answer: the request was applied exactly once, at the answered position, with the answered response, and that position is in the committed prefix |
//! | digests | a member records a digest at a position another member recorded a different one for |
//! | monotonic | a member's term decreases, or its vote changes within a term, or a restart forgets a persisted term or vote |

use std::collections::{BTreeMap, HashMap};

use crate::consensus::Role;
use crate::log_entry::{Entry, LogEvent};
use crate::term_history::TermHistory;

/// How far below an acknowledged position its durable bytes are compared with the member's own
/// log when the term's leader no longer leads (while it does, the whole prefix is compared with
/// the leader's log).
pub const ACK_CHECK_BYTES: usize = 4096;

/// The checkers that judge safety: a planted bug counts as caught only by one of these. The
/// others judge liveness ("liveness", "convergence", "event budget") or report what the product
/// itself noticed ("replica stopped", "protocol", "recovery") or a panic.
pub const SAFETY_CHECKERS: [&str; 16] = [
    "election safety",
    "leader append-only",
    "log matching",
    "leader completeness",
    "state-machine safety",
    "durable commit",
    "vote durable before sent",
    "term durable before sent",
    "acknowledged durable",
    "committed immutable",
    "client oracle",
    "exactly once",
    "digest",
    "monotonic term",
    "vote changed",
    "vote forgotten",
];

/// A positive append response as it is sent, with what the checker compares it with.
#[derive(Debug, Clone, Copy)]
pub struct SentAck<'a> {
    /// The acknowledging member.
    pub member: u32,
    /// The term acknowledged in.
    pub term: u64,
    /// The position acknowledged.
    pub position: u64,
    /// The member's durable log.
    pub durable: &'a [u8],
    /// The member's durable cut count.
    pub durable_cuts: u64,
    /// The member's log as reads see it.
    pub log: &'a [u8],
    /// The log of the term's leader, while it still leads that term.
    pub leader_log: Option<&'a [u8]>,
}

/// A durable prefix found equal to a reference, kept while neither side can have changed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
struct Verified {
    /// The durable log's cut count when the finding was made.
    cuts: u64,
    /// The term whose leader's log was the reference (acknowledgements only).
    term: u64,
    /// Bytes found equal.
    length: usize,
}

/// A broken property.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Violation {
    /// The checker that found it.
    pub checker: &'static str,
    /// Simulated time.
    pub time_ns: u64,
    /// What was seen.
    pub detail: String,
}

#[derive(Debug, Clone)]
struct TermRecord {
    leader: u32,
    base: u64,
    prev_term: u64,
    bytes: Vec<u8>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct Application {
    session_id: u64,
    request_id: u64,
    duplicate: bool,
    payload: Vec<u8>,
}

#[derive(Debug, Clone)]
struct Ack {
    session_id: u64,
    request_id: u64,
    position: u64,
    payload: Vec<u8>,
}

/// The checkers' state for one run.
#[derive(Debug, Default)]
pub struct Checker {
    now_ns: u64,
    leaders: BTreeMap<u64, u32>,
    terms: HashMap<u64, TermRecord>,
    committed: Vec<u8>,
    /// The highest position committed as known in each term.
    committed_in_term: BTreeMap<u64, u64>,
    applied: HashMap<u64, Application>,
    first_application: HashMap<(u64, u64), u64>,
    digests: HashMap<u64, u64>,
    votes: HashMap<u32, (u64, Option<u32>)>,
    acks_waiting: Vec<Ack>,
    acks_verified: u64,
    violations: Vec<Violation>,
    /// Per member, how much of its durable log has been found equal to the committed prefix.
    durable_verified: Vec<Verified>,
    /// Per member, how much of its durable log has been found equal to the log of the leader
    /// it last acknowledged.
    ack_verified: Vec<Verified>,
}

/// Extends `verified` over `durable[..end]` compared with `reference`, starting over when the
/// durable log was cut (`cuts`) or the reference changed (`term`); returns whether all of
/// `durable[..end]` is now known equal.
fn verify_prefix(
    verified: &mut Verified,
    cuts: u64,
    term: u64,
    durable: &[u8],
    reference: &[u8],
    end: usize,
) -> bool {
    if verified.cuts != cuts || verified.term != term {
        *verified = Verified {
            cuts,
            term,
            length: 0,
        };
    }
    verified.length = verified.length.min(durable.len()).min(reference.len());
    let reach = end.min(durable.len()).min(reference.len());
    if verified.length < reach {
        let matched = durable[verified.length..reach]
            .iter()
            .zip(&reference[verified.length..reach])
            .take_while(|(a, b)| a == b)
            .count();
        verified.length += matched;
    }
    verified.length >= end
}

fn widen(length: usize) -> u64 {
    u64::try_from(length).expect("fits")
}

impl Checker {
    /// Sets the simulated time for the violations found next.
    pub fn set_time(&mut self, now_ns: u64) {
        self.now_ns = now_ns;
    }

    /// Violations found so far.
    pub fn violations(&self) -> &[Violation] {
        &self.violations
    }

    /// Client answers verified against the committed log.
    pub fn acks_verified(&self) -> u64 {
        self.acks_verified
    }

    /// The canonical committed prefix's length.
    pub fn committed_length(&self) -> u64 {
        widen(self.committed.len())
    }

    /// Records a violation found outside the checkers (recovery, liveness, divergence).
    pub fn record(&mut self, checker: &'static str, detail: String) {
        self.fail(checker, detail);
    }

    fn fail(&mut self, checker: &'static str, detail: String) {
        self.violations.push(Violation {
            checker,
            time_ns: self.now_ns,
            detail,
        });
    }

    /// A member's role changed.
    pub fn on_role(&mut self, member: u32, role: Role, term: u64, log: &[u8]) {
        if role != Role::Leader {
            return;
        }
        if let Some(&other) = self.leaders.get(&term)
            && other != member
        {
            self.fail(
                "election safety",
                format!("members {other} and {member} both lead term {term}"),
            );
        }
        self.leaders.insert(term, member);
        let required = self
            .committed_in_term
            .range(..term)
            .map(|(_, &position)| position)
            .max()
            .unwrap_or(0);
        let required_bytes = usize::try_from(required).expect("fits");
        if log.len() < required_bytes || log[..required_bytes] != self.committed[..required_bytes] {
            self.fail(
                "leader completeness",
                format!(
                    "member {member} leads term {term} without the {required} bytes committed \
                     before it (its log holds {} bytes)",
                    log.len()
                ),
            );
        }
    }

    /// A member persisted its term and vote.
    pub fn on_vote(&mut self, member: u32, term: u64, voted_for: Option<u32>) {
        if let Some(&(last_term, last_vote)) = self.votes.get(&member) {
            if term < last_term {
                self.fail(
                    "monotonic term",
                    format!("member {member}'s term went from {last_term} back to {term}"),
                );
            }
            if term == last_term && last_vote.is_some() && voted_for != last_vote {
                self.fail(
                    "vote changed",
                    format!(
                        "member {member} voted for {last_vote:?} and then {voted_for:?} in term {term}"
                    ),
                );
            }
            if term == last_term && voted_for.is_none() && last_vote.is_some() {
                // A restart that lost the vote shows when it votes again; keep the old one.
                return;
            }
        }
        self.votes.insert(member, (term, voted_for));
    }

    /// A member (re)started holding `term` and `voted_for` in memory: it must not have lost a
    /// term or vote it persisted.
    pub fn on_start(&mut self, member: u32, term: u64, voted_for: Option<u32>) {
        let Some(&(last_term, last_vote)) = self.votes.get(&member) else {
            return;
        };
        if term < last_term || (term == last_term && last_vote.is_some() && voted_for != last_vote)
        {
            self.fail(
                "vote forgotten",
                format!(
                    "member {member} persisted term {last_term} vote {last_vote:?} but restarted \
                     with term {term} vote {voted_for:?}"
                ),
            );
        }
    }

    /// A member appended bytes of `term` at `position`; `history` is its term history after the
    /// append and `leading` whether it leads `term`.
    pub fn on_append(
        &mut self,
        member: u32,
        leading: bool,
        position: u64,
        term: u64,
        bytes: &[u8],
        history: &TermHistory,
    ) {
        let prev_term = history.term_before(position);
        if leading {
            let record = self.terms.entry(term).or_insert_with(|| TermRecord {
                leader: member,
                base: position,
                prev_term,
                bytes: Vec::new(),
            });
            if record.leader == member && record.base + widen(record.bytes.len()) == position {
                record.bytes.extend_from_slice(bytes);
                return;
            }
        }
        let Some(record) = self.terms.get(&term) else {
            self.fail(
                "log matching",
                format!("member {member} appended bytes of term {term}, which no leader wrote"),
            );
            return;
        };
        let mismatch = if position < record.base {
            Some("before the term's first byte")
        } else {
            let offset = usize::try_from(position - record.base).expect("fits");
            let expected = record.bytes.get(offset..offset + bytes.len());
            (expected != Some(bytes)).then_some("bytes differ from the term leader's")
        };
        let base = history.base_of(term);
        let structure =
            base == Some(position) && (record.base != position || record.prev_term != prev_term);
        if let Some(reason) = mismatch {
            self.fail(
                "log matching",
                format!("member {member} appended term {term} at {position}: {reason}"),
            );
        } else if structure {
            self.fail(
                "log matching",
                format!(
                    "member {member} starts term {term} at {position} after term {prev_term}; \
                     its leader started it at {} after term {}",
                    record.base, record.prev_term
                ),
            );
        }
    }

    /// A member cut its log at `position` while its role was `role` and its commit `commit`.
    pub fn on_truncate(&mut self, member: u32, role: Role, position: u64, commit: u64) {
        if role == Role::Leader {
            self.fail(
                "leader append-only",
                format!("leader {member} truncated its log to {position}"),
            );
        }
        if position < commit {
            self.fail(
                "committed immutable",
                format!("member {member} truncated to {position}, below its commit {commit}"),
            );
        }
    }

    /// A member installed a leader's snapshot at `position`; `log` is the leader's log below it,
    /// which the snapshot stands for: it must be committed, equal to the committed log.
    pub fn on_install(&mut self, member: u32, position: u64, log: &[u8]) {
        let end = usize::try_from(position).expect("fits");
        if end > self.committed.len() || log.len() != end || log != &self.committed[..end] {
            self.fail(
                "state-machine safety",
                format!(
                    "member {member} installed a snapshot at {position} that does not stand \
                     for the committed log ({} bytes committed)",
                    self.committed.len()
                ),
            );
        }
    }

    /// A member's commit position advanced from `from` to `to` in `term`.
    pub fn on_commit(&mut self, member: u32, term: u64, from: u64, to: u64, log: &[u8]) {
        let known = self.committed_in_term.entry(term).or_insert(0);
        *known = (*known).max(to);
        let start = usize::try_from(from).expect("fits");
        let end = usize::try_from(to).expect("fits");
        if log.len() < end {
            self.fail(
                "state-machine safety",
                format!(
                    "member {member} committed to {to} with only {} bytes",
                    log.len()
                ),
            );
            return;
        }
        let overlap = end.min(self.committed.len());
        if start < overlap && log[start..overlap] != self.committed[start..overlap] {
            self.fail(
                "state-machine safety",
                format!(
                    "member {member} committed bytes in {from}..{to} that differ from the \
                     committed log"
                ),
            );
            return;
        }
        if end > self.committed.len() && start <= self.committed.len() {
            let extension = log[self.committed.len()..end].to_vec();
            self.committed.extend_from_slice(&extension);
            self.verify_acks(false);
        }
    }

    /// A member's commit position reached `to`: the committed prefix must be in the *durable*
    /// logs of a majority of `durable_logs` (every member's, by id), byte for byte. Read from
    /// the simulated disks, not from what the cores said: a leader that counts bytes that are
    /// only written, or a follower that acknowledges them, commits what a crash can take away.
    ///
    /// `durable_logs` holds each member's durable log with its cut count
    /// ([`SimStorage::durable_cuts`](super::storage::SimStorage::durable_cuts)).
    pub fn on_commit_durable(&mut self, member: u32, to: u64, durable_logs: &[(&[u8], u64)]) {
        let end = usize::try_from(to).expect("fits");
        if end > self.committed.len() {
            // The commit itself was refused by state-machine safety.
            return;
        }
        if self.durable_verified.len() < durable_logs.len() {
            self.durable_verified
                .resize(durable_logs.len(), Verified::default());
        }
        let mut holding = 0;
        for (verified, &(log, cuts)) in self.durable_verified.iter_mut().zip(durable_logs) {
            // What was found equal stays equal while nothing below it is cut on disk (the
            // committed prefix only grows); only the rest is read.
            let holds = verify_prefix(verified, cuts, 0, log, &self.committed, end);
            holding += usize::from(holds);
        }
        let quorum = durable_logs.len() / 2 + 1;
        if holding < quorum {
            self.fail(
                "durable commit",
                format!(
                    "member {member} committed to {to}, but only {holding} of {} members hold \
                     that prefix on disk (a majority is {quorum})",
                    durable_logs.len()
                ),
            );
        }
    }

    /// A member grants its vote to `candidate` in `term`: the disk must already say so (a vote
    /// sent and then lost in a crash lets the member vote again and elect two leaders).
    pub fn on_vote_sent(
        &mut self,
        member: u32,
        term: u64,
        candidate: u32,
        durable_vote: (u64, Option<u32>),
    ) {
        if durable_vote != (term, Some(candidate)) {
            self.fail(
                "vote durable before sent",
                format!(
                    "member {member} granted its term {term} vote to {candidate} while its disk \
                     holds term {} vote {:?}",
                    durable_vote.0, durable_vote.1
                ),
            );
        }
    }

    /// A member sends a message of `term` (`candidate`: a vote request for itself): its disk
    /// must hold that term or a later one, and a candidate's disk its vote for itself. A term
    /// adopted and announced, then forgotten in a crash, lets the member vote twice in it.
    pub fn on_message_sent(
        &mut self,
        member: u32,
        term: u64,
        candidate: bool,
        durable_vote: (u64, Option<u32>),
    ) {
        if durable_vote.0 < term || (candidate && durable_vote != (term, Some(member))) {
            self.fail(
                "term durable before sent",
                format!(
                    "member {member} sent a {} of term {term} while its disk holds term {} vote \
                     {:?}",
                    if candidate { "vote request" } else { "message" },
                    durable_vote.0,
                    durable_vote.1
                ),
            );
        }
    }

    /// A member acknowledges a position: its log must be durable that far, and what is durable
    /// must be what the leader of the acknowledged term holds. While that leader still leads
    /// the term (a leader only appends, so its log is the term's log) the whole durable prefix
    /// is compared with its log, incrementally; otherwise the durable bytes are compared with
    /// the member's own log over the last [`ACK_CHECK_BYTES`] below the position.
    pub fn on_ack_sent(&mut self, ack: &SentAck<'_>) {
        let SentAck {
            member,
            term,
            position,
            durable,
            durable_cuts,
            log,
            leader_log,
        } = *ack;
        let end = usize::try_from(position).expect("fits");
        if let Some(leader_log) = leader_log {
            let index = usize::try_from(member).expect("fits");
            if self.ack_verified.len() <= index {
                self.ack_verified.resize(index + 1, Verified::default());
            }
            let verified = &mut self.ack_verified[index];
            if !verify_prefix(verified, durable_cuts, term, durable, leader_log, end) {
                let length = verified.length;
                let leader = self.leaders.get(&term).copied();
                self.fail(
                    "acknowledged durable",
                    format!(
                        "member {member} acknowledged {position} in term {term}, but its disk \
                         ({} bytes) differs from leader {leader:?}'s log ({} bytes) from {length}",
                        durable.len(),
                        leader_log.len()
                    ),
                );
            }
            return;
        }
        if durable.len() < end {
            self.fail(
                "acknowledged durable",
                format!(
                    "member {member} acknowledged {position} with {} bytes on disk",
                    durable.len()
                ),
            );
            return;
        }
        let start = end.saturating_sub(ACK_CHECK_BYTES);
        if log.len() < end || durable[start..end] != log[start..end] {
            self.fail(
                "acknowledged durable",
                format!(
                    "member {member} acknowledged {position}, but its disk holds other bytes \
                     below it than its log"
                ),
            );
        }
    }

    /// A member applied a session message at `position`.
    pub fn on_apply(
        &mut self,
        member: u32,
        position: u64,
        session_id: u64,
        request_id: u64,
        duplicate: bool,
        payload: &[u8],
    ) {
        let application = Application {
            session_id,
            request_id,
            duplicate,
            payload: payload.to_vec(),
        };
        if let Some(canonical) = self.applied.get(&position) {
            if *canonical != application {
                self.fail(
                    "state-machine safety",
                    format!(
                        "member {member} applied session {session_id} request {request_id} \
                         (duplicate {duplicate}) at {position}, where session {} request {} \
                         (duplicate {}) was applied before",
                        canonical.session_id, canonical.request_id, canonical.duplicate
                    ),
                );
            }
            return;
        }
        if !duplicate {
            let first = *self
                .first_application
                .entry((session_id, request_id))
                .or_insert(position);
            if first != position {
                self.fail(
                    "exactly once",
                    format!(
                        "session {session_id} request {request_id} applied at {first} and again \
                         at {position}"
                    ),
                );
            }
        }
        self.applied.insert(position, application);
    }

    /// A member recorded its state digest at `position`.
    pub fn on_checkpoint(&mut self, member: u32, position: u64, digest: u64) {
        let canonical = *self.digests.entry(position).or_insert(digest);
        if canonical != digest {
            self.fail(
                "digest",
                format!(
                    "member {member}'s digest at {position} is {digest:#018x}; another member's \
                     is {canonical:#018x}"
                ),
            );
        }
    }

    /// A client got an "applied" answer.
    pub fn on_ack(&mut self, session_id: u64, request_id: u64, position: u64, payload: &[u8]) {
        self.acks_waiting.push(Ack {
            session_id,
            request_id,
            position,
            payload: payload.to_vec(),
        });
        self.verify_acks(false);
    }

    /// Checks waiting answers against the committed log and what was applied; with `final_check`
    /// every answer must be covered by the committed log by now.
    pub fn verify_acks(&mut self, final_check: bool) {
        let acks = std::mem::take(&mut self.acks_waiting);
        for ack in acks {
            if ack.position >= widen(self.committed.len()) {
                if final_check {
                    self.fail(
                        "client oracle",
                        format!(
                            "session {} request {} was answered as applied at {}, beyond the \
                             committed log's {} bytes",
                            ack.session_id,
                            ack.request_id,
                            ack.position,
                            self.committed.len()
                        ),
                    );
                } else {
                    self.acks_waiting.push(ack);
                }
                continue;
            }
            self.verify_ack(&ack);
        }
    }

    fn verify_ack(&mut self, ack: &Ack) {
        let start = usize::try_from(ack.position).expect("fits");
        let in_log = Entry::read(&self.committed[start..], ack.position)
            .ok()
            .and_then(|entry| entry.event().ok().flatten())
            .and_then(|event| match event {
                LogEvent::SessionMessage(message) => {
                    Some((message.session_id(), message.request_id()))
                }
                _ => None,
            });
        if in_log != Some((ack.session_id, ack.request_id)) {
            self.fail(
                "client oracle",
                format!(
                    "session {} request {} was answered as applied at {}, but the committed log \
                     holds {in_log:?} there",
                    ack.session_id, ack.request_id, ack.position
                ),
            );
            return;
        }
        let first = self
            .first_application
            .get(&(ack.session_id, ack.request_id))
            .copied();
        let applied = self.applied.get(&ack.position).cloned();
        let matches = first == Some(ack.position)
            && applied.is_some_and(|applied| !applied.duplicate && applied.payload == ack.payload);
        if matches {
            self.acks_verified += 1;
        } else {
            self.fail(
                "client oracle",
                format!(
                    "session {} request {} answered at {} does not match its first application \
                     ({first:?})",
                    ack.session_id, ack.request_id, ack.position
                ),
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ack<'a>(durable: &'a [u8], cuts: u64, leader_log: Option<&'a [u8]>) -> SentAck<'a> {
        SentAck {
            member: 1,
            term: 3,
            position: 8,
            durable,
            durable_cuts: cuts,
            log: durable,
            leader_log,
        }
    }

    #[test]
    fn an_acknowledgement_of_bytes_the_leader_does_not_hold_is_a_violation() {
        let mut checker = Checker::default();
        let leader = [1u8; 16];
        checker.on_ack_sent(&ack(&[1; 8], 0, Some(&leader)));
        assert!(checker.violations().is_empty());
        // Equal to its own log, unlike the leader's: the member's word is not enough.
        let mut other = [1u8; 8];
        other[2] = 9;
        checker.on_ack_sent(&ack(&other, 1, Some(&leader)));
        assert_eq!(checker.violations().len(), 1);
        assert_eq!(checker.violations()[0].checker, "acknowledged durable");
    }

    #[test]
    fn a_finding_is_read_again_once_the_disk_was_cut_below_it() {
        let mut checker = Checker::default();
        let leader = [1u8; 16];
        checker.on_ack_sent(&ack(&[1; 8], 0, Some(&leader)));
        let mut changed = [1u8; 8];
        changed[0] = 7;
        // Same cut count: the prefix found equal is trusted (and a correct storage could not
        // have changed it without a cut).
        checker.on_ack_sent(&ack(&changed, 0, Some(&leader)));
        assert!(checker.violations().is_empty());
        checker.on_ack_sent(&ack(&changed, 1, Some(&leader)));
        assert_eq!(checker.violations().len(), 1);
    }

    #[test]
    fn without_the_leader_the_durable_bytes_are_compared_with_the_members_log() {
        let mut checker = Checker::default();
        checker.on_ack_sent(&ack(&[1; 8], 0, None));
        assert!(checker.violations().is_empty());
        checker.on_ack_sent(&ack(&[1; 4], 0, None));
        assert_eq!(checker.violations().len(), 1, "not durable that far");
    }

    #[test]
    fn a_message_of_a_term_not_yet_durable_is_a_violation() {
        let mut checker = Checker::default();
        checker.on_message_sent(2, 4, false, (4, None));
        checker.on_message_sent(2, 3, false, (4, Some(1)));
        checker.on_message_sent(2, 5, true, (5, Some(2)));
        assert!(checker.violations().is_empty());
        checker.on_message_sent(2, 5, false, (4, Some(2)));
        checker.on_message_sent(2, 6, true, (6, None));
        checker.on_message_sent(2, 6, true, (6, Some(1)));
        let found: Vec<_> = checker.violations().iter().map(|v| v.checker).collect();
        assert_eq!(found, ["term durable before sent"; 3]);
    }

    #[test]
    fn the_durable_commit_needs_a_majority_of_disks_and_rereads_a_cut_disk() {
        let mut checker = Checker::default();
        let log = [5u8; 8];
        checker.on_commit(0, 1, 0, 8, &log);
        let full: &[u8] = &log;
        checker.on_commit_durable(0, 8, &[(full, 0), (full, 0), (&[], 0)]);
        assert!(checker.violations().is_empty());
        let mut bad = log;
        bad[7] = 0;
        // Member 1's disk was cut and rewritten with other bytes: it no longer holds the prefix.
        checker.on_commit_durable(0, 8, &[(full, 0), (&bad, 1), (&[], 0)]);
        assert_eq!(checker.violations().len(), 1);
        assert_eq!(checker.violations()[0].checker, "durable commit");
    }

    #[test]
    fn every_safety_checker_named_is_one_the_checkers_report() {
        let source = include_str!("checker.rs");
        let world = include_str!("world/mod.rs");
        for name in SAFETY_CHECKERS {
            let quoted = format!("\"{name}\",");
            let reported = source.matches(&quoted).count() > 1 || world.contains(&quoted);
            assert!(reported, "{name} is reported nowhere");
        }
    }
}
