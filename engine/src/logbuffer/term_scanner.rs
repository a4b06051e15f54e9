//! Scanning a term for frames ready to send: how much can go in one datagram.
//!
//! The sender (UDP, next) batches consecutive published frames up to the MTU into one
//! datagram. A scan from an offset stops at the first unpublished frame, before a frame that
//! would take the batch past `max_length`, or at a PAD frame, which ends the batch: only the
//! PAD's header travels, and the receiver regenerates the padding.

use super::frame_header::{PAD_TYPE, frame_type};
use crate::concurrent::atomic_buffer::AtomicBuffer;
use tern_codec::frame::DATA_HEADER_LENGTH;

/// What a scan found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Scan {
    /// Bytes of whole frames that may be sent now, from the scan's offset (aligned).
    pub available: usize,
    /// Bytes of padding that follow them (a PAD frame ending the batch), to skip after sending.
    pub padding: usize,
}

/// Scans `term` from `term_offset` for at most `max_length` bytes of published frames.
pub fn scan_for_availability(
    term: &AtomicBuffer<'_>,
    term_offset: usize,
    max_length: usize,
) -> Scan {
    let term_length = term.capacity();
    let limit = max_length.min(term_length.saturating_sub(term_offset));
    let mut available = 0;
    let mut padding = 0;
    while available < limit {
        let offset = term_offset + available;
        // Pairs with the release store of the length in `frame_header::publish`.
        let frame_length = usize::try_from(term.get_i32_volatile(offset)).unwrap_or(0);
        if frame_length < DATA_HEADER_LENGTH || frame_length > term_length - offset {
            break;
        }
        let aligned = tern_codec::frame::align(frame_length);
        if frame_type(term, offset) == PAD_TYPE {
            // A batch ends at padding: send what came before, then the PAD header alone.
            if available == 0 {
                available = DATA_HEADER_LENGTH;
                padding = aligned - DATA_HEADER_LENGTH;
            }
            break;
        }
        if available + aligned > limit {
            break;
        }
        available += aligned;
    }
    Scan { available, padding }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;
    use crate::concurrent::atomic_buffer::AlignedBuffer;
    use crate::logbuffer::frame_header::{HeaderTemplate, TYPE_OFFSET, publish, write_padding};

    fn frame(
        term: &AtomicBuffer<'_>,
        template: &HeaderTemplate,
        offset: usize,
        payload: usize,
    ) -> usize {
        template.write(term, offset, payload + 32, 0xC0, 0, 0);
        publish(term, offset, payload + 32);
        (payload + 32 + 31) & !31
    }

    #[test]
    fn batches_up_to_the_mtu_and_stops_at_unpublished_frames_and_padding() {
        let memory = AlignedBuffer::new(4096);
        let term = memory.buffer();
        let mut header = [0u8; 32];
        header[TYPE_OFFSET..TYPE_OFFSET + 2]
            .copy_from_slice(&crate::logbuffer::frame_header::DATA_TYPE.to_le_bytes());
        let template = HeaderTemplate::new(header);
        let mut offset = 0;
        for _ in 0..4 {
            offset += frame(&term, &template, offset, 100); // 160 bytes each
        }
        assert_eq!(
            scan_for_availability(&term, 0, 1408),
            Scan {
                available: 640,
                padding: 0
            }
        );
        assert_eq!(
            scan_for_availability(&term, 0, 400),
            Scan {
                available: 320,
                padding: 0
            }
        );
        assert_eq!(
            scan_for_availability(&term, 640, 1408),
            Scan {
                available: 0,
                padding: 0
            }
        );
        write_padding(&term, &template, 640, 4096 - 640, 0);
        assert_eq!(
            scan_for_availability(&term, 480, 1408),
            Scan {
                available: 160,
                padding: 0
            }
        );
        assert_eq!(
            scan_for_availability(&term, 640, 1408),
            Scan {
                available: 32,
                padding: 4096 - 640 - 32
            }
        );
    }
}
