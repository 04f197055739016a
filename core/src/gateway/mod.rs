//! The SIP-RTMP gateway: an RTMP client (app `sip`) registers with a SIP server through it and
//! places and receives audio/video calls, with signalling and media translated between RTMP
//! and SIP/SDP/RTP.
//!
//! - [`client_api`]: what the client sends (`connect` arguments, `invite`, `accept`...) and the
//!   callbacks it receives (`invited`, `accepted`, `byed`...).
//! - [`codecs`]: the client's codec tokens and their SDP form.
//! - [`call_session`]: one client's session, joining these to the SIP user agent
//!   ([`crate::sip`]) and its call's media.
//! - [`media_bridge`]: one call's media translation, RTMP to RTP and back.
//! - `srtp_leg`: one leg's SRTP contexts, sealing and opening its datagrams.
//! - [`srtp_policy`]: the `srtp` setting and where SDES keys may travel.
//! - [`stats`]: what the gateway counts for the metrics and the HTTP API.
//! - [`drop_notice`]: how often media dropped from strangers is told to the operator.
//! - `host`: the gateway in a node: its clients' sessions, sockets and media routes
//!   (configured by [`GatewayNodeConfig`]).

pub mod call_session;
pub mod client_api;
pub mod codecs;
pub mod drop_notice;
pub(crate) mod host;
pub mod media_bridge;
pub(crate) mod srtp_leg;
pub mod srtp_policy;
pub mod stats;

pub use host::{GatewayNodeConfig, SipTlsSettings};
