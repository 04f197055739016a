//! What a peer sees of the node's random values does not let it predict the next ones. Every
//! RTMP client is sent 1,528 random bytes in the handshake; the same generator makes the
//! gateway's Call-IDs, tags, branches and SSRCs. With a generator whose output gives its
//! state away (SplitMix64, which the node used before), one client could compute the
//! identifiers of the calls to come. Here a client tries exactly that on what it received.

use std::time::Instant;

use siprtmp_core::node::{Node, NodeConfig};
use siprtmp_core::testkit::MemoryNet;

/// The inverse of an odd constant modulo 2^64 (Newton's iteration).
fn inverse(c: u64) -> u64 {
    let mut inv = c;
    for _ in 0..6 {
        inv = inv.wrapping_mul(2u64.wrapping_sub(c.wrapping_mul(inv)));
    }
    inv
}

/// Undoes `x ^= x >> shift`.
fn unshift(y: u64, shift: u32) -> u64 {
    let mut x = y;
    for _ in 0..64 / shift {
        x = y ^ (x >> shift);
    }
    x
}

/// SplitMix64's output after the one that is `output`: the state recovered by inverting the
/// output function, stepped once.
fn splitmix_successor(output: u64) -> u64 {
    const GAMMA: u64 = 0x9E37_79B9_7F4A_7C15;
    const M1: u64 = 0xBF58_476D_1CE4_E5B9;
    const M2: u64 = 0x94D0_49BB_1331_11EB;
    let mut z = unshift(output, 31);
    z = unshift(z.wrapping_mul(inverse(M2)), 27);
    z = unshift(z.wrapping_mul(inverse(M1)), 30);
    let mut next = z.wrapping_add(GAMMA);
    next = (next ^ (next >> 30)).wrapping_mul(M1);
    next = (next ^ (next >> 27)).wrapping_mul(M2);
    next ^ (next >> 31)
}

#[test]
fn the_attack_predicts_splitmix_output() {
    // The attack itself works: on SplitMix64's own sequence it predicts every next value.
    let mut state = 12_345u64;
    let mut outputs = Vec::new();
    for _ in 0..4 {
        state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = state;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        outputs.push(z ^ (z >> 31));
    }
    for pair in outputs.windows(2) {
        assert_eq!(splitmix_successor(pair[0]), pair[1]);
    }
}

#[test]
fn a_clients_handshake_bytes_do_not_predict_the_next_random_values() {
    let now = Instant::now();
    let mut net = MemoryNet::new(Node::new(NodeConfig::default(), now, 42));
    net.keep_raw = true;
    let c = net.connect(now, "live");
    net.pump(now);
    let raw = &net.clients[c].raw;
    assert!(raw.len() > 1536, "S0 and S1 arrived");
    // S1's random part, at every alignment the generator's words could sit at.
    let random = &raw[1 + 8..1 + 1536];
    let words = |at: usize| {
        random[at..]
            .chunks_exact(8)
            .map(|w| u64::from_le_bytes(w.try_into().unwrap()))
            .collect::<Vec<_>>()
    };
    for at in 0..8 {
        let words = words(at);
        let predicted = words
            .windows(2)
            .filter(|pair| splitmix_successor(pair[0]) == pair[1])
            .count();
        assert_eq!(
            predicted, 0,
            "{predicted} words predicted from the one before"
        );
    }
}
