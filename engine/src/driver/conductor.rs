//! The driver's conductor: reads client commands, creates and links publications and
//! subscriptions, keeps publisher limits, and ends resources when their life is over.
//!
//! A duty cycle, in order: commands from the to-driver ring (at most ten); every publication's
//! positions, limit, cleaning and untethered subscribers; on its timer, its heartbeat and the
//! command ring's liveness; then `check_resources`, the one place driver-managed resources
//! (`driver/resources.rs`) are aged and ended; then `reclaim`, the one place counters are freed
//! and files removed (`driver/reclaim.rs`). Responses and events go out through
//! `driver/client_proxy.rs`; work for the sender and receiver through [`super::agent_proxy`].
//!
//! It is the only writer of the to-clients broadcast buffer, of counter metadata, of the
//! publisher-limit counters and of every publication's connection state. It reads the to-driver
//! ring buffer, the subscribers' position counters and the log tails, all as input from other
//! processes. It never blocks: bad commands are answered with an error and logged, and the
//! conductor carries on serving every other client.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;

use tern_codec::{DecodeError, MessageHeader, UnknownAction, on_unknown};

use super::agent_proxy::{AgentProxy, CommandInbox, agent_queue};
use super::client_proxy::{AvailableImage, ClientProxy, PublicationReady};
use super::config::DriverConfig;
use super::duty_cycle_counters::{self, DutyCycleCounters};
use super::errors::ErrorRecorder;
use super::ipc_publication::{
    IpcPublication, PublicationCounters, PublicationSetup, PublicationState, SubscriberLink,
    TetherState, Timeouts,
};
use super::loss_generator::LossGenerator;
use super::receiver::{self, Receiver, ReceiverWork};
use super::reclaim::{CounterLease, FileLease, Reclaim};
use super::resources::{
    Aging, ClientSession, ClientState, CounterLink, LinkState, ManagedResource, PublicationLink,
    SubscriptionLink, age,
};
use super::sender::{self, Sender, SenderWork};
use super::system_counters::{SystemCounter, SystemCounters};
use crate::agent::{Agent, Now};
use crate::channel::{ChannelUri, Media};
use crate::cnc::CncFile;
use crate::command::{
    self, ClientAction, ErrorCode, ResourceKind, add_counter, add_publication, add_subscription,
    client_command, release_image, remove_resource,
};
use crate::concurrent::broadcast::BroadcastTransmitter;
use crate::concurrent::counters::{Counter, CounterSpec, CountersManager};
use crate::concurrent::error_log::DistinctErrorLog;
use crate::concurrent::ring_buffer::ManyToOneRingBuffer;
use crate::logbuffer::descriptor::LogParameters;
use crate::logbuffer::log_buffers::LogBuffers;
use crate::mapped_view::MappedView;

mod udp;

/// The conductor's role name (its thread's name unless it shares one).
pub const ROLE: &str = "driver-conductor";
/// Commands read per duty cycle at most.
const COMMAND_LIMIT: usize = 10;
/// Counter type ids the driver allocates.
pub mod counter_types {
    /// A publication's limit.
    pub const PUBLISHER_LIMIT: i32 = 1;
    /// A publication's position (how far publishers have written).
    pub const PUBLISHER_POSITION: i32 = 2;
    /// A subscriber's position in an image.
    pub const SUBSCRIBER_POSITION: i32 = 4;
    /// A publication's offers refused at its limit.
    pub const PUBLISHER_BACK_PRESSURED: i32 = 5;
    /// A publication's offers refused with no subscriber connected.
    pub const PUBLISHER_NOT_CONNECTED: i32 = 6;
    /// An agent thread's duty-cycle time (the longest, or a recent high percentile), in ns.
    pub const DUTY_CYCLE_TIME: i32 = 7;
    /// A network publication's sender position.
    pub const SENDER_POSITION: i32 = 8;
    /// A network publication's sender limit (flow control).
    pub const SENDER_LIMIT: i32 = 9;
    /// A publication image's high-water mark.
    pub const RECEIVER_HWM: i32 = 10;
    /// A publication image's rebuild position.
    pub const RECEIVER_POSITION: i32 = 11;
    /// A counter a client asked for.
    pub const CLIENT: i32 = 1000;
}

/// The counters of each publication, with the label prefix `tern stat` knows them by.
const PUBLICATION_COUNTERS: [(i32, &str); 4] = [
    (counter_types::PUBLISHER_LIMIT, "pub-lmt"),
    (counter_types::PUBLISHER_POSITION, "pub-pos"),
    (counter_types::PUBLISHER_BACK_PRESSURED, "pub-bp"),
    (counter_types::PUBLISHER_NOT_CONNECTED, "pub-nc"),
];

/// The conductor agent.
pub struct DriverConductor {
    dir: PathBuf,
    config: DriverConfig,
    to_driver: MappedView<ManyToOneRingBuffer<'static>>,
    /// Responses and events to clients.
    to_clients: ClientProxy,
    counters: MappedView<CountersManager<'static>>,
    errors: ErrorRecorder,
    clients: HashMap<i64, ClientSession>,
    publications: Vec<IpcPublication>,
    publication_links: Vec<PublicationLink>,
    subscriptions: Vec<SubscriptionLink>,
    counter_links: Vec<CounterLink>,
    /// A command ended a client or a link this cycle: `check_resources` carries it out.
    resources_changed: bool,
    /// Keepalives are stuck behind a blocked command ring (set on the timer).
    keepalives_blocked: bool,
    timeouts: Timeouts,
    next_timer_ns: i64,
    /// The command ring's consumer position at its last change, and when: a client that died
    /// mid-write leaves the ring blocked, and is padded over after the client liveness timeout.
    command_position: (i64, i64),
    /// When the command ring was last unblocked: client silence counts from then at the latest.
    keepalive_grace_from_ns: i64,
    next_image_id: i64,
    random: u64,
    /// Each command is copied here out of the ring before it is decoded.
    command_copy: Vec<u8>,
    terminate_requested: bool,
    /// This duty cycle's time, read once by the runner.
    now: Now,
    duty_cycle: DutyCycleCounters,
    /// Work for the sender agent (network publications, with UDP).
    sender: AgentProxy<Sender>,
    /// Counters and files released by dropped resources, freed at the end of each duty cycle.
    reclaim: Reclaim,
    /// Work for the receiver agent (subscription endpoints and images, with UDP).
    receiver: AgentProxy<Receiver>,
    /// Requests from the receiver (SETUP of a new image).
    from_receiver: CommandInbox<DriverConductor>,
    /// UDP subscriptions' endpoints, as the receiver has them.
    receive_channels: Vec<udp::ReceiveChannel>,
    /// Publication images the receiver rebuilds.
    images: Vec<udp::NetworkImage>,
    next_endpoint_id: i64,
    receiver_id: i64,
}

/// The driver's agents, made together: they share the CnC file's counters and error log, and
/// the conductor holds the queues to the other two.
pub(crate) struct DriverAgents {
    pub(crate) conductor: DriverConductor,
    pub(crate) sender: Sender,
    pub(crate) receiver: Receiver,
}

/// What went wrong with a command, for the client and the error log.
struct CommandError {
    code: ErrorCode,
    message: String,
}

impl CommandError {
    fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        Self {
            code,
            message: message.into(),
        }
    }
}

impl DriverConductor {
    /// The driver's agents over a new CnC file.
    pub(crate) fn agents(
        cnc: Arc<CncFile>,
        config: DriverConfig,
        now: Now,
    ) -> Result<DriverAgents, String> {
        let to_driver =
            MappedView::<ManyToOneRingBuffer<'static>>::try_new(Arc::clone(&cnc), |cnc| {
                ManyToOneRingBuffer::new(cnc.sections().to_driver)
            })
            .map_err(|error| error.to_string())?;
        // Client ids come from the ring's correlation counter. The driver takes id 0 before any
        // client can, so that owner 0 on a counter always means the driver.
        let driver_id = to_driver.view().next_correlation_id();
        debug_assert_eq!(driver_id, 0, "the conductor starts on a new CnC file");
        let to_clients =
            MappedView::<BroadcastTransmitter<'static>>::try_new(Arc::clone(&cnc), |cnc| {
                BroadcastTransmitter::new(cnc.sections().to_clients)
            })
            .map_err(|error| error.to_string())?;
        let (sender_proxy, sender_inbox) = agent_queue();
        let (receiver_proxy, receiver_inbox) = agent_queue();
        let mut counters =
            MappedView::<CountersManager<'static>>::try_new(Arc::clone(&cnc), |cnc| {
                let sections = cnc.sections();
                CountersManager::new(sections.counters_metadata, sections.counters_values, 1000)
            })
            .map_err(|error| error.to_string())?;
        let system = SystemCounters::allocate(&mut counters).map_err(|error| error.to_string())?;
        let errors = ErrorRecorder::new(
            MappedView::<DistinctErrorLog<'static>>::new(cnc, |cnc| {
                DistinctErrorLog::new(cnc.sections().error_log)
            }),
            Arc::new(system),
        );
        let mut duty_cycle = |role: &str| {
            let [max, percentile] = duty_cycle_counters::labels(role).map(|label| {
                let spec = CounterSpec {
                    type_id: counter_types::DUTY_CYCLE_TIME,
                    key: role.as_bytes(),
                    label: &label,
                    registration_id: 0,
                    owner_id: 0,
                    reference_id: 0,
                };
                allocate_counter(&mut counters, &spec, now.epoch_ms)
            });
            Ok::<_, String>(DutyCycleCounters::new(
                [
                    max.map_err(|error| error.to_string())?,
                    percentile.map_err(|error| error.to_string())?,
                ],
                now.nanos,
            ))
        };
        let conductor_duty_cycle = duty_cycle(ROLE)?;
        let seed =
            u64::try_from(now.epoch_ms).unwrap_or(1) ^ (u64::from(std::process::id()) << 32) | 1;
        let receiver_id = i64::from_le_bytes(splitmix(seed ^ 0x5eed).to_le_bytes());
        let (to_conductor, from_receiver) = agent_queue();
        // A report left by an earlier driver in this directory describes that driver's streams.
        let _ = std::fs::remove_file(config.dir.join(crate::loss_report::FILE_NAME));
        let loss_report =
            crate::loss_report::LossReport::create(&config.dir, crate::loss_report::DEFAULT_LENGTH)
                .map_err(|error| format!("creating the loss report: {error}"))?;
        let sender = Sender::new(
            sender_inbox,
            errors.clone(),
            duty_cycle(sender::ROLE)?,
            now,
            SenderWork::new(config.sender_loss.map(LossGenerator::new)),
        );
        let receiver = Receiver::new(
            receiver_inbox,
            errors.clone(),
            duty_cycle(receiver::ROLE)?,
            now,
            ReceiverWork::new(
                to_conductor,
                receiver_id,
                config.receiver_loss.map(LossGenerator::new),
                loss_report,
            ),
        );
        let nanos =
            |duration: std::time::Duration| i64::try_from(duration.as_nanos()).unwrap_or(i64::MAX);
        let timeouts = Timeouts {
            unblock_ns: nanos(config.publication_unblock_timeout),
            untethered_window_limit_ns: nanos(config.untethered_window_limit_timeout),
            untethered_resting_ns: nanos(config.untethered_resting_timeout),
        };
        let conductor = Self {
            dir: config.dir.clone(),
            config,
            command_copy: vec![0u8; to_driver.view().max_message_length()],
            to_driver,
            to_clients: ClientProxy::new(to_clients, errors.clone()),
            counters,
            errors,
            clients: HashMap::new(),
            publications: Vec::new(),
            publication_links: Vec::new(),
            counter_links: Vec::new(),
            resources_changed: false,
            keepalives_blocked: false,
            subscriptions: Vec::new(),
            timeouts,
            next_timer_ns: now.nanos,
            command_position: (0, now.nanos),
            keepalive_grace_from_ns: now.nanos,
            next_image_id: 1,
            random: seed,
            terminate_requested: false,
            now,
            duty_cycle: conductor_duty_cycle,
            sender: sender_proxy,
            receiver: receiver_proxy,
            reclaim: Reclaim::default(),
            from_receiver,
            receive_channels: Vec::new(),
            images: Vec::new(),
            next_endpoint_id: 1,
            receiver_id,
        };
        Ok(DriverAgents {
            conductor,
            sender,
            receiver,
        })
    }

    /// Queues work for the sender agent, run on its thread at its next duty cycle.
    pub fn sender(&mut self) -> &mut AgentProxy<Sender> {
        &mut self.sender
    }

    /// Queues work for the receiver agent, run on its thread at its next duty cycle.
    pub fn receiver(&mut self) -> &mut AgentProxy<Receiver> {
        &mut self.receiver
    }

    /// Whether a client asked the driver to stop.
    pub fn terminate_requested(&self) -> bool {
        self.terminate_requested
    }

    fn next_random(&mut self) -> u64 {
        // xorshift64*: session ids and initial term ids need only to differ, not to be secret.
        self.random ^= self.random >> 12;
        self.random ^= self.random << 25;
        self.random ^= self.random >> 27;
        self.random.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    fn random_i32(&mut self) -> i32 {
        let bytes = self.next_random().to_le_bytes();
        i32::from_le_bytes([bytes[0], bytes[1], bytes[2], bytes[3]])
    }

    fn record_error(&mut self, text: &str) {
        self.errors.record(self.now.epoch_ms, text);
    }

    fn process_commands(&mut self, now_ns: i64) -> usize {
        let mut copy = std::mem::take(&mut self.command_copy);
        let mut work = 0;
        let (mut skipped_bytes, mut corrupt_length) = (0, 0);
        // One record per read: the ring copies it into `copy`, and the conductor handles it
        // after the read, free to borrow itself mutably.
        for _ in 0..COMMAND_LIMIT {
            let mut length = None;
            let outcome =
                self.to_driver
                    .view()
                    .read(&mut copy, |_, body| length = Some(body.len()), 1);
            if outcome.skipped_bytes > 0 {
                skipped_bytes += outcome.skipped_bytes;
                corrupt_length = outcome.corrupt_length;
                work += 1;
            }
            let Some(length) = length else {
                if outcome.skipped_bytes == 0 {
                    break;
                }
                continue;
            };
            self.errors
                .system()
                .increment(SystemCounter::CommandsReceived);
            self.on_command(&copy[..length], now_ns);
            work += 1;
            if self.resources_changed {
                // Carry out what the command ended before the next command is read, so that no
                // later command (in this cycle or another) sees a removed link or a closed
                // client as alive.
                work += self.check_resources(now_ns, false);
            }
        }
        self.command_copy = copy;
        if skipped_bytes > 0 {
            // Counted per byte, logged once per cycle: a corrupt ring is one error.
            self.errors
                .system()
                .add(SystemCounter::CorruptCommandBytes, skipped_bytes);
            self.record_error(&format!(
                "corrupt command record (length {corrupt_length}): {skipped_bytes} bytes of the \
                 command ring skipped"
            ));
        }
        work
    }

    fn on_command(&mut self, bytes: &[u8], now_ns: i64) {
        let header = match MessageHeader::decode(bytes) {
            Ok(header) => header,
            Err(error) => return self.malformed(bytes, &error),
        };
        if header.schema_id != command::DRIVER_PROTOCOL.id {
            return self.unknown(bytes, &header);
        }
        let result = match header.template_id {
            add_publication::TEMPLATE_ID => add_publication::Decoder::decode(bytes)
                .map(|command| self.on_add_publication(&command, now_ns)),
            add_subscription::TEMPLATE_ID => add_subscription::Decoder::decode(bytes)
                .map(|command| self.on_add_subscription(&command, now_ns)),
            remove_resource::TEMPLATE_ID => remove_resource::Decoder::decode(bytes)
                .map(|command| self.on_remove(&command, now_ns)),
            add_counter::TEMPLATE_ID => add_counter::Decoder::decode(bytes)
                .map(|command| self.on_add_counter(&command, now_ns)),
            client_command::TEMPLATE_ID => client_command::Decoder::decode(bytes)
                .map(|command| self.on_client_command(&command, now_ns)),
            release_image::TEMPLATE_ID => release_image::Decoder::decode(bytes)
                .map(|command| self.on_release_image(&command, now_ns)),
            command::destination::TEMPLATE_ID => command::destination::Decoder::decode(bytes)
                .map(|command| self.on_destination(&command, now_ns)),
            command::receive_destination::TEMPLATE_ID => {
                command::receive_destination::Decoder::decode(bytes)
                    .map(|command| self.on_receive_destination(&command, now_ns))
            }
            _ => return self.unknown(bytes, &header),
        };
        match result {
            Ok(Ok(())) => {}
            Ok(Err((correlation_id, error))) => {
                self.record_error(&error.message);
                self.to_clients
                    .error(correlation_id, error.code, &error.message);
            }
            Err(error) => self.malformed(bytes, &error),
        }
    }

    fn unknown(&mut self, bytes: &[u8], header: &MessageHeader) {
        match on_unknown(header) {
            UnknownAction::Ignore => self
                .errors
                .system()
                .increment(SystemCounter::UnknownCommandsIgnored),
            UnknownAction::Reject(message) | UnknownAction::Terminate(message) => {
                // A driver never stops for one client's command: terminate is answered as reject.
                let text = format!("unknown command {message}");
                self.errors
                    .system()
                    .increment(SystemCounter::InvalidCommands);
                self.record_error(&text);
                self.to_clients
                    .error(correlation_of(bytes), ErrorCode::UnknownCommand, &text);
            }
        }
    }

    fn malformed(&mut self, bytes: &[u8], error: &DecodeError) {
        let text = format!("malformed command: {error}");
        self.errors
            .system()
            .increment(SystemCounter::InvalidCommands);
        self.record_error(&text);
        self.to_clients
            .error(correlation_of(bytes), ErrorCode::MalformedCommand, &text);
    }

    fn touch_client(&mut self, client_id: i64, now_ns: i64) {
        self.clients
            .entry(client_id)
            .or_insert_with(|| ClientSession {
                client_id,
                last_keepalive_ns: now_ns,
                state: ClientState::Live,
            })
            .last_keepalive_ns = now_ns;
    }

    fn on_add_publication(
        &mut self,
        command: &add_publication::Decoder<'_>,
        now_ns: i64,
    ) -> Result<(), (i64, CommandError)> {
        let correlation_id = command.correlation_id();
        let fail = |error| (correlation_id, error);
        self.touch_client(command.client_id(), now_ns);
        let channel = ChannelUri::parse(command.channel()).map_err(|error| {
            fail(CommandError::new(
                ErrorCode::InvalidChannel,
                error.to_string(),
            ))
        })?;
        let exclusive = command.exclusive() != 0;
        let stream_id = command.stream_id();
        let existing = (!exclusive)
            .then(|| {
                self.publications.iter_mut().find(|publication| {
                    !publication.exclusive
                        && publication.stream_id == stream_id
                        && publication.state == PublicationState::Active
                        && publication.uri.media == channel.media
                        && publication.uri.endpoint == channel.endpoint
                        && publication.uri.control == channel.control
                        && channel
                            .session_id
                            .is_none_or(|session| session == publication.session_id)
                })
            })
            .flatten();
        let publication_id = match existing {
            Some(publication) => {
                publication.references += 1;
                publication.registration_id
            }
            None => self
                .create_publication(
                    correlation_id,
                    stream_id,
                    exclusive,
                    &channel,
                    command.channel(),
                    now_ns,
                )
                .map_err(fail)?,
        };
        self.publication_links.push(PublicationLink {
            registration_id: correlation_id,
            client_id: command.client_id(),
            publication_id,
            state: LinkState::default(),
        });
        let publication = self
            .publications
            .iter()
            .find(|publication| publication.registration_id == publication_id)
            .expect("just created or found");
        let (session_id, limit_id, log_file) = (
            publication.session_id,
            publication.counters.limit.view().id(),
            publication.log.path().display().to_string(),
        );
        self.to_clients.publication_ready(&PublicationReady {
            correlation_id,
            registration_id: publication_id,
            session_id,
            stream_id,
            limit_counter_id: limit_id,
            exclusive,
            log_file: &log_file,
        });
        Ok(())
    }

    fn create_publication(
        &mut self,
        registration_id: i64,
        stream_id: i32,
        exclusive: bool,
        channel: &ChannelUri,
        channel_text: &str,
        now_ns: i64,
    ) -> Result<i64, CommandError> {
        let network = channel.media == Media::Udp;
        let term_length = channel.term_length.unwrap_or(if network {
            self.config.udp_term_length
        } else {
            self.config.ipc_term_length
        });
        let mtu = channel.mtu.unwrap_or(self.config.mtu);
        let session_id = match channel.session_id {
            Some(session_id) => session_id,
            None => self.random_i32(),
        };
        let initial_term_id = match channel.start {
            Some(start) => {
                if !exclusive {
                    return Err(CommandError::new(
                        ErrorCode::InvalidChannel,
                        "init-term-id, term-id and term-offset place an exclusive publication \
                         only: a shared one is joined where it stands"
                            .to_owned(),
                    ));
                }
                if start.position(term_length).is_none() {
                    return Err(CommandError::new(
                        ErrorCode::InvalidChannel,
                        format!(
                            "term-offset {} is not inside a term of {term_length} bytes",
                            start.term_offset
                        ),
                    ));
                }
                start.initial_term_id
            }
            None => self.random_i32(),
        };
        let window = channel
            .publication_window
            .unwrap_or(term_length / 2)
            .min(term_length / 2);
        let parameters = LogParameters {
            term_length,
            initial_term_id,
            mtu,
            page_size: self.config.page_size,
            correlation_id: registration_id,
            session_id,
            stream_id,
            publication_window: window,
        };
        let (log, file) = self
            .create_log("publications", registration_id, &parameters)
            .map_err(|error| CommandError::new(ErrorCode::ResourceExhausted, error))?;
        if let Some(start) = channel.start {
            log.metadata().start_at(start.term_id, start.term_offset);
        }
        // From here on, a failure drops what was made, and dropping releases it.
        let mut counters = Vec::with_capacity(PUBLICATION_COUNTERS.len());
        for (type_id, name) in PUBLICATION_COUNTERS {
            let label =
                format!("{name}: {registration_id} {session_id} {stream_id} {channel_text}");
            let spec = CounterSpec {
                type_id,
                key: &registration_id.to_le_bytes(),
                label: &label,
                registration_id,
                owner_id: 0,
                reference_id: 0,
            };
            counters.push(self.lease_counter(&spec).map_err(|error| {
                CommandError::new(ErrorCode::ResourceExhausted, error.to_string())
            })?);
        }
        let Ok([limit, position, back_pressured, not_connected]) = <[_; 4]>::try_from(counters)
        else {
            unreachable!("one counter per entry of PUBLICATION_COUNTERS");
        };
        let linger = channel
            .linger_ns
            .map_or(self.config.publication_linger, |linger_ns| {
                std::time::Duration::from_nanos(linger_ns)
            });
        let setup = PublicationSetup {
            registration_id,
            exclusive,
            channel: channel_text.to_owned(),
            uri: channel.clone(),
            linger_ns: i64::try_from(linger.as_nanos()).unwrap_or(i64::MAX),
        };
        let mut publication = IpcPublication::new(
            setup,
            Arc::new(log),
            file,
            PublicationCounters {
                limit,
                position,
                back_pressured,
                not_connected,
            },
            now_ns,
        );
        if network {
            self.start_sending(&mut publication, channel, channel_text, now_ns)?;
        }
        publication.update(now_ns, &self.timeouts);
        self.publications.push(publication);
        if network {
            // Subscribers of a network publication are the receivers its sender reaches.
            return Ok(registration_id);
        }
        let index = self.publications.len() - 1;
        let publication = &self.publications[index];
        let matching: Vec<(i64, i64, bool)> = self
            .subscriptions
            .iter()
            .filter(|subscription| {
                subscription.stream_id == stream_id
                    && subscription
                        .channel
                        .admits(&publication.uri, publication.session_id)
            })
            .map(|subscription| {
                (
                    subscription.registration_id,
                    subscription.client_id,
                    subscription.channel.tether,
                )
            })
            .collect();
        for (subscription_id, client_id, tether) in matching {
            self.link(index, subscription_id, client_id, tether);
        }
        Ok(registration_id)
    }

    /// Links subscription `subscription_id` to publication `index`: a position counter at the
    /// join position, and an available-image event.
    fn link(&mut self, index: usize, subscription_id: i64, client_id: i64, tether: bool) {
        let image_id = self.next_image_id;
        self.next_image_id += 1;
        let publication = &self.publications[index];
        let join = publication.join_position();
        let label = format!(
            "sub-pos: {subscription_id} {} {} {} @{join}",
            publication.session_id, publication.stream_id, publication.channel
        );
        let reference_id = publication.registration_id;
        let Some(position) = self.lease_subscriber_position(
            subscription_id,
            client_id,
            image_id,
            reference_id,
            &label,
        ) else {
            return;
        };
        position.view().set(join);
        let position_id = position.view().id();
        let (session_id, stream_id, log_file) = {
            let publication = &mut self.publications[index];
            publication.subscribers.push(SubscriberLink {
                image_id,
                subscription_id,
                client_id,
                position,
                tether,
                tether_state: TetherState::Active,
                join_position: join,
                observed: join,
            });
            // The publisher limit and connected flag follow at once, not at the next cycle.
            publication.on_subscriber_joined();
            (
                publication.session_id,
                publication.stream_id,
                publication.log.path().display().to_string(),
            )
        };
        self.to_clients.available_image(&AvailableImage {
            image_id,
            subscription_id,
            session_id,
            stream_id,
            position_counter_id: position_id,
            log_file: &log_file,
            source_identity: "ipc",
        });
    }

    fn on_add_subscription(
        &mut self,
        command: &add_subscription::Decoder<'_>,
        now_ns: i64,
    ) -> Result<(), (i64, CommandError)> {
        let correlation_id = command.correlation_id();
        self.touch_client(command.client_id(), now_ns);
        let channel = ChannelUri::parse(command.channel()).map_err(|error| {
            (
                correlation_id,
                CommandError::new(ErrorCode::InvalidChannel, error.to_string()),
            )
        })?;
        let stream_id = command.stream_id();
        if channel.media == Media::Udp {
            return self
                .add_udp_subscription(command, channel, now_ns)
                .map_err(|error| (correlation_id, error));
        }
        let tether = channel.tether;
        let matching: Vec<usize> = self
            .publications
            .iter()
            .enumerate()
            .filter(|(_, publication)| {
                publication.stream_id == stream_id
                    && publication.state == PublicationState::Active
                    && channel.admits(&publication.uri, publication.session_id)
            })
            .map(|(index, _)| index)
            .collect();
        self.subscriptions.push(SubscriptionLink {
            registration_id: correlation_id,
            client_id: command.client_id(),
            stream_id,
            channel,
            endpoint_id: None,
            state: LinkState::default(),
        });
        self.to_clients.subscription_ready(correlation_id);
        for index in matching {
            self.link(index, correlation_id, command.client_id(), tether);
        }
        Ok(())
    }

    fn on_remove(
        &mut self,
        command: &remove_resource::Decoder<'_>,
        now_ns: i64,
    ) -> Result<(), (i64, CommandError)> {
        let correlation_id = command.correlation_id();
        let client_id = command.client_id();
        self.touch_client(client_id, now_ns);
        let registration_id = command.registration_id();
        let removed = match command.kind() {
            ResourceKind::Publication => self.remove_publication_link(client_id, registration_id),
            ResourceKind::Subscription => self.remove_subscription(client_id, registration_id),
            ResourceKind::Counter => self.remove_counter(client_id, registration_id),
            ResourceKind::Unknown(kind) => {
                return Err((
                    correlation_id,
                    CommandError::new(
                        ErrorCode::MalformedCommand,
                        format!("unknown resource kind {kind}"),
                    ),
                ));
            }
        };
        if !removed {
            let code = match command.kind() {
                ResourceKind::Publication => ErrorCode::UnknownPublication,
                ResourceKind::Subscription => ErrorCode::UnknownSubscription,
                _ => ErrorCode::UnknownCounter,
            };
            return Err((
                correlation_id,
                CommandError::new(
                    code,
                    format!("client {client_id} has no resource {registration_id}"),
                ),
            ));
        }
        self.to_clients.success(correlation_id);
        Ok(())
    }

    /// Ends the client's link `registration_id` (carried out by `check_resources`); whether
    /// the client had it.
    fn remove_publication_link(&mut self, client_id: i64, registration_id: i64) -> bool {
        let Some(link) = self.publication_links.iter_mut().find(|link| {
            link.client_id == client_id
                && link.registration_id == registration_id
                && !link.has_reached_end_of_life()
        }) else {
            return false;
        };
        link.state.end();
        self.resources_changed = true;
        true
    }

    fn remove_subscription(&mut self, client_id: i64, registration_id: i64) -> bool {
        let Some(link) = self.subscriptions.iter_mut().find(|link| {
            link.client_id == client_id
                && link.registration_id == registration_id
                && !link.has_reached_end_of_life()
        }) else {
            return false;
        };
        link.state.end();
        self.resources_changed = true;
        true
    }

    /// A client cannot read an image: stop counting it, free its position and record why.
    fn on_release_image(
        &mut self,
        command: &release_image::Decoder<'_>,
        now_ns: i64,
    ) -> Result<(), (i64, CommandError)> {
        let (client_id, image_id) = (command.client_id(), command.image_id());
        self.touch_client(client_id, now_ns);
        let found = self.publications.iter_mut().find_map(|publication| {
            let index = publication.subscribers.iter().position(|subscriber| {
                subscriber.image_id == image_id && subscriber.client_id == client_id
            })?;
            Some((
                publication.subscribers.swap_remove(index),
                publication.stream_id,
            ))
        });
        let Some((subscriber, stream_id)) = found else {
            return Err((
                command.correlation_id(),
                CommandError::new(
                    ErrorCode::UnknownSubscription,
                    format!("client {client_id} has no image {image_id}"),
                ),
            ));
        };
        self.record_error(&format!(
            "client {client_id} released image {image_id} of stream {stream_id} (subscription \
             {}): {}",
            subscriber.subscription_id,
            command.reason()
        ));
        // Whoever holds that image hears that it is gone, in case the command came from another
        // process naming this client: the owner must stop reading what nobody counts.
        self.to_clients
            .unavailable_image(image_id, subscriber.subscription_id, stream_id);
        self.to_clients.success(command.correlation_id());
        Ok(())
    }

    fn remove_counter(&mut self, client_id: i64, counter_id_as_registration: i64) -> bool {
        let Ok(counter_id) = i32::try_from(counter_id_as_registration) else {
            return false;
        };
        let Some(link) = self.counter_links.iter_mut().find(|link| {
            link.client_id == client_id
                && link.counter.id() == counter_id
                && !link.has_reached_end_of_life()
        }) else {
            return false;
        };
        link.state.end();
        self.resources_changed = true;
        true
    }

    fn on_add_counter(
        &mut self,
        command: &add_counter::Decoder<'_>,
        now_ns: i64,
    ) -> Result<(), (i64, CommandError)> {
        let correlation_id = command.correlation_id();
        let client_id = command.client_id();
        self.touch_client(client_id, now_ns);
        let spec = CounterSpec {
            type_id: command.type_id().max(counter_types::CLIENT),
            key: command.key(),
            label: command.label(),
            registration_id: correlation_id,
            owner_id: client_id,
            reference_id: 0,
        };
        let counter = self.lease_counter(&spec).map_err(|error| {
            (
                correlation_id,
                CommandError::new(ErrorCode::ResourceExhausted, error.to_string()),
            )
        })?;
        let counter_id = counter.id();
        self.counter_links.push(CounterLink {
            client_id,
            counter,
            state: LinkState::default(),
        });
        self.to_clients.counter_ready(correlation_id, counter_id);
        Ok(())
    }

    fn on_client_command(
        &mut self,
        command: &client_command::Decoder<'_>,
        now_ns: i64,
    ) -> Result<(), (i64, CommandError)> {
        let client_id = command.client_id();
        match command.action() {
            ClientAction::Keepalive => self.touch_client(client_id, now_ns),
            ClientAction::Close => self.close_client(client_id),
            ClientAction::TerminateDriver => {
                self.to_clients.success(command.correlation_id());
                self.terminate_requested = true;
            }
            ClientAction::Unknown(action) => {
                return Err((
                    command.correlation_id(),
                    CommandError::new(
                        ErrorCode::MalformedCommand,
                        format!("unknown client action {action}"),
                    ),
                ));
            }
        }
        Ok(())
    }

    /// Ends a client that said it is closing; its links end with it in `check_resources`.
    fn close_client(&mut self, client_id: i64) {
        if let Some(client) = self.clients.get_mut(&client_id) {
            client.state = ClientState::Closed;
            self.resources_changed = true;
        }
    }

    fn on_timers(&mut self, now_ns: i64) -> usize {
        self.to_driver
            .view()
            .set_consumer_heartbeat(self.now.epoch_ms);
        let unblocked = self.check_command_ring(now_ns);
        if unblocked > 0 {
            self.keepalive_grace_from_ns = now_ns;
        }
        // Keepalives queue in the command ring: while it is blocked (records waiting, head not
        // moving) nobody is expired, and after it is unblocked every client's silence counts
        // from then, so that a blocked ring never costs live clients their resources.
        self.keepalives_blocked =
            self.to_driver.view().size() > 0 && self.command_position.1 < now_ns;
        unblocked
    }

    /// Pads over a command a client claimed in the ring and never finished (it died mid-write),
    /// once the ring has not moved for the client liveness timeout.
    fn check_command_ring(&mut self, now_ns: i64) -> usize {
        let position = self.to_driver.view().consumer_position();
        if position != self.command_position.0 || self.to_driver.view().size() == 0 {
            self.command_position = (position, now_ns);
            return 0;
        }
        let timeout =
            i64::try_from(self.config.client_liveness_timeout.as_nanos()).unwrap_or(i64::MAX);
        if now_ns - self.command_position.1 <= timeout || !self.to_driver.view().unblock() {
            return 0;
        }
        self.command_position = (position, now_ns);
        self.record_error("unblocked the command ring: a client died while writing a command");
        1
    }

    fn check_publications(&mut self, now_ns: i64) -> usize {
        let mut work = 0;
        let mut withdrawn: Vec<(i64, i64, i32)> = Vec::new();
        let mut rejoin: Vec<(usize, i64, i64, bool)> = Vec::new();
        let mut invalid: Vec<(usize, i64, String)> = Vec::new();
        for (index, publication) in self.publications.iter_mut().enumerate() {
            let outcome = publication.update(now_ns, &self.timeouts);
            work += outcome.work;
            if outcome.unblocked {
                self.errors
                    .system()
                    .increment(SystemCounter::UnblockedPublications);
                work += 1;
            }
            for subscriber_index in outcome.invalid_positions {
                let subscriber = &publication.subscribers[subscriber_index];
                invalid.push((
                    index,
                    subscriber.image_id,
                    format!(
                        "client {} wrote position {} to image {} of stream {} (subscription {}), \
                         outside [{}, {}]: image withdrawn",
                        subscriber.client_id,
                        subscriber.observed,
                        subscriber.image_id,
                        publication.stream_id,
                        subscriber.subscription_id,
                        subscriber.join_position,
                        publication.producer_position(),
                    ),
                ));
                withdrawn.push((
                    subscriber.image_id,
                    subscriber.subscription_id,
                    publication.stream_id,
                ));
                work += 1;
            }
            for subscriber_index in outcome.left_behind {
                let subscriber = &publication.subscribers[subscriber_index];
                withdrawn.push((
                    subscriber.image_id,
                    subscriber.subscription_id,
                    publication.stream_id,
                ));
                self.errors
                    .system()
                    .increment(SystemCounter::UntetheredLeftBehind);
                work += 1;
            }
            // A rested subscriber rejoins at the tail of a publication still being written; a
            // closed one it would only join to be withdrawn again.
            let rested = if publication.state == PublicationState::Active {
                publication.rested(now_ns, &self.timeouts)
            } else {
                Vec::new()
            };
            for subscriber_index in rested {
                let subscriber = &publication.subscribers[subscriber_index];
                rejoin.push((
                    index,
                    subscriber.subscription_id,
                    subscriber.client_id,
                    subscriber.tether,
                ));
            }
        }
        for (index, image_id, text) in invalid {
            self.errors
                .system()
                .increment(SystemCounter::InvalidPositions);
            self.record_error(&text);
            let publication = &mut self.publications[index];
            if let Some(position) = publication
                .subscribers
                .iter()
                .position(|subscriber| subscriber.image_id == image_id)
            {
                publication.subscribers.swap_remove(position);
            }
        }
        for (index, subscription_id, client_id, tether) in rejoin {
            // The rested subscriber gets a new image at the tail; its old position goes.
            let publication = &mut self.publications[index];
            if let Some(position) = publication.subscribers.iter().position(|subscriber| {
                subscriber.subscription_id == subscription_id
                    && matches!(subscriber.tether_state, TetherState::Resting { .. })
            }) {
                publication.subscribers.swap_remove(position);
            }
            self.link(index, subscription_id, client_id, tether);
        }
        for (image_id, subscription_id, stream_id) in &withdrawn {
            self.to_clients
                .unavailable_image(*image_id, *subscription_id, *stream_id);
        }
        work
    }

    /// Ages every driver-managed resource and carries out the end of those whose life is
    /// over, then drops them (which releases what they hold): the one place resources end.
    /// Clients first, since their links end with them; links next, since a publication's last
    /// link starts its drain; publications last.
    fn check_resources(&mut self, now_ns: i64, check_liveness: bool) -> usize {
        let mut aging = Aging {
            now_ns,
            check_liveness,
            client_liveness_timeout_ns: i64::try_from(
                self.config.client_liveness_timeout.as_nanos(),
            )
            .unwrap_or(i64::MAX),
            keepalive_grace_from_ns: self.keepalive_grace_from_ns,
            keepalives_blocked: self.keepalives_blocked,
            ended_clients: &[],
        };
        let mut work = 0;
        let mut ended_clients = Vec::new();
        if check_liveness || self.resources_changed {
            for client in self.clients.values_mut() {
                client.on_time_event(&aging);
            }
            let ended: Vec<ClientSession> = self
                .clients
                .extract_if(|_, client| client.has_reached_end_of_life())
                .map(|(_, client)| client)
                .collect();
            for client in ended {
                if client.state == ClientState::TimedOut {
                    self.on_client_timeout(client.client_id);
                }
                ended_clients.push(client.client_id);
            }
        }
        if !ended_clients.is_empty() || self.resources_changed {
            self.resources_changed = false;
            aging.ended_clients = &ended_clients;
            for link in age(&mut self.publication_links, &aging) {
                self.release_publication_reference(link.publication_id, now_ns);
                work += 1;
            }
            for link in age(&mut self.subscriptions, &aging) {
                // Its images go with it: their subscriber positions are released on drop.
                for publication in &mut self.publications {
                    publication
                        .subscribers
                        .retain(|subscriber| subscriber.subscription_id != link.registration_id);
                }
                if let Some(endpoint_id) = link.endpoint_id {
                    self.end_udp_subscription(&link, endpoint_id);
                }
                work += 1;
            }
            work += age(&mut self.counter_links, &aging).len();
        }
        work += ended_clients.len();
        for publication in age(&mut self.publications, &aging) {
            if publication.sender.is_some() {
                let registration_id = publication.registration_id;
                self.queue_for_sender(move |sender: &mut Sender| {
                    sender.work.remove(registration_id)
                });
            }
            // Its subscribers' images are withdrawn, but for resting ones: theirs were withdrawn
            // when they were left behind.
            for subscriber in publication.subscribers.iter().filter(|subscriber| {
                !matches!(subscriber.tether_state, TetherState::Resting { .. })
            }) {
                self.to_clients.unavailable_image(
                    subscriber.image_id,
                    subscriber.subscription_id,
                    publication.stream_id,
                );
            }
            work += 1;
        }
        work
    }

    /// A client stopped sending keepalives: count it, log it, and tell every client.
    fn on_client_timeout(&mut self, client_id: i64) {
        self.errors
            .system()
            .increment(SystemCounter::ClientTimeouts);
        self.record_error(&format!(
            "client {client_id} timed out: no keepalive for {:?}",
            self.config.client_liveness_timeout
        ));
        self.to_clients.client_timeout(client_id);
    }

    /// One link on publication `publication_id` ended; the last starts its drain.
    fn release_publication_reference(&mut self, publication_id: i64, now_ns: i64) {
        let Some(publication) = self
            .publications
            .iter_mut()
            .find(|publication| publication.registration_id == publication_id)
        else {
            return;
        };
        publication.references -= 1;
        if publication.references == 0 {
            let end = publication.producer_position();
            publication.log.metadata().set_end_of_stream_position(end);
            publication.state = PublicationState::Draining { since_ns: now_ns };
        }
    }

    /// Frees the counters and removes the files that resources released (by being dropped)
    /// since the last call: the one place the driver frees either.
    fn reclaim(&mut self) -> usize {
        let Some(released) = self.reclaim.take() else {
            return 0;
        };
        let now_ms = self.now.epoch_ms;
        for &id in &released.counters {
            let freed = self.counters.with_mut(|counters| counters.free(id, now_ms));
            if let Err(error) = freed {
                self.record_error(&format!("cannot free a released counter: {error}"));
            }
        }
        for path in &released.files {
            if let Err(error) = std::fs::remove_file(path) {
                self.record_error(&format!("cannot remove {}: {error}", path.display()));
            }
        }
        released.counters.len() + released.files.len()
    }

    /// A subscriber's position counter in image `image_id` (of publication or image
    /// `reference_id`), owned by `client_id`; `None` (recorded) when no counter is left.
    fn lease_subscriber_position(
        &mut self,
        subscription_id: i64,
        client_id: i64,
        image_id: i64,
        reference_id: i64,
        label: &str,
    ) -> Option<CounterLease> {
        let spec = CounterSpec {
            type_id: counter_types::SUBSCRIBER_POSITION,
            key: &image_id.to_le_bytes(),
            label,
            registration_id: image_id,
            owner_id: client_id,
            reference_id,
        };
        match self.lease_counter(&spec) {
            Ok(position) => Some(position),
            Err(error) => {
                self.record_error(&format!(
                    "cannot link subscription {subscription_id}: {error}"
                ));
                None
            }
        }
    }

    /// Creates the log file `<folder>/<id>.logbuffer` in the driver directory (the folder
    /// 0700), leased so that dropping whatever holds the lease removes it.
    fn create_log(
        &mut self,
        folder: &str,
        id: i64,
        parameters: &LogParameters,
    ) -> Result<(LogBuffers, FileLease), String> {
        let dir = self.dir.join(folder);
        let mut builder = std::fs::DirBuilder::new();
        builder.recursive(true);
        #[cfg(unix)]
        std::os::unix::fs::DirBuilderExt::mode(&mut builder, 0o700);
        builder
            .create(&dir)
            .map_err(|error| format!("{}: {error}", dir.display()))?;
        let path = dir.join(format!("{id}.logbuffer"));
        let log = LogBuffers::create(&path, parameters).map_err(|error| error.to_string())?;
        Ok((log, self.reclaim.lease_file(path)))
    }

    /// A counter that is freed when the lease is dropped.
    fn lease_counter(
        &mut self,
        spec: &CounterSpec<'_>,
    ) -> Result<CounterLease, crate::concurrent::counters::CountersError> {
        let counter = allocate_counter(&mut self.counters, spec, self.now.epoch_ms)?;
        Ok(self.reclaim.lease_counter(counter))
    }

    /// Releases every resource: publications' files, at shutdown.
    pub(crate) fn close_all(&mut self) {
        self.publications.clear();
        self.images.clear();
        self.reclaim();
    }

    /// The directory the conductor serves.
    pub fn dir(&self) -> &std::path::Path {
        &self.dir
    }
}

impl Agent for DriverConductor {
    fn do_work(&mut self, now: Now) -> usize {
        self.now = now;
        self.to_clients.set_now_ms(now.epoch_ms);
        let now_ns = now.nanos;
        let mut work = self.process_commands(now_ns);
        work += self.process_receiver_requests();
        // Positions, limits, cleaning and lifecycles every duty cycle: a publisher is never
        // held back waiting for a timer, and a parked conductor wakes to work it can see.
        work += self.check_publications(now_ns);
        work += self.check_images(now_ns);
        let timers_due = now_ns >= self.next_timer_ns;
        if timers_due {
            let interval =
                i64::try_from(self.config.timer_interval.as_nanos()).unwrap_or(1_000_000);
            self.next_timer_ns = now_ns + interval;
            work += self.on_timers(now_ns);
        }
        work += self.check_resources(now_ns, timers_due);
        work + self.reclaim()
    }

    fn role_name(&self) -> &str {
        ROLE
    }

    fn on_close(&mut self) {
        self.close_all();
    }

    fn on_panic(&mut self, message: &str) {
        self.errors.record_panic(self.now.epoch_ms, message);
    }

    fn tracks_duty_cycle(&self) -> bool {
        true
    }

    fn on_duty_cycle(&mut self, cycle_ns: Option<i64>, now: Now) {
        self.duty_cycle.record(cycle_ns, now.nanos);
    }
}

/// One step of splitmix64: a well-mixed 64-bit value from a seed.
fn splitmix(seed: u64) -> u64 {
    let mut z = seed.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// The correlation id of a command whose layout is unknown or broken, where the common prefix
/// (client id at 8, correlation id at 16 after the header) can be read; else -1.
fn correlation_of(bytes: &[u8]) -> i64 {
    bytes
        .get(16..24)
        .and_then(|bytes| bytes.try_into().ok())
        .map_or(-1, i64::from_le_bytes)
}

/// Allocates a counter and keeps it with the mapping it lives in.
pub(crate) fn allocate_counter(
    counters: &mut MappedView<CountersManager<'static>>,
    spec: &CounterSpec<'_>,
    now_ms: i64,
) -> Result<MappedView<Counter<'static>>, crate::concurrent::counters::CountersError> {
    let id = counters
        .with_mut(|counters| counters.allocate(spec, now_ms).map(|counter| counter.id()))?;
    counters.try_project(|counters, _| counters.counter(id))
}
