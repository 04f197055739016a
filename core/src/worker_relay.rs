//! The internal relay between the [`Node`](crate::node::Node)s of one server: several nodes,
//! one per thread ("workers"), share their live streams, so that a stream published on one
//! worker plays on every worker.
//!
//! The relay is sans-IO like the rest of the node: a node made a worker with
//! [`Node::with_relay`](crate::node::Node::with_relay) emits [`RelayOut`]s (as
//! [`Output::Relay`](crate::node::Output::Relay)) and accepts [`RelayIn`]s (as
//! [`Input::Relay`](crate::node::Input::Relay)); the driver carries [`RelayMessage`]s between
//! workers (channels, in order per pair of workers) and keeps one registry of published names
//! for the whole group.
//!
//! The protocol, per live stream key (`app/name`):
//!
//! - **Claim.** Before a local publish goes live, the node asks the driver's registry for the
//!   name ([`RelayOut::Claim`]); the answer ([`RelayIn::Claimed`]) lets it go live or refuses
//!   it with `NetStream.Publish.BadName`. The registry is the one authority, so two workers can
//!   never both publish a name, however close their publishes are. When the publish ends, the
//!   node gives the name back ([`RelayOut::Release`]).
//! - **Announce / Withdraw.** A publication that goes live is announced to every other worker
//!   (with a publication number), and withdrawn when it ends. A worker that hears of it treats
//!   the stream as live with a remote publisher: its players get `NetStream.Play.PublishNotify`
//!   and `UnpublishNotify` as for a local one.
//! - **Subscribe / Unsubscribe.** Only a worker that has players of a remote stream subscribes
//!   to it, so an unwatched stream costs nothing across threads. The publishing worker answers
//!   a subscription with [`RelayMessage::Subscribed`], then what a late player needs
//!   (metadata, decoder configurations, the GOP since the last keyframe), then every new
//!   message.
//! - **Media.** One [`RelayMessage::Media`] per message and subscribing worker. It carries the
//!   message as published ([`RelayedMedia`]): the payload `Bytes` and the chunk encodings made
//!   so far are shared, never copied, and the receiving worker fans it out to its players as
//!   if it had been published there (chunk-encoding it only for a (chunk size, stream id) the
//!   publishing worker did not already encode).
//!
//! - **Pulls.** On an edge (an application with `pull` upstreams) a name is pulled once per
//!   server, not once per worker: a worker that would open a pull claims the name first, as a
//!   publish does. The worker granted it opens the upstream session, announces the stream
//!   when the upstream's goes live and withdraws it when that ends (so another worker's
//!   players see a publication, and subscribe to it, exactly as for a local publisher); its
//!   players and the workers subscribed keep the session open. A worker refused the name
//!   keeps its players waiting for that announce. When the pull is over the owner gives the
//!   name back and says so ([`RelayMessage::PullEnded`]): the other workers' waiting players
//!   hear `NetStream.Play.StreamNotFound` if no upstream has the stream, and are otherwise
//!   pulled for by their own worker. While a worker pulls a name, a publish of it on another
//!   worker is refused (`BadName`), where a lone node's publisher would take it over.
//!
//! Messages between two workers arrive in the order they were sent, but messages from
//! different workers may interleave in any order; the node copes: a withdraw or media from a
//! worker that no longer owns a stream is ignored, a subscription to a publication that is over
//! is ignored, and media that raced an unsubscription is dropped until the marker of the
//! current subscription arrives.
//!
//! ```
//! use std::time::Instant;
//! use siprtmp_core::node::{Node, NodeConfig, Output};
//! use siprtmp_core::worker_relay::{RelayIn, RelayMessage, WorkerId};
//!
//! let now = Instant::now();
//! let mut b = Node::new(NodeConfig::default(), now, 2).with_relay(WorkerId(1));
//! // Worker 0 announces a publication: worker 1 now knows `live/cam` is live.
//! let announce = RelayMessage::Announce {
//!     stream: "live/cam".into(),
//!     name: "cam".into(),
//!     publication: 1,
//! };
//! b.handle(now, siprtmp_core::node::Input::Relay(RelayIn::Received { from: WorkerId(0), message: announce }));
//! // Nobody plays it on worker 1, so nothing is asked of worker 0.
//! assert!(std::iter::from_fn(|| b.poll_output()).all(|o| !matches!(o, Output::Relay(_))));
//! ```

use std::sync::Arc;

pub use crate::admin::report::{ReportKind, WorkerReport};
pub use crate::ids::WorkerId;
use crate::ids::{ConnId, RequestId};
use crate::rtmp::message::RtmpMessage;
use crate::rtmp::shared_message::SharedMessage;

/// Where a [`RelayMessage`] goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RelayTarget {
    /// Every other worker of the group.
    All,
    /// One worker.
    Worker(WorkerId),
}

/// A live message as published, shared between workers: the message (its payload `Bytes` is
/// shared, not copied) and the chunk encodings the publishing worker already made.
///
/// ```
/// use siprtmp_core::worker_relay::RelayedMedia;
/// use siprtmp_core::rtmp::message::{type_id, RtmpMessage};
/// let media = RelayedMedia::new(RtmpMessage::new(type_id::AUDIO, 1, 20, vec![0xaf, 1, 2]), false);
/// let copy = media.clone();
/// // Cloning shares the payload.
/// assert_eq!(copy.message().payload.as_ptr(), media.message().payload.as_ptr());
/// ```
#[derive(Debug, Clone)]
pub struct RelayedMedia {
    pub(crate) shared: SharedMessage,
    pub(crate) metadata: bool,
}

impl RelayedMedia {
    /// Wraps a message; `metadata` marks an `onMetaData` data message (cached for late
    /// players rather than only forwarded).
    pub fn new(message: RtmpMessage, metadata: bool) -> Self {
        Self {
            shared: SharedMessage::new(message),
            metadata,
        }
    }

    pub(crate) fn from_shared(shared: &SharedMessage, metadata: bool) -> Self {
        Self {
            shared: shared.clone(),
            metadata,
        }
    }

    /// The message as published (its stream id is the publisher's).
    pub fn message(&self) -> &RtmpMessage {
        &self.shared.msg
    }

    /// True for the stream's `onMetaData`.
    pub fn is_metadata(&self) -> bool {
        self.metadata
    }
}

impl PartialEq for RelayedMedia {
    /// Equal when the messages are (the encodings are a cache).
    fn eq(&self, other: &Self) -> bool {
        self.shared.msg == other.shared.msg && self.metadata == other.metadata
    }
}

/// What travels between workers: about one live stream (`app/name`), or, for the HTTP
/// listener of worker 0, the other workers' reports.
#[derive(Debug, Clone, PartialEq)]
pub enum RelayMessage {
    /// The sender's publication `publication` of `stream` went live.
    Announce {
        /// The stream's key.
        stream: Arc<str>,
        /// The name it was published as (for status descriptions).
        name: String,
        /// Numbers the sender's publications, so that subscriptions name the one they want.
        publication: u64,
    },
    /// The sender's publication of `stream` ended.
    Withdraw {
        /// The stream's key.
        stream: Arc<str>,
    },
    /// The sender's pull of `stream` (an edge's upstream session for the name) is over and the name is free again: the receiver's players
    /// waiting for it are told the stream does not exist (`not_found`: every upstream said
    /// so), or the receiver pulls it itself for them.
    PullEnded {
        /// The stream's key.
        stream: Arc<str>,
        /// Every upstream said it has no such stream.
        not_found: bool,
    },
    /// The sender has players of `stream` and wants its media.
    Subscribe {
        /// The stream's key.
        stream: Arc<str>,
        /// The publication (from its announce).
        publication: u64,
        /// Numbers the sender's subscriptions (echoed in [`RelayMessage::Subscribed`]).
        subscription: u64,
    },
    /// The sender has no players of `stream` any more.
    Unsubscribe {
        /// The stream's key.
        stream: Arc<str>,
        /// The publication (from its announce).
        publication: u64,
    },
    /// Answer to a subscription: what follows is the catch-up (metadata, configurations, GOP),
    /// then live media.
    Subscribed {
        /// The stream's key.
        stream: Arc<str>,
        /// The subscription answered.
        subscription: u64,
    },
    /// One published message.
    Media {
        /// The stream's key.
        stream: Arc<str>,
        /// The message, its payload shared.
        media: RelayedMedia,
    },
    /// Worker 0's HTTP listener asks the receiver for its figures (`/metrics`) or lists (the
    /// JSON API), to answer for the whole server (see `crate::admin::report`).
    Report {
        /// Numbers the request (echoed in [`RelayMessage::Reported`]).
        query: u64,
        /// What the request wants.
        kind: ReportKind,
    },
    /// The answer to [`RelayMessage::Report`]: the sender's report, made on its own thread.
    Reported {
        /// The request answered.
        query: u64,
        /// The report.
        report: Arc<WorkerReport>,
    },
    /// The HTTP API drops one of the receiver's connections (`POST .../drop`).
    Drop {
        /// The connection.
        conn: ConnId,
    },
    /// The HTTP API ends the call of one of the receiver's gateway clients
    /// (`POST /api/v1/calls/{id}/end`).
    EndCall {
        /// The client's connection.
        conn: ConnId,
    },
    /// The HTTP API stops the recording of a stream the receiver publishes
    /// (`POST /api/v1/streams/{app}/{name}/record/stop`).
    StopRecording {
        /// The stream's key.
        stream: Arc<str>,
    },
}

impl RelayMessage {
    /// Whether it is for the HTTP listener's bookkeeping rather than about a live stream.
    pub(crate) fn is_admin(&self) -> bool {
        matches!(
            self,
            RelayMessage::Report { .. }
                | RelayMessage::Reported { .. }
                | RelayMessage::Drop { .. }
                | RelayMessage::EndCall { .. }
                | RelayMessage::StopRecording { .. }
        )
    }
}

/// What a worker node asks of its driver's relay ([`crate::node::Output::Relay`]).
#[derive(Debug, Clone, PartialEq)]
pub enum RelayOut {
    /// Ask the group's registry whether `stream` is free to publish, and take it if so; answer
    /// with [`RelayIn::Claimed`] (at once or later). A name taken by any worker, this one
    /// included, is refused.
    Claim {
        /// The id to answer with.
        request: RequestId,
        /// The stream's key.
        stream: Arc<str>,
    },
    /// Give a name this worker claimed back to the registry.
    Release {
        /// The stream's key.
        stream: Arc<str>,
    },
    /// Deliver `message` to `to`.
    Send {
        /// The receiver(s).
        to: RelayTarget,
        /// The message.
        message: RelayMessage,
    },
}

/// What a driver's relay tells a worker node ([`crate::node::Input::Relay`]).
#[derive(Debug, Clone, PartialEq)]
pub enum RelayIn {
    /// The registry's answer to [`RelayOut::Claim`].
    Claimed {
        /// The claim's id.
        request: RequestId,
        /// True if the name is now this worker's.
        granted: bool,
    },
    /// Another worker sent `message`.
    Received {
        /// The sender.
        from: WorkerId,
        /// The message.
        message: RelayMessage,
    },
}
