//! [`ReadSizes`]: how large a part of the shared read block each connection gets in a
//! wake-up's first batch of reads.
//!
//! The io-uring driver reads many connections in one submission, each into its own part of
//! one zeroed block, so a part must be sized before the read. Too small, and the connection
//! needs a second submission with a [`READ_CHUNK`] part; too large, and the block's zeroed
//! bytes past the read are wasted (a publisher read every 400 ms that brings 10 KiB, given
//! 64 KiB, cost a 64 KiB memset and fresh pages per read). So a connection's part follows
//! what its reads of a wake-up brought last time, with half as much again for growth.

use siprtmp_core::id_hash::IdHashMap;
use siprtmp_core::node::ConnId;

use crate::READ_CHUNK;

/// A connection's part before its reads say how much it brings, and the smallest part: a
/// gateway client's Speex frame (about 100 bytes) or a few, with room for bursts.
pub(crate) const FIRST_READ: usize = 2 * 1024;

/// What each connection's reads of a wake-up brought last time (one entry per open
/// connection: the driver forgets a connection when it closes).
#[derive(Debug, Default)]
pub(crate) struct ReadSizes {
    last: IdHashMap<ConnId, usize>,
}

impl ReadSizes {
    /// The part of the read block for `conn`'s first read in a wake-up: what it brought last
    /// time and half as much again, rounded up to a power of two, between [`FIRST_READ`] and
    /// [`READ_CHUNK`].
    pub(crate) fn part(&self, conn: ConnId) -> usize {
        self.last.get(&conn).map_or(FIRST_READ, |&bytes| {
            (bytes + bytes / 2)
                .next_power_of_two()
                .clamp(FIRST_READ, READ_CHUNK)
        })
    }

    /// `conn`'s reads of this wake-up brought `bytes` in all, and emptied its socket.
    pub(crate) fn read(&mut self, conn: ConnId, bytes: usize) {
        self.last.insert(conn, bytes);
    }

    /// `conn` closed.
    pub(crate) fn forget(&mut self, conn: ConnId) {
        self.last.remove(&conn);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_part_follows_the_last_reads_between_the_first_read_and_a_chunk() {
        let mut sizes = ReadSizes::default();
        let conn = ConnId(7);
        assert_eq!(sizes.part(conn), FIRST_READ, "unknown: the first read");
        // A publisher read every 400 ms: 10,000 bytes, and half again, fit 16 KiB.
        sizes.read(conn, 10_000);
        assert_eq!(sizes.part(conn), 16 * 1024);
        // A gateway client's frame: never below the first read.
        sizes.read(conn, 100);
        assert_eq!(sizes.part(conn), FIRST_READ);
        // A burst larger than a chunk: a chunk, then more chunks in further batches.
        sizes.read(conn, 1 << 20);
        assert_eq!(sizes.part(conn), READ_CHUNK);
        // Another connection is not affected, and a closed one is forgotten.
        assert_eq!(sizes.part(ConnId(8)), FIRST_READ);
        sizes.forget(conn);
        assert_eq!(sizes.part(conn), FIRST_READ);
        assert!(sizes.last.is_empty());
    }
}
