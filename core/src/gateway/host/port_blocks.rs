//! [`PortBlocks`]: which blocks of four RTP ports (audio RTP/RTCP, video RTP/RTCP) of the
//! configured range the gateway's calls hold.
//!
//! A call takes a block when it starts and gives it back when it ends, so the range bounds the
//! concurrent calls, not the connected clients. Blocks are handed out round-robin from where
//! the last one was taken, skipping those held: a port just released is not reused at once
//! (late packets of the old call would reach the new one), and a block another program holds
//! (the bind fails) is passed over on the next try.

/// The blocks of a port range and which of them are held.
#[derive(Debug, Clone)]
pub(crate) struct PortBlocks {
    /// The first port of the first block (even).
    first: u16,
    held: Vec<bool>,
    /// The block to try next.
    cursor: usize,
    in_use: usize,
}

impl PortBlocks {
    /// The blocks of the inclusive range `lo..=hi` (from the even port at or below `lo`).
    pub(crate) fn new((lo, hi): (u16, u16)) -> Self {
        let first = lo & !1;
        let count = (u32::from(hi) + 1).saturating_sub(u32::from(first)) / 4;
        Self {
            first,
            held: vec![false; count as usize],
            cursor: 0,
            in_use: 0,
        }
    }

    /// Blocks in the range.
    pub(crate) fn capacity(&self) -> usize {
        self.held.len()
    }

    /// Blocks held.
    #[cfg(test)]
    pub(crate) fn in_use(&self) -> usize {
        self.in_use
    }

    /// Takes the next free block; its first port, or `None` when every block is held.
    pub(crate) fn take(&mut self) -> Option<u16> {
        let count = self.held.len();
        for step in 0..count {
            let i = (self.cursor + step) % count;
            if !self.held[i] {
                self.held[i] = true;
                self.in_use += 1;
                self.cursor = (i + 1) % count;
                return Some(self.first + 4 * i as u16);
            }
        }
        None
    }

    /// Gives back the block starting at `base` (a port [`PortBlocks::take`] returned).
    pub(crate) fn release(&mut self, base: u16) {
        let Some(offset) = base.checked_sub(self.first) else {
            return;
        };
        if let Some(held) = self.held.get_mut(usize::from(offset / 4)) {
            if std::mem::replace(held, false) {
                self.in_use -= 1;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn blocks_go_round_and_are_given_back() {
        let mut blocks = PortBlocks::new((30000, 30011));
        assert_eq!(blocks.capacity(), 3);
        assert_eq!(blocks.take(), Some(30000));
        assert_eq!(blocks.take(), Some(30004));
        blocks.release(30000);
        // Not the one just released: the next in turn.
        assert_eq!(blocks.take(), Some(30008));
        assert_eq!(blocks.take(), Some(30000));
        assert_eq!(blocks.take(), None, "all three held");
        assert_eq!(blocks.in_use(), 3);
        blocks.release(30004);
        assert_eq!(blocks.take(), Some(30004));
    }

    #[test]
    fn an_odd_start_and_a_short_range() {
        let mut blocks = PortBlocks::new((30001, 30006));
        assert_eq!(
            blocks.capacity(),
            1,
            "30000-30003; 30004-30006 is not a block"
        );
        assert_eq!(blocks.take(), Some(30000));
        assert_eq!(PortBlocks::new((30000, 30002)).capacity(), 0);
        assert_eq!(PortBlocks::new((65532, 65535)).capacity(), 1);
    }

    proptest! {
        /// Whatever the order of takes and releases, no block is handed out twice while held,
        /// every block is inside the range, and the count of held blocks is right.
        #[test]
        fn never_twice_while_held(ops in proptest::collection::vec(any::<(bool, u8)>(), 0..300), lo in 1024u16..60000, len in 0u16..64) {
            let hi = lo.saturating_add(len);
            let mut blocks = PortBlocks::new((lo, hi));
            let mut held: Vec<u16> = Vec::new();
            for (take, pick) in ops {
                if take {
                    match blocks.take() {
                        Some(base) => {
                            prop_assert!(!held.contains(&base));
                            prop_assert!(base >= lo & !1 && u32::from(base) + 3 <= u32::from(hi));
                            held.push(base);
                        }
                        None => prop_assert_eq!(held.len(), blocks.capacity()),
                    }
                } else if !held.is_empty() {
                    let base = held.swap_remove(usize::from(pick) % held.len());
                    blocks.release(base);
                }
                prop_assert_eq!(blocks.in_use(), held.len());
            }
        }
    }
}
