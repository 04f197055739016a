//! Delivering published media to players: the hot path.
//!
//! A published message is chunk-encoded once per (chunk size, message stream id) and the same
//! `Bytes` is queued on every player; per-player work is a backlog check and a queue push.
//! Backpressure: past the soft backlog limit a player's non-key video is dropped until the next
//! keyframe; past the hard limit (counting the video dropped since the player was last within
//! the soft one) the player is disconnected. The publisher and the other players
//! never wait for a slow one.
//!
//! With merged writes on (`ServerConfig::merge_writes`), media for an idle player is held
//! (see `merge`) instead of being signalled at once, except a player's first media after a play,
//! a resume or a new publisher, and the keyframe it was waiting for.

use std::sync::Arc;

use smallvec::SmallVec;

use super::live_stream::{media_kind, MediaKind};
use super::player_backpressure::Admit;
use super::read_pacing::ReadPace;
use super::session::{Held, StreamRole};
use super::RtmpServer;
use crate::amf::Value;
use crate::close_reason::CloseReason;
use crate::flv::metadata::properties_of;
use crate::ids::ConnId;
use crate::io::{Event, Output};
use crate::rtmp::command::message_values;
use crate::rtmp::control::UserControl;
use crate::rtmp::message::{type_id, RtmpMessage};
use crate::rtmp::shared_message::SharedMessage;

impl RtmpServer {
    /// The live stream key `conn` publishes on message stream `stream_id`, if any.
    fn published_key(&self, conn: ConnId, stream_id: u32) -> Option<Arc<str>> {
        match self.sessions.get(conn)?.role(stream_id)? {
            StreamRole::Publishing(key) => Some(key.clone()),
            _ => None,
        }
    }

    /// Audio, video or data from a publisher: fan out and cache.
    pub(super) fn publish_message(&mut self, conn: ConnId, msg: RtmpMessage) {
        self.publish_shared(conn, msg, false);
    }

    /// A message from a publisher (`metadata`: its `onMetaData`): recorded, delivered to the
    /// players here, cached, and relayed to the workers subscribed to it.
    fn publish_shared(&mut self, conn: ConnId, msg: RtmpMessage, metadata: bool) {
        let Some(key) = self.published_key(conn, msg.stream_id) else {
            return; // media on a stream that is not publishing: ignored
        };
        if matches!(msg.type_id, type_id::AUDIO | type_id::VIDEO) {
            self.record_media(&key, &msg);
        }
        let mut shared = SharedMessage::new(msg);
        let pushed = self.deliver(&key, &mut shared, metadata);
        // After the players here, so the pushes and the relayed copy share their chunk
        // encodings.
        if pushed {
            self.push_media(&key, &mut shared);
        }
        self.relay_media(&key, &shared, metadata);
    }

    /// Delivers a published message (from a publisher here, relayed from another worker, or
    /// pulled from upstream) to the stream's players, then caches it for late players; whether
    /// the stream has pushes (they get it next, from [`Self::publish_shared`]).
    pub(super) fn deliver(
        &mut self,
        key: &str,
        shared: &mut SharedMessage,
        metadata: bool,
    ) -> bool {
        let (soft, hard, max_gop) = (
            self.config.player_soft_backlog,
            self.config.player_hard_backlog,
            self.config.max_gop_cache_bytes,
        );
        let Some(stream) = self.live.get_mut(key) else {
            return false;
        };
        // Read on the merge grid: the wait a hold would add has passed in the socket.
        let read_pace = stream
            .publisher
            .and_then(|(conn, _)| self.sessions.get(conn))
            .map_or(ReadPace::Arrival, |session| session.read_pace);
        let read_on_grid = read_pace != ReadPace::Arrival;
        let kind = media_kind(&shared.msg, stream.primary_video_track);
        // One deadline per lane for every player this message is held on.
        let last_now = self.last_now;
        let mut merge = self.merge.as_mut().map(|m| {
            let deadlines = m.deadlines(last_now);
            (m, deadlines)
        });
        // With an adaptive window, a player's read-lag probe may go with this message.
        let probe_stamp = merge
            .as_ref()
            .is_some_and(|(m, _)| m.is_adaptive())
            .then(|| last_now.saturating_duration_since(self.epoch).as_millis() as u32);
        let is_video = shared.msg.type_id == type_id::VIDEO;
        let len = shared.msg.payload.len();
        let mut evict: SmallVec<[ConnId; 4]> = SmallVec::new();
        // Players on the base lane: whether the publisher is read on the grid from the next
        // message on (see `read_pacing`).
        let mut eager_players = 0;
        for player in stream.players.iter_mut() {
            let mut at_once = player.flush_next;
            let wanted = match shared.msg.type_id {
                type_id::AUDIO => player.receive_audio,
                type_id::VIDEO => player.receive_video,
                _ => true,
            };
            if player.paused {
                continue;
            }
            let Some(session) = self.sessions.get_mut(player.conn) else {
                continue;
            };
            // Counted whatever this message's type, so that the count holds from one message
            // to the next.
            eager_players += usize::from(session.merge_lane == 0);
            if !wanted {
                continue;
            }
            let backlog = session.backlog();
            match player
                .backpressure
                .admit(backlog, (soft, hard), is_video, kind, len)
            {
                Admit::Send { keyframe_start } => at_once |= keyframe_start,
                Admit::Wait => continue,
                Admit::Drop => {
                    self.counters.player_messages_dropped += 1;
                    continue;
                }
                Admit::Evict => {
                    evict.push(player.conn);
                    continue;
                }
            }
            let bytes = shared.encoded(player.chunk_size, player.stream_id);
            player.flush_next = false;
            let transmit = match &mut merge {
                // A player on the base lane of a stream read on the grid: written now, and
                // probed at the start of a write as a hold would be.
                Some(_) if read_on_grid && session.merge_lane == 0 && !at_once => {
                    let started = session.queue(bytes);
                    if let Some(stamp) = probe_stamp.filter(|_| started) {
                        if session.read_lag.probe(last_now, stamp) {
                            session.send_user_control(UserControl::PingRequest(stamp));
                        }
                    }
                    started
                }
                Some((schedule, deadlines)) if !at_once => {
                    let lane = session.merge_lane;
                    let deadline = deadlines[usize::from(lane)];
                    match session.queue_held(bytes, deadline, schedule.max_bytes()) {
                        Held::Nothing => false,
                        // A hold begins just after the player's last write: the moment for
                        // a probe, which goes at once, alone but for this message, and puts
                        // the player on the base window until it is answered (see
                        // `read_lag`).
                        Held::Started => match probe_stamp {
                            Some(stamp) if session.read_lag.probe(last_now, stamp) => {
                                session.merge_lane = 0;
                                session.send_user_control(UserControl::PingRequest(stamp))
                            }
                            _ => {
                                schedule.hold(lane, deadline, player.conn);
                                false
                            }
                        },
                        Held::Transmit => true,
                    }
                }
                _ => session.queue(bytes),
            };
            if transmit {
                self.transmits.push_back(player.conn);
            }
        }
        let mut evict_flv: SmallVec<[crate::tcp::StreamId; 4]> = SmallVec::new();
        let flv_limits = super::http_flv::flv_limits(soft, hard);
        if !stream.flv_players.is_empty() {
            super::http_flv::deliver_flv(
                &mut stream.flv_players,
                shared,
                kind,
                flv_limits,
                &mut self.outputs,
                &mut self.counters.player_messages_dropped,
                &mut evict_flv,
            );
        }
        if metadata {
            shared.own_payload(&mut stream.kept);
            stream.metadata = Some(shared.clone());
        }
        let before = stream.gop_bytes();
        stream.cache(kind, shared, max_gop);
        let after = stream.gop_bytes();
        self.gop_total = self.gop_total - before + after;
        if after > before && self.gop_total > self.config.max_total_gop_cache_bytes {
            // Every stream's late joiners may wait for a keyframe rather than the server hold
            // more: the stream whose GOP passed the budget gives its up.
            self.gop_total -= stream.clear_gop();
        }
        let pushed = !stream.relay.pushes.is_empty();
        let watched = stream.watched();
        let publisher = stream.publisher;
        for player in evict {
            if let Some(session) = self.sessions.get_mut(player) {
                session.clear_queue();
            }
            self.close(player, CloseReason::PlayerBacklog { limit: hard });
        }
        if !evict_flv.is_empty() {
            self.evict_flv(&evict_flv, flv_limits.1);
        }
        if let Some((publisher, _)) = publisher {
            self.pace_for_audience(publisher, read_pace, watched, eager_players);
        }
        pushed
    }

    /// Writes an audio or video message to the stream's recording, if it has one (or starts
    /// the next file of a failed one, when due).
    fn record_media(&mut self, key: &str, msg: &RtmpMessage) {
        let Some(stream) = self.live.get_mut(key) else {
            return;
        };
        // Only a failed recording waiting to resume looks at the configurations.
        let resuming = stream.recorder.is_none() && stream.record_resume.is_some();
        let has_video_config = resuming && stream.has_video_config();
        let primary = stream.primary_video_track;
        let file = match (stream.recorder, &mut stream.record_resume) {
            (Some(file), _) => file,
            (None, Some(resume)) => {
                let clean_start = match media_kind(msg, primary) {
                    MediaKind::Keyframe => true,
                    _ => msg.type_id == type_id::AUDIO && !has_video_config,
                };
                if !resume.due(msg.timestamp, clean_start) {
                    return;
                }
                let Some(file) = self.resume_recording(key, msg.timestamp) else {
                    return;
                };
                file
            }
            (None, None) => return,
        };
        let Some(recorder) = self.recorders.get_mut(&file) else {
            return;
        };
        let failed = recorder.on_media(msg.type_id, msg.timestamp, &msg.payload, &mut self.outputs);
        if let Some(error) = failed {
            self.recording_failed(file, "NetStream.Record.Failed", &error);
        }
    }

    /// Starts the next file of `key`'s failed recording, with the stream's metadata and
    /// decoder configurations (cached) first, stamped `timestamp`; its file id.
    #[cold]
    fn resume_recording(&mut self, key: &str, timestamp: u32) -> Option<crate::storage::FileId> {
        let stream = self.live.get_mut(key)?;
        let resume = stream.record_resume.as_mut()?;
        let (conn, stream_id) = resume.publisher;
        let path = resume.next_path(key);
        let metadata = stream.metadata.as_ref().map(|m| m.msg.clone());
        let configs: SmallVec<[RtmpMessage; 4]> = stream
            .configs
            .iter()
            .map(|c| c.message.msg.clone())
            .collect();
        if !crate::storage::is_safe_relative_path(&path) {
            stream.record_resume = None;
            return None;
        }
        let key: Arc<str> = Arc::from(key);
        self.start_recording(conn, stream_id, key.clone(), path, false, false);
        let file = self.live.get(&*key)?.recorder?;
        let recorder = self.recorders.get_mut(&file)?;
        if let Some(metadata) = metadata {
            let values = message_values(&metadata).unwrap_or_default();
            recorder.on_metadata(&properties_of(values.get(1)), &mut self.outputs);
        }
        for config in configs {
            recorder.on_media(
                config.type_id,
                timestamp,
                &config.payload,
                &mut self.outputs,
            );
        }
        Some(file)
    }

    /// New metadata from a publisher: replaces the cached copy and goes to every player (and
    /// into the recording, before its first media).
    pub(super) fn publish_metadata(
        &mut self,
        conn: ConnId,
        msg: RtmpMessage,
        metadata: Option<&Value>,
    ) {
        let Some(key) = self.published_key(conn, msg.stream_id) else {
            return;
        };
        if let Some(file) = self.live.get(&*key).and_then(|s| s.recorder) {
            if let Some(recorder) = self.recorders.get_mut(&file) {
                recorder.on_metadata(&properties_of(metadata), &mut self.outputs);
            }
        }
        self.publish_shared(conn, msg, true);
    }

    /// Sends a joining player what it needs to start decoding at once: metadata, the decoder
    /// configuration and side information of every track, and the GOP since the last keyframe. Without a cached GOP the player
    /// waits for the next keyframe.
    pub(super) fn start_player(&mut self, conn: ConnId, stream_id: u32, key: &str) {
        let Some(stream) = self.live.get_mut(key) else {
            return;
        };
        let Some(session) = self.sessions.get_mut(conn) else {
            return;
        };
        let chunk_size = session.encoder.chunk_size();
        let mut notify = false;
        let cached = stream
            .metadata
            .iter_mut()
            .chain(stream.configs.iter_mut().map(|c| &mut c.message))
            .chain(stream.gop.iter_mut());
        for shared in cached {
            notify |= session.queue(shared.encoded(chunk_size, stream_id));
        }
        let has_gop = !stream.gop.is_empty();
        if let Some(player) = stream.player_mut(conn, stream_id) {
            player.backpressure.need_keyframe = !has_gop;
        }
        self.transmit_if(conn, notify);
    }

    /// The publisher of `key` stopped: players are told and keep waiting for a new publisher.
    pub(super) fn unpublish(&mut self, conn: ConnId, stream_id: u32, key: &Arc<str>) {
        let Some(stream) = self.live.get_mut(&**key) else {
            return;
        };
        if stream.publisher != Some((conn, stream_id)) {
            return;
        }
        stream.publisher = None;
        stream.record_resume = None;
        self.unpace_reads(conn, stream_id);
        let Some(stream) = self.live.get_mut(&**key) else {
            return;
        };
        let recorder = stream.recorder.take();
        self.end_pushes(key);
        self.end_publication(key);
        self.withdraw(key);
        if let Some(file) = recorder {
            if let Some(recorder) = self.recorders.get_mut(&file) {
                recorder.finish(&mut self.outputs);
                if recorder.requested {
                    let text = format!("Stopped recording {}.", recorder.path);
                    self.status(conn, stream_id, "status", "NetStream.Record.Stop", &text);
                }
            }
        }
        self.outputs.push_back(Output::Event(Event::PublishStopped {
            conn,
            stream: key.to_string(),
        }));
    }

    /// The stream's publisher (here or on another worker) is gone: the cache is forgotten,
    /// the players are told and keep waiting for a new publisher, and the stream is forgotten
    /// if nobody plays it.
    pub(super) fn end_publication(&mut self, key: &Arc<str>) {
        let Some(stream) = self.live.get_mut(&**key) else {
            return;
        };
        self.gop_total -= stream.clear_cache();
        self.end_flv_players(key);
        let Some(stream) = self.live.get_mut(&**key) else {
            return;
        };
        let players: SmallVec<[(ConnId, u32); 8]> = stream
            .players
            .iter()
            .map(|p| (p.conn, p.stream_id))
            .collect();
        if stream.is_unused() {
            self.live.remove(&**key);
        }
        for (player, player_stream) in players {
            if let Some(session) = self.sessions.get_mut(player) {
                let mut notify = session.send_user_control(UserControl::StreamEof(player_stream));
                notify |= session.send_status(
                    player_stream,
                    "status",
                    "NetStream.Play.UnpublishNotify",
                    &format!("{key} is now unpublished."),
                );
                self.transmit_if(player, notify);
            }
        }
    }
}
