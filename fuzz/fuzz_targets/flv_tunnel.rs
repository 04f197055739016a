//! The x-flv tunnel receiver (whole RTMP media messages over RTP between two gateways): a
//! sequence of arbitrary RTP packets never panics and never yields a message larger than the
//! receiver's limit; messages sent through the tunnel sender come back whole, even after
//! garbage.
#![no_main]

use bytes::Bytes;
use libfuzzer_sys::fuzz_target;
use siprtmp_core::media::{FlvTunnelReceiver, FlvTunnelSender};
use siprtmp_core::rtmp::message::RtmpMessage;
use siprtmp_core::rtp::RtpPacket;
use siprtmp_fuzz::frames::split;

const MAX: usize = 64 * 1024;

fuzz_target!(|data: &[u8]| {
    let mut rx = FlvTunnelReceiver::new(MAX);
    let mut last_seq = 0u16;
    let mut last_ts = 0u32;
    for wire in split(data) {
        let Ok(rtp) = RtpPacket::parse(Bytes::copy_from_slice(wire)) else {
            continue;
        };
        last_seq = rtp.sequence;
        last_ts = rtp.timestamp;
        if let Ok(Some(msg)) = rx.push(&rtp) {
            assert!(
                msg.payload.len() <= MAX,
                "{} byte message",
                msg.payload.len()
            );
        }
    }
    // Messages sent properly after whatever came before: after a loss the receiver drops
    // packets up to the next marker, so the first may be lost; the second arrives intact.
    let msg = RtmpMessage::new(9, 0, 40, Bytes::from(vec![0x27; 300]));
    let mut out = Vec::new();
    let tx = FlvTunnelSender::new(100, 0);
    tx.push(&msg, &mut out).unwrap();
    tx.push(&msg, &mut out).unwrap();
    let mut got = Vec::new();
    for (i, p) in out.iter().enumerate() {
        let seq = last_seq.wrapping_add(1 + i as u16);
        let mut pkt = RtpPacket::new(97, seq, last_ts.wrapping_add(p.timestamp), 1, p.to_bytes());
        pkt.marker = p.marker;
        if let Ok(Some(m)) = rx.push(&pkt) {
            got.push(m);
        }
    }
    let last = got.last().expect("the message after the garbage");
    assert_eq!((last.type_id, &last.payload), (msg.type_id, &msg.payload));
});
