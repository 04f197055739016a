//! SDES `a=crypto` values (RFC 4568) and SRTP/SRTCP unprotect on arbitrary bytes.
//! Arbitrary text parses or fails, never panics; what parses prints to text that parses back
//! to the same value. Arbitrary bytes never authenticate under a key they were not made with,
//! and unprotect leaves its context as it found it (a genuine packet still goes through).
#![no_main]

use libfuzzer_sys::fuzz_target;
use siprtmp_core::sdp::CryptoAttribute;
use siprtmp_core::srtp::{MasterKey, SrtcpContext, SrtpContext, Suite};

fuzz_target!(|data: &[u8]| {
    let Some((&which, rest)) = data.split_first() else {
        return;
    };
    if which % 2 == 0 {
        let Ok(s) = std::str::from_utf8(rest) else {
            return;
        };
        if let Some(v) = CryptoAttribute::parse(s) {
            let printed = v.to_string();
            assert_eq!(
                CryptoAttribute::parse(&printed).as_ref(),
                Some(&v),
                "{s:?} printed as {printed:?} parses differently"
            );
        }
        return;
    }
    let key = MasterKey::from_concatenated(&[0x5a; MasterKey::LEN]).unwrap();
    let suite = if which & 2 == 0 {
        Suite::AesCm128HmacSha1_80
    } else {
        Suite::AesCm128HmacSha1_32
    };
    let mut rx = SrtpContext::new(suite, &key);
    assert!(rx.unprotect(&mut rest.to_vec()).is_err());
    let mut rtcp = SrtcpContext::new(&key);
    assert!(rtcp.unprotect(&mut rest.to_vec()).is_err());
    // A genuine packet after the hostile one authenticates.
    let mut tx = SrtpContext::new(suite, &key);
    let mut packet = vec![0x80, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 7, 1, 2, 3];
    let len = packet.len();
    packet.resize(len + 10, 0);
    let n = tx.protect(&mut packet, len).unwrap();
    assert_eq!(rx.unprotect(&mut packet[..n]), Ok(len));
});
