//! Control requests an archive cannot trust: bytes with no header, other schemas, unknown
//! templates, truncated and over-long messages, a newer major version, requests for sessions
//! that do not exist. Each gets a typed error where there is a session to answer, is dropped
//! where there is none, and the archive goes on serving every other client.

mod common;

use common::{DEADLINE, Node, wait_for};
use tern_archive::client::{ArchiveClient, ArchiveClientConfig};
use tern_archive::control_protocol::{self as protocol, ARCHIVE_CONTROL, ResponseCode};
use tern_codec::MessageHeader;
use tern_engine::client::OfferResult;

fn header(template_id: u16, block_length: u16, major: u8) -> Vec<u8> {
    let mut bytes = vec![0u8; 8];
    MessageHeader {
        block_length,
        template_id,
        schema_id: ARCHIVE_CONTROL.id,
        version: u16::from(major) << 8,
    }
    .encode(&mut bytes)
    .unwrap();
    bytes
}

#[test]
fn malformed_requests_get_typed_errors_and_the_archive_serves_on() {
    let node = Node::start("hostile", |_| {});
    let mut victim = node.archive_client();
    let session = victim.control_session_id();
    let raw = node
        .tern
        .add_publication("tern:ipc", protocol::CONTROL_STREAM_ID_DEFAULT)
        .unwrap();
    raw.wait_connected(DEADLINE).unwrap();
    let send = |bytes: &[u8]| {
        let deadline = std::time::Instant::now() + DEADLINE;
        while !matches!(raw.offer(bytes), OfferResult::Ok(_)) {
            assert!(std::time::Instant::now() < deadline);
        }
    };
    // No header, another schema, a connect that does not decode: dropped, nobody to answer.
    send(&[1, 2, 3]);
    let mut other_schema = header(4, 24, 1);
    other_schema[4] = 99;
    send(&other_schema);
    send(&header(protocol::connect::TEMPLATE_ID, 200, 1));
    // A request for a session that does not exist: dropped.
    let mut ghost = header(protocol::stop_replay::TEMPLATE_ID, 24, 1);
    ghost.extend_from_slice(&999i64.to_le_bytes());
    ghost.extend_from_slice(&5i64.to_le_bytes());
    ghost.extend_from_slice(&1i64.to_le_bytes());
    send(&ghost);
    // For a real session: each its typed error, with its correlation id.
    let with_ids =
        |template_id: u16, block_length: u16, major: u8, correlation_id: i64, rest: &[u8]| {
            let mut bytes = header(template_id, block_length, major);
            bytes.extend_from_slice(&session.to_le_bytes());
            bytes.extend_from_slice(&correlation_id.to_le_bytes());
            bytes.extend_from_slice(rest);
            bytes
        };
    let cases = [
        // An unknown template.
        (
            with_ids(0x2FFF, 16, 1, 101, &[]),
            ResponseCode::MalformedRequest,
        ),
        // A start-recording whose block claims more than was sent.
        (
            with_ids(protocol::start_recording::TEMPLATE_ID, 24, 1, 102, &[0; 4]),
            ResponseCode::MalformedRequest,
        ),
        // A channel length running past the end.
        (
            with_ids(
                protocol::start_recording::TEMPLATE_ID,
                24,
                1,
                103,
                &[1, 0, 0, 0, 0, 0, 0, 0, 0xFF, 0xFF, 0, 0, b't'],
            ),
            ResponseCode::MalformedRequest,
        ),
        // A newer major version of a known request.
        (
            with_ids(
                protocol::list_recording::TEMPLATE_ID,
                24,
                2,
                104,
                &0i64.to_le_bytes(),
            ),
            ResponseCode::MalformedRequest,
        ),
        // A recording operation this build does not know.
        (
            with_ids(
                protocol::recording_request::TEMPLATE_ID,
                33,
                1,
                105,
                &[0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 77],
            ),
            ResponseCode::MalformedRequest,
        ),
    ];
    for (bytes, _) in &cases {
        send(bytes);
    }
    for correlation_id in 101..=105 {
        let mut response = None;
        wait_for("a typed error", || {
            victim.poll();
            response = victim.take_response(correlation_id);
            response.is_some()
        });
        let response = response.unwrap();
        let expected = cases[usize::try_from(correlation_id - 101).unwrap()].1;
        assert_eq!(
            response.code, expected,
            "{correlation_id}: {}",
            response.message
        );
        assert!(!response.message.is_empty());
    }
    // The session and the archive are fine: requests work, for this client and a new one.
    assert!(victim.list_recordings(0, 10).unwrap().is_empty());
    let mut other = node.archive_client();
    other.start_recording("tern:ipc", 33).unwrap();
    assert!(other.control_session_id() != session);
}

#[test]
fn a_client_of_another_major_version_is_refused_naming_both() {
    let node = Node::start("major", |_| {});
    let subscription = node.tern.add_subscription("tern:ipc", 21).unwrap();
    let raw = node
        .tern
        .add_publication("tern:ipc", protocol::CONTROL_STREAM_ID_DEFAULT)
        .unwrap();
    raw.wait_connected(DEADLINE).unwrap();
    let mut buf = vec![0u8; 128];
    let mut encoder = protocol::connect::Encoder::wrap(&mut buf).unwrap();
    encoder
        .correlation_id(77)
        .response_stream_id(21)
        .version(tern_codec::SemanticVersion::new(9, 0, 0).compose());
    let length = encoder.response_channel("tern:ipc").unwrap().finish();
    while !matches!(raw.offer(&buf[..length]), OfferResult::Ok(_)) {}
    let mut subscription = subscription;
    let mut answer = None;
    wait_for("the refusal", || {
        subscription.poll(
            |payload, _| {
                if let Ok(decoded) = protocol::control_response::Decoder::decode(payload) {
                    answer = Some((decoded.code(), decoded.error_message().to_owned()));
                }
            },
            10,
        );
        answer.is_some()
    });
    let (code, message) = answer.unwrap();
    assert_eq!(code, ResponseCode::UnsupportedVersion);
    assert!(
        message.contains("9.0.0") && message.contains("1.0.0"),
        "{message}"
    );
    // A client that speaks this version still connects.
    let client = ArchiveClient::connect(&node.tern, ArchiveClientConfig::default());
    assert!(client.is_ok());
}

#[test]
fn a_request_in_several_fragments_is_put_together_and_answered() {
    let node = Node::start("fragments", |_| {});
    let mut client = node.archive_client();
    // A replicate request with two long channels takes more than one frame. The source channel
    // is nonsense, so the replication fails; what matters is that the request was heard.
    let long = format!("tern:nonsense?{}", "x".repeat(1000));
    let correlation_id = client
        .send(&tern_archive::client::Request::Replicate {
            source_recording_id: 0,
            destination_recording_id: -1,
            source_control_channel: &long,
            source_control_stream_id: 10,
            replication_channel: &long,
            follow: false,
        })
        .unwrap();
    let mut responses = Vec::new();
    wait_for("both answers", || {
        client.poll();
        while let Some(response) = client.take_response(correlation_id) {
            responses.push(response);
        }
        responses.len() == 2
    });
    assert_eq!(responses[0].code, ResponseCode::Ok);
    assert_eq!(responses[1].code, ResponseCode::Error);
    assert!(
        responses[1].message.contains("connecting to the source"),
        "{}",
        responses[1].message
    );
}
