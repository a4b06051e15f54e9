//! Fuzz target: `tern_archive::fuzz_checks::archive_bytes` on arbitrary bytes: segment headers
//! and frames as files hold them, catalog descriptor bodies, every control request and
//! response, and blocks offered for replay.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| tern_archive::fuzz_checks::archive_bytes(data));
