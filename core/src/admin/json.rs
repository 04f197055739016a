//! [`Json`]: a small writer of JSON text for the HTTP API, escaping strings as RFC 8259 says
//! (quotes, backslashes and control characters; everything else passes as UTF-8).

use std::fmt::Write;

/// JSON text being written: objects and arrays opened and closed in order, commas placed by
/// the writer. The type is crate-private, so the example is not a doc test: the unit tests
/// below check the same.
///
/// ```text
/// let mut json = Json::default();
/// json.open_object();
/// json.key("name").string("a\"b");
/// json.key("n").number(3);
/// json.close_object();
/// assert_eq!(json.finish(), r#"{"name":"a\"b","n":3}"#);
/// ```
#[derive(Debug, Default)]
pub(crate) struct Json {
    out: String,
    /// Whether the next value in the innermost container needs a comma first.
    comma: bool,
}

impl Json {
    fn separator(&mut self) {
        if self.comma {
            self.out.push(',');
        }
        self.comma = true;
    }

    pub(crate) fn open_object(&mut self) -> &mut Self {
        self.separator();
        self.out.push('{');
        self.comma = false;
        self
    }

    pub(crate) fn close_object(&mut self) -> &mut Self {
        self.out.push('}');
        self.comma = true;
        self
    }

    pub(crate) fn open_array(&mut self) -> &mut Self {
        self.separator();
        self.out.push('[');
        self.comma = false;
        self
    }

    pub(crate) fn close_array(&mut self) -> &mut Self {
        self.out.push(']');
        self.comma = true;
        self
    }

    /// An object's key; the value follows.
    pub(crate) fn key(&mut self, key: &str) -> &mut Self {
        self.separator();
        escape_into(&mut self.out, key);
        self.out.push(':');
        self.comma = false;
        self
    }

    pub(crate) fn string(&mut self, value: &str) -> &mut Self {
        self.separator();
        escape_into(&mut self.out, value);
        self
    }

    pub(crate) fn number(&mut self, value: impl Into<f64>) -> &mut Self {
        self.separator();
        let value: f64 = value.into();
        if value.is_finite() {
            let _ = write!(self.out, "{value}");
        } else {
            self.out.push_str("null");
        }
        self
    }

    pub(crate) fn integer(&mut self, value: u64) -> &mut Self {
        self.separator();
        let _ = write!(self.out, "{value}");
        self
    }

    pub(crate) fn boolean(&mut self, value: bool) -> &mut Self {
        self.separator();
        self.out.push_str(if value { "true" } else { "false" });
        self
    }

    pub(crate) fn null(&mut self) -> &mut Self {
        self.separator();
        self.out.push_str("null");
        self
    }

    /// A string, or `null` for `None`.
    pub(crate) fn opt_string(&mut self, value: Option<&str>) -> &mut Self {
        match value {
            Some(v) => self.string(v),
            None => self.null(),
        }
    }

    /// An integer, or `null` for `None`.
    pub(crate) fn opt_integer(&mut self, value: Option<u64>) -> &mut Self {
        match value {
            Some(v) => self.integer(v),
            None => self.null(),
        }
    }

    pub(crate) fn finish(self) -> String {
        self.out
    }
}

/// Writes `s` as a JSON string, quotes included.
pub(crate) fn escape_into(out: &mut String, s: &str) {
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if (c as u32) < 0x20 || c == '\u{7f}' => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('"');
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn nested_containers_place_their_commas() {
        let mut json = Json::default();
        json.open_object();
        json.key("a").open_array();
        json.integer(1).string("x").null();
        json.open_object().key("b").boolean(true).close_object();
        json.close_array();
        json.key("c").number(1.5).key("d").number(f64::NAN);
        json.close_object();
        assert_eq!(
            json.finish(),
            r#"{"a":[1,"x",null,{"b":true}],"c":1.5,"d":null}"#
        );
    }

    /// Reads back a string escaped by [`escape_into`] (the escapes it writes, nothing more).
    fn unescape(s: &str) -> Option<String> {
        let inner = s.strip_prefix('"')?.strip_suffix('"')?;
        let mut out = String::new();
        let mut chars = inner.chars();
        while let Some(c) = chars.next() {
            match c {
                '\\' => match chars.next()? {
                    '"' => out.push('"'),
                    '\\' => out.push('\\'),
                    'n' => out.push('\n'),
                    'r' => out.push('\r'),
                    't' => out.push('\t'),
                    'u' => {
                        let hex: String = chars.by_ref().take(4).collect();
                        out.push(char::from_u32(u32::from_str_radix(&hex, 16).ok()?)?);
                    }
                    _ => return None,
                },
                '"' => return None,
                c if (c as u32) < 0x20 => return None,
                c => out.push(c),
            }
        }
        Some(out)
    }

    proptest! {
        /// Any string (a stream name is the publisher's choice) comes out as one valid JSON
        /// string that reads back the same.
        #[test]
        fn any_string_escapes_and_reads_back(s in any::<String>()) {
            let mut out = String::new();
            escape_into(&mut out, &s);
            prop_assert_eq!(unescape(&out), Some(s));
        }
    }
}
