//! The gateway client's codec tokens and what they mean in SDP.
//!
//! A Flash client names the codecs it can send and receive with tokens, most preferred first:
//! `wideband`, `narrowband`, `pcmu`, `pcma` (and the aliases `ulaw`, `alaw`), `dtmf`, `h264`
//! and `flv`. Each maps to one rtpmap with the payload type the original gateway used, so
//! offers look the same on the wire as they always did. An enhanced-RTMP client that sends
//! and hears Opus (FourCC `Opus`, 48 kHz) names `opus`: `opus/48000/2` (RFC 7587) with payload
//! type 111, the one most SIP and WebRTC peers use. Without tokens the legacy offer is used:
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
    /// RFC 4733 telephone-events (payload type 101).
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

    /// The SDP codec (payload type, rtpmap, fmtp) the original gateway offered.
    pub fn codec(self) -> Codec {
        match self {
            CodecToken::Wideband => Codec::new(96, "speex", 16000, None),
            CodecToken::Narrowband => Codec::new(98, "speex", 8000, None),
            CodecToken::Pcmu => Codec::new(0, "PCMU", 8000, None),
            CodecToken::Pcma => Codec::new(8, "PCMA", 8000, None),
            CodecToken::Opus => Codec::new(111, "opus", 48000, Some(2)),
            CodecToken::Dtmf => {
                Codec::new(101, "telephone-event", 8000, None).with_param("0-15", None)
            }
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

/// Local capabilities for `tokens`: an audio m-line with the audio codecs (and
/// telephone-event) and, if any video codec is named, a video m-line, on the given RTP ports.
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
    let audio: Vec<Codec> = tokens
        .iter()
        .filter(|t| !t.is_video())
        .map(|t| t.codec())
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
        assert!(sdp.contains("m=audio 5000 RTP/AVP 96 101\r\n"), "{sdp}");
        assert!(sdp.contains("a=rtpmap:96 speex/16000\r\n"), "{sdp}");
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
