//! The configuration file (TOML): its sections, reading it, and checking its values (each
//! error names its key; see `diagnostics`).

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;
use siprtmp_core::node::{AppConfig, RecordPolicy, ServerConfig};
use siprtmp_core::node::{HttpConfig, NodeConfig};

use crate::auth::{IpNet, Rules};
use crate::callbacks::CallbacksSection;
use crate::diagnostics::{ConfigError, KeyPath, Origin, SourceFile};
use crate::gateway::GatewaySection;
use crate::logging::LogFormat;
use crate::relay::{OneOrMany, RelaySection};

/// Everything the config file may set; every field is optional.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct FileConfig {
    pub host: Option<IpAddr>,
    pub port: Option<u16>,
    /// The RTMPS listener's port (`--rtmps-port`); off when absent.
    pub rtmps_port: Option<u16>,
    /// The RTMPS certificate chain, PEM (`--tls-cert`).
    pub tls_cert: Option<PathBuf>,
    /// The RTMPS certificate's private key, PEM (`--tls-key`).
    pub tls_key: Option<PathBuf>,
    pub root: Option<PathBuf>,
    pub seed: Option<u64>,
    /// Wake-up moderation of the mio runtime: poll at most once per this many milliseconds
    /// (0 or absent: off).
    pub poll_interval_ms: Option<u64>,
    /// How log lines are written (`--log-format`): `text` or `json`.
    pub log_format: Option<LogFormat>,
    /// Where the HTTP listener (metrics and API) listens (`--http-listen`); off when absent.
    pub http_listen: Option<SocketAddr>,
    /// The bearer token every HTTP request must carry (`--http-token`); required for an
    /// `http_listen` that is not a loopback address.
    pub http_token: Option<String>,
    /// How long a stop (SIGTERM, SIGINT) waits for the gateway's goodbyes (BYE, CANCEL,
    /// un-REGISTER) to be answered, in seconds (`--shutdown-grace`; default 5, 0: not at all).
    pub shutdown_grace_secs: Option<f64>,
    #[serde(default)]
    pub rtmp: RtmpSection,
    #[serde(default)]
    pub auth: AuthSection,
    /// `[apps.<name>]`: per-application recording and allow lists.
    #[serde(default)]
    pub apps: HashMap<String, AppSection>,
    /// `[gateway]`: the SIP-RTMP gateway.
    #[serde(default)]
    pub gateway: GatewaySection,
    /// `[callbacks]`: nginx-rtmp-style HTTP callbacks.
    #[serde(default)]
    pub callbacks: CallbacksSection,
    /// `[relay]`: bounds of the relay sessions (`push` and `pull` are per application).
    #[serde(default)]
    pub relay: RelaySection,
}

/// `[auth]`: who may connect, publish and play.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct AuthSection {
    /// Secret a publisher must give as `name?token=...`.
    pub publish_token: Option<String>,
    /// Secret a player must give as `name?token=...`.
    pub play_token: Option<String>,
    pub max_connections: Option<usize>,
    pub max_connections_per_ip: Option<usize>,
}

/// `record = "all" | "off"`.
#[derive(Debug, Default, Clone, Copy, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub(crate) enum RecordSetting {
    All,
    #[default]
    Off,
}

/// `[apps.<name>]`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct AppSection {
    /// Record every publish to this application (ffmpeg and OBS always publish as `live`).
    #[serde(default)]
    pub record: RecordSetting,
    /// Addresses or blocks (`10.0.0.0/8`) that may publish; absent: anyone.
    pub publish_allow: Option<Vec<String>>,
    /// Addresses or blocks that may play; absent: anyone.
    pub play_allow: Option<Vec<String>>,
    /// Upstreams every stream published here is republished to (`rtmp://` URLs).
    pub push: Option<Vec<String>>,
    /// Upstream(s) a name nobody publishes here is played from, tried in order.
    pub pull: Option<OneOrMany>,
    /// A play of a name nobody publishes waits for a publisher (default true); false
    /// answers it `NetStream.Play.StreamNotFound`.
    pub idle_streams: Option<bool>,
}

/// `[rtmp]`: the server's limits and timers.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RtmpSection {
    pub chunk_size: Option<u32>,
    pub window_ack_size: Option<u32>,
    pub max_message_size: Option<u32>,
    pub max_chunk_streams: Option<usize>,
    /// Bytes of unfinished messages one connection may hold (default 9 MiB).
    pub max_partial_bytes: Option<usize>,
    /// Bytes of unfinished messages all connections together may hold (default 256 MiB).
    pub max_total_partial_bytes: Option<usize>,
    /// Connections at once, counted as they are accepted (default 10000; 0: no limit).
    pub max_connections: Option<usize>,
    /// Connections at once from one IP address (default 128; 0: no limit).
    pub max_connections_per_ip: Option<usize>,
    pub player_soft_backlog: Option<usize>,
    pub player_hard_backlog: Option<usize>,
    pub max_gop_cache_bytes: Option<usize>,
    /// Bytes all streams' GOP caches together may hold (default 512 MiB).
    pub max_total_gop_cache_bytes: Option<usize>,
    /// Bytes a recording may have waiting for the disk before it stops (default 16 MiB).
    pub max_record_backlog: Option<usize>,
    pub ping_interval_secs: Option<f64>,
    pub dead_timeout_secs: Option<f64>,
    pub handshake_timeout_secs: Option<f64>,
    /// A connect, publish or play the access rules have not decided within this many seconds
    /// is refused and its connection closed (default 10).
    pub decision_timeout_secs: Option<f64>,
    /// SO_SNDBUF for client sockets, in bytes (default: the kernel's autotuning).
    pub send_buffer: Option<usize>,
    /// TCP_NODELAY on client sockets (default off: Nagle's algorithm on).
    pub tcp_nodelay: Option<bool>,
    /// Merged writes: hold a player's media up to this many milliseconds so that several
    /// messages leave in one write (absent: [`DEFAULT_MERGE_WRITES_MS`]; 0: off).
    pub merge_writes_ms: Option<u64>,
    /// Merged writes that adapt: a player whose application reads late anyway is held up to
    /// this many milliseconds, no longer than it reads late (absent:
    /// [`DEFAULT_MERGE_WRITES_MAX_MS`]; 0, or not above `merge_writes_ms`: one window).
    pub merge_writes_max_ms: Option<u64>,
}

impl FileConfig {
    /// Reads the config file at `path` (its text is kept to say where a later error is).
    pub(crate) fn read(path: &Path) -> Result<SourceFile, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|error| ConfigError::Read {
            path: path.to_owned(),
            error,
        })?;
        Ok(SourceFile::new(path.to_owned(), text).with_top_level_keys(TOP_LEVEL_KEYS))
    }

    /// The settings of `file`'s text: a type error or an unknown key is an error.
    pub(crate) fn parse(file: &SourceFile) -> Result<Self, ConfigError> {
        toml::from_str(file.text()).map_err(ConfigError::Toml)
    }
}

/// The keys [`FileConfig`] takes outside any `[section]` (a misplaced one is named as such).
pub(crate) const TOP_LEVEL_KEYS: &[&str] = &[
    "host",
    "port",
    "rtmps_port",
    "tls_cert",
    "tls_key",
    "root",
    "seed",
    "poll_interval_ms",
    "log_format",
    "http_listen",
    "http_token",
    "shutdown_grace_secs",
];

/// Longest merge window accepted, in milliseconds (past a second, players stall).
pub(crate) const MAX_MERGE_WRITES_MS: u64 = 1000;

/// Longest poll interval accepted, in milliseconds (every hop waits up to it).
pub(crate) const MAX_POLL_INTERVAL_MS: u64 = 100;

/// Longest timer accepted in `[rtmp]`, in seconds (a day; far past any useful value, and
/// short of overflowing the clock).
pub(crate) const MAX_TIMER_SECS: f64 = 86_400.0;

/// The mio loop's poll interval for `ms` milliseconds (from `origin`): 0 is off.
pub(crate) fn poll_interval(ms: u64, origin: Origin) -> Result<Option<Duration>, ConfigError> {
    match ms {
        0 => Ok(None),
        1..=MAX_POLL_INTERVAL_MS => Ok(Some(Duration::from_millis(ms))),
        _ => Err(ConfigError::value(
            origin,
            ms,
            format!("out of range: expected 0 (off) to {MAX_POLL_INTERVAL_MS} milliseconds"),
        )),
    }
}

/// What a merge window becomes under a poll interval: the loop looks at its timers only when it
/// wakes, at most once per `poll`, so writes whose window ends between two wake-ups leave at the
/// second. A window that is not a whole number of intervals is served rounded up to one that
/// is: 100 ms under a 40 ms interval holds writes up to 120 ms (measured: a call's round trip
/// p99 205 ms with 100, 167 ms with 80; bench-compare/results/2026-12-06-gateway-poll-interval).
pub(crate) fn merge_window_served(window: Duration, poll: Duration) -> Duration {
    let (window_ns, poll_ns) = (window.as_nanos(), poll.as_nanos().max(1));
    let ticks = window_ns.div_ceil(poll_ns);
    Duration::from_nanos(u64::try_from(ticks * poll_ns).unwrap_or(u64::MAX))
}

/// The startup warnings for merge windows (named by their flag) that `poll` rounds up: one
/// line each, saying what the window becomes and which windows would be served as given.
pub(crate) fn merge_windows_rounded_up(
    poll: Option<Duration>,
    windows: &[(&str, Option<Duration>)],
) -> Vec<String> {
    let Some(poll) = poll else {
        return Vec::new();
    };
    let ms = |d: Duration| d.as_millis();
    windows
        .iter()
        .filter_map(|&(flag, window)| {
            let window = window?;
            let served = merge_window_served(window, poll);
            (served != window).then(|| {
                // The whole numbers of intervals either side of the window.
                let below = served.saturating_sub(poll);
                let aligned = if below.is_zero() {
                    format!("{}", ms(served))
                } else {
                    format!("{} or {}", ms(below), ms(served))
                };
                format!(
                    "{flag} {} ms under --poll-interval {} ms holds writes up to {} ms (the loop \
                     looks at its timers once per interval); {aligned} ms is served as given",
                    ms(window),
                    ms(poll),
                    ms(served),
                )
            })
        })
        .collect()
}

/// The HTTP listener's settings: `listen` (where it was given) and the token, if any. An
/// address other than loopback needs a token (anyone who reaches it could read the API and
/// drop connections); an empty token is refused.
pub(crate) fn http_config(
    listen: Option<(SocketAddr, Origin)>,
    token: Option<(String, Origin)>,
) -> Result<Option<HttpConfig>, ConfigError> {
    if let Some((token, origin)) = &token {
        if token.trim().is_empty() || token.chars().any(|c| c.is_whitespace() || c.is_control()) {
            return Err(ConfigError::value(
                origin.clone(),
                "(hidden)",
                "expected a token without spaces or control characters",
            ));
        }
    }
    let Some((addr, origin)) = listen else {
        return Ok(None);
    };
    if !addr.ip().is_loopback() && token.is_none() {
        return Err(ConfigError::value(
            origin,
            addr,
            "not a loopback address: set http_token (--http-token) too, so that only \
             holders of the token can read the API and drop connections",
        ));
    }
    Ok(Some(HttpConfig {
        listen: addr,
        token: token.map(|(t, _)| t),
        ..HttpConfig::default()
    }))
}

/// Longest shutdown grace accepted, in seconds: a service manager kills a stop that takes
/// longer than its own timeout (systemd's default is 90 s).
pub(crate) const MAX_SHUTDOWN_GRACE_SECS: f64 = 60.0;

/// The graceful stop's grace for `secs` seconds (from `origin`): 0 to
/// [`MAX_SHUTDOWN_GRACE_SECS`].
pub(crate) fn shutdown_grace(secs: f64, origin: Origin) -> Result<Duration, ConfigError> {
    if (0.0..=MAX_SHUTDOWN_GRACE_SECS).contains(&secs) {
        Ok(Duration::from_secs_f64(secs))
    } else {
        Err(ConfigError::value(
            origin,
            secs,
            format!("out of range: expected 0 to {MAX_SHUTDOWN_GRACE_SECS} seconds"),
        ))
    }
}

/// The merged-writes window for `ms` milliseconds (from `origin`): 0 is off.
/// The binary's players' merged-writes window when neither the file nor a flag sets one.
///
/// Measured (bench-compare, H.264 + Speex, 300 players, against nginx-rtmp in the same run):
/// message-by-message writes cost about 0.8x nginx-rtmp per player, a 40 ms window about
/// 0.45x for players that read every message, for some 25-60 ms more publish-to-player delay,
/// which a live viewer's buffer of a second or more does not show. Calls have their own
/// window, off by default (`gateway.merge_writes_ms`).
pub(crate) const DEFAULT_MERGE_WRITES_MS: u64 = 40;
/// The longest a late-reading player's media is held by default (see
/// `ServerConfig::merge_writes_max`): what brings a player that reads 16 KiB at a time to
/// a third of nginx-rtmp's cost per player (bench-compare/results/2026-12-06-bulk-window/).
pub(crate) const DEFAULT_MERGE_WRITES_MAX_MS: u64 = 400;

pub(crate) fn merge_window(ms: u64, origin: Origin) -> Result<Option<Duration>, ConfigError> {
    match ms {
        0 => Ok(None),
        1..=MAX_MERGE_WRITES_MS => Ok(Some(Duration::from_millis(ms))),
        _ => Err(ConfigError::value(
            origin,
            ms,
            format!("out of range: expected 0 (off) to {MAX_MERGE_WRITES_MS} milliseconds"),
        )),
    }
}

/// `[rtmp].<key>` in seconds: more than 0 and at most a day.
fn secs(key: &str, value: Option<f64>, default: Duration) -> Result<Duration, ConfigError> {
    match value {
        None => Ok(default),
        Some(s) if s > 0.0 && s <= MAX_TIMER_SECS => Ok(Duration::from_secs_f64(s)),
        Some(s) => Err(ConfigError::value(
            Origin::key(&format!("rtmp.{key}"), None),
            s,
            format!("out of range: expected seconds, more than 0 and at most {MAX_TIMER_SECS}"),
        )),
    }
}

/// `[rtmp].<key>`, which 0 would break: at least 1.
fn at_least_one<T: Copy + Into<u64>>(key: &str, value: Option<T>) -> Result<(), ConfigError> {
    match value {
        Some(v) if v.into() == 0 => Err(ConfigError::value(
            Origin::key(&format!("rtmp.{key}"), None),
            0,
            "out of range: expected 1 or more",
        )),
        _ => Ok(()),
    }
}

impl RtmpSection {
    pub(crate) fn node_config(&self) -> Result<NodeConfig, ConfigError> {
        let d = ServerConfig::default();
        let mut limits = d.chunk_limits;
        at_least_one("max_message_size", self.max_message_size)?;
        at_least_one(
            "max_chunk_streams",
            self.max_chunk_streams.map(|v| v as u64),
        )?;
        at_least_one("window_ack_size", self.window_ack_size)?;
        if let Some(v) = self.max_message_size {
            limits.max_message_size = v;
        }
        if let Some(v) = self.max_chunk_streams {
            limits.max_chunk_streams = v;
        }
        at_least_one(
            "max_partial_bytes",
            self.max_partial_bytes.map(|v| v as u64),
        )?;
        if let Some(v) = self.max_partial_bytes {
            limits.max_partial_bytes = v;
        }
        let chunk_size = self.chunk_size.unwrap_or(d.chunk_size);
        if !(128..=0xFF_FFFF).contains(&chunk_size) {
            return Err(ConfigError::value(
                Origin::key("rtmp.chunk_size", None),
                chunk_size,
                "out of range: expected 128 to 16777215 bytes",
            ));
        }
        let server = ServerConfig {
            chunk_size,
            window_ack_size: self.window_ack_size.unwrap_or(d.window_ack_size),
            peer_bandwidth: d.peer_bandwidth,
            chunk_limits: limits,
            max_total_partial_bytes: self
                .max_total_partial_bytes
                .unwrap_or(d.max_total_partial_bytes),
            max_connections: self.max_connections.unwrap_or(d.max_connections),
            max_connections_per_ip: self
                .max_connections_per_ip
                .unwrap_or(d.max_connections_per_ip),
            player_soft_backlog: self.player_soft_backlog.unwrap_or(d.player_soft_backlog),
            player_hard_backlog: self.player_hard_backlog.unwrap_or(d.player_hard_backlog),
            max_gop_cache_bytes: self.max_gop_cache_bytes.unwrap_or(d.max_gop_cache_bytes),
            max_total_gop_cache_bytes: self
                .max_total_gop_cache_bytes
                .unwrap_or(d.max_total_gop_cache_bytes),
            max_record_backlog: self.max_record_backlog.unwrap_or(d.max_record_backlog),
            ping_interval: secs(
                "ping_interval_secs",
                self.ping_interval_secs,
                d.ping_interval,
            )?,
            dead_timeout: secs("dead_timeout_secs", self.dead_timeout_secs, d.dead_timeout)?,
            handshake_timeout: secs(
                "handshake_timeout_secs",
                self.handshake_timeout_secs,
                d.handshake_timeout,
            )?,
            decision_timeout: secs(
                "decision_timeout_secs",
                self.decision_timeout_secs,
                d.decision_timeout,
            )?,
            merge_writes: merge_window(
                self.merge_writes_ms.unwrap_or(DEFAULT_MERGE_WRITES_MS),
                Origin::key("rtmp.merge_writes_ms", Some("--merge-writes")),
            )?,
            merge_writes_max: merge_window(
                self.merge_writes_max_ms
                    .unwrap_or(DEFAULT_MERGE_WRITES_MAX_MS),
                Origin::key("rtmp.merge_writes_max_ms", Some("--merge-writes-max")),
            )?,
            ..d
        };
        let (soft, hard) = (server.player_soft_backlog, server.player_hard_backlog);
        if soft > hard {
            // Blame the key the file gave (the soft one when it gave both).
            let error = if self.player_soft_backlog.is_some() {
                ConfigError::value(
                    Origin::key("rtmp.player_soft_backlog", None),
                    soft,
                    format!("out of range: must not exceed rtmp.player_hard_backlog ({hard})"),
                )
            } else {
                ConfigError::value(
                    Origin::key("rtmp.player_hard_backlog", None),
                    hard,
                    format!(
                        "out of range: must be at least rtmp.player_soft_backlog ({soft}, \
                         the default)"
                    ),
                )
            };
            return Err(error);
        }
        Ok(NodeConfig {
            server,
            ..NodeConfig::default()
        })
    }
}

impl FileConfig {
    /// The node's settings: `[rtmp]` limits, per-application recording, and decisions on
    /// when any access rule is set.
    pub(crate) fn node_config(&self, record_all: &[String]) -> Result<NodeConfig, ConfigError> {
        let mut config = self.rtmp.node_config()?;
        // Every `[apps.NAME]`, whatever it sets: the HTTP API lists the configured
        // applications (`GET /api/v1/applications`).
        for (app, section) in &self.apps {
            let record = match section.record {
                RecordSetting::All => RecordPolicy::All,
                RecordSetting::Off => RecordPolicy::Off,
            };
            config.server.apps.insert(
                app.clone(),
                AppConfig {
                    record,
                    ..AppConfig::default()
                },
            );
        }
        for app in record_all {
            config.server.apps.insert(
                app.clone(),
                AppConfig {
                    record: RecordPolicy::All,
                    ..AppConfig::default()
                },
            );
        }
        config.decisions = self.rules()?.is_active();
        Ok(config)
    }

    /// The access rules of `[auth]` and `[apps.*]`.
    pub(crate) fn rules(&self) -> Result<Rules, ConfigError> {
        let parse = |app: &str, key: &str, list: &Option<Vec<String>>| {
            let Some(list) = list else {
                return Ok(None);
            };
            let path = KeyPath::new("apps").key(app).key(key);
            let nets = list.iter().enumerate().map(|(i, s)| {
                s.parse::<IpNet>()
                    .map_err(|problem: String| ConfigError::Value {
                        origin: Origin::Key {
                            key: path.index(i),
                            flag: None,
                        },
                        value: format!("{s:?}"),
                        problem: format!(
                            "{}: expected an address or block (\"10.0.0.0/8\", \"::1\")",
                            problem.strip_prefix(&format!("{s}: ")).unwrap_or(&problem)
                        ),
                    })
            });
            nets.collect::<Result<Vec<IpNet>, _>>().map(Some)
        };
        let mut rules = Rules {
            publish_token: self.auth.publish_token.clone(),
            play_token: self.auth.play_token.clone(),
            max_connections: self.auth.max_connections,
            max_connections_per_ip: self.auth.max_connections_per_ip,
            ..Rules::default()
        };
        for (app, section) in &self.apps {
            if let Some(nets) = parse(app, "publish_allow", &section.publish_allow)? {
                rules.publish_allow.insert(app.clone(), nets);
            }
            if let Some(nets) = parse(app, "play_allow", &section.play_allow)? {
                rules.play_allow.insert(app.clone(), nets);
            }
        }
        Ok(rules)
    }
}

/// The listening address from flags, else the file, else 0.0.0.0:1935.
pub(crate) fn listen_addr(
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn apps_and_auth_sections_become_node_settings_and_rules() {
        let file: FileConfig = toml::from_str(
            r#"
            [auth]
            publish_token = "s3cret"
            max_connections_per_ip = 4
            [apps.live]
            record = "all"
            publish_allow = ["127.0.0.1", "10.0.0.0/8"]
            [apps.cams]
            play_allow = ["127.0.0.1"]
            "#,
        )
        .unwrap();
        let node = file.node_config(&["tv".to_string()]).unwrap();
        assert_eq!(node.server.app("live").record, RecordPolicy::All);
        // Configured without recording: known all the same (the HTTP API lists it).
        assert_eq!(node.server.apps["cams"].record, RecordPolicy::Off);
        assert_eq!(node.server.app("tv").record, RecordPolicy::All);
        assert_eq!(node.server.app("other").record, RecordPolicy::Off);
        assert!(node.decisions);
        let rules = file.rules().unwrap();
        assert_eq!(rules.publish_allow["live"].len(), 2);
        let plain: FileConfig = toml::from_str("[apps.live]\nrecord = \"all\"").unwrap();
        assert!(
            !plain.node_config(&[]).unwrap().decisions,
            "no rules, no questions"
        );
        assert!(toml::from_str::<FileConfig>("[apps.live]\nrecord = \"sometimes\"").is_err());
    }

    /// `TOP_LEVEL_KEYS` is every key serde accepts at the top level but the sections.
    #[test]
    fn top_level_keys_are_the_ones_serde_takes() {
        let error = toml::from_str::<FileConfig>("no_such_key = 1").unwrap_err();
        let message = error.message();
        let taken: Vec<&str> = message
            .split_once("expected one of ")
            .unwrap()
            .1
            .split(", ")
            .map(|k| k.trim_matches('`'))
            .filter(|k| !["rtmp", "auth", "apps", "gateway", "callbacks", "relay"].contains(k))
            .collect();
        assert_eq!(taken, TOP_LEVEL_KEYS);
    }

    #[test]
    fn the_service_config_parses_and_is_valid() {
        let text = include_str!("../../contrib/systemd/siprtmp.toml");
        let file: FileConfig = toml::from_str(text).unwrap();
        assert_eq!(file.log_format, Some(LogFormat::Text));
        assert!(file.node_config(&[]).is_ok());
    }

    #[test]
    fn a_public_http_listener_needs_a_token() {
        let file: FileConfig =
            toml::from_str("http_listen = \"0.0.0.0:8080\"\nhttp_token = \"t0k\"").unwrap();
        let origin = || Origin::key("http_listen", Some("--http-listen"));
        let listen = file.http_listen.map(|a| (a, origin()));
        let token = file.http_token.clone().map(|t| (t, origin()));
        let config = http_config(listen.clone(), token).unwrap().unwrap();
        assert_eq!(config.token.as_deref(), Some("t0k"));
        let refused = http_config(listen, None).unwrap_err().render(None);
        assert!(refused.contains("http_token"), "{refused}");
        let loopback = Some(("127.0.0.1:0".parse().unwrap(), origin()));
        assert!(http_config(loopback.clone(), None).unwrap().is_some());
        let blank = Some(("a b".to_string(), origin()));
        assert!(http_config(loopback, blank).is_err());
        assert_eq!(http_config(None, None).unwrap(), None);
    }

    #[test]
    fn shutdown_grace_secs_is_read_and_bounded() {
        let file: FileConfig = toml::from_str("shutdown_grace_secs = 2.5").unwrap();
        assert_eq!(file.shutdown_grace_secs, Some(2.5));
        let origin = || Origin::key("shutdown_grace_secs", Some("--shutdown-grace"));
        assert_eq!(shutdown_grace(0.0, origin()).unwrap(), Duration::ZERO);
        assert_eq!(
            shutdown_grace(MAX_SHUTDOWN_GRACE_SECS, origin()).unwrap(),
            Duration::from_secs(60)
        );
        for bad in [-1.0, MAX_SHUTDOWN_GRACE_SECS + 0.5, f64::NAN, f64::INFINITY] {
            assert!(shutdown_grace(bad, origin()).is_err(), "{bad}");
        }
    }

    #[test]
    fn a_merge_window_between_two_wake_ups_is_served_at_the_second() {
        let ms = Duration::from_millis;
        assert_eq!(merge_window_served(ms(100), ms(40)), ms(120));
        assert_eq!(merge_window_served(ms(80), ms(40)), ms(80));
        assert_eq!(merge_window_served(ms(100), ms(20)), ms(100));
        assert_eq!(merge_window_served(ms(10), ms(40)), ms(40));
    }

    #[test]
    fn the_startup_warns_of_a_merge_window_the_poll_interval_rounds_up() {
        let ms = Duration::from_millis;
        let windows = [
            ("--merge-writes", Some(ms(40))),
            ("--gateway-merge-writes", Some(ms(100))),
        ];
        let warnings = merge_windows_rounded_up(Some(ms(40)), &windows);
        assert_eq!(
            warnings,
            vec![
                "--gateway-merge-writes 100 ms under --poll-interval 40 ms holds writes up to 120 \
                 ms (the loop looks at its timers once per interval); 80 or 120 ms is served as \
                 given"
                    .to_owned()
            ]
        );
        // Whole numbers of intervals, no interval, or no window: nothing to say.
        assert!(merge_windows_rounded_up(Some(ms(20)), &windows).is_empty());
        assert!(merge_windows_rounded_up(None, &windows).is_empty());
        assert!(
            merge_windows_rounded_up(Some(ms(30)), &[("--gateway-merge-writes", None)]).is_empty()
        );
        // A window shorter than the interval: the interval is the only choice.
        assert_eq!(
            merge_windows_rounded_up(Some(ms(40)), &[("--merge-writes", Some(ms(10)))]),
            vec![
                "--merge-writes 10 ms under --poll-interval 40 ms holds writes up to 40 ms (the \
                 loop looks at its timers once per interval); 40 ms is served as given"
                    .to_owned()
            ]
        );
    }

    #[test]
    fn poll_interval_ms_is_read_and_bounded() {
        let file: FileConfig = toml::from_str("poll_interval_ms = 20").unwrap();
        assert_eq!(file.poll_interval_ms, Some(20));
        let origin = || Origin::key("poll_interval_ms", Some("--poll-interval"));
        assert_eq!(
            poll_interval(20, origin()).unwrap(),
            Some(Duration::from_millis(20))
        );
        assert_eq!(poll_interval(0, origin()).unwrap(), None);
        assert!(poll_interval(MAX_POLL_INTERVAL_MS + 1, origin()).is_err());
    }

    #[test]
    fn merge_writes_ms_sets_the_window_and_zero_turns_it_off() {
        let merged: FileConfig = toml::from_str("[rtmp]\nmerge_writes_ms = 100").unwrap();
        let window = merged.node_config(&[]).unwrap().server.merge_writes;
        assert_eq!(window, Some(Duration::from_millis(100)));
        let off: FileConfig = toml::from_str("[rtmp]\nmerge_writes_ms = 0").unwrap();
        assert_eq!(off.node_config(&[]).unwrap().server.merge_writes, None);
        // Players' media is merged by default; a call's is not (its own key, in the gateway's
        // section).
        let default = FileConfig::default();
        let server = default.node_config(&[]).unwrap().server;
        assert_eq!(
            server.merge_writes,
            Some(Duration::from_millis(DEFAULT_MERGE_WRITES_MS))
        );
        assert_eq!(server.gateway_merge_writes, None);
        let long: FileConfig = toml::from_str("[rtmp]\nmerge_writes_ms = 5000").unwrap();
        assert!(long.node_config(&[]).is_err());
    }

    #[test]
    fn late_readers_are_held_up_to_400_ms_by_default_and_the_key_changes_it() {
        let default = FileConfig::default().node_config(&[]).unwrap().server;
        assert_eq!(default.merge_writes_max, Some(Duration::from_millis(400)));
        let set: FileConfig = toml::from_str("[rtmp]\nmerge_writes_max_ms = 200").unwrap();
        let max = set.node_config(&[]).unwrap().server.merge_writes_max;
        assert_eq!(max, Some(Duration::from_millis(200)));
        let off: FileConfig = toml::from_str("[rtmp]\nmerge_writes_max_ms = 0").unwrap();
        assert_eq!(off.node_config(&[]).unwrap().server.merge_writes_max, None);
        let long: FileConfig = toml::from_str("[rtmp]\nmerge_writes_max_ms = 5000").unwrap();
        let error = long.node_config(&[]).unwrap_err().render(None);
        assert!(
            error.starts_with("rtmp.merge_writes_max_ms = 5000: out of range"),
            "{error}"
        );
    }

    /// Each `[rtmp]` value that would break the server is refused, naming its key.
    #[test]
    fn rtmp_values_out_of_range_name_their_key() {
        let cases = [
            ("chunk_size = 64", "rtmp.chunk_size"),
            ("ping_interval_secs = 0", "rtmp.ping_interval_secs"),
            ("dead_timeout_secs = -1", "rtmp.dead_timeout_secs"),
            (
                "handshake_timeout_secs = 1e30",
                "rtmp.handshake_timeout_secs",
            ),
            (
                "handshake_timeout_secs = nan",
                "rtmp.handshake_timeout_secs",
            ),
            ("decision_timeout_secs = 0", "rtmp.decision_timeout_secs"),
            ("max_message_size = 0", "rtmp.max_message_size"),
            ("max_chunk_streams = 0", "rtmp.max_chunk_streams"),
            ("window_ack_size = 0", "rtmp.window_ack_size"),
            (
                "player_soft_backlog = 999999999",
                "rtmp.player_soft_backlog",
            ),
            ("player_hard_backlog = 1", "rtmp.player_hard_backlog"),
        ];
        for (line, key) in cases {
            let file: FileConfig = toml::from_str(&format!("[rtmp]\n{line}")).unwrap();
            let error = file.node_config(&[]).expect_err(line).render(None);
            assert!(error.starts_with(&format!("{key} = ")), "{line}: {error}");
            assert!(error.contains("out of range"), "{line}: {error}");
        }
        let fine: FileConfig = toml::from_str("[rtmp]\nping_interval_secs = 0.5").unwrap();
        assert!(fine.node_config(&[]).is_ok());
    }

    #[test]
    fn decision_timeout_secs_sets_how_long_a_question_waits() {
        let file: FileConfig = toml::from_str("[rtmp]\ndecision_timeout_secs = 2.5").unwrap();
        let server = file.node_config(&[]).unwrap().server;
        assert_eq!(server.decision_timeout, Duration::from_millis(2500));
        let default = FileConfig::default().node_config(&[]).unwrap().server;
        assert_eq!(default.decision_timeout, Duration::from_secs(10));
    }
}
