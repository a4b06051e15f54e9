//! Shared memory that another process writes is input: a client (or anything running as the
//! driver's user) can write any byte of the CnC file and the log buffers. Each test here plants
//! one bad value that once made the driver or a client misbehave, and checks that it is counted,
//! reported, and costs nobody else their data.
#![cfg(all(not(loom), unix))]

use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tern_engine::client::{ClientConfig, ClientError, ConductorMode, OfferResult, Tern};
use tern_engine::cnc::CncFile;
use tern_engine::concurrent::broadcast::BroadcastTransmitter;
use tern_engine::concurrent::counters::{CountersReader, VALUE_LENGTH};
use tern_engine::concurrent::error_log::read_errors;
use tern_engine::concurrent::ring_buffer::ManyToOneRingBuffer;
use tern_engine::driver::conductor::counter_types;
use tern_engine::driver::{DriverConfig, MediaDriver, ThreadingMode};

const DEADLINE: Duration = Duration::from_secs(10);

fn dir(name: &str) -> PathBuf {
    std::env::temp_dir().join(format!("tern-test-hostile-{name}-{}", std::process::id()))
}

fn driver(name: &str, threading_mode: ThreadingMode) -> MediaDriver {
    let mut config = DriverConfig {
        dir: dir(name),
        threading_mode,
        ..DriverConfig::default()
    };
    config.ipc_term_length = 64 * 1024;
    MediaDriver::launch(config).unwrap()
}

fn client(driver: &MediaDriver, mode: ConductorMode) -> Tern {
    Tern::connect(ClientConfig {
        dir: driver.dir().to_path_buf(),
        conductor_mode: mode,
        ..ClientConfig::default()
    })
    .unwrap()
}

fn errors(cnc: &CncFile) -> Vec<String> {
    let mut errors = Vec::new();
    read_errors(cnc.sections().error_log, |error| {
        errors.push(error.text.to_owned())
    });
    errors
}

/// The value of the system counter labelled `label`.
fn system_counter(counters: CountersReader<'_>, label: &str) -> i64 {
    let mut value = None;
    counters.for_each(|info| {
        if info.type_id == 0 && info.label == label {
            value = Some(info.value);
        }
    });
    value.unwrap_or_else(|| panic!("no system counter {label:?}"))
}

#[test]
fn a_command_record_whose_length_runs_past_the_records_is_skipped() {
    let driver = driver("ring-length", ThreadingMode::Shared);
    let cnc = CncFile::open(driver.dir()).unwrap();
    let to_driver = cnc.sections().to_driver;
    let ring = ManyToOneRingBuffer::new(to_driver).unwrap();
    // A client claims a record, publishes a length that runs through the trailer, and dies.
    let trailer = to_driver.capacity() - tern_engine::concurrent::ring_buffer::TRAILER_LENGTH;
    let tail = ring.producer_position();
    assert!(to_driver.compare_and_set_i64(trailer, tail, tail + 64));
    let index = usize::try_from(tail).unwrap() % trailer;
    to_driver.put_i32(index + 12, -1); // the rest of its claim reads as padding
    to_driver.put_i32(index + 8, 56);
    to_driver.put_i32(index + 4, 1);
    to_driver.put_i32_ordered(index, i32::try_from(trailer).unwrap());
    // The trailer survives (a zeroed trailer would wedge every client) and others are served.
    let tern = client(&driver, ConductorMode::Thread);
    let publication = tern.add_publication("tern:ipc", 1).unwrap();
    let _subscription = tern.add_subscription("tern:ipc", 1).unwrap();
    publication.wait_connected(DEADLINE).unwrap();
    assert!(
        ring.producer_position() >= tail + 64,
        "the tail was not zeroed"
    );
    let errors = errors(&cnc);
    assert!(
        errors
            .iter()
            .any(|text| text.starts_with("corrupt command record")),
        "{errors:?}"
    );
    assert_eq!(
        system_counter(tern.counters(), "corrupt command bytes"),
        8,
        "one word skipped; every record claimed after it was read"
    );
}

/// The id of the subscriber-position counter `client_id` owns (its only one).
fn position_counter_of(observer: &Tern, client_id: i64) -> usize {
    let mut counter_id = None;
    observer.counters().for_each(|info| {
        if info.type_id == counter_types::SUBSCRIBER_POSITION && info.owner_id == client_id {
            counter_id = Some(usize::try_from(info.id).unwrap());
        }
    });
    counter_id.expect("the client has a position counter")
}

#[test]
fn a_position_no_subscriber_could_reach_withdraws_that_image_and_no_other() {
    let driver = driver("position", ThreadingMode::Shared);
    let cnc = CncFile::open(driver.dir()).unwrap();
    let publisher = client(&driver, ConductorMode::Thread);
    let hostile = client(&driver, ConductorMode::Thread);
    let honest = client(&driver, ConductorMode::Thread);
    let publication = publisher.add_publication("tern:ipc", 2).unwrap();
    let mut bad = hostile.add_subscription("tern:ipc", 2).unwrap();
    let mut good = honest.add_subscription("tern:ipc", 2).unwrap();
    publication.wait_connected(DEADLINE).unwrap();
    let deadline = Instant::now() + DEADLINE;
    while !(bad.is_connected() && good.is_connected()) {
        assert!(Instant::now() < deadline, "images did not arrive");
        std::thread::yield_now();
    }
    // The hostile client writes a position below where it joined into its own counter: as the
    // slowest, it would hold the limit below the producer for good.
    let counter_id = position_counter_of(&publisher, hostile.client_id());
    let values = cnc.sections().counters_values;
    values.put_i64_ordered(counter_id * VALUE_LENGTH, -64);
    // Three terms of messages: with the bad position trusted, the publisher would stall at the
    // first window and the honest subscriber would never get them.
    let messages = 3 * 64 * 1024 / 64;
    let mut received = 0;
    let mut sent = 0;
    while received < messages {
        assert!(
            Instant::now() < deadline,
            "received {received} of {messages}"
        );
        if sent < messages {
            let mut body = [0u8; 32];
            body[..8].copy_from_slice(&u64::try_from(sent).unwrap().to_le_bytes());
            match publication.offer(&body) {
                OfferResult::Ok(_) => sent += 1,
                OfferResult::BackPressured | OfferResult::AdminAction => {}
                other => panic!("offer failed: {other:?}"),
            }
        }
        good.poll(
            |payload, _| {
                let sequence = u64::from_le_bytes(payload[..8].try_into().unwrap());
                assert_eq!(
                    sequence,
                    u64::try_from(received).unwrap(),
                    "in order, intact"
                );
                received += 1;
            },
            16,
        );
    }
    while bad.is_connected() {
        assert!(
            Instant::now() < deadline,
            "the hostile image was not withdrawn"
        );
        std::thread::yield_now();
    }
    let errors = errors(&cnc);
    let expected = format!("client {} wrote position -64", hostile.client_id());
    assert!(
        errors.iter().any(|text| text.starts_with(&expected)),
        "{errors:?}"
    );
    assert_eq!(system_counter(publisher.counters(), "invalid positions"), 1);
}

#[test]
fn an_image_whose_log_cannot_be_mapped_is_released_and_reported() {
    let driver = driver("unmappable", ThreadingMode::Shared);
    let cnc = CncFile::open(driver.dir()).unwrap();
    let publisher = client(&driver, ConductorMode::Thread);
    let publication = publisher.add_publication("tern:ipc", 3).unwrap();
    // Break the log's magic after the publisher mapped it: a new subscriber cannot map it.
    let path = driver
        .dir()
        .join("publications")
        .join(format!("{}.logbuffer", publication.registration_id()));
    // In place (a rewrite would truncate a file others have mapped: SIGBUS for them).
    {
        use std::os::unix::fs::FileExt;
        let file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open(&path)
            .unwrap();
        let magic = file.metadata().unwrap().len() - 4096 + 448;
        let mut byte = [0u8; 1];
        file.read_exact_at(&mut byte, magic).unwrap();
        file.write_all_at(&[byte[0] ^ 0xFF], magic).unwrap();
    }
    let unusable = Arc::new(Mutex::new(Vec::new()));
    let reported = Arc::clone(&unusable);
    let subscriber = Tern::connect(ClientConfig {
        dir: driver.dir().to_path_buf(),
        on_unusable_image: Some(Arc::new(move |info, reason| {
            reported
                .lock()
                .unwrap()
                .push((info.stream_id, reason.to_owned()));
        })),
        ..ClientConfig::default()
    })
    .unwrap();
    let _subscription = subscriber.add_subscription("tern:ipc", 3).unwrap();
    let deadline = Instant::now() + DEADLINE;
    loop {
        let released = errors(&cnc).iter().any(|text| {
            text.starts_with(&format!("client {} released image", subscriber.client_id()))
        });
        if released {
            break;
        }
        assert!(Instant::now() < deadline, "{:?}", errors(&cnc));
        std::thread::yield_now();
    }
    let unusable = unusable.lock().unwrap().clone();
    assert_eq!(unusable.len(), 1, "{unusable:?}");
    assert!(
        unusable[0].1.contains("not a tern log buffer"),
        "{unusable:?}"
    );
    // Nobody the driver counts reads the log: the publisher hears "not connected", not a
    // silent stall behind a reader that does not exist.
    while publication.is_connected() {
        assert!(Instant::now() < deadline, "still connected");
        std::thread::yield_now();
    }
    assert!(matches!(publication.offer(b"x"), OfferResult::NotConnected));
}

/// A client whose conductor this thread runs, over a driver this thread steps: nothing else
/// writes the broadcast buffer while the test plants a record in it.
fn stepped(name: &str) -> (MediaDriver, Tern, CncFile) {
    let driver = driver(name, ThreadingMode::Invoker);
    let tern = client(&driver, ConductorMode::Invoker);
    let cnc = CncFile::open(driver.dir()).unwrap();
    (driver, tern, cnc)
}

#[test]
fn a_broadcast_message_marked_terminate_if_unknown_stops_the_client() {
    let (mut driver, tern, cnc) = stepped("terminate");
    driver.invoke();
    tern.do_work();
    assert!(tern.fatal_error().is_none());
    let mut transmitter = BroadcastTransmitter::new(cnc.sections().to_clients).unwrap();
    // The driver's schema (10), an unknown template whose top bits say terminate-if-unknown.
    let message = [8, 0, 0x77, 0x80, 10, 0, 2, 0, 0, 0, 0, 0, 0, 0, 0, 0];
    transmitter.transmit(0x8077, &message).unwrap();
    tern.do_work();
    let error = tern.fatal_error();
    assert!(
        matches!(&error, Some(ClientError::BadDriverMessage(text)) if text.contains("unknown critical")),
        "{error:?}"
    );
    // An ignorable one would have been skipped: a fresh client over the same buffer goes on.
    let other = client(&driver, ConductorMode::Invoker);
    transmitter
        .transmit(0x4077, &[0, 0, 0x77, 0x40, 10, 0, 2, 0])
        .unwrap();
    other.do_work();
    assert!(other.fatal_error().is_none());
}

#[test]
fn an_oversized_broadcast_record_stops_the_client_instead_of_being_skipped() {
    let (mut driver, tern, cnc) = stepped("oversized");
    driver.invoke();
    tern.do_work();
    let to_clients = cnc.sections().to_clients;
    let mut transmitter = BroadcastTransmitter::new(to_clients).unwrap();
    let trailer = to_clients.capacity() - tern_engine::concurrent::broadcast::TRAILER_LENGTH;
    let start = usize::try_from(to_clients.get_i64(trailer + 8)).unwrap() % trailer;
    transmitter.transmit(101, &[0; 16]).unwrap();
    // The record's length now claims more than the transmitter ever writes.
    let header = to_clients.get_i64(start);
    to_clients.put_i64(
        start,
        (header & !0xFFFF_FFFF) | i64::try_from(trailer / 4).unwrap(),
    );
    tern.do_work();
    let error = tern.fatal_error();
    assert!(
        matches!(&error, Some(ClientError::BadDriverMessage(_))),
        "{error:?}"
    );
}

#[test]
fn a_tethered_image_lapped_by_a_forged_clean_position_is_released_not_silently_stuck() {
    let driver = driver("forged-clean", ThreadingMode::Shared);
    let cnc = CncFile::open(driver.dir()).unwrap();
    let tern = client(&driver, ConductorMode::Thread);
    let publication = tern.add_publication("tern:ipc", 4).unwrap();
    let mut subscription = tern.add_subscription("tern:ipc", 4).unwrap();
    publication.wait_connected(DEADLINE).unwrap();
    // The client's conductor thread hands the image to the subscription a moment after the
    // driver connects the publication; only a poll of an image it holds can find it lapped.
    let deadline = Instant::now() + DEADLINE;
    while subscription.images().is_empty() {
        assert!(Instant::now() < deadline, "no image");
        std::thread::yield_now();
    }
    // Another process moves the log's clean position far past every reader.
    let path = driver
        .dir()
        .join("publications")
        .join(format!("{}.logbuffer", publication.registration_id()));
    let log = tern_engine::logbuffer::log_buffers::LogBuffers::map(&path).unwrap();
    log.metadata().announce_clean_position(1 << 40);
    assert_eq!(
        subscription.poll(|_, _| panic!("read past a clean position"), 10),
        0
    );
    let deadline = Instant::now() + DEADLINE;
    loop {
        let released = errors(&cnc)
            .iter()
            .any(|text| text.contains("released image") && text.contains("lapped at position"));
        if released {
            break;
        }
        assert!(Instant::now() < deadline, "{:?}", errors(&cnc));
        std::thread::yield_now();
    }
    // The driver no longer counts it: the publisher is told nobody is connected.
    while publication.is_connected() {
        assert!(Instant::now() < deadline, "still connected");
        std::thread::yield_now();
    }
}

/// Receives `count` messages on `subscription` while `publication` sends them (bounded).
fn exchange(
    publication: &tern_engine::client::Publication,
    subscription: &mut tern_engine::client::Subscription,
    count: usize,
) {
    let deadline = Instant::now() + DEADLINE;
    let (mut sent, mut received) = (0, 0);
    while received < count {
        assert!(Instant::now() < deadline, "received {received} of {count}");
        if sent < count && matches!(publication.offer(&[5u8; 40]), OfferResult::Ok(_)) {
            sent += 1;
        }
        received += subscription.poll(|_, _| {}, 16);
    }
}

#[test]
fn a_position_off_the_frame_alignment_is_invalid_and_no_reader_joins_there() {
    let driver = driver("misaligned-position", ThreadingMode::Shared);
    let cnc = CncFile::open(driver.dir()).unwrap();
    let publisher = client(&driver, ConductorMode::Thread);
    let hostile = client(&driver, ConductorMode::Thread);
    let publication = publisher.add_publication("tern:ipc", 4).unwrap();
    let mut bad = hostile.add_subscription("tern:ipc", 4).unwrap();
    publication.wait_connected(DEADLINE).unwrap();
    exchange(&publication, &mut bad, 10);
    // In range (between its join and the producer) but between two frames: trusted, it would
    // be the join position of the next subscriber, whose first read would find no frame there.
    let counter_id = position_counter_of(&publisher, hostile.client_id());
    let values = cnc.sections().counters_values;
    values.put_i64_ordered(counter_id * VALUE_LENGTH, 5 * 96 + 8);
    let deadline = Instant::now() + DEADLINE;
    while bad.is_connected() {
        assert!(
            Instant::now() < deadline,
            "the hostile image was not withdrawn"
        );
        std::thread::yield_now();
    }
    assert_eq!(system_counter(publisher.counters(), "invalid positions"), 1);
    let late = client(&driver, ConductorMode::Thread);
    let mut joined = late.add_subscription("tern:ipc", 4).unwrap();
    exchange(&publication, &mut joined, 10);
    assert!(
        joined.images()[0].position() % 32 == 0,
        "joined on a frame boundary"
    );
}

#[test]
fn a_tail_off_the_frame_alignment_is_never_written_at() {
    let driver = driver("misaligned-tail", ThreadingMode::Shared);
    let publisher = client(&driver, ConductorMode::Thread);
    let publication = publisher.add_publication("tern:ipc", 5).unwrap();
    let subscriber = client(&driver, ConductorMode::Thread);
    let mut subscription = subscriber.add_subscription("tern:ipc", 5).unwrap();
    publication.wait_connected(DEADLINE).unwrap();
    exchange(&publication, &mut subscription, 3);
    let path = driver
        .dir()
        .join("publications")
        .join(format!("{}.logbuffer", publication.registration_id()));
    let log = tern_engine::logbuffer::log_buffers::LogBuffers::map(&path).unwrap();
    let metadata = log.metadata();
    let index = usize::try_from(metadata.active_term_count()).unwrap() % 3;
    let offset = tern_engine::logbuffer::descriptor::LogMetadata::tail_counter_offset(index);
    // Another process moves the tail 8 bytes off the frame alignment.
    metadata.buffer().get_and_add_i64(offset, 8);
    // The next offer finds no frame can start there: it pads the rest of the term from the
    // last frame's end and moves the log on. Offers go on in the next term, and the subscriber
    // follows through the padding.
    let deadline = Instant::now() + DEADLINE;
    let (mut accepted, mut received) = (0, 0);
    while received < 10 {
        assert!(
            Instant::now() < deadline,
            "after the forged tail: {accepted} accepted, {received} received"
        );
        if accepted < 10 {
            match publication.offer(&[6u8; 40]) {
                OfferResult::Ok(position) => {
                    assert_eq!(position % 32, 0, "frames end on the alignment");
                    assert!(position > 64 * 1024, "in the next term: {position}");
                    accepted += 1;
                }
                OfferResult::AdminAction | OfferResult::BackPressured => {}
                other => panic!("{other:?}"),
            }
        }
        received += subscription.poll(|payload, _| assert_eq!(payload, [6u8; 40]), 16);
    }
    assert!(driver.failure().is_none());
}
