//! Audio between the RTMP side (FLV audio tag bodies) and the SIP side (RTP payloads):
//! Speex, G.711 and Opus, passed through (transcoding is [`super::transcode`]).
//!
//! RTMP→RTP ([`RtmpToRtpAudio`]): the FLV audio header (1 byte; 5 for Opus, see
//! [`super::opus`]) is stripped and the rest is the RTP payload (a zero-copy slice), except
//! for Speex sent to a narrowband peer, whose wideband layers are stripped bit by bit (see
//! [`super::speex`]). RTP timestamps are the RTMP timestamps scaled to the clock rate plus a
//! base, so they follow the publisher's clock.
//!
//! RTP→RTMP ([`RtpToRtmpAudio`]): the payload gets the FLV audio header the original gateway
//! used (`0xB2` Speex, `0x82` PCMU, `0x72` PCMA; Opus the enhanced-RTMP CodedFrames header)
//! and an RTMP timestamp anchored at the first packet of the source ([`RtpTimeline`]).

use std::fmt;

use bytes::{Bytes, BytesMut};

use super::frame::MediaFrame;
use super::opus;
use super::payload::RtpPayload;
use super::speex::{self, SpeexError};
use super::timestamp::{rtmp_to_rtp, RtpTimeline};
use crate::flv::media::audio_codec;
use crate::rtmp::message::type_id;
use crate::rtp::RtpPacket;

/// An RTP audio codec the gateway can bridge to Flash without transcoding.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RtpAudioCodec {
    /// Speex at 16 kHz ("speex/16000"): Flash's Speex, passed through.
    SpeexWideband,
    /// Speex at 8 kHz ("speex/8000"): Flash's Speex with the wideband layers stripped.
    SpeexNarrowband,
    /// G.711 mu-law ("PCMU/8000", static payload type 0).
    Pcmu,
    /// G.711 A-law ("PCMA/8000", static payload type 8).
    Pcma,
    /// Opus ("opus/48000/2", RFC 7587): enhanced RTMP's Opus, passed through.
    Opus,
}

impl RtpAudioCodec {
    /// RTP clock rate in Hz.
    pub fn clock_rate(self) -> u32 {
        match self {
            RtpAudioCodec::SpeexWideband => 16_000,
            RtpAudioCodec::Opus => opus::SAMPLE_RATE,
            _ => 8000,
        }
    }

    /// The static RTP payload type (RFC 3551), for the G.711 codecs.
    pub fn static_payload_type(self) -> Option<u8> {
        match self {
            RtpAudioCodec::Pcmu => Some(0),
            RtpAudioCodec::Pcma => Some(8),
            _ => None,
        }
    }

    /// The FLV sound format this codec is carried as on the RTMP side.
    pub fn flv_sound_format(self) -> u8 {
        match self {
            RtpAudioCodec::SpeexWideband | RtpAudioCodec::SpeexNarrowband => audio_codec::SPEEX,
            RtpAudioCodec::Pcmu => audio_codec::PCMU,
            RtpAudioCodec::Pcma => audio_codec::PCMA,
            RtpAudioCodec::Opus => audio_codec::EX_HEADER,
        }
    }

    /// The first byte of the FLV audio header put in front of RTP payloads, as the original
    /// gateway wrote it: Speex `0xB2` (16 kHz by definition), PCMU `0x82`, PCMA `0x72`; Opus
    /// `0x91` (the whole header is [`RtpAudioCodec::flv_tag_header`]).
    pub fn flv_header(self) -> u8 {
        self.flv_tag_header()[0]
    }

    /// The whole FLV audio header put in front of RTP payloads: the byte of
    /// [`RtpAudioCodec::flv_header`], and for Opus the FourCC after it.
    pub fn flv_tag_header(self) -> &'static [u8] {
        match self {
            RtpAudioCodec::SpeexWideband | RtpAudioCodec::SpeexNarrowband => &[0xB2],
            RtpAudioCodec::Pcmu => &[0x82],
            RtpAudioCodec::Pcma => &[0x72],
            RtpAudioCodec::Opus => &opus::CODED_FRAMES_HEADER,
        }
    }
}

/// A negotiated RTP audio format: codec and payload type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RtpAudioFormat {
    /// The codec.
    pub codec: RtpAudioCodec,
    /// The payload type agreed in SDP (0 and 8 for G.711, dynamic for Speex).
    pub payload_type: u8,
}

impl RtpAudioFormat {
    /// PCMU with its static payload type 0.
    pub const PCMU: RtpAudioFormat = RtpAudioFormat {
        codec: RtpAudioCodec::Pcmu,
        payload_type: 0,
    };
    /// PCMA with its static payload type 8.
    pub const PCMA: RtpAudioFormat = RtpAudioFormat {
        codec: RtpAudioCodec::Pcma,
        payload_type: 8,
    };
}

/// Why an FLV audio body cannot be sent as RTP in the negotiated format.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum AudioError {
    /// The body is empty or holds only the FLV header.
    Empty,
    /// The FLV sound format is not the negotiated codec (no transcoding).
    CodecMismatch {
        /// The FLV sound format received.
        flv_sound_format: u8,
    },
    /// The Speex bit-stream could not be walked to strip the wideband layers.
    Speex(SpeexError),
    /// An enhanced-RTMP message that holds no Opus packet: a sequence start, a channel
    /// configuration, another FourCC (see [`super::opus`]).
    NoOpusFrame,
}

impl fmt::Display for AudioError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            AudioError::Empty => f.write_str("empty audio message"),
            AudioError::CodecMismatch { flv_sound_format } => {
                write!(
                    f,
                    "FLV sound format {flv_sound_format} is not the RTP codec"
                )
            }
            AudioError::Speex(e) => write!(f, "Speex: {e}"),
            AudioError::NoOpusFrame => f.write_str("no Opus frame in the enhanced audio message"),
        }
    }
}

impl std::error::Error for AudioError {}

/// RTMP→RTP audio: FLV audio bodies to RTP payloads of one negotiated format.
///
/// ```
/// use bytes::Bytes;
/// use siprtmp_core::media::{RtmpToRtpAudio, RtpAudioFormat};
/// let mut tx = RtmpToRtpAudio::new(RtpAudioFormat::PCMU, 1000);
/// let body = Bytes::from_static(&[0x82, 0xff, 0xfe, 0x7f]);
/// let p = tx.translate(&body, 20).unwrap();
/// assert_eq!(p.timestamp, 1000 + 160); // 20 ms at 8 kHz after the base
/// assert_eq!(&p.body[..], &[0xff, 0xfe, 0x7f]); // a slice of `body`, not a copy
/// assert!(p.marker); // first packet of the stream
/// ```
#[derive(Debug, Clone)]
pub struct RtmpToRtpAudio {
    format: RtpAudioFormat,
    timestamp_base: u32,
    started: bool,
    scratch: BytesMut,
}

impl RtmpToRtpAudio {
    /// A translator to `format`; `timestamp_base` (random, from the caller's generator) is
    /// added to every RTP timestamp. Pass 0 when the RTP session adds its own base.
    pub fn new(format: RtpAudioFormat, timestamp_base: u32) -> Self {
        RtmpToRtpAudio {
            format,
            timestamp_base,
            started: false,
            scratch: BytesMut::new(),
        }
    }

    /// The negotiated format.
    pub fn format(&self) -> RtpAudioFormat {
        self.format
    }

    /// Starts a new talkspurt: the next payload carries the marker bit again.
    pub fn reset(&mut self) {
        self.started = false;
    }

    /// Translates one FLV audio body with RTMP timestamp `rtmp_ms` into an RTP payload.
    // Once per packet: inlined into its caller (no call, no copy of its result).
    #[inline]
    pub fn translate(&mut self, body: &Bytes, rtmp_ms: u32) -> Result<RtpPayload, AudioError> {
        let first = *body.first().ok_or(AudioError::Empty)?;
        let sound_format = first >> 4;
        if sound_format != self.format.codec.flv_sound_format() {
            return Err(AudioError::CodecMismatch {
                flv_sound_format: sound_format,
            });
        }
        if body.len() < 2 {
            return Err(AudioError::Empty);
        }
        let payload = match self.format.codec {
            RtpAudioCodec::SpeexNarrowband => {
                speex::wideband_to_narrowband(&body[1..], &mut self.scratch)
                    .map_err(AudioError::Speex)?;
                self.scratch.split().freeze()
            }
            RtpAudioCodec::Opus => {
                opus::coded_frame(body).ok_or(AudioError::NoOpusFrame)?;
                body.slice(opus::CODED_FRAMES_HEADER.len()..)
            }
            _ => body.slice(1..),
        };
        let marker = !self.started;
        self.started = true;
        let ts = rtmp_to_rtp(rtmp_ms, self.format.codec.clock_rate(), self.timestamp_base);
        Ok(RtpPayload::new(ts, marker, payload))
    }
}

/// RTP→RTMP audio: RTP packets of one negotiated format to RTMP audio frames (the FLV sound
/// header byte, then the RTP payload itself, not copied).
///
/// ```
/// use bytes::Bytes;
/// use siprtmp_core::media::{RtpToRtmpAudio, RtpAudioFormat};
/// use siprtmp_core::rtp::RtpPacket;
/// let mut rx = RtpToRtmpAudio::new(RtpAudioFormat::PCMA);
/// let p1 = RtpPacket::new(8, 1, 4000, 9, Bytes::from(vec![0xd5; 160]));
/// let p2 = RtpPacket::new(8, 2, 4160, 9, Bytes::from(vec![0xd5; 160]));
/// let sent = p1.payload.as_ptr();
/// let m1 = rx.translate(p1, 700).unwrap();
/// let m2 = rx.translate(p2, 731).unwrap();
/// assert_eq!((m1.timestamp, m2.timestamp), (700, 720)); // anchored, then RTP deltas
/// assert_eq!(&m1.header[..], [0x72]);
/// assert_eq!(m1.body.as_ptr(), sent); // the same bytes, not copied
/// assert_eq!(m1.len(), 161);
/// ```
#[derive(Debug, Clone)]
pub struct RtpToRtmpAudio {
    format: RtpAudioFormat,
    timeline: RtpTimeline,
    ssrc: Option<u32>,
}

impl RtpToRtmpAudio {
    /// A translator from `format`.
    pub fn new(format: RtpAudioFormat) -> Self {
        RtpToRtmpAudio {
            format,
            timeline: RtpTimeline::new(format.codec.clock_rate()),
            ssrc: None,
        }
    }

    /// The negotiated format.
    pub fn format(&self) -> RtpAudioFormat {
        self.format
    }

    /// A new play: the next packet re-anchors the RTMP timeline.
    pub fn reset(&mut self) {
        self.timeline.reset();
        self.ssrc = None;
    }

    /// The RTMP audio frame for `packet` (the caller sets the stream it goes out on), or
    /// `None` when the packet is of another payload type (telephone-event, comfort noise...)
    /// or empty. `rtmp_now_ms` is the RTMP stream time now, used to anchor the first packet
    /// and again after an SSRC change. The packet's payload becomes the frame's body (taken,
    /// not shared: no reference count to take here and drop with the packet).
    // Once per packet: inlined into its caller (no call, no copy of its result).
    #[inline]
    pub fn translate(&mut self, packet: RtpPacket, rtmp_now_ms: u32) -> Option<MediaFrame> {
        self.translate_with(packet, || rtmp_now_ms)
    }

    /// [`Self::translate`] with the RTMP stream time asked of `rtmp_now_ms` only when the
    /// packet anchors the timeline (see [`RtpTimeline::rtmp_time`]).
    #[inline]
    pub(crate) fn translate_with(
        &mut self,
        packet: RtpPacket,
        rtmp_now_ms: impl FnOnce() -> u32,
    ) -> Option<MediaFrame> {
        if packet.payload_type != self.format.payload_type || packet.payload.is_empty() {
            return None;
        }
        if self.ssrc != Some(packet.ssrc) {
            self.timeline.reset();
            self.ssrc = Some(packet.ssrc);
        }
        let timestamp = self.timeline.rtmp_time(packet.timestamp, rtmp_now_ms);
        Some(MediaFrame::new(
            type_id::AUDIO,
            timestamp,
            self.format.codec.flv_tag_header(),
            packet.payload,
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn arbitrary_bodies_never_panic(data in proptest::collection::vec(any::<u8>(), 0..120)) {
            let body = Bytes::from(data);
            for format in [SPEEX_WB, SPEEX_NB, RtpAudioFormat::PCMU, RtpAudioFormat::PCMA, OPUS] {
                let mut tx = RtmpToRtpAudio::new(format, 0);
                if let Ok(p) = tx.translate(&body, 0) {
                    prop_assert!(p.body.len() < body.len());
                }
            }
        }
    }

    const SPEEX_WB: RtpAudioFormat = RtpAudioFormat {
        codec: RtpAudioCodec::SpeexWideband,
        payload_type: 97,
    };
    const SPEEX_NB: RtpAudioFormat = RtpAudioFormat {
        codec: RtpAudioCodec::SpeexNarrowband,
        payload_type: 98,
    };
    const OPUS: RtpAudioFormat = RtpAudioFormat {
        codec: RtpAudioCodec::Opus,
        payload_type: 111,
    };

    #[test]
    fn opus_passes_through_with_its_enhanced_header_and_48k_clock() {
        let mut tx = RtmpToRtpAudio::new(OPUS, 0);
        // ffmpeg 9's first messages: SequenceStart (OpusHead), MultichannelConfig, a frame.
        let start = Bytes::from_static(b"\x90OpusOpusHead\x01\x01\x38\x01\x80\xbb\0\0\0\0\0");
        assert_eq!(tx.translate(&start, 0), Err(AudioError::NoOpusFrame));
        let config = Bytes::from_static(b"\x94Opus\x01\x01\0\0\0\x04");
        assert_eq!(tx.translate(&config, 0), Err(AudioError::NoOpusFrame));
        let frame = Bytes::from_static(b"\x91Opus\x78\x9e\x1e");
        let p = tx.translate(&frame, 21).unwrap();
        assert_eq!((p.timestamp, p.marker), (21 * 48, true));
        assert_eq!(p.body.as_ptr(), frame[5..].as_ptr(), "not copied");
        // Speex where Opus was negotiated is another codec.
        assert!(matches!(
            tx.translate(&Bytes::from_static(&[0xB2, 1]), 40),
            Err(AudioError::CodecMismatch { .. })
        ));

        let mut rx = RtpToRtmpAudio::new(OPUS);
        let packet = RtpPacket::new(111, 1, 960, 5, Bytes::from_static(&[0x78, 1]));
        let m = rx.translate(packet, 100).unwrap();
        assert_eq!(&m.to_message(1).payload[..], b"\x91Opus\x78\x01");
        let packet = RtpPacket::new(111, 2, 1920, 5, Bytes::from_static(&[0x78, 2]));
        assert_eq!(
            rx.translate(packet, 0).unwrap().timestamp,
            120,
            "48 kHz clock"
        );
    }

    #[test]
    fn speex_passthrough_strips_header_without_copy() {
        let mut tx = RtmpToRtpAudio::new(SPEEX_WB, 0);
        // The first bytes of a real 16 kHz Speex tag from ffmpeg (header 0xB6).
        let body = Bytes::from_static(&[0xB6, 0x31, 0x97, 0xd2, 0x48]);
        let p = tx.translate(&body, 40).unwrap();
        assert_eq!(p.timestamp, 640);
        assert_eq!(p.body.as_ptr(), body[1..].as_ptr());
        let p = tx.translate(&body, 63).unwrap();
        assert_eq!((p.timestamp, p.marker), (1008, false));
    }

    #[test]
    fn g711_needs_the_matching_law() {
        let mut tx = RtmpToRtpAudio::new(RtpAudioFormat::PCMA, 0);
        let mulaw = Bytes::from_static(&[0x82, 1, 2]);
        assert_eq!(
            tx.translate(&mulaw, 0),
            Err(AudioError::CodecMismatch {
                flv_sound_format: 8
            })
        );
        let alaw = Bytes::from_static(&[0x72, 1, 2]);
        assert_eq!(&tx.translate(&alaw, 0).unwrap().body[..], &[1, 2]);
        assert_eq!(tx.translate(&Bytes::new(), 0), Err(AudioError::Empty));
        assert_eq!(
            tx.translate(&Bytes::from_static(&[0x72]), 0),
            Err(AudioError::Empty)
        );
    }

    #[test]
    fn speex_narrowband_strips_layers_and_uses_8k_clock() {
        let mut tx = RtmpToRtpAudio::new(SPEEX_NB, 5);
        // NB mode 0 "0 0000", WB submode 0 "1 000", padding "0 111111".
        let body = Bytes::from_static(&[0xB2, 0b0000_0100, 0b0011_1111]);
        let p = tx.translate(&body, 20).unwrap();
        assert_eq!(&p.body[..], &[0b0000_0011]);
        assert_eq!(p.timestamp, 165);
        let bad = Bytes::from_static(&[0xB2, 0b0100_1000]);
        assert!(matches!(tx.translate(&bad, 0), Err(AudioError::Speex(_))));
    }

    #[test]
    fn rtp_to_rtmp_headers_anchor_and_ssrc_change() {
        let mut rx = RtpToRtmpAudio::new(RtpAudioFormat::PCMU);
        let pkt = |seq, ts, ssrc| RtpPacket::new(0, seq, ts, ssrc, Bytes::from_static(&[1, 2]));
        let m = rx.translate(pkt(1, 100, 1), 1000).unwrap();
        assert_eq!((m.type_id, m.timestamp), (type_id::AUDIO, 1000));
        assert_eq!(&m.to_message(1).payload[..], &[0x82, 1, 2]);
        assert_eq!(rx.translate(pkt(2, 260, 1), 0).unwrap().timestamp, 1020);
        // New SSRC: re-anchored at the time given.
        assert_eq!(rx.translate(pkt(9, 7, 2), 5000).unwrap().timestamp, 5000);
        assert_eq!(rx.translate(pkt(10, 167, 2), 0).unwrap().timestamp, 5020);
        // A new play re-anchors too.
        rx.reset();
        assert_eq!(rx.translate(pkt(11, 327, 2), 9000).unwrap().timestamp, 9000);
        // Other payload types (telephone-event 101) are not audio.
        let mut dtmf = pkt(12, 327, 2);
        dtmf.payload_type = 101;
        assert!(rx.translate(dtmf, 0).is_none());

        let mut rx = RtpToRtmpAudio::new(SPEEX_WB);
        let mut p = pkt(1, 0, 3);
        p.payload_type = 97;
        let sent = p.payload.as_ptr();
        let m = rx.translate(p.clone(), 0).unwrap();
        assert_eq!(&m.header[..], [0xB2]);
        assert_eq!(m.body.as_ptr(), sent, "the RTP payload is not copied");
        p.timestamp = 320;
        assert_eq!(rx.translate(p, 0).unwrap().timestamp, 20); // 16 kHz clock
    }
}
