//! The RTMP handshake, both sides: arbitrary bytes in pieces of any size give an error or
//! progress, never a panic; the server answers C0+C1 with exactly S0+S1+S2 and completes only
//! after C2; nothing is consumed beyond the handshake.
#![no_main]

use bytes::BytesMut;
use libfuzzer_sys::fuzz_target;
use siprtmp_core::rng::SeededRng;
use siprtmp_core::rtmp::handshake::{ClientHandshake, ServerHandshake};

const C0C1: usize = 1 + 1536;
const HANDSHAKE: usize = C0C1 + 1536;

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    // Low bits: the size of the pieces the bytes arrive in; the top bit: which side.
    let piece = usize::from(mode & 0x7f) * 29 + 1;
    let mut rng = SeededRng::new(u64::from(mode));
    if mode & 0x80 == 0 {
        let mut server = ServerHandshake::new(&mut rng, 1000);
        let mut buf = BytesMut::new();
        let mut fed = 0;
        for chunk in rest.chunks(piece) {
            buf.extend_from_slice(chunk);
            fed += chunk.len();
            match server.receive(&mut buf) {
                Ok(Some(reply)) => {
                    assert_eq!(reply.len(), HANDSHAKE, "S0+S1+S2");
                    assert!(fed >= C0C1, "answered before C0+C1 arrived");
                }
                Ok(None) => {}
                Err(_) => return,
            }
            if server.is_complete() {
                let consumed = fed - buf.len();
                assert_eq!(consumed, HANDSHAKE, "complete after C0+C1+C2 exactly");
                return;
            }
        }
        assert!(
            fed < HANDSHAKE,
            "{fed} bytes fed and the handshake is not complete"
        );
    } else {
        let (mut client, c0c1) = ClientHandshake::new(&mut rng, 0, mode & 0x40 != 0);
        assert_eq!(c0c1.len(), C0C1);
        let mut buf = BytesMut::new();
        for chunk in rest.chunks(piece) {
            buf.extend_from_slice(chunk);
            match client.receive(&mut buf) {
                Ok(Some(c2)) => assert_eq!(c2.len(), 1536, "C2"),
                Ok(None) => {}
                Err(_) => return,
            }
            if client.is_complete() {
                return;
            }
        }
    }
});
