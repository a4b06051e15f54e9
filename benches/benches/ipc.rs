//! The IPC data path on one thread: offer one message and poll it back, through an embedded
//! driver's log, for 32 B and 1 KiB messages. This isolates the per-message cost of the
//! publication and subscription code from cross-core cache traffic, which `tern bench ping` and
//! `tern bench throughput` include.
//!
//! `cargo bench -p tern-benches --bench ipc`

#![allow(missing_docs)]

use std::hint::black_box;
use std::time::Duration;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use tern_engine::client::{ClientConfig, OfferResult, Tern};
use tern_engine::driver::{DriverConfig, MediaDriver};

fn offer_poll(c: &mut Criterion) {
    let dir = tern_engine::directory::default_directory()
        .with_file_name(format!("tern-criterion-ipc-{}", std::process::id()));
    let driver = MediaDriver::launch(DriverConfig {
        dir,
        ..DriverConfig::default()
    })
    .unwrap();
    let tern = Tern::connect(ClientConfig {
        dir: driver.dir().to_path_buf(),
        ..ClientConfig::default()
    })
    .unwrap();
    let mut group = c.benchmark_group("ipc");
    group.throughput(Throughput::Elements(1));
    for size in [32usize, 1024] {
        let stream = i32::try_from(size).unwrap();
        let publication = tern.add_publication("tern:ipc", stream).unwrap();
        let mut subscription = tern.add_subscription("tern:ipc", stream).unwrap();
        publication.wait_connected(Duration::from_secs(10)).unwrap();
        let message = vec![0x5A_u8; size];
        group.bench_function(format!("offer+poll {size} B"), |b| {
            b.iter(|| {
                while !matches!(publication.offer(black_box(&message)), OfferResult::Ok(_)) {
                    subscription.poll(|_, _| {}, 64);
                }
                let mut length = 0;
                subscription.poll(|payload, _| length = payload.len(), 1);
                black_box(length)
            })
        });
    }
    group.finish();
}

criterion_group!(benches, offer_poll);
criterion_main!(benches);
