//! Merged writes (`ServerConfig::merge_writes`), in memory and in virtual time, with clients
//! written only when the node asks (as a real driver does): every message still arrives, in
//! order and within the window; commands and status are not held; a player gets about one
//! write per window instead of one per message; and a frozen player is still dropped at the
//! backlog limit without holding up the others.

mod support;

use std::time::{Duration, Instant};

use siprtmp_core::amf::Value;
use siprtmp_core::node::{CloseReason, Event, Input, Node, NodeConfig};
use siprtmp_core::rtmp::client::ClientEvent;
use siprtmp_core::rtmp::message::{type_id, RtmpMessage};
use siprtmp_core::testkit::MemoryNet;
use support::rtmp_clients::Driven;

const WINDOW: Duration = Duration::from_millis(100);
const AUDIO_EVERY: Duration = Duration::from_millis(20);

/// A node (merged writes per `merge`) driven by Transmit, with the time each client received
/// each of its media messages.
struct Fixture {
    net: MemoryNet,
    now: Instant,
    /// Per client: when each media message it has received arrived.
    arrivals: Vec<Vec<Instant>>,
}

impl Fixture {
    fn new(merge: Option<Duration>) -> Self {
        let mut config = NodeConfig::default();
        config.server.merge_writes = merge;
        Self::with_config(config)
    }

    fn with_config(config: NodeConfig) -> Self {
        let now = Instant::now();
        let mut net = MemoryNet::new(Node::new(config, now, 5));
        net.transmit_driven = true;
        Self {
            net,
            now,
            arrivals: Vec::new(),
        }
    }

    /// With reads paced as the node asks, as the mio driver does (see `MemoryNet::pace_reads`).
    fn paced(config: NodeConfig) -> Self {
        let mut f = Self::with_config(config);
        f.net.pace_reads();
        f
    }

    /// Notes the arrival time of media that came in since the last look.
    fn record_arrivals(&mut self) {
        self.arrivals.resize(self.net.clients.len(), Vec::new());
        for (c, arrivals) in self.arrivals.iter_mut().enumerate() {
            let count = self.net.media(c).len();
            while arrivals.len() < count {
                arrivals.push(self.now);
            }
        }
    }

    /// Moves virtual time to `until`, firing each node timer at its own deadline.
    fn advance_to(&mut self, until: Instant) {
        while let Some(deadline) = self.net.node.poll_timeout() {
            if deadline > until {
                break;
            }
            self.now = deadline.max(self.now);
            self.net.node.handle(self.now, Input::Timeout);
            self.pump();
        }
        self.now = until.max(self.now);
        self.pump();
    }

    /// The publisher of `live/cam`.
    fn cam_publisher(&mut self) -> (usize, u32) {
        self.publisher("live", "cam")
    }

    /// A player of `live/cam`, answered at once.
    fn cam_player(&mut self) -> (usize, u32) {
        let (c, id) = self.player("live", "cam");
        assert!(
            self.net
                .statuses(c)
                .contains(&"NetStream.Play.Start".to_string()),
            "play is answered at once"
        );
        (c, id)
    }

    fn send(&mut self, (c, stream): (usize, u32), type_id: u8, timestamp: u32, payload: Vec<u8>) {
        let msg = RtmpMessage::new(type_id, stream, timestamp, payload);
        self.net.clients[c].client.send_media(&msg);
        self.pump();
    }
}

impl Driven for Fixture {
    fn node(&mut self) -> (&mut MemoryNet, Instant) {
        (&mut self.net, self.now)
    }

    /// Moves bytes and notes when media arrived.
    fn pump(&mut self) {
        self.net.pump(self.now);
        self.record_arrivals();
    }
}

fn aac(n: u32) -> Vec<u8> {
    let mut v = vec![0xaf, 0x01];
    v.extend_from_slice(&n.to_be_bytes());
    v.resize(160, n as u8);
    v
}

/// Media as a client saw it: (type, timestamp, payload).
type Media = Vec<(u8, u32, Vec<u8>)>;

/// One second of 50 messages/s audio to `players` players; returns what was sent (type,
/// timestamp, payload) and when, and the writes each player got during that second.
fn one_second_of_audio(
    f: &mut Fixture,
    publisher: (usize, u32),
    players: &[usize],
) -> (Media, Vec<Instant>, Vec<usize>) {
    let writes_before: Vec<usize> = players.iter().map(|&p| f.net.clients[p].writes).collect();
    let start = f.now;
    let mut sent = Vec::new();
    let mut sent_at = Vec::new();
    for i in 0..50u32 {
        f.advance_to(start + AUDIO_EVERY * i);
        f.send(publisher, type_id::AUDIO, i * 20, aac(i));
        sent.push((type_id::AUDIO, i * 20, aac(i)));
        sent_at.push(f.now);
    }
    f.advance_to(start + Duration::from_secs(1));
    let writes = players
        .iter()
        .zip(writes_before)
        .map(|(&p, before)| f.net.clients[p].writes - before)
        .collect();
    // Whatever is still held leaves within the window.
    f.advance_to(start + Duration::from_secs(1) + WINDOW);
    (sent, sent_at, writes)
}

#[test]
fn every_message_arrives_in_order_within_the_window_in_about_one_write_per_window() {
    let mut f = Fixture::new(Some(WINDOW));
    let publisher = f.cam_publisher();
    let players: Vec<usize> = (0..3).map(|_| f.cam_player().0).collect();
    let (sent, sent_at, writes) = one_second_of_audio(&mut f, publisher, &players);
    for &p in &players {
        assert_eq!(f.net.media(p), sent, "player {p}: every message, in order");
        for (i, (&arrived, &published)) in f.arrivals[p].iter().zip(&sent_at).enumerate() {
            let waited = arrived - published;
            assert!(waited <= WINDOW, "message {i} waited {waited:?}");
        }
        // Held, not sent one by one: most messages waited a while.
        let held = f.arrivals[p]
            .iter()
            .zip(&sent_at)
            .filter(|(a, s)| **a > **s)
            .count();
        assert!(held >= 40, "only {held} of 50 messages were held");
    }
    // About one write per window (the first message after play goes at once), not 50.
    for w in writes {
        assert!((9..=11).contains(&w), "{w} writes in one second");
    }
}

#[test]
fn without_merging_every_message_is_a_write_of_its_own() {
    let mut f = Fixture::new(None);
    let publisher = f.cam_publisher();
    let players: Vec<usize> = (0..2).map(|_| f.cam_player().0).collect();
    let (sent, sent_at, writes) = one_second_of_audio(&mut f, publisher, &players);
    for &p in &players {
        assert_eq!(f.net.media(p), sent);
        assert_eq!(f.arrivals[p], sent_at, "no message waits");
    }
    assert_eq!(writes, vec![50, 50]);
}

#[test]
fn the_first_media_after_play_and_commands_and_status_are_not_held() {
    let mut f = Fixture::new(Some(WINDOW));
    let publisher = f.cam_publisher();
    let (player, player_stream) = f.cam_player();
    // The player's first media goes at once.
    f.send(publisher, type_id::AUDIO, 0, aac(0));
    assert_eq!(f.net.media(player).len(), 1);
    // The next is held...
    f.advance_to(f.now + AUDIO_EVERY);
    f.send(publisher, type_id::AUDIO, 20, aac(1));
    assert_eq!(f.net.media(player).len(), 1, "held");
    // ... but a command's answer is not, and the held media leaves with it.
    f.net.clients[player].client.create_stream();
    f.pump();
    let created = f
        .net
        .events(player)
        .iter()
        .filter(|e| matches!(e, ClientEvent::StreamCreated(_)))
        .count();
    assert_eq!(created, 2, "_result at once");
    assert_eq!(f.net.media(player).len(), 2);
    // Status too: pause is answered at once, and so is the resume; the first media after the
    // resume is not held either.
    f.net.clients[player].client.call(
        player_stream,
        "pause",
        vec![Value::Boolean(true), Value::Number(20.0)],
    );
    f.pump();
    assert_eq!(
        f.net.statuses(player).last().map(String::as_str),
        Some("NetStream.Pause.Notify")
    );
    f.net.clients[player].client.call(
        player_stream,
        "pause",
        vec![Value::Boolean(false), Value::Number(20.0)],
    );
    f.pump();
    assert_eq!(
        f.net.statuses(player).last().map(String::as_str),
        Some("NetStream.Unpause.Notify")
    );
    f.advance_to(f.now + AUDIO_EVERY);
    f.send(publisher, type_id::AUDIO, 40, aac(2));
    assert_eq!(
        f.net.media(player).len(),
        3,
        "first media after resume at once"
    );
    // A late player with a cached GOP gets it at once as well.
    let mut key = vec![0x17, 0x01, 0, 0, 0];
    key.resize(2000, 7);
    f.send(publisher, type_id::VIDEO, 60, key.clone());
    let (late, _) = f.cam_player();
    let late_video: Vec<_> = f
        .net
        .media(late)
        .into_iter()
        .filter(|m| m.0 == type_id::VIDEO)
        .collect();
    assert_eq!(late_video, vec![(type_id::VIDEO, 60, key)]);
}

#[test]
fn held_bytes_past_the_size_limit_are_written_at_once() {
    let mut config = NodeConfig::default();
    config.server.merge_writes = Some(WINDOW);
    config.server.merge_max_bytes = 64 * 1024;
    let mut f = Fixture::with_config(config);
    let publisher = f.cam_publisher();
    let (player, _) = f.cam_player();
    let frame = |first: u8, n: u8| {
        let mut v = vec![first, 0x01, 0, 0, 0, n];
        v.resize(30_000, n);
        v
    };
    f.send(publisher, type_id::VIDEO, 0, frame(0x17, 0)); // the awaited keyframe: at once
    assert_eq!(f.net.media(player).len(), 1);
    f.send(publisher, type_id::VIDEO, 40, frame(0x27, 1)); // 30 KB held
    f.send(publisher, type_id::VIDEO, 80, frame(0x27, 2)); // 60 KB held
    assert_eq!(f.net.media(player).len(), 1, "held below the limit");
    f.send(publisher, type_id::VIDEO, 120, frame(0x27, 3)); // 90 KB: past 64 KiB
    assert_eq!(f.net.media(player).len(), 4, "written without waiting");
}

#[test]
fn a_frozen_player_is_still_dropped_at_the_hard_limit_and_others_get_everything() {
    let mut config = NodeConfig::default();
    config.server.merge_writes = Some(WINDOW);
    config.server.player_soft_backlog = 20_000;
    config.server.player_hard_backlog = 100_000;
    let mut f = Fixture::with_config(config);
    let publisher = f.cam_publisher();
    let (slow, _) = f.cam_player();
    let (fast, _) = f.cam_player();
    f.net.clients[slow].muted = true;
    let slow_conn = f.net.clients[slow].conn;
    let start = f.now;
    let mut sent = Vec::new();
    for i in 0..200u32 {
        f.advance_to(start + AUDIO_EVERY * i);
        let mut payload = aac(i);
        payload.resize(1000, 1);
        f.send(publisher, type_id::AUDIO, i * 20, payload.clone());
        sent.push((type_id::AUDIO, i * 20, payload));
    }
    f.advance_to(f.now + WINDOW);
    assert!(f.net.clients[slow].closed, "dropped past the hard limit");
    let reason = f.net.node_events.iter().find_map(|e| match e {
        Event::Closing { conn, reason } if *conn == slow_conn => Some(reason.clone()),
        _ => None,
    });
    assert!(matches!(reason, Some(CloseReason::PlayerBacklog { .. })));
    assert_eq!(f.net.media(fast), sent, "the other player got everything");
    assert!(!f.net.clients[fast].closed);
}

/// The adaptive window's figures: the base window, the longest, and a bulk reader's
/// low-water mark (as bench-compare's bulk players set it).
const BASE: Duration = Duration::from_millis(40);
const LONGEST: Duration = Duration::from_millis(400);
/// How often a publisher nobody watches is read: every tenth tick.
const UNWATCHED_EVERY: Duration = Duration::from_millis(400);
const LOW_WATER: usize = 16 * 1024;

/// What one player got from [`twelve_seconds_to_an_eager_and_a_bulk_reader`].
struct Reader {
    media: Media,
    /// Publish-to-read delay of each message.
    delays: Vec<Duration>,
    /// Writes during the last six seconds.
    late_writes: usize,
}

/// Twelve seconds of 50 audio messages a second (640 bytes each, so a bulk reader's 16 KiB
/// gather in about half a second) to an eager player and a bulk one, merged over `BASE`
/// and adapting up to `max`; returns what was sent and what each player got.
fn twelve_seconds_to_an_eager_and_a_bulk_reader(max: Option<Duration>) -> (Media, [Reader; 2]) {
    twelve_seconds_to_readers(max, false)
}

/// [`twelve_seconds_to_an_eager_and_a_bulk_reader`], the publisher read on the grid if `paced`.
fn twelve_seconds_to_readers(max: Option<Duration>, paced: bool) -> (Media, [Reader; 2]) {
    let mut config = NodeConfig::default();
    config.server.merge_writes = Some(BASE);
    config.server.merge_writes_max = max;
    let mut f = if paced {
        Fixture::paced(config)
    } else {
        Fixture::with_config(config)
    };
    let publisher = f.cam_publisher();
    let (eager, _) = f.cam_player();
    let (bulk, _) = f.cam_player();
    f.net.clients[bulk].low_water = LOW_WATER;
    let start = f.now;
    let mut sent = Vec::new();
    let mut sent_at = Vec::new();
    let mut writes_at_half = [0; 2];
    for i in 0..600u32 {
        f.advance_to(start + AUDIO_EVERY * i);
        if i == 300 {
            writes_at_half = [f.net.clients[eager].writes, f.net.clients[bulk].writes];
        }
        let mut payload = aac(i);
        payload.resize(640, i as u8);
        f.send(publisher, type_id::AUDIO, i * 20, payload.clone());
        sent.push((type_id::AUDIO, i * 20, payload));
        sent_at.push(f.now);
    }
    f.advance_to(start + Duration::from_secs(12));
    let late_writes = [
        f.net.clients[eager].writes - writes_at_half[0],
        f.net.clients[bulk].writes - writes_at_half[1],
    ];
    // The bulk reader reads the tail once the stream ends and it is woken anyway.
    f.advance_to(f.now + LONGEST);
    f.net.clients[bulk].low_water = 0;
    f.net.clients[bulk].client.create_stream(); // any command: its answer wakes the reader
    f.pump();
    let reader = |f: &Fixture, c: usize, late_writes: usize| Reader {
        media: f.net.media(c),
        delays: f.arrivals[c]
            .iter()
            .zip(&sent_at)
            .map(|(a, s)| *a - *s)
            .collect(),
        late_writes,
    };
    let readers = [
        reader(&f, eager, late_writes[0]),
        reader(&f, bulk, late_writes[1]),
    ];
    (sent, readers)
}

/// No message to `reader` waited longer than the base window.
fn assert_no_wait_past_the_base_window(reader: &Reader) {
    let worst = reader.delays.iter().max().unwrap();
    assert!(*worst <= BASE, "an eager message waited {worst:?}");
}

fn median(delays: &[Duration]) -> Duration {
    let mut sorted = delays.to_vec();
    sorted.sort();
    sorted[sorted.len() / 2]
}

#[test]
fn a_player_that_reads_late_anyway_is_held_longer_and_an_eager_one_is_not() {
    let (sent, [eager, bulk]) = twelve_seconds_to_an_eager_and_a_bulk_reader(Some(LONGEST));
    let (_, [eager_fixed, bulk_fixed]) = twelve_seconds_to_an_eager_and_a_bulk_reader(None);
    for reader in [&eager, &bulk, &eager_fixed, &bulk_fixed] {
        assert_eq!(reader.media, sent, "every message, in order");
    }
    // The eager player keeps the base window: no message waits longer, and its writes are
    // one per window, as without adapting (and one more when a probe went).
    assert_no_wait_past_the_base_window(&eager);
    assert!(
        (145..=155).contains(&eager_fixed.late_writes),
        "{}",
        eager_fixed.late_writes
    );
    let probes = eager.late_writes - eager_fixed.late_writes;
    assert!(probes <= 1, "{probes} writes more than without adapting");
    // The bulk reader, once its lag is known, is written less than a quarter as often.
    assert!(
        (145..=155).contains(&bulk_fixed.late_writes),
        "{}",
        bulk_fixed.late_writes
    );
    assert!(
        bulk.late_writes * 4 < bulk_fixed.late_writes,
        "{}",
        bulk.late_writes
    );
    // And its delay grows by less than half the longest window, what holding it would add on
    // average to a reader that read every write at once: it was waiting for its 16 KiB anyway.
    let (held, fixed) = (median(&bulk.delays), median(&bulk_fixed.delays));
    eprintln!("bulk reader's median delay: {fixed:?} with one window, {held:?} adapting");
    assert!(held < fixed + LONGEST / 2, "{held:?} against {fixed:?}");
}

/// A node whose driver paces reads, merged over `BASE`.
fn paced_fixture() -> Fixture {
    let mut config = NodeConfig::default();
    config.server.merge_writes = Some(BASE);
    Fixture::paced(config)
}

#[test]
fn a_publisher_read_on_the_grid_costs_one_read_and_one_write_per_player_a_window() {
    let mut f = paced_fixture();
    let publisher = f.cam_publisher();
    // Two players: the most a stream may have on the base lane and be read on the grid.
    let players: Vec<usize> = (0..2).map(|_| f.cam_player().0).collect();
    let reads_before = f.net.clients[publisher.0].reads;
    let (sent, sent_at, writes) = one_second_of_audio(&mut f, publisher, &players);
    // 50 messages in one second came in one read per 40 ms tick, not one read each.
    let reads = f.net.clients[publisher.0].reads - reads_before;
    assert!((24..=26).contains(&reads), "{reads} reads of the publisher");
    for &p in &players {
        assert_eq!(f.net.media(p), sent, "player {p}: every message, in order");
        // What a read brings is written at once: a message waits for the tick, never
        // for a tick and then a hold.
        for (i, (&arrived, &published)) in f.arrivals[p].iter().zip(&sent_at).enumerate() {
            let waited = arrived - published;
            assert!(waited <= BASE, "message {i} waited {waited:?}");
        }
    }
    // One write per player per read.
    for w in writes {
        assert!((24..=26).contains(&w), "{w} writes in one second");
    }
}

#[test]
fn a_publisher_nobody_watches_is_read_every_tenth_tick_until_a_player_comes() {
    let mut f = paced_fixture();
    let publisher = f.cam_publisher();
    let reads_before = f.net.clients[publisher.0].reads;
    let (sent, _, _) = one_second_of_audio(&mut f, publisher, &[]);
    // 50 messages in one second (and the window after it) in one read per 400 ms.
    let reads = f.net.clients[publisher.0].reads - reads_before;
    assert!((2..=3).contains(&reads), "{reads} reads of the publisher");
    assert_eq!(
        f.net.clients[publisher.0].read_every,
        Some(UNWATCHED_EVERY),
        "the publisher is read every tenth tick"
    );
    // A player comes: the publisher is back on the grid before its next message, so the
    // player's first live message waits no more than a tick.
    let player = f.cam_player().0;
    assert_eq!(f.net.clients[publisher.0].read_every, Some(BASE));
    let reads_before = f.net.clients[publisher.0].reads;
    let (more, sent_at, writes) = one_second_of_audio(&mut f, publisher, &[player]);
    let reads = f.net.clients[publisher.0].reads - reads_before;
    assert!((24..=26).contains(&reads), "{reads} reads of the publisher");
    assert!((24..=26).contains(&writes[0]), "{} writes", writes[0]);
    // The player got what had not been read when it came (the last of the first second:
    // audio alone has no group of pictures to cache), then the second second whole and in
    // order, each message within a tick.
    let got = f.net.media(player);
    let (unread, live) = got.split_at(got.len() - more.len());
    assert!(live == more, "every message of the second second, in order");
    assert!(sent.ends_with(unread), "{} unread messages", unread.len());
    let live_arrivals = &f.arrivals[player][unread.len()..];
    for (i, (&arrived, &published)) in live_arrivals.iter().zip(&sent_at).enumerate() {
        let waited = arrived - published;
        assert!(waited <= BASE, "message {i} waited {waited:?}");
    }
    // The player leaves: the publisher goes back to every tenth tick at its next message.
    f.net.clients[player]
        .client
        .call(0, "deleteStream", vec![Value::Number(1.0)]);
    f.pump();
    let _ = one_second_of_audio(&mut f, publisher, &[]);
    assert_eq!(f.net.clients[publisher.0].read_every, Some(UNWATCHED_EVERY));
}

#[test]
fn a_connection_that_stops_publishing_is_read_as_its_bytes_arrive_again() {
    let mut f = paced_fixture();
    let (publisher, stream) = f.cam_publisher();
    let created = |f: &Fixture| {
        f.net
            .events(publisher)
            .iter()
            .filter(|e| matches!(e, ClientEvent::StreamCreated(_)))
            .count()
    };
    // While it publishes (to no one), a command waits for its next read: within ten ticks.
    f.net.clients[publisher].client.create_stream();
    f.pump();
    assert_eq!(created(&f), 1, "held until the read");
    f.advance_to(f.now + UNWATCHED_EVERY);
    assert_eq!(created(&f), 2, "read within ten ticks");
    // Once it stops, the next command is read at once.
    f.net.clients[publisher]
        .client
        .call(0, "deleteStream", vec![Value::Number(f64::from(stream))]);
    f.advance_to(f.now + UNWATCHED_EVERY);
    f.net.clients[publisher].client.create_stream();
    f.pump();
    assert_eq!(created(&f), 3, "no longer paced");
}

#[test]
fn with_paced_reads_a_bulk_reader_is_still_held_for_the_longest_window() {
    let (sent, [eager, bulk]) = twelve_seconds_to_readers(Some(LONGEST), true);
    assert_eq!(eager.media, sent, "every message, in order");
    assert_eq!(bulk.media, sent, "every message, in order");
    assert_no_wait_past_the_base_window(&eager);
    // The eager reader is written once per tick (150 in six seconds); the bulk one, held on
    // the longest lane, less than a quarter as often.
    assert!(
        (145..=155).contains(&eager.late_writes),
        "{}",
        eager.late_writes
    );
    assert!(
        bulk.late_writes * 4 < eager.late_writes,
        "{}",
        bulk.late_writes
    );
}

#[test]
fn a_stream_with_many_eager_players_holds_them_and_reads_its_publisher_as_bytes_arrive() {
    let mut f = paced_fixture();
    let publisher = f.cam_publisher();
    let players: Vec<(usize, u32)> = (0..3).map(|_| f.cam_player()).collect();
    let indexes: Vec<usize> = players.iter().map(|p| p.0).collect();
    // Three eager players: from the first message on, the publisher is read as its bytes
    // arrive (a read per message) and the players are held, as without pacing.
    let reads_before = f.net.clients[publisher.0].reads;
    let (sent, sent_at, writes) = one_second_of_audio(&mut f, publisher, &indexes);
    let reads = f.net.clients[publisher.0].reads - reads_before;
    assert!(reads >= 48, "{reads} reads of 50 messages");
    for &p in &indexes {
        assert_eq!(f.net.media(p), sent, "player {p}: every message, in order");
        let worst = f.arrivals[p]
            .iter()
            .zip(&sent_at)
            .map(|(a, s)| *a - *s)
            .max()
            .unwrap();
        assert!(worst <= BASE, "a message waited {worst:?}");
    }
    // Held: about one write per window. (In virtual time a hold gathers exactly a window's
    // messages; in real time it starts at the first message after a write and gathers a
    // little more, which is why many eager players are held rather than paced.)
    for w in writes {
        assert!((24..=26).contains(&w), "{w} writes in one second");
    }
    // One leaves: two eager players, and the publisher is paced again.
    let (gone, gone_stream) = players[2];
    f.net.clients[gone].client.call(
        0,
        "deleteStream",
        vec![Value::Number(f64::from(gone_stream))],
    );
    f.pump();
    let reads_before = f.net.clients[publisher.0].reads;
    one_second_of_audio(&mut f, publisher, &indexes[..2]);
    let reads = f.net.clients[publisher.0].reads - reads_before;
    assert!(
        (24..=27).contains(&reads),
        "{reads} reads once two players are left"
    );
}
