//! The `node` target's input: a [`Setup`] (which applications are on) and then [`Op`]s until
//! the input ends, each decoded with `arbitrary` (derived) from the fuzzer's bytes.
//!
//! [`Encoder`] writes the same layout, so the seed generator can turn a real session (an
//! ffmpeg publish captured on the wire, an FLV file made by ffmpeg) into a seed; the
//! `encoder_matches_arbitrary` test keeps the two in step if `arbitrary` ever changes.

use arbitrary::{Arbitrary, Unstructured};

/// At most this many operations are run from one input (a bound on run time per input).
pub const MAX_OPS: usize = 400;

/// Bytes from the input: a 2-byte little-endian length, then that many bytes (fewer if the
/// input ends first). Unlike `Vec<u8>`'s derived form (a flag byte before every element),
/// this costs the fuzzer two bytes per payload and lets a seed carry real packets as is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Data<'a>(pub &'a [u8]);

impl<'a> Arbitrary<'a> for Data<'a> {
    fn arbitrary(u: &mut Unstructured<'a>) -> arbitrary::Result<Self> {
        let len = usize::from(u16::arbitrary(u)?).min(u.len());
        Ok(Data(u.bytes(len)?))
    }
}

/// Which applications the node runs.
#[derive(Arbitrary, Debug, Clone, Copy, PartialEq, Eq)]
pub struct Setup {
    /// The SIP-RTMP gateway on app `sip`, with a far-end user agent (bob) that answers calls.
    pub gateway: bool,
    /// Every call's media on one set of four ports.
    pub shared_rtp_ports: bool,
    /// Merged writes (media held up to 50 ms per player).
    pub merge_writes: bool,
    /// Connect, publish and play are asked of the harness ([`Op::Decide`] answers).
    pub decisions: bool,
    /// Every publish to `live` is recorded.
    pub record_all: bool,
    /// Bob answers calls with Speex wideband (else PCMU) and offers H.264 video too.
    pub wideband: bool,
}

/// The application an opened connection connects to.
#[derive(Arbitrary, Debug, Clone, Copy, PartialEq, Eq)]
pub enum App {
    /// No `connect`: the fuzzer's bytes follow the handshake (or replace it).
    None,
    /// `live`.
    Live,
    /// `vod` (plays of files).
    Vod,
    /// The gateway, as `sip/userN@10.0.0.1`.
    Gateway {
        /// Picks the user (a few users, so that a second connect can replace a first).
        user: u8,
    },
    /// An application the server knows nothing about.
    Other,
}

/// A well-formed command the harness's client sends for the fuzzer.
#[derive(Arbitrary, Debug, Clone, Copy, PartialEq, Eq)]
pub enum Command {
    /// `createStream`.
    CreateStream,
    /// `publish(name, "live")` on stream `stream`.
    Publish {
        /// The NetStream id.
        stream: u8,
        /// Picks one of a few stream names.
        name: u8,
    },
    /// `play(name, start)` on stream `stream` (`start` -2: live or recorded, -1: live, else
    /// recorded from `start` seconds).
    Play {
        /// The NetStream id.
        stream: u8,
        /// Picks one of a few stream names.
        name: u8,
        /// The start argument.
        start: i8,
    },
    /// `pause(pause, ms)`.
    Pause {
        /// The NetStream id.
        stream: u8,
        /// Pause or resume.
        pause: bool,
        /// Where.
        ms: u16,
    },
    /// `seek(ms)`.
    Seek {
        /// The NetStream id.
        stream: u8,
        /// Where.
        ms: u16,
    },
    /// `closeStream` / `deleteStream`.
    CloseStream {
        /// The NetStream id.
        stream: u8,
        /// `deleteStream` rather than `closeStream`.
        delete: bool,
    },
    /// The gateway's `invite(bob, codec, "dtmf")`.
    Invite {
        /// Picks the codec token (`pcmu`, `wideband`, `narrowband`, `h264`...).
        codec: u8,
    },
    /// The gateway's `accept(codec)`.
    Accept {
        /// Picks the codec token.
        codec: u8,
    },
    /// The gateway's `reject(reason)`.
    Reject,
    /// The gateway's `bye`.
    Bye,
    /// The gateway's `sendDTMF(digits)`.
    Dtmf {
        /// Picks the digit.
        digit: u8,
    },
    /// The gateway's `hold(on)`.
    Hold {
        /// Hold or resume.
        on: bool,
    },
}

/// The kind of an RTMP message the harness's client sends.
#[derive(Arbitrary, Debug, Clone, Copy, PartialEq, Eq)]
pub enum MediaKind {
    /// Type 8.
    Audio,
    /// Type 9.
    Video,
    /// Type 18 (AMF0 data, such as `@setDataFrame`).
    Data,
    /// Type 22 (aggregate).
    Aggregate,
}

/// How the harness answers a file request.
#[derive(Arbitrary, Debug, Clone, Copy, PartialEq, Eq)]
pub enum FileAnswer<'a> {
    /// Run it against the in-memory disk.
    Run,
    /// Fail it.
    Fail,
    /// A read answered with these bytes (any other request is run).
    Bytes(Data<'a>),
}

/// Where a datagram to the node comes from.
#[derive(Arbitrary, Debug, Clone, Copy, PartialEq, Eq)]
pub enum Peer {
    /// Bob's SIP address.
    FarSip,
    /// Bob's RTP address (audio).
    FarRtp,
    /// Bob's video RTP address.
    FarVideo,
    /// Someone nobody called.
    Stranger,
}

/// How the harness answers a question ([`Setup::decisions`]).
#[derive(Arbitrary, Debug, Clone, Copy, PartialEq, Eq)]
pub enum Answer {
    /// Accept.
    Accept,
    /// Reject.
    Reject,
    /// Redirect (valid for a connect only).
    Redirect,
}

/// One thing that happens to the node.
#[derive(Arbitrary, Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op<'a> {
    /// A new connection; with `handshake` the harness performs a valid C0/C1/C2 first (and,
    /// unless `app` is [`App::None`], a `connect` through its own client).
    Open {
        /// Do a valid handshake.
        handshake: bool,
        /// Connect to this application.
        app: App,
    },
    /// Raw bytes on a connection.
    Receive {
        /// Picks the connection.
        conn: u8,
        /// The bytes.
        data: Data<'a>,
    },
    /// A command from the harness's client on a connection that connected with it.
    Command {
        /// Picks the connection.
        conn: u8,
        /// The command.
        command: Command,
    },
    /// An audio/video/data message from the harness's client.
    Media {
        /// Picks the connection.
        conn: u8,
        /// The message type.
        kind: MediaKind,
        /// The NetStream id.
        stream: u8,
        /// Timestamp in ms.
        timestamp: u16,
        /// The payload.
        body: Data<'a>,
    },
    /// The kernel takes up to `max` queued bytes of a connection (0: all of them).
    Drain {
        /// Picks the connection.
        conn: u8,
        /// How many bytes at most.
        max: u16,
    },
    /// The peer closes a connection.
    Close {
        /// Picks the connection.
        conn: u8,
    },
    /// Time passes (then due timers fire).
    Advance {
        /// Milliseconds.
        ms: u16,
    },
    /// The oldest pending request of a file is answered.
    File {
        /// Picks the file.
        which: u8,
        /// How.
        answer: FileAnswer<'a>,
    },
    /// A file appears on the in-memory disk as `live/NAME.flv` and `vod/NAME.flv`.
    PutFile {
        /// Picks the name.
        name: u8,
        /// The contents.
        data: Data<'a>,
    },
    /// A datagram to one of the node's UDP sockets.
    Datagram {
        /// Picks the socket.
        socket: u8,
        /// From whom.
        from: Peer,
        /// The bytes.
        data: Data<'a>,
    },
    /// A pending question ([`Setup::decisions`]) is answered.
    Decide {
        /// Picks the question.
        which: u8,
        /// The answer.
        answer: Answer,
    },
    /// Bob calls a gateway user.
    FarCall {
        /// Picks the user.
        user: u8,
    },
    /// Bob hangs up his calls.
    FarHangup,
}

/// A decoded input: the setup and the operations.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Script<'a> {
    /// Applications.
    pub setup: Setup,
    /// Operations, in order (at most [`MAX_OPS`]).
    pub ops: Vec<Op<'a>>,
}

impl<'a> Script<'a> {
    /// Decodes `data`; an input too short for a whole operation ends at the last whole one.
    pub fn decode(data: &'a [u8]) -> Option<Self> {
        let mut u = Unstructured::new(data);
        let setup = Setup::arbitrary(&mut u).ok()?;
        let mut ops = Vec::new();
        while !u.is_empty() && ops.len() < MAX_OPS {
            match Op::arbitrary(&mut u) {
                Ok(op) => ops.push(op),
                Err(_) => break,
            }
        }
        Some(Script { setup, ops })
    }
}

/// Writes [`Script`]s in the layout [`Script::decode`] reads (for seeds).
#[derive(Debug, Default)]
pub struct Encoder {
    out: Vec<u8>,
}

impl Encoder {
    /// Starts a script with `setup`.
    pub fn new(setup: Setup) -> Self {
        let mut e = Encoder::default();
        for b in [
            setup.gateway,
            setup.shared_rtp_ports,
            setup.merge_writes,
            setup.decisions,
            setup.record_all,
            setup.wideband,
        ] {
            e.bool(b);
        }
        e
    }

    /// The bytes so far.
    pub fn finish(self) -> Vec<u8> {
        self.out
    }

    fn u8(&mut self, v: u8) {
        self.out.push(v);
    }

    fn u16(&mut self, v: u16) {
        self.out.extend_from_slice(&v.to_le_bytes());
    }

    fn bool(&mut self, v: bool) {
        self.out.push(u8::from(v));
    }

    /// Variant `index` of an enum of `count` variants, as the derive reads it: a u32 `x`
    /// with `(x * count) >> 32 == index`.
    fn variant(&mut self, index: u32, count: u32) {
        let x = (u64::from(index) << 32).div_ceil(u64::from(count));
        self.out.extend_from_slice(&(x as u32).to_le_bytes());
    }

    fn data(&mut self, d: &[u8]) {
        let d = &d[..d.len().min(usize::from(u16::MAX))];
        self.u16(d.len() as u16);
        self.out.extend_from_slice(d);
    }

    fn app(&mut self, app: App) {
        match app {
            App::None => self.variant(0, 5),
            App::Live => self.variant(1, 5),
            App::Vod => self.variant(2, 5),
            App::Gateway { user } => {
                self.variant(3, 5);
                self.u8(user);
            }
            App::Other => self.variant(4, 5),
        }
    }

    fn command(&mut self, c: Command) {
        const N: u32 = 12;
        match c {
            Command::CreateStream => self.variant(0, N),
            Command::Publish { stream, name } => {
                self.variant(1, N);
                self.u8(stream);
                self.u8(name);
            }
            Command::Play {
                stream,
                name,
                start,
            } => {
                self.variant(2, N);
                self.u8(stream);
                self.u8(name);
                self.u8(start as u8);
            }
            Command::Pause { stream, pause, ms } => {
                self.variant(3, N);
                self.u8(stream);
                self.bool(pause);
                self.u16(ms);
            }
            Command::Seek { stream, ms } => {
                self.variant(4, N);
                self.u8(stream);
                self.u16(ms);
            }
            Command::CloseStream { stream, delete } => {
                self.variant(5, N);
                self.u8(stream);
                self.bool(delete);
            }
            Command::Invite { codec } => {
                self.variant(6, N);
                self.u8(codec);
            }
            Command::Accept { codec } => {
                self.variant(7, N);
                self.u8(codec);
            }
            Command::Reject => self.variant(8, N),
            Command::Bye => self.variant(9, N),
            Command::Dtmf { digit } => {
                self.variant(10, N);
                self.u8(digit);
            }
            Command::Hold { on } => {
                self.variant(11, N);
                self.bool(on);
            }
        }
    }

    /// Appends one operation.
    pub fn op(&mut self, op: Op<'_>) -> &mut Self {
        const N: u32 = 13;
        match op {
            Op::Open { handshake, app } => {
                self.variant(0, N);
                self.bool(handshake);
                self.app(app);
            }
            Op::Receive { conn, data } => {
                self.variant(1, N);
                self.u8(conn);
                self.data(data.0);
            }
            Op::Command { conn, command } => {
                self.variant(2, N);
                self.u8(conn);
                self.command(command);
            }
            Op::Media {
                conn,
                kind,
                stream,
                timestamp,
                body,
            } => {
                self.variant(3, N);
                self.u8(conn);
                let k = match kind {
                    MediaKind::Audio => 0,
                    MediaKind::Video => 1,
                    MediaKind::Data => 2,
                    MediaKind::Aggregate => 3,
                };
                self.variant(k, 4);
                self.u8(stream);
                self.u16(timestamp);
                self.data(body.0);
            }
            Op::Drain { conn, max } => {
                self.variant(4, N);
                self.u8(conn);
                self.u16(max);
            }
            Op::Close { conn } => {
                self.variant(5, N);
                self.u8(conn);
            }
            Op::Advance { ms } => {
                self.variant(6, N);
                self.u16(ms);
            }
            Op::File { which, answer } => {
                self.variant(7, N);
                self.u8(which);
                match answer {
                    FileAnswer::Run => self.variant(0, 3),
                    FileAnswer::Fail => self.variant(1, 3),
                    FileAnswer::Bytes(d) => {
                        self.variant(2, 3);
                        self.data(d.0);
                    }
                }
            }
            Op::PutFile { name, data } => {
                self.variant(8, N);
                self.u8(name);
                self.data(data.0);
            }
            Op::Datagram { socket, from, data } => {
                self.variant(9, N);
                self.u8(socket);
                let p = match from {
                    Peer::FarSip => 0,
                    Peer::FarRtp => 1,
                    Peer::FarVideo => 2,
                    Peer::Stranger => 3,
                };
                self.variant(p, 4);
                self.data(data.0);
            }
            Op::Decide { which, answer } => {
                self.variant(10, N);
                self.u8(which);
                let a = match answer {
                    Answer::Accept => 0,
                    Answer::Reject => 1,
                    Answer::Redirect => 2,
                };
                self.variant(a, 3);
            }
            Op::FarCall { user } => {
                self.variant(11, N);
                self.u8(user);
            }
            Op::FarHangup => self.variant(12, N),
        }
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encoder_matches_arbitrary() {
        let setup = Setup {
            gateway: true,
            shared_rtp_ports: false,
            merge_writes: true,
            decisions: false,
            record_all: true,
            wideband: false,
        };
        let payload = [1u8, 2, 3, 4, 5];
        let ops = vec![
            Op::Open {
                handshake: true,
                app: App::Gateway { user: 3 },
            },
            Op::Receive {
                conn: 1,
                data: Data(&payload),
            },
            Op::Command {
                conn: 0,
                command: Command::Play {
                    stream: 1,
                    name: 2,
                    start: -2,
                },
            },
            Op::Command {
                conn: 0,
                command: Command::Hold { on: true },
            },
            Op::Media {
                conn: 2,
                kind: MediaKind::Aggregate,
                stream: 1,
                timestamp: 999,
                body: Data(&payload[1..]),
            },
            Op::Drain { conn: 1, max: 300 },
            Op::Close { conn: 4 },
            Op::Advance { ms: 65535 },
            Op::File {
                which: 0,
                answer: FileAnswer::Bytes(Data(&payload)),
            },
            Op::PutFile {
                name: 1,
                data: Data(&payload),
            },
            Op::Datagram {
                socket: 2,
                from: Peer::FarVideo,
                data: Data(&payload[..2]),
            },
            Op::Decide {
                which: 1,
                answer: Answer::Redirect,
            },
            Op::FarCall { user: 9 },
            Op::FarHangup,
        ];
        let mut e = Encoder::new(setup);
        for op in &ops {
            e.op(*op);
        }
        let bytes = e.finish();
        assert_eq!(Script::decode(&bytes), Some(Script { setup, ops }));
    }
}
