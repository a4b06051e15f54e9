//! Replication: this archive copies a recording from another archive, as a client of it.
//!
//! A [`ReplicationSession`] walks these steps, one duty cycle at a time and never waiting:
//! 1. connect to the source archive's control channel ([`AsyncConnect`]);
//! 2. ask the source recording's descriptor, and check that a recording to extend here ends
//!    where the source can replay from;
//! 3. ask this archive to record the replication channel (catalogued under the source's
//!    channel and stream), then ask the source to replay from the source's start (or the
//!    extended recording's stop) onto the replication channel, placed at the original
//!    positions and with the original session id: up to what is recorded now, or, following,
//!    until the source recording stops;
//! 4. the recording ends when the replay does (its publication closes); the replication is
//!    then done.
//!
//! Every step until the copy starts has a deadline ([`STEP_TIMEOUT`]) measured on the
//! archive's clock; a source that refuses, goes silent, or answers later that its replay
//! failed fails the replication with its reason, reported to the control session that asked;
//! so does a copy that ends short of where the source was to end. (Adding the two streams to
//! the driver when the replication starts waits for the driver's answer, as every control
//! request that adds a publication or subscription does.)
//!
//! Memory and threads: owned by the archive agent, on its thread.

use std::time::Duration;

use crate::client::{ArchiveClient, ArchiveClientConfig, AsyncConnect, RecordingInfo, Request};
use crate::control_protocol::{REPLAY_FOLLOW_LIVE, ResponseCode};

/// The longest a step may wait for the source.
pub const STEP_TIMEOUT: Duration = Duration::from_secs(10);
/// Replications receive on streams from here up, one each.
pub const REPLICATION_STREAM_BASE: i32 = 0x5250_0000;

/// What the archive must do for a replication.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReplicationAction {
    /// Nothing now.
    None,
    /// Record `channel` and `stream_id`, catalogued as `identity`, extending a recording if
    /// one is named.
    Record {
        /// The channel to subscribe to.
        channel: String,
        /// The stream.
        stream_id: i32,
        /// The recording to extend.
        extend: Option<i64>,
        /// The source's channel and stream.
        identity: (String, i32),
    },
}

#[derive(Debug)]
enum Step {
    Connecting(Box<AsyncConnect>),
    Describing {
        correlation_id: Option<i64>,
    },
    Subscribing {
        source: Box<RecordingInfo>,
        from: i64,
    },
    Replaying {
        correlation_id: Option<i64>,
        from: i64,
    },
    Copying {
        replay_session_id: i64,
        correlation_id: i64,
    },
    Done,
    Failed(String),
}

/// One replication.
#[derive(Debug)]
pub struct ReplicationSession {
    /// The replication's id.
    pub id: i64,
    /// The control session that asked.
    pub control_session_id: i64,
    /// The request's correlation id.
    pub correlation_id: i64,
    source_recording_id: i64,
    destination_recording_id: Option<i64>,
    replication_channel: String,
    stream_id: i32,
    follow: bool,
    client: Option<ArchiveClient>,
    step: Step,
    step_since_ns: i64,
    /// The copy's recording here, once it started; and where it will end (-1: following).
    copy: Option<i64>,
    target: i64,
}

/// What a replication was asked to do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReplicationRequest {
    /// The recording at the source.
    pub source_recording_id: i64,
    /// The recording here to extend.
    pub destination_recording_id: Option<i64>,
    /// How to reach the source archive (its control channel and stream; this archive's
    /// response channel).
    pub source: ArchiveClientConfig,
    /// Where the source replays to.
    pub replication_channel: String,
    /// Follow a live source recording.
    pub follow: bool,
}

impl ReplicationSession {
    /// Starts replication `id` at `now_ns`, connecting through `tern`.
    pub fn new(
        ids: (i64, i64, i64),
        tern: &tern_engine::client::Tern,
        request: ReplicationRequest,
        now_ns: i64,
    ) -> Self {
        let (id, control_session_id, correlation_id) = ids;
        let step = match AsyncConnect::new(tern, request.source) {
            Ok(connect) => Step::Connecting(Box::new(connect)),
            Err(error) => Step::Failed(format!("connecting to the source archive: {error}")),
        };
        Self {
            id,
            control_session_id,
            correlation_id,
            source_recording_id: request.source_recording_id,
            destination_recording_id: request.destination_recording_id,
            replication_channel: request.replication_channel,
            stream_id: REPLICATION_STREAM_BASE
                .wrapping_add(i32::try_from(id % 0xFFFF).unwrap_or(0)),
            follow: request.follow,
            client: None,
            step,
            step_since_ns: now_ns,
            copy: None,
            target: -1,
        }
    }

    /// The copy's recording here, once it has started.
    pub fn copy(&self) -> Option<i64> {
        self.copy
    }

    /// Notes the copy's recording (it started); returns where the copy will end (-1 while
    /// following a live source).
    pub fn on_copy_started(&mut self, recording_id: i64) -> i64 {
        self.copy = Some(recording_id);
        self.target
    }

    /// The stream the source replays on.
    pub fn stream_id(&self) -> i32 {
        self.stream_id
    }

    /// The channel the source replays on.
    pub fn replication_channel(&self) -> &str {
        &self.replication_channel
    }

    /// Whether it has ended.
    pub fn is_finished(&self) -> bool {
        matches!(self.step, Step::Done | Step::Failed(_))
    }

    /// Why it failed, if it did.
    pub fn failure(&self) -> Option<&str> {
        match &self.step {
            Step::Failed(reason) => Some(reason),
            _ => None,
        }
    }

    /// Whether the source is replaying to this archive's recording.
    pub fn is_copying(&self) -> bool {
        matches!(self.step, Step::Copying { .. })
    }

    fn go(&mut self, step: Step, now_ns: i64) {
        self.step = step;
        self.step_since_ns = now_ns;
    }

    /// Ends it as failed, for `reason` (the archive could not record it).
    pub fn fail_with(&mut self, reason: String) {
        self.fail(reason);
    }

    fn fail(&mut self, reason: String) {
        tracing::warn!(replication_id = self.id, reason, "replication failed");
        self.step = Step::Failed(reason);
    }

    /// The archive's recording started: ask the source to replay into it.
    pub fn on_recording_ready(&mut self, now_ns: i64) {
        if let Step::Subscribing { from, .. } = self.step {
            self.go(
                Step::Replaying {
                    correlation_id: None,
                    from,
                },
                now_ns,
            );
        }
    }

    /// The recording of the replicated stream ended at `stop` (its replay ended): done, if
    /// the copy reached where the source was to end; failed if it was cut short.
    pub fn on_recording_stopped(&mut self, stop: i64) {
        if !self.is_copying() {
            return;
        }
        if self.target >= 0 && stop < self.target {
            self.fail(format!(
                "the copy ended at {stop}, short of the source's {}",
                self.target
            ));
            return;
        }
        tracing::info!(replication_id = self.id, stop, "replication done");
        self.step = Step::Done;
    }

    /// Stops it: the source's replay is asked to stop (best effort); it is done.
    pub fn stop(&mut self) {
        if let (
            Step::Copying {
                replay_session_id, ..
            },
            Some(client),
        ) = (&self.step, self.client.as_mut())
        {
            let _ = client.try_send(&Request::StopReplay {
                replay_session_id: *replay_session_id,
            });
        }
        self.step = Step::Done;
    }

    /// One duty cycle at `now_ns`; returns what the archive must do.
    pub fn do_work(&mut self, now_ns: i64) -> ReplicationAction {
        let timeout_ns = i64::try_from(STEP_TIMEOUT.as_nanos()).unwrap_or(i64::MAX);
        let waiting_too_long = now_ns - self.step_since_ns > timeout_ns;
        match &mut self.step {
            Step::Connecting(connect) => match connect.poll() {
                Ok(Some(client)) => {
                    self.client = Some(client);
                    self.go(
                        Step::Describing {
                            correlation_id: None,
                        },
                        now_ns,
                    );
                }
                Ok(None) if waiting_too_long => {
                    self.fail(format!(
                        "the source archive did not answer within {STEP_TIMEOUT:?}"
                    ));
                }
                Ok(None) => {}
                Err(error) => self.fail(format!("connecting to the source archive: {error}")),
            },
            Step::Describing { correlation_id } => {
                let recording_id = self.source_recording_id;
                let Some(client) = self.client.as_mut() else {
                    self.fail("no source connection".to_owned());
                    return ReplicationAction::None;
                };
                match correlation_id {
                    None => match client.try_send(&Request::ListOne { recording_id }) {
                        Ok(sent) => *correlation_id = sent,
                        Err(error) => self.fail(error.to_string()),
                    },
                    Some(id) => {
                        let id = *id;
                        client.poll();
                        if let Some(response) = client.take_response(id) {
                            return self.on_description(response, now_ns);
                        } else if waiting_too_long {
                            self.fail(
                                "the source archive did not describe the recording".to_owned(),
                            );
                        }
                    }
                }
            }
            Step::Subscribing { .. } | Step::Done | Step::Failed(_) => {}
            Step::Replaying {
                correlation_id,
                from,
            } => {
                let from = *from;
                let Some(client) = self.client.as_mut() else {
                    self.fail("no source connection".to_owned());
                    return ReplicationAction::None;
                };
                match correlation_id {
                    None => {
                        let request = Request::Replay {
                            recording_id: self.source_recording_id,
                            position: from,
                            length: if self.follow { REPLAY_FOLLOW_LIVE } else { -1 },
                            channel: &self.replication_channel,
                            stream_id: self.stream_id,
                        };
                        match client.try_send(&request) {
                            Ok(sent) => *correlation_id = sent,
                            Err(error) => self.fail(error.to_string()),
                        }
                    }
                    Some(id) => {
                        let id = *id;
                        client.poll();
                        match client.take_response(id) {
                            Some(response) if response.code == ResponseCode::Ok => {
                                let replay_session_id = response.relevant_id;
                                self.go(
                                    Step::Copying {
                                        replay_session_id,
                                        correlation_id: id,
                                    },
                                    now_ns,
                                );
                            }
                            Some(response) => {
                                self.fail(format!(
                                    "the source refused the replay: {:?}: {}",
                                    response.code, response.message
                                ));
                            }
                            None if waiting_too_long => {
                                self.fail("the source archive did not start the replay".to_owned());
                            }
                            None => {}
                        }
                    }
                }
            }
            Step::Copying { correlation_id, .. } => {
                // A later answer to the replay request is the source saying its replay failed.
                let id = *correlation_id;
                if let Some(client) = self.client.as_mut() {
                    client.poll();
                    if let Some(response) = client.take_response(id) {
                        self.fail(format!(
                            "the source's replay failed: {:?}: {}",
                            response.code, response.message
                        ));
                        return ReplicationAction::None;
                    }
                }
                if self.copy.is_none() && waiting_too_long {
                    self.fail(format!(
                        "the source's replay did not reach this archive within {STEP_TIMEOUT:?}"
                    ));
                }
            }
        }
        ReplicationAction::None
    }

    fn on_description(
        &mut self,
        response: crate::client::Response,
        now_ns: i64,
    ) -> ReplicationAction {
        let Some(source) = response
            .descriptors
            .into_iter()
            .next()
            .filter(|_| response.code == ResponseCode::Ok)
        else {
            self.fail(format!(
                "the source has no recording {}: {:?} {}",
                self.source_recording_id, response.code, response.message
            ));
            return ReplicationAction::None;
        };
        if source.state != crate::catalog::RecordingState::Valid.to_wire() {
            self.fail(format!(
                "source recording {} is not valid (state {})",
                source.recording_id, source.state
            ));
            return ReplicationAction::None;
        }
        let from = source.start_position;
        self.target = if self.follow && source.stop_timestamp < 0 {
            -1
        } else {
            source.stop_position
        };
        let identity = (source.channel.clone(), source.stream_id);
        let separator = if self.replication_channel.contains('?') {
            '|'
        } else {
            '?'
        };
        // The replay carries the source's session id: the recording here keeps it.
        let channel = format!(
            "{}{separator}session-id={}",
            self.replication_channel, source.session_id
        );
        self.replication_channel.clone_from(&channel);
        self.go(
            Step::Subscribing {
                source: Box::new(source),
                from,
            },
            now_ns,
        );
        ReplicationAction::Record {
            channel,
            stream_id: self.stream_id,
            extend: self.destination_recording_id,
            identity,
        }
    }

    /// The source's descriptor, once described.
    pub fn source(&self) -> Option<&RecordingInfo> {
        match &self.step {
            Step::Subscribing { source, .. } => Some(source),
            _ => None,
        }
    }

    /// Sets where the replay starts (an extension starts at the recording's stop here).
    pub fn start_from(&mut self, position: i64) {
        if let Step::Subscribing { from, .. } = &mut self.step {
            *from = position;
        }
    }
}
