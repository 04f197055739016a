//! # SIP user agent (RFC 3261 8, 10, 12-15), sans-IO
//!
//! [`UserAgent`] is the transaction user on top of the [`TransactionLayer`]: it registers
//! (with Digest retry and refresh), places and receives calls, keeps their dialogs, and
//! answers what a simple endpoint must answer by itself (OPTIONS, CANCEL, BYE, 405, 481,
//! 482). Decisions belong to the application (the gateway): an incoming call is an
//! [`UaEvent::IncomingCall`] that the application later answers with
//! [`UserAgent::answer`], [`UserAgent::ringing`] or [`UserAgent::reject`]. Every call ends
//! with exactly one of [`UaEvent::Rejected`], [`UaEvent::Cancelled`] or [`UaEvent::Ended`];
//! when the application itself ends a call ([`UserAgent::hangup`], [`UserAgent::reject`])
//! the [`UaEvent::Ended`] is queued at once and the protocol work (CANCEL, BYE, ACK of a
//! late 2xx) goes on in the background.
//!
//! No sockets and no clock: datagrams and time go in, datagrams, events and the next
//! deadline come out. Randomness (tags, Call-IDs, branches, cnonces) comes from the seed.
//!
//! The work is split by concern: this file owns the configuration, the public vocabulary
//! and the event pump; `registration` the REGISTER cycle; `call` the per-call state; `uac`
//! and `uas` the two sides of INVITE and the in-dialog requests; `response_route` where
//! responses go over TCP once their request's connection is gone.
//!
//! ```
//! use std::time::Instant;
//! use bytes::Bytes;
//! use siprtmp_core::sip::{UaConfig, UaEvent, UserAgent};
//!
//! let alice_addr = "127.0.0.1:5070".parse().unwrap();
//! let bob_addr = "127.0.0.1:5080".parse().unwrap();
//! let mut alice = UserAgent::new(UaConfig::new("sip:alice@127.0.0.1".parse().unwrap(), alice_addr), 1);
//! let mut bob = UserAgent::new(UaConfig::new("sip:bob@127.0.0.1".parse().unwrap(), bob_addr), 2);
//! let now = Instant::now();
//!
//! let call = alice
//!     .invite(now, "sip:bob@127.0.0.1:5080".parse().unwrap(), Bytes::from_static(b"v=0\r\n"))
//!     .unwrap();
//! // A tiny "network": move every datagram to the other side until both are quiet.
//! let mut pump = |alice: &mut UserAgent, bob: &mut UserAgent| loop {
//!     let mut moved = false;
//!     while let Some((to, data)) = alice.poll_transmit() {
//!         assert_eq!(to, bob_addr);
//!         bob.handle_datagram(now, alice_addr, data);
//!         moved = true;
//!     }
//!     while let Some((_, data)) = bob.poll_transmit() {
//!         alice.handle_datagram(now, bob_addr, data);
//!         moved = true;
//!     }
//!     if !moved { break; }
//! };
//! pump(&mut alice, &mut bob);
//! let Some(UaEvent::IncomingCall { call: incoming, offer, .. }) = bob.poll_event() else { panic!() };
//! assert_eq!(offer.as_deref(), Some(&b"v=0\r\n"[..]));
//! bob.answer(now, incoming, Bytes::from_static(b"v=0\r\n")).unwrap();
//! pump(&mut alice, &mut bob);
//! assert!(matches!(alice.poll_event(), Some(UaEvent::Answered { call: c, .. }) if c == call));
//!
//! alice.hangup(now, call).unwrap();
//! pump(&mut alice, &mut bob);
//! assert_eq!(alice.poll_event(), Some(UaEvent::Ended { call }));
//! assert_eq!(bob.poll_event(), Some(UaEvent::Ended { call: incoming }));
//! ```
//!
//! [`TransactionLayer`]: super::TransactionLayer

mod call;
mod registration;
mod response_route;
mod uac;
mod uas;

use std::collections::{HashMap, VecDeque};
use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::time::Instant;

use bytes::{Bytes, BytesMut};

use super::dialog::{make_response, new_tag, Dialog, DialogError, SentBy};
use super::digest::{CredentialStore, Credentials};
use super::message::{Method, Request, Response, SipMessage};
use super::name_addr::NameAddr;
use super::parser::{parse_datagram, ParseLimits, StreamFramer};
use super::timers::TimerConfig;
use super::transaction::{TransactionEvent, TransactionId, TxError};
use super::transaction_layer::{Incoming, TransactionConfig, TransactionLayer};
use super::transport::{sent_by_of, Destination, Transport, DEFAULT_PORT, DEFAULT_TLS_PORT};
use super::uri::{Host, Scheme, SipUri, Uri};
use crate::rng::SeededRng;

use call::Call;
use registration::Registration;
use response_route::ResponseRoutes;

/// The methods this user agent handles, for `Allow` headers.
pub const ALLOW: &str = "INVITE, ACK, CANCEL, BYE, OPTIONS, INFO";

/// How a [`UserAgent`] presents itself and where it sends.
#[derive(Debug, Clone)]
pub struct UaConfig {
    /// Address of record, `sip:user@domain` (From of our requests, To of REGISTER).
    pub aor: SipUri,
    /// Display name in From.
    pub display_name: Option<String>,
    /// The bound local address; used in Via and Contact unless `advertised` is set.
    pub local: SocketAddr,
    /// The address to advertise instead of `local` (NAT: the external address).
    pub advertised: Option<SocketAddr>,
    /// The transport our requests use.
    pub transport: Transport,
    /// `sips:` for our Contact, the outbound proxy's Route and the registrar's Request-URI
    /// (a registrar configured as a `sips:` URI; needs [`Transport::Tls`]).
    pub sips: bool,
    /// Where REGISTER goes (defaults to the outbound proxy, then the AOR's host if it is an
    /// IP address).
    pub registrar: Option<SocketAddr>,
    /// Every request outside a dialog (and inside one without a route set) goes here, with
    /// a loose-routing `Route` header naming it.
    pub outbound_proxy: Option<SocketAddr>,
    /// Digest credentials for 401/407 challenges (REGISTER and INVITE).
    pub credentials: Option<Credentials>,
    /// Expires we ask for in REGISTER, seconds.
    pub register_expires: u32,
    /// Transaction timers.
    pub timers: TimerConfig,
    /// `User-Agent` (requests) and `Server` (responses) header value.
    pub user_agent: String,
    /// Most calls alive at once; a further incoming INVITE gets 486 Busy Here and
    /// [`UserAgent::invite`] fails with [`UaError::TooManyCalls`].
    pub max_calls: usize,
}

impl UaConfig {
    /// A configuration with defaults: UDP, no registrar, proxy or credentials, 3600 s
    /// registrations, default timers, `siprtmp` as User-Agent, at most 1000 calls.
    pub fn new(aor: SipUri, local: SocketAddr) -> UaConfig {
        UaConfig {
            aor,
            display_name: None,
            local,
            advertised: None,
            transport: Transport::Udp,
            sips: false,
            registrar: None,
            outbound_proxy: None,
            credentials: None,
            register_expires: 3600,
            timers: TimerConfig::default(),
            user_agent: "siprtmp".into(),
            max_calls: 1000,
        }
    }

    /// The address written in Via and Contact.
    pub fn public_addr(&self) -> SocketAddr {
        self.advertised.unwrap_or(self.local)
    }
}

/// A call handle, unique for the life of a [`UserAgent`] (not the SIP Call-ID).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct CallId(pub u64);

impl fmt::Display for CallId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "call{}", self.0)
    }
}

/// What the user agent tells the application.
// A few events per call, never on the media path: the size of IncomingCall's addresses
// does not matter, and plain fields keep matching on them simple.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum UaEvent {
    /// A REGISTER (or its refresh) succeeded; the binding lasts `expires` seconds.
    Registered {
        /// Granted lifetime in seconds.
        expires: u32,
    },
    /// A REGISTER failed for good (wrong password, refused, timeout as 408, refresh failed).
    RegistrationFailed {
        /// Final status (408 for a timeout, 0 when no registrar is configured).
        status: u16,
        /// Reason phrase.
        reason: String,
    },
    /// The un-REGISTER (Expires: 0) succeeded.
    Unregistered,
    /// A new incoming call; answer with [`UserAgent::answer`], [`UserAgent::ringing`] or
    /// [`UserAgent::reject`].
    IncomingCall {
        /// Its handle.
        call: CallId,
        /// The caller (From).
        from: NameAddr,
        /// Who was called (To).
        to: NameAddr,
        /// The SDP offer, `None` for an offerless INVITE.
        offer: Option<Bytes>,
    },
    /// Our INVITE got 180 or 183 (reported once).
    Ringing {
        /// The call.
        call: CallId,
    },
    /// Our INVITE or re-INVITE was accepted; `answer` is the 2xx body (SDP).
    Answered {
        /// The call.
        call: CallId,
        /// The SDP answer.
        answer: Bytes,
    },
    /// Our INVITE failed with a final status (>= 300; 408 on timeout). The call is over.
    Rejected {
        /// The call.
        call: CallId,
        /// Status code.
        status: u16,
        /// Reason phrase.
        reason: String,
    },
    /// The caller cancelled an incoming call before it was answered (we sent 487).
    Cancelled {
        /// The call.
        call: CallId,
    },
    /// The call is over (BYE either way, no ACK, 481/408 to an in-dialog request, or ended
    /// by the application).
    Ended {
        /// The call.
        call: CallId,
    },
    /// The peer sent a re-INVITE with this offer (hold/resume); answer with
    /// [`UserAgent::answer`] or [`UserAgent::reject`] (488).
    ReInvite {
        /// The call.
        call: CallId,
        /// The new offer (empty for an offerless re-INVITE).
        offer: Bytes,
    },
    /// Our re-INVITE was refused (491 glare, 488 ...); the call goes on with the old session.
    ReInviteFailed {
        /// The call.
        call: CallId,
        /// Status code.
        status: u16,
        /// Reason phrase.
        reason: String,
    },
    /// The peer sent INFO (DTMF relay, ...); we answered 200.
    Info {
        /// The call.
        call: CallId,
        /// Its Content-Type (empty if none).
        content_type: String,
        /// Its body.
        body: Bytes,
    },
}

/// Misuse of the [`UserAgent`] API.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum UaError {
    /// No live call has this handle (or the application already ended it).
    UnknownCall,
    /// Not allowed in the call's current state (answering an outgoing call, a second
    /// re-INVITE while one is pending, ...).
    InvalidState,
    /// `max_calls` calls are alive.
    TooManyCalls,
    /// The target is not a SIP URI with an IP address and no outbound proxy is configured.
    Unroutable,
    /// A status code outside what the operation allows.
    BadStatus(u16),
    /// The transaction layer refused.
    Transaction(TxError),
    /// The dialog refused (terminated, CSeq exhausted).
    Dialog(DialogError),
}

impl fmt::Display for UaError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            UaError::UnknownCall => f.write_str("unknown call"),
            UaError::InvalidState => f.write_str("not allowed in this call state"),
            UaError::TooManyCalls => f.write_str("too many calls"),
            UaError::Unroutable => f.write_str("no route to the target"),
            UaError::BadStatus(s) => write!(f, "status {s} not allowed here"),
            UaError::Transaction(e) => write!(f, "transaction layer: {e}"),
            UaError::Dialog(e) => write!(f, "dialog: {e}"),
        }
    }
}

impl std::error::Error for UaError {}

impl From<TxError> for UaError {
    fn from(e: TxError) -> UaError {
        UaError::Transaction(e)
    }
}

impl From<DialogError> for UaError {
    fn from(e: DialogError) -> UaError {
        UaError::Dialog(e)
    }
}

/// Counters of what the user agent dropped or refused, for metrics and tests.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct UaStats {
    /// Datagrams or stream data that did not parse as SIP (keep-alive CRLFs excluded).
    pub malformed: u64,
    /// Parsed messages the transaction layer discarded (stray responses, misrouted ...).
    pub dropped: u64,
    /// Requests the transaction layer answered statelessly (400, 503).
    pub rejected_stateless: u64,
    /// ACKs matching nothing.
    pub stray_acks: u64,
    /// Messages whose destination was a host name (we do not resolve names).
    pub unroutable: u64,
    /// Incoming INVITEs refused because `max_calls` calls were alive.
    pub busy: u64,
}

/// Who owns a client or server transaction.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Owner {
    Register,
    Invite(CallId),
    Reinvite(CallId),
    Bye(CallId),
    Info(CallId),
    Cancel(CallId),
    /// An INVITE or re-INVITE we answer (NoAck / AckFor2xx / CANCEL go to the call).
    ServerInvite(CallId),
}

/// The identity of an out-of-dialog request for merge detection (RFC 3261 8.2.2.2).
type MergeKey = (String, String, u32);

/// A SIP user agent: registration, calls and their dialogs, sans-IO.
///
/// Feed it [`handle_datagram`](Self::handle_datagram) and
/// [`handle_timeout`](Self::handle_timeout); after every call drain
/// [`poll_transmit`](Self::poll_transmit) and [`poll_event`](Self::poll_event) and re-read
/// [`poll_timeout`](Self::poll_timeout). See the [module documentation](self) for an
/// example.
#[derive(Debug)]
pub struct UserAgent {
    config: UaConfig,
    layer: TransactionLayer,
    rng: SeededRng,
    store: CredentialStore,
    registration: Registration,
    next_call: u64,
    calls: HashMap<CallId, Call>,
    /// (SIP Call-ID, our tag) -> call, for in-dialog requests.
    dialogs: HashMap<(String, String), CallId>,
    merge: HashMap<MergeKey, CallId>,
    owners: HashMap<TransactionId, Owner>,
    /// The ACK we sent for the 2xx to INVITE client transaction `id`, re-sent for every
    /// retransmitted 2xx until the transaction ends.
    acks: HashMap<TransactionId, (Request, SocketAddr)>,
    events: VecDeque<UaEvent>,
    framers: HashMap<SocketAddr, StreamFramer>,
    /// Where each live transaction's messages go, so that a failed TCP connection fails the
    /// transactions that were using it ([`UserAgent::stream_failed`]).
    destinations: HashMap<TransactionId, SocketAddr>,
    /// Where server transactions' responses go when their request's connection is gone.
    response_routes: ResponseRoutes,
    stats: UaStats,
}

impl UserAgent {
    /// A user agent with `config`; every random value derives from `seed`.
    pub fn new(config: UaConfig, seed: u64) -> UserAgent {
        let mut rng = SeededRng::new(seed);
        let mut local = sent_by_of(config.public_addr());
        local.transport = config.transport.as_str().into();
        let mut tc = TransactionConfig::new(local);
        tc.timers = config.timers;
        let layer = TransactionLayer::new(tc, rng.next_u64());
        let mut store = CredentialStore::new();
        if let Some(c) = &config.credentials {
            store.add(c.clone());
        }
        let registration = Registration::new(&mut rng, &config);
        UserAgent {
            config,
            layer,
            rng,
            store,
            registration,
            next_call: 0,
            calls: HashMap::new(),
            dialogs: HashMap::new(),
            merge: HashMap::new(),
            owners: HashMap::new(),
            acks: HashMap::new(),
            events: VecDeque::new(),
            framers: HashMap::new(),
            destinations: HashMap::new(),
            response_routes: ResponseRoutes::default(),
            stats: UaStats::default(),
        }
    }

    /// The configuration.
    pub fn config(&self) -> &UaConfig {
        &self.config
    }

    /// Drop and refusal counters.
    pub fn stats(&self) -> UaStats {
        self.stats
    }

    /// Calls alive (including ones ended by the application whose CANCEL is still running).
    pub fn call_count(&self) -> usize {
        self.calls.len()
    }

    /// Live transactions (for tests and metrics).
    pub fn transaction_count(&self) -> usize {
        self.layer.len()
    }

    /// Transactions still waiting for a final response (or an INVITE server's for its ACK):
    /// the rest only absorb retransmissions until their timers end, for up to 32 s over UDP.
    pub fn open_transaction_count(&self) -> usize {
        self.layer.open_count()
    }

    /// The SIP Call-ID of `call`, for logs.
    pub fn sip_call_id(&self, call: CallId) -> Option<&str> {
        self.calls.get(&call).map(|c| c.sip_call_id.as_str())
    }

    /// Where the peer of `call` sent its signalling from (UAS) or where we sent it (UAC).
    pub fn peer_addr(&self, call: CallId) -> Option<SocketAddr> {
        self.calls.get(&call).map(|c| c.peer)
    }

    /// A UDP datagram from `source`. Unparseable data is counted and dropped.
    pub fn handle_datagram(&mut self, now: Instant, source: SocketAddr, data: Bytes) {
        match parse_datagram(&data) {
            Ok(msg) => self.handle_message(now, msg, Transport::Udp, source),
            Err(_) => {
                // A keep-alive (RFC 5626 CRLF ping) is not an error.
                if !data.iter().all(|b| matches!(b, b'\r' | b'\n' | b' ')) {
                    self.stats.malformed += 1;
                }
            }
        }
    }

    /// Bytes read from the TCP connection to `peer`; complete messages are taken off the
    /// front of `buf`, a partial one stays. On a framing error the buffer is cleared and
    /// `false` returned: the driver should close the connection (and call
    /// [`close_stream`](Self::close_stream)).
    pub fn handle_stream(&mut self, now: Instant, peer: SocketAddr, buf: &mut BytesMut) -> bool {
        loop {
            let framer = self
                .framers
                .entry(peer)
                .or_insert_with(|| StreamFramer::new(ParseLimits::default()));
            match framer.push(buf) {
                Ok(Some(msg)) => {
                    // A stream is TCP or TLS: whichever the user agent speaks.
                    let transport = match self.config.transport {
                        Transport::Udp => Transport::Tcp,
                        reliable => reliable,
                    };
                    self.handle_message(now, msg, transport, peer)
                }
                Ok(None) => return true,
                Err(_) => {
                    self.stats.malformed += 1;
                    buf.clear();
                    self.framers.remove(&peer);
                    return false;
                }
            }
        }
    }

    /// The TCP connection to `peer` closed: forget its framing state.
    pub fn close_stream(&mut self, peer: SocketAddr) {
        self.framers.remove(&peer);
    }

    /// The TCP connection to `peer` could not be opened, or broke: forget its framing state
    /// and end every live transaction whose messages go there as a transport error (RFC 3261
    /// 17.1.4), reported like a 503: a REGISTER as [`UaEvent::RegistrationFailed`], an INVITE
    /// as [`UaEvent::Rejected`], an in-dialog request as the end of its call. Without this
    /// they would wait for their timeouts (32 s), since nothing is retransmitted over TCP.
    ///
    /// ```
    /// use std::time::Instant;
    /// use bytes::Bytes;
    /// use siprtmp_core::sip::{Transport, UaConfig, UaEvent, UserAgent};
    /// let mut config = UaConfig::new("sip:alice@127.0.0.1".parse().unwrap(), "127.0.0.1:5070".parse().unwrap());
    /// config.transport = Transport::Tcp;
    /// let mut alice = UserAgent::new(config, 1);
    /// let now = Instant::now();
    /// let call = alice.invite(now, "sip:bob@127.0.0.1:5080".parse().unwrap(), Bytes::new()).unwrap();
    /// let (to, _invite) = alice.poll_transmit().unwrap();
    /// alice.stream_failed(now, to); // connection refused
    /// assert!(matches!(alice.poll_event(), Some(UaEvent::Rejected { call: c, status: 503, .. }) if c == call));
    /// ```
    pub fn stream_failed(&mut self, now: Instant, peer: SocketAddr) {
        self.framers.remove(&peer);
        self.response_routes.connection_lost(peer);
        // Server transactions with somewhere else to answer (their Via) carry on.
        let mut failed: Vec<TransactionId> = self
            .destinations
            .iter()
            .filter(|(id, d)| **d == peer && !self.response_routes.reroutes(**id))
            .map(|(id, _)| *id)
            .collect();
        // In the order they started, so that a replay gives the same events.
        failed.sort_unstable();
        for id in failed {
            self.destinations.remove(&id);
            self.layer.handle_transport_error(now, id);
        }
        self.pump(now);
    }

    fn handle_message(
        &mut self,
        now: Instant,
        msg: SipMessage,
        transport: Transport,
        source: SocketAddr,
    ) {
        match self.layer.handle_incoming(now, msg, transport, source) {
            Incoming::Dropped(_) => self.stats.dropped += 1,
            Incoming::Rejected(_) => self.stats.rejected_stateless += 1,
            _ => {}
        }
        self.pump(now);
    }

    /// Fires whatever is due at `now`: transaction timers and the registration refresh.
    pub fn handle_timeout(&mut self, now: Instant) {
        self.layer.handle_timeout(now);
        self.pump(now);
        if self.registration.refresh_at.is_some_and(|t| t <= now) {
            self.registration.refresh_at = None;
            let expires = self.config.register_expires;
            self.send_register(now, expires);
        }
        self.pump(now);
    }

    /// When [`handle_timeout`](Self::handle_timeout) should next be called.
    pub fn poll_timeout(&mut self) -> Option<Instant> {
        match (self.layer.poll_timeout(), self.registration.refresh_at) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// The next datagram (or TCP message, for `Transport::Tcp`) to send, and where to.
    pub fn poll_transmit(&mut self) -> Option<(SocketAddr, Bytes)> {
        while let Some(t) = self.layer.poll_transmit() {
            match t.destination {
                Destination::Addr(mut a) => {
                    if let Some(id) = t.transaction {
                        a = self.response_routes.route(id, a);
                        self.destinations.insert(id, a);
                    }
                    return Some((a, t.bytes));
                }
                Destination::Host { .. } => self.stats.unroutable += 1,
            }
        }
        None
    }

    /// The next event for the application.
    pub fn poll_event(&mut self) -> Option<UaEvent> {
        self.events.pop_front()
    }

    /// Handles every event the transaction layer raised.
    fn pump(&mut self, now: Instant) {
        while let Some(ev) = self.layer.poll_event() {
            match ev {
                TransactionEvent::Request {
                    id,
                    request,
                    source,
                    transport,
                } => {
                    self.response_routes
                        .request(id, &request, transport, source);
                    self.on_request(now, id, request, source)
                }
                TransactionEvent::Cancel {
                    id,
                    invite,
                    request,
                } => self.on_cancel(now, id, invite, request),
                TransactionEvent::Response { id, response } => self.on_response(now, id, response),
                TransactionEvent::AckFor2xx { invite, .. } => self.on_ack(invite),
                TransactionEvent::StrayAck { .. } => self.stats.stray_acks += 1,
                TransactionEvent::NoAck { invite } => self.on_no_ack(now, invite),
                TransactionEvent::Timeout { id } => {
                    self.on_client_failure(now, id, 408, "Request Timeout")
                }
                TransactionEvent::TransportError { id } => {
                    self.on_client_failure(now, id, 503, "Service Unavailable")
                }
                TransactionEvent::Terminated { id } => {
                    self.destinations.remove(&id);
                    self.response_routes.forget(id);
                    self.owners.remove(&id);
                    self.acks.remove(&id);
                }
            }
        }
    }

    fn on_response(&mut self, now: Instant, id: TransactionId, response: Response) {
        match self.owners.get(&id).copied() {
            Some(Owner::Register) => self.on_register_response(now, id, response),
            Some(Owner::Invite(c)) => self.on_invite_response(now, id, c, response),
            Some(Owner::Reinvite(c)) => self.on_reinvite_response(now, id, c, response),
            Some(Owner::Bye(c)) | Some(Owner::Info(c)) => {
                if matches!(response.status, 408 | 481) {
                    self.finish(c, UaEvent::Ended { call: c });
                }
            }
            _ => {}
        }
    }

    /// A client transaction ended without a response (timeout or transport error).
    fn on_client_failure(&mut self, now: Instant, id: TransactionId, status: u16, reason: &str) {
        match self.owners.get(&id).copied() {
            Some(Owner::Register) if self.registration.tx == Some(id) => {
                self.registration_failed(status, reason)
            }
            Some(Owner::Invite(c)) => self.invite_failed(c, id, status, reason),
            Some(Owner::Reinvite(c)) => {
                // RFC 3261 12.2.1.2 / 14.1: a timed-out re-INVITE ends the dialog.
                if let Some(call) = self.calls.get_mut(&c) {
                    call.reinvite_out = None;
                }
                self.send_bye(now, c);
                self.finish(c, UaEvent::Ended { call: c });
            }
            Some(Owner::Bye(c)) | Some(Owner::Info(c)) => {
                self.finish(c, UaEvent::Ended { call: c })
            }
            _ => {}
        }
    }

    // ---- helpers shared by the submodules ----

    fn allocate_call(&mut self) -> CallId {
        self.next_call += 1;
        CallId(self.next_call)
    }

    /// Our sent-by for Via placeholders (the layer stamps the real one).
    fn sent_by(&self) -> SentBy {
        self.layer.config().local.clone()
    }

    /// `sip:user@public-address`, plus `;transport=tcp` over TCP and `;transport=tls` over
    /// TLS; `sips:user@public-address` when the user agent uses `sips:` URIs (RFC 5630: a
    /// `sips:` URI says TLS by itself, `transport=tls` is not added to it).
    fn contact(&self) -> NameAddr {
        let addr = self.config.public_addr();
        let scheme = if self.config.sips {
            Scheme::Sips
        } else {
            Scheme::Sip
        };
        let mut uri = SipUri::new(scheme, host_of(addr.ip()));
        uri.user = self.config.aor.user.clone();
        uri.port = Some(addr.port());
        if self.config.transport.is_reliable() && !self.config.sips {
            uri.params
                .push("transport", Some(self.config.transport.uri_param()));
        }
        NameAddr::new(Uri::Sip(uri))
    }

    /// Our address of record with the display name, for From.
    fn our_from(&self) -> NameAddr {
        let mut from = NameAddr::new(Uri::Sip(self.config.aor.clone()));
        from.display_name = self.config.display_name.clone();
        from
    }

    /// `<sip:proxy;lr>` for the outbound proxy, if one is configured.
    fn proxy_route(&self) -> Option<Uri> {
        self.config.outbound_proxy.map(|p| {
            let scheme = if self.config.sips {
                Scheme::Sips
            } else {
                Scheme::Sip
            };
            let mut uri = SipUri::new(scheme, host_of(p.ip()));
            uri.port = Some(p.port());
            uri.params.push("lr", None);
            Uri::Sip(uri)
        })
    }

    /// Where an in-dialog request goes: the first route hop, else the remote target, else
    /// the outbound proxy, else the address the peer used.
    fn dialog_destination(&self, dialog: &Dialog, fallback: SocketAddr) -> SocketAddr {
        if let Some(first) = dialog.route_set().first() {
            return uri_addr(first).unwrap_or(fallback);
        }
        if let Some(p) = self.config.outbound_proxy {
            return p;
        }
        uri_addr(dialog.remote_target()).unwrap_or(fallback)
    }

    /// An in-dialog request with our User-Agent and, without a route set, the outbound
    /// proxy's Route.
    fn dialog_request(&mut self, dialog: &mut Dialog, method: Method) -> Result<Request, UaError> {
        let sent_by = self.sent_by();
        let mut req = dialog.request(method, &sent_by, &mut self.rng)?;
        if dialog.route_set().is_empty() {
            if let Some(r) = self.proxy_route() {
                req.headers.push_owned("Route".into(), format!("<{r}>"));
            }
        }
        req.headers.push("User-Agent", &self.config.user_agent);
        Ok(req)
    }

    /// Starts a client transaction owned by `owner`.
    fn start(
        &mut self,
        now: Instant,
        request: Request,
        destination: SocketAddr,
        owner: Owner,
    ) -> Result<TransactionId, UaError> {
        let id = self
            .layer
            .send_request(now, request, self.config.transport, destination)?;
        self.owners.insert(id, owner);
        Ok(id)
    }

    /// Answers server transaction `id` (errors mean the transaction is gone: nothing to do).
    fn respond(&mut self, now: Instant, id: TransactionId, mut response: Response) {
        response
            .headers
            .push("Server", &self.config.user_agent.clone());
        let _ = self.layer.send_response(now, id, response);
    }

    /// A plain response to `request`, tagging To when it has no tag yet (8.2.6.2).
    fn simple_response(&mut self, request: &Request, status: u16, reason: &str) -> Response {
        let needs_tag = status > 100
            && request
                .headers
                .to()
                .map(|t| t.tag().is_none())
                .unwrap_or(false);
        let tag = needs_tag.then(|| new_tag(&mut self.rng));
        make_response(request, status, reason, tag.as_deref())
    }

    /// Emits `event` (unless the call's end was already reported) and forgets the call.
    fn finish(&mut self, call: CallId, event: UaEvent) {
        let Some(c) = self.calls.remove(&call) else {
            return;
        };
        if !c.reported {
            self.events.push_back(event);
        }
        self.dialogs
            .remove(&(c.sip_call_id.clone(), c.local_tag.clone()));
        if let Some(k) = c.merge_key {
            self.merge.remove(&k);
        }
    }

    /// Emits the end of `call` now but keeps its state for background work.
    fn report_end(&mut self, call: CallId) {
        if let Some(c) = self.calls.get_mut(&call) {
            if !c.reported {
                c.reported = true;
                self.events.push_back(UaEvent::Ended { call });
            }
        }
    }

    /// The call for an API operation: unknown, or already ended by the application, is an
    /// error.
    fn live_call(&mut self, call: CallId) -> Result<&mut Call, UaError> {
        match self.calls.get_mut(&call) {
            Some(c) if !c.reported => Ok(c),
            _ => Err(UaError::UnknownCall),
        }
    }
}

/// A URI host for an IP address.
fn host_of(ip: IpAddr) -> Host {
    match ip {
        IpAddr::V4(a) => Host::Ipv4(a),
        IpAddr::V6(a) => Host::Ipv6(a),
    }
}

/// The socket address of a SIP URI with a literal IP host (no DNS here); without a port,
/// 5061 for a `sips:` URI or `transport=tls`, else 5060 (RFC 3261 19.1.2).
fn uri_addr(uri: &Uri) -> Option<SocketAddr> {
    let u = uri.as_sip()?;
    let tls = u.scheme == Scheme::Sips
        || u.params
            .get("transport")
            .flatten()
            .is_some_and(|t| t.eq_ignore_ascii_case("tls"));
    let port = u
        .port
        .unwrap_or(if tls { DEFAULT_TLS_PORT } else { DEFAULT_PORT });
    match &u.host {
        Host::Ipv4(a) => Some(SocketAddr::new((*a).into(), port)),
        Host::Ipv6(a) => Some(SocketAddr::new((*a).into(), port)),
        Host::Domain(_) => None,
    }
}
