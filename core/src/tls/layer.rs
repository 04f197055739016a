//! [`TlsLayer`]: one connection's TLS, between the bytes the driver moves and the plaintext
//! a protocol above reads and writes: the server side of an RTMPS connection (the session's
//! RTMP bytes), or the client side of a connection the node opened (SIP over TLS to a
//! registrar or proxy). Both sides are the same transform; only the rustls connection made
//! at the start differs.
//!
//! In: the records the peer sent are handed to rustls, which decrypts them (and answers the
//! handshake); the plaintext is appended to the session's input. Out: the plaintext segments
//! the session queued since the last write are sealed in one go, just before the driver writes
//! them, so that one write's worth (with merged writes, a window's worth of media for a
//! player) becomes as few records as the record size allows (16 KiB of plaintext each), not
//! one record per message. Sealing copies once (the encryption's own output, per connection:
//! unavoidable) and then once more out of rustls's buffer into the one shared `Bytes` the
//! session queues for the driver.

use std::io::{self, IoSlice, Read, Write};

use bytes::{Bytes, BytesMut};

use super::records::RecordScan;
use super::{ClientTlsConfig, TlsConfig};

/// Bytes a sealed record adds to its plaintext at most (header, content type, tag and some
/// slack), to size the buffer of a sealing before it is filled.
const RECORD_OVERHEAD: usize = 64;
/// Plaintext in one record (rustls's default, TLS's maximum).
const RECORD_PLAINTEXT: usize = 16 * 1024;

/// One connection's TLS state.
#[derive(Debug)]
pub(crate) struct TlsLayer {
    /// A server or a client connection: everything below is the same for both.
    conn: rustls::Connection,
    /// The framing of what the peer sent: how much of an unfinished record rustls holds.
    records: RecordScan,
    /// Bytes received while the handshake is under way: rustls may hold all of them (a
    /// handshake message may span records), so all count as held until it ends.
    handshake_received: usize,
}

impl TlsLayer {
    /// A server-side TLS connection with `config`'s certificate and settings.
    pub(crate) fn new(config: &TlsConfig) -> Result<Self, String> {
        let conn = rustls::ServerConnection::new(config.clone()).map_err(|e| e.to_string())?;
        Ok(Self::with(conn.into()))
    }

    /// A client-side TLS connection to the server `name` (what its certificate must be
    /// for), verified as `config` says. Its ClientHello is ready at once
    /// ([`Self::take_records`]); plaintext sealed before the handshake ends waits in rustls
    /// and goes out as records once it has (take them after each [`Self::receive`]).
    pub(crate) fn client(
        config: &ClientTlsConfig,
        name: rustls::pki_types::ServerName<'static>,
    ) -> Result<Self, String> {
        let conn =
            rustls::ClientConnection::new(config.clone(), name).map_err(|e| e.to_string())?;
        Ok(Self::with(conn.into()))
    }

    fn with(mut conn: rustls::Connection) -> Self {
        // Sealed records are taken out at once (`take_records`): the owner's own backlog
        // limits bound what is queued, not rustls's buffer.
        conn.set_buffer_limit(None);
        Self {
            conn,
            records: RecordScan::default(),
            handshake_received: 0,
        }
    }

    /// True until the TLS handshake has completed (what a handshake deadline watches).
    pub(crate) fn is_handshaking(&self) -> bool {
        self.conn.is_handshaking()
    }

    /// Hands the peer's `data` to rustls and appends the plaintext it yields to `plain`. An
    /// error (not TLS, a failed handshake, a bad record) leaves the alert rustls queued for
    /// [`Self::take_records`]; the connection is to be closed.
    pub(crate) fn receive(&mut self, mut data: &[u8], plain: &mut BytesMut) -> Result<(), String> {
        self.records.feed(data);
        if self.conn.is_handshaking() {
            self.handshake_received += data.len();
        }
        while !data.is_empty() {
            match self.conn.read_tls(&mut data) {
                Ok(0) => break,
                Ok(_) => {}
                Err(e) => return Err(e.to_string()),
            }
            let state = self.conn.process_new_packets().map_err(|e| e.to_string())?;
            let ready = state.plaintext_bytes_to_read();
            if ready > 0 {
                let start = plain.len();
                plain.resize(start + ready, 0);
                if let Err(e) = self.conn.reader().read_exact(&mut plain[start..]) {
                    plain.truncate(start);
                    return Err(e.to_string());
                }
            }
        }
        if !self.conn.is_handshaking() {
            self.handshake_received = 0;
        }
        Ok(())
    }

    /// Bytes of the peer's input that rustls holds and that have not become plaintext yet.
    pub(crate) fn held(&self) -> usize {
        if self.conn.is_handshaking() {
            self.handshake_received
        } else {
            self.records.unfinished()
        }
    }

    /// Encrypts `segments` (the session's queued plaintext, in order) and returns every record
    /// pending, these and any before them, as one buffer.
    pub(crate) fn seal<'a>(&mut self, segments: impl Iterator<Item = &'a Bytes>) -> Option<Bytes> {
        let slices: smallvec::SmallVec<[IoSlice<'a>; 32]> =
            segments.map(|s| IoSlice::new(s)).collect();
        let total: usize = slices.iter().map(|s| s.len()).sum();
        let mut writer = self.conn.writer();
        // Every segment in one call, so that records pack across segments (rustls cuts what
        // it is given into records of up to 16 KiB, whatever the slices).
        let taken = writer.write_vectored(&slices).unwrap_or(0);
        if taken < total {
            // Only with a buffer limit, which this layer does not set: the rest one by one.
            let mut skip = taken;
            for slice in &slices {
                let bytes: &[u8] = slice;
                if skip >= bytes.len() {
                    skip -= bytes.len();
                    continue;
                }
                if writer.write_all(&bytes[skip..]).is_err() {
                    break;
                }
                skip = 0;
            }
        }
        self.take_records(total)
    }

    /// The records rustls has ready (handshake messages, alerts, sealed data), as one buffer;
    /// `plaintext` sizes it (the plaintext sealed since the last call).
    pub(crate) fn take_records(&mut self, plaintext: usize) -> Option<Bytes> {
        if !self.conn.wants_write() {
            return None;
        }
        let records = plaintext.div_ceil(RECORD_PLAINTEXT).max(1);
        let mut out = BytesMut::with_capacity(plaintext + records * RECORD_OVERHEAD);
        while self.conn.wants_write() {
            match self.conn.write_tls(&mut Sink(&mut out)) {
                Ok(0) | Err(_) => break,
                Ok(_) => {}
            }
        }
        (!out.is_empty()).then(|| out.freeze())
    }

    /// Queues the `close_notify` alert that ends the TLS session cleanly (take it with
    /// [`Self::take_records`]).
    pub(crate) fn close_notify(&mut self) {
        self.conn.send_close_notify();
    }
}

/// Appends what rustls writes to a buffer (all of every vectored write).
struct Sink<'a>(&'a mut BytesMut);

impl Write for Sink<'_> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.0.extend_from_slice(buf);
        Ok(buf.len())
    }

    fn write_vectored(&mut self, bufs: &[IoSlice<'_>]) -> io::Result<usize> {
        let total = bufs.iter().map(|b| b.len()).sum();
        self.0.reserve(total);
        for buf in bufs {
            self.0.extend_from_slice(buf);
        }
        Ok(total)
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    //! The client side against a rustls server in memory: what the server sends arrives as
    //! the same plaintext however it is cut, the SIP framing finds the messages in it, and
    //! hostile bytes (in the handshake or after it) are an error or nothing, never a panic.

    use super::*;
    use crate::sip::{ParseLimits, StreamFramer};
    use proptest::prelude::*;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer, ServerName};
    use std::sync::{Arc, OnceLock};

    /// ring (the binary's provider; its deprecation is explained in runtime-common).
    #[allow(deprecated)]
    fn provider() -> Arc<rustls::crypto::CryptoProvider> {
        Arc::new(rustls::crypto::ring::default_provider())
    }

    /// A server configuration for `sip.test` and a client one trusting it (made once: key
    /// generation is slow next to a proptest case).
    fn configs() -> &'static (Arc<rustls::ServerConfig>, ClientTlsConfig) {
        static CONFIGS: OnceLock<(Arc<rustls::ServerConfig>, ClientTlsConfig)> = OnceLock::new();
        CONFIGS.get_or_init(|| {
            let key = rcgen::KeyPair::generate().unwrap();
            let params = rcgen::CertificateParams::new(vec!["sip.test".to_owned()]).unwrap();
            let cert = params.self_signed(&key).unwrap();
            let der: CertificateDer<'static> = cert.der().clone();
            let server = rustls::ServerConfig::builder_with_provider(provider())
                .with_safe_default_protocol_versions()
                .unwrap()
                .with_no_client_auth()
                .with_single_cert(
                    vec![der.clone()],
                    PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der())),
                )
                .unwrap();
            let mut roots = rustls::RootCertStore::empty();
            roots.add(der).unwrap();
            let client = rustls::ClientConfig::builder_with_provider(provider())
                .with_safe_default_protocol_versions()
                .unwrap()
                .with_root_certificates(roots)
                .with_no_client_auth();
            (Arc::new(server), Arc::new(client))
        })
    }

    fn client(name: &str) -> TlsLayer {
        let name = ServerName::try_from(name.to_owned()).unwrap();
        TlsLayer::client(&configs().1, name).unwrap()
    }

    /// Everything `server` has to send, as bytes.
    fn drain(server: &mut rustls::ServerConnection) -> Vec<u8> {
        let mut out = Vec::new();
        while server.wants_write() {
            server.write_tls(&mut out).unwrap();
        }
        out
    }

    /// A client layer and a rustls server with the handshake done between them, and what
    /// the client sealed before the handshake ended (`early`), as the server read it.
    fn connected(early: &[u8]) -> (TlsLayer, rustls::ServerConnection, Vec<u8>) {
        let mut layer = client("sip.test");
        let mut server = rustls::ServerConnection::new(configs().0.clone()).unwrap();
        let mut to_server = layer
            .seal(std::iter::once(&Bytes::copy_from_slice(early)))
            .map(|b| b.to_vec())
            .unwrap_or_default();
        let mut got = Vec::new();
        let mut plain = BytesMut::new();
        for _ in 0..10 {
            if !to_server.is_empty() {
                let mut data = &to_server[..];
                while !data.is_empty() {
                    server.read_tls(&mut data).unwrap();
                    server.process_new_packets().unwrap();
                }
                let mut buf = Vec::new();
                let _ = server.reader().read_to_end(&mut buf);
                got.extend(buf);
            }
            let to_client = drain(&mut server);
            layer.receive(&to_client, &mut plain).unwrap();
            to_server = layer
                .take_records(0)
                .map(|b| b.to_vec())
                .unwrap_or_default();
            if !layer.is_handshaking() && !server.is_handshaking() && to_server.is_empty() {
                break;
            }
        }
        assert!(!layer.is_handshaking() && !server.is_handshaking());
        assert!(plain.is_empty());
        (layer, server, got)
    }

    /// Cuts `data` at `cuts` (indices into it, any order).
    fn pieces<'a>(data: &'a [u8], cuts: &[prop::sample::Index]) -> Vec<&'a [u8]> {
        let mut points: Vec<usize> = cuts.iter().map(|i| i.index(data.len() + 1)).collect();
        points.sort_unstable();
        let mut out = Vec::new();
        let mut start = 0;
        for point in points.into_iter().chain([data.len()]) {
            out.push(&data[start..point]);
            start = point;
        }
        out
    }

    fn sip_message(i: usize, body: &str) -> String {
        format!(
            "OPTIONS sip:gw@192.0.2.1 SIP/2.0\r\nVia: SIP/2.0/TLS 192.0.2.9;branch=z9hG4bK{i}\r\n\
             From: <sip:a@b>;tag={i}\r\nTo: <sip:gw@192.0.2.1>\r\nCall-ID: {i}@b\r\n\
             CSeq: {i} OPTIONS\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        )
    }

    #[test]
    fn plaintext_sealed_before_the_handshake_ends_arrives_after_it() {
        let request = sip_message(1, "");
        let (_, _, got) = connected(request.as_bytes());
        assert_eq!(got, request.as_bytes());
    }

    #[test]
    fn a_certificate_for_another_name_is_refused_with_the_reason() {
        let mut layer = client("other.test");
        let mut server = rustls::ServerConnection::new(configs().0.clone()).unwrap();
        let hello = layer.take_records(0).expect("a ClientHello at once");
        let mut data = &hello[..];
        server.read_tls(&mut data).unwrap();
        server.process_new_packets().unwrap();
        let error = layer
            .receive(&drain(&mut server), &mut BytesMut::new())
            .unwrap_err();
        assert!(error.contains("invalid peer certificate"), "{error}");
        assert!(layer.take_records(0).is_some(), "an alert for the server");
    }

    proptest! {
        /// SIP messages the server sends, its records cut anywhere: the client yields the
        /// same plaintext and the framing finds every message, in order.
        #[test]
        fn messages_arrive_whole_however_the_records_are_cut(
            bodies in proptest::collection::vec("[a-z0-9 ]{0,300}", 1..6),
            cuts in proptest::collection::vec(any::<prop::sample::Index>(), 0..12),
        ) {
            let (mut layer, mut server, _) = connected(b"");
            let text: String = bodies.iter().enumerate().map(|(i, b)| sip_message(i, b)).collect();
            server.writer().write_all(text.as_bytes()).unwrap();
            let records = drain(&mut server);
            let mut plain = BytesMut::new();
            let mut framer = StreamFramer::new(ParseLimits::default());
            let mut found = Vec::new();
            let mut seen = 0;
            for piece in pieces(&records, &cuts) {
                let before = plain.len();
                layer.receive(piece, &mut plain).unwrap();
                seen += plain.len() - before;
                prop_assert!(layer.held() <= 5 + usize::from(u16::MAX));
                while let Some(msg) = framer.push(&mut plain).unwrap() {
                    found.push(msg);
                }
            }
            prop_assert_eq!(seen, text.len());
            prop_assert_eq!(found.len(), bodies.len());
            for (msg, body) in found.iter().zip(&bodies) {
                prop_assert_eq!(msg.body().as_ref(), body.as_bytes());
            }
        }

        /// Any bytes where the server's handshake should be, cut anywhere: an error or
        /// nothing yet, never a panic or plaintext, and what is held never exceeds what came.
        #[test]
        fn hostile_bytes_in_the_handshake_never_panic(
            data in proptest::collection::vec(any::<u8>(), 0..3000),
            cuts in proptest::collection::vec(any::<prop::sample::Index>(), 0..8),
            record_header in any::<bool>(),
        ) {
            let mut layer = client("sip.test");
            let _ = layer.take_records(0);
            let mut stream = data.clone();
            if record_header {
                // A plausible handshake record header, so that the bytes reach the parser.
                let len = (data.len() as u16).to_be_bytes();
                stream.splice(0..0, [22, 3, 3, len[0], len[1]]);
            }
            let mut plain = BytesMut::new();
            let mut fed = 0;
            for piece in pieces(&stream, &cuts) {
                fed += piece.len();
                let result = layer.receive(piece, &mut plain);
                let _ = layer.take_records(0);
                prop_assert!(plain.is_empty());
                if result.is_err() {
                    break;
                }
                prop_assert!(layer.held() <= fed);
            }
        }

        /// Any bytes after the handshake (a broken or malicious server), then the SIP framing
        /// over whatever plaintext comes: never a panic.
        #[test]
        fn hostile_bytes_after_the_handshake_never_panic(
            data in proptest::collection::vec(any::<u8>(), 0..3000),
            flip in any::<prop::sample::Index>(),
            genuine in any::<bool>(),
        ) {
            let (mut layer, mut server, _) = connected(b"");
            let stream = if genuine {
                // Real records of arbitrary plaintext, one byte possibly flipped.
                server.writer().write_all(&data).unwrap();
                let mut records = drain(&mut server);
                if !data.is_empty() {
                    let at = flip.index(records.len());
                    records[at] ^= 0x5a;
                }
                records
            } else {
                data.clone()
            };
            let mut plain = BytesMut::new();
            let mut framer = StreamFramer::new(ParseLimits::default());
            let result = layer.receive(&stream, &mut plain);
            let _ = layer.take_records(0);
            // A flipped byte fails the record's authentication: nothing of it is plaintext.
            if result.is_err() {
                prop_assert!(plain.len() <= data.len());
            }
            while let Ok(Some(_)) = framer.push(&mut plain) {}
        }
    }
}
