//! [`SipTlsClient`]: the receive path of the gateway's SIP over TLS on its own: the client
//! TLS layer the gateway puts on each connection, then the SIP stream framing over the
//! plaintext it yields, with the gateway's bound on a server's handshake. For the fuzz
//! target and tests that feed a connection bytes without a node around it.

use bytes::{Bytes, BytesMut};

use crate::gateway::host::sip_tcp::MAX_HANDSHAKE_BYTES;
use crate::sip::{ParseLimits, SipMessage, StreamFramer};
use crate::tls::layer::TlsLayer;
use crate::tls::rustls::pki_types::ServerName;
use crate::tls::ClientTlsConfig;

/// One SIP over TLS connection's client side, as the gateway runs it.
#[derive(Debug)]
pub struct SipTlsClient {
    layer: TlsLayer,
    plain: BytesMut,
    framer: StreamFramer,
}

impl SipTlsClient {
    /// A connection to the server `name`, verified with `config`.
    pub fn new(config: &ClientTlsConfig, name: ServerName<'static>) -> Result<Self, String> {
        Ok(Self {
            layer: TlsLayer::client(config, name)?,
            plain: BytesMut::new(),
            framer: StreamFramer::new(ParseLimits::default()),
        })
    }

    /// What the client has to send (its ClientHello first, then handshake answers, alerts).
    pub fn take_records(&mut self) -> Option<Bytes> {
        self.layer.take_records(0)
    }

    /// The server's bytes: the SIP messages complete in the plaintext so far, or why the
    /// connection is to be closed (a TLS error, a handshake over the bound, bad framing).
    pub fn receive(&mut self, data: &[u8]) -> Result<Vec<SipMessage>, String> {
        self.layer.receive(data, &mut self.plain)?;
        if self.layer.is_handshaking() && self.layer.held() > MAX_HANDSHAKE_BYTES {
            return Err("handshake too long".into());
        }
        let mut messages = Vec::new();
        while let Some(message) = self
            .framer
            .push(&mut self.plain)
            .map_err(|e| e.to_string())?
        {
            messages.push(message);
        }
        Ok(messages)
    }

    /// Whether the TLS handshake is under way.
    pub fn is_handshaking(&self) -> bool {
        self.layer.is_handshaking()
    }

    /// Bytes of the server's input the TLS library holds, not yet plaintext.
    pub fn held(&self) -> usize {
        self.layer.held()
    }

    /// Plaintext waiting for the rest of a SIP message.
    pub fn pending(&self) -> usize {
        self.plain.len()
    }
}
