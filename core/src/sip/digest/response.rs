//! The request-digest (RFC 2617 3.2.2.1, RFC 7616 3.4.1): what a digest covers of a request
//! ([`DigestRequest`]) and the computation itself.

use super::*;

/// What a digest covers from the request: method, Request-URI (as text) and body (for
/// `auth-int`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DigestRequest<'a> {
    /// Method token.
    pub method: &'a str,
    /// The digest-uri: the Request-URI exactly as sent.
    pub uri: &'a str,
    /// Message body.
    pub body: &'a [u8],
}

/// The inputs of the response computation, named to keep the argument list readable.
pub(super) struct ResponseInputs<'a> {
    pub(super) algorithm: Algorithm,
    pub(super) username: &'a str,
    pub(super) realm: &'a str,
    pub(super) password: &'a str,
    pub(super) nonce: &'a str,
    pub(super) cnonce: &'a str,
    pub(super) nc: &'a str,
    pub(super) qop: Option<Qop>,
    pub(super) request: DigestRequest<'a>,
}

/// RFC 2617 3.2.2.1 / RFC 7616 3.4.1 request-digest.
pub(super) fn compute_response(i: &ResponseInputs<'_>) -> String {
    let a = i.algorithm;
    let mut ha1 = a.hex(&[
        i.username.as_bytes(),
        b":",
        i.realm.as_bytes(),
        b":",
        i.password.as_bytes(),
    ]);
    if a.is_session() {
        ha1 = a.hex(&[
            ha1.as_bytes(),
            b":",
            i.nonce.as_bytes(),
            b":",
            i.cnonce.as_bytes(),
        ]);
    }
    let r = i.request;
    let ha2 = match i.qop {
        Some(Qop::AuthInt) => {
            let body = a.hex(&[r.body]);
            a.hex(&[
                r.method.as_bytes(),
                b":",
                r.uri.as_bytes(),
                b":",
                body.as_bytes(),
            ])
        }
        _ => a.hex(&[r.method.as_bytes(), b":", r.uri.as_bytes()]),
    };
    match i.qop {
        Some(q) => a.hex(&[
            ha1.as_bytes(),
            b":",
            i.nonce.as_bytes(),
            b":",
            i.nc.as_bytes(),
            b":",
            i.cnonce.as_bytes(),
            b":",
            q.as_str().as_bytes(),
            b":",
            ha2.as_bytes(),
        ]),
        None => a.hex(&[
            ha1.as_bytes(),
            b":",
            i.nonce.as_bytes(),
            b":",
            ha2.as_bytes(),
        ]),
    }
}
