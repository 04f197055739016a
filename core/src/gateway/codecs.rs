//! The gateway client's codec tokens and what they mean in SDP.
//!
//! A Flash client names the codecs it can send and receive with tokens, most preferred first:
//! `wideband`, `narrowband`, `pcmu`, `pcma` (and the aliases `ulaw`, `alaw`), `dtmf`, `h264`
//! and `flv`. Each maps to one rtpmap with the payload type the original gateway used, so
//! offers look the same on the wire as they always did. An enhanced-RTMP client that sends
//! and hears Opus (FourCC `Opus`, 48 kHz) names `opus`: `opus/48000/2` (RFC 7587) with payload
//! type 111, the one most SIP and WebRTC peers use. `dtmf` offers RFC 4733 telephone-events
//! at the clock rate of each audio codec offered (RFC 4733 section 7.1.1: the events share the
//! audio's clock), each with its own payload type ([`telephone_event`]), and at 8 kHz in any
//! case, the rate every peer knows. Without tokens the legacy offer is used:
//! Speex at the connection's rate, telephone-event, and the x-flv video tunnel. (With
//! transcoding available, a Speex or Opus client's offer also lists the codecs the gateway
//! can transcode it to after its own audio codecs: see [`super::call_session`].)

use std::net::IpAddr;

use crate::sdp::{Codec, Direction, LocalCapabilities, MediaCapability};

/// One codec the client can name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum CodecToken {
    /// Speex at 16 kHz (payload type 96).
    Wideband,
    /// Speex at 8 kHz (payload type 98).
    Narrowband,
    /// G.711 mu-law (payload type 0; also `ulaw`).
    Pcmu,
    /// G.711 A-law (payload type 8; also `alaw`).
    Pcma,
    /// Opus, 48 kHz, enhanced RTMP's FourCC `Opus` (payload type 111, `opus/48000/2`).
    Opus,
    /// RFC 4733 telephone-events: at 8 kHz payload type 101, and one at the clock rate of each
    /// audio codec offered (see [`telephone_event`]).
    Dtmf,
    /// H.264, packetization-mode 1, profile-level-id 420014 (payload type 99).
    H264,
    /// The x-flv tunnel between two gateways (payload type 97).
    Flv,
}

impl CodecToken {
    /// The token for a client string, case-insensitively; `None` for unknown ones.
    ///
    /// ```
    /// use siprtmp_core::gateway::codecs::CodecToken;
    /// assert_eq!(CodecToken::parse("ULAW"), Some(CodecToken::Pcmu));
    /// assert_eq!(CodecToken::parse("Opus"), Some(CodecToken::Opus));
    /// assert_eq!(CodecToken::parse("g729"), None);
    /// ```
    pub fn parse(token: &str) -> Option<Self> {
        Some(match token.to_ascii_lowercase().as_str() {
            "wideband" => CodecToken::Wideband,
            "narrowband" => CodecToken::Narrowband,
            "pcmu" | "ulaw" => CodecToken::Pcmu,
            "pcma" | "alaw" => CodecToken::Pcma,
            "opus" => CodecToken::Opus,
            "dtmf" => CodecToken::Dtmf,
            "h264" => CodecToken::H264,
            "flv" => CodecToken::Flv,
            _ => return None,
        })
    }

    /// The token's name as the client API reports it back (`accepted(audio, video)`).
    pub fn name(self) -> &'static str {
        match self {
            CodecToken::Wideband => "wideband",
            CodecToken::Narrowband => "narrowband",
            CodecToken::Pcmu => "pcmu",
            CodecToken::Pcma => "pcma",
            CodecToken::Opus => "opus",
            CodecToken::Dtmf => "dtmf",
            CodecToken::H264 => "h264",
            CodecToken::Flv => "flv",
        }
    }

    /// Whether this codec goes on the video m-line.
    pub fn is_video(self) -> bool {
        matches!(self, CodecToken::H264 | CodecToken::Flv)
    }

    /// The SDP codec (payload type, rtpmap, fmtp) the original gateway offered (for `Dtmf`,
    /// its 8 kHz telephone-event).
    pub fn codec(self) -> Codec {
        match self {
            CodecToken::Wideband => Codec::new(96, "speex", 16000, None),
            CodecToken::Narrowband => Codec::new(98, "speex", 8000, None),
            CodecToken::Pcmu => Codec::new(0, "PCMU", 8000, None),
            CodecToken::Pcma => Codec::new(8, "PCMA", 8000, None),
            CodecToken::Opus => Codec::new(111, "opus", 48000, Some(2)),
            CodecToken::Dtmf => telephone_event(8000),
            CodecToken::H264 => Codec::new(99, "H264", 90000, None)
                .with_param("profile-level-id", Some("420014"))
                .with_param("packetization-mode", Some("1")),
            CodecToken::Flv => Codec::new(97, "x-flv", 1000, None),
        }
    }

    /// The token for a negotiated rtpmap (by encoding name and clock rate).
    pub fn from_rtpmap(encoding_name: &str, clock_rate: u32) -> Option<Self> {
        let name = encoding_name.to_ascii_lowercase();
        Some(match (name.as_str(), clock_rate) {
            ("speex", 16000) => CodecToken::Wideband,
            ("speex", 8000) => CodecToken::Narrowband,
            ("pcmu", 8000) => CodecToken::Pcmu,
            ("pcma", 8000) => CodecToken::Pcma,
            ("opus", 48000) => CodecToken::Opus,
            ("telephone-event", _) => CodecToken::Dtmf,
            ("h264", 90000) => CodecToken::H264,
            ("x-flv", _) => CodecToken::Flv,
            _ => return None,
        })
    }
}

/// The RFC 4733 telephone-event at `clock_rate`, events 0-15, with its payload type: 101 at
/// 8 kHz (the original gateway's), 100 at 16 kHz, 110 at 48 kHz (the number WebRTC peers give
/// `telephone-event/48000`), and 102 for any other rate (none of the gateway's codecs has one).
///
/// ```
/// use siprtmp_core::gateway::codecs::telephone_event;
/// assert_eq!(telephone_event(48000).rtpmap().to_string(), "110 telephone-event/48000");
/// ```
pub fn telephone_event(clock_rate: u32) -> Codec {
    let payload_type = match clock_rate {
        8000 => 101,
        16000 => 100,
        48000 => 110,
        _ => 102,
    };
    Codec::new(payload_type, "telephone-event", clock_rate, None).with_param("0-15", None)
}

/// The codecs a client offered or accepts, in preference order, unknown tokens skipped and
/// duplicates removed.
pub fn parse_tokens<'a>(tokens: impl IntoIterator<Item = &'a str>) -> Vec<CodecToken> {
    let mut out: Vec<CodecToken> = Vec::new();
    for token in tokens.into_iter().filter_map(CodecToken::parse) {
        if !out.contains(&token) {
            out.push(token);
        }
    }
    out
}

/// The legacy codec list when a client names none: Speex at the connection's rate,
/// telephone-event, and the x-flv video tunnel.
pub fn legacy_tokens(narrowband: bool) -> Vec<CodecToken> {
    let speex = if narrowband {
        CodecToken::Narrowband
    } else {
        CodecToken::Wideband
    };
    vec![speex, CodecToken::Dtmf, CodecToken::Flv]
}

/// Local capabilities for `tokens`: an audio m-line with the audio codecs (and, where `Dtmf`
/// is, a telephone-event at each of their clock rates in their order, then at 8 kHz if no
/// codec runs at 8 kHz) and, if any video codec is named, a video m-line, on the given RTP
/// ports.
///
/// ```
/// use siprtmp_core::gateway::codecs::{capabilities, parse_tokens};
/// let caps = capabilities(&parse_tokens(["pcmu", "dtmf", "h264"]), "127.0.0.1".parse().unwrap(), 4000, 4002);
/// assert_eq!(caps.media.len(), 2);
/// assert_eq!(caps.media[0].codecs[0].encoding_name, "PCMU");
/// assert_eq!(caps.media[1].codecs[0].encoding_name, "H264");
/// ```
pub fn capabilities(
    tokens: &[CodecToken],
    address: IpAddr,
    audio_port: u16,
    video_port: u16,
) -> LocalCapabilities {
    let mut rates: Vec<u32> = Vec::new();
    for t in tokens
        .iter()
        .filter(|t| !t.is_video() && **t != CodecToken::Dtmf)
    {
        let rate = t.codec().clock_rate;
        if !rates.contains(&rate) {
            rates.push(rate);
        }
    }
    if !rates.contains(&8000) {
        rates.push(8000);
    }
    let audio: Vec<Codec> = tokens
        .iter()
        .filter(|t| !t.is_video())
        .flat_map(|t| match t {
            CodecToken::Dtmf => rates.iter().map(|&r| telephone_event(r)).collect(),
            _ => vec![t.codec()],
        })
        .collect();
    let video: Vec<Codec> = tokens
        .iter()
        .filter(|t| t.is_video())
        .map(|t| t.codec())
        .collect();
    let mut media = Vec::new();
    if audio.iter().any(|c| c.encoding_name != "telephone-event") {
        let mut m = MediaCapability::new("audio", audio_port, audio);
        m.ptime = Some(20);
        m.direction = Direction::SendRecv;
        media.push(m);
    }
    if !video.is_empty() {
        media.push(MediaCapability::new("video", video_port, video));
    }
    LocalCapabilities {
        address,
        session_name: "-".into(),
        media,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sdp::offer_answer::create_offer;
    use crate::sdp::Origin;

    #[test]
    fn the_legacy_offer_matches_the_original_gateway() {
        let caps = capabilities(
            &legacy_tokens(false),
            "10.0.0.1".parse().unwrap(),
            5000,
            5002,
        );
        let origin = Origin {
            username: "-".into(),
            session_id: 1,
            session_version: 1,
            nettype: "IN".into(),
            addrtype: "IP4".into(),
            address: "10.0.0.1".into(),
        };
        let sdp = create_offer(&caps, &origin).serialize();
        // As the original, with the telephone-event at Speex's own clock before its 8 kHz one.
        assert!(sdp.contains("m=audio 5000 RTP/AVP 96 100 101\r\n"), "{sdp}");
        assert!(sdp.contains("a=rtpmap:96 speex/16000\r\n"), "{sdp}");
        assert!(
            sdp.contains("a=rtpmap:100 telephone-event/16000\r\na=fmtp:100 0-15\r\n"),
            "{sdp}"
        );
        assert!(
            sdp.contains("a=rtpmap:101 telephone-event/8000\r\n"),
            "{sdp}"
        );
        assert!(sdp.contains("m=video 5002 RTP/AVP 97\r\n"), "{sdp}");
        assert!(sdp.contains("a=rtpmap:97 x-flv/1000\r\n"), "{sdp}");
    }

    #[test]
    fn tokens_keep_order_drop_unknowns_and_duplicates() {
        let t = parse_tokens(["PCMA", "g729", "alaw", "opus", "wideband", "h264", "dtmf"]);
        assert_eq!(
            t,
            vec![
                CodecToken::Pcma,
                CodecToken::Opus,
                CodecToken::Wideband,
                CodecToken::H264,
                CodecToken::Dtmf
            ]
        );
        for token in t {
            let c = token.codec();
            assert_eq!(
                CodecToken::from_rtpmap(&c.encoding_name, c.clock_rate),
                Some(token)
            );
        }
    }

    #[test]
    fn dtmf_is_offered_at_every_audio_clock_rate_with_distinct_payload_types() {
        let ip = "10.0.0.1".parse().unwrap();
        let events = |tokens: &[&str]| -> Vec<(u8, u32)> {
            let caps = capabilities(&parse_tokens(tokens.iter().copied()), ip, 5000, 5002);
            caps.media[0]
                .codecs
                .iter()
                .filter(|c| c.encoding_name == "telephone-event")
                .map(|c| (c.payload_type, c.clock_rate))
                .collect()
        };
        // An Opus client that can be transcoded to Speex and G.711.
        assert_eq!(
            events(&["opus", "wideband", "pcmu", "pcma", "narrowband", "dtmf"]),
            [(110, 48000), (100, 16000), (101, 8000)]
        );
        assert_eq!(events(&["pcmu", "dtmf"]), [(101, 8000)]);
        assert_eq!(events(&["opus", "dtmf"]), [(110, 48000), (101, 8000)]);
        assert_eq!(events(&["wideband", "h264"]), []);
        // Where the client put `dtmf`, after the codecs of every rate.
        let caps = capabilities(&parse_tokens(["dtmf", "opus"]), ip, 5000, 5002);
        let names: Vec<_> = caps.media[0]
            .codecs
            .iter()
            .map(|c| (c.payload_type, c.clock_rate))
            .collect();
        assert_eq!(names, [(110, 48000), (101, 8000), (111, 48000)]);
        // Every payload type on the line is distinct.
        let all = capabilities(
            &parse_tokens(["opus", "wideband", "narrowband", "pcmu", "pcma", "dtmf"]),
            ip,
            5000,
            5002,
        );
        let mut pts: Vec<u8> = all.media[0].codecs.iter().map(|c| c.payload_type).collect();
        pts.sort_unstable();
        pts.dedup();
        assert_eq!(pts.len(), all.media[0].codecs.len());
    }

    #[test]
    fn h264_carries_the_original_fmtp() {
        let c = CodecToken::H264.codec();
        assert_eq!(c.payload_type, 99);
        assert!(c
            .fmtp
            .contains(&("profile-level-id".into(), Some("420014".into()))));
        assert!(c
            .fmtp
            .contains(&("packetization-mode".into(), Some("1".into()))));
    }
}
