//! [`ResponseRoutes`]: where a server transaction's responses go over a connection-oriented
//! transport when the connection its request came in on is gone (RFC 3261 18.2.2).
//!
//! Over TCP a response goes back on the request's connection, named by its peer address (the
//! client's ephemeral port). If that connection closes before the answer is ready (the phone
//! rang for a while, a NAT timed out, the far end reset it), sending "to the same address"
//! would mean connecting to that ephemeral port, where nobody listens. The RFC says instead:
//! open a connection to the address the request came from and the port of its top Via's
//! sent-by (5060 if none), where the client listens. This table remembers that fallback for
//! each reliable server transaction, learns which connections went away, and redirects the
//! transaction's responses (the 2xx retransmissions too) once its connection is gone.
//!
//! Entries live as long as their transaction: one per server transaction, removed when it
//! terminates, so the table is bounded by the transaction layer's own limit.

use std::collections::HashMap;
use std::net::SocketAddr;

use crate::sip::message::Request;
use crate::sip::transaction::TransactionId;
use crate::sip::transport::Transport;

/// One reliable server transaction's route.
#[derive(Debug, Clone, Copy)]
struct Route {
    /// The peer of the connection the request came in on.
    connection: SocketAddr,
    /// The request's source address with its Via's sent-by port.
    fallback: SocketAddr,
    /// The connection has closed or failed.
    gone: bool,
}

/// Response routes of reliable server transactions (see the module doc).
#[derive(Debug, Default)]
pub(super) struct ResponseRoutes {
    routes: HashMap<TransactionId, Route>,
}

impl ResponseRoutes {
    /// A request arrived on `transport` from `source` and started server transaction `id`.
    pub(crate) fn request(
        &mut self,
        id: TransactionId,
        request: &Request,
        transport: Transport,
        source: SocketAddr,
    ) {
        if !transport.is_reliable() {
            return;
        }
        let port = request
            .headers
            .top_via()
            .ok()
            .and_then(|via| via.port)
            .unwrap_or(transport.default_port());
        let fallback = SocketAddr::new(source.ip(), port);
        if fallback != source {
            self.routes.insert(
                id,
                Route {
                    connection: source,
                    fallback,
                    gone: false,
                },
            );
        }
    }

    /// The connection to `peer` closed or failed.
    pub(crate) fn connection_lost(&mut self, peer: SocketAddr) {
        for route in self.routes.values_mut() {
            if route.connection == peer {
                route.gone = true;
            }
        }
    }

    /// Where a message of transaction `id` bound for `destination` goes.
    pub(crate) fn route(&self, id: TransactionId, destination: SocketAddr) -> SocketAddr {
        match self.routes.get(&id) {
            Some(route) if route.gone && route.connection == destination => route.fallback,
            _ => destination,
        }
    }

    /// Whether transaction `id`'s messages go elsewhere now that its connection is gone.
    pub(crate) fn reroutes(&self, id: TransactionId) -> bool {
        self.routes.get(&id).is_some_and(|route| route.gone)
    }

    /// Transaction `id` is over.
    pub(crate) fn forget(&mut self, id: TransactionId) {
        self.routes.remove(&id);
    }

    /// Routes held (for tests of boundedness).
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.routes.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sip::message::SipMessage;
    use crate::sip::parser::parse_datagram;

    fn invite(via_port: Option<u16>) -> Request {
        let sent_by = via_port.map_or_else(|| "10.0.0.2".to_owned(), |p| format!("10.0.0.2:{p}"));
        let text = format!(
            "INVITE sip:alice@10.0.0.1 SIP/2.0\r\nVia: SIP/2.0/TCP {sent_by};branch=z9hG4bK1\r\n\
             From: <sip:bob@10.0.0.2>;tag=1\r\nTo: <sip:alice@10.0.0.1>\r\nCall-ID: c1\r\n\
             CSeq: 1 INVITE\r\nMax-Forwards: 70\r\nContent-Length: 0\r\n\r\n"
        );
        match parse_datagram(text.as_bytes()).unwrap() {
            SipMessage::Request(r) => r,
            SipMessage::Response(_) => unreachable!(),
        }
    }

    fn a(s: &str) -> SocketAddr {
        s.parse().unwrap()
    }

    #[test]
    fn responses_follow_the_connection_until_it_is_gone_then_the_via() {
        let mut routes = ResponseRoutes::default();
        let id = TransactionId(1);
        let source = a("10.0.0.2:40001");
        routes.request(id, &invite(Some(5070)), Transport::Tcp, source);
        assert_eq!(
            routes.route(id, source),
            source,
            "the connection while it lasts"
        );
        routes.connection_lost(a("10.0.0.9:40001"));
        assert_eq!(routes.route(id, source), source, "another connection went");
        assert!(!routes.reroutes(id));
        routes.connection_lost(source);
        assert!(routes.reroutes(id));
        assert_eq!(routes.route(id, source), a("10.0.0.2:5070"));
        routes.forget(id);
        assert_eq!(routes.route(id, source), source);
        assert_eq!(routes.len(), 0);
    }

    #[test]
    fn without_a_via_port_the_fallback_is_5060_and_udp_needs_none() {
        let mut routes = ResponseRoutes::default();
        let source = a("10.0.0.2:40001");
        routes.request(TransactionId(1), &invite(None), Transport::Tcp, source);
        routes.request(TransactionId(2), &invite(None), Transport::Udp, source);
        // A client that sends from its listening port needs no fallback either.
        routes.request(
            TransactionId(3),
            &invite(Some(40001)),
            Transport::Tcp,
            source,
        );
        assert_eq!(routes.len(), 1);
        routes.connection_lost(source);
        assert_eq!(routes.route(TransactionId(1), source), a("10.0.0.2:5060"));
        assert_eq!(routes.route(TransactionId(2), source), source);
    }
}
