//! [`DigestClient`]: what a UAC does with a 401 or 407 (which credentials, when to give up, a
//! stale nonce), and [`apply_credentials`].

use crate::rng::SeededRng;
use crate::sip::headers::Header;
use crate::sip::message::{Request, Response};

use super::*;

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
pub(super) struct Session {
    pub(super) kind: ChallengeKind,
    pub(super) challenge: Challenge,
    pub(super) cnonce: String,
    /// Nonce count of the last answer sent with this nonce.
    pub(super) nc: u32,
    /// We answered a challenge and have not seen a non-challenge final response since.
    pub(super) answered: bool,
    pub(super) stale_retries: u8,
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
