//! [`ReadSize`]: how large a part of the shared read block a connection gets in a wake-up's
//! first batch of reads.
//!
//! The io-uring driver reads many connections in one submission, each into its own part of
//! one zeroed block, so a part must be sized before the read. Too small, and the connection
//! needs a second submission with a [`READ_CHUNK`] part; too large, and the block's zeroed
//! bytes past the read are wasted (a publisher read every 400 ms that brings 10 KiB, given
//! 64 KiB, cost a 64 KiB memset and fresh pages per read). So a connection's part follows
//! what its reads of a wake-up brought last time, with half as much again for growth. Each
//! connection keeps its own in its transport, which the reads look up anyway: no table of
//! its own, and no cache line more per read.

use crate::READ_CHUNK;

/// A connection's part before its reads say how much it brings, and the smallest part: a
/// gateway client's Speex frame (about 100 bytes) or a few, with room for bursts.
pub(crate) const FIRST_READ: usize = 2 * 1024;

/// What a connection's reads of a wake-up brought last time (0: none yet).
#[derive(Debug, Default, Clone, Copy)]
pub(crate) struct ReadSize(usize);

impl ReadSize {
    /// The part of the read block for the connection's first read in a wake-up: what it
    /// brought last time and half as much again, rounded up to a power of two, between
    /// [`FIRST_READ`] and [`READ_CHUNK`].
    pub(crate) fn part(self) -> usize {
        (self.0 + self.0 / 2)
            .next_power_of_two()
            .clamp(FIRST_READ, READ_CHUNK)
    }

    /// The connection's reads of this wake-up brought `bytes` in all, and emptied its socket.
    pub(crate) fn read(&mut self, bytes: usize) {
        self.0 = bytes;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_part_follows_the_last_reads_between_the_first_read_and_a_chunk() {
        let mut size = ReadSize::default();
        assert_eq!(size.part(), FIRST_READ, "nothing read yet: the first read");
        // A publisher read every 400 ms: 10,000 bytes, and half again, fit 16 KiB.
        size.read(10_000);
        assert_eq!(size.part(), 16 * 1024);
        // A gateway client's frame: never below the first read.
        size.read(100);
        assert_eq!(size.part(), FIRST_READ);
        // A burst larger than a chunk: a chunk, then more chunks in further batches.
        size.read(1 << 20);
        assert_eq!(size.part(), READ_CHUNK);
    }
}
