//! RTCP compound packets (RFC 3550): arbitrary bytes parse or give a typed error, never a
//! panic; a parsed compound serialises to bytes that parse to the same packets. The one
//! exception: the writer never pads, so a padded packet whose unpadded body is not a whole
//! number of 32-bit words parses but does not serialise (BadAlignment).
#![no_main]

use bytes::Bytes;
use libfuzzer_sys::fuzz_target;
use siprtmp_core::rtp::rtcp::{parse_compound, serialize_compound};
use siprtmp_core::rtp::RtcpError;

/// Whether any packet of the compound has its padding bit set.
fn padded(mut data: &[u8]) -> bool {
    while data.len() >= 4 {
        if data[0] & 0x20 != 0 {
            return true;
        }
        let len = (usize::from(u16::from_be_bytes([data[2], data[3]])) + 1) * 4;
        data = &data[len.min(data.len())..];
    }
    false
}

fuzz_target!(|data: &[u8]| {
    let Ok(packets) = parse_compound(Bytes::copy_from_slice(data)) else {
        return;
    };
    let wire = match serialize_compound(&packets) {
        Ok(wire) => wire,
        Err(RtcpError::BadAlignment) => {
            assert!(
                padded(data),
                "an unpadded compound parsed but does not serialise"
            );
            return;
        }
        Err(e) => panic!("parsed packets do not serialise: {e:?}"),
    };
    let again = parse_compound(wire).expect("serialised packets parse");
    assert_eq!(again, packets);
});
