//! [`RtpPayload`]: one RTP payload produced from RTMP media, kept as a small header buffer
//! plus a zero-copy body so that media bytes are never copied on the way out.

use bytes::{BufMut, Bytes, BytesMut};
use smallvec::SmallVec;

/// An RTP payload ready to be wrapped in an RTP header: `header` (a payload-format header
/// such as an FU-A indicator and header, or a tunnel framing header; often empty) followed by
/// `body` (usually a slice of the RTMP message it came from).
///
/// The caller sends it with its RTP session, putting `header` right after the RTP header in
/// the same small buffer and `body` as the second segment of a vectored write.
///
/// ```
/// use bytes::Bytes;
/// use siprtmp_core::media::RtpPayload;
/// let p = RtpPayload::new(160, true, Bytes::from_static(&[0xff; 160]));
/// assert_eq!(p.len(), 160);
/// assert_eq!(p.to_bytes().len(), 160);
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RtpPayload {
    /// RTP timestamp (in the payload format's clock units, including any base offset the
    /// producer was given).
    pub timestamp: u32,
    /// RTP marker bit.
    pub marker: bool,
    /// Payload-format header bytes that precede `body`.
    pub header: SmallVec<[u8; 8]>,
    /// The payload body.
    pub body: Bytes,
}

impl RtpPayload {
    /// A payload with no header.
    pub fn new(timestamp: u32, marker: bool, body: Bytes) -> Self {
        RtpPayload {
            timestamp,
            marker,
            header: SmallVec::new(),
            body,
        }
    }

    /// Total payload length (header plus body).
    pub fn len(&self) -> usize {
        self.header.len() + self.body.len()
    }

    /// Whether the payload has no bytes at all.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Header and body in one buffer (copies; for tests and drivers without vectored I/O).
    pub fn to_bytes(&self) -> Bytes {
        if self.header.is_empty() {
            return self.body.clone();
        }
        let mut out = BytesMut::with_capacity(self.len());
        out.put_slice(&self.header);
        out.put_slice(&self.body);
        out.freeze()
    }
}
