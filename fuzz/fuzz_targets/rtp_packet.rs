//! RTP packets (RFC 3550): arbitrary bytes parse or give a typed error, never a panic; a
//! parsed packet serialises to bytes that parse to the same packet.
#![no_main]

use bytes::Bytes;
use libfuzzer_sys::fuzz_target;
use siprtmp_core::rtp::RtpPacket;

fuzz_target!(|data: &[u8]| {
    let Ok(packet) = RtpPacket::parse(Bytes::copy_from_slice(data)) else {
        return;
    };
    assert!(packet.header_len() <= data.len());
    assert!(packet.payload_type < 128);
    let wire = packet.serialize().expect("a parsed packet serialises");
    assert_eq!(
        wire.len(),
        packet.len(),
        "len() differs from the serialised size"
    );
    let again = RtpPacket::parse(wire).expect("a serialised packet parses");
    assert_eq!(again, packet);
});
