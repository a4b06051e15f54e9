//! The conductor's side of the to-clients broadcast buffer: every response and event the driver
//! sends, encoded once here. Owned by the conductor, whose thread is the buffer's only writer.
//!
//! A response that cannot be encoded or broadcast (a log path longer than a message holds, say)
//! is counted and logged; the client then times out waiting, and the driver carries on.

use tern_codec::EncodeError;

use super::errors::ErrorRecorder;
use crate::command::{
    self, ErrorCode, on_available_image, on_client_timeout, on_counter_ready, on_error,
    on_operation_success, on_publication_ready, on_subscription_ready, on_unavailable_image,
};
use crate::concurrent::broadcast::BroadcastTransmitter;
use crate::mapped_view::MappedView;

/// A publication made ready for a client.
#[derive(Debug)]
pub(crate) struct PublicationReady<'a> {
    pub(crate) correlation_id: i64,
    pub(crate) registration_id: i64,
    pub(crate) session_id: i32,
    pub(crate) stream_id: i32,
    pub(crate) limit_counter_id: i32,
    pub(crate) exclusive: bool,
    pub(crate) log_file: &'a str,
}

/// An image made available to a subscription.
#[derive(Debug)]
pub(crate) struct AvailableImage<'a> {
    pub(crate) image_id: i64,
    pub(crate) subscription_id: i64,
    pub(crate) session_id: i32,
    pub(crate) stream_id: i32,
    pub(crate) position_counter_id: i32,
    pub(crate) log_file: &'a str,
    pub(crate) source_identity: &'a str,
}

/// Encodes and broadcasts what the driver tells its clients.
pub(crate) struct ClientProxy {
    to_clients: MappedView<BroadcastTransmitter<'static>>,
    /// Each message is encoded here before it is broadcast.
    scratch: Vec<u8>,
    errors: ErrorRecorder,
    /// This duty cycle's wall-clock time, for the error log.
    now_ms: i64,
}

impl ClientProxy {
    pub(crate) fn new(
        to_clients: MappedView<BroadcastTransmitter<'static>>,
        errors: ErrorRecorder,
    ) -> Self {
        Self {
            to_clients,
            scratch: vec![0u8; 8192],
            errors,
            now_ms: 0,
        }
    }

    /// Sets the time errors are logged at (once per duty cycle).
    pub(crate) fn set_now_ms(&mut self, now_ms: i64) {
        self.now_ms = now_ms;
    }

    pub(crate) fn publication_ready(&mut self, ready: &PublicationReady<'_>) {
        self.send(on_publication_ready::TEMPLATE_ID, |buf| {
            let mut encoder = on_publication_ready::Encoder::wrap(buf)?;
            encoder
                .correlation_id(ready.correlation_id)
                .registration_id(ready.registration_id)
                .session_id(ready.session_id)
                .stream_id(ready.stream_id)
                .publisher_limit_counter_id(ready.limit_counter_id)
                .exclusive(u8::from(ready.exclusive));
            Ok(encoder.log_file(ready.log_file)?.finish())
        });
    }

    pub(crate) fn subscription_ready(&mut self, correlation_id: i64) {
        self.send(on_subscription_ready::TEMPLATE_ID, |buf| {
            let mut encoder = on_subscription_ready::Encoder::wrap(buf)?;
            encoder.correlation_id(correlation_id);
            Ok(encoder.finish())
        });
    }

    pub(crate) fn counter_ready(&mut self, correlation_id: i64, counter_id: i32) {
        self.send(on_counter_ready::TEMPLATE_ID, |buf| {
            let mut encoder = on_counter_ready::Encoder::wrap(buf)?;
            encoder
                .correlation_id(correlation_id)
                .counter_id(counter_id);
            Ok(encoder.finish())
        });
    }

    pub(crate) fn available_image(&mut self, image: &AvailableImage<'_>) {
        self.send(on_available_image::TEMPLATE_ID, |buf| {
            let mut encoder = on_available_image::Encoder::wrap(buf)?;
            encoder
                .image_id(image.image_id)
                .subscription_registration_id(image.subscription_id)
                .session_id(image.session_id)
                .stream_id(image.stream_id)
                .subscriber_position_counter_id(image.position_counter_id);
            Ok(encoder
                .log_file(image.log_file)?
                .source_identity(image.source_identity)?
                .finish())
        });
    }

    pub(crate) fn unavailable_image(
        &mut self,
        image_id: i64,
        subscription_id: i64,
        stream_id: i32,
    ) {
        self.send(on_unavailable_image::TEMPLATE_ID, |buf| {
            let mut encoder = on_unavailable_image::Encoder::wrap(buf)?;
            encoder
                .image_id(image_id)
                .subscription_registration_id(subscription_id)
                .stream_id(stream_id);
            Ok(encoder.finish())
        });
    }

    pub(crate) fn client_timeout(&mut self, client_id: i64) {
        self.send(on_client_timeout::TEMPLATE_ID, |buf| {
            let mut encoder = on_client_timeout::Encoder::wrap(buf)?;
            encoder.client_id(client_id);
            Ok(encoder.finish())
        });
    }

    pub(crate) fn success(&mut self, correlation_id: i64) {
        self.send(on_operation_success::TEMPLATE_ID, |buf| {
            let mut encoder = on_operation_success::Encoder::wrap(buf)?;
            encoder.correlation_id(correlation_id);
            Ok(encoder.finish())
        });
    }

    /// An error answering `correlation_id`; a message longer than the protocol carries is cut
    /// on a character boundary.
    pub(crate) fn error(&mut self, correlation_id: i64, code: ErrorCode, message: &str) {
        let message = crate::concurrent::truncate_utf8(message, command::ERROR_MESSAGE_MAX);
        self.send(on_error::TEMPLATE_ID, |buf| {
            let mut encoder = on_error::Encoder::wrap(buf)?;
            encoder.correlation_id(correlation_id).code(code);
            Ok(encoder.message(message)?.finish())
        });
    }

    /// Encodes a message into the scratch buffer with `encode` and broadcasts it.
    fn send(
        &mut self,
        template_id: u16,
        encode: impl FnOnce(&mut [u8]) -> Result<usize, EncodeError>,
    ) {
        let scratch = &mut self.scratch;
        let result = encode(scratch)
            .map_err(|error| error.to_string())
            .and_then(|length| {
                self.to_clients
                    .with_mut(|to_clients| {
                        to_clients.transmit(i32::from(template_id), &scratch[..length])
                    })
                    .map_err(|error| error.to_string())
            });
        if let Err(error) = result {
            self.errors.record(
                self.now_ms,
                &format!("cannot broadcast a response: {error}"),
            );
        }
    }
}
