//! Fuzz target: `tern_engine::fuzz_checks::shared_memory` on arbitrary bytes: the readers of the
//! command ring, broadcast buffer, counters, error log and terms over memory a hostile process
//! wrote.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| tern_engine::fuzz_checks::shared_memory(data));
