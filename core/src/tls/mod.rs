//! TLS on a connection, as a byte transform inside the node: RTMPS (the server side of
//! accepted connections) and SIP over TLS (the client side of the gateway's connections to
//! its registrar, proxy and call targets).
//!
//! A connection accepted with [`crate::node::Node::accept_tls`] carries TLS records. The node
//! decrypts what arrives before the RTMP handshake sees it, and encrypts what the connection
//! has queued just before the driver writes it, so a driver moves the same opaque bytes for
//! RTMP and RTMPS and every driver (and the simulation) gets TLS without a line of its own.
//! Why the transform lives here rather than in the drivers is written down in the
//! architecture notes (ARCHITECTURE.md, "RTMPS").
//!
//! The TLS itself is [`rustls`]'s `ServerConnection`, which consumes and produces bytes and
//! does no I/O. The node reads no clock and no entropy of its own for it: the crypto provider
//! (randomness, ciphers), the certificate resolver and the time provider all come with the
//! [`TlsConfig`] the embedder builds. (rustls asks the time provider only to check session
//! tickets and client certificates; a configuration without tickets, a session cache or
//! client authentication, like the binary's, never makes it.)
//!
//! For the client side the embedder builds a [`ClientTlsConfig`] too: the trust anchors (the
//! system's roots or a configured CA, read from files outside the node), the crypto provider
//! and the clock certificate validity is checked against. The node never reads a file.
//!
//! - `layer`: one connection's TLS (`TlsLayer`): records in, plaintext out; plaintext
//!   segments in, records out; the bytes it makes the node hold;
//! - `records`: the record framing of what a peer sent, to know how much of an unfinished
//!   record the TLS library holds (what a peer makes the server keep in memory).

pub(crate) mod layer;
pub(crate) mod records;

use std::sync::Arc;

/// The TLS settings of RTMPS connections: a rustls server configuration, built by the
/// embedder (certificate chain and key or a resolver that reloads them, crypto provider,
/// protocol versions). Shared by every connection and every worker; a resolver behind it may
/// swap the certificate while connections run (new handshakes see the new one).
pub type TlsConfig = Arc<rustls::ServerConfig>;

/// The TLS settings of connections the node opens as a TLS client (SIP over TLS): a rustls
/// client configuration, built by the embedder with the roots server certificates are
/// verified against. Shared by every connection.
pub type ClientTlsConfig = Arc<rustls::ClientConfig>;

/// The rustls the node is built with, so that an embedder builds its [`TlsConfig`] with the
/// same version.
pub use rustls;
