//! Where every driver agent records what went wrong: the distinct error log in the CnC file and
//! the `errors` system counter.
//!
//! The conductor, the sender and the receiver may run on three threads, and the log has one
//! writer at a time, so a mutex serialises them, as in Aeron. Errors are control-plane events
//! (a refused command, a timed-out client, a panic), never per message: the lock is taken only
//! when something went wrong, and no data path waits on it.

use std::sync::{Arc, Mutex, PoisonError};

use super::system_counters::{SystemCounter, SystemCounters};
use crate::concurrent::error_log::DistinctErrorLog;
use crate::mapped_view::MappedView;

/// A handle on the driver's error log, one per agent.
#[derive(Clone)]
pub(crate) struct ErrorRecorder {
    log: Arc<Mutex<MappedView<DistinctErrorLog<'static>>>>,
    system: Arc<SystemCounters>,
}

impl ErrorRecorder {
    pub(crate) fn new(
        log: MappedView<DistinctErrorLog<'static>>,
        system: Arc<SystemCounters>,
    ) -> Self {
        Self {
            log: Arc::new(Mutex::new(log)),
            system,
        }
    }

    /// Counts and logs `text` at `now_ms`.
    pub(crate) fn record(&self, now_ms: i64, text: &str) {
        self.system.increment(SystemCounter::Errors);
        // A panic while holding the lock leaves the log as consistent as any torn record a
        // reader already tolerates; keep recording.
        let mut log = self.log.lock().unwrap_or_else(PoisonError::into_inner);
        log.with_mut(|log| log.record(now_ms, text));
    }

    /// Records an agent's panic: the `agent panics` counter and the log.
    pub(crate) fn record_panic(&self, now_ms: i64, message: &str) {
        self.system.increment(SystemCounter::AgentPanics);
        self.record(now_ms, message);
    }

    /// The system counters, for the agent's own counts.
    pub(crate) fn system(&self) -> &SystemCounters {
        &self.system
    }
}
