//! How far a network publication may send: its sender limit, from the receivers' status messages
//! (Aeron's flow control strategies, `fc=`), sans-IO.
//!
//! | strategy | the limit follows |
//! |---|---|
//! | unicast | the one receiver's right edge (consumption position + window) |
//! | max (multicast default) | the fastest receiver |
//! | min | the slowest receiver heard from within the receiver timeout |
//! | tagged | the slowest receiver carrying the group tag (others are ignored) |
//!
//! A status message is input from the network: its position is clamped to what was sent (a
//! receiver cannot have consumed more) and its window to the publication's maximum, so no
//! receiver can widen the window past the term or move the limit beyond what it could read.
//! Receivers are tracked in a table of fixed capacity allocated up front; a status message from
//! one more receiver than fits is not tracked (and counted by the caller). Owned by the sender
//! agent; no clock, no socket.

use tern_codec::frame::{StatusMessage, status_flags};

/// The strategy, from the channel's `fc=` parameter.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Strategy {
    /// One receiver.
    Unicast,
    /// The fastest receiver.
    Max,
    /// The slowest receiver; connected once `group_min_size` are tracked.
    Min {
        /// Receivers required.
        group_min_size: u32,
    },
    /// The slowest receiver with this group tag; connected once `group_min_size` are tracked.
    Tagged {
        /// The tag.
        group_tag: i64,
        /// Receivers required.
        group_min_size: u32,
    },
}

/// Limits that hold whatever the receivers say.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// The term id at position 0.
    pub initial_term_id: i32,
    /// The term length (a power of two).
    pub term_length: u32,
    /// The largest receiver window honoured (at most half a term).
    pub max_window: u32,
    /// A receiver not heard from this long is dropped (min and tagged).
    pub receiver_timeout_ns: i64,
    /// Receivers tracked at most.
    pub max_receivers: usize,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Receiver {
    receiver_id: i64,
    right_edge: i64,
    last_heard_ns: i64,
}

/// What a status message did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// The sender limit now.
    Limit(i64),
    /// Not counted: another tag (tagged), or the table of receivers is full.
    Untracked,
}

/// A publication's flow control.
#[derive(Debug, Clone, PartialEq)]
pub struct FlowControl {
    strategy: Strategy,
    limits: Limits,
    receivers: Vec<Receiver>,
    limit: i64,
}

impl FlowControl {
    /// Flow control by `strategy` within `limits`, starting with the limit at `initial_limit`.
    pub fn new(strategy: Strategy, limits: Limits, initial_limit: i64) -> Self {
        Self {
            strategy,
            limits,
            receivers: Vec::with_capacity(limits.max_receivers),
            limit: initial_limit,
        }
    }

    /// The sender limit.
    pub fn limit(&self) -> i64 {
        self.limit
    }

    /// Receivers tracked now.
    pub fn receivers(&self) -> usize {
        self.receivers.len()
    }

    /// Whether enough receivers are tracked for the publication to count as connected (tagged:
    /// its group's minimum size; otherwise always).
    pub fn has_required_receivers(&self) -> bool {
        match self.strategy {
            Strategy::Tagged { group_min_size, .. } | Strategy::Min { group_min_size } => {
                self.receivers.len() >= usize::try_from(group_min_size).unwrap_or(usize::MAX)
            }
            _ => true,
        }
    }

    /// A status message arrived at `now_ns`; `sent_position` is how far the publication sent.
    pub fn on_status_message(
        &mut self,
        message: &StatusMessage,
        sent_position: i64,
        now_ns: i64,
    ) -> Outcome {
        if let Strategy::Tagged { group_tag, .. } = self.strategy
            && message.group_tag != Some(group_tag)
        {
            return Outcome::Untracked;
        }
        if message.flags & status_flags::END_OF_STREAM != 0 {
            // The receiver is leaving: it holds nobody back from now on.
            self.receivers
                .retain(|receiver| receiver.receiver_id != message.receiver_id);
            return Outcome::Limit(self.limit);
        }
        let right_edge = self.right_edge(message, sent_position);
        match self.strategy {
            Strategy::Unicast => self.limit = self.limit.max(right_edge),
            Strategy::Max => self.limit = self.limit.max(right_edge),
            Strategy::Min { .. } | Strategy::Tagged { .. } => {
                let tracked = self.receivers.len();
                // A receiver joining far behind the limit (more than a window) is not let pull
                // it back: it catches up, or is left behind, as Aeron admits receivers.
                let admissible =
                    tracked == 0 || right_edge >= self.limit - i64::from(self.limits.max_window);
                match self
                    .receivers
                    .iter_mut()
                    .find(|receiver| receiver.receiver_id == message.receiver_id)
                {
                    Some(receiver) => {
                        receiver.right_edge = receiver.right_edge.max(right_edge);
                        receiver.last_heard_ns = now_ns;
                    }
                    None if tracked < self.limits.max_receivers && admissible => {
                        self.receivers.push(Receiver {
                            receiver_id: message.receiver_id,
                            right_edge,
                            last_heard_ns: now_ns,
                        });
                    }
                    None => return Outcome::Untracked,
                }
                // A status message never pulls the limit back: the slowest may only hold it.
                self.limit = self.limit.max(self.slowest().unwrap_or(self.limit));
            }
        }
        Outcome::Limit(self.limit)
    }

    /// Time passed: receivers silent past the timeout are dropped (min and tagged), and the
    /// limit follows the slowest of those left; with none left it stays where it was.
    pub fn on_idle(&mut self, now_ns: i64) -> i64 {
        let timeout = self.limits.receiver_timeout_ns;
        self.receivers
            .retain(|receiver| now_ns - receiver.last_heard_ns <= timeout);
        if let Some(slowest) = self.slowest() {
            self.limit = self.limit.max(slowest);
        }
        self.limit
    }

    fn slowest(&self) -> Option<i64> {
        self.receivers
            .iter()
            .map(|receiver| receiver.right_edge)
            .min()
    }

    /// The receiver's consumption position, at most what was sent, plus its window, at most
    /// the publication's maximum.
    fn right_edge(&self, message: &StatusMessage, sent_position: i64) -> i64 {
        let term_length = i64::from(self.limits.term_length);
        let terms = i64::from(
            message
                .consumption_term_id
                .wrapping_sub(self.limits.initial_term_id),
        );
        let offset = i64::from(message.consumption_term_offset.clamp(0, i32::MAX));
        let position = terms
            .saturating_mul(term_length)
            .saturating_add(offset.min(term_length))
            .clamp(0, sent_position.max(0));
        let window =
            i64::from(message.receiver_window.max(0)).min(i64::from(self.limits.max_window));
        position + window
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;

    const TERM: u32 = 64 * 1024;

    fn limits() -> Limits {
        Limits {
            initial_term_id: 10,
            term_length: TERM,
            max_window: TERM / 2,
            receiver_timeout_ns: 5_000_000_000,
            max_receivers: 4,
        }
    }

    fn status(receiver_id: i64, term_id: i32, offset: i32, window: i32) -> StatusMessage {
        StatusMessage {
            frame_length: 36,
            flags: 0,
            session_id: 1,
            stream_id: 2,
            consumption_term_id: term_id,
            consumption_term_offset: offset,
            receiver_window: window,
            receiver_id,
            group_tag: None,
        }
    }

    #[test]
    fn unicast_follows_the_right_edge_and_never_goes_back() {
        let mut flow = FlowControl::new(Strategy::Unicast, limits(), 0);
        let sent = 100_000;
        assert_eq!(
            flow.on_status_message(&status(1, 10, 4096, 8192), sent, 0),
            Outcome::Limit(4096 + 8192)
        );
        assert_eq!(
            flow.on_status_message(&status(1, 11, 0, 8192), sent, 1),
            Outcome::Limit(i64::from(TERM) + 8192)
        );
        assert_eq!(
            flow.on_status_message(&status(1, 10, 0, 8192), sent, 2),
            Outcome::Limit(i64::from(TERM) + 8192),
            "a stale status message does not pull the limit back"
        );
    }

    #[test]
    fn an_absurd_position_or_window_cannot_widen_the_limit() {
        let mut flow = FlowControl::new(Strategy::Unicast, limits(), 0);
        let sent = 10_000;
        // Consumed far past what was sent, with a huge window: clamped to sent + max window.
        let Outcome::Limit(limit) =
            flow.on_status_message(&status(1, i32::MAX, i32::MAX, i32::MAX), sent, 0)
        else {
            panic!("tracked");
        };
        assert_eq!(limit, sent + i64::from(TERM / 2));
        let mut flow = FlowControl::new(Strategy::Unicast, limits(), 0);
        assert_eq!(
            flow.on_status_message(&status(1, 10, -5, -9), sent, 0),
            Outcome::Limit(0),
            "negative offsets and windows count as nothing"
        );
        assert_eq!(
            flow.on_status_message(&status(1, i32::MIN, 0, -9), sent, 0),
            Outcome::Limit(sent),
            "a term id from nowhere reads as at most what was sent"
        );
    }

    #[test]
    fn max_follows_the_fastest_and_min_the_slowest_until_it_times_out() {
        let sent = 1_000_000;
        let mut max = FlowControl::new(Strategy::Max, limits(), 0);
        let mut min = FlowControl::new(Strategy::Min { group_min_size: 0 }, limits(), 0);
        for flow in [&mut max, &mut min] {
            flow.on_status_message(&status(1, 10, 1024, 1024), sent, 0);
            flow.on_status_message(&status(2, 10, 8192, 1024), sent, 0);
        }
        assert_eq!(max.limit(), 8192 + 1024);
        assert_eq!(min.limit(), 1024 + 1024);
        // The slow receiver falls silent; the fast one keeps reporting.
        min.on_status_message(&status(2, 10, 16384, 1024), sent, 4_000_000_000);
        assert_eq!(min.on_idle(5_000_000_000), 2048, "not yet timed out");
        assert_eq!(
            min.on_idle(5_000_000_001),
            16384 + 1024,
            "the silent one dropped"
        );
        assert_eq!(min.receivers(), 1);
    }

    #[test]
    fn min_is_not_pulled_back_by_a_late_joiner_or_a_departed_receiver() {
        let sent = 1_000_000;
        let mut min = FlowControl::new(Strategy::Min { group_min_size: 0 }, limits(), 0);
        min.on_status_message(&status(1, 10, 60_000, 1024), sent, 0);
        assert_eq!(min.limit(), 61_024);
        // A newcomer far behind (more than a window) is not admitted to hold the limit back.
        assert_eq!(
            min.on_status_message(&status(2, 10, 0, 1024), sent, 1),
            Outcome::Untracked
        );
        assert_eq!(min.limit(), 61_024);
        // One within a window joins and holds it where it is, never pulling it back.
        min.on_status_message(&status(3, 10, 40_000, 1024), sent, 2);
        assert_eq!(min.limit(), 61_024);
        min.on_status_message(&status(1, 10, 64_000, 1024), sent, 3);
        assert_eq!(min.limit(), 61_024, "the slowest holds it");
        // The slow one leaves (EOS): the limit follows the rest.
        let leaving = StatusMessage {
            flags: status_flags::END_OF_STREAM,
            ..status(3, 10, 40_000, 1024)
        };
        min.on_status_message(&leaving, sent, 4);
        assert_eq!(min.receivers(), 1);
        min.on_status_message(&status(1, 10, 64_000, 1024), sent, 5);
        assert_eq!(min.limit(), 65_024);
    }

    #[test]
    fn tagged_counts_only_its_group_and_the_table_is_bounded() {
        let sent = 1_000_000;
        let mut flow = FlowControl::new(
            Strategy::Tagged {
                group_tag: 7,
                group_min_size: 2,
            },
            limits(),
            0,
        );
        let tagged = |id, offset| StatusMessage {
            group_tag: Some(7),
            ..status(id, 10, offset, 1024)
        };
        assert_eq!(
            flow.on_status_message(&status(9, 10, 0, 1024), sent, 0),
            Outcome::Untracked,
            "no tag"
        );
        let other_group = StatusMessage {
            group_tag: Some(8),
            ..status(9, 10, 0, 1024)
        };
        assert_eq!(
            flow.on_status_message(&other_group, sent, 0),
            Outcome::Untracked
        );
        assert!(!flow.has_required_receivers());
        for id in 0..4 {
            assert!(matches!(
                flow.on_status_message(
                    &tagged(id, 4096 + i32::try_from(id).unwrap() * 32),
                    sent,
                    0
                ),
                Outcome::Limit(_)
            ));
        }
        assert_eq!(flow.limit(), 4096 + 1024);
        assert!(flow.has_required_receivers());
        assert_eq!(
            flow.on_status_message(&tagged(99, 0), sent, 0),
            Outcome::Untracked,
            "a fifth receiver does not fit"
        );
        assert_eq!(flow.receivers(), 4);
    }
}
