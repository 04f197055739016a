//! How a message finds its transaction (RFC 3261 17.1.3 and 17.2.3):
//!
//! - a response matches a client transaction by the branch of its top Via and its CSeq
//!   method ([`ClientKey`]);
//! - a request matches a server transaction by branch, sent-by and method, with ACK counting
//!   as INVITE ([`ServerKey::Rfc3261`]); when the branch lacks the `z9hG4bK` magic cookie the
//!   sender predates RFC 3261, and the RFC 2543 fallback compares Request-URI, From tag,
//!   Call-ID, CSeq and top Via ([`ServerKey::Rfc2543`]), the To tag being checked after the
//!   lookup because an ACK carries the tag of our response rather than the INVITE's;
//! - the ACK for a 2xx is a transaction of its own and finds the INVITE it confirms by
//!   dialog: Call-ID, CSeq number and From tag ([`AckKey`]).

use super::dialog::BRANCH_MAGIC;
use super::headers::CSeq;
use super::message::{Method, Request};
use super::transport::DEFAULT_PORT;
use super::via::Via;

/// Matches responses to client transactions.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(crate) struct ClientKey {
    pub(crate) branch: String,
    pub(crate) method: Method,
}

/// Matches requests to server transactions.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(crate) enum ServerKey {
    /// 17.2.3: branch, sent-by (host lower-cased, port defaulted) and method (ACK -> INVITE).
    Rfc3261 {
        branch: String,
        sent_by: String,
        method: Method,
    },
    /// 17.2.3's RFC 2543 fallback.
    Rfc2543 {
        request_uri: String,
        from_tag: Option<String>,
        call_id: String,
        cseq: u32,
        method: Method,
        top_via: String,
    },
}

impl ServerKey {
    /// The key of `request`, whose top Via (before `received`/`rport` were added) is `via`.
    pub(crate) fn of(
        request: &Request,
        via: &Via,
        cseq: &CSeq,
        from_tag: Option<&str>,
        call_id: &str,
    ) -> ServerKey {
        let method = match request.method {
            Method::Ack => Method::Invite,
            ref m => m.clone(),
        };
        match via.branch() {
            Some(b) if b.starts_with(BRANCH_MAGIC) => ServerKey::Rfc3261 {
                branch: b.to_string(),
                sent_by: format!(
                    "{}:{}",
                    via.host.to_string().to_ascii_lowercase(),
                    via.port.unwrap_or(DEFAULT_PORT)
                ),
                method,
            },
            _ => ServerKey::Rfc2543 {
                request_uri: request.uri.to_string(),
                from_tag: from_tag.map(str::to_string),
                call_id: call_id.to_string(),
                cseq: cseq.seq,
                method,
                top_via: via.to_string(),
            },
        }
    }

    /// The same key for another method: a CANCEL looks for the INVITE it cancels.
    pub(crate) fn with_method(&self, m: Method) -> ServerKey {
        let mut k = self.clone();
        match &mut k {
            ServerKey::Rfc3261 { method, .. } | ServerKey::Rfc2543 { method, .. } => *method = m,
        }
        k
    }

    pub(crate) fn is_rfc2543(&self) -> bool {
        matches!(self, ServerKey::Rfc2543 { .. })
    }
}

/// Matches the ACK for a 2xx to the INVITE server transaction that sent the 2xx.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(crate) struct AckKey {
    pub(crate) call_id: String,
    pub(crate) cseq: u32,
    pub(crate) from_tag: Option<String>,
}
