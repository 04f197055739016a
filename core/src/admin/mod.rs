//! [`HttpFront`]: the node's HTTP listener for metrics and the JSON API.
//!
//! It needs nothing new of a driver: the node asks for the listener with the same
//! `TcpCommand::Listen` the gateway's SIP over TCP uses, under a listener id of its own
//! ([`LISTENER`]), and the connections it accepts come back as `TcpEvent`s that the node
//! routes here rather than to the gateway. Each connection buffers at most one request
//! ([`Limits`]), must send each whole request within [`HttpConfig::request_timeout`] (a slow
//! or silent client is closed, whatever it trickles), and gets its answers in order; at most
//! [`HttpConfig::max_connections`] are served at once (one more is answered 503 and closed).
//!
//! After a response that ends the connection (an error, `Connection: close`), the front waits
//! for the client to close, up to the same timeout, rather than close at once: the driver's
//! `Close` writes only what goes without blocking, which could cut a large response short.
//!
//! A `GET /APP/NAME.flv` is handed to the server ([`flv_player`]), which answers it and owns
//! the connection's output from then on (HTTP-FLV, see `server::http_flv`); the front only
//! forwards what the driver reports about it and closes it if, once its response is complete,
//! the client neither reads the rest nor closes within the request timeout.

pub(crate) mod callbacks;
mod flv_player;
mod gateway_metrics;
mod json;
mod metrics;
mod page;
mod relay_metrics;
pub(crate) mod report;
mod routes;

use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::BytesMut;

use crate::http::request::{parse, Limits};
use crate::http::response::Response;
use crate::http::HttpConfig;
use crate::id_hash::IdHashMap;
use crate::io::{Event, Output, ProcessStats};
use crate::server::{FlvEnd, RtmpServer};
use crate::tcp::{ListenerId, StreamId, TcpCommand, TcpEvent};
use crate::worker_relay::{RelayMessage, RelayOut, RelayTarget};
use report::{ReportKind, WorkerReport};
use routes::Route;

/// The HTTP listener's id (the gateway numbers its own listeners up from 1).
pub(crate) const LISTENER: ListenerId = ListenerId(u64::MAX);

/// Requests answered from one read before the rest of a pipelined burst is refused: a
/// client cannot make one read cost more than this many responses.
const MAX_PIPELINED: usize = 8;

/// How long worker 0 waits for the other workers' reports before it answers 503: a worker
/// whose loop is that late is a fault to see, and a partial sum would look to Prometheus like
/// counters reset.
const GATHER_TIMEOUT: Duration = Duration::from_secs(2);

/// Bytes a connection may send while its request waits for the workers' reports (what
/// follows a request is the next request: a pipelining client sends little).
const MAX_BUFFERED_WHILE_GATHERING: usize = 64 * 1024;

/// A request waiting for the other workers' reports.
#[derive(Debug)]
struct Gathering {
    stream: StreamId,
    kind: ReportKind,
    keep_alive: bool,
    head_only: bool,
    reports: Vec<Arc<WorkerReport>>,
    /// Answered 503 if the reports are not all in by then.
    deadline: Instant,
}

/// One HTTP connection.
#[derive(Debug)]
struct HttpConn {
    /// What has arrived of the next request(s).
    buf: BytesMut,
    /// When it is closed unless a whole request has arrived (or, lingering, the client
    /// has closed).
    deadline: Instant,
    /// The last response ended it: waiting for the client to close.
    lingering: bool,
    /// An HTTP-FLV response the server owns: no deadline until it is complete.
    flv: bool,
    /// The client's address (an HTTP-FLV play is decided on it, as an RTMP play is).
    peer: SocketAddr,
    /// Its request waits for the other workers' reports: what follows waits in `buf`.
    gathering: bool,
}

/// The node's HTTP listener and its connections; see the module documentation.
#[derive(Debug)]
pub(crate) struct HttpFront {
    config: HttpConfig,
    limits: Limits,
    conns: IdHashMap<StreamId, HttpConn>,
    outputs: VecDeque<Output>,
    /// The time the front was made: the deadline that gets the driver to drain the first
    /// command (the listen) when nothing else would wake it.
    start: Instant,
    /// Workers in this node's group (1: a node alone); see [`report`].
    group: usize,
    /// Requests waiting for the other workers' reports, by query number.
    gatherings: HashMap<u64, Gathering>,
    next_query: u64,
    /// What the driver last read of the process ([`crate::node::Node::set_process_stats`]).
    process: Option<ProcessStats>,
}

impl HttpFront {
    /// A front listening per `config` (the listen command is queued at once).
    pub(crate) fn new(config: HttpConfig, now: Instant) -> Self {
        let mut outputs = VecDeque::new();
        outputs.push_back(Output::Tcp(TcpCommand::Listen {
            listener: LISTENER,
            addr: config.listen,
        }));
        Self {
            config,
            limits: Limits::default(),
            conns: IdHashMap::default(),
            outputs,
            start: now,
            group: 1,
            gatherings: HashMap::new(),
            next_query: 0,
            process: None,
        }
    }

    /// This node is one of `workers` sharing the server: requests that describe the server
    /// gather every worker's report first.
    pub(crate) fn set_group(&mut self, workers: usize) {
        self.group = workers.max(1);
    }

    /// What the driver read of the process.
    pub(crate) fn set_process(&mut self, process: ProcessStats) {
        self.process = Some(process);
    }

    /// Whether `event` brings bytes of a request (not of an HTTP-FLV connection): the
    /// driver's cue to read the process's figures (see `Node::process_stats_wanted`).
    pub(crate) fn reads_request(&self, event: &TcpEvent) -> bool {
        match event {
            TcpEvent::Received { stream, .. } => self.conns.get(stream).is_some_and(|c| !c.flv),
            _ => false,
        }
    }

    /// Whether `event` is about the HTTP listener or one of its connections.
    pub(crate) fn owns(&self, event: &TcpEvent) -> bool {
        match event {
            TcpEvent::Listening { listener, .. } | TcpEvent::Accepted { listener, .. } => {
                *listener == LISTENER
            }
            TcpEvent::Received { stream, .. }
            | TcpEvent::Closed { stream, .. }
            | TcpEvent::Sent { stream, .. } => self.conns.contains_key(stream),
            TcpEvent::Connected { .. } | TcpEvent::ConnectFailed { .. } => false,
        }
    }

    /// Input about the listener or a connection ([`Self::owns`]).
    pub(crate) fn tcp(&mut self, now: Instant, event: TcpEvent, server: &mut RtmpServer) {
        match event {
            TcpEvent::Listening { result, .. } => {
                let result =
                    result.map_err(|e| format!("cannot listen on {}: {e}", self.config.listen));
                self.outputs
                    .push_back(Output::Event(Event::HttpListening { result }));
            }
            TcpEvent::Accepted { stream, remote, .. } => self.accepted(now, stream, remote),
            TcpEvent::Received { stream, data } => self.received(now, stream, &data, server),
            TcpEvent::Closed { stream, .. } => {
                if self.conns.remove(&stream).is_some_and(|c| c.flv) {
                    server.flv_closed(stream);
                }
            }
            TcpEvent::Sent { stream, bytes } => {
                if self.conns.get(&stream).is_some_and(|c| c.flv) {
                    server.flv_sent(stream, bytes);
                }
            }
            TcpEvent::Connected { .. } | TcpEvent::ConnectFailed { .. } => {}
        }
    }

    fn accepted(&mut self, now: Instant, stream: StreamId, peer: SocketAddr) {
        if self.conns.len() >= self.config.max_connections {
            let busy = Response::text(503, "too many HTTP connections\n").encode(false, false);
            self.outputs
                .push_back(Output::Tcp(TcpCommand::Send { stream, data: busy }));
            self.outputs
                .push_back(Output::Tcp(TcpCommand::Close { stream }));
            return;
        }
        self.conns.insert(
            stream,
            HttpConn {
                buf: BytesMut::new(),
                deadline: now + self.config.request_timeout,
                lingering: false,
                flv: false,
                peer,
                gathering: false,
            },
        );
    }

    fn received(&mut self, now: Instant, stream: StreamId, data: &[u8], server: &mut RtmpServer) {
        let Some(conn) = self.conns.get_mut(&stream) else {
            return;
        };
        if conn.lingering || conn.flv {
            return; // whatever follows the last answer (or an HTTP-FLV request) is not read
        }
        if conn.gathering && conn.buf.len() + data.len() > MAX_BUFFERED_WHILE_GATHERING {
            self.conns.remove(&stream);
            self.outputs
                .push_back(Output::Tcp(TcpCommand::Close { stream }));
            return;
        }
        conn.buf.extend_from_slice(data);
        if !conn.gathering {
            self.serve(now, stream, server);
        }
    }

    /// Answers the requests buffered on `stream`, in order, until one is incomplete, ends
    /// the connection, or waits for the workers' reports.
    fn serve(&mut self, now: Instant, stream: StreamId, server: &mut RtmpServer) {
        for _ in 0..MAX_PIPELINED {
            let Some(conn) = self.conns.get_mut(&stream) else {
                return;
            };
            let (response, keep_alive, head_only) = match parse(&conn.buf, &self.limits) {
                Ok(None) => return,
                Ok(Some((request, used))) => {
                    let _ = conn.buf.split_to(used);
                    if let Some(target) = flv_player::target(&request) {
                        conn.flv = true;
                        conn.buf = BytesMut::new();
                        let peer = conn.peer;
                        return flv_player::hand_over(stream, peer, target, &request, server);
                    }
                    let keep_alive = request.keep_alive();
                    let head_only = request.method == "HEAD";
                    let route = routes::route(&request, server, self.config.token.as_deref(), now);
                    let response = match route {
                        Route::Answer(response) => response,
                        Route::Report(kind) if self.group > 1 => {
                            return self.gather(now, stream, kind, keep_alive, head_only);
                        }
                        Route::Report(kind) => {
                            let report = WorkerReport::of(server, kind);
                            routes::render(kind, &report, now, self.process.as_ref())
                        }
                        Route::Forward(forward) if usize::from(forward.to.0) < self.group => {
                            let response = forward.accepted();
                            self.outputs.push_back(Output::Relay(RelayOut::Send {
                                to: RelayTarget::Worker(forward.to),
                                message: forward.message,
                            }));
                            response
                        }
                        Route::Forward(forward) => forward.unknown(),
                    };
                    (response, keep_alive, head_only)
                }
                Err(e) => (Response::text(e.status(), format!("{e}\n")), false, false),
            };
            self.answer(now, stream, &response, keep_alive, head_only);
            if !keep_alive {
                return;
            }
        }
        // More requests than one read may cost: the rest are refused.
        let refusal = Response::text(503, "too many pipelined requests\n");
        self.answer(now, stream, &refusal, false, false);
    }

    /// Asks every other worker for its report for the request on `stream`, which is answered
    /// when all are in ([`Self::reported`]) or at [`GATHER_TIMEOUT`].
    fn gather(
        &mut self,
        now: Instant,
        stream: StreamId,
        kind: ReportKind,
        keep_alive: bool,
        head_only: bool,
    ) {
        let Some(conn) = self.conns.get_mut(&stream) else {
            return;
        };
        conn.gathering = true;
        conn.deadline = now + self.config.request_timeout;
        self.next_query += 1;
        let query = self.next_query;
        self.gatherings.insert(
            query,
            Gathering {
                stream,
                kind,
                keep_alive,
                head_only,
                reports: Vec::with_capacity(self.group - 1),
                deadline: now + GATHER_TIMEOUT,
            },
        );
        self.outputs.push_back(Output::Relay(RelayOut::Send {
            to: RelayTarget::All,
            message: RelayMessage::Report { query, kind },
        }));
    }

    /// Another worker's report for `query`: the request is answered once all are in, and
    /// the requests that followed it on its connection are served.
    pub(crate) fn reported(
        &mut self,
        now: Instant,
        query: u64,
        report: Arc<WorkerReport>,
        server: &mut RtmpServer,
    ) {
        let Some(gathering) = self.gatherings.get_mut(&query) else {
            return; // answered already (timed out), or its client left
        };
        gathering.reports.push(report);
        if gathering.reports.len() + 1 < self.group {
            return;
        }
        let Some(gathering) = self.gatherings.remove(&query) else {
            return;
        };
        let kind = gathering.kind;
        let report = WorkerReport::of(server, kind).merged(&gathering.reports);
        let response = routes::render(kind, &report, now, self.process.as_ref());
        self.finish_gathering(now, gathering, &response, server);
    }

    /// Answers a gathered request and serves what followed it.
    fn finish_gathering(
        &mut self,
        now: Instant,
        gathering: Gathering,
        response: &Response,
        server: &mut RtmpServer,
    ) {
        let stream = gathering.stream;
        let Some(conn) = self.conns.get_mut(&stream) else {
            return;
        };
        conn.gathering = false;
        let keep_alive = gathering.keep_alive;
        self.answer(now, stream, response, keep_alive, gathering.head_only);
        if keep_alive {
            self.serve(now, stream, server);
        }
    }

    /// Sends `response`; then either waits for the next request or lingers until the client
    /// closes.
    fn answer(
        &mut self,
        now: Instant,
        stream: StreamId,
        response: &Response,
        keep_alive: bool,
        head_only: bool,
    ) {
        let Some(conn) = self.conns.get_mut(&stream) else {
            return;
        };
        let data = response.encode(keep_alive, head_only);
        self.outputs
            .push_back(Output::Tcp(TcpCommand::Send { stream, data }));
        conn.deadline = now + self.config.request_timeout;
        if !keep_alive {
            conn.lingering = true;
            conn.buf = BytesMut::new();
        }
    }

    /// Closes the connections whose deadline has passed, and answers 503 to the requests
    /// whose workers' reports are late.
    pub(crate) fn timeout(&mut self, now: Instant, server: &mut RtmpServer) {
        let late: Vec<u64> = self
            .gatherings
            .iter()
            .filter(|(_, g)| g.deadline <= now)
            .map(|(q, _)| *q)
            .collect();
        for query in late {
            if let Some(gathering) = self.gatherings.remove(&query) {
                let missing = self.group - 1 - gathering.reports.len();
                let text = format!("{missing} worker(s) did not answer in time\n");
                let response = Response::text(503, text);
                self.finish_gathering(now, gathering, &response, server);
            }
        }
        let expired: Vec<StreamId> = self
            .conns
            .iter()
            .filter(|(_, c)| c.deadline <= now && (!c.flv || c.lingering))
            .map(|(s, _)| *s)
            .collect();
        for stream in expired {
            if self.conns.remove(&stream).is_some_and(|c| c.flv) {
                server.flv_closed(stream);
            }
            self.outputs
                .push_back(Output::Tcp(TcpCommand::Close { stream }));
        }
    }

    /// Learns what the server did with the HTTP-FLV connections it owns: closed ones are
    /// forgotten, finished ones get the request timeout to drain.
    pub(crate) fn reap(&mut self, now: Instant, server: &mut RtmpServer) {
        for end in server.take_flv_ended() {
            match end {
                FlvEnd::Closed(stream) => {
                    self.conns.remove(&stream);
                }
                FlvEnd::Finishing(stream) => {
                    if let Some(conn) = self.conns.get_mut(&stream) {
                        conn.lingering = true;
                        conn.deadline = now + self.config.request_timeout;
                    }
                }
            }
        }
    }

    /// The earliest deadline: a connection's, or at once while commands wait to be polled
    /// (the listen, before the driver's first turn).
    pub(crate) fn poll_timeout(&self) -> Option<Instant> {
        if !self.outputs.is_empty() {
            return Some(self.start);
        }
        let gathering = self.gatherings.values().map(|g| g.deadline).min();
        self.conns
            .values()
            .filter(|c| !c.flv || c.lingering)
            .map(|c| c.deadline)
            .chain(gathering)
            .min()
    }

    /// The next command or event for the driver.
    pub(crate) fn poll_output(&mut self) -> Option<Output> {
        self.outputs.pop_front()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::node::{Input, Node, NodeConfig};
    use std::time::Duration;

    fn node(max_connections: usize) -> (Node, Instant) {
        let now = Instant::now();
        let mut config = NodeConfig::default();
        config.server.http = Some(HttpConfig {
            max_connections,
            ..HttpConfig::default()
        });
        let mut node = Node::new(config, now, 3);
        assert_eq!(node.poll_timeout(), Some(now), "the listen is due at once");
        let listen = node.poll_output();
        assert!(matches!(
            listen,
            Some(Output::Tcp(TcpCommand::Listen {
                listener: LISTENER,
                ..
            }))
        ));
        (node, now)
    }

    fn accept(node: &mut Node, now: Instant, n: u64) -> StreamId {
        let stream = StreamId::accepted(n);
        let remote = "127.0.0.1:40000".parse().unwrap();
        node.handle(
            now,
            Input::Tcp(TcpEvent::Accepted {
                listener: LISTENER,
                stream,
                remote,
            }),
        );
        stream
    }

    fn sent(node: &mut Node) -> Vec<TcpCommand> {
        std::iter::from_fn(|| node.poll_output())
            .filter_map(|o| match o {
                Output::Tcp(command) => Some(command),
                _ => None,
            })
            .collect()
    }

    #[test]
    fn a_slow_client_is_closed_at_its_deadline_whatever_it_trickles() {
        let (mut node, start) = node(4);
        let stream = accept(&mut node, start, 1);
        for (i, byte) in b"GET /metr".iter().enumerate() {
            let now = start + Duration::from_secs(i as u64);
            let data = bytes::BytesMut::from(&[*byte][..]);
            node.handle(now, Input::Tcp(TcpEvent::Received { stream, data }));
            assert!(sent(&mut node).is_empty());
        }
        let deadline = node.poll_timeout().expect("a deadline");
        assert_eq!(deadline, start + HttpConfig::default().request_timeout);
        node.handle(deadline, Input::Timeout);
        assert_eq!(sent(&mut node), [TcpCommand::Close { stream }]);
        assert_eq!(node.poll_timeout(), None);
    }

    #[test]
    fn past_the_cap_a_connection_is_answered_503_and_closed() {
        let (mut node, now) = node(1);
        let first = accept(&mut node, now, 1);
        assert!(sent(&mut node).is_empty());
        let second = accept(&mut node, now, 2);
        let commands = sent(&mut node);
        assert!(matches!(&commands[0], TcpCommand::Send { stream, data }
            if *stream == second && data.starts_with(b"HTTP/1.1 503")));
        assert_eq!(commands[1], TcpCommand::Close { stream: second });
        // The first is served, kept alive, and answers in order.
        let two = "GET /metrics HTTP/1.1\r\n\r\nGET /nothing HTTP/1.1\r\n\r\n";
        let data = bytes::BytesMut::from(two.as_bytes());
        node.handle(
            now,
            Input::Tcp(TcpEvent::Received {
                stream: first,
                data,
            }),
        );
        let statuses: Vec<&[u8]> = sent(&mut node)
            .iter()
            .map(|c| match c {
                TcpCommand::Send { data, .. } => {
                    if data.starts_with(b"HTTP/1.1 200") {
                        &b"200"[..]
                    } else {
                        &b"other"[..]
                    }
                }
                _ => &b"not a send"[..],
            })
            .collect();
        assert_eq!(statuses, [&b"200"[..], &b"other"[..]]);
    }

    #[test]
    fn a_malformed_request_is_answered_and_nothing_after_it_is_read() {
        let (mut node, now) = node(4);
        let stream = accept(&mut node, now, 1);
        let data =
            bytes::BytesMut::from(&b"\x00\x01garbage\r\n\r\nGET /metrics HTTP/1.1\r\n\r\n"[..]);
        node.handle(now, Input::Tcp(TcpEvent::Received { stream, data }));
        let commands = sent(&mut node);
        assert_eq!(commands.len(), 1, "{commands:?}");
        assert!(matches!(&commands[0], TcpCommand::Send { data, .. }
            if data.starts_with(b"HTTP/1.1 400") && data.windows(17).any(|w| w == b"Connection: close")));
        // It lingers until the client closes (or the deadline).
        node.handle(
            now,
            Input::Tcp(TcpEvent::Closed {
                stream,
                error: None,
            }),
        );
        assert_eq!(node.poll_timeout(), None);
    }
}
