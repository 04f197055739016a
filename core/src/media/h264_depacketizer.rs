//! RTP→RTMP for H.264 (RFC 6184, packetization mode 1): RTP packets in, FLV AVC video tags
//! out.
//!
//! - **Reordering.** Packets are released in sequence-number order. A packet that arrives
//!   ahead of a gap waits in a small window; the gap is declared lost when the window holds
//!   more than `reorder_packets` packets or its oldest packet has waited `reorder_delay`
//!   (see [`H264Depacketizer::poll_timeout`]). Late and duplicate packets are dropped; a jump
//!   far backwards is taken as a restarted sender.
//! - **Reassembly.** Single NAL unit packets, STAP-A (type 24) and FU-A (type 28) give NAL
//!   units; an FU-A missing its start, middle or end is dropped. STAP-B, MTAP and FU-B
//!   (interleaved mode, never negotiated) damage the frame they are in.
//! - **Frames.** NAL units are grouped into a frame by RTP timestamp; the marker bit or a new
//!   timestamp ends it. SPS and PPS are taken out of the frames and kept: an AVC sequence
//!   header (AVCDecoderConfigurationRecord) is emitted before the first keyframe and again
//!   whenever they change. Frames come out as FLV video tags (`0x17` keyframe with an IDR
//!   slice, else `0x27`; AVC packet type 1; composition time 0; 4-byte NAL lengths).
//! - **Loss.** A frame touched by a loss is dropped, and since later frames reference it,
//!   everything is dropped until the next IDR frame. Nothing is emitted before the first IDR
//!   either. [`H264Depacketizer::keyframe_needed`] says when to ask the sender for a keyframe
//!   (RTCP PLI/FIR or SIP INFO `picture_fast_update`), at most once per interval.
//!
//! RTMP timestamps come from an [`RtpTimeline`] anchored at the first packet.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use bytes::{BufMut, Bytes, BytesMut};

use super::avc_config::AvcDecoderConfig;
use super::h264_packetizer::{nal_type, H264_CLOCK_RATE};
use super::timestamp::RtpTimeline;
use crate::rtmp::message::{type_id, RtmpMessage};
use crate::rtp::RtpPacket;

/// A sequence-number step backwards larger than this is a restarted sender, not a late
/// packet.
const RESTART_DISTANCE: i16 = -1000;
/// Size of the FLV AVC video header in front of the NAL units.
const FLV_HEADER_LEN: usize = 5;

/// Depacketizer settings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct H264DepacketizerConfig {
    /// Packets held while waiting for a missing one before it is declared lost (0: no
    /// reordering, every gap is a loss at once).
    pub reorder_packets: usize,
    /// How long a packet waits for a missing earlier one.
    pub reorder_delay: Duration,
    /// Frames larger than this (bytes of FLV body) are dropped as damaged.
    pub max_frame_size: usize,
    /// Least time between two keyframe requests.
    pub keyframe_request_interval: Duration,
}

impl Default for H264DepacketizerConfig {
    fn default() -> Self {
        H264DepacketizerConfig {
            reorder_packets: 8,
            reorder_delay: Duration::from_millis(100),
            max_frame_size: 2 << 20,
            keyframe_request_interval: Duration::from_secs(1),
        }
    }
}

/// A packet waiting in the reorder window.
#[derive(Debug, Clone)]
struct Held {
    sequence: u16,
    arrival: Instant,
    timestamp: u32,
    marker: bool,
    payload: Bytes,
}

/// The frame being assembled.
#[derive(Debug)]
struct Frame {
    timestamp: Option<u32>,
    /// The FLV body: 5-byte header placeholder, then length-prefixed NAL units.
    body: BytesMut,
    nals: usize,
    idr: bool,
    damaged: bool,
    /// Offset of the length prefix of the FU-A NAL in progress.
    fu_start: Option<usize>,
}

impl Frame {
    fn new() -> Self {
        let mut body = BytesMut::new();
        body.put_slice(&[0x27, 1, 0, 0, 0]);
        Frame {
            timestamp: None,
            body,
            nals: 0,
            idr: false,
            damaged: false,
            fu_start: None,
        }
    }
}

/// RTP packets of one H.264 stream to FLV video tags.
///
/// ```
/// use std::time::Instant;
/// use bytes::Bytes;
/// use siprtmp_core::media::{H264Depacketizer, H264DepacketizerConfig};
/// use siprtmp_core::rtp::RtpPacket;
/// let now = Instant::now();
/// let mut d = H264Depacketizer::new(H264DepacketizerConfig::default());
/// let pkt = |seq, payload: &'static [u8], marker| {
///     let mut p = RtpPacket::new(96, seq, 9000, 1, Bytes::from_static(payload));
///     p.marker = marker;
///     p
/// };
/// d.push(now, 0, &pkt(1, &[0x67, 0x42, 0xc0, 0x0c, 0xda], false)); // SPS
/// d.push(now, 0, &pkt(2, &[0x68, 0xce, 0x3c, 0x80], false)); // PPS
/// d.push(now, 0, &pkt(3, &[0x65, 0x88, 0x84], true)); // IDR slice, end of frame
/// let seq_header = d.poll_message().unwrap();
/// assert_eq!(&seq_header.payload[..2], &[0x17, 0x00]);
/// let frame = d.poll_message().unwrap();
/// assert_eq!(&frame.payload[..], &[0x17, 1, 0, 0, 0, 0, 0, 0, 3, 0x65, 0x88, 0x84]);
/// assert!(!d.keyframe_needed(now));
/// ```
#[derive(Debug)]
pub struct H264Depacketizer {
    config: H264DepacketizerConfig,
    ssrc: Option<u32>,
    next_sequence: Option<u16>,
    held: VecDeque<Held>,
    /// The next packet processed follows a loss.
    after_gap: bool,
    frame: Frame,
    sps: Option<Bytes>,
    pps: Option<Bytes>,
    sent_config: Option<(Bytes, Bytes)>,
    waiting_for_keyframe: bool,
    keyframe_wanted: bool,
    last_request: Option<Instant>,
    received: bool,
    timeline: RtpTimeline,
    output: VecDeque<RtmpMessage>,
    frames_lost: u64,
}

impl H264Depacketizer {
    /// A depacketizer waiting for its first keyframe.
    pub fn new(config: H264DepacketizerConfig) -> Self {
        H264Depacketizer {
            config,
            ssrc: None,
            next_sequence: None,
            held: VecDeque::new(),
            after_gap: false,
            frame: Frame::new(),
            sps: None,
            pps: None,
            sent_config: None,
            waiting_for_keyframe: true,
            keyframe_wanted: true,
            last_request: None,
            received: false,
            timeline: RtpTimeline::new(H264_CLOCK_RATE),
            output: VecDeque::new(),
            frames_lost: 0,
        }
    }

    /// Starts over (a new play or a new call): forgets packets, parameter sets, the timeline
    /// and the keyframe-request rate limit; waits for a keyframe again.
    pub fn reset(&mut self) {
        *self = H264Depacketizer::new(self.config);
    }

    /// Frames dropped as damaged (lost packets, broken FU-A, oversize) so far.
    pub fn frames_lost(&self) -> u64 {
        self.frames_lost
    }

    /// Takes in one RTP packet of the stream (the caller filters by payload type).
    /// `rtmp_now_ms` is the RTMP stream time now, used to anchor the first packet's timestamp
    /// (and again after an SSRC change). Emitted messages are taken with
    /// [`H264Depacketizer::poll_message`].
    pub fn push(&mut self, now: Instant, rtmp_now_ms: u32, packet: &RtpPacket) {
        if self.ssrc != Some(packet.ssrc) {
            if self.ssrc.is_some() {
                // A new source starts a new stream: its frames reference nothing we have.
                let config = self.config;
                let last_request = self.last_request;
                *self = H264Depacketizer::new(config);
                self.last_request = last_request;
            }
            self.ssrc = Some(packet.ssrc);
        }
        if !self.timeline.is_anchored() {
            self.timeline.to_rtmp(packet.timestamp, rtmp_now_ms);
        }
        self.received = true;
        let held = Held {
            sequence: packet.sequence,
            arrival: now,
            timestamp: packet.timestamp,
            marker: packet.marker,
            payload: packet.payload.clone(),
        };
        let next = *self.next_sequence.get_or_insert(packet.sequence);
        let ahead = packet.sequence.wrapping_sub(next) as i16;
        if ahead < RESTART_DISTANCE {
            // The sender restarted its numbering: what we hold is from before.
            self.flush_held_as_lost();
            self.next_sequence = Some(packet.sequence);
        } else if ahead < 0 {
            return; // late or duplicate
        }
        let next = self.next_sequence.unwrap_or(packet.sequence);
        let key = |s: u16| s.wrapping_sub(next);
        let at = self
            .held
            .partition_point(|h| key(h.sequence) < key(packet.sequence));
        if self
            .held
            .get(at)
            .is_some_and(|h| h.sequence == packet.sequence)
        {
            return; // duplicate of a held packet
        }
        self.held.insert(at, held);
        self.release(now);
    }

    /// When held packets should be given up waiting for ([`H264Depacketizer::handle_timeout`]).
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.held
            .iter()
            .map(|h| h.arrival)
            .min()
            .map(|t| t + self.config.reorder_delay)
    }

    /// Declares gaps lost whose waiting packets have waited long enough.
    pub fn handle_timeout(&mut self, now: Instant) {
        self.release(now);
    }

    /// The next RTMP video message (stream id 0: the caller sets the stream it publishes
    /// on): a sequence header or a frame.
    pub fn poll_message(&mut self) -> Option<RtmpMessage> {
        self.output.pop_front()
    }

    /// Whether to ask the sender for a keyframe now: frames were lost or no IDR has been seen
    /// since the start, and the last request (if any) was at least
    /// `keyframe_request_interval` ago. Answering `true` counts as making the request.
    pub fn keyframe_needed(&mut self, now: Instant) -> bool {
        let due = match self.last_request {
            Some(t) => now.saturating_duration_since(t) >= self.config.keyframe_request_interval,
            None => true,
        };
        if self.received && self.keyframe_wanted && due {
            self.last_request = Some(now);
            return true;
        }
        false
    }

    /// Processes held packets in order while the next one is present, and gives up on gaps
    /// the window cannot wait for.
    fn release(&mut self, now: Instant) {
        loop {
            let Some(next) = self.next_sequence else {
                return;
            };
            let oldest = self.held.iter().map(|h| h.arrival).min();
            match (self.held.front(), oldest) {
                (Some(h), _) if h.sequence == next => {}
                (Some(_), Some(oldest))
                    if self.held.len() > self.config.reorder_packets
                        || now.saturating_duration_since(oldest) >= self.config.reorder_delay =>
                {
                    // Give up on the gap: skip to the first packet we have.
                    self.after_gap = true;
                }
                _ => return,
            }
            let Some(h) = self.held.pop_front() else {
                return;
            };
            self.next_sequence = Some(h.sequence.wrapping_add(1));
            self.process(h);
        }
    }

    fn flush_held_as_lost(&mut self) {
        if !self.held.is_empty() {
            self.held.clear();
        }
        self.after_gap = true;
    }

    /// One packet, in order.
    fn process(&mut self, p: Held) {
        if self.frame.timestamp.is_some_and(|t| t != p.timestamp) {
            if self.after_gap {
                // The lost packets may have been the end of the current frame.
                self.frame.damaged = true;
            }
            self.finish_frame();
        }
        if self.after_gap {
            self.after_gap = false;
            self.on_loss();
            // The gap is inside this frame unless the packet visibly starts a new picture.
            if self.frame.timestamp.is_some() || !starts_picture(&p.payload) {
                self.frame.damaged = true;
            }
        }
        self.frame.timestamp = Some(p.timestamp);
        self.depacketize(&p.payload);
        if p.marker {
            self.finish_frame();
        }
    }

    fn on_loss(&mut self) {
        self.waiting_for_keyframe = true;
        self.keyframe_wanted = true;
        self.abort_fu();
    }

    fn abort_fu(&mut self) {
        if let Some(start) = self.frame.fu_start.take() {
            self.frame.body.truncate(start);
            self.frame.damaged = true;
        }
    }

    fn depacketize(&mut self, payload: &Bytes) {
        let Some(&first) = payload.first() else {
            return;
        };
        match first & 0x1f {
            1..=23 => {
                self.abort_fu();
                self.add_nal(payload);
            }
            nal_type::STAP_A => {
                self.abort_fu();
                // Validate the whole aggregate before taking any NAL from it.
                let mut at = 1;
                let mut ranges = smallvec::SmallVec::<[(usize, usize); 8]>::new();
                while at < payload.len() {
                    let Some(len) = payload.get(at..at + 2) else {
                        self.frame.damaged = true;
                        return;
                    };
                    let len = usize::from(u16::from_be_bytes([len[0], len[1]]));
                    at += 2;
                    if len == 0 || len > payload.len() - at {
                        self.frame.damaged = true;
                        return;
                    }
                    ranges.push((at, at + len));
                    at += len;
                }
                for (s, e) in ranges {
                    self.add_nal(&payload[s..e]);
                }
            }
            nal_type::FU_A => self.fu_a(payload),
            _ => {
                // STAP-B, MTAP16/24, FU-B (interleaved mode) or reserved types.
                self.abort_fu();
                self.frame.damaged = true;
            }
        }
    }

    fn fu_a(&mut self, payload: &Bytes) {
        let (Some(&indicator), Some(&fu)) = (payload.first(), payload.get(1)) else {
            self.frame.damaged = true;
            return;
        };
        let start = fu & 0x80 != 0;
        let end = fu & 0x40 != 0;
        let data = &payload[2..];
        if start {
            self.abort_fu();
            if !self.fits(5 + data.len()) {
                return;
            }
            let header = (indicator & 0xe0) | (fu & 0x1f);
            self.frame.fu_start = Some(self.frame.body.len());
            self.frame.body.put_u32(0);
            self.frame.body.put_u8(header);
        } else if self.frame.fu_start.is_none() {
            // A continuation whose start was lost (already counted as damage by the gap).
            self.frame.damaged = true;
            return;
        } else if !self.fits(data.len()) {
            self.abort_fu();
            return;
        }
        self.frame.body.put_slice(data);
        if end {
            if let Some(at) = self.frame.fu_start.take() {
                // The NAL was assembled in place: patch its length prefix.
                let nal_at = at + 4;
                let len = self.frame.body.len() - nal_at;
                match self.frame.body[nal_at] & 0x1f {
                    t @ (nal_type::SPS | nal_type::PPS) => {
                        let nal = Bytes::copy_from_slice(&self.frame.body[nal_at..]);
                        self.frame.body.truncate(at);
                        if t == nal_type::SPS {
                            self.sps = Some(nal);
                        } else {
                            self.pps = Some(nal);
                        }
                    }
                    t => {
                        self.frame.body[at..nal_at].copy_from_slice(&(len as u32).to_be_bytes());
                        self.frame.idr |= t == nal_type::IDR;
                        self.frame.nals += 1;
                    }
                }
            }
        }
    }

    /// Whether `extra` more bytes keep the frame within bounds; marks it damaged if not.
    fn fits(&mut self, extra: usize) -> bool {
        if self.frame.body.len() + extra > self.config.max_frame_size {
            self.frame.damaged = true;
            false
        } else {
            true
        }
    }

    fn add_nal(&mut self, nal: &[u8]) {
        let Some(&header) = nal.first() else {
            return;
        };
        match header & 0x1f {
            nal_type::SPS => self.sps = Some(Bytes::copy_from_slice(nal)),
            nal_type::PPS => self.pps = Some(Bytes::copy_from_slice(nal)),
            t => {
                if !self.fits(4 + nal.len()) {
                    return;
                }
                self.frame.idr |= t == nal_type::IDR;
                self.frame.body.put_u32(nal.len() as u32);
                self.frame.body.put_slice(nal);
                self.frame.nals += 1;
            }
        }
    }

    fn finish_frame(&mut self) {
        let mut frame = std::mem::replace(&mut self.frame, Frame::new());
        let Some(rtp_ts) = frame.timestamp else {
            return;
        };
        if frame.fu_start.is_some() {
            frame.damaged = true; // an FU-A without its end
        }
        if frame.damaged {
            self.frames_lost += 1;
            self.waiting_for_keyframe = true;
            self.keyframe_wanted = true;
            return;
        }
        if frame.nals == 0 || (self.waiting_for_keyframe && !frame.idr) {
            return;
        }
        let timestamp = self.timeline.to_rtmp(rtp_ts, 0);
        if frame.idr {
            let (Some(sps), Some(pps)) = (self.sps.clone(), self.pps.clone()) else {
                // An IDR without parameter sets cannot be decoded.
                self.keyframe_wanted = true;
                return;
            };
            if self.sent_config.as_ref() != Some(&(sps.clone(), pps.clone())) {
                let Some(cfg) =
                    AvcDecoderConfig::from_parameter_sets(vec![sps.clone()], vec![pps.clone()])
                else {
                    self.keyframe_wanted = true;
                    return;
                };
                let mut body = BytesMut::new();
                body.put_slice(&[0x17, 0, 0, 0, 0]);
                if cfg.write(&mut body).is_err() {
                    self.keyframe_wanted = true;
                    return;
                }
                self.output.push_back(RtmpMessage::new(
                    type_id::VIDEO,
                    0,
                    timestamp,
                    body.freeze(),
                ));
                self.sent_config = Some((sps, pps));
            }
            self.waiting_for_keyframe = false;
            self.keyframe_wanted = false;
            frame.body[0] = 0x17;
        }
        debug_assert!(frame.body.len() > FLV_HEADER_LEN);
        self.output.push_back(RtmpMessage::new(
            type_id::VIDEO,
            0,
            timestamp,
            frame.body.freeze(),
        ));
    }
}

/// Whether an RTP payload visibly begins a new picture: a non-VCL NAL that precedes slices
/// (SEI, SPS, PPS, access unit delimiter), or the first slice of a picture
/// (`first_mb_in_slice` = 0, whose Exp-Golomb code is a single `1` bit).
fn starts_picture(payload: &[u8]) -> bool {
    let (header, next) = match payload.first().map(|b| b & 0x1f) {
        Some(nal_type::STAP_A) => (payload.get(3), payload.get(4)),
        Some(nal_type::FU_A) => match payload.get(1) {
            Some(fu) if fu & 0x80 != 0 => (payload.get(1), payload.get(2)),
            _ => return false,
        },
        Some(_) => (payload.first(), payload.get(1)),
        None => return false,
    };
    match header.map(|h| h & 0x1f) {
        Some(nal_type::SEI | nal_type::SPS | nal_type::PPS | nal_type::AUD) => true,
        Some(nal_type::SLICE | nal_type::IDR) => next.is_some_and(|b| b & 0x80 != 0),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const SPS: &[u8] = &[0x67, 0x42, 0xc0, 0x0c, 0xda];
    const PPS: &[u8] = &[0x68, 0xce, 0x3c, 0x80];

    fn pkt(seq: u16, ts: u32, marker: bool, payload: Vec<u8>) -> RtpPacket {
        let mut p = RtpPacket::new(96, seq, ts, 7, Bytes::from(payload));
        p.marker = marker;
        p
    }

    fn stap(nals: &[&[u8]]) -> Vec<u8> {
        let mut v = vec![0x78];
        for n in nals {
            v.extend_from_slice(&(n.len() as u16).to_be_bytes());
            v.extend_from_slice(n);
        }
        v
    }

    fn fu(nal_header: u8, start: bool, end: bool, data: &[u8]) -> Vec<u8> {
        let mut v = vec![
            (nal_header & 0xe0) | 28,
            (nal_header & 0x1f) | if start { 0x80 } else { 0 } | if end { 0x40 } else { 0 },
        ];
        v.extend_from_slice(data);
        v
    }

    fn drain(d: &mut H264Depacketizer) -> Vec<RtmpMessage> {
        std::iter::from_fn(|| d.poll_message()).collect()
    }

    /// NAL units of an FLV AVC NALU tag body.
    fn nals_of(body: &[u8]) -> Vec<Vec<u8>> {
        let mut out = Vec::new();
        let mut at = 5;
        while at < body.len() {
            let len = u32::from_be_bytes(body[at..at + 4].try_into().unwrap()) as usize;
            out.push(body[at + 4..at + 4 + len].to_vec());
            at += 4 + len;
        }
        out
    }

    /// A keyframe (SPS+PPS STAP-A, IDR in 3 FU-As) at `ts`, sequence numbers from `seq`.
    fn keyframe(seq: u16, ts: u32) -> Vec<RtpPacket> {
        vec![
            pkt(seq, ts, false, stap(&[SPS, PPS])),
            pkt(seq + 1, ts, false, fu(0x65, true, false, &[0x88, 1, 2])),
            pkt(seq + 2, ts, false, fu(0x65, false, false, &[3, 4])),
            pkt(seq + 3, ts, true, fu(0x65, false, true, &[5])),
        ]
    }

    fn delta(seq: u16, ts: u32) -> RtpPacket {
        pkt(seq, ts, true, vec![0x41, 0x9a, seq as u8])
    }

    #[test]
    fn reassembles_stap_a_and_fu_a_into_flv_tags() {
        let t0 = Instant::now();
        let mut d = H264Depacketizer::new(H264DepacketizerConfig::default());
        for p in keyframe(10, 90_000) {
            d.push(t0, 500, &p);
        }
        d.push(t0, 0, &delta(14, 93_600));
        let out = drain(&mut d);
        assert_eq!(out.len(), 3);
        // Sequence header built from the SPS/PPS seen.
        let cfg = AvcDecoderConfig::parse(&out[0].payload.slice(5..)).unwrap();
        assert_eq!((&cfg.sps[0][..], &cfg.pps[0][..]), (SPS, PPS));
        assert_eq!(&out[0].payload[..5], &[0x17, 0, 0, 0, 0]);
        assert_eq!(&out[1].payload[..5], &[0x17, 1, 0, 0, 0]);
        assert_eq!(
            nals_of(&out[1].payload),
            vec![vec![0x65, 0x88, 1, 2, 3, 4, 5]]
        );
        assert_eq!((out[0].timestamp, out[1].timestamp), (500, 500));
        assert_eq!(out[2].payload[0], 0x27);
        assert_eq!(out[2].timestamp, 540);
        assert!(!d.keyframe_needed(t0));
    }

    #[test]
    fn nothing_before_the_first_idr_and_keyframe_requests_are_rate_limited() {
        let t0 = Instant::now();
        let mut d = H264Depacketizer::new(H264DepacketizerConfig::default());
        assert!(!d.keyframe_needed(t0)); // nothing received yet
        d.push(t0, 0, &delta(1, 0));
        d.push(t0, 0, &delta(2, 3600));
        assert!(drain(&mut d).is_empty());
        assert!(d.keyframe_needed(t0));
        assert!(!d.keyframe_needed(t0 + Duration::from_millis(500)));
        assert!(d.keyframe_needed(t0 + Duration::from_millis(1000)));
        for p in keyframe(3, 7200) {
            d.push(t0, 0, &p);
        }
        assert_eq!(drain(&mut d).len(), 2);
        assert!(!d.keyframe_needed(t0 + Duration::from_secs(5)));
    }

    #[test]
    fn reorders_within_the_window() {
        let t0 = Instant::now();
        let mut d = H264Depacketizer::new(H264DepacketizerConfig::default());
        let mut pkts = keyframe(100, 0);
        pkts.push(delta(104, 3600));
        for i in [0, 2, 1, 4, 3] {
            d.push(t0, 0, &pkts[i]);
        }
        let out = drain(&mut d);
        assert_eq!(out.len(), 3);
        assert_eq!(nals_of(&out[1].payload)[0], vec![0x65, 0x88, 1, 2, 3, 4, 5]);
        assert_eq!(d.frames_lost(), 0);
        assert!(d.poll_timeout().is_none());
    }

    #[test]
    fn loss_drops_until_the_next_idr() {
        let t0 = Instant::now();
        let mut d = H264Depacketizer::new(H264DepacketizerConfig::default());
        let kf = keyframe(1, 0);
        d.push(t0, 0, &kf[0]);
        d.push(t0, 0, &kf[1]);
        // kf[2] (middle FU-A) is lost; the end arrives and waits for it.
        d.push(t0, 0, &kf[3]);
        assert_eq!(d.poll_timeout(), Some(t0 + Duration::from_millis(100)));
        d.push(t0, 0, &delta(5, 3600));
        assert!(drain(&mut d).is_empty());
        d.handle_timeout(t0 + Duration::from_millis(100));
        // The keyframe is damaged; the delta frame depends on it.
        assert!(drain(&mut d).is_empty());
        assert_eq!(d.frames_lost(), 1);
        assert!(d.keyframe_needed(t0));
        for p in keyframe(6, 7200) {
            d.push(t0, 0, &p);
        }
        let out = drain(&mut d);
        assert_eq!(out.len(), 2);
        assert_eq!(out[1].payload[0], 0x17);
    }

    #[test]
    fn window_overflow_declares_loss_without_waiting() {
        let t0 = Instant::now();
        let config = H264DepacketizerConfig {
            reorder_packets: 2,
            ..Default::default()
        };
        let mut d = H264Depacketizer::new(config);
        for p in keyframe(1, 0) {
            d.push(t0, 0, &p);
        }
        drain(&mut d);
        // 5 is lost; 6, 7, 8 arrive: the third held packet overflows the window.
        d.push(t0, 0, &delta(6, 3600));
        d.push(t0, 0, &delta(7, 7200));
        assert!(d.poll_timeout().is_some());
        d.push(t0, 0, &delta(8, 10_800));
        assert!(d.poll_timeout().is_none());
        assert!(drain(&mut d).is_empty()); // waiting for an IDR
        assert!(d.keyframe_needed(t0));
        // A late packet 5 is dropped.
        d.push(t0, 0, &delta(5, 1800));
        assert!(drain(&mut d).is_empty());
    }

    #[test]
    fn loss_between_frames_keeps_a_complete_idr() {
        let t0 = Instant::now();
        let config = H264DepacketizerConfig {
            reorder_packets: 0,
            ..Default::default()
        };
        let mut d = H264Depacketizer::new(config);
        for p in keyframe(1, 0) {
            d.push(t0, 0, &p);
        }
        d.push(t0, 0, &delta(5, 3600));
        // 6 is lost; a whole new keyframe follows, starting with its parameter sets.
        for p in keyframe(7, 7200) {
            d.push(t0, 0, &p);
        }
        let out = drain(&mut d);
        assert_eq!(out.len(), 4);
        assert_eq!(out[3].payload[0], 0x17);
    }

    #[test]
    fn ssrc_change_starts_over() {
        let t0 = Instant::now();
        let mut d = H264Depacketizer::new(H264DepacketizerConfig::default());
        for p in keyframe(1, 0) {
            d.push(t0, 100, &p);
        }
        assert_eq!(drain(&mut d).len(), 2);
        let mut other = keyframe(5000, 123_456);
        for p in &mut other {
            p.ssrc = 8;
            d.push(t0, 900, p);
        }
        let out = drain(&mut d);
        // A new sequence header (the config is re-sent) and the frame, re-anchored.
        assert_eq!(out.len(), 2);
        assert_eq!(out[1].timestamp, 900);
    }

    #[test]
    fn parameter_set_change_emits_a_new_sequence_header() {
        let t0 = Instant::now();
        let mut d = H264Depacketizer::new(H264DepacketizerConfig::default());
        for p in keyframe(1, 0) {
            d.push(t0, 0, &p);
        }
        let mut kf = keyframe(5, 3600);
        kf[0] = pkt(5, 3600, false, stap(&[SPS, &[0x68, 0xce, 0x3c, 0x81]]));
        for p in &kf {
            d.push(t0, 0, p);
        }
        kf = keyframe(9, 7200);
        kf[0] = pkt(9, 7200, false, stap(&[SPS, &[0x68, 0xce, 0x3c, 0x81]]));
        for p in &kf {
            d.push(t0, 0, p);
        }
        let heads: Vec<_> = drain(&mut d)
            .into_iter()
            .filter(|m| m.payload[1] == 0)
            .collect();
        assert_eq!(heads.len(), 2);
    }

    proptest! {
        #[test]
        fn arbitrary_payloads_never_panic(
            packets in proptest::collection::vec(
                (any::<u16>(), any::<u32>(), any::<bool>(), proptest::collection::vec(any::<u8>(), 0..40)),
                0..40,
            ),
            near in any::<bool>(),
        ) {
            let t0 = Instant::now();
            let mut d = H264Depacketizer::new(H264DepacketizerConfig::default());
            for (i, (seq, ts, marker, payload)) in packets.into_iter().enumerate() {
                // Either arbitrary sequence numbers or nearly in order (to reach assembly).
                let seq = if near { (i as u16).wrapping_add(seq % 3) } else { seq };
                let ts = if near { ts % 4 } else { ts };
                d.push(t0 + Duration::from_millis(i as u64 * 30), 0, &pkt(seq, ts, marker, payload));
                while let Some(m) = d.poll_message() {
                    prop_assert!(m.payload.len() >= 5);
                }
            }
            d.handle_timeout(t0 + Duration::from_secs(10));
            let _ = d.keyframe_needed(t0);
        }
    }
}
