//! The replay list of RFC 3711 section 3.3.2 as a 64-packet sliding window: an index more than
//! 63 behind the highest authenticated one is too old, one inside the window is rejected when
//! its bit is set. The window moves only once a packet authenticated, so forged packets cannot
//! push it.

/// Packets the window remembers behind the highest index.
pub const WINDOW: u64 = 64;

/// Which of the last [`WINDOW`] indices were received.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ReplayWindow {
    /// The highest index accepted; `None` before the first.
    highest: Option<u64>,
    /// Bit `n`: index `highest - n` was received.
    bits: u64,
}

impl ReplayWindow {
    /// Whether a packet with `index` may be new (check before authenticating it).
    pub fn check(&self, index: u64) -> bool {
        let Some(highest) = self.highest else {
            return true;
        };
        if index > highest {
            return true;
        }
        let behind = highest - index;
        behind < WINDOW && self.bits & (1 << behind) == 0
    }

    /// Records an authenticated packet's `index` (after [`ReplayWindow::check`] allowed it).
    pub fn accept(&mut self, index: u64) {
        match self.highest {
            None => {
                self.highest = Some(index);
                self.bits = 1;
            }
            Some(highest) if index > highest => {
                let ahead = index - highest;
                self.bits = if ahead >= WINDOW {
                    0
                } else {
                    self.bits << ahead
                };
                self.bits |= 1;
                self.highest = Some(index);
            }
            Some(highest) => {
                let behind = highest - index;
                if behind < WINDOW {
                    self.bits |= 1 << behind;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_repeated_index_is_rejected() {
        let mut w = ReplayWindow::default();
        assert!(w.check(10));
        w.accept(10);
        assert!(!w.check(10));
        assert!(w.check(11));
        assert!(w.check(9), "not yet seen and inside the window");
        w.accept(9);
        assert!(!w.check(9));
    }

    #[test]
    fn an_index_older_than_the_window_is_rejected() {
        let mut w = ReplayWindow::default();
        w.accept(100);
        assert!(w.check(100 - 63));
        assert!(!w.check(100 - 64));
        w.accept(1000);
        assert!(!w.check(999 - 63));
        assert!(w.check(999));
    }
}
