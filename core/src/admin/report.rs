//! [`WorkerReport`]: what one node tells the HTTP listener for `/metrics` and the JSON API,
//! as plain data, and how the reports of the workers of a group merge into the whole server's.
//!
//! A single node renders its own report. With `--workers N`, only worker 0 listens for HTTP:
//! for each request that describes the server it asks every other worker for its report over
//! the relay ([`crate::worker_relay::RelayMessage::Report`]), each answers from its own
//! thread with a report of its own state ([`crate::worker_relay::RelayMessage::Reported`]),
//! and worker 0 answers once it has them all (see the gatherings of `super::HttpFront`).
//! Counters and gauges are summed; live streams are merged by key (a stream published on one worker and played
//! on others is one stream with every worker's players); applications are merged by name
//! (their counts summed); connections and gateway clients are listed from every worker.

use std::sync::Arc;

use crate::gateway::host::{ClientView, GatewayStats};
use crate::server::{
    AppView, ConnStates, ConnView, Counters, MemoryView, RelayCounters, RtmpServer, StreamView,
    RELAY_SESSION_STATES,
};

/// What a request wants of each worker (so a scrape does not list every connection).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReportKind {
    /// `/metrics`: the figures and the live streams' players.
    Metrics,
    /// `/api/v1/streams`.
    Streams,
    /// `/api/v1/connections`.
    Connections,
    /// `/api/v1/calls`.
    Calls,
    /// `/api/v1/applications`.
    Applications,
}

/// One node's figures, summable across workers.
#[derive(Debug, Clone, Default, PartialEq)]
pub(crate) struct NodeStats {
    pub counters: Counters,
    pub states: ConnStates,
    pub memory: MemoryView,
    pub recordings: u64,
    pub record_bytes: u64,
    pub record_failures: u64,
    pub far_media_dropped: u64,
    /// The gateway's, when it is on.
    pub gateway: Option<GatewayStats>,
    /// The relays' counters, and their sessions now by direction and state.
    pub relay: RelayCounters,
    pub relay_sessions: [[u64; RELAY_SESSION_STATES.len()]; 2],
}

impl NodeStats {
    fn add(&mut self, other: &NodeStats) {
        self.counters.add(&other.counters);
        self.states.add(&other.states);
        self.memory.add(&other.memory);
        self.recordings += other.recordings;
        self.record_bytes += other.record_bytes;
        self.record_failures += other.record_failures;
        self.far_media_dropped += other.far_media_dropped;
        self.relay.add(&other.relay);
        for (mine, theirs) in self.relay_sessions.iter_mut().zip(other.relay_sessions) {
            for (a, b) in mine.iter_mut().zip(theirs) {
                *a += b;
            }
        }
        match (&mut self.gateway, &other.gateway) {
            (Some(mine), Some(theirs)) => mine.add(theirs),
            (None, Some(theirs)) => self.gateway = Some(*theirs),
            _ => {}
        }
    }
}

/// What one node (one worker) reports; opaque outside the crate. Only the parts the request's
/// [`ReportKind`] needs are filled.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct WorkerReport {
    pub(crate) stats: NodeStats,
    pub(crate) streams: Vec<StreamView>,
    pub(crate) conns: Vec<ConnView>,
    /// `None` without a gateway.
    pub(crate) clients: Option<Vec<ClientView>>,
    /// By name.
    pub(crate) apps: Vec<AppView>,
}

impl WorkerReport {
    /// `server`'s report for `kind`.
    pub(crate) fn of(server: &RtmpServer, kind: ReportKind) -> Self {
        let mut report = WorkerReport::default();
        match kind {
            ReportKind::Metrics => {
                report.stats = server.node_stats();
                report.streams = server.stream_views();
            }
            ReportKind::Streams => report.streams = server.stream_views(),
            ReportKind::Connections => report.conns = server.conn_views(),
            ReportKind::Calls => report.clients = server.gateway_clients(),
            ReportKind::Applications => report.apps = server.app_views(),
        }
        report
    }

    /// The whole server's: `self` (this node's) with the other workers' `others`.
    pub(crate) fn merged(mut self, others: &[Arc<WorkerReport>]) -> Self {
        for other in others {
            self.stats.add(&other.stats);
            for stream in &other.streams {
                match self.streams.iter_mut().find(|s| s.key == stream.key) {
                    Some(mine) => merge_stream(mine, stream),
                    None => self.streams.push(stream.clone()),
                }
            }
            self.conns.extend(other.conns.iter().cloned());
            for app in &other.apps {
                match self.apps.iter_mut().find(|a| a.name == app.name) {
                    Some(mine) => mine.add(app),
                    None => self.apps.push(app.clone()),
                }
            }
            if let Some(theirs) = &other.clients {
                self.clients
                    .get_or_insert_with(Vec::new)
                    .extend(theirs.iter().cloned());
            }
        }
        if !others.is_empty() {
            self.streams.sort_by(|a, b| a.key.cmp(&b.key));
            self.conns.sort_by_key(|c| c.id);
            self.apps.sort_by(|a, b| a.name.cmp(&b.name));
            if let Some(clients) = &mut self.clients {
                clients.sort_by_key(|c| c.conn);
            }
        }
        self
    }
}

/// One live stream as two workers see it: the publisher's side (whichever has it) and
/// everyone's players.
fn merge_stream(mine: &mut StreamView, theirs: &StreamView) {
    mine.players += theirs.players;
    // Each worker's own: the publisher's pushes, every worker's pull.
    mine.relays.extend(theirs.relays.iter().cloned());
    if theirs.publisher.is_some() {
        mine.publisher = theirs.publisher;
        mine.since = theirs.since;
        mine.remote = false;
        mine.recording |= theirs.recording;
    }
    if mine.video.is_none() {
        mine.video.clone_from(&theirs.video);
    }
    if mine.audio.is_none() {
        mine.audio.clone_from(&theirs.audio);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stream(key: &str, players: usize, published: bool) -> StreamView {
        StreamView {
            key: key.into(),
            publisher: published.then(|| (crate::ids::ConnId(1), "127.0.0.1:1".parse().unwrap())),
            remote: !published,
            video: published.then(|| "h264".into()),
            audio: None,
            players,
            since: None,
            recording: false,
            relays: Vec::new(),
        }
    }

    #[test]
    fn streams_merge_by_key_and_counters_add_up() {
        let mut mine = WorkerReport {
            streams: vec![stream("live/a", 2, false)],
            ..WorkerReport::default()
        };
        mine.stats.counters.accepted = 3;
        let mut theirs = WorkerReport {
            streams: vec![stream("live/a", 1, true), stream("live/b", 4, true)],
            ..WorkerReport::default()
        };
        theirs.stats.counters.accepted = 5;
        theirs.stats.counters.closed[0] = 1;
        let merged = mine.merged(&[Arc::new(theirs)]);
        assert_eq!(merged.stats.counters.accepted, 8);
        assert_eq!(merged.stats.counters.closed[0], 1);
        assert_eq!(merged.streams.len(), 2);
        let a = &merged.streams[0];
        assert_eq!((a.key.as_str(), a.players, a.remote), ("live/a", 3, false));
        assert!(a.publisher.is_some());
        assert_eq!(a.video.as_deref(), Some("h264"));
        assert_eq!(merged.streams[1].players, 4);
    }
}
