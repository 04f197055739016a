//! The RFC 3264 offer/answer model: answering a remote offer from local capabilities,
//! creating offers and re-offers (hold / resume), and reading what was negotiated.
//!
//! Rules applied when answering (RFC 3264 section 6):
//! - the answer has the offer's m-lines, same count and order; a line is rejected with port 0
//!   when the offer disabled it, its transport is not RTP/AVP(F), no local capability of its
//!   media type is left, or no codec is common;
//! - common codecs are listed in local preference order with the offer's payload type numbers
//!   (dynamic numbers are the offerer's to choose);
//! - `telephone-event` and `CN` ride along but never make a line acceptable on their own; the
//!   telephone-event list is the intersection of both sides' lists (0-15 when absent). Only
//!   one telephone-event is answered: the one at the clock rate of the line's first codec
//!   (RFC 4733 section 7.1.1: events share the audio's clock), or, when the offer has none at
//!   that rate, the first one common to both sides;
//! - H.264 keeps the offer's `fmtp` (profile, packetization mode), and only matches a local
//!   H.264 entry with the same packetization mode;
//! - direction is mirrored (`sendonly` -> `recvonly`, `inactive` -> `inactive`), and a
//!   `c=0.0.0.0` offer (RFC 2543 hold) counts as the offerer not receiving.

use std::fmt;
use std::net::{IpAddr, SocketAddr};

use super::attributes::{Direction, Fmtp, RtpMap, TelephoneEvents};
use super::session::{Attribute, Connection, MediaDescription, Origin, SessionDescription};

/// Transports the gateway speaks: plain RTP (no SRTP, no ICE).
const SUPPORTED_PROTOS: [&str; 2] = ["RTP/AVP", "RTP/AVPF"];

/// A codec the local side supports, with the payload type it prefers when it makes the offer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Codec {
    /// Payload type used in our offers (static number, or our choice of dynamic number).
    pub payload_type: u8,
    /// Encoding name (`PCMU`, `opus`, `H264`, `telephone-event`...).
    pub encoding_name: String,
    /// RTP clock rate.
    pub clock_rate: u32,
    /// Audio channel count, `None` for video or when one.
    pub channels: Option<u16>,
    /// Our format parameters (`fmtp`), in order.
    pub fmtp: Vec<(String, Option<String>)>,
}

impl Codec {
    /// A codec without format parameters.
    ///
    /// ```
    /// use siprtmp_core::sdp::Codec;
    /// let pcmu = Codec::new(0, "PCMU", 8000, None);
    /// assert_eq!(pcmu.rtpmap().to_string(), "0 PCMU/8000");
    /// ```
    pub fn new(payload_type: u8, name: &str, clock_rate: u32, channels: Option<u16>) -> Self {
        Codec {
            payload_type,
            encoding_name: name.into(),
            clock_rate,
            channels,
            fmtp: Vec::new(),
        }
    }

    /// Adds a format parameter (`key=value`, or a bare item when `value` is `None`).
    pub fn with_param(mut self, key: &str, value: Option<&str>) -> Self {
        self.fmtp.push((key.into(), value.map(Into::into)));
        self
    }

    /// The codec as an `rtpmap` with our preferred payload type.
    pub fn rtpmap(&self) -> RtpMap {
        RtpMap {
            payload_type: self.payload_type,
            encoding_name: self.encoding_name.clone(),
            clock_rate: self.clock_rate,
            channels: self.channels,
        }
    }

    fn fmtp_with(&self, payload_type: u8) -> Fmtp {
        Fmtp {
            payload_type,
            params: self.fmtp.clone(),
        }
    }
}

fn is_telephone_event(m: &RtpMap) -> bool {
    m.encoding_name.eq_ignore_ascii_case("telephone-event")
}

/// Formats that accompany a real codec but cannot carry the call alone.
fn is_auxiliary(m: &RtpMap) -> bool {
    is_telephone_event(m) || m.encoding_name.eq_ignore_ascii_case("CN")
}

fn is_h264(m: &RtpMap) -> bool {
    m.encoding_name.eq_ignore_ascii_case("H264")
}

/// One media stream the local side can run (one m-line of an offer or answer).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MediaCapability {
    /// Media type (`audio`, `video`).
    pub kind: String,
    /// Local RTP port for this stream.
    pub port: u16,
    /// Supported codecs, most preferred first (telephone-event and CN included as codecs).
    pub codecs: Vec<Codec>,
    /// Packet time we want to receive, in milliseconds.
    pub ptime: Option<u32>,
    /// What we are willing to do (normally `sendrecv`).
    pub direction: Direction,
}

impl MediaCapability {
    /// A `sendrecv` capability without `ptime`.
    pub fn new(kind: &str, port: u16, codecs: Vec<Codec>) -> Self {
        MediaCapability {
            kind: kind.into(),
            port,
            codecs,
            ptime: None,
            direction: Direction::SendRecv,
        }
    }
}

/// Everything the local side can do, used to answer offers and to make them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LocalCapabilities {
    /// Our media address, written in `c=`.
    pub address: IpAddr,
    /// `s=` value.
    pub session_name: String,
    /// Streams we can run; each is used for at most one m-line.
    pub media: Vec<MediaCapability>,
}

/// No m-line of the offer (or answer) could be accepted; the SIP layer answers 488.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NoMatch {
    /// Why, for logs.
    pub reason: &'static str,
}

impl fmt::Display for NoMatch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "no acceptable media: {}", self.reason)
    }
}

impl std::error::Error for NoMatch {}

/// Payload type numbers of one negotiated format in each direction.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PayloadTypes {
    /// The number we put in RTP packets we send (the remote side's number).
    pub send: u8,
    /// The number we expect in RTP packets we receive (our number).
    pub receive: u8,
}

/// The telephone-event format of an m-line: its payload types and its clock rate (RFC 4733:
/// the duration field and the timestamp count this clock's units).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TelephoneEvent {
    /// Its payload type numbers.
    pub payload_types: PayloadTypes,
    /// Its RTP clock rate (8000, or the audio codec's when both sides have that).
    pub clock_rate: u32,
}

/// What one accepted m-line settled on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NegotiatedMedia {
    /// Position of the m-line.
    pub index: usize,
    /// Media type.
    pub kind: String,
    /// The codec both sides send with (the answer's first common non-auxiliary codec).
    pub codec: RtpMap,
    /// Its payload type numbers.
    pub payload_types: PayloadTypes,
    /// The answer's format parameters for the codec.
    pub fmtp: Option<Fmtp>,
    /// Telephone-event, when both sides agreed on it: the one at the codec's clock rate if
    /// the answer has it, else the answer's first.
    pub telephone_event: Option<TelephoneEvent>,
    /// Where to send RTP; `None` when the remote address is the hold address or a host name.
    pub remote: Option<SocketAddr>,
    /// The remote connection address as written (for host names).
    pub remote_host: String,
    /// The remote port.
    pub remote_port: u16,
    /// What we do on this stream, given both sides' directions.
    pub direction: Direction,
    /// Packet time the remote side wants to receive.
    pub ptime: Option<u32>,
}

/// The effective direction of m-line `index` as written by the side that wrote `sdp`: its
/// media attribute, else its session attribute, else `sendrecv`; a `c=0.0.0.0` means that
/// side does not receive.
fn effective_direction(sdp: &SessionDescription, index: usize) -> Direction {
    let m = &sdp.media[index];
    let dir = m
        .direction()
        .or_else(|| Direction::from_attributes(&sdp.attributes))
        .unwrap_or_default();
    if sdp.media_connection(index).is_some_and(Connection::is_hold) {
        dir.intersect(Direction::SendOnly)
    } else {
        dir
    }
}

fn rejected(offered: &MediaDescription) -> MediaDescription {
    let mut m = MediaDescription::new(offered.media.clone(), 0, offered.proto.clone());
    m.formats = offered.formats.clone();
    if m.formats.is_empty() {
        // RFC 4566 requires at least one format on an m-line.
        m.formats.push("0".into());
    }
    m
}

/// The packetization mode of an H.264 fmtp (RFC 6184: 0 when absent).
fn packetization_mode(fmtp: Option<&Fmtp>) -> &str {
    fmtp.and_then(|f| f.get("packetization-mode"))
        .unwrap_or("0")
}

/// Offered formats of an m-line: (payload type, codec, fmtp).
fn offered_formats(m: &MediaDescription) -> Vec<(u8, RtpMap, Option<Fmtp>)> {
    m.formats
        .iter()
        .filter_map(|f| f.parse::<u8>().ok().filter(|&pt| pt < 128))
        .filter_map(|pt| Some((pt, m.rtpmap(pt)?, m.fmtp(pt))))
        .collect()
}

/// Answers one accepted-kind m-line; `None` when nothing primary is common.
fn answer_media(
    offered: &MediaDescription,
    cap: &MediaCapability,
    offered_dir: Direction,
) -> Option<MediaDescription> {
    let offer_formats = offered_formats(offered);
    let mut chosen: Vec<(RtpMap, Option<Fmtp>)> = Vec::new();
    for codec in &cap.codecs {
        let local = codec.rtpmap();
        let local_fmtp = codec.fmtp_with(codec.payload_type);
        let found = offer_formats.iter().find(|(pt, m, f)| {
            m.same_codec(&local)
                && !chosen.iter().any(|(c, _)| c.payload_type == *pt)
                && (!is_h264(m)
                    || local_fmtp.get("packetization-mode").is_none()
                    || packetization_mode(f.as_ref()) == packetization_mode(Some(&local_fmtp)))
        });
        let Some((pt, offered_map, offered_fmtp)) = found else {
            continue;
        };
        let map = RtpMap {
            payload_type: *pt,
            ..offered_map.clone()
        };
        let fmtp = if is_telephone_event(&map) {
            let theirs = offered_fmtp
                .as_ref()
                .and_then(Fmtp::telephone_events)
                .unwrap_or(TelephoneEvents::DTMF);
            let ours = local_fmtp
                .telephone_events()
                .unwrap_or(TelephoneEvents::DTMF);
            let common = theirs.intersect(&ours);
            if common.is_empty() {
                continue;
            }
            Some(Fmtp {
                payload_type: *pt,
                params: vec![(common.to_string(), None)],
            })
        } else if is_h264(&map) {
            offered_fmtp.clone()
        } else if !codec.fmtp.is_empty() {
            Some(codec.fmtp_with(*pt))
        } else {
            offered_fmtp.clone()
        };
        chosen.push((map, fmtp));
    }
    let primary_rate = chosen
        .iter()
        .find(|(m, _)| !is_auxiliary(m))
        .map(|(m, _)| m.clock_rate)?;
    // One telephone-event: at the audio's clock if the offer has it, else the first common.
    let events: Vec<u8> = chosen
        .iter()
        .filter(|(m, _)| is_telephone_event(m))
        .map(|(m, _)| m.payload_type)
        .collect();
    let keep = chosen
        .iter()
        .find(|(m, _)| is_telephone_event(m) && m.clock_rate == primary_rate)
        .or_else(|| chosen.iter().find(|(m, _)| is_telephone_event(m)))
        .map(|(m, _)| m.payload_type);
    chosen.retain(|(m, _)| !events.contains(&m.payload_type) || Some(m.payload_type) == keep);
    let mut m = MediaDescription::new(offered.media.clone(), cap.port, offered.proto.clone());
    for (map, fmtp) in &chosen {
        m.formats.push(map.payload_type.to_string());
        m.attributes.push(Attribute::new("rtpmap", map.to_string()));
        if let Some(f) = fmtp {
            m.attributes.push(Attribute::new("fmtp", f.to_string()));
        }
    }
    if let Some(p) = cap.ptime {
        m.attributes.push(Attribute::new("ptime", p.to_string()));
    }
    offered_dir
        .reversed()
        .intersect(cap.direction)
        .set_in(&mut m.attributes);
    Some(m)
}

fn base_description(local: &LocalCapabilities, origin: &Origin) -> SessionDescription {
    let mut sdp = SessionDescription::new(origin.clone());
    sdp.session_name = local.session_name.clone();
    sdp.connection = Some(Connection::unicast(local.address));
    sdp
}

/// Answers `offer` from `local` capabilities, with our `origin` line (its version is the
/// caller's to increment when a later answer changes).
///
/// ```
/// use siprtmp_core::sdp::*;
/// let offer: SessionDescription = "v=0\r\no=- 1 1 IN IP4 192.0.2.9\r\ns=-\r\n\
///     c=IN IP4 192.0.2.9\r\nt=0 0\r\nm=audio 5004 RTP/AVP 8 0 101\r\n\
///     a=rtpmap:101 telephone-event/8000\r\na=fmtp:101 0-16\r\na=sendonly\r\n".parse().unwrap();
/// let local = LocalCapabilities {
///     address: "192.0.2.1".parse().unwrap(),
///     session_name: "-".into(),
///     media: vec![MediaCapability::new("audio", 4000, vec![
///         Codec::new(0, "PCMU", 8000, None),
///         Codec::new(96, "telephone-event", 8000, None),
///     ])],
/// };
/// let origin = Origin { username: "-".into(), session_id: 7, session_version: 1,
///     nettype: "IN".into(), addrtype: "IP4".into(), address: "192.0.2.1".into() };
/// let ans = answer(&offer, &local, &origin).unwrap();
/// assert_eq!(ans.media[0].formats, ["0", "101"]);
/// assert_eq!(ans.media[0].direction(), Some(Direction::RecvOnly));
/// assert_eq!(ans.media[0].fmtp(101).unwrap().to_string(), "101 0-15");
/// ```
pub fn answer(
    offer: &SessionDescription,
    local: &LocalCapabilities,
    origin: &Origin,
) -> Result<SessionDescription, NoMatch> {
    if offer.media.is_empty() {
        return Err(NoMatch {
            reason: "offer has no media",
        });
    }
    let mut sdp = base_description(local, origin);
    let mut used = vec![false; local.media.len()];
    let mut accepted = 0;
    for (index, offered) in offer.media.iter().enumerate() {
        let usable = offered.port != 0 && SUPPORTED_PROTOS.contains(&offered.proto.as_str());
        let cap = local
            .media
            .iter()
            .enumerate()
            .find(|(i, c)| !used[*i] && c.kind.eq_ignore_ascii_case(&offered.media));
        let answered = match cap {
            Some((ci, cap)) if usable => {
                let m = answer_media(offered, cap, effective_direction(offer, index));
                if m.is_some() {
                    used[ci] = true;
                }
                m
            }
            _ => None,
        };
        match answered {
            Some(m) => {
                accepted += 1;
                sdp.media.push(m);
            }
            None => sdp.media.push(rejected(offered)),
        }
    }
    if accepted == 0 {
        return Err(NoMatch {
            reason: "no common codec on any offered stream",
        });
    }
    Ok(sdp)
}

/// Builds our offer: one m-line per capability with our preferred payload types.
///
/// ```
/// use siprtmp_core::sdp::*;
/// let local = LocalCapabilities {
///     address: "192.0.2.1".parse().unwrap(),
///     session_name: "-".into(),
///     media: vec![MediaCapability::new("audio", 4000, vec![Codec::new(8, "PCMA", 8000, None)])],
/// };
/// let origin = Origin { username: "-".into(), session_id: 7, session_version: 1,
///     nettype: "IN".into(), addrtype: "IP4".into(), address: "192.0.2.1".into() };
/// let offer = create_offer(&local, &origin);
/// assert!(offer.to_string().contains("m=audio 4000 RTP/AVP 8\r\na=rtpmap:8 PCMA/8000\r\n"));
/// ```
pub fn create_offer(local: &LocalCapabilities, origin: &Origin) -> SessionDescription {
    let mut sdp = base_description(local, origin);
    for cap in &local.media {
        let mut m = MediaDescription::new(cap.kind.clone(), cap.port, "RTP/AVP");
        for codec in &cap.codecs {
            m.formats.push(codec.payload_type.to_string());
            m.attributes
                .push(Attribute::new("rtpmap", codec.rtpmap().to_string()));
            if !codec.fmtp.is_empty() {
                let f = codec.fmtp_with(codec.payload_type);
                m.attributes.push(Attribute::new("fmtp", f.to_string()));
            }
        }
        if let Some(p) = cap.ptime {
            m.attributes.push(Attribute::new("ptime", p.to_string()));
        }
        cap.direction.set_in(&mut m.attributes);
        sdp.media.push(m);
    }
    sdp
}

/// A re-offer from the last description we sent: `o=` version incremented, every active
/// m-line set to `sendonly` (`hold`) or `sendrecv` (resume); rejected lines stay rejected.
///
/// ```
/// use siprtmp_core::sdp::*;
/// let ours: SessionDescription = "v=0\r\no=- 5 9 IN IP4 192.0.2.1\r\ns=-\r\nt=0 0\r\n\
///     m=audio 4000 RTP/AVP 0\r\na=sendrecv\r\n".parse().unwrap();
/// let held = reoffer(&ours, true);
/// assert_eq!(held.origin.session_version, 10);
/// assert_eq!(held.media[0].direction(), Some(Direction::SendOnly));
/// ```
pub fn reoffer(previous: &SessionDescription, hold: bool) -> SessionDescription {
    let mut sdp = previous.clone();
    sdp.origin.session_version = sdp.origin.session_version.wrapping_add(1);
    let dir = if hold {
        Direction::SendOnly
    } else {
        Direction::SendRecv
    };
    // A session-level direction would apply to lines without their own; per-line is clearer.
    sdp.attributes
        .retain(|a| a.value.is_some() || Direction::from_name(&a.name).is_none());
    for m in sdp.media.iter_mut().filter(|m| m.port != 0) {
        dir.set_in(&mut m.attributes);
    }
    sdp
}

/// Reads the remote `answer` to our `offer`: per m-line, what was negotiated (`None` for a
/// rejected line). Fails when the answer's m-line count differs from the offer's or when no
/// line was accepted.
pub fn process_answer(
    offer: &SessionDescription,
    answer: &SessionDescription,
) -> Result<Vec<Option<NegotiatedMedia>>, NoMatch> {
    if offer.media.len() != answer.media.len() {
        return Err(NoMatch {
            reason: "answer m-line count differs from the offer",
        });
    }
    let media = negotiated_media(offer, answer, false);
    if media.iter().all(Option::is_none) {
        return Err(NoMatch {
            reason: "answer accepted no stream",
        });
    }
    Ok(media)
}

/// What was negotiated on each m-line between our `local` description and the `remote` one;
/// `local_is_answer` says which of the two is the answer (whose codec order decides). An
/// answerer calls it with the offer and its own answer.
pub fn negotiated_media(
    local: &SessionDescription,
    remote: &SessionDescription,
    local_is_answer: bool,
) -> Vec<Option<NegotiatedMedia>> {
    let n = local.media.len().min(remote.media.len());
    (0..n)
        .map(|i| negotiate_line(local, remote, local_is_answer, i))
        .collect()
}

fn negotiate_line(
    local: &SessionDescription,
    remote: &SessionDescription,
    local_is_answer: bool,
    index: usize,
) -> Option<NegotiatedMedia> {
    let (l, r) = (&local.media[index], &remote.media[index]);
    if l.port == 0 || r.port == 0 {
        return None;
    }
    let (lf, rf) = (offered_formats(l), offered_formats(r));
    let answer_formats = if local_is_answer { &lf } else { &rf };
    let both = |map: &RtpMap| -> Option<PayloadTypes> {
        let receive = lf.iter().find(|(_, m, _)| m.same_codec(map))?.0;
        let send = rf.iter().find(|(_, m, _)| m.same_codec(map))?.0;
        Some(PayloadTypes { send, receive })
    };
    let (codec, payload_types, fmtp) = answer_formats
        .iter()
        .filter(|(_, m, _)| !is_auxiliary(m))
        .find_map(|(_, m, f)| Some((m, both(m)?, f)))?;
    // The answer's telephone-event at the codec's clock, else its first (max_by_key keeps the
    // last of equal keys: reversed, the first).
    let telephone_event = answer_formats
        .iter()
        .rev()
        .filter(|(_, m, _)| is_telephone_event(m))
        .filter_map(|(_, m, _)| {
            let event = TelephoneEvent {
                payload_types: both(m)?,
                clock_rate: m.clock_rate,
            };
            Some((m.clock_rate == codec.clock_rate, event))
        })
        .max_by_key(|(same_rate, _)| *same_rate)
        .map(|(_, event)| event);
    let conn = remote.media_connection(index);
    let remote_host = conn.map(|c| c.address.clone()).unwrap_or_default();
    let remote_ip = conn.filter(|c| !c.is_hold()).and_then(Connection::ip);
    let ours = effective_direction(local, index);
    let theirs = effective_direction(remote, index);
    Some(NegotiatedMedia {
        index,
        kind: l.media.clone(),
        codec: RtpMap {
            payload_type: payload_types.send,
            ..codec.clone()
        },
        payload_types,
        fmtp: fmtp.clone(),
        telephone_event,
        remote: remote_ip.map(|ip| SocketAddr::new(ip, r.port)),
        remote_host,
        remote_port: r.port,
        direction: ours.intersect(theirs.reversed()),
        ptime: r.ptime(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn origin() -> Origin {
        Origin {
            username: "gw".into(),
            session_id: 42,
            session_version: 1,
            nettype: "IN".into(),
            addrtype: "IP4".into(),
            address: "192.0.2.1".into(),
        }
    }

    fn local() -> LocalCapabilities {
        LocalCapabilities {
            address: "192.0.2.1".parse().unwrap(),
            session_name: "siprtmp".into(),
            media: vec![
                MediaCapability::new(
                    "audio",
                    4000,
                    vec![
                        Codec::new(0, "PCMU", 8000, None),
                        Codec::new(8, "PCMA", 8000, None),
                        Codec::new(101, "telephone-event", 8000, None).with_param("0-15", None),
                    ],
                ),
                MediaCapability::new(
                    "video",
                    4002,
                    vec![Codec::new(96, "H264", 90000, None)
                        .with_param("packetization-mode", Some("1"))],
                ),
            ],
        }
    }

    fn sdp(body: &str) -> SessionDescription {
        let head =
            "v=0\r\no=- 100 1 IN IP4 198.51.100.7\r\ns=-\r\nc=IN IP4 198.51.100.7\r\nt=0 0\r\n";
        format!("{head}{body}").parse().unwrap()
    }

    #[test]
    fn answer_keeps_order_and_rejects_unsupported_lines() {
        let offer = sdp("m=video 6000 RTP/AVP 97\r\na=rtpmap:97 H264/90000\r\n\
                         a=fmtp:97 profile-level-id=42e01f;packetization-mode=1\r\n\
                         m=audio 0 RTP/AVP 0\r\n\
                         m=audio 6002 RTP/AVP 18 8 0\r\n\
                         m=application 6004 UDP/BFCP *\r\n");
        let ans = answer(&offer, &local(), &origin()).unwrap();
        let lines: Vec<(&str, u16)> = ans
            .media
            .iter()
            .map(|m| (m.media.as_str(), m.port))
            .collect();
        assert_eq!(
            lines,
            [
                ("video", 4002),
                ("audio", 0),
                ("audio", 4000),
                ("application", 0)
            ]
        );
        // Local preference order, offered numbers; G.729 dropped.
        assert_eq!(ans.media[2].formats, ["0", "8"]);
        // H.264 keeps the offer's payload type and fmtp.
        assert_eq!(ans.media[0].formats, ["97"]);
        assert_eq!(
            ans.media[0].fmtp(97).unwrap().to_string(),
            "97 profile-level-id=42e01f;packetization-mode=1"
        );
        assert_eq!(ans.media[3].formats, ["*"]);
        assert_eq!(ans.media[2].direction(), Some(Direction::SendRecv));
        assert_eq!(ans.origin, origin());
        assert_eq!(ans.connection.as_ref().unwrap().address, "192.0.2.1");
        // The answer survives its own serialization.
        assert_eq!(ans.to_string().parse::<SessionDescription>().unwrap(), ans);
    }

    #[test]
    fn no_common_codec_is_no_match() {
        let offer = sdp("m=audio 6000 RTP/AVP 18 101\r\na=rtpmap:101 telephone-event/8000\r\n");
        assert!(answer(&offer, &local(), &origin()).is_err());
        let offer = sdp("m=audio 0 RTP/AVP 0\r\n");
        assert!(answer(&offer, &local(), &origin()).is_err());
        let offer = sdp("m=audio 6000 RTP/SAVP 0\r\n");
        assert!(answer(&offer, &local(), &origin()).is_err());
        let offer = sdp("");
        assert!(answer(&offer, &local(), &origin()).is_err());
        // H.264 with a packetization mode we do not do.
        let offer = sdp("m=video 6000 RTP/AVP 97\r\na=rtpmap:97 H264/90000\r\n");
        assert!(answer(&offer, &local(), &origin()).is_err());
    }

    #[test]
    fn direction_is_mirrored() {
        for (offered, expected) in [
            ("a=sendonly\r\n", Direction::RecvOnly),
            ("a=recvonly\r\n", Direction::SendOnly),
            ("a=inactive\r\n", Direction::Inactive),
            ("a=sendrecv\r\n", Direction::SendRecv),
            ("", Direction::SendRecv),
            ("c=IN IP4 0.0.0.0\r\n", Direction::RecvOnly),
        ] {
            let offer = sdp(&format!("m=audio 6000 RTP/AVP 0\r\n{offered}"));
            let ans = answer(&offer, &local(), &origin()).unwrap();
            assert_eq!(ans.media[0].direction(), Some(expected), "{offered}");
        }
        // Session-level direction applies too.
        let mut offer = sdp("m=audio 6000 RTP/AVP 0\r\n");
        offer.attributes.push(Attribute::flag("sendonly"));
        let ans = answer(&offer, &local(), &origin()).unwrap();
        assert_eq!(ans.media[0].direction(), Some(Direction::RecvOnly));
    }

    #[test]
    fn telephone_event_ranges_intersect() {
        let offer = sdp(
            "m=audio 6000 RTP/AVP 0 100\r\na=rtpmap:100 telephone-event/8000\r\n\
                         a=fmtp:100 0-11,16\r\n",
        );
        let ans = answer(&offer, &local(), &origin()).unwrap();
        assert_eq!(ans.media[0].formats, ["0", "100"]);
        assert_eq!(ans.media[0].fmtp(100).unwrap().to_string(), "100 0-11");
        // Disjoint ranges: telephone-event dropped, the call still accepted.
        let offer = sdp(
            "m=audio 6000 RTP/AVP 0 100\r\na=rtpmap:100 telephone-event/8000\r\n\
                         a=fmtp:100 16\r\n",
        );
        let ans = answer(&offer, &local(), &origin()).unwrap();
        assert_eq!(ans.media[0].formats, ["0"]);
        // No fmtp in the offer means 0-15.
        let offer = sdp("m=audio 6000 RTP/AVP 0 100\r\na=rtpmap:100 telephone-event/8000\r\n");
        let ans = answer(&offer, &local(), &origin()).unwrap();
        assert_eq!(ans.media[0].fmtp(100).unwrap().to_string(), "100 0-15");
    }

    /// Local capabilities of a wideband Speex client that can be transcoded to G.711, with a
    /// telephone-event at each clock rate, as the gateway offers them.
    fn wideband_local() -> LocalCapabilities {
        LocalCapabilities {
            address: "192.0.2.1".parse().unwrap(),
            session_name: "-".into(),
            media: vec![MediaCapability::new(
                "audio",
                4000,
                vec![
                    Codec::new(96, "speex", 16000, None),
                    Codec::new(0, "PCMU", 8000, None),
                    Codec::new(100, "telephone-event", 16000, None).with_param("0-15", None),
                    Codec::new(101, "telephone-event", 8000, None).with_param("0-15", None),
                ],
            )],
        }
    }

    #[test]
    fn the_answer_keeps_the_telephone_event_at_the_codecs_clock() {
        // Offered at 8 and 16 kHz: the Speex answer keeps 16 kHz, the PCMU answer 8 kHz.
        let offer = sdp(
            "m=audio 6000 RTP/AVP 97 0 110 111\r\na=rtpmap:97 speex/16000\r\n\
                         a=rtpmap:110 telephone-event/8000\r\n\
                         a=rtpmap:111 telephone-event/16000\r\n",
        );
        let ans = answer(&offer, &wideband_local(), &origin()).unwrap();
        assert_eq!(ans.media[0].formats, ["97", "0", "111"]);
        let audio = negotiated_media(&ans, &offer, true)[0].clone().unwrap();
        assert_eq!(audio.codec.clock_rate, 16000);
        let event = audio.telephone_event.unwrap();
        assert_eq!((event.payload_types.send, event.clock_rate), (111, 16000));
        let offer = sdp("m=audio 6000 RTP/AVP 0 110 111\r\n\
                         a=rtpmap:110 telephone-event/8000\r\n\
                         a=rtpmap:111 telephone-event/16000\r\n");
        let ans = answer(&offer, &wideband_local(), &origin()).unwrap();
        assert_eq!(ans.media[0].formats, ["0", "110"]);
        // Only at another rate than the codec's: that one (as a legacy peer offers it).
        let offer = sdp("m=audio 6000 RTP/AVP 97 110\r\na=rtpmap:97 speex/16000\r\n\
                         a=rtpmap:110 telephone-event/8000\r\n");
        let ans = answer(&offer, &wideband_local(), &origin()).unwrap();
        assert_eq!(ans.media[0].formats, ["97", "110"]);
        let audio = negotiated_media(&ans, &offer, true)[0].clone().unwrap();
        assert_eq!(audio.telephone_event.unwrap().clock_rate, 8000);
        // A rate we do not offer is not answered.
        let offer = sdp("m=audio 6000 RTP/AVP 97 112\r\na=rtpmap:97 speex/16000\r\n\
                         a=rtpmap:112 telephone-event/48000\r\n");
        let ans = answer(&offer, &wideband_local(), &origin()).unwrap();
        assert_eq!(ans.media[0].formats, ["97"]);
    }

    #[test]
    fn an_answer_telephone_event_is_taken_at_the_chosen_codecs_rate() {
        let ours = create_offer(&wideband_local(), &origin());
        assert_eq!(ours.media[0].formats, ["96", "0", "100", "101"]);
        for (answer_body, codec_rate, event) in [
            // Speex with its own telephone-event, listed after the 8 kHz one.
            (
                "m=audio 7000 RTP/AVP 96 101 100\r\na=rtpmap:96 speex/16000\r\n\
                 a=rtpmap:101 telephone-event/8000\r\na=rtpmap:100 telephone-event/16000\r\n",
                16000,
                Some((100, 16000)),
            ),
            // PCMU with the 8 kHz one under the peer's own number.
            (
                "m=audio 7000 RTP/AVP 0 120\r\na=rtpmap:120 telephone-event/8000\r\n",
                8000,
                Some((120, 8000)),
            ),
            // Speex with only the 8 kHz one: taken (what older peers answer).
            (
                "m=audio 7000 RTP/AVP 96 101\r\na=rtpmap:96 speex/16000\r\n\
                 a=rtpmap:101 telephone-event/8000\r\n",
                16000,
                Some((101, 8000)),
            ),
            // A telephone-event at a rate we did not offer is not one we can use.
            (
                "m=audio 7000 RTP/AVP 96 102\r\na=rtpmap:96 speex/16000\r\n\
                 a=rtpmap:102 telephone-event/48000\r\n",
                16000,
                None,
            ),
        ] {
            let media = process_answer(&ours, &sdp(answer_body)).unwrap();
            let audio = media[0].as_ref().unwrap();
            assert_eq!(audio.codec.clock_rate, codec_rate, "{answer_body}");
            let got = audio
                .telephone_event
                .map(|e| (e.payload_types.send, e.clock_rate));
            assert_eq!(got, event, "{answer_body}");
        }
    }

    #[test]
    fn offer_answer_round_and_reoffer() {
        let ours = create_offer(&local(), &origin());
        assert_eq!(ours.media.len(), 2);
        assert_eq!(ours.media[0].formats, ["0", "8", "101"]);
        assert_eq!(
            ours.media[1].fmtp(96).unwrap().get("packetization-mode"),
            Some("1")
        );
        // The remote answers PCMA first, with its own telephone-event number and address.
        let theirs = sdp(
            "m=audio 7000 RTP/AVP 8 102\r\na=rtpmap:102 telephone-event/8000\r\n\
                          a=ptime:30\r\nm=video 0 RTP/AVP 96\r\n",
        );
        let media = process_answer(&ours, &theirs).unwrap();
        let audio = media[0].as_ref().unwrap();
        assert_eq!(audio.codec.encoding_name, "PCMA");
        assert_eq!(
            audio.payload_types,
            PayloadTypes {
                send: 8,
                receive: 8
            }
        );
        assert_eq!(
            audio.telephone_event,
            Some(TelephoneEvent {
                payload_types: PayloadTypes {
                    send: 102,
                    receive: 101
                },
                clock_rate: 8000
            })
        );
        assert_eq!(audio.remote, Some("198.51.100.7:7000".parse().unwrap()));
        assert_eq!(audio.ptime, Some(30));
        assert_eq!(audio.direction, Direction::SendRecv);
        assert!(media[1].is_none());

        let held = reoffer(&ours, true);
        assert_eq!(held.origin.session_version, 2);
        assert!(held
            .media
            .iter()
            .all(|m| m.direction() == Some(Direction::SendOnly)));
        let resumed = reoffer(&held, false);
        assert_eq!(resumed.origin.session_version, 3);
        assert!(resumed
            .media
            .iter()
            .all(|m| m.direction() == Some(Direction::SendRecv)));
        // The remote answers our hold with recvonly: we send, they do not.
        let hold_answer = sdp("m=audio 7000 RTP/AVP 8\r\na=recvonly\r\nm=video 0 RTP/AVP 96\r\n");
        let media = process_answer(&held, &hold_answer).unwrap();
        assert_eq!(media[0].as_ref().unwrap().direction, Direction::SendOnly);

        assert!(process_answer(&ours, &sdp("m=audio 7000 RTP/AVP 8\r\n")).is_err());
        assert!(process_answer(
            &ours,
            &sdp("m=audio 0 RTP/AVP 8\r\nm=video 0 RTP/AVP 9\r\n")
        )
        .is_err());
    }

    #[test]
    fn answerer_side_negotiation_uses_the_offer_numbers() {
        let offer = sdp(
            "m=audio 6000 RTP/AVP 8 0 110\r\na=rtpmap:110 telephone-event/8000\r\n\
                         a=sendonly\r\n",
        );
        let ans = answer(&offer, &local(), &origin()).unwrap();
        let media = negotiated_media(&ans, &offer, true);
        let audio = media[0].as_ref().unwrap();
        assert_eq!(audio.codec.encoding_name, "PCMU");
        assert_eq!(
            audio.payload_types,
            PayloadTypes {
                send: 0,
                receive: 0
            }
        );
        assert_eq!(
            audio.telephone_event,
            Some(TelephoneEvent {
                payload_types: PayloadTypes {
                    send: 110,
                    receive: 110
                },
                clock_rate: 8000
            })
        );
        assert_eq!(audio.direction, Direction::RecvOnly);
    }

    #[test]
    fn hold_address_gives_no_remote() {
        let ours = create_offer(&local(), &origin());
        let theirs = sdp("m=audio 7000 RTP/AVP 0\r\nc=IN IP4 0.0.0.0\r\nm=video 0 RTP/AVP 96\r\n");
        let media = process_answer(&ours, &theirs).unwrap();
        let audio = media[0].as_ref().unwrap();
        assert_eq!(audio.remote, None);
        assert_eq!(audio.remote_host, "0.0.0.0");
        assert_eq!(audio.direction, Direction::RecvOnly);
    }

    proptest! {
        /// Hostile but parseable offers: answering never panics, and an answer re-parses.
        #[test]
        fn answering_arbitrary_offers_never_panics(lines in proptest::collection::vec(
            prop_oneof![
                "m=(audio|video|text) [0-9]{1,5} RTP/AVPF?( [0-9*]{1,3}){0,4}",
                "a=(rtpmap|fmtp):[0-9]{1,3} [ -~]{0,20}",
                "a=(sendonly|recvonly|inactive|sendrecv|ptime:[0-9]{0,3})",
                "c=IN IP[46] [0-9.:]{1,15}",
            ],
            0..12,
        )) {
            if let Ok(offer) = format!("v=0\r\no=- 1 1 IN IP4 1.1.1.1\r\ns=-\r\n{}", lines.join("\r\n")).parse::<SessionDescription>() {
                if let Ok(ans) = answer(&offer, &local(), &origin()) {
                    prop_assert_eq!(ans.media.len(), offer.media.len());
                    prop_assert_eq!(ans.to_string().parse::<SessionDescription>(), Ok(ans.clone()));
                    let _ = negotiated_media(&ans, &offer, true);
                    let _ = process_answer(&offer, &ans);
                }
            }
        }
    }
}
