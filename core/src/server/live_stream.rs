//! [`LiveStream`]: one published live stream: its publisher, its players, and what a player
//! joining late needs to start decoding at once (metadata, the decoder configuration and side
//! information of every track, and the group of pictures since the last keyframe).

use super::player_backpressure::PlayerBackpressure;
use smallvec::SmallVec;

use crate::byte_blocks::ByteBlocks;
use crate::flv::enhanced::TrackSet;
use crate::flv::media::{classify_audio, classify_video};
use crate::ids::ConnId;
use crate::rtmp::message::{type_id, RtmpMessage};
use crate::rtmp::shared_message::SharedMessage;
use crate::worker_relay::WorkerId;

/// What the GOP cache counts for a message beyond its payload: the message's own record and
/// the chunk header of its encoding. Counted, so that a publisher of many tiny messages
/// reaches the cache's limit as its memory does, not a hundred times later.
const KEPT_MESSAGE_COST: usize = std::mem::size_of::<SharedMessage>() + 32;

/// A player of a live stream and its per-player delivery state.
#[derive(Debug, Clone)]
pub(crate) struct Player {
    pub conn: ConnId,
    pub stream_id: u32,
    pub chunk_size: u32,
    pub paused: bool,
    pub receive_audio: bool,
    pub receive_video: bool,
    /// Waiting for a keyframe, and the video dropped for its backlog.
    pub backpressure: PlayerBackpressure,
    /// With merged writes: the next message goes out at once, not held (the first after a
    /// play, a resume or a new publisher, when the viewer is waiting for the picture).
    pub flush_next: bool,
}

/// How a published media message changes what the stream caches.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum MediaKind {
    /// Something every player needs before the frames it applies to (a decoder configuration,
    /// enhanced video Metadata, an audio MultichannelConfig): cached per track, sent to every
    /// player.
    Config(ConfigSlot),
    /// A keyframe of the stream's primary video track: starts a new cached GOP; a player
    /// waiting for one may start here.
    Keyframe,
    /// Any other video frame (keyframes of other tracks included): droppable under
    /// backpressure.
    InterFrame,
    /// Audio or data: never dropped.
    Other,
}

/// What a configuration message configures: the media, the kind of configuration and the
/// tracks. A newer one replaces a cached one whose tracks it covers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct ConfigSlot {
    pub video: bool,
    /// A decoder configuration (sequence header / SequenceStart), as opposed to the side
    /// information that stays valid until replaced (video Metadata, MultichannelConfig).
    pub decoder: bool,
    pub tracks: TrackSet,
}

/// The kind of a published message; `primary_video_track` is the track whose keyframes
/// start a GOP (see [`LiveStream::primary_video_track`]).
pub(crate) fn media_kind(msg: &RtmpMessage, primary_video_track: u8) -> MediaKind {
    match msg.type_id {
        type_id::VIDEO => video_kind(&msg.payload, primary_video_track),
        type_id::AUDIO => match classify_audio(&msg.payload) {
            Some(a) if a.sequence_header || a.multichannel_config => {
                MediaKind::Config(ConfigSlot {
                    video: false,
                    decoder: a.sequence_header,
                    tracks: a.tracks,
                })
            }
            _ => MediaKind::Other,
        },
        _ => MediaKind::Other,
    }
}

/// The kind of a video message from its headers (for a legacy message, its first two bytes
/// suffice).
pub(crate) fn video_kind(payload: &[u8], primary_video_track: u8) -> MediaKind {
    match classify_video(payload) {
        Some(v) if v.sequence_header || v.metadata => MediaKind::Config(ConfigSlot {
            video: true,
            decoder: v.sequence_header,
            tracks: v.tracks,
        }),
        Some(v) if v.keyframe && v.tracks.contains(primary_video_track) => MediaKind::Keyframe,
        Some(v) if v.command_frame => MediaKind::Other,
        _ => MediaKind::InterFrame,
    }
}

/// Most configurations a stream keeps (a hostile publisher could otherwise announce a
/// configuration for every track id of both media): past it the oldest is forgotten.
pub(crate) const MAX_CONFIGS: usize = 32;

/// A cached configuration message.
#[derive(Debug, Clone)]
pub(crate) struct CachedConfig {
    pub slot: ConfigSlot,
    pub message: SharedMessage,
}

/// A stream published on another worker, as this worker knows it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct RemotePublisher {
    /// The worker that publishes it.
    pub worker: WorkerId,
    /// Its number for the publication.
    pub publication: u64,
    /// Where this worker's subscription stands.
    pub subscription: Subscription,
}

/// This worker's subscription to a remote stream's media.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Subscription {
    /// Not subscribed (no players here): media that still arrives is dropped.
    None,
    /// Asked with this number; media is dropped until the matching `Subscribed` arrives.
    Pending(u64),
    /// Media flows.
    Active,
}

/// One live stream, keyed by `app/name` in the server's registry.
#[derive(Debug, Default)]
pub(crate) struct LiveStream {
    /// The publishing connection and its message stream id.
    pub publisher: Option<(ConnId, u32)>,
    /// The worker that publishes it, when another worker does.
    pub remote: Option<RemotePublisher>,
    /// For a local publication in a group of workers: its number and the workers subscribed
    /// to its media.
    pub publication: u64,
    pub subscribers: SmallVec<[WorkerId; 4]>,
    pub players: Vec<Player>,
    /// Its HTTP-FLV players (see `http_flv`).
    pub flv_players: Vec<super::http_flv::FlvPlayer>,
    /// `onMetaData` (without the `@setDataFrame` wrapper).
    pub metadata: Option<SharedMessage>,
    /// Decoder configurations and side information of every track, in the order they came
    /// (a late player gets them in that order, so a newer one applies over an older one).
    pub configs: SmallVec<[CachedConfig; 4]>,
    /// The video track whose keyframes start a GOP: the lowest track with a cached decoder
    /// configuration (0 before any, and for codecs without one).
    pub primary_video_track: u8,
    /// Everything since the last keyframe, keyframe first (empty until one arrives).
    pub gop: Vec<SharedMessage>,
    gop_bytes: usize,
    /// Where the payloads of the metadata, configurations and GOP are kept.
    pub kept: ByteBlocks,
    /// The recording of this stream, while one runs.
    pub recorder: Option<crate::storage::FileId>,
    /// An application-chosen recording that failed, waiting to start again.
    pub record_resume: Option<super::record_resume::RecordResume>,
    /// When the local publisher (or a pull's upstream) went live (for the HTTP API).
    pub since: Option<std::time::Instant>,
    /// The relay sessions of this stream (see `relay`).
    pub relay: RelayLinks,
}

/// A live stream's relay sessions: the pushes of its local publication, or the pull that
/// plays it from upstream.
#[derive(Debug, Default)]
pub(crate) struct RelayLinks {
    /// The pushes of the local publication.
    pub pushes: SmallVec<[u64; 2]>,
    /// The pull that feeds the stream, while one is open (live upstream or not).
    pub pull: Option<u64>,
    /// The pull's upstream is live: the stream is published, from upstream.
    pub pulled: bool,
    /// In a group of workers: this worker asked the registry for the name to pull it, and
    /// waits for the answer.
    pub claiming: bool,
}

impl LiveStream {
    /// Records a published message in the caches, given its kind. A message kept holds no
    /// bytes but its own ([`SharedMessage::own_payload`]).
    pub(crate) fn cache(
        &mut self,
        kind: MediaKind,
        shared: &mut SharedMessage,
        max_gop_bytes: usize,
    ) {
        match kind {
            MediaKind::Config(slot) => {
                shared.own_payload(&mut self.kept);
                self.cache_config(slot, shared)
            }
            MediaKind::Keyframe => {
                self.gop.clear();
                self.gop_bytes = 0;
                self.push_gop(shared, max_gop_bytes);
            }
            MediaKind::InterFrame | MediaKind::Other => {
                if !self.gop.is_empty() && shared.msg.type_id != type_id::DATA_AMF0 {
                    self.push_gop(shared, max_gop_bytes);
                }
            }
        }
    }

    /// Keeps a configuration, replacing the cached ones of the same media and kind whose tracks
    /// it covers.
    #[cold]
    fn cache_config(&mut self, slot: ConfigSlot, shared: &SharedMessage) {
        self.configs.retain(|c| {
            !(c.slot.video == slot.video
                && c.slot.decoder == slot.decoder
                && c.slot.tracks.is_subset_of(&slot.tracks))
        });
        if self.configs.len() >= MAX_CONFIGS {
            self.configs.remove(0);
        }
        self.configs.push(CachedConfig {
            slot,
            message: shared.clone(),
        });
        self.primary_video_track = self
            .configs
            .iter()
            .filter(|c| c.slot.video && c.slot.decoder)
            .filter_map(|c| c.slot.tracks.first())
            .min()
            .unwrap_or(0);
    }

    /// Whether a video decoder configuration is cached.
    pub(crate) fn has_video_config(&self) -> bool {
        self.configs.iter().any(|c| c.slot.video && c.slot.decoder)
    }

    fn push_gop(&mut self, shared: &mut SharedMessage, max_gop_bytes: usize) {
        self.gop_bytes += shared.len() + KEPT_MESSAGE_COST;
        if self.gop_bytes > max_gop_bytes {
            // A GOP too long to hold: late players will wait for the next keyframe instead.
            self.gop.clear();
            self.gop_bytes = 0;
            return;
        }
        shared.own_payload(&mut self.kept);
        self.gop.push(shared.clone());
    }

    /// Forgets everything cached from the previous publisher; the bytes of GOP it held.
    pub(crate) fn clear_cache(&mut self) -> usize {
        self.metadata = None;
        self.configs.clear();
        self.kept.release();
        self.primary_video_track = 0;
        self.clear_gop()
    }

    /// Whether anyone gets the stream's media as it comes: a player (paused or not), an
    /// HTTP-FLV player, a push, or a worker subscribed to it. The caches and a recording do
    /// not count: no one waits on them.
    pub(crate) fn watched(&self) -> bool {
        !(self.players.is_empty()
            && self.flv_players.is_empty()
            && self.relay.pushes.is_empty()
            && self.subscribers.is_empty())
    }

    /// Bytes of media the GOP cache holds, each message counted with what keeping it costs.
    pub(crate) fn gop_bytes(&self) -> usize {
        self.gop_bytes
    }

    /// Forgets the cached GOP (late players then wait for the next keyframe); the bytes it
    /// held.
    pub(crate) fn clear_gop(&mut self) -> usize {
        self.gop.clear();
        std::mem::take(&mut self.gop_bytes)
    }

    pub(crate) fn player_mut(&mut self, conn: ConnId, stream_id: u32) -> Option<&mut Player> {
        self.players
            .iter_mut()
            .find(|p| p.conn == conn && p.stream_id == stream_id)
    }

    pub(crate) fn remove_player(&mut self, conn: ConnId, stream_id: u32) {
        self.players
            .retain(|p| !(p.conn == conn && p.stream_id == stream_id));
    }

    /// True while someone publishes it, here, on another worker or upstream (a pull).
    pub(crate) fn is_live(&self) -> bool {
        self.publisher.is_some() || self.remote.is_some() || self.relay.pulled
    }

    /// True when nobody publishes or plays it any more, and no pull is open for it.
    pub(crate) fn is_unused(&self) -> bool {
        !self.is_live()
            && self.players.is_empty()
            && self.flv_players.is_empty()
            && self.relay.pull.is_none()
    }
}
