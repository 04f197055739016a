//! [`ByteBlocks`]: bytes packed one after another into shared blocks, each piece a slice of its
//! block (no allocation per piece; a block is freed once nothing refers to it, and reclaimed in
//! place when its last piece went before the next one came).
//!
//! A live stream copies the payloads it keeps (its group of pictures, configurations and
//! metadata) into blocks of its own, in 4 KiB blocks: a driver reads every peer into one shared
//! buffer (64 KiB under mio) and hands the node slices of it, so a cached audio frame of a few
//! dozen bytes left as such a slice would keep the whole buffer allocated, with everything
//! other peers sent into it, for as long as the frame is cached. Copying them packs them
//! densely, one allocation per block rather than one (or two, with the first clone's) per
//! message. The test kit carves what its clients send from 64 KiB blocks, as drivers hand
//! reads over.

use bytes::{Bytes, BytesMut};

/// Bytes of a kept payloads' block; a longer piece gets a block of its own size.
const KEPT_BLOCK: usize = 4 * 1024;

/// Pieces packed into blocks of `block_size` bytes (or of a longer piece's size).
#[derive(Debug)]
pub(crate) struct ByteBlocks {
    block: BytesMut,
    block_size: usize,
}

/// Blocks for the payloads a stream keeps.
impl Default for ByteBlocks {
    fn default() -> Self {
        Self::with_block_size(KEPT_BLOCK)
    }
}

impl ByteBlocks {
    /// Packing into blocks of `block_size` bytes.
    pub(crate) fn with_block_size(block_size: usize) -> Self {
        Self {
            block: BytesMut::new(),
            block_size,
        }
    }

    /// `parts`, joined, in the current block (or a new one).
    pub(crate) fn carve(&mut self, parts: &[&[u8]]) -> BytesMut {
        let len = parts.iter().map(|p| p.len()).sum::<usize>();
        if self.block.capacity() < len {
            // Reclaims the block in place when nothing refers to it any more; allocates a
            // new one otherwise.
            self.block.reserve(len.max(self.block_size));
        }
        for part in parts {
            self.block.extend_from_slice(part);
        }
        self.block.split()
    }

    /// `bytes`, copied into the current block (or a new one).
    pub(crate) fn keep(&mut self, bytes: &[u8]) -> Bytes {
        self.carve(&[bytes]).freeze()
    }

    /// Lets go of the current block (a stream's publisher left).
    pub(crate) fn release(&mut self) {
        self.block = BytesMut::new();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn payloads_share_a_block_until_it_is_full_and_a_long_one_gets_its_own() {
        let mut kept = ByteBlocks::default();
        let a = kept.keep(&[1; 100]);
        let b = kept.keep(&[2; 100]);
        assert_eq!((&a[..], &b[..]), (&[1; 100][..], &[2; 100][..]));
        assert_eq!(b.as_ptr() as usize, a.as_ptr() as usize + 100, "packed");
        let long = kept.keep(&[3; 10_000]);
        assert_eq!(&long[..], &[3; 10_000][..]);
        assert_eq!((a[0], b[0]), (1, 2), "what was kept before is untouched");
    }

    #[test]
    fn a_block_nothing_refers_to_is_used_again() {
        let mut kept = ByteBlocks::default();
        let first = kept.keep(&[1; 3000]);
        let at = first.as_ptr();
        drop(first);
        // Does not fit what is left of the block: the block, free again, is reclaimed.
        let second = kept.keep(&[2; 3000]);
        assert_eq!(second.as_ptr(), at);
    }

    #[test]
    fn parts_are_joined() {
        let mut blocks = ByteBlocks::with_block_size(64 * 1024);
        assert_eq!(&blocks.carve(&[b"ab", b"", b"cd"])[..], b"abcd");
    }
}
