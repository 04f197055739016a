//! AMF0: arbitrary bytes decode to values or an error, never a panic; whatever decodes
//! re-encodes to bytes that decode to the same values, and that encoding is a fixed point.
#![no_main]

use libfuzzer_sys::fuzz_target;
use siprtmp_core::amf::amf0::{decode_all, encode_all, Amf0Decoder};
use siprtmp_fuzz::amf_eq::same_all;

fuzz_target!(|data: &[u8]| {
    // The streaming decoder value by value, as command parsing uses it.
    let mut input = data;
    let mut decoder = Amf0Decoder::new();
    let mut streamed = Vec::new();
    while !input.is_empty() {
        let before = input.len();
        match decoder.decode(&mut input) {
            Ok(v) => {
                assert!(input.len() < before, "a value decoded from no bytes");
                streamed.push(v);
            }
            Err(_) => break,
        }
    }
    let Ok(values) = decode_all(data) else {
        return;
    };
    assert!(
        same_all(&values, &streamed),
        "decode_all and the streaming decoder differ"
    );
    // AMF0 writes AMF3-only values (through the avmplus marker) as their closest AMF0
    // equivalent, so the first re-encoding may normalise; from then on it must be exact.
    let once = encode_all(&values);
    let again = decode_all(&once).expect("an encoding of decoded values must decode");
    let twice = encode_all(&again);
    assert_eq!(once, twice, "encode(decode(encode(v))) != encode(v)");
    let third = decode_all(&twice).expect("decodes");
    assert!(
        same_all(&again, &third),
        "values changed across a round trip"
    );
});
