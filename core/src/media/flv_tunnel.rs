//! The x-flv tunnel: whole RTMP media messages carried over RTP between two gateways, so
//! that Flash-to-Flash calls through SIP keep every codec (and video) without translation.
//!
//! # Format
//!
//! RTP payload type: dynamic (97 in the original gateway), SDP `a=rtpmap:97 x-flv/1000`: the
//! RTP clock is 1 kHz, so the RTP timestamp is the RTMP timestamp in milliseconds plus the
//! sender's random base.
//!
//! Each RTMP message (audio, video, or any other) becomes the byte string
//!
//! ```text
//! +--------+----------------+--------------------------+-------------------+
//! | type:8 | length:24 (BE) | timestamp:32 (BE, in ms) | body (length B)   |
//! +--------+----------------+--------------------------+-------------------+
//! ```
//!
//! where `type` is the RTMP message type id, `length` the length of the whole message body
//! (not of one fragment) and `timestamp` the RTMP timestamp. The message stream id is not
//! carried. This string is cut, in order, into RTP payloads of at most `mtu` bytes (the
//! first one holds the whole 8-byte header) sent with consecutive sequence numbers and the
//! same RTP timestamp; the **marker bit is set on the last fragment** of each message.
//!
//! The receiver appends fragments until the marker and checks the total against `length`.
//! It does not reorder: a sequence gap drops the message in progress, and then every
//! packet until the next marker, because a fragment does not say where it belongs. The one
//! exception is a marked packet that holds a complete message by itself (most audio), which
//! is delivered even right after a loss.

use std::fmt;

use bytes::{BufMut, Bytes, BytesMut};
use smallvec::SmallVec;

use super::payload::RtpPayload;
use super::timestamp::rtmp_to_rtp;
use crate::rtmp::message::RtmpMessage;
use crate::rtp::RtpPacket;

/// The payload type the original gateway used for the tunnel.
pub const FLV_TUNNEL_PAYLOAD_TYPE: u8 = 97;
/// The SDP encoding name and clock rate of the tunnel.
pub const FLV_TUNNEL_ENCODING: &str = "x-flv/1000";
/// The RTP clock rate of the tunnel.
pub const FLV_TUNNEL_CLOCK_RATE: u32 = 1000;
/// Bytes of the per-message header.
pub const TUNNEL_HEADER_LEN: usize = 8;
/// The largest body the 24-bit length can describe.
pub const MAX_TUNNEL_MESSAGE: usize = 0xff_ffff;
/// The smallest usable MTU: the header plus one byte of body.
pub const MIN_TUNNEL_MTU: usize = TUNNEL_HEADER_LEN + 1;

/// Why a message cannot be sent, or packets cannot be reassembled.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum FlvTunnelError {
    /// Sending: the body is longer than the 24-bit length allows.
    TooLong(usize),
    /// Receiving: a first fragment shorter than the 8-byte header.
    Truncated,
    /// Receiving: the declared length is above the receiver's limit.
    TooLarge(usize),
    /// Receiving: the fragments hold more or fewer bytes than the declared length.
    LengthMismatch,
    /// Receiving: a sequence gap lost the message in progress (or the packet's place in one).
    Lost,
}

impl fmt::Display for FlvTunnelError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FlvTunnelError::TooLong(n) => write!(f, "message of {n} bytes is too long"),
            FlvTunnelError::Truncated => f.write_str("x-flv fragment shorter than its header"),
            FlvTunnelError::TooLarge(n) => write!(f, "x-flv message of {n} bytes over limit"),
            FlvTunnelError::LengthMismatch => f.write_str("x-flv fragments do not add up"),
            FlvTunnelError::Lost => f.write_str("x-flv packet lost"),
        }
    }
}

impl std::error::Error for FlvTunnelError {}

/// Sends RTMP messages through the tunnel.
///
/// ```
/// use bytes::Bytes;
/// use siprtmp_core::media::{FlvTunnelReceiver, FlvTunnelSender};
/// use siprtmp_core::rtmp::message::RtmpMessage;
/// use siprtmp_core::rtp::RtpPacket;
/// let tx = FlvTunnelSender::new(100, 5);
/// let msg = RtmpMessage::new(9, 0, 40, Bytes::from(vec![0x27; 250]));
/// let mut out = Vec::new();
/// assert_eq!(tx.push(&msg, &mut out).unwrap(), 3); // 8 + 250 bytes in 100-byte payloads
/// assert!(out[2].marker && out.iter().all(|p| p.timestamp == 45));
/// let mut rx = FlvTunnelReceiver::new(1 << 20);
/// let mut got = None;
/// for (i, p) in out.iter().enumerate() {
///     let mut pkt = RtpPacket::new(97, i as u16, p.timestamp, 1, p.to_bytes());
///     pkt.marker = p.marker;
///     got = rx.push(&pkt).unwrap();
/// }
/// assert_eq!(got.unwrap(), msg);
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FlvTunnelSender {
    mtu: usize,
    timestamp_base: u32,
}

impl FlvTunnelSender {
    /// A sender cutting payloads of at most `mtu` bytes (at least [`MIN_TUNNEL_MTU`]);
    /// `timestamp_base` is added to RTP timestamps (0 when the RTP session adds its own).
    pub fn new(mtu: usize, timestamp_base: u32) -> Self {
        FlvTunnelSender {
            mtu: mtu.max(MIN_TUNNEL_MTU),
            timestamp_base,
        }
    }

    /// Appends the RTP payloads of `msg` to `out` and returns how many. The body is not
    /// copied: the header goes in the first payload's header buffer, the fragments are
    /// slices.
    pub fn push(
        &self,
        msg: &RtmpMessage,
        out: &mut Vec<RtpPayload>,
    ) -> Result<usize, FlvTunnelError> {
        let len = msg.payload.len();
        if len > MAX_TUNNEL_MESSAGE {
            return Err(FlvTunnelError::TooLong(len));
        }
        let ts = rtmp_to_rtp(msg.timestamp, FLV_TUNNEL_CLOCK_RATE, self.timestamp_base);
        let mut header: SmallVec<[u8; 8]> = SmallVec::new();
        header.push(msg.type_id);
        header.extend_from_slice(&(len as u32).to_be_bytes()[1..]);
        header.extend_from_slice(&msg.timestamp.to_be_bytes());
        let first = len.min(self.mtu - TUNNEL_HEADER_LEN);
        let before = out.len();
        out.push(RtpPayload {
            timestamp: ts,
            marker: first == len,
            header,
            body: msg.payload.slice(..first),
        });
        let mut at = first;
        while at < len {
            let end = (at + self.mtu).min(len);
            out.push(RtpPayload::new(ts, end == len, msg.payload.slice(at..end)));
            at = end;
        }
        Ok(out.len() - before)
    }
}

/// A message being reassembled.
#[derive(Debug)]
struct Partial {
    type_id: u8,
    timestamp: u32,
    length: usize,
    body: BytesMut,
}

/// Reassembles RTMP messages from tunnel packets.
#[derive(Debug)]
pub struct FlvTunnelReceiver {
    max_message: usize,
    next_sequence: Option<u16>,
    partial: Option<Partial>,
    /// After a loss or error: drop packets until one with the marker.
    skipping: bool,
}

impl FlvTunnelReceiver {
    /// A receiver accepting messages of at most `max_message` body bytes.
    pub fn new(max_message: usize) -> Self {
        FlvTunnelReceiver {
            max_message: max_message.min(MAX_TUNNEL_MESSAGE),
            next_sequence: None,
            partial: None,
            skipping: false,
        }
    }

    /// Starts over (for example when the sender's SSRC changes).
    pub fn reset(&mut self) {
        *self = FlvTunnelReceiver::new(self.max_message);
    }

    /// Takes in one tunnel packet; returns a message (stream id 0: the caller sets it) when
    /// this packet completes one. Errors report what was dropped; the receiver stays usable.
    pub fn push(&mut self, packet: &RtpPacket) -> Result<Option<RtmpMessage>, FlvTunnelError> {
        let expected = self.next_sequence.unwrap_or(packet.sequence);
        self.next_sequence = Some(packet.sequence.wrapping_add(1));
        let payload = &packet.payload;
        if packet.sequence != expected {
            self.partial = None;
            self.skipping = true;
            // A marked packet that is a complete message on its own can still be used.
            if packet.marker {
                self.skipping = false;
                if let Some((type_id, length, timestamp)) = header(payload) {
                    if payload.len() - TUNNEL_HEADER_LEN == length {
                        return self.single(type_id, timestamp, payload);
                    }
                }
            }
            return Err(FlvTunnelError::Lost);
        }
        if self.skipping {
            if packet.marker {
                self.skipping = false;
            }
            return Err(FlvTunnelError::Lost);
        }
        let result = self.fragment(payload, packet.marker);
        if result.is_err() {
            self.partial = None;
            self.skipping = !packet.marker;
        }
        result
    }

    fn single(
        &self,
        type_id: u8,
        timestamp: u32,
        payload: &Bytes,
    ) -> Result<Option<RtmpMessage>, FlvTunnelError> {
        let length = payload.len() - TUNNEL_HEADER_LEN;
        if length > self.max_message {
            return Err(FlvTunnelError::TooLarge(length));
        }
        Ok(Some(RtmpMessage::new(
            type_id,
            0,
            timestamp,
            payload.slice(TUNNEL_HEADER_LEN..),
        )))
    }

    fn fragment(
        &mut self,
        payload: &Bytes,
        marker: bool,
    ) -> Result<Option<RtmpMessage>, FlvTunnelError> {
        let Some(mut partial) = self.partial.take() else {
            // A new message starts with its header.
            let (type_id, length, timestamp) = header(payload).ok_or(FlvTunnelError::Truncated)?;
            if length > self.max_message {
                return Err(FlvTunnelError::TooLarge(length));
            }
            let have = payload.len() - TUNNEL_HEADER_LEN;
            if marker {
                if have != length {
                    return Err(FlvTunnelError::LengthMismatch);
                }
                // Zero copy for single-packet messages.
                return self.single(type_id, timestamp, payload);
            }
            if have >= length {
                return Err(FlvTunnelError::LengthMismatch);
            }
            // Grows with the data that actually arrives, never to the declared length ahead.
            let mut body = BytesMut::with_capacity(have * 2);
            body.put_slice(&payload[TUNNEL_HEADER_LEN..]);
            self.partial = Some(Partial {
                type_id,
                timestamp,
                length,
                body,
            });
            return Ok(None);
        };
        if partial.body.len() + payload.len() > partial.length {
            return Err(FlvTunnelError::LengthMismatch);
        }
        partial.body.put_slice(payload);
        if !marker {
            self.partial = Some(partial);
            return Ok(None);
        }
        if partial.body.len() != partial.length {
            return Err(FlvTunnelError::LengthMismatch);
        }
        Ok(Some(RtmpMessage::new(
            partial.type_id,
            0,
            partial.timestamp,
            partial.body.freeze(),
        )))
    }
}

/// The (type, length, timestamp) header at the start of a first fragment.
fn header(payload: &[u8]) -> Option<(u8, usize, u32)> {
    let h: &[u8; TUNNEL_HEADER_LEN] = payload.get(..TUNNEL_HEADER_LEN)?.try_into().ok()?;
    let length = u32::from_be_bytes([0, h[1], h[2], h[3]]) as usize;
    let timestamp = u32::from_be_bytes([h[4], h[5], h[6], h[7]]);
    Some((h[0], length, timestamp))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn packets(out: &[RtpPayload], first_seq: u16) -> Vec<RtpPacket> {
        out.iter()
            .enumerate()
            .map(|(i, p)| {
                let mut pkt = RtpPacket::new(
                    97,
                    first_seq.wrapping_add(i as u16),
                    p.timestamp,
                    1,
                    p.to_bytes(),
                );
                pkt.marker = p.marker;
                pkt
            })
            .collect()
    }

    #[test]
    fn known_bytes_of_a_small_message() {
        let tx = FlvTunnelSender::new(1200, 0);
        let msg = RtmpMessage::new(8, 1, 0x0102_0304, Bytes::from_static(&[0xb2, 0xaa, 0xbb]));
        let mut out = Vec::new();
        tx.push(&msg, &mut out).unwrap();
        assert_eq!(out.len(), 1);
        assert_eq!(
            &out[0].to_bytes()[..],
            &[8, 0, 0, 3, 1, 2, 3, 4, 0xb2, 0xaa, 0xbb]
        );
        assert!(out[0].marker);
        assert_eq!(out[0].timestamp, 0x0102_0304);
    }

    #[test]
    fn fragments_exactly_at_the_mtu() {
        let tx = FlvTunnelSender::new(50, 0);
        let msg = RtmpMessage::new(9, 0, 0, Bytes::from(vec![1u8; 42 + 50 * 2]));
        let mut out = Vec::new();
        assert_eq!(tx.push(&msg, &mut out), Ok(3));
        assert!(out.iter().all(|p| p.len() == 50));
        assert_eq!(out.iter().filter(|p| p.marker).count(), 1);
        // Empty body: the header alone.
        out.clear();
        tx.push(&RtmpMessage::new(8, 0, 0, Bytes::new()), &mut out)
            .unwrap();
        assert_eq!((out.len(), out[0].len(), out[0].marker), (1, 8, true));
    }

    #[test]
    fn loss_drops_the_message_but_not_the_next_single_packet_one() {
        let tx = FlvTunnelSender::new(20, 0);
        let big = RtmpMessage::new(9, 0, 0, Bytes::from(vec![7u8; 100]));
        let small = RtmpMessage::new(8, 0, 20, Bytes::from_static(&[0xb2, 1, 2]));
        let mut out = Vec::new();
        tx.push(&big, &mut out).unwrap();
        tx.push(&small, &mut out).unwrap();
        tx.push(&big, &mut out).unwrap();
        let pkts = packets(&out, 65_530);
        let mut rx = FlvTunnelReceiver::new(1000);
        let mut got = Vec::new();
        for (i, p) in pkts.iter().enumerate() {
            if i == 2 {
                continue; // lose a middle fragment of the first big message
            }
            if let Ok(Some(m)) = rx.push(p) {
                got.push(m);
            }
        }
        assert_eq!(got, vec![small, big]);
    }

    #[test]
    fn rejects_inconsistent_fragments() {
        let mut rx = FlvTunnelReceiver::new(10);
        let mut p = RtpPacket::new(97, 1, 0, 1, Bytes::from_static(&[9, 0, 0, 11, 0, 0, 0, 0]));
        assert_eq!(rx.push(&p), Err(FlvTunnelError::TooLarge(11)));
        p.sequence = 2;
        p.marker = true;
        p.payload = Bytes::from_static(&[9, 0, 0, 2, 0, 0, 0, 0, 1]);
        assert_eq!(rx.push(&p), Err(FlvTunnelError::Lost)); // still skipping to the marker
        p.sequence = 3;
        assert_eq!(rx.push(&p), Err(FlvTunnelError::LengthMismatch));
        p.sequence = 4;
        p.payload = Bytes::from_static(&[9, 0, 0]);
        assert_eq!(rx.push(&p), Err(FlvTunnelError::Truncated));
        let tx = FlvTunnelSender::new(100, 0);
        let huge = RtmpMessage::new(9, 0, 0, Bytes::from(vec![0u8; MAX_TUNNEL_MESSAGE + 1]));
        assert_eq!(
            tx.push(&huge, &mut Vec::new()),
            Err(FlvTunnelError::TooLong(MAX_TUNNEL_MESSAGE + 1))
        );
    }

    proptest! {
        #[test]
        fn round_trip_random_sizes(
            sizes in proptest::collection::vec(0usize..5000, 1..12),
            mtu in 0usize..1500,
            seq in any::<u16>(),
            base in any::<u32>(),
        ) {
            let tx = FlvTunnelSender::new(mtu, base);
            let msgs: Vec<_> = sizes
                .iter()
                .enumerate()
                .map(|(i, &n)| {
                    let body: Vec<u8> = (0..n).map(|j| (i * 31 + j) as u8).collect();
                    RtmpMessage::new(8 + (i % 2) as u8, 0, i as u32 * 20, body)
                })
                .collect();
            let mut out = Vec::new();
            for m in &msgs {
                tx.push(m, &mut out).unwrap();
            }
            prop_assert!(out.iter().all(|p| p.len() <= mtu.max(MIN_TUNNEL_MTU)));
            let mut rx = FlvTunnelReceiver::new(MAX_TUNNEL_MESSAGE);
            let mut got = Vec::new();
            for p in packets(&out, seq) {
                if let Some(m) = rx.push(&p).unwrap() {
                    got.push(m);
                }
            }
            prop_assert_eq!(got, msgs);
        }

        #[test]
        fn arbitrary_packets_never_panic(
            packets in proptest::collection::vec(
                (0u16..6, any::<bool>(), proptest::collection::vec(any::<u8>(), 0..40)),
                0..40,
            ),
        ) {
            let mut rx = FlvTunnelReceiver::new(64);
            for (i, (skip, marker, payload)) in packets.into_iter().enumerate() {
                let seq = (i as u16).wrapping_add(skip / 5);
                let mut p = RtpPacket::new(97, seq, 0, 1, Bytes::from(payload));
                p.marker = marker;
                if let Ok(Some(m)) = rx.push(&p) {
                    prop_assert!(m.payload.len() <= 64);
                }
            }
        }
    }
}
