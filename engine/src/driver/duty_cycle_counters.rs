//! An agent's duty-cycle counters: the longest cycle and the p99.9 of the last second, in ns,
//! visible in `tern stat` under the agent's role name.
//!
//! Owned by the agent, written on its thread only. In a composite (shared modes) each agent is
//! told the whole thread's cycle, which is what delays its next turn.

use crate::concurrent::counters::Counter;
use crate::duty_cycle::DutyCycleTracker;
use crate::mapped_view::MappedView;

/// The window a percentile is taken over.
pub(crate) const WINDOW_NS: i64 = 1_000_000_000;

/// Labels of an agent's two counters.
pub(crate) fn labels(role: &str) -> [String; 2] {
    [
        format!("{role} duty cycle max ns"),
        format!("{role} duty cycle p99.9 ns (last second)"),
    ]
}

/// A tracker and the counters it reports to.
#[derive(Debug)]
pub(crate) struct DutyCycleCounters {
    tracker: DutyCycleTracker,
    /// The longest duty cycle, and the p99.9 of the last second's.
    counters: [MappedView<Counter<'static>>; 2],
}

impl DutyCycleCounters {
    pub(crate) fn new(counters: [MappedView<Counter<'static>>; 2], now_ns: i64) -> Self {
        Self {
            tracker: DutyCycleTracker::new(WINDOW_NS, now_ns),
            counters,
        }
    }

    /// Records a cycle of `cycle_ns` (none: an idle cycle, not timed) at `now_ns`.
    pub(crate) fn record(&mut self, cycle_ns: Option<i64>, now_ns: i64) {
        if let Some(report) = self.tracker.record(cycle_ns, now_ns) {
            self.counters[0].view().set(report.max_ns);
            self.counters[1].view().set(report.percentile_ns);
        }
    }
}
