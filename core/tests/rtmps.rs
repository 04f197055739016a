//! RTMPS in the node, in memory: rustls clients (with a CA and a server certificate made in the
//! test) publish and play through connections accepted with `Node::accept_tls`, written only
//! when the node asks (as a driver does). Every message arrives; a merged write leaves as few
//! records as the record size allows; a client that speaks plain RTMP to the TLS connection, a
//! server without a TLS configuration, a handshake that never ends and a peer that makes the
//! TLS layer hold too much are each closed with their reason; a player that does not read is
//! dropped at the backlog limit counted in encrypted bytes.

use std::collections::HashMap;
use std::io::{Read, Write};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::BytesMut;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer, ServerName};
use siprtmp_core::node::{
    CloseReason, ConnId, Event, Input, Node, NodeConfig, Output, ServerConfig,
};
use siprtmp_core::rng::SeededRng;
use siprtmp_core::rtmp::client::{ClientEvent, RtmpClient};
use siprtmp_core::rtmp::message::{type_id, RtmpMessage};

/// A CA, and a server certificate for 127.0.0.1 signed by it, made afresh.
struct Pki {
    ca: CertificateDer<'static>,
    chain: Vec<CertificateDer<'static>>,
    key: PrivateKeyDer<'static>,
}

/// ring's provider (deprecated in rustls 0.23.48 for its lack of post-quantum key exchange;
/// the binary's reasons for it are in runtime-common's README).
#[allow(deprecated)]
fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

fn pki() -> Pki {
    let ca_key = rcgen::KeyPair::generate().unwrap();
    let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    ca_params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "siprtmp test CA");
    let ca = ca_params.self_signed(&ca_key).unwrap();
    let key = rcgen::KeyPair::generate().unwrap();
    let params = rcgen::CertificateParams::new(vec!["127.0.0.1".to_owned()]).unwrap();
    let cert = params.signed_by(&key, &ca, &ca_key).unwrap();
    Pki {
        ca: ca.der().clone(),
        chain: vec![cert.der().clone()],
        key: PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der())),
    }
}

fn server_tls(pki: &Pki) -> Arc<rustls::ServerConfig> {
    let config = rustls::ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(pki.chain.clone(), pki.key.clone_key())
        .unwrap();
    Arc::new(config)
}

fn client_tls(pki: &Pki) -> Arc<rustls::ClientConfig> {
    let mut roots = rustls::RootCertStore::empty();
    roots.add(pki.ca.clone()).unwrap();
    let config = rustls::ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    Arc::new(config)
}

/// An RTMP client machine behind a rustls client connection, wired to the node.
struct TlsClient {
    conn: ConnId,
    tls: rustls::ClientConnection,
    rtmp: RtmpClient,
    /// Plaintext from the server not yet taken by the RTMP client.
    inbox: BytesMut,
    events: Vec<ClientEvent>,
    /// Stops reading from the node (a frozen player).
    frozen: bool,
    /// Bytes of every write the node asked for, as handed to the socket.
    writes: Vec<Vec<u8>>,
}

/// A node with TLS connections, each written only when the node asks for it.
struct Fixture {
    node: Node,
    now: Instant,
    pki: Pki,
    clients: Vec<TlsClient>,
    events: Vec<Event>,
    /// Connections with a `Transmit` not yet written to the end.
    dirty: Vec<ConnId>,
    closed: Vec<ConnId>,
    by_conn: HashMap<ConnId, usize>,
}

const PEER: &str = "127.0.0.1:40000";

impl Fixture {
    fn new(mut config: ServerConfig) -> Self {
        let pki = pki();
        if config.tls.is_none() {
            config.tls = Some(server_tls(&pki));
        }
        let now = Instant::now();
        let node = Node::new(
            NodeConfig {
                server: config,
                ..NodeConfig::default()
            },
            now,
            7,
        );
        Self {
            node,
            now,
            pki,
            clients: Vec::new(),
            events: Vec::new(),
            dirty: Vec::new(),
            closed: Vec::new(),
            by_conn: HashMap::new(),
        }
    }

    fn peer() -> SocketAddr {
        PEER.parse().unwrap()
    }

    /// A client over TLS to `app`; returns its index.
    fn connect(&mut self, app: &str) -> usize {
        let conn = self.node.accept_tls(self.now, Self::peer());
        let name = ServerName::try_from("127.0.0.1").unwrap();
        let tls = rustls::ClientConnection::new(client_tls(&self.pki), name).unwrap();
        let rtmp = RtmpClient::new(&mut SeededRng::new(3), app, "rtmps://127.0.0.1/app");
        self.by_conn.insert(conn, self.clients.len());
        self.clients.push(TlsClient {
            conn,
            tls,
            rtmp,
            inbox: BytesMut::new(),
            events: Vec::new(),
            frozen: false,
            writes: Vec::new(),
        });
        self.clients.len() - 1
    }

    /// Moves bytes both ways until nothing moves.
    fn pump(&mut self) {
        for _ in 0..200 {
            let mut moved = false;
            for c in 0..self.clients.len() {
                moved |= self.client_to_node(c);
            }
            moved |= self.node_outputs();
            for c in 0..self.clients.len() {
                moved |= self.node_to_client(c);
            }
            if !moved {
                return;
            }
        }
        panic!("bytes never stopped moving");
    }

    fn client_to_node(&mut self, c: usize) -> bool {
        let client = &mut self.clients[c];
        if self.closed.contains(&client.conn) {
            return false;
        }
        while let Some(bytes) = client.rtmp.take_output() {
            client.tls.writer().write_all(&bytes).unwrap();
        }
        let mut wire = Vec::new();
        while client.tls.wants_write() {
            client.tls.write_tls(&mut wire).unwrap();
        }
        if wire.is_empty() {
            return false;
        }
        let conn = client.conn;
        self.node.handle(
            self.now,
            Input::Received {
                conn,
                data: BytesMut::from(&wire[..]),
            },
        );
        true
    }

    fn node_outputs(&mut self) -> bool {
        let mut moved = false;
        while let Some(output) = self.node.poll_output() {
            moved = true;
            match output {
                Output::Transmit { conn } if !self.dirty.contains(&conn) => self.dirty.push(conn),
                Output::Close { conn } => {
                    self.write(conn, true);
                    self.closed.push(conn);
                    self.node.handle(self.now, Input::Closed { conn });
                }
                Output::Event(event) => self.events.push(event),
                _ => {}
            }
        }
        for conn in std::mem::take(&mut self.dirty) {
            moved |= self.write(conn, false);
        }
        moved
    }

    /// Writes what the node has queued for `conn` (a frozen client takes nothing, unless the
    /// connection is closing: then the tail is dropped).
    fn write(&mut self, conn: ConnId, closing: bool) -> bool {
        let Some(&c) = self.by_conn.get(&conn) else {
            return false;
        };
        if self.clients[c].frozen {
            if !closing {
                self.dirty.push(conn);
            }
            return false;
        }
        let mut wrote = false;
        loop {
            let data: Vec<u8> = self
                .node
                .queued_segments(conn)
                .flat_map(|s| s.iter().copied())
                .collect();
            if data.is_empty() {
                return wrote;
            }
            wrote = true;
            let bytes = data.len();
            let client = &mut self.clients[c];
            client.writes.push(data);
            if !closing {
                self.node.handle(self.now, Input::Drained { conn, bytes });
            }
            if closing {
                return wrote;
            }
        }
    }

    fn node_to_client(&mut self, c: usize) -> bool {
        let client = &mut self.clients[c];
        let mut moved = false;
        for write in std::mem::take(&mut client.writes) {
            moved = true;
            let mut data = &write[..];
            while !data.is_empty() {
                if client.tls.read_tls(&mut data).unwrap() == 0 {
                    break;
                }
                let state = client
                    .tls
                    .process_new_packets()
                    .expect("server records decrypt");
                let n = state.plaintext_bytes_to_read();
                let start = client.inbox.len();
                client.inbox.resize(start + n, 0);
                client
                    .tls
                    .reader()
                    .read_exact(&mut client.inbox[start..])
                    .unwrap();
            }
        }
        if !client.inbox.is_empty() {
            client
                .rtmp
                .received(&mut client.inbox)
                .expect("RTMP from the server");
        }
        while let Some(event) = client.rtmp.poll_event() {
            client.events.push(event);
        }
        moved
    }

    fn until(&mut self, c: usize, what: &str, pred: impl Fn(&ClientEvent) -> bool) -> ClientEvent {
        for _ in 0..50 {
            self.pump();
            if let Some(e) = self.clients[c].events.iter().find(|e| pred(e)) {
                return e.clone();
            }
        }
        panic!("client {c} never saw {what}: {:?}", self.clients[c].events);
    }

    fn stream(&mut self, app: &str) -> (usize, u32) {
        let c = self.connect(app);
        self.until(c, "connected", |e| *e == ClientEvent::Connected);
        self.clients[c].rtmp.create_stream();
        let ClientEvent::StreamCreated(id) = self.until(c, "a stream", |e| {
            matches!(e, ClientEvent::StreamCreated(_))
        }) else {
            unreachable!()
        };
        (c, id)
    }

    fn publisher(&mut self, name: &str) -> (usize, u32) {
        let (c, id) = self.stream("live");
        self.clients[c].rtmp.publish(id, name);
        self.until(
            c,
            "publish start",
            |e| matches!(e, ClientEvent::Status(_, s) if s == "NetStream.Publish.Start"),
        );
        (c, id)
    }

    fn player(&mut self, name: &str) -> usize {
        let (c, id) = self.stream("live");
        self.clients[c].rtmp.play(id, name, -1.0);
        self.until(
            c,
            "play start",
            |e| matches!(e, ClientEvent::Status(_, s) if s == "NetStream.Play.Start"),
        );
        c
    }

    fn media(&self, c: usize) -> Vec<(u8, u32, Vec<u8>)> {
        self.clients[c]
            .events
            .iter()
            .filter_map(|e| match e {
                ClientEvent::Media(m) if matches!(m.type_id, type_id::AUDIO | type_id::VIDEO) => {
                    Some((m.type_id, m.timestamp, m.payload.to_vec()))
                }
                _ => None,
            })
            .collect()
    }

    fn closing_reason(&self, conn: ConnId) -> Option<&CloseReason> {
        self.events.iter().find_map(|e| match e {
            Event::Closing { conn: c, reason } if *c == conn => Some(reason),
            _ => None,
        })
    }

    /// Fires every timer up to `until`, at its own deadline.
    fn advance_to(&mut self, until: Instant) {
        while let Some(deadline) = self.node.poll_timeout() {
            if deadline > until {
                break;
            }
            self.now = deadline.max(self.now);
            self.node.handle(self.now, Input::Timeout);
            self.pump();
        }
        self.now = until.max(self.now);
        self.pump();
    }
}

/// Audio and video of `size` bytes each, 20 ms apart, the first video a keyframe.
fn frames(count: u32, size: usize, stream: u32) -> Vec<RtmpMessage> {
    (0..count)
        .map(|i| {
            let (kind, first) = if i % 2 == 0 {
                (type_id::AUDIO, 0xaf)
            } else if i == 1 {
                (type_id::VIDEO, 0x17)
            } else {
                (type_id::VIDEO, 0x27)
            };
            let mut payload = vec![first, 1];
            payload.extend((0..size).map(|b| (b as u32 ^ i) as u8));
            RtmpMessage::new(kind, stream, i * 20, payload)
        })
        .collect()
}

/// TLS records in `wire` (which holds whole records): their count and content types.
fn records(wire: &[u8]) -> Vec<u8> {
    let mut kinds = Vec::new();
    let mut rest = wire;
    while rest.len() >= 5 {
        let len = usize::from(u16::from_be_bytes([rest[3], rest[4]]));
        kinds.push(rest[0]);
        rest = &rest[(5 + len).min(rest.len())..];
    }
    kinds
}

#[test]
fn a_tls_publisher_reaches_tls_players_with_every_message_in_order() {
    let mut f = Fixture::new(ServerConfig::default());
    let a = f.player("cam");
    let b = f.player("cam");
    let (p, id) = f.publisher("cam");
    let sent = frames(60, 700, id);
    for m in &sent {
        f.clients[p].rtmp.send_media(m);
        f.pump();
    }
    let expected: Vec<(u8, u32, Vec<u8>)> = sent
        .iter()
        .map(|m| (m.type_id, m.timestamp, m.payload.to_vec()))
        .collect();
    for c in [a, b] {
        assert_eq!(f.media(c), expected, "player {c}");
    }
}

/// With merged writes, a window of media for a player leaves as one write of as few records
/// as 16 KiB of plaintext each allows, not one record per message.
#[test]
fn a_merged_write_is_a_few_records_not_one_per_message() {
    let window = Duration::from_millis(100);
    let mut f = Fixture::new(ServerConfig {
        merge_writes: Some(window),
        merge_max_bytes: 1 << 20,
        ..ServerConfig::default()
    });
    let c = f.player("cam");
    let (p, id) = f.publisher("cam");
    // Sent within one window: held for the player, then written at once. (The first media
    // after a play and the first keyframe go at once; they are sent before the window.)
    let sent = frames(42, 900, id);
    for m in &sent[..2] {
        f.clients[p].rtmp.send_media(m);
        f.pump();
    }
    f.clients[c].writes.clear();
    let start = f.now;
    let mut written = Vec::new();
    for (i, m) in sent[2..].iter().enumerate() {
        f.now = start + Duration::from_millis(2 * i as u64);
        f.clients[p].rtmp.send_media(m);
        f.client_to_node(p);
        f.node_outputs();
        written.append(&mut f.clients[c].writes);
    }
    assert!(written.is_empty(), "media left before the window ended");
    let deadline = f.node.poll_timeout().expect("a flush deadline");
    f.now = deadline;
    f.node.handle(f.now, Input::Timeout);
    f.node_outputs();
    let writes = f.clients[c].writes.clone();
    assert_eq!(writes.len(), 1, "one write for the window");
    let kinds = records(&writes[0]);
    let plaintext: usize = sent[2..].iter().map(|m| m.payload.len() + 12).sum();
    assert!(kinds.iter().all(|&k| k == 23), "application data only");
    assert!(
        kinds.len() <= plaintext.div_ceil(16 * 1024) + 1,
        "{} records for {plaintext} bytes of 40 messages",
        kinds.len()
    );
    f.pump();
    let expected: Vec<(u8, u32, Vec<u8>)> = sent
        .iter()
        .map(|m| (m.type_id, m.timestamp, m.payload.to_vec()))
        .collect();
    assert_eq!(f.media(c), expected);
}

#[test]
fn plain_rtmp_on_a_tls_connection_is_closed_as_a_tls_error() {
    let mut f = Fixture::new(ServerConfig::default());
    let conn = f.node.accept_tls(f.now, Fixture::peer());
    let mut c0c1 = vec![3u8];
    c0c1.extend_from_slice(&[0; 1536]);
    f.node.handle(
        f.now,
        Input::Received {
            conn,
            data: BytesMut::from(&c0c1[..]),
        },
    );
    let mut closed = false;
    let mut written = Vec::new();
    while let Some(output) = f.node.poll_output() {
        match output {
            Output::Close { conn: c } if c == conn => {
                written.extend(f.node.queued_segments(conn).flat_map(|s| s.to_vec()));
                closed = true;
            }
            Output::Event(e) => f.events.push(e),
            _ => {}
        }
    }
    assert!(closed, "the node asked for the close");
    assert!(
        matches!(f.closing_reason(conn), Some(CloseReason::Tls { .. })),
        "{:?}",
        f.events
    );
    assert_eq!(f.closing_reason(conn).unwrap().kind(), "tls");
    // No RTMP handshake reply: at most a TLS alert record goes back.
    assert!(!written.starts_with(&[3]), "an RTMP handshake reply");
    if !written.is_empty() {
        assert_eq!(records(&written), [21], "an alert");
    }
    f.node.handle(f.now, Input::Closed { conn });
    assert_eq!(f.node.connection_count(), 0);
}

#[test]
fn without_a_tls_configuration_a_tls_connection_is_closed_at_once() {
    let now = Instant::now();
    let mut node = Node::new(NodeConfig::default(), now, 1);
    let conn = node.accept_tls(now, Fixture::peer());
    let mut reason = None;
    while let Some(output) = node.poll_output() {
        if let Output::Event(Event::Closing { reason: r, .. }) = output {
            reason = Some(r);
        }
    }
    assert!(
        matches!(reason, Some(CloseReason::Tls { .. })),
        "{reason:?}"
    );
    node.handle(now, Input::Closed { conn });
    assert_eq!(node.connection_count(), 0);
}

/// A client that starts the TLS handshake and never finishes it is closed at the handshake
/// deadline, as a slow plain handshake is.
#[test]
fn a_tls_handshake_that_never_ends_times_out() {
    let config = ServerConfig {
        handshake_timeout: Duration::from_secs(5),
        ..ServerConfig::default()
    };
    let mut f = Fixture::new(config);
    let c = f.connect("live");
    // The ClientHello goes; the client's second flight never does.
    f.client_to_node(c);
    f.node_outputs();
    f.clients[c].frozen = true;
    let start = f.now;
    f.advance_to(start + Duration::from_millis(4900));
    assert_eq!(f.closing_reason(f.clients[c].conn), None, "closed early");
    f.advance_to(start + Duration::from_secs(6));
    assert_eq!(
        f.closing_reason(f.clients[c].conn),
        Some(&CloseReason::HandshakeTimeout)
    );
}

/// Half a record announced as 16 KiB: what the TLS layer holds counts in the server's budget
/// for unfinished messages and in the connection's own.
#[test]
fn what_the_tls_layer_holds_counts_against_the_memory_limits() {
    let half_record = |n: usize| {
        let mut r = vec![22u8, 3, 1, 0x40, 0x00];
        r.resize(5 + n, 0);
        r
    };
    // The server's budget: two connections of 6 KiB each fit 16 KiB, a third does not.
    let mut f = Fixture::new(ServerConfig {
        max_total_partial_bytes: 16 * 1024,
        ..ServerConfig::default()
    });
    let conns: Vec<ConnId> = (0..3)
        .map(|_| f.node.accept_tls(f.now, Fixture::peer()))
        .collect();
    for &conn in &conns {
        f.node.handle(
            f.now,
            Input::Received {
                conn,
                data: BytesMut::from(&half_record(6 * 1024)[..]),
            },
        );
        f.node_outputs();
    }
    assert_eq!(f.closing_reason(conns[0]), None);
    assert_eq!(f.closing_reason(conns[1]), None);
    assert_eq!(
        f.closing_reason(conns[2]),
        Some(&CloseReason::UnfinishedMessagesBudget { budget: 16 * 1024 })
    );
    // A closed connection gives its share back: a new one fits again.
    f.node.handle(f.now, Input::Closed { conn: conns[0] });
    let next = f.node.accept_tls(f.now, Fixture::peer());
    f.node.handle(
        f.now,
        Input::Received {
            conn: next,
            data: BytesMut::from(&half_record(6 * 1024)[..]),
        },
    );
    f.node_outputs();
    assert_eq!(f.closing_reason(next), None);

    // The connection's own limit.
    let mut config = ServerConfig::default();
    config.chunk_limits.max_partial_bytes = 4 * 1024;
    let mut f = Fixture::new(config);
    let conn = f.node.accept_tls(f.now, Fixture::peer());
    f.node.handle(
        f.now,
        Input::Received {
            conn,
            data: BytesMut::from(&half_record(5 * 1024)[..]),
        },
    );
    f.node_outputs();
    assert!(
        matches!(f.closing_reason(conn), Some(CloseReason::ChunkStream(_))),
        "{:?}",
        f.events
    );
}

/// A TLS player that stops reading: its backlog (records and plaintext not sealed yet) passes
/// the hard limit and it is dropped, while the other TLS player gets everything.
#[test]
fn a_tls_player_that_never_reads_is_dropped_at_the_backlog_limit() {
    let mut f = Fixture::new(ServerConfig {
        player_soft_backlog: 16 * 1024,
        player_hard_backlog: 64 * 1024,
        ..ServerConfig::default()
    });
    let good = f.player("cam");
    let slow = f.player("cam");
    let (p, id) = f.publisher("cam");
    f.clients[slow].frozen = true;
    let sent = frames(200, 1200, id);
    for m in &sent {
        f.clients[p].rtmp.send_media(m);
        f.pump();
    }
    assert_eq!(
        f.closing_reason(f.clients[slow].conn),
        Some(&CloseReason::PlayerBacklog { limit: 64 * 1024 })
    );
    assert_eq!(f.media(good).len(), sent.len());
}

mod hostile {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]

        /// Any bytes, in any pieces, on a TLS connection: the node never panics, never answers
        /// with anything but TLS records (no RTMP in the clear), and the connection is either
        /// still waiting within the limits or closed for a TLS error or a limit.
        #[test]
        fn hostile_bytes_on_a_tls_connection_are_contained(
            pieces in proptest::collection::vec(
                prop_oneof![
                    proptest::collection::vec(any::<u8>(), 0..300),
                    // Something that starts like a TLS record, to get past the first byte.
                    proptest::collection::vec(any::<u8>(), 0..300).prop_map(|mut v| {
                        v.splice(0..0, [22u8, 3, 1, 1, 0]);
                        v
                    }),
                ],
                1..6,
            ),
        ) {
            let mut config = ServerConfig::default();
            config.chunk_limits.max_partial_bytes = 4096;
            let mut f = Fixture::new(config);
            let conn = f.node.accept_tls(f.now, Fixture::peer());
            let mut written = Vec::new();
            let mut closed = false;
            for piece in pieces {
                if closed {
                    break;
                }
                f.node.handle(f.now, Input::Received { conn, data: BytesMut::from(&piece[..]) });
                while let Some(output) = f.node.poll_output() {
                    match output {
                        Output::Transmit { conn: c } | Output::Close { conn: c } if c == conn => {
                            let bytes: Vec<u8> =
                                f.node.queued_segments(conn).flat_map(|s| s.to_vec()).collect();
                            let n = bytes.len();
                            written.extend(bytes);
                            f.node.handle(f.now, Input::Drained { conn, bytes: n });
                        }
                        Output::Event(Event::Closing { reason, .. }) => {
                            prop_assert!(
                                matches!(
                                    reason,
                                    CloseReason::Tls { .. } | CloseReason::ChunkStream(_)
                                ),
                                "{reason:?}"
                            );
                            closed = true;
                        }
                        _ => {}
                    }
                }
            }
            // Whatever went back is whole TLS records (handshake, alert), never RTMP.
            let mut rest = &written[..];
            while !rest.is_empty() {
                prop_assert!(rest.len() >= 5 && matches!(rest[0], 20..=23), "{:?}", &rest[..rest.len().min(8)]);
                let len = usize::from(u16::from_be_bytes([rest[3], rest[4]]));
                prop_assert!(rest.len() >= 5 + len);
                rest = &rest[5 + len..];
            }
            f.node.handle(f.now, Input::Closed { conn });
            prop_assert_eq!(f.node.connection_count(), 0);
        }
    }
}
