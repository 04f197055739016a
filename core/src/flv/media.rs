//! Classification of FLV audio and video tag bodies (the payloads of RTMP messages 8 and 9).
//!
//! Reads only the first one or two bytes: codec ids, frame type, and whether a message is a
//! decoder configuration record (AVC/HEVC/AAC sequence header) that every player needs before
//! its first frame. Understands the legacy FLV layout and the enhanced-RTMP extended header.

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
    /// A keyframe (frame type 1), which a new player may start decoding at.
    pub keyframe: bool,
    /// A decoder configuration record (AVC sequence header or enhanced SequenceStart).
    pub sequence_header: bool,
    /// A video info/command frame (frame type 5): not a picture.
    pub command_frame: bool,
}

/// Classifies a video tag body; `None` for an empty body.
///
/// ```
/// use siprtmp_core::flv::media::classify_video;
/// let avc_keyframe_nalu = [0x17, 0x01, 0, 0, 0];
/// let info = classify_video(&avc_keyframe_nalu).unwrap();
/// assert!(info.keyframe && !info.sequence_header);
/// ```
pub fn classify_video(body: &[u8]) -> Option<VideoInfo> {
    let first = *body.first()?;
    if first & 0x80 != 0 {
        // Enhanced RTMP: [IsExHeader:1][FrameType:3][PacketType:4] then a FourCC.
        let frame_type = (first >> 4) & 0x07;
        let packet_type = first & 0x0F;
        return Some(VideoInfo {
            codec: 0xFF,
            keyframe: frame_type == 1,
            sequence_header: packet_type == 0,
            command_frame: frame_type == 5,
        });
    }
    let frame_type = first >> 4;
    let codec = first & 0x0F;
    let sequence_header = codec == video_codec::AVC && body.get(1) == Some(&0);
    Some(VideoInfo {
        codec,
        keyframe: frame_type == 1,
        sequence_header,
        command_frame: frame_type == 5,
    })
}

/// What an audio tag body is, as far as the server cares.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AudioInfo {
    /// Sound format (see [`audio_codec`]).
    pub codec: u8,
    /// An AAC AudioSpecificConfig (AAC packet type 0).
    pub sequence_header: bool,
}

/// Classifies an audio tag body; `None` for an empty body.
///
/// ```
/// use siprtmp_core::flv::media::{classify_audio, audio_codec};
/// let speex = [0xB2, 0x01, 0x02];
/// assert_eq!(classify_audio(&speex).unwrap().codec, audio_codec::SPEEX);
/// ```
pub fn classify_audio(body: &[u8]) -> Option<AudioInfo> {
    let first = *body.first()?;
    let codec = first >> 4;
    Some(AudioInfo {
        codec,
        sequence_header: codec == audio_codec::AAC && body.get(1) == Some(&0),
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
        assert!(v.keyframe && v.sequence_header);
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
}
