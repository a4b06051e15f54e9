//! A `tern:udp` channel resolved to socket addresses: what the sender and receiver bind, send
//! to and join. Resolution happens once, on the conductor, when a publication or subscription is
//! added; an address that does not resolve is refused with the parameter and the reason.
//!
//! | parameter | meaning |
//! |---|---|
//! | `endpoint=host:port` | unicast: where data goes (publication) or is received (subscription); multicast: the group |
//! | `control=host:port` | where status messages and NAKs go (multi-destination cast; for a multicast group, the next address by default) |
//! | `interface=ip[:port][/prefix]` | the local interface to bind or to send multicast from |
//! | `ttl=N` | multicast hops (multicast endpoints only) |

use std::net::{IpAddr, SocketAddr, ToSocketAddrs};

use crate::channel::{ChannelError, ChannelUri, Media};

/// A local interface: its address, port (0: any) and the prefix that matches it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Interface {
    /// The address.
    pub address: IpAddr,
    /// The port, 0 for any.
    pub port: u16,
    /// Leading bits of the address that select the interface (32 or 128: exactly it).
    pub prefix_length: u8,
}

/// A resolved UDP channel.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UdpChannel {
    /// The data endpoint, if given.
    pub endpoint: Option<SocketAddr>,
    /// The control endpoint, if given.
    pub control: Option<SocketAddr>,
    /// The local interface, if given.
    pub interface: Option<Interface>,
    /// Whether the endpoint is a multicast group.
    pub multicast: bool,
    /// Multicast hops, if given.
    pub ttl: Option<u8>,
}

impl UdpChannel {
    /// Resolves `uri`, a UDP channel.
    pub fn resolve(uri: &ChannelUri) -> Result<Self, ChannelError> {
        if uri.media != Media::Udp {
            return Err(ChannelError::Media("ipc".to_owned()));
        }
        let endpoint = uri
            .endpoint
            .as_deref()
            .map(|value| resolve_address("endpoint", value))
            .transpose()?;
        let control = uri
            .control
            .as_deref()
            .map(|value| resolve_address("control", value))
            .transpose()?;
        let interface = uri.interface.as_deref().map(parse_interface).transpose()?;
        let multicast = endpoint.is_some_and(|endpoint| endpoint.ip().is_multicast());
        if let Some(endpoint) = endpoint.filter(|_| multicast)
            && endpoint.port() == 0
        {
            return Err(invalid(
                "endpoint",
                uri.endpoint.as_deref().unwrap_or(""),
                "a multicast group needs a port",
            ));
        }
        // A multicast channel's control frames (status messages, NAKs) go to the next group
        // address on the same port, as Aeron's do: the data group's last octet is odd, the
        // control group's the one after.
        let control = match (control, endpoint.filter(|_| multicast)) {
            (None, Some(group)) => Some(control_group(group).ok_or_else(|| {
                invalid(
                    "endpoint",
                    uri.endpoint.as_deref().unwrap_or(""),
                    "a multicast data group's last octet is odd and below 255 (its control group is \
                     the next address)",
                )
            })?),
            (control, _) => control,
        };
        if uri.ttl.is_some() && !multicast {
            return Err(invalid(
                "ttl",
                &uri.ttl.map(|ttl| ttl.to_string()).unwrap_or_default(),
                "ttl applies to a multicast endpoint only",
            ));
        }
        Ok(Self {
            endpoint,
            control,
            interface,
            multicast,
            ttl: uri.ttl,
        })
    }
}

/// The control group of multicast data group `group`: its last octet plus one, for an odd last
/// octet.
fn control_group(group: SocketAddr) -> Option<SocketAddr> {
    let address = match group.ip() {
        IpAddr::V4(address) => {
            let mut octets = address.octets();
            if octets[3] % 2 == 0 {
                return None;
            }
            octets[3] = octets[3].checked_add(1)?;
            IpAddr::from(octets)
        }
        IpAddr::V6(address) => {
            let mut octets = address.octets();
            if octets[15] % 2 == 0 {
                return None;
            }
            octets[15] = octets[15].checked_add(1)?;
            IpAddr::from(octets)
        }
    };
    Some(SocketAddr::new(address, group.port()))
}

fn invalid(key: &str, value: &str, reason: &str) -> ChannelError {
    ChannelError::InvalidValue {
        key: key.to_owned(),
        value: value.to_owned(),
        reason: reason.to_owned(),
    }
}

/// `host:port` (a name, an IPv4 address, or `[IPv6]`) to one socket address, IPv4 preferred
/// when a name has both.
fn resolve_address(key: &str, value: &str) -> Result<SocketAddr, ChannelError> {
    let unresolvable = |reason: String| ChannelError::Unresolvable {
        key: key.to_owned(),
        value: value.to_owned(),
        reason,
    };
    if value
        .rsplit_once(':')
        .is_none_or(|(host, _)| host.is_empty())
    {
        return Err(invalid(
            key,
            value,
            "host:port, such as localhost:40123 or [::1]:40123",
        ));
    }
    let addresses: Vec<SocketAddr> = value
        .to_socket_addrs()
        .map_err(|error| unresolvable(error.to_string()))?
        .collect();
    addresses
        .iter()
        .find(|address| address.is_ipv4())
        .or_else(|| addresses.first())
        .copied()
        .ok_or_else(|| unresolvable("no address".to_owned()))
}

/// `ip[:port][/prefix]`.
fn parse_interface(value: &str) -> Result<Interface, ChannelError> {
    let refuse = || {
        invalid(
            "interface",
            value,
            "ip[:port][/prefix], such as 10.0.0.5 or 10.0.0.0/24",
        )
    };
    let (address, prefix) = match value.rsplit_once('/') {
        Some((address, prefix)) => (address, Some(prefix.parse::<u8>().map_err(|_| refuse())?)),
        None => (value, None),
    };
    let (address, port) = match address.parse::<SocketAddr>() {
        Ok(socket) => (socket.ip(), socket.port()),
        Err(_) => (
            address
                .trim_start_matches('[')
                .trim_end_matches(']')
                .parse::<IpAddr>()
                .map_err(|_| refuse())?,
            0,
        ),
    };
    let bits = if address.is_ipv4() { 32 } else { 128 };
    let prefix_length = prefix.unwrap_or(bits);
    if prefix_length > bits {
        return Err(refuse());
    }
    if prefix_length < bits {
        // Finding the local interface inside a subnet is not built yet: refuse rather than
        // bind to the subnet's own address and fail later with a socket error.
        return Err(invalid(
            "interface",
            value,
            "a subnet (a prefix shorter than the address) is not supported yet: name the interface's address",
        ));
    }
    Ok(Interface {
        address,
        port,
        prefix_length,
    })
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;

    fn resolve(text: &str) -> Result<UdpChannel, ChannelError> {
        UdpChannel::resolve(&ChannelUri::parse(text)?)
    }

    #[test]
    fn unicast_multicast_and_interfaces_resolve() {
        let unicast = resolve("tern:udp?endpoint=127.0.0.1:40123").unwrap();
        assert_eq!(unicast.endpoint, Some("127.0.0.1:40123".parse().unwrap()));
        assert!(!unicast.multicast);
        let named = resolve("tern:udp?endpoint=localhost:40123").unwrap();
        assert_eq!(named.endpoint.unwrap().port(), 40123);
        assert!(named.endpoint.unwrap().ip().is_loopback());
        let v6 = resolve("tern:udp?endpoint=[::1]:40123").unwrap();
        assert_eq!(v6.endpoint, Some("[::1]:40123".parse().unwrap()));
        let group =
            resolve("tern:udp?endpoint=239.1.2.3:40456|interface=10.0.0.5/32|ttl=4").unwrap();
        assert!(group.multicast);
        assert_eq!(group.ttl, Some(4));
        assert_eq!(group.control, Some("239.1.2.4:40456".parse().unwrap()));
        assert_eq!(
            group.interface,
            Some(Interface {
                address: "10.0.0.5".parse().unwrap(),
                port: 0,
                prefix_length: 32
            })
        );
        let mdc = resolve("tern:udp?control=127.0.0.1:40124|control-mode=dynamic").unwrap();
        assert_eq!(mdc.endpoint, None);
        assert_eq!(mdc.control, Some("127.0.0.1:40124".parse().unwrap()));
        let bound = resolve("tern:udp?endpoint=127.0.0.1:0|interface=127.0.0.1:40999").unwrap();
        assert_eq!(bound.interface.unwrap().port, 40999);
    }

    #[test]
    fn bad_addresses_are_refused_naming_the_parameter() {
        let message = |text: &str| resolve(text).unwrap_err().to_string();
        assert_eq!(
            message("tern:udp?endpoint=40123"),
            "channel parameter endpoint=\"40123\" is invalid: host:port, such as \
             localhost:40123 or [::1]:40123"
        );
        assert!(matches!(
            resolve("tern:udp?endpoint=127.0.0.1:99999"),
            Err(ChannelError::Unresolvable { .. })
        ));
        assert!(
            message("tern:udp?endpoint=239.1.2.3:0").contains("a multicast group needs a port")
        );
        assert!(
            message("tern:udp?endpoint=127.0.0.1:4000|ttl=3").contains("multicast endpoint only")
        );
        assert!(message("tern:udp?endpoint=239.1.2.4:4000").contains("last octet is odd"));
        assert!(message("tern:udp?endpoint=239.1.2.255:4000").contains("below 255"));
        assert!(message("tern:udp?endpoint=[ff02::ff]:4000").contains("below 255"));
        assert!(
            message("tern:udp?endpoint=127.0.0.1:4000|interface=10.0.0.1/33").contains("interface")
        );
        assert!(message("tern:udp?endpoint=127.0.0.1:4000|interface=eth0").contains("interface"));
        assert!(matches!(
            resolve("tern:ipc?ttl=3"),
            Err(ChannelError::UdpOnly(key)) if key == "ttl"
        ));
    }
}
