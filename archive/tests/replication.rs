//! Replication between two archives, each with its own driver, over UDP: a stopped recording
//! copied whole, a live one followed until it stops, and a copy extended with what the source
//! recorded since. The copy replays byte for byte as the source does, at the same positions.

mod common;

use std::time::Instant;

use common::{DEADLINE, Node, messages, receive, wait_for};
use tern_archive::client::{ArchiveClient, ArchiveClientConfig, RecordingInfo};
use tern_engine::client::{OfferResult, Publication};

fn port() -> u16 {
    std::net::UdpSocket::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn publish(publication: &Publication, messages: &[Vec<u8>]) -> Vec<i64> {
    let deadline = Instant::now() + DEADLINE;
    messages
        .iter()
        .map(|message| {
            loop {
                match publication.offer(message) {
                    OfferResult::Ok(position) => break position,
                    OfferResult::BackPressured
                    | OfferResult::AdminAction
                    | OfferResult::NotConnected => {
                        assert!(Instant::now() < deadline, "offer stuck");
                        std::thread::yield_now();
                    }
                    other => panic!("{other:?}"),
                }
            }
        })
        .collect()
}

struct Pair {
    source: Node,
    destination: Node,
    source_control: String,
}

fn pair(name: &str) -> Pair {
    let source_control = format!("tern:udp?endpoint=127.0.0.1:{}", port());
    let control = source_control.clone();
    let source = Node::start(&format!("{name}-source"), move |config| {
        config.control_channel = control
    });
    let response = format!("tern:udp?endpoint=127.0.0.1:{}", port());
    let destination = Node::start(&format!("{name}-destination"), move |config| {
        config.replication_response_channel = response;
    });
    Pair {
        source,
        destination,
        source_control,
    }
}

impl Pair {
    fn source_client(&self) -> ArchiveClient {
        ArchiveClient::connect(
            &self.source.tern,
            ArchiveClientConfig {
                control_channel: self.source_control.clone(),
                ..ArchiveClientConfig::default()
            },
        )
        .unwrap()
    }
}

fn stopped_copy(client: &mut ArchiveClient, stream_id: i32, stop: i64) -> RecordingInfo {
    let deadline = Instant::now() + DEADLINE;
    loop {
        let listed = client.list_recordings_for(0, 10, stream_id, "").unwrap();
        if let Some(found) = listed
            .iter()
            .find(|recording| recording.stop_timestamp >= 0 && recording.stop_position == stop)
        {
            return found.clone();
        }
        assert!(
            Instant::now() < deadline,
            "the copy never reached {stop}, stopped: {listed:?}"
        );
        std::thread::sleep(std::time::Duration::from_millis(1));
    }
}

#[test]
fn a_stopped_recording_is_copied_whole_and_replays_identically() {
    let pair = pair("replicate-stopped");
    let mut source = pair.source_client();
    source.start_recording("tern:ipc", 500).unwrap();
    let publication = pair.source.tern.add_publication("tern:ipc", 500).unwrap();
    publication.wait_connected(DEADLINE).unwrap();
    let sent = messages(1500, 5);
    let positions = publish(&publication, &sent);
    let stop = *positions.last().unwrap();
    wait_for("the source recording", || {
        source.recording_position(0).ok().flatten() == Some(stop)
    });
    source.stop_recording("tern:ipc", 500).unwrap();
    let original = source.list_recording(0).unwrap();

    let mut destination = pair.destination.archive_client();
    let replication_channel = format!("tern:udp?endpoint=127.0.0.1:{}", port());
    let correlation_id = destination
        .send(&tern_archive::client::Request::Replicate {
            source_recording_id: 0,
            destination_recording_id: -1,
            source_control_channel: &pair.source_control,
            source_control_stream_id: 10,
            replication_channel: &replication_channel,
            follow: false,
        })
        .unwrap();
    // The answer, then a signal naming the copy and where it will end, then one when it ends.
    let mut signals = Vec::new();
    wait_for("the replication's signals", || {
        destination.poll();
        while let Some(signal) = destination.take_signal(correlation_id) {
            signals.push(signal);
        }
        signals.len() == 2
    });
    let response = destination.take_response(correlation_id).unwrap();
    assert_eq!(
        response.code,
        tern_archive::control_protocol::ResponseCode::Ok
    );
    use tern_archive::control_protocol::RecordingSignal;
    assert_eq!(
        signals
            .iter()
            .map(|signal| (signal.signal, signal.position))
            .collect::<Vec<_>>(),
        [
            (RecordingSignal::Replicate, stop),
            (RecordingSignal::ReplicateEnd, stop)
        ]
    );
    let copy = stopped_copy(&mut destination, 500, stop);
    assert_eq!(signals[0].recording_id, copy.recording_id);
    assert_eq!(
        (
            copy.start_position,
            copy.initial_term_id,
            copy.term_length,
            copy.session_id,
            copy.channel.as_str()
        ),
        (
            original.start_position,
            original.initial_term_id,
            original.term_length,
            original.session_id,
            "tern:ipc"
        )
    );
    let mut replayed = pair
        .destination
        .tern
        .add_subscription("tern:ipc", 600)
        .unwrap();
    destination
        .replay(copy.recording_id, -1, -1, "tern:ipc", 600)
        .unwrap();
    let expected: Vec<(i64, Vec<u8>)> = positions.into_iter().zip(sent).collect();
    assert_eq!(receive(&mut replayed, expected.len()), expected);
}

#[test]
fn a_live_recording_is_followed_until_it_stops_and_a_copy_is_extended() {
    let pair = pair("replicate-live");
    let mut source = pair.source_client();
    source.start_recording("tern:ipc", 510).unwrap();
    let publication = pair.source.tern.add_publication("tern:ipc", 510).unwrap();
    publication.wait_connected(DEADLINE).unwrap();
    let first = messages(300, 6);
    let mut positions = publish(&publication, &first);
    wait_for("the source recording", || {
        source.recording_position(0).ok().flatten() == positions.last().copied()
    });
    let mut destination = pair.destination.archive_client();
    let replication_channel = format!("tern:udp?endpoint=127.0.0.1:{}", port());
    destination
        .replicate(
            0,
            -1,
            (&pair.source_control, 10),
            &replication_channel,
            true,
        )
        .unwrap();
    let second = messages(700, 7);
    positions.extend(publish(&publication, &second));
    let stop = *positions.last().unwrap();
    wait_for("the source recording", || {
        source.recording_position(0).ok().flatten() == Some(stop)
    });
    source.stop_recording("tern:ipc", 510).unwrap();
    let copy = stopped_copy(&mut destination, 510, stop);
    let all: Vec<Vec<u8>> = first.into_iter().chain(second).collect();
    let mut replayed = pair
        .destination
        .tern
        .add_subscription("tern:ipc", 610)
        .unwrap();
    destination
        .replay(copy.recording_id, -1, -1, "tern:ipc", 610)
        .unwrap();
    let expected: Vec<(i64, Vec<u8>)> =
        positions.iter().copied().zip(all.iter().cloned()).collect();
    assert_eq!(receive(&mut replayed, expected.len()), expected);

    // The source recording is extended (the publication goes on); the copy catches up by
    // extension: only what is new travels.
    source.extend_recording(0, "tern:ipc", 510).unwrap();
    let third = messages(200, 8);
    let more = publish(&publication, &third);
    let new_stop = *more.last().unwrap();
    wait_for("the extension", || {
        source.recording_position(0).ok().flatten() == Some(new_stop)
    });
    source.stop_recording("tern:ipc", 510).unwrap();
    destination
        .replicate(
            0,
            copy.recording_id,
            (&pair.source_control, 10),
            &replication_channel,
            false,
        )
        .unwrap();
    let extended = stopped_copy(&mut destination, 510, new_stop);
    assert_eq!(extended.recording_id, copy.recording_id);
    let mut tail = pair
        .destination
        .tern
        .add_subscription("tern:ipc", 620)
        .unwrap();
    destination
        .replay(copy.recording_id, stop, -1, "tern:ipc", 620)
        .unwrap();
    let expected: Vec<(i64, Vec<u8>)> = more.into_iter().zip(third).collect();
    assert_eq!(receive(&mut tail, expected.len()), expected);
}

#[test]
fn replication_from_a_source_that_does_not_have_the_recording_fails_with_its_reason() {
    let pair = pair("replicate-missing");
    let mut destination = pair.destination.archive_client();
    let replication_channel = format!("tern:udp?endpoint=127.0.0.1:{}", port());
    let correlation_id = destination
        .send(&tern_archive::client::Request::Replicate {
            source_recording_id: 42,
            destination_recording_id: -1,
            source_control_channel: &pair.source_control,
            source_control_stream_id: 10,
            replication_channel: &replication_channel,
            follow: false,
        })
        .unwrap();
    // The request is taken (a replication id), then the failure arrives with the same
    // correlation id.
    let mut responses = Vec::new();
    wait_for("the failure", || {
        destination.poll();
        while let Some(response) = destination.take_response(correlation_id) {
            responses.push(response);
        }
        responses.len() == 2
    });
    assert_eq!(
        responses[0].code,
        tern_archive::control_protocol::ResponseCode::Ok
    );
    assert_eq!(
        responses[1].code,
        tern_archive::control_protocol::ResponseCode::Error
    );
    assert!(
        responses[1].message.contains("no recording 42"),
        "{}",
        responses[1].message
    );
}
