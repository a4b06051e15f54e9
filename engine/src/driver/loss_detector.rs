//! When to ask for a gap again: the receiver's NAK timing for one image (Aeron's `LossDetector`
//! and feedback delay generators), sans-IO.
//!
//! The receiver scans its image for the first gap ([`crate::logbuffer::term_gap_scanner`]) and
//! hands the result here with the time. A new gap starts a timer; when it expires the detector
//! answers with the gap to NAK and restarts the timer for a retry, until the gap is filled or
//! another takes its place. Unicast waits a short fixed delay and retries at a fixed interval;
//! multicast draws each delay at random from a truncated exponential (RFC 5401's feedback
//! suppression), so that of many receivers missing the same frames few NAK before the
//! retransmission fills the gap for all. Owned by the receiver agent; no clock, no socket.

use crate::logbuffer::term_gap_scanner::Gap;

/// How long to wait before a NAK and between retries.
#[derive(Debug, Clone, PartialEq)]
pub enum FeedbackDelay {
    /// Fixed delays (unicast).
    Static {
        /// Before the first NAK of a gap.
        initial_ns: i64,
        /// Between NAKs of a gap that stays.
        retry_ns: i64,
    },
    /// Random delays up to `max_ns`, shaped for a group of about `group_size` receivers
    /// (multicast), drawn from a generator seeded by the caller.
    Optimal {
        /// The longest delay.
        max_ns: i64,
        /// The estimated number of receivers.
        group_size: u32,
        /// The generator's state (xorshift64*; never zero).
        state: u64,
    },
}

impl FeedbackDelay {
    /// Aeron's unicast delays: 100 µs, then every 10 ms.
    pub fn unicast() -> Self {
        Self::Static {
            initial_ns: 100_000,
            retry_ns: 10_000_000,
        }
    }

    /// Aeron's multicast delays (at most 10 ms, a group of 10), from `seed` (each seed its own
    /// sequence).
    pub fn multicast(seed: u64) -> Self {
        // A splitmix64 step spreads nearby seeds apart; xorshift needs a non-zero state.
        let mut mixed = seed.wrapping_add(0x9E37_79B9_7F4A_7C15);
        mixed = (mixed ^ (mixed >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        mixed = (mixed ^ (mixed >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        Self::Optimal {
            max_ns: 10_000_000,
            group_size: 10,
            state: (mixed ^ (mixed >> 31)) | 1,
        }
    }

    /// The next delay (for a sender's retransmission: the same draw as a first NAK's).
    pub fn next_delay(&mut self) -> i64 {
        self.initial()
    }

    fn initial(&mut self) -> i64 {
        match self {
            Self::Static { initial_ns, .. } => *initial_ns,
            Self::Optimal { .. } => self.random_delay(),
        }
    }

    fn retry(&mut self) -> i64 {
        match self {
            Self::Static { retry_ns, .. } => *retry_ns,
            Self::Optimal { .. } => self.random_delay(),
        }
    }

    /// A draw from the truncated exponential on [0, max): t = (max / λ) · ln(1 + u (e^λ − 1)),
    /// λ = ln(group) + 1, u uniform on [0, 1). Delays lean towards the maximum, so the first
    /// receiver to NAK is rarely joined by the others before the repair arrives.
    fn random_delay(&mut self) -> i64 {
        let Self::Optimal {
            max_ns,
            group_size,
            state,
        } = self
        else {
            return 0;
        };
        *state ^= *state >> 12;
        *state ^= *state << 25;
        *state ^= *state >> 27;
        // The top 53 bits of xorshift64* make a uniform double in [0, 1) exactly.
        let uniform =
            (state.wrapping_mul(0x2545_F491_4F6C_DD1D) >> 11) as f64 / (1u64 << 53) as f64;
        let lambda = f64::from((*group_size).max(1)).ln() + 1.0;
        let delay = (*max_ns as f64 / lambda) * (uniform * lambda.exp_m1()).ln_1p();
        // The draw lies in [0, max_ns), which fits i64: the cast cannot truncate.
        #[allow(clippy::cast_possible_truncation)]
        let delay = delay as i64;
        delay.clamp(0, *max_ns)
    }
}

/// The gap being timed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Timed {
    gap: Gap,
    deadline_ns: i64,
}

/// NAK timing for one image.
#[derive(Debug, Clone, PartialEq)]
pub struct LossDetector {
    delay: FeedbackDelay,
    timed: Option<Timed>,
}

impl LossDetector {
    /// A detector with `delay`.
    pub fn new(delay: FeedbackDelay) -> Self {
        Self { delay, timed: None }
    }

    /// The first gap of the latest scan (`None` when the image is complete up to its
    /// high-water mark), at `now_ns`: returns the gap to NAK now, if its timer expired.
    pub fn on_scan(&mut self, gap: Option<Gap>, now_ns: i64) -> Option<Gap> {
        let Some(gap) = gap else {
            self.timed = None;
            return None;
        };
        let same_start = self.timed.is_some_and(|timed| {
            timed.gap.term_id == gap.term_id && timed.gap.term_offset == gap.term_offset
        });
        if !same_start {
            let deadline_ns = now_ns.saturating_add(self.delay.initial());
            self.timed = Some(Timed { gap, deadline_ns });
        }
        let timed = self.timed.as_mut()?;
        // The same gap may have shrunk (its end filled) or grown (more sent after it).
        timed.gap = gap;
        if now_ns < timed.deadline_ns {
            return None;
        }
        timed.deadline_ns = now_ns.saturating_add(self.delay.retry());
        Some(gap)
    }

    /// When the next NAK is due, if a gap is being timed: the receiver's next deadline.
    pub fn deadline_ns(&self) -> Option<i64> {
        self.timed.map(|timed| timed.deadline_ns)
    }
}
