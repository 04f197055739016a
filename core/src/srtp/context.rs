//! [`SrtpContext`] and [`SrtcpContext`]: one direction of an SRTP session, keyed by one master
//! key, protecting or unprotecting packets in place.
//!
//! Protecting appends the tag (and, for SRTCP, the index word) after the packet in the
//! caller's buffer, which must have the room ([`SrtpContext::overhead`]); unprotecting checks
//! the replay window and the tag before anything is decrypted or remembered, and returns the
//! length of the plain packet. The AES key schedule and the keyed HMAC state are made once per
//! context; a packet allocates nothing.

use hmac::{Hmac, Mac};
use sha1::Sha1;
use smallvec::SmallVec;

use super::index::IndexTracker;
use super::kdf::session_keys;
use super::keystream::AesCm;
use super::replay::ReplayWindow;
use super::suite::{MasterKey, Suite, MASTER_SALT_LEN, SRTCP_TAG_LEN};

type HmacSha1 = Hmac<Sha1>;

/// SSRCs a context keeps state for. A stream is only added once a packet authenticated (or
/// when we send), so only a key holder can make them; past the limit the oldest is forgotten.
const MAX_STREAMS: usize = 16;

/// Why a packet could not be protected or unprotected.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SrtpError {
    /// Not an RTP (or RTCP) packet, or too short to hold its header and tag.
    Malformed,
    /// The caller's buffer has no room for the tag.
    NoRoom,
    /// The authentication tag does not match: a wrong key, or the packet was altered.
    Authentication,
    /// The packet was already received, or is older than the replay window.
    Replay,
}

impl std::fmt::Display for SrtpError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            SrtpError::Malformed => "malformed packet",
            SrtpError::NoRoom => "no room for the authentication tag",
            SrtpError::Authentication => "authentication failed",
            SrtpError::Replay => "replayed packet",
        })
    }
}

impl std::error::Error for SrtpError {}

/// The session keys of one protocol, ready to use.
#[derive(Clone)]
struct Keys {
    cipher: AesCm,
    salt: [u8; MASTER_SALT_LEN],
    mac: HmacSha1,
}

impl Keys {
    fn new(master: &MasterKey, rtcp: bool) -> Self {
        let keys = session_keys(master, rtcp);
        Self {
            cipher: AesCm::new(&keys.encryption),
            salt: keys.salt,
            mac: <HmacSha1 as Mac>::new_from_slice(&keys.authentication)
                .expect("HMAC takes any key length"),
        }
    }

    /// The counter-mode IV of RFC 3711 4.1.1: salt, SSRC and 48-bit index.
    fn iv(&self, ssrc: u32, index: u64) -> [u8; 16] {
        let mut iv = [0u8; 16];
        iv[..MASTER_SALT_LEN].copy_from_slice(&self.salt);
        for (b, s) in iv[4..8].iter_mut().zip(ssrc.to_be_bytes()) {
            *b ^= s;
        }
        for (b, s) in iv[8..14].iter_mut().zip(&index.to_be_bytes()[2..]) {
            *b ^= s;
        }
        iv
    }

    /// HMAC-SHA1 over `parts`, the first `out.len()` bytes into `out`.
    fn tag(&self, parts: &[&[u8]], out: &mut [u8]) {
        let mut mac = self.mac.clone();
        for part in parts {
            mac.update(part);
        }
        let full = mac.finalize().into_bytes();
        out.copy_from_slice(&full[..out.len()]);
    }

    /// Whether `tag` is the HMAC of `parts`, compared in constant time.
    fn verify(&self, parts: &[&[u8]], tag: &[u8]) -> bool {
        let mut expected = [0u8; 20];
        let expected = &mut expected[..tag.len()];
        self.tag(parts, expected);
        expected
            .iter()
            .zip(tag)
            .fold(0u8, |acc, (a, b)| acc | (a ^ b))
            == 0
    }
}

/// One SSRC's receive (or send) state.
#[derive(Debug, Clone, Copy)]
struct Stream {
    ssrc: u32,
    index: IndexTracker,
    replay: ReplayWindow,
}

fn find(streams: &mut SmallVec<[Stream; 2]>, ssrc: u32) -> Option<&mut Stream> {
    streams.iter_mut().find(|s| s.ssrc == ssrc)
}

fn insert(streams: &mut SmallVec<[Stream; 2]>, stream: Stream) {
    if streams.len() == MAX_STREAMS {
        streams.remove(0);
    }
    streams.push(stream);
}

/// The length of an RTP packet's header (fixed part, CSRCs and extension), if `packet` is RTP
/// version 2 and holds it.
fn rtp_header_len(packet: &[u8]) -> Option<usize> {
    if packet.len() < 12 || packet[0] >> 6 != 2 {
        return None;
    }
    let mut len = 12 + 4 * usize::from(packet[0] & 0x0f);
    if packet[0] & 0x10 != 0 {
        let words = packet.get(len + 2..len + 4)?;
        len += 4 + 4 * usize::from(u16::from_be_bytes([words[0], words[1]]));
    }
    (len <= packet.len()).then_some(len)
}

fn be32(bytes: &[u8]) -> u32 {
    u32::from_be_bytes([bytes[0], bytes[1], bytes[2], bytes[3]])
}

/// One direction of SRTP: protects what we send, or unprotects what the far end sends.
#[derive(Clone)]
pub struct SrtpContext {
    suite: Suite,
    keys: Keys,
    streams: SmallVec<[Stream; 2]>,
}

impl std::fmt::Debug for SrtpContext {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SrtpContext")
            .field("suite", &self.suite)
            .field("streams", &self.streams.len())
            .finish()
    }
}

impl SrtpContext {
    /// A context keyed with `master` (key derivation rate 0, no MKI).
    pub fn new(suite: Suite, master: &MasterKey) -> Self {
        Self {
            suite,
            keys: Keys::new(master, false),
            streams: SmallVec::new(),
        }
    }

    /// Bytes protection adds to a packet (the tag).
    pub fn overhead(&self) -> usize {
        self.suite.rtp_tag_len()
    }

    /// Protects the RTP packet in `buf[..len]`: encrypts its payload and appends the tag;
    /// returns the protected length. `buf` must have [`SrtpContext::overhead`] bytes of room
    /// after `len`.
    pub fn protect(&mut self, buf: &mut [u8], len: usize) -> Result<usize, SrtpError> {
        let tag_len = self.suite.rtp_tag_len();
        let packet = buf.get(..len).ok_or(SrtpError::Malformed)?;
        let header = rtp_header_len(packet).ok_or(SrtpError::Malformed)?;
        if buf.len() < len + tag_len {
            return Err(SrtpError::NoRoom);
        }
        let sequence = u16::from_be_bytes([buf[2], buf[3]]);
        let ssrc = be32(&buf[8..12]);
        let index = match find(&mut self.streams, ssrc) {
            Some(stream) => {
                let index = stream.index.estimate(sequence);
                stream.index.update(index);
                index
            }
            None => {
                insert(
                    &mut self.streams,
                    Stream {
                        ssrc,
                        index: IndexTracker::new(0, sequence),
                        replay: ReplayWindow::default(),
                    },
                );
                u64::from(sequence)
            }
        };
        let iv = self.keys.iv(ssrc, index);
        self.keys.cipher.apply(&iv, &mut buf[header..len]);
        let roc = ((index >> 16) as u32).to_be_bytes();
        let (packet, rest) = buf.split_at_mut(len);
        self.keys.tag(&[packet, &roc], &mut rest[..tag_len]);
        Ok(len + tag_len)
    }

    /// Unprotects the SRTP packet filling `buf`: checks replay and tag, decrypts the payload
    /// in place and returns the length of the RTP packet (the tag cut off). Nothing is
    /// remembered of a packet that fails.
    pub fn unprotect(&mut self, buf: &mut [u8]) -> Result<usize, SrtpError> {
        let tag_len = self.suite.rtp_tag_len();
        let len = buf.len().checked_sub(tag_len).ok_or(SrtpError::Malformed)?;
        let header = rtp_header_len(&buf[..len]).ok_or(SrtpError::Malformed)?;
        let sequence = u16::from_be_bytes([buf[2], buf[3]]);
        let ssrc = be32(&buf[8..12]);
        let known = find(&mut self.streams, ssrc).copied();
        let index = match &known {
            Some(stream) => {
                let index = stream.index.estimate(sequence);
                if !stream.replay.check(index) {
                    return Err(SrtpError::Replay);
                }
                index
            }
            None => u64::from(sequence),
        };
        let roc = ((index >> 16) as u32).to_be_bytes();
        let (packet, tag) = buf.split_at_mut(len);
        if !self.keys.verify(&[packet, &roc], tag) {
            return Err(SrtpError::Authentication);
        }
        let iv = self.keys.iv(ssrc, index);
        self.keys.cipher.apply(&iv, &mut packet[header..]);
        match find(&mut self.streams, ssrc) {
            Some(stream) => {
                stream.index.update(index);
                stream.replay.accept(index);
            }
            None => {
                let mut replay = ReplayWindow::default();
                replay.accept(index);
                insert(
                    &mut self.streams,
                    Stream {
                        ssrc,
                        index: IndexTracker::new(0, sequence),
                        replay,
                    },
                );
            }
        }
        Ok(len)
    }
}

/// The SRTCP index word: the E (encrypted) flag and a 31-bit index.
const E_FLAG: u32 = 0x8000_0000;
/// Bytes SRTCP adds: the index word and the 80-bit tag.
const SRTCP_OVERHEAD: usize = 4 + SRTCP_TAG_LEN;

/// One direction of SRTCP (every RTCP packet encrypted, 80-bit tags whatever the suite).
#[derive(Clone)]
pub struct SrtcpContext {
    keys: Keys,
    /// The next index we send with.
    next_index: u32,
    /// Replay windows of the SSRCs whose compound packets we received.
    received: SmallVec<[(u32, ReplayWindow); 2]>,
}

impl std::fmt::Debug for SrtcpContext {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SrtcpContext")
            .field("next_index", &self.next_index)
            .finish()
    }
}

impl SrtcpContext {
    /// Bytes protection adds to a compound packet (index word and tag).
    pub const OVERHEAD: usize = SRTCP_OVERHEAD;

    /// A context keyed with `master`. The suite's SRTP tag length does not matter: SRTCP tags
    /// are 80 bits for both suites.
    pub fn new(master: &MasterKey) -> Self {
        Self {
            keys: Keys::new(master, true),
            next_index: 0,
            received: SmallVec::new(),
        }
    }

    /// Protects the compound RTCP packet in `buf[..len]`: encrypts all but its first 8 bytes,
    /// appends the index word and the tag; returns the protected length. `buf` must have
    /// [`SrtcpContext::OVERHEAD`] bytes of room after `len`.
    pub fn protect(&mut self, buf: &mut [u8], len: usize) -> Result<usize, SrtpError> {
        if len < 8 || len > buf.len() || buf[0] >> 6 != 2 {
            return Err(SrtpError::Malformed);
        }
        if buf.len() < len + SRTCP_OVERHEAD {
            return Err(SrtpError::NoRoom);
        }
        let index = self.next_index;
        self.next_index = (self.next_index + 1) & !E_FLAG;
        let ssrc = be32(&buf[4..8]);
        let iv = self.keys.iv(ssrc, u64::from(index));
        self.keys.cipher.apply(&iv, &mut buf[8..len]);
        buf[len..len + 4].copy_from_slice(&(index | E_FLAG).to_be_bytes());
        let (packet, rest) = buf.split_at_mut(len + 4);
        self.keys.tag(&[packet], &mut rest[..SRTCP_TAG_LEN]);
        Ok(len + SRTCP_OVERHEAD)
    }

    /// Unprotects the SRTCP packet filling `buf`; returns the length of the RTCP compound
    /// packet. Nothing is remembered of a packet that fails.
    pub fn unprotect(&mut self, buf: &mut [u8]) -> Result<usize, SrtpError> {
        let len = buf
            .len()
            .checked_sub(SRTCP_OVERHEAD)
            .filter(|&l| l >= 8)
            .ok_or(SrtpError::Malformed)?;
        if buf[0] >> 6 != 2 {
            return Err(SrtpError::Malformed);
        }
        let word = be32(&buf[len..len + 4]);
        let (encrypted, index) = (word & E_FLAG != 0, u64::from(word & !E_FLAG));
        let ssrc = be32(&buf[4..8]);
        let window = self.received.iter().position(|(s, _)| *s == ssrc);
        if let Some(i) = window {
            if !self.received[i].1.check(index) {
                return Err(SrtpError::Replay);
            }
        }
        let (packet, tag) = buf.split_at_mut(len + 4);
        if !self.keys.verify(&[packet], tag) {
            return Err(SrtpError::Authentication);
        }
        if encrypted {
            let iv = self.keys.iv(ssrc, index);
            self.keys.cipher.apply(&iv, &mut packet[8..len]);
        }
        match window {
            Some(i) => self.received[i].1.accept(index),
            None => {
                if self.received.len() == MAX_STREAMS {
                    self.received.remove(0);
                }
                let mut replay = ReplayWindow::default();
                replay.accept(index);
                self.received.push((ssrc, replay));
            }
        }
        Ok(len)
    }
}
