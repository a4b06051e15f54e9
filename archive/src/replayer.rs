//! Replay: a recording read back from its segment files into an exclusive publication placed
//! where the recording's frames lie, so a replayed stream's positions are the original's.
//!
//! A [`ReplaySession`] waits for its publication to connect (up to a timeout), then each duty
//! cycle reads a block of checked frames ([`SegmentReader`]) up to its limit and offers it whole
//! ([`ExclusivePublication::offer_block`]); a back-pressured block is read again next cycle.
//! Its limit is the start plus the length asked, or, for a replay that follows a live
//! recording, wherever the recording has got to, until the recording stops. A frame that fails
//! its checks ends the replay with an error naming the recording and position: nothing
//! corrupt is replayed.
//!
//! Memory and threads: owned by the archive agent and run on its thread; the reader's buffer
//! is allocated when the replay starts.

use std::time::Duration;

use tern_engine::client::{ExclusivePublication, OfferResult};

use crate::error::SegmentError;
use crate::segment::FrameFault;
use crate::segment_reader::SegmentReader;

/// How long a replay waits for a subscriber before it gives up.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// Where a replay stands.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReplayState {
    /// Waiting for a subscriber since the given time (ns).
    Connecting {
        /// When it started waiting.
        since_ns: i64,
    },
    /// Replaying.
    Replaying,
    /// Finished: everything asked was replayed.
    Done,
    /// Ended early, and why.
    Failed(String),
}

/// How far the recording has got, as the archive tells a replay each cycle.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RecordedExtent {
    /// Everything below this is recorded.
    pub position: i64,
    /// Whether the recording is still going.
    pub active: bool,
}

/// One replay.
#[derive(Debug)]
pub struct ReplaySession {
    /// The replay's id (a control client stops it by this).
    pub replay_session_id: i64,
    /// The control session that asked for it.
    pub control_session_id: i64,
    /// The request's correlation id.
    pub correlation_id: i64,
    /// The recording replayed.
    pub recording_id: i64,
    reader: SegmentReader,
    publication: ExclusivePublication,
    /// The end asked (exclusive); `i64::MAX` follows the recording while it is live.
    limit: i64,
    state: ReplayState,
}

impl ReplaySession {
    /// A replay of `reader`'s recording from its position up to `limit`, into `publication`,
    /// starting at `now_ns`.
    pub fn new(
        ids: (i64, i64, i64, i64),
        reader: SegmentReader,
        publication: ExclusivePublication,
        limit: i64,
        now_ns: i64,
    ) -> Self {
        let (replay_session_id, control_session_id, correlation_id, recording_id) = ids;
        debug_assert_eq!(publication.position(), reader.position());
        Self {
            replay_session_id,
            control_session_id,
            correlation_id,
            recording_id,
            reader,
            publication,
            limit,
            state: ReplayState::Connecting { since_ns: now_ns },
        }
    }

    /// Where it stands.
    pub fn state(&self) -> &ReplayState {
        &self.state
    }

    /// Whether it has ended (done or failed).
    pub fn is_finished(&self) -> bool {
        matches!(self.state, ReplayState::Done | ReplayState::Failed(_))
    }

    /// The position replayed up to.
    pub fn position(&self) -> i64 {
        self.reader.position()
    }

    /// Ends it now (a stop request, or the recording is being removed).
    pub fn abort(&mut self, reason: &str) {
        if !self.is_finished() {
            self.state = ReplayState::Failed(reason.to_owned());
        }
    }

    /// One duty cycle at `now_ns`, the recording being as `recorded` says. Returns work done.
    pub fn do_work(&mut self, now_ns: i64, recorded: RecordedExtent) -> usize {
        match self.state {
            ReplayState::Connecting { since_ns } => {
                if self.publication.is_connected() {
                    self.state = ReplayState::Replaying;
                    return 1;
                }
                let timeout_ns = i64::try_from(CONNECT_TIMEOUT.as_nanos()).unwrap_or(i64::MAX);
                if now_ns - since_ns > timeout_ns {
                    self.state = ReplayState::Failed(format!(
                        "no subscriber connected within {CONNECT_TIMEOUT:?}"
                    ));
                    return 1;
                }
                0
            }
            ReplayState::Replaying => self.replay(now_ns, recorded),
            ReplayState::Done | ReplayState::Failed(_) => 0,
        }
    }

    fn replay(&mut self, now_ns: i64, recorded: RecordedExtent) -> usize {
        let limit = self.limit.min(recorded.position);
        let position = self.reader.position();
        if position >= self.limit || (position >= recorded.position && !recorded.active) {
            self.state = ReplayState::Done;
            return 1;
        }
        let block = match self.reader.read(limit) {
            Ok(Some(block)) => block,
            Ok(None) => return 0,
            Err(SegmentError::Frame {
                fault: FrameFault::Truncated { available, .. },
                position,
                ..
            }) if limit == self.limit
                && position + i64::try_from(available).unwrap_or(i64::MAX) == limit =>
            {
                // The length asked ends inside a frame: the replay ends before it.
                self.state = ReplayState::Done;
                return 1;
            }
            Err(error) => {
                tracing::error!(%error, replay_session_id = self.replay_session_id, "replay stopped");
                self.state = ReplayState::Failed(error.to_string());
                return 1;
            }
        };
        let next = block.next_position;
        match self.publication.offer_block(block.bytes) {
            Ok(OfferResult::Ok(_)) => {
                self.reader.advance_to(next);
                1
            }
            Ok(OfferResult::BackPressured | OfferResult::AdminAction) => 0,
            Ok(OfferResult::NotConnected) => {
                // The subscriber left: wait for one again, as at the start, then give up.
                self.state = ReplayState::Connecting { since_ns: now_ns };
                1
            }
            Ok(other) => {
                self.state =
                    ReplayState::Failed(format!("the replay publication refused: {other:?}"));
                1
            }
            Err(error) => {
                // The reader checked every frame, so this is a bug, not bad data: say so loudly.
                tracing::error!(%error, replay_session_id = self.replay_session_id, "a checked block was refused");
                self.state = ReplayState::Failed(format!("block refused: {error}"));
                1
            }
        }
    }
}
