//! Replay merge against a busy live stream: a reader that starts at the beginning of a
//! recording while the publisher keeps publishing gets every message exactly once, in order,
//! at contiguous positions, first from the replay and then from the live stream; over IPC and
//! over UDP.

mod common;

use std::cell::RefCell;
use std::time::Instant;

use common::{DEADLINE, Node, wait_for};
use tern_archive::replay_merge::{MergeState, ReplayMerge};
use tern_engine::client::{FragmentAssembler, FragmentHeader, OfferResult};

const MESSAGES: u64 = 20_000;

fn merge_while_publishing(name: &str, live_channel: &str, stream_id: i32) {
    let node = Node::start(name, |_| {});
    let mut archive = node.archive_client();
    archive.start_recording(live_channel, stream_id).unwrap();
    let publication = node.tern.add_publication(live_channel, stream_id).unwrap();
    publication.wait_connected(DEADLINE).unwrap();
    let publisher = std::thread::spawn(move || {
        let deadline = Instant::now() + 3 * DEADLINE;
        for sequence in 0..MESSAGES {
            // Some messages span several frames.
            let length = if sequence % 97 == 0 {
                3000
            } else {
                8 + usize::try_from(sequence % 200).unwrap()
            };
            let mut message = vec![u8::try_from(sequence % 251).unwrap(); length];
            message[..8].copy_from_slice(&sequence.to_le_bytes());
            loop {
                match publication.offer(&message) {
                    OfferResult::Ok(_) => break,
                    OfferResult::BackPressured
                    | OfferResult::AdminAction
                    | OfferResult::NotConnected => {
                        assert!(Instant::now() < deadline, "publisher stuck");
                        std::thread::yield_now();
                    }
                    other => panic!("{other:?}"),
                }
            }
        }
        publication
    });
    // Start once the live stream is well ahead of the recording's start.
    wait_for("a recording with some history", || {
        archive
            .recording_position(0)
            .ok()
            .flatten()
            .is_some_and(|position| position > 256 * 1024)
    });
    let recording = archive.list_recording(0).unwrap();
    let mut merge = ReplayMerge::start(
        &node.tern,
        &mut archive,
        &recording,
        -1,
        live_channel,
        ("tern:ipc", stream_id + 1000),
        DEADLINE,
    )
    .unwrap();
    assert!(
        merge.join_position() > 0,
        "the live stream joined mid-stream"
    );
    let next = RefCell::new(0u64);
    let last_position = RefCell::new(0i64);
    let mut assembler = FragmentAssembler::new(|message: &[u8], header: &FragmentHeader| {
        let sequence = u64::from_le_bytes(message[..8].try_into().unwrap());
        assert_eq!(sequence, *next.borrow(), "no gap, no duplicate");
        *next.borrow_mut() += 1;
        assert!(header.position > *last_position.borrow());
        *last_position.borrow_mut() = header.position;
    });
    let mut switched_at = None;
    let deadline = Instant::now() + 3 * DEADLINE;
    while *next.borrow() < MESSAGES {
        let before = merge.state();
        let fragments = merge.poll(
            |fragment, header| assembler.on_fragment(fragment, header),
            64,
        );
        if before == MergeState::Replaying && merge.state() == MergeState::Live {
            switched_at = Some(*next.borrow());
        }
        assert!(
            Instant::now() < deadline,
            "merge stuck at {} of {MESSAGES}",
            next.borrow()
        );
        if fragments == 0 {
            std::thread::yield_now();
        }
    }
    let publication = publisher.join().unwrap();
    let switched_at = switched_at.expect("the merge moved from the replay to the live stream");
    assert!(
        switched_at > 0 && switched_at < MESSAGES,
        "switched after {switched_at} messages"
    );
    assert_eq!(merge.position(), publication.position());
    assert_eq!(assembler.dropped_messages(), 0);
}

#[test]
fn a_replay_merges_into_a_busy_ipc_stream_without_a_gap_or_a_duplicate() {
    merge_while_publishing("merge-ipc", "tern:ipc", 300);
}

#[test]
fn a_replay_merges_into_a_busy_udp_stream_without_a_gap_or_a_duplicate() {
    let port = std::net::UdpSocket::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    merge_while_publishing(
        "merge-udp",
        &format!("tern:udp?endpoint=127.0.0.1:{port}"),
        310,
    );
}
