//! Driver-managed resources release what they hold — counters in the CnC file and log buffer
//! files — on every path that ends them: a command that fails half-way, a removed counter, a
//! closed client (its counter and its publication link), a publication lingering for a reader
//! and then gone (its counters, the reader's position and its file), a client timed out.
//! Nothing leaks, and the counters come back for reuse.
//! The driver runs on its own thread on a manual clock, which only the test advances.
#![cfg(not(loom))]

use std::sync::Arc;
use std::time::{Duration, Instant};

use tern_engine::agent::{Clock, ManualClock};
use tern_engine::client::{ClientConfig, ClientError, ConductorMode, OfferResult, Tern};
use tern_engine::cnc::CncLayout;
use tern_engine::command::ErrorCode;
use tern_engine::driver::{DriverConfig, MediaDriver};

const DEADLINE: Duration = Duration::from_secs(20);

fn allocated(tern: &Tern) -> usize {
    let mut count = 0;
    tern.counters().for_each(|_| count += 1);
    count
}

fn log_files(driver: &MediaDriver) -> usize {
    std::fs::read_dir(driver.dir().join("publications"))
        .map(|entries| entries.count())
        .unwrap_or(0)
}

/// Waits (bounded) until `done`: the driver frees what was released at the end of the duty
/// cycle that released it, after it may already have answered the command.
fn eventually(what: &str, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + DEADLINE;
    while !done() {
        assert!(Instant::now() < deadline, "{what}");
        std::thread::yield_now();
    }
}

#[test]
fn a_half_made_publication_a_removed_counter_and_a_closed_client_release_everything() {
    let clock = Arc::new(ManualClock::starting_now());
    let dir = std::env::temp_dir().join(format!("tern-test-lifecycle-{}", std::process::id()));
    let mut config = DriverConfig {
        dir,
        clock: Arc::clone(&clock) as Arc<dyn Clock>,
        ipc_term_length: 64 * 1024,
        publication_linger: Duration::from_secs(1),
        ..DriverConfig::default()
    };
    // 33 system counters and two per agent's duty cycle, then room for six more.
    config.cnc_layout = CncLayout {
        counters: 39 + 6,
        ..CncLayout::default()
    };
    let driver = MediaDriver::launch(config).unwrap();
    let mut tern = Tern::connect(ClientConfig {
        dir: driver.dir().to_path_buf(),
        ..ClientConfig::default()
    })
    .unwrap();
    let base = allocated(&tern);
    assert_eq!(base, 39);

    // A publication takes four counters; the second finds only two and fails half-way.
    let first = tern.add_publication("tern:ipc", 1).unwrap();
    assert_eq!(allocated(&tern), base + 4);
    let refused = tern.add_publication("tern:ipc", 2).unwrap_err();
    assert!(
        matches!(
            refused,
            ClientError::Refused {
                code: ErrorCode::ResourceExhausted,
                ..
            }
        ),
        "{refused}"
    );
    eventually("the half-made publication's counters are freed", || {
        allocated(&tern) == base + 4
    });
    eventually("its log buffer file is removed", || log_files(&driver) == 1);

    // Freed counter ids come back after the reuse timeout (1 s), on the driver's clock.
    clock.advance(Duration::from_secs(2));
    let one = tern.add_counter(1001, b"one", "one").unwrap();
    let two = tern.add_counter(1001, b"two", "two").unwrap();
    assert_eq!(allocated(&tern), base + 6);
    assert!(tern.add_counter(1001, b"three", "three").is_err(), "full");
    drop(one);
    eventually("a removed counter is freed", || {
        allocated(&tern) == base + 5
    });

    // A reader that never keeps itself alive (its conductor runs only when it is called)
    // subscribes and is linked: a position counter, in the id `one` freed (reused after 1 s).
    clock.advance(Duration::from_secs(2));
    let reader = Tern::connect(ClientConfig {
        dir: driver.dir().to_path_buf(),
        conductor_mode: ConductorMode::Invoker,
        ..ClientConfig::default()
    })
    .unwrap();
    let _subscription = reader.add_subscription("tern:ipc", 1).unwrap();
    eventually("the reader's image is linked", || {
        allocated(&tern) == base + 6
    });
    first.wait_connected(DEADLINE).unwrap();
    while !matches!(first.offer(b"unread"), OfferResult::Ok(_)) {}

    // Closing the writer releases its counter (`two` is never removed by hand) and its link on
    // the publication, which lingers for the reader that has not read it.
    tern.close();
    eventually("the closed client's counter is freed", || {
        let mut two_left = false;
        reader
            .counters()
            .for_each(|info| two_left |= info.label == "two");
        !two_left
    });
    clock.advance(Duration::from_millis(500));
    assert_eq!(log_files(&driver), 1, "lingering for the reader");
    clock.advance(Duration::from_secs(1));
    eventually(
        "past its linger, the publication releases its counters, the reader's and its file",
        || allocated(&reader) == base && log_files(&driver) == 0,
    );

    // The silent reader times out: its subscription ends with it.
    clock.advance(Duration::from_secs(11));
    eventually("the silent reader is timed out", || {
        let mut timeouts = 0;
        reader.counters().for_each(|info| {
            if info.label == "client timeouts" {
                timeouts = info.value;
            }
        });
        timeouts == 1
    });
    assert_eq!(allocated(&reader), base);
    drop((first, two));
}
