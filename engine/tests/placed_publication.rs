//! Streams written back whole: an image read in blocks (`Image::block_poll`), and an exclusive
//! publication placed at a position (`init-term-id`, `term-id`, `term-offset`) that takes those
//! blocks (`ExclusivePublication::offer_block`) and yields the same fragments at the same
//! positions, as an archive replay needs. Blocks that do not belong where they are offered are
//! refused whole.
#![cfg(not(loom))]

use std::time::{Duration, Instant};

use tern_engine::client::{
    BlockError, ClientConfig, ExclusivePublication, OfferResult, Subscription, Tern,
};
use tern_engine::driver::{DriverConfig, MediaDriver};

const DEADLINE: Duration = Duration::from_secs(10);
const TERM_LENGTH: usize = 64 * 1024;

fn driver(name: &str) -> MediaDriver {
    let mut config = DriverConfig {
        dir: std::env::temp_dir().join(format!("tern-test-placed-{name}-{}", std::process::id())),
        ..DriverConfig::default()
    };
    config.ipc_term_length = 64 * 1024;
    config.publication_linger = Duration::from_millis(50);
    MediaDriver::launch(config).unwrap()
}

fn client(driver: &MediaDriver) -> Tern {
    Tern::connect(ClientConfig {
        dir: driver.dir().to_path_buf(),
        ..ClientConfig::default()
    })
    .unwrap()
}

/// (position after, flags, payload) of every DATA frame in `blocks` from `from` on.
fn frames_of(blocks: &[(i64, Vec<u8>, usize)], from: i64) -> Vec<(i64, u8, Vec<u8>)> {
    let mut frames = Vec::new();
    for (position, block, _) in blocks.iter().filter(|(position, ..)| *position >= from) {
        let mut offset = 0;
        while offset < block.len() {
            let length = usize::try_from(i32::from_le_bytes(
                block[offset..offset + 4].try_into().unwrap(),
            ))
            .unwrap();
            let aligned = length.next_multiple_of(32);
            if block[offset + 6] == 1 {
                let end = position + i64::try_from(offset + aligned).unwrap();
                frames.push((
                    end,
                    block[offset + 5],
                    block[offset + 32..offset + length].to_vec(),
                ));
            }
            offset += aligned;
        }
    }
    frames
}

fn offer_block(publication: &mut ExclusivePublication, block: &[u8], reader: &mut Reader) -> i64 {
    let deadline = Instant::now() + DEADLINE;
    loop {
        match publication.offer_block(block).unwrap() {
            OfferResult::Ok(position) => return position,
            OfferResult::BackPressured | OfferResult::NotConnected | OfferResult::AdminAction => {
                reader.poll();
                assert!(Instant::now() < deadline, "offer_block stuck");
            }
            other => panic!("{other:?}"),
        }
    }
}

struct Reader {
    subscription: Subscription,
    frames: Vec<(i64, u8, Vec<u8>)>,
}

impl Reader {
    fn poll(&mut self) -> usize {
        let frames = &mut self.frames;
        self.subscription.poll(
            |payload, header| frames.push((header.position, header.flags, payload.to_vec())),
            64,
        )
    }
}

#[test]
fn blocks_read_from_an_image_replay_at_their_original_positions() {
    let driver = driver("replay");
    let tern = client(&driver);
    let mut original = tern.add_subscription("tern:ipc", 1).unwrap();
    let publication = tern.add_publication("tern:ipc", 1).unwrap();
    publication.wait_connected(DEADLINE).unwrap();
    let mut blocks: Vec<(i64, Vec<u8>, usize)> = Vec::new();
    let (mut initial_term_id, mut read_to) = (0, 0);
    let deadline = Instant::now() + DEADLINE;
    for index in 0..400usize {
        let message = vec![u8::try_from(index % 251).unwrap(); (index * 389) % 4000];
        while !publication.offer(&message).is_ok() {
            assert!(Instant::now() < deadline);
        }
        let image = &mut original.images_mut()[0];
        initial_term_id = image.initial_term_id();
        assert!(image.is_tethered());
        while image.block_poll(
            |block, position, extent| {
                assert!(extent >= block.len());
                blocks.push((position, block.to_vec(), extent));
            },
            8192,
        ) > 0
        {}
        read_to = image.position();
    }
    assert_eq!(
        blocks
            .last()
            .map(|(position, _, extent)| position + i64::try_from(*extent).unwrap()),
        Some(read_to)
    );
    assert!(
        read_to > 8 * i64::try_from(TERM_LENGTH).unwrap(),
        "the stream spans many terms"
    );
    // Blocks are contiguous and never cross a term; a PAD ends one, lent as its header.
    for pair in blocks.windows(2) {
        assert_eq!(pair[0].0 + i64::try_from(pair[0].2).unwrap(), pair[1].0);
    }
    let mut pads = 0;
    for (position, block, extent) in &blocks {
        let term_offset = usize::try_from(position % i64::try_from(TERM_LENGTH).unwrap()).unwrap();
        assert!(term_offset + extent <= TERM_LENGTH);
        if *extent > block.len() {
            assert_eq!(block[block.len() - 32 + 6], 0, "only a PAD is lent shorter");
            pads += 1;
        }
    }
    assert!(pads > 0, "the stream padded some terms");

    // Replay from a block in the third term, into stream 2, at the same positions.
    let start = blocks
        .iter()
        .map(|(position, ..)| *position)
        .find(|position| *position > 2 * i64::try_from(TERM_LENGTH).unwrap() + 1000)
        .unwrap();
    let term_length = i64::try_from(TERM_LENGTH).unwrap();
    let term_id = initial_term_id.wrapping_add(i32::try_from(start / term_length).unwrap());
    let channel = format!(
        "tern:ipc?term-length=64k|init-term-id={initial_term_id}|term-id={term_id}|term-offset={}",
        start % term_length
    );
    let mut reader = Reader {
        subscription: tern.add_subscription("tern:ipc", 2).unwrap(),
        frames: Vec::new(),
    };
    let mut replay = tern.add_exclusive_publication(&channel, 2).unwrap();
    assert_eq!(replay.position(), start);
    for (position, block, extent) in blocks.iter().filter(|(position, ..)| *position >= start) {
        let end = offer_block(&mut replay, block, &mut reader);
        assert_eq!(end, position + i64::try_from(*extent).unwrap());
    }
    let expected = frames_of(&blocks, start);
    let deadline = Instant::now() + DEADLINE;
    while reader.frames.len() < expected.len() {
        reader.poll();
        assert!(
            Instant::now() < deadline,
            "{} of {}",
            reader.frames.len(),
            expected.len()
        );
    }
    assert_eq!(reader.frames, expected);
    assert_eq!(reader.subscription.images()[0].position(), read_to);
}

#[test]
fn blocks_that_do_not_belong_where_they_are_offered_are_refused_whole() {
    let driver = driver("refused");
    let tern = client(&driver);
    let mut subscription = tern.add_subscription("tern:ipc", 3).unwrap();
    let mut replay = tern
        .add_exclusive_publication(
            "tern:ipc?term-length=64k|init-term-id=10|term-id=12|term-offset=4096",
            3,
        )
        .unwrap();
    let start = 2 * i64::try_from(TERM_LENGTH).unwrap() + 4096;
    assert_eq!(replay.position(), start);
    let frame = |term_id: i32, term_offset: i32, length: i32, frame_type: u8| {
        let mut bytes = vec![0u8; usize::try_from(length).unwrap().next_multiple_of(32)];
        bytes[..4].copy_from_slice(&length.to_le_bytes());
        bytes[5] = 0xC0;
        bytes[6] = frame_type;
        bytes[8..12].copy_from_slice(&term_offset.to_le_bytes());
        bytes[20..24].copy_from_slice(&term_id.to_le_bytes());
        bytes
    };
    type Case = (Vec<u8>, fn(&BlockError) -> bool);
    let cases: Vec<Case> = vec![
        (Vec::new(), |error| matches!(error, BlockError::Length(0))),
        (frame(12, 4096, 40, 1)[..40].to_vec(), |error| {
            matches!(error, BlockError::Length(40))
        }),
        (frame(11, 4096, 64, 1), |error| {
            matches!(error, BlockError::Misplaced { term_id: 11, .. })
        }),
        (frame(12, 0, 64, 1), |error| {
            matches!(error, BlockError::Misplaced { term_offset: 0, .. })
        }),
        (frame(12, 4096, 100, 1)[..64].to_vec(), |error| {
            matches!(error, BlockError::FrameLength { .. })
        }),
        (frame(12, 4096, 8, 1), |error| {
            matches!(error, BlockError::FrameLength { length: 8, .. })
        }),
        (frame(12, 4096, 64, 7), |error| {
            matches!(error, BlockError::Frame { frame_type: 7, .. })
        }),
        // A PAD that runs past the term's end.
        (
            frame(12, 4096, i32::try_from(TERM_LENGTH - 4096 + 32).unwrap(), 0)[..32].to_vec(),
            |error| matches!(error, BlockError::FrameLength { .. }),
        ),
    ];
    for (block, expected) in cases {
        let error = replay.offer_block(&block).unwrap_err();
        assert!(expected(&error), "{error}");
        assert_eq!(replay.position(), start, "nothing was written");
    }
    // A PAD inside the term (over a claim the original's driver unblocked) is taken, then a
    // PAD to the term's end, and the next term begins.
    let mid = frame(12, 4096, 256, 0);
    let deadline = Instant::now() + DEADLINE;
    loop {
        match replay.offer_block(&mid[..32]).unwrap() {
            OfferResult::Ok(end) => {
                assert_eq!(end, start + 256);
                break;
            }
            OfferResult::NotConnected | OfferResult::BackPressured => {
                assert!(Instant::now() < deadline);
            }
            other => panic!("{other:?}"),
        }
    }
    let pad = frame(12, 4352, i32::try_from(TERM_LENGTH - 4352).unwrap(), 0);
    loop {
        match replay.offer_block(&pad[..32]).unwrap() {
            OfferResult::Ok(end) => {
                assert_eq!(end, 3 * i64::try_from(TERM_LENGTH).unwrap());
                break;
            }
            OfferResult::NotConnected | OfferResult::BackPressured => {
                assert!(Instant::now() < deadline);
            }
            other => panic!("{other:?}"),
        }
    }
    let next = frame(13, 0, 64, 1);
    let deadline = Instant::now() + DEADLINE;
    let mut delivered = Vec::new();
    loop {
        subscription.poll(
            |payload, header| delivered.push((header.position, payload.len())),
            8,
        );
        match replay.offer_block(&next).unwrap() {
            OfferResult::Ok(end) => {
                assert_eq!(end, 3 * i64::try_from(TERM_LENGTH).unwrap() + 64);
                break;
            }
            OfferResult::BackPressured => assert!(Instant::now() < deadline),
            other => panic!("{other:?}"),
        }
    }
    while delivered.is_empty() {
        subscription.poll(
            |payload, header| delivered.push((header.position, payload.len())),
            8,
        );
        assert!(Instant::now() < deadline);
    }
    assert_eq!(
        delivered,
        [(3 * i64::try_from(TERM_LENGTH).unwrap() + 64, 32)]
    );
}

#[test]
fn placement_is_for_exclusive_publications_and_all_three_parameters_together() {
    let driver = driver("placement");
    let tern = client(&driver);
    let shared = tern.add_publication("tern:ipc?init-term-id=1|term-id=1|term-offset=0", 4);
    assert!(shared.unwrap_err().to_string().contains("exclusive"));
    for channel in [
        "tern:ipc?init-term-id=1|term-id=2",
        "tern:ipc?init-term-id=1|term-id=2|term-offset=33",
        "tern:ipc?init-term-id=5|term-id=2|term-offset=0",
        "tern:ipc?term-length=64k|init-term-id=1|term-id=2|term-offset=65536",
    ] {
        let error = tern.add_exclusive_publication(channel, 4).unwrap_err();
        assert!(error.to_string().contains("term"), "{channel}: {error}");
    }
}
