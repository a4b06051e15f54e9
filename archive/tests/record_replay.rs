//! Record a live stream through the archive, replay it: byte-identical messages at their
//! original positions, fragmented and not, across many segments; from any frame; following a
//! live recording; bounded; and the catalog's view of it all through the control protocol.

mod common;

use common::{DEADLINE, Node, messages, receive, wait_for};
use tern_archive::client::ArchiveClientError;
use tern_archive::control_protocol::{REPLAY_FOLLOW_LIVE, ResponseCode};
use tern_engine::client::OfferResult;

fn publish(publication: &tern_engine::client::Publication, messages: &[Vec<u8>]) -> Vec<i64> {
    let deadline = std::time::Instant::now() + DEADLINE;
    messages
        .iter()
        .map(|message| {
            loop {
                match publication.offer(message) {
                    OfferResult::Ok(position) => break position,
                    OfferResult::BackPressured
                    | OfferResult::AdminAction
                    | OfferResult::NotConnected => {
                        assert!(std::time::Instant::now() < deadline, "offer stuck");
                        std::thread::yield_now();
                    }
                    other => panic!("{other:?}"),
                }
            }
        })
        .collect()
}

#[test]
fn a_recorded_stream_replays_byte_identical_at_its_original_positions() {
    let node = Node::start("identical", |_| {});
    let mut archive = node.archive_client();
    archive.start_recording("tern:ipc", 1001).unwrap();
    let publication = node.tern.add_publication("tern:ipc", 1001).unwrap();
    publication.wait_connected(DEADLINE).unwrap();
    let sent = messages(1000, 1);
    let positions = publish(&publication, &sent);
    let end = *positions.last().unwrap();
    assert!(end > 8 * 128 * 1024, "the recording spans many segments");
    let recording_id = 0;
    wait_for("the recording to catch up", || {
        archive.recording_position(recording_id).ok().flatten() == Some(end)
    });
    archive.stop_recording("tern:ipc", 1001).unwrap();
    assert_eq!(archive.stop_position(recording_id).unwrap(), Some(end));
    let listed = archive.list_recordings(0, 10).unwrap();
    assert_eq!(listed.len(), 1);
    assert_eq!(
        (listed[0].start_position, listed[0].stop_position),
        (0, end)
    );
    assert_eq!(
        (listed[0].stream_id, listed[0].channel.as_str()),
        (1001, "tern:ipc")
    );
    assert_eq!(listed[0].session_id, publication.session_id());

    // The whole recording.
    let mut replayed = node.tern.add_subscription("tern:ipc", 2002).unwrap();
    archive
        .replay(recording_id, -1, -1, "tern:ipc", 2002)
        .unwrap();
    let received = receive(&mut replayed, sent.len());
    let expected: Vec<(i64, Vec<u8>)> = positions
        .iter()
        .copied()
        .zip(sent.iter().cloned())
        .collect();
    assert_eq!(received, expected);

    // From a message in the middle, for a bounded length: exactly the messages in between.
    let (from_index, to_index) = (211, 389);
    let from = positions[from_index - 1];
    let length = positions[to_index - 1] - from;
    let mut bounded = node.tern.add_subscription("tern:ipc", 2003).unwrap();
    archive
        .replay(recording_id, from, length, "tern:ipc", 2003)
        .unwrap();
    let received = receive(&mut bounded, to_index - from_index);
    assert_eq!(received, expected[from_index..to_index].to_vec());
    // Nothing past the bound arrives.
    std::thread::sleep(std::time::Duration::from_millis(50));
    assert_eq!(bounded.poll(|_, _| {}, 10), 0);
}

#[test]
fn a_replay_follows_a_live_recording_until_it_stops() {
    let node = Node::start("follow", |_| {});
    let mut archive = node.archive_client();
    archive.start_recording("tern:ipc", 1101).unwrap();
    let publication = node.tern.add_publication("tern:ipc", 1101).unwrap();
    publication.wait_connected(DEADLINE).unwrap();
    let first = messages(50, 2);
    let mut positions = publish(&publication, &first);
    wait_for("the recording to start", || {
        archive.recording_position(0).ok().flatten() == positions.last().copied()
    });
    let mut follower = node.tern.add_subscription("tern:ipc", 2101).unwrap();
    archive
        .replay(0, -1, REPLAY_FOLLOW_LIVE, "tern:ipc", 2101)
        .unwrap();
    let second = messages(300, 3);
    positions.extend(publish(&publication, &second));
    let all: Vec<Vec<u8>> = first.into_iter().chain(second).collect();
    let received = receive(&mut follower, all.len());
    let expected: Vec<(i64, Vec<u8>)> = positions.iter().copied().zip(all).collect();
    assert_eq!(received, expected);
    archive.stop_recording("tern:ipc", 1101).unwrap();
    // The replay ends with the recording: its image goes away.
    wait_for("the replay to end", || {
        follower.poll(|_, _| {}, 10);
        follower
            .images()
            .iter()
            .all(|image| image.is_end_of_stream() || image.is_closed())
    });
}

#[test]
fn requests_that_cannot_be_carried_out_get_typed_errors() {
    let node = Node::start("errors", |_| {});
    let mut archive = node.archive_client();
    let code = |error: ArchiveClientError| match error {
        ArchiveClientError::Archive { code, .. } => code,
        other => panic!("{other}"),
    };
    assert_eq!(
        code(archive.list_recording(7).unwrap_err()),
        ResponseCode::UnknownRecording
    );
    assert_eq!(
        code(archive.replay(7, -1, -1, "tern:ipc", 5).unwrap_err()),
        ResponseCode::UnknownRecording
    );
    assert_eq!(
        code(archive.stop_recording("tern:ipc", 5).unwrap_err()),
        ResponseCode::UnknownSubscription
    );
    assert_eq!(
        code(archive.start_recording("tern:bogus", 5).unwrap_err()),
        ResponseCode::InvalidChannel
    );
    assert_eq!(
        code(
            archive
                .start_recording("tern:ipc?tether=false", 5)
                .unwrap_err()
        ),
        ResponseCode::InvalidChannel
    );
    // Longer than the catalog holds: refused before anything is recorded.
    let long = format!("tern:ipc?{}", "session-id=1|".repeat(44));
    assert!(long.len() > 512);
    assert_eq!(
        code(archive.start_recording(&long, 5).unwrap_err()),
        ResponseCode::InvalidChannel
    );
    archive.start_recording("tern:ipc", 5).unwrap();
    assert_eq!(
        code(archive.start_recording("tern:ipc", 5).unwrap_err()),
        ResponseCode::ActiveSubscription
    );
    let publication = node.tern.add_publication("tern:ipc", 5).unwrap();
    publication.wait_connected(DEADLINE).unwrap();
    let positions = publish(&publication, &messages(20, 4));
    wait_for("recording", || {
        archive.recording_position(0).ok().flatten() == positions.last().copied()
    });
    assert_eq!(
        code(archive.truncate_recording(0, 0).unwrap_err()),
        ResponseCode::ActiveRecording
    );
    assert_eq!(
        code(archive.purge_recording(0).unwrap_err()),
        ResponseCode::ActiveRecording
    );
    archive.stop_recording("tern:ipc", 5).unwrap();
    assert_eq!(
        code(archive.replay(0, 33, -1, "tern:ipc", 6).unwrap_err()),
        ResponseCode::InvalidPosition
    );
    assert_eq!(
        code(
            archive
                .replay(0, positions[19] + 64, -1, "tern:ipc", 6)
                .unwrap_err()
        ),
        ResponseCode::InvalidPosition
    );
    // Inside a frame, on the alignment: no frame starts there.
    assert_eq!(
        code(archive.truncate_recording(0, 64).unwrap_err()),
        ResponseCode::InvalidPosition
    );
    assert_eq!(
        code(archive.stop_replay(99).unwrap_err()),
        ResponseCode::UnknownReplay
    );

    // Truncate to a message boundary, then purge.
    archive.truncate_recording(0, positions[9]).unwrap();
    assert_eq!(archive.stop_position(0).unwrap(), Some(positions[9]));
    let mut replayed = node.tern.add_subscription("tern:ipc", 7).unwrap();
    archive.replay(0, -1, -1, "tern:ipc", 7).unwrap();
    assert_eq!(receive(&mut replayed, 10).len(), 10);
    archive.purge_recording(0).unwrap();
    assert!(archive.list_recordings(0, 10).unwrap().is_empty());
    assert_eq!(archive.list_recording(0).unwrap().state, 3);
    assert_eq!(
        code(archive.replay(0, -1, -1, "tern:ipc", 8).unwrap_err()),
        ResponseCode::UnknownRecording
    );
}

#[test]
fn a_stopped_recording_is_extended_by_another_publication_placed_at_its_stop() {
    let node = Node::start("extend", |_| {});
    let mut archive = node.archive_client();
    archive.start_recording("tern:ipc", 1200).unwrap();
    let first = node.tern.add_publication("tern:ipc", 1200).unwrap();
    first.wait_connected(DEADLINE).unwrap();
    let before = messages(150, 12);
    let mut positions = publish(&first, &before);
    let stop = *positions.last().unwrap();
    wait_for("the recording", || {
        archive.recording_position(0).ok().flatten() == Some(stop)
    });
    archive.stop_recording("tern:ipc", 1200).unwrap();
    drop(first);
    // A new publication (a new session) placed where the recording stopped, mid-segment.
    let recording = archive.list_recording(0).unwrap();
    let term_length = i64::from(recording.term_length);
    let term_id = recording
        .initial_term_id
        .wrapping_add(i32::try_from(stop / term_length).unwrap());
    let placed = format!(
        "tern:ipc?term-length={}|init-term-id={}|term-id={term_id}|term-offset={}",
        recording.term_length,
        recording.initial_term_id,
        stop % term_length
    );
    assert!(stop % (128 * 1024) != 0, "the extension starts mid-segment");
    archive.extend_recording(0, "tern:ipc", 1200).unwrap();
    let mut second = node.tern.add_exclusive_publication(&placed, 1200).unwrap();
    assert_ne!(second.session_id(), recording.session_id);
    second.wait_connected(DEADLINE).unwrap();
    let after = messages(150, 13);
    let deadline = std::time::Instant::now() + DEADLINE;
    for message in &after {
        loop {
            match second.offer(message) {
                OfferResult::Ok(position) => {
                    positions.push(position);
                    break;
                }
                _ => assert!(std::time::Instant::now() < deadline),
            }
        }
    }
    let end = *positions.last().unwrap();
    wait_for("the extension", || {
        archive.recording_position(0).ok().flatten() == Some(end)
    });
    archive.stop_recording("tern:ipc", 1200).unwrap();
    let mut replayed = node.tern.add_subscription("tern:ipc", 1201).unwrap();
    archive.replay(0, -1, -1, "tern:ipc", 1201).unwrap();
    let all: Vec<Vec<u8>> = before.into_iter().chain(after).collect();
    let expected: Vec<(i64, Vec<u8>)> = positions.into_iter().zip(all).collect();
    assert_eq!(receive(&mut replayed, expected.len()), expected);
}

#[test]
fn a_recording_written_through_io_uring_replays_identically() {
    if tern_engine::file_ring::probe().is_err() {
        assert!(
            std::env::var_os("TERN_REQUIRE_IO_URING").is_none(),
            "io_uring is required here"
        );
        eprintln!("io_uring unavailable: skipped");
        return;
    }
    let node = Node::start("io-uring", |config| {
        config.file_io = tern_archive::segment_writer::FileIo::IoUring;
    });
    let mut archive = node.archive_client();
    archive.start_recording("tern:ipc", 1300).unwrap();
    let publication = node.tern.add_publication("tern:ipc", 1300).unwrap();
    publication.wait_connected(DEADLINE).unwrap();
    let sent = messages(700, 14);
    let positions = publish(&publication, &sent);
    let end = *positions.last().unwrap();
    wait_for("the recording", || {
        archive.recording_position(0).ok().flatten() == Some(end)
    });
    archive.stop_recording("tern:ipc", 1300).unwrap();
    let mut replayed = node.tern.add_subscription("tern:ipc", 1301).unwrap();
    archive.replay(0, -1, -1, "tern:ipc", 1301).unwrap();
    let expected: Vec<(i64, Vec<u8>)> = positions.into_iter().zip(sent).collect();
    assert_eq!(receive(&mut replayed, expected.len()), expected);
}
