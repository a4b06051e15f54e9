//! The archive agent: control sessions, recordings and replays, driven by one duty cycle.
//!
//! [`Archive::launch`] opens (or creates) the archive directory's catalog, repairs recordings
//! a crash left active ([`segment_files::recover`]), subscribes to the control stream and
//! publishes the events stream. Each duty cycle ([`Agent::do_work`]) it:
//! 1. takes up to [`REQUESTS_PER_CYCLE`] control requests and answers each;
//! 2. records: each recording subscription writes what its images have (bounded per image);
//! 3. replays: each replay offers a block;
//! 4. flushes responses waiting in control sessions, closes sessions whose clients are gone;
//! 5. publishes recording events (started, progress at most every [`PROGRESS_INTERVAL_NS`],
//!    stopped).
//!
//! Memory and threads: the agent owns everything here and runs on one thread (its own, or
//! composed with others). It is a client of the media driver through [`Tern`]; the driver's
//! log buffers it reads and writes follow the engine's rules. Adding publications,
//! subscriptions and counters waits for the driver's answer (a round trip of microseconds on
//! the control path; recording and replay never wait).

use std::path::{Path, PathBuf};

use tern_codec::{MessageHeader, SemanticVersion};
use tern_engine::agent::{Agent, Now};
use tern_engine::client::{
    ConductorMode, FragmentAssembler, FragmentHeader, Publication, Subscription, Tern,
};

use crate::catalog::{Catalog, RecordingDescriptor, RecordingState};
use crate::control_protocol::{
    self as protocol, ARCHIVE_CONTROL, RecordingEventKind, RecordingOperation, RecordingSignal,
    ResponseCode,
};
use crate::control_session::ControlSession;
use crate::error::{ArchiveError, CatalogError};
use crate::recorder::{RecorderContext, RecorderSettings, RecordingReport, RecordingSubscription};
use crate::replayer::{RecordedExtent, ReplaySession, ReplayState};
use crate::replication::{ReplicationAction, ReplicationRequest, ReplicationSession};
use crate::segment::{SEGMENT_LENGTH_DEFAULT, SEGMENT_LENGTH_MAX};
use crate::segment_files;
use crate::segment_reader::SegmentReader;
use crate::segment_writer::{Durability, FileIo};

/// The most control requests handled per duty cycle.
pub const REQUESTS_PER_CYCLE: usize = 16;
/// The least time between two progress events of one recording.
pub const PROGRESS_INTERVAL_NS: i64 = 100_000_000;
/// The most control sessions at once.
pub const CONTROL_SESSIONS_MAX: usize = 256;
/// Connects answered with a refusal beyond [`CONTROL_SESSIONS_MAX`] at once.
pub const CONNECT_REFUSALS_MAX: usize = 16;
/// The most replays at once.
pub const REPLAYS_MAX: usize = 256;
/// The most recording subscriptions at once.
pub const RECORDING_SUBSCRIPTIONS_MAX: usize = 1024;
/// The most descriptors one listing sends.
pub const LIST_COUNT_MAX: i32 = 1000;

/// Where assembled control requests go.
type RequestSink = Box<dyn FnMut(&[u8], &FragmentHeader) + Send>;

/// How an archive runs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ArchiveConfig {
    /// The archive directory: the catalog and segment files.
    pub dir: PathBuf,
    /// Where control requests arrive.
    pub control_channel: String,
    /// Their stream.
    pub control_stream_id: i32,
    /// Where recording events go.
    pub events_channel: String,
    /// Their stream.
    pub events_stream_id: i32,
    /// Bytes of stream per segment file (at least a term; rounded up to whole terms).
    pub segment_length: u32,
    /// Whether frames carry CRC32C checksums (on by default).
    pub checksums: bool,
    /// The durability level.
    pub durability: Durability,
    /// The largest block a recording takes or a replay reads at once.
    pub block_length_max: usize,
    /// Where other archives answer this one when it replicates from them (a channel their
    /// drivers can send to: UDP between machines).
    pub replication_response_channel: String,
    /// How recordings hand their blocks to the kernel: `pwrite` (default) or io_uring.
    pub file_io: FileIo,
}

impl Default for ArchiveConfig {
    fn default() -> Self {
        Self {
            dir: PathBuf::from("tern-archive"),
            control_channel: "tern:ipc".to_owned(),
            control_stream_id: protocol::CONTROL_STREAM_ID_DEFAULT,
            events_channel: "tern:ipc".to_owned(),
            events_stream_id: protocol::EVENTS_STREAM_ID_DEFAULT,
            segment_length: SEGMENT_LENGTH_DEFAULT,
            checksums: true,
            durability: Durability::SegmentEnd,
            block_length_max: 1024 * 1024,
            replication_response_channel: "tern:ipc".to_owned(),
            file_io: FileIo::Pwrite,
        }
    }
}

/// The archive agent.
pub struct Archive {
    config: ArchiveConfig,
    tern: Tern,
    catalog: Catalog,
    control: Subscription,
    events: Publication,
    sessions: Vec<ControlSession>,
    recordings: Vec<RecordingSubscription>,
    replays: Vec<ReplaySession>,
    replications: Vec<ReplicationSession>,
    next_replication_id: i64,
    next_session_id: i64,
    next_replay_id: i64,
    reports: Vec<RecordingReport>,
    /// Puts requests together from their fragments; whole ones go to `assembled`.
    assembler: FragmentAssembler<RequestSink>,
    assembled: std::sync::mpsc::Receiver<Vec<u8>>,
    /// Progress last published, per recording: (recording id, when).
    progress_sent: Vec<(i64, i64)>,
    /// Where events are encoded.
    event_buffer: Box<[u8; 1024]>,
    now: Now,
}

impl std::fmt::Debug for Archive {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Archive")
            .field("dir", &self.config.dir)
            .field("sessions", &self.sessions.len())
            .field("recordings", &self.recordings.len())
            .field("replays", &self.replays.len())
            .finish_non_exhaustive()
    }
}

impl Archive {
    /// Opens the archive in `config.dir` through the driver `tern` is connected to, at `now`:
    /// repairs what a crash left, then listens for control requests.
    pub fn launch(config: ArchiveConfig, tern: Tern, now: Now) -> Result<Self, ArchiveError> {
        if config.segment_length == 0 || config.segment_length > SEGMENT_LENGTH_MAX {
            return Err(ArchiveError::Refused(format!(
                "segment length {} is not from 1 byte to {SEGMENT_LENGTH_MAX}",
                config.segment_length
            )));
        }
        if config.block_length_max < crate::segment_reader::READ_BUFFER_MIN
            || config.block_length_max > 64 * 1024 * 1024
            || !config.block_length_max.is_multiple_of(32)
        {
            return Err(ArchiveError::Refused(format!(
                "block length {} is not a multiple of 32 from 64 KiB to 64 MiB",
                config.block_length_max
            )));
        }
        #[cfg(target_os = "linux")]
        if config.file_io == FileIo::IoUring {
            tern_engine::file_ring::probe().map_err(|error| {
                ArchiveError::Refused(format!("file io io_uring: this kernel refuses it: {error}"))
            })?;
        }
        std::fs::create_dir_all(&config.dir)
            .map_err(|source| ArchiveError::io(&config.dir, source))?;
        let mut catalog = Catalog::open(&config.dir)?;
        let repairs = segment_files::recover(&config.dir, &mut catalog, now.epoch_ms)?;
        for repair in &repairs {
            tracing::warn!(?repair, "recording repaired");
        }
        let control = tern
            .add_subscription(&config.control_channel, config.control_stream_id)
            .map_err(|error| ArchiveError::Driver(error.to_string()))?;
        let events = tern
            .add_publication(&config.events_channel, config.events_stream_id)
            .map_err(|error| ArchiveError::Driver(error.to_string()))?;
        tracing::info!(dir = %config.dir.display(), control = %config.control_channel, "archive started");
        let (sink, assembled) = std::sync::mpsc::channel();
        let assembler =
            FragmentAssembler::new(Box::new(move |message: &[u8], _: &FragmentHeader| {
                let _ = sink.send(message.to_vec());
            }) as RequestSink);
        Ok(Self {
            config,
            tern,
            catalog,
            control,
            events,
            sessions: Vec::new(),
            recordings: Vec::new(),
            replays: Vec::new(),
            replications: Vec::new(),
            next_replication_id: 1,
            next_session_id: 1,
            next_replay_id: 1,
            reports: Vec::new(),
            assembler,
            assembled,
            progress_sent: Vec::new(),
            event_buffer: Box::new([0u8; 1024]),
            now,
        })
    }

    /// The archive's directory.
    pub fn dir(&self) -> &Path {
        &self.config.dir
    }

    /// The catalog, for reading.
    pub fn catalog(&self) -> &Catalog {
        &self.catalog
    }

    fn poll_control(&mut self) -> usize {
        // One assembler for the archive's life: a request whose fragments arrive across polls
        // is put together, not dropped.
        let assembler = &mut self.assembler;
        self.control.poll(
            |fragment, header| assembler.on_fragment(fragment, header),
            REQUESTS_PER_CYCLE,
        );
        let mut count = 0;
        while let Ok(request) = self.assembled.try_recv() {
            self.on_request(&request);
            count += 1;
        }
        count
    }

    fn session(&mut self, id: i64) -> Option<&mut ControlSession> {
        self.sessions.iter_mut().find(|session| session.id == id)
    }

    /// Answers `correlation_id` on session `id`, if it exists.
    fn respond(
        &mut self,
        id: i64,
        correlation_id: i64,
        result: Result<i64, (ResponseCode, String)>,
    ) {
        let Some(session) = self.session(id) else {
            tracing::debug!(
                control_session_id = id,
                correlation_id,
                "a request for an unknown session"
            );
            return;
        };
        match result {
            Ok(relevant_id) => session.respond(correlation_id, relevant_id, ResponseCode::Ok, ""),
            Err((code, message)) => session.respond(correlation_id, 0, code, &message),
        }
    }

    fn on_request(&mut self, request: &[u8]) {
        let Ok(header) = MessageHeader::decode(request) else {
            tracing::warn!(
                length = request.len(),
                "a control request without a readable header: dropped"
            );
            return;
        };
        if header.schema_id != ARCHIVE_CONTROL.id {
            tracing::warn!(
                schema_id = header.schema_id,
                "a control request of another schema: dropped"
            );
            return;
        }
        if header.template_id == protocol::connect::TEMPLATE_ID {
            self.on_connect(request);
            return;
        }
        // Every other request starts with the session and correlation ids: read them before
        // decoding, so a request that does not decode still gets its typed error.
        let ids = (
            read_i64(request, tern_codec::MESSAGE_HEADER_LENGTH),
            read_i64(request, tern_codec::MESSAGE_HEADER_LENGTH + 8),
        );
        let (Some(session_id), correlation_id) = ids else {
            return;
        };
        let correlation_id = correlation_id.unwrap_or(0);
        if self.session(session_id).is_none() {
            tracing::warn!(
                control_session_id = session_id,
                "a request for an unknown control session: dropped"
            );
            return;
        }
        let result = self.dispatch(header.template_id, request, session_id, correlation_id);
        if let Some(result) = result {
            self.respond(session_id, correlation_id, result);
        }
    }

    /// Carries out a request; `None` when the answer was sent already (listings, close).
    fn dispatch(
        &mut self,
        template_id: u16,
        request: &[u8],
        session_id: i64,
        correlation_id: i64,
    ) -> Option<Result<i64, (ResponseCode, String)>> {
        let malformed = |error: tern_codec::DecodeError| {
            Some(Err((ResponseCode::MalformedRequest, error.to_string())))
        };
        match template_id {
            protocol::close_session::TEMPLATE_ID => {
                if let Some(session) = self.session(session_id) {
                    session.close_after_flush();
                }
                None
            }
            protocol::start_recording::TEMPLATE_ID => {
                match protocol::start_recording::Decoder::decode(request) {
                    Ok(decoded) => {
                        Some(self.start_recording(decoded.channel(), decoded.stream_id(), None))
                    }
                    Err(error) => malformed(error),
                }
            }
            protocol::stop_recording::TEMPLATE_ID => {
                match protocol::stop_recording::Decoder::decode(request) {
                    Ok(decoded) => {
                        Some(self.stop_recording(decoded.channel(), decoded.stream_id()))
                    }
                    Err(error) => malformed(error),
                }
            }
            protocol::extend_recording::TEMPLATE_ID => {
                match protocol::extend_recording::Decoder::decode(request) {
                    Ok(decoded) => Some(self.extend_recording(
                        decoded.recording_id(),
                        decoded.channel(),
                        decoded.stream_id(),
                    )),
                    Err(error) => malformed(error),
                }
            }
            protocol::replay::TEMPLATE_ID => match protocol::replay::Decoder::decode(request) {
                Ok(decoded) => Some(self.start_replay(&decoded, session_id, correlation_id)),
                Err(error) => malformed(error),
            },
            protocol::stop_replay::TEMPLATE_ID => {
                match protocol::stop_replay::Decoder::decode(request) {
                    Ok(decoded) => Some(self.stop_replay(decoded.replay_session_id())),
                    Err(error) => malformed(error),
                }
            }
            protocol::list_recordings::TEMPLATE_ID => {
                match protocol::list_recordings::Decoder::decode(request) {
                    Ok(decoded) => {
                        let filter = (decoded.filtered() != 0)
                            .then(|| (decoded.stream_id(), decoded.channel_fragment().to_owned()));
                        Some(self.list(
                            session_id,
                            correlation_id,
                            decoded.from_recording_id(),
                            decoded.count(),
                            filter.as_ref(),
                        ))
                    }
                    Err(error) => malformed(error),
                }
            }
            protocol::list_recording::TEMPLATE_ID => {
                match protocol::list_recording::Decoder::decode(request) {
                    Ok(decoded) => {
                        Some(self.list_one(session_id, correlation_id, decoded.recording_id()))
                    }
                    Err(error) => malformed(error),
                }
            }
            protocol::recording_request::TEMPLATE_ID => {
                match protocol::recording_request::Decoder::decode(request) {
                    Ok(decoded) => Some(self.on_recording_request(
                        decoded.recording_id(),
                        decoded.operation(),
                        decoded.position(),
                    )),
                    Err(error) => malformed(error),
                }
            }
            protocol::replicate::TEMPLATE_ID => match protocol::replicate::Decoder::decode(request)
            {
                Ok(decoded) => Some(self.start_replication(&decoded, session_id, correlation_id)),
                Err(error) => malformed(error),
            },
            protocol::stop_replication::TEMPLATE_ID => {
                match protocol::stop_replication::Decoder::decode(request) {
                    Ok(decoded) => Some(self.stop_replication(decoded.replication_id())),
                    Err(error) => malformed(error),
                }
            }
            other => Some(Err((
                ResponseCode::MalformedRequest,
                format!("template {other:#06x} is not a request this archive knows"),
            ))),
        }
    }

    fn on_connect(&mut self, request: &[u8]) {
        let decoded = match protocol::connect::Decoder::decode(request) {
            Ok(decoded) => decoded,
            Err(error) => {
                tracing::warn!(%error, "a connect request that does not decode: dropped (no channel to answer on)");
                return;
            }
        };
        if self.sessions.len() >= CONTROL_SESSIONS_MAX + CONNECT_REFUSALS_MAX {
            // Refusals themselves take a publication each while they are sent: past this many
            // at once, connects are dropped unanswered (the client times out).
            tracing::warn!("control sessions at their limit: a connect was dropped");
            return;
        }
        let publication = match self
            .tern
            .add_exclusive_publication(decoded.response_channel(), decoded.response_stream_id())
        {
            Ok(publication) => publication,
            Err(error) => {
                tracing::warn!(%error, channel = decoded.response_channel(), "a client's response channel was refused");
                return;
            }
        };
        let id = self.next_session_id;
        self.next_session_id += 1;
        let mut session = ControlSession::new(id, publication, self.now.nanos);
        let correlation_id = decoded.correlation_id();
        let theirs =
            SemanticVersion::decompose(decoded.version()).unwrap_or(SemanticVersion::new(0, 0, 0));
        if theirs.major != ARCHIVE_CONTROL.version.major {
            session.respond(
                correlation_id,
                0,
                ResponseCode::UnsupportedVersion,
                &format!(
                    "the client speaks archive protocol {theirs}; this archive speaks {}",
                    ARCHIVE_CONTROL.version
                ),
            );
            session.close_after_flush();
        } else if self.sessions.len() >= CONTROL_SESSIONS_MAX {
            session.respond(
                correlation_id,
                0,
                ResponseCode::LimitReached,
                "control sessions are at their limit",
            );
            session.close_after_flush();
        } else {
            session.respond(correlation_id, id, ResponseCode::Ok, "");
        }
        tracing::info!(control_session_id = id, client_version = %theirs, "control session opened");
        self.sessions.push(session);
    }

    fn start_recording(
        &mut self,
        channel: &str,
        stream_id: i32,
        extend: Option<i64>,
    ) -> Result<i64, (ResponseCode, String)> {
        if self
            .recordings
            .iter()
            .any(|recording| recording.channel == channel && recording.stream_id == stream_id)
        {
            return Err((
                ResponseCode::ActiveSubscription,
                format!("{channel} stream {stream_id} is already being recorded"),
            ));
        }
        if self.recordings.len() >= RECORDING_SUBSCRIPTIONS_MAX {
            return Err((
                ResponseCode::LimitReached,
                "recording subscriptions are at their limit".to_owned(),
            ));
        }
        if channel.len() > crate::catalog::CHANNEL_MAX {
            return Err((
                ResponseCode::InvalidChannel,
                format!(
                    "a recorded channel is at most {} bytes (the catalog's limit), not {}",
                    crate::catalog::CHANNEL_MAX,
                    channel.len()
                ),
            ));
        }
        match tern_engine::channel::ChannelUri::parse(channel) {
            Ok(uri) if !uri.tether => {
                return Err((
                    ResponseCode::InvalidChannel,
                    "tether=false would let the recorder fall behind and lose frames: record a tethered channel".to_owned(),
                ));
            }
            Ok(_) => {}
            Err(error) => return Err((ResponseCode::InvalidChannel, error.to_string())),
        }
        let recording = RecordingSubscription::new(&self.tern, channel, stream_id, extend)
            .map_err(|error| (ResponseCode::InvalidChannel, error.to_string()))?;
        self.recordings.push(recording);
        tracing::info!(channel, stream_id, "recording subscription added");
        Ok(i64::try_from(self.recordings.len()).unwrap_or(0))
    }

    fn extend_recording(
        &mut self,
        recording_id: i64,
        channel: &str,
        stream_id: i32,
    ) -> Result<i64, (ResponseCode, String)> {
        let descriptor = self.usable(recording_id)?;
        if descriptor.is_active() {
            return Err((
                ResponseCode::ActiveRecording,
                format!("recording {recording_id} is active"),
            ));
        }
        self.start_recording(channel, stream_id, Some(recording_id))
    }

    fn stop_recording(
        &mut self,
        channel: &str,
        stream_id: i32,
    ) -> Result<i64, (ResponseCode, String)> {
        let Some(index) = self
            .recordings
            .iter()
            .position(|recording| recording.channel == channel && recording.stream_id == stream_id)
        else {
            return Err((
                ResponseCode::UnknownSubscription,
                format!("{channel} stream {stream_id} is not being recorded"),
            ));
        };
        let recording = self.recordings.swap_remove(index);
        let mut context = recorder_context(
            &self.tern,
            &mut self.catalog,
            &self.config,
            self.now.epoch_ms,
        );
        recording.stop(&mut context, &mut self.reports);
        Ok(0)
    }

    /// A recording that exists and may be used: not deleted, not marked invalid.
    fn usable(&self, recording_id: i64) -> Result<RecordingDescriptor, (ResponseCode, String)> {
        let descriptor = self
            .catalog
            .descriptor(recording_id)
            .map_err(|error| match error {
                CatalogError::UnknownRecording { .. } => {
                    (ResponseCode::UnknownRecording, error.to_string())
                }
                other => (ResponseCode::Error, other.to_string()),
            })?;
        match descriptor.state {
            RecordingState::Valid => Ok(descriptor),
            RecordingState::Invalid => Err((
                ResponseCode::InvalidRecording,
                format!("recording {recording_id} is marked invalid"),
            )),
            _ => Err((
                ResponseCode::UnknownRecording,
                format!("recording {recording_id} is deleted"),
            )),
        }
    }

    fn in_use(&self, recording_id: i64) -> bool {
        self.replays
            .iter()
            .any(|replay| replay.recording_id == recording_id && !replay.is_finished())
    }

    fn start_replay(
        &mut self,
        request: &protocol::replay::Decoder<'_>,
        session_id: i64,
        correlation_id: i64,
    ) -> Result<i64, (ResponseCode, String)> {
        let recording_id = request.recording_id();
        let descriptor = self.usable(recording_id)?;
        if self.replays.len() >= REPLAYS_MAX {
            return Err((
                ResponseCode::LimitReached,
                "replays are at their limit".to_owned(),
            ));
        }
        let (stop, active) = (descriptor.stop_position, descriptor.is_active());
        let position = match request.position() {
            -1 => descriptor.start_position,
            position => position,
        };
        if position < descriptor.start_position || position > stop || position % 32 != 0 {
            return Err((
                ResponseCode::InvalidPosition,
                format!(
                    "position {position} is not a frame boundary in [{}, {stop}]",
                    descriptor.start_position
                ),
            ));
        }
        let limit = match request.length() {
            protocol::REPLAY_FOLLOW_LIVE if active => i64::MAX,
            protocol::REPLAY_FOLLOW_LIVE | -1 => stop,
            length if length < 0 => {
                return Err((
                    ResponseCode::InvalidPosition,
                    format!("length {length} is negative"),
                ));
            }
            length => position.saturating_add(length),
        };
        let limit = if active { limit } else { limit.min(stop) };
        let reader = SegmentReader::new(
            &self.config.dir,
            &descriptor,
            position,
            self.config
                .block_length_max
                .max(crate::segment_reader::READ_BUFFER_MIN),
        )
        .map_err(|error| (ResponseCode::Error, error.to_string()))?;
        if position < stop {
            check_frame_at(&self.config.dir, &descriptor, position)?;
        }
        let term_length = i64::from(descriptor.term_length);
        let term_id = descriptor
            .initial_term_id
            .wrapping_add(i32::try_from(position / term_length).unwrap_or(0));
        let placement = format!(
            "init-term-id={}|term-id={term_id}|term-offset={}|term-length={}|mtu={}",
            descriptor.initial_term_id,
            position % term_length,
            descriptor.term_length,
            descriptor.mtu
        );
        let channel = request.replay_channel();
        let separator = if channel.contains('?') { '|' } else { '?' };
        let placed = format!("{channel}{separator}{placement}");
        let publication = self
            .tern
            .add_exclusive_publication(&placed, request.replay_stream_id())
            .map_err(|error| (ResponseCode::InvalidChannel, error.to_string()))?;
        let replay_session_id = self.next_replay_id;
        self.next_replay_id += 1;
        self.replays.push(ReplaySession::new(
            (replay_session_id, session_id, correlation_id, recording_id),
            reader,
            publication,
            limit,
            self.now.nanos,
        ));
        tracing::info!(
            replay_session_id,
            recording_id,
            position,
            limit,
            "replay started"
        );
        Ok(replay_session_id)
    }

    fn start_replication(
        &mut self,
        request: &protocol::replicate::Decoder<'_>,
        session_id: i64,
        correlation_id: i64,
    ) -> Result<i64, (ResponseCode, String)> {
        let destination = match request.destination_recording_id() {
            -1 => None,
            recording_id => {
                let descriptor = self.usable(recording_id)?;
                if descriptor.is_active() {
                    return Err((
                        ResponseCode::ActiveRecording,
                        format!("recording {recording_id} is active"),
                    ));
                }
                Some(recording_id)
            }
        };
        if self.replications.len() >= REPLAYS_MAX {
            return Err((
                ResponseCode::LimitReached,
                "replications are at their limit".to_owned(),
            ));
        }
        let id = self.next_replication_id;
        self.next_replication_id += 1;
        let source = crate::client::ArchiveClientConfig {
            control_channel: request.source_control_channel().to_owned(),
            control_stream_id: request.source_control_stream_id(),
            response_channel: self.config.replication_response_channel.clone(),
            response_stream_id: protocol::RESPONSE_STREAM_ID_DEFAULT,
            timeout: crate::replication::STEP_TIMEOUT,
        };
        let replication = ReplicationSession::new(
            (id, session_id, correlation_id),
            &self.tern,
            ReplicationRequest {
                source_recording_id: request.source_recording_id(),
                destination_recording_id: destination,
                source,
                replication_channel: request.replication_channel().to_owned(),
                follow: request.follow() != 0,
            },
            self.now.nanos,
        );
        tracing::info!(
            replication_id = id,
            source = request.source_control_channel(),
            "replication started"
        );
        self.replications.push(replication);
        Ok(id)
    }

    fn stop_replication(&mut self, replication_id: i64) -> Result<i64, (ResponseCode, String)> {
        let Some(replication) = self
            .replications
            .iter_mut()
            .find(|replication| replication.id == replication_id)
        else {
            return Err((
                ResponseCode::Error,
                format!("no replication {replication_id}"),
            ));
        };
        replication.stop();
        Ok(0)
    }

    /// Moves each replication on; starts the recordings they ask for; retires finished ones.
    fn replicate(&mut self) -> usize {
        let mut work = 0;
        let now_ns = self.now.nanos;
        for index in 0..self.replications.len() {
            let action = self.replications[index].do_work(now_ns);
            if let ReplicationAction::Record {
                channel,
                stream_id,
                extend,
                identity,
            } = action
            {
                work += 1;
                match self.record_replication(index, &channel, stream_id, extend, identity) {
                    Ok(()) => self.replications[index].on_recording_ready(now_ns),
                    Err(reason) => self.replications[index].fail_with(reason),
                }
            }
            // The copy's recording started: tell the requester which it is.
            let replication = &self.replications[index];
            let recording = self
                .recordings
                .iter()
                .find(|recording| recording.carries(replication));
            let started = recording.and_then(RecordingSubscription::last_started);
            let ended = recording.is_some_and(|recording| {
                recording.started() > 0 && recording.sessions().is_empty()
            });
            if replication.is_copying()
                && replication.copy().is_none()
                && let Some(recording_id) = started
            {
                let target = self.replications[index].on_copy_started(recording_id);
                let replication = &self.replications[index];
                let (session, correlation) =
                    (replication.control_session_id, replication.correlation_id);
                if let Some(control) = self.session(session) {
                    control.signal(
                        correlation,
                        recording_id,
                        target,
                        RecordingSignal::Replicate,
                    );
                }
                work += 1;
            }
            // Copying ends when the copy's recording has started and stopped.
            if ended
                && self.replications[index].is_copying()
                && let Some(recording_id) = self.replications[index].copy()
            {
                let stop = self
                    .catalog
                    .extent(recording_id)
                    .map_or(-1, |(stop, _)| stop);
                self.replications[index].on_recording_stopped(stop);
                work += 1;
            }
        }
        let mut index = 0;
        while index < self.replications.len() {
            if !self.replications[index].is_finished() {
                index += 1;
                continue;
            }
            let replication = self.replications.swap_remove(index);
            if replication.failure().is_none()
                && let Some(recording_id) = replication.copy()
            {
                let stop = self
                    .catalog
                    .extent(recording_id)
                    .map_or(-1, |(stop, _)| stop);
                if let Some(control) = self.session(replication.control_session_id) {
                    control.signal(
                        replication.correlation_id,
                        recording_id,
                        stop,
                        RecordingSignal::ReplicateEnd,
                    );
                }
            }
            if let Some(reason) = replication.failure() {
                let message = format!("replication {} failed: {reason}", replication.id);
                if let Some(control) = self.session(replication.control_session_id) {
                    control.respond(
                        replication.correlation_id,
                        replication.id,
                        ResponseCode::Error,
                        &message,
                    );
                }
            }
            // Its recording subscription goes with it: nothing else is recorded from there.
            if let Some(position) = self
                .recordings
                .iter()
                .position(|recording| recording.carries(&replication))
            {
                let recording = self.recordings.swap_remove(position);
                let mut context = recorder_context(
                    &self.tern,
                    &mut self.catalog,
                    &self.config,
                    self.now.epoch_ms,
                );
                recording.stop(&mut context, &mut self.reports);
            }
            work += 1;
        }
        work
    }

    fn record_replication(
        &mut self,
        index: usize,
        channel: &str,
        stream_id: i32,
        extend: Option<i64>,
        identity: (String, i32),
    ) -> Result<(), String> {
        if let Some(recording_id) = extend {
            let descriptor = self.usable(recording_id).map_err(|(_, message)| message)?;
            let source = self.replications[index]
                .source()
                .ok_or("no source description")?;
            let fits = source.start_position <= descriptor.stop_position
                && (descriptor.stop_position <= source.stop_position || source.stop_timestamp < 0)
                && source.initial_term_id == descriptor.initial_term_id
                && source.term_length == descriptor.term_length
                && source.stream_id == descriptor.stream_id;
            if !fits {
                return Err(format!(
                    "recording {recording_id} (stop {}, term length {}, initial term {}) is not a prefix of source recording {} ({}..{})",
                    descriptor.stop_position,
                    descriptor.term_length,
                    descriptor.initial_term_id,
                    source.recording_id,
                    source.start_position,
                    source.stop_position
                ));
            }
            self.replications[index].start_from(descriptor.stop_position);
        }
        let recording = RecordingSubscription::for_replication(
            &self.tern,
            (channel, stream_id),
            extend,
            identity,
        )
        .map_err(|error| error.to_string())?;
        self.recordings.push(recording);
        Ok(())
    }

    fn stop_replay(&mut self, replay_session_id: i64) -> Result<i64, (ResponseCode, String)> {
        match self
            .replays
            .iter_mut()
            .find(|replay| replay.replay_session_id == replay_session_id)
        {
            Some(replay) => {
                replay.abort("stopped by request");
                Ok(0)
            }
            None => Err((
                ResponseCode::UnknownReplay,
                format!("no replay {replay_session_id}"),
            )),
        }
    }

    fn list(
        &mut self,
        session_id: i64,
        correlation_id: i64,
        from: i64,
        count: i32,
        filter: Option<&(i32, String)>,
    ) -> Result<i64, (ResponseCode, String)> {
        let wanted = count.clamp(0, LIST_COUNT_MAX);
        let mut sent = 0;
        let mut messages = Vec::new();
        for recording_id in from.max(0)..self.catalog.next_recording_id() {
            if sent >= wanted {
                break;
            }
            let Ok(descriptor) = self.catalog.descriptor(recording_id) else {
                continue;
            };
            if descriptor.state == RecordingState::Deleted {
                continue;
            }
            if let Some((stream_id, fragment)) = filter
                && (descriptor.stream_id != *stream_id
                    || !descriptor.channel.contains(fragment.as_str()))
            {
                continue;
            }
            messages.push(encode_descriptor(session_id, correlation_id, &descriptor));
            sent += 1;
        }
        if let Some(session) = self.session(session_id) {
            for message in messages {
                session.send(message);
            }
        }
        Ok(i64::from(sent))
    }

    fn list_one(
        &mut self,
        session_id: i64,
        correlation_id: i64,
        recording_id: i64,
    ) -> Result<i64, (ResponseCode, String)> {
        let descriptor = self
            .catalog
            .descriptor(recording_id)
            .map_err(|error| match error {
                CatalogError::UnknownRecording { .. } => {
                    (ResponseCode::UnknownRecording, error.to_string())
                }
                other => (ResponseCode::Error, other.to_string()),
            })?;
        let message = encode_descriptor(session_id, correlation_id, &descriptor);
        if let Some(session) = self.session(session_id) {
            session.send(message);
        }
        Ok(1)
    }

    fn on_recording_request(
        &mut self,
        recording_id: i64,
        operation: RecordingOperation,
        position: i64,
    ) -> Result<i64, (ResponseCode, String)> {
        let active = self.recordings.iter().find_map(|recording| {
            recording
                .sessions()
                .iter()
                .find(|session| session.recording_id == recording_id)
                .map(|session| session.position())
        });
        match operation {
            RecordingOperation::RecordingPosition => {
                self.catalog
                    .descriptor(recording_id)
                    .map_err(|error| (ResponseCode::UnknownRecording, error.to_string()))?;
                Ok(active.unwrap_or(crate::catalog::NULL_VALUE))
            }
            RecordingOperation::StopPosition => {
                let descriptor = self
                    .catalog
                    .descriptor(recording_id)
                    .map_err(|error| (ResponseCode::UnknownRecording, error.to_string()))?;
                Ok(if descriptor.is_active() {
                    crate::catalog::NULL_VALUE
                } else {
                    descriptor.stop_position
                })
            }
            RecordingOperation::StartPosition => {
                let descriptor = self
                    .catalog
                    .descriptor(recording_id)
                    .map_err(|error| (ResponseCode::UnknownRecording, error.to_string()))?;
                Ok(descriptor.start_position)
            }
            RecordingOperation::StopRecording => {
                let mut context = recorder_context(
                    &self.tern,
                    &mut self.catalog,
                    &self.config,
                    self.now.epoch_ms,
                );
                let stopped = self.recordings.iter_mut().any(|recording| {
                    recording.stop_recording(recording_id, &mut context, &mut self.reports)
                });
                if stopped {
                    Ok(0)
                } else {
                    Err((
                        ResponseCode::UnknownRecording,
                        format!("recording {recording_id} is not active"),
                    ))
                }
            }
            RecordingOperation::Truncate => self.truncate(recording_id, position, active.is_some()),
            RecordingOperation::Purge => self.purge(recording_id, active.is_some()),
            RecordingOperation::DetachSegments => self.detach(recording_id, position, false),
            RecordingOperation::PurgeSegments => self.detach(recording_id, position, true),
            RecordingOperation::DeleteDetachedSegments => {
                let descriptor = self
                    .catalog
                    .descriptor(recording_id)
                    .map_err(|error| (ResponseCode::UnknownRecording, error.to_string()))?;
                let deleted = segment_files::delete_segments_below(
                    &self.config.dir,
                    &descriptor,
                    descriptor.start_position,
                )
                .map_err(|error| (ResponseCode::StorageError, error.to_string()))?;
                Ok(i64::try_from(deleted).unwrap_or(0))
            }
            RecordingOperation::AttachSegments => self.attach(recording_id),
            RecordingOperation::Unknown(value) => Err((
                ResponseCode::MalformedRequest,
                format!("recording operation {value} is unknown"),
            )),
        }
    }

    /// A recording that may be cut or removed: it exists, is stopped, and no replay reads it.
    fn stopped_and_unused(
        &self,
        recording_id: i64,
        active: bool,
    ) -> Result<RecordingDescriptor, (ResponseCode, String)> {
        let descriptor = self
            .catalog
            .descriptor(recording_id)
            .map_err(|error| (ResponseCode::UnknownRecording, error.to_string()))?;
        if active || descriptor.is_active() {
            return Err((
                ResponseCode::ActiveRecording,
                format!("recording {recording_id} is active: stop it first"),
            ));
        }
        if self.in_use(recording_id) {
            return Err((
                ResponseCode::InUse,
                format!("recording {recording_id} is being replayed"),
            ));
        }
        Ok(descriptor)
    }

    fn truncate(
        &mut self,
        recording_id: i64,
        position: i64,
        active: bool,
    ) -> Result<i64, (ResponseCode, String)> {
        let descriptor = self.stopped_and_unused(recording_id, active)?;
        if position < descriptor.start_position
            || position > descriptor.stop_position
            || position % 32 != 0
        {
            return Err((
                ResponseCode::InvalidPosition,
                format!(
                    "position {position} is not in [{}, {}]",
                    descriptor.start_position, descriptor.stop_position
                ),
            ));
        }
        if position < descriptor.stop_position {
            check_frame_at(&self.config.dir, &descriptor, position)?;
        }
        segment_files::cut_at(&self.config.dir, &descriptor, position)
            .map_err(|error| (ResponseCode::StorageError, error.to_string()))?;
        self.catalog
            .stop(recording_id, position, descriptor.stop_timestamp)
            .map_err(|error| (ResponseCode::Error, error.to_string()))?;
        tracing::info!(recording_id, position, "recording truncated");
        Ok(position)
    }

    fn purge(&mut self, recording_id: i64, active: bool) -> Result<i64, (ResponseCode, String)> {
        self.stopped_and_unused(recording_id, active)?;
        // Deleted in the catalog first: a crash between the two leaves files of a deleted
        // recording (found by `verify`), never a valid recording without its files.
        self.catalog
            .set_state(recording_id, RecordingState::Deleted)
            .map_err(|error| (ResponseCode::Error, error.to_string()))?;
        let deleted = segment_files::delete_all_segments(&self.config.dir, recording_id)
            .map_err(|error| (ResponseCode::StorageError, error.to_string()))?;
        tracing::info!(recording_id, segments = deleted, "recording purged");
        Ok(i64::try_from(deleted).unwrap_or(0))
    }

    fn detach(
        &mut self,
        recording_id: i64,
        position: i64,
        delete: bool,
    ) -> Result<i64, (ResponseCode, String)> {
        let descriptor = self.usable(recording_id)?;
        let layout = segment_files::layout_of(&descriptor)
            .map_err(|error| (ResponseCode::Error, error.to_string()))?;
        let stop_base = layout.base_of(descriptor.stop_position.max(descriptor.start_position));
        if position <= descriptor.start_position
            || layout.base_of(position) != position
            || position > stop_base
        {
            return Err((
                ResponseCode::InvalidPosition,
                format!(
                    "position {position} is not a segment boundary above the start {} and at or below the last segment's {stop_base}",
                    descriptor.start_position
                ),
            ));
        }
        // A replay reading below the new start would lose its files.
        if self.replays.iter().any(|replay| {
            replay.recording_id == recording_id
                && !replay.is_finished()
                && replay.position() < position
        }) {
            return Err((
                ResponseCode::InUse,
                format!("a replay of recording {recording_id} reads below {position}"),
            ));
        }
        self.catalog
            .set_start_position(recording_id, position)
            .map_err(|error| (ResponseCode::Error, error.to_string()))?;
        if delete {
            let deleted =
                segment_files::delete_segments_below(&self.config.dir, &descriptor, position)
                    .map_err(|error| (ResponseCode::StorageError, error.to_string()))?;
            tracing::info!(
                recording_id,
                position,
                segments = deleted,
                "segments purged"
            );
        } else {
            tracing::info!(recording_id, position, "segments detached");
        }
        Ok(position)
    }

    fn attach(&mut self, recording_id: i64) -> Result<i64, (ResponseCode, String)> {
        let descriptor = self.usable(recording_id)?;
        let layout = segment_files::layout_of(&descriptor)
            .map_err(|error| (ResponseCode::Error, error.to_string()))?;
        let bases = segment_files::list_segments(&self.config.dir, recording_id)
            .map_err(|error| (ResponseCode::StorageError, error.to_string()))?;
        let mut start = descriptor.start_position;
        let length = i64::from(descriptor.segment_length);
        // Walk down from the start while the segment below is there.
        while start > descriptor.origin_position {
            let below = layout.base_of(start - 1);
            if !bases.contains(&below) {
                break;
            }
            start = below.max(descriptor.origin_position);
            debug_assert!(below + length >= start);
        }
        if start != descriptor.start_position {
            self.catalog
                .set_start_position(recording_id, start)
                .map_err(|error| (ResponseCode::Error, error.to_string()))?;
            tracing::info!(recording_id, start, "segments attached");
        }
        Ok(start)
    }

    fn record(&mut self) -> usize {
        let mut context = recorder_context(
            &self.tern,
            &mut self.catalog,
            &self.config,
            self.now.epoch_ms,
        );
        let mut work = 0;
        for recording in &mut self.recordings {
            work += recording.do_work(&mut context, &mut self.reports);
        }
        work
    }

    fn replay(&mut self) -> usize {
        let mut work = 0;
        for replay in &mut self.replays {
            let recorded = match self.catalog.extent(replay.recording_id) {
                Ok((position, active)) => RecordedExtent { position, active },
                Err(error) => {
                    replay.abort(&error.to_string());
                    continue;
                }
            };
            work += replay.do_work(self.now.nanos, recorded);
        }
        let mut index = 0;
        while index < self.replays.len() {
            if self.replays[index].is_finished() {
                let replay = self.replays.swap_remove(index);
                if let ReplayState::Failed(reason) = replay.state() {
                    let (session, correlation) = (replay.control_session_id, replay.correlation_id);
                    let message = format!(
                        "replay {} of recording {} ended at {}: {reason}",
                        replay.replay_session_id,
                        replay.recording_id,
                        replay.position()
                    );
                    if let Some(control) = self.session(session) {
                        control.respond(
                            correlation,
                            replay.replay_session_id,
                            ResponseCode::Error,
                            &message,
                        );
                    }
                }
                tracing::info!(
                    replay_session_id = replay.replay_session_id,
                    position = replay.position(),
                    "replay ended"
                );
            } else {
                index += 1;
            }
        }
        work
    }

    fn publish_events(&mut self) -> usize {
        let mut work = 0;
        for report in std::mem::take(&mut self.reports) {
            let (kind, recording_id, position) = match report {
                RecordingReport::Started { recording_id } => {
                    (RecordingEventKind::Started, recording_id, None)
                }
                RecordingReport::Stopped {
                    recording_id,
                    position,
                } => (RecordingEventKind::Stopped, recording_id, Some(position)),
                RecordingReport::Failed { recording_id, .. } => {
                    self.progress_sent.retain(|(id, _)| *id != recording_id);
                    continue;
                }
            };
            if kind == RecordingEventKind::Stopped {
                self.progress_sent.retain(|(id, _)| *id != recording_id);
            }
            self.publish_event(kind, recording_id, position);
            work += 1;
        }
        // Progress, from each recording's own state: no catalog read, no allocation.
        let now_ns = self.now.nanos;
        let Self {
            recordings,
            progress_sent,
            events,
            event_buffer,
            ..
        } = self;
        for recording in recordings.iter_mut() {
            for session in recording.sessions_mut() {
                let sent = progress_sent
                    .iter_mut()
                    .find(|(id, _)| *id == session.recording_id);
                let last = sent.as_ref().map_or(i64::MIN, |(_, at)| *at);
                if now_ns.saturating_sub(last) < PROGRESS_INTERVAL_NS {
                    continue;
                }
                let Some(position) = session.take_progress() else {
                    continue;
                };
                match sent {
                    Some((_, at)) => *at = now_ns,
                    None => progress_sent.push((session.recording_id, now_ns)),
                }
                let Ok(mut encoder) =
                    protocol::recording_event::Encoder::wrap(&mut event_buffer[..])
                else {
                    continue;
                };
                encoder
                    .kind(RecordingEventKind::Progress)
                    .stream_id(session.stream_id)
                    .recording_id(session.recording_id)
                    .start_position(session.start_position())
                    .position(position)
                    .session_id(session.session_id);
                // Progress carries ids and positions only; the channel came with Started.
                let Ok(encoder) = encoder.channel("") else {
                    continue;
                };
                let Ok(encoder) = encoder.source_identity("") else {
                    continue;
                };
                let length = encoder.finish();
                let _ = events.offer(&event_buffer[..length]);
                work += 1;
            }
        }
        work
    }

    fn publish_event(
        &mut self,
        kind: RecordingEventKind,
        recording_id: i64,
        position: Option<i64>,
    ) {
        let Ok(descriptor) = self.catalog.descriptor(recording_id) else {
            return;
        };
        let mut buf = vec![0u8; 1024];
        let Ok(mut encoder) = protocol::recording_event::Encoder::wrap(&mut buf) else {
            return;
        };
        encoder
            .kind(kind)
            .stream_id(descriptor.stream_id)
            .recording_id(recording_id)
            .start_position(descriptor.start_position)
            .position(position.unwrap_or(descriptor.start_position))
            .session_id(descriptor.session_id);
        let Ok(encoder) = encoder.channel(&descriptor.channel) else {
            return;
        };
        let Ok(encoder) = encoder.source_identity(&descriptor.source_identity) else {
            return;
        };
        let length = encoder.finish();
        // Nobody listening, or a listener that is behind: events are a courtesy, not a
        // record (the catalog is); a dropped one is counted in the log only.
        if !self.events.offer(&buf[..length]).is_ok() {
            tracing::trace!(recording_id, ?kind, "a recording event was not taken");
        }
    }

    fn maintain_sessions(&mut self) -> usize {
        let mut work = 0;
        let now_ns = self.now.nanos;
        for session in &mut self.sessions {
            work += session.flush();
        }
        let before = self.sessions.len();
        self.sessions.retain_mut(|session| {
            let done = session.is_done(now_ns);
            if done {
                tracing::info!(control_session_id = session.id, "control session closed");
            }
            !done
        });
        work + before - self.sessions.len()
    }

    /// Stops every recording and replay (the archive is closing).
    fn stop_all(&mut self) {
        let mut context = recorder_context(
            &self.tern,
            &mut self.catalog,
            &self.config,
            self.now.epoch_ms,
        );
        for recording in self.recordings.drain(..) {
            recording.stop(&mut context, &mut self.reports);
        }
        for replay in &mut self.replays {
            replay.abort("the archive is closing");
        }
        self.replays.clear();
        if let Err(error) = self.catalog.flush() {
            tracing::error!(%error, "the catalog did not sync at close");
        }
    }
}

impl Agent for Archive {
    fn do_work(&mut self, now: Now) -> usize {
        self.now = now;
        // A client whose conductor runs on the archive's thread is run here.
        let mut work = if self.tern.conductor_mode() == ConductorMode::Invoker {
            self.tern.do_work()
        } else {
            0
        };
        work += self.poll_control();
        work += self.record();
        work += self.replay();
        work += self.replicate();
        work += self.maintain_sessions();
        work += self.publish_events();
        work
    }

    fn role_name(&self) -> &str {
        "archive"
    }

    fn on_close(&mut self) {
        self.stop_all();
        tracing::info!(dir = %self.config.dir.display(), "archive stopped");
    }
}

/// What the recorder needs, from the archive's parts (so that callers can borrow the rest).
fn recorder_context<'a>(
    tern: &'a Tern,
    catalog: &'a mut Catalog,
    config: &'a ArchiveConfig,
    now_ms: i64,
) -> RecorderContext<'a> {
    RecorderContext {
        tern,
        catalog,
        dir: &config.dir,
        settings: RecorderSettings {
            segment_length: config.segment_length,
            checksums: config.checksums,
            durability: config.durability,
            block_length_max: config.block_length_max,
            bytes_per_cycle_max: 4 * config.block_length_max,
            file_io: config.file_io,
        },
        now_ms,
    }
}

/// Checks that a frame starts at `position` (its header names it): truncation and replay
/// start only on frame boundaries.
fn check_frame_at(
    dir: &Path,
    descriptor: &RecordingDescriptor,
    position: i64,
) -> Result<(), (ResponseCode, String)> {
    match segment_files::frame_starts_at(dir, descriptor, position) {
        Ok(true) => Ok(()),
        Ok(false) => Err((
            ResponseCode::InvalidPosition,
            format!(
                "no frame starts at position {position} of recording {}",
                descriptor.recording_id
            ),
        )),
        Err(error) => Err((ResponseCode::Error, error.to_string())),
    }
}

fn encode_descriptor(
    session_id: i64,
    correlation_id: i64,
    descriptor: &RecordingDescriptor,
) -> Vec<u8> {
    let mut buf = vec![0u8; 1024];
    let length = (|| {
        let mut encoder = protocol::recording_descriptor::Encoder::wrap(&mut buf).ok()?;
        encoder
            .control_session_id(session_id)
            .correlation_id(correlation_id)
            .recording_id(descriptor.recording_id)
            .start_position(descriptor.start_position)
            .stop_position(descriptor.stop_position)
            .start_timestamp(descriptor.start_timestamp)
            .stop_timestamp(descriptor.stop_timestamp)
            .initial_term_id(descriptor.initial_term_id)
            .term_length(descriptor.term_length)
            .mtu(descriptor.mtu)
            .segment_length(descriptor.segment_length)
            .session_id(descriptor.session_id)
            .stream_id(descriptor.stream_id)
            .state(descriptor.state.to_wire());
        Some(
            encoder
                .channel(&descriptor.channel)
                .ok()?
                .source_identity(&descriptor.source_identity)
                .ok()?
                .finish(),
        )
    })()
    .unwrap_or(0);
    buf.truncate(length);
    buf
}

fn read_i64(bytes: &[u8], offset: usize) -> Option<i64> {
    bytes
        .get(offset..offset + 8)
        .map(|field| i64::from_le_bytes(field.try_into().expect("8 bytes")))
}
