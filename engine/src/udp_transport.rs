//! UDP sockets for the sender and receiver agents: made with socket2 from a resolved channel,
//! non-blocking, sending and receiving in batches, one system call for many datagrams
//! (`sendmmsg`, `recvmmsg`).
//!
//! Each transport is owned by one agent's thread. The kernel headers are allocated with the
//! transport and reused: a call fills only the entries it passes, pointing only at memory alive
//! for the call (zeroing them per call cost more than the call's own work); receive buffers are
//! allocated with the transport too. Sending and receiving allocate nothing, and [`BATCH_MAX`] /
//! [`RECEIVE_BATCH`] bound the work of one call. With `udp_io = "io_uring"` the same calls go
//! through [`crate::udp_ring`].

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

/// `UDP_SEGMENT` (Linux 4.18): the control message of a GSO send, its segment size.
const UDP_SEGMENT: libc::c_int = 103;
/// Segments in one GSO send at most (the kernel's `UDP_MAX_SEGMENTS`).
const GSO_SEGMENTS_MAX: usize = 64;
/// Payload bytes in one GSO send at most (one IP datagram, less headers).
const GSO_BYTES_MAX: usize = 65_000;

/// `UDP_GRO` (Linux 5.0): a receive socket takes a run of datagrams the kernel coalesced (a GSO
/// send on loopback, or a NIC's receive offload) in one buffer, with the segment size in a
/// control message, instead of one datagram per receive.
const UDP_GRO: libc::c_int = 104;

/// Asks the kernel to coalesce `socket`'s datagrams (UDP GRO); whether it will.
fn enable_gro(socket: &Socket) -> bool {
    let on: libc::c_int = 1;
    // SAFETY: the option value is an int alive for the call, and its length says so; the
    // socket is open.
    let result = unsafe {
        libc::setsockopt(
            socket.as_raw_fd(),
            libc::SOL_UDP,
            UDP_GRO,
            (&raw const on).cast(),
            libc::socklen_t::try_from(size_of::<libc::c_int>()).unwrap_or(0),
        )
    };
    result == 0
}

/// The segment size of a coalesced receive (UDP GRO), from the control messages the kernel
/// wrote into `header`'s control buffer; none for a single datagram.
pub(crate) fn gro_segment(header: &libc::msghdr) -> Option<usize> {
    if header.msg_control.is_null() || header.msg_controllen == 0 {
        return None;
    }
    // SAFETY: `msg_control` points at the caller's control buffer of `msg_controllen` bytes,
    // which the kernel filled for this receive; CMSG_FIRSTHDR and CMSG_NXTHDR return only
    // headers that lie whole within that length (or null), and a UDP_GRO message's data is
    // one int.
    unsafe {
        let mut message = libc::CMSG_FIRSTHDR(header);
        while !message.is_null() {
            if (*message).cmsg_level == libc::SOL_UDP
                && (*message).cmsg_type == UDP_GRO
                && (*message).cmsg_len >= libc::CMSG_LEN(4) as usize
            {
                let size = std::ptr::read_unaligned(libc::CMSG_DATA(message).cast::<libc::c_int>());
                return usize::try_from(size).ok().filter(|size| *size > 0);
            }
            message = libc::CMSG_NXTHDR(header, message);
        }
    }
    None
}

/// What one receive call brought.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Received {
    /// Kernel receives: each a datagram, or a run the kernel coalesced (UDP GRO).
    pub receives: usize,
    /// Datagrams handed on (each datagram of a coalesced run counts).
    pub datagrams: usize,
    /// Receives dropped whole because the kernel cut them (a datagram past its buffer, or
    /// control messages past theirs, which would leave a coalesced run unsplittable): to be
    /// counted as invalid.
    pub dropped: usize,
    /// Receives that were coalesced runs.
    pub coalesced: usize,
}

impl std::ops::AddAssign for Received {
    fn add_assign(&mut self, other: Self) {
        self.receives += other.receives;
        self.datagrams += other.datagrams;
        self.dropped += other.dropped;
        self.coalesced += other.coalesced;
    }
}

impl Received {
    /// Adds one kernel receive of `bytes` (flags `flags`, control messages in `header`) from
    /// `source`, handing its datagrams to `handle`: the datagram, or each datagram of a
    /// coalesced run (`segment` bytes each, the last possibly shorter). A receive the kernel
    /// cut (MSG_TRUNC, or MSG_CTRUNC: its segment size may be lost) is dropped whole.
    pub(crate) fn add(
        &mut self,
        bytes: &[u8],
        header: &libc::msghdr,
        source: Option<SocketAddr>,
        handle: &mut impl FnMut(&[u8], SocketAddr),
    ) {
        self.receives += 1;
        let cut = header.msg_flags & (libc::MSG_TRUNC | libc::MSG_CTRUNC) != 0;
        let Some(source) = source.filter(|_| !cut) else {
            self.dropped += 1;
            return;
        };
        match gro_segment(header) {
            Some(size) if size < bytes.len() => {
                self.coalesced += 1;
                for datagram in bytes.chunks(size) {
                    handle(datagram, source);
                    self.datagrams += 1;
                }
            }
            _ => {
                handle(bytes, source);
                self.datagrams += 1;
            }
        }
    }
}

/// Whether a send failed because this kernel or route has no UDP GSO.
fn gso_unsupported(error: &io::Error) -> bool {
    matches!(
        error.raw_os_error(),
        Some(libc::EIO | libc::EINVAL | libc::ENOPROTOOPT | libc::EOPNOTSUPP)
    )
}

/// Datagrams one receive call takes at most.
pub const RECEIVE_BATCH: usize = 16;

/// How a transport's sends and receives reach the kernel (setting `udp_io`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum UdpIo {
    /// `sendmmsg` and `recvmmsg`: one system call per batch.
    #[default]
    Mmsg,
    /// io_uring: receives posted ahead and read from the completion queue without a system
    /// call, sends as linked requests with one (see [`crate::udp_ring`]).
    IoUring,
    /// io_uring with a kernel thread polling the submission queue (`SQPOLL`): fewer system
    /// calls, one more spinning thread per socket. Never the default.
    IoUringSqpoll,
}

impl std::str::FromStr for UdpIo {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, String> {
        match text {
            "mmsg" => Ok(Self::Mmsg),
            "io_uring" => Ok(Self::IoUring),
            "io_uring_sqpoll" => Ok(Self::IoUringSqpoll),
            other => Err(format!(
                "udp io {other:?} is not mmsg, io_uring or io_uring_sqpoll"
            )),
        }
    }
}

/// The kernel headers of one send or receive call, kept with the transport so that a call
/// fills only the entries it uses and zeroes nothing. Each call writes every field the kernel
/// reads of the entries it passes, pointing at memory alive for that call only (the caller's
/// datagrams, the destination, the transport's buffers and these arrays); between calls the
/// pointers are stale and never read.
struct Headers {
    messages: [libc::mmsghdr; BATCH_MAX],
    iovecs: [libc::iovec; BATCH_MAX],
    /// One control buffer per message: a GSO send's segment size, a receive's coalesced
    /// segment size (u64s for the alignment cmsghdr needs; room for more than the one int).
    controls: [[u64; 8]; BATCH_MAX],
    /// Where each received datagram came from.
    sources: [libc::sockaddr_storage; RECEIVE_BATCH],
}

// SAFETY: the raw pointers in `Headers` are written and used within one call on the thread
// that owns the transport; between calls they are stale values nobody reads, so moving the
// headers to another thread moves no access.
unsafe impl Send for Headers {}

impl Headers {
    fn new() -> Box<Self> {
        // SAFETY: all-zero bytes are a valid mmsghdr, iovec, u64 and sockaddr_storage (null
        // pointers, zero lengths).
        Box::new(unsafe { std::mem::zeroed() })
    }

    /// Points entry `index` at one buffer (`iov_base`, `iov_len`) and an address of
    /// `name_length` bytes at `name`, with no control message.
    fn point(
        &mut self,
        index: usize,
        base: *mut libc::c_void,
        length: usize,
        name: *mut libc::c_void,
        name_length: libc::socklen_t,
    ) {
        self.iovecs[index] = libc::iovec {
            iov_base: base,
            iov_len: length,
        };
        let iovec = std::ptr::from_mut(&mut self.iovecs[index]);
        address(&mut self.messages[index], name, name_length, iovec, 1);
    }
}

/// Writes every field of `message` the kernel reads: an address of `name_length` bytes at
/// `name`, `count` iovecs from `iovecs`, no control message (the caller adds one after).
fn address(
    message: &mut libc::mmsghdr,
    name: *mut libc::c_void,
    name_length: libc::socklen_t,
    iovecs: *mut libc::iovec,
    count: usize,
) {
    message.msg_len = 0;
    message.msg_hdr.msg_name = name;
    message.msg_hdr.msg_namelen = name_length;
    message.msg_hdr.msg_iov = iovecs;
    message.msg_hdr.msg_iovlen = count;
    message.msg_hdr.msg_control = std::ptr::null_mut();
    message.msg_hdr.msg_controllen = 0;
    message.msg_hdr.msg_flags = 0;
}

/// A non-blocking UDP socket and the buffers it receives into.
pub struct UdpTransport {
    /// The io_uring backend, when chosen: declared before the socket so that it is dropped
    /// (its requests cancelled) while the socket is open.
    ring: Option<crate::udp_ring::UdpRing>,
    socket: Socket,
    /// [`RECEIVE_BATCH`] buffers of [`DATAGRAM_MAX`] bytes, allocated once (empty with a ring,
    /// which has its own).
    buffers: Box<[u8]>,
    headers: Box<Headers>,
    /// Whether runs of equal datagrams go out as one GSO send (`UDP_SEGMENT`); turned off for
    /// good when the kernel refuses it before any GSO send went out (after one has, a failure is
    /// the network's, not a missing feature).
    gso: bool,
    gso_worked: bool,
    /// Whether the kernel hands this socket runs of datagrams coalesced (UDP GRO), which
    /// [`UdpTransport::receive`] splits again.
    gro: bool,
    /// The one address a connected socket talks to (a unicast publication's endpoint): sends
    /// to it name no address, so the kernel reuses the connection's route instead of looking
    /// one up per datagram, and the kernel delivers it datagrams from that address only.
    peer: Option<SocketAddr>,
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
        // Coalesced receives where the kernel has them (5.0+); one datagram each otherwise.
        let gro = enable_gro(&socket);
        let mut transport = Self::with(socket);
        transport.gro = gro;
        Ok(transport)
    }

    /// A socket that sends a publication's stream: bound to the channel's interface (or any
    /// address and port); for a multicast group, bound to the control group and joined to it, to
    /// hear the receivers' status messages and NAKs, with the channel's hops and interface.
    ///
    /// A unicast publication's socket is connected to its endpoint when `connect` (setting
    /// `udp_connect`, as Aeron's are by default): see [`UdpTransport::peer`].
    pub fn sender(channel: &UdpChannel, buffers: SocketBuffers, connect: bool) -> io::Result<Self> {
        let endpoint = channel.endpoint.or(channel.control).ok_or_else(|| {
            io::Error::new(io::ErrorKind::InvalidInput, "a sender needs an endpoint")
        })?;
        let socket = Self::socket(&endpoint, buffers)?;
        match (channel.control, channel.multicast) {
            (Some(control), true) => {
                socket.set_reuse_address(true)?;
                socket.bind(&SockAddr::from(control))?;
                join(&socket, control.ip(), channel)?;
                set_multicast_sending(&socket, channel)?;
            }
            // A multi-destination publication listens at its control address: receivers send
            // their status messages and NAKs (and, dynamic, their requests to join) there.
            (Some(control), false) => socket.bind(&SockAddr::from(control))?,
            (None, multicast) => {
                let local = match channel.interface {
                    Some(interface) => SocketAddr::new(interface.address, interface.port),
                    None if endpoint.is_ipv4() => {
                        SocketAddr::new(IpAddr::V4(Ipv4Addr::UNSPECIFIED), 0)
                    }
                    None => SocketAddr::new(IpAddr::V6(std::net::Ipv6Addr::UNSPECIFIED), 0),
                };
                socket.bind(&SockAddr::from(local))?;
                if !multicast && connect {
                    // A unicast publication talks to its endpoint alone, as Aeron's connected
                    // send sockets do: its receiver's status messages and NAKs come from the
                    // socket bound there, and no other source is heard.
                    socket.connect(&SockAddr::from(endpoint))?;
                    let mut transport = Self::with(socket);
                    transport.peer = Some(endpoint);
                    return Ok(transport);
                }
            }
        }
        Ok(Self::with(socket))
    }

    fn with(socket: Socket) -> Self {
        Self {
            ring: None,
            socket,
            buffers: vec![0u8; RECEIVE_BATCH * DATAGRAM_MAX].into_boxed_slice(),
            headers: Headers::new(),
            gso: true,
            gso_worked: false,
            gro: false,
            peer: None,
        }
    }

    /// Sends and receives through `io` from now on (made right after the socket, before any
    /// datagram is read). Fails when io_uring cannot be used here.
    pub fn use_io(&mut self, io: UdpIo) -> io::Result<()> {
        let sqpoll = match io {
            UdpIo::Mmsg => {
                if self.ring.take().is_some() {
                    self.buffers = vec![0u8; RECEIVE_BATCH * DATAGRAM_MAX].into_boxed_slice();
                }
                return Ok(());
            }
            UdpIo::IoUring => false,
            UdpIo::IoUringSqpoll => true,
        };
        let ring = crate::udp_ring::UdpRing::new(self.socket.as_raw_fd(), sqpoll)?;
        self.ring = Some(ring);
        self.buffers = Box::default();
        Ok(())
    }

    /// The address a connected socket talks to alone, if it is connected: sends to it name no
    /// address (the kernel keeps the route), and the kernel drops datagrams from any other
    /// source. `udp_connect = false` leaves it unconnected, for a receiver whose replies leave
    /// from another address than the endpoint (one bound to every address of a host with
    /// several).
    pub fn peer(&self) -> Option<SocketAddr> {
        self.peer
    }

    /// How sends and receives reach the kernel.
    pub fn io(&self) -> UdpIo {
        match &self.ring {
            None => UdpIo::Mmsg,
            Some(ring) if ring.sqpoll() => UdpIo::IoUringSqpoll,
            Some(_) => UdpIo::IoUring,
        }
    }

    /// Whether receives take runs of datagrams the kernel coalesced (UDP GRO, receive sockets
    /// on kernels that have it).
    pub fn uses_gro(&self) -> bool {
        self.gro
    }

    /// Whether sends use UDP GSO (until the kernel first refuses it).
    pub fn uses_gso(&self) -> bool {
        self.gso
    }

    /// Sends without GSO from now on (what a kernel without it does anyway).
    pub fn disable_gso(&mut self) {
        self.gso = false;
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
    /// socket's buffer is full: the caller sends the rest later). Runs of datagrams of one
    /// length (the last of a run may be shorter) go out as one message the kernel segments
    /// (UDP GSO), so a batch of full datagrams crosses the stack once.
    pub fn send(&mut self, datagrams: &[&[u8]], destination: SocketAddr) -> io::Result<usize> {
        if self.gso && datagrams.len() > 1 {
            match self.send_segmented(datagrams, destination) {
                Ok(sent) => {
                    self.gso_worked |= sent > 0;
                    return Ok(sent);
                }
                // A kernel or device without UDP GSO says so on the first try, before anything
                // went out: send datagram by datagram from now on.
                Err(error) if gso_unsupported(&error) && !self.gso_worked => self.gso = false,
                Err(error) => return Err(error),
            }
        }
        self.send_each(datagrams, destination)
    }

    /// Where a message to `destination` names its address: nowhere (null, 0) for a connected
    /// socket's peer.
    fn name_of(&self, destination: &SockAddr, to: SocketAddr) -> (*mut libc::c_void, u32) {
        if self.peer == Some(to) {
            (std::ptr::null_mut(), 0)
        } else {
            (destination.as_ptr().cast_mut().cast(), destination.len())
        }
    }

    fn send_each(&mut self, datagrams: &[&[u8]], to: SocketAddr) -> io::Result<usize> {
        let destination = SockAddr::from(to);
        let (name, name_length) = self.name_of(&destination, to);
        let count = datagrams.len().min(BATCH_MAX);
        let headers = &mut *self.headers;
        for (index, datagram) in datagrams.iter().take(count).enumerate() {
            headers.point(
                index,
                datagram.as_ptr().cast_mut().cast(),
                datagram.len(),
                name,
                name_length,
            );
        }
        let connected = self.peer.is_some();
        send_messages(
            &self.socket,
            &mut self.ring,
            &mut headers.messages[..count],
            connected,
        )
    }

    /// Sends runs of equal datagrams as GSO messages; returns the datagrams sent.
    fn send_segmented(&mut self, datagrams: &[&[u8]], to: SocketAddr) -> io::Result<usize> {
        let destination = SockAddr::from(to);
        let (name, name_length) = self.name_of(&destination, to);
        let count = datagrams.len().min(BATCH_MAX);
        let headers = &mut *self.headers;
        // Datagrams in each message, to count what went out.
        let mut runs = [0u8; BATCH_MAX];
        for (index, datagram) in datagrams.iter().take(count).enumerate() {
            headers.iovecs[index] = libc::iovec {
                iov_base: datagram.as_ptr().cast_mut().cast(),
                iov_len: datagram.len(),
            };
        }
        let mut messages = 0;
        let mut start = 0;
        while start < count {
            let segment = datagrams[start].len();
            let mut end = start + 1;
            let mut bytes = segment;
            // A run: datagrams of the segment's length, then at most one shorter, within the
            // kernel's limits (64 segments, one IP datagram of payload).
            while end < count
                && end - start < GSO_SEGMENTS_MAX
                && datagrams[end].len() <= segment
                && datagrams[end - 1].len() == segment
                && bytes + datagrams[end].len() <= GSO_BYTES_MAX
                && segment > 0
            {
                bytes += datagrams[end].len();
                end += 1;
            }
            // A pointer with the provenance of the whole array: the kernel reads a run of it.
            let iovecs = headers.iovecs.as_mut_ptr().wrapping_add(start);
            let message = &mut headers.messages[messages];
            address(message, name, name_length, iovecs, end - start);
            if end - start > 1 {
                let control = &mut headers.controls[messages];
                let segment_size = u16::try_from(segment).unwrap_or(u16::MAX);
                // SAFETY: `control` is 64 bytes, aligned for cmsghdr, more than
                // CMSG_SPACE(2) (24 on 64-bit Linux); the macros only compute offsets within
                // it, and the header is written before its data.
                unsafe {
                    let space = libc::CMSG_SPACE(2) as usize;
                    debug_assert!(space <= size_of_val(control));
                    let message = &mut message.msg_hdr;
                    message.msg_control = control.as_mut_ptr().cast();
                    message.msg_controllen = space;
                    let header = libc::CMSG_FIRSTHDR(message);
                    (*header).cmsg_level = libc::SOL_UDP;
                    (*header).cmsg_type = UDP_SEGMENT;
                    (*header).cmsg_len = libc::CMSG_LEN(2) as usize;
                    std::ptr::write_unaligned(libc::CMSG_DATA(header).cast::<u16>(), segment_size);
                }
            }
            // At most GSO_SEGMENTS_MAX (64) datagrams a run.
            runs[messages] = u8::try_from(end - start).unwrap_or(u8::MAX);
            messages += 1;
            start = end;
        }
        let connected = self.peer.is_some();
        let sent_messages = send_messages(
            &self.socket,
            &mut self.ring,
            &mut headers.messages[..messages],
            connected,
        )?;
        Ok(runs[..sent_messages]
            .iter()
            .map(|&run| usize::from(run))
            .sum())
    }

    /// Receives what is waiting, at most [`RECEIVE_BATCH`] kernel receives per call
    /// (`recvmmsg`; each a datagram, or a run the kernel coalesced), without blocking, handing
    /// each datagram to `handle` with its source; says how many of each.
    pub fn receive(&mut self, mut handle: impl FnMut(&[u8], SocketAddr)) -> io::Result<Received> {
        if let Some(ring) = &mut self.ring {
            return ring.receive(handle);
        }
        let headers = &mut *self.headers;
        for (index, buffer) in self.buffers.chunks_exact_mut(DATAGRAM_MAX).enumerate() {
            let source = std::ptr::from_mut(&mut headers.sources[index]).cast();
            headers.point(
                index,
                buffer.as_mut_ptr().cast(),
                DATAGRAM_MAX,
                source,
                socklen_of_storage(),
            );
            if self.gro {
                let control = &mut headers.controls[index];
                let message = &mut headers.messages[index].msg_hdr;
                message.msg_control = control.as_mut_ptr().cast();
                message.msg_controllen = size_of_val(control);
            }
        }
        // A connected socket's pending ICMP report fails the first call and hides what is
        // queued behind it: taken, the call is made once more.
        let mut retried = self.peer.is_none();
        let messages = loop {
            // SAFETY: the first RECEIVE_BATCH headers point at a buffer of DATAGRAM_MAX bytes
            // of `self.buffers`, an address of `headers.sources` and (with GRO) a control
            // buffer of `headers.controls` each (written above, and a failed call writes
            // nothing), alive for the call; the kernel writes datagrams, sources, control
            // messages and lengths into them only. MSG_DONTWAIT: never blocks.
            let result = unsafe {
                libc::recvmmsg(
                    self.socket.as_raw_fd(),
                    headers.messages.as_mut_ptr(),
                    u32::try_from(RECEIVE_BATCH).unwrap_or(1),
                    libc::MSG_DONTWAIT,
                    std::ptr::null_mut(),
                )
            };
            if result >= 0 {
                break usize::try_from(result).unwrap_or(0).min(RECEIVE_BATCH);
            }
            let error = io::Error::last_os_error();
            if !retried && icmp_report(&error) {
                retried = true;
                continue;
            }
            // ECONNREFUSED: an earlier datagram met no listener; nothing was lost here.
            if matches!(
                error.kind(),
                io::ErrorKind::WouldBlock | io::ErrorKind::ConnectionRefused
            ) {
                return Ok(Received::default());
            }
            return Err(error);
        };
        let mut received = Received::default();
        for index in 0..messages {
            let message = &headers.messages[index];
            let length = usize::try_from(message.msg_len)
                .unwrap_or(0)
                .min(DATAGRAM_MAX);
            let start = index * DATAGRAM_MAX;
            received.add(
                &self.buffers[start..start + length],
                &message.msg_hdr,
                socket_address(&headers.sources[index]),
                &mut handle,
            );
        }
        Ok(received)
    }
}

/// Whether `error` may be an ICMP report about an earlier datagram, which a connected socket
/// hands to its next call (that call then sends or receives nothing; the report is cleared).
pub(crate) fn icmp_report(error: &io::Error) -> bool {
    matches!(
        error.raw_os_error(),
        Some(
            libc::ECONNREFUSED
                | libc::EHOSTUNREACH
                | libc::ENETUNREACH
                | libc::EHOSTDOWN
                | libc::ENOPROTOOPT
                | libc::EPROTO
                | libc::EACCES
                | libc::EMSGSIZE
        )
    )
}

/// `sendmmsg` (or the ring's linked sends) until every message went or the socket is full;
/// returns the messages sent. On a `connected` socket a failure before anything went out may be
/// an earlier datagram's ICMP report: it is taken and the send tried once more (a port nobody
/// listens on is no error at all; anything else that fails twice is the caller's).
fn send_messages(
    socket: &Socket,
    ring: &mut Option<crate::udp_ring::UdpRing>,
    headers: &mut [libc::mmsghdr],
    connected: bool,
) -> io::Result<usize> {
    if let Some(ring) = ring {
        return ring.send(headers, connected);
    }
    let count = headers.len();
    let mut sent = 0;
    let mut retried = !connected;
    while sent < count {
        let remaining = u32::try_from(count - sent).unwrap_or(u32::MAX);
        // SAFETY: `headers[sent..]` point at the destination, iovecs over the caller's
        // datagrams and control buffers, all alive for this call (written by the caller for
        // it); the kernel only reads them (and writes `msg_len`). The socket is open.
        let result = unsafe {
            libc::sendmmsg(
                socket.as_raw_fd(),
                headers[sent..].as_mut_ptr(),
                remaining,
                libc::MSG_DONTWAIT,
            )
        };
        if result < 0 {
            let error = io::Error::last_os_error();
            if sent == 0 && !retried && icmp_report(&error) {
                retried = true;
                continue;
            }
            // What went out before the error counts: the caller must not send it again.
            if matches!(
                error.kind(),
                io::ErrorKind::WouldBlock | io::ErrorKind::ConnectionRefused
            ) || sent > 0
            {
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

fn socklen_of_storage() -> libc::socklen_t {
    libc::socklen_t::try_from(size_of::<libc::sockaddr_storage>()).unwrap_or(0)
}

/// The IPv4 or IPv6 address the kernel wrote into `storage`.
pub(crate) fn socket_address(storage: &libc::sockaddr_storage) -> Option<SocketAddr> {
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

    /// The backends this machine runs: io_uring's only where the kernel allows it (required
    /// where `TERN_REQUIRE_IO_URING` is set, as in CI).
    fn backends() -> Vec<UdpIo> {
        match crate::udp_ring::probe(false) {
            Ok(()) => {
                let mut backends = vec![UdpIo::Mmsg, UdpIo::IoUring];
                // SQPOLL may need privileges or a newer kernel than plain io_uring.
                match crate::udp_ring::probe(true) {
                    Ok(()) => backends.push(UdpIo::IoUringSqpoll),
                    Err(error) => eprintln!("io_uring SQPOLL unavailable ({error}): not tested"),
                }
                backends
            }
            Err(error) => {
                assert!(
                    std::env::var_os("TERN_REQUIRE_IO_URING").is_none(),
                    "io_uring is required here: {error}"
                );
                eprintln!("io_uring unavailable ({error}): testing sendmmsg/recvmmsg only");
                vec![UdpIo::Mmsg]
            }
        }
    }

    /// A receiver on a free loopback port and a sender to it, with `send` buffers, both
    /// through `io`.
    fn pair(send: SocketBuffers, io: UdpIo) -> (UdpTransport, UdpTransport, SocketAddr) {
        pair_connected(send, io, true)
    }

    /// [`pair`], the sender connected or not.
    fn pair_connected(
        send: SocketBuffers,
        io: UdpIo,
        connect: bool,
    ) -> (UdpTransport, UdpTransport, SocketAddr) {
        let mut receiver = UdpTransport::receiver(
            &channel("tern:udp?endpoint=127.0.0.1:0"),
            SocketBuffers::default(),
        )
        .unwrap();
        receiver.use_io(io).unwrap();
        let destination = receiver.local_address().unwrap();
        let mut sender = UdpTransport::sender(
            &channel(&format!("tern:udp?endpoint={destination}")),
            send,
            connect,
        )
        .unwrap();
        sender.use_io(io).unwrap();
        assert_eq!((receiver.io(), sender.io()), (io, io));
        (receiver, sender, destination)
    }

    /// Receives until `count` datagrams arrived (bounded: loopback delivers at once, but the
    /// receive is non-blocking, so the loop waits a little for the kernel).
    fn receive_all(receiver: &mut UdpTransport, count: usize) -> Vec<(Vec<u8>, SocketAddr)> {
        receive_counted(receiver, count).0
    }

    /// [`receive_all`], and how many of the receives were coalesced runs.
    fn receive_counted(
        receiver: &mut UdpTransport,
        count: usize,
    ) -> (Vec<(Vec<u8>, SocketAddr)>, usize) {
        let mut received = Vec::new();
        let mut coalesced = 0;
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
            coalesced += got.coalesced;
            if got.datagrams == 0 {
                std::thread::yield_now();
            }
        }
        (received, coalesced)
    }

    #[test]
    fn runs_of_equal_datagrams_go_out_segmented_and_arrive_as_sent_with_or_without_gso() {
        let lengths = [
            1000, 1000, 1000, 500, 1000, 1000, 300, 7, 7, 7, 1408, 2000, 2000,
        ];
        let datagrams: Vec<Vec<u8>> = lengths
            .iter()
            .enumerate()
            .map(|(index, &length)| vec![u8::try_from(index).unwrap(); length])
            .collect();
        let views: Vec<&[u8]> = datagrams.iter().map(Vec::as_slice).collect();
        for (gso, io) in backends()
            .into_iter()
            .flat_map(|io| [(true, io), (false, io)])
        {
            let (mut receiver, mut sender, destination) = pair(SocketBuffers::default(), io);
            if !gso {
                sender.disable_gso();
            }
            assert_eq!(sender.send(&views, destination).unwrap(), lengths.len());
            let (received, coalesced) = receive_counted(&mut receiver, lengths.len());
            let mut got: Vec<&[u8]> = received.iter().map(|(bytes, _)| bytes.as_slice()).collect();
            if io != UdpIo::Mmsg {
                // Receives posted together may complete in any order (each datagram is
                // distinct by its first byte).
                got.sort_by_key(|bytes| bytes[0]);
            }
            assert_eq!(got, views, "gso {gso}, {io:?}: each datagram whole");
            assert_eq!(sender.uses_gso(), gso, "this kernel (4.18+) segments UDP");
            // On loopback a GSO send arrives as one coalesced run, split again on receipt.
            assert!(receiver.uses_gro(), "this kernel (5.0+) coalesces UDP");
            assert_eq!(
                coalesced > 0,
                gso,
                "{io:?}: runs arrive coalesced exactly when sent so"
            );
        }
    }

    #[test]
    fn batches_of_datagrams_cross_loopback_with_their_source() {
        for io in backends() {
            let (mut receiver, mut sender, destination) = pair(
                SocketBuffers {
                    send: Some(1 << 20),
                    receive: None,
                },
                io,
            );
            let datagrams: Vec<Vec<u8>> = (0..100u8)
                .map(|index| vec![index; 100 + usize::from(index)])
                .collect();
            let slices: Vec<&[u8]> = datagrams.iter().map(Vec::as_slice).collect();
            let mut sent = 0;
            while sent < slices.len() {
                sent += sender.send(&slices[sent..], destination).unwrap();
            }
            let mut received = receive_all(&mut receiver, 100);
            if io != UdpIo::Mmsg {
                received.sort_by_key(|(bytes, _)| bytes[0]);
            }
            let source = sender.local_address().unwrap();
            for (index, (bytes, from)) in received.iter().enumerate() {
                assert_eq!(bytes, &datagrams[index], "{io:?}");
                assert_eq!(from.port(), source.port());
            }
            let nothing = receiver.receive(|_, _| panic!("nothing more")).unwrap();
            assert_eq!(nothing, Received::default());
            // Either way back: the receiver answers the sender's address.
            assert_eq!(receiver.send(&[b"back"], source).unwrap(), 1);
            let answer = receive_all(&mut sender, 1);
            assert_eq!(answer[0].0, b"back");
        }
    }

    #[test]
    fn a_ring_dropped_with_its_receives_posted_cancels_them_and_its_socket_is_free_again() {
        if !backends().contains(&UdpIo::IoUring) {
            return;
        }
        for _ in 0..50 {
            let (receiver, _, destination) = pair(SocketBuffers::default(), UdpIo::IoUring);
            drop(receiver);
            // The port is released only once nothing (no posted receive) holds the socket.
            UdpTransport::receiver(
                &channel(&format!("tern:udp?endpoint={destination}")),
                SocketBuffers::default(),
            )
            .unwrap();
        }
    }

    #[test]
    fn a_connected_sender_hears_its_endpoint_alone_and_an_unconnected_one_anyone() {
        for io in backends() {
            for connect in [true, false] {
                let (mut receiver, mut sender, destination) =
                    pair_connected(SocketBuffers::default(), io, connect);
                assert_eq!(sender.peer(), connect.then_some(destination));
                let port = sender.local_address().unwrap().port();
                let source = SocketAddr::from(([127, 0, 0, 1], port));
                let stranger = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
                stranger.send_to(b"stranger", source).unwrap();
                assert_eq!(receiver.send(&[b"status"], source).unwrap(), 1);
                let expected: &[&[u8]] = if connect {
                    &[b"status"]
                } else {
                    &[b"status", b"stranger"]
                };
                let heard = receive_all(&mut sender, expected.len());
                let mut got: Vec<&[u8]> = heard.iter().map(|(bytes, _)| bytes.as_slice()).collect();
                got.sort_unstable();
                assert_eq!(got, expected, "{io:?}, connected {connect}");
                // Sends to the endpoint arrive either way (naming no address when connected).
                assert_eq!(sender.send(&[b"data"], destination).unwrap(), 1);
                assert_eq!(receive_all(&mut receiver, 1)[0].0, b"data");
            }
        }
    }

    #[test]
    fn a_connected_sender_to_nobody_neither_fails_nor_loses_the_next_datagram() {
        for io in backends() {
            let (receiver, mut sender, destination) = pair(SocketBuffers::default(), io);
            drop(receiver);
            // Each send to a closed port earns an ICMP port unreachable, reported on the
            // socket's next call: never an error, and the next send still goes.
            for _ in 0..20 {
                // Back to back: the second send takes the first one's report.
                assert_eq!(sender.send(&[b"setup"], destination).unwrap(), 1, "{io:?}");
                assert_eq!(sender.send(&[b"setup"], destination).unwrap(), 1, "{io:?}");
                // Or a receive takes it.
                let nothing = sender.receive(|_, _| panic!("nothing")).unwrap();
                assert_eq!(nothing.datagrams, 0);
            }
            // A report pending when the listener comes back costs nothing either: the
            // next datagram arrives.
            assert_eq!(sender.send(&[b"setup"], destination).unwrap(), 1);
            let mut back = UdpTransport::receiver(
                &channel(&format!("tern:udp?endpoint={destination}")),
                SocketBuffers::default(),
            )
            .unwrap();
            back.use_io(io).unwrap();
            assert_eq!(sender.send(&[b"again"], destination).unwrap(), 1, "{io:?}");
            assert_eq!(receive_all(&mut back, 1)[0].0, b"again", "{io:?}");
        }
    }

    /// A receive header whose control buffer holds a UDP_GRO message of `segment` (if any),
    /// with `flags`, for `Received::add`.
    fn gro_header(control: &mut [u64; 8], segment: Option<i32>, flags: i32) -> libc::msghdr {
        // SAFETY: all-zero bytes are a valid msghdr (null pointers, zero lengths).
        let mut header: libc::msghdr = unsafe { std::mem::zeroed() };
        header.msg_flags = flags;
        if let Some(segment) = segment {
            header.msg_control = control.as_mut_ptr().cast();
            header.msg_controllen = size_of_val(control);
            // SAFETY: the control buffer is 64 bytes, aligned for cmsghdr, more than
            // CMSG_SPACE(4); the macros compute offsets within it, and the header is written
            // before its data.
            unsafe {
                let message = libc::CMSG_FIRSTHDR(&raw const header);
                (*message).cmsg_level = libc::SOL_UDP;
                (*message).cmsg_type = UDP_GRO;
                (*message).cmsg_len = libc::CMSG_LEN(4) as usize;
                std::ptr::write_unaligned(libc::CMSG_DATA(message).cast::<i32>(), segment);
                header.msg_controllen = libc::CMSG_SPACE(4) as usize;
            }
        }
        header
    }

    #[test]
    fn a_coalesced_receive_is_split_by_its_segment_and_a_cut_one_dropped_whole() {
        let source: SocketAddr = "127.0.0.1:9".parse().unwrap();
        let bytes: Vec<u8> = (0..250u8).collect();
        let split = |segment: Option<i32>, flags: i32| {
            let mut control = [0u64; 8];
            let header = gro_header(&mut control, segment, flags);
            let mut received = Received::default();
            let mut lengths = Vec::new();
            received.add(&bytes, &header, Some(source), &mut |datagram, _| {
                lengths.push(datagram.len());
            });
            (received, lengths)
        };
        // Segments of 100: two whole, the last shorter.
        let (received, lengths) = split(Some(100), 0);
        assert_eq!(lengths, [100, 100, 50]);
        assert_eq!(
            (received.receives, received.datagrams, received.coalesced),
            (1, 3, 1)
        );
        // No control message, or a segment as long as the buffer (or longer): one datagram.
        for segment in [None, Some(250), Some(4000)] {
            assert_eq!(split(segment, 0).1, [250], "{segment:?}");
        }
        // A segment size of zero or below is no segment size.
        assert_eq!(split(Some(0), 0).1, [250]);
        assert_eq!(split(Some(-5), 0).1, [250]);
        // Cut by the kernel (data or control messages): dropped whole, counted.
        for flags in [libc::MSG_TRUNC, libc::MSG_CTRUNC] {
            let (received, lengths) = split(Some(100), flags);
            assert!(lengths.is_empty());
            assert_eq!((received.receives, received.dropped), (1, 1));
        }
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
