//! How the conductor hands work to the sender and the receiver: commands (closures over the
//! agent) through a bounded single-producer single-consumer queue, run on the agent's own thread
//! at its next duty cycle, as Aeron's sender and receiver proxies do.
//!
//! The conductor owns each [`AgentProxy`]; the agent owns the matching [`CommandInbox`]. Whether
//! the two run on one thread (shared, invoker) or two (dedicated, shared-network), commands take
//! the same path, so every mode runs the same code. A command is boxed when the conductor makes
//! it (a control-plane event: a publication added, a subscription removed); the queue itself
//! allocates nothing after it is made.

use crate::concurrent::spsc_queue::{Consumer, Producer, channel};

/// Commands each queue holds: far more than the conductor makes in one duty cycle
/// ([`super::conductor`] reads at most ten client commands per cycle).
pub const COMMAND_QUEUE_CAPACITY: usize = 256;
/// Commands an agent runs per duty cycle at most.
pub const COMMAND_LIMIT: usize = 16;

/// Work for agent `A`, run on its thread.
pub type AgentCommand<A> = Box<dyn FnOnce(&mut A) + Send>;

/// The conductor's end: offers commands.
pub struct AgentProxy<A> {
    commands: Producer<AgentCommand<A>>,
}

/// The agent's end: runs commands.
pub struct CommandInbox<A> {
    commands: Consumer<AgentCommand<A>>,
}

/// A proxy and the inbox it feeds.
pub fn agent_queue<A>() -> (AgentProxy<A>, CommandInbox<A>) {
    let (commands, inbox) = channel(COMMAND_QUEUE_CAPACITY);
    (AgentProxy { commands }, CommandInbox { commands: inbox })
}

impl<A> AgentProxy<A> {
    /// Queues `command` for the agent's next duty cycle. A full queue gives the command back:
    /// the agent has stopped serving its queue, and the caller must not wait for it on a thread
    /// the agent may share.
    pub fn offer(
        &mut self,
        command: impl FnOnce(&mut A) + Send + 'static,
    ) -> Result<(), AgentCommand<A>> {
        self.commands.offer(Box::new(command))
    }
}

impl<A> CommandInbox<A> {
    /// Takes the next command, if any (at most [`COMMAND_LIMIT`] per duty cycle, the agent's
    /// loop decides).
    pub fn take(&mut self) -> Option<AgentCommand<A>> {
        self.commands.poll()
    }
}

/// The part of an agent fed by a [`CommandInbox`] that every such agent shares: its inbox, its
/// error recorder, its duty-cycle counters, this cycle's time and its work (`$work`, an
/// [`AgentWork`]). Declares `$agent` with those fields, its constructor, and its
/// [`Agent`](crate::agent::Agent) impl, whose duty cycle runs the queued commands (at most
/// [`COMMAND_LIMIT`]) and then the work.
macro_rules! command_agent {
    (
        $(#[$meta:meta])*
        pub struct $agent:ident, role $role:expr, work $work:ty
    ) => {
        $(#[$meta])*
        pub struct $agent {
            inbox: $crate::driver::agent_proxy::CommandInbox<$agent>,
            errors: $crate::driver::errors::ErrorRecorder,
            duty_cycle: $crate::driver::duty_cycle_counters::DutyCycleCounters,
            /// This duty cycle's time, read once by the runner.
            now: $crate::agent::Now,
            /// What the agent does besides running commands.
            pub(crate) work: $work,
        }

        impl $agent {
            pub(crate) fn new(
                inbox: $crate::driver::agent_proxy::CommandInbox<$agent>,
                errors: $crate::driver::errors::ErrorRecorder,
                duty_cycle: $crate::driver::duty_cycle_counters::DutyCycleCounters,
                now: $crate::agent::Now,
                work: $work,
            ) -> Self {
                Self {
                    inbox,
                    errors,
                    duty_cycle,
                    now,
                    work,
                }
            }

            /// This duty cycle's time, for commands that need it.
            pub fn now(&self) -> $crate::agent::Now {
                self.now
            }
        }

        impl $crate::agent::Agent for $agent {
            fn do_work(&mut self, now: $crate::agent::Now) -> usize {
                self.now = now;
                let mut work = 0;
                while work < $crate::driver::agent_proxy::COMMAND_LIMIT {
                    let Some(command) = self.inbox.take() else {
                        break;
                    };
                    command(self);
                    work += 1;
                }
                work + $crate::driver::agent_proxy::AgentWork::do_work(
                    &mut self.work,
                    now,
                    &self.errors,
                )
            }

            fn role_name(&self) -> &str {
                $role
            }

            fn on_panic(&mut self, message: &str) {
                self.errors.record_panic(self.now.epoch_ms, message);
            }

            fn tracks_duty_cycle(&self) -> bool {
                true
            }

            fn on_duty_cycle(&mut self, cycle_ns: Option<i64>, now: $crate::agent::Now) {
                self.duty_cycle.record(cycle_ns, now.nanos);
            }
        }
    };
}
pub(crate) use command_agent;

/// What an agent fed by a [`CommandInbox`] does each duty cycle after its commands.
pub(crate) trait AgentWork {
    /// One duty cycle at `now`; returns the work done (0 lets the idle strategy back off).
    fn do_work(&mut self, now: crate::agent::Now, errors: &super::errors::ErrorRecorder) -> usize;
}

impl<A> std::fmt::Debug for AgentProxy<A> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AgentProxy").finish_non_exhaustive()
    }
}

impl<A> std::fmt::Debug for CommandInbox<A> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CommandInbox").finish_non_exhaustive()
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;

    #[test]
    fn a_full_queue_gives_the_command_back_and_commands_run_in_order() {
        let (mut proxy, mut inbox) = agent_queue::<Vec<usize>>();
        for index in 0..COMMAND_QUEUE_CAPACITY {
            assert!(
                proxy
                    .offer(move |log: &mut Vec<usize>| log.push(index))
                    .is_ok()
            );
        }
        let refused = proxy.offer(|log: &mut Vec<usize>| log.push(usize::MAX));
        let mut log = Vec::new();
        let Err(refused) = refused else {
            panic!("a full queue refuses");
        };
        refused(&mut log);
        assert_eq!(log, [usize::MAX], "the caller still holds the command");
        log.clear();
        while let Some(command) = inbox.take() {
            command(&mut log);
        }
        assert_eq!(log, (0..COMMAND_QUEUE_CAPACITY).collect::<Vec<_>>());
    }
}
