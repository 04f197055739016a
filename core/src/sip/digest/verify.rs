//! The server side: [`verify`] an `Authorization` against a password (the tests' registrars
//! use it; the gateway only ever answers challenges).

use super::*;

/// Server side: true if `authorization` carries the right `response` for `method`, its own
/// `uri` and `password`, with an empty body (see [`verify_with_body`] for `auth-int`).
///
/// The caller still has to check that the nonce is one it issued and is fresh, that the
/// realm is its own, that `uri` matches the Request-URI, and that `nc` grows (replay).
pub fn verify(authorization: &Authorization, method: &crate::sip::Method, password: &str) -> bool {
    verify_with_body(authorization, method, password, b"")
}

/// [`verify`] for a request with a body (only `qop=auth-int` covers it).
pub fn verify_with_body(
    authorization: &Authorization,
    method: &crate::sip::Method,
    password: &str,
    body: &[u8],
) -> bool {
    let a = authorization;
    let nc = a.nc.map(|n| format!("{n:08x}")).unwrap_or_default();
    let expected = compute_response(&ResponseInputs {
        algorithm: a.algorithm,
        username: &a.username,
        realm: &a.realm,
        password,
        nonce: &a.nonce,
        cnonce: a.cnonce.as_deref().unwrap_or(""),
        nc: &nc,
        qop: a.qop,
        request: DigestRequest {
            method: method.as_str(),
            uri: &a.uri,
            body,
        },
    });
    // Compare without an early exit so that timing does not reveal the matching prefix.
    let got = a.response.as_bytes();
    let want = expected.as_bytes();
    got.len() == want.len()
        && got
            .iter()
            .zip(want)
            .fold(0u8, |acc, (g, w)| acc | (g.to_ascii_lowercase() ^ w))
            == 0
}
