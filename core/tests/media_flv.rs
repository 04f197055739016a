//! Media translation over real captures from the shared test media: the H.264 round trip
//! (packetize every video tag, depacketize in order and shuffled) and Speex wideband to
//! narrowband on every audio tag.

use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use siprtmp_core::media::speex::{self, NB_MODE_BITS};
use siprtmp_core::media::{
    AvcDecoderConfig, H264Depacketizer, H264DepacketizerConfig, H264Packetizer,
    H264PacketizerConfig, RtmpToRtpAudio, RtpAudioCodec, RtpAudioFormat, RtpPayload,
};
use siprtmp_core::rng::SeededRng;
use siprtmp_core::rtp::RtpPacket;
use support::{flv_tags, media};

mod support;

/// NAL units of an AVC NALU tag body (4-byte lengths), without parameter sets.
fn nals(body: &[u8]) -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    let mut at = 5;
    while at < body.len() {
        let len = u32::from_be_bytes(body[at..at + 4].try_into().unwrap()) as usize;
        let nal = &body[at + 4..at + 4 + len];
        if !matches!(nal[0] & 0x1f, 7 | 8) {
            out.push(nal.to_vec());
        }
        at += 4 + len;
    }
    out
}

fn to_packets(payloads: &[RtpPayload]) -> Vec<RtpPacket> {
    payloads
        .iter()
        .enumerate()
        .map(|(i, p)| {
            let mut pkt = RtpPacket::new(
                96,
                40_000u16.wrapping_add(i as u16),
                p.timestamp,
                3,
                p.to_bytes(),
            );
            pkt.marker = p.marker;
            pkt
        })
        .collect()
}

#[test]
fn first_video_tag_is_a_real_avc_decoder_configuration_record() {
    let file = media("h264_speex16k_320x240_12fps_20s.flv");
    let (_, _, body) = flv_tags(&file).into_iter().find(|t| t.0 == 9).unwrap();
    assert_eq!(&body[..5], &[0x17, 0, 0, 0, 0]);
    let cfg = AvcDecoderConfig::parse(&body.slice(5..)).unwrap();
    assert_eq!((cfg.profile, cfg.level, cfg.nal_length_size), (66, 12, 4));
    assert_eq!((cfg.sps.len(), cfg.pps.len()), (1, 1));
    assert_eq!(cfg.sps[0][0] & 0x1f, 7);
    assert_eq!(cfg.pps[0][0] & 0x1f, 8);
    assert_eq!(cfg.to_bytes().unwrap(), body.slice(5..));
}

struct RoundTrip {
    /// Frames of the source, as NAL lists, with their keyframe flag.
    source: Vec<(bool, Vec<Vec<u8>>)>,
    packets: Vec<RtpPacket>,
}

fn packetize_file(mtu: usize) -> RoundTrip {
    let file = media("h264_speex16k_320x240_12fps_20s.flv");
    let config = H264PacketizerConfig {
        mtu,
        ..Default::default()
    };
    let mut p = H264Packetizer::new(config, 0);
    let mut payloads = Vec::new();
    let mut source = Vec::new();
    for (kind, ts, body) in flv_tags(&file) {
        if kind != 9 {
            continue;
        }
        let n = p.push(&body, ts, &mut payloads).unwrap();
        if body[1] == 1 {
            assert!(n > 0);
            source.push((body[0] == 0x17, nals(&body)));
        }
    }
    assert!(payloads.iter().all(|p| p.len() <= mtu));
    // Large IDR frames need FU-A; SPS+PPS(+SEI) were aggregated.
    assert!(payloads
        .iter()
        .any(|p| p.header.first().map(|h| h & 0x1f) == Some(28)));
    assert!(payloads
        .iter()
        .any(|p| p.body.first().map(|h| h & 0x1f) == Some(24)));
    RoundTrip {
        source,
        packets: to_packets(&payloads),
    }
}

fn depacketize(packets: &[RtpPacket], config: H264DepacketizerConfig) -> Vec<(u32, Bytes)> {
    let t0 = Instant::now();
    let mut d = H264Depacketizer::new(config);
    let mut out = Vec::new();
    for (i, p) in packets.iter().enumerate() {
        let now = t0 + Duration::from_millis(i as u64);
        d.push(now, 0, p);
        while let Some(m) = d.poll_message() {
            out.push((m.timestamp, m.payload));
        }
    }
    d.handle_timeout(t0 + Duration::from_secs(3600));
    while let Some(m) = d.poll_message() {
        out.push((m.timestamp, m.payload));
    }
    assert_eq!(d.frames_lost(), 0);
    out
}

fn check_round_trip(rt: &RoundTrip, out: &[(u32, Bytes)]) {
    // A sequence header first, then a keyframe, then every frame with identical NALs.
    assert_eq!(&out[0].1[..2], &[0x17, 0]);
    let frames: Vec<_> = out.iter().filter(|(_, b)| b[1] == 1).collect();
    assert_eq!(frames[0].1[0], 0x17);
    assert_eq!(frames.len(), rt.source.len());
    for ((_, body), (key, src)) in frames.iter().zip(&rt.source) {
        assert_eq!(body[0] == 0x17, *key);
        assert_eq!(&nals(body), src);
    }
    // Timestamps follow the 12 fps source: 20 s of video.
    let last = frames.last().unwrap().0;
    assert!((19_000..21_000).contains(&last), "last timestamp {last}");
}

#[test]
fn h264_round_trip_in_order() {
    for mtu in [1200, 500, 64] {
        let rt = packetize_file(mtu);
        let out = depacketize(&rt.packets, H264DepacketizerConfig::default());
        check_round_trip(&rt, &out);
    }
}

#[test]
fn h264_round_trip_shuffled_within_the_window() {
    let rt = packetize_file(1200);
    let mut shuffled = rt.packets.clone();
    let mut rng = SeededRng::new(42);
    // Shuffle inside consecutive blocks of 8 packets: every displacement stays < 8.
    for block in shuffled.chunks_mut(8) {
        for i in (1..block.len()).rev() {
            let j = rng.below(i as u64 + 1) as usize;
            block.swap(i, j);
        }
    }
    assert_ne!(
        shuffled.iter().map(|p| p.sequence).collect::<Vec<_>>(),
        rt.packets.iter().map(|p| p.sequence).collect::<Vec<_>>()
    );
    // The first packet must come first: the window starts at the first sequence seen.
    let first = shuffled
        .iter()
        .position(|p| p.sequence == rt.packets[0].sequence)
        .unwrap();
    shuffled.swap(0, first);
    let config = H264DepacketizerConfig {
        reorder_packets: 16,
        reorder_delay: Duration::from_secs(1),
        ..Default::default()
    };
    let out = depacketize(&shuffled, config);
    check_round_trip(&rt, &out);
}

#[test]
fn speex_wideband_to_narrowband_on_a_real_stream() {
    let file = media("speex16k_audio_20s.flv");
    let mut frames_in = 0;
    let mut frames_out = 0;
    let mut out = BytesMut::new();
    for (kind, _, body) in flv_tags(&file) {
        if kind != 8 {
            continue; // onMetaData
        }
        assert_eq!(body[0] >> 4, 11);
        let input: Vec<_> = speex::frames(&body[1..]).collect::<Result<_, _>>().unwrap();
        assert!(!input.is_empty());
        assert!(input.iter().all(|f| f.wb_layers == 1 && f.wb_bits > 0));
        frames_in += input.len();
        out.clear();
        let n = speex::wideband_to_narrowband(&body[1..], &mut out).unwrap();
        assert_eq!(n, input.len());
        let nb: Vec<_> = speex::frames(&out).collect::<Result<_, _>>().unwrap();
        assert_eq!(nb.len(), input.len());
        for (o, i) in nb.iter().zip(&input) {
            assert_eq!(o.mode, i.mode);
            assert_eq!(o.nb_bits, usize::from(NB_MODE_BITS[usize::from(o.mode)]));
            assert_eq!((o.wb_layers, o.wb_bits), (0, 0));
        }
        let bits: usize = nb.iter().map(|f| f.narrowband_bits()).sum();
        assert_eq!(out.len(), bits.div_ceil(8));
        // The NB bits are the input's first NB bits, unchanged.
        assert_eq!(&out[..bits / 8], &body[1..1 + bits / 8]);
        frames_out += nb.len();
    }
    assert_eq!(frames_in, 1000);
    assert_eq!(frames_out, frames_in);
}

#[test]
fn speex_narrowband_input_passes_through_the_stripper() {
    let file = media("speex8k_audio_20s.flv");
    let mut tx = RtmpToRtpAudio::new(
        RtpAudioFormat {
            codec: RtpAudioCodec::SpeexNarrowband,
            payload_type: 98,
        },
        0,
    );
    let audio = flv_tags(&file).into_iter().filter(|t| t.0 == 8);
    for (i, (_, ts, body)) in audio.enumerate() {
        let p = tx.translate(&body, ts).unwrap();
        // Already narrowband and terminated the same way: byte-identical.
        assert_eq!(p.body, body.slice(1..));
        assert_eq!(p.timestamp, ts * 8);
        assert_eq!(p.marker, i == 0);
    }
}
