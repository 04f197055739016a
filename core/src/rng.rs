//! The seeded pseudo-random generator every machine in the core draws from.
//!
//! The core never uses global randomness: handshake bytes, SSRCs, Call-IDs, tags, branches and
//! nonces all come from a [`SeededRng`] owned by the node, so a run is reproducible from its
//! seed. The generator is the ChaCha20 keystream (RFC 8439's block function), keyed by the
//! seed: what a peer sees of it (an RTMP handshake carries 1,528 bytes of it) tells nothing
//! about what comes next, so the Call-IDs, tags and SSRCs of later calls cannot be predicted
//! from it. (SplitMix64, used before, gave its whole state away with any 8 bytes of output.)
//! The values are as unguessable as the seed; the binary seeds it from the OS.

/// ChaCha's constant words ("expand 32-byte k").
const SIGMA: [u32; 4] = [0x6170_7865, 0x3320_646e, 0x7962_2d32, 0x6b20_6574];

/// A deterministic generator: the ChaCha20 keystream under a key made from the seed.
///
/// ```
/// use siprtmp_core::rng::SeededRng;
/// let mut a = SeededRng::new(7);
/// let mut b = SeededRng::new(7);
/// assert_eq!(a.next_u64(), b.next_u64());
/// ```
#[derive(Clone)]
pub struct SeededRng {
    key: [u32; 8],
    /// The next block's number.
    counter: u64,
    /// The current block's keystream, and how much of it is used.
    block: [u32; 16],
    used: usize,
}

/// The key is left out: whoever prints a node's state learns nothing of its next values.
impl std::fmt::Debug for SeededRng {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SeededRng").finish_non_exhaustive()
    }
}

impl SeededRng {
    /// A generator whose whole output is determined by `seed`.
    pub fn new(seed: u64) -> Self {
        // The seed spread over the 256-bit key (SplitMix64 steps: distinct seeds, distinct
        // keys).
        let mut state = seed;
        let mut key = [0u32; 8];
        for pair in key.chunks_mut(2) {
            state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
            let mut z = state;
            z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
            z ^= z >> 31;
            pair[0] = z as u32;
            pair[1] = (z >> 32) as u32;
        }
        Self {
            key,
            counter: 0,
            block: [0; 16],
            used: 16,
        }
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        let low = self.next_word();
        let high = self.next_word();
        u64::from(low) | (u64::from(high) << 32)
    }

    /// The next 32 random bits.
    pub fn next_u32(&mut self) -> u32 {
        self.next_word()
    }

    fn next_word(&mut self) -> u32 {
        if self.used == self.block.len() {
            self.block = chacha20_block(&self.key, self.counter);
            self.counter = self.counter.wrapping_add(1);
            self.used = 0;
        }
        let word = self.block[self.used];
        self.used += 1;
        word
    }

    /// Fills `buf` with random bytes.
    pub fn fill(&mut self, buf: &mut [u8]) {
        for chunk in buf.chunks_mut(8) {
            let bytes = self.next_u64().to_le_bytes();
            chunk.copy_from_slice(&bytes[..chunk.len()]);
        }
    }

    /// A uniformly distributed value in `0..bound` (`bound` must be non-zero).
    pub fn below(&mut self, bound: u64) -> u64 {
        debug_assert!(bound > 0);
        // Multiply-shift reduction: bias is below 2^-64 * bound, irrelevant for identifiers.
        ((u128::from(self.next_u64()) * u128::from(bound)) >> 64) as u64
    }

    /// `len` random characters from `[a-zA-Z0-9]`, for tags, branches and Call-IDs.
    pub fn token(&mut self, len: usize) -> String {
        const ALPHABET: &[u8] = b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789";
        (0..len)
            .map(|_| ALPHABET[self.below(ALPHABET.len() as u64) as usize] as char)
            .collect()
    }
}

/// One ChaCha20 block for `key`, with a 64-bit block counter in words 12-13 and a zero nonce.
fn chacha20_block(key: &[u32; 8], counter: u64) -> [u32; 16] {
    let mut input = [0u32; 16];
    input[..4].copy_from_slice(&SIGMA);
    input[4..12].copy_from_slice(key);
    input[12] = counter as u32;
    input[13] = (counter >> 32) as u32;
    chacha20(input)
}

/// The ChaCha20 block function on a whole input state (RFC 8439, section 2.3): 20 rounds,
/// then the input added back.
fn chacha20(input: [u32; 16]) -> [u32; 16] {
    let mut x = input;
    for _ in 0..10 {
        quarter_round(&mut x, 0, 4, 8, 12);
        quarter_round(&mut x, 1, 5, 9, 13);
        quarter_round(&mut x, 2, 6, 10, 14);
        quarter_round(&mut x, 3, 7, 11, 15);
        quarter_round(&mut x, 0, 5, 10, 15);
        quarter_round(&mut x, 1, 6, 11, 12);
        quarter_round(&mut x, 2, 7, 8, 13);
        quarter_round(&mut x, 3, 4, 9, 14);
    }
    for (out, word) in x.iter_mut().zip(input) {
        *out = out.wrapping_add(word);
    }
    x
}

fn quarter_round(x: &mut [u32; 16], a: usize, b: usize, c: usize, d: usize) {
    x[a] = x[a].wrapping_add(x[b]);
    x[d] = (x[d] ^ x[a]).rotate_left(16);
    x[c] = x[c].wrapping_add(x[d]);
    x[b] = (x[b] ^ x[c]).rotate_left(12);
    x[a] = x[a].wrapping_add(x[b]);
    x[d] = (x[d] ^ x[a]).rotate_left(8);
    x[c] = x[c].wrapping_add(x[d]);
    x[b] = (x[b] ^ x[c]).rotate_left(7);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_seed_same_stream_different_seed_different_stream() {
        let mut a = SeededRng::new(1);
        let mut b = SeededRng::new(1);
        let mut c = SeededRng::new(2);
        let xs: Vec<u64> = (0..8).map(|_| a.next_u64()).collect();
        let ys: Vec<u64> = (0..8).map(|_| b.next_u64()).collect();
        let zs: Vec<u64> = (0..8).map(|_| c.next_u64()).collect();
        assert_eq!(xs, ys);
        assert_ne!(xs, zs);
    }

    #[test]
    fn below_stays_in_range_and_token_uses_alphabet() {
        let mut r = SeededRng::new(9);
        for _ in 0..1000 {
            assert!(r.below(10) < 10);
        }
        let t = r.token(32);
        assert_eq!(t.len(), 32);
        assert!(t.chars().all(|c| c.is_ascii_alphanumeric()));
    }

    #[test]
    fn the_block_function_matches_rfc_8439() {
        // RFC 8439, 2.3.2: key 00 01 .. 1f, block count 1, nonce 00:00:00:09 00:00:00:4a
        // 00:00:00:00 (the generator itself puts a counter in words 12-13 and zeros after).
        let key: [u32; 8] =
            std::array::from_fn(|i| u32::from_le_bytes(std::array::from_fn(|j| (4 * i + j) as u8)));
        let mut input = [0u32; 16];
        input[..4].copy_from_slice(&SIGMA);
        input[4..12].copy_from_slice(&key);
        input[12..].copy_from_slice(&[1, 0x0900_0000, 0x4a00_0000, 0]);
        let x = chacha20(input);
        assert_eq!(x[..4], [0xe4e7_f110, 0x1559_3bd1, 0x1fdd_0f50, 0xc471_20a3]);
        assert_eq!(
            x[12..],
            [0xd19c_12b5, 0xb94e_16de, 0xe883_d0cb, 0x4e3c_50a2]
        );
    }

    #[test]
    fn output_across_blocks_is_the_keystream_in_order() {
        let mut r = SeededRng::new(5);
        let words: Vec<u32> = (0..40).map(|_| r.next_u32()).collect();
        let key = SeededRng::new(5).key;
        let expected: Vec<u32> = (0..3).flat_map(|n| chacha20_block(&key, n)).collect();
        assert_eq!(words, expected[..40]);
    }
}
