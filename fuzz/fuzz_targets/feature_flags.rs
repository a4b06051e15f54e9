//! Fuzz target: `tern_codec::fuzz_checks::feature_flags` on arbitrary bytes.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| tern_codec::fuzz_checks::feature_flags(data));
