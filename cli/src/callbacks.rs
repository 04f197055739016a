//! `[callbacks]`: nginx-rtmp-style HTTP callbacks (`on_publish = "http://..."`), checked and
//! turned into the node's `CallbacksConfig`. A URL's host name is resolved here, once at
//! start (the node never resolves names); the first address it resolves to is used for the
//! life of the process.

use std::net::{SocketAddr, ToSocketAddrs};
use std::time::Duration;

use serde::Deserialize;
use siprtmp_core::node::{CallbackUrl, CallbacksConfig, FailurePolicy};

use crate::diagnostics::{ConfigError, Origin};

/// `on_failure = "allow" | "refuse"`.
#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub(crate) enum OnFailure {
    Allow,
    Refuse,
}

/// `[callbacks]`; every key optional, no URL set: no callbacks.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct CallbacksSection {
    pub on_connect: Option<String>,
    pub on_publish: Option<String>,
    pub on_play: Option<String>,
    pub on_done: Option<String>,
    pub on_publish_done: Option<String>,
    pub on_play_done: Option<String>,
    pub on_record_done: Option<String>,
    pub on_update: Option<String>,
    pub on_register: Option<String>,
    pub on_call: Option<String>,
    pub on_call_done: Option<String>,
    /// Time a callback has to answer, in milliseconds (default 3000).
    pub timeout_ms: Option<u64>,
    /// What a deciding callback that cannot answer means (default `refuse`).
    pub on_failure: Option<OnFailure>,
    /// Period of `on_update`, in seconds (default 30).
    pub update_interval_secs: Option<u64>,
    /// Callbacks in flight at once (default 64).
    pub max_in_flight: Option<usize>,
}

/// Longest callback timeout accepted, in milliseconds: the node's own decision timeout
/// (`rtmp.decision_timeout_secs`, 10 s by default) bounds a decision anyway.
pub(crate) const MAX_TIMEOUT_MS: u64 = 60_000;

impl CallbacksSection {
    /// The node's callbacks, `None` when no URL is set; `resolve` turns a host and port into
    /// an address (the system's resolver in the binary).
    pub(crate) fn node_config(
        &self,
        resolve: &dyn Fn(&str, u16) -> Result<SocketAddr, String>,
    ) -> Result<Option<CallbacksConfig>, ConfigError> {
        let url = |key: &str, value: &Option<String>| -> Result<Option<CallbackUrl>, ConfigError> {
            let Some(text) = value else {
                return Ok(None);
            };
            let origin = || Origin::key(&format!("callbacks.{key}"), None);
            let (host, port, authority, target) = CallbackUrl::split(text)
                .map_err(|problem| ConfigError::value(origin(), format!("{text:?}"), problem))?;
            let addr = match host.parse() {
                Ok(ip) => SocketAddr::new(ip, port),
                Err(_) => resolve(&host, port).map_err(|problem| {
                    ConfigError::value(origin(), format!("{text:?}"), problem)
                })?,
            };
            Ok(Some(CallbackUrl::new(addr, authority, target)))
        };
        let d = CallbacksConfig::default();
        let config = CallbacksConfig {
            on_connect: url("on_connect", &self.on_connect)?,
            on_publish: url("on_publish", &self.on_publish)?,
            on_play: url("on_play", &self.on_play)?,
            on_done: url("on_done", &self.on_done)?,
            on_publish_done: url("on_publish_done", &self.on_publish_done)?,
            on_play_done: url("on_play_done", &self.on_play_done)?,
            on_record_done: url("on_record_done", &self.on_record_done)?,
            on_update: url("on_update", &self.on_update)?,
            on_register: url("on_register", &self.on_register)?,
            on_call: url("on_call", &self.on_call)?,
            on_call_done: url("on_call_done", &self.on_call_done)?,
            timeout: match self.timeout_ms {
                None => d.timeout,
                Some(ms @ 1..=MAX_TIMEOUT_MS) => Duration::from_millis(ms),
                Some(ms) => {
                    return Err(ConfigError::value(
                        Origin::key("callbacks.timeout_ms", None),
                        ms,
                        format!("out of range: expected 1 to {MAX_TIMEOUT_MS} milliseconds"),
                    ))
                }
            },
            on_failure: match self.on_failure {
                None => d.on_failure,
                Some(OnFailure::Allow) => FailurePolicy::Allow,
                Some(OnFailure::Refuse) => FailurePolicy::Refuse,
            },
            update_interval: match self.update_interval_secs {
                None => d.update_interval,
                Some(secs @ 1..=86_400) => Duration::from_secs(secs),
                Some(secs) => {
                    return Err(ConfigError::value(
                        Origin::key("callbacks.update_interval_secs", None),
                        secs,
                        "out of range: expected 1 to 86400 seconds",
                    ))
                }
            },
            max_in_flight: match self.max_in_flight {
                None => d.max_in_flight,
                Some(n @ 1..=4096) => n,
                Some(n) => {
                    return Err(ConfigError::value(
                        Origin::key("callbacks.max_in_flight", None),
                        n,
                        "out of range: expected 1 to 4096",
                    ))
                }
            },
        };
        let any = [
            &config.on_connect,
            &config.on_publish,
            &config.on_play,
            &config.on_done,
            &config.on_publish_done,
            &config.on_play_done,
            &config.on_record_done,
            &config.on_update,
            &config.on_register,
            &config.on_call,
            &config.on_call_done,
        ]
        .iter()
        .any(|u| u.is_some());
        Ok(any.then_some(config))
    }
}

/// The system resolver: the first address of `host`.
pub(crate) fn resolve(host: &str, port: u16) -> Result<SocketAddr, String> {
    (host, port)
        .to_socket_addrs()
        .map_err(|e| format!("cannot resolve {host}: {e}"))?
        .next()
        .ok_or_else(|| format!("{host} resolves to no address"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn section(text: &str) -> CallbacksSection {
        toml::from_str(text).unwrap()
    }

    fn no_dns(host: &str, _: u16) -> Result<SocketAddr, String> {
        match host {
            "auth.test" => Ok("10.0.0.7:9000".parse().unwrap()),
            _ => Err(format!("cannot resolve {host}")),
        }
    }

    #[test]
    fn urls_timeouts_and_the_policy_are_read_and_names_resolved_once() {
        let config = section(
            "on_publish = \"http://127.0.0.1:8081/publish?k=1\"\n\
             on_play = \"http://auth.test:9000/play\"\n\
             timeout_ms = 500\non_failure = \"allow\"\nupdate_interval_secs = 5\n",
        )
        .node_config(&no_dns)
        .unwrap()
        .unwrap();
        let publish = config.on_publish.unwrap();
        assert_eq!(publish.addr, "127.0.0.1:8081".parse().unwrap());
        assert_eq!(publish.target, "/publish?k=1");
        let play = config.on_play.unwrap();
        assert_eq!(play.addr, "10.0.0.7:9000".parse().unwrap());
        assert_eq!(play.host, "auth.test:9000");
        assert_eq!(config.timeout, Duration::from_millis(500));
        assert_eq!(config.on_failure, FailurePolicy::Allow);
        assert_eq!(config.update_interval, Duration::from_secs(5));
    }

    #[test]
    fn bad_values_name_their_key_and_no_url_means_no_callbacks() {
        assert_eq!(
            section("timeout_ms = 5").node_config(&no_dns).unwrap(),
            None
        );
        for (text, key) in [
            (
                "on_publish = \"https://127.0.0.1/p\"",
                "callbacks.on_publish",
            ),
            ("on_play = \"http://nowhere.test/p\"", "callbacks.on_play"),
            (
                "on_done = \"http://1.2.3.4/\"\ntimeout_ms = 0",
                "callbacks.timeout_ms",
            ),
            (
                "on_done = \"http://1.2.3.4/\"\nmax_in_flight = 0",
                "callbacks.max_in_flight",
            ),
        ] {
            let error = section(text).node_config(&no_dns).unwrap_err().render(None);
            assert!(error.contains(key), "{text}: {error}");
        }
        assert!(toml::from_str::<CallbacksSection>("on_failure = \"maybe\"").is_err());
        assert!(toml::from_str::<CallbacksSection>("on_pubish = \"x\"").is_err());
    }
}
