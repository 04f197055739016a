//! Pushes: every stream published here to an application with `push` upstreams is
//! republished to each of them by a relay session of its own, for as long as the publication
//! lasts.
//!
//! A push starts with the publication, and what the publisher sends while the upstream
//! connection is set up waits for it (up to the soft backlog), so the upstream gets the stream
//! from its very first message. A push that (re)connects later gets what a late player gets
//! (the metadata, every track's decoder configuration, the cached GOP). Then it gets every
//! message the publisher sends, as the same chunk encodings the players share (`SharedMessage::encoded` for the upstream
//! connection's chunk size and stream id: a push costs a reference count and a TCP `Send`
//! per message, no copy). Its backlog (handed to the driver, not yet written) is held like a
//! player's: past the soft limit video waits for a keyframe, past the hard one the connection
//! is dropped and made again after the backoff. The publisher and the players never wait for
//! it. The end of the publication ends the push upstream (`FCUnpublish`, `deleteStream`).

use std::sync::Arc;

use smallvec::SmallVec;

use super::super::http_flv::flv_limits;
use super::super::live_stream::media_kind;
use super::super::player_backpressure::{Admit, PlayerBackpressure};
use super::super::RtmpServer;
use super::{Failure, Link, Phase, RelaySession};
use crate::io::{Output, RelayDirection};
use crate::rtmp::message::type_id;
use crate::rtmp::shared_message::SharedMessage;
use crate::tcp::TcpCommand;

/// The messages a push's first attempt holds until the upstream takes the publish.
#[derive(Debug, Default)]
pub(super) struct Pending {
    messages: Vec<SharedMessage>,
    bytes: usize,
}

impl RelaySession {
    /// Holds `shared` for a push still being set up, if it is its first attempt and the held
    /// messages stay within `limit` bytes (past it the push starts like a late player).
    fn hold(&mut self, shared: &SharedMessage, limit: usize) {
        let Some(pending) = &mut self.from_start else {
            return;
        };
        pending.bytes += shared.len();
        if pending.bytes > limit {
            self.from_start = None;
        } else {
            pending.messages.push(shared.clone());
        }
    }
}

impl RtmpServer {
    /// The local publication of `key` (`app/name`) went live: one push per upstream of its
    /// application.
    pub(in crate::server) fn start_pushes(&mut self, key: &Arc<str>) {
        let Some((app, name)) = key.split_once('/') else {
            return;
        };
        let Some(targets) = self.config.apps.get(app).map(|a| a.push.clone()) else {
            return;
        };
        for target in targets {
            if let Some(id) = self.relay_open(key, name, RelayDirection::Push, vec![target]) {
                if let Some(stream) = self.live.get_mut(&**key) {
                    stream.relay.pushes.push(id);
                }
            }
        }
        self.audience_joined(key);
    }

    /// The local publication of `key` ended: so do its pushes, upstream too.
    pub(in crate::server) fn end_pushes(&mut self, key: &str) {
        let Some(ids) = self.live.get(key).map(|s| s.relay.pushes.clone()) else {
            return;
        };
        for id in ids {
            self.relay_end(id, "unpublished");
        }
    }

    /// Push `id` was taken upstream. Its first attempt sends what the publisher sent so far;
    /// a later one the stream's metadata, decoder configurations and cached GOP. Live media
    /// follows from the next message (its video from a keyframe when nothing was cached).
    pub(super) fn push_started(&mut self, id: u64) {
        let Some(session) = self.relays.sessions.get_mut(&id) else {
            return;
        };
        let Some(stream) = self.live.get_mut(&*session.key) else {
            return;
        };
        let Link::Up(up) = &mut session.link else {
            return;
        };
        let (chunk_size, stream_id) = (up.chunk_size(), up.stream_id);
        if let Some(pending) = session.from_start.take() {
            for mut shared in pending.messages {
                let timestamp = shared.msg.timestamp;
                let data = up.media(shared.encoded(chunk_size, stream_id), timestamp);
                self.outputs.push_back(Output::Tcp(TcpCommand::Send {
                    stream: up.stream,
                    data,
                }));
            }
            session.backpressure = PlayerBackpressure::default();
            return;
        }
        let cached = stream
            .metadata
            .iter_mut()
            .chain(stream.configs.iter_mut().map(|c| &mut c.message))
            .chain(stream.gop.iter_mut());
        for shared in cached {
            let timestamp = shared.msg.timestamp;
            let data = up.media(shared.encoded(chunk_size, stream_id), timestamp);
            self.outputs.push_back(Output::Tcp(TcpCommand::Send {
                stream: up.stream,
                data,
            }));
        }
        session.backpressure = PlayerBackpressure {
            need_keyframe: stream.gop.is_empty(),
            behind: 0,
        };
    }

    /// A message of `key`'s local publication, after its players: to every push taken
    /// upstream, under the players' backpressure rule; a push past the hard backlog is
    /// dropped, to connect again.
    pub(in crate::server) fn push_media(&mut self, key: &str, shared: &mut SharedMessage) {
        let Some(stream) = self.live.get(key) else {
            return;
        };
        let ids: SmallVec<[u64; 2]> = stream.relay.pushes.clone();
        let kind = media_kind(&shared.msg, stream.primary_video_track);
        let limits = flv_limits(
            self.config.player_soft_backlog,
            self.config.player_hard_backlog,
        );
        let video = shared.msg.type_id == type_id::VIDEO;
        let (len, timestamp) = (shared.msg.payload.len(), shared.msg.timestamp);
        let mut evict: SmallVec<[u64; 2]> = SmallVec::new();
        for id in ids {
            let Some(session) = self.relays.sessions.get_mut(&id) else {
                continue;
            };
            let Link::Up(up) = &mut session.link else {
                continue;
            };
            if up.phase != Phase::Started {
                session.hold(shared, limits.0);
                continue;
            }
            match session
                .backpressure
                .admit(up.backlog(), limits, video, kind, len)
            {
                Admit::Send { .. } => {
                    let encoded = shared.encoded(up.chunk_size(), up.stream_id);
                    let data = up.media(encoded, timestamp);
                    self.outputs.push_back(Output::Tcp(TcpCommand::Send {
                        stream: up.stream,
                        data,
                    }));
                }
                Admit::Wait => {}
                Admit::Drop => self.relays.counters.dropped += 1,
                Admit::Evict => evict.push(id),
            }
        }
        for id in evict {
            let error = format!("more than {} bytes behind", limits.1);
            self.relay_failed(self.last_now, id, Failure::Backlog, error);
        }
    }
}
