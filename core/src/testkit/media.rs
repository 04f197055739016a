//! [`synthetic_av`]: a synthetic audio/video stream for tests, benchmarks and simulations.

/// A synthetic audio/video stream for tests, benchmarks and simulations: an AVC and an AAC
/// sequence header at 0 ms, then 12 fps video with a keyframe every 2 s (each frame's payload
/// says its index) and an audio frame every 20 ms, in timestamp order.
///
/// ```
/// use std::time::Duration;
/// let msgs = siprtmp_core::testkit::synthetic_av(1, Duration::from_secs(2));
/// assert_eq!(msgs.iter().filter(|m| m.type_id == 9).count(), 1 + 24);
/// assert_eq!(msgs.iter().filter(|m| m.type_id == 8).count(), 1 + 100);
/// ```
pub fn synthetic_av(
    stream_id: u32,
    duration: std::time::Duration,
) -> Vec<crate::rtmp::message::RtmpMessage> {
    use crate::rtmp::message::{type_id, RtmpMessage};
    let total_ms = duration.as_millis() as u32;
    let mut msgs = vec![
        RtmpMessage::new(
            type_id::VIDEO,
            stream_id,
            0,
            vec![0x17, 0x00, 0, 0, 0, 1, 0x42, 0xc0, 0x1e],
        ),
        RtmpMessage::new(type_id::AUDIO, stream_id, 0, vec![0xaf, 0x00, 0x12, 0x10]),
    ];
    let frames = total_ms * 12 / 1000;
    let mut video = (0..frames).map(|i| {
        let t = i * 1000 / 12;
        let key = i % 24 == 0;
        let mut body = vec![if key { 0x17 } else { 0x27 }, 0x01, 0, 0, 0];
        body.extend_from_slice(&i.to_be_bytes());
        // Keyframes are larger, as in real streams.
        body.resize(if key { 6000 } else { 900 }, (i % 251) as u8);
        RtmpMessage::new(type_id::VIDEO, stream_id, t, body)
    });
    let mut audio = (0..total_ms / 20).map(|i| {
        let mut body = vec![0xaf, 0x01];
        body.extend_from_slice(&i.to_be_bytes());
        body.resize(60, 0x11);
        RtmpMessage::new(type_id::AUDIO, stream_id, i * 20, body)
    });
    let (mut v, mut a) = (video.next(), audio.next());
    loop {
        match (v.take(), a.take()) {
            (Some(x), Some(y)) if x.timestamp <= y.timestamp => {
                msgs.push(x);
                a = Some(y);
                v = video.next();
            }
            (x, Some(y)) => {
                msgs.push(y);
                v = x;
                a = audio.next();
            }
            (Some(x), None) => {
                msgs.push(x);
                v = video.next();
            }
            (None, None) => return msgs,
        }
    }
}
