//! End to end over `tern:ipc`: an embedded driver, clients that publish and subscribe, back
//! pressure, fragmentation, claims and bad commands. What happens because time passes is in
//! `driver_timeouts.rs`, stepped on a manual clock.
#![cfg(not(loom))]

use std::cell::RefCell;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use tern_engine::client::{
    ClientConfig, ClientError, ControlledAction, FragmentAssembler, OfferResult, Publication,
    Subscription, Tern,
};
use tern_engine::cnc::CncFile;
use tern_engine::command::ErrorCode;
use tern_engine::concurrent::error_log::read_errors;
use tern_engine::concurrent::ring_buffer::ManyToOneRingBuffer;
use tern_engine::driver::{DriverConfig, MediaDriver};

const DEADLINE: Duration = Duration::from_secs(10);

fn dir(name: &str) -> PathBuf {
    std::env::temp_dir().join(format!("tern-test-{name}-{}", std::process::id()))
}

fn driver_with(name: &str, adjust: impl FnOnce(&mut DriverConfig)) -> MediaDriver {
    let mut config = DriverConfig {
        dir: dir(name),
        ..DriverConfig::default()
    };
    config.ipc_term_length = 64 * 1024;
    config.publication_linger = Duration::from_millis(50);
    adjust(&mut config);
    MediaDriver::launch(config).unwrap()
}

fn driver(name: &str) -> MediaDriver {
    driver_with(name, |_| {})
}

fn client_with(driver: &MediaDriver, adjust: impl FnOnce(&mut ClientConfig)) -> Tern {
    let mut config = ClientConfig {
        dir: driver.dir().to_path_buf(),
        ..ClientConfig::default()
    };
    adjust(&mut config);
    Tern::connect(config).unwrap()
}

fn client(driver: &MediaDriver) -> Tern {
    client_with(driver, |_| {})
}

fn offer(publication: &Publication, message: &[u8]) -> i64 {
    let deadline = Instant::now() + DEADLINE;
    loop {
        match publication.offer(message) {
            OfferResult::Ok(position) => return position,
            OfferResult::BackPressured | OfferResult::AdminAction => {
                assert!(Instant::now() < deadline, "offer stuck");
                std::thread::yield_now();
            }
            other => panic!("offer failed: {other:?}"),
        }
    }
}

fn poll_until(subscription: &mut Subscription, received: &RefCell<Vec<Vec<u8>>>, count: usize) {
    let deadline = Instant::now() + DEADLINE;
    let mut assembler = FragmentAssembler::new(|message: &[u8], _: &_| {
        received.borrow_mut().push(message.to_vec())
    });
    while received.borrow().len() < count {
        subscription.poll(
            |fragment, header| assembler.on_fragment(fragment, header),
            100,
        );
        assert!(
            Instant::now() < deadline,
            "received {} of {count}",
            received.borrow().len()
        );
    }
}

#[test]
fn publish_and_subscribe_with_fragmentation() {
    let driver = driver("pubsub");
    let tern = client(&driver);
    let mut subscription = tern.add_subscription("tern:ipc", 10).unwrap();
    let publication = tern.add_publication("tern:ipc", 10).unwrap();
    publication.wait_connected(DEADLINE).unwrap();
    assert!(subscription.is_connected());
    let messages: Vec<Vec<u8>> = (0..300usize)
        .map(|index| vec![u8::try_from(index % 251).unwrap(); (index * 97) % 5000])
        .collect();
    let received = RefCell::new(Vec::new());
    for (index, message) in messages.iter().enumerate() {
        offer(&publication, message);
        poll_until(&mut subscription, &received, index + 1);
    }
    assert_eq!(received.into_inner(), messages);
}

#[test]
fn a_slow_subscriber_halts_the_publisher_at_its_limit_and_loses_nothing() {
    let driver = driver("backpressure");
    let tern = client(&driver);
    let mut subscription = tern.add_subscription("tern:ipc", 11).unwrap();
    let publication = tern.add_publication("tern:ipc", 11).unwrap();
    publication.wait_connected(DEADLINE).unwrap();
    let mut sent = 0u32;
    loop {
        match publication.offer(&sent.to_le_bytes()) {
            OfferResult::Ok(_) => sent += 1,
            OfferResult::AdminAction => {}
            OfferResult::BackPressured => break,
            other => panic!("{other:?}"),
        }
    }
    assert!(publication.position() <= publication.publisher_limit() + 64);
    assert_eq!(
        publication.publisher_limit(),
        32 * 1024,
        "the window is half a 64 KiB term"
    );
    // Reading releases the publisher, which sends as many again; nothing was overwritten.
    let target = 2 * sent;
    let mut next = 0u32;
    let deadline = Instant::now() + DEADLINE;
    while next < target {
        subscription.poll(
            |message, _| {
                assert_eq!(u32::from_le_bytes(message.try_into().unwrap()), next);
                next += 1;
            },
            256,
        );
        if sent < target && publication.offer(&sent.to_le_bytes()).is_ok() {
            sent += 1;
        }
        assert!(Instant::now() < deadline, "stalled at {next} of {target}");
    }
}

#[test]
fn exclusive_publication_claims_and_controlled_polls() {
    let driver = driver("exclusive");
    let tern = client(&driver);
    let mut subscription = tern.add_subscription("tern:ipc", 12).unwrap();
    let mut exclusive = tern.add_exclusive_publication("tern:ipc", 12).unwrap();
    let shared = tern.add_publication("tern:ipc", 12).unwrap();
    exclusive.wait_connected(DEADLINE).unwrap();
    shared.wait_connected(DEADLINE).unwrap();
    assert_ne!(
        exclusive.session_id(),
        shared.session_id(),
        "exclusive has its own log"
    );
    assert!(exclusive.offer(b"exclusive").is_ok());
    let mut claim = shared.try_claim(5).unwrap();
    claim.with_payload(|payload| payload.copy_from_slice(b"claim"));
    claim.commit();
    assert!(matches!(
        shared.try_claim(100_000),
        Err(OfferResult::MessageTooLong { .. })
    ));

    let mut seen = Vec::new();
    let deadline = Instant::now() + DEADLINE;
    // Abort the first delivery of each message, then take it: aborted fragments come again.
    let mut aborted = std::collections::HashSet::new();
    while seen.len() < 2 {
        subscription.controlled_poll(
            |message, _| {
                if aborted.insert(message.to_vec()) {
                    return ControlledAction::Abort;
                }
                seen.push(message.to_vec());
                ControlledAction::Commit
            },
            10,
        );
        assert!(Instant::now() < deadline);
    }
    seen.sort();
    assert_eq!(seen, [b"claim".to_vec(), b"exclusive".to_vec()]);
}

#[test]
fn refused_commands_are_typed_errors() {
    let driver = driver("refused");
    let tern = client(&driver);
    let error = tern
        .add_publication("tern:ipc?term-length=1000", 1)
        .unwrap_err();
    assert!(
        matches!(
            error,
            ClientError::Refused {
                code: ErrorCode::InvalidChannel,
                ..
            }
        ),
        "{error}"
    );
    assert!(error.to_string().contains("term-length"));
    let counter = tern.add_counter(1001, b"key", "my counter").unwrap();
    counter.increment(3);
    let mut found = false;
    tern.counters()
        .for_each(|info| found |= info.label == "my counter" && info.value == 3);
    assert!(found);
}

#[test]
fn malformed_commands_get_an_error_and_the_driver_keeps_serving() {
    let driver = driver("malformed");
    let tern = client(&driver);
    let cnc = CncFile::open(driver.dir()).unwrap();
    let ring = ManyToOneRingBuffer::new(cnc.sections().to_driver).unwrap();
    // The add-publication template with a block too short for it: malformed.
    ring.write(1, &[8, 0, 1, 0, 10, 0, 0, 0, 1, 2, 3, 4])
        .unwrap();
    // Bytes of another schema: an unknown command.
    ring.write(1, b"not a command at all").unwrap();
    // A valid header for an unknown template of the driver's schema.
    let mut unknown = vec![0u8; 32];
    unknown[..8].copy_from_slice(&[8, 0, 0x77, 0x00, 10, 0, 0, 0]);
    ring.write(0x77, &unknown).unwrap();
    // The driver still serves this client and others.
    let publication = tern.add_publication("tern:ipc", 14).unwrap();
    let other = client(&driver);
    let _subscription = other.add_subscription("tern:ipc", 14).unwrap();
    publication.wait_connected(DEADLINE).unwrap();
    let mut errors = Vec::new();
    read_errors(cnc.sections().error_log, |error| {
        errors.push(error.text.to_owned())
    });
    assert!(
        errors
            .iter()
            .any(|text| text.starts_with("malformed command")),
        "{errors:?}"
    );
    assert!(
        errors
            .iter()
            .any(|text| text.starts_with("unknown command")),
        "{errors:?}"
    );
}

#[test]
fn a_second_driver_refuses_a_live_directory() {
    let driver = driver("second");
    let error = MediaDriver::launch(DriverConfig {
        dir: driver.dir().to_path_buf(),
        ..DriverConfig::default()
    })
    .err()
    .expect("a second driver must not start");
    assert!(error.to_string().contains("already running"), "{error}");
}

#[test]
fn connecting_without_a_driver_is_a_clear_error_not_a_hang() {
    let error = Tern::connect(ClientConfig {
        dir: dir("nobody"),
        timeout: Duration::from_millis(200),
        ..ClientConfig::default()
    })
    .err()
    .expect("no driver");
    assert!(matches!(error, ClientError::NoDriver { .. }));
    assert!(error.to_string().contains("tern driver"), "{error}");
}

#[test]
fn an_exclusive_publication_that_fills_a_term_exactly_rotates() {
    // 64-byte frames fill a 64 KiB term exactly: the next offer must rotate, not wrap.
    let driver = driver("exact-fill");
    let tern = client(&driver);
    let mut subscription = tern.add_subscription("tern:ipc", 18).unwrap();
    let mut publication = tern.add_exclusive_publication("tern:ipc", 18).unwrap();
    publication.wait_connected(DEADLINE).unwrap();
    let total = 5 * 1024u32;
    let mut sent = 0u32;
    let mut next = 0u32;
    let deadline = Instant::now() + DEADLINE;
    while next < total {
        if sent < total {
            let mut body = [0u8; 32];
            body[..4].copy_from_slice(&sent.to_le_bytes());
            match publication.offer(&body) {
                OfferResult::Ok(position) => {
                    sent += 1;
                    assert_eq!(position, i64::from(sent) * 64);
                }
                OfferResult::BackPressured | OfferResult::AdminAction => {}
                other => panic!("{other:?}"),
            }
        }
        subscription.poll(
            |body, _| {
                assert_eq!(u32::from_le_bytes(body[..4].try_into().unwrap()), next);
                next += 1;
            },
            64,
        );
        assert!(Instant::now() < deadline, "stalled at {next}");
    }
}

#[test]
fn an_exclusive_publication_pads_each_term_end_and_keeps_its_positions() {
    // 160-byte frames do not divide a 64 KiB term: each term ends in padding, and the
    // publication's own tail must agree with the log's across every rotation.
    let driver = driver("exclusive-pad");
    let tern = client(&driver);
    let mut subscription = tern.add_subscription("tern:ipc", 19).unwrap();
    let mut publication = tern.add_exclusive_publication("tern:ipc", 19).unwrap();
    publication.wait_connected(DEADLINE).unwrap();
    let total = 3 * 410u32 + 7;
    let (mut sent, mut next, mut last) = (0u32, 0u32, 0i64);
    let deadline = Instant::now() + DEADLINE;
    while next < total {
        if sent < total {
            let mut body = [0u8; 100];
            body[..4].copy_from_slice(&sent.to_le_bytes());
            match publication.offer(&body) {
                OfferResult::Ok(position) => {
                    sent += 1;
                    // A 160-byte frame after the last, or the first of a new term.
                    assert!(
                        position - last == 160 || position % (64 * 1024) == 160,
                        "{last} then {position}"
                    );
                    assert_eq!(publication.position(), position, "the log's tail agrees");
                    last = position;
                }
                OfferResult::BackPressured | OfferResult::AdminAction => {}
                other => panic!("{other:?}"),
            }
        }
        subscription.poll(
            |body, header| {
                assert_eq!(u32::from_le_bytes(body[..4].try_into().unwrap()), next);
                assert_eq!(
                    header.position % (64 * 1024) % 160,
                    0,
                    "frames restart each term"
                );
                next += 1;
            },
            64,
        );
        assert!(Instant::now() < deadline, "stalled at {next}");
    }
    assert!(last > 3 * 64 * 1024, "crossed three terms: {last}");
}

#[test]
fn an_exclusive_publication_held_at_a_small_window_keeps_every_message_and_position() {
    // A 4 KiB window on 64 KiB terms: the publisher is held back again and again, at term ends
    // too, while messages of every shape go through its own tail: empty, exactly one frame's
    // payload, and fragmented (across term ends as well). Each message's position, as the offer
    // returned it, must be where the subscriber finds the message's last fragment.
    let driver = driver("exclusive-window");
    let tern = client(&driver);
    let mut subscription = tern.add_subscription("tern:ipc", 23).unwrap();
    let mut publication = tern
        .add_exclusive_publication("tern:ipc?pub-wnd=4k", 23)
        .unwrap();
    publication.wait_connected(DEADLINE).unwrap();
    let max_payload = 1408 - 32;
    let sizes = [0usize, 100, max_payload, 3000, 40];
    let total = 400;
    let mut offered_positions = Vec::new();
    let received = RefCell::new(Vec::new());
    let mut assembler = FragmentAssembler::new(|message: &[u8], header: &_| {
        let header: &tern_engine::logbuffer::frame_header::FragmentHeader = header;
        received
            .borrow_mut()
            .push((message.to_vec(), header.position));
    });
    let deadline = Instant::now() + DEADLINE;
    let mut held_back = 0;
    while received.borrow().len() < total {
        assert!(
            Instant::now() < deadline,
            "{} of {total} received",
            received.borrow().len()
        );
        // Offer until held back, then read everything there is.
        while offered_positions.len() < total {
            let index = offered_positions.len();
            let message = vec![u8::try_from(index % 251).unwrap(); sizes[index % sizes.len()]];
            match publication.offer(&message) {
                OfferResult::Ok(position) => offered_positions.push(position),
                OfferResult::BackPressured => {
                    held_back += 1;
                    break;
                }
                OfferResult::AdminAction => {}
                other => panic!("{other:?}"),
            }
        }
        subscription.poll(
            |fragment, header| assembler.on_fragment(fragment, header),
            64,
        );
    }
    assert!(held_back > 10, "held back {held_back} times");
    assert!(
        *offered_positions.last().unwrap() > 3 * 64 * 1024,
        "crossed three terms"
    );
    for (index, (message, position)) in received.borrow().iter().enumerate() {
        let size = sizes[index % sizes.len()];
        assert_eq!(message.len(), size, "message {index}");
        assert!(message.iter().all(|byte| usize::from(*byte) == index % 251));
        assert_eq!(
            *position, offered_positions[index],
            "message {index}'s position"
        );
    }
}

#[test]
fn a_publication_is_handed_out_only_as_the_kind_it_was_added_as() {
    // An exclusive publication keeps its own tail: over a shared log it would overwrite other
    // publishers' claims. Asking for the wrong kind is refused, both ways.
    let driver = driver("kinds");
    let tern = client(&driver);
    let poll = |what: &str, mut poll: Box<dyn FnMut() -> Option<String>>| {
        let deadline = Instant::now() + DEADLINE;
        loop {
            if let Some(outcome) = poll() {
                return outcome;
            }
            assert!(Instant::now() < deadline, "no answer to {what}");
            std::thread::yield_now();
        }
    };
    let concurrent = tern.async_add_publication("tern:ipc", 22).unwrap();
    let outcome = poll(
        "a concurrent publication taken as exclusive",
        Box::new(|| {
            tern.poll_exclusive_publication(concurrent).map(|result| {
                result
                    .map(|_| "taken".to_owned())
                    .unwrap_or_else(|e| e.to_string())
            })
        }),
    );
    assert!(
        outcome.contains("is concurrent, not exclusive"),
        "{outcome}"
    );
    let exclusive = tern
        .async_add_exclusive_publication("tern:ipc", 22)
        .unwrap();
    let outcome = poll(
        "an exclusive publication taken as concurrent",
        Box::new(|| {
            tern.poll_publication(exclusive).map(|result| {
                result
                    .map(|_| "taken".to_owned())
                    .unwrap_or_else(|e| e.to_string())
            })
        }),
    );
    assert!(
        outcome.contains("is exclusive, not concurrent"),
        "{outcome}"
    );
}

#[test]
fn a_session_id_subscription_reads_that_session_only() {
    let driver = driver("session");
    let tern = client(&driver);
    let mut chosen = tern
        .add_subscription("tern:ipc?session-id=200", 21)
        .unwrap();
    let mut every = tern.add_subscription("tern:ipc", 21).unwrap();
    let first = tern.add_publication("tern:ipc?session-id=100", 21).unwrap();
    let second = tern.add_publication("tern:ipc?session-id=200", 21).unwrap();
    assert_eq!((first.session_id(), second.session_id()), (100, 200));
    first.wait_connected(DEADLINE).unwrap();
    second.wait_connected(DEADLINE).unwrap();
    offer(&first, b"one hundred");
    offer(&second, b"two hundred");
    let every_received = RefCell::new(Vec::new());
    poll_until(&mut every, &every_received, 2);
    let chosen_received = RefCell::new(Vec::new());
    poll_until(&mut chosen, &chosen_received, 1);
    assert_eq!(chosen_received.into_inner(), [b"two hundred".to_vec()]);
    assert_eq!(chosen.images().len(), 1, "linked to session 200 alone");
    assert_eq!(chosen.images()[0].info().session_id, 200);
}

#[test]
fn a_client_whose_conductor_thread_panics_says_so_and_closes() {
    let driver = driver("conductor-panic");
    let tern = client_with(&driver, |config| {
        config.on_available_image = Some(std::sync::Arc::new(|_: &_| {
            panic!("a bug in the application's image handler")
        }));
    });
    // Asynchronous adds: the conductor thread, not this one, handles the image event.
    tern.async_add_subscription("tern:ipc", 23).unwrap();
    tern.async_add_publication("tern:ipc", 23).unwrap();
    let deadline = Instant::now() + DEADLINE;
    let error = loop {
        if let Some(error) = tern.fatal_error() {
            break error;
        }
        assert!(
            Instant::now() < deadline,
            "the conductor's panic went unnoticed"
        );
        std::thread::sleep(Duration::from_millis(1));
    };
    assert!(
        matches!(&error, ClientError::ConductorStopped(text) if text.contains("image handler")),
        "{error:?}"
    );
    assert!(matches!(
        tern.async_add_subscription("tern:ipc", 23),
        Err(ClientError::Closed)
    ));
}
