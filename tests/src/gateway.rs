//! The SIP-RTMP gateway from the RTMP side, for the interop and conformance suites: a
//! [`Phone`] plays the Flash VideoPhone (connect to `sip/<aor>` with the gateway's arguments,
//! the calls `invite`, `accept`, `bye`..., the callbacks, `local` published and `remote`
//! played), on the core's client machine over a std `TcpStream`; plus the node settings of a
//! gateway on loopback (SIP over TLS to a registrar too), audio frames read from the shared FLV and raw G.711 media, and the
//! check that an echo came back byte for byte.

use std::collections::VecDeque;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use siprtmp_core::amf::Value;
use siprtmp_core::node::NodeConfig;
use siprtmp_core::node::{GatewayNodeConfig, ServerConfig, SipTlsSettings};
use siprtmp_core::rng::SeededRng;
use siprtmp_core::rtmp::client::{ClientEvent, RtmpClient};
use siprtmp_core::rtmp::message::{type_id, RtmpMessage};
use siprtmp_core::sip::Transport;
use siprtmp_core::tls::rustls::pki_types::ServerName;
use siprtmp_runtime_common::{client_config, load_roots, TlsRoots};

use crate::ports::{free_udp_range, LOOPBACK};

/// How many RTP ports a suite's gateway gets unless its test says otherwise: 25 calls' worth.
pub const RTP_PORTS: u16 = 100;

/// A node whose gateway (app `sip`) binds on 127.0.0.1, speaks SIP over `transport` and takes
/// RTP ports (four per call) from [`RTP_PORTS`] free ones.
pub fn gateway_node(transport: Transport) -> NodeConfig {
    gateway_node_with_ports(transport, free_udp_range(LOOPBACK, RTP_PORTS))
}

/// [`gateway_node`] with the RTP range `rtp_ports` (first and last port).
pub fn gateway_node_with_ports(transport: Transport, rtp_ports: (u16, u16)) -> NodeConfig {
    let mut gateway = GatewayNodeConfig {
        bind_ip: LOOPBACK,
        rtp_ports,
        ..GatewayNodeConfig::default()
    };
    gateway.session.transport = transport;
    NodeConfig {
        server: ServerConfig {
            gateway: Some(gateway),
            ..ServerConfig::default()
        },
        ..NodeConfig::default()
    }
}

/// A gateway node whose SIP goes over TLS (50 RTP ports) to the registrar and outbound proxy
/// at `proxy`, trusting `roots` and expecting its certificate to be for `server_name` (for
/// its address without).
pub fn tls_gateway_node(
    proxy: SocketAddr,
    roots: TlsRoots,
    server_name: Option<&str>,
) -> NodeConfig {
    let mut node = gateway_node_with_ports(Transport::Tls, free_udp_range(LOOPBACK, 50));
    let roots = load_roots(&roots).expect("the roots load");
    let mut tls = SipTlsSettings::new(client_config(roots));
    tls.server_name = server_name.map(|n| ServerName::try_from(n.to_owned()).expect("a name"));
    let gateway = node.server.gateway.as_mut().expect("a gateway");
    gateway.session.registrar = Some(proxy);
    gateway.session.outbound_proxy = Some(proxy);
    gateway.sip_tls = Some(tls);
    node
}

/// The bound address of the gateway's SIP socket for the client whose AOR is `aor` (from
/// `Event::GatewayBound`; waits up to 10 s for it).
pub fn gateway_sip(server: &mut crate::server::TestServer, aor: &str) -> SocketAddr {
    use siprtmp_core::node::Event;
    let is = |e: &Event| matches!(e, Event::GatewayBound { aor: a, .. } if a == aor);
    assert!(
        server.wait_for(1, Duration::from_secs(10), is),
        "no GatewayBound event for {aor}"
    );
    server
        .events()
        .iter()
        .rev()
        .find_map(|e| match e {
            Event::GatewayBound { aor: a, sip, .. } if a == aor => Some(*sip),
            _ => None,
        })
        .unwrap()
}

/// A string argument.
pub fn s(text: &str) -> Value {
    Value::string(text)
}

/// The audio tags of an FLV file: (timestamp in ms, payload with its 1-byte FLV header).
pub fn flv_audio(path: &Path) -> Vec<(u32, Bytes)> {
    flv_tags(path, type_id::AUDIO)
}

/// The video tags of an FLV file: (timestamp in ms, payload with its FLV video header).
pub fn flv_video(path: &Path) -> Vec<(u32, Bytes)> {
    flv_tags(path, type_id::VIDEO)
}

/// The non-empty tags of kind `kind` (8 audio, 9 video) of an FLV file, in file order.
fn flv_tags(path: &Path, kind: u8) -> Vec<(u32, Bytes)> {
    let data = std::fs::read(path).expect("read FLV");
    assert!(data.starts_with(b"FLV"), "not an FLV file");
    let header = u32::from_be_bytes(data[5..9].try_into().unwrap()) as usize;
    let mut at = header + 4;
    let mut out = Vec::new();
    while at + 11 <= data.len() {
        let tag = data[at] & 0x1f;
        let size = u32::from_be_bytes([0, data[at + 1], data[at + 2], data[at + 3]]) as usize;
        let ts = u32::from_be_bytes([data[at + 7], data[at + 4], data[at + 5], data[at + 6]]);
        let body = at + 11;
        if body + size > data.len() {
            break;
        }
        if tag == kind && size > 1 {
            out.push((ts, Bytes::copy_from_slice(&data[body..body + size])));
        }
        at = body + size + 4;
    }
    out
}

/// 20 ms G.711 frames of a raw 8 kHz file as FLV audio payloads: header `header` (0x82 for
/// mu-law, 0x72 for A-law) then 160 samples.
pub fn g711_frames(path: &Path, header: u8, count: usize) -> Vec<(u32, Bytes)> {
    let data = std::fs::read(path).expect("read G.711");
    data.chunks_exact(160)
        .take(count)
        .enumerate()
        .map(|(i, chunk)| {
            let mut payload = Vec::with_capacity(161);
            payload.push(header);
            payload.extend_from_slice(chunk);
            (i as u32 * 20, Bytes::from(payload))
        })
        .collect()
}

/// How many of `sent` came back in `got`, in order, comparing from byte `from` on (1: after
/// the FLV header); and how many of `got` matched nothing sent.
pub fn echo_matches(sent: &[Bytes], got: &[Bytes], from: usize) -> (usize, usize) {
    let mut next = 0;
    let (mut matched, mut stray) = (0, 0);
    for g in got {
        let found = sent[next..]
            .iter()
            .position(|s| s.len() > from && g.len() > from && s[from..] == g[from..]);
        match found {
            Some(i) => {
                matched += 1;
                next += i + 1;
            }
            None => stray += 1,
        }
    }
    (matched, stray)
}

/// A gateway client: the Flash VideoPhone's role.
pub struct Phone {
    socket: TcpStream,
    machine: RtmpClient,
    buf: BytesMut,
    /// Events not yet waited for.
    events: VecDeque<ClientEvent>,
    /// Audio and video received on `remote`.
    pub remote_media: Vec<RtmpMessage>,
    local: Option<u32>,
    remote: Option<u32>,
}

impl Phone {
    /// Connects to `rtmp://addr/sip/<aor>` with the connect arguments `args` (authName,
    /// authPass, displayName, rate). `Err` holds the rejection's description.
    pub fn connect(addr: SocketAddr, aor: &str, args: Vec<Value>) -> Result<Self, String> {
        let app = format!("sip/{aor}");
        let socket = TcpStream::connect(addr).expect("connect to the server");
        socket.set_nodelay(true).unwrap();
        socket
            .set_read_timeout(Some(Duration::from_millis(5)))
            .unwrap();
        let mut machine = RtmpClient::new(
            &mut SeededRng::new(3),
            &app,
            &format!("rtmp://{addr}/{app}"),
        );
        machine.set_connect_args(args);
        let mut phone = Self {
            socket,
            machine,
            buf: BytesMut::new(),
            events: VecDeque::new(),
            remote_media: Vec::new(),
            local: None,
            remote: None,
        };
        phone.flush();
        let outcome = phone.wait(Duration::from_secs(15), |e| {
            matches!(e, ClientEvent::Connected | ClientEvent::ConnectRejected(_))
        });
        match outcome {
            Some(ClientEvent::Connected) => Ok(phone),
            Some(_) => {
                let info = phone.machine.connect_info().map(|(_, v)| v.clone());
                let description = info
                    .as_ref()
                    .and_then(|v| v.get("description"))
                    .and_then(Value::as_str)
                    .unwrap_or("")
                    .to_owned();
                Err(description)
            }
            None => Err("no answer to connect".into()),
        }
    }

    /// The client's local address (the server's `Event::Connected` peer).
    pub fn local_addr(&self) -> SocketAddr {
        self.socket.local_addr().unwrap()
    }

    fn flush(&mut self) {
        while let Some(bytes) = self.machine.take_output() {
            self.socket.write_all(&bytes).expect("write to the server");
        }
    }

    /// Reads what the server sent (waiting at most the socket's 5 ms read timeout); false
    /// when the connection is gone.
    pub fn pump(&mut self) -> bool {
        let mut chunk = [0u8; 64 * 1024];
        match self.socket.read(&mut chunk) {
            Ok(0) => return false,
            Ok(n) => {
                self.buf.extend_from_slice(&chunk[..n]);
                if self.machine.received(&mut self.buf).is_err() {
                    return false;
                }
                self.flush();
            }
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) => {}
            Err(_) => return false,
        }
        while let Some(event) = self.machine.poll_event() {
            match event {
                ClientEvent::Media(m) if Some(m.stream_id) == self.remote => {
                    self.remote_media.push(m)
                }
                other => self.events.push_back(other),
            }
        }
        true
    }

    /// The first event matching `pred`, waiting up to `timeout` (taken from the backlog).
    pub fn wait(
        &mut self,
        timeout: Duration,
        pred: impl Fn(&ClientEvent) -> bool,
    ) -> Option<ClientEvent> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(i) = self.events.iter().position(&pred) {
                return self.events.remove(i);
            }
            if Instant::now() >= deadline || !self.pump() {
                return self
                    .events
                    .iter()
                    .position(&pred)
                    .and_then(|i| self.events.remove(i));
            }
        }
    }

    /// The arguments of the gateway's next callback `name` (`ringing`, `accepted`...), waiting
    /// up to `timeout`.
    pub fn callback(&mut self, name: &str, timeout: Duration) -> Option<Vec<Value>> {
        match self.wait(
            timeout,
            |e| matches!(e, ClientEvent::Command(c) if c.name == name),
        ) {
            Some(ClientEvent::Command(c)) => Some(c.args),
            _ => None,
        }
    }

    /// The names of the callbacks received and not yet waited for.
    pub fn pending_callbacks(&mut self) -> Vec<String> {
        self.pump();
        self.events
            .iter()
            .filter_map(|e| match e {
                ClientEvent::Command(c) => Some(c.name.clone()),
                _ => None,
            })
            .collect()
    }

    /// Calls `name(args...)` on the gateway.
    pub fn call(&mut self, name: &str, args: Vec<Value>) {
        self.machine.call(0, name, args);
        self.flush();
    }

    /// createStream twice: publishes `local` and plays `remote`.
    pub fn open_streams(&mut self) {
        let t = Duration::from_secs(10);
        let create = |phone: &mut Self| {
            phone.machine.create_stream();
            phone.flush();
            match phone.wait(t, |e| matches!(e, ClientEvent::StreamCreated(_))) {
                Some(ClientEvent::StreamCreated(id)) => id,
                other => panic!("no stream created: {other:?}"),
            }
        };
        let local = create(self);
        self.machine.publish(local, "local");
        self.flush();
        self.wait(
            t,
            |e| matches!(e, ClientEvent::Status(_, c) if c == "NetStream.Publish.Start"),
        )
        .expect("Publish.Start for local");
        self.local = Some(local);
        let remote = create(self);
        self.remote = Some(remote);
        self.machine.play(remote, "remote", -2.0);
        self.flush();
        self.wait(
            t,
            |e| matches!(e, ClientEvent::Status(_, c) if c == "NetStream.Play.Start"),
        )
        .expect("Play.Start for remote");
    }

    /// Publishes audio `frames` on `local` in real time (each at its timestamp), reading the
    /// server in between; then keeps reading for `linger`.
    pub fn stream_audio(&mut self, frames: &[(u32, Bytes)], linger: Duration) {
        self.stream(type_id::AUDIO, frames, linger);
    }

    /// [`Phone::stream_audio`] of a part of a stream: the timestamps stay those of the
    /// frames (relative to `base`, the first frame of the whole stream), so that a stream
    /// published in parts is one stream to the far end.
    pub fn stream_audio_part(&mut self, frames: &[(u32, Bytes)], base: u32, linger: Duration) {
        self.stream_from(type_id::AUDIO, frames, base, linger);
    }

    /// Publishes video `frames` (FLV video tag bodies) on `local` like
    /// [`Phone::stream_audio`].
    pub fn stream_video(&mut self, frames: &[(u32, Bytes)], linger: Duration) {
        self.stream(type_id::VIDEO, frames, linger);
    }

    /// Publishes `frames` of message type `kind` on `local` in real time, timestamps made
    /// relative to the first frame's.
    fn stream(&mut self, kind: u8, frames: &[(u32, Bytes)], linger: Duration) {
        let first = frames.first().map_or(0, |f| f.0);
        self.stream_from(kind, frames, first, linger);
    }

    /// [`Phone::stream`] with timestamps relative to `base` (paced from the first frame).
    fn stream_from(&mut self, kind: u8, frames: &[(u32, Bytes)], base: u32, linger: Duration) {
        let local = self.local.expect("open_streams first");
        let start = Instant::now();
        let first = frames.first().map_or(0, |f| f.0);
        for (ts, payload) in frames {
            let due = start + Duration::from_millis(u64::from(ts - first));
            while Instant::now() < due {
                self.pump();
            }
            let msg = RtmpMessage::new(kind, local, ts - base, payload.clone());
            self.machine.send_media(&msg);
            self.flush();
        }
        let end = Instant::now() + linger;
        while Instant::now() < end {
            self.pump();
        }
    }

    /// Audio payloads received on `remote` so far.
    pub fn remote_audio(&self) -> Vec<Bytes> {
        self.remote_media
            .iter()
            .filter(|m| m.type_id == type_id::AUDIO)
            .map(|m| m.payload.clone())
            .collect()
    }
}

/// What the far end is offered and what the phone publishes in
/// [`echo_call`](crate::gateway_scenarios::echo_call).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EchoMedia {
    /// `["wideband", "dtmf"]`, Speex 16 kHz from the shared FLV.
    Wideband,
    /// `["narrowband"]`, Speex 8 kHz from the shared FLV.
    Narrowband,
    /// `["pcmu"]`, G.711 mu-law with FLV header 0x82 (compared whole, header included).
    Pcmu,
}

impl EchoMedia {
    /// The codec's token in the client API: what the phone offers and `accepted` names.
    pub fn codec(self) -> &'static str {
        match self {
            EchoMedia::Wideband => "wideband",
            EchoMedia::Narrowband => "narrowband",
            EchoMedia::Pcmu => "pcmu",
        }
    }

    /// The codec tokens the phone's `invite` offers.
    pub fn tokens(self) -> Vec<Value> {
        match self {
            EchoMedia::Wideband => vec![s(self.codec()), s("dtmf")],
            _ => vec![s(self.codec())],
        }
    }

    /// The first `count` frames the phone publishes.
    pub fn frames(self, count: usize) -> Vec<(u32, Bytes)> {
        let mut frames = match self {
            EchoMedia::Wideband => flv_audio(&crate::media("speex16k_audio_20s.flv")),
            EchoMedia::Narrowband => flv_audio(&crate::media("speex8k_audio_20s.flv")),
            EchoMedia::Pcmu => g711_frames(&crate::media("pcmu_8k_20s.ul"), 0x82, count),
        };
        frames.truncate(count);
        assert_eq!(frames.len(), count, "not enough audio in the test media");
        frames
    }

    /// Where the comparison starts: Speex after the FLV header, G.711 whole.
    pub fn compare_from(self) -> usize {
        match self {
            EchoMedia::Pcmu => 0,
            _ => 1,
        }
    }
}

/// What came back of an echo: see [`assert_hears_its_echo`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Echo {
    /// Frames published.
    pub sent: usize,
    /// Audio frames received on `remote`.
    pub received: usize,
    /// Received frames that are sent ones, in order.
    pub matched: usize,
}

/// The phone of a call whose far end echoes its RTP publishes the first `count` frames of
/// `media` in real time on `local` and keeps reading for `linger`; then what its user would
/// notice is asserted (`what` names the case): every frame heard on `remote` is one it sent,
/// byte for byte (from [`EchoMedia::compare_from`] on), and at least 99 % of them came back.
pub fn assert_hears_its_echo(
    phone: &mut Phone,
    media: EchoMedia,
    count: usize,
    linger: Duration,
    what: &str,
) -> Echo {
    let frames = media.frames(count);
    phone.stream_audio(&frames, linger);
    let sent: Vec<Bytes> = frames.into_iter().map(|f| f.1).collect();
    let got = phone.remote_audio();
    let (matched, stray) = echo_matches(&sent, &got, media.compare_from());
    assert_eq!(
        stray, 0,
        "{what}: every echoed frame is one that was sent, byte for byte"
    );
    assert!(
        matched * 100 >= count * 99,
        "{what}: only {matched} of {count} frames came back"
    );
    Echo {
        sent: count,
        received: got.len(),
        matched,
    }
}

/// `callee`, invited by `caller`, accepts with PCMU; both wait (10 s at most) for `accepted`.
pub fn accept_pcmu(caller: &mut Phone, callee: &mut Phone) {
    let t = Duration::from_secs(10);
    callee.call("accept", vec![s("pcmu")]);
    caller
        .callback("accepted", t)
        .expect("the caller's call is accepted");
    callee
        .callback("accepted", t)
        .expect("the callee's call is accepted");
}

/// Two phones in a call (both `accepted`) talk: each publishes 50 G.711 frames of its own on
/// `local`, one after the other (each streams in real time; the other's audio waits in its
/// socket), and each must hear at least 49 of the other's and none that the other did not send
/// (its own, or another call's).
pub fn assert_phones_hear_each_other(alice: &mut Phone, carol: &mut Phone) {
    alice.open_streams();
    carol.open_streams();
    let frames = g711_frames(&crate::media("pcmu_8k_20s.ul"), 0x82, 100);
    let (from_alice, from_carol) = frames.split_at(50);
    alice.stream_audio(from_alice, Duration::ZERO);
    carol.stream_audio(from_carol, Duration::ZERO);
    let deadline = Instant::now() + Duration::from_secs(5);
    while (alice.remote_audio().len() < 50 || carol.remote_audio().len() < 50)
        && Instant::now() < deadline
    {
        alice.pump();
        carol.pump();
    }
    let sent = |f: &[(u32, Bytes)]| f.iter().map(|f| f.1.clone()).collect::<Vec<_>>();
    for (name, phone, expected) in [
        ("alice", &*alice, sent(from_carol)),
        ("carol", &*carol, sent(from_alice)),
    ] {
        let (matched, stray) = echo_matches(&expected, &phone.remote_audio(), 0);
        assert_eq!(stray, 0, "{name} heard frames the other did not send");
        assert!(
            matched >= 49,
            "{name} heard {matched} of the other's 50 frames"
        );
    }
}
