//! [`ToServer`]: what the gateway asks of the RTMP server it lives in.
//!
//! The gateway owns its clients' calls, sockets and media routes; the RTMP connections belong
//! to the server. Where a call needs something of a connection (a callback, the far end's
//! media on `remote`, the answer to the held `connect`, a close) the gateway queues a request,
//! and the server carries the queue out as soon as the gateway returns, before anything else
//! happens (so that a request never meets a connection the server has moved on from, and the
//! server may call back into the gateway while it does). The far end's media, one frame per
//! RTP packet, goes to the connection at once through a [`RemoteMediaSink`] the server lends
//! for the call. Socket work and log events go straight to the driver as
//! [`Output`](crate::node::Output)s from the gateway's own queue.

use std::time::Instant;

use crate::close_reason::CloseReason;
use crate::ids::ConnId;
use crate::media::frame::MediaFrame;
use crate::rtmp::command::Command;

/// One thing the gateway asks of the RTMP server, about one of the gateway's connections.
#[derive(Debug)]
pub(crate) enum ToServer {
    /// Send `cmd` on the connection's stream 0 (a callback, `_result`, `_error`), AMF3 when
    /// the client asked for it in `connect`.
    Command {
        conn: ConnId,
        cmd: Box<Command>,
        amf3: bool,
    },
    /// Stream Begin on `stream_id` when `begin`, then an `onStatus` of `level` for each of
    /// `codes`, all with `description`.
    Status {
        conn: ConnId,
        stream_id: u32,
        begin: bool,
        level: &'static str,
        codes: &'static [&'static str],
        description: String,
    },
    /// The far end's media on the client's `remote` stream, `stream_id` (what timers make;
    /// a far end's packet's media goes to a [`RemoteMediaSink`]).
    Media {
        conn: ConnId,
        stream_id: u32,
        frame: MediaFrame,
    },
    /// Accept the connect the gateway held (`NetConnection.Connect.Success`).
    AcceptConnect { conn: ConnId, cmd: Box<Command> },
    /// Refuse it with `reason` as the description (`NetConnection.Connect.Rejected`) and
    /// close the connection.
    RejectConnect {
        conn: ConnId,
        cmd: Box<Command>,
        reason: String,
    },
    /// Close the connection (a newer one for the same address of record replaced it).
    Close { conn: ConnId, reason: CloseReason },
    /// Call the gateway's `timer` for `conn` at `at`.
    Timer { conn: ConnId, at: Instant },
}

/// Where the far end's media goes, one frame per RTP packet: straight to the client's
/// connection, without a queue (the RTMP server lends the gateway its connections' send side
/// for the call that delivers a datagram).
pub(crate) trait RemoteMediaSink {
    /// A frame of the far end's media for `conn`'s `remote` stream, `stream_id`.
    fn remote_media(&mut self, conn: ConnId, stream_id: u32, frame: MediaFrame);
}
