//! Runs a [`Script`] against a whole [`Node`] as a driver would (runtime-common's host loop and
//! core's testkit are the models), and checks that what the node asks of its driver is
//! well-formed. A violated expectation panics, which libFuzzer reports as a crash.
//!
//! What is checked, after every operation:
//! - every `Transmit` and `Close` names a connection that is open (accepted, and not yet
//!   reported `Closed`); no event names a connection after its `Disconnected`, and each one
//!   gets exactly one `Disconnected`;
//! - the node's connection count matches the harness's; what `queued_segments` holds adds up
//!   to `queued_bytes`, and no connection has more queued than the configured hard backlog
//!   allows (plus one message of slack);
//! - file requests keep the executor's contract (`Open` first with a safe relative path,
//!   nothing after `Close`); UDP sends and unbinds name sockets that were bound;
//! - the node settles: outputs stop without new input, and a timer due now does not stay due
//!   after `Timeout` (a driver would spin).
//!
//! At the end every connection is closed and time runs on: every file opened (its `Open`
//! succeeded) is closed and every UDP socket is released (unless media ports are shared, which stay by design).

use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use siprtmp_core::amf::Value;
use siprtmp_core::node::{AppConfig, GatewayNodeConfig, RecordPolicy};
use siprtmp_core::node::{
    ConnId, Decision, Event, FileError, FileId, Input, Node, NodeConfig, Output, RequestId,
};
use siprtmp_core::rng::SeededRng;
use siprtmp_core::rtmp::client::RtmpClient;
use siprtmp_core::rtmp::handshake::ClientHandshake;
use siprtmp_core::rtmp::message::{type_id, RtmpMessage};
use siprtmp_core::sdp::offer_answer::{answer, create_offer};
use siprtmp_core::sdp::{Codec, LocalCapabilities, MediaCapability, Origin, SessionDescription};
use siprtmp_core::sip::ua::{CallId, UaConfig, UaEvent, UserAgent};
use siprtmp_core::storage::{is_safe_relative_path, FileErrorKind, FileOp, FileRequest};
use siprtmp_core::tcp::{TcpCommand, TcpEvent};
use siprtmp_core::testkit::MemoryFs;
use siprtmp_core::udp::{SocketId, UdpCommand, UdpEvent};

use crate::node_ops::{Answer, App, Command, FileAnswer, MediaKind, Op, Peer, Script, Setup};

/// At most this many connections are open at once (each may hold up to the hard backlog).
pub const MAX_CONNS: usize = 12;
/// Hard backlog of the harness's node (small, so memory bounds are tight).
pub const HARD_BACKLOG: usize = 1 << 20;
/// Largest RTMP message the node accepts in the harness.
pub const MAX_MESSAGE: u32 = 512 * 1024;

const NODE_IP: [u8; 4] = [10, 0, 0, 1];
const FAR_SIP: ([u8; 4], u16) = ([10, 0, 0, 2], 5060);
const FAR_RTP: ([u8; 4], u16) = ([10, 0, 0, 2], 6000);
const FAR_VIDEO: ([u8; 4], u16) = ([10, 0, 0, 2], 6002);
const STRANGER: ([u8; 4], u16) = ([10, 0, 0, 66], 7000);
/// Stream names: two of the live server's, and the two the gateway gives a meaning to.
pub const NAMES: [&str; 4] = ["a", "b", "local", "remote"];
/// Codec lists a gateway client may ask for (the client API's tokens; one unknown).
pub const CODECS: [&[&str]; 8] = [
    &["pcmu"],
    &["pcma"],
    &["wideband"],
    &["narrowband"],
    &["wideband", "h264"],
    &["pcmu", "h264"],
    &["flv"],
    &["opus"],
];
/// Rounds of moving bytes after which a node that still produces output is declared stuck.
const MAX_ROUNDS: usize = 2000;

fn addr(a: ([u8; 4], u16)) -> SocketAddr {
    SocketAddr::from(a)
}

/// The node configuration of a setup: production defaults with small memory limits.
pub fn node_config(setup: &Setup) -> NodeConfig {
    let mut config = NodeConfig {
        decisions: setup.decisions,
        ..NodeConfig::default()
    };
    let s = &mut config.server;
    s.chunk_limits.max_message_size = MAX_MESSAGE;
    s.chunk_limits.max_partial_bytes = 2 * MAX_MESSAGE as usize;
    s.chunk_limits.max_chunk_streams = 16;
    s.player_soft_backlog = HARD_BACKLOG / 4;
    s.player_hard_backlog = HARD_BACKLOG;
    s.max_gop_cache_bytes = HARD_BACKLOG;
    s.max_record_backlog = HARD_BACKLOG;
    s.vod_read_size = 16 * 1024;
    if setup.merge_writes {
        s.merge_writes = Some(Duration::from_millis(50));
    }
    if setup.record_all {
        s.apps.insert(
            "live".into(),
            AppConfig {
                record: RecordPolicy::All,
                ..AppConfig::default()
            },
        );
    }
    if setup.gateway {
        s.gateway = Some(GatewayNodeConfig {
            bind_ip: NODE_IP.into(),
            rtp_ports: (20000, 20099),
            shared_rtp_ports: setup.shared_rtp_ports,
            ..GatewayNodeConfig::default()
        });
    }
    config
}

struct Conn {
    id: ConnId,
    /// The harness's client, for connections opened with an application (dropped when it
    /// fails on what the node sent, as after raw bytes it did not send).
    client: Option<RtmpClient>,
    inbox: BytesMut,
}

/// A file's requests not yet answered, and what has been asked of it.
#[derive(Default)]
struct FileState {
    pending: VecDeque<FileRequest>,
    /// Its `Open` succeeded (a file whose open failed needs no `Close`).
    opened: bool,
    closed: bool,
}

/// The driver around the node.
pub struct Harness {
    now: Instant,
    node: Node,
    setup: Setup,
    rng: SeededRng,
    conns: Vec<Conn>,
    known: HashSet<ConnId>,
    open: HashSet<ConnId>,
    disconnected: HashSet<ConnId>,
    fs: MemoryFs,
    files: BTreeMap<FileId, FileState>,
    /// Bound UDP sockets and their addresses.
    sockets: BTreeMap<SocketId, SocketAddr>,
    /// Every socket the node asked to bind.
    requested: HashSet<SocketId>,
    next_port: u16,
    far: Option<UserAgent>,
    far_calls: Vec<CallId>,
    /// A gateway user's SIP address, by address of record.
    gateway_sip: HashMap<String, SocketAddr>,
    questions: Vec<RequestId>,
    next_peer_port: u16,
    /// Print every operation and output (`SIPRTMP_FUZZ_TRACE=1`, for reproducing a crash).
    trace: bool,
}

impl Harness {
    /// A node for `setup` at a fixed epoch.
    pub fn new(setup: Setup) -> Self {
        let now = Instant::now();
        let node = Node::new(node_config(&setup), now, 7);
        let far = setup.gateway.then(|| {
            UserAgent::new(
                UaConfig::new("sip:bob@10.0.0.2".parse().unwrap(), addr(FAR_SIP)),
                3,
            )
        });
        Harness {
            now,
            node,
            setup,
            rng: SeededRng::new(11),
            conns: Vec::new(),
            known: HashSet::new(),
            open: HashSet::new(),
            disconnected: HashSet::new(),
            fs: MemoryFs::default(),
            files: BTreeMap::new(),
            sockets: BTreeMap::new(),
            requested: HashSet::new(),
            next_port: 30000,
            far,
            far_calls: Vec::new(),
            gateway_sip: HashMap::new(),
            questions: Vec::new(),
            next_peer_port: 40000,
            trace: std::env::var_os("SIPRTMP_FUZZ_TRACE").is_some(),
        }
    }

    fn open_conn(&self, pick: u8) -> Option<usize> {
        let open: Vec<usize> = (0..self.conns.len())
            .filter(|&i| self.open.contains(&self.conns[i].id))
            .collect();
        (!open.is_empty()).then(|| open[usize::from(pick) % open.len()])
    }

    fn client_conn(&self, pick: u8) -> Option<usize> {
        let with: Vec<usize> = (0..self.conns.len())
            .filter(|&i| self.open.contains(&self.conns[i].id) && self.conns[i].client.is_some())
            .collect();
        (!with.is_empty()).then(|| with[usize::from(pick) % with.len()])
    }

    fn receive(&mut self, conn: ConnId, data: &[u8]) {
        self.node.handle(
            self.now,
            Input::Received {
                conn,
                data: BytesMut::from(data),
            },
        );
    }

    /// Takes up to `max` queued bytes of connection `i` (all with `usize::MAX`), as the
    /// kernel would, and gives them to its client, if any.
    fn drain(&mut self, i: usize, max: usize) -> usize {
        let id = self.conns[i].id;
        let mut taken = 0;
        while taken < max {
            let segs: Vec<Bytes> = self.node.queued_segments(id).cloned().collect();
            if segs.is_empty() {
                break;
            }
            let mut n = 0;
            for s in &segs {
                let room = max - taken - n;
                if room == 0 {
                    break;
                }
                let k = s.len().min(room);
                self.conns[i].inbox.extend_from_slice(&s[..k]);
                n += k;
            }
            if n == 0 {
                break;
            }
            self.node
                .handle(self.now, Input::Drained { conn: id, bytes: n });
            taken += n;
        }
        let c = &mut self.conns[i];
        match &mut c.client {
            Some(client) => {
                if client.received(&mut c.inbox).is_ok() {
                    while client.poll_event().is_some() {}
                } else {
                    c.client = None;
                }
            }
            None => c.inbox.clear(),
        }
        taken
    }

    /// Moves bytes between the node, the clients and bob until nothing moves.
    fn pump(&mut self) {
        for _ in 0..MAX_ROUNDS {
            let mut moved = false;
            while let Some(out) = self.node.poll_output() {
                moved = true;
                self.output(out);
            }
            moved |= self.far_exchange();
            for i in 0..self.conns.len() {
                let id = self.conns[i].id;
                if !self.open.contains(&id) {
                    continue;
                }
                let mut sent = Vec::new();
                if let Some(client) = &mut self.conns[i].client {
                    while let Some(b) = client.take_output() {
                        sent.push(b);
                    }
                    if self.drain(i, usize::MAX) > 0 {
                        moved = true;
                    }
                }
                for b in sent {
                    moved = true;
                    self.receive(id, &b);
                }
            }
            if !moved {
                return;
            }
        }
        panic!("the node never settles: output keeps coming without new input");
    }

    fn far_exchange(&mut self) -> bool {
        let Some(far) = &mut self.far else {
            return false;
        };
        let mut moved = false;
        let mut to_node = Vec::new();
        while let Some((to, data)) = far.poll_transmit() {
            to_node.push((to, data));
        }
        let mut events = Vec::new();
        while let Some(e) = far.poll_event() {
            events.push(e);
        }
        for (to, data) in to_node {
            moved = true;
            if let Some((&socket, _)) = self.sockets.iter().find(|(_, a)| **a == to) {
                self.node.handle(
                    self.now,
                    Input::Udp(UdpEvent::Datagram {
                        socket,
                        source: addr(FAR_SIP),
                        data,
                    }),
                );
            }
        }
        for e in events {
            moved = true;
            if let UaEvent::IncomingCall { call, offer, .. } = e {
                self.far_calls.push(call);
                self.far_answer(call, offer);
            }
        }
        moved
    }

    fn far_caps(&self) -> LocalCapabilities {
        let audio = if self.setup.wideband {
            Codec::new(96, "speex", 16000, None)
        } else {
            Codec::new(0, "PCMU", 8000, None)
        };
        let mut media = vec![MediaCapability::new(
            "audio",
            FAR_RTP.1,
            vec![audio, Codec::new(101, "telephone-event", 8000, None)],
        )];
        if self.setup.wideband {
            media.push(MediaCapability::new(
                "video",
                FAR_VIDEO.1,
                vec![Codec::new(97, "H264", 90000, None)],
            ));
        }
        LocalCapabilities {
            address: addr(FAR_RTP).ip(),
            session_name: "bob".into(),
            media,
        }
    }

    fn origin() -> Origin {
        Origin {
            username: "-".into(),
            session_id: 1,
            session_version: 1,
            nettype: "IN".into(),
            addrtype: "IP4".into(),
            address: "10.0.0.2".into(),
        }
    }

    /// Bob answers a call with what he supports, or rejects it.
    fn far_answer(&mut self, call: CallId, offer: Option<Bytes>) {
        let caps = self.far_caps();
        let far = self.far.as_mut().expect("bob");
        let now = self.now;
        let sdp = offer
            .and_then(|o| SessionDescription::parse(&o).ok())
            .and_then(|o| answer(&o, &caps, &Self::origin()).ok());
        let _ = far.ringing(now, call);
        match sdp {
            Some(sdp) => {
                let _ = far.answer(now, call, Bytes::from(sdp.serialize()));
            }
            None => {
                let _ = far.reject(now, call, 488, "Not Acceptable Here");
            }
        }
    }

    fn check_conn_event(&self, conn: ConnId, what: &Event) {
        assert!(
            self.known.contains(&conn),
            "event about unknown {conn}: {what:?}"
        );
        assert!(
            !self.disconnected.contains(&conn),
            "event about {conn} after its Disconnected: {what:?}"
        );
    }

    fn output(&mut self, out: Output) {
        if self.trace {
            match &out {
                Output::Udp(UdpCommand::SendTo {
                    socket,
                    destination,
                    head,
                    body,
                }) => eprintln!(
                    "  < udp {socket:?} -> {destination}: {} bytes",
                    head.len() + body.len()
                ),
                other => eprintln!("  < {other:?}"),
            }
        }
        match out {
            Output::Transmit { conn } => {
                assert!(self.open.contains(&conn), "Transmit for {conn}, not open");
            }
            Output::Close { conn } => {
                assert!(self.open.contains(&conn), "Close for {conn}, not open");
                // As a driver does: write what is queued, then close and report it.
                if let Some(i) = self.conns.iter().position(|c| c.id == conn) {
                    self.drain(i, usize::MAX);
                }
                self.open.remove(&conn);
                self.node.handle(self.now, Input::Closed { conn });
            }
            Output::File(request) => self.file_request(request),
            Output::Udp(command) => self.udp(command),
            Output::Tcp(command) => match command {
                TcpCommand::Connect { stream, .. } => self.node.handle(
                    self.now,
                    Input::Tcp(TcpEvent::ConnectFailed {
                        stream,
                        error: "Connection refused".into(),
                    }),
                ),
                TcpCommand::Listen { listener, .. } => self.node.handle(
                    self.now,
                    Input::Tcp(TcpEvent::Listening {
                        listener,
                        result: Err("not in the harness".into()),
                    }),
                ),
                _ => {}
            },
            Output::Relay(r) => panic!("relay output from a node that is no worker: {r:?}"),
            Output::Event(event) => self.event(event),
            other => panic!("an output the harness does not know: {other:?}"),
        }
    }

    fn event(&mut self, event: Event) {
        match &event {
            Event::Connected { conn, .. }
            | Event::PublishStarted { conn, .. }
            | Event::PublishStopped { conn, .. }
            | Event::PlayStarted { conn, .. }
            | Event::Gateway { conn, .. }
            | Event::Closing { conn, .. }
            | Event::RecordStarted { conn, .. } => self.check_conn_event(*conn, &event),
            Event::GatewayBound { conn, aor, sip, .. } => {
                self.check_conn_event(*conn, &event);
                self.gateway_sip.insert(aor.clone(), *sip);
            }
            Event::Disconnected { conn } => {
                self.check_conn_event(*conn, &event);
                assert!(
                    !self.open.contains(conn),
                    "Disconnected for {conn} before the driver reported it closed"
                );
                self.disconnected.insert(*conn);
            }
            Event::Decide { request, .. } => {
                assert!(self.setup.decisions, "a question with decisions off");
                self.questions.push(*request);
            }
            Event::RecordStopped { .. } | Event::UnroutedMedia { .. } => {}
            other => panic!("an event the harness does not know: {other:?}"),
        }
    }

    fn file_request(&mut self, request: FileRequest) {
        let state = self.files.entry(request.file).or_default();
        assert!(
            !state.closed,
            "request for {} after its Close: {request:?}",
            request.file
        );
        let fresh = state.pending.is_empty() && !self.fs.log.iter().any(|r| r.file == request.file);
        match &request.op {
            FileOp::Open { path, .. } => {
                assert!(fresh, "second Open of {}: {request:?}", request.file);
                assert!(is_safe_relative_path(path), "unsafe path {path:?}");
            }
            _ => assert!(!fresh, "{} used before its Open: {request:?}", request.file),
        }
        if matches!(request.op, FileOp::Close | FileOp::Remove) {
            state.closed = true;
        }
        state.pending.push_back(request);
    }

    /// Answers the oldest request of file number `which` among those with requests pending.
    fn answer_file(&mut self, which: u8, how: FileAnswer<'_>) {
        let ids: Vec<FileId> = self
            .files
            .iter()
            .filter(|(_, s)| !s.pending.is_empty())
            .map(|(id, _)| *id)
            .collect();
        if ids.is_empty() {
            return;
        }
        let id = ids[usize::from(which) % ids.len()];
        let request = self
            .files
            .get_mut(&id)
            .unwrap()
            .pending
            .pop_front()
            .unwrap();
        let result = match (how, &request.op) {
            (_, FileOp::Close) => self.fs.execute(&request),
            (FileAnswer::Fail, _) => {
                self.fs.log.push(request.clone());
                Err(FileError::new(FileErrorKind::Other, "injected failure"))
            }
            (FileAnswer::Bytes(data), FileOp::Read { len, .. }) => {
                self.fs.log.push(request.clone());
                let n = data.0.len().min(*len);
                Ok(siprtmp_core::node::FileReply::Read(Bytes::copy_from_slice(
                    &data.0[..n],
                )))
            }
            _ => self.fs.execute(&request),
        };
        if matches!(request.op, FileOp::Open { .. }) && result.is_ok() {
            self.files.get_mut(&id).unwrap().opened = true;
        }
        self.node
            .handle(self.now, Input::FileDone { file: id, result });
    }

    fn udp(&mut self, command: UdpCommand) {
        match command {
            UdpCommand::Bind {
                socket, mut addr, ..
            } => {
                self.requested.insert(socket);
                assert!(
                    !self.sockets.contains_key(&socket),
                    "{socket:?} bound twice"
                );
                if addr.port() == 0 {
                    self.next_port += 1;
                    addr.set_port(self.next_port);
                }
                let result = if self.sockets.values().any(|a| *a == addr) {
                    Err(format!("{addr}: address in use"))
                } else {
                    self.sockets.insert(socket, addr);
                    Ok(addr)
                };
                self.node
                    .handle(self.now, Input::Udp(UdpEvent::Bound { socket, result }));
            }
            UdpCommand::SendTo {
                socket,
                destination,
                head,
                body,
            } => {
                let Some(&from) = self.sockets.get(&socket) else {
                    panic!("send on {socket:?}, which is not bound");
                };
                let mut data = BytesMut::from(&head[..]);
                data.extend_from_slice(&body);
                let data = data.freeze();
                if destination == addr(FAR_SIP) {
                    if let Some(far) = &mut self.far {
                        far.handle_datagram(self.now, from, data);
                    }
                } else if let Some((&to, _)) = self.sockets.iter().find(|(_, a)| **a == destination)
                {
                    self.node.handle(
                        self.now,
                        Input::Udp(UdpEvent::Datagram {
                            socket: to,
                            source: from,
                            data,
                        }),
                    );
                }
            }
            UdpCommand::Unbind { socket } => {
                assert!(
                    self.requested.contains(&socket),
                    "unbind of unknown {socket:?}"
                );
                self.sockets.remove(&socket);
            }
        }
    }

    fn open(&mut self, handshake: bool, app: App) {
        if self.open.len() >= MAX_CONNS {
            return;
        }
        self.next_peer_port += 1;
        let peer = SocketAddr::from(([127, 0, 0, 1], self.next_peer_port));
        let id = self.node.accept(self.now, peer);
        assert!(self.known.insert(id), "connection id {id} reused");
        self.open.insert(id);
        let app_name = match app {
            App::None => None,
            App::Live => Some("live".to_string()),
            App::Vod => Some("vod".to_string()),
            App::Gateway { user } => Some(format!("sip/user{}@10.0.0.1", user % 4)),
            App::Other => Some("elsewhere".to_string()),
        };
        let client = match (&app_name, handshake) {
            (Some(name), true) => Some(RtmpClient::new(
                &mut self.rng,
                name,
                &format!("rtmp://10.0.0.1/{name}"),
            )),
            _ => None,
        };
        self.conns.push(Conn {
            id,
            client,
            inbox: BytesMut::new(),
        });
        if handshake && app_name.is_none() {
            // A valid C0/C1/C2 by hand; what follows is the fuzzer's.
            let (mut hs, c0c1) = ClientHandshake::new(&mut self.rng, 0, false);
            self.receive(id, &c0c1);
            self.pump();
            if !self.open.contains(&id) {
                return;
            }
            let mut s = BytesMut::new();
            for seg in self.node.queued_segments(id) {
                s.extend_from_slice(seg);
            }
            let n = s.len();
            self.node
                .handle(self.now, Input::Drained { conn: id, bytes: n });
            if let Ok(Some(c2)) = hs.receive(&mut s) {
                self.receive(id, &c2);
            }
        }
        self.pump();
    }

    fn command(&mut self, pick: u8, command: Command) {
        let Some(i) = self.client_conn(pick) else {
            return;
        };
        let client = self.conns[i].client.as_mut().unwrap();
        let s = |x: &str| Value::string(x);
        match command {
            Command::CreateStream => client.create_stream(),
            Command::Publish { stream, name } => client.publish(
                u32::from(stream % 4),
                NAMES[usize::from(name) % NAMES.len()],
            ),
            Command::Play {
                stream,
                name,
                start,
            } => client.play(
                u32::from(stream % 4),
                NAMES[usize::from(name) % NAMES.len()],
                f64::from(start),
            ),
            Command::Pause { stream, pause, ms } => client.call(
                u32::from(stream % 4),
                "pause",
                vec![Value::Boolean(pause), Value::Number(f64::from(ms))],
            ),
            Command::Seek { stream, ms } => client.call(
                u32::from(stream % 4),
                "seek",
                vec![Value::Number(f64::from(ms))],
            ),
            Command::CloseStream { stream, delete } => {
                if delete {
                    client.call(
                        0,
                        "deleteStream",
                        vec![Value::Number(f64::from(stream % 4))],
                    )
                } else {
                    client.call(u32::from(stream % 4), "closeStream", vec![])
                }
            }
            Command::Invite { codec } => {
                let mut args = vec![s("bob@10.0.0.2:5060")];
                args.extend(
                    CODECS[usize::from(codec) % CODECS.len()]
                        .iter()
                        .map(|c| s(c)),
                );
                args.push(s("dtmf"));
                client.call(0, "invite", args)
            }
            Command::Accept { codec } => {
                let args = CODECS[usize::from(codec) % CODECS.len()]
                    .iter()
                    .map(|c| s(c));
                client.call(0, "accept", args.collect())
            }
            Command::Reject => client.call(0, "reject", vec![s("busy")]),
            Command::Bye => client.call(0, "bye", vec![]),
            Command::Dtmf { digit } => {
                let digits = "0123456789*#ABCDx";
                let d = usize::from(digit) % digits.len();
                client.call(0, "sendDTMF", vec![s(&digits[d..d + 1])])
            }
            Command::Hold { on } => client.call(0, "hold", vec![Value::Boolean(on)]),
        }
        self.pump();
    }

    fn far_call(&mut self, user: u8) {
        if self.far.is_none() || self.gateway_sip.is_empty() {
            return;
        }
        let mut aors: Vec<(&String, &SocketAddr)> = self.gateway_sip.iter().collect();
        aors.sort();
        let (aor, sip) = aors[usize::from(user) % aors.len()];
        let user = aor.split('@').next().unwrap_or("x");
        let target = format!("sip:{user}@{sip}").parse();
        let offer = create_offer(&self.far_caps(), &Self::origin()).serialize();
        if let (Ok(target), Some(far)) = (target, &mut self.far) {
            if let Ok(call) = far.invite(self.now, target, Bytes::from(offer)) {
                self.far_calls.push(call);
            }
        }
        self.pump();
    }

    /// Time passes by `by`; due timers of the node and bob fire.
    fn advance(&mut self, by: Duration) {
        self.now += by;
        let mut spins = 0;
        while self.node.poll_timeout().is_some_and(|t| t <= self.now) {
            spins += 1;
            assert!(
                spins < 100,
                "a timer stays due after Timeout: the driver would spin"
            );
            self.node.handle(self.now, Input::Timeout);
            self.pump();
        }
        if let Some(far) = &mut self.far {
            if far.poll_timeout().is_some_and(|t| t <= self.now) {
                far.handle_timeout(self.now);
            }
        }
        self.pump();
    }

    /// Runs one operation.
    pub fn step(&mut self, op: Op<'_>) {
        if self.trace {
            eprintln!("> {op:?}");
        }
        match op {
            Op::Open { handshake, app } => self.open(handshake, app),
            Op::Receive { conn, data } => {
                if let Some(i) = self.open_conn(conn) {
                    let id = self.conns[i].id;
                    // The fuzzer's bytes desynchronise the harness's client from the node.
                    self.conns[i].client = None;
                    self.receive(id, data.0);
                }
            }
            Op::Command { conn, command } => self.command(conn, command),
            Op::Media {
                conn,
                kind,
                stream,
                timestamp,
                body,
            } => {
                if let Some(i) = self.client_conn(conn) {
                    let t = match kind {
                        MediaKind::Audio => type_id::AUDIO,
                        MediaKind::Video => type_id::VIDEO,
                        MediaKind::Data => type_id::DATA_AMF0,
                        MediaKind::Aggregate => type_id::AGGREGATE,
                    };
                    let msg = RtmpMessage::new(
                        t,
                        u32::from(stream % 4),
                        u32::from(timestamp),
                        Bytes::copy_from_slice(body.0),
                    );
                    self.conns[i].client.as_mut().unwrap().send_media(&msg);
                }
            }
            Op::Drain { conn, max } => {
                if let Some(i) = self.open_conn(conn) {
                    let max = if max == 0 {
                        usize::MAX
                    } else {
                        usize::from(max)
                    };
                    self.drain(i, max);
                }
            }
            Op::Close { conn } => {
                if let Some(i) = self.open_conn(conn) {
                    let id = self.conns[i].id;
                    self.open.remove(&id);
                    self.node.handle(self.now, Input::Closed { conn: id });
                }
            }
            Op::Advance { ms } => self.advance(Duration::from_millis(u64::from(ms))),
            Op::File { which, answer } => self.answer_file(which, answer),
            Op::PutFile { name, data } => {
                let name = NAMES[usize::from(name) % NAMES.len()];
                for app in ["live", "vod"] {
                    self.fs
                        .files
                        .insert(format!("{app}/{name}.flv"), data.0.to_vec());
                }
            }
            Op::Datagram { socket, from, data } => {
                if !self.sockets.is_empty() {
                    let ids: Vec<SocketId> = self.sockets.keys().copied().collect();
                    let socket = ids[usize::from(socket) % ids.len()];
                    let source = addr(match from {
                        Peer::FarSip => FAR_SIP,
                        Peer::FarRtp => FAR_RTP,
                        Peer::FarVideo => FAR_VIDEO,
                        Peer::Stranger => STRANGER,
                    });
                    self.node.handle(
                        self.now,
                        Input::Udp(UdpEvent::Datagram {
                            socket,
                            source,
                            data: Bytes::copy_from_slice(data.0),
                        }),
                    );
                }
            }
            Op::Decide { which, answer } => {
                if !self.questions.is_empty() {
                    let k = usize::from(which) % self.questions.len();
                    let request = self.questions[k];
                    let decision = match answer {
                        Answer::Accept => Decision::Accept,
                        Answer::Reject => Decision::Reject("no".into()),
                        Answer::Redirect => Decision::Redirect("rtmp://10.0.0.9/live".into()),
                    };
                    if self.node.decide(self.now, request, decision)
                        != Err(siprtmp_core::node::DecideError::RedirectNotAllowed(request))
                    {
                        self.questions.swap_remove(k);
                    }
                }
            }
            Op::FarCall { user } => self.far_call(user),
            Op::FarHangup => {
                if let Some(far) = &mut self.far {
                    for call in self.far_calls.drain(..) {
                        let _ = far.hangup(self.now, call);
                    }
                }
            }
        }
        self.pump();
        self.check();
    }

    /// The checks that hold between operations.
    fn check(&self) {
        assert_eq!(
            self.node.connection_count(),
            self.open.len(),
            "the node's connection count differs from the connections open"
        );
        let slack = MAX_MESSAGE as usize + 64 * 1024;
        for c in &self.conns {
            if !self.open.contains(&c.id) {
                continue;
            }
            let queued = self.node.queued_bytes(c.id);
            let segments: usize = self.node.queued_segments(c.id).map(|s| s.len()).sum();
            assert_eq!(
                queued, segments,
                "{}: queued_bytes and segments differ",
                c.id
            );
            assert!(
                queued <= HARD_BACKLOG + slack,
                "{}: {queued} bytes queued, past the hard backlog",
                c.id
            );
        }
    }

    /// Closes every connection, answers every file request and lets time run, then checks
    /// that nothing is left behind.
    pub fn finish(mut self) {
        let ids: Vec<ConnId> = self.open.iter().copied().collect();
        for id in ids {
            self.open.remove(&id);
            self.node.handle(self.now, Input::Closed { conn: id });
            self.pump();
        }
        for _ in 0..200 {
            let pending = self.files.values().any(|s| !s.pending.is_empty());
            if pending {
                self.answer_file(0, FileAnswer::Run);
                self.pump();
            } else {
                self.advance(Duration::from_secs(2));
            }
        }
        if let Some(far) = &mut self.far {
            for call in self.far_calls.drain(..) {
                let _ = far.hangup(self.now, call);
            }
        }
        for _ in 0..60 {
            self.advance(Duration::from_secs(5));
            while self.files.values().any(|s| !s.pending.is_empty()) {
                self.answer_file(0, FileAnswer::Run);
                self.pump();
            }
        }
        assert_eq!(self.node.connection_count(), 0);
        for id in &self.known {
            assert!(
                self.disconnected.contains(id),
                "{id} never got its Disconnected"
            );
        }
        for (id, state) in &self.files {
            assert!(
                state.closed || !state.opened,
                "{id} left open after every connection closed"
            );
        }
        if !self.setup.shared_rtp_ports {
            assert!(
                self.sockets.is_empty(),
                "UDP sockets left bound after every connection closed: {:?}",
                self.sockets
            );
        }
    }
}

/// Runs `script` from start to finish.
pub fn run(script: &Script<'_>) {
    let mut h = Harness::new(script.setup);
    for op in &script.ops {
        h.step(*op);
    }
    h.finish();
}
