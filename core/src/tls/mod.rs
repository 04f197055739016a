//! RTMPS: TLS on a connection, as a byte transform inside the node.
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
//! - [`layer`]: one connection's TLS (`TlsLayer`): records in, plaintext out; plaintext
//!   segments in, records out; the bytes it makes the node hold;
//! - [`records`]: the record framing of what a peer sent, to know how much of an unfinished
//!   record the TLS library holds (what a peer makes the server keep in memory).

pub(crate) mod layer;
pub(crate) mod records;

use std::sync::Arc;

/// The TLS settings of RTMPS connections: a rustls server configuration, built by the
/// embedder (certificate chain and key or a resolver that reloads them, crypto provider,
/// protocol versions). Shared by every connection and every worker; a resolver behind it may
/// swap the certificate while connections run (new handshakes see the new one).
pub type TlsConfig = Arc<rustls::ServerConfig>;

/// The rustls the node is built with, so that an embedder builds its [`TlsConfig`] with the
/// same version.
pub use rustls;
