//! # tern-benches
//!
//! Benchmarks for tern. Criterion benchmarks live in `benches/` (`cargo bench -p tern-benches`);
//! latency and throughput harnesses that print HDR percentiles arrive with the engine, behind
//! `tern bench`. Figures, with the commands and machines that produced them, are kept in the
//! repository's `BENCHMARKS.md`.

#![forbid(unsafe_code)]

use tern_engine::client::{ClientConfig, ConductorMode, Tern};
use tern_engine::driver::{DriverConfig, MediaDriver, ThreadingMode};

/// A driver and a client that run on the caller's thread alone (both in invoker mode), in a
/// directory named `tern-<name>-<pid>` beside the default one: the fixed, single-threaded
/// workloads that instruction counts are taken on.
pub fn invoked_driver_and_client(name: &str) -> (MediaDriver, Tern) {
    let dir = tern_engine::directory::default_directory()
        .with_file_name(format!("tern-{name}-{}", std::process::id()));
    let driver = MediaDriver::launch(DriverConfig {
        dir: dir.clone(),
        threading_mode: ThreadingMode::Invoker,
        ..DriverConfig::default()
    })
    .expect("the driver starts");
    let tern = Tern::connect(ClientConfig {
        dir,
        conductor_mode: ConductorMode::Invoker,
        ..ClientConfig::default()
    })
    .expect("a client");
    (driver, tern)
}
