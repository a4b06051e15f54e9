//! Retention without surprises: segments are detached, deleted or purged below a position only
//! when no replay reads there; the catalog, the files and replays agree afterwards; detached
//! segments still on disk can be attached again. Several replays of one recording run at once.

mod common;

use common::{DEADLINE, Node, messages, receive, wait_for};
use tern_archive::client::ArchiveClientError;
use tern_archive::control_protocol::ResponseCode;
use tern_archive::segment::segment_file_name;
use tern_engine::client::OfferResult;

const SEGMENT: i64 = 128 * 1024;

fn code(error: ArchiveClientError) -> ResponseCode {
    match error {
        ArchiveClientError::Archive { code, .. } => code,
        other => panic!("{other}"),
    }
}

#[test]
fn segments_go_only_when_no_replay_needs_them_and_come_back_while_on_disk() {
    let node = Node::start("retention", |_| {});
    let mut archive = node.archive_client();
    archive.start_recording("tern:ipc", 900).unwrap();
    let publication = node.tern.add_publication("tern:ipc", 900).unwrap();
    publication.wait_connected(DEADLINE).unwrap();
    let sent = messages(800, 9);
    let mut positions = Vec::new();
    for message in &sent {
        loop {
            match publication.offer(message) {
                OfferResult::Ok(position) => {
                    positions.push(position);
                    break;
                }
                _ => std::thread::yield_now(),
            }
        }
    }
    let stop = *positions.last().unwrap();
    assert!(stop > 4 * SEGMENT);
    wait_for("recording", || {
        archive.recording_position(0).ok().flatten() == Some(stop)
    });
    archive.stop_recording("tern:ipc", 900).unwrap();
    let dir = node.archive_dir.path();
    let exists = |base: i64| dir.join(segment_file_name(0, base)).exists();

    // Not a segment boundary, at or below the start, past the last segment: refused.
    assert_eq!(
        code(archive.detach_segments(0, SEGMENT + 32).unwrap_err()),
        ResponseCode::InvalidPosition
    );
    assert_eq!(
        code(archive.detach_segments(0, 0).unwrap_err()),
        ResponseCode::InvalidPosition
    );
    assert_eq!(
        code(archive.detach_segments(0, 64 * SEGMENT).unwrap_err()),
        ResponseCode::InvalidPosition
    );

    // A replay that reads from the start holds the segments it needs: detaching is refused.
    // (It waits for a subscriber that never comes, so it is still reading the first segment.)
    archive.replay(0, -1, -1, "tern:ipc", 901).unwrap();
    assert_eq!(
        code(archive.purge_segments(0, 2 * SEGMENT).unwrap_err()),
        ResponseCode::InUse
    );
    assert_eq!(
        code(archive.purge_recording(0).unwrap_err()),
        ResponseCode::InUse
    );
    assert_eq!(
        code(archive.truncate_recording(0, positions[10]).unwrap_err()),
        ResponseCode::InUse
    );
    wait_for("the unwatched replay to give up", || {
        archive.detach_segments(0, 2 * SEGMENT).is_ok()
    });

    // Detached: the start moved, the files stay, a replay from below the start is refused.
    assert_eq!(
        archive.list_recording(0).unwrap().start_position,
        2 * SEGMENT
    );
    assert!(exists(0) && exists(SEGMENT));
    assert_eq!(
        code(archive.replay(0, 0, -1, "tern:ipc", 902).unwrap_err()),
        ResponseCode::InvalidPosition
    );
    // Attached again: the files were still there.
    assert_eq!(archive.attach_segments(0).unwrap(), 0);
    assert_eq!(archive.list_recording(0).unwrap().start_position, 0);
    // Detached and deleted.
    assert_eq!(
        archive.detach_segments(0, 2 * SEGMENT).unwrap(),
        2 * SEGMENT
    );
    assert_eq!(archive.delete_detached_segments(0).unwrap(), 2);
    assert!(!exists(0) && !exists(SEGMENT) && exists(2 * SEGMENT));
    assert_eq!(
        archive.attach_segments(0).unwrap(),
        2 * SEGMENT,
        "nothing left to attach"
    );
    // Purged in one step, further up.
    assert_eq!(archive.purge_segments(0, 3 * SEGMENT).unwrap(), 3 * SEGMENT);
    assert!(!exists(2 * SEGMENT));

    // What is left replays from the new start, to two subscribers at once.
    let first = positions.iter().position(|&end| end > 3 * SEGMENT).unwrap();
    // The first whole message at or after the new start begins a replay there.
    let from = positions[first];
    let expected: Vec<(i64, Vec<u8>)> = positions[first + 1..]
        .iter()
        .copied()
        .zip(sent[first + 1..].iter().cloned())
        .collect();
    let mut one = node.tern.add_subscription("tern:ipc", 903).unwrap();
    let mut two = node.tern.add_subscription("tern:ipc", 904).unwrap();
    archive.replay(0, from, -1, "tern:ipc", 903).unwrap();
    archive.replay(0, from, -1, "tern:ipc", 904).unwrap();
    assert_eq!(receive(&mut one, expected.len()), expected);
    assert_eq!(receive(&mut two, expected.len()), expected);
    let listed = archive.list_recording(0).unwrap();
    assert_eq!(
        (listed.start_position, listed.stop_position),
        (3 * SEGMENT, stop)
    );
}
