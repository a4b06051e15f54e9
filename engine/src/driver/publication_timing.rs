//! When a network publication sends what is not data: SETUP until a receiver answers,
//! heartbeats when idle, and whether it is still connected (Aeron's `NetworkPublication`
//! timing, `../shared/reference/aeron.md` §1), sans-IO.
//!
//! The sender agent asks [`PublicationTiming::poll`] each duty cycle with the time and whether
//! data went out since; it answers what control frame is due. Status messages and data sent are
//! reported as they happen. Owned by the sender agent; no clock, no socket.

/// Timings, configurable per driver.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timings {
    /// SETUP is repeated this often until the first status message (Aeron: 100 ms).
    pub setup_interval_ns: i64,
    /// A heartbeat goes out after this long without data (Aeron: 100 ms).
    pub heartbeat_interval_ns: i64,
    /// Without a status message this long the publication is not connected (Aeron: 5 s).
    pub connection_timeout_ns: i64,
}

impl Default for Timings {
    fn default() -> Self {
        Self {
            setup_interval_ns: 100_000_000,
            heartbeat_interval_ns: 100_000_000,
            connection_timeout_ns: 5_000_000_000,
        }
    }
}

/// A control frame due now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Due {
    /// Send SETUP (no receiver has answered, or one asked for it).
    Setup,
    /// Send a heartbeat: a DATA frame of no payload at the sender position (B|E; EOS when the
    /// publication has ended and drained).
    Heartbeat,
}

/// The timing state of one network publication.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PublicationTiming {
    timings: Timings,
    /// A status message has arrived since the start.
    answered: bool,
    /// A receiver asked for SETUP (it saw data of a session it does not know).
    setup_requested: bool,
    next_setup_ns: i64,
    last_data_ns: i64,
    last_status_ns: Option<i64>,
}

impl PublicationTiming {
    /// A publication made at `now_ns`: its first SETUP is due at once.
    pub fn new(timings: Timings, now_ns: i64) -> Self {
        Self {
            timings,
            answered: false,
            setup_requested: false,
            next_setup_ns: now_ns,
            last_data_ns: now_ns,
            last_status_ns: None,
        }
    }

    /// A status message arrived; `send_setup` when the receiver asked for SETUP (it saw data
    /// for a session it does not know).
    pub fn on_status_message(&mut self, send_setup: bool, now_ns: i64) {
        self.last_status_ns = Some(now_ns);
        self.answered = true;
        if send_setup && !self.setup_requested {
            self.setup_requested = true;
            self.next_setup_ns = now_ns;
        }
    }

    /// A receiver asked for SETUP (it saw data of a session it has no image for): SETUP goes
    /// out at the next poll, without counting as an answer (the asking receiver is not
    /// connected yet).
    pub fn on_setup_requested(&mut self, now_ns: i64) {
        if !self.setup_requested {
            self.setup_requested = true;
            self.next_setup_ns = now_ns;
        }
    }

    /// Data (or a retransmission) went out.
    pub fn on_data_sent(&mut self, now_ns: i64) {
        self.last_data_ns = now_ns;
    }

    /// The control frame due at `now_ns`, if any; taking it schedules the next one.
    pub fn poll(&mut self, now_ns: i64) -> Option<Due> {
        if (!self.answered || self.setup_requested) && now_ns >= self.next_setup_ns {
            self.setup_requested = false;
            self.next_setup_ns = now_ns.saturating_add(self.timings.setup_interval_ns);
            return Some(Due::Setup);
        }
        if !self.answered {
            return None;
        }
        if now_ns - self.last_data_ns >= self.timings.heartbeat_interval_ns {
            self.last_data_ns = now_ns;
            return Some(Due::Heartbeat);
        }
        None
    }

    /// Whether a receiver has been heard from within the connection timeout.
    pub fn is_connected(&self, now_ns: i64) -> bool {
        self.last_status_ns
            .is_some_and(|last| now_ns - last <= self.timings.connection_timeout_ns)
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;

    const MS: i64 = 1_000_000;

    #[test]
    fn setup_repeats_until_a_status_message_then_heartbeats_fill_silence() {
        let mut timing = PublicationTiming::new(Timings::default(), 0);
        assert_eq!(timing.poll(0), Some(Due::Setup), "at once");
        assert_eq!(timing.poll(99 * MS), None);
        assert_eq!(timing.poll(100 * MS), Some(Due::Setup), "every 100 ms");
        assert!(!timing.is_connected(150 * MS));
        timing.on_status_message(false, 150 * MS);
        assert!(timing.is_connected(150 * MS));
        assert_eq!(
            timing.poll(200 * MS),
            Some(Due::Heartbeat),
            "100 ms without data"
        );
        timing.on_data_sent(250 * MS);
        assert_eq!(timing.poll(349 * MS), None, "data counts as a heartbeat");
        assert_eq!(timing.poll(350 * MS), Some(Due::Heartbeat));
        assert!(timing.is_connected(5_150 * MS));
        assert!(
            !timing.is_connected(5_151 * MS),
            "5 s without a status message"
        );
    }

    #[test]
    fn a_receiver_asking_for_setup_gets_it_at_once() {
        let mut timing = PublicationTiming::new(Timings::default(), 0);
        assert_eq!(timing.poll(0), Some(Due::Setup));
        timing.on_status_message(false, 10 * MS);
        timing.on_status_message(true, 20 * MS);
        assert_eq!(timing.poll(20 * MS), Some(Due::Setup));
        assert_eq!(timing.poll(21 * MS), None);
        assert_eq!(
            timing.poll(130 * MS),
            Some(Due::Heartbeat),
            "heartbeats go on"
        );
        timing.on_status_message(false, 140 * MS);
        assert_eq!(timing.poll(141 * MS), None, "answered: no more SETUP");
    }
}
