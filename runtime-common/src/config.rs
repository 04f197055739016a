//! [`DriverConfig`]: the settings every driver takes besides the node's own
//! ([`siprtmp_core::node::NodeConfig`]): sockets, seed, event channel, file root. The
//! application's decider is not a setting (it is not `Clone`): each driver takes it with
//! `with_decider`.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::mpsc::Sender;
use std::time::Duration;

use siprtmp_core::node::Event;

/// Settings of a driver.
///
/// ```
/// use siprtmp_runtime_common::DriverConfig;
/// let config = DriverConfig { listen: "127.0.0.1:0".parse().unwrap(), ..DriverConfig::default() };
/// assert_eq!(config.send_buffer, None);
/// ```
#[derive(Debug, Clone)]
pub struct DriverConfig {
    /// Address to listen on for RTMP.
    pub listen: SocketAddr,
    /// Address to listen on for RTMPS, if at all: connections accepted there go to the node
    /// with `Node::accept_tls` and are decrypted with the node's `ServerConfig::tls`.
    pub tls_listen: Option<SocketAddr>,
    /// `SO_SNDBUF` for accepted sockets; `None` leaves the kernel's autotuning on. A small value
    /// makes backpressure visible to the node sooner (the kernel holds less).
    pub send_buffer: Option<usize>,
    /// `TCP_NODELAY` on accepted sockets. Off by default, as nginx-rtmp: Nagle's algorithm
    /// lets the kernel coalesce a bulk reader's small writes (see
    /// [`crate::configure_stream`]); on, each write leaves at once, which saves a small
    /// message the wait for the previous one's acknowledgement (latency) and, with merged
    /// writes, costs nothing in segments.
    pub tcp_nodelay: bool,
    /// Seed for the node's random generator.
    pub seed: u64,
    /// Where application events go besides the log (for embedding applications and tests).
    pub events: Option<Sender<Event>>,
    /// Directory that recorded and played files live under (the node's file paths are
    /// relative to it).
    pub root: PathBuf,
    /// Wake-up moderation (the mio driver; others refuse it): the event loop takes the
    /// kernel's readiness events at most once per interval and sleeps in between, so that one
    /// wake-up handles what many connections sent meanwhile instead of one wake-up each.
    /// Every hop waits up to the interval more (client to far end, far end to client, timers),
    /// for markedly less CPU per connection when many are busy (see bench-compare's gateway
    /// floor, `-tickN`); an idle server still sleeps until something arrives. `None`: every
    /// event is handled as it comes.
    pub poll_interval: Option<Duration>,
    /// UDP GSO for the gateway's RTP and SIP (Linux; on by default): a run of datagrams of
    /// equal length to one destination, queued in one turn, leaves as one segmented message
    /// that the kernel cuts into the same datagrams at the last moment, so the stack is
    /// walked once for the run (every call's audio frame through a shared RTP port to one
    /// far end). The far end sees no difference; a system without it is detected and the
    /// datagrams go one by one. Off: every datagram walks the stack on its own.
    pub udp_gso: bool,
}

impl DriverConfig {
    /// For a driver without wake-up moderation: an `Unsupported` error naming `driver` when
    /// [`DriverConfig::poll_interval`] asks for it, rather than ignoring the setting.
    ///
    /// ```
    /// use siprtmp_runtime_common::DriverConfig;
    /// let moderated = DriverConfig { poll_interval: Some(std::time::Duration::from_millis(10)), ..DriverConfig::default() };
    /// assert!(moderated.refuse_poll_interval("tokio").is_err());
    /// assert!(DriverConfig::default().refuse_poll_interval("tokio").is_ok());
    /// ```
    pub fn refuse_poll_interval(&self, driver: &str) -> std::io::Result<()> {
        match self.poll_interval {
            None => Ok(()),
            Some(_) => Err(std::io::Error::new(
                std::io::ErrorKind::Unsupported,
                format!("the {driver} driver has no poll interval (only mio and io-uring moderate wake-ups)"),
            )),
        }
    }
}

impl Default for DriverConfig {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([0, 0, 0, 0], 1935)),
            tls_listen: None,
            send_buffer: None,
            tcp_nodelay: false,
            seed: 0x5eed,
            events: None,
            root: PathBuf::from("media"),
            poll_interval: None,
            udp_gso: true,
        }
    }
}
