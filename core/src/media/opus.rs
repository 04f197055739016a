//! Opus on the RTMP side of the gateway: the enhanced-RTMP messages that carry it (an
//! ExAudioTagHeader, SoundFormat 9, with FourCC `Opus`), as ffmpeg 6.1 and later and OBS publish
//! them, and the sequence start a player needs before the first frame.
//!
//! A client sends one Opus packet per message, as a single-track CodedFrames message:
//! `0x91` (ExHeader 9 | CodedFrames 1), `Opus`, the packet. Before the frames it sends a
//! SequenceStart (`0x90`, `Opus`, the 19-byte Opus ID header of RFC 7845 section 5.1) and
//! ffmpeg also a MultichannelConfig (`0x94`): they carry no audio, and the gateway reads none
//! of them (it decodes any channel count to mono; RTP's `opus/48000/2` is always 48 kHz).
//! A message with ModEx prefixes or a multitrack one is not a gateway client's audio track
//! and is not taken. Towards the client, the gateway sends the same layout: a SequenceStart
//! ([`sequence_start`]) before the first frame of each play, then one CodedFrames message per
//! packet.

use bytes::Bytes;

use super::frame::MediaFrame;
use crate::flv::enhanced::{audio_packet, AUDIO_EX_HEADER};
use crate::rtmp::message::type_id;

/// Opus always runs its RTP clock, and its RTMP side, at 48 kHz (RFC 7587).
pub const SAMPLE_RATE: u32 = 48_000;

/// Samples in a 20 ms frame at [`SAMPLE_RATE`]: what the gateway's encoder sends.
pub const FRAME_SAMPLES: usize = 960;

/// The FourCC of Opus in enhanced RTMP.
pub const FOURCC: [u8; 4] = *b"Opus";

/// The tag header of a CodedFrames message: ExHeader | CodedFrames, then the FourCC.
pub const CODED_FRAMES_HEADER: [u8; 5] = header(audio_packet::CODED_FRAMES);

/// The tag header of a SequenceStart message.
pub const SEQUENCE_START_HEADER: [u8; 5] = header(audio_packet::SEQUENCE_START);

const fn header(packet_type: u8) -> [u8; 5] {
    [
        AUDIO_EX_HEADER << 4 | packet_type,
        FOURCC[0],
        FOURCC[1],
        FOURCC[2],
        FOURCC[3],
    ]
}

/// The Opus packet of an FLV audio body, when the body is a single-track CodedFrames message
/// of Opus holding one; `None` for anything else (a sequence start, another codec, an empty
/// packet).
///
/// ```
/// use siprtmp_core::media::opus::coded_frame;
/// assert_eq!(coded_frame(b"\x91Opus\x78\x01"), Some(&[0x78, 0x01][..]));
/// assert_eq!(coded_frame(b"\x90OpusOpusHead"), None); // sequence start
/// assert_eq!(coded_frame(b"\xb2\x12\x34"), None); // Speex
/// ```
pub fn coded_frame(body: &[u8]) -> Option<&[u8]> {
    body.strip_prefix(&CODED_FRAMES_HEADER)
        .filter(|packet| !packet.is_empty())
}

/// The Opus ID header (RFC 7845 section 5.1) for a stream of `channels` (1 or 2): version 1,
/// no pre-skip (a live call: the first milliseconds need no trimming), input rate 48 kHz, no
/// gain, mapping family 0.
///
/// ```
/// let head = siprtmp_core::media::opus::id_header(1);
/// assert_eq!(&head[..8], b"OpusHead");
/// assert_eq!((head[8], head[9]), (1, 1));
/// ```
pub fn id_header(channels: u8) -> [u8; 19] {
    let mut head = [0u8; 19];
    head[..8].copy_from_slice(b"OpusHead");
    head[8] = 1;
    head[9] = channels;
    // Pre-skip 0 (bytes 10-11), then the input rate, little-endian.
    head[12..16].copy_from_slice(&SAMPLE_RATE.to_le_bytes());
    // Output gain 0 (16-17), mapping family 0 (18).
    head
}

/// The SequenceStart message for a stream of `channels`, at `timestamp`: what a player (an
/// ffmpeg reading the stream, say) needs before the first frame.
pub fn sequence_start(timestamp: u32, channels: u8) -> MediaFrame {
    MediaFrame::new(
        type_id::AUDIO,
        timestamp,
        &SEQUENCE_START_HEADER,
        Bytes::copy_from_slice(&id_header(channels)),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::flv::media::classify_audio;
    use proptest::prelude::*;

    #[test]
    fn the_headers_are_what_the_server_classifies_as_opus() {
        let start = sequence_start(0, 2).to_message(1);
        let info = classify_audio(&start.payload).unwrap();
        assert!(info.sequence_header);
        assert_eq!(info.fourcc, Some(FOURCC));
        let mut frame = CODED_FRAMES_HEADER.to_vec();
        frame.push(0x78);
        let info = classify_audio(&frame).unwrap();
        assert!(!info.sequence_header && info.fourcc == Some(FOURCC));
        assert_eq!(coded_frame(&frame), Some(&[0x78][..]));
    }

    #[test]
    fn an_id_header_as_ffmpeg_writes_it_but_without_pre_skip() {
        // ffmpeg 9's, mono, pre-skip 312 (0x0138): everything else is the same.
        let ffmpeg: [u8; 19] = [
            b'O', b'p', b'u', b's', b'H', b'e', b'a', b'd', 1, 1, 0x38, 0x01, 0x80, 0xbb, 0, 0, 0,
            0, 0,
        ];
        let mut ours = id_header(1);
        ours[10..12].copy_from_slice(&ffmpeg[10..12]);
        assert_eq!(ours, ffmpeg);
    }

    proptest! {
        #[test]
        fn only_opus_coded_frames_yield_a_packet(body in proptest::collection::vec(any::<u8>(), 0..40)) {
            match coded_frame(&body) {
                Some(packet) => {
                    prop_assert_eq!(&body[..5], &CODED_FRAMES_HEADER[..]);
                    prop_assert_eq!(packet, &body[5..]);
                    prop_assert!(!packet.is_empty());
                }
                None => prop_assert!(body.len() <= 5 || body[..5] != CODED_FRAMES_HEADER),
            }
        }
    }
}
