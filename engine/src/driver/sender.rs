//! The sender agent: sends network publications' frames, answers their receivers' status
//! messages, NAKs and RTT requests, and sends SETUP and heartbeats when due. Each publication's
//! protocol is its sans-IO core ([`NetworkPublication`]); this agent owns the sockets and the
//! counters and drives the cores once per duty cycle.
//!
//! It runs on the thread `driver-sender` (dedicated), `driver-network` (shared-network) or
//! `driver-shared` (shared), or on the embedding application's thread (invoker). It owns every
//! publication it is given through its queue (the conductor made the socket and the counters);
//! it shares with the conductor only each publication's
//! [`SenderStatus`](super::network_publication::SenderStatus), the counters and the
//! error log. Sending allocates nothing: the batch and the receive buffers are made with the
//! agent and with each socket.

use std::net::SocketAddr;

use tern_codec::frame::Frame;

use super::agent_proxy::{AgentWork, command_agent};
use super::errors::ErrorRecorder;
use super::loss_generator::{Fate, LossGenerator};
use super::network_publication::{NetworkPublication, SenderTally};
use super::reclaim::CounterLease;
use super::send_batch::{DatagramSink, SendBatch};
use super::system_counters::SystemCounter;
use crate::agent::Now;
use crate::udp_transport::{BATCH_MAX, UdpTransport};

/// The sender's role name (its thread's name in dedicated mode).
pub const ROLE: &str = "driver-sender";

command_agent! {
    /// The sender agent.
    pub struct Sender, role ROLE, work SenderWork
}

/// A publication's counters the sender keeps.
#[derive(Debug)]
pub(crate) struct SenderCounters {
    /// `snd-pos`: how far it has sent.
    pub(crate) position: CounterLease,
    /// `snd-lmt`: how far flow control lets it send.
    pub(crate) limit: CounterLease,
}

/// A network publication, its socket and counters.
#[derive(Debug)]
pub(crate) struct SenderEntry {
    pub(crate) publication: NetworkPublication,
    pub(crate) transport: UdpTransport,
    pub(crate) counters: SenderCounters,
    reported: SenderTally,
}

impl SenderEntry {
    pub(crate) fn new(
        publication: NetworkPublication,
        transport: UdpTransport,
        counters: SenderCounters,
    ) -> Self {
        Self {
            publication,
            transport,
            counters,
            reported: SenderTally::default(),
        }
    }
}

/// What the sender runs.
#[derive(Debug, Default)]
pub struct SenderWork {
    publications: Vec<SenderEntry>,
    batch: SendBatch,
    loss: Option<LossGenerator>,
}

impl SenderWork {
    /// A sender with no publications, dropping datagrams by `loss` if given.
    pub(crate) fn new(loss: Option<LossGenerator>) -> Self {
        Self {
            publications: Vec::new(),
            batch: SendBatch::new(),
            loss,
        }
    }

    /// Starts sending a publication.
    pub(crate) fn add(&mut self, entry: SenderEntry) {
        self.publications.push(entry);
    }

    /// Stops sending publication `registration_id`; its socket closes and its counters are
    /// released.
    pub(crate) fn remove(&mut self, registration_id: i64) {
        self.publications
            .retain(|entry| entry.publication.registration_id() != registration_id);
    }

    /// Adds (or removes) a destination of multi-destination publication `registration_id`
    /// (manual mode); false when it has no room for it or is no such publication.
    pub(crate) fn destination(
        &mut self,
        registration_id: i64,
        address: SocketAddr,
        add: bool,
        now_ns: i64,
    ) -> bool {
        let Some(entry) = self
            .publications
            .iter_mut()
            .find(|entry| entry.publication.registration_id() == registration_id)
        else {
            return false;
        };
        if add {
            entry.publication.add_destination(address, now_ns)
        } else {
            entry.publication.remove_destination(address);
            true
        }
    }

    /// Publications being sent.
    pub fn publications(&self) -> usize {
        self.publications.len()
    }
}

/// The socket of one publication, as the cores see it: sends, loss applied, errors counted.
struct TransportSink<'a> {
    transport: &'a mut UdpTransport,
    loss: Option<&'a mut LossGenerator>,
    errors: &'a ErrorRecorder,
    now_ms: i64,
}

impl DatagramSink for TransportSink<'_> {
    fn send(&mut self, datagrams: &[&[u8]], destination: SocketAddr) -> usize {
        let Some(loss) = self.loss.as_deref_mut() else {
            return send_or_record(
                self.transport,
                datagrams,
                destination,
                self.errors,
                self.now_ms,
            );
        };
        // Dropped datagrams count as sent: the network lost them.
        let mut kept: [&[u8]; BATCH_MAX] = [&[]; BATCH_MAX];
        let mut count = 0;
        // A datagram to deliver after the next one.
        let mut held: Option<&[u8]> = None;
        for datagram in datagrams.iter().take(BATCH_MAX) {
            let fate = loss.fate_of(datagram);
            if fate == Fate::Reorder && held.is_none() {
                held = Some(datagram);
                continue;
            }
            match fate {
                Fate::Drop => self
                    .errors
                    .system()
                    .increment(SystemCounter::LossGeneratorDrops),
                Fate::Pass | Fate::Reorder | Fate::Duplicate => {
                    let copies = if fate == Fate::Duplicate { 2 } else { 1 };
                    // The held datagram goes right after this one.
                    let held_now = held.take();
                    for next in std::iter::repeat_n(*datagram, copies).chain(held_now) {
                        if count < BATCH_MAX {
                            kept[count] = next;
                            count += 1;
                        }
                    }
                }
            }
        }
        if let Some(datagram) = held.filter(|_| count < BATCH_MAX) {
            kept[count] = datagram;
            count += 1;
        }
        let sent = send_or_record(
            self.transport,
            &kept[..count],
            destination,
            self.errors,
            self.now_ms,
        );
        if sent < count {
            // A short send under loss: report none sent, so the caller sends them all again.
            return 0;
        }
        datagrams.len().min(BATCH_MAX)
    }
}

fn send_or_record(
    transport: &mut UdpTransport,
    datagrams: &[&[u8]],
    destination: SocketAddr,
    errors: &ErrorRecorder,
    now_ms: i64,
) -> usize {
    match transport.send(datagrams, destination) {
        Ok(sent) => sent,
        Err(error) => {
            errors.system().increment(SystemCounter::SendErrors);
            errors.record(now_ms, &format!("send to {destination}: {error}"));
            0
        }
    }
}

impl AgentWork for SenderWork {
    fn do_work(&mut self, now: Now, errors: &ErrorRecorder) -> usize {
        let mut work = 0;
        let now_ns = now.nanos;
        for entry in &mut self.publications {
            let SenderEntry {
                publication,
                transport,
                ..
            } = entry;
            let received = transport.receive(|datagram, source| {
                on_control_datagram(publication, datagram, source, now_ns);
            });
            match received {
                Ok(received) => {
                    work += received.datagrams;
                    if received.datagrams > 0 {
                        errors
                            .system()
                            .add(SystemCounter::DatagramsReceived, received.datagrams);
                    }
                    if received.dropped > 0 {
                        errors
                            .system()
                            .add(SystemCounter::InvalidFrames, received.dropped);
                    }
                }
                Err(error) => {
                    errors.record(now.epoch_ms, &format!("receive on a send socket: {error}"));
                }
            }
            let mut sink = TransportSink {
                transport: &mut entry.transport,
                loss: self.loss.as_mut(),
                errors,
                now_ms: now.epoch_ms,
            };
            work += entry
                .publication
                .send_control(now_ns, &mut self.batch, &mut sink);
            work += usize::from(
                entry
                    .publication
                    .send_data(now_ns, &mut self.batch, &mut sink)
                    > 0,
            );
            report(entry, errors);
        }
        work
    }
}

/// Hands the control frames of one datagram to `publication`; anything else is invalid here.
fn on_control_datagram(
    publication: &mut NetworkPublication,
    datagram: &[u8],
    source: SocketAddr,
    now_ns: i64,
) {
    let mut offset = 0;
    while let Some(rest) = datagram.get(offset..).filter(|rest| !rest.is_empty()) {
        let Ok(frame) = Frame::decode(rest) else {
            publication.count_invalid();
            return;
        };
        match frame {
            Frame::StatusMessage(message) => {
                publication.on_status_message(&message, source, now_ns);
            }
            Frame::Nak(nak) => {
                // Ignored NAKs are counted by the publication.
                let _ = publication.on_nak(&nak, now_ns);
            }
            Frame::Rttm(rttm) => publication.on_rttm(&rttm),
            _ => publication.count_invalid(),
        }
        offset += frame.datagram_length();
    }
}

/// Moves what the publication counted since the last report into the driver's counters.
fn report(entry: &mut SenderEntry, errors: &ErrorRecorder) {
    let tally = entry.publication.tally();
    if tally != entry.reported {
        let last = entry.reported;
        let system = errors.system();
        let add = |counter, now: u64, before: u64| {
            if now > before {
                system.add(counter, usize::try_from(now - before).unwrap_or(usize::MAX));
            }
        };
        add(SystemCounter::BytesSent, tally.bytes_sent, last.bytes_sent);
        add(
            SystemCounter::DatagramsSent,
            tally.datagrams_sent,
            last.datagrams_sent,
        );
        add(
            SystemCounter::ShortSends,
            tally.short_sends,
            last.short_sends,
        );
        add(
            SystemCounter::HeartbeatsSent,
            tally.heartbeats,
            last.heartbeats,
        );
        add(SystemCounter::SetupsSent, tally.setups, last.setups);
        add(
            SystemCounter::StatusMessagesReceived,
            tally.status_messages,
            last.status_messages,
        );
        add(
            SystemCounter::NaksReceived,
            tally.naks_received,
            last.naks_received,
        );
        add(
            SystemCounter::NaksIgnored,
            tally.naks_ignored,
            last.naks_ignored,
        );
        add(
            SystemCounter::Retransmits,
            tally.retransmits,
            last.retransmits,
        );
        add(
            SystemCounter::RetransmittedBytes,
            tally.retransmitted_bytes,
            last.retransmitted_bytes,
        );
        add(
            SystemCounter::InvalidFrames,
            tally.invalid_frames,
            last.invalid_frames,
        );
        entry.reported = tally;
    }
    let status = entry.publication.status();
    entry.counters.position.view().set(status.position());
    entry.counters.limit.view().set(status.limit());
}
