//! RTMP→RTP for H.264 (RFC 6184, packetization mode 1): FLV AVC video tags in, RTP payloads
//! out.
//!
//! The AVC sequence header (an [`AvcDecoderConfig`]) is remembered, not sent by itself: its
//! SPS and PPS go out in front of every keyframe (so a peer joining late, or one that lost
//! them, can start at any keyframe). Frames before the first keyframe are dropped, since no
//! decoder could use them. Each frame's NAL units become, in order:
//!
//! - a single NAL unit packet when the NAL fits the MTU alone and not with its neighbour;
//! - a STAP-A (type 24) aggregating consecutive NALs that fit the MTU together (SPS + PPS, or
//!   small slices and SEI of one frame);
//! - FU-A fragments (type 28) when the NAL is larger than the MTU: every fragment but the last
//!   is exactly MTU bytes, the FU indicator copies the NAL's F and NRI bits, the FU header
//!   carries the start/end bits and the NAL type.
//!
//! The marker bit is set on the last packet of each frame, and all packets of a frame carry
//! the 90 kHz timestamp of its presentation time (RTMP timestamp + composition time).
//! Single NAL units and FU-A fragment bodies are slices of the RTMP payload; only the 2-byte
//! FU-A headers live in [`RtpPayload::header`], and only STAP-A packets are newly allocated.

use std::fmt;

use bytes::{BufMut, Bytes, BytesMut};
use smallvec::{smallvec, SmallVec};

use super::avc_config::{AvcConfigError, AvcDecoderConfig};
use super::payload::RtpPayload;
use super::timestamp::rtmp_to_rtp;
use crate::flv::media::video_codec;

/// The RTP clock rate of H.264 video.
pub const H264_CLOCK_RATE: u32 = 90_000;
/// The default largest RTP payload, leaving room for IP/UDP/RTP headers and tunnels.
pub const DEFAULT_MTU: usize = 1200;
/// The smallest usable payload size: an FU-A needs 2 header bytes and 1 data byte.
pub const MIN_MTU: usize = 3;

/// NAL unit types this module cares about.
pub mod nal_type {
    /// Coded slice of a non-IDR picture.
    pub const SLICE: u8 = 1;
    /// Coded slice of an IDR picture (a keyframe).
    pub const IDR: u8 = 5;
    /// Supplemental enhancement information.
    pub const SEI: u8 = 6;
    /// Sequence parameter set.
    pub const SPS: u8 = 7;
    /// Picture parameter set.
    pub const PPS: u8 = 8;
    /// Access unit delimiter.
    pub const AUD: u8 = 9;
    /// Single-time aggregation packet (RFC 6184 5.7.1).
    pub const STAP_A: u8 = 24;
    /// Fragmentation unit A (RFC 6184 5.8).
    pub const FU_A: u8 = 28;
}

/// Packetizer settings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct H264PacketizerConfig {
    /// The largest RTP payload in bytes (values below [`MIN_MTU`] act as [`MIN_MTU`]).
    pub mtu: usize,
    /// Send SPS and PPS before every keyframe (`true`, the default) or only before the first.
    pub parameter_sets_every_keyframe: bool,
}

impl Default for H264PacketizerConfig {
    fn default() -> Self {
        H264PacketizerConfig {
            mtu: DEFAULT_MTU,
            parameter_sets_every_keyframe: true,
        }
    }
}

/// Why an FLV video tag cannot be packetized.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum H264Error {
    /// The tag is not AVC (legacy codec id, or an enhanced-RTMP header): the codec id.
    NotAvc(u8),
    /// The tag is shorter than its 5-byte AVC video header.
    Truncated,
    /// A NAL unit length prefix runs past the end of the tag.
    BadNalLength,
    /// The sequence header is not a valid AVCDecoderConfigurationRecord.
    Config(AvcConfigError),
}

impl fmt::Display for H264Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            H264Error::NotAvc(c) => write!(f, "video codec {c} is not AVC"),
            H264Error::Truncated => f.write_str("AVC video tag is truncated"),
            H264Error::BadNalLength => f.write_str("NAL unit length runs past the tag"),
            H264Error::Config(e) => write!(f, "AVC sequence header: {e}"),
        }
    }
}

impl std::error::Error for H264Error {}

/// The parts of an FLV AVC video tag body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AvcTag {
    /// FLV frame type 1 (keyframe).
    pub keyframe: bool,
    /// AVC packet type: 0 sequence header, 1 NAL units, 2 end of sequence.
    pub packet_type: u8,
    /// Composition time offset in milliseconds (signed 24-bit).
    pub composition_time: i32,
    /// Everything after the 5-byte header (a slice of the tag).
    pub data: Bytes,
}

impl AvcTag {
    /// Splits an FLV video tag body into its AVC header fields and data.
    pub fn parse(body: &Bytes) -> Result<AvcTag, H264Error> {
        let first = *body.first().ok_or(H264Error::Truncated)?;
        if first & 0x80 != 0 || first & 0x0f != video_codec::AVC {
            return Err(H264Error::NotAvc(first & 0x0f));
        }
        if body.len() < 5 {
            return Err(H264Error::Truncated);
        }
        // Sign-extend the 24-bit composition time.
        let cts = i32::from_be_bytes([body[2], body[3], body[4], 0]) >> 8;
        Ok(AvcTag {
            keyframe: first >> 4 == 1,
            packet_type: body[1],
            composition_time: cts,
            data: body.slice(5..),
        })
    }
}

/// Splits length-prefixed NAL units (`length_size` of 1 to 4 bytes) into slices of `data`,
/// skipping empty ones. Validates everything before returning anything.
pub fn split_nal_units(data: &Bytes, length_size: u8) -> Result<SmallVec<[Bytes; 8]>, H264Error> {
    let size = usize::from(length_size.clamp(1, 4));
    let mut at = 0;
    let mut nals = SmallVec::new();
    while at < data.len() {
        let prefix = data.get(at..at + size).ok_or(H264Error::BadNalLength)?;
        let len = prefix
            .iter()
            .fold(0usize, |acc, &b| (acc << 8) | usize::from(b));
        at += size;
        if len > data.len() - at {
            return Err(H264Error::BadNalLength);
        }
        if len > 0 {
            nals.push(data.slice(at..at + len));
        }
        at += len;
    }
    Ok(nals)
}

/// FLV AVC video tags to RFC 6184 RTP payloads.
///
/// ```
/// use bytes::Bytes;
/// use siprtmp_core::media::{H264Packetizer, H264PacketizerConfig};
/// let mut p = H264Packetizer::new(H264PacketizerConfig::default(), 0);
/// // Sequence header: one SPS and one PPS.
/// let seq = Bytes::from_static(&[0x17, 0, 0, 0, 0, 1, 0x42, 0xc0, 0x0c, 0xff, 0xe1,
///     0, 4, 0x67, 0x42, 0xc0, 0x0c, 1, 0, 2, 0x68, 0xce]);
/// let mut out = Vec::new();
/// p.push(&seq, 0, &mut out).unwrap();
/// assert!(out.is_empty());
/// // A keyframe with one 3-byte IDR NAL: everything fits one STAP-A.
/// let idr = Bytes::from_static(&[0x17, 1, 0, 0, 0, 0, 0, 0, 3, 0x65, 0x88, 0x84]);
/// p.push(&idr, 1000, &mut out).unwrap();
/// assert_eq!(out.len(), 1);
/// assert_eq!(out[0].body[0] & 0x1f, 24); // STAP-A
/// assert!(out[0].marker);
/// assert_eq!(out[0].timestamp, 90_000);
/// ```
#[derive(Debug, Clone)]
pub struct H264Packetizer {
    config: H264PacketizerConfig,
    timestamp_base: u32,
    nal_length_size: u8,
    parameter_sets: Vec<Bytes>,
    started: bool,
}

impl H264Packetizer {
    /// A packetizer; `timestamp_base` is added to every RTP timestamp (0 when the RTP session
    /// adds its own).
    pub fn new(config: H264PacketizerConfig, timestamp_base: u32) -> Self {
        H264Packetizer {
            config,
            timestamp_base,
            nal_length_size: 4,
            parameter_sets: Vec::new(),
            started: false,
        }
    }

    /// The configuration in force.
    pub fn config(&self) -> &H264PacketizerConfig {
        &self.config
    }

    /// Whether a keyframe has been sent (earlier frames are dropped).
    pub fn started(&self) -> bool {
        self.started
    }

    /// Waits for a keyframe again (for example after the peer asked for one and the publisher
    /// restarted); the parameter sets are kept.
    pub fn reset(&mut self) {
        self.started = false;
    }

    /// Packetizes one FLV video tag with RTMP timestamp `rtmp_ms`, appending its RTP payloads
    /// to `out` (which the caller clears and reuses); returns how many were appended. A
    /// sequence header, an end-of-sequence tag or a frame before the first keyframe appends
    /// nothing. On error nothing is appended.
    pub fn push(
        &mut self,
        body: &Bytes,
        rtmp_ms: u32,
        out: &mut Vec<RtpPayload>,
    ) -> Result<usize, H264Error> {
        let tag = AvcTag::parse(body)?;
        match tag.packet_type {
            0 => {
                let cfg = AvcDecoderConfig::parse(&tag.data).map_err(H264Error::Config)?;
                self.nal_length_size = cfg.nal_length_size;
                // Kept for the whole call: copied, not left as slices of the buffer the
                // message was read into (shared with everything read around it).
                self.parameter_sets = (cfg.sps.iter().chain(&cfg.pps))
                    .map(|set| Bytes::copy_from_slice(set))
                    .collect();
                return Ok(0);
            }
            1 => {}
            _ => return Ok(0),
        }
        let nals = split_nal_units(&tag.data, self.nal_length_size)?;
        let nal_type = |n: &Bytes| n[0] & 0x1f;
        let keyframe = tag.keyframe || nals.iter().any(|n| nal_type(n) == nal_type::IDR);
        if !keyframe && !self.started {
            return Ok(0);
        }
        let in_band_sps = nals.iter().any(|n| nal_type(n) == nal_type::SPS);
        let with_params = keyframe
            && !in_band_sps
            && (!self.started || self.config.parameter_sets_every_keyframe);
        self.started |= keyframe;
        let presentation = (i64::from(rtmp_ms) + i64::from(tag.composition_time)) as u32;
        let ts = rtmp_to_rtp(presentation, H264_CLOCK_RATE, self.timestamp_base);
        let before = out.len();
        if with_params {
            let all: SmallVec<[Bytes; 12]> = self
                .parameter_sets
                .iter()
                .chain(nals.iter())
                .cloned()
                .collect();
            self.packetize(&all, ts, out);
        } else {
            self.packetize(&nals, ts, out);
        }
        if out.len() > before {
            if let Some(last) = out.last_mut() {
                last.marker = true;
            }
        }
        Ok(out.len() - before)
    }

    /// The RTP payloads of one frame's NAL units (no marker set).
    fn packetize(&self, nals: &[Bytes], ts: u32, out: &mut Vec<RtpPayload>) {
        let mtu = self.config.mtu.max(MIN_MTU);
        let mut i = 0;
        while i < nals.len() {
            let nal = &nals[i];
            if nal.len() > mtu {
                fragment(nal, mtu, ts, out);
                i += 1;
                continue;
            }
            // Aggregate the following NALs while the STAP-A still fits.
            let mut size = 1 + 2 + nal.len();
            let mut j = i + 1;
            while j < nals.len() && size + 2 + nals[j].len() <= mtu {
                size += 2 + nals[j].len();
                j += 1;
            }
            if j - i >= 2 {
                out.push(aggregate(&nals[i..j], size, ts));
            } else {
                out.push(RtpPayload::new(ts, false, nal.clone()));
            }
            i = j;
        }
    }
}

/// One STAP-A of `nals` (`size` bytes in all).
fn aggregate(nals: &[Bytes], size: usize, ts: u32) -> RtpPayload {
    // F is the OR of the F bits, NRI the maximum NRI (RFC 6184 5.7.1).
    let f = nals.iter().fold(0, |acc, n| acc | (n[0] & 0x80));
    let nri = nals.iter().map(|n| n[0] & 0x60).max().unwrap_or(0);
    let mut body = BytesMut::with_capacity(size);
    body.put_u8(f | nri | nal_type::STAP_A);
    for n in nals {
        body.put_u16(n.len() as u16);
        body.put_slice(n);
    }
    RtpPayload::new(ts, false, body.freeze())
}

/// FU-A fragments of `nal` (longer than `mtu`), every one but the last exactly `mtu` bytes.
fn fragment(nal: &Bytes, mtu: usize, ts: u32, out: &mut Vec<RtpPayload>) {
    let header = nal[0];
    let indicator = (header & 0xe0) | nal_type::FU_A;
    let chunk = mtu - 2;
    let data_len = nal.len() - 1;
    let mut at = 1;
    while at < nal.len() {
        let end = (at + chunk).min(nal.len());
        let mut fu = header & 0x1f;
        if at == 1 {
            fu |= 0x80;
        }
        if end == nal.len() {
            fu |= 0x40;
        }
        out.push(RtpPayload {
            timestamp: ts,
            marker: false,
            header: smallvec![indicator, fu],
            body: nal.slice(at..end),
        });
        at = end;
    }
    debug_assert!(data_len > 0);
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn tag(keyframe: bool, cts: i32, nals: &[&[u8]]) -> Bytes {
        let mut b = BytesMut::new();
        b.put_u8(if keyframe { 0x17 } else { 0x27 });
        b.put_u8(1);
        b.put_slice(&cts.to_be_bytes()[1..]);
        for n in nals {
            b.put_u32(n.len() as u32);
            b.put_slice(n);
        }
        b.freeze()
    }

    fn seq_header() -> Bytes {
        let cfg = AvcDecoderConfig::from_parameter_sets(
            vec![Bytes::from_static(&[0x67, 0x42, 0xc0, 0x0c, 0xda])],
            vec![Bytes::from_static(&[0x68, 0xce, 0x3c, 0x80])],
        )
        .unwrap();
        let mut b = BytesMut::from(&[0x17, 0, 0, 0, 0][..]);
        cfg.write(&mut b).unwrap();
        b.freeze()
    }

    fn nal(header: u8, len: usize) -> Vec<u8> {
        let mut v = vec![header];
        v.extend((1..len).map(|i| i as u8));
        v
    }

    #[test]
    fn drops_frames_before_the_first_keyframe() {
        let mut p = H264Packetizer::new(H264PacketizerConfig::default(), 0);
        let mut out = Vec::new();
        p.push(&seq_header(), 0, &mut out).unwrap();
        assert_eq!(
            p.push(&tag(false, 0, &[&nal(0x41, 50)]), 0, &mut out),
            Ok(0)
        );
        assert!(!p.started());
    }

    #[test]
    fn stap_a_contents_and_marker() {
        let mut p = H264Packetizer::new(H264PacketizerConfig::default(), 0);
        let mut out = Vec::new();
        p.push(&seq_header(), 0, &mut out).unwrap();
        let sei = nal(0x06, 10);
        let idr = nal(0x65, 2000);
        assert_eq!(p.push(&tag(true, 0, &[&sei, &idr]), 0, &mut out), Ok(3));
        // SPS + PPS + SEI aggregated, then the IDR in two FU-As.
        let stap = &out[0];
        assert!(stap.header.is_empty());
        assert_eq!(stap.body[0], 0x60 | 24); // max NRI (SPS/PPS 3), F 0
        let mut expect = vec![0x78];
        for n in [
            &[0x67, 0x42, 0xc0, 0x0c, 0xda][..],
            &[0x68, 0xce, 0x3c, 0x80][..],
            &sei[..],
        ] {
            expect.extend_from_slice(&(n.len() as u16).to_be_bytes());
            expect.extend_from_slice(n);
        }
        assert_eq!(&stap.body[..], &expect[..]);
        assert!(!out[0].marker && !out[1].marker && out[2].marker);
        // The next keyframe repeats the parameter sets; a delta frame does not.
        out.clear();
        p.push(&tag(false, 0, &[&nal(0x41, 100)]), 40, &mut out)
            .unwrap();
        assert_eq!(out.len(), 1);
        assert_eq!(out[0].body[0], 0x41);
        assert_eq!(out[0].timestamp, 40 * 90);
    }

    #[test]
    fn the_parameter_sets_kept_for_the_call_hold_none_of_the_read() {
        let mut p = H264Packetizer::new(H264PacketizerConfig::default(), 0);
        let mut out = Vec::new();
        // The sequence header as a driver hands it over: a slice of a larger read.
        let mut read = BytesMut::zeroed(100);
        read.extend_from_slice(&seq_header());
        let read = read.freeze();
        p.push(&read.slice(100..), 0, &mut out).unwrap();
        assert!(read.is_unique(), "nothing else refers to the read");
        // And they are the same sets: the first keyframe carries them.
        p.push(&tag(true, 0, &[&nal(0x65, 10)]), 0, &mut out)
            .unwrap();
        assert_eq!(&out[0].body[3..8], &[0x67, 0x42, 0xc0, 0x0c, 0xda]);
    }

    #[test]
    fn fu_a_fragments_exactly_at_the_mtu() {
        let mtu = 100;
        let config = H264PacketizerConfig {
            mtu,
            parameter_sets_every_keyframe: false,
        };
        let mut p = H264Packetizer::new(config, 0);
        let mut out = Vec::new();
        // A NAL of exactly the MTU is one single-NAL packet.
        let fits = nal(0x65, mtu);
        p.push(&tag(true, 0, &[&fits]), 0, &mut out).unwrap();
        assert_eq!(out.len(), 1);
        assert_eq!(out[0].len(), mtu);
        assert!(out[0].header.is_empty());
        // One byte more: FU-A with a full first fragment and a 1-byte + 2 last.
        out.clear();
        let big = nal(0x65, mtu + 1);
        let body = tag(true, 0, &[&big]);
        p.push(&body, 0, &mut out).unwrap();
        assert_eq!(out.len(), 2);
        assert_eq!(out[0].len(), mtu);
        assert_eq!(&out[0].header[..], &[0x60 | 28, 0x80 | 5]);
        assert_eq!(&out[1].header[..], &[0x60 | 28, 0x40 | 5]);
        assert_eq!(out[1].body.len(), 2);
        // Zero copy: the fragment bodies point into the tag.
        assert_eq!(out[0].body.as_ptr(), body[10..].as_ptr());
        // Reassembling the fragments gives the NAL back.
        let mut back = vec![(out[0].header[0] & 0xe0) | (out[0].header[1] & 0x1f)];
        back.extend_from_slice(&out[0].body);
        back.extend_from_slice(&out[1].body);
        assert_eq!(back, big);
        // Many fragments: all but the last exactly MTU.
        out.clear();
        let huge = nal(0x41, 10 * (mtu - 2) + 1);
        p.push(&tag(false, 0, &[&huge]), 0, &mut out).unwrap();
        assert_eq!(out.len(), 10);
        assert!(out.iter().all(|o| o.len() == mtu));
        assert!(out.iter().skip(1).take(8).all(|o| o.header[1] & 0xc0 == 0));
    }

    #[test]
    fn composition_time_and_base_in_the_timestamp() {
        let mut p = H264Packetizer::new(H264PacketizerConfig::default(), 1000);
        let mut out = Vec::new();
        p.push(&tag(true, 80, &[&nal(0x65, 10)]), 40, &mut out)
            .unwrap();
        assert_eq!(out[0].timestamp, 1000 + 120 * 90);
        out.clear();
        p.push(&tag(false, -40, &[&nal(0x41, 10)]), 40, &mut out)
            .unwrap();
        assert_eq!(out[0].timestamp, 1000);
    }

    #[test]
    fn rejects_bad_tags() {
        let mut p = H264Packetizer::new(H264PacketizerConfig::default(), 0);
        let mut out = Vec::new();
        assert_eq!(
            p.push(&Bytes::from_static(&[0x12, 0, 0]), 0, &mut out),
            Err(H264Error::NotAvc(2))
        );
        assert_eq!(
            p.push(&Bytes::from_static(&[0x17, 1, 0]), 0, &mut out),
            Err(H264Error::Truncated)
        );
        assert_eq!(
            p.push(
                &Bytes::from_static(&[0x17, 1, 0, 0, 0, 0, 0, 0, 9, 0x65]),
                0,
                &mut out
            ),
            Err(H264Error::BadNalLength)
        );
        assert!(matches!(
            p.push(&Bytes::from_static(&[0x17, 0, 0, 0, 0, 2]), 0, &mut out),
            Err(H264Error::Config(_))
        ));
        assert!(out.is_empty());
    }

    proptest! {
        #[test]
        fn arbitrary_tags_never_panic(
            data in proptest::collection::vec(any::<u8>(), 0..400),
            mtu in 0usize..64,
        ) {
            let config = H264PacketizerConfig { mtu, parameter_sets_every_keyframe: true };
            let mut p = H264Packetizer::new(config, 0);
            let mut out = Vec::new();
            let mut seq = seq_header().to_vec();
            seq.truncate(5 + data.len() % 30);
            let _ = p.push(&Bytes::from(seq), 0, &mut out);
            let _ = p.push(&Bytes::from(data), 0, &mut out);
            prop_assert!(out.iter().all(|o| o.len() <= mtu.max(MIN_MTU)));
        }
    }
}
