//! Fuzz target: `tern_cluster::fuzz_checks::consensus_message` on arbitrary bytes.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| tern_cluster::fuzz_checks::consensus_message(data));
