//! A gateway client's calls end to end in memory and virtual time: the gateway session on one
//! side, a SIP user agent with an RTP echo as the far end, datagrams carried between them.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use bytes::Bytes;
use siprtmp_core::gateway::call_session::{
    GatewayConfig, GatewayOutput, GatewaySession, MediaPorts, SessionSockets,
};
use siprtmp_core::gateway::client_api::{ClientCall, ClientCallback, ConnectRequest};
use siprtmp_core::gateway::codecs::CodecToken;
use siprtmp_core::gateway::media_bridge::{FromFarEnd, OutgoingRtp};
use siprtmp_core::media::g711;
use siprtmp_core::media::opus;
use siprtmp_core::media::transcode::{OpusCodec, OpusCodecs, SpeexBand, SpeexCodec, SpeexCodecs};
use siprtmp_core::rtmp::message::{type_id, RtmpMessage};
use siprtmp_core::rtp::RtpPacket;
use siprtmp_core::sdp::offer_answer::{answer, create_offer, reoffer};
use siprtmp_core::sdp::{Codec, LocalCapabilities, MediaCapability, Origin, SessionDescription};
use siprtmp_core::sip::ua::{CallId, UaConfig, UaEvent, UserAgent};
use siprtmp_core::sip::Uri;

const GW_SIP: &str = "10.0.0.1:5060";
const FAR_SIP: &str = "10.0.0.2:5060";
const FAR_RTP: &str = "10.0.0.2:6000";

fn a(s: &str) -> SocketAddr {
    s.parse().unwrap()
}

fn far_caps(codecs: Vec<Codec>) -> LocalCapabilities {
    LocalCapabilities {
        address: a(FAR_RTP).ip(),
        session_name: "far".into(),
        media: vec![MediaCapability::new("audio", a(FAR_RTP).port(), codecs)],
    }
}

fn origin(version: u64) -> Origin {
    Origin {
        username: "-".into(),
        session_id: 42,
        session_version: version,
        nettype: "IN".into(),
        addrtype: "IP4".into(),
        address: "10.0.0.2".into(),
    }
}

fn pcmu_dtmf() -> Vec<Codec> {
    vec![
        Codec::new(0, "PCMU", 8000, None),
        Codec::new(101, "telephone-event", 8000, None).with_param("0-15", None),
    ]
}

/// The gateway session, the far-end UA, and what each side saw.
struct Call {
    now: Instant,
    gw: GatewaySession,
    far: UserAgent,
    callbacks: Vec<ClientCallback>,
    connect: Vec<Result<(), String>>,
    remote_media: Vec<RtmpMessage>,
    far_events: Vec<UaEvent>,
    /// RTP packets the far end received (it echoes each one back).
    far_rtp: Vec<RtpPacket>,
    echo: bool,
}

impl Call {
    fn new() -> Self {
        Self::with_config(GatewayConfig::default())
    }

    fn with_config(config: GatewayConfig) -> Self {
        let now = Instant::now();
        let request = ConnectRequest::parse("sip/alice@10.0.0.1", &[]).unwrap();
        let sockets = SessionSockets {
            sip: a(GW_SIP),
            media: Some(MediaPorts {
                audio: 4000,
                video: 4002,
            }),
        };
        let gw = GatewaySession::new(now, &request, config, sockets, 1).unwrap();
        let far_config = UaConfig::new("sip:bob@10.0.0.2".parse().unwrap(), a(FAR_SIP));
        let mut call = Self {
            now,
            gw,
            far: UserAgent::new(far_config, 2),
            callbacks: Vec::new(),
            connect: Vec::new(),
            remote_media: Vec::new(),
            far_events: Vec::new(),
            far_rtp: Vec::new(),
            echo: true,
        };
        call.pump();
        call
    }

    /// The client publishes `msg` on `local`: its RTP goes to the far end.
    fn client_media(&mut self, msg: &RtmpMessage) {
        let mut rtp = Vec::new();
        self.gw.client_media(self.now, msg, &mut rtp);
        for datagram in rtp {
            self.far_end_rtp(datagram);
        }
    }

    /// An RTP datagram for the far end, which echoes it back (when `echo`): what comes of it
    /// for the client is kept.
    fn far_end_rtp(&mut self, rtp: OutgoingRtp) {
        if rtp.rtcp || rtp.destination != a(FAR_RTP) {
            return;
        }
        let bytes = rtp.datagram.to_bytes();
        self.far_rtp.push(RtpPacket::parse(bytes.clone()).unwrap());
        if !self.echo {
            return;
        }
        let mut back = Vec::new();
        self.gw
            .rtp_datagram(self.now, rtp.leg, false, a(FAR_RTP), bytes, &mut back);
        for item in back {
            match item {
                FromFarEnd::Media(m) => self.remote_media.push(m.to_message(0)),
                FromFarEnd::Dtmf(d) => self.callbacks.push(ClientCallback::Dtmf(d)),
            }
        }
    }

    /// Carries everything both ways until quiet.
    fn pump(&mut self) {
        for _ in 0..1000 {
            let mut moved = false;
            while let Some(out) = self.gw.poll_output() {
                moved = true;
                match out {
                    GatewayOutput::ConnectResult(r) => self.connect.push(r),
                    GatewayOutput::Callback(cb) => self.callbacks.push(cb),
                    GatewayOutput::RemoteMedia(m) => self.remote_media.push(m.to_message(0)),
                    GatewayOutput::SipSend { destination, data } => {
                        assert_eq!(destination, a(FAR_SIP));
                        self.far.handle_datagram(self.now, a(GW_SIP), data);
                    }
                    GatewayOutput::Rtp(rtp) => self.far_end_rtp(rtp),
                    GatewayOutput::Notice(_) => {}
                }
            }
            while let Some((destination, data)) = self.far.poll_transmit() {
                moved = true;
                assert_eq!(destination, a(GW_SIP));
                self.gw.sip_datagram(self.now, a(FAR_SIP), data);
            }
            while let Some(event) = self.far.poll_event() {
                moved = true;
                self.far_events.push(event);
            }
            if !moved {
                return;
            }
        }
        panic!("no quiet");
    }

    fn advance(&mut self, by: Duration) {
        let end = self.now + by;
        loop {
            let next = [self.gw.poll_timeout(), self.far.poll_timeout()]
                .into_iter()
                .flatten()
                .min()
                .filter(|t| *t <= end);
            let Some(t) = next else { break };
            self.now = self.now.max(t);
            self.gw.handle_timeout(self.now);
            self.far.handle_timeout(self.now);
            self.pump();
        }
        self.now = end;
    }

    fn client(&mut self, call: ClientCall) {
        self.gw.client_call(self.now, call);
        self.pump();
    }

    fn far_incoming(&self) -> Option<(CallId, Bytes)> {
        self.far_events.iter().find_map(|e| match e {
            UaEvent::IncomingCall { call, offer, .. } => Some((*call, offer.clone().unwrap())),
            _ => None,
        })
    }

    /// The client calls bob; bob answers PCMU + telephone-event.
    fn outgoing_established(&mut self) -> CallId {
        self.client(ClientCall::Invite {
            dest: "bob@10.0.0.2:5060".into(),
            codecs: vec![CodecToken::Pcmu, CodecToken::Dtmf],
        });
        let (call, offer) = self.far_incoming().expect("far end got the INVITE");
        let offer = SessionDescription::parse(&offer).unwrap();
        self.far.ringing(self.now, call).unwrap();
        self.pump();
        let ans = answer(&offer, &far_caps(pcmu_dtmf()), &origin(1)).unwrap();
        self.far
            .answer(self.now, call, Bytes::from(ans.serialize()))
            .unwrap();
        self.pump();
        call
    }
}

fn pcmu_frames(n: u32) -> Vec<RtmpMessage> {
    (0..n)
        .map(|i| {
            let mut body = vec![0x82];
            body.extend((0..160).map(|j| (i as u8) ^ (j as u8)));
            RtmpMessage::new(type_id::AUDIO, 1, i * 20, body)
        })
        .collect()
}

#[test]
fn connect_without_a_password_succeeds_at_once() {
    let call = Call::new();
    assert_eq!(call.connect, vec![Ok(())]);
}

#[test]
fn an_outgoing_call_rings_connects_carries_media_and_ends() {
    let mut c = Call::new();
    let far_call = c.outgoing_established();
    assert_eq!(
        c.callbacks[0],
        ClientCallback::Ringing("180 Ringing".into())
    );
    assert_eq!(
        c.callbacks[1],
        ClientCallback::Accepted {
            codecs: Some((Some(CodecToken::Pcmu), None))
        }
    );
    // The client publishes 2 s of G.711 on `local`; the far end echoes every RTP packet.
    let frames = pcmu_frames(100);
    for f in &frames {
        c.now += Duration::from_millis(20);
        c.client_media(f);
        c.pump();
    }
    assert_eq!(c.far_rtp.len(), 100);
    assert!(c.far_rtp.iter().all(|p| p.payload_type == 0));
    // RTP timestamps follow the RTMP ones: 160 samples per 20 ms frame.
    let step = c.far_rtp[1].timestamp.wrapping_sub(c.far_rtp[0].timestamp);
    assert_eq!(step, 160);
    assert_eq!(
        c.remote_media.len(),
        100,
        "every echoed frame reaches `remote`"
    );
    for (sent, got) in frames.iter().zip(&c.remote_media) {
        assert_eq!(
            got.payload, sent.payload,
            "G.711 byte for byte, 0x82 header"
        );
    }
    c.client(ClientCall::Bye);
    assert!(c.far_events.contains(&UaEvent::Ended { call: far_call }));
}

#[test]
fn an_incoming_call_is_offered_to_the_client_and_answered_with_its_codecs() {
    let mut c = Call::new();
    let offer = create_offer(&far_caps(pcmu_dtmf()), &origin(1));
    let target = Uri::parse("sip:alice@10.0.0.1:5060").unwrap();
    let far_call = c
        .far
        .invite(c.now, target, Bytes::from(offer.serialize()))
        .unwrap();
    c.pump();
    assert!(
        matches!(&c.callbacks[..], [ClientCallback::Invited { .. }]),
        "{:?}",
        c.callbacks
    );
    assert!(
        c.far_events.contains(&UaEvent::Ringing { call: far_call }),
        "180 Ringing sent"
    );
    c.client(ClientCall::Accept {
        codecs: vec![CodecToken::Pcmu, CodecToken::Dtmf],
    });
    assert!(c
        .far_events
        .iter()
        .any(|e| matches!(e, UaEvent::Answered { call, .. } if *call == far_call)));
    // DTMF from the client reaches the far end as RFC 4733 events, and echoed back, the
    // client gets a dtmf callback once.
    c.client(ClientCall::SendDtmf('5'));
    c.advance(Duration::from_millis(500));
    assert!(c
        .far_rtp
        .iter()
        .any(|p| p.payload_type == 101 && p.payload[0] == 5));
    assert_eq!(
        c.callbacks
            .iter()
            .filter(|cb| **cb == ClientCallback::Dtmf('5'))
            .count(),
        1
    );
    // The far end hangs up: byed.
    c.far.hangup(c.now, far_call).unwrap();
    c.pump();
    assert_eq!(c.callbacks.last(), Some(&ClientCallback::Byed));
}

#[test]
fn an_offer_with_no_common_codec_is_refused_with_488_before_alerting() {
    let mut c = Call::new();
    let offer = create_offer(
        &far_caps(vec![Codec::new(111, "opus", 48000, Some(2))]),
        &origin(1),
    );
    let target = Uri::parse("sip:alice@10.0.0.1:5060").unwrap();
    let far_call = c
        .far
        .invite(c.now, target, Bytes::from(offer.serialize()))
        .unwrap();
    c.pump();
    assert!(c.callbacks.is_empty(), "the client is never told");
    assert!(c
        .far_events
        .iter()
        .any(|e| matches!(e, UaEvent::Rejected { call, status: 488, .. } if *call == far_call)));
}

#[test]
fn the_client_leaving_cancels_a_ringing_call() {
    let mut c = Call::new();
    c.client(ClientCall::Invite {
        dest: "sip:bob@10.0.0.2:5060".into(),
        codecs: vec![],
    });
    let (far_call, offer) = c.far_incoming().unwrap();
    // The legacy offer: Speex 16 kHz, telephone-event, x-flv video.
    let offer = String::from_utf8(offer.to_vec()).unwrap();
    assert!(
        offer.contains("speex/16000") && offer.contains("x-flv/1000"),
        "{offer}"
    );
    c.far.ringing(c.now, far_call).unwrap();
    c.pump();
    c.gw.close(c.now);
    c.pump();
    assert!(c
        .far_events
        .contains(&UaEvent::Cancelled { call: far_call }));
}

#[test]
fn the_far_end_holding_and_resuming_is_reported() {
    let mut c = Call::new();
    let far_call = c.outgoing_established();
    let local = create_offer(&far_caps(pcmu_dtmf()), &origin(2));
    let hold = reoffer(&local, true);
    c.far
        .reinvite(c.now, far_call, Bytes::from(hold.serialize()))
        .unwrap();
    c.pump();
    assert_eq!(c.callbacks.last(), Some(&ClientCallback::Holded(true)));
    // On hold the gateway does not send the client's media.
    let before = c.far_rtp.len();
    c.client_media(&pcmu_frames(1)[0]);
    c.pump();
    assert_eq!(c.far_rtp.len(), before);
    let resume = reoffer(&hold, false);
    c.far
        .reinvite(c.now, far_call, Bytes::from(resume.serialize()))
        .unwrap();
    c.pump();
    assert_eq!(c.callbacks.last(), Some(&ClientCallback::Holded(false)));
    c.client_media(&pcmu_frames(1)[0]);
    c.pump();
    assert_eq!(c.far_rtp.len(), before + 1);
}

#[test]
fn a_busy_far_end_is_reported_as_rejected() {
    let mut c = Call::new();
    c.client(ClientCall::Invite {
        dest: "bob@10.0.0.2:5060".into(),
        codecs: vec![CodecToken::Pcmu],
    });
    let (far_call, _) = c.far_incoming().unwrap();
    c.far.reject(c.now, far_call, 486, "Busy Here").unwrap();
    c.pump();
    assert_eq!(
        c.callbacks.last(),
        Some(&ClientCallback::Rejected("486 Busy Here".into()))
    );
}

#[test]
fn a_failed_registration_refresh_is_reported_to_the_client() {
    use siprtmp_core::sip::{make_response, parse_datagram, SipMessage};
    let mut now = Instant::now();
    let request = ConnectRequest::parse(
        "sip/alice@10.0.0.1",
        &[
            siprtmp_core::amf::Value::string("alice"),
            siprtmp_core::amf::Value::string("secret"),
        ],
    )
    .unwrap();
    let config = GatewayConfig {
        registrar: Some(a(FAR_SIP)),
        register_expires: 60,
        ..GatewayConfig::default()
    };
    let sockets = SessionSockets {
        sip: a(GW_SIP),
        media: Some(MediaPorts {
            audio: 4000,
            video: 4002,
        }),
    };
    let mut gw = GatewaySession::new(now, &request, config, sockets, 1).unwrap();
    let mut outputs = Vec::new();
    let drain = |gw: &mut GatewaySession, outputs: &mut Vec<GatewayOutput>| {
        while let Some(o) = gw.poll_output() {
            outputs.push(o);
        }
    };
    drain(&mut gw, &mut outputs);
    // The registrar accepts the first REGISTER for 60 s.
    let register = outputs
        .iter()
        .find_map(|o| match o {
            GatewayOutput::SipSend { data, .. } => Some(data.clone()),
            _ => None,
        })
        .expect("REGISTER sent");
    let SipMessage::Request(register) = parse_datagram(&register).unwrap() else {
        panic!("not a request");
    };
    let mut ok = make_response(&register, 200, "OK", Some("reg1"));
    ok.headers.push("Expires", "60");
    gw.sip_datagram(now, a(FAR_SIP), SipMessage::Response(ok).to_bytes());
    outputs.clear();
    drain(&mut gw, &mut outputs);
    assert!(outputs.contains(&GatewayOutput::ConnectResult(Ok(()))));
    // Then it goes silent: the refresh times out and the client hears about it.
    let end = now + Duration::from_secs(120);
    while let Some(t) = gw.poll_timeout().filter(|t| *t <= end) {
        now = now.max(t);
        gw.handle_timeout(now);
        drain(&mut gw, &mut outputs);
    }
    let lost = outputs.iter().find_map(|o| match o {
        GatewayOutput::Callback(ClientCallback::RegistrationFailed(r)) => Some(r.clone()),
        _ => None,
    });
    assert_eq!(lost.as_deref(), Some("408 Request Timeout"), "{outputs:?}");
}

/// A stand-in Speex codec: a "packet" is valid Speex framing (one mode-0 narrowband frame,
/// "0 0000", then the terminator "0 1111") followed by the frame's samples, big-endian, so
/// the gateway's framing check passes and the audio is carried exactly.
#[derive(Debug)]
struct PlainSpeex;

const FRAMING: [u8; 2] = [0b0000_0011, 0b1100_0000];

struct PlainCodec(usize);

impl SpeexCodec for PlainCodec {
    fn decode(&mut self, packet: &[u8], _frames: usize, pcm: &mut Vec<i16>) -> usize {
        match packet.get(2..) {
            Some(body) if body.len() == 2 * self.0 => {
                pcm.extend(
                    body.chunks_exact(2)
                        .map(|b| i16::from_be_bytes([b[0], b[1]])),
                );
                1
            }
            _ => 0,
        }
    }

    fn encode(&mut self, frame: &[i16], out: &mut Vec<u8>) {
        out.extend_from_slice(&FRAMING);
        out.extend(frame.iter().flat_map(|s| s.to_be_bytes()));
    }
}

impl SpeexCodecs for PlainSpeex {
    fn open(&self, band: SpeexBand) -> Option<Box<dyn SpeexCodec>> {
        Some(Box::new(PlainCodec(band.frame_samples())))
    }
}

fn transcoding() -> GatewayConfig {
    GatewayConfig {
        transcoder: Some(std::sync::Arc::new(PlainSpeex)),
        ..GatewayConfig::default()
    }
}

/// The client's "Speex wideband" frame `i`: a constant level, different per frame.
fn speex_frame(i: u32) -> RtmpMessage {
    let mut body = vec![0xB2];
    PlainCodec(320).encode(&[(i as i16 - 50) * 200; 320], &mut body);
    RtmpMessage::new(type_id::AUDIO, 1, i * 20, body)
}

/// The client (legacy Speex wideband, telephone-event) calls bob, who speaks only PCMU and
/// answers if he can, else refuses with 488 as a phone would.
fn call_a_g711_only_phone(c: &mut Call) -> CallId {
    c.client(ClientCall::Invite {
        dest: "bob@10.0.0.2:5060".into(),
        codecs: vec![CodecToken::Wideband, CodecToken::Dtmf],
    });
    let (call, offer) = c.far_incoming().expect("far end got the INVITE");
    let offer = SessionDescription::parse(&offer).unwrap();
    match answer(&offer, &far_caps(pcmu_dtmf()), &origin(1)) {
        Ok(ans) => c
            .far
            .answer(c.now, call, Bytes::from(ans.serialize()))
            .unwrap(),
        Err(_) => c
            .far
            .reject(c.now, call, 488, "Not Acceptable Here")
            .unwrap(),
    }
    c.pump();
    call
}

#[test]
fn without_a_transcoder_a_speex_client_calling_a_g711_phone_gets_488() {
    let mut c = Call::new();
    call_a_g711_only_phone(&mut c);
    assert_eq!(
        c.callbacks.last(),
        Some(&ClientCallback::Rejected("488 Not Acceptable Here".into()))
    );
}

#[test]
fn with_a_transcoder_a_speex_client_calling_a_g711_phone_is_transcoded_both_ways() {
    let mut c = Call::with_config(transcoding());
    call_a_g711_only_phone(&mut c);
    // The client is told its own codec: it keeps sending and receiving Speex.
    assert_eq!(
        c.callbacks.last(),
        Some(&ClientCallback::Accepted {
            codecs: Some((Some(CodecToken::Wideband), None))
        })
    );
    let frames: Vec<RtmpMessage> = (0..50).map(speex_frame).collect();
    for f in &frames {
        c.now += Duration::from_millis(20);
        c.client_media(f);
        c.pump();
    }
    // The far end gets PCMU at 8 kHz: 160 bytes per 20 ms, the level of each frame (after
    // the resampler's 1.5 ms delay settles) as mu-law.
    assert_eq!(c.far_rtp.len(), 50);
    assert!(c.far_rtp.iter().all(|p| p.payload_type == 0));
    assert!(c.far_rtp.iter().all(|p| p.payload.len() == 160));
    assert!(c.far_rtp[0].marker && !c.far_rtp[1].marker);
    let step = c.far_rtp[1].timestamp.wrapping_sub(c.far_rtp[0].timestamp);
    assert_eq!(step, 160);
    for (i, p) in c.far_rtp.iter().enumerate() {
        let level = (i as i16 - 50) * 200;
        let got = g711::ulaw_to_linear(p.payload[100]);
        assert!(
            (i32::from(got) - i32::from(level)).abs() <= i32::from(level).abs() / 16 + 8,
            "frame {i}: {got} for {level}"
        );
    }
    // Echoed back, it reaches the client as Speex (0xB2) frames of the same levels.
    assert_eq!(c.remote_media.len(), 50);
    for (i, m) in c.remote_media.iter().enumerate() {
        assert_eq!(m.payload[0], 0xB2);
        assert_eq!(&m.payload[1..3], &FRAMING);
        let mut pcm = Vec::new();
        PlainCodec(320).decode(&m.payload[1..], 1, &mut pcm);
        let level = i32::from((i as i16 - 50) * 200);
        let got = i32::from(pcm[200]);
        assert!(
            (got - level).abs() <= level.abs() / 8 + 16,
            "frame {i}: {got} for {level}"
        );
    }
}

#[test]
fn a_far_end_that_shares_speex_is_passed_through_even_with_a_transcoder() {
    let mut c = Call::with_config(transcoding());
    c.client(ClientCall::Invite {
        dest: "bob@10.0.0.2:5060".into(),
        codecs: vec![CodecToken::Wideband, CodecToken::Dtmf],
    });
    let (call, offer) = c.far_incoming().unwrap();
    let text = String::from_utf8(offer.to_vec()).unwrap();
    assert!(
        text.contains("m=audio 4000 RTP/AVP 96 0 8 100 101\r\n"),
        "{text}"
    );
    let offer = SessionDescription::parse(&offer).unwrap();
    // Bob speaks both; he answers in our order of preference: Speex.
    let mut codecs = vec![Codec::new(96, "speex", 16000, None)];
    codecs.extend(pcmu_dtmf());
    let ans = answer(&offer, &far_caps(codecs), &origin(1)).unwrap();
    c.far
        .answer(c.now, call, Bytes::from(ans.serialize()))
        .unwrap();
    c.pump();
    let f = speex_frame(7);
    c.now += Duration::from_millis(20);
    c.client_media(&f);
    c.pump();
    assert_eq!(c.far_rtp[0].payload_type, 96);
    assert_eq!(&c.far_rtp[0].payload[..], &f.payload[1..], "byte for byte");
}

#[test]
fn an_incoming_g711_call_is_accepted_by_a_speex_client_only_with_a_transcoder() {
    for (config, accepted) in [(GatewayConfig::default(), false), (transcoding(), true)] {
        let mut c = Call::with_config(config);
        let offer = create_offer(&far_caps(pcmu_dtmf()), &origin(1));
        let target = Uri::parse("sip:alice@10.0.0.1:5060").unwrap();
        let far_call = c
            .far
            .invite(c.now, target, Bytes::from(offer.serialize()))
            .unwrap();
        c.pump();
        // The client accepts with the legacy set: Speex only.
        c.client(ClientCall::Accept { codecs: vec![] });
        let answered = c
            .far_events
            .iter()
            .any(|e| matches!(e, UaEvent::Answered { call, .. } if *call == far_call));
        let refused = c
            .far_events
            .iter()
            .any(|e| matches!(e, UaEvent::Rejected { call, status: 488, .. } if *call == far_call));
        assert_eq!((answered, refused), (accepted, !accepted));
    }
}

/// A stand-in Opus codec: a "packet" is the frame's 960 samples at 48 kHz, each as one byte
/// (the sample / 64, so a level of a few thousand survives), so the audio is carried closely.
#[derive(Debug)]
struct PlainOpus;

struct PlainOpusCodec;

impl OpusCodec for PlainOpusCodec {
    fn decode(&mut self, packet: &[u8], pcm: &mut Vec<i16>) -> usize {
        pcm.extend(packet.iter().map(|&b| i16::from(b as i8) * 64));
        packet.len()
    }

    fn encode(&mut self, frame: &[i16], out: &mut Vec<u8>) {
        assert_eq!(frame.len(), opus::FRAME_SAMPLES);
        out.extend(frame.iter().map(|&s| (s / 64) as i8 as u8));
    }
}

impl OpusCodecs for PlainOpus {
    fn open(&self) -> Option<Box<dyn OpusCodec>> {
        Some(Box::new(PlainOpusCodec))
    }
}

fn opus_transcoding(speex: bool) -> GatewayConfig {
    GatewayConfig {
        transcoder: speex.then(|| std::sync::Arc::new(PlainSpeex) as _),
        opus: Some(std::sync::Arc::new(PlainOpus)),
        ..GatewayConfig::default()
    }
}

/// The client's Opus frame `i` as an enhanced-RTMP message: 20 ms at a level per frame.
fn opus_frame(i: u32) -> RtmpMessage {
    let mut body = opus::CODED_FRAMES_HEADER.to_vec();
    PlainOpusCodec.encode(&[(i as i16 - 25) * 200; 960], &mut body);
    RtmpMessage::new(type_id::AUDIO, 1, i * 20, body)
}

/// The client (tokens `opus`, `dtmf`) calls bob, who answers with what `codecs` and our offer
/// share, or 488; returns our offer's audio m-line.
fn opus_client_calls(c: &mut Call, codecs: Vec<Codec>) -> String {
    c.client(ClientCall::Invite {
        dest: "bob@10.0.0.2:5060".into(),
        codecs: vec![CodecToken::Opus, CodecToken::Dtmf],
    });
    let (call, offer) = c.far_incoming().expect("far end got the INVITE");
    let text = String::from_utf8(offer.to_vec()).unwrap();
    let offer = SessionDescription::parse(&offer).unwrap();
    match answer(&offer, &far_caps(codecs), &origin(1)) {
        Ok(ans) => c
            .far
            .answer(c.now, call, Bytes::from(ans.serialize()))
            .unwrap(),
        Err(_) => c
            .far
            .reject(c.now, call, 488, "Not Acceptable Here")
            .unwrap(),
    }
    c.pump();
    text.lines()
        .find(|l| l.starts_with("m=audio"))
        .unwrap()
        .to_owned()
}

#[test]
fn an_opus_client_offers_what_it_can_be_transcoded_to_after_opus() {
    for (config, line) in [
        (GatewayConfig::default(), "m=audio 4000 RTP/AVP 111 110 101"),
        (
            opus_transcoding(false),
            "m=audio 4000 RTP/AVP 111 0 8 110 101",
        ),
        (
            opus_transcoding(true),
            "m=audio 4000 RTP/AVP 111 96 0 8 98 110 100 101",
        ),
    ] {
        let mut c = Call::with_config(config);
        assert_eq!(opus_client_calls(&mut c, pcmu_dtmf()), line);
    }
}

#[test]
fn an_opus_client_calling_a_g711_phone_is_transcoded_both_ways() {
    let mut c = Call::with_config(opus_transcoding(true));
    opus_client_calls(&mut c, pcmu_dtmf());
    // The client is told its own codec: it keeps sending and hearing Opus.
    assert_eq!(
        c.callbacks.last(),
        Some(&ClientCallback::Accepted {
            codecs: Some((Some(CodecToken::Opus), None))
        })
    );
    // What ffmpeg sends before the frames carries no audio: nothing goes out for it.
    let start = opus::sequence_start(0, 1).to_message(1);
    c.client_media(&start);
    assert!(c.far_rtp.is_empty());
    for i in 0..50 {
        c.now += Duration::from_millis(20);
        c.client_media(&opus_frame(i));
        c.pump();
    }
    // The far end gets PCMU: 160 bytes per 20 ms at 8 kHz, timestamps 160 apart, the level
    // of each frame (past the resampler's delay).
    assert_eq!(c.far_rtp.len(), 50);
    assert!(c.far_rtp.iter().all(|p| p.payload_type == 0));
    assert!(c.far_rtp.iter().all(|p| p.payload.len() == 160));
    assert!(c.far_rtp[0].marker && !c.far_rtp[1].marker);
    for (i, p) in c.far_rtp.iter().enumerate() {
        assert_eq!(
            p.timestamp.wrapping_sub(c.far_rtp[0].timestamp),
            160 * i as u32
        );
        let level = i32::from((i as i16 - 25) * 200);
        let got = i32::from(g711::ulaw_to_linear(p.payload[100]));
        assert!(
            (got - level).abs() <= level.abs() / 16 + 80,
            "frame {i}: {got} for {level}"
        );
    }
    // Echoed back, it reaches the client as the Opus sequence start, then one Opus frame per
    // 20 ms of the same levels.
    assert_eq!(c.remote_media.len(), 51);
    let head = &c.remote_media[0].payload;
    assert_eq!(head[..], *opus::sequence_start(0, 1).to_message(1).payload);
    for (i, m) in c.remote_media[1..].iter().enumerate() {
        assert_eq!(m.payload[..5], opus::CODED_FRAMES_HEADER);
        assert_eq!(m.payload.len(), 5 + 960);
        assert_eq!(
            m.timestamp.wrapping_sub(c.remote_media[1].timestamp),
            20 * i as u32
        );
        let level = i32::from((i as i16 - 25) * 200);
        let got = i32::from(m.payload[5 + 600] as i8) * 64;
        assert!(
            (got - level).abs() <= level.abs() / 8 + 160,
            "frame {i}: {got} for {level}"
        );
    }
}

#[test]
fn an_opus_client_calling_a_speex_only_phone_is_transcoded_to_speex() {
    let mut c = Call::with_config(opus_transcoding(true));
    opus_client_calls(&mut c, vec![Codec::new(96, "speex", 16000, None)]);
    assert_eq!(
        c.callbacks.last(),
        Some(&ClientCallback::Accepted {
            codecs: Some((Some(CodecToken::Opus), None))
        })
    );
    for i in 0..10 {
        c.now += Duration::from_millis(20);
        c.client_media(&opus_frame(i));
        c.pump();
    }
    // One Speex wideband frame per Opus frame, on the 16 kHz clock.
    assert_eq!(c.far_rtp.len(), 10);
    assert!(c.far_rtp.iter().all(|p| p.payload_type == 96));
    assert!(c.far_rtp.iter().all(|p| p.payload[..2] == FRAMING));
    assert_eq!(
        c.far_rtp[1].timestamp.wrapping_sub(c.far_rtp[0].timestamp),
        320
    );
    assert_eq!(
        c.remote_media.len(),
        11,
        "the sequence start and ten frames"
    );
}

#[test]
fn without_an_opus_codec_an_opus_client_calling_a_g711_phone_gets_488() {
    let mut c = Call::with_config(GatewayConfig {
        transcoder: Some(std::sync::Arc::new(PlainSpeex)),
        ..GatewayConfig::default()
    });
    opus_client_calls(&mut c, pcmu_dtmf());
    assert_eq!(
        c.callbacks.last(),
        Some(&ClientCallback::Rejected("488 Not Acceptable Here".into()))
    );
}

#[test]
fn opus_passes_through_to_a_far_end_that_speaks_it() {
    let mut c = Call::with_config(opus_transcoding(true));
    let mut codecs = vec![Codec::new(107, "opus", 48000, Some(2))];
    codecs.extend(pcmu_dtmf());
    opus_client_calls(&mut c, codecs);
    assert_eq!(
        c.callbacks.last(),
        Some(&ClientCallback::Accepted {
            codecs: Some((Some(CodecToken::Opus), None))
        })
    );
    let frames: Vec<RtmpMessage> = (0..5).map(opus_frame).collect();
    for f in &frames {
        c.now += Duration::from_millis(20);
        c.client_media(f);
        c.pump();
    }
    // Byte for byte, on the 48 kHz clock, with our offer's payload type (its answer keeps it).
    assert_eq!(c.far_rtp.len(), 5);
    for (p, f) in c.far_rtp.iter().zip(&frames) {
        assert_eq!(p.payload_type, 111);
        assert_eq!(p.payload[..], f.payload[5..]);
    }
    assert_eq!(
        c.far_rtp[1].timestamp.wrapping_sub(c.far_rtp[0].timestamp),
        960
    );
    // Back: a stereo sequence start (RFC 7587's streams may be stereo), then the frames as
    // they were sent.
    assert_eq!(c.remote_media.len(), 6);
    assert_eq!(
        c.remote_media[0].payload[..],
        *opus::sequence_start(0, 2).to_message(1).payload
    );
    for (m, f) in c.remote_media[1..].iter().zip(&frames) {
        assert_eq!(m.payload, f.payload);
    }
    // A new play of `remote` starts with the sequence start again.
    c.gw.remote_play_started(c.now);
    c.now += Duration::from_millis(20);
    c.client_media(&opus_frame(5));
    c.pump();
    assert_eq!(c.remote_media.len(), 8);
    assert_eq!(c.remote_media[6].payload[..5], opus::SEQUENCE_START_HEADER);
}

#[test]
fn an_incoming_g711_call_is_accepted_by_an_opus_client_only_with_an_opus_codec() {
    for (config, accepted) in [
        (opus_transcoding(false), true),
        (transcoding(), false),
        (GatewayConfig::default(), false),
    ] {
        let mut c = Call::with_config(config);
        let offer = create_offer(&far_caps(pcmu_dtmf()), &origin(1));
        let target = Uri::parse("sip:alice@10.0.0.1:5060").unwrap();
        let far_call = c
            .far
            .invite(c.now, target, Bytes::from(offer.serialize()))
            .unwrap();
        c.pump();
        c.client(ClientCall::Accept {
            codecs: vec![CodecToken::Opus, CodecToken::Dtmf],
        });
        let answered = c
            .far_events
            .iter()
            .any(|e| matches!(e, UaEvent::Answered { call, .. } if *call == far_call));
        assert_eq!(answered, accepted);
        if accepted {
            // The client hears and speaks Opus; the far end's PCMU reaches it as Opus.
            assert_eq!(
                c.callbacks.last(),
                Some(&ClientCallback::Accepted {
                    codecs: Some((Some(CodecToken::Opus), None))
                })
            );
            c.now += Duration::from_millis(20);
            c.client_media(&opus_frame(3));
            c.pump();
            assert_eq!(c.far_rtp.len(), 1);
            assert_eq!(c.far_rtp[0].payload_type, 0);
            assert_eq!(c.remote_media.len(), 2, "sequence start and frame");
        }
    }
}
