//! [`Params`]: an ordered list of `;name[=value]` parameters, as carried by URIs, name-addr
//! headers (`tag`, `expires`, `q`) and Via (`branch`, `received`, `rport`).

use std::fmt;

use super::lex::{is_token_char, is_ws, scan_quoted, scan_token, skip_ws};

/// Ordered `(name, value)` parameters. Order and spelling are kept as received so that a
/// message re-serialises faithfully; lookups compare names ASCII-case-insensitively, as RFC
/// 3261 requires for parameter names. Values are kept raw (a quoted value keeps its quotes).
///
/// ```
/// use siprtmp_core::sip::Params;
/// let mut p = Params::new();
/// p.push("tag", Some("a8"));
/// p.push("lr", None);
/// assert_eq!(p.get("TAG"), Some(Some("a8")));
/// assert_eq!(p.get("lr"), Some(None));
/// assert_eq!(p.to_string(), ";tag=a8;lr");
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Params {
    list: Vec<(String, Option<String>)>,
}

impl Params {
    /// An empty list.
    pub fn new() -> Params {
        Params { list: Vec::new() }
    }

    /// Appends a parameter (no de-duplication: the wire may carry repeats).
    pub fn push(&mut self, name: &str, value: Option<&str>) {
        self.list
            .push((name.to_string(), value.map(str::to_string)));
    }

    /// Replaces the first parameter called `name` (or appends one).
    pub fn set(&mut self, name: &str, value: Option<&str>) {
        match self
            .list
            .iter_mut()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
        {
            Some(slot) => slot.1 = value.map(str::to_string),
            None => self.push(name, value),
        }
    }

    /// Removes every parameter called `name`; returns whether any was present.
    pub fn remove(&mut self, name: &str) -> bool {
        let before = self.list.len();
        self.list.retain(|(n, _)| !n.eq_ignore_ascii_case(name));
        before != self.list.len()
    }

    /// `None` if absent, `Some(None)` for a valueless flag, `Some(Some(v))` otherwise.
    pub fn get(&self, name: &str) -> Option<Option<&str>> {
        self.list
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_deref())
    }

    /// The value of `name` if it is present with a value.
    pub fn value(&self, name: &str) -> Option<&str> {
        self.get(name).flatten()
    }

    /// True if a parameter called `name` is present (with or without value).
    pub fn contains(&self, name: &str) -> bool {
        self.get(name).is_some()
    }

    /// Parameters in wire order.
    pub fn iter(&self) -> impl Iterator<Item = (&str, Option<&str>)> {
        self.list.iter().map(|(n, v)| (n.as_str(), v.as_deref()))
    }

    /// Number of parameters.
    pub fn len(&self) -> usize {
        self.list.len()
    }

    /// True if there are no parameters.
    pub fn is_empty(&self) -> bool {
        self.list.is_empty()
    }

    /// Parses header parameters (`generic-param` of RFC 3261): `*( SEMI name [EQUAL value] )`
    /// where SEMI and EQUAL admit surrounding whitespace and a value is a token, a host
    /// (which adds `:`, `[` and `]` for IPv6) or a quoted string. Empty names (`;;`) are
    /// rejected.
    pub(crate) fn parse_header_params(s: &str) -> Result<Params, &'static str> {
        let b = s.as_bytes();
        let mut params = Params::new();
        let mut i = skip_ws(b, 0);
        while i < b.len() {
            if b[i] != b';' {
                return Err("expected ';' before a parameter");
            }
            i = skip_ws(b, i + 1);
            let name_end = scan_token(b, i);
            if name_end == i {
                return Err("empty parameter name");
            }
            let name = &s[i..name_end];
            i = skip_ws(b, name_end);
            let mut value = None;
            if i < b.len() && b[i] == b'=' {
                i = skip_ws(b, i + 1);
                let v_end = if i < b.len() && b[i] == b'"' {
                    scan_quoted(b, i)?
                } else {
                    let mut j = i;
                    while j < b.len() && (is_token_char(b[j]) || matches!(b[j], b':' | b'[' | b']'))
                    {
                        j += 1;
                    }
                    j
                };
                if v_end == i {
                    return Err("empty parameter value");
                }
                value = Some(&s[i..v_end]);
                i = skip_ws(b, v_end);
            }
            if i < b.len() && !is_ws(b[i]) && b[i] != b';' {
                return Err("unexpected character in parameters");
            }
            params.push(name, value);
        }
        Ok(params)
    }
}

impl fmt::Display for Params {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (name, value) in &self.list {
            match value {
                Some(v) => write!(f, ";{name}={v}")?,
                None => write!(f, ";{name}")?,
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_params_with_lws_and_quotes() {
        let p = Params::parse_header_params(" ; newparam =\t newvalue ;  secondparam ; q = 0.33")
            .unwrap();
        let v: Vec<_> = p.iter().collect();
        assert_eq!(
            v,
            vec![
                ("newparam", Some("newvalue")),
                ("secondparam", None),
                ("q", Some("0.33"))
            ]
        );
        let p = Params::parse_header_params(r#";x="a;b";received=[2001:db8::1]"#).unwrap();
        assert_eq!(p.value("x"), Some(r#""a;b""#));
        assert_eq!(p.value("received"), Some("[2001:db8::1]"));
    }

    #[test]
    fn header_params_reject_garbage() {
        assert!(Params::parse_header_params(";;").is_err());
        assert!(Params::parse_header_params(";a=").is_err());
        assert!(Params::parse_header_params("a").is_err());
        assert!(Params::parse_header_params(";a=\"open").is_err());
        assert!(Params::parse_header_params(";a b").is_err());
    }
}
