//! [`MediaBridge`]: one call's media, both ways, between the RTMP client's streams and the
//! far end's RTP: the client's `local` stream becomes RTP per the negotiated codecs, and RTP
//! from the far end becomes the messages of the client's `remote` stream.
//!
//! Audio: Speex wideband passes through (or loses its wideband layer for a narrowband peer),
//! G.711 and Opus pass through. Only when the far end does not speak the client's codec
//! ([`BridgeSetup::transcode`]: a Speex client and a G.711 far end, an Opus client and a
//! G.711 or Speex far end) is audio transcoded, by the call's own [`Transcoder`] with the
//! codecs the host provides ([`CodecLibraries`]). A client that hears Opus gets the Opus
//! sequence start before the first frame of each play. Video: H.264 per RFC 6184, or the
//! x-flv tunnel to another gateway.
//! Telephone-events (RFC 4733) go out from `sendDTMF` and come in as `dtmf` callbacks, at the
//! negotiated telephone-event's clock rate ([`DtmfSetup`]: the audio codec's when the far end
//! has it, else 8 kHz): a digit's duration is counted in that clock's units, and it starts at
//! the audio stream's current RTP timestamp (the two share the stream's clock when the rates
//! match, as RFC 4733 section 2.1 wants). RTP
//! timestamps come from the RTMP timestamps; RTMP timestamps on the way back are anchored at
//! the first packet. Each leg has its own RTP session (SSRC, sequence, RTCP reports).

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use bytes::Bytes;

use crate::media::audio::{RtmpToRtpAudio, RtpAudioCodec, RtpAudioFormat, RtpToRtmpAudio};
use crate::media::flv_tunnel::{FlvTunnelReceiver, FlvTunnelSender};
use crate::media::frame::MediaFrame;
use crate::media::h264_depacketizer::{H264Depacketizer, H264DepacketizerConfig};
use crate::media::h264_packetizer::{H264Packetizer, H264PacketizerConfig};
use crate::media::opus;
use crate::media::payload::RtpPayload;
use crate::media::timestamp::rtmp_to_rtp;
use crate::media::transcode::{
    ClientCodec, CodecLibraries, FarCodec, G711Law, SpeexBand, Transcoder,
};
use crate::rng::SeededRng;
use crate::rtmp::message::{type_id, RtmpMessage};
use crate::rtp::dtmf::{encode_digit, DtmfReceiver};
use crate::rtp::packet::RtpPacket;
use crate::rtp::rtcp::RtcpPacket;
use crate::rtp::session::{ReceiveOutcome, RtpDatagram, RtpSession, RtpSessionConfig};
use crate::rtp::source_filter::{SourceFilter, SourcePolicy, SourceVerdict};
use crate::sdp::SrtpKeys;

use super::codecs::CodecToken;
use super::srtp_leg::{LegSrtp, OpenError};
use super::stats::{
    Histogram, LegCounters, LegQuality, LegView, MediaTotals, JITTER_BOUNDS, RTT_BOUNDS,
};

/// Which media line a packet belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Leg {
    /// The audio m-line (and its telephone-events).
    Audio,
    /// The video m-line.
    Video,
}

/// One negotiated media line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LegSetup {
    /// The codec, as a client token.
    pub codec: CodecToken,
    /// Payload type we send with.
    pub send_pt: u8,
    /// Payload type we expect to receive.
    pub receive_pt: u8,
    /// Where the far end wants RTP (RTCP goes to the next port).
    pub remote: SocketAddr,
    /// The leg's SRTP keys, when SDES settled on SRTP for it: every RTP and RTCP packet is
    /// protected on the way out and must authenticate on the way in.
    pub srtp: Option<SrtpKeys>,
}

/// The negotiated telephone-event (RFC 4733) of the audio line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DtmfSetup {
    /// Payload type we send events with.
    pub send_pt: u8,
    /// Payload type we receive events with.
    pub receive_pt: u8,
    /// Its RTP clock rate: the unit of an event's duration.
    pub clock_rate: u32,
}

/// The negotiated call: which legs exist and how they are coded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BridgeSetup {
    /// The audio line, if accepted.
    pub audio: Option<LegSetup>,
    /// The telephone-event on the audio line, if negotiated.
    pub dtmf: Option<DtmfSetup>,
    /// The video line, if accepted.
    pub video: Option<LegSetup>,
    /// The RTP payload size limit for video.
    pub mtu: usize,
    /// Where the far end's media is accepted from besides the address its SDP gives (see
    /// [`crate::rtp::source_filter`]).
    pub source_policy: SourcePolicy,
    /// The client's codec when the audio leg's codec is not what the client sends: the
    /// bridge transcodes between the two. `None`: pass-through.
    pub transcode: Option<ClientCodec>,
}

/// A datagram for the driver to send from the leg's RTP (or RTCP) socket.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutgoingRtp {
    /// The leg whose socket sends it.
    pub leg: Leg,
    /// True for RTCP (sent to the remote port + 1).
    pub rtcp: bool,
    /// Destination.
    pub destination: SocketAddr,
    /// Header and payload (the payload shared with the RTMP message where possible).
    pub datagram: RtpDatagram,
}

enum VideoOut {
    H264(H264Packetizer),
    Tunnel(FlvTunnelSender),
}

enum VideoIn {
    H264(Box<H264Depacketizer>),
    Tunnel(FlvTunnelReceiver),
}

/// In the order written (see [`MediaBridge`]): what every packet reads or counts, in either
/// direction, first (the transcoder's and SRTP's pointers, the counters), so that with the
/// bridge's own flags before them they share the leg's first cache line with the start of
/// `setup`; then the translators and the session's per-packet fields, next to each other. Each
/// of those fields further down was a cache miss per packet with 300 calls (callgrind's cache
/// simulation on `benches/gateway_call.rs`).
/// The source check comes last: a packet from the latched source is told by the bridge's
/// `latched` flag and `setup.remote`, which it reads anyway.
#[repr(C)]
struct AudioLeg {
    /// The call's transcoder, when the client's codec is not the far end's.
    transcoder: Option<Box<Transcoder>>,
    /// SRTP, when the leg is secure.
    srtp: Option<Box<LegSrtp>>,
    /// What the leg's packets add up to.
    counters: LegCounters,
    /// Whether a transcoded packet went out yet (the first carries the marker bit).
    transcoded_started: bool,
    /// The client hears Opus: the channel count of its sequence start, and whether that is
    /// due before the next frame.
    opus_head: Option<(u8, bool)>,
    setup: LegSetup,
    out: RtmpToRtpAudio,
    back: RtpToRtmpAudio,
    session: RtpSession,
    source: SourceFilter,
}

struct VideoLeg {
    setup: LegSetup,
    session: RtpSession,
    counters: LegCounters,
    out: VideoOut,
    back: VideoIn,
    source: SourceFilter,
    srtp: Option<Box<LegSrtp>>,
}

/// Why a datagram from the far end was not used (see [`MediaBridge::from_far_end`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dropped {
    /// It came from an address that is not the leg's far end (see
    /// [`crate::rtp::source_filter`]).
    UnknownSource,
    /// It is not an RTP (or RTCP) packet.
    Undecodable,
    /// A payload type the call did not negotiate, or for a leg the call does not have.
    UnexpectedPayload,
    /// Its SSRC is not the stream the leg receives (a collision, a stale stream).
    UnexpectedSsrc,
    /// On an SRTP leg: its authentication tag is wrong (a wrong key, or altered on the way).
    SrtpAuthentication,
    /// On an SRTP leg: already received, or older than the replay window.
    SrtpReplay,
}

/// Datagrams from the far end a bridge did not use, by reason (see [`Dropped`]).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct DropCounts {
    /// From an address that is not the far end's.
    pub unknown_source: u64,
    /// Not RTP or RTCP.
    pub undecodable: u64,
    /// A payload type not negotiated, or a leg the call does not have.
    pub unexpected_payload: u64,
    /// An SSRC the leg does not receive.
    pub unexpected_ssrc: u64,
    /// SRTP or SRTCP that did not authenticate.
    pub srtp_auth: u64,
    /// SRTP or SRTCP replayed (or too old for the replay window).
    pub srtp_replay: u64,
}

impl DropCounts {
    /// Every datagram dropped, whatever the reason.
    pub fn total(&self) -> u64 {
        self.unknown_source
            + self.undecodable
            + self.unexpected_payload
            + self.unexpected_ssrc
            + self.srtp_auth
            + self.srtp_replay
    }

    /// Adds `other`'s counts.
    pub(crate) fn add(&mut self, other: &DropCounts) {
        self.unknown_source += other.unknown_source;
        self.undecodable += other.undecodable;
        self.unexpected_payload += other.unexpected_payload;
        self.unexpected_ssrc += other.unexpected_ssrc;
        self.srtp_auth += other.srtp_auth;
        self.srtp_replay += other.srtp_replay;
    }

    fn count(&mut self, reason: Dropped) {
        *match reason {
            Dropped::UnknownSource => &mut self.unknown_source,
            Dropped::Undecodable => &mut self.undecodable,
            Dropped::UnexpectedPayload => &mut self.unexpected_payload,
            Dropped::UnexpectedSsrc => &mut self.unexpected_ssrc,
            Dropped::SrtpAuthentication => &mut self.srtp_auth,
            Dropped::SrtpReplay => &mut self.srtp_replay,
        } += 1;
    }
}

/// What came back from the far end for the client.
#[derive(Debug, Clone, PartialEq)]
pub enum FromFarEnd {
    /// Media for the client's `remote` stream (the caller sets the stream): audio as the
    /// FLV header byte and the RTP payload itself, video as the assembled tag.
    Media(MediaFrame),
    /// A telephone-event digit.
    Dtmf(char),
}

/// One call's media translation. See the module documentation.
///
/// The fields are in the order written (`repr(C)`), those every audio packet touches first
/// (the flags, then the audio leg's translators and RTP session): a packet costs two or three
/// adjacent cache lines of the bridge rather than lines spread over its 800 bytes, each a
/// miss when hundreds of calls take turns. Keep it so when adding fields.
#[repr(C)]
pub struct MediaBridge {
    /// False while the far end holds the call (we must not send).
    sending: bool,
    /// Whether each leg has latched onto its far end's source (see
    /// [`crate::rtp::source_filter`]), which is then the leg's `setup.remote`: a packet from
    /// there is taken without a look at the leg's filter.
    latched: [bool; 2],
    /// No video leg (it is set once, at creation): read on every packet, where `video`'s own
    /// discriminant is a cache line away.
    audio_only: bool,
    dtmf: Option<DtmfSetup>,
    last_audio_rtp: u32,
    epoch: Instant,
    audio: Option<AudioLeg>,
    video: Option<VideoLeg>,
    dtmf_rx: DtmfReceiver,
    /// Telephone-event packets waiting for their send time.
    dtmf_pending: Vec<ScheduledEvent>,
    scratch: Vec<RtpPayload>,
    drops: DropCounts,
    /// What RTCP told, per leg and over the call (cold: a few times per call).
    rtcp: RtcpRecord,
}

/// What the far end's RTCP reports told of a call, and the histograms its reports and ours
/// feed (see [`crate::gateway::stats`]).
#[derive(Debug, Default)]
struct RtcpRecord {
    /// The far end's last report on our stream, per leg: (lost, jitter).
    far: [Option<(i64, Duration)>; 2],
    /// The last round-trip time, per leg.
    round_trip: [Option<Duration>; 2],
    round_trips: Histogram,
    jitter_received: Histogram,
    jitter_sent: Histogram,
}

/// A telephone-event (RFC 4733) packet of a digit the client sent, waiting for its send time.
struct ScheduledEvent {
    /// When it goes out.
    send_at: Instant,
    /// The RTP marker bit (set on the event's first packet).
    marker: bool,
    /// The telephone-event payload.
    payload: Bytes,
    /// The RTP timestamp: the event's start, the same for all its packets.
    timestamp: u32,
}

impl std::fmt::Debug for MediaBridge {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MediaBridge")
            .field("audio", &self.audio.as_ref().map(|a| &a.setup))
            .field("video", &self.video.as_ref().map(|v| &v.setup))
            .field("dtmf", &self.dtmf)
            .finish()
    }
}

fn audio_format(token: CodecToken, payload_type: u8) -> Option<RtpAudioFormat> {
    let codec = match token {
        CodecToken::Wideband => RtpAudioCodec::SpeexWideband,
        CodecToken::Narrowband => RtpAudioCodec::SpeexNarrowband,
        CodecToken::Pcmu => RtpAudioCodec::Pcmu,
        CodecToken::Pcma => RtpAudioCodec::Pcma,
        CodecToken::Opus => RtpAudioCodec::Opus,
        _ => return None,
    };
    Some(RtpAudioFormat {
        codec,
        payload_type,
    })
}

fn session(rng: &mut SeededRng, now: Instant, clock_rate: u32, cname: &str) -> RtpSession {
    let mut config = RtpSessionConfig::new(clock_rate, cname);
    // A call's peer is known from SDP: believe its first packet.
    config.min_sequential = 1;
    RtpSession::new(config, rng, now)
}

impl MediaBridge {
    /// A bridge for the negotiated `setup`; `cname` names us in RTCP; `codecs` makes the
    /// transcoder when `setup` asks for one. `None` when the audio leg names a video codec
    /// (or the reverse): the negotiation was inconsistent; or when transcoding is asked for
    /// but the leg's codec cannot be transcoded to or no codec can be made.
    pub fn new(
        setup: &BridgeSetup,
        cname: &str,
        rng: &mut SeededRng,
        now: Instant,
        codecs: CodecLibraries<'_>,
    ) -> Option<Self> {
        let audio = match &setup.audio {
            Some(leg) => {
                let send = audio_format(leg.codec, leg.send_pt)?;
                let receive = audio_format(leg.codec, leg.receive_pt)?;
                let transcoder = match setup.transcode {
                    Some(client) => {
                        let far = match leg.codec {
                            CodecToken::Pcmu => FarCodec::G711(G711Law::Ulaw),
                            CodecToken::Pcma => FarCodec::G711(G711Law::Alaw),
                            CodecToken::Wideband => FarCodec::Speex(SpeexBand::Wideband),
                            CodecToken::Narrowband => FarCodec::Speex(SpeexBand::Narrowband),
                            _ => return None,
                        };
                        Some(Box::new(Transcoder::new(client, far, codecs)?))
                    }
                    None => None,
                };
                // Our encoder codes mono; a far end's Opus may be stereo (RFC 7587).
                let opus_head = match (setup.transcode, leg.codec) {
                    (Some(ClientCodec::Opus), _) => Some((1, true)),
                    (None, CodecToken::Opus) => Some((2, true)),
                    _ => None,
                };
                Some(AudioLeg {
                    transcoder,
                    transcoded_started: false,
                    opus_head,
                    source: SourceFilter::new(setup.source_policy, leg.remote, now),
                    setup: leg.clone(),
                    session: session(rng, now, send.codec.clock_rate(), cname),
                    counters: LegCounters::default(),
                    out: RtmpToRtpAudio::new(send, 0),
                    back: RtpToRtmpAudio::new(receive),
                    srtp: leg.srtp.as_ref().map(|k| Box::new(LegSrtp::new(k))),
                })
            }
            None => None,
        };
        let video = match &setup.video {
            Some(leg) => {
                let (out, back, clock) = match leg.codec {
                    CodecToken::H264 => (
                        VideoOut::H264(H264Packetizer::new(
                            H264PacketizerConfig {
                                mtu: setup.mtu,
                                ..H264PacketizerConfig::default()
                            },
                            0,
                        )),
                        VideoIn::H264(Box::new(H264Depacketizer::new(
                            H264DepacketizerConfig::default(),
                        ))),
                        90_000,
                    ),
                    CodecToken::Flv => (
                        VideoOut::Tunnel(FlvTunnelSender::new(setup.mtu, 0)),
                        VideoIn::Tunnel(FlvTunnelReceiver::new(8 * 1024 * 1024)),
                        1000,
                    ),
                    _ => return None,
                };
                Some(VideoLeg {
                    source: SourceFilter::new(setup.source_policy, leg.remote, now),
                    setup: leg.clone(),
                    session: session(rng, now, clock, cname),
                    counters: LegCounters::default(),
                    out,
                    back,
                    srtp: leg.srtp.as_ref().map(|k| Box::new(LegSrtp::new(k))),
                })
            }
            None => None,
        };
        Some(Self {
            audio_only: video.is_none(),
            audio,
            video,
            dtmf: setup.dtmf,
            dtmf_rx: DtmfReceiver::default(),
            dtmf_pending: Vec::new(),
            epoch: now,
            last_audio_rtp: 0,
            scratch: Vec::new(),
            sending: true,
            latched: [false; 2],
            drops: DropCounts::default(),
            rtcp: RtcpRecord::default(),
        })
    }

    /// Stops (on hold) or resumes sending to the far end.
    pub fn set_sending(&mut self, sending: bool) {
        self.sending = sending;
    }

    /// Where `leg`'s RTP goes.
    pub fn remote(&self, leg: Leg) -> Option<SocketAddr> {
        match leg {
            Leg::Audio => self.audio.as_ref().map(|a| a.setup.remote),
            Leg::Video => self.video.as_ref().map(|v| v.setup.remote),
        }
    }

    /// The SSRC we send `leg` with.
    pub fn ssrc(&self, leg: Leg) -> Option<u32> {
        match leg {
            Leg::Audio => self.audio.as_ref().map(|a| a.session.ssrc()),
            Leg::Video => self.video.as_ref().map(|v| v.session.ssrc()),
        }
    }

    /// The far end's SDP names `remote` for `leg` (a re-INVITE). When that moves the leg, its
    /// media goes there and is taken only from there, or from what a new learning phase
    /// learns (see [`crate::rtp::source_filter`]); the same address as before changes nothing
    /// (a hold keeps the latch onto a far end behind NAT).
    pub fn move_remote(&mut self, now: Instant, leg: Leg, remote: SocketAddr) {
        let (setup, source) = match leg {
            Leg::Audio => match &mut self.audio {
                Some(a) => (&mut a.setup, &mut a.source),
                None => return,
            },
            Leg::Video => match &mut self.video {
                Some(v) => (&mut v.setup, &mut v.source),
                None => return,
            },
        };
        if source.expected() != remote {
            setup.remote = remote;
            source.reset(remote, now);
            self.latched[leg as usize] = false;
        }
    }

    /// Datagrams from the far end dropped so far, by reason.
    pub fn drops(&self) -> DropCounts {
        self.drops
    }

    /// `leg`'s counters and RTCP figures, if the call has the leg.
    pub fn leg_view(&self, leg: Leg) -> Option<LegView> {
        let (counters, session) = match leg {
            Leg::Audio => self.audio.as_ref().map(|a| (a.counters, &a.session)),
            Leg::Video => self.video.as_ref().map(|v| (v.counters, &v.session)),
        }?;
        let (lost, jitter) = session.reception().unwrap_or((0, 0));
        let far = self.rtcp.far[leg as usize];
        Some(LegView {
            counters,
            quality: LegQuality {
                lost,
                jitter: timestamp_duration(jitter, session.clock_rate()),
                far_lost: far.map(|(lost, _)| lost),
                far_jitter: far.map(|(_, jitter)| jitter),
                round_trip: self.rtcp.round_trip[leg as usize],
            },
        })
    }

    /// The call's media figures as totals (for the metrics, and folded into the session's
    /// when the bridge goes).
    pub(crate) fn totals(&self) -> MediaTotals {
        let mut totals = MediaTotals {
            drops: self.drops,
            round_trip: self.rtcp.round_trips,
            jitter_received: self.rtcp.jitter_received,
            jitter_sent: self.rtcp.jitter_sent,
            ..MediaTotals::default()
        };
        for leg in [Leg::Audio, Leg::Video] {
            if let Some(view) = self.leg_view(leg) {
                let i = leg as usize;
                totals.legs[i] = view.counters;
                totals.lost_received[i] = view.quality.lost.max(0) as u64;
                totals.lost_sent[i] = view.quality.far_lost.unwrap_or(0).max(0) as u64;
            }
        }
        totals
    }

    /// A message the client published on `local`: the RTP packets it becomes.
    // Once per packet, from one place: inlined into its caller (no call, no argument copies).
    #[inline]
    pub fn from_client(&mut self, now: Instant, msg: &RtmpMessage, out: &mut Vec<OutgoingRtp>) {
        let start = out.len();
        self.translate_client(now, msg, out);
        self.seal(out, start);
    }

    /// Protects the datagrams from `start` on in `out` of the legs that run SRTP; one that
    /// cannot be protected is not sent. Plain calls pay one test.
    #[inline]
    fn seal(&mut self, out: &mut Vec<OutgoingRtp>, start: usize) {
        let secure = self.audio.as_ref().is_some_and(|a| a.srtp.is_some())
            || self.video.as_ref().is_some_and(|v| v.srtp.is_some());
        if secure && out.len() > start {
            self.seal_slow(out, start);
        }
    }

    #[cold]
    fn seal_slow(&mut self, out: &mut Vec<OutgoingRtp>, start: usize) {
        let mut i = start;
        while i < out.len() {
            let rtp = &mut out[i];
            let srtp = match rtp.leg {
                Leg::Audio => self.audio.as_mut().and_then(|a| a.srtp.as_deref_mut()),
                Leg::Video => self.video.as_mut().and_then(|v| v.srtp.as_deref_mut()),
            };
            let sealed = match srtp {
                Some(srtp) => srtp.seal(rtp.rtcp, &mut rtp.datagram),
                None => true,
            };
            if sealed {
                i += 1;
            } else {
                out.remove(i);
            }
        }
    }

    /// The leg's SRTP keys, when it runs SRTP.
    pub fn srtp_keys(&self, leg: Leg) -> Option<&SrtpKeys> {
        match leg {
            Leg::Audio => self.audio.as_ref()?.srtp.as_deref().map(LegSrtp::keys),
            Leg::Video => self.video.as_ref()?.srtp.as_deref().map(LegSrtp::keys),
        }
    }

    /// New SRTP keys for `leg` (a re-INVITE changed them): its contexts start afresh. Keys
    /// equal to the running ones change nothing.
    pub fn rekey(&mut self, leg: Leg, keys: Option<&SrtpKeys>) {
        let srtp = match leg {
            Leg::Audio => self.audio.as_mut().map(|a| &mut a.srtp),
            Leg::Video => self.video.as_mut().map(|v| &mut v.srtp),
        };
        if let Some(srtp) = srtp {
            if srtp.as_deref().map(LegSrtp::keys) != keys {
                *srtp = keys.map(|k| Box::new(LegSrtp::new(k)));
            }
        }
    }

    fn translate_client(&mut self, now: Instant, msg: &RtmpMessage, out: &mut Vec<OutgoingRtp>) {
        if !self.sending {
            return;
        }
        match msg.type_id {
            type_id::AUDIO => {
                let Some(leg) = &mut self.audio else { return };
                let Some(t) = &mut leg.transcoder else {
                    // A frame the negotiated codec cannot carry (the client switched codecs, a
                    // sequence start) is dropped.
                    let Ok(payload) = leg.out.translate(&msg.payload, msg.timestamp) else {
                        return;
                    };
                    self.last_audio_rtp = payload.timestamp;
                    if let Ok(datagram) = send(&mut leg.session, now, leg.setup.send_pt, payload) {
                        leg.counters.sent(&datagram);
                        out.push(OutgoingRtp {
                            leg: Leg::Audio,
                            rtcp: false,
                            destination: leg.setup.remote,
                            datagram,
                        });
                    }
                    return;
                };
                // Only the client's own codec is transcoded; anything else is dropped in there.
                let clock = leg.out.format().codec.clock_rate();
                let (session, setup, counters) = (&mut leg.session, &leg.setup, &mut leg.counters);
                let started = &mut leg.transcoded_started;
                let last_rtp = &mut self.last_audio_rtp;
                t.client_to_far(&msg.payload, msg.timestamp, |ms, body| {
                    let marker = !std::mem::replace(started, true);
                    let payload = RtpPayload::new(rtmp_to_rtp(ms, clock, 0), marker, body);
                    *last_rtp = payload.timestamp;
                    if let Ok(datagram) = send(session, now, setup.send_pt, payload) {
                        counters.sent(&datagram);
                        out.push(OutgoingRtp {
                            leg: Leg::Audio,
                            rtcp: false,
                            destination: setup.remote,
                            datagram,
                        });
                    }
                });
            }
            type_id::VIDEO => {
                let Some(leg) = &mut self.video else { return };
                self.scratch.clear();
                let ok = match &mut leg.out {
                    VideoOut::H264(p) => p
                        .push(&msg.payload, msg.timestamp, &mut self.scratch)
                        .is_ok(),
                    VideoOut::Tunnel(t) => t.push(msg, &mut self.scratch).is_ok(),
                };
                if !ok {
                    return;
                }
                for payload in self.scratch.drain(..) {
                    if let Ok(datagram) = send(&mut leg.session, now, leg.setup.send_pt, payload) {
                        leg.counters.sent(&datagram);
                        out.push(OutgoingRtp {
                            leg: Leg::Video,
                            rtcp: false,
                            destination: leg.setup.remote,
                            datagram,
                        });
                    }
                }
            }
            _ => {}
        }
    }

    /// Schedules an RFC 4733 event for `digit` (160 ms), sent from [`MediaBridge::poll`].
    /// False when no telephone-event was negotiated or the digit is not a DTMF digit.
    pub fn send_dtmf(&mut self, now: Instant, digit: char) -> bool {
        if self.dtmf.is_none() || self.audio.is_none() {
            return false;
        }
        let Some(dtmf) = self.dtmf else {
            return false;
        };
        let Ok(packets) = encode_digit(digit, Duration::from_millis(160), 10, dtmf.clock_rate)
        else {
            return false;
        };
        // The event shares the audio clock; it starts at the current audio position.
        let start = self.last_audio_rtp;
        for p in packets {
            self.dtmf_pending.push(ScheduledEvent {
                send_at: now + p.send_at,
                marker: p.marker,
                payload: p.payload,
                timestamp: start,
            });
        }
        true
    }

    /// An RTP (or RTCP, on the odd port) datagram on `leg`'s socket from `source`: media and
    /// digits for the client go to `out`. A datagram that is not the far end's media is
    /// dropped, counted ([`MediaBridge::drops`]) and its reason returned.
    // Once per packet, from one place: inlined into its caller (no call, no argument copies).
    #[inline]
    pub fn from_far_end(
        &mut self,
        now: Instant,
        leg: Leg,
        rtcp: bool,
        source: SocketAddr,
        data: Bytes,
        out: &mut Vec<FromFarEnd>,
    ) -> Result<(), Dropped> {
        let result = self.receive(now, leg, rtcp, source, data, out);
        if let Err(reason) = result {
            self.drops.count(reason);
        }
        result
    }

    fn receive(
        &mut self,
        now: Instant,
        leg: Leg,
        rtcp: bool,
        source: SocketAddr,
        data: Bytes,
        out: &mut Vec<FromFarEnd>,
    ) -> Result<(), Dropped> {
        // The client's `remote` stream time, worked out only where it is used: audio asks for
        // it only to anchor its timeline (a clock subtraction saved on every other packet).
        let epoch = self.epoch;
        let rtmp_now = move || rtmp_time(epoch, now);
        let srtp = match leg {
            Leg::Audio => self.audio.as_mut().and_then(|a| a.srtp.as_deref_mut()),
            Leg::Video => self.video.as_mut().and_then(|v| v.srtp.as_deref_mut()),
        };
        // A secure leg authenticates before anything else looks at the packet: a forged one
        // must not latch a source, move a session or reach the client.
        let data = match srtp {
            Some(srtp) => srtp.open(rtcp, data).map_err(|e| match e {
                OpenError::Authentication => Dropped::SrtpAuthentication,
                OpenError::Replay => Dropped::SrtpReplay,
                OpenError::Malformed => Dropped::Undecodable,
            })?,
            None => data,
        };
        if rtcp {
            let (filter, session) = match leg {
                Leg::Audio => self.audio.as_mut().map(|a| (&mut a.source, &mut a.session)),
                Leg::Video => self.video.as_mut().map(|v| (&mut v.source, &mut v.session)),
            }
            .ok_or(Dropped::UnexpectedPayload)?;
            if !filter.check_rtcp(source) {
                return Err(Dropped::UnknownSource);
            }
            let packets = session
                .receive_rtcp(now, data)
                .map_err(|_| Dropped::Undecodable)?;
            self.rtcp.far_reports(now, leg, session, &packets);
            return Ok(());
        }
        let bytes = data.len() as u64;
        let packet = RtpPacket::parse(data).map_err(|_| Dropped::Undecodable)?;
        match leg {
            Leg::Audio => {
                let a = self.audio.as_mut().ok_or(Dropped::UnexpectedPayload)?;
                let latched = &mut self.latched[Leg::Audio as usize];
                if !(*latched && source == a.setup.remote) {
                    check_source(&mut a.source, &mut a.setup, latched, now, source, &packet)?;
                }
                if self
                    .dtmf
                    .is_some_and(|d| d.receive_pt == packet.payload_type)
                {
                    a.counters.received(bytes);
                    if let Ok(Some(event)) = self.dtmf_rx.receive(packet.timestamp, &packet.payload)
                    {
                        if let Some(d) = event.digit {
                            out.push(FromFarEnd::Dtmf(d));
                        }
                    }
                    return Ok(());
                }
                if packet.payload_type != a.setup.receive_pt {
                    return Err(Dropped::UnexpectedPayload);
                }
                if !accept(&mut a.session, now, &packet) {
                    return Err(Dropped::UnexpectedSsrc);
                }
                a.counters.received(bytes);
                if let Some(msg) = a.back.translate_with(packet, rtmp_now) {
                    let head = &mut a.opus_head;
                    match &mut a.transcoder {
                        None => to_client(head, msg, out),
                        Some(t) => {
                            let header = t.client_codec().flv_tag_header();
                            t.far_to_client(&msg.body, msg.timestamp, |ms, packet| {
                                let frame = MediaFrame::new(type_id::AUDIO, ms, header, packet);
                                to_client(head, frame, out);
                            });
                        }
                    }
                }
            }
            Leg::Video => {
                let v = self.video.as_mut().ok_or(Dropped::UnexpectedPayload)?;
                let latched = &mut self.latched[Leg::Video as usize];
                if !(*latched && source == v.setup.remote) {
                    check_source(&mut v.source, &mut v.setup, latched, now, source, &packet)?;
                }
                if packet.payload_type != v.setup.receive_pt {
                    return Err(Dropped::UnexpectedPayload);
                }
                if !accept(&mut v.session, now, &packet) {
                    return Err(Dropped::UnexpectedSsrc);
                }
                v.counters.received(bytes);
                match &mut v.back {
                    VideoIn::H264(d) => {
                        d.push(now, rtmp_now(), &packet);
                        while let Some(msg) = d.poll_message() {
                            out.push(FromFarEnd::Media(msg.into()));
                        }
                    }
                    VideoIn::Tunnel(t) => {
                        if let Ok(Some(msg)) = t.push(&packet) {
                            out.push(FromFarEnd::Media(msg.into()));
                        }
                    }
                }
            }
        }
        Ok(())
    }

    /// Whether the far end should be asked for a keyframe now (at most once a second).
    pub fn keyframe_needed(&mut self, now: Instant) -> bool {
        match self.video.as_mut().map(|v| &mut v.back) {
            Some(VideoIn::H264(d)) => d.keyframe_needed(now),
            _ => false,
        }
    }

    /// Whether the call is audio only and its audio has latched onto the far end's address
    /// (see [`MediaBridge::from_far_end`]): then an audio RTP packet moves neither a timer nor
    /// a media address.
    pub fn audio_only_and_latched(&self) -> bool {
        self.audio_only && self.latched[Leg::Audio as usize]
    }

    /// The earliest time [`MediaBridge::poll`] has work.
    pub fn poll_timeout(&self) -> Option<Instant> {
        // Asked after every packet of the call: plain comparisons, the common case (audio
        // only, no DTMF pending) in two.
        let mut next = self.audio.as_ref().and_then(|a| a.session.poll_timeout());
        for pending in &self.dtmf_pending {
            next = earliest(next, Some(pending.send_at));
        }
        if let Some(video) = &self.video {
            next = earliest(next, video.session.poll_timeout());
            if let VideoIn::H264(depacketizer) = &video.back {
                next = earliest(next, depacketizer.poll_timeout());
            }
        }
        next
    }

    /// Due work: telephone-event packets, RTCP reports, and video frames held for reordering.
    pub fn poll(&mut self, now: Instant, out: &mut Vec<OutgoingRtp>, back: &mut Vec<FromFarEnd>) {
        let start = out.len();
        self.poll_due(now, out, back);
        self.seal(out, start);
    }

    fn poll_due(&mut self, now: Instant, out: &mut Vec<OutgoingRtp>, back: &mut Vec<FromFarEnd>) {
        if let (Some(a), Some(DtmfSetup { send_pt: pt, .. }), true) =
            (&mut self.audio, self.dtmf, self.sending)
        {
            let mut i = 0;
            while i < self.dtmf_pending.len() {
                if self.dtmf_pending[i].send_at > now {
                    i += 1;
                    continue;
                }
                let event = self.dtmf_pending.remove(i);
                let payload = RtpPayload::new(event.timestamp, event.marker, event.payload);
                if let Ok(datagram) = send(&mut a.session, now, pt, payload) {
                    a.counters.sent(&datagram);
                    out.push(OutgoingRtp {
                        leg: Leg::Audio,
                        rtcp: false,
                        destination: a.setup.remote,
                        datagram,
                    });
                }
            }
        }
        if let Some(a) = &mut self.audio {
            if a.session.poll_timeout().is_some_and(|t| t <= now) {
                if let Some(report) = a.session.handle_timeout(now) {
                    self.rtcp.reported(&a.session);
                    out.push(rtcp(Leg::Audio, a.setup.remote, report));
                }
            }
        }
        if let Some(v) = &mut self.video {
            if v.session.poll_timeout().is_some_and(|t| t <= now) {
                if let Some(report) = v.session.handle_timeout(now) {
                    self.rtcp.reported(&v.session);
                    out.push(rtcp(Leg::Video, v.setup.remote, report));
                }
            }
            if let VideoIn::H264(d) = &mut v.back {
                d.handle_timeout(now);
                while let Some(msg) = d.poll_message() {
                    back.push(FromFarEnd::Media(msg.into()));
                }
            }
        }
    }

    /// RTCP BYE for every leg, when the call ends.
    pub fn close(&mut self, now: Instant) -> Vec<OutgoingRtp> {
        let mut out = Vec::new();
        if let Some(a) = &mut self.audio {
            out.push(rtcp(Leg::Audio, a.setup.remote, a.session.close(now, None)));
        }
        if let Some(v) = &mut self.video {
            out.push(rtcp(Leg::Video, v.setup.remote, v.session.close(now, None)));
        }
        self.seal(&mut out, 0);
        out
    }

    /// The client started a new play of `remote`: timestamps restart from the next packet.
    pub fn reset_playback(&mut self, now: Instant) {
        self.epoch = now;
        if let Some(a) = &mut self.audio {
            a.back.reset();
            if let Some(t) = &mut a.transcoder {
                t.reset();
            }
            // The new play needs the Opus sequence start again.
            if let Some((_, due)) = &mut a.opus_head {
                *due = true;
            }
        }
        if let Some(v) = &mut self.video {
            match &mut v.back {
                VideoIn::H264(d) => d.reset(),
                VideoIn::Tunnel(t) => t.reset(),
            }
        }
    }
}

/// Milliseconds from `epoch` (the bridge's start) to `now`: the clock of the client's `remote`
/// stream.
fn rtmp_time(epoch: Instant, now: Instant) -> u32 {
    now.saturating_duration_since(epoch).as_millis() as u32
}

/// An audio frame for the client: after the Opus sequence start when that is due (`head`: its
/// channel count and whether it is due; see [`AudioLeg`]).
// Once per packet: inlined into its caller (no call, no copy of its result).
#[inline]
fn to_client(head: &mut Option<(u8, bool)>, frame: MediaFrame, out: &mut Vec<FromFarEnd>) {
    if let Some((channels, due @ true)) = head {
        *due = false;
        out.push(FromFarEnd::Media(opus::sequence_start(
            frame.timestamp,
            *channels,
        )));
    }
    out.push(FromFarEnd::Media(frame));
}

/// A packet from another source than the one `setup.remote` names, or before the leg latched:
/// the leg's filter decides, and what it latches onto becomes where the leg's media goes
/// (symmetric RTP).
#[cold]
fn check_source(
    filter: &mut SourceFilter,
    setup: &mut LegSetup,
    latched: &mut bool,
    now: Instant,
    source: SocketAddr,
    packet: &RtpPacket,
) -> Result<(), Dropped> {
    match filter.check_rtp(now, source, packet.ssrc, packet.sequence) {
        SourceVerdict::Accept => {
            *latched = filter.latched() == Some(setup.remote);
            Ok(())
        }
        SourceVerdict::Learned(from) => {
            setup.remote = from;
            *latched = true;
            Ok(())
        }
        SourceVerdict::Drop => Err(Dropped::UnknownSource),
    }
}

/// Whether to use a packet from the far end. Echo peers (sipp's `-rtp_echo`, test rigs) send
/// our own packets back with our SSRC: that is their stream, not an SSRC collision.
fn accept(session: &mut RtpSession, now: Instant, packet: &RtpPacket) -> bool {
    packet.ssrc == session.ssrc() || session.receive(now, packet) == ReceiveOutcome::Accepted
}

fn rtcp(leg: Leg, remote: SocketAddr, report: Bytes) -> OutgoingRtp {
    let destination = SocketAddr::new(remote.ip(), remote.port().wrapping_add(1));
    OutgoingRtp {
        leg,
        rtcp: true,
        destination,
        datagram: RtpDatagram {
            header: Default::default(),
            payload: report,
        },
    }
}

/// Sends `payload` on `session`: the payload-format header (FU-A, tunnel) follows the RTP
/// header in the same small buffer, the body stays shared.
// Once per packet: inlined into its caller (no call, no copy of its result).
#[inline]
fn send(
    session: &mut RtpSession,
    now: Instant,
    payload_type: u8,
    payload: RtpPayload,
) -> Result<RtpDatagram, crate::rtp::packet::RtpError> {
    let mut datagram = session.send(
        now,
        payload_type,
        payload.timestamp,
        payload.marker,
        payload.body,
    )?;
    // Audio has no payload-format header: no growth check and copy of nothing per frame.
    if !payload.header.is_empty() {
        datagram.header.extend_from_slice(&payload.header);
    }
    Ok(datagram)
}

impl LegCounters {
    /// Counts a packet sent.
    #[inline]
    fn sent(&mut self, datagram: &RtpDatagram) {
        self.sent_packets += 1;
        self.sent_bytes += datagram.len() as u64;
    }

    /// Counts a packet received and used.
    #[inline]
    fn received(&mut self, bytes: u64) {
        self.received_packets += 1;
        self.received_bytes += bytes;
    }
}

impl RtcpRecord {
    /// We sent a report on `session`: our jitter of what we receive is observed.
    fn reported(&mut self, session: &RtpSession) {
        if let Some((_, jitter)) = session.reception() {
            let jitter = timestamp_duration(jitter, session.clock_rate());
            self.jitter_received.observe(JITTER_BOUNDS, jitter);
        }
    }

    /// The far end's RTCP on `leg`: its report blocks on our stream give what it lost of it,
    /// its jitter and (when it names one of our sender reports) the round-trip time.
    fn far_reports(
        &mut self,
        now: Instant,
        leg: Leg,
        session: &RtpSession,
        packets: &[RtcpPacket],
    ) {
        let blocks = packets.iter().flat_map(|p| match p {
            RtcpPacket::SenderReport(sr) => &sr.reports[..],
            RtcpPacket::ReceiverReport(rr) => &rr.reports[..],
            _ => &[],
        });
        for block in blocks.filter(|b| b.ssrc == session.ssrc()) {
            let jitter = timestamp_duration(block.jitter, session.clock_rate());
            self.far[leg as usize] = Some((i64::from(block.cumulative_lost), jitter));
            self.jitter_sent.observe(JITTER_BOUNDS, jitter);
            if let Some(rtt) = session.round_trip(now, block) {
                self.round_trip[leg as usize] = Some(rtt);
                self.round_trips.observe(RTT_BOUNDS, rtt);
            }
        }
    }
}

/// `units` of a `clock_rate` clock as a duration.
fn timestamp_duration(units: u32, clock_rate: u32) -> Duration {
    Duration::from_nanos(u64::from(units) * 1_000_000_000 / u64::from(clock_rate.max(1)))
}

/// The earlier of two optional deadlines.
pub(crate) fn earliest(a: Option<Instant>, b: Option<Instant>) -> Option<Instant> {
    match (a, b) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, None) => a,
        (None, b) => b,
    }
}
