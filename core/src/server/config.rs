//! [`ServerConfig`]: every limit and timer of the live RTMP server, with production defaults.

use std::collections::HashMap;
use std::time::Duration;

use crate::rtmp::chunk_decoder::ChunkLimits;

/// Settings of the RTMP server application. `Default` gives safe production values.
///
/// ```
/// use siprtmp_core::node::ServerConfig;
/// let config = ServerConfig { player_hard_backlog: 4 * 1024 * 1024, ..ServerConfig::default() };
/// assert!(config.player_soft_backlog < config.player_hard_backlog);
///
/// // Merged writes, as SRS does: up to 100 ms of media per player per write.
/// let merged = ServerConfig {
///     merge_writes: Some(std::time::Duration::from_millis(100)),
///     ..ServerConfig::default()
/// };
/// assert_eq!(merged.merge_max_bytes, 64 * 1024);
/// ```
#[derive(Debug, Clone)]
pub struct ServerConfig {
    /// Outgoing chunk size announced to every client right after `connect`.
    pub chunk_size: u32,
    /// Window acknowledgement size announced to clients.
    pub window_ack_size: u32,
    /// Peer bandwidth announced to clients (dynamic limit).
    pub peer_bandwidth: u32,
    /// Bounds on what a peer may make the chunk decoder hold.
    pub chunk_limits: ChunkLimits,
    /// Bytes of unfinished messages all connections together may hold (each also within
    /// [`ChunkLimits::max_partial_bytes`]): the connection whose bytes would pass it is
    /// closed, so that many connections each within their own limit cannot exhaust memory.
    pub max_total_partial_bytes: usize,
    /// Connections at once (0: no limit); a connection beyond is closed as it is accepted.
    pub max_connections: usize,
    /// Connections at once from one IP address (0: no limit); a connection beyond is closed
    /// as it is accepted.
    pub max_connections_per_ip: usize,
    /// Backlog (bytes queued but not yet taken by the kernel) past which a player's non-key
    /// video is dropped until the next keyframe. A gateway client's far-end media is dropped
    /// past it too: audio frame by frame, video until a keyframe that finds the backlog back
    /// under this limit.
    pub player_soft_backlog: usize,
    /// Backlog past which a player, or any other connection, is disconnected: a gateway client
    /// (whose backlog also counts the far-end media dropped since it was last under the soft
    /// limit, so that one that never reads is closed as a player would be, while holding no
    /// more than the soft limit), or a client whose replies pile up because it sends requests
    /// and does not read.
    pub player_hard_backlog: usize,
    /// Largest amount of media (bytes) the cache of the current GOP may hold per stream; past
    /// it the cache is dropped until the next keyframe (late players then wait for it). Each
    /// message counts its payload and about a hundred bytes of bookkeeping; the chunk
    /// encodings made for players (at most four per message) come on top.
    pub max_gop_cache_bytes: usize,
    /// Bytes all streams' GOP caches together may hold: the stream whose cache would pass it
    /// drops its cache (as past `max_gop_cache_bytes`), so that many publishers cannot make
    /// the server hold their GOPs beyond it.
    pub max_total_gop_cache_bytes: usize,
    /// A client silent for this long is sent a ping.
    pub ping_interval: Duration,
    /// A client silent for `ping_interval + dead_timeout` is closed as dead.
    pub dead_timeout: Duration,
    /// A handshake not finished within this time is closed.
    pub handshake_timeout: Duration,
    /// With decisions on ([`NodeConfig::decisions`](crate::node::NodeConfig::decisions)): a
    /// question the application has not answered within this time is answered as a refusal
    /// (the client gets the status a rejection gives) and the connection is closed, so that an
    /// application that never answers cannot leave connections, and the input they send
    /// meanwhile, held for ever. An answer after that is refused as for an unknown request.
    pub decision_timeout: Duration,
    /// Per-application settings, by application name; applications not listed get
    /// [`AppConfig::default`].
    pub apps: HashMap<String, AppConfig>,
    /// How far ahead of its timestamps a file being played may be sent (a small burst fills
    /// the player's buffer at once; the rest is paced by the tags' timestamps).
    pub vod_burst: Duration,
    /// Size of each read of a file being played.
    pub vod_read_size: usize,
    /// Bytes a recording may have waiting for the disk before it is stopped (a disk that does
    /// not keep up must not make the server hold the stream in memory).
    pub max_record_backlog: usize,
    /// Merged writes: when set, live media for a player is held for up to this long so that
    /// several messages leave in one write (as SRS's `mw_latency`), trading that much latency
    /// for far fewer system calls per player. Commands, status, control messages and the
    /// first media after a play or resume still go out at once. `None` (the default here; the
    /// `siprtmp` binary's default is 40 ms): every message is written as soon as it arrives.
    pub merge_writes: Option<Duration>,
    /// Merged writes that adapt: a player whose application reads late anyway (a buffering
    /// player woken once 16 KiB are queued, say) is held longer, up to this, on windows
    /// doubling from `merge_writes`; its lag is measured with RTMP pings that ride on its
    /// writes, and it is held no longer than it reads late. A player that reads every message
    /// as it arrives keeps `merge_writes`. `None` (the default here; the `siprtmp` binary's
    /// default is 400 ms), or not above `merge_writes`: one window for every player.
    pub merge_writes_max: Option<Duration>,
    /// Merged writes for the gateway's far-end media to its RTMP clients, apart from the
    /// players' window: a phone call feels every millisecond a live viewer does not, so it
    /// has its own setting. `None` (the default, also the binary's): written as it arrives.
    pub gateway_merge_writes: Option<Duration>,
    /// With merged writes, held media bytes past which a player's queue is written at once,
    /// without waiting for the rest of the window (so bulk video does not pile up in memory).
    pub merge_max_bytes: usize,
    /// The SIP-RTMP gateway, when enabled (`None`: connects to its application are ordinary
    /// RTMP connects).
    pub gateway: Option<crate::gateway::host::GatewayNodeConfig>,
    /// The node's HTTP listener for metrics and the API, when enabled (off by default).
    pub http: Option<crate::http::HttpConfig>,
    /// nginx-rtmp-style HTTP callbacks (`on_publish`, `on_play`, `on_done`...), when set:
    /// the node asks the backend itself before a connect, publish or play, after the
    /// embedding application's own decision if [`NodeConfig::decisions`](crate::node::NodeConfig::decisions)
    /// is on (off by default).
    pub callbacks: Option<crate::http::CallbacksConfig>,
    /// RTMPS: the TLS configuration of the connections a driver accepts with
    /// [`Node::accept_tls`](crate::node::Node::accept_tls) (its RTMPS listener). `None` (the
    /// default): such connections are closed at once with [`CloseReason::Tls`](crate::node::CloseReason::Tls).
    pub tls: Option<crate::tls::TlsConfig>,
    /// `rtmps://` relay upstreams: the TLS client configuration their certificates are
    /// verified with (the host of the URL is the name). `None` (the default): an `rtmps://`
    /// upstream fails each attempt with that reason.
    pub relay_tls: Option<crate::tls::ClientTlsConfig>,
    /// Bounds and timers of relay sessions (the applications' `push` and `pull`).
    pub relay: super::relay::RelayLimits,
    /// How long a graceful stop ([`Input::Shutdown`](crate::node::Input::Shutdown)) waits
    /// for the gateway's goodbyes to be answered (BYE, CANCEL, un-REGISTER) before the node
    /// reports itself drained anyway ([`Node::is_drained`](crate::node::Node::is_drained)).
    /// Zero: the node is drained as soon as the goodbyes are sent.
    pub shutdown_grace: Duration,
}

/// Whether an application records what is published to it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum RecordPolicy {
    /// Only publishes of type `record` or `append` are recorded.
    #[default]
    Off,
    /// Every publish is recorded (as `record`, or `append` when asked), as nginx-rtmp's
    /// `record all`: encoders such as ffmpeg and OBS always publish as `live`.
    All,
}

/// Settings of one application (scope).
///
/// ```
/// use siprtmp_core::node::{AppConfig, RelayUrl};
/// let edge = AppConfig {
///     pull: vec![RelayUrl::parse("rtmp://10.0.0.1:1935/live").unwrap()],
///     ..AppConfig::default()
/// };
/// assert!(edge.idle_streams && edge.push.is_empty());
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AppConfig {
    /// Recording of publishes.
    pub record: RecordPolicy,
    /// Upstreams every stream published to the application is republished to (nginx-rtmp's
    /// `push`), each by a relay session of its own while the publication lasts.
    pub push: Vec<super::relay::RelayUrl>,
    /// Upstreams a name nobody publishes here is played from when a player asks for it
    /// (nginx-rtmp's `pull`), tried in order; one session per name, shared by its players.
    pub pull: Vec<super::relay::RelayUrl>,
    /// A live play of a name nobody publishes (here, on another worker, or upstream through
    /// a pull) waits for a publisher (`true`, the default); `false` answers it
    /// `NetStream.Play.StreamNotFound` at once (nginx-rtmp's `idle_streams off`), so that a
    /// player, or an edge pulling from this server, learns the stream is not there.
    pub idle_streams: bool,
}

impl Default for AppConfig {
    fn default() -> Self {
        Self {
            record: RecordPolicy::Off,
            push: Vec::new(),
            pull: Vec::new(),
            idle_streams: true,
        }
    }
}

impl ServerConfig {
    /// The settings of application `app`.
    pub fn app(&self, app: &str) -> AppConfig {
        self.apps.get(app).cloned().unwrap_or_default()
    }
}

impl Default for ServerConfig {
    fn default() -> Self {
        Self {
            chunk_size: 4096,
            window_ack_size: 2_500_000,
            peer_bandwidth: 2_500_000,
            chunk_limits: ChunkLimits::default(),
            max_total_partial_bytes: 256 * 1024 * 1024,
            max_connections: 10_000,
            max_connections_per_ip: 128,
            player_soft_backlog: 1024 * 1024,
            player_hard_backlog: 8 * 1024 * 1024,
            max_gop_cache_bytes: 32 * 1024 * 1024,
            max_total_gop_cache_bytes: 512 * 1024 * 1024,
            ping_interval: Duration::from_secs(30),
            dead_timeout: Duration::from_secs(30),
            handshake_timeout: Duration::from_secs(10),
            decision_timeout: Duration::from_secs(10),
            apps: HashMap::new(),
            vod_burst: Duration::from_millis(500),
            vod_read_size: 64 * 1024,
            max_record_backlog: 16 * 1024 * 1024,
            merge_writes: None,
            merge_writes_max: None,
            gateway_merge_writes: None,
            merge_max_bytes: 64 * 1024,
            gateway: None,
            http: None,
            callbacks: None,
            tls: None,
            relay_tls: None,
            relay: super::relay::RelayLimits::default(),
            shutdown_grace: Duration::from_secs(5),
        }
    }
}
