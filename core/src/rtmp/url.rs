//! [`RtmpUrl`]: an `rtmp://host[:port]/app[/name][?query]` (or `rtmps://`: RTMP over TLS)
//! URL taken apart, as relays name their upstreams (nginx-rtmp's `push` and `pull`). Parsing only: the host is kept as
//! written, and resolving it is the embedding application's business (the core never resolves
//! names).
//!
//! ```
//! use siprtmp_core::rtmp::url::RtmpUrl;
//! let url = RtmpUrl::parse("rtmp://cdn.example:1936/live/backup?token=s3cret").unwrap();
//! assert_eq!((url.host.as_str(), url.port), ("cdn.example", 1936));
//! assert_eq!((url.app.as_str(), url.name.as_deref()), ("live", Some("backup")));
//! assert_eq!(url.query.as_deref(), Some("token=s3cret"));
//! assert_eq!(url.tc_url(), "rtmp://cdn.example:1936/live?token=s3cret");
//! // What logs and the API show: no query (it may carry credentials).
//! assert_eq!(url.redacted(), "rtmp://cdn.example:1936/live/backup");
//! ```

/// The port of a URL that names none.
pub const DEFAULT_PORT: u16 = 1935;

/// The port of an `rtmps://` URL that names none (RTMPS's usual port).
pub const DEFAULT_TLS_PORT: u16 = 443;

/// Longest URL accepted (the application and stream names' own limit is 1024 bytes each).
pub const MAX_URL_LEN: usize = 2048;

/// An `rtmp://` or `rtmps://` URL taken apart.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct RtmpUrl {
    /// `rtmps://`: RTMP over TLS.
    pub tls: bool,
    /// The host as written (an IPv6 literal without its brackets).
    pub host: String,
    /// The port (1935 when the URL names none, 443 for `rtmps://`).
    pub port: u16,
    /// The application: the first segment of the path.
    pub app: String,
    /// The rest of the path, when there is one (a stream name, which may contain `/`).
    pub name: Option<String>,
    /// The query string, without its `?`, when there is one.
    pub query: Option<String>,
}

impl RtmpUrl {
    /// Parses `rtmp://HOST[:PORT]/APP[/NAME][?QUERY]` (or `rtmps://...`): a host and an
    /// application are required; no user part, no fragment, no spaces or control characters.
    ///
    /// ```
    /// use siprtmp_core::rtmp::url::RtmpUrl;
    /// assert_eq!(RtmpUrl::parse("rtmp://[::1]/app").unwrap().host, "::1");
    /// assert!(RtmpUrl::parse("http://h/app").is_err());
    /// assert!(RtmpUrl::parse("rtmp://h").is_err());
    /// assert!(RtmpUrl::parse("rtmp://user@h/app").is_err());
    /// ```
    pub fn parse(text: &str) -> Result<Self, String> {
        if text.len() > MAX_URL_LEN {
            return Err(format!("longer than {MAX_URL_LEN} bytes"));
        }
        if text.bytes().any(|b| b <= b' ' || b == 0x7f) {
            return Err("spaces and control characters are not allowed".into());
        }
        let (tls, rest) = match (text.strip_prefix("rtmp://"), text.strip_prefix("rtmps://")) {
            (Some(rest), _) => (false, rest),
            (_, Some(rest)) => (true, rest),
            _ => return Err("only rtmp:// and rtmps:// URLs are supported".into()),
        };
        if rest.contains('#') {
            return Err("a fragment (#) is not allowed".into());
        }
        let (rest, query) = match rest.split_once('?') {
            Some((before, query)) => (before, Some(query.to_owned())),
            None => (rest, None),
        };
        let (authority, path) = rest.split_once('/').unwrap_or((rest, ""));
        if authority.contains('@') {
            return Err("a user part (user@host) is not allowed".into());
        }
        let default_port = if tls { DEFAULT_TLS_PORT } else { DEFAULT_PORT };
        let (host, port) = split_authority(authority, default_port)?;
        let path = path.trim_end_matches('/');
        let (app, name) = match path.split_once('/') {
            Some((app, name)) => (app, Some(name.to_owned())),
            None => (path, None),
        };
        if app.is_empty() {
            return Err("an application is required (rtmp://host/app)".into());
        }
        if name
            .as_deref()
            .is_some_and(|n| n.split('/').any(str::is_empty))
        {
            return Err("empty path segment".into());
        }
        Ok(Self {
            tls,
            host,
            port,
            app: app.to_owned(),
            name,
            query: query.filter(|q| !q.is_empty()),
        })
    }

    /// `host:port` as it goes in a URL (an IPv6 literal in brackets).
    pub fn authority(&self) -> String {
        if self.host.contains(':') {
            format!("[{}]:{}", self.host, self.port)
        } else {
            format!("{}:{}", self.host, self.port)
        }
    }

    /// The application as `connect` sends it: with the query, as nginx-rtmp's relays pass
    /// credentials (`app?token=...`).
    pub fn connect_app(&self) -> String {
        match &self.query {
            Some(query) => format!("{}?{query}", self.app),
            None => self.app.clone(),
        }
    }

    /// `rtmp` or `rtmps`.
    pub fn scheme(&self) -> &'static str {
        if self.tls {
            "rtmps"
        } else {
            "rtmp"
        }
    }

    /// `connect`'s `tcUrl`: `rtmp://host:port/app` (or `rtmps://`), with the query.
    pub fn tc_url(&self) -> String {
        format!(
            "{}://{}/{}",
            self.scheme(),
            self.authority(),
            self.connect_app()
        )
    }

    /// The stream name to publish or play upstream: the URL's own name when it has one, else
    /// `local`, with the URL's query appended (`name?token=...`), so that a server that reads
    /// credentials from the stream name (siprtmp's `publish_token`, SRS) sees them too.
    pub fn stream_name(&self, local: &str) -> String {
        let name = self.name.as_deref().unwrap_or(local);
        match &self.query {
            Some(query) => format!("{name}?{query}"),
            None => name.to_owned(),
        }
    }

    /// The URL without its query, for logs, the API and metric labels (the query may carry
    /// credentials).
    pub fn redacted(&self) -> String {
        let scheme = self.scheme();
        match &self.name {
            Some(name) => format!("{scheme}://{}/{}/{name}", self.authority(), self.app),
            None => format!("{scheme}://{}/{}", self.authority(), self.app),
        }
    }
}

/// `host[:port]` or `[v6][:port]`: the host and the port.
fn split_authority(authority: &str, default_port: u16) -> Result<(String, u16), String> {
    let (host, port) = if let Some(bracketed) = authority.strip_prefix('[') {
        let (host, after) = bracketed.split_once(']').ok_or("unclosed [ in the host")?;
        let port = match after {
            "" => None,
            _ => Some(after.strip_prefix(':').ok_or("junk after ]")?),
        };
        if host.is_empty() || !host.contains(':') {
            return Err("a bracketed host must be an IPv6 address".into());
        }
        (host, port)
    } else {
        match authority.split_once(':') {
            Some((host, port)) => (host, Some(port)),
            None => (authority, None),
        }
    };
    if host.is_empty() {
        return Err("a host is required (rtmp://host/app)".into());
    }
    if host.contains(['[', ']', '/', '\\']) || (!authority.starts_with('[') && host.contains(':')) {
        return Err(format!("{host:?} is not a host name or address"));
    }
    let port = match port {
        None => default_port,
        Some(p) => match p.parse::<u16>() {
            Ok(0) | Err(_) => return Err(format!("{p:?} is not a port (1 to 65535)")),
            Ok(p) => p,
        },
    };
    Ok((host.to_owned(), port))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn parts_of_urls_as_nginx_rtmp_configurations_write_them() {
        let plain = RtmpUrl::parse("rtmp://127.0.0.1/live").unwrap();
        assert_eq!(plain.port, DEFAULT_PORT);
        assert_eq!(plain.name, None);
        assert_eq!(plain.tc_url(), "rtmp://127.0.0.1:1935/live");
        assert_eq!(plain.stream_name("cam"), "cam");
        assert!(!plain.tls);
        let secure = RtmpUrl::parse("rtmps://cdn.example/live/cam").unwrap();
        assert!(secure.tls);
        assert_eq!(secure.port, DEFAULT_TLS_PORT);
        assert_eq!(secure.tc_url(), "rtmps://cdn.example:443/live");
        assert_eq!(secure.redacted(), "rtmps://cdn.example:443/live/cam");
        let named = RtmpUrl::parse("rtmp://h:99/app/a/b/?x=1&y=2").unwrap();
        assert_eq!(named.name.as_deref(), Some("a/b"));
        assert_eq!(named.connect_app(), "app?x=1&y=2");
        assert_eq!(named.stream_name("cam"), "a/b?x=1&y=2");
        let v6 = RtmpUrl::parse("rtmp://[::1]:1936/app?").unwrap();
        assert_eq!(v6.authority(), "[::1]:1936");
        assert_eq!(v6.query, None);
        for bad in [
            "rtmp://h:0/app",
            "rtmp://h:99999/app",
            "rtmp://h:x/app",
            "rtmp://[::1/app",
            "rtmp://[h]/app",
            "rtmp://::1/app",
            "rtmp://h/",
            "rtmp:///app",
            "rtmp://h/app//x",
            "rtmp://h/app#frag",
            "rtmp://h/a pp",
            "rtmpx://h/app",
        ] {
            assert!(RtmpUrl::parse(bad).is_err(), "{bad}");
        }
    }

    proptest! {
        /// Hostile text gives a URL or an error, never a panic; what parses prints back
        /// (without the default port's absence and trailing slashes) to the same URL.
        #[test]
        fn arbitrary_text_parses_or_is_refused_and_round_trips(
            text in prop_oneof![
                any::<String>(),
                "rtmps?://[a-z0-9.:\\[\\]@]{0,12}(/[a-z0-9?=&/#%]{0,12}){0,3}",
            ]
        ) {
            if let Ok(url) = RtmpUrl::parse(&text) {
                let mut again = url.redacted();
                if let Some(query) = &url.query {
                    again = format!("{again}?{query}");
                }
                prop_assert_eq!(RtmpUrl::parse(&again), Ok(url));
            }
        }
    }
}
