//! SDES keying (RFC 4568) over the offer/answer model: putting `a=crypto` lines and the
//! RTP/SAVP profile into our offers, answering an offer's crypto with a fresh key of our own,
//! and reading which keys an exchange settled on.
//!
//! Keys are never stored outside the descriptions: what we offered or answered is in our own
//! SDP, which the call keeps, so the negotiated keys are read back from the pair.
//!
//! Rules:
//! - an offer carries, on every active m-line, one line per suite we speak (in our order of
//!   preference, tags 1, 2, ...) each with its own fresh key; its profile is RTP/SAVP(F) when
//!   SRTP is required, and stays RTP/AVP(F) when SRTP is only offered (best-effort SRTP: a
//!   far end that does not speak it ignores the unknown attribute and answers plain RTP);
//! - an answer takes the first offered line that is usable ([`CryptoAttribute::usable`]),
//!   with the same tag and suite and our own fresh key; an RTP/SAVP(F) line without a usable
//!   crypto line is rejected (port 0);
//! - a crypto line in an answer must name the tag and suite of one we offered.

use crate::rng::SeededRng;
use crate::srtp::{KeySecret, MasterKey, Suite};

use super::crypto::CryptoAttribute;
use super::offer_answer::{answer, LocalCapabilities, NoMatch};
use super::session::{Attribute, MediaDescription, Origin, SessionDescription};

/// The keys one m-line's SRTP runs with: the suite, our key (what we send is protected with
/// it) and the far end's (what we receive).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SrtpKeys {
    /// The negotiated suite.
    pub suite: Suite,
    /// Our master key: protects what we send.
    pub ours: MasterKey,
    /// The far end's master key: unprotects what we receive.
    pub theirs: MasterKey,
}

/// Where the fresh master keys of offers and answers come from.
pub trait KeySupply {
    /// A fresh master key and salt.
    fn fresh_key(&mut self) -> MasterKey;
}

/// The generator's bytes as the key: predictable to whoever can work out the generator's
/// state (see [`crate::srtp::key_secret`]); for tests, and embedders without a secret.
impl KeySupply for SeededRng {
    fn fresh_key(&mut self) -> MasterKey {
        let mut bytes = [0u8; MasterKey::LEN];
        self.fill(&mut bytes);
        MasterKey::from_concatenated(&bytes).expect("the length is right")
    }
}

/// Keys derived under the operator's secret from the generator's bytes (see
/// [`crate::srtp::key_secret`]).
pub struct SecretKeys<'a> {
    /// The secret.
    pub secret: &'a KeySecret,
    /// The generator.
    pub rng: &'a mut SeededRng,
}

impl KeySupply for SecretKeys<'_> {
    fn fresh_key(&mut self) -> MasterKey {
        let mut input = [0u8; 32];
        self.rng.fill(&mut input);
        self.secret.derive(&input)
    }
}

/// The secure profile for a plain one (`RTP/AVP` -> `RTP/SAVP`, `RTP/AVPF` -> `RTP/SAVPF`),
/// and the reverse for a secure one; `None` for anything else.
fn swap_profile(proto: &str) -> Option<&'static str> {
    Some(match proto {
        "RTP/AVP" => "RTP/SAVP",
        "RTP/AVPF" => "RTP/SAVPF",
        "RTP/SAVP" => "RTP/AVP",
        "RTP/SAVPF" => "RTP/AVPF",
        _ => return None,
    })
}

/// Whether `proto` is a secure RTP profile (RTP/SAVP or RTP/SAVPF).
pub fn is_secure_profile(proto: &str) -> bool {
    matches!(proto, "RTP/SAVP" | "RTP/SAVPF")
}

/// Adds our crypto lines to every active m-line of `offer` (see the module documentation);
/// `require` switches the profile to RTP/SAVP(F).
pub fn secure_offer(offer: &mut SessionDescription, keys: &mut impl KeySupply, require: bool) {
    for m in offer.media.iter_mut().filter(|m| m.port != 0) {
        if require && !is_secure_profile(&m.proto) {
            if let Some(secure) = swap_profile(&m.proto) {
                m.proto = secure.to_owned();
            }
        }
        for (tag, suite) in (1..).zip(Suite::ALL) {
            let line = CryptoAttribute::new(tag, suite, keys.fresh_key());
            m.attributes
                .push(Attribute::new("crypto", line.to_string()));
        }
    }
}

/// The first usable crypto line of an offered m-line.
fn usable_offer(m: &MediaDescription) -> Option<CryptoAttribute> {
    m.crypto().find(|c| c.usable().is_some())
}

/// Whether any active m-line of `offer` has a usable crypto line.
pub fn offers_srtp(offer: &SessionDescription) -> bool {
    offer
        .media
        .iter()
        .any(|m| m.port != 0 && usable_offer(m).is_some())
}

/// Answers `offer` as [`answer`] does, and with SRTP on every m-line that offers a usable
/// crypto line (our fresh key, the offer's tag and suite, the offer's profile). An
/// RTP/SAVP(F) line without a usable crypto line is rejected.
pub fn answer_secure(
    offer: &SessionDescription,
    local: &LocalCapabilities,
    origin: &Origin,
    keys: &mut impl KeySupply,
) -> Result<SessionDescription, NoMatch> {
    // The plain answerer speaks RTP/AVP(F) only: lines we can key are shown to it as plain,
    // and get their profile and crypto back afterwards.
    let mut plain = offer.clone();
    let chosen: Vec<Option<CryptoAttribute>> = offer.media.iter().map(usable_offer).collect();
    for (m, crypto) in plain.media.iter_mut().zip(&chosen) {
        if crypto.is_some() && is_secure_profile(&m.proto) {
            if let Some(p) = swap_profile(&m.proto) {
                m.proto = p.to_owned();
            }
        }
    }
    let mut sdp = answer(&plain, local, origin)?;
    for ((m, offered), crypto) in sdp.media.iter_mut().zip(&offer.media).zip(chosen) {
        m.proto = offered.proto.clone();
        // `chosen` holds usable lines only; asking again costs nothing and needs no panic.
        let Some((theirs, (suite, _))) = crypto
            .as_ref()
            .filter(|_| m.port != 0)
            .and_then(|c| c.usable().map(|u| (c, u)))
        else {
            continue;
        };
        let ours = CryptoAttribute::new(theirs.tag, suite, keys.fresh_key());
        m.attributes
            .push(Attribute::new("crypto", ours.to_string()));
    }
    Ok(sdp)
}

/// The keys m-line `index` settled on between an `offer` and its `answer` (`local_is_answer`:
/// which of the two is ours), or `None` when the answer's line has no crypto (plain RTP).
/// `Err` when the answer's crypto names no usable offered line, or is not usable itself.
pub fn negotiated_keys(
    offer: &SessionDescription,
    answer: &SessionDescription,
    local_is_answer: bool,
    index: usize,
) -> Result<Option<SrtpKeys>, NoMatch> {
    let bad = NoMatch {
        reason: "the answer's crypto line matches no offered one",
    };
    let (Some(o), Some(a)) = (offer.media.get(index), answer.media.get(index)) else {
        return Ok(None);
    };
    let Some(answered) = a.crypto().next() else {
        return Ok(None);
    };
    let (suite, answer_key) = answered.usable().ok_or(bad)?;
    let offered = o
        .crypto()
        .find(|c| c.tag == answered.tag && c.suite == Some(suite))
        .ok_or(bad)?;
    let (_, offer_key) = offered.usable().ok_or(bad)?;
    let (ours, theirs) = if local_is_answer {
        (answer_key, offer_key)
    } else {
        (offer_key, answer_key)
    };
    Ok(Some(SrtpKeys {
        suite,
        ours: ours.clone(),
        theirs: theirs.clone(),
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sdp::offer_answer::{create_offer, Codec, MediaCapability};

    fn origin() -> Origin {
        Origin {
            username: "-".into(),
            session_id: 1,
            session_version: 1,
            nettype: "IN".into(),
            addrtype: "IP4".into(),
            address: "192.0.2.1".into(),
        }
    }

    fn local(port: u16) -> LocalCapabilities {
        LocalCapabilities {
            address: "192.0.2.1".parse().unwrap(),
            session_name: "-".into(),
            media: vec![MediaCapability::new(
                "audio",
                port,
                vec![Codec::new(0, "PCMU", 8000, None)],
            )],
        }
    }

    fn sdp(media: &str) -> SessionDescription {
        format!("v=0\r\no=- 9 1 IN IP4 192.0.2.9\r\ns=-\r\nc=IN IP4 192.0.2.9\r\nt=0 0\r\n{media}")
            .parse()
            .unwrap()
    }

    #[test]
    fn offer_and_answer_settle_on_mirrored_keys() {
        let mut rng = SeededRng::new(1);
        let mut offer = create_offer(&local(4000), &origin());
        secure_offer(&mut offer, &mut rng, true);
        assert_eq!(offer.media[0].proto, "RTP/SAVP");
        let lines: Vec<_> = offer.media[0].crypto().collect();
        assert_eq!(lines.len(), 2);
        assert_eq!(
            (lines[0].tag, lines[0].suite),
            (1, Some(Suite::AesCm128HmacSha1_80))
        );
        assert_ne!(lines[0].keys[0].key, lines[1].keys[0].key, "a key per line");
        // The far end answers from the offer text.
        let offer: SessionDescription = offer.to_string().parse().unwrap();
        let mut far_rng = SeededRng::new(2);
        let reply = answer_secure(&offer, &local(5000), &origin(), &mut far_rng).unwrap();
        assert_eq!(reply.media[0].proto, "RTP/SAVP");
        let reply: SessionDescription = reply.to_string().parse().unwrap();
        let ours = negotiated_keys(&offer, &reply, false, 0).unwrap().unwrap();
        let theirs = negotiated_keys(&offer, &reply, true, 0).unwrap().unwrap();
        assert_eq!(ours.suite, Suite::AesCm128HmacSha1_80);
        assert_eq!((&ours.ours, &ours.theirs), (&theirs.theirs, &theirs.ours));
        assert_ne!(ours.ours, ours.theirs, "each side keys with its own key");
    }

    #[test]
    fn answer_takes_the_first_usable_offered_line() {
        let offer = sdp(
            "m=audio 6000 RTP/SAVP 0\r\n\
             a=crypto:1 AES_CM_128_HMAC_SHA1_80 inline:WVNfX19zZW1jdGwgKCkgewkyMjA7fQp9CnVubGVz|2^20|1:4\r\n\
             a=crypto:2 F8_128_HMAC_SHA1_80 inline:QUJD\r\n\
             a=crypto:3 AES_CM_128_HMAC_SHA1_32 inline:NzB4d1BINUAvLEw6UzF3WSJ+PSdFcGdUJShpX1Zj\r\n",
        );
        let reply = answer_secure(&offer, &local(4000), &origin(), &mut SeededRng::new(3)).unwrap();
        let lines: Vec<_> = reply.media[0].crypto().collect();
        assert_eq!(lines.len(), 1);
        assert_eq!(
            (lines[0].tag, lines[0].suite),
            (3, Some(Suite::AesCm128HmacSha1_32))
        );
        let keys = negotiated_keys(&offer, &reply, true, 0).unwrap().unwrap();
        assert_eq!(keys.theirs.key[0], b'7');
    }

    #[test]
    fn a_secure_line_without_usable_crypto_is_rejected_and_plain_stays_plain() {
        let offer =
            sdp("m=audio 6000 RTP/SAVP 0\r\na=crypto:1 F8_128_HMAC_SHA1_80 inline:QUJD\r\n");
        assert!(answer_secure(&offer, &local(4000), &origin(), &mut SeededRng::new(4)).is_err());
        let plain = sdp("m=audio 6000 RTP/AVP 0\r\n");
        let reply = answer_secure(&plain, &local(4000), &origin(), &mut SeededRng::new(4)).unwrap();
        assert_eq!(reply.media[0].proto, "RTP/AVP");
        assert_eq!(reply.media[0].crypto().count(), 0);
        assert_eq!(negotiated_keys(&plain, &reply, true, 0), Ok(None));
        assert!(!offers_srtp(&plain));
    }

    #[test]
    fn an_answer_naming_no_offered_line_fails() {
        let mut offer = create_offer(&local(4000), &origin());
        secure_offer(&mut offer, &mut SeededRng::new(5), false);
        assert_eq!(
            offer.media[0].proto, "RTP/AVP",
            "best effort keeps the plain profile"
        );
        let reply = sdp(
            "m=audio 6000 RTP/AVP 0\r\n\
             a=crypto:9 AES_CM_128_HMAC_SHA1_80 inline:NzB4d1BINUAvLEw6UzF3WSJ+PSdFcGdUJShpX1Zj\r\n",
        );
        assert!(negotiated_keys(&offer, &reply, false, 0).is_err());
    }
}
