//! The client conductor: turns the driver's broadcast responses into ready publications,
//! subscriptions and images, sends keepalives, and watches the driver's heartbeat.
//!
//! It runs under the client's mutex, on the conductor thread or the application's. Only
//! responses to this client's own correlation ids are kept; other clients' are skipped.

use crate::cnc::CncFile;
use crate::mapped_view::MappedView;
use std::collections::{HashMap, HashSet};
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use tern_codec::{MessageHeader, UnknownAction, on_unknown};

use super::subscription::{ImageInfo, ImageShared, SubscriptionState};
use super::{ClientConfig, ClientError, ClientShared, ImageHandler, UnusableImageHandler};
use crate::agent::Now;
use crate::command::{
    self, ClientAction, client_command, on_available_image, on_client_timeout, on_counter_ready,
    on_error, on_operation_success, on_publication_ready, on_subscription_ready,
    on_unavailable_image, release_image,
};
use crate::concurrent::broadcast::{BroadcastError, BroadcastReceiver};
use crate::concurrent::counters::CounterReader;
use crate::logbuffer::log_buffers::LogBuffers;

/// Broadcast messages handled per duty cycle at most.
const MESSAGE_LIMIT: usize = 100;

/// How a publication kind reads in an error.
fn kind(exclusive: bool) -> &'static str {
    if exclusive { "exclusive" } else { "concurrent" }
}

/// A publication the driver has made ready.
pub(crate) struct PublicationReady {
    pub(crate) registration_id: i64,
    pub(crate) session_id: i32,
    pub(crate) stream_id: i32,
    pub(crate) limit: MappedView<CounterReader<'static>>,
    pub(crate) log: Arc<LogBuffers>,
    /// Whether the driver made an exclusive log (one writer) or a shared one.
    pub(crate) exclusive: bool,
}

enum Response {
    Publication(Result<PublicationReady, ClientError>),
    Subscription,
    Counter(i32),
    Success,
    Error(ClientError),
}

/// The client conductor's state.
pub(crate) struct ClientConductor {
    receiver: MappedView<BroadcastReceiver<'static>>,
    scratch: Vec<u8>,
    awaiting: HashSet<i64>,
    responses: HashMap<i64, Response>,
    subscriptions: HashMap<i64, Arc<SubscriptionState>>,
    last_keepalive_ns: i64,
    keepalive_interval_ns: i64,
    driver_timeout_ms: i64,
    fatal: Option<ClientError>,
    on_available: Option<ImageHandler>,
    on_unavailable: Option<ImageHandler>,
    on_unusable: Option<UnusableImageHandler>,
}

impl ClientConductor {
    pub(crate) fn new(
        cnc: &Arc<CncFile>,
        config: &ClientConfig,
        now: Now,
    ) -> Result<Self, BroadcastError> {
        let receiver = MappedView::<BroadcastReceiver<'static>>::try_new(Arc::clone(cnc), |cnc| {
            BroadcastReceiver::new(cnc.sections().to_clients)
        })?;
        let scratch = vec![0u8; cnc.sections().to_clients.capacity() / 8];
        Ok(Self {
            receiver,
            scratch,
            awaiting: HashSet::new(),
            responses: HashMap::new(),
            subscriptions: HashMap::new(),
            last_keepalive_ns: now.nanos,
            keepalive_interval_ns: i64::try_from(config.keepalive_interval.as_nanos())
                .unwrap_or(i64::MAX),
            driver_timeout_ms: i64::try_from(config.driver_timeout.as_millis()).unwrap_or(i64::MAX),
            fatal: None,
            on_available: config.on_available_image.clone(),
            on_unavailable: config.on_unavailable_image.clone(),
            on_unusable: config.on_unusable_image.clone(),
        })
    }

    pub(crate) fn fatal_error(&self) -> Option<ClientError> {
        self.fatal.clone()
    }

    fn fail(&mut self, shared: &ClientShared, error: ClientError) {
        if self.fatal.is_none() {
            self.fatal = Some(error);
        }
        shared.closed.store(true, Ordering::Release);
        for subscription in self.subscriptions.values() {
            subscription.close_images();
        }
    }

    /// Expects a response to `correlation_id`.
    pub(crate) fn expect(&mut self, correlation_id: i64) {
        self.awaiting.insert(correlation_id);
    }

    /// Registers a subscription whose ready response is awaited.
    pub(crate) fn expect_subscription(&mut self, state: Arc<SubscriptionState>) {
        self.awaiting.insert(state.registration_id);
        self.subscriptions.insert(state.registration_id, state);
    }

    /// Forgets a subscription the application closed.
    pub(crate) fn forget_subscription(&mut self, registration_id: i64) {
        if let Some(state) = self.subscriptions.remove(&registration_id) {
            state.close_images();
        }
    }

    /// The publication `registration_id` once the driver answered, if it is of the kind asked
    /// for: an exclusive publication keeps its own tail and must never write a shared log, and
    /// a concurrent one must never race an exclusive writer.
    pub(crate) fn take_publication(
        &mut self,
        shared: &ClientShared,
        registration_id: i64,
        exclusive: bool,
    ) -> Option<Result<PublicationReady, ClientError>> {
        let _ = shared;
        match self.responses.remove(&registration_id)? {
            Response::Publication(Ok(ready)) if ready.exclusive != exclusive => {
                Some(Err(ClientError::Resource(format!(
                    "publication {registration_id} is {}, not {}",
                    kind(ready.exclusive),
                    kind(exclusive)
                ))))
            }
            Response::Publication(result) => Some(result),
            Response::Error(error) => Some(Err(error)),
            _ => Some(Err(ClientError::Resource(format!(
                "unexpected response to {registration_id}"
            )))),
        }
    }

    pub(crate) fn take_subscription(
        &mut self,
        registration_id: i64,
    ) -> Option<Result<Arc<SubscriptionState>, ClientError>> {
        match self.responses.remove(&registration_id)? {
            Response::Subscription => self
                .subscriptions
                .get(&registration_id)
                .map(|state| Ok(Arc::clone(state))),
            Response::Error(error) => {
                self.subscriptions.remove(&registration_id);
                Some(Err(error))
            }
            _ => Some(Err(ClientError::Resource(format!(
                "unexpected response to {registration_id}"
            )))),
        }
    }

    pub(crate) fn take_counter(&mut self, correlation_id: i64) -> Option<Result<i32, ClientError>> {
        match self.responses.remove(&correlation_id)? {
            Response::Counter(id) => Some(Ok(id)),
            Response::Error(error) => Some(Err(error)),
            _ => Some(Err(ClientError::Resource(format!(
                "unexpected response to {correlation_id}"
            )))),
        }
    }

    pub(crate) fn take_success(&mut self, correlation_id: i64) -> Option<Result<(), ClientError>> {
        match self.responses.remove(&correlation_id)? {
            Response::Success => Some(Ok(())),
            Response::Error(error) => Some(Err(error)),
            _ => Some(Err(ClientError::Resource(format!(
                "unexpected response to {correlation_id}"
            )))),
        }
    }

    /// One duty cycle: responses, keepalive, driver liveness.
    pub(crate) fn do_work(&mut self, shared: &ClientShared, now: Now) -> usize {
        if self.fatal.is_some() {
            return 0;
        }
        let mut work = 0;
        while work < MESSAGE_LIMIT {
            let mut message = None;
            let scratch = &mut self.scratch;
            let received = self.receiver.with_mut(|receiver| {
                receiver.receive(scratch, |kind, body| message = Some((kind, body.len())))
            });
            match received {
                Ok(true) => {}
                Ok(false) => break,
                Err(BroadcastError::Lapped { .. }) => {
                    self.fail(shared, ClientError::Lapped);
                    return work;
                }
                Err(error) => {
                    // Longer than the transmitter ever writes: the CnC file is corrupt, and the
                    // message skipped might have been this client's response. Fail loudly.
                    self.fail(shared, ClientError::BadDriverMessage(error.to_string()));
                    return work;
                }
            }
            work += 1;
            if let Some((_, length)) = message {
                let bytes = std::mem::take(&mut self.scratch);
                self.on_message(shared, &bytes[..length]);
                self.scratch = bytes;
            }
        }
        if now.nanos - self.last_keepalive_ns > self.keepalive_interval_ns {
            self.send_keepalive(shared, now.nanos);
            let silent_ms = now.epoch_ms - shared.to_driver.view().consumer_heartbeat();
            if silent_ms > self.driver_timeout_ms {
                self.fail(shared, ClientError::DriverTimeout { silent_ms });
            }
            work += 1;
        }
        work
    }

    pub(crate) fn send_keepalive(&mut self, shared: &ClientShared, now_ns: i64) {
        self.last_keepalive_ns = now_ns;
        if send_client_command(shared, 0, ClientAction::Keepalive).is_err() {
            // The ring is full: the driver is far behind; its heartbeat check decides.
        }
    }

    fn on_message(&mut self, shared: &ClientShared, bytes: &[u8]) {
        let Ok(header) = MessageHeader::decode(bytes) else {
            // Not even a header: nothing says whether it mattered. Records are written whole
            // by the driver, so this is corruption.
            self.fail(
                shared,
                ClientError::BadDriverMessage(format!(
                    "a {}-byte broadcast record without a message header",
                    bytes.len()
                )),
            );
            return;
        };
        if header.schema_id != command::DRIVER_PROTOCOL.id {
            self.on_unknown_message(shared, &header);
            return;
        }
        match header.template_id {
            on_publication_ready::TEMPLATE_ID => {
                if let Ok(ready) = on_publication_ready::Decoder::decode(bytes) {
                    self.on_publication_ready(shared, &ready);
                }
            }
            on_subscription_ready::TEMPLATE_ID => {
                if let Ok(ready) = on_subscription_ready::Decoder::decode(bytes)
                    && self.awaiting.remove(&ready.correlation_id())
                {
                    self.responses
                        .insert(ready.correlation_id(), Response::Subscription);
                }
            }
            on_operation_success::TEMPLATE_ID => {
                if let Ok(success) = on_operation_success::Decoder::decode(bytes)
                    && self.awaiting.remove(&success.correlation_id())
                {
                    self.responses
                        .insert(success.correlation_id(), Response::Success);
                }
            }
            on_counter_ready::TEMPLATE_ID => {
                if let Ok(ready) = on_counter_ready::Decoder::decode(bytes)
                    && self.awaiting.remove(&ready.correlation_id())
                {
                    self.responses.insert(
                        ready.correlation_id(),
                        Response::Counter(ready.counter_id()),
                    );
                }
            }
            on_error::TEMPLATE_ID => {
                if let Ok(error) = on_error::Decoder::decode(bytes)
                    && self.awaiting.remove(&error.correlation_id())
                {
                    let refused = ClientError::Refused {
                        code: error.code(),
                        message: error.message().to_owned(),
                    };
                    self.responses
                        .insert(error.correlation_id(), Response::Error(refused));
                }
            }
            on_available_image::TEMPLATE_ID => {
                if let Ok(image) = on_available_image::Decoder::decode(bytes) {
                    self.on_available_image(shared, &image);
                }
            }
            on_unavailable_image::TEMPLATE_ID => {
                if let Ok(image) = on_unavailable_image::Decoder::decode(bytes) {
                    self.on_unavailable_image(&image);
                }
            }
            on_client_timeout::TEMPLATE_ID => {
                if let Ok(timeout) = on_client_timeout::Decoder::decode(bytes)
                    && timeout.client_id() == shared.client_id
                {
                    self.fail(shared, ClientError::ClientTimedOut);
                }
            }
            _ => self.on_unknown_message(shared, &header),
        }
    }

    /// A message this client does not know: its template's policy decides (DESIGN §6). A
    /// terminate-if-unknown message stops the client, since going on without understanding it
    /// could misread everything after; reject asks the reader to answer with an error, and a
    /// client has nobody to answer, so it skips those as it skips ignorable ones.
    fn on_unknown_message(&mut self, shared: &ClientShared, header: &MessageHeader) {
        match on_unknown(header) {
            UnknownAction::Ignore | UnknownAction::Reject(_) => {}
            UnknownAction::Terminate(message) => self.fail(
                shared,
                ClientError::BadDriverMessage(format!("unknown critical message {message}")),
            ),
        }
    }

    fn on_publication_ready(
        &mut self,
        shared: &ClientShared,
        ready: &on_publication_ready::Decoder<'_>,
    ) {
        let correlation_id = ready.correlation_id();
        if !self.awaiting.remove(&correlation_id) {
            return;
        }
        let limit_id = ready.publisher_limit_counter_id();
        let result = LogBuffers::map(Path::new(ready.log_file()))
            .map_err(|error| ClientError::Resource(error.to_string()))
            .and_then(|log| {
                let limit = shared
                    .counters
                    .try_project(|counters, _| counters.counter_reader(limit_id).ok_or(()))
                    .map_err(|()| {
                        ClientError::Resource(format!(
                            "the publisher limit counter {limit_id} is not allocated"
                        ))
                    })?;
                Ok(PublicationReady {
                    registration_id: correlation_id,
                    session_id: ready.session_id(),
                    stream_id: ready.stream_id(),
                    limit,
                    log: Arc::new(log),
                    exclusive: ready.exclusive() != 0,
                })
            });
        self.responses
            .insert(correlation_id, Response::Publication(result));
    }

    fn on_available_image(
        &mut self,
        shared: &ClientShared,
        image: &on_available_image::Decoder<'_>,
    ) {
        let Some(subscription) = self
            .subscriptions
            .get(&image.subscription_registration_id())
        else {
            return;
        };
        let info = ImageInfo {
            image_id: image.image_id(),
            subscription_registration_id: image.subscription_registration_id(),
            session_id: image.session_id(),
            stream_id: image.stream_id(),
            source_identity: image.source_identity().to_owned(),
        };
        let log = match LogBuffers::map(Path::new(image.log_file())) {
            Ok(log) => Arc::new(log),
            Err(error) => return self.release_image(shared, &info, &error.to_string()),
        };
        let counter_id = image.subscriber_position_counter_id();
        let client_id = shared.client_id;
        let Ok(position) = shared
            .counters
            .try_project(|counters, _| counters.owned_counter(counter_id, client_id).ok_or(()))
        else {
            let reason = format!("position counter {counter_id} is not this client's");
            return self.release_image(shared, &info, &reason);
        };
        subscription.add_image(Arc::new(ImageShared::new(
            info.clone(),
            log,
            position,
            subscription.tethered,
        )));
        if let Some(handler) = &self.on_available {
            handler(&info);
        }
    }

    /// Gives up an image this client cannot read: the driver must stop holding publishers for
    /// it, and the application hears of it through its unusable-image handler.
    pub(crate) fn release_image(&mut self, shared: &ClientShared, info: &ImageInfo, reason: &str) {
        let reason = crate::concurrent::truncate_utf8(reason, 1024);
        let mut buf = [0u8; 1100];
        let sent = release_image::Encoder::wrap(&mut buf)
            .and_then(|mut encoder| {
                encoder
                    .client_id(shared.client_id)
                    .correlation_id(0)
                    .image_id(info.image_id);
                Ok(encoder.reason(reason)?.finish())
            })
            .map_err(|error| ClientError::Resource(error.to_string()))
            .and_then(|length| write_command(shared, release_image::TEMPLATE_ID, &buf[..length]));
        if let Some(handler) = &self.on_unusable {
            handler(info, reason);
        }
        if let Err(error) = sent {
            // The driver would go on counting an image nobody reads: the client cannot go on.
            self.fail(shared, error);
        }
    }

    fn on_unavailable_image(&mut self, image: &on_unavailable_image::Decoder<'_>) {
        let Some(subscription) = self
            .subscriptions
            .get(&image.subscription_registration_id())
        else {
            return;
        };
        if let Some(info) = subscription.remove_image(image.image_id())
            && let Some(handler) = &self.on_unavailable
        {
            handler(&info);
        }
    }
}

/// Writes a client-level command.
pub(crate) fn send_client_command(
    shared: &ClientShared,
    correlation_id: i64,
    action: ClientAction,
) -> Result<(), ClientError> {
    let mut buf = [0u8; 64];
    let mut encoder = client_command::Encoder::wrap(&mut buf)
        .map_err(|error| ClientError::Resource(error.to_string()))?;
    encoder
        .client_id(shared.client_id)
        .correlation_id(correlation_id)
        .action(action);
    let length = encoder.finish();
    if correlation_id != 0 {
        shared.lock().expect(correlation_id);
    }
    write_command(shared, client_command::TEMPLATE_ID, &buf[..length])
}

/// Writes an encoded command to the driver.
pub(crate) fn write_command(
    shared: &ClientShared,
    template_id: u16,
    bytes: &[u8],
) -> Result<(), ClientError> {
    shared
        .to_driver
        .view()
        .write(i32::from(template_id), bytes)
        .map_err(|error| ClientError::Resource(format!("cannot send to the driver: {error}")))
}
