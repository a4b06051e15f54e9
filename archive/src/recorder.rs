//! Recording: a subscription whose every image becomes a recording.
//!
//! A [`RecordingSubscription`] is what `start_recording` made: a subscription to a channel and
//! stream. Each image it gains is a publication to record; the first time the recorder sees an
//! image it adds a recording to the catalog (starting at the image's position), a segment
//! writer and a recording position counter (`rec-pos`, visible in `tern stat`). Each duty
//! cycle it takes whole blocks of frames from each image ([`Image::block_poll`]) and writes
//! them, bounded per cycle; then it commits them as the durability policy asks and only then
//! moves the counter and the catalog's stop position, so neither ever claims more than is
//! written (and, at level 2, synced). An image that ends (its publication closed and drained,
//! or withdrawn) stops its recording.
//!
//! Memory and threads: everything here is owned by the archive agent and runs on its thread.
//! The block lent by the image is read in place; with checksums on the writer copies it once
//! into a buffer allocated when the recording started. Nothing allocates per block.

use std::path::Path;

use tern_codec::position::TermGeometry;
use tern_engine::client::{Image, Subscription, Tern, UserCounter};

use crate::catalog::{Catalog, NewRecording};
use crate::error::ArchiveError;
use crate::segment::{SegmentHeader, SegmentLayout};
use crate::segment_writer::{Durability, FileIo, SegmentWriter};

/// The counter type of a recording position (Aeron's number for it).
pub const RECORDING_POSITION_TYPE_ID: i32 = 100;

/// How a recorder writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RecorderSettings {
    /// Bytes of stream per segment file (rounded up to whole terms per recording).
    pub segment_length: u32,
    /// Whether frames carry CRC32C checksums.
    pub checksums: bool,
    /// How hard to work for durability.
    pub durability: Durability,
    /// The largest block taken from an image at once.
    pub block_length_max: usize,
    /// The most bytes one image's recording takes per duty cycle (others get their turn).
    pub bytes_per_cycle_max: usize,
    /// How blocks reach the kernel.
    pub file_io: FileIo,
}

/// Something a recording did that the archive reports (events, control sessions).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RecordingReport {
    /// A recording started.
    Started {
        /// Its id.
        recording_id: i64,
    },
    /// A recording stopped at `position`.
    Stopped {
        /// Its id.
        recording_id: i64,
        /// Where.
        position: i64,
    },
    /// A recording failed and was stopped where it had got to.
    Failed {
        /// Its id.
        recording_id: i64,
        /// Why.
        reason: String,
    },
}

/// One image being recorded.
#[derive(Debug)]
pub struct RecordingSession {
    /// The catalog's id.
    pub recording_id: i64,
    image_id: i64,
    writer: SegmentWriter,
    counter: UserCounter,
    /// The position committed: the counter's and the catalog's.
    position: i64,
    start_position: i64,
    /// The position last reported as progress.
    reported_position: i64,
    /// The recorded publication's session.
    pub session_id: i32,
    /// The stream, as catalogued.
    pub stream_id: i32,
}

impl RecordingSession {
    /// The position recorded and committed.
    pub fn position(&self) -> i64 {
        self.position
    }

    /// Where the recording (or its current extension) started.
    pub fn start_position(&self) -> i64 {
        self.start_position
    }

    /// Takes the progress not reported yet, if any.
    pub fn take_progress(&mut self) -> Option<i64> {
        (self.position > self.reported_position).then(|| {
            self.reported_position = self.position;
            self.position
        })
    }
}

/// A channel and stream being recorded.
#[derive(Debug)]
pub struct RecordingSubscription {
    /// The channel, as given.
    pub channel: String,
    /// The stream.
    pub stream_id: i32,
    subscription: Subscription,
    /// A recording to extend with the first image, instead of starting a new one.
    extend: Option<i64>,
    sessions: Vec<RecordingSession>,
    /// Images not to record (their recording failed, or was stopped by id).
    ignored_images: Vec<i64>,
    /// The channel and stream the catalog names, when not the ones subscribed to (a
    /// replication records the source's stream as the source names it).
    identity: Option<(String, i32)>,
    /// Recordings this subscription has started.
    started: u64,
    /// The last recording it started.
    last_started: Option<i64>,
}

impl RecordingSubscription {
    /// Subscribes to `channel` and `stream_id` to record it.
    pub fn new(
        tern: &Tern,
        channel: &str,
        stream_id: i32,
        extend: Option<i64>,
    ) -> Result<Self, ArchiveError> {
        let subscription = tern
            .add_subscription(channel, stream_id)
            .map_err(|error| ArchiveError::Driver(error.to_string()))?;
        Ok(Self {
            channel: channel.to_owned(),
            stream_id,
            subscription,
            extend,
            sessions: Vec::new(),
            ignored_images: Vec::new(),
            identity: None,
            started: 0,
            last_started: None,
        })
    }

    /// Subscribes to `channel` and `stream_id` to record a replication: the recording is
    /// catalogued under `identity` (the source's channel and stream).
    pub fn for_replication(
        tern: &Tern,
        (channel, stream_id): (&str, i32),
        extend: Option<i64>,
        identity: (String, i32),
    ) -> Result<Self, ArchiveError> {
        let mut subscription = Self::new(tern, channel, stream_id, extend)?;
        subscription.identity = Some(identity);
        Ok(subscription)
    }

    /// The recordings under way.
    pub fn sessions(&self) -> &[RecordingSession] {
        &self.sessions
    }

    /// The recordings under way, to take their progress.
    pub fn sessions_mut(&mut self) -> &mut [RecordingSession] {
        &mut self.sessions
    }

    /// One duty cycle: starts recordings of new images, writes what each image has, stops
    /// recordings whose images ended. Returns the work done.
    pub fn do_work(
        &mut self,
        context: &mut RecorderContext<'_>,
        reports: &mut Vec<RecordingReport>,
    ) -> usize {
        let mut work = 0;
        let Self {
            subscription,
            sessions,
            extend,
            channel,
            stream_id,
            ignored_images,
            identity,
            started,
            last_started,
        } = self;
        let (channel, stream_id) = match identity {
            Some((channel, stream_id)) => (&*channel, &*stream_id),
            None => (&*channel, &*stream_id),
        };
        let images = subscription.images_mut();
        for image in images.iter_mut() {
            let image_id = image.info().image_id;
            if ignored_images.contains(&image_id) {
                continue;
            }
            let index = match sessions
                .iter()
                .position(|session| session.image_id == image_id)
            {
                Some(index) => index,
                None => match start(context, image, channel, *stream_id, extend.take()) {
                    Ok(session) => {
                        *started += 1;
                        *last_started = Some(session.recording_id);
                        reports.push(RecordingReport::Started {
                            recording_id: session.recording_id,
                        });
                        sessions.push(session);
                        work += 1;
                        sessions.len() - 1
                    }
                    Err(error) => {
                        tracing::error!(%error, channel = %channel, image_id, "a recording could not start");
                        ignored_images.push(image_id);
                        continue;
                    }
                },
            };
            let session = &mut sessions[index];
            match record(context, session, image) {
                Ok(written) => work += written,
                Err(error) => {
                    let recording_id = session.recording_id;
                    tracing::error!(%error, recording_id, "recording failed: stopped");
                    reports.push(RecordingReport::Failed {
                        recording_id,
                        reason: error.to_string(),
                    });
                    let session = sessions.swap_remove(index);
                    finish(context, session, reports);
                    ignored_images.push(image_id);
                    continue;
                }
            }
            if image.is_end_of_stream() || image.is_closed() {
                // Done with this image: it lingers a while in the subscription, and must not
                // start an empty recording of its end.
                let session = sessions.swap_remove(index);
                ignored_images.push(image_id);
                finish(context, session, reports);
                work += 1;
            }
        }
        // Images withdrawn since the last cycle end their recordings too.
        let images = subscription.images_mut();
        // Forget images that are gone: the list stays as long as the images are.
        ignored_images.retain(|id| images.iter().any(|image| image.info().image_id == *id));
        let mut index = 0;
        while index < sessions.len() {
            let image_id = sessions[index].image_id;
            if images.iter().any(|image| image.info().image_id == image_id) {
                index += 1;
            } else {
                let session = sessions.swap_remove(index);
                finish(context, session, reports);
                work += 1;
            }
        }
        work
    }

    /// Stops every recording of this subscription (the subscription itself closes when this
    /// is dropped).
    pub fn stop(mut self, context: &mut RecorderContext<'_>, reports: &mut Vec<RecordingReport>) {
        for session in self.sessions.drain(..) {
            finish(context, session, reports);
        }
    }

    /// Stops one recording of this subscription, by id; whether it was one of them.
    pub fn stop_recording(
        &mut self,
        recording_id: i64,
        context: &mut RecorderContext<'_>,
        reports: &mut Vec<RecordingReport>,
    ) -> bool {
        let Some(index) = self
            .sessions
            .iter()
            .position(|session| session.recording_id == recording_id)
        else {
            return false;
        };
        let session = self.sessions.swap_remove(index);
        self.ignored_images.push(session.image_id);
        finish(context, session, reports);
        true
    }

    /// Whether it records what `replication` copies (its channel and stream).
    pub fn carries(&self, replication: &crate::replication::ReplicationSession) -> bool {
        self.channel == replication.replication_channel()
            && self.stream_id == replication.stream_id()
    }

    /// How many recordings it has started.
    pub fn started(&self) -> u64 {
        self.started
    }

    /// The last recording it started, if any.
    pub fn last_started(&self) -> Option<i64> {
        self.last_started
    }

    /// Whether it records `recording_id`.
    pub fn records(&self, recording_id: i64) -> bool {
        self.sessions
            .iter()
            .any(|session| session.recording_id == recording_id)
    }
}

/// What the recorder needs from the archive.
pub struct RecorderContext<'a> {
    /// The driver connection.
    pub tern: &'a Tern,
    /// The catalog.
    pub catalog: &'a mut Catalog,
    /// The archive directory.
    pub dir: &'a Path,
    /// How to write.
    pub settings: RecorderSettings,
    /// Epoch ms now.
    pub now_ms: i64,
}

fn start(
    context: &mut RecorderContext<'_>,
    image: &Image,
    channel: &str,
    stream_id: i32,
    extend: Option<i64>,
) -> Result<RecordingSession, ArchiveError> {
    if !image.is_tethered() {
        return Err(ArchiveError::Refused(
            "an untethered image can leave the recorder behind: record a tethered channel"
                .to_owned(),
        ));
    }
    let term_length = image.term_length();
    let geometry = TermGeometry::new(term_length, image.initial_term_id())
        .map_err(|error| ArchiveError::Refused(error.to_string()))?;
    let position = image.position();
    let (recording_id, origin, segment_length) = match extend {
        Some(recording_id) => {
            let descriptor = context.catalog.descriptor(recording_id)?;
            if descriptor.state != crate::catalog::RecordingState::Valid || descriptor.is_active() {
                return Err(ArchiveError::Refused(format!(
                    "recording {recording_id} is no longer a stopped, valid recording: not extended"
                )));
            }
            if descriptor.stop_position != position
                || descriptor.initial_term_id != image.initial_term_id()
                || descriptor.term_length != term_length
                || descriptor.stream_id != stream_id
            {
                return Err(ArchiveError::Refused(format!(
                    "recording {recording_id} stopped at {} (term length {}, initial term {}): \
                     the image is at {position} (term length {term_length}, initial term {})",
                    descriptor.stop_position,
                    descriptor.term_length,
                    descriptor.initial_term_id,
                    image.initial_term_id()
                )));
            }
            // Nothing of an earlier stream may lie past the stop when new frames follow it (a
            // failed write, a truncation): a repair would read on into it.
            crate::segment_files::cut_at(context.dir, &descriptor, descriptor.stop_position)?;
            context.catalog.reactivate(recording_id)?;
            if context.settings.durability != Durability::None {
                context.catalog.flush()?;
            }
            (
                recording_id,
                descriptor.origin_position,
                descriptor.segment_length,
            )
        }
        None => {
            let segment_length = context
                .settings
                .segment_length
                .max(term_length)
                .next_multiple_of(term_length);
            let recording_id = context.catalog.add(&NewRecording {
                start_position: position,
                start_timestamp: context.now_ms,
                initial_term_id: image.initial_term_id(),
                term_length,
                mtu: image.mtu(),
                segment_length,
                session_id: image.info().session_id,
                stream_id,
                channel,
                source_identity: &image.info().source_identity,
            })?;
            if context.settings.durability != Durability::None {
                // The recording's descriptor survives a machine crash before its frames do.
                context.catalog.flush()?;
            }
            (recording_id, position, segment_length)
        }
    };
    let header = SegmentHeader {
        recording_id,
        base_position: 0,
        segment_length,
        term_length,
        initial_term_id: image.initial_term_id(),
        stream_id,
        session_id: image.info().session_id,
        checksums: context.settings.checksums,
    };
    let layout = SegmentLayout::new(origin, segment_length, geometry);
    let writer = SegmentWriter::new(
        context.dir,
        header,
        layout,
        position,
        context.settings.durability,
        context.settings.block_length_max,
    )
    .with_file_io(context.settings.file_io)?;
    let label = format!(
        "rec-pos: {recording_id} {} {stream_id} {channel}",
        image.info().session_id
    );
    let counter = context
        .tern
        .add_counter(
            RECORDING_POSITION_TYPE_ID,
            &recording_id.to_le_bytes(),
            &label,
        )
        .map_err(|error| ArchiveError::Driver(error.to_string()))?;
    counter.set(position);
    tracing::info!(
        recording_id,
        position,
        channel,
        stream_id,
        "recording started"
    );
    Ok(RecordingSession {
        recording_id,
        image_id: image.info().image_id,
        writer,
        counter,
        position,
        start_position: position,
        reported_position: position,
        session_id: image.info().session_id,
        stream_id,
    })
}

/// Writes what the image has (bounded), then commits it.
fn record(
    context: &mut RecorderContext<'_>,
    session: &mut RecordingSession,
    image: &mut Image,
) -> Result<usize, ArchiveError> {
    let mut written = 0;
    let mut outcome = Ok(());
    while written < context.settings.bytes_per_cycle_max && outcome.is_ok() {
        let writer = &mut session.writer;
        let length = image.block_poll(
            |block, position, extent| {
                debug_assert_eq!(position, writer.position());
                outcome = writer.write(block, extent);
            },
            context.settings.block_length_max,
        );
        if length == 0 {
            break;
        }
        written += length;
    }
    outcome?;
    if written > 0 {
        let position = session.writer.commit()?;
        session.position = position;
        // Released after the bytes are written (and synced at level 2): readers of either
        // never see a position ahead of the file.
        context
            .catalog
            .set_stop_position(session.recording_id, position)?;
        session.counter.set(position);
    }
    Ok(written)
}

/// Ends a recording: syncs as the policy asks, marks it stopped in the catalog.
fn finish(
    context: &mut RecorderContext<'_>,
    mut session: RecordingSession,
    reports: &mut Vec<RecordingReport>,
) {
    let recording_id = session.recording_id;
    // The committed position: a block written but not committed (a write that failed after
    // it) is not claimed.
    let position = session.position;
    let written = session.writer.position();
    if let Err(error) = session.writer.close() {
        tracing::error!(%error, recording_id, "closing a recording's segment failed");
    }
    if written > position {
        // Bytes written after the last commit (a write that failed part-way): cut them, so
        // nothing past the stop can pass for the recording's continuation.
        let cut = context
            .catalog
            .descriptor(recording_id)
            .map_err(ArchiveError::from)
            .and_then(|descriptor| {
                crate::segment_files::cut_at(context.dir, &descriptor, position)
            });
        if let Err(error) = cut {
            tracing::error!(%error, recording_id, "cutting a recording's uncommitted tail failed");
        }
    }
    if let Err(error) = context.catalog.stop(recording_id, position, context.now_ms) {
        tracing::error!(%error, recording_id, "the catalog did not take a recording's stop");
    }
    if context.settings.durability != Durability::None
        && let Err(error) = context.catalog.flush()
    {
        tracing::error!(%error, "the catalog did not sync");
    }
    tracing::info!(recording_id, position, "recording stopped");
    reports.push(RecordingReport::Stopped {
        recording_id,
        position,
    });
}
