//! The SRTP packet index: a 16-bit sequence number extended by a rollover counter (ROC) to 48
//! bits. The receiver guesses the ROC of each packet from its sequence number and the highest
//! one seen (RFC 3711 section 3.3.1 and appendix A), and only moves its state forward once
//! the packet authenticated; the sender counts its own wraps.

/// The rollover counter and highest sequence number of one SSRC's stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IndexTracker {
    roc: u32,
    highest: u16,
}

impl IndexTracker {
    /// A stream whose first packet has `sequence` and a rollover counter of `roc`.
    pub fn new(roc: u32, sequence: u16) -> Self {
        Self {
            roc,
            highest: sequence,
        }
    }

    /// The rollover counter.
    pub fn roc(&self) -> u32 {
        self.roc
    }

    /// The 48-bit index the packet with `sequence` most probably has (RFC 3711 appendix A):
    /// the candidate among ROC-1, ROC and ROC+1 closest to the highest index seen.
    pub fn estimate(&self, sequence: u16) -> u64 {
        let s_l = i32::from(self.highest);
        let seq = i32::from(sequence);
        let roc = i64::from(self.roc);
        let v = if s_l < 32_768 {
            if seq - s_l > 32_768 {
                roc - 1
            } else {
                roc
            }
        } else if s_l - 32_768 > seq {
            roc + 1
        } else {
            roc
        };
        // A ROC-1 guess at ROC 0 (a late packet from before the stream's first one) wraps:
        // it is out of the 32-bit ROC's range and the tag will not match.
        ((v as u64 & 0xffff_ffff) << 16) | u64::from(sequence)
    }

    /// An authenticated packet had `index`: the state moves forward if it is the highest yet.
    pub fn update(&mut self, index: u64) {
        let roc = (index >> 16) as u32;
        let sequence = index as u16;
        if roc == self.roc.wrapping_add(1) || (roc == self.roc && sequence > self.highest) {
            self.roc = roc;
            self.highest = sequence;
        }
    }

    /// The highest index seen.
    pub fn highest(&self) -> u64 {
        (u64::from(self.roc) << 16) | u64::from(self.highest)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn in_order_packets_keep_the_roc() {
        let mut t = IndexTracker::new(0, 100);
        assert_eq!(t.estimate(101), 101);
        t.update(101);
        assert_eq!(t.highest(), 101);
    }

    #[test]
    fn a_wrap_of_the_sequence_number_increments_the_roc() {
        let mut t = IndexTracker::new(0, 65_535);
        let index = t.estimate(0);
        assert_eq!(index, 1 << 16);
        t.update(index);
        assert_eq!(t.roc(), 1);
        // A late packet from before the wrap belongs to ROC 0.
        assert_eq!(t.estimate(65_534), 65_534);
        t.update(65_534);
        assert_eq!(t.roc(), 1, "a late packet does not move the state back");
    }

    #[test]
    fn a_late_packet_across_the_wrap_guesses_the_previous_roc() {
        let t = IndexTracker::new(5, 10);
        assert_eq!(t.estimate(65_500), (4 << 16) | 65_500);
    }
}
