//! A publication image: one sender's stream rebuilt from the network (Aeron's
//! `PublicationImage`), sans-IO. Frames are inserted at their offsets, once; the rebuild
//! position follows the complete part; gaps below the high-water mark are NAKed after the
//! loss detector's delay (or padded over on an unreliable channel); status messages tell the
//! sender how far subscribers have consumed and how much more it may send.
//!
//! The core is owned by the receiver agent, which is the only writer of the image's log: it
//! inserts frames, cleans the log a term behind the slowest subscriber (announcing the clean
//! position first) and publishes the end of stream. It shares an [`ImageStatus`] with the
//! conductor, which reads the subscribers' positions (input from other processes, validated
//! there) and stores the consumption position here; the receiver publishes its rebuild
//! position, high-water mark and state back.
//!
//! Every data frame is input from the network. Its offset, length and term are checked against
//! the term and against the window before any byte is written: a frame behind the rebuild
//! position is a duplicate, one past the consumption position plus the window (or past what
//! the cleaner has made ready) is an overrun, and one whose bytes disagree with a frame already
//! received is refused by the rebuilder. Each is counted and dropped; the image carries on.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, AtomicU8, Ordering};

use tern_codec::frame::{
    DATA_HEADER_LENGTH, DataHeader, FRAME_ALIGNMENT, FrameType, NAK_LENGTH, Nak,
    STATUS_MESSAGE_LENGTH, StatusMessage, align, data_flags, status_flags,
};
use tern_codec::position::TermGeometry;

use super::image_timing::{ImageTiming, Timings};
use super::loss_detector::{FeedbackDelay, LossDetector};
use super::send_batch::{DatagramSink, SendBatch};
use crate::logbuffer::descriptor::index_by_term;
use crate::logbuffer::frame_header::PAD_TYPE;
use crate::logbuffer::log_buffers::LogBuffers;
use crate::logbuffer::term_gap_scanner::{Gap, scan_for_gap};
use crate::logbuffer::term_rebuilder::{self, Inserted, RebuildError};

/// The most a cleaning step zeroes per duty cycle.
const CLEAN_CHUNK_BYTES: i64 = 64 * 1024;
/// Ways back to the sender an image keeps at most: one per destination of a multi-destination
/// subscription that carries the stream (the receiver allows no more destinations than this).
pub const MAX_ROUTES: usize = 16;

/// A way back to the sender: the receiver's socket (`destination`, its id on the endpoint) that
/// status messages and NAKs leave from, and the address they go to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Route {
    /// The endpoint's destination the stream arrives on.
    pub destination: u32,
    /// Where control frames go: the sender's address (or its control address).
    pub control: SocketAddr,
    /// When a frame last came this way.
    last_seen_ns: i64,
}

/// Where an image is in its life, as the receiver reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum ImageState {
    /// Receiving.
    Active = 0,
    /// The sender ended the stream and the image is complete to its end.
    EndOfStream = 1,
    /// Nothing arrived for the liveness timeout.
    Gone = 2,
}

/// What the receiver and the conductor share about one image.
#[derive(Debug)]
pub struct ImageStatus {
    consumption: AtomicI64,
    rebuild: AtomicI64,
    high_water_mark: AtomicI64,
    state: AtomicU8,
}

impl ImageStatus {
    /// A status for an image joined at `join_position`.
    pub fn new(join_position: i64) -> Self {
        Self {
            consumption: AtomicI64::new(join_position),
            rebuild: AtomicI64::new(join_position),
            high_water_mark: AtomicI64::new(join_position),
            state: AtomicU8::new(ImageState::Active as u8),
        }
    }

    /// The slowest subscriber's position (written by the conductor).
    pub fn consumption(&self) -> i64 {
        self.consumption.load(Ordering::Acquire)
    }

    /// Stores the slowest subscriber's position (the conductor).
    pub fn set_consumption(&self, position: i64) {
        self.consumption.store(position, Ordering::Release);
    }

    /// How far the image is complete.
    pub fn rebuild(&self) -> i64 {
        self.rebuild.load(Ordering::Acquire)
    }

    /// The highest position received.
    pub fn high_water_mark(&self) -> i64 {
        self.high_water_mark.load(Ordering::Acquire)
    }

    /// The image's state.
    pub fn state(&self) -> ImageState {
        match self.state.load(Ordering::Acquire) {
            0 => ImageState::Active,
            1 => ImageState::EndOfStream,
            _ => ImageState::Gone,
        }
    }
}

/// What an image counted, read by the agent into the driver's counters.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ImageTally {
    /// Frame bytes inserted.
    pub bytes_received: u64,
    /// Frames already received (duplicates, retransmissions that crossed the original).
    pub duplicates: u64,
    /// Frames past the window or the cleaned part of the log.
    pub overruns: u64,
    /// Frames the rebuilder refused (misaligned, truncated, overlapping, past the term).
    pub invalid_frames: u64,
    /// NAKs sent.
    pub naks_sent: u64,
    /// Status messages sent.
    pub status_messages_sent: u64,
    /// Gaps padded over (unreliable channels).
    pub gaps_padded: u64,
    /// Heartbeats received.
    pub heartbeats: u64,
}

/// How an image is made.
#[derive(Debug, Clone)]
pub struct ImageParams {
    /// Where status messages and NAKs go (the sender's address).
    pub control: SocketAddr,
    /// The endpoint's destination the SETUP came through (0 for a single-socket endpoint).
    pub destination: u32,
    /// The position the image starts at (from SETUP).
    pub join_position: i64,
    /// This receiver's id in status messages.
    pub receiver_id: i64,
    /// Whether gaps are NAKed (true) or padded over.
    pub reliable: bool,
    /// Status message and liveness timing.
    pub timings: Timings,
    /// NAK timing.
    pub delay: FeedbackDelay,
    /// The receiver window.
    pub window: u32,
}

/// Why a frame was dropped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dropped {
    /// Its offset or length does not fit the term or the alignment.
    Invalid,
    /// It lies beyond what the image may accept now.
    Overrun,
    /// The rebuilder refused it.
    Refused(RebuildError),
}

/// A publication image, as the receiver runs it.
#[derive(Debug)]
pub struct PublicationImage {
    image_id: i64,
    session_id: i32,
    stream_id: i32,
    geometry: TermGeometry,
    log: Arc<LogBuffers>,
    /// Where control frames go: the first from SETUP; on a multi-destination subscription,
    /// one more for each destination the stream arrives on, each until it falls silent.
    routes: Vec<Route>,
    /// How long a route stays without a frame (the liveness timeout).
    route_timeout_ns: i64,
    receiver_id: i64,
    reliable: bool,
    join_position: i64,
    rebuild_position: i64,
    high_water_mark: i64,
    clean_position: i64,
    end_of_stream: Option<i64>,
    end_of_stream_published: bool,
    loss: LossDetector,
    timing: ImageTiming,
    window: u32,
    status: Arc<ImageStatus>,
    /// The image is leaving: status messages carry EOS.
    closing: bool,
    tally: ImageTally,
    /// The start of the last gap seen (NAKed or padded), to tell a new loss from a retry.
    last_gap: Option<(i32, usize)>,
    /// Bytes of gaps seen since the receiver last took them (for the loss report).
    new_loss: u64,
    /// Bytes inserted since the last cleaning step: the cleaner keeps pace with them.
    inserted_since_clean: u64,
}

impl PublicationImage {
    /// Image `image_id` of the stream in `log` (session and stream from its default header).
    pub fn new(image_id: i64, log: Arc<LogBuffers>, params: &ImageParams, now_ns: i64) -> Self {
        let geometry = log.geometry();
        let template =
            crate::logbuffer::frame_header::HeaderTemplate::new(log.metadata().default_header());
        let join = params.join_position;
        let term_base = join - i64::from(geometry.term_offset(join));
        let window = params.window.min(geometry.term_length() / 2);
        Self {
            image_id,
            session_id: template.session_id(),
            stream_id: template.stream_id(),
            geometry,
            routes: {
                let mut routes = Vec::with_capacity(MAX_ROUTES);
                routes.push(Route {
                    destination: params.destination,
                    control: params.control,
                    last_seen_ns: now_ns,
                });
                routes
            },
            route_timeout_ns: params.timings.liveness_timeout_ns,
            receiver_id: params.receiver_id,
            reliable: params.reliable,
            join_position: join,
            rebuild_position: join,
            high_water_mark: join,
            // The file is new: every byte is zero for the first three terms from the join
            // term. The clean position is announced so subscribers see where cleaning starts.
            clean_position: term_base,
            end_of_stream: None,
            end_of_stream_published: false,
            loss: LossDetector::new(params.delay.clone()),
            timing: ImageTiming::new(params.timings, window, now_ns),
            window,
            status: Arc::new(ImageStatus::new(join)),
            closing: false,
            tally: ImageTally::default(),
            last_gap: None,
            new_loss: 0,
            inserted_since_clean: 0,
            log,
        }
    }

    /// The image's id (its registration with the conductor).
    pub fn image_id(&self) -> i64 {
        self.image_id
    }

    /// Its session.
    pub fn session_id(&self) -> i32 {
        self.session_id
    }

    /// Its stream.
    pub fn stream_id(&self) -> i32 {
        self.stream_id
    }

    /// What it shares with the conductor.
    pub fn status(&self) -> &Arc<ImageStatus> {
        &self.status
    }

    /// The ways back to the sender it keeps.
    pub fn routes(&self) -> &[Route] {
        &self.routes
    }

    /// Whether a frame came through `destination` within the liveness timeout.
    pub fn has_live_route(&self, destination: u32, now_ns: i64) -> bool {
        self.routes.iter().any(|route| {
            route.destination == destination && now_ns - route.last_seen_ns <= self.route_timeout_ns
        })
    }

    /// [`PublicationImage::on_frame`] for a frame that came through `destination` from
    /// `control` (a multi-destination subscription), keeping that way back. A frame that moved
    /// the image (new data, or a heartbeat inside the window) may add a route or take over one
    /// fallen silent; a duplicate only keeps a route alive from the address it already has. So
    /// a spoofed frame outside the window, or a replay of old data, cannot open a route or
    /// redirect one, and a path that went quiet is taken back by its sender's next frame.
    pub fn on_frame_via(
        &mut self,
        header: &DataHeader,
        frame: &[u8],
        now_ns: i64,
        destination: u32,
        control: SocketAddr,
    ) -> Result<Inserted, Dropped> {
        let result = self.on_frame(header, frame, now_ns);
        match result {
            Ok(Inserted::Written) => self.note_route(destination, control, now_ns, true),
            Ok(Inserted::Duplicate) => {
                self.note_route(destination, control, now_ns, header.is_heartbeat());
            }
            Err(_) => {}
        }
        result
    }

    /// A SETUP of this image's stream came through `destination` from `control`: when it
    /// describes this image (term length, initial term and MTU), that way back is kept as for
    /// new data (how a dynamic multi-destination publication learns to send down a second
    /// path).
    pub fn on_setup_via(
        &mut self,
        setup: &tern_codec::frame::Setup,
        destination: u32,
        control: SocketAddr,
        now_ns: i64,
    ) {
        let matches = u32::try_from(setup.term_length)
            .is_ok_and(|length| length == self.geometry.term_length())
            && setup.initial_term_id == self.geometry.initial_term_id()
            && setup.session_id == self.session_id
            && setup.stream_id == self.stream_id;
        if matches {
            self.note_route(destination, control, now_ns, true);
        }
    }

    /// Keeps the route through `destination` alive; `strong` evidence (a frame that moved the
    /// image) may also add it or take over a silent one's address.
    fn note_route(&mut self, destination: u32, control: SocketAddr, now_ns: i64, strong: bool) {
        let timeout = self.route_timeout_ns;
        match self
            .routes
            .iter()
            .position(|route| route.destination == destination)
        {
            Some(index) => {
                let route = &mut self.routes[index];
                let silent = now_ns - route.last_seen_ns > timeout;
                if route.control == control || (strong && silent) {
                    route.control = control;
                    route.last_seen_ns = route.last_seen_ns.max(now_ns);
                }
            }
            None if strong && self.routes.len() < MAX_ROUTES => self.routes.push(Route {
                destination,
                control,
                last_seen_ns: now_ns,
            }),
            None => {}
        }
    }

    /// Destination `destination` was removed from the endpoint: no control frame leaves
    /// through it again (with no route left, none leaves at all until a frame comes through
    /// another destination; the image ends by its liveness otherwise).
    pub fn remove_route(&mut self, destination: u32) {
        self.routes.retain(|route| route.destination != destination);
    }

    /// What it counted so far.
    pub fn tally(&self) -> ImageTally {
        self.tally
    }

    /// How far it is complete.
    pub fn rebuild_position(&self) -> i64 {
        self.rebuild_position
    }

    /// The highest position received.
    pub fn high_water_mark(&self) -> i64 {
        self.high_water_mark
    }

    /// Bytes of the gaps first seen since the last call (each gap counted once, at its length
    /// when first seen), for the loss report.
    pub fn take_new_loss(&mut self) -> u64 {
        std::mem::take(&mut self.new_loss)
    }

    fn note_gap(&mut self, gap: Gap) {
        let start = (gap.term_id, gap.term_offset);
        if self.last_gap != Some(start) {
            self.last_gap = Some(start);
            self.new_loss += gap.length as u64;
        }
    }

    /// From now on status messages say the receiver is leaving (EOS), so that the sender stops
    /// counting it at once rather than after its timeout.
    pub fn close(&mut self) {
        self.closing = true;
    }

    fn consumption(&self) -> i64 {
        self.status
            .consumption()
            .clamp(self.join_position, self.rebuild_position)
    }

    /// A DATA or PAD frame of this image's session and stream arrived: `frame` is its bytes in
    /// the datagram (the header alone for a PAD or a heartbeat).
    pub fn on_frame(
        &mut self,
        header: &DataHeader,
        frame: &[u8],
        now_ns: i64,
    ) -> Result<Inserted, Dropped> {
        let Ok(term_offset) = u32::try_from(header.term_offset) else {
            return self.invalid();
        };
        if term_offset > self.geometry.term_length()
            || !usize::try_from(term_offset).is_ok_and(|offset| offset % FRAME_ALIGNMENT == 0)
        {
            return self.invalid();
        }
        let position = self.geometry.position(header.term_id, term_offset);
        let term_length = i64::from(self.geometry.term_length());
        // Bytes at position p were last used by p - 3 terms, and are clean below the clean
        // position: a frame may end only where the next position's slot is clean too, so that a
        // subscriber (or the gap scanner) stepping past it finds zero, never a frame three
        // terms old.
        let clean_limit = self.clean_position + 3 * term_length;
        if header.is_heartbeat() {
            // A heartbeat says how far the sender has sent: whatever lies below it is a gap.
            let consumption = self.consumption();
            if position >= self.rebuild_position
                && position <= consumption + i64::from(self.window)
                && position < clean_limit
            {
                self.timing.on_packet(now_ns);
                self.tally.heartbeats += 1;
                self.high_water_mark = self.high_water_mark.max(position);
                if header.flags & data_flags::END_OF_STREAM != 0 {
                    self.end_of_stream = Some(position);
                }
                return Ok(Inserted::Duplicate);
            }
            // Behind what is complete, or past the window: nothing it says is taken.
            return Err(Dropped::Overrun);
        }
        let Ok(length) = usize::try_from(header.frame_length) else {
            return self.invalid();
        };
        if length < DATA_HEADER_LENGTH {
            return self.invalid();
        }
        let extent = align(length);
        if u64::try_from(extent).unwrap_or(u64::MAX)
            > u64::from(self.geometry.term_length()) - u64::from(term_offset)
        {
            return self.invalid();
        }
        let end = position + i64::try_from(extent).unwrap_or(i64::MAX);
        if end <= self.rebuild_position {
            // Still a sign of life: a retransmission crossing its original.
            self.timing.on_packet(now_ns);
            self.tally.duplicates += 1;
            return Ok(Inserted::Duplicate);
        }
        // A PAD frame writes its header alone (the rest of the term was cleaned), and its
        // sender counted only the header against the window, as Aeron's does.
        let pad = header.frame_type == FrameType::Pad;
        let written_end = if pad {
            position + i64::try_from(DATA_HEADER_LENGTH).unwrap_or(0)
        } else {
            end
        };
        if position < self.rebuild_position
            || written_end > self.consumption() + i64::from(self.window)
            || end >= clean_limit
        {
            // Behind the rebuild position yet not a whole duplicate (a sender whose frames
            // moved), or beyond what may be written now: dropped, and asked for again later.
            self.tally.overruns += 1;
            return Err(Dropped::Overrun);
        }
        let index = index_by_term(self.geometry.initial_term_id(), header.term_id);
        let term = self.log.term(index);
        let bytes = if pad {
            frame.get(..DATA_HEADER_LENGTH)
        } else {
            frame.get(..length)
        };
        let Some(bytes) = bytes else {
            return self.invalid();
        };
        let offset = usize::try_from(term_offset).unwrap_or(usize::MAX);
        // Nothing was written in this term at or past the high-water mark.
        let term_base = position - i64::from(term_offset);
        let written_until =
            usize::try_from((self.high_water_mark - term_base).clamp(0, term_length)).unwrap_or(0);
        match term_rebuilder::insert_within(&term, offset, bytes, written_until) {
            Ok(Inserted::Written) => {
                self.timing.on_packet(now_ns);
                self.tally.bytes_received += extent as u64;
                self.high_water_mark = self.high_water_mark.max(end);
                self.inserted_since_clean += extent as u64;
                if position == self.rebuild_position {
                    // Subscribers may read it at once: the rebuild position moves over it now,
                    // so no later frame of this batch can land inside it.
                    self.rebuild();
                }
                Ok(Inserted::Written)
            }
            Ok(Inserted::Duplicate) => {
                self.timing.on_packet(now_ns);
                self.tally.duplicates += 1;
                Ok(Inserted::Duplicate)
            }
            Err(error) => {
                self.tally.invalid_frames += 1;
                Err(Dropped::Refused(error))
            }
        }
    }

    fn invalid(&mut self) -> Result<Inserted, Dropped> {
        self.tally.invalid_frames += 1;
        Err(Dropped::Invalid)
    }

    /// Moves the rebuild position over what is complete; returns the first gap below the
    /// high-water mark, if any.
    fn rebuild(&mut self) -> Option<Gap> {
        let term_length = i64::from(self.geometry.term_length());
        // At most three terms per call: the high-water mark is within the window.
        for _ in 0..3 {
            let term_offset = self.geometry.term_offset(self.rebuild_position);
            let term_base = self.rebuild_position - i64::from(term_offset);
            let limit = (self.high_water_mark - term_base).min(term_length);
            if limit <= i64::from(term_offset) {
                return None;
            }
            let term_id = self.geometry.term_id(self.rebuild_position);
            let index = index_by_term(self.geometry.initial_term_id(), term_id);
            let scan = scan_for_gap(
                &self.log.term(index),
                term_id,
                usize::try_from(term_offset).unwrap_or(0),
                usize::try_from(limit).unwrap_or(0),
            );
            self.rebuild_position = term_base + i64::try_from(scan.rebuild_offset).unwrap_or(0);
            if scan.gap.is_some() || self.rebuild_position < term_base + term_length {
                return scan.gap;
            }
        }
        None
    }

    /// Pads over `gap` (an unreliable channel does not ask for it again).
    fn pad(&mut self, gap: Gap) {
        let Ok(length) = i32::try_from(gap.length) else {
            return;
        };
        let header = DataHeader {
            frame_length: length,
            flags: data_flags::UNFRAGMENTED,
            frame_type: FrameType::Pad,
            term_offset: i32::try_from(gap.term_offset).unwrap_or(0),
            session_id: self.session_id,
            stream_id: self.stream_id,
            term_id: gap.term_id,
            reserved_value: 0,
        };
        let mut bytes = [0u8; DATA_HEADER_LENGTH];
        if header.encode(&mut bytes).is_err() {
            return;
        }
        debug_assert_eq!(u16::from_le_bytes([bytes[6], bytes[7]]), PAD_TYPE);
        let index = index_by_term(self.geometry.initial_term_id(), gap.term_id);
        if term_rebuilder::insert(&self.log.term(index), gap.term_offset, &bytes).is_ok() {
            self.tally.gaps_padded += 1;
        }
    }

    /// Sends the batch back along every route heard within the liveness timeout (the newest
    /// if none was; nowhere without a route), then empties it.
    fn send(&mut self, batch: &mut SendBatch, sink: &mut dyn DatagramSink, now_ns: i64) -> usize {
        let timeout = self.route_timeout_ns;
        let freshest = self
            .routes
            .iter()
            .map(|route| route.last_seen_ns)
            .max()
            .unwrap_or(now_ns);
        let mut sent = 0;
        for route in &self.routes {
            if now_ns - route.last_seen_ns <= timeout || route.last_seen_ns == freshest {
                sink.use_socket(route.destination);
                sent += batch.send_to(sink, route.control);
            }
        }
        batch.clear();
        sent
    }

    /// One duty cycle: rebuild, NAK what is missing, clean, send a status message when due,
    /// publish the end of stream and the liveness. Returns the work done.
    pub fn do_work(
        &mut self,
        now_ns: i64,
        batch: &mut SendBatch,
        sink: &mut dyn DatagramSink,
    ) -> usize {
        let before = self.rebuild_position;
        let mut gap = self.rebuild();
        if !self.reliable
            && let Some(missing) = gap
        {
            self.note_gap(missing);
            self.pad(missing);
            gap = self.rebuild();
        }
        let mut work = usize::from(self.rebuild_position != before);
        batch.clear();
        let nak = if self.reliable {
            self.loss.on_scan(gap, now_ns)
        } else {
            None
        };
        if let Some(gap) = nak {
            self.note_gap(gap);
            let frame = Nak {
                frame_length: i32::try_from(NAK_LENGTH).unwrap_or(i32::MAX),
                flags: 0,
                session_id: self.session_id,
                stream_id: self.stream_id,
                term_id: gap.term_id,
                term_offset: i32::try_from(gap.term_offset).unwrap_or(0),
                length: i32::try_from(gap.length).unwrap_or(i32::MAX),
            };
            batch.push_with(NAK_LENGTH, |bytes| {
                let _ = frame.encode(bytes);
            });
            self.tally.naks_sent += 1;
        }
        self.status
            .rebuild
            .store(self.rebuild_position, Ordering::Release);
        self.status
            .high_water_mark
            .store(self.high_water_mark, Ordering::Release);
        if let Some(end) = self.end_of_stream
            && self.rebuild_position >= end
            && !self.end_of_stream_published
        {
            self.end_of_stream_published = true;
            self.log.metadata().set_end_of_stream_position(end);
            self.status
                .state
                .store(ImageState::EndOfStream as u8, Ordering::Release);
            work += 1;
        }
        let consumption = self.consumption();
        if let Some(window) = self.timing.poll(consumption, now_ns) {
            let message = StatusMessage {
                frame_length: i32::try_from(STATUS_MESSAGE_LENGTH).unwrap_or(i32::MAX),
                flags: if self.closing {
                    status_flags::END_OF_STREAM
                } else {
                    0
                },
                session_id: self.session_id,
                stream_id: self.stream_id,
                consumption_term_id: self.geometry.term_id(consumption),
                consumption_term_offset: i32::try_from(self.geometry.term_offset(consumption))
                    .unwrap_or(0),
                receiver_window: i32::try_from(window).unwrap_or(i32::MAX),
                receiver_id: self.receiver_id,
                group_tag: None,
            };
            batch.push_with(STATUS_MESSAGE_LENGTH, |bytes| {
                let _ = message.encode(bytes);
            });
            self.tally.status_messages_sent += 1;
        }
        let clean_target = consumption - i64::from(self.geometry.term_length());
        if clean_target > self.clean_position {
            // At least twice what came in since the last step, so that under sustained load
            // the cleaner gains on the writes it makes room for; a term at most (a step covers
            // one partition).
            let inserted = i64::try_from(self.inserted_since_clean).unwrap_or(i64::MAX);
            let chunk = CLEAN_CHUNK_BYTES.max(inserted.saturating_mul(2));
            let target = clean_target.min(self.clean_position.saturating_add(chunk));
            let target = target & !(i64::try_from(FRAME_ALIGNMENT).unwrap_or(32) - 1);
            for _ in 0..2 {
                if target <= self.clean_position {
                    break;
                }
                self.clean_position = self.log.clean_step(self.clean_position, target);
            }
            self.inserted_since_clean = 0;
            work += 1;
        }
        if !self.timing.is_live(now_ns) && self.status.state() == ImageState::Active {
            self.status
                .state
                .store(ImageState::Gone as u8, Ordering::Release);
            work += 1;
        }
        if !batch.is_empty() {
            work += self.send(batch, sink, now_ns);
        }
        work
    }
}
