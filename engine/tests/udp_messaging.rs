//! End to end over `tern:udp` on loopback: one driver talking to itself, two drivers, loss
//! injected by the drivers' loss generators, the end of a stream, and channels refused.
#![cfg(all(not(loom), target_os = "linux"))]

use std::cell::RefCell;
use std::net::UdpSocket;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use tern_engine::client::{
    ClientConfig, ClientError, FragmentAssembler, OfferResult, Publication, Subscription, Tern,
};
use tern_engine::command::ErrorCode;
use tern_engine::driver::{DriverConfig, MediaDriver};

#[path = "support/io_uring.rs"]
mod io_uring_support;
use io_uring_support::io_uring_runs;

const DEADLINE: Duration = Duration::from_secs(20);

fn dir(name: &str) -> PathBuf {
    std::env::temp_dir().join(format!("tern-udp-{name}-{}", std::process::id()))
}

fn driver_with(name: &str, adjust: impl FnOnce(&mut DriverConfig)) -> MediaDriver {
    let mut config = DriverConfig {
        dir: dir(name),
        ..DriverConfig::default()
    };
    config.udp_term_length = 64 * 1024;
    config.publication_linger = Duration::from_millis(50);
    adjust(&mut config);
    MediaDriver::launch(config).unwrap()
}

fn client(driver: &MediaDriver) -> Tern {
    Tern::connect(ClientConfig {
        dir: driver.dir().to_path_buf(),
        ..ClientConfig::default()
    })
    .unwrap()
}

/// A loopback port nobody is bound to now.
fn free_port() -> u16 {
    UdpSocket::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// The value of the system counter labelled `label`.
fn system_counter(tern: &Tern, label: &str) -> i64 {
    let mut value = None;
    tern.counters().for_each(|info| {
        if info.type_id == 0 && info.label == label {
            value = Some(info.value);
        }
    });
    value.unwrap_or_else(|| panic!("no system counter {label:?}"))
}

fn messages(count: usize) -> Vec<Vec<u8>> {
    (0..count)
        .map(|index| {
            // Mostly small, every seventh longer than an MTU (fragmented), each distinct.
            let length = if index % 7 == 0 {
                3000 + index % 1000
            } else {
                8 + index % 200
            };
            let mut message = vec![u8::try_from(index % 251).unwrap(); length];
            message[..8].copy_from_slice(&u64::try_from(index).unwrap().to_le_bytes());
            message
        })
        .collect()
}

/// Sends `messages` and receives them all, interleaved, asserting order and content.
fn exchange(publication: &Publication, subscription: &mut Subscription, messages: &[Vec<u8>]) {
    let received = RefCell::new(Vec::new());
    let mut assembler = FragmentAssembler::new(|message: &[u8], _: &_| {
        received.borrow_mut().push(message.to_vec());
    });
    let deadline = Instant::now() + DEADLINE;
    let mut sent = 0;
    while received.borrow().len() < messages.len() {
        if sent < messages.len() {
            match publication.offer(&messages[sent]) {
                OfferResult::Ok(_) => sent += 1,
                OfferResult::BackPressured
                | OfferResult::AdminAction
                | OfferResult::NotConnected => {}
                other => panic!("offer failed: {other:?}"),
            }
        }
        subscription.poll(
            |fragment, header| assembler.on_fragment(fragment, header),
            64,
        );
        assert!(
            Instant::now() < deadline,
            "received {} of {} (sent {sent})",
            received.borrow().len(),
            messages.len()
        );
    }
    let received = received.into_inner();
    for (index, (got, want)) in received.iter().zip(messages).enumerate() {
        assert!(
            got == want,
            "message {index} differs: {} bytes, wanted {}",
            got.len(),
            want.len()
        );
    }
    assert_eq!(received.len(), messages.len());
}

fn channel(port: u16) -> String {
    format!("tern:udp?endpoint=127.0.0.1:{port}|term-length=64k")
}

fn wait_connected(publication: &Publication, subscription: &mut Subscription) {
    publication.wait_connected(DEADLINE).unwrap();
    let deadline = Instant::now() + DEADLINE;
    while !subscription.is_connected() {
        subscription.poll(|_, _| {}, 1);
        assert!(Instant::now() < deadline, "no image");
        std::thread::yield_now();
    }
}

#[test]
fn one_driver_sends_to_itself_over_loopback() {
    let driver = driver_with("self", |_| {});
    let tern = client(&driver);
    let port = free_port();
    let mut subscription = tern.add_subscription(&channel(port), 7).unwrap();
    let publication = tern.add_publication(&channel(port), 7).unwrap();
    wait_connected(&publication, &mut subscription);
    exchange(&publication, &mut subscription, &messages(5_000));
    assert!(system_counter(&tern, "bytes sent") >= system_counter(&tern, "bytes received"));
    assert!(system_counter(&tern, "status messages received") > 0);
    assert_eq!(system_counter(&tern, "invalid frames"), 0);
}

#[test]
fn two_drivers_exchange_a_stream_with_connected_or_unconnected_send_sockets() {
    for connect in ["true", "false"] {
        let sending = driver_with(&format!("two-send-{connect}"), |config| {
            config.set("udp_connect", connect).unwrap();
        });
        let receiving = driver_with(&format!("two-receive-{connect}"), |_| {});
        let (publisher, subscriber) = (client(&sending), client(&receiving));
        let port = free_port();
        // The publication first: its first SETUPs meet a closed port (ICMP port unreachable,
        // which a connected socket reports on its next call), never counted as an error.
        let publication = publisher.add_publication(&channel(port), 8).unwrap();
        let mut subscription = subscriber.add_subscription(&channel(port), 8).unwrap();
        wait_connected(&publication, &mut subscription);
        exchange(&publication, &mut subscription, &messages(5_000));
        assert_eq!(system_counter(&publisher, "send errors"), 0, "{connect}");
    }
}

#[test]
fn loss_on_both_sides_is_repaired_in_order() {
    loss_on_both_sides("loss", "mmsg", 11, 9);
}

#[test]
fn drivers_on_io_uring_repair_loss_in_order() {
    if io_uring_runs() {
        loss_on_both_sides("uring", "io_uring", 31, 19);
    }
}

/// Two drivers on `udp_io`, loss on both sides (seeds from `seed`): a stream on `stream`
/// arrives whole and in order, the loss is counted, repaired and reported.
fn loss_on_both_sides(tag: &str, udp_io: &str, seed: u64, stream: i32) {
    let loss = |seed: u64| format!("drop=0.1,duplicate=0.05,reorder=0.05,seed={seed}");
    let sending = driver_with(&format!("{tag}-send"), |config| {
        config.set("udp_io", udp_io).unwrap();
        config.set("sender_loss", &loss(seed)).unwrap();
    });
    let receiving = driver_with(&format!("{tag}-receive"), |config| {
        config.set("udp_io", udp_io).unwrap();
        config.set("receiver_loss", &loss(seed + 1)).unwrap();
    });
    let (publisher, subscriber) = (client(&sending), client(&receiving));
    let port = free_port();
    let mut subscription = subscriber.add_subscription(&channel(port), stream).unwrap();
    let publication = publisher.add_publication(&channel(port), stream).unwrap();
    wait_connected(&publication, &mut subscription);
    exchange(&publication, &mut subscription, &messages(5_000));
    let counted = |tern: &Tern, label: &str| {
        let value = system_counter(tern, label);
        assert!(value > 0, "{label}: {value}");
        value
    };
    counted(&publisher, "loss generator drops");
    counted(&subscriber, "loss generator drops");
    counted(&subscriber, "naks sent");
    counted(&subscriber, "duplicate frames");
    counted(&publisher, "naks received");
    counted(&publisher, "retransmits");
    assert_eq!(system_counter(&subscriber, "invalid frames"), 0);
    // The receiving driver's loss report names the stream, its source and what went missing.
    let mut entries = Vec::new();
    tern_engine::loss_report::read(receiving.dir(), |entry| entries.push(entry)).unwrap();
    assert_eq!(entries.len(), 1, "{entries:?}");
    assert_eq!(entries[0].stream_id, stream);
    assert_eq!(entries[0].session_id, publication.session_id());
    assert!(entries[0].observations > 0 && entries[0].bytes > 0);
    assert!(entries[0].channel.contains(&port.to_string()));
    assert!(entries[0].source.starts_with("127.0.0.1:"));
    let mut nothing = Vec::new();
    tern_engine::loss_report::read(sending.dir(), |entry| nothing.push(entry)).unwrap();
    assert!(
        nothing.is_empty(),
        "the sending driver received nothing lossy"
    );
}

#[test]
fn a_closed_publication_ends_its_stream_and_the_image_goes() {
    let driver = driver_with("eos", |_| {});
    let tern = client(&driver);
    let port = free_port();
    let mut subscription = tern.add_subscription(&channel(port), 10).unwrap();
    let publication = tern.add_publication(&channel(port), 10).unwrap();
    wait_connected(&publication, &mut subscription);
    exchange(&publication, &mut subscription, &messages(100));
    drop(publication);
    let deadline = Instant::now() + DEADLINE;
    while subscription.is_connected() {
        subscription.poll(|_, _| {}, 10);
        assert!(
            Instant::now() < deadline,
            "the image stayed after the end of stream"
        );
        std::thread::yield_now();
    }
}

#[test]
fn bad_udp_channels_are_refused_with_the_reason() {
    let driver = driver_with("refused", |_| {});
    let tern = client(&driver);
    for (channel, wanted) in [
        ("tern:udp?term-length=64k", "endpoint"),
        (
            "tern:udp?endpoint=no-such-host.invalid:40123",
            "no-such-host.invalid",
        ),
        ("tern:udp?endpoint=127.0.0.1", "endpoint"),
    ] {
        let error = tern.add_publication(channel, 1).unwrap_err();
        let ClientError::Refused { code, message } = error else {
            panic!("{channel}: {error:?}");
        };
        assert_eq!(code, ErrorCode::InvalidChannel, "{channel}: {message}");
        assert!(message.contains(wanted), "{channel}: {message}");
        let error = tern.add_subscription(channel, 1).unwrap_err();
        assert!(
            matches!(
                error,
                ClientError::Refused {
                    code: ErrorCode::InvalidChannel,
                    ..
                }
            ),
            "{channel}: {error:?}"
        );
    }
    // A port another socket holds cannot be bound.
    let holder = UdpSocket::bind("127.0.0.1:0").unwrap();
    let port = holder.local_addr().unwrap().port();
    let error = tern.add_subscription(&channel(port), 1).unwrap_err();
    let ClientError::Refused { message, .. } = error else {
        panic!("{error:?}");
    };
    assert!(message.contains("cannot bind"), "{message}");
}

/// Malformed datagrams of every kind the receiver must survive, each counted once as invalid.
fn malformed(random: &mut u64, kind: u64, session_id: i32, stream_id: i32) -> Vec<u8> {
    let mut next = || {
        *random ^= *random << 13;
        *random ^= *random >> 7;
        *random ^= *random << 17;
        *random
    };
    let data_header = |frame_length: i32, term_offset: i32| {
        let mut frame = vec![0u8; 32];
        frame[0..4].copy_from_slice(&frame_length.to_le_bytes());
        frame[5] = 0xC0;
        frame[6..8].copy_from_slice(&1u16.to_le_bytes());
        frame[8..12].copy_from_slice(&term_offset.to_le_bytes());
        frame[12..16].copy_from_slice(&session_id.to_le_bytes());
        frame[16..20].copy_from_slice(&stream_id.to_le_bytes());
        frame
    };
    match kind % 5 {
        // Random bytes of a random length, the version byte (if any) never 0.
        0 => {
            let length = usize::try_from(next() % 1400).unwrap() + 1;
            let mut bytes: Vec<u8> = (0..length).map(|_| next().to_le_bytes()[0]).collect();
            if let Some(version) = bytes.get_mut(4) {
                *version = version.saturating_add(1).max(1);
            }
            bytes
        }
        // A header cut short.
        1 => {
            let length = usize::try_from(next() % 31).unwrap() + 1;
            data_header(64, 0)[..length].to_vec()
        }
        // A valid DATA header of another protocol version.
        2 => {
            let mut frame = data_header(32, 0);
            frame[4] = u8::try_from(next() % 255).unwrap() + 1;
            frame
        }
        // A frame length past the end of the datagram.
        3 => {
            let mut frame = data_header(1024, 0);
            frame.extend_from_slice(&[7u8; 64]);
            frame
        }
        // The stream's own session, at an offset outside the term or off the alignment.
        _ => {
            let offsets = [i32::MAX - 31, -64, 64 * 1024 - 32, 33];
            let offset = offsets[usize::try_from(next() % 4).unwrap()];
            let mut frame = data_header(64, offset);
            frame.extend_from_slice(&[9u8; 32]);
            frame
        }
    }
}

#[test]
fn a_hundred_thousand_malformed_datagrams_are_counted_and_the_stream_loses_nothing() {
    const MALFORMED: u64 = 100_000;
    const BURST: u64 = 100;
    let driver = driver_with("malformed", |_| {});
    let tern = client(&driver);
    let port = free_port();
    let mut subscription = tern.add_subscription(&channel(port), 11).unwrap();
    let publication = tern.add_publication(&channel(port), 11).unwrap();
    wait_connected(&publication, &mut subscription);
    let session_id = publication.session_id();
    let attacker = UdpSocket::bind("127.0.0.1:0").unwrap();
    let sent = messages(20_000);
    let received = RefCell::new(Vec::new());
    let mut assembler = FragmentAssembler::new(|message: &[u8], _: &_| {
        received.borrow_mut().push(message.to_vec());
    });
    let mut random = 0x9E37_79B9_7F4A_7C15u64;
    let (mut fired, mut offered) = (0u64, 0usize);
    let deadline = Instant::now() + Duration::from_secs(120);
    while fired < MALFORMED || received.borrow().len() < sent.len() {
        if fired < MALFORMED {
            for _ in 0..BURST {
                let datagram = malformed(&mut random, fired, session_id, 11);
                attacker.send_to(&datagram, ("127.0.0.1", port)).unwrap();
                fired += 1;
            }
        }
        // Bursts small enough for the socket's buffer: every datagram reaches the driver, so
        // the count must match exactly. Wait for this burst to be counted while the stream runs.
        loop {
            for _ in 0..8 {
                if offered < sent.len()
                    && matches!(publication.offer(&sent[offered]), OfferResult::Ok(_))
                {
                    offered += 1;
                }
            }
            subscription.poll(
                |fragment, header| assembler.on_fragment(fragment, header),
                64,
            );
            let counted = u64::try_from(system_counter(&tern, "invalid frames")).unwrap();
            assert!(counted <= fired, "{counted} counted, {fired} fired");
            assert!(
                Instant::now() < deadline,
                "{counted} of {fired} counted; {} of {} received",
                received.borrow().len(),
                sent.len()
            );
            if counted == fired {
                break;
            }
        }
    }
    assert_eq!(
        u64::try_from(system_counter(&tern, "invalid frames")).unwrap(),
        MALFORMED
    );
    let received = received.into_inner();
    assert_eq!(received.len(), sent.len());
    assert!(received == sent, "the stream arrived intact and in order");
    assert_eq!(system_counter(&tern, "images created"), 1);
    assert_eq!(system_counter(&tern, "errors"), 0);
    assert!(driver.failure().is_none());
}

#[test]
fn a_fixed_gap_in_every_term_is_asked_for_and_repaired() {
    let driver = driver_with("gap", |config| {
        config.set("receiver_loss", "gap=8192/2048").unwrap();
    });
    let tern = client(&driver);
    let port = free_port();
    let mut subscription = tern.add_subscription(&channel(port), 12).unwrap();
    let publication = tern.add_publication(&channel(port), 12).unwrap();
    wait_connected(&publication, &mut subscription);
    // About 1.4 MB: more than twenty 64 KiB terms, each with its gap.
    exchange(&publication, &mut subscription, &messages(5_000));
    let naks = system_counter(&tern, "naks sent");
    assert!(naks >= 20, "{naks} NAKs");
    assert!(system_counter(&tern, "loss generator drops") >= 20);
}

#[test]
fn a_setup_asking_for_a_huge_term_makes_no_image_and_is_logged() {
    let driver = driver_with("huge-setup", |_| {});
    let tern = client(&driver);
    let port = free_port();
    let _subscription = tern.add_subscription(&channel(port), 13).unwrap();
    let spoofer = UdpSocket::bind("127.0.0.1:0").unwrap();
    let setup = tern_codec::frame::Setup {
        frame_length: 40,
        flags: 0,
        term_offset: 0,
        session_id: 99,
        stream_id: 13,
        initial_term_id: 0,
        active_term_id: 0,
        term_length: 1 << 30,
        mtu: 1408,
        ttl: 0,
    };
    let mut bytes = [0u8; 40];
    setup.encode(&mut bytes).unwrap();
    let deadline = Instant::now() + DEADLINE;
    loop {
        spoofer.send_to(&bytes, ("127.0.0.1", port)).unwrap();
        std::thread::sleep(Duration::from_millis(20));
        let cnc = tern_engine::cnc::CncFile::open(driver.dir()).unwrap();
        let mut refused = false;
        tern_engine::concurrent::error_log::read_errors(cnc.sections().error_log, |error| {
            refused |=
                error.text.contains("refused") && error.text.contains("max_image_term_length");
        });
        if refused {
            break;
        }
        assert!(Instant::now() < deadline, "the SETUP was not refused");
    }
    assert_eq!(system_counter(&tern, "images created"), 0);
    assert!(
        !driver.dir().join("images").exists()
            || std::fs::read_dir(driver.dir().join("images"))
                .unwrap()
                .next()
                .is_none(),
        "no log file was made"
    );
}

/// Polls `subscriptions` until each has an image (bounded).
fn wait_all_connected(subscriptions: &mut [Subscription]) {
    let deadline = Instant::now() + DEADLINE;
    while subscriptions
        .iter_mut()
        .any(|subscription| !subscription.is_connected())
    {
        for subscription in subscriptions.iter_mut() {
            subscription.poll(|_, _| {}, 1);
        }
        assert!(
            Instant::now() < deadline,
            "not every subscription has an image"
        );
    }
}

/// Offers `sent` and polls every subscription until each has received all of it; returns
/// what each received.
fn publish_all(
    publication: &Publication,
    sent: &[Vec<u8>],
    subscriptions: &mut [Subscription],
) -> Vec<Vec<Vec<u8>>> {
    let received: Vec<RefCell<Vec<Vec<u8>>>> = subscriptions
        .iter()
        .map(|_| RefCell::new(Vec::new()))
        .collect();
    let mut assemblers: Vec<_> = received
        .iter()
        .map(|into| {
            FragmentAssembler::new(move |message: &[u8], _: &_| {
                into.borrow_mut().push(message.to_vec());
            })
        })
        .collect();
    let mut offered = 0;
    let deadline = Instant::now() + DEADLINE;
    while received.iter().any(|into| into.borrow().len() < sent.len()) {
        if offered < sent.len() {
            match publication.offer(&sent[offered]) {
                OfferResult::Ok(_) => offered += 1,
                OfferResult::BackPressured
                | OfferResult::AdminAction
                | OfferResult::NotConnected => {}
                other => panic!("offer failed: {other:?}"),
            }
        }
        for (subscription, assembler) in subscriptions.iter_mut().zip(&mut assemblers) {
            subscription.poll(
                |fragment, header| assembler.on_fragment(fragment, header),
                64,
            );
        }
        assert!(
            Instant::now() < deadline,
            "offered {offered}; not every subscriber got all"
        );
    }
    drop(assemblers);
    received.into_iter().map(RefCell::into_inner).collect()
}

#[test]
fn a_manual_multi_destination_publication_reaches_each_destination_added() {
    let driver = driver_with("mdc-manual", |_| {});
    let tern = client(&driver);
    let (control, first, second) = (free_port(), free_port(), free_port());
    let mut subscriptions = vec![
        tern.add_subscription(&channel(first), 14).unwrap(),
        tern.add_subscription(&channel(second), 14).unwrap(),
    ];
    let publication = tern
        .add_publication(
            &format!(
                "tern:udp?control=127.0.0.1:{control}|control-mode=manual|term-length=64k|fc=min"
            ),
            14,
        )
        .unwrap();
    publication
        .add_destination(&format!("tern:udp?endpoint=127.0.0.1:{first}"))
        .unwrap();
    publication
        .add_destination(&format!("tern:udp?endpoint=127.0.0.1:{second}"))
        .unwrap();
    publication.wait_connected(DEADLINE).unwrap();
    wait_all_connected(&mut subscriptions);
    let sent = messages(300);
    let received = publish_all(&publication, &sent, &mut subscriptions);
    for got in received {
        assert!(got == sent, "each destination gets every message, in order");
    }
    assert_eq!(system_counter(&tern, "images created"), 2);
    // A destination that is not one: refused with the reason.
    let error = publication
        .add_destination("tern:udp?control=127.0.0.1:9")
        .unwrap_err();
    assert!(error.to_string().contains("endpoint"), "{error}");
    let error = publication
        .add_destination("tern:udp?endpoint=127.0.0.1:0")
        .unwrap_err();
    assert!(error.to_string().contains("port"), "{error}");
    // Manual destinations only on a manual multi-destination publication.
    let plain = tern.add_publication(&channel(free_port()), 15).unwrap();
    let error = plain.add_destination(&channel(first)).unwrap_err();
    assert!(error.to_string().contains("manual"), "{error}");
}

#[test]
fn dynamic_multi_destination_subscribers_join_through_the_control_address() {
    let driver = driver_with("mdc-dynamic", |_| {});
    let tern = client(&driver);
    let control = free_port();
    let subscriber_channel = |port: u16| {
        format!(
            "tern:udp?endpoint=127.0.0.1:{port}|control=127.0.0.1:{control}|control-mode=dynamic"
        )
    };
    let publication = tern
        .add_publication(
            &format!("tern:udp?control=127.0.0.1:{control}|control-mode=dynamic|term-length=64k|fc=min,g:/2"),
            16,
        )
        .unwrap();
    let mut subscriptions = vec![
        tern.add_subscription(&subscriber_channel(free_port()), 16)
            .unwrap(),
        tern.add_subscription(&subscriber_channel(free_port()), 16)
            .unwrap(),
    ];
    publication.wait_connected(DEADLINE).unwrap();
    wait_all_connected(&mut subscriptions);
    let sent = messages(300);
    let received = publish_all(&publication, &sent, &mut subscriptions);
    for got in received {
        assert!(got == sent, "each subscriber gets every message, in order");
    }
    assert_eq!(system_counter(&tern, "images created"), 2);
}

#[test]
fn a_multi_destination_subscription_merges_two_paths_into_one_image() {
    // No loss here, so that every frame arrives twice, once by each path, and nothing else
    // makes duplicates (no retransmissions); the multi-host test merges paths under loss.
    let driver = driver_with("mds-manual", |_| {});
    let tern = client(&driver);
    let (control, first, second) = (free_port(), free_port(), free_port());
    let destination = |port: u16| format!("tern:udp?endpoint=127.0.0.1:{port}");
    let subscription = tern
        .add_subscription("tern:udp?control-mode=manual", 17)
        .unwrap();
    subscription.add_destination(&destination(first)).unwrap();
    subscription.add_destination(&destination(second)).unwrap();
    let publication = tern
        .add_publication(
            &format!(
                "tern:udp?control=127.0.0.1:{control}|control-mode=manual|term-length=64k|fc=min"
            ),
            17,
        )
        .unwrap();
    publication.add_destination(&destination(first)).unwrap();
    publication.add_destination(&destination(second)).unwrap();
    publication.wait_connected(DEADLINE).unwrap();
    let mut subscriptions = vec![subscription];
    wait_all_connected(&mut subscriptions);
    let sent = messages(500);
    let received = publish_all(&publication, &sent, &mut subscriptions);
    assert!(received[0] == sent, "every message once, in order");
    assert_eq!(
        subscriptions[0].images().len(),
        1,
        "both paths fill one image"
    );
    assert_eq!(system_counter(&tern, "images created"), 1);
    let frames = i64::try_from(sent.len()).unwrap();
    assert!(
        system_counter(&tern, "duplicate frames") >= frames / 2,
        "the second path's copies arrived and were recognised as such: {}",
        system_counter(&tern, "duplicate frames")
    );
    assert_eq!(system_counter(&tern, "naks sent"), 0);

    // One path goes: the stream carries on over the other.
    subscriptions[0]
        .remove_destination(&destination(first))
        .unwrap();
    let more = messages(200);
    let received = publish_all(&publication, &more, &mut subscriptions);
    assert!(received[0] == more, "nothing lost after a destination went");
    assert_eq!(system_counter(&tern, "images created"), 1);

    // Refusals, each with its reason.
    let error = subscriptions[0]
        .add_destination(&destination(second))
        .unwrap_err();
    assert!(error.to_string().contains("already"), "{error}");
    let error = subscriptions[0]
        .remove_destination(&destination(first))
        .unwrap_err();
    assert!(error.to_string().contains("not a destination"), "{error}");
    let error = subscriptions[0]
        .add_destination("tern:udp?control=127.0.0.1:9")
        .unwrap_err();
    assert!(error.to_string().contains("endpoint"), "{error}");
    let plain = tern.add_subscription(&channel(free_port()), 17).unwrap();
    let error = plain.add_destination(&destination(first)).unwrap_err();
    assert!(error.to_string().contains("multi-destination"), "{error}");
    let error = tern
        .add_subscription(
            &format!("tern:udp?endpoint=127.0.0.1:{first}|control-mode=manual"),
            17,
        )
        .unwrap_err();
    assert!(error.to_string().contains("destinations"), "{error}");
    // A taken address cannot be a destination.
    let taken = UdpSocket::bind("127.0.0.1:0").unwrap();
    let error = subscriptions[0]
        .add_destination(&format!(
            "tern:udp?endpoint={}",
            taken.local_addr().unwrap()
        ))
        .unwrap_err();
    assert!(error.to_string().contains("cannot bind"), "{error}");
}

#[test]
fn a_multi_destination_subscription_joins_a_dynamic_publication_through_each_destination() {
    let driver = driver_with("mds-dynamic", |config| {
        config.set("receiver_loss", "drop=0.1,seed=22").unwrap();
    });
    let tern = client(&driver);
    let (control, first, second) = (free_port(), free_port(), free_port());
    let destination = |port: u16| {
        format!(
            "tern:udp?endpoint=127.0.0.1:{port}|control=127.0.0.1:{control}|control-mode=dynamic"
        )
    };
    let publication = tern
        .add_publication(
            &format!("tern:udp?control=127.0.0.1:{control}|control-mode=dynamic|term-length=64k"),
            18,
        )
        .unwrap();
    let subscription = tern
        .add_subscription("tern:udp?control-mode=manual", 18)
        .unwrap();
    subscription.add_destination(&destination(first)).unwrap();
    subscription.add_destination(&destination(second)).unwrap();
    publication.wait_connected(DEADLINE).unwrap();
    let mut subscriptions = vec![subscription];
    wait_all_connected(&mut subscriptions);
    let sent = messages(300);
    let received = publish_all(&publication, &sent, &mut subscriptions);
    assert!(received[0] == sent, "every message once, in order");
    // The first destination goes; the publication reaches the second, which asked to join
    // from its own socket.
    subscriptions[0]
        .remove_destination(&destination(first))
        .unwrap();
    let more = messages(200);
    let received = publish_all(&publication, &more, &mut subscriptions);
    assert!(received[0] == more, "nothing lost after a destination went");
    assert_eq!(system_counter(&tern, "images created"), 1);
}

#[test]
fn a_multi_destination_subscription_on_io_uring_takes_its_stream() {
    if !io_uring_runs() {
        return;
    }
    let driver = driver_with("uring-mds", |config| {
        config.set("udp_io", "io_uring").unwrap();
    });
    let (publisher, subscriber) = (client(&driver), client(&driver));
    // A multi-destination subscription's sockets take the driver's backend too.
    let merged = subscriber
        .add_subscription("tern:udp?control-mode=manual", 20)
        .unwrap();
    let second = free_port();
    merged
        .add_destination(&format!("tern:udp?endpoint=127.0.0.1:{second}"))
        .unwrap();
    let to_second = publisher.add_publication(&channel(second), 20).unwrap();
    let mut merged = merged;
    wait_connected(&to_second, &mut merged);
    exchange(&to_second, &mut merged, &messages(500));
}
