//! AMF3: arbitrary bytes decode to values or an error, never a panic; whatever decodes
//! re-encodes (with the encoder's own reference tables) to bytes that decode to the same
//! values.
#![no_main]

use libfuzzer_sys::fuzz_target;
use siprtmp_core::amf::amf3::{decode_all, encode_all, Amf3Decoder};
use siprtmp_fuzz::amf_eq::same_all;

fuzz_target!(|data: &[u8]| {
    let mut input = data;
    let mut decoder = Amf3Decoder::new();
    while !input.is_empty() {
        let before = input.len();
        match decoder.decode(&mut input) {
            Ok(_) => assert!(input.len() < before, "a value decoded from no bytes"),
            Err(_) => break,
        }
    }
    let Ok(values) = decode_all(data) else {
        return;
    };
    let encoded = encode_all(&values);
    let back = decode_all(&encoded).expect("an encoding of decoded values must decode");
    assert!(
        same_all(&values, &back),
        "round trip changed the values:\n{values:?}\n{back:?}"
    );
});
