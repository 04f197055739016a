//! [`TransactionLayer`]: every client and server transaction of one SIP endpoint, the
//! matching rules that route messages to them, their timers, and the stateless answers
//! (400, 503) the layer gives when it will not create a transaction. Sans-IO: messages and
//! time go in, [`Transmit`]s and [`TransactionEvent`]s come out.

use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;
use std::time::Instant;

use super::client_transaction::{InviteClientTransaction, NonInviteClientTransaction};
use super::dialog::{make_response, new_branch, new_tag, SentBy};
use super::message::{Method, Request, Response, SipMessage};
use super::name_addr::NameAddr;
use super::server_transaction::{InviteServerTransaction, NonInviteServerTransaction};
use super::timers::{Armed, TimerConfig, TimerHeap};
use super::transaction::{
    Effects, Next, TransactionEvent, TransactionId, TransactionState, Transmit, TxError,
};
use super::transaction_key::{AckKey, ClientKey, ServerKey};
use super::transport::{
    fill_received_in, response_destination, response_is_ours, stamp_via, Destination, Transport,
};
use super::via::Via;
use crate::rng::SeededRng;

/// Configuration of a [`TransactionLayer`].
#[derive(Debug, Clone)]
pub struct TransactionConfig {
    /// T1, T2, T4 and friends.
    pub timers: TimerConfig,
    /// Our sent-by, stamped on requests and required on responses.
    pub local: SentBy,
    /// Add `;rport` to our Vias (RFC 3581), so that servers answer through NATs.
    pub rport: bool,
    /// Most transactions held at once; further new requests get a stateless 503 and
    /// `send_request` fails.
    pub max_transactions: usize,
}

impl TransactionConfig {
    /// Default timers, `rport` on, at most 10 000 transactions.
    pub fn new(local: SentBy) -> TransactionConfig {
        TransactionConfig {
            timers: TimerConfig::default(),
            local,
            rport: true,
            max_transactions: 10_000,
        }
    }
}

/// What [`TransactionLayer::handle_incoming`] did with a message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Incoming {
    /// A request created this server transaction (see [`TransactionEvent::Request`] and
    /// [`TransactionEvent::Cancel`]).
    NewTransaction(TransactionId),
    /// A retransmission, an ACK or a response was handled by this transaction.
    Matched(TransactionId),
    /// The ACK for a 2xx sent by this INVITE server transaction (matched by dialog).
    AckFor2xx(TransactionId),
    /// An ACK that matched nothing, reported as [`TransactionEvent::StrayAck`].
    StrayAck,
    /// Answered statelessly with this status: 400 (mandatory header missing or bad) or 503
    /// (too many transactions).
    Rejected(u16),
    /// Silently discarded, and why.
    Dropped(&'static str),
}

/// One of the four machines.
#[derive(Debug)]
enum Machine {
    InviteClient(InviteClientTransaction),
    NonInviteClient(NonInviteClientTransaction),
    InviteServer(InviteServerTransaction),
    NonInviteServer(NonInviteServerTransaction),
}

/// A machine plus the index keys that lead to it.
#[derive(Debug)]
struct Entry {
    machine: Machine,
    client_key: Option<ClientKey>,
    server_key: Option<ServerKey>,
    ack_key: Option<AckKey>,
    /// To tag of the request that created a server transaction (RFC 2543 matching).
    to_tag: Option<String>,
    /// To tag of the last response an INVITE server transaction sent (an RFC 2543 ACK
    /// carries it).
    response_to_tag: Option<String>,
}

impl Entry {
    fn state(&self) -> TransactionState {
        match &self.machine {
            Machine::InviteClient(t) => t.state(),
            Machine::NonInviteClient(t) => t.state(),
            Machine::InviteServer(t) => t.state(),
            Machine::NonInviteServer(t) => t.state(),
        }
    }

    /// Whether the transaction still has something to say or hear: a request without its
    /// final response, or an INVITE server's non-2xx final without its ACK. The rest
    /// (Completed, Accepted, Confirmed) only absorb retransmissions until their timers end.
    fn is_open(&self) -> bool {
        use TransactionState::*;
        match self.state() {
            Calling | Trying | Proceeding => true,
            Completed => matches!(self.machine, Machine::InviteServer(_)),
            Accepted | Confirmed => false,
        }
    }

    fn armed(&self) -> &Armed {
        match &self.machine {
            Machine::InviteClient(t) => t.armed(),
            Machine::NonInviteClient(t) => t.armed(),
            Machine::InviteServer(t) => t.armed(),
            Machine::NonInviteServer(t) => t.armed(),
        }
    }
}

/// All transactions of one endpoint (RFC 3261 17, RFC 6026), sans-IO.
///
/// The driver feeds it parsed messages with [`handle_incoming`](Self::handle_incoming) and
/// the time with [`handle_timeout`](Self::handle_timeout), and drains
/// [`poll_transmit`](Self::poll_transmit), [`poll_event`](Self::poll_event) and
/// [`poll_timeout`](Self::poll_timeout) after each call. The TU (UA core) starts client
/// transactions with [`send_request`](Self::send_request) and answers server ones with
/// [`send_response`](Self::send_response).
///
/// ```
/// use std::time::{Duration, Instant};
/// use siprtmp_core::sip::*;
///
/// let (a_addr, b_addr) = ("192.0.2.1:5060".parse().unwrap(), "192.0.2.2:5060".parse().unwrap());
/// let mut alice = TransactionLayer::new(TransactionConfig::new(sent_by_of(a_addr)), 1);
/// let mut bob = TransactionLayer::new(TransactionConfig::new(sent_by_of(b_addr)), 2);
/// let now = Instant::now();
///
/// let SipMessage::Request(options) = parse_datagram(
///     b"OPTIONS sip:bob@192.0.2.2 SIP/2.0\r\nMax-Forwards: 70\r\nTo: <sip:bob@192.0.2.2>\r\n\
///       From: <sip:alice@192.0.2.1>;tag=1\r\nCall-ID: c1\r\nCSeq: 1 OPTIONS\r\n\r\n",
/// ).unwrap() else { unreachable!() };
/// let client = alice.send_request(now, options, Transport::Udp, b_addr).unwrap();
///
/// // The driver carries Alice's datagram to Bob.
/// let out = alice.poll_transmit().unwrap();
/// bob.handle_incoming(now, parse_datagram(&out.bytes).unwrap(), Transport::Udp, a_addr);
/// let Some(TransactionEvent::Request { id, request, .. }) = bob.poll_event() else { panic!() };
/// let ok = make_response(&request, 200, "OK", Some("b1"));
/// bob.send_response(now, id, ok).unwrap();
///
/// // And Bob's answer back to Alice.
/// let out = bob.poll_transmit().unwrap();
/// alice.handle_incoming(now, parse_datagram(&out.bytes).unwrap(), Transport::Udp, b_addr);
/// assert!(matches!(alice.poll_event(),
///     Some(TransactionEvent::Response { id, response }) if id == client && response.status == 200));
///
/// // Timer K (T4) and Timer J (64*T1) then end both transactions.
/// let later = now + Duration::from_secs(40);
/// alice.handle_timeout(later);
/// bob.handle_timeout(later);
/// assert!(alice.is_empty() && bob.is_empty());
/// ```
#[derive(Debug)]
pub struct TransactionLayer {
    config: TransactionConfig,
    rng: SeededRng,
    next_id: u64,
    entries: HashMap<TransactionId, Entry>,
    clients: HashMap<ClientKey, TransactionId>,
    servers: HashMap<ServerKey, TransactionId>,
    acks: HashMap<AckKey, TransactionId>,
    heap: TimerHeap,
    transmits: VecDeque<Transmit>,
    events: VecDeque<TransactionEvent>,
}

/// The mandatory header fields of a request (RFC 3261 8.1.1), read once.
struct Essentials {
    via: Via,
    cseq: super::headers::CSeq,
    call_id: String,
    from_tag: Option<String>,
    to_tag: Option<String>,
}

impl TransactionLayer {
    /// An empty layer; branches and stateless To tags are drawn from a generator seeded with
    /// `seed`.
    pub fn new(config: TransactionConfig, seed: u64) -> TransactionLayer {
        TransactionLayer {
            config,
            rng: SeededRng::new(seed),
            next_id: 0,
            entries: HashMap::new(),
            clients: HashMap::new(),
            servers: HashMap::new(),
            acks: HashMap::new(),
            heap: TimerHeap::default(),
            transmits: VecDeque::new(),
            events: VecDeque::new(),
        }
    }

    /// The configuration.
    pub fn config(&self) -> &TransactionConfig {
        &self.config
    }

    /// Number of live transactions.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Number of transactions still open (see `Entry::is_open`): those that are not merely
    /// absorbing retransmissions until their timers end.
    pub fn open_count(&self) -> usize {
        self.entries.values().filter(|e| e.is_open()).count()
    }

    /// True when no transaction is alive.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// The state of transaction `id`, `None` once it has terminated.
    pub fn state(&self, id: TransactionId) -> Option<TransactionState> {
        self.entries.get(&id).map(Entry::state)
    }

    /// Next bytes to send.
    pub fn poll_transmit(&mut self) -> Option<Transmit> {
        self.transmits.pop_front()
    }

    /// Next event for the TU.
    pub fn poll_event(&mut self) -> Option<TransactionEvent> {
        self.events.pop_front()
    }

    /// When [`handle_timeout`](Self::handle_timeout) should next be called, if ever.
    /// Entries for timers that were re-armed or whose transaction has gone are discarded
    /// here, so the answer is exact.
    pub fn poll_timeout(&mut self) -> Option<Instant> {
        while let Some((at, id, kind)) = self.heap.peek_entry() {
            match self.entries.get(&id) {
                Some(e) if e.armed().is(kind, at) => return Some(at),
                _ => {
                    self.heap.pop();
                }
            }
        }
        None
    }

    /// Fires every timer due at `now`.
    pub fn handle_timeout(&mut self, now: Instant) {
        while let Some((at, id, kind)) = self.heap.pop_due(now) {
            let next = self.drive(id, now, |e, fx| match &mut e.machine {
                Machine::InviteClient(t) => t.on_timer(fx, kind, at),
                Machine::NonInviteClient(t) => t.on_timer(fx, kind, at),
                Machine::InviteServer(t) => t.on_timer(fx, kind, at),
                Machine::NonInviteServer(t) => t.on_timer(kind, at),
            });
            if next == Some(Next::Terminate) {
                self.remove(id);
            }
        }
    }

    /// The driver could not send a message of transaction `id` (ICMP unreachable, TCP
    /// connection refused or reset): the transaction reports
    /// [`TransactionEvent::TransportError`] and ends (RFC 3261 17.1.4, 17.2.4).
    pub fn handle_transport_error(&mut self, _now: Instant, id: TransactionId) {
        if self.entries.contains_key(&id) {
            self.events
                .push_back(TransactionEvent::TransportError { id });
            self.remove(id);
        }
    }

    /// A message arrived on `transport` from `source`.
    pub fn handle_incoming(
        &mut self,
        now: Instant,
        msg: SipMessage,
        transport: Transport,
        source: SocketAddr,
    ) -> Incoming {
        match msg {
            SipMessage::Request(r) => self.incoming_request(now, r, transport, source),
            SipMessage::Response(r) => self.incoming_response(now, r),
        }
    }

    fn incoming_response(&mut self, now: Instant, response: Response) -> Incoming {
        let Ok(via) = response.headers.top_via() else {
            return Incoming::Dropped("response without a parseable Via");
        };
        // 18.1.2: a response whose top Via is not ours was misrouted.
        if !response_is_ours(&via, &self.config.local) {
            return Incoming::Dropped("top Via sent-by is not ours");
        }
        let (Some(branch), Ok(cseq)) = (via.branch(), response.headers.cseq()) else {
            return Incoming::Dropped("response without branch or CSeq");
        };
        if !(100..=699).contains(&response.status) {
            return Incoming::Dropped("status code out of range");
        }
        let key = ClientKey {
            branch: branch.to_string(),
            method: cseq.method,
        };
        let Some(&id) = self.clients.get(&key) else {
            // RFC 6026: stray responses (including stray 2xx) are discarded.
            return Incoming::Dropped("no matching client transaction");
        };
        let next = self.drive(id, now, |e, fx| match &mut e.machine {
            Machine::InviteClient(t) => t.on_response(fx, response),
            Machine::NonInviteClient(t) => t.on_response(fx, response),
            _ => Next::Keep,
        });
        if next == Some(Next::Terminate) {
            self.remove(id);
        }
        Incoming::Matched(id)
    }

    fn essentials(req: &Request) -> Result<Essentials, &'static str> {
        let h = &req.headers;
        let via = h.top_via().map_err(|_| "Via")?;
        let from = h.from().map_err(|_| "From")?;
        let to = h.to().map_err(|_| "To")?;
        let call_id = h.call_id().map_err(|_| "Call-ID")?.to_string();
        let cseq = h.cseq().map_err(|_| "CSeq")?;
        if cseq.method != req.method {
            return Err("CSeq");
        }
        Ok(Essentials {
            via,
            cseq,
            call_id,
            from_tag: from.tag().map(str::to_string),
            to_tag: to.tag().map(str::to_string),
        })
    }

    fn incoming_request(
        &mut self,
        now: Instant,
        mut request: Request,
        transport: Transport,
        source: SocketAddr,
    ) -> Incoming {
        let ess = match Self::essentials(&request) {
            Ok(e) => e,
            Err(header) => {
                // Without a Via there is nowhere to send a response; an ACK is never
                // answered (17.2.3 / 8.2.6).
                if request.method == Method::Ack {
                    return Incoming::Dropped("ACK with a missing or bad mandatory header");
                }
                let Some(via) = fill_received_in(&mut request.headers, source) else {
                    return Incoming::Dropped("request without a parseable Via");
                };
                let reason = match header {
                    "Via" => "Bad Request (Via)",
                    "From" => "Bad Request (From)",
                    "To" => "Bad Request (To)",
                    "Call-ID" => "Bad Request (Call-ID)",
                    _ => "Bad Request (CSeq)",
                };
                self.reject(&request, &via, transport, source, 400, reason);
                return Incoming::Rejected(400);
            }
        };
        let key = ServerKey::of(
            &request,
            &ess.via,
            &ess.cseq,
            ess.from_tag.as_deref(),
            &ess.call_id,
        );
        // Record where the request really came from before anyone copies the Via.
        let top = match fill_received_in(&mut request.headers, source) {
            Some(v) => {
                if v != ess.via {
                    request.raw = None;
                }
                v
            }
            None => ess.via.clone(),
        };

        if let Some(&id) = self.servers.get(&key) {
            if !key.is_rfc2543() || self.rfc2543_to_tag_matches(id, &request, &ess) {
                return self.dispatch_to_server(now, id, request);
            }
            if request.method != Method::Ack {
                return Incoming::Dropped("RFC 2543 request colliding with a transaction");
            }
        }
        if request.method == Method::Ack {
            return self.ack_without_transaction(now, request, &ess, source);
        }
        if self.entries.len() >= self.config.max_transactions {
            self.reject(
                &request,
                &top,
                transport,
                source,
                503,
                "Service Unavailable",
            );
            return Incoming::Rejected(503);
        }

        let id = self.allocate_id();
        let destination = response_destination(&top, transport, source);
        let machine = {
            let mut fx = Effects {
                id,
                now,
                timers: &self.config.timers,
                heap: &mut self.heap,
                transmits: &mut self.transmits,
                events: &mut self.events,
            };
            if request.method == Method::Invite {
                Machine::InviteServer(InviteServerTransaction::start(
                    &mut fx,
                    request.clone(),
                    transport,
                    destination,
                ))
            } else {
                Machine::NonInviteServer(NonInviteServerTransaction::start(transport, destination))
            }
        };
        let event = if request.method == Method::Cancel {
            let invite = self
                .servers
                .get(&key.with_method(Method::Invite))
                .copied()
                .filter(|&inv| {
                    !key.is_rfc2543() || self.rfc2543_to_tag_matches(inv, &request, &ess)
                });
            TransactionEvent::Cancel {
                id,
                invite,
                request,
            }
        } else {
            TransactionEvent::Request {
                id,
                request,
                transport,
                source,
            }
        };
        self.servers.insert(key.clone(), id);
        self.entries.insert(
            id,
            Entry {
                machine,
                client_key: None,
                server_key: Some(key),
                ack_key: None,
                to_tag: ess.to_tag,
                response_to_tag: None,
            },
        );
        self.events.push_back(event);
        Incoming::NewTransaction(id)
    }

    /// RFC 2543 matching also needs the To tag: the request's own for retransmissions and
    /// CANCEL, the one from our response for an ACK.
    fn rfc2543_to_tag_matches(
        &self,
        id: TransactionId,
        request: &Request,
        ess: &Essentials,
    ) -> bool {
        let Some(e) = self.entries.get(&id) else {
            return false;
        };
        if request.method == Method::Ack {
            ess.to_tag == e.response_to_tag || ess.to_tag == e.to_tag
        } else {
            ess.to_tag == e.to_tag
        }
    }

    /// A request matched server transaction `id`.
    fn dispatch_to_server(
        &mut self,
        now: Instant,
        id: TransactionId,
        request: Request,
    ) -> Incoming {
        let is_ack = request.method == Method::Ack;
        // An ACK for a 2xx that reuses the INVITE's branch (some UAs do) lands here too.
        let ack_for_2xx =
            is_ack && self.entries.get(&id).map(Entry::state) == Some(TransactionState::Accepted);
        let next = self.drive(id, now, |e, fx| match &mut e.machine {
            Machine::InviteServer(t) if is_ack => t.on_ack(fx, request),
            Machine::InviteServer(t) => t.on_invite(fx),
            Machine::NonInviteServer(t) => t.on_request(fx),
            _ => Next::Keep,
        });
        if next == Some(Next::Terminate) {
            self.remove(id);
        }
        if ack_for_2xx {
            Incoming::AckFor2xx(id)
        } else {
            Incoming::Matched(id)
        }
    }

    /// An ACK with no transaction of its own: the ACK for a 2xx (matched by dialog), or a
    /// stray one for the TU (RFC 6026).
    fn ack_without_transaction(
        &mut self,
        now: Instant,
        request: Request,
        ess: &Essentials,
        source: SocketAddr,
    ) -> Incoming {
        let key = AckKey {
            call_id: ess.call_id.clone(),
            cseq: ess.cseq.seq,
            from_tag: ess.from_tag.clone(),
        };
        if let Some(&id) = self.acks.get(&key) {
            if let Some(Entry {
                machine: Machine::InviteServer(t),
                ..
            }) = self.entries.get(&id)
            {
                if t.is_awaiting_2xx_ack() {
                    self.drive(id, now, |e, fx| match &mut e.machine {
                        Machine::InviteServer(t) => t.on_ack(fx, request),
                        _ => Next::Keep,
                    });
                    return Incoming::AckFor2xx(id);
                }
            }
        }
        self.events
            .push_back(TransactionEvent::StrayAck { request, source });
        Incoming::StrayAck
    }

    /// Answers `request` statelessly (no transaction): 400 or 503.
    fn reject(
        &mut self,
        request: &Request,
        via: &Via,
        transport: Transport,
        source: SocketAddr,
        status: u16,
        reason: &str,
    ) {
        let tag = new_tag(&mut self.rng);
        let response = make_response(request, status, reason, Some(&tag));
        self.transmits.push_back(Transmit {
            transport,
            destination: response_destination(via, transport, source),
            bytes: SipMessage::Response(response).to_bytes(),
            transaction: None,
        });
    }

    /// Starts a client transaction for `request` (any method but ACK and CANCEL): puts our
    /// Via with a fresh branch on top and sends it to `destination`.
    ///
    /// Errors: [`TxError::WrongMethod`] for ACK (use [`send_ack`](Self::send_ack)) and CANCEL
    /// (use [`send_cancel`](Self::send_cancel)); [`TxError::BadMessage`] without From, To,
    /// Call-ID or a CSeq naming the request's method; [`TxError::TooManyTransactions`].
    pub fn send_request(
        &mut self,
        now: Instant,
        mut request: Request,
        transport: Transport,
        destination: SocketAddr,
    ) -> Result<TransactionId, TxError> {
        if matches!(request.method, Method::Ack | Method::Cancel) {
            return Err(TxError::WrongMethod);
        }
        let h = &request.headers;
        h.from().map_err(|_| TxError::BadMessage("From"))?;
        h.to().map_err(|_| TxError::BadMessage("To"))?;
        h.call_id().map_err(|_| TxError::BadMessage("Call-ID"))?;
        match h.cseq() {
            Ok(c) if c.method == request.method => {}
            _ => return Err(TxError::BadMessage("CSeq")),
        }
        if self.entries.len() >= self.config.max_transactions {
            return Err(TxError::TooManyTransactions);
        }
        let branch = new_branch(&mut self.rng);
        stamp_via(
            &mut request.headers,
            transport,
            &self.config.local,
            &branch,
            self.config.rport,
        );
        request.raw = None;
        let key = ClientKey {
            branch,
            method: request.method.clone(),
        };
        Ok(self.start_client(now, key, request, transport, Destination::Addr(destination)))
    }

    fn start_client(
        &mut self,
        now: Instant,
        key: ClientKey,
        request: Request,
        transport: Transport,
        destination: Destination,
    ) -> TransactionId {
        let id = self.allocate_id();
        let mut fx = Effects {
            id,
            now,
            timers: &self.config.timers,
            heap: &mut self.heap,
            transmits: &mut self.transmits,
            events: &mut self.events,
        };
        let machine = if request.method == Method::Invite {
            Machine::InviteClient(InviteClientTransaction::start(
                &mut fx,
                request,
                transport,
                destination,
            ))
        } else {
            Machine::NonInviteClient(NonInviteClientTransaction::start(
                &mut fx,
                request,
                transport,
                destination,
            ))
        };
        self.clients.insert(key.clone(), id);
        self.entries.insert(
            id,
            Entry {
                machine,
                client_key: Some(key),
                server_key: None,
                ack_key: None,
                to_tag: None,
                response_to_tag: None,
            },
        );
        id
    }

    /// Cancels INVITE client transaction `invite` (RFC 3261 9.1): builds the CANCEL from the
    /// INVITE (same branch) and starts its own non-INVITE client transaction, sent where the
    /// INVITE went. Allowed once a provisional response has arrived (Proceeding), as 9.1
    /// requires; [`TxError::InvalidState`] before that, after a final response, or if a
    /// CANCEL is already running.
    pub fn send_cancel(
        &mut self,
        now: Instant,
        invite: TransactionId,
    ) -> Result<TransactionId, TxError> {
        let entry = self
            .entries
            .get(&invite)
            .ok_or(TxError::UnknownTransaction)?;
        let Machine::InviteClient(t) = &entry.machine else {
            return Err(TxError::WrongKind);
        };
        let cancel = t.build_cancel()?;
        let (transport, destination) = (t.transport(), t.destination().clone());
        let branch = cancel
            .headers
            .top_via()
            .ok()
            .and_then(|v| v.branch().map(str::to_string))
            .ok_or(TxError::BadMessage("Via"))?;
        let key = ClientKey {
            branch,
            method: Method::Cancel,
        };
        if self.clients.contains_key(&key) {
            return Err(TxError::InvalidState);
        }
        if self.entries.len() >= self.config.max_transactions {
            return Err(TxError::TooManyTransactions);
        }
        Ok(self.start_client(now, key, cancel, transport, destination))
    }

    /// Sends an ACK for a 2xx (RFC 3261 13.2.2.4), which is not a transaction: the TU builds
    /// it and re-sends it for every retransmitted 2xx. If `ack` has no Via yet, ours is put
    /// on top with a fresh branch (in place), so passing the same `ack` again re-sends an
    /// identical message.
    pub fn send_ack(
        &mut self,
        _now: Instant,
        ack: &mut Request,
        transport: Transport,
        destination: SocketAddr,
    ) -> Result<(), TxError> {
        if ack.method != Method::Ack {
            return Err(TxError::WrongMethod);
        }
        if ack.headers.get("Via").is_none() {
            let branch = new_branch(&mut self.rng);
            stamp_via(
                &mut ack.headers,
                transport,
                &self.config.local,
                &branch,
                self.config.rport,
            );
            ack.raw = None;
        }
        self.transmits.push_back(Transmit {
            transport,
            destination: Destination::Addr(destination),
            bytes: SipMessage::Request(ack.clone()).to_bytes(),
            transaction: None,
        });
        Ok(())
    }

    /// The TU answers server transaction `id`. A 2xx to INVITE moves it to Accepted and starts
    /// 2xx retransmission until the ACK ([`TransactionEvent::AckFor2xx`]) or, after 64*T1,
    /// [`TransactionEvent::NoAck`].
    ///
    /// Errors: [`TxError::UnknownTransaction`], [`TxError::WrongKind`] for a client
    /// transaction, [`TxError::InvalidState`] after a final response (except further 2xx to
    /// an INVITE), [`TxError::BadMessage`] for a status outside 100..=699.
    pub fn send_response(
        &mut self,
        now: Instant,
        id: TransactionId,
        response: Response,
    ) -> Result<(), TxError> {
        if !(100..=699).contains(&response.status) {
            return Err(TxError::BadMessage("status"));
        }
        let entry = self
            .entries
            .get_mut(&id)
            .ok_or(TxError::UnknownTransaction)?;
        let is_invite = match entry.machine {
            Machine::InviteServer(_) => true,
            Machine::NonInviteServer(_) => false,
            _ => return Err(TxError::WrongKind),
        };
        let status = response.status;
        let to_tag = tag_of(response.headers.get("To"));
        let ack_key = if is_invite && (200..300).contains(&status) {
            let h = &response.headers;
            match (h.call_id(), h.cseq()) {
                (Ok(call_id), Ok(cseq)) => Some(AckKey {
                    call_id: call_id.to_string(),
                    cseq: cseq.seq,
                    from_tag: tag_of(h.get("From")),
                }),
                _ => None,
            }
        } else {
            None
        };
        let next = self
            .drive(id, now, |e, fx| match &mut e.machine {
                Machine::InviteServer(t) => t.send_response(fx, response),
                Machine::NonInviteServer(t) => t.send_response(fx, response),
                _ => Err(TxError::WrongKind),
            })
            .ok_or(TxError::UnknownTransaction)??;
        if let Some(entry) = self.entries.get_mut(&id) {
            if status >= 200 || to_tag.is_some() {
                entry.response_to_tag = to_tag;
            }
            if let Some(k) = ack_key {
                self.acks.insert(k.clone(), id);
                entry.ack_key = Some(k);
            }
        }
        if next == Next::Terminate {
            self.remove(id);
        }
        Ok(())
    }

    fn allocate_id(&mut self) -> TransactionId {
        self.next_id += 1;
        TransactionId(self.next_id)
    }

    /// Runs `f` on transaction `id` with an [`Effects`] over the layer's queues and heap.
    fn drive<R>(
        &mut self,
        id: TransactionId,
        now: Instant,
        f: impl FnOnce(&mut Entry, &mut Effects<'_>) -> R,
    ) -> Option<R> {
        let TransactionLayer {
            config,
            entries,
            heap,
            transmits,
            events,
            ..
        } = self;
        let entry = entries.get_mut(&id)?;
        let mut fx = Effects {
            id,
            now,
            timers: &config.timers,
            heap,
            transmits,
            events,
        };
        Some(f(entry, &mut fx))
    }

    /// Forgets transaction `id` and its index keys; reports [`TransactionEvent::Terminated`].
    fn remove(&mut self, id: TransactionId) {
        let Some(e) = self.entries.remove(&id) else {
            return;
        };
        if let Some(k) = e.client_key {
            if self.clients.get(&k) == Some(&id) {
                self.clients.remove(&k);
            }
        }
        if let Some(k) = e.server_key {
            if self.servers.get(&k) == Some(&id) {
                self.servers.remove(&k);
            }
        }
        if let Some(k) = e.ack_key {
            if self.acks.get(&k) == Some(&id) {
                self.acks.remove(&k);
            }
        }
        self.events.push_back(TransactionEvent::Terminated { id });
    }

    /// Timer heap entries held, stale ones included (for tests and metrics).
    pub fn pending_timers(&self) -> usize {
        self.heap.len()
    }
}

/// The tag of a From/To header value, owned.
fn tag_of(value: Option<&str>) -> Option<String> {
    value
        .and_then(|v| NameAddr::parse(v).ok())
        .and_then(|n| n.tag().map(str::to_string))
}
