//! The operator's view of one member, from its directory: `tern cluster describe`, `is-leader`,
//! `list-members` and `recording-log`, each `--dir DIR` (the member's directory).
//!
//! A running member names its media driver in `DIR/node-info`; its live state (role, term,
//! positions, elections, sessions) comes from its counters there. A member that is not running
//! is described from its files: its durable term and vote, its recording log and its log's
//! recording. Nothing here writes a member's files.

use std::path::PathBuf;

use anyhow::{Context, bail};
use tern_cluster::node::NodeInfo;
use tern_cluster::node::counters::{MemberStatus, read_status, role_name};
use tern_cluster::node_state::NodeState;
use tern_cluster::recording_log::{Record, RecordingLog};
use tern_engine::cnc::CncFile;
use tern_engine::concurrent::counters::CountersReader;

/// The member directory option.
#[derive(Debug, clap::Args)]
pub(crate) struct MemberDirArg {
    /// The member's directory (as given to `tern cluster node --dir`).
    #[arg(long)]
    dir: PathBuf,
}

/// The live status of the member in `dir`, when it runs.
fn live_status(info: &NodeInfo) -> Option<MemberStatus> {
    if !tern_engine::directory::process_exists(i64::from(info.pid)) {
        return None;
    }
    let cnc = CncFile::open(&info.driver_dir).ok()?;
    let sections = cnc.sections();
    let counters =
        CountersReader::new(sections.counters_metadata, sections.counters_values).ok()?;
    read_status(&counters, info.member_id)
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
    match live_status(&info) {
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
    let Some(status) = live_status(&info) else {
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
    let status = live_status(&info);
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
