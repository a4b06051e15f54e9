//! The io_uring backend of a [`UdpTransport`](crate::udp_transport::UdpTransport): the same
//! sends and receives through one submission ring per socket (`udp_io = "io_uring"`), as an
//! alternative to `sendmmsg`/`recvmmsg` system calls.
//!
//! **Receiving.** [`RECEIVE_BATCH`] `recvmsg` requests stay posted on the socket, each with a
//! slot of its own (header, address and a [`DATAGRAM_MAX`] buffer) that this ring owns on the
//! heap. They are first posted by the first receive, on the thread that owns the transport (a
//! request's completion work runs on the thread that submitted it). Reading what arrived is a
//! look at the completion queue, without a system call; the slots read are posted again with
//! one `io_uring_enter` (a slot that cannot be posted now is posted by a later call). Requests
//! posted on one socket can complete in any order, so datagrams that arrive together may be
//! handed on out of order: the protocol above inserts frames at their offsets and tolerates it.
//!
//! **Sending.** A send is a chain of linked `sendmsg` requests (`IOSQE_IO_LINK`) with
//! `MSG_DONTWAIT`, submitted with one `io_uring_enter` that waits for all of them: each completes
//! at once, sent or refused (`EAGAIN` when the socket's buffer is full, which cancels the rest of
//! the chain), so what went out is always a prefix of what was asked, as with `sendmmsg`. A send
//! never returns before every request of its chain has completed, whatever `io_uring_enter`
//! says meanwhile (it retries): the requests point at the caller's memory. Each chain's requests
//! carry its generation in their user data, so a completion is never counted for another chain.
//!
//! **Memory.** The kernel writes into a posted slot until its request completes. Dropping the
//! ring cancels every posted request and waits for each to complete before the slots are freed;
//! a request that will not complete in a second leaves its slots allocated for good (leaked)
//! rather than freed under the kernel.
//!
//! Owned by the thread of the agent that owns the transport; never shared. [`probe`] says at
//! driver start whether this kernel has what the backend uses.

use std::io;
use std::os::fd::RawFd;
use std::time::Duration;

use io_uring::{IoUring, opcode, squeue, types};

use crate::udp_transport::{BATCH_MAX, DATAGRAM_MAX, RECEIVE_BATCH, Received, socket_address};

/// Submission entries: every receive slot posted plus a full send chain, with room to spare.
const RING_ENTRIES: u32 = 128;
/// A completion of a send request carries this bit in its user data, with the chain's
/// generation above [`GENERATION_SHIFT`] and its place in the chain below (receives: the slot).
const SEND_TAG: u64 = 1 << 62;
/// A completion of a cancellation request carries this bit.
const CANCEL_TAG: u64 = 1 << 61;
/// Where a send's generation starts in its user data (its place in the chain fits below).
const GENERATION_SHIFT: u32 = 8;
/// How long each of [`UdpRing`]'s waits for its cancelled receives lasts, and how many it makes
/// at most (a second in all): bounded by the kernel's timeouts, not by reading a clock.
const DRAIN_WAIT: Duration = Duration::from_millis(10);
const DRAIN_WAITS: usize = 100;
/// How long the SQPOLL kernel thread spins for new submissions before it sleeps.
const SQPOLL_IDLE_MS: u32 = 10;
/// How long a send pauses before retrying an `io_uring_enter` that keeps failing while its
/// chain is in flight.
const RETRY_PAUSE: Duration = Duration::from_micros(50);

/// One posted receive: what the kernel reads (header, iovec) and writes (address, flags,
/// control messages, length, and the buffer the iovec points at).
#[repr(C)]
struct Slot {
    header: libc::msghdr,
    iovec: libc::iovec,
    source: libc::sockaddr_storage,
    /// Control messages: a coalesced run's segment size (UDP GRO). u64s for the alignment
    /// cmsghdr needs; room for more than the one int.
    control: [u64; 8],
}

/// A socket's io_uring: its posted receives and the chain of a send.
pub(crate) struct UdpRing {
    ring: IoUring,
    fd: RawFd,
    /// [`RECEIVE_BATCH`] slots; each header points at its own iovec and address, each iovec
    /// at its part of `buffers`. Heap memory that never moves while the ring lives.
    slots: Box<[Slot]>,
    buffers: Box<[u8]>,
    /// Whether slot `i` has a request in the kernel.
    posted: [bool; RECEIVE_BATCH],
    /// Receives completed and not yet handed on: slot and result, in completion order.
    ready: [(usize, i32); RECEIVE_BATCH],
    ready_count: usize,
    /// The current send chain's generation (in its requests' user data).
    generation: u64,
    sqpoll: bool,
}

// SAFETY: the raw pointers in `slots` point only into `slots` and `buffers`, which this ring
// owns, and a move between threads does not move the heap memory the kernel writes. The ring
// is used by one thread at a time: the conductor makes it and hands it to the agent that owns
// the transport, and only that agent submits requests (the receives are first posted by its
// first receive, so their completion work runs on its thread).
unsafe impl Send for UdpRing {}

impl std::fmt::Debug for UdpRing {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UdpRing")
            .field("fd", &self.fd)
            .field(
                "posted",
                &self.posted.iter().filter(|posted| **posted).count(),
            )
            .finish_non_exhaustive()
    }
}

/// Whether io_uring can be used here as this backend uses it: a ring can be made (the kernel
/// has it, and neither `kernel.io_uring_disabled` nor a seccomp filter forbids it), it takes
/// `recvmsg`, `sendmsg` and cancellations (5.3+), waits with a timeout (`EXT_ARG`, 5.11+) and,
/// with SQPOLL, takes sockets that are not registered files (5.11+).
pub fn probe(sqpoll: bool) -> io::Result<()> {
    let ring = build(sqpoll)?;
    let unsupported = |what: &str| {
        io::Error::new(
            io::ErrorKind::Unsupported,
            format!("this kernel's io_uring lacks {what}"),
        )
    };
    let mut operations = io_uring::Probe::new();
    ring.submitter().register_probe(&mut operations)?;
    for (code, name) in [
        (opcode::RecvMsg::CODE, "recvmsg"),
        (opcode::SendMsg::CODE, "sendmsg"),
        (opcode::AsyncCancel::CODE, "async cancel"),
    ] {
        if !operations.is_supported(code) {
            return Err(unsupported(name));
        }
    }
    if !ring.params().is_feature_ext_arg() {
        return Err(unsupported("waits with a timeout (IORING_FEAT_EXT_ARG)"));
    }
    if sqpoll && !ring.params().is_feature_sqpoll_nonfixed() {
        return Err(unsupported(
            "SQPOLL on unregistered files (IORING_FEAT_SQPOLL_NONFIXED)",
        ));
    }
    Ok(())
}

fn build(sqpoll: bool) -> io::Result<IoUring> {
    let mut builder = IoUring::builder();
    if sqpoll {
        builder.setup_sqpoll(SQPOLL_IDLE_MS);
    }
    builder.build(RING_ENTRIES)
}

impl UdpRing {
    /// A ring for socket `fd` (which must outlive it); its receives are posted by the first
    /// [`UdpRing::receive`].
    pub(crate) fn new(fd: RawFd, sqpoll: bool) -> io::Result<Self> {
        probe(sqpoll)?;
        let ring = build(sqpoll)?;
        // SAFETY: all-zero bytes are a valid msghdr, iovec and sockaddr_storage (null
        // pointers, zero lengths); each is filled in before the kernel sees it.
        let slots: Box<[Slot]> = (0..RECEIVE_BATCH)
            .map(|_| unsafe { std::mem::zeroed::<Slot>() })
            .collect();
        Ok(Self {
            ring,
            fd,
            slots,
            buffers: vec![0u8; RECEIVE_BATCH * DATAGRAM_MAX].into_boxed_slice(),
            posted: [false; RECEIVE_BATCH],
            ready: [(0, 0); RECEIVE_BATCH],
            ready_count: 0,
            generation: 0,
            sqpoll,
        })
    }

    /// Whether a kernel thread polls its submission queue.
    pub(crate) fn sqpoll(&self) -> bool {
        self.sqpoll
    }

    /// Points slot `index` at its memory again and queues its `recvmsg`; false (the slot stays
    /// unposted, for a later call) when the submission queue is full.
    fn post(&mut self, index: usize) -> bool {
        let buffer = self.buffers[index * DATAGRAM_MAX..(index + 1) * DATAGRAM_MAX].as_mut_ptr();
        let slot = &mut self.slots[index];
        slot.iovec = libc::iovec {
            iov_base: buffer.cast(),
            iov_len: DATAGRAM_MAX,
        };
        slot.header.msg_name = std::ptr::from_mut(&mut slot.source).cast();
        slot.header.msg_namelen =
            libc::socklen_t::try_from(size_of::<libc::sockaddr_storage>()).unwrap_or(0);
        slot.header.msg_iov = std::ptr::from_mut(&mut slot.iovec);
        slot.header.msg_iovlen = 1;
        slot.header.msg_control = slot.control.as_mut_ptr().cast();
        slot.header.msg_controllen = size_of_val(&slot.control);
        slot.header.msg_flags = 0;
        let entry = opcode::RecvMsg::new(types::Fd(self.fd), std::ptr::from_mut(&mut slot.header))
            .build()
            .user_data(index as u64);
        // SAFETY: the header, iovec, address and buffer are this ring's heap memory, which
        // stays allocated until the request completes (drop waits for it, or leaks them).
        if unsafe { self.ring.submission().push(&entry) }.is_err() {
            return false;
        }
        self.posted[index] = true;
        true
    }

    /// Queues every slot not in the kernel and not waiting to be handed on; whether any was.
    fn post_idle_slots(&mut self) -> bool {
        let mut queued = false;
        for index in 0..RECEIVE_BATCH {
            if !self.posted[index] && !self.ready[..self.ready_count].iter().any(|r| r.0 == index) {
                queued |= self.post(index);
            }
        }
        queued
    }

    /// Takes every completion waiting: receives into `ready`, sends of the current chain into
    /// `sends` (by their place in it). Returns how many of the chain's completed.
    fn reap(&mut self, sends: &mut [i32; BATCH_MAX]) -> usize {
        let mut sent = 0;
        let generation = self.generation;
        for entry in self.ring.completion() {
            let user_data = entry.user_data();
            if user_data & SEND_TAG != 0 {
                let place = user_data & ((1 << GENERATION_SHIFT) - 1);
                let chain = (user_data & !SEND_TAG) >> GENERATION_SHIFT;
                if chain == generation
                    && let Some(result) = usize::try_from(place).ok().and_then(|k| sends.get_mut(k))
                {
                    *result = entry.result();
                    sent += 1;
                }
            } else if user_data & CANCEL_TAG == 0
                && let Ok(index) = usize::try_from(user_data)
                && index < RECEIVE_BATCH
                && self.posted[index]
            {
                self.posted[index] = false;
                if self.ready_count < RECEIVE_BATCH {
                    self.ready[self.ready_count] = (index, entry.result());
                    self.ready_count += 1;
                }
            }
        }
        sent
    }

    /// Hands each datagram received since the last call to `handle` with its source (at most
    /// [`RECEIVE_BATCH`] receives, each a datagram or a coalesced run); posts the slots again.
    /// Returns how many datagrams there were.
    pub(crate) fn receive(
        &mut self,
        mut handle: impl FnMut(&[u8], std::net::SocketAddr),
    ) -> io::Result<Received> {
        let mut ignored = [0; BATCH_MAX];
        self.reap(&mut ignored);
        let mut received = Received::default();
        let mut failure = None;
        let (ready, count) = (self.ready, std::mem::take(&mut self.ready_count));
        for &(index, result) in &ready[..count] {
            match usize::try_from(result) {
                Ok(length) => {
                    let slot = &self.slots[index];
                    let start = index * DATAGRAM_MAX;
                    received.add(
                        &self.buffers[start..start + length.min(DATAGRAM_MAX)],
                        &slot.header,
                        socket_address(&slot.source),
                        &mut handle,
                    );
                }
                // ECONNREFUSED: a connected socket's earlier datagram met no listener.
                Err(_) if matches!(-result, libc::EAGAIN | libc::EINTR | libc::ECONNREFUSED) => {}
                Err(_) => failure = Some(io::Error::from_raw_os_error(-result)),
            }
        }
        // Every slot not in the kernel goes back (the first call posts them all); one that
        // cannot be queued now is queued by a later call, and a failed submission leaves the
        // queued ones for the next.
        if self.post_idle_slots()
            && let Err(error) = self.ring.submit()
        {
            failure.get_or_insert(error);
        }
        match failure {
            Some(error) if received.receives == 0 => Err(error),
            _ => Ok(received),
        }
    }

    /// Sends `headers` (each a datagram, or a GSO run, to its address) as one linked chain;
    /// returns how many went before the first refusal (none: the socket's buffer is full). A
    /// connected socket's first request may fail with an earlier datagram's ICMP port
    /// unreachable (sending nothing): that report taken, the chain is sent once more.
    pub(crate) fn send(&mut self, headers: &[libc::mmsghdr], connected: bool) -> io::Result<usize> {
        match self.send_chain(headers) {
            Ok((0, true)) => Ok(self.send_chain(headers)?.0),
            // A connected socket's first request may also fail for an earlier datagram's other
            // ICMP report (host or net unreachable, ...): taken, the chain is sent once more.
            Err(error) if connected && crate::udp_transport::icmp_report(&error) => {
                Ok(self.send_chain(headers)?.0)
            }
            other => other.map(|(sent, _)| sent),
        }
    }

    /// One chain of [`UdpRing::send`]: how many went, and whether the first was refused for
    /// an earlier datagram (ECONNREFUSED).
    fn send_chain(&mut self, headers: &[libc::mmsghdr]) -> io::Result<(usize, bool)> {
        let count = headers.len().min(BATCH_MAX);
        if count == 0 {
            return Ok((0, false));
        }
        let room = |ring: &mut IoUring| {
            let submission = ring.submission();
            submission.capacity() - submission.len()
        };
        if room(&mut self.ring) < count {
            // Receives queued for posting go first, to make room (a polling kernel thread
            // takes them in its own time: wait for it).
            self.ring.submit()?;
            if self.sqpoll {
                self.ring.submitter().squeue_wait()?;
            }
        }
        if room(&mut self.ring) < count {
            // Nothing of this chain was queued: nothing refers to the caller's memory.
            return Err(io::Error::other("io_uring submission queue full"));
        }
        // Generations stay below CANCEL_TAG's bit once shifted, so no tag is ever mistaken.
        self.generation = (self.generation + 1) & ((CANCEL_TAG - 1) >> GENERATION_SHIFT);
        let generation = self.generation << GENERATION_SHIFT;
        {
            let mut submission = self.ring.submission();
            for (k, header) in headers.iter().take(count).enumerate() {
                let flags = if k + 1 < count {
                    squeue::Flags::IO_LINK
                } else {
                    squeue::Flags::empty()
                };
                let entry = opcode::SendMsg::new(types::Fd(self.fd), &raw const header.msg_hdr)
                    .flags(libc::MSG_DONTWAIT.cast_unsigned())
                    .build()
                    .flags(flags)
                    .user_data(SEND_TAG | generation | k as u64);
                // SAFETY: the header and what it points at (the caller's datagrams, iovecs,
                // address and control messages) live until this call returns, and it returns
                // only once every request of the chain has completed (below).
                let pushed = unsafe { submission.push(&entry) };
                debug_assert!(pushed.is_ok(), "room was checked above");
            }
        }
        let mut results = [0i32; BATCH_MAX];
        let mut completed = 0;
        let mut failures = 0u32;
        while completed < count {
            // MSG_DONTWAIT: each request completes at once, sent or refused, so this wait is
            // the system call itself; completions of receives may wake it early, hence the
            // loop. The requests point at the caller's memory: never return before they are
            // done, whatever the kernel says (an interrupted or busy enter is retried, a
            // failing one after a pause, rather than leaving requests behind).
            if self.ring.submit_and_wait(count - completed).is_err() {
                failures += 1;
                if failures > 3 {
                    std::thread::sleep(RETRY_PAUSE);
                }
            }
            completed += self.reap(&mut results);
        }
        let sent = results[..count]
            .iter()
            .take_while(|result| **result >= 0)
            .count();
        match results[0] {
            // Full, cut from a chain, or a connected socket's earlier datagram refused (the
            // report is taken; the caller sends again later): nothing lost, nothing wrong.
            error
                if error < 0
                    && !matches!(-error, libc::EAGAIN | libc::ECANCELED | libc::ECONNREFUSED) =>
            {
                Err(io::Error::from_raw_os_error(-error))
            }
            first => Ok((sent, first == -libc::ECONNREFUSED)),
        }
    }
}

impl Drop for UdpRing {
    fn drop(&mut self) {
        for index in 0..RECEIVE_BATCH {
            if self.posted[index] {
                let entry = opcode::AsyncCancel::new(index as u64)
                    .build()
                    .user_data(CANCEL_TAG | index as u64);
                // SAFETY: a cancellation refers to no memory of ours.
                let _ = unsafe { self.ring.submission().push(&entry) };
            }
        }
        let wait = types::Timespec::from(DRAIN_WAIT);
        let mut ignored = [0; BATCH_MAX];
        // No send is in flight (a send returns only once its chain completed): what is left
        // are the posted receives.
        for _ in 0..DRAIN_WAITS {
            if !self.posted.iter().any(|posted| *posted) {
                break;
            }
            let args = types::SubmitArgs::new().timespec(&wait);
            let _ = self.ring.submitter().submit_with_args(1, &args);
            self.reap(&mut ignored);
        }
        if self.posted.iter().any(|posted| *posted) {
            // The kernel may still write into the slots: they stay allocated for good.
            std::mem::forget(std::mem::take(&mut self.slots));
            std::mem::forget(std::mem::take(&mut self.buffers));
        }
    }
}
