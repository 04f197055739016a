//! Shared pieces of siprtmp's fuzz targets (the binaries under `fuzz_targets/`) and of the
//! seed generator (`examples/seedgen.rs`).
//!
//! - [`amf_eq`]: equality of AMF values that treats two NaNs with the same bits as equal, for
//!   the round-trip checks.
//! - [`frames`]: how one fuzz input carries several packets (a 2-byte length before each), so
//!   that stateful receivers (RTP depacketizers, the DTMF receiver) see a sequence.
//! - [`node_ops`]: the structured input of the `node` target (derived with `arbitrary`) and
//!   its encoder, which the seed generator uses to write seeds from real sessions.
//! - [`node_harness`]: drives a whole [`siprtmp_core::node::Node`] through those operations
//!   as a driver would, checking that what it asks is well-formed.
//! - [`counting_alloc`]: a global allocator that counts live heap bytes, for the memory
//!   ceiling of the `node` target.

pub mod amf_eq;
pub mod counting_alloc;
pub mod frames;
pub mod node_harness;
pub mod node_ops;
