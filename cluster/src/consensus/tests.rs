//! Example-based tests of the consensus core on a local cluster (zero-delay, in-memory logs).
//! The seeded simulator (`tests/simulation.rs`) covers the fault space; these pin each rule.

use super::*;
use crate::kv::{Command, decode_response};
use crate::local::LocalCluster;
use crate::protocol::{append_request, append_response, request_vote};

const MS: u64 = 1_000_000;

fn elected(cluster: &mut LocalCluster) -> u32 {
    cluster
        .elect(MS, 10_000 * MS)
        .expect("a leader within 10 s of virtual time")
}

fn put(key: u64, value: u64) -> [u8; 32] {
    Command::Put { key, value }.encode(0)
}

#[test]
fn a_single_member_leads_and_commits_what_is_durable() {
    let mut cluster = LocalCluster::new(1, 1).unwrap();
    let leader = elected(&mut cluster);
    cluster.set_auto_sync(leader, false);
    cluster.submit(leader, 1, 1, &put(1, 2)).unwrap();
    cluster.tick();
    let member = cluster.member(leader);
    assert!(member.consensus.commit_position() < member.consensus.appended_position());
    assert!(
        cluster.answers().is_empty(),
        "nothing applies before it is durable"
    );
    cluster.complete_syncs(leader);
    let member = cluster.member(leader);
    assert_eq!(
        member.consensus.commit_position(),
        member.consensus.appended_position()
    );
    assert_eq!(cluster.take_answers().len(), 1);
}

#[test]
fn three_members_elect_one_leader_and_replicate_every_command() {
    let mut cluster = LocalCluster::new(3, 7).unwrap();
    let leader = elected(&mut cluster);
    for request in 1..=10 {
        cluster
            .submit(leader, 1, request, &put(request, request))
            .unwrap();
    }
    cluster.tick();
    let answers = cluster.take_answers();
    assert_eq!(answers.len(), 10);
    // Followers learn the commit position from the next heartbeat.
    cluster.advance(100 * MS);
    let end = cluster.member(leader).consensus.appended_position();
    for id in 0..3 {
        let member = cluster.member(id);
        assert_eq!(member.log, cluster.member(leader).log, "member {id}");
        assert_eq!(member.consensus.commit_position(), end);
        assert_eq!(member.container.applied_position(), end);
        assert_eq!(member.consensus.current_term(), 1);
    }
    assert_eq!(decode_response(&answers[9].payload), Some((0, 10)));
}

/// With short log terms the leader pads each term's end; every member holds the same tern
/// stream, every answered position is the command's own entry (after any PAD), and every
/// command is applied once.
#[test]
fn entries_never_cross_a_log_terms_end() {
    let format = LogFormat::new(crate::log_entry::TERM_LENGTH_MIN).unwrap();
    let mut config = ConsensusConfig::new(3);
    config.log_format = format;
    let mut cluster = LocalCluster::with_config(config, 11).unwrap();
    let leader = elected(&mut cluster);
    let mut positions = Vec::new();
    for request in 1..=600 {
        // Every seventh command is longer (and malformed to the store, which answers so and
        // changes nothing), so that entries do not tile the terms exactly.
        let junk = [7u8; 200];
        let command: &[u8] = if request % 7 == 0 {
            &junk
        } else {
            &put(1, request)
        };
        let position = cluster.submit(leader, 1, request, command).unwrap();
        positions.push(position);
        if request % 50 == 0 {
            cluster.tick();
        }
    }
    cluster.tick();
    cluster.advance(100 * MS);
    let log = cluster.member(leader).log.clone();
    let end = u64::try_from(log.len()).unwrap();
    assert!(
        end > 4 * format.term_length(),
        "the log spans several terms"
    );
    assert_eq!(format.scan(&log, 0).valid_end, end);
    let mut pads = 0;
    let mut position = 0;
    while position < end {
        let start = usize::try_from(position).unwrap();
        let entry = crate::log_entry::Entry::read(&log[start..], position).unwrap();
        assert!(
            position / format.term_length() == (position + entry.length - 1) / format.term_length(),
            "the entry at {position} crosses a term's end"
        );
        if entry.pad {
            pads += 1;
            assert_eq!((position + entry.length) % format.term_length(), 0);
        }
        position += entry.length;
    }
    assert!(pads >= 3, "{pads} pads");
    for &answered in &positions {
        let start = usize::try_from(answered).unwrap();
        let entry = crate::log_entry::Entry::read(&log[start..], answered).unwrap();
        assert!(!entry.pad, "the answer at {answered} points at a PAD");
    }
    for id in 0..3 {
        let member = cluster.member(id);
        assert_eq!(member.log, log, "member {id}");
        assert_eq!(member.container.applied_position(), end);
        assert_eq!(member.container.service().get(1), Some(600));
    }
}

/// Three members whose followers' syncs wait to be completed by hand, after one command the
/// leader has appended: (cluster, leader, followers, the commit position before the command).
fn one_command_awaiting_followers(seed: u64) -> (LocalCluster, u32, Vec<u32>, u64) {
    let mut cluster = LocalCluster::new(3, seed).unwrap();
    let leader = elected(&mut cluster);
    let followers: Vec<u32> = (0..3).filter(|&id| id != leader).collect();
    for &follower in &followers {
        cluster.set_auto_sync(follower, false);
    }
    let before = cluster.member(leader).consensus.commit_position();
    cluster.submit(leader, 1, 1, &put(1, 1)).unwrap();
    cluster.tick();
    (cluster, leader, followers, before)
}

#[test]
fn the_commit_waits_for_a_durable_quorum() {
    let (mut cluster, leader, followers, before) = one_command_awaiting_followers(3);
    assert_eq!(
        cluster.member(leader).consensus.commit_position(),
        before,
        "appended but not durable on any follower: not committed"
    );
    cluster.complete_syncs(followers[0]);
    let leader_state = &cluster.member(leader).consensus;
    assert_eq!(
        leader_state.commit_position(),
        leader_state.appended_position()
    );
}

/// A success from an earlier term says what the follower's log held then, not now: a leader
/// that counted one (a stale copy replayed after it was re-elected with a log cut by a crash)
/// would commit entries only it holds. This mutant survived 5,000 simulator seeds on 3 and on
/// 5 members (the chain that makes it harmful is five unlikely events long), so it is pinned
/// here instead.
#[test]
fn a_leader_ignores_a_success_from_an_earlier_term() {
    let (mut cluster, leader, followers, before) = one_command_awaiting_followers(5);
    let state = &cluster.member(leader).consensus;
    let (term, appended) = (state.current_term(), state.appended_position());
    assert!(appended > before);
    let mut stale = vec![0u8; 64];
    let mut encoder = append_response::Encoder::wrap(&mut stale).unwrap();
    encoder
        .term(term - 1)
        .position(appended)
        .follower_id(followers[0])
        .success(1);
    let length = encoder.finish();
    stale.truncate(length);
    cluster.inject(followers[0], leader, stale);
    cluster.run_until_idle();
    assert_eq!(
        cluster.member(leader).consensus.commit_position(),
        before,
        "a stale success counted toward the quorum"
    );
    cluster.complete_syncs(followers[0]);
    assert_eq!(
        cluster.member(leader).consensus.commit_position(),
        appended,
        "the follower's real acknowledgement commits"
    );
}

#[test]
fn a_partitioned_member_neither_raises_its_term_nor_disrupts_the_leader() {
    let mut cluster = LocalCluster::new(3, 11).unwrap();
    let leader = elected(&mut cluster);
    let isolated = (leader + 1) % 3;
    cluster.set_isolated(isolated, true);
    for _ in 0..500 {
        cluster.advance(10 * MS);
    }
    assert_eq!(
        cluster.member(isolated).consensus.current_term(),
        1,
        "canvassing keeps the term"
    );
    assert_eq!(cluster.member(isolated).consensus.role(), Role::Canvass);
    cluster.set_isolated(isolated, false);
    for _ in 0..100 {
        cluster.advance(10 * MS);
    }
    assert_eq!(cluster.leader(), Some(leader));
    assert_eq!(cluster.member(leader).consensus.current_term(), 1);
    assert_eq!(cluster.member(isolated).consensus.leader(), Some(leader));
}

#[test]
fn a_new_leader_truncates_an_old_leaders_uncommitted_suffix() {
    let mut cluster = LocalCluster::new(3, 5).unwrap();
    let old = elected(&mut cluster);
    cluster.submit(old, 1, 1, &put(1, 1)).unwrap();
    cluster.tick();
    let committed = cluster.member(old).consensus.commit_position();
    cluster.set_isolated(old, true);
    cluster.submit(old, 1, 2, &put(2, 2)).unwrap();
    cluster.submit(old, 1, 3, &put(3, 3)).unwrap();
    cluster.tick();
    assert!(cluster.member(old).consensus.appended_position() > committed);
    let mut new = None;
    for _ in 0..1000 {
        cluster.advance(10 * MS);
        new = (0..3).find(|&id| id != old && cluster.member(id).consensus.role() == Role::Leader);
        if new.is_some() {
            break;
        }
    }
    let new = new.expect("the majority elects a new leader");
    assert_ne!(
        cluster.member(old).consensus.role(),
        Role::Leader,
        "check quorum stepped down"
    );
    cluster.submit(new, 2, 1, &put(4, 4)).unwrap();
    cluster.tick();
    cluster.set_isolated(old, false);
    for _ in 0..100 {
        cluster.advance(10 * MS);
    }
    assert_eq!(cluster.member(old).log, cluster.member(new).log);
    assert_eq!(cluster.member(old).consensus.current_term(), 2);
    let store = cluster.member(old).container.service();
    assert_eq!(
        (store.get(1), store.get(2), store.get(3), store.get(4)),
        (Some(1), None, None, Some(4))
    );
}

fn member(config: ConsensusConfig, id: u32, term: u64) -> Consensus {
    let recovered = RecoveredState {
        current_term: term,
        ..RecoveredState::default()
    };
    Consensus::new(config, id, recovered, 1, 0).unwrap()
}

fn sent(consensus: &mut Consensus) -> Vec<Vec<u8>> {
    std::iter::from_fn(|| consensus.poll_output())
        .filter_map(|output| match output {
            Output::Send { message, .. } => Some(message),
            _ => None,
        })
        .collect()
}

fn encode_append(term: u64, leader: u32) -> Vec<u8> {
    let mut buf = vec![0u8; 128];
    let mut encoder = append_request::Encoder::wrap(&mut buf).unwrap();
    encoder.term(term).entry_term(term).leader_id(leader);
    let length = encoder.entries(&[]).unwrap().finish();
    buf.truncate(length);
    buf
}

#[test]
fn an_append_from_a_stale_term_is_refused_with_the_current_term() {
    let mut follower = member(ConsensusConfig::new(3), 1, 5);
    let _ = sent(&mut follower);
    follower
        .on_message(0, &encode_append(3, 0), &Vec::new())
        .unwrap();
    let replies = sent(&mut follower);
    let response = append_response::Decoder::decode(&replies[0]).unwrap();
    assert_eq!((response.term(), response.success()), (5, 0));
    assert_eq!(follower.current_term(), 5);
    assert_eq!(follower.leader(), None);
}

/// The default log term length, as election messages carry it.
const DEFAULT_TERM_LENGTH_U32: u32 = 16 * 1024 * 1024;
const _: () = assert!(DEFAULT_TERM_LENGTH_U32 as u64 == crate::log_entry::DEFAULT_TERM_LENGTH);

fn encode_vote_request(term: u64, candidate: u32, version: SemanticVersion) -> Vec<u8> {
    let mut buf = vec![0u8; 64];
    let mut encoder = request_vote::Encoder::wrap(&mut buf).unwrap();
    encoder
        .candidate_term(term)
        .candidate_id(candidate)
        .protocol_version(version.compose())
        .log_term_length(DEFAULT_TERM_LENGTH_U32);
    let length = encoder.finish();
    buf.truncate(length);
    buf
}

#[test]
fn a_member_of_another_major_version_gets_no_vote_and_is_reported() {
    let mut voter = member(ConsensusConfig::new(3), 1, 1);
    let _ = sent(&mut voter);
    let newer = SemanticVersion::new(3, 0, 0);
    voter
        .on_message(0, &encode_vote_request(2, 0, newer), &Vec::new())
        .unwrap();
    let outputs: Vec<Output> = std::iter::from_fn(|| voter.poll_output()).collect();
    assert!(outputs.contains(&Output::IncompatiblePeer {
        member: 0,
        version: newer,
        log_term_length: DEFAULT_TERM_LENGTH_U32,
    }));
    let vote = outputs.iter().find_map(|output| match output {
        Output::Send { message, .. } => Some(
            crate::protocol::vote::Decoder::decode(message)
                .unwrap()
                .granted(),
        ),
        _ => None,
    });
    assert_eq!(vote, Some(0));
    assert_eq!(
        voter.current_term(),
        1,
        "an incompatible request changes nothing"
    );
    assert_eq!(voter.voted_for(), None);
}

#[test]
fn a_vote_is_persisted_before_it_is_sent_and_given_once_per_term() {
    let mut voter = member(ConsensusConfig::new(3), 1, 1);
    let _ = sent(&mut voter);
    let version = CONSENSUS_PROTOCOL.version;
    voter
        .on_message(0, &encode_vote_request(2, 0, version), &Vec::new())
        .unwrap();
    let outputs: Vec<Output> = std::iter::from_fn(|| voter.poll_output()).collect();
    let persisted = outputs
        .iter()
        .position(|o| {
            matches!(
                o,
                Output::PersistVote {
                    voted_for: Some(0),
                    term: 2
                }
            )
        })
        .expect("the vote is persisted");
    let sent_at = outputs
        .iter()
        .position(|o| matches!(o, Output::Send { .. }))
        .unwrap();
    assert!(persisted < sent_at, "persist before send");
    voter
        .on_message(0, &encode_vote_request(2, 2, version), &Vec::new())
        .unwrap();
    let second = sent(&mut voter);
    let vote = crate::protocol::vote::Decoder::decode(&second[0]).unwrap();
    assert_eq!(
        (vote.candidate_id(), vote.granted()),
        (2, 0),
        "one vote per term"
    );
}

#[test]
fn a_member_following_a_live_leader_ignores_a_disruptive_vote_request() {
    let mut follower = member(ConsensusConfig::new(3), 1, 1);
    follower
        .on_message(0, &encode_append(1, 0), &Vec::new())
        .unwrap();
    let _ = sent(&mut follower);
    follower
        .on_message(
            MS,
            &encode_vote_request(9, 2, CONSENSUS_PROTOCOL.version),
            &Vec::new(),
        )
        .unwrap();
    assert!(sent(&mut follower).is_empty());
    assert_eq!(follower.current_term(), 1);
    assert_eq!(follower.leader(), Some(0));
}

#[test]
fn bad_bytes_are_errors_that_change_nothing() {
    let mut consensus = member(ConsensusConfig::new(3), 1, 4);
    let _ = sent(&mut consensus);
    let valid = encode_append(4, 0);
    assert!(
        consensus
            .on_message(0, &valid[..valid.len() - 1], &Vec::new())
            .is_err()
    );
    assert!(consensus.on_message(0, &[0xFF; 40], &Vec::new()).is_err());
    assert!(
        consensus
            .on_message(0, &encode_append(4, 9), &Vec::new())
            .is_err(),
        "not a member"
    );
    assert!(
        consensus
            .on_message(0, &encode_append(4, 1), &Vec::new())
            .is_err(),
        "itself"
    );
    let mut misaligned = valid.clone();
    misaligned[8 + 8] = 3;
    assert!(consensus.on_message(0, &misaligned, &Vec::new()).is_err());
    assert!(sent(&mut consensus).is_empty());
    assert_eq!((consensus.current_term(), consensus.leader()), (4, None));
}

#[test]
fn configurations_and_recovered_states_are_checked() {
    assert!(matches!(
        Consensus::new(ConsensusConfig::new(0), 0, RecoveredState::default(), 1, 0),
        Err(ConfigError::MemberCount(0))
    ));
    assert!(matches!(
        Consensus::new(ConsensusConfig::new(3), 3, RecoveredState::default(), 1, 0),
        Err(ConfigError::MemberId { .. })
    ));
    let recovered = RecoveredState {
        commit_position: 64,
        log_end: 32,
        ..RecoveredState::default()
    };
    assert!(matches!(
        Consensus::new(ConsensusConfig::new(3), 0, recovered, 1, 0),
        Err(ConfigError::Positions { .. })
    ));
    // A log end of the old 8-byte framing is no entry boundary of a tern-framed log.
    let recovered = RecoveredState {
        log_end: 8,
        ..RecoveredState::default()
    };
    assert!(matches!(
        Consensus::new(ConsensusConfig::new(3), 0, recovered, 1, 0),
        Err(ConfigError::Unaligned { .. })
    ));
}

/// A follower takes only whole, valid frames, each where it says it is: a frame with a bad
/// checksum, one placed at another offset and a request whose positions overflow are refused
/// as malformed and change nothing (a frame across a term's end: `log_entry`'s tests).
#[test]
fn a_follower_refuses_entries_that_are_not_valid_frames_in_place() {
    let format = LogFormat::new(crate::log_entry::TERM_LENGTH_MIN).unwrap();
    let mut config = ConsensusConfig::new(3);
    config.log_format = format;
    let mut entries = Vec::new();
    format
        .append_entry(&mut entries, 0, |buf| {
            let mut encoder = crate::log_entry::timer_fired::Encoder::wrap(buf)?;
            encoder.correlation_id(1);
            Ok(encoder.finish())
        })
        .unwrap();
    let request = |prev_position: u64, entries: &[u8]| {
        let mut buf = vec![0u8; 256 + entries.len()];
        let mut encoder = append_request::Encoder::wrap(&mut buf).unwrap();
        encoder
            .term(1)
            .prev_position(prev_position)
            .prev_term(0)
            .entry_term(1)
            .leader_id(0);
        let length = encoder.entries(entries).unwrap().finish();
        buf.truncate(length);
        buf
    };
    let mut follower = member(config.clone(), 1, 1);
    let _ = sent(&mut follower);
    let log: Vec<u8> = Vec::new();
    follower.on_message(0, &request(0, &entries), &log).unwrap();
    assert_eq!(
        follower.appended_position(),
        32 * 2,
        "the valid frame is taken"
    );

    let mut corrupt = entries.clone();
    corrupt[40] ^= 1;
    let mut misplaced = Vec::new();
    format
        .append_entry(&mut misplaced, 32, |buf| {
            let mut encoder = crate::log_entry::timer_fired::Encoder::wrap(buf)?;
            encoder.correlation_id(2);
            Ok(encoder.finish())
        })
        .unwrap();
    for (name, prev_position, bytes) in [
        ("a bad checksum", 0, corrupt),
        ("another offset's frame", 0, misplaced),
        ("positions past 64 bits", u64::MAX - 31, entries.clone()),
    ] {
        let mut fresh = member(config.clone(), 1, 1);
        let _ = sent(&mut fresh);
        assert!(
            fresh
                .on_message(0, &request(prev_position, &bytes), &log)
                .is_err(),
            "{name} was accepted"
        );
        assert_eq!(fresh.appended_position(), 0, "{name}");
        assert!(sent(&mut fresh).is_empty(), "{name}: nothing is answered");
    }
}

#[test]
fn a_member_of_another_major_version_is_kept_out_of_elections_and_the_rest_carry_on() {
    let mut configs = vec![ConsensusConfig::new(3); 3];
    configs[2].protocol_version = SemanticVersion::new(1, 0, 0);
    let mut cluster = LocalCluster::with_configs(configs, 21).unwrap();
    let leader = elected(&mut cluster);
    assert_ne!(leader, 2, "the incompatible member cannot win an election");
    cluster.submit(leader, 1, 1, &put(1, 1)).unwrap();
    cluster.tick();
    assert_eq!(
        cluster.take_answers().len(),
        1,
        "the compatible majority commits"
    );
    // Knock the leader out: the incompatible member still cannot win, nor let the third do so.
    cluster.set_isolated(leader, true);
    for _ in 0..300 {
        cluster.advance(10 * MS);
    }
    assert!((0..3).all(|id| id == leader || cluster.member(id).consensus.role() != Role::Leader));
    let reports = cluster.incompatible_reports();
    assert!(
        reports
            .iter()
            .any(|&(reporter, member, version)| reporter != 2 && member == 2 && version.major == 1),
        "the compatible members say who is incompatible: {reports:?}"
    );
    assert!(
        reports
            .iter()
            .any(|&(reporter, _, version)| reporter == 2 && version.major == 2),
        "and so does the incompatible one: {reports:?}"
    );
}

/// Members must frame the log alike: one configured with another log term length could never
/// take a leader's appends, so it is kept out of elections, and reported, like a member of
/// another major version.
#[test]
fn a_member_with_another_log_term_length_is_kept_out_of_elections() {
    let mut configs = vec![ConsensusConfig::new(3); 3];
    configs[2].log_format = LogFormat::new(crate::log_entry::TERM_LENGTH_MIN).unwrap();
    let mut cluster = LocalCluster::with_configs(configs, 23).unwrap();
    let leader = elected(&mut cluster);
    assert_ne!(leader, 2, "the odd member cannot win an election");
    cluster.submit(leader, 1, 1, &put(1, 1)).unwrap();
    cluster.tick();
    assert_eq!(
        cluster.take_answers().len(),
        1,
        "the matching majority commits"
    );
    let reports = cluster.incompatible_reports();
    assert!(
        reports
            .iter()
            .any(|&(reporter, member, _)| reporter != 2 && member == 2),
        "the others say who frames the log differently: {reports:?}"
    );
    assert!(
        reports.iter().any(|&(reporter, _, _)| reporter == 2),
        "and so does the odd member: {reports:?}"
    );
}

#[test]
fn a_newer_minor_version_takes_part_as_usual() {
    let mut configs = vec![ConsensusConfig::new(3); 3];
    configs[1].protocol_version = SemanticVersion::new(2, 3, 2);
    let mut cluster = LocalCluster::with_configs(configs, 4).unwrap();
    elected(&mut cluster);
    assert!(cluster.incompatible_reports().is_empty());
}

#[test]
fn entries_whose_send_failed_are_sent_again_after_a_pause_without_waiting_for_a_refusal() {
    let mut cluster = LocalCluster::new(3, 11).unwrap();
    let leader = elected(&mut cluster);
    let follower = (leader + 1) % 3;
    cluster.advance(100 * MS);
    let before = cluster.member(leader).consensus.appended_position();
    cluster.set_link(leader, follower, false);
    cluster.submit(leader, 1, 1, &put(1, 1)).unwrap();
    // Written first, then sent (and lost) by the next tick.
    cluster.run_until_idle();
    cluster.tick();
    cluster.set_link(leader, follower, true);
    let member = cluster.member_mut(leader);
    let end = member.consensus.appended_position();
    let entries = member.log[usize::try_from(before).unwrap()..].to_vec();
    let index = usize::try_from(follower).unwrap();
    assert_eq!(
        member.consensus.peers[index].next_position, end,
        "sent, and lost"
    );
    let mut failed = vec![0u8; 128 + entries.len()];
    let mut encoder = append_request::Encoder::wrap(&mut failed).unwrap();
    encoder
        .term(member.consensus.current_term())
        .prev_position(before)
        .prev_term(member.consensus.current_term())
        .entry_term(member.consensus.current_term())
        .commit_position(before)
        .leader_id(leader);
    let length = encoder.entries(&entries).unwrap().finish();
    // A heartbeat that failed changes nothing; the append that failed is sent again, after a
    // pause.
    member.consensus.on_send_failed(
        follower,
        &encode_append(member.consensus.current_term(), leader),
    );
    assert_eq!(member.consensus.peers[index].next_position, end);
    member.consensus.on_send_failed(follower, &failed[..length]);
    assert_eq!(member.consensus.peers[index].next_position, before);
    cluster.tick();
    assert_ne!(
        cluster.member(follower).log,
        cluster.member(leader).log,
        "not sent again in the same instant"
    );
    cluster.advance(MS);
    assert_eq!(cluster.member(follower).log, cluster.member(leader).log);
}

/// A log purged below `start`, as a member's log is after its snapshots.
struct Purged<'a> {
    log: &'a [u8],
    start: u64,
}

impl LogView for Purged<'_> {
    fn read(&self, position: u64, max: u64) -> &[u8] {
        if position < self.start {
            return &[];
        }
        self.log.read(position, max)
    }

    fn start(&self) -> u64 {
        self.start
    }
}

/// Carries out `consensus`'s outputs against `log` (syncs complete at once); returns the
/// messages sent and the members a snapshot was asked for.
fn carry(consensus: &mut Consensus, log: &mut Vec<u8>, now_ns: u64) -> (Vec<Vec<u8>>, Vec<u32>) {
    let (mut sent, mut snapshots) = (Vec::new(), Vec::new());
    while let Some(output) = consensus.poll_output() {
        match output {
            Output::Send { message, .. } => sent.push(message),
            Output::Append {
                position, entries, ..
            } => {
                log.resize(usize::try_from(position).unwrap(), 0);
                log.extend_from_slice(&entries);
            }
            Output::Truncate { position } => log.truncate(usize::try_from(position).unwrap()),
            Output::Sync { sync_id, .. } => consensus.on_durable(now_ns, sync_id),
            Output::SendSnapshot { to } => snapshots.push(to),
            _ => {}
        }
    }
    (sent, snapshots)
}

/// A member that lost its log comes back below the leader's (purged) log start: its refusal
/// lowers what the leader counted for it, the leader asks for a snapshot (once a leader
/// heartbeat timeout), the member installs it, acknowledges the snapshot's position and takes
/// appends from there; an offer it cannot use (stale, or a position it holds) installs nothing.
#[test]
fn a_member_behind_the_log_start_installs_a_snapshot_and_catches_up() {
    let mut cluster = LocalCluster::new(3, 5).unwrap();
    let leader = elected(&mut cluster);
    for request in 1..=40 {
        cluster
            .submit(leader, 1, request, &put(request, request))
            .unwrap();
    }
    cluster.run_until_idle();
    cluster.advance(100 * MS);
    let follower = (leader + 1) % 3;
    let term = cluster.member(leader).consensus.current_term();
    let leader_log = cluster.member(leader).log.clone();
    let end = u64::try_from(leader_log.len()).unwrap();
    // A snapshot position: an entry boundary in the middle, and the log purged below it.
    let position = cluster.member(leader).consensus.appended_position() / 2 / 32 * 32;
    let position = {
        let mut boundary = 0;
        while boundary < position {
            boundary +=
                crate::log_entry::padded_length(&leader_log[usize::try_from(boundary).unwrap()..])
                    .unwrap();
        }
        boundary
    };
    let purged = Purged {
        log: &leader_log,
        start: position,
    };
    let now = cluster.now_ns();
    let mut lost = member(ConsensusConfig::new(3), follower, term);
    let mut lost_log = Vec::new();
    let _ = carry(&mut lost, &mut lost_log, now);
    let mut lead = std::mem::replace(
        &mut cluster.member_mut(leader).consensus,
        member(ConsensusConfig::new(3), leader, term),
    );
    let _ = lead.poll_output();
    while lead.poll_output().is_some() {}
    let index = usize::try_from(follower).unwrap();
    assert_eq!(lead.peers[index].matched_position, end);
    // The heartbeat is refused: the member's log ends at 0.
    let heartbeat = {
        let mut buf = vec![0u8; 128];
        let mut encoder = append_request::Encoder::wrap(&mut buf).unwrap();
        encoder
            .term(term)
            .prev_position(end)
            .prev_term(term)
            .entry_term(term)
            .commit_position(end)
            .leader_id(leader);
        let length = encoder.entries(&[]).unwrap().finish();
        buf.truncate(length);
        buf
    };
    lost.on_message(now, &heartbeat, &lost_log).unwrap();
    let (refusal, _) = carry(&mut lost, &mut lost_log, now);
    let mut scratch = leader_log.clone();
    lead.on_message(now, &refusal[0], &purged).unwrap();
    assert_eq!(
        lead.peers[index].matched_position, end,
        "one refusal below the match may be a late copy"
    );
    // The probe that follows is refused too: the member lost what it had.
    let (probes, asked) = carry(&mut lead, &mut scratch, now);
    assert!(asked.is_empty());
    lost.on_message(now, &probes[0], &lost_log).unwrap();
    let (refusal, _) = carry(&mut lost, &mut lost_log, now);
    lead.on_message(now, &refusal[0], &purged).unwrap();
    assert_eq!(lead.peers[index].matched_position, 0, "it lost what it had");
    let (_, asked) = carry(&mut lead, &mut scratch, now);
    assert_eq!(asked, vec![follower], "a snapshot is asked for");
    // Heartbeats every 100 ms, each refused: asked again once a leader heartbeat timeout on.
    let timeout = ConsensusConfig::new(3).leader_heartbeat_timeout_ns;
    let mut asked_at = Vec::new();
    let mut later = now;
    while later < now + timeout + 150 * MS {
        later += 100 * MS;
        lead.on_tick(later, &purged);
        let (requests, asked) = carry(&mut lead, &mut scratch, later);
        asked_at.extend(asked.iter().map(|_| later - now));
        for request in requests {
            lost.on_message(later, &request, &lost_log).unwrap();
        }
        for reply in carry(&mut lost, &mut lost_log, later).0 {
            lead.on_message(later, &reply, &purged).unwrap();
        }
        asked_at.extend(
            carry(&mut lead, &mut scratch, later)
                .1
                .iter()
                .map(|_| later - now),
        );
    }
    assert_eq!(lead.role(), Role::Leader);
    assert_eq!(asked_at, vec![timeout], "asked again, once");
    // Offers the member cannot use.
    let position_term = lead.term_history().term_before(position);
    assert_eq!(
        lost.on_snapshot_offered(later, term + 1, leader, position, position_term),
        SnapshotOffer::Stale
    );
    assert_eq!(
        lost.on_snapshot_offered(later, term, leader, position + 1, position_term),
        SnapshotOffer::Stale
    );
    assert_eq!(
        lost.on_snapshot_offered(later, term, leader, position, position_term),
        SnapshotOffer::Install
    );
    let mut history = lead.term_history().clone();
    history.truncate(position);
    lost.install_snapshot(position, history);
    assert_eq!(
        (
            lost.appended_position(),
            lost.commit_position(),
            lost.durable_position()
        ),
        (position, position, position)
    );
    let (ack, _) = carry(&mut lost, &mut lost_log, later);
    let response = append_response::Decoder::decode(&ack[0]).unwrap();
    assert_eq!((response.success(), response.position()), (1, position));
    // The leader resumes from the snapshot's position, and the member catches up.
    lead.on_message(later, &ack[0], &purged).unwrap();
    assert_eq!(lead.peers[index].matched_position, position);
    for _ in 0..100 {
        let (requests, _) = carry(&mut lead, &mut scratch, later);
        if requests.is_empty() {
            break;
        }
        for request in requests {
            lost.on_message(later, &request, &lost_log).unwrap();
        }
        let (acks, _) = carry(&mut lost, &mut lost_log, later);
        for ack in acks {
            lead.on_message(later, &ack, &purged).unwrap();
        }
    }
    assert_eq!(lead.peers[index].matched_position, end);
    assert_eq!(
        lost_log[usize::try_from(position).unwrap()..],
        leader_log[usize::try_from(position).unwrap()..]
    );
    // A second offer of the same snapshot finds the position held: acknowledged, not installed.
    assert_eq!(
        lost.on_snapshot_offered(later, term, leader, position, position_term),
        SnapshotOffer::Held
    );
    assert_eq!(lost.appended_position(), end);
}

/// A three-member cluster with `commands` committed everywhere: the leader's id and its log.
fn settled(commands: u64) -> (LocalCluster, u32, Vec<u8>) {
    let mut cluster = LocalCluster::new(3, 5).unwrap();
    let leader = elected(&mut cluster);
    for request in 1..=commands {
        cluster
            .submit(leader, 1, request, &put(request, request))
            .unwrap();
    }
    cluster.run_until_idle();
    cluster.advance(100 * MS);
    let log = cluster.member(leader).log.clone();
    (cluster, leader, log)
}

/// The entry boundary nearest below the middle of `log`.
fn middle_boundary(log: &[u8]) -> u64 {
    let middle = u64::try_from(log.len()).unwrap() / 2;
    let mut boundary = 0;
    loop {
        let length =
            crate::log_entry::padded_length(&log[usize::try_from(boundary).unwrap()..]).unwrap();
        if boundary + length > middle {
            return boundary;
        }
        boundary += length;
    }
}

fn append(term: u64, leader: u32, prev: u64, prev_term: u64, commit: u64) -> Vec<u8> {
    let mut buf = vec![0u8; 128];
    let mut encoder = append_request::Encoder::wrap(&mut buf).unwrap();
    encoder
        .term(term)
        .prev_position(prev)
        .prev_term(prev_term)
        .entry_term(term)
        .commit_position(commit)
        .leader_id(leader);
    let length = encoder.entries(&[]).unwrap().finish();
    buf.truncate(length);
    buf
}

/// A follower whose log was purged refuses an append below its start, answering with its
/// log's end, instead of comparing or cutting what it no longer holds (here the append's
/// previous term does not match what the purged bytes had, which would otherwise be answered
/// with that conflict).
#[test]
fn an_append_below_a_followers_log_start_is_refused_with_its_end() {
    let (mut cluster, leader, _) = settled(30);
    let follower = (leader + 1) % 3;
    let term = cluster.member(leader).consensus.current_term();
    let log = cluster.member(follower).log.clone();
    let start = middle_boundary(&log);
    let end = u64::try_from(log.len()).unwrap();
    let consensus = &mut cluster.member_mut(follower).consensus;
    let purged = Purged {
        log: &log.clone(),
        start,
    };
    consensus
        .on_message(0, &append(term, leader, 64, 0, end), &purged)
        .unwrap();
    let outputs: Vec<Output> = std::iter::from_fn(|| consensus.poll_output()).collect();
    let Some(Output::Send { message, .. }) = outputs
        .iter()
        .find(|output| matches!(output, Output::Send { .. }))
    else {
        panic!("no answer: {outputs:?}");
    };
    let response = append_response::Decoder::decode(message).unwrap();
    assert_eq!(
        (
            response.success(),
            response.position(),
            response.conflict_term()
        ),
        (0, end, 0),
        "refused with its end, no term compared"
    );
}

/// Offers a follower cannot use are stale and install nothing: another term, another leader,
/// a member that is not following, no position, an unaligned or out-of-range one, a position
/// term after the leader's term; chunks from anyone but the current leader are not taken
/// either. A follower whose byte before the position is of another term installs.
#[test]
fn snapshot_offers_a_follower_cannot_use_are_stale() {
    let (mut cluster, leader, log) = settled(30);
    let follower = (leader + 1) % 3;
    let other = (leader + 2) % 3;
    let term = cluster.member(leader).consensus.current_term();
    let position = middle_boundary(&log);
    let position_term = cluster
        .member(leader)
        .consensus
        .term_history()
        .term_before(position);
    let consensus = &mut cluster.member_mut(follower).consensus;
    for (offer_term, from, at, at_term) in [
        (term + 1, leader, position, position_term),
        (term, other, position, position_term),
        (term, leader, 0, position_term),
        (term, leader, position + 8, position_term),
        (term, leader, u64::MAX - 31, position_term),
        (term, leader, position, term + 1),
        (term, leader, position, 0),
    ] {
        assert_eq!(
            consensus.on_snapshot_offered(0, offer_term, from, at, at_term),
            SnapshotOffer::Stale,
            "term {offer_term} from {from} at {at} ({at_term})"
        );
    }
    assert!(consensus.on_snapshot_chunk(0, term, leader));
    assert!(!consensus.on_snapshot_chunk(0, term + 1, leader));
    assert!(!consensus.on_snapshot_chunk(0, term, other));
    // The follower holds the position in the leader's term: held.
    assert_eq!(
        consensus.on_snapshot_offered(0, term, leader, position, position_term),
        SnapshotOffer::Held
    );
    // A log of term 1 to 4096, committed to 2048 (a snapshot's position), following a leader
    // of term 3 whose byte before 4096 is of term 2: it installs a snapshot at 4096, an empty
    // log installs one too, and one below its commit of another term is stale.
    let recovered = RecoveredState {
        current_term: 3,
        term_history: TermHistory::from_entries(vec![crate::term_history::TermStart {
            term: 1,
            base: 0,
        }])
        .unwrap(),
        log_end: 4096,
        commit_position: 2048,
        ..RecoveredState::default()
    };
    let mut diverged = Consensus::new(ConsensusConfig::new(3), 1, recovered, 1, 0).unwrap();
    diverged
        .on_message(0, &append(3, 0, 0, 0, 0), &Vec::new())
        .unwrap();
    assert_eq!(diverged.leader(), Some(0));
    assert_eq!(
        diverged.on_snapshot_offered(0, 3, 0, 4096, 2),
        SnapshotOffer::Install,
        "another term before the position"
    );
    assert_eq!(
        diverged.on_snapshot_offered(0, 3, 0, 8192, 2),
        SnapshotOffer::Install,
        "past the log's end"
    );
    assert_eq!(
        diverged.on_snapshot_offered(0, 3, 0, 1024, 2),
        SnapshotOffer::Stale,
        "below its commit"
    );
    let mut empty = member(ConsensusConfig::new(3), follower, term + 2);
    let _ = empty.on_message(0, &append(term + 2, leader, 0, 0, 0), &Vec::new());
    assert_eq!(
        empty.on_snapshot_offered(0, term + 2, leader, position, position_term),
        SnapshotOffer::Install,
        "an empty log lacks the position"
    );
    // Not following: stale.
    let mut canvassing = member(ConsensusConfig::new(3), follower, term);
    assert_eq!(
        canvassing.on_snapshot_offered(0, term, leader, position, position_term),
        SnapshotOffer::Stale
    );
    assert!(!canvassing.on_snapshot_chunk(0, term, leader));
}

/// A leader whose log was purged below a term's base finds a refusing member's resume point
/// by walking from its log's start, not from the purged base: it asks for no snapshot for a
/// member that has the log from there on. A success clears a refusal below the match, so a
/// later one counts as the first again.
#[test]
fn a_refusal_above_a_purged_leaders_start_resumes_there_without_a_snapshot() {
    let (mut cluster, leader, log) = settled(30);
    let follower = (leader + 1) % 3;
    let index = usize::try_from(follower).unwrap();
    let term = cluster.member(leader).consensus.current_term();
    let start = middle_boundary(&log);
    let end = u64::try_from(log.len()).unwrap();
    let purged = Purged { log: &log, start };
    let lead = &mut cluster.member_mut(leader).consensus;
    while lead.poll_output().is_some() {}
    let response = |position: u64, success: u8| {
        let mut buf = vec![0u8; 128];
        let mut encoder = append_response::Encoder::wrap(&mut buf).unwrap();
        encoder
            .term(term)
            .position(position)
            .follower_id(follower)
            .success(success);
        let length = encoder.finish();
        buf.truncate(length);
        buf
    };
    // The member's log ends one entry past the start; nothing of it was acknowledged yet.
    let resume =
        start + crate::log_entry::padded_length(&log[usize::try_from(start).unwrap()..]).unwrap();
    lead.peers[index].matched_position = 0;
    lead.on_message(0, &response(resume, 0), &purged).unwrap();
    let outputs: Vec<Output> = std::iter::from_fn(|| lead.poll_output()).collect();
    assert!(
        !outputs
            .iter()
            .any(|output| matches!(output, Output::SendSnapshot { .. })),
        "{outputs:?}"
    );
    let Some(Output::Send { message, .. }) = outputs.first() else {
        panic!("no probe: {outputs:?}");
    };
    let probe = append_request::Decoder::decode(message).unwrap();
    assert_eq!(
        probe.prev_position(),
        resume,
        "resumed where the member's log ends"
    );
    // Acknowledged to the end; then one refusal below that is noted, and a success clears it.
    lead.on_message(0, &response(end, 1), &purged).unwrap();
    lead.on_message(0, &response(resume, 0), &purged).unwrap();
    assert!(lead.peers[index].refused_below_match);
    assert_eq!(
        lead.peers[index].matched_position, end,
        "one refusal lowers nothing"
    );
    lead.on_message(0, &response(end, 1), &purged).unwrap();
    assert!(!lead.peers[index].refused_below_match);
    lead.on_message(0, &response(resume, 0), &purged).unwrap();
    assert_eq!(lead.peers[index].matched_position, end, "the first again");
}

/// A member that lost its log (term and vote kept) does not vote until its commit reaches the
/// first leader commit it hears of and covers an entry of its term; then it does.
#[test]
fn a_rebuilding_member_votes_only_once_it_has_caught_up() {
    let rebuilt = |rebuilding: bool| {
        let recovered = RecoveredState {
            current_term: 4,
            rebuilding,
            ..RecoveredState::default()
        };
        Consensus::new(ConsensusConfig::new(3), 1, recovered, 9, 0).unwrap()
    };
    for (rebuilding, granted) in [(false, 1), (true, 0)] {
        let mut consensus = rebuilt(rebuilding);
        let _ = sent(&mut consensus);
        consensus
            .on_message(
                0,
                &encode_vote_request(4, 2, CONSENSUS_PROTOCOL.version),
                &Vec::new(),
            )
            .unwrap();
        let replies = sent(&mut consensus);
        let vote = crate::protocol::vote::Decoder::decode(&replies[0]).unwrap();
        assert_eq!(vote.granted(), granted, "rebuilding {rebuilding}");
    }
    // In a running cluster a rebuilding follower catches up from the leader, then votes.
    let (mut cluster, leader, _) = settled(30);
    let follower = (leader + 1) % 3;
    let term = cluster.member(leader).consensus.current_term();
    let recovered = RecoveredState {
        current_term: term,
        rebuilding: true,
        ..RecoveredState::default()
    };
    let now = cluster.now_ns();
    let member = cluster.member_mut(follower);
    member.consensus =
        Consensus::new(ConsensusConfig::new(3), follower, recovered, 9, now).unwrap();
    member.log.clear();
    member.container = crate::container::ServiceContainer::new(crate::kv::KvStore::default(), 4096);
    assert!(cluster.member(follower).consensus.rebuilding());
    for _ in 0..50 {
        cluster.advance(100 * MS);
        if !cluster.member(follower).consensus.rebuilding() {
            break;
        }
    }
    let member = cluster.member(follower);
    assert!(!member.consensus.rebuilding(), "caught up");
    assert_eq!(member.log, cluster.member(leader).log);
}

/// The rebuild ends only when the commit has reached the first leader commit heard of and
/// covers an entry of the current term (a leader's own entry follows everything committed
/// before its term); then the member votes again.
#[test]
fn a_rebuild_ends_with_a_commit_in_the_current_term_past_the_first_leader_commit() {
    // Term 1's log to 4096, all committed (a snapshot there), in term 2, its log lost before.
    let rebuilding = || {
        let recovered = RecoveredState {
            current_term: 2,
            term_history: TermHistory::from_entries(vec![crate::term_history::TermStart {
                term: 1,
                base: 0,
            }])
            .unwrap(),
            log_end: 4096,
            commit_position: 4096,
            rebuilding: true,
            ..RecoveredState::default()
        };
        Consensus::new(ConsensusConfig::new(3), 1, recovered, 1, 0).unwrap()
    };
    let mut consensus = rebuilding();
    consensus.note_leader_commit(6144);
    assert!(consensus.rebuilding(), "below the first leader commit");
    consensus.note_leader_commit(0);
    assert!(
        consensus.rebuilding(),
        "the first commit heard of stays the target"
    );
    consensus.history.record(2, 4096);
    consensus.appended_position = 8192;
    consensus.commit_position = 6144;
    consensus.note_leader_commit(8192);
    assert!(!consensus.rebuilding(), "at the target, in term 2");
    // Past the target but in an earlier term than the current one: still rebuilding.
    let mut consensus = rebuilding();
    consensus.note_leader_commit(1024);
    assert!(
        consensus.rebuilding(),
        "its commit holds no entry of term 2"
    );
    // Done: it votes for a candidate whose log is at least its own.
    consensus.history.record(2, 4096);
    consensus.appended_position = 8192;
    consensus.commit_position = 8192;
    consensus.note_leader_commit(8192);
    assert!(!consensus.rebuilding());
    let _ = sent(&mut consensus);
    let mut buf = vec![0u8; 64];
    let mut encoder = request_vote::Encoder::wrap(&mut buf).unwrap();
    encoder
        .candidate_term(2)
        .candidate_id(2)
        .log_term(2)
        .log_position(8192)
        .protocol_version(CONSENSUS_PROTOCOL.version.compose())
        .log_term_length(DEFAULT_TERM_LENGTH_U32);
    let length = encoder.finish();
    consensus
        .on_message(0, &buf[..length], &Vec::new())
        .unwrap();
    let replies = sent(&mut consensus);
    let vote = crate::protocol::vote::Decoder::decode(&replies[0]).unwrap();
    assert_eq!(vote.granted(), 1);
}

/// Each failed send doubles the pause before the next try, up to a heartbeat interval; an
/// answer from the member ends it.
#[test]
fn failed_sends_back_off_to_a_heartbeat_interval_and_an_answer_resets_them() {
    let (mut cluster, leader, log) = settled(10);
    let follower = (leader + 1) % 3;
    let index = usize::try_from(follower).unwrap();
    let end = u64::try_from(log.len()).unwrap();
    let lead = &mut cluster.member_mut(leader).consensus;
    let term = lead.current_term();
    let interval = lead.config().heartbeat_interval_ns;
    let now = lead.now_ns;
    let mut failed = vec![0u8; 256];
    let mut encoder = append_request::Encoder::wrap(&mut failed).unwrap();
    encoder
        .term(term)
        .prev_position(end - 128)
        .prev_term(term)
        .entry_term(term)
        .leader_id(leader);
    let length = encoder
        .entries(&log[usize::try_from(end - 128).unwrap()..])
        .unwrap()
        .finish();
    let mut pauses = Vec::new();
    for _ in 0..10 {
        lead.peers[index].next_position = end;
        lead.peers[index].matched_position = end - 128;
        lead.on_send_failed(follower, &failed[..length]);
        pauses.push(lead.peers[index].retry_at_ns - now);
    }
    assert_eq!(&pauses[..4], &[MS, 2 * MS, 4 * MS, 8 * MS]);
    assert_eq!(
        *pauses.last().unwrap(),
        interval,
        "at most a heartbeat interval"
    );
    let mut buf = vec![0u8; 128];
    let mut encoder = append_response::Encoder::wrap(&mut buf).unwrap();
    encoder
        .term(term)
        .position(end)
        .follower_id(follower)
        .success(1);
    let length = encoder.finish();
    lead.on_message(now, &buf[..length], &log).unwrap();
    assert_eq!(lead.peers[index].send_failures, 0);
}
