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
use tern_codec::position::{TermGeometry, validate_log_term_length};

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
    /// UDP: the local interface (`ip[:port][/prefix]`), if given.
    pub interface: Option<String>,
    /// UDP multicast: the time to live, if given.
    pub ttl: Option<u8>,
    /// UDP: whether lost frames are repaired (`reliable=false` pads gaps instead).
    pub reliable: bool,
    /// UDP: the socket send buffer (`so-sndbuf`), if given.
    pub socket_send_buffer: Option<u32>,
    /// UDP: the socket receive buffer (`so-rcvbuf`), if given.
    pub socket_receive_buffer: Option<u32>,
    /// UDP: the flow control strategy (`fc=`), if given.
    pub flow_control: Option<FlowControlSpec>,
    /// UDP: the receiver's group tag (`gtag=`), for tagged flow control.
    pub group_tag: Option<i64>,
    /// UDP: multi-destination cast's control mode, if given.
    pub control_mode: Option<ControlMode>,
    /// Where an exclusive publication starts (`init-term-id`, `term-id` and `term-offset`,
    /// given together), if given: a replay that must keep the original stream's positions.
    pub start: Option<StartPosition>,
}

/// Where a new exclusive publication's stream starts, instead of position 0 of a random term.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StartPosition {
    /// The stream's initial term id (position 0 is this term's start).
    pub initial_term_id: i32,
    /// The term the first frame goes in.
    pub term_id: i32,
    /// Where in that term (a multiple of 32, less than the term length).
    pub term_offset: u32,
}

impl StartPosition {
    /// The stream position this start names, for terms of `term_length` bytes; `None` when
    /// the term offset does not fit such a term or the position passes the stream's maximum.
    pub fn position(&self, term_length: u32) -> Option<i64> {
        if self.term_offset >= term_length {
            return None;
        }
        let geometry = TermGeometry::new(term_length, self.initial_term_id).ok()?;
        let position = geometry.position(self.term_id, self.term_offset);
        (position >= 0 && position < geometry.max_position()).then_some(position)
    }
}

/// Multi-destination cast: who adds destinations.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ControlMode {
    /// The application adds and removes them.
    Manual,
    /// Subscribers join by sending to the control address.
    Dynamic,
}

/// A flow control strategy as a channel names it: `max`, `min` or `tagged,g:TAG[/N]`, each
/// optionally with `,t:TIMEOUT` (how long a silent receiver is kept).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FlowControlSpec {
    /// Which receivers the sender limit follows.
    pub kind: FlowControlKind,
    /// A receiver silent this long is dropped, if given (ns).
    pub receiver_timeout_ns: Option<u64>,
}

/// Which receivers the sender limit follows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FlowControlKind {
    /// The fastest.
    Max,
    /// The slowest; the publication connects once `group_min_size` receivers are present
    /// (`min,g:/N`).
    Min {
        /// Receivers required (0: one).
        group_min_size: u32,
    },
    /// The slowest with this group tag; the publication connects once `group_min_size` of
    /// them are present.
    Tagged {
        /// The tag.
        group_tag: i64,
        /// Receivers required.
        group_min_size: u32,
    },
}

impl FlowControlSpec {
    fn parse(text: &str) -> Option<Self> {
        let mut parts = text.split(',');
        let mut kind = match parts.next()? {
            "max" => FlowControlKind::Max,
            "min" => FlowControlKind::Min { group_min_size: 0 },
            "tagged" => FlowControlKind::Tagged {
                group_tag: 0,
                group_min_size: 0,
            },
            _ => return None,
        };
        let mut receiver_timeout_ns = None;
        let mut tagged = false;
        for part in parts {
            if let Some(timeout) = part.strip_prefix("t:") {
                receiver_timeout_ns = Some(parse_duration_ns(timeout)?);
            } else if let Some(group) = part.strip_prefix("g:") {
                if let FlowControlKind::Min { .. } = kind {
                    // `min,g:/N`: the slowest of at least N receivers, untagged.
                    kind = FlowControlKind::Min {
                        group_min_size: group.strip_prefix('/')?.parse().ok()?,
                    };
                    continue;
                }
                let FlowControlKind::Tagged { .. } = kind else {
                    return None;
                };
                let (tag, size) = group.split_once('/').unwrap_or((group, "0"));
                kind = FlowControlKind::Tagged {
                    group_tag: tag.parse().ok()?,
                    group_min_size: size.parse().ok()?,
                };
                tagged = true;
            } else {
                return None;
            }
        }
        if matches!(kind, FlowControlKind::Tagged { .. }) && !tagged {
            return None;
        }
        Some(Self {
            kind,
            receiver_timeout_ns,
        })
    }
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
    #[error(
        "a udp channel needs endpoint= (or control=, or control-mode=manual for a \
         multi-destination subscription)"
    )]
    MissingEndpoint,
    /// A UDP parameter on an IPC channel.
    #[error("channel parameter {0:?} applies to udp channels only")]
    UdpOnly(String),
    /// An address that does not resolve to a socket address.
    #[error("channel parameter {key}={value:?} does not resolve: {reason}")]
    Unresolvable {
        /// The parameter.
        key: String,
        /// Its value.
        value: String,
        /// Why.
        reason: String,
    },
}

/// Parameters that mean something only on a UDP channel.
const UDP_ONLY: [&str; 10] = [
    "endpoint",
    "control",
    "interface",
    "ttl",
    "reliable",
    "so-sndbuf",
    "so-rcvbuf",
    "fc",
    "gtag",
    "control-mode",
];

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
            interface: None,
            ttl: None,
            reliable: true,
            socket_send_buffer: None,
            socket_receive_buffer: None,
            flow_control: None,
            group_tag: None,
            control_mode: None,
            start: None,
        };
        let mut start: [Option<i64>; 3] = [None; 3];
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
            if media == Media::Ipc && UDP_ONLY.contains(&key) {
                return Err(ChannelError::UdpOnly(key.to_owned()));
            }
            seen.push(key);
            let slot = START_PARAMETERS.iter().position(|name| *name == key);
            match slot {
                Some(index) => start[index] = Some(parse_start_parameter(key, value)?),
                None => uri.set(key, value)?,
            }
        }
        uri.start = assemble_start(start, uri.term_length)?;
        // A multi-destination subscription (`control-mode=manual` alone) gets its endpoints
        // as destinations later.
        if media == Media::Udp
            && uri.endpoint.is_none()
            && uri.control.is_none()
            && uri.control_mode != Some(ControlMode::Manual)
        {
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
            "interface" => self.interface = Some(value.to_owned()),
            "ttl" => self.ttl = Some(value.parse().map_err(|_| invalid("0 to 255"))?),
            "reliable" => {
                self.reliable = match value {
                    "true" => true,
                    "false" => false,
                    _ => return Err(invalid("true or false")),
                };
            }
            "so-sndbuf" | "so-rcvbuf" => {
                let size = parse_size(value)
                    .and_then(|size| u32::try_from(size).ok())
                    .filter(|size| *size > 0)
                    .ok_or_else(|| invalid("a size from 1 byte to 4g, such as 2m"))?;
                if key == "so-sndbuf" {
                    self.socket_send_buffer = Some(size);
                } else {
                    self.socket_receive_buffer = Some(size);
                }
            }
            "fc" => {
                self.flow_control = Some(FlowControlSpec::parse(value).ok_or_else(|| {
                    invalid("max, min or tagged,g:TAG[/N], each optionally with ,t:TIMEOUT")
                })?);
            }
            "gtag" => {
                self.group_tag = Some(value.parse().map_err(|_| invalid("a 64-bit integer"))?)
            }
            "control-mode" => {
                self.control_mode = Some(match value {
                    "manual" => ControlMode::Manual,
                    "dynamic" => ControlMode::Dynamic,
                    _ => return Err(invalid("manual or dynamic")),
                });
            }
            _ => return Err(ChannelError::UnknownParameter(key.to_owned())),
        }
        Ok(())
    }
}

/// The three parameters that place a publication's start, in [`StartPosition`] order.
const START_PARAMETERS: [&str; 3] = ["init-term-id", "term-id", "term-offset"];

fn parse_start_parameter(key: &str, value: &str) -> Result<i64, ChannelError> {
    let invalid = |reason: &str| ChannelError::InvalidValue {
        key: key.to_owned(),
        value: value.to_owned(),
        reason: reason.to_owned(),
    };
    if key == "term-offset" {
        let offset: u32 = value
            .parse()
            .map_err(|_| invalid("a byte offset in the term"))?;
        if !offset.is_multiple_of(32) {
            return Err(invalid("a multiple of 32 (the frame alignment)"));
        }
        return Ok(i64::from(offset));
    }
    value
        .parse::<i32>()
        .map(i64::from)
        .map_err(|_| invalid("a 32-bit integer"))
}

/// Checks the three start parameters: all or none, and a position that exists.
fn assemble_start(
    start: [Option<i64>; 3],
    term_length: Option<u32>,
) -> Result<Option<StartPosition>, ChannelError> {
    let [initial_term_id, term_id, term_offset] = start;
    let (Some(initial_term_id), Some(term_id), Some(term_offset)) =
        (initial_term_id, term_id, term_offset)
    else {
        if start.iter().any(Option::is_some) {
            return Err(ChannelError::InvalidValue {
                key: "init-term-id|term-id|term-offset".to_owned(),
                value: format!("{start:?}"),
                reason: "the three are given together or not at all".to_owned(),
            });
        }
        return Ok(None);
    };
    let position = StartPosition {
        initial_term_id: i32::try_from(initial_term_id).expect("parsed as i32"),
        term_id: i32::try_from(term_id).expect("parsed as i32"),
        term_offset: u32::try_from(term_offset).expect("parsed as u32"),
    };
    if position.term_id.wrapping_sub(position.initial_term_id) < 0 {
        return Err(ChannelError::InvalidValue {
            key: "term-id".to_owned(),
            value: term_id.to_string(),
            reason: format!("at or after init-term-id {initial_term_id}"),
        });
    }
    if let Some(term_length) = term_length
        && position.position(term_length).is_none()
    {
        return Err(ChannelError::InvalidValue {
            key: "term-offset".to_owned(),
            value: term_offset.to_string(),
            reason: format!("inside a term of {term_length} bytes"),
        });
    }
    Ok(Some(position))
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
    fn udp_parameters_parse_and_stay_off_ipc_channels() {
        let uri = ChannelUri::parse(
            "tern:udp?endpoint=239.1.1.1:4000|interface=10.0.0.1|ttl=8|reliable=false|\
             so-sndbuf=2m|so-rcvbuf=4m|fc=tagged,g:1001/3,t:2s|gtag=1001",
        )
        .unwrap();
        assert_eq!(uri.interface.as_deref(), Some("10.0.0.1"));
        assert_eq!(uri.ttl, Some(8));
        assert!(!uri.reliable);
        assert_eq!(
            (uri.socket_send_buffer, uri.socket_receive_buffer),
            (Some(2 << 20), Some(4 << 20))
        );
        assert_eq!(
            uri.flow_control,
            Some(FlowControlSpec {
                kind: FlowControlKind::Tagged {
                    group_tag: 1001,
                    group_min_size: 3
                },
                receiver_timeout_ns: Some(2_000_000_000)
            })
        );
        assert_eq!(uri.group_tag, Some(1001));
        let fc = |text: &str| {
            ChannelUri::parse(&format!("tern:udp?endpoint=127.0.0.1:1|fc={text}"))
                .map(|uri| uri.flow_control.unwrap().kind)
        };
        assert_eq!(fc("max"), Ok(FlowControlKind::Max));
        assert_eq!(
            fc("min,t:500ms"),
            Ok(FlowControlKind::Min { group_min_size: 0 })
        );
        assert_eq!(
            fc("min,g:/3"),
            Ok(FlowControlKind::Min { group_min_size: 3 })
        );
        for bad in ["fastest", "tagged", "min,g:5", "max,t:soon", "tagged,g:x"] {
            assert!(
                matches!(fc(bad), Err(ChannelError::InvalidValue { .. })),
                "{bad}"
            );
        }
        let mdc = ChannelUri::parse("tern:udp?control=127.0.0.1:1|control-mode=manual").unwrap();
        assert_eq!(mdc.control_mode, Some(ControlMode::Manual));
        assert!(ChannelUri::parse("tern:udp?endpoint=127.0.0.1:1|ttl=256").is_err());
        assert!(ChannelUri::parse("tern:udp?endpoint=127.0.0.1:1|so-sndbuf=0").is_err());
        for key in [
            "endpoint=127.0.0.1:1",
            "interface=10.0.0.1",
            "fc=max",
            "reliable=false",
        ] {
            assert!(
                matches!(
                    ChannelUri::parse(&format!("tern:ipc?{key}")),
                    Err(ChannelError::UdpOnly(_))
                ),
                "{key}"
            );
        }
        assert_eq!(
            ChannelUri::parse("tern:ipc?ttl=3").unwrap_err().to_string(),
            "channel parameter \"ttl\" applies to udp channels only"
        );
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
