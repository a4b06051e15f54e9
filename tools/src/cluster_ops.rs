//! The operator's view of one member, from its directory: `tern cluster describe`, `is-leader`,
//! `list-members`, `recording-log`, `recovery-plan` and `errors`, each `--dir DIR` (the
//! member's directory).
//!
//! A running member names its media driver in `DIR/node-info`; its live state (role, term,
//! positions, elections, sessions) comes from its counters there. A member that is not running
//! is described from its files: its durable term and vote, its recording log and its log's
//! recording. Nothing here writes a member's files.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use tern_cluster::node::NodeInfo;
use tern_cluster::node::counters::{MemberStatus, member_status, role_name};
use tern_cluster::node_state::NodeState;
use tern_cluster::recording_log::{Record, RecordingLog};

/// The member directory option.
#[derive(Debug, clap::Args)]
pub(crate) struct MemberDirArg {
    /// The member's directory (as given to `tern cluster node --dir`).
    #[arg(long)]
    dir: PathBuf,
}

/// The live status of the member in `dir`, when it runs.
fn live_status(dir: &std::path::Path, info: &NodeInfo) -> Option<MemberStatus> {
    member_status(dir, Some(info.pid)).map(|(_, status)| status)
}

fn leader_text(leader: i64) -> String {
    if leader < 0 {
        "none known".to_owned()
    } else {
        format!("member {leader}")
    }
}

pub(crate) fn describe(args: &MemberDirArg) -> anyhow::Result<()> {
    let info = NodeInfo::read(&args.dir).map_err(anyhow::Error::msg)?;
    println!("member {} of {}", info.member_id, info.members);
    match live_status(&args.dir, &info) {
        Some(status) => {
            println!(
                "running: pid {}, driver {}",
                info.pid,
                info.driver_dir.display()
            );
            println!(
                "role {} · term {} · leader {}",
                role_name(status.role),
                status.term,
                leader_text(status.leader)
            );
            println!(
                "log: appended {} · committed {} · applied {}",
                status.appended_position, status.commit_position, status.applied_position
            );
            println!(
                "state digest {:016x} at {}",
                status.state_digest.cast_unsigned(),
                status.applied_position
            );
            println!(
                "elections {} · sessions {} · bad consensus messages {} · failed sends {}",
                status.elections, status.sessions, status.bad_messages, status.failed_sends
            );
            let recovered = if status.recovered_from < 0 {
                "the log's start".to_owned()
            } else {
                format!("the snapshot at {}", status.recovered_from)
            };
            println!(
                "snapshots taken since start {} (failed {}) · installed from a leader {} · \
                 started from {recovered} · log floor {}",
                status.snapshots,
                status.snapshot_failures,
                status.snapshots_installed,
                status.log_floor
            );
        }
        None => {
            println!("not running (last pid {})", info.pid);
            let state = NodeState::open(&args.dir, info.member_id)
                .context("reading the member's term and vote")?
                .current();
            println!(
                "durable term {} · voted for {}",
                state.current_term,
                state
                    .voted_for
                    .map_or_else(|| "nobody".to_owned(), |member| format!("member {member}"))
            );
            let records = RecordingLog::read_records(&args.dir, info.member_id)
                .context("reading the recording log")?;
            let terms = records
                .iter()
                .filter(|record| matches!(record, Record::Term { .. }))
                .count();
            println!("recording log: {} records, {terms} terms", records.len());
            let catalog = tern_archive::catalog::Catalog::open_read_only(&args.dir.join("archive"))
                .context("reading the log's archive catalog")?;
            for descriptor in catalog.entries().filter_map(Result::ok) {
                if descriptor.channel == tern_cluster::member_log::LOG_CHANNEL {
                    println!(
                        "log: recording {} from {} to {} (the end is checked when the member starts)",
                        descriptor.recording_id,
                        descriptor.start_position,
                        descriptor.stop_position
                    );
                }
            }
        }
    }
    Ok(())
}

pub(crate) fn is_leader(args: &MemberDirArg) -> anyhow::Result<()> {
    let info = NodeInfo::read(&args.dir).map_err(anyhow::Error::msg)?;
    let Some(status) = live_status(&args.dir, &info) else {
        bail!("member {} is not running", info.member_id);
    };
    if role_name(status.role) == "leader" {
        println!("leader (member {}, term {})", info.member_id, status.term);
        return Ok(());
    }
    println!(
        "{} (member {}, term {}, leader {})",
        role_name(status.role),
        info.member_id,
        status.term,
        leader_text(status.leader)
    );
    std::process::exit(1);
}

pub(crate) fn list_members(args: &MemberDirArg) -> anyhow::Result<()> {
    let info = NodeInfo::read(&args.dir).map_err(anyhow::Error::msg)?;
    let status = live_status(&args.dir, &info);
    for id in 0..info.members.count() {
        let address = info.members.address(id);
        let mut notes = Vec::new();
        if id == info.member_id {
            notes.push("this member".to_owned());
        }
        if let Some(status) = status
            && status.leader == i64::from(id)
        {
            notes.push(format!("leader in term {}", status.term));
        }
        println!(
            "{id}  consensus {address}  ingress port {}  {}",
            address.port() + 1,
            notes.join(", ")
        );
    }
    if status.is_none() {
        println!(
            "(member {} is not running: the leader is not known here)",
            info.member_id
        );
    }
    Ok(())
}

pub(crate) fn recording_log(args: &MemberDirArg) -> anyhow::Result<()> {
    let info = NodeInfo::read(&args.dir).map_err(anyhow::Error::msg)?;
    let records = RecordingLog::read_records(&args.dir, info.member_id)
        .context("reading the recording log")?;
    for (index, record) in records.iter().enumerate() {
        match record {
            Record::Term { term, base } => println!("{index:>6}  term      {term} from {base}"),
            Record::Truncate { position } => println!("{index:>6}  truncate  at {position}"),
            Record::Snapshot(snapshot) => println!(
                "{index:>6}  snapshot  term {} at {} in recording {} (cluster time {} ns)",
                snapshot.term, snapshot.position, snapshot.recording_id, snapshot.timestamp_ns
            ),
        }
    }
    Ok(())
}

/// A piece of a log held in memory from `base`.
struct LogPiece {
    base: u64,
    bytes: Vec<u8>,
}

impl tern_cluster::consensus::LogView for LogPiece {
    fn read(&self, position: u64, max: u64) -> &[u8] {
        let Some(offset) = position
            .checked_sub(self.base)
            .and_then(|offset| usize::try_from(offset).ok())
        else {
            return &[];
        };
        if offset >= self.bytes.len() {
            return &[];
        }
        let end = self
            .bytes
            .len()
            .min(offset.saturating_add(usize::try_from(max).unwrap_or(usize::MAX)));
        &self.bytes[offset..end]
    }
}

/// Log bytes read, and applied, to measure the replay rate.
const REPLAY_SAMPLE_BYTES: u64 = 64 * 1024 * 1024;

pub(crate) fn recovery_plan(args: &MemberDirArg) -> anyhow::Result<()> {
    use tern_archive::catalog::Catalog;
    use tern_archive::segment_reader::{READ_BUFFER_MIN, SegmentReader};
    use tern_cluster::container::ServiceContainer;
    use tern_cluster::kv::KvStore;
    use tern_cluster::member_log::{LOG_CHANNEL, read_snapshot_in};

    let info = NodeInfo::read(&args.dir).map_err(anyhow::Error::msg)?;
    let records = RecordingLog::read_records(&args.dir, info.member_id)
        .context("reading the recording log")?;
    let archive_dir = args.dir.join("archive");
    let catalog =
        Catalog::open_read_only(&archive_dir).context("reading the log's archive catalog")?;
    let log = catalog
        .entries()
        .filter_map(Result::ok)
        .find(|descriptor| descriptor.channel == LOG_CHANNEL)
        .context("the archive holds no log recording")?;
    let log_start = u64::try_from(log.start_position)?;
    let log_end = u64::try_from(log.stop_position)?;
    println!(
        "member {}: log recording {} holds {log_start} to {log_end} ({:.1} MiB)",
        info.member_id,
        log.recording_id,
        (log_end - log_start) as f64 / 1_048_576.0
    );
    let interval = 1024 * 1024;
    let mut chosen = None;
    for record in records.iter().rev() {
        let Record::Snapshot(snapshot) = record else {
            continue;
        };
        if snapshot.position > log_end {
            println!(
                "snapshot at {} (recording {}): past the log's end, skipped",
                snapshot.position, snapshot.recording_id
            );
            continue;
        }
        let started = Instant::now();
        let loaded = read_snapshot_in(&archive_dir, &catalog, snapshot.recording_id)
            .map_err(|error| error.to_string())
            .and_then(|bytes| {
                let length = bytes.len();
                ServiceContainer::from_snapshot(KvStore::default(), interval, &bytes)
                    .map(|container| (container, length))
                    .map_err(|error| error.to_string())
            });
        match loaded {
            Ok((container, length)) if container.applied_position() == snapshot.position => {
                let load = started.elapsed();
                println!(
                    "snapshot at {} (recording {}, term {}, {:.1} MiB): loads in {:.1} ms",
                    snapshot.position,
                    snapshot.recording_id,
                    snapshot.term,
                    length as f64 / 1_048_576.0,
                    load.as_secs_f64() * 1000.0
                );
                chosen = Some((snapshot.position, container, load));
                break;
            }
            Ok(_) => println!(
                "snapshot at {} (recording {}): covers another position, skipped",
                snapshot.position, snapshot.recording_id
            ),
            Err(error) => println!(
                "snapshot at {} (recording {}): {error}: skipped for the one before",
                snapshot.position, snapshot.recording_id
            ),
        }
    }
    let (from, mut container, load) = match chosen {
        Some(chosen) => chosen,
        None if log_start == 0 => {
            println!("no snapshot: the whole log replays");
            (
                0,
                ServiceContainer::new(KvStore::default(), interval),
                Duration::ZERO,
            )
        }
        None => bail!(
            "no usable snapshot and the log starts at {log_start}: this member cannot recover alone"
        ),
    };
    // Measure the replay rate on a sample of the log after the snapshot: read whole blocks
    // (so the sample ends on an entry boundary) until the sample is large enough, and apply
    // them. The read stops early where the recorded stop claims more than the files hold (a
    // member that stopped without syncing); the member's own start-up scan finds that end.
    let started = Instant::now();
    let mut piece = LogPiece {
        base: from,
        bytes: Vec::new(),
    };
    if log_end > from {
        let mut reader = SegmentReader::new(
            &archive_dir,
            &log,
            i64::try_from(from)?,
            READ_BUFFER_MIN * 4,
        )?;
        while u64::try_from(piece.bytes.len())? < REPLAY_SAMPLE_BYTES {
            let block = match reader.read(i64::try_from(log_end)?) {
                Ok(Some(block)) => block,
                Ok(None) => break,
                Err(error) => {
                    println!(
                        "the log reads only up to {}: {error}",
                        from + u64::try_from(piece.bytes.len())?
                    );
                    break;
                }
            };
            let offset = usize::try_from(u64::try_from(block.position)? - from)?;
            let next = usize::try_from(u64::try_from(block.next_position)? - from)?;
            piece.bytes.resize(offset, 0);
            piece.bytes.extend_from_slice(block.bytes);
            piece.bytes.resize(next, 0);
            let next_position = block.next_position;
            reader.advance_to(next_position);
        }
        let sample_end = from + u64::try_from(piece.bytes.len())?;
        while container.applied_position() < sample_end {
            if container.apply(&piece, sample_end)? == 0 {
                break;
            }
        }
    }
    let replay = started.elapsed();
    let sampled = container.applied_position() - from;
    let rate = if sampled > 0 {
        sampled as f64 / replay.as_secs_f64()
    } else {
        0.0
    };
    let to_replay = log_end - from;
    let estimate = load.as_secs_f64()
        + if rate > 0.0 {
            to_replay as f64 / rate
        } else {
            0.0
        };
    println!(
        "replay: {:.1} MiB from {from} to {log_end}, at {:.0} MiB/s (measured on {:.1} MiB here)",
        to_replay as f64 / 1_048_576.0,
        rate / 1_048_576.0,
        sampled as f64 / 1_048_576.0
    );
    println!(
        "estimated recovery time: {:.0} ms (snapshot load + replay; the election and catching up with the leader come after)",
        estimate * 1000.0
    );
    Ok(())
}

pub(crate) fn errors(args: &MemberDirArg) -> anyhow::Result<()> {
    let count = tern_cluster::node::error_file::read(&args.dir, |error| {
        println!(
            "{} observations from {} to {} (ms since the epoch): {}",
            error.count, error.first_observation_ms, error.last_observation_ms, error.text
        );
    })
    .with_context(|| format!("reading the error log in {}", args.dir.display()))?;
    println!("{count} distinct errors");
    Ok(())
}
