//! `tern stat` and `tern errors`: look inside a running driver through its CnC file.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use tern_engine::cnc::CncFile;
use tern_engine::concurrent::counters::CountersReader;
use tern_engine::concurrent::error_log::read_errors;
use tern_engine::concurrent::ring_buffer::ManyToOneRingBuffer;

use crate::DirArg;

/// Arguments of `tern stat`.
#[derive(Debug, clap::Args)]
pub(crate) struct StatArgs {
    #[command(flatten)]
    dir: DirArg,
    /// Print again every interval, with rates, until interrupted.
    #[arg(long)]
    watch: bool,
    /// The interval for --watch, in milliseconds.
    #[arg(long, default_value_t = 1000)]
    interval_ms: u64,
    /// Stop watching after this many prints (0: never).
    #[arg(long, default_value_t = 0)]
    iterations: u64,
}

/// Arguments of `tern errors`.
#[derive(Debug, clap::Args)]
pub(crate) struct ErrorsArgs {
    #[command(flatten)]
    dir: DirArg,
}

fn open(dir: &DirArg) -> Result<CncFile> {
    let dir = dir.resolve();
    CncFile::open(&dir).with_context(|| format!("reading the driver in {}", dir.display()))
}

pub(crate) fn stat(args: &StatArgs) -> Result<()> {
    let cnc = open(&args.dir)?;
    let sections = cnc.sections();
    let counters = CountersReader::new(sections.counters_metadata, sections.counters_values)?;
    let ring = ManyToOneRingBuffer::new(sections.to_driver)?;
    let mut previous: HashMap<i32, i64> = HashMap::new();
    let mut last = Instant::now();
    let mut printed = 0;
    loop {
        let identity = cnc.identity();
        let heartbeat_age = tern_engine::agent::epoch_ms() - ring.consumer_heartbeat();
        println!(
            "driver pid {} started {} ms since the epoch; heartbeat {heartbeat_age} ms ago",
            identity.pid, identity.start_timestamp_ms
        );
        let elapsed = last.elapsed().as_secs_f64();
        last = Instant::now();
        counters.for_each(|info| {
            let rate = previous
                .get(&info.id)
                .filter(|_| args.watch && elapsed > 0.0)
                .map(|before| format!("  ({:.0}/s)", (info.value - before) as f64 / elapsed))
                .unwrap_or_default();
            println!("{:>4}: {:>20} - {}{rate}", info.id, info.value, info.label);
            previous.insert(info.id, info.value);
        });
        printed += 1;
        if !args.watch || (args.iterations > 0 && printed >= args.iterations) {
            return Ok(());
        }
        std::thread::sleep(Duration::from_millis(args.interval_ms));
        println!();
    }
}

pub(crate) fn errors(args: &ErrorsArgs) -> Result<()> {
    let cnc = open(&args.dir)?;
    let count = read_errors(cnc.sections().error_log, |error| {
        println!(
            "{} observations from {} to {} (ms since the epoch): {}",
            error.count, error.first_observation_ms, error.last_observation_ms, error.text
        );
    });
    println!("{count} distinct errors");
    Ok(())
}
