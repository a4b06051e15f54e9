//! The data path allocates nothing: after warm-up, a million offer + poll cycles through a
//! publication, a subscription and a fragment assembler (fragmented messages included), and a
//! million through an exclusive publication, make no allocation on the thread that runs them.
//! A UDP stream through a driver the test thread runs (invoker mode) is counted end to end.
//! Allocations are counted per thread, so the driver's and the client conductor's threads do not
//! blur the count.
#![cfg(not(loom))]

use std::time::Duration;

use tern_engine::client::{ClientConfig, FragmentAssembler, OfferResult, Tern};
use tern_engine::driver::{DriverConfig, MediaDriver};

#[path = "../../codec/tests/support/counting_allocator.rs"]
mod counting_allocator;
use counting_allocator::counted;

#[cfg(target_os = "linux")]
#[path = "support/io_uring.rs"]
mod io_uring_support;
#[cfg(target_os = "linux")]
use io_uring_support::io_uring_runs;

/// An embedded driver with 1 MiB IPC terms in a directory named after `name`, and a client.
fn driver_and_client(name: &str) -> (MediaDriver, Tern) {
    let dir = std::env::temp_dir().join(format!("tern-test-{name}-{}", std::process::id()));
    let driver = MediaDriver::launch(DriverConfig {
        dir,
        ipc_term_length: 1024 * 1024,
        ..DriverConfig::default()
    })
    .unwrap();
    let tern = Tern::connect(ClientConfig {
        dir: driver.dir().to_path_buf(),
        ..ClientConfig::default()
    })
    .unwrap();
    (driver, tern)
}

#[test]
fn a_million_offer_poll_cycles_allocate_nothing() {
    let (_driver, tern) = driver_and_client("alloc");
    let publication = tern.add_publication("tern:ipc", 20).unwrap();
    let mut subscription = tern.add_subscription("tern:ipc", 20).unwrap();
    publication.wait_connected(Duration::from_secs(10)).unwrap();

    let small = [7u8; 32];
    let large = vec![9u8; 3000]; // three fragments at the default MTU
    let mut delivered = 0u64;
    let mut bytes = 0u64;
    let mut assembler = FragmentAssembler::new(|message: &[u8], _: &_| {
        delivered += 1;
        bytes += u64::try_from(message.len()).unwrap();
    });
    let mut cycle = |index: u64| {
        let message: &[u8] = if index.is_multiple_of(100) {
            &large
        } else {
            &small
        };
        loop {
            match publication.offer(message) {
                OfferResult::Ok(_) => break,
                OfferResult::BackPressured | OfferResult::AdminAction => {
                    subscription.poll(
                        |fragment, header| assembler.on_fragment(fragment, header),
                        64,
                    );
                }
                other => panic!("{other:?}"),
            }
        }
        subscription.poll(
            |fragment, header| assembler.on_fragment(fragment, header),
            64,
        );
    };
    for index in 0..10_000 {
        cycle(index);
    }
    let ((), allocations) = counted(|| {
        for index in 0..1_000_000 {
            cycle(index);
        }
    });
    drop(assembler);
    assert_eq!(
        allocations, 0,
        "the data path allocated {allocations} times"
    );
    assert!(delivered > 1_000_000, "delivered {delivered}");
    assert!(bytes > 32 * 1_000_000);
}

#[test]
fn a_million_exclusive_offers_and_polls_allocate_nothing() {
    let (_driver, tern) = driver_and_client("alloc-exclusive");
    let mut publication = tern.add_exclusive_publication("tern:ipc", 21).unwrap();
    let mut subscription = tern.add_subscription("tern:ipc", 21).unwrap();
    publication.wait_connected(Duration::from_secs(10)).unwrap();
    let small = [7u8; 32];
    let large = vec![9u8; 3000];
    let mut received = 0u64;
    let mut cycle = |index: u64| {
        // Unfragmented offers take the single-frame path; every hundredth is fragmented.
        let message: &[u8] = if index.is_multiple_of(100) {
            &large
        } else {
            &small
        };
        loop {
            match publication.offer(message) {
                OfferResult::Ok(_) => break,
                OfferResult::BackPressured | OfferResult::AdminAction => {
                    subscription.poll(|_, _| received += 1, 64);
                }
                other => panic!("{other:?}"),
            }
        }
        subscription.poll(|_, _| received += 1, 64);
    };
    for index in 0..10_000 {
        cycle(index);
    }
    let ((), allocations) = counted(|| {
        for index in 0..1_000_000 {
            cycle(index);
        }
    });
    assert_eq!(
        allocations, 0,
        "the exclusive data path allocated {allocations} times"
    );
    assert!(received > 1_000_000, "received {received} fragments");
}

#[cfg(target_os = "linux")]
#[test]
fn udp_sends_and_receives_in_batches_allocate_nothing() {
    udp_batches_allocate_nothing(tern_engine::udp_transport::UdpIo::Mmsg);
}

#[cfg(target_os = "linux")]
#[test]
fn udp_sends_and_receives_through_io_uring_allocate_nothing() {
    if io_uring_runs() {
        udp_batches_allocate_nothing(tern_engine::udp_transport::UdpIo::IoUring);
    }
}

#[cfg(target_os = "linux")]
fn udp_batches_allocate_nothing(io: tern_engine::udp_transport::UdpIo) {
    use tern_engine::channel::ChannelUri;
    use tern_engine::udp_channel::UdpChannel;
    use tern_engine::udp_transport::{SocketBuffers, UdpTransport};
    let resolve = |text: &str| UdpChannel::resolve(&ChannelUri::parse(text).unwrap()).unwrap();
    let mut receiver = UdpTransport::receiver(
        &resolve("tern:udp?endpoint=127.0.0.1:0"),
        SocketBuffers::default(),
    )
    .unwrap();
    receiver.use_io(io).unwrap();
    let destination = receiver.local_address().unwrap();
    let mut sender = UdpTransport::sender(
        &resolve(&format!("tern:udp?endpoint={destination}")),
        SocketBuffers::default(),
        true,
    )
    .unwrap();
    sender.use_io(io).unwrap();
    let datagram = [3u8; 1408];
    let batch: [&[u8]; 8] = [&datagram; 8];
    let mut bytes = 0usize;
    let mut cycle = || {
        let sent = sender.send(&batch, destination).unwrap();
        let mut received = 0;
        // Loopback delivers at once; what the socket dropped is not waited for.
        for _ in 0..1000 {
            received += receiver
                .receive(|payload, _| bytes += payload.len())
                .unwrap()
                .datagrams;
            if received >= sent {
                break;
            }
        }
    };
    for _ in 0..100 {
        cycle();
    }
    let ((), allocations) = counted(|| {
        for _ in 0..10_000 {
            cycle();
        }
    });
    assert_eq!(
        allocations, 0,
        "UDP send and receive allocated {allocations} times"
    );
    assert!(
        bytes > 1408 * 8 * 10_000 / 2,
        "most datagrams arrived: {bytes} bytes"
    );
}

/// A UDP stream end to end through a driver this thread runs (invoker mode): the sender's
/// scans, batches and sends, the receiver's reads, insertions, status messages and cleaning,
/// the conductor's limits, and the client's offers and polls allocate nothing after warm-up.
#[cfg(target_os = "linux")]
#[test]
fn a_udp_stream_through_an_invoked_driver_allocates_nothing() {
    udp_stream_allocates_nothing("mmsg");
}

/// As above, with every socket on io_uring.
#[cfg(target_os = "linux")]
#[test]
fn a_udp_stream_over_io_uring_through_an_invoked_driver_allocates_nothing() {
    if io_uring_runs() {
        udp_stream_allocates_nothing("io_uring");
    }
}

#[cfg(target_os = "linux")]
fn udp_stream_allocates_nothing(udp_io: &str) {
    use tern_engine::driver::ThreadingMode;
    let dir = std::env::temp_dir().join(format!(
        "tern-test-alloc-udp-{udp_io}-{}",
        std::process::id()
    ));
    let mut config = DriverConfig {
        dir,
        threading_mode: ThreadingMode::Invoker,
        ..DriverConfig::default()
    };
    config.set("udp_io", udp_io).unwrap();
    // Loss too, so that NAKs, retransmissions and the loss report are on the counted path.
    config
        .set(
            "receiver_loss",
            "drop=0.01,duplicate=0.01,reorder=0.01,seed=3",
        )
        .unwrap();
    let mut driver = MediaDriver::launch(config).unwrap();
    let tern = Tern::connect(ClientConfig {
        dir: driver.dir().to_path_buf(),
        ..ClientConfig::default()
    })
    .unwrap();
    let port = std::net::UdpSocket::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let channel = format!("tern:udp?endpoint=127.0.0.1:{port}|term-length=1m");
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    let subscription_id = tern.async_add_subscription(&channel, 22).unwrap();
    let mut subscription = loop {
        driver.invoke();
        if let Some(result) = tern.poll_subscription(subscription_id) {
            break result.unwrap();
        }
        assert!(std::time::Instant::now() < deadline);
    };
    let publication_id = tern.async_add_publication(&channel, 22).unwrap();
    let publication = loop {
        driver.invoke();
        if let Some(result) = tern.poll_publication(publication_id) {
            break result.unwrap();
        }
        assert!(std::time::Instant::now() < deadline);
    };
    while !publication.is_connected() || subscription.images().is_empty() {
        driver.invoke();
        subscription.poll(|_, _| {}, 1);
        assert!(std::time::Instant::now() < deadline, "no connection");
    }
    let small = [7u8; 32];
    let large = vec![9u8; 3000];
    let mut delivered = 0u64;
    let mut assembler = FragmentAssembler::new(|_: &[u8], _: &_| delivered += 1);
    let mut cycle = |index: u64| {
        let message: &[u8] = if index.is_multiple_of(100) {
            &large
        } else {
            &small
        };
        loop {
            driver.invoke();
            subscription.poll(
                |fragment, header| assembler.on_fragment(fragment, header),
                64,
            );
            match publication.offer(message) {
                OfferResult::Ok(_) => break,
                OfferResult::BackPressured | OfferResult::AdminAction => {}
                other => panic!("{other:?}"),
            }
        }
    };
    for index in 0..20_000 {
        cycle(index);
    }
    let ((), allocations) = counted(|| {
        for index in 0..200_000 {
            cycle(index);
        }
    });
    drop(assembler);
    assert_eq!(allocations, 0, "the UDP path allocated {allocations} times");
    assert!(delivered > 200_000, "delivered {delivered}");
    let mut retransmits = 0;
    tern.counters().for_each(|info| {
        if info.type_id == 0 && info.label == "retransmits" {
            retransmits = info.value;
        }
    });
    assert!(retransmits > 0, "the loss was repaired on the counted path");
}
