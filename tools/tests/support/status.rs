//! A running member's counters, read from the driver its directory names.

use std::path::Path;

use tern_cluster::node::NodeInfo;
use tern_cluster::node::counters::{MemberStatus, read_status};
use tern_engine::cnc::CncFile;
use tern_engine::concurrent::counters::CountersReader;

/// What member `member`'s counters say, when the process `pid` (if given) wrote `dir`'s
/// node-info and its driver serves.
pub(crate) fn member_status(dir: &Path, member: u32, pid: Option<u32>) -> Option<MemberStatus> {
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
    read_status(&counters, member)
}
