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
#[non_exhaustive]
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

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// One sub-message of an aggregate, framed like an FLV tag (for tests here and of the
    /// client).
    pub(crate) fn tag(type_id: u8, timestamp: u32, body: &[u8]) -> Vec<u8> {
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
