//! A driver and its clients stepped by hand on one manual clock: tests of timeouts (client
//! liveness, keepalives, unblocking, linger, untethered subscribers) advance time by steps and
//! never sleep, so they pass or fail the same way on a busy machine. Every loop is bounded by a
//! step count.
// Each test binary that includes this module uses a part of it.
#![allow(dead_code)]

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use tern_engine::agent::{Clock, ManualClock};
use tern_engine::client::{ClientConfig, ConductorMode, Publication, Subscription, Tern};
use tern_engine::driver::{DriverConfig, MediaDriver, ThreadingMode};

/// Steps any one wait may take before the test fails.
pub(crate) const STEP_LIMIT: usize = 100_000;

/// A driver in invoker mode on a manual clock.
pub(crate) struct Stepped {
    pub(crate) driver: MediaDriver,
    pub(crate) clock: Arc<ManualClock>,
}

impl Stepped {
    /// A driver in a directory named after the test, adjusted by `adjust`.
    pub(crate) fn new(name: &str, adjust: impl FnOnce(&mut DriverConfig)) -> Self {
        let clock = Arc::new(ManualClock::starting_now());
        let mut config = DriverConfig {
            dir: dir(name),
            threading_mode: ThreadingMode::Invoker,
            clock: Arc::clone(&clock) as Arc<dyn Clock>,
            ..DriverConfig::default()
        };
        config.ipc_term_length = 64 * 1024;
        adjust(&mut config);
        Self {
            driver: MediaDriver::launch(config).unwrap(),
            clock,
        }
    }

    /// A client whose conductor runs only when stepped, on the same clock.
    pub(crate) fn client(&self, adjust: impl FnOnce(&mut ClientConfig)) -> Tern {
        let mut config = ClientConfig {
            dir: self.driver.dir().to_path_buf(),
            conductor_mode: ConductorMode::Invoker,
            clock: Arc::clone(&self.clock) as Arc<dyn Clock>,
            ..ClientConfig::default()
        };
        adjust(&mut config);
        Tern::connect(config).unwrap()
    }

    /// One duty cycle of the driver, then of each client in `awake`.
    pub(crate) fn step(&mut self, awake: &[&Tern]) {
        self.driver.invoke();
        for client in awake {
            client.do_work();
        }
    }

    /// Advances the clock by `duration` in steps of `tick`, stepping after each.
    pub(crate) fn advance(&mut self, duration: Duration, tick: Duration, awake: &[&Tern]) {
        let mut elapsed = Duration::ZERO;
        while elapsed < duration {
            self.clock.advance(tick);
            elapsed += tick;
            self.step(awake);
        }
    }

    /// Steps (advancing the clock by `tick` each time) until `done` says so.
    pub(crate) fn step_until(
        &mut self,
        tick: Duration,
        awake: &[&Tern],
        what: &str,
        mut done: impl FnMut() -> bool,
    ) {
        for _ in 0..STEP_LIMIT {
            if done() {
                return;
            }
            self.clock.advance(tick);
            self.step(awake);
        }
        panic!("{what}: not after {STEP_LIMIT} steps");
    }

    /// Adds a publication through `client`, stepping until the driver answers.
    pub(crate) fn add_publication(
        &mut self,
        client: &Tern,
        channel: &str,
        stream_id: i32,
    ) -> Publication {
        let registration_id = client.async_add_publication(channel, stream_id).unwrap();
        for _ in 0..STEP_LIMIT {
            self.driver.invoke();
            if let Some(result) = client.poll_publication(registration_id) {
                return result.unwrap();
            }
        }
        panic!("no answer to add publication");
    }

    /// Adds a subscription through `client`, stepping until the driver answers.
    pub(crate) fn add_subscription(
        &mut self,
        client: &Tern,
        channel: &str,
        stream_id: i32,
    ) -> Subscription {
        let registration_id = client.async_add_subscription(channel, stream_id).unwrap();
        for _ in 0..STEP_LIMIT {
            self.driver.invoke();
            if let Some(result) = client.poll_subscription(registration_id) {
                return result.unwrap();
            }
        }
        panic!("no answer to add subscription");
    }
}

/// A directory for the test `name` in this process.
pub(crate) fn dir(name: &str) -> PathBuf {
    std::env::temp_dir().join(format!("tern-test-{name}-{}", std::process::id()))
}
