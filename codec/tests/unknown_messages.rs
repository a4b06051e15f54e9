//! The unknown-message policy, exercised by a consumer the way every tern consumer works: match
//! the templates it knows, and send everything else to `on_unknown`.

mod common;

use common::v1_0;
use tern_codec::{
    DecodeError, MESSAGE_HEADER_LENGTH, MessageHeader, UnknownAction, UnknownMessage,
    UnknownPolicy, on_unknown,
};

/// A log consumer that knows only the 1.0 `order` message.
#[derive(Default)]
struct Consumer {
    applied: Vec<u64>,
    ignored: u64,
    rejected: Vec<UnknownMessage>,
    terminated: Option<UnknownMessage>,
}

impl Consumer {
    /// Applies a log of length-prefixed messages until it ends or a message terminates it.
    fn consume(&mut self, log: &[Vec<u8>]) {
        for message in log {
            let header = MessageHeader::decode(message).unwrap();
            let body = &message[MESSAGE_HEADER_LENGTH..];
            let known = header.schema_id == v1_0::SCHEMA.id
                && header.template_id == v1_0::order::TEMPLATE_ID
                && header.major() == v1_0::SCHEMA.version.major;
            if known {
                let order = v1_0::order::Decoder::from_parts(&header, body).unwrap();
                self.applied.push(order.order_id());
                continue;
            }
            match on_unknown(&header) {
                UnknownAction::Ignore => self.ignored += 1,
                UnknownAction::Reject(message) => self.rejected.push(message),
                UnknownAction::Terminate(message) => {
                    self.terminated = Some(message);
                    return;
                }
            }
        }
    }
}

fn order(id: u64) -> Vec<u8> {
    let mut buf = [0u8; 64];
    let mut encoder = v1_0::order::Encoder::wrap(&mut buf).unwrap();
    encoder.order_id(id);
    let length = encoder
        .fills(0, |_, _| {})
        .unwrap()
        .symbol("X")
        .unwrap()
        .finish();
    buf[..length].to_vec()
}

fn unknown(policy: UnknownPolicy, number: u16) -> Vec<u8> {
    let mut buf = vec![0u8; MESSAGE_HEADER_LENGTH + 4];
    MessageHeader {
        block_length: 4,
        template_id: policy.template_id(number),
        schema_id: v1_0::SCHEMA.id,
        version: 0x0003,
    }
    .encode(&mut buf)
    .unwrap();
    buf
}

#[test]
fn ignore_skips_and_counts() {
    let mut consumer = Consumer::default();
    consumer.consume(&[order(1), unknown(UnknownPolicy::Ignore, 9), order(2)]);
    assert_eq!(consumer.applied, [1, 2]);
    assert_eq!(consumer.ignored, 1);
    assert!(consumer.rejected.is_empty() && consumer.terminated.is_none());
}

#[test]
fn reject_answers_with_an_error_and_keeps_the_session() {
    let mut consumer = Consumer::default();
    consumer.consume(&[order(1), unknown(UnknownPolicy::Reject, 9), order(2)]);
    assert_eq!(consumer.applied, [1, 2]);
    assert_eq!(consumer.rejected.len(), 1);
    assert_eq!(consumer.rejected[0].template_id, 9);
}

#[test]
fn terminate_stops_before_anything_after_it() {
    let mut consumer = Consumer::default();
    consumer.consume(&[order(1), unknown(UnknownPolicy::Terminate, 9), order(2)]);
    assert_eq!(consumer.applied, [1]);
    let message = consumer.terminated.unwrap();
    assert_eq!(message.template_id, 0x8009);
    assert_eq!(message.to_string(), "schema 42 template 0x8009 version 0.3");
}

#[test]
fn the_reserved_policy_bits_terminate() {
    let mut bytes = unknown(UnknownPolicy::Terminate, 9);
    bytes[3] |= 0xC0;
    let mut consumer = Consumer::default();
    consumer.consume(&[bytes, order(2)]);
    assert!(consumer.terminated.is_some());
    assert!(consumer.applied.is_empty());
}

#[test]
fn a_known_template_of_another_major_follows_its_policy() {
    // `order` is a terminate template: a 2.x order is unknown to a 1.x reader, so it stops.
    let mut future = order(3);
    future[7] = 2;
    let mut consumer = Consumer::default();
    consumer.consume(&[order(1), future.clone(), order(2)]);
    assert_eq!(consumer.applied, [1]);
    assert!(consumer.terminated.is_some());
    // The decoder itself refuses it too, naming both versions.
    assert!(matches!(
        v1_0::order::Decoder::decode(&future),
        Err(DecodeError::IncompatibleVersion {
            message_major: 2,
            ..
        })
    ));
}

#[test]
fn decoders_refuse_other_templates_and_schemas() {
    let mut bytes = order(1);
    bytes[2] = 2;
    assert!(matches!(
        v1_0::order::Decoder::decode(&bytes),
        Err(DecodeError::WrongTemplate { .. })
    ));
    let mut bytes = order(1);
    bytes[4] = 43;
    assert!(matches!(
        v1_0::order::Decoder::decode(&bytes),
        Err(DecodeError::WrongSchema {
            expected: 42,
            actual: 43
        })
    ));
}
