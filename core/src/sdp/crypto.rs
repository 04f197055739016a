//! The SDES `a=crypto` attribute (RFC 4568 section 9.1): a tag, a crypto suite, the inline
//! master key and salt (base64) with an optional lifetime and MKI, and session parameters.
//!
//! `a=crypto:<tag> <suite> inline:<base64 key||salt>[|<lifetime>][|<MKI>:<length>]
//! [;inline:...] [<session params>]`. Suites this crate cannot run are kept by name, so an
//! offer's lines can be read in order and the first usable one picked.

use std::fmt;

use super::base64;
use super::session::MediaDescription;
use crate::srtp::{MasterKey, Suite};

/// At most this many key parameters (`;`-separated) and session parameters per line: a
/// hostile offer cannot make us hold more.
const MAX_PARAMS: usize = 16;

/// A key's lifetime: `2^n` or a count of packets (RFC 4568 6.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lifetime {
    /// `2^n` packets.
    PowerOfTwo(u8),
    /// That many packets.
    Packets(u64),
}

/// One `inline:` key parameter.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyParam {
    /// The master key and salt, when the suite is one we know (its length checked); for
    /// other suites, `None` and the raw base64 in `raw`.
    pub key: Option<MasterKey>,
    /// The base64 text as written.
    pub raw: String,
    /// The key's lifetime, when given.
    pub lifetime: Option<Lifetime>,
    /// The master key identifier and its length in bytes on the wire, when given.
    pub mki: Option<(u64, u8)>,
}

/// An `a=crypto` attribute value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CryptoAttribute {
    /// The tag (1 to 9 digits) an answer uses to say which offered line it takes.
    pub tag: u32,
    /// The suite name as written.
    pub suite_name: String,
    /// The suite, when we speak it.
    pub suite: Option<Suite>,
    /// The key parameters (at least one).
    pub keys: Vec<KeyParam>,
    /// Session parameters, as written (`UNENCRYPTED_SRTP`, `KDR=...`, ...).
    pub session_params: Vec<String>,
}

fn digits(s: &str, max: usize) -> Option<&str> {
    (!s.is_empty() && s.len() <= max && s.bytes().all(|b| b.is_ascii_digit())).then_some(s)
}

fn parse_lifetime(s: &str) -> Option<Lifetime> {
    match s.strip_prefix("2^") {
        Some(n) => Some(Lifetime::PowerOfTwo(
            digits(n, 2)?.parse().ok().filter(|&n| n <= 64)?,
        )),
        None => Some(Lifetime::Packets(digits(s, 19)?.parse().ok()?)),
    }
}

fn parse_key_param(text: &str, suite: Option<Suite>) -> Option<KeyParam> {
    let rest = text.strip_prefix("inline:")?;
    let mut parts = rest.split('|');
    let raw = parts.next().filter(|k| !k.is_empty())?;
    let decoded = base64::decode(raw)?;
    let key = match suite {
        Some(_) => Some(MasterKey::from_concatenated(&decoded)?),
        None => None,
    };
    let (mut lifetime, mut mki) = (None, None);
    for part in parts {
        match part.split_once(':') {
            Some((value, length)) if mki.is_none() => {
                let value = digits(value, 19)?.parse().ok()?;
                let length: u8 = digits(length, 3)?
                    .parse()
                    .ok()
                    .filter(|&l| (1..=128).contains(&l))?;
                mki = Some((value, length));
            }
            None if lifetime.is_none() && mki.is_none() => lifetime = Some(parse_lifetime(part)?),
            _ => return None,
        }
    }
    Some(KeyParam {
        key,
        raw: raw.to_owned(),
        lifetime,
        mki,
    })
}

impl CryptoAttribute {
    /// Parses an `a=crypto` value; `None` when it does not follow the grammar (or a known
    /// suite's key is not 30 bytes).
    pub fn parse(value: &str) -> Option<Self> {
        let mut fields = value.split_ascii_whitespace();
        let tag = digits(fields.next()?, 9)?.parse().ok()?;
        let suite_name = fields.next()?;
        if !suite_name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_')
        {
            return None;
        }
        let suite = Suite::from_name(suite_name);
        let key_text = fields.next()?;
        let mut keys = Vec::new();
        for k in key_text.split(';') {
            if keys.len() == MAX_PARAMS {
                return None;
            }
            keys.push(parse_key_param(k, suite)?);
        }
        let session_params: Vec<String> = fields.map(str::to_owned).collect();
        if session_params.len() > MAX_PARAMS {
            return None;
        }
        Some(CryptoAttribute {
            tag,
            suite_name: suite_name.to_owned(),
            suite,
            keys,
            session_params,
        })
    }

    /// A line for `suite` with one key and nothing else: what we offer and answer.
    pub fn new(tag: u32, suite: Suite, key: MasterKey) -> Self {
        CryptoAttribute {
            tag,
            suite_name: suite.name().to_owned(),
            suite: Some(suite),
            keys: vec![KeyParam {
                raw: base64::encode(&key.concatenated()),
                key: Some(key),
                lifetime: None,
                mki: None,
            }],
            session_params: Vec::new(),
        }
    }

    /// The suite and master key, when this line is one we can run: a suite we speak, one key
    /// without MKI (our packets carry none), and no session parameters (each changes how
    /// SRTP runs: unencrypted or unauthenticated SRTP, a key derivation rate, FEC order).
    pub fn usable(&self) -> Option<(Suite, &MasterKey)> {
        match (&self.suite, &self.keys[..], self.session_params.is_empty()) {
            (
                Some(suite),
                [KeyParam {
                    key: Some(key),
                    mki: None,
                    ..
                }],
                true,
            ) => Some((*suite, key)),
            _ => None,
        }
    }
}

impl fmt::Display for CryptoAttribute {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {} ", self.tag, self.suite_name)?;
        for (i, k) in self.keys.iter().enumerate() {
            if i > 0 {
                f.write_str(";")?;
            }
            write!(f, "inline:{}", k.raw)?;
            match k.lifetime {
                Some(Lifetime::PowerOfTwo(n)) => write!(f, "|2^{n}")?,
                Some(Lifetime::Packets(n)) => write!(f, "|{n}")?,
                None => {}
            }
            if let Some((value, length)) = k.mki {
                write!(f, "|{value}:{length}")?;
            }
        }
        for p in &self.session_params {
            write!(f, " {p}")?;
        }
        Ok(())
    }
}

impl MediaDescription {
    /// The m-line's `a=crypto` lines that parse, in order (malformed ones are skipped, as RFC
    /// 4568 6.1 says an answerer ignores lines it does not understand).
    pub fn crypto(&self) -> impl Iterator<Item = CryptoAttribute> + '_ {
        self.attributes
            .iter()
            .filter(|a| a.name.eq_ignore_ascii_case("crypto"))
            .filter_map(|a| CryptoAttribute::parse(a.value.as_deref()?))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn parses_rfc4568_examples() {
        let a = CryptoAttribute::parse(
            "1 AES_CM_128_HMAC_SHA1_80 inline:WVNfX19zZW1jdGwgKCkgewkyMjA7fQp9CnVubGVz|2^20|1:4",
        )
        .unwrap();
        assert_eq!(a.tag, 1);
        assert_eq!(a.suite, Some(Suite::AesCm128HmacSha1_80));
        assert_eq!(a.keys[0].lifetime, Some(Lifetime::PowerOfTwo(20)));
        assert_eq!(a.keys[0].mki, Some((1, 4)));
        assert!(a.usable().is_none(), "an MKI is not something we send");
        assert_eq!(
            a.to_string(),
            "1 AES_CM_128_HMAC_SHA1_80 inline:WVNfX19zZW1jdGwgKCkgewkyMjA7fQp9CnVubGVz|2^20|1:4"
        );
        let b = CryptoAttribute::parse(
            "2 AES_CM_128_HMAC_SHA1_32 inline:NzB4d1BINUAvLEw6UzF3WSJ+PSdFcGdUJShpX1Zj|2^20|1:32",
        )
        .unwrap();
        assert_eq!(b.suite, Some(Suite::AesCm128HmacSha1_32));
        let plain = CryptoAttribute::parse(
            "3 AES_CM_128_HMAC_SHA1_32 inline:NzB4d1BINUAvLEw6UzF3WSJ+PSdFcGdUJShpX1Zj",
        )
        .unwrap();
        let (suite, key) = plain.usable().unwrap();
        assert_eq!(suite, Suite::AesCm128HmacSha1_32);
        assert_eq!(key.key[0], b'7');
        let unknown = CryptoAttribute::parse("4 F8_128_HMAC_SHA1_80 inline:QUJD|2^20").unwrap();
        assert_eq!(unknown.suite, None);
        assert!(unknown.usable().is_none());
        let with_params = CryptoAttribute::parse(
            "5 AES_CM_128_HMAC_SHA1_80 inline:NzB4d1BINUAvLEw6UzF3WSJ+PSdFcGdUJShpX1Zj UNENCRYPTED_SRTP",
        )
        .unwrap();
        assert!(with_params.usable().is_none());
    }

    #[test]
    fn rejects_malformed_lines() {
        for bad in [
            "",
            "1",
            "x AES_CM_128_HMAC_SHA1_80 inline:NzB4d1BINUAvLEw6UzF3WSJ+PSdFcGdUJShpX1Zj",
            "1234567890 AES_CM_128_HMAC_SHA1_80 inline:NzB4d1BINUAvLEw6UzF3WSJ+PSdFcGdUJShpX1Zj",
            "1 AES_CM_128_HMAC_SHA1_80 key:NzB4d1BINUAvLEw6UzF3WSJ+PSdFcGdUJShpX1Zj",
            "1 AES_CM_128_HMAC_SHA1_80 inline:c2hvcnQ=",
            "1 AES_CM_128_HMAC_SHA1_80 inline:NzB4d1BINUAvLEw6UzF3WSJ+PSdFcGdUJShpX1Zj|2^99",
            "1 AES_CM_128_HMAC_SHA1_80 inline:NzB4d1BINUAvLEw6UzF3WSJ+PSdFcGdUJShpX1Zj|1:0",
            "1 AES_CM_128_HMAC_SHA1_80 inline:NzB4d1BINUAvLEw6UzF3WSJ+PSdFcGdUJShpX1Zj|1:4|2^20",
            "1 AES_CM_128_HMAC_SHA1_80 inline:!!!!",
        ] {
            assert_eq!(CryptoAttribute::parse(bad), None, "{bad}");
        }
    }

    #[test]
    fn our_lines_round_trip() {
        let key = MasterKey::from_concatenated(&[9; 30]).unwrap();
        let line = CryptoAttribute::new(7, Suite::AesCm128HmacSha1_80, key.clone());
        let parsed = CryptoAttribute::parse(&line.to_string()).unwrap();
        assert_eq!(parsed, line);
        assert_eq!(parsed.usable(), Some((Suite::AesCm128HmacSha1_80, &key)));
    }

    proptest! {
        #[test]
        fn arbitrary_text_never_panics(text in "\\PC{0,120}") {
            let _ = CryptoAttribute::parse(&text);
        }

        #[test]
        fn near_miss_lines_never_panic_and_reemit_as_parsed(
            tag in "[0-9]{1,10}",
            suite in "(AES_CM_128_HMAC_SHA1_(80|32)|F8_128_HMAC_SHA1_80|[A-Z_]{0,8})",
            key in "[A-Za-z0-9+/=]{0,44}",
            extra in "(\\|2\\^[0-9]{1,3}|\\|[0-9]{1,4}|\\|[0-9]{1,3}:[0-9]{1,4}|;inline:[A-Za-z0-9+/]{4,8}| [A-Z_=0-9]{1,10}){0,3}",
        ) {
            let text = format!("{tag} {suite} inline:{key}{extra}");
            if let Some(parsed) = CryptoAttribute::parse(&text) {
                let again = CryptoAttribute::parse(&parsed.to_string());
                prop_assert_eq!(again, Some(parsed));
            }
        }

        #[test]
        fn any_key_round_trips(bytes in proptest::array::uniform30(any::<u8>()), tag in 0u32..1_000_000_000) {
            let key = MasterKey::from_concatenated(&bytes).unwrap();
            let line = CryptoAttribute::new(tag, Suite::AesCm128HmacSha1_32, key);
            prop_assert_eq!(CryptoAttribute::parse(&line.to_string()), Some(line));
        }
    }
}
