//! What the publisher sends: the FLV file's media tags looped forever with increasing
//! timestamps, each countable frame carrying a sequence tag so every player can count exactly
//! which frames of the measurement window it received.
//!
//! The tag overwrites the last 8 bytes of the payload (a magic word and a big-endian sequence
//! number). Sizes, codec headers and timing stay those of the real file, and neither server
//! looks inside Speex frames or H.264 NAL units when relaying live, so the load is unchanged;
//! the frame/sequence-header bytes the servers do parse (the first bytes, AVC sequence
//! headers) are never touched. Sequence headers are sent once and not counted.

use bytes::{Bytes, BytesMut};

use crate::flv::FlvTag;

/// The tag's magic word: "SQN1".
const MAGIC: [u8; 4] = *b"SQN1";
/// Bytes the tag takes at the end of a payload.
const TAG_LEN: usize = 8;

/// One message of the loop.
#[derive(Debug, Clone)]
pub struct LoopFrame {
    /// RTMP message type (8 audio, 9 video).
    pub type_id: u8,
    /// Timestamp within the loop, in milliseconds.
    pub timestamp: u32,
    /// The original payload.
    pub body: Bytes,
    /// Whether this frame gets a sequence tag and is counted (media frames, not headers).
    pub counted: bool,
    /// Sent in the first loop only (AVC sequence header).
    pub first_loop_only: bool,
}

/// A file's media as an endless, paced sequence of messages.
#[derive(Debug, Clone)]
pub struct MediaLoop {
    frames: Vec<LoopFrame>,
    /// Loop length in milliseconds.
    period: u32,
}

/// The next message to send and when (milliseconds since the stream started).
#[derive(Debug, Clone, Copy, Default)]
pub struct Cursor {
    index: usize,
    lap: u32,
}

impl MediaLoop {
    /// Builds the loop from a file's tags; drops AVC end-of-sequence markers (a loop must not
    /// announce the end of the stream).
    pub fn new(tags: Vec<FlvTag>) -> Result<Self, String> {
        let mut frames = Vec::new();
        for tag in tags {
            let (counted, first_loop_only) = match tag.type_id {
                // Enhanced audio that is not a frame (Opus's sequence start, ffmpeg's channel
                // configuration) goes once, as a publisher sends it, and is not counted.
                8 if !is_audio_frame(&tag.body) => (false, true),
                8 => (tag.body.len() > TAG_LEN + 1, false),
                9 => match tag.body.get(1) {
                    Some(0) => (false, true),
                    Some(1) => (tag.body.len() > TAG_LEN + 5, false),
                    _ => continue,
                },
                _ => continue,
            };
            frames.push(LoopFrame {
                type_id: tag.type_id,
                timestamp: tag.timestamp,
                body: tag.body,
                counted,
                first_loop_only,
            });
        }
        let last = frames
            .iter()
            .map(|f| f.timestamp)
            .max()
            .ok_or("no media tags in the file")?;
        // One audio frame (20 ms for Speex) after the last timestamp, so laps do not overlap.
        let audio: Vec<u32> = frames
            .iter()
            .filter(|f| f.type_id == 8)
            .map(|f| f.timestamp)
            .collect();
        let step = audio
            .windows(2)
            .map(|w| w[1].saturating_sub(w[0]))
            .find(|&d| d > 0)
            .unwrap_or(20);
        Ok(Self {
            frames,
            period: last + step,
        })
    }

    /// Counted frames per second of stream.
    pub fn counted_per_second(&self) -> f64 {
        let n = self.frames.iter().filter(|f| f.counted).count();
        n as f64 * 1000.0 / f64::from(self.period)
    }

    /// The longest time between two video keyframes (across the loop's wrap), if the
    /// stream has video. A server may hold back a new player's video until the next keyframe
    /// (nginx-rtmp does), so the warm-up must be at least this long.
    pub fn max_keyframe_gap(&self) -> Option<u32> {
        let keys: Vec<u32> = self
            .frames
            .iter()
            .filter(|f| f.type_id == 9 && f.counted && f.body[0] >> 4 == 1)
            .map(|f| f.timestamp)
            .collect();
        let first = *keys.first()?;
        let wrap = first + self.period - keys[keys.len() - 1];
        Some(keys.windows(2).map(|w| w[1] - w[0]).fold(wrap, u32::max))
    }

    /// The message at `cursor` with its stream timestamp, and whether it is counted.
    pub fn at(&self, cursor: Cursor) -> (&LoopFrame, u32) {
        let frame = &self.frames[cursor.index];
        (frame, cursor.lap * self.period + frame.timestamp)
    }

    /// Advances `cursor` past one message (skipping first-loop-only messages after lap 0).
    pub fn advance(&self, cursor: &mut Cursor) {
        loop {
            cursor.index += 1;
            if cursor.index == self.frames.len() {
                cursor.index = 0;
                cursor.lap += 1;
            }
            if cursor.lap == 0 || !self.frames[cursor.index].first_loop_only {
                return;
            }
        }
    }
}

/// Whether an FLV audio body is a frame of audio: any legacy sound format, or an enhanced
/// (ExHeader) message of packet type CodedFrames (not a sequence start or a configuration).
pub(crate) fn is_audio_frame(body: &[u8]) -> bool {
    match body.first() {
        Some(&first) if first >> 4 == EX_HEADER => first & 0x0f == CODED_FRAMES,
        Some(_) => true,
        None => false,
    }
}

/// The FLV sound format of enhanced audio, and its CodedFrames packet type.
const EX_HEADER: u8 = 9;
const CODED_FRAMES: u8 = 1;

/// `body` with its last 8 bytes replaced by the sequence tag for `seq`.
pub(crate) fn tag_payload(body: &[u8], seq: u32) -> Bytes {
    let mut out = BytesMut::from(body);
    let at = out.len() - TAG_LEN;
    out[at..at + 4].copy_from_slice(&MAGIC);
    out[at + 4..].copy_from_slice(&seq.to_be_bytes());
    out.freeze()
}

/// The sequence number tagged into `payload`, if any.
pub(crate) fn read_tag(payload: &[u8]) -> Option<u32> {
    let at = payload.len().checked_sub(TAG_LEN)?;
    if payload[at..at + 4] != MAGIC {
        return None;
    }
    let s = &payload[at + 4..];
    Some(u32::from_be_bytes([s[0], s[1], s[2], s[3]]))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tag(type_id: u8, timestamp: u32, body: &[u8]) -> FlvTag {
        FlvTag {
            type_id,
            timestamp,
            body: Bytes::copy_from_slice(body),
        }
    }

    #[test]
    fn tag_round_trip_keeps_size_and_header() {
        let body = [0xb6u8; 71];
        let tagged = tag_payload(&body, 0x0102_0304);
        assert_eq!(tagged.len(), 71);
        assert_eq!(tagged[0], 0xb6);
        assert_eq!(read_tag(&tagged), Some(0x0102_0304));
        assert_eq!(read_tag(&body), None);
        assert_eq!(read_tag(b"SQN"), None);
    }

    #[test]
    fn enhanced_audio_that_is_not_a_frame_goes_once_and_is_not_counted() {
        let start = [&[0x90][..], b"Opus", &[1; 19]].concat();
        let config = [&[0x94][..], b"Opus", &[1; 6]].concat();
        let frame = [&[0x91][..], b"Opus", &[7; 60]].concat();
        assert!(!is_audio_frame(&start) && !is_audio_frame(&config) && !is_audio_frame(&[]));
        assert!(is_audio_frame(&frame) && is_audio_frame(&[0xb2, 1]));
        let media = MediaLoop::new(vec![
            tag(8, 0, &start),
            tag(8, 0, &config),
            tag(8, 0, &frame),
            tag(8, 20, &frame),
        ])
        .unwrap();
        let mut c = Cursor::default();
        let mut seen = Vec::new();
        for _ in 0..6 {
            let (f, ts) = media.at(c);
            seen.push((ts, f.counted, f.body[0]));
            media.advance(&mut c);
        }
        assert_eq!(
            seen,
            [
                (0, false, 0x90),
                (0, false, 0x94),
                (0, true, 0x91),
                (20, true, 0x91),
                (40, true, 0x91),
                (60, true, 0x91)
            ]
        );
    }

    #[test]
    fn loops_with_increasing_timestamps_and_sequence_header_once() {
        let tags = vec![
            tag(9, 0, &[0x17, 0, 0, 0, 0, 1, 2, 3, 4, 5, 6, 7, 8, 9]),
            tag(8, 0, &[0xb6; 20]),
            tag(9, 10, &[0x17, 1, 0, 0, 0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10]),
            tag(8, 20, &[0xb6; 20]),
            tag(9, 30, &[0x17, 2, 0, 0, 0]),
        ];
        let media = MediaLoop::new(tags).unwrap();
        assert_eq!(media.period, 40);
        let mut c = Cursor::default();
        let mut seen = Vec::new();
        for _ in 0..7 {
            let (f, ts) = media.at(c);
            seen.push((f.type_id, ts, f.counted));
            media.advance(&mut c);
        }
        assert_eq!(
            seen,
            vec![
                (9, 0, false),
                (8, 0, true),
                (9, 10, true),
                (8, 20, true),
                (8, 40, true),
                (9, 50, true),
                (8, 60, true),
            ]
        );
        assert!((media.counted_per_second() - 75.0).abs() < 1e-9);
        // One keyframe at 10 ms in a 40 ms loop.
        assert_eq!(media.max_keyframe_gap(), Some(40));
    }
}
