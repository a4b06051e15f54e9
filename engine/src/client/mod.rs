//! The client library: connect to a driver, publish and subscribe.
//!
//! ```
//! use std::time::Duration;
//! use tern_engine::client::{ClientConfig, OfferResult, Tern};
//! use tern_engine::driver::{DriverConfig, MediaDriver};
//!
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! // An embedded driver; `tern driver` runs the same driver as its own process.
//! let dir = std::env::temp_dir().join(format!("tern-doc-{}", std::process::id()));
//! let _driver = MediaDriver::launch(DriverConfig { dir: dir.clone(), ..DriverConfig::default() })?;
//!
//! let tern = Tern::connect(ClientConfig { dir, ..ClientConfig::default() })?;
//! let publication = tern.add_publication("tern:ipc", 1001)?;
//! let mut subscription = tern.add_subscription("tern:ipc", 1001)?;
//! publication.wait_connected(Duration::from_secs(5))?;
//! loop {
//!     match publication.offer(b"hello") {
//!         OfferResult::Ok(_) => break,
//!         OfferResult::BackPressured | OfferResult::AdminAction => continue,
//!         other => return Err(format!("offer failed: {other:?}").into()),
//!     }
//! }
//! let mut received = Vec::new();
//! while received.is_empty() {
//!     subscription.poll(|payload, _header| received.push(payload.to_vec()), 10);
//! }
//! assert_eq!(received, [b"hello".to_vec()]);
//! # Ok(())
//! # }
//! ```
//!
//! ## Threads and memory
//!
//! A [`Tern`] owns the client conductor: it reads the driver's broadcast responses, maps the
//! log buffers of new images, sends keepalives and watches the driver's heartbeat. It runs on its
//! own thread (`tern-client-conductor`, the default) or, with [`ConductorMode::Invoker`], inside
//! whichever thread calls [`Tern::do_work`]. Either way it sits behind a mutex that only the
//! control path (adding and removing resources, image changes) takes.
//!
//! The data path takes no lock and allocates nothing: a [`Publication`] appends to the log's
//! terms with atomic adds and reads the publisher limit counter; a [`Subscription`] reads its
//! images' terms and stores its own position counters, and notices image changes through one
//! atomic version number.

mod conductor;
mod fragment_assembler;
mod publication;
mod subscription;

use crate::concurrent::CachePadded;
use crate::mapped_view::MappedView;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

pub use fragment_assembler::{AssemblerLimits, FragmentAssembler, MessageAssembler};
pub use publication::{ExclusivePublication, OfferResult, Publication};
pub use subscription::{Image, ImageInfo, Subscription};

pub use crate::logbuffer::frame_header::FragmentHeader;
pub use crate::logbuffer::term_appender::{BlockError, BufferClaim};
pub use crate::logbuffer::term_reader::ControlledAction;

use crate::agent::{Agent, AgentRunner, Clock, IdleStrategy, Now, SystemClock};
use crate::cnc::{CncError, CncFile};
use crate::command::ErrorCode;
use crate::concurrent::counters::CountersReader;
use crate::concurrent::ring_buffer::ManyToOneRingBuffer;
use conductor::ClientConductor;

/// Where the client conductor runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ConductorMode {
    /// On its own thread.
    #[default]
    Thread,
    /// On the application's thread, which calls [`Tern::do_work`] at least every keepalive
    /// interval.
    Invoker,
}

/// A callback for image changes.
pub type ImageHandler = Arc<dyn Fn(&ImageInfo) + Send + Sync>;

/// A callback for an image the client could not use (its log would not map, say), with why.
/// The client has already told the driver to stop counting it.
pub type UnusableImageHandler = Arc<dyn Fn(&ImageInfo, &str) + Send + Sync>;

/// Client settings.
#[derive(Clone)]
pub struct ClientConfig {
    /// The driver directory.
    pub dir: PathBuf,
    /// How long to wait for a driver to appear and for each command's response.
    pub timeout: Duration,
    /// A driver whose heartbeat is older than this is dead.
    pub driver_timeout: Duration,
    /// How often to tell the driver this client is alive.
    pub keepalive_interval: Duration,
    /// Where the client conductor runs.
    pub conductor_mode: ConductorMode,
    /// The conductor thread's idle strategy.
    pub idle_strategy: IdleStrategy,
    /// Called when a subscription gains an image.
    pub on_available_image: Option<ImageHandler>,
    /// Called when a subscription loses an image.
    pub on_unavailable_image: Option<ImageHandler>,
    /// Called when the driver offered an image this client could not use.
    pub on_unusable_image: Option<UnusableImageHandler>,
    /// Where the client conductor reads the time for keepalives and the driver's liveness:
    /// the system clock, or a [`ManualClock`](crate::agent::ManualClock) in tests.
    pub clock: Arc<dyn Clock>,
}

impl std::fmt::Debug for ClientConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClientConfig")
            .field("dir", &self.dir)
            .field("timeout", &self.timeout)
            .field("driver_timeout", &self.driver_timeout)
            .field("keepalive_interval", &self.keepalive_interval)
            .field("conductor_mode", &self.conductor_mode)
            .finish_non_exhaustive()
    }
}

impl Default for ClientConfig {
    fn default() -> Self {
        Self {
            dir: crate::directory::default_directory(),
            timeout: Duration::from_secs(10),
            driver_timeout: Duration::from_secs(10),
            keepalive_interval: Duration::from_millis(500),
            conductor_mode: ConductorMode::default(),
            idle_strategy: IdleStrategy::Sleep(Duration::from_millis(16)),
            on_available_image: None,
            on_unavailable_image: None,
            on_unusable_image: None,
            clock: Arc::new(SystemClock),
        }
    }
}

/// What went wrong in the client.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ClientError {
    /// No driver answered in time.
    #[error("no driver answered in {dir} within {timeout:?}: {reason}")]
    NoDriver {
        /// The directory.
        dir: PathBuf,
        /// How long the client waited.
        timeout: Duration,
        /// The last thing that went wrong.
        reason: String,
    },
    /// The driver stopped stamping its heartbeat: it died or hung.
    #[error("the driver is not responding: no heartbeat for {silent_ms} ms")]
    DriverTimeout {
        /// How long it has been silent.
        silent_ms: i64,
    },
    /// The driver closed this client (it missed its keepalives).
    #[error("the driver closed this client after it missed its keepalives")]
    ClientTimedOut,
    /// The client fell so far behind the driver's broadcasts that it missed responses.
    #[error("the client fell behind the driver's broadcast buffer and missed responses")]
    Lapped,
    /// The driver's broadcast carried a message this client cannot read and must not skip
    /// (corrupt, oversized, or unknown and marked terminate-if-unknown).
    #[error("the driver sent a message this client cannot read: {0}")]
    BadDriverMessage(String),
    /// The client's conductor thread panicked and stopped.
    #[error("the client conductor stopped: {0}")]
    ConductorStopped(String),
    /// The client is closed.
    #[error("the client is closed")]
    Closed,
    /// The driver refused a command.
    #[error("the driver refused: {message} ({code:?})")]
    Refused {
        /// Why.
        code: ErrorCode,
        /// In words.
        message: String,
    },
    /// No response came within the timeout.
    #[error("no response to {what} within {timeout:?}")]
    Timeout {
        /// What was asked.
        what: &'static str,
        /// How long the client waited.
        timeout: Duration,
    },
    /// A file from the driver could not be used.
    #[error("{0}")]
    Resource(String),
}

/// State shared by the client's handles.
pub(crate) struct ClientShared {
    pub(crate) cnc: Arc<CncFile>,
    pub(crate) to_driver: MappedView<ManyToOneRingBuffer<'static>>,
    pub(crate) counters: MappedView<CountersReader<'static>>,
    pub(crate) client_id: i64,
    /// Read on every offer: on its own cache line, away from the conductor's mutex.
    pub(crate) closed: CachePadded<AtomicBool>,
    pub(crate) conductor: std::sync::Mutex<ClientConductor>,
    pub(crate) config: ClientConfig,
}

impl ClientShared {
    pub(crate) fn is_closed(&self) -> bool {
        self.closed.load(Ordering::Acquire)
    }

    /// Runs the conductor until `ready` returns a value or the timeout passes.
    pub(crate) fn await_response<T>(
        &self,
        what: &'static str,
        mut ready: impl FnMut(&mut ClientConductor) -> Option<Result<T, ClientError>>,
    ) -> Result<T, ClientError> {
        let deadline = Instant::now() + self.config.timeout;
        loop {
            {
                let mut conductor = self.lock();
                conductor.do_work(self, self.config.clock.now());
                if let Some(error) = conductor.fatal_error() {
                    return Err(error);
                }
                if let Some(result) = ready(&mut conductor) {
                    return result;
                }
            }
            if Instant::now() > deadline {
                return Err(ClientError::Timeout {
                    what,
                    timeout: self.config.timeout,
                });
            }
            std::thread::sleep(Duration::from_micros(100));
        }
    }

    pub(crate) fn lock(&self) -> std::sync::MutexGuard<'_, ClientConductor> {
        // A panic while holding the lock poisons it; the conductor's state is still consistent
        // (every update is a single insert or remove), so carry on with it.
        self.conductor
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

/// A connection to a media driver.
pub struct Tern {
    shared: Arc<ClientShared>,
    runner: Option<AgentRunner>,
}

/// The client conductor as an agent for its own thread.
struct ConductorAgent(Arc<ClientShared>);

impl Agent for ConductorAgent {
    fn do_work(&mut self, now: Now) -> usize {
        if self.0.is_closed() {
            return 0;
        }
        self.0.lock().do_work(&self.0, now)
    }

    fn role_name(&self) -> &str {
        "tern-client-conductor"
    }
}

impl Tern {
    /// Connects to the driver in `config.dir`, waiting up to `config.timeout` for one to appear.
    pub fn connect(config: ClientConfig) -> Result<Self, ClientError> {
        let deadline = Instant::now() + config.timeout;
        let cnc = loop {
            let reason = match CncFile::open(&config.dir) {
                Ok(cnc) => match check_heartbeat(&cnc, &config) {
                    Ok(()) => break cnc,
                    Err(error) => error.to_string(),
                },
                Err(CncError::Version { path, found }) => {
                    return Err(ClientError::Resource(
                        CncError::Version { path, found }.to_string(),
                    ));
                }
                Err(error) => error.to_string(),
            };
            if Instant::now() > deadline {
                return Err(ClientError::NoDriver {
                    dir: config.dir.clone(),
                    timeout: config.timeout,
                    reason,
                });
            }
            std::thread::sleep(Duration::from_millis(10));
        };
        let cnc = Arc::new(cnc);
        let to_driver =
            MappedView::<ManyToOneRingBuffer<'static>>::try_new(Arc::clone(&cnc), |cnc| {
                ManyToOneRingBuffer::new(cnc.sections().to_driver)
            })
            .map_err(|error| ClientError::Resource(error.to_string()))?;
        let counters = MappedView::<CountersReader<'static>>::try_new(Arc::clone(&cnc), |cnc| {
            let sections = cnc.sections();
            CountersReader::new(sections.counters_metadata, sections.counters_values)
        })
        .map_err(|error| ClientError::Resource(error.to_string()))?;
        let conductor = ClientConductor::new(&cnc, &config, config.clock.now())
            .map_err(|error| ClientError::Resource(error.to_string()))?;
        let shared = Arc::new(ClientShared {
            client_id: to_driver.view().next_correlation_id(),
            cnc,
            to_driver,
            counters,
            closed: CachePadded(AtomicBool::new(false)),
            conductor: std::sync::Mutex::new(conductor),
            config: config.clone(),
        });
        shared
            .lock()
            .send_keepalive(&shared, shared.config.clock.now().nanos);
        let runner = match config.conductor_mode {
            ConductorMode::Thread => Some(
                AgentRunner::start(
                    Box::new(ConductorAgent(Arc::clone(&shared))),
                    config.idle_strategy,
                    Arc::clone(&config.clock),
                )
                .map_err(|error| ClientError::Resource(error.to_string()))?,
            ),
            ConductorMode::Invoker => None,
        };
        Ok(Self { shared, runner })
    }

    /// Where this client's conductor runs: an [`ConductorMode::Invoker`] client's owner calls
    /// [`Tern::do_work`].
    pub fn conductor_mode(&self) -> ConductorMode {
        self.shared.config.conductor_mode
    }

    /// This client's id.
    pub fn client_id(&self) -> i64 {
        self.shared.client_id
    }

    /// Runs the client conductor once ([`ConductorMode::Invoker`]); returns the work done.
    pub fn do_work(&self) -> usize {
        if self.shared.is_closed() {
            return 0;
        }
        self.shared
            .lock()
            .do_work(&self.shared, self.shared.config.clock.now())
    }

    /// A fatal error the conductor met (driver dead, client timed out, lapped), if any.
    pub fn fatal_error(&self) -> Option<ClientError> {
        if let Some(failure) = self.runner.as_ref().and_then(AgentRunner::failure) {
            // Its conductor thread died: no keepalives, no responses. The client is finished,
            // and its handles say so (offers report Closed) rather than carry on unserved.
            self.shared.closed.store(true, Ordering::Release);
            return Some(ClientError::ConductorStopped(failure.to_owned()));
        }
        self.shared.lock().fatal_error()
    }

    /// Starts adding a publication; returns its registration id for [`Tern::poll_publication`].
    pub fn async_add_publication(&self, channel: &str, stream_id: i32) -> Result<i64, ClientError> {
        publication::send_add(&self.shared, channel, stream_id, false)
    }

    /// The publication `registration_id` once the driver has answered.
    pub fn poll_publication(
        &self,
        registration_id: i64,
    ) -> Option<Result<Publication, ClientError>> {
        self.poll_ready(registration_id, false)
            .map(|result| result.map(|ready| Publication::new(Arc::clone(&self.shared), ready)))
    }

    /// Adds a concurrent publication and waits for it.
    pub fn add_publication(
        &self,
        channel: &str,
        stream_id: i32,
    ) -> Result<Publication, ClientError> {
        let ready = self.add_ready(channel, stream_id, false)?;
        Ok(Publication::new(Arc::clone(&self.shared), ready))
    }

    /// Adds an exclusive publication (one writer, no atomic add) and waits for it.
    pub fn add_exclusive_publication(
        &self,
        channel: &str,
        stream_id: i32,
    ) -> Result<ExclusivePublication, ClientError> {
        let ready = self.add_ready(channel, stream_id, true)?;
        Ok(ExclusivePublication::new(Arc::clone(&self.shared), ready))
    }

    /// Runs the conductor once and takes publication `registration_id` of the kind asked for,
    /// once the driver has answered.
    fn poll_ready(
        &self,
        registration_id: i64,
        exclusive: bool,
    ) -> Option<Result<conductor::PublicationReady, ClientError>> {
        let mut conductor = self.shared.lock();
        conductor.do_work(&self.shared, self.shared.config.clock.now());
        conductor.take_publication(&self.shared, registration_id, exclusive)
    }

    /// Adds a publication of the kind asked for and waits for the driver's answer.
    fn add_ready(
        &self,
        channel: &str,
        stream_id: i32,
        exclusive: bool,
    ) -> Result<conductor::PublicationReady, ClientError> {
        let registration_id = publication::send_add(&self.shared, channel, stream_id, exclusive)?;
        let what = if exclusive {
            "add exclusive publication"
        } else {
            "add publication"
        };
        self.shared.await_response(what, |conductor| {
            conductor.take_publication(&self.shared, registration_id, exclusive)
        })
    }

    /// Starts adding an exclusive publication; returns its registration id for
    /// [`Tern::poll_exclusive_publication`].
    pub fn async_add_exclusive_publication(
        &self,
        channel: &str,
        stream_id: i32,
    ) -> Result<i64, ClientError> {
        publication::send_add(&self.shared, channel, stream_id, true)
    }

    /// The exclusive publication `registration_id` once the driver has answered.
    pub fn poll_exclusive_publication(
        &self,
        registration_id: i64,
    ) -> Option<Result<ExclusivePublication, ClientError>> {
        self.poll_ready(registration_id, true).map(|result| {
            result.map(|ready| ExclusivePublication::new(Arc::clone(&self.shared), ready))
        })
    }

    /// Starts adding a subscription; returns its registration id for
    /// [`Tern::poll_subscription`].
    pub fn async_add_subscription(
        &self,
        channel: &str,
        stream_id: i32,
    ) -> Result<i64, ClientError> {
        subscription::send_add(&self.shared, channel, stream_id)
    }

    /// The subscription `registration_id` once the driver has answered.
    pub fn poll_subscription(
        &self,
        registration_id: i64,
    ) -> Option<Result<Subscription, ClientError>> {
        let mut conductor = self.shared.lock();
        conductor.do_work(&self.shared, self.shared.config.clock.now());
        conductor
            .take_subscription(registration_id)
            .map(|result| result.map(|state| Subscription::new(Arc::clone(&self.shared), state)))
    }

    /// Adds a subscription and waits for it.
    pub fn add_subscription(
        &self,
        channel: &str,
        stream_id: i32,
    ) -> Result<Subscription, ClientError> {
        let registration_id = subscription::send_add(&self.shared, channel, stream_id)?;
        let state = self
            .shared
            .await_response("add subscription", |conductor| {
                conductor.take_subscription(registration_id)
            })?;
        Ok(Subscription::new(Arc::clone(&self.shared), state))
    }

    /// The driver's process id.
    pub fn driver_pid(&self) -> i64 {
        self.shared.cnc.identity().pid
    }

    /// Adds a counter this client owns (visible in `tern stat`) and waits for it.
    pub fn add_counter(
        &self,
        type_id: i32,
        key: &[u8],
        label: &str,
    ) -> Result<UserCounter, ClientError> {
        if self.shared.is_closed() {
            return Err(ClientError::Closed);
        }
        let correlation_id = self.shared.to_driver.view().next_correlation_id();
        let mut buf = vec![0u8; 128 + key.len() + label.len()];
        let resource = |error: tern_codec::EncodeError| ClientError::Resource(error.to_string());
        let mut encoder = crate::command::add_counter::Encoder::wrap(&mut buf).map_err(resource)?;
        encoder
            .client_id(self.shared.client_id)
            .correlation_id(correlation_id)
            .type_id(type_id);
        let length = encoder
            .key(key)
            .map_err(resource)?
            .label(label)
            .map_err(resource)?
            .finish();
        self.shared.lock().expect(correlation_id);
        conductor::write_command(
            &self.shared,
            crate::command::add_counter::TEMPLATE_ID,
            &buf[..length],
        )?;
        let id = self.shared.await_response("add counter", |conductor| {
            conductor.take_counter(correlation_id)
        })?;
        let client_id = self.shared.client_id;
        let counter = self
            .shared
            .counters
            .try_project(|counters, _| counters.owned_counter(id, client_id).ok_or(()))
            .map_err(|()| {
                ClientError::Resource(format!("counter {id} is not allocated to this client"))
            })?;
        Ok(UserCounter {
            shared: Arc::clone(&self.shared),
            counter,
        })
    }

    /// Asks the driver to stop and waits for its answer.
    pub fn terminate_driver(&self) -> Result<(), ClientError> {
        let correlation_id = self.shared.to_driver.view().next_correlation_id();
        conductor::send_client_command(
            &self.shared,
            correlation_id,
            crate::command::ClientAction::TerminateDriver,
        )?;
        self.shared.await_response("terminate driver", |conductor| {
            conductor.take_success(correlation_id)
        })
    }

    /// The driver's counters, for reading.
    pub fn counters(&self) -> CountersReader<'_> {
        *self.shared.counters.view()
    }

    /// Closes the client: the driver releases its publications and subscriptions now.
    pub fn close(&mut self) {
        if self.shared.closed.swap(true, Ordering::AcqRel) {
            return;
        }
        if let Some(mut runner) = self.runner.take() {
            runner.close();
        }
        let _ =
            conductor::send_client_command(&self.shared, 0, crate::command::ClientAction::Close);
    }
}

impl Drop for Tern {
    fn drop(&mut self) {
        self.close();
    }
}

/// A counter a client added; the driver frees it when this is dropped or the client closes.
pub struct UserCounter {
    shared: Arc<ClientShared>,
    counter: MappedView<crate::concurrent::counters::Counter<'static>>,
}

impl std::fmt::Debug for UserCounter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UserCounter")
            .field("id", &self.counter.view().id())
            .finish()
    }
}

impl UserCounter {
    /// The counter's id.
    pub fn id(&self) -> i32 {
        self.counter.view().id()
    }

    /// The counter's value.
    pub fn get(&self) -> i64 {
        self.counter.view().get()
    }

    /// Sets the value.
    pub fn set(&self, value: i64) {
        self.counter.view().set(value);
    }

    /// Adds to the value.
    pub fn increment(&self, delta: i64) -> i64 {
        self.counter.view().increment(delta)
    }
}

impl Drop for UserCounter {
    fn drop(&mut self) {
        if self.shared.is_closed() {
            return;
        }
        let mut buf = [0u8; 64];
        let Ok(mut encoder) = crate::command::remove_resource::Encoder::wrap(&mut buf) else {
            return;
        };
        encoder
            .client_id(self.shared.client_id)
            .correlation_id(self.shared.to_driver.view().next_correlation_id())
            .registration_id(i64::from(self.counter.view().id()))
            .kind(crate::command::ResourceKind::Counter);
        let length = encoder.finish();
        let _ = conductor::write_command(
            &self.shared,
            crate::command::remove_resource::TEMPLATE_ID,
            &buf[..length],
        );
    }
}

fn check_heartbeat(cnc: &CncFile, config: &ClientConfig) -> Result<(), ClientError> {
    let ring = ManyToOneRingBuffer::new(cnc.sections().to_driver)
        .map_err(|error| ClientError::Resource(error.to_string()))?;
    let silent_ms = config.clock.now().epoch_ms - ring.consumer_heartbeat();
    if silent_ms > i64::try_from(config.driver_timeout.as_millis()).unwrap_or(i64::MAX) {
        return Err(ClientError::DriverTimeout { silent_ms });
    }
    Ok(())
}
