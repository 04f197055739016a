//! [`Arena`]: received bytes carved from shared blocks, as drivers hand them to the node.

use bytes::BytesMut;

/// Received bytes as the drivers hand them to the node: carved from a shared block (a
/// driver's read buffer, a UDP reader's chunk), so that the node's zero-copy splits and clones
/// of them cost here what they cost in production. (A fresh `Vec` per delivery would make
/// each clone allocate, and the benchmarks would measure the harness.)
#[derive(Debug, Default)]
pub(crate) struct Arena(BytesMut);

impl Arena {
    /// Bytes that fit in one block, as drivers allocate them.
    const BLOCK: usize = 64 * 1024;

    /// `parts`, joined, in the arena's block.
    pub(crate) fn carve(&mut self, parts: &[&[u8]]) -> BytesMut {
        let len = parts.iter().map(|p| p.len()).sum::<usize>();
        if self.0.capacity() < len {
            self.0.reserve(len.max(Self::BLOCK));
        }
        for part in parts {
            self.0.extend_from_slice(part);
        }
        self.0.split()
    }
}
