//! The archive's control protocol: requests a client sends on the archive's control stream,
//! the responses the archive sends back on the client's response stream, and the recording
//! events it publishes for anyone who listens.
//!
//! Every message carries a tern message header (schema [`ARCHIVE_CONTROL`], a template id with
//! its unknown-message policy, a block length and a semantic version). A client says which
//! protocol version it speaks when it connects; a different major is refused with
//! [`ResponseCode::UnsupportedVersion`] naming both. Every request after `connect` names its
//! control session and a correlation id, and gets exactly one [`control_response`] with that
//! correlation id (listings first send one [`recording_descriptor`] per recording found). A
//! request the archive cannot decode, or of a template it does not know, is answered with a
//! typed error when its header can be read at all; the archive keeps serving everyone else.
//!
//! Streams, by default: control 10, responses (chosen by the client) 20, events 30.

use tern_codec::{Schema, SemanticVersion};

/// The control protocol's schema and version.
pub const ARCHIVE_CONTROL: Schema = Schema::new("archive", 31, SemanticVersion::new(1, 0, 0));

/// The default stream of control requests.
pub const CONTROL_STREAM_ID_DEFAULT: i32 = 10;
/// The default stream a client asks responses on.
pub const RESPONSE_STREAM_ID_DEFAULT: i32 = 20;
/// The default stream of recording events.
pub const EVENTS_STREAM_ID_DEFAULT: i32 = 30;
/// The longest channel a request may carry.
pub const CHANNEL_MAX: usize = 1024;
/// A replay length that follows a live recording until it stops.
pub const REPLAY_FOLLOW_LIVE: i64 = i64::MAX;

tern_codec::enumeration! {
    /// What a response says.
    pub enum ResponseCode: i32 {
        /// Done; `relevant_id` carries the result (a session id, a position, a count).
        Ok = 0,
        /// Anything else: the message says what.
        Error = 1,
        /// No recording with that id.
        UnknownRecording = 2,
        /// No control session with that id.
        UnknownSession = 3,
        /// No replay with that id.
        UnknownReplay = 4,
        /// No recording of that channel and stream.
        UnknownSubscription = 5,
        /// The channel is already being recorded.
        ActiveSubscription = 6,
        /// The recording is active: stop it first.
        ActiveRecording = 7,
        /// A replay or replication reads what the request would remove.
        InUse = 8,
        /// A position outside what is recorded, or off the frame alignment.
        InvalidPosition = 9,
        /// A channel the archive or driver refused.
        InvalidChannel = 10,
        /// The client speaks another major version.
        UnsupportedVersion = 11,
        /// The request could not be decoded, or its template is unknown.
        MalformedRequest = 12,
        /// A limit was reached (sessions, recordings, replays).
        LimitReached = 13,
        /// The recording is marked invalid: mark it valid before using it.
        InvalidRecording = 14,
        /// The file system refused (full disk, permissions).
        StorageError = 15,
    }
}

tern_codec::enumeration! {
    /// Where a stream to record comes from.
    pub enum SourceLocation: u8 {
        /// A publication on this machine's driver.
        Local = 0,
        /// A publication elsewhere, received over UDP.
        Remote = 1,
    }
}

tern_codec::message! {
    /// Opens a control session: the archive answers on `response_channel`.
    pub mod connect (schema = ARCHIVE_CONTROL, template = 2, policy = Reject) {
        block {
            /// Echoed in the response.
            correlation_id @ 0 since 0: i64,
            /// The stream to answer on.
            response_stream_id @ 8 since 0: i32,
            /// The protocol version the client speaks, composed.
            version @ 12 since 0: u32,
        }
        groups {}
        var_data {
            /// The channel to answer on.
            response_channel (max = 1024) since 0: str,
        }
    }
}

tern_codec::message! {
    /// Closes a control session.
    pub mod close_session (schema = ARCHIVE_CONTROL, template = 3, policy = Reject) {
        block {
            /// The session.
            control_session_id @ 0 since 0: i64,
        }
        groups {}
        var_data {}
    }
}

tern_codec::message! {
    /// Starts recording every publication of a channel and stream.
    pub mod start_recording (schema = ARCHIVE_CONTROL, template = 4, policy = Reject) {
        block {
            /// The session.
            control_session_id @ 0 since 0: i64,
            /// Echoed in the response.
            correlation_id @ 8 since 0: i64,
            /// The stream.
            stream_id @ 16 since 0: i32,
            /// Where its publications are.
            source_location @ 20 since 0: SourceLocation,
        }
        groups {}
        var_data {
            /// The channel.
            channel (max = 1024) since 0: str,
        }
    }
}

tern_codec::message! {
    /// Stops recording a channel and stream (every recording of it).
    pub mod stop_recording (schema = ARCHIVE_CONTROL, template = 5, policy = Reject) {
        block {
            /// The session.
            control_session_id @ 0 since 0: i64,
            /// Echoed in the response.
            correlation_id @ 8 since 0: i64,
            /// The stream.
            stream_id @ 16 since 0: i32,
        }
        groups {}
        var_data {
            /// The channel, as it was given to start recording.
            channel (max = 1024) since 0: str,
        }
    }
}

tern_codec::message! {
    /// Replays a recording from a position, for a length (or following it while it is live),
    /// onto a channel and stream.
    pub mod replay (schema = ARCHIVE_CONTROL, template = 6, policy = Reject) {
        block {
            /// The session.
            control_session_id @ 0 since 0: i64,
            /// Echoed in the response.
            correlation_id @ 8 since 0: i64,
            /// The recording.
            recording_id @ 16 since 0: i64,
            /// Where to start; -1 for the recording's start.
            position @ 24 since 0: i64,
            /// How many bytes; [`REPLAY_FOLLOW_LIVE`] to follow a live recording until it stops,
            /// -1 for everything recorded now.
            length @ 32 since 0: i64,
            /// The stream to replay on.
            replay_stream_id @ 40 since 0: i32,
        }
        groups {}
        var_data {
            /// The channel to replay on.
            replay_channel (max = 1024) since 0: str,
        }
    }
}

tern_codec::message! {
    /// Stops a replay.
    pub mod stop_replay (schema = ARCHIVE_CONTROL, template = 7, policy = Reject) {
        block {
            /// The session.
            control_session_id @ 0 since 0: i64,
            /// Echoed in the response.
            correlation_id @ 8 since 0: i64,
            /// The replay.
            replay_session_id @ 16 since 0: i64,
        }
        groups {}
        var_data {}
    }
}

tern_codec::message! {
    /// Lists recordings: `count` from `from_recording_id` (deleted ones skipped), optionally
    /// only those of a stream whose channel contains `channel_fragment`.
    pub mod list_recordings (schema = ARCHIVE_CONTROL, template = 8, policy = Reject) {
        block {
            /// The session.
            control_session_id @ 0 since 0: i64,
            /// Echoed in the response and on each descriptor.
            correlation_id @ 8 since 0: i64,
            /// The first id to look at.
            from_recording_id @ 16 since 0: i64,
            /// The most descriptors to send (at most 1000).
            count @ 24 since 0: i32,
            /// The stream, when filtered.
            stream_id @ 28 since 0: i32,
            /// 1: only `stream_id` and `channel_fragment`; 0: all.
            filtered @ 32 since 0: u8,
        }
        groups {}
        var_data {
            /// A part of the channel, when filtered (empty matches all).
            channel_fragment (max = 1024) since 0: str,
        }
    }
}

tern_codec::message! {
    /// Asks one recording's descriptor.
    pub mod list_recording (schema = ARCHIVE_CONTROL, template = 9, policy = Reject) {
        block {
            /// The session.
            control_session_id @ 0 since 0: i64,
            /// Echoed in the response.
            correlation_id @ 8 since 0: i64,
            /// The recording.
            recording_id @ 16 since 0: i64,
        }
        groups {}
        var_data {}
    }
}

tern_codec::message! {
    /// Asks a recording's position (active recordings), its stop position, or other
    /// one-number facts about a recording; and carries the operations on one recording.
    pub mod recording_request (schema = ARCHIVE_CONTROL, template = 10, policy = Reject) {
        block {
            /// The session.
            control_session_id @ 0 since 0: i64,
            /// Echoed in the response.
            correlation_id @ 8 since 0: i64,
            /// The recording.
            recording_id @ 16 since 0: i64,
            /// A position the operation takes (truncate, detach, purge segments).
            position @ 24 since 0: i64,
            /// What to do.
            operation @ 32 since 0: RecordingOperation,
        }
        groups {}
        var_data {}
    }
}

tern_codec::enumeration! {
    /// What a [`recording_request`] asks.
    pub enum RecordingOperation: u8 {
        /// The recording's position now: `relevant_id` is it, -1 when not recording.
        RecordingPosition = 0,
        /// Its stop position.
        StopPosition = 1,
        /// Stop it (by id).
        StopRecording = 2,
        /// Cut it back to `position` (a frame boundary): it must be stopped and unused.
        Truncate = 3,
        /// Delete it and its files: it must be stopped and unused.
        Purge = 4,
        /// Detach the segments wholly below `position`: the start moves up to `position`
        /// (a segment boundary); the files stay until deleted.
        DetachSegments = 5,
        /// Delete the detached segment files.
        DeleteDetachedSegments = 6,
        /// Detach and delete the segments below `position`.
        PurgeSegments = 7,
        /// Attach detached segments found below the start again.
        AttachSegments = 8,
        /// Its start position.
        StartPosition = 9,
    }
}

tern_codec::message! {
    /// Continues a stopped recording from its stop position with the publications of a
    /// channel and stream (they must be placed where the recording stopped).
    pub mod extend_recording (schema = ARCHIVE_CONTROL, template = 11, policy = Reject) {
        block {
            /// The session.
            control_session_id @ 0 since 0: i64,
            /// Echoed in the response.
            correlation_id @ 8 since 0: i64,
            /// The recording.
            recording_id @ 16 since 0: i64,
            /// The stream.
            stream_id @ 24 since 0: i32,
            /// Where its publications are.
            source_location @ 28 since 0: SourceLocation,
        }
        groups {}
        var_data {
            /// The channel.
            channel (max = 1024) since 0: str,
        }
    }
}

tern_codec::message! {
    /// Copies a recording from another archive into this one: a new recording, or an extension
    /// of `destination_recording_id`; following it live when `follow` is 1.
    pub mod replicate (schema = ARCHIVE_CONTROL, template = 12, policy = Reject) {
        block {
            /// The session.
            control_session_id @ 0 since 0: i64,
            /// Echoed in the response.
            correlation_id @ 8 since 0: i64,
            /// The recording in the source archive.
            source_recording_id @ 16 since 0: i64,
            /// The recording here to extend; -1 for a new one.
            destination_recording_id @ 24 since 0: i64,
            /// The source archive's control stream.
            source_control_stream_id @ 32 since 0: i32,
            /// 1: keep replicating while the source recording is live.
            follow @ 36 since 0: u8,
        }
        groups {}
        var_data {
            /// The source archive's control channel.
            source_control_channel (max = 1024) since 0: str,
            /// The channel the source replays onto, for this archive to record.
            replication_channel (max = 1024) since 0: str,
        }
    }
}

tern_codec::message! {
    /// Stops a replication.
    pub mod stop_replication (schema = ARCHIVE_CONTROL, template = 13, policy = Reject) {
        block {
            /// The session.
            control_session_id @ 0 since 0: i64,
            /// Echoed in the response.
            correlation_id @ 8 since 0: i64,
            /// The replication.
            replication_id @ 16 since 0: i64,
        }
        groups {}
        var_data {}
    }
}

tern_codec::message! {
    /// The one answer to a request.
    pub mod control_response (schema = ARCHIVE_CONTROL, template = 1, policy = Reject) {
        block {
            /// The session (0 when the request named none that exists).
            control_session_id @ 0 since 0: i64,
            /// The request's.
            correlation_id @ 8 since 0: i64,
            /// The result: a session id, a position, a count, or a recording id.
            relevant_id @ 16 since 0: i64,
            /// What happened.
            code @ 24 since 0: ResponseCode,
        }
        groups {}
        var_data {
            /// Why, when it failed.
            error_message (max = 1024) since 0: str,
        }
    }
}

tern_codec::message! {
    /// One recording, in answer to a listing.
    pub mod recording_descriptor (schema = ARCHIVE_CONTROL, template = 20, policy = Reject) {
        block {
            /// The session.
            control_session_id @ 0 since 0: i64,
            /// The listing's.
            correlation_id @ 8 since 0: i64,
            /// The recording.
            recording_id @ 16 since 0: i64,
            /// First position held.
            start_position @ 24 since 0: i64,
            /// End of what is recorded (live recordings: as of the listing).
            stop_position @ 32 since 0: i64,
            /// Epoch ms it started.
            start_timestamp @ 40 since 0: i64,
            /// Epoch ms it stopped; -1 while active.
            stop_timestamp @ 48 since 0: i64,
            /// The stream's initial term id.
            initial_term_id @ 56 since 0: i32,
            /// Term length.
            term_length @ 60 since 0: u32,
            /// MTU.
            mtu @ 64 since 0: u32,
            /// Segment length.
            segment_length @ 68 since 0: u32,
            /// Session.
            session_id @ 72 since 0: i32,
            /// Stream.
            stream_id @ 76 since 0: i32,
            /// 1 valid, 2 invalid, 3 deleted.
            state @ 80 since 0: i32,
            /// Reserved, zero.
            reserved @ 84 since 0: u32,
        }
        groups {}
        var_data {
            /// The channel.
            channel (max = 512) since 0: str,
            /// Where the stream came from.
            source_identity (max = 256) since 0: str,
        }
    }
}

tern_codec::enumeration! {
    /// What happened to a recording.
    pub enum RecordingEventKind: u8 {
        /// It started (or an extension started).
        Started = 0,
        /// It moved on: `position` is how far.
        Progress = 1,
        /// It stopped at `position`.
        Stopped = 2,
    }
}

tern_codec::message! {
    /// A recording event, on the events stream. Ignorable: a listener that does not know a
    /// newer event skips it.
    pub mod recording_event (schema = ARCHIVE_CONTROL, template = 30, policy = Ignore) {
        block {
            /// What happened.
            kind @ 0 since 0: RecordingEventKind,
            /// Reserved, zero.
            reserved @ 1 since 0: u8,
            /// Reserved, zero.
            reserved2 @ 2 since 0: u16,
            /// The stream.
            stream_id @ 4 since 0: i32,
            /// The recording.
            recording_id @ 8 since 0: i64,
            /// Its start position.
            start_position @ 16 since 0: i64,
            /// How far it is (started: its start; stopped: its stop).
            position @ 24 since 0: i64,
            /// The publication's session.
            session_id @ 32 since 0: i32,
        }
        groups {}
        var_data {
            /// The channel recorded.
            channel (max = 512) since 0: str,
            /// Where the stream came from.
            source_identity (max = 256) since 0: str,
        }
    }
}

tern_codec::enumeration! {
    /// What happened to a recording a control session asked about, as it happens.
    pub enum RecordingSignal: u8 {
        /// A replication's copy started recording (`position`: where the copy will end, -1
        /// while following a live source).
        Replicate = 0,
        /// A replication's copy is complete (`position`: its stop).
        ReplicateEnd = 1,
    }
}

tern_codec::message! {
    /// A signal about a recording, sent to the control session whose request it concerns, with
    /// that request's correlation id. A client that does not know a signal skips it.
    pub mod recording_signal (schema = ARCHIVE_CONTROL, template = 21, policy = Ignore) {
        block {
            /// The session.
            control_session_id @ 0 since 0: i64,
            /// The request's.
            correlation_id @ 8 since 0: i64,
            /// The recording.
            recording_id @ 16 since 0: i64,
            /// A position (see the signal).
            position @ 24 since 0: i64,
            /// What happened.
            signal @ 32 since 0: RecordingSignal,
        }
        groups {}
        var_data {}
    }
}
