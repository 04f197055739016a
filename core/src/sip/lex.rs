//! Lexical building blocks of RFC 3261 section 25.1 shared by the URI, name-addr, Via and
//! header parsers: character classes, LWS skipping, tokens, quoted strings, `%HH` escapes and
//! comma-list splitting. Everything here works on already-unfolded header values.

/// `token` characters: alphanum / `-` `.` `!` `%` `*` `_` `+` `` ` `` `'` `~`.
pub(crate) fn is_token_char(b: u8) -> bool {
    b.is_ascii_alphanumeric()
        || matches!(
            b,
            b'-' | b'.' | b'!' | b'%' | b'*' | b'_' | b'+' | b'`' | b'\'' | b'~'
        )
}

/// True if `s` is a non-empty `token`.
pub(crate) fn is_token(s: &str) -> bool {
    !s.is_empty() && s.bytes().all(is_token_char)
}

/// `unreserved` = alphanum / mark.
pub(crate) fn is_unreserved(b: u8) -> bool {
    b.is_ascii_alphanumeric()
        || matches!(
            b,
            b'-' | b'_' | b'.' | b'!' | b'~' | b'*' | b'\'' | b'(' | b')'
        )
}

/// Space or horizontal tab (folding has already turned line breaks into spaces).
pub(crate) fn is_ws(b: u8) -> bool {
    b == b' ' || b == b'\t'
}

/// Index of the first non-whitespace byte at or after `i`.
pub(crate) fn skip_ws(s: &[u8], mut i: usize) -> usize {
    while i < s.len() && is_ws(s[i]) {
        i += 1;
    }
    i
}

/// Index just past the run of token characters starting at `i`.
pub(crate) fn scan_token(s: &[u8], mut i: usize) -> usize {
    while i < s.len() && is_token_char(s[i]) {
        i += 1;
    }
    i
}

/// `s[i]` must be `"`. Returns the index just past the closing quote. Quoted pairs (`\x`) may
/// escape any byte but CR and LF; raw control characters other than tab are rejected, as
/// `qdtext` does not admit them.
pub(crate) fn scan_quoted(s: &[u8], i: usize) -> Result<usize, &'static str> {
    debug_assert_eq!(s.get(i), Some(&b'"'));
    let mut j = i + 1;
    while j < s.len() {
        match s[j] {
            b'"' => return Ok(j + 1),
            b'\\' => {
                match s.get(j + 1) {
                    None => return Err("unterminated quoted string"),
                    Some(b'\r') | Some(b'\n') => return Err("quoted pair escapes a line break"),
                    Some(_) => {}
                }
                // A quoted pair escapes one octet; a multi-byte UTF-8 character after `\` is
                // outside the grammar but harmless, so step over the whole character.
                j += 1 + utf8_len(s[j + 1]);
            }
            b'\t' => j += 1,
            c if c < 0x20 || c == 0x7f => return Err("control character in quoted string"),
            _ => j += 1,
        }
    }
    Err("unterminated quoted string")
}

/// Length of the UTF-8 sequence introduced by lead byte `b` (1 for ASCII or stray bytes).
fn utf8_len(b: u8) -> usize {
    match b {
        0xc0..=0xdf => 2,
        0xe0..=0xef => 3,
        0xf0..=0xf7 => 4,
        _ => 1,
    }
}

/// The content of a quoted string (`raw` includes both quotes) with quoted pairs resolved.
pub(crate) fn unquote(raw: &str) -> String {
    let inner = &raw[1..raw.len() - 1];
    let mut out = String::with_capacity(inner.len());
    let mut chars = inner.chars();
    while let Some(c) = chars.next() {
        if c == '\\' {
            if let Some(n) = chars.next() {
                out.push(n);
            }
        } else {
            out.push(c);
        }
    }
    out
}

/// Writes `s` as a quoted string, escaping `"`, `\` and control characters. CR and LF cannot
/// be carried by a quoted pair, so they are dropped.
pub(crate) fn write_quoted(out: &mut String, s: &str) {
    out.push('"');
    for c in s.chars() {
        match c {
            '\r' | '\n' => {}
            '"' | '\\' => {
                out.push('\\');
                out.push(c);
            }
            c if (c as u32) < 0x20 && c != '\t' || c as u32 == 0x7f => {
                out.push('\\');
                out.push(c);
            }
            c => out.push(c),
        }
    }
    out.push('"');
}

/// True if every byte of `s` is allowed by `ok` or is part of a well-formed `%HH` escape.
pub(crate) fn valid_escaped(s: &str, ok: fn(u8) -> bool) -> bool {
    let b = s.as_bytes();
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' {
            if i + 2 >= b.len() {
                return false;
            }
            if !(b[i + 1].is_ascii_hexdigit() && b[i + 2].is_ascii_hexdigit()) {
                return false;
            }
            i += 3;
        } else if ok(b[i]) {
            i += 1;
        } else {
            return false;
        }
    }
    true
}

/// Resolves `%HH` escapes. Malformed escapes are kept literally (the parser has already
/// rejected them where the grammar requires well-formed ones).
pub(crate) fn pct_decode(s: &str) -> Vec<u8> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' && i + 2 < b.len() {
            if let (Some(h), Some(l)) = (hex(b[i + 1]), hex(b[i + 2])) {
                out.push(h << 4 | l);
                i += 3;
                continue;
            }
        }
        out.push(b[i]);
        i += 1;
    }
    out
}

fn hex(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

/// Splits a header value at top-level commas: commas inside quoted strings or inside `<...>`
/// do not count. Items are trimmed; empty items are kept so that typed parsers can reject
/// them (`Via: a,,b` is malformed).
pub(crate) fn split_list(s: &str) -> Vec<&str> {
    let b = s.as_bytes();
    let mut items = Vec::new();
    let mut start = 0;
    let mut i = 0;
    let mut in_angle = false;
    while i < b.len() {
        match b[i] {
            b'"' => {
                // An unterminated quote swallows the rest; the item parser will reject it.
                i = scan_quoted(b, i).unwrap_or(b.len());
                continue;
            }
            b'<' => in_angle = true,
            b'>' => in_angle = false,
            b',' if !in_angle => {
                items.push(s[start..i].trim());
                start = i + 1;
            }
            _ => {}
        }
        i += 1;
    }
    items.push(s[start..].trim());
    items
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quoted_strings_resolve_pairs() {
        let raw = r#""J Rosenberg \\\"""#;
        assert_eq!(scan_quoted(raw.as_bytes(), 0), Ok(raw.len()));
        assert_eq!(unquote(raw), r#"J Rosenberg \""#);
        assert!(scan_quoted(b"\"open", 0).is_err());
        assert!(scan_quoted(b"\"a\\", 0).is_err());
    }

    #[test]
    fn write_quoted_round_trips() {
        let mut out = String::new();
        write_quoted(&mut out, "a \"b\" \\ \u{7}");
        assert_eq!(scan_quoted(out.as_bytes(), 0), Ok(out.len()));
        assert_eq!(unquote(&out), "a \"b\" \\ \u{7}");
    }

    #[test]
    fn escapes() {
        assert_eq!(pct_decode("null-%00-null"), b"null-\0-null");
        assert_eq!(pct_decode("%4"), b"%4");
        assert_eq!(pct_decode("v%61lue%25%34%31"), b"value%41");
        assert!(valid_escaped("a%20b", is_unreserved));
        assert!(!valid_escaped("a%2", is_unreserved));
        assert!(!valid_escaped("a%", is_unreserved));
        assert!(!valid_escaped("a%zz", is_unreserved));
    }

    #[test]
    fn list_split_respects_quotes_and_angles() {
        assert_eq!(
            split_list(r#""a, b" <sip:x@y;p=1,2>;q=1 , <sip:z>"#),
            vec![r#""a, b" <sip:x@y;p=1,2>;q=1"#, "<sip:z>"]
        );
        assert_eq!(split_list("a,,b"), vec!["a", "", "b"]);
    }
}
