//! Configuration errors and how they read: every bad setting is reported once, on one
//! message, naming where it came from. A value from the config file names the file, line and
//! column, the key as a dotted path (`rtmp.chunk_size`, `apps.live.publish_allow[1]`) and
//! shows the offending line with the value underlined; a value from a flag names the flag
//! and the config key that does the same. toml's own errors (types, unknown keys) are
//! rephrased the same way, with a "did you mean" for a misspelt key.

use std::fmt::{self, Write as _};
use std::ops::Range;
use std::path::{Path, PathBuf};

/// One step of a key path: a table key or an array index.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Step {
    Key(String),
    Index(usize),
}

/// A key of the config file as a path from the top (`rtmp.chunk_size`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct KeyPath(pub Vec<Step>);

impl KeyPath {
    /// The path of dotted bare keys (`"rtmp.chunk_size"`); for names with dots, build it
    /// with [`KeyPath::key`].
    pub(crate) fn new(dotted: &str) -> Self {
        Self(dotted.split('.').map(|k| Step::Key(k.to_owned())).collect())
    }

    /// This path followed by the key `name`.
    pub(crate) fn key(&self, name: &str) -> Self {
        let mut steps = self.0.clone();
        steps.push(Step::Key(name.to_owned()));
        Self(steps)
    }

    /// This path followed by the array index `i`.
    pub(crate) fn index(&self, i: usize) -> Self {
        let mut steps = self.0.clone();
        steps.push(Step::Index(i));
        Self(steps)
    }

    /// The table holding this key (the path without its last step).
    fn parent(&self) -> Self {
        let mut steps = self.0.clone();
        steps.pop();
        Self(steps)
    }
}

impl fmt::Display for KeyPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, step) in self.0.iter().enumerate() {
            match step {
                Step::Key(k) => {
                    if i > 0 {
                        f.write_char('.')?;
                    }
                    let bare = !k.is_empty()
                        && k.chars()
                            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
                    if bare {
                        f.write_str(k)?;
                    } else {
                        write!(f, "{k:?}")?;
                    }
                }
                Step::Index(n) => write!(f, "[{n}]")?,
            }
        }
        Ok(())
    }
}

/// Where a bad value came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Origin {
    /// A flag; `key` is the config key that sets the same thing, if there is one.
    Flag {
        flag: &'static str,
        key: Option<KeyPath>,
    },
    /// A key of the config file; `flag` is the flag that overrides it, if there is one.
    Key {
        key: KeyPath,
        flag: Option<&'static str>,
    },
}

impl Origin {
    /// The value came from `flag` (config key `key`).
    pub(crate) fn flag(flag: &'static str, key: &str) -> Self {
        Self::Flag {
            flag,
            key: Some(KeyPath::new(key)),
        }
    }

    /// The value came from the config key `key` (overridden by `flag`).
    pub(crate) fn key(key: &str, flag: Option<&'static str>) -> Self {
        Self::Key {
            key: KeyPath::new(key),
            flag,
        }
    }
}

/// The flag's value if given, else the config file's, with where it came from.
pub(crate) fn pick<T>(
    flag_value: Option<T>,
    flag: &'static str,
    file_value: Option<T>,
    key: &str,
) -> Option<(T, Origin)> {
    match flag_value {
        Some(v) => Some((v, Origin::flag(flag, key))),
        None => file_value.map(|v| (v, Origin::key(key, Some(flag)))),
    }
}

/// A setting that stops the server from starting.
#[derive(Debug)]
pub(crate) enum ConfigError {
    /// A value that is malformed or out of range: `problem` says what was expected.
    Value {
        origin: Origin,
        value: String,
        problem: String,
    },
    /// Settings that cannot go together; the message names every flag and key involved.
    Combination(String),
    /// The config file cannot be read.
    Read {
        path: PathBuf,
        error: std::io::Error,
    },
    /// toml refused the file (syntax, a type, an unknown key).
    Toml(toml::de::Error),
}

impl ConfigError {
    /// A value error.
    pub(crate) fn value(
        origin: Origin,
        value: impl fmt::Display,
        problem: impl Into<String>,
    ) -> Self {
        Self::Value {
            origin,
            value: value.to_string(),
            problem: problem.into(),
        }
    }

    /// The one message an operator reads, with the file's text when there is one.
    pub(crate) fn render(&self, file: Option<&SourceFile>) -> String {
        match self {
            Self::Combination(message) => message.clone(),
            Self::Read { path, error } => read_error(path, error),
            Self::Value {
                origin: Origin::Flag { flag, key },
                value,
                problem,
            } => match key {
                Some(key) => format!("{flag} {value}: {problem} (config key {key})"),
                None => format!("{flag} {value}: {problem}"),
            },
            Self::Value {
                origin: Origin::Key { key, flag },
                value,
                problem,
            } => {
                let also = flag.map_or_else(String::new, |f| format!(" (flag {f})"));
                let Some(file) = file else {
                    return format!("{key} = {value}: {problem}{also}");
                };
                // The value as the file spells it (quotes and all), where it can be found.
                let span = file.locate(key);
                let raw = span.as_ref().and_then(|s| file.text.get(s.clone()));
                let shown = raw.filter(|r| !r.contains('\n')).unwrap_or(value);
                file.at(span, &format!("{key} = {shown}: {problem}{also}"))
            }
            Self::Toml(error) => match file {
                Some(file) => file.toml_error(error),
                None => error.message().to_owned(),
            },
        }
    }
}

fn read_error(path: &Path, error: &std::io::Error) -> String {
    let shown = match std::path::absolute(path) {
        Ok(abs) if abs != path => format!("{} ({})", path.display(), abs.display()),
        _ => path.display().to_string(),
    };
    match error.kind() {
        std::io::ErrorKind::NotFound => format!("config file {shown} does not exist"),
        std::io::ErrorKind::PermissionDenied => {
            format!("config file {shown} cannot be read: permission denied")
        }
        _ => format!("config file {shown} cannot be read: {error}"),
    }
}

/// Where a key and its value are in the file.
#[derive(Debug, Clone)]
struct Entry {
    path: KeyPath,
    key: Option<Range<usize>>,
    value: Option<Range<usize>>,
}

/// The config file's text and the place of each of its keys.
#[derive(Debug)]
pub(crate) struct SourceFile {
    path: PathBuf,
    text: String,
    entries: Vec<Entry>,
    /// Keys that belong outside any `[section]`, to spot one written below a header.
    top_level: &'static [&'static str],
}

impl SourceFile {
    /// Indexes `text`, read from `path` (a file that does not parse indexes nothing; toml's
    /// error then says where).
    pub(crate) fn new(path: PathBuf, text: String) -> Self {
        let mut entries = Vec::new();
        if let Ok(doc) = toml_edit::ImDocument::parse(text.as_str()) {
            walk_table(doc.as_table(), &KeyPath::default(), &mut entries);
        }
        Self {
            path,
            text,
            entries,
            top_level: &[],
        }
    }

    /// Names the keys that belong outside any `[section]`: an unknown key in a section that
    /// is one of them is reported as misplaced (a common TOML slip: top-level keys written
    /// after a header belong to that header's table).
    pub(crate) fn with_top_level_keys(mut self, keys: &'static [&'static str]) -> Self {
        self.top_level = keys;
        self
    }

    /// The file's text.
    pub(crate) fn text(&self) -> &str {
        &self.text
    }

    /// The bytes of `key`'s value (else of the key itself).
    fn locate(&self, key: &KeyPath) -> Option<Range<usize>> {
        let entry = self.entries.iter().find(|e| &e.path == key)?;
        entry.value.clone().or_else(|| entry.key.clone())
    }

    /// The deepest entry whose key or value holds `span`.
    fn entry_at(&self, span: &Range<usize>) -> Option<&Entry> {
        let holds = |r: &Option<Range<usize>>| {
            r.as_ref()
                .is_some_and(|r| r.start <= span.start && span.end <= r.end.max(r.start + 1))
        };
        self.entries
            .iter()
            .filter(|e| holds(&e.key) || holds(&e.value))
            .max_by_key(|e| e.path.0.len())
    }

    /// `PATH:LINE:COL: message` and the line with `span` underlined; `PATH: message` when the
    /// place is unknown.
    fn at(&self, span: Option<Range<usize>>, message: &str) -> String {
        let Some(span) = span else {
            return format!("{}: {message}", self.path.display());
        };
        let start = span.start.min(self.text.len());
        let line_start = self.text[..start].rfind('\n').map_or(0, |i| i + 1);
        let line_end = self.text[start..]
            .find('\n')
            .map_or(self.text.len(), |i| start + i);
        let line_text = self.text[line_start..line_end].trim_end_matches('\r');
        let line = self.text[..line_start].matches('\n').count() + 1;
        let column = self.text[line_start..start].chars().count() + 1;
        // Underline the span within its first line, keeping tabs so the carets line up.
        let pad: String = self.text[line_start..start]
            .chars()
            .map(|c| if c == '\t' { '\t' } else { ' ' })
            .collect();
        let end = span.end.clamp(start, line_start + line_text.len());
        let width = self.text[start..end].chars().count().max(1);
        let gutter = " ".repeat(line.to_string().len());
        format!(
            "{}:{line}:{column}: {message}\n{gutter} |\n{line} | {line_text}\n{gutter} | {pad}{}",
            self.path.display(),
            "^".repeat(width)
        )
    }

    /// toml's error, rephrased with the key's path.
    fn toml_error(&self, error: &toml::de::Error) -> String {
        let span = error.span();
        let key = span
            .as_ref()
            .and_then(|s| self.entry_at(s))
            .map(|e| &e.path);
        // One line: toml puts what it expected on a line of its own.
        let message = error
            .message()
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty())
            .collect::<Vec<_>>()
            .join(": ");
        let message = message.as_str();
        let text = match (key, unknown_name(message, "unknown field `")) {
            (Some(key), Some((name, known))) => {
                let table = key.parent();
                let place = if table.0.is_empty() {
                    "the top level".to_owned()
                } else {
                    format!("[{table}]")
                };
                let hint = if !table.0.is_empty() && self.top_level.contains(&name.as_str()) {
                    format!(" (`{name}` is a top-level key: move it above the first [section])")
                } else {
                    did_you_mean(&name, &known)
                };
                let takes = if known.is_empty() {
                    "takes no keys".to_owned()
                } else {
                    format!("takes {}", known.join(", "))
                };
                format!("unknown key `{key}`{hint}; {place} {takes}")
            }
            _ => {
                let what = rephrase(message);
                match key {
                    Some(key) => format!("{key}: {what}"),
                    None => what,
                }
            }
        };
        self.at(span, &text)
    }
}

fn walk_table(table: &toml_edit::Table, path: &KeyPath, out: &mut Vec<Entry>) {
    for (name, _) in table.iter() {
        if let Some((key, item)) = table.get_key_value(name) {
            walk_item(path.key(name), key.span(), item, out);
        }
    }
}

fn walk_item(
    path: KeyPath,
    key: Option<Range<usize>>,
    item: &toml_edit::Item,
    out: &mut Vec<Entry>,
) {
    out.push(Entry {
        path: path.clone(),
        key,
        value: item.span(),
    });
    match item {
        toml_edit::Item::Table(t) => walk_table(t, &path, out),
        toml_edit::Item::ArrayOfTables(a) => {
            for (i, t) in a.iter().enumerate() {
                let at = path.index(i);
                out.push(Entry {
                    path: at.clone(),
                    key: None,
                    value: t.span(),
                });
                walk_table(t, &at, out);
            }
        }
        toml_edit::Item::Value(v) => walk_value(&path, v, out),
        toml_edit::Item::None => {}
    }
}

fn walk_value(path: &KeyPath, value: &toml_edit::Value, out: &mut Vec<Entry>) {
    match value {
        toml_edit::Value::InlineTable(t) => {
            for (name, _) in t.iter() {
                if let Some((key, item)) = t.get_key_value(name) {
                    walk_item(path.key(name), key.span(), item, out);
                }
            }
        }
        toml_edit::Value::Array(a) => {
            for (i, v) in a.iter().enumerate() {
                let at = path.index(i);
                out.push(Entry {
                    path: at.clone(),
                    key: None,
                    value: v.span(),
                });
                walk_value(&at, v, out);
            }
        }
        _ => {}
    }
}

/// From serde's `unknown field `x`, expected one of `a`, `b`` (or `unknown variant ...`):
/// the name and the accepted ones.
fn unknown_name(message: &str, prefix: &str) -> Option<(String, Vec<String>)> {
    let rest = message.strip_prefix(prefix)?;
    let (name, rest) = rest.split_once('`')?;
    let known = rest
        .split('`')
        .skip(1)
        .step_by(2)
        .map(str::to_owned)
        .collect();
    Some((name.to_owned(), known))
}

/// ` (did you mean `x`?)` for the closest of `known` to `name`, if it is close.
fn did_you_mean(name: &str, known: &[String]) -> String {
    let limit = name.chars().count().div_ceil(3);
    known
        .iter()
        .map(|k| (edit_distance(name, k), k))
        .filter(|(d, _)| *d <= limit.max(1))
        .min_by_key(|(d, _)| *d)
        .map_or_else(String::new, |(_, k)| format!(" (did you mean `{k}`?)"))
}

/// Edits (insert, delete, substitute, swap two neighbours) from `a` to `b`.
fn edit_distance(a: &str, b: &str) -> usize {
    let a: Vec<char> = a.chars().collect();
    let b: Vec<char> = b.chars().collect();
    // d[i][j]: distance between a[..i] and b[..j].
    let mut d = vec![vec![0usize; b.len() + 1]; a.len() + 1];
    for (i, row) in d.iter_mut().enumerate() {
        row[0] = i;
    }
    for (j, cell) in d[0].iter_mut().enumerate() {
        *cell = j;
    }
    for i in 1..=a.len() {
        for j in 1..=b.len() {
            let cost = usize::from(a[i - 1] != b[j - 1]);
            let mut best = (d[i - 1][j] + 1)
                .min(d[i][j - 1] + 1)
                .min(d[i - 1][j - 1] + cost);
            if i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1] {
                best = best.min(d[i - 2][j - 2] + 1);
            }
            d[i][j] = best;
        }
    }
    d[a.len()][b.len()]
}

/// serde's wording (`invalid type: string "abc", expected u16`) in an operator's terms
/// (`expected an integer from 0 to 65535, found string "abc"`).
fn rephrase(message: &str) -> String {
    if let Some((name, known)) = unknown_name(message, "unknown variant `") {
        let accepted: Vec<String> = known.iter().map(|k| format!("\"{k}\"")).collect();
        return format!(
            "unknown value \"{name}\"{}; expected {}",
            did_you_mean(&name, &known),
            accepted.join(" or ")
        );
    }
    if message == "invalid IP address syntax" {
        return format!("expected {}", expected_in_words("IP address"));
    }
    let found_expected = message
        .strip_prefix("invalid type: ")
        .or_else(|| message.strip_prefix("invalid value: "))
        .and_then(|rest| rest.rsplit_once(", expected "));
    match found_expected {
        Some((found, expected)) => {
            format!("expected {}, found {found}", expected_in_words(expected))
        }
        None => message.to_owned(),
    }
}

/// What a Rust type name in serde's message asks for, in words.
fn expected_in_words(expected: &str) -> String {
    match expected {
        "u8" => "an integer from 0 to 255".to_owned(),
        "u16" => "an integer from 0 to 65535".to_owned(),
        "u32" => "an integer from 0 to 4294967295".to_owned(),
        "u64" | "usize" => "a whole number, 0 or more".to_owned(),
        "i64" => "an integer".to_owned(),
        "f64" | "f32" => "a number".to_owned(),
        "a boolean" => "true or false".to_owned(),
        "IP address" => "an IP address in quotes (\"192.0.2.10\", \"::1\")".to_owned(),
        "a sequence" => "a list ([...])".to_owned(),
        "a map" => "a table".to_owned(),
        other if other.starts_with("struct ") => "a table".to_owned(),
        other => other.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file(text: &str) -> SourceFile {
        SourceFile::new(PathBuf::from("site.toml"), text.to_owned())
    }

    #[test]
    fn a_value_error_names_file_line_column_key_and_shows_the_line() {
        let f = file("port = 1935\n\n[rtmp]\nmerge_writes_ms = 5000 # long\n");
        let error = ConfigError::value(
            Origin::key("rtmp.merge_writes_ms", Some("--merge-writes")),
            5000,
            "out of range: expected 0 (off) to 1000 milliseconds",
        );
        assert_eq!(
            error.render(Some(&f)),
            "site.toml:4:19: rtmp.merge_writes_ms = 5000: out of range: expected 0 (off) to \
             1000 milliseconds (flag --merge-writes)\n  |\n4 | merge_writes_ms = 5000 # long\n  \
             |                   ^^^^"
        );
    }

    #[test]
    fn a_flag_error_names_the_flag_and_the_key() {
        let error = ConfigError::value(
            Origin::flag("--merge-writes", "rtmp.merge_writes_ms"),
            5000,
            "out of range",
        );
        assert_eq!(
            error.render(None),
            "--merge-writes 5000: out of range (config key rtmp.merge_writes_ms)"
        );
    }

    #[test]
    fn keys_in_inline_tables_arrays_and_quoted_names_are_found() {
        let f = file("[apps.\"my.app\"]\npublish_allow = [\"10.0.0.0/8\", \"bad\"]\n");
        let key = KeyPath::new("apps")
            .key("my.app")
            .key("publish_allow")
            .index(1);
        assert_eq!(key.to_string(), "apps.\"my.app\".publish_allow[1]");
        let error =
            ConfigError::value(Origin::Key { key, flag: None }, "\"bad\"", "not an address");
        let text = error.render(Some(&f));
        assert!(text.starts_with("site.toml:2:32: apps"), "{text}");
        assert!(
            text.ends_with("|                                ^^^^^"),
            "{text}"
        );
        let f = file("rtmp = { chunk_size = 1 }\n");
        assert_eq!(f.locate(&KeyPath::new("rtmp.chunk_size")), Some(22..23));
    }

    #[test]
    fn misspelt_keys_get_a_suggestion() {
        let known: Vec<String> = ["host", "port", "root"].map(String::from).to_vec();
        assert_eq!(did_you_mean("prot", &known), " (did you mean `port`?)");
        assert_eq!(did_you_mean("chunk", &known), "");
        assert_eq!(edit_distance("chunk_sise", "chunk_size"), 1);
        assert_eq!(edit_distance("", "abc"), 3);
    }

    #[test]
    fn a_top_level_key_under_a_section_is_called_misplaced() {
        let f = file("[rtmp]\nport = 1935\n").with_top_level_keys(&["host", "port"]);
        let error = toml::from_str::<Strict>(f.text()).unwrap_err();
        let text = ConfigError::Toml(error).render(Some(&f));
        assert!(
            text.starts_with(
                "site.toml:2:1: unknown key `rtmp.port` (`port` is a top-level key: move it \
                 above the first [section]); [rtmp] takes chunk_size"
            ),
            "{text}"
        );
    }

    #[test]
    fn syntax_errors_keep_their_place_on_one_line() {
        let f = file("[rtmp\n");
        let error = toml::from_str::<Strict>(f.text()).unwrap_err();
        let text = ConfigError::Toml(error).render(Some(&f));
        let first = text.lines().next().unwrap();
        assert!(
            first.starts_with("site.toml:1:6: invalid table header: expected"),
            "{text}"
        );
    }

    /// A stand-in for the real config: one section with one key.
    #[derive(Debug, serde::Deserialize)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct Strict {
        port: Option<u16>,
        rtmp: Option<StrictRtmp>,
    }

    #[derive(Debug, serde::Deserialize)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct StrictRtmp {
        chunk_size: Option<u32>,
    }

    proptest::proptest! {
        /// Whatever the file holds (any bytes of UTF-8, multi-byte characters, CRLF), its
        /// error renders without panicking, as `PATH:LINE:COL: ...` or `PATH: ...`, and the
        /// line and column point into the file.
        #[test]
        fn any_file_renders_its_error(text in "(\\PC|[\\[\\]=\"'.\r\n\t #]){0,80}") {
            let f = file(&text);
            if let Err(error) = toml::from_str::<Strict>(f.text()) {
                let rendered = ConfigError::Toml(error).render(Some(&f));
                let first = rendered.lines().next().unwrap_or_default();
                proptest::prop_assert!(first.starts_with("site.toml:"), "{}", rendered);
                let place: Vec<&str> = first.splitn(4, ':').collect();
                if let (Ok(line), Ok(_)) = (place[1].parse::<usize>(), place[2].parse::<usize>()) {
                    proptest::prop_assert!(line >= 1 && line <= text.split('\n').count());
                }
            }
        }

        /// Any key path and any span render; a located value quotes its line.
        #[test]
        fn any_key_renders(text in "[a-z_ =\"0-9\\[\\]\n]{0,60}", key in "[a-z_]{1,8}(\\.[a-z_]{1,8}){0,2}") {
            let f = file(&text);
            let error = ConfigError::value(Origin::key(&key, Some("--flag")), 1, "bad");
            let rendered = error.render(Some(&f));
            proptest::prop_assert!(rendered.starts_with("site.toml:"), "{}", rendered);
            proptest::prop_assert!(rendered.contains(&format!("{key} = ")), "{}", rendered);
        }
    }

    #[test]
    fn serde_wording_becomes_an_operators() {
        assert_eq!(
            rephrase("invalid type: string \"abc\", expected u16"),
            "expected an integer from 0 to 65535, found string \"abc\""
        );
        assert_eq!(
            rephrase("unknown variant `sometimes`, expected `all` or `off`"),
            "unknown value \"sometimes\"; expected \"all\" or \"off\""
        );
        assert_eq!(rephrase("something else"), "something else");
    }
}
