//! Log replication: the leader's appends, heartbeats and commit; the follower's consistency check,
//! truncation of divergent suffixes and acknowledgements (Raft §5.3–5.4, over byte positions).

use super::{AppendError, Consensus, LogView, Role, SnapshotOffer};
use crate::log_entry::{
    self, digest_checkpoint, new_leadership_term, session_message, snapshot_request, timer_fired,
};
use crate::planted::PlantedBug;
use crate::protocol::{append_request, append_response};
use crate::term_history::TermHistory;

const REQUEST_HEADER_MAX: usize = 128;
/// Appended bytes the leader lets wait for its own fsync before it refuses more commands.
const UNSYNCED_BYTES_MAX: u64 = 16 * 1024 * 1024;

impl Consensus {
    pub(super) fn become_leader(&mut self) {
        self.leader = Some(self.id);
        self.become_role(Role::Leader);
        let appended = self.appended_position;
        let now_ns = self.now_ns;
        for peer in &mut self.peers {
            peer.next_position = appended;
            peer.matched_position = 0;
            // A grace period: a leader counts every member as heard from when it starts.
            peer.last_contact_ns = now_ns;
            peer.last_sent_ns = 0;
            peer.snapshot_asked_ns = None;
            peer.refused_below_match = false;
            peer.retry_at_ns = 0;
            peer.send_failures = 0;
        }
        self.leader_term_base = appended;
        let term = self.current_term;
        let leader_id = self.id;
        let version = self.config.protocol_version.compose();
        let timestamp_ns = self.next_timestamp();
        let mut encoder =
            new_leadership_term::Encoder::wrap(&mut self.scratch).expect("the scratch holds it");
        encoder
            .term(term)
            .timestamp_ns(timestamp_ns)
            .leader_id(leader_id)
            .protocol_version(version);
        let length = encoder.finish();
        self.append_scratch(term, length);
        if self.config.member_count == 1 {
            self.update_commit();
        }
    }

    pub(super) fn leader_tick(&mut self, log: &(impl LogView + ?Sized)) {
        // Check quorum: a leader cut off from a majority steps down rather than keep a client
        // waiting on commands that cannot commit.
        let timeout_ns = self.config.leader_heartbeat_timeout_ns;
        let heard = self
            .other_members()
            .filter(|&member| {
                let peer = &self.peers[usize::try_from(member).expect("small")];
                self.now_ns.saturating_sub(peer.last_contact_ns) < timeout_ns
            })
            .count();
        if u32::try_from(heard).expect("small") + 1 < self.config.quorum() {
            self.start_canvass();
            return;
        }
        for member in self.other_members() {
            self.replicate_to(member, log);
        }
    }

    /// Sends `member` what it lacks, within the in-flight window, or a heartbeat when it is due.
    fn replicate_to(&mut self, member: u32, log: &(impl LogView + ?Sized)) {
        if self.now_ns < self.peer(member).retry_at_ns {
            return;
        }
        let window = self.config.inflight_bytes_max;
        let heartbeat_due = {
            let peer = &self.peers[usize::try_from(member).expect("small")];
            self.now_ns.saturating_sub(peer.last_sent_ns) >= self.config.heartbeat_interval_ns
        };
        if self.peer(member).next_position < log.start() {
            // Purged here: only a snapshot brings the member up. Heartbeats keep it following
            // meanwhile, at their interval only (its answers must not set off a resend each).
            self.ask_for_snapshot(member);
            if heartbeat_due {
                self.send_append(member, log);
            }
            return;
        }
        let probing = self.peers[usize::try_from(member).expect("small")].probing;
        if probing {
            let in_flight = self.peers[usize::try_from(member).expect("small")].probe_in_flight;
            if heartbeat_due || !in_flight {
                let from = self.peer(member).next_position;
                self.send_append(member, log);
                let peer = self.peer(member);
                peer.probe_in_flight = true;
                peer.probe_position = from;
            }
            return;
        }
        let mut sent = false;
        // After failed sends, one append per try until the member answers.
        let burst = if self.peer(member).send_failures > 0 {
            1
        } else {
            16
        };
        for _ in 0..burst {
            let peer = &self.peers[usize::try_from(member).expect("small")];
            let lacks = peer.next_position < self.appended_position;
            let in_window = peer.next_position.saturating_sub(peer.matched_position) < window;
            if !(lacks && in_window) {
                break;
            }
            if !self.send_append(member, log) {
                break;
            }
            sent = true;
        }
        if !sent && heartbeat_due {
            self.send_append(member, log);
        }
    }

    /// Asks the caller to send `member` a snapshot, unless it was asked less than a leader
    /// heartbeat timeout ago (a transfer takes a while; one lost is asked for again).
    fn ask_for_snapshot(&mut self, member: u32) {
        let timeout_ns = self.config.leader_heartbeat_timeout_ns;
        let now_ns = self.now_ns;
        let peer = self.peer(member);
        if peer
            .snapshot_asked_ns
            .is_none_or(|asked| now_ns.saturating_sub(asked) >= timeout_ns)
        {
            peer.snapshot_asked_ns = Some(now_ns);
            self.outputs
                .push_back(super::Output::SendSnapshot { to: member });
        }
    }

    /// Sends one append request from the member's next position. Returns whether it carried
    /// entries.
    fn send_append(&mut self, member: u32, log: &(impl LogView + ?Sized)) -> bool {
        let appended = self.appended_position;
        let from = self.peer(member).next_position.min(appended);
        let prev_term = self.history.term_before(from);
        let (entry_term, length) = if from < appended {
            let term_end = self.history.next_base_after(from).unwrap_or(appended);
            let limit = term_end.min(from + self.config.append_bytes_max);
            (self.history.term_at(from), whole_entries(log, from, limit))
        } else {
            (self.current_term, 0)
        };
        let entries = log.read(from, length);
        let entries = if u64::try_from(entries.len()).expect("fits") == length {
            entries
        } else {
            // The caller has not written what it was asked to: send a heartbeat only.
            &[]
        };
        let buf = self.encode_append_request(from, prev_term, entry_term, entries);
        let carried = u64::try_from(entries.len()).expect("fits");
        let now_ns = self.now_ns;
        let peer = self.peer(member);
        peer.next_position = from + carried;
        peer.last_sent_ns = now_ns;
        self.send(member, buf);
        carried > 0
    }

    /// Encodes an append request. The fixed part is encoded with the codec into a small buffer;
    /// the entries then follow it directly, so the (up to 64 KiB) message is written once rather
    /// than zeroed and then copied into.
    fn encode_append_request(
        &mut self,
        from: u64,
        prev_term: u64,
        entry_term: u64,
        entries: &[u8],
    ) -> Vec<u8> {
        let mut head = [0u8; REQUEST_HEADER_MAX];
        let mut encoder = append_request::Encoder::wrap(&mut head).expect("fits");
        encoder
            .term(self.current_term)
            .prev_position(from)
            .prev_term(prev_term)
            .entry_term(entry_term)
            .commit_position(self.commit_position)
            .leader_id(self.id)
            .log_floor(self.log_floor());
        let head_length = encoder
            .entries(&[])
            .expect("an empty var-data field fits")
            .finish();
        // The message ends with the entries' var-data field: a u32 length, then the bytes.
        let length_offset = head_length - 4;
        let entries_length = u32::try_from(entries.len()).expect("entries are within 64 KiB");
        head[length_offset..head_length].copy_from_slice(&entries_length.to_le_bytes());
        let mut buf = self.buffer(head_length + entries.len());
        buf.extend_from_slice(&head[..head_length]);
        buf.extend_from_slice(entries);
        buf
    }

    pub(super) fn on_append_request(
        &mut self,
        message: &append_request::Decoder<'_>,
        log_start: u64,
    ) -> Result<(), crate::protocol::ProtocolError> {
        let term = message.term();
        let leader = message.leader_id();
        let entries = message.entries();
        let prev_position = message.prev_position();
        let entries_length = u64::try_from(entries.len()).expect("fits");
        if !prev_position.is_multiple_of(log_entry::ENTRY_ALIGNMENT)
            || entries_length % log_entry::ENTRY_ALIGNMENT != 0
            || prev_position.checked_add(entries_length).is_none()
            || message.entry_term() > term
            || message.prev_term() > message.entry_term()
            || (entries_length > 0 && message.entry_term() == 0)
        {
            return Err(crate::protocol::ProtocolError::Malformed(
                tern_codec::DecodeError::InvalidValue {
                    field: "append_request",
                    value: i64::try_from(prev_position).unwrap_or(i64::MAX),
                    reason: "positions must be entry-aligned, within 64 bits, and terms ordered",
                },
            ));
        }
        if !self.config.log_format.whole_frames(entries, prev_position) {
            return Err(crate::protocol::ProtocolError::Malformed(
                tern_codec::DecodeError::InvalidValue {
                    field: "entries",
                    value: i64::try_from(entries_length).unwrap_or(i64::MAX),
                    reason: "entries must be whole log entries, each where it says it is",
                },
            ));
        }
        let stale = term < self.current_term;
        if stale && !self.config.planted(PlantedBug::AcceptStaleTermAppend) {
            let reply = self.encode_response(false, self.appended_position, 0, 0);
            self.send(leader, reply);
            return Ok(());
        }
        if term > self.current_term {
            self.adopt_term(term);
        }
        if !stale {
            if self.role == Role::Leader {
                // Another leader in this term would break election safety; ignore it and let the
                // checkers (or an operator) see both.
                return Ok(());
            }
            if self.role != Role::Follower {
                self.become_role(Role::Follower);
            }
            if self.leader != Some(leader) {
                self.leader = Some(leader);
                self.leader_matched_position = 0;
                self.push_role_change();
            }
            self.leader_contact_ns = self.now_ns;
        }
        if prev_position > self.appended_position || prev_position < log_start {
            // Beyond this log, or below its start (purged: nothing there to compare or cut, and
            // what was there is committed): the leader resumes from this log's end.
            let reply = self.encode_response(false, self.appended_position, 0, 0);
            self.send(leader, reply);
            return Ok(());
        }
        let own_prev_term = self.history.term_before(prev_position);
        if own_prev_term != message.prev_term() {
            let base = self.history.base_of(own_prev_term).unwrap_or(0);
            let reply = self.encode_response(false, self.appended_position, own_prev_term, base);
            self.send(leader, reply);
            return Ok(());
        }
        self.accept_entries(prev_position, message.entry_term(), entries);
        let end = prev_position + entries_length;
        self.leader_matched_position = self.leader_matched_position.max(end);
        let commit = if self.config.planted(PlantedBug::FollowerCommitBeyondMatch) {
            // The planted mistake: the leader's commit taken whole, past what is known to match.
            message.commit_position().min(self.appended_position)
        } else {
            message.commit_position().min(self.leader_matched_position)
        };
        if commit > self.commit_position {
            self.commit_position = commit;
        }
        self.note_leader_commit(message.commit_position());
        if let Some(floor) = message.log_floor() {
            // A floor only ever rises: it is below what every member had when it was sent.
            self.leader_log_floor = self.leader_log_floor.max(floor.min(self.commit_position));
        }
        self.acknowledge_leader_to(leader);
        Ok(())
    }

    /// Appends the entries that follow a matching `prev_position`, truncating only where this
    /// log holds bytes of another term: a duplicate or reordered request never cuts bytes that a
    /// later request delivered (Raft figure 2, "append entries" rule 3).
    fn accept_entries(&mut self, prev_position: u64, entry_term: u64, entries: &[u8]) {
        let end = prev_position + u64::try_from(entries.len()).expect("fits");
        let overlap_end = end.min(self.appended_position);
        if prev_position < overlap_end {
            let conflict = if self.history.term_at(prev_position) != entry_term
                || self.config.planted(PlantedBug::TruncateWithoutConflict)
            {
                // (Planted: truncating wherever a request overlaps, conflict or not.)
                Some(prev_position)
            } else {
                let term_end = self
                    .history
                    .end_of(entry_term, self.appended_position)
                    .expect("the term covers prev_position");
                (term_end < overlap_end).then_some(term_end)
            };
            if let Some(position) = conflict {
                self.truncate_log(position);
            }
        }
        if end > self.appended_position {
            let skip = usize::try_from(self.appended_position - prev_position).expect("fits");
            let mut owned = self.buffer(super::APPEND_BUFFER_CAPACITY);
            owned.extend_from_slice(&entries[skip..]);
            self.append_local(entry_term, owned);
        }
    }

    /// Follower: a chunk of a snapshot transfer arrived from `leader` in `term`. Says whether
    /// it comes from this member's leader in its current term; if so it counts as hearing from
    /// the leader (a long transfer may hold back its heartbeats). The caller drops any other.
    pub fn on_snapshot_chunk(&mut self, now_ns: u64, term: u64, leader: u32) -> bool {
        self.advance_clock(now_ns);
        let current =
            term == self.current_term && self.role == Role::Follower && self.leader == Some(leader);
        if current {
            self.leader_contact_ns = self.now_ns;
        }
        current
    }

    /// Follower: a transfer of the leader's snapshot at `position` arrived whole from `leader`
    /// in `term`; `position_term` is the term of the leader's byte before `position`. Says
    /// whether to install it. When this log already holds that byte in that term, it matches
    /// the leader's up to `position` (log matching), which this acknowledges instead.
    pub fn on_snapshot_offered(
        &mut self,
        now_ns: u64,
        term: u64,
        leader: u32,
        position: u64,
        position_term: u64,
    ) -> SnapshotOffer {
        self.advance_clock(now_ns);
        if term != self.current_term
            || self.role != Role::Follower
            || self.leader != Some(leader)
            || position == 0
            || i64::try_from(position).is_err()
            || !position.is_multiple_of(log_entry::ENTRY_ALIGNMENT)
            || position_term == 0
            || position_term > term
        {
            return SnapshotOffer::Stale;
        }
        // (Planted: both checks below skipped, the member installs whatever it is offered.)
        let planted = self.config.planted(PlantedBug::InstallOverHeldLog);
        if position <= self.appended_position
            && self.history.term_before(position) == position_term
            && !planted
        {
            self.leader_matched_position = self.leader_matched_position.max(position);
            self.acknowledge_leader_to(leader);
            return SnapshotOffer::Held;
        }
        if position < self.commit_position && !planted {
            // Below what this member committed, yet of another term there: no leader of this
            // term sends that (its log holds every committed byte). Nothing is cut for it.
            return SnapshotOffer::Stale;
        }
        SnapshotOffer::Install
    }

    /// Follower: the caller installed the leader's snapshot at `position` (right after
    /// [`Consensus::on_snapshot_offered`] said to): its log now starts and ends at `position`,
    /// its term history is the leader's `history` up to there, and everything before it is
    /// committed. The old log is gone whole: it lacked the leader's byte before `position`, so
    /// by log matching nothing in it past that point was ever committed. Acknowledges
    /// `position` to the leader.
    ///
    /// # Panics
    /// If this member is not a follower with a leader, or `history` does not end with a term
    /// that covers the byte before `position` at or below the current term.
    pub fn install_snapshot(&mut self, position: u64, history: TermHistory) {
        assert!(
            self.role == Role::Follower && self.leader.is_some(),
            "a snapshot is installed from a leader"
        );
        assert!(position.is_multiple_of(log_entry::ENTRY_ALIGNMENT));
        assert!(
            position >= self.commit_position || self.config.planted(PlantedBug::InstallOverHeldLog),
            "an install never cuts below the commit"
        );
        let last = history.entries().last().copied();
        assert!(
            last.is_some_and(|last| last.base < position && last.term <= self.current_term),
            "the history covers the byte before the snapshot"
        );
        // What was queued for the old log is void; messages, votes and role changes stand.
        self.outputs.retain(|output| {
            !matches!(
                output,
                super::Output::Append { .. }
                    | super::Output::Truncate { .. }
                    | super::Output::Sync { .. }
            )
        });
        self.pending_syncs.clear();
        self.history = history;
        self.appended_position = position;
        self.durable_position = position;
        self.synced_requested_position = position;
        self.commit_position = position;
        self.leader_matched_position = position;
        self.leader_log_floor = self.leader_log_floor.max(position);
        self.acknowledge_leader();
    }

    /// Tells the current leader how far this log is durable and matches its own.
    pub(super) fn acknowledge_leader(&mut self) {
        if let Some(leader) = self.leader
            && leader != self.id
        {
            self.acknowledge_leader_to(leader);
        }
    }

    fn acknowledge_leader_to(&mut self, leader: u32) {
        let local = if self.config.planted(PlantedBug::AckBeforeFsync) {
            self.appended_position
        } else {
            self.durable_position
        };
        // The planted mistake: acknowledging durable bytes not yet known to match the leader.
        let position = if self.config.planted(PlantedBug::AckBeyondMatch) {
            local
        } else {
            local.min(self.leader_matched_position)
        };
        let reply = self.encode_response(true, position, 0, 0);
        self.send(leader, reply);
    }

    pub(super) fn on_append_response(
        &mut self,
        message: &append_response::Decoder<'_>,
        log: &(impl LogView + ?Sized),
    ) {
        if message.term() > self.current_term {
            self.adopt_term(message.term());
            return;
        }
        if self.role != Role::Leader || message.term() != self.current_term {
            return;
        }
        let member = message.follower_id();
        let appended = self.appended_position;
        let now_ns = self.now_ns;
        self.peer(member).send_failures = 0;
        if message.success() != 0 {
            let peer = self.peer(member);
            peer.last_contact_ns = now_ns;
            peer.matched_position = peer.matched_position.max(message.position().min(appended));
            peer.next_position = peer.next_position.max(peer.matched_position);
            peer.refused_below_match = false;
            if peer.probing {
                // The probe found the match point: pipeline again from there.
                peer.probing = false;
                peer.probe_in_flight = false;
                peer.next_position = peer.matched_position;
            }
            self.update_commit();
        } else {
            if self.config.planted(PlantedBug::CountRefusals) {
                // The planted mistake: a refusal's position (the follower's appended end, not a
                // match) taken as matched.
                let peer = self.peer(member);
                peer.matched_position = peer.matched_position.max(message.position().min(appended));
                self.update_commit();
            }
            let next = if message.conflict_term() == 0 {
                message.position().min(appended)
            } else {
                let term = message.conflict_term();
                self.history
                    .end_of(term, appended)
                    .unwrap_or(message.conflict_base())
                    .min(appended)
            };
            // The follower's positions are boundaries of its own log; where the logs diverge
            // they need not be boundaries of this one, and a probe must start at an entry.
            let next = self.entry_boundary_at_or_before(next, log);
            let peer = self.peer(member);
            peer.last_contact_ns = now_ns;
            if message.conflict_term() == 0 && next < peer.matched_position {
                // The member's log ends below what it acknowledged: it lost log (a machine
                // crash in `written` mode, a member rebuilt empty), or this is a refusal from
                // before its acknowledgement, delivered late. A second such refusal with no
                // success between says the former: then what it acknowledged no longer
                // counts, and resending from its end is what brings it back. (Counting less is
                // safe either way: the commit never moves back, the floor only goes lower.)
                if peer.refused_below_match {
                    peer.matched_position = next;
                }
                peer.refused_below_match = true;
            }
            let next = next.max(peer.matched_position);
            if peer.probing && peer.probe_in_flight && peer.probe_position == next {
                // A duplicate of a refusal already answered, or one that crossed the probe.
                return;
            }
            peer.probing = true;
            peer.probe_in_flight = false;
            peer.next_position = next;
        }
        self.replicate_to(member, log);
    }

    /// The last entry boundary of this log at or before `position`: walks entry lengths forward
    /// from the base of the term that holds the byte before `position`, or from the log's start
    /// when that base was purged (both are boundaries). Below the start, the term's base: the
    /// member needs a snapshot.
    fn entry_boundary_at_or_before(&self, position: u64, log: &(impl LogView + ?Sized)) -> u64 {
        let position = position.min(self.appended_position);
        if position == 0 {
            return 0;
        }
        let term = self.history.term_at(position - 1);
        let base = self.history.base_of(term).unwrap_or(0);
        let start = log.start();
        let mut boundary = if base < start && start <= position {
            start
        } else {
            base
        };
        while boundary < position {
            let bytes = log.read(boundary, position - boundary);
            match log_entry::padded_length(bytes) {
                Some(length) if boundary + length <= position => boundary += length,
                _ => break,
            }
        }
        boundary
    }

    /// The leader's commit rule: the quorum position of the members' durable, matching
    /// positions, only once it covers an entry of the leader's own term (Raft §5.4.2).
    pub(super) fn update_commit(&mut self) {
        let own = if self.config.planted(PlantedBug::AckBeforeFsync)
            || self.config.planted(PlantedBug::LeaderCountsUnsyncedOwn)
        {
            self.appended_position
        } else {
            self.durable_position
        };
        let mut positions = [0u64; super::MEMBERS_MAX as usize];
        let count = self.peers.len();
        for (member, peer) in self.peers.iter().enumerate() {
            positions[member] = peer.matched_position;
        }
        positions[usize::try_from(self.id).expect("small")] = own;
        let positions = &mut positions[..count];
        positions.sort_unstable_by(|a, b| b.cmp(a));
        let quorum_index = usize::try_from(self.config.quorum() - 1).expect("small");
        let quorum_position = positions[quorum_index];
        let own_term_reached = quorum_position > self.leader_term_base
            || self.config.planted(PlantedBug::CommitPriorTermByCounting);
        if quorum_position > self.commit_position && own_term_reached {
            self.commit_position = quorum_position;
        }
    }

    fn encode_response(
        &mut self,
        success: bool,
        position: u64,
        conflict_term: u64,
        conflict_base: u64,
    ) -> Vec<u8> {
        self.encode_fixed(|this, buf| {
            let mut encoder = append_response::Encoder::wrap(buf).expect("fits");
            encoder
                .term(this.current_term)
                .position(position)
                .conflict_term(conflict_term)
                .conflict_base(conflict_base)
                .follower_id(this.id)
                .success(u8::from(success));
            encoder.finish()
        })
    }

    /// Cluster time for a new entry: the leader's clock, never behind an entry it wrote.
    fn next_timestamp(&mut self) -> u64 {
        self.last_timestamp_ns = self.last_timestamp_ns.max(self.now_ns);
        self.last_timestamp_ns
    }

    fn append_event(
        &mut self,
        now_ns: u64,
        write: impl FnOnce(&mut [u8], u64) -> Result<usize, tern_codec::EncodeError>,
    ) -> Result<u64, AppendError> {
        self.advance_clock(now_ns);
        if self.role != Role::Leader {
            return Err(AppendError::NotLeader {
                leader: self.leader,
            });
        }
        let unsynced_bytes = self.appended_position - self.durable_position;
        if unsynced_bytes > UNSYNCED_BYTES_MAX {
            return Err(AppendError::BackPressure { unsynced_bytes });
        }
        let timestamp_ns = self.next_timestamp();
        let message_length = write(&mut self.scratch, timestamp_ns)?;
        let term = self.current_term;
        let position = self.append_scratch(term, message_length);
        if self.config.member_count == 1 {
            self.update_commit();
        }
        Ok(position)
    }

    /// Leader: appends a client session's command. Returns the entry's position.
    pub fn append_session_message(
        &mut self,
        now_ns: u64,
        session_id: u64,
        request_id: u64,
        payload: &[u8],
    ) -> Result<u64, AppendError> {
        self.append_event(now_ns, |buf, timestamp_ns| {
            let mut encoder = session_message::Encoder::wrap(buf)?;
            encoder
                .session_id(session_id)
                .request_id(request_id)
                .timestamp_ns(timestamp_ns);
            Ok(encoder.payload(payload)?.finish())
        })
    }

    /// Leader: appends a timer whose deadline passed. Returns the entry's position.
    pub fn append_timer(&mut self, now_ns: u64, correlation_id: u64) -> Result<u64, AppendError> {
        self.append_event(now_ns, |buf, timestamp_ns| {
            let mut encoder = timer_fired::Encoder::wrap(buf)?;
            encoder
                .correlation_id(correlation_id)
                .timestamp_ns(timestamp_ns);
            Ok(encoder.finish())
        })
    }

    /// Leader: appends a request that every member snapshot its state once it has applied it,
    /// for `session_id`'s request `request_id` (0 and 0: the leader's own schedule). Returns the
    /// entry's position.
    pub fn append_snapshot_request(
        &mut self,
        now_ns: u64,
        session_id: u64,
        request_id: u64,
    ) -> Result<u64, AppendError> {
        self.append_event(now_ns, |buf, timestamp_ns| {
            let mut encoder = snapshot_request::Encoder::wrap(buf)?;
            encoder
                .session_id(session_id)
                .request_id(request_id)
                .timestamp_ns(timestamp_ns);
            Ok(encoder.finish())
        })
    }

    /// Leader: appends its service-state digest at `position` for every replica to compare.
    pub fn append_digest(
        &mut self,
        now_ns: u64,
        position: u64,
        digest: u64,
    ) -> Result<u64, AppendError> {
        self.append_event(now_ns, |buf, timestamp_ns| {
            let mut encoder = digest_checkpoint::Encoder::wrap(buf)?;
            encoder
                .position(position)
                .digest(digest)
                .timestamp_ns(timestamp_ns);
            Ok(encoder.finish())
        })
    }
}

/// The length of the whole entries in `log` from `from`, ending at or before `limit`.
fn whole_entries(log: &(impl LogView + ?Sized), from: u64, limit: u64) -> u64 {
    let bytes = log.read(from, limit - from);
    let mut length = 0u64;
    while length < limit - from {
        let start = usize::try_from(length).expect("fits");
        // Only the length is read here: the entries were checked when they were appended.
        let Some(entry_length) = log_entry::padded_length(&bytes[start..]) else {
            break;
        };
        if length + entry_length > limit - from {
            break;
        }
        length += entry_length;
    }
    length
}
