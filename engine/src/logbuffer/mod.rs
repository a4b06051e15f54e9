//! Log buffers: the memory-mapped terms that carry every message of a stream.
//!
//! | memory | writer | readers |
//! |---|---|---|
//! | term bytes, frame by frame | publishers (concurrent: a tail claimed by atomic add; exclusive: one writer), or the receiver rebuilding an image from the network | subscribers, the sender, the driver's unblocker |
//! | tail counters, active term count | publishers | the driver, subscribers |
//! | connection state, end of stream | the driver | publishers, subscribers |
//!
//! A frame in a term is a wire frame ([`tern_codec::frame`]), so positions, padding and
//! fragmentation follow the Aeron protocol exactly.

pub mod descriptor;
pub mod frame_header;
#[cfg(not(loom))]
pub mod log_buffers;
pub mod term_appender;
pub mod term_gap_scanner;
pub mod term_reader;
pub mod term_rebuilder;
pub mod term_scanner;
pub mod unblocker;
