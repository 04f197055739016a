//! # SIP message layer (RFC 3261)
//!
//! Parsing and serialising SIP requests and responses; on top of that, pure helpers for
//! Digest authentication ([`digest`]) and dialogs and request/response construction
//! ([`dialog`]), the transport rules of RFC 3261 18 / RFC 3581 (Via stamping, `received`,
//! `rport`, where responses go: [`stamp_via`], [`fill_received`], [`response_destination`]),
//! and the sans-IO [`TransactionLayer`] running the four RFC 3261 17 / RFC 6026 transaction
//! machines on an injected clock. No sockets. Bytes in, [`SipMessage`] out, and back.
//!
//! - [`parse_datagram`] parses one UDP datagram; [`StreamFramer`] frames messages out of a
//!   TCP/TLS byte stream by Content-Length. Both are bounded by [`ParseLimits`] and return a
//!   typed [`SipError`] on hostile input, never panic.
//! - [`Headers`] keeps header fields in wire order with their original names and answers
//!   case-insensitive, compact-form-aware lookups and typed accessors (Call-ID, CSeq,
//!   From/To, Via, Contact, Content-Length, Max-Forwards, Expires).
//! - [`Uri`] / [`SipUri`], [`NameAddr`] and [`Via`] parse the structured values.
//! - A parsed message keeps its original bytes so that a proxy can forward it unchanged;
//!   [`SipMessage::to_bytes`] re-serialises with a correct Content-Length.
//!
//! ```
//! use siprtmp_core::sip::{parse_datagram, Method};
//! let msg = parse_datagram(
//!     b"INVITE sip:bob@biloxi.example.com SIP/2.0\r\n\
//!       v: SIP/2.0/UDP pc33.atlanta.example.com;branch=z9hG4bK776asdhds\r\n\
//!       Max-Forwards: 70\r\n\
//!       t: Bob <sip:bob@biloxi.example.com>\r\n\
//!       f: Alice <sip:alice@atlanta.example.com>;tag=1928301774\r\n\
//!       i: a84b4c76e66710@pc33.atlanta.example.com\r\n\
//!       CSeq: 314159 INVITE\r\n\
//!       c: application/sdp\r\n\
//!       l: 4\r\n\r\nv=0\n",
//! )
//! .unwrap();
//! assert_eq!(msg.method(), Some(&Method::Invite));
//! let h = msg.headers();
//! assert_eq!(h.from().unwrap().tag(), Some("1928301774"));
//! assert_eq!(h.vias().unwrap()[0].branch(), Some("z9hG4bK776asdhds"));
//! assert_eq!(h.content_type(), Some("application/sdp"));
//! assert_eq!(&msg.body()[..], b"v=0\n");
//! ```

mod client_transaction;
pub mod dialog;
pub mod digest;
mod error;
mod headers;
mod lex;
mod message;
mod name_addr;
mod params;
mod parser;
pub mod request_build;
mod server_transaction;
mod timers;
mod transaction;
mod transaction_key;
mod transaction_layer;
mod transport;
pub mod ua;
mod uri;
mod via;

pub use dialog::{
    cancel_for, make_response, new_request, Dialog, DialogError, DialogId, DialogState, NewRequest,
    SentBy,
};
pub use digest::{
    Algorithm, AuthAction, AuthFailure, Authorization, Challenge, ChallengeKind, CredentialStore,
    Credentials, DigestClient, DigestError, DigestRequest, Qop,
};
pub use error::{Limit, SipError};
pub use headers::{expand_compact, is_list_header, same_header, CSeq, Contacts, Header, Headers};
pub use message::{Method, Request, Response, SipMessage};
pub use name_addr::NameAddr;
pub use params::Params;
pub use parser::{parse_datagram, parse_datagram_with, ParseLimits, StreamFramer};
pub use timers::{TimerConfig, TimerKind};
pub use transaction::{TransactionEvent, TransactionId, TransactionState, Transmit, TxError};
pub use transaction_layer::{Incoming, TransactionConfig, TransactionLayer};
pub use transport::{
    fill_received, fill_received_in, response_destination, response_is_ours, sent_by_of, stamp_via,
    Destination, Transport, DEFAULT_PORT, DEFAULT_TLS_PORT,
};
pub use ua::{CallId, UaConfig, UaError, UaEvent, UaStats, UserAgent};
pub use uri::{Host, Scheme, SipUri, Uri};
pub use via::{RPort, Via};
