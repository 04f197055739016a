//! SIP messages (RFC 3261): datagrams and the stream framer. Arbitrary bytes parse or give a
//! typed error, never a panic; every typed accessor and the transport rules run on what
//! parses; a parsed message re-serialises to bytes that parse to the same message, and that
//! serialisation is a fixed point; the stream framer finds the same messages however the
//! stream is split.
#![no_main]

use bytes::BytesMut;
use libfuzzer_sys::fuzz_target;
use siprtmp_core::sip::{
    fill_received_in, parse_datagram, parse_datagram_with, response_destination, Authorization,
    Challenge, ParseLimits, SipMessage, StreamFramer, Transport,
};

fn exercise(msg: &SipMessage) {
    let h = msg.headers();
    let _ = h.call_id();
    let _ = h.cseq();
    let _ = h.from();
    let _ = h.to();
    let _ = h.contacts();
    let _ = h.routes();
    let _ = h.record_routes();
    let _ = h.content_length();
    let _ = h.content_type();
    let _ = h.max_forwards();
    let _ = h.expires();
    if let Ok(vias) = h.vias() {
        if let Some(top) = vias.first() {
            let source = "192.0.2.7:5062".parse().unwrap();
            let _ = response_destination(top, Transport::Udp, source);
            let _ = response_destination(top, Transport::Tcp, source);
        }
    }
    let mut headers = h.clone();
    let _ = fill_received_in(&mut headers, "[2001:db8::1]:5060".parse().unwrap());
    for name in ["WWW-Authenticate", "Proxy-Authenticate"] {
        for v in h.get_all(name) {
            if let Ok(c) = Challenge::parse(v) {
                let _ = c.chosen_qop();
            }
        }
    }
    for name in ["Authorization", "Proxy-Authorization"] {
        for v in h.get_all(name) {
            let _ = Authorization::parse(v);
        }
    }
}

fn frame_all(data: &[u8], piece: usize) -> (Vec<bytes::Bytes>, bool) {
    let mut framer = StreamFramer::new(ParseLimits::default());
    let mut buf = BytesMut::new();
    let mut out = Vec::new();
    for chunk in data.chunks(piece) {
        buf.extend_from_slice(chunk);
        loop {
            match framer.push(&mut buf) {
                Ok(Some(m)) => out.push(m.to_bytes()),
                Ok(None) => break,
                Err(_) => return (out, true),
            }
        }
    }
    (out, false)
}

fuzz_target!(|data: &[u8]| {
    let Some((&mode, data)) = data.split_first() else {
        return;
    };
    if let Ok(msg) = parse_datagram(data) {
        exercise(&msg);
        // Forwarded as received: the bytes after any leading CRLFs (RFC 3261 7.5), up to the
        // end of the body (a datagram's bytes past Content-Length are dropped).
        let start = data
            .iter()
            .take_while(|b| matches!(b, b'\r' | b'\n'))
            .count();
        assert!(
            data[start..].starts_with(&msg.wire_bytes()),
            "an unchanged message is not forwarded as received"
        );
        let wire = msg.to_bytes();
        // Serialising adds Content-Length when the message had none (stream transports need
        // it), so a message received at the header limit goes out one header over it: the
        // re-parse allows that one.
        let limits = ParseLimits::default();
        let one_more = ParseLimits {
            max_headers: limits.max_headers + 1,
            ..limits
        };
        let again = parse_datagram_with(&wire, &one_more).unwrap_or_else(|e| {
            panic!(
                "re-serialised message does not parse: {e:?}\n{}",
                String::from_utf8_lossy(&wire)
            )
        });
        assert_eq!(again.method(), msg.method());
        assert_eq!(again.status(), msg.status());
        assert_eq!(again.body(), msg.body());
        assert_eq!(again.to_bytes(), wire, "serialisation is not a fixed point");
    }
    let (whole, whole_err) = frame_all(data, data.len().max(1));
    let (split, split_err) = frame_all(data, usize::from(mode) + 1);
    assert_eq!(
        whole, split,
        "framed messages depend on how the stream was split"
    );
    assert_eq!(whole_err, split_err);
});
