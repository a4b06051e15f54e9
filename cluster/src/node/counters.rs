//! A member's counters, in its media driver's counters file: `tern stat --dir DRIVER_DIR` shows
//! them, and `tern cluster describe` reads them back by type id and member id.
//!
//! Each counter's type id is one of the constants here (1300 to 1315: a client's counters take
//! type ids from 1000, the driver raises lower ones) and its key is the member id (4 bytes,
//! little-endian). The member agent sets them once per duty cycle that did work; each is a
//! single writer's plain store, read by other processes at any time.

use std::path::Path;

use tern_engine::client::{ClientError, Tern, UserCounter};
use tern_engine::cnc::CncFile;
use tern_engine::concurrent::counters::CountersReader;

use super::NodeInfo;

use crate::consensus::Role;

/// The member's role: 0 follower, 1 canvass, 2 nominate, 3 candidate, 4 leader.
pub const ROLE: i32 = 1300;
/// The current term.
pub const TERM: i32 = 1301;
/// The leader this member follows (itself when leading), or -1.
pub const LEADER: i32 = 1302;
/// The commit position.
pub const COMMIT_POSITION: i32 = 1303;
/// The end of the local log.
pub const APPENDED_POSITION: i32 = 1304;
/// How far the service has applied the log.
pub const APPLIED_POSITION: i32 = 1305;
/// Elections this member has started or joined (times it began to canvass).
pub const ELECTIONS: i32 = 1306;
/// Client sessions this member holds an egress for.
pub const SESSIONS: i32 = 1307;
/// Consensus messages refused (malformed, or from no member).
pub const BAD_MESSAGES: i32 = 1308;
/// Sends that failed (back-pressure, a member not connected).
pub const FAILED_SENDS: i32 = 1309;
/// The replicated state's digest at the applied position (service, sessions and timers): equal
/// on every member that applied the same log.
pub const STATE_DIGEST: i32 = 1310;
/// Snapshots this member has recorded since it started.
pub const SNAPSHOTS: i32 = 1311;
/// The position of the snapshot this member's state started from, at start-up or installed from
/// a leader since (-1: none, it replayed the log from its start).
pub const RECOVERED_FROM: i32 = 1312;
/// The log floor: below it every member may purge its log (`Consensus::log_floor`). It stays low
/// while a member is down, which is what keeps the others' logs for it.
pub const LOG_FLOOR: i32 = 1313;
/// Snapshots this member could not record or retain since it started.
pub const SNAPSHOT_FAILURES: i32 = 1314;
/// Leaders' snapshots this member installed since it started (its log ended below a leader's
/// log start).
pub const SNAPSHOTS_INSTALLED: i32 = 1315;

const KINDS: [(i32, &str); 16] = [
    (
        ROLE,
        "role (0 follower, 1 canvass, 2 nominate, 3 candidate, 4 leader)",
    ),
    (TERM, "term"),
    (LEADER, "leader"),
    (COMMIT_POSITION, "commit position"),
    (APPENDED_POSITION, "appended position"),
    (APPLIED_POSITION, "applied position"),
    (ELECTIONS, "elections"),
    (SESSIONS, "sessions"),
    (BAD_MESSAGES, "bad consensus messages"),
    (FAILED_SENDS, "failed sends"),
    (STATE_DIGEST, "state digest"),
    (SNAPSHOTS, "snapshots taken"),
    (RECOVERED_FROM, "recovered from snapshot at"),
    (LOG_FLOOR, "log floor"),
    (SNAPSHOT_FAILURES, "snapshot failures"),
    (SNAPSHOTS_INSTALLED, "snapshots installed from a leader"),
];

/// The code of a role in the [`ROLE`] counter.
pub fn role_code(role: Role) -> i64 {
    match role {
        Role::Follower => 0,
        Role::Canvass => 1,
        Role::Nominate => 2,
        Role::Candidate => 3,
        Role::Leader => 4,
    }
}

/// The name of a [`ROLE`] counter's value.
pub fn role_name(code: i64) -> &'static str {
    match code {
        0 => "follower",
        1 => "canvass",
        2 => "nominate",
        3 => "candidate",
        4 => "leader",
        _ => "unknown",
    }
}

/// The member's counters, owned by its agent.
pub(crate) struct MemberCounters {
    counters: Vec<UserCounter>,
}

impl MemberCounters {
    /// Adds member `member_id`'s counters through `tern`.
    pub(crate) fn add(tern: &Tern, member_id: u32) -> Result<Self, ClientError> {
        let key = member_id.to_le_bytes();
        let counters = KINDS
            .iter()
            .map(|&(type_id, name)| {
                tern.add_counter(
                    type_id,
                    &key,
                    &format!("cluster {name}: member {member_id}"),
                )
            })
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Self { counters })
    }

    /// Sets the counter of `type_id`, one of this module's constants.
    pub(crate) fn set(&self, type_id: i32, value: i64) {
        let index = usize::try_from(type_id - ROLE).expect("a cluster counter");
        self.counters[index].set(value);
    }
}

/// What a member's counters say.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct MemberStatus {
    /// [`ROLE`]'s value.
    pub role: i64,
    /// [`TERM`]'s.
    pub term: i64,
    /// [`LEADER`]'s.
    pub leader: i64,
    /// [`COMMIT_POSITION`]'s.
    pub commit_position: i64,
    /// [`APPENDED_POSITION`]'s.
    pub appended_position: i64,
    /// [`APPLIED_POSITION`]'s.
    pub applied_position: i64,
    /// [`ELECTIONS`]'s.
    pub elections: i64,
    /// [`SESSIONS`]'s.
    pub sessions: i64,
    /// [`BAD_MESSAGES`]'s.
    pub bad_messages: i64,
    /// [`FAILED_SENDS`]'s.
    pub failed_sends: i64,
    /// [`STATE_DIGEST`]'s.
    pub state_digest: i64,
    /// [`SNAPSHOTS`]'s.
    pub snapshots: i64,
    /// [`RECOVERED_FROM`]'s.
    pub recovered_from: i64,
    /// [`LOG_FLOOR`]'s.
    pub log_floor: i64,
    /// [`SNAPSHOT_FAILURES`]'s.
    pub snapshot_failures: i64,
    /// [`SNAPSHOTS_INSTALLED`]'s.
    pub snapshots_installed: i64,
}

/// Reads member `member_id`'s counters from a driver's counters; `None` when it has none there.
pub fn read_status(counters: &CountersReader<'_>, member_id: u32) -> Option<MemberStatus> {
    let key = member_id.to_le_bytes();
    let mut status = MemberStatus::default();
    let mut found = 0;
    counters.for_each(|info| {
        if info.key[..4] != key {
            return;
        }
        let slot = match info.type_id {
            ROLE => &mut status.role,
            TERM => &mut status.term,
            LEADER => &mut status.leader,
            COMMIT_POSITION => &mut status.commit_position,
            APPENDED_POSITION => &mut status.appended_position,
            APPLIED_POSITION => &mut status.applied_position,
            ELECTIONS => &mut status.elections,
            SESSIONS => &mut status.sessions,
            BAD_MESSAGES => &mut status.bad_messages,
            FAILED_SENDS => &mut status.failed_sends,
            STATE_DIGEST => &mut status.state_digest,
            SNAPSHOTS => &mut status.snapshots,
            RECOVERED_FROM => &mut status.recovered_from,
            LOG_FLOOR => &mut status.log_floor,
            SNAPSHOT_FAILURES => &mut status.snapshot_failures,
            SNAPSHOTS_INSTALLED => &mut status.snapshots_installed,
            _ => return,
        };
        *slot = info.value;
        found += 1;
    });
    (found == KINDS.len()).then_some(status)
}

/// What the member whose directory is `dir` says through its counters, while it runs: its
/// node-info names it and its driver. `None` when it does not run (its process is gone, or is
/// not `pid` when one is given) or its driver shows no counters of it.
pub fn member_status(dir: &Path, pid: Option<u32>) -> Option<(NodeInfo, MemberStatus)> {
    let info = NodeInfo::read(dir).ok()?;
    if pid.is_some_and(|pid| pid != info.pid)
        || !tern_engine::directory::process_exists(i64::from(info.pid))
    {
        return None;
    }
    let cnc = CncFile::open(&info.driver_dir).ok()?;
    let sections = cnc.sections();
    let counters =
        CountersReader::new(sections.counters_metadata, sections.counters_values).ok()?;
    let status = read_status(&counters, info.member_id)?;
    Some((info, status))
}
