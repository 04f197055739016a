//! [`WireHasher`]: hashing for small integer keys that come off the wire (far-end addresses,
//! SSRCs) in maps looked up for every media packet.
//!
//! Such keys are chosen by whoever sends the packets, so a fixed hash would let a peer pile
//! them into one bucket (hash flooding). The standard `HashMap`'s SipHash-1-3 defends against
//! that at a cost per lookup many times a multiply's (`bench-compare/results/design-figures.md`),
//! and the gateway's shared-port routing did two per RTP datagram. This hasher is a folded multiply (the full 128-bit product of the key and
//! a secret, its halves xored), with both secrets drawn at random per map from the standard
//! library's random hash keys: a peer that cannot see the secrets cannot aim at a bucket, and
//! every bit of the key reaches both the bucket index (low bits) and the tag (top bits). It
//! takes integers only (bytes go through the same mix, 8 at a time); use SipHash for strings.

use std::collections::hash_map::RandomState;
use std::collections::HashMap;
use std::hash::{BuildHasher, Hasher};

/// The full product of `a` and `b`, its two halves folded together.
fn folded_multiply(a: u64, b: u64) -> u64 {
    let product = u128::from(a) * u128::from(b);
    (product as u64) ^ ((product >> 64) as u64)
}

/// Builds [`WireHasher`]s with one map's secrets; see the module documentation.
#[derive(Debug, Clone, Copy)]
pub(crate) struct WireBuildHasher {
    seed: u64,
    multiplier: u64,
}

impl Default for WireBuildHasher {
    /// Fresh secrets, from the standard library's per-process random keys (which it varies
    /// from one map to the next).
    fn default() -> Self {
        let random = RandomState::new();
        Self {
            seed: random.hash_one(0x5eed_u64),
            // Odd, so that multiplying by it loses no bit of the key.
            multiplier: random.hash_one(0x3417_u64) | 1,
        }
    }
}

impl BuildHasher for WireBuildHasher {
    type Hasher = WireHasher;

    fn build_hasher(&self) -> WireHasher {
        WireHasher {
            state: self.seed,
            multiplier: self.multiplier,
        }
    }
}

/// One hash in progress; see the module documentation.
#[derive(Debug, Clone, Copy)]
pub(crate) struct WireHasher {
    state: u64,
    multiplier: u64,
}

impl Hasher for WireHasher {
    fn finish(&self) -> u64 {
        // One more round so that the last integer written is mixed as well as the others.
        folded_multiply(self.state, self.multiplier)
    }

    fn write(&mut self, bytes: &[u8]) {
        for chunk in bytes.chunks(8) {
            let mut word = [0u8; 8];
            word[..chunk.len()].copy_from_slice(chunk);
            self.write_u64(u64::from_le_bytes(word));
        }
        self.write_u64(bytes.len() as u64);
    }

    fn write_u64(&mut self, n: u64) {
        self.state = folded_multiply(self.state ^ n, self.multiplier);
    }

    fn write_u128(&mut self, n: u128) {
        self.write_u64(n as u64);
        self.write_u64((n >> 64) as u64);
    }

    fn write_u32(&mut self, n: u32) {
        self.write_u64(u64::from(n));
    }

    fn write_u16(&mut self, n: u16) {
        self.write_u64(u64::from(n));
    }

    fn write_u8(&mut self, n: u8) {
        self.write_u64(u64::from(n));
    }

    fn write_usize(&mut self, n: usize) {
        self.write_u64(n as u64);
    }
}

/// A `HashMap` keyed by integers off the wire, on a per-packet path.
pub(crate) type WireHashMap<K, V> = HashMap<K, V, WireBuildHasher>;

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn a_map_finds_what_was_inserted() {
        let mut by_ssrc: WireHashMap<u32, &str> = WireHashMap::default();
        by_ssrc.insert(0x1234_5678, "call 1");
        by_ssrc.insert(0x1234_5679, "call 2");
        assert_eq!(by_ssrc.get(&0x1234_5678), Some(&"call 1"));
        assert_eq!(by_ssrc.get(&0x1234_5679), Some(&"call 2"));
        assert_eq!(by_ssrc.get(&0x1234_567a), None);
    }

    #[test]
    fn two_maps_hash_the_same_key_differently() {
        // What keeps a peer from aiming at a bucket: the secrets differ per map.
        let (a, b) = (WireBuildHasher::default(), WireBuildHasher::default());
        let keys = [0u64, 1, 0xdead_beef, u64::MAX];
        assert!(keys.iter().any(|k| a.hash_one(k) != b.hash_one(k)));
    }

    #[test]
    fn ssrcs_a_peer_picks_in_a_pattern_spread_over_buckets_and_tags() {
        // 4096 SSRCs differing only in their top bits, the worst case for a plain multiply's
        // low bits: into 4096 buckets (the low 12 bits) with few collisions, and every 7-bit
        // tag hashbrown takes from the top in use.
        let hasher = WireBuildHasher::default();
        let keys: Vec<u32> = (0..4096u32).map(|i| i << 20).collect();
        let mut buckets: Vec<u64> = keys.iter().map(|k| hasher.hash_one(k) & 4095).collect();
        buckets.sort_unstable();
        buckets.dedup();
        // A random function fills about 63 % of the buckets; a flood would fill a handful.
        assert!(buckets.len() > 2300, "{} buckets used", buckets.len());
        let mut tags: Vec<u64> = keys.iter().map(|k| hasher.hash_one(k) >> 57).collect();
        tags.sort_unstable();
        tags.dedup();
        assert_eq!(tags.len(), 128);
    }

    proptest! {
        #[test]
        fn equal_keys_hash_equal_and_a_map_finds_every_key(
            keys in proptest::collection::vec(any::<(u32, u16)>(), 0..200)
        ) {
            let mut map: WireHashMap<(u32, u16), usize> = WireHashMap::default();
            for (i, key) in keys.iter().enumerate() {
                map.insert(*key, i);
            }
            for key in &keys {
                let last = keys.iter().rposition(|k| k == key).unwrap();
                prop_assert_eq!(map.get(key), Some(&last));
            }
            let hasher = map.hasher();
            for key in &keys {
                prop_assert_eq!(hasher.hash_one(key), hasher.hash_one(*key));
            }
        }
    }
}
