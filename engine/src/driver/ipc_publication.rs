//! An IPC publication in the driver: its log, its publisher limit, and the subscribers reading
//! it in place.
//!
//! The conductor owns this state and is its only writer. Each duty cycle it:
//! 1. reads every subscriber's position (each subscriber writes its own counter, in shared
//!    memory any process of the driver's user can write) and clamps it to [join position,
//!    producer position]; a position no subscriber could have reached (below its join, or more
//!    than a term past the producer) is input gone bad, and that subscriber is reported and
//!    withdrawn rather than trusted with the cleaner and the publisher limit;
//! 2. zeroes the part of the log that every subscriber has left a term behind, so that the
//!    partition publishers rotate into next is clean;
//! 3. stores the publisher limit: the slowest tethered subscriber plus the window (release), so
//!    a publisher never overwrites what someone has not read (back-pressure);
//! 4. unblocks the log when its consumers have not moved for the unblock timeout while its tail
//!    is ahead of them (a publisher died mid-claim);
//! 5. leaves an untethered subscriber behind when it has held the publisher at its limit for
//!    the window-limit timeout, and lets it rejoin at the tail after the resting timeout.

use std::sync::Arc;

use super::network_publication::SenderStatus;
use super::reclaim::{CounterLease, FileLease};
use super::resources::{Aging, ManagedResource};
use crate::channel::ChannelUri;
use crate::concurrent::as_position;
use crate::logbuffer::descriptor::{
    ALIGNMENT, index_by_term, index_by_term_count, tail_term_id, tail_term_offset,
};
use crate::logbuffer::frame_header::HeaderTemplate;
use crate::logbuffer::log_buffers::LogBuffers;
use crate::logbuffer::unblocker::{self, Unblocked};

/// The most a publication's bookkeeping zeroes per duty cycle.
const CLEAN_CHUNK_BYTES: usize = 64 * 1024;

/// The state of an untethered subscriber.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum TetherState {
    /// Counted in the publisher limit.
    Active,
    /// Held the publisher at its limit since `since_ns`.
    Limiting { since_ns: i64 },
    /// Left behind at `since_ns`; rejoins after the resting timeout.
    Resting { since_ns: i64 },
}

/// A subscriber reading this publication's log.
#[derive(Debug)]
pub(crate) struct SubscriberLink {
    pub(crate) image_id: i64,
    pub(crate) subscription_id: i64,
    pub(crate) client_id: i64,
    pub(crate) position: CounterLease,
    pub(crate) tether: bool,
    pub(crate) tether_state: TetherState,
    /// Where the subscriber joined: the lowest position it may report.
    pub(crate) join_position: i64,
    /// Its position as read this duty cycle, before validation.
    pub(crate) observed: i64,
}

impl SubscriberLink {
    /// Whether this cycle's observed position is one a subscriber could have reached: from its
    /// join position to a term past `producer`. The slack is real: an exclusive publisher
    /// publishes a frame before it stores its tail, so a subscriber may be up to a message past
    /// the producer position the driver read.
    fn position_is_valid(&self, producer: i64, term_length: i64) -> bool {
        // Subscribers move from frame to frame: a position off the frame alignment was written
        // by something else, and a reader joining there would find no frame.
        self.observed >= self.join_position
            && self.observed <= producer.saturating_add(term_length)
            && self.observed % as_position(ALIGNMENT) == 0
    }

    /// This cycle's position clamped to [join position, `producer`]: what the cleaner and the
    /// publisher limit may use.
    fn clamped(&self, producer: i64) -> i64 {
        self.observed.min(producer).max(self.join_position)
    }
}

/// The counters the driver keeps for a publication (it writes all four).
#[derive(Debug)]
pub(crate) struct PublicationCounters {
    pub(crate) limit: CounterLease,
    pub(crate) position: CounterLease,
    /// Offers refused at the limit, mirrored from the log's metadata.
    pub(crate) back_pressured: CounterLease,
    /// Offers refused with nobody connected, mirrored from the log's metadata.
    pub(crate) not_connected: CounterLease,
}

/// Where a publication is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum PublicationState {
    /// Publishers attached.
    Active,
    /// No publisher left: waiting (up to the linger) for subscribers to drain.
    Draining { since_ns: i64 },
    /// Finished: images withdrawn, counters and file to be released.
    Done,
}

/// What a publication is made from, besides its log and counters.
#[derive(Debug)]
pub(crate) struct PublicationSetup {
    pub(crate) registration_id: i64,
    pub(crate) exclusive: bool,
    pub(crate) channel: String,
    pub(crate) uri: ChannelUri,
    pub(crate) linger_ns: i64,
}

/// An IPC publication.
#[derive(Debug)]
pub(crate) struct IpcPublication {
    pub(crate) registration_id: i64,
    pub(crate) session_id: i32,
    pub(crate) stream_id: i32,
    pub(crate) exclusive: bool,
    /// The channel as the first publisher wrote it (for labels).
    pub(crate) channel: String,
    /// The channel parsed: what subscriptions are matched against.
    pub(crate) uri: ChannelUri,
    /// How long it waits, once closed, for its subscribers to drain.
    pub(crate) linger_ns: i64,
    pub(crate) log: Arc<LogBuffers>,
    /// The log buffer file, held only to be removed when the publication is dropped.
    _file: FileLease,
    pub(crate) counters: PublicationCounters,
    pub(crate) subscribers: Vec<SubscriberLink>,
    /// A network publication's sender, its only consumer: the log is cleaned behind it and
    /// the publisher limit follows it while a receiver is connected.
    pub(crate) sender: Option<Arc<SenderStatus>>,
    pub(crate) state: PublicationState,
    pub(crate) references: usize,
    window: i64,
    /// The limit is stored again only once it would pass this.
    trip_limit: i64,
    /// How far past the stored limit the trip limit lies: an eighth of the window.
    trip_gain: i64,
    clean_position: i64,
    /// A cleaning run is under way (it started once a batch gathered).
    cleaning: bool,
    last_consumer_position: i64,
    consumer_moved_ns: i64,
}

impl IpcPublication {
    pub(crate) fn new(
        setup: PublicationSetup,
        log: Arc<LogBuffers>,
        file: FileLease,
        counters: PublicationCounters,
        now_ns: i64,
    ) -> Self {
        let PublicationSetup {
            registration_id,
            exclusive,
            channel,
            uri,
            linger_ns,
        } = setup;
        let template = HeaderTemplate::new(log.metadata().default_header());
        let window = i64::from(log.metadata().publication_window());
        // A log placed to start mid-stream (an exclusive publication replaying a recording)
        // has nothing below its first term to clean: cleaning starts at that term's start.
        let start = producer_position_of(&log);
        let start_term_base = start - start % i64::from(log.geometry().term_length());
        debug_assert!(
            window > 0 && window <= i64::from(log.geometry().term_length()) / 2,
            "the conductor caps the window at half a term: cleaning's batch relies on it"
        );
        Self {
            registration_id,
            session_id: template.session_id(),
            stream_id: template.stream_id(),
            exclusive,
            channel,
            uri,
            linger_ns,
            log,
            _file: file,
            counters,
            subscribers: Vec::new(),
            sender: None,
            state: PublicationState::Active,
            references: 1,
            window,
            trip_limit: 0,
            trip_gain: window / 8,
            clean_position: start_term_base,
            cleaning: false,
            last_consumer_position: start,
            consumer_moved_ns: now_ns,
        }
    }

    fn term_length(&self) -> i64 {
        i64::from(self.log.geometry().term_length())
    }

    /// Where publishers have written up to.
    pub(crate) fn producer_position(&self) -> i64 {
        producer_position_of(&self.log)
    }

    /// After a subscriber joined: the connected flag and the limit at once, without any of the
    /// timed transitions of [`IpcPublication::update`] (those are the duty cycle's, with their
    /// outcomes reported).
    pub(crate) fn on_subscriber_joined(&mut self) {
        let producer = self.producer_position();
        if let Some(consumer) = self.observed_consumer_position(producer) {
            self.connect_with_limit_for(consumer, producer);
        }
    }

    /// Marks the log connected and moves the limit for the slowest counted `consumer`; returns
    /// whether the limit moved.
    fn connect_with_limit_for(&mut self, consumer: i64, producer: i64) -> bool {
        // consumer <= producer, which stays far below i64::MAX - window. Publishers may write
        // only where the cleaner has been: the bytes of position q are reused for q + 3 terms,
        // and a frame may run past the limit by a message, so the limit stays two terms past the
        // clean position even when cleaning lags.
        let proposed = consumer
            .saturating_add(self.window)
            .min(self.clean_position + 2 * self.term_length());
        // The limit moves in steps of at least the trip gain (Aeron's rule), so the line
        // publishers read on every offer changes a few times a window, not on every read a
        // subscriber makes.
        // Once everything is consumed the limit is stored exactly: a publisher then sees the
        // whole window free (its publication drained), not the window less a step.
        let caught_up = consumer >= producer && proposed > self.counters.limit.view().get();
        let moved =
            self.state == PublicationState::Active && (proposed > self.trip_limit || caught_up);
        if moved {
            self.counters.limit.view().set(proposed);
            self.trip_limit = proposed.saturating_add(self.trip_gain);
        }
        if !self.log.metadata().is_connected() {
            self.log.metadata().set_connected(true);
        }
        moved
    }

    /// Where a new subscriber starts: with the slowest current one, or at the tail.
    pub(crate) fn join_position(&self) -> i64 {
        let producer = self.producer_position();
        self.observed_consumer_position(producer)
            .unwrap_or(producer)
    }

    /// The slowest valid subscriber counted in the limit, from this cycle's observations (a
    /// network publication's: its sender, while connected).
    fn observed_consumer_position(&self, producer: i64) -> Option<i64> {
        if let Some(sender) = &self.sender {
            return sender
                .is_connected()
                .then(|| sender.position().clamp(0, producer));
        }
        self.subscribers
            .iter()
            .filter(|subscriber| !matches!(subscriber.tether_state, TetherState::Resting { .. }))
            .filter(|subscriber| subscriber.position_is_valid(producer, self.term_length()))
            .map(|subscriber| subscriber.clamped(producer))
            .min()
    }

    /// Reads every subscriber's position, then the producer position, in that order: a
    /// subscriber reads only what publishers have claimed, so read first its position can never
    /// exceed a producer position read after. Returns the producer position and the subscribers
    /// whose positions are out of range.
    fn observe(&mut self) -> (i64, Vec<usize>) {
        for subscriber in &mut self.subscribers {
            subscriber.observed = subscriber.position.view().get();
        }
        let producer = self.producer_position();
        let term_length = self.term_length();
        let invalid = self
            .subscribers
            .iter()
            .enumerate()
            .filter(|(_, subscriber)| !subscriber.position_is_valid(producer, term_length))
            .map(|(index, _)| index)
            .collect();
        (producer, invalid)
    }

    /// One duty cycle of bookkeeping.
    pub(crate) fn update(&mut self, now_ns: i64, timeouts: &Timeouts) -> UpdateOutcome {
        let (producer, invalid_positions) = self.observe();
        self.counters.position.view().propose_max(producer);
        let (back_pressured, not_connected) = self.log.metadata().refused_offers();
        self.counters
            .back_pressured
            .view()
            .propose_max(back_pressured);
        self.counters
            .not_connected
            .view()
            .propose_max(not_connected);
        let left_behind = self.check_untethered(now_ns, producer, timeouts);
        let mut unblocked = false;
        let mut work = 0;
        match self.observed_consumer_position(producer) {
            Some(consumer) => {
                // Cleaning waits for a batch to gather, as Aeron cleans only when it moves the
                // limit: a subscriber moving by a frame would otherwise make every duty cycle
                // "work", and the driver would never back off to let spinning clients run.
                let clean_target = consumer - self.term_length();
                if self.cleaning || clean_target - self.clean_position >= self.clean_batch() {
                    // A run, once started, goes on (a chunk per cycle) until it has caught up.
                    self.clean_to(clean_target);
                    self.cleaning = clean_target - self.clean_position >= as_position(ALIGNMENT);
                    work += 1;
                }
                if self.connect_with_limit_for(consumer, producer) {
                    work += 1;
                }
                if consumer != self.last_consumer_position {
                    self.last_consumer_position = consumer;
                    self.consumer_moved_ns = now_ns;
                } else if producer > consumer
                    && now_ns - self.consumer_moved_ns > timeouts.unblock_ns
                    && self.unblock(consumer)
                {
                    self.consumer_moved_ns = now_ns;
                    unblocked = true;
                }
            }
            None => {
                // Nobody reads: publishers may not run ahead (offers report not connected).
                if self.counters.limit.view().get() != producer {
                    self.counters.limit.view().set(producer);
                    work += 1;
                }
                self.trip_limit = producer;
                if self.log.metadata().is_connected() {
                    self.log.metadata().set_connected(false);
                }
                self.consumer_moved_ns = now_ns;
            }
        }
        UpdateOutcome {
            left_behind,
            invalid_positions,
            unblocked,
            work,
        }
    }

    fn check_untethered(&mut self, now_ns: i64, producer: i64, timeouts: &Timeouts) -> Vec<usize> {
        let limit = self.counters.limit.view().get();
        let term_length = self.term_length();
        // The slowest counted consumer: the one holding the limit. Compared with it, not with
        // the stored limit, which moves only in trip-gain steps.
        let slowest = self.observed_consumer_position(producer);
        let mut left_behind = Vec::new();
        for (index, subscriber) in self.subscribers.iter_mut().enumerate() {
            if subscriber.tether || !subscriber.position_is_valid(producer, term_length) {
                continue;
            }
            let position = subscriber.clamped(producer);
            let at_limit = slowest.is_some_and(|slowest| position <= slowest) && producer >= limit;
            subscriber.tether_state = match subscriber.tether_state {
                TetherState::Active if at_limit => TetherState::Limiting { since_ns: now_ns },
                TetherState::Limiting { .. } if !at_limit => TetherState::Active,
                TetherState::Limiting { since_ns }
                    if now_ns - since_ns > timeouts.untethered_window_limit_ns =>
                {
                    left_behind.push(index);
                    TetherState::Resting { since_ns: now_ns }
                }
                state => state,
            };
        }
        left_behind
    }

    /// Untethered subscribers whose rest is over; the caller rejoins them at the tail.
    pub(crate) fn rested(&self, now_ns: i64, timeouts: &Timeouts) -> Vec<usize> {
        self.subscribers
            .iter()
            .enumerate()
            .filter(|(_, subscriber)| {
                matches!(subscriber.tether_state, TetherState::Resting { since_ns }
                    if now_ns - since_ns > timeouts.untethered_resting_ns)
            })
            .map(|(index, _)| index)
            .collect()
    }

    /// The least a cleaning run waits for: the limit's trip gain (an eighth of the window), so
    /// the log is cleaned in runs about as often as the limit moves, as Aeron does, and the
    /// driver's duty cycles count as work that rarely while traffic flows (each time they do, its idle
    /// strategy starts over from spinning, taking turns from spinning clients). The limit stays
    /// at most two terms past the clean position, and a term less a batch (at most a sixteenth
    /// of a term) is more than the window (at most half a term), so cleaning not yet done never
    /// holds the limit below `consumer + window`.
    fn clean_batch(&self) -> i64 {
        self.trip_gain.max(as_position(ALIGNMENT))
    }

    /// Zeroes the log from the clean position towards `position` (rounded down to a frame), at
    /// most [`CLEAN_CHUNK_BYTES`] per call: a duty cycle that zeroed a whole term at once would
    /// hold its thread for milliseconds, and on a machine whose cores are all busy that thread
    /// takes its turn from a spinning client. There is slack to clean in steps: publishers need
    /// a partition clean only when they reach it again, two terms past the slowest consumer.
    fn clean_to(&mut self, position: i64) {
        let position = (position & !(as_position(ALIGNMENT) - 1))
            .min(self.clean_position + as_position(CLEAN_CHUNK_BYTES));
        // At most one partition per step: a chunk spans at most two.
        for _ in 0..2 {
            if position <= self.clean_position {
                return;
            }
            self.clean_step(position);
        }
    }

    fn clean_step(&mut self, position: i64) {
        self.clean_position = self.log.clean_step(self.clean_position, position);
    }

    fn unblock(&self, consumer: i64) -> bool {
        let geometry = self.log.geometry();
        let term_id = geometry.term_id(consumer);
        let index = index_by_term(geometry.initial_term_id(), term_id);
        let offset = usize::try_from(geometry.term_offset(consumer)).unwrap_or(0);
        let raw_tail = self.log.metadata().raw_tail(index);
        let tail_offset = if tail_term_id(raw_tail) == term_id {
            usize::try_from(tail_term_offset(raw_tail, geometry.term_length())).unwrap_or(0)
        } else {
            usize::try_from(geometry.term_length()).unwrap_or(0)
        };
        let template = HeaderTemplate::new(self.log.metadata().default_header());
        unblocker::unblock(
            &self.log.term(index),
            &template,
            term_id,
            offset,
            tail_offset,
        ) != Unblocked::No
    }

    /// Whether every subscriber has read everything (a network publication: whether its
    /// sender has sent everything, or has nobody to send to).
    pub(crate) fn drained(&self) -> bool {
        let producer = self.producer_position();
        if let Some(sender) = &self.sender {
            return !sender.is_connected()
                || (sender.position() >= producer && sender.end_of_stream_sent());
        }
        self.subscribers
            .iter()
            .filter(|subscriber| !matches!(subscriber.tether_state, TetherState::Resting { .. }))
            .all(|subscriber| subscriber.position.view().get() >= producer)
    }
}

/// What a publication's bookkeeping did.
#[derive(Debug)]
pub(crate) struct UpdateOutcome {
    /// Untethered subscribers to withdraw.
    pub(crate) left_behind: Vec<usize>,
    /// Subscribers whose position counter holds a value outside [join, producer].
    pub(crate) invalid_positions: Vec<usize>,
    /// Whether a blocked log was padded over.
    pub(crate) unblocked: bool,
    /// Limit moves and cleaning done (for the idle strategy).
    pub(crate) work: usize,
}

/// The timeouts a publication's bookkeeping uses, in ns.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Timeouts {
    pub(crate) unblock_ns: i64,
    pub(crate) untethered_window_limit_ns: i64,
    pub(crate) untethered_resting_ns: i64,
}

impl ManagedResource for IpcPublication {
    /// A draining publication is done once its subscribers have read to its end, or once its
    /// linger has passed.
    fn on_time_event(&mut self, aging: &Aging<'_>) {
        let PublicationState::Draining { since_ns } = self.state else {
            return;
        };
        let draining_ns = aging.now_ns - since_ns;
        let lingered = draining_ns > self.linger_ns;
        // A network publication lingers after draining whatever happens: its receivers may
        // still ask for what they lost, and its heartbeats carry the end of stream. A receiver
        // that keeps reporting without ever consuming (or status messages someone forges)
        // holds it ten lingers more at most.
        let done = if self.sender.is_some() {
            (lingered && self.drained()) || draining_ns > self.linger_ns.saturating_mul(11)
        } else {
            lingered || self.drained()
        };
        if done {
            self.state = PublicationState::Done;
        }
    }

    fn has_reached_end_of_life(&self) -> bool {
        self.state == PublicationState::Done
    }
}

/// Where publishers have written `log` up to: the active term's tail.
pub(crate) fn producer_position_of(log: &LogBuffers) -> i64 {
    let metadata = log.metadata();
    let term_count = metadata.active_term_count();
    let raw_tail = metadata.raw_tail(index_by_term_count(i64::from(term_count)));
    let geometry = log.geometry();
    geometry.position(
        tail_term_id(raw_tail),
        tail_term_offset(raw_tail, geometry.term_length()),
    )
}
