//! Elections: canvass (the pre-vote), nomination after a random delay, the ballot.
//!
//! Raft §5.2 and §9.6 (pre-vote), in Aeron Cluster's shape: a member that lost its leader
//! broadcasts its log position; it nominates itself only when no member it heard from has a
//! better log and either every member or, after the election timeout, a quorum of members
//! without a live leader has answered. The delay before standing is random in `[0,
//! election_timeout / 2)`, so members with equal logs rarely collide.

use super::{CanvassInfo, Consensus, Output, Role};
use crate::planted::PlantedBug;
use crate::protocol::{canvass_position, request_vote, vote};
use tern_codec::SemanticVersion;

impl Consensus {
    pub(super) fn follower_tick(&mut self) {
        let silent_ns = self.now_ns.saturating_sub(self.leader_contact_ns);
        if silent_ns >= self.config.leader_heartbeat_timeout_ns {
            self.start_canvass();
        }
    }

    pub(super) fn start_canvass(&mut self) {
        self.leader = None;
        self.canvass_started_ns = self.now_ns;
        self.next_canvass_ns = self.now_ns;
        self.become_role(Role::Canvass);
        self.canvass_tick();
    }

    pub(super) fn canvass_tick(&mut self) {
        if self.now_ns >= self.next_canvass_ns {
            self.next_canvass_ns = self.now_ns + self.config.heartbeat_interval_ns;
            let message = self.encode_canvass();
            for member in self.other_members() {
                self.send(member, message.clone());
            }
        }
        if self.rebuilding.is_none() && self.canvass_won() {
            let spread = (self.config.election_timeout_ns / 2).max(1);
            self.nominate_at_ns = self.now_ns + self.rng.below(spread);
            self.become_role(Role::Nominate);
        }
    }

    pub(super) fn nominate_tick(&mut self) {
        if self.now_ns < self.nominate_at_ns {
            return;
        }
        if self.rebuilding.is_none() && self.canvass_won() {
            self.become_candidate();
        } else {
            self.start_canvass();
        }
    }

    pub(super) fn candidate_tick(&mut self) {
        if self.now_ns >= self.ballot_deadline_ns {
            self.start_canvass();
            return;
        }
        // Votes and requests may be lost: ask again at the heartbeat rate.
        if self.now_ns >= self.next_canvass_ns {
            self.next_canvass_ns = self.now_ns + self.config.heartbeat_interval_ns;
            let message = self.encode_request_vote();
            for member in self.other_members() {
                if !self.peer(member).voted {
                    self.send(member, message.clone());
                }
            }
        }
    }

    /// Whether this member has the best log among a large enough canvass (see the module docs).
    fn canvass_won(&self) -> bool {
        let own = (self.history.last_term(), self.appended_position);
        let mut answered = 1;
        for member in self.other_members() {
            let peer = &self.peers[usize::try_from(member).expect("small")];
            let Some((info, received_ns)) = peer.canvass else {
                continue;
            };
            if received_ns < self.canvass_started_ns || info.follows_live_leader {
                continue;
            }
            if (info.log_term, info.log_position) > own {
                return false;
            }
            answered += 1;
        }
        let waited_ns = self.now_ns.saturating_sub(self.canvass_started_ns);
        answered == self.config.member_count
            || (answered >= self.config.quorum() && waited_ns >= self.config.election_timeout_ns)
    }

    fn become_candidate(&mut self) {
        let highest_seen = self
            .peers
            .iter()
            .filter_map(|peer| peer.canvass.map(|(info, _)| info.current_term))
            .max()
            .unwrap_or(0);
        self.current_term = self.current_term.max(highest_seen) + 1;
        self.voted_for = Some(self.id);
        self.leader = None;
        self.outputs.push_back(Output::PersistVote {
            term: self.current_term,
            voted_for: Some(self.id),
        });
        for peer in &mut self.peers {
            peer.voted = false;
        }
        let id = self.id;
        self.peer(id).voted = true;
        self.ballot_deadline_ns = self.now_ns + self.config.election_timeout_ns;
        self.next_canvass_ns = self.now_ns;
        self.become_role(Role::Candidate);
        if self.config.quorum() == 1 {
            self.become_leader();
        } else {
            self.candidate_tick();
        }
    }

    fn has_live_leader(&self) -> bool {
        let live = |since_ns: u64| {
            self.now_ns.saturating_sub(since_ns) < self.config.leader_heartbeat_timeout_ns
        };
        match self.role {
            Role::Follower => self.leader.is_some() && live(self.leader_contact_ns),
            Role::Leader => true,
            _ => false,
        }
    }

    /// Whether a member speaks a compatible protocol version and frames the log alike; if not,
    /// the member is reported.
    fn compatible(&mut self, member: u32, composed_version: u32, log_term_length: u32) -> bool {
        let version = SemanticVersion::decompose(composed_version).unwrap_or(SemanticVersion::new(
            u8::MAX,
            u8::MAX,
            u8::MAX,
        ));
        let same_format = u64::from(log_term_length) == self.config.log_format.term_length();
        if version.is_compatible_with(self.config.protocol_version) && same_format {
            return true;
        }
        self.outputs.push_back(Output::IncompatiblePeer {
            member,
            version,
            log_term_length,
        });
        false
    }

    /// This member's log term length, as its election messages carry it.
    fn log_term_length(&self) -> u32 {
        u32::try_from(self.config.log_format.term_length()).expect("terms are at most 1 GiB")
    }

    pub(super) fn on_canvass(&mut self, message: &canvass_position::Decoder<'_>) {
        let member = message.member_id();
        if !self.compatible(
            member,
            message.protocol_version(),
            message.log_term_length(),
        ) {
            return;
        }
        let info = CanvassInfo {
            current_term: message.current_term(),
            log_term: message.log_term(),
            log_position: message.log_position(),
            follows_live_leader: message.follows_live_leader() != 0,
        };
        let now_ns = self.now_ns;
        self.peer(member).canvass = Some((info, now_ns));
        // A member that still has a leader answers a canvasser, so the canvasser learns it will
        // not support an election. Answers say "live leader" and are never answered in turn, so
        // two members can never answer each other in a loop (duplicated messages would turn such
        // a loop into a storm); members without a leader are heard from through their own
        // canvass broadcasts instead.
        if !info.follows_live_leader && self.has_live_leader() {
            let reply = self.encode_canvass();
            self.send(member, reply);
        }
    }

    pub(super) fn on_request_vote(&mut self, message: &request_vote::Decoder<'_>) {
        let candidate = message.candidate_id();
        let term = message.candidate_term();
        if !self.compatible(
            candidate,
            message.protocol_version(),
            message.log_term_length(),
        ) {
            let reply = self.encode_vote(candidate, false);
            self.send(candidate, reply);
            return;
        }
        if term > self.current_term {
            // Leader stickiness (Raft thesis §4.2.3): a member that still hears from a leader
            // ignores a higher-term vote request instead of deposing it.
            if self.has_live_leader() {
                return;
            }
            self.adopt_term(term);
        }
        let own_log = (self.history.last_term(), self.appended_position);
        let candidate_log = (message.log_term(), message.log_position());
        let granted = term == self.current_term
            && self.rebuilding.is_none()
            && (self.voted_for.is_none_or(|voted| voted == candidate)
                || self.config.planted(PlantedBug::VoteTwiceInTerm))
            && (candidate_log >= own_log || self.config.planted(PlantedBug::VoteIgnoringLog));
        // The planted mistake: the vote goes out before the output that persists it.
        let sent_first = granted
            && self.voted_for.is_none()
            && self.config.planted(PlantedBug::VoteSentBeforePersist);
        if sent_first {
            let reply = self.encode_vote(candidate, true);
            self.send(candidate, reply);
        }
        if granted {
            if self.voted_for.is_none() || self.config.planted(PlantedBug::VoteTwiceInTerm) {
                self.voted_for = Some(candidate);
                self.outputs.push_back(Output::PersistVote {
                    term,
                    voted_for: Some(candidate),
                });
            }
            // Granting a vote counts as hearing from a leader-to-be: do not canvass yet.
            self.leader_contact_ns = self.now_ns;
        }
        if !sent_first {
            let reply = self.encode_vote(candidate, granted);
            self.send(candidate, reply);
        }
    }

    pub(super) fn on_vote(&mut self, message: &vote::Decoder<'_>) {
        if message.term() > self.current_term {
            self.adopt_term(message.term());
            return;
        }
        if self.role != Role::Candidate
            || message.term() != self.current_term
            || message.candidate_id() != self.id
            || message.granted() == 0
        {
            return;
        }
        self.peer(message.voter_id()).voted = true;
        let votes = self.peers.iter().filter(|peer| peer.voted).count();
        if u32::try_from(votes).expect("small") >= self.config.quorum() {
            self.become_leader();
        }
    }

    fn encode_canvass(&mut self) -> Vec<u8> {
        self.encode_fixed(|this, buf| {
            let mut encoder = canvass_position::Encoder::wrap(buf).expect("fits");
            encoder
                .current_term(this.current_term)
                .log_term(this.history.last_term())
                .log_position(this.appended_position)
                .protocol_version(this.config.protocol_version.compose())
                .member_id(this.id)
                .follows_live_leader(u8::from(this.has_live_leader()))
                .log_term_length(this.log_term_length());
            encoder.finish()
        })
    }

    fn encode_request_vote(&mut self) -> Vec<u8> {
        self.encode_fixed(|this, buf| {
            let mut encoder = request_vote::Encoder::wrap(buf).expect("fits");
            encoder
                .candidate_term(this.current_term)
                .log_term(this.history.last_term())
                .log_position(this.appended_position)
                .protocol_version(this.config.protocol_version.compose())
                .candidate_id(this.id)
                .log_term_length(this.log_term_length());
            encoder.finish()
        })
    }

    fn encode_vote(&mut self, candidate: u32, granted: bool) -> Vec<u8> {
        self.encode_fixed(|this, buf| {
            let mut encoder = vote::Encoder::wrap(buf).expect("fits");
            encoder
                .term(this.current_term)
                .candidate_id(candidate)
                .voter_id(this.id)
                .granted(u8::from(granted));
            encoder.finish()
        })
    }
}
