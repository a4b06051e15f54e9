//! A client of a cluster: sessions that find the leader, send commands one at a time each and
//! get each applied exactly once, whatever members die on the way. One client carries one
//! session ([`ClusterClient::connect`]) or many over the same streams
//! ([`ClusterClient::connect_sessions`], for throughput: one request in flight per session).
//!
//! A session has a random id and numbers its requests from 1. Each request is
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
//! reused. Time comes from the caller's clock through [`ClusterClient::poll_at`] and
//! [`ClusterClient::poll_any_at`] (a request goes out at the next poll); the conveniences
//! [`ClusterClient::poll`], [`ClusterClient::poll_any`], [`ClusterClient::call`] and connecting
//! read the monotonic clock.

use std::collections::{HashMap, VecDeque};
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
    /// A session count or index out of range.
    #[error("session {0} is out of range (a client carries 1 to {SESSIONS_MAX})")]
    Sessions(usize),
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

/// The most sessions one client carries.
pub const SESSIONS_MAX: usize = 1024;

/// One session's state.
#[derive(Debug)]
struct Session {
    id: u64,
    next_request_id: u64,
    link: Link,
    /// The request waiting for its answer.
    pending: Option<Pending>,
    command: Vec<u8>,
    /// The session's encoded `session_connect`.
    connect: Vec<u8>,
    last_heard: Instant,
    /// Answers in a row from the current member that it knows no leader.
    no_leader_answers: u32,
}

/// Sessions with the cluster over one set of streams; see the [module docs](self).
pub struct ClusterClient {
    config: ClusterClientConfig,
    ingress: Vec<Publication>,
    egress: Subscription,
    assembler: MessageAssembler,
    /// The member every session sends to.
    target: u32,
    sessions: Vec<Session>,
    by_id: HashMap<u64, usize>,
    request: Vec<u8>,
    responses: Vec<Response>,
    replies: VecDeque<(usize, Reply)>,
    /// Requests sent again (timeouts, redirects, busy answers).
    retries: u64,
    /// Times the client moved to another member.
    failovers: u64,
    /// The latest time a caller gave ([`ClusterClient::poll_any_at`]) or the connect's.
    now: Instant,
}

impl std::fmt::Debug for ClusterClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClusterClient")
            .field("sessions", &self.sessions.len())
            .field("target", &self.target)
            .finish_non_exhaustive()
    }
}

impl ClusterClient {
    /// Opens the client's streams through `tern` with one session and starts looking for the
    /// leader (from member 0). Returns at once: the first [`ClusterClient::call`] or polls
    /// finish connecting.
    pub fn connect(tern: &Tern, config: ClusterClientConfig) -> Result<Self, ClusterClientError> {
        Self::connect_sessions(tern, config, 1)
    }

    /// [`ClusterClient::connect`] with `count` sessions (1 to [`SESSIONS_MAX`]) sharing the
    /// client's streams: each has its own numbering and one request in flight, so `count`
    /// requests can be in flight together. Session `i` is addressed by index `i`.
    pub fn connect_sessions(
        tern: &Tern,
        config: ClusterClientConfig,
        count: usize,
    ) -> Result<Self, ClusterClientError> {
        if count == 0 || count > SESSIONS_MAX {
            return Err(ClusterClientError::Sessions(count));
        }
        let mut ingress = Vec::new();
        for member in 0..config.members.count() {
            ingress.push(
                tern.add_publication(&config.members.ingress_channel(member), INGRESS_STREAM_ID)?,
            );
        }
        let egress = tern.add_subscription(&config.response_channel, config.response_stream_id)?;
        let now = Instant::now();
        let mut sessions = Vec::with_capacity(count);
        let mut by_id = HashMap::with_capacity(count);
        for index in 0..count {
            // Drawn afresh for every client: a session id used again would make its requests,
            // numbered from 1 again, look like retries of ones already applied.
            let id = random_session_id();
            // Members take `tern:udp?endpoint=IP:PORT` and choose the rest of the channel.
            let mut connect = vec![0u8; 64 + config.response_channel.len()];
            let length = encode_connect(
                &mut connect,
                id,
                config.response_stream_id,
                &config.response_channel,
            )
            .map_err(|error| std::io::Error::other(error.to_string()))?;
            connect.truncate(length);
            if by_id.insert(id, index).is_some() {
                // Two draws alike: practically never, but a shared id would mix two sessions.
                return Err(ClusterClientError::Io(std::io::Error::other(
                    "two sessions drew the same id; connect again",
                )));
            }
            sessions.push(Session {
                id,
                next_request_id: 1,
                link: Link::Connecting {
                    attempts: 0,
                    sent: now,
                },
                pending: None,
                command: Vec::with_capacity(64),
                connect,
                last_heard: now,
                no_leader_answers: 0,
            });
        }
        let mut client = Self {
            config,
            ingress,
            egress,
            assembler: MessageAssembler::with_limits(AssemblerLimits {
                sessions: 8,
                message_length: 8 * 1024,
            }),
            target: 0,
            sessions,
            by_id,
            request: Vec::with_capacity(4096 + 64),
            responses: Vec::new(),
            replies: VecDeque::new(),
            retries: 0,
            failovers: 0,
            now,
        };
        for index in 0..count {
            client.send_connect(index, now);
        }
        Ok(client)
    }

    /// How many sessions the client carries.
    pub fn sessions(&self) -> usize {
        self.sessions.len()
    }

    /// The first session's id.
    pub fn session_id(&self) -> u64 {
        self.sessions[0].id
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

    /// Whether the first session's request waits for its answer.
    pub fn is_waiting(&self) -> bool {
        self.sessions[0].pending.is_some()
    }

    /// Whether session `index`'s request waits for its answer.
    pub fn is_waiting_on(&self, index: usize) -> bool {
        self.sessions
            .get(index)
            .is_some_and(|session| session.pending.is_some())
    }

    /// Queues `command` as the first session's next request (the next poll sends it); returns
    /// its id. One request at a time per session: poll until its answer comes before sending
    /// the next.
    pub fn send(&mut self, command: &[u8]) -> Result<u64, ClusterClientError> {
        self.send_request(0, command, false)
    }

    /// Sends `command` as session `index`'s next request; returns its id.
    pub fn send_on(&mut self, index: usize, command: &[u8]) -> Result<u64, ClusterClientError> {
        if index >= self.sessions.len() {
            return Err(ClusterClientError::Sessions(index));
        }
        self.send_request(index, command, false)
    }

    /// Asks for a cluster-wide snapshot as the first session's next request (numbered, retried
    /// and applied once like a command); its answer's position is where every member snapshots.
    pub fn send_snapshot_request(&mut self) -> Result<u64, ClusterClientError> {
        self.send_request(0, &[], true)
    }

    fn send_request(
        &mut self,
        index: usize,
        command: &[u8],
        snapshot: bool,
    ) -> Result<u64, ClusterClientError> {
        let session = &mut self.sessions[index];
        if let Some(pending) = session.pending {
            return Err(ClusterClientError::Busy(pending.id));
        }
        if command.len() > 4096 {
            return Err(ClusterClientError::TooLong(command.len()));
        }
        let id = session.next_request_id;
        session.next_request_id += 1;
        session.command.clear();
        session.command.extend_from_slice(command);
        // Sent by the next poll, at the time that poll is given: the client reads no clock
        // here, and a request's timeout runs from when it really went.
        session.pending = Some(Pending {
            id,
            snapshot,
            sent_at: None,
            not_before: self.now,
        });
        Ok(id)
    }

    /// Reads answers, sends again what timed out or was redirected, keeps the sessions alive;
    /// returns an answer once one comes (with several sessions, [`ClusterClient::poll_any`]
    /// says whose).
    pub fn poll(&mut self) -> Option<Reply> {
        self.poll_at(Instant::now())
    }

    /// [`ClusterClient::poll`] at `now`.
    pub fn poll_at(&mut self, now: Instant) -> Option<Reply> {
        self.poll_any_at(now).map(|(_, reply)| reply)
    }

    /// [`ClusterClient::poll`], with the index of the session answered.
    pub fn poll_any(&mut self) -> Option<(usize, Reply)> {
        self.poll_any_at(Instant::now())
    }

    /// [`ClusterClient::poll_any`] at `now`.
    pub fn poll_any_at(&mut self, now: Instant) -> Option<(usize, Reply)> {
        self.now = self.now.max(now);
        if let Some(reply) = self.replies.pop_front() {
            return Some(reply);
        }
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
            256,
        );
        let mut responses = std::mem::take(&mut self.responses);
        for response in responses.drain(..) {
            if let Some(&index) = self.by_id.get(&response.session_id)
                && let Some(reply) = self.on_response(index, now, response)
            {
                self.replies.push_back((index, reply));
            }
        }
        self.responses = responses;
        for index in 0..self.sessions.len() {
            self.flush_session(index, now);
        }
        self.replies.pop_front()
    }

    /// Asks for a cluster-wide snapshot and waits up to `timeout` for the answer: its position
    /// is where every member took the snapshot.
    pub fn snapshot(&mut self, timeout: Duration) -> Result<Reply, ClusterClientError> {
        let request_id = self.send_snapshot_request()?;
        self.wait(request_id, timeout)
    }

    /// Sends `command` on the first session and waits up to `timeout` for its answer, polling
    /// with short sleeps.
    pub fn call(&mut self, command: &[u8], timeout: Duration) -> Result<Reply, ClusterClientError> {
        let request_id = self.send(command)?;
        self.wait(request_id, timeout)
    }

    fn wait(&mut self, request_id: u64, timeout: Duration) -> Result<Reply, ClusterClientError> {
        let deadline = Instant::now() + timeout;
        let mut idle = 0u32;
        // Answers to other sessions that arrive meanwhile are kept for their polls.
        let mut others = Vec::new();
        loop {
            match self.poll_any() {
                Some((0, reply)) => {
                    debug_assert_eq!(reply.request_id, request_id);
                    self.replies.extend(others);
                    return Ok(reply);
                }
                Some(other) => {
                    others.push(other);
                    continue;
                }
                None => {}
            }
            if Instant::now() >= deadline {
                self.replies.extend(others);
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

    fn on_response(&mut self, index: usize, now: Instant, response: Response) -> Option<Reply> {
        let session = &mut self.sessions[index];
        session.last_heard = now;
        if response.request_id == 0 {
            // A connect's answer: this member leads, or names who does.
            if matches!(session.link, Link::Connecting { .. }) {
                match response.code {
                    ResponseCode::Applied => {
                        session.link = Link::Connected;
                        session.no_leader_answers = 0;
                    }
                    _ => self.redirect(index, now, response.leader_hint),
                }
            }
            return None;
        }
        let pending = session.pending?;
        if response.request_id != pending.id {
            return None;
        }
        match response.code {
            ResponseCode::Applied => {
                session.pending = None;
                Some(Reply {
                    request_id: response.request_id,
                    position: response.position,
                    payload: response.payload,
                })
            }
            ResponseCode::Redirect => {
                self.retries += 1;
                self.redirect(index, now, response.leader_hint);
                None
            }
            ResponseCode::Busy => {
                self.retries += 1;
                session.pending = Some(Pending {
                    sent_at: None,
                    not_before: now + BUSY_PAUSE,
                    ..pending
                });
                None
            }
            _ => None,
        }
    }

    /// Moves every session to the leader `hint` names. A member that knows no leader (an
    /// election is under way) is asked again a little later, up to [`NO_LEADER_ANSWERS`]
    /// times, before the client tries the next member: it will know the new leader before a
    /// member picked at random.
    fn redirect(&mut self, index: usize, now: Instant, hint: u32) {
        let count = self.config.members.count();
        if hint != NO_LEADER && hint < count && hint != self.target {
            self.move_to(now, hint);
            return;
        }
        let session = &mut self.sessions[index];
        session.no_leader_answers += 1;
        if session.no_leader_answers >= NO_LEADER_ANSWERS {
            self.move_to(now, (self.target + 1) % count);
            return;
        }
        // Connect again after the retry interval: an answered connect is not a lost one.
        session.link = Link::Connecting {
            attempts: 0,
            sent: now,
        };
        if let Some(pending) = session.pending.as_mut() {
            pending.sent_at = None;
        }
    }

    /// Moves every session to `member`: each connects there before it sends again.
    fn move_to(&mut self, now: Instant, member: u32) {
        if member != self.target {
            self.failovers += 1;
        }
        self.target = member;
        for index in 0..self.sessions.len() {
            let session = &mut self.sessions[index];
            session.no_leader_answers = 0;
            session.link = Link::Connecting {
                attempts: 0,
                sent: now,
            };
            if let Some(pending) = session.pending.as_mut() {
                pending.sent_at = None;
            }
            self.send_connect(index, now);
        }
    }

    fn send_connect(&mut self, index: usize, now: Instant) {
        let session = &mut self.sessions[index];
        if let Link::Connecting { attempts, sent } = &mut session.link {
            *attempts += 1;
            *sent = now;
        }
        let publication = &self.ingress[usize::try_from(self.target).expect("small")];
        let _ = crate::node::offer(publication, &session.connect);
    }

    /// Sends what is due on session `index`: a connect again, the pending request (first
    /// time, or again after a timeout), a keepalive.
    fn flush_session(&mut self, index: usize, now: Instant) {
        let session = &self.sessions[index];
        match session.link {
            Link::Connecting { attempts, sent } => {
                if now.duration_since(sent) >= CONNECT_RETRY {
                    if attempts >= CONNECT_ATTEMPTS {
                        let next = (self.target + 1) % self.config.members.count();
                        self.move_to(now, next);
                    } else {
                        self.send_connect(index, now);
                    }
                }
            }
            Link::Connected => {
                if let Some(pending) = session.pending {
                    match pending.sent_at {
                        None if now >= pending.not_before && self.offer_request(index, pending) => {
                            self.sessions[index].pending = Some(Pending {
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
                } else if now.duration_since(session.last_heard) >= KEEPALIVE_INTERVAL {
                    self.sessions[index].last_heard = now;
                    let publication = &self.ingress[usize::try_from(self.target).expect("small")];
                    let _ = crate::node::offer(publication, &self.sessions[index].connect);
                }
            }
        }
    }

    fn offer_request(&mut self, index: usize, pending: Pending) -> bool {
        let session = &self.sessions[index];
        if pending.snapshot {
            self.request.resize(64, 0);
            let Ok(mut encoder) = admin_request::Encoder::wrap(&mut self.request) else {
                return false;
            };
            encoder
                .session_id(session.id)
                .request_id(pending.id)
                .action(ADMIN_SNAPSHOT);
            let length = encoder.finish();
            self.request.truncate(length);
        } else {
            self.request.resize(64 + session.command.len(), 0);
            let Ok(mut encoder) = session_request::Encoder::wrap(&mut self.request) else {
                return false;
            };
            encoder.session_id(session.id).request_id(pending.id);
            let Ok(encoder) = encoder.payload(&session.command) else {
                return false;
            };
            let length = encoder.finish();
            self.request.truncate(length);
        }
        let publication = &self.ingress[usize::try_from(self.target).expect("small")];
        matches!(
            crate::node::offer(publication, &self.request),
            OfferResult::Ok(_)
        )
    }
}

/// A session id from the process's random hash keys (fresh in every process) and a counter:
/// distinct across clients and restarts, with no clock read.
fn random_session_id() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    use std::sync::atomic::{AtomicU64, Ordering};
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
    hasher.write_u64(COUNTER.fetch_add(1, Ordering::Relaxed));
    hasher.write_u32(std::process::id());
    hasher.finish().max(1)
}
