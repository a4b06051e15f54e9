//! The archive client: a control session with an archive, in blocking and non-blocking forms.
//!
//! ```no_run
//! use std::time::Duration;
//! use tern_archive::client::{ArchiveClient, ArchiveClientConfig};
//! use tern_engine::client::{ClientConfig, Tern};
//!
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let tern = Tern::connect(ClientConfig::default())?;
//! let mut archive = ArchiveClient::connect(&tern, ArchiveClientConfig::default())?;
//! // Record every publication on stream 1001 of tern:ipc.
//! archive.start_recording("tern:ipc", 1001)?;
//! // ... publish ...
//! for recording in archive.list_recordings(0, 100)? {
//!     println!("{} {} {}..{}", recording.recording_id, recording.channel,
//!              recording.start_position, recording.stop_position);
//! }
//! // Replay recording 0 from its start onto stream 2002, and read it there.
//! let replay_id = archive.replay(0, -1, -1, "tern:ipc", 2002)?;
//! # let _ = (replay_id, Duration::ZERO);
//! archive.stop_recording("tern:ipc", 1001)?;
//! # Ok(())
//! # }
//! ```
//!
//! Every request waits (blocking form) for its one response, matched by correlation id, up to
//! the configured timeout; an archive error comes back as [`ArchiveClientError::Archive`] with
//! the typed [`ResponseCode`] and the archive's message. The non-blocking form sends with
//! [`ArchiveClient::send`] (it returns the correlation id at once) and collects responses with
//! [`ArchiveClient::poll`] and [`ArchiveClient::take_response`].
//!
//! Many clients may share one response channel and stream: each reads only its own session's
//! responses (and, before it has a session, only its connect's correlation id).
//!
//! Memory and threads: a client is used from one thread; it owns a publication to the
//! archive's control stream and a subscription to its responses.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use tern_codec::MessageHeader;
use tern_engine::client::{
    ClientError, FragmentAssembler, FragmentHeader, OfferResult, Publication, Subscription, Tern,
};

use crate::control_protocol::{
    self as protocol, ARCHIVE_CONTROL, RecordingEventKind, RecordingOperation, RecordingSignal,
    ResponseCode, SourceLocation,
};

/// Where an archive listens and how long to wait for it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ArchiveClientConfig {
    /// The archive's control channel.
    pub control_channel: String,
    /// Its stream.
    pub control_stream_id: i32,
    /// Where this client reads responses.
    pub response_channel: String,
    /// Their stream.
    pub response_stream_id: i32,
    /// How long a request may wait for its response.
    pub timeout: Duration,
}

impl Default for ArchiveClientConfig {
    fn default() -> Self {
        Self {
            control_channel: "tern:ipc".to_owned(),
            control_stream_id: protocol::CONTROL_STREAM_ID_DEFAULT,
            response_channel: "tern:ipc".to_owned(),
            response_stream_id: protocol::RESPONSE_STREAM_ID_DEFAULT,
            timeout: Duration::from_secs(10),
        }
    }
}

/// What went wrong.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ArchiveClientError {
    /// The driver refused or is gone.
    #[error("driver: {0}")]
    Driver(#[from] ClientError),
    /// No response in time.
    #[error("the archive did not answer {what} within {timeout:?}")]
    Timeout {
        /// The request.
        what: &'static str,
        /// How long it waited.
        timeout: Duration,
    },
    /// The archive answered with an error.
    #[error("archive: {code:?}: {message}")]
    Archive {
        /// What kind of error.
        code: ResponseCode,
        /// The archive's words.
        message: String,
    },
    /// A request that cannot be encoded (a channel too long).
    #[error("request: {0}")]
    Encode(String),
    /// The control stream is closed.
    #[error("the control publication is closed")]
    Closed,
}

/// One recording, as a listing describes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordingInfo {
    /// Its id.
    pub recording_id: i64,
    /// First position held.
    pub start_position: i64,
    /// End of what is recorded (as of the listing, for an active one).
    pub stop_position: i64,
    /// Epoch ms it started.
    pub start_timestamp: i64,
    /// Epoch ms it stopped; -1 while active.
    pub stop_timestamp: i64,
    /// The stream's initial term id.
    pub initial_term_id: i32,
    /// Term length.
    pub term_length: u32,
    /// MTU.
    pub mtu: u32,
    /// Segment length.
    pub segment_length: u32,
    /// The publication's session.
    pub session_id: i32,
    /// The stream.
    pub stream_id: i32,
    /// 1 valid, 2 invalid, 3 deleted.
    pub state: i32,
    /// The channel.
    pub channel: String,
    /// Where the stream came from.
    pub source_identity: String,
}

/// A response, as the non-blocking form hands it over.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Response {
    /// The request's correlation id.
    pub correlation_id: i64,
    /// The result (a session id, a position, a count, ...).
    pub relevant_id: i64,
    /// What happened.
    pub code: ResponseCode,
    /// The archive's message, when it failed.
    pub message: String,
    /// Descriptors that came before it (listings).
    pub descriptors: Vec<RecordingInfo>,
}

/// A request, for the non-blocking form.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Request<'a> {
    /// Record every publication of a channel and stream.
    StartRecording {
        /// The channel.
        channel: &'a str,
        /// The stream.
        stream_id: i32,
    },
    /// Stop recording a channel and stream.
    StopRecording {
        /// The channel.
        channel: &'a str,
        /// The stream.
        stream_id: i32,
    },
    /// Extend a stopped recording with the publications of a channel and stream.
    ExtendRecording {
        /// The recording.
        recording_id: i64,
        /// The channel.
        channel: &'a str,
        /// The stream.
        stream_id: i32,
    },
    /// Replay a recording.
    Replay {
        /// The recording.
        recording_id: i64,
        /// From (-1: its start).
        position: i64,
        /// How much (-1: what is recorded now; [`protocol::REPLAY_FOLLOW_LIVE`]: follow it).
        length: i64,
        /// Onto this channel.
        channel: &'a str,
        /// And stream.
        stream_id: i32,
    },
    /// Stop a replay.
    StopReplay {
        /// The replay.
        replay_session_id: i64,
    },
    /// List recordings (optionally of one stream whose channel contains a fragment).
    List {
        /// From this id.
        from_recording_id: i64,
        /// At most this many.
        count: i32,
        /// Only this stream and channel fragment.
        filter: Option<(i32, &'a str)>,
    },
    /// One recording's descriptor.
    ListOne {
        /// The recording.
        recording_id: i64,
    },
    /// Copy a recording from another archive into the one this client talks to.
    Replicate {
        /// The recording in the source archive.
        source_recording_id: i64,
        /// The recording here to extend; -1 for a new one.
        destination_recording_id: i64,
        /// The source archive's control channel.
        source_control_channel: &'a str,
        /// Its control stream.
        source_control_stream_id: i32,
        /// Where the source replays to, for this archive to record (a channel this archive's
        /// driver can receive on).
        replication_channel: &'a str,
        /// Keep going while the source recording is live.
        follow: bool,
    },
    /// Stop a replication.
    StopReplication {
        /// The replication.
        replication_id: i64,
    },
    /// An operation on one recording.
    Recording {
        /// The recording.
        recording_id: i64,
        /// What to do.
        operation: RecordingOperation,
        /// The position it takes, if any.
        position: i64,
    },
}

/// A connected archive client.
pub struct ArchiveClient {
    config: ArchiveClientConfig,
    publication: Publication,
    subscription: Subscription,
    control_session_id: i64,
    correlation_base: i64,
    next_correlation: i64,
    /// Responses received, not yet taken.
    responses: VecDeque<Response>,
    /// Descriptors received whose response has not come yet.
    descriptors: Vec<(i64, RecordingInfo)>,
    /// Recording signals received, not yet taken.
    signals: VecDeque<Signal>,
}

/// A recording signal, as the archive sent it about a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Signal {
    /// The request's correlation id.
    pub correlation_id: i64,
    /// The recording.
    pub recording_id: i64,
    /// A position (see [`RecordingSignal`]).
    pub position: i64,
    /// What happened.
    pub signal: RecordingSignal,
}

impl std::fmt::Debug for ArchiveClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ArchiveClient")
            .field("control_session_id", &self.control_session_id)
            .finish_non_exhaustive()
    }
}

impl ArchiveClient {
    /// Connects to the archive that `config` names, through `tern`'s driver, and opens a
    /// control session; waits up to the configured timeout.
    pub fn connect(tern: &Tern, config: ArchiveClientConfig) -> Result<Self, ArchiveClientError> {
        let timeout = config.timeout;
        let mut connect = AsyncConnect::new(tern, config)?;
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(client) = connect.poll()? {
                return Ok(client);
            }
            if Instant::now() > deadline {
                return Err(ArchiveClientError::Timeout {
                    what: "connect",
                    timeout,
                });
            }
            std::thread::sleep(Duration::from_micros(100));
        }
    }

    /// The control session's id.
    pub fn control_session_id(&self) -> i64 {
        self.control_session_id
    }

    fn correlation_id(&mut self) -> i64 {
        self.next_correlation += 1;
        self.correlation_base.wrapping_add(self.next_correlation)
    }

    fn offer(&mut self, message: &[u8]) -> Result<(), ArchiveClientError> {
        let deadline = Instant::now() + self.config.timeout;
        loop {
            match self.publication.offer(message) {
                OfferResult::Ok(_) => return Ok(()),
                OfferResult::BackPressured
                | OfferResult::NotConnected
                | OfferResult::AdminAction => {
                    if Instant::now() > deadline {
                        return Err(ArchiveClientError::Timeout {
                            what: "a request's send",
                            timeout: self.config.timeout,
                        });
                    }
                    std::thread::yield_now();
                }
                _ => return Err(ArchiveClientError::Closed),
            }
        }
    }

    /// Sends `request` without waiting; returns its correlation id (take its response with
    /// [`ArchiveClient::take_response`] after [`ArchiveClient::poll`]).
    pub fn send(&mut self, request: &Request<'_>) -> Result<i64, ArchiveClientError> {
        let correlation_id = self.correlation_id();
        let session = self.control_session_id;
        let mut buf = vec![0u8; 2 * protocol::CHANNEL_MAX + 128];
        let length =
            encode_request(&mut buf, request, session, correlation_id).map_err(encode_error)?;
        self.offer(&buf[..length])?;
        Ok(correlation_id)
    }

    /// Sends `request` if the control publication takes it now; `None` when it is
    /// back-pressured or not connected (try again later). Never waits.
    pub fn try_send(&mut self, request: &Request<'_>) -> Result<Option<i64>, ArchiveClientError> {
        let correlation_id = self.correlation_id();
        let session = self.control_session_id;
        let mut buf = vec![0u8; 2 * protocol::CHANNEL_MAX + 128];
        let length =
            encode_request(&mut buf, request, session, correlation_id).map_err(encode_error)?;
        match self.publication.offer(&buf[..length]) {
            OfferResult::Ok(_) => Ok(Some(correlation_id)),
            OfferResult::BackPressured | OfferResult::NotConnected | OfferResult::AdminAction => {
                Ok(None)
            }
            _ => Err(ArchiveClientError::Closed),
        }
    }

    /// Reads what has arrived (non-blocking); returns how many messages.
    pub fn poll(&mut self) -> usize {
        let mut received = Vec::new();
        let mut assembler = FragmentAssembler::new(|message: &[u8], _: &FragmentHeader| {
            received.push(message.to_vec());
        });
        let fragments = self.subscription.poll(
            |fragment, header| assembler.on_fragment(fragment, header),
            64,
        );
        for message in received {
            self.on_message(&message);
        }
        fragments
    }

    fn on_message(&mut self, message: &[u8]) {
        let Ok(header) = MessageHeader::decode(message) else {
            return;
        };
        if header.schema_id != ARCHIVE_CONTROL.id {
            return;
        }
        match header.template_id {
            protocol::control_response::TEMPLATE_ID => {
                let Ok(decoded) = protocol::control_response::Decoder::decode(message) else {
                    return;
                };
                if !self.is_mine(decoded.control_session_id(), decoded.correlation_id()) {
                    return;
                }
                let correlation_id = decoded.correlation_id();
                let mut descriptors = Vec::new();
                self.descriptors.retain(|(id, info)| {
                    if *id == correlation_id {
                        descriptors.push(info.clone());
                        false
                    } else {
                        true
                    }
                });
                self.responses.push_back(Response {
                    correlation_id,
                    relevant_id: decoded.relevant_id(),
                    code: decoded.code(),
                    message: decoded.error_message().to_owned(),
                    descriptors,
                });
            }
            protocol::recording_signal::TEMPLATE_ID => {
                let Ok(decoded) = protocol::recording_signal::Decoder::decode(message) else {
                    return;
                };
                if self.is_mine(decoded.control_session_id(), decoded.correlation_id()) {
                    self.signals.push_back(Signal {
                        correlation_id: decoded.correlation_id(),
                        recording_id: decoded.recording_id(),
                        position: decoded.position(),
                        signal: decoded.signal(),
                    });
                }
            }
            protocol::recording_descriptor::TEMPLATE_ID => {
                let Ok(decoded) = protocol::recording_descriptor::Decoder::decode(message) else {
                    return;
                };
                if self.is_mine(decoded.control_session_id(), decoded.correlation_id()) {
                    self.descriptors
                        .push((decoded.correlation_id(), info_of(&decoded)));
                }
            }
            _ => {}
        }
    }

    /// Whether a message is for this client: its session, or (before it has one) its connect.
    fn is_mine(&self, session_id: i64, correlation_id: i64) -> bool {
        if self.control_session_id != 0 {
            return session_id == self.control_session_id;
        }
        correlation_id.wrapping_sub(self.correlation_base) > 0
            && correlation_id.wrapping_sub(self.correlation_base) <= self.next_correlation
    }

    /// Takes the oldest recording signal about request `correlation_id`, if one has arrived.
    pub fn take_signal(&mut self, correlation_id: i64) -> Option<Signal> {
        let index = self
            .signals
            .iter()
            .position(|signal| signal.correlation_id == correlation_id)?;
        self.signals.remove(index)
    }

    /// Takes the response to `correlation_id`, if it has arrived.
    pub fn take_response(&mut self, correlation_id: i64) -> Option<Response> {
        let index = self
            .responses
            .iter()
            .position(|response| response.correlation_id == correlation_id)?;
        self.responses.remove(index)
    }

    fn await_response(
        &mut self,
        correlation_id: i64,
        what: &'static str,
    ) -> Result<Response, ArchiveClientError> {
        let deadline = Instant::now() + self.config.timeout;
        loop {
            if let Some(response) = self.take_response(correlation_id) {
                if response.code != ResponseCode::Ok {
                    return Err(ArchiveClientError::Archive {
                        code: response.code,
                        message: response.message,
                    });
                }
                return Ok(response);
            }
            if self.poll() == 0 {
                if Instant::now() > deadline {
                    return Err(ArchiveClientError::Timeout {
                        what,
                        timeout: self.config.timeout,
                    });
                }
                std::thread::sleep(Duration::from_micros(100));
            }
        }
    }

    /// Sends `request` and waits for its response.
    pub fn request(
        &mut self,
        request: &Request<'_>,
        what: &'static str,
    ) -> Result<Response, ArchiveClientError> {
        let correlation_id = self.send(request)?;
        self.await_response(correlation_id, what)
    }

    /// Records every publication of `channel` and `stream_id` (each becomes a recording).
    pub fn start_recording(
        &mut self,
        channel: &str,
        stream_id: i32,
    ) -> Result<i64, ArchiveClientError> {
        Ok(self
            .request(
                &Request::StartRecording { channel, stream_id },
                "start recording",
            )?
            .relevant_id)
    }

    /// Stops recording `channel` and `stream_id`.
    pub fn stop_recording(
        &mut self,
        channel: &str,
        stream_id: i32,
    ) -> Result<(), ArchiveClientError> {
        self.request(
            &Request::StopRecording { channel, stream_id },
            "stop recording",
        )
        .map(|_| ())
    }

    /// Stops one recording by its id.
    pub fn stop_recording_by_id(&mut self, recording_id: i64) -> Result<(), ArchiveClientError> {
        self.recording_operation(
            recording_id,
            RecordingOperation::StopRecording,
            0,
            "stop recording",
        )
        .map(|_| ())
    }

    /// Continues stopped recording `recording_id` with the publications of `channel` and
    /// `stream_id` (placed at its stop position).
    pub fn extend_recording(
        &mut self,
        recording_id: i64,
        channel: &str,
        stream_id: i32,
    ) -> Result<(), ArchiveClientError> {
        self.request(
            &Request::ExtendRecording {
                recording_id,
                channel,
                stream_id,
            },
            "extend recording",
        )
        .map(|_| ())
    }

    /// Up to `count` recordings from `from_recording_id` (deleted ones left out).
    pub fn list_recordings(
        &mut self,
        from_recording_id: i64,
        count: i32,
    ) -> Result<Vec<RecordingInfo>, ArchiveClientError> {
        Ok(self
            .request(
                &Request::List {
                    from_recording_id,
                    count,
                    filter: None,
                },
                "list recordings",
            )?
            .descriptors)
    }

    /// Up to `count` recordings of `stream_id` whose channel contains `channel_fragment`.
    pub fn list_recordings_for(
        &mut self,
        from_recording_id: i64,
        count: i32,
        stream_id: i32,
        channel_fragment: &str,
    ) -> Result<Vec<RecordingInfo>, ArchiveClientError> {
        Ok(self
            .request(
                &Request::List {
                    from_recording_id,
                    count,
                    filter: Some((stream_id, channel_fragment)),
                },
                "list recordings",
            )?
            .descriptors)
    }

    /// One recording (deleted ones included).
    pub fn list_recording(
        &mut self,
        recording_id: i64,
    ) -> Result<RecordingInfo, ArchiveClientError> {
        let mut response = self.request(&Request::ListOne { recording_id }, "list recording")?;
        response
            .descriptors
            .pop()
            .ok_or(ArchiveClientError::Archive {
                code: ResponseCode::UnknownRecording,
                message: format!("no descriptor came for recording {recording_id}"),
            })
    }

    /// Where an active recording has got to; `None` when it is not being recorded.
    pub fn recording_position(
        &mut self,
        recording_id: i64,
    ) -> Result<Option<i64>, ArchiveClientError> {
        let position = self.recording_operation(
            recording_id,
            RecordingOperation::RecordingPosition,
            0,
            "recording position",
        )?;
        Ok((position >= 0).then_some(position))
    }

    /// A stopped recording's stop position; `None` while it is active.
    pub fn stop_position(&mut self, recording_id: i64) -> Result<Option<i64>, ArchiveClientError> {
        let position = self.recording_operation(
            recording_id,
            RecordingOperation::StopPosition,
            0,
            "stop position",
        )?;
        Ok((position >= 0).then_some(position))
    }

    /// Replays `recording_id` from `position` (-1: its start) for `length` bytes (-1: what is
    /// recorded now; [`protocol::REPLAY_FOLLOW_LIVE`]: follow it while it is live) onto
    /// `channel` and `stream_id`. Returns the replay's id. Subscribe before asking: the replay
    /// waits a few seconds for a subscriber.
    pub fn replay(
        &mut self,
        recording_id: i64,
        position: i64,
        length: i64,
        channel: &str,
        stream_id: i32,
    ) -> Result<i64, ArchiveClientError> {
        Ok(self
            .request(
                &Request::Replay {
                    recording_id,
                    position,
                    length,
                    channel,
                    stream_id,
                },
                "replay",
            )?
            .relevant_id)
    }

    /// Stops a replay.
    pub fn stop_replay(&mut self, replay_session_id: i64) -> Result<(), ArchiveClientError> {
        self.request(&Request::StopReplay { replay_session_id }, "stop replay")
            .map(|_| ())
    }

    /// Asks this archive to copy `source_recording_id` from the archive whose control channel
    /// and stream are given: into a new recording (`destination_recording_id` -1) or as an
    /// extension of a stopped one here, the source replaying onto `replication_channel` (which
    /// this archive's driver must be able to receive); with `follow`, it keeps copying while the
    /// source recording is live. Returns the replication's id; the copy goes on in the archive
    /// (its recording events say when it starts and stops).
    pub fn replicate(
        &mut self,
        source_recording_id: i64,
        destination_recording_id: i64,
        (source_control_channel, source_control_stream_id): (&str, i32),
        replication_channel: &str,
        follow: bool,
    ) -> Result<i64, ArchiveClientError> {
        Ok(self
            .request(
                &Request::Replicate {
                    source_recording_id,
                    destination_recording_id,
                    source_control_channel,
                    source_control_stream_id,
                    replication_channel,
                    follow,
                },
                "replicate",
            )?
            .relevant_id)
    }

    /// Stops a replication.
    pub fn stop_replication(&mut self, replication_id: i64) -> Result<(), ArchiveClientError> {
        self.request(
            &Request::StopReplication { replication_id },
            "stop replication",
        )
        .map(|_| ())
    }

    /// Cuts a stopped, unused recording back to `position`.
    pub fn truncate_recording(
        &mut self,
        recording_id: i64,
        position: i64,
    ) -> Result<(), ArchiveClientError> {
        self.recording_operation(
            recording_id,
            RecordingOperation::Truncate,
            position,
            "truncate",
        )
        .map(|_| ())
    }

    /// Deletes a stopped, unused recording and its files.
    pub fn purge_recording(&mut self, recording_id: i64) -> Result<(), ArchiveClientError> {
        self.recording_operation(recording_id, RecordingOperation::Purge, 0, "purge")
            .map(|_| ())
    }

    /// Detaches the segments below `position` (a segment boundary); returns the new start.
    pub fn detach_segments(
        &mut self,
        recording_id: i64,
        position: i64,
    ) -> Result<i64, ArchiveClientError> {
        self.recording_operation(
            recording_id,
            RecordingOperation::DetachSegments,
            position,
            "detach segments",
        )
    }

    /// Deletes detached segment files; returns how many.
    pub fn delete_detached_segments(
        &mut self,
        recording_id: i64,
    ) -> Result<i64, ArchiveClientError> {
        self.recording_operation(
            recording_id,
            RecordingOperation::DeleteDetachedSegments,
            0,
            "delete detached segments",
        )
    }

    /// Detaches and deletes the segments below `position`; returns the new start.
    pub fn purge_segments(
        &mut self,
        recording_id: i64,
        position: i64,
    ) -> Result<i64, ArchiveClientError> {
        self.recording_operation(
            recording_id,
            RecordingOperation::PurgeSegments,
            position,
            "purge segments",
        )
    }

    /// Attaches detached segments still on disk; returns the new start.
    pub fn attach_segments(&mut self, recording_id: i64) -> Result<i64, ArchiveClientError> {
        self.recording_operation(
            recording_id,
            RecordingOperation::AttachSegments,
            0,
            "attach segments",
        )
    }

    fn recording_operation(
        &mut self,
        recording_id: i64,
        operation: RecordingOperation,
        position: i64,
        what: &'static str,
    ) -> Result<i64, ArchiveClientError> {
        Ok(self
            .request(
                &Request::Recording {
                    recording_id,
                    operation,
                    position,
                },
                what,
            )?
            .relevant_id)
    }

    /// Closes the control session.
    pub fn close(mut self) -> Result<(), ArchiveClientError> {
        let mut buf = [0u8; 64];
        let mut encoder = protocol::close_session::Encoder::wrap(&mut buf).map_err(encode_error)?;
        encoder.control_session_id(self.control_session_id);
        let length = encoder.finish();
        self.offer(&buf[..length])
    }
}

/// Gives each client in a process its own range of correlation ids, so that clients sharing a
/// driver connection (and so a client id) never take each other's connect responses.
static NEXT_CLIENT: std::sync::atomic::AtomicI64 = std::sync::atomic::AtomicI64::new(0);

/// A connect under way, for callers that must not wait (an archive replicating from another):
/// [`AsyncConnect::poll`] until it hands over the client. Timing out is the caller's.
pub struct AsyncConnect {
    client: Option<ArchiveClient>,
    correlation_id: i64,
    sent: bool,
}

impl std::fmt::Debug for AsyncConnect {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AsyncConnect")
            .field("sent", &self.sent)
            .finish_non_exhaustive()
    }
}

impl AsyncConnect {
    /// Adds the control publication and the response subscription (each waits for the
    /// driver's answer), and prepares the connect request.
    pub fn new(tern: &Tern, config: ArchiveClientConfig) -> Result<Self, ArchiveClientError> {
        let subscription =
            tern.add_subscription(&config.response_channel, config.response_stream_id)?;
        let publication =
            tern.add_publication(&config.control_channel, config.control_stream_id)?;
        let ordinal = NEXT_CLIENT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let mut client = ArchiveClient {
            correlation_base: tern
                .client_id()
                .wrapping_shl(32)
                .wrapping_add(ordinal.wrapping_shl(20)),
            config,
            publication,
            subscription,
            control_session_id: 0,
            next_correlation: 1,
            responses: VecDeque::new(),
            descriptors: Vec::new(),
            signals: VecDeque::new(),
        };
        let correlation_id = client.correlation_id();
        Ok(Self {
            client: Some(client),
            correlation_id,
            sent: false,
        })
    }

    /// Moves the connect on without waiting: sends the request once the control publication is
    /// connected, then looks for the response. `Some` once connected.
    pub fn poll(&mut self) -> Result<Option<ArchiveClient>, ArchiveClientError> {
        let Some(client) = self.client.as_mut() else {
            return Err(ArchiveClientError::Closed);
        };
        if !self.sent {
            if !client.publication.is_connected() {
                return Ok(None);
            }
            let mut buf = vec![0u8; 64 + client.config.response_channel.len()];
            let mut encoder = protocol::connect::Encoder::wrap(&mut buf).map_err(encode_error)?;
            encoder
                .correlation_id(self.correlation_id)
                .response_stream_id(client.config.response_stream_id)
                .version(ARCHIVE_CONTROL.version.compose());
            let length = encoder
                .response_channel(&client.config.response_channel)
                .map_err(encode_error)?
                .finish();
            match client.publication.offer(&buf[..length]) {
                OfferResult::Ok(_) => self.sent = true,
                OfferResult::BackPressured
                | OfferResult::NotConnected
                | OfferResult::AdminAction => {
                    return Ok(None);
                }
                _ => return Err(ArchiveClientError::Closed),
            }
        }
        client.poll();
        let Some(response) = client.take_response(self.correlation_id) else {
            return Ok(None);
        };
        if response.code != ResponseCode::Ok {
            return Err(ArchiveClientError::Archive {
                code: response.code,
                message: response.message,
            });
        }
        let mut client = self.client.take().expect("present above");
        client.control_session_id = response.relevant_id;
        Ok(Some(client))
    }
}

fn encode_error(error: tern_codec::EncodeError) -> ArchiveClientError {
    ArchiveClientError::Encode(error.to_string())
}

/// Encodes `request`; returns its length.
fn encode_request(
    buf: &mut [u8],
    request: &Request<'_>,
    session: i64,
    correlation_id: i64,
) -> Result<usize, tern_codec::EncodeError> {
    Ok(match *request {
        Request::StartRecording { channel, stream_id } => {
            let mut encoder = protocol::start_recording::Encoder::wrap(buf)?;
            encoder
                .control_session_id(session)
                .correlation_id(correlation_id)
                .stream_id(stream_id)
                .source_location(SourceLocation::Local);
            encoder.channel(channel)?.finish()
        }
        Request::StopRecording { channel, stream_id } => {
            let mut encoder = protocol::stop_recording::Encoder::wrap(buf)?;
            encoder
                .control_session_id(session)
                .correlation_id(correlation_id)
                .stream_id(stream_id);
            encoder.channel(channel)?.finish()
        }
        Request::ExtendRecording {
            recording_id,
            channel,
            stream_id,
        } => {
            let mut encoder = protocol::extend_recording::Encoder::wrap(buf)?;
            encoder
                .control_session_id(session)
                .correlation_id(correlation_id)
                .recording_id(recording_id)
                .stream_id(stream_id)
                .source_location(SourceLocation::Local);
            encoder.channel(channel)?.finish()
        }
        Request::Replay {
            recording_id,
            position,
            length,
            channel,
            stream_id,
        } => {
            let mut encoder = protocol::replay::Encoder::wrap(buf)?;
            encoder
                .control_session_id(session)
                .correlation_id(correlation_id)
                .recording_id(recording_id)
                .position(position)
                .length(length)
                .replay_stream_id(stream_id);
            encoder.replay_channel(channel)?.finish()
        }
        Request::StopReplay { replay_session_id } => {
            let mut encoder = protocol::stop_replay::Encoder::wrap(buf)?;
            encoder
                .control_session_id(session)
                .correlation_id(correlation_id)
                .replay_session_id(replay_session_id);
            encoder.finish()
        }
        Request::List {
            from_recording_id,
            count,
            filter,
        } => {
            let mut encoder = protocol::list_recordings::Encoder::wrap(buf)?;
            let (stream_id, fragment) = filter.unwrap_or((0, ""));
            encoder
                .control_session_id(session)
                .correlation_id(correlation_id)
                .from_recording_id(from_recording_id)
                .count(count)
                .stream_id(stream_id)
                .filtered(u8::from(filter.is_some()));
            encoder.channel_fragment(fragment)?.finish()
        }
        Request::ListOne { recording_id } => {
            let mut encoder = protocol::list_recording::Encoder::wrap(buf)?;
            encoder
                .control_session_id(session)
                .correlation_id(correlation_id)
                .recording_id(recording_id);
            encoder.finish()
        }
        Request::Replicate {
            source_recording_id,
            destination_recording_id,
            source_control_channel,
            source_control_stream_id,
            replication_channel,
            follow,
        } => {
            let mut encoder = protocol::replicate::Encoder::wrap(buf)?;
            encoder
                .control_session_id(session)
                .correlation_id(correlation_id)
                .source_recording_id(source_recording_id)
                .destination_recording_id(destination_recording_id)
                .source_control_stream_id(source_control_stream_id)
                .follow(u8::from(follow));
            encoder
                .source_control_channel(source_control_channel)?
                .replication_channel(replication_channel)?
                .finish()
        }
        Request::StopReplication { replication_id } => {
            let mut encoder = protocol::stop_replication::Encoder::wrap(buf)?;
            encoder
                .control_session_id(session)
                .correlation_id(correlation_id)
                .replication_id(replication_id);
            encoder.finish()
        }
        Request::Recording {
            recording_id,
            operation,
            position,
        } => {
            let mut encoder = protocol::recording_request::Encoder::wrap(buf)?;
            encoder
                .control_session_id(session)
                .correlation_id(correlation_id)
                .recording_id(recording_id)
                .position(position)
                .operation(operation);
            encoder.finish()
        }
    })
}

fn info_of(decoded: &protocol::recording_descriptor::Decoder<'_>) -> RecordingInfo {
    RecordingInfo {
        recording_id: decoded.recording_id(),
        start_position: decoded.start_position(),
        stop_position: decoded.stop_position(),
        start_timestamp: decoded.start_timestamp(),
        stop_timestamp: decoded.stop_timestamp(),
        initial_term_id: decoded.initial_term_id(),
        term_length: decoded.term_length(),
        mtu: decoded.mtu(),
        segment_length: decoded.segment_length(),
        session_id: decoded.session_id(),
        stream_id: decoded.stream_id(),
        state: decoded.state(),
        channel: decoded.channel().to_owned(),
        source_identity: decoded.source_identity().to_owned(),
    }
}

/// A recording event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordingEvent {
    /// What happened.
    pub kind: RecordingEventKind,
    /// The recording.
    pub recording_id: i64,
    /// Its start.
    pub start_position: i64,
    /// How far it is.
    pub position: i64,
    /// The stream.
    pub stream_id: i32,
    /// The publication's session.
    pub session_id: i32,
    /// The channel.
    pub channel: String,
    /// Where the stream came from.
    pub source_identity: String,
}

/// A listener to an archive's recording events.
pub struct RecordingEvents {
    subscription: Subscription,
}

impl std::fmt::Debug for RecordingEvents {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RecordingEvents").finish_non_exhaustive()
    }
}

impl RecordingEvents {
    /// Listens on `channel` and `stream_id` (the archive's events stream).
    pub fn new(tern: &Tern, channel: &str, stream_id: i32) -> Result<Self, ArchiveClientError> {
        Ok(Self {
            subscription: tern.add_subscription(channel, stream_id)?,
        })
    }

    /// Hands each event that arrived to `handler` (non-blocking); returns how many.
    pub fn poll(&mut self, mut handler: impl FnMut(RecordingEvent)) -> usize {
        let mut count = 0;
        let mut assembler = FragmentAssembler::new(|message: &[u8], _: &FragmentHeader| {
            if let Ok(decoded) = protocol::recording_event::Decoder::decode(message) {
                count += 1;
                handler(RecordingEvent {
                    kind: decoded.kind(),
                    recording_id: decoded.recording_id(),
                    start_position: decoded.start_position(),
                    position: decoded.position(),
                    stream_id: decoded.stream_id(),
                    session_id: decoded.session_id(),
                    channel: decoded.channel().to_owned(),
                    source_identity: decoded.source_identity().to_owned(),
                });
            }
        });
        self.subscription.poll(
            |fragment, header| assembler.on_fragment(fragment, header),
            64,
        );
        count
    }
}
