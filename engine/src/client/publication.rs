//! Publications: append messages to a stream's log.
//!
//! [`Publication`] is concurrent: many threads (and other publications of the same stream in
//! other processes) may offer at once; each offer claims its frames with one atomic add.
//! [`ExclusivePublication`] has one writer, keeps its tail itself and publishes it with a plain
//! release store, which is cheaper. Both refuse to run past the publisher limit the driver keeps
//! at the slowest subscriber plus the window: back-pressure, never overwriting unread data.

use std::sync::Arc;
use std::time::{Duration, Instant};

use super::conductor::{PublicationReady, write_command};
use super::{ClientError, ClientShared};
use crate::command::{
    DestinationAction, ResourceKind, add_publication, destination, remove_resource,
};
use crate::logbuffer::descriptor::{index_by_term_count, tail_term_id, tail_term_offset};
use crate::logbuffer::frame_header::HeaderTemplate;
use crate::logbuffer::term_appender::{
    Appended, BlockError, BufferClaim, ExclusiveTermAppender, TermAppender, align_frame,
    check_block,
};

/// What an offer did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[must_use = "an offer may fail: back-pressure and admin actions ask for a retry"]
pub enum OfferResult {
    /// Appended; the stream's position after the message.
    Ok(i64),
    /// No subscriber is connected.
    NotConnected,
    /// The slowest subscriber is a window behind: retry later.
    BackPressured,
    /// The log rotated to a new term during the offer: retry now.
    AdminAction,
    /// The publication or its client is closed.
    Closed,
    /// The stream reached the largest position its term length allows.
    MaxPositionExceeded,
    /// The message is longer than the stream allows.
    MessageTooLong {
        /// Its length.
        length: usize,
        /// The stream's maximum.
        max: usize,
    },
}

impl OfferResult {
    /// Whether the message was appended.
    pub fn is_ok(&self) -> bool {
        matches!(self, Self::Ok(_))
    }
}

/// Sends an add-publication command; returns its registration id.
pub(crate) fn send_add(
    shared: &ClientShared,
    channel: &str,
    stream_id: i32,
    exclusive: bool,
) -> Result<i64, ClientError> {
    if shared.is_closed() {
        return Err(ClientError::Closed);
    }
    let correlation_id = shared.to_driver.view().next_correlation_id();
    let mut buf = vec![0u8; 64 + channel.len()];
    let mut encoder = add_publication::Encoder::wrap(&mut buf)
        .map_err(|error| ClientError::Resource(error.to_string()))?;
    encoder
        .client_id(shared.client_id)
        .correlation_id(correlation_id)
        .stream_id(stream_id)
        .exclusive(u8::from(exclusive));
    let length = encoder
        .channel(channel)
        .map_err(|error| ClientError::Resource(error.to_string()))?
        .finish();
    shared.lock().expect(correlation_id);
    write_command(shared, add_publication::TEMPLATE_ID, &buf[..length])?;
    Ok(correlation_id)
}

/// What both kinds of publication share.
struct PublicationCore {
    shared: Arc<ClientShared>,
    ready: PublicationReady,
    template: HeaderTemplate,
    max_payload: usize,
    max_message_length: usize,
    max_position: i64,
}

impl PublicationCore {
    fn new(shared: Arc<ClientShared>, ready: PublicationReady) -> Self {
        let metadata = ready.log.metadata();
        let geometry = ready.log.geometry();
        Self {
            template: HeaderTemplate::new(metadata.default_header()),
            max_payload: usize::try_from(tern_codec::frame::max_payload_length(metadata.mtu()))
                .unwrap_or(0),
            max_message_length: usize::try_from(geometry.max_message_length()).unwrap_or(0),
            max_position: geometry.max_position(),
            shared,
            ready,
        }
    }

    fn position(&self) -> i64 {
        let metadata = self.ready.log.metadata();
        let term_count = metadata.active_term_count();
        let raw_tail = metadata.raw_tail(index_by_term_count(i64::from(term_count)));
        let geometry = self.ready.log.geometry();
        geometry.position(
            tail_term_id(raw_tail),
            tail_term_offset(raw_tail, geometry.term_length()),
        )
    }

    /// Checks everything but the append; `Ok` carries the term count, the term id, the
    /// partition index and the tail's offset in the term (at most the term length: a term
    /// filled exactly is full, not at offset 0 of the next).
    #[inline]
    fn check(&self, length: usize) -> Result<(i32, i32, usize, u32), OfferResult> {
        if self.shared.is_closed() {
            return Err(OfferResult::Closed);
        }
        if length > self.max_message_length {
            return Err(OfferResult::MessageTooLong {
                length,
                max: self.max_message_length,
            });
        }
        let metadata = self.ready.log.metadata();
        let geometry = self.ready.log.geometry();
        let term_count = metadata.active_term_count();
        let index = index_by_term_count(i64::from(term_count));
        let raw_tail = metadata.raw_tail(index);
        let term_id = tail_term_id(raw_tail);
        if term_id.wrapping_sub(geometry.initial_term_id()) != term_count {
            // Another publisher is rotating the log.
            return Err(OfferResult::AdminAction);
        }
        let term_offset = tail_term_offset(raw_tail, geometry.term_length());
        let position = geometry.position(term_id, term_offset);
        if position >= self.ready.limit.view().get() {
            return Err(self.refused());
        }
        if position + i64::try_from(align_frame(length + 32)).unwrap_or(i64::MAX)
            > self.max_position
        {
            return Err(OfferResult::MaxPositionExceeded);
        }
        Ok((term_count, term_id, index, term_offset))
    }

    /// An offer refused at the limit, counted where `tern stat` can show it: who is being held
    /// back, and how often.
    #[cold]
    fn refused(&self) -> OfferResult {
        let metadata = self.ready.log.metadata();
        if metadata.is_connected() {
            metadata.count_back_pressured();
            OfferResult::BackPressured
        } else {
            metadata.count_not_connected();
            OfferResult::NotConnected
        }
    }

    fn outcome(&self, term_count: i32, appended: Appended) -> OfferResult {
        match appended {
            Appended::Ok {
                term_id,
                term_offset,
            } => OfferResult::Ok(self.ready.log.geometry().position(term_id, term_offset)),
            Appended::Tripped { term_id } => {
                self.ready.log.metadata().rotate(term_count, term_id);
                OfferResult::AdminAction
            }
        }
    }

    fn wait_connected(&self, timeout: Duration) -> Result<(), ClientError> {
        let deadline = Instant::now() + timeout;
        while !self.ready.log.metadata().is_connected() {
            if self.shared.is_closed() {
                return Err(self
                    .shared
                    .lock()
                    .fatal_error()
                    .unwrap_or(ClientError::Closed));
            }
            if Instant::now() > deadline {
                return Err(ClientError::Timeout {
                    what: "a connected subscriber",
                    timeout,
                });
            }
            std::thread::sleep(Duration::from_micros(200));
        }
        Ok(())
    }
}

impl PublicationCore {
    /// Asks the driver to add or remove a destination; waits for its answer.
    fn destination(&self, channel: &str, action: DestinationAction) -> Result<(), ClientError> {
        if self.shared.is_closed() {
            return Err(ClientError::Closed);
        }
        let correlation_id = self.shared.to_driver.view().next_correlation_id();
        let mut buf = vec![0u8; 96 + channel.len()];
        let resource = |error: tern_codec::EncodeError| ClientError::Resource(error.to_string());
        let mut encoder = destination::Encoder::wrap(&mut buf).map_err(resource)?;
        encoder
            .client_id(self.shared.client_id)
            .correlation_id(correlation_id)
            .publication_id(self.ready.registration_id)
            .action(action);
        let length = encoder.channel(channel).map_err(resource)?.finish();
        self.shared.lock().expect(correlation_id);
        write_command(&self.shared, destination::TEMPLATE_ID, &buf[..length])?;
        self.shared.await_response("destination", |conductor| {
            conductor.take_success(correlation_id)
        })
    }
}

impl Drop for PublicationCore {
    fn drop(&mut self) {
        if self.shared.is_closed() {
            return;
        }
        let mut buf = [0u8; 64];
        let Ok(mut encoder) = remove_resource::Encoder::wrap(&mut buf) else {
            return;
        };
        encoder
            .client_id(self.shared.client_id)
            .correlation_id(self.shared.to_driver.view().next_correlation_id())
            .registration_id(self.ready.registration_id)
            .kind(ResourceKind::Publication);
        let length = encoder.finish();
        // Best effort: if the ring is full the driver releases it when the client closes.
        let _ = write_command(&self.shared, remove_resource::TEMPLATE_ID, &buf[..length]);
    }
}

macro_rules! publication_accessors {
    () => {
        /// The stream.
        pub fn stream_id(&self) -> i32 {
            self.core.ready.stream_id
        }

        /// The log's session.
        pub fn session_id(&self) -> i32 {
            self.core.ready.session_id
        }

        /// The registration id the driver knows this publication by.
        pub fn registration_id(&self) -> i64 {
            self.core.ready.registration_id
        }

        /// The stream position publishers have reached.
        pub fn position(&self) -> i64 {
            self.core.position()
        }

        /// How far publishers may go before back-pressure.
        pub fn publisher_limit(&self) -> i64 {
            self.core.ready.limit.view().get()
        }

        /// How far the publisher may run ahead of the slowest subscriber.
        pub fn window_length(&self) -> i64 {
            i64::from(self.core.ready.log.metadata().publication_window())
        }

        /// Whether every connected subscriber has read everything published (the driver's
        /// limit has caught up with the position).
        pub fn is_drained(&self) -> bool {
            self.publisher_limit() - self.window_length() >= self.position()
        }

        /// Whether a subscriber is connected.
        pub fn is_connected(&self) -> bool {
            self.core.ready.log.metadata().is_connected()
        }

        /// Whether the publication or its client is closed.
        pub fn is_closed(&self) -> bool {
            self.core.shared.is_closed()
        }

        /// The longest message an offer accepts.
        pub fn max_message_length(&self) -> usize {
            self.core.max_message_length
        }

        /// The most payload one frame (and so one claim) carries.
        pub fn max_payload_length(&self) -> usize {
            self.core.max_payload
        }

        /// Waits until a subscriber is connected.
        pub fn wait_connected(&self, timeout: Duration) -> Result<(), ClientError> {
            self.core.wait_connected(timeout)
        }

        /// Starts sending to `channel` (`tern:udp?endpoint=host:port`) as well: for a
        /// multi-destination publication in manual control mode
        /// (`tern:udp?control=host:port|control-mode=manual`). Waits for the driver's answer.
        pub fn add_destination(&self, channel: &str) -> Result<(), ClientError> {
            self.core.destination(channel, DestinationAction::Add)
        }

        /// Stops sending to a destination added with `add_destination`.
        pub fn remove_destination(&self, channel: &str) -> Result<(), ClientError> {
            self.core.destination(channel, DestinationAction::Remove)
        }
    };
}

/// A concurrent publication: `offer` from any thread.
pub struct Publication {
    core: PublicationCore,
}

impl std::fmt::Debug for Publication {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Publication")
            .field("stream_id", &self.stream_id())
            .field("session_id", &self.session_id())
            .finish_non_exhaustive()
    }
}

impl Publication {
    pub(crate) fn new(shared: Arc<ClientShared>, ready: PublicationReady) -> Self {
        Self {
            core: PublicationCore::new(shared, ready),
        }
    }

    publication_accessors!();

    /// Appends one message.
    #[inline]
    pub fn offer(&self, message: &[u8]) -> OfferResult {
        if message.len() > self.core.max_payload {
            return self.offer_parts(&[message]);
        }
        let (term_count, _, index, _) = match self.core.check(message.len()) {
            Ok(checked) => checked,
            Err(result) => return result,
        };
        let log = &self.core.ready.log;
        let appender = TermAppender::new(log.term(index), log.metadata(), index);
        let appended = appender.append_unfragmented(&self.core.template, message, 0);
        self.core.outcome(term_count, appended)
    }

    /// Appends one message made of `parts` laid end to end, without copying them together.
    pub fn offer_parts(&self, parts: &[&[u8]]) -> OfferResult {
        let length = parts.iter().map(|part| part.len()).sum();
        let (term_count, _, index, _) = match self.core.check(length) {
            Ok(checked) => checked,
            Err(result) => return result,
        };
        let log = &self.core.ready.log;
        let appender = TermAppender::new(log.term(index), log.metadata(), index);
        let appended = appender.append(&self.core.template, parts, self.core.max_payload, 0);
        self.core.outcome(term_count, appended)
    }

    /// Claims `length` bytes (at most one frame's payload) to fill in place, then commit or
    /// abort. A claim dropped unfinished is aborted.
    pub fn try_claim(&self, length: usize) -> Result<BufferClaim<'_>, OfferResult> {
        if length > self.core.max_payload {
            return Err(OfferResult::MessageTooLong {
                length,
                max: self.core.max_payload,
            });
        }
        let (term_count, _, index, _) = self.core.check(length)?;
        let log = &self.core.ready.log;
        let appender = TermAppender::new(log.term(index), log.metadata(), index);
        appender
            .claim(&self.core.template, length, 0)
            .map_err(|appended| self.core.outcome(term_count, appended))
    }
}

/// An exclusive publication: one writer, `offer` through `&mut self`.
///
/// Being the log's only writer, it keeps its own tail (term id, offset, partition, position of
/// the term's start) instead of reading the shared tail back on every offer, as Aeron's
/// exclusive publication does; it stores the tail after each append for the driver.
pub struct ExclusivePublication {
    core: PublicationCore,
    term_count: i32,
    term_id: i32,
    /// The next free offset in the active term (at most the term length).
    term_offset: u32,
    /// The active partition.
    index: usize,
    /// The stream position at the start of the active term.
    term_begin_position: i64,
}

impl std::fmt::Debug for ExclusivePublication {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ExclusivePublication")
            .field("stream_id", &self.stream_id())
            .field("session_id", &self.session_id())
            .field("term_id", &self.term_id)
            .field("term_offset", &self.term_offset)
            .finish_non_exhaustive()
    }
}

impl ExclusivePublication {
    pub(crate) fn new(shared: Arc<ClientShared>, ready: PublicationReady) -> Self {
        let core = PublicationCore::new(shared, ready);
        let metadata = core.ready.log.metadata();
        let geometry = core.ready.log.geometry();
        let term_count = metadata.active_term_count();
        let index = index_by_term_count(i64::from(term_count));
        let raw_tail = metadata.raw_tail(index);
        let term_id = tail_term_id(raw_tail);
        // A tail off the frame alignment (written by another process) is rounded up to the next
        // frame, within the term: this publication writes only at aligned offsets.
        let term_offset = tail_term_offset(raw_tail, geometry.term_length())
            .next_multiple_of(32)
            .min(geometry.term_length());
        Self {
            term_begin_position: geometry.position(term_id, 0),
            core,
            term_count,
            term_id,
            term_offset,
            index,
        }
    }

    publication_accessors!();

    /// Appends one message.
    #[inline]
    pub fn offer(&mut self, message: &[u8]) -> OfferResult {
        if message.len() > self.core.max_payload {
            return self.offer_parts(&[message]);
        }
        if let Err(refused) = self.admit(message.len()) {
            return refused;
        }
        let log = &self.core.ready.log;
        let appender = ExclusiveTermAppender::new(log.term(self.index), log.metadata(), self.index);
        let appended = appender.append_unfragmented(
            &self.core.template,
            self.term_id,
            usize::try_from(self.term_offset).unwrap_or(usize::MAX),
            message,
            0,
        );
        self.appended(appended)
    }

    /// Whether a message of `length` bytes may be appended now.
    #[inline]
    fn admit(&self, length: usize) -> Result<(), OfferResult> {
        let core = &self.core;
        if core.shared.is_closed() {
            return Err(OfferResult::Closed);
        }
        if length > core.max_message_length {
            return Err(OfferResult::MessageTooLong {
                length,
                max: core.max_message_length,
            });
        }
        let position = self.term_begin_position + i64::from(self.term_offset);
        if position >= core.ready.limit.view().get() {
            return Err(core.refused());
        }
        if position + i64::try_from(align_frame(length + 32)).unwrap_or(i64::MAX)
            > core.max_position
        {
            return Err(OfferResult::MaxPositionExceeded);
        }
        Ok(())
    }

    /// Moves this publication's own tail after an append.
    #[inline]
    fn appended(&mut self, appended: Appended) -> OfferResult {
        match appended {
            Appended::Ok { term_offset, .. } => {
                self.term_offset = term_offset;
                OfferResult::Ok(self.term_begin_position + i64::from(term_offset))
            }
            Appended::Tripped { term_id } => {
                // The term is full (padded to its end): move to the next, for the driver too.
                let log = &self.core.ready.log;
                log.metadata().rotate(self.term_count, term_id);
                let term_length = log.geometry().term_length();
                self.term_count = self.term_count.wrapping_add(1);
                self.term_id = term_id.wrapping_add(1);
                self.term_offset = 0;
                self.index = index_by_term_count(i64::from(self.term_count));
                self.term_begin_position += i64::from(term_length);
                OfferResult::AdminAction
            }
        }
    }

    /// Appends `block`: whole frames, headers included, exactly as another log (or a recording
    /// of one) held them, placed where this publication stands: the first frame's term id and
    /// term offset must name this publication's position, and the block must not pass the end
    /// of the term. Each frame's session and stream ids become this publication's; everything
    /// else (flags, reserved values) is kept, so positions and fragments are the original's. A
    /// block may end with a PAD frame's header alone, whose length covers padding within the
    /// term (to its end, completing it, or over a claim the original's driver unblocked). This
    /// is how a replay
    /// writes a recording back into a stream; the publication is usually placed with
    /// `init-term-id`, `term-id` and `term-offset` on its channel.
    ///
    /// A block that does not check is refused whole ([`BlockError`]) and nothing is written;
    /// otherwise the result is as for an offer (back-pressure and closing included).
    pub fn offer_block(&mut self, block: &[u8]) -> Result<OfferResult, BlockError> {
        let core = &self.core;
        let term_length = usize::try_from(core.ready.log.geometry().term_length())
            .expect("a term length fits usize");
        let term_offset = usize::try_from(self.term_offset).unwrap_or(usize::MAX);
        let extent = check_block(block, self.term_id, term_offset, term_length)?;
        if core.shared.is_closed() {
            return Ok(OfferResult::Closed);
        }
        let position = self.term_begin_position + i64::from(self.term_offset);
        if position >= core.ready.limit.view().get() {
            return Ok(core.refused());
        }
        if position + i64::try_from(extent).unwrap_or(i64::MAX) > core.max_position {
            return Ok(OfferResult::MaxPositionExceeded);
        }
        let log = &core.ready.log;
        let appender = ExclusiveTermAppender::new(log.term(self.index), log.metadata(), self.index);
        let appended = appender.append_block(&core.template, self.term_id, term_offset, block)?;
        let Appended::Ok { term_offset, .. } = appended else {
            unreachable!("a checked block fits its term");
        };
        self.term_offset = term_offset;
        let end = self.term_begin_position + i64::from(term_offset);
        if term_offset == log.geometry().term_length() {
            // The block completed the term: move to the next, as a tripped append does.
            let _ = self.appended(Appended::Tripped {
                term_id: self.term_id,
            });
        }
        Ok(OfferResult::Ok(end))
    }

    /// Appends one message made of `parts`.
    pub fn offer_parts(&mut self, parts: &[&[u8]]) -> OfferResult {
        let length = parts.iter().map(|part| part.len()).sum();
        if let Err(refused) = self.admit(length) {
            return refused;
        }
        let core = &self.core;
        let log = &core.ready.log;
        let appender = ExclusiveTermAppender::new(log.term(self.index), log.metadata(), self.index);
        let appended = appender.append(
            &core.template,
            self.term_id,
            usize::try_from(self.term_offset).unwrap_or(usize::MAX),
            parts,
            core.max_payload,
            0,
        );
        self.appended(appended)
    }
}
