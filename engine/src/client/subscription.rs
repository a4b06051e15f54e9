//! Subscriptions and their images: reading a stream's log in place.
//!
//! A subscription has one image per publication (session) it reads. Each image has its own
//! position, stored in a counter the driver allocated for it and only this subscriber writes
//! (release), so the driver can hold publishers back to it. The client conductor adds and
//! removes images under a mutex and bumps an atomic version; `poll` compares the version (one
//! acquire load) and takes the mutex only when the set of images changed.
//!
//! A tethered image (the default) is read in place: the driver never cleans or lets publishers
//! rewrite what a tethered subscriber has not read, so the handler may borrow the payload where
//! it lies. An untethered image (`tether=false`) can be left behind by the driver while its
//! subscriber is still polling, so it is read by copying each frame out and checking the log's
//! clean position afterwards ([`term_reader::read_copied`]): it never hands out bytes that were
//! zeroed or rewritten under it. Either kind checks the clean position before it reads; an
//! image that finds it has been lapped reads nothing more ([`Image::is_lapped`]).

use crate::mapped_view::MappedView;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use super::conductor::write_command;
use super::{ClientError, ClientShared};
use crate::channel::ChannelUri;
use crate::command::{
    DestinationAction, ResourceKind, add_subscription, receive_destination, remove_resource,
};
use crate::concurrent::counters::Counter;
use crate::logbuffer::descriptor::index_by_term;
use crate::logbuffer::frame_header::FragmentHeader;
use crate::logbuffer::log_buffers::LogBuffers;
use crate::logbuffer::term_reader::{self, ControlledAction};

/// What identifies an image, for callbacks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImageInfo {
    /// The image's id.
    pub image_id: i64,
    /// The subscription it belongs to.
    pub subscription_registration_id: i64,
    /// The publication's session.
    pub session_id: i32,
    /// The stream.
    pub stream_id: i32,
    /// Where it comes from (`ipc`, or a UDP source address).
    pub source_identity: String,
}

/// An image as the conductor hands it to a subscription.
pub(crate) struct ImageShared {
    info: ImageInfo,
    log: Arc<LogBuffers>,
    position: MappedView<Counter<'static>>,
    closed: AtomicBool,
    tethered: bool,
}

impl ImageShared {
    pub(crate) fn new(
        info: ImageInfo,
        log: Arc<LogBuffers>,
        position: MappedView<Counter<'static>>,
        tethered: bool,
    ) -> Self {
        Self {
            info,
            log,
            position,
            closed: AtomicBool::new(false),
            tethered,
        }
    }
}

/// The subscription's state shared with the conductor.
pub(crate) struct SubscriptionState {
    pub(crate) registration_id: i64,
    /// Whether the channel keeps the subscriber tethered (`tether=false` says not).
    pub(crate) tethered: bool,
    images: Mutex<Vec<Arc<ImageShared>>>,
    version: AtomicU64,
}

impl SubscriptionState {
    pub(crate) fn new(registration_id: i64, tethered: bool) -> Self {
        Self {
            registration_id,
            tethered,
            images: Mutex::new(Vec::new()),
            version: AtomicU64::new(0),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<Arc<ImageShared>>> {
        self.images
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    pub(crate) fn add_image(&self, image: Arc<ImageShared>) {
        self.lock().push(image);
        self.version.fetch_add(1, Ordering::AcqRel);
    }

    pub(crate) fn remove_image(&self, image_id: i64) -> Option<ImageInfo> {
        let mut images = self.lock();
        let index = images
            .iter()
            .position(|image| image.info.image_id == image_id)?;
        let image = images.swap_remove(index);
        image.closed.store(true, Ordering::Release);
        drop(images);
        self.version.fetch_add(1, Ordering::AcqRel);
        Some(image.info.clone())
    }

    pub(crate) fn close_images(&self) {
        let mut images = self.lock();
        for image in images.drain(..) {
            image.closed.store(true, Ordering::Release);
        }
        drop(images);
        self.version.fetch_add(1, Ordering::AcqRel);
    }
}

/// Sends an add-subscription command; returns its registration id.
pub(crate) fn send_add(
    shared: &ClientShared,
    channel: &str,
    stream_id: i32,
) -> Result<i64, ClientError> {
    if shared.is_closed() {
        return Err(ClientError::Closed);
    }
    // The driver validates the channel and answers with an error; a channel that does not
    // parse here reads as tethered until it does.
    let tethered = ChannelUri::parse(channel).map_or(true, |uri| uri.tether);
    let correlation_id = shared.to_driver.view().next_correlation_id();
    let mut buf = vec![0u8; 64 + channel.len()];
    let mut encoder = add_subscription::Encoder::wrap(&mut buf)
        .map_err(|error| ClientError::Resource(error.to_string()))?;
    encoder
        .client_id(shared.client_id)
        .correlation_id(correlation_id)
        .stream_id(stream_id);
    let length = encoder
        .channel(channel)
        .map_err(|error| ClientError::Resource(error.to_string()))?
        .finish();
    shared
        .lock()
        .expect_subscription(Arc::new(SubscriptionState::new(correlation_id, tethered)));
    write_command(shared, add_subscription::TEMPLATE_ID, &buf[..length])?;
    Ok(correlation_id)
}

/// One publication's stream as this subscriber reads it.
pub struct Image {
    shared: Arc<ImageShared>,
    position: i64,
    /// Frames of an untethered image are copied here before delivery; empty when tethered.
    scratch: Vec<u8>,
    lapped: bool,
    /// Whether the driver has been told this image was lapped.
    lapped_reported: bool,
}

impl std::fmt::Debug for Image {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Image")
            .field("info", &self.shared.info)
            .field("position", &self.position)
            .field("lapped", &self.lapped)
            .finish()
    }
}

impl Image {
    fn new(shared: Arc<ImageShared>) -> Self {
        let position = shared.position.view().get();
        let scratch = if shared.tethered {
            Vec::new()
        } else {
            // A frame is at most an MTU; the log's MTU was validated when it was mapped.
            vec![0u8; usize::try_from(shared.log.metadata().mtu()).unwrap_or(0)]
        };
        Self {
            shared,
            position,
            scratch,
            lapped: false,
            lapped_reported: false,
        }
    }

    /// What identifies the image.
    pub fn info(&self) -> &ImageInfo {
        &self.shared.info
    }

    /// This subscriber's position in the stream.
    pub fn position(&self) -> i64 {
        self.position
    }

    /// Whether the publication has ended and this subscriber has read all of it.
    pub fn is_end_of_stream(&self) -> bool {
        self.position >= self.shared.log.metadata().end_of_stream_position()
    }

    /// Whether the driver withdrew the image.
    pub fn is_closed(&self) -> bool {
        self.shared.closed.load(Ordering::Acquire)
    }

    /// Whether the log was cleaned past this subscriber's position (an untethered subscriber
    /// the driver left behind): the image reads nothing more. The driver withdraws it and, after
    /// its rest, offers a new image at the tail.
    pub fn is_lapped(&self) -> bool {
        self.lapped
    }

    fn locate(&self) -> (usize, usize, i64) {
        let geometry = self.shared.log.geometry();
        let term_id = geometry.term_id(self.position);
        let index = index_by_term(geometry.initial_term_id(), term_id);
        let term_offset = usize::try_from(geometry.term_offset(self.position)).unwrap_or(0);
        let term_base = self.position - i64::try_from(term_offset).unwrap_or(0);
        (index, term_offset, term_base)
    }

    /// Whether this image may read: open, and (checked before any byte is read) not lapped.
    #[inline]
    fn readable(&mut self) -> bool {
        if self.lapped || self.is_closed() {
            return false;
        }
        if self.shared.log.metadata().clean_position() > self.position {
            self.lapped = true;
            return false;
        }
        true
    }

    /// Reads up to `fragment_limit` fragments; returns how many.
    pub fn poll(
        &mut self,
        mut handler: impl FnMut(&[u8], &FragmentHeader),
        fragment_limit: usize,
    ) -> usize {
        if !self.shared.tethered {
            return self.poll_copied(
                |payload, header| {
                    handler(payload, header);
                    ControlledAction::Continue
                },
                fragment_limit,
            );
        }
        if !self.readable() {
            return 0;
        }
        let (index, term_offset, term_base) = self.locate();
        let outcome = term_reader::read(
            &self.shared.log.term(index),
            term_offset,
            fragment_limit,
            |offset| term_base + i64::try_from(offset).unwrap_or(0),
            &mut handler,
        );
        self.advance(term_base, outcome.term_offset);
        outcome.fragments
    }

    /// Lends `handler` one block of whole published frames from this subscriber's position,
    /// headers included, exactly as the log holds them (at most `max_length` bytes of term,
    /// never past the end of a term), with the stream position of its first byte and the bytes
    /// of term it covers; then moves past it. A PAD ends a block and is lent as its 32-byte
    /// header alone (the extent counts its whole length). Returns the extent (0: nothing new).
    /// This is how the archive records: the block goes to a file as it lies, with no copy per
    /// message.
    ///
    /// The bytes are the shared log's: a handler treats them as input (frame lengths checked
    /// before use), as every reader of shared memory does. A tethered image only: an untethered
    /// one may be cleaned under a reader that holds a block, so it lends nothing (0) and is
    /// read with [`Image::poll`] instead.
    pub fn block_poll(
        &mut self,
        handler: impl FnOnce(&[u8], i64, usize),
        max_length: usize,
    ) -> usize {
        if !self.shared.tethered || !self.readable() {
            return 0;
        }
        let (index, term_offset, term_base) = self.locate();
        let term = self.shared.log.term(index);
        let block = term_reader::scan_block(&term, term_offset, max_length);
        if block.extent == 0 {
            return 0;
        }
        // SAFETY: the lent bytes are published frames (scan_block acquired each length) that
        // publishers do not write again, and the header of a PAD that ends the block; the
        // driver cleans the term only after every tethered subscriber has passed it, and this
        // one has not until `advance` below. (A publisher that stalls past the unblock timeout
        // and then resumes may write over the PAD the driver put in its place, as it may under
        // any reader; the archive copies and checks what it is lent, so that costs a recording
        // a refused block, never a bad read.)
        unsafe {
            term.with_bytes(term_offset, block.length, |bytes| {
                handler(bytes, self.position, block.extent);
            });
        }
        self.advance(term_base, term_offset + block.extent);
        block.extent
    }

    /// The stream's term length.
    pub fn term_length(&self) -> u32 {
        self.shared.log.geometry().term_length()
    }

    /// The stream's initial term id.
    pub fn initial_term_id(&self) -> i32 {
        self.shared.log.geometry().initial_term_id()
    }

    /// The stream's MTU.
    pub fn mtu(&self) -> u32 {
        self.shared.log.metadata().mtu()
    }

    /// Whether this image holds its publisher back (the channel did not say `tether=false`).
    pub fn is_tethered(&self) -> bool {
        self.shared.tethered
    }

    /// Moves this subscriber's position to `term_offset` of the term at `term_base`.
    #[inline]
    fn advance(&mut self, term_base: i64, term_offset: usize) {
        let position = term_base + i64::try_from(term_offset).unwrap_or(0);
        if position > self.position {
            self.position = position;
            // Releases the space to publishers: pairs with the driver's acquire of the counter.
            self.shared.position.view().set(position);
        }
    }

    /// Reads like [`Image::poll`], with the handler choosing to continue, break, abort or
    /// commit at each fragment.
    pub fn controlled_poll(
        &mut self,
        mut handler: impl FnMut(&[u8], &FragmentHeader) -> ControlledAction,
        fragment_limit: usize,
    ) -> usize {
        if !self.shared.tethered {
            return self.poll_copied(handler, fragment_limit);
        }
        if !self.readable() {
            return 0;
        }
        let (index, term_offset, term_base) = self.locate();
        let shared = &self.shared;
        let outcome = term_reader::read_controlled(
            &shared.log.term(index),
            term_offset,
            fragment_limit,
            |offset| term_base + i64::try_from(offset).unwrap_or(0),
            |payload, header| {
                let action = handler(payload, header);
                if action == ControlledAction::Commit {
                    // Commit: make the progress visible to the driver now, not at the end.
                    shared.position.view().set(header.position);
                }
                action
            },
        );
        self.advance(term_base, outcome.term_offset);
        outcome.fragments
    }

    /// The untethered read: each frame copied out and checked before it is delivered.
    fn poll_copied(
        &mut self,
        mut handler: impl FnMut(&[u8], &FragmentHeader) -> ControlledAction,
        fragment_limit: usize,
    ) -> usize {
        if !self.readable() {
            return 0;
        }
        let (index, term_offset, term_base) = self.locate();
        let Self {
            shared, scratch, ..
        } = self;
        let outcome = term_reader::read_copied(
            &shared.log.term(index),
            &shared.log.metadata(),
            term_base,
            term_offset,
            fragment_limit,
            scratch,
            |payload, header| {
                let action = handler(payload, header);
                if action == ControlledAction::Commit {
                    shared.position.view().set(header.position);
                }
                action
            },
        );
        self.lapped = outcome.lapped;
        self.advance(term_base, outcome.term_offset);
        outcome.fragments
    }
}

/// Tells the driver (and the application's unusable-image handler) that a tethered `image` was
/// lapped, once: the driver must stop counting a reader that reads no more. A tethered image is
/// lapped only when the log's clean position was moved past it, by a bug or another process;
/// an untethered one is lapped when the driver left it behind, which the driver already knows
/// (it offers a new image after the rest).
#[cold]
fn report_lapped(client: &ClientShared, image: &mut Image) {
    image.lapped_reported = true;
    let reason = format!(
        "lapped at position {}: the log was cleaned past it",
        image.position
    );
    client
        .lock()
        .release_image(client, &image.shared.info, &reason);
}

/// A subscription: polls every image of its stream.
pub struct Subscription {
    client: Arc<ClientShared>,
    state: Arc<SubscriptionState>,
    images: Vec<Image>,
    version: u64,
    round_robin: usize,
}

impl std::fmt::Debug for Subscription {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Subscription")
            .field("registration_id", &self.state.registration_id)
            .field("images", &self.images.len())
            .finish()
    }
}

impl Subscription {
    pub(crate) fn new(client: Arc<ClientShared>, state: Arc<SubscriptionState>) -> Self {
        let mut subscription = Self {
            client,
            state,
            images: Vec::new(),
            version: u64::MAX,
            round_robin: 0,
        };
        subscription.refresh();
        subscription
    }

    /// Takes in the images the conductor added or removed since the last poll: one atomic
    /// load when there are none.
    #[inline]
    fn refresh(&mut self) {
        let version = self.state.version.load(Ordering::Acquire);
        if version != self.version {
            self.take_image_changes(version);
        }
    }

    #[cold]
    fn take_image_changes(&mut self, version: u64) {
        self.version = version;
        let current = self.state.lock();
        self.images.retain(|image| {
            current
                .iter()
                .any(|shared| Arc::ptr_eq(shared, &image.shared))
        });
        for shared in current.iter() {
            if !self
                .images
                .iter()
                .any(|image| Arc::ptr_eq(&image.shared, shared))
            {
                self.images.push(Image::new(Arc::clone(shared)));
            }
        }
    }

    /// The registration id the driver knows this subscription by.
    pub fn registration_id(&self) -> i64 {
        self.state.registration_id
    }

    /// Starts receiving on another destination (a multi-destination subscription, channel
    /// `tern:udp?control-mode=manual`): `tern:udp?endpoint=host:port`, a multicast group, or an
    /// endpoint with `control=host:port|control-mode=dynamic`. A publication's frames from any
    /// destination fill one image. Fails when the driver cannot bind the destination, the
    /// subscription is not multi-destination, or it has all the destinations it may.
    pub fn add_destination(&self, channel: &str) -> Result<(), ClientError> {
        self.destination(channel, DestinationAction::Add)
    }

    /// Stops receiving on a destination added with `add_destination` (the same endpoint).
    pub fn remove_destination(&self, channel: &str) -> Result<(), ClientError> {
        self.destination(channel, DestinationAction::Remove)
    }

    fn destination(&self, channel: &str, action: DestinationAction) -> Result<(), ClientError> {
        if self.client.is_closed() {
            return Err(ClientError::Closed);
        }
        let correlation_id = self.client.to_driver.view().next_correlation_id();
        let mut buf = vec![0u8; 96 + channel.len()];
        let resource = |error: tern_codec::EncodeError| ClientError::Resource(error.to_string());
        let mut encoder = receive_destination::Encoder::wrap(&mut buf).map_err(resource)?;
        encoder
            .client_id(self.client.client_id)
            .correlation_id(correlation_id)
            .subscription_id(self.state.registration_id)
            .action(action);
        let length = encoder.channel(channel).map_err(resource)?.finish();
        self.client.lock().expect(correlation_id);
        write_command(
            &self.client,
            receive_destination::TEMPLATE_ID,
            &buf[..length],
        )?;
        self.client
            .await_response("receive destination", |conductor| {
                conductor.take_success(correlation_id)
            })
    }

    /// The images being read.
    pub fn images(&mut self) -> &[Image] {
        self.refresh();
        &self.images
    }

    /// The images being read, each to be read on its own (the archive records each image of
    /// a subscription as its own recording, with [`Image::block_poll`]).
    pub fn images_mut(&mut self) -> &mut [Image] {
        self.refresh();
        &mut self.images
    }

    /// Whether any image is connected.
    pub fn is_connected(&mut self) -> bool {
        self.refresh();
        !self.images.is_empty()
    }

    /// Reads up to `fragment_limit` fragments across the images, starting with a different image
    /// each call so that none starves the others. Returns how many.
    pub fn poll(
        &mut self,
        mut handler: impl FnMut(&[u8], &FragmentHeader),
        fragment_limit: usize,
    ) -> usize {
        self.refresh();
        let count = self.images.len();
        if count == 0 {
            return 0;
        }
        // Round robin without a division per poll: each poll starts one image further on.
        self.round_robin += 1;
        if self.round_robin >= count {
            self.round_robin = 0;
        }
        let mut fragments = 0;
        let mut index = self.round_robin;
        for _ in 0..count {
            if fragments >= fragment_limit {
                break;
            }
            let image = &mut self.images[index];
            index += 1;
            if index == count {
                index = 0;
            }
            fragments += image.poll(&mut handler, fragment_limit - fragments);
            if image.lapped && !image.lapped_reported && image.shared.tethered {
                report_lapped(&self.client, image);
            }
        }
        fragments
    }

    /// Reads like [`Subscription::poll`] with a controlled handler.
    pub fn controlled_poll(
        &mut self,
        mut handler: impl FnMut(&[u8], &FragmentHeader) -> ControlledAction,
        fragment_limit: usize,
    ) -> usize {
        self.refresh();
        let count = self.images.len();
        if count == 0 {
            return 0;
        }
        // Round robin without a division per poll: each poll starts one image further on.
        self.round_robin += 1;
        if self.round_robin >= count {
            self.round_robin = 0;
        }
        let mut fragments = 0;
        let mut index = self.round_robin;
        for _ in 0..count {
            if fragments >= fragment_limit {
                break;
            }
            let image = &mut self.images[index];
            index += 1;
            if index == count {
                index = 0;
            }
            fragments += image.controlled_poll(&mut handler, fragment_limit - fragments);
            if image.lapped && !image.lapped_reported && image.shared.tethered {
                report_lapped(&self.client, image);
            }
        }
        fragments
    }
}

impl Drop for Subscription {
    fn drop(&mut self) {
        self.client
            .lock()
            .forget_subscription(self.state.registration_id);
        if self.client.is_closed() {
            return;
        }
        let mut buf = [0u8; 64];
        let Ok(mut encoder) = remove_resource::Encoder::wrap(&mut buf) else {
            return;
        };
        encoder
            .client_id(self.client.client_id)
            .correlation_id(self.client.to_driver.view().next_correlation_id())
            .registration_id(self.state.registration_id)
            .kind(ResourceKind::Subscription);
        let length = encoder.finish();
        let _ = write_command(&self.client, remove_resource::TEMPLATE_ID, &buf[..length]);
    }
}
