//! [`KeySecret`]: operator-supplied entropy that SDES master keys are derived with.
//!
//! The core's randomness is a seeded, non-cryptographic generator ([`crate::rng`]) whose
//! output also becomes identifiers anyone on the path sees (SSRCs, tags, Call-IDs); with
//! enough of them its state can be worked out, and with it every key drawn from it. A master
//! key is therefore the HMAC-SHA256, under a 256-bit secret the embedder draws from the
//! operating system, of 32 bytes of that generator: unpredictable without the secret, which
//! never leaves the process. Without a secret, keys are the generator's bytes as they are.

use std::fmt;

use hmac::{Hmac, Mac};
use sha2::Sha256;

use super::suite::MasterKey;

/// 256 bits of entropy from outside the core (the binary reads them from the OS).
#[derive(Clone, PartialEq, Eq)]
pub struct KeySecret([u8; 32]);

impl KeySecret {
    /// A secret of these bytes.
    pub fn new(bytes: [u8; 32]) -> Self {
        Self(bytes)
    }

    /// The master key (and salt) derived from the generator's `input` bytes.
    pub fn derive(&self, input: &[u8; 32]) -> MasterKey {
        let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(&self.0).expect("any key length");
        mac.update(b"siprtmp SDES master key");
        mac.update(input);
        let out = mac.finalize().into_bytes();
        MasterKey::from_concatenated(&out[..MasterKey::LEN]).expect("the length is right")
    }
}

// The secret stays out of logs.
impl fmt::Debug for KeySecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("KeySecret(..)")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_depend_on_the_secret_and_the_input() {
        let (a, b) = (KeySecret::new([1; 32]), KeySecret::new([2; 32]));
        let input = [7; 32];
        assert_eq!(a.derive(&input), a.derive(&input));
        assert_ne!(a.derive(&input), b.derive(&input));
        assert_ne!(a.derive(&input), a.derive(&[8; 32]));
        // Not the input itself: without the secret the generator's bytes say nothing.
        assert_ne!(a.derive(&input).concatenated()[..], input[..30]);
    }
}
