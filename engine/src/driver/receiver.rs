//! The receiver agent: over UDP (the next engine issue) it reads datagrams into publication
//! images and sends status messages and NAKs. Today it runs the commands the conductor queues
//! for it ([`super::agent_proxy`]) and reports its duty cycle, so that every threading mode
//! composes the agents it names and its thread is already measured in `tern stat` when
//! subscription endpoints and publication images join it.
//!
//! It runs on the thread `driver-receiver` (dedicated), `driver-network` (shared-network) or
//! `driver-shared` (shared), or on the embedding application's thread (invoker). It owns
//! everything it is given through its queue; it shares only counters (its own) and the error
//! log (through the driver's error recorder).

use super::agent_proxy::command_agent;

/// The receiver's role name (its thread's name in dedicated mode).
pub const ROLE: &str = "driver-receiver";

command_agent! {
    /// The receiver agent.
    pub struct Receiver, role ROLE
}
