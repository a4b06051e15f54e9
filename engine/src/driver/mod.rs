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

use crate::agent::{Agent, AgentRunner, epoch_ms, nano_time};
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
}

/// The conductor wrapped so that a terminate command stops the thread's loop.
struct Watched {
    conductor: DriverConductor,
    terminated: Arc<std::sync::atomic::AtomicBool>,
}

impl Agent for Watched {
    fn do_work(&mut self, now_ns: i64) -> usize {
        let work = self.conductor.do_work(now_ns);
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
}

impl MediaDriver {
    /// Starts a driver.
    pub fn launch(config: DriverConfig) -> Result<Self, DriverError> {
        let driver_timeout_ms =
            i64::try_from(config.driver_timeout.as_millis()).unwrap_or(i64::MAX);
        prepare_for_driver(&config.dir, epoch_ms(), driver_timeout_ms)?;
        let identity = DriverIdentity {
            pid: i64::from(std::process::id()),
            start_timestamp_ms: epoch_ms(),
            client_liveness_timeout_ns: i64::try_from(config.client_liveness_timeout.as_nanos())
                .unwrap_or(i64::MAX),
        };
        let cnc = Arc::new(CncFile::create(&config.dir, config.cnc_layout, identity)?);
        let mut conductor = DriverConductor::new(Arc::clone(&cnc), config.clone(), nano_time())
            .map_err(DriverError::Setup)?;
        // A first duty cycle stamps the heartbeat before any client can look.
        conductor.do_work(nano_time());
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
                    AgentRunner::start(Box::new(watched), config.idle_strategy)
                        .map_err(DriverError::Thread)?,
                )
            }
        };
        Ok(Self {
            config,
            running: Some(running),
            terminated,
        })
    }

    /// The driver's directory.
    pub fn dir(&self) -> &std::path::Path {
        &self.config.dir
    }

    /// Runs one duty cycle ([`ThreadingMode::Invoker`] only; otherwise does nothing). Returns
    /// the work done.
    pub fn invoke(&mut self) -> usize {
        match &mut self.running {
            Some(Running::Invoked(conductor)) => {
                let work = conductor.do_work(nano_time());
                if conductor.terminate_requested() {
                    self.terminated
                        .store(true, std::sync::atomic::Ordering::Release);
                }
                work
            }
            _ => 0,
        }
    }

    /// Whether a client asked the driver to terminate.
    pub fn is_terminated(&self) -> bool {
        self.terminated.load(std::sync::atomic::Ordering::Acquire)
    }

    /// Stops the driver and releases its files.
    pub fn close(&mut self) {
        match self.running.take() {
            Some(Running::Thread(mut runner)) => runner.close(),
            Some(Running::Invoked(mut conductor)) => conductor.on_close(),
            None => return,
        }
        if self.config.delete_on_shutdown {
            let _ = std::fs::remove_dir_all(&self.config.dir);
        }
    }
}

impl Drop for MediaDriver {
    fn drop(&mut self) {
        self.close();
    }
}
