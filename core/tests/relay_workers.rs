//! An edge of two workers (`--workers 2`) pulling from an origin, in memory and in virtual
//! time ([`SimCluster::add_workers`]): a name is pulled once per server, not once per
//! worker. Players on both workers, joining at once (their workers race for the name), get
//! every frame from a keyframe through one upstream play; the pull stays open while the
//! other worker's players watch, though the owning worker's players left, and closes the idle
//! time after the last player of either worker left; the owner's pull ending (the origin's
//! publisher leaving, or no such stream there) reaches the other worker's players as
//! `UnpublishNotify` / `StreamNotFound`, and when it closes for good the other worker pulls
//! for its players that still wait. A publisher on the pulling worker takes the name over
//! (as on a single node); one on the other worker is refused while the pull holds it.

use std::time::{Duration, Instant};

use siprtmp_core::node::{
    AppConfig, Event, NodeConfig, RelayLimits, RelayPhase, RelayUrl, ServerConfig,
};
use siprtmp_core::rtmp::client::ClientEvent;
use siprtmp_core::rtmp::message::RtmpMessage;
use siprtmp_core::sim::SimConfig;
use siprtmp_core::sim_cluster::{ClusterConfig, SimCluster};
use siprtmp_core::testkit::{synthetic_av, MediaChecker};

const IDLE: Duration = Duration::from_secs(2);

/// One player: its client, and what it saw.
struct Player {
    client: usize,
    name: &'static str,
    checker: MediaChecker,
    statuses: Vec<String>,
    frames: usize,
    first_video_key: Option<bool>,
}

struct World {
    sim: SimCluster,
    origin: usize,
    /// The edge's workers.
    workers: Vec<usize>,
    players: Vec<Player>,
}

fn edge_config() -> NodeConfig {
    let url = RelayUrl::parse(&format!("rtmp://{}/live", SimCluster::addr(0))).unwrap();
    let mut server = ServerConfig {
        relay: RelayLimits {
            pull_idle_timeout: IDLE,
            backoff_min: Duration::from_millis(500),
            ..RelayLimits::default()
        },
        ..ServerConfig::default()
    };
    server.apps.insert(
        "live".into(),
        AppConfig {
            pull: vec![url],
            ..AppConfig::default()
        },
    );
    NodeConfig {
        server,
        ..NodeConfig::default()
    }
}

impl World {
    fn new(seed: u64) -> Self {
        Self::with_origin(seed, false)
    }

    /// `waits`: the origin keeps a player of a name nobody publishes waiting for a publisher
    /// (otherwise it says at once that there is no such stream).
    fn with_origin(seed: u64, waits: bool) -> Self {
        let config = ClusterConfig {
            net: SimConfig {
                seed,
                ..SimConfig::default()
            },
            ..ClusterConfig::default()
        };
        let mut sim = SimCluster::new(config, Instant::now());
        let mut origin_config = NodeConfig::default();
        origin_config.server.apps.insert(
            "live".into(),
            AppConfig {
                idle_streams: waits,
                ..AppConfig::default()
            },
        );
        let origin = sim.add_node(origin_config);
        let workers = sim.add_workers(edge_config(), 2);
        Self {
            sim,
            origin,
            workers,
            players: Vec::new(),
        }
    }

    /// A publisher of `name` at the origin, live once this returns.
    fn publisher(&mut self, name: &str) -> usize {
        self.publisher_on(self.origin, name)
    }

    /// A publisher of `name` on node `node`, answered once this returns.
    fn publisher_on(&mut self, node: usize, name: &str) -> usize {
        let c = self.sim.connect(node, "live");
        self.run(Duration::from_millis(300));
        self.sim.client(c).create_stream();
        self.run(Duration::from_millis(300));
        self.sim.client(c).publish(1, name);
        self.run(Duration::from_millis(300));
        c
    }

    /// A player of `name` on worker `w` (it connects and plays as the run goes on).
    fn player(&mut self, w: usize, name: &'static str, media: &[RtmpMessage]) -> usize {
        let client = self.sim.connect(self.workers[w], "live");
        self.players.push(Player {
            client,
            name,
            checker: MediaChecker::new(media),
            statuses: Vec::new(),
            frames: 0,
            first_video_key: None,
        });
        self.players.len() - 1
    }

    fn run(&mut self, duration: Duration) {
        let until = self.sim.now() + duration;
        self.run_until(until);
    }

    /// Runs, the players answering their events as they come (every 10 ms of virtual time).
    fn run_until(&mut self, until: Instant) {
        while self.sim.now() < until {
            let step = (self.sim.now() + Duration::from_millis(10)).min(until);
            self.sim.run_until(step);
            for p in &mut self.players {
                for (_, event) in self.sim.take_events(p.client) {
                    match event {
                        ClientEvent::Connected => self.sim.client(p.client).create_stream(),
                        ClientEvent::StreamCreated(id) => {
                            self.sim.client(p.client).play(id, p.name, -1.0)
                        }
                        ClientEvent::Status(_, code) => p.statuses.push(code),
                        ClientEvent::Media(m) => {
                            p.checker.check(&m);
                            let config = m.payload.get(1) == Some(&0);
                            if m.type_id == 9 && !config && p.first_video_key.is_none() {
                                p.first_video_key = Some(m.payload[0] >> 4 == 1);
                            }
                            p.frames += usize::from(!config);
                        }
                        _ => {}
                    }
                }
            }
        }
    }

    /// Sends `media` from `publisher` in real (virtual) time, calling `at` before each
    /// message with the time since the first.
    fn publish(
        &mut self,
        publisher: usize,
        media: &[RtmpMessage],
        mut at: impl FnMut(&mut Self, Duration),
    ) {
        let start = self.sim.now();
        for msg in media {
            let offset = Duration::from_millis(u64::from(msg.timestamp));
            self.run_until(start + offset);
            at(self, offset);
            self.sim.client(publisher).send_media(msg);
        }
    }

    /// Plays of `stream` the origin saw begin.
    fn origin_plays(&self, stream: &str) -> usize {
        self.sim.nodes[self.origin]
            .events
            .iter()
            .filter(|(_, e)| matches!(e, Event::PlayStarted { stream: s, .. } if s == stream))
            .count()
    }

    /// The pull sessions of worker `w` that ended, with when.
    fn pulls_ended(&self, w: usize) -> Vec<(Instant, String)> {
        self.sim.nodes[self.workers[w]]
            .events
            .iter()
            .filter_map(|(at, e)| match e {
                Event::Relay {
                    phase: RelayPhase::Ended { reason },
                    ..
                } => Some((*at, reason.clone())),
                _ => None,
            })
            .collect()
    }

    /// Pull sessions of worker `w` that began connecting.
    fn pulls_opened(&self, w: usize) -> usize {
        self.sim.nodes[self.workers[w]]
            .events
            .iter()
            .filter(|(_, e)| {
                matches!(
                    e,
                    Event::Relay {
                        phase: RelayPhase::Connecting,
                        ..
                    }
                )
            })
            .count()
    }
}

#[test]
fn players_on_both_workers_share_one_pull_and_get_every_frame() {
    let mut world = World::new(3);
    let publisher = world.publisher("cam");
    let media = synthetic_av(1, Duration::from_secs(8));
    // Three players on each worker, all at once: both workers ask for the name together.
    for i in 0..6 {
        world.player(i % 2, "cam", &media);
    }
    let late = std::cell::Cell::new(None);
    world.publish(publisher, &media, |w, t| {
        if t >= Duration::from_millis(4500) && late.get().is_none() {
            late.set(Some(w.player(1, "cam", &media)));
        }
    });
    world.run(Duration::from_secs(2));

    assert_eq!(world.origin_plays("live/cam"), 1, "one upstream play");
    assert_eq!(world.pulls_opened(0) + world.pulls_opened(1), 1, "one pull");
    let owner = world.sim.claimed_by(world.workers[0], "live/cam");
    assert!(owner.is_some());
    for (i, p) in world.players.iter().enumerate() {
        let frames = p
            .checker
            .finish()
            .unwrap_or_else(|e| panic!("player {i}: {e}"));
        assert!(frames > 0);
        assert_eq!(
            p.first_video_key,
            Some(true),
            "player {i} starts on a keyframe"
        );
        assert!(
            p.statuses
                .contains(&"NetStream.Play.PublishNotify".to_owned()),
            "player {i}: {:?}",
            p.statuses
        );
    }
    // The late joiner started from the GOP before it joined (keyframes every 2 s).
    let late = &world.players[late.get().unwrap()];
    assert!(late.frames >= (8000 - 4000) * 62 / 1000, "{}", late.frames);
}

#[test]
fn the_pull_stays_open_for_the_other_workers_players_and_closes_idle_after_the_last() {
    let mut world = World::new(5);
    let publisher = world.publisher("cam");
    let media = synthetic_av(1, Duration::from_secs(16));
    let first = world.player(0, "cam", &media);
    let mut second = None;
    let mut left = None;
    world.publish(publisher, &media, |w, t| {
        if t >= Duration::from_secs(2) && second.is_none() {
            // Worker 0 pulls (its player asked first); worker 1's player subscribes.
            assert_eq!(
                w.sim.claimed_by(w.workers[0], "live/cam"),
                Some(siprtmp_core::worker_relay::WorkerId(0))
            );
            second = Some(w.player(1, "cam", &media));
        }
        if t >= Duration::from_secs(4) && left.is_none() {
            w.sim.disconnect(w.players[first].client);
            left = Some((w.sim.now(), w.players[second.unwrap()].frames));
        }
    });
    world.run(Duration::from_secs(1));
    let (left_at, frames_then) = left.unwrap();
    let second = &world.players[second.unwrap()];
    // Twelve seconds after the owner's own player left, far past the idle time: the pull is
    // still open, and the other worker's player got every frame to the end.
    assert!(
        world.pulls_ended(0).is_empty(),
        "{:?}",
        world.pulls_ended(0)
    );
    second.checker.finish().unwrap();
    assert!(
        second.frames > frames_then + 600,
        "{} {frames_then}",
        second.frames
    );
    assert_eq!(world.origin_plays("live/cam"), 1);
    assert!(world.sim.now() > left_at + 5 * IDLE);

    // The last player leaves: the pull closes the idle time later, not before, and the
    // name is free again.
    let client = second.client;
    world.sim.disconnect(client);
    let gone = world.sim.now();
    world.run(IDLE + Duration::from_secs(1));
    let ended = world.pulls_ended(0);
    assert_eq!(ended.len(), 1, "{ended:?}");
    let (at, reason) = &ended[0];
    assert!(reason.contains("idle"), "{reason}");
    assert!(*at >= gone + IDLE && *at <= gone + IDLE + Duration::from_millis(500));
    assert_eq!(world.sim.claimed_by(world.workers[0], "live/cam"), None);
    assert_eq!(world.pulls_opened(1), 0);
}

#[test]
fn the_owners_pull_ending_reaches_the_other_workers_players() {
    let mut world = World::new(9);
    let publisher = world.publisher("cam");
    let media = synthetic_av(1, Duration::from_secs(4));
    let a = world.player(0, "cam", &media);
    world.run(Duration::from_millis(500));
    let b = world.player(1, "cam", &media);
    // And a name the origin lacks, asked for on both workers.
    let missing: Vec<usize> = (0..4)
        .map(|i| world.player(i % 2, "nothing", &media))
        .collect();
    world.publish(publisher, &media, |_, _| {});
    world.run(Duration::from_millis(500));
    assert!(world.players[b].frames > 0);
    // The origin's publisher leaves: players of both workers hear the stream ended.
    world.sim.disconnect(publisher);
    world.run(Duration::from_secs(1));
    for p in [a, b] {
        let statuses = &world.players[p].statuses;
        assert!(
            statuses.contains(&"NetStream.Play.UnpublishNotify".to_owned()),
            "player {p}: {statuses:?}"
        );
    }
    for p in missing {
        let statuses = &world.players[p].statuses;
        assert_eq!(
            statuses.last().map(String::as_str),
            Some("NetStream.Play.StreamNotFound"),
            "player {p}: {statuses:?}"
        );
    }
    // One pull of each name for the two workers, and the names are free again.
    assert_eq!(world.pulls_opened(0) + world.pulls_opened(1), 2);
    assert_eq!(world.sim.claimed_by(world.workers[0], "live/nothing"), None);
}

#[test]
fn when_the_owners_pull_closes_the_other_worker_pulls_for_its_waiting_players() {
    let mut world = World::with_origin(13, true);
    let publisher = world.publisher("cam");
    let media = synthetic_av(1, Duration::from_secs(3));
    let a = world.player(0, "cam", &media);
    world.publish(publisher, &media, |_, _| {});
    // Worker 1's player joins the live stream (worker 0 pulls it).
    let b = world.player(1, "cam", &media);
    world.run(Duration::from_secs(1));
    assert_eq!(world.pulls_opened(1), 0);
    // The origin's publisher leaves, then worker 0's player: worker 0's pull has nobody to
    // wait for and closes; worker 1's player still waits.
    world.sim.disconnect(publisher);
    world.run(Duration::from_millis(500));
    world.sim.disconnect(world.players[a].client);
    world.run(IDLE + Duration::from_secs(2));
    assert_eq!(world.pulls_ended(0).len(), 1, "{:?}", world.pulls_ended(0));
    assert_eq!(world.pulls_opened(1), 1, "worker 1 pulls for its player");
    // The stream comes back at the origin: worker 1's player gets it through its own pull.
    let before = world.players[b].frames;
    let publisher = world.publisher("cam");
    world.publish(publisher, &media, |_, _| {});
    world.run(Duration::from_secs(1));
    let p = &world.players[b];
    let notified = p
        .statuses
        .iter()
        .filter(|s| *s == "NetStream.Play.PublishNotify")
        .count();
    assert_eq!(notified, 2, "{:?}", p.statuses);
    assert!(p.frames > before + 100, "{} {before}", p.frames);
    assert_eq!(
        world.origin_plays("live/cam"),
        2,
        "one play per pull, one pull at a time"
    );
}

/// The statuses client `c` (not a player the world drives) has seen so far.
fn statuses_of(world: &mut World, c: usize) -> Vec<String> {
    world
        .sim
        .take_events(c)
        .into_iter()
        .filter_map(|(_, e)| match e {
            ClientEvent::Status(_, code) => Some(code),
            _ => None,
        })
        .collect()
}

#[test]
fn a_publisher_on_the_pulling_worker_takes_the_name_over_one_on_another_is_refused() {
    let mut world = World::new(17);
    let publisher = world.publisher("cam");
    let media = synthetic_av(1, Duration::from_secs(2));
    world.player(0, "cam", &media);
    world.run(Duration::from_millis(500));
    let watcher = world.player(1, "cam", &media);
    world.publish(publisher, &media, |_, _| {});
    world.run(Duration::from_millis(500));
    assert_eq!(
        world.sim.claimed_by(world.workers[0], "live/cam"),
        Some(siprtmp_core::worker_relay::WorkerId(0))
    );
    // On worker 1, while worker 0 pulls the name: refused.
    let refused = world.publisher_on(world.workers[1], "cam");
    let said = statuses_of(&mut world, refused);
    assert_eq!(
        said.last().map(String::as_str),
        Some("NetStream.Publish.BadName"),
        "{said:?}"
    );
    // On worker 0: the pull gives way, the publication goes live, and worker 1's player
    // hears of it and gets its media.
    let local = world.publisher_on(world.workers[0], "cam");
    let said = statuses_of(&mut world, local);
    assert_eq!(
        said.last().map(String::as_str),
        Some("NetStream.Publish.Start"),
        "{said:?}"
    );
    let ended = world.pulls_ended(0);
    assert_eq!(ended.len(), 1, "{ended:?}");
    assert!(ended[0].1.contains("published here"), "{ended:?}");
    let before = world.players[watcher].frames;
    world.publish(local, &media, |_, _| {});
    world.run(Duration::from_millis(500));
    let p = &world.players[watcher];
    assert!(p.frames > before + 50, "{} {before}", p.frames);
    assert_eq!(world.pulls_opened(0) + world.pulls_opened(1), 1);
}
