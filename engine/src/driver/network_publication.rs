//! A network publication's sending side (Aeron's `NetworkPublication`), sans-IO: which frames
//! of the log go out next, SETUP until a receiver answers, heartbeats, end of stream, answers
//! to status messages, NAKs and RTT measurement requests.
//!
//! The core is owned by the sender agent, the only thread that runs it. It reads the log that
//! publishers write (frames are read only after their length is seen, acquire) and never writes
//! it. It shares a [`SenderStatus`] with the conductor: the sender position and whether the
//! publication is connected (written here, release), from which the conductor moves the
//! publisher limit and cleans the log behind the sender. Frames from receivers are input from
//! the network: each is checked by the decoders and by the flow control and retransmit
//! handler, whose limits hold whatever a receiver claims; nothing here sends toward the address
//! a control frame came from, so a spoofed source cannot turn the publication into an amplifier.
//!
//! Datagrams are copied out of the log into the agent's [`SendBatch`] (one copy; the term may
//! be cleaned behind the sender while the batch is still being sent) and sent through a
//! [`DatagramSink`] to each destination: one address (unicast, a multicast group), or the
//! destinations of a multi-destination publication, added by the application (manual) or by
//! receivers that ask to join at the control address (dynamic; at most [`MAX_DESTINATIONS`],
//! each forgotten after the receiver timeout without a word). The sender position moves only by
//! what reached every destination.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};

use tern_codec::frame::{
    DATA_HEADER_LENGTH, DataHeader, FrameType, Nak, RTTM_LENGTH, Rttm, SETUP_LENGTH, Setup,
    StatusMessage, data_flags, rttm_flags, status_flags,
};
use tern_codec::position::TermGeometry;

use super::flow_control::{FlowControl, Limits, Outcome, Strategy};
use super::publication_timing::{Due, PublicationTiming, Timings};
use super::retransmit_handler::{
    Ignored, Retransmit, RetransmitConfig, RetransmitHandler, SentWindow,
};
use super::send_batch::{DatagramSink, SendBatch};
use crate::logbuffer::descriptor::{copy_slots, index_by_term};
use crate::logbuffer::frame_header::HeaderTemplate;
use crate::logbuffer::log_buffers::LogBuffers;
use crate::logbuffer::term_scanner::scan_for_availability;
use crate::udp_transport::BATCH_MAX;

const FRAME_TERM_OFFSET: usize = tern_codec::frame::data_offsets::TERM_OFFSET;
const FRAME_SESSION_ID: usize = tern_codec::frame::data_offsets::SESSION_ID;
const FRAME_TERM_ID: usize = tern_codec::frame::data_offsets::TERM_ID;

/// Ranges waiting to be resent, at most (more NAKs than this in one cycle wait for the next).
const PENDING_RESENDS: usize = 16;
/// RTT measurement replies waiting, at most.
const PENDING_RTTM: usize = 4;

/// What the sender shares with the conductor.
#[derive(Debug, Default)]
pub struct SenderStatus {
    /// How far the sender has sent (release; the conductor cleans behind it).
    position: AtomicI64,
    /// The sender limit flow control allows.
    limit: AtomicI64,
    /// Whether a receiver is connected (status messages within the timeout, enough receivers).
    connected: AtomicBool,
    /// Whether a heartbeat carrying the end of stream went out.
    end_of_stream_sent: AtomicBool,
}

impl SenderStatus {
    /// A status at `position`, not connected.
    pub fn new(position: i64) -> Self {
        Self {
            position: AtomicI64::new(position),
            limit: AtomicI64::new(position),
            connected: AtomicBool::new(false),
            end_of_stream_sent: AtomicBool::new(false),
        }
    }

    /// Whether the end of stream was sent (the publication ended and all of it went out).
    pub fn end_of_stream_sent(&self) -> bool {
        self.end_of_stream_sent.load(Ordering::Acquire)
    }

    /// The sender position.
    pub fn position(&self) -> i64 {
        self.position.load(Ordering::Acquire)
    }

    /// The sender limit.
    pub fn limit(&self) -> i64 {
        self.limit.load(Ordering::Acquire)
    }

    /// Whether a receiver is connected.
    pub fn is_connected(&self) -> bool {
        self.connected.load(Ordering::Acquire)
    }
}

/// What the sender counts, per publication, read by the agent into the driver's counters.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SenderTally {
    /// Data bytes sent (new data, not retransmissions).
    pub bytes_sent: u64,
    /// Datagrams sent, of any kind.
    pub datagrams_sent: u64,
    /// Sends the socket took only part of.
    pub short_sends: u64,
    /// Heartbeats sent.
    pub heartbeats: u64,
    /// SETUP frames sent.
    pub setups: u64,
    /// Status messages received.
    pub status_messages: u64,
    /// NAKs received.
    pub naks_received: u64,
    /// NAKs not acted on (out of window, overlapping, busy, over budget).
    pub naks_ignored: u64,
    /// Ranges resent.
    pub retransmits: u64,
    /// Bytes resent.
    pub retransmitted_bytes: u64,
    /// Control frames for another stream or session, or malformed.
    pub invalid_frames: u64,
}

/// Where a network publication sends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Destination {
    /// One address: a unicast receiver or a multicast group.
    Fixed(SocketAddr),
    /// Multi-destination cast, destinations added and removed by the application.
    Manual,
    /// Multi-destination cast, receivers joining by sending to the control address (and
    /// dropped after the receiver timeout without a word).
    Dynamic,
}

/// Destinations a multi-destination publication keeps at most: every datagram goes to each, so
/// the bound is also the bound on how much a joining receiver can multiply the traffic.
pub const MAX_DESTINATIONS: usize = 64;

/// How a network publication is made.
#[derive(Debug, Clone)]
pub struct PublicationParams {
    /// Where data goes.
    pub destination: Destination,
    /// Flow control.
    pub strategy: Strategy,
    /// SETUP, heartbeat and connection timing.
    pub timings: Timings,
    /// Retransmission limits.
    pub retransmit: RetransmitConfig,
    /// A multicast receiver not heard from this long no longer holds the limit.
    pub receiver_timeout_ns: i64,
    /// Multicast hops, sent in SETUP.
    pub ttl: u8,
}

/// A network publication, as the sender runs it.
#[derive(Debug)]
pub struct NetworkPublication {
    registration_id: i64,
    session_id: i32,
    stream_id: i32,
    mtu: usize,
    geometry: TermGeometry,
    log: Arc<LogBuffers>,
    mode: Destination,
    /// The addresses sent to, with when each was last heard from (dynamic mode).
    destinations: Vec<(SocketAddr, i64)>,
    receiver_timeout_ns: i64,
    ttl: u8,
    sender_position: i64,
    flow_control: FlowControl,
    timing: PublicationTiming,
    retransmit: RetransmitHandler,
    status: Arc<SenderStatus>,
    pending_resends: [Option<Retransmit>; PENDING_RESENDS],
    pending_rttm: [Option<Rttm>; PENDING_RTTM],
    /// How far each datagram of the batch being sent moves the sender position (kept here, not
    /// made per call: a send that finds nothing new costs no initialisation).
    advances: [usize; BATCH_MAX],
    tally: SenderTally,
}

impl NetworkPublication {
    /// The sending side of publication `registration_id` over `log`, starting where the log's
    /// publishers start (position 0, unless an exclusive publication was placed), at `now_ns`.
    pub fn new(
        registration_id: i64,
        log: Arc<LogBuffers>,
        params: &PublicationParams,
        now_ns: i64,
    ) -> Self {
        let geometry = log.geometry();
        let metadata = log.metadata();
        let template = HeaderTemplate::new(metadata.default_header());
        let window = metadata.publication_window();
        let limits = Limits {
            initial_term_id: geometry.initial_term_id(),
            term_length: geometry.term_length(),
            max_window: window.min(geometry.term_length() / 2),
            receiver_timeout_ns: params.receiver_timeout_ns,
            max_receivers: 64,
        };
        let mtu = usize::try_from(metadata.mtu()).unwrap_or(DATA_HEADER_LENGTH);
        // Position 0, or where an exclusive publication was placed to start (a replay).
        let start = super::ipc_publication::producer_position_of(&log);
        let status = Arc::new(SenderStatus::new(start));
        Self {
            registration_id,
            session_id: template.session_id(),
            stream_id: template.stream_id(),
            mtu,
            geometry,
            log,
            mode: params.destination,
            destinations: {
                let mut destinations = Vec::with_capacity(MAX_DESTINATIONS);
                if let Destination::Fixed(address) = params.destination {
                    destinations.push((address, now_ns));
                }
                destinations
            },
            receiver_timeout_ns: params.receiver_timeout_ns,
            ttl: params.ttl,
            sender_position: start,
            flow_control: FlowControl::new(params.strategy, limits, start),
            timing: PublicationTiming::new(params.timings, now_ns),
            retransmit: RetransmitHandler::new(params.retransmit.clone()),
            status,
            pending_resends: [None; PENDING_RESENDS],
            pending_rttm: [None; PENDING_RTTM],
            advances: [0; BATCH_MAX],
            tally: SenderTally::default(),
        }
    }

    /// The publication's registration id.
    pub fn registration_id(&self) -> i64 {
        self.registration_id
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
    pub fn status(&self) -> &Arc<SenderStatus> {
        &self.status
    }

    /// How far it has sent.
    pub fn sender_position(&self) -> i64 {
        self.sender_position
    }

    /// What it counted so far.
    pub fn tally(&self) -> SenderTally {
        self.tally
    }

    /// A control frame that is not for this publication's sender (malformed, or of a kind
    /// only receivers take) arrived on its socket.
    pub fn count_invalid(&mut self) {
        self.tally.invalid_frames += 1;
    }

    fn window(&self) -> SentWindow {
        SentWindow {
            initial_term_id: self.geometry.initial_term_id(),
            term_length: self.geometry.term_length(),
            sent_position: self.sender_position,
        }
    }

    /// A status message arrived from a receiver. One for another session or stream (on a
    /// multicast control group every publication hears every session's) is ignored.
    pub fn on_status_message(&mut self, message: &StatusMessage, source: SocketAddr, now_ns: i64) {
        let send_setup = message.flags & status_flags::SEND_SETUP != 0;
        let ours = message.session_id == self.session_id && message.stream_id == self.stream_id;
        // A receiver joining a dynamic multi-destination publication knows no session yet, and
        // Aeron C's receivers ask once per endpoint, for stream 0: any request for SETUP at the
        // control address is a join.
        let joining = send_setup && self.mode == Destination::Dynamic;
        // Another publication's (a multicast control group carries every session's): not ours.
        if !ours && !joining {
            return;
        }
        self.tally.status_messages += 1;
        if self.mode == Destination::Dynamic && message.flags & status_flags::END_OF_STREAM == 0 {
            self.heard_from(source, now_ns);
        }
        if send_setup {
            // A receiver that heard data of a session it has no image for asks for SETUP: its
            // message carries no position, so it is no receiver for flow control (counted as
            // one, a stuck receiver's zero position could read as caught up and let the
            // slowest-receiver limit run past it).
            self.timing.on_setup_requested(now_ns);
            return;
        }
        if let Outcome::Limit(limit) =
            self.flow_control
                .on_status_message(message, self.sender_position, now_ns)
        {
            self.status.limit.store(limit, Ordering::Release);
        }
        // A departing receiver's last word does not keep the publication connected.
        if message.flags & status_flags::END_OF_STREAM == 0 {
            self.timing.on_status_message(false, now_ns);
        }
        self.update_connected(now_ns);
    }

    /// A dynamic destination spoke: it is sent to from now on (if there is room).
    fn heard_from(&mut self, source: SocketAddr, now_ns: i64) {
        if let Some(destination) = self
            .destinations
            .iter_mut()
            .find(|(address, _)| *address == source)
        {
            destination.1 = now_ns;
        } else if self.destinations.len() < MAX_DESTINATIONS {
            self.destinations.push((source, now_ns));
        }
    }

    /// Adds a destination (manual mode); false when the publication has no room or is not in
    /// manual mode.
    pub fn add_destination(&mut self, address: SocketAddr, now_ns: i64) -> bool {
        if self.mode != Destination::Manual {
            return false;
        }
        if self.destinations.iter().any(|(known, _)| *known == address) {
            return true;
        }
        if self.destinations.len() >= MAX_DESTINATIONS {
            return false;
        }
        self.destinations.push((address, now_ns));
        // A new receiver needs SETUP before it can make an image.
        self.timing.on_setup_requested(now_ns);
        true
    }

    /// Removes a destination (manual mode).
    pub fn remove_destination(&mut self, address: SocketAddr) {
        if self.mode == Destination::Manual {
            self.destinations.retain(|(known, _)| *known != address);
        }
    }

    /// The addresses sent to now.
    pub fn destinations(&self) -> impl Iterator<Item = SocketAddr> + '_ {
        self.destinations.iter().map(|(address, _)| *address)
    }

    /// Sends the batch to every destination and empties it; returns the datagrams that reached
    /// all of them (a short send to one means its receivers ask for the rest).
    fn send_to_all(&mut self, batch: &mut SendBatch, sink: &mut dyn DatagramSink) -> usize {
        let gathered = batch.len();
        let mut sent = if self.destinations.is_empty() {
            0
        } else {
            gathered
        };
        for index in 0..self.destinations.len() {
            let address = self.destinations[index].0;
            sent = sent.min(batch.send_to(sink, address));
        }
        batch.clear();
        sent
    }

    /// A NAK arrived: its range is resent at the next [`NetworkPublication::send_control`]
    /// (unicast) or when its delay ends (multicast), if the retransmit handler allows it.
    pub fn on_nak(&mut self, nak: &Nak, now_ns: i64) -> Result<(), Ignored> {
        if nak.session_id != self.session_id || nak.stream_id != self.stream_id {
            return Err(Ignored::OutOfWindow);
        }
        self.tally.naks_received += 1;
        let range = match (u32::try_from(nak.term_offset), u32::try_from(nak.length)) {
            (Ok(term_offset), Ok(length)) => Retransmit {
                term_id: nak.term_id,
                term_offset,
                length,
            },
            _ => {
                self.tally.naks_ignored += 1;
                return Err(Ignored::OutOfWindow);
            }
        };
        let window = self.window();
        match self.retransmit.on_nak(range, &window, now_ns) {
            Ok(Some(range)) => {
                self.queue_resend(range);
                Ok(())
            }
            Ok(None) => Ok(()),
            Err(ignored) => {
                self.tally.naks_ignored += 1;
                Err(ignored)
            }
        }
    }

    fn queue_resend(&mut self, range: Retransmit) {
        match self.pending_resends.iter_mut().find(|slot| slot.is_none()) {
            Some(slot) => *slot = Some(range),
            // Every slot waits to be sent: the receiver asks again after its retry delay.
            None => self.tally.naks_ignored += 1,
        }
    }

    /// An RTT measurement arrived; one asking for a reply is answered at the next
    /// [`NetworkPublication::send_control`], to the publication's destinations.
    pub fn on_rttm(&mut self, rttm: &Rttm) {
        if rttm.session_id != self.session_id || rttm.stream_id != self.stream_id {
            return;
        }
        if rttm.flags & rttm_flags::REPLY == 0 {
            return;
        }
        if let Some(slot) = self.pending_rttm.iter_mut().find(|slot| slot.is_none()) {
            *slot = Some(Rttm {
                frame_length: i32::try_from(RTTM_LENGTH).unwrap_or(i32::MAX),
                flags: 0,
                reception_delta_ns: 0,
                ..*rttm
            });
        }
    }

    fn update_connected(&mut self, now_ns: i64) {
        let connected =
            self.timing.is_connected(now_ns) && self.flow_control.has_required_receivers();
        if connected != self.status.connected.load(Ordering::Relaxed) {
            self.status.connected.store(connected, Ordering::Release);
        }
    }

    /// Sends new data: frames from the sender position up to the sender limit, batched into
    /// datagrams of at most the MTU. Returns the bytes the position moved.
    pub fn send_data(
        &mut self,
        now_ns: i64,
        batch: &mut SendBatch,
        sink: &mut dyn DatagramSink,
    ) -> usize {
        let limit = self.flow_control.limit();
        let mut position = self.sender_position;
        batch.clear();
        while position < limit && batch.len() < BATCH_MAX {
            let term_offset = usize::try_from(self.geometry.term_offset(position)).unwrap_or(0);
            let index = index_by_term(
                self.geometry.initial_term_id(),
                self.geometry.term_id(position),
            );
            let term = self.log.term(index);
            let window = usize::try_from(limit - position).unwrap_or(usize::MAX);
            let scan = scan_for_availability(&term, term_offset, self.mtu.min(window));
            if scan.available == 0 {
                break;
            }
            if !batch.push_with(scan.available, |bytes| {
                copy_slots(&term, term_offset, bytes);
            }) {
                break;
            }
            let advance = scan.available + scan.padding;
            self.advances[batch.len() - 1] = advance;
            position += i64::try_from(advance).unwrap_or(0);
        }
        let gathered = batch.len();
        if gathered == 0 {
            return 0;
        }
        let sent = self.send_to_all(batch, sink);
        if sent < gathered && !self.destinations.is_empty() {
            self.tally.short_sends += 1;
        }
        let advanced: usize = self.advances[..sent].iter().sum();
        if advanced > 0 {
            self.tally.datagrams_sent += sent as u64;
            self.tally.bytes_sent += advanced as u64;
            self.sender_position += i64::try_from(advanced).unwrap_or(0);
            self.status
                .position
                .store(self.sender_position, Ordering::Release);
            self.timing.on_data_sent(now_ns);
        }
        advanced
    }

    /// Sends what is due besides new data: resends answering NAKs, RTT replies, SETUP and
    /// heartbeats; and ages receivers and the connection. Returns the datagrams sent.
    pub fn send_control(
        &mut self,
        now_ns: i64,
        batch: &mut SendBatch,
        sink: &mut dyn DatagramSink,
    ) -> usize {
        let mut sent = 0;
        let window = self.window();
        while let Some(range) = self.retransmit.poll(&window, now_ns) {
            self.queue_resend(range);
        }
        for index in 0..PENDING_RESENDS {
            if let Some(range) = self.pending_resends[index].take() {
                sent += self.resend(range, now_ns, batch, sink);
            }
        }
        batch.clear();
        for index in 0..PENDING_RTTM {
            if let Some(reply) = self.pending_rttm[index].take() {
                batch.push_with(RTTM_LENGTH, |bytes| {
                    let _ = reply.encode(bytes);
                });
            }
        }
        if self.mode == Destination::Dynamic {
            let timeout = self.receiver_timeout_ns;
            self.destinations
                .retain(|(_, heard_ns)| now_ns - heard_ns <= timeout);
        }
        let limit = self.flow_control.on_idle(now_ns);
        self.status.limit.store(limit, Ordering::Release);
        let ended = self.sender_position >= self.log.metadata().end_of_stream_position();
        // The end of stream goes out as soon as everything before it has: receivers learn at
        // once, and the publication may end after its linger.
        let due = match self.timing.poll(now_ns) {
            None if ended && !self.status.end_of_stream_sent() => Some(Due::Heartbeat),
            due => due,
        };
        match due {
            Some(Due::Setup) => {
                let setup = self.setup_frame();
                batch.push_with(SETUP_LENGTH, |bytes| {
                    let _ = setup.encode(bytes);
                });
                self.tally.setups += 1;
            }
            Some(Due::Heartbeat) => {
                let heartbeat = self.heartbeat_frame();
                batch.push_with(DATA_HEADER_LENGTH, |bytes| {
                    let _ = heartbeat.encode(bytes);
                });
                self.tally.heartbeats += 1;
                if heartbeat.flags & data_flags::END_OF_STREAM != 0 {
                    self.status
                        .end_of_stream_sent
                        .store(true, Ordering::Release);
                }
            }
            None => {}
        }
        if !batch.is_empty() {
            let gathered = batch.len();
            let went = self.send_to_all(batch, sink);
            if went < gathered {
                self.tally.short_sends += 1;
            }
            self.tally.datagrams_sent += went as u64;
            sent += went;
        }
        self.update_connected(now_ns);
        sent
    }

    /// Resends `range` from the log, frame by frame, batched to the MTU.
    fn resend(
        &mut self,
        range: Retransmit,
        now_ns: i64,
        batch: &mut SendBatch,
        sink: &mut dyn DatagramSink,
    ) -> usize {
        batch.clear();
        let index = index_by_term(self.geometry.initial_term_id(), range.term_id);
        let term = self.log.term(index);
        let mut offset = usize::try_from(range.term_offset).unwrap_or(usize::MAX);
        let end = offset.saturating_add(usize::try_from(range.length).unwrap_or(0));
        // A NAK names an offset, not a frame: a range starting inside a frame (a confused or
        // hostile receiver) would send payload bytes as if they were a frame. Every frame's
        // header carries its own offset, term and session, so the start is checked against
        // them; from a frame, the scan steps frame by frame.
        let is_frame = offset + DATA_HEADER_LENGTH <= term.capacity()
            && term.get_i32(offset + FRAME_TERM_OFFSET) == i32::try_from(offset).unwrap_or(-1)
            && term.get_i32(offset + FRAME_SESSION_ID) == self.session_id
            && term.get_i32(offset + FRAME_TERM_ID) == range.term_id;
        if !is_frame {
            self.tally.naks_ignored += 1;
            return 0;
        }
        let mut bytes = 0;
        while offset < end && batch.len() < BATCH_MAX {
            let mut scan = scan_for_availability(&term, offset, self.mtu.min(end - offset));
            if scan.available == 0 {
                // The range ends inside a frame: the whole frame goes (at most an MTU more).
                scan = scan_for_availability(&term, offset, self.mtu);
            }
            if scan.available == 0 {
                break;
            }
            let at = offset;
            if !batch.push_with(scan.available, |bytes| copy_slots(&term, at, bytes)) {
                break;
            }
            bytes += scan.available;
            offset += scan.available + scan.padding;
        }
        let gathered = batch.len();
        let sent = self.send_to_all(batch, sink);
        if sent < gathered {
            self.tally.short_sends += 1;
        }
        if sent > 0 {
            self.tally.retransmits += 1;
            self.tally.retransmitted_bytes += bytes as u64;
            self.tally.datagrams_sent += sent as u64;
            self.timing.on_data_sent(now_ns);
        }
        sent
    }

    fn setup_frame(&self) -> Setup {
        let position = self.sender_position;
        Setup {
            frame_length: i32::try_from(SETUP_LENGTH).unwrap_or(i32::MAX),
            flags: 0,
            term_offset: i32::try_from(self.geometry.term_offset(position)).unwrap_or(0),
            session_id: self.session_id,
            stream_id: self.stream_id,
            initial_term_id: self.geometry.initial_term_id(),
            active_term_id: self.geometry.term_id(position),
            term_length: i32::try_from(self.geometry.term_length()).unwrap_or(i32::MAX),
            mtu: i32::try_from(self.mtu).unwrap_or(i32::MAX),
            ttl: i32::from(self.ttl),
        }
    }

    fn heartbeat_frame(&self) -> DataHeader {
        let position = self.sender_position;
        let end_of_stream = self.log.metadata().end_of_stream_position();
        let mut flags = data_flags::UNFRAGMENTED;
        if position >= end_of_stream {
            flags |= data_flags::END_OF_STREAM;
        }
        DataHeader {
            frame_length: 0,
            flags,
            frame_type: FrameType::Data,
            term_offset: i32::try_from(self.geometry.term_offset(position)).unwrap_or(0),
            session_id: self.session_id,
            stream_id: self.stream_id,
            term_id: self.geometry.term_id(position),
            reserved_value: 0,
        }
    }
}
