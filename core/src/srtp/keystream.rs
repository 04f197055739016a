//! AES in counter mode as SRTP uses it (RFC 3711 4.1.1): a 128-bit IV whose low 16 bits count
//! blocks, XORed into the payload in place. The AES key schedule is made once per session key
//! and kept; a packet costs only its blocks.

use aes::cipher::generic_array::GenericArray;
use aes::cipher::{BlockEncrypt, KeyInit};
use aes::Aes128;

/// Blocks encrypted per call to the cipher: lets it use its parallel (pipelined) path.
const BATCH: usize = 8;

/// An AES-128 key schedule for counter-mode keystream.
#[derive(Clone)]
pub struct AesCm {
    cipher: Aes128,
}

impl AesCm {
    /// The key schedule of `key`.
    pub fn new(key: &[u8; 16]) -> Self {
        Self {
            cipher: Aes128::new(GenericArray::from_slice(key)),
        }
    }

    /// XORs the keystream that starts at `iv` (block counter in its low 16 bits, starting at
    /// whatever they hold) into `data`.
    pub fn apply(&self, iv: &[u8; 16], data: &mut [u8]) {
        let base = u128::from_be_bytes(*iv);
        let mut counter: u128 = 0;
        for chunk in data.chunks_mut(16 * BATCH) {
            let mut blocks = [GenericArray::from([0u8; 16]); BATCH];
            let n = chunk.len().div_ceil(16);
            for block in blocks.iter_mut().take(n) {
                // The counter occupies the low 16 bits (RFC 3711: at most 2^16 blocks a packet).
                let value = (base & !0xffff) | ((base.wrapping_add(counter)) & 0xffff);
                *block = GenericArray::from(value.to_be_bytes());
                counter += 1;
            }
            self.cipher.encrypt_blocks(&mut blocks[..n]);
            for (i, byte) in chunk.iter_mut().enumerate() {
                *byte ^= blocks[i / 16][i % 16];
            }
        }
    }

    /// The keystream from `iv` into `out` (for key derivation and tests).
    pub fn keystream(&self, iv: &[u8; 16], out: &mut [u8]) {
        out.fill(0);
        self.apply(iv, out);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::srtp::test_hex::hex;

    /// RFC 3711 appendix B.2: the AES-CM keystream for a session key and salt.
    #[test]
    fn rfc3711_b2_keystream() {
        let key: [u8; 16] = hex("2B7E151628AED2A6ABF7158809CF4F3C").try_into().unwrap();
        let iv: [u8; 16] = hex("F0F1F2F3F4F5F6F7F8F9FAFBFCFD0000").try_into().unwrap();
        let mut stream = vec![0; 0xff02 * 16];
        AesCm::new(&key).keystream(&iv, &mut stream);
        let block = |n: usize| &stream[n * 16..n * 16 + 16];
        assert_eq!(block(0), hex("E03EAD0935C95E80E166B16DD92B4EB4"));
        assert_eq!(block(1), hex("D23513162B02D0F72A43A2FE4A5F97AB"));
        assert_eq!(block(2), hex("41E95B3BB0A2E8DD477901E4FCA894C0"));
        assert_eq!(block(0xfeff), hex("EC8CDF7398607CB0F2D21675EA9EA1E4"));
        assert_eq!(block(0xff00), hex("362B7C3C6773516318A077D7FC5073AE"));
        assert_eq!(block(0xff01), hex("6A2CC3787889374FBEB4C81B17BA6C44"));
    }

    #[test]
    fn applying_twice_restores_the_data() {
        let cm = AesCm::new(&[7; 16]);
        let iv = [3; 16];
        let original: Vec<u8> = (0..=200).collect();
        let mut data = original.clone();
        cm.apply(&iv, &mut data);
        assert_ne!(data, original);
        cm.apply(&iv, &mut data);
        assert_eq!(data, original);
    }
}
