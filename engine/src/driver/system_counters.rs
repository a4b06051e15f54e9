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
}

const ALL: [(SystemCounter, &str); 10] = [
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
];

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
        let index = ALL
            .iter()
            .position(|(candidate, _)| *candidate == counter)
            .unwrap_or(0);
        self.counters[index]
            .view()
            .increment(i64::try_from(amount).unwrap_or(i64::MAX));
    }
}
