//! SDP (RFC 4566) and the offer/answer model (RFC 3264) for the SIP side of the gateway.
//!
//! [`session`] owns the text model of a session description (every line, attributes kept in
//! order, unknown ones included) with a bounded parser and a canonical serializer.
//! [`attributes`] reads and writes the typed attributes the gateway negotiates with (`rtpmap`,
//! `fmtp`, direction, `ptime`). [`offer_answer`] turns local capabilities and a remote offer
//! into an answer, builds offers and re-offers (hold / resume) and reads an answer to our offer.
//! [`crypto`] reads and writes the SDES `a=crypto` attribute (RFC 4568, keys in [`base64`]),
//! and [`sdes`] negotiates SRTP keys on top of offer/answer.

pub mod attributes;
pub mod base64;
pub mod crypto;
pub mod offer_answer;
pub mod sdes;
pub mod session;

pub use attributes::{Direction, Fmtp, RtpMap, TelephoneEvents};
pub use crypto::{CryptoAttribute, KeyParam, Lifetime};
pub use offer_answer::{
    answer, create_offer, negotiated_media, process_answer, reoffer, Codec, LocalCapabilities,
    MediaCapability, NegotiatedMedia, NoMatch, PayloadTypes, TelephoneEvent,
};
pub use sdes::SrtpKeys;
pub use session::{
    Attribute, Bandwidth, Connection, MediaDescription, Origin, Repeat, SdpError,
    SessionDescription, TimeZoneAdjustment, Timing,
};
