//! Encode + decode cost of a control message and of a DATA header.
//!
//! `cargo bench -p tern-benches --bench codec`. The control message is shaped like a driver
//! command (ids, a stream id and a channel string); the DATA header is the 32 bytes every
//! message fragment carries; a baseline that copies the same 64 bytes and reads two fields
//! unchecked runs beside them. Each iteration encodes into a reused buffer and decodes it back,
//! reading its fields, so neither half can be optimised away. The DATA frame is 64 bytes: the
//! header and 32 bytes of payload, decoded through the full length and version checks.

#![allow(missing_docs)]

use std::hint::black_box;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use tern_codec::frame::{DataFrame, DataHeader, FrameType, data_flags};
use tern_codec::{Schema, SemanticVersion};

const CONTROL: Schema = Schema::new("bench-control", 1, SemanticVersion::new(1, 0, 0));

tern_codec::message! {
    /// A command shaped like the driver's add-publication.
    pub mod add_publication (schema = CONTROL, template = 1, policy = Reject) {
        block {
            client_id @ 0 since 0: i64,
            correlation_id @ 8 since 0: i64,
            stream_id @ 16 since 0: i32,
        }
        groups {}
        var_data {
            channel (max = 4096) since 0: str,
        }
    }
}

fn control_message(c: &mut Criterion) {
    let mut buf = [0u8; 256];
    let mut group = c.benchmark_group("codec");
    group.throughput(Throughput::Elements(1));
    group.bench_function("control message encode+decode", |b| {
        let mut correlation_id = 0_i64;
        b.iter(|| {
            correlation_id += 1;
            let mut encoder = add_publication::Encoder::wrap(&mut buf).unwrap();
            encoder
                .client_id(black_box(7))
                .correlation_id(correlation_id)
                .stream_id(black_box(1001));
            let length = encoder
                .channel(black_box("tern:udp?endpoint=localhost:40123|mtu=1408"))
                .unwrap()
                .finish();
            let decoded = add_publication::Decoder::decode(black_box(&buf[..length])).unwrap();
            black_box((
                decoded.client_id(),
                decoded.correlation_id(),
                decoded.stream_id(),
                decoded.channel().len(),
            ))
        })
    });
    group.bench_function("DATA header encode+decode", |b| {
        let mut frame_buf = [0u8; 64];
        let mut term_offset = 0_i32;
        b.iter(|| {
            term_offset = (term_offset + 64) & 0xFFFF;
            let header = DataHeader {
                frame_length: 64,
                flags: data_flags::UNFRAGMENTED,
                frame_type: FrameType::Data,
                term_offset,
                session_id: black_box(7),
                stream_id: black_box(1001),
                term_id: black_box(-5),
                reserved_value: 0,
            };
            header.encode(&mut frame_buf).unwrap();
            let decoded = DataFrame::decode(black_box(&frame_buf[..])).unwrap();
            black_box((
                decoded.header.term_offset,
                decoded.header.session_id,
                decoded.payload.len(),
            ))
        })
    });
    group.bench_function("baseline: 64-byte copy + two field reads", |b| {
        // The floor: the bytes a DATA frame moves, with no validation at all.
        let source = [0x5A_u8; 64];
        let mut frame_buf = [0u8; 64];
        b.iter(|| {
            frame_buf.copy_from_slice(black_box(&source));
            let bytes = black_box(&frame_buf);
            black_box((
                i32::from_le_bytes([bytes[8], bytes[9], bytes[10], bytes[11]]),
                i32::from_le_bytes([bytes[12], bytes[13], bytes[14], bytes[15]]),
            ))
        })
    });
    group.finish();
}

criterion_group!(benches, control_message);
criterion_main!(benches);
