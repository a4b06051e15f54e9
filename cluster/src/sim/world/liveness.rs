//! The liveness phase's checks: after the heal, a leader every member follows within the bound,
//! then every member converged.

use super::{COMMANDS_AFTER_HEAL, Node, World};
use crate::consensus::Role;

impl World<'_> {
    /// After the heal: a leader that every member follows within the election bound, then every
    /// member converged and every client's commands answered.
    pub(super) fn check_liveness(&mut self) {
        let healed_at = self.healed_at_ns.expect("healed");
        let nodes: Vec<&Node> = self
            .members
            .iter()
            .filter_map(|m| m.node.as_ref())
            .collect();
        if nodes.len() < self.members.len() {
            return;
        }
        let leader = nodes
            .iter()
            .find(|node| node.consensus.role() == Role::Leader);
        if self.leader_found_ns.is_none() {
            if let Some(leader) = leader {
                let term = leader.consensus.current_term();
                let id = leader.consensus.id();
                if nodes.iter().all(|node| {
                    node.consensus.current_term() == term && node.consensus.leader() == Some(id)
                }) {
                    self.leader_found_ns = Some(self.now_ns);
                }
            }
            let bound = self.config.leader_bound_ns();
            if self.leader_found_ns.is_none() && self.now_ns > healed_at + bound {
                self.checker.record(
                    "liveness",
                    format!(
                        "no leader followed by every member {} ms after the heal",
                        bound / 1_000_000
                    ),
                );
                self.finished = true;
            }
            return;
        }
        let Some(leader) = leader else { return };
        let end = leader.consensus.appended_position();
        let converged = nodes.iter().all(|node| {
            node.consensus.appended_position() == end
                && node.consensus.commit_position() == end
                && node.container.applied_position() == end
        }) && self.clients.iter().all(|client| {
            client.outstanding.is_none() && client.acked_after_heal >= COMMANDS_AFTER_HEAL
        });
        if !converged {
            return;
        }
        let digest = nodes[0].container.state_digest();
        if nodes
            .iter()
            .any(|node| node.container.state_digest() != digest)
        {
            self.checker.record(
                "convergence",
                "members hold equal logs but different service digests".to_string(),
            );
        }
        let log = self.members[0].storage.log().clone();
        if self
            .members
            .iter()
            .any(|member| *member.storage.log() != log)
        {
            self.checker.record(
                "convergence",
                "members converged to different log bytes".to_string(),
            );
        }
        self.checker.verify_acks(true);
        self.note(|| format!("converged at {end}"));
        self.finished = true;
    }

    pub(super) fn liveness_failure(&mut self) {
        let detail = match self.leader_found_ns {
            None => "no leader before the run's deadline".to_string(),
            Some(_) => {
                let states: Vec<String> = self
                    .members
                    .iter()
                    .map(|member| match &member.node {
                        Some(node) => format!(
                            "{:?} t{} app {} com {} applied {}",
                            node.consensus.role(),
                            node.consensus.current_term(),
                            node.consensus.appended_position(),
                            node.consensus.commit_position(),
                            node.container.applied_position()
                        ),
                        None => "down".to_string(),
                    })
                    .collect();
                format!("members did not converge before the run's deadline: {states:?}")
            }
        };
        self.checker.record("liveness", detail);
    }
}
