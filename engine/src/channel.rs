//! Channel URIs: `tern:ipc`, `tern:udp?endpoint=host:port|mtu=1408`, with `aeron:` accepted as an
//! alias for users coming from Aeron.
//!
//! ```text
//! tern:<media>[?<key>=<value>[|<key>=<value>]...]
//! ```
//!
//! Parameters are validated when the URI is parsed, and an error names the parameter and what it
//! requires. Unknown parameters are refused rather than ignored, so a typo cannot silently change
//! a stream's behaviour.

use tern_codec::frame::validate_mtu;
use tern_codec::position::validate_log_term_length;

/// The longest channel URI.
pub const CHANNEL_MAX_LENGTH: usize = 4096;

/// The transport of a channel.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Media {
    /// Shared memory between processes on one machine.
    Ipc,
    /// UDP unicast or multicast.
    Udp,
}

/// A parsed, validated channel.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChannelUri {
    /// The transport.
    pub media: Media,
    /// Bytes per term, if given.
    pub term_length: Option<u32>,
    /// The MTU, if given.
    pub mtu: Option<u32>,
    /// A fixed session id, if given.
    pub session_id: Option<i32>,
    /// The UDP endpoint (`host:port`), if given.
    pub endpoint: Option<String>,
    /// The UDP control endpoint, if given.
    pub control: Option<String>,
    /// The publication window in bytes, if given.
    pub publication_window: Option<u32>,
    /// Whether a slow subscriber may be left behind (`tether=false`).
    pub tether: bool,
    /// How long a closed publication lingers for its subscribers, if given (ns).
    pub linger_ns: Option<u64>,
}

/// Why a channel URI was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ChannelError {
    /// Not `tern:` or `aeron:`.
    #[error("channel {0:?} must start with tern: (or aeron:)")]
    Scheme(String),
    /// Neither `ipc` nor `udp`.
    #[error("channel media {0:?} is not ipc or udp")]
    Media(String),
    /// A parameter without `=`.
    #[error("channel parameter {0:?} is not key=value")]
    Malformed(String),
    /// A parameter this build does not know.
    #[error("channel parameter {0:?} is not known")]
    UnknownParameter(String),
    /// A parameter given twice.
    #[error("channel parameter {0:?} is given twice")]
    Duplicate(String),
    /// A parameter's value is invalid.
    #[error("channel parameter {key}={value:?} is invalid: {reason}")]
    InvalidValue {
        /// The parameter.
        key: String,
        /// Its value.
        value: String,
        /// What it requires.
        reason: String,
    },
    /// Too long.
    #[error("a channel is at most {CHANNEL_MAX_LENGTH} bytes")]
    TooLong,
    /// UDP without an endpoint or control address.
    #[error("a udp channel needs endpoint= (or control=)")]
    MissingEndpoint,
}

impl ChannelUri {
    /// Parses and validates `text`.
    pub fn parse(text: &str) -> Result<Self, ChannelError> {
        if text.len() > CHANNEL_MAX_LENGTH {
            return Err(ChannelError::TooLong);
        }
        let rest = text
            .strip_prefix("tern:")
            .or_else(|| text.strip_prefix("aeron:"))
            .ok_or_else(|| ChannelError::Scheme(text.to_owned()))?;
        let (media, parameters) = rest.split_once('?').unwrap_or((rest, ""));
        let media = match media {
            "ipc" => Media::Ipc,
            "udp" => Media::Udp,
            other => return Err(ChannelError::Media(other.to_owned())),
        };
        let mut uri = ChannelUri {
            media,
            term_length: None,
            mtu: None,
            session_id: None,
            endpoint: None,
            control: None,
            publication_window: None,
            tether: true,
            linger_ns: None,
        };
        let mut seen: Vec<&str> = Vec::new();
        for parameter in parameters
            .split('|')
            .filter(|parameter| !parameter.is_empty())
        {
            let (key, value) = parameter
                .split_once('=')
                .ok_or_else(|| ChannelError::Malformed(parameter.to_owned()))?;
            if seen.contains(&key) {
                return Err(ChannelError::Duplicate(key.to_owned()));
            }
            seen.push(key);
            uri.set(key, value)?;
        }
        if media == Media::Udp && uri.endpoint.is_none() && uri.control.is_none() {
            return Err(ChannelError::MissingEndpoint);
        }
        Ok(uri)
    }

    /// Whether a subscription on this channel reads a publication on `publication` whose
    /// session is `session_id` (the stream ids already match). The media must be the same, a
    /// UDP endpoint must be the same, and a subscription's `session-id` admits that session
    /// only. Parameters that shape a publication (term length, MTU, window, linger) or a
    /// subscriber alone (tether) do not take part.
    pub fn admits(&self, publication: &ChannelUri, session_id: i32) -> bool {
        self.media == publication.media
            && (self.media == Media::Ipc
                || (self.endpoint == publication.endpoint && self.control == publication.control))
            && self.session_id.is_none_or(|wanted| wanted == session_id)
    }

    fn set(&mut self, key: &str, value: &str) -> Result<(), ChannelError> {
        let invalid = |reason: &str| ChannelError::InvalidValue {
            key: key.to_owned(),
            value: value.to_owned(),
            reason: reason.to_owned(),
        };
        match key {
            "term-length" => {
                let length =
                    parse_size(value).ok_or_else(|| invalid("a size such as 65536 or 64k"))?;
                let length = u32::try_from(length).map_err(|_| invalid("at most 1g"))?;
                validate_log_term_length(length)
                    .map_err(|_| invalid("a power of two from 64k to 1g"))?;
                self.term_length = Some(length);
            }
            "mtu" => {
                let mtu = parse_size(value).ok_or_else(|| invalid("a size such as 1408"))?;
                let mtu = u32::try_from(mtu).map_err(|_| invalid("at most 65504"))?;
                validate_mtu(mtu).map_err(|_| invalid("a multiple of 32 from 64 to 65504"))?;
                self.mtu = Some(mtu);
            }
            "session-id" => {
                self.session_id = Some(value.parse().map_err(|_| invalid("a 32-bit integer"))?);
            }
            "endpoint" => self.endpoint = Some(value.to_owned()),
            "control" => self.control = Some(value.to_owned()),
            "pub-wnd" => {
                let window = parse_size(value).ok_or_else(|| invalid("a size such as 64k"))?;
                if window < 32 {
                    // A publisher may run ahead of its slowest subscriber by the window: with
                    // less than a frame it could never offer.
                    return Err(invalid("at least 32 bytes"));
                }
                self.publication_window =
                    Some(u32::try_from(window).map_err(|_| invalid("at most 1g"))?);
            }
            "tether" => {
                self.tether = match value {
                    "true" => true,
                    "false" => false,
                    _ => return Err(invalid("true or false")),
                };
            }
            "linger" => {
                self.linger_ns = Some(
                    parse_duration_ns(value)
                        .ok_or_else(|| invalid("a duration such as 5s or 100ms"))?,
                );
            }
            _ => return Err(ChannelError::UnknownParameter(key.to_owned())),
        }
        Ok(())
    }
}

/// Parses `65536`, `64k`, `16m` or `1g`.
pub fn parse_size(text: &str) -> Option<u64> {
    let (digits, multiplier) = match text.as_bytes().last()? {
        b'k' | b'K' => (&text[..text.len() - 1], 1024),
        b'm' | b'M' => (&text[..text.len() - 1], 1024 * 1024),
        b'g' | b'G' => (&text[..text.len() - 1], 1024 * 1024 * 1024),
        _ => (text, 1),
    };
    digits.parse::<u64>().ok()?.checked_mul(multiplier)
}

/// Parses `250ns`, `10us`, `5ms`, `2s` (or plain nanoseconds).
pub fn parse_duration_ns(text: &str) -> Option<u64> {
    let split = text
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(text.len());
    let (digits, unit) = text.split_at(split);
    let value: u64 = digits.parse().ok()?;
    let multiplier = match unit {
        "" | "ns" => 1,
        "us" => 1_000,
        "ms" => 1_000_000,
        "s" => 1_000_000_000,
        _ => return None,
    };
    value.checked_mul(multiplier)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subscriptions_admit_publications_by_media_endpoint_and_session() {
        let parse = |text| ChannelUri::parse(text).unwrap();
        let ipc = parse("tern:ipc?term-length=64k");
        assert!(parse("tern:ipc").admits(&ipc, 7));
        assert!(parse("aeron:ipc?tether=false").admits(&ipc, 7));
        assert!(parse("tern:ipc?session-id=7").admits(&ipc, 7));
        assert!(!parse("tern:ipc?session-id=8").admits(&ipc, 7));
        let udp = parse("tern:udp?endpoint=127.0.0.1:4000|mtu=8k");
        assert!(!parse("tern:udp?endpoint=127.0.0.1:4000").admits(&ipc, 7));
        assert!(!parse("tern:ipc").admits(&udp, 7));
        assert!(parse("tern:udp?endpoint=127.0.0.1:4000").admits(&udp, 7));
        assert!(!parse("tern:udp?endpoint=127.0.0.1:4001").admits(&udp, 7));
    }

    #[test]
    fn parses_ipc_udp_and_the_aeron_alias() {
        assert_eq!(ChannelUri::parse("tern:ipc").unwrap().media, Media::Ipc);
        let uri =
            ChannelUri::parse("aeron:udp?endpoint=localhost:40123|mtu=8k|term-length=64k").unwrap();
        assert_eq!(uri.media, Media::Udp);
        assert_eq!(uri.endpoint.as_deref(), Some("localhost:40123"));
        assert_eq!(uri.mtu, Some(8192));
        assert_eq!(uri.term_length, Some(65536));
        let uri = ChannelUri::parse("tern:ipc?tether=false|linger=5ms|session-id=-7").unwrap();
        assert!(!uri.tether);
        assert_eq!(uri.linger_ns, Some(5_000_000));
        assert_eq!(uri.session_id, Some(-7));
    }

    #[test]
    fn bad_parameters_are_named() {
        let error = ChannelUri::parse("tern:ipc?term-length=1000").unwrap_err();
        assert_eq!(
            error.to_string(),
            "channel parameter term-length=\"1000\" is invalid: a power of two from 64k to 1g"
        );
        assert_eq!(
            ChannelUri::parse("tern:ipc?mtu=1400")
                .unwrap_err()
                .to_string(),
            "channel parameter mtu=\"1400\" is invalid: a multiple of 32 from 64 to 65504"
        );
        assert_eq!(
            ChannelUri::parse("tern:ipc?pub-wnd=0")
                .unwrap_err()
                .to_string(),
            "channel parameter pub-wnd=\"0\" is invalid: at least 32 bytes"
        );
        assert_eq!(
            ChannelUri::parse("tern:ipc?color=blue").unwrap_err(),
            ChannelError::UnknownParameter("color".into())
        );
        assert!(matches!(
            ChannelUri::parse("kafka:ipc"),
            Err(ChannelError::Scheme(_))
        ));
        assert!(matches!(
            ChannelUri::parse("tern:tcp"),
            Err(ChannelError::Media(_))
        ));
        assert!(matches!(
            ChannelUri::parse("tern:ipc?mtu"),
            Err(ChannelError::Malformed(_))
        ));
        assert!(matches!(
            ChannelUri::parse("tern:ipc?mtu=64|mtu=64"),
            Err(ChannelError::Duplicate(_))
        ));
        assert_eq!(
            ChannelUri::parse("tern:udp").unwrap_err(),
            ChannelError::MissingEndpoint
        );
    }

    #[test]
    fn sizes_and_durations() {
        assert_eq!(parse_size("64k"), Some(65536));
        assert_eq!(parse_size("1g"), Some(1 << 30));
        assert_eq!(parse_size("x"), None);
        assert_eq!(parse_duration_ns("10us"), Some(10_000));
        assert_eq!(parse_duration_ns("2s"), Some(2_000_000_000));
        assert_eq!(parse_duration_ns("2h"), None);
    }
}
