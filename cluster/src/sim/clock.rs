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
        // In 64 bits while the product fits (days of simulated time): every member reads its
        // clock for every event, and a 128-bit division cost a seventh of the simulator's time.
        if let Ok(now) = i64::try_from(now_ns)
            && let Some(product) = now.checked_mul(self.drift_ppm)
            && let Some(drifted) = now
                .checked_add(product / 1_000_000)
                .and_then(|drifted| drifted.checked_add(self.offset_ns))
        {
            return u64::try_from(drifted.max(0)).expect("not negative");
        }
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

    #[test]
    fn the_sixty_four_bit_reading_agrees_with_the_wide_one_and_saturates_beyond_it() {
        let wide = |clock: &Clock, now_ns: u64| {
            let now = i128::from(now_ns);
            let drifted =
                now + now * i128::from(clock.drift_ppm) / 1_000_000 + i128::from(clock.offset_ns);
            u64::try_from(drifted.max(0)).unwrap_or(u64::MAX)
        };
        for drift_ppm in [-10_000, -7, 0, 3, 10_000] {
            for offset_ns in [-3_000_000_000, 0, 2_000_000_000] {
                let clock = Clock {
                    drift_ppm,
                    offset_ns,
                };
                for now_ns in [
                    0,
                    1,
                    999_999,
                    1_000_001,
                    123_456_789_012,
                    u64::MAX / 2,
                    u64::MAX,
                ] {
                    assert_eq!(
                        clock.read(now_ns),
                        wide(&clock, now_ns),
                        "{clock:?} at {now_ns}"
                    );
                }
            }
        }
        let fast = Clock {
            drift_ppm: 10_000,
            offset_ns: 0,
        };
        assert_eq!(fast.read(u64::MAX), u64::MAX);
    }
}
