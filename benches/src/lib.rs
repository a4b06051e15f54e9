//! # tern-benches
//!
//! Benchmarks for tern. Criterion benchmarks live in `benches/` (`cargo bench -p tern-benches`);
//! latency and throughput harnesses that print HDR percentiles arrive with the engine, behind
//! `tern bench`. Figures, with the commands and machines that produced them, are kept in the
//! repository's `BENCHMARKS.md`.

#![forbid(unsafe_code)]
