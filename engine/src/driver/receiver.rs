//! The receiver agent: reads datagrams from the subscribed channels' sockets, inserts data into
//! publication images, asks the conductor for an image when a SETUP arrives for a subscribed
//! stream, and sends each image's status messages and NAKs. Each image's protocol is its sans-IO
//! core ([`PublicationImage`]); this agent owns the sockets and the counters.
//!
//! It runs on the thread `driver-receiver` (dedicated), `driver-network` (shared-network) or
//! `driver-shared` (shared), or on the embedding application's thread (invoker). It owns every
//! endpoint and image it is given through its queue; it shares with the conductor each image's
//! [`ImageStatus`](super::publication_image::ImageStatus) and log, the counters and the error
//! log, and sends it SETUP requests through a queue of its own.
//!
//! Every datagram is input from the network: each frame is decoded and checked before it is
//! used, a bad one is counted (`invalid frames`) and the rest of its datagram dropped (nothing
//! after a frame whose length cannot be trusted can be located). Data for a stream nobody
//! subscribed is ignored; data for an unknown session of a subscribed stream asks its source for
//! SETUP, at most once a second per session and never for more than [`ELICIT_LIMIT`] sessions
//! at once, so spoofed data cannot make the receiver a traffic source.

use std::net::SocketAddr;

use tern_codec::frame::{
    DATA_HEADER_LENGTH, Frame, STATUS_MESSAGE_LENGTH, Setup, StatusMessage, status_flags,
};

use super::agent_proxy::{AgentProxy, AgentWork, command_agent};
use super::conductor::DriverConductor;
use super::errors::ErrorRecorder;
use super::loss_generator::{Fate, LossGenerator};
use super::publication_image::{ImageTally, PublicationImage};
use super::reclaim::CounterLease;
use super::send_batch::{DatagramSink, SendBatch};
use super::system_counters::SystemCounter;
use crate::agent::Now;
use crate::loss_report::{EntryIndex, LossReport};
use crate::udp_transport::{Received, UdpTransport};

/// The receiver's role name (its thread's name in dedicated mode).
pub const ROLE: &str = "driver-receiver";
/// Sessions an endpoint asks SETUP of at once, at most.
pub const ELICIT_LIMIT: usize = 64;
/// How often a dynamic multi-destination subscriber asks to join a stream it has no image of.
const JOIN_INTERVAL_NS: i64 = 100_000_000;
/// Receive calls per endpoint per duty cycle at most.
const RECEIVE_CALLS: usize = 4;
/// How long a session asked for SETUP (or sent to the conductor) waits before it is asked again.
const SETUP_RETRY_NS: i64 = 1_000_000_000;

command_agent! {
    /// The receiver agent.
    pub struct Receiver, role ROLE, work ReceiverWork
}

/// A SETUP for a subscribed stream with no image: the conductor makes the image.
#[derive(Debug, Clone, Copy)]
pub(crate) struct SetupRequest {
    pub(crate) endpoint_id: i64,
    pub(crate) setup: Setup,
    pub(crate) source: SocketAddr,
    /// The endpoint's destination it came through.
    pub(crate) destination: u32,
    /// Where that destination's control frames go, when not back to the source.
    pub(crate) control: Option<SocketAddr>,
}

/// An image's counters the receiver keeps.
#[derive(Debug)]
pub(crate) struct ImageCounters {
    /// `rcv-hwm`: the highest position received.
    pub(crate) high_water_mark: CounterLease,
    /// `rcv-pos`: how far the image is complete.
    pub(crate) rebuild: CounterLease,
}

/// An image, its counters and how it appears in the loss report.
#[derive(Debug)]
pub(crate) struct ImageEntry {
    pub(crate) image: PublicationImage,
    pub(crate) counters: ImageCounters,
    reported: ImageTally,
    /// The subscription channel and the source, for the loss report.
    channel: String,
    source: String,
    loss_entry: Option<EntryIndex>,
}

impl ImageEntry {
    pub(crate) fn new(
        image: PublicationImage,
        counters: ImageCounters,
        channel: String,
        source: String,
    ) -> Self {
        Self {
            image,
            counters,
            reported: ImageTally::default(),
            channel,
            source,
            loss_entry: None,
        }
    }

    /// Adds what the image lost since the last call to the loss report.
    fn report_loss(&mut self, report: &mut LossReport, now_ms: i64) {
        let lost = self.image.take_new_loss();
        if lost == 0 {
            return;
        }
        match self.loss_entry {
            Some(entry) => report.record_observation(entry, lost, now_ms),
            None => {
                self.loss_entry = report.create_entry(
                    lost,
                    now_ms,
                    self.image.session_id(),
                    self.image.stream_id(),
                    &self.channel,
                    &self.source,
                );
            }
        }
    }
}

/// A session waiting for SETUP or for its image.
#[derive(Debug, Clone, Copy)]
struct Waiting {
    session_id: i32,
    stream_id: i32,
    since_ns: i64,
    /// Its SETUP went to the conductor (rather than: it was asked for SETUP).
    requested: bool,
}

/// One socket an endpoint receives on: the endpoint's only one, or a destination of a
/// multi-destination subscription.
#[derive(Debug)]
pub(crate) struct ReceiveDestination {
    /// Its id on the endpoint (routes of images name it).
    id: u32,
    /// The address it is bound to (its channel's endpoint), by which it is removed.
    address: SocketAddr,
    transport: UdpTransport,
    /// Where its control frames go, when not back to each source: a multicast group's
    /// control group, or a dynamic multi-destination publication's control address.
    control: Option<SocketAddr>,
    /// Whether it asks the control address to send to it (dynamic multi-destination), and
    /// when next.
    joins: bool,
    next_join_ns: i64,
}

impl ReceiveDestination {
    pub(crate) fn new(
        id: u32,
        address: SocketAddr,
        transport: UdpTransport,
        control: Option<SocketAddr>,
        joins: bool,
    ) -> Self {
        Self {
            id,
            address,
            transport,
            control,
            joins,
            next_join_ns: 0,
        }
    }
}

/// A subscribed channel: its sockets (one, or a multi-destination subscription's
/// destinations), its streams and their images.
#[derive(Debug)]
pub(crate) struct ReceiveEndpoint {
    id: i64,
    destinations: Vec<ReceiveDestination>,
    /// Whether it is a multi-destination subscription: an image keeps a route back through
    /// each destination its stream arrives on.
    multi: bool,
    streams: Vec<i32>,
    images: Vec<ImageEntry>,
    waiting: Vec<Waiting>,
    /// Status messages asking for SETUP, to send after the datagrams are read: where to, and
    /// through which destination.
    elicits: Vec<(StatusMessage, SocketAddr, u32)>,
    /// Its receiver id in status messages.
    receiver_id: i64,
}

impl ReceiveEndpoint {
    /// An endpoint with `destinations` (one, or none yet for a multi-destination one).
    pub(crate) fn new(
        id: i64,
        destinations: Vec<ReceiveDestination>,
        multi: bool,
        receiver_id: i64,
    ) -> Self {
        Self {
            receiver_id,
            id,
            destinations,
            multi,
            streams: Vec::new(),
            images: Vec::new(),
            waiting: Vec::with_capacity(ELICIT_LIMIT),
            elicits: Vec::with_capacity(ELICIT_LIMIT),
        }
    }
}

/// What the receiver runs.
#[derive(Debug)]
pub struct ReceiverWork {
    endpoints: Vec<ReceiveEndpoint>,
    batch: SendBatch,
    loss: Option<LossGenerator>,
    /// A datagram the loss generator holds back, and its source.
    held: (Vec<u8>, Option<SocketAddr>),
    conductor: AgentProxy<DriverConductor>,
    receiver_id: i64,
    loss_report: LossReport,
}

impl ReceiverWork {
    pub(crate) fn new(
        conductor: AgentProxy<DriverConductor>,
        receiver_id: i64,
        loss: Option<LossGenerator>,
        loss_report: LossReport,
    ) -> Self {
        Self {
            endpoints: Vec::new(),
            batch: SendBatch::new(),
            held: (
                Vec::with_capacity(if loss.is_some() {
                    crate::udp_transport::DATAGRAM_MAX
                } else {
                    0
                }),
                None,
            ),
            loss,
            conductor,
            receiver_id,
            loss_report,
        }
    }

    /// This receiver's id in status messages.
    pub fn receiver_id(&self) -> i64 {
        self.receiver_id
    }

    /// Endpoints open.
    pub fn endpoints(&self) -> usize {
        self.endpoints.len()
    }

    pub(crate) fn add_endpoint(&mut self, endpoint: ReceiveEndpoint) {
        self.endpoints.push(endpoint);
    }

    /// Closes endpoint `id` with its images.
    pub(crate) fn remove_endpoint(&mut self, id: i64) {
        self.endpoints.retain(|endpoint| endpoint.id != id);
    }

    fn endpoint(&mut self, id: i64) -> Option<&mut ReceiveEndpoint> {
        self.endpoints.iter_mut().find(|endpoint| endpoint.id == id)
    }

    /// Starts receiving on another destination of multi-destination endpoint `id`.
    pub(crate) fn add_destination(&mut self, id: i64, destination: ReceiveDestination) {
        if let Some(endpoint) = self.endpoint(id) {
            endpoint.destinations.push(destination);
        }
    }

    /// Stops receiving on the destination of endpoint `id` bound to `address`: its socket
    /// closes and no image sends through it again.
    pub(crate) fn remove_destination(&mut self, id: i64, address: SocketAddr) {
        if let Some(endpoint) = self.endpoint(id) {
            let gone: Vec<u32> = endpoint
                .destinations
                .iter()
                .filter(|destination| destination.address == address)
                .map(|destination| destination.id)
                .collect();
            endpoint
                .destinations
                .retain(|destination| destination.address != address);
            for entry in &mut endpoint.images {
                for &destination in &gone {
                    entry.image.remove_route(destination);
                }
            }
        }
    }

    /// Starts accepting `stream_id` on endpoint `id`.
    pub(crate) fn add_stream(&mut self, id: i64, stream_id: i32) {
        if let Some(endpoint) = self.endpoint(id)
            && !endpoint.streams.contains(&stream_id)
        {
            endpoint.streams.push(stream_id);
        }
    }

    /// Stops accepting `stream_id` on endpoint `id`; its images go.
    pub(crate) fn remove_stream(&mut self, id: i64, stream_id: i32) {
        if let Some(endpoint) = self.endpoint(id) {
            endpoint.streams.retain(|stream| *stream != stream_id);
            endpoint
                .images
                .retain(|entry| entry.image.stream_id() != stream_id);
        }
    }

    /// Starts rebuilding an image on endpoint `id`.
    pub(crate) fn add_image(&mut self, id: i64, entry: ImageEntry) {
        match self.endpoint(id) {
            Some(endpoint) => {
                let (session, stream) = (entry.image.session_id(), entry.image.stream_id());
                endpoint
                    .waiting
                    .retain(|waiting| waiting.session_id != session || waiting.stream_id != stream);
                endpoint.images.push(entry);
            }
            // The endpoint closed while the conductor made the image: dropping it releases it.
            None => drop(entry),
        }
    }

    /// Stops rebuilding image `image_id` (the conductor withdrew it).
    pub(crate) fn remove_image(&mut self, id: i64, image_id: i64) {
        if let Some(endpoint) = self.endpoint(id) {
            endpoint
                .images
                .retain(|entry| entry.image.image_id() != image_id);
        }
    }
}

/// An endpoint's sockets as the image cores see them: sends leave from the destination last
/// chosen (the first, until one is).
struct EndpointSink<'a> {
    destinations: &'a mut [ReceiveDestination],
    current: usize,
    errors: &'a ErrorRecorder,
    now_ms: i64,
}

impl DatagramSink for EndpointSink<'_> {
    fn use_socket(&mut self, socket: u32) {
        // A destination removed since (its route goes with it): nothing leaves.
        self.current = self
            .destinations
            .iter()
            .position(|destination| destination.id == socket)
            .unwrap_or(usize::MAX);
    }

    fn send(&mut self, datagrams: &[&[u8]], destination: SocketAddr) -> usize {
        let Some(socket) = self.destinations.get_mut(self.current) else {
            // No such socket (removed, or a multi-destination endpoint with none): nothing goes.
            return 0;
        };
        match socket.transport.send(datagrams, destination) {
            Ok(sent) => {
                self.errors.system().add(SystemCounter::DatagramsSent, sent);
                if sent < datagrams.len() {
                    self.errors.system().increment(SystemCounter::ShortSends);
                }
                sent
            }
            Err(error) => {
                self.errors.system().increment(SystemCounter::SendErrors);
                self.errors
                    .record(self.now_ms, &format!("send to {destination}: {error}"));
                0
            }
        }
    }
}

/// What one datagram asks of the agent besides inserting data.
struct Dispatch<'a> {
    now_ns: i64,
    endpoint_id: i64,
    streams: &'a [i32],
    images: &'a mut [ImageEntry],
    waiting: &'a mut Vec<Waiting>,
    elicits: &'a mut Vec<(StatusMessage, SocketAddr, u32)>,
    /// The destination the datagrams arrive on, and where its control frames go.
    destination: u32,
    control: Option<SocketAddr>,
    /// Whether images keep a route per destination (multi-destination subscription).
    multi: bool,
    conductor: &'a mut AgentProxy<DriverConductor>,
    receiver_id: i64,
    invalid: usize,
}

impl Dispatch<'_> {
    fn on_datagram(&mut self, datagram: &[u8], source: SocketAddr) {
        let mut offset = 0;
        while let Some(rest) = datagram.get(offset..).filter(|rest| !rest.is_empty()) {
            let Ok(frame) = Frame::decode(rest) else {
                self.invalid += 1;
                return;
            };
            let step = frame.datagram_length();
            match frame {
                Frame::Data(data) => {
                    let header = data.header;
                    let length = usize::try_from(header.frame_length)
                        .unwrap_or(0)
                        .max(DATA_HEADER_LENGTH);
                    self.on_data(&header, rest.get(..length).unwrap_or(rest), source);
                }
                Frame::Pad(header) => self.on_data(
                    &header,
                    rest.get(..DATA_HEADER_LENGTH).unwrap_or(rest),
                    source,
                ),
                Frame::Setup(setup) => self.on_setup(&setup, source),
                // Measurement replies and control frames of other kinds are not a receiver's.
                Frame::Rttm(_) => {}
                _ => self.invalid += 1,
            }
            offset += step;
        }
    }

    fn on_data(
        &mut self,
        header: &tern_codec::frame::DataHeader,
        frame: &[u8],
        source: SocketAddr,
    ) {
        let found = self.images.iter_mut().find(|entry| {
            entry.image.session_id() == header.session_id
                && entry.image.stream_id() == header.stream_id
        });
        match found {
            // Dropped frames are counted by the image.
            Some(entry) if self.multi => {
                let control = self.control.unwrap_or(source);
                let _ =
                    entry
                        .image
                        .on_frame_via(header, frame, self.now_ns, self.destination, control);
            }
            Some(entry) => {
                let _ = entry.image.on_frame(header, frame, self.now_ns);
            }
            None if self.streams.contains(&header.stream_id) => {
                self.elicit_setup(header.session_id, header.stream_id, source);
            }
            None => {}
        }
    }

    /// Asks `source` for SETUP of a session it sends data for (rate-limited and bounded).
    fn elicit_setup(&mut self, session_id: i32, stream_id: i32, source: SocketAddr) {
        if !self.admit_waiting(session_id, stream_id, false) || self.elicits.len() >= ELICIT_LIMIT {
            return;
        }
        self.elicits.push((
            StatusMessage {
                frame_length: i32::try_from(STATUS_MESSAGE_LENGTH).unwrap_or(i32::MAX),
                flags: status_flags::SEND_SETUP,
                session_id,
                stream_id,
                consumption_term_id: 0,
                consumption_term_offset: 0,
                receiver_window: 0,
                receiver_id: self.receiver_id,
                group_tag: None,
            },
            // A multicast sender hears its control group only.
            self.control.unwrap_or(source),
            self.destination,
        ));
    }

    /// Records the session as waiting from now, unless it already waits within the retry
    /// (a SETUP may replace a wait for SETUP) or the table is full; whether it was recorded.
    fn admit_waiting(&mut self, session_id: i32, stream_id: i32, requested: bool) -> bool {
        let now_ns = self.now_ns;
        self.waiting
            .retain(|waiting| now_ns - waiting.since_ns < SETUP_RETRY_NS);
        let same =
            |waiting: &Waiting| waiting.session_id == session_id && waiting.stream_id == stream_id;
        match self.waiting.iter().position(same) {
            Some(index) if requested && !self.waiting[index].requested => {
                self.waiting.swap_remove(index);
            }
            Some(_) => return false,
            None if self.waiting.len() >= ELICIT_LIMIT => return false,
            None => {}
        }
        self.waiting.push(Waiting {
            session_id,
            stream_id,
            since_ns: now_ns,
            requested,
        });
        true
    }

    fn on_setup(&mut self, setup: &Setup, source: SocketAddr) {
        if !self.streams.contains(&setup.stream_id) {
            return;
        }
        if let Some(entry) = self.images.iter_mut().find(|entry| {
            entry.image.session_id() == setup.session_id
                && entry.image.stream_id() == setup.stream_id
        }) {
            // The stream also comes this way: status messages go back this way too (which is
            // how a dynamic multi-destination publication learns to send here).
            if self.multi {
                let control = self.control.unwrap_or(source);
                entry
                    .image
                    .on_setup_via(setup, self.destination, control, self.now_ns);
            }
            return;
        }
        if !self.admit_waiting(setup.session_id, setup.stream_id, true) {
            return;
        }
        let request = SetupRequest {
            endpoint_id: self.endpoint_id,
            setup: *setup,
            source,
            destination: self.destination,
            control: self.control,
        };
        if self
            .conductor
            .offer(move |conductor: &mut DriverConductor| conductor.on_setup(request))
            .is_err()
        {
            // The conductor is not keeping up: the next SETUP (every 100 ms) asks again.
            self.waiting.retain(|waiting| {
                waiting.session_id != setup.session_id || waiting.stream_id != setup.stream_id
            });
        }
    }
}

impl AgentWork for ReceiverWork {
    fn do_work(&mut self, now: Now, errors: &ErrorRecorder) -> usize {
        let mut work = 0;
        let now_ns = now.nanos;
        for endpoint in &mut self.endpoints {
            let ReceiveEndpoint {
                id,
                destinations,
                multi,
                streams,
                images,
                waiting,
                elicits,
                receiver_id,
            } = endpoint;
            for destination in destinations.iter_mut() {
                let mut dispatch = Dispatch {
                    now_ns,
                    endpoint_id: *id,
                    streams,
                    images,
                    waiting,
                    elicits,
                    destination: destination.id,
                    control: destination.control,
                    multi: *multi,
                    conductor: &mut self.conductor,
                    receiver_id: *receiver_id,
                    invalid: 0,
                };
                work += receive(
                    &mut destination.transport,
                    &mut dispatch,
                    &mut self.loss,
                    &mut self.held,
                    now.epoch_ms,
                    errors,
                );
                if destination.joins && now_ns >= destination.next_join_ns {
                    destination.next_join_ns = now_ns.saturating_add(JOIN_INTERVAL_NS);
                    if let Some(control) = destination.control {
                        let via = (control, destination.id);
                        join_streams(streams, images, elicits, via, *receiver_id, now_ns);
                    }
                }
            }
            let mut sink = EndpointSink {
                destinations,
                current: 0,
                errors,
                now_ms: now.epoch_ms,
            };
            for (message, source, via) in elicits.drain(..) {
                self.batch.clear();
                self.batch.push_with(STATUS_MESSAGE_LENGTH, |bytes| {
                    let _ = message.encode(bytes);
                });
                sink.use_socket(via);
                work += self.batch.flush(&mut sink, source);
            }
            for entry in images.iter_mut() {
                work += entry.image.do_work(now_ns, &mut self.batch, &mut sink);
                entry.report_loss(&mut self.loss_report, now.epoch_ms);
                report(entry, errors);
            }
        }
        work
    }
}

/// Reads what waits on one socket into `dispatch` (through the loss generator, if any), up to
/// [`RECEIVE_CALLS`] batches; counts it. Returns the datagrams read.
fn receive(
    transport: &mut UdpTransport,
    dispatch: &mut Dispatch<'_>,
    loss: &mut Option<LossGenerator>,
    held: &mut (Vec<u8>, Option<SocketAddr>),
    now_ms: i64,
    errors: &ErrorRecorder,
) -> usize {
    let mut dropped = 0;
    // Up to RECEIVE_CALLS batches per cycle: a socket left full between cycles drops what the
    // sender sends next, and a loss costs a round trip to repair.
    let mut received = Ok(Received::default());
    for _ in 0..RECEIVE_CALLS {
        let batch = transport.receive(|datagram, source| {
            match loss.as_mut().map(|loss| loss.fate_of(datagram)) {
                Some(Fate::Drop) => dropped += 1,
                Some(Fate::Duplicate) => {
                    dispatch.on_datagram(datagram, source);
                    dispatch.on_datagram(datagram, source);
                }
                Some(Fate::Reorder) if held.1.is_none() => {
                    // Kept (in memory allocated with the agent) until the next datagram.
                    held.0.clear();
                    held.0.extend_from_slice(datagram);
                    held.1 = Some(source);
                    return;
                }
                _ => dispatch.on_datagram(datagram, source),
            }
            if let Some(source) = held.1.take() {
                dispatch.on_datagram(&held.0, source);
            }
        });
        match batch {
            Ok(batch) => {
                if let Ok(total) = &mut received {
                    *total += batch;
                }
                // A socket emptied by fewer receives than a batch has nothing more now.
                if batch.receives < crate::udp_transport::RECEIVE_BATCH {
                    break;
                }
            }
            Err(error) => {
                received = Err(error);
                break;
            }
        }
    }
    if let Some(source) = held.1.take() {
        dispatch.on_datagram(&held.0, source);
    }
    let system = errors.system();
    if dispatch.invalid > 0 {
        system.add(SystemCounter::InvalidFrames, dispatch.invalid);
    }
    if dropped > 0 {
        system.add(SystemCounter::LossGeneratorDrops, dropped);
    }
    match received {
        Ok(received) => {
            if received.datagrams > 0 {
                system.add(SystemCounter::DatagramsReceived, received.datagrams);
            }
            if received.dropped > 0 {
                system.add(SystemCounter::InvalidFrames, received.dropped);
            }
            received.datagrams
        }
        Err(error) => {
            errors.record(now_ms, &format!("receive: {error}"));
            0
        }
    }
}

/// Asks a dynamic multi-destination publication (at `control`) to send each subscribed stream
/// that has not come through destination `via` within the liveness timeout: a status message
/// asking for SETUP, for no session (the receiver knows none yet). A path the publication
/// dropped is asked for again this way.
fn join_streams(
    streams: &[i32],
    images: &[ImageEntry],
    elicits: &mut Vec<(StatusMessage, SocketAddr, u32)>,
    (control, via): (SocketAddr, u32),
    receiver_id: i64,
    now_ns: i64,
) {
    for &stream_id in streams {
        let joined = images.iter().any(|entry| {
            entry.image.stream_id() == stream_id && entry.image.has_live_route(via, now_ns)
        });
        if joined || elicits.len() >= ELICIT_LIMIT {
            continue;
        }
        elicits.push((
            StatusMessage {
                frame_length: i32::try_from(STATUS_MESSAGE_LENGTH).unwrap_or(i32::MAX),
                flags: status_flags::SEND_SETUP,
                session_id: 0,
                stream_id,
                consumption_term_id: 0,
                consumption_term_offset: 0,
                receiver_window: 0,
                receiver_id,
                group_tag: None,
            },
            control,
            via,
        ));
    }
}

/// Moves what the image counted since the last report into the driver's counters.
fn report(entry: &mut ImageEntry, errors: &ErrorRecorder) {
    let tally = entry.image.tally();
    if tally != entry.reported {
        let last = entry.reported;
        let system = errors.system();
        let add = |counter, now: u64, before: u64| {
            if now > before {
                system.add(counter, usize::try_from(now - before).unwrap_or(usize::MAX));
            }
        };
        add(
            SystemCounter::BytesReceived,
            tally.bytes_received,
            last.bytes_received,
        );
        add(
            SystemCounter::DuplicateFrames,
            tally.duplicates,
            last.duplicates,
        );
        add(
            SystemCounter::FlowControlOverRuns,
            tally.overruns,
            last.overruns,
        );
        add(
            SystemCounter::InvalidFrames,
            tally.invalid_frames,
            last.invalid_frames,
        );
        add(SystemCounter::NaksSent, tally.naks_sent, last.naks_sent);
        add(
            SystemCounter::StatusMessagesSent,
            tally.status_messages_sent,
            last.status_messages_sent,
        );
        add(
            SystemCounter::GapsPadded,
            tally.gaps_padded,
            last.gaps_padded,
        );
        add(
            SystemCounter::HeartbeatsReceived,
            tally.heartbeats,
            last.heartbeats,
        );
        entry.reported = tally;
    }
    entry
        .counters
        .high_water_mark
        .view()
        .set(entry.image.high_water_mark());
    entry
        .counters
        .rebuild
        .view()
        .set(entry.image.rebuild_position());
}
