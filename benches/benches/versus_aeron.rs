//! tern and Aeron C 1.54 side by side, interleaved in one process run, on the same workloads:
//! ping-pong of 32-byte messages (RTT percentiles) and throughput at 32 B and 1 KiB over
//! exclusive and concurrent publications (messages per second), over IPC and over UDP on
//! loopback. Each measurement is bracketed by the cache-line round-trip probe, because on shared
//! VMs two vCPUs can be near in one run and far in the next; the two systems alternate which goes
//! first in each round.
//!
//! ```sh
//! cargo bench -p tern-benches --features aeron --bench versus_aeron -- --rounds 3 --pin 0,1
//! ```
//!
//! Options (after `--`): `--rounds N` (3), `--pin A,B` (CPUs for the two client threads; the
//! drivers' threads float), `--ping-count N` (1 000 000, after a tenth as warm-up),
//! `--seconds S` (3, per throughput measurement, after one second of warm-up), `--only ping`
//! or `--only throughput`, `--media ipc` or `--media udp` (both by default), `--udp-io mmsg`
//! (tern's default) or `--udp-io io_uring` (tern's sockets on io_uring).
//!
//! IPC: both drivers run one shared thread with their default backoff idle strategy, keep terms
//! of 16 MiB, and populate log pages before use (tern maps them populated; Aeron is told to
//! pre-touch and not to use sparse files). Clients spin.
//!
//! UDP (`udp?endpoint=127.0.0.1:<a free port>`, 16 MiB terms, MTU 1408, default socket buffers):
//! ping-pong with each system's shared driver, throughput with its dedicated driver (conductor,
//! sender and receiver threads). Every thread yields when idle, drivers and clients alike,
//! because two cores cannot host three to five spinning threads.

use std::ffi::CString;
use std::hint::spin_loop;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use tern_engine::placement::{Probe, cache_line_round_trip, pin_by_index};

const PING_STREAM: i32 = 1001;
const PONG_STREAM: i32 = 1002;
const THROUGHPUT_STREAM: i32 = 1003;
const TERM_LENGTH: u32 = 16 * 1024 * 1024;
const FRAGMENT_LIMIT: usize = 10;
/// How tern's driver reaches the kernel for UDP (`--udp-io`), set once from the options.
static UDP_IO: std::sync::OnceLock<tern_engine::udp_transport::UdpIo> = std::sync::OnceLock::new();
const THROUGHPUT_FRAGMENT_LIMIT: usize = 1024;

/// What an offer came to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Offered {
    Ok,
    /// Back-pressured, not yet connected or an admin action: try again.
    Retry,
    Failed,
}

/// A publication of either system, owned by the thread that made it.
trait Publisher {
    fn offer(&mut self, message: &[u8]) -> Offered;
}

/// A subscription of either system.
trait Subscriber {
    fn poll(&mut self, handler: impl FnMut(&[u8]), limit: usize) -> usize;
    fn is_connected(&mut self) -> bool;
}

/// One client of either system, made on the thread that uses it (Aeron's handles stay on their
/// client's thread).
trait Client {
    type Publication: Publisher;
    type Subscription: Subscriber;
    fn publication(&self, channel: &str, stream: i32, exclusive: bool) -> Self::Publication;
    fn subscription(&self, channel: &str, stream: i32) -> Self::Subscription;
}

/// How each system's driver runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum DriverKind {
    /// One shared thread, backing off when idle (the IPC workloads).
    SharedBackoff,
    /// One shared thread, yielding when idle.
    SharedYield,
    /// Conductor, sender and receiver threads, each yielding when idle.
    DedicatedYield,
}

/// A workload's channel and how its client threads wait.
#[derive(Debug, Clone)]
struct Route {
    /// The channel both systems use (tern reads `aeron:` as its own scheme).
    channel: String,
    /// Whether client threads yield when a poll or an offer finds nothing to do.
    yielding: bool,
    /// How the route is named in the output.
    name: &'static str,
}

impl Route {
    fn ipc() -> Self {
        Self {
            channel: "aeron:ipc".to_owned(),
            yielding: false,
            name: "ipc",
        }
    }

    /// UDP on loopback, on a port free now (each measurement gets its own).
    fn udp() -> Self {
        let port = std::net::UdpSocket::bind("127.0.0.1:0")
            .and_then(|socket| socket.local_addr())
            .map(|address| address.port())
            .expect("a free port");
        Self {
            channel: format!("aeron:udp?endpoint=127.0.0.1:{port}|term-length=16m"),
            yielding: true,
            name: "udp",
        }
    }

    /// Waits for more work the way this route's client threads do.
    #[inline]
    fn idle(&self) {
        if self.yielding {
            std::thread::yield_now();
        } else {
            spin_loop();
        }
    }
}

/// A running driver of either system.
trait System {
    type Client: Client;
    const NAME: &'static str;
    /// The driver's directory, for clients on other threads.
    fn dir(&self) -> String;
    /// A client of the driver in `dir`.
    fn connect(dir: &str) -> Self::Client;
}

mod tern_side {
    use super::*;
    use tern_engine::agent::IdleStrategy;
    use tern_engine::client::{
        ClientConfig, ExclusivePublication, OfferResult, Publication, Subscription, Tern,
    };
    use tern_engine::driver::{DriverConfig, MediaDriver, ThreadingMode};

    pub(crate) struct TernSystem {
        driver: MediaDriver,
    }

    impl TernSystem {
        pub(crate) fn launch(kind: DriverKind) -> Self {
            let dir = tern_engine::directory::default_directory()
                .with_file_name(format!("tern-versus-{}-{kind:?}", std::process::id()));
            let (threading_mode, idle_strategy) = match kind {
                DriverKind::SharedBackoff => (ThreadingMode::Shared, IdleStrategy::default()),
                DriverKind::SharedYield => (ThreadingMode::Shared, IdleStrategy::Yield),
                DriverKind::DedicatedYield => (ThreadingMode::Dedicated, IdleStrategy::Yield),
            };
            let config = DriverConfig {
                dir,
                threading_mode,
                idle_strategy,
                ipc_term_length: TERM_LENGTH,
                udp_term_length: TERM_LENGTH,
                udp_io: UDP_IO.get().copied().unwrap_or_default(),
                ..DriverConfig::default()
            };
            Self {
                driver: MediaDriver::launch(config).expect("the tern driver starts"),
            }
        }
    }

    pub(crate) enum TernPublication {
        Concurrent(Publication),
        Exclusive(ExclusivePublication),
    }

    fn offered(result: OfferResult) -> Offered {
        match result {
            OfferResult::Ok(_) => Offered::Ok,
            OfferResult::BackPressured | OfferResult::NotConnected | OfferResult::AdminAction => {
                Offered::Retry
            }
            _ => Offered::Failed,
        }
    }

    impl Publisher for TernPublication {
        #[inline]
        fn offer(&mut self, message: &[u8]) -> Offered {
            offered(match self {
                Self::Concurrent(publication) => publication.offer(message),
                Self::Exclusive(publication) => publication.offer(message),
            })
        }
    }

    impl Subscriber for Subscription {
        #[inline]
        fn poll(&mut self, mut handler: impl FnMut(&[u8]), limit: usize) -> usize {
            Subscription::poll(self, |payload, _| handler(payload), limit)
        }

        fn is_connected(&mut self) -> bool {
            Subscription::is_connected(self)
        }
    }

    impl Client for Tern {
        type Publication = TernPublication;
        type Subscription = Subscription;

        fn publication(&self, channel: &str, stream: i32, exclusive: bool) -> TernPublication {
            if exclusive {
                TernPublication::Exclusive(
                    self.add_exclusive_publication(channel, stream)
                        .expect("a tern publication"),
                )
            } else {
                TernPublication::Concurrent(
                    self.add_publication(channel, stream)
                        .expect("a tern publication"),
                )
            }
        }

        fn subscription(&self, channel: &str, stream: i32) -> Subscription {
            self.add_subscription(channel, stream)
                .expect("a tern subscription")
        }
    }

    impl System for TernSystem {
        type Client = Tern;
        const NAME: &'static str = "tern";

        fn dir(&self) -> String {
            self.driver.dir().display().to_string()
        }

        fn connect(dir: &str) -> Tern {
            Tern::connect(ClientConfig {
                dir: dir.into(),
                ..ClientConfig::default()
            })
            .expect("a tern client")
        }
    }
}

mod aeron_side {
    use super::*;
    use rusteron_client::{
        Aeron, AeronContext, AeronExclusivePublication, AeronOfferError, AeronPublication,
        AeronSubscription, Handlers,
    };
    use rusteron_media_driver::testing::EmbeddedDriver;

    pub(crate) struct AeronSystem {
        driver: EmbeddedDriver,
    }

    impl AeronSystem {
        pub(crate) fn launch(kind: DriverKind) -> Self {
            use rusteron_media_driver::AeronIdleStrategyKind;
            use rusteron_media_driver::bindings::aeron_threading_mode_enum::{
                AERON_THREADING_MODE_DEDICATED, AERON_THREADING_MODE_SHARED,
            };
            let driver = EmbeddedDriver::launch_with(|context| {
                match kind {
                    DriverKind::SharedBackoff => {
                        context.set_threading_mode(AERON_THREADING_MODE_SHARED)?;
                    }
                    DriverKind::SharedYield => {
                        context.set_threading_mode(AERON_THREADING_MODE_SHARED)?;
                        context.set_shared_idle_strategy_kind(AeronIdleStrategyKind::Yielding)?;
                    }
                    DriverKind::DedicatedYield => {
                        context.set_threading_mode(AERON_THREADING_MODE_DEDICATED)?;
                        context
                            .set_conductor_idle_strategy_kind(AeronIdleStrategyKind::Yielding)?;
                        context.set_sender_idle_strategy_kind(AeronIdleStrategyKind::Yielding)?;
                        context.set_receiver_idle_strategy_kind(AeronIdleStrategyKind::Yielding)?;
                    }
                }
                context.set_ipc_term_buffer_length(TERM_LENGTH as usize)?;
                context.set_term_buffer_sparse_file(false)?;
                Ok(())
            })
            .expect("the Aeron C driver starts");
            Self { driver }
        }
    }

    // Handles are used only on the thread that made them (each thread connects its own client).
    pub(crate) struct AeronClient(Aeron);

    pub(crate) enum AeronAnyPublication {
        Concurrent(AeronPublication),
        Exclusive(AeronExclusivePublication),
    }

    fn offered(result: Result<i64, AeronOfferError>) -> Offered {
        match result {
            Ok(_) => Offered::Ok,
            Err(error) if error.is_retryable() => Offered::Retry,
            Err(_) => Offered::Failed,
        }
    }

    impl Publisher for AeronAnyPublication {
        #[inline]
        fn offer(&mut self, message: &[u8]) -> Offered {
            offered(match self {
                Self::Concurrent(publication) => publication.offer(message),
                Self::Exclusive(publication) => publication.offer(message),
            })
        }
    }

    impl Subscriber for AeronSubscription {
        #[inline]
        fn poll(&mut self, mut handler: impl FnMut(&[u8]), limit: usize) -> usize {
            let polled = self.poll_fn(|payload: &[u8], _header| handler(payload), limit);
            usize::try_from(polled.unwrap_or(0)).unwrap_or(0)
        }

        fn is_connected(&mut self) -> bool {
            self.image_count().unwrap_or(0) > 0
        }
    }

    fn c_string(channel: &str) -> CString {
        CString::new(channel).expect("no NUL")
    }

    impl Client for AeronClient {
        type Publication = AeronAnyPublication;
        type Subscription = AeronSubscription;

        fn publication(&self, channel: &str, stream: i32, exclusive: bool) -> AeronAnyPublication {
            let channel = c_string(channel);
            let timeout = Duration::from_secs(10);
            if exclusive {
                AeronAnyPublication::Exclusive(
                    self.0
                        .async_add_exclusive_publication(&channel, stream)
                        .and_then(|pending| pending.poll_blocking(timeout))
                        .expect("an Aeron publication"),
                )
            } else {
                AeronAnyPublication::Concurrent(
                    self.0
                        .async_add_publication(&channel, stream)
                        .and_then(|pending| pending.poll_blocking(timeout))
                        .expect("an Aeron publication"),
                )
            }
        }

        fn subscription(&self, channel: &str, stream: i32) -> AeronSubscription {
            self.0
                .async_add_subscription(&c_string(channel), stream, Handlers::NONE, Handlers::NONE)
                .and_then(|pending| pending.poll_blocking(Duration::from_secs(10)))
                .expect("an Aeron subscription")
        }
    }

    impl System for AeronSystem {
        type Client = AeronClient;
        const NAME: &'static str = "Aeron C";

        fn dir(&self) -> String {
            self.driver.dir().to_owned()
        }

        fn connect(dir: &str) -> AeronClient {
            let context = AeronContext::new().expect("an Aeron context");
            context
                .set_dir(&CString::new(dir).expect("no NUL"))
                .expect("the Aeron directory");
            context
                .set_pre_touch_mapped_memory(true)
                .expect("pre-touch");
            let aeron = Aeron::new(&context).expect("an Aeron client");
            aeron.start().expect("the Aeron client starts");
            AeronClient(aeron)
        }
    }
}

/// Offers until accepted, waiting as `route` says; a failed offer ends the benchmark loudly.
#[inline]
fn offer_until_accepted(publication: &mut impl Publisher, message: &[u8], route: &Route) {
    loop {
        match publication.offer(message) {
            Offered::Ok => return,
            Offered::Retry => route.idle(),
            Offered::Failed => panic!("an offer failed"),
        }
    }
}

fn wait_for(what: &str, mut ready: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !ready() {
        assert!(Instant::now() < deadline, "{what} never happened");
        std::thread::sleep(Duration::from_millis(1));
    }
}

/// The ping side's clock: nanoseconds since the run started.
fn now_ns(start: Instant) -> u64 {
    u64::try_from(start.elapsed().as_nanos()).unwrap_or(u64::MAX)
}

/// Ping-pong of 32-byte messages over two exclusive publications; returns the RTT histogram.
fn ping<S: System>(system: &S, options: &Options, route: &Route) -> Histogram<u64> {
    let dir = system.dir();
    let running = AtomicBool::new(true);
    let ready = AtomicBool::new(false);
    std::thread::scope(|scope| {
        scope.spawn(|| {
            pin_by_index(&options.pin, 1);
            let client = S::connect(&dir);
            let mut pong = client.publication(&route.channel, PONG_STREAM, true);
            let mut pings = client.subscription(&route.channel, PING_STREAM);
            ready.store(true, Ordering::Release);
            while running.load(Ordering::Acquire) {
                let polled = pings.poll(
                    |message| offer_until_accepted(&mut pong, message, route),
                    FRAGMENT_LIMIT,
                );
                if polled == 0 {
                    route.idle();
                }
            }
        });
        pin_by_index(&options.pin, 0);
        let client = S::connect(&dir);
        let mut ping = client.publication(&route.channel, PING_STREAM, true);
        let mut pongs = client.subscription(&route.channel, PONG_STREAM);
        wait_for("the ponger", || ready.load(Ordering::Acquire));
        wait_for("both images", || pongs.is_connected());
        let mut histogram =
            Histogram::<u64>::new_with_bounds(1, 60_000_000_000, 3).expect("valid bounds");
        let mut message = [0u8; 32];
        let start = Instant::now();
        let warmup = options.ping_count / 10;
        for index in 0..warmup + options.ping_count {
            let sent = now_ns(start);
            message[..8].copy_from_slice(&sent.to_le_bytes());
            offer_until_accepted(&mut ping, &message, route);
            let mut received = false;
            while !received {
                if pongs.poll(|_| received = true, 1) == 0 {
                    route.idle();
                }
            }
            if index >= warmup {
                histogram.saturating_record(now_ns(start).saturating_sub(sent).max(1));
            }
        }
        running.store(false, Ordering::Release);
        histogram
    })
}

/// One publisher and one subscriber as fast as they go; returns messages per second.
fn throughput<S: System>(
    system: &S,
    options: &Options,
    route: &Route,
    size: usize,
    exclusive: bool,
) -> f64 {
    let dir = system.dir();
    let running = AtomicBool::new(true);
    let received = AtomicU64::new(0);
    let ready = AtomicBool::new(false);
    std::thread::scope(|scope| {
        scope.spawn(|| {
            pin_by_index(&options.pin, 1);
            let client = S::connect(&dir);
            let mut subscription = client.subscription(&route.channel, THROUGHPUT_STREAM);
            ready.store(true, Ordering::Release);
            let mut count = 0u64;
            while running.load(Ordering::Relaxed) {
                let polled = subscription.poll(|_| {}, THROUGHPUT_FRAGMENT_LIMIT);
                if polled == 0 {
                    route.idle();
                }
                count += polled as u64;
                received.store(count, Ordering::Relaxed);
            }
        });
        pin_by_index(&options.pin, 0);
        let client = S::connect(&dir);
        let mut publication = client.publication(&route.channel, THROUGHPUT_STREAM, exclusive);
        wait_for("the subscriber", || ready.load(Ordering::Acquire));
        let message = vec![0xA5u8; size];
        let warmup_end = Instant::now() + Duration::from_secs(1);
        let end = warmup_end + Duration::from_secs_f64(options.seconds);
        let mut measured: Option<(Instant, u64)> = None;
        loop {
            let mut refused = 0;
            for _ in 0..1024 {
                match publication.offer(&message) {
                    Offered::Ok => {}
                    Offered::Retry => refused += 1,
                    Offered::Failed => panic!("an offer failed"),
                }
            }
            if refused == 1024 {
                route.idle();
            }
            let now = Instant::now();
            if measured.is_none() && now >= warmup_end {
                measured = Some((now, received.load(Ordering::Relaxed)));
            }
            if now >= end {
                break;
            }
        }
        running.store(false, Ordering::Relaxed);
        let (start, start_count) = measured.expect("the warm-up ended");
        (received.load(Ordering::Relaxed) - start_count) as f64 / start.elapsed().as_secs_f64()
    })
}

#[derive(Debug)]
struct Options {
    rounds: usize,
    pin: Vec<usize>,
    ping_count: u64,
    seconds: f64,
    only: Option<String>,
    media: Option<String>,
}

fn options() -> Options {
    let mut options = Options {
        rounds: 3,
        pin: Vec::new(),
        ping_count: 1_000_000,
        seconds: 3.0,
        only: None,
        media: None,
    };
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        let mut value = || args.next().unwrap_or_else(|| panic!("{arg} needs a value"));
        match arg.as_str() {
            "--rounds" => options.rounds = value().parse().expect("--rounds N"),
            "--pin" => {
                options.pin = value()
                    .split(',')
                    .map(|cpu| cpu.parse().expect("--pin A,B"))
                    .collect();
            }
            "--ping-count" => options.ping_count = value().parse().expect("--ping-count N"),
            "--seconds" => options.seconds = value().parse().expect("--seconds S"),
            "--only" => options.only = Some(value()),
            "--media" => options.media = Some(value()),
            "--udp-io" => {
                let io = value()
                    .parse()
                    .expect("--udp-io mmsg|io_uring|io_uring_sqpoll");
                UDP_IO.set(io).expect("--udp-io once");
            }
            // cargo bench passes --bench; anything else is a mistake worth hearing about.
            "--bench" => {}
            other => panic!("unknown option {other}"),
        }
    }
    options
}

fn probe(options: &Options) -> Probe {
    cache_line_round_trip(&options.pin)
}

fn probe_text(before: Probe, after: Probe) -> String {
    format!(
        "probe {:.0}/{:.0} ns",
        before.median_ns.min(after.median_ns),
        before.median_ns.max(after.median_ns)
    )
}

/// RTT percentiles: p50, p90, p99, p99.9, p99.99, max.
fn percentiles(histogram: &Histogram<u64>) -> [u64; 6] {
    [0.5, 0.9, 0.99, 0.999, 0.9999]
        .map(|quantile| histogram.value_at_quantile(quantile))
        .into_iter()
        .chain([histogram.max()])
        .collect::<Vec<_>>()
        .try_into()
        .expect("six values")
}

fn ping_round(
    tern: &tern_side::TernSystem,
    aeron: &aeron_side::AeronSystem,
    options: &Options,
    round: usize,
    route: impl Fn() -> Route,
) {
    let mut results = Vec::new();
    let mut measure = |name: &str, run: &dyn Fn() -> Histogram<u64>| {
        let before = probe(options);
        let histogram = run();
        let after = probe(options);
        let values = percentiles(&histogram);
        println!(
            "  {name:<8} {} ping 32 B RTT ns  p50 {}  p90 {}  p99 {}  p99.9 {}  p99.99 {}  max {}  ({})",
            route().name,
            values[0],
            values[1],
            values[2],
            values[3],
            values[4],
            values[5],
            probe_text(before, after)
        );
        results.push((name.to_owned(), values));
    };
    let tern_run = || ping(tern, options, &route());
    let aeron_run = || ping(aeron, options, &route());
    if round.is_multiple_of(2) {
        measure(tern_side::TernSystem::NAME, &tern_run);
        measure(aeron_side::AeronSystem::NAME, &aeron_run);
    } else {
        measure(aeron_side::AeronSystem::NAME, &aeron_run);
        measure(tern_side::TernSystem::NAME, &tern_run);
    }
    let of = |name: &str| {
        results
            .iter()
            .find(|(system, _)| system == name)
            .map(|(_, values)| *values)
            .expect("both measured")
    };
    let (tern_values, aeron_values) = (of("tern"), of("Aeron C"));
    let ratio = |index: usize| tern_values[index] as f64 / aeron_values[index].max(1) as f64;
    println!(
        "  ratio    tern / Aeron C         p50 {:.2}  p90 {:.2}  p99 {:.2}  p99.9 {:.2}  p99.99 {:.2}  max {:.2}",
        ratio(0),
        ratio(1),
        ratio(2),
        ratio(3),
        ratio(4),
        ratio(5)
    );
}

fn throughput_round(
    tern: &tern_side::TernSystem,
    aeron: &aeron_side::AeronSystem,
    options: &Options,
    round: usize,
    route: impl Fn() -> Route,
) {
    for (size, exclusive) in [(32, true), (32, false), (1024, true), (1024, false)] {
        let kind = if exclusive { "exclusive" } else { "concurrent" };
        let mut rates = [0.0f64; 2];
        let order: [usize; 2] = if round.is_multiple_of(2) {
            [0, 1]
        } else {
            [1, 0]
        };
        let mut probes = Vec::new();
        let name = route().name;
        for side in order {
            let before = probe(options);
            rates[side] = if side == 0 {
                throughput(tern, options, &route(), size, exclusive)
            } else {
                throughput(aeron, options, &route(), size, exclusive)
            };
            probes.push(probe_text(before, probe(options)));
        }
        println!(
            "  {name} throughput {size:>4} B {kind:<10}  tern {:>7.2} M msg/s  Aeron C {:>7.2} M msg/s  \
             ratio {:.2}  ({})",
            rates[0] / 1e6,
            rates[1] / 1e6,
            rates[0] / rates[1].max(1.0),
            probes.join(", ")
        );
    }
}

fn main() {
    let options = options();
    let media = options.media.as_deref();
    let (ipc, udp) = (media != Some("udp"), media != Some("ipc"));
    let (pings, throughputs) = (
        options.only.as_deref() != Some("throughput"),
        options.only.as_deref() != Some("ping"),
    );
    println!(
        "tern {} versus Aeron C 1.54 (rusteron 0.2.16), {} rounds, client threads pinned to {:?}",
        env!("CARGO_PKG_VERSION"),
        options.rounds,
        options.pin
    );
    if ipc {
        println!("IPC, shared drivers backing off, clients spinning");
        let tern = tern_side::TernSystem::launch(DriverKind::SharedBackoff);
        let aeron = aeron_side::AeronSystem::launch(DriverKind::SharedBackoff);
        for round in 0..options.rounds {
            println!("round {}", round + 1);
            if pings {
                ping_round(&tern, &aeron, &options, round, Route::ipc);
            }
            if throughputs {
                throughput_round(&tern, &aeron, &options, round, Route::ipc);
            }
        }
    }
    if udp && pings {
        println!("UDP loopback ping, shared drivers, every thread yielding");
        let tern = tern_side::TernSystem::launch(DriverKind::SharedYield);
        let aeron = aeron_side::AeronSystem::launch(DriverKind::SharedYield);
        for round in 0..options.rounds {
            println!("round {}", round + 1);
            ping_round(&tern, &aeron, &options, round, Route::udp);
        }
    }
    if udp && throughputs {
        println!("UDP loopback throughput, dedicated drivers, every thread yielding");
        let tern = tern_side::TernSystem::launch(DriverKind::DedicatedYield);
        let aeron = aeron_side::AeronSystem::launch(DriverKind::DedicatedYield);
        for round in 0..options.rounds {
            println!("round {}", round + 1);
            throughput_round(&tern, &aeron, &options, round, Route::udp);
        }
    }
}
