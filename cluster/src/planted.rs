//! Classic consensus bugs, planted on purpose to prove the simulator's checkers can fail.
//!
//! The bugs only take effect when the crate is built with the `planted-bugs` feature and a
//! member's [`ConsensusConfig`](crate::consensus::ConsensusConfig) names one; without the feature
//! the configuration has no field to name one and every check below is a constant `false`.
//! `tests/planted_bugs.rs` runs the simulator with each bug and asserts that a checker reports a
//! violation within a few hundred seeds.

/// A bug the simulator must catch.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum PlantedBug {
    /// The leader commits entries of an earlier term by counting replicas (Raft figure 8).
    CommitPriorTermByCounting,
    /// Members acknowledge (and the leader counts) appended bytes before they are fsynced.
    AckBeforeFsync,
    /// A restarted member forgets whom it voted for in its current term.
    ForgetVoteOnRestart,
    /// A follower accepts append requests from a leader of an older term.
    AcceptStaleTermAppend,
    /// The service applies entries as soon as they are appended, before they commit.
    ApplyBeforeCommit,
    /// The leader counts its own written-but-not-durable position toward the quorum (its
    /// followers acknowledge only what is durable).
    LeaderCountsUnsyncedOwn,
    /// A member sends its vote before the output that persists it.
    VoteSentBeforePersist,
    /// The quorum is computed as (n + 1) / 2: right for odd sizes, one short for even ones.
    QuorumRoundsDown,
    /// A member grants a second vote in a term it already voted in.
    VoteTwiceInTerm,
    /// A member grants its vote without comparing the candidate's log with its own.
    VoteIgnoringLog,
    /// A follower acknowledges durable bytes that are not yet known to match the leader's log.
    AckBeyondMatch,
}

impl PlantedBug {
    /// Every planted bug.
    pub const ALL: [PlantedBug; 11] = [
        PlantedBug::CommitPriorTermByCounting,
        PlantedBug::AckBeforeFsync,
        PlantedBug::ForgetVoteOnRestart,
        PlantedBug::AcceptStaleTermAppend,
        PlantedBug::ApplyBeforeCommit,
        PlantedBug::LeaderCountsUnsyncedOwn,
        PlantedBug::VoteSentBeforePersist,
        PlantedBug::QuorumRoundsDown,
        PlantedBug::VoteTwiceInTerm,
        PlantedBug::VoteIgnoringLog,
        PlantedBug::AckBeyondMatch,
    ];
}
