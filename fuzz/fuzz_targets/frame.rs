//! Fuzz target: `tern_codec::fuzz_checks::frame` on arbitrary bytes.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| tern_codec::fuzz_checks::frame(data));
