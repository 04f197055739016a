//! The gateway's Speex <-> G.711 transcoding end to end with real peers: the legacy Speex
//! client ([`Phone`], offering `wideband` and `dtmf`) calls a sipp phone that speaks only PCMU
//! (`uas_echo_pcmu_only.xml`) or only PCMA (`uas_echo_pcma_only.xml`) and echoes RTP. The
//! client sends a tone sweep coded with libspeex; what comes back has been through two
//! transcodings (Speex -> G.711 at the gateway, echoed, G.711 -> Speex at the gateway) and
//! four codec passes, and must decode and correlate with what was sent. DTMF crosses the
//! transcoded call both ways (RFC 4733 out, echoed, a `dtmf` callback back).
//!
//! Thresholds: normalised cross-correlation at the best lag of at least
//! [`MIN_CORRELATION_WB`] (0.8) for a wideband client and [`MIN_CORRELATION_NB`] (0.6) for a
//! narrowband one, and no more than [`MAX_LOSS_TO_CODEC`] below two Speex passes of the same
//! sweep without the gateway (what the echo's two Speex encodings cost by themselves). Speex
//! is a CELP codec: it matches the waveform, not only the spectrum, so a sweep inside the
//! telephone band (200 Hz to 3.2 kHz, under the resampler's 3.7 kHz cutoff) keeps its shape.
//! Measured on this machine: wideband, one Speex pass alone 0.967 (lag 223 samples at 16 kHz)
//! and two 0.875; the whole echo (two Speex encodings and decodings, two G.711 passes, two
//! resamplings each way) 0.873 for both laws (lag 493); narrowband, two Speex passes alone 0.666 and the whole echo 0.663:
//! at 8 kHz the codec is the limit, the gateway's G.711 and regrouping cost nothing visible.
//! The echo against a sweep 10 % higher in frequency (a rate error) gives 0.43. The
//! thresholds sit between: room for codec noise on another libspeex build, and far above what
//! a broken path gives (silence, noise, a wrong rate or law, frames out of order), which
//! [`the_measure_tells_a_codec_pass_from_a_wrong_signal`] checks the measure can tell.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use siprtmp_codec_speex::{Band, Decoder, Encoder};
use siprtmp_core::sip::Transport;
use siprtmp_tests::audio_measure::{self, best_correlation};
use siprtmp_tests::gateway::{gateway_node, s, Phone};
use siprtmp_tests::scratch_dir;
use siprtmp_tests::server::{Runtime, TestServer};
use siprtmp_tests::sipp::{self, Sipp};

const T: Duration = Duration::from_secs(10);
const AOR: &str = "alice@127.0.0.1";
/// See the module documentation: wideband (16 kHz) and narrowband (8 kHz) clients.
const MIN_CORRELATION_WB: f64 = 0.8;
const MIN_CORRELATION_NB: f64 = 0.6;
/// How far below the codec's own two passes (no gateway) the echo may fall.
const MAX_LOSS_TO_CODEC: f64 = 0.05;
/// 3 s of sweep, 150 frames of 20 ms at 16 kHz.
const FRAMES: usize = 150;

/// A logarithmic sweep from 200 Hz to 3.2 kHz at `band`'s rate, amplitude 8000 (-12 dBFS).
fn sweep(band: Band) -> Vec<i16> {
    sweep_from(200.0, 3200.0, band)
}

/// A logarithmic sweep from `f0` to `f1` Hz over [`FRAMES`] frames at `band`'s rate.
fn sweep_from(f0: f64, f1: f64, band: Band) -> Vec<i16> {
    audio_measure::sweep(f0, f1, band.sample_rate(), FRAMES * band.frame_samples())
}

/// The client's FLV audio bodies: `0xB2` then one Speex frame of `band`, every 20 ms.
fn speex_frames(pcm: &[i16], band: Band) -> Vec<(u32, Bytes)> {
    let mut encoder = Encoder::new(band, 8).unwrap();
    pcm.chunks(band.frame_samples())
        .enumerate()
        .map(|(i, frame)| {
            let mut body = vec![0xB2];
            encoder.encode(frame, &mut body);
            (i as u32 * 20, Bytes::from(body))
        })
        .collect()
}

/// The sweep through `passes` Speex encode/decode passes of `band`, no gateway.
fn through_speex(sent: &[i16], band: Band, passes: usize) -> Vec<i16> {
    let mut pcm = sent.to_vec();
    for _ in 0..passes {
        let mut decoder = Decoder::new(band).unwrap();
        let mut out = Vec::new();
        for (_, body) in speex_frames(&pcm, band) {
            decoder.decode(&body[1..], &mut out).unwrap();
        }
        pcm = out;
    }
    pcm
}

/// The measure itself: one Speex pass of the sweep (no gateway) correlates well above the
/// threshold, and the echo of a call compared with a sweep 10 % higher in frequency (what a
/// small rate error would give) falls far below it.
#[test]
fn the_measure_tells_a_codec_pass_from_a_wrong_signal() {
    let sent = sweep(Band::Wideband);
    let mut decoder = Decoder::new(Band::Wideband).unwrap();
    let mut once = Vec::new();
    for (_, body) in speex_frames(&sent, Band::Wideband) {
        decoder.decode(&body[1..], &mut once).unwrap();
    }
    let (alone, lag) = best_correlation(&sent, &once, 3200);
    eprintln!("one Speex pass: correlation {alone:.3} at a lag of {lag}");
    assert!(alone >= 0.9, "{alone:.3}");
    let (wrong, _) = best_correlation(&sweep_from(220.0, 3520.0, Band::Wideband), &once, 3200);
    eprintln!("against a sweep 10 % higher: correlation {wrong:.3}");
    assert!(wrong < 0.6, "{wrong:.3}");
}

/// The legacy client (Speex of `band`) calls a sipp phone of one G.711 law that echoes;
/// returns the correlation measured (asserted above the threshold) after checking DTMF.
fn transcoded_echo(scenario: &str, name: &str, band: Band) -> f64 {
    let token = match band {
        Band::Wideband => "wideband",
        Band::Narrowband => "narrowband",
    };
    let dir = scratch_dir(name);
    let mut node = gateway_node(Transport::Udp);
    node.server
        .gateway
        .as_mut()
        .expect("a gateway node")
        .session
        .transcoder = Some(Arc::new(siprtmp_codec_speex::gateway::Codecs));
    let server = TestServer::start_on(Runtime::Mio, node, None);
    let sipp = Sipp::uas(scenario)
        .rtp_echo()
        .start(&format!("sipp uas ({scenario})"), &dir);
    let mut phone = Phone::connect(server.addr, AOR, vec![]).expect("connect");
    phone.call("invite", vec![s(&sipp.uri("service")), s(token), s("dtmf")]);
    // Accepted, with the client's own codec: it sends and hears Speex.
    let accepted = phone.callback("accepted", T).expect("accepted, not 488");
    assert_eq!(accepted.first(), Some(&s(token)), "{accepted:?}");
    phone.open_streams();

    let sent = sweep(band);
    phone.stream_audio(&speex_frames(&sent, band), Duration::from_millis(800));
    let echoed = phone.remote_audio();
    assert!(
        echoed.len() * 100 >= FRAMES * 95,
        "{name}: {} of {FRAMES} frames came back",
        echoed.len()
    );
    let mut decoder = Decoder::new(band).unwrap();
    let mut got = Vec::new();
    for body in &echoed {
        assert_eq!(body[0], 0xB2, "{name}: Speex back to the client");
        assert_eq!(
            decoder.decode(&body[1..], &mut got),
            Ok(1),
            "{name}: one 20 ms frame per message"
        );
    }
    // Lags up to 200 ms: the codecs' look-ahead and the resampler's delay, both ways.
    let max_lag = band.frame_samples() * 10;
    let (correlation, lag) = best_correlation(&sent, &got, max_lag);
    eprintln!(
        "{name}: correlation {correlation:.3} at a lag of {lag} samples ({} Hz)",
        band.sample_rate()
    );
    let min = match band {
        Band::Wideband => MIN_CORRELATION_WB,
        Band::Narrowband => MIN_CORRELATION_NB,
    };
    assert!(
        correlation >= min,
        "{name}: correlation {correlation:.3} < {min}"
    );
    // Against the codec alone: two Speex passes of the sweep, no gateway, no G.711.
    let (codec_only, _) = best_correlation(&sent, &through_speex(&sent, band, 2), max_lag);
    eprintln!("{name}: two Speex passes alone: correlation {codec_only:.3}");
    assert!(
        correlation >= codec_only - MAX_LOSS_TO_CODEC,
        "{name}: {correlation:.3}, the codec alone {codec_only:.3}"
    );

    // DTMF across the transcoded call: out as RFC 4733, echoed by sipp, back as a callback.
    phone.call("sendDTMF", vec![s("5")]);
    assert_eq!(
        phone.callback("dtmf", T).expect("dtmf callback"),
        vec![s("5")]
    );
    phone.call("bye", vec![]);
    sipp.finish(Duration::from_secs(20));
    assert_eq!(sipp::totals(&dir), (1, 0), "{name}: one successful call");
    correlation
}

#[test]
fn a_speex_client_calling_a_pcmu_only_phone_hears_its_echo_transcoded() {
    transcoded_echo(
        "uas_echo_pcmu_only.xml",
        "gw-transcode-pcmu",
        Band::Wideband,
    );
}

#[test]
fn a_speex_client_calling_a_pcma_only_phone_hears_its_echo_transcoded() {
    transcoded_echo(
        "uas_echo_pcma_only.xml",
        "gw-transcode-pcma",
        Band::Wideband,
    );
}

/// A narrowband client (Speex 8 kHz both ways, no resampling) to a PCMU-only phone.
#[test]
fn a_narrowband_speex_client_calling_a_pcmu_only_phone_hears_its_echo_transcoded() {
    transcoded_echo(
        "uas_echo_pcmu_only.xml",
        "gw-transcode-nb-pcmu",
        Band::Narrowband,
    );
}

/// Without a transcoder the same call is refused (488): what the transcoding changes.
#[test]
fn without_a_transcoder_the_pcmu_only_phone_refuses_the_speex_client() {
    let dir = scratch_dir("gw-transcode-none");
    let server = TestServer::start_on(Runtime::Mio, gateway_node(Transport::Udp), None);
    let sipp = Sipp::uas("uas_echo_pcmu_only.xml")
        .rtp_echo()
        .start("sipp uas (pcmu only)", &dir);
    let mut phone = Phone::connect(server.addr, AOR, vec![]).expect("connect");
    phone.call(
        "invite",
        vec![s(&sipp.uri("service")), s("wideband"), s("dtmf")],
    );
    let rejected = phone.callback("rejected", T).expect("rejected");
    assert_eq!(rejected, vec![s("488 Not Acceptable Here")]);
    sipp.finish(Duration::from_secs(20));
}
