//! The FLV file container's fixed-size parts: the 9-byte file header, the 11-byte tag header
//! and the 4-byte "previous tag size" that follows every tag (FLV specification v10.1, annex
//! E). Bodies are the same bytes RTMP audio (8), video (9) and data (18) messages carry.

use bytes::{BufMut, Bytes, BytesMut};

/// Length of the FLV file header (`FLV`, version, flags, data offset).
pub const FILE_HEADER_LEN: usize = 9;
/// Length of a tag header (type, data size, timestamp, extended timestamp, stream id).
pub const TAG_HEADER_LEN: usize = 11;
/// Length of the "previous tag size" field after the header and after every tag.
pub const PREVIOUS_TAG_SIZE_LEN: usize = 4;
/// Offset of the first tag in a file this crate writes: header plus the first (zero)
/// previous-tag-size field.
pub const FIRST_TAG_OFFSET: u64 = (FILE_HEADER_LEN + PREVIOUS_TAG_SIZE_LEN) as u64;
/// Largest body a tag can declare (24-bit data size).
pub const MAX_TAG_BODY: usize = 0xFF_FFFF;

/// FLV tag types.
pub mod tag_type {
    /// Audio (an RTMP type 8 body).
    pub const AUDIO: u8 = 8;
    /// Video (an RTMP type 9 body).
    pub const VIDEO: u8 = 9;
    /// Script data (AMF0 values, e.g. `onMetaData`; an RTMP type 18 body).
    pub const SCRIPT: u8 = 18;
}

/// The FLV file header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FileHeader {
    /// The file declares audio tags.
    pub audio: bool,
    /// The file declares video tags.
    pub video: bool,
    /// Where the body (the first previous-tag-size field) starts; 9 in every known file.
    pub data_offset: u32,
}

/// Why FLV bytes were rejected.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum FlvError {
    /// The file does not start with `FLV`.
    NotFlv,
    /// The header's data offset points inside the header.
    BadDataOffset(u32),
    /// A tag declares a body larger than the reader's limit.
    TagTooLarge(usize),
    /// A tag uses the filter (encryption) bit, which this server does not support.
    Encrypted,
}

impl std::fmt::Display for FlvError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            FlvError::NotFlv => write!(f, "not an FLV file"),
            FlvError::BadDataOffset(n) => write!(f, "bad FLV data offset {n}"),
            FlvError::TagTooLarge(n) => write!(f, "FLV tag of {n} bytes is over the limit"),
            FlvError::Encrypted => write!(f, "encrypted FLV tags are not supported"),
        }
    }
}

impl std::error::Error for FlvError {}

impl FileHeader {
    /// The header plus the zero previous-tag-size that follows it: the first 13 bytes of a
    /// file.
    ///
    /// ```
    /// use siprtmp_core::flv::tag::FileHeader;
    /// let bytes = FileHeader { audio: true, video: true, data_offset: 9 }.encode();
    /// assert_eq!(&bytes[..], b"FLV\x01\x05\x00\x00\x00\x09\x00\x00\x00\x00");
    /// ```
    pub fn encode(&self) -> Bytes {
        let mut out = BytesMut::with_capacity(FIRST_TAG_OFFSET as usize);
        out.put_slice(b"FLV\x01");
        out.put_u8(u8::from(self.audio) << 2 | u8::from(self.video));
        out.put_u32(FILE_HEADER_LEN as u32);
        out.put_u32(0);
        out.freeze()
    }

    /// Parses the 9-byte header at the start of `bytes`; `Ok(None)` when fewer than 9 bytes.
    pub fn parse(bytes: &[u8]) -> Result<Option<Self>, FlvError> {
        if bytes.len() < 3 {
            return if b"FLV".starts_with(bytes) {
                Ok(None)
            } else {
                Err(FlvError::NotFlv)
            };
        }
        if &bytes[..3] != b"FLV" {
            return Err(FlvError::NotFlv);
        }
        if bytes.len() < FILE_HEADER_LEN {
            return Ok(None);
        }
        let data_offset = u32::from_be_bytes([bytes[5], bytes[6], bytes[7], bytes[8]]);
        if data_offset < FILE_HEADER_LEN as u32 {
            return Err(FlvError::BadDataOffset(data_offset));
        }
        Ok(Some(Self {
            audio: bytes[4] & 0x04 != 0,
            video: bytes[4] & 0x01 != 0,
            data_offset,
        }))
    }
}

/// An FLV tag header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TagHeader {
    /// [`tag_type`] (the low five bits of the first byte).
    pub tag_type: u8,
    /// Body length in bytes.
    pub data_size: u32,
    /// Timestamp in milliseconds (24 bits plus the extended high byte).
    pub timestamp: u32,
}

impl TagHeader {
    /// Parses an 11-byte tag header.
    ///
    /// ```
    /// use siprtmp_core::flv::tag::{tag_type, TagHeader};
    /// // Video, 5 bytes, timestamp 0x01_123456 (extended byte first in value), stream id 0.
    /// let h = TagHeader::parse(&[9, 0, 0, 5, 0x12, 0x34, 0x56, 0x01, 0, 0, 0]).unwrap();
    /// assert_eq!(h, TagHeader { tag_type: tag_type::VIDEO, data_size: 5, timestamp: 0x0112_3456 });
    /// ```
    pub fn parse(bytes: &[u8; TAG_HEADER_LEN]) -> Result<Self, FlvError> {
        if bytes[0] & 0x20 != 0 {
            return Err(FlvError::Encrypted);
        }
        Ok(Self {
            tag_type: bytes[0] & 0x1F,
            data_size: u32::from_be_bytes([0, bytes[1], bytes[2], bytes[3]]),
            timestamp: u32::from_be_bytes([bytes[7], bytes[4], bytes[5], bytes[6]]),
        })
    }

    /// The 11 header bytes.
    pub fn encode(&self) -> [u8; TAG_HEADER_LEN] {
        let size = self.data_size.to_be_bytes();
        let ts = self.timestamp.to_be_bytes();
        [
            self.tag_type & 0x1F,
            size[1],
            size[2],
            size[3],
            ts[1],
            ts[2],
            ts[3],
            ts[0],
            0,
            0,
            0,
        ]
    }

    /// Bytes the whole tag occupies in a file: header, body and previous-tag-size.
    pub fn total_len(&self) -> u64 {
        (TAG_HEADER_LEN + PREVIOUS_TAG_SIZE_LEN) as u64 + u64::from(self.data_size)
    }
}

/// One whole tag as it is written to a file: header, `body`, then the previous-tag-size
/// (11 + body length). Bodies longer than [`MAX_TAG_BODY`] are cut to that size.
///
/// ```
/// use siprtmp_core::flv::tag::{encode_tag, tag_type};
/// let tag = encode_tag(tag_type::AUDIO, 40, &[0xAF, 0x01, 0x21]);
/// assert_eq!(&tag[..], &[8, 0, 0, 3, 0, 0, 40, 0, 0, 0, 0, 0xAF, 0x01, 0x21, 0, 0, 0, 14]);
/// ```
pub fn encode_tag(tag_type: u8, timestamp: u32, body: &[u8]) -> Bytes {
    let body = &body[..body.len().min(MAX_TAG_BODY)];
    let header = TagHeader {
        tag_type,
        data_size: body.len() as u32,
        timestamp,
    };
    let mut out = BytesMut::with_capacity(body.len() + TAG_HEADER_LEN + PREVIOUS_TAG_SIZE_LEN);
    out.put_slice(&header.encode());
    out.put_slice(body);
    out.put_u32((TAG_HEADER_LEN + body.len()) as u32);
    out.freeze()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_round_trip_and_rejections() {
        let h = FileHeader {
            audio: true,
            video: false,
            data_offset: 9,
        };
        let bytes = h.encode();
        assert_eq!(bytes[4], 0x04);
        assert_eq!(FileHeader::parse(&bytes).unwrap(), Some(h));
        assert_eq!(FileHeader::parse(b"FL"), Ok(None));
        assert_eq!(FileHeader::parse(b"FLV\x01\x05"), Ok(None));
        assert_eq!(FileHeader::parse(b"RIFF...."), Err(FlvError::NotFlv));
        assert_eq!(FileHeader::parse(b"x"), Err(FlvError::NotFlv));
        assert_eq!(
            FileHeader::parse(b"FLV\x01\x05\x00\x00\x00\x03"),
            Err(FlvError::BadDataOffset(3))
        );
    }

    #[test]
    fn tag_header_round_trip_with_extended_timestamp() {
        let h = TagHeader {
            tag_type: tag_type::SCRIPT,
            data_size: 0x01_0203,
            timestamp: 0xFF00_0001,
        };
        let bytes = h.encode();
        assert_eq!(bytes, [18, 1, 2, 3, 0, 0, 1, 0xFF, 0, 0, 0]);
        assert_eq!(TagHeader::parse(&bytes).unwrap(), h);
        assert_eq!(h.total_len(), 15 + 0x01_0203);
    }

    #[test]
    fn the_filter_bit_is_refused() {
        assert_eq!(
            TagHeader::parse(&[0x28, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0]),
            Err(FlvError::Encrypted)
        );
    }
}
