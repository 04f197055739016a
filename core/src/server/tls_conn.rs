//! RTMPS in the server: a connection accepted on the TLS listener gets a
//! [`TlsLayer`](crate::tls::layer::TlsLayer); its input is decrypted before the RTMP handshake
//! sees it, and what it has queued is sealed into records when the driver is about to write
//! (a `Transmit` handed out, a queue drained, a close).
//!
//! What the TLS layer holds of a peer's input (during the handshake everything received, then
//! an unfinished record) counts against the same limits as unfinished RTMP messages: with the
//! connection's own against [`ChunkLimits::max_partial_bytes`](crate::rtmp::chunk_decoder::ChunkLimits::max_partial_bytes),
//! and in the server's total against
//! [`ServerConfig::max_total_partial_bytes`](crate::node::ServerConfig::max_total_partial_bytes).
//! The handshake's time counts against the RTMP handshake's deadline: the RTMP handshake
//! cannot begin before the TLS one ends, and the deadline runs from the accept.

use bytes::BytesMut;

use super::session::Session;
use super::RtmpServer;
use crate::close_reason::CloseReason;
use crate::ids::ConnId;
use crate::rtmp::chunk_decoder::ChunkError;
use crate::tls::layer::TlsLayer;

impl RtmpServer {
    /// Gives a new session its TLS layer; the error, if the server has no TLS configuration
    /// or rustls refuses it (the connection is then closed at once).
    pub(super) fn attach_tls(&mut self, session: &mut Session) -> Option<String> {
        let Some(config) = &self.config.tls else {
            return Some("this server has no TLS configuration".into());
        };
        match TlsLayer::new(config) {
            Ok(layer) => {
                session.tls = Some(Box::new(layer));
                self.tls_sessions += 1;
                None
            }
            Err(error) => Some(error),
        }
    }

    /// Decrypts `data`, the records `conn` sent; returns the plaintext for the RTMP side
    /// (`None` when the connection was closed, for a TLS error or a limit). Records the TLS
    /// layer has to send (the handshake's, an alert) are queued for the driver.
    pub(super) fn tls_received(&mut self, conn: ConnId, data: BytesMut) -> Option<BytesMut> {
        let session = self.sessions.get_mut(conn)?;
        let tls = session.tls.as_mut()?;
        let mut plain = BytesMut::new();
        let result = tls.receive(&data, &mut plain);
        if session.take_tls_records() {
            self.transmits.push_back(conn);
        }
        if let Err(error) = result {
            self.close(conn, CloseReason::Tls { error });
            return None;
        }
        self.count_tls_held(conn);
        // Nothing for the RTMP side yet (a handshake under way, half a record), or the
        // connection closed for a limit.
        let open = self
            .sessions
            .get(conn)
            .is_some_and(|s| !matches!(s.phase, super::session::Phase::Closing));
        (open && !plain.is_empty()).then_some(plain)
    }

    /// Counts what `conn`'s TLS layer holds in the server's budget for unfinished messages
    /// and in the connection's own; closes it when either would be exceeded.
    fn count_tls_held(&mut self, conn: ConnId) {
        let Some(session) = self.sessions.get_mut(conn) else {
            return;
        };
        let held = session.tls.as_ref().map_or(0, |tls| tls.held());
        let before = std::mem::replace(&mut session.tls_held, held);
        if held == before {
            return;
        }
        self.partial_total = self.partial_total - before + held;
        if held <= before {
            return;
        }
        let own = self.config.chunk_limits.max_partial_bytes;
        if session.decoder.partial_bytes() + held > own {
            self.close(
                conn,
                CloseReason::ChunkStream(ChunkError::PartialBytesExceeded(own)),
            );
        } else if self.partial_total > self.config.max_total_partial_bytes {
            let budget = self.config.max_total_partial_bytes;
            self.close(conn, CloseReason::UnfinishedMessagesBudget { budget });
        }
    }

    /// A `Transmit` for `conn` is being handed out: an RTMPS connection's plaintext is sealed
    /// now, so the driver finds records to write.
    pub(super) fn seal_for_driver(&mut self, conn: ConnId) {
        if let Some(session) = self.sessions.get_mut(conn) {
            session.seal();
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::time::Instant;

    use bytes::BytesMut;

    use crate::node::ServerConfig;
    use crate::server::RtmpServer;

    /// A self-signed certificate's configuration, with ring (the crate's tests' provider).
    #[allow(deprecated)]
    fn tls_config() -> crate::tls::TlsConfig {
        let key = rcgen::KeyPair::generate().unwrap();
        let cert = rcgen::CertificateParams::new(vec!["localhost".to_owned()])
            .unwrap()
            .self_signed(&key)
            .unwrap();
        let der = rustls::pki_types::PrivatePkcs8KeyDer::from(key.serialize_der());
        let config = rustls::ServerConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(vec![cert.der().clone()], der.into())
        .unwrap();
        Arc::new(config)
    }

    /// The API's connection list tells RTMPS connections from RTMP ones, and an RTMPS
    /// connection's handshake bytes are counted while it lasts and given back at its close.
    #[test]
    fn rtmps_connections_are_listed_as_such_and_their_held_bytes_come_back() {
        let now = Instant::now();
        let config = ServerConfig {
            tls: Some(tls_config()),
            ..ServerConfig::default()
        };
        let mut server = RtmpServer::new(config, now, 1);
        let peer = "127.0.0.1:5000".parse().unwrap();
        let plain = server.accept(now, peer);
        let tls = server.accept_with(now, peer, true);
        let views = server.conn_views();
        let flag = |id| views.iter().find(|v| v.id == id).map(|v| v.tls);
        assert_eq!((flag(plain), flag(tls)), (Some(false), Some(true)));

        // Half a ClientHello: held by the TLS layer, counted in the server's budget.
        server.received(now, tls, BytesMut::from(&[22u8, 3, 1, 2, 0, 1, 0][..]));
        assert_eq!(server.partial_total, 7);
        server.closed(now, tls);
        assert_eq!(server.partial_total, 0, "given back at the close");
        assert_eq!(server.tls_sessions, 0);
    }
}
