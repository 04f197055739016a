//! [`Challenge`]: a `WWW-Authenticate` / `Proxy-Authenticate` challenge, parsed and written.

use std::fmt;

use crate::sip::lex::{is_token_char, write_quoted};

use super::*;

/// A Digest challenge from `WWW-Authenticate` (401) or `Proxy-Authenticate` (407).
///
/// ```
/// use siprtmp_core::sip::{Algorithm, Challenge};
/// let c = Challenge::parse(concat!(
///     r#"Digest realm="atlanta.example.com", nonce="ea9c8e88df84f1cec4341ae6cbe5a359", "#,
///     r#"opaque="", algorithm=md5-sess, qop="auth,auth-int", stale=TRUE, x-ext="a\"b""#,
/// ))
/// .unwrap();
/// assert_eq!(c.realm, "atlanta.example.com");
/// assert_eq!(c.algorithm, Algorithm::Md5Sess);
/// assert_eq!(c.qop, vec!["auth", "auth-int"]);
/// assert!(c.stale);
/// assert_eq!(c.params, vec![("x-ext".to_string(), "a\"b".to_string())]);
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Challenge {
    /// Protection space; selects the credentials.
    pub realm: String,
    /// Server nonce.
    pub nonce: String,
    /// Opaque value to echo back, if the server sent one.
    pub opaque: Option<String>,
    /// Hash algorithm (MD5 when absent).
    pub algorithm: Algorithm,
    /// The qop options offered, as written (empty: RFC 2069 compatibility, no qop).
    pub qop: Vec<String>,
    /// `stale=true`: the previous nonce expired but the credentials were right.
    pub stale: bool,
    /// The `domain` parameter, unparsed.
    pub domain: Option<String>,
    /// Every other parameter, name as written, value unquoted, in order.
    pub params: Vec<(String, String)>,
}

impl Challenge {
    /// A challenge for a server to send: MD5 unless `algorithm` says otherwise, `qop="auth"`.
    pub fn new(realm: &str, nonce: &str, algorithm: Algorithm) -> Challenge {
        Challenge {
            realm: realm.into(),
            nonce: nonce.into(),
            opaque: None,
            algorithm,
            qop: vec!["auth".into()],
            stale: false,
            domain: None,
            params: Vec::new(),
        }
    }

    /// Parses one challenge (the whole value of one header line).
    pub fn parse(value: &str) -> Result<Challenge, DigestError> {
        let raw = parse_auth_params(value)?;
        check_unique(
            &raw,
            &[
                "realm",
                "nonce",
                "opaque",
                "algorithm",
                "qop",
                "stale",
                "domain",
            ],
        )?;
        let (mut realm, mut nonce) = (None, None);
        let mut c = Challenge::new("", "", Algorithm::Md5);
        c.qop.clear();
        for RawParam { name, value } in raw {
            match name.to_ascii_lowercase().as_str() {
                "realm" => realm = Some(value),
                "nonce" => nonce = Some(value),
                "opaque" => c.opaque = Some(value),
                "domain" => c.domain = Some(value),
                "stale" => c.stale = value.eq_ignore_ascii_case("true"),
                "algorithm" => {
                    c.algorithm =
                        Algorithm::parse(&value).ok_or(DigestError::UnsupportedAlgorithm(value))?;
                }
                "qop" => {
                    c.qop = value
                        .split(',')
                        .map(str::trim)
                        .filter(|t| !t.is_empty())
                        .map(str::to_string)
                        .collect();
                }
                _ => c.params.push((name.to_string(), value)),
            }
        }
        c.realm = realm.ok_or(DigestError::MissingParam("realm"))?;
        c.nonce = nonce.ok_or(DigestError::MissingParam("nonce"))?;
        Ok(c)
    }

    /// The qop a client should answer with: `auth` if offered, else `auth-int`, `None` for
    /// a challenge without qop (RFC 2069 style).
    pub fn chosen_qop(&self) -> Result<Option<Qop>, DigestError> {
        if self.qop.is_empty() {
            return Ok(None);
        }
        let offered: Vec<Qop> = self.qop.iter().filter_map(|t| Qop::parse(t)).collect();
        if offered.contains(&Qop::Auth) {
            Ok(Some(Qop::Auth))
        } else if offered.contains(&Qop::AuthInt) {
            Ok(Some(Qop::AuthInt))
        } else {
            Err(DigestError::UnsupportedQop)
        }
    }
}

impl fmt::Display for Challenge {
    /// The header value: `Digest realm="..", nonce="..", ...`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut s = String::from("Digest ");
        push_quoted_param(&mut s, "realm", &self.realm);
        push_quoted_param(&mut s, "nonce", &self.nonce);
        if let Some(o) = &self.opaque {
            push_quoted_param(&mut s, "opaque", o);
        }
        if let Some(d) = &self.domain {
            push_quoted_param(&mut s, "domain", d);
        }
        push_token_param(&mut s, "algorithm", self.algorithm.as_str());
        if !self.qop.is_empty() {
            push_quoted_param(&mut s, "qop", &self.qop.join(","));
        }
        if self.stale {
            push_token_param(&mut s, "stale", "TRUE");
        }
        for (n, v) in &self.params {
            push_quoted_param(&mut s, n, v);
        }
        f.write_str(&s)
    }
}

pub(super) fn push_sep(s: &mut String) {
    if !s.ends_with(' ') {
        s.push_str(", ");
    }
}

pub(super) fn push_quoted_param(s: &mut String, name: &str, value: &str) {
    push_sep(s);
    s.push_str(name);
    s.push('=');
    write_quoted(s, value);
}

pub(super) fn push_token_param(s: &mut String, name: &str, value: &str) {
    push_sep(s);
    s.push_str(name);
    s.push('=');
    // Token values come from this module (algorithm, qop, nc) and are always tokens; the
    // filter only guards against a caller smuggling a separator through.
    s.extend(
        value
            .chars()
            .filter(|c| c.is_ascii() && is_token_char(*c as u8)),
    );
}
