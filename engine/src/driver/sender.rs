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

use super::agent_proxy::command_agent;

/// The sender's role name (its thread's name in dedicated mode).
pub const ROLE: &str = "driver-sender";

command_agent! {
    /// The sender agent.
    pub struct Sender, role ROLE
}
