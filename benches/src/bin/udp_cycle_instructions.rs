//! A fixed, single-threaded UDP workload for counting instructions under callgrind: an embedded
//! driver and client in invoker mode, one publication and one subscription over `tern:udp` on
//! loopback, warmed up; then `COUNT` idle driver duty cycles in `measured_idle_cycles` and
//! `COUNT` one-message round trips through the driver in `measured_round_trips` (offer, driver
//! cycles until the subscriber has it, poll). Run it with `benches/instruction_counts.sh udp`.
//! User-space instructions only: the system calls' kernel work is not counted.

use std::hint::black_box;

use tern_engine::client::{OfferResult, Publication, Subscription};
use tern_engine::driver::MediaDriver;

/// Cycles and round trips measured (each).
const COUNT: usize = 20_000;

#[inline(never)]
fn measured_idle_cycles(driver: &mut MediaDriver) -> usize {
    let mut work = 0;
    for _ in 0..COUNT {
        work += driver.invoke();
    }
    work
}

#[inline(never)]
fn measured_round_trips(
    driver: &mut MediaDriver,
    publication: &Publication,
    subscription: &mut Subscription,
    message: &[u8],
) -> usize {
    let mut cycles = 0;
    for _ in 0..COUNT {
        while !matches!(publication.offer(black_box(message)), OfferResult::Ok(_)) {
            driver.invoke();
        }
        loop {
            driver.invoke();
            cycles += 1;
            if subscription.poll(
                |payload, _| {
                    black_box(payload);
                },
                1,
            ) > 0
            {
                break;
            }
        }
    }
    cycles
}

fn main() {
    let (mut driver, tern) = tern_benches::invoked_driver_and_client("udp-instructions");
    let port = std::net::UdpSocket::bind("127.0.0.1:0")
        .and_then(|socket| socket.local_addr())
        .map(|address| address.port())
        .expect("a free port");
    let channel = format!("tern:udp?endpoint=127.0.0.1:{port}|term-length=1m");
    let subscription_id = tern.async_add_subscription(&channel, 1).expect("sent");
    let publication_id = tern.async_add_publication(&channel, 1).expect("sent");
    let (mut publication, mut subscription) = (None, None);
    for _ in 0..1_000_000 {
        driver.invoke();
        tern.do_work();
        if publication.is_none() {
            publication = tern
                .poll_publication(publication_id)
                .map(|ready| ready.expect("ready"));
        }
        if subscription.is_none() {
            subscription = tern
                .poll_subscription(subscription_id)
                .map(|ready| ready.expect("ready"));
        }
        if publication.as_ref().is_some_and(Publication::is_connected)
            && subscription
                .as_mut()
                .is_some_and(Subscription::is_connected)
        {
            break;
        }
    }
    let publication = publication.expect("a publication");
    let mut subscription = subscription.expect("a subscription");
    let message = [0x5Au8; 32];
    for _ in 0..2_000 {
        measured_round_trips_warm(&mut driver, &publication, &mut subscription, &message);
    }
    let work = measured_idle_cycles(&mut driver);
    let cycles = measured_round_trips(&mut driver, &publication, &mut subscription, &message);
    eprintln!(
        "{COUNT} idle cycles (work {work}), {COUNT} round trips in {cycles} driver cycles ({:.2} each)",
        cycles as f64 / COUNT as f64
    );
}

fn measured_round_trips_warm(
    driver: &mut MediaDriver,
    publication: &Publication,
    subscription: &mut Subscription,
    message: &[u8],
) {
    while !matches!(publication.offer(message), OfferResult::Ok(_)) {
        driver.invoke();
    }
    while subscription.poll(|_, _| {}, 1) == 0 {
        driver.invoke();
    }
}
