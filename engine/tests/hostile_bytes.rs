//! Arbitrary bytes written into live shared memory: each reader the driver and its clients run
//! over it (command ring, broadcast, counters, error log, terms) must survive anything, and the
//! driver's whole duty cycle must survive a CnC file scribbled over while it runs. The same
//! checks run under libFuzzer (`fuzz/fuzz_targets/shared_memory.rs`); its corpus replays here.
#![cfg(not(loom))]

mod support;

use std::time::Duration;

use proptest::prelude::*;
use support::Stepped;
use tern_engine::client::OfferResult;
use tern_engine::cnc::CncFile;
use tern_engine::fuzz_checks;

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    #[test]
    fn readers_survive_any_bytes(
        selector in 0u8..5,
        bytes in proptest::collection::vec(any::<u8>(), 0..2048),
    ) {
        let mut data = vec![selector];
        data.extend_from_slice(&bytes);
        fuzz_checks::shared_memory(&data);
    }

    /// Lengths and positions are what matter to readers: bias the bytes towards records whose
    /// lengths are small, negative, huge or just past an end.
    #[test]
    fn readers_survive_plausible_lengths(
        selector in 0u8..5,
        words in proptest::collection::vec(
            prop_oneof![
                Just(0i32), Just(-1), Just(8), Just(32), Just(1024), Just(1032), Just(i32::MAX),
                Just(i32::MIN), Just(i32::MIN + 1), -64i32..2048,
            ],
            0..512,
        ),
    ) {
        let mut data = vec![selector];
        for word in words {
            data.extend_from_slice(&word.to_le_bytes());
        }
        fuzz_checks::shared_memory(&data);
    }
}

/// Every file under `fuzz/corpus/shared_memory` (the inputs the fuzzer kept) runs again.
#[test]
fn the_fuzz_corpus_replays() {
    let corpus =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../fuzz/corpus/shared_memory");
    let mut replayed = 0;
    for entry in std::fs::read_dir(&corpus).expect("the shared_memory corpus") {
        let data = std::fs::read(entry.unwrap().path()).unwrap();
        fuzz_checks::shared_memory(&data);
        replayed += 1;
    }
    assert!(replayed > 0, "an empty corpus checks nothing");
}

/// One scribble: where in the CnC file, and what.
#[derive(Debug, Clone)]
struct Scribble {
    section: u8,
    offset: usize,
    bytes: Vec<u8>,
}

fn scribble() -> impl Strategy<Value = Scribble> {
    (
        0u8..5,
        any::<usize>(),
        proptest::collection::vec(any::<u8>(), 1..64),
    )
        .prop_map(|(section, offset, bytes)| Scribble {
            section,
            offset,
            bytes,
        })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

    /// A stepped driver serving a publisher and a subscriber while arbitrary bytes land in its
    /// command ring, counters, broadcast buffer and error log between duty cycles: it
    /// never panics (its duty cycle catches panics, so the check is that none was caught), and
    /// it is still serving at the end.
    #[test]
    fn the_driver_survives_scribbles_on_its_cnc(
        scribbles in proptest::collection::vec(scribble(), 1..24),
    ) {
        let mut stepped = Stepped::new("scribbled", |_| {});
        let cnc = CncFile::open(stepped.driver.dir()).unwrap();
        let tern = stepped.client(|_| {});
        let publication = stepped.add_publication(&tern, "tern:ipc", 1);
        let mut subscription = stepped.add_subscription(&tern, "tern:ipc", 1);
        let sections = cnc.sections();
        for scribble in &scribbles {
            let target = match scribble.section {
                0 => sections.to_driver,
                1 => sections.counters_values,
                2 => sections.counters_metadata,
                3 => sections.to_clients,
                _ => sections.error_log,
            };
            let length = scribble.bytes.len().min(target.capacity());
            let offset = scribble.offset % (target.capacity() - length + 1);
            target.put_bytes(offset, &scribble.bytes[..length]);
            let _ = publication.offer(b"through the noise");
            subscription.poll(|_, _| {}, 16);
            stepped.clock.advance(Duration::from_millis(3));
            stepped.step(&[&tern]);
            prop_assert!(stepped.driver.failure().is_none(), "{:?}", stepped.driver.failure());
        }
        // Whatever the scribbles did to this client, the driver still serves a new one: at once,
        // or, when a scribble left the command ring blocked, once the driver unblocks it after
        // the client liveness timeout (10 s, stepped here in 10 ms steps).
        let fresh = stepped.client(|_| {});
        let registration_id = fresh.async_add_publication("tern:ipc", 2).unwrap();
        let mut answer = None;
        for _ in 0..2_000 {
            stepped.clock.advance(Duration::from_millis(10));
            stepped.driver.invoke();
            answer = fresh.poll_publication(registration_id);
            if answer.is_some() {
                break;
            }
        }
        prop_assert!(stepped.driver.failure().is_none(), "{:?}", stepped.driver.failure());
        let publication = answer.expect("served within 20 simulated seconds").unwrap();
        prop_assert!(!matches!(publication.offer(b"x"), OfferResult::Closed));
    }
}
