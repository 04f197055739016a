//! SRTP and SRTCP (RFC 3711) with the AES-CM / HMAC-SHA1 suites of SDES (RFC 4568).
//!
//! Pure: no sockets, no clock, no randomness; keys come in, packets are protected and
//! unprotected in place on the caller's buffer with no allocation per packet.
//!
//! - [`suite`]: the crypto suites (`AES_CM_128_HMAC_SHA1_80` and `_32`) and master keys.
//! - [`keystream`]: AES in counter mode (RFC 3711 4.1.1) over a kept key schedule.
//! - [`kdf`]: session key derivation from a master key (RFC 3711 4.3, key derivation rate 0).
//! - [`index`]: the packet index estimate and rollover counter (RFC 3711 3.3.1, appendix A).
//! - [`key_secret`]: the operator's secret that SDES master keys are derived with.
//! - [`replay`]: the 64-packet replay window (RFC 3711 3.3.2).
//! - [`context`]: [`SrtpContext`] and [`SrtcpContext`], one direction of one session each.
//!
//! A call has two directions: one context pair protects what we send with our key, another
//! unprotects what the far end sends with its key (SDES gives each side its own).

pub mod context;
pub mod index;
pub mod kdf;
pub mod key_secret;
pub mod keystream;
pub mod replay;
pub mod suite;

pub use context::{SrtcpContext, SrtpContext, SrtpError};
pub use key_secret::KeySecret;
pub use suite::{MasterKey, Suite};

#[cfg(test)]
mod test_hex;
#[cfg(test)]
mod tests;
