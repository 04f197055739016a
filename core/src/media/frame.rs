//! [`MediaFrame`]: a media message for an RTMP client as a small tag header and a body that
//! stays shared with the buffer it came from.
//!
//! The RTP→RTMP direction of the gateway adds a tag header to each RTP payload (one byte for
//! audio: the FLV sound format). Building an [`RtmpMessage`] for that means copying the
//! payload behind the header; a frame instead keeps the two apart, and the RTMP side writes
//! the header into its chunk header buffer and the body as a slice of the received datagram
//! ([`ChunkEncoder::encode_parts`](crate::rtmp::chunk_encoder::ChunkEncoder::encode_parts)),
//! so the media bytes are never copied on the way through.
//!
//! ```
//! use bytes::Bytes;
//! use siprtmp_core::media::MediaFrame;
//! use siprtmp_core::rtmp::message::type_id;
//!
//! let frame = MediaFrame::new(type_id::AUDIO, 40, &[0xb2], Bytes::from_static(b"speex"));
//! assert_eq!(frame.len(), 6);
//! let msg = frame.to_message(1); // copies: for tests and callers that want one buffer
//! assert_eq!(&msg.payload[..], b"\xb2speex");
//! ```

use bytes::{Bytes, BytesMut};
use smallvec::SmallVec;

use crate::rtmp::message::RtmpMessage;

/// A media message's header and body, kept apart (see the module doc).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MediaFrame {
    /// RTMP message type (audio 8, video 9).
    pub type_id: u8,
    /// RTMP timestamp, milliseconds.
    pub timestamp: u32,
    /// The tag header that precedes the body (empty when the body is the whole payload).
    pub header: SmallVec<[u8; 8]>,
    /// The media, shared with where it came from.
    pub body: Bytes,
}

impl MediaFrame {
    /// A frame of `type_id` at `timestamp`: `header` then `body`.
    pub fn new(type_id: u8, timestamp: u32, header: &[u8], body: Bytes) -> Self {
        Self {
            type_id,
            timestamp,
            header: SmallVec::from_slice(header),
            body,
        }
    }

    /// Payload length: header and body.
    pub fn len(&self) -> usize {
        self.header.len() + self.body.len()
    }

    /// Whether the payload is empty.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The frame as one message on `stream_id` (copies header and body into one buffer).
    pub fn to_message(&self, stream_id: u32) -> RtmpMessage {
        let mut payload = BytesMut::with_capacity(self.len());
        payload.extend_from_slice(&self.header);
        payload.extend_from_slice(&self.body);
        RtmpMessage::new(self.type_id, stream_id, self.timestamp, payload.freeze())
    }
}

/// A whole message as a frame: no header, its payload as the body (not copied).
impl From<RtmpMessage> for MediaFrame {
    fn from(msg: RtmpMessage) -> Self {
        Self {
            type_id: msg.type_id,
            timestamp: msg.timestamp,
            header: SmallVec::new(),
            body: msg.payload,
        }
    }
}
