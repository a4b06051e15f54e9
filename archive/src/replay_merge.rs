//! Replay merge: read a recording from a position and then the live stream it records, as one
//! stream, with no gap and no duplicate, over IPC or UDP.
//!
//! How: the live subscription is made first, and the merge waits for its image of the recorded
//! publication; that image's join position `J` is where the live stream will be read from, and
//! because the subscription is tethered, nothing at or after `J` can be lost while the merge
//! catches up. The archive then replays exactly `[from, J)` (a bounded replay; the archive waits
//! for its recording to reach `J` if it has not yet). The merge hands on the replay's fragments
//! until the replay reaches `J`, then the live image's from `J` on. Both carry the original
//! positions, and the replay carries the original session id too, so a message whose fragments
//! straddle `J` assembles across the switch. Unlike a merge that needs multi-destination UDP,
//! this works for any media the live stream uses.
//!
//! The live publisher is held back (tethered) while the replay runs: a merge from far behind a
//! fast stream costs the publisher up to the replay's duration in back-pressure. That is the
//! price of a merge that cannot lose data.
//!
//! Memory and threads: used from one thread; owns two subscriptions.

use std::time::{Duration, Instant};

use tern_engine::client::{ControlledAction, FragmentHeader, Subscription, Tern};

use crate::client::{ArchiveClient, ArchiveClientError, RecordingInfo};

/// Where a merge stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MergeState {
    /// Reading the replay, up to the join position.
    Replaying,
    /// Reading the live stream.
    Live,
}

/// A replay that becomes the live stream.
pub struct ReplayMerge {
    live: Subscription,
    replay: Subscription,
    live_session_id: i32,
    join_position: i64,
    /// Where the merge was asked to start: live fragments before it (a join behind it) are
    /// skipped.
    from: i64,
    position: i64,
    state: MergeState,
    /// Why the merge cannot go on, if it cannot.
    failure: Option<String>,
}

impl std::fmt::Debug for ReplayMerge {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ReplayMerge")
            .field("join_position", &self.join_position)
            .field("position", &self.position)
            .field("state", &self.state)
            .finish_non_exhaustive()
    }
}

impl ReplayMerge {
    /// Starts merging `recording` from `from` (a frame boundary; -1 for its start) into the
    /// live stream on `live_channel` and `recording.stream_id`, replaying on `replay_channel`
    /// and `replay_stream_id` (a stream nobody else uses). Waits up to `timeout` for the live
    /// stream's image and for the archive to accept the replay.
    pub fn start(
        tern: &Tern,
        archive: &mut ArchiveClient,
        recording: &RecordingInfo,
        from: i64,
        live_channel: &str,
        (replay_channel, replay_stream_id): (&str, i32),
        timeout: Duration,
    ) -> Result<Self, ArchiveClientError> {
        let mut live = tern.add_subscription(live_channel, recording.stream_id)?;
        let deadline = Instant::now() + timeout;
        let join_position = loop {
            if let Some(image) = live
                .images()
                .iter()
                .find(|image| image.info().session_id == recording.session_id)
            {
                break image.position();
            }
            if Instant::now() > deadline {
                return Err(ArchiveClientError::Timeout {
                    what: "the live stream's image",
                    timeout,
                });
            }
            std::thread::sleep(Duration::from_micros(200));
        };
        let from = if from < 0 {
            recording.start_position
        } else {
            from
        };
        // A recording that stopped short of the join would leave a gap nobody can fill.
        let current = archive.list_recording(recording.recording_id)?;
        if current.stop_timestamp >= 0
            && current.stop_position < join_position
            && from < join_position
        {
            return Err(ArchiveClientError::Archive {
                code: crate::control_protocol::ResponseCode::InvalidPosition,
                message: format!(
                    "recording {} stopped at {}, before the live stream's join position {join_position}: \
                     what lies between is in neither",
                    recording.recording_id, current.stop_position
                ),
            });
        }
        let separator = if replay_channel.contains('?') {
            '|'
        } else {
            '?'
        };
        let replay_channel = format!(
            "{replay_channel}{separator}session-id={}",
            recording.session_id
        );
        let replay = tern.add_subscription(&replay_channel, replay_stream_id)?;
        let state = if from < join_position {
            archive.replay(
                recording.recording_id,
                from,
                join_position - from,
                &replay_channel,
                replay_stream_id,
            )?;
            MergeState::Replaying
        } else {
            MergeState::Live
        };
        tracing::debug!(
            recording_id = recording.recording_id,
            from,
            join_position,
            "replay merge started"
        );
        Ok(Self {
            live,
            replay,
            live_session_id: recording.session_id,
            join_position,
            position: from,
            from,
            state,
            failure: None,
        })
    }

    /// Where the live stream joins.
    pub fn join_position(&self) -> i64 {
        self.join_position
    }

    /// Why the merge cannot go on (its replay ended before the join), if it cannot.
    pub fn failure(&self) -> Option<&str> {
        self.failure.as_deref()
    }

    /// Where it stands.
    pub fn state(&self) -> MergeState {
        self.state
    }

    /// The position after the last fragment handed on.
    pub fn position(&self) -> i64 {
        self.position
    }

    /// Hands up to `fragment_limit` fragments to `handler`, from the replay and then from the
    /// live stream, in stream order; returns how many.
    pub fn poll(
        &mut self,
        mut handler: impl FnMut(&[u8], &FragmentHeader),
        fragment_limit: usize,
    ) -> usize {
        let mut fragments = 0;
        if self.state == MergeState::Replaying {
            let join = self.join_position;
            let position = &mut self.position;
            fragments += self.replay.controlled_poll(
                |payload, header| {
                    if header.position > join {
                        // Never past the join: the live stream has it.
                        return ControlledAction::Abort;
                    }
                    *position = header.position;
                    handler(payload, header);
                    ControlledAction::Continue
                },
                fragment_limit,
            );
            // Where the replay image has got to, padding included: the position of the last
            // fragment handed on stops short of the join when padding precedes it.
            let replayed = self.replay.images().first().map(|image| {
                (
                    image.position(),
                    image.is_end_of_stream() || image.is_closed(),
                )
            });
            match replayed {
                Some((position, _)) if position >= self.join_position => {
                    self.position = self.position.max(self.join_position);
                    self.state = MergeState::Live;
                    tracing::debug!(
                        join_position = self.join_position,
                        "replay merge switched to the live stream"
                    );
                }
                Some((position, true)) => {
                    self.failure = Some(format!(
                        "the replay ended at {position}, before the join position {}",
                        self.join_position
                    ));
                }
                _ => {}
            }
        }
        if self.state == MergeState::Live && fragments < fragment_limit {
            let (session, from) = (self.live_session_id, self.from);
            let position = &mut self.position;
            let Some(image) = self
                .live
                .images_mut()
                .iter_mut()
                .find(|image| image.info().session_id == session)
            else {
                return fragments;
            };
            fragments += image.poll(
                |payload, header| {
                    // A fragment ends after `from` only if it starts at or after it: frames are
                    // contiguous and `from` is a frame boundary.
                    if header.position > from {
                        *position = header.position;
                        handler(payload, header);
                    }
                },
                fragment_limit - fragments,
            );
        }
        fragments
    }

    /// Whether the live image has ended (its publication closed and everything read).
    pub fn is_live_ended(&mut self) -> bool {
        let session = self.live_session_id;
        self.state == MergeState::Live
            && self
                .live
                .images()
                .iter()
                .find(|image| image.info().session_id == session)
                .is_none_or(|image| image.is_end_of_stream() || image.is_closed())
    }
}
