//! The simulated clients' side of the world: requests into members, answers back, retries.

use super::{CLIENT_RETRY_NS, COMMANDS_AFTER_HEAL, Event, World};
use crate::consensus::AppendError;
use crate::session_protocol::{NO_LEADER, Response, ResponseCode, session_request};

impl World<'_> {
    pub(super) fn member_receive_request(&mut self, member: usize, from: usize, bytes: &[u8]) {
        let now = self.local_now(member);
        let stopped = self.members[member].stopped;
        let node = self.members[member].node.as_mut().expect("live");
        let Ok(request) = session_request::Decoder::decode(bytes) else {
            self.checker.record(
                "protocol",
                format!("member {member} got a malformed client request"),
            );
            return;
        };
        let session_id = request.session_id();
        let request_id = request.request_id();
        let refusal = if stopped {
            Some((ResponseCode::Busy, None))
        } else {
            match node.consensus.append_session_message(
                now,
                session_id,
                request_id,
                request.payload(),
            ) {
                Ok(_) => None,
                Err(AppendError::NotLeader { leader }) => Some((ResponseCode::Redirect, leader)),
                Err(AppendError::BackPressure { .. } | AppendError::Encode(_)) => {
                    Some((ResponseCode::Busy, None))
                }
            }
        };
        if let Some((code, leader)) = refusal {
            let response = Response {
                session_id,
                request_id,
                position: 0,
                leader_hint: leader.unwrap_or(NO_LEADER),
                code,
                payload: Vec::new(),
            };
            self.send(member, from, response.encode().expect("responses fit"));
        }
        self.drain(member);
    }

    pub(super) fn schedule_client(&mut self, client: usize, delay_ns: u64) {
        let state = &mut self.clients[client];
        state.generation += 1;
        let generation = state.generation;
        self.schedule(delay_ns, Event::ClientWake { client, generation });
    }

    pub(super) fn client_wants_more(&self, client: usize) -> bool {
        self.healed_at_ns.is_none() || self.clients[client].acked_after_heal < COMMANDS_AFTER_HEAL
    }

    pub(super) fn client_wake(&mut self, client: usize) {
        let members = self.config.members;
        let state = &mut self.clients[client];
        if state.outstanding.is_some() {
            // The answer did not come in time: try another member.
            state.next_target(members);
        } else {
            if !self.client_wants_more(client) {
                return;
            }
            self.clients[client].next_request();
        }
        self.client_send(client);
    }

    pub(super) fn client_send(&mut self, client: usize) {
        let state = &mut self.clients[client];
        let outstanding = state.outstanding.clone().expect("a request to send");
        state.sends += 1;
        let target = usize::try_from(state.target).expect("fits");
        let bytes = crate::session_protocol::encode_request(
            state.session_id,
            outstanding.request_id,
            &outstanding.payload,
        )
        .expect("commands fit");
        let endpoint = self.member_count() + client;
        self.send(endpoint, target, bytes);
        self.schedule_client(client, CLIENT_RETRY_NS);
    }

    pub(super) fn client_receive(&mut self, client: usize, bytes: &[u8]) {
        let Ok(response) = Response::decode(bytes) else {
            self.checker.record(
                "protocol",
                format!("client {client} got a malformed response"),
            );
            return;
        };
        let state = &mut self.clients[client];
        let current = state
            .outstanding
            .as_ref()
            .map(|outstanding| outstanding.request_id);
        if current != Some(response.request_id) {
            return;
        }
        match response.code {
            ResponseCode::Applied => {
                state.outstanding = None;
                state.acked += 1;
                if self.healed_at_ns.is_some() {
                    state.acked_after_heal += 1;
                }
                let think = state.think_ns();
                self.checker.on_ack(
                    response.session_id,
                    response.request_id,
                    response.position,
                    &response.payload,
                );
                self.note(|| {
                    format!(
                        "client {client} request {} applied at {}",
                        response.request_id, response.position
                    )
                });
                self.schedule_client(client, think);
            }
            ResponseCode::Redirect => {
                if response.leader_hint == NO_LEADER || response.leader_hint == state.target {
                    state.next_target(self.config.members);
                    self.schedule_client(client, 20_000_000);
                } else {
                    state.target = response.leader_hint % self.config.members;
                    self.client_send(client);
                }
            }
            ResponseCode::Busy | ResponseCode::Unknown(_) => {
                self.schedule_client(client, 20_000_000);
            }
        }
    }
}
