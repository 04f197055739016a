//! What relays are configured with: each upstream ([`RelayUrl`]: an `rtmp://` URL and the
//! address its host resolved to) and the bounds every relay session keeps ([`RelayLimits`]).
//! Which streams are pushed or pulled is per application ([`super::super::AppConfig`]).

use std::net::SocketAddr;
use std::time::Duration;

use crate::rtmp::url::RtmpUrl;

/// One upstream of a relay: where its URL points, and the address its host resolved to (the
/// node never resolves names: the embedding application does, or gives an address).
///
/// ```
/// use siprtmp_core::node::RelayUrl;
/// let url = RelayUrl::parse("rtmp://127.0.0.1:1936/live?token=t").unwrap();
/// assert_eq!(url.addr.port(), 1936);
/// assert_eq!(url.url.redacted(), "rtmp://127.0.0.1:1936/live");
/// // A host name needs resolving first (RelayUrl::new with the address).
/// assert!(RelayUrl::parse("rtmp://origin.example/live").is_err());
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct RelayUrl {
    /// The URL as configured (its host as written).
    pub url: RtmpUrl,
    /// Where to connect.
    pub addr: SocketAddr,
}

impl RelayUrl {
    /// `url`, whose host the caller resolved to `addr`.
    pub fn new(url: RtmpUrl, addr: SocketAddr) -> Self {
        Self { url, addr }
    }

    /// Parses a URL whose host is an IP address (a host name must be resolved by the caller,
    /// then given to [`Self::new`]).
    pub fn parse(text: &str) -> Result<Self, String> {
        let url = RtmpUrl::parse(text)?;
        let ip = url
            .host
            .parse()
            .map_err(|_| format!("{}: not an IP address (resolve it first)", url.host))?;
        let addr = SocketAddr::new(ip, url.port);
        Ok(Self { url, addr })
    }
}

/// Bounds and timers of the relay sessions ([`crate::node::ServerConfig::relay`]).
///
/// ```
/// use siprtmp_core::node::RelayLimits;
/// let limits = RelayLimits::default();
/// assert!(limits.backoff_min <= limits.backoff_max);
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RelayLimits {
    /// Relay sessions (pushes and pulls) at once on the node; one beyond is not started (and
    /// said so in an event).
    pub max_sessions: usize,
    /// Relay sessions at once for one application.
    pub max_sessions_per_app: usize,
    /// The wait before the first retry of a failed upstream; each further failure doubles it.
    pub backoff_min: Duration,
    /// The longest wait between retries. A session that stayed up this long before it failed
    /// starts again from `backoff_min`.
    pub backoff_max: Duration,
    /// Time from the connect to the upstream's answer to `publish` or `play`; past it the
    /// attempt fails (and is retried).
    pub setup_timeout: Duration,
    /// A pull's upstream session is closed this long after its last player left (a player
    /// that comes back sooner finds it still open, with its GOP cache).
    pub pull_idle_timeout: Duration,
}

impl Default for RelayLimits {
    fn default() -> Self {
        Self {
            max_sessions: 256,
            max_sessions_per_app: 128,
            backoff_min: Duration::from_secs(1),
            backoff_max: Duration::from_secs(30),
            setup_timeout: Duration::from_secs(10),
            pull_idle_timeout: Duration::from_secs(10),
        }
    }
}
