//! The consensus protocol: the messages members exchange, as versioned `tern-codec` schemas.
//!
//! Every template uses the *terminate* policy: a member must never guess at a message that
//! changes replicated state, so a template it does not know ends the exchange with an error
//! rather than being skipped. Canvass and vote messages also carry the sender's protocol version
//! (composed `major.minor.patch`) and log term length: a member refuses to take part in an
//! election with a member of another major version or another log term length, and reports it
//! ([`crate::consensus::Output::IncompatiblePeer`]).
//!
//! Positions are byte positions in the log; terms are leadership term ids. Layouts (all little-
//! endian, offsets in bytes after the 8-byte message header):
//!
//! ```text
//! canvass_position  current_term@0 log_term@8 log_position@16 protocol_version@24
//!                   member_id@28 follows_live_leader@32 log_term_length@33
//! request_vote      candidate_term@0 log_term@8 log_position@16 protocol_version@24
//!                   candidate_id@28 log_term_length@32
//! vote              term@0 candidate_id@8 voter_id@12 granted@16
//! append_request    term@0 prev_position@8 prev_term@16 entry_term@24 commit_position@32
//!                   leader_id@40 log_floor@44 (since 2.1) | entries (var data, whole log
//!                   entries of entry_term)
//! append_response   term@0 position@8 conflict_term@16 conflict_base@24 follower_id@32
//!                   success@36
//! snapshot_chunk    term@0 snapshot_position@8 transfer_length@16 offset@24 leader_id@32
//!                   | bytes (var data, at most 60 KiB of the transfer); the template is new
//!                   in 2.2, its fields there from its first version
//! ```
//!
//! A snapshot transfer (a leader's snapshot sent to a member whose log ends below the leader's
//! log start, as Raft's InstallSnapshot) is `transfer_length` bytes cut into chunks in order:
//! the leader's term history up to the snapshot (`u32` count, then `term u64, base u64` each),
//! then the snapshot's bytes. The member node carries it (`crate::node`); the core only asks for
//! it ([`crate::consensus::Output::SendSnapshot`]) and takes its end
//! ([`crate::consensus::Consensus::install_snapshot`]).

use tern_codec::{DecodeError, MessageHeader, Schema, SemanticVersion};

/// The consensus protocol's schema and semantic version.
///
/// 2.0.0: the entries an append request carries are tern frames (32-byte headers, 32-byte
/// alignment, PADs at term ends), which a 1.x member cannot read; the major version keeps the
/// two apart in elections.
///
/// 2.1.0: an append request carries the leader's log floor (`log_floor`), below which every
/// member may purge its log; a 2.0 member reads none and purges nothing on a leader's word.
///
/// 2.2.0: `snapshot_chunk`, a leader's snapshot sent to a member behind the leader's log start;
/// a 2.1 member refuses the template (counted) and stays behind, as it did before.
pub const CONSENSUS_PROTOCOL: Schema = Schema::new("consensus", 20, SemanticVersion::new(2, 2, 0));

/// The most transfer bytes one snapshot chunk carries.
pub const SNAPSHOT_CHUNK_BYTES_MAX: usize = 60 * 1024;

/// The most log bytes one append request carries.
pub const APPEND_BYTES_MAX: usize = 64 * 1024;

tern_codec::message! {
    /// A member's log position, sent while it looks for a leader (the pre-vote): a member only
    /// nominates itself when a quorum that has also lost its leader has seen no better log.
    pub mod canvass_position (schema = CONSENSUS_PROTOCOL, template = 1, policy = Terminate) {
        block {
            /// The sender's current term (not raised by canvassing).
            current_term @ 0 since 0: u64,
            /// The term of the last entry in the sender's log.
            log_term @ 8 since 0: u64,
            /// The sender's appended log position.
            log_position @ 16 since 0: u64,
            /// The sender's protocol version, composed.
            protocol_version @ 24 since 0: u32,
            /// The sender.
            member_id @ 28 since 0: u32,
            /// 1 when the sender still hears from a leader, so it will not support an election.
            follows_live_leader @ 32 since 0: u8,
            /// The sender's log term length: members of one cluster must frame the log alike.
            log_term_length @ 33 since 0: u32,
        }
        groups {}
        var_data {}
    }
}

tern_codec::message! {
    /// A candidate asks for votes in a new term.
    pub mod request_vote (schema = CONSENSUS_PROTOCOL, template = 2, policy = Terminate) {
        block {
            /// The term the candidate wants to lead.
            candidate_term @ 0 since 0: u64,
            /// The term of the last entry in the candidate's log.
            log_term @ 8 since 0: u64,
            /// The candidate's appended log position.
            log_position @ 16 since 0: u64,
            /// The candidate's protocol version, composed.
            protocol_version @ 24 since 0: u32,
            /// The candidate.
            candidate_id @ 28 since 0: u32,
            /// The candidate's log term length: members of one cluster must frame the log alike.
            log_term_length @ 32 since 0: u32,
        }
        groups {}
        var_data {}
    }
}

tern_codec::message! {
    /// A member's answer to a vote request.
    pub mod vote (schema = CONSENSUS_PROTOCOL, template = 3, policy = Terminate) {
        block {
            /// The voter's current term after handling the request.
            term @ 0 since 0: u64,
            /// The candidate voted on.
            candidate_id @ 8 since 0: u32,
            /// The voter.
            voter_id @ 12 since 0: u32,
            /// 1 when the vote is granted.
            granted @ 16 since 0: u8,
        }
        groups {}
        var_data {}
    }
}

tern_codec::message! {
    /// The leader's log replication and heartbeat: whole log entries written in `entry_term`
    /// that follow `prev_position`, where the leader's log holds a byte of `prev_term`.
    pub mod append_request (schema = CONSENSUS_PROTOCOL, template = 4, policy = Terminate) {
        block {
            /// The leader's term.
            term @ 0 since 0: u64,
            /// Where the entries start.
            prev_position @ 8 since 0: u64,
            /// The term of the leader's log byte just before `prev_position` (0 at position 0).
            prev_term @ 16 since 0: u64,
            /// The term that wrote the entries.
            entry_term @ 24 since 0: u64,
            /// The leader's commit position.
            commit_position @ 32 since 0: u64,
            /// The leader.
            leader_id @ 40 since 0: u32,
            /// The lowest position any member may still need from a log (the lowest a follower
            /// of this leader has acknowledged, at most the commit): members purge only below it.
            log_floor @ 44 since 1: u64,
        }
        groups {}
        var_data {
            /// Whole log entries; empty for a heartbeat.
            entries (max = 65536) since 0: bytes,
        }
    }
}

tern_codec::message! {
    /// A follower's answer to an append request.
    pub mod append_response (schema = CONSENSUS_PROTOCOL, template = 5, policy = Terminate) {
        block {
            /// The follower's current term.
            term @ 0 since 0: u64,
            /// On success, the position up to which the follower's log is durable and matches the
            /// leader's; on refusal, the follower's appended position.
            position @ 8 since 0: u64,
            /// On refusal for a term mismatch, the follower's term at the byte before
            /// `prev_position`; otherwise 0.
            conflict_term @ 16 since 0: u64,
            /// Where `conflict_term` starts in the follower's log.
            conflict_base @ 24 since 0: u64,
            /// The follower.
            follower_id @ 32 since 0: u32,
            /// 1 when the entries were accepted.
            success @ 36 since 0: u8,
        }
        groups {}
        var_data {}
    }
}

tern_codec::message! {
    /// One chunk of a leader's snapshot transfer to a member whose log ends below the leader's
    /// log start (see the module docs for the transfer's layout).
    pub mod snapshot_chunk (schema = CONSENSUS_PROTOCOL, template = 6, policy = Terminate) {
        block {
            /// The leader's term.
            term @ 0 since 0: u64,
            /// The log position the snapshot covers.
            snapshot_position @ 8 since 0: u64,
            /// The transfer's whole length: the term history's bytes and the snapshot's.
            transfer_length @ 16 since 0: u64,
            /// Where in the transfer this chunk's bytes go.
            offset @ 24 since 0: u64,
            /// The leader.
            leader_id @ 32 since 0: u32,
        }
        groups {}
        var_data {
            /// The transfer's bytes from `offset`.
            bytes (max = 61440) since 0: bytes,
        }
    }
}

/// A decoded consensus message.
#[derive(Debug, Clone, Copy)]
pub enum Message<'a> {
    /// See [`canvass_position`].
    Canvass(canvass_position::Decoder<'a>),
    /// See [`request_vote`].
    RequestVote(request_vote::Decoder<'a>),
    /// See [`vote`].
    Vote(vote::Decoder<'a>),
    /// See [`append_request`].
    AppendRequest(append_request::Decoder<'a>),
    /// See [`append_response`].
    AppendResponse(append_response::Decoder<'a>),
    /// See [`snapshot_chunk`].
    SnapshotChunk(snapshot_chunk::Decoder<'a>),
}

/// Why bytes from another member were not a consensus message this member can act on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum ProtocolError {
    /// The bytes do not decode.
    #[error("malformed consensus message: {0}")]
    Malformed(#[from] DecodeError),
    /// A template this build does not know; its policy says the reader must stop.
    #[error("unknown consensus message ({0}); its policy stops the reader")]
    Unknown(tern_codec::UnknownMessage),
}

impl<'a> Message<'a> {
    /// Decodes one consensus message, validating header, version and every length.
    pub fn decode(bytes: &'a [u8]) -> Result<Self, ProtocolError> {
        let header = MessageHeader::decode(bytes)?;
        if header.schema_id != CONSENSUS_PROTOCOL.id {
            return Err(DecodeError::WrongSchema {
                expected: CONSENSUS_PROTOCOL.id,
                actual: header.schema_id,
            }
            .into());
        }
        Ok(match header.template_id {
            canvass_position::TEMPLATE_ID => {
                Self::Canvass(canvass_position::Decoder::decode(bytes)?)
            }
            request_vote::TEMPLATE_ID => Self::RequestVote(request_vote::Decoder::decode(bytes)?),
            vote::TEMPLATE_ID => Self::Vote(vote::Decoder::decode(bytes)?),
            append_request::TEMPLATE_ID => {
                Self::AppendRequest(append_request::Decoder::decode(bytes)?)
            }
            append_response::TEMPLATE_ID => {
                Self::AppendResponse(append_response::Decoder::decode(bytes)?)
            }
            snapshot_chunk::TEMPLATE_ID => {
                Self::SnapshotChunk(snapshot_chunk::Decoder::decode(bytes)?)
            }
            // Every consensus template is terminate, so whatever the unknown one's policy bits
            // say, decoding cannot skip it: it is reported, and the caller stops the exchange.
            _ => {
                return Err(ProtocolError::Unknown(tern_codec::UnknownMessage {
                    schema_id: header.schema_id,
                    template_id: header.template_id,
                    version: header.version,
                }));
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_template_round_trips_and_is_terminate() {
        let mut buf = [0u8; 128];
        let mut encoder = vote::Encoder::wrap(&mut buf).unwrap();
        encoder.term(9).candidate_id(2).voter_id(1).granted(1);
        let length = encoder.finish();
        let Message::Vote(decoded) = Message::decode(&buf[..length]).unwrap() else {
            panic!("decoded another template");
        };
        assert_eq!(
            (decoded.term(), decoded.candidate_id(), decoded.granted()),
            (9, 2, 1)
        );
        for template in [
            canvass_position::TEMPLATE_ID,
            request_vote::TEMPLATE_ID,
            vote::TEMPLATE_ID,
            append_request::TEMPLATE_ID,
            append_response::TEMPLATE_ID,
            snapshot_chunk::TEMPLATE_ID,
        ] {
            assert_eq!(
                tern_codec::UnknownPolicy::of_template(template),
                tern_codec::UnknownPolicy::Terminate
            );
        }
    }

    #[test]
    fn unknown_and_incompatible_messages_are_errors() {
        let mut buf = [0u8; 128];
        let mut encoder = vote::Encoder::wrap(&mut buf).unwrap();
        encoder.term(1);
        let length = encoder.finish();
        let mut unknown = buf;
        unknown[2..4].copy_from_slice(
            &tern_codec::UnknownPolicy::Terminate
                .template_id(99)
                .to_le_bytes(),
        );
        assert!(matches!(
            Message::decode(&unknown[..length]),
            Err(ProtocolError::Unknown(_))
        ));
        let mut newer_major = buf;
        newer_major[6..8]
            .copy_from_slice(&SemanticVersion::new(3, 0, 0).wire_version().to_le_bytes());
        let error = Message::decode(&newer_major[..length]).unwrap_err();
        assert!(
            error.to_string().contains("major versions differ"),
            "{error}"
        );
        assert!(Message::decode(&buf[..length - 1]).is_err());
        assert!(Message::decode(&[]).is_err());
    }
}
