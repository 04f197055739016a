//! The SRTP crypto suites this crate speaks and the master key material they are keyed with.

use std::fmt;

/// Length of an AES-128 master key, in bytes.
pub const MASTER_KEY_LEN: usize = 16;
/// Length of a master salt, in bytes (112 bits).
pub const MASTER_SALT_LEN: usize = 14;
/// The SRTCP authentication tag length: 80 bits for both suites (RFC 4568 6.2.1, 6.2.2).
pub const SRTCP_TAG_LEN: usize = 10;

/// An SRTP crypto suite (RFC 4568 section 6.2): AES-128 counter mode and HMAC-SHA1 with an
/// 80- or 32-bit tag on SRTP packets.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Suite {
    /// `AES_CM_128_HMAC_SHA1_80`.
    AesCm128HmacSha1_80,
    /// `AES_CM_128_HMAC_SHA1_32` (SRTCP still carries 80-bit tags).
    AesCm128HmacSha1_32,
}

impl Suite {
    /// Every suite, in our order of preference.
    pub const ALL: [Suite; 2] = [Suite::AesCm128HmacSha1_80, Suite::AesCm128HmacSha1_32];

    /// The suite's SDP name.
    pub fn name(self) -> &'static str {
        match self {
            Suite::AesCm128HmacSha1_80 => "AES_CM_128_HMAC_SHA1_80",
            Suite::AesCm128HmacSha1_32 => "AES_CM_128_HMAC_SHA1_32",
        }
    }

    /// The suite named `name` (case-sensitive, as RFC 4568's grammar is).
    pub fn from_name(name: &str) -> Option<Self> {
        Suite::ALL.into_iter().find(|s| s.name() == name)
    }

    /// Bytes of authentication tag on an SRTP packet.
    pub fn rtp_tag_len(self) -> usize {
        match self {
            Suite::AesCm128HmacSha1_80 => 10,
            Suite::AesCm128HmacSha1_32 => 4,
        }
    }
}

impl fmt::Display for Suite {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A master key and master salt (the 30 bytes an SDES `inline:` key carries).
#[derive(Clone, PartialEq, Eq)]
pub struct MasterKey {
    /// The AES-128 master key.
    pub key: [u8; MASTER_KEY_LEN],
    /// The 112-bit master salt.
    pub salt: [u8; MASTER_SALT_LEN],
}

impl MasterKey {
    /// Total length of key and salt, as concatenated on the wire.
    pub const LEN: usize = MASTER_KEY_LEN + MASTER_SALT_LEN;

    /// Splits `key || salt` (exactly [`MasterKey::LEN`] bytes).
    pub fn from_concatenated(bytes: &[u8]) -> Option<Self> {
        if bytes.len() != Self::LEN {
            return None;
        }
        let mut key = [0; MASTER_KEY_LEN];
        let mut salt = [0; MASTER_SALT_LEN];
        key.copy_from_slice(&bytes[..MASTER_KEY_LEN]);
        salt.copy_from_slice(&bytes[MASTER_KEY_LEN..]);
        Some(Self { key, salt })
    }

    /// `key || salt`.
    pub fn concatenated(&self) -> [u8; Self::LEN] {
        let mut out = [0; Self::LEN];
        out[..MASTER_KEY_LEN].copy_from_slice(&self.key);
        out[MASTER_KEY_LEN..].copy_from_slice(&self.salt);
        out
    }
}

// Keys stay out of logs.
impl fmt::Debug for MasterKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("MasterKey(..)")
    }
}
