//! The shared-memory structures between processes: this test binary runs itself again as a
//! producer that maps the same file, and the parent consumes what it writes.
#![cfg(not(loom))]

use std::path::PathBuf;
use std::process::{Child, Command};
use std::time::{Duration, Instant};

use tern_engine::concurrent::counters::{
    CounterSpec, CountersManager, METADATA_LENGTH, VALUE_LENGTH,
};
use tern_engine::concurrent::ring_buffer::{ManyToOneRingBuffer, TRAILER_LENGTH, WriteError};
use tern_engine::mapped_file::MappedFile;

const ROLE: &str = "TERN_CROSS_PROCESS_ROLE";
const FILE: &str = "TERN_CROSS_PROCESS_FILE";
const MESSAGES: u64 = 20_000;
const RING_CAPACITY: usize = 4096;
const COUNTERS: usize = 4;
const DEADLINE: Duration = Duration::from_secs(60);

/// Layout of the test's shared file: a ring buffer, then counter metadata, then values.
fn layout_length() -> usize {
    RING_CAPACITY + TRAILER_LENGTH + COUNTERS * (METADATA_LENGTH + VALUE_LENGTH)
}

/// The producer's half. Does nothing unless the parent started this process as the producer.
#[test]
fn producer_process() {
    if std::env::var(ROLE).as_deref() != Ok("producer") {
        return;
    }
    let path = PathBuf::from(std::env::var(FILE).unwrap());
    let file = MappedFile::open(&path).unwrap();
    let buffer = file.buffer();
    let ring = ManyToOneRingBuffer::new(buffer.view(0, RING_CAPACITY + TRAILER_LENGTH)).unwrap();
    let values_offset = RING_CAPACITY + TRAILER_LENGTH + COUNTERS * METADATA_LENGTH;
    let start = Instant::now();
    for sequence in 0..MESSAGES {
        loop {
            match ring.write(5, &sequence.to_le_bytes()) {
                Ok(()) => break,
                Err(WriteError::Full) => {
                    assert!(start.elapsed() < DEADLINE, "the parent stopped consuming");
                    std::thread::yield_now();
                }
                Err(error) => panic!("{error}"),
            }
        }
        // The parent allocated counter 0 for this producer to own.
        buffer.put_i64_ordered(values_offset, i64::try_from(sequence + 1).unwrap());
    }
}

struct KillOnDrop(Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn a_producer_process_feeds_a_consumer_process() {
    let dir = std::env::temp_dir().join(format!("tern-cross-process-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("shared.dat");
    let file = MappedFile::create(&path, layout_length()).unwrap();
    let buffer = file.buffer();
    let ring = ManyToOneRingBuffer::new(buffer.view(0, RING_CAPACITY + TRAILER_LENGTH)).unwrap();
    let metadata = buffer.view(RING_CAPACITY + TRAILER_LENGTH, COUNTERS * METADATA_LENGTH);
    let values = buffer.view(
        RING_CAPACITY + TRAILER_LENGTH + COUNTERS * METADATA_LENGTH,
        COUNTERS * VALUE_LENGTH,
    );
    let mut counters = CountersManager::new(metadata, values, 0).unwrap();
    let spec = CounterSpec {
        type_id: 1,
        key: b"",
        label: "producer progress",
        registration_id: 1,
        owner_id: 2,
        reference_id: 0,
    };
    let progress = counters.allocate(&spec, 0).unwrap();
    assert_eq!(progress.id(), 0);

    let child = Command::new(std::env::current_exe().unwrap())
        .args(["--exact", "producer_process", "--test-threads", "1"])
        .env(ROLE, "producer")
        .env(FILE, &path)
        .spawn()
        .unwrap();
    let mut child = KillOnDrop(child);

    let mut next = 0u64;
    let start = Instant::now();
    while next < MESSAGES {
        let read = ring
            .read(
                &mut vec![0u8; 1 << 16],
                |kind, body| {
                    assert_eq!(kind, 5);
                    assert_eq!(
                        u64::from_le_bytes(body.try_into().unwrap()),
                        next,
                        "in order"
                    );
                    next += 1;
                },
                100,
            )
            .messages;
        if read == 0 {
            assert!(start.elapsed() < DEADLINE, "producer stalled at {next}");
            if let Some(status) = child.0.try_wait().unwrap() {
                assert!(status.success(), "producer failed: {status}");
            }
            std::thread::yield_now();
        }
    }
    let status = child.0.wait().unwrap();
    assert!(status.success(), "producer exited with {status}");
    assert_eq!(counters.reader().value(0), i64::try_from(MESSAGES).unwrap());
    drop(file);
    std::fs::remove_dir_all(&dir).unwrap();
}
