//! The media driver: run standalone (`tern driver`) or embedded in a process.
//!
//! | agent | owns |
//! |---|---|
//! | [`conductor::DriverConductor`] | the CnC file's driver side, publications' limits and lifecycles, the queues to the other two |
//! | [`sender::Sender`] | network publications (with UDP) |
//! | [`receiver::Receiver`] | subscription endpoints and publication images (with UDP) |
//!
//! The threading mode composes them onto threads, each under the configured idle strategy:
//!
//! | mode | threads |
//! |---|---|
//! | dedicated | `driver-conductor`, `driver-sender`, `driver-receiver` |
//! | shared-network | `driver-conductor`, `driver-network` (sender then receiver) |
//! | shared (default) | `driver-shared` (sender, receiver, then conductor: a cycle's IO first, as Aeron's shared agent, so that new data goes out before the control plane's bookkeeping) |
//! | invoker | none: the embedding application calls [`MediaDriver::invoke`] |
//!
//! The UDP transport's protocol logic is written as sans-IO cores that take the time and frames
//! and answer what to send: [`network_publication`] (with [`flow_control`],
//! [`retransmit_handler`] and [`publication_timing`]) for the sender, [`publication_image`] (with
//! [`loss_detector`] and [`image_timing`]) for the receiver. The sender and receiver agents drive
//! them over [`crate::udp_transport`], batching datagrams through a [`send_batch::SendBatch`];
//! [`loss_generator`] drops and duplicates datagrams for tests.
//!
//! The conductor hands work to the sender and receiver through bounded queues
//! ([`agent_proxy`]) in every mode, so every mode runs the same code. Starting a driver prepares
//! its directory (refusing one a live driver uses), creates and publishes the CnC file, then
//! starts the threads. A panic in any agent is caught, recorded in the error log and the `agent
//! panics` counter, and reported by [`MediaDriver::failure`]. Closing the driver stops its
//! threads, removes the publications' files, and deletes the directory's files unless told to
//! keep them.

pub mod agent_proxy;
mod client_proxy;
pub mod conductor;
pub mod config;
mod duty_cycle_counters;
mod errors;
pub mod flow_control;
pub mod image_timing;
mod ipc_publication;
pub mod loss_detector;
pub mod loss_generator;
pub mod network_publication;
pub mod publication_image;
pub mod publication_timing;
pub mod receiver;
mod reclaim;
mod resources;
pub mod retransmit_handler;
pub mod send_batch;
pub mod sender;
pub mod system_counters;

use std::sync::Arc;

pub use config::{DriverConfig, ThreadingMode};

use crate::agent::{Agent, AgentRunner, CompositeAgent, Now, guarded};
use crate::cnc::{CncError, CncFile, DriverIdentity};
use crate::directory::{DirectoryError, prepare_for_driver};
use conductor::{DriverAgents, DriverConductor};

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
    Threads(Vec<AgentRunner>),
    Invoked(Box<dyn Agent>),
}

/// The name of the thread that runs the sender and the receiver in shared-network mode.
pub const NETWORK_THREAD: &str = "driver-network";
/// The name of the one thread in shared mode (and of the invoked agent).
pub const SHARED_THREAD: &str = "driver-shared";

/// The agents each thread runs in `mode`, each named as its thread is.
fn compose(
    mode: ThreadingMode,
    conductor: Box<dyn Agent>,
    sender: Box<dyn Agent>,
    receiver: Box<dyn Agent>,
) -> Vec<Box<dyn Agent>> {
    match mode {
        ThreadingMode::Dedicated => vec![conductor, sender, receiver],
        ThreadingMode::SharedNetwork => vec![
            conductor,
            Box::new(CompositeAgent::named(
                NETWORK_THREAD,
                vec![sender, receiver],
            )),
        ],
        ThreadingMode::Shared | ThreadingMode::Invoker => vec![Box::new(CompositeAgent::named(
            SHARED_THREAD,
            vec![sender, receiver, conductor],
        ))],
    }
}

/// A running media driver.
pub struct MediaDriver {
    config: DriverConfig,
    running: Option<Running>,
    /// The names of the threads started, in start order (none in invoker mode).
    threads: Vec<String>,
    /// Each thread's (or the invoked agent's) name and the agents it runs, in order.
    composition: Vec<(String, Vec<String>)>,
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

    fn on_duty_cycle(&mut self, cycle_ns: Option<i64>, now: Now) {
        self.conductor.on_duty_cycle(cycle_ns, now);
    }
}

impl MediaDriver {
    /// Starts a driver.
    pub fn launch(config: DriverConfig) -> Result<Self, DriverError> {
        // An io_uring the kernel refuses is said at start, not at the first UDP channel.
        if config.udp_io != crate::udp_transport::UdpIo::Mmsg {
            crate::udp_ring::probe(config.udp_io == crate::udp_transport::UdpIo::IoUringSqpoll)
                .map_err(|error| {
                    DriverError::Setup(format!(
                        "udp_io = {:?} needs io_uring, which this kernel refuses: {error} (is \
                         kernel.io_uring_disabled set, or a seccomp filter in the way?)",
                        config.udp_io
                    ))
                })?;
        }
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
        let DriverAgents {
            mut conductor,
            sender,
            receiver,
        } = DriverConductor::agents(Arc::clone(&cnc), config.clone(), now)
            .map_err(DriverError::Setup)?;
        // A first duty cycle stamps the heartbeat before any client can look.
        conductor.do_work(now);
        cnc.publish();
        let terminated = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let watched = Watched {
            conductor,
            terminated: Arc::clone(&terminated),
        };
        let mut agents = compose(
            config.threading_mode,
            Box::new(watched),
            Box::new(sender),
            Box::new(receiver),
        );
        let mut threads = Vec::new();
        let composition = agents
            .iter()
            .map(|agent| (agent.role_name().to_owned(), agent.roles()))
            .collect();
        let running = if config.threading_mode == ThreadingMode::Invoker {
            Running::Invoked(agents.remove(0))
        } else {
            let mut runners = Vec::with_capacity(agents.len());
            // One failure for all: a panic in any agent stops them all.
            let failure = Arc::new(std::sync::OnceLock::new());
            for agent in agents {
                let name = agent.role_name().to_owned();
                // Runners already started stop when `runners` drops on this error path.
                runners.push(
                    AgentRunner::start_in_group(
                        agent,
                        config.idle_strategy,
                        Arc::clone(&config.clock),
                        Arc::clone(&failure),
                    )
                    .map_err(DriverError::Thread)?,
                );
                threads.push(name);
            }
            Running::Threads(runners)
        };
        Ok(Self {
            config,
            running: Some(running),
            threads,
            composition,
            terminated,
            invoked_failure: None,
        })
    }

    /// The names of the driver's threads, one per composed agent (empty in invoker mode).
    pub fn threads(&self) -> &[String] {
        &self.threads
    }

    /// Each thread (or, in invoker mode, the invoked agent) by name, with the roles of the
    /// agents it runs in duty-cycle order.
    pub fn composition(&self) -> &[(String, Vec<String>)] {
        &self.composition
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
        let Some(Running::Invoked(agent)) = &mut self.running else {
            return 0;
        };
        let cycle = guarded(|| {
            let start = clock.now();
            // The application may wait any time between calls: each is timed alone.
            let work = agent.do_work(start);
            let timed = (work > 0).then(|| clock.now().nanos - start.nanos);
            agent.on_duty_cycle(timed, start);
            work
        });
        match cycle {
            Ok(work) => work,
            Err(message) => {
                let message = format!("agent {} panicked: {message}", agent.role_name());
                let _ = guarded(|| agent.on_panic(&message));
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
            Some(Running::Threads(runners)) => runners
                .iter()
                .find_map(|runner| runner.failure().map(str::to_owned)),
            _ => self.invoked_failure.clone(),
        }
    }

    /// Stops the driver and releases its files. After an agent's panic the directory is kept,
    /// whatever the configuration says, so that `tern errors` can still show what happened (the
    /// next driver to start there clears it).
    pub fn close(&mut self) {
        let running = match self.running.take() {
            Some(Running::Threads(mut runners)) => {
                // The network agents first: the conductor's close removes what they send from.
                for runner in runners.iter_mut().rev() {
                    runner.close();
                }
                runners
            }
            Some(Running::Invoked(mut agent)) => {
                let _ = guarded(|| agent.on_close());
                Vec::new()
            }
            None => return,
        };
        // Asked after every thread stopped: a panic in a last duty cycle still counts.
        let failed = self.invoked_failure.is_some()
            || running.iter().any(|runner| runner.failure().is_some());
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

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;
    use crate::agent::{ManualClock, Now};
    use crate::cnc::CncLayout;
    use receiver::Receiver;
    use sender::Sender;
    use std::sync::mpsc;

    /// The conductor, sender and receiver of a driver over a CnC file in a fresh directory.
    fn agents(dir: &std::path::Path) -> DriverAgents {
        agents_and_cnc(dir).0
    }

    fn agents_and_cnc(dir: &std::path::Path) -> (DriverAgents, Arc<CncFile>) {
        let _ = std::fs::remove_dir_all(dir);
        std::fs::create_dir_all(dir).unwrap();
        let now = Now {
            nanos: 0,
            epoch_ms: 1,
        };
        let identity = DriverIdentity {
            pid: 1,
            start_timestamp_ms: 1,
            client_liveness_timeout_ns: 1,
        };
        let layout = CncLayout {
            to_driver_capacity: 4096,
            to_clients_capacity: 4096,
            counters: 64,
            error_log_length: 4096,
        };
        let cnc = Arc::new(CncFile::create(dir, layout, identity).unwrap());
        let config = DriverConfig {
            dir: dir.to_path_buf(),
            clock: Arc::new(ManualClock::new(now)),
            ..DriverConfig::default()
        };
        (
            DriverConductor::agents(Arc::clone(&cnc), config, now).unwrap(),
            cnc,
        )
    }

    /// A panic on the sender's own thread stops every driver thread (the conductor too, so its
    /// heartbeat stops and clients see the driver dead), is reported as the driver's failure,
    /// and is written to the error log and the `agent panics` counter once.
    #[test]
    fn a_sender_panic_stops_the_driver_and_is_recorded_once() {
        let dir = std::env::temp_dir().join(format!("tern-driver-panic-{}", std::process::id()));
        let (
            DriverAgents {
                mut conductor,
                sender,
                receiver,
            },
            cnc,
        ) = agents_and_cnc(&dir);
        let queued = conductor
            .sender()
            .offer(|_: &mut Sender| panic!("the sender broke"));
        assert!(queued.is_ok());
        let clock: Arc<dyn crate::agent::Clock> = Arc::new(ManualClock::starting_now());
        let failure = Arc::new(std::sync::OnceLock::new());
        let mut runners: Vec<_> = compose(
            ThreadingMode::Dedicated,
            Box::new(conductor),
            Box::new(sender),
            Box::new(receiver),
        )
        .into_iter()
        .map(|agent| {
            AgentRunner::start_in_group(
                agent,
                crate::agent::IdleStrategy::Yield,
                Arc::clone(&clock),
                Arc::clone(&failure),
            )
            .unwrap()
        })
        .collect();
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
        while runners.iter().any(AgentRunner::is_running) {
            assert!(
                std::time::Instant::now() < deadline,
                "a driver thread kept running"
            );
            std::thread::yield_now();
        }
        for runner in &mut runners {
            assert_eq!(
                runner.failure(),
                Some("agent driver-sender panicked: the sender broke")
            );
            runner.close();
        }
        let mut logged = Vec::new();
        crate::concurrent::error_log::read_errors(cnc.sections().error_log, |error| {
            logged.push((error.count, error.text.to_owned()));
        });
        assert_eq!(
            logged,
            [(
                1,
                "agent driver-sender panicked: the sender broke".to_owned()
            )]
        );
        let sections = cnc.sections();
        let counters = crate::concurrent::counters::CountersReader::new(
            sections.counters_metadata,
            sections.counters_values,
        )
        .unwrap();
        let mut panics = None;
        counters.for_each(|info| {
            if info.label == "agent panics" {
                panics = Some(info.value);
            }
        });
        assert_eq!(panics, Some(1));
        drop(cnc);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    /// In every mode, work the conductor queues for the sender and the receiver runs on the
    /// thread the mode names for them (the caller's thread in invoker mode).
    #[test]
    fn each_mode_runs_the_sender_and_receiver_where_it_says() {
        let cases = [
            (ThreadingMode::Dedicated, sender::ROLE, receiver::ROLE),
            (ThreadingMode::SharedNetwork, NETWORK_THREAD, NETWORK_THREAD),
            (ThreadingMode::Shared, SHARED_THREAD, SHARED_THREAD),
            (ThreadingMode::Invoker, "invoking", "invoking"),
        ];
        for (mode, sender_thread, receiver_thread) in cases {
            let dir = std::env::temp_dir().join(format!(
                "tern-driver-compose-{}-{mode:?}",
                std::process::id()
            ));
            let DriverAgents {
                mut conductor,
                sender,
                receiver,
            } = agents(&dir);
            let (ran, seen) = mpsc::channel();
            let thread_name = || std::thread::current().name().unwrap_or("?").to_owned();
            let to_sender = ran.clone();
            let queued = conductor.sender().offer(move |_: &mut Sender| {
                to_sender.send(("sender", thread_name())).unwrap();
            });
            assert!(queued.is_ok());
            let queued = conductor.receiver().offer(move |_: &mut Receiver| {
                ran.send(("receiver", thread_name())).unwrap();
            });
            assert!(queued.is_ok());
            let agents = compose(
                mode,
                Box::new(conductor),
                Box::new(sender),
                Box::new(receiver),
            );
            let expected_threads = match mode {
                ThreadingMode::Dedicated => 3,
                ThreadingMode::SharedNetwork => 2,
                ThreadingMode::Shared | ThreadingMode::Invoker => 1,
            };
            assert_eq!(agents.len(), expected_threads, "{mode:?}");
            let mut results = Vec::new();
            if mode == ThreadingMode::Invoker {
                let mut agents = agents;
                let invoking = std::thread::Builder::new()
                    .name("invoking".to_owned())
                    .spawn(move || {
                        agents[0].do_work(Now {
                            nanos: 1,
                            epoch_ms: 1,
                        })
                    })
                    .unwrap();
                assert!(invoking.join().unwrap() >= 2, "both commands count as work");
                results.extend(seen.try_iter());
            } else {
                let clock: Arc<dyn crate::agent::Clock> = Arc::new(ManualClock::starting_now());
                let mut runners: Vec<_> = agents
                    .into_iter()
                    .map(|agent| {
                        AgentRunner::start(
                            agent,
                            crate::agent::IdleStrategy::Yield,
                            Arc::clone(&clock),
                        )
                        .unwrap()
                    })
                    .collect();
                for _ in 0..2 {
                    results.push(
                        seen.recv_timeout(std::time::Duration::from_secs(30))
                            .unwrap(),
                    );
                }
                for runner in &mut runners {
                    runner.close();
                }
            }
            results.sort();
            assert_eq!(
                results,
                [
                    ("receiver", receiver_thread.to_owned()),
                    ("sender", sender_thread.to_owned())
                ],
                "{mode:?}"
            );
            std::fs::remove_dir_all(&dir).unwrap();
        }
    }
}
