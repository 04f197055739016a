//! Relays: live streams republished to other servers (push) and played from them (pull), each
//! by an RTMP client session inside the node ([`upstream::Upstream`]) on a TCP stream the node
//! opens itself, through the same driver contract as the gateway's SIP over TCP and the HTTP
//! callbacks ([`crate::tcp`]: `Connect`, `Send`, `Close`; `Connected`, `Received`, `Sent`,
//! `Closed`). Relay streams carry bit 61 in their id, so they never meet the gateway's
//! (counted from 1), the callbacks' (bit 62) or accepted ones (the top bit).
//!
//! This file owns the sessions' life, shared by both directions: the connection attempt, the
//! events of its stream, the timer (setup deadline, silence, retry, idle close), failure and
//! retry with [`backoff::Backoff`], the end, and what the API and metrics read. What a push
//! does with a publication is in `push`, what a pull does for its players in `pull`.
//!
//! Bounds: sessions in total and per application ([`RelayLimits`]), a push's backlog (the
//! players' soft and hard limits, as an HTTP-FLV player's), what an upstream sends (the
//! server's chunk limits, its unfinished messages in the server's budget), the time to set up
//! and the silence of a session (the server's ping and dead-peer times), and the waits between
//! retries.

mod backoff;
mod config;
mod pull;
mod pull_workers;
mod push;
mod upstream;

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::{Duration, Instant};

use std::cmp::Reverse;

use bytes::BytesMut;

pub use config::{RelayLimits, RelayUrl};

use super::player_backpressure::PlayerBackpressure;
use super::{RtmpServer, Timer};
use crate::io::{Event, Output, RelayDirection, RelayPhase};
use crate::tcp::{StreamId, TcpCommand, TcpEvent};
use crate::tls::layer::TlsLayer;
use crate::tls::rustls::pki_types::ServerName;
use backoff::Backoff;
use upstream::{Note, Phase, Role, Upstream};

/// The bit that marks the TCP streams of relay sessions.
const RELAY_STREAM: u64 = 1 << 61;

/// Why an attempt failed, as the metrics label it.
pub(crate) const FAILURE_KINDS: [&str; 7] = [
    "connect",
    "refused",
    "not_found",
    "timeout",
    "broken",
    "ended",
    "backlog",
];

/// Why an attempt failed (an index of [`FAILURE_KINDS`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Failure {
    /// The TCP connect failed, or the connection closed before the session started.
    Connect = 0,
    /// The upstream refused `connect`, `publish` or `play`.
    Refused = 1,
    /// A pull's upstream has no such stream.
    NotFound = 2,
    /// No answer within the setup time, or silence past the dead-peer time.
    Timeout = 3,
    /// The connection broke (closed, reset, the protocol broken) once started.
    Broken = 4,
    /// A pull's upstream ended the play (`Play.Stop`, `Play.Complete`).
    Ended = 5,
    /// A push fell past the hard backlog.
    Backlog = 6,
}

/// The direction's index in the counters.
fn dir(direction: RelayDirection) -> usize {
    match direction {
        RelayDirection::Push => 0,
        RelayDirection::Pull => 1,
    }
}

/// Relay counters since the start (see `cli/METRICS.md`).
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub(crate) struct RelayCounters {
    /// Sessions that reached the upstream's `Publish.Start` / `Play.Start`, by direction.
    pub started: [u64; 2],
    /// Attempts that failed, by direction and [`FAILURE_KINDS`].
    pub failures: [[u64; FAILURE_KINDS.len()]; 2],
    /// Sessions not started for the limits, by direction.
    pub refused_by_limits: [u64; 2],
    /// Video messages a push left out for its backlog.
    pub dropped: u64,
    /// Bytes the driver wrote to upstreams, and bytes read from them, by direction.
    pub sent_bytes: [u64; 2],
    pub received_bytes: [u64; 2],
}

impl RelayCounters {
    /// Adds `other`'s (another worker's).
    pub(crate) fn add(&mut self, other: &RelayCounters) {
        for d in 0..2 {
            self.started[d] += other.started[d];
            self.refused_by_limits[d] += other.refused_by_limits[d];
            self.sent_bytes[d] += other.sent_bytes[d];
            self.received_bytes[d] += other.received_bytes[d];
            for (a, b) in self.failures[d].iter_mut().zip(other.failures[d]) {
                *a += b;
            }
        }
        self.dropped += other.dropped;
    }
}

/// The states a session is counted in by the metrics.
pub(crate) const SESSION_STATES: [&str; 3] = ["waiting", "connecting", "live"];

/// One relay session, as the API shows it.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct RelayView {
    pub direction: RelayDirection,
    /// The upstream's URL without its query.
    pub upstream: String,
    /// One of [`SESSION_STATES`].
    pub state: &'static str,
    /// A push's bytes handed to the driver and not yet written, and the media time they span.
    pub backlog_bytes: u64,
    pub behind_ms: u32,
    /// Attempts that failed since the session began.
    pub failures: u64,
    /// Since when the upstream has taken the publish or play.
    pub since: Option<Instant>,
}

/// Where a session's connection stands.
#[derive(Debug)]
enum Link {
    /// Waiting to try again at this time.
    Waiting(Instant),
    /// An attempt under way, or a started session.
    Up(Box<Upstream>),
}

/// One push (a local publication to one upstream) or pull (one name from its upstreams).
#[derive(Debug)]
struct RelaySession {
    key: Arc<str>,
    /// The local stream's name (without the application).
    name: String,
    direction: RelayDirection,
    /// The upstreams: a push's one, a pull's list, tried in order.
    targets: Vec<RelayUrl>,
    /// The one tried now.
    target: usize,
    /// A pull: how many targets of this round said they have no such stream.
    not_found: usize,
    link: Link,
    backoff: Backoff,
    /// Since when the upstream has taken the publish or play.
    since: Option<Instant>,
    /// A pull without players since then (closed after the idle time).
    idle_since: Option<Instant>,
    /// A push's media under backpressure, as a player's.
    backpressure: PlayerBackpressure,
    /// A push's first attempt, begun with the publication: what the publisher sends while it
    /// is set up waits here (within the soft backlog), so that the upstream gets the stream
    /// from its very start (see `push`). `None` once it started, failed or overflowed.
    from_start: Option<push::Pending>,
    /// The deadline of the session's live timer entry (older ones are stale).
    armed: Option<Instant>,
    failures: u64,
    /// A pull: how it ends, when it does (for the other workers of a group).
    pull_end: pull_workers::PullEnd,
}

impl RelaySession {
    fn upstream(&self) -> Option<&Upstream> {
        match &self.link {
            Link::Up(up) => Some(up),
            Link::Waiting(_) => None,
        }
    }

    fn upstream_mut(&mut self) -> Option<&mut Upstream> {
        match &mut self.link {
            Link::Up(up) => Some(up),
            Link::Waiting(_) => None,
        }
    }

    fn url(&self) -> String {
        self.targets[self.target].url.redacted()
    }

    fn state(&self) -> &'static str {
        match &self.link {
            Link::Waiting(_) => SESSION_STATES[0],
            Link::Up(up) if up.phase == Phase::Started => SESSION_STATES[2],
            Link::Up(_) => SESSION_STATES[1],
        }
    }
}

/// The node's relay sessions.
#[derive(Debug, Default)]
pub(crate) struct Relays {
    sessions: BTreeMap<u64, RelaySession>,
    /// The session of each relay TCP stream.
    streams: HashMap<StreamId, u64>,
    next_session: u64,
    next_stream: u64,
    pub counters: RelayCounters,
    /// What an upstream's bytes brought, taken and put back per read (no allocation each).
    notes: Vec<Note>,
}

impl Relays {
    /// Whether `event` is about a relay session's TCP stream.
    pub(crate) fn owns(event: &TcpEvent) -> bool {
        event
            .opened_stream()
            .is_some_and(|stream| stream.0 & RELAY_STREAM != 0)
    }

    /// Sessions now, by direction and [`SESSION_STATES`].
    pub(crate) fn session_counts(&self) -> [[u64; SESSION_STATES.len()]; 2] {
        let mut counts = [[0; SESSION_STATES.len()]; 2];
        for session in self.sessions.values() {
            let state = SESSION_STATES
                .iter()
                .position(|s| *s == session.state())
                .unwrap_or(0);
            counts[dir(session.direction)][state] += 1;
        }
        counts
    }

    /// The sessions of the stream `key`, for the API.
    pub(crate) fn views(&self, ids: impl Iterator<Item = u64>) -> Vec<RelayView> {
        ids.filter_map(|id| self.sessions.get(&id))
            .map(|session| {
                // A pull's own sends are replies and acknowledgements: no backlog to speak of.
                let up = session
                    .upstream()
                    .filter(|_| session.direction == RelayDirection::Push);
                RelayView {
                    direction: session.direction,
                    upstream: session.url(),
                    state: session.state(),
                    backlog_bytes: up.map_or(0, |u| u.backlog() as u64),
                    behind_ms: up.map_or(0, Upstream::behind_ms),
                    failures: session.failures,
                    since: session.since,
                }
            })
            .collect()
    }

    /// Sessions in `app` (its key's prefix) and in all.
    fn counts(&self, app: &str) -> (usize, usize) {
        let in_app = self
            .sessions
            .values()
            .filter(|s| s.key.split_once('/').is_some_and(|(a, _)| a == app))
            .count();
        (in_app, self.sessions.len())
    }
}

impl RtmpServer {
    /// Whether `event` is about a relay session's TCP stream (the node routes it to
    /// [`Self::relay_tcp`]).
    pub(crate) fn relay_owns(event: &TcpEvent) -> bool {
        Relays::owns(event)
    }

    /// Starts a relay session for the stream `key` (`app/name`) to `targets` if the limits
    /// allow: its id, or `None` (told in an event).
    fn relay_open(
        &mut self,
        key: &Arc<str>,
        name: &str,
        direction: RelayDirection,
        targets: Vec<RelayUrl>,
    ) -> Option<u64> {
        let app = key.split_once('/').map_or("", |(a, _)| a);
        let (in_app, total) = self.relays.counts(app);
        let limits = &self.config.relay;
        let full = if total >= limits.max_sessions {
            Some(format!("{total} relay sessions already (max_sessions)"))
        } else if in_app >= limits.max_sessions_per_app {
            Some(format!(
                "{in_app} relay sessions already in {app} (max_sessions_per_app)"
            ))
        } else {
            None
        };
        if let Some(reason) = full {
            self.relays.counters.refused_by_limits[dir(direction)] += 1;
            let upstream = targets
                .first()
                .map_or_else(String::new, |t| t.url.redacted());
            self.relay_event(key, direction, upstream, RelayPhase::Ended { reason });
            return None;
        }
        self.relays.next_session += 1;
        let id = self.relays.next_session;
        let backoff = Backoff::new(limits.backoff_min, limits.backoff_max);
        self.relays.sessions.insert(
            id,
            RelaySession {
                key: key.clone(),
                name: name.to_owned(),
                direction,
                targets,
                target: 0,
                not_found: 0,
                link: Link::Waiting(self.last_now),
                backoff,
                since: None,
                idle_since: None,
                backpressure: PlayerBackpressure::waiting_for_keyframe(),
                from_start: (direction == RelayDirection::Push).then(push::Pending::default),
                armed: None,
                failures: 0,
                pull_end: pull_workers::PullEnd::Over,
            },
        );
        self.relay_connect(self.last_now, id);
        Some(id)
    }

    /// A new connection attempt to the session's current target.
    fn relay_connect(&mut self, now: Instant, id: u64) {
        let (chunk_limits, chunk_size) = (self.config.chunk_limits, self.config.chunk_size);
        let Some(session) = self.relays.sessions.get_mut(&id) else {
            return;
        };
        self.relays.next_stream += 1;
        let stream = StreamId(RELAY_STREAM | self.relays.next_stream);
        let target = &session.targets[session.target];
        let role = match session.direction {
            RelayDirection::Push => Role::Push,
            RelayDirection::Pull => Role::Pull,
        };
        let tls = match (target.url.tls, &self.config.relay_tls) {
            (false, _) => Ok(None),
            (true, None) => Err("rtmps:// needs the relay's TLS settings (none)".to_owned()),
            (true, Some(config)) => ServerName::try_from(target.url.host.clone())
                .map_err(|e| format!("{}: {e}", target.url.host))
                .and_then(|name| TlsLayer::client(config, name))
                .map(Some),
        };
        let tls = match tls {
            Ok(tls) => tls,
            Err(error) => {
                return self.relay_failed(now, id, Failure::Connect, format!("TLS: {error}"));
            }
        };
        let up = Upstream::new(
            stream,
            role,
            &target.url,
            &session.name,
            &mut self.rng,
            chunk_limits,
            chunk_size,
            now,
            tls,
        );
        self.outputs.push_back(Output::Tcp(TcpCommand::Connect {
            stream,
            remote: target.addr,
            local_ip: None,
        }));
        session.link = Link::Up(Box::new(up));
        session.backpressure = PlayerBackpressure::waiting_for_keyframe();
        let (key, direction, url) = (session.key.clone(), session.direction, session.url());
        self.relays.streams.insert(stream, id);
        self.relay_flush(id);
        self.relay_arm(id);
        self.relay_event(&key, direction, url, RelayPhase::Connecting);
    }

    /// Hands the driver what the session's client queued (its handshake, commands, replies).
    fn relay_flush(&mut self, id: u64) {
        let Some(up) = self
            .relays
            .sessions
            .get_mut(&id)
            .and_then(RelaySession::upstream_mut)
        else {
            return;
        };
        while let Some(data) = up.output() {
            self.outputs.push_back(Output::Tcp(TcpCommand::Send {
                stream: up.stream,
                data,
            }));
        }
    }

    /// Something on a relay session's TCP stream.
    pub(crate) fn relay_tcp(&mut self, now: Instant, event: TcpEvent) {
        self.last_now = self.last_now.max(now);
        let stream = match &event {
            TcpEvent::Connected { stream, .. }
            | TcpEvent::ConnectFailed { stream, .. }
            | TcpEvent::Received { stream, .. }
            | TcpEvent::Sent { stream, .. }
            | TcpEvent::Closed { stream, .. } => *stream,
            TcpEvent::Listening { .. } | TcpEvent::Accepted { .. } => return,
        };
        let Some(&id) = self.relays.streams.get(&stream) else {
            return; // a stream already given up
        };
        let Some(session) = self.relays.sessions.get_mut(&id) else {
            return;
        };
        let direction = dir(session.direction);
        let started = session
            .upstream()
            .is_some_and(|up| up.phase == Phase::Started);
        match event {
            TcpEvent::Connected { .. } => {
                if let Some(up) = session.upstream_mut() {
                    up.connected();
                }
            }
            TcpEvent::ConnectFailed { error, .. } => {
                self.relay_failed(now, id, Failure::Connect, error);
            }
            TcpEvent::Received { data, .. } => {
                self.relays.counters.received_bytes[direction] += data.len() as u64;
                self.relay_received(now, id, data);
            }
            TcpEvent::Sent { bytes, .. } => {
                self.relays.counters.sent_bytes[direction] += bytes as u64;
                if let Some(up) = session.upstream_mut() {
                    up.taken(bytes);
                }
            }
            TcpEvent::Closed { error, .. } => {
                let kind = if started {
                    Failure::Broken
                } else {
                    Failure::Connect
                };
                let error = error.unwrap_or_else(|| "closed by the upstream".to_owned());
                self.relay_failed(now, id, kind, error);
            }
            TcpEvent::Listening { .. } | TcpEvent::Accepted { .. } => {}
        }
    }

    /// Bytes from an upstream: the client answers, and the relay acts on what they brought.
    fn relay_received(&mut self, now: Instant, id: u64, data: BytesMut) {
        let max_partial = self.config.max_total_partial_bytes;
        let Some(up) = self
            .relays
            .sessions
            .get_mut(&id)
            .and_then(RelaySession::upstream_mut)
        else {
            return;
        };
        let stream = up.stream;
        let mut notes = std::mem::take(&mut self.relays.notes);
        let result = up.received(data, now, &mut notes);
        // An upstream's unfinished messages count in the server's budget like a client's.
        let (before, after) = up.take_partial_change();
        up.partial = after;
        self.partial_total = self.partial_total - before + after;
        let over_budget = after > before && self.partial_total > max_partial;
        self.relay_flush(id);
        for note in notes.drain(..) {
            // A note may end the attempt (a refusal): the rest is of no use then.
            if !self.relay_current(id, stream) {
                break;
            }
            self.relay_note(now, id, note);
        }
        self.relays.notes = notes;
        if !self.relay_current(id, stream) {
            return;
        }
        if let Err(e) = result {
            self.relay_failed(now, id, Failure::Broken, e.to_string());
        } else if over_budget {
            let error = format!("unfinished messages past the server's budget ({max_partial})");
            self.relay_failed(now, id, Failure::Broken, error);
        }
    }

    /// Whether session `id` still uses the TCP stream `stream`.
    fn relay_current(&self, id: u64, stream: StreamId) -> bool {
        self.relays
            .sessions
            .get(&id)
            .and_then(RelaySession::upstream)
            .is_some_and(|up| up.stream == stream)
    }

    fn relay_note(&mut self, now: Instant, id: u64, note: Note) {
        let Some(session) = self.relays.sessions.get_mut(&id) else {
            return;
        };
        let direction = session.direction;
        match note {
            Note::Started => {
                session.since = Some(now);
                session.not_found = 0;
                self.relays.counters.started[dir(direction)] += 1;
                let (key, url) = (session.key.clone(), session.url());
                self.relay_arm(id);
                self.relay_event(&key, direction, url, RelayPhase::Live);
                if direction == RelayDirection::Push {
                    self.push_started(id);
                }
            }
            Note::Refused { code, not_found } => {
                let kind = if not_found {
                    Failure::NotFound
                } else {
                    Failure::Refused
                };
                self.relay_failed(now, id, kind, format!("the upstream answered {code}"));
            }
            Note::Status(code) if direction == RelayDirection::Pull => {
                self.pull_status(now, id, &code)
            }
            Note::Status(_) => {}
            Note::Media(msg) => self.pull_media(id, msg),
            Note::StreamEof => {
                let key = session.key.clone();
                self.pull_lost(&key);
            }
        }
    }

    /// The attempt of session `id` failed: its connection is closed, and it tries the next
    /// upstream, or waits and tries again (a pull ends instead when nobody waits for it, or
    /// when every upstream said it has no such stream).
    fn relay_failed(&mut self, now: Instant, id: u64, failure: Failure, error: String) {
        self.relay_disconnect(id, false);
        let Some(session) = self.relays.sessions.get_mut(&id) else {
            return;
        };
        let direction = session.direction;
        self.relays.counters.failures[dir(direction)][failure as usize] += 1;
        session.failures += 1;
        session.from_start = None;
        let up_for = session
            .since
            .take()
            .map_or(Duration::ZERO, |since| now.saturating_duration_since(since));
        let (key, url) = (session.key.clone(), session.url());
        if direction == RelayDirection::Pull {
            self.pull_lost(&key);
            let Some(session) = self.relays.sessions.get_mut(&id) else {
                return;
            };
            session.not_found += usize::from(failure == Failure::NotFound);
            if session.target + 1 < session.targets.len() {
                // The next upstream of the list, at once.
                session.target += 1;
                let retry_in = Some(Duration::ZERO);
                self.relay_event(&key, direction, url, RelayPhase::Failed { error, retry_in });
                return self.relay_connect(now, id);
            }
            let everywhere_missing = session.not_found == session.targets.len();
            session.target = 0;
            session.not_found = 0;
            if everywhere_missing {
                self.relay_event(
                    &key,
                    direction,
                    url,
                    RelayPhase::Failed {
                        error,
                        retry_in: None,
                    },
                );
                return self.pull_not_found(id);
            }
            if !self.pull_has_players(&key) {
                let retry_in = None;
                self.relay_event(&key, direction, url, RelayPhase::Failed { error, retry_in });
                return self.relay_end(id, "no player waits for it");
            }
        }
        let Some(session) = self.relays.sessions.get_mut(&id) else {
            return;
        };
        let wait = session.backoff.failed(up_for);
        session.link = Link::Waiting(now + wait);
        self.relay_arm(id);
        let retry_in = Some(wait);
        self.relay_event(&key, direction, url, RelayPhase::Failed { error, retry_in });
    }

    /// Closes session `id`'s connection, if it has one (`goodbye`: ends its stream first),
    /// and forgets the stream; the session waits, to be retried or ended.
    fn relay_disconnect(&mut self, id: u64, goodbye: bool) {
        let Some(session) = self.relays.sessions.get_mut(&id) else {
            return;
        };
        if goodbye {
            if let Some(up) = session.upstream_mut() {
                up.goodbye();
            }
            self.relay_flush(id);
        }
        let Some(session) = self.relays.sessions.get_mut(&id) else {
            return;
        };
        let Link::Up(up) = std::mem::replace(&mut session.link, Link::Waiting(self.last_now))
        else {
            return;
        };
        self.partial_total -= up.partial;
        self.relays.streams.remove(&up.stream);
        self.outputs
            .push_back(Output::Tcp(TcpCommand::Close { stream: up.stream }));
    }

    /// Ends session `id` for `reason`: its stream is ended upstream, its connection closed,
    /// and the local stream forgets it.
    fn relay_end(&mut self, id: u64, reason: &str) {
        self.relay_disconnect(id, true);
        let Some(session) = self.relays.sessions.remove(&id) else {
            return;
        };
        let key = session.key.clone();
        match session.direction {
            RelayDirection::Push => {
                if let Some(stream) = self.live.get_mut(&*key) {
                    stream.relay.pushes.retain(|p| *p != id);
                }
            }
            RelayDirection::Pull => self.pull_forget(&key, id, session.pull_end),
        }
        let reason = reason.to_owned();
        self.relay_event(
            &key,
            session.direction,
            session.url(),
            RelayPhase::Ended { reason },
        );
    }

    /// Re-arms session `id`'s timer at its next deadline: the retry, the setup deadline or
    /// the silence check, and a pull's idle close.
    fn relay_arm(&mut self, id: u64) {
        let (setup, silence, idle) = (
            self.config.relay.setup_timeout,
            self.config.ping_interval + self.config.dead_timeout,
            self.config.relay.pull_idle_timeout,
        );
        let Some(session) = self.relays.sessions.get_mut(&id) else {
            return;
        };
        let link = match &session.link {
            Link::Waiting(at) => *at,
            Link::Up(up) if up.phase == Phase::Started => up.last_rx + silence,
            Link::Up(up) => up.started_at + setup,
        };
        let next = session
            .idle_since
            .map_or(link, |since| link.min(since + idle));
        if session.armed != Some(next) {
            session.armed = Some(next);
            self.timers.push(Reverse((next, Timer::Relay(id))));
        }
    }

    /// Session `id`'s timer entry for `deadline` came due.
    pub(super) fn relay_timer(&mut self, now: Instant, id: u64, deadline: Instant) {
        let (setup, silence, idle) = (
            self.config.relay.setup_timeout,
            self.config.ping_interval + self.config.dead_timeout,
            self.config.relay.pull_idle_timeout,
        );
        let Some(session) = self.relays.sessions.get_mut(&id) else {
            return;
        };
        if session.armed != Some(deadline) {
            return; // replaced since
        }
        session.armed = None;
        if session.idle_since.is_some_and(|since| since + idle <= now) {
            return self.relay_end(id, "idle: no player for the idle time");
        }
        /// What the timer calls for.
        enum Due {
            Retry,
            SetupOver,
            Silent,
            Nothing,
        }
        let due = match &session.link {
            Link::Waiting(at) if *at <= now => Due::Retry,
            Link::Up(up) if up.phase != Phase::Started && up.started_at + setup <= now => {
                Due::SetupOver
            }
            Link::Up(up) if up.phase == Phase::Started && up.last_rx + silence <= now => {
                Due::Silent
            }
            _ => Due::Nothing,
        };
        let (key, pull) = (
            session.key.clone(),
            session.direction == RelayDirection::Pull,
        );
        match due {
            Due::Retry if pull && !self.pull_has_players(&key) => {
                self.relay_end(id, "no player waits for it")
            }
            Due::Retry => self.relay_connect(now, id),
            Due::SetupOver => {
                let error = format!("no answer within {} s", setup.as_secs_f64());
                self.relay_failed(now, id, Failure::Timeout, error)
            }
            Due::Silent => {
                let error = format!("silent for {} s", silence.as_secs_f64());
                self.relay_failed(now, id, Failure::Timeout, error)
            }
            Due::Nothing => self.relay_arm(id),
        }
    }

    fn relay_event(
        &mut self,
        key: &Arc<str>,
        direction: RelayDirection,
        upstream: String,
        phase: RelayPhase,
    ) {
        self.outputs.push_back(Output::Event(Event::Relay {
            stream: key.to_string(),
            direction,
            upstream,
            phase,
        }));
    }

    /// The relay sessions of the live stream `key`, for the API.
    pub(crate) fn relay_views(&self, key: &str) -> Vec<RelayView> {
        let Some(stream) = self.live.get(key) else {
            return Vec::new();
        };
        let links = &stream.relay;
        self.relays
            .views(links.pushes.iter().copied().chain(links.pull))
    }
}
