//! [`GatewayCodec`]: what the calls of a gateway point speak, as `--codecs` names it: the
//! client's codec (the only one its `invite` offers) and the far end it calls, which either
//! answers with that codec (the gateway passes the frames through) or speaks only G.711 or
//! Speex (the gateway transcodes). Each has its media file, the sipp scenario of its far end,
//! and the way its calls recognise their echoed frames ([`EchoMatch`]).

use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::flv;
use crate::load::calls::SeqPlan;
use crate::load::echo_match::EchoMatch;
use crate::load::media::MediaLoop;

/// The RTMP client's audio.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Client {
    /// Speex 16 kHz (`wideband`, what Flash sends).
    Wideband,
    /// Speex 8 kHz (`narrowband`).
    Narrowband,
    /// Opus 48 kHz in enhanced RTMP (`opus`, what ffmpeg 6.1 and later and OBS send).
    Opus,
}

/// What the far end answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Far {
    /// The first codec offered: the client's own (pass-through).
    Same,
    /// PCMU only.
    Pcmu,
    /// PCMA only.
    Pcma,
    /// Speex 16 kHz only (for an Opus client).
    Speex,
}

/// What the calls of a point speak. See the module documentation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct GatewayCodec {
    client: Client,
    far: Far,
}

impl GatewayCodec {
    /// Speex 16 kHz, passed through.
    pub(crate) const WIDEBAND: GatewayCodec = GatewayCodec {
        client: Client::Wideband,
        far: Far::Same,
    };

    /// Every `--codecs` name, in the order `--help` lists them.
    pub(crate) const NAMES: [&'static str; 10] = [
        "wideband",
        "narrowband",
        "opus",
        "wideband-pcmu",
        "wideband-pcma",
        "narrowband-pcmu",
        "narrowband-pcma",
        "opus-pcmu",
        "opus-pcma",
        "opus-speex",
    ];

    /// From its `--codecs` name: the client's codec token, then `-pcmu`, `-pcma` or (Opus
    /// only) `-speex` for a far end that speaks only that.
    pub(crate) fn parse(name: &str) -> Result<Self, String> {
        let (client, far) = match name.split_once('-') {
            Some((client, far)) => (client, Some(far)),
            None => (name, None),
        };
        let client = match client {
            "wideband" => Client::Wideband,
            "narrowband" => Client::Narrowband,
            "opus" => Client::Opus,
            _ => return Err(unknown(name)),
        };
        let far = match (far, client) {
            (None, _) => Far::Same,
            (Some("pcmu"), _) => Far::Pcmu,
            (Some("pcma"), _) => Far::Pcma,
            (Some("speex"), Client::Opus) => Far::Speex,
            _ => return Err(unknown(name)),
        };
        Ok(Self { client, far })
    }

    /// Its `--codecs` name.
    pub(crate) fn name(self) -> String {
        match self.far {
            Far::Same => self.token().to_owned(),
            Far::Pcmu => format!("{}-pcmu", self.token()),
            Far::Pcma => format!("{}-pcma", self.token()),
            Far::Speex => format!("{}-speex", self.token()),
        }
    }

    /// The token the calls offer in `invite`.
    pub(crate) fn token(self) -> &'static str {
        match self.client {
            Client::Wideband => "wideband",
            Client::Narrowband => "narrowband",
            Client::Opus => "opus",
        }
    }

    /// For reports: the client's codec, and the far end's when the gateway transcodes.
    pub(crate) fn label(self) -> String {
        let client = match self.client {
            Client::Wideband => "Speex 16 kHz",
            Client::Narrowband => "Speex 8 kHz",
            Client::Opus => "Opus",
        };
        match self.far {
            Far::Same => client.to_owned(),
            Far::Pcmu => format!("{client} <-> PCMU"),
            Far::Pcma => format!("{client} <-> PCMA"),
            Far::Speex => format!("{client} <-> Speex 16 kHz"),
        }
    }

    /// Whether the gateway transcodes (the far end does not speak the client's codec).
    pub(crate) fn transcoded(self) -> bool {
        self.far != Far::Same
    }

    /// How the calls recognise their echoed frames: by the sequence tag when the gateway
    /// gives the bytes back, by the timestamp when it transcodes.
    pub(crate) fn echo_match(self) -> EchoMatch {
        if self.transcoded() {
            EchoMatch::Timestamp
        } else {
            EchoMatch::Tag
        }
    }

    /// The media file in `--media-dir`.
    pub(crate) fn media_file(self) -> &'static str {
        match self.client {
            Client::Wideband => "speex16k_audio_20s.flv",
            Client::Narrowband => "speex8k_audio_20s.flv",
            Client::Opus => "opus_audio_20s.flv",
        }
    }

    /// The far end's sipp scenario: `pass_through` (`--sipp-scenario`) when it answers with
    /// the client's codec, else the project's scenario that answers only the far end's.
    pub(crate) fn far_end(self, pass_through: &Path) -> PathBuf {
        let only = |name: &str| crate::test_inputs::sipp_dir().join(name);
        match self.far {
            Far::Same => pass_through.to_path_buf(),
            Far::Pcmu => only("uas_echo_pcmu_only.xml"),
            Far::Pcma => only("uas_echo_pcma_only.xml"),
            Far::Speex => only("uas_echo_speex_only.xml"),
        }
    }

    /// Sequence numbers of the frames. Tagged (passed through), in the last 8 bytes, the
    /// number's low byte last. The narrowband rewrite keeps every bit of a frame but redoes
    /// the padding after it: in the 8 kHz file each packet is one 300-bit frame (mode 5) in
    /// 38 bytes, so the last byte's low 4 bits are padding and come back as `0111` (a 0, then
    /// 1s). Numbers that end in those bits (7, 23, 39...) come back unchanged. Transcoded
    /// frames carry no tag: consecutive numbers.
    pub(crate) fn seq_plan(self) -> SeqPlan {
        match (self.client, self.far) {
            (Client::Narrowband, Far::Same) => SeqPlan { first: 7, step: 16 },
            _ => SeqPlan::CONSECUTIVE,
        }
    }

    /// The looped media of the calls, from `media_dir`.
    pub(crate) fn load_media(self, media_dir: &Path) -> Result<Arc<MediaLoop>, String> {
        let path = media_dir.join(self.media_file());
        let data = crate::read_media(&path)?;
        let tags = flv::parse_tags(&data).map_err(|e| format!("{}: {e}", path.display()))?;
        Ok(Arc::new(MediaLoop::new(tags)?))
    }
}

fn unknown(name: &str) -> String {
    format!(
        "unknown codec {name:?} ({})",
        GatewayCodec::NAMES.join(", ")
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::load::media::{read_tag, tag_payload};
    use bytes::BytesMut;
    use siprtmp_core::media::speex::wideband_to_narrowband;

    /// A 38-byte narrowband packet as the 8 kHz file has them: one mode-5 frame (300 bits:
    /// wideband flag 0, mode 0101, then 295 bits of codec data), padded with 0111.
    fn mode5_packet() -> Vec<u8> {
        let mut p: Vec<u8> = (0..38u8).map(|i| i.wrapping_mul(37) ^ 0x5a).collect();
        p[0] = (p[0] & 0x07) | (5 << 3);
        p[37] = (p[37] & 0xf0) | 0x07;
        p
    }

    #[test]
    fn narrowband_tags_come_back_from_the_gateways_rewrite_unchanged() {
        let plan = GatewayCodec::parse("narrowband").unwrap().seq_plan();
        for k in 0..64u32 {
            let seq = plan.first + k * plan.step;
            // The FLV body: audio header byte, then the Speex packet with its tag.
            let mut body = vec![0xb2];
            body.extend(mode5_packet());
            let tagged = tag_payload(&body, seq);
            let mut out = BytesMut::new();
            assert_eq!(wideband_to_narrowband(&tagged[1..], &mut out), Ok(1));
            assert_eq!(&out[..], &tagged[1..], "seq {seq}");
            assert_eq!(read_tag(&tagged), Some(seq));
        }
        // Any other number loses its tag: the padding comes back as 0111.
        let tagged = tag_payload(&[[0xb2].as_slice(), &mode5_packet()].concat(), 8);
        let mut out = BytesMut::new();
        wideband_to_narrowband(&tagged[1..], &mut out).unwrap();
        assert_ne!(&out[..], &tagged[1..]);
    }

    #[test]
    fn names_parse_and_print_back_and_say_how_echoes_are_told() {
        for name in GatewayCodec::NAMES {
            let codec = GatewayCodec::parse(name).unwrap();
            assert_eq!(codec.name(), name);
            assert_eq!(codec.transcoded(), name.contains('-'), "{name}");
            let by_timestamp = codec.echo_match() == EchoMatch::Timestamp;
            assert_eq!(by_timestamp, codec.transcoded(), "{name}");
            assert!(name.starts_with(codec.token()));
            let far = codec.far_end(Path::new("/any.xml"));
            assert_eq!(far == Path::new("/any.xml"), !codec.transcoded(), "{name}");
            assert!(!codec.transcoded() || far.is_file(), "{}", far.display());
        }
        assert_eq!(GatewayCodec::parse("wideband"), Ok(GatewayCodec::WIDEBAND));
        for bad in [
            "",
            "speex",
            "wideband-",
            "wideband-speex",
            "pcmu",
            "opus-pcmu-x",
        ] {
            assert!(GatewayCodec::parse(bad).is_err(), "{bad}");
        }
        // Only the tagged narrowband frames need numbers the rewrite keeps.
        let narrow = GatewayCodec::parse("narrowband-pcmu").unwrap();
        assert_eq!(narrow.seq_plan(), SeqPlan::CONSECUTIVE);
        assert_eq!(
            GatewayCodec::parse("opus-speex").unwrap().label(),
            "Opus <-> Speex 16 kHz"
        );
    }

    #[test]
    fn the_codec_files_are_the_test_media_and_frames_are_what_the_plan_assumes() {
        let dir = crate::test_inputs::media_dir();
        let narrowband = GatewayCodec::parse("narrowband").unwrap();
        let data = std::fs::read(crate::test_inputs::media(narrowband.media_file())).unwrap();
        let tags = flv::parse_tags(&data).unwrap();
        let audio: Vec<_> = tags.iter().filter(|t| t.type_id == 8).collect();
        assert!(!audio.is_empty());
        // One mode-5 frame (first bit 0, mode 5) in 38 bytes, after the FLV audio byte.
        assert!(audio
            .iter()
            .all(|t| t.body.len() == 39 && t.body[1] >> 3 == 5));
        for name in GatewayCodec::NAMES {
            let codec = GatewayCodec::parse(name).unwrap();
            assert!(codec.load_media(&dir).is_ok(), "{name}");
        }
    }
}
