//! Backpressure on what the server sends a connection outside the live fan-out: the
//! gateway's far-end media to its Flash client, and the replies to what a client sends.
//!
//! The live fan-out (`fan_out::deliver`) bounds a player's backlog; these bound the rest, with
//! the same two limits (`ServerConfig::player_soft_backlog` and `player_hard_backlog`):
//!
//! - far-end media ([`FarMediaGate`], asked by `MediaSender::send` before a frame is encoded):
//!   past the soft backlog, audio frames are dropped whole and video is dropped until a
//!   keyframe that finds the backlog back under the soft limit (decoder configurations are
//!   kept, as for players). A client that never reads would then sit at the soft limit for
//!   ever, its call going on; so what was dropped since it was last under the soft limit
//!   counts as backlog too, and past the hard limit the client is closed
//!   ([`CloseReason::ClientBacklog`](crate::close_reason::CloseReason::ClientBacklog)), as a
//!   player that far behind would be. A client that reads, only slower than its media comes,
//!   keeps getting back under the soft limit: it loses frames, not its call.
//! - replies, status and callbacks: checked against the hard limit after each message a
//!   client sends and each request of the gateway (`RtmpServer::check_backlog`), so a client
//!   that sends pings or calls and never reads is closed once its replies pass it.

use crate::ids::ConnId;
use crate::media::frame::MediaFrame;
use crate::rtmp::message::type_id;

use super::live_stream::{video_kind, MediaKind};

/// What becomes of a far-end frame offered to a connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Admit {
    /// Encode and queue it.
    Queue,
    /// Drop it (counted).
    Drop,
    /// The connection is past the hard backlog: drop it, and close the connection.
    Evict,
}

/// A connection's state for far-end media under backpressure.
#[derive(Debug, Default, Clone, Copy)]
pub(crate) struct FarMediaGate {
    /// Video is dropped until a keyframe (one was dropped past the soft backlog).
    wait_keyframe: bool,
    /// Payload bytes dropped since the backlog was last within the soft limit.
    behind: usize,
}

impl FarMediaGate {
    /// Whether `frame` goes to a connection with `backlog` bytes queued, under the `soft` and
    /// `hard` limits.
    #[inline]
    pub(crate) fn admit(
        &mut self,
        backlog: usize,
        soft: usize,
        hard: usize,
        frame: &MediaFrame,
    ) -> Admit {
        let video = frame.type_id == type_id::VIDEO;
        if backlog <= soft {
            self.behind = 0;
            if !(video && self.wait_keyframe) {
                return Admit::Queue;
            }
            return match frame_kind(frame) {
                MediaKind::Keyframe => {
                    self.wait_keyframe = false;
                    Admit::Queue
                }
                MediaKind::InterFrame => Admit::Drop,
                MediaKind::Config(_) | MediaKind::Other => Admit::Queue,
            };
        }
        if backlog.saturating_add(self.behind) > hard {
            return Admit::Evict;
        }
        if video {
            match frame_kind(frame) {
                // A decoder cannot do without its configuration; command frames are tiny.
                MediaKind::Config(_) | MediaKind::Other => return Admit::Queue,
                MediaKind::Keyframe | MediaKind::InterFrame => self.wait_keyframe = true,
            }
        }
        self.behind += frame.len();
        Admit::Drop
    }
}

/// The kind of a video frame, from the first bytes of its header and body.
fn frame_kind(frame: &MediaFrame) -> MediaKind {
    let mut start = [0u8; 2];
    let mut n = 0;
    for byte in frame.header.iter().chain(frame.body.iter()).take(2) {
        start[n] = *byte;
        n += 1;
    }
    // Far-end video is legacy H.264 (single track): track 0's keyframes count.
    video_kind(&start[..n], 0)
}

/// The server's side of far-end media backpressure: the limits, the frames dropped, and the
/// connections found past the hard limit while the gateway held the server's send side
/// (closed as soon as the gateway returns).
#[derive(Debug)]
pub(crate) struct ClientBacklog {
    pub soft: usize,
    pub hard: usize,
    /// Far-end frames dropped since the start.
    pub dropped: u64,
    /// Connections to close (a connection may be listed more than once).
    pub evict: Vec<ConnId>,
}

impl ClientBacklog {
    pub(crate) fn new(soft: usize, hard: usize) -> Self {
        Self {
            soft,
            hard,
            dropped: 0,
            evict: Vec::new(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;

    const SOFT: usize = 1000;
    const HARD: usize = 4000;

    fn audio(len: usize) -> MediaFrame {
        MediaFrame::new(type_id::AUDIO, 0, &[0xb2], Bytes::from(vec![0; len - 1]))
    }

    fn video(first: u8, packet_type: u8, len: usize) -> MediaFrame {
        let mut body = vec![first, packet_type, 0, 0, 0];
        body.resize(len, 0);
        MediaFrame::new(type_id::VIDEO, 0, &[], Bytes::from(body))
    }

    #[test]
    fn under_the_soft_limit_everything_goes() {
        let mut gate = FarMediaGate::default();
        for frame in [audio(100), video(0x27, 1, 500), video(0x17, 1, 900)] {
            assert_eq!(gate.admit(SOFT, SOFT, HARD, &frame), Admit::Queue);
        }
    }

    #[test]
    fn past_the_soft_limit_audio_is_dropped_frame_by_frame_and_comes_back_with_room() {
        let mut gate = FarMediaGate::default();
        assert_eq!(gate.admit(SOFT + 1, SOFT, HARD, &audio(100)), Admit::Drop);
        assert_eq!(gate.admit(SOFT + 1, SOFT, HARD, &audio(100)), Admit::Drop);
        assert_eq!(gate.admit(SOFT, SOFT, HARD, &audio(100)), Admit::Queue);
    }

    #[test]
    fn video_dropped_past_the_soft_limit_waits_for_a_keyframe_under_it() {
        let mut gate = FarMediaGate::default();
        assert_eq!(
            gate.admit(SOFT + 1, SOFT, HARD, &video(0x27, 1, 100)),
            Admit::Drop
        );
        // Room again, but an inter frame would not decode without what was dropped.
        assert_eq!(gate.admit(0, SOFT, HARD, &video(0x27, 1, 100)), Admit::Drop);
        // Audio is not held up by the wait.
        assert_eq!(gate.admit(0, SOFT, HARD, &audio(100)), Admit::Queue);
        // A keyframe past the soft limit is dropped too; the next one under it restarts.
        assert_eq!(
            gate.admit(SOFT + 1, SOFT, HARD, &video(0x17, 1, 100)),
            Admit::Drop
        );
        assert_eq!(
            gate.admit(0, SOFT, HARD, &video(0x17, 1, 100)),
            Admit::Queue
        );
        assert_eq!(
            gate.admit(0, SOFT, HARD, &video(0x27, 1, 100)),
            Admit::Queue
        );
    }

    #[test]
    fn decoder_configuration_is_kept_past_the_soft_limit() {
        let mut gate = FarMediaGate::default();
        let config = video(0x17, 0, 40);
        assert_eq!(gate.admit(SOFT + 1, SOFT, HARD, &config), Admit::Queue);
    }

    #[test]
    fn a_client_that_never_reads_is_evicted_once_as_far_behind_as_the_hard_limit() {
        let mut gate = FarMediaGate::default();
        let backlog = SOFT + 1;
        let mut dropped = 0;
        while gate.admit(backlog, SOFT, HARD, &audio(100)) == Admit::Drop {
            dropped += 100;
            assert!(dropped < HARD, "never evicted");
        }
        // Evicted at the first frame past the hard limit, queued plus dropped: 1001 + 3000.
        assert_eq!(dropped, 3000);
        // Past the hard limit by the queue alone, at once.
        let mut fresh = FarMediaGate::default();
        assert_eq!(fresh.admit(HARD + 1, SOFT, HARD, &audio(100)), Admit::Evict);
    }

    #[test]
    fn what_was_dropped_is_forgiven_once_the_client_catches_up() {
        let mut gate = FarMediaGate::default();
        for _ in 0..20 {
            assert_eq!(gate.admit(SOFT + 1, SOFT, HARD, &audio(100)), Admit::Drop);
        }
        assert_eq!(gate.admit(SOFT, SOFT, HARD, &audio(100)), Admit::Queue);
        // 2000 bytes were dropped before: without the reset, the eleventh drop here would
        // be an eviction (1001 queued + 3000 dropped).
        for _ in 0..25 {
            assert_eq!(gate.admit(SOFT + 1, SOFT, HARD, &audio(100)), Admit::Drop);
        }
    }
}
