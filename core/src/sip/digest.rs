//! HTTP Digest authentication as SIP uses it (RFC 3261 section 22, RFC 2617, RFC 7616,
//! RFC 8760): parsing `WWW-Authenticate` / `Proxy-Authenticate` challenges, computing and
//! parsing `Authorization` / `Proxy-Authorization` credentials, verifying them on the server
//! side, and the [`DigestClient`] that decides what a UAC does with a 401 or 407.
//!
//! Everything here is pure: cnonces come from the caller's [`SeededRng`], and nonce
//! freshness (which needs a clock) is the registrar's business, not [`verify`]'s.
//!
//! Not supported: `userhash`, `username*` (RFC 7616 3.4.4), SHA-512-256 and the
//! `Authentication-Info` header; a challenge asking for them is reported as unsupported.

use std::fmt;

use md5::{Digest as _, Md5};
use sha2::Sha256;

use super::headers::Header;
use super::lex::{is_token_char, is_ws, scan_quoted, scan_token, skip_ws, unquote, write_quoted};
use super::message::{Request, Response};
use crate::rng::SeededRng;

/// At most this many auth-params in one header value; real ones carry fewer than a dozen.
const MAX_PARAMS: usize = 32;
/// A client keeps state for at most this many (header kind, realm) pairs.
const MAX_SESSIONS: usize = 8;
/// How many `stale=true` challenges in a row a client follows before it gives up.
const MAX_STALE_RETRIES: u8 = 3;

/// Why a challenge or credentials header could not be used.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DigestError {
    /// The scheme is not `Digest` (`Basic`, `Bearer`, ...): SIP forbids Basic (RFC 3261 22.1).
    NotDigest,
    /// The value does not match the auth-param grammar.
    Malformed(&'static str),
    /// A parameter the scheme requires (`realm`, `nonce`, `response` ...) is absent.
    MissingParam(&'static str),
    /// A parameter appears twice.
    DuplicateParam(String),
    /// An `algorithm` other than MD5, MD5-sess, SHA-256, SHA-256-sess.
    UnsupportedAlgorithm(String),
    /// A `qop` list offering neither `auth` nor `auth-int`, or an unknown `qop` answer.
    UnsupportedQop,
}

impl fmt::Display for DigestError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DigestError::NotDigest => write!(f, "authentication scheme is not Digest"),
            DigestError::Malformed(why) => write!(f, "malformed Digest header: {why}"),
            DigestError::MissingParam(p) => write!(f, "Digest header lacks {p}"),
            DigestError::DuplicateParam(p) => write!(f, "Digest parameter {p} appears twice"),
            DigestError::UnsupportedAlgorithm(a) => write!(f, "unsupported Digest algorithm {a}"),
            DigestError::UnsupportedQop => write!(f, "no supported qop (auth, auth-int)"),
        }
    }
}

impl std::error::Error for DigestError {}

/// A Digest hash algorithm. Names compare case-insensitively on the wire.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum Algorithm {
    /// `MD5` (the default when a challenge names none).
    #[default]
    Md5,
    /// `MD5-sess`: HA1 also covers the nonce and cnonce.
    Md5Sess,
    /// `SHA-256` (RFC 7616, RFC 8760).
    Sha256,
    /// `SHA-256-sess`.
    Sha256Sess,
}

impl Algorithm {
    /// Parses an algorithm token, case-insensitively.
    pub fn parse(token: &str) -> Option<Algorithm> {
        [
            Algorithm::Md5,
            Algorithm::Md5Sess,
            Algorithm::Sha256,
            Algorithm::Sha256Sess,
        ]
        .into_iter()
        .find(|a| a.as_str().eq_ignore_ascii_case(token))
    }

    /// The canonical token (`MD5`, `MD5-sess`, `SHA-256`, `SHA-256-sess`).
    pub fn as_str(self) -> &'static str {
        match self {
            Algorithm::Md5 => "MD5",
            Algorithm::Md5Sess => "MD5-sess",
            Algorithm::Sha256 => "SHA-256",
            Algorithm::Sha256Sess => "SHA-256-sess",
        }
    }

    /// True for the `-sess` variants.
    pub fn is_session(self) -> bool {
        matches!(self, Algorithm::Md5Sess | Algorithm::Sha256Sess)
    }

    /// Lower-case hex digest of the concatenation of `parts`.
    fn hex(self, parts: &[&[u8]]) -> String {
        match self {
            Algorithm::Md5 | Algorithm::Md5Sess => {
                let mut h = Md5::new();
                parts.iter().for_each(|p| h.update(p));
                to_hex(&h.finalize())
            }
            Algorithm::Sha256 | Algorithm::Sha256Sess => {
                let mut h = Sha256::new();
                parts.iter().for_each(|p| h.update(p));
                to_hex(&h.finalize())
            }
        }
    }
}

impl fmt::Display for Algorithm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

fn to_hex(bytes: &[u8]) -> String {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        s.push(HEX[usize::from(b >> 4)] as char);
        s.push(HEX[usize::from(b & 15)] as char);
    }
    s
}

/// Quality of protection of one answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Qop {
    /// `auth`: authenticates method and URI.
    Auth,
    /// `auth-int`: also covers the message body.
    AuthInt,
}

impl Qop {
    /// Parses `auth` / `auth-int`, case-insensitively.
    pub fn parse(token: &str) -> Option<Qop> {
        if token.eq_ignore_ascii_case("auth") {
            Some(Qop::Auth)
        } else if token.eq_ignore_ascii_case("auth-int") {
            Some(Qop::AuthInt)
        } else {
            None
        }
    }

    /// The token.
    pub fn as_str(self) -> &'static str {
        match self {
            Qop::Auth => "auth",
            Qop::AuthInt => "auth-int",
        }
    }
}

/// One `name=value` auth-param with its value unquoted.
struct RawParam<'a> {
    name: &'a str,
    value: String,
}

/// Splits `Digest a=b, c="d"` into its params. Hostile input gets an error, never a panic;
/// the parameter count is capped at [`MAX_PARAMS`].
fn parse_auth_params(value: &str) -> Result<Vec<RawParam<'_>>, DigestError> {
    let s = value.trim();
    let b = s.as_bytes();
    let scheme_end = scan_token(b, 0);
    if scheme_end == 0 {
        return Err(DigestError::Malformed("missing auth scheme"));
    }
    if !s[..scheme_end].eq_ignore_ascii_case("Digest") {
        return Err(DigestError::NotDigest);
    }
    if scheme_end < b.len() && !is_ws(b[scheme_end]) {
        return Err(DigestError::Malformed("no whitespace after scheme"));
    }
    let mut out = Vec::new();
    let mut i = skip_ws(b, scheme_end);
    loop {
        // Empty list elements (`a=1,,b=2`) are allowed by the #rule.
        while i < b.len() && (b[i] == b',' || is_ws(b[i])) {
            i += 1;
        }
        if i >= b.len() {
            break;
        }
        if out.len() == MAX_PARAMS {
            return Err(DigestError::Malformed("too many parameters"));
        }
        let name_end = scan_token(b, i);
        if name_end == i {
            return Err(DigestError::Malformed("expected a parameter name"));
        }
        let name = &s[i..name_end];
        i = skip_ws(b, name_end);
        if b.get(i) != Some(&b'=') {
            return Err(DigestError::Malformed("parameter without '='"));
        }
        i = skip_ws(b, i + 1);
        let value = if b.get(i) == Some(&b'"') {
            let end = scan_quoted(b, i).map_err(DigestError::Malformed)?;
            let v = unquote(&s[i..end]);
            i = end;
            v
        } else {
            // A token, but servers in the field also send unquoted nonces with `/` or `=`:
            // accept any visible ASCII up to the next comma or space.
            let start = i;
            while i < b.len() && b[i] > b' ' && b[i] < 0x7f && b[i] != b',' && b[i] != b'"' {
                i += 1;
            }
            if i == start {
                return Err(DigestError::Malformed("empty parameter value"));
            }
            s[start..i].to_string()
        };
        out.push(RawParam { name, value });
        i = skip_ws(b, i);
        if i < b.len() && b[i] != b',' {
            return Err(DigestError::Malformed("expected ',' between parameters"));
        }
    }
    Ok(out)
}

/// Fails if a known parameter repeats: a repeated `nonce` or `realm` would be ambiguous.
fn check_unique(params: &[RawParam<'_>], known: &[&str]) -> Result<(), DigestError> {
    for (n, p) in params.iter().enumerate() {
        if known.iter().any(|k| k.eq_ignore_ascii_case(p.name))
            && params[..n]
                .iter()
                .any(|q| q.name.eq_ignore_ascii_case(p.name))
        {
            return Err(DigestError::DuplicateParam(p.name.to_ascii_lowercase()));
        }
    }
    Ok(())
}

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

fn push_sep(s: &mut String) {
    if !s.ends_with(' ') {
        s.push_str(", ");
    }
}

fn push_quoted_param(s: &mut String, name: &str, value: &str) {
    push_sep(s);
    s.push_str(name);
    s.push('=');
    write_quoted(s, value);
}

fn push_token_param(s: &mut String, name: &str, value: &str) {
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

/// A username and password, optionally bound to one realm.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Credentials {
    /// Username (the `username` parameter).
    pub username: String,
    /// Password (never sent).
    pub password: String,
    /// The realm these credentials are for; `None` answers any realm.
    pub realm: Option<String>,
}

impl Credentials {
    /// Credentials for any realm.
    pub fn new(username: &str, password: &str) -> Credentials {
        Credentials {
            username: username.into(),
            password: password.into(),
            realm: None,
        }
    }

    /// Restricts the credentials to `realm`.
    pub fn for_realm(mut self, realm: &str) -> Credentials {
        self.realm = Some(realm.into());
        self
    }
}

/// The credentials a UA knows, answering per realm.
///
/// ```
/// use siprtmp_core::sip::{CredentialStore, Credentials};
/// let mut store = CredentialStore::new();
/// store.add(Credentials::new("alice", "any"));
/// store.add(Credentials::new("alice-proxy", "secret").for_realm("proxy.example.com"));
/// assert_eq!(store.lookup("proxy.example.com").unwrap().username, "alice-proxy");
/// assert_eq!(store.lookup("elsewhere").unwrap().username, "alice");
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CredentialStore {
    entries: Vec<Credentials>,
}

impl CredentialStore {
    /// An empty store.
    pub fn new() -> CredentialStore {
        CredentialStore::default()
    }

    /// Adds credentials; an entry for the same realm (or the same wildcard) is replaced.
    pub fn add(&mut self, creds: Credentials) {
        self.entries.retain(|c| c.realm != creds.realm);
        self.entries.push(creds);
    }

    /// The credentials for `realm`: an exact realm match first, else the wildcard entry.
    pub fn lookup(&self, realm: &str) -> Option<&Credentials> {
        self.entries
            .iter()
            .find(|c| c.realm.as_deref() == Some(realm))
            .or_else(|| self.entries.iter().find(|c| c.realm.is_none()))
    }
}

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
struct ResponseInputs<'a> {
    algorithm: Algorithm,
    username: &'a str,
    realm: &'a str,
    password: &'a str,
    nonce: &'a str,
    cnonce: &'a str,
    nc: &'a str,
    qop: Option<Qop>,
    request: DigestRequest<'a>,
}

/// RFC 2617 3.2.2.1 / RFC 7616 3.4.1 request-digest.
fn compute_response(i: &ResponseInputs<'_>) -> String {
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

/// Digest credentials: the value of `Authorization` / `Proxy-Authorization`.
///
/// ```
/// use siprtmp_core::sip::{digest, Authorization, Challenge, Credentials, DigestRequest, Method};
/// let challenge = Challenge::parse(
///     r#"Digest realm="biloxi.com", nonce="dcd98b7102dd2f0e8b11d0f600bfb0c093", qop="auth""#,
/// )
/// .unwrap();
/// let request = DigestRequest { method: "REGISTER", uri: "sip:registrar.biloxi.com", body: b"" };
/// let auth = Authorization::answer(
///     &challenge,
///     &Credentials::new("bob", "zanzibar"),
///     &request,
///     "0a4f113b",
///     1,
/// )
/// .unwrap();
/// let value = auth.to_string();
/// assert!(value.starts_with(r#"Digest username="bob", realm="biloxi.com""#));
/// assert!(value.contains("qop=auth, nc=00000001"));
/// // The registrar's side.
/// let received = Authorization::parse(&value).unwrap();
/// assert!(digest::verify(&received, &Method::Register, "zanzibar"));
/// assert!(!digest::verify(&received, &Method::Register, "wrong"));
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Authorization {
    /// Username.
    pub username: String,
    /// Realm of the challenge answered.
    pub realm: String,
    /// Nonce of the challenge answered.
    pub nonce: String,
    /// digest-uri (the Request-URI).
    pub uri: String,
    /// request-digest, lower-case hex.
    pub response: String,
    /// Algorithm used.
    pub algorithm: Algorithm,
    /// Client nonce (with qop).
    pub cnonce: Option<String>,
    /// Echo of the challenge's opaque.
    pub opaque: Option<String>,
    /// qop used (`None`: RFC 2069 style).
    pub qop: Option<Qop>,
    /// Nonce count (with qop).
    pub nc: Option<u32>,
    /// Every other parameter, name as written, value unquoted.
    pub params: Vec<(String, String)>,
}

impl Authorization {
    /// Answers `challenge` for `request` with `creds`, `cnonce` and nonce count `nc`.
    pub fn answer(
        challenge: &Challenge,
        creds: &Credentials,
        request: &DigestRequest<'_>,
        cnonce: &str,
        nc: u32,
    ) -> Result<Authorization, DigestError> {
        let qop = challenge.chosen_qop()?;
        let nc_text = format!("{nc:08x}");
        let response = compute_response(&ResponseInputs {
            algorithm: challenge.algorithm,
            username: &creds.username,
            realm: &challenge.realm,
            password: &creds.password,
            nonce: &challenge.nonce,
            cnonce,
            nc: &nc_text,
            qop,
            request: *request,
        });
        Ok(Authorization {
            username: creds.username.clone(),
            realm: challenge.realm.clone(),
            nonce: challenge.nonce.clone(),
            uri: request.uri.to_string(),
            response,
            algorithm: challenge.algorithm,
            // -sess needs the cnonce even without qop; plain RFC 2069 answers carry none.
            cnonce: (qop.is_some() || challenge.algorithm.is_session()).then(|| cnonce.into()),
            opaque: challenge.opaque.clone(),
            qop,
            nc: qop.map(|_| nc),
            params: Vec::new(),
        })
    }

    /// Parses a received `Authorization` / `Proxy-Authorization` value.
    pub fn parse(value: &str) -> Result<Authorization, DigestError> {
        let raw = parse_auth_params(value)?;
        check_unique(
            &raw,
            &[
                "username",
                "realm",
                "nonce",
                "uri",
                "response",
                "algorithm",
                "cnonce",
                "opaque",
                "qop",
                "nc",
            ],
        )?;
        let mut a = Authorization {
            username: String::new(),
            realm: String::new(),
            nonce: String::new(),
            uri: String::new(),
            response: String::new(),
            algorithm: Algorithm::Md5,
            cnonce: None,
            opaque: None,
            qop: None,
            nc: None,
            params: Vec::new(),
        };
        let mut seen = [false; 5];
        for RawParam { name, value } in raw {
            let lower = name.to_ascii_lowercase();
            let slot = match lower.as_str() {
                "username" => 0,
                "realm" => 1,
                "nonce" => 2,
                "uri" => 3,
                "response" => 4,
                _ => 5,
            };
            match (slot, lower.as_str()) {
                (0, _) => a.username = value,
                (1, _) => a.realm = value,
                (2, _) => a.nonce = value,
                (3, _) => a.uri = value,
                (4, _) => a.response = value,
                (_, "algorithm") => {
                    a.algorithm =
                        Algorithm::parse(&value).ok_or(DigestError::UnsupportedAlgorithm(value))?;
                }
                (_, "cnonce") => a.cnonce = Some(value),
                (_, "opaque") => a.opaque = Some(value),
                (_, "qop") => a.qop = Some(Qop::parse(&value).ok_or(DigestError::UnsupportedQop)?),
                (_, "nc") => {
                    if value.len() != 8 || !value.bytes().all(|b| b.is_ascii_hexdigit()) {
                        return Err(DigestError::Malformed("nc is not 8 hex digits"));
                    }
                    a.nc = u32::from_str_radix(&value, 16).ok();
                }
                _ => a.params.push((name.to_string(), value)),
            }
            if let Some(flag) = seen.get_mut(slot) {
                *flag = true;
            }
        }
        for (n, name) in ["username", "realm", "nonce", "uri", "response"]
            .into_iter()
            .enumerate()
        {
            if !seen[n] {
                return Err(DigestError::MissingParam(name));
            }
        }
        if a.qop.is_some() && (a.cnonce.is_none() || a.nc.is_none()) {
            return Err(DigestError::MissingParam(
                "cnonce and nc (required with qop)",
            ));
        }
        Ok(a)
    }
}

impl fmt::Display for Authorization {
    /// The header value. RFC 7616 3.4: `algorithm`, `qop` and `nc` are tokens, the rest
    /// quoted strings.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut s = String::from("Digest ");
        push_quoted_param(&mut s, "username", &self.username);
        push_quoted_param(&mut s, "realm", &self.realm);
        push_quoted_param(&mut s, "nonce", &self.nonce);
        push_quoted_param(&mut s, "uri", &self.uri);
        push_quoted_param(&mut s, "response", &self.response);
        push_token_param(&mut s, "algorithm", self.algorithm.as_str());
        if let Some(c) = &self.cnonce {
            push_quoted_param(&mut s, "cnonce", c);
        }
        if let Some(o) = &self.opaque {
            push_quoted_param(&mut s, "opaque", o);
        }
        if let Some(q) = self.qop {
            push_token_param(&mut s, "qop", q.as_str());
        }
        if let Some(nc) = self.nc {
            push_token_param(&mut s, "nc", &format!("{nc:08x}"));
        }
        for (n, v) in &self.params {
            push_quoted_param(&mut s, n, v);
        }
        f.write_str(&s)
    }
}

/// Server side: true if `authorization` carries the right `response` for `method`, its own
/// `uri` and `password`, with an empty body (see [`verify_with_body`] for `auth-int`).
///
/// The caller still has to check that the nonce is one it issued and is fresh, that the
/// realm is its own, that `uri` matches the Request-URI, and that `nc` grows (replay).
pub fn verify(authorization: &Authorization, method: &super::Method, password: &str) -> bool {
    verify_with_body(authorization, method, password, b"")
}

/// [`verify`] for a request with a body (only `qop=auth-int` covers it).
pub fn verify_with_body(
    authorization: &Authorization,
    method: &super::Method,
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

/// Which pair of headers a challenge came in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ChallengeKind {
    /// 401 with `WWW-Authenticate`, answered by `Authorization`.
    Www,
    /// 407 with `Proxy-Authenticate`, answered by `Proxy-Authorization`.
    Proxy,
}

impl ChallengeKind {
    /// The kind a status code asks for (401 or 407).
    pub fn for_status(status: u16) -> Option<ChallengeKind> {
        match status {
            401 => Some(ChallengeKind::Www),
            407 => Some(ChallengeKind::Proxy),
            _ => None,
        }
    }

    /// `WWW-Authenticate` or `Proxy-Authenticate`.
    pub fn challenge_header(self) -> &'static str {
        match self {
            ChallengeKind::Www => "WWW-Authenticate",
            ChallengeKind::Proxy => "Proxy-Authenticate",
        }
    }

    /// `Authorization` or `Proxy-Authorization`.
    pub fn credentials_header(self) -> &'static str {
        match self {
            ChallengeKind::Www => "Authorization",
            ChallengeKind::Proxy => "Proxy-Authorization",
        }
    }
}

/// Why a [`DigestClient`] gave up.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AuthFailure {
    /// A 401/407 without any Digest challenge this client can answer.
    NoUsableChallenge,
    /// No credentials for this realm.
    NoCredentials {
        /// The realm asked for.
        realm: String,
    },
    /// The server challenged again after we answered, without `stale=true`: wrong
    /// username or password.
    Rejected {
        /// The realm that rejected us.
        realm: String,
    },
    /// The server keeps saying `stale=true`.
    TooManyStale {
        /// The realm.
        realm: String,
    },
}

/// What to do with a response, from [`DigestClient::on_response`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AuthAction {
    /// Not a 401/407: nothing to do (a final response also ends the retry cycle).
    None,
    /// Send the request again (same Call-ID and From tag, new CSeq and Via branch) with
    /// these headers replacing any earlier `Authorization` / `Proxy-Authorization`.
    Retry(Vec<Header>),
    /// Stop: the request cannot be authorized.
    GiveUp(AuthFailure),
}

/// Per (kind, realm) state: the last challenge and how far we are with its nonce.
#[derive(Debug, Clone)]
struct Session {
    kind: ChallengeKind,
    challenge: Challenge,
    cnonce: String,
    /// Nonce count of the last answer sent with this nonce.
    nc: u32,
    /// We answered a challenge and have not seen a non-challenge final response since.
    answered: bool,
    stale_retries: u8,
}

/// The UAC side of Digest: answers 401/407, remembers each realm's nonce for reuse with
/// increasing `nc` (RFC 7616 3.4), and decides when to give up.
///
/// One client serves one sequence of related requests (a registration, or one call); the
/// [`CredentialStore`] can be shared by cloning it.
///
/// ```
/// use siprtmp_core::rng::SeededRng;
/// use siprtmp_core::sip::{
///     digest, parse_datagram, AuthAction, Authorization, Challenge, CredentialStore,
///     Credentials, DigestClient, SipMessage,
/// };
/// let mut rng = SeededRng::new(1);
/// let mut store = CredentialStore::new();
/// store.add(Credentials::new("bob", "zanzibar"));
/// let mut client = DigestClient::new(store);
/// let SipMessage::Request(register) = parse_datagram(
///     b"REGISTER sip:registrar.biloxi.com SIP/2.0\r\n\
///       Via: SIP/2.0/UDP bobspc.biloxi.com:5060;branch=z9hG4bKnashds7\r\n\
///       To: Bob <sip:bob@biloxi.com>\r\nFrom: Bob <sip:bob@biloxi.com>;tag=456248\r\n\
///       Call-ID: 843817637684230@998sdasdh09\r\nCSeq: 1826 REGISTER\r\n\r\n",
/// ).unwrap() else { unreachable!() };
/// let mut challenge = SipMessage::response(401, "Unauthorized");
/// challenge.headers_mut().push(
///     "WWW-Authenticate",
///     &Challenge::new("biloxi.com", "n0nce", digest::Algorithm::Md5).to_string(),
/// );
/// let SipMessage::Response(challenge) = challenge else { unreachable!() };
/// let AuthAction::Retry(headers) = client.on_response(&register, &challenge, &mut rng) else {
///     panic!("expected a retry")
/// };
/// assert_eq!(headers[0].name, "Authorization");
/// let auth = Authorization::parse(&headers[0].value).unwrap();
/// assert!(digest::verify(&auth, &register.method, "zanzibar"));
/// // The same challenge again means the password is wrong.
/// assert!(matches!(
///     client.on_response(&register, &challenge, &mut rng),
///     AuthAction::GiveUp(_)
/// ));
/// ```
#[derive(Debug, Clone)]
pub struct DigestClient {
    store: CredentialStore,
    sessions: Vec<Session>,
}

impl DigestClient {
    /// A client answering with `store`.
    pub fn new(store: CredentialStore) -> DigestClient {
        DigestClient {
            store,
            sessions: Vec::new(),
        }
    }

    /// The credential store.
    pub fn store(&self) -> &CredentialStore {
        &self.store
    }

    /// Feeds the response to `request`. On 401/407 the challenges are checked against what
    /// was already tried: the first challenge is answered; a second one for a realm we
    /// answered means wrong credentials unless it says `stale=true`, in which case the new
    /// nonce is used. Any other final response ends the cycle (the next challenge is
    /// answered afresh); provisional responses change nothing.
    pub fn on_response(
        &mut self,
        request: &Request,
        response: &Response,
        rng: &mut SeededRng,
    ) -> AuthAction {
        let Some(kind) = ChallengeKind::for_status(response.status) else {
            if response.status >= 200 {
                for s in &mut self.sessions {
                    s.answered = false;
                    s.stale_retries = 0;
                }
            }
            return AuthAction::None;
        };
        // The first usable challenge per realm, in the server's order of preference
        // (RFC 7616 3.7): unsupported algorithms are skipped, not fatal.
        let mut chosen: Vec<Challenge> = Vec::new();
        for value in response.headers.get_all(kind.challenge_header()) {
            if let Ok(c) = Challenge::parse(value) {
                if c.chosen_qop().is_ok() && !chosen.iter().any(|o| o.realm == c.realm) {
                    chosen.push(c);
                }
            }
        }
        if chosen.is_empty() {
            return AuthAction::GiveUp(AuthFailure::NoUsableChallenge);
        }
        for c in chosen {
            if self.store.lookup(&c.realm).is_none() {
                return AuthAction::GiveUp(AuthFailure::NoCredentials { realm: c.realm });
            }
            let pos = self
                .sessions
                .iter()
                .position(|s| s.kind == kind && s.challenge.realm == c.realm);
            match pos {
                Some(p) => {
                    let s = &mut self.sessions[p];
                    if s.answered {
                        if !c.stale {
                            return AuthAction::GiveUp(AuthFailure::Rejected { realm: c.realm });
                        }
                        if s.stale_retries >= MAX_STALE_RETRIES {
                            return AuthAction::GiveUp(AuthFailure::TooManyStale {
                                realm: c.realm,
                            });
                        }
                        s.stale_retries += 1;
                    }
                    s.answered = true;
                    s.challenge = c;
                    s.cnonce = rng.token(16);
                    s.nc = 0;
                }
                None => {
                    if self.sessions.len() == MAX_SESSIONS {
                        // Forget the oldest realm rather than grow without bound.
                        self.sessions.remove(0);
                    }
                    self.sessions.push(Session {
                        kind,
                        challenge: c,
                        cnonce: rng.token(16),
                        nc: 0,
                        answered: true,
                        stale_retries: 0,
                    });
                }
            }
        }
        AuthAction::Retry(self.credentials_for(request))
    }

    /// Credentials headers for `request` for every realm with a known nonce, each with the
    /// next nonce count (empty before the first challenge).
    pub fn credentials_for(&mut self, request: &Request) -> Vec<Header> {
        let uri = request.uri.to_string();
        let target = DigestRequest {
            method: request.method.as_str(),
            uri: &uri,
            body: &request.body,
        };
        let mut out = Vec::with_capacity(self.sessions.len());
        for s in &mut self.sessions {
            let Some(creds) = self.store.lookup(&s.challenge.realm) else {
                continue;
            };
            s.nc = s.nc.wrapping_add(1);
            if let Ok(a) = Authorization::answer(&s.challenge, creds, &target, &s.cnonce, s.nc) {
                out.push(Header {
                    name: s.kind.credentials_header().to_string(),
                    value: a.to_string(),
                });
            }
        }
        out
    }

    /// Replaces `request`'s `Authorization` / `Proxy-Authorization` headers with fresh
    /// ones from [`DigestClient::credentials_for`] (for a retry or a later request that
    /// reuses the nonce).
    pub fn authorize(&mut self, request: &mut Request) {
        let headers = self.credentials_for(request);
        apply_credentials(request, headers);
    }
}

/// Replaces the credentials headers of `request` with `headers` (from
/// [`AuthAction::Retry`] or [`DigestClient::credentials_for`]).
pub fn apply_credentials(request: &mut Request, headers: Vec<Header>) {
    request.raw = None;
    request.headers.remove("Authorization");
    request.headers.remove("Proxy-Authorization");
    for h in headers {
        request.headers.push_owned(h.name, h.value);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sip::{parse_datagram, Method, SipMessage};

    fn answer(
        challenge: &str,
        user: &str,
        pw: &str,
        method: &str,
        uri: &str,
        cnonce: &str,
    ) -> Authorization {
        // The header parser unfolds line breaks into spaces before values reach us.
        let c = Challenge::parse(&challenge.replace('\n', " ")).unwrap();
        let req = DigestRequest {
            method,
            uri,
            body: b"",
        };
        Authorization::answer(&c, &Credentials::new(user, pw), &req, cnonce, 1).unwrap()
    }

    #[test]
    fn rfc2617_section_3_5_example() {
        let a = answer(
            r#"Digest
                 realm="testrealm@host.com",
                 qop="auth,auth-int",
                 nonce="dcd98b7102dd2f0e8b11d0f600bfb0c093",
                 opaque="5ccc069c403ebaf9f0171e9517f40e41""#,
            "Mufasa",
            "Circle Of Life",
            "GET",
            "/dir/index.html",
            "0a4f113b",
        );
        assert_eq!(a.response, "6629fae49393a05397450978507c4ef1");
        assert_eq!(a.qop, Some(Qop::Auth));
        assert_eq!(
            a.opaque.as_deref(),
            Some("5ccc069c403ebaf9f0171e9517f40e41")
        );
        let v = a.to_string();
        assert!(v.contains(r#"cnonce="0a4f113b""#), "{v}");
        assert!(v.contains("nc=00000001"), "{v}");
        // And it verifies as the server.
        assert!(verify(
            &Authorization::parse(&v).unwrap(),
            &Method::from_token("GET"),
            "Circle Of Life"
        ));
    }

    const RFC7616_CHALLENGE: &str = r#"Digest
        realm="http-auth@example.org",
        qop="auth, auth-int",
        algorithm=ALG,
        nonce="7ypf/xlj9XXwfDPEoM4URrv/xwf94BcCAzFZH4GiTo0v",
        opaque="FQhe/qaU925kfnzjCev0ciny7QMkPqMAFRtzCUYo5tdS""#;

    #[test]
    fn rfc7616_section_3_9_1_md5_and_sha256() {
        for (alg, expected) in [
            ("MD5", "8ca523f5e9506fed4657c9700eebdbec"),
            (
                "SHA-256",
                "753927fa0e85d155564e2e272a28d1802ca10daf4496794697cf8db5856cb6c1",
            ),
        ] {
            let a = answer(
                &RFC7616_CHALLENGE.replace("ALG", alg),
                "Mufasa",
                "Circle of Life",
                "GET",
                "/dir/index.html",
                "f2/wE4q74E6zIJEtWaHKaf5wv/H5QzzpXusqGemxURZJ",
            );
            assert_eq!(a.response, expected, "{alg}");
            assert_eq!(a.algorithm.as_str(), alg);
            let parsed = Authorization::parse(&a.to_string()).unwrap();
            assert_eq!(parsed, a);
        }
    }

    #[test]
    fn session_variants_and_no_qop_match_independent_computation() {
        // Expected values computed independently with Python's hashlib:
        //   H = lambda s, a: hashlib.new(a, s.encode()).hexdigest()
        //   ha1 = H(H("alice:atlanta.example.com:zanzibar", a) + ":" + nonce + ":0a4f113b", a)
        //   ha2 = H("REGISTER:sip:atlanta.example.com", a)
        //   H(f"{ha1}:{nonce}:00000002:0a4f113b:auth:{ha2}", a)   # a = "md5" / "sha256"
        // and likewise for the no-qop (H(ha1:nonce:ha2)) and auth-int (HA2 over
        // method:uri:H(body)) cases below.
        let sess = |alg: &str| {
            let c = Challenge::parse(&format!(
                r#"Digest realm="atlanta.example.com", nonce="ea9c8e88df84f1cec4341ae6cbe5a359", algorithm={alg}, qop="auth""#
            ))
            .unwrap();
            let req = DigestRequest {
                method: "REGISTER",
                uri: "sip:atlanta.example.com",
                body: b"",
            };
            Authorization::answer(
                &c,
                &Credentials::new("alice", "zanzibar"),
                &req,
                "0a4f113b",
                2,
            )
            .unwrap()
        };
        let a = sess("MD5-sess");
        assert_eq!(a.response, "83592776de5d8dff57e13ba4d8c0a579");
        assert!(verify(&a, &Method::Register, "zanzibar"));
        let a = sess("SHA-256-sess");
        assert_eq!(
            a.response,
            "a782a83f44c1516e70b801aade0641c031eb6661e4dd75dd8ab23988ae87d31b"
        );
        assert!(verify(&a, &Method::Register, "zanzibar"));

        // RFC 2069 style: no qop, no cnonce, no nc.
        let a = answer(
            r#"Digest realm="biloxi.example.com", nonce="dc3a5ab2530aa93112cf5904ba7d88fa""#,
            "bob",
            "zanzibar",
            "INVITE",
            "sip:bob@biloxi.example.com",
            "unused",
        );
        assert_eq!(a.response, "ee7728154dd5e26d09efec59fcc20d29");
        assert_eq!((a.cnonce.as_deref(), a.nc, a.qop), (None, None, None));
        assert!(!a.to_string().contains("nc="));

        // auth-int covers the body.
        let c = Challenge::parse(
            r#"Digest realm="biloxi.example.com", nonce="dc3a5ab2530aa93112cf5904ba7d88fa", qop="auth-int""#,
        )
        .unwrap();
        let req = DigestRequest {
            method: "INVITE",
            uri: "sip:bob@biloxi.example.com",
            body: b"v=0\r\n",
        };
        let a = Authorization::answer(
            &c,
            &Credentials::new("bob", "zanzibar"),
            &req,
            "0a4f113b",
            1,
        )
        .unwrap();
        assert_eq!(a.response, "65f0f13c30207685b17ccbdc54902464");
        assert!(verify_with_body(
            &a,
            &Method::Invite,
            "zanzibar",
            b"v=0\r\n"
        ));
        assert!(!verify_with_body(
            &a,
            &Method::Invite,
            "zanzibar",
            b"v=1\r\n"
        ));
    }

    #[test]
    fn challenge_parsing_details() {
        let c = Challenge::parse(
            "DIGEST REALM = \"a \\\"quoted\\\" realm\" ,NONCE=abc/def=, Stale=true,,algorithm=\"SHA-256\", foo=bar",
        )
        .unwrap();
        assert_eq!(c.realm, r#"a "quoted" realm"#);
        assert_eq!(c.nonce, "abc/def=");
        assert!(c.stale);
        assert_eq!(c.algorithm, Algorithm::Sha256);
        assert!(c.qop.is_empty());
        assert_eq!(c.params, vec![("foo".into(), "bar".into())]);
        // Round trip through Display.
        assert_eq!(
            Challenge::parse(&c.to_string()).unwrap(),
            Challenge {
                params: vec![("foo".into(), "bar".into())],
                ..c
            }
        );

        assert_eq!(
            Challenge::parse(r#"Basic realm="x""#),
            Err(DigestError::NotDigest)
        );
        assert_eq!(
            Challenge::parse(r#"Digest nonce="x""#),
            Err(DigestError::MissingParam("realm"))
        );
        assert_eq!(
            Challenge::parse(r#"Digest realm="x", nonce="1", nonce="2""#),
            Err(DigestError::DuplicateParam("nonce".into()))
        );
        assert_eq!(
            Challenge::parse(r#"Digest realm="x", nonce="1", algorithm=SHA-512-256"#),
            Err(DigestError::UnsupportedAlgorithm("SHA-512-256".into()))
        );
        for bad in [
            "",
            "Digest",
            r#"Digest realm"#,
            r#"Digest realm="open"#,
            r#"Digest realm="x" nonce="y""#,
            r#"Digest realm=, nonce=y"#,
            r#"Digestrealm="x""#,
        ] {
            assert!(Challenge::parse(bad).is_err(), "{bad:?}");
        }
        let c = Challenge::parse(r#"Digest realm="x", nonce="y", qop="auth-int""#).unwrap();
        assert_eq!(c.chosen_qop(), Ok(Some(Qop::AuthInt)));
        let c = Challenge::parse(r#"Digest realm="x", nonce="y", qop="auth-conf""#).unwrap();
        assert_eq!(c.chosen_qop(), Err(DigestError::UnsupportedQop));
    }

    #[test]
    fn authorization_parsing_rejects_incomplete() {
        assert_eq!(
            Authorization::parse(r#"Digest username="a", realm="b", nonce="c", uri="d""#),
            Err(DigestError::MissingParam("response"))
        );
        assert!(Authorization::parse(
            r#"Digest username="a", realm="b", nonce="c", uri="d", response="e", qop=auth"#
        )
        .is_err());
        assert!(Authorization::parse(
            r#"Digest username="a", realm="b", nonce="c", uri="d", response="e", qop=auth, cnonce="x", nc=1"#
        )
        .is_err());
        let a = Authorization::parse(
            r#"digest USERNAME="a", realm="b", nonce="c", uri="d", response="E", qop=auth, cnonce="x", nc=0000000A, x=y"#,
        )
        .unwrap();
        assert_eq!(a.nc, Some(10));
        assert_eq!(a.params, vec![("x".into(), "y".into())]);
    }

    #[test]
    fn credential_store_prefers_exact_realm() {
        let mut s = CredentialStore::new();
        assert!(s.lookup("r").is_none());
        s.add(Credentials::new("u1", "p1").for_realm("r"));
        assert!(s.lookup("other").is_none());
        s.add(Credentials::new("u2", "p2"));
        s.add(Credentials::new("u3", "p3").for_realm("r"));
        assert_eq!(s.lookup("r").unwrap().username, "u3");
        assert_eq!(s.lookup("other").unwrap().username, "u2");
    }

    fn register() -> Request {
        let SipMessage::Request(r) = parse_datagram(
            b"REGISTER sip:registrar.biloxi.com SIP/2.0\r\n\
              Via: SIP/2.0/UDP bobspc.biloxi.com:5060;branch=z9hG4bKnashds7\r\n\
              Max-Forwards: 70\r\n\
              To: Bob <sip:bob@biloxi.com>\r\n\
              From: Bob <sip:bob@biloxi.com>;tag=456248\r\n\
              Call-ID: 843817637684230@998sdasdh09\r\n\
              CSeq: 1826 REGISTER\r\n\
              Contact: <sip:bob@192.0.2.4>\r\n\
              Expires: 7200\r\n\
              Content-Length: 0\r\n\r\n",
        )
        .unwrap() else {
            unreachable!()
        };
        r
    }

    fn challenge_response(status: u16, header: &str, challenges: &[Challenge]) -> Response {
        let mut m = SipMessage::response(status, "Unauthorized");
        for c in challenges {
            m.headers_mut().push(header, &c.to_string());
        }
        let SipMessage::Response(r) = m else {
            unreachable!()
        };
        r
    }

    fn ok() -> Response {
        let SipMessage::Response(r) = SipMessage::response(200, "OK") else {
            unreachable!()
        };
        r
    }

    /// A registrar in miniature: checks the Authorization header against its nonce.
    fn registrar_accepts(req: &Request, nonce: &str, password: &str) -> bool {
        req.headers.get_all("Authorization").any(|v| {
            Authorization::parse(v)
                .map(|a| {
                    a.nonce == nonce
                        && a.uri == req.uri.to_string()
                        && verify(&a, &req.method, password)
                })
                .unwrap_or(false)
        })
    }

    #[test]
    fn client_retries_once_then_gives_up_on_wrong_password() {
        let mut rng = SeededRng::new(5);
        let mut store = CredentialStore::new();
        store.add(Credentials::new("bob", "wrong"));
        let mut client = DigestClient::new(store);
        let mut req = register();
        let ch = challenge_response(
            401,
            "WWW-Authenticate",
            &[Challenge::new("biloxi.com", "n1", Algorithm::Md5)],
        );
        let AuthAction::Retry(h) = client.on_response(&req, &ch, &mut rng) else {
            panic!()
        };
        apply_credentials(&mut req, h);
        assert!(!registrar_accepts(&req, "n1", "zanzibar"));
        // The registrar challenges again with the same nonce and stale=false.
        assert_eq!(
            client.on_response(&req, &ch, &mut rng),
            AuthAction::GiveUp(AuthFailure::Rejected {
                realm: "biloxi.com".into()
            })
        );
        // A fresh nonce without stale=true after our answer is a rejection too.
        let mut client = DigestClient::new(client.store().clone());
        assert!(matches!(
            client.on_response(&req, &ch, &mut rng),
            AuthAction::Retry(_)
        ));
        let ch2 = challenge_response(
            401,
            "WWW-Authenticate",
            &[Challenge::new("biloxi.com", "n2", Algorithm::Md5)],
        );
        assert!(matches!(
            client.on_response(&req, &ch2, &mut rng),
            AuthAction::GiveUp(AuthFailure::Rejected { .. })
        ));
    }

    #[test]
    fn client_follows_stale_and_reuses_nonce_with_growing_nc() {
        let mut rng = SeededRng::new(6);
        let mut store = CredentialStore::new();
        store.add(Credentials::new("bob", "zanzibar").for_realm("biloxi.com"));
        let mut client = DigestClient::new(store);
        let mut req = register();
        assert!(client.credentials_for(&req).is_empty());
        let ch = challenge_response(
            401,
            "WWW-Authenticate",
            &[Challenge::new("biloxi.com", "n1", Algorithm::Sha256)],
        );
        let AuthAction::Retry(h) = client.on_response(&req, &ch, &mut rng) else {
            panic!()
        };
        apply_credentials(&mut req, h);
        assert!(registrar_accepts(&req, "n1", "zanzibar"));
        let first = Authorization::parse(req.headers.get("Authorization").unwrap()).unwrap();
        assert_eq!((first.nc, first.algorithm), (Some(1), Algorithm::Sha256));

        // The registrar says the nonce is stale: retry with the new one.
        let mut stale = Challenge::new("biloxi.com", "n2", Algorithm::Sha256);
        stale.stale = true;
        let ch2 = challenge_response(401, "WWW-Authenticate", &[stale]);
        let AuthAction::Retry(h) = client.on_response(&req, &ch2, &mut rng) else {
            panic!()
        };
        apply_credentials(&mut req, h);
        assert!(registrar_accepts(&req, "n2", "zanzibar"));
        assert_eq!(client.on_response(&req, &ok(), &mut rng), AuthAction::None);

        // A refresh reuses n2 with nc=2, and the same cnonce.
        client.authorize(&mut req);
        let again = Authorization::parse(req.headers.get("Authorization").unwrap()).unwrap();
        assert_eq!((again.nonce.as_str(), again.nc), ("n2", Some(2)));
        assert!(registrar_accepts(&req, "n2", "zanzibar"));
        assert_eq!(req.headers.get_all("Authorization").count(), 1);

        // Much later the nonce expired and the server sends a fresh one without stale: the
        // cycle was closed by the 200, so this is a first challenge, not a rejection.
        let ch3 = challenge_response(
            401,
            "WWW-Authenticate",
            &[Challenge::new("biloxi.com", "n3", Algorithm::Sha256)],
        );
        assert!(matches!(
            client.on_response(&req, &ch3, &mut rng),
            AuthAction::Retry(_)
        ));
    }

    #[test]
    fn client_handles_proxy_then_www_and_unknown_realms() {
        let mut rng = SeededRng::new(7);
        let mut store = CredentialStore::new();
        store.add(Credentials::new("alice", "pw-proxy").for_realm("proxy"));
        store.add(Credentials::new("alice", "pw-home").for_realm("home"));
        let mut client = DigestClient::new(store);
        let mut req = register();
        // The proxy offers SHA-256 first and MD5 second, plus an algorithm we do not know.
        let mut unknown = Challenge::new("proxy", "p0", Algorithm::Md5);
        unknown.params.push(("x".into(), "y".into()));
        let mut m = challenge_response(
            407,
            "Proxy-Authenticate",
            &[
                Challenge::new("proxy", "p1", Algorithm::Sha256),
                Challenge::new("proxy", "p1", Algorithm::Md5),
            ],
        );
        m.headers.push_front(
            "Proxy-Authenticate",
            r#"Digest realm="proxy", nonce="p0", algorithm=SHA-512-256"#,
        );
        let AuthAction::Retry(h) = client.on_response(&req, &m, &mut rng) else {
            panic!()
        };
        assert_eq!(h.len(), 1);
        assert_eq!(h[0].name, "Proxy-Authorization");
        let a = Authorization::parse(&h[0].value).unwrap();
        assert_eq!(a.algorithm, Algorithm::Sha256);
        apply_credentials(&mut req, h);

        let ch = challenge_response(
            401,
            "WWW-Authenticate",
            &[Challenge::new("home", "h1", Algorithm::Md5)],
        );
        let AuthAction::Retry(h) = client.on_response(&req, &ch, &mut rng) else {
            panic!()
        };
        apply_credentials(&mut req, h);
        assert_eq!(req.headers.get_all("Proxy-Authorization").count(), 1);
        assert!(registrar_accepts(&req, "h1", "pw-home"));
        let pa = Authorization::parse(req.headers.get("Proxy-Authorization").unwrap()).unwrap();
        assert!(verify(&pa, &Method::Register, "pw-proxy"));
        assert_eq!(pa.nc, Some(2));

        let ch = challenge_response(
            401,
            "WWW-Authenticate",
            &[Challenge::new("elsewhere", "e", Algorithm::Md5)],
        );
        assert_eq!(
            client.on_response(&req, &ch, &mut rng),
            AuthAction::GiveUp(AuthFailure::NoCredentials {
                realm: "elsewhere".into()
            })
        );
        let mut m = challenge_response(401, "WWW-Authenticate", &[]);
        m.headers.push("WWW-Authenticate", r#"Basic realm="x""#);
        assert_eq!(
            client.on_response(&req, &m, &mut rng),
            AuthAction::GiveUp(AuthFailure::NoUsableChallenge)
        );
    }

    #[test]
    fn endless_stale_is_cut_off() {
        let mut rng = SeededRng::new(8);
        let mut store = CredentialStore::new();
        store.add(Credentials::new("bob", "pw"));
        let mut client = DigestClient::new(store);
        let req = register();
        let mut outcomes = Vec::new();
        for n in 0..6 {
            let mut c = Challenge::new("r", &format!("n{n}"), Algorithm::Md5);
            c.stale = n > 0;
            let ch = challenge_response(401, "WWW-Authenticate", &[c]);
            outcomes.push(matches!(
                client.on_response(&req, &ch, &mut rng),
                AuthAction::Retry(_)
            ));
        }
        assert_eq!(outcomes, vec![true, true, true, true, false, false]);
    }

    proptest::proptest! {
        #[test]
        fn challenge_parser_never_panics(bytes in proptest::collection::vec(proptest::num::u8::ANY, 0..256)) {
            let s = String::from_utf8_lossy(&bytes);
            let _ = Challenge::parse(&s);
            let _ = Authorization::parse(&s);
            let with_prefix = format!("Digest {s}");
            let _ = Challenge::parse(&with_prefix);
            let _ = Authorization::parse(&with_prefix);
        }

        #[test]
        fn challenge_display_round_trips(
            realm in "[ -~]{0,20}",
            nonce in "[ -~]{1,20}",
            opaque in proptest::option::of("[ -~]{0,10}"),
            stale in proptest::bool::ANY,
        ) {
            let mut c = Challenge::new(&realm, &nonce, Algorithm::Md5Sess);
            c.opaque = opaque;
            c.stale = stale;
            proptest::prop_assert_eq!(Challenge::parse(&c.to_string()).unwrap(), c);
        }
    }
}
