//! [`IdHasher`]: hashing for keys the process hands out itself (connection ids, UDP socket
//! ids, poll tokens), for the maps looked up once or more per media packet.
//!
//! The standard `HashMap` hashes with SipHash-1-3, keyed at random, so that keys chosen by an
//! attacker cannot pile up in one bucket. That costs about a hundred instructions per lookup
//! (`bench-compare/results/design-figures.md`), and the gateway looks up several maps per packet. Ids that the node or a driver assigns
//! (counters, slot indexes) cannot be chosen from outside, so a multiply-xorshift is enough to
//! spread them: consecutive ids land in consecutive-looking but distinct buckets, and the top
//! bits (which the table uses as a tag) depend on every bit of the id.
//!
//! Never use it for keys that come off the wire (stream names, Call-IDs, addresses).

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};

/// A [`Hasher`] for integer ids the process assigns itself; see the module documentation.
///
/// ```
/// use siprtmp_core::id_hash::IdHashMap;
/// use siprtmp_core::node::ConnId;
/// let mut conns: IdHashMap<ConnId, &str> = IdHashMap::default();
/// conns.insert(ConnId(7), "seven");
/// assert_eq!(conns.get(&ConnId(7)), Some(&"seven"));
/// ```
#[derive(Debug, Default, Clone, Copy)]
pub struct IdHasher(u64);

/// 2^64 / golden ratio, odd: multiplying by it permutes the low bits of consecutive ids.
const K: u64 = 0x9E37_79B9_7F4A_7C15;

impl Hasher for IdHasher {
    fn finish(&self) -> u64 {
        // Fold the high half in so ids that differ only up there (a slot's generation, a
        // worker number) still differ in the low bits the table indexes with.
        (self.0 ^ (self.0 >> 32)).wrapping_mul(K)
    }

    fn write(&mut self, bytes: &[u8]) {
        // Not used by the integer ids this is for; still correct for any key.
        for &b in bytes {
            self.0 = (self.0.rotate_left(8) ^ u64::from(b)).wrapping_mul(K);
        }
        self.0 ^= bytes.len() as u64;
    }

    fn write_u64(&mut self, n: u64) {
        // One id is one write: the state is the id itself, mixed once in `finish`. A key of
        // several integers combines them FxHash-style.
        self.0 = self.0.rotate_left(26) ^ n;
    }

    fn write_usize(&mut self, n: usize) {
        self.write_u64(n as u64);
    }

    fn write_u32(&mut self, n: u32) {
        self.write_u64(u64::from(n));
    }
}

/// Builds [`IdHasher`]s (no random state: the keys are ours).
pub type IdBuildHasher = BuildHasherDefault<IdHasher>;

/// A `HashMap` keyed by ids the process assigns itself.
pub type IdHashMap<K, V> = HashMap<K, V, IdBuildHasher>;

#[cfg(test)]
mod tests {
    use super::*;
    use std::hash::{BuildHasher, Hash};

    fn hash(key: impl Hash) -> u64 {
        IdBuildHasher::default().hash_one(key)
    }

    #[test]
    fn consecutive_ids_spread_over_low_and_top_bits() {
        // 1024 consecutive ids into 1024 buckets (low 10 bits): no collisions at all.
        let mut low: Vec<u64> = (0..1024u64).map(|i| hash(i) & 1023).collect();
        low.sort_unstable();
        low.dedup();
        assert_eq!(low.len(), 1024);
        // The 7-bit tag hashbrown takes from the top takes every value.
        let mut tags: Vec<u64> = (0..1024u64).map(|i| hash(i) >> 57).collect();
        tags.sort_unstable();
        tags.dedup();
        assert_eq!(tags.len(), 128);
    }

    #[test]
    fn ids_differing_only_in_high_bits_differ_in_low_bits() {
        // A connection slot reused with a new generation (bits 32 and up).
        let a = hash(5u64);
        let b = hash(5u64 | (1 << 32));
        assert_ne!(a & 0xFFFF, b & 0xFFFF);
    }

    #[test]
    fn a_map_of_many_ids_finds_each() {
        let mut m: IdHashMap<u64, u64> = IdHashMap::default();
        for i in 0..10_000u64 {
            m.insert(i * 4 + (i << 40), i);
        }
        assert!((0..10_000u64).all(|i| m.get(&(i * 4 + (i << 40))) == Some(&i)));
        assert_eq!(m.get(&3), None);
    }
}
