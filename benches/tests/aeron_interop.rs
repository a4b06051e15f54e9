//! tern and Aeron C 1.54 on one wire: an Aeron C publication to a tern subscription and a tern
//! publication to an Aeron C subscription, over UDP unicast on loopback, with unfragmented and
//! fragmented messages, clean and with loss injected on the tern side. Every message must arrive
//! intact, once, in order. Aeron is the independent implementation that checks tern's protocol.
//!
//! Built with `--features aeron` (Aeron C is built from source through rusteron; `.ci/run`
//! installs what that needs and runs this test).

use std::ffi::CString;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rusteron_client::{
    Aeron, AeronContext, AeronFragmentHandlerCallback, AeronHeader, AeronPublication,
    AeronSubscription, Handler, Handlers,
};
use rusteron_media_driver::testing::EmbeddedDriver;
use tern_engine::client::{ClientConfig, FragmentAssembler, OfferResult, Tern};
use tern_engine::driver::{DriverConfig, MediaDriver};

const DEADLINE: Duration = Duration::from_secs(30);
const MESSAGES: usize = 2_000;

fn tern_driver(name: &str, adjust: impl FnOnce(&mut DriverConfig)) -> MediaDriver {
    let mut config = DriverConfig {
        dir: std::env::temp_dir().join(format!("tern-interop-{name}-{}", std::process::id())),
        ..DriverConfig::default()
    };
    config.publication_linger = Duration::from_millis(200);
    adjust(&mut config);
    MediaDriver::launch(config).expect("the tern driver starts")
}

fn tern_client(driver: &MediaDriver) -> Tern {
    Tern::connect(ClientConfig {
        dir: driver.dir().to_path_buf(),
        ..ClientConfig::default()
    })
    .expect("a tern client")
}

fn aeron_driver() -> EmbeddedDriver {
    EmbeddedDriver::launch_with(|context| {
        context.set_threading_mode(
            rusteron_media_driver::bindings::aeron_threading_mode_enum::AERON_THREADING_MODE_SHARED,
        )?;
        context.set_term_buffer_sparse_file(true)?;
        Ok(())
    })
    .expect("the Aeron C driver starts")
}

fn aeron_client(driver: &EmbeddedDriver) -> Aeron {
    let context = AeronContext::new().expect("an Aeron context");
    context
        .set_dir(&CString::new(driver.dir()).expect("no NUL"))
        .expect("the Aeron directory");
    let aeron = Aeron::new(&context).expect("an Aeron client");
    aeron.start().expect("the Aeron client starts");
    aeron
}

fn free_port() -> u16 {
    std::net::UdpSocket::bind("127.0.0.1:0")
        .and_then(|socket| socket.local_addr())
        .map(|address| address.port())
        .expect("a free port")
}

/// Distinct messages: most fit one frame, every fifth is fragmented (longer than the MTU).
fn messages() -> Vec<Vec<u8>> {
    (0..MESSAGES)
        .map(|index| {
            let length = if index % 5 == 0 {
                3_000 + index % 2_000
            } else {
                16 + index % 300
            };
            let mut message = vec![u8::try_from(index % 251).expect("small"); length];
            message[..8].copy_from_slice(&u64::try_from(index).expect("small").to_le_bytes());
            message
        })
        .collect()
}

fn check(received: &[Vec<u8>], sent: &[Vec<u8>]) {
    assert_eq!(received.len(), sent.len(), "every message, once");
    for (index, (got, want)) in received.iter().zip(sent).enumerate() {
        assert!(
            got == want,
            "message {index}: {} bytes, wanted {}",
            got.len(),
            want.len()
        );
    }
}

/// The value of tern's system counter labelled `label`.
fn tern_counter(tern: &Tern, label: &str) -> i64 {
    let mut value = None;
    tern.counters().for_each(|info| {
        if info.type_id == 0 && info.label == label {
            value = Some(info.value);
        }
    });
    value.unwrap_or_else(|| panic!("no system counter {label:?}"))
}

/// What tern's counters must show after an exchange.
#[derive(Clone, Copy)]
enum Expect {
    /// Nothing lost, nothing repaired.
    Clean,
    /// The tern receiver dropped datagrams and NAKed them.
    ReceiverLoss,
    /// The tern sender dropped datagrams and resent them when Aeron NAKed.
    SenderLoss,
}

fn check_counters(tern: &Tern, expect: Expect) {
    // Every frame Aeron sent was one tern understood.
    assert_eq!(tern_counter(tern, "invalid frames"), 0);
    let positive = |label: &str| {
        let value = tern_counter(tern, label);
        assert!(value > 0, "{label} = {value}");
    };
    match expect {
        Expect::Clean => assert_eq!(tern_counter(tern, "loss generator drops"), 0),
        Expect::ReceiverLoss => {
            positive("loss generator drops");
            positive("naks sent");
        }
        Expect::SenderLoss => {
            positive("loss generator drops");
            positive("naks received");
            positive("retransmits");
        }
    }
}

struct Collect(Arc<Mutex<Vec<Vec<u8>>>>);

impl AeronFragmentHandlerCallback for Collect {
    fn handle_aeron_fragment_handler(&mut self, buffer: &[u8], _header: AeronHeader) {
        self.0.lock().expect("not poisoned").push(buffer.to_vec());
    }
}

/// An Aeron C publication sends to a tern subscription.
fn aeron_to_tern(name: &str, expect: Expect, adjust: impl FnOnce(&mut DriverConfig)) {
    let tern = tern_driver(name, adjust);
    let aeron = aeron_driver();
    let port = free_port();
    let subscriber = tern_client(&tern);
    let mut subscription = subscriber
        .add_subscription(&format!("tern:udp?endpoint=127.0.0.1:{port}"), 1001)
        .expect("a tern subscription");
    let publisher = aeron_client(&aeron);
    let channel = CString::new(format!(
        "aeron:udp?endpoint=127.0.0.1:{port}|term-length=64k"
    ))
    .expect("no NUL");
    let publication: AeronPublication = publisher
        .async_add_publication(&channel, 1001)
        .and_then(|pending| pending.poll_blocking(Duration::from_secs(10)))
        .expect("an Aeron publication");
    let sent = messages();
    let received = aeron_to_tern_subscription(&publication, &mut subscription, &sent);
    check(&received, &sent);
    check_counters(&subscriber, expect);
}

/// A tern publication sends to an Aeron C subscription.
fn tern_to_aeron(name: &str, expect: Expect, adjust: impl FnOnce(&mut DriverConfig)) {
    let tern = tern_driver(name, adjust);
    let aeron = aeron_driver();
    let port = free_port();
    let subscriber = aeron_client(&aeron);
    let channel = CString::new(format!("aeron:udp?endpoint=127.0.0.1:{port}")).expect("no NUL");
    let subscription: AeronSubscription = subscriber
        .async_add_subscription(&channel, 1002, Handlers::NONE, Handlers::NONE)
        .and_then(|pending| pending.poll_blocking(Duration::from_secs(10)))
        .expect("an Aeron subscription");
    let collected = Arc::new(Mutex::new(Vec::new()));
    let (assembler, _delegate) =
        Handler::with_fragment_assembler(Collect(Arc::clone(&collected))).expect("an assembler");
    let publisher = tern_client(&tern);
    let publication = publisher
        .add_publication(
            &format!("tern:udp?endpoint=127.0.0.1:{port}|term-length=64k"),
            1002,
        )
        .expect("a tern publication");
    let sent = messages();
    let deadline = Instant::now() + DEADLINE;
    let mut next = 0;
    loop {
        let count = collected.lock().expect("not poisoned").len();
        if count >= sent.len() {
            break;
        }
        if next < sent.len() {
            match publication.offer(&sent[next]) {
                OfferResult::Ok(_) => next += 1,
                OfferResult::BackPressured
                | OfferResult::AdminAction
                | OfferResult::NotConnected => {}
                other => panic!("offer failed: {other:?}"),
            }
        }
        subscription
            .poll(Some(&assembler), 64)
            .expect("Aeron polls");
        assert!(
            Instant::now() < deadline,
            "Aeron received {count} of {} (tern offered {next})",
            sent.len()
        );
    }
    let received = std::mem::take(&mut *collected.lock().expect("not poisoned"));
    check(&received, &sent);
    check_counters(&publisher, expect);
}

#[test]
fn an_aeron_publication_reaches_a_tern_subscription() {
    aeron_to_tern("a2t", Expect::Clean, |_| {});
}

#[test]
fn an_aeron_publication_reaches_a_tern_subscription_through_loss() {
    aeron_to_tern("a2t-loss", Expect::ReceiverLoss, |config| {
        config
            .set("receiver_loss", "drop=0.05,duplicate=0.02,seed=5")
            .expect("a loss setting");
    });
}

#[test]
fn a_tern_publication_reaches_an_aeron_subscription() {
    tern_to_aeron("t2a", Expect::Clean, |_| {});
}

#[test]
fn a_tern_publication_reaches_an_aeron_subscription_through_loss() {
    tern_to_aeron("t2a-loss", Expect::SenderLoss, |config| {
        config
            .set("sender_loss", "drop=0.05,duplicate=0.02,seed=6")
            .expect("a loss setting");
    });
}

/// Polls `subscription` (Aeron C) with an assembler until `count` messages arrived.
fn aeron_receive(
    subscription: &AeronSubscription,
    count: usize,
    publish: &mut dyn FnMut(),
) -> Vec<Vec<u8>> {
    let collected = Arc::new(Mutex::new(Vec::new()));
    let (assembler, _delegate) =
        Handler::with_fragment_assembler(Collect(Arc::clone(&collected))).expect("an assembler");
    let deadline = Instant::now() + DEADLINE;
    while collected.lock().expect("not poisoned").len() < count {
        publish();
        subscription
            .poll(Some(&assembler), 64)
            .expect("Aeron polls");
        assert!(
            Instant::now() < deadline,
            "Aeron received {} of {count}",
            collected.lock().expect("not poisoned").len()
        );
    }
    std::mem::take(&mut *collected.lock().expect("not poisoned"))
}

fn aeron_subscription(aeron: &Aeron, channel: &str, stream: i32) -> AeronSubscription {
    aeron
        .async_add_subscription(
            &CString::new(channel).expect("no NUL"),
            stream,
            Handlers::NONE,
            Handlers::NONE,
        )
        .and_then(|pending| pending.poll_blocking(Duration::from_secs(10)))
        .expect("an Aeron subscription")
}

/// A tern multi-destination publication (manual, then dynamic) reaches Aeron C subscribers:
/// one on an endpoint the application added, one that joined through the control address.
#[test]
fn a_tern_multi_destination_publication_reaches_aeron_subscribers() {
    let tern = tern_driver("mdc", |_| {});
    let aeron = aeron_driver();
    let subscriber = aeron_client(&aeron);
    let publisher = tern_client(&tern);
    let sent: Vec<Vec<u8>> = messages().into_iter().take(300).collect();

    // Manual: the destination is added by the application.
    let (control, endpoint) = (free_port(), free_port());
    let manual = aeron_subscription(
        &subscriber,
        &format!("aeron:udp?endpoint=127.0.0.1:{endpoint}"),
        1003,
    );
    let publication = publisher
        .add_publication(
            &format!("tern:udp?control=127.0.0.1:{control}|control-mode=manual|term-length=64k"),
            1003,
        )
        .expect("a tern publication");
    publication
        .add_destination(&format!("tern:udp?endpoint=127.0.0.1:{endpoint}"))
        .expect("a destination");
    let mut next = 0;
    let received = aeron_receive(&manual, sent.len(), &mut || {
        if next < sent.len() && matches!(publication.offer(&sent[next]), OfferResult::Ok(_)) {
            next += 1;
        }
    });
    check(&received, &sent);

    // Dynamic: the Aeron C subscriber joins by asking the control address.
    let control = free_port();
    let publication = publisher
        .add_publication(
            &format!("tern:udp?control=127.0.0.1:{control}|control-mode=dynamic|term-length=64k"),
            1004,
        )
        .expect("a tern publication");
    let dynamic = aeron_subscription(
        &subscriber,
        &format!(
            "aeron:udp?endpoint=127.0.0.1:{}|control=127.0.0.1:{control}|control-mode=dynamic",
            free_port()
        ),
        1004,
    );
    let mut next = 0;
    let received = aeron_receive(&dynamic, sent.len(), &mut || {
        if next < sent.len() && matches!(publication.offer(&sent[next]), OfferResult::Ok(_)) {
            next += 1;
        }
    });
    check(&received, &sent);
    assert_eq!(tern_counter(&publisher, "invalid frames"), 0);
}

/// Offers `sent` through an Aeron C publication while a tern subscription reads; what it read.
fn aeron_to_tern_subscription(
    publication: &AeronPublication,
    subscription: &mut tern_engine::client::Subscription,
    sent: &[Vec<u8>],
) -> Vec<Vec<u8>> {
    let received = std::cell::RefCell::new(Vec::new());
    let mut assembler = FragmentAssembler::new(|message: &[u8], _: &_| {
        received.borrow_mut().push(message.to_vec());
    });
    let deadline = Instant::now() + DEADLINE;
    let mut next = 0;
    while received.borrow().len() < sent.len() {
        if next < sent.len() && publication.offer(&sent[next]).is_ok() {
            next += 1;
        }
        subscription.poll(
            |fragment, header| assembler.on_fragment(fragment, header),
            64,
        );
        assert!(
            Instant::now() < deadline,
            "tern received {}",
            received.borrow().len()
        );
    }
    drop(assembler);
    received.into_inner()
}

/// An Aeron C multi-destination publication reaches tern subscriptions: one added as a
/// destination (manual), one that joined through the control address (dynamic).
#[test]
fn an_aeron_multi_destination_publication_reaches_a_tern_subscription() {
    let tern = tern_driver("a-mdc", |_| {});
    let aeron = aeron_driver();
    let (control, endpoint) = (free_port(), free_port());
    let subscriber = tern_client(&tern);
    let mut subscription = subscriber
        .add_subscription(&format!("tern:udp?endpoint=127.0.0.1:{endpoint}"), 1005)
        .expect("a tern subscription");
    let publisher = aeron_client(&aeron);
    let publication: AeronPublication = publisher
        .async_add_publication(
            &CString::new(format!(
                "aeron:udp?control=127.0.0.1:{control}|control-mode=manual|term-length=64k"
            ))
            .expect("no NUL"),
            1005,
        )
        .and_then(|pending| pending.poll_blocking(Duration::from_secs(10)))
        .expect("an Aeron publication");
    publication
        .add_destination(
            &CString::new(format!("aeron:udp?endpoint=127.0.0.1:{endpoint}")).expect("no NUL"),
            Duration::from_secs(10),
        )
        .expect("an Aeron destination");
    let sent: Vec<Vec<u8>> = messages().into_iter().take(300).collect();
    check(
        &aeron_to_tern_subscription(&publication, &mut subscription, &sent),
        &sent,
    );

    // Dynamic: the tern subscriber joins the Aeron C publication through its control address.
    let control = free_port();
    let publication: AeronPublication = publisher
        .async_add_publication(
            &CString::new(format!(
                "aeron:udp?control=127.0.0.1:{control}|control-mode=dynamic|term-length=64k"
            ))
            .expect("no NUL"),
            1006,
        )
        .and_then(|pending| pending.poll_blocking(Duration::from_secs(10)))
        .expect("an Aeron publication");
    let mut subscription = subscriber
        .add_subscription(
            &format!(
                "tern:udp?endpoint=127.0.0.1:{}|control=127.0.0.1:{control}|control-mode=dynamic",
                free_port()
            ),
            1006,
        )
        .expect("a tern subscription");
    check(
        &aeron_to_tern_subscription(&publication, &mut subscription, &sent),
        &sent,
    );
    assert_eq!(tern_counter(&subscriber, "invalid frames"), 0);
}

/// Multi-destination subscriptions both ways: an Aeron C publication sending to two
/// destinations fills one image of a tern subscription that receives on both, and a tern
/// publication sending to two destinations fills one image of an Aeron C subscription that
/// receives on both. Each message arrives once, in order.
#[test]
fn multi_destination_subscriptions_merge_two_paths_both_ways() {
    let tern = tern_driver("mds", |_| {});
    let aeron = aeron_driver();
    let tern_side = tern_client(&tern);
    let aeron_side = aeron_client(&aeron);
    let sent: Vec<Vec<u8>> = messages().into_iter().take(300).collect();
    let timeout = Duration::from_secs(10);

    // Aeron C → tern.
    let (control, first, second) = (free_port(), free_port(), free_port());
    let mut subscription = tern_side
        .add_subscription("tern:udp?control-mode=manual", 1007)
        .expect("a tern subscription");
    for port in [first, second] {
        subscription
            .add_destination(&format!("tern:udp?endpoint=127.0.0.1:{port}"))
            .expect("a tern destination");
    }
    let publication: AeronPublication = aeron_side
        .async_add_publication(
            &CString::new(format!(
                "aeron:udp?control=127.0.0.1:{control}|control-mode=manual|term-length=64k"
            ))
            .expect("no NUL"),
            1007,
        )
        .and_then(|pending| pending.poll_blocking(timeout))
        .expect("an Aeron publication");
    for port in [first, second] {
        publication
            .add_destination(
                &CString::new(format!("aeron:udp?endpoint=127.0.0.1:{port}")).expect("no NUL"),
                timeout,
            )
            .expect("an Aeron destination");
    }
    check(
        &aeron_to_tern_subscription(&publication, &mut subscription, &sent),
        &sent,
    );
    assert_eq!(subscription.images().len(), 1, "both paths fill one image");
    assert!(tern_counter(&tern_side, "duplicate frames") > 0);
    assert_eq!(tern_counter(&tern_side, "invalid frames"), 0);

    // tern → Aeron C.
    let (control, first, second) = (free_port(), free_port(), free_port());
    let merged = aeron_subscription(&aeron_side, "aeron:udp?control-mode=manual", 1008);
    for port in [first, second] {
        merged
            .add_destination(
                &CString::new(format!("aeron:udp?endpoint=127.0.0.1:{port}")).expect("no NUL"),
                timeout,
            )
            .expect("an Aeron subscription destination");
    }
    let publication = tern_side
        .add_publication(
            &format!("tern:udp?control=127.0.0.1:{control}|control-mode=manual|term-length=64k"),
            1008,
        )
        .expect("a tern publication");
    for port in [first, second] {
        publication
            .add_destination(&format!("tern:udp?endpoint=127.0.0.1:{port}"))
            .expect("a destination");
    }
    let mut next = 0;
    let received = aeron_receive(&merged, sent.len(), &mut || {
        if next < sent.len() && matches!(publication.offer(&sent[next]), OfferResult::Ok(_)) {
            next += 1;
        }
    });
    check(&received, &sent);
    assert_eq!(merged.image_count().expect("images"), 1);
    assert_eq!(tern_counter(&tern_side, "invalid frames"), 0);
}
