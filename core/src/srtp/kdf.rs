//! Session key derivation (RFC 3711 section 4.3) with the AES-CM PRF, at key derivation rate 0:
//! the session keys are derived once per master key and never again.

use super::keystream::AesCm;
use super::suite::{MasterKey, MASTER_SALT_LEN};

/// The labels of RFC 3711 4.3.2 / 4.3.2 (SRTCP).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Label {
    /// SRTP encryption key.
    RtpEncryption = 0,
    /// SRTP authentication key.
    RtpAuthentication = 1,
    /// SRTP salting key.
    RtpSalt = 2,
    /// SRTCP encryption key.
    RtcpEncryption = 3,
    /// SRTCP authentication key.
    RtcpAuthentication = 4,
    /// SRTCP salting key.
    RtcpSalt = 5,
}

/// The session keys of one protocol (SRTP or SRTCP).
#[derive(Clone)]
pub struct SessionKeys {
    /// The AES-128 encryption key.
    pub encryption: [u8; 16],
    /// The HMAC-SHA1 key (160 bits).
    pub authentication: [u8; 20],
    /// The 112-bit session salt.
    pub salt: [u8; MASTER_SALT_LEN],
}

/// Fills `out` with the PRF output for `label`: AES-CM under the master key, IV
/// `(master_salt XOR label << 48) << 16` (the index DIV kdr is 0 at rate 0).
pub fn derive(master: &MasterKey, label: Label, out: &mut [u8]) {
    let mut iv = [0u8; 16];
    iv[..MASTER_SALT_LEN].copy_from_slice(&master.salt);
    // key_id = label || r (48 bits of r, all zero): the label lands in byte 7 of the salt.
    iv[7] ^= label as u8;
    AesCm::new(&master.key).keystream(&iv, out);
}

/// The SRTP (`rtcp` false) or SRTCP session keys of `master`.
pub fn session_keys(master: &MasterKey, rtcp: bool) -> SessionKeys {
    let (e, a, s) = if rtcp {
        (
            Label::RtcpEncryption,
            Label::RtcpAuthentication,
            Label::RtcpSalt,
        )
    } else {
        (
            Label::RtpEncryption,
            Label::RtpAuthentication,
            Label::RtpSalt,
        )
    };
    let mut keys = SessionKeys {
        encryption: [0; 16],
        authentication: [0; 20],
        salt: [0; MASTER_SALT_LEN],
    };
    derive(master, e, &mut keys.encryption);
    derive(master, a, &mut keys.authentication);
    derive(master, s, &mut keys.salt);
    keys
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::srtp::test_hex::hex;

    /// RFC 3711 appendix B.3.
    #[test]
    fn rfc3711_b3_key_derivation() {
        let master = MasterKey {
            key: hex("E1F97A0D3E018BE0D64FA32C06DE4139").try_into().unwrap(),
            salt: hex("0EC675AD498AFEEBB6960B3AABE6").try_into().unwrap(),
        };
        let keys = session_keys(&master, false);
        assert_eq!(
            keys.encryption.to_vec(),
            hex("C61E7A93744F39EE10734AFE3FF7A087")
        );
        assert_eq!(keys.salt.to_vec(), hex("30CBBC08863D8C85D49DB34A9AE1"));
        assert_eq!(
            keys.authentication.to_vec(),
            hex("CEBE321F6FF7716B6FD4AB49AF256A156D38BAA4")
        );
    }

    #[test]
    fn rtcp_keys_differ_from_rtp_keys() {
        let master = MasterKey {
            key: [1; 16],
            salt: [2; 14],
        };
        let (rtp, rtcp) = (session_keys(&master, false), session_keys(&master, true));
        assert_ne!(rtp.encryption, rtcp.encryption);
        assert_ne!(rtp.authentication, rtcp.authentication);
        assert_ne!(rtp.salt, rtcp.salt);
    }
}
