//! The RTMP handshake (C0/C1/C2 and S0/S1/S2), sans-IO, for both the server and the client side.
//!
//! Two dialects exist on the wire and this module speaks both:
//!
//! * **Plain** (the published RTMP specification): C1/S1 are `time, zero, 1528 random bytes`
//!   and each side echoes the other's first packet as its second one.
//! * **Digest** (Flash Player 9 and later, and every client that imitates it, ffmpeg included):
//!   a non-zero version field in C1/S1 announces that the packet carries an HMAC-SHA256 digest
//!   at a position derived from four "offset" bytes, and the second packet (C2/S2) ends in a
//!   signature keyed from the peer's digest. Clients such as ffmpeg in play mode refuse a server
//!   whose S1 digest or S2 signature does not verify, so the server side must produce them.
//!
//! The digest may sit in one of two layouts, distinguished by where its offset bytes are:
//! bytes `8..12` (digest somewhere in `12..772`) or bytes `772..776` (digest somewhere in
//! `776..1536`). Implementations disagree on which to call "scheme 0" and which "scheme 1", so
//! this module names them by their offset position (`DigestLayout`).
//!
//! Neither machine touches a socket, a clock or global randomness: the caller passes in the
//! time and a [`SeededRng`], feeds received bytes through a `BytesMut` and sends what comes back.
//! Both machines draw all their random bytes up front in `new`, so `receive` needs no generator.
//! Encrypted RTMP (RTMPE, C0 = 6 or 8) is not supported; it is reported as a distinct error so a
//! server can close the connection with a clear reason.

use std::fmt;

use bytes::{Bytes, BytesMut};
use hmac::{Hmac, Mac};
use sha2::Sha256;

use crate::rng::SeededRng;

/// Length of C1, C2, S1 and S2.
const PACKET_LEN: usize = 1536;
/// Length of an HMAC-SHA256 digest or signature.
const DIGEST_LEN: usize = 32;
/// The part of C2/S2 covered by its trailing signature.
const SIGNED_LEN: usize = PACKET_LEN - DIGEST_LEN;
/// The only version byte (C0/S0) this module speaks: unencrypted RTMP.
const RTMP_VERSION: u8 = 3;
/// C0 values by which a client asks for RTMPE (6) or its XTEA/Blowfish variant (8).
const ENCRYPTED_VERSIONS: [u8; 2] = [6, 8];
/// Version announced in a digest S1 (13.14.10.13, as Flash Media Server-like servers send).
/// Its first byte must be at least 3: that is what makes ffmpeg check the digest.
const SERVER_VERSION: [u8; 4] = [0x0d, 0x0e, 0x0a, 0x0d];
/// Version announced in a digest C1 (a Flash Player 9+ style value; any non-zero one works).
const CLIENT_VERSION: [u8; 4] = [0x80, 0x00, 0x07, 0x02];
/// The digest position is `offset_base + 4 + (sum of the 4 offset bytes) % DIGEST_SPAN`.
const DIGEST_SPAN: usize = 728;

/// The 32 bytes that follow the ASCII part in both the player key and the server key.
const KEY_TAIL: [u8; 32] = [
    0xF0, 0xEE, 0xC2, 0x4A, 0x80, 0x68, 0xBE, 0xE8, 0x2E, 0x00, 0xD0, 0xD1, 0x02, 0x9E, 0x7E, 0x57,
    0x6E, 0xEC, 0x5D, 0x2D, 0x29, 0x80, 0x6F, 0xAB, 0x93, 0xB8, 0xE6, 0x36, 0xCF, 0xEB, 0x31, 0xAE,
];
/// The ASCII part of the player (client) key: it alone keys the C1 digest.
const PLAYER_KEY_TEXT: &[u8; 30] = b"Genuine Adobe Flash Player 001";
/// The ASCII part of the server key: it alone keys the S1 digest.
const SERVER_KEY_TEXT: &[u8; 36] = b"Genuine Adobe Flash Media Server 001";
/// The full player key (ASCII part + tail): keys the derivation of the C2 signature key.
const PLAYER_KEY: [u8; 62] = concat(PLAYER_KEY_TEXT, &KEY_TAIL);
/// The full server key (ASCII part + tail): keys the derivation of the S2 signature key.
const SERVER_KEY: [u8; 68] = concat(SERVER_KEY_TEXT, &KEY_TAIL);

/// `a` followed by `b`, evaluated at compile time (`N` must be `A + B`).
const fn concat<const A: usize, const B: usize, const N: usize>(
    a: &[u8; A],
    b: &[u8; B],
) -> [u8; N] {
    assert!(A + B == N);
    let mut out = [0u8; N];
    let mut i = 0;
    while i < A {
        out[i] = a[i];
        i += 1;
    }
    while i < N {
        out[i] = b[i - A];
        i += 1;
    }
    out
}

/// Why a handshake failed. Every variant means the connection should be closed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum HandshakeError {
    /// The peer's version byte (C0 or S0) is neither 3 nor an encryption request.
    UnsupportedVersion(u8),
    /// The client asked for encrypted RTMP (RTMPE: C0 = 6, or 8 for its XTEA/Blowfish
    /// variant), which this implementation does not offer.
    EncryptionRequested(u8),
    /// The server announced the digest scheme but its S1 digest verifies under neither layout.
    BadPeerDigest,
    /// The server's S2 signature does not match the digest this client sent in C1.
    BadSignature,
}

impl fmt::Display for HandshakeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::UnsupportedVersion(v) => write!(f, "unsupported RTMP version byte {v}"),
            Self::EncryptionRequested(v) => write!(
                f,
                "peer requested encrypted RTMP (version byte {v}), which is not supported"
            ),
            Self::BadPeerDigest => f.write_str("server handshake digest (S1) does not verify"),
            Self::BadSignature => f.write_str("server handshake signature (S2) does not verify"),
        }
    }
}

impl std::error::Error for HandshakeError {}

/// Where the four digest-offset bytes sit in a C1/S1 packet (see the module docs).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum DigestLayout {
    /// Offset bytes at `8..12`, digest within `12..772` (what ffmpeg's client sends).
    OffsetAt8,
    /// Offset bytes at `772..776`, digest within `776..1536`.
    OffsetAt772,
}

impl DigestLayout {
    /// Start of the digest inside `packet` (a full 1536-byte C1/S1). Always leaves room for
    /// the 32 digest bytes, whatever the offset bytes hold.
    fn digest_pos(self, packet: &[u8]) -> usize {
        let base = match self {
            Self::OffsetAt8 => 8,
            Self::OffsetAt772 => 772,
        };
        let sum: usize = packet[base..base + 4].iter().map(|&b| usize::from(b)).sum();
        base + 4 + sum % DIGEST_SPAN
    }
}

/// HMAC-SHA256 keyed with `key` over the concatenation of `parts`.
fn hmac_sha256(key: &[u8], parts: &[&[u8]]) -> [u8; DIGEST_LEN] {
    hmac_over(key, parts).finalize().into_bytes().into()
}

/// A keyed HMAC-SHA256 state fed with `parts`, ready to finalize or verify.
fn hmac_over(key: &[u8], parts: &[&[u8]]) -> Hmac<Sha256> {
    // HMAC accepts keys of any length, so this cannot fail.
    let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(key).expect("HMAC takes any key length");
    for part in parts {
        mac.update(part);
    }
    mac
}

/// The digest of a C1/S1 `packet` whose digest sits at `pos`: HMAC over everything but it.
fn packet_digest(packet: &[u8], pos: usize, key: &[u8]) -> [u8; DIGEST_LEN] {
    hmac_sha256(key, &[&packet[..pos], &packet[pos + DIGEST_LEN..]])
}

/// Writes the digest of `packet` (keyed with `key`) at the position `layout` derives from it.
/// Returns the digest.
fn imprint_digest(packet: &mut [u8], layout: DigestLayout, key: &[u8]) -> [u8; DIGEST_LEN] {
    let pos = layout.digest_pos(packet);
    let digest = packet_digest(packet, pos, key);
    packet[pos..pos + DIGEST_LEN].copy_from_slice(&digest);
    digest
}

/// Looks for a valid digest (keyed with `key`) in `packet`, trying `layouts` in order. Returns
/// the layout it was found in and the digest itself.
fn find_digest(
    packet: &[u8],
    key: &[u8],
    layouts: [DigestLayout; 2],
) -> Option<(DigestLayout, [u8; DIGEST_LEN])> {
    layouts.into_iter().find_map(|layout| {
        let pos = layout.digest_pos(packet);
        let claimed = &packet[pos..pos + DIGEST_LEN];
        let mac = hmac_over(key, &[&packet[..pos], &packet[pos + DIGEST_LEN..]]);
        // verify_slice compares in constant time.
        mac.verify_slice(claimed).ok()?;
        let mut digest = [0u8; DIGEST_LEN];
        digest.copy_from_slice(claimed);
        Some((layout, digest))
    })
}

/// The signature that ends a C2/S2: HMAC over its first 1504 bytes, keyed with
/// HMAC(`full_key`, the digest the peer put in its C1/S1).
fn signature(full_key: &[u8], peer_digest: &[u8; DIGEST_LEN], body: &[u8]) -> [u8; DIGEST_LEN] {
    let key = hmac_sha256(full_key, &[peer_digest]);
    hmac_sha256(&key, &[&body[..SIGNED_LEN]])
}

/// Where a [`ServerHandshake`] stands.
#[derive(Debug)]
enum ServerState {
    /// Waiting for C0+C1. `out` is the pre-drawn S0+S1+S2 (time and random bytes already in).
    AwaitC0C1 { out: Vec<u8> },
    /// S0+S1+S2 handed out; waiting for C2.
    AwaitC2,
    /// Done: the rest of the input is chunk stream.
    Complete,
    /// Failed; every further call reports the same error.
    Failed(HandshakeError),
}

/// The server side of the RTMP handshake.
///
/// Feed it the connection's received bytes; it consumes C0+C1 (1537 bytes) and answers with
/// S0+S1+S2, then consumes C2 (1536 bytes) and is complete. It never consumes a byte beyond
/// C2: whatever follows stays in the input buffer for the chunk stream. Check
/// [`is_complete`](Self::is_complete) after every call, since one call may consume both C0+C1
/// and an already-buffered C2.
///
/// ```
/// use bytes::BytesMut;
/// use siprtmp_core::rng::SeededRng;
/// use siprtmp_core::rtmp::handshake::{ClientHandshake, ServerHandshake};
///
/// let mut rng = SeededRng::new(42);
/// let (mut client, c0c1) = ClientHandshake::new(&mut rng, 0, true);
/// let mut server = ServerHandshake::new(&mut rng, 1000);
///
/// let mut to_server = BytesMut::from(&c0c1[..]);
/// let s0s1s2 = server.receive(&mut to_server).unwrap().expect("C0+C1 complete");
///
/// let mut to_client = BytesMut::from(&s0s1s2[..]);
/// let c2 = client.receive(&mut to_client).unwrap().expect("S0+S1+S2 complete");
/// assert!(client.is_complete());
///
/// // C2 followed by the first chunk-stream bytes: only C2 is consumed.
/// to_server.extend_from_slice(&c2);
/// to_server.extend_from_slice(&[0x02, 0x00]);
/// assert_eq!(server.receive(&mut to_server).unwrap(), None);
/// assert!(server.is_complete() && server.used_digest());
/// assert_eq!(&to_server[..], &[0x02, 0x00]);
/// ```
#[derive(Debug)]
pub struct ServerHandshake {
    state: ServerState,
    used_digest: bool,
}

impl ServerHandshake {
    /// A server handshake whose S1 carries `time_ms` as its timestamp. All random bytes of S1
    /// and S2 are drawn from `rng` now.
    pub fn new(rng: &mut SeededRng, time_ms: u32) -> Self {
        let mut out = vec![0u8; 1 + 2 * PACKET_LEN];
        out[0] = RTMP_VERSION;
        // S1: time, zero version (overwritten if the client uses digests), random.
        out[1..5].copy_from_slice(&time_ms.to_be_bytes());
        rng.fill(&mut out[9..]);
        Self {
            state: ServerState::AwaitC0C1 { out },
            used_digest: false,
        }
    }

    /// Consumes handshake bytes from the front of `input`.
    ///
    /// Returns `Some(S0+S1+S2)` once C0+C1 have been consumed, `None` otherwise (more input
    /// needed, or already complete). Bytes after C2 are left in `input`. An unacceptable C0 is
    /// reported as soon as its first byte is seen, without consuming anything.
    pub fn receive(&mut self, input: &mut BytesMut) -> Result<Option<Bytes>, HandshakeError> {
        let mut reply = None;
        if let ServerState::AwaitC0C1 { out } = &mut self.state {
            let Some(&version) = input.first() else {
                return Ok(None);
            };
            if version != RTMP_VERSION {
                let err = if ENCRYPTED_VERSIONS.contains(&version) {
                    HandshakeError::EncryptionRequested(version)
                } else {
                    HandshakeError::UnsupportedVersion(version)
                };
                self.state = ServerState::Failed(err);
                return Err(err);
            }
            if input.len() < 1 + PACKET_LEN {
                return Ok(None);
            }
            let c0c1 = input.split_to(1 + PACKET_LEN);
            let mut out = std::mem::take(out);
            self.used_digest = Self::answer(&c0c1[1..], &mut out);
            reply = Some(Bytes::from(out));
            self.state = ServerState::AwaitC2;
        }
        match self.state {
            ServerState::AwaitC2 if input.len() >= PACKET_LEN => {
                // C2 is not checked: many clients (ffmpeg when publishing, for one) send
                // neither an echo nor a signature, and nothing depends on it.
                let _c2 = input.split_to(PACKET_LEN);
                self.state = ServerState::Complete;
            }
            ServerState::Failed(err) => return Err(err),
            _ => {}
        }
        Ok(reply)
    }

    /// Fills in S1 and S2 (`out[1..]`) in answer to `c1`. Returns whether the digest scheme
    /// was used.
    fn answer(c1: &[u8], out: &mut [u8]) -> bool {
        let (s1, s2) = out[1..].split_at_mut(PACKET_LEN);
        let client_version = &c1[4..8];
        let client_digest = if client_version == [0; 4] {
            None
        } else {
            // Which layout a client uses is not announced; try both.
            find_digest(
                c1,
                PLAYER_KEY_TEXT,
                [DigestLayout::OffsetAt8, DigestLayout::OffsetAt772],
            )
        };
        match client_digest {
            Some((layout, digest)) => {
                s1[4..8].copy_from_slice(&SERVER_VERSION);
                imprint_digest(s1, layout, SERVER_KEY_TEXT);
                let sig = signature(&SERVER_KEY, &digest, s2);
                s2[SIGNED_LEN..].copy_from_slice(&sig);
                true
            }
            None => {
                // Plain handshake (also the fallback for a digest that does not verify, as
                // some clients fill the version field without signing): echo C1 as S2.
                s2.copy_from_slice(c1);
                false
            }
        }
    }

    /// Whether C2 has been consumed; from then on the input is chunk stream.
    pub fn is_complete(&self) -> bool {
        matches!(self.state, ServerState::Complete)
    }

    /// Whether the client's C1 carried a valid digest, so S1/S2 were answered with the
    /// Flash Player 9+ digest scheme (false before C1 has arrived).
    pub fn used_digest(&self) -> bool {
        self.used_digest
    }
}

/// Where a [`ClientHandshake`] stands.
#[derive(Debug)]
enum ClientState {
    /// Waiting for S0+S1+S2.
    AwaitS0S1S2,
    /// Done: the rest of the input is chunk stream.
    Complete,
    /// Failed; every further call reports the same error.
    Failed(HandshakeError),
}

/// What a digest-scheme client remembers between C1 and C2.
#[derive(Debug)]
struct ClientDigest {
    /// The digest it put in C1: the server's S2 signature is keyed from it.
    c1_digest: [u8; DIGEST_LEN],
    /// Pre-drawn random C2 body (its last 32 bytes get the signature).
    c2: Vec<u8>,
}

/// The client side of the RTMP handshake.
///
/// [`new`](Self::new) returns C0+C1 to send; [`receive`](Self::receive) consumes S0+S1+S2
/// (3073 bytes) and returns C2, after which the handshake is complete and any further bytes in
/// the input are chunk stream.
///
/// With `digest = true` the client behaves like ffmpeg in play mode: C1 carries a digest, and
/// if the server's S1 announces a version whose first byte is 3 or more, its digest and the S2
/// signature must verify, and C2 is a signed random packet. Otherwise C2 echoes S1.
///
/// ```
/// use bytes::BytesMut;
/// use siprtmp_core::rng::SeededRng;
/// use siprtmp_core::rtmp::handshake::{ClientHandshake, ServerHandshake};
///
/// let mut rng = SeededRng::new(7);
/// let (mut client, c0c1) = ClientHandshake::new(&mut rng, 0, false);
/// let mut server = ServerHandshake::new(&mut rng, 0);
/// let s0s1s2 = server.receive(&mut BytesMut::from(&c0c1[..])).unwrap().unwrap();
///
/// // The reply may arrive in pieces.
/// let mut input = BytesMut::from(&s0s1s2[..100]);
/// assert_eq!(client.receive(&mut input).unwrap(), None);
/// input.extend_from_slice(&s0s1s2[100..]);
/// let c2 = client.receive(&mut input).unwrap().unwrap();
/// assert_eq!(&c2[..], &s0s1s2[1..1537]); // plain handshake: C2 echoes S1
/// assert!(client.is_complete() && !server.used_digest());
/// ```
#[derive(Debug)]
pub struct ClientHandshake {
    state: ClientState,
    digest: Option<ClientDigest>,
    used_digest: bool,
}

impl ClientHandshake {
    /// A client handshake and the C0+C1 bytes to send. C1 carries `time_ms`; with `digest`
    /// it also carries a non-zero client version and a digest (offset bytes at 8..12, the
    /// layout ffmpeg uses). All random bytes of C1 and C2 are drawn from `rng` now.
    pub fn new(rng: &mut SeededRng, time_ms: u32, digest: bool) -> (Self, Bytes) {
        let mut c0c1 = vec![0u8; 1 + PACKET_LEN];
        c0c1[0] = RTMP_VERSION;
        c0c1[1..5].copy_from_slice(&time_ms.to_be_bytes());
        rng.fill(&mut c0c1[9..]);
        let digest = digest.then(|| {
            let c1 = &mut c0c1[1..];
            c1[4..8].copy_from_slice(&CLIENT_VERSION);
            let c1_digest = imprint_digest(c1, DigestLayout::OffsetAt8, PLAYER_KEY_TEXT);
            let mut c2 = vec![0u8; PACKET_LEN];
            rng.fill(&mut c2);
            ClientDigest { c1_digest, c2 }
        });
        let hs = Self {
            state: ClientState::AwaitS0S1S2,
            digest,
            used_digest: false,
        };
        (hs, Bytes::from(c0c1))
    }

    /// Consumes S0+S1+S2 from the front of `input`.
    ///
    /// Returns `Some(C2)` once they have all arrived (the handshake is then complete and any
    /// further bytes stay in `input`), `None` while more input is needed or once complete.
    /// A bad S0 is reported as soon as its byte is seen, without consuming anything.
    pub fn receive(&mut self, input: &mut BytesMut) -> Result<Option<Bytes>, HandshakeError> {
        match self.state {
            ClientState::Complete => return Ok(None),
            ClientState::Failed(err) => return Err(err),
            ClientState::AwaitS0S1S2 => {}
        }
        let Some(&version) = input.first() else {
            return Ok(None);
        };
        if version != RTMP_VERSION {
            return self.fail(HandshakeError::UnsupportedVersion(version));
        }
        if input.len() < 1 + 2 * PACKET_LEN {
            return Ok(None);
        }
        let reply = input.split_to(1 + 2 * PACKET_LEN).freeze();
        let s1 = &reply[1..1 + PACKET_LEN];
        let s2 = &reply[1 + PACKET_LEN..];
        // Like ffmpeg: a server version whose first byte is below 3 means an old, plain server.
        let c2 = match self.digest.take() {
            Some(ClientDigest { c1_digest, mut c2 }) if s1[4] >= 3 => {
                // ffmpeg tries the 772 layout first; either order accepts the same servers.
                let layouts = [DigestLayout::OffsetAt772, DigestLayout::OffsetAt8];
                let Some((_, server_digest)) = find_digest(s1, SERVER_KEY_TEXT, layouts) else {
                    return self.fail(HandshakeError::BadPeerDigest);
                };
                let expected = signature(&SERVER_KEY, &c1_digest, s2);
                if expected[..] != s2[SIGNED_LEN..] {
                    return self.fail(HandshakeError::BadSignature);
                }
                let sig = signature(&PLAYER_KEY, &server_digest, &c2);
                c2[SIGNED_LEN..].copy_from_slice(&sig);
                self.used_digest = true;
                Bytes::from(c2)
            }
            // Plain: echo S1 (a slice of the received buffer, no copy).
            _ => reply.slice(1..1 + PACKET_LEN),
        };
        self.state = ClientState::Complete;
        Ok(Some(c2))
    }

    /// Records `err` as final and returns it.
    fn fail(&mut self, err: HandshakeError) -> Result<Option<Bytes>, HandshakeError> {
        self.state = ClientState::Failed(err);
        Err(err)
    }

    /// Whether S0+S1+S2 have been consumed and C2 produced.
    pub fn is_complete(&self) -> bool {
        matches!(self.state, ClientState::Complete)
    }

    /// Whether the server answered with the digest scheme and it verified (so C2 is signed).
    pub fn used_digest(&self) -> bool {
        self.used_digest
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// Hex of `bytes`, lower case.
    fn hex(bytes: &[u8]) -> String {
        bytes.iter().map(|b| format!("{b:02x}")).collect()
    }

    /// A deterministic 1536-byte pattern: byte i = i * mul + add (mod 256).
    fn pattern(mul: usize, add: usize) -> Vec<u8> {
        (0..PACKET_LEN)
            .map(|i| ((i * mul + add) % 256) as u8)
            .collect()
    }

    /// Test-side HMAC-SHA256, written against the `hmac` crate directly rather than through the
    /// module's helpers, so the layout arithmetic is checked by a second implementation.
    fn mac(key: &[u8], data: &[u8]) -> [u8; 32] {
        let mut m = <Hmac<Sha256> as Mac>::new_from_slice(key).unwrap();
        m.update(data);
        m.finalize().into_bytes().into()
    }

    /// Position of the digest whose offset bytes start at `base`.
    fn pos_at(packet: &[u8], base: usize) -> usize {
        base + 4
            + packet[base..base + 4]
                .iter()
                .map(|&b| b as usize)
                .sum::<usize>()
                % 728
    }

    /// Digest at `pos` of `packet` under `key`, computed independently.
    fn digest_at(packet: &[u8], pos: usize, key: &[u8]) -> [u8; 32] {
        let mut data = packet[..pos].to_vec();
        data.extend_from_slice(&packet[pos + 32..]);
        mac(key, &data)
    }

    /// C0+C1 of a Flash-9-style client whose digest offset bytes are at `base` (8 or 772).
    /// Returns the bytes and the client digest.
    fn digest_c0c1(seed: u64, base: usize) -> (Vec<u8>, [u8; 32]) {
        let mut c1 = vec![0u8; PACKET_LEN];
        SeededRng::new(seed).fill(&mut c1);
        c1[0..4].copy_from_slice(&[0, 0, 0x10, 0]);
        c1[4..8].copy_from_slice(&[9, 0, 124, 2]);
        let pos = pos_at(&c1, base);
        let d = digest_at(&c1, pos, b"Genuine Adobe Flash Player 001");
        c1[pos..pos + 32].copy_from_slice(&d);
        let mut out = vec![3u8];
        out.extend_from_slice(&c1);
        (out, d)
    }

    /// Checks a digest-scheme S0+S1+S2 the way ffmpeg's client does, given the client digest.
    /// Returns the layout base (772 or 8) the S1 digest was found at.
    fn check_server_reply(reply: &[u8], client_digest: &[u8; 32]) -> usize {
        assert_eq!(reply.len(), 3073);
        assert_eq!(reply[0], 3);
        let s1 = &reply[1..1537];
        let s2 = &reply[1537..];
        assert!(
            s1[4] >= 3,
            "server version must make ffmpeg check the digest"
        );
        let base = [772, 8]
            .into_iter()
            .find(|&base| {
                let pos = pos_at(s1, base);
                digest_at(s1, pos, b"Genuine Adobe Flash Media Server 001") == s1[pos..pos + 32]
            })
            .expect("S1 digest verifies under one layout");
        let key = mac(&SERVER_KEY, client_digest);
        assert_eq!(mac(&key, &s2[..1504]), s2[1504..], "S2 signature");
        base
    }

    #[test]
    fn keys_are_the_published_byte_strings() {
        assert_eq!(&PLAYER_KEY[..30], b"Genuine Adobe Flash Player 001");
        assert_eq!(&SERVER_KEY[..36], b"Genuine Adobe Flash Media Server 001");
        assert_eq!(PLAYER_KEY[30..], KEY_TAIL);
        assert_eq!(SERVER_KEY[36..], KEY_TAIL);
        assert_eq!(SERVER_KEY[67], 0xAE);
    }

    /// Expected values computed independently with Python's `hmac`/`hashlib`:
    ///
    /// ```text
    /// H = lambda k, d: hmac.new(k, d, hashlib.sha256).digest()
    /// pk, sk = b"Genuine Adobe Flash Player 001", b"Genuine Adobe Flash Media Server 001"
    /// c1 = bytearray((i*13+7) % 256 for i in range(1536)); c1[0:8] = bytes([0,0,0,0,0x80,0,7,2])
    /// p = 12 + sum(c1[8:12]) % 728                            # 534
    /// d = H(pk, c1[:p] + c1[p+32:])                           # C1 digest
    /// s1 = bytearray((i*17+1) % 256 for i in range(1536)); s1[4:8] = bytes([13,14,10,13])
    /// q = 776 + sum(s1[772:776]) % 728                        # 1154
    /// d1 = H(sk, s1[:q] + s1[q+32:])                          # S1 digest
    /// body = bytes((i*31+5) % 256 for i in range(1504))
    /// H(H(sk + tail, d), body); H(H(pk + tail, d1), body)     # S2 and C2 signatures
    /// ```
    #[test]
    fn digest_and_signature_match_independent_vectors() {
        let mut c1 = pattern(13, 7);
        c1[0..4].copy_from_slice(&[0; 4]);
        c1[4..8].copy_from_slice(&CLIENT_VERSION);
        assert_eq!(DigestLayout::OffsetAt8.digest_pos(&c1), 534);
        let d = imprint_digest(&mut c1, DigestLayout::OffsetAt8, PLAYER_KEY_TEXT);
        assert_eq!(
            hex(&d),
            "63183ff1888d56ab4c1f3913b650f4af1c6f6762f6c524b45adcf69c5aee2b27"
        );
        assert_eq!(c1[534..566], d);

        let mut s1 = pattern(17, 1);
        s1[4..8].copy_from_slice(&SERVER_VERSION);
        assert_eq!(DigestLayout::OffsetAt772.digest_pos(&s1), 1154);
        let d1 = imprint_digest(&mut s1, DigestLayout::OffsetAt772, SERVER_KEY_TEXT);
        assert_eq!(
            hex(&d1),
            "8a391c0c06dc502328aeb15e73afdc9ac3413a3cbdf083d2a88b9d6707070255"
        );

        let body = pattern(31, 5);
        assert_eq!(
            hex(&signature(&SERVER_KEY, &d, &body)),
            "9b3b1e614acc49d5fabbfda9d0cdf93f56989ce78612e3b1484cdd726f77dacc"
        );
        assert_eq!(
            hex(&signature(&PLAYER_KEY, &d1, &body)),
            "277899be82d5ebf86cf96f05010da03883bb7ce148978a6e7f8be58b7afbe76b"
        );
        // The signature covers only the first 1504 bytes.
        let mut body2 = body.clone();
        body2[1510] ^= 0xff;
        assert_eq!(
            signature(&SERVER_KEY, &d, &body),
            signature(&SERVER_KEY, &d, &body2)
        );
    }

    #[test]
    fn server_answers_digest_c1_in_the_clients_layout() {
        for (base, seed) in [(8, 1), (772, 2), (8, 3), (772, 4)] {
            let (c0c1, client_digest) = digest_c0c1(seed, base);
            let mut server = ServerHandshake::new(&mut SeededRng::new(seed), 5000);
            let mut input = BytesMut::from(&c0c1[..]);
            let reply = server.receive(&mut input).unwrap().expect("reply");
            assert!(input.is_empty());
            assert!(server.used_digest());
            assert!(!server.is_complete());
            assert_eq!(reply[1..5], 5000u32.to_be_bytes());
            assert_eq!(reply[5..9], SERVER_VERSION);
            assert_eq!(check_server_reply(&reply, &client_digest), base);
        }
    }

    #[test]
    fn digest_round_trip_with_our_client() {
        let mut rng = SeededRng::new(11);
        let (mut client, c0c1) = ClientHandshake::new(&mut rng, 123, true);
        assert_eq!(c0c1.len(), 1537);
        assert_eq!(c0c1[0], 3);
        assert_eq!(c0c1[1..5], 123u32.to_be_bytes());
        assert_eq!(c0c1[5..9], [0x80, 0x00, 0x07, 0x02]);
        // Our C1 digest verifies independently at the offset-8 layout.
        let pos = pos_at(&c0c1[1..], 8);
        let d = digest_at(&c0c1[1..], pos, b"Genuine Adobe Flash Player 001");
        assert_eq!(c0c1[1 + pos..1 + pos + 32], d);

        let mut server = ServerHandshake::new(&mut rng, 456);
        let mut to_server = BytesMut::from(&c0c1[..]);
        let reply = server.receive(&mut to_server).unwrap().unwrap();
        check_server_reply(&reply, &d);

        let mut to_client = BytesMut::from(&reply[..]);
        to_client.extend_from_slice(b"chunk");
        let c2 = client.receive(&mut to_client).unwrap().unwrap();
        assert!(client.is_complete() && client.used_digest());
        assert_eq!(&to_client[..], b"chunk");
        // C2 is signed with HMAC(full player key, server digest), independently checked.
        let s1 = &reply[1..1537];
        let spos = pos_at(s1, 8);
        let key = mac(&PLAYER_KEY, &s1[spos..spos + 32]);
        assert_eq!(mac(&key, &c2[..1504]), c2[1504..]);

        to_server.extend_from_slice(&c2);
        assert_eq!(server.receive(&mut to_server).unwrap(), None);
        assert!(server.is_complete() && server.used_digest());
        assert!(to_server.is_empty());
        // Complete machines consume nothing more.
        to_server.extend_from_slice(b"xyz");
        assert_eq!(server.receive(&mut to_server).unwrap(), None);
        assert_eq!(client.receive(&mut to_server).unwrap(), None);
        assert_eq!(&to_server[..], b"xyz");
    }

    #[test]
    fn plain_round_trip_echoes() {
        let mut rng = SeededRng::new(5);
        let (mut client, c0c1) = ClientHandshake::new(&mut rng, 77, false);
        assert_eq!(c0c1[5..9], [0, 0, 0, 0]);
        let mut server = ServerHandshake::new(&mut rng, 88);
        let reply = server
            .receive(&mut BytesMut::from(&c0c1[..]))
            .unwrap()
            .unwrap();
        assert!(!server.used_digest());
        assert_eq!(reply[0], 3);
        assert_eq!(reply[1..5], 88u32.to_be_bytes());
        assert_eq!(reply[5..9], [0, 0, 0, 0]);
        assert_eq!(reply[1537..], c0c1[1..], "S2 echoes C1");

        let c2 = client
            .receive(&mut BytesMut::from(&reply[..]))
            .unwrap()
            .unwrap();
        assert_eq!(c2[..], reply[1..1537], "C2 echoes S1");
        assert!(client.is_complete() && !client.used_digest());

        let mut rest = BytesMut::from(&c2[..]);
        assert_eq!(server.receive(&mut rest).unwrap(), None);
        assert!(server.is_complete());
    }

    #[test]
    fn digest_client_accepts_plain_server() {
        let mut rng = SeededRng::new(6);
        let (mut client, _c0c1) = ClientHandshake::new(&mut rng, 0, true);
        // An old server: S1 version zero, S2 anything.
        let mut reply = vec![3u8];
        reply.extend_from_slice(&pattern(3, 1));
        reply[5..9].copy_from_slice(&[0; 4]);
        reply.extend_from_slice(&pattern(5, 2));
        let c2 = client
            .receive(&mut BytesMut::from(&reply[..]))
            .unwrap()
            .unwrap();
        assert_eq!(c2[..], reply[1..1537]);
        assert!(!client.used_digest());
    }

    #[test]
    fn corrupted_client_digest_falls_back_to_plain() {
        let (mut c0c1, _) = digest_c0c1(9, 8);
        let pos = pos_at(&c0c1[1..], 8);
        c0c1[1 + pos + 5] ^= 0x01;
        let mut server = ServerHandshake::new(&mut SeededRng::new(1), 0);
        let reply = server
            .receive(&mut BytesMut::from(&c0c1[..]))
            .unwrap()
            .unwrap();
        assert!(!server.used_digest());
        assert_eq!(reply[5..9], [0, 0, 0, 0]);
        assert_eq!(reply[1537..], c0c1[1..]);
    }

    #[test]
    fn encryption_and_unknown_versions_are_rejected() {
        for (c0, expected) in [
            (6, HandshakeError::EncryptionRequested(6)),
            (8, HandshakeError::EncryptionRequested(8)),
            (9, HandshakeError::UnsupportedVersion(9)),
            (0x47, HandshakeError::UnsupportedVersion(0x47)), // "GET / HTTP"
        ] {
            let mut server = ServerHandshake::new(&mut SeededRng::new(1), 0);
            // Rejected on the first byte, before C1 arrives, and nothing is consumed.
            let mut input = BytesMut::from(&[c0][..]);
            assert_eq!(server.receive(&mut input), Err(expected));
            assert_eq!(input.len(), 1);
            // The failure is sticky.
            assert_eq!(server.receive(&mut input), Err(expected));
            assert!(!server.is_complete());
        }
        assert!(HandshakeError::EncryptionRequested(6)
            .to_string()
            .contains("encrypted"));

        let (mut client, _) = ClientHandshake::new(&mut SeededRng::new(1), 0, true);
        let mut input = BytesMut::from(&[6u8][..]);
        assert_eq!(
            client.receive(&mut input),
            Err(HandshakeError::UnsupportedVersion(6))
        );
    }

    #[test]
    fn client_rejects_bad_server_digest_and_signature() {
        // Every `fresh()` client is identical to the one whose C1 the server answered.
        let (_, c0c1) = ClientHandshake::new(&mut SeededRng::new(21), 0, true);
        let mut server = ServerHandshake::new(&mut SeededRng::new(22), 0);
        let good = server
            .receive(&mut BytesMut::from(&c0c1[..]))
            .unwrap()
            .unwrap();

        let fresh = || ClientHandshake::new(&mut SeededRng::new(21), 0, true).0;

        // Sanity: the untouched reply is accepted.
        assert!(fresh()
            .receive(&mut BytesMut::from(&good[..]))
            .unwrap()
            .is_some());

        // Flip a byte of S1 outside the digest: the digest no longer verifies.
        let mut bad_s1 = good.to_vec();
        bad_s1[1 + 100] ^= 0x80;
        let mut c = fresh();
        assert_eq!(
            c.receive(&mut BytesMut::from(&bad_s1[..])),
            Err(HandshakeError::BadPeerDigest)
        );
        assert!(!c.is_complete());

        // Flip a byte of the S2 body: the signature no longer matches.
        let mut bad_s2 = good.to_vec();
        bad_s2[1537 + 10] ^= 0x01;
        assert_eq!(
            fresh().receive(&mut BytesMut::from(&bad_s2[..])),
            Err(HandshakeError::BadSignature)
        );
    }

    #[test]
    fn byte_at_a_time_leaves_trailing_bytes() {
        for digest in [false, true] {
            let mut rng = SeededRng::new(31);
            let (mut client, c0c1) = ClientHandshake::new(&mut rng, 1, digest);
            let mut server = ServerHandshake::new(&mut rng, 2);

            let mut to_server = BytesMut::new();
            let mut reply = None;
            for (i, &b) in c0c1.iter().enumerate() {
                to_server.extend_from_slice(&[b]);
                let out = server.receive(&mut to_server).unwrap();
                if i + 1 < c0c1.len() {
                    assert_eq!(out, None);
                    assert_eq!(to_server.len(), i + 1);
                } else {
                    reply = out;
                }
            }
            let reply = reply.expect("reply after the last C1 byte");
            assert!(to_server.is_empty());
            assert_eq!(server.used_digest(), digest);

            let mut to_client = BytesMut::new();
            let mut c2 = None;
            let mut stream = reply.to_vec();
            stream.extend_from_slice(&[0xAA, 0xBB]);
            for &b in &stream {
                to_client.extend_from_slice(&[b]);
                if let Some(out) = client.receive(&mut to_client).unwrap() {
                    assert!(c2.is_none());
                    c2 = Some(out);
                }
            }
            assert_eq!(&to_client[..], &[0xAA, 0xBB]);
            let c2 = c2.expect("C2");

            let mut stream = c2.to_vec();
            stream.extend_from_slice(&[1, 2, 3]);
            for (i, &b) in stream.iter().enumerate() {
                to_server.extend_from_slice(&[b]);
                assert_eq!(server.receive(&mut to_server).unwrap(), None);
                assert_eq!(server.is_complete(), i + 1 >= PACKET_LEN);
            }
            assert_eq!(&to_server[..], &[1, 2, 3]);
        }
    }

    #[test]
    fn c2_already_buffered_with_c0c1_is_consumed_in_the_same_call() {
        let (c0c1, _) = digest_c0c1(3, 772);
        let mut input = BytesMut::from(&c0c1[..]);
        input.extend_from_slice(&[0u8; PACKET_LEN]);
        input.extend_from_slice(b"tail");
        let mut server = ServerHandshake::new(&mut SeededRng::new(3), 0);
        assert!(server.receive(&mut input).unwrap().is_some());
        assert!(server.is_complete());
        assert_eq!(&input[..], b"tail");
    }

    /// Splits `data` at the given cut points (taken modulo its length) and feeds the pieces.
    fn feed_server(data: &[u8], cuts: &[usize]) {
        let mut hs = ServerHandshake::new(&mut SeededRng::new(1), 0);
        let mut input = BytesMut::new();
        let mut given = 0usize;
        let mut consumed = 0usize;
        let mut points: Vec<usize> = cuts.iter().map(|c| c % (data.len() + 1)).collect();
        points.push(data.len());
        points.sort_unstable();
        let mut start = 0;
        for end in points {
            input.extend_from_slice(&data[start..end]);
            given += end - start;
            start = end;
            let before = input.len();
            let result = hs.receive(&mut input);
            consumed += before - input.len();
            assert!(consumed <= given);
            match result {
                Err(_) => {
                    assert_eq!(before, input.len());
                    return;
                }
                Ok(Some(reply)) => assert_eq!(reply.len(), 3073),
                Ok(None) => {}
            }
        }
        assert!(consumed <= 2 * PACKET_LEN + 1);
        // Complete exactly when a valid C0 and all of C1 and C2 (3073 bytes) were given.
        assert_eq!(hs.is_complete(), data[0] == 3 && data.len() >= 3073);
    }

    fn feed_client(data: &[u8], cuts: &[usize], digest: bool) {
        let (mut hs, _) = ClientHandshake::new(&mut SeededRng::new(1), 0, digest);
        let mut input = BytesMut::new();
        let mut given = 0usize;
        let mut consumed = 0usize;
        let mut points: Vec<usize> = cuts.iter().map(|c| c % (data.len() + 1)).collect();
        points.push(data.len());
        points.sort_unstable();
        let mut start = 0;
        for end in points {
            input.extend_from_slice(&data[start..end]);
            given += end - start;
            start = end;
            let before = input.len();
            let result = hs.receive(&mut input);
            consumed += before - input.len();
            assert!(consumed <= given);
            match result {
                Err(_) => return,
                Ok(Some(c2)) => assert_eq!(c2.len(), PACKET_LEN),
                Ok(None) => {}
            }
        }
        assert!(consumed <= 2 * PACKET_LEN + 1);
    }

    /// Arbitrary bytes, biased to start with a valid version byte and to be long enough to
    /// reach the interesting states.
    fn hostile_bytes() -> impl Strategy<Value = Vec<u8>> {
        (
            prop_oneof![Just(3u8), any::<u8>()],
            proptest::collection::vec(any::<u8>(), 0..3200),
        )
            .prop_map(|(first, mut rest)| {
                rest.insert(0, first);
                rest
            })
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(128))]

        #[test]
        fn server_survives_arbitrary_input(
            data in hostile_bytes(),
            cuts in proptest::collection::vec(any::<usize>(), 0..8),
        ) {
            feed_server(&data, &cuts);
        }

        #[test]
        fn client_survives_arbitrary_input(
            data in hostile_bytes(),
            cuts in proptest::collection::vec(any::<usize>(), 0..8),
            digest in any::<bool>(),
        ) {
            feed_client(&data, &cuts, digest);
        }

        /// A digest C1 with arbitrary random content (so arbitrary offset bytes, hence every
        /// digest position) is always answered with a reply ffmpeg would accept.
        #[test]
        fn any_digest_c1_gets_a_verifiable_reply(seed in any::<u64>(), at772 in any::<bool>()) {
            let base = if at772 { 772 } else { 8 };
            let (c0c1, d) = digest_c0c1(seed, base);
            let mut server = ServerHandshake::new(&mut SeededRng::new(seed ^ 1), 0);
            let reply = server.receive(&mut BytesMut::from(&c0c1[..])).unwrap().unwrap();
            prop_assert!(server.used_digest());
            prop_assert_eq!(check_server_reply(&reply, &d), base);
        }
    }
}
