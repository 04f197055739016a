//! CPU per 20 ms frame of a gateway call's audio, each way: an Opus client's call transcoded
//! to PCMU and to Speex wideband (libopus and libspeex through core's `Transcoder`, with the
//! 48 kHz resampling), against the same frame passed through to a far end that speaks Opus
//! (core's `RtmpToRtpAudio` and `RtpToRtmpAudio`: header and timestamp only), and the Speex
//! client's transcoding to PCMU for comparison. What the node spends around a frame (RTMP,
//! RTP, sockets) is the same for all and is not in these figures.
//!
//! ```sh
//! cargo bench -p siprtmp-codec-opus --bench frame
//! ```

use std::hint::black_box;

use bytes::Bytes;
use criterion::{criterion_group, criterion_main, Criterion};
use siprtmp_codec_opus::{Application, Encoder};
use siprtmp_core::media::audio::{RtmpToRtpAudio, RtpAudioCodec, RtpAudioFormat, RtpToRtmpAudio};
use siprtmp_core::media::g711;
use siprtmp_core::media::opus::CODED_FRAMES_HEADER;
use siprtmp_core::media::transcode::{
    ClientCodec, CodecLibraries, FarCodec, G711Law, SpeexBand, Transcoder,
};
use siprtmp_core::rtp::RtpPacket;

/// One second of a speech-like signal at `rate`: a 140 Hz voice with harmonics whose
/// loudness moves at syllable pace, so the codecs work as they would on speech.
fn voice(rate: u32) -> Vec<i16> {
    (0..rate)
        .map(|i| {
            let t = f64::from(i) / f64::from(rate);
            let envelope = 0.6 + 0.4 * (2.0 * std::f64::consts::PI * 4.0 * t).sin();
            let tone: f64 = (1..=12)
                .map(|h| {
                    (2.0 * std::f64::consts::PI * 140.0 * f64::from(h) * t).sin() / f64::from(h)
                })
                .sum();
            (3000.0 * envelope * tone) as i16
        })
        .collect()
}

/// 50 client messages: the voice as Opus at 32 kbit/s, each with its enhanced-RTMP header.
fn opus_messages() -> Vec<Bytes> {
    let mut encoder = Encoder::new(48_000, 1, Application::Voip).unwrap();
    encoder.set_bitrate(32_000);
    voice(48_000)
        .chunks(960)
        .map(|frame| {
            let mut body = CODED_FRAMES_HEADER.to_vec();
            encoder.encode(frame, &mut body).unwrap();
            Bytes::from(body)
        })
        .collect()
}

/// 50 far-end payloads of 20 ms: the voice as PCMU.
fn pcmu_payloads() -> Vec<Bytes> {
    voice(8000)
        .chunks(160)
        .map(|frame| {
            let mut out = Vec::new();
            g711::encode_ulaw(frame, &mut out);
            Bytes::from(out)
        })
        .collect()
}

/// 50 Speex wideband packets of 20 ms of the voice, with the FLV header when `flv`.
fn speex_packets(flv: bool) -> Vec<Bytes> {
    let mut encoder =
        siprtmp_codec_speex::Encoder::new(siprtmp_codec_speex::Band::Wideband, 8).unwrap();
    voice(16_000)
        .chunks(320)
        .map(|frame| {
            let mut out = if flv { vec![0xB2] } else { Vec::new() };
            encoder.encode(frame, &mut out);
            Bytes::from(out)
        })
        .collect()
}

fn libraries() -> CodecLibraries<'static> {
    CodecLibraries {
        speex: Some(&siprtmp_codec_speex::gateway::Codecs),
        opus: Some(&siprtmp_codec_opus::gateway::Codecs),
    }
}

/// Benches one transcoder's two directions: `client` messages in, `far` payloads back.
fn transcoded(
    c: &mut Criterion,
    name: &str,
    client: ClientCodec,
    far: FarCodec,
    to_far: &[Bytes],
    to_client: &[Bytes],
) {
    let mut t = Transcoder::new(client, far, libraries()).unwrap();
    let mut i = 0;
    c.bench_function(&format!("{name}/client_to_far"), |b| {
        b.iter(|| {
            let body = &to_far[i % to_far.len()];
            i += 1;
            t.client_to_far(black_box(body), i as u32 * 20, |_, p| {
                black_box(p);
            });
        })
    });
    let mut i = 0;
    c.bench_function(&format!("{name}/far_to_client"), |b| {
        b.iter(|| {
            let payload = &to_client[i % to_client.len()];
            i += 1;
            t.far_to_client(black_box(payload), i as u32 * 20, |_, p| {
                black_box(p);
            });
        })
    });
}

fn frames(c: &mut Criterion) {
    let opus = opus_messages();
    let pcmu = pcmu_payloads();
    let g711 = FarCodec::G711(G711Law::Ulaw);
    transcoded(c, "opus-pcmu", ClientCodec::Opus, g711, &opus, &pcmu);
    let speex_far = FarCodec::Speex(SpeexBand::Wideband);
    transcoded(
        c,
        "opus-speex16k",
        ClientCodec::Opus,
        speex_far,
        &opus,
        &speex_packets(false),
    );
    let speex_client = ClientCodec::Speex(SpeexBand::Wideband);
    transcoded(
        c,
        "speex16k-pcmu",
        speex_client,
        g711,
        &speex_packets(true),
        &pcmu,
    );

    // Pass-through to a far end that speaks Opus: what the bridge does per frame.
    let format = RtpAudioFormat {
        codec: RtpAudioCodec::Opus,
        payload_type: 111,
    };
    let mut out = RtmpToRtpAudio::new(format, 0);
    let mut i = 0;
    c.bench_function("opus-passthrough/client_to_far", |b| {
        b.iter(|| {
            let body = &opus[i % opus.len()];
            i += 1;
            black_box(out.translate(black_box(body), i as u32 * 20).ok());
        })
    });
    let mut back = RtpToRtmpAudio::new(format);
    let packets: Vec<RtpPacket> = opus
        .iter()
        .enumerate()
        .map(|(n, body)| RtpPacket::new(111, n as u16, n as u32 * 960, 7, body.slice(5..)))
        .collect();
    let mut i = 0;
    c.bench_function("opus-passthrough/far_to_client", |b| {
        b.iter(|| {
            let packet = packets[i % packets.len()].clone();
            i += 1;
            black_box(back.translate(black_box(packet), 0));
        })
    });
}

// `criterion_group!` defines a `pub fn` without a doc comment: inside a private module it is
// not public, so needs none (as in core's benches).
mod group {
    use super::*;
    criterion_group!(benches, frames);
}

criterion_main!(group::benches);
