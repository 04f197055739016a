//! The memory allocator's policy for a long-running server: memory freed when connections
//! close goes back to the system.
//!
//! glibc's malloc serves large blocks with `mmap` (returned to the system on `free`) only above
//! a threshold that it raises, by default, to the size of every mmapped block freed, up to
//! 32 MiB. A server that has held many unfinished 8 MiB messages (a memory bomb, or many 4K
//! publishers) thus serves later blocks of that size from its heap, and after the connections
//! close the heap keeps the memory (gigabytes resident after a few hundred such connections had
//! gone: `bench-compare/results/design-figures.md`). A fixed threshold keeps large blocks (partial messages,
//! keyframes in GOP caches, file reads) in `mmap`, so they go back when freed; the blocks of
//! the data path (read buffers of 64 KiB, chunk headers, small messages) stay in the heap.

/// Blocks from this size up are mapped for themselves and unmapped when freed.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
const MMAP_THRESHOLD: libc::c_int = 256 * 1024;

/// Sets the policy; call once, first thing in `main`.
pub(crate) fn configure() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only sets allocator parameters; it is called before any other thread
    // exists, with a parameter and a value glibc documents.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, MMAP_THRESHOLD);
    }
}
