//! One call's media through two gateway bridges facing each other: what the first client
//! publishes reaches the second client's `remote` stream unchanged (Speex, G.711, H.264, the
//! x-flv tunnel), and DTMF digits arrive once, counted in their telephone-event's clock.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use bytes::Bytes;
use siprtmp_core::gateway::codecs::CodecToken;
use siprtmp_core::gateway::media_bridge::{
    BridgeSetup, DtmfSetup, FromFarEnd, Leg, LegSetup, MediaBridge, OutgoingRtp,
};
use siprtmp_core::media::{opus, AvcDecoderConfig};
use siprtmp_core::rng::SeededRng;
use siprtmp_core::rtmp::message::{type_id, RtmpMessage};
use siprtmp_core::rtp::dtmf::EventPayload;
use siprtmp_core::rtp::RtpPacket;
use support::{flv_tags, media};

mod support;

fn addr(port: u16) -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], port))
}

fn setup(audio: Option<CodecToken>, video: Option<CodecToken>, remote_base: u16) -> BridgeSetup {
    let pt = |t: CodecToken| t.codec().payload_type;
    BridgeSetup {
        audio: audio.map(|t| LegSetup {
            codec: t,
            send_pt: pt(t),
            receive_pt: pt(t),
            remote: addr(remote_base),
            srtp: None,
        }),
        dtmf: Some(DtmfSetup {
            send_pt: 101,
            receive_pt: 101,
            clock_rate: 8000,
        }),
        video: video.map(|t| LegSetup {
            codec: t,
            send_pt: pt(t),
            receive_pt: pt(t),
            remote: addr(remote_base + 2),
            srtp: None,
        }),
        mtu: 1200,
        transcode: None,
        source_policy: Default::default(),
    }
}

/// Publishes `msgs` into bridge A in real (virtual) time, carries every RTP datagram to
/// bridge B, and returns what B gives its client.
fn carry(
    a: &mut MediaBridge,
    b: &mut MediaBridge,
    start: Instant,
    msgs: &[RtmpMessage],
) -> Vec<FromFarEnd> {
    let mut rtp = Vec::new();
    let mut got = Vec::new();
    for m in msgs {
        let now = start + Duration::from_millis(u64::from(m.timestamp));
        a.from_client(now, m, &mut rtp);
        deliver(b, now, &mut rtp, &mut got);
    }
    let end =
        start + Duration::from_millis(u64::from(msgs.last().map_or(0, |m| m.timestamp)) + 500);
    let mut back = Vec::new();
    b.poll(end, &mut Vec::new(), &mut back);
    got.extend(back);
    got
}

fn deliver(
    b: &mut MediaBridge,
    now: Instant,
    rtp: &mut Vec<OutgoingRtp>,
    got: &mut Vec<FromFarEnd>,
) {
    for d in rtp.drain(..) {
        // The datagram comes from where B's SDP says A's media is (RTCP from the port above).
        let rtp = b.remote(d.leg).unwrap();
        let source = if d.rtcp {
            SocketAddr::new(rtp.ip(), rtp.port() + 1)
        } else {
            rtp
        };
        let _ = b.from_far_end(now, d.leg, d.rtcp, source, d.datagram.to_bytes(), got);
    }
}

fn messages(file: &str, kind: u8) -> Vec<RtmpMessage> {
    flv_tags(&media(file))
        .into_iter()
        .filter(|(k, _, _)| *k == kind)
        .map(|(k, ts, body)| RtmpMessage::new(k, 1, ts, body))
        .collect()
}

fn bridges(
    audio: Option<CodecToken>,
    video: Option<CodecToken>,
) -> (MediaBridge, MediaBridge, Instant) {
    let now = Instant::now();
    let mut rng = SeededRng::new(5);
    let a = MediaBridge::new(
        &setup(audio, video, 6000),
        "a@gw",
        &mut rng,
        now,
        Default::default(),
    )
    .unwrap();
    let b = MediaBridge::new(
        &setup(audio, video, 7000),
        "b@gw",
        &mut rng,
        now,
        Default::default(),
    )
    .unwrap();
    (a, b, now)
}

#[test]
fn speex_wideband_passes_through_byte_for_byte() {
    let (mut a, mut b, start) = bridges(Some(CodecToken::Wideband), None);
    let sent = messages("speex16k_audio_20s.flv", type_id::AUDIO);
    let got = carry(&mut a, &mut b, start, &sent);
    let bodies: Vec<Bytes> = got
        .iter()
        .filter_map(|g| match g {
            FromFarEnd::Media(m) if m.type_id == type_id::AUDIO => Some(m.to_message(0).payload),
            _ => None,
        })
        .collect();
    assert_eq!(bodies.len(), sent.len());
    for (s, g) in sent.iter().zip(&bodies) {
        assert_eq!(g[0], 0xB2, "FLV Speex 16 kHz header");
        assert_eq!(&g[1..], &s.payload[1..], "Speex frames unchanged");
    }
    // Timestamps follow the publisher's clock: 20 s of audio stays 20 s.
    let last = got.iter().rev().find_map(|g| match g {
        FromFarEnd::Media(m) => Some(m.timestamp),
        _ => None,
    });
    let span = last.unwrap();
    assert!((19_000..=20_500).contains(&span), "{span}");
}

#[test]
fn g711_passes_through_with_the_original_flv_headers() {
    for (token, header, flv_format) in
        [(CodecToken::Pcmu, 0x82u8, 8u8), (CodecToken::Pcma, 0x72, 7)]
    {
        let (mut a, mut b, start) = bridges(Some(token), None);
        let sent: Vec<RtmpMessage> = (0..50u32)
            .map(|i| {
                let mut body = vec![(flv_format << 4) | 0x02];
                body.extend((0..160).map(|j| (i as u8).wrapping_add(j as u8)));
                RtmpMessage::new(type_id::AUDIO, 1, i * 20, body)
            })
            .collect();
        let got = carry(&mut a, &mut b, start, &sent);
        let audio: Vec<RtmpMessage> = got
            .iter()
            .filter_map(|g| match g {
                FromFarEnd::Media(m) => Some(m.to_message(0)),
                _ => None,
            })
            .collect();
        assert_eq!(audio.len(), 50, "{token:?}");
        for (s, g) in sent.iter().zip(audio) {
            assert_eq!(g.payload[0], header, "{token:?}");
            assert_eq!(&g.payload[1..], &s.payload[1..]);
        }
    }
}

#[test]
fn h264_frames_arrive_as_the_same_nal_units_with_a_sequence_header_first() {
    let (mut a, mut b, start) = bridges(None, Some(CodecToken::H264));
    let sent = messages("h264_speex16k_320x240_12fps_20s.flv", type_id::VIDEO);
    let got = carry(&mut a, &mut b, start, &sent);
    let video: Vec<RtmpMessage> = got
        .iter()
        .filter_map(|g| match g {
            FromFarEnd::Media(m) => Some(m.to_message(0)),
            _ => None,
        })
        .collect();
    assert_eq!(
        video[0].payload[..2],
        [0x17, 0x00],
        "AVC sequence header first"
    );
    let config = AvcDecoderConfig::parse(&video[0].payload.slice(5..)).unwrap();
    assert!(!config.sps.is_empty() && !config.pps.is_empty());
    assert_eq!(video[1].payload[0], 0x17, "then a keyframe");
    // Every coded frame of the source (AVC packet type 1; not its end-of-sequence tag)
    // arrives.
    let frames = sent.iter().filter(|m| m.payload[1] == 1).count();
    assert_eq!(video.iter().filter(|m| m.payload[1] == 1).count(), frames);
}

#[test]
fn the_flv_tunnel_carries_whole_messages() {
    let (mut a, mut b, start) = bridges(None, Some(CodecToken::Flv));
    let sent = messages("h264_speex16k_320x240_12fps_20s.flv", type_id::VIDEO);
    let got = carry(&mut a, &mut b, start, &sent);
    let bodies: Vec<Bytes> = got
        .iter()
        .filter_map(|g| match g {
            FromFarEnd::Media(m) => Some(m.to_message(0).payload),
            _ => None,
        })
        .collect();
    let expected: Vec<Bytes> = sent.iter().map(|m| m.payload.clone()).collect();
    assert_eq!(bodies, expected);
}

#[test]
fn a_dtmf_digit_arrives_once() {
    let (mut a, mut b, start) = bridges(Some(CodecToken::Pcmu), None);
    assert!(a.send_dtmf(start, '7'));
    let mut got = Vec::new();
    let mut now = start;
    while let Some(t) = a
        .poll_timeout()
        .filter(|t| *t <= start + Duration::from_secs(2))
    {
        now = now.max(t);
        let mut rtp = Vec::new();
        a.poll(now, &mut rtp, &mut Vec::new());
        // RTCP reports go to B too; only the digits matter here.
        deliver(&mut b, now, &mut rtp, &mut got);
    }
    let digits: Vec<char> = got
        .iter()
        .filter_map(|g| match g {
            FromFarEnd::Dtmf(d) => Some(*d),
            _ => None,
        })
        .collect();
    assert_eq!(digits, vec!['7']);
}

/// Two bridges talk G.711 both ways for 20 s, RTCP taking 30 ms each way and every 50th of
/// B's RTP packets lost: each leg counts its packets and bytes, A counts B's losses, B hears
/// them from A's reports, and both measure the 60 ms round trip from the reports on their
/// sender reports.
#[test]
fn counters_loss_and_round_trip_come_out_of_the_media_and_rtcp() {
    let (mut a, mut b, start) = bridges(Some(CodecToken::Pcmu), None);
    let delay = Duration::from_millis(30);
    // RTCP in flight: (due, to A?, datagram).
    let mut flight: Vec<(Instant, bool, OutgoingRtp)> = Vec::new();
    let (mut lost, mut b_sent, mut got) = (0u64, 0u64, Vec::new());
    for i in 0..1000u32 {
        let now = start + Duration::from_millis(u64::from(i) * 20);
        let mut body = vec![0x82];
        body.extend((0..160).map(|j| (i as u8) ^ j as u8));
        let frame = RtmpMessage::new(type_id::AUDIO, 1, i * 20, body);
        let (mut from_a, mut from_b) = (Vec::new(), Vec::new());
        a.from_client(now, &frame, &mut from_a);
        b.from_client(now, &frame, &mut from_b);
        a.poll(now, &mut from_a, &mut Vec::new());
        b.poll(now, &mut from_b, &mut Vec::new());
        for (to_a, out) in [(false, from_a), (true, from_b)] {
            for d in out {
                if d.rtcp {
                    flight.push((now + delay, to_a, d));
                } else if to_a {
                    b_sent += 1;
                    if b_sent % 50 == 25 {
                        lost += 1;
                    } else {
                        deliver(&mut a, now, &mut vec![d], &mut got);
                    }
                } else {
                    deliver(&mut b, now, &mut vec![d], &mut got);
                }
            }
        }
        let (due, later): (Vec<_>, Vec<_>) = flight.drain(..).partition(|(at, _, _)| *at <= now);
        flight = later;
        for (at, to_a, d) in due {
            let target = if to_a { &mut a } else { &mut b };
            deliver(target, at, &mut vec![d], &mut got);
        }
    }
    let a_leg = a.leg_view(Leg::Audio).unwrap();
    let b_leg = b.leg_view(Leg::Audio).unwrap();
    assert_eq!(a_leg.counters.sent_packets, 1000);
    assert_eq!(a_leg.counters.sent_bytes, 1000 * (12 + 160));
    assert_eq!(a_leg.counters.received_packets, 1000 - lost);
    assert_eq!(b_leg.counters.received_packets, 1000);
    assert_eq!(a_leg.quality.lost, lost as i64, "A counts what never came");
    assert_eq!(b_leg.quality.lost, 0);
    // B hears A's count as of A's last report (reports go every few seconds).
    let far = b_leg.quality.far_lost.expect("A reported");
    assert!(
        (lost as i64 - 3..=lost as i64).contains(&far),
        "{far} of {lost}"
    );
    assert_eq!(a_leg.quality.far_lost, Some(0));
    for leg in [a_leg, b_leg] {
        let rtt = leg.quality.round_trip.expect("a report on a sender report");
        assert!(
            (Duration::from_millis(55)..=Duration::from_millis(65)).contains(&rtt),
            "{rtt:?}"
        );
        assert!(leg.quality.far_jitter.is_some());
    }
}

/// A digit goes out at the negotiated telephone-event's clock (RFC 4733 section 2.1): with its
/// payload type, its durations counted in that clock's units (160 ms: 1280 at 8 kHz, 2560 at
/// 16 kHz, 7680 at 48 kHz), and its timestamp where the audio stream it goes with is.
#[test]
fn a_dtmf_digit_counts_in_the_telephone_events_clock() {
    let opus = [&opus::CODED_FRAMES_HEADER[..], &[0x78, 1, 2, 3]].concat();
    for (codec, body, te_pt, rate) in [
        (
            CodecToken::Pcmu,
            [&[0x82][..], &[0x55; 160]].concat(),
            101,
            8000,
        ),
        (
            CodecToken::Wideband,
            [&[0xb2][..], &[0x1f; 60]].concat(),
            100,
            16000,
        ),
        (CodecToken::Opus, opus, 110, 48000),
    ] {
        let mut s = setup(Some(codec), None, 6000);
        s.dtmf = Some(DtmfSetup {
            send_pt: te_pt,
            receive_pt: te_pt,
            clock_rate: rate,
        });
        let start = Instant::now();
        let mut a = MediaBridge::new(
            &s,
            "a@gw",
            &mut SeededRng::new(5),
            start,
            Default::default(),
        )
        .unwrap();
        let mut out = Vec::new();
        // One second of audio, 20 ms a frame.
        for i in 0..50u32 {
            let msg = RtmpMessage::new(8, 1, 20 * i, Bytes::from(body.clone()));
            let now = start + Duration::from_millis(u64::from(20 * i));
            a.from_client(now, &msg, &mut out);
        }
        let packets = |out: &[OutgoingRtp]| -> Vec<RtpPacket> {
            out.iter()
                .filter(|o| !o.rtcp)
                .map(|o| RtpPacket::parse(o.datagram.to_bytes()).unwrap())
                .collect()
        };
        let audio = packets(&out);
        assert_eq!(audio.len(), 50, "{codec:?}");
        let last = audio[49].timestamp;
        assert_eq!(last.wrapping_sub(audio[0].timestamp), 980 * rate / 1000);
        let now = start + Duration::from_millis(1000);
        assert!(a.send_dtmf(now, '4'));
        let mut sent = Vec::new();
        while let Some(t) = a
            .poll_timeout()
            .filter(|t| *t <= now + Duration::from_secs(1))
        {
            a.poll(t.max(now), &mut sent, &mut Vec::new());
        }
        let events: Vec<RtpPacket> = packets(&sent)
            .into_iter()
            .filter(|p| p.payload_type == te_pt)
            .collect();
        assert!(events.len() >= 4, "{codec:?}: {} packets", events.len());
        assert!(events.iter().all(|p| p.timestamp == last), "{codec:?}");
        let payloads: Vec<EventPayload> = events
            .iter()
            .map(|p| EventPayload::parse(&p.payload).unwrap())
            .collect();
        assert!(payloads.iter().all(|e| e.event == 4));
        let ends: Vec<u16> = payloads
            .iter()
            .filter(|e| e.end)
            .map(|e| e.duration)
            .collect();
        let full = (160 * rate / 1000) as u16;
        assert_eq!(ends, [full; 3], "{codec:?}");
        // The updates count up in the same units, 50 ms at a time.
        let step = (50 * rate / 1000) as u16;
        assert_eq!(
            (payloads[0].duration, payloads[1].duration),
            (step, 2 * step),
            "{codec:?}"
        );
    }
}
