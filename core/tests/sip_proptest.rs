//! Property tests for the SIP message layer: hostile bytes never panic the datagram parser or
//! the stream framer (however the stream is split), and generated messages survive
//! serialise-then-parse unchanged.

use bytes::{Bytes, BytesMut};
use proptest::prelude::*;
use siprtmp_core::sip::{
    parse_datagram, Host, Method, NameAddr, Params, Scheme, SipMessage, SipUri, StreamFramer, Uri,
    Via,
};

/// Bytes that look enough like SIP to get past the start line now and then.
fn sipish() -> impl Strategy<Value = Vec<u8>> {
    let pieces = prop::collection::vec(
        prop_oneof![
            Just(b"INVITE sip:a@b SIP/2.0\r\n".to_vec()),
            Just(b"SIP/2.0 200 OK\r\n".to_vec()),
            Just(b"Via: SIP/2.0/UDP h;branch=z9hG4bK1\r\n".to_vec()),
            Just(b"v: SIP/2.0/TCP [::1]:5060;rport\r\n".to_vec()),
            Just(b"Content-Length: 3\r\n".to_vec()),
            Just(b"l: 0\r\n".to_vec()),
            Just(b"From: \"a\\\"b\" <sip:x@y>;tag=1\r\n".to_vec()),
            Just(b"To: sip:x@y;tag=2\r\n".to_vec()),
            Just(b"m: *\r\n".to_vec()),
            Just(b"CSeq: 1 INVITE\r\n".to_vec()),
            Just(b" folded\r\n".to_vec()),
            Just(b"\r\n".to_vec()),
            Just(b"\n".to_vec()),
            Just(b"<>\";,:@%\\".to_vec()),
            prop::collection::vec(any::<u8>(), 0..16),
        ],
        0..24,
    );
    pieces.prop_map(|p| p.concat())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(1000))]

    #[test]
    fn datagram_never_panics(data in prop_oneof![sipish(), prop::collection::vec(any::<u8>(), 0..512)]) {
        if let Ok(m) = parse_datagram(&data) {
            // Whatever parses must re-serialise and parse again.
            let again = parse_datagram(&m.to_bytes()).unwrap();
            let no_length = |m: &SipMessage| -> Vec<(String, String)> {
                m.headers()
                    .iter()
                    .filter(|h| !siprtmp_core::sip::same_header(&h.name, "Content-Length"))
                    .map(|h| (h.name.clone(), h.value.clone()))
                    .collect()
            };
            prop_assert_eq!(no_length(&again), no_length(&m));
            prop_assert_eq!(again.body(), m.body());
            // Typed accessors must not panic either.
            let h = m.headers();
            let _ = (h.call_id(), h.cseq(), h.from(), h.to(), h.vias(), h.contacts());
            let _ = (h.content_length(), h.max_forwards(), h.expires());
        }
    }

    #[test]
    fn framer_never_panics_and_is_split_invariant(
        data in sipish(),
        cuts in prop::collection::vec(any::<prop::sample::Index>(), 0..8),
    ) {
        // Reference run: everything in one push loop.
        let whole = run_framer(&[&data[..]]);
        // Same bytes cut at arbitrary points.
        let mut points: Vec<usize> = cuts.iter().map(|i| i.index(data.len() + 1)).collect();
        points.sort_unstable();
        let mut pieces = Vec::new();
        let mut last = 0;
        for p in points {
            pieces.push(&data[last..p]);
            last = p;
        }
        pieces.push(&data[last..]);
        let split = run_framer(&pieces);
        prop_assert_eq!(whole, split);
    }

    #[test]
    fn request_round_trip(m in request()) {
        let wire = m.to_bytes();
        let parsed = parse_datagram(&wire).unwrap();
        prop_assert_eq!(parsed.method(), m.method());
        let (SipMessage::Request(a), SipMessage::Request(b)) = (&parsed, &m) else { unreachable!() };
        prop_assert_eq!(&a.uri, &b.uri);
        prop_assert_eq!(parsed.body(), m.body());
        assert_same_headers(&parsed, &m);
        // And through a stream.
        let mut buf = BytesMut::from(&wire[..]);
        let framed = StreamFramer::default().push(&mut buf).unwrap().unwrap();
        prop_assert_eq!(framed.headers(), parsed.headers());
    }

    #[test]
    fn response_round_trip(m in response()) {
        let parsed = parse_datagram(&m.to_bytes()).unwrap();
        prop_assert_eq!(parsed.status(), m.status());
        let (SipMessage::Response(a), SipMessage::Response(b)) = (&parsed, &m) else { unreachable!() };
        prop_assert_eq!(&a.reason, &b.reason);
        prop_assert_eq!(parsed.body(), m.body());
        assert_same_headers(&parsed, &m);
    }
}

/// Messages (as their raw bytes) or the error, from feeding `pieces` to a fresh framer.
fn run_framer(pieces: &[&[u8]]) -> Result<Vec<Bytes>, String> {
    let mut framer = StreamFramer::default();
    let mut buf = BytesMut::new();
    let mut out = Vec::new();
    for p in pieces {
        buf.extend_from_slice(p);
        loop {
            match framer.push(&mut buf) {
                Ok(Some(m)) => out.push(m.raw().unwrap().clone()),
                Ok(None) => break,
                Err(e) => return Err(e.to_string()),
            }
        }
    }
    Ok(out)
}

/// Headers equal, except that serialisation adds Content-Length.
fn assert_same_headers(parsed: &SipMessage, built: &SipMessage) {
    let p: Vec<_> = parsed
        .headers()
        .iter()
        .filter(|h| h.name != "Content-Length")
        .collect();
    let b: Vec<_> = built.headers().iter().collect();
    assert_eq!(p, b);
    assert_eq!(
        parsed.headers().content_length().unwrap(),
        Some(built.body().len())
    );
}

fn token() -> impl Strategy<Value = String> {
    "[A-Za-z0-9][A-Za-z0-9.!%*_+`'~-]{0,11}"
}

fn host() -> impl Strategy<Value = Host> {
    prop_oneof![
        "[a-z][a-z0-9-]{0,8}(\\.[a-z][a-z0-9]{0,5}){0,2}".prop_map(Host::Domain),
        any::<[u8; 4]>().prop_map(|o| Host::Ipv4(o.into())),
        any::<[u16; 8]>().prop_map(|s| Host::Ipv6(s.into())),
    ]
}

fn sip_uri() -> impl Strategy<Value = SipUri> {
    (
        any::<bool>(),
        prop::option::of("[a-zA-Z0-9_.!~*'()&=+$,;?/-]{1,10}|[a-z]{1,3}%[0-9A-F]{2}"),
        host(),
        prop::option::of(any::<u16>()),
        prop::collection::vec(
            ("[a-z][a-z0-9]{0,6}", prop::option::of("[a-zA-Z0-9.]{1,8}")),
            0..3,
        ),
        prop::collection::vec(("[a-zA-Z]{1,6}", "[a-zA-Z0-9%:]{0,6}"), 0..2),
    )
        .prop_map(|(secure, user, host, port, params, headers)| {
            let mut u = SipUri::new(if secure { Scheme::Sips } else { Scheme::Sip }, host);
            u.user = user;
            u.port = port;
            let mut p = Params::new();
            for (n, v) in &params {
                p.push(n, v.as_deref());
            }
            u.params = p;
            // `%` must start a well-formed escape; keep generated values escape-free.
            u.headers = headers
                .into_iter()
                .map(|(n, v)| (n, v.replace('%', "")))
                .collect();
            u
        })
}

fn uri() -> impl Strategy<Value = Uri> {
    prop_oneof![
        4 => sip_uri().prop_map(Uri::Sip),
        1 => "tel:\\+[0-9-]{1,12}".prop_map(Uri::Other),
    ]
}

fn name_addr() -> impl Strategy<Value = NameAddr> {
    (
        prop::option::of("[ -~\u{e9}\u{4e2d}]{0,12}"),
        uri(),
        prop::option::of(token()),
    )
        .prop_map(|(name, uri, tag)| {
            let mut a = NameAddr::new(uri);
            a.display_name = name;
            if let Some(t) = tag {
                a.params.push("tag", Some(&t));
            }
            a
        })
}

fn via() -> impl Strategy<Value = Via> {
    (
        prop_oneof![Just("UDP"), Just("TCP"), Just("TLS"), Just("WS")],
        host(),
        prop::option::of(any::<u16>()),
        token(),
        any::<bool>(),
    )
        .prop_map(|(t, h, port, branch, rport)| {
            let mut v = Via::new(t, h, port);
            v.params.push("branch", Some(&format!("z9hG4bK{branch}")));
            if rport {
                v.params.push("rport", None);
            }
            v
        })
}

fn method() -> impl Strategy<Value = Method> {
    prop_oneof![
        Just(Method::Invite),
        Just(Method::Ack),
        Just(Method::Bye),
        Just(Method::Cancel),
        Just(Method::Register),
        Just(Method::Options),
        Just(Method::Info),
        Just(Method::Update),
        Just(Method::Prack),
        Just(Method::Subscribe),
        Just(Method::Notify),
        Just(Method::Refer),
        Just(Method::Message),
        "[A-Z]{1,4}X[A-Z]{0,4}".prop_map(|s| Method::from_token(&s)),
    ]
}

/// The common header block; `cseq_method` must match the request method for requests.
fn common_headers(m: &mut SipMessage, c: &Common, cseq_method: &Method) {
    let (vias, from, to, call_id, seq, extra, _) = c;
    let h = m.headers_mut();
    for v in vias {
        h.push("Via", &v.to_string());
    }
    h.push("From", &from.to_string());
    h.push("t", &to.to_string());
    h.push("Call-ID", call_id);
    h.push("CSeq", &format!("{seq} {cseq_method}"));
    for (n, v) in extra {
        h.push(n, v);
    }
}

type Common = (
    Vec<Via>,
    NameAddr,
    NameAddr,
    String,
    u32,
    Vec<(String, String)>,
    Vec<u8>,
);

fn common() -> impl Strategy<Value = Common> {
    (
        prop::collection::vec(via(), 1..4),
        name_addr(),
        name_addr(),
        "[a-zA-Z0-9.!%*_+`'~()<>:\\\\\"/\\[\\]?{}-]{1,20}(@[a-z0-9.]{1,10})?",
        any::<u32>(),
        prop::collection::vec(("X-[A-Za-z0-9-]{1,10}", "[!-~]([ -~]{0,20}[!-~])?"), 0..4),
        prop::collection::vec(any::<u8>(), 0..64),
    )
}

fn request() -> impl Strategy<Value = SipMessage> {
    (method(), uri(), common()).prop_map(|(method, mut uri, c)| {
        // A Request-URI must not carry URI headers (RFC 3261 19.1.1).
        if let Uri::Sip(u) = &mut uri {
            u.headers.clear();
        }
        let mut m = SipMessage::request(method.clone(), uri);
        common_headers(&mut m, &c, &method);
        m.set_body(c.6.clone().into());
        m
    })
}

fn response() -> impl Strategy<Value = SipMessage> {
    (100u16..700, "([ -~]{0,20})", method(), common()).prop_map(|(status, reason, method, c)| {
        let mut m = SipMessage::response(status, &reason);
        common_headers(&mut m, &c, &method);
        m.set_body(c.6.clone().into());
        m
    })
}
