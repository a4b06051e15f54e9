//! The archive's data paths allocate nothing: after warm-up, recording (blocks taken from an
//! image, copied with their checksums, written, committed, progress published) and replaying
//! (blocks read, checked and offered) make no allocation on the thread that runs the archive.
//! The archive agent runs on the test thread, stepped with its own clock; the driver and the
//! client conductors run on their own threads and are not counted.

use std::time::{Duration, Instant};

use tern_archive::archive::{Archive, ArchiveConfig};
use tern_archive::client::{ArchiveClient, ArchiveClientConfig, AsyncConnect, Request};
use tern_archive::control_protocol::ResponseCode;
use tern_engine::agent::{Agent, Clock, Now, SystemClock};
use tern_engine::client::{ClientConfig, OfferResult, Tern};
use tern_engine::driver::{DriverConfig, MediaDriver};

#[path = "../../codec/tests/support/counting_allocator.rs"]
mod counting_allocator;
use counting_allocator::counted;

/// The archive's clock, stepped a millisecond per duty cycle so progress events come due.
struct Stepped(Now);

impl Stepped {
    fn next(&mut self) -> Now {
        self.0.nanos += 1_000_000;
        self.0.epoch_ms += 1;
        self.0
    }
}

fn run_until(
    archive: &mut Archive,
    clock: &mut Stepped,
    what: &str,
    mut done: impl FnMut() -> bool,
) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while !done() {
        archive.do_work(clock.next());
        assert!(Instant::now() < deadline, "timed out: {what}");
    }
}

#[test]
fn recording_and_replaying_allocate_nothing_after_warm_up() {
    let dir = std::env::temp_dir().join(format!("tern-archive-alloc-{}", std::process::id()));
    let mut config = DriverConfig {
        dir: dir.clone(),
        ..DriverConfig::default()
    };
    config.ipc_term_length = 1024 * 1024;
    let driver = MediaDriver::launch(config).unwrap();
    let client = || {
        Tern::connect(ClientConfig {
            dir: dir.clone(),
            ..ClientConfig::default()
        })
        .unwrap()
    };
    let archive_dir = tempfile::tempdir().unwrap();
    let mut clock = Stepped(SystemClock.now());
    let mut archive = Archive::launch(
        ArchiveConfig {
            dir: archive_dir.path().to_path_buf(),
            ..ArchiveConfig::default()
        },
        client(),
        clock.0,
    )
    .unwrap();
    let tern = client();
    let mut connect = AsyncConnect::new(&tern, ArchiveClientConfig::default()).unwrap();
    let mut control: Option<ArchiveClient> = None;
    run_until(&mut archive, &mut clock, "connect", || {
        control = connect.poll().unwrap();
        control.is_some()
    });
    let mut control = control.unwrap();
    let mut request = |archive: &mut Archive, clock: &mut Stepped, request: Request<'_>| {
        let correlation_id = control.send(&request).unwrap();
        let mut response = None;
        run_until(archive, clock, "a response", || {
            control.poll();
            response = control.take_response(correlation_id);
            response.is_some()
        });
        let response = response.unwrap();
        assert_eq!(response.code, ResponseCode::Ok, "{}", response.message);
        response.relevant_id
    };
    request(
        &mut archive,
        &mut clock,
        Request::StartRecording {
            channel: "tern:ipc",
            stream_id: 40,
        },
    );
    let mut publication = tern.add_exclusive_publication("tern:ipc", 40).unwrap();
    let message = [0x61u8; 1000];
    let mut publish = |archive: &mut Archive, clock: &mut Stepped, count: usize| {
        let mut end = 0;
        for _ in 0..count {
            loop {
                match publication.offer(&message) {
                    OfferResult::Ok(position) => {
                        end = position;
                        break;
                    }
                    OfferResult::BackPressured
                    | OfferResult::AdminAction
                    | OfferResult::NotConnected => {
                        archive.do_work(clock.next());
                    }
                    other => panic!("{other:?}"),
                }
            }
            archive.do_work(clock.next());
        }
        end
    };
    // Warm-up: the recording starts, its first blocks and progress events go out.
    publish(&mut archive, &mut clock, 3000);
    let (end, allocations) = counted(|| publish(&mut archive, &mut clock, 30_000));
    assert_eq!(allocations, 0, "recording allocated {allocations} times");
    let deadline = Instant::now() + Duration::from_secs(20);
    while archive.catalog().extent(0).unwrap().0 != end {
        archive.do_work(clock.next());
        assert!(Instant::now() < deadline, "the recording never caught up");
    }
    request(
        &mut archive,
        &mut clock,
        Request::StopRecording {
            channel: "tern:ipc",
            stream_id: 40,
        },
    );

    let mut replayed = tern.add_subscription("tern:ipc", 41).unwrap();
    request(
        &mut archive,
        &mut clock,
        Request::Replay {
            recording_id: 0,
            position: -1,
            length: -1,
            channel: "tern:ipc",
            stream_id: 41,
        },
    );
    let mut position = 0;
    run_until(&mut archive, &mut clock, "the replay to start", || {
        replayed.poll(|_, header| position = header.position, 64);
        position > 0
    });
    let ((), allocations) = counted(|| {
        while position < end * 3 / 4 {
            archive.do_work(clock.next());
            replayed.poll(|_, header| position = header.position, 64);
        }
    });
    assert_eq!(allocations, 0, "replaying allocated {allocations} times");
    drop(archive);
    drop(driver);
}
