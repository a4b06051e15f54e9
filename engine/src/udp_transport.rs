//! UDP sockets for the sender and receiver agents: made with socket2 from a resolved channel,
//! non-blocking, sending and receiving in batches, one system call for many datagrams
//! (`sendmmsg`, `recvmmsg`).
//!
//! Each transport is owned by one agent's thread. The kernel headers of a call live on its stack
//! and point only at memory alive for the call; receive buffers are allocated with the
//! transport. Sending and receiving allocate nothing, and [`BATCH_MAX`] / [`RECEIVE_BATCH`]
//! bound the work of one call.

use std::io;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::os::fd::AsRawFd;

use socket2::{Domain, Protocol, SockAddr, Socket, Type};

use crate::channel::ChannelUri;
use crate::udp_channel::UdpChannel;

/// Datagrams one send call carries at most.
pub const BATCH_MAX: usize = 64;
/// Bytes in each receive buffer: more than any UDP payload (65 507 over IPv4), so a datagram
/// the kernel had to cut (`MSG_TRUNC`) can only be one too large for any protocol frame.
pub const DATAGRAM_MAX: usize = 65536;

/// Datagrams one receive call takes at most.
pub const RECEIVE_BATCH: usize = 16;

/// A non-blocking UDP socket and the buffers it receives into.
pub struct UdpTransport {
    socket: Socket,
    /// [`RECEIVE_BATCH`] buffers of [`DATAGRAM_MAX`] bytes, allocated once.
    buffers: Box<[u8]>,
}

impl std::fmt::Debug for UdpTransport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UdpTransport")
            .field("local", &self.local_address().ok())
            .finish_non_exhaustive()
    }
}

/// Socket options a channel may set.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct SocketBuffers {
    /// `SO_SNDBUF`, if given.
    pub send: Option<u32>,
    /// `SO_RCVBUF`, if given.
    pub receive: Option<u32>,
}

impl SocketBuffers {
    /// The buffers `uri` asks for.
    pub fn of(uri: &ChannelUri) -> Self {
        Self {
            send: uri.socket_send_buffer,
            receive: uri.socket_receive_buffer,
        }
    }
}

/// Joins `group` on the channel's interface (any, if none).
fn join(socket: &Socket, group: IpAddr, channel: &UdpChannel) -> io::Result<()> {
    match (group, channel.interface.map(|interface| interface.address)) {
        (IpAddr::V4(group), Some(IpAddr::V4(interface))) => {
            socket.join_multicast_v4(&group, &interface)
        }
        (IpAddr::V4(group), _) => socket.join_multicast_v4(&group, &Ipv4Addr::UNSPECIFIED),
        (IpAddr::V6(group), _) => socket.join_multicast_v6(&group, 0),
    }
}

/// Multicast sends from this socket: the channel's hops and interface, looped back to other
/// sockets of this host (another driver on the machine may subscribe).
fn set_multicast_sending(socket: &Socket, channel: &UdpChannel) -> io::Result<()> {
    if channel.endpoint.is_some_and(|endpoint| endpoint.is_ipv6()) {
        if let Some(ttl) = channel.ttl {
            socket.set_multicast_hops_v6(u32::from(ttl))?;
        }
        return socket.set_multicast_loop_v6(true);
    }
    if let Some(ttl) = channel.ttl {
        socket.set_multicast_ttl_v4(u32::from(ttl))?;
    }
    if let Some(IpAddr::V4(interface)) = channel.interface.map(|interface| interface.address) {
        socket.set_multicast_if_v4(&interface)?;
    }
    socket.set_multicast_loop_v4(true)
}

impl UdpTransport {
    fn socket(address: &SocketAddr, buffers: SocketBuffers) -> io::Result<Socket> {
        let socket = Socket::new(
            Domain::for_address(*address),
            Type::DGRAM,
            Some(Protocol::UDP),
        )?;
        socket.set_nonblocking(true)?;
        if let Some(size) = buffers.send {
            socket.set_send_buffer_size(usize::try_from(size).unwrap_or(usize::MAX))?;
        }
        if let Some(size) = buffers.receive {
            socket.set_recv_buffer_size(usize::try_from(size).unwrap_or(usize::MAX))?;
        }
        Ok(socket)
    }

    /// A socket that receives a subscription's stream: bound to the endpoint (for a multicast
    /// group, to its port on any address, joined on the channel's interface).
    pub fn receiver(channel: &UdpChannel, buffers: SocketBuffers) -> io::Result<Self> {
        let endpoint = channel.endpoint.ok_or_else(|| {
            io::Error::new(io::ErrorKind::InvalidInput, "a receiver needs an endpoint")
        })?;
        let socket = Self::socket(&endpoint, buffers)?;
        if channel.multicast {
            // Bound to the group itself, so that the socket takes only the group's datagrams
            // (another group on the same port, such as the control group, is not its).
            socket.set_reuse_address(true)?;
            socket.bind(&SockAddr::from(endpoint))?;
            join(&socket, endpoint.ip(), channel)?;
            set_multicast_sending(&socket, channel)?;
        } else {
            socket.bind(&SockAddr::from(endpoint))?;
        }
        Ok(Self::with(socket))
    }

    /// A socket that sends a publication's stream: bound to the channel's interface (or any
    /// address and port); for a multicast group, bound to the control group and joined to it, to
    /// hear the receivers' status messages and NAKs, with the channel's hops and interface.
    pub fn sender(channel: &UdpChannel, buffers: SocketBuffers) -> io::Result<Self> {
        let endpoint = channel.endpoint.or(channel.control).ok_or_else(|| {
            io::Error::new(io::ErrorKind::InvalidInput, "a sender needs an endpoint")
        })?;
        let socket = Self::socket(&endpoint, buffers)?;
        match channel.control.filter(|_| channel.multicast) {
            Some(control) => {
                socket.set_reuse_address(true)?;
                socket.bind(&SockAddr::from(control))?;
                join(&socket, control.ip(), channel)?;
                set_multicast_sending(&socket, channel)?;
            }
            None => {
                let local = match channel.interface {
                    Some(interface) => SocketAddr::new(interface.address, interface.port),
                    None if endpoint.is_ipv4() => {
                        SocketAddr::new(IpAddr::V4(Ipv4Addr::UNSPECIFIED), 0)
                    }
                    None => SocketAddr::new(IpAddr::V6(std::net::Ipv6Addr::UNSPECIFIED), 0),
                };
                socket.bind(&SockAddr::from(local))?;
            }
        }
        Ok(Self::with(socket))
    }

    fn with(socket: Socket) -> Self {
        Self {
            socket,
            buffers: vec![0u8; RECEIVE_BATCH * DATAGRAM_MAX].into_boxed_slice(),
        }
    }

    /// The socket's receive buffer as the kernel keeps it (`SO_RCVBUF`; the kernel may grant
    /// less than asked, up to `net.core.rmem_max`).
    pub fn receive_buffer_size(&self) -> io::Result<usize> {
        self.socket.recv_buffer_size()
    }

    /// The address the socket is bound to.
    pub fn local_address(&self) -> io::Result<SocketAddr> {
        self.socket
            .local_addr()?
            .as_socket()
            .ok_or_else(|| io::Error::new(io::ErrorKind::Unsupported, "not an IP socket"))
    }

    /// Sends `datagrams` to `destination`, as many per system call as the kernel takes
    /// (`sendmmsg`), at most [`BATCH_MAX`] per call; returns how many were sent (fewer when the
    /// socket's buffer is full: the caller sends the rest later).
    pub fn send(&mut self, datagrams: &[&[u8]], destination: SocketAddr) -> io::Result<usize> {
        let destination = SockAddr::from(destination);
        let count = datagrams.len().min(BATCH_MAX);
        // On the stack: the headers point into `datagrams` and `destination`, valid only here.
        // SAFETY: all-zero bytes are a valid iovec and mmsghdr (null pointers, zero lengths).
        let mut iovecs: [libc::iovec; BATCH_MAX] = unsafe { std::mem::zeroed() };
        // SAFETY: as above.
        let mut headers: [libc::mmsghdr; BATCH_MAX] = unsafe { std::mem::zeroed() };
        for (index, datagram) in datagrams.iter().take(count).enumerate() {
            iovecs[index] = libc::iovec {
                iov_base: datagram.as_ptr().cast_mut().cast(),
                iov_len: datagram.len(),
            };
            let message = &mut headers[index].msg_hdr;
            message.msg_name = destination.as_ptr().cast_mut().cast();
            message.msg_namelen = destination.len();
            message.msg_iov = std::ptr::from_mut(&mut iovecs[index]);
            message.msg_iovlen = 1;
        }
        let mut sent = 0;
        while sent < count {
            let remaining = u32::try_from(count - sent).unwrap_or(u32::MAX);
            // SAFETY: `headers[sent..count]` point at `destination` and at iovecs over the
            // caller's datagrams, all alive for this call; the kernel only reads them (and
            // writes `msg_len`). The socket is this transport's, open.
            let result = unsafe {
                libc::sendmmsg(
                    self.socket.as_raw_fd(),
                    headers[sent..].as_mut_ptr(),
                    remaining,
                    libc::MSG_DONTWAIT,
                )
            };
            if result < 0 {
                let error = io::Error::last_os_error();
                // What went out before the error counts: the caller must not send it again.
                if error.kind() == io::ErrorKind::WouldBlock || sent > 0 {
                    break;
                }
                return Err(error);
            }
            match usize::try_from(result) {
                Ok(0) | Err(_) => break,
                Ok(done) => sent += done,
            }
        }
        Ok(sent)
    }

    /// Receives the datagrams waiting, at most [`RECEIVE_BATCH`] per call (`recvmmsg`), without
    /// blocking, handing each to `handle` with its source; returns how many.
    pub fn receive(&mut self, mut handle: impl FnMut(&[u8], SocketAddr)) -> io::Result<usize> {
        // SAFETY: all-zero bytes are a valid iovec, mmsghdr and sockaddr_storage.
        let mut iovecs: [libc::iovec; RECEIVE_BATCH] = unsafe { std::mem::zeroed() };
        // SAFETY: as above.
        let mut headers: [libc::mmsghdr; RECEIVE_BATCH] = unsafe { std::mem::zeroed() };
        // SAFETY: as above.
        let mut sources: [libc::sockaddr_storage; RECEIVE_BATCH] = unsafe { std::mem::zeroed() };
        for (index, buffer) in self.buffers.chunks_exact_mut(DATAGRAM_MAX).enumerate() {
            iovecs[index] = libc::iovec {
                iov_base: buffer.as_mut_ptr().cast(),
                iov_len: DATAGRAM_MAX,
            };
            let message = &mut headers[index].msg_hdr;
            message.msg_name = std::ptr::from_mut(&mut sources[index]).cast();
            message.msg_namelen = socklen_of_storage();
            message.msg_iov = std::ptr::from_mut(&mut iovecs[index]);
            message.msg_iovlen = 1;
        }
        // SAFETY: every header points at a buffer of DATAGRAM_MAX bytes of `self.buffers` and a
        // sockaddr_storage on this stack, alive for the call; the kernel writes datagrams,
        // sources and lengths into them only. MSG_DONTWAIT: never blocks.
        let result = unsafe {
            libc::recvmmsg(
                self.socket.as_raw_fd(),
                headers.as_mut_ptr(),
                u32::try_from(RECEIVE_BATCH).unwrap_or(1),
                libc::MSG_DONTWAIT,
                std::ptr::null_mut(),
            )
        };
        if result < 0 {
            let error = io::Error::last_os_error();
            if error.kind() == io::ErrorKind::WouldBlock {
                return Ok(0);
            }
            return Err(error);
        }
        let received = usize::try_from(result).unwrap_or(0).min(RECEIVE_BATCH);
        for index in 0..received {
            if headers[index].msg_hdr.msg_flags & libc::MSG_TRUNC != 0 {
                // Cut short by the kernel: never handed on as if whole.
                continue;
            }
            let length = usize::try_from(headers[index].msg_len)
                .unwrap_or(0)
                .min(DATAGRAM_MAX);
            let Some(source) = socket_address(&sources[index]) else {
                continue;
            };
            let start = index * DATAGRAM_MAX;
            handle(&self.buffers[start..start + length], source);
        }
        Ok(received)
    }
}

fn socklen_of_storage() -> libc::socklen_t {
    libc::socklen_t::try_from(size_of::<libc::sockaddr_storage>()).unwrap_or(0)
}

/// The IPv4 or IPv6 address the kernel wrote into `storage`.
fn socket_address(storage: &libc::sockaddr_storage) -> Option<SocketAddr> {
    match i32::from(storage.ss_family) {
        libc::AF_INET => {
            // SAFETY: the family says the storage holds a sockaddr_in; sockaddr_storage is
            // large enough and aligned for every socket address type.
            let address = unsafe { &*std::ptr::from_ref(storage).cast::<libc::sockaddr_in>() };
            Some(SocketAddr::new(
                IpAddr::V4(Ipv4Addr::from(u32::from_be(address.sin_addr.s_addr))),
                u16::from_be(address.sin_port),
            ))
        }
        libc::AF_INET6 => {
            // SAFETY: as above, for sockaddr_in6.
            let address = unsafe { &*std::ptr::from_ref(storage).cast::<libc::sockaddr_in6>() };
            Some(SocketAddr::new(
                IpAddr::V6(std::net::Ipv6Addr::from(address.sin6_addr.s6_addr)),
                u16::from_be(address.sin6_port),
            ))
        }
        _ => None,
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;

    fn channel(text: &str) -> UdpChannel {
        UdpChannel::resolve(&ChannelUri::parse(text).unwrap()).unwrap()
    }

    /// Receives until `count` datagrams arrived (bounded: loopback delivers at once, but the
    /// receive is non-blocking, so the loop waits a little for the kernel).
    fn receive_all(receiver: &mut UdpTransport, count: usize) -> Vec<(Vec<u8>, SocketAddr)> {
        let mut received = Vec::new();
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        while received.len() < count {
            assert!(
                std::time::Instant::now() < deadline,
                "{} of {count}",
                received.len()
            );
            let got = receiver
                .receive(|bytes, source| received.push((bytes.to_vec(), source)))
                .unwrap();
            if got == 0 {
                std::thread::yield_now();
            }
        }
        received
    }

    #[test]
    fn batches_of_datagrams_cross_loopback_in_order_with_their_source() {
        let mut receiver = UdpTransport::receiver(
            &channel("tern:udp?endpoint=127.0.0.1:0"),
            SocketBuffers::default(),
        )
        .unwrap();
        let destination = receiver.local_address().unwrap();
        let mut sender = UdpTransport::sender(
            &channel(&format!("tern:udp?endpoint={destination}")),
            SocketBuffers {
                send: Some(1 << 20),
                receive: None,
            },
        )
        .unwrap();
        let datagrams: Vec<Vec<u8>> = (0..100u8)
            .map(|index| vec![index; 100 + usize::from(index)])
            .collect();
        let slices: Vec<&[u8]> = datagrams.iter().map(Vec::as_slice).collect();
        let mut sent = 0;
        while sent < slices.len() {
            sent += sender.send(&slices[sent..], destination).unwrap();
        }
        let received = receive_all(&mut receiver, 100);
        let source = sender.local_address().unwrap();
        for (index, (bytes, from)) in received.iter().enumerate() {
            assert_eq!(bytes, &datagrams[index]);
            assert_eq!(from.port(), source.port());
        }
        assert_eq!(receiver.receive(|_, _| panic!("nothing more")).unwrap(), 0);
    }

    #[test]
    fn a_receiver_needs_an_endpoint_and_a_taken_port_is_an_error() {
        let first = UdpTransport::receiver(
            &channel("tern:udp?endpoint=127.0.0.1:0"),
            SocketBuffers::default(),
        )
        .unwrap();
        let taken = first.local_address().unwrap();
        assert!(
            UdpTransport::receiver(
                &channel(&format!("tern:udp?endpoint={taken}")),
                SocketBuffers::default()
            )
            .is_err()
        );
        assert!(
            UdpTransport::receiver(
                &channel("tern:udp?control=127.0.0.1:0"),
                SocketBuffers::default()
            )
            .is_err()
        );
    }
}
