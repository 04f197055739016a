//! Reading an FLV file into the media messages a publisher sends: the 9-byte file header,
//! then tags (11-byte header, body, 4-byte previous-tag size). Only what the load generator
//! needs; the file is ours, but a truncated or odd file still gives an error, not a panic.

use bytes::Bytes;

/// FLV tag types that carry media.
const TAG_AUDIO: u8 = 8;
const TAG_VIDEO: u8 = 9;

/// One audio or video tag: what one RTMP media message carries.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FlvTag {
    /// RTMP message type (8 audio, 9 video).
    pub type_id: u8,
    /// Timestamp in milliseconds from the start of the file.
    pub timestamp: u32,
    /// The tag body (the RTMP message payload).
    pub body: Bytes,
}

/// Parses every audio and video tag of `data` (script tags are skipped: the load generator
/// publishes media only, as the original benchmark's Flash publisher did).
pub(crate) fn parse_tags(data: &[u8]) -> Result<Vec<FlvTag>, String> {
    if data.len() < 9 || &data[..3] != b"FLV" {
        return Err("not an FLV file".into());
    }
    let header_len = u32::from_be_bytes([data[5], data[6], data[7], data[8]]) as usize;
    // The header is followed by PreviousTagSize0 (always 0).
    let mut pos = header_len
        .checked_add(4)
        .filter(|&p| p <= data.len())
        .ok_or("FLV header length past the end")?;
    let mut tags = Vec::new();
    while pos < data.len() {
        let head = data
            .get(pos..pos + 11)
            .ok_or_else(|| format!("truncated tag header at {pos}"))?;
        let kind = head[0] & 0x1f;
        let size = u32::from_be_bytes([0, head[1], head[2], head[3]]) as usize;
        let timestamp = u32::from_be_bytes([head[7], head[4], head[5], head[6]]);
        let body_start = pos + 11;
        let body = data
            .get(body_start..body_start + size)
            .ok_or_else(|| format!("truncated tag body at {pos}"))?;
        if kind == TAG_AUDIO || kind == TAG_VIDEO {
            tags.push(FlvTag {
                type_id: kind,
                timestamp,
                body: Bytes::copy_from_slice(body),
            });
        }
        // Skip the body and the 4-byte previous-tag size; a missing final size is tolerated.
        pos = body_start + size + 4;
    }
    Ok(tags)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tag(kind: u8, ts: u32, body: &[u8]) -> Vec<u8> {
        let mut t = vec![kind];
        t.extend_from_slice(&(body.len() as u32).to_be_bytes()[1..]);
        t.extend_from_slice(&ts.to_be_bytes()[1..]);
        t.push((ts >> 24) as u8);
        t.extend_from_slice(&[0, 0, 0]);
        t.extend_from_slice(body);
        t.extend_from_slice(&(11 + body.len() as u32).to_be_bytes());
        t
    }

    #[test]
    fn reads_audio_and_video_skips_script() {
        let mut file = b"FLV\x01\x05\x00\x00\x00\x09\x00\x00\x00\x00".to_vec();
        file.extend(tag(18, 0, b"\x02\x00\x0aonMetaData"));
        file.extend(tag(8, 20, &[0xb6, 1, 2]));
        file.extend(tag(9, 0x0100_0000 + 5, &[0x17, 1, 0, 0, 0]));
        let tags = parse_tags(&file).unwrap();
        assert_eq!(tags.len(), 2);
        assert_eq!(tags[0].type_id, 8);
        assert_eq!(tags[0].timestamp, 20);
        assert_eq!(&tags[0].body[..], &[0xb6, 1, 2]);
        // The extended timestamp byte is the high byte.
        assert_eq!(tags[1].timestamp, 0x0100_0005);
    }

    #[test]
    fn truncated_is_an_error() {
        let mut file = b"FLV\x01\x05\x00\x00\x00\x09\x00\x00\x00\x00".to_vec();
        file.extend(tag(8, 20, &[0xb6, 1, 2]));
        file.truncate(file.len() - 6);
        assert!(parse_tags(&file).is_err());
        assert!(parse_tags(b"FLV").is_err());
        assert!(parse_tags(b"FLV\x01\x05\x00\x00\xff\xff").is_err());
    }

    #[test]
    fn the_test_media_speex_file() {
        let data = std::fs::read(crate::test_inputs::media("speex16k_audio_20s.flv")).unwrap();
        let tags = parse_tags(&data).unwrap();
        assert_eq!(tags.len(), 1000);
        assert!(tags.iter().all(|t| t.type_id == 8 && t.body[0] >> 4 == 11));
        assert_eq!(tags[999].timestamp, 19_980);
    }
}
