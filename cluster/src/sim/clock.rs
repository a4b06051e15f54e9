//! Simulated member clocks: each drifts at its own rate and can jump.
//!
//! A member's clock reads `simulated time × (1 + drift) + offset`. Drift is a few parts per
//! thousand at most (real oscillators are better; a bad one is what finds timeout bugs); a jump
//! moves the offset forwards (a stalled VM resuming, an NTP step) or backwards (an NTP step back).
//! The consensus core holds its time where it was when a clock steps back.

/// One member's clock.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Clock {
    /// Rate error, parts per million (positive runs fast).
    pub drift_ppm: i64,
    /// Accumulated jumps, nanoseconds.
    pub offset_ns: i64,
}

impl Clock {
    /// The member's reading at simulated time `now_ns`.
    pub fn read(&self, now_ns: u64) -> u64 {
        let now = i128::from(now_ns);
        let drifted =
            now + now * i128::from(self.drift_ppm) / 1_000_000 + i128::from(self.offset_ns);
        u64::try_from(drifted.max(0)).unwrap_or(u64::MAX)
    }

    /// Jumps the clock by `delta_ns` (negative steps back).
    pub fn jump(&mut self, delta_ns: i64) {
        self.offset_ns = self.offset_ns.saturating_add(delta_ns);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clocks_drift_and_jump() {
        let mut clock = Clock {
            drift_ppm: 10_000,
            offset_ns: 0,
        };
        assert_eq!(clock.read(1_000_000_000), 1_010_000_000);
        clock.jump(-2_000_000_000);
        assert_eq!(
            clock.read(1_000_000_000),
            0,
            "a clock never reads below zero"
        );
        clock.jump(5_000_000_000);
        assert_eq!(clock.read(0), 3_000_000_000);
    }
}
