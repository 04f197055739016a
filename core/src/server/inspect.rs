//! What the HTTP API and the metrics (`crate::admin`) read off the RTMP server: its
//! connections and live streams as plain views, its counters and its memory accounting.
//! Everything here runs once per HTTP request, never on the media path.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use crate::flv::enhanced::{audio_packet, video_packet, walk};
use crate::flv::media::{audio_codec, classify_audio, classify_video};
use crate::ids::ConnId;
use crate::rtmp::message::type_id;

use super::session::{Phase, StreamRole};
use super::{RecordPolicy, RtmpServer};
use crate::admin::report::NodeStats;

/// One live stream, as the HTTP API shows it.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct StreamView {
    /// `app/name`.
    pub key: String,
    /// The local publisher's connection and address.
    pub publisher: Option<(ConnId, SocketAddr)>,
    /// Published on another worker of the group.
    pub remote: bool,
    /// Video and audio codec names, when known from what the stream caches.
    pub video: Option<String>,
    pub audio: Option<String>,
    /// Players of this node.
    pub players: usize,
    /// When the local publisher went live.
    pub since: Option<Instant>,
    /// A recording runs.
    pub recording: bool,
    /// Its relay sessions: the pushes of its local publication, or the pull that feeds it.
    pub relays: Vec<super::RelayView>,
}

/// One connection, as the HTTP API shows it.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct ConnView {
    pub id: ConnId,
    pub peer: SocketAddr,
    /// `handshake`, `rtmp`, `gateway` (a gateway client) or `closing`.
    pub state: &'static str,
    pub app: Option<String>,
    /// What its streams do: `publishing app/name`, `playing app/name`, `vod`.
    pub streams: Vec<String>,
    pub bytes_received: u64,
    /// Reads of it the driver handed in.
    pub reads: u64,
    /// A publisher read on the merge grid: how often (the grid's interval, or ten of them for
    /// a publisher nobody watches; see `read_pacing`).
    pub read_every: Option<Duration>,
    /// Bytes queued for it and not yet written.
    pub queued_bytes: usize,
    /// It came through the RTMPS listener.
    pub tls: bool,
    /// A live player under merged writes: how long its media is held (the base window, or a
    /// longer lane its read lag allows).
    pub merge_window: Option<Duration>,
    /// How late its application reads what we write, once measured (see `read_lag`).
    pub read_lag: Option<Duration>,
}

/// One application, as the HTTP API shows it: its settings and what it serves now.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct AppView {
    pub name: String,
    /// Listed in the server's per-application settings (`[apps.NAME]`).
    pub configured: bool,
    pub record: RecordPolicy,
    /// The gateway's application.
    pub gateway: bool,
    /// RTMP connections whose `connect` named it (for the gateway: its clients).
    pub connections: u64,
    /// Live streams published here.
    pub publishers: u64,
    /// Players of its live streams here, RTMP (waiting ones included) and HTTP-FLV.
    pub players: u64,
    /// The gateway's calls now (`None` for any other application).
    pub calls: Option<u64>,
}

impl AppView {
    fn new(name: &str, record: RecordPolicy) -> Self {
        Self {
            name: name.to_owned(),
            configured: false,
            record,
            gateway: false,
            connections: 0,
            publishers: 0,
            players: 0,
            calls: None,
        }
    }

    /// Adds `other`'s counts (another worker's view of the same application).
    pub(crate) fn add(&mut self, other: &AppView) {
        self.configured |= other.configured;
        self.gateway |= other.gateway;
        self.connections += other.connections;
        self.publishers += other.publishers;
        self.players += other.players;
        if let Some(theirs) = other.calls {
            *self.calls.get_or_insert(0) += theirs;
        }
    }
}

/// Connections by state, for the metrics.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub(crate) struct ConnStates {
    pub handshake: u64,
    pub rtmp: u64,
    pub gateway: u64,
    pub closing: u64,
}

impl ConnStates {
    /// Adds `other`'s (another worker's).
    pub(crate) fn add(&mut self, other: &ConnStates) {
        self.handshake += other.handshake;
        self.rtmp += other.rtmp;
        self.gateway += other.gateway;
        self.closing += other.closing;
    }
}

/// The node's own memory accounting, in bytes.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub(crate) struct MemoryView {
    /// Unfinished messages and input held while decisions are pending.
    pub partial: u64,
    /// Bytes queued to connections and not yet written.
    pub backlog: u64,
    /// Every live stream's GOP cache.
    pub gop_cache: u64,
}

impl MemoryView {
    /// Adds `other`'s (another worker's).
    pub(crate) fn add(&mut self, other: &MemoryView) {
        self.partial += other.partial;
        self.backlog += other.backlog;
        self.gop_cache += other.gop_cache;
    }
}

impl RtmpServer {
    /// Everything `/metrics` counts, as plain data (see `crate::admin::report`).
    pub(crate) fn node_stats(&self) -> NodeStats {
        NodeStats {
            counters: self.counters.clone(),
            states: self.conn_states(),
            memory: self.memory(),
            recordings: self.recorders.len() as u64,
            record_bytes: self.record_bytes(),
            record_failures: self.recordings_failed(),
            far_media_dropped: self.far_media_dropped(),
            gateway: self.gateway.as_ref().map(|g| g.stats()),
            relay: self.relays.counters.clone(),
            relay_sessions: self.relays.session_counts(),
        }
    }

    /// The counters since the start.
    #[cfg(test)]
    pub(crate) fn counters(&self) -> &super::Counters {
        &self.counters
    }

    /// Bytes written by recordings, ended and running.
    pub(crate) fn record_bytes(&self) -> u64 {
        self.counters.record_bytes_finished
            + self.recorders.values().map(|r| r.bytes()).sum::<u64>()
    }

    /// Connections by state.
    pub(crate) fn conn_states(&self) -> ConnStates {
        let mut states = ConnStates::default();
        for session in self.sessions.iter() {
            match session.phase {
                Phase::Handshake(_) => states.handshake += 1,
                Phase::Closing => states.closing += 1,
                Phase::Active if self.is_gateway_conn(session.id) => states.gateway += 1,
                Phase::Active => states.rtmp += 1,
            }
        }
        states
    }

    /// The node's memory accounting.
    pub(crate) fn memory(&self) -> MemoryView {
        MemoryView {
            partial: self.partial_total as u64,
            backlog: self.sessions.iter().map(|s| s.backlog() as u64).sum(),
            gop_cache: self.gop_total as u64,
        }
    }

    /// Every live stream, by key.
    pub(crate) fn stream_views(&self) -> Vec<StreamView> {
        let mut views: Vec<StreamView> = self
            .live
            .iter()
            .filter(|(_, s)| {
                s.publisher.is_some()
                    || s.remote.is_some()
                    || s.relay.pull.is_some()
                    || !s.players.is_empty()
                    || !s.flv_players.is_empty()
            })
            .map(|(key, stream)| {
                // The cached decoder configurations first (every track's), then the GOP.
                let messages = || {
                    stream
                        .configs
                        .iter()
                        .map(|c| &c.message)
                        .chain(stream.gop.iter())
                };
                let video = messages()
                    .filter(|m| m.msg.type_id == type_id::VIDEO)
                    .find_map(|m| video_codec_name(&m.msg.payload));
                let audio = messages()
                    .filter(|m| m.msg.type_id == type_id::AUDIO)
                    .find_map(|m| audio_codec_name(&m.msg.payload));
                StreamView {
                    key: key.to_string(),
                    publisher: stream
                        .publisher
                        .and_then(|(conn, _)| self.sessions.get(conn).map(|s| (conn, s.peer))),
                    remote: stream.remote.is_some(),
                    video,
                    audio,
                    players: stream.players.len() + stream.flv_players.len(),
                    since: stream
                        .since
                        .filter(|_| stream.publisher.is_some() || stream.relay.pulled),
                    recording: stream.recorder.is_some(),
                    relays: self.relay_views(key),
                }
            })
            .collect();
        views.sort_by(|a, b| a.key.cmp(&b.key));
        views
    }

    /// Every connection, in id order.
    pub(crate) fn conn_views(&self) -> Vec<ConnView> {
        let mut views: Vec<ConnView> = self
            .sessions
            .iter()
            .map(|s| ConnView {
                id: s.id,
                peer: s.peer,
                state: match s.phase {
                    Phase::Handshake(_) => "handshake",
                    Phase::Closing => "closing",
                    Phase::Active if self.is_gateway_conn(s.id) => "gateway",
                    Phase::Active => "rtmp",
                },
                app: s.app.clone(),
                streams: s
                    .streams
                    .iter()
                    .filter_map(|(_, role)| match role {
                        StreamRole::Idle => None,
                        StreamRole::Publishing(key) => Some(format!("publishing {key}")),
                        StreamRole::Playing(key) => Some(format!("playing {key}")),
                        StreamRole::Vod(_) => Some("vod".to_string()),
                    })
                    .collect(),
                bytes_received: s.rx_bytes,
                reads: s.rx_reads,
                read_every: self.read_every(s.read_pace),
                queued_bytes: s.backlog(),
                tls: s.tls.is_some(),
                merge_window: self.merge.as_ref().and_then(|merge| {
                    let playing = s
                        .streams
                        .iter()
                        .any(|(_, role)| matches!(role, StreamRole::Playing(_)));
                    playing.then(|| merge.window(s.merge_lane))
                }),
                read_lag: s.read_lag.estimate(),
            })
            .chain(self.flv_views())
            .collect();
        views.sort_by_key(|v| v.id);
        views
    }

    /// Every application this node knows: those configured, the gateway's, and those with
    /// connections or live streams now, by name.
    pub(crate) fn app_views(&self) -> Vec<AppView> {
        let mut apps: BTreeMap<String, AppView> = BTreeMap::new();
        for name in self.config.apps.keys() {
            self.app_view(&mut apps, name).configured = true;
        }
        let gateway = self.gateway.as_ref();
        if let Some(gateway) = gateway {
            let view = self.app_view(&mut apps, gateway.app());
            view.gateway = true;
            let calls = gateway.stats().calls.iter().sum();
            view.calls = Some(calls);
        }
        for session in self.sessions.iter() {
            let Some(app) = session.app.as_deref() else {
                continue;
            };
            // A gateway client's application is `sip/<user@domain>`: it counts as the
            // gateway's.
            let app = match gateway {
                Some(g) if g.owns_app(app) => g.app(),
                _ => app,
            };
            let view = self.app_view(&mut apps, app);
            view.connections += 1;
            for (_, role) in session.streams.iter() {
                match role {
                    StreamRole::Publishing(_) => view.publishers += 1,
                    StreamRole::Playing(_) => view.players += 1,
                    StreamRole::Idle | StreamRole::Vod(_) => {}
                }
            }
        }
        // HTTP-FLV players: their application is the stream's first segment (an HTTP-FLV
        // path names one application segment and one stream name).
        for (key, stream) in &self.live {
            if stream.flv_players.is_empty() {
                continue;
            }
            let app = key.split_once('/').map_or(&**key, |(app, _)| app);
            self.app_view(&mut apps, app).players += stream.flv_players.len() as u64;
        }
        apps.into_values().collect()
    }

    /// `name`'s entry in `apps`, made with its settings if it is not there yet.
    fn app_view<'a>(&self, apps: &'a mut BTreeMap<String, AppView>, name: &str) -> &'a mut AppView {
        apps.entry(name.to_owned())
            .or_insert_with(|| AppView::new(name, self.config.app(name).record))
    }

    /// The gateway's clients, when there is a gateway.
    pub(crate) fn gateway_clients(&self) -> Option<Vec<crate::gateway::host::ClientView>> {
        self.gateway.as_ref().map(|g| g.client_views())
    }
}

/// A video tag body's codec, as operators name it.
fn video_codec_name(body: &[u8]) -> Option<String> {
    let info = classify_video(body)?;
    let name = match info.codec {
        2 => "h263",
        3 => "screen",
        4 => "vp6",
        5 => "vp6a",
        6 => "screen2",
        7 => "h264",
        12 => "hevc",
        0xFF => {
            // Enhanced RTMP: the FourCC after any ModEx prefixes and multitrack header.
            let (first, rest) = body.split_first()?;
            let header = walk(first & 0x0F, rest, video_packet::MULTITRACK)?;
            return fourcc_name(header.fourcc?);
        }
        _ => return None,
    };
    Some(name.to_string())
}

/// A FourCC as text, when it is one (printable letters and digits, as the spec's are:
/// `hvc1`, `av01`, `Opus`, `.mp3`, `ac-3`).
fn fourcc_name(fourcc: [u8; 4]) -> Option<String> {
    fourcc
        .iter()
        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-'))
        .then(|| String::from_utf8_lossy(&fourcc).into_owned())
}

/// An audio tag body's codec, as operators name it.
fn audio_codec_name(body: &[u8]) -> Option<String> {
    let name = match classify_audio(body)?.codec {
        audio_codec::EX_HEADER => {
            let (first, rest) = body.split_first()?;
            let header = walk(first & 0x0F, rest, audio_packet::MULTITRACK)?;
            return fourcc_name(header.fourcc?);
        }
        0 | 3 => "pcm",
        1 => "adpcm",
        2 | 14 => "mp3",
        4..=6 => "nellymoser",
        7 => "pcma",
        8 => "pcmu",
        10 => "aac",
        11 => "speex",
        _ => return None,
    };
    Some(name.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codec_names_from_tag_bodies() {
        assert_eq!(video_codec_name(&[0x17, 0]).as_deref(), Some("h264"));
        assert_eq!(
            video_codec_name(&[0x90, b'h', b'v', b'c', b'1']).as_deref(),
            Some("hvc1")
        );
        assert_eq!(video_codec_name(&[0x90, 0, 1]), None);
        assert_eq!(audio_codec_name(&[0xAF, 0]).as_deref(), Some("aac"));
        assert_eq!(audio_codec_name(&[0xB2]).as_deref(), Some("speex"));
        // Enhanced audio: Opus sequence start; multitrack video with its FourCC after the
        // track header.
        assert_eq!(
            audio_codec_name(&[0x90, b'O', b'p', b'u', b's']).as_deref(),
            Some("Opus")
        );
        assert_eq!(
            video_codec_name(&[0x96, 0x03, b'a', b'v', b'0', b'1', 1]).as_deref(),
            Some("av01")
        );
        assert_eq!(audio_codec_name(&[]), None);
    }
}
