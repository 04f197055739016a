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
