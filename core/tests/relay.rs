//! Relays in memory and in virtual time: a node (the *edge*, or the server that pushes) and
//! its upstream (a second node) wired by [`TcpBridge`] through the edge's own TCP, exactly as
//! a driver's TCP executor carries a relay session. Deterministic: every wait is virtual.
//!
//! Push: the upstream's player gets the metadata, the configurations and every frame; a
//! failed upstream is retried on the backoff schedule while the publisher and its players go
//! on; a push whose upstream stops reading drops video to the next keyframe past the soft
//! backlog and reconnects past the hard one. Pull: one upstream session per name however
//! many players ask at once, closed the idle time after the last player left (not before,
//! and not when a player comes back in time); `StreamNotFound` for a name the upstream lacks;
//! an upstream that breaks tells the players `UnpublishNotify` and is retried while they wait.

mod support;

use std::time::{Duration, Instant};

use siprtmp_core::node::{
    AppConfig, Event, Node, NodeConfig, RelayLimits, RelayPhase, RelayUrl, ServerConfig,
};
use siprtmp_core::rtmp::client::ClientEvent;
use siprtmp_core::rtmp::message::{type_id, RtmpMessage};
use siprtmp_core::testkit::{synthetic_av, MediaChecker, MemoryNet, TcpBridge};
use support::rtmp_clients::Driven;

/// The upstream's address (in memory only).
const UPSTREAM: &str = "10.0.0.1:1935";

/// Relay timers short enough to see several retries in a test's virtual minute.
fn limits() -> RelayLimits {
    RelayLimits {
        backoff_min: Duration::from_millis(500),
        backoff_max: Duration::from_secs(4),
        setup_timeout: Duration::from_secs(5),
        pull_idle_timeout: Duration::from_secs(3),
        ..RelayLimits::default()
    }
}

/// A node whose application `live` pushes to (`push`) or pulls from the upstream.
fn relaying(push: bool, url: &str) -> NodeConfig {
    let url = RelayUrl::parse(url).unwrap();
    let app = if push {
        AppConfig {
            push: vec![url],
            ..AppConfig::default()
        }
    } else {
        AppConfig {
            pull: vec![url],
            ..AppConfig::default()
        }
    };
    let mut server = ServerConfig {
        relay: limits(),
        ..ServerConfig::default()
    };
    server.apps.insert("live".into(), app);
    NodeConfig {
        server,
        ..NodeConfig::default()
    }
}

/// An edge (or pushing server), its upstream, and the bridge between them.
struct World {
    edge: MemoryNet,
    upstream: MemoryNet,
    bridge: TcpBridge,
    start: Instant,
    now: Instant,
    /// The edge's events with the (virtual) time each came at, since the start.
    stamped: Vec<(Duration, Event)>,
    /// The upstream's questions (with decisions on), each accepted as it comes.
    questions: Vec<siprtmp_core::node::Question>,
    /// The edge's access rules (with decisions on there): the answer to each question.
    edge_rules: fn(&siprtmp_core::node::Question) -> siprtmp_core::node::Decision,
    /// The edge's questions answered so far.
    edge_answered: usize,
}

impl World {
    fn new(edge: NodeConfig, upstream: NodeConfig) -> Self {
        let now = Instant::now();
        let mut world = Self {
            edge: MemoryNet::new(Node::new(edge, now, 1)),
            upstream: MemoryNet::new(Node::new(upstream, now, 2)),
            bridge: TcpBridge::new(UPSTREAM.parse().unwrap()),
            start: now,
            now,
            stamped: Vec::new(),
            questions: Vec::new(),
            edge_rules: |_| siprtmp_core::node::Decision::Accept,
            edge_answered: 0,
        };
        world.edge.tcp.listen(world.bridge.addr);
        world
    }

    fn pump(&mut self) {
        loop {
            self.edge.pump(self.now);
            self.upstream.pump(self.now);
            let mut moved = self
                .bridge
                .exchange(self.now, &mut self.edge, &mut self.upstream);
            let asked: Vec<_> = self
                .upstream
                .node_events
                .iter()
                .filter_map(|e| match e {
                    Event::Decide { request, question } => Some((*request, question.clone())),
                    _ => None,
                })
                .skip(self.questions.len())
                .collect();
            for (request, question) in asked {
                self.questions.push(question);
                let accept = siprtmp_core::node::Decision::Accept;
                self.upstream
                    .node
                    .decide(self.now, request, accept)
                    .unwrap();
                moved = true;
            }
            let asked: Vec<_> = self
                .edge
                .node_events
                .iter()
                .filter_map(|e| match e {
                    Event::Decide { request, question } => Some((*request, question.clone())),
                    _ => None,
                })
                .skip(self.edge_answered)
                .collect();
            for (request, question) in asked {
                self.edge_answered += 1;
                let decision = (self.edge_rules)(&question);
                self.edge.node.decide(self.now, request, decision).unwrap();
                moved = true;
            }
            let at = self.now - self.start;
            let new = self.edge.node_events.len() - self.stamped.len();
            let events = &self.edge.node_events[self.edge.node_events.len() - new..];
            self.stamped.extend(events.iter().map(|e| (at, e.clone())));
            if !moved {
                return;
            }
        }
    }

    /// Virtual time moves to `until`, each node's timers firing at their deadlines.
    fn run_until(&mut self, until: Instant) {
        self.pump();
        let mut turns = 0;
        loop {
            let next = [
                self.edge.node.poll_timeout(),
                self.upstream.node.poll_timeout(),
            ]
            .into_iter()
            .flatten()
            .min();
            let Some(next) = next.filter(|t| *t <= until) else {
                break;
            };
            turns += 1;
            assert!(turns < 100_000, "timers do not move at {next:?}");
            self.now = self.now.max(next);
            for net in [&mut self.edge, &mut self.upstream] {
                if net.node.poll_timeout().is_some_and(|t| t <= self.now) {
                    net.node
                        .handle(self.now, siprtmp_core::node::Input::Timeout);
                }
            }
            self.pump();
        }
        self.now = self.now.max(until);
        self.pump();
    }

    fn advance(&mut self, by: Duration) {
        self.run_until(self.now + by);
    }

    /// Client set-up on the edge or on the upstream.
    fn on(&mut self, upstream: bool) -> On<'_> {
        On {
            world: self,
            upstream,
        }
    }

    /// Publishes `msgs` from edge client `c` in real (virtual) time: each message when its
    /// timestamp is due, counted from `from`.
    fn publish(&mut self, c: usize, msgs: &[RtmpMessage], from: Instant) {
        self.publish_on(false, c, msgs, from, |_, _| {});
    }

    /// Publishes `msgs` from client `c` of the edge or the upstream in real (virtual) time,
    /// calling `between(world, message index)` before each.
    fn publish_on(
        &mut self,
        upstream: bool,
        c: usize,
        msgs: &[RtmpMessage],
        from: Instant,
        mut between: impl FnMut(&mut World, usize),
    ) {
        for (i, msg) in msgs.iter().enumerate() {
            self.run_until(from + Duration::from_millis(u64::from(msg.timestamp)));
            between(self, i);
            let net = if upstream {
                &mut self.upstream
            } else {
                &mut self.edge
            };
            net.clients[c].client.send_media(msg);
            self.pump();
        }
    }

    /// The relay events of the edge: (time since the start, phase).
    fn relay_events(&self) -> Vec<(Duration, RelayPhase)> {
        self.stamped
            .iter()
            .filter_map(|(at, e)| match e {
                Event::Relay { phase, .. } => Some((*at, phase.clone())),
                _ => None,
            })
            .collect()
    }

    /// When the edge's relay events of the kind `pick` accepts came.
    fn relay_times(&self, pick: impl Fn(&RelayPhase) -> bool) -> Vec<Duration> {
        self.relay_events()
            .into_iter()
            .filter(|(_, phase)| pick(phase))
            .map(|(at, _)| at)
            .collect()
    }
}

/// One side of a [`World`] as the shared client set-up sees it.
struct On<'a> {
    world: &'a mut World,
    upstream: bool,
}

impl Driven for On<'_> {
    fn node(&mut self) -> (&mut MemoryNet, Instant) {
        let now = self.world.now;
        let net = if self.upstream {
            &mut self.world.upstream
        } else {
            &mut self.world.edge
        };
        (net, now)
    }

    fn pump(&mut self) {
        self.world.pump();
    }
}

fn media_of(events: &[ClientEvent]) -> Vec<RtmpMessage> {
    events
        .iter()
        .filter_map(|e| match e {
            ClientEvent::Media(m) => Some(m.clone()),
            _ => None,
        })
        .collect()
}

fn check(who: &str, published: &[RtmpMessage], events: &[ClientEvent]) -> usize {
    let mut checker = MediaChecker::new(published);
    for msg in media_of(events) {
        checker.check(&msg);
    }
    checker.finish().unwrap_or_else(|e| panic!("{who}: {e}"))
}

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

/// A push carries metadata, configurations and every frame upstream: a player there from
/// before the publish gets the same as the local player; the upstream is asked for the URL's
/// stream name with its query, which `connect`'s application and tcUrl carry too; the
/// unpublish ends the push (the upstream's player hears UnpublishNotify).
#[test]
fn a_push_republishes_everything_and_ends_with_the_publication() {
    let mut world = World::new(
        relaying(true, "rtmp://10.0.0.1:1935/live/mirror?token=t1"),
        NodeConfig {
            decisions: true,
            ..NodeConfig::default()
        },
    );
    let (far_player, _) = world.on(true).player("live", "mirror");
    let (local_player, _) = world.on(false).player("live", "cam");
    let (publisher, id) = world.on(false).publisher("live", "cam");
    let asked: Vec<String> = world.questions.iter().map(|q| format!("{q:?}")).collect();
    assert!(
        asked.iter().any(|q| q.starts_with("Connect")
            && q.contains("tc_url: Some(\"rtmp://10.0.0.1:1935/live?token=t1\")")),
        "{asked:?}"
    );
    assert!(
        asked.iter().any(|q| q.starts_with("Publish")
            && q.contains("name: \"mirror\"")
            && q.contains("query: \"token=t1\"")),
        "{asked:?}"
    );
    let published = synthetic_av(id, Duration::from_secs(6));
    let from = world.now;
    world.publish(publisher, &published, from);
    let far = check(
        "upstream player",
        &published,
        world.upstream.events(far_player),
    );
    let local = check("local player", &published, world.edge.events(local_player));
    assert_eq!(far, local, "the upstream's player got every frame");
    let delete = vec![siprtmp_core::amf::Value::Number(f64::from(id))];
    world.edge.clients[publisher]
        .client
        .call(0, "deleteStream", delete);
    world.advance(ms(100));
    assert!(world
        .upstream
        .statuses(far_player)
        .contains(&"NetStream.Play.UnpublishNotify".to_string()));
    let ended = world
        .relay_events()
        .into_iter()
        .any(|(_, p)| matches!(p, RelayPhase::Ended { reason } if reason == "unpublished"));
    assert!(ended, "{:?}", world.relay_events());
    assert_eq!(world.bridge.open(), 0, "the push's connection is closed");
}

/// A push whose upstream refuses connections is retried on the backoff schedule (0.5 s,
/// doubling, at most 4 s) while the publisher and the local player go on; once the upstream
/// listens the push goes live, a player there starts at a keyframe and gets every frame on;
/// a session that was up for the longest wait starts the schedule again after a break, one
/// that breaks at once does not.
#[test]
fn a_failed_push_is_retried_on_the_backoff_schedule_and_nobody_waits_for_it() {
    let mut world = World::new(
        relaying(true, "rtmp://10.0.0.1:1935/live"),
        NodeConfig::default(),
    );
    let addr = world.bridge.addr;
    world.edge.tcp.listening.remove(&addr);
    let (local_player, _) = world.on(false).player("live", "cam");
    let (publisher, id) = world.on(false).publisher("live", "cam");
    let t0 = world.now - world.start;
    let published = synthetic_av(id, Duration::from_secs(30));
    let mut far_player = None;
    let from = world.now;
    world.publish_on(false, publisher, &published, from, |w, _| {
        let t = w.now - w.start - t0;
        if t >= ms(12_000) && !w.edge.tcp.listening.contains(&addr) {
            w.edge.tcp.listen(addr);
        }
        // Up from 15.5 s: broken at 20.5 s (up 5 s, past the longest wait), then again at
        // once after it comes back.
        let lives = w.relay_times(|p| *p == RelayPhase::Live).len();
        if t >= ms(20_500) && lives == 1 && w.bridge.open() == 1 {
            let (edge, upstream) = (&mut w.edge, &mut w.upstream);
            w.bridge.cut(w.now, edge, upstream);
        }
        if lives == 2 && w.bridge.open() == 1 && far_player.is_none() {
            let (edge, upstream) = (&mut w.edge, &mut w.upstream);
            w.bridge.cut(w.now, edge, upstream);
            far_player = Some(usize::MAX);
        }
        if lives == 3 && far_player == Some(usize::MAX) {
            far_player = Some(w.on(true).player("live", "cam").0);
        }
    });
    let connects: Vec<Duration> = world
        .relay_times(|p| *p == RelayPhase::Connecting)
        .into_iter()
        .map(|t| t - t0)
        .collect();
    let s = |x: f64| Duration::from_secs_f64(x);
    assert_eq!(
        connects[..6],
        [s(0.0), s(0.5), s(1.5), s(3.5), s(7.5), s(11.5)],
        "{:?}",
        world.relay_events()
    );
    let waits: Vec<Duration> = world
        .relay_events()
        .into_iter()
        .filter_map(|(_, p)| match p {
            RelayPhase::Failed { retry_in, .. } => retry_in,
            _ => None,
        })
        .collect();
    assert_eq!(
        waits,
        [
            s(0.5),
            s(1.0),
            s(2.0),
            s(4.0),
            s(4.0),
            s(4.0),
            s(0.5),
            s(1.0)
        ],
        "{:?}",
        world.relay_events()
    );
    assert_eq!(
        connects[6],
        s(15.5),
        "the first attempt after the upstream listens"
    );
    check("local player", &published, world.edge.events(local_player));
    let far_player = far_player.expect("a player upstream after the last reconnect");
    let far = media_of(world.upstream.events(far_player));
    let first_video = far.iter().find(|m| m.type_id == type_id::VIDEO).unwrap();
    assert_eq!(first_video.payload[0] >> 4, 1, "starts at a keyframe");
    check(
        "upstream player",
        &published,
        world.upstream.events(far_player),
    );
}

/// A push whose upstream stops reading: past the soft backlog its video is left out until a
/// keyframe finds it caught up (audio goes on), so the upstream's player resumes at a
/// keyframe without a gap in its audio; one that stays behind past the hard backlog is
/// dropped and connects again. The local player gets every frame throughout.
#[test]
fn a_push_behind_drops_video_to_the_next_keyframe_then_reconnects() {
    let mut edge = relaying(true, "rtmp://10.0.0.1:1935/live");
    edge.server.player_soft_backlog = 30_000;
    edge.server.player_hard_backlog = 60_000;
    let mut world = World::new(edge, NodeConfig::default());
    let (local_player, _) = world.on(false).player("live", "cam");
    let (far_player, _) = world.on(true).player("live", "cam");
    let (publisher, id) = world.on(false).publisher("live", "cam");
    let published = synthetic_av(id, Duration::from_secs(24));
    let from = world.now;
    let mut second_player = None;
    world.publish_on(false, publisher, &published, from, |w, _| {
        let t = w.now - from;
        // Stalled for 3 s: behind, not past the hard limit.
        w.bridge.stalled = (ms(3_000)..ms(6_000)).contains(&t);
        // Stalled from 10 s until the push gives up on the connection.
        let failed = w
            .relay_times(|p| matches!(p, RelayPhase::Failed { .. }))
            .len();
        if t >= ms(10_000) && failed == 0 {
            w.bridge.stalled = true;
        }
        if failed == 1 && second_player.is_none() {
            let (c, _) = w.on(true).player("live", "cam");
            second_player = Some(c);
        }
    });
    check("local player", &published, world.edge.events(local_player));
    // The first upstream player: all audio frames until the push gave up, video with a gap
    // that ends at a keyframe.
    let far = media_of(world.upstream.events(far_player));
    let audio = |msgs: &[RtmpMessage], until: u32| {
        msgs.iter()
            .filter(|m| m.type_id == type_id::AUDIO && m.payload[1] == 1 && m.timestamp < until)
            .count()
    };
    assert_eq!(
        audio(&far, 9_000),
        audio(&published, 9_000),
        "no audio left out"
    );
    let video: Vec<&RtmpMessage> = far.iter().filter(|m| m.type_id == type_id::VIDEO).collect();
    let gap = video
        .windows(2)
        .find(|w| w[1].timestamp - w[0].timestamp > 100)
        .expect("video left out while behind");
    assert!(
        gap[0].timestamp >= 3_000 && gap[1].timestamp <= 8_000,
        "{gap:?}"
    );
    assert_eq!(gap[1].payload[0] >> 4, 1, "video resumes at a keyframe");
    let events = world.relay_events();
    let failures: Vec<&RelayPhase> = events
        .iter()
        .map(|(_, p)| p)
        .filter(|p| matches!(p, RelayPhase::Failed { .. }))
        .collect();
    assert_eq!(failures.len(), 1, "{events:?}");
    assert!(
        matches!(failures[0], RelayPhase::Failed { error, .. } if error.contains("behind")),
        "{events:?}"
    );
    // After the reconnection, a new player upstream gets every frame from its keyframe on.
    let second = second_player.expect("the push failed once");
    world.bridge.stalled = false;
    check(
        "upstream player after the reconnection",
        &published,
        world.upstream.events(second),
    );
    let lives = world.relay_times(|p| *p == RelayPhase::Live);
    assert_eq!(lives.len(), 2, "{events:?}");
}

/// A pull edge: three players asking for the same name at once share one upstream session
/// (the first upstream of the list refuses connections: the next is tried at once), each gets
/// every frame from its join; the session stays while anyone plays, survives a player that
/// comes back within the idle time, and closes exactly the idle time after the last left.
#[test]
fn one_pull_per_name_shared_by_its_players_and_closed_when_idle() {
    let mut edge = relaying(false, "rtmp://10.0.0.2:1935/live");
    edge.server
        .apps
        .get_mut("live")
        .unwrap()
        .pull
        .push(RelayUrl::parse("rtmp://10.0.0.1/live").unwrap());
    let mut world = World::new(edge, NodeConfig::default());
    let (publisher, id) = world.on(true).publisher("live", "cam");
    let players: Vec<(usize, u32)> = (0..3)
        .map(|_| world.on(false).client_with_stream("live"))
        .collect();
    for &(c, stream) in &players {
        world.edge.clients[c].client.play(stream, "cam", -2.0);
    }
    world.pump();
    assert_eq!(world.bridge.connections, 1, "one upstream session");
    let upstream_plays = world
        .upstream
        .node_events
        .iter()
        .filter(|e| matches!(e, Event::PlayStarted { .. }))
        .count();
    assert_eq!(upstream_plays, 1);
    let events = world.relay_events();
    assert!(
        matches!(&events[1].1, RelayPhase::Failed { retry_in: Some(d), .. } if d.is_zero()),
        "{events:?}"
    );
    assert_eq!(events.last().unwrap().1, RelayPhase::Live, "{events:?}");
    let published = synthetic_av(id, Duration::from_secs(8));
    let from = world.now;
    let mut left: Vec<Duration> = Vec::new();
    let mut late = None;
    world.publish_on(true, publisher, &published, from, |w, _| {
        let t = w.now - from;
        // Players 0 and 1 leave at 2 s; player 2 at 4 s, and a new one joins at 5 s.
        for (i, at) in [(0, 2_000), (1, 2_000), (2, 4_000)] {
            if t >= ms(at) && left.len() == i {
                let (c, stream) = players[i];
                let delete = vec![siprtmp_core::amf::Value::Number(f64::from(stream))];
                w.edge.clients[c].client.call(0, "deleteStream", delete);
                w.pump();
                left.push(w.now - w.start);
            }
        }
        if t >= ms(5_000) && late.is_none() {
            late = Some(w.on(false).player("live", "cam").0);
        }
    });
    assert_eq!(
        world.bridge.connections, 1,
        "the late player reused the session"
    );
    let late = late.unwrap();
    check("late player", &published, world.edge.events(late));
    for (i, &(c, _)) in players.iter().enumerate() {
        let got = media_of(world.edge.events(c));
        assert!(got.len() > 20, "player {i} got {} messages", got.len());
    }
    // The stream stays quiet a while (the edge may hear nothing at all in it), then the late
    // player leaves: the session closes 3 s after the leaving, not 3 s after the edge last
    // heard something.
    world.advance(ms(2_500));
    world.edge.node.handle(
        world.now,
        siprtmp_core::node::Input::Closed {
            conn: world.edge.clients[late].conn,
        },
    );
    world.edge.clients[late].closed = true;
    let gone = world.now;
    world.run_until(gone + ms(2_999));
    assert_eq!(world.bridge.open(), 1, "still open within the idle time");
    world.run_until(gone + ms(3_000));
    assert_eq!(world.bridge.open(), 0, "closed at the idle time");
    let ended = world.relay_events().last().cloned().unwrap();
    assert!(
        matches!(&ended.1, RelayPhase::Ended { reason } if reason.starts_with("idle")),
        "{ended:?}"
    );
    assert_eq!(ended.0, gone + ms(3_000) - world.start);
}

/// An upstream that lacks the name (it does not wait for publishers: `idle_streams` off)
/// makes the edge's players' plays fail with `StreamNotFound` at once; the pull ends.
#[test]
fn a_name_the_upstream_lacks_fails_the_play_with_stream_not_found() {
    let mut origin = NodeConfig::default();
    origin.server.apps.insert(
        "live".into(),
        AppConfig {
            idle_streams: false,
            ..AppConfig::default()
        },
    );
    let mut world = World::new(relaying(false, "rtmp://10.0.0.1/live"), origin);
    let (player, _) = world.on(false).player("live", "nothing");
    let statuses = world.edge.statuses(player);
    assert_eq!(
        statuses.last().map(String::as_str),
        Some("NetStream.Play.StreamNotFound"),
        "{statuses:?}"
    );
    assert_eq!(world.bridge.open(), 0);
    let ended = world.relay_events().last().cloned().unwrap().1;
    assert!(
        matches!(&ended, RelayPhase::Ended { reason } if reason.contains("no upstream")),
        "{ended:?}"
    );
}

/// The upstream breaks while players watch: they hear `UnpublishNotify` and keep waiting;
/// the pull retries on the backoff schedule (the upstream refuses for a while), and when it
/// is back they hear `PublishNotify` and get the stream again from a keyframe.
#[test]
fn a_broken_upstream_is_retried_while_players_wait() {
    let mut world = World::new(
        relaying(false, "rtmp://10.0.0.1/live"),
        NodeConfig::default(),
    );
    let (publisher, id) = world.on(true).publisher("live", "cam");
    let (player, _) = world.on(false).player("live", "cam");
    let published = synthetic_av(id, Duration::from_secs(12));
    let from = world.now;
    let addr = world.bridge.addr;
    let mut broke_at = None;
    world.publish_on(true, publisher, &published, from, |w, _| {
        let t = w.now - from;
        if t >= ms(3_000) && broke_at.is_none() {
            let (edge, upstream) = (&mut w.edge, &mut w.upstream);
            w.bridge.cut(w.now, edge, upstream);
            w.edge.tcp.listening.remove(&addr);
            broke_at = Some(w.now - w.start);
        }
        if t >= ms(5_000) {
            w.edge.tcp.listen(addr);
        }
    });
    let statuses = world.edge.statuses(player);
    let unpublished = statuses
        .iter()
        .position(|s| s == "NetStream.Play.UnpublishNotify")
        .expect("told the publisher left");
    let republished = statuses
        .iter()
        .rposition(|s| s == "NetStream.Play.PublishNotify")
        .expect("told it is back");
    assert!(unpublished < republished, "{statuses:?}");
    // Retries at 0.5, 1.5 and 3.5 s after the break; the one at 3.5 s (5 s in) finds it back.
    let connects: Vec<Duration> = world
        .relay_times(|p| *p == RelayPhase::Connecting)
        .into_iter()
        .skip(1)
        .map(|t| t - broke_at.unwrap())
        .collect();
    let s = Duration::from_secs_f64;
    assert_eq!(connects, [s(0.5), s(1.5), s(3.5)]);
    let media = media_of(world.edge.events(player));
    let after: Vec<&RtmpMessage> = media
        .iter()
        .skip_while(|m| m.timestamp < 4_000)
        .filter(|m| m.type_id == type_id::VIDEO)
        .collect();
    assert_eq!(after[0].payload[0] >> 4, 1, "back at a keyframe");
    let last_video = published.iter().rfind(|m| m.type_id == type_id::VIDEO);
    assert_eq!(
        after.last().unwrap().timestamp,
        last_video.unwrap().timestamp
    );
}

/// Relay sessions are bounded per application (and in all): a publication past the limit is
/// not pushed (said in an event), and is served here all the same; a play past it waits as
/// for any name nobody publishes, or fails at once where the application does not wait.
#[test]
fn sessions_past_the_limits_are_not_started_and_nothing_else_suffers() {
    let mut edge = relaying(true, "rtmp://10.0.0.1:1935/live");
    edge.server.relay.max_sessions_per_app = 1;
    let mut world = World::new(edge, NodeConfig::default());
    world.on(false).publisher("live", "one");
    let (second_publisher, second) = world.on(false).publisher("live", "two");
    let (player, _) = world.on(false).player("live", "two");
    let events = world.relay_events();
    let refused = events.iter().any(|(_, p)| {
        matches!(p, RelayPhase::Ended { reason } if reason.contains("max_sessions_per_app"))
    });
    assert!(refused, "{events:?}");
    assert_eq!(world.bridge.connections, 1, "one push only");
    let published = synthetic_av(second, Duration::from_secs(3));
    let from = world.now;
    world.publish(second_publisher, &published, from);
    check(
        "player of the stream not pushed",
        &published,
        world.edge.events(player),
    );

    // A pull past the limit, where names nobody publishes are refused: StreamNotFound.
    let mut edge = relaying(false, "rtmp://10.0.0.1/live");
    edge.server.relay.max_sessions = 1;
    edge.server.apps.get_mut("live").unwrap().idle_streams = false;
    let mut world = World::new(edge, NodeConfig::default());
    let (first, _) = world.on(false).player("live", "a");
    let (second, _) = world.on(false).player("live", "b");
    assert_eq!(world.bridge.connections, 1);
    assert_eq!(
        world.edge.statuses(first).last().unwrap(),
        "NetStream.Play.Start"
    );
    assert_eq!(
        world.edge.statuses(second).last().unwrap(),
        "NetStream.Play.StreamNotFound"
    );
}

/// What an upstream sends passes the server's chunk limits: a pulled message larger than
/// `max_message_size` drops the session (and its players hear the publisher left), to be
/// tried again after the backoff, as a client past the limit is closed.
#[test]
fn an_upstream_past_the_chunk_limits_is_dropped_and_retried() {
    let mut edge = relaying(false, "rtmp://10.0.0.1/live");
    edge.server.chunk_limits.max_message_size = 4_000;
    let mut world = World::new(edge, NodeConfig::default());
    let (publisher, id) = world.on(true).publisher("live", "cam");
    let (player, _) = world.on(false).player("live", "cam");
    // Sequence headers and audio pass; the first keyframe (6,000 bytes) is too large.
    let published = synthetic_av(id, Duration::from_secs(1));
    let from = world.now;
    world.publish_on(true, publisher, &published, from, |_, _| {});
    let failed = world.relay_events().into_iter().find_map(|(_, p)| match p {
        RelayPhase::Failed { error, retry_in } => Some((error, retry_in)),
        _ => None,
    });
    let (error, retry_in) = failed.expect("the session failed");
    assert!(error.contains("chunk"), "{error}");
    assert_eq!(retry_in, Some(ms(500)));
    assert!(world
        .edge
        .statuses(player)
        .contains(&"NetStream.Play.UnpublishNotify".to_string()));
}

/// What the publisher sends while its push is still being set up waits for it: the upstream's
/// player gets the stream from its very first message, audio before the first keyframe
/// included; held beyond the soft backlog, it starts at a keyframe instead, as a late player.
#[test]
fn a_push_slow_to_set_up_still_starts_from_the_first_message() {
    for (soft, from_the_start) in [(1 << 20, true), (20_000, false)] {
        let mut edge = relaying(true, "rtmp://10.0.0.1:1935/live");
        edge.server.player_soft_backlog = soft;
        let mut world = World::new(edge, NodeConfig::default());
        let (far_player, _) = world.on(true).player("live", "cam");
        world.bridge.stalled = true;
        let (publisher, id) = world.on(false).publisher("live", "cam");
        // Audio first, then the stream: the first keyframe comes 100 ms in.
        let mut published = synthetic_av(id, Duration::from_secs(6));
        for m in published.iter_mut().skip(2) {
            m.timestamp += 100;
        }
        let audio_first: Vec<RtmpMessage> = (0..5)
            .map(|i| RtmpMessage::new(type_id::AUDIO, id, i * 20, vec![0xaf, 1, i as u8, 7]))
            .collect();
        published.splice(2..2, audio_first);
        let from = world.now;
        world.publish_on(false, publisher, &published, from, |w, _| {
            // The upstream answers only 2 s in.
            w.bridge.stalled = w.now - from < ms(2_000);
        });
        let av = |m: &&RtmpMessage| matches!(m.type_id, type_id::AUDIO | type_id::VIDEO);
        let got: Vec<RtmpMessage> = media_of(world.upstream.events(far_player))
            .into_iter()
            .filter(|m| av(&m))
            .collect();
        let first_audio_frame = got
            .iter()
            .find(|m| m.type_id == type_id::AUDIO && m.payload[1] == 1)
            .unwrap();
        if from_the_start {
            assert_eq!(
                got.len(),
                published.iter().filter(av).count(),
                "every message"
            );
            assert_eq!(first_audio_frame.timestamp, 0);
        } else {
            // From the cached GOP: its keyframe (100 ms in) first, the audio before it lost.
            assert_eq!(first_audio_frame.timestamp, 100, "{first_audio_frame:?}");
            let first_video = got
                .iter()
                .find(|m| m.type_id == type_id::VIDEO && m.payload[1] == 1);
            assert_eq!(first_video.unwrap().payload[0] >> 4, 1, "from a keyframe");
        }
        check(
            "upstream player",
            &published,
            world.upstream.events(far_player),
        );
    }
}

/// An edge's access rules decide its players of a pulled stream as any play, before any
/// upstream session: a refused player opens none and gets `NetStream.Play.Failed`; an
/// accepted one opens the pull.
#[test]
fn the_edge_decides_its_players_before_pulling() {
    use siprtmp_core::node::{Decision, Question};
    let mut edge = relaying(false, "rtmp://10.0.0.1/live");
    edge.decisions = true;
    let mut world = World::new(edge, NodeConfig::default());
    world.edge_rules = |question| match question {
        Question::Play { query, .. } if query != "token=ok" => Decision::Reject("no token".into()),
        _ => Decision::Accept,
    };
    world.on(true).publisher("live", "cam");
    let (refused, _) = world.on(false).player("live", "cam");
    assert_eq!(
        world.edge.statuses(refused).last().map(String::as_str),
        Some("NetStream.Play.Failed")
    );
    assert_eq!(
        world.bridge.connections, 0,
        "no upstream session for a refused play"
    );
    let (accepted, _) = world.on(false).player("live", "cam?token=ok");
    assert!(world
        .edge
        .statuses(accepted)
        .contains(&"NetStream.Play.Start".to_string()));
    assert_eq!(world.bridge.connections, 1);
}

/// A publisher whose application pushes is watched (the upstream's players wait on the push),
/// so it is read on the 40 ms grid even with no player here, not every tenth tick.
#[test]
fn a_pushed_publisher_is_read_on_the_grid_even_with_no_player_here() {
    const GRID: Duration = Duration::from_millis(40);
    let mut edge = relaying(true, "rtmp://10.0.0.1:1935/live/mirror");
    edge.server.merge_writes = Some(GRID);
    let mut alone = NodeConfig::default();
    alone.server.merge_writes = Some(GRID);
    for (config, every) in [(edge, GRID), (alone, GRID * 10)] {
        let mut world = World::new(config, NodeConfig::default());
        world.edge.pace_reads();
        let (publisher, _) = world.on(false).publisher("live", "cam");
        assert_eq!(world.edge.clients[publisher].read_every, Some(every));
    }
}
