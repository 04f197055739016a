//! Relays in the config file: each application's `push` and `pull` upstreams
//! (`[apps.<name>]`, nginx-rtmp's vocabulary, with its `idle_streams`) and the `[relay]`
//! section's bounds, checked and turned into the node's settings. An upstream's host name is
//! resolved here, once at start (the node never resolves names): the first address it
//! resolves to is used for the life of the process, as for the HTTP callbacks. An
//! `rtmps://` upstream's certificate is verified against the system's roots, or the CA file
//! `[relay] tls_ca` (read here, once, when some upstream is `rtmps://`), for the URL's host.

use std::net::SocketAddr;
use std::time::Duration;

use serde::Deserialize;
use siprtmp_core::node::{RelayLimits, RelayUrl, RtmpUrl, ServerConfig};

use crate::config::AppSection;
use crate::diagnostics::{ConfigError, KeyPath, Origin};

/// `pull = "rtmp://..."` or `pull = ["rtmp://...", ...]`.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(untagged)]
pub(crate) enum OneOrMany {
    One(String),
    Many(Vec<String>),
}

impl OneOrMany {
    /// The URLs, each with its index when the value is a list.
    fn urls(&self) -> Vec<(Option<usize>, &str)> {
        match self {
            OneOrMany::One(url) => vec![(None, url.as_str())],
            OneOrMany::Many(urls) => urls
                .iter()
                .enumerate()
                .map(|(i, u)| (Some(i), u.as_str()))
                .collect(),
        }
    }
}

/// `[relay]`: bounds and timers of every relay session; every key optional.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RelaySection {
    /// Relay sessions at once on a node (default 256).
    pub max_sessions: Option<usize>,
    /// Relay sessions at once for one application (default 128).
    pub max_sessions_per_app: Option<usize>,
    /// The wait before the first retry of a failed upstream (default 1 s).
    pub backoff_min_secs: Option<f64>,
    /// The longest wait between retries (default 30 s).
    pub backoff_max_secs: Option<f64>,
    /// Time an upstream has to take a publish or play (default 10 s).
    pub setup_timeout_secs: Option<f64>,
    /// A pull closes this long after its last player left (default 10 s; 0: at once).
    pub pull_idle_timeout_secs: Option<f64>,
    /// `rtmps://` upstreams are verified against the CA certificates (PEM) of this file
    /// instead of the system's roots.
    pub tls_ca: Option<std::path::PathBuf>,
}

/// Most relay sessions accepted for `max_sessions` and `max_sessions_per_app`.
pub(crate) const MAX_SESSIONS: usize = 65_536;
/// Longest wait or timeout accepted in `[relay]`, in seconds (an hour).
pub(crate) const MAX_RELAY_SECS: f64 = 3600.0;
/// Most upstreams in one application's `push` or `pull`.
pub(crate) const MAX_UPSTREAMS: usize = 64;

/// `[relay].<key>` in seconds, within `min..=MAX_RELAY_SECS` (`zero_ok`: 0 too).
fn secs(
    key: &str,
    value: Option<f64>,
    default: Duration,
    zero_ok: bool,
) -> Result<Duration, ConfigError> {
    match value {
        None => Ok(default),
        Some(s) if (s > 0.0 || (zero_ok && s == 0.0)) && s <= MAX_RELAY_SECS => {
            Ok(Duration::from_secs_f64(s))
        }
        Some(s) => {
            let least = if zero_ok { "0 or more" } else { "more than 0" };
            Err(ConfigError::value(
                Origin::key(&format!("relay.{key}"), None),
                s,
                format!("out of range: expected seconds, {least} and at most {MAX_RELAY_SECS}"),
            ))
        }
    }
}

fn sessions(key: &str, value: Option<usize>, default: usize) -> Result<usize, ConfigError> {
    match value {
        None => Ok(default),
        Some(n @ 1..=MAX_SESSIONS) => Ok(n),
        Some(n) => Err(ConfigError::value(
            Origin::key(&format!("relay.{key}"), None),
            n,
            format!("out of range: expected 1 to {MAX_SESSIONS}"),
        )),
    }
}

impl RelaySection {
    /// The node's relay bounds.
    pub(crate) fn limits(&self) -> Result<RelayLimits, ConfigError> {
        let d = RelayLimits::default();
        let limits = RelayLimits {
            max_sessions: sessions("max_sessions", self.max_sessions, d.max_sessions)?,
            max_sessions_per_app: sessions(
                "max_sessions_per_app",
                self.max_sessions_per_app,
                d.max_sessions_per_app,
            )?,
            backoff_min: secs(
                "backoff_min_secs",
                self.backoff_min_secs,
                d.backoff_min,
                false,
            )?,
            backoff_max: secs(
                "backoff_max_secs",
                self.backoff_max_secs,
                d.backoff_max,
                false,
            )?,
            setup_timeout: secs(
                "setup_timeout_secs",
                self.setup_timeout_secs,
                d.setup_timeout,
                false,
            )?,
            pull_idle_timeout: secs(
                "pull_idle_timeout_secs",
                self.pull_idle_timeout_secs,
                d.pull_idle_timeout,
                true,
            )?,
        };
        if limits.backoff_min > limits.backoff_max {
            let (min, max) = (limits.backoff_min, limits.backoff_max);
            return Err(if self.backoff_min_secs.is_some() {
                ConfigError::value(
                    Origin::key("relay.backoff_min_secs", None),
                    min.as_secs_f64(),
                    format!(
                        "out of range: must not exceed relay.backoff_max_secs ({})",
                        max.as_secs_f64()
                    ),
                )
            } else {
                ConfigError::value(
                    Origin::key("relay.backoff_max_secs", None),
                    max.as_secs_f64(),
                    format!(
                        "out of range: must be at least relay.backoff_min_secs ({}, the default)",
                        min.as_secs_f64()
                    ),
                )
            });
        }
        Ok(limits)
    }
}

/// One upstream URL of `apps.<app>.<key>` (at `index` in a list): parsed, its host resolved.
fn upstream(
    app: &str,
    key: &str,
    index: Option<usize>,
    text: &str,
    resolve: &dyn Fn(&str, u16) -> Result<SocketAddr, String>,
) -> Result<RelayUrl, ConfigError> {
    let mut path = KeyPath::new("apps").key(app).key(key);
    if let Some(i) = index {
        path = path.index(i);
    }
    let origin = || Origin::Key {
        key: path.clone(),
        flag: None,
    };
    let url = RtmpUrl::parse(text).map_err(|problem| {
        ConfigError::value(
            origin(),
            format!("{text:?}"),
            format!("{problem}: expected rtmp[s]://host[:port]/app[/name][?query]"),
        )
    })?;
    let addr = match url.host.parse() {
        Ok(ip) => SocketAddr::new(ip, url.port),
        Err(_) => resolve(&url.host, url.port)
            .map_err(|problem| ConfigError::value(origin(), format!("{text:?}"), problem))?,
    };
    Ok(RelayUrl::new(url, addr))
}

/// Sets `server`'s relay bounds from `[relay]` and each application's `push`, `pull` and
/// `idle_streams`; `resolve` turns a host and port into an address (the system's resolver in
/// the binary).
pub(crate) fn apply(
    section: &RelaySection,
    apps: &std::collections::HashMap<String, AppSection>,
    server: &mut ServerConfig,
    resolve: &dyn Fn(&str, u16) -> Result<SocketAddr, String>,
) -> Result<(), ConfigError> {
    server.relay = section.limits()?;
    for (app, section) in apps {
        let push: Vec<(Option<usize>, &str)> = section
            .push
            .iter()
            .flatten()
            .enumerate()
            .map(|(i, u)| (Some(i), u.as_str()))
            .collect();
        let pull = section
            .pull
            .as_ref()
            .map(OneOrMany::urls)
            .unwrap_or_default();
        for (key, list) in [("push", &push), ("pull", &pull)] {
            if list.len() > MAX_UPSTREAMS {
                return Err(ConfigError::value(
                    Origin::Key {
                        key: KeyPath::new("apps").key(app).key(key),
                        flag: None,
                    },
                    format!("{} URLs", list.len()),
                    format!("out of range: expected at most {MAX_UPSTREAMS} upstreams"),
                ));
            }
        }
        let push = push
            .into_iter()
            .map(|(i, text)| upstream(app, "push", i, text, resolve))
            .collect::<Result<Vec<_>, _>>()?;
        let pull = pull
            .into_iter()
            .map(|(i, text)| upstream(app, "pull", i, text, resolve))
            .collect::<Result<Vec<_>, _>>()?;
        if push.is_empty() && pull.is_empty() && section.idle_streams.is_none() {
            continue;
        }
        let config = server.apps.entry(app.clone()).or_default();
        config.push = push;
        config.pull = pull;
        config.idle_streams = section.idle_streams.unwrap_or(true);
    }
    let secure = server
        .apps
        .values()
        .flat_map(|a| a.push.iter().chain(&a.pull))
        .any(|u| u.url.tls);
    if secure {
        use siprtmp_runtime_drivers::{load_roots, TlsRoots};
        let roots = match &section.tls_ca {
            Some(path) => load_roots(&TlsRoots::CaFile(path.clone())).map_err(|e| {
                ConfigError::value(
                    Origin::Key {
                        key: KeyPath::new("relay").key("tls_ca"),
                        flag: None,
                    },
                    path.display(),
                    e.problem,
                )
            })?,
            None => load_roots(&TlsRoots::System).map_err(|e| {
                ConfigError::Combination(format!(
                    "an rtmps:// upstream is verified against the system's roots, which cannot \
                     be read: {e} (name a CA file with relay.tls_ca)"
                ))
            })?,
        };
        server.relay_tls = Some(siprtmp_runtime_drivers::client_config(roots));
    }
    Ok(())
}

/// One line per application with relays, for the startup log (URLs without their query).
pub(crate) fn startup_lines(server: &ServerConfig) -> Vec<String> {
    let list = |urls: &[RelayUrl]| {
        urls.iter()
            .map(|u| format!("{} ({})", u.url.redacted(), u.addr))
            .collect::<Vec<_>>()
            .join(", ")
    };
    let mut lines: Vec<String> = server
        .apps
        .iter()
        .filter(|(_, a)| !a.push.is_empty() || !a.pull.is_empty())
        .map(|(name, app)| {
            let mut parts = Vec::new();
            if !app.push.is_empty() {
                parts.push(format!("pushes to {}", list(&app.push)));
            }
            if !app.pull.is_empty() {
                parts.push(format!("pulls from {}", list(&app.pull)));
            }
            format!("relay: app '{name}' {}", parts.join("; "))
        })
        .collect();
    lines.sort();
    lines
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::FileConfig;

    fn no_dns(host: &str, port: u16) -> Result<SocketAddr, String> {
        match host {
            "origin.test" => Ok(SocketAddr::from(([10, 0, 0, 7], port))),
            _ => Err(format!("cannot resolve {host}")),
        }
    }

    fn server(text: &str) -> Result<ServerConfig, String> {
        let file: FileConfig = toml::from_str(text).map_err(|e| e.to_string())?;
        let mut server = ServerConfig::default();
        apply(&file.relay, &file.apps, &mut server, &no_dns).map_err(|e| e.render(None))?;
        Ok(server)
    }

    #[test]
    fn push_pull_and_the_relay_section_become_node_settings() {
        let server = server(
            r#"
            [relay]
            backoff_min_secs = 0.25
            pull_idle_timeout_secs = 0
            max_sessions = 8
            [apps.live]
            push = ["rtmp://127.0.0.1:1936/live", "rtmp://origin.test/in/copy?key=k"]
            [apps.edge]
            pull = "rtmp://origin.test:1937/live"
            idle_streams = false
            [apps.tv]
            pull = ["rtmp://[::1]/a", "rtmp://origin.test/b"]
            "#,
        )
        .unwrap();
        assert_eq!(server.relay.backoff_min, Duration::from_millis(250));
        assert_eq!(server.relay.pull_idle_timeout, Duration::ZERO);
        assert_eq!(server.relay.max_sessions, 8);
        let live = server.app("live");
        assert_eq!(live.push.len(), 2);
        assert_eq!(live.push[1].addr, "10.0.0.7:1935".parse().unwrap());
        assert_eq!(live.push[1].url.stream_name("cam"), "copy?key=k");
        assert!(live.idle_streams);
        let edge = server.app("edge");
        assert_eq!(edge.pull[0].addr, "10.0.0.7:1937".parse().unwrap());
        assert!(!edge.idle_streams);
        assert_eq!(server.app("tv").pull[0].addr, "[::1]:1935".parse().unwrap());
        assert!(server.relay_tls.is_none(), "no TLS roots without rtmps://");
    }

    #[test]
    fn an_rtmps_upstream_takes_port_443_and_the_systems_roots() {
        let secure = server("[apps.live]\npush = [\"rtmps://origin.test/live\"]").unwrap();
        let push = &secure.app("live").push[0];
        assert!(push.url.tls);
        assert_eq!(push.addr, "10.0.0.7:443".parse().unwrap());
        assert!(secure.relay_tls.is_some());
        let e = server(
            "[relay]\ntls_ca = \"/nonexistent/ca.pem\"\n[apps.live]\npush = [\"rtmps://origin.test/live\"]",
        )
        .unwrap_err();
        assert!(
            e.contains("relay.tls_ca") && e.contains("cannot read it"),
            "{e}"
        );
    }

    #[test]
    fn bad_values_name_their_key() {
        for (text, key) in [
            (
                "[apps.live]\npush = [\"http://h/app\"]",
                "apps.live.push[0]",
            ),
            ("[apps.live]\npush = [\"rtmp://h\"]", "apps.live.push[0]"),
            (
                "[apps.live]\npull = \"rtmp://nowhere.test/live\"",
                "apps.live.pull",
            ),
            (
                "[apps.live]\npull = [\"rtmp://1.2.3.4/a\", \"rtmp://:1/a\"]",
                "apps.live.pull[1]",
            ),
            ("[relay]\nbackoff_min_secs = 0", "relay.backoff_min_secs"),
            ("[relay]\nbackoff_min_secs = 60", "relay.backoff_min_secs"),
            ("[relay]\nbackoff_max_secs = 0.1", "relay.backoff_max_secs"),
            (
                "[relay]\nsetup_timeout_secs = -1",
                "relay.setup_timeout_secs",
            ),
            (
                "[relay]\npull_idle_timeout_secs = 1e9",
                "relay.pull_idle_timeout_secs",
            ),
            ("[relay]\nmax_sessions = 0", "relay.max_sessions"),
        ] {
            let error = server(text).expect_err(text);
            assert!(error.starts_with(&format!("{key} = ")), "{text}: {error}");
        }
        assert!(server("[relay]\nmax_session = 1").is_err(), "unknown key");
        assert!(server("[apps.live]\npull = 3").is_err());
    }
}
