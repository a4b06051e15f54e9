//! The UDP protocol cores without sockets: a network publication and a publication image fed
//! frames and stepped on a manual clock. Control frames are hostile here: NAKs outside the
//! window or longer than the term, status messages with absurd windows and positions, frames for
//! other sessions. None may make the sender resend what it does not hold, widen its window past
//! half a term, or send anywhere but its destination; none may make the image write outside the
//! term or past its window.
#![cfg(not(loom))]

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use tern_codec::frame::{
    DataHeader, Frame, FrameType, NAK_LENGTH, Nak, RTTM_LENGTH, Rttm, STATUS_MESSAGE_LENGTH,
    StatusMessage, data_flags, rttm_flags, status_flags,
};
use tern_engine::driver::flow_control::Strategy;
use tern_engine::driver::image_timing;
use tern_engine::driver::loss_detector::FeedbackDelay;
use tern_engine::driver::network_publication::{
    Destination, NetworkPublication, PublicationParams,
};
use tern_engine::driver::publication_image::{ImageParams, ImageState, PublicationImage};
use tern_engine::driver::publication_timing;
use tern_engine::driver::retransmit_handler::RetransmitConfig;
use tern_engine::driver::send_batch::{RecordingSink, SendBatch};
use tern_engine::logbuffer::descriptor::LogParameters;
use tern_engine::logbuffer::frame_header::HeaderTemplate;
use tern_engine::logbuffer::log_buffers::LogBuffers;
use tern_engine::logbuffer::term_appender::{Appended, TermAppender};

const TERM_LENGTH: u32 = 64 * 1024;
const SESSION: i32 = 77;
const STREAM: i32 = 9;
const INITIAL_TERM_ID: i32 = 1000;
const MS: i64 = 1_000_000;

fn destination() -> SocketAddr {
    "127.0.0.1:40001".parse().unwrap()
}

/// Removes a test's log file when dropped, whether the test passed or not.
struct Removed(PathBuf);

impl Drop for Removed {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

fn new_log(name: &str) -> (Arc<LogBuffers>, Removed) {
    let path = std::env::temp_dir().join(format!(
        "tern-cores-{name}-{}.logbuffer",
        std::process::id()
    ));
    let parameters = LogParameters {
        term_length: TERM_LENGTH,
        initial_term_id: INITIAL_TERM_ID,
        mtu: 1408,
        page_size: 4096,
        correlation_id: 1,
        session_id: SESSION,
        stream_id: STREAM,
        publication_window: TERM_LENGTH / 2,
    };
    let _ = std::fs::remove_file(&path);
    let log = Arc::new(LogBuffers::create(&path, &parameters).unwrap());
    (log, Removed(path))
}

/// Appends `count` messages of `length` bytes to term 0; returns the tail offset.
fn publish(log: &LogBuffers, count: usize, length: usize) -> u32 {
    let appender = TermAppender::new(log.term(0), log.metadata(), 0);
    let template = HeaderTemplate::new(log.metadata().default_header());
    let mut tail = 0;
    for index in 0..count {
        let body = vec![u8::try_from(index % 251).unwrap(); length];
        match appender.append(&template, &[&body], 1376, 0) {
            Appended::Ok { term_offset, .. } => tail = term_offset,
            Appended::Tripped { .. } => panic!("the test stays in one term"),
        }
    }
    tail
}

fn publication(log: &Arc<LogBuffers>) -> NetworkPublication {
    let params = PublicationParams {
        destination: Destination::Fixed(destination()),
        strategy: Strategy::Unicast,
        timings: publication_timing::Timings::default(),
        retransmit: RetransmitConfig::unicast(64 * 1024),
        receiver_timeout_ns: 5_000 * MS,
        ttl: 0,
    };
    NetworkPublication::new(1, Arc::clone(log), &params, 0)
}

fn status(position_offset: i32, window: i32) -> StatusMessage {
    StatusMessage {
        frame_length: i32::try_from(STATUS_MESSAGE_LENGTH).unwrap(),
        flags: 0,
        session_id: SESSION,
        stream_id: STREAM,
        consumption_term_id: INITIAL_TERM_ID,
        consumption_term_offset: position_offset,
        receiver_window: window,
        receiver_id: 5,
        group_tag: None,
    }
}

fn nak(term_id: i32, term_offset: i32, length: i32) -> Nak {
    Nak {
        frame_length: i32::try_from(NAK_LENGTH).unwrap(),
        flags: 0,
        session_id: SESSION,
        stream_id: STREAM,
        term_id,
        term_offset,
        length,
    }
}

/// Data bytes in `sent` (DATA frames' lengths, heartbeats and control frames excluded).
fn data_bytes(sent: &[(Vec<u8>, SocketAddr)]) -> usize {
    sent.iter()
        .map(|(datagram, _)| {
            let mut offset = 0;
            let mut bytes = 0;
            while offset < datagram.len() {
                let frame = Frame::decode(&datagram[offset..]).unwrap();
                if let Frame::Data(data) = frame {
                    bytes += tern_codec::frame::align(
                        usize::try_from(data.header.frame_length).unwrap(),
                    );
                }
                offset += frame.datagram_length();
            }
            bytes
        })
        .sum()
}

#[test]
fn a_publication_sends_setup_until_answered_then_data_up_to_the_window_only() {
    let (log, _file) = new_log("window");
    let mut publication = publication(&log);
    let (mut batch, mut sink) = (SendBatch::new(), RecordingSink::default());
    let tail = publish(&log, 400, 100);
    assert!(tail > TERM_LENGTH / 2, "more than a window is waiting");
    publication.send_control(0, &mut batch, &mut sink);
    assert!(matches!(
        Frame::decode(&sink.sent[0].0).unwrap(),
        Frame::Setup(_)
    ));
    assert_eq!(
        publication.send_data(0, &mut batch, &mut sink),
        0,
        "no receiver, no data"
    );
    publication.on_status_message(&status(0, 4096), destination(), MS);
    assert!(publication.status().is_connected());
    sink.sent.clear();
    while publication.send_data(MS, &mut batch, &mut sink) > 0 {}
    let window_end = publication.sender_position();
    assert!(
        window_end <= 4096,
        "sent to {window_end} past a 4 KiB window"
    );
    assert!(window_end > 4096 - 160, "the window is used");
    assert_eq!(data_bytes(&sink.sent), usize::try_from(window_end).unwrap());
    for (datagram, to) in &sink.sent {
        assert!(datagram.len() <= 1408, "a datagram is at most the MTU");
        assert_eq!(*to, destination());
    }
}

#[test]
fn absurd_status_messages_never_widen_the_window_past_half_a_term() {
    let (log, _file) = new_log("absurd");
    let mut publication = publication(&log);
    let (mut batch, mut sink) = (SendBatch::new(), RecordingSink::default());
    publish(&log, 400, 100);
    // Far ahead of anything sent, with the largest window there is.
    let mut message = status(0, i32::MAX);
    message.consumption_term_id = INITIAL_TERM_ID + 1_000_000;
    publication.on_status_message(&message, destination(), MS);
    publication.on_status_message(&status(-4096, i32::MIN), destination(), MS);
    while publication.send_data(MS, &mut batch, &mut sink) > 0 {}
    assert!(publication.status().limit() <= i64::from(TERM_LENGTH / 2));
    assert!(publication.sender_position() <= i64::from(TERM_LENGTH / 2));
    // Another session's status message changes nothing.
    let limit = publication.status().limit();
    let mut stranger = status(16 * 1024, 1 << 20);
    stranger.session_id = SESSION + 1;
    publication.on_status_message(&stranger, destination(), MS);
    assert_eq!(publication.status().limit(), limit);
    assert_eq!(
        publication.tally().status_messages,
        2,
        "not counted as this one's"
    );
}

#[test]
fn naks_are_answered_from_the_log_only_inside_what_was_sent_and_once_per_linger() {
    let (log, _file) = new_log("naks");
    let mut publication = publication(&log);
    let (mut batch, mut sink) = (SendBatch::new(), RecordingSink::default());
    publish(&log, 300, 100);
    publication.on_status_message(&status(0, 16 * 1024), destination(), MS);
    while publication.send_data(MS, &mut batch, &mut sink) > 0 {}
    let sent = publication.sender_position();
    assert!(sent >= 8192);
    sink.sent.clear();
    let hostile = [
        nak(INITIAL_TERM_ID, 0, i32::try_from(TERM_LENGTH).unwrap() * 2), // longer than the term
        nak(INITIAL_TERM_ID, i32::try_from(sent).unwrap(), 1024),         // not sent yet
        nak(INITIAL_TERM_ID - 1, 0, 1024),                                // before the stream
        nak(INITIAL_TERM_ID + 5, 0, 1024),                                // a term never written
        nak(INITIAL_TERM_ID, -32, 64),                                    // negative offset
        nak(INITIAL_TERM_ID, 16, 64),                                     // off the alignment
        nak(INITIAL_TERM_ID, 0, -1),                                      // negative length
    ];
    for frame in hostile {
        assert!(publication.on_nak(&frame, 2 * MS).is_err(), "{frame:?}");
    }
    publication.send_control(2 * MS, &mut batch, &mut sink);
    assert_eq!(data_bytes(&sink.sent), 0, "nothing resent for hostile NAKs");
    // A range starting inside a frame (frames take 160 bytes here) resends nothing: payload
    // bytes never go out as a frame.
    publication
        .on_nak(&nak(INITIAL_TERM_ID, 2048, 1024), 2 * MS)
        .unwrap();
    publication.send_control(2 * MS, &mut batch, &mut sink);
    assert_eq!(
        data_bytes(&sink.sent),
        0,
        "nothing resent from inside a frame"
    );
    // A real loss: 1 KiB from the frame at 1920.
    publication
        .on_nak(&nak(INITIAL_TERM_ID, 1920, 1024), 13 * MS)
        .unwrap();
    assert!(
        publication
            .on_nak(&nak(INITIAL_TERM_ID, 1920, 1024), 13 * MS)
            .is_err(),
        "lingering"
    );
    publication.send_control(13 * MS, &mut batch, &mut sink);
    let resent = data_bytes(&sink.sent);
    assert!((1024..1024 + 1408).contains(&resent), "resent {resent}");
    assert!(sink.sent.iter().all(|(_, to)| *to == destination()));
    // After the linger the same range may be asked for again.
    publication
        .on_nak(&nak(INITIAL_TERM_ID, 1920, 1024), 30 * MS)
        .unwrap();
}

#[test]
fn a_closed_publication_sends_its_end_of_stream_once_drained() {
    let (log, _file) = new_log("eos");
    let mut publication = publication(&log);
    let (mut batch, mut sink) = (SendBatch::new(), RecordingSink::default());
    let tail = publish(&log, 10, 100);
    publication.on_status_message(&status(0, 16 * 1024), destination(), MS);
    publication.send_data(MS, &mut batch, &mut sink);
    log.metadata().set_end_of_stream_position(i64::from(tail));
    sink.sent.clear();
    publication.send_control(2 * MS, &mut batch, &mut sink);
    assert!(publication.status().end_of_stream_sent());
    let Frame::Data(heartbeat) = Frame::decode(&sink.sent[0].0).unwrap() else {
        panic!("a heartbeat");
    };
    assert_eq!(heartbeat.header.frame_length, 0);
    assert_ne!(heartbeat.header.flags & data_flags::END_OF_STREAM, 0);
    assert_eq!(heartbeat.header.term_offset, i32::try_from(tail).unwrap());
}

#[test]
fn rtt_requests_are_echoed_once_each_bounded_and_only_for_this_session() {
    let (log, _file) = new_log("rttm");
    let mut publication = publication(&log);
    let (mut batch, mut sink) = (SendBatch::new(), RecordingSink::default());
    let request = |session_id, flags, echo| Rttm {
        frame_length: i32::try_from(RTTM_LENGTH).unwrap(),
        flags,
        session_id,
        stream_id: STREAM,
        echo_timestamp_ns: echo,
        reception_delta_ns: 99,
        receiver_id: 5,
    };
    publication.on_rttm(&request(SESSION, rttm_flags::REPLY, 1234));
    // Not asking for a reply (a reply itself), or for another session: nothing.
    publication.on_rttm(&request(SESSION, 0, 1));
    publication.on_rttm(&request(SESSION + 1, rttm_flags::REPLY, 2));
    let replies = |sink: &RecordingSink| -> Vec<(Rttm, SocketAddr)> {
        sink.sent
            .iter()
            .filter_map(|(datagram, to)| match Frame::decode(datagram) {
                Ok(Frame::Rttm(reply)) => Some((reply, *to)),
                _ => None,
            })
            .collect()
    };
    publication.send_control(MS, &mut batch, &mut sink);
    let got = replies(&sink);
    assert_eq!(got.len(), 1, "{got:?}");
    let (reply, to) = got[0];
    assert_eq!(
        to,
        destination(),
        "replies go to the destination, not a source"
    );
    assert_eq!(reply.flags, 0, "a reply does not ask for one");
    assert_eq!(
        (
            reply.echo_timestamp_ns,
            reply.receiver_id,
            reply.reception_delta_ns
        ),
        (1234, 5, 0)
    );
    // A flood of requests between two sends is answered a bounded few times.
    sink.sent.clear();
    for echo in 0..1000 {
        publication.on_rttm(&request(SESSION, rttm_flags::REPLY, echo));
    }
    publication.send_control(2 * MS, &mut batch, &mut sink);
    assert_eq!(replies(&sink).len(), 4);
    sink.sent.clear();
    publication.send_control(3 * MS, &mut batch, &mut sink);
    assert!(replies(&sink).is_empty(), "each is answered once");
}

fn new_image(log: &Arc<LogBuffers>, reliable: bool) -> PublicationImage {
    let params = ImageParams {
        control: destination(),
        destination: 0,
        join_position: 0,
        receiver_id: 3,
        reliable,
        timings: image_timing::Timings::default(),
        delay: FeedbackDelay::unicast(),
        window: 16 * 1024,
    };
    PublicationImage::new(1, Arc::clone(log), &params, 0)
}

fn data(term_offset: i32, length: usize, flags: u8) -> (DataHeader, Vec<u8>) {
    let header = DataHeader {
        frame_length: i32::try_from(length).unwrap(),
        flags,
        frame_type: FrameType::Data,
        term_offset,
        session_id: SESSION,
        stream_id: STREAM,
        term_id: INITIAL_TERM_ID,
        reserved_value: 0,
    };
    let mut bytes = vec![0xAB; length.max(32)];
    header.encode(&mut bytes).unwrap();
    (header, bytes)
}

#[test]
fn an_image_rebuilds_out_of_order_naks_the_gap_after_its_delay_and_refuses_bad_frames() {
    let (log, _file) = new_log("image");
    let mut image = new_image(&log, true);
    let (mut batch, mut sink) = (SendBatch::new(), RecordingSink::default());
    image.do_work(0, &mut batch, &mut sink);
    let Frame::StatusMessage(first) = Frame::decode(&sink.sent[0].0).unwrap() else {
        panic!("the first status message goes out at once");
    };
    assert_eq!(
        (first.consumption_term_offset, first.receiver_window),
        (0, 16 * 1024)
    );
    // Frames of 128 bytes at 0, 256 and 384: 128..256 is missing.
    for offset in [384, 0, 256] {
        let (header, bytes) = data(offset, 128, data_flags::UNFRAGMENTED);
        image.on_frame(&header, &bytes, 1_000).unwrap();
    }
    let (header, bytes) = data(0, 128, data_flags::UNFRAGMENTED);
    image.on_frame(&header, &bytes, 1_000).unwrap();
    assert_eq!(image.tally().duplicates, 1);
    sink.sent.clear();
    image.do_work(2_000, &mut batch, &mut sink);
    assert_eq!(image.rebuild_position(), 128);
    assert_eq!(image.high_water_mark(), 512);
    assert!(sink.sent.is_empty(), "the NAK waits its delay");
    image.do_work(2_000 + 100_000, &mut batch, &mut sink);
    let naks: Vec<Nak> = sink
        .sent
        .iter()
        .filter_map(|(datagram, _)| match Frame::decode(datagram).unwrap() {
            Frame::Nak(nak) => Some(nak),
            _ => None,
        })
        .collect();
    assert_eq!(naks.len(), 1);
    assert_eq!((naks[0].term_offset, naks[0].length), (128, 128));
    // Bad frames: counted, nothing written.
    let bad = [
        data(33, 64, 0),                                        // misaligned
        data(i32::try_from(TERM_LENGTH).unwrap() - 32, 128, 0), // runs past the term
        data(-64, 64, 0),                                       // negative offset
        data(16 * 1024 + 1024, 128, 0),                         // past the window
    ];
    let before = image.tally();
    for (header, bytes) in &bad {
        assert!(image.on_frame(header, bytes, 3_000).is_err(), "{header:?}");
    }
    let after = image.tally();
    assert_eq!(after.invalid_frames - before.invalid_frames, 3);
    assert_eq!(after.overruns - before.overruns, 1);
    assert_eq!(
        log.term(0).get_i32(16 * 1024 + 1024),
        0,
        "nothing written past the window"
    );
    // The repair arrives; the image is complete.
    let (header, bytes) = data(128, 128, data_flags::UNFRAGMENTED);
    image.on_frame(&header, &bytes, 4_000).unwrap();
    image.do_work(5_000, &mut batch, &mut sink);
    assert_eq!(image.rebuild_position(), 512);
}

#[test]
fn an_unreliable_image_pads_over_gaps() {
    let (log, _file) = new_log("unreliable");
    let mut image = new_image(&log, false);
    let (mut batch, mut sink) = (SendBatch::new(), RecordingSink::default());
    let (header, bytes) = data(512, 128, data_flags::UNFRAGMENTED);
    image.on_frame(&header, &bytes, 0).unwrap();
    image.do_work(0, &mut batch, &mut sink);
    assert_eq!(image.rebuild_position(), 640);
    assert_eq!(image.tally().gaps_padded, 1);
    assert_eq!(image.tally().naks_sent, 0);
}

#[test]
fn an_image_ends_at_its_end_of_stream_or_after_its_liveness_timeout() {
    let (log, _file) = new_log("image-end");
    let mut image = new_image(&log, true);
    let (mut batch, mut sink) = (SendBatch::new(), RecordingSink::default());
    let (header, bytes) = data(0, 128, data_flags::UNFRAGMENTED);
    image.on_frame(&header, &bytes, 0).unwrap();
    let (mut heartbeat, beat) = data(128, 0, data_flags::UNFRAGMENTED | data_flags::END_OF_STREAM);
    heartbeat.frame_length = 0;
    image.on_frame(&heartbeat, &beat[..32], 0).unwrap();
    image.do_work(0, &mut batch, &mut sink);
    assert_eq!(image.status().state(), ImageState::EndOfStream);
    assert_eq!(log.metadata().end_of_stream_position(), 128);

    let (log2, _file2) = new_log("image-silent");
    let mut silent = new_image(&log2, true);
    silent.do_work(9_000 * MS, &mut batch, &mut sink);
    assert_eq!(silent.status().state(), ImageState::Active);
    silent.do_work(10_001 * MS, &mut batch, &mut sink);
    assert_eq!(silent.status().state(), ImageState::Gone);
}

#[test]
fn a_multi_destination_image_answers_along_every_live_route_that_frames_opened() {
    let (log, _file) = new_log("image-routes");
    let mut image = new_image(&log, true);
    let (mut batch, mut sink) = (SendBatch::new(), RecordingSink::default());
    let second: SocketAddr = "127.0.0.1:40002".parse().unwrap();
    let spoofed: SocketAddr = "10.9.9.9:40002".parse().unwrap();
    let destinations = |sink: &RecordingSink| -> Vec<(u32, SocketAddr)> {
        sink.sockets
            .iter()
            .copied()
            .zip(sink.sent.iter().map(|(_, to)| *to))
            .collect()
    };
    let heartbeat_at = |term_offset: i32| {
        let (mut header, bytes) = data(term_offset, 0, data_flags::UNFRAGMENTED);
        header.frame_length = 0;
        (header, bytes[..32].to_vec())
    };
    // A heartbeat far past the window, or a replay of data already complete, opens nothing.
    let (far, far_bytes) = heartbeat_at(60 * 1024);
    assert!(image.on_frame_via(&far, &far_bytes, 0, 2, spoofed).is_err());
    let (first, first_bytes) = data(0, 128, data_flags::UNFRAGMENTED);
    image.on_frame(&first, &first_bytes, 0).unwrap();
    image.do_work(0, &mut batch, &mut sink);
    image
        .on_frame_via(&first, &first_bytes, 0, 2, spoofed)
        .unwrap();
    assert_eq!(image.routes().len(), 1, "{:?}", image.routes());
    // New data through destination 1 opens its route; a later frame from elsewhere on it
    // keeps it alive but never redirects it.
    let (next, next_bytes) = data(128, 128, data_flags::UNFRAGMENTED);
    image
        .on_frame_via(&next, &next_bytes, MS, 1, second)
        .unwrap();
    let (beat, beat_bytes) = heartbeat_at(256);
    image
        .on_frame_via(&beat, &beat_bytes, MS, 1, spoofed)
        .unwrap();
    sink.sent.clear();
    sink.sockets.clear();
    // Past the status interval: a status message is due.
    image.do_work(250 * MS, &mut batch, &mut sink);
    assert_eq!(
        destinations(&sink),
        [(0, destination()), (1, second)],
        "the status message goes back along both ways, each from its own socket"
    );
    assert!(image.has_live_route(1, MS) && !image.has_live_route(2, MS));
    // Destination 0 falls silent past the liveness timeout while 1 still carries the stream.
    let later = 10_500 * MS;
    let (third, third_bytes) = data(256, 128, data_flags::UNFRAGMENTED);
    image
        .on_frame_via(&third, &third_bytes, later, 1, second)
        .unwrap();
    assert!(
        !image.has_live_route(0, later),
        "silent for the liveness timeout"
    );
    sink.sent.clear();
    sink.sockets.clear();
    image.do_work(later, &mut batch, &mut sink);
    image.do_work(later + 250 * MS, &mut batch, &mut sink);
    assert!(!sink.sent.is_empty());
    assert!(
        destinations(&sink)
            .iter()
            .all(|&route| route == (1, second)),
        "a silent route gets nothing: {:?}",
        destinations(&sink)
    );
    // A silent route is taken over by the next new data through its destination.
    let moved: SocketAddr = "127.0.0.1:40003".parse().unwrap();
    let (fourth, fourth_bytes) = data(384, 128, data_flags::UNFRAGMENTED);
    image
        .on_frame_via(&fourth, &fourth_bytes, later, 0, moved)
        .unwrap();
    assert_eq!(
        image
            .routes()
            .iter()
            .find(|route| route.destination == 0)
            .map(|route| route.control),
        Some(moved)
    );
    // A removed destination's route goes; with none left nothing is sent.
    image.remove_route(0);
    image.remove_route(1);
    assert!(image.routes().is_empty());
    sink.sent.clear();
    image.do_work(later + 500 * MS, &mut batch, &mut sink);
    assert!(sink.sent.is_empty(), "no route, no control frame");
    // Routes are bounded: new data through many destinations opens at most MAX_ROUTES.
    let mut offset = 512;
    for destination in 2..100 {
        let (frame, bytes) = data(offset, 32, data_flags::UNFRAGMENTED);
        offset += 32;
        let _ = image.on_frame_via(&frame, &bytes, later, destination, second);
    }
    assert_eq!(
        image.routes().len(),
        tern_engine::driver::publication_image::MAX_ROUTES
    );
}

#[test]
fn status_flags_of_a_closing_image_say_end_of_stream() {
    let (log, _file) = new_log("closing");
    let mut image = new_image(&log, true);
    let (mut batch, mut sink) = (SendBatch::new(), RecordingSink::default());
    image.close();
    image.do_work(0, &mut batch, &mut sink);
    let Frame::StatusMessage(message) = Frame::decode(&sink.sent[0].0).unwrap() else {
        panic!("a status message");
    };
    assert_ne!(message.flags & status_flags::END_OF_STREAM, 0);
}

#[test]
fn a_request_for_setup_is_answered_with_setup_and_never_moves_flow_control() {
    let (log, _file) = new_log("elicit");
    let params = PublicationParams {
        destination: Destination::Fixed(destination()),
        strategy: Strategy::Min { group_min_size: 0 },
        timings: publication_timing::Timings::default(),
        retransmit: RetransmitConfig::multicast(64 * 1024, 7),
        receiver_timeout_ns: 5_000 * MS,
        ttl: 1,
    };
    let mut publication = NetworkPublication::new(1, Arc::clone(&log), &params, 0);
    let (mut batch, mut sink) = (SendBatch::new(), RecordingSink::default());
    publish(&log, 300, 100);
    publication.on_status_message(&status(0, 4096), destination(), MS);
    publication.send_control(MS, &mut batch, &mut sink);
    while publication.send_data(MS, &mut batch, &mut sink) > 0 {}
    let held = publication.sender_position();
    assert!(held <= 4096);
    // A second receiver with no image yet asks for SETUP: its message says nothing of a
    // position, whatever its fields read as.
    let mut elicit = status(i32::MAX, i32::MAX);
    elicit.flags = status_flags::SEND_SETUP;
    elicit.consumption_term_id = 0;
    elicit.receiver_id = 99;
    publication.on_status_message(&elicit, destination(), 2 * MS);
    sink.sent.clear();
    publication.send_control(2 * MS, &mut batch, &mut sink);
    assert!(
        sink.sent
            .iter()
            .any(|(datagram, _)| matches!(Frame::decode(datagram), Ok(Frame::Setup(_)))),
        "SETUP answers at once"
    );
    assert_eq!(publication.send_data(2 * MS, &mut batch, &mut sink), 0);
    assert_eq!(publication.status().limit(), 4096, "the limit did not move");
}

#[test]
fn across_term_wraps_the_slot_past_the_rebuilt_data_is_always_clean() {
    // Five terms through a three-term log, the subscriber keeping up and the cleaner lagging:
    // whatever was rebuilt, the next slot a subscriber would read is zero, never a frame from
    // three terms before.
    let (log, _file) = new_log("wrap");
    let mut image = new_image(&log, true);
    let (mut batch, mut sink) = (SendBatch::new(), RecordingSink::default());
    let frame_length = 1024;
    let frames_per_term = usize::try_from(TERM_LENGTH).unwrap() / frame_length;
    let mut now = 0;
    for frame in 0..5 * frames_per_term {
        let term = i32::try_from(frame / frames_per_term).unwrap();
        let offset = i32::try_from((frame % frames_per_term) * frame_length).unwrap();
        let (mut header, bytes) = data(offset, frame_length, data_flags::UNFRAGMENTED);
        header.term_id = INITIAL_TERM_ID + term;
        let mut bytes = bytes;
        bytes[20..24].copy_from_slice(&header.term_id.to_le_bytes());
        loop {
            match image.on_frame(&header, &bytes, now) {
                Ok(_) => break,
                Err(_) => {
                    // Past the window or the cleaned part: the subscriber consumes, the
                    // receiver cleans, and the frame comes again (as a retransmission would).
                    image.status().set_consumption(image.rebuild_position());
                    now += 1_000;
                    image.do_work(now, &mut batch, &mut sink);
                }
            }
        }
        // The receiver's cleaning runs only when a frame is refused: the cleaner lags as far
        // as the image lets it.
        image.status().set_consumption(image.rebuild_position());
        let rebuilt = image.rebuild_position();
        let next = usize::try_from(rebuilt % i64::from(TERM_LENGTH)).unwrap();
        let index = usize::try_from((rebuilt / i64::from(TERM_LENGTH)) % 3).unwrap();
        assert_eq!(
            log.term(index).get_i32_volatile(next),
            0,
            "a stale frame waits at {rebuilt}"
        );
    }
    assert_eq!(image.rebuild_position(), 5 * i64::from(TERM_LENGTH));
    assert_eq!(image.tally().invalid_frames, 0);
}

#[test]
fn dynamic_destinations_are_bounded_and_forgotten_after_the_receiver_timeout() {
    let (log, _file) = new_log("dynamic");
    let params = PublicationParams {
        destination: Destination::Dynamic,
        strategy: Strategy::Max,
        timings: publication_timing::Timings::default(),
        retransmit: RetransmitConfig::unicast(64 * 1024),
        receiver_timeout_ns: 5_000 * MS,
        ttl: 0,
    };
    let mut publication = NetworkPublication::new(1, Arc::clone(&log), &params, 0);
    let (mut batch, mut sink) = (SendBatch::new(), RecordingSink::default());
    // Nobody joined: SETUP goes nowhere.
    publication.send_control(0, &mut batch, &mut sink);
    assert!(sink.sent.is_empty());
    let mut join = status(0, 0);
    join.flags = status_flags::SEND_SETUP;
    join.session_id = 0;
    for port in 0..100u16 {
        let source: SocketAddr = format!("127.0.0.1:{}", 20_000 + port).parse().unwrap();
        publication.on_status_message(&join, source, MS);
    }
    assert_eq!(
        publication.destinations().count(),
        64,
        "at most MAX_DESTINATIONS"
    );
    publication.send_control(MS, &mut batch, &mut sink);
    let setups = sink
        .sent
        .iter()
        .filter(|(datagram, _)| matches!(Frame::decode(datagram), Ok(Frame::Setup(_))))
        .count();
    assert_eq!(setups, 64, "SETUP to each who joined");
    // A request for any stream joins (Aeron C's receivers ask once per endpoint, for stream 0),
    // but never past the bound.
    let mut other = join;
    other.stream_id = 0;
    publication.on_status_message(&other, "127.0.0.1:30000".parse().unwrap(), MS);
    assert_eq!(publication.destinations().count(), 64);
    assert!(
        !publication
            .destinations()
            .any(|address| address.port() == 30_000)
    );
    publication.send_control(5_002 * MS, &mut batch, &mut sink);
    assert_eq!(
        publication.destinations().count(),
        0,
        "silent ones are dropped"
    );
}
