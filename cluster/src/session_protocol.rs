//! The client session protocol: commands clients send to the cluster (ingress) and the answers
//! they get back (egress), as versioned `tern-codec` schemas.
//!
//! A client first sends a member `session_connect`, naming the channel and stream where it reads
//! the session's responses (its egress), and sends it again now and then while idle (a member
//! forgets a session's egress after [`SESSION_TIMEOUT_NS`] without a word from it). The member
//! answers request id 0: [`ResponseCode::Applied`] when it leads, [`ResponseCode::Redirect`]
//! otherwise.
//!
//! A session is identified by its id; its requests are numbered from 1 and a client sends
//! request `n + 1` only after request `n` is answered, retrying `n` (to any member) until it is.
//! The cluster applies each request once ([`crate::container`]) and answers a retry with the
//! first application's position and response. A member that is not the leader answers
//! [`ResponseCode::Redirect`] with the leader it knows of. Both templates use the *reject*
//! policy: a member or client that does not know one answers or reports an error and carries on.

use tern_codec::{DecodeError, MessageHeader, Schema, SemanticVersion};

/// The session protocol's schema and semantic version.
///
/// 1.1.0: `session_connect`, which tells a member where to send a session's responses, and
/// `admin_request` (a snapshot).
pub const SESSION_PROTOCOL: Schema = Schema::new("session", 22, SemanticVersion::new(1, 1, 0));

tern_codec::enumeration! {
    /// What a response says.
    pub enum ResponseCode: u8 {
        /// The request was applied; the payload is the service's response.
        Applied = 0,
        /// This member is not the leader; try `leader_hint` (or another member when it is
        /// `u32::MAX`).
        Redirect = 1,
        /// The leader cannot take commands now (back pressure); retry later.
        Busy = 2,
    }
}

/// `leader_hint` when no leader is known.
pub const NO_LEADER: u32 = u32::MAX;

tern_codec::message! {
    /// A client's command for the service.
    pub mod session_request (schema = SESSION_PROTOCOL, template = 1, policy = Reject) {
        block {
            /// The session.
            session_id @ 0 since 0: u64,
            /// The request number within the session.
            request_id @ 8 since 0: u64,
        }
        groups {}
        var_data {
            /// The service command.
            payload (max = 4096) since 0: bytes,
        }
    }
}

tern_codec::message! {
    /// The cluster's answer to a request.
    pub mod session_response (schema = SESSION_PROTOCOL, template = 2, policy = Reject) {
        block {
            /// The session.
            session_id @ 0 since 0: u64,
            /// The request answered.
            request_id @ 8 since 0: u64,
            /// The log position where the request was applied (applied responses only).
            position @ 16 since 0: u64,
            /// The leader the member knows of, or [`NO_LEADER`].
            leader_hint @ 24 since 0: u32,
            /// What the response says.
            code @ 28 since 0: ResponseCode,
        }
        groups {}
        var_data {
            /// The service's response (applied responses only).
            payload (max = 4096) since 0: bytes,
        }
    }
}

tern_codec::message! {
    /// A client names where a member sends the session's responses (and keeps it alive).
    pub mod session_connect (schema = SESSION_PROTOCOL, template = 3, policy = Reject) {
        block {
            /// The session.
            session_id @ 0 since 0: u64,
            /// The stream the client reads responses on.
            response_stream_id @ 8 since 0: i32,
        }
        groups {}
        var_data {
            /// The channel the client reads responses on (a `tern:udp?endpoint=...` URI).
            response_channel (max = 512) since 0: str,
        }
    }
}

/// [`admin_request`]'s action: take a cluster-wide snapshot.
pub const ADMIN_SNAPSHOT: u8 = 1;

tern_codec::message! {
    /// An operator's request through a session, numbered with its requests and answered like
    /// them (applied once, whatever the retries).
    pub mod admin_request (schema = SESSION_PROTOCOL, template = 4, policy = Reject) {
        block {
            /// The session.
            session_id @ 0 since 0: u64,
            /// The request number within the session.
            request_id @ 8 since 0: u64,
            /// What to do: [`ADMIN_SNAPSHOT`].
            action @ 16 since 0: u8,
        }
        groups {}
        var_data {}
    }
}

/// A member forgets a session's egress after this long without a connect or a request from it;
/// clients send `session_connect` at least three times as often.
pub const SESSION_TIMEOUT_NS: u64 = 10_000_000_000;

/// Encodes a connect into `buf`; returns its length.
pub fn encode_connect(
    buf: &mut [u8],
    session_id: u64,
    response_stream_id: i32,
    response_channel: &str,
) -> Result<usize, tern_codec::EncodeError> {
    let mut encoder = session_connect::Encoder::wrap(buf)?;
    encoder
        .session_id(session_id)
        .response_stream_id(response_stream_id);
    Ok(encoder.response_channel(response_channel)?.finish())
}

/// Encodes a request into a new buffer.
pub fn encode_request(
    session_id: u64,
    request_id: u64,
    payload: &[u8],
) -> Result<Vec<u8>, tern_codec::EncodeError> {
    let mut buf = vec![0u8; 64 + payload.len()];
    let mut encoder = session_request::Encoder::wrap(&mut buf)?;
    encoder.session_id(session_id).request_id(request_id);
    let length = encoder.payload(payload)?.finish();
    buf.truncate(length);
    Ok(buf)
}

/// A decoded response, owned.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Response {
    /// The session.
    pub session_id: u64,
    /// The request answered.
    pub request_id: u64,
    /// Where it was applied.
    pub position: u64,
    /// The leader hint.
    pub leader_hint: u32,
    /// What the response says.
    pub code: ResponseCode,
    /// The service's response.
    pub payload: Vec<u8>,
}

impl Response {
    /// Encodes the response into a new buffer.
    pub fn encode(&self) -> Result<Vec<u8>, tern_codec::EncodeError> {
        let mut buf = vec![0u8; 64 + self.payload.len()];
        let mut encoder = session_response::Encoder::wrap(&mut buf)?;
        encoder
            .session_id(self.session_id)
            .request_id(self.request_id)
            .position(self.position)
            .leader_hint(self.leader_hint)
            .code(self.code);
        let length = encoder.payload(&self.payload)?.finish();
        buf.truncate(length);
        Ok(buf)
    }

    /// Decodes a response.
    pub fn decode(bytes: &[u8]) -> Result<Self, DecodeError> {
        let header = MessageHeader::decode(bytes)?;
        if header.schema_id != SESSION_PROTOCOL.id {
            return Err(DecodeError::WrongSchema {
                expected: SESSION_PROTOCOL.id,
                actual: header.schema_id,
            });
        }
        let decoder = session_response::Decoder::decode(bytes)?;
        Ok(Self {
            session_id: decoder.session_id(),
            request_id: decoder.request_id(),
            position: decoder.position(),
            leader_hint: decoder.leader_hint(),
            code: decoder.code(),
            payload: decoder.payload().to_vec(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_and_responses_round_trip() {
        let request = encode_request(3, 4, b"command").unwrap();
        let decoded = session_request::Decoder::decode(&request).unwrap();
        assert_eq!((decoded.session_id(), decoded.request_id()), (3, 4));
        assert_eq!(decoded.payload(), b"command");
        let response = Response {
            session_id: 3,
            request_id: 4,
            position: 64,
            leader_hint: 1,
            code: ResponseCode::Applied,
            payload: vec![1, 2],
        };
        assert_eq!(
            Response::decode(&response.encode().unwrap()).unwrap(),
            response
        );
        assert!(
            Response::decode(&request).is_err(),
            "a request is not a response"
        );
        assert!(Response::decode(&[1, 2, 3]).is_err());
    }
}
