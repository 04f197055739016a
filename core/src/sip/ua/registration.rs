//! Registration (RFC 3261 10.2): REGISTER with Digest retry on 401/407, the refresh before
//! the binding expires, 423 Interval Too Brief, and un-registration (Expires: 0).
//!
//! All REGISTERs of one user agent share a Call-ID and From tag with increasing CSeq
//! (10.2.4), so the registrar sees one registration being refreshed.

use std::time::{Duration, Instant};

use super::{uri_addr, Owner, UaConfig, UaEvent, UserAgent};
use crate::rng::SeededRng;
use crate::sip::dialog::{new_request, new_tag, NewRequest};
use crate::sip::digest::{apply_credentials, AuthAction, DigestClient};
use crate::sip::headers::Contacts;
use crate::sip::message::{Method, Request, Response};
use crate::sip::name_addr::NameAddr;
use crate::sip::transaction::TransactionId;
use crate::sip::uri::{SipUri, Uri};

/// At most this many 423 retries in a row.
const MAX_BRIEF_RETRIES: u8 = 2;

/// The registration cycle's state.
#[derive(Debug)]
pub(super) struct Registration {
    call_id: String,
    from_tag: String,
    cseq: u32,
    digest: Option<DigestClient>,
    /// The REGISTER in flight and the request as built (for a digest retry).
    pub(super) tx: Option<TransactionId>,
    request: Option<Request>,
    /// Expires asked for by the request in flight.
    expires: u32,
    /// When to refresh the binding.
    pub(super) refresh_at: Option<Instant>,
    brief_retries: u8,
    /// REGISTERs sent asking for a binding (see [`UserAgent::register_attempts`]).
    attempts: u64,
}

impl Registration {
    /// A fresh registration identity (Call-ID, From tag, CSeq).
    pub(super) fn new(rng: &mut SeededRng, config: &UaConfig) -> Registration {
        Registration {
            call_id: format!("{}@{}", rng.token(20), config.public_addr().ip()),
            from_tag: new_tag(rng),
            cseq: 0,
            digest: None,
            tx: None,
            request: None,
            expires: 0,
            attempts: 0,
            refresh_at: None,
            brief_retries: 0,
        }
    }
}

/// When to refresh a binding granted for `expires` seconds: at half its life or 32 s
/// before it ends, whichever is earlier, but not sooner than 1 s.
pub(crate) fn refresh_delay(expires: u32) -> Duration {
    let half = expires / 2;
    let early = expires.saturating_sub(32);
    let secs = if early == 0 { half } else { half.min(early) };
    Duration::from_secs(u64::from(secs.max(1)))
}

impl UserAgent {
    /// Registers the AOR's Contact with the registrar (`Expires: register_expires`),
    /// answering one Digest challenge per nonce, and keeps the binding refreshed. Reports
    /// [`UaEvent::Registered`] after every successful REGISTER, or
    /// [`UaEvent::RegistrationFailed`].
    pub fn register(&mut self, now: Instant) {
        let expires = self.config.register_expires;
        self.send_register(now, expires);
        self.pump(now);
    }

    /// Removes the binding (`Expires: 0`) and stops refreshing; reports
    /// [`UaEvent::Unregistered`] (or [`UaEvent::RegistrationFailed`]).
    pub fn unregister(&mut self, now: Instant) {
        self.registration.refresh_at = None;
        self.send_register(now, 0);
        self.pump(now);
    }

    /// REGISTERs sent asking for a binding so far (the first and every refresh; not the
    /// resend that answers a challenge, nor an un-REGISTER).
    pub fn register_attempts(&self) -> u64 {
        self.registration.attempts
    }

    /// True while a binding is believed to be in place (a refresh is scheduled).
    pub fn is_registered(&self) -> bool {
        self.registration.refresh_at.is_some()
    }

    fn registrar(&self) -> Option<std::net::SocketAddr> {
        self.config
            .registrar
            .or(self.config.outbound_proxy)
            .or_else(|| uri_addr(&Uri::Sip(self.config.aor.clone())))
    }

    /// Builds and sends a REGISTER asking for `expires` seconds.
    pub(super) fn send_register(&mut self, now: Instant, expires: u32) {
        let Some(registrar) = self.registrar() else {
            self.registration_failed(0, "no registrar configured");
            return;
        };
        if expires > 0 {
            self.registration.attempts += 1;
        }
        self.registration.cseq = self.registration.cseq.wrapping_add(1).max(1);
        self.registration.expires = expires;
        self.registration.brief_retries = 0;
        let mut domain = SipUri::new(self.config.aor.scheme, self.config.aor.host.clone());
        domain.port = self.config.aor.port;
        let mut from = self.our_from();
        from.params.set("tag", Some(&self.registration.from_tag));
        let to = NameAddr::new(Uri::Sip(self.config.aor.clone()));
        let mut spec = NewRequest::new(
            Method::Register,
            Uri::Sip(domain),
            from,
            to,
            self.registration.cseq,
        );
        spec.call_id = Some(self.registration.call_id.clone());
        spec.contact = Some(self.contact());
        spec.route = self.proxy_route().into_iter().collect();
        let sent_by = self.sent_by();
        let mut req = new_request(spec, &sent_by, &mut self.rng);
        req.headers.push("Expires", &expires.to_string());
        req.headers
            .push("User-Agent", &self.config.user_agent.clone());
        // Reuse a known nonce (next nc) so that a refresh needs no new challenge.
        if let Some(d) = self.registration.digest.as_mut() {
            d.authorize(&mut req);
        }
        self.send_register_request(now, req, registrar);
    }

    fn send_register_request(
        &mut self,
        now: Instant,
        req: Request,
        registrar: std::net::SocketAddr,
    ) {
        match self.start(now, req.clone(), registrar, Owner::Register) {
            Ok(id) => {
                self.registration.tx = Some(id);
                self.registration.request = Some(req);
            }
            Err(_) => self.registration_failed(503, "Service Unavailable"),
        }
    }

    /// Re-sends the REGISTER in flight with a new CSeq after `edit`.
    fn resend_register(&mut self, now: Instant, edit: impl FnOnce(&mut Request)) -> bool {
        let (Some(mut req), Some(registrar)) =
            (self.registration.request.clone(), self.registrar())
        else {
            return false;
        };
        self.registration.cseq = self.registration.cseq.wrapping_add(1).max(1);
        req.headers
            .set("CSeq", &format!("{} REGISTER", self.registration.cseq));
        req.raw = None;
        edit(&mut req);
        self.send_register_request(now, req, registrar);
        true
    }

    pub(super) fn on_register_response(&mut self, now: Instant, id: TransactionId, resp: Response) {
        if self.registration.tx != Some(id) || resp.status < 200 {
            return;
        }
        self.registration.tx = None;
        let status = resp.status;
        let request = self.registration.request.clone();
        if let Some(req) = &request {
            let store = self.store.clone();
            let digest = self
                .registration
                .digest
                .get_or_insert_with(|| DigestClient::new(store));
            match digest.on_response(req, &resp, &mut self.rng) {
                AuthAction::None => {}
                AuthAction::Retry(headers) => {
                    if !self.resend_register(now, |r| apply_credentials(r, headers)) {
                        self.registration_failed(status, &resp.reason);
                    }
                    return;
                }
                AuthAction::GiveUp(_) => {
                    self.registration_failed(status, &resp.reason);
                    return;
                }
            }
        }
        match status {
            200..=299 => {
                if self.registration.expires == 0 {
                    self.registration.refresh_at = None;
                    self.events.push_back(UaEvent::Unregistered);
                    return;
                }
                let granted = self.granted_expires(&resp);
                if granted == 0 {
                    // The registrar kept nothing: as good as a failure.
                    self.registration_failed(status, "binding not kept");
                    return;
                }
                self.registration.refresh_at = Some(now + refresh_delay(granted));
                self.events
                    .push_back(UaEvent::Registered { expires: granted });
            }
            423 if self.registration.brief_retries < MAX_BRIEF_RETRIES => {
                let min = resp
                    .headers
                    .get("Min-Expires")
                    .and_then(|v| v.trim().parse::<u32>().ok());
                match min {
                    Some(min) if min > self.registration.expires => {
                        self.registration.expires = min;
                        let retries = self.registration.brief_retries + 1;
                        let ok = self.resend_register(now, |r| {
                            r.headers.set("Expires", &min.to_string());
                        });
                        self.registration.brief_retries = retries;
                        if !ok {
                            self.registration_failed(status, &resp.reason);
                        }
                    }
                    _ => self.registration_failed(status, &resp.reason),
                }
            }
            _ => self.registration_failed(status, &resp.reason),
        }
    }

    /// The lifetime the registrar granted our Contact: its `expires` parameter, else the
    /// Expires header, else what we asked for.
    fn granted_expires(&self, resp: &Response) -> u32 {
        let ours = self.contact().uri.to_string();
        if let Ok(Contacts::List(list)) = resp.headers.contacts() {
            let param = list
                .iter()
                .filter(|c| c.uri.to_string() == ours)
                .filter_map(|c| c.params.value("expires"))
                .filter_map(|v| v.parse::<u32>().ok())
                .min();
            if let Some(e) = param {
                return e;
            }
        }
        match resp.headers.expires() {
            Ok(Some(e)) => e,
            _ => self.registration.expires,
        }
    }

    pub(super) fn registration_failed(&mut self, status: u16, reason: &str) {
        self.registration.tx = None;
        self.registration.refresh_at = None;
        self.events.push_back(UaEvent::RegistrationFailed {
            status,
            reason: reason.to_string(),
        });
    }
}

#[cfg(test)]
mod tests {
    use super::refresh_delay;
    use std::time::Duration;

    #[test]
    fn refresh_is_early_but_not_too_early() {
        assert_eq!(refresh_delay(3600), Duration::from_secs(1800));
        assert_eq!(refresh_delay(60), Duration::from_secs(28));
        assert_eq!(refresh_delay(40), Duration::from_secs(8));
        assert_eq!(refresh_delay(20), Duration::from_secs(10));
        assert_eq!(refresh_delay(1), Duration::from_secs(1));
        assert_eq!(refresh_delay(0), Duration::from_secs(1));
    }
}
