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
//! its own.

use crate::READ_CHUNK;

/// A connection's part before its reads say how much it brings, and the smallest part: a
/// gateway client's Speex frame (about 100 bytes) or a few, with room for bursts.
pub(crate) const FIRST_READ: usize = 2 * 1024;

/// The part of the read block for a connection's first read in a wake-up.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct ReadSize(usize);

impl Default for ReadSize {
    fn default() -> Self {
        Self(FIRST_READ)
    }
}

impl ReadSize {
    /// The part after reads that brought `bytes` in all and emptied the socket: that and half
    /// as much again, rounded up to a power of two, between [`FIRST_READ`] and
    /// [`READ_CHUNK`].
    pub(crate) fn after(bytes: usize) -> Self {
        Self(
            (bytes + bytes / 2)
                .next_power_of_two()
                .clamp(FIRST_READ, READ_CHUNK),
        )
    }

    /// The part, in bytes.
    pub(crate) fn part(self) -> usize {
        self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_part_follows_the_last_reads_between_the_first_read_and_a_chunk() {
        assert_eq!(ReadSize::default().part(), FIRST_READ, "nothing read yet");
        // A publisher read every 400 ms: 10,000 bytes, and half again, fit 16 KiB.
        assert_eq!(ReadSize::after(10_000).part(), 16 * 1024);
        // A gateway client's frame: never below the first read, so its size never changes.
        assert_eq!(ReadSize::after(100), ReadSize::default());
        // A burst larger than a chunk: a chunk, then more chunks in further batches.
        assert_eq!(ReadSize::after(1 << 20).part(), READ_CHUNK);
    }
}
