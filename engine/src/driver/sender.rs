//! The sender agent: over UDP (the next engine issue) it sends network publications' frames,
//! retransmits what receivers ask for and reads their status messages and NAKs. Today it runs
//! the commands the conductor queues for it ([`super::agent_proxy`]) and reports its duty
//! cycle, so that every threading mode composes the agents it names and its thread is already
//! measured in `tern stat` when network publications join it.
//!
//! It runs on the thread `driver-sender` (dedicated), `driver-network` (shared-network) or
//! `driver-shared` (shared), or on the embedding application's thread (invoker). It owns
//! everything it is given through its queue; it shares only counters (its own) and the error
//! log (through the driver's error recorder).

use super::agent_proxy::{COMMAND_LIMIT, CommandInbox};
use super::duty_cycle_counters::DutyCycleCounters;
use super::errors::ErrorRecorder;
use crate::agent::{Agent, Now};

/// The sender's role name (its thread's name in dedicated mode).
pub const ROLE: &str = "driver-sender";

/// The sender agent.
pub struct Sender {
    inbox: CommandInbox<Sender>,
    errors: ErrorRecorder,
    duty_cycle: DutyCycleCounters,
    /// This duty cycle's time, read once by the runner.
    now: Now,
}

impl Sender {
    pub(crate) fn new(
        inbox: CommandInbox<Sender>,
        errors: ErrorRecorder,
        duty_cycle: DutyCycleCounters,
        now: Now,
    ) -> Self {
        Self {
            inbox,
            errors,
            duty_cycle,
            now,
        }
    }

    /// This duty cycle's time, for commands that need it.
    pub fn now(&self) -> Now {
        self.now
    }
}

impl Agent for Sender {
    fn do_work(&mut self, now: Now) -> usize {
        self.now = now;
        let mut work = 0;
        while work < COMMAND_LIMIT {
            let Some(command) = self.inbox.take() else {
                break;
            };
            command(self);
            work += 1;
        }
        work
    }

    fn role_name(&self) -> &str {
        ROLE
    }

    fn on_panic(&mut self, message: &str) {
        self.errors.record_panic(self.now.epoch_ms, message);
    }

    fn tracks_duty_cycle(&self) -> bool {
        true
    }

    fn on_duty_cycle(&mut self, cycle_ns: i64, end: Now) {
        self.duty_cycle.record(cycle_ns, end.nanos);
    }
}
