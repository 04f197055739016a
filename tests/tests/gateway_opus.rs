//! An enhanced-RTMP client that sends Opus through the gateway, end to end with real peers.
//! Its microphone is ffmpeg 9's libopus (32 kbit/s, 20 ms packets: real Opus from a peer
//! written elsewhere) encoding a tone sweep, published as ffmpeg publishes it (SequenceStart,
//! MultichannelConfig, then CodedFrames with FourCC `Opus`); it calls (tokens `opus`, `dtmf`)
//! a sipp phone that echoes RTP and speaks
//!
//! - only PCMU (`uas_echo_pcmu_only.xml`) or only PCMA (`uas_echo_pcma_only.xml`): the
//!   gateway transcodes Opus 48 kHz <-> G.711 8 kHz both ways;
//! - only Speex wideband (`uas_echo_speex_only.xml`): Opus 48 kHz <-> Speex 16 kHz;
//! - whatever is offered first (`uas_echo_any.xml`): Opus, passed through.
//!
//! What comes back on `remote` is decoded by ffmpeg 9 (so its framing, the Opus sequence
//! start first, is what a real player reads) and must correlate with what was sent. Every
//! frame is accounted for: one message back per message sent, with the timing it was sent
//! with.
//!
//! Thresholds: normalised cross-correlation at the best lag (compared at 16 kHz, the sweep
//! 200 Hz to 3.2 kHz, inside every codec's band) of at least [`MIN_CORRELATION`] through
//! transcoding and [`MIN_CORRELATION_PASSED`] through pass-through (one Opus pass, ffmpeg's),
//! and no more than [`MAX_LOSS_TO_CODEC`] below the same codecs applied to the same input
//! without the gateway (libopus converting rates itself; see [`codecs_alone`]). Measured on
//! this machine: through PCMU 0.934 and PCMA 0.959 (lag 255 samples), the codecs alone 0.951;
//! through Speex wideband 0.889 (lag 454), the codecs alone 0.902; passed through 1.000 (lag
//! 104, ffmpeg's Opus at 32 kbit/s keeps a pure sweep almost exactly). What came back against
//! a sweep 10 % higher in frequency (what a rate error gives) is 0.41 (G.711), 0.55 (Speex)
//! and 0.32 (pass-through): the tests check it stays under [`MAX_WRONG`], well below the
//! thresholds, so the measure tells a right signal from a wrong one.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use siprtmp_codec_opus::Decoder;
use siprtmp_codec_speex::Band;
use siprtmp_core::media::g711;
use siprtmp_core::media::opus::{CODED_FRAMES_HEADER, SEQUENCE_START_HEADER};
use siprtmp_core::rtmp::message::type_id;
use siprtmp_core::sip::Transport;
use siprtmp_tests::audio_measure::{best_correlation, sweep};
use siprtmp_tests::ffmpeg9::{decode_audio_tags, opus_flv};
use siprtmp_tests::gateway::{gateway_node, s, Phone};
use siprtmp_tests::scratch_dir;
use siprtmp_tests::server::{Runtime, TestServer};
use siprtmp_tests::sipp::{self, Sipp};

const T: Duration = Duration::from_secs(10);
const AOR: &str = "alice@127.0.0.1";
/// 3 s of sweep: 150 frames of 20 ms.
const FRAMES: usize = 150;
/// See the module documentation.
const MIN_CORRELATION: f64 = 0.8;
const MIN_CORRELATION_PASSED: f64 = 0.95;
const MAX_LOSS_TO_CODEC: f64 = 0.05;
const MAX_WRONG: f64 = 0.65;
/// The rate the correlation is measured at.
const RATE: u32 = 16_000;
/// Lags up to 200 ms: codec look-ahead and the resamplers' delay, both ways.
const MAX_LAG: usize = RATE as usize / 5;

/// The test signal at `rate`: a logarithmic sweep from 200 Hz to 3.2 kHz, [`FRAMES`] long.
fn the_sweep(rate: u32) -> Vec<i16> {
    sweep(200.0, 3200.0, rate, FRAMES * rate as usize / 50)
}

/// The far end of a call, by what it speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum FarEnd {
    Pcmu,
    Pcma,
    SpeexWideband,
    /// Answers with the first codec offered: Opus.
    Any,
}

impl FarEnd {
    fn scenario(self) -> &'static str {
        match self {
            FarEnd::Pcmu => "uas_echo_pcmu_only.xml",
            FarEnd::Pcma => "uas_echo_pcma_only.xml",
            FarEnd::SpeexWideband => "uas_echo_speex_only.xml",
            FarEnd::Any => "uas_echo_any.xml",
        }
    }
}

/// Opus packets of a sweep (the bodies after the enhanced header), decoded by libopus at
/// `rate` (libopus converting the rate itself).
fn decode_opus(packets: &[&[u8]], rate: u32) -> Vec<i16> {
    let mut decoder = Decoder::new(rate, 1).unwrap();
    let mut pcm = Vec::new();
    for p in packets {
        decoder.decode(p, &mut pcm).unwrap();
    }
    pcm
}

/// What the codecs of a call to `far` do to the client's Opus without the gateway: ffmpeg's
/// packets decoded at the far end's rate, through its codec (G.711 or Speex, encoded and
/// decoded), encoded again with the gateway's Opus settings and decoded at [`RATE`].
fn codecs_alone(packets: &[&[u8]], far: FarEnd) -> Vec<i16> {
    let far_rate = if far == FarEnd::SpeexWideband {
        16_000
    } else {
        8000
    };
    let decoded = decode_opus(packets, far_rate);
    let mut through = Vec::new();
    match far {
        FarEnd::Pcmu => {
            let mut bytes = Vec::new();
            g711::encode_ulaw(&decoded, &mut bytes);
            g711::decode_ulaw(&bytes, &mut through);
        }
        FarEnd::Pcma => {
            let mut bytes = Vec::new();
            g711::encode_alaw(&decoded, &mut bytes);
            g711::decode_alaw(&bytes, &mut through);
        }
        FarEnd::SpeexWideband => {
            let mut enc = siprtmp_codec_speex::Encoder::new(Band::Wideband, 8).unwrap();
            let mut dec = siprtmp_codec_speex::Decoder::new(Band::Wideband).unwrap();
            for frame in decoded.chunks_exact(320) {
                let mut packet = Vec::new();
                enc.encode(frame, &mut packet);
                dec.decode(&packet, &mut through).unwrap();
            }
        }
        FarEnd::Any => return decode_opus(packets, RATE),
    }
    let mut enc = siprtmp_codec_opus::gateway::encoder(far_rate).unwrap();
    let mut dec = Decoder::new(RATE, 1).unwrap();
    let mut out = Vec::new();
    for frame in through.chunks_exact(far_rate as usize / 50) {
        let mut packet = Vec::new();
        enc.encode(frame, &mut packet).unwrap();
        dec.decode(&packet, &mut out).unwrap();
    }
    out
}

/// The client's Opus (ffmpeg 9's) calls a sipp phone of `far` that echoes; checks that every
/// frame comes back, that what comes back decodes in ffmpeg 9 and correlates with the sweep,
/// and DTMF when the far end takes it. Returns the correlation.
fn opus_echo(far: FarEnd, name: &str) -> f64 {
    let dir = scratch_dir(name);
    let mut node = gateway_node(Transport::Udp);
    let session = &mut node
        .server
        .gateway
        .as_mut()
        .expect("a gateway node")
        .session;
    session.transcoder = Some(Arc::new(siprtmp_codec_speex::gateway::Codecs));
    session.opus = Some(Arc::new(siprtmp_codec_opus::gateway::Codecs));
    let server = TestServer::start_on(Runtime::Mio, node, None);
    let sipp = Sipp::uas(far.scenario())
        .rtp_echo()
        .start(&format!("sipp uas ({})", far.scenario()), &dir);
    let mut phone = Phone::connect(server.addr, AOR, vec![]).expect("connect");
    phone.call(
        "invite",
        vec![s(&sipp.uri("service")), s("opus"), s("dtmf")],
    );
    // Accepted with the client's own codec, whatever the far end speaks.
    let accepted = phone.callback("accepted", T).expect("accepted, not 488");
    assert_eq!(accepted.first(), Some(&s("opus")), "{name}: {accepted:?}");
    phone.open_streams();

    let messages = opus_flv(&the_sweep(48_000), 48_000, "32k", &dir);
    let packets: Vec<&[u8]> = messages
        .iter()
        .filter_map(|(_, body)| body.strip_prefix(&CODED_FRAMES_HEADER[..]))
        .collect();
    assert!(packets.len() >= FRAMES, "ffmpeg's {} frames", packets.len());
    assert_eq!(
        messages[0].1[..5],
        SEQUENCE_START_HEADER,
        "ffmpeg starts so"
    );
    phone.stream_audio(&messages, Duration::from_millis(800));

    // Every frame accounted: the sequence start, then one frame per frame sent, 20 ms apart.
    let back: Vec<(u32, Bytes)> = phone
        .remote_media
        .iter()
        .filter(|m| m.type_id == type_id::AUDIO)
        .map(|m| (m.timestamp, m.payload.clone()))
        .collect();
    assert!(
        back.first()
            .is_some_and(|(_, b)| b.starts_with(&SEQUENCE_START_HEADER)),
        "{name}: the Opus sequence start comes first"
    );
    let frames = &back[1..];
    assert_eq!(
        frames.len(),
        packets.len(),
        "{name}: frames back for frames sent"
    );
    assert!(frames
        .iter()
        .all(|(_, b)| b.starts_with(&CODED_FRAMES_HEADER) && b.len() > 6));
    // In the time of the frames sent: the far end's packets carry the client's timestamps
    // (ffmpeg's, rounded to the millisecond) and the frames back keep them.
    let sent_times: Vec<u32> = messages
        .iter()
        .filter(|(_, body)| body.starts_with(&CODED_FRAMES_HEADER))
        .map(|(ts, _)| ts - messages[0].0)
        .collect();
    let back_times: Vec<u32> = frames.iter().map(|(ts, _)| ts - frames[0].0).collect();
    assert_eq!(back_times, sent_times, "{name}: timestamps");
    if far == FarEnd::Any {
        // Passed through: the very packets sent, in order.
        for ((_, b), sent) in frames.iter().zip(&packets) {
            assert_eq!(&b[5..], *sent, "{name}: byte for byte");
        }
    }

    // What a player hears: ffmpeg 9 decodes it cleanly, and it is the sweep.
    let (got, errors) = decode_audio_tags(&back, RATE, &dir);
    assert!(errors.is_empty(), "{name}: ffmpeg 9 decoding: {errors}");
    let sent = the_sweep(RATE);
    let (correlation, lag) = best_correlation(&sent, &got, MAX_LAG);
    eprintln!("{name}: correlation {correlation:.3} at a lag of {lag} samples ({RATE} Hz)");
    let min = if far == FarEnd::Any {
        MIN_CORRELATION_PASSED
    } else {
        MIN_CORRELATION
    };
    assert!(
        correlation >= min,
        "{name}: correlation {correlation:.3} < {min}"
    );
    let (alone, _) = best_correlation(&sent, &codecs_alone(&packets, far), MAX_LAG);
    eprintln!("{name}: the same codecs without the gateway: correlation {alone:.3}");
    assert!(
        correlation >= alone - MAX_LOSS_TO_CODEC,
        "{name}: {correlation:.3}, the codecs alone {alone:.3}"
    );
    // The measure tells a wrong signal: a sweep 10 % higher, as a rate error would give.
    let (wrong, _) = best_correlation(&sweep(220.0, 3520.0, RATE, sent.len()), &got, MAX_LAG);
    eprintln!("{name}: against a sweep 10 % higher: correlation {wrong:.3}");
    assert!(wrong < MAX_WRONG, "{name}: {wrong:.3}");

    if far != FarEnd::Any {
        // DTMF across the transcoded call: out as RFC 4733, echoed, back as a callback.
        phone.call("sendDTMF", vec![s("7")]);
        assert_eq!(
            phone.callback("dtmf", T).expect("dtmf callback"),
            vec![s("7")]
        );
    }
    phone.call("bye", vec![]);
    sipp.finish(Duration::from_secs(20));
    assert_eq!(sipp::totals(&dir), (1, 0), "{name}: one successful call");
    correlation
}

#[test]
fn an_opus_client_calling_a_pcmu_only_phone_hears_its_echo_transcoded() {
    opus_echo(FarEnd::Pcmu, "gw-opus-pcmu");
}

#[test]
fn an_opus_client_calling_a_pcma_only_phone_hears_its_echo_transcoded() {
    opus_echo(FarEnd::Pcma, "gw-opus-pcma");
}

#[test]
fn an_opus_client_calling_a_speex_only_phone_hears_its_echo_transcoded() {
    opus_echo(FarEnd::SpeexWideband, "gw-opus-speex");
}

#[test]
fn an_opus_client_calling_a_phone_that_speaks_opus_hears_its_own_packets() {
    opus_echo(FarEnd::Any, "gw-opus-passthrough");
}

/// Without libopus the same call to a PCMU-only phone is refused (488): what the Opus
/// transcoding changes.
#[test]
fn without_an_opus_codec_the_pcmu_only_phone_refuses_the_opus_client() {
    let dir = scratch_dir("gw-opus-none");
    let mut node = gateway_node(Transport::Udp);
    let session = &mut node
        .server
        .gateway
        .as_mut()
        .expect("a gateway node")
        .session;
    session.transcoder = Some(Arc::new(siprtmp_codec_speex::gateway::Codecs));
    let server = TestServer::start_on(Runtime::Mio, node, None);
    let sipp = Sipp::uas("uas_echo_pcmu_only.xml")
        .rtp_echo()
        .start("sipp uas (pcmu only)", &dir);
    let mut phone = Phone::connect(server.addr, AOR, vec![]).expect("connect");
    phone.call(
        "invite",
        vec![s(&sipp.uri("service")), s("opus"), s("dtmf")],
    );
    let rejected = phone.callback("rejected", T).expect("rejected");
    assert_eq!(rejected, vec![s("488 Not Acceptable Here")]);
    sipp.finish(Duration::from_secs(20));
}
