//! Classification of FLV audio and video tag bodies (the payloads of RTMP messages 8 and 9).
//!
//! Reads only the headers: codec ids, frame type, and whether a message is a decoder
//! configuration (AVC/AAC sequence header, enhanced SequenceStart) or something else a player
//! needs before its first frame (enhanced video Metadata, audio MultichannelConfig), and which
//! tracks a multitrack message carries. Understands the legacy FLV layout and the enhanced-RTMP
//! extended headers (walked by [`super::enhanced`]).

use super::enhanced::{audio_packet, video_packet, walk, TrackSet, AUDIO_EX_HEADER};

/// FLV audio codec (sound format) ids, the high nibble of an audio tag's first byte.
pub mod audio_codec {
    /// Linear PCM, platform endian.
    pub const PCM: u8 = 0;
    /// ADPCM.
    pub const ADPCM: u8 = 1;
    /// MP3.
    pub const MP3: u8 = 2;
    /// Nellymoser 16 kHz mono.
    pub const NELLYMOSER_16K: u8 = 4;
    /// Nellymoser 8 kHz mono.
    pub const NELLYMOSER_8K: u8 = 5;
    /// Nellymoser.
    pub const NELLYMOSER: u8 = 6;
    /// G.711 A-law.
    pub const PCMA: u8 = 7;
    /// G.711 mu-law.
    pub const PCMU: u8 = 8;
    /// AAC.
    pub const AAC: u8 = 10;
    /// Speex.
    pub const SPEEX: u8 = 11;
    /// Enhanced RTMP: an ExAudioTagHeader with a FourCC follows.
    pub const EX_HEADER: u8 = 9;
}

/// FLV video codec ids, the low nibble of a (legacy) video tag's first byte.
pub mod video_codec {
    /// Sorenson H.263 (Flash's "flv1").
    pub const SORENSON_H263: u8 = 2;
    /// On2 VP6.
    pub const VP6: u8 = 4;
    /// AVC (H.264).
    pub const AVC: u8 = 7;
}

/// What a video tag body is, as far as the server cares.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct VideoInfo {
    /// Codec id (legacy) or 0xFF for an enhanced-RTMP FourCC codec.
    pub codec: u8,
    /// The FourCC of an enhanced message (of its first track), when the body holds one.
    pub fourcc: Option<[u8; 4]>,
    /// A keyframe (frame type 1) with a picture, which a new player may start decoding at.
    pub keyframe: bool,
    /// A decoder configuration record (AVC sequence header, enhanced SequenceStart or
    /// MPEG2TSSequenceStart).
    pub sequence_header: bool,
    /// Enhanced video metadata (PacketType Metadata: HDR `colorInfo`), which stays valid
    /// until replaced and so is kept like a configuration.
    pub metadata: bool,
    /// A video info/command frame (frame type 5): not a picture.
    pub command_frame: bool,
    /// A multitrack message.
    pub multitrack: bool,
    /// The tracks it carries (track 0 for everything but a multitrack message).
    pub tracks: TrackSet,
}

/// Classifies a video tag body; `None` for an empty body.
///
/// ```
/// use siprtmp_core::flv::media::classify_video;
/// let avc_keyframe_nalu = [0x17, 0x01, 0, 0, 0];
/// let info = classify_video(&avc_keyframe_nalu).unwrap();
/// assert!(info.keyframe && !info.sequence_header);
/// // Enhanced: IsExHeader | keyframe | CodedFramesX, "av01".
/// let av1 = classify_video(&[0x93, b'a', b'v', b'0', b'1', 0x12]).unwrap();
/// assert!(av1.keyframe && av1.fourcc == Some(*b"av01"));
/// ```
pub fn classify_video(body: &[u8]) -> Option<VideoInfo> {
    let (&first, rest) = body.split_first()?;
    if first & 0x80 != 0 {
        // Enhanced RTMP: [IsExHeader:1][FrameType:3][PacketType:4], then ModEx prefixes, a
        // multitrack header or the FourCC.
        let frame_type = (first >> 4) & 0x07;
        let header = walk(first & 0x0F, rest, video_packet::MULTITRACK);
        let packet_type = header.map(|h| h.packet_type);
        let pictures = matches!(
            packet_type,
            Some(video_packet::CODED_FRAMES | video_packet::CODED_FRAMES_X)
        );
        // A command frame carries a command byte instead of a body (but Metadata ignores the
        // frame type).
        let command_frame = frame_type == 5 && packet_type != Some(video_packet::METADATA);
        return Some(VideoInfo {
            codec: 0xFF,
            fourcc: header.and_then(|h| h.fourcc),
            keyframe: frame_type == 1 && pictures,
            sequence_header: !command_frame
                && matches!(
                    packet_type,
                    Some(video_packet::SEQUENCE_START | video_packet::MPEG2TS_SEQUENCE_START)
                ),
            metadata: packet_type == Some(video_packet::METADATA),
            command_frame,
            multitrack: header.is_some_and(|h| h.multitrack),
            tracks: header.map_or(TrackSet::single(0), |h| h.tracks),
        });
    }
    let frame_type = first >> 4;
    let codec = first & 0x0F;
    let avc_packet = (codec == video_codec::AVC).then(|| rest.first().copied());
    let sequence_header = avc_packet == Some(Some(0));
    Some(VideoInfo {
        codec,
        fourcc: None,
        // An AVC end of sequence (packet type 2) is no picture to start at.
        keyframe: frame_type == 1 && avc_packet != Some(Some(2)),
        sequence_header,
        metadata: false,
        command_frame: frame_type == 5,
        multitrack: false,
        tracks: TrackSet::single(0),
    })
}

/// What an audio tag body is, as far as the server cares.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AudioInfo {
    /// Sound format (see [`audio_codec`]); [`AUDIO_EX_HEADER`] (9) for enhanced audio.
    pub codec: u8,
    /// The FourCC of an enhanced message (of its first track), when the body holds one.
    pub fourcc: Option<[u8; 4]>,
    /// A decoder configuration: an AAC AudioSpecificConfig (AAC packet type 0) or an enhanced
    /// SequenceStart (Opus ID header, FLAC STREAMINFO, AAC config...).
    pub sequence_header: bool,
    /// An enhanced MultichannelConfig (channel order and count), kept like a configuration.
    pub multichannel_config: bool,
    /// A multitrack message.
    pub multitrack: bool,
    /// The tracks it carries (track 0 for everything but a multitrack message).
    pub tracks: TrackSet,
}

/// Classifies an audio tag body; `None` for an empty body.
///
/// ```
/// use siprtmp_core::flv::media::{classify_audio, audio_codec};
/// let speex = [0xB2, 0x01, 0x02];
/// assert_eq!(classify_audio(&speex).unwrap().codec, audio_codec::SPEEX);
/// // Enhanced: ExHeader | SequenceStart, "Opus", then the ID header.
/// let opus = classify_audio(&[0x90, b'O', b'p', b'u', b's', b'O']).unwrap();
/// assert!(opus.sequence_header && opus.fourcc == Some(*b"Opus"));
/// ```
pub fn classify_audio(body: &[u8]) -> Option<AudioInfo> {
    let (&first, rest) = body.split_first()?;
    let codec = first >> 4;
    if codec == AUDIO_EX_HEADER {
        let header = walk(first & 0x0F, rest, audio_packet::MULTITRACK);
        let packet_type = header.map(|h| h.packet_type);
        return Some(AudioInfo {
            codec,
            fourcc: header.and_then(|h| h.fourcc),
            sequence_header: packet_type == Some(audio_packet::SEQUENCE_START),
            multichannel_config: packet_type == Some(audio_packet::MULTICHANNEL_CONFIG),
            multitrack: header.is_some_and(|h| h.multitrack),
            tracks: header.map_or(TrackSet::single(0), |h| h.tracks),
        });
    }
    Some(AudioInfo {
        codec,
        fourcc: None,
        sequence_header: codec == audio_codec::AAC && rest.first() == Some(&0),
        multichannel_config: false,
        multitrack: false,
        tracks: TrackSet::single(0),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn avc_sequence_header_keyframe_and_inter_frame() {
        let seq = classify_video(&[0x17, 0x00, 0, 0, 0, 1]).unwrap();
        assert!(seq.sequence_header && seq.keyframe);
        let inter = classify_video(&[0x27, 0x01]).unwrap();
        assert!(!inter.keyframe && !inter.sequence_header);
        assert_eq!(inter.codec, video_codec::AVC);
        assert!(classify_video(&[]).is_none());
    }

    #[test]
    fn sorenson_keyframe_has_no_sequence_header() {
        let v = classify_video(&[0x12, 0x00]).unwrap();
        assert!(v.keyframe && !v.sequence_header);
    }

    #[test]
    fn enhanced_rtmp_sequence_start() {
        // IsExHeader | keyframe | SequenceStart, then 'hvc1'.
        let v = classify_video(&[0x90, b'h', b'v', b'c', b'1']).unwrap();
        assert!(v.sequence_header && !v.keyframe);
    }

    #[test]
    fn aac_config_versus_raw() {
        assert!(
            classify_audio(&[0xAF, 0x00, 0x12, 0x10])
                .unwrap()
                .sequence_header
        );
        assert!(!classify_audio(&[0xAF, 0x01, 0x21]).unwrap().sequence_header);
        assert!(!classify_audio(&[0xB2, 0x00]).unwrap().sequence_header);
    }

    #[test]
    fn enhanced_video_packet_types() {
        let hvc = |first: u8| classify_video(&[first, b'h', b'v', b'c', b'1', 0, 0, 0]).unwrap();
        // Keyframe + CodedFrames / CodedFramesX: a picture to start at.
        assert!(hvc(0x91).keyframe && hvc(0x93).keyframe);
        assert!(!hvc(0xA1).keyframe && !hvc(0xA3).keyframe);
        // SequenceEnd with the keyframe bit is no picture.
        assert!(!hvc(0x92).keyframe && !hvc(0x92).sequence_header);
        // MPEG2TSSequenceStart configures too; Metadata ignores the frame type.
        assert!(hvc(0x95).sequence_header);
        let meta = hvc(0xD4);
        assert!(meta.metadata && !meta.command_frame && !meta.keyframe);
        // A command frame (type 5) with CodedFrames: a command byte, no picture.
        let command = hvc(0xD1);
        assert!(command.command_frame && !command.keyframe);
        assert_eq!(hvc(0x90).fourcc, Some(*b"hvc1"));
    }

    #[test]
    fn multitrack_video_as_ffmpeg_writes_its_second_track() {
        // Keyframe | Multitrack, [OneTrack | SequenceStart], "avc1", track 1, then the record.
        let seq = classify_video(&[0x96, 0x00, b'a', b'v', b'c', b'1', 1, 1, 0x64]).unwrap();
        assert!(seq.sequence_header && seq.multitrack);
        assert_eq!(seq.tracks, TrackSet::single(1));
        // Keyframe | Multitrack, [OneTrack | CodedFramesX], "avc1", track 1.
        let key = classify_video(&[0x96, 0x03, b'a', b'v', b'c', b'1', 1, 0, 0]).unwrap();
        assert!(key.keyframe && !key.sequence_header);
        let inter = classify_video(&[0xA6, 0x03, b'a', b'v', b'c', b'1', 1, 0, 0]).unwrap();
        assert!(!inter.keyframe && inter.tracks.contains(1));
    }

    #[test]
    fn a_mod_ex_prefix_does_not_hide_a_keyframe() {
        // Keyframe | ModEx, 3 bytes of nanosecond offset, [TimestampOffsetNano | CodedFrames].
        let v = classify_video(&[0x97, 2, 0, 1, 2, 0x01, b'v', b'p', b'0', b'9']).unwrap();
        assert!(v.keyframe && v.fourcc == Some(*b"vp09"));
        // Truncated inside the ModEx data: neither keyframe nor configuration.
        let cut = classify_video(&[0x97, 9, 0, 1]).unwrap();
        assert!(!cut.keyframe && !cut.sequence_header);
    }

    #[test]
    fn enhanced_audio_packet_types() {
        let opus = |second: u8| classify_audio(&[second, b'O', b'p', b'u', b's', 1]).unwrap();
        assert!(opus(0x90).sequence_header);
        assert!(!opus(0x91).sequence_header && !opus(0x91).multichannel_config);
        assert!(opus(0x94).multichannel_config);
        assert_eq!(opus(0x91).codec, audio_codec::EX_HEADER);
        // Multitrack, [ManyTracks | SequenceStart], "mp4a", tracks 0 and 2.
        let both = [
            0x95, 0x10, b'm', b'p', b'4', b'a', 0, 0, 0, 2, 0x12, 0x10, 2, 0, 0, 2, 0x12, 0x10,
        ];
        let a = classify_audio(&both).unwrap();
        assert!(a.sequence_header && a.multitrack);
        assert!(a.tracks.contains(0) && a.tracks.contains(2));
    }

    proptest::proptest! {
        #[test]
        fn hostile_bodies_classify_without_panic(
            first in proptest::prelude::any::<u8>(),
            rest in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..64),
        ) {
            let mut body = vec![first];
            body.extend_from_slice(&rest);
            let v = classify_video(&body).unwrap();
            // An enhanced keyframe is a picture: never also a configuration or a command.
            if first & 0x80 != 0 {
                proptest::prop_assert!(!(v.keyframe && (v.sequence_header || v.command_frame)));
            }
            let a = classify_audio(&body).unwrap();
            proptest::prop_assert!(!(a.sequence_header && a.multichannel_config));
        }
    }
}
