//! Whether a test may use the io_uring backend here: yes where the kernel allows it; where it
//! does not, the test is skipped with a message, unless `TERN_REQUIRE_IO_URING` is set (as in
//! CI), which makes the absence a failure.

/// Whether io_uring runs here.
pub(crate) fn io_uring_runs() -> bool {
    match tern_engine::udp_ring::probe(false) {
        Ok(()) => true,
        Err(error) => {
            assert!(
                std::env::var_os("TERN_REQUIRE_IO_URING").is_none(),
                "io_uring is required here: {error}"
            );
            eprintln!("io_uring unavailable ({error}): skipped");
            false
        }
    }
}
