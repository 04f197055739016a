//! A thin UDP driver for the core's sans-IO SIP [`UserAgent`], for interop tests: one thread
//! owning a loopback `UdpSocket` and the user agent, plus an "application" that
//!
//! - answers every incoming INVITE with an SDP answer from `sdp::offer_answer::answer`
//!   (PCMU, PCMA, telephone-event), binds an RTP socket per call and echoes every RTP
//!   packet back to its source (symmetric RTP); re-INVITEs are answered the same way;
//! - places calls on request: INVITE with an SDP offer, then RTP from the shared
//!   `pcmu_8k_20s.ul` in 20 ms packets through an `RtpSession`, then BYE;
//! - registers on request.
//!
//! Everything it saw is counted in [`Counters`]. The thread stops when the runner is
//! dropped or its lifetime runs out, so a test can never hang on it.

use std::collections::{HashMap, VecDeque};
use std::io::ErrorKind;
use std::net::{SocketAddr, UdpSocket};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::{channel, Receiver, Sender};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use bytes::Bytes;
use siprtmp_core::rng::SeededRng;
use siprtmp_core::rtp::{RtpSession, RtpSessionConfig};
use siprtmp_core::sdp::{
    answer, create_offer, process_answer, Codec, LocalCapabilities, MediaCapability, Origin,
    SessionDescription,
};
use siprtmp_core::sip::{CallId, Credentials, UaConfig, UaEvent, Uri, UserAgent};

/// What the runner counted.
#[derive(Debug, Default)]
pub struct Counters {
    /// Incoming calls answered with 200.
    pub answered: AtomicU64,
    /// Incoming calls refused (no acceptable offer).
    pub refused: AtomicU64,
    /// Outgoing calls placed (INVITEs sent).
    pub placed: AtomicU64,
    /// Outgoing calls answered by the far end.
    pub placed_answered: AtomicU64,
    /// Calls (either way) that were answered and then ended normally.
    pub completed: AtomicU64,
    /// Outgoing calls rejected or timed out, and incoming calls cancelled.
    pub failed: AtomicU64,
    /// RTP packets echoed on incoming calls.
    pub rtp_echoed: AtomicU64,
    /// RTP packets sent on outgoing calls.
    pub rtp_sent: AtomicU64,
    /// RTP packets received on outgoing calls.
    pub rtp_received: AtomicU64,
    /// Registered events.
    pub registered: AtomicU64,
    /// RegistrationFailed events.
    pub registration_failed: AtomicU64,
    /// The SIP status code of the last RegistrationFailed event (0 before any).
    pub last_registration_status: AtomicU64,
}

impl Counters {
    /// The current value of one of the counters (a relaxed load).
    pub fn get(counter: &AtomicU64) -> u64 {
        counter.load(Ordering::Relaxed)
    }
}

fn bump(counter: &AtomicU64) {
    counter.fetch_add(1, Ordering::Relaxed);
}

/// How to start a runner.
#[derive(Debug, Clone)]
pub struct RunnerConfig {
    /// Local SIP address (port 0: the OS picks).
    pub bind: SocketAddr,
    /// User part of our AOR (`sip:<user>@127.0.0.1`).
    pub user: String,
    /// REGISTER goes here.
    pub registrar: Option<SocketAddr>,
    /// Digest username and password.
    pub credentials: Option<(String, String)>,
    /// The runner thread exits after this long whatever happens.
    pub lifetime: Duration,
    /// The audio file streamed on outgoing calls (raw 8 kHz mu-law).
    pub media: Option<std::path::PathBuf>,
}

impl RunnerConfig {
    /// A runner for `user` on an OS-chosen loopback port, that does not register, has no
    /// credentials and no media, and stops after 60 s.
    pub fn new(user: &str) -> Self {
        RunnerConfig {
            bind: "127.0.0.1:0".parse().unwrap(),
            user: user.into(),
            registrar: None,
            credentials: None,
            lifetime: Duration::from_secs(60),
            media: None,
        }
    }
}

enum Command {
    /// `count` calls to `target` at `rate` calls/s, each streaming `packets` RTP packets.
    Calls {
        target: String,
        count: u32,
        rate: u32,
        packets: u32,
    },
    Register,
}

/// A running user agent on a loopback UDP socket.
pub struct SipRunner {
    addr: SocketAddr,
    counters: Arc<Counters>,
    commands: Sender<Command>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl SipRunner {
    /// Binds the SIP socket and starts the runner's thread.
    pub fn start(config: RunnerConfig) -> SipRunner {
        let socket = UdpSocket::bind(config.bind).expect("bind SIP socket");
        socket.set_nonblocking(true).unwrap();
        let addr = socket.local_addr().unwrap();
        let counters = Arc::new(Counters::default());
        let stop = Arc::new(AtomicBool::new(false));
        let (tx, rx) = channel();
        let worker = Worker::new(config, socket, addr, counters.clone(), rx);
        let stop2 = stop.clone();
        let thread = std::thread::Builder::new()
            .name("sip-runner".into())
            .spawn(move || worker.run(stop2))
            .unwrap();
        SipRunner {
            addr,
            counters,
            commands: tx,
            stop,
            thread: Some(thread),
        }
    }

    /// The SIP address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// What the runner has counted so far.
    pub fn counters(&self) -> &Counters {
        &self.counters
    }

    /// Places `count` calls to `target` (a SIP URI) at `rate` calls/s; each streams
    /// `packets` 20 ms RTP packets once answered and then hangs up.
    pub fn place_calls(&self, target: &str, count: u32, rate: u32, packets: u32) {
        let _ = self.commands.send(Command::Calls {
            target: target.into(),
            count,
            rate,
            packets,
        });
    }

    /// Sends REGISTER.
    pub fn register(&self) {
        let _ = self.commands.send(Command::Register);
    }

    /// Waits until `done` holds (true) or `timeout` passes (false).
    pub fn wait_for(&self, timeout: Duration, done: impl Fn(&Counters) -> bool) -> bool {
        let end = Instant::now() + timeout;
        while Instant::now() < end {
            if done(&self.counters) {
                return true;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        done(&self.counters)
    }
}

impl Drop for SipRunner {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Media state of one call.
struct Media {
    socket: UdpSocket,
    port: u16,
    /// Outgoing calls: our offer, and once answered where to send and what is left.
    offer: Option<SessionDescription>,
    sender: Option<Sender_>,
    answered: bool,
    /// Outgoing calls: RTP packets to send once answered.
    packets: u32,
}

struct Sender_ {
    session: RtpSession,
    remote: SocketAddr,
    payload_type: u8,
    next: Instant,
    sent: u32,
    packets: u32,
}

struct Worker {
    ua: UserAgent,
    socket: UdpSocket,
    counters: Arc<Counters>,
    commands: Receiver<Command>,
    lifetime: Duration,
    calls: HashMap<CallId, Media>,
    /// Scheduled call starts: (when, target, packets).
    schedule: VecDeque<(Instant, Uri, u32)>,
    audio: Bytes,
    rng: SeededRng,
    origin_id: u64,
}

fn capabilities(port: u16) -> LocalCapabilities {
    LocalCapabilities {
        address: "127.0.0.1".parse().unwrap(),
        session_name: "siprtmp-test".into(),
        media: vec![MediaCapability::new(
            "audio",
            port,
            vec![
                Codec::new(0, "PCMU", 8000, None),
                Codec::new(8, "PCMA", 8000, None),
                Codec::new(101, "telephone-event", 8000, None).with_param("0-15", None),
            ],
        )],
    }
}

impl Worker {
    fn new(
        config: RunnerConfig,
        socket: UdpSocket,
        addr: SocketAddr,
        counters: Arc<Counters>,
        commands: Receiver<Command>,
    ) -> Worker {
        let aor = format!("sip:{}@127.0.0.1", config.user).parse().unwrap();
        let mut ua_config = UaConfig::new(aor, addr);
        ua_config.registrar = config.registrar;
        ua_config.credentials = config
            .credentials
            .as_ref()
            .map(|(u, p)| Credentials::new(u, p));
        ua_config.user_agent = "siprtmp-test-runner".into();
        let audio = config
            .media
            .as_ref()
            .map(|p| Bytes::from(std::fs::read(p).expect("read media")))
            .unwrap_or_else(|| Bytes::from(vec![0xffu8; 8000]));
        Worker {
            ua: UserAgent::new(ua_config, u64::from(addr.port())),
            socket,
            counters,
            commands,
            lifetime: config.lifetime,
            calls: HashMap::new(),
            schedule: VecDeque::new(),
            audio,
            rng: SeededRng::new(17),
            origin_id: 1,
        }
    }

    fn run(mut self, stop: Arc<AtomicBool>) {
        let end = Instant::now() + self.lifetime;
        let mut buf = vec![0u8; 65536];
        while !stop.load(Ordering::Relaxed) && Instant::now() < end {
            let mut busy = false;
            let now = Instant::now();
            while let Ok(cmd) = self.commands.try_recv() {
                self.command(now, cmd);
            }
            while self.schedule.front().is_some_and(|(t, _, _)| *t <= now) {
                let (_, target, packets) = self.schedule.pop_front().unwrap();
                self.place(now, target, packets);
                busy = true;
            }
            loop {
                match self.socket.recv_from(&mut buf) {
                    Ok((n, from)) => {
                        busy = true;
                        self.ua.handle_datagram(
                            Instant::now(),
                            from,
                            Bytes::copy_from_slice(&buf[..n]),
                        );
                    }
                    Err(e) if e.kind() == ErrorKind::WouldBlock => break,
                    Err(_) => break,
                }
            }
            busy |= self.media(Instant::now(), &mut buf);
            let now = Instant::now();
            if self.ua.poll_timeout().is_some_and(|t| t <= now) {
                self.ua.handle_timeout(now);
            }
            busy |= self.flush(now);
            if !busy {
                std::thread::sleep(Duration::from_millis(1));
            }
        }
    }

    fn command(&mut self, now: Instant, cmd: Command) {
        match cmd {
            Command::Register => self.ua.register(now),
            Command::Calls {
                target,
                count,
                rate,
                packets,
            } => {
                let uri: Uri = target.parse().expect("target URI");
                let gap = Duration::from_secs(1) / rate.max(1);
                for i in 0..count {
                    self.schedule
                        .push_back((now + gap * i, uri.clone(), packets));
                }
            }
        }
    }

    fn bind_rtp() -> (UdpSocket, u16) {
        let s = UdpSocket::bind("127.0.0.1:0").expect("bind RTP");
        s.set_nonblocking(true).unwrap();
        let port = s.local_addr().unwrap().port();
        (s, port)
    }

    fn origin(&mut self) -> Origin {
        self.origin_id += 1;
        Origin {
            username: "-".into(),
            session_id: self.origin_id,
            session_version: 1,
            nettype: "IN".into(),
            addrtype: "IP4".into(),
            address: "127.0.0.1".into(),
        }
    }

    fn place(&mut self, now: Instant, target: Uri, packets: u32) {
        let (socket, port) = Self::bind_rtp();
        let origin = self.origin();
        let offer = create_offer(&capabilities(port), &origin);
        match self.ua.invite(now, target, Bytes::from(offer.to_string())) {
            Ok(call) => {
                bump(&self.counters.placed);
                self.calls.insert(
                    call,
                    Media {
                        socket,
                        port,
                        offer: Some(offer),
                        sender: None,
                        answered: false,
                        packets,
                    },
                );
            }
            Err(_) => bump(&self.counters.failed),
        }
    }

    /// Moves RTP: echoes on incoming calls, sends and counts on outgoing ones. Hangs up
    /// outgoing calls whose stream is done.
    fn media(&mut self, now: Instant, buf: &mut [u8]) -> bool {
        let mut busy = false;
        let mut done = Vec::new();
        for (call, m) in &mut self.calls {
            while let Ok((n, from)) = m.socket.recv_from(buf) {
                busy = true;
                if m.offer.is_none() {
                    let _ = m.socket.send_to(&buf[..n], from);
                    bump(&self.counters.rtp_echoed);
                } else {
                    bump(&self.counters.rtp_received);
                }
            }
            if let Some(s) = m.sender.as_mut() {
                while s.sent < s.packets && s.next <= now {
                    let start =
                        (s.sent as usize * 160) % (self.audio.len().saturating_sub(160).max(1));
                    let payload = self.audio.slice(start..(start + 160).min(self.audio.len()));
                    if let Ok(d) =
                        s.session
                            .send(now, s.payload_type, s.sent * 160, s.sent == 0, payload)
                    {
                        let _ = m.socket.send_to(&d.to_bytes(), s.remote);
                        bump(&self.counters.rtp_sent);
                    }
                    s.sent += 1;
                    s.next += Duration::from_millis(20);
                    busy = true;
                }
                // Linger a little after the last packet so that its echo can come back.
                if s.sent >= s.packets && now >= s.next + Duration::from_millis(60) {
                    done.push(*call);
                }
            }
        }
        for call in done {
            if let Some(m) = self.calls.get_mut(&call) {
                m.sender = None;
            }
            let _ = self.ua.hangup(now, call);
        }
        busy
    }

    /// Sends what the user agent wants sent and handles its events.
    fn flush(&mut self, now: Instant) -> bool {
        let mut busy = false;
        loop {
            let mut moved = false;
            while let Some((to, data)) = self.ua.poll_transmit() {
                let _ = self.socket.send_to(&data, to);
                moved = true;
            }
            while let Some(ev) = self.ua.poll_event() {
                self.event(now, ev);
                moved = true;
            }
            if !moved {
                return busy;
            }
            busy = true;
        }
    }

    fn event(&mut self, now: Instant, ev: UaEvent) {
        match ev {
            UaEvent::IncomingCall { call, offer, .. } => {
                let (socket, port) = Self::bind_rtp();
                let origin = self.origin();
                let answered = offer
                    .as_deref()
                    .and_then(|o| SessionDescription::parse(o).ok())
                    .and_then(|o| answer(&o, &capabilities(port), &origin).ok());
                match answered {
                    Some(sdp) => {
                        if self
                            .ua
                            .answer(now, call, Bytes::from(sdp.to_string()))
                            .is_ok()
                        {
                            bump(&self.counters.answered);
                            self.calls.insert(
                                call,
                                Media {
                                    socket,
                                    port,
                                    offer: None,
                                    sender: None,
                                    answered: true,
                                    packets: 0,
                                },
                            );
                        }
                    }
                    None => {
                        bump(&self.counters.refused);
                        let _ = self.ua.reject(now, call, 488, "Not Acceptable Here");
                    }
                }
            }
            UaEvent::ReInvite { call, offer } => {
                let port = self.calls.get(&call).map(|m| m.port).unwrap_or(9);
                let origin = self.origin();
                let answered = SessionDescription::parse(&offer)
                    .ok()
                    .and_then(|o| answer(&o, &capabilities(port), &origin).ok());
                match answered {
                    Some(sdp) => {
                        let _ = self.ua.answer(now, call, Bytes::from(sdp.to_string()));
                    }
                    None => {
                        let _ = self.ua.reject(now, call, 488, "Not Acceptable Here");
                    }
                }
            }
            UaEvent::Answered { call, answer: body } => {
                let Some(m) = self.calls.get_mut(&call) else {
                    return;
                };
                if m.answered {
                    return; // a re-INVITE's answer
                }
                m.answered = true;
                bump(&self.counters.placed_answered);
                let negotiated = m.offer.as_ref().and_then(|offer| {
                    let ans = SessionDescription::parse(&body).ok()?;
                    process_answer(offer, &ans)
                        .ok()?
                        .into_iter()
                        .flatten()
                        .next()
                });
                let packets = m.packets;
                match negotiated {
                    Some(n) if n.remote.is_some() => {
                        let session = RtpSession::new(
                            RtpSessionConfig::new(8000, "runner@127.0.0.1"),
                            &mut self.rng,
                            now,
                        );
                        m.sender = Some(Sender_ {
                            session,
                            remote: n.remote.unwrap(),
                            payload_type: n.payload_types.send,
                            next: now,
                            sent: 0,
                            packets,
                        });
                    }
                    _ => {
                        let _ = self.ua.hangup(now, call);
                    }
                }
            }
            UaEvent::Ended { call } => {
                if let Some(m) = self.calls.remove(&call) {
                    if m.answered {
                        bump(&self.counters.completed);
                    } else {
                        bump(&self.counters.failed);
                    }
                }
            }
            UaEvent::Rejected { call, .. } | UaEvent::Cancelled { call } => {
                self.calls.remove(&call);
                bump(&self.counters.failed);
            }
            UaEvent::Registered { .. } => bump(&self.counters.registered),
            UaEvent::RegistrationFailed { status, .. } => {
                self.counters
                    .last_registration_status
                    .store(u64::from(status), Ordering::Relaxed);
                bump(&self.counters.registration_failed);
            }
            _ => {}
        }
    }
}
