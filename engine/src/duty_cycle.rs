//! How long an agent's duty cycles take: the longest since start and a high percentile of the
//! last window, so that an operator sees a stall in `tern stat` (Aeron's max-cycle-time counter,
//! plus the percentile that says whether the maximum was a one-off).
//!
//! The runner reads its clock once per duty cycle; an agent that asks for it is told how long
//! the previous cycle took, start to start, when that cycle did work
//! ([`crate::agent::Agent::on_duty_cycle`]), and records it here. A cycle that found nothing to
//! do is followed by the idle strategy's wait, so it is not timed; it still closes a window
//! that is due, so the reported figures never go stale. Recording is a
//! few arithmetic operations into a fixed table: no allocation, no lock.

/// Sub-buckets per power of two: the percentile is reported within 25 %.
const SUB_BUCKET_BITS: u32 = 2;
const BUCKETS: usize = 64 << SUB_BUCKET_BITS;

/// The percentile reported per window, in parts per million.
pub const PERCENTILE_PPM: u64 = 999_000;

/// A duty-cycle time histogram over windows of fixed length.
#[derive(Debug, Clone)]
pub struct DutyCycleTracker {
    counts: Box<[u32; BUCKETS]>,
    recorded: u64,
    window_ns: i64,
    window_start_ns: i64,
    max_ns: i64,
}

/// What a closed window says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DutyCycleReport {
    /// The longest duty cycle since the tracker started, in ns.
    pub max_ns: i64,
    /// The 99.9th percentile of the window just closed (an upper bound within 25 %), in ns.
    pub percentile_ns: i64,
}

impl DutyCycleTracker {
    /// A tracker whose windows last `window_ns`, starting at `now_ns`.
    pub fn new(window_ns: i64, now_ns: i64) -> Self {
        assert!(window_ns > 0, "windows have a length");
        Self {
            counts: Box::new([0; BUCKETS]),
            recorded: 0,
            window_ns,
            window_start_ns: now_ns,
            max_ns: 0,
        }
    }

    /// Records a duty cycle of `cycle_ns` (none: a cycle not timed) at `now_ns`; returns a
    /// report when that closes a window (then a new window starts).
    pub fn record(&mut self, cycle_ns: Option<i64>, now_ns: i64) -> Option<DutyCycleReport> {
        if let Some(cycle_ns) = cycle_ns {
            let cycle_ns = cycle_ns.max(0);
            self.max_ns = self.max_ns.max(cycle_ns);
            self.counts[bucket_of(cycle_ns.cast_unsigned())] += 1;
            self.recorded += 1;
        }
        if now_ns - self.window_start_ns < self.window_ns {
            return None;
        }
        let report = DutyCycleReport {
            max_ns: self.max_ns,
            percentile_ns: self.percentile_ns(),
        };
        self.counts.fill(0);
        self.recorded = 0;
        self.window_start_ns = now_ns;
        Some(report)
    }

    fn percentile_ns(&self) -> i64 {
        if self.recorded == 0 {
            // Nothing timed in the window (every cycle idle): nothing to report.
            return 0;
        }
        // The smallest bucket at or below which PERCENTILE_PPM of the window's cycles lie.
        let wanted = (self.recorded * PERCENTILE_PPM).div_ceil(1_000_000);
        let mut seen = 0u64;
        for (bucket, count) in self.counts.iter().enumerate() {
            seen += u64::from(*count);
            if seen >= wanted {
                return i64::try_from(bucket_upper_bound(bucket)).unwrap_or(i64::MAX);
            }
        }
        self.max_ns
    }
}

/// The bucket of a value: its power of two and the next `SUB_BUCKET_BITS` bits below the top.
fn bucket_of(value: u64) -> usize {
    if value < (1 << SUB_BUCKET_BITS) {
        return usize::try_from(value).unwrap_or(0);
    }
    let magnitude = 63 - value.leading_zeros();
    let shift = magnitude - SUB_BUCKET_BITS;
    let sub = (value >> shift) & ((1 << SUB_BUCKET_BITS) - 1);
    usize::try_from((u64::from(shift + 1) << SUB_BUCKET_BITS) + sub).unwrap_or(BUCKETS - 1)
}

/// The largest value in `bucket`.
fn bucket_upper_bound(bucket: usize) -> u64 {
    let bucket = u64::try_from(bucket).unwrap_or(u64::MAX);
    if bucket < (1 << SUB_BUCKET_BITS) {
        return bucket;
    }
    let shift = (bucket >> SUB_BUCKET_BITS) - 1;
    let sub = bucket & ((1 << SUB_BUCKET_BITS) - 1);
    let lowest = ((1 << SUB_BUCKET_BITS) | sub) << shift;
    lowest + (1 << shift) - 1
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_bound_their_values_within_a_quarter() {
        for value in [
            0u64,
            1,
            3,
            4,
            5,
            7,
            8,
            100,
            1_000,
            65_535,
            1 << 40,
            u64::MAX >> 2,
        ] {
            let upper = bucket_upper_bound(bucket_of(value));
            assert!(upper >= value, "{value} -> {upper}");
            assert!(upper <= value + value / 4 + 1, "{value} -> {upper}");
        }
    }

    #[test]
    fn a_window_reports_its_high_percentile_and_the_running_max() {
        let mut tracker = DutyCycleTracker::new(1_000, 0);
        for _ in 0..9_990 {
            assert_eq!(tracker.record(Some(100), 10), None);
        }
        for _ in 0..10 {
            tracker.record(Some(50_000), 20);
        }
        let report = tracker.record(Some(100), 1_000).unwrap();
        assert_eq!(report.max_ns, 50_000);
        assert!((100..=125).contains(&report.percentile_ns), "{report:?}");
        // One stall in the next window: the percentile stays low, the max remembers it.
        tracker.record(Some(1_000_000), 1_500);
        let report = tracker.record(Some(100), 2_000).unwrap();
        assert_eq!(report.max_ns, 1_000_000);
        assert!(
            report.percentile_ns >= 1_000_000,
            "2 samples: the top one is the p99.9"
        );
    }

    #[test]
    fn idle_cycles_are_not_timed_but_still_close_windows() {
        let mut tracker = DutyCycleTracker::new(1_000, 0);
        tracker.record(Some(300), 10);
        for now in 20..999 {
            assert_eq!(tracker.record(None, now), None);
        }
        let report = tracker
            .record(None, 1_000)
            .expect("an idle cycle closes the window");
        assert_eq!(report.max_ns, 300);
        assert!((300..=375).contains(&report.percentile_ns), "{report:?}");
        // A window of idle cycles only reports the running max, never a stale percentile.
        let report = tracker.record(None, 2_000).unwrap();
        assert_eq!((report.max_ns, report.percentile_ns), (300, 0));
    }
}
