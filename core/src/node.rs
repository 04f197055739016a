//! [`Node`]: one event loop's worth of siprtmp behind a single sans-IO API.
//!
//! A driver accepts connections, feeds received bytes, drained byte counts, file completions
//! and timer expiry in as [`Input`]s with the current time, and carries out the [`Output`]s it
//! polls: write a connection's queued segments, close a connection, run a file request (see
//! [`crate::storage`] for the executor's contract), or log an application [`Event`]. With
//! [`NodeConfig::decisions`] on, [`Event::Decide`] asks the embedding application a question
//! that [`Node::decide`] answers later.
//!
//! ```
//! use std::time::Instant;
//! use siprtmp_core::node::{Input, Node, NodeConfig, Output};
//!
//! let start = Instant::now(); // a driver's clock; the node itself never reads one
//! let mut node = Node::new(NodeConfig::default(), start, 42);
//! let conn = node.accept(start, "127.0.0.1:50000".parse().unwrap());
//! // The client's C0+C1: version 3, then 1536 bytes.
//! let mut c0c1 = vec![3u8];
//! c0c1.extend_from_slice(&[0u8; 1536]);
//! node.handle(start, Input::Received { conn, data: c0c1.as_slice().into() });
//! let mut wants_write = false;
//! while let Some(out) = node.poll_output() {
//!     if let Output::Transmit { conn: c } = out {
//!         wants_write |= c == conn;
//!     }
//! }
//! assert!(wants_write); // S0+S1+S2 are queued
//! assert_eq!(node.queued_bytes(conn), 1 + 1536 + 1536);
//! ```

use std::io::IoSlice;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use crate::admin::callbacks::{Callbacks, Verdict};
use crate::admin::report::WorkerReport;
use crate::admin::HttpFront;
pub use crate::close_reason::CloseReason;
pub use crate::decision::{DecideError, Decision, PublishMode, Question};
pub use crate::gateway::{GatewayNodeConfig, SipTlsSettings};
pub use crate::http::{CallbackUrl, CallbacksConfig, FailurePolicy, HttpConfig};
pub use crate::ids::{ConnId, FileId, ListenerId, RequestId, SocketId, StreamId, WorkerId};
pub use crate::io::{CallPhase, Event, Input, Output, ProcessStats, RelayDirection, RelayPhase};
pub use crate::record_error::RecordError;
pub use crate::rtmp::url::RtmpUrl;
use crate::server::RtmpServer;
pub use crate::server::{AppConfig, RecordPolicy, RelayLimits, RelayUrl, ServerConfig};
pub use crate::storage::{FileError, FileReply, FileRequest};
pub use crate::tcp::{TcpCommand, TcpEvent};
pub use crate::udp::{UdpCommand, UdpEvent};
pub use crate::worker_relay::{RelayIn, RelayOut};
use crate::worker_relay::{RelayMessage, RelayTarget};

/// Settings of a node.
#[derive(Debug, Clone, Default)]
pub struct NodeConfig {
    /// The RTMP server application's settings.
    pub server: ServerConfig,
    /// Ask the embedding application about every connect, publish and play
    /// ([`Event::Decide`], answered with [`Node::decide`]). Off (the default), everything
    /// that is well-formed is accepted at once.
    pub decisions: bool,
}

/// One event loop's worth of siprtmp: the RTMP server (live, recording, VOD) and, when
/// [`ServerConfig::gateway`] is set, the SIP-RTMP gateway beside it. See the crate documentation
/// for the contract a driver follows.
#[derive(Debug)]
pub struct Node {
    server: RtmpServer,
    /// The HTTP listener for metrics and the API, when [`ServerConfig::http`] asks for one.
    http: Option<HttpFront>,
    /// The HTTP callbacks, when [`ServerConfig::callbacks`] asks for them: they take the
    /// server's questions (after the application's answer when it decides too).
    callbacks: Option<Callbacks>,
    /// Whether the embedding application answers questions ([`NodeConfig::decisions`]).
    app_decides: bool,
    /// The latest time given by the driver (callbacks started while outputs are polled
    /// count their deadlines from it).
    now: Instant,
}

impl Node {
    /// A node whose RTMP timestamps count from `epoch` and whose randomness comes from `seed`.
    pub fn new(config: NodeConfig, epoch: Instant, seed: u64) -> Self {
        let http = config
            .server
            .http
            .clone()
            .map(|http| HttpFront::new(http, epoch));
        let callbacks = config
            .server
            .callbacks
            .clone()
            .map(|c| Callbacks::new(c, epoch));
        // With callbacks the server always asks: the callbacks answer what the application
        // does not, and the connect's question carries the fields later callbacks send.
        let decisions = config.decisions || callbacks.is_some();
        Self {
            server: RtmpServer::new(config.server, epoch, seed).with_decisions(decisions),
            http,
            callbacks,
            app_decides: config.decisions,
            now: epoch,
        }
    }

    /// Registers a newly accepted TCP connection from `peer`.
    pub fn accept(&mut self, now: Instant, peer: SocketAddr) -> ConnId {
        self.now = self.now.max(now);
        self.server.accept(now, peer)
    }

    /// Registers a connection from `peer` accepted on the RTMPS listener: its bytes are TLS
    /// records, which the node decrypts with [`ServerConfig::tls`] before the RTMP handshake
    /// sees them, and the bytes it queues for the connection ([`Node::io_slices`],
    /// [`Node::queued_segments`]) are records too, sealed when a `Transmit` is handed out or a
    /// drained count empties the queue. Otherwise the contract is the plain one: the driver
    /// moves bytes and reports `Received`, `Drained` and `Closed` as for [`Node::accept`].
    /// Without a TLS configuration the connection is closed at once
    /// ([`CloseReason::Tls`]).
    pub fn accept_tls(&mut self, now: Instant, peer: SocketAddr) -> ConnId {
        self.now = self.now.max(now);
        self.server.accept_with(now, peer, true)
    }

    /// Feeds one input at time `now`.
    // Never inlined: one call per input costs nothing next to the input's work, and profilers
    // (the benchmarks' callgrind recipes toggle on this function) get a stable frame.
    #[inline(never)]
    pub fn handle(&mut self, now: Instant, input: Input) {
        self.now = self.now.max(now);
        match input {
            Input::Received { conn, data } => self.server.received(now, conn, data),
            Input::Drained { conn, bytes } => self.server.drained(now, conn, bytes),
            Input::Closed { conn } => self.server.closed(now, conn),
            Input::Timeout => {
                self.server.timeout(now);
                if let Some(http) = &mut self.http {
                    http.timeout(now, &mut self.server);
                }
                if let Some(callbacks) = &mut self.callbacks {
                    callbacks.timeout(now);
                    self.carry_out_verdicts();
                }
            }
            Input::Udp(event) => self.server.udp(now, event),
            Input::Tcp(event) if self.callbacks.is_some() && Callbacks::owns(&event) => {
                if let Some(callbacks) = &mut self.callbacks {
                    callbacks.tcp(event);
                }
                self.carry_out_verdicts();
            }
            Input::Tcp(event) if RtmpServer::relay_owns(&event) => {
                self.server.relay_tcp(now, event)
            }
            Input::Tcp(event) => match &mut self.http {
                Some(http) if http.owns(&event) => http.tcp(now, event, &mut self.server),
                _ => self.server.tcp(now, event),
            },
            Input::FileDone { file, result } => self.server.file_done(now, file, result),
            Input::Relay(RelayIn::Received { from, message }) if message.is_admin() => {
                self.admin_relay(now, from, message);
            }
            Input::Relay(input) => self.server.relay_input(now, input),
            Input::Shutdown => self.server.begin_shutdown(now),
        }
        self.reap_http(now);
    }

    /// After [`Input::Shutdown`]: true once the node has nothing left to wait for (every
    /// connection closed, every gateway client's goodbyes answered or given up on), or once
    /// [`ServerConfig::shutdown_grace`] has passed since the shutdown began. The driver then
    /// stops. False before any shutdown.
    pub fn is_drained(&self, now: Instant) -> bool {
        self.server.is_drained(now)
    }

    /// A relay message for the HTTP listener's bookkeeping: a report asked of this worker
    /// (answered at once from its own state), one answered to worker 0's listener, or an
    /// operator's action on one of this worker's connections or streams (drop a connection,
    /// end a call, stop a recording).
    fn admin_relay(&mut self, now: Instant, from: WorkerId, message: RelayMessage) {
        match message {
            RelayMessage::Report { query, kind } => {
                let report = Arc::new(WorkerReport::of(&self.server, kind));
                self.server.push_output(Output::Relay(RelayOut::Send {
                    to: RelayTarget::Worker(from),
                    message: RelayMessage::Reported { query, report },
                }));
            }
            RelayMessage::Reported { query, report } => {
                if let Some(http) = &mut self.http {
                    http.reported(now, query, report, &mut self.server);
                }
            }
            RelayMessage::Drop { conn } => {
                self.server.drop_conn(conn);
            }
            RelayMessage::EndCall { conn } => {
                self.server.end_call(now, conn);
            }
            RelayMessage::StopRecording { stream } => {
                self.server.stop_recording(&stream);
            }
            _ => {}
        }
    }

    /// Tells the HTTP listener about the HTTP-FLV connections the server ended, if any.
    fn reap_http(&mut self, now: Instant) {
        if self.server.has_flv_ended() {
            if let Some(http) = &mut self.http {
                http.reap(now, &mut self.server);
            }
        }
    }

    /// Makes this node worker `worker` of a group whose nodes share live streams through the
    /// driver's relay ([`crate::worker_relay`]): its publishes are claimed from the group's registry
    /// and announced, its players may watch streams published on other workers, and its
    /// connection ids carry `worker` (unique across the group). Call before the first
    /// [`Node::accept`].
    ///
    /// ```
    /// use std::time::Instant;
    /// use siprtmp_core::node::{Node, NodeConfig};
    /// use siprtmp_core::worker_relay::WorkerId;
    /// let now = Instant::now();
    /// let mut node = Node::new(NodeConfig::default(), now, 1).with_relay(WorkerId(2));
    /// let conn = node.accept(now, "127.0.0.1:50000".parse().unwrap());
    /// assert_eq!(conn.worker(), WorkerId(2));
    /// ```
    ///
    /// Only worker 0 keeps the HTTP listener of [`ServerConfig::http`]; once told how many
    /// workers the group has ([`Node::set_worker_count`]), its metrics and API describe the
    /// whole group (it asks the others for their figures over the relay).
    pub fn with_relay(mut self, worker: WorkerId) -> Self {
        self.server.enable_relay(worker);
        if worker != WorkerId(0) {
            self.http = None;
        }
        self
    }

    /// Says that the driver can read a connection on a grid when asked
    /// ([`Output::ReadPacing`]), leaving its bytes in the kernel's buffer in between. The node
    /// then asks it for publishers, when merged writes are on
    /// ([`ServerConfig::merge_writes`]): a publisher is read once per merge window, and what
    /// a read brings is written to its players at once instead of being held for the window.
    /// Without it the node never asks, and players are held as usual.
    ///
    /// ```
    /// use std::time::Instant;
    /// use siprtmp_core::node::{Node, NodeConfig};
    /// let mut node = Node::new(NodeConfig::default(), Instant::now(), 1);
    /// node.enable_read_pacing();
    /// // A publisher that goes live now makes an `Output::ReadPacing` with the merge window.
    /// ```
    pub fn enable_read_pacing(&mut self) {
        self.server.enable_read_pacing();
    }

    /// Tells a worker made with [`Node::with_relay`] how many workers its group has, so that
    /// worker 0's HTTP listener waits for every other worker's report before it answers
    /// `/metrics` or the JSON API (without it, worker 0 describes itself alone).
    pub fn set_worker_count(&mut self, workers: usize) {
        if let Some(http) = &mut self.http {
            http.set_group(workers);
        }
    }

    /// Whether the driver should read its process's figures ([`ProcessStats`]) and give them
    /// with [`Node::set_process_stats`] before it feeds `event`: true for the bytes of an
    /// HTTP request, which may be a `/metrics` scrape. The node reads no system state of its
    /// own (it stays sans-IO); reading when a request arrives, rather than on a timer, costs
    /// nothing while nobody asks and gives a scrape figures as fresh as the request.
    pub fn process_stats_wanted(&self, event: &TcpEvent) -> bool {
        self.http.as_ref().is_some_and(|h| h.reads_request(event))
    }

    /// What the driver read of its process, for `/metrics` (`process_open_fds`,
    /// `process_resident_memory_bytes`...); see [`Node::process_stats_wanted`].
    pub fn set_process_stats(&mut self, stats: ProcessStats) {
        if let Some(http) = &mut self.http {
            http.set_process(stats);
        }
    }

    /// Answers the [`Event::Decide`] with id `request`. Rejections send the client the
    /// matching status (`NetConnection.Connect.Rejected`, `NetStream.Publish.Denied`,
    /// `NetStream.Play.Failed`); a redirect is only valid for a connect. A question not
    /// answered within [`ServerConfig::decision_timeout`] is refused by the node itself (the
    /// same status, then the connection is closed with [`CloseReason::DecisionTimeout`]), and
    /// an answer to it after that is refused with [`DecideError::UnknownRequest`].
    ///
    /// ```
    /// use std::time::Instant;
    /// use siprtmp_core::node::{Decision, DecideError, Node, NodeConfig, RequestId};
    /// let mut node = Node::new(NodeConfig { decisions: true, ..NodeConfig::default() }, Instant::now(), 1);
    /// let unknown = node.decide(Instant::now(), RequestId(9), Decision::Accept);
    /// assert_eq!(unknown, Err(DecideError::UnknownRequest(RequestId(9))));
    /// ```
    pub fn decide(
        &mut self,
        now: Instant,
        request: RequestId,
        decision: Decision,
    ) -> Result<(), DecideError> {
        let result = self.decide_now(now, request, decision);
        self.reap_http(now);
        result
    }

    /// [`Self::decide`] before the HTTP listener hears of what it ended: the callbacks hold a
    /// question the application answered first; everything else goes to the server.
    fn decide_now(
        &mut self,
        now: Instant,
        request: RequestId,
        decision: Decision,
    ) -> Result<(), DecideError> {
        self.now = self.now.max(now);
        if let Some(callbacks) = self.callbacks.as_mut().filter(|c| c.holds(request)) {
            if callbacks.consulting(request) {
                // Answered already; the callback decides now.
                return Err(DecideError::UnknownRequest(request));
            }
            if decision == Decision::Accept {
                callbacks.app_accepted(now, request);
                self.carry_out_verdicts();
                return Ok(());
            }
            self.server.decide(now, request, decision)?;
            if let Some(callbacks) = &mut self.callbacks {
                callbacks.app_refused(request);
            }
            return Ok(());
        }
        self.server.decide(now, request, decision)
    }

    /// What the callbacks decided: answers to the server's questions, connections to end.
    fn carry_out_verdicts(&mut self) {
        let now = self.now;
        while let Some(verdict) = self.callbacks.as_mut().and_then(Callbacks::poll_verdict) {
            match verdict {
                // An answer after the server's own decision timeout finds no question.
                Verdict::Decide(request, decision) => {
                    let _ = self.server.decide(now, request, decision);
                }
                Verdict::Close(conn) => self.server.close(conn, CloseReason::DroppedByOperator),
            }
        }
        // A verdict may have ended an HTTP-FLV player (a refused play over HTTP).
        self.reap_http(now);
    }

    /// The next thing to do, if any.
    pub fn poll_output(&mut self) -> Option<Output> {
        loop {
            let output = match self.server.poll_output() {
                Some(output) => output,
                None => match self.http.as_mut().and_then(HttpFront::poll_output) {
                    Some(output) => output,
                    None => return self.callbacks.as_mut()?.poll_output(),
                },
            };
            let Some(callbacks) = &mut self.callbacks else {
                return Some(output);
            };
            match output {
                Output::Event(Event::Decide { request, question }) => {
                    if self.app_decides {
                        callbacks.asked(self.now, request, question.clone(), true);
                        return Some(Output::Event(Event::Decide { request, question }));
                    }
                    // The callback (or, without one for this question, an acceptance)
                    // answers; the server's outputs that follow are polled next.
                    callbacks.asked(self.now, request, question, false);
                    self.carry_out_verdicts();
                }
                Output::Event(event) => {
                    callbacks.observe(self.now, &event);
                    self.carry_out_verdicts();
                    return Some(Output::Event(event));
                }
                output => return Some(output),
            }
        }
    }

    /// The earliest deadline at which [`Input::Timeout`] must be fed, if any.
    pub fn poll_timeout(&self) -> Option<Instant> {
        [
            self.server.poll_timeout(),
            self.server.shutdown_deadline(),
            self.http.as_ref().and_then(HttpFront::poll_timeout),
            self.callbacks.as_ref().and_then(Callbacks::poll_timeout),
        ]
        .into_iter()
        .flatten()
        .min()
    }

    /// Callback notifications (`on_done`...) dropped since the node started because
    /// [`CallbacksConfig::max_in_flight`] callbacks were in flight.
    pub fn callbacks_dropped(&self) -> u64 {
        self.callbacks.as_ref().map_or(0, Callbacks::dropped)
    }

    /// Fills `slices` with the connection's queued segments; returns how many were filled.
    pub fn io_slices<'a>(&'a self, conn: ConnId, slices: &mut [IoSlice<'a>]) -> usize {
        self.server.io_slices(conn, slices)
    }

    /// The connection's queued segments, front first: the same shared `Bytes` the queue
    /// holds (cloning one is a reference-count increment), for a driver that writes from
    /// another thread and so cannot borrow [`Node::io_slices`]. Report what was written with
    /// [`Input::Drained`], as for `io_slices`.
    ///
    /// ```
    /// use std::time::Instant;
    /// use siprtmp_core::node::{Input, Node, NodeConfig};
    ///
    /// let now = Instant::now();
    /// let mut node = Node::new(NodeConfig::default(), now, 7);
    /// let conn = node.accept(now, "127.0.0.1:50000".parse().unwrap());
    /// let mut c0c1 = vec![3u8];
    /// c0c1.extend_from_slice(&[0u8; 1536]);
    /// node.handle(now, Input::Received { conn, data: c0c1.as_slice().into() });
    /// let queued: usize = node.queued_segments(conn).map(|s| s.len()).sum();
    /// assert_eq!(queued, node.queued_bytes(conn));
    /// ```
    pub fn queued_segments(&self, conn: ConnId) -> impl Iterator<Item = &bytes::Bytes> {
        self.server.queued_segments(conn)
    }

    /// Bytes queued for the connection and not yet drained.
    pub fn queued_bytes(&self, conn: ConnId) -> usize {
        self.server.queued_bytes(conn)
    }

    /// Number of live connections.
    pub fn connection_count(&self) -> usize {
        self.server.connection_count()
    }

    /// Recordings that stopped on an error (a full disk, a file that cannot be written)
    /// since the node started; each is also told by [`Event::RecordStopped`] with its error.
    pub fn recordings_failed(&self) -> u64 {
        self.server.recordings_failed()
    }

    /// Frames of the gateway's far-end media dropped since the node started because their
    /// client had fallen behind (its backlog past
    /// [`ServerConfig::player_soft_backlog`]); a client that stays behind is closed with
    /// [`CloseReason::ClientBacklog`].
    pub fn far_media_dropped(&self) -> u64 {
        self.server.far_media_dropped()
    }
}
