//! Typed views of the SDP attributes the gateway negotiates with: `rtpmap`, `fmtp` (with the
//! RFC 4733 telephone-event list), the direction attributes and `ptime`.
//!
//! The session model keeps attributes as text; these helpers read them on demand and write
//! them back, so an attribute the gateway does not understand is never lost.

use std::fmt;

use super::session::{Attribute, MediaDescription};

/// An `a=rtpmap:` value: `<payload type> <encoding name>/<clock rate>[/<channels>]`.
///
/// ```
/// use siprtmp_core::sdp::RtpMap;
/// let m = RtpMap::parse("101 telephone-event/8000").unwrap();
/// assert_eq!((m.payload_type, m.clock_rate, m.channels), (101, 8000, None));
/// assert_eq!(m.to_string(), "101 telephone-event/8000");
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RtpMap {
    /// RTP payload type (0..=127).
    pub payload_type: u8,
    /// Encoding name as written (compare case-insensitively).
    pub encoding_name: String,
    /// RTP clock rate in Hz.
    pub clock_rate: u32,
    /// Channel count for audio, when written.
    pub channels: Option<u16>,
}

impl RtpMap {
    /// Parses an `rtpmap` attribute value.
    pub fn parse(value: &str) -> Option<Self> {
        let (pt, encoding) = value.trim().split_once(' ')?;
        let payload_type = parse_payload_type(pt)?;
        let mut parts = encoding.trim().split('/');
        let encoding_name = parts.next().filter(|n| !n.is_empty())?.to_owned();
        let clock_rate = parts.next()?.parse().ok().filter(|&r| r > 0)?;
        let channels = match parts.next() {
            Some(c) => Some(c.parse().ok()?),
            None => None,
        };
        if parts.next().is_some() {
            return None;
        }
        Some(RtpMap {
            payload_type,
            encoding_name,
            clock_rate,
            channels,
        })
    }

    /// The RFC 3551 meaning of a static payload type (0..=34), used when an offer lists a
    /// static type without an `rtpmap`.
    pub fn static_payload(payload_type: u8) -> Option<Self> {
        let (name, rate, channels) = match payload_type {
            0 => ("PCMU", 8000, Some(1)),
            3 => ("GSM", 8000, Some(1)),
            4 => ("G723", 8000, Some(1)),
            5 => ("DVI4", 8000, Some(1)),
            6 => ("DVI4", 16000, Some(1)),
            7 => ("LPC", 8000, Some(1)),
            8 => ("PCMA", 8000, Some(1)),
            9 => ("G722", 8000, Some(1)),
            10 => ("L16", 44100, Some(2)),
            11 => ("L16", 44100, Some(1)),
            12 => ("QCELP", 8000, Some(1)),
            13 => ("CN", 8000, Some(1)),
            14 => ("MPA", 90000, None),
            15 => ("G728", 8000, Some(1)),
            16 => ("DVI4", 11025, Some(1)),
            17 => ("DVI4", 22050, Some(1)),
            18 => ("G729", 8000, Some(1)),
            25 => ("CelB", 90000, None),
            26 => ("JPEG", 90000, None),
            28 => ("nv", 90000, None),
            31 => ("H261", 90000, None),
            32 => ("MPV", 90000, None),
            33 => ("MP2T", 90000, None),
            34 => ("H263", 90000, None),
            _ => return None,
        };
        Some(RtpMap {
            payload_type,
            encoding_name: name.into(),
            clock_rate: rate,
            channels,
        })
    }

    /// Whether `self` and `other` name the same codec: encoding name (case-insensitive), clock
    /// rate and channel count (an absent count means one channel), payload type ignored.
    pub fn same_codec(&self, other: &RtpMap) -> bool {
        self.encoding_name
            .eq_ignore_ascii_case(&other.encoding_name)
            && self.clock_rate == other.clock_rate
            && self.channels.unwrap_or(1) == other.channels.unwrap_or(1)
    }
}

impl fmt::Display for RtpMap {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} {}/{}",
            self.payload_type, self.encoding_name, self.clock_rate
        )?;
        if let Some(c) = self.channels {
            write!(f, "/{c}")?;
        }
        Ok(())
    }
}

fn parse_payload_type(s: &str) -> Option<u8> {
    s.parse::<u8>().ok().filter(|&pt| pt < 128)
}

/// An `a=fmtp:` value: a payload type and its format parameters, kept in order as
/// `key[=value]` items separated by `;`. A telephone-event list such as `0-15` is one item
/// with no value.
///
/// ```
/// use siprtmp_core::sdp::Fmtp;
/// let f = Fmtp::parse("96 packetization-mode=1; profile-level-id=42e01f").unwrap();
/// assert_eq!(f.get("profile-level-id"), Some("42e01f"));
/// assert_eq!(f.to_string(), "96 packetization-mode=1;profile-level-id=42e01f");
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fmtp {
    /// The payload type the parameters apply to.
    pub payload_type: u8,
    /// Parameters in order: `(key, Some(value))` for `key=value`, `(item, None)` otherwise.
    pub params: Vec<(String, Option<String>)>,
}

impl Fmtp {
    /// Parses an `fmtp` attribute value.
    pub fn parse(value: &str) -> Option<Self> {
        let value = value.trim();
        let (pt, rest) = value.split_once(' ').unwrap_or((value, ""));
        let payload_type = parse_payload_type(pt)?;
        let params = rest
            .split(';')
            .map(str::trim)
            .filter(|p| !p.is_empty())
            .map(|p| match p.split_once('=') {
                Some((k, v)) => (k.trim().to_owned(), Some(v.trim().to_owned())),
                None => (p.to_owned(), None),
            })
            .collect();
        Some(Fmtp {
            payload_type,
            params,
        })
    }

    /// The value of parameter `key` (case-insensitive), if present with a value.
    pub fn get(&self, key: &str) -> Option<&str> {
        self.params
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(key))
            .and_then(|(_, v)| v.as_deref())
    }

    /// The telephone-event list of an RFC 4733 `fmtp` (the items without `=`, such as
    /// `0-15,16`), or `None` when it has none or one that does not parse.
    pub fn telephone_events(&self) -> Option<TelephoneEvents> {
        let list: Vec<&str> = self
            .params
            .iter()
            .filter(|(_, v)| v.is_none())
            .map(|(k, _)| k.as_str())
            .collect();
        if list.is_empty() {
            return None;
        }
        TelephoneEvents::parse(&list.join(","))
    }
}

impl fmt::Display for Fmtp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.payload_type)?;
        for (i, (k, v)) in self.params.iter().enumerate() {
            f.write_str(if i == 0 { " " } else { ";" })?;
            f.write_str(k)?;
            if let Some(v) = v {
                write!(f, "={v}")?;
            }
        }
        Ok(())
    }
}

/// A set of RFC 4733 event codes (0..=255), as written in a telephone-event `fmtp`
/// (`0-15,32,36`).
///
/// ```
/// use siprtmp_core::sdp::attributes::TelephoneEvents;
/// let a = TelephoneEvents::parse("0-15,32").unwrap();
/// let b = TelephoneEvents::parse("0-11").unwrap();
/// assert_eq!(a.intersect(&b).to_string(), "0-11");
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TelephoneEvents {
    bits: [u64; 4],
}

impl TelephoneEvents {
    /// The events RFC 4733 assumes when no `fmtp` is given: the DTMF digits 0-15.
    pub const DTMF: TelephoneEvents = TelephoneEvents {
        bits: [0xFFFF, 0, 0, 0],
    };

    /// Parses a comma-separated list of event codes and ranges.
    pub fn parse(list: &str) -> Option<Self> {
        let mut set = TelephoneEvents { bits: [0; 4] };
        for item in list.split(',').map(str::trim) {
            let (lo, hi) = match item.split_once('-') {
                Some((a, b)) => (a.trim().parse::<u8>().ok()?, b.trim().parse::<u8>().ok()?),
                None => {
                    let v = item.parse::<u8>().ok()?;
                    (v, v)
                }
            };
            if lo > hi {
                return None;
            }
            for e in lo..=hi {
                set.insert(e);
            }
        }
        Some(set)
    }

    /// Adds event `e`.
    pub fn insert(&mut self, e: u8) {
        self.bits[usize::from(e >> 6)] |= 1 << (e & 63);
    }

    /// Whether event `e` is in the set.
    pub fn contains(&self, e: u8) -> bool {
        self.bits[usize::from(e >> 6)] & (1 << (e & 63)) != 0
    }

    /// The events in both sets.
    pub fn intersect(&self, other: &TelephoneEvents) -> TelephoneEvents {
        let mut bits = self.bits;
        for (b, o) in bits.iter_mut().zip(other.bits) {
            *b &= o;
        }
        TelephoneEvents { bits }
    }

    /// Whether the set is empty.
    pub fn is_empty(&self) -> bool {
        self.bits.iter().all(|&b| b == 0)
    }
}

impl fmt::Display for TelephoneEvents {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut first = true;
        let mut e = 0u16;
        while e < 256 {
            if !self.contains(e as u8) {
                e += 1;
                continue;
            }
            let start = e;
            while e + 1 < 256 && self.contains((e + 1) as u8) {
                e += 1;
            }
            if !first {
                f.write_str(",")?;
            }
            first = false;
            if start == e {
                write!(f, "{start}")?;
            } else {
                write!(f, "{start}-{e}")?;
            }
            e += 1;
        }
        Ok(())
    }
}

/// The media direction attribute (RFC 3264 section 5.1); `sendrecv` when none is given.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Direction {
    /// Send and receive.
    #[default]
    SendRecv,
    /// Send only (the usual "hold" of the holding side).
    SendOnly,
    /// Receive only.
    RecvOnly,
    /// Neither send nor receive.
    Inactive,
}

impl Direction {
    /// The attribute name.
    pub fn as_str(self) -> &'static str {
        match self {
            Direction::SendRecv => "sendrecv",
            Direction::SendOnly => "sendonly",
            Direction::RecvOnly => "recvonly",
            Direction::Inactive => "inactive",
        }
    }

    /// The direction named by an attribute name, if it is one.
    pub fn from_name(name: &str) -> Option<Self> {
        match name {
            "sendrecv" => Some(Direction::SendRecv),
            "sendonly" => Some(Direction::SendOnly),
            "recvonly" => Some(Direction::RecvOnly),
            "inactive" => Some(Direction::Inactive),
            _ => None,
        }
    }

    /// The first direction attribute in `attrs`, if any.
    pub fn from_attributes(attrs: &[Attribute]) -> Option<Self> {
        attrs
            .iter()
            .filter(|a| a.value.is_none())
            .find_map(|a| Self::from_name(&a.name))
    }

    /// The same stream seen from the other end: `sendonly` <-> `recvonly`.
    ///
    /// ```
    /// use siprtmp_core::sdp::Direction;
    /// assert_eq!(Direction::SendOnly.reversed(), Direction::RecvOnly);
    /// assert_eq!(Direction::Inactive.reversed(), Direction::Inactive);
    /// ```
    pub fn reversed(self) -> Self {
        match self {
            Direction::SendOnly => Direction::RecvOnly,
            Direction::RecvOnly => Direction::SendOnly,
            d => d,
        }
    }

    /// Whether media flows from the side holding this direction.
    pub fn sends(self) -> bool {
        matches!(self, Direction::SendRecv | Direction::SendOnly)
    }

    /// Whether media flows to the side holding this direction.
    pub fn receives(self) -> bool {
        matches!(self, Direction::SendRecv | Direction::RecvOnly)
    }

    /// The direction that sends only if both `self` and `other` allow sending, and receives
    /// only if both allow receiving.
    pub fn intersect(self, other: Direction) -> Direction {
        match (
            self.sends() && other.sends(),
            self.receives() && other.receives(),
        ) {
            (true, true) => Direction::SendRecv,
            (true, false) => Direction::SendOnly,
            (false, true) => Direction::RecvOnly,
            (false, false) => Direction::Inactive,
        }
    }

    /// Replaces every direction attribute in `attrs` with this one (appended at the end).
    pub fn set_in(self, attrs: &mut Vec<Attribute>) {
        attrs.retain(|a| a.value.is_some() || Direction::from_name(&a.name).is_none());
        attrs.push(Attribute::flag(self.as_str()));
    }
}

/// The `a=ptime:` value (packet time in milliseconds) in `attrs`, if present and numeric.
pub fn ptime(attrs: &[Attribute]) -> Option<u32> {
    attrs
        .iter()
        .find(|a| a.name == "ptime")
        .and_then(|a| a.value.as_deref())
        .and_then(|v| v.trim().parse().ok())
}

impl MediaDescription {
    /// The codec of payload type `pt`: its `rtpmap`, or the RFC 3551 static assignment.
    pub fn rtpmap(&self, pt: u8) -> Option<RtpMap> {
        self.attributes
            .iter()
            .filter(|a| a.name == "rtpmap")
            .filter_map(|a| RtpMap::parse(a.value.as_deref()?))
            .find(|m| m.payload_type == pt)
            .or_else(|| RtpMap::static_payload(pt))
    }

    /// The format parameters of payload type `pt`, if an `fmtp` names it.
    pub fn fmtp(&self, pt: u8) -> Option<Fmtp> {
        self.attributes
            .iter()
            .filter(|a| a.name == "fmtp")
            .filter_map(|a| Fmtp::parse(a.value.as_deref()?))
            .find(|f| f.payload_type == pt)
    }

    /// The codecs of this section in format order, skipping formats that are not payload
    /// type numbers or have no known mapping.
    pub fn codecs(&self) -> Vec<RtpMap> {
        self.formats
            .iter()
            .filter_map(|f| parse_payload_type(f))
            .filter_map(|pt| self.rtpmap(pt))
            .collect()
    }

    /// This section's own direction attribute, if it has one.
    pub fn direction(&self) -> Option<Direction> {
        Direction::from_attributes(&self.attributes)
    }

    /// This section's `ptime`, if present.
    pub fn ptime(&self) -> Option<u32> {
        ptime(&self.attributes)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rtpmap_forms() {
        let m = RtpMap::parse("0 PCMU/8000/1").unwrap();
        assert_eq!(m.channels, Some(1));
        assert!(m.same_codec(&RtpMap::static_payload(0).unwrap()));
        assert!(m.same_codec(&RtpMap::parse("96 pcmu/8000").unwrap()));
        assert!(!m.same_codec(&RtpMap::parse("96 PCMU/16000").unwrap()));
        assert!(RtpMap::parse("128 PCMU/8000").is_none());
        assert!(RtpMap::parse("96 PCMU").is_none());
        assert!(RtpMap::parse("96 PCMU/8000/1/2").is_none());
        assert!(RtpMap::parse("96 /8000").is_none());
        assert_eq!(
            RtpMap::parse("97 opus/48000/2").unwrap().to_string(),
            "97 opus/48000/2"
        );
    }

    #[test]
    fn fmtp_forms() {
        let f = Fmtp::parse("101 0-15").unwrap();
        assert_eq!(f.params, [("0-15".to_owned(), None)]);
        assert_eq!(f.telephone_events(), TelephoneEvents::parse("0-15"));
        assert_eq!(f.telephone_events(), Some(TelephoneEvents::DTMF));
        let h = Fmtp::parse("96 packetization-mode=1;profile-level-id=42e01f").unwrap();
        assert_eq!(h.get("PACKETIZATION-MODE"), Some("1"));
        assert_eq!(h.telephone_events(), None);
        assert_eq!(
            Fmtp::parse("18 annexb=no").unwrap().to_string(),
            "18 annexb=no"
        );
        assert!(Fmtp::parse("x 1").is_none());
    }

    #[test]
    fn telephone_event_sets() {
        let a = TelephoneEvents::parse("0-15,32,36-40").unwrap();
        assert_eq!(a.to_string(), "0-15,32,36-40");
        assert!(a.contains(38) && !a.contains(41));
        let b = TelephoneEvents::parse("10-33, 255").unwrap();
        assert_eq!(a.intersect(&b).to_string(), "10-15,32");
        assert!(TelephoneEvents::parse("5-3").is_none());
        assert!(TelephoneEvents::parse("0-256").is_none());
        assert!(TelephoneEvents::parse("16")
            .unwrap()
            .intersect(&TelephoneEvents::DTMF)
            .is_empty());
        assert_eq!(
            TelephoneEvents::parse("0-255").unwrap().to_string(),
            "0-255"
        );
    }

    #[test]
    fn direction_attributes() {
        let mut attrs = vec![
            Attribute::new("rtpmap", "0 PCMU/8000"),
            Attribute::flag("sendonly"),
        ];
        assert_eq!(
            Direction::from_attributes(&attrs),
            Some(Direction::SendOnly)
        );
        Direction::Inactive.set_in(&mut attrs);
        assert_eq!(attrs.len(), 2);
        assert_eq!(
            Direction::from_attributes(&attrs),
            Some(Direction::Inactive)
        );
        assert_eq!(
            Direction::from_attributes(&[]).unwrap_or_default(),
            Direction::SendRecv
        );
        assert_eq!(
            Direction::SendRecv.intersect(Direction::RecvOnly),
            Direction::RecvOnly
        );
        assert_eq!(
            Direction::SendOnly.intersect(Direction::RecvOnly),
            Direction::Inactive
        );
    }

    #[test]
    fn media_codecs_use_static_table() {
        let mut m = MediaDescription::new("audio", 4000, "RTP/AVP");
        m.formats = vec!["8".into(), "96".into(), "101".into(), "x".into()];
        m.attributes
            .push(Attribute::new("rtpmap", "101 telephone-event/8000"));
        m.attributes.push(Attribute::new("ptime", "20"));
        let names: Vec<String> = m.codecs().into_iter().map(|c| c.encoding_name).collect();
        assert_eq!(names, ["PCMA", "telephone-event"]);
        assert_eq!(m.ptime(), Some(20));
        assert_eq!(m.direction(), None);
    }
}
