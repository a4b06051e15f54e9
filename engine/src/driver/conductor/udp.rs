//! The conductor's side of UDP: the sockets it makes for publications and subscriptions (the
//! control plane, where a bad address is answered with an error), the network images it makes
//! when the receiver hears SETUP, and the subscriber positions of those images.
//!
//! The conductor owns each image's record here (its log file, its subscribers' position
//! counters) and reads the subscribers' positions each duty cycle, as it does for IPC: they are
//! written by other processes, so each is checked against [join, rebuild + a term] and a
//! subscriber whose position is out of range is withdrawn. The slowest valid position goes to
//! the receiver through the image's [`ImageStatus`]; the receiver's rebuild position and state
//! come back through it.

use std::net::SocketAddr;
use std::sync::Arc;

use tern_codec::frame::validate_mtu;
use tern_codec::position::{TermGeometry, validate_log_term_length};

use super::{CommandError, DriverConductor, counter_types};
use crate::channel::{ChannelUri, ControlMode, FlowControlKind};
use crate::command::{
    DestinationAction, ErrorCode, add_subscription, destination, receive_destination,
};
use crate::concurrent::counters::CounterSpec;
use crate::driver::client_proxy::AvailableImage;
use crate::driver::flow_control::Strategy;
use crate::driver::image_timing::{self, receiver_window};
use crate::driver::ipc_publication::{IpcPublication, SubscriberLink, TetherState};
use crate::driver::loss_detector::FeedbackDelay;
use crate::driver::network_publication::{Destination, NetworkPublication, PublicationParams};
use crate::driver::publication_image::{ImageParams, ImageState, ImageStatus, PublicationImage};
use crate::driver::publication_timing;
use crate::driver::receiver::{
    ImageCounters, ImageEntry, ReceiveDestination, ReceiveEndpoint, Receiver, SetupRequest,
};
use crate::driver::reclaim::{CounterLease, FileLease};
use crate::driver::resources::{LinkState, ManagedResource, SubscriptionLink};
use crate::driver::retransmit_handler::RetransmitConfig;
use crate::driver::sender::{Sender, SenderCounters, SenderEntry};
use crate::driver::system_counters::SystemCounter;
use crate::logbuffer::descriptor::LogParameters;
use crate::logbuffer::log_buffers::LogBuffers;
use crate::udp_channel::UdpChannel;
use crate::udp_transport::{SocketBuffers, UdpIo, UdpTransport};

/// The most a network publication resends per millisecond, whatever its receivers ask
/// (about 1 GB/s: more than a 10 GbE link carries, less than a receiver could make it send).
const RETRANSMIT_BUDGET_BYTES_PER_MS: u64 = 1024 * 1024;
/// Images one receive endpoint holds at most: each is a log file of three terms, and SETUP
/// frames are input (spoofed ones would otherwise make files without end).
const MAX_IMAGES_PER_ENDPOINT: usize = 256;
/// A multicast receiver not heard from this long no longer holds the sender limit (Aeron: 5 s).
const RECEIVER_TIMEOUT_NS: i64 = 5_000_000_000;

/// Destinations a multi-destination subscription has at most (each a socket; an image keeps a
/// route back through each).
pub(super) const MAX_RECEIVE_DESTINATIONS: usize = crate::driver::publication_image::MAX_ROUTES;

/// A receive endpoint the receiver holds: the socket of every UDP subscription on one address,
/// or the destinations of one multi-destination subscription.
#[derive(Debug)]
pub(super) struct ReceiveChannel {
    id: i64,
    /// The address subscriptions share it by; `None` for a multi-destination subscription's,
    /// which is its alone.
    endpoint: Option<SocketAddr>,
    /// Its sockets: their destination ids, addresses and receive buffers as granted.
    destinations: Vec<(u32, SocketAddr, usize)>,
    next_destination_id: u32,
    /// The channel, as the loss report names it.
    channel: String,
    /// The smallest receive buffer of its sockets as granted: the receiver windows of its
    /// images fit in it.
    receive_buffer: usize,
    /// The receiver id in its status messages: one per endpoint (as Aeron's), so that a
    /// multi-destination sender counts two endpoints of one driver as two receivers.
    receiver_id: i64,
    /// Subscribed streams and how many subscriptions each has.
    streams: Vec<(i32, usize)>,
}

/// A publication image: what the conductor keeps of it.
#[derive(Debug)]
pub(super) struct NetworkImage {
    image_id: i64,
    endpoint_id: i64,
    session_id: i32,
    stream_id: i32,
    log: Arc<LogBuffers>,
    _file: FileLease,
    subscribers: Vec<SubscriberLink>,
    status: Arc<ImageStatus>,
    source: String,
    join_position: i64,
}

impl NetworkImage {
    fn term_length(&self) -> i64 {
        i64::from(self.log.geometry().term_length())
    }
}

fn nanos(duration: std::time::Duration) -> i64 {
    i64::try_from(duration.as_nanos()).unwrap_or(i64::MAX)
}

/// Why a SETUP cannot make an image.
fn check_setup(setup: &tern_codec::frame::Setup) -> Result<(TermGeometry, i64), String> {
    let term_length = u32::try_from(setup.term_length)
        .ok()
        .and_then(|length| validate_log_term_length(length).ok())
        .ok_or_else(|| {
            format!(
                "term length {} is not a power of two from 64k to 1g",
                setup.term_length
            )
        })?;
    u32::try_from(setup.mtu)
        .ok()
        .and_then(|mtu| validate_mtu(mtu).ok())
        .ok_or_else(|| format!("mtu {} is not a multiple of 32 from 64 to 65504", setup.mtu))?;
    let term_offset = u32::try_from(setup.term_offset)
        .ok()
        .filter(|offset| *offset < term_length && offset % 32 == 0)
        .ok_or_else(|| {
            format!(
                "term offset {} is not a frame inside the term",
                setup.term_offset
            )
        })?;
    let geometry =
        TermGeometry::new(term_length, setup.initial_term_id).map_err(|error| error.to_string())?;
    let terms = setup.active_term_id.wrapping_sub(setup.initial_term_id);
    if terms < 0 {
        return Err(format!(
            "active term {} is before the initial term {}",
            setup.active_term_id, setup.initial_term_id
        ));
    }
    Ok((
        geometry,
        geometry.position(setup.active_term_id, term_offset),
    ))
}

impl DriverConductor {
    /// Queues work for the sender; a full queue is recorded (the sender has stopped serving).
    pub(super) fn queue_for_sender(&mut self, command: impl FnOnce(&mut Sender) + Send + 'static) {
        if self.sender.offer(command).is_err() {
            self.record_error("the sender's command queue is full: a command was dropped");
        }
    }

    /// Queues work for the receiver; a full queue is recorded.
    pub(super) fn queue_for_receiver(
        &mut self,
        command: impl FnOnce(&mut Receiver) + Send + 'static,
    ) {
        if self.receiver.offer(command).is_err() {
            self.record_error("the receiver's command queue is full: a command was dropped");
        }
    }

    /// Runs the receiver's requests (SETUP of new images).
    pub(super) fn process_receiver_requests(&mut self) -> usize {
        let mut work = 0;
        while work < super::COMMAND_LIMIT {
            let Some(request) = self.from_receiver.take() else {
                break;
            };
            request(self);
            work += 1;
        }
        work
    }

    /// Makes `publication` a network publication: its socket, its sender counters and its
    /// sending core, handed to the sender.
    pub(super) fn start_sending(
        &mut self,
        publication: &mut IpcPublication,
        channel: &ChannelUri,
        channel_text: &str,
        now_ns: i64,
    ) -> Result<(), CommandError> {
        let invalid = |message: String| CommandError::new(ErrorCode::InvalidChannel, message);
        let udp = UdpChannel::resolve(channel)
            .map_err(|error| invalid(format!("{channel_text}: {error}")))?;
        let destination = match (channel.control_mode, udp.endpoint, udp.control) {
            (Some(ControlMode::Manual), _, Some(_)) => Destination::Manual,
            (Some(ControlMode::Dynamic), _, Some(_)) => Destination::Dynamic,
            (Some(_), _, None) => {
                return Err(invalid(format!(
                    "{channel_text}: a multi-destination publication needs control=host:port"
                )));
            }
            (None, Some(endpoint), _) => Destination::Fixed(endpoint),
            (None, None, _) => {
                return Err(invalid(format!(
                    "{channel_text}: a UDP publication needs endpoint=host:port (or \
                     control=host:port with control-mode=manual or dynamic)"
                )));
            }
        };
        let connect = self.config.udp_connect;
        let mut transport = UdpTransport::sender(&udp, SocketBuffers::of(channel), connect)
            .map_err(|error| invalid(format!("{channel_text}: cannot open a socket: {error}")))?;
        let io = self.config.udp_io;
        transport
            .use_io(io)
            .map_err(|error| invalid(format!("{channel_text}: cannot set up {io:?}: {error}")))?;
        let registration_id = publication.registration_id;
        let label = |name: &str| {
            format!(
                "{name}: {registration_id} {} {} {channel_text}",
                publication.session_id, publication.stream_id
            )
        };
        let (position_label, limit_label) = (label("snd-pos"), label("snd-lmt"));
        let key = registration_id.to_le_bytes();
        let position = self.lease_network_counter(
            counter_types::SENDER_POSITION,
            &key,
            &position_label,
            registration_id,
        )?;
        let limit = self.lease_network_counter(
            counter_types::SENDER_LIMIT,
            &key,
            &limit_label,
            registration_id,
        )?;
        let strategy = match channel.flow_control.map(|spec| spec.kind) {
            Some(FlowControlKind::Max) => Strategy::Max,
            Some(FlowControlKind::Min { group_min_size }) => Strategy::Min { group_min_size },
            Some(FlowControlKind::Tagged {
                group_tag,
                group_min_size,
            }) => Strategy::Tagged {
                group_tag,
                group_min_size,
            },
            None if udp.multicast || !matches!(destination, Destination::Fixed(_)) => Strategy::Max,
            None => Strategy::Unicast,
        };
        let retransmit = if udp.multicast {
            RetransmitConfig::multicast(RETRANSMIT_BUDGET_BYTES_PER_MS, self.next_random())
        } else {
            RetransmitConfig::unicast(RETRANSMIT_BUDGET_BYTES_PER_MS)
        };
        let params = PublicationParams {
            destination,
            strategy,
            timings: publication_timing::Timings {
                connection_timeout_ns: nanos(self.config.publication_connection_timeout),
                ..publication_timing::Timings::default()
            },
            retransmit,
            receiver_timeout_ns: channel
                .flow_control
                .and_then(|spec| spec.receiver_timeout_ns)
                .map_or(RECEIVER_TIMEOUT_NS, |timeout| {
                    i64::try_from(timeout).unwrap_or(i64::MAX)
                }),
            ttl: udp.ttl.unwrap_or(0),
        };
        let core = NetworkPublication::new(
            registration_id,
            Arc::clone(&publication.log),
            &params,
            now_ns,
        );
        publication.sender = Some(Arc::clone(core.status()));
        let entry = SenderEntry::new(core, transport, SenderCounters { position, limit });
        self.queue_for_sender(move |sender: &mut Sender| sender.work.add(entry));
        Ok(())
    }

    fn lease_network_counter(
        &mut self,
        type_id: i32,
        key: &[u8],
        label: &str,
        registration_id: i64,
    ) -> Result<CounterLease, CommandError> {
        let spec = CounterSpec {
            type_id,
            key,
            label,
            registration_id,
            owner_id: 0,
            reference_id: 0,
        };
        self.lease_counter(&spec)
            .map_err(|error| CommandError::new(ErrorCode::ResourceExhausted, error.to_string()))
    }

    /// A client adds or removes a destination of its manual multi-destination publication.
    pub(super) fn on_destination(
        &mut self,
        command: &destination::Decoder<'_>,
        now_ns: i64,
    ) -> Result<(), (i64, CommandError)> {
        let correlation_id = command.correlation_id();
        let fail = |code, message: String| (correlation_id, CommandError::new(code, message));
        let client_id = command.client_id();
        self.touch_client(client_id, now_ns);
        let link_id = command.publication_id();
        let Some(publication_id) = self
            .publication_links
            .iter()
            .find(|link| link.client_id == client_id && link.registration_id == link_id)
            .map(|link| link.publication_id)
        else {
            return Err(fail(
                ErrorCode::UnknownPublication,
                format!("client {client_id} has no publication {link_id}"),
            ));
        };
        let manual = self.publications.iter().any(|publication| {
            publication.registration_id == publication_id
                && publication.sender.is_some()
                && publication.uri.control_mode == Some(ControlMode::Manual)
        });
        if !manual {
            return Err(fail(
                ErrorCode::InvalidChannel,
                format!(
                    "publication {link_id} is not a multi-destination publication in manual \
                     control mode (control=host:port|control-mode=manual)"
                ),
            ));
        }
        let (_, _, address) = resolve_destination(command.channel())
            .map_err(|reason| fail(ErrorCode::InvalidChannel, reason))?;
        let add = match command.action() {
            DestinationAction::Add => true,
            DestinationAction::Remove => false,
            DestinationAction::Unknown(action) => {
                return Err(fail(
                    ErrorCode::MalformedCommand,
                    format!("unknown destination action {action}"),
                ));
            }
        };
        self.queue_for_sender(move |sender: &mut Sender| {
            let now_ns = sender.now().nanos;
            // A full table is refused by the sender; the driver counts and logs nothing more,
            // as the client was told the command was taken.
            let _ = sender
                .work
                .destination(publication_id, address, add, now_ns);
        });
        self.to_clients.success(correlation_id);
        Ok(())
    }

    /// Adds a UDP subscription: the endpoint's socket (made with the first subscription on
    /// it), the stream on it, and the images already there. A multi-destination subscription
    /// (`control-mode=manual`, no endpoint) gets an endpoint of its own, with no socket until
    /// destinations are added.
    pub(super) fn add_udp_subscription(
        &mut self,
        command: &add_subscription::Decoder<'_>,
        channel: ChannelUri,
        _now_ns: i64,
    ) -> Result<(), CommandError> {
        let invalid = |message: String| CommandError::new(ErrorCode::InvalidChannel, message);
        let text = command.channel();
        let udp =
            UdpChannel::resolve(&channel).map_err(|error| invalid(format!("{text}: {error}")))?;
        let multi = channel.control_mode == Some(ControlMode::Manual);
        let found = match (udp.endpoint, multi) {
            (Some(_), true) => {
                return Err(invalid(format!(
                    "{text}: a multi-destination subscription (control-mode=manual) takes its \
                     endpoints as destinations (Subscription::add_destination), not endpoint="
                )));
            }
            (None, false) => {
                return Err(invalid(format!(
                    "{text}: a UDP subscription needs endpoint=host:port (or control-mode=manual \
                     for a multi-destination subscription)"
                )));
            }
            (None, true) => None,
            (Some(endpoint), false) => self
                .receive_channels
                .iter()
                .find(|receive| receive.endpoint == Some(endpoint))
                .map(|receive| receive.id),
        };
        let endpoint_id = match found {
            Some(id) => id,
            None => {
                let id = self.next_endpoint_id;
                self.next_endpoint_id += 1;
                let receiver_id =
                    super::splitmix(self.receiver_id.cast_unsigned() ^ id.cast_unsigned())
                        .cast_signed();
                let mut receive = ReceiveChannel {
                    id,
                    endpoint: udp.endpoint,
                    destinations: Vec::new(),
                    next_destination_id: 0,
                    channel: text.to_owned(),
                    receive_buffer: usize::MAX,
                    receiver_id,
                    streams: Vec::new(),
                };
                let destinations = match udp.endpoint {
                    Some(endpoint) => {
                        let buffers = self.receive_buffers(&channel);
                        let destination = bind_destination(
                            &mut receive,
                            self.config.udp_io,
                            text,
                            &channel,
                            &udp,
                            buffers,
                        )
                        .map_err(invalid)?;
                        receive.channel = format!("tern:udp?endpoint={endpoint}");
                        vec![destination]
                    }
                    None => Vec::with_capacity(MAX_RECEIVE_DESTINATIONS),
                };
                self.receive_channels.push(receive);
                let endpoint = ReceiveEndpoint::new(id, destinations, multi, receiver_id);
                self.queue_for_receiver(move |receiver: &mut Receiver| {
                    receiver.work.add_endpoint(endpoint)
                });
                id
            }
        };
        let stream_id = command.stream_id();
        let receive = self
            .receive_channels
            .iter_mut()
            .find(|receive| receive.id == endpoint_id)
            .expect("found or made above");
        match receive
            .streams
            .iter_mut()
            .find(|(stream, _)| *stream == stream_id)
        {
            Some((_, count)) => *count += 1,
            None => {
                receive.streams.push((stream_id, 1));
                self.queue_for_receiver(move |receiver: &mut Receiver| {
                    receiver.work.add_stream(endpoint_id, stream_id);
                });
            }
        }
        let correlation_id = command.correlation_id();
        let client_id = command.client_id();
        let session = channel.session_id;
        self.subscriptions.push(SubscriptionLink {
            registration_id: correlation_id,
            client_id,
            stream_id,
            channel,
            endpoint_id: Some(endpoint_id),
            state: LinkState::default(),
        });
        self.to_clients.subscription_ready(correlation_id);
        let matching: Vec<usize> = self
            .images
            .iter()
            .enumerate()
            .filter(|(_, image)| {
                image.endpoint_id == endpoint_id
                    && image.stream_id == stream_id
                    && session.is_none_or(|session| session == image.session_id)
            })
            .map(|(index, _)| index)
            .collect();
        for index in matching {
            self.link_image(index, correlation_id, client_id);
        }
        Ok(())
    }

    /// The socket buffers a subscription's sockets get: the channel's, with the driver's
    /// receive buffer by default.
    fn receive_buffers(&self, channel: &ChannelUri) -> SocketBuffers {
        SocketBuffers {
            receive: channel
                .socket_receive_buffer
                .or(Some(self.config.socket_receive_buffer)),
            ..SocketBuffers::of(channel)
        }
    }
}

/// A destination channel (`tern:udp?endpoint=host:port...`) resolved, with its endpoint (a
/// port, not 0); the reason, naming the channel, when it is not one.
fn resolve_destination(text: &str) -> Result<(ChannelUri, UdpChannel, SocketAddr), String> {
    let uri = ChannelUri::parse(text).map_err(|error| format!("{text}: {error}"))?;
    let udp = UdpChannel::resolve(&uri).map_err(|error| format!("{text}: {error}"))?;
    match udp.endpoint {
        Some(address) if address.port() != 0 => Ok((uri, udp, address)),
        _ => Err(format!(
            "{text}: a destination needs endpoint=host:port (a port, not 0)"
        )),
    }
}

/// Binds a socket of endpoint `receive` for `uri` (resolved as `udp`): the next destination,
/// its buffer counted in the endpoint's window. Fails with the reason.
fn bind_destination(
    receive: &mut ReceiveChannel,
    io: UdpIo,
    text: &str,
    uri: &ChannelUri,
    udp: &UdpChannel,
    buffers: SocketBuffers,
) -> Result<ReceiveDestination, String> {
    let address = udp
        .endpoint
        .ok_or_else(|| format!("{text}: a destination needs endpoint=host:port"))?;
    let mut transport = UdpTransport::receiver(udp, buffers)
        .map_err(|error| format!("{text}: cannot bind {address}: {error}"))?;
    transport
        .use_io(io)
        .map_err(|error| format!("{text}: cannot set up {io:?} for {address}: {error}"))?;
    let granted = transport.receive_buffer_size().unwrap_or(0);
    receive.receive_buffer = receive.receive_buffer.min(granted);
    // Control frames go to the control address of a multicast group or of a dynamic
    // multi-destination publication; otherwise back to each source.
    let dynamic = uri.control_mode == Some(ControlMode::Dynamic);
    let control = udp.control.filter(|_| udp.multicast || dynamic);
    let id = receive.next_destination_id;
    receive.next_destination_id += 1;
    receive.destinations.push((id, address, granted));
    Ok(ReceiveDestination::new(
        id, address, transport, control, dynamic,
    ))
}

impl DriverConductor {
    /// A client adds or removes a destination of its multi-destination subscription: the
    /// socket is bound here, so a bad or taken address is the client's error, at once.
    pub(super) fn on_receive_destination(
        &mut self,
        command: &receive_destination::Decoder<'_>,
        now_ns: i64,
    ) -> Result<(), (i64, CommandError)> {
        let correlation_id = command.correlation_id();
        let fail = |code, message: String| (correlation_id, CommandError::new(code, message));
        let client_id = command.client_id();
        self.touch_client(client_id, now_ns);
        let subscription_id = command.subscription_id();
        let Some(link) = self
            .subscriptions
            .iter()
            .find(|link| link.client_id == client_id && link.registration_id == subscription_id)
        else {
            return Err(fail(
                ErrorCode::UnknownSubscription,
                format!("client {client_id} has no subscription {subscription_id}"),
            ));
        };
        let subscription_channel = link.channel.clone();
        let Some(index) = link.endpoint_id.and_then(|endpoint_id| {
            self.receive_channels
                .iter()
                .position(|receive| receive.id == endpoint_id && receive.endpoint.is_none())
        }) else {
            return Err(fail(
                ErrorCode::InvalidChannel,
                format!(
                    "subscription {subscription_id} is not a multi-destination subscription \
                     (tern:udp?control-mode=manual)"
                ),
            ));
        };
        let text = command.channel();
        let (uri, udp, address) =
            resolve_destination(text).map_err(|reason| fail(ErrorCode::InvalidChannel, reason))?;
        // The destination's own socket buffers, else the subscription's, else the driver's.
        let buffers = {
            let fallback = self.receive_buffers(&subscription_channel);
            SocketBuffers {
                send: uri.socket_send_buffer.or(fallback.send),
                receive: uri.socket_receive_buffer.or(fallback.receive),
            }
        };
        let receive = &mut self.receive_channels[index];
        let endpoint_id = receive.id;
        let known = receive
            .destinations
            .iter()
            .any(|(_, bound, _)| *bound == address);
        let result = match command.action() {
            DestinationAction::Add if known => Err(fail(
                ErrorCode::InvalidChannel,
                format!("{text}: already a destination of subscription {subscription_id}"),
            )),
            DestinationAction::Add if receive.destinations.len() >= MAX_RECEIVE_DESTINATIONS => {
                Err(fail(
                    ErrorCode::ResourceExhausted,
                    format!(
                        "subscription {subscription_id} has {MAX_RECEIVE_DESTINATIONS} \
                         destinations, the most it may"
                    ),
                ))
            }
            DestinationAction::Add => {
                bind_destination(receive, self.config.udp_io, text, &uri, &udp, buffers)
                    .map_err(|reason| fail(ErrorCode::InvalidChannel, reason))
                    .map(Some)
            }
            DestinationAction::Remove if !known => Err(fail(
                ErrorCode::InvalidChannel,
                format!("{text}: not a destination of subscription {subscription_id}"),
            )),
            DestinationAction::Remove => {
                receive
                    .destinations
                    .retain(|(_, bound, _)| *bound != address);
                // Windows of images made from now on fit the smallest buffer left.
                receive.receive_buffer = receive
                    .destinations
                    .iter()
                    .map(|(_, _, granted)| *granted)
                    .min()
                    .unwrap_or(usize::MAX);
                Ok(None)
            }
            DestinationAction::Unknown(action) => Err(fail(
                ErrorCode::MalformedCommand,
                format!("unknown destination action {action}"),
            )),
        };
        match result? {
            Some(destination) => self.queue_for_receiver(move |receiver: &mut Receiver| {
                receiver.work.add_destination(endpoint_id, destination)
            }),
            None => self.queue_for_receiver(move |receiver: &mut Receiver| {
                receiver.work.remove_destination(endpoint_id, address)
            }),
        }
        self.to_clients.success(correlation_id);
        Ok(())
    }

    /// A UDP subscription ended: its image positions go, and with its endpoint's last
    /// subscription to the stream the stream's images go; with the endpoint's last stream, the
    /// socket closes.
    pub(super) fn end_udp_subscription(&mut self, link: &SubscriptionLink, endpoint_id: i64) {
        for image in &mut self.images {
            image
                .subscribers
                .retain(|subscriber| subscriber.subscription_id != link.registration_id);
        }
        // An image nobody reads any more (its stream's other subscriptions take other
        // sessions) goes: nothing would ever end it but its sender.
        let unread: Vec<i64> = self
            .images
            .iter()
            .filter(|image| image.endpoint_id == endpoint_id && image.subscribers.is_empty())
            .map(|image| image.image_id)
            .collect();
        for image_id in unread {
            self.images.retain(|image| image.image_id != image_id);
            self.queue_for_receiver(move |receiver: &mut Receiver| {
                receiver.work.remove_image(endpoint_id, image_id);
            });
        }
        let stream_id = link.stream_id;
        let Some(index) = self
            .receive_channels
            .iter()
            .position(|receive| receive.id == endpoint_id)
        else {
            return;
        };
        let receive = &mut self.receive_channels[index];
        if let Some(entry) = receive
            .streams
            .iter_mut()
            .find(|(stream, _)| *stream == stream_id)
        {
            entry.1 -= 1;
        }
        let stream_ended = receive
            .streams
            .iter()
            .any(|(stream, count)| *stream == stream_id && *count == 0);
        receive.streams.retain(|(_, count)| *count > 0);
        let endpoint_ended = receive.streams.is_empty();
        if stream_ended {
            self.images
                .retain(|image| image.endpoint_id != endpoint_id || image.stream_id != stream_id);
            self.queue_for_receiver(move |receiver: &mut Receiver| {
                receiver.work.remove_stream(endpoint_id, stream_id);
            });
        }
        if endpoint_ended {
            self.receive_channels.swap_remove(index);
            self.queue_for_receiver(move |receiver: &mut Receiver| {
                receiver.work.remove_endpoint(endpoint_id)
            });
        }
    }

    /// The receiver heard SETUP for a subscribed stream with no image: make the image, hand it
    /// to the receiver, and offer it to the stream's subscriptions.
    pub(crate) fn on_setup(&mut self, request: SetupRequest) {
        let SetupRequest {
            endpoint_id,
            setup,
            source,
            destination,
            control,
        } = request;
        let Some(receive) = self
            .receive_channels
            .iter()
            .find(|receive| receive.id == endpoint_id)
        else {
            return;
        };
        let (receive_buffer, receiver_id) = (receive.receive_buffer, receive.receiver_id);
        let channel = receive.channel.clone();
        let exists = self.images.iter().any(|image| {
            image.endpoint_id == endpoint_id
                && image.session_id == setup.session_id
                && image.stream_id == setup.stream_id
        });
        let subscribers: Vec<(i64, i64, bool)> = self
            .subscriptions
            .iter()
            .filter(|link| {
                link.endpoint_id == Some(endpoint_id)
                    && link.stream_id == setup.stream_id
                    && !link.has_reached_end_of_life()
                    && link
                        .channel
                        .session_id
                        .is_none_or(|session| session == setup.session_id)
            })
            .map(|link| (link.registration_id, link.client_id, link.channel.reliable))
            .collect();
        if exists || subscribers.is_empty() {
            return;
        }
        let images_here = self
            .images
            .iter()
            .filter(|image| image.endpoint_id == endpoint_id)
            .count();
        let refusal = if images_here >= MAX_IMAGES_PER_ENDPOINT {
            Some(format!(
                "the endpoint holds {images_here} images, the most it may"
            ))
        } else if u32::try_from(setup.term_length)
            .is_ok_and(|length| length > self.config.max_image_term_length)
        {
            Some(format!(
                "term length {} is more than max_image_term_length ({})",
                setup.term_length, self.config.max_image_term_length
            ))
        } else {
            None
        };
        if let Some(reason) = refusal {
            self.errors.system().increment(SystemCounter::InvalidFrames);
            self.record_error(&format!(
                "SETUP from {source} for session {} of stream {} refused: {reason}",
                setup.session_id, setup.stream_id
            ));
            return;
        }
        let (geometry, join_position) = match check_setup(&setup) {
            Ok(checked) => checked,
            Err(reason) => {
                self.errors.system().increment(SystemCounter::InvalidFrames);
                self.record_error(&format!(
                    "SETUP from {source} for session {} of stream {} refused: {reason}",
                    setup.session_id, setup.stream_id
                ));
                return;
            }
        };
        match self.create_image(
            endpoint_id,
            &setup,
            source,
            geometry,
            join_position,
            (destination, control),
            receive_buffer,
            receiver_id,
            &subscribers,
            &channel,
        ) {
            Ok(index) => {
                self.errors.system().increment(SystemCounter::ImagesCreated);
                for (subscription_id, client_id, _) in subscribers {
                    self.link_image(index, subscription_id, client_id);
                }
            }
            Err(error) => self.record_error(&format!(
                "cannot make an image of session {} of stream {} from {source}: {error}",
                setup.session_id, setup.stream_id
            )),
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn create_image(
        &mut self,
        endpoint_id: i64,
        setup: &tern_codec::frame::Setup,
        source: SocketAddr,
        geometry: TermGeometry,
        join_position: i64,
        (destination, control): (u32, Option<SocketAddr>),
        receive_buffer: usize,
        receiver_id: i64,
        subscribers: &[(i64, i64, bool)],
        channel: &str,
    ) -> Result<usize, String> {
        let image_id = self.next_image_id;
        self.next_image_id += 1;
        let term_length = geometry.term_length();
        // The window never asks for more than the socket holds: the kernel counts a datagram
        // at about twice its payload (buffer and bookkeeping), so a third of the buffer, in
        // frames, is what may be in flight without overflowing it.
        let socket_room = u32::try_from(receive_buffer / 3).unwrap_or(u32::MAX) & !31;
        let window = receiver_window(term_length).min(socket_room.max(4096));
        let parameters = LogParameters {
            term_length,
            initial_term_id: setup.initial_term_id,
            mtu: u32::try_from(setup.mtu).unwrap_or(0),
            page_size: self.config.page_size,
            correlation_id: image_id,
            session_id: setup.session_id,
            stream_id: setup.stream_id,
            publication_window: window,
        };
        let (log, file) = self.create_log("images", image_id, &parameters)?;
        let log = Arc::new(log);
        let label = |name: &str| {
            format!(
                "{name}: {image_id} {} {} {source}",
                setup.session_id, setup.stream_id
            )
        };
        let key = image_id.to_le_bytes();
        let (hwm_label, rebuild_label) = (label("rcv-hwm"), label("rcv-pos"));
        let high_water_mark = self
            .lease_network_counter(counter_types::RECEIVER_HWM, &key, &hwm_label, image_id)
            .map_err(|error| error.message)?;
        let rebuild = self
            .lease_network_counter(
                counter_types::RECEIVER_POSITION,
                &key,
                &rebuild_label,
                image_id,
            )
            .map_err(|error| error.message)?;
        high_water_mark.view().set(join_position);
        rebuild.view().set(join_position);
        // Unreliable only when every subscription asked for it.
        let reliable = subscribers.iter().any(|(_, _, reliable)| *reliable);
        let params = ImageParams {
            control: control.unwrap_or(source),
            destination,
            join_position,
            receiver_id,
            reliable,
            timings: image_timing::Timings {
                liveness_timeout_ns: nanos(self.config.image_liveness_timeout),
                ..image_timing::Timings::default()
            },
            delay: if control.is_some() {
                FeedbackDelay::multicast(self.next_random())
            } else {
                FeedbackDelay::unicast()
            },
            window,
        };
        let core = PublicationImage::new(image_id, Arc::clone(&log), &params, self.now.nanos);
        let status = Arc::clone(core.status());
        let entry = ImageEntry::new(
            core,
            ImageCounters {
                high_water_mark,
                rebuild,
            },
            channel.to_owned(),
            source.to_string(),
        );
        self.queue_for_receiver(move |receiver: &mut Receiver| {
            receiver.work.add_image(endpoint_id, entry)
        });
        self.images.push(NetworkImage {
            image_id,
            endpoint_id,
            session_id: setup.session_id,
            stream_id: setup.stream_id,
            log,
            _file: file,
            subscribers: Vec::new(),
            status,
            source: source.to_string(),
            join_position,
        });
        Ok(self.images.len() - 1)
    }

    /// Gives subscription `subscription_id` a position in image `index` (with the slowest
    /// subscriber, or where the image is complete) and tells its client.
    fn link_image(&mut self, index: usize, subscription_id: i64, client_id: i64) {
        let image = &self.images[index];
        let rebuild = image.status.rebuild().max(image.join_position);
        let join = image
            .subscribers
            .iter()
            .map(|subscriber| subscriber.observed.clamp(subscriber.join_position, rebuild))
            .min()
            .unwrap_or(rebuild);
        let label = format!(
            "sub-pos: {subscription_id} {} {} {} @{join}",
            image.session_id, image.stream_id, image.source
        );
        let image_id = image.image_id;
        let Some(position) =
            self.lease_subscriber_position(subscription_id, client_id, image_id, image_id, &label)
        else {
            return;
        };
        position.view().set(join);
        let position_id = position.view().id();
        let image = &mut self.images[index];
        image.subscribers.push(SubscriberLink {
            image_id: image.image_id,
            subscription_id,
            client_id,
            position,
            tether: true,
            tether_state: TetherState::Active,
            join_position: join,
            observed: join,
        });
        let log_file = image.log.path().display().to_string();
        let (image_id, session_id, stream_id) = (image.image_id, image.session_id, image.stream_id);
        let source = image.source.clone();
        self.to_clients.available_image(&AvailableImage {
            image_id,
            subscription_id,
            session_id,
            stream_id,
            position_counter_id: position_id,
            log_file: &log_file,
            source_identity: &source,
        });
    }

    /// Each duty cycle: every image's subscriber positions (checked), its consumption position
    /// for the receiver, and the end of images gone silent or read to their end of stream.
    pub(super) fn check_images(&mut self, now_ns: i64) -> usize {
        let _ = now_ns;
        let mut work = 0;
        let mut invalid: Vec<(usize, i64, String)> = Vec::new();
        let mut ended: Vec<usize> = Vec::new();
        for (index, image) in self.images.iter_mut().enumerate() {
            let rebuild = image.status.rebuild();
            let term_length = image.term_length();
            let mut slowest: Option<i64> = None;
            for subscriber in &mut image.subscribers {
                subscriber.observed = subscriber.position.view().get();
                let valid = subscriber.observed >= subscriber.join_position
                    && subscriber.observed <= rebuild.saturating_add(term_length)
                    && subscriber.observed % 32 == 0;
                if valid {
                    let position = subscriber.observed.min(rebuild);
                    slowest = Some(slowest.map_or(position, |slowest| slowest.min(position)));
                } else {
                    invalid.push((
                        index,
                        subscriber.subscription_id,
                        format!(
                            "client {} wrote position {} to image {} of stream {} (subscription \
                             {}), outside [{}, {}]: image withdrawn",
                            subscriber.client_id,
                            subscriber.observed,
                            image.image_id,
                            image.stream_id,
                            subscriber.subscription_id,
                            subscriber.join_position,
                            rebuild,
                        ),
                    ));
                }
            }
            let consumption = slowest.unwrap_or(rebuild);
            if consumption != image.status.consumption() {
                image.status.set_consumption(consumption);
                work += 1;
            }
            let done = match image.status.state() {
                ImageState::Active => false,
                ImageState::Gone => true,
                ImageState::EndOfStream => image
                    .subscribers
                    .iter()
                    .all(|subscriber| subscriber.observed >= rebuild),
            };
            if done {
                ended.push(index);
            }
        }
        for (index, subscription_id, text) in invalid {
            self.errors
                .system()
                .increment(SystemCounter::InvalidPositions);
            self.record_error(&text);
            let image = &mut self.images[index];
            image
                .subscribers
                .retain(|subscriber| subscriber.subscription_id != subscription_id);
            let (image_id, stream_id) = (image.image_id, image.stream_id);
            self.to_clients
                .unavailable_image(image_id, subscription_id, stream_id);
            work += 1;
        }
        for index in ended.into_iter().rev() {
            let image = self.images.swap_remove(index);
            if image.status.state() == ImageState::Gone {
                self.errors.system().increment(SystemCounter::ImagesGone);
            }
            for subscriber in &image.subscribers {
                self.to_clients.unavailable_image(
                    image.image_id,
                    subscriber.subscription_id,
                    image.stream_id,
                );
            }
            let (endpoint_id, image_id) = (image.endpoint_id, image.image_id);
            self.queue_for_receiver(move |receiver: &mut Receiver| {
                receiver.work.remove_image(endpoint_id, image_id);
            });
            work += 1;
        }
        work
    }
}
