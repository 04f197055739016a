//! The live RTMP media server application: sessions, the registry of live streams, timers,
//! and the outputs a driver carries out.
//!
//! [`RtmpServer`] is driven through [`crate::node::Node`]; the files beside this one each own
//! one part of it: `session` (one connection), `commands` (NetConnection and NetStream
//! calls), `fan_out` (delivering published media to players, with backpressure),
//! `live_stream` (per-stream caches), `merge` (merged writes: media held for a window so
//! that several messages leave in one write), `client_backlog` (backpressure on everything
//! else a connection is sent: the gateway's far-end media, replies), `inspect` (what the HTTP
//! API and the metrics read), `operator` (what the HTTP API's actions do) and `relay`
//! (streams pushed to and pulled from other servers).

mod client_backlog;
mod commands;
mod config;
mod counters;
mod enhanced_caps;
mod fan_out;
mod gateway_link;
mod http_flv;
mod inspect;
mod live_stream;
mod merge;
mod operator;
mod pending_decisions;
mod player_backpressure;
mod read_lag;
mod read_pacing;
mod record_resume;
mod recorder;
mod relay;
mod send_queue;
mod session;
mod session_table;
mod shutdown;
mod tls_conn;
mod vod;
mod worker_streams;

use std::cmp::Reverse;
use std::collections::{BTreeMap, BinaryHeap, HashMap, VecDeque};
use std::io::IoSlice;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use bytes::{Bytes, BytesMut};

pub use config::{AppConfig, RecordPolicy, ServerConfig};
pub(crate) use counters::{Counters, CLOSE_KINDS};
pub(crate) use http_flv::FlvEnd;
pub(crate) use inspect::{AppView, ConnStates, ConnView, MemoryView, StreamView};
pub(crate) use operator::StopRecording;
pub(crate) use relay::{
    RelayCounters, RelayView, FAILURE_KINDS as RELAY_FAILURE_KINDS,
    SESSION_STATES as RELAY_SESSION_STATES,
};
pub use relay::{RelayLimits, RelayUrl};

use crate::amf::Value;
use crate::close_reason::CloseReason;
use crate::decision::RequestId;
use crate::flv::index::FileSummary;
use crate::ids::ConnId;
use crate::io::{Event, Output};
use crate::media::frame::MediaFrame;
use crate::rng::SeededRng;
use crate::rtmp::aggregate::split_aggregate;
use crate::rtmp::chunk_decoder::ChunkDecoder;
use crate::rtmp::command::{message_values, status_object, Command};
use crate::rtmp::control::{ProtocolControl, UserControl};
use crate::rtmp::handshake::ServerHandshake;
use crate::rtmp::message::{type_id, RtmpMessage};
use crate::storage::{FileError, FileId, FileReply};
use client_backlog::{Admit, ClientBacklog};
use live_stream::LiveStream;
use merge::FlushSchedule;
use pending_decisions::Pending;
use recorder::{Recorder, RecorderNote};
use session::{Held, Phase, Session, StreamRole};
use session_table::SessionTable;
use vod::VodPlayer;

/// What a timer is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum Timer {
    /// Handshake deadline, ping and dead-peer checks of a connection (its raw id).
    Connection(u64),
    /// The next tag of a file player is due (its raw file id).
    Vod(u64),
    /// A gateway session has work due (the raw id of its RTMP connection).
    Gateway(u64),
    /// A relay session has work due (its id).
    Relay(u64),
}

/// Most bytes a connection may send while a decision about it is pending (it is not read
/// meanwhile; past this it is closed). They count in the server's budget for unfinished
/// messages too ([`ServerConfig::max_total_partial_bytes`]).
const MAX_INPUT_WHILE_AWAITING: usize = 1024 * 1024;

/// The RTMP server application state machine.
#[derive(Debug)]
pub(crate) struct RtmpServer {
    config: ServerConfig,
    epoch: Instant,
    rng: SeededRng,
    sessions: SessionTable,
    live: HashMap<Arc<str>, LiveStream>,
    outputs: VecDeque<Output>,
    /// Connections to write ([`Output::Transmit`]), handed out before `outputs`: a live
    /// message to a thousand players asks for a thousand writes, and as outputs they would
    /// be a thousand full-sized [`Output`]s written and read back per message (8 bytes each
    /// here). Writes only ever follow what they carry, so going first reorders nothing that
    /// matters: a close still writes what is queued.
    transmits: VecDeque<ConnId>,
    timers: BinaryHeap<Reverse<(Instant, Timer)>>,
    decisions: bool,
    /// Questions asked and not yet answered, with the time each is refused at: with one
    /// timeout for all, the oldest (the first) is the first due, and an answered question
    /// leaves nothing behind.
    pending: BTreeMap<RequestId, (Instant, Pending)>,
    next_request: u64,
    next_file: u64,
    recorders: HashMap<FileId, Recorder>,
    /// Recordings that stopped on an error, since the start.
    recordings_failed: u64,
    /// Unfinished-message bytes of every connection (as their decoders last reported), and the
    /// input connections hold while decisions about them are pending, against
    /// [`ServerConfig::max_total_partial_bytes`].
    partial_total: usize,
    /// Bytes of every live stream's GOP cache, against
    /// [`ServerConfig::max_total_gop_cache_bytes`].
    gop_total: usize,
    /// Connections per peer IP address, against [`ServerConfig::max_connections_per_ip`].
    per_ip: HashMap<std::net::IpAddr, u32>,
    vods: HashMap<FileId, VodPlayer>,
    /// What files hold (keyframe index, metadata, configs), by path, with the size it was
    /// computed for.
    file_cache: HashMap<String, (u64, Arc<FileSummary>)>,
    /// The SIP-RTMP gateway's sessions and sockets, when enabled.
    gateway: Option<crate::gateway::host::GatewayHost>,
    /// The latest time an input brought (for work started by a close, which has none).
    last_now: Instant,
    /// The relay to the other workers of a group, when this node is one.
    relay: Option<worker_streams::RelayState>,
    /// Players whose media is held for merged writes, when enabled.
    merge: Option<FlushSchedule>,
    /// Gateway clients whose far-end media is held for merged writes, when enabled (a
    /// window of its own, so a list of its own: each list's deadlines come in order).
    gateway_merge: Option<FlushSchedule>,
    /// Where [`Session::queue_frame`] writes every session's chunk headers, split off per
    /// message: one allocation serves many messages, and the reference count that each
    /// split and each written header touches is one hot cache line rather than one per
    /// session (with hundreds of gateway calls, shared-buffer reference counts, these among
    /// them, were a visible share of the CPU, mostly in cache misses: see
    /// `bench-compare/results/design-figures.md`).
    frame_headers: BytesMut,
    /// Backpressure on the gateway's far-end media: the limits, the frames dropped, the
    /// connections to close.
    client_backlog: ClientBacklog,
    /// What the metrics count (plain adds where the events happen).
    counters: Counters,
    /// The HTTP connections taken over for HTTP-FLV (see `http_flv`).
    flv_conns: HashMap<crate::tcp::StreamId, http_flv::FlvConn>,
    /// What the HTTP listener must learn about them.
    flv_ended: Vec<http_flv::FlvEnd>,
    /// RTMPS connections open: while there are none, a `Transmit` costs no session look-up
    /// for sealing (see `tls_conn`).
    tls_sessions: usize,
    /// The relay sessions: pushes and pulls (see `relay`).
    relays: relay::Relays,
    /// Once a graceful stop has begun: when it gives up waiting (see `shutdown`).
    shutdown: Option<Instant>,
    /// The driver reads publishers on the merge grid when asked (see `read_pacing`).
    read_pacing: bool,
}

impl RtmpServer {
    /// A server with `config`, timestamps counted from `epoch`, randomness from `seed`.
    pub(crate) fn new(config: ServerConfig, epoch: Instant, seed: u64) -> Self {
        let mut rng = SeededRng::new(seed);
        let config_gateway = config
            .gateway
            .clone()
            .map(|g| crate::gateway::host::GatewayHost::new(g, rng.next_u64()));
        let merge = config.merge_writes.map(|window| {
            FlushSchedule::adaptive(window, config.merge_writes_max, config.merge_max_bytes)
        });
        let gateway_merge = config
            .gateway_merge_writes
            .map(|window| FlushSchedule::new(window, config.merge_max_bytes));
        let client_backlog =
            ClientBacklog::new(config.player_soft_backlog, config.player_hard_backlog);
        Self {
            config,
            epoch,
            rng,
            sessions: SessionTable::default(),
            live: HashMap::new(),
            outputs: VecDeque::new(),
            transmits: VecDeque::new(),
            timers: BinaryHeap::new(),
            decisions: false,
            pending: BTreeMap::new(),
            next_request: 0,
            next_file: 0,
            recorders: HashMap::new(),
            recordings_failed: 0,
            partial_total: 0,
            gop_total: 0,
            per_ip: HashMap::new(),
            vods: HashMap::new(),
            file_cache: HashMap::new(),
            gateway: config_gateway,
            last_now: epoch,
            relay: None,
            merge,
            gateway_merge,
            frame_headers: BytesMut::new(),
            client_backlog,
            counters: Counters::default(),
            flv_conns: HashMap::new(),
            flv_ended: Vec::new(),
            tls_sessions: 0,
            relays: relay::Relays::default(),
            shutdown: None,
            read_pacing: false,
        }
    }

    /// With `on`, connects, publishes and plays wait for [`Self::decide`].
    pub(crate) fn with_decisions(mut self, on: bool) -> Self {
        self.decisions = on;
        self
    }

    fn next_file_id(&mut self) -> FileId {
        self.next_file += 1;
        FileId(self.next_file)
    }

    /// A file request completed.
    pub(crate) fn file_done(
        &mut self,
        now: Instant,
        file: FileId,
        result: Result<FileReply, FileError>,
    ) {
        self.last_now = self.last_now.max(now);
        if self.vods.contains_key(&file) {
            return self.vod_file_done(now, file, result);
        }
        let Some(recorder) = self.recorders.get_mut(&file) else {
            return; // a file already forgotten (a player that left): nothing to do
        };
        match recorder.on_done(result, &mut self.outputs) {
            RecorderNote::Nothing => {}
            RecorderNote::Failed(error) => {
                self.recording_failed(file, "NetStream.Record.Failed", &error)
            }
            RecorderNote::NoAccess(error) => {
                self.recording_failed(file, "NetStream.Record.NoAccess", &error)
            }
            RecorderNote::Closed => {
                let Some(recorder) = self.recorders.remove(&file) else {
                    return;
                };
                if recorder.removed {
                    self.file_cache.remove(&recorder.path);
                } else {
                    self.cache_summary(recorder.path.clone(), recorder.bytes(), recorder.summary());
                }
                self.counters.record_bytes_finished += recorder.bytes();
                self.outputs.push_back(Output::Event(Event::RecordStopped {
                    stream: recorder.stream.to_string(),
                    path: recorder.path.clone(),
                    bytes: recorder.bytes(),
                    duration_ms: recorder.duration_ms(),
                    error: recorder.error.clone(),
                }));
            }
        }
    }

    fn millis_since_epoch(&self, now: Instant) -> u32 {
        now.saturating_duration_since(self.epoch).as_millis() as u32
    }

    /// Registers an accepted connection.
    pub(crate) fn accept(&mut self, now: Instant, peer: SocketAddr) -> ConnId {
        self.accept_with(now, peer, false)
    }

    /// Registers an accepted connection, with TLS if `tls` (RTMPS).
    pub(crate) fn accept_with(&mut self, now: Instant, peer: SocketAddr, tls: bool) -> ConnId {
        let id = self.sessions.next_id();
        let time = self.millis_since_epoch(now);
        let handshake = ServerHandshake::new(&mut self.rng, time);
        let mut session = Session::new(id, peer, handshake, self.config.chunk_limits, now);
        let deadline = now + self.config.handshake_timeout;
        session.next_check = deadline;
        let tls_failed = if tls {
            self.attach_tls(&mut session)
        } else {
            None
        };
        let total = self.sessions.len();
        self.sessions.insert(session);
        self.counters.accepted += 1;
        self.timers
            .push(Reverse((deadline, Timer::Connection(id.0))));
        let from_ip = self.per_ip.entry(peer.ip()).or_default();
        *from_ip += 1;
        let (max, max_per_ip) = (
            self.config.max_connections,
            self.config.max_connections_per_ip,
        );
        if let Some(error) = tls_failed {
            self.close(id, CloseReason::Tls { error });
        } else if self.shutdown.is_some() {
            self.close(id, CloseReason::Shutdown);
        } else if max > 0 && total >= max {
            self.close(id, CloseReason::ServerFull { max });
        } else if max_per_ip > 0 && *from_ip as usize > max_per_ip {
            let ip = peer.ip();
            let max = max_per_ip;
            self.close(id, CloseReason::AddressFull { ip, max });
        }
        id
    }

    /// Counts `conn`'s unfinished-message bytes in the server's total; closes it when they
    /// would take the total past [`ServerConfig::max_total_partial_bytes`].
    fn count_partial(&mut self, conn: ConnId) {
        let Some(session) = self.sessions.get_mut(conn) else {
            return;
        };
        let (before, now) = session.decoder.take_partial_change();
        if before == now {
            return;
        }
        self.partial_total = self.partial_total - before + now;
        if now > before && self.partial_total > self.config.max_total_partial_bytes {
            let budget = self.config.max_total_partial_bytes;
            self.close(conn, CloseReason::UnfinishedMessagesBudget { budget });
        }
    }

    /// Counts the input `conn` holds undecoded while a decision about it is pending in the
    /// server's total for unfinished messages (it is memory a peer makes the server hold just
    /// the same); closes it when that would take the total past
    /// [`ServerConfig::max_total_partial_bytes`]. Once the question is answered it counts
    /// for nothing.
    fn count_held_input(&mut self, conn: ConnId) {
        let Some(session) = self.sessions.get_mut(conn) else {
            return;
        };
        let held = if session.awaiting.is_some() {
            session.rx.len()
        } else {
            0
        };
        let before = std::mem::replace(&mut session.held_input, held);
        if held == before {
            return;
        }
        self.partial_total = self.partial_total - before + held;
        if held > before && self.partial_total > self.config.max_total_partial_bytes {
            let budget = self.config.max_total_partial_bytes;
            self.close(conn, CloseReason::UnfinishedMessagesBudget { budget });
        }
    }

    /// Forgets `conn`'s unfinished messages and held input (it is closing): their memory goes
    /// now, and out of the server's total.
    fn release_partial(&mut self, conn: ConnId) {
        let Some(session) = self.sessions.get_mut(conn) else {
            return;
        };
        let (counted, _) = session.decoder.take_partial_change();
        self.partial_total -= counted
            + std::mem::take(&mut session.held_input)
            + std::mem::take(&mut session.tls_held);
        session.decoder = ChunkDecoder::new(self.config.chunk_limits);
        session.rx = BytesMut::new();
    }

    /// Bytes arrived on `conn`.
    pub(crate) fn received(&mut self, now: Instant, conn: ConnId, data: BytesMut) {
        self.last_now = self.last_now.max(now);
        let Some(session) = self.sessions.get_mut(conn) else {
            return;
        };
        if matches!(session.phase, Phase::Closing) {
            return;
        }
        let data = if session.tls.is_some() {
            self.counters.bytes_received += data.len() as u64;
            match self.tls_received(conn, data) {
                Some(plain) => plain,
                None => return,
            }
        } else {
            self.counters.bytes_received += data.len() as u64;
            data
        };
        self.counters.reads += 1;
        let Some(session) = self.sessions.get_mut(conn) else {
            return;
        };
        // During the handshake `last_rx` stays at the accept time, so the handshake timeout
        // bounds the whole handshake, not the gap between bytes (no slow-loris).
        if session.is_active() {
            session.last_rx = now;
        }
        session.ping_sent = false;
        session.rx_bytes += data.len() as u64;
        session.rx_reads += 1;
        session.take_read(data);
        if session.awaiting.is_some() {
            if session.rx.len() > MAX_INPUT_WHILE_AWAITING {
                self.close(conn, CloseReason::InputWhileDeciding);
            } else {
                session.keep_rest();
                self.count_held_input(conn);
            }
            return;
        }
        if let Phase::Handshake(handshake) = &mut session.phase {
            match handshake.receive(&mut session.rx) {
                Ok(reply) => {
                    let complete = handshake.is_complete();
                    if let Some(bytes) = reply {
                        session.read_lag.handshake_sent(now);
                        if session.queue(bytes) {
                            self.transmits.push_back(conn);
                        }
                    }
                    if !complete {
                        session.keep_rest();
                        return;
                    }
                    session.read_lag.handshake_done(now);
                    session.phase = Phase::Active;
                    session.last_rx = now;
                    // From now on the ping schedule applies, not the handshake deadline.
                    session.next_check = now + self.config.ping_interval;
                    self.timers
                        .push(Reverse((session.next_check, Timer::Connection(conn.0))));
                }
                Err(e) => {
                    self.close(conn, CloseReason::Handshake(e));
                    return;
                }
            }
        }
        self.decode_messages(now, conn);
        self.count_partial(conn);
        // A question asked on the way holds the rest of the input (without decisions there
        // are no questions: one look-up saved per read).
        if self.decisions {
            self.count_held_input(conn);
        }
        self.acknowledge(conn);
    }

    fn decode_messages(&mut self, now: Instant, conn: ConnId) {
        loop {
            let Some(session) = self.sessions.get_mut(conn) else {
                return;
            };
            if !session.is_active() || session.awaiting.is_some() {
                return session.keep_rest();
            }
            // Before each message, so also after the last: what the previous one made us
            // queue (a reply, a pong) must not pile up on a client that does not read.
            if session.backlog() > self.config.player_hard_backlog {
                return self.close_for_backlog(conn);
            }
            // Nothing left to decode (a read usually ends with a whole message): no call into
            // the decoder, which would find no chunk header and change nothing.
            if session.rx.is_empty() {
                return;
            }
            match session.decoder.decode(&mut session.rx) {
                Ok(Some(msg)) => self.handle_message(now, conn, msg),
                Ok(None) => return session.keep_rest(),
                Err(e) => {
                    self.close(conn, CloseReason::ChunkStream(e));
                    return;
                }
            }
        }
    }

    /// Sends an Acknowledgement once the peer's window of bytes has arrived.
    fn acknowledge(&mut self, conn: ConnId) {
        let Some(session) = self.sessions.get_mut(conn) else {
            return;
        };
        if session.peer_window == 0
            || session.rx_bytes - session.rx_bytes_acked < u64::from(session.peer_window)
        {
            return;
        }
        session.rx_bytes_acked = session.rx_bytes;
        let sequence = session.rx_bytes as u32;
        if session.send_control(ProtocolControl::Acknowledgement(sequence)) {
            self.transmits.push_back(conn);
        }
    }

    /// Dispatches one message by its type (never by chunk stream id).
    fn handle_message(&mut self, now: Instant, conn: ConnId, msg: RtmpMessage) {
        match msg.type_id {
            type_id::SET_CHUNK_SIZE
            | type_id::ABORT
            | type_id::ACKNOWLEDGEMENT
            | type_id::WINDOW_ACK_SIZE
            | type_id::SET_PEER_BANDWIDTH => self.handle_protocol_control(conn, &msg),
            type_id::USER_CONTROL => self.handle_user_control(conn, &msg),
            // A gateway client's media goes to its call, never to the live fan-out.
            type_id::AUDIO | type_id::VIDEO if self.gateway_media(now, conn, &msg) => {}
            type_id::AUDIO | type_id::VIDEO => self.publish_message(conn, msg),
            type_id::DATA_AMF0 | type_id::DATA_AMF3 => self.handle_data(conn, msg),
            type_id::COMMAND_AMF0 | type_id::COMMAND_AMF3 => match Command::parse(&msg) {
                Ok(cmd) => self.handle_command(now, conn, msg.stream_id, cmd),
                Err(e) => self.close(conn, CloseReason::Command(e)),
            },
            type_id::AGGREGATE => match split_aggregate(&msg) {
                Ok(parts) => {
                    for part in parts {
                        match part.type_id {
                            type_id::AUDIO | type_id::VIDEO => self.publish_message(conn, part),
                            type_id::DATA_AMF0 | type_id::DATA_AMF3 => self.handle_data(conn, part),
                            _ => {}
                        }
                    }
                }
                Err(e) => self.close(conn, CloseReason::Aggregate(e)),
            },
            // Shared objects and unknown types are not supported: ignored, as FMS peers expect.
            _ => {}
        }
    }

    fn handle_protocol_control(&mut self, conn: ConnId, msg: &RtmpMessage) {
        let control = match ProtocolControl::parse(msg) {
            Ok(c) => c,
            Err(e) => return self.close(conn, CloseReason::ProtocolControl(e)),
        };
        let Some(session) = self.sessions.get_mut(conn) else {
            return;
        };
        match control {
            ProtocolControl::SetChunkSize(size) => {
                if let Err(e) = session.decoder.set_chunk_size(size) {
                    self.close(conn, CloseReason::ChunkStream(e));
                }
            }
            ProtocolControl::Abort(csid) => session.decoder.abort(csid),
            ProtocolControl::WindowAckSize(size) => session.peer_window = size,
            ProtocolControl::Acknowledgement(_) | ProtocolControl::SetPeerBandwidth { .. } => {}
        }
    }

    fn handle_user_control(&mut self, conn: ConnId, msg: &RtmpMessage) {
        let event = match UserControl::parse(&msg.payload) {
            Ok(event) => event,
            Err(e) => return self.close(conn, CloseReason::UserControl(e)),
        };
        let Some(session) = self.sessions.get_mut(conn) else {
            return;
        };
        match event {
            UserControl::PingRequest(stamp) => {
                let transmit = session.send_user_control(UserControl::PingResponse(stamp));
                if transmit {
                    self.transmits.push_back(conn);
                }
            }
            // The answer to a read-lag probe: the player's lane may change (see `read_lag`).
            UserControl::PingResponse(stamp) => {
                if let Some(merge) = &self.merge {
                    let spread = self.rng.below(1000) as u32;
                    if session.read_lag.answered(self.last_now, stamp, spread) {
                        session.merge_lane = merge.lane_for(session.read_lag.estimate());
                    }
                }
            }
            _ => {}
        }
    }

    /// `@setDataFrame` / `onMetaData` from a publisher: cached and forwarded as `onMetaData`.
    fn handle_data(&mut self, conn: ConnId, msg: RtmpMessage) {
        let values = match message_values(&msg) {
            Ok(values) => values,
            Err(e) => return self.close(conn, CloseReason::DataMessage(e)),
        };
        let values = match values.first().and_then(|v| v.as_str()) {
            Some("@setDataFrame") => values[1..].to_vec(),
            Some("onMetaData") => values,
            // Other data messages are forwarded as they are.
            _ => return self.publish_message(conn, msg),
        };
        let forwarded = crate::rtmp::command::data_message(msg.stream_id, msg.timestamp, &values);
        self.publish_metadata(conn, forwarded, values.get(1));
    }

    /// The kernel took `bytes` of `conn`'s queue.
    pub(crate) fn drained(&mut self, now: Instant, conn: ConnId, bytes: usize) {
        self.last_now = self.last_now.max(now);
        if let Some(session) = self.sessions.get_mut(conn) {
            self.counters.bytes_sent += bytes as u64;
            session.out.advance(bytes);
            if session.out.is_empty() && !session.plain.is_empty() {
                // RTMPS: what was queued while these records were written goes next, held
                // media with it (as without TLS, where the driver's write takes it along).
                session.seal();
                session.hold_deadline = None;
            }
            if session.backlog() == 0 {
                session.transmit_pending = false;
                // Held media written along with something else: nothing is held any more.
                session.hold_deadline = None;
            } else if !session.transmit_pending && session.hold_deadline.is_none() {
                session.transmit_pending = true;
                self.transmits.push_back(conn);
            }
            if !self.vods.is_empty() {
                self.vod_drained(now, conn);
            }
        }
    }

    /// The connection is gone. `now` counts as the server's time from here on: what the
    /// close starts (a pull's idle time, once its last player left) runs from it, not from
    /// the last input that carried a time, which on a quiet node may be long past.
    pub(crate) fn closed(&mut self, now: Instant, conn: ConnId) {
        self.last_now = self.last_now.max(now);
        let closing = match self.sessions.get(conn) {
            Some(session) => matches!(session.phase, Phase::Closing),
            None => return,
        };
        if !closing {
            self.counters.count_close_kind(counters::PEER_CLOSED);
            self.detach(conn);
        }
        self.gateway_closed(self.last_now, conn);
        self.release_partial(conn);
        if self.sessions.get(conn).is_some_and(|s| s.tls.is_some()) {
            self.tls_sessions -= 1;
        }
        if let Some(peer) = self.sessions.get(conn).map(|s| s.peer.ip()) {
            if let std::collections::hash_map::Entry::Occupied(mut count) = self.per_ip.entry(peer)
            {
                *count.get_mut() -= 1;
                if *count.get() == 0 {
                    count.remove();
                }
            }
        }
        self.sessions.remove(conn);
        // Ending its streams may have queued a status to the connection itself (a recording
        // publisher's unpublish): the driver must hear nothing more about it.
        self.transmits.retain(|c| *c != conn);
        self.outputs
            .push_back(Output::Event(Event::Disconnected { conn }));
    }

    /// Closes `conn` from the server side: its streams end, and the driver is told to close.
    pub(crate) fn close(&mut self, conn: ConnId, reason: CloseReason) {
        let Some(session) = self.sessions.get(conn) else {
            return;
        };
        if matches!(session.phase, Phase::Closing) {
            return;
        }
        self.detach(conn);
        self.gateway_closed(self.last_now, conn);
        self.release_partial(conn);
        if let Some(session) = self.sessions.get_mut(conn) {
            if session.is_active() && session.app.is_some() {
                // Best effort: the driver writes what it can before it closes the socket.
                let info = status_object(
                    "status",
                    "NetConnection.Connect.Closed",
                    &reason.to_string(),
                );
                let closed = Command::new("onStatus", 0.0, Value::Null, vec![info]);
                session.send_command(0, closed, false);
            }
            // RTMPS: the last words sealed, then the TLS session ended cleanly.
            if session.tls.is_some() {
                session.seal();
                if let Some(tls) = &mut session.tls {
                    tls.close_notify();
                }
                session.take_tls_records();
            }
            session.phase = Phase::Closing;
        }
        self.counters.count_close(&reason);
        self.outputs
            .push_back(Output::Event(Event::Closing { conn, reason }));
        self.outputs.push_back(Output::Close { conn });
    }

    /// Ends everything `conn` publishes or plays.
    fn detach(&mut self, conn: ConnId) {
        let Some(session) = self.sessions.get_mut(conn) else {
            return;
        };
        if let Some(request) = session.awaiting.take() {
            self.pending.remove(&request);
        }
        let streams = std::mem::take(&mut session.streams);
        for (stream_id, role) in streams {
            self.end_role(conn, stream_id, role);
        }
    }

    /// Timers that are due.
    pub(crate) fn timeout(&mut self, now: Instant) {
        self.last_now = self.last_now.max(now);
        while let Some(Reverse((deadline, timer))) = self.timers.peek().copied() {
            if deadline > now {
                break;
            }
            self.timers.pop();
            match timer {
                Timer::Connection(raw) => {
                    // A connection has one live timer; entries it replaced are skipped.
                    let current = self
                        .sessions
                        .get(ConnId(raw))
                        .is_some_and(|s| s.next_check == deadline);
                    if current {
                        self.check_liveness(now, ConnId(raw));
                    }
                }
                Timer::Vod(raw) => self.vod_timer(now, FileId(raw)),
                Timer::Gateway(raw) => self.gateway_timer(now, ConnId(raw), deadline),
                Timer::Relay(id) => self.relay_timer(now, id, deadline),
            }
        }
        self.expire_decisions(now);
        self.flush_held(now);
    }

    /// Merged writes: emits the `Transmit` of every connection whose held media is due.
    fn flush_held(&mut self, now: Instant) {
        for merge in [&mut self.merge, &mut self.gateway_merge]
            .into_iter()
            .flatten()
        {
            Self::flush_due(merge, &mut self.sessions, &mut self.transmits, now);
        }
    }

    /// The due entries of one merged-writes list.
    fn flush_due(
        merge: &mut FlushSchedule,
        sessions: &mut SessionTable,
        transmits: &mut VecDeque<ConnId>,
        now: Instant,
    ) {
        while let Some((deadline, conn)) = merge.pop_due(now) {
            let Some(session) = sessions.get_mut(conn) else {
                continue; // gone since
            };
            // A stale entry: the connection transmitted (and maybe held again) since.
            if session.hold_deadline != Some(deadline) {
                continue;
            }
            session.hold_deadline = None;
            if session.transmit_now() {
                transmits.push_back(conn);
            }
            // A player on the base window while its read-lag probe is out goes back to the
            // longest once the probe has waited that long (see `read_lag`).
            if let Some(longest) = merge.longest_lane() {
                if session.merge_lane == 0 && session.read_lag.waited(now) >= merge.window(longest)
                {
                    session.merge_lane = longest;
                }
            }
        }
    }

    /// Handshake timeout, idle ping, dead-peer close; re-arms the connection's one timer.
    fn check_liveness(&mut self, now: Instant, conn: ConnId) {
        let ping_stamp = self.millis_since_epoch(now);
        let config = &self.config;
        let Some(session) = self.sessions.get_mut(conn) else {
            return;
        };
        let idle = now.saturating_duration_since(session.last_rx);
        let next = match session.phase {
            Phase::Closing => return,
            Phase::Handshake(_) => {
                if idle >= config.handshake_timeout {
                    return self.close(conn, CloseReason::HandshakeTimeout);
                }
                session.last_rx + config.handshake_timeout
            }
            Phase::Active => {
                if idle >= config.ping_interval + config.dead_timeout {
                    return self.close(conn, CloseReason::Silent { idle });
                }
                if idle >= config.ping_interval {
                    if !session.ping_sent {
                        session.ping_sent = true;
                        if session.send_user_control(UserControl::PingRequest(ping_stamp)) {
                            self.transmits.push_back(conn);
                        }
                    }
                    session.last_rx + config.ping_interval + config.dead_timeout
                } else {
                    session.last_rx + config.ping_interval
                }
            }
        };
        session.next_check = next;
        self.timers.push(Reverse((next, Timer::Connection(conn.0))));
    }

    /// The next output for the driver.
    pub(crate) fn poll_output(&mut self) -> Option<Output> {
        if let Some(conn) = pop_rewinding(&mut self.transmits) {
            if self.tls_sessions > 0 {
                self.seal_for_driver(conn);
            }
            return Some(Output::Transmit { conn });
        }
        pop_rewinding(&mut self.outputs).or_else(|| self.gateway.as_mut()?.poll_output())
    }

    /// The earliest timer deadline.
    pub(crate) fn poll_timeout(&self) -> Option<Instant> {
        let timer = self.timers.peek().map(|Reverse((t, _))| *t);
        let flush = self.merge.as_ref().and_then(FlushSchedule::next_deadline);
        let gateway_flush = self
            .gateway_merge
            .as_ref()
            .and_then(FlushSchedule::next_deadline);
        let decision = self.pending.first_key_value().map(|(_, (t, _))| *t);
        [timer, flush, gateway_flush, decision]
            .into_iter()
            .flatten()
            .min()
    }

    /// The connection's queued segments as I/O slices.
    pub(crate) fn io_slices<'a>(&'a self, conn: ConnId, slices: &mut [IoSlice<'a>]) -> usize {
        self.sessions
            .get(conn)
            .map_or(0, |s| s.out.io_slices(slices))
    }

    /// The segments queued for `conn`, front first (none for an unknown connection).
    pub(crate) fn queued_segments(&self, conn: ConnId) -> impl Iterator<Item = &Bytes> {
        self.sessions
            .get(conn)
            .into_iter()
            .flat_map(|s| s.out.segments())
    }

    /// Bytes queued for `conn`.
    pub(crate) fn queued_bytes(&self, conn: ConnId) -> usize {
        self.sessions.get(conn).map_or(0, |s| s.backlog())
    }

    /// Connections currently known.
    pub(crate) fn connection_count(&self) -> usize {
        self.sessions.len()
    }

    /// Recordings that stopped on an error (a full disk) since the start.
    pub(crate) fn recordings_failed(&self) -> u64 {
        self.recordings_failed
    }

    /// The send side of the connections, apart from the rest of the server: where the
    /// gateway's far-end media goes (see [`MediaSender::send`]).
    pub(crate) fn media_sender(&mut self) -> MediaSender<'_> {
        MediaSender {
            sessions: &mut self.sessions,
            frame_headers: &mut self.frame_headers,
            merge: &mut self.gateway_merge,
            transmits: &mut self.transmits,
            last_now: self.last_now,
            backlog: &mut self.client_backlog,
        }
    }

    /// Closes `conn` if its queue is past the hard backlog (it does not read what it is sent).
    pub(crate) fn check_backlog(&mut self, conn: ConnId) {
        let over = self
            .sessions
            .get(conn)
            .is_some_and(|s| s.backlog() > self.config.player_hard_backlog);
        if over {
            self.close_for_backlog(conn);
        }
    }

    /// Closes the connections far-end media found past the hard backlog.
    pub(crate) fn close_backlogged(&mut self) {
        while let Some(conn) = self.client_backlog.evict.pop() {
            self.close_for_backlog(conn);
        }
    }

    /// Closes `conn`, which is past the hard backlog: what it has queued is dropped now (it
    /// would not read it), as a player's is (as a player, if it plays a live stream).
    #[cold]
    fn close_for_backlog(&mut self, conn: ConnId) {
        let limit = self.config.player_hard_backlog;
        let Some(session) = self.sessions.get_mut(conn) else {
            return;
        };
        if matches!(session.phase, Phase::Closing) {
            return;
        }
        session.clear_queue();
        let player = session
            .streams
            .iter()
            .any(|(_, role)| matches!(role, StreamRole::Playing(_)));
        let reason = if player {
            CloseReason::PlayerBacklog { limit }
        } else {
            CloseReason::ClientBacklog { limit }
        };
        self.close(conn, reason);
    }

    /// Far-end frames of the gateway dropped because their client was behind (past the soft
    /// backlog), since the start.
    /// Queues `output` for the driver (an answer the node makes for the HTTP listener).
    pub(crate) fn push_output(&mut self, output: Output) {
        self.outputs.push_back(output);
    }

    pub(crate) fn far_media_dropped(&self) -> u64 {
        self.client_backlog.dropped
    }

    pub(crate) fn transmit_if(&mut self, conn: ConnId, needed: bool) {
        if needed {
            self.transmits.push_back(conn);
        }
    }

    fn end_role(&mut self, conn: ConnId, stream_id: u32, role: StreamRole) {
        match role {
            StreamRole::Idle => {}
            StreamRole::Publishing(key) => self.unpublish(conn, stream_id, &key),
            StreamRole::Playing(key) => {
                if let Some(stream) = self.live.get_mut(&*key) {
                    stream.remove_player(conn, stream_id);
                    if stream.is_unused() {
                        self.live.remove(&*key);
                    } else if stream.players.is_empty() && stream.flv_players.is_empty() {
                        self.unsubscribe_if_remote(&key);
                        self.pull_player_left(&key);
                    }
                }
            }
            StreamRole::Vod(file) => self.end_vod(file),
        }
    }
}

/// The front of `queue`; once that empties it, the ring starts again at its front, so the next
/// items are written where the last ones were (a few cache lines that stay warm), not on
/// around a ring that once grew (a burst of thousands) through lines long gone from the
/// cache. Free when empty.
fn pop_rewinding<T>(queue: &mut VecDeque<T>) -> Option<T> {
    let front = queue.pop_front();
    if queue.is_empty() {
        queue.clear();
    }
    front
}

/// The connections' send side: what sending a media frame to a connection touches (see
/// [`RtmpServer::media_sender`]).
pub(crate) struct MediaSender<'a> {
    sessions: &'a mut SessionTable,
    frame_headers: &'a mut BytesMut,
    merge: &'a mut Option<FlushSchedule>,
    transmits: &'a mut VecDeque<ConnId>,
    last_now: Instant,
    backlog: &'a mut ClientBacklog,
}

impl MediaSender<'_> {
    /// Sends a media frame to `conn` on `stream_id` (the gateway's far-end media), its body
    /// not copied: at once, or held for the merge window when merged writes are on, as live
    /// players' media is. A connection behind is sent less, or listed to close (see
    /// `client_backlog`).
    pub(crate) fn send(&mut self, conn: ConnId, csid: u32, stream_id: u32, frame: MediaFrame) {
        let Some(session) = self.sessions.get_mut(conn) else {
            return;
        };
        let backlog = session.backlog();
        // Before encoding: the chunk encoder's header compression must not count a frame that
        // never leaves.
        match session
            .far_gate
            .admit(backlog, self.backlog.soft, self.backlog.hard, &frame)
        {
            Admit::Queue => {}
            Admit::Drop => {
                self.backlog.dropped += 1;
                return;
            }
            Admit::Evict => {
                self.backlog.evict.push(conn);
                return;
            }
        }
        session.queue_frame(csid, stream_id, frame, self.frame_headers);
        // One decision for the whole frame, once its segments are queued: a hold that its
        // first segment would start and its last end (past `max_bytes`) is not started, and
        // the deadline is worked out only when a hold starts.
        let transmit = match self.merge {
            Some(schedule) => {
                let now = self.last_now;
                match session.hold_queued(schedule.max_bytes(), || schedule.deadline(now, 0)) {
                    Held::Nothing => false,
                    Held::Started => {
                        // The deadline the hold just started with.
                        if let Some(deadline) = session.hold_deadline {
                            schedule.hold(0, deadline, conn);
                        }
                        false
                    }
                    Held::Transmit => true,
                }
            }
            None => session.transmit_now(),
        };
        if transmit {
            self.transmits.push_back(conn);
        }
    }
}
