//! Four publications, two concurrent (sharing one log, each appending by atomic add from its
//! own thread) and two exclusive (a log each), of a million messages each to two subscribers
//! over `tern:ipc`, crossing several term rotations:
//! every subscriber sees every message exactly once, in order per publication, with its checksum
//! intact. `TERN_STRESS_MESSAGES` lowers the count for a quick local run.
#![cfg(not(loom))]

use std::sync::Arc;
use std::time::{Duration, Instant};

use tern_engine::client::{ClientConfig, ExclusivePublication, OfferResult, Publication, Tern};
use tern_engine::driver::{DriverConfig, MediaDriver};

const PUBLISHERS: u32 = 4;
const SUBSCRIBERS: usize = 2;

fn checksum(publisher: u32, sequence: u32) -> u64 {
    let mut hash = 0xcbf2_9ce4_8422_2325_u64;
    for byte in publisher
        .to_le_bytes()
        .into_iter()
        .chain(sequence.to_le_bytes())
    {
        hash = (hash ^ u64::from(byte)).wrapping_mul(0x0100_0000_01b3);
    }
    hash
}

fn message(publisher: u32, sequence: u32) -> [u8; 24] {
    let mut body = [0u8; 24];
    body[..4].copy_from_slice(&publisher.to_le_bytes());
    body[4..8].copy_from_slice(&sequence.to_le_bytes());
    body[8..16].copy_from_slice(&checksum(publisher, sequence).to_le_bytes());
    body[16..].copy_from_slice(&u64::from(sequence).rotate_left(17).to_le_bytes());
    body
}

/// Either kind of publication.
enum AnyPublication {
    Concurrent(Publication),
    Exclusive(ExclusivePublication),
}

impl AnyPublication {
    fn offer(&mut self, message: &[u8]) -> OfferResult {
        match self {
            Self::Concurrent(publication) => publication.offer(message),
            Self::Exclusive(publication) => publication.offer(message),
        }
    }

    fn session_id(&self) -> i32 {
        match self {
            Self::Concurrent(publication) => publication.session_id(),
            Self::Exclusive(publication) => publication.session_id(),
        }
    }

    fn wait_connected(&self, timeout: Duration) {
        match self {
            Self::Concurrent(publication) => publication.wait_connected(timeout).unwrap(),
            Self::Exclusive(publication) => publication.wait_connected(timeout).unwrap(),
        }
    }
}

#[test]
fn four_publications_two_subscribers_exactly_once_in_order() {
    let messages: u32 = std::env::var("TERN_STRESS_MESSAGES")
        .ok()
        .and_then(|count| count.parse().ok())
        .unwrap_or(1_000_000);
    let dir = std::env::temp_dir().join(format!("tern-test-stress-{}", std::process::id()));
    let driver = MediaDriver::launch(DriverConfig {
        dir,
        ..DriverConfig::default()
    })
    .unwrap();
    let tern = Arc::new(
        Tern::connect(ClientConfig {
            dir: driver.dir().to_path_buf(),
            ..ClientConfig::default()
        })
        .unwrap(),
    );
    let mut subscriptions: Vec<_> = (0..SUBSCRIBERS)
        .map(|_| tern.add_subscription("tern:ipc", 30).unwrap())
        .collect();
    let publications: Vec<_> = (0..PUBLISHERS)
        .map(|index| {
            if index < 2 {
                AnyPublication::Concurrent(tern.add_publication("tern:ipc", 30).unwrap())
            } else {
                AnyPublication::Exclusive(tern.add_exclusive_publication("tern:ipc", 30).unwrap())
            }
        })
        .collect();
    for publication in &publications {
        publication.wait_connected(Duration::from_secs(10));
    }
    let sessions: Vec<i32> = publications
        .iter()
        .map(|publication| publication.session_id())
        .collect();
    let deadline = Instant::now() + Duration::from_secs(300);
    let readers: Vec<_> = subscriptions
        .drain(..)
        .map(|mut subscription| {
            let sessions = sessions.clone();
            std::thread::spawn(move || {
                let mut next = vec![0u32; sessions.len()];
                let total = u64::from(messages) * u64::from(PUBLISHERS);
                let mut seen = 0u64;
                while seen < total {
                    let read = subscription.poll(
                        |body, header| {
                            let publisher = u32::from_le_bytes(body[..4].try_into().unwrap());
                            let sequence = u32::from_le_bytes(body[4..8].try_into().unwrap());
                            let index = usize::try_from(publisher).unwrap();
                            assert_eq!(header.session_id, sessions[index], "from its log");
                            assert_eq!(body, message(publisher, sequence), "checksum intact");
                            assert_eq!(sequence, next[index], "in order, exactly once");
                            next[index] += 1;
                        },
                        256,
                    );
                    seen += u64::try_from(read).unwrap();
                    if read == 0 {
                        assert!(Instant::now() < deadline, "stalled at {seen}");
                        std::thread::yield_now();
                    }
                }
                next
            })
        })
        .collect();
    let writers: Vec<_> = publications
        .into_iter()
        .enumerate()
        .map(|(index, mut publication)| {
            let publisher = u32::try_from(index).unwrap();
            std::thread::spawn(move || {
                for sequence in 0..messages {
                    let body = message(publisher, sequence);
                    loop {
                        match publication.offer(&body) {
                            OfferResult::Ok(_) => break,
                            OfferResult::BackPressured | OfferResult::AdminAction => {
                                assert!(Instant::now() < deadline, "publisher {publisher} stalled");
                                std::thread::yield_now();
                            }
                            other => panic!("{other:?}"),
                        }
                    }
                }
                publication
            })
        })
        .collect();
    let _publications: Vec<_> = writers
        .into_iter()
        .map(|writer| writer.join().unwrap())
        .collect();
    for reader in readers {
        assert_eq!(reader.join().unwrap(), vec![messages; PUBLISHERS as usize]);
    }
}
