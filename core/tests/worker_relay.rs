//! Several worker nodes sharing live streams through the relay ([`siprtmp_core::worker_relay`]),
//! wired in memory by a small relay pump with a registry of published names (what the
//! drivers' relay does with channels and a mutex): a stream published on one worker plays on
//! the others with every frame in order, a late player starts at a keyframe from the relayed
//! GOP cache, unpublishing reaches every worker, a name published on one worker is refused on
//! another (even when both publishes race), an unwatched stream is never relayed, and a
//! player on another worker puts a publisher nobody watched back on the read grid.

mod support;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use siprtmp_core::amf::Value;
use siprtmp_core::node::{ConnId, Event, Input, Node, NodeConfig};
use siprtmp_core::rtmp::client::ClientEvent;
use siprtmp_core::rtmp::command::data_message;
use siprtmp_core::rtmp::message::{type_id, RtmpMessage};
use siprtmp_core::testkit::{synthetic_av, MediaChecker, MemoryNet};
use siprtmp_core::worker_relay::{RelayIn, RelayMessage, RelayOut, RelayTarget, WorkerId};
use support::rtmp_clients::Driven;

/// A relayed media message as the pump saw it: (from, to, type, timestamp, payload address).
type Relayed = (usize, usize, u8, u32, usize);

/// N worker nodes, each with its in-memory clients, and the relay between them.
struct Group {
    nets: Vec<MemoryNet>,
    /// Published names and the worker that holds each.
    registry: HashMap<Arc<str>, usize>,
    /// Every media message relayed.
    relayed: Vec<Relayed>,
    now: Instant,
}

impl Group {
    fn new(workers: usize) -> Self {
        Self::with_config(workers, NodeConfig::default())
    }

    fn with_config(workers: usize, config: NodeConfig) -> Self {
        let now = Instant::now();
        let nets = (0..workers)
            .map(|w| {
                let node =
                    Node::new(config.clone(), now, 10 + w as u64).with_relay(WorkerId(w as u8));
                MemoryNet::new(node)
            })
            .collect();
        Self {
            nets,
            registry: HashMap::new(),
            relayed: Vec::new(),
            now,
        }
    }

    /// Moves bytes and relay messages until nothing moves. Each worker's relay outputs are
    /// carried out in order, so messages between two workers stay in order.
    fn pump(&mut self) {
        loop {
            for net in &mut self.nets {
                net.pump(self.now);
            }
            let mut moved = false;
            for from in 0..self.nets.len() {
                let outs = std::mem::take(&mut self.nets[from].relay_out);
                for out in outs {
                    moved = true;
                    self.carry_out(from, out);
                }
            }
            if !moved {
                return;
            }
        }
    }

    fn carry_out(&mut self, from: usize, out: RelayOut) {
        match out {
            RelayOut::Claim { request, stream } => {
                let granted = !self.registry.contains_key(&stream);
                if granted {
                    self.registry.insert(stream, from);
                }
                let input = Input::Relay(RelayIn::Claimed { request, granted });
                self.nets[from].node.handle(self.now, input);
            }
            RelayOut::Release { stream } => {
                if self.registry.get(&stream) == Some(&from) {
                    self.registry.remove(&stream);
                }
            }
            RelayOut::Send { to, message } => {
                let targets: Vec<usize> = match to {
                    RelayTarget::All => (0..self.nets.len()).filter(|w| *w != from).collect(),
                    RelayTarget::Worker(w) => vec![w.0 as usize],
                };
                for to in targets {
                    if let RelayMessage::Media { media, .. } = &message {
                        let m = media.message();
                        let address = m.payload.as_ptr() as usize;
                        self.relayed
                            .push((from, to, m.type_id, m.timestamp, address));
                    }
                    let input = Input::Relay(RelayIn::Received {
                        from: WorkerId(from as u8),
                        message: message.clone(),
                    });
                    self.nets[to].node.handle(self.now, input);
                }
            }
        }
    }

    /// Worker `w`, for setting up its clients.
    fn on(&mut self, w: usize) -> OnWorker<'_> {
        OnWorker { group: self, w }
    }

    /// A client of worker `w` with one created stream: (client index, stream id).
    fn client(&mut self, w: usize) -> (usize, u32) {
        self.on(w).client_with_stream("live")
    }

    fn publisher(&mut self, w: usize, name: &str) -> (usize, u32) {
        self.on(w).publisher("live", name)
    }

    fn player(&mut self, w: usize, name: &str) -> usize {
        self.on(w).player("live", name).0
    }

    fn send(&mut self, w: usize, c: usize, msg: &RtmpMessage) {
        self.nets[w].clients[c].client.send_media(msg);
        self.pump();
    }

    fn statuses(&self, w: usize, c: usize) -> Vec<String> {
        self.nets[w]
            .events(c)
            .iter()
            .filter_map(|e| match e {
                ClientEvent::Status(_, code) => Some(code.clone()),
                _ => None,
            })
            .collect()
    }

    /// Checks what client `c` of worker `w` received against `published`.
    fn check(&self, w: usize, c: usize, published: &[RtmpMessage]) -> Result<usize, String> {
        let mut checker = MediaChecker::new(published);
        for event in self.nets[w].events(c) {
            if let ClientEvent::Media(m) = event {
                checker.check(m);
            }
        }
        checker.finish()
    }

    fn media_relayed_to(&self, to: usize) -> usize {
        self.relayed.iter().filter(|r| r.1 == to).count()
    }
}

/// One worker of a [`Group`], whose clients' bytes move with the whole group's.
struct OnWorker<'a> {
    group: &'a mut Group,
    w: usize,
}

impl Driven for OnWorker<'_> {
    fn node(&mut self) -> (&mut MemoryNet, Instant) {
        (&mut self.group.nets[self.w], self.group.now)
    }

    fn pump(&mut self) {
        self.group.pump();
    }
}

fn metadata(stream_id: u32) -> RtmpMessage {
    data_message(
        stream_id,
        0,
        &[
            Value::string("@setDataFrame"),
            Value::string("onMetaData"),
            Value::object([("width", Value::Number(320.0))]),
        ],
    )
}

fn got_metadata(group: &Group, w: usize, c: usize) -> bool {
    group.nets[w].events(c).iter().any(|e| match e {
        ClientEvent::Media(m) if m.type_id == type_id::DATA_AMF0 => {
            siprtmp_core::rtmp::command::message_values(m)
                .is_ok_and(|v| v.first().and_then(Value::as_str) == Some("onMetaData"))
        }
        _ => false,
    })
}

#[test]
fn a_stream_published_on_one_worker_plays_on_another() {
    let mut g = Group::new(2);
    let early = g.player(1, "cam");
    assert_eq!(
        g.statuses(1, early),
        ["NetStream.Play.Reset", "NetStream.Play.Start"]
    );
    let (p, s) = g.publisher(0, "cam");
    assert_eq!(
        g.statuses(1, early).last().map(String::as_str),
        Some("NetStream.Play.PublishNotify"),
        "the waiting player on the other worker hears of the publish"
    );
    g.send(0, p, &metadata(s));
    let published = synthetic_av(s, Duration::from_secs(6));
    let mut late = None;
    for msg in &published {
        g.send(0, p, msg);
        // The late player joins mid-GOP, after the keyframe at 2 s.
        if late.is_none() && msg.timestamp >= 2500 {
            late = Some(g.player(1, "cam"));
        }
    }
    let late = late.unwrap();
    let frames = published.len() - 2; // all but the two codec configurations
    assert_eq!(
        g.check(1, early, &published),
        Ok(frames),
        "every frame, in order"
    );
    assert!(got_metadata(&g, 1, early));
    // The late player starts at the relayed GOP's keyframe (2 s) and gets everything from
    // there, with metadata and both codec configurations first.
    let first_video = g.nets[1].events(late).iter().find_map(|e| match e {
        ClientEvent::Media(m) if m.type_id == type_id::VIDEO && m.payload[1] == 1 => Some(m),
        _ => None,
    });
    let first_video = first_video.expect("late player got video");
    assert_eq!(first_video.payload[0], 0x17, "starts on a keyframe");
    assert_eq!(first_video.timestamp, 2000);
    assert!(g.check(1, late, &published).is_ok());
    assert!(got_metadata(&g, 1, late));

    // Unpublishing on worker 0 reaches the players on worker 1.
    g.nets[0].clients[p].client.call(s, "closeStream", vec![]);
    g.pump();
    for c in [early, late] {
        assert_eq!(
            g.statuses(1, c).last().map(String::as_str),
            Some("NetStream.Play.UnpublishNotify")
        );
    }
    assert!(g.registry.is_empty(), "the name went back to the registry");
}

#[test]
fn a_name_published_on_one_worker_is_refused_on_another() {
    let mut g = Group::new(2);
    let _publisher = g.publisher(0, "cam");
    let (c, id) = g.client(1);
    g.nets[1].clients[c].client.publish(id, "cam");
    g.pump();
    assert_eq!(g.statuses(1, c), ["NetStream.Publish.BadName"]);
    // Another name is fine.
    g.nets[1].clients[c].client.publish(id, "other");
    g.pump();
    assert_eq!(
        g.statuses(1, c).last().map(String::as_str),
        Some("NetStream.Publish.Start")
    );
}

#[test]
fn racing_publishes_of_one_name_on_two_workers_let_exactly_one_through() {
    let mut g = Group::new(3);
    let (a, a_id) = g.client(0);
    let (b, b_id) = g.client(2);
    // Both publish commands reach their nodes before either claim is answered.
    g.nets[0].clients[a].client.publish(a_id, "cam");
    g.nets[2].clients[b].client.publish(b_id, "cam");
    g.nets[0].pump(g.now);
    g.nets[2].pump(g.now);
    assert!(g.nets[0]
        .relay_out
        .iter()
        .any(|o| matches!(o, RelayOut::Claim { .. })));
    assert!(g.nets[2]
        .relay_out
        .iter()
        .any(|o| matches!(o, RelayOut::Claim { .. })));
    g.pump();
    let outcomes = [g.statuses(0, a), g.statuses(2, b)];
    assert_eq!(
        outcomes,
        [
            vec!["NetStream.Publish.Start".to_owned()],
            vec!["NetStream.Publish.BadName".to_owned()]
        ]
    );
    // A player on the third worker sees the winner's stream.
    let player = g.player(1, "cam");
    g.send(
        0,
        a,
        &RtmpMessage::new(type_id::AUDIO, a_id, 0, vec![0xaf, 1, 7]),
    );
    assert!(g.nets[1].events(player).iter().any(
        |e| matches!(e, ClientEvent::Media(m) if m.type_id == type_id::AUDIO && m.payload[2] == 7)
    ));
}

#[test]
fn a_name_freed_on_one_worker_can_be_published_on_another() {
    let mut g = Group::new(2);
    let player = g.player(0, "cam");
    let (p, s) = g.publisher(0, "cam");
    g.nets[0].clients[p].client.call(s, "closeStream", vec![]);
    g.pump();
    let (p2, s2) = g.publisher(1, "cam");
    assert_eq!(
        g.statuses(0, player)[2..],
        [
            "NetStream.Play.PublishNotify",
            "NetStream.Play.UnpublishNotify",
            "NetStream.Play.PublishNotify"
        ]
    );
    let published = synthetic_av(s2, Duration::from_secs(3));
    for msg in &published {
        g.send(1, p2, msg);
    }
    let frames = published.len() - 2; // all but the two codec configurations
    assert_eq!(g.check(0, player, &published), Ok(frames));
}

#[test]
fn only_workers_with_players_get_media_and_payloads_are_shared() {
    let mut g = Group::new(3);
    let (p, s) = g.publisher(0, "cam");
    let published = synthetic_av(s, Duration::from_secs(1));
    for msg in &published[..10] {
        g.send(0, p, msg);
    }
    assert!(
        g.relayed.is_empty(),
        "nobody watches: nothing crosses threads"
    );

    let on_1 = g.player(1, "cam");
    let on_2 = g.player(2, "cam");
    let before = g.relayed.len();
    for msg in &published[10..] {
        g.send(0, p, msg);
    }
    let live: Vec<Relayed> = g.relayed[before..].to_vec();
    assert_eq!(
        live.len(),
        2 * (published.len() - 10),
        "one relay message per message and subscribed worker"
    );
    // Both workers got the very same payload buffer for each message: shared, not copied.
    for pair in live.chunks(2) {
        assert_eq!((pair[0].1, pair[1].1), (1, 2));
        assert_eq!(pair[0].4, pair[1].4, "payload copied for a worker");
    }
    assert!(g.check(1, on_1, &published).is_ok());
    assert!(g.check(2, on_2, &published).is_ok());

    // Worker 2's player leaves: worker 2 unsubscribes and gets nothing more.
    let conn: ConnId = g.nets[2].clients[on_2].conn;
    g.nets[2].node.handle(g.now, Input::Closed { conn });
    g.nets[2].clients[on_2].closed = true;
    g.pump();
    let to_2 = g.media_relayed_to(2);
    let to_1 = g.media_relayed_to(1);
    g.send(
        0,
        p,
        &RtmpMessage::new(type_id::AUDIO, s, 5000, vec![0xaf, 1, 9]),
    );
    assert_eq!(g.media_relayed_to(2), to_2);
    assert_eq!(g.media_relayed_to(1), to_1 + 1);
}

#[test]
fn connection_ids_name_their_worker() {
    let mut g = Group::new(2);
    let (_, _) = g.publisher(1, "cam");
    let started = g.nets[1].node_events.iter().find_map(|e| match e {
        Event::PublishStarted { conn, .. } => Some(*conn),
        _ => None,
    });
    let conn = started.expect("publish started");
    assert_eq!(conn.worker(), WorkerId(1));
    assert!(conn.to_string().starts_with("w1c"), "{conn}");
}

#[test]
fn a_player_on_another_worker_puts_a_publisher_nobody_watched_back_on_the_read_grid() {
    const GRID: Duration = Duration::from_millis(40);
    const UNWATCHED: Duration = Duration::from_millis(400);
    let mut config = NodeConfig::default();
    config.server.merge_writes = Some(GRID);
    let mut g = Group::with_config(2, config);
    g.nets[0].pace_reads();
    let (p, s) = g.publisher(0, "cam");
    let read_every = |g: &Group| g.nets[0].clients[p].read_every;
    assert_eq!(
        read_every(&g),
        Some(UNWATCHED),
        "nobody watches: every tenth tick"
    );

    // A player on worker 1: worker 1 subscribes, and the publisher is on every tick at once.
    let on_1 = g.player(1, "cam");
    assert_eq!(read_every(&g), Some(GRID), "watched from another worker");
    let msg = RtmpMessage::new(type_id::AUDIO, s, 0, vec![0xaf, 1, 7]);
    g.send(0, p, &msg);
    g.now += GRID;
    g.pump();
    assert_eq!(
        g.nets[1].media(on_1),
        [(type_id::AUDIO, 0, msg.payload.to_vec())],
        "read at the next tick"
    );

    // It leaves: worker 1 unsubscribes, and from its next message the publisher is read every
    // tenth tick again.
    let conn: ConnId = g.nets[1].clients[on_1].conn;
    g.nets[1].node.handle(g.now, Input::Closed { conn });
    g.nets[1].clients[on_1].closed = true;
    g.pump();
    g.send(
        0,
        p,
        &RtmpMessage::new(type_id::AUDIO, s, 20, vec![0xaf, 1, 8]),
    );
    g.now += GRID;
    g.pump();
    assert_eq!(read_every(&g), Some(UNWATCHED));
}
