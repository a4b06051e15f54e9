//! The sender's answers to NAKs: which ranges of a network publication to send again, and when
//! (Aeron's `RetransmitHandler`), sans-IO.
//!
//! A NAK names a range of the term buffer. The handler checks it against what the publication
//! has sent and can still send (a receiver is input, and may be hostile or confused), merges it
//! with the ranges already being answered, and schedules it: unicast at once, multicast after a
//! random delay so that NAKs from many receivers for one loss meet one retransmission. After a
//! range is sent, overlapping NAKs are ignored for a linger (the repair is on its way), and the
//! bytes retransmitted per interval are capped, so no receiver can make the sender resend more
//! than it chooses. Owned by the sender agent; no clock, no socket.

use super::loss_detector::FeedbackDelay;

/// A range of a term to send again.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Retransmit {
    /// The term.
    pub term_id: i32,
    /// Where the range starts.
    pub term_offset: u32,
    /// How long it is.
    pub length: u32,
}

/// Why a NAK was not acted on (counted by the sender).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ignored {
    /// The range is not one the publication has sent and still holds, or is malformed.
    OutOfWindow,
    /// A retransmission of an overlapping range is pending or lingering.
    Overlapping,
    /// Every slot for a pending retransmission is taken.
    Busy,
    /// This interval's retransmission budget is spent.
    OverBudget,
}

/// Limits and timing.
#[derive(Debug, Clone, PartialEq)]
pub struct RetransmitConfig {
    /// Before a retransmission (zero for unicast).
    pub delay: Option<FeedbackDelay>,
    /// After one, overlapping NAKs are ignored this long.
    pub linger_ns: i64,
    /// Retransmissions pending or lingering at once (Aeron C: 16).
    pub max_actions: usize,
    /// The most bytes retransmitted per interval.
    pub budget_bytes: u64,
    /// The interval of the budget.
    pub budget_interval_ns: i64,
}

impl RetransmitConfig {
    /// Aeron C's unicast behaviour (at once, up to 16 ranges pending or lingering, each
    /// lingering 10 ms), with a budget of `budget_bytes` per millisecond.
    pub fn unicast(budget_bytes: u64) -> Self {
        Self {
            delay: None,
            linger_ns: 10_000_000,
            max_actions: 16,
            budget_bytes,
            budget_interval_ns: 1_000_000,
        }
    }

    /// Aeron's multicast behaviour (up to 16, after a random delay from `seed`).
    pub fn multicast(budget_bytes: u64, seed: u64) -> Self {
        Self {
            delay: Some(FeedbackDelay::multicast(seed)),
            linger_ns: 10_000_000,
            max_actions: 16,
            budget_bytes,
            budget_interval_ns: 1_000_000,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Delayed { due_ns: i64 },
    Lingering { until_ns: i64 },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Action {
    range: Retransmit,
    state: State,
}

/// What the sender has sent and still holds: the window NAKs must fall in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SentWindow {
    /// The term id at position 0.
    pub initial_term_id: i32,
    /// The term length (a power of two).
    pub term_length: u32,
    /// How far the sender has sent.
    pub sent_position: i64,
}

impl SentWindow {
    /// The stream positions of `nak`'s range, if it lies inside one term, within the last term
    /// length sent (older bytes may already be overwritten by the publisher).
    fn positions(&self, nak: Retransmit) -> Option<(i64, i64)> {
        let term_length = i64::from(self.term_length);
        let offset = i64::from(nak.term_offset);
        let length = i64::from(nak.length);
        if length == 0 || offset + length > term_length || offset % 32 != 0 {
            return None;
        }
        let terms = i64::from(nak.term_id.wrapping_sub(self.initial_term_id));
        if terms < 0 {
            return None;
        }
        let start = terms.checked_mul(term_length)?.checked_add(offset)?;
        let end = start + length;
        let oldest = self.sent_position - term_length;
        (start >= oldest.max(0) && end <= self.sent_position).then_some((start, end))
    }
}

/// The sender's retransmissions for one publication.
#[derive(Debug, Clone, PartialEq)]
pub struct RetransmitHandler {
    config: RetransmitConfig,
    actions: Vec<Action>,
    interval_start_ns: i64,
    interval_bytes: u64,
}

impl RetransmitHandler {
    /// A handler with `config`, its slots allocated now.
    pub fn new(config: RetransmitConfig) -> Self {
        let actions = Vec::with_capacity(config.max_actions);
        Self {
            config,
            actions,
            interval_start_ns: 0,
            interval_bytes: 0,
        }
    }

    /// A NAK arrived at `now_ns`: the range to send at once, if any (unicast), or why nothing
    /// is sent. A delayed range comes out of [`RetransmitHandler::poll`] when due.
    pub fn on_nak(
        &mut self,
        nak: Retransmit,
        window: &SentWindow,
        now_ns: i64,
    ) -> Result<Option<Retransmit>, Ignored> {
        self.expire(now_ns);
        let Some((start, end)) = window.positions(nak) else {
            return Err(Ignored::OutOfWindow);
        };
        let overlaps = self.actions.iter().any(|action| {
            window
                .positions(action.range)
                .is_some_and(|(other_start, other_end)| start < other_end && other_start < end)
        });
        if overlaps {
            return Err(Ignored::Overlapping);
        }
        if self.actions.len() >= self.config.max_actions {
            return Err(Ignored::Busy);
        }
        match self.config.delay.as_mut() {
            None => {
                let range = self.spend(nak, now_ns)?;
                self.actions.push(Action {
                    range,
                    state: State::Lingering {
                        until_ns: now_ns.saturating_add(self.config.linger_ns),
                    },
                });
                Ok(Some(range))
            }
            Some(delay) => {
                let due_ns = now_ns.saturating_add(delay.next_delay());
                self.actions.push(Action {
                    range: nak,
                    state: State::Delayed { due_ns },
                });
                Ok(None)
            }
        }
    }

    /// The next delayed range due at `now_ns`, if any (call until `None`). A range is checked
    /// against `window` again (the sender may have moved on while it waited) and shortened to
    /// the budget; one that no longer fits either is dropped, and the receiver asks again.
    pub fn poll(&mut self, window: &SentWindow, now_ns: i64) -> Option<Retransmit> {
        self.expire(now_ns);
        loop {
            let index = self.actions.iter().position(
                |action| matches!(action.state, State::Delayed { due_ns } if due_ns <= now_ns),
            )?;
            let range = self.actions[index].range;
            let sendable = window
                .positions(range)
                .ok_or(Ignored::OutOfWindow)
                .and_then(|_| self.spend(range, now_ns));
            let Ok(range) = sendable else {
                self.actions.swap_remove(index);
                continue;
            };
            self.actions[index] = Action {
                range,
                state: State::Lingering {
                    until_ns: now_ns.saturating_add(self.config.linger_ns),
                },
            };
            return Some(range);
        }
    }

    /// Ranges pending or lingering.
    pub fn active(&self) -> usize {
        self.actions.len()
    }

    fn expire(&mut self, now_ns: i64) {
        self.actions.retain(
            |action| !matches!(action.state, State::Lingering { until_ns } if until_ns <= now_ns),
        );
    }

    /// Takes `range` out of this interval's budget, shortened (to the frame alignment) to
    /// what is left of it, as Aeron shortens a resend: a loss larger than the budget is repaired
    /// in parts, the receiver asking for the rest.
    fn spend(&mut self, range: Retransmit, now_ns: i64) -> Result<Retransmit, Ignored> {
        if now_ns - self.interval_start_ns >= self.config.budget_interval_ns {
            self.interval_start_ns = now_ns;
            self.interval_bytes = 0;
        }
        let left = self.config.budget_bytes.saturating_sub(self.interval_bytes);
        let length = u64::from(range.length).min(left) & !31;
        if length == 0 {
            return Err(Ignored::OverBudget);
        }
        self.interval_bytes += length;
        Ok(Retransmit {
            length: u32::try_from(length).unwrap_or(range.length),
            ..range
        })
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;

    const TERM: u32 = 64 * 1024;

    fn window(sent_position: i64) -> SentWindow {
        SentWindow {
            initial_term_id: 100,
            term_length: TERM,
            sent_position,
        }
    }

    fn nak(term_id: i32, term_offset: u32, length: u32) -> Retransmit {
        Retransmit {
            term_id,
            term_offset,
            length,
        }
    }

    #[test]
    fn unicast_answers_at_once_then_ignores_overlaps_for_its_linger() {
        let mut handler = RetransmitHandler::new(RetransmitConfig::unicast(1 << 20));
        let sent = window(4096);
        let range = nak(100, 1024, 512);
        assert_eq!(handler.on_nak(range, &sent, 0), Ok(Some(range)));
        // A storm of the same NAK (or an overlapping one) during the linger sends nothing more.
        for at in 1..1000 {
            assert_eq!(
                handler.on_nak(nak(100, 1280, 64), &sent, at * 1000),
                Err(Ignored::Overlapping)
            );
        }
        // Other ranges are answered, up to sixteen at once (Aeron C's pool).
        for index in 0..15 {
            let other = nak(100, index * 64, 64);
            assert_eq!(handler.on_nak(other, &sent, 1), Ok(Some(other)));
        }
        assert_eq!(
            handler.on_nak(nak(100, 2048, 64), &sent, 1),
            Err(Ignored::Busy)
        );
        assert_eq!(handler.active(), 16);
        assert_eq!(
            handler.on_nak(range, &sent, 10_000_000),
            Ok(Some(range)),
            "after it"
        );
    }

    #[test]
    fn a_nak_outside_what_was_sent_and_is_still_held_is_ignored() {
        let mut handler = RetransmitHandler::new(RetransmitConfig::unicast(1 << 30));
        // Sent a term and a half: term 100 is held from offset 32 K on, term 101 up to 32 K.
        let sent = window(i64::from(TERM) + i64::from(TERM / 2));
        for bad in [
            nak(101, 32 * 1024, 32),     // not sent yet
            nak(100, 0, 64),             // older than one term: may be overwritten
            nak(99, 0, 64),              // before the stream
            nak(101, 0, 0),              // empty
            nak(101, 0, TERM + 32),      // longer than a term
            nak(101, TERM - 32, 64),     // runs past the term's end
            nak(101, 16, 64),            // off the frame alignment
            nak(i32::MIN, 0, 64),        // a term id from nowhere
            nak(101, u32::MAX - 31, 32), // an offset past any term
        ] {
            assert_eq!(
                handler.on_nak(bad, &sent, 0),
                Err(Ignored::OutOfWindow),
                "{bad:?}"
            );
        }
        assert_eq!(handler.active(), 0);
        let good = nak(100, TERM / 2, 64);
        assert_eq!(handler.on_nak(good, &sent, 0), Ok(Some(good)));
    }

    #[test]
    fn retransmitted_bytes_per_interval_are_capped() {
        let mut config = RetransmitConfig::unicast(1024);
        config.max_actions = 16;
        config.linger_ns = 0;
        let mut handler = RetransmitHandler::new(config);
        let sent = window(i64::from(TERM));
        let mut answered = 0;
        for index in 0..16u32 {
            if let Ok(Some(_)) = handler.on_nak(nak(100, index * 256, 256), &sent, 10) {
                answered += 1;
            }
        }
        assert_eq!(answered, 4, "1 KiB per interval in 256-byte ranges");
        // A loss larger than the whole budget is repaired in parts, not refused for good.
        let big = nak(100, 16384, 4096);
        assert_eq!(
            handler.on_nak(big, &sent, 2_000_000),
            Ok(Some(Retransmit {
                length: 1024,
                ..big
            }))
        );
        assert_eq!(
            handler.on_nak(nak(100, 8192, 256), &sent, 999_999),
            Err(Ignored::OverBudget)
        );
        assert!(matches!(
            handler.on_nak(nak(100, 8192, 256), &sent, 3_000_010),
            Ok(Some(_))
        ));
    }

    #[test]
    fn a_delayed_repair_the_sender_has_moved_past_is_dropped() {
        let mut handler = RetransmitHandler::new(RetransmitConfig::multicast(1 << 20, 3));
        let range = nak(100, 0, 1024);
        assert_eq!(handler.on_nak(range, &window(8192), 0), Ok(None));
        // More than a term sent while it waited: its bytes may be overwritten.
        let moved = window(i64::from(TERM) + 4096);
        assert_eq!(handler.poll(&moved, 10_000_000), None);
        assert_eq!(handler.active(), 0);
    }

    #[test]
    fn multicast_waits_a_random_delay_and_one_repair_answers_every_receiver() {
        let mut handler = RetransmitHandler::new(RetransmitConfig::multicast(1 << 20, 7));
        let sent = window(8192);
        let range = nak(100, 0, 1024);
        assert_eq!(handler.on_nak(range, &sent, 0), Ok(None), "delayed");
        // The same loss NAKed by other receivers meanwhile: merged into the pending repair.
        assert_eq!(handler.on_nak(range, &sent, 5), Err(Ignored::Overlapping));
        let mut sent_at = None;
        for at in (0..=10_000_000).step_by(10_000) {
            if let Some(repair) = handler.poll(&sent, at) {
                assert_eq!(repair, range);
                sent_at = Some(at);
                break;
            }
        }
        let sent_at = sent_at.expect("sent within the maximum delay");
        assert_eq!(handler.poll(&sent, sent_at + 1), None, "once");
        for index in 1..16u32 {
            assert_eq!(
                handler.on_nak(nak(100, 1024 + index * 64, 64), &sent, sent_at + 1),
                Ok(None)
            );
        }
        assert_eq!(
            handler.on_nak(nak(100, 4096, 64), &sent, sent_at + 1),
            Err(Ignored::Busy),
            "16 at once"
        );
    }
}
