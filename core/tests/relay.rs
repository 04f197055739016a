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

    /// Plays counted by the upstream's node.
    fn upstream_plays(&self) -> usize {
        self.upstream
            .node_events
            .iter()
            .filter(|e| matches!(e, Event::PlayStarted { .. }))
            .count()
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
