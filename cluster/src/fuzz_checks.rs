//! What the fuzz targets (`fuzz/fuzz_targets/cluster_*.rs`) check on arbitrary bytes, shared with
//! the stable corpus replay in `tests/fuzz_corpus.rs`: every decoder of bytes from another member,
//! the log or a snapshot file returns a typed error or a value, and never panics.

use crate::consensus::{Consensus, ConsensusConfig, RecoveredState};
use crate::container::ServiceContainer;
use crate::kv::KvStore;
use crate::log_entry::{Entry, LogFormat};
use crate::protocol::Message;

/// Decodes a consensus message, then hands the bytes to a member with a log, as the network
/// would; the member may refuse them but must not panic.
pub fn consensus_message(data: &[u8]) {
    let _ = Message::decode(data);
    let mut member = Consensus::new(ConsensusConfig::new(3), 1, RecoveredState::default(), 1, 0)
        .expect("a valid configuration");
    let log: Vec<u8> = Vec::new();
    let _ = member.on_message(1, data, &log);
    while member.poll_output().is_some() {}
    member.on_tick(2_000_000_000, &log);
    while member.poll_output().is_some() {}
}

/// Scans bytes as a log and decodes every entry the scan accepts.
pub fn log_entries(data: &[u8]) {
    let result = LogFormat::default().scan(data, 0);
    let mut position = 0u64;
    while position < result.valid_end {
        let start = usize::try_from(position).expect("within the slice");
        let entry = Entry::read(&data[start..], position).expect("the scan accepted it");
        let _ = entry.event();
        position += entry.length;
    }
    // Applying whatever is valid must not panic either.
    let mut container = ServiceContainer::new(KvStore::default(), 256);
    let _ = container.apply(data, result.valid_end);
}

/// Loads bytes as a container snapshot.
pub fn snapshot(data: &[u8]) {
    if let Ok(container) = ServiceContainer::from_snapshot(KvStore::default(), 256, data) {
        let again = container.take_snapshot();
        let reloaded = ServiceContainer::from_snapshot(KvStore::default(), 256, &again)
            .expect("a snapshot this build wrote reads back");
        assert_eq!(reloaded.state_digest(), container.state_digest());
    }
}
