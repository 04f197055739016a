//! HTTP Digest authentication as SIP uses it (RFC 3261 section 22, RFC 2617, RFC 7616,
//! RFC 8760): the algorithms and qops (here), auth-params (`params`), challenges
//! ([`Challenge`]), credentials ([`Credentials`], [`CredentialStore`]), the request-digest
//! (`response`), `Authorization` headers ([`Authorization`]), the server side ([`verify`]),
//! and the [`DigestClient`] that decides what a UAC does with a 401 or 407.
//!
//! Everything here is pure: cnonces come from the caller's [`SeededRng`](crate::rng::SeededRng), and nonce
//! freshness (which needs a clock) is the registrar's business, not [`verify`]'s.
//!
//! Not supported: `userhash`, `username*` (RFC 7616 3.4.4), SHA-512-256 and the
//! `Authentication-Info` header; a challenge asking for them is reported as unsupported.

use std::fmt;

use md5::{Digest as _, Md5};
use sha2::Sha256;

/// At most this many auth-params in one header value; real ones carry fewer than a dozen.
const MAX_PARAMS: usize = 32;
/// A client keeps state for at most this many (header kind, realm) pairs.
const MAX_SESSIONS: usize = 8;
/// How many `stale=true` challenges in a row a client follows before it gives up.
const MAX_STALE_RETRIES: u8 = 3;

mod authorization;
mod challenge;
mod client;
mod credentials;
mod params;
mod response;
mod verify;

pub use authorization::Authorization;
pub use challenge::Challenge;
use challenge::*;
pub use client::{apply_credentials, AuthAction, AuthFailure, ChallengeKind, DigestClient};
pub use credentials::{CredentialStore, Credentials};
use params::*;
pub use response::DigestRequest;
use response::*;
pub use verify::{verify, verify_with_body};

/// Why a challenge or credentials header could not be used.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rng::SeededRng;
    use crate::sip::{parse_datagram, Method, SipMessage};
    use crate::sip::{Request, Response};

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
