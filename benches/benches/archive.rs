//! The archive's throughput and its cost to latency, each beside its physical limit measured in
//! the same run on the same file system:
//!
//! - raw sequential write (1 MiB `pwrite`s, `fdatasync` at the end) and cached read;
//! - recording an IPC publication of 32 B and 1 KiB messages: stream MB/s and messages/s, with
//!   checksums on and off and at each durability level;
//! - replaying a recording into an IPC subscription;
//! - the round trip of a 32 B ping-pong with and without its stream being recorded (HDR
//!   percentiles).
//!
//! ```sh
//! cargo bench -p tern-benches --bench archive -- [--mib 256] [--dir DIR] [--pings 100000] [--rounds 3]
//! ```
//! `--dir` (default: the temp dir) must be on the file system the archive would use. Each
//! figure is the median of `--rounds` rounds, the configurations interleaved round by round
//! (the raw bandwidth measured in every round too), so that a noisy moment hits them alike.

use std::fs::OpenOptions;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use tern_archive::archive::{Archive, ArchiveConfig};
use tern_archive::client::{ArchiveClient, ArchiveClientConfig};
use tern_archive::segment_writer::{Durability, FileIo};
use tern_engine::agent::{AgentRunner, Clock, IdleStrategy, SystemClock};
use tern_engine::client::{ClientConfig, ExclusivePublication, OfferResult, Subscription, Tern};
use tern_engine::driver::{DriverConfig, MediaDriver};

const MIB: usize = 1024 * 1024;

struct Options {
    mib: usize,
    dir: PathBuf,
    pings: u64,
    rounds: usize,
}

fn options() -> Options {
    let mut options = Options {
        mib: 256,
        dir: std::env::temp_dir(),
        pings: 100_000,
        rounds: 3,
    };
    let args: Vec<String> = std::env::args().collect();
    let mut index = 1;
    while index < args.len() {
        let value = args.get(index + 1).cloned().unwrap_or_default();
        match args[index].as_str() {
            "--mib" => options.mib = value.parse().expect("--mib N"),
            "--dir" => options.dir = PathBuf::from(value),
            "--pings" => options.pings = value.parse().expect("--pings N"),
            "--rounds" => options.rounds = value.parse().expect("--rounds N"),
            // cargo bench passes --bench; anything else is not ours.
            _ => {
                index += 1;
                continue;
            }
        }
        index += 2;
    }
    options
}

/// Raw sequential write then cached read of `bytes`, in MB/s.
fn raw_bandwidth(dir: &Path, bytes: usize) -> (f64, f64) {
    let path = dir.join(format!("tern-raw-{}", std::process::id()));
    let file = OpenOptions::new()
        .create(true)
        .truncate(true)
        .read(true)
        .write(true)
        .open(&path)
        .expect("a scratch file");
    let block = vec![0x5Au8; MIB];
    let started = Instant::now();
    for index in 0..bytes / MIB {
        file.write_all_at(&block, (index * MIB) as u64)
            .expect("write");
    }
    file.sync_data().expect("fdatasync");
    let write = mb_per_s(bytes, started.elapsed());
    let mut buffer = vec![0u8; MIB];
    let started = Instant::now();
    for index in 0..bytes / MIB {
        file.read_exact_at(&mut buffer, (index * MIB) as u64)
            .expect("read");
    }
    let read = mb_per_s(bytes, started.elapsed());
    drop(file);
    let _ = std::fs::remove_file(path);
    (write, read)
}

fn mb_per_s(bytes: usize, elapsed: Duration) -> f64 {
    bytes as f64 / elapsed.as_secs_f64() / 1e6
}

struct Node {
    driver: MediaDriver,
    runner: AgentRunner,
    tern: Tern,
    archive_dir: PathBuf,
}

impl Node {
    fn start(
        name: &str,
        base: &Path,
        checksums: bool,
        durability: Durability,
        file_io: FileIo,
    ) -> Self {
        let driver_dir = tern_engine::directory::default_directory()
            .with_file_name(format!("tern-bench-{name}-{}", std::process::id()));
        let mut config = DriverConfig {
            dir: driver_dir.clone(),
            ..DriverConfig::default()
        };
        config.ipc_term_length = 16 * 1024 * 1024;
        let driver = MediaDriver::launch(config).expect("driver");
        let client = |dir: &Path| {
            Tern::connect(ClientConfig {
                dir: dir.to_path_buf(),
                ..ClientConfig::default()
            })
            .expect("client")
        };
        let archive_dir = base.join(format!("tern-bench-archive-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&archive_dir);
        let clock: Arc<dyn Clock> = Arc::new(SystemClock);
        let archive = Archive::launch(
            ArchiveConfig {
                dir: archive_dir.clone(),
                checksums,
                durability,
                file_io,
                ..ArchiveConfig::default()
            },
            client(&driver_dir),
            clock.now(),
        )
        .expect("archive");
        let runner =
            AgentRunner::start(Box::new(archive), IdleStrategy::default(), clock).expect("thread");
        Self {
            tern: client(&driver_dir),
            driver,
            runner,
            archive_dir,
        }
    }

    fn close(mut self) {
        self.runner.close();
        drop(self.tern);
        self.driver.close();
        let _ = std::fs::remove_dir_all(&self.archive_dir);
    }
}

fn offer(publication: &mut ExclusivePublication, message: &[u8]) -> i64 {
    loop {
        match publication.offer(message) {
            OfferResult::Ok(position) => return position,
            OfferResult::BackPressured | OfferResult::AdminAction | OfferResult::NotConnected => {
                std::hint::spin_loop();
            }
            other => panic!("{other:?}"),
        }
    }
}

/// Records `bytes` of stream in `size`-byte messages; returns (stream MB/s, messages/s).
fn record(
    options: &Options,
    size: usize,
    checksums: bool,
    durability: Durability,
    file_io: FileIo,
) -> (f64, f64) {
    let node = Node::start("record", &options.dir, checksums, durability, file_io);
    let mut archive =
        ArchiveClient::connect(&node.tern, ArchiveClientConfig::default()).expect("connect");
    archive.start_recording("tern:ipc", 7001).expect("record");
    let mut publication = node
        .tern
        .add_exclusive_publication("tern:ipc", 7001)
        .expect("publication");
    publication
        .wait_connected(Duration::from_secs(10))
        .expect("connected");
    let frame = (size + 32).next_multiple_of(32);
    let bytes = if durability == Durability::Position {
        options.mib * MIB / 4
    } else {
        options.mib * MIB
    };
    let messages = bytes / frame;
    let message = vec![0x42u8; size];
    let started = Instant::now();
    let mut end = 0;
    for _ in 0..messages {
        end = offer(&mut publication, &message);
    }
    while archive.recording_position(0).ok().flatten() != Some(end) {
        std::thread::sleep(Duration::from_micros(200));
    }
    archive.stop_recording("tern:ipc", 7001).expect("stop");
    let elapsed = started.elapsed();
    drop(publication);
    drop(archive);
    node.close();
    (
        mb_per_s(usize::try_from(end).unwrap_or(0), elapsed),
        messages as f64 / elapsed.as_secs_f64(),
    )
}

/// Records `bytes` of 1 KiB messages, then replays them into a subscription; replay MB/s.
fn replay(options: &Options) -> f64 {
    let node = Node::start(
        "replay",
        &options.dir,
        true,
        Durability::None,
        FileIo::Pwrite,
    );
    let mut archive =
        ArchiveClient::connect(&node.tern, ArchiveClientConfig::default()).expect("connect");
    archive.start_recording("tern:ipc", 7002).expect("record");
    let mut publication = node
        .tern
        .add_exclusive_publication("tern:ipc", 7002)
        .expect("publication");
    publication
        .wait_connected(Duration::from_secs(10))
        .expect("connected");
    let message = vec![0x42u8; 1024];
    let mut end = 0;
    for _ in 0..options.mib * MIB / 1088 {
        end = offer(&mut publication, &message);
    }
    while archive.recording_position(0).ok().flatten() != Some(end) {
        std::thread::sleep(Duration::from_micros(200));
    }
    archive.stop_recording("tern:ipc", 7002).expect("stop");
    let mut subscription = node
        .tern
        .add_subscription("tern:ipc", 7003)
        .expect("subscription");
    let started = Instant::now();
    archive.replay(0, -1, -1, "tern:ipc", 7003).expect("replay");
    let mut position = 0;
    while position < end {
        subscription.poll(|_, header| position = header.position, 1024);
    }
    let elapsed = started.elapsed();
    drop(subscription);
    drop(publication);
    drop(archive);
    node.close();
    mb_per_s(usize::try_from(end).unwrap_or(0), elapsed)
}

/// Round trips of a 32 B ping through an echo thread; with `recorded`, the ping stream is
/// recorded by the archive meanwhile.
fn ping(options: &Options, recorded: bool) -> Histogram<u64> {
    let node = Node::start(
        if recorded { "ping-rec" } else { "ping" },
        &options.dir,
        true,
        Durability::None,
        FileIo::Pwrite,
    );
    let mut archive =
        ArchiveClient::connect(&node.tern, ArchiveClientConfig::default()).expect("connect");
    if recorded {
        archive.start_recording("tern:ipc", 7010).expect("record");
    }
    let stop = Arc::new(AtomicBool::new(false));
    let echo_tern = Tern::connect(ClientConfig {
        dir: node.driver.dir().to_path_buf(),
        ..ClientConfig::default()
    })
    .expect("client");
    let mut pings: Subscription = echo_tern.add_subscription("tern:ipc", 7010).expect("sub");
    let mut pongs_out = echo_tern
        .add_exclusive_publication("tern:ipc", 7011)
        .expect("pub");
    let echo_stop = Arc::clone(&stop);
    let mut pongs = node.tern.add_subscription("tern:ipc", 7011).expect("sub");
    let mut pings_out = node
        .tern
        .add_exclusive_publication("tern:ipc", 7010)
        .expect("pub");
    let echo = std::thread::spawn(move || {
        let mut buffer = [0u8; 32];
        while !echo_stop.load(Ordering::Relaxed) {
            let mut got = false;
            pings.poll(
                |payload, _| {
                    buffer.copy_from_slice(&payload[..32]);
                    got = true;
                },
                1,
            );
            if got {
                offer(&mut pongs_out, &buffer);
            } else {
                std::hint::spin_loop();
            }
        }
        drop(echo_tern);
    });
    pings_out
        .wait_connected(Duration::from_secs(10))
        .expect("connected");
    let mut histogram = Histogram::<u64>::new_with_bounds(1, 60_000_000_000, 3).expect("histogram");
    let message = [7u8; 32];
    for sample in 0..options.pings + 10_000 {
        let started = Instant::now();
        offer(&mut pings_out, &message);
        let mut got = false;
        while !got {
            pongs.poll(|_, _| got = true, 1);
        }
        if sample >= 10_000 {
            histogram
                .saturating_record(u64::try_from(started.elapsed().as_nanos()).unwrap_or(u64::MAX));
        }
    }
    stop.store(true, Ordering::Relaxed);
    echo.join().expect("echo");
    if recorded {
        archive.stop_recording("tern:ipc", 7010).expect("stop");
    }
    drop(archive);
    drop(pings_out);
    node.close();
    histogram
}

fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
}

fn main() {
    let options = options();
    println!(
        "archive benchmarks: {} MiB per run in {}, median of {} rounds",
        options.mib,
        options.dir.display(),
        options.rounds
    );
    let configurations: Vec<(usize, bool, Durability, FileIo)> = [32usize, 1024]
        .into_iter()
        .flat_map(|size| {
            [
                (size, true, Durability::SegmentEnd, FileIo::Pwrite),
                (size, false, Durability::SegmentEnd, FileIo::Pwrite),
                (size, true, Durability::None, FileIo::Pwrite),
                (size, true, Durability::Position, FileIo::Pwrite),
                (size, true, Durability::SegmentEnd, FileIo::IoUring),
            ]
        })
        .collect();
    let (mut writes, mut reads, mut replays) = (Vec::new(), Vec::new(), Vec::new());
    let mut rates = vec![Vec::new(); configurations.len()];
    let mut message_rates = vec![Vec::new(); configurations.len()];
    for _ in 0..options.rounds {
        let (write, read) = raw_bandwidth(&options.dir, options.mib * MIB);
        writes.push(write);
        reads.push(read);
        for (index, &(size, checksums, durability, file_io)) in configurations.iter().enumerate() {
            let (rate, messages) = record(&options, size, checksums, durability, file_io);
            rates[index].push(rate);
            message_rates[index].push(messages);
        }
        replays.push(replay(&options));
    }
    let (write, read) = (median(writes), median(reads));
    println!("raw sequential write (1 MiB pwrite, fdatasync at end): {write:>8.0} MB/s");
    println!("raw sequential read (cached, 1 MiB pread):             {read:>8.0} MB/s");
    println!();
    println!(
        "{:<10} {:<10} {:<12} {:<9} {:>10} {:>12} {:>10}",
        "message", "checksums", "durability", "io", "MB/s", "msgs/s", "of raw"
    );
    for (index, &(size, checksums, durability, file_io)) in configurations.iter().enumerate() {
        let rate = median(rates[index].clone());
        let messages = median(message_rates[index].clone());
        println!(
            "{:<10} {:<10} {:<12} {:<9} {rate:>10.0} {messages:>12.0} {:>9.0}%",
            format!("{size} B"),
            if checksums { "on" } else { "off" },
            format!("level {}", durability.level()),
            if file_io == FileIo::IoUring {
                "io_uring"
            } else {
                "pwrite"
            },
            rate / write * 100.0
        );
    }
    let replayed = median(replays);
    println!();
    println!(
        "replay (1 KiB messages, checksums checked): {replayed:.0} MB/s, {:.0}% of raw cached read",
        replayed / read * 100.0
    );
    println!();
    println!("32 B ping round trip (ns):   p50      p90      p99    p99.9   p99.99      max");
    for recorded in [false, true] {
        let histogram = ping(&options, recorded);
        println!(
            "{:<24} {:>8} {:>8} {:>8} {:>8} {:>8} {:>8}",
            if recorded { "recorded" } else { "not recorded" },
            histogram.value_at_quantile(0.5),
            histogram.value_at_quantile(0.9),
            histogram.value_at_quantile(0.99),
            histogram.value_at_quantile(0.999),
            histogram.value_at_quantile(0.9999),
            histogram.max()
        );
    }
}
