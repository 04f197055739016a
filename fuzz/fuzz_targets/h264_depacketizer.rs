//! RFC 6184 H.264 depacketization: a sequence of arbitrary RTP packets (single NAL units,
//! STAP-A, FU-A, anything else), with time passing between them, never panics and never
//! yields a video message larger than the configured limit; every message is an FLV AVC video
//! body.
#![no_main]

use std::time::{Duration, Instant};

use bytes::Bytes;
use libfuzzer_sys::fuzz_target;
use siprtmp_core::media::{H264Depacketizer, H264DepacketizerConfig};
use siprtmp_core::rtmp::message::type_id;
use siprtmp_core::rtp::RtpPacket;
use siprtmp_fuzz::frames::split;

const MAX_FRAME: usize = 256 * 1024;

fuzz_target!(|data: &[u8]| {
    let config = H264DepacketizerConfig {
        max_frame_size: MAX_FRAME,
        ..H264DepacketizerConfig::default()
    };
    let mut depacketizer = H264Depacketizer::new(config);
    let start = Instant::now();
    let mut now = start;
    let mut rtmp_ms = 0u32;
    for packet in split(data) {
        // Each packet: one byte of elapsed time (ms), then an RTP packet.
        let Some((&elapsed, wire)) = packet.split_first() else {
            continue;
        };
        now += Duration::from_millis(u64::from(elapsed));
        rtmp_ms = rtmp_ms.wrapping_add(u32::from(elapsed));
        if depacketizer.poll_timeout().is_some_and(|t| t <= now) {
            depacketizer.handle_timeout(now);
        }
        if let Ok(rtp) = RtpPacket::parse(Bytes::copy_from_slice(wire)) {
            depacketizer.push(now, rtmp_ms, &rtp);
        }
        let _ = depacketizer.keyframe_needed(now);
        while let Some(msg) = depacketizer.poll_message() {
            assert_eq!(msg.type_id, type_id::VIDEO);
            assert!(
                msg.payload.len() <= MAX_FRAME + 64,
                "{} byte frame",
                msg.payload.len()
            );
            assert!(
                msg.payload.len() >= 5,
                "an AVC video tag has a 5-byte header"
            );
            assert_eq!(msg.payload[0] & 0x0f, 7, "codec id AVC");
        }
    }
    // Whatever is held leaves once its time is up.
    now += Duration::from_secs(10);
    depacketizer.handle_timeout(now);
    while depacketizer.poll_message().is_some() {}
    assert!(
        depacketizer.poll_timeout().is_none_or(|t| t > now),
        "a deadline stays due after handle_timeout"
    );
});
