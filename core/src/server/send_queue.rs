//! [`SendQueue`]: the bytes a connection has queued for the kernel, as shared segments.
//!
//! Media segments are the same `Bytes` for every player (pushing one is a reference-count
//! increment). The driver writes the queue with one `writev` and reports how many bytes the
//! kernel took; the queue's length in bytes is the connection's backlog, which drives the
//! server's backpressure decisions.

use std::collections::VecDeque;
use std::io::IoSlice;

use bytes::{Buf, Bytes};

/// A FIFO of byte segments with a running byte count.
#[derive(Debug, Default)]
pub(crate) struct SendQueue {
    segments: VecDeque<Bytes>,
    queued: usize,
}

impl SendQueue {
    /// Appends a segment (empty segments are ignored).
    pub(crate) fn push(&mut self, segment: Bytes) {
        if !segment.is_empty() {
            self.queued += segment.len();
            self.segments.push_back(segment);
        }
    }

    /// Bytes queued and not yet drained.
    pub(crate) fn queued_bytes(&self) -> usize {
        self.queued
    }

    /// True when nothing is queued.
    pub(crate) fn is_empty(&self) -> bool {
        self.queued == 0
    }

    /// Drops `n` bytes from the front, as the kernel took them (clamped to what is queued).
    pub(crate) fn advance(&mut self, mut n: usize) {
        n = n.min(self.queued);
        self.queued -= n;
        while n > 0 {
            let Some(front) = self.segments.front_mut() else {
                break;
            };
            if n >= front.len() {
                n -= front.len();
                self.segments.pop_front();
            } else {
                front.advance(n);
                n = 0;
            }
        }
        if self.segments.is_empty() {
            // Back to the front of the ring: the next segments go where the last ones were,
            // not on around a ring of stale lines (held media fills it a little more every
            // window, and each line it moves on to is a cache miss on every player).
            self.segments.clear();
        }
    }

    /// Discards everything queued.
    pub(crate) fn clear(&mut self) {
        self.segments.clear();
        self.queued = 0;
    }

    /// Fills `slices` with the queued segments, front first; returns how many were filled.
    pub(crate) fn io_slices<'a>(&'a self, slices: &mut [IoSlice<'a>]) -> usize {
        let mut n = 0;
        for (slot, segment) in slices.iter_mut().zip(self.segments.iter()) {
            *slot = IoSlice::new(segment);
            n += 1;
        }
        n
    }

    /// The queued segments, front first.
    pub(crate) fn segments(&self) -> impl Iterator<Item = &Bytes> {
        self.segments.iter()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn advance_across_segment_boundaries_keeps_remaining_bytes_in_order() {
        let mut q = SendQueue::default();
        q.push(Bytes::from_static(b"abc"));
        q.push(Bytes::new());
        q.push(Bytes::from_static(b"defg"));
        assert_eq!(q.queued_bytes(), 7);
        q.advance(4);
        let rest: Vec<u8> = q.segments().flat_map(|s| s.iter().copied()).collect();
        assert_eq!(rest, b"efg");
        let mut slices = [IoSlice::new(&[]); 4];
        assert_eq!(q.io_slices(&mut slices), 1);
        q.advance(100);
        assert!(q.is_empty());
    }
}
