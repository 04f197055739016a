//! HTTP-FLV players: live streams delivered as one FLV file over HTTP (`GET /APP/NAME.flv`), as
//! SRS and nginx-http-flv serve them, from the same fan-out as RTMP players.
//!
//! The HTTP listener ([`crate::admin`]) hands a `.flv` request over with
//! [`RtmpServer::flv_request`]; from then on the server owns the connection's output. A play is
//! a play: with decisions on, the application is asked the same [`Question::Play`] an RTMP
//! `play` gets (the connection id is the HTTP stream's, [`flv_conn_id`]; the name's query
//! string is the URL's), and only then is the stream looked up (404 when it is not published,
//! so a refused client learns nothing of which names exist).
//!
//! A joining player gets the response head and the FLV file header, then the cached metadata,
//! decoder configurations and GOP, then the live tags. Each published message is encoded as an
//! FLV tag once ([`SharedMessage::flv_tag`]) and the same `Bytes` is sent to every HTTP player:
//! per player, the work is a backlog check and a queue push (an `Output::Tcp` send).
//!
//! Backpressure is the RTMP players' ([`super::fan_out`]): the driver reports the bytes the
//! socket took ([`crate::tcp::TcpEvent::Sent`]), so the backlog is what was sent and not yet
//! taken; past the soft limit video is dropped until a keyframe, and past the hard limit
//! (counting what was dropped meanwhile) the player is closed. Both limits are clamped below
//! what the driver promises to buffer per stream ([`MAX_QUEUED_SEND`]), so that the server,
//! not the driver, decides (a join whose cached GOP alone would pass the soft limit starts at
//! the next keyframe instead).
//!
//! When the stream's publisher stops, the response ends (the last chunk for chunked transfer
//! encoding), and the connection is closed once the client has taken everything; the HTTP
//! listener closes it at its request timeout if the client stops reading meanwhile.

use super::player_backpressure::{Admit, PlayerBackpressure};
use std::net::SocketAddr;
use std::sync::Arc;

use bytes::{BufMut, Bytes, BytesMut};
use smallvec::SmallVec;

use super::inspect::ConnView;
use super::live_stream::MediaKind;
use super::pending_decisions::Pending;
use super::RtmpServer;
use crate::close_reason::CloseReason;
use crate::decision::Question;
use crate::flv::tag::FileHeader;
use crate::ids::ConnId;
use crate::io::{Event, Output};
use crate::rtmp::message::type_id;
use crate::rtmp::shared_message::SharedMessage;
use crate::tcp::{StreamId, TcpCommand, MAX_QUEUED_SEND};

/// Longest stream name accepted (the RTMP names' limit).
const MAX_NAME_LEN: usize = 1024;

/// The connection id of the HTTP-FLV player on HTTP stream `stream`: its bits, so the ids
/// never meet those of RTMP connections (an accepted stream's top bit is set; a worker
/// number in a connection id's top byte stays below 128; such an id shows as `w128c...`).
pub(crate) fn flv_conn_id(stream: StreamId) -> ConnId {
    ConnId(stream.0)
}

/// An HTTP-FLV player of a live stream, in [`super::live_stream::LiveStream::flv_players`].
#[derive(Debug, Clone)]
pub(crate) struct FlvPlayer {
    pub stream: StreamId,
    /// Chunked transfer encoding (HTTP/1.1); else the body ends with the connection.
    pub chunked: bool,
    /// Bytes sent to the driver and not yet reported taken by the socket: the backlog.
    pub queued: usize,
    /// Waiting for a keyframe, and the video dropped for its backlog (the RTMP players'
    /// rule).
    pub backpressure: PlayerBackpressure,
}

/// Where an HTTP-FLV connection stands.
#[derive(Debug)]
enum FlvState {
    /// Waiting for the application's decision on the play of `key`.
    Deciding(Arc<str>),
    /// Playing `key`.
    Playing(Arc<str>),
    /// The response is complete; closed once the client has taken the `queued` bytes left.
    Finishing { queued: usize },
}

/// The server's record of one HTTP connection it has taken over.
#[derive(Debug)]
pub(crate) struct FlvConn {
    chunked: bool,
    state: FlvState,
    /// The client's address (for the HTTP API's connection list).
    peer: SocketAddr,
}

/// What the HTTP listener must learn about a connection the server took over
/// ([`RtmpServer::take_flv_ended`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum FlvEnd {
    /// The server closed it: nothing more will be reported for it.
    Closed(StreamId),
    /// Its response is complete and the server closes it once drained: the listener gives
    /// it its request timeout for that.
    Finishing(StreamId),
}

/// The soft and hard backlog limits of an HTTP-FLV player: the configured ones (the defaults
/// pass unchanged), clamped below what the driver buffers per stream before it closes one on
/// its own, with room for the message that crosses the hard limit.
pub(crate) fn flv_limits(soft: usize, hard: usize) -> (usize, usize) {
    (soft.min(MAX_QUEUED_SEND / 4), hard.min(MAX_QUEUED_SEND / 2))
}

/// The response head and the FLV file header (as the first chunk when `chunked`).
fn response_head(chunked: bool) -> Bytes {
    let mut out = BytesMut::with_capacity(256);
    out.put_slice(
        b"HTTP/1.1 200 OK\r\nContent-Type: video/x-flv\r\nCache-Control: no-store\r\n\
          Connection: close\r\nAccess-Control-Allow-Origin: *\r\n",
    );
    if chunked {
        out.put_slice(b"Transfer-Encoding: chunked\r\n");
    }
    out.put_slice(b"\r\n");
    let header = FileHeader {
        audio: true,
        video: true,
        data_offset: 9,
    }
    .encode();
    if chunked {
        out.put_slice(format!("{:x}\r\n", header.len()).as_bytes());
        out.put_slice(&header);
        out.put_slice(b"\r\n");
    } else {
        out.put_slice(&header);
    }
    out.freeze()
}

/// Delivers a published message to a stream's HTTP-FLV players (the RTMP players' rules, see
/// [`super::fan_out`]); the players past the hard backlog go to `evict`.
pub(crate) fn deliver_flv(
    players: &mut [FlvPlayer],
    shared: &mut SharedMessage,
    kind: MediaKind,
    (soft, hard): (usize, usize),
    outputs: &mut std::collections::VecDeque<Output>,
    dropped: &mut u64,
    evict: &mut SmallVec<[StreamId; 4]>,
) {
    let is_video = shared.msg.type_id == type_id::VIDEO;
    let len = shared.msg.payload.len();
    for player in players.iter_mut() {
        match player
            .backpressure
            .admit(player.queued, (soft, hard), is_video, kind, len)
        {
            Admit::Send { .. } => {}
            Admit::Wait => continue,
            Admit::Drop => {
                *dropped += 1;
                continue;
            }
            Admit::Evict => {
                evict.push(player.stream);
                continue;
            }
        }
        let Some(data) = shared.flv_tag(player.chunked) else {
            return; // nothing FLV can carry: the same for every player
        };
        player.queued += data.len();
        outputs.push_back(Output::Tcp(TcpCommand::Send {
            stream: player.stream,
            data,
        }));
    }
}

/// Whether nobody here (RTMP or HTTP) plays `key` any more.
fn live_unwatched(server: &RtmpServer, key: &str) -> bool {
    server
        .live
        .get(key)
        .is_some_and(|l| l.players.is_empty() && l.flv_players.is_empty())
}

impl RtmpServer {
    /// A `GET /APP/NAME.flv` (`name` with its query string) on HTTP stream `stream` from
    /// `peer`: from now on the server answers it and owns the connection's output (see the
    /// module documentation). `chunked`: the client speaks HTTP/1.1.
    pub(crate) fn flv_request(
        &mut self,
        stream: StreamId,
        peer: SocketAddr,
        app: &str,
        name: &str,
        chunked: bool,
    ) {
        let (bare, query) = name.split_once('?').unwrap_or((name, ""));
        let key: Option<Arc<str>> = (!app.is_empty()
            && !bare.is_empty()
            && app.len() <= MAX_NAME_LEN
            && bare.len() <= MAX_NAME_LEN)
            .then(|| Arc::from(format!("{app}/{bare}")));
        let Some(key) = key else {
            return self.flv_refuse_now(stream, peer, chunked, 404, "no such stream\n");
        };
        self.flv_conns.insert(
            stream,
            FlvConn {
                chunked,
                state: FlvState::Deciding(key),
                peer,
            },
        );
        if self.decisions {
            let question = Question::Play {
                conn: flv_conn_id(stream),
                peer,
                app: app.to_owned(),
                name: bare.to_owned(),
                query: query.to_owned(),
            };
            return self.ask(question, Pending::FlvPlay { stream });
        }
        self.begin_flv_play(stream);
    }

    /// The play is allowed: 404 unless the stream is live, else the head, the cache and the
    /// player's place in the fan-out.
    pub(super) fn begin_flv_play(&mut self, stream: StreamId) {
        let Some(flv) = self.flv_conns.get(&stream) else {
            return; // the client left while the application decided
        };
        let FlvState::Deciding(key) = &flv.state else {
            return;
        };
        let (key, chunked) = (key.clone(), flv.chunked);
        let (soft, _) = flv_limits(
            self.config.player_soft_backlog,
            self.config.player_hard_backlog,
        );
        let Some(live) = self.live.get_mut(&*key).filter(|s| s.is_live()) else {
            return self.flv_refuse(stream, 404, "no such stream\n");
        };
        let head = response_head(chunked);
        let mut queued = head.len();
        self.outputs
            .push_back(Output::Tcp(TcpCommand::Send { stream, data: head }));
        let gop_bytes: usize = live.gop.iter().map(SharedMessage::len).sum();
        // A GOP that alone would put the player past the soft limit is not sent: the player
        // starts at the next keyframe, as one that fell that far behind would.
        let send_gop = !live.gop.is_empty() && gop_bytes <= soft;
        let gop = if send_gop { &mut live.gop[..] } else { &mut [] };
        let cached = live
            .metadata
            .iter_mut()
            .chain(live.configs.iter_mut().map(|c| &mut c.message))
            .chain(gop.iter_mut());
        for shared in cached {
            if let Some(data) = shared.flv_tag(chunked) {
                queued += data.len();
                self.outputs
                    .push_back(Output::Tcp(TcpCommand::Send { stream, data }));
            }
        }
        live.flv_players.push(FlvPlayer {
            stream,
            chunked,
            queued,
            backpressure: PlayerBackpressure {
                need_keyframe: !send_gop,
                behind: 0,
            },
        });
        if let Some(flv) = self.flv_conns.get_mut(&stream) {
            flv.state = FlvState::Playing(key.clone());
        }
        self.audience_joined(&key);
        // A pulled stream's session is kept from closing while it has players.
        self.pull_for_player(&key);
        self.subscribe_if_remote(&key);
        self.counters.plays += 1;
        self.outputs.push_back(Output::Event(Event::PlayStarted {
            conn: flv_conn_id(stream),
            stream: key.to_string(),
        }));
    }

    /// Takes HTTP stream `stream` over only to refuse it with `status`.
    pub(crate) fn flv_refuse_now(
        &mut self,
        stream: StreamId,
        peer: SocketAddr,
        chunked: bool,
        status: u16,
        text: &str,
    ) {
        self.flv_conns.insert(
            stream,
            FlvConn {
                chunked,
                state: FlvState::Deciding(Arc::from("")),
                peer,
            },
        );
        self.flv_refuse(stream, status, text);
    }

    /// Answers `status` (403, 404, 503) and finishes the connection.
    pub(super) fn flv_refuse(&mut self, stream: StreamId, status: u16, text: &str) {
        let data =
            crate::http::response::Response::text(status, text.to_owned()).encode(false, false);
        self.finish_flv(stream, Some(data));
    }

    /// Ends the response on `stream` (with `last`, else the final chunk when chunked): the
    /// player leaves its stream, and the connection is closed once drained.
    fn finish_flv(&mut self, stream: StreamId, last: Option<Bytes>) {
        let Some(flv) = self.flv_conns.get(&stream) else {
            return;
        };
        let chunked = flv.chunked;
        let mut queued = match &flv.state {
            FlvState::Deciding(_) => 0,
            FlvState::Playing(key) => {
                let key = key.clone();
                let queued = self.leave_flv(&key, stream);
                self.outputs.push_back(Output::Event(Event::Disconnected {
                    conn: flv_conn_id(stream),
                }));
                queued
            }
            FlvState::Finishing { .. } => return,
        };
        let last = last.or_else(|| chunked.then(|| Bytes::from_static(b"0\r\n\r\n")));
        if let Some(data) = last {
            queued += data.len();
            self.outputs
                .push_back(Output::Tcp(TcpCommand::Send { stream, data }));
        }
        if let Some(flv) = self.flv_conns.get_mut(&stream) {
            flv.state = FlvState::Finishing { queued };
        }
        self.flv_ended.push(FlvEnd::Finishing(stream));
        if queued == 0 {
            self.close_flv(stream);
        }
    }

    /// Removes the player on `stream` from `key`'s fan-out; its backlog.
    fn leave_flv(&mut self, key: &Arc<str>, stream: StreamId) -> usize {
        let Some(live) = self.live.get_mut(&**key) else {
            return 0;
        };
        let mut queued = 0;
        live.flv_players.retain(|p| {
            if p.stream == stream {
                queued = p.queued;
            }
            p.stream != stream
        });
        if live.is_unused() {
            self.live.remove(&**key);
        } else {
            if live_unwatched(self, key) {
                self.unsubscribe_if_remote(key);
                self.pull_player_left(key);
            }
        }
        queued
    }

    /// Closes the connection now.
    fn close_flv(&mut self, stream: StreamId) {
        let Some(flv) = self.flv_conns.remove(&stream) else {
            return;
        };
        if let FlvState::Playing(key) = &flv.state {
            self.leave_flv(key, stream);
            self.outputs.push_back(Output::Event(Event::Disconnected {
                conn: flv_conn_id(stream),
            }));
        }
        self.outputs
            .push_back(Output::Tcp(TcpCommand::Close { stream }));
        self.flv_ended.push(FlvEnd::Closed(stream));
    }

    /// Closes the HTTP-FLV players found past the hard backlog.
    pub(super) fn evict_flv(&mut self, evict: &[StreamId], limit: usize) {
        for &stream in evict {
            let reason = CloseReason::PlayerBacklog { limit };
            self.counters.count_close(&reason);
            self.outputs.push_back(Output::Event(Event::Closing {
                conn: flv_conn_id(stream),
                reason,
            }));
            self.close_flv(stream);
        }
    }

    /// The publisher of `key` is gone: its HTTP-FLV responses end.
    pub(super) fn end_flv_players(&mut self, key: &str) {
        let Some(live) = self.live.get(key) else {
            return;
        };
        if live.flv_players.is_empty() {
            return;
        }
        let streams: SmallVec<[StreamId; 8]> = live.flv_players.iter().map(|p| p.stream).collect();
        for stream in streams {
            self.finish_flv(stream, None);
        }
    }

    /// The driver says the socket of HTTP stream `stream` took `bytes`.
    pub(crate) fn flv_sent(&mut self, stream: StreamId, bytes: usize) {
        let Some(flv) = self.flv_conns.get_mut(&stream) else {
            return;
        };
        match &mut flv.state {
            FlvState::Deciding(_) => {}
            FlvState::Playing(key) => {
                if let Some(player) = self
                    .live
                    .get_mut(&**key)
                    .and_then(|l| l.flv_players.iter_mut().find(|p| p.stream == stream))
                {
                    player.queued = player.queued.saturating_sub(bytes);
                }
            }
            FlvState::Finishing { queued } => {
                *queued = queued.saturating_sub(bytes);
                if *queued == 0 {
                    self.close_flv(stream);
                }
            }
        }
    }

    /// HTTP stream `stream` is gone (the client closed it, or the listener gave up on it).
    pub(crate) fn flv_closed(&mut self, stream: StreamId) {
        let Some(flv) = self.flv_conns.remove(&stream) else {
            return;
        };
        if let FlvState::Playing(key) = &flv.state {
            self.counters.count_close_kind(super::counters::PEER_CLOSED);
            self.leave_flv(key, stream);
            self.outputs.push_back(Output::Event(Event::Disconnected {
                conn: flv_conn_id(stream),
            }));
        }
    }

    /// The HTTP-FLV players, as the HTTP API lists them beside the RTMP connections (state
    /// `http_flv`; their ids are [`flv_conn_id`]s).
    pub(crate) fn flv_views(&self) -> impl Iterator<Item = ConnView> + '_ {
        self.flv_conns.iter().map(|(stream, flv)| {
            let (role, queued) = match &flv.state {
                FlvState::Deciding(_) => (None, 0),
                FlvState::Playing(key) => {
                    let queued = self
                        .live
                        .get(&**key)
                        .and_then(|l| l.flv_players.iter().find(|p| p.stream == *stream))
                        .map_or(0, |p| p.queued);
                    (Some(format!("playing {key}")), queued)
                }
                FlvState::Finishing { queued } => (None, *queued),
            };
            ConnView {
                id: flv_conn_id(*stream),
                peer: flv.peer,
                state: "http_flv",
                app: None,
                streams: role.into_iter().collect(),
                bytes_received: 0,
                reads: 0,
                read_every: None,
                queued_bytes: queued,
                tls: false,
                merge_window: None,
                read_lag: None,
            }
        })
    }

    /// Drops the HTTP-FLV player whose id is `conn` (the operator's `drop`), if there is one:
    /// the connection closes at once, counted as dropped by the operator.
    pub(crate) fn drop_flv(&mut self, conn: ConnId) -> bool {
        let stream = StreamId(conn.0);
        if !self.flv_conns.contains_key(&stream) {
            return false;
        }
        let reason = CloseReason::DroppedByOperator;
        self.counters.count_close(&reason);
        self.outputs
            .push_back(Output::Event(Event::Closing { conn, reason }));
        self.close_flv(stream);
        true
    }

    /// The HTTP connections the server ended or finished since the last call (the HTTP
    /// listener's bookkeeping).
    pub(crate) fn take_flv_ended(&mut self) -> Vec<FlvEnd> {
        std::mem::take(&mut self.flv_ended)
    }

    /// Whether any HTTP connection ended since the last [`Self::take_flv_ended`].
    pub(crate) fn has_flv_ended(&self) -> bool {
        !self.flv_ended.is_empty()
    }
}
