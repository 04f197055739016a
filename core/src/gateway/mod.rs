//! The SIP-RTMP gateway: an RTMP client (app `sip`) registers with a SIP server through it and
//! places and receives audio/video calls, with signalling and media translated between RTMP
//! and SIP/SDP/RTP.
//!
//! - [`client_api`]: what the client sends (`connect` arguments, `invite`, `accept`...) and the
//!   callbacks it receives (`invited`, `accepted`, `byed`...).
//! - [`codecs`]: the client's codec tokens and their SDP form.
//!
//! The per-connection call machine that joins these to the SIP user agent
//! ([`crate::sip`]) and the media translators ([`crate::media`]) is being built on top.

pub mod call_session;
pub mod client_api;
pub mod codecs;
pub mod media_bridge;
