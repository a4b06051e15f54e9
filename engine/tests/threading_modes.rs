//! Each threading mode composes the three driver agents onto the threads it names and moves
//! messages: dedicated (three threads), shared-network (two), shared (one) and invoker (none:
//! the application's own thread calls the duty cycle). That work queued for the sender and the
//! receiver runs on those threads is checked by the driver's unit tests (`driver::tests`).
#![cfg(not(loom))]

use std::time::{Duration, Instant};

use tern_engine::client::{ClientConfig, OfferResult, Tern};
use tern_engine::driver::{DriverConfig, MediaDriver, ThreadingMode};

const DEADLINE: Duration = Duration::from_secs(20);

/// Each thread's name and the agents it runs.
type Composition = Vec<(&'static str, Vec<String>)>;

/// The OS names of this process's threads (Linux keeps 15 bytes of each).
fn os_thread_names() -> Vec<String> {
    let mut names = Vec::new();
    for task in std::fs::read_dir("/proc/self/task").unwrap().flatten() {
        if let Ok(name) = std::fs::read_to_string(task.path().join("comm")) {
            names.push(name.trim_end().to_owned());
        }
    }
    names
}

/// Publishes ten messages over `tern:ipc` and receives them all.
fn ten_messages_cross(tern: &Tern, stream_id: i32) {
    let publication = tern.add_publication("tern:ipc", stream_id).unwrap();
    let mut subscription = tern.add_subscription("tern:ipc", stream_id).unwrap();
    publication.wait_connected(DEADLINE).unwrap();
    let deadline = Instant::now() + DEADLINE;
    let mut sent = 0u8;
    let mut received = Vec::new();
    while received.len() < 10 {
        assert!(
            Instant::now() < deadline,
            "{} of 10 received",
            received.len()
        );
        if sent < 10 && matches!(publication.offer(&[sent; 40]), OfferResult::Ok(_)) {
            sent += 1;
        }
        subscription.poll(|fragment, _| received.push(fragment[0]), 10);
    }
    assert_eq!(received, (0..10).collect::<Vec<u8>>());
}

/// Labels of the counters whose label ends with `suffix`.
fn labels_ending(tern: &Tern, suffix: &str) -> Vec<String> {
    let mut labels = Vec::new();
    tern.counters().for_each(|info| {
        if info.label.ends_with(suffix) {
            labels.push(info.label.to_owned());
        }
    });
    labels.sort();
    labels
}

/// One test, so that no other test's driver threads are running while thread names are read.
#[test]
fn every_mode_runs_its_agents_on_its_threads_and_moves_messages() {
    threaded_modes();
    invoker_mode();
}

fn threaded_modes() {
    let conductor = || vec!["driver-conductor".to_owned()];
    let network = || vec!["driver-sender".to_owned(), "driver-receiver".to_owned()];
    let cases: [(ThreadingMode, Composition); 3] = [
        (
            ThreadingMode::Dedicated,
            vec![
                ("driver-conductor", conductor()),
                ("driver-sender", vec!["driver-sender".to_owned()]),
                ("driver-receiver", vec!["driver-receiver".to_owned()]),
            ],
        ),
        (
            ThreadingMode::SharedNetwork,
            vec![
                ("driver-conductor", conductor()),
                ("driver-network", network()),
            ],
        ),
        // IO first, then the control plane (as Aeron's shared agent).
        (
            ThreadingMode::Shared,
            vec![("driver-shared", [network(), conductor()].concat())],
        ),
    ];
    for (index, (mode, composition)) in cases.into_iter().enumerate() {
        let threads: Vec<&str> = composition.iter().map(|(thread, _)| *thread).collect();
        let dir = std::env::temp_dir().join(format!("tern-modes-{}-{index}", std::process::id()));
        let driver = MediaDriver::launch(DriverConfig {
            dir,
            threading_mode: mode,
            ipc_term_length: 64 * 1024,
            ..DriverConfig::default()
        })
        .unwrap();
        assert_eq!(driver.threads(), threads, "{mode:?}");
        let expected: Vec<(String, Vec<String>)> = composition
            .into_iter()
            .map(|(thread, agents)| (thread.to_owned(), agents))
            .collect();
        assert_eq!(driver.composition(), expected, "{mode:?}");
        let tern = Tern::connect(ClientConfig {
            dir: driver.dir().to_path_buf(),
            ..ClientConfig::default()
        })
        .unwrap();
        ten_messages_cross(&tern, 7);
        // A thread names itself once it runs: wait for that, not for any timing.
        let deadline = Instant::now() + DEADLINE;
        loop {
            let running = os_thread_names();
            // The kernel keeps 15 bytes of a thread's name.
            let all_once = threads.iter().all(|thread| {
                let kept = &thread[..thread.len().min(15)];
                running.iter().filter(|name| *name == kept).count() == 1
            });
            if all_once {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "{mode:?}: threads {threads:?} among {running:?}"
            );
            std::thread::sleep(Duration::from_millis(1));
        }
        assert_eq!(
            labels_ending(&tern, "duty cycle max ns"),
            [
                "driver-conductor duty cycle max ns",
                "driver-receiver duty cycle max ns",
                "driver-sender duty cycle max ns"
            ],
            "{mode:?}"
        );
        drop(tern);
        drop(driver);
        let running = os_thread_names();
        assert!(
            running.iter().all(|name| !name.starts_with("driver-")),
            "{mode:?}: closing the driver stops its threads: {running:?}"
        );
    }
}

/// Invoker mode starts no thread and serves clients from the caller's thread.
fn invoker_mode() {
    let dir = std::env::temp_dir().join(format!("tern-modes-invoker-{}", std::process::id()));
    let mut driver = MediaDriver::launch(DriverConfig {
        dir: dir.clone(),
        threading_mode: ThreadingMode::Invoker,
        ipc_term_length: 64 * 1024,
        ..DriverConfig::default()
    })
    .unwrap();
    assert!(driver.threads().is_empty());
    assert_eq!(
        driver.composition(),
        [(
            "driver-shared".to_owned(),
            vec![
                "driver-sender".to_owned(),
                "driver-receiver".to_owned(),
                "driver-conductor".to_owned()
            ]
        )]
    );
    assert!(
        os_thread_names()
            .iter()
            .all(|name| !name.starts_with("driver-")),
        "no driver thread"
    );
    // The application's thread that embeds the driver calls its duty cycle.
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let stopping = std::sync::Arc::clone(&stop);
    let invoking = std::thread::spawn(move || {
        while !stopping.load(std::sync::atomic::Ordering::Acquire) {
            if driver.invoke() == 0 {
                std::thread::yield_now();
            }
        }
        driver
    });
    let tern = Tern::connect(ClientConfig {
        dir,
        ..ClientConfig::default()
    })
    .unwrap();
    ten_messages_cross(&tern, 8);
    assert_eq!(labels_ending(&tern, "duty cycle max ns").len(), 3);
    drop(tern);
    stop.store(true, std::sync::atomic::Ordering::Release);
    let driver = invoking.join().unwrap();
    assert!(driver.failure().is_none());
}
