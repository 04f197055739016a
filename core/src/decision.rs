//! Two-phase application decisions: the questions the node asks an embedding application
//! (may this client connect? publish this name? play it?) and the answers it takes back.
//!
//! With [`crate::node::NodeConfig::decisions`] on, the node emits
//! [`crate::node::Event::Decide`] with a [`RequestId`] and the [`Question`], stops reading that
//! connection's messages, and carries on only when [`crate::node::Node::decide`] is called
//! with the request id and a [`Decision`]. No user code runs inside the state machine.

use std::net::SocketAddr;

use crate::amf::Value;
use crate::ids::ConnId;
pub use crate::ids::RequestId;

/// How a publisher asked to publish.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PublishMode {
    /// `live` (or no type): not recorded unless the application records everything.
    Live,
    /// `record`: recorded to a new file (an existing one is replaced).
    Record,
    /// `append`: recorded after the end of an existing file.
    Append,
}

/// What the node asks.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum Question {
    /// A client's `connect`.
    Connect {
        /// The connection.
        conn: ConnId,
        /// The client's address.
        peer: SocketAddr,
        /// The application it asks for.
        app: String,
        /// The `tcUrl` it gave, if any.
        tc_url: Option<String>,
        /// The whole `connect` command object (and any extra arguments after it).
        args: Vec<Value>,
    },
    /// A `publish` on a connected client.
    Publish {
        /// The connection.
        conn: ConnId,
        /// The client's address.
        peer: SocketAddr,
        /// The application.
        app: String,
        /// The stream name without its query string.
        name: String,
        /// The query string after `?` in the name (`token=...`), empty when none.
        query: String,
        /// Live, record or append.
        mode: PublishMode,
    },
    /// A `play` on a connected client, or an HTTP-FLV request (`GET /APP/NAME.flv?QUERY` on
    /// the HTTP listener), which is decided the same way.
    Play {
        /// The connection (for HTTP-FLV, an id of its own made from the HTTP stream's, with
        /// the top bit set: it never names an RTMP connection).
        conn: ConnId,
        /// The client's address.
        peer: SocketAddr,
        /// The application.
        app: String,
        /// The stream name without its query string.
        name: String,
        /// The query string after `?` in the name, empty when none.
        query: String,
    },
}

impl Question {
    /// The connection the question is about.
    pub fn conn(&self) -> ConnId {
        match self {
            Question::Connect { conn, .. }
            | Question::Publish { conn, .. }
            | Question::Play { conn, .. } => *conn,
        }
    }
}

/// The application's answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// Go ahead.
    Accept,
    /// Refuse, with a reason the client sees in the status description.
    Reject(String),
    /// Send the client elsewhere (`connect` only): `NetConnection.Connect.Rejected` carrying
    /// `ex: {code: 302, redirect: url}`, as Flash Media Server and Wowza do.
    Redirect(String),
    /// Go ahead under another stream name (`publish` or `play` only): the name, query
    /// included, is replaced, as nginx-rtmp does on an `on_publish`/`on_play` redirect.
    Rename(String),
}

/// Why [`crate::node::Node::decide`] refused an answer.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum DecideError {
    /// No such request is pending: never asked, already answered, or its connection closed.
    UnknownRequest(RequestId),
    /// A redirect answered a publish or play question, or a rename a connect; the request
    /// stays pending.
    RedirectNotAllowed(RequestId),
}

impl std::fmt::Display for DecideError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            DecideError::UnknownRequest(r) => write!(f, "no pending decision {r}"),
            DecideError::RedirectNotAllowed(r) => {
                write!(
                    f,
                    "decision {r}: only a connect can be redirected, only a publish or play renamed"
                )
            }
        }
    }
}

impl std::error::Error for DecideError {}
