//! The configuration file (TOML) and how flags override it.

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;
use siprtmp_core::node::NodeConfig;
use siprtmp_core::server::ServerConfig;

/// Everything the config file may set; every field is optional.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileConfig {
    pub host: Option<IpAddr>,
    pub port: Option<u16>,
    pub root: Option<PathBuf>,
    pub seed: Option<u64>,
    #[serde(default)]
    pub rtmp: RtmpSection,
}

/// `[rtmp]`: the server's limits and timers.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RtmpSection {
    pub chunk_size: Option<u32>,
    pub window_ack_size: Option<u32>,
    pub max_message_size: Option<u32>,
    pub max_chunk_streams: Option<usize>,
    pub player_soft_backlog: Option<usize>,
    pub player_hard_backlog: Option<usize>,
    pub max_gop_cache_bytes: Option<usize>,
    pub ping_interval_secs: Option<f64>,
    pub dead_timeout_secs: Option<f64>,
    pub handshake_timeout_secs: Option<f64>,
    /// SO_SNDBUF for client sockets, in bytes (default: the kernel's autotuning).
    pub send_buffer: Option<usize>,
}

impl FileConfig {
    pub fn load(path: &std::path::Path) -> Result<Self, String> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
        toml::from_str(&text).map_err(|e| format!("{}: {e}", path.display()))
    }
}

fn secs(value: Option<f64>, default: Duration) -> Result<Duration, String> {
    match value {
        None => Ok(default),
        Some(s) => Duration::try_from_secs_f64(s).map_err(|e| format!("bad duration {s}: {e}")),
    }
}

impl RtmpSection {
    pub fn node_config(&self) -> Result<NodeConfig, String> {
        let d = ServerConfig::default();
        let mut limits = d.chunk_limits;
        if let Some(v) = self.max_message_size {
            limits.max_message_size = v;
        }
        if let Some(v) = self.max_chunk_streams {
            limits.max_chunk_streams = v;
        }
        let chunk_size = self.chunk_size.unwrap_or(d.chunk_size);
        if !(128..=0xFF_FFFF).contains(&chunk_size) {
            return Err(format!("chunk_size {chunk_size} is outside 128..=16777215"));
        }
        let server = ServerConfig {
            chunk_size,
            window_ack_size: self.window_ack_size.unwrap_or(d.window_ack_size),
            peer_bandwidth: d.peer_bandwidth,
            chunk_limits: limits,
            player_soft_backlog: self.player_soft_backlog.unwrap_or(d.player_soft_backlog),
            player_hard_backlog: self.player_hard_backlog.unwrap_or(d.player_hard_backlog),
            max_gop_cache_bytes: self.max_gop_cache_bytes.unwrap_or(d.max_gop_cache_bytes),
            ping_interval: secs(self.ping_interval_secs, d.ping_interval)?,
            dead_timeout: secs(self.dead_timeout_secs, d.dead_timeout)?,
            handshake_timeout: secs(self.handshake_timeout_secs, d.handshake_timeout)?,
        };
        if server.player_soft_backlog > server.player_hard_backlog {
            return Err("player_soft_backlog must not exceed player_hard_backlog".into());
        }
        Ok(NodeConfig { server })
    }
}

/// The listening address from flags, else the file, else 0.0.0.0:1935.
pub fn listen_addr(
    flag_host: Option<IpAddr>,
    flag_port: Option<u16>,
    file: &FileConfig,
) -> SocketAddr {
    let host = flag_host
        .or(file.host)
        .unwrap_or(IpAddr::from([0, 0, 0, 0]));
    let port = flag_port.or(file.port).unwrap_or(1935);
    SocketAddr::new(host, port)
}
