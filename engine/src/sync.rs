//! The atomics every shared-memory structure uses, behind one shim so that loom models can swap
//! in loom's types (`RUSTFLAGS="--cfg loom"`, see `tests/loom_*.rs`).

#[cfg(loom)]
pub(crate) use loom::sync::atomic::{AtomicU64, Ordering, fence};
#[cfg(not(loom))]
pub(crate) use std::sync::atomic::{AtomicU64, Ordering, fence};
