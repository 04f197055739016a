//! [`RecvSlot`]: how much of the shared receive buffer each datagram of a batched receive
//! (`recvmmsg`) gets, adapted to the datagrams the socket has been receiving.
//!
//! A batched receive must say beforehand where each datagram may land, so datagram `i` gets
//! the `i`-th slot of the buffer whatever its length, and the rest of a slot is skipped. With
//! one fixed slot big enough for video RTP (2 KiB), a Speex frame's 60-byte datagram used 3 %
//! of its slot: a gateway with hundreds of calls went through hundreds of KiB of fresh buffer
//! per wake-up (zeroed first, then cold in the cache when the datagram is translated), and
//! zeroing it showed in the gateway's CPU profile (`bench-compare/results/design-figures.md`). The slot therefore follows the datagrams: it grows at once to
//! fit the longest datagram of a batch (those that did not fit were joined from the slot's
//! overflow, a copy, so growing fast keeps copies to the batch that revealed the need) and
//! shrinks, to the longest datagram seen meanwhile, only after [`SHRINK_AFTER`] batches in a
//! row would all have fitted a smaller one (so a call with video and audio keeps room for its
//! video between two frames).

/// The smallest slot: an RTP header and a G.711 or Speex frame, with room to spare.
pub(crate) const SLOT_MIN: usize = 256;
/// The largest slot: an RTP packet from a 1500-byte MTU fits. Longer datagrams always take
/// the overflow path.
pub(crate) const SLOT_MAX: usize = 2048;
/// Consecutive batches that would all have fitted a smaller slot before the slot shrinks.
pub(crate) const SHRINK_AFTER: u32 = 64;

/// The slot size of one receive loop; see the module documentation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct RecvSlot {
    size: usize,
    /// Batches in a row whose datagrams all fitted a slot smaller than `size`.
    small_batches: u32,
    /// The longest datagram of those batches.
    longest: usize,
}

impl Default for RecvSlot {
    /// Starts at the largest slot: nothing is copied before the first batch has been seen.
    fn default() -> Self {
        Self {
            size: SLOT_MAX,
            small_batches: 0,
            longest: 0,
        }
    }
}

impl RecvSlot {
    /// Bytes of the buffer each datagram of the next batch lands in (its rest, if any, in its
    /// overflow).
    pub(crate) fn size(&self) -> usize {
        self.size
    }

    /// Learns from a batch whose longest datagram was `longest` bytes.
    pub(crate) fn observe(&mut self, longest: usize) {
        let fit = fitting(longest);
        if fit >= self.size {
            // Grow at once (a datagram overflowed, or exactly filled its slot).
            self.size = fit;
            self.small_batches = 0;
            self.longest = 0;
            return;
        }
        self.small_batches += 1;
        self.longest = self.longest.max(longest);
        if self.small_batches >= SHRINK_AFTER {
            self.size = fitting(self.longest);
            self.small_batches = 0;
            self.longest = 0;
        }
    }
}

/// The slot that fits `len` bytes: a power of two within `SLOT_MIN..=SLOT_MAX`.
fn fitting(len: usize) -> usize {
    len.next_power_of_two().clamp(SLOT_MIN, SLOT_MAX)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn starts_with_room_for_video_rtp() {
        assert_eq!(RecvSlot::default().size(), SLOT_MAX);
    }

    #[test]
    fn shrinks_to_audio_frames_only_after_a_run_of_small_batches() {
        let mut slot = RecvSlot::default();
        for _ in 0..SHRINK_AFTER - 1 {
            slot.observe(72);
        }
        assert_eq!(slot.size(), SLOT_MAX, "one batch short of the run");
        slot.observe(100);
        assert_eq!(slot.size(), SLOT_MIN);
    }

    #[test]
    fn a_video_packet_grows_it_at_once_and_video_between_audio_keeps_it() {
        let mut slot = RecvSlot::default();
        for _ in 0..SHRINK_AFTER {
            slot.observe(72);
        }
        assert_eq!(slot.size(), SLOT_MIN);
        slot.observe(1212);
        assert_eq!(slot.size(), 2048);
        // Video every tenth batch: the run of small batches never completes.
        for i in 0..10 * SHRINK_AFTER {
            slot.observe(if i % 10 == 9 { 1212 } else { 72 });
        }
        assert_eq!(slot.size(), 2048);
    }

    #[test]
    fn shrinks_to_the_longest_datagram_of_the_run() {
        let mut slot = RecvSlot::default();
        for i in 0..SHRINK_AFTER {
            slot.observe(if i == 5 { 700 } else { 72 });
        }
        assert_eq!(slot.size(), 1024);
    }

    proptest! {
        /// Whatever the lengths: the slot stays within its bounds, and right after a batch
        /// it fits that batch's longest datagram (up to the largest slot).
        #[test]
        fn the_slot_fits_the_last_batch_and_stays_in_bounds(
            lengths in proptest::collection::vec(0usize..70_000, 1..400)
        ) {
            let mut slot = RecvSlot::default();
            for len in lengths {
                slot.observe(len);
                prop_assert!((SLOT_MIN..=SLOT_MAX).contains(&slot.size()));
                prop_assert!(slot.size().is_power_of_two());
                prop_assert!(slot.size() >= len.min(SLOT_MAX));
            }
        }
    }
}
