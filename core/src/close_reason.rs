//! [`CloseReason`]: why the node closed a connection, as a value an application can match
//! on (to count closes by kind, to tell a slow player from a hostile one) and print (its
//! `Display` is the line the logs show).

use std::fmt;
use std::net::IpAddr;
use std::time::Duration;

use crate::rtmp::aggregate::AggregateError;
use crate::rtmp::chunk_decoder::ChunkError;
use crate::rtmp::command::CommandError;
use crate::rtmp::control::ControlError;
use crate::rtmp::handshake::HandshakeError;

/// Why the node closed a connection; carried by
/// [`Event::Closing`](crate::node::Event::Closing).
///
/// ```
/// use siprtmp_core::node::CloseReason;
/// let reason = CloseReason::PlayerBacklog { limit: 4 << 20 };
/// assert_eq!(reason.kind(), "player_backlog");
/// assert_eq!(reason.to_string(), "player backlog above 4194304 bytes");
/// ```
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum CloseReason {
    /// The server already holds its maximum of connections
    /// ([`ServerConfig::max_connections`](crate::node::ServerConfig::max_connections)).
    ServerFull {
        /// The maximum.
        max: usize,
    },
    /// The client's address already holds its maximum of connections
    /// ([`ServerConfig::max_connections_per_ip`](crate::node::ServerConfig::max_connections_per_ip)).
    AddressFull {
        /// The client's address.
        ip: IpAddr,
        /// The maximum per address.
        max: usize,
    },
    /// Unfinished messages of all connections together would take more than the server's
    /// budget for them
    /// ([`ServerConfig::max_total_partial_bytes`](crate::node::ServerConfig::max_total_partial_bytes)).
    UnfinishedMessagesBudget {
        /// The budget, in bytes.
        budget: usize,
    },
    /// The client sent more than the server holds for it while a decision about it was pending.
    InputWhileDeciding,
    /// The RTMP handshake was malformed.
    Handshake(HandshakeError),
    /// The handshake did not finish in time (with RTMPS, the TLS and the RTMP handshake
    /// together).
    HandshakeTimeout,
    /// RTMPS: the TLS layer failed: a client that does not speak TLS (plain RTMP on the TLS
    /// port), a failed TLS handshake, a record that does not decrypt, or a server without a
    /// TLS configuration.
    Tls {
        /// What rustls said.
        error: String,
    },
    /// The client sent nothing, not even an answer to a ping, for this long.
    Silent {
        /// How long it was silent.
        idle: Duration,
    },
    /// The chunk stream broke a rule or a limit (a bad chunk size, a message too large...).
    ChunkStream(ChunkError),
    /// A command message did not decode.
    Command(CommandError),
    /// A data message (`@setDataFrame`, `onMetaData`) did not decode.
    DataMessage(CommandError),
    /// An aggregate message did not split into whole messages.
    Aggregate(AggregateError),
    /// A protocol control message did not decode.
    ProtocolControl(ControlError),
    /// A user control message did not decode.
    UserControl(ControlError),
    /// A command other than `connect` came before `connect`.
    CommandBeforeConnect {
        /// The command's name.
        command: String,
    },
    /// A player fell behind by more than its hard backlog
    /// ([`ServerConfig::player_hard_backlog`](crate::node::ServerConfig::player_hard_backlog)).
    PlayerBacklog {
        /// The backlog limit, in bytes.
        limit: usize,
    },
    /// A connection other than a live player fell behind by more than the hard backlog
    /// ([`ServerConfig::player_hard_backlog`](crate::node::ServerConfig::player_hard_backlog)):
    /// a gateway client that does not read its far end's media, or any client that sends
    /// requests and does not read the replies.
    ClientBacklog {
        /// The backlog limit, in bytes.
        limit: usize,
    },
    /// The application did not answer a question about the connection
    /// ([`Event::Decide`](crate::node::Event::Decide)) within
    /// [`ServerConfig::decision_timeout`](crate::node::ServerConfig::decision_timeout); the
    /// client was told as for a refusal.
    DecisionTimeout {
        /// How long the question waited.
        after: Duration,
    },
    /// The application redirected the `connect` (the client was told where to go).
    ConnectRedirected {
        /// Where to.
        url: String,
    },
    /// The application refused the `connect`.
    ConnectRejected {
        /// The application's reason, as the client was told it.
        reason: String,
    },
    /// A newer gateway connection for the same address of record replaced this one.
    ReplacedByNewer {
        /// The address of record (`user@domain`).
        aor: String,
    },
    /// An operator dropped the connection through the node's HTTP API.
    DroppedByOperator,
    /// The node is shutting down ([`Input::Shutdown`](crate::node::Input::Shutdown)): open
    /// connections are closed, and connections that arrive while it drains are refused.
    Shutdown,
}

impl CloseReason {
    /// A short, stable label for the kind of reason (`snake_case`, no values), for counting
    /// closes by kind in metrics.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::ServerFull { .. } => "server_full",
            Self::AddressFull { .. } => "address_full",
            Self::UnfinishedMessagesBudget { .. } => "unfinished_messages_budget",
            Self::InputWhileDeciding => "input_while_deciding",
            Self::Handshake(_) => "handshake",
            Self::HandshakeTimeout => "handshake_timeout",
            Self::Tls { .. } => "tls",
            Self::Silent { .. } => "silent",
            Self::ChunkStream(_) => "chunk_stream",
            Self::Command(_) => "command",
            Self::DataMessage(_) => "data_message",
            Self::Aggregate(_) => "aggregate",
            Self::ProtocolControl(_) => "protocol_control",
            Self::UserControl(_) => "user_control",
            Self::CommandBeforeConnect { .. } => "command_before_connect",
            Self::PlayerBacklog { .. } => "player_backlog",
            Self::ClientBacklog { .. } => "client_backlog",
            Self::DecisionTimeout { .. } => "decision_timeout",
            Self::ConnectRedirected { .. } => "connect_redirected",
            Self::ConnectRejected { .. } => "connect_rejected",
            Self::ReplacedByNewer { .. } => "replaced_by_newer",
            Self::DroppedByOperator => "dropped_by_operator",
            Self::Shutdown => "shutdown",
        }
    }

    /// Whether the peer broke the protocol (as opposed to a limit, a timeout or a decision):
    /// what a log or a metric of hostile or broken clients counts.
    pub fn is_protocol_error(&self) -> bool {
        matches!(
            self,
            Self::Handshake(_)
                | Self::Tls { .. }
                | Self::ChunkStream(_)
                | Self::Command(_)
                | Self::DataMessage(_)
                | Self::Aggregate(_)
                | Self::ProtocolControl(_)
                | Self::UserControl(_)
                | Self::CommandBeforeConnect { .. }
        )
    }
}

impl fmt::Display for CloseReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::ServerFull { max } => write!(f, "the server has its {max} connections"),
            Self::AddressFull { ip, max } => write!(f, "{ip} has its {max} connections"),
            Self::UnfinishedMessagesBudget { budget } => write!(
                f,
                "the server's {budget} bytes for unfinished messages are in use"
            ),
            Self::InputWhileDeciding => f.write_str("too much input while a decision is pending"),
            Self::Handshake(e) => write!(f, "handshake failed: {e}"),
            Self::HandshakeTimeout => f.write_str("handshake timed out"),
            Self::Tls { error } => write!(f, "TLS failed: {error}"),
            Self::Silent { idle } => write!(f, "peer silent for {} s", idle.as_secs()),
            Self::ChunkStream(e) => write!(f, "chunk stream error: {e}"),
            Self::Command(e) => write!(f, "bad command: {e}"),
            Self::DataMessage(e) => write!(f, "malformed data message: {e}"),
            Self::Aggregate(e) => write!(f, "bad aggregate message: {e}"),
            Self::ProtocolControl(e) => write!(f, "bad protocol control message: {e}"),
            Self::UserControl(e) => write!(f, "bad user control message: {e}"),
            Self::CommandBeforeConnect { command } => write!(f, "'{command}' before connect"),
            Self::PlayerBacklog { limit } => write!(f, "player backlog above {limit} bytes"),
            Self::ClientBacklog { limit } => write!(f, "client backlog above {limit} bytes"),
            Self::DecisionTimeout { after } => {
                write!(f, "no decision within {} s", after.as_secs_f64())
            }
            Self::ConnectRedirected { url } => write!(f, "connect redirected to {url}"),
            Self::ConnectRejected { reason } => write!(f, "connect rejected: {reason}"),
            Self::ReplacedByNewer { aor } => write!(f, "replaced by a newer connection for {aor}"),
            Self::DroppedByOperator => f.write_str("dropped by an operator"),
            Self::Shutdown => f.write_str("the server is shutting down"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn protocol_errors_are_told_apart_from_limits_and_decisions() {
        let hostile = CloseReason::Handshake(HandshakeError::UnsupportedVersion(9));
        assert!(hostile.is_protocol_error());
        assert_eq!(hostile.kind(), "handshake");
        assert!(!CloseReason::PlayerBacklog { limit: 1 }.is_protocol_error());
        assert!(!CloseReason::HandshakeTimeout.is_protocol_error());
        let refused = CloseReason::ConnectRejected {
            reason: "no token".into(),
        };
        assert!(!refused.is_protocol_error());
        assert_eq!(refused.to_string(), "connect rejected: no token");
        let unread = CloseReason::ClientBacklog { limit: 1 << 20 };
        assert!(!unread.is_protocol_error());
        assert_eq!(unread.kind(), "client_backlog");
        assert_eq!(unread.to_string(), "client backlog above 1048576 bytes");
        let unanswered = CloseReason::DecisionTimeout {
            after: Duration::from_millis(2500),
        };
        assert!(!unanswered.is_protocol_error());
        assert_eq!(unanswered.kind(), "decision_timeout");
        assert_eq!(unanswered.to_string(), "no decision within 2.5 s");
    }
}
