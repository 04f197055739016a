//! Pulls (an edge): a player of a name nobody publishes here, in an application with `pull`
//! upstreams, opens one relay session that plays the name upstream (the upstreams tried in
//! order); every later player of the name shares it. What the upstream sends is delivered as
//! a local publication's media is (`RtmpServer::deliver`: the same fan-out, GOP cache and
//! player backpressure), so the stream is live here while the upstream's is.
//!
//! Local players hear what a player of the upstream would: `NetStream.Play.PublishNotify`
//! when media starts, `NetStream.Play.UnpublishNotify` when the upstream's publisher leaves
//! or the connection breaks (they keep waiting, and the session retries while they do), and
//! `NetStream.Play.StreamNotFound` when every upstream says it has no such stream (their play
//! ends). The session closes a while after its last player left
//! ([`super::RelayLimits::pull_idle_timeout`]), and at once when a publisher here takes the
//! name.

use std::sync::Arc;

use smallvec::SmallVec;

use super::super::session::StreamRole;
use super::super::RtmpServer;
use super::pull_workers::PullEnd;
use super::Failure;
use crate::amf::Value;
use crate::ids::ConnId;
use crate::io::RelayDirection;
use crate::rtmp::command::{data_message, message_values};
use crate::rtmp::message::{type_id, RtmpMessage};
use crate::rtmp::shared_message::SharedMessage;

impl RtmpServer {
    /// A player joined, or wants, `key` (`app/name`): whether a pull feeds it (one already
    /// open, kept from closing now that it has a player; or, when nobody publishes the name
    /// here, one opened now if the application pulls and the limits allow).
    pub(in crate::server) fn pull_for_player(&mut self, key: &Arc<str>) -> bool {
        let (existing, live) = match self.live.get(&**key) {
            Some(stream) => (stream.relay.pull, stream.is_live()),
            None => (None, false),
        };
        if let Some(id) = existing {
            self.pull_keep(id);
            return true;
        }
        if live {
            return false;
        }
        let Some((app, name)) = key.split_once('/') else {
            return false;
        };
        let targets = match self.config.apps.get(app) {
            Some(app) if !app.pull.is_empty() => app.pull.clone(),
            _ => return false,
        };
        if self.relay.is_some() {
            // One pull per server: the registry decides which worker opens it.
            self.pull_claim(key);
            return true;
        }
        self.live.entry(key.clone()).or_default();
        let Some(id) = self.relay_open(key, name, RelayDirection::Pull, targets) else {
            // Refused for the limits: the entry made for it goes unless someone uses it.
            if self.live.get(&**key).is_some_and(|s| s.is_unused()) {
                self.live.remove(&**key);
            }
            return false;
        };
        if let Some(stream) = self.live.get_mut(&**key) {
            stream.relay.pull = Some(id);
        }
        true
    }

    /// Pull `id` has a player (again): its idle time, if it began, is over.
    pub(super) fn pull_keep(&mut self, id: u64) {
        if let Some(session) = self.relays.sessions.get_mut(&id) {
            if session.idle_since.take().is_some() {
                self.relay_arm(id);
            }
        }
    }

    /// A player of `key` left (or, in a group of workers, another worker unsubscribed): if
    /// a pull feeds it and nobody else plays it, the idle time starts.
    pub(in crate::server) fn pull_player_left(&mut self, key: &str) {
        if self.pull_has_players(key) {
            return;
        }
        let Some(id) = self.live.get(key).and_then(|s| s.relay.pull) else {
            return;
        };
        if let Some(session) = self.relays.sessions.get_mut(&id) {
            if session.idle_since.is_none() {
                session.idle_since = Some(self.last_now);
                self.relay_arm(id);
            }
        }
    }

    /// Whether anyone plays `key` here, or (in a group of workers) on a worker subscribed to
    /// it.
    pub(super) fn pull_has_players(&self, key: &str) -> bool {
        self.live.get(key).is_some_and(|s| {
            !s.players.is_empty() || !s.flv_players.is_empty() || !s.subscribers.is_empty()
        })
    }

    /// A publisher here (or on another worker) takes `key`: a pull that fed it ends.
    pub(in crate::server) fn end_pull(&mut self, key: &str) {
        if let Some(id) = self.live.get(key).and_then(|s| s.relay.pull) {
            if let Some(session) = self.relays.sessions.get_mut(&id) {
                session.pull_end = PullEnd::Taken;
            }
            self.relay_end(id, "published here");
        }
    }

    /// A status from pull `id`'s upstream.
    pub(super) fn pull_status(&mut self, now: std::time::Instant, id: u64, code: &str) {
        let Some(key) = self.relays.sessions.get(&id).map(|s| s.key.clone()) else {
            return;
        };
        match code {
            "NetStream.Play.PublishNotify" => self.pull_live(id),
            "NetStream.Play.UnpublishNotify" => self.pull_lost(&key),
            "NetStream.Play.Stop" | "NetStream.Play.Complete" => {
                let error = format!("the upstream answered {code}");
                self.relay_failed(now, id, Failure::Ended, error);
            }
            _ => {}
        }
    }

    /// The upstream's stream is live: so is the local one (its players are told, and start
    /// at its next keyframe).
    fn pull_live(&mut self, id: u64) {
        let Some(session) = self.relays.sessions.get(&id) else {
            return;
        };
        let (key, name) = (session.key.clone(), session.name.clone());
        let Some(stream) = self.live.get_mut(&*key) else {
            return;
        };
        if stream.relay.pulled || stream.publisher.is_some() || stream.remote.is_some() {
            return;
        }
        stream.relay.pulled = true;
        stream.since = Some(self.last_now);
        self.notify_published(&key, &name);
        self.pull_announce(&key, &name);
    }

    /// The upstream's publisher left, or the connection to it broke: the local players are
    /// told, as of any publisher that leaves, and keep waiting.
    pub(super) fn pull_lost(&mut self, key: &Arc<str>) {
        let Some(stream) = self.live.get_mut(&**key) else {
            return;
        };
        if stream.relay.pulled {
            stream.relay.pulled = false;
            self.end_publication(key);
            self.pull_unannounce(key);
        }
    }

    /// A message from pull `id`'s upstream: delivered to the local players and cached, as a
    /// local publisher's (metadata as `onMetaData`, without `@setDataFrame`).
    pub(super) fn pull_media(&mut self, id: u64, msg: RtmpMessage) {
        let Some(key) = self.relays.sessions.get(&id).map(|s| s.key.clone()) else {
            return;
        };
        let (msg, metadata) = match msg.type_id {
            type_id::DATA_AMF0 | type_id::DATA_AMF3 => {
                let Ok(values) = message_values(&msg) else {
                    return; // malformed data is dropped, as nothing a player could use
                };
                let values = match values.first().and_then(Value::as_str) {
                    Some("@setDataFrame") => &values[1..],
                    _ => &values[..],
                };
                match values.first().and_then(Value::as_str) {
                    Some("onMetaData") => {
                        (data_message(msg.stream_id, msg.timestamp, values), true)
                    }
                    // What the upstream's server says to every player of its own: not media.
                    Some("|RtmpSampleAccess") => return,
                    _ if !self.live.get(&*key).is_some_and(|s| s.relay.pulled) => return,
                    _ => (msg, false),
                }
            }
            _ => (msg, false),
        };
        self.pull_live(id);
        let pulled = self.live.get(&*key).is_some_and(|s| s.relay.pulled);
        if pulled {
            let mut shared = SharedMessage::new(msg);
            self.deliver(&key, &mut shared, metadata);
            // In a group of workers, to those subscribed to it (after the players here, so
            // they share their chunk encodings).
            self.relay_media(&key, &shared, metadata);
        }
    }

    /// No upstream of pull `id` has the stream: its players' plays fail with
    /// `NetStream.Play.StreamNotFound` (as the upstream's own players' would), and the pull
    /// ends.
    pub(super) fn pull_not_found(&mut self, id: u64) {
        let Some(session) = self.relays.sessions.get(&id) else {
            return;
        };
        let (key, name) = (session.key.clone(), session.name.clone());
        self.players_not_found(&key, &name);
        if let Some(session) = self.relays.sessions.get_mut(&id) {
            session.pull_end = PullEnd::NotFound;
        }
        self.relay_end(id, "no upstream has the stream");
    }

    /// The plays of `key` here fail with `NetStream.Play.StreamNotFound`.
    pub(super) fn players_not_found(&mut self, key: &Arc<str>, name: &str) {
        let players: SmallVec<[(ConnId, u32); 8]> = match self.live.get_mut(&**key) {
            Some(stream) => stream
                .players
                .drain(..)
                .map(|p| (p.conn, p.stream_id))
                .collect(),
            None => SmallVec::new(),
        };
        for (conn, stream_id) in players {
            if let Some(session) = self.sessions.get_mut(conn) {
                session.set_role(stream_id, StreamRole::Idle);
            }
            self.status(
                conn,
                stream_id,
                "error",
                "NetStream.Play.StreamNotFound",
                &format!("{name} not found."),
            );
        }
    }

    /// Pull `id` of `key` ended (`end` says how): the local stream forgets it (its players,
    /// if any, are told its publisher left) and is forgotten itself if nobody plays it; in a
    /// group of workers, the name goes back and the other workers hear of it.
    pub(super) fn pull_forget(&mut self, key: &Arc<str>, id: u64, end: PullEnd) {
        if let Some(stream) = self.live.get_mut(&**key) {
            if stream.relay.pull == Some(id) {
                stream.relay.pull = None;
            }
            if stream.relay.pulled {
                stream.relay.pulled = false;
                self.end_publication(key);
                // Withdrawn before the name goes back: another worker hears the publication
                // ended before it hears it may pull the name itself.
                self.pull_unannounce(key);
            } else if stream.is_unused() {
                self.live.remove(&**key);
            }
        }
        self.pull_release(key, end);
    }
}
