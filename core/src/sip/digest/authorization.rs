//! [`Authorization`]: `Authorization` / `Proxy-Authorization` credentials, computed for a
//! request and parsed from one.

use std::fmt;

use super::*;

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
