//! [`admit`]: the live players' backpressure rule, one place for the RTMP players
//! (`fan_out`) and the HTTP-FLV ones (`http_flv`).
//!
//! Past the soft backlog a player's video is dropped until a keyframe finds it back within the
//! soft limit (audio and decoder configurations always go); the video dropped since it was
//! last within the soft limit counts toward the hard one, past which the player is closed, so
//! a player that never reads a video-only stream (whose drops keep its backlog at the soft
//! limit) is closed as one that far behind would be.

use super::live_stream::MediaKind;

/// What becomes of a published message for one player.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Admit {
    /// Queue it; `keyframe_start`: the keyframe this player was waiting for (it goes out at
    /// once, whatever merging would hold).
    Send {
        /// The keyframe the player was waiting for.
        keyframe_start: bool,
    },
    /// Not for this player yet (waiting for a keyframe, within the soft limit): not a drop.
    Wait,
    /// Dropped for backpressure (counted).
    Drop,
    /// Past the hard limit: close the player.
    Evict,
}

/// A player's backpressure state.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct PlayerBackpressure {
    /// Drop video until a keyframe (just joined without a cached GOP, resumed, or fell
    /// behind past the soft backlog limit).
    pub need_keyframe: bool,
    /// Payload bytes of video dropped since the backlog was last within the soft limit.
    pub behind: usize,
}

impl PlayerBackpressure {
    /// Waiting for a keyframe from the start.
    pub(crate) fn waiting_for_keyframe() -> Self {
        Self {
            need_keyframe: true,
            behind: 0,
        }
    }

    /// The rule for a message of `kind` (`video`: a video message) and `len` payload bytes,
    /// to a player with `backlog` bytes queued, under the `soft` and `hard` limits.
    #[inline]
    pub(crate) fn admit(
        &mut self,
        backlog: usize,
        (soft, hard): (usize, usize),
        video: bool,
        kind: MediaKind,
        len: usize,
    ) -> Admit {
        if backlog <= soft {
            self.behind = 0;
        } else if backlog.saturating_add(self.behind) > hard {
            return Admit::Evict;
        }
        if !video {
            return Admit::Send {
                keyframe_start: false,
            };
        }
        match kind {
            MediaKind::Keyframe if self.need_keyframe => {
                if backlog > soft {
                    self.behind += len;
                    return Admit::Drop;
                }
                self.need_keyframe = false;
                Admit::Send {
                    keyframe_start: true,
                }
            }
            MediaKind::InterFrame => {
                if backlog > soft {
                    self.need_keyframe = true;
                    self.behind += len;
                    return Admit::Drop;
                }
                if self.need_keyframe {
                    Admit::Wait
                } else {
                    Admit::Send {
                        keyframe_start: false,
                    }
                }
            }
            _ => Admit::Send {
                keyframe_start: false,
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const LIMITS: (usize, usize) = (1000, 4000);

    #[test]
    fn past_the_soft_limit_video_waits_for_a_keyframe_within_it() {
        let mut p = PlayerBackpressure::default();
        let send = Admit::Send {
            keyframe_start: false,
        };
        assert_eq!(p.admit(0, LIMITS, true, MediaKind::InterFrame, 100), send);
        assert_eq!(
            p.admit(2000, LIMITS, true, MediaKind::InterFrame, 100),
            Admit::Drop
        );
        assert_eq!(
            p.admit(2000, LIMITS, true, MediaKind::Keyframe, 100),
            Admit::Drop
        );
        // Audio and anything but pictures still go.
        assert_eq!(p.admit(2000, LIMITS, false, MediaKind::Other, 100), send);
        assert_eq!(p.admit(2000, LIMITS, true, MediaKind::Other, 100), send);
        // Back within the limit: inter frames wait (not a drop), the keyframe starts it again.
        assert_eq!(
            p.admit(500, LIMITS, true, MediaKind::InterFrame, 100),
            Admit::Wait
        );
        assert_eq!(
            p.admit(500, LIMITS, true, MediaKind::Keyframe, 100),
            Admit::Send {
                keyframe_start: true
            }
        );
        assert_eq!(p.admit(500, LIMITS, true, MediaKind::InterFrame, 100), send);
    }

    #[test]
    fn dropped_video_counts_toward_the_hard_limit_until_the_player_catches_up() {
        let mut p = PlayerBackpressure::default();
        // Held at the soft limit by the drops: 3,000 bytes dropped take it past 4,000.
        for _ in 0..30 {
            assert_eq!(
                p.admit(1001, LIMITS, true, MediaKind::InterFrame, 100),
                Admit::Drop
            );
        }
        assert_eq!(
            p.admit(1001, LIMITS, true, MediaKind::InterFrame, 100),
            Admit::Evict
        );
        // One that catches up in between is forgiven.
        let mut q = PlayerBackpressure::default();
        for _ in 0..29 {
            q.admit(1001, LIMITS, true, MediaKind::InterFrame, 100);
        }
        q.admit(10, LIMITS, false, MediaKind::Other, 100);
        assert_eq!(q.behind, 0);
        assert_eq!(
            q.admit(1001, LIMITS, true, MediaKind::InterFrame, 100),
            Admit::Drop
        );
    }
}
