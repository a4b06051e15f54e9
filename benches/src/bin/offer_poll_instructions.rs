//! A fixed, single-threaded workload for counting instructions under callgrind: an embedded
//! driver and client in invoker mode (no other thread runs), one publication and one
//! subscription over `tern:ipc`, warmed up, then `COUNT` offers of 32 bytes in
//! `measured_offers` and `COUNT` single-fragment polls in `measured_polls`, then `COUNT` offers through an exclusive
//! publication in `measured_exclusive_offers`, then those fragments polled 256 at a time in
//! `measured_batch_polls` (per fragment, as the throughput benchmarks poll). Run it with
//! `benches/instruction_counts.sh`, which divides each function's instructions by `COUNT`.
//! Wall time is noise on a shared machine; instruction counts repeat, so later changes can be
//! compared against the figures in BENCHMARKS.md.

use std::hint::black_box;

use tern_engine::client::{ExclusivePublication, OfferResult, Publication, Subscription, Tern};
use tern_engine::driver::MediaDriver;

/// Offers and polls measured (each); the log holds them all without wrapping back to a partition
/// the subscriber has not left: 64-byte frames, 16 MiB terms.
const COUNT: usize = 100_000;

#[inline(never)]
fn measured_offers(publication: &Publication, message: &[u8]) -> usize {
    let mut accepted = 0;
    for _ in 0..COUNT {
        if matches!(publication.offer(black_box(message)), OfferResult::Ok(_)) {
            accepted += 1;
        }
    }
    accepted
}

#[inline(never)]
fn measured_exclusive_offers(publication: &mut ExclusivePublication, message: &[u8]) -> usize {
    let mut accepted = 0;
    for _ in 0..COUNT {
        if matches!(publication.offer(black_box(message)), OfferResult::Ok(_)) {
            accepted += 1;
        }
    }
    accepted
}

/// Fragments per poll in the batch measurement (as the throughput benchmarks poll).
const BATCH: usize = 256;

#[inline(never)]
fn measured_batch_polls(subscription: &mut Subscription) -> usize {
    let mut polled = 0;
    while polled < COUNT {
        polled += subscription.poll(
            |payload, _| {
                black_box(payload);
            },
            BATCH.min(COUNT - polled),
        );
    }
    polled
}

#[inline(never)]
fn measured_polls(subscription: &mut Subscription) -> usize {
    let mut polled = 0;
    for _ in 0..COUNT {
        polled += subscription.poll(
            |payload, _| {
                black_box(payload);
            },
            1,
        );
    }
    polled
}

/// Steps the driver until the publication `poll` yields is connected to a new subscription on
/// `stream_id` (bounded).
fn link<P>(
    driver: &mut MediaDriver,
    tern: &Tern,
    stream_id: i32,
    mut poll: impl FnMut() -> Option<Result<P, tern_engine::client::ClientError>>,
    connected: impl Fn(&P) -> bool,
) -> (P, Subscription) {
    let subscription_id = tern
        .async_add_subscription("tern:ipc", stream_id)
        .expect("sent");
    let (mut publication, mut subscription) = (None, None);
    for _ in 0..1_000_000 {
        driver.invoke();
        if publication.is_none() {
            publication = poll().map(|ready| ready.expect("ready"));
        }
        if subscription.is_none() {
            subscription = tern
                .poll_subscription(subscription_id)
                .map(|ready| ready.expect("ready"));
        }
        if publication.as_ref().is_some_and(&connected) && subscription.is_some() {
            break;
        }
    }
    let publication = publication.expect("a publication");
    assert!(connected(&publication), "the subscription never linked");
    (publication, subscription.expect("a subscription"))
}

fn main() {
    let (mut driver, tern) = tern_benches::invoked_driver_and_client("instructions");
    let publication_id = tern.async_add_publication("tern:ipc", 1).expect("sent");
    let (publication, mut subscription) = link(
        &mut driver,
        &tern,
        1,
        || tern.poll_publication(publication_id),
        Publication::is_connected,
    );
    let message = [0x5Au8; 32];
    // Warm up: caches, branch predictors, and the pages of the first terms.
    for _ in 0..10_000 {
        while !matches!(publication.offer(&message), OfferResult::Ok(_)) {
            driver.invoke();
        }
        subscription.poll(|_, _| {}, 1);
    }
    driver.invoke();
    let offered = measured_offers(&publication, &message);
    let polled = measured_polls(&mut subscription);
    assert_eq!(offered, COUNT, "every measured offer was accepted");
    assert_eq!(polled, COUNT, "every measured poll read one fragment");
    // The same through an exclusive publication on a stream of its own.
    let exclusive_id = tern
        .async_add_exclusive_publication("tern:ipc", 2)
        .expect("sent");
    let (mut exclusive, mut other) = link(
        &mut driver,
        &tern,
        2,
        || tern.poll_exclusive_publication(exclusive_id),
        ExclusivePublication::is_connected,
    );
    for _ in 0..10_000 {
        while !matches!(exclusive.offer(&message), OfferResult::Ok(_)) {
            driver.invoke();
        }
        other.poll(|_, _| {}, 1);
    }
    driver.invoke();
    let offered = measured_exclusive_offers(&mut exclusive, &message);
    assert_eq!(
        offered, COUNT,
        "every measured exclusive offer was accepted"
    );
    let polled = measured_batch_polls(&mut other);
    assert_eq!(polled, COUNT, "every exclusive offer was polled");
    println!(
        "{COUNT} offers and {COUNT} polls of 32 B, then {COUNT} exclusive offers and their \
         fragments polled {BATCH} at a time"
    );
}
