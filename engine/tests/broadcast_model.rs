//! The broadcast buffer against a model: any sequence of message sizes, received after each
//! transmission, comes back exactly; a receiver that falls a buffer behind reports a lap.
#![cfg(not(loom))]

use proptest::prelude::*;
use tern_engine::concurrent::atomic_buffer::AlignedBuffer;
use tern_engine::concurrent::broadcast::{
    BroadcastError, BroadcastReceiver, BroadcastTransmitter, TRAILER_LENGTH,
};

proptest! {
    #[test]
    fn every_message_comes_back_or_a_lap_is_reported(
        bursts in prop::collection::vec(prop::collection::vec(0usize..=128, 1..12), 1..40)
    ) {
        let memory = AlignedBuffer::new(1024 + TRAILER_LENGTH);
        let mut transmitter = BroadcastTransmitter::new(memory.buffer()).unwrap();
        let mut receiver = BroadcastReceiver::new(memory.buffer()).unwrap();
        let mut scratch = [0u8; 256];
        let mut sequence = 0u8;
        for burst in bursts {
            let mut sent = Vec::new();
            let mut bytes = 0;
            for length in burst {
                sequence = sequence.wrapping_add(1);
                let body = vec![sequence; length];
                transmitter.transmit(i32::from(sequence) + 1, &body).unwrap();
                bytes += (length + 8).div_ceil(8) * 8;
                sent.push(body);
            }
            let mut received = Vec::new();
            let result = loop {
                match receiver.receive(&mut scratch, |_, body| received.push(body.to_vec())) {
                    Ok(true) => {}
                    Ok(false) => break Ok(()),
                    Err(error) => break Err(error),
                }
            };
            if bytes <= 1024 - 136 {
                // The burst fits with room for the padding a wrap can add: nothing is lost.
                prop_assert_eq!(result, Ok(()));
                prop_assert_eq!(&received, &sent);
            } else if let Err(error) = result {
                let lapped = matches!(error, BroadcastError::Lapped { .. });
                prop_assert!(lapped, "{}", error);
                receiver = BroadcastReceiver::new(memory.buffer()).unwrap();
            } else {
                // What was received is the newest messages, in order.
                prop_assert!(sent.ends_with(&received));
            }
        }
    }
}
