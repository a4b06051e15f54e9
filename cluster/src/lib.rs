//! # tern-cluster
//!
//! Raft consensus over a log of byte positions, deterministic replicated services, snapshots and
//! log replay, disaster-recovery standby and rolling upgrades with versioned protocols (see
//! `../shared/DESIGN.md` §7). Consensus logic is sans-IO: a state machine that takes the time and
//! its inputs and returns messages and log actions, tested under a seeded deterministic simulator.
//!
//! Status: not built yet; it arrives with the cluster issue. Every consensus message will be a
//! [`tern_codec`] schema with the *terminate* unknown-message policy, because a member must never
//! guess at a message that changes replicated state.
//!
//! Threads and memory: none yet.

#![forbid(unsafe_code)]
