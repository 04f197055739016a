//! The echo far end's process (the hidden `--echo-server` mode of this binary): one thread,
//! one mio `Poll`, a SIP socket on 127.0.0.1 and one RTP socket per call. It answers each
//! INVITE with 200 OK and [`super::answer`]'s SDP (SRTP when offered), resends that answer to a
//! retransmitted INVITE, says 200 to a BYE (and closes the call's socket) and to anything
//! else but ACK, and sends every packet arriving on a call's socket back to where it came
//! from through the call's [`CallEcho`].
//!
//! A socket per call (sipp's echo has one for all) keeps calls apart without looking inside
//! packets, whether the gateway gives each call its own port or shares them.

use std::collections::HashMap;
use std::io;
use std::io::Write;
use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;
use mio::net::UdpSocket;
use mio::{Events, Interest, Poll, Token};
use siprtmp_core::rng::SeededRng;
use siprtmp_core::sip::{make_response, parse_datagram, Method, Request, SipMessage};

use super::answer::answer;
use super::echo::{CallEcho, PACKET_BUF};

/// The SIP socket's token; a call's is its slot + 1.
const SIP: Token = Token(0);

/// One call's media.
struct Call {
    socket: UdpSocket,
    /// Holds the RTCP port (the media port + 1), read by nobody: the gateway's RTCP goes
    /// there and not into another call's media socket.
    _rtcp: UdpSocket,
    echo: CallEcho,
    /// Packets dropped because they did not unprotect (the first is logged).
    dropped: u64,
    /// Its SIP Call-ID, to forget it at BYE.
    call_id: String,
}

/// What the far end keeps per Call-ID.
struct Dialog {
    /// The call's slot (`None`: the offer was refused).
    slot: Option<usize>,
    /// The final answer, resent to a retransmitted INVITE.
    response: Bytes,
}

/// The far end's state.
struct EchoServer {
    poll: Poll,
    sip: UdpSocket,
    calls: Vec<Option<Call>>,
    dialogs: HashMap<String, Dialog>,
    rng: SeededRng,
    port: u16,
    /// Whether a call was answered with SRTP yet (the first is logged, as proof it was).
    srtp_seen: bool,
}

/// Runs the far end until killed: binds its SIP socket, writes `LISTEN <port>` on stdout,
/// then serves.
pub(crate) fn serve() -> io::Result<()> {
    let poll = Poll::new()?;
    let mut sip = UdpSocket::bind(([127, 0, 0, 1], 0).into())?;
    poll.registry()
        .register(&mut sip, SIP, Interest::READABLE)?;
    let port = sip.local_addr()?.port();
    let mut stdout = io::stdout();
    writeln!(stdout, "LISTEN {port}")?;
    stdout.flush()?;
    let mut server = EchoServer {
        poll,
        sip,
        calls: Vec::new(),
        dialogs: HashMap::new(),
        // Keys only need to differ per call here, not to be secret.
        rng: SeededRng::new(u64::from(std::process::id())),
        port,
        srtp_seen: false,
    };
    let mut events = Events::with_capacity(1024);
    let mut buf = vec![0u8; PACKET_BUF];
    loop {
        match server.poll.poll(&mut events, Some(Duration::from_secs(1))) {
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            r => r?,
        }
        for event in &events {
            match event.token() {
                SIP => server.read_sip(&mut buf)?,
                Token(t) => server.read_media(t - 1, &mut buf),
            }
        }
    }
}

impl EchoServer {
    fn read_sip(&mut self, buf: &mut [u8]) -> io::Result<()> {
        loop {
            let (n, from) = match self.sip.recv_from(buf) {
                Ok(r) => r,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(()),
                Err(e) => return Err(e),
            };
            let Ok(SipMessage::Request(request)) = parse_datagram(&buf[..n]) else {
                continue;
            };
            if let Some(reply) = self.handle(&request)? {
                // Loopback: a full buffer would drop it, and the gateway then retransmits.
                let _ = self.sip.send_to(&reply, from);
            }
        }
    }

    /// The reply to `request`, if it gets one.
    fn handle(&mut self, request: &Request) -> io::Result<Option<Bytes>> {
        let call_id = request.headers.call_id().unwrap_or_default().to_owned();
        let ok = |r: &Request| SipMessage::Response(make_response(r, 200, "OK", None)).to_bytes();
        Ok(match request.method {
            Method::Ack => None,
            Method::Invite => match self.dialogs.get(&call_id) {
                Some(dialog) => Some(dialog.response.clone()),
                None => Some(self.invite(request, call_id)?),
            },
            Method::Bye => {
                if let Some(slot) = self.dialogs.remove(&call_id).and_then(|d| d.slot) {
                    if let Some(mut call) = self.calls[slot].take() {
                        self.poll.registry().deregister(&mut call.socket)?;
                    }
                }
                Some(ok(request))
            }
            _ => Some(ok(request)),
        })
    }

    /// Answers a new INVITE: a socket for the call's media, 200 OK with the answer (or 488).
    fn invite(&mut self, request: &Request, call_id: String) -> io::Result<Bytes> {
        let (mut socket, rtcp) = media_pair()?;
        let media_port = socket.local_addr()?.port();
        let tag = format!("echo{}", self.dialogs.len() + 1);
        let (slot, response) = match answer(&request.body, media_port, &mut self.rng) {
            Ok(a) => {
                if let (Some(keys), false) = (&a.keys, self.srtp_seen) {
                    eprintln!("echo far end: answering with SRTP ({})", keys.suite);
                    self.srtp_seen = true;
                }
                let slot = self
                    .calls
                    .iter()
                    .position(Option::is_none)
                    .unwrap_or_else(|| {
                        self.calls.push(None);
                        self.calls.len() - 1
                    });
                self.poll
                    .registry()
                    .register(&mut socket, Token(slot + 1), Interest::READABLE)?;
                self.calls[slot] = Some(Call {
                    socket,
                    _rtcp: rtcp,
                    echo: CallEcho::new(a.keys.as_ref()),
                    dropped: 0,
                    call_id: call_id.clone(),
                });
                let mut ok = make_response(request, 200, "OK", Some(&tag));
                ok.headers.push(
                    "Contact",
                    &format!("<sip:echo@127.0.0.1:{};transport=udp>", self.port),
                );
                ok.headers.push("Content-Type", "application/sdp");
                ok.body = Bytes::from(a.sdp);
                (Some(slot), ok)
            }
            Err(e) => {
                eprintln!("echo far end: 488 to {call_id}: {e}");
                (
                    None,
                    make_response(request, 488, "Not Acceptable Here", Some(&tag)),
                )
            }
        };
        let response = SipMessage::Response(response).to_bytes();
        self.dialogs.insert(
            call_id,
            Dialog {
                slot,
                response: response.clone(),
            },
        );
        Ok(response)
    }

    /// Echoes what call `slot`'s socket holds. A packet that does not unprotect, or that the
    /// kernel will not take now, is dropped: the loader counts the frame as not echoed.
    fn read_media(&mut self, slot: usize, buf: &mut [u8]) {
        let Some(Some(call)) = self.calls.get_mut(slot) else {
            return;
        };
        loop {
            let (n, from): (usize, SocketAddr) = match call.socket.recv_from(buf) {
                Ok(r) => r,
                // WouldBlock, or an ICMP error from an earlier send: nothing more to read now.
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(_) => continue,
            };
            match call.echo.echo(buf, n) {
                Ok(len) => {
                    let _ = call.socket.send_to(&buf[..len], from);
                }
                Err(e) => {
                    if call.dropped == 0 {
                        eprintln!("echo far end: {}: packet dropped: {e}", call.call_id);
                    }
                    call.dropped += 1;
                }
            }
        }
    }
}

/// An RTP socket on an even port of 127.0.0.1 and one holding the RTCP port after it.
fn media_pair() -> io::Result<(UdpSocket, UdpSocket)> {
    for _ in 0..100 {
        let rtp = UdpSocket::bind(([127, 0, 0, 1], 0).into())?;
        let port = rtp.local_addr()?.port();
        if port % 2 != 0 || port == u16::MAX {
            continue;
        }
        if let Ok(rtcp) = UdpSocket::bind(([127, 0, 0, 1], port + 1).into()) {
            return Ok((rtp, rtcp));
        }
    }
    Err(io::Error::other("no free even port pair on 127.0.0.1"))
}
