//! [`HttpConfig`]: where the node's HTTP listener (metrics and API) listens and how much it
//! serves at once.

use std::net::SocketAddr;
use std::time::Duration;

/// Settings of the node's HTTP listener (`ServerConfig::http`; off when `None`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpConfig {
    /// Where to listen (port 0: any free one; the node tells the bound address with
    /// `Event::HttpListening`).
    pub listen: SocketAddr,
    /// When set, every request must carry `Authorization: Bearer TOKEN`.
    pub token: Option<String>,
    /// HTTP connections at once; one beyond is answered 503 and closed.
    pub max_connections: usize,
    /// Time a connection has to send each whole request (from its accept, or from the
    /// previous response on a kept-alive connection); past it the connection is closed.
    pub request_timeout: Duration,
}

impl Default for HttpConfig {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 8080)),
            token: None,
            max_connections: 16,
            request_timeout: Duration::from_secs(10),
        }
    }
}
