//! `tern bench ping` and `tern bench throughput`: IPC benchmarks that print HDR percentiles or
//! rates, with an embedded driver by default or a running one with `--dir`.
//!
//! Every run also measures the machine's cache-line round trip (two threads passing a value
//! through one cache line each way) before and after itself, because on shared VMs the two
//! cores may sit near or far from each other and move between runs: compare results only
//! between runs whose probes agree.

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use hdrhistogram::Histogram;
use tern_engine::agent::{IdleStrategy, nano_time};
use tern_engine::client::{ClientConfig, OfferResult, Publication, Tern};
use tern_engine::driver::{DriverConfig, MediaDriver};
use tern_engine::placement::{Probe, cache_line_round_trip, pin_by_index};

/// The benchmarks.
#[derive(Debug, clap::Subcommand)]
pub(crate) enum BenchCommand {
    /// Round trips of one message between two threads over two streams.
    Ping(PingArgs),
    /// One publisher, one subscriber, as fast as they go.
    Throughput(ThroughputArgs),
    /// Only the cache-line round-trip probe.
    Probe,
}

/// Options every benchmark shares.
#[derive(Debug, clap::Args)]
pub(crate) struct Common {
    /// Use a running driver in this directory instead of an embedded one.
    #[arg(long)]
    dir: Option<PathBuf>,
    /// The channel.
    #[arg(long, default_value = "tern:ipc")]
    channel: String,
    /// Message size in bytes (at least 8).
    #[arg(long, default_value_t = 32)]
    size: usize,
    /// Pin the benchmark's threads to these CPUs (comma-separated), in the order the benchmark
    /// names them.
    #[arg(long, value_delimiter = ',')]
    pin: Vec<usize>,
}

/// Arguments of `tern bench ping`.
#[derive(Debug, clap::Args)]
pub(crate) struct PingArgs {
    #[command(flatten)]
    common: Common,
    /// Measured round trips.
    #[arg(long, default_value_t = 1_000_000)]
    count: u64,
    /// Round trips before measuring.
    #[arg(long, default_value_t = 100_000)]
    warmup: u64,
    /// Write the percentile distribution to this `.hgrm` file (values in microseconds).
    #[arg(long)]
    hgrm: Option<PathBuf>,
}

/// Arguments of `tern bench throughput`.
#[derive(Debug, clap::Args)]
pub(crate) struct ThroughputArgs {
    #[command(flatten)]
    common: Common,
    /// Seconds to measure.
    #[arg(long, default_value_t = 5.0)]
    duration_secs: f64,
    /// Seconds before measuring.
    #[arg(long, default_value_t = 1.0)]
    warmup_secs: f64,
    /// Publish through an exclusive publication (one writer, no atomic add).
    #[arg(long)]
    exclusive: bool,
}

/// Either kind of publication, for the throughput loop.
enum AnyPublication {
    Concurrent(Publication),
    Exclusive(tern_engine::client::ExclusivePublication),
}

impl AnyPublication {
    fn offer(&mut self, message: &[u8]) -> OfferResult {
        match self {
            Self::Concurrent(publication) => publication.offer(message),
            Self::Exclusive(publication) => publication.offer(message),
        }
    }

    fn wait_connected(&self, timeout: Duration) -> Result<(), tern_engine::client::ClientError> {
        match self {
            Self::Concurrent(publication) => publication.wait_connected(timeout),
            Self::Exclusive(publication) => publication.wait_connected(timeout),
        }
    }
}

pub(crate) fn run(command: &BenchCommand) -> Result<()> {
    match command {
        BenchCommand::Ping(args) => ping(args),
        BenchCommand::Throughput(args) => throughput(args),
        BenchCommand::Probe => {
            print_probe("cache-line round trip", &cache_line_round_trip(&[]));
            Ok(())
        }
    }
}

/// An embedded driver in a fresh directory, or none when a directory was given.
struct Setup {
    _driver: Option<MediaDriver>,
    tern: Tern,
}

fn setup(common: &Common) -> Result<Setup> {
    if common.size < 8 {
        bail!("--size must be at least 8 (a timestamp or sequence number)");
    }
    let (driver, dir) = match &common.dir {
        Some(dir) => (None, dir.clone()),
        None => {
            // Beside the default directory, so that logs live in memory (/dev/shm) as in use.
            let dir = tern_engine::directory::default_directory()
                .with_file_name(format!("tern-bench-{}", std::process::id()));
            let config = DriverConfig {
                dir: dir.clone(),
                idle_strategy: IdleStrategy::default(),
                ..DriverConfig::default()
            };
            (
                Some(MediaDriver::launch(config).context("starting the embedded driver")?),
                dir,
            )
        }
    };
    let tern = Tern::connect(ClientConfig {
        dir,
        ..ClientConfig::default()
    })?;
    Ok(Setup {
        _driver: driver,
        tern,
    })
}

fn offer_spinning(publication: &Publication, message: &[u8]) {
    loop {
        match publication.offer(message) {
            OfferResult::Ok(_) => return,
            OfferResult::BackPressured | OfferResult::AdminAction | OfferResult::NotConnected => {
                std::hint::spin_loop();
            }
            other => panic!("offer failed: {other:?}"),
        }
    }
}

fn ping(args: &PingArgs) -> Result<()> {
    let before = cache_line_round_trip(&args.common.pin);
    print_probe("cache-line round trip before", &before);
    let setup = setup(&args.common)?;
    let ping_publication = setup.tern.add_publication(&args.common.channel, 1001)?;
    let mut ping_subscription = setup.tern.add_subscription(&args.common.channel, 1001)?;
    let pong_publication = setup.tern.add_publication(&args.common.channel, 1002)?;
    let mut pong_subscription = setup.tern.add_subscription(&args.common.channel, 1002)?;
    // Each side echoes fragments as they arrive: a message must be one frame.
    let max_payload = ping_publication.max_payload_length();
    if args.common.size > max_payload {
        bail!(
            "--size {} is more than one frame carries ({max_payload} bytes at this channel's \
             MTU); ping measures single-frame messages",
            args.common.size
        );
    }
    ping_publication.wait_connected(Duration::from_secs(10))?;
    pong_publication.wait_connected(Duration::from_secs(10))?;

    let running = Arc::new(AtomicBool::new(true));
    let ponger = {
        let running = Arc::clone(&running);
        let cpus = args.common.pin.clone();
        std::thread::Builder::new()
            .name("ponger".into())
            .spawn(move || {
                pin_by_index(&cpus, 1);
                while running.load(Ordering::Relaxed) {
                    ping_subscription
                        .poll(|message, _| offer_spinning(&pong_publication, message), 16);
                }
            })?
    };
    pin_by_index(&args.common.pin, 0);
    let mut histogram = Histogram::<u64>::new_with_bounds(1, 60_000_000_000, 3)?;
    let mut message = vec![0u8; args.common.size];
    let total = args.warmup + args.count;
    let started = Instant::now();
    for index in 0..total {
        let sent_ns = nano_time();
        message[..8].copy_from_slice(&sent_ns.to_le_bytes());
        offer_spinning(&ping_publication, &message);
        let mut received = false;
        while !received {
            pong_subscription.poll(|_, _| received = true, 1);
        }
        if index >= args.warmup {
            let rtt = u64::try_from(nano_time() - sent_ns).unwrap_or(0).max(1);
            histogram.saturating_record(rtt);
        }
    }
    let elapsed = started.elapsed();
    running.store(false, Ordering::Relaxed);
    ponger
        .join()
        .map_err(|_| anyhow::anyhow!("the ponger thread panicked"))?;
    println!(
        "ping-pong {} B over {}: {} round trips after {} warm-up in {:.2?}",
        args.common.size, args.common.channel, args.count, args.warmup, elapsed
    );
    print_percentiles(&histogram);
    if let Some(path) = &args.hgrm {
        write_hgrm(&histogram, path)?;
        println!("percentile distribution written to {}", path.display());
    }
    print_probe(
        "cache-line round trip after",
        &cache_line_round_trip(&args.common.pin),
    );
    Ok(())
}

fn throughput(args: &ThroughputArgs) -> Result<()> {
    print_probe(
        "cache-line round trip before",
        &cache_line_round_trip(&args.common.pin),
    );
    let setup = setup(&args.common)?;
    let mut publication = if args.exclusive {
        AnyPublication::Exclusive(
            setup
                .tern
                .add_exclusive_publication(&args.common.channel, 1003)?,
        )
    } else {
        AnyPublication::Concurrent(setup.tern.add_publication(&args.common.channel, 1003)?)
    };
    let mut subscription = setup.tern.add_subscription(&args.common.channel, 1003)?;
    publication.wait_connected(Duration::from_secs(10))?;
    let received = Arc::new(AtomicU64::new(0));
    let running = Arc::new(AtomicBool::new(true));
    let subscriber = {
        let (received, running) = (Arc::clone(&received), Arc::clone(&running));
        let cpus = args.common.pin.clone();
        std::thread::Builder::new()
            .name("subscriber".into())
            .spawn(move || {
                pin_by_index(&cpus, 1);
                let mut count = 0u64;
                while running.load(Ordering::Relaxed) {
                    count += u64::try_from(subscription.poll(|_, _| {}, 1024)).unwrap_or(0);
                    received.store(count, Ordering::Relaxed);
                }
            })?
    };
    pin_by_index(&args.common.pin, 0);
    let message = vec![0xA5u8; args.common.size];
    let mut back_pressured = 0u64;
    let warmup_end = Instant::now() + Duration::from_secs_f64(args.warmup_secs);
    let mut measure_start = None;
    let mut start_count = 0;
    let end = warmup_end + Duration::from_secs_f64(args.duration_secs);
    loop {
        for _ in 0..1024 {
            match publication.offer(&message) {
                OfferResult::Ok(_) | OfferResult::AdminAction => {}
                OfferResult::BackPressured => back_pressured += 1,
                other => bail!("offer failed: {other:?}"),
            }
        }
        let now = Instant::now();
        if measure_start.is_none() && now >= warmup_end {
            measure_start = Some(now);
            start_count = received.load(Ordering::Relaxed);
        }
        if now >= end {
            break;
        }
    }
    let elapsed = measure_start
        .map_or(Duration::ZERO, |start| start.elapsed())
        .as_secs_f64();
    let messages = received.load(Ordering::Relaxed) - start_count;
    running.store(false, Ordering::Relaxed);
    subscriber
        .join()
        .map_err(|_| anyhow::anyhow!("the subscriber thread panicked"))?;
    let rate = messages as f64 / elapsed;
    println!(
        "throughput {} B over {}{}: {:.2} M msg/s, {:.1} MB/s ({} messages in {:.2} s; {} back-pressured offers)",
        args.common.size,
        args.common.channel,
        if args.exclusive { " (exclusive)" } else { "" },
        rate / 1e6,
        rate * args.common.size as f64 / 1e6,
        messages,
        elapsed,
        back_pressured
    );
    print_probe(
        "cache-line round trip after",
        &cache_line_round_trip(&args.common.pin),
    );
    Ok(())
}

fn print_percentiles(histogram: &Histogram<u64>) {
    let at = |quantile: f64| histogram.value_at_quantile(quantile);
    println!(
        "  RTT ns: p50 {}  p90 {}  p99 {}  p99.9 {}  p99.99 {}  max {}",
        at(0.5),
        at(0.9),
        at(0.99),
        at(0.999),
        at(0.9999),
        histogram.max()
    );
}

fn write_hgrm(histogram: &Histogram<u64>, path: &PathBuf) -> Result<()> {
    use std::io::Write;
    let mut out = std::io::BufWriter::new(std::fs::File::create(path)?);
    writeln!(
        out,
        "{:>12} {:>14} {:>10} {:>14}\n",
        "Value", "Percentile", "TotalCount", "1/(1-Percentile)"
    )?;
    for step in histogram.iter_quantiles(5) {
        let percentile = step.quantile_iterated_to();
        let inverse = if percentile < 1.0 {
            1.0 / (1.0 - percentile)
        } else {
            f64::INFINITY
        };
        writeln!(
            out,
            "{:>12.3} {:>14.12} {:>10} {:>14.2}",
            step.value_iterated_to() as f64 / 1000.0,
            percentile,
            step.count_since_last_iteration(),
            inverse
        )?;
    }
    writeln!(
        out,
        "#[Mean    = {:>12.3}, StdDeviation   = {:>12.3}]",
        histogram.mean() / 1000.0,
        histogram.stdev() / 1000.0
    )?;
    writeln!(
        out,
        "#[Max     = {:>12.3}, Total count    = {:>12}]",
        histogram.max() as f64 / 1000.0,
        histogram.len()
    )?;
    Ok(())
}

fn print_probe(what: &str, probe: &Probe) {
    println!(
        "{what}: median {:.0} ns, p90 {:.0} ns",
        probe.median_ns, probe.p90_ns
    );
}
