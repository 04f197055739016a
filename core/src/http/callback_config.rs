//! [`CallbacksConfig`]: which nginx-rtmp-style HTTP callbacks the node makes, to where, and
//! how long it waits for them (the callbacks themselves are `crate::admin::callbacks`).
//!
//! A callback's URL is `http://` with an IP address: the node opens the connection itself and
//! never resolves names (the binary resolves a host name once at start and hands the address
//! in, [`CallbackUrl::new`]).

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

/// Where one callback goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CallbackUrl {
    /// The backend's address.
    pub addr: SocketAddr,
    /// The `Host` header (the URL's host and port as written).
    pub host: String,
    /// The request target: path and query as written (`/` when the URL has none).
    pub target: String,
}

impl CallbackUrl {
    /// A URL whose host the caller has already resolved to `addr`.
    pub fn new(addr: SocketAddr, host: impl Into<String>, target: impl Into<String>) -> Self {
        Self {
            addr,
            host: host.into(),
            target: target.into(),
        }
    }

    /// Splits `http://HOST[:PORT][/PATH]` into the host (brackets of an IPv6 literal
    /// removed), the port (80 by default), the `Host` header and the target.
    ///
    /// ```
    /// use siprtmp_core::http::CallbackUrl;
    /// let parts = CallbackUrl::split("http://auth.local:8081/on_publish?x=1").unwrap();
    /// assert_eq!(parts, ("auth.local".into(), 8081, "auth.local:8081".into(), "/on_publish?x=1".into()));
    /// assert!(CallbackUrl::split("https://a/").is_err());
    /// ```
    pub fn split(url: &str) -> Result<(String, u16, String, String), String> {
        let rest = url
            .strip_prefix("http://")
            .ok_or_else(|| format!("{url}: only http:// URLs are supported"))?;
        let (authority, target) = match rest.find(['/', '?']) {
            Some(i) if rest.as_bytes()[i] == b'/' => (&rest[..i], rest[i..].to_string()),
            Some(i) => (&rest[..i], format!("/{}", &rest[i..])),
            None => (rest, "/".to_string()),
        };
        if authority.is_empty() || authority.contains('@') {
            return Err(format!("{url}: a host (and no user) is required"));
        }
        if target.bytes().any(|b| b <= b' ' || b == 0x7f) {
            return Err(format!("{url}: spaces or control characters in the path"));
        }
        let (host, port) = if let Some(v6) = authority.strip_prefix('[') {
            let (host, after) = v6
                .split_once(']')
                .ok_or_else(|| format!("{url}: unclosed ["))?;
            let port = match after.strip_prefix(':') {
                Some(p) => Some(p),
                None if after.is_empty() => None,
                None => return Err(format!("{url}: junk after the address")),
            };
            (host, port)
        } else {
            match authority.rsplit_once(':') {
                Some((h, p)) => (h, Some(p)),
                None => (authority, None),
            }
        };
        let port = match port {
            Some(p) => p.parse::<u16>().map_err(|e| format!("{url}: port: {e}"))?,
            None => 80,
        };
        if host.is_empty() || host.bytes().any(|b| b <= b' ' || b == 0x7f) {
            return Err(format!("{url}: bad host"));
        }
        Ok((host.to_string(), port, authority.to_string(), target))
    }

    /// Parses a URL whose host is an IP address (no name resolution).
    ///
    /// ```
    /// use siprtmp_core::http::CallbackUrl;
    /// let url = CallbackUrl::parse("http://127.0.0.1:8081/publish").unwrap();
    /// assert_eq!(url.addr, "127.0.0.1:8081".parse().unwrap());
    /// assert_eq!(url.target, "/publish");
    /// assert!(CallbackUrl::parse("http://auth.local/publish").is_err());
    /// ```
    pub fn parse(url: &str) -> Result<Self, String> {
        let (host, port, authority, target) = Self::split(url)?;
        let ip: IpAddr = host
            .parse()
            .map_err(|_| format!("{url}: the host must be an IP address here"))?;
        Ok(Self::new(SocketAddr::new(ip, port), authority, target))
    }
}

/// What a decision becomes when its callback cannot answer: the backend is unreachable,
/// slower than [`CallbacksConfig::timeout`], answers garbage, or the cap on callbacks in
/// flight is reached.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum FailurePolicy {
    /// Let the client in (availability over control).
    Allow,
    /// Refuse the client (the default: an auth backend that is down lets nobody in).
    #[default]
    Refuse,
}

/// The node's HTTP callbacks (`ServerConfig::callbacks`; none when `None`). Each field names
/// the URL of one callback; unset callbacks are not made.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CallbacksConfig {
    /// `connect` (decides).
    pub on_connect: Option<CallbackUrl>,
    /// `publish` (decides; a 3xx with `Location` renames the stream).
    pub on_publish: Option<CallbackUrl>,
    /// `play` (decides; a 3xx with `Location` plays another stream).
    pub on_play: Option<CallbackUrl>,
    /// A publish or a play ended (`call=done`).
    pub on_done: Option<CallbackUrl>,
    /// A publish ended.
    pub on_publish_done: Option<CallbackUrl>,
    /// A play ended.
    pub on_play_done: Option<CallbackUrl>,
    /// A recording's file is closed.
    pub on_record_done: Option<CallbackUrl>,
    /// Every [`Self::update_interval`] for each publish and play (a non-2xx answer ends the
    /// connection, as nginx-rtmp does).
    pub on_update: Option<CallbackUrl>,
    /// A gateway client's SIP identity is bound (`call=register`).
    pub on_register: Option<CallbackUrl>,
    /// A gateway client's call is established (`call=call`).
    pub on_call: Option<CallbackUrl>,
    /// A gateway client's call ended or failed (`call=call_done`).
    pub on_call_done: Option<CallbackUrl>,
    /// Time a callback has to answer completely (from the connect); past it the request is
    /// abandoned and [`Self::on_failure`] decides.
    pub timeout: Duration,
    /// What a deciding callback that cannot answer means.
    pub on_failure: FailurePolicy,
    /// Period of `on_update`.
    pub update_interval: Duration,
    /// Callbacks in flight at once. A decision beyond it is answered by
    /// [`Self::on_failure`] at once; a notification beyond it is dropped.
    pub max_in_flight: usize,
}

impl Default for CallbacksConfig {
    fn default() -> Self {
        Self {
            on_connect: None,
            on_publish: None,
            on_play: None,
            on_done: None,
            on_publish_done: None,
            on_play_done: None,
            on_record_done: None,
            on_update: None,
            on_register: None,
            on_call: None,
            on_call_done: None,
            timeout: Duration::from_secs(3),
            on_failure: FailurePolicy::Refuse,
            update_interval: Duration::from_secs(30),
            max_in_flight: 64,
        }
    }
}
