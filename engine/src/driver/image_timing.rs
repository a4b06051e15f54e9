//! When a publication image sends status messages and when it is gone (Aeron's
//! `PublicationImage` timing, `../shared/reference/aeron.md` §1 and §5), sans-IO.
//!
//! A status message tells the sender how far the image's subscribers have consumed and how much
//! more it may send (the receiver window). One goes out when consumption has moved a quarter of
//! the window since the last, when the window changed, or every 200 ms regardless; an image
//! that receives nothing for 10 s is no longer live. Owned by the receiver agent.

/// Timings, configurable per driver.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timings {
    /// A status message at least this often (Aeron: 200 ms).
    pub status_interval_ns: i64,
    /// Without any packet this long the image goes away (Aeron: 10 s).
    pub liveness_timeout_ns: i64,
}

impl Default for Timings {
    fn default() -> Self {
        Self {
            status_interval_ns: 200_000_000,
            liveness_timeout_ns: 10_000_000_000,
        }
    }
}

/// The receiver window for a term length: `min(128 KiB, term / 2)` (Aeron's default).
pub fn receiver_window(term_length: u32) -> u32 {
    (128 * 1024).min(term_length / 2)
}

/// The status-message and liveness timing of one image.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImageTiming {
    timings: Timings,
    window: u32,
    /// Consumption position and window of the last status message sent, if any.
    last_sent: Option<(i64, u32)>,
    last_status_ns: i64,
    last_packet_ns: i64,
}

impl ImageTiming {
    /// An image made at `now_ns` with receiver window `window`: its first status message is
    /// due at once.
    pub fn new(timings: Timings, window: u32, now_ns: i64) -> Self {
        Self {
            timings,
            window,
            last_sent: None,
            last_status_ns: now_ns,
            last_packet_ns: now_ns,
        }
    }

    /// A packet for this image arrived.
    pub fn on_packet(&mut self, now_ns: i64) {
        self.last_packet_ns = now_ns;
    }

    /// The window changed (congestion control).
    pub fn set_window(&mut self, window: u32) {
        self.window = window;
    }

    /// Whether a status message is due at `now_ns` for subscribers consumed up to
    /// `consumption_position`; when it is, returns the window to advertise and counts it sent.
    pub fn poll(&mut self, consumption_position: i64, now_ns: i64) -> Option<u32> {
        let due = match self.last_sent {
            None => true,
            Some((position, window)) => {
                consumption_position - position >= i64::from(window / 4)
                    || window != self.window
                    || now_ns - self.last_status_ns >= self.timings.status_interval_ns
            }
        };
        if !due {
            return None;
        }
        self.last_sent = Some((consumption_position, self.window));
        self.last_status_ns = now_ns;
        Some(self.window)
    }

    /// Whether a packet arrived within the liveness timeout.
    pub fn is_live(&self, now_ns: i64) -> bool {
        now_ns - self.last_packet_ns <= self.timings.liveness_timeout_ns
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;

    const MS: i64 = 1_000_000;

    #[test]
    fn status_messages_follow_consumption_window_changes_and_the_interval() {
        assert_eq!(receiver_window(64 * 1024), 32 * 1024);
        assert_eq!(receiver_window(16 << 20), 128 * 1024);
        let window = receiver_window(16 << 20);
        let mut timing = ImageTiming::new(Timings::default(), window, 0);
        assert_eq!(timing.poll(0, 0), Some(window), "at once");
        assert_eq!(
            timing.poll(32 * 1024 - 32, 1),
            None,
            "less than a quarter window"
        );
        assert_eq!(timing.poll(32 * 1024, 2), Some(window), "a quarter");
        timing.set_window(64 * 1024);
        assert_eq!(
            timing.poll(32 * 1024, 3),
            Some(64 * 1024),
            "the window changed"
        );
        assert_eq!(timing.poll(32 * 1024, 199 * MS), None);
        assert_eq!(
            timing.poll(32 * 1024, 203 * MS),
            Some(64 * 1024),
            "every 200 ms"
        );
    }

    #[test]
    fn an_image_is_live_until_ten_silent_seconds() {
        let mut timing = ImageTiming::new(Timings::default(), 1024, 0);
        timing.on_packet(5_000 * MS);
        assert!(timing.is_live(15_000 * MS));
        assert!(!timing.is_live(15_001 * MS));
    }
}
