//! Every archive decoder of external bytes over damaged and arbitrary input (the checks the
//! `archive` fuzz target runs): valid messages, segment headers and frames, each truncated at
//! every length and with bytes flipped, and seeded random bytes. None may panic.

use tern_archive::control_protocol as protocol;
use tern_archive::fuzz_checks::archive_bytes;
use tern_archive::segment::SegmentHeader;

fn valid_inputs() -> Vec<Vec<u8>> {
    let mut inputs = Vec::new();
    let mut buf = vec![0u8; 4096];
    let mut encoder = protocol::replicate::Encoder::wrap(&mut buf).unwrap();
    encoder
        .control_session_id(1)
        .correlation_id(2)
        .source_recording_id(3);
    let length = encoder
        .source_control_channel("tern:udp?endpoint=10.0.0.1:8010")
        .unwrap()
        .replication_channel("tern:udp?endpoint=10.0.0.2:8030")
        .unwrap()
        .finish();
    inputs.push(buf[..length].to_vec());
    let mut buf = vec![0u8; 256];
    let mut encoder = protocol::connect::Encoder::wrap(&mut buf).unwrap();
    encoder
        .correlation_id(9)
        .response_stream_id(20)
        .version(0x0001_0000);
    let length = encoder.response_channel("tern:ipc").unwrap().finish();
    inputs.push(buf[..length].to_vec());
    inputs.push(
        SegmentHeader {
            recording_id: 1,
            base_position: 65536,
            segment_length: 131_072,
            term_length: 65536,
            initial_term_id: 11,
            stream_id: 5,
            session_id: 6,
            checksums: true,
        }
        .encode()[..64]
            .to_vec(),
    );
    // Two DATA frames and a PAD, as a segment holds them at position 0 of term 11.
    let mut frames = vec![0u8; 160];
    for (at, length, kind) in [(0usize, 40i32, 1u8), (64, 60, 1), (128, 65536 - 128, 0)] {
        frames[at..at + 4].copy_from_slice(&length.to_le_bytes());
        frames[at + 5] = 0xC0;
        frames[at + 6] = kind;
        frames[at + 8..at + 12].copy_from_slice(&i32::try_from(at).unwrap().to_le_bytes());
        frames[at + 20..at + 24].copy_from_slice(&11i32.to_le_bytes());
    }
    inputs.push(frames);
    inputs
}

#[test]
fn damaged_valid_inputs_never_panic_a_decoder() {
    let mut checked = 0;
    for input in valid_inputs() {
        for cut in 0..=input.len() {
            archive_bytes(&input[..cut]);
            checked += 1;
        }
        for at in 0..input.len() {
            for flip in [0x01u8, 0x80, 0xFF] {
                let mut damaged = input.clone();
                damaged[at] ^= flip;
                archive_bytes(&damaged);
                checked += 1;
            }
        }
    }
    assert!(checked > 1000, "{checked} inputs");
}

#[test]
fn random_bytes_never_panic_a_decoder() {
    let mut state = 0x2545_F491_4F6C_DD1Du64;
    for _ in 0..20_000 {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        let length = usize::try_from(state % 300).unwrap();
        let bytes: Vec<u8> = (0..length)
            .map(|index| (state.rotate_left(u32::try_from(index % 64).unwrap()) & 0xFF) as u8)
            .collect();
        archive_bytes(&bytes);
    }
}
