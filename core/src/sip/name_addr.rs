//! [`NameAddr`]: the value of From, To, Contact, Route, Record-Route, Refer-To and friends,
//! in either of RFC 3261's two spellings:
//!
//! - name-addr: `[display-name] "<" URI ">" *(";" param)`, e.g. `"A" <sip:a@b;lr>;tag=x`;
//! - addr-spec: `URI *(";" param)`, e.g. `sip:a@b;tag=x`.
//!
//! In the addr-spec form everything after the first `;` belongs to the header, not the URI
//! (RFC 3261 20.10), which is why a URI containing `,`, `?` or `;` must be written in angle
//! brackets; an addr-spec with `?` or `,` is rejected here.

use std::fmt;
use std::str::FromStr;

use super::error::SipError;
use super::lex::{is_token_char, is_ws, scan_quoted, unquote, write_quoted};
use super::params::Params;
use super::uri::Uri;

/// An address with optional display name and header parameters.
///
/// ```
/// use siprtmp_core::sip::NameAddr;
/// let a: NameAddr = r#""Alice \"A\"" <sip:alice@atlanta.example.com;transport=tcp>;tag=88sja8x"#.parse().unwrap();
/// assert_eq!(a.display_name.as_deref(), Some(r#"Alice "A""#));
/// assert_eq!(a.tag(), Some("88sja8x"));
/// assert_eq!(a.uri.as_sip().unwrap().transport(), Some("tcp"));
///
/// // addr-spec form: `;tag` is a header parameter, not a URI parameter.
/// let b: NameAddr = "sip:bob@biloxi.example.com;tag=a6c85cf".parse().unwrap();
/// assert_eq!(b.tag(), Some("a6c85cf"));
/// assert!(b.uri.as_sip().unwrap().params.is_empty());
/// assert_eq!(b.to_string(), "<sip:bob@biloxi.example.com>;tag=a6c85cf");
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NameAddr {
    /// Display name with quoted pairs resolved (`None` when absent).
    pub display_name: Option<String>,
    /// The address.
    pub uri: Uri,
    /// Header parameters (`tag`, `expires`, `q`, ...), order kept, values raw.
    pub params: Params,
}

impl NameAddr {
    /// An address with no display name and no parameters.
    pub fn new(uri: Uri) -> NameAddr {
        NameAddr {
            display_name: None,
            uri,
            params: Params::new(),
        }
    }

    /// The `tag` parameter (From/To dialog identification).
    pub fn tag(&self) -> Option<&str> {
        self.params.value("tag")
    }

    /// Parses one name-addr or addr-spec (one element of a comma list).
    pub fn parse(s: &str) -> Result<NameAddr, SipError> {
        Self::parse_inner(s.trim()).map_err(SipError::BadUri)
    }

    fn parse_inner(s: &str) -> Result<NameAddr, &'static str> {
        let b = s.as_bytes();
        if b.is_empty() {
            return Err("empty address");
        }
        let (display_name, lt) = if b[0] == b'"' {
            let end = scan_quoted(b, 0)?;
            let mut i = end;
            while i < b.len() && is_ws(b[i]) {
                i += 1;
            }
            if b.get(i) != Some(&b'<') {
                return Err("quoted display name not followed by '<'");
            }
            (Some(unquote(&s[..end])), Some(i))
        } else {
            match s.find('<') {
                // A `<` after the first `;` would sit inside a parameter of an addr-spec,
                // where it is not allowed anyway; treat only an earlier one as name-addr.
                Some(i) if !matches!(s.find(';'), Some(semi) if semi < i) => {
                    let name = s[..i].trim_end();
                    // `*(token LWS)`: tokens separated by whitespace. RFC 4475 3.1.1.6 asks
                    // us to accept `caller<sip:...>` with no LWS before `<`.
                    if !name.bytes().all(|c| is_token_char(c) || is_ws(c)) {
                        return Err("display name is neither a token list nor quoted");
                    }
                    let name = (!name.is_empty()).then(|| name.to_string());
                    (name, Some(i))
                }
                _ => (None, None),
            }
        };

        match lt {
            Some(lt) => {
                let gt = s[lt..].find('>').ok_or("'<' without '>'")? + lt;
                let uri = Uri::parse(&s[lt + 1..gt]).map_err(bad_uri_reason)?;
                let params = Params::parse_header_params(&s[gt + 1..])?;
                Ok(NameAddr {
                    display_name,
                    uri,
                    params,
                })
            }
            None => {
                let end = s.find(';').unwrap_or(s.len());
                let uri_text = s[..end].trim_end();
                if uri_text.contains(['?', ',']) {
                    return Err("addr-spec with '?' or ',' must be enclosed in '<>'");
                }
                let uri = Uri::parse(uri_text).map_err(bad_uri_reason)?;
                let params = Params::parse_header_params(&s[end..])?;
                Ok(NameAddr {
                    display_name: None,
                    uri,
                    params,
                })
            }
        }
    }
}

fn bad_uri_reason(e: SipError) -> &'static str {
    match e {
        SipError::BadUri(why) => why,
        _ => "bad URI",
    }
}

impl fmt::Display for NameAddr {
    /// Always writes the name-addr form (angle brackets), which is unambiguous for any URI.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(name) = &self.display_name {
            let mut q = String::with_capacity(name.len() + 2);
            write_quoted(&mut q, name);
            write!(f, "{q} ")?;
        }
        write!(f, "<{}>{}", self.uri, self.params)
    }
}

impl FromStr for NameAddr {
    type Err = SipError;
    fn from_str(s: &str) -> Result<NameAddr, SipError> {
        NameAddr::parse(s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn na(s: &str) -> NameAddr {
        NameAddr::parse(s).unwrap()
    }

    #[test]
    fn quoted_display_names_with_escapes() {
        let a = na(r#""J Rosenberg \\\""       <sip:jdrosen@example.com>  ;  tag = 98asjd8"#);
        assert_eq!(a.display_name.as_deref(), Some(r#"J Rosenberg \""#));
        assert_eq!(a.tag(), Some("98asjd8"));
        let a = na(
            r#""Quoted string \"\"" <sip:jdrosen@example.com> ; newparam = newvalue ; secondparam ; q = 0.33"#,
        );
        assert_eq!(a.display_name.as_deref(), Some(r#"Quoted string """#));
        assert_eq!(a.params.len(), 3);
        assert_eq!(a.params.value("q"), Some("0.33"));
    }

    #[test]
    fn token_display_names() {
        let a = na("caller<sip:caller@example.com>;tag=323");
        assert_eq!(a.display_name.as_deref(), Some("caller"));
        let a = na("token1~` token2'+_ token3*%!.- <sip:mundane@example.com>;tag=_token~1'+`*%!-.");
        assert_eq!(
            a.display_name.as_deref(),
            Some("token1~` token2'+_ token3*%!.-")
        );
        assert_eq!(a.tag(), Some("_token~1'+`*%!-."));
        assert!(NameAddr::parse("Watson, Thomas <sip:t.watson@example.org>").is_err());
    }

    #[test]
    fn addr_spec_params_belong_to_header() {
        let a = na("sip:+19725552222@gw1.example.net;unknownparam");
        assert!(a.uri.as_sip().unwrap().params.is_empty());
        assert_eq!(a.params.get("unknownparam"), Some(None));
        let a = na("<sip:+19725552222@gw1.example.net;unknownparam>");
        assert!(a.params.is_empty());
        assert_eq!(
            a.uri.as_sip().unwrap().params.get("unknownparam"),
            Some(None)
        );
        let a = na("sip:+16505552222@ss1.example.net;user=phone");
        assert_eq!(a.params.value("user"), Some("phone"));
    }

    #[test]
    fn rejects_malformed() {
        for bad in [
            "",
            r#""Mr. J. User <sip:j.user@example.com>"#,
            "\"A\" sip:a@b",
            "< sip:t.watson@example.org >",
            "<sip:a@b",
            "sip:user@example.com?Route=%3Csip:sip.example.com%3E",
            "<sip:a@b>;;;;",
            "<sip:a@b> junk",
        ] {
            assert!(NameAddr::parse(bad).is_err(), "{bad:?} should be rejected");
        }
    }

    #[test]
    fn display_round_trip() {
        for s in [
            "\"BEL:\\\u{7} NUL:\\\0 DEL:\\\u{7f}\\\\\" <sip:x@example.com>",
            "<sip:a@b;lr>;tag=1;x",
            "isbn:2983792873",
            "<name:John_Smith>",
        ] {
            let a = na(s);
            assert_eq!(na(&a.to_string()), a, "{s}");
        }
    }
}
