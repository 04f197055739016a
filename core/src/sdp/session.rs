//! The SDP session description (RFC 4566): every line as a typed field, a bounded parser that
//! faces hostile input, and a serializer that writes the canonical line order with CRLF.
//!
//! Attributes (`a=`) stay in the order they were received, unknown ones included, as
//! `(name, Option<value>)`; the typed view of the ones the gateway needs lives in
//! [`super::attributes`]. Parsing then serializing a description gives the same model back.

use std::fmt::{self, Write as _};

/// Upper bound on the size of a session description we accept (bytes). A SIP body larger than
/// this is not a real call's SDP.
pub const MAX_SDP_LEN: usize = 64 * 1024;
/// Upper bound on the number of lines.
pub const MAX_LINES: usize = 2048;
/// Upper bound on the length of one line (bytes, without the line end).
pub const MAX_LINE_LEN: usize = 4096;

/// Why a session description could not be parsed.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum SdpError {
    /// The input is larger than [`MAX_SDP_LEN`].
    TooLong,
    /// The input has more than [`MAX_LINES`] lines.
    TooManyLines,
    /// A line (1-based number) is longer than [`MAX_LINE_LEN`].
    LineTooLong(usize),
    /// The input is not UTF-8.
    InvalidUtf8,
    /// A line (1-based number) is not of the form `x=value` with `x` a lowercase letter.
    MalformedLine(usize),
    /// A line type that is unknown, repeated where only one is allowed, or out of place
    /// (for example `o=` after the first `m=`).
    UnexpectedLine {
        /// 1-based line number.
        line: usize,
        /// The line's type letter.
        kind: char,
    },
    /// A required line (`v=`, `o=` or `s=`) is missing.
    MissingLine(char),
    /// A field of a line (1-based number) could not be read.
    BadField {
        /// 1-based line number.
        line: usize,
        /// Which field.
        what: &'static str,
    },
}

impl fmt::Display for SdpError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SdpError::TooLong => write!(f, "SDP longer than {MAX_SDP_LEN} bytes"),
            SdpError::TooManyLines => write!(f, "SDP has more than {MAX_LINES} lines"),
            SdpError::LineTooLong(n) => write!(f, "SDP line {n} is too long"),
            SdpError::InvalidUtf8 => write!(f, "SDP is not UTF-8"),
            SdpError::MalformedLine(n) => write!(f, "SDP line {n} is not of the form x=value"),
            SdpError::UnexpectedLine { line, kind } => {
                write!(f, "unexpected SDP line {kind}= at line {line}")
            }
            SdpError::MissingLine(k) => write!(f, "SDP has no {k}= line"),
            SdpError::BadField { line, what } => write!(f, "bad {what} in SDP line {line}"),
        }
    }
}

impl std::error::Error for SdpError {}

/// The `o=` line: who created the session and which version of it this is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Origin {
    /// The user's login on the originating host, `-` when none.
    pub username: String,
    /// Numeric session identifier, unique for the originator.
    pub session_id: u64,
    /// Version of this description; incremented on every change (re-offers).
    pub session_version: u64,
    /// Network type, `IN`.
    pub nettype: String,
    /// Address type, `IP4` or `IP6`.
    pub addrtype: String,
    /// Address (or FQDN) of the originating host.
    pub address: String,
}

/// A `c=` line: where media is sent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Connection {
    /// Network type, `IN`.
    pub nettype: String,
    /// Address type, `IP4` or `IP6`.
    pub addrtype: String,
    /// Connection address, possibly with `/ttl` and `/count` suffixes for multicast.
    pub address: String,
}

impl Connection {
    /// An `IN IP4`/`IN IP6` connection for a unicast address.
    ///
    /// ```
    /// use siprtmp_core::sdp::Connection;
    /// let c = Connection::unicast("192.0.2.1".parse().unwrap());
    /// assert_eq!((c.addrtype.as_str(), c.address.as_str()), ("IP4", "192.0.2.1"));
    /// ```
    pub fn unicast(addr: std::net::IpAddr) -> Self {
        Connection {
            nettype: "IN".into(),
            addrtype: if addr.is_ipv4() { "IP4" } else { "IP6" }.into(),
            address: addr.to_string(),
        }
    }

    /// The address without multicast `/ttl/count` suffixes, parsed as an IP address when it is
    /// one (it may be a host name, which this sans-IO core does not resolve).
    pub fn ip(&self) -> Option<std::net::IpAddr> {
        self.address.split('/').next()?.parse().ok()
    }

    /// Whether this is the RFC 2543 hold address `0.0.0.0` (still sent by older endpoints to
    /// put a call on hold instead of `a=sendonly`).
    pub fn is_hold(&self) -> bool {
        self.ip().is_some_and(|ip| ip.is_unspecified())
    }
}

/// A `b=` line: proposed bandwidth.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Bandwidth {
    /// Bandwidth type (`AS`, `CT`, `TIAS`...).
    pub bwtype: String,
    /// Value, in kbit/s for `AS`/`CT`.
    pub bandwidth: u64,
}

/// An `r=` line: repeat times of the preceding `t=` line, kept as written (typed times such as
/// `7d` included).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Repeat {
    /// Repeat interval.
    pub interval: String,
    /// Active duration.
    pub duration: String,
    /// Offsets from the start time.
    pub offsets: Vec<String>,
}

/// A `t=` line with its `r=` lines.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Timing {
    /// Start time (NTP seconds), 0 for unbounded.
    pub start: u64,
    /// Stop time (NTP seconds), 0 for unbounded.
    pub stop: u64,
    /// The `r=` lines that follow.
    pub repeats: Vec<Repeat>,
}

/// One adjustment of a `z=` line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TimeZoneAdjustment {
    /// When the adjustment happens (NTP seconds).
    pub time: u64,
    /// The offset, as written (for example `-1h`).
    pub offset: String,
}

/// An `a=` line: `name` alone (a property attribute) or `name:value`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Attribute {
    /// Attribute name (before the first `:`).
    pub name: String,
    /// Value after the first `:`, `None` for a property attribute.
    pub value: Option<String>,
}

impl Attribute {
    /// A `name:value` attribute.
    pub fn new(name: impl Into<String>, value: impl Into<String>) -> Self {
        Attribute {
            name: name.into(),
            value: Some(value.into()),
        }
    }

    /// A property attribute (no value), such as `sendrecv`.
    pub fn flag(name: impl Into<String>) -> Self {
        Attribute {
            name: name.into(),
            value: None,
        }
    }
}

/// An `m=` section.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MediaDescription {
    /// Media type: `audio`, `video`, `application`...
    pub media: String,
    /// Transport port; 0 means the stream is disabled / rejected.
    pub port: u16,
    /// Number of ports (`port/count`), when written.
    pub port_count: Option<u16>,
    /// Transport protocol, such as `RTP/AVP`.
    pub proto: String,
    /// Media formats: RTP payload type numbers for RTP protocols.
    pub formats: Vec<String>,
    /// `i=` media title.
    pub information: Option<String>,
    /// `c=` lines of this section (several are allowed for multicast).
    pub connections: Vec<Connection>,
    /// `b=` lines.
    pub bandwidths: Vec<Bandwidth>,
    /// `k=` encryption key line.
    pub key: Option<String>,
    /// `a=` lines, in order.
    pub attributes: Vec<Attribute>,
}

impl MediaDescription {
    /// A section with no optional lines.
    pub fn new(media: impl Into<String>, port: u16, proto: impl Into<String>) -> Self {
        MediaDescription {
            media: media.into(),
            port,
            port_count: None,
            proto: proto.into(),
            formats: Vec::new(),
            information: None,
            connections: Vec::new(),
            bandwidths: Vec::new(),
            key: None,
            attributes: Vec::new(),
        }
    }

    /// The first value of attribute `name`, if present (`Some(None)` for a property attribute).
    pub fn attribute(&self, name: &str) -> Option<Option<&str>> {
        find_attribute(&self.attributes, name)
    }
}

/// A complete session description.
///
/// ```
/// use siprtmp_core::sdp::SessionDescription;
/// let text = "v=0\r\no=- 1 1 IN IP4 192.0.2.1\r\ns=-\r\nc=IN IP4 192.0.2.1\r\nt=0 0\r\n\
///             m=audio 4000 RTP/AVP 0 101\r\na=rtpmap:101 telephone-event/8000\r\n";
/// let sdp = SessionDescription::parse(text.as_bytes()).unwrap();
/// assert_eq!(sdp.media[0].formats, ["0", "101"]);
/// assert_eq!(sdp.to_string(), text);
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionDescription {
    /// `v=` protocol version, always 0.
    pub version: u32,
    /// `o=` originator and session identifier.
    pub origin: Origin,
    /// `s=` session name (`-` or a space when there is none).
    pub session_name: String,
    /// `i=` session information.
    pub information: Option<String>,
    /// `u=` URI of a description.
    pub uri: Option<String>,
    /// `e=` email addresses.
    pub emails: Vec<String>,
    /// `p=` phone numbers.
    pub phones: Vec<String>,
    /// Session-level `c=` line.
    pub connection: Option<Connection>,
    /// Session-level `b=` lines.
    pub bandwidths: Vec<Bandwidth>,
    /// `t=` lines, each with its `r=` lines.
    pub timings: Vec<Timing>,
    /// `z=` time zone adjustments.
    pub time_zones: Vec<TimeZoneAdjustment>,
    /// Session-level `k=` line.
    pub key: Option<String>,
    /// Session-level `a=` lines, in order.
    pub attributes: Vec<Attribute>,
    /// `m=` sections, in order.
    pub media: Vec<MediaDescription>,
}

impl SessionDescription {
    /// A minimal description: `v=0`, the given origin, `s=-`, `t=0 0`, nothing else.
    pub fn new(origin: Origin) -> Self {
        SessionDescription {
            version: 0,
            origin,
            session_name: "-".into(),
            information: None,
            uri: None,
            emails: Vec::new(),
            phones: Vec::new(),
            connection: None,
            bandwidths: Vec::new(),
            timings: vec![Timing {
                start: 0,
                stop: 0,
                repeats: Vec::new(),
            }],
            time_zones: Vec::new(),
            key: None,
            attributes: Vec::new(),
            media: Vec::new(),
        }
    }

    /// The first value of session-level attribute `name`, if present.
    pub fn attribute(&self, name: &str) -> Option<Option<&str>> {
        find_attribute(&self.attributes, name)
    }

    /// The connection that applies to media section `index`: its own first `c=` line, else
    /// the session-level one.
    pub fn media_connection(&self, index: usize) -> Option<&Connection> {
        self.media
            .get(index)?
            .connections
            .first()
            .or(self.connection.as_ref())
    }

    /// Parses a session description. Lines may end in CRLF or a bare LF; blank lines are
    /// skipped; anything else that is not `x=value` is an error, as is a line out of place.
    pub fn parse(input: &[u8]) -> Result<Self, SdpError> {
        if input.len() > MAX_SDP_LEN {
            return Err(SdpError::TooLong);
        }
        let text = std::str::from_utf8(input).map_err(|_| SdpError::InvalidUtf8)?;
        Parser::default().run(text)
    }

    /// Writes the description in canonical order with CRLF line ends.
    pub fn serialize(&self) -> String {
        self.to_string()
    }
}

impl std::str::FromStr for SessionDescription {
    type Err = SdpError;
    fn from_str(s: &str) -> Result<Self, SdpError> {
        Self::parse(s.as_bytes())
    }
}

fn find_attribute<'a>(attrs: &'a [Attribute], name: &str) -> Option<Option<&'a str>> {
    attrs
        .iter()
        .find(|a| a.name == name)
        .map(|a| a.value.as_deref())
}

/// The parser's partial result: the session section until the first `m=`.
#[derive(Default)]
struct Parser {
    version: Option<u32>,
    origin: Option<Origin>,
    session_name: Option<String>,
    information: Option<String>,
    uri: Option<String>,
    emails: Vec<String>,
    phones: Vec<String>,
    connection: Option<Connection>,
    bandwidths: Vec<Bandwidth>,
    timings: Vec<Timing>,
    time_zones: Option<Vec<TimeZoneAdjustment>>,
    key: Option<String>,
    attributes: Vec<Attribute>,
    media: Vec<MediaDescription>,
}

/// Splits a structured field into its space-separated tokens (runs of spaces tolerated).
fn tokens(value: &str) -> impl Iterator<Item = &str> {
    value.split(' ').filter(|t| !t.is_empty())
}

fn set_once<T>(slot: &mut Option<T>, value: T, line: usize, kind: char) -> Result<(), SdpError> {
    if slot.is_some() {
        return Err(SdpError::UnexpectedLine { line, kind });
    }
    *slot = Some(value);
    Ok(())
}

impl Parser {
    fn run(mut self, text: &str) -> Result<SessionDescription, SdpError> {
        let mut count = 0usize;
        for (index, raw) in text.split('\n').enumerate() {
            let n = index + 1;
            if n > MAX_LINES {
                return Err(SdpError::TooManyLines);
            }
            let line = raw.strip_suffix('\r').unwrap_or(raw);
            if line.len() > MAX_LINE_LEN {
                return Err(SdpError::LineTooLong(n));
            }
            if line.is_empty() {
                continue;
            }
            let bytes = line.as_bytes();
            if bytes.len() < 2 || bytes[1] != b'=' || !bytes[0].is_ascii_lowercase() {
                return Err(SdpError::MalformedLine(n));
            }
            let kind = bytes[0] as char;
            let value = &line[2..];
            if count == 0 && kind != 'v' {
                return Err(SdpError::MissingLine('v'));
            }
            count += 1;
            if self.media.is_empty() {
                self.session_line(kind, value, n)?;
            } else {
                self.media_line(kind, value, n)?;
            }
        }
        Ok(SessionDescription {
            version: self.version.ok_or(SdpError::MissingLine('v'))?,
            origin: self.origin.ok_or(SdpError::MissingLine('o'))?,
            session_name: self.session_name.ok_or(SdpError::MissingLine('s'))?,
            information: self.information,
            uri: self.uri,
            emails: self.emails,
            phones: self.phones,
            connection: self.connection,
            bandwidths: self.bandwidths,
            timings: self.timings,
            time_zones: self.time_zones.unwrap_or_default(),
            key: self.key,
            attributes: self.attributes,
            media: self.media,
        })
    }

    fn session_line(&mut self, kind: char, value: &str, n: usize) -> Result<(), SdpError> {
        match kind {
            'v' => {
                let v = value.parse::<u32>().ok().filter(|&v| v == 0);
                let v = v.ok_or(SdpError::BadField {
                    line: n,
                    what: "version",
                })?;
                set_once(&mut self.version, v, n, kind)
            }
            'o' => set_once(&mut self.origin, parse_origin(value, n)?, n, kind),
            's' => set_once(&mut self.session_name, value.to_owned(), n, kind),
            'i' => set_once(&mut self.information, value.to_owned(), n, kind),
            'u' => set_once(&mut self.uri, value.to_owned(), n, kind),
            'e' => {
                self.emails.push(value.to_owned());
                Ok(())
            }
            'p' => {
                self.phones.push(value.to_owned());
                Ok(())
            }
            'c' => set_once(&mut self.connection, parse_connection(value, n)?, n, kind),
            'b' => {
                self.bandwidths.push(parse_bandwidth(value, n)?);
                Ok(())
            }
            't' => {
                let mut it = tokens(value);
                let mut num = || -> Result<u64, SdpError> {
                    it.next()
                        .and_then(|t| t.parse().ok())
                        .ok_or(SdpError::BadField {
                            line: n,
                            what: "time",
                        })
                };
                let (start, stop) = (num()?, num()?);
                if it.next().is_some() {
                    return Err(SdpError::BadField {
                        line: n,
                        what: "time",
                    });
                }
                self.timings.push(Timing {
                    start,
                    stop,
                    repeats: Vec::new(),
                });
                Ok(())
            }
            'r' => {
                let timing = self
                    .timings
                    .last_mut()
                    .ok_or(SdpError::UnexpectedLine { line: n, kind })?;
                let mut it = tokens(value).map(str::to_owned);
                let bad = SdpError::BadField {
                    line: n,
                    what: "repeat",
                };
                let interval = it.next().ok_or(bad.clone())?;
                let duration = it.next().ok_or(bad)?;
                timing.repeats.push(Repeat {
                    interval,
                    duration,
                    offsets: it.collect(),
                });
                Ok(())
            }
            'z' => {
                let parts: Vec<&str> = tokens(value).collect();
                if parts.is_empty() || parts.len() & 1 != 0 {
                    return Err(SdpError::BadField {
                        line: n,
                        what: "time zone",
                    });
                }
                let mut adjustments = Vec::with_capacity(parts.len() / 2);
                for pair in parts.chunks_exact(2) {
                    let time = pair[0].parse().map_err(|_| SdpError::BadField {
                        line: n,
                        what: "time zone",
                    })?;
                    adjustments.push(TimeZoneAdjustment {
                        time,
                        offset: pair[1].to_owned(),
                    });
                }
                set_once(&mut self.time_zones, adjustments, n, kind)
            }
            'k' => set_once(&mut self.key, value.to_owned(), n, kind),
            'a' => {
                self.attributes.push(parse_attribute(value));
                Ok(())
            }
            'm' => {
                if self.origin.is_none() {
                    return Err(SdpError::MissingLine('o'));
                }
                if self.session_name.is_none() {
                    return Err(SdpError::MissingLine('s'));
                }
                self.media.push(parse_media(value, n)?);
                Ok(())
            }
            _ => Err(SdpError::UnexpectedLine { line: n, kind }),
        }
    }

    fn media_line(&mut self, kind: char, value: &str, n: usize) -> Result<(), SdpError> {
        if kind == 'm' {
            self.media.push(parse_media(value, n)?);
            return Ok(());
        }
        let Some(media) = self.media.last_mut() else {
            return Err(SdpError::UnexpectedLine { line: n, kind });
        };
        match kind {
            'i' => set_once(&mut media.information, value.to_owned(), n, kind),
            'c' => {
                media.connections.push(parse_connection(value, n)?);
                Ok(())
            }
            'b' => {
                media.bandwidths.push(parse_bandwidth(value, n)?);
                Ok(())
            }
            'k' => set_once(&mut media.key, value.to_owned(), n, kind),
            'a' => {
                media.attributes.push(parse_attribute(value));
                Ok(())
            }
            _ => Err(SdpError::UnexpectedLine { line: n, kind }),
        }
    }
}

fn parse_origin(value: &str, n: usize) -> Result<Origin, SdpError> {
    let parts: Vec<&str> = tokens(value).take(7).collect();
    if parts.len() != 6 {
        return Err(SdpError::BadField {
            line: n,
            what: "origin",
        });
    }
    let num = |s: &str, what| {
        s.parse::<u64>()
            .map_err(|_| SdpError::BadField { line: n, what })
    };
    Ok(Origin {
        username: parts[0].to_owned(),
        session_id: num(parts[1], "session id")?,
        session_version: num(parts[2], "session version")?,
        nettype: parts[3].to_owned(),
        addrtype: parts[4].to_owned(),
        address: parts[5].to_owned(),
    })
}

fn parse_connection(value: &str, n: usize) -> Result<Connection, SdpError> {
    let parts: Vec<&str> = tokens(value).take(4).collect();
    if parts.len() != 3 {
        return Err(SdpError::BadField {
            line: n,
            what: "connection",
        });
    }
    Ok(Connection {
        nettype: parts[0].to_owned(),
        addrtype: parts[1].to_owned(),
        address: parts[2].to_owned(),
    })
}

fn parse_bandwidth(value: &str, n: usize) -> Result<Bandwidth, SdpError> {
    let bad = SdpError::BadField {
        line: n,
        what: "bandwidth",
    };
    let (bwtype, bw) = value.split_once(':').ok_or(bad.clone())?;
    if bwtype.is_empty() || bwtype.contains(' ') {
        return Err(bad);
    }
    let bandwidth = bw.trim().parse().map_err(|_| bad)?;
    Ok(Bandwidth {
        bwtype: bwtype.to_owned(),
        bandwidth,
    })
}

fn parse_attribute(value: &str) -> Attribute {
    match value.split_once(':') {
        Some((name, v)) => Attribute::new(name, v),
        None => Attribute::flag(value),
    }
}

fn parse_media(value: &str, n: usize) -> Result<MediaDescription, SdpError> {
    let mut it = tokens(value);
    let bad = |what| SdpError::BadField { line: n, what };
    let media = it.next().ok_or(bad("media type"))?;
    let port_field = it.next().ok_or(bad("port"))?;
    let (port, port_count) = match port_field.split_once('/') {
        Some((p, c)) => (p, Some(c.parse::<u16>().map_err(|_| bad("port count"))?)),
        None => (port_field, None),
    };
    let port = port.parse::<u16>().map_err(|_| bad("port"))?;
    let proto = it.next().ok_or(bad("protocol"))?;
    let mut m = MediaDescription::new(media, port, proto);
    m.port_count = port_count;
    m.formats = it.map(str::to_owned).collect();
    Ok(m)
}

fn write_connection(f: &mut String, c: &Connection) {
    let _ = write!(f, "c={} {} {}\r\n", c.nettype, c.addrtype, c.address);
}

fn write_bandwidths(f: &mut String, bws: &[Bandwidth]) {
    for b in bws {
        let _ = write!(f, "b={}:{}\r\n", b.bwtype, b.bandwidth);
    }
}

fn write_attributes(f: &mut String, attrs: &[Attribute]) {
    for a in attrs {
        match &a.value {
            Some(v) => {
                let _ = write!(f, "a={}:{}\r\n", a.name, v);
            }
            None => {
                let _ = write!(f, "a={}\r\n", a.name);
            }
        }
    }
}

impl fmt::Display for SessionDescription {
    fn fmt(&self, out: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Built in a String first: `write!` into a String cannot fail, which keeps the helper
        // functions free of error plumbing.
        let mut f = String::with_capacity(512);
        let o = &self.origin;
        let _ = write!(f, "v={}\r\n", self.version);
        let _ = write!(
            f,
            "o={} {} {} {} {} {}\r\n",
            o.username, o.session_id, o.session_version, o.nettype, o.addrtype, o.address
        );
        let _ = write!(f, "s={}\r\n", self.session_name);
        if let Some(i) = &self.information {
            let _ = write!(f, "i={i}\r\n");
        }
        if let Some(u) = &self.uri {
            let _ = write!(f, "u={u}\r\n");
        }
        for e in &self.emails {
            let _ = write!(f, "e={e}\r\n");
        }
        for p in &self.phones {
            let _ = write!(f, "p={p}\r\n");
        }
        if let Some(c) = &self.connection {
            write_connection(&mut f, c);
        }
        write_bandwidths(&mut f, &self.bandwidths);
        for t in &self.timings {
            let _ = write!(f, "t={} {}\r\n", t.start, t.stop);
            for r in &t.repeats {
                let _ = write!(f, "r={} {}", r.interval, r.duration);
                for o in &r.offsets {
                    let _ = write!(f, " {o}");
                }
                f.push_str("\r\n");
            }
        }
        if !self.time_zones.is_empty() {
            f.push_str("z=");
            for (i, z) in self.time_zones.iter().enumerate() {
                let sep = if i == 0 { "" } else { " " };
                let _ = write!(f, "{sep}{} {}", z.time, z.offset);
            }
            f.push_str("\r\n");
        }
        if let Some(k) = &self.key {
            let _ = write!(f, "k={k}\r\n");
        }
        write_attributes(&mut f, &self.attributes);
        for m in &self.media {
            let _ = write!(f, "m={} {}", m.media, m.port);
            if let Some(c) = m.port_count {
                let _ = write!(f, "/{c}");
            }
            let _ = write!(f, " {}", m.proto);
            for fmt in &m.formats {
                let _ = write!(f, " {fmt}");
            }
            f.push_str("\r\n");
            if let Some(i) = &m.information {
                let _ = write!(f, "i={i}\r\n");
            }
            for c in &m.connections {
                write_connection(&mut f, c);
            }
            write_bandwidths(&mut f, &m.bandwidths);
            if let Some(k) = &m.key {
                let _ = write!(f, "k={k}\r\n");
            }
            write_attributes(&mut f, &m.attributes);
        }
        out.write_str(&f)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// RFC 4566 section 5's example, with LF line ends as often seen in files.
    const RFC_EXAMPLE: &str = "v=0\n\
        o=jdoe 2890844526 2890842807 IN IP4 10.47.16.5\n\
        s=SDP Seminar\n\
        i=A Seminar on the session description protocol\n\
        u=http://www.example.com/seminars/sdp.pdf\n\
        e=j.doe@example.com (Jane Doe)\n\
        c=IN IP4 224.2.17.12/127\n\
        t=2873397496 2873404696\n\
        a=recvonly\n\
        m=audio 49170 RTP/AVP 0\n\
        m=video 51372 RTP/AVP 99\n\
        a=rtpmap:99 h263-1998/90000\n";

    #[test]
    fn parses_rfc_example() {
        let sdp = SessionDescription::parse(RFC_EXAMPLE.as_bytes()).unwrap();
        assert_eq!(sdp.origin.username, "jdoe");
        assert_eq!(sdp.origin.session_id, 2890844526);
        assert_eq!(sdp.origin.session_version, 2890842807);
        assert_eq!(sdp.origin.address, "10.47.16.5");
        assert_eq!(sdp.session_name, "SDP Seminar");
        assert_eq!(sdp.emails, ["j.doe@example.com (Jane Doe)"]);
        assert_eq!(sdp.connection.as_ref().unwrap().address, "224.2.17.12/127");
        assert_eq!(sdp.timings[0].start, 2873397496);
        assert_eq!(sdp.attributes, [Attribute::flag("recvonly")]);
        assert_eq!(sdp.media.len(), 2);
        assert_eq!(sdp.media[1].media, "video");
        assert_eq!(sdp.media[1].port, 51372);
        assert_eq!(
            sdp.media[1].attributes,
            [Attribute::new("rtpmap", "99 h263-1998/90000")]
        );
        // Serializing gives CRLF and the same content.
        let out = sdp.to_string();
        assert_eq!(out, RFC_EXAMPLE.replace('\n', "\r\n"));
    }

    #[test]
    fn every_line_type_round_trips() {
        let text = "v=0\r\no=- 1 2 IN IP6 ::1\r\ns= \r\ni=info\r\nu=http://x\r\ne=a@b\r\n\
                    p=+1 555\r\nc=IN IP6 ::1\r\nb=AS:64\r\nt=0 0\r\nr=7d 1h 0 25h\r\n\
                    t=1 2\r\nz=2882844526 -1h 2898848070 0\r\nk=prompt\r\na=tool:x\r\n\
                    m=audio 5000/2 RTP/AVP 0 8\r\ni=voice\r\nc=IN IP4 1.2.3.4\r\n\
                    c=IN IP4 1.2.3.5\r\nb=TIAS:64000\r\nk=clear:abc\r\na=x-unknown\r\n\
                    a=fmtp:\r\n";
        let sdp: SessionDescription = text.parse().unwrap();
        assert_eq!(sdp.timings[0].repeats[0].offsets, ["0", "25h"]);
        assert_eq!(
            sdp.time_zones[1],
            TimeZoneAdjustment {
                time: 2898848070,
                offset: "0".into()
            }
        );
        assert_eq!(sdp.media[0].port_count, Some(2));
        assert_eq!(sdp.media[0].connections.len(), 2);
        assert_eq!(sdp.media[0].attributes[1], Attribute::new("fmtp", ""));
        assert_eq!(sdp.to_string(), text);
    }

    #[test]
    fn rejects_bad_input() {
        let head = "v=0\r\no=- 1 1 IN IP4 1.1.1.1\r\ns=-\r\n";
        let bad = |extra: &str| SessionDescription::parse(format!("{head}{extra}").as_bytes());
        assert_eq!(bad("garbage\r\n"), Err(SdpError::MalformedLine(4)));
        assert_eq!(bad("A=x\r\n"), Err(SdpError::MalformedLine(4)));
        assert_eq!(
            bad("x=y\r\n"),
            Err(SdpError::UnexpectedLine { line: 4, kind: 'x' })
        );
        assert_eq!(
            bad("s=again\r\n"),
            Err(SdpError::UnexpectedLine { line: 4, kind: 's' })
        );
        assert_eq!(
            bad("m=audio 1 RTP/AVP 0\r\nt=0 0\r\n"),
            Err(SdpError::UnexpectedLine { line: 5, kind: 't' })
        );
        assert_eq!(
            bad("m=audio 70000 RTP/AVP 0\r\n"),
            Err(SdpError::BadField {
                line: 4,
                what: "port"
            })
        );
        assert_eq!(
            bad("r=1 2\r\n"),
            Err(SdpError::UnexpectedLine { line: 4, kind: 'r' })
        );
        assert!(SessionDescription::parse(b"o=- 1 1 IN IP4 1.1.1.1\r\n").is_err());
        assert_eq!(
            SessionDescription::parse(b"v=0\r\n"),
            Err(SdpError::MissingLine('o'))
        );
        assert_eq!(
            SessionDescription::parse(b"v=0\r\n\xff"),
            Err(SdpError::InvalidUtf8)
        );
        let long = format!("{head}a={}\r\n", "x".repeat(MAX_LINE_LEN));
        assert_eq!(
            SessionDescription::parse(long.as_bytes()),
            Err(SdpError::LineTooLong(4))
        );
        let many = format!("{head}{}", "a=x\n".repeat(MAX_LINES));
        assert_eq!(
            SessionDescription::parse(many.as_bytes()),
            Err(SdpError::TooManyLines)
        );
        let huge = vec![b'a'; MAX_SDP_LEN + 1];
        assert_eq!(SessionDescription::parse(&huge), Err(SdpError::TooLong));
    }

    #[test]
    fn hold_connection_and_media_connection_fallback() {
        let text = "v=0\r\no=- 1 1 IN IP4 1.1.1.1\r\ns=-\r\nc=IN IP4 0.0.0.0\r\nt=0 0\r\n\
                    m=audio 1 RTP/AVP 0\r\nm=audio 2 RTP/AVP 0\r\nc=IN IP4 9.9.9.9\r\n";
        let sdp: SessionDescription = text.parse().unwrap();
        assert!(sdp.media_connection(0).unwrap().is_hold());
        assert_eq!(
            sdp.media_connection(1).unwrap().ip(),
            Some([9, 9, 9, 9].into())
        );
        assert!(sdp.media_connection(2).is_none());
    }

    fn token() -> impl Strategy<Value = String> {
        "[a-zA-Z0-9.+/_-]{1,8}"
    }
    fn text() -> impl Strategy<Value = String> {
        "[ -~]{0,12}"
    }
    fn attr() -> impl Strategy<Value = Attribute> {
        ("[a-z-]{1,8}", proptest::option::of(text()))
            .prop_map(|(name, value)| Attribute { name, value })
    }
    fn conn() -> impl Strategy<Value = Connection> {
        (token(), token(), token()).prop_map(|(nettype, addrtype, address)| Connection {
            nettype,
            addrtype,
            address,
        })
    }
    fn bw() -> impl Strategy<Value = Bandwidth> {
        ("[A-Z]{1,4}", any::<u64>()).prop_map(|(bwtype, bandwidth)| Bandwidth { bwtype, bandwidth })
    }
    fn media() -> impl Strategy<Value = MediaDescription> {
        (
            (
                token(),
                any::<u16>(),
                proptest::option::of(any::<u16>()),
                token(),
            ),
            proptest::collection::vec(token(), 0..4),
            proptest::option::of(text()),
            proptest::collection::vec(conn(), 0..2),
            proptest::collection::vec(bw(), 0..2),
            proptest::option::of(text()),
            proptest::collection::vec(attr(), 0..4),
        )
            .prop_map(
                |(
                    (media, port, port_count, proto),
                    formats,
                    information,
                    connections,
                    bandwidths,
                    key,
                    attributes,
                )| {
                    MediaDescription {
                        media,
                        port,
                        port_count,
                        proto,
                        formats,
                        information,
                        connections,
                        bandwidths,
                        key,
                        attributes,
                    }
                },
            )
    }
    fn timing() -> impl Strategy<Value = Timing> {
        (
            any::<u64>(),
            any::<u64>(),
            proptest::collection::vec(
                (token(), token(), proptest::collection::vec(token(), 0..3)).prop_map(
                    |(interval, duration, offsets)| Repeat {
                        interval,
                        duration,
                        offsets,
                    },
                ),
                0..2,
            ),
        )
            .prop_map(|(start, stop, repeats)| Timing {
                start,
                stop,
                repeats,
            })
    }
    fn sdp() -> impl Strategy<Value = SessionDescription> {
        (
            (
                token(),
                any::<u64>(),
                any::<u64>(),
                token(),
                token(),
                token(),
            ),
            (
                text(),
                proptest::option::of(text()),
                proptest::option::of(text()),
            ),
            (
                proptest::collection::vec(text(), 0..2),
                proptest::collection::vec(text(), 0..2),
            ),
            (
                proptest::option::of(conn()),
                proptest::collection::vec(bw(), 0..2),
            ),
            proptest::collection::vec(timing(), 0..3),
            proptest::collection::vec(
                (any::<u64>(), token())
                    .prop_map(|(time, offset)| TimeZoneAdjustment { time, offset }),
                0..3,
            ),
            (
                proptest::option::of(text()),
                proptest::collection::vec(attr(), 0..4),
            ),
            proptest::collection::vec(media(), 0..4),
        )
            .prop_map(
                |(
                    o,
                    (s, i, u),
                    (emails, phones),
                    (connection, bandwidths),
                    timings,
                    time_zones,
                    (key, attributes),
                    media,
                )| {
                    SessionDescription {
                        version: 0,
                        origin: Origin {
                            username: o.0,
                            session_id: o.1,
                            session_version: o.2,
                            nettype: o.3,
                            addrtype: o.4,
                            address: o.5,
                        },
                        session_name: s,
                        information: i,
                        uri: u,
                        emails,
                        phones,
                        connection,
                        bandwidths,
                        timings,
                        time_zones,
                        key,
                        attributes,
                        media,
                    }
                },
            )
    }

    proptest! {
        #[test]
        fn arbitrary_bytes_never_panic(data in proptest::collection::vec(any::<u8>(), 0..512)) {
            let _ = SessionDescription::parse(&data);
        }

        #[test]
        fn arbitrary_lines_never_panic(lines in proptest::collection::vec("[a-z]=[ -~]{0,30}", 0..20)) {
            let text = format!("v=0\r\no=- 1 1 IN IP4 1.1.1.1\r\ns=-\r\n{}", lines.join("\r\n"));
            let _ = SessionDescription::parse(text.as_bytes());
        }

        #[test]
        fn serialize_then_parse_round_trips(sdp in sdp()) {
            let text = sdp.to_string();
            prop_assert_eq!(SessionDescription::parse(text.as_bytes()), Ok(sdp));
        }
    }
}
