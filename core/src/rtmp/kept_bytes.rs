//! [`KeptBytes`]: where a live stream copies the payloads it keeps (its group of pictures,
//! configurations and metadata), so that they hold no part of the buffers they were read into.
//!
//! A driver reads every peer into one shared buffer (64 KiB under mio) and hands the node
//! slices of it; a message that came in one chunk is such a slice. Kept as it is, a cached
//! audio frame of a few dozen bytes would keep the whole buffer allocated, with everything
//! other peers sent into it, for as long as the frame is cached. Copying each kept payload
//! into a block of the stream's own packs them densely, one allocation per block rather than
//! one (or two, with the first clone's) per message; a block is freed once nothing it holds
//! is kept any more, and reused in place when its last message went before the next one came.

use bytes::{Bytes, BytesMut};

/// Bytes of a block; a longer payload gets a block of its own size.
const BLOCK: usize = 4 * 1024;

/// Payloads copied out of read buffers, packed into blocks of the stream's own.
#[derive(Debug, Default)]
pub(crate) struct KeptBytes {
    block: BytesMut,
}

impl KeptBytes {
    /// `bytes`, copied into the current block (or a new one).
    pub(crate) fn keep(&mut self, bytes: &[u8]) -> Bytes {
        if self.block.capacity() < bytes.len() {
            // Reclaims the block in place when nothing refers to it any more; allocates a
            // new one otherwise.
            self.block.reserve(bytes.len().max(BLOCK));
        }
        self.block.extend_from_slice(bytes);
        self.block.split().freeze()
    }

    /// Lets go of the current block (the stream's publisher left).
    pub(crate) fn release(&mut self) {
        self.block = BytesMut::new();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn payloads_share_a_block_until_it_is_full_and_a_long_one_gets_its_own() {
        let mut kept = KeptBytes::default();
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
        let mut kept = KeptBytes::default();
        let first = kept.keep(&[1; 3000]);
        let at = first.as_ptr();
        drop(first);
        // Does not fit what is left of the block: the block, free again, is reclaimed.
        let second = kept.keep(&[2; 3000]);
        assert_eq!(second.as_ptr(), at);
    }
}
