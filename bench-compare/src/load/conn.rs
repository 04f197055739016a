//! One load-generator connection: a non-blocking mio `TcpStream` (over TLS for an `R-tls`
//! server) driving an [`RtmpClient`] machine, with the role-specific steps (publish, play, or
//! a gateway call: invite, then publish `local` and play `remote`) and the frame counter of
//! what it plays: frames are recognised by their sequence tag or, for a transcoded gateway
//! call, by their timestamp (see [`super::echo_match`]).

use std::collections::VecDeque;
use std::io::{self, Read, Write};
use std::os::fd::AsRawFd;

use bytes::{Bytes, BytesMut};
use mio::net::TcpStream;
use siprtmp_core::amf::Value;
use siprtmp_core::rtmp::client::{ClientEvent, RtmpClient};
use siprtmp_core::rtmp::message::type_id;

use super::delay::{DelayHistogram, SendTimes};
use super::echo_match::TimestampMatch;
use super::media::{is_audio_frame, read_tag};

/// Where a receiver learns when its frames were sent and counts how long they took.
pub(crate) struct DelayProbe<'a> {
    /// The sender's send times.
    pub sent: &'a SendTimes,
    /// Where the delays of window frames go.
    pub into: &'a mut DelayHistogram,
}

/// Where a connection is in its setup.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Phase {
    /// Handshake and `connect` in progress.
    Connecting,
    /// A gateway caller: `invite` sent, waiting for `accepted`.
    Inviting,
    /// `createStream` sent.
    CreatingStream,
    /// `publish` or `play` sent, waiting for its Start status.
    Starting,
    /// Publishing or playing.
    Running,
}

/// The sequence range a player counts: `lo..=hi` (hi is `u32::MAX` while the window is open).
#[derive(Debug, Clone, Copy)]
pub(crate) struct Window {
    /// First sequence number sent in the window (`u32::MAX` before it opens).
    pub lo: u32,
    /// Last sequence number sent in the window.
    pub hi: u32,
}

/// One connection of the load generator.
pub(crate) struct Conn {
    stream: TcpStream,
    /// RTMPS: the TLS between the machine and the socket.
    tls: Option<Box<rustls::ClientConnection>>,
    machine: RtmpClient,
    inbuf: BytesMut,
    out: VecDeque<Bytes>,
    /// Bytes of `out.front()` already written.
    out_offset: usize,
    /// Publisher (true) or player.
    pub publisher: bool,
    /// Setup progress.
    pub phase: Phase,
    /// The stream id `createStream` returned (a caller's: the `local` one it publishes).
    stream_id: u32,
    /// A gateway caller: the `invite` arguments (destination, codec tokens).
    invite: Option<Vec<Value>>,
    /// A gateway caller: the stream id playing `remote` (media on others is not counted).
    remote_id: Option<u32>,
    /// Frames of the window received (players).
    pub counted: u64,
    /// Window frames that arrived out of order or twice (players).
    pub disorder: u64,
    /// A gateway caller: frames of audio on `remote` that are the echo of no frame it sent
    /// (no sequence tag, or a timestamp that matches none).
    pub unmatched: u64,
    last_seq: Option<u32>,
    /// Why the connection failed, if it did.
    pub failed: Option<String>,
}

impl Conn {
    /// Wraps a connecting socket and queues the handshake.
    pub(crate) fn new(stream: TcpStream, machine: RtmpClient, publisher: bool) -> Self {
        Self::with_tls(stream, None, machine, publisher)
    }

    /// [`Self::new`] over TLS when `tls` is given (RTMPS).
    pub(crate) fn with_tls(
        stream: TcpStream,
        tls: Option<rustls::ClientConnection>,
        machine: RtmpClient,
        publisher: bool,
    ) -> Self {
        let mut conn = Self {
            stream,
            tls: tls.map(Box::new),
            machine,
            inbuf: BytesMut::with_capacity(8 * 1024),
            out: VecDeque::new(),
            out_offset: 0,
            publisher,
            phase: Phase::Connecting,
            stream_id: 0,
            invite: None,
            remote_id: None,
            counted: 0,
            disorder: 0,
            unmatched: 0,
            last_seq: None,
            failed: None,
        };
        conn.collect_output();
        conn
    }

    /// Makes this connection a gateway caller: once connected it calls `invite(args...)`,
    /// and once `accepted` it publishes `local` and plays `remote` (it must be a publisher).
    pub(crate) fn set_invite(&mut self, args: Vec<Value>) {
        self.invite = Some(args);
    }

    /// Sets SO_RCVLOWAT: the kernel reports the socket readable only once `bytes` are queued
    /// (a player that reads in bulk, as a buffering media player does).
    pub(crate) fn set_recv_low_water(&self, bytes: i32) -> io::Result<()> {
        // SAFETY: a valid open descriptor, and a pointer to an int of the size passed.
        let rc = unsafe {
            libc::setsockopt(
                self.stream.as_raw_fd(),
                libc::SOL_SOCKET,
                libc::SO_RCVLOWAT,
                std::ptr::addr_of!(bytes).cast(),
                std::mem::size_of::<i32>() as libc::socklen_t,
            )
        };
        if rc == 0 {
            Ok(())
        } else {
            Err(io::Error::last_os_error())
        }
    }

    /// Queues a media message (publisher) and writes what the socket takes.
    pub(crate) fn send_media(&mut self, msg: &siprtmp_core::rtmp::message::RtmpMessage) {
        let mut msg = msg.clone();
        msg.stream_id = self.stream_id;
        self.machine.send_media(&msg);
        self.collect_output();
        self.flush();
    }

    fn collect_output(&mut self) {
        while let Some(bytes) = self.machine.take_output() {
            match &mut self.tls {
                // Until the handshake ends, rustls keeps the plaintext and sends it after.
                Some(tls) => {
                    if let Err(e) = tls.writer().write_all(&bytes) {
                        self.failed.get_or_insert(format!("TLS write: {e}"));
                    }
                }
                None => self.out.push_back(bytes),
            }
        }
        if let Some(tls) = &mut self.tls {
            while tls.wants_write() {
                let mut records = Vec::new();
                if tls.write_tls(&mut records).is_err() || records.is_empty() {
                    break;
                }
                self.out.push_back(records.into());
            }
        }
    }

    /// RTMPS: decrypts what arrived into `inbuf`.
    fn unseal(&mut self, mut data: &[u8]) {
        let Some(tls) = &mut self.tls else {
            self.inbuf.extend_from_slice(data);
            return;
        };
        while !data.is_empty() {
            match tls.read_tls(&mut data) {
                Ok(0) => break,
                Ok(_) => {}
                Err(e) => {
                    self.failed.get_or_insert(format!("TLS read: {e}"));
                    return;
                }
            }
            match tls.process_new_packets() {
                Ok(state) => {
                    let n = state.plaintext_bytes_to_read();
                    let start = self.inbuf.len();
                    self.inbuf.resize(start + n, 0);
                    if let Err(e) = tls.reader().read_exact(&mut self.inbuf[start..]) {
                        self.failed.get_or_insert(format!("TLS read: {e}"));
                        return;
                    }
                }
                Err(e) => {
                    self.failed.get_or_insert(format!("TLS: {e}"));
                    return;
                }
            }
        }
    }

    /// Writes queued bytes until the socket would block.
    pub(crate) fn flush(&mut self) {
        while let Some(front) = self.out.front() {
            match self.stream.write(&front[self.out_offset..]) {
                Ok(0) => {
                    self.fail("write returned 0".into());
                    return;
                }
                Ok(n) => {
                    self.out_offset += n;
                    if self.out_offset == front.len() {
                        self.out.pop_front();
                        self.out_offset = 0;
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                // Still connecting: the writable event will come.
                Err(e) if e.kind() == io::ErrorKind::NotConnected => return,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => {
                    self.fail(format!("write: {e}"));
                    return;
                }
            }
        }
    }

    /// Bytes queued here that the socket has not taken yet.
    pub(crate) fn queued(&self) -> usize {
        self.out.iter().map(Bytes::len).sum::<usize>() - self.out_offset
    }

    fn fail(&mut self, why: String) {
        if self.failed.is_none() {
            self.failed = Some(why);
        }
    }

    /// Reads until the socket would block, runs the machine and the setup steps, and counts
    /// window frames (and, with a `probe`, how long each took since it was sent). `name` is
    /// the stream name to publish or play. Frames are recognised by their sequence tag, or by
    /// their timestamp with `by_timestamp` (a transcoded gateway call's echo).
    pub(crate) fn read(
        &mut self,
        scratch: &mut [u8],
        name: &str,
        window: Window,
        mut probe: Option<DelayProbe<'_>>,
        mut by_timestamp: Option<&mut TimestampMatch>,
    ) {
        if self.failed.is_some() {
            return;
        }
        loop {
            match self.stream.read(scratch) {
                Ok(0) => {
                    self.fail("closed by the server".into());
                    break;
                }
                Ok(n) => self.unseal(&scratch[..n]),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == io::ErrorKind::NotConnected => return,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => {
                    self.fail(format!("read: {e}"));
                    break;
                }
            }
        }
        if self.inbuf.is_empty() {
            // RTMPS: the handshake may have something to answer.
            if self.tls.is_some() && self.failed.is_none() {
                self.collect_output();
                self.flush();
            }
            return;
        }
        if let Err(e) = self.machine.received(&mut self.inbuf) {
            self.fail(format!("protocol: {e}"));
            return;
        }
        let now = std::time::Instant::now();
        while let Some(event) = self.machine.poll_event() {
            if let Some(seq) = self.on_event(event, name, window, by_timestamp.as_deref_mut()) {
                if let Some(p) = probe.as_mut() {
                    if let Some(sent) = p.sent.sent_at(seq) {
                        p.into.record(now.saturating_duration_since(sent));
                    }
                }
            }
        }
        self.collect_output();
        self.flush();
    }

    /// Handles one event of the machine; returns the sequence number of a window frame it
    /// counted.
    fn on_event(
        &mut self,
        event: ClientEvent,
        name: &str,
        window: Window,
        by_timestamp: Option<&mut TimestampMatch>,
    ) -> Option<u32> {
        match event {
            ClientEvent::Media(msg) => {
                let caller = self.invite.is_some();
                if caller && Some(msg.stream_id) != self.remote_id {
                    return None;
                }
                // A caller's echo is audio frames; the Opus sequence start before them is not.
                if caller && !(msg.type_id == type_id::AUDIO && is_audio_frame(&msg.payload)) {
                    return None;
                }
                let seq = match by_timestamp {
                    Some(m) => m.echoed(msg.timestamp),
                    None => read_tag(&msg.payload),
                };
                let Some(seq) = seq else {
                    if caller {
                        self.unmatched += 1;
                    }
                    return None;
                };
                let in_window = seq >= window.lo && seq <= window.hi;
                if in_window {
                    self.counted += 1;
                    if self.last_seq.is_some_and(|last| seq <= last) {
                        self.disorder += 1;
                    }
                }
                self.last_seq = Some(seq);
                return in_window.then_some(seq);
            }
            ClientEvent::Connected => {
                if let Some(args) = self.invite.clone() {
                    // The Flash VideoPhone's chunk size stays at 128: its frames are small.
                    self.machine.call(0, "invite", args);
                    self.phase = Phase::Inviting;
                    return None;
                }
                if self.publisher {
                    // As ffmpeg does: large chunks for the media it sends.
                    self.machine.set_chunk_size(4096);
                }
                self.machine.create_stream();
                self.phase = Phase::CreatingStream;
            }
            ClientEvent::Command(c) if self.invite.is_some() => match c.name.as_str() {
                "accepted" if self.phase == Phase::Inviting => {
                    self.machine.create_stream();
                    self.phase = Phase::CreatingStream;
                }
                "rejected" | "byed" | "cancelled" => {
                    self.fail(format!("call ended: {}({:?})", c.name, c.args))
                }
                _ => {}
            },
            ClientEvent::StreamCreated(id) if self.invite.is_some() => {
                if self.phase == Phase::CreatingStream {
                    self.stream_id = id;
                    self.machine.publish(id, "local");
                } else {
                    self.remote_id = Some(id);
                    self.machine.play(id, "remote", -2.0);
                }
                self.phase = Phase::Starting;
            }
            ClientEvent::ConnectRejected(code) => self.fail(format!("connect rejected: {code}")),
            ClientEvent::StreamCreated(id) => {
                self.stream_id = id;
                if self.publisher {
                    self.machine.publish(id, name);
                } else {
                    self.machine.play(id, name, -2.0);
                }
                self.phase = Phase::Starting;
            }
            ClientEvent::Status(_, code) => match code.as_str() {
                // A caller opens `remote` once `local` publishes.
                "NetStream.Publish.Start" if self.invite.is_some() => {
                    self.machine.create_stream();
                }
                "NetStream.Publish.Start" | "NetStream.Play.Start" => self.phase = Phase::Running,
                c if c.ends_with("Failed") || c.ends_with("BadName") || c.ends_with("Rejected") => {
                    self.fail(format!("status {c}"))
                }
                _ => {}
            },
            _ => {}
        }
        None
    }
}
