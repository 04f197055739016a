//! Auth-params: `Digest a=b, c="d"` split into its parameters (hostile input gets an error,
//! never a panic; the count is capped), and written back.

use crate::sip::lex::{is_ws, scan_quoted, scan_token, skip_ws, unquote};

use super::*;

/// One `name=value` auth-param with its value unquoted.
pub(super) struct RawParam<'a> {
    pub(super) name: &'a str,
    pub(super) value: String,
}

/// Splits `Digest a=b, c="d"` into its params. Hostile input gets an error, never a panic;
/// the parameter count is capped at [`MAX_PARAMS`].
pub(super) fn parse_auth_params(value: &str) -> Result<Vec<RawParam<'_>>, DigestError> {
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
pub(super) fn check_unique(params: &[RawParam<'_>], known: &[&str]) -> Result<(), DigestError> {
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
