//! The soak's live streams: a publisher per stream for the whole run, and `slots` players
//! that each watch a stream for a while, leave, and come back as a new player, again and
//! again.
//!
//! Every message a publisher sends says which stream it belongs to, its place in the
//! stream (a sequence number) and its place among the stream's video or audio frames, and
//! is otherwise a fixed pattern: a player checks each message it gets against that, byte
//! for byte, without anyone keeping the stream. A player must get the two codec
//! configurations, then a keyframe, then every later message with no gap, in order; and
//! when it leaves, every message published early enough to have reached it (more than two
//! worst-case crossings of the network before) must have. What was still in flight when it
//! left is counted, not lost.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, VecDeque};
use std::time::Duration;

use bytes::Bytes;
use siprtmp_core::rng::SeededRng;
use siprtmp_core::rtmp::client::ClientEvent;
use siprtmp_core::rtmp::message::{type_id, RtmpMessage};

use super::net::{Net, Owner};
use super::wire::ConnRef;
use super::{Failures, SoakConfig};

/// Video frames a second, and every how many frames a keyframe.
const FPS: u64 = 12;
const GOP: u32 = 24;
/// Sizes of keyframes, other video frames and audio frames (bytes).
const KEY_SIZE: usize = 6000;
const INTER_SIZE: usize = 900;
const AUDIO_SIZE: usize = 60;
/// Codec configurations at the start of every stream: AVC and AAC sequence headers.
const VIDEO_CONFIG: [u8; 9] = [0x17, 0x00, 0, 0, 0, 1, 0x42, 0xc0, 0x1e];
const AUDIO_CONFIG: [u8; 4] = [0xaf, 0x00, 0x12, 0x10];
/// Header of a media frame's body after the codec bytes: stream, sequence, index.
const ID_LEN: usize = 4 + 8 + 4;

/// A stream's messages in order: the two configurations, then 12 fps video (a keyframe every
/// two seconds) and 50 audio frames a second, by timestamp (video first on a tie).
#[derive(Debug, Default)]
struct Schedule {
    seq: u64,
    video: u64,
    audio: u64,
}

impl Schedule {
    /// The timestamp (ms) of the next message.
    fn next_at(&self) -> u64 {
        if self.seq < 2 {
            return 0;
        }
        (self.video * 1000 / FPS).min(self.audio * 20)
    }

    /// The next message of stream `stream`.
    fn next(&mut self, stream: u32, filler: &[u8]) -> RtmpMessage {
        let seq = self.seq;
        self.seq += 1;
        match seq {
            0 => return RtmpMessage::new(type_id::VIDEO, 1, 0, VIDEO_CONFIG.to_vec()),
            1 => return RtmpMessage::new(type_id::AUDIO, 1, 0, AUDIO_CONFIG.to_vec()),
            _ => {}
        }
        let video_at = self.video * 1000 / FPS;
        let audio_at = self.audio * 20;
        let (kind, head, index, at, size): (u8, &[u8], u64, u64, usize) = if video_at <= audio_at {
            let i = self.video;
            self.video += 1;
            // (A remainder compared, not `is_multiple_of`: the crate's MSRV predates it.)
            let in_gop = i % u64::from(GOP);
            let key = in_gop == 0;
            let head: &[u8] = if key {
                &[0x17, 1, 0, 0, 0]
            } else {
                &[0x27, 1, 0, 0, 0]
            };
            (
                type_id::VIDEO,
                head,
                i,
                video_at,
                if key { KEY_SIZE } else { INTER_SIZE },
            )
        } else {
            let j = self.audio;
            self.audio += 1;
            (type_id::AUDIO, &[0xaf, 1], j, audio_at, AUDIO_SIZE)
        };
        let mut body = Vec::with_capacity(size);
        body.extend_from_slice(head);
        body.extend_from_slice(&stream.to_be_bytes());
        body.extend_from_slice(&seq.to_be_bytes());
        body.extend_from_slice(&(index as u32).to_be_bytes());
        body.extend_from_slice(&filler[..size - body.len()]);
        RtmpMessage::new(kind, 1, at as u32, body)
    }
}

/// What a player has seen of its stream.
#[derive(Debug, Default)]
struct Watch {
    configs: u8,
    /// The sequence number of the next message due.
    next: Option<u64>,
    frames: u64,
}

impl Watch {
    /// Checks one message against the stream's schedule; a problem is returned.
    fn check(&mut self, stream: u32, msg: &RtmpMessage, filler: &[u8]) -> Result<(), String> {
        let p = &msg.payload[..];
        if (msg.type_id == type_id::VIDEO && p == VIDEO_CONFIG)
            || (msg.type_id == type_id::AUDIO && p == AUDIO_CONFIG)
        {
            self.configs += 1;
            return Ok(());
        }
        let head = match (msg.type_id, p.first()) {
            (type_id::VIDEO, Some(0x17 | 0x27)) => 5,
            (type_id::AUDIO, Some(0xaf)) => 2,
            _ => {
                return Err(format!(
                    "an unknown message {} ({} bytes)",
                    msg.type_id,
                    p.len()
                ))
            }
        };
        let id = p.get(head..head + ID_LEN).ok_or("a message too short")?;
        let of = u32::from_be_bytes(id[0..4].try_into().unwrap());
        let seq = u64::from_be_bytes(id[4..12].try_into().unwrap());
        let index = u64::from(u32::from_be_bytes(id[12..16].try_into().unwrap()));
        let (size, at) = if msg.type_id == type_id::VIDEO {
            let in_gop = index % u64::from(GOP);
            let key = in_gop == 0;
            if key != (p[0] == 0x17) {
                return Err(format!("video frame {index}: wrong frame type"));
            }
            (if key { KEY_SIZE } else { INTER_SIZE }, index * 1000 / FPS)
        } else {
            (AUDIO_SIZE, index * 20)
        };
        if of != stream
            || p.len() != size
            || p[head + ID_LEN..] != filler[..size - head - ID_LEN]
            || u64::from(msg.timestamp) != at
        {
            return Err(format!("message {seq}: not as published"));
        }
        match self.next {
            None if self.configs < 2 => {
                return Err(format!("message {seq} before the codec configurations"))
            }
            None if !(msg.type_id == type_id::VIDEO && p[0] == 0x17) => {
                return Err(format!("started on message {seq}, not a keyframe"))
            }
            Some(next) if seq != next => return Err(format!("message {seq} where {next} was due")),
            _ => {}
        }
        self.next = Some(seq + 1);
        self.frames += 1;
        Ok(())
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum PublisherPhase {
    Connecting,
    Publishing,
    Live,
    Stopped,
}

#[derive(Debug)]
struct Publisher {
    conn: ConnRef,
    phase: PublisherPhase,
    /// The message stream it publishes on.
    stream_id: u32,
    /// When the stream went live (ms): timestamps count from here.
    start: u64,
    schedule: Schedule,
    /// (ms, messages sent by then) over the last seconds.
    history: VecDeque<(u64, u64)>,
}

impl Publisher {
    /// Messages sent by `at` (ms).
    fn sent_by(&self, at: u64) -> u64 {
        self.history
            .iter()
            .rev()
            .find(|(t, _)| *t <= at)
            .map_or(0, |(_, n)| *n)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum PlayerPhase {
    Idle,
    Watching,
    Done,
}

#[derive(Debug)]
struct Player {
    phase: PlayerPhase,
    token: u32,
    conn: Option<ConnRef>,
    stream: u32,
    watch: Watch,
    /// When it sent `play` (ms).
    play_sent: Option<u64>,
}

/// Totals over every player.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub(crate) struct PlayerTotals {
    /// Player sessions started.
    pub sessions: u64,
    /// Sessions that left having received every message due.
    pub completed: u64,
    /// Messages published, over every stream.
    pub published: u64,
    /// Messages players received and checked.
    pub delivered: u64,
    /// Messages published before a player left that were still in flight to it.
    pub in_flight_at_leave: u64,
    /// Messages due to a player (published two worst-case crossings before it left) that it
    /// never got: must be 0.
    pub missing: u64,
    /// Most players watching at once.
    pub peak_watching: u64,
}

/// The publishers and players.
pub(crate) struct Players {
    publishers: Vec<Publisher>,
    players: Vec<Player>,
    agenda: BinaryHeap<Reverse<(u64, u32, u32)>>,
    rng: SeededRng,
    watch: (u64, u64),
    pause: (u64, u64),
    /// Two worst-case crossings of the network and a millisecond (ms).
    lag: u64,
    filler: Bytes,
    winding_down: bool,
    watching: u64,
    /// Totals.
    pub totals: PlayerTotals,
}

const HISTORY_MS: u64 = 5_000;

impl Players {
    /// `config.streams` publishers (started at once) and `config.players` players, each
    /// starting within the ramp (after a second, when the streams are up), watching for a
    /// time in `config.watch` and pausing for one in `config.player_pause`.
    pub(crate) fn new(net: &mut Net, config: &SoakConfig) -> Self {
        let (streams, slots) = (config.streams, config.players);
        let (watch, pause, ramp) = (config.watch, config.player_pause, config.ramp);
        let tcp_max_ms = config.net.tcp_max_ms();
        let seed = config.seed ^ 0x5eed_0005;
        let mut rng = SeededRng::new(seed);
        let publishers = (0..streams)
            .map(|k| Publisher {
                conn: net.connect("live", Owner::Publisher(k)),
                phase: PublisherPhase::Connecting,
                stream_id: 0,
                start: 0,
                schedule: Schedule::default(),
                history: VecDeque::new(),
            })
            .collect();
        let mut agenda = BinaryHeap::new();
        let ramp_ms = ramp.as_millis() as u64;
        for slot in 0..slots {
            agenda.push(Reverse((1000 + rng.below(ramp_ms.max(1)), slot, 0)));
        }
        let lag = 2 * tcp_max_ms + 1;
        assert!(
            ms(watch.0) > 2 * lag,
            "players must watch longer than the network can hold their messages"
        );
        Self {
            publishers,
            players: (0..slots)
                .map(|slot| Player {
                    phase: PlayerPhase::Idle,
                    token: 0,
                    conn: None,
                    stream: slot % streams.max(1),
                    watch: Watch::default(),
                    play_sent: None,
                })
                .collect(),
            agenda,
            rng,
            watch: (ms(watch.0), ms(watch.1)),
            pause: (ms(pause.0), ms(pause.1)),
            lag,
            filler: Bytes::from(
                (0..KEY_SIZE)
                    .map(|i| (i * 131 + 7) as u8)
                    .collect::<Vec<u8>>(),
            ),
            winding_down: false,
            watching: 0,
            totals: PlayerTotals::default(),
        }
    }

    /// No new players; the ones watching leave once everything published reached them;
    /// publishers stop now.
    pub(crate) fn wind_down(&mut self, net: &mut Net) {
        self.winding_down = true;
        for p in &mut self.publishers {
            if p.phase == PublisherPhase::Live {
                p.history.push_back((net.now_ms, p.schedule.seq));
            }
            p.phase = PublisherPhase::Stopped;
        }
        let leave = net.now_ms + self.lag + 1;
        for slot in 0..self.players.len() as u32 {
            let p = &mut self.players[slot as usize];
            p.token = p.token.wrapping_add(1);
            if p.phase == PlayerPhase::Idle {
                p.phase = PlayerPhase::Done;
            } else {
                let token = p.token;
                self.agenda.push(Reverse((leave, slot, token)));
            }
        }
    }

    /// Whether every player has left (after [`Players::wind_down`]).
    pub(crate) fn all_done(&self) -> bool {
        self.players.iter().all(|p| p.phase == PlayerPhase::Done)
    }

    /// The players not done (the first few).
    pub(crate) fn pending(&self) -> String {
        let list: Vec<String> = self
            .players
            .iter()
            .enumerate()
            .filter(|(_, p)| p.phase != PlayerPhase::Done)
            .take(5)
            .map(|(i, p)| format!("player {i} {:?}", p.phase))
            .collect();
        list.join("; ")
    }

    /// The publishers close their connections (after every player left).
    pub(crate) fn close_publishers(&mut self, net: &mut Net) {
        for p in &self.publishers {
            net.close(p.conn);
        }
    }

    /// One millisecond: publishers send what is due, players join and leave.
    pub(crate) fn tick(&mut self, net: &mut Net, failures: &mut Failures) {
        let now = net.now_ms;
        for (k, p) in self.publishers.iter_mut().enumerate() {
            if p.phase != PublisherPhase::Live {
                continue;
            }
            let mut sent = false;
            while p.start + p.schedule.next_at() <= now {
                let mut msg = p.schedule.next(k as u32, &self.filler);
                msg.stream_id = p.stream_id;
                net.client(p.conn).send_media(&msg);
                self.totals.published += 1;
                sent = true;
            }
            if sent {
                net.flush_client(p.conn);
                p.history.push_back((now, p.schedule.seq));
                while p
                    .history
                    .front()
                    .is_some_and(|(t, _)| *t + HISTORY_MS < now)
                {
                    p.history.pop_front();
                }
            }
        }
        while let Some(&Reverse((at, slot, token))) = self.agenda.peek() {
            if at > now {
                break;
            }
            self.agenda.pop();
            if self.players[slot as usize].token == token {
                self.step(net, slot, failures);
            }
        }
    }

    fn step(&mut self, net: &mut Net, slot: u32, failures: &mut Failures) {
        let now = net.now_ms;
        let p = &mut self.players[slot as usize];
        p.token = p.token.wrapping_add(1);
        let token = p.token;
        match p.phase {
            PlayerPhase::Idle if self.winding_down => p.phase = PlayerPhase::Done,
            PlayerPhase::Idle => {
                p.conn = Some(net.connect("live", Owner::Player(slot)));
                p.watch = Watch::default();
                p.play_sent = None;
                p.phase = PlayerPhase::Watching;
                self.totals.sessions += 1;
                self.watching += 1;
                self.totals.peak_watching = self.totals.peak_watching.max(self.watching);
                let stay = self.watch.0 + self.rng.below(self.watch.1 - self.watch.0 + 1);
                self.agenda.push(Reverse((now + stay, slot, token)));
            }
            PlayerPhase::Watching => {
                self.leave(net, slot, failures);
            }
            PlayerPhase::Done => {}
        }
    }

    /// The player leaves: every message published before `now - lag` must have reached it.
    fn leave(&mut self, net: &mut Net, slot: u32, failures: &mut Failures) {
        let now = net.now_ms;
        let p = &mut self.players[slot as usize];
        let publisher = &self.publishers[p.stream as usize];
        let received = p.watch.next.unwrap_or(0);
        if self.winding_down && p.play_sent.is_none_or(|sent| sent + self.lag > now) {
            // Joined just before the wind-down: it leaves once it has played for long
            // enough to be judged.
            let token = p.token;
            self.agenda.push(Reverse((now + self.lag, slot, token)));
            return;
        }
        match p.play_sent {
            Some(sent) if sent + self.lag <= now => {
                let due = publisher.sent_by(now - self.lag);
                let by_now = publisher.sent_by(now);
                if received < due {
                    self.totals.missing += due - received;
                    failures.note(format!(
                        "player {slot} on stream {}: left with {received} of the {due} messages due",
                        p.stream
                    ));
                } else {
                    self.totals.completed += 1;
                }
                self.totals.in_flight_at_leave += by_now.saturating_sub(received);
            }
            _ => failures.note(format!(
                "player {slot}: never got to play (conn {:?}: {:?})",
                p.conn,
                p.conn
                    .and_then(|c| net.conn(c))
                    .map(|c| (c.id, c.client.connect_info().is_some()))
            )),
        }
        self.totals.delivered += p.watch.frames;
        if let Some(conn) = p.conn.take() {
            net.close(conn);
        }
        self.watching -= 1;
        p.token = p.token.wrapping_add(1);
        let token = p.token;
        if self.winding_down {
            p.phase = PlayerPhase::Done;
        } else {
            p.phase = PlayerPhase::Idle;
            let pause = self.pause.0 + self.rng.below(self.pause.1 - self.pause.0 + 1);
            self.agenda.push(Reverse((now + pause, slot, token)));
        }
    }

    /// What a publisher's client heard.
    pub(crate) fn publisher_event(
        &mut self,
        net: &mut Net,
        k: u32,
        event: ClientEvent,
        failures: &mut Failures,
    ) {
        let p = &mut self.publishers[k as usize];
        match event {
            ClientEvent::Connected => {
                let client = net.client(p.conn);
                client.set_chunk_size(4096);
                client.create_stream();
                net.flush_client(p.conn);
            }
            ClientEvent::StreamCreated(id) => {
                net.client(p.conn).publish(id, &format!("s{k}"));
                net.flush_client(p.conn);
                p.stream_id = id;
                p.phase = PublisherPhase::Publishing;
            }
            ClientEvent::Status(_, code) if code == "NetStream.Publish.Start" => {
                p.phase = PublisherPhase::Live;
                p.start = net.now_ms;
            }
            ClientEvent::Status(_, code) if code.contains("Failed") || code.contains("Denied") => {
                failures.note(format!("publisher {k}: {code}"));
            }
            ClientEvent::ConnectRejected(code) => failures.note(format!("publisher {k}: {code}")),
            _ => {}
        }
    }

    /// What a player's client heard.
    pub(crate) fn player_event(
        &mut self,
        net: &mut Net,
        slot: u32,
        event: ClientEvent,
        failures: &mut Failures,
    ) {
        let p = &mut self.players[slot as usize];
        let Some(conn) = p.conn else { return };
        match event {
            ClientEvent::Connected => {
                net.client(conn).create_stream();
                net.flush_client(conn);
            }
            ClientEvent::StreamCreated(id) => {
                net.client(conn).play(id, &format!("s{}", p.stream), -2.0);
                net.flush_client(conn);
                p.play_sent = Some(net.now_ms);
            }
            ClientEvent::Media(m) if m.type_id == type_id::AUDIO || m.type_id == type_id::VIDEO => {
                if let Err(e) = p.watch.check(p.stream, &m, &self.filler) {
                    failures.note(format!("player {slot} on stream {}: {e}", p.stream));
                    // Resynchronise on the next keyframe, so that one fault is told once.
                    p.watch.next = None;
                }
            }
            ClientEvent::ConnectRejected(code) => failures.note(format!("player {slot}: {code}")),
            _ => {}
        }
    }

    /// The node closed a publisher's or player's connection.
    pub(crate) fn connection_lost(&mut self, owner: Owner, failures: &mut Failures) {
        failures.note(format!("{owner:?}: the node closed the connection"));
    }
}

fn ms(d: Duration) -> u64 {
    d.as_millis() as u64
}
