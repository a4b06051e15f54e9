//! Everything the driver does because time passed — client liveness and keepalives, a dead
//! driver's silence, a command ring blocked by a client that died mid-write, linger, untethered
//! subscribers left behind and rejoining — stepped on a manual clock (`support::Stepped`): no
//! test here sleeps or reads the wall clock, so none depends on how busy the machine is.
#![cfg(not(loom))]

mod support;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use support::Stepped;
use tern_engine::client::{ClientError, ImageInfo, OfferResult, Tern};
use tern_engine::cnc::CncFile;
use tern_engine::concurrent::error_log::read_errors;
use tern_engine::concurrent::ring_buffer::{ManyToOneRingBuffer, TRAILER_LENGTH};

const MS: Duration = Duration::from_millis(1);

fn errors(cnc: &CncFile) -> Vec<String> {
    let mut errors = Vec::new();
    read_errors(cnc.sections().error_log, |error| {
        errors.push(error.text.to_owned())
    });
    errors
}

/// Image events a client saw, in order: ("available" or "unavailable", a key of the image).
type Events = Arc<Mutex<Vec<(&'static str, i64)>>>;

/// A stepped client that records its image events, keyed by `key` (session or subscription).
fn client_with_events(stepped: &Stepped, key: fn(&ImageInfo) -> i64) -> (Tern, Events) {
    let events: Events = Arc::new(Mutex::new(Vec::new()));
    let (available, unavailable) = (Arc::clone(&events), Arc::clone(&events));
    let tern = stepped.client(|config| {
        config.on_available_image = Some(Arc::new(move |info: &ImageInfo| {
            available.lock().unwrap().push(("available", key(info)));
        }));
        config.on_unavailable_image = Some(Arc::new(move |info: &ImageInfo| {
            unavailable.lock().unwrap().push(("unavailable", key(info)));
        }));
    });
    (tern, events)
}

#[test]
fn a_silent_client_is_closed_at_its_liveness_timeout_and_not_before() {
    let mut stepped = Stepped::new("silent", |config| {
        config.client_liveness_timeout = Duration::from_secs(10);
    });
    let silent = stepped.client(|_| {});
    let reader = stepped.client(|_| {});
    let publication = stepped.add_publication(&silent, "tern:ipc", 16);
    let mut subscription = stepped.add_subscription(&reader, "tern:ipc", 16);
    stepped.step(&[&reader]);
    assert!(subscription.is_connected());
    // The reader keeps alive (keepalives every 500 ms); the silent client sends nothing.
    stepped.advance(Duration::from_millis(9_900), 100 * MS, &[&reader]);
    assert!(
        subscription.is_connected(),
        "closed before its liveness timeout"
    );
    stepped.advance(Duration::from_millis(300), 100 * MS, &[&reader]);
    assert!(
        !subscription.is_connected(),
        "the silent client's publication outlived its liveness timeout"
    );
    // The reader is unaffected; the silent client learns it was closed when it next runs.
    let publication_again = stepped.add_publication(&reader, "tern:ipc", 16);
    stepped.step_until(MS, &[&reader], "the reader's own publication", || {
        publication_again.is_connected()
    });
    silent.do_work();
    assert!(matches!(
        silent.fatal_error(),
        Some(ClientError::ClientTimedOut)
    ));
    assert_eq!(publication.offer(b"x"), OfferResult::Closed);
}

#[test]
fn a_client_whose_driver_stops_hears_of_it_at_the_driver_timeout() {
    let mut stepped = Stepped::new("dies", |_| {});
    let tern = stepped.client(|config| config.driver_timeout = Duration::from_secs(10));
    let publication = stepped.add_publication(&tern, "tern:ipc", 15);
    // The driver stops running its duty cycle: its heartbeat stops.
    for _ in 0..99 {
        stepped.clock.advance(100 * MS);
        tern.do_work();
    }
    assert!(tern.fatal_error().is_none(), "declared dead too soon");
    stepped.clock.advance(Duration::from_secs(1));
    tern.do_work();
    assert!(matches!(
        tern.fatal_error(),
        Some(ClientError::DriverTimeout { .. })
    ));
    assert_eq!(publication.offer(b"x"), OfferResult::Closed);
    assert!(matches!(
        tern.async_add_subscription("tern:ipc", 15),
        Err(ClientError::Closed)
    ));
}

#[test]
fn a_command_ring_blocked_by_a_client_that_died_mid_write_is_unblocked_after_the_liveness_timeout()
{
    let mut stepped = Stepped::new("ring-unblock", |config| {
        config.client_liveness_timeout = Duration::from_secs(5);
    });
    let cnc = CncFile::open(stepped.driver.dir()).unwrap();
    let to_driver = cnc.sections().to_driver;
    let ring = ManyToOneRingBuffer::new(to_driver).unwrap();
    // A client the driver already knows, keeping alive all along.
    let known = stepped.client(|_| {});
    let known_publication = stepped.add_publication(&known, "tern:ipc", 18);
    // A client claims 64 bytes of the command ring by compare-and-set, then dies.
    let trailer = to_driver.capacity() - TRAILER_LENGTH;
    let tail = ring.producer_position();
    assert!(to_driver.compare_and_set_i64(trailer, tail, tail + 64));
    // A live client's commands queue behind the dead claim until the driver pads it.
    let tern = stepped.client(|_| {});
    let registration_id = tern.async_add_publication("tern:ipc", 19).unwrap();
    stepped.advance(Duration::from_millis(4_900), 100 * MS, &[&tern, &known]);
    assert!(
        tern.poll_publication(registration_id).is_none(),
        "served before the blocked ring was unblocked"
    );
    let mut publication = None;
    stepped.step_until(10 * MS, &[&tern, &known], "the unblocked command", || {
        publication = tern.poll_publication(registration_id);
        publication.is_some()
    });
    assert!(publication.unwrap().is_ok());
    // The known client's keepalives sat in the blocked ring for the whole liveness timeout: it
    // is not expired for that, then or after.
    stepped.advance(Duration::from_secs(2), 100 * MS, &[&tern, &known]);
    assert!(known.fatal_error().is_none(), "{:?}", known.fatal_error());
    assert_ne!(known_publication.offer(b"x"), OfferResult::Closed);
    assert!(
        errors(&cnc)
            .iter()
            .any(|text| text.contains("unblocked the command ring")),
        "{:?}",
        errors(&cnc)
    );
}

#[test]
fn a_closed_publication_lingers_for_an_unread_subscriber_then_goes() {
    let mut stepped = Stepped::new("linger", |config| {
        config.publication_linger = Duration::from_secs(5);
    });
    let (tern, events) = client_with_events(&stepped, |info| i64::from(info.session_id));
    let publication = stepped.add_publication(&tern, "tern:ipc", 13);
    assert_eq!(publication.offer(b"x"), OfferResult::NotConnected);
    // A subscription added after the publication links to it.
    let mut subscription = stepped.add_subscription(&tern, "tern:ipc", 13);
    stepped.step(&[&tern]);
    assert!(publication.is_connected());
    assert!(matches!(publication.offer(b"unread"), OfferResult::Ok(_)));
    let session = publication.session_id();
    drop(publication);
    // The subscriber has not read the message: the publication waits out its linger for it.
    stepped.advance(Duration::from_millis(4_900), 100 * MS, &[&tern]);
    assert!(subscription.is_connected(), "gone before its linger");
    stepped.advance(Duration::from_millis(300), 100 * MS, &[&tern]);
    assert!(!subscription.is_connected(), "lingered past its linger");
    assert_eq!(
        *events.lock().unwrap(),
        [
            ("available", i64::from(session)),
            ("unavailable", i64::from(session))
        ]
    );
}

#[test]
fn a_channel_linger_overrides_the_drivers() {
    let mut stepped = Stepped::new("channel-linger", |config| {
        config.publication_linger = Duration::from_secs(5);
    });
    let tern = stepped.client(|_| {});
    let publication = stepped.add_publication(&tern, "tern:ipc?linger=1s", 12);
    let mut subscription = stepped.add_subscription(&tern, "tern:ipc", 12);
    stepped.step(&[&tern]);
    assert!(matches!(publication.offer(b"unread"), OfferResult::Ok(_)));
    drop(publication);
    stepped.advance(Duration::from_millis(900), 100 * MS, &[&tern]);
    assert!(subscription.is_connected(), "gone before its linger");
    stepped.advance(Duration::from_millis(300), 100 * MS, &[&tern]);
    assert!(
        !subscription.is_connected(),
        "the driver's 5 s linger was used"
    );
}

#[test]
fn a_drained_publication_goes_without_waiting_for_its_linger() {
    let mut stepped = Stepped::new("drained", |config| {
        config.publication_linger = Duration::from_secs(5);
    });
    let tern = stepped.client(|_| {});
    let publication = stepped.add_publication(&tern, "tern:ipc", 14);
    let mut subscription = stepped.add_subscription(&tern, "tern:ipc", 14);
    stepped.step(&[&tern]);
    assert!(matches!(publication.offer(b"read"), OfferResult::Ok(_)));
    assert_eq!(subscription.poll(|_, _| {}, 10), 1);
    drop(publication);
    stepped.advance(10 * MS, MS, &[&tern]);
    assert!(!subscription.is_connected());
}

#[test]
fn an_untethered_laggard_is_left_behind_rests_and_rejoins_at_the_tail() {
    let mut stepped = Stepped::new("untethered", |config| {
        config.untethered_window_limit_timeout = Duration::from_secs(5);
        config.untethered_resting_timeout = Duration::from_secs(10);
    });
    let (tern, events) = client_with_events(&stepped, |info| info.subscription_registration_id);
    let mut keeping_up = stepped.add_subscription(&tern, "tern:ipc", 17);
    let mut laggard = stepped.add_subscription(&tern, "tern:ipc?tether=false", 17);
    let publication = stepped.add_publication(&tern, "tern:ipc", 17);
    stepped.step(&[&tern]);
    let laggard_id = laggard.registration_id();
    // Fill the window: the laggard reads nothing and holds the publisher at its limit.
    let mut offer_and_read = |stepped: &mut Stepped| {
        let _ = publication.offer(&[1u8; 100]);
        keeping_up.poll(|_, _| {}, 64);
        stepped.step(&[&tern]);
    };
    for _ in 0..1_000 {
        offer_and_read(&mut stepped);
    }
    let held_at = publication.position();
    assert!(
        held_at >= publication.publisher_limit(),
        "held at the limit"
    );
    // Held for just under the window-limit timeout: still counted.
    for _ in 0..49 {
        stepped.clock.advance(100 * MS);
        offer_and_read(&mut stepped);
    }
    assert_eq!(publication.position(), held_at, "let go too soon");
    // Past it: left behind, and the publisher runs on past two windows and more. The client's
    // conductor does not run meanwhile, so the laggard's image is still in its hands when the
    // log is cleaned and rewritten past it, as when an application polls before its conductor
    // has heard that the image went away.
    stepped.clock.advance(200 * MS);
    for _ in 0..10_000 {
        let _ = publication.offer(&[1u8; 100]);
        keeping_up.poll(|_, _| {}, 64);
        stepped.driver.invoke();
        if publication.position() > held_at + 4 * 32 * 1024 {
            break;
        }
    }
    assert!(publication.position() > held_at + 4 * 32 * 1024);
    // The laggard polls now: it finds it was lapped and delivers nothing stale.
    assert_eq!(laggard.images().len(), 1, "the image is still held");
    assert_eq!(laggard.poll(|_, _| panic!("a stale frame"), 64), 0);
    assert!(laggard.images()[0].is_lapped());
    stepped.step(&[&tern]);
    assert!(
        events
            .lock()
            .unwrap()
            .contains(&("unavailable", laggard_id))
    );
    // After its rest it rejoins at the tail with a new image.
    let rejoined = |events: &Mutex<Vec<(&str, i64)>>| {
        events
            .lock()
            .unwrap()
            .iter()
            .filter(|(kind, id)| *kind == "available" && *id == laggard_id)
            .count()
            == 2
    };
    stepped.advance(Duration::from_millis(9_900), 100 * MS, &[&tern]);
    assert!(!rejoined(&events), "rejoined before its rest was over");
    stepped.advance(Duration::from_millis(300), 100 * MS, &[&tern]);
    assert!(rejoined(&events), "{:?}", events.lock().unwrap());
    let position = laggard.images().first().map(|image| image.position());
    assert!(
        position.is_some_and(|position| position > held_at + 4 * 32 * 1024 - 64 * 1024),
        "rejoined near the tail, not at the start: {position:?}"
    );
}

#[test]
fn a_rested_subscriber_does_not_rejoin_a_closed_publication() {
    let mut stepped = Stepped::new("rest-closed", |config| {
        config.untethered_window_limit_timeout = Duration::from_secs(1);
        config.untethered_resting_timeout = Duration::from_secs(2);
        config.publication_linger = Duration::from_secs(60);
    });
    let (tern, events) = client_with_events(&stepped, |info| info.subscription_registration_id);
    let mut keeping_up = stepped.add_subscription(&tern, "tern:ipc", 24);
    let laggard = stepped.add_subscription(&tern, "tern:ipc?tether=false", 24);
    let publication = stepped.add_publication(&tern, "tern:ipc", 24);
    stepped.step(&[&tern]);
    let laggard_id = laggard.registration_id();
    let count = |kind: &str| {
        events
            .lock()
            .unwrap()
            .iter()
            .filter(|(event, id)| *event == kind && *id == laggard_id)
            .count()
    };
    // Hold the publisher at the laggard's limit past the window-limit timeout: left behind.
    stepped.step_until(10 * MS, &[&tern], "the laggard left behind", || {
        let _ = publication.offer(&[1u8; 100]);
        keeping_up.poll(|_, _| {}, 64);
        count("unavailable") == 1
    });
    // Closed with a message the reader has not read: it lingers, and the rest runs out.
    stepped.step_until(MS, &[&tern], "an unread message", || {
        keeping_up.poll(|_, _| {}, 64);
        matches!(publication.offer(b"unread"), OfferResult::Ok(_))
    });
    drop(publication);
    stepped.advance(Duration::from_secs(5), 100 * MS, &[&tern]);
    assert_eq!(count("available"), 1, "rejoined a closed publication");
    // Past the linger the publication goes, with the resting laggard still unrejoined.
    stepped.advance(Duration::from_secs(60), Duration::from_secs(1), &[&tern]);
    assert!(
        !keeping_up.is_connected(),
        "the publication outlived its linger"
    );
    assert_eq!(count("available"), 1);
}
