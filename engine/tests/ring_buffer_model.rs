//! The ring buffer against a queue model: any interleaving of writes and reads of any sizes
//! gives back exactly what was written, in order, and refuses only what cannot fit.
#![cfg(not(loom))]

use std::collections::VecDeque;

use proptest::prelude::*;
use tern_engine::concurrent::atomic_buffer::AlignedBuffer;
use tern_engine::concurrent::ring_buffer::{
    ManyToOneRingBuffer, TRAILER_LENGTH, WriteError, align,
};

#[derive(Debug, Clone)]
enum Step {
    Write(i32, Vec<u8>),
    Read(usize),
}

fn step() -> impl Strategy<Value = Step> {
    prop_oneof![
        (1..100i32, prop::collection::vec(any::<u8>(), 0..=70))
            .prop_map(|(kind, body)| Step::Write(kind, body)),
        (1..5usize).prop_map(Step::Read),
    ]
}

proptest! {
    #[test]
    fn behaves_as_a_queue(steps in prop::collection::vec(step(), 1..200)) {
        let memory = AlignedBuffer::new(512 + TRAILER_LENGTH);
        let ring = ManyToOneRingBuffer::new(memory.buffer()).unwrap();
        let mut model: VecDeque<(i32, Vec<u8>)> = VecDeque::new();
        for step in steps {
            match step {
                Step::Write(kind, body) => match ring.write(kind, &body) {
                    Ok(()) => model.push_back((kind, body)),
                    Err(WriteError::TooLong { .. }) => prop_assert!(body.len() > 64),
                    Err(WriteError::Full) => {
                        // Refused only when the record cannot fit in the free space, or (when
                        // it must wrap) in the free space at the start of the buffer.
                        let required = align(8 + body.len());
                        let free = 512 - ring.size();
                        let tail_index = usize::try_from(ring.producer_position() % 512).unwrap();
                        let head_index = usize::try_from(ring.consumer_position() % 512).unwrap();
                        let wraps = required > 512 - tail_index;
                        prop_assert!(required > free || (wraps && required > head_index));
                    }
                    Err(error) => prop_assert!(false, "{}", error),
                },
                Step::Read(limit) => {
                    let mut got = Vec::new();
                    let read = ring.read(&mut vec![0u8; 1 << 16], |kind, body| got.push((kind, body.to_vec())), limit).messages;
                    prop_assert_eq!(read, got.len());
                    prop_assert!(read <= limit);
                    for message in got {
                        prop_assert_eq!(Some(message), model.pop_front());
                    }
                }
            }
        }
        let mut rest = Vec::new();
        while ring.read(&mut vec![0u8; 1 << 16], |kind, body| rest.push((kind, body.to_vec())), usize::MAX).messages > 0 {}
        prop_assert_eq!(rest, Vec::from(model));
        prop_assert_eq!(ring.size(), 0);
    }
}
