//! The media driver: run standalone (`tern driver`) or embedded in a process.
//!
//! | thread | agent | owns |
//! |---|---|---|
//! | `driver-conductor` | [`conductor::DriverConductor`] | the CnC file's driver side, publications' limits and lifecycles |
//!
//! Starting a driver prepares its directory (refusing one a live driver uses), creates and
//! publishes the CnC file, then runs the conductor under the configured idle strategy, or
//! leaves it to the caller in [`ThreadingMode::Invoker`]. Closing it stops the thread, removes
//! the publications' files, and deletes the directory's files unless told to keep them.

pub mod conductor;
pub mod config;
mod ipc_publication;
pub mod system_counters;

use std::sync::Arc;

pub use config::{DriverConfig, ThreadingMode};

use crate::agent::{Agent, AgentRunner, Now, guarded};
use crate::cnc::{CncError, CncFile, DriverIdentity};
use crate::directory::{DirectoryError, prepare_for_driver};
use conductor::DriverConductor;

/// Why a driver could not start.
#[derive(Debug, thiserror::Error)]
pub enum DriverError {
    /// The directory cannot be used.
    #[error(transparent)]
    Directory(#[from] DirectoryError),
    /// The CnC file could not be created.
    #[error(transparent)]
    Cnc(#[from] CncError),
    /// The conductor could not be set up.
    #[error("cannot start the driver: {0}")]
    Setup(String),
    /// The driver thread could not be started.
    #[error("cannot start the driver thread: {0}")]
    Thread(std::io::Error),
}

enum Running {
    Thread(AgentRunner),
    Invoked(Box<DriverConductor>),
}

/// A running media driver.
pub struct MediaDriver {
    config: DriverConfig,
    running: Option<Running>,
    terminated: Arc<std::sync::atomic::AtomicBool>,
    invoked_failure: Option<String>,
}

/// The conductor wrapped so that a terminate command stops the thread's loop.
struct Watched {
    conductor: DriverConductor,
    terminated: Arc<std::sync::atomic::AtomicBool>,
}

impl Agent for Watched {
    fn do_work(&mut self, now: Now) -> usize {
        let work = self.conductor.do_work(now);
        if self.conductor.terminate_requested() {
            self.terminated
                .store(true, std::sync::atomic::Ordering::Release);
        }
        work
    }

    fn role_name(&self) -> &str {
        self.conductor.role_name()
    }

    fn on_close(&mut self) {
        self.conductor.on_close();
    }

    fn on_panic(&mut self, message: &str) {
        self.conductor.on_panic(message);
    }

    fn tracks_duty_cycle(&self) -> bool {
        self.conductor.tracks_duty_cycle()
    }

    fn on_duty_cycle(&mut self, cycle_ns: i64, end: Now) {
        self.conductor.on_duty_cycle(cycle_ns, end);
    }
}

impl MediaDriver {
    /// Starts a driver.
    pub fn launch(config: DriverConfig) -> Result<Self, DriverError> {
        let driver_timeout_ms =
            i64::try_from(config.driver_timeout.as_millis()).unwrap_or(i64::MAX);
        let now = config.clock.now();
        prepare_for_driver(&config.dir, now.epoch_ms, driver_timeout_ms)?;
        let identity = DriverIdentity {
            pid: i64::from(std::process::id()),
            start_timestamp_ms: now.epoch_ms,
            client_liveness_timeout_ns: i64::try_from(config.client_liveness_timeout.as_nanos())
                .unwrap_or(i64::MAX),
        };
        let cnc = Arc::new(CncFile::create(&config.dir, config.cnc_layout, identity)?);
        let mut conductor = DriverConductor::new(Arc::clone(&cnc), config.clone(), now)
            .map_err(DriverError::Setup)?;
        // A first duty cycle stamps the heartbeat before any client can look.
        conductor.do_work(now);
        cnc.publish();
        let terminated = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let running = match config.threading_mode {
            ThreadingMode::Invoker => Running::Invoked(Box::new(conductor)),
            _ => {
                let watched = Watched {
                    conductor,
                    terminated: Arc::clone(&terminated),
                };
                Running::Thread(
                    AgentRunner::start(
                        Box::new(watched),
                        config.idle_strategy,
                        Arc::clone(&config.clock),
                    )
                    .map_err(DriverError::Thread)?,
                )
            }
        };
        Ok(Self {
            config,
            running: Some(running),
            terminated,
            invoked_failure: None,
        })
    }

    /// The driver's directory.
    pub fn dir(&self) -> &std::path::Path {
        &self.config.dir
    }

    /// Runs one duty cycle ([`ThreadingMode::Invoker`] only; otherwise does nothing), at the
    /// configured clock's time. Returns the work done. A panic in the duty cycle is recorded
    /// like a driver thread's ([`MediaDriver::failure`]) and the driver does nothing after it.
    pub fn invoke(&mut self) -> usize {
        if self.invoked_failure.is_some() {
            return 0;
        }
        let clock = &self.config.clock;
        let Some(Running::Invoked(conductor)) = &mut self.running else {
            return 0;
        };
        let cycle = guarded(|| {
            let start = clock.now();
            let work = conductor.do_work(start);
            let end = clock.now();
            conductor.on_duty_cycle(end.nanos - start.nanos, end);
            work
        });
        match cycle {
            Ok(work) => {
                if conductor.terminate_requested() {
                    self.terminated
                        .store(true, std::sync::atomic::Ordering::Release);
                }
                work
            }
            Err(message) => {
                let message = format!("agent {} panicked: {message}", conductor.role_name());
                let _ = guarded(|| conductor.on_panic(&message));
                self.invoked_failure = Some(message);
                0
            }
        }
    }

    /// Whether a client asked the driver to terminate.
    pub fn is_terminated(&self) -> bool {
        self.terminated.load(std::sync::atomic::Ordering::Acquire)
    }

    /// Why the driver stopped working, if an agent panicked: the driver is dead even though its
    /// files are still there, and whoever runs it must stop it (`tern driver` exits non-zero).
    pub fn failure(&self) -> Option<String> {
        match &self.running {
            Some(Running::Thread(runner)) => runner.failure().map(str::to_owned),
            _ => self.invoked_failure.clone(),
        }
    }

    /// Stops the driver and releases its files. After an agent's panic the directory is kept,
    /// whatever the configuration says, so that `tern errors` can still show what happened (the
    /// next driver to start there clears it).
    pub fn close(&mut self) {
        let failed = self.failure().is_some();
        match self.running.take() {
            Some(Running::Thread(mut runner)) => runner.close(),
            Some(Running::Invoked(mut conductor)) => conductor.on_close(),
            None => return,
        }
        if self.config.delete_on_shutdown && !failed {
            let _ = std::fs::remove_dir_all(&self.config.dir);
        }
    }
}

impl Drop for MediaDriver {
    fn drop(&mut self) {
        self.close();
    }
}
