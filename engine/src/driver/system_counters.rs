//! The driver's own counters, allocated at start: what an operator asks about first.

use crate::concurrent::counters::{Counter, CounterSpec, CountersError, CountersManager};
use crate::mapped_view::MappedView;

/// Counter type of system counters.
pub const SYSTEM_COUNTER_TYPE: i32 = 0;

/// A system counter.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SystemCounter {
    /// Errors recorded in the distinct error log.
    Errors,
    /// Commands read from clients.
    CommandsReceived,
    /// Commands refused as malformed or unknown.
    InvalidCommands,
    /// Unknown commands whose policy said to ignore them.
    UnknownCommandsIgnored,
    /// Clients closed because they stopped sending keepalives.
    ClientTimeouts,
    /// Logs unblocked after a publisher died mid-claim.
    UnblockedPublications,
    /// Untethered subscribers left behind.
    UntetheredLeftBehind,
    /// Bytes of the command ring skipped because a record's length was corrupt.
    CorruptCommandBytes,
    /// Subscriber positions outside [join, producer] (the image was withdrawn).
    InvalidPositions,
    /// Agents that panicked (the driver stops after recording it).
    AgentPanics,
    /// Data bytes sent over UDP (new data, not retransmissions).
    BytesSent,
    /// Frame bytes received over UDP and inserted into images.
    BytesReceived,
    /// Datagrams sent over UDP, of every kind.
    DatagramsSent,
    /// Datagrams received over UDP, of every kind.
    DatagramsReceived,
    /// Sends the socket took only part of (its buffer was full).
    ShortSends,
    /// Sends the socket refused with an error.
    SendErrors,
    /// Frames dropped as malformed, for no known stream, or outside the term.
    InvalidFrames,
    /// Data frames past the receiver window (dropped and asked for again).
    FlowControlOverRuns,
    /// Data frames already received.
    DuplicateFrames,
    /// NAKs sent by images.
    NaksSent,
    /// NAKs received by publications.
    NaksReceived,
    /// NAKs out of the window, overlapping a repair, or over the budget.
    NaksIgnored,
    /// Ranges resent in answer to NAKs.
    Retransmits,
    /// Bytes resent in answer to NAKs.
    RetransmittedBytes,
    /// Status messages sent by images.
    StatusMessagesSent,
    /// Status messages received by publications.
    StatusMessagesReceived,
    /// Heartbeats sent by idle publications.
    HeartbeatsSent,
    /// Heartbeats received by images.
    HeartbeatsReceived,
    /// SETUP frames sent.
    SetupsSent,
    /// Gaps padded over on unreliable channels.
    GapsPadded,
    /// Datagrams dropped by a configured loss generator.
    LossGeneratorDrops,
    /// Publication images created from SETUP.
    ImagesCreated,
    /// Publication images ended by the liveness timeout.
    ImagesGone,
}

const ALL: [(SystemCounter, &str); 33] = [
    (SystemCounter::Errors, "errors"),
    (SystemCounter::CommandsReceived, "commands received"),
    (SystemCounter::InvalidCommands, "invalid commands"),
    (
        SystemCounter::UnknownCommandsIgnored,
        "unknown commands ignored",
    ),
    (SystemCounter::ClientTimeouts, "client timeouts"),
    (
        SystemCounter::UnblockedPublications,
        "unblocked publications",
    ),
    (
        SystemCounter::UntetheredLeftBehind,
        "untethered subscribers left behind",
    ),
    (SystemCounter::CorruptCommandBytes, "corrupt command bytes"),
    (SystemCounter::InvalidPositions, "invalid positions"),
    (SystemCounter::AgentPanics, "agent panics"),
    (SystemCounter::BytesSent, "bytes sent"),
    (SystemCounter::BytesReceived, "bytes received"),
    (SystemCounter::DatagramsSent, "datagrams sent"),
    (SystemCounter::DatagramsReceived, "datagrams received"),
    (SystemCounter::ShortSends, "short sends"),
    (SystemCounter::SendErrors, "send errors"),
    (SystemCounter::InvalidFrames, "invalid frames"),
    (SystemCounter::FlowControlOverRuns, "flow control over-runs"),
    (SystemCounter::DuplicateFrames, "duplicate frames"),
    (SystemCounter::NaksSent, "naks sent"),
    (SystemCounter::NaksReceived, "naks received"),
    (SystemCounter::NaksIgnored, "naks ignored"),
    (SystemCounter::Retransmits, "retransmits"),
    (SystemCounter::RetransmittedBytes, "retransmitted bytes"),
    (SystemCounter::StatusMessagesSent, "status messages sent"),
    (
        SystemCounter::StatusMessagesReceived,
        "status messages received",
    ),
    (SystemCounter::HeartbeatsSent, "heartbeats sent"),
    (SystemCounter::HeartbeatsReceived, "heartbeats received"),
    (SystemCounter::SetupsSent, "setups sent"),
    (SystemCounter::GapsPadded, "loss gaps padded"),
    (SystemCounter::LossGeneratorDrops, "loss generator drops"),
    (SystemCounter::ImagesCreated, "images created"),
    (SystemCounter::ImagesGone, "images gone"),
];

// Counters are found by their discriminant: the table lists them in declaration order.
const _: () = {
    let mut index = 0;
    while index < ALL.len() {
        assert!(
            ALL[index].0 as usize == index,
            "ALL lists the counters in order"
        );
        index += 1;
    }
};

/// The allocated system counters.
#[derive(Debug)]
pub struct SystemCounters {
    counters: Vec<MappedView<Counter<'static>>>,
}

impl SystemCounters {
    /// Allocates every system counter.
    pub(crate) fn allocate(
        manager: &mut MappedView<CountersManager<'static>>,
    ) -> Result<Self, CountersError> {
        let mut counters = Vec::with_capacity(ALL.len());
        for (index, (_, label)) in ALL.iter().enumerate() {
            let key = i32::try_from(index).unwrap_or(0).to_le_bytes();
            let spec = CounterSpec {
                type_id: SYSTEM_COUNTER_TYPE,
                key: &key,
                label,
                registration_id: 0,
                owner_id: 0,
                reference_id: 0,
            };
            counters.push(super::conductor::allocate_counter(manager, &spec, 0)?);
        }
        Ok(Self { counters })
    }

    /// Adds one to `counter`.
    pub(crate) fn increment(&self, counter: SystemCounter) {
        self.add(counter, 1);
    }

    /// Adds `amount` to `counter`.
    pub(crate) fn add(&self, counter: SystemCounter, amount: usize) {
        self.counters[counter as usize]
            .view()
            .increment(i64::try_from(amount).unwrap_or(i64::MAX));
    }
}
