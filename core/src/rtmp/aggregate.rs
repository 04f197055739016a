//! Aggregate messages (type 22): several audio, video or data messages in one, each framed
//! like an FLV tag (11-byte header, body, 4-byte back pointer).
//!
//! Sub-message timestamps are relative to the first one: the first sub-message takes the
//! aggregate's own timestamp and the others keep their offsets from it. Bodies are slices of
//! the aggregate's payload, so splitting copies no media.

use std::fmt;

use super::message::RtmpMessage;

/// An aggregate whose framing does not add up.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AggregateError {
    /// A sub-message header or body runs past the end of the aggregate.
    Truncated {
        /// Byte offset of the sub-message that does not fit.
        offset: usize,
    },
}

impl fmt::Display for AggregateError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            AggregateError::Truncated { offset } => {
                write!(f, "aggregate sub-message at byte {offset} is truncated")
            }
        }
    }
}

impl std::error::Error for AggregateError {}

/// The messages inside an aggregate, on the aggregate's message stream.
///
/// ```
/// use siprtmp_core::rtmp::aggregate::split_aggregate;
/// use siprtmp_core::rtmp::message::RtmpMessage;
///
/// // One audio sub-message, tag timestamp 1000, body [0xaf, 0x01].
/// let tag = [8, 0, 0, 2, 0, 0x03, 0xe8, 0, 0, 0, 0, 0xaf, 0x01, 0, 0, 0, 13];
/// let parts = split_aggregate(&RtmpMessage::new(22, 1, 500, tag.to_vec())).unwrap();
/// assert_eq!((parts[0].type_id, parts[0].timestamp), (8, 500));
/// assert_eq!(&parts[0].payload[..], &[0xaf, 0x01]);
/// ```
pub fn split_aggregate(msg: &RtmpMessage) -> Result<Vec<RtmpMessage>, AggregateError> {
    let p = &msg.payload;
    let mut parts = Vec::new();
    let mut pos = 0;
    let mut first_timestamp = None;
    while pos < p.len() {
        let Some(h) = p.get(pos..pos + 11) else {
            return Err(AggregateError::Truncated { offset: pos });
        };
        let size = (usize::from(h[1]) << 16) | (usize::from(h[2]) << 8) | usize::from(h[3]);
        let tag_timestamp = u32::from_be_bytes([h[7], h[4], h[5], h[6]]);
        let body_start = pos + 11;
        let body_end = body_start + size;
        // The 4-byte back pointer is optional on the last sub-message in some encoders.
        if body_end > p.len() {
            return Err(AggregateError::Truncated { offset: pos });
        }
        let base = *first_timestamp.get_or_insert(tag_timestamp);
        parts.push(RtmpMessage {
            type_id: h[0] & 0x1f,
            stream_id: msg.stream_id,
            timestamp: msg.timestamp.wrapping_add(tag_timestamp.wrapping_sub(base)),
            payload: p.slice(body_start..body_end),
        });
        pos = (body_end + 4).min(p.len());
    }
    Ok(parts)
}

/// Readies FLV tags read from a file (header, body, previous-tag-size each) to be sent as the
/// body of an aggregate message, in place: each tag type keeps only its five type bits, the
/// stream id is cleared, and each back pointer is set to the sub-message's header and body
/// size, whatever the file held there (clients check it: ffmpeg copies it into its FLV
/// output, rtmpdump rewrites it when it is wrong). Stops at a tag that does not fit.
///
/// ```
/// use siprtmp_core::rtmp::aggregate::normalize_tags;
/// // An audio tag with the filter bit's neighbour set, stream id 7 and a wrong back pointer.
/// let mut tag = [0x48, 0, 0, 1, 0, 0, 20, 0, 0, 0, 7, 0xaf, 0, 0, 0, 99];
/// normalize_tags(&mut tag);
/// assert_eq!(tag, [8, 0, 0, 1, 0, 0, 20, 0, 0, 0, 0, 0xaf, 0, 0, 0, 12]);
/// ```
pub fn normalize_tags(body: &mut [u8]) {
    let mut pos = 0;
    while let Some(h) = body.get_mut(pos..pos + 11) {
        let size = (usize::from(h[1]) << 16) | (usize::from(h[2]) << 8) | usize::from(h[3]);
        h[0] &= 0x1f;
        h[8..11].fill(0);
        let back = pos + 11 + size;
        let Some(pointer) = body.get_mut(back..back + 4) else {
            return;
        };
        pointer.copy_from_slice(&(11 + size as u32).to_be_bytes());
        pos = back + 4;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tag(type_id: u8, timestamp: u32, body: &[u8]) -> Vec<u8> {
        let mut t = vec![type_id];
        t.extend_from_slice(&(body.len() as u32).to_be_bytes()[1..]);
        t.extend_from_slice(&timestamp.to_be_bytes()[1..]);
        t.push((timestamp >> 24) as u8);
        t.extend_from_slice(&[0, 0, 0]);
        t.extend_from_slice(body);
        t.extend_from_slice(&(11 + body.len() as u32).to_be_bytes());
        t
    }

    #[test]
    fn sub_messages_keep_offsets_from_the_aggregate_timestamp() {
        let mut payload = tag(9, 0x0100_0000, &[0x17, 1, 2]);
        payload.extend(tag(8, 0x0100_0015, &[0xaf, 1]));
        let parts = split_aggregate(&RtmpMessage::new(22, 3, 7000, payload)).unwrap();
        assert_eq!(parts.len(), 2);
        assert_eq!(
            (parts[0].type_id, parts[0].stream_id, parts[0].timestamp),
            (9, 3, 7000)
        );
        assert_eq!((parts[1].type_id, parts[1].timestamp), (8, 7021));
        assert_eq!(&parts[1].payload[..], &[0xaf, 1]);
    }

    proptest::proptest! {
        /// Whatever the bytes, normalizing never panics; for whole tags it keeps every
        /// sub-message's type, timestamp and payload and fixes each back pointer.
        #[test]
        fn normalized_tags_split_into_the_same_messages(
            tags in proptest::collection::vec(
                (0u8..=255, proptest::prelude::any::<u32>(), proptest::collection::vec(0u8..=255, 0..40), proptest::prelude::any::<u32>()),
                0..6,
            ),
            noise in proptest::collection::vec(0u8..=255, 0..64),
        ) {
            let mut body = Vec::new();
            for (type_byte, ts, payload, back) in &tags {
                let mut t = tag(*type_byte, *ts, payload);
                t[10] = *type_byte; // a stray stream id byte
                let n = t.len();
                t[n - 4..].copy_from_slice(&back.to_be_bytes());
                body.extend(t);
            }
            let mut normalized = body.clone();
            normalize_tags(&mut normalized);
            let parts = split_aggregate(&RtmpMessage::new(22, 1, 0, normalized.clone())).unwrap();
            let mut pos = 0;
            for (part, (type_byte, ts, payload, _)) in parts.iter().zip(&tags) {
                proptest::prop_assert_eq!(part.type_id, type_byte & 0x1f);
                proptest::prop_assert_eq!(part.timestamp, ts.wrapping_sub(tags[0].1));
                proptest::prop_assert_eq!(&part.payload[..], &payload[..]);
                let end = pos + 11 + payload.len();
                proptest::prop_assert_eq!(&normalized[pos + 8..pos + 11], &[0, 0, 0]);
                proptest::prop_assert_eq!(&normalized[end..end + 4], &(11 + payload.len() as u32).to_be_bytes());
                pos = end + 4;
            }
            let mut hostile = noise.clone();
            normalize_tags(&mut hostile);
            body.extend(noise);
            normalize_tags(&mut body);
        }
    }

    #[test]
    fn truncated_body_is_an_error() {
        let mut payload = tag(9, 0, &[1, 2, 3, 4]);
        payload.truncate(13);
        assert_eq!(
            split_aggregate(&RtmpMessage::new(22, 1, 0, payload)),
            Err(AggregateError::Truncated { offset: 0 })
        );
    }
}
