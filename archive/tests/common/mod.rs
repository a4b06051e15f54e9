//! An embedded driver with an archive on its own thread, for the archive's end-to-end tests.
#![allow(dead_code, unreachable_pub)]

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tern_archive::archive::{Archive, ArchiveConfig};
use tern_archive::client::{ArchiveClient, ArchiveClientConfig};
use tern_engine::agent::{AgentRunner, Clock, IdleStrategy, SystemClock};
use tern_engine::client::{ClientConfig, FragmentAssembler, FragmentHeader, Subscription, Tern};
use tern_engine::driver::{DriverConfig, MediaDriver};

pub const DEADLINE: Duration = Duration::from_secs(20);

/// A driver, an archive running on its own thread, and a client of both.
pub struct Node {
    pub archive_dir: tempfile::TempDir,
    pub runner: AgentRunner,
    pub tern: Tern,
    pub driver: MediaDriver,
}

impl Node {
    pub fn start(name: &str, adjust: impl FnOnce(&mut ArchiveConfig)) -> Self {
        let driver_dir: PathBuf =
            std::env::temp_dir().join(format!("tern-archive-test-{name}-{}", std::process::id()));
        let mut driver_config = DriverConfig {
            dir: driver_dir,
            ..DriverConfig::default()
        };
        driver_config.ipc_term_length = 64 * 1024;
        driver_config.publication_linger = Duration::from_millis(50);
        let driver = MediaDriver::launch(driver_config).unwrap();
        let archive_dir = tempfile::tempdir().unwrap();
        let runner = Self::start_archive(&driver, archive_dir.path(), adjust);
        let tern = client(&driver);
        Self {
            archive_dir,
            runner,
            tern,
            driver,
        }
    }

    pub fn start_archive(
        driver: &MediaDriver,
        dir: &std::path::Path,
        adjust: impl FnOnce(&mut ArchiveConfig),
    ) -> AgentRunner {
        let mut config = ArchiveConfig {
            dir: dir.to_path_buf(),
            segment_length: 128 * 1024,
            ..ArchiveConfig::default()
        };
        adjust(&mut config);
        let clock: Arc<dyn Clock> = Arc::new(SystemClock);
        let archive = Archive::launch(config, client(driver), clock.now()).unwrap();
        AgentRunner::start(Box::new(archive), IdleStrategy::default(), clock).unwrap()
    }

    pub fn archive_client(&self) -> ArchiveClient {
        ArchiveClient::connect(&self.tern, ArchiveClientConfig::default()).unwrap()
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        self.runner.close();
    }
}

pub fn client(driver: &MediaDriver) -> Tern {
    Tern::connect(ClientConfig {
        dir: driver.dir().to_path_buf(),
        ..ClientConfig::default()
    })
    .unwrap()
}

/// Messages of assorted lengths, some longer than a frame.
pub fn messages(count: usize, seed: usize) -> Vec<Vec<u8>> {
    (0..count)
        .map(|index| {
            let length = (index * 389 + seed * 17) % 3000 + 1;
            (0..length)
                .map(|at| u8::try_from((at + index * 7 + seed) % 251).unwrap())
                .collect()
        })
        .collect()
}

/// Reads `count` whole messages from `subscription`, with the position after each.
pub fn receive(subscription: &mut Subscription, count: usize) -> Vec<(i64, Vec<u8>)> {
    let deadline = Instant::now() + DEADLINE;
    let received = std::cell::RefCell::new(Vec::new());
    let mut assembler = FragmentAssembler::new(|message: &[u8], header: &FragmentHeader| {
        received
            .borrow_mut()
            .push((header.position, message.to_vec()));
    });
    while received.borrow().len() < count {
        let fragments = subscription.poll(
            |fragment, header| assembler.on_fragment(fragment, header),
            64,
        );
        assert!(
            Instant::now() < deadline,
            "timed out: {} of {count} messages",
            received.borrow().len()
        );
        if fragments == 0 {
            std::thread::yield_now();
        }
    }
    drop(assembler);
    received.into_inner()
}

/// Waits until `condition` holds.
pub fn wait_for(what: &str, mut condition: impl FnMut() -> bool) {
    let deadline = Instant::now() + DEADLINE;
    while !condition() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(1));
    }
}
