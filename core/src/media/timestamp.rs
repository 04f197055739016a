//! Timestamp mapping between RTMP (milliseconds) and RTP (clock-rate units).
//!
//! RTMP→RTP: [`rtmp_to_rtp`] scales the RTMP timestamp of each message, so RTP time follows
//! the publisher's real capture clock instead of assuming a fixed packet duration.
//! RTP→RTMP: [`RtpTimeline`] anchors the first RTP timestamp of a source at the RTMP stream
//! time when it arrived and follows RTP timestamp deltas from there, across 32-bit wraps.

/// The RTP timestamp of an RTMP message: `rtmp_ms × clock_rate / 1000 + base`, wrapping.
///
/// For clock rates that are multiples of 1000 Hz (8, 16, 90 kHz, the x-flv 1 kHz clock) the
/// result stays continuous across the 2^32 ms wrap of RTMP time.
///
/// ```
/// use siprtmp_core::media::rtmp_to_rtp;
/// assert_eq!(rtmp_to_rtp(20, 8000, 1000), 1160);
/// assert_eq!(rtmp_to_rtp(1000, 90_000, u32::MAX), 89_999);
/// ```
pub fn rtmp_to_rtp(rtmp_ms: u32, clock_rate: u32, base: u32) -> u32 {
    let units = u64::from(rtmp_ms) * u64::from(clock_rate) / 1000;
    // Truncation to 32 bits is the RTP timestamp wrap.
    (units as u32).wrapping_add(base)
}

/// Converts the RTP timestamps of one source into RTMP milliseconds.
///
/// The first timestamp seen maps to the RTMP time given with it (the anchor); later ones map
/// to `anchor + (rtp − first_rtp) × 1000 / clock_rate`, with the RTP difference tracked as a
/// signed 64-bit count so wraps and slightly reordered packets are handled. A source change
/// or a new play calls [`RtpTimeline::reset`], and the next packet re-anchors.
///
/// ```
/// use siprtmp_core::media::RtpTimeline;
/// let mut t = RtpTimeline::new(8000);
/// assert_eq!(t.to_rtmp(u32::MAX - 79, 5000), 5000); // anchored
/// assert_eq!(t.to_rtmp(80, 9999), 5020); // 160 units later, across the wrap
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RtpTimeline {
    clock_rate: u32,
    anchor: Option<Anchor>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Anchor {
    rtmp_ms: u32,
    last_rtp: u32,
    /// RTP units from the anchor packet to `last_rtp`.
    offset: i64,
}

impl RtpTimeline {
    /// A timeline for a clock of `clock_rate` Hz (a zero rate is treated as 1 Hz).
    pub fn new(clock_rate: u32) -> Self {
        RtpTimeline {
            clock_rate: clock_rate.max(1),
            anchor: None,
        }
    }

    /// Forgets the anchor: the next timestamp maps to the RTMP time given with it.
    pub fn reset(&mut self) {
        self.anchor = None;
    }

    /// Whether a timestamp has been anchored since creation or the last reset.
    pub fn is_anchored(&self) -> bool {
        self.anchor.is_some()
    }

    /// The RTMP time of RTP timestamp `rtp`; `rtmp_now_ms` is only used to anchor the first
    /// one. Times before the anchor saturate at 0.
    pub fn to_rtmp(&mut self, rtp: u32, rtmp_now_ms: u32) -> u32 {
        self.rtmp_time(rtp, || rtmp_now_ms)
    }

    /// [`Self::to_rtmp`] with the RTMP time asked of `rtmp_now_ms` only when it anchors: a
    /// caller that reads a clock for it pays that once per anchor, not once per packet.
    #[inline]
    pub(crate) fn rtmp_time(&mut self, rtp: u32, rtmp_now_ms: impl FnOnce() -> u32) -> u32 {
        let a = self.anchor.get_or_insert_with(|| Anchor {
            rtmp_ms: rtmp_now_ms(),
            last_rtp: rtp,
            offset: 0,
        });
        // The signed 32-bit difference is the shortest way round the wrap.
        a.offset += i64::from(rtp.wrapping_sub(a.last_rtp) as i32);
        a.last_rtp = rtp;
        let ms = a
            .offset
            .saturating_mul(1000)
            .div_euclid(i64::from(self.clock_rate));
        let t = i64::from(a.rtmp_ms) + ms;
        // RTMP time wraps at 2^32 ms like the RTP clock does.
        if t < 0 {
            0
        } else {
            t as u32
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rtmp_to_rtp_scales_real_timestamps() {
        // Flash sends Speex every ~20 ms but with jittery timestamps: no fixed step.
        assert_eq!(rtmp_to_rtp(0, 16_000, 7), 7);
        assert_eq!(rtmp_to_rtp(23, 16_000, 7), 7 + 368);
        assert_eq!(rtmp_to_rtp(40, 16_000, 7), 7 + 640);
        assert_eq!(rtmp_to_rtp(1, 90_000, 0), 90);
        // Continuous across the RTMP 2^32 ms wrap for 90 kHz: u32::MAX ms then 0 ms.
        let before = rtmp_to_rtp(u32::MAX, 90_000, 0);
        let after = rtmp_to_rtp(0, 90_000, 0);
        assert_eq!(after.wrapping_sub(before), 90);
    }

    #[test]
    fn timeline_anchors_and_follows_deltas() {
        let mut t = RtpTimeline::new(16_000);
        assert_eq!(t.to_rtmp(1_000_000, 300), 300);
        assert_eq!(t.to_rtmp(1_000_320, 0), 320);
        // A reordered earlier packet.
        assert_eq!(t.to_rtmp(1_000_000, 0), 300);
        assert_eq!(t.to_rtmp(1_016_000, 0), 1300);
        t.reset();
        assert!(!t.is_anchored());
        assert_eq!(t.to_rtmp(5, 42), 42);
        // Before the anchor saturates.
        let mut t = RtpTimeline::new(1000);
        assert_eq!(t.to_rtmp(100, 10), 10);
        assert_eq!(t.to_rtmp(50, 10), 0);
    }
}
