//! `tern stat`, `tern errors` and `tern loss`: look inside a running driver through its CnC
//! file and its loss report.

use std::collections::{BTreeMap, HashMap};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use tern_engine::cnc::CncFile;
use tern_engine::concurrent::counters::CountersReader;
use tern_engine::concurrent::error_log::read_errors;
use tern_engine::concurrent::ring_buffer::ManyToOneRingBuffer;
use tern_engine::driver::conductor::counter_types;

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

/// Arguments of `tern loss`.
#[derive(Debug, clap::Args)]
pub(crate) struct LossArgs {
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
        print_publications(counters);
        printed += 1;
        if !args.watch || (args.iterations > 0 && printed >= args.iterations) {
            return Ok(());
        }
        std::thread::sleep(Duration::from_millis(args.interval_ms));
        println!();
    }
}

/// What `tern stat` shows of one publication.
#[derive(Debug, Default)]
struct PublicationStat {
    description: String,
    position: i64,
    limit: i64,
    back_pressured: i64,
    not_connected: i64,
    /// (position, client id, image id) of each subscriber.
    subscribers: Vec<(i64, i64, i64)>,
}

/// Per publication: where publishers are, their limit, how often they were refused, and who
/// holds the limit — the subscriber furthest behind ("who is slow?").
fn print_publications(counters: CountersReader<'_>) {
    let mut publications: BTreeMap<i64, PublicationStat> = BTreeMap::new();
    let mut subscribers = Vec::new();
    counters.for_each(|info| {
        let stat = || PublicationStat::default();
        match info.type_id {
            counter_types::PUBLISHER_LIMIT => {
                let entry = publications
                    .entry(info.registration_id)
                    .or_insert_with(stat);
                entry.limit = info.value;
                entry.description = info
                    .label
                    .strip_prefix("pub-lmt: ")
                    .unwrap_or(info.label)
                    .to_owned();
            }
            counter_types::PUBLISHER_POSITION => {
                publications
                    .entry(info.registration_id)
                    .or_insert_with(stat)
                    .position = info.value;
            }
            counter_types::PUBLISHER_BACK_PRESSURED => {
                publications
                    .entry(info.registration_id)
                    .or_insert_with(stat)
                    .back_pressured = info.value;
            }
            counter_types::PUBLISHER_NOT_CONNECTED => {
                publications
                    .entry(info.registration_id)
                    .or_insert_with(stat)
                    .not_connected = info.value;
            }
            counter_types::SUBSCRIBER_POSITION => subscribers.push((
                info.reference_id,
                info.value,
                info.owner_id,
                info.registration_id,
            )),
            _ => {}
        }
    });
    for (publication, position, client, image) in subscribers {
        if let Some(stat) = publications.get_mut(&publication) {
            stat.subscribers.push((position, client, image));
        }
    }
    if publications.is_empty() {
        return;
    }
    println!("publications (registration id, session, stream, channel):");
    for stat in publications.values() {
        println!(
            "  {}: position {}, limit {}; offers refused: {} back-pressured, {} not connected",
            stat.description, stat.position, stat.limit, stat.back_pressured, stat.not_connected
        );
        match stat.subscribers.iter().min() {
            Some((position, client, image)) => println!(
                "    slowest of {} subscribers: client {client}, image {image} at {position}, \
                 {} behind{}",
                stat.subscribers.len(),
                stat.position.saturating_sub(*position),
                if stat.position >= stat.limit {
                    " (holding the publisher at its limit)"
                } else {
                    ""
                }
            ),
            None => println!("    no subscribers"),
        }
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

/// Prints the loss report: per stream and source, how often loss was seen and how much.
pub(crate) fn loss(args: &LossArgs) -> Result<()> {
    let dir = args.dir.resolve();
    println!(
        "{:>12} {:>14} {:>15} {:>15} {:>11} {:>8}  channel  source",
        "observations", "bytes lost", "first (ms)", "last (ms)", "session", "stream"
    );
    let count = tern_engine::loss_report::read(&dir, |entry| {
        println!(
            "{:>12} {:>14} {:>15} {:>15} {:>11} {:>8}  {}  {}",
            entry.observations,
            entry.bytes,
            entry.first_ms,
            entry.last_ms,
            entry.session_id,
            entry.stream_id,
            entry.channel,
            entry.source
        );
    })
    .with_context(|| format!("reading the loss report in {}", dir.display()))?;
    println!("{count} streams with loss (times in ms since the epoch)");
    Ok(())
}
