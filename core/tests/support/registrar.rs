//! A SIP registrar over TCP for the gateway's in-memory tests: it answers a REGISTER without
//! valid Digest credentials (user `alice`, password [`PASSWORD`]) with 401 and a challenge, one
//! with them with 200, on the connection the request came on, and keeps every REGISTER it saw.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::time::Instant;

use bytes::BytesMut;
use siprtmp_core::sip::digest::{self, Algorithm};
use siprtmp_core::sip::{
    make_response, sent_by_of, Authorization, Challenge, Destination, Method, ParseLimits,
    SipMessage, StreamFramer, TransactionConfig, TransactionEvent, TransactionLayer, Transport,
};
use siprtmp_core::tcp::StreamId;
use siprtmp_core::testkit::MemoryNet;

/// The password the registrar takes.
pub(crate) const PASSWORD: &str = "s3cret";

/// See the module documentation.
pub(crate) struct Registrar {
    layer: TransactionLayer,
    framers: HashMap<StreamId, (StreamFramer, BytesMut)>,
    /// Every REGISTER: (stream, request text, had valid credentials).
    pub seen: Vec<(StreamId, String, bool)>,
}

impl Registrar {
    /// A registrar at `addr` (its Via sent-by).
    pub(crate) fn new(addr: SocketAddr) -> Self {
        Self {
            layer: TransactionLayer::new(TransactionConfig::new(sent_by_of(addr)), 5),
            framers: HashMap::new(),
            seen: Vec::new(),
        }
    }

    /// Bytes from the node on `stream` (the node's end at `source`); responses go back on it.
    pub(crate) fn received(
        &mut self,
        now: Instant,
        net: &mut MemoryNet,
        stream: StreamId,
        source: SocketAddr,
        data: &[u8],
    ) {
        let (framer, buf) = self
            .framers
            .entry(stream)
            .or_insert_with(|| (StreamFramer::new(ParseLimits::default()), BytesMut::new()));
        buf.extend_from_slice(data);
        let mut messages = Vec::new();
        while let Some(msg) = framer.push(buf).expect("SIP from the node") {
            messages.push(msg);
        }
        for msg in messages {
            self.layer.handle_incoming(now, msg, Transport::Tcp, source);
        }
        while let Some(ev) = self.layer.poll_event() {
            let TransactionEvent::Request { id, request, .. } = ev else {
                continue;
            };
            assert_eq!(request.method, Method::Register);
            let ok = request
                .headers
                .get("Authorization")
                .and_then(|v| Authorization::parse(v).ok())
                .is_some_and(|auth| digest::verify(&auth, &request.method, PASSWORD));
            let text = SipMessage::Request(request.clone()).to_bytes();
            self.seen
                .push((stream, String::from_utf8_lossy(&text).into_owned(), ok));
            let response = if ok {
                let mut r = make_response(&request, 200, "OK", Some("reg"));
                let expires = request.headers.expires().unwrap().unwrap_or(3600);
                let contact = request.headers.get("Contact").unwrap().to_string();
                r.headers
                    .push("Contact", &format!("{contact};expires={expires}"));
                r
            } else {
                let mut r = make_response(&request, 401, "Unauthorized", Some("reg"));
                let c = Challenge::new("tcp.test", "n0nce", Algorithm::Md5);
                r.headers.push("WWW-Authenticate", &c.to_string());
                r
            };
            self.layer.send_response(now, id, response).unwrap();
        }
        while let Some(t) = self.layer.poll_transmit() {
            assert_eq!(
                t.destination,
                Destination::Addr(source),
                "back where it came from"
            );
            net.tcp.send(stream, &t.bytes);
        }
    }

    /// Runs the registrar's transaction timers up to `now`.
    pub(crate) fn handle_timeout(&mut self, now: Instant) {
        self.layer.handle_timeout(now);
    }
}
