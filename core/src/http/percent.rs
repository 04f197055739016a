//! [`decode_segment`]: a path segment's percent-encoding (RFC 3986 2.1) undone, so that the
//! API can name a stream whatever its name holds (`/api/v1/streams/live/my%20cam/...`).

/// `segment` with each `%XX` replaced by its byte; `None` when an escape is not two hex
/// digits or the bytes are not UTF-8 (a stream name is text). `+` stays `+`: it means a space
/// only in form data, not in a path.
///
/// ```
/// use siprtmp_core::http::percent::decode_segment;
/// assert_eq!(decode_segment("my%20cam").as_deref(), Some("my cam"));
/// assert_eq!(decode_segment("a+b").as_deref(), Some("a+b"));
/// assert_eq!(decode_segment("100%"), None);
/// ```
pub fn decode_segment(segment: &str) -> Option<String> {
    let bytes = segment.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = bytes.get(i + 1..i + 3)?;
            let high = hex_value(hex[0])?;
            let low = hex_value(hex[1])?;
            out.push(high << 4 | low);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

fn hex_value(digit: u8) -> Option<u8> {
    match digit {
        b'0'..=b'9' => Some(digit - b'0'),
        b'a'..=b'f' => Some(digit - b'a' + 10),
        b'A'..=b'F' => Some(digit - b'A' + 10),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// Every byte but the unreserved ones escaped, as a careful client would.
    fn encode(text: &str) -> String {
        text.bytes()
            .map(|b| {
                if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
                    (b as char).to_string()
                } else {
                    format!("%{b:02X}")
                }
            })
            .collect()
    }

    #[test]
    fn bad_escapes_and_bytes_that_are_not_text_are_refused() {
        assert_eq!(decode_segment("%"), None);
        assert_eq!(decode_segment("%4"), None);
        assert_eq!(decode_segment("%zz"), None);
        assert_eq!(decode_segment("%FF"), None, "not UTF-8");
        assert_eq!(decode_segment("%C3%A9").as_deref(), Some("é"));
        assert_eq!(decode_segment("").as_deref(), Some(""));
    }

    proptest! {
        /// Any text encoded reads back the same.
        #[test]
        fn encoded_text_decodes_back(text in any::<String>()) {
            prop_assert_eq!(decode_segment(&encode(&text)), Some(text));
        }

        /// Whatever a client sends: no panic, and what decodes is text no longer than what
        /// was sent.
        #[test]
        fn hostile_segments_never_panic(segment in "[%0-9a-fA-FzZ/ +\u{e9}]{0,40}") {
            if let Some(text) = decode_segment(&segment) {
                prop_assert!(text.len() <= segment.len());
            }
        }
    }
}
