//! [`GatewaySession`]: one RTMP client of the gateway as a single-line SIP phone.
//!
//! It joins the client API ([`super::client_api`]) to a SIP [`UserAgent`] and, during a call,
//! to a [`MediaBridge`]: the client's calls become SIP requests and responses, SIP events
//! become the client's callbacks, the client's `local` stream becomes RTP and the far end's RTP
//! becomes the client's `remote` stream. Sans-IO like everything in core: datagrams and time in,
//! [`GatewayOutput`]s out. The caller owns the sockets (one SIP socket and the RTP/RTCP
//! sockets of the ports given at creation) and the RTMP connection.
//!
//! SIP goes over UDP, TCP or TLS ([`GatewayConfig::transport`]); media is RTP over UDP either
//! way. Over TCP (and TLS) the caller owns the connections: it opens one to each destination of
//! [`GatewayOutput::SipSend`] it has none to (or reuses the one the far end opened), feeds what
//! arrives with [`GatewaySession::sip_stream`], and reports a connection that failed or
//! closed with [`GatewaySession::sip_stream_failed`], which fails the transactions using it.
//!
//! Codecs: pass-through whenever the far end shares a codec with the client. With codec
//! libraries from the host ([`GatewayConfig::transcoder`] for Speex, [`GatewayConfig::opus`]),
//! a client also offers (or accepts), after its own codecs, what the gateway can transcode its
//! audio to, and a call that settles on one of those is transcoded by its media bridge: a
//! Speex client PCMU and PCMA (with Speex); an Opus client Speex wideband (with Speex),
//! PCMU, PCMA and Speex narrowband (with Speex), in that order, the better sound first
//! (16 kHz Speex, then 8 kHz G.711, then 8 kHz Speex at a fifth of G.711's rate). Without the
//! library, such a call gets 488 as before.
//!
//! What the original gateway left out is done here: 180 Ringing on an incoming INVITE; 488
//! before alerting when no codec matches; CANCEL of a pending outgoing INVITE and rejection of
//! a pending incoming one when the client disconnects; hold and resume understood from
//! sendonly/recvonly/inactive as well as `c=0.0.0.0`; `o=` version incremented on every offer.

use std::collections::VecDeque;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Instant;

use bytes::{Bytes, BytesMut};

use crate::media::frame::MediaFrame;
use crate::media::transcode::{
    ClientCodec, CodecLibraries, FarCodec, G711Law, OpusCodecs, SpeexBand, SpeexCodecs,
};
use crate::rng::SeededRng;
use crate::rtmp::message::RtmpMessage;
use crate::sdp::offer_answer::{answer, create_offer, negotiated_media, process_answer, reoffer};
use crate::sdp::sdes::{
    answer_secure, is_secure_profile, negotiated_keys, secure_offer, KeySupply, SecretKeys,
};
use crate::sdp::{
    Direction, LocalCapabilities, NegotiatedMedia, Origin, SessionDescription, SrtpKeys,
};
use crate::sip::digest::Credentials;
use crate::sip::ua::{CallId, UaConfig, UaEvent, UserAgent};
use crate::sip::TimerConfig;
use crate::sip::Transport;
use crate::sip::{SipUri, Uri};
use crate::srtp::{KeySecret, MasterKey};

use super::client_api::{ClientCall, ClientCallback, ConnectRequest};
use super::codecs::{capabilities, legacy_tokens, CodecToken};
use super::drop_notice::DropNotice;
use super::media_bridge::{
    BridgeSetup, Dropped, DtmfSetup, FromFarEnd, Leg, LegSetup, MediaBridge, OutgoingRtp,
};
use super::srtp_policy::{keys_may_travel, SrtpMode};
use super::stats::{
    call_outcome, register_outcome, CallDirection, LegView, SessionStats, SETUP_BOUNDS,
};
use crate::rtp::source_filter::SourcePolicy;

/// A session's [`KeySupply`]: the configured secret's, or the bare generator's.
enum SessionKeySupply<'a> {
    Secret(SecretKeys<'a>),
    Plain(&'a mut SeededRng),
}

impl KeySupply for SessionKeySupply<'_> {
    fn fresh_key(&mut self) -> MasterKey {
        match self {
            SessionKeySupply::Secret(keys) => keys.fresh_key(),
            SessionKeySupply::Plain(rng) => rng.fresh_key(),
        }
    }
}

/// Why a session that requires SRTP places or takes no call over plain SIP.
const NO_KEYS_OVER_PLAIN: &str =
    "SRTP required but SIP is not over TLS (keys would travel in the clear; see srtp_over_plain_sip)";

/// Settings shared by every gateway session.
#[derive(Debug, Clone)]
pub struct GatewayConfig {
    /// Where REGISTER goes (default: the AOR's domain when it is an IP address).
    pub registrar: Option<SocketAddr>,
    /// Outbound proxy for every out-of-dialog request.
    pub outbound_proxy: Option<SocketAddr>,
    /// The address advertised in Via, Contact and SDP instead of the bound one (`--ext-ip`).
    pub advertised_ip: Option<IpAddr>,
    /// REGISTER lifetime asked for, seconds.
    pub register_expires: u32,
    /// SIP transaction timers.
    pub timers: TimerConfig,
    /// RTP payload size limit (video).
    pub mtu: usize,
    /// What SIP is carried over: UDP (the default), TCP (`;transport=tcp` in Contact,
    /// connections opened by the caller; see the module documentation) or TLS (the same,
    /// `;transport=tls`, the caller doing TLS on its connections).
    pub transport: Transport,
    /// `sips:` URIs (the address of record, Contact, the proxy's Route): the registrar was
    /// configured as a `sips:` URI. Only with [`Transport::Tls`].
    pub sips: bool,
    /// Where a call's media is accepted from besides the address the far end's SDP gives
    /// (`--rtp-source`; see [`crate::rtp::source_filter`]).
    pub rtp_source: SourcePolicy,
    /// The Speex codec for transcoding (see the module documentation); `None`: no
    /// transcoding to or from Speex.
    pub transcoder: Option<Arc<dyn SpeexCodecs>>,
    /// The Opus codec for transcoding an Opus client's audio (see the module
    /// documentation); `None`: Opus is passed through only.
    pub opus: Option<Arc<dyn OpusCodecs>>,
    /// SRTP with SDES keys (`--srtp`; see [`super::srtp_policy`]).
    pub srtp: SrtpMode,
    /// Whether SDES keys may go in SDP over plain (not TLS) SIP (`srtp_over_plain_sip`):
    /// anyone who sees the signalling then has the media keys. Off by default.
    pub srtp_over_plain_sip: bool,
    /// The secret SDES master keys are derived with (see [`crate::srtp::key_secret`]); the
    /// binary draws it from the OS. `None`: keys are the session generator's bytes, which
    /// whoever works out the generator's state can predict.
    pub srtp_key_secret: Option<KeySecret>,
}

impl GatewayConfig {
    /// The codec libraries the transcoders are made with.
    pub fn libraries(&self) -> CodecLibraries<'_> {
        CodecLibraries {
            speex: self.transcoder.as_deref(),
            opus: self.opus.as_deref(),
        }
    }
}

impl Default for GatewayConfig {
    fn default() -> Self {
        Self {
            registrar: None,
            outbound_proxy: None,
            advertised_ip: None,
            register_expires: 3600,
            timers: TimerConfig::default(),
            mtu: 1200,
            transport: Transport::Udp,
            sips: false,
            rtp_source: SourcePolicy::default(),
            transcoder: None,
            opus: None,
            srtp: SrtpMode::Off,
            srtp_over_plain_sip: false,
            srtp_key_secret: None,
        }
    }
}

/// The local sockets of one session, bound by the caller.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SessionSockets {
    /// The SIP socket's bound address (over TCP: the address the session listens on).
    pub sip: SocketAddr,
    /// The call's RTP ports, or `None` until the caller binds them for a call
    /// ([`GatewaySession::set_media_ports`]): a client without a call holds no media port.
    pub media: Option<MediaPorts>,
}

/// The RTP ports of a session's call (RTCP on the port above each).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MediaPorts {
    /// RTP port of the audio leg.
    pub audio: u16,
    /// RTP port of the video leg.
    pub video: u16,
}

/// What the session asks of its caller.
#[derive(Debug, Clone, PartialEq)]
pub enum GatewayOutput {
    /// Answer the client's deferred `connect`: success, or rejection with the SIP final
    /// response as description (`401 Unauthorized`).
    ConnectResult(Result<(), String>),
    /// Call a callback on the client.
    Callback(ClientCallback),
    /// Media for the client's `remote` stream (the caller sets the stream): a tag header and
    /// a body shared with the received datagram.
    RemoteMedia(MediaFrame),
    /// Send a SIP message: a datagram from the session's SIP socket, or over TCP on the
    /// connection to `destination` (opened first if there is none).
    SipSend {
        /// Destination.
        destination: SocketAddr,
        /// The message.
        data: Bytes,
    },
    /// Send RTP or RTCP from the leg's socket.
    Rtp(OutgoingRtp),
    /// Something the operator should see in the logs (a failed refresh, a refused call).
    Notice(String),
}

/// The one call a session may have.
// One per session and never on the media path: boxing the descriptions buys nothing.
#[allow(clippy::large_enum_variant)]
#[derive(Debug)]
enum CallState {
    /// We sent an INVITE.
    Outgoing {
        call: CallId,
        /// When the INVITE went out.
        since: Instant,
        tokens: Vec<CodecToken>,
        report_tokens: bool,
        offer: SessionDescription,
    },
    /// An INVITE came in and the client was told (`invited`).
    Incoming {
        call: CallId,
        /// When the INVITE came in.
        since: Instant,
        offer: SessionDescription,
        from: String,
        to: String,
    },
    /// Answered either way.
    Established {
        call: CallId,
        /// When it was established, which way it went, and the codecs the client hears and
        /// speaks (audio, video).
        since: Instant,
        direction: CallDirection,
        codecs: (Option<CodecToken>, Option<CodecToken>),
        local: SessionDescription,
        tokens: Vec<CodecToken>,
        /// Our re-INVITE for hold/resume waits for its answer.
        pending_offer: Option<SessionDescription>,
    },
}

impl CallState {
    fn id(&self) -> CallId {
        match self {
            CallState::Outgoing { call, .. }
            | CallState::Incoming { call, .. }
            | CallState::Established { call, .. } => *call,
        }
    }
}

/// One gateway client: see the module documentation.
// The media bridge first, in the order written: every media packet goes through it, and
// nothing else of the session (see [`MediaBridge`]'s own layout).
#[repr(C)]
pub struct GatewaySession {
    bridge: Option<MediaBridge>,
    ua: UserAgent,
    config: GatewayConfig,
    sockets: SessionSockets,
    narrowband: bool,
    rng: SeededRng,
    session_id: u64,
    sdp_version: u64,
    /// The SDP session id (`o=`) of the far end of the call with media, which tells the
    /// gateway that two of its own clients are calling each other.
    peer_session_id: Option<u64>,
    call: Option<CallState>,
    connect_pending: bool,
    /// The client has gone (or the gateway is stopping): a registration granted from now on
    /// (one in flight at the close) is removed at once.
    closed: bool,
    outputs: VecDeque<GatewayOutput>,
    rtp_out: Vec<OutgoingRtp>,
    from_far: Vec<FromFarEnd>,
    cname: String,
    /// While a failed TCP connection's transactions are being failed: why it failed, told to
    /// the client instead of a bare "503 Service Unavailable".
    stream_failure: Option<String>,
    /// The user agent's next deadline, while nothing but media has happened since it was
    /// asked: the server asks after every packet, and media never moves a SIP timer (the
    /// answer walks the transaction timers, keyed by branch, so it is not free). Cleared by
    /// [`GatewaySession::pump`], which every path that touches the user agent ends with.
    ua_timeout: Option<Option<Instant>>,
    /// When dropped far-end datagrams may next be logged (a flood must not flood the logs).
    drop_notice: DropNotice,
    /// What the session counted (its ended calls' media included; see
    /// [`super::stats`]).
    stats: SessionStats,
}

impl std::fmt::Debug for GatewaySession {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GatewaySession")
            .field("aor", &self.ua.config().aor)
            .field("call", &self.call)
            .finish()
    }
}

/// A session's call, as the HTTP API shows it ([`GatewaySession::call_view`]).
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct CallView {
    pub direction: CallDirection,
    /// When the INVITE went out or came in, or, once established, when it was.
    pub since: Instant,
    pub established: bool,
    /// The codecs the client hears and speaks, once established.
    pub audio_codec: Option<&'static str>,
    pub video_codec: Option<&'static str>,
    /// Each leg's RTP, while the call has media.
    pub audio: Option<LegView>,
    pub video: Option<LegView>,
}

/// Why a session could not start.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum GatewayError {
    /// The address of record is not a SIP URI.
    BadAddress(String),
}

impl std::fmt::Display for GatewayError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            GatewayError::BadAddress(a) => write!(f, "'{a}' is not a SIP address"),
        }
    }
}

/// The client's destination as a URI: `bob@host[:port]` gets the `sip:` scheme.
fn sip_uri(address: &str) -> Option<Uri> {
    let address = address.trim();
    let has_scheme = ["sip:", "sips:", "tel:"]
        .iter()
        .any(|s| address.len() >= s.len() && address[..s.len()].eq_ignore_ascii_case(s));
    let text = if has_scheme {
        address.to_owned()
    } else {
        format!("sip:{address}")
    };
    Uri::parse(&text).ok()
}

impl GatewaySession {
    /// A session for a client that connected with `request`. With a password it registers
    /// first, and [`GatewayOutput::ConnectResult`] follows the registrar's answer; without one
    /// the connect succeeds at once.
    pub fn new(
        now: Instant,
        request: &ConnectRequest,
        config: GatewayConfig,
        sockets: SessionSockets,
        seed: u64,
    ) -> Result<Self, GatewayError> {
        let scheme = if config.sips { "sips" } else { "sip" };
        let aor: SipUri = format!("{scheme}:{}", request.aor)
            .parse()
            .map_err(|_| GatewayError::BadAddress(request.aor.clone()))?;
        let mut ua_config = UaConfig::new(aor.clone(), sockets.sip);
        ua_config.display_name = request.display_name.clone();
        ua_config.advertised = config
            .advertised_ip
            .map(|ip| SocketAddr::new(ip, sockets.sip.port()));
        ua_config.registrar = config.registrar;
        ua_config.outbound_proxy = config.outbound_proxy;
        ua_config.register_expires = config.register_expires;
        ua_config.timers = config.timers;
        ua_config.max_calls = 1;
        ua_config.transport = config.transport;
        ua_config.sips = config.sips && config.transport == Transport::Tls;
        ua_config.user_agent = "siprtmp gateway".into();
        if let Some(pass) = &request.auth_pass {
            let user = request
                .auth_name
                .clone()
                .or_else(|| aor.user.clone())
                .unwrap_or_default();
            ua_config.credentials = Some(Credentials::new(&user, pass));
        }
        let mut rng = SeededRng::new(seed);
        let mut session = Self {
            ua: UserAgent::new(ua_config, rng.next_u64()),
            session_id: rng.next_u64() >> 1,
            sdp_version: 0,
            peer_session_id: None,
            config,
            sockets,
            narrowband: request.narrowband,
            rng,
            call: None,
            bridge: None,
            connect_pending: false,
            closed: false,
            outputs: VecDeque::new(),
            rtp_out: Vec::new(),
            from_far: Vec::new(),
            cname: request.aor.clone(),
            stream_failure: None,
            ua_timeout: None,
            drop_notice: DropNotice::default(),
            stats: SessionStats::default(),
        };
        if request.auth_pass.is_some() {
            session.connect_pending = true;
            session.ua.register(now);
        } else {
            session
                .outputs
                .push_back(GatewayOutput::ConnectResult(Ok(())));
        }
        session.pump(now);
        Ok(session)
    }

    /// The address media and Contact are advertised at.
    fn media_ip(&self) -> IpAddr {
        self.config.advertised_ip.unwrap_or(self.sockets.sip.ip())
    }

    fn origin(&mut self) -> Origin {
        self.sdp_version += 1;
        let ip = self.media_ip();
        Origin {
            username: "-".into(),
            session_id: self.session_id,
            session_version: self.sdp_version,
            nettype: "IN".into(),
            addrtype: if ip.is_ipv4() { "IP4" } else { "IP6" }.into(),
            address: ip.to_string(),
        }
    }

    /// What we offer or answer with `tokens`, on our media ports (`None` without them).
    fn caps(&self, tokens: &[CodecToken]) -> Option<LocalCapabilities> {
        let ports = self.sockets.media?;
        Some(capabilities(
            tokens,
            self.media_ip(),
            ports.audio,
            ports.video,
        ))
    }

    /// The caller bound the RTP ports a call needs (before passing on the client's `invite`
    /// or `accept`), or released them after the call (`None`).
    pub fn set_media_ports(&mut self, ports: Option<MediaPorts>) {
        self.sockets.media = ports;
    }

    /// Whether the session has a call (placed, ringing, or established): while it has none,
    /// it needs no media port.
    pub fn has_call(&self) -> bool {
        self.call.is_some() || self.bridge.is_some()
    }

    /// Whether the client's `call` would start a call's media and so needs the call's RTP
    /// ports first: an `invite` while there is no call, an `accept` of a ringing call.
    pub fn needs_media_ports(&self, call: &ClientCall) -> bool {
        match call {
            ClientCall::Invite { .. } => self.call.is_none(),
            ClientCall::Accept { .. } => matches!(self.call, Some(CallState::Incoming { .. })),
            _ => false,
        }
    }

    /// The caller could not bind RTP ports for the client's `call` (an `invite` or `accept`):
    /// the client hears why, and an incoming call it wanted to accept is refused.
    pub fn media_ports_failed(&mut self, now: Instant, call: ClientCall, reason: &str) {
        match call {
            ClientCall::Invite { .. } => self.stats.call(CallDirection::Outgoing, "failed"),
            ClientCall::Accept { .. } => {
                if let Some(CallState::Incoming { call, .. }) = self.call.take() {
                    let _ = self.ua.reject(now, call, 503, "Service Unavailable");
                    self.stats.call(CallDirection::Incoming, "failed");
                }
            }
            other => return self.client_call(now, other),
        }
        self.callback(ClientCallback::Rejected(format!("503 {reason}")));
        self.pump(now);
    }

    /// What we offer or accept for a client naming `tokens`: its own codecs, and when it sends
    /// Speex or Opus, what the host can transcode that to, after its audio codecs (so a far
    /// end that shares a codec with the client still picks that one: pass-through). See the
    /// module documentation for the order.
    fn offered_tokens(&self, tokens: &[CodecToken]) -> Vec<CodecToken> {
        let mut out = tokens.to_vec();
        let Some(client) = client_codec(tokens) else {
            return out;
        };
        let targets: &[CodecToken] = match client {
            ClientCodec::Speex(_) => &[CodecToken::Pcmu, CodecToken::Pcma],
            ClientCodec::Opus => &[
                CodecToken::Wideband,
                CodecToken::Pcmu,
                CodecToken::Pcma,
                CodecToken::Narrowband,
            ],
        };
        let libraries = self.config.libraries();
        let mut at = out
            .iter()
            .rposition(|t| !t.is_video() && *t != CodecToken::Dtmf)
            .map_or(0, |i| i + 1);
        for &target in targets {
            let possible =
                far_codec(target).is_some_and(|far| libraries.can_transcode(client, far));
            if possible && !out.contains(&target) {
                out.insert(at, target);
                at += 1;
            }
        }
        out
    }

    /// Every codec the gateway can bridge for any client: what an incoming offer is checked
    /// against before the client is alerted. Not Opus: only an enhanced-RTMP client can take
    /// an Opus call, and which kind of client this is shows only when it accepts (an offer
    /// with Opus and G.711 passes on its G.711).
    fn all_tokens(&self) -> Vec<CodecToken> {
        let speex = if self.narrowband {
            [CodecToken::Narrowband, CodecToken::Wideband]
        } else {
            [CodecToken::Wideband, CodecToken::Narrowband]
        };
        let mut all = speex.to_vec();
        all.extend([
            CodecToken::Pcmu,
            CodecToken::Pcma,
            CodecToken::Dtmf,
            CodecToken::H264,
            CodecToken::Flv,
        ]);
        all
    }

    /// A call from the client (already answered with `_result` by the caller).
    pub fn client_call(&mut self, now: Instant, call: ClientCall) {
        match call {
            ClientCall::Invite { dest, codecs } => self.invite(now, &dest, codecs),
            ClientCall::Accept { codecs } => self.accept(now, codecs),
            ClientCall::Reject { status, reason } => {
                if let Some(CallState::Incoming { call, .. }) = self.call.take() {
                    let _ = self.ua.reject(now, call, status, &reason);
                    self.stats
                        .call(CallDirection::Incoming, call_outcome(status));
                }
            }
            ClientCall::Bye => self.hang_up(now),
            ClientCall::SendDtmf(digit) => {
                if let Some(bridge) = &mut self.bridge {
                    bridge.send_dtmf(now, digit);
                }
            }
            ClientCall::Hold(hold) => self.hold(now, hold),
        }
        self.pump(now);
    }

    fn invite(&mut self, now: Instant, dest: &str, codecs: Vec<CodecToken>) {
        // Every way out but the INVITE sent is a call the gateway could not place.
        if self.call.is_some() {
            self.stats.call(CallDirection::Outgoing, "failed");
            self.callback(ClientCallback::Rejected("486 Busy Here".into()));
            return;
        }
        let Some(target) = sip_uri(dest) else {
            self.stats.call(CallDirection::Outgoing, "failed");
            self.callback(ClientCallback::Rejected("400 Bad Destination".into()));
            return;
        };
        let report_tokens = !codecs.is_empty();
        let tokens = if codecs.is_empty() {
            legacy_tokens(self.narrowband)
        } else {
            codecs
        };
        let Some(caps) = self.caps(&self.offered_tokens(&tokens)) else {
            self.stats.call(CallDirection::Outgoing, "failed");
            self.callback(ClientCallback::Rejected("503 no RTP ports".into()));
            return;
        };
        let origin = self.origin();
        let mut offer = create_offer(&caps, &origin);
        match (self.config.srtp, self.keys_may_travel()) {
            (SrtpMode::Off, _) | (SrtpMode::Offer, false) => {}
            (SrtpMode::Require, false) => {
                self.stats.call(CallDirection::Outgoing, "failed");
                self.callback(ClientCallback::Rejected(format!(
                    "488 {NO_KEYS_OVER_PLAIN}"
                )));
                return;
            }
            (mode, true) => {
                let mut keys = self.key_supply();
                secure_offer(&mut offer, &mut keys, mode == SrtpMode::Require)
            }
        }
        match self.ua.invite(now, target, Bytes::from(offer.serialize())) {
            Ok(call) => {
                self.call = Some(CallState::Outgoing {
                    call,
                    since: now,
                    tokens,
                    report_tokens,
                    offer,
                })
            }
            Err(e) => {
                self.stats.call(CallDirection::Outgoing, "failed");
                self.callback(ClientCallback::Rejected(format!("500 {e}")));
            }
        }
    }

    fn accept(&mut self, now: Instant, codecs: Vec<CodecToken>) {
        let Some(CallState::Incoming {
            call, offer, since, ..
        }) = self.call.take()
        else {
            return;
        };
        let report_tokens = !codecs.is_empty();
        let tokens = if codecs.is_empty() {
            legacy_tokens(self.narrowband)
        } else {
            codecs
        };
        let Some(caps) = self.caps(&self.offered_tokens(&tokens)) else {
            let _ = self.ua.reject(now, call, 503, "Service Unavailable");
            self.stats.call(CallDirection::Incoming, "failed");
            self.callback(ClientCallback::Rejected("503 no RTP ports".into()));
            return;
        };
        let origin = self.origin();
        let settled = self.answer_offer(&offer, &caps, &origin).and_then(|local| {
            let negotiated = negotiated_media(&local, &offer, true);
            let keys = self.settle_srtp(&offer, &local, true, &negotiated)?;
            Ok((local, negotiated, keys))
        });
        let (local, negotiated, keys) = match settled {
            Ok(settled) => settled,
            Err(_) => {
                let _ = self.ua.reject(now, call, 488, "Not Acceptable Here");
                self.stats.call(CallDirection::Incoming, "failed");
                self.callback(ClientCallback::Rejected("488 Not Acceptable Here".into()));
                return;
            }
        };
        if self
            .ua
            .answer(now, call, Bytes::from(local.serialize()))
            .is_err()
        {
            self.stats.call(CallDirection::Incoming, "failed");
            return;
        }
        self.peer_session_id = Some(offer.origin.session_id);
        let started = (since, CallDirection::Incoming);
        self.start_media(
            now,
            call,
            started,
            local,
            tokens,
            (&negotiated, &keys),
            report_tokens,
        );
    }

    fn hang_up(&mut self, now: Instant) {
        match self.call.take() {
            Some(CallState::Incoming { call, .. }) => {
                let _ = self.ua.reject(now, call, 603, "Decline");
                self.stats.call(CallDirection::Incoming, call_outcome(603));
            }
            Some(state) => {
                if let CallState::Outgoing { .. } = state {
                    self.stats.call(CallDirection::Outgoing, "cancelled");
                }
                let _ = self.ua.hangup(now, state.id());
                self.stop_media(now);
            }
            None => {}
        }
    }

    /// The operator ends the call (the HTTP API's `end`): as the client's own `bye` would, an
    /// established call gets a BYE, a call we placed that is not answered yet a CANCEL, a
    /// ringing incoming call a 603 Decline; the outcome is counted as for the client's `bye`.
    /// Returns the callback that tells the client, as when the far end ends a call (`byed`;
    /// `rejected("487 Request Terminated")`, what the far end answers a cancelled INVITE;
    /// `cancelled(from, to)`, as when the caller gives up), for the caller to send with its
    /// own account of why; `None` when there is no call (nothing is done).
    pub fn end_call(&mut self, now: Instant) -> Option<ClientCallback> {
        let callback = match self.call.as_ref()? {
            CallState::Established { .. } => ClientCallback::Byed,
            CallState::Outgoing { .. } => {
                ClientCallback::Rejected("487 Request Terminated".to_owned())
            }
            CallState::Incoming { from, to, .. } => ClientCallback::Cancelled {
                from: from.clone(),
                to: to.clone(),
            },
        };
        self.hang_up(now);
        self.pump(now);
        Some(callback)
    }

    fn hold(&mut self, now: Instant, hold: bool) {
        let Some(CallState::Established {
            call,
            local,
            pending_offer,
            ..
        }) = &mut self.call
        else {
            return;
        };
        if pending_offer.is_some() {
            return;
        }
        let offer = reoffer(local, hold);
        if self
            .ua
            .reinvite(now, *call, Bytes::from(offer.serialize()))
            .is_ok()
        {
            *pending_offer = Some(offer);
        }
    }

    /// Where this session's fresh SDES keys come from: under the configured secret when
    /// there is one.
    fn key_supply(&mut self) -> SessionKeySupply<'_> {
        match &self.config.srtp_key_secret {
            Some(secret) => SessionKeySupply::Secret(SecretKeys {
                secret,
                rng: &mut self.rng,
            }),
            None => SessionKeySupply::Plain(&mut self.rng),
        }
    }

    /// Whether SDES keys may go in this session's SDP (see [`super::srtp_policy`]).
    fn keys_may_travel(&self) -> bool {
        keys_may_travel(self.config.transport, self.config.srtp_over_plain_sip)
    }

    /// Our answer to `offer` under the session's SRTP policy (see [`super::srtp_policy`]), or
    /// why there is none (the far end gets 488).
    fn answer_offer(
        &mut self,
        offer: &SessionDescription,
        caps: &LocalCapabilities,
        origin: &Origin,
    ) -> Result<SessionDescription, &'static str> {
        let secure_only = offer
            .media
            .iter()
            .filter(|m| m.port != 0)
            .all(|m| is_secure_profile(&m.proto));
        match (self.config.srtp, self.keys_may_travel()) {
            (SrtpMode::Off, _) | (SrtpMode::Offer, false) => {
                answer(offer, caps, origin).map_err(|_| match secure_only {
                    true => "only SRTP offered, and SRTP is off here",
                    false => "no common codec",
                })
            }
            (SrtpMode::Require, false) => Err(NO_KEYS_OVER_PLAIN),
            (mode, true) => {
                let mut keys = self.key_supply();
                let local = answer_secure(offer, caps, origin, &mut keys)
                    .map_err(|_| "no common codec, or no usable crypto on an SRTP line")?;
                let plain_line = local
                    .media
                    .iter()
                    .any(|m| m.port != 0 && m.crypto().next().is_none());
                if mode == SrtpMode::Require && plain_line {
                    return Err("SRTP required but the offer has no usable crypto");
                }
                Ok(local)
            }
        }
    }

    /// The SRTP keys of each m-line (by index) an offer/answer exchange settled on; all
    /// `None` while the session does not key SRTP. Fails when the answer's crypto matches
    /// nothing offered, or when SRTP is required and a line was answered without it.
    fn settle_srtp(
        &self,
        offer: &SessionDescription,
        answer: &SessionDescription,
        local_is_answer: bool,
        negotiated: &[Option<NegotiatedMedia>],
    ) -> Result<Vec<Option<SrtpKeys>>, &'static str> {
        let mut keys = vec![None; answer.media.len()];
        if self.config.srtp == SrtpMode::Off || !self.keys_may_travel() {
            return Ok(keys);
        }
        for m in negotiated.iter().flatten() {
            let found = negotiated_keys(offer, answer, local_is_answer, m.index)
                .map_err(|_| "the far end's crypto answer matches no offered key")?;
            if found.is_none() && self.config.srtp == SrtpMode::Require {
                return Err("SRTP required but the far end answered without crypto");
            }
            keys[m.index] = found;
        }
        Ok(keys)
    }

    /// The bridge for a negotiated call, and the `accepted` callback; the call counts as
    /// answered, its setup time (from `started`, its INVITE) observed.
    #[allow(clippy::too_many_arguments)]
    fn start_media(
        &mut self,
        now: Instant,
        call: CallId,
        started: (Instant, CallDirection),
        local: SessionDescription,
        tokens: Vec<CodecToken>,
        (negotiated, srtp): (&[Option<NegotiatedMedia>], &[Option<SrtpKeys>]),
        report_tokens: bool,
    ) {
        let mut setup = bridge_setup(negotiated, srtp, self.config.mtu, self.config.rtp_source);
        // An audio codec the client did not name: it is there because we transcode.
        if let Some(leg) = &setup.audio {
            if !tokens.contains(&leg.codec) {
                setup.transcode = client_codec(&tokens);
            }
        }
        let audio = match setup.transcode {
            // The client hears and speaks its own codec.
            Some(ClientCodec::Speex(SpeexBand::Wideband)) => Some(CodecToken::Wideband),
            Some(ClientCodec::Speex(SpeexBand::Narrowband)) => Some(CodecToken::Narrowband),
            Some(ClientCodec::Opus) => Some(CodecToken::Opus),
            None => setup.audio.as_ref().map(|l| l.codec),
        };
        let video = setup.video.as_ref().map(|l| l.codec);
        self.bridge = MediaBridge::new(
            &setup,
            &self.cname,
            &mut self.rng,
            now,
            self.config.libraries(),
        );
        let (since, direction) = started;
        self.stats.call(direction, "answered");
        self.stats
            .setup
            .observe(SETUP_BOUNDS, now.saturating_duration_since(since));
        self.call = Some(CallState::Established {
            call,
            since: now,
            direction,
            codecs: (audio, video),
            local,
            tokens,
            pending_offer: None,
        });
        let codecs = report_tokens.then_some((audio, video));
        self.callback(ClientCallback::Accepted { codecs });
    }

    fn stop_media(&mut self, now: Instant) {
        self.peer_session_id = None;
        if let Some(mut bridge) = self.bridge.take() {
            self.stats.media.add(&bridge.totals());
            for rtp in bridge.close(now) {
                self.outputs.push_back(GatewayOutput::Rtp(rtp));
            }
        }
    }

    fn callback(&mut self, callback: ClientCallback) {
        self.outputs.push_back(GatewayOutput::Callback(callback));
    }

    /// A message the client published on `local`: the RTP it makes is appended to `out`, and
    /// nothing else happens. It moves no timer ([`Self::poll_timeout`]) and no media address,
    /// so a host need not ask for them again after it (the gateway host relies on this on
    /// every frame). A host with many sessions passes one buffer of its own for all of them:
    /// it stays in the cache, where each session's own queue would be a cache miss to write
    /// and another to read back on every frame.
    // Once per packet, from one place: inlined into its caller (no call, no argument copies).
    #[inline]
    pub fn client_media(&mut self, now: Instant, msg: &RtmpMessage, out: &mut Vec<OutgoingRtp>) {
        if let Some(bridge) = &mut self.bridge {
            bridge.from_client(now, msg, out);
        }
    }

    /// The client (re)started playing `remote`: its timestamps restart.
    pub fn remote_play_started(&mut self, now: Instant) {
        if let Some(bridge) = &mut self.bridge {
            bridge.reset_playback(now);
        }
    }

    /// A datagram on the session's SIP socket.
    pub fn sip_datagram(&mut self, now: Instant, source: SocketAddr, data: Bytes) {
        self.ua.handle_datagram(now, source, data);
        self.pump(now);
    }

    /// Bytes from the TCP connection to (or from) `peer`; whole messages are taken off the
    /// front of `buf`, a partial one stays for the next call. `false` when the bytes are not
    /// SIP: the caller closes the connection and reports it with
    /// [`GatewaySession::sip_stream_failed`].
    pub fn sip_stream(&mut self, now: Instant, peer: SocketAddr, buf: &mut BytesMut) -> bool {
        let ok = self.ua.handle_stream(now, peer, buf);
        self.pump(now);
        ok
    }

    /// The TCP connection to `peer` could not be opened or has closed (`error` says why):
    /// the transactions that were using it fail at once, the client told why (a REGISTER in
    /// progress rejects the connect, an INVITE is `rejected`, a BYE ends the call).
    pub fn sip_stream_failed(&mut self, now: Instant, peer: SocketAddr, error: &str) {
        let transport = self.config.transport;
        self.stream_failure = Some(format!("SIP over {transport} to {peer}: {error}"));
        self.ua.stream_failed(now, peer);
        self.pump(now);
        self.stream_failure = None;
    }

    /// `status reason`, or for a 503 caused by a failed TCP connection, what failed.
    fn final_text(&self, status: u16, reason: &str) -> String {
        match &self.stream_failure {
            Some(failure) if status == 503 => format!("503 {failure}"),
            _ => format!("{status} {reason}"),
        }
    }

    /// Where the far end's media for `leg` comes from and goes to (its SDP address, or
    /// where its first packet came from), while a call has media.
    pub fn media_remote(&self, leg: Leg) -> Option<SocketAddr> {
        self.bridge.as_ref()?.remote(leg)
    }

    /// The call's state, if there is a call: `outgoing` (our INVITE is out), `incoming`
    /// (the client was told of an INVITE) or `established`.
    pub fn call_state(&self) -> Option<&'static str> {
        Some(match self.call.as_ref()? {
            CallState::Outgoing { .. } => "outgoing",
            CallState::Incoming { .. } => "incoming",
            CallState::Established { .. } => "established",
        })
    }

    /// The call for the HTTP API, if there is one.
    pub(crate) fn call_view(&self) -> Option<CallView> {
        let (direction, since, established, codecs) = match self.call.as_ref()? {
            CallState::Outgoing { since, .. } => {
                (CallDirection::Outgoing, *since, false, (None, None))
            }
            CallState::Incoming { since, .. } => {
                (CallDirection::Incoming, *since, false, (None, None))
            }
            CallState::Established {
                since,
                direction,
                codecs,
                ..
            } => (*direction, *since, true, *codecs),
        };
        let bridge = self.bridge.as_ref();
        Some(CallView {
            direction,
            since,
            established,
            audio_codec: codecs.0.map(CodecToken::name),
            video_codec: codecs.1.map(CodecToken::name),
            audio: bridge.and_then(|b| b.leg_view(Leg::Audio)),
            video: bridge.and_then(|b| b.leg_view(Leg::Video)),
        })
    }

    /// What the session counted, its call's media so far included.
    pub(crate) fn stats(&self) -> SessionStats {
        let mut stats = self.stats;
        stats.register_attempts = self.ua.register_attempts();
        if let Some(bridge) = &self.bridge {
            stats.media.add(&bridge.totals());
        }
        stats
    }

    /// Whether the client's address of record is registered now.
    pub(crate) fn registered(&self) -> bool {
        self.ua.is_registered()
    }

    /// Our SDP session id (`o=`), the same in every offer and answer of this client.
    pub fn sdp_session_id(&self) -> u64 {
        self.session_id
    }

    /// The far end's SDP session id, while a call has media.
    pub fn peer_sdp_session_id(&self) -> Option<u64> {
        self.bridge.as_ref().and(self.peer_session_id)
    }

    /// The SSRC we send `leg` with, while a call has media.
    pub fn media_ssrc(&self, leg: Leg) -> Option<u32> {
        self.bridge.as_ref()?.ssrc(leg)
    }

    /// A datagram on one of the RTP (or RTCP) sockets: the media and digits it makes for the
    /// client are appended to `out` (for the reason [`Self::client_media`] gives); what else
    /// it causes (a keyframe request over SIP, a notice) goes to the session's outputs. True
    /// when it could only produce media and callbacks for the client: an audio RTP packet of
    /// an audio-only call whose far end's address is latched moves no timer
    /// ([`Self::poll_timeout`]) and no media address, so a host need not ask for them again
    /// (the gateway host relies on this on every frame). RTCP, video and the first packet
    /// (which latches) may move them.
    // Once per packet, from one place: inlined into its caller (no call, no argument copies).
    #[inline]
    pub fn rtp_datagram(
        &mut self,
        now: Instant,
        leg: Leg,
        rtcp: bool,
        source: SocketAddr,
        data: Bytes,
        out: &mut Vec<FromFarEnd>,
    ) -> bool {
        let Some(bridge) = &mut self.bridge else {
            return true;
        };
        // No video on a settled packet's call: no keyframe to ask for.
        let settled = leg == Leg::Audio && !rtcp && bridge.audio_only_and_latched();
        if let Err(reason) = bridge.from_far_end(now, leg, rtcp, source, data, out) {
            return !self.media_dropped(now, leg, rtcp, source, reason);
        }
        if !settled {
            self.request_keyframe(now);
        }
        settled
    }

    /// Logs dropped far-end datagrams, at most once per [`DropNotice::INTERVAL`]; true when a
    /// notice was queued.
    #[cold]
    fn media_dropped(
        &mut self,
        now: Instant,
        leg: Leg,
        rtcp: bool,
        source: SocketAddr,
        reason: Dropped,
    ) -> bool {
        let Some(total) = self.bridge.as_ref().map(|b| b.drops().total()) else {
            return false;
        };
        let Some(count) = self.drop_notice.due(now, total) else {
            return false;
        };
        let kind = match (leg, rtcp) {
            (Leg::Audio, false) => "audio RTP",
            (Leg::Audio, true) => "audio RTCP",
            (Leg::Video, false) => "video RTP",
            (Leg::Video, true) => "video RTCP",
        };
        let why = match reason {
            Dropped::UnknownSource => "not from the far end's address",
            Dropped::Undecodable => "not RTP",
            Dropped::UnexpectedPayload => "payload type not negotiated",
            Dropped::UnexpectedSsrc => "unexpected SSRC",
            Dropped::SrtpAuthentication => "SRTP authentication failed",
            Dropped::SrtpReplay => "SRTP replay",
        };
        self.outputs.push_back(GatewayOutput::Notice(format!(
            "dropped {count} far-end datagram(s) since the last notice; last: {kind} from \
             {source}, {why}"
        )));
        true
    }

    fn deliver_far_end(&mut self) {
        for item in self.from_far.drain(..) {
            self.outputs.push_back(match item {
                FromFarEnd::Media(msg) => GatewayOutput::RemoteMedia(msg),
                FromFarEnd::Dtmf(d) => GatewayOutput::Callback(ClientCallback::Dtmf(d)),
            });
        }
    }

    /// Asks the far end for a keyframe with SIP INFO (picture_fast_update), understood by
    /// phones old and new, at most once a second (the bridge rate-limits).
    fn request_keyframe(&mut self, now: Instant) {
        let Some(CallState::Established { call, .. }) = &self.call else {
            return;
        };
        let call = *call;
        if self.bridge.as_mut().is_some_and(|b| b.keyframe_needed(now)) {
            let body = Bytes::from_static(
                b"<?xml version=\"1.0\" encoding=\"utf-8\" ?>\r\n<media_control><vc_primitive><to_encoder><picture_fast_update/></to_encoder></vc_primitive></media_control>\r\n",
            );
            let _ = self
                .ua
                .send_info(now, call, "application/media_control+xml", body);
            self.pump(now);
        }
    }

    /// The earliest time [`GatewaySession::handle_timeout`] has work.
    pub fn poll_timeout(&mut self) -> Option<Instant> {
        let ua = match self.ua_timeout {
            Some(known) => known,
            None => *self.ua_timeout.insert(self.ua.poll_timeout()),
        };
        let bridge = self.bridge.as_ref().and_then(MediaBridge::poll_timeout);
        crate::gateway::media_bridge::earliest(ua, bridge)
    }

    /// Timers: SIP retransmissions and refreshes, DTMF packets, RTCP reports.
    pub fn handle_timeout(&mut self, now: Instant) {
        self.ua.handle_timeout(now);
        if let Some(bridge) = &mut self.bridge {
            bridge.poll(now, &mut self.rtp_out, &mut self.from_far);
            for rtp in self.rtp_out.drain(..) {
                self.outputs.push_back(GatewayOutput::Rtp(rtp));
            }
            self.deliver_far_end();
        }
        self.pump(now);
    }

    /// The client went away: CANCEL or BYE the call, refuse a pending incoming one (480
    /// Temporarily Unavailable), and unregister.
    pub fn close(&mut self, now: Instant) {
        self.close_refusing(now, 480, "Temporarily Unavailable");
    }

    /// The gateway is shutting down: as [`GatewaySession::close`], but a call still ringing
    /// in is refused with 486 Busy Here. Busy, not unavailable: this gateway will take no
    /// call, while 486 is not a global failure, so a forking proxy still tries the user's
    /// other contacts (another gateway of the farm).
    pub fn shut_down(&mut self, now: Instant) {
        self.close_refusing(now, 486, "Busy Here");
    }

    fn close_refusing(&mut self, now: Instant, status: u16, reason: &str) {
        self.closed = true;
        match self.call.take() {
            Some(CallState::Incoming { call, .. }) => {
                let _ = self.ua.reject(now, call, status, reason);
                self.stats
                    .call(CallDirection::Incoming, call_outcome(status));
            }
            Some(state) => {
                if let CallState::Outgoing { .. } = state {
                    self.stats.call(CallDirection::Outgoing, "cancelled");
                }
                let _ = self.ua.hangup(now, state.id());
            }
            None => {}
        }
        self.stop_media(now);
        if self.ua.is_registered() {
            self.ua.unregister(now);
        }
        self.pump(now);
    }

    /// After [`GatewaySession::close`]: nothing is left to do (no call, no transaction
    /// waiting for an answer, no output), so the SIP socket can go. Transactions that only
    /// absorb retransmissions of what was already answered (for up to 32 s over UDP) do not
    /// hold it: a far end whose retransmission finds the port closed has its answer already.
    pub fn is_finished(&self) -> bool {
        self.call.is_none()
            && self.ua.call_count() == 0
            && self.ua.open_transaction_count() == 0
            && self.outputs.is_empty()
    }

    /// The next output.
    pub fn poll_output(&mut self) -> Option<GatewayOutput> {
        self.outputs.pop_front()
    }

    /// Moves the user agent's datagrams and events into outputs.
    fn pump(&mut self, now: Instant) {
        self.ua_timeout = None;
        loop {
            while let Some((destination, data)) = self.ua.poll_transmit() {
                self.outputs
                    .push_back(GatewayOutput::SipSend { destination, data });
            }
            let Some(event) = self.ua.poll_event() else {
                return;
            };
            self.on_ua_event(now, event);
        }
    }

    fn on_ua_event(&mut self, now: Instant, event: UaEvent) {
        match event {
            UaEvent::Registered { .. } => {
                self.stats.registration("registered");
                if self.closed {
                    // The REGISTER was in flight when the client left: nobody is there to
                    // take calls, so the binding goes again (else it would last its expiry).
                    self.connect_pending = false;
                    self.ua.unregister(now);
                } else if std::mem::take(&mut self.connect_pending) {
                    self.outputs.push_back(GatewayOutput::ConnectResult(Ok(())));
                }
            }
            UaEvent::RegistrationFailed { status, reason } => {
                self.stats.registration(register_outcome(status));
                let text = self.final_text(status, &reason);
                if std::mem::take(&mut self.connect_pending) {
                    self.outputs
                        .push_back(GatewayOutput::ConnectResult(Err(text)));
                } else {
                    // The client is told: it no longer receives calls.
                    self.callback(ClientCallback::RegistrationFailed(text.clone()));
                    self.outputs
                        .push_back(GatewayOutput::Notice(format!("registration lost: {text}")));
                }
            }
            UaEvent::Unregistered => {}
            UaEvent::IncomingCall {
                call,
                from,
                to,
                offer,
            } => self.incoming(now, call, from.to_string(), to.to_string(), offer),
            UaEvent::Ringing { call } => {
                if self.call.as_ref().map(CallState::id) == Some(call) {
                    self.callback(ClientCallback::Ringing("180 Ringing".into()));
                }
            }
            UaEvent::Answered { call, answer } => self.answered(now, call, answer),
            UaEvent::Rejected {
                call,
                status,
                reason,
            } => {
                if self.call.as_ref().map(CallState::id) == Some(call) {
                    self.call = None;
                    self.stats
                        .call(CallDirection::Outgoing, call_outcome(status));
                    let text = self.final_text(status, &reason);
                    self.callback(ClientCallback::Rejected(text));
                }
            }
            UaEvent::Cancelled { call } => {
                if let Some(CallState::Incoming { from, to, .. }) =
                    self.call.take_if(|c| c.id() == call)
                {
                    self.stats.call(CallDirection::Incoming, "cancelled");
                    self.callback(ClientCallback::Cancelled { from, to });
                }
            }
            UaEvent::Ended { call } => {
                if self.call.as_ref().map(CallState::id) == Some(call) {
                    // Ended before it was established: it failed.
                    match self.call.take() {
                        Some(CallState::Outgoing { .. }) => {
                            self.stats.call(CallDirection::Outgoing, "failed")
                        }
                        Some(CallState::Incoming { .. }) => {
                            self.stats.call(CallDirection::Incoming, "failed")
                        }
                        _ => {}
                    }
                    self.stop_media(now);
                    self.callback(ClientCallback::Byed);
                }
            }
            UaEvent::ReInvite { call, offer } => self.reinvited(now, call, offer),
            UaEvent::ReInviteFailed { .. } => {
                if let Some(CallState::Established { pending_offer, .. }) = &mut self.call {
                    *pending_offer = None;
                }
            }
            UaEvent::Info { .. } => {}
        }
    }

    fn incoming(
        &mut self,
        now: Instant,
        call: CallId,
        from: String,
        to: String,
        offer: Option<Bytes>,
    ) {
        if self.call.is_some() {
            let _ = self.ua.reject(now, call, 486, "Busy Here");
            self.stats.call(CallDirection::Incoming, "busy");
            return;
        }
        let offer = offer.and_then(|o| SessionDescription::parse(&o).ok());
        let Some(offer) = offer else {
            // Offerless INVITEs (offer in the ACK) are not bridged.
            let _ = self.ua.reject(now, call, 488, "Not Acceptable Here");
            self.stats.call(CallDirection::Incoming, "failed");
            return;
        };
        // Refuse before alerting when nothing in the offer can be bridged. (The call's ports
        // are bound when the client accepts: any port will do for this check.)
        let origin = self.origin();
        let caps = capabilities(&self.all_tokens(), self.media_ip(), 9, 9);
        if let Err(why) = self.answer_offer(&offer, &caps, &origin) {
            let _ = self.ua.reject(now, call, 488, "Not Acceptable Here");
            self.stats.call(CallDirection::Incoming, "failed");
            self.outputs.push_back(GatewayOutput::Notice(format!(
                "refused a call from {from}: {why}"
            )));
            return;
        }
        let _ = self.ua.ringing(now, call);
        self.call = Some(CallState::Incoming {
            call,
            since: now,
            offer,
            from: from.clone(),
            to: to.clone(),
        });
        self.callback(ClientCallback::Invited { from, to });
    }

    fn answered(&mut self, now: Instant, call: CallId, answer_body: Bytes) {
        let Ok(remote) = SessionDescription::parse(&answer_body) else {
            let _ = self.ua.hangup(now, call);
            return;
        };
        match self.call.take() {
            Some(CallState::Outgoing {
                call: c,
                since,
                tokens,
                report_tokens,
                offer,
            }) if c == call => {
                let settled = process_answer(&offer, &remote)
                    .map_err(|_| "Not Acceptable Here")
                    .and_then(|negotiated| {
                        let keys = self.settle_srtp(&offer, &remote, false, &negotiated)?;
                        Ok((negotiated, keys))
                    });
                match settled {
                    Ok((negotiated, keys)) => {
                        self.peer_session_id = Some(remote.origin.session_id);
                        let started = (since, CallDirection::Outgoing);
                        self.start_media(
                            now,
                            call,
                            started,
                            offer,
                            tokens,
                            (&negotiated, &keys),
                            report_tokens,
                        )
                    }
                    Err(why) => {
                        // Answered: the far end's 200 is acknowledged and the call ended
                        // with a BYE.
                        let _ = self.ua.hangup(now, call);
                        self.stats.call(CallDirection::Outgoing, "failed");
                        self.callback(ClientCallback::Rejected(format!("488 {why}")));
                    }
                }
            }
            Some(CallState::Established {
                call: c,
                since,
                direction,
                codecs,
                tokens,
                pending_offer: Some(offer),
                ..
            }) if c == call => {
                // Our hold/resume re-INVITE was answered: the new offer is the session, and
                // the far end may have changed its key.
                let negotiated = negotiated_media(&offer, &remote, false);
                if let Ok(keys) = self.settle_srtp(&offer, &remote, false, &negotiated) {
                    self.rekey(&negotiated, &keys);
                }
                self.call = Some(CallState::Established {
                    call,
                    since,
                    direction,
                    codecs,
                    local: offer,
                    tokens,
                    pending_offer: None,
                });
            }
            other => self.call = other,
        }
    }

    /// The call's legs take the keys a new exchange settled on (the first audio and video
    /// lines, as [`bridge_setup`] picks them).
    fn rekey(&mut self, negotiated: &[Option<NegotiatedMedia>], keys: &[Option<SrtpKeys>]) {
        let Some(bridge) = &mut self.bridge else {
            return;
        };
        for (leg, kind) in [(Leg::Audio, "audio"), (Leg::Video, "video")] {
            if let Some(m) = negotiated.iter().flatten().find(|n| n.kind == kind) {
                bridge.rekey(leg, keys.get(m.index).and_then(Option::as_ref));
            }
        }
    }

    fn reinvited(&mut self, now: Instant, call: CallId, offer: Bytes) {
        let Some(CallState::Established { tokens, .. }) = &self.call else {
            let _ = self.ua.reject(now, call, 488, "Not Acceptable Here");
            return;
        };
        let tokens = tokens.clone();
        let Ok(offer) = SessionDescription::parse(&offer) else {
            let _ = self.ua.reject(now, call, 488, "Not Acceptable Here");
            return;
        };
        let origin = self.origin();
        let local = match self.caps(&self.offered_tokens(&tokens)) {
            Some(caps) => self.answer_offer(&offer, &caps, &origin).ok(),
            None => None,
        };
        let negotiated = local.as_ref().map(|l| negotiated_media(l, &offer, true));
        let settled = match (local, negotiated) {
            (Some(local), Some(negotiated)) => self
                .settle_srtp(&offer, &local, true, &negotiated)
                .ok()
                .map(|keys| (local, negotiated, keys)),
            _ => None,
        };
        let Some((local, negotiated, keys)) = settled else {
            let _ = self.ua.reject(now, call, 488, "Not Acceptable Here");
            return;
        };
        if self
            .ua
            .answer(now, call, Bytes::from(local.serialize()))
            .is_err()
        {
            return;
        }
        // Hold: the far end stops sending to us (sendonly/inactive, or c=0.0.0.0).
        let direction = offer
            .media
            .first()
            .and_then(|m| m.direction())
            .unwrap_or_default();
        let zeroed = offer.media_connection(0).is_some_and(|c| c.is_hold());
        let held = zeroed || matches!(direction, Direction::SendOnly | Direction::Inactive);
        self.rekey(&negotiated, &keys);
        if let Some(bridge) = &mut self.bridge {
            // We may send only if the far end receives: its offer is sendrecv or recvonly.
            let far_receives = matches!(direction, Direction::SendRecv | Direction::RecvOnly);
            bridge.set_sending(!zeroed && far_receives);
            for (leg, m) in [(Leg::Audio, "audio"), (Leg::Video, "video")] {
                let remote = negotiated
                    .iter()
                    .flatten()
                    .find(|n| n.kind == m)
                    .and_then(|n| n.remote);
                if let Some(remote) = remote.filter(|r| !r.ip().is_unspecified()) {
                    bridge.move_remote(now, leg, remote);
                }
            }
        }
        if let Some(CallState::Established { local: l, .. }) = &mut self.call {
            *l = local;
        }
        self.callback(ClientCallback::Holded(held));
    }
}

/// The bridge setup from what was negotiated per m-line, and each m-line's SRTP keys.
fn bridge_setup(
    negotiated: &[Option<NegotiatedMedia>],
    srtp: &[Option<SrtpKeys>],
    mtu: usize,
    source_policy: SourcePolicy,
) -> BridgeSetup {
    let mut setup = BridgeSetup {
        audio: None,
        dtmf: None,
        video: None,
        mtu,
        source_policy,
        transcode: None,
    };
    for m in negotiated.iter().flatten() {
        let Some(codec) = CodecToken::from_rtpmap(&m.codec.encoding_name, m.codec.clock_rate)
        else {
            continue;
        };
        let Some(remote) = m.remote else { continue };
        let leg = LegSetup {
            codec,
            send_pt: m.payload_types.send,
            receive_pt: m.payload_types.receive,
            remote,
            srtp: srtp.get(m.index).cloned().flatten(),
        };
        if m.kind == "audio" && setup.audio.is_none() && !codec.is_video() {
            setup.dtmf = m.telephone_event.map(|t| DtmfSetup {
                send_pt: t.payload_types.send,
                receive_pt: t.payload_types.receive,
                clock_rate: t.clock_rate,
            });
            setup.audio = Some(leg);
        } else if m.kind == "video" && setup.video.is_none() && codec.is_video() {
            setup.video = Some(leg);
        }
    }
    setup
}

/// The transcodable codec the client sends, by its first Speex or Opus token.
fn client_codec(tokens: &[CodecToken]) -> Option<ClientCodec> {
    tokens.iter().find_map(|t| match t {
        CodecToken::Wideband => Some(ClientCodec::Speex(SpeexBand::Wideband)),
        CodecToken::Narrowband => Some(ClientCodec::Speex(SpeexBand::Narrowband)),
        CodecToken::Opus => Some(ClientCodec::Opus),
        _ => None,
    })
}

/// What the far end speaks when the call settles on `token` and is transcoded.
fn far_codec(token: CodecToken) -> Option<FarCodec> {
    Some(match token {
        CodecToken::Pcmu => FarCodec::G711(G711Law::Ulaw),
        CodecToken::Pcma => FarCodec::G711(G711Law::Alaw),
        CodecToken::Wideband => FarCodec::Speex(SpeexBand::Wideband),
        CodecToken::Narrowband => FarCodec::Speex(SpeexBand::Narrowband),
        _ => return None,
    })
}
