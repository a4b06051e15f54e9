//! A client of a cluster: one session that finds the leader, sends commands one at a time and
//! gets each applied exactly once, whatever members die on the way.
//!
//! A session has an id (random unless given) and numbers its requests from 1. Each request is
//! sent to the member the client believes leads; it is sent again, with the same number, when
//! no answer comes within [`ClusterClientConfig::request_timeout`], when the member redirects
//! (to the leader it names, or the next member when it knows none) or says it is busy. The
//! cluster applies a request once, however many times it reaches the log, and answers every
//! copy with the first application's result ([`crate::container`]), so a command is never lost
//! and never applied twice. Before its first request to a member, and every
//! [`KEEPALIVE_INTERVAL`] while idle, the client sends the member `session_connect`, naming the
//! channel it reads responses on; it sends requests only once the member answered that.
//!
//! ```no_run
//! use std::time::Duration;
//! use tern_cluster::client::{ClusterClient, ClusterClientConfig};
//! use tern_cluster::kv::{Command, decode_response};
//! use tern_cluster::node::Members;
//! use tern_engine::client::{ClientConfig, Tern};
//!
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let tern = Tern::connect(ClientConfig::default())?; // a media driver runs beside the client
//! let members = Members::parse("0=127.0.0.1:9000,1=127.0.0.1:9010,2=127.0.0.1:9020")?;
//! let mut client = ClusterClient::connect(&tern, ClusterClientConfig::new(members)?)?;
//! // Blocking: send, wait for the answer (retried, redirected, failed over as needed).
//! let reply = client.call(&Command::Add { key: 7, delta: 1 }.encode(0), Duration::from_secs(10))?;
//! let (_, value) = decode_response(&reply.payload).expect("a KV response");
//! println!("key 7 is now {value}, applied at log position {}", reply.position);
//! // Non-blocking: send, then poll (each poll does the retries) until the answer comes.
//! client.send(&Command::Get { key: 7 }.encode(0))?;
//! let reply = loop {
//!     if let Some(reply) = client.poll() { break reply; }
//! };
//! # Ok(()) }
//! ```
//!
//! Memory and threads: a client is owned by one thread. Its buffers are allocated at start and
//! reused. Time comes from the caller's clock through [`ClusterClient::poll_at`]; the plain
//! [`ClusterClient::poll`] reads the monotonic clock.

use std::net::{SocketAddr, UdpSocket};
use std::time::{Duration, Instant};

use tern_engine::client::{
    AssemblerLimits, ClientError, MessageAssembler, OfferResult, Publication, Subscription, Tern,
};

use crate::node::{EGRESS_STREAM_ID, INGRESS_STREAM_ID, Members};
use crate::session_protocol::{
    ADMIN_SNAPSHOT, NO_LEADER, Response, ResponseCode, SESSION_TIMEOUT_NS, admin_request,
    encode_connect, session_request,
};

/// How often an idle client tells its member it is still there.
pub const KEEPALIVE_INTERVAL: Duration = Duration::from_nanos(SESSION_TIMEOUT_NS / 4);
/// How long a client waits for a connect's answer before sending it again.
const CONNECT_RETRY: Duration = Duration::from_millis(20);
/// Connects to one member without an answer before the client tries the next member.
const CONNECT_ATTEMPTS: u32 = 5;
/// Answers from one member that it knows no leader before the client tries the next member.
const NO_LEADER_ANSWERS: u32 = 25;

/// How a client runs.
#[derive(Debug, Clone)]
pub struct ClusterClientConfig {
    /// The cluster's members.
    pub members: Members,
    /// Where the client reads responses: `tern:udp?endpoint=IP:PORT`, an address every member
    /// can reach (members refuse any other form: they write the channel's settings).
    pub response_channel: String,
    /// The stream responses come on.
    pub response_stream_id: i32,
    /// A request without an answer for this long is sent again (to the next member).
    pub request_timeout: Duration,
}

impl ClusterClientConfig {
    /// The defaults: responses on a free UDP port of the address this machine reaches member 0
    /// from, a 300 ms request timeout.
    pub fn new(members: Members) -> std::io::Result<Self> {
        let endpoint = free_endpoint_towards(members.address(0))?;
        Ok(Self {
            members,
            response_channel: format!("tern:udp?endpoint={endpoint}"),
            response_stream_id: EGRESS_STREAM_ID,
            request_timeout: Duration::from_millis(300),
        })
    }
}

/// A free UDP endpoint on the local address that routes to `peer`. (The port is found by
/// binding and releasing it; another process could take it in between, which the subscription
/// then reports.)
fn free_endpoint_towards(peer: SocketAddr) -> std::io::Result<SocketAddr> {
    let probe = UdpSocket::bind("0.0.0.0:0")?;
    probe.connect(peer)?;
    let ip = probe.local_addr()?.ip();
    let socket = UdpSocket::bind(SocketAddr::new(ip, 0))?;
    socket.local_addr()
}

/// Why a client call failed.
#[derive(Debug, thiserror::Error)]
pub enum ClusterClientError {
    /// The media driver refused a publication or subscription.
    #[error("transport: {0}")]
    Transport(#[from] ClientError),
    /// A request is still waiting for its answer (one at a time per session).
    #[error("request {0} is still waiting for its answer")]
    Busy(u64),
    /// The command is longer than a request carries.
    #[error("a command of {0} bytes is longer than a request carries")]
    TooLong(usize),
    /// No answer within the time the caller gave (the request is still retried by later polls).
    #[error("no answer within {0:?}")]
    Timeout(Duration),
    /// The local address could not be found.
    #[error("{0}")]
    Io(#[from] std::io::Error),
}

/// An applied request's answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reply {
    /// The request.
    pub request_id: u64,
    /// The log position where it was applied.
    pub position: u64,
    /// The service's response.
    pub payload: Vec<u8>,
}

/// The request waiting for its answer.
#[derive(Debug, Clone, Copy)]
struct Pending {
    id: u64,
    /// A service command (in `command`) or a snapshot request.
    snapshot: bool,
    /// When it was last sent on the current link; `None` until it is.
    sent_at: Option<Instant>,
    /// Not sent before this (a busy leader asks for a pause).
    not_before: Instant,
}

/// How long a client waits before sending again to a leader that said it was busy.
const BUSY_PAUSE: Duration = Duration::from_millis(1);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Link {
    /// A connect is out to the target; `attempts` sent so far.
    Connecting { attempts: u32, sent: Instant },
    /// The target answered the connect and leads (as far as it knew).
    Connected,
}

/// A session with the cluster; see the [module docs](self).
pub struct ClusterClient {
    config: ClusterClientConfig,
    ingress: Vec<Publication>,
    egress: Subscription,
    assembler: MessageAssembler,
    session_id: u64,
    next_request_id: u64,
    target: u32,
    link: Link,
    /// The request waiting for its answer.
    pending: Option<Pending>,
    command: Vec<u8>,
    request: Vec<u8>,
    connect: Vec<u8>,
    last_heard: Instant,
    responses: Vec<Response>,
    /// Requests sent again (timeouts, redirects, busy answers).
    retries: u64,
    /// Answers in a row from the current member that it knows no leader.
    no_leader_answers: u32,
    /// Times the client moved to another member.
    failovers: u64,
}

impl std::fmt::Debug for ClusterClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClusterClient")
            .field("session_id", &self.session_id)
            .field("target", &self.target)
            .field("link", &self.link)
            .finish_non_exhaustive()
    }
}

impl ClusterClient {
    /// Opens the client's streams through `tern` and starts looking for the leader (from member
    /// 0). Returns at once: the first [`ClusterClient::call`] or polls finish connecting.
    pub fn connect(tern: &Tern, config: ClusterClientConfig) -> Result<Self, ClusterClientError> {
        let mut ingress = Vec::new();
        for member in 0..config.members.count() {
            ingress.push(
                tern.add_publication(&config.members.ingress_channel(member), INGRESS_STREAM_ID)?,
            );
        }
        let egress = tern.add_subscription(&config.response_channel, config.response_stream_id)?;
        // Drawn afresh for every client: a session id used again would make its requests,
        // numbered from 1 again, look like retries of ones already applied.
        let session_id = random_session_id();
        // Members take `tern:udp?endpoint=IP:PORT` and choose the rest of the channel.
        let mut connect = vec![0u8; 64 + config.response_channel.len()];
        let length = encode_connect(
            &mut connect,
            session_id,
            config.response_stream_id,
            &config.response_channel,
        )
        .map_err(|error| std::io::Error::other(error.to_string()))?;
        connect.truncate(length);
        let now = Instant::now();
        let mut client = Self {
            config,
            ingress,
            egress,
            assembler: MessageAssembler::with_limits(AssemblerLimits {
                sessions: 8,
                message_length: 8 * 1024,
            }),
            session_id,
            next_request_id: 1,
            target: 0,
            link: Link::Connecting {
                attempts: 0,
                sent: now,
            },
            pending: None,
            command: Vec::with_capacity(4096),
            request: Vec::with_capacity(4096 + 64),
            connect,
            last_heard: now,
            responses: Vec::new(),
            retries: 0,
            no_leader_answers: 0,
            failovers: 0,
        };
        client.send_connect(now);
        Ok(client)
    }

    /// The session's id.
    pub fn session_id(&self) -> u64 {
        self.session_id
    }

    /// The member requests go to now.
    pub fn target(&self) -> u32 {
        self.target
    }

    /// Requests sent more than once so far.
    pub fn retries(&self) -> u64 {
        self.retries
    }

    /// Times the client moved to another member so far.
    pub fn failovers(&self) -> u64 {
        self.failovers
    }

    /// Whether a request waits for its answer.
    pub fn is_waiting(&self) -> bool {
        self.pending.is_some()
    }

    /// Sends `command` as the session's next request; returns its id. One request at a time:
    /// poll until its answer comes before sending the next.
    pub fn send(&mut self, command: &[u8]) -> Result<u64, ClusterClientError> {
        self.send_request(command, false)
    }

    /// Asks for a cluster-wide snapshot as the session's next request (numbered, retried and
    /// applied once like a command); its answer's position is where every member snapshots.
    pub fn send_snapshot_request(&mut self) -> Result<u64, ClusterClientError> {
        self.send_request(&[], true)
    }

    fn send_request(&mut self, command: &[u8], snapshot: bool) -> Result<u64, ClusterClientError> {
        if let Some(pending) = self.pending {
            return Err(ClusterClientError::Busy(pending.id));
        }
        if command.len() > 4096 {
            return Err(ClusterClientError::TooLong(command.len()));
        }
        let id = self.next_request_id;
        self.next_request_id += 1;
        self.command.clear();
        self.command.extend_from_slice(command);
        let now = Instant::now();
        self.pending = Some(Pending {
            id,
            snapshot,
            sent_at: None,
            not_before: now,
        });
        self.flush(now);
        Ok(id)
    }

    /// Reads answers, sends again what timed out or was redirected, keeps the session alive;
    /// returns the waiting request's answer once it comes.
    pub fn poll(&mut self) -> Option<Reply> {
        self.poll_at(Instant::now())
    }

    /// [`ClusterClient::poll`] at `now`.
    pub fn poll_at(&mut self, now: Instant) -> Option<Reply> {
        let assembler = &mut self.assembler;
        let responses = &mut self.responses;
        self.egress.poll(
            |fragment, header| {
                assembler.on_fragment(fragment, header, &mut |message, _| {
                    if let Ok(response) = Response::decode(message) {
                        responses.push(response);
                    }
                });
            },
            64,
        );
        let mut reply = None;
        for response in std::mem::take(&mut self.responses) {
            if let Some(answer) = self.on_response(now, response) {
                reply = Some(answer);
            }
        }
        self.flush(now);
        reply
    }

    /// Asks for a cluster-wide snapshot and waits up to `timeout` for the answer: its position
    /// is where every member took the snapshot.
    pub fn snapshot(&mut self, timeout: Duration) -> Result<Reply, ClusterClientError> {
        let request_id = self.send_snapshot_request()?;
        self.wait(request_id, timeout)
    }

    /// Sends `command` and waits up to `timeout` for its answer, polling with short sleeps.
    pub fn call(&mut self, command: &[u8], timeout: Duration) -> Result<Reply, ClusterClientError> {
        let request_id = self.send(command)?;
        self.wait(request_id, timeout)
    }

    fn wait(&mut self, request_id: u64, timeout: Duration) -> Result<Reply, ClusterClientError> {
        let deadline = Instant::now() + timeout;
        let mut idle = 0u32;
        loop {
            if let Some(reply) = self.poll() {
                debug_assert_eq!(reply.request_id, request_id);
                return Ok(reply);
            }
            if Instant::now() >= deadline {
                return Err(ClusterClientError::Timeout(timeout));
            }
            idle = idle.saturating_add(1);
            if idle > 100 {
                std::thread::sleep(Duration::from_micros(50));
            } else {
                std::thread::yield_now();
            }
        }
    }

    fn on_response(&mut self, now: Instant, response: Response) -> Option<Reply> {
        if response.session_id != self.session_id {
            return None;
        }
        self.last_heard = now;
        if response.request_id == 0 {
            // A connect's answer: this member leads, or names who does.
            if matches!(self.link, Link::Connecting { .. }) {
                match response.code {
                    ResponseCode::Applied => {
                        self.link = Link::Connected;
                        self.no_leader_answers = 0;
                    }
                    _ => self.redirect(now, response.leader_hint),
                }
            }
            return None;
        }
        let pending = self.pending?;
        if response.request_id != pending.id {
            return None;
        }
        match response.code {
            ResponseCode::Applied => {
                self.pending = None;
                Some(Reply {
                    request_id: response.request_id,
                    position: response.position,
                    payload: response.payload,
                })
            }
            ResponseCode::Redirect => {
                self.retries += 1;
                self.redirect(now, response.leader_hint);
                None
            }
            ResponseCode::Busy => {
                self.retries += 1;
                self.pending = Some(Pending {
                    sent_at: None,
                    not_before: now + BUSY_PAUSE,
                    ..pending
                });
                None
            }
            _ => None,
        }
    }

    /// Moves to the leader `hint` names. A member that knows no leader (an election is under
    /// way) is asked again a little later, up to [`NO_LEADER_ANSWERS`] times, before the client
    /// tries the next member: it will know the new leader before a member picked at random.
    fn redirect(&mut self, now: Instant, hint: u32) {
        let count = self.config.members.count();
        if hint != NO_LEADER && hint < count && hint != self.target {
            self.move_to(now, hint);
            return;
        }
        self.no_leader_answers += 1;
        if self.no_leader_answers >= NO_LEADER_ANSWERS {
            self.move_to(now, (self.target + 1) % count);
            return;
        }
        // Connect again after the retry interval: an answered connect is not a lost one.
        self.link = Link::Connecting {
            attempts: 0,
            sent: now,
        };
        if let Some(pending) = self.pending.as_mut() {
            pending.sent_at = None;
        }
    }

    fn move_to(&mut self, now: Instant, member: u32) {
        if member != self.target {
            self.failovers += 1;
        }
        self.no_leader_answers = 0;
        self.target = member;
        self.link = Link::Connecting {
            attempts: 0,
            sent: now,
        };
        if let Some(pending) = self.pending.as_mut() {
            pending.sent_at = None;
        }
        self.send_connect(now);
    }

    fn send_connect(&mut self, now: Instant) {
        if let Link::Connecting { attempts, sent } = &mut self.link {
            *attempts += 1;
            *sent = now;
        }
        let _ = self.offer(true);
    }

    /// Sends what is due: a connect again, the pending request (first time, or again after a
    /// timeout), a keepalive.
    fn flush(&mut self, now: Instant) {
        match self.link {
            Link::Connecting { attempts, sent } => {
                if now.duration_since(sent) >= CONNECT_RETRY {
                    if attempts >= CONNECT_ATTEMPTS {
                        let next = (self.target + 1) % self.config.members.count();
                        self.move_to(now, next);
                    } else {
                        self.send_connect(now);
                    }
                }
            }
            Link::Connected => {
                if let Some(pending) = self.pending {
                    match pending.sent_at {
                        None if now >= pending.not_before
                            && self.offer_request(pending.id, pending.snapshot) =>
                        {
                            self.pending = Some(Pending {
                                sent_at: Some(now),
                                ..pending
                            });
                        }
                        None => {}
                        Some(sent_at)
                            if now.duration_since(sent_at) >= self.config.request_timeout =>
                        {
                            // No answer: the member may be dead or cut off; try the next one.
                            self.retries += 1;
                            let next = (self.target + 1) % self.config.members.count();
                            self.move_to(now, next);
                        }
                        Some(_) => {}
                    }
                } else if now.duration_since(self.last_heard) >= KEEPALIVE_INTERVAL {
                    self.last_heard = now;
                    let _ = self.offer(true);
                }
            }
        }
    }

    fn offer_request(&mut self, id: u64, snapshot: bool) -> bool {
        if snapshot {
            self.request.resize(64, 0);
            let Ok(mut encoder) = admin_request::Encoder::wrap(&mut self.request) else {
                return false;
            };
            encoder
                .session_id(self.session_id)
                .request_id(id)
                .action(ADMIN_SNAPSHOT);
            let length = encoder.finish();
            self.request.truncate(length);
            return self.offer(false);
        }
        self.request.resize(64 + self.command.len(), 0);
        let Ok(mut encoder) = session_request::Encoder::wrap(&mut self.request) else {
            return false;
        };
        encoder.session_id(self.session_id).request_id(id);
        let Ok(encoder) = encoder.payload(&self.command) else {
            return false;
        };
        let length = encoder.finish();
        self.request.truncate(length);
        self.offer(false)
    }

    fn offer(&mut self, connect: bool) -> bool {
        let publication = &self.ingress[usize::try_from(self.target).expect("small")];
        let bytes = if connect {
            &self.connect
        } else {
            &self.request
        };
        matches!(crate::node::offer(publication, bytes), OfferResult::Ok(_))
    }
}

/// A session id drawn from the clock, the process id and a counter: distinct across clients
/// and restarts.
fn random_session_id() -> u64 {
    use std::sync::atomic::{AtomicU64, Ordering};
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |elapsed| elapsed.as_nanos());
    let count = COUNTER.fetch_add(1, Ordering::Relaxed);
    let mixed = crate::rng::mix64(
        u64::try_from(nanos & u128::from(u64::MAX)).expect("masked")
            ^ u64::from(std::process::id()).rotate_left(40)
            ^ count.rotate_left(20),
    );
    mixed.max(1)
}
