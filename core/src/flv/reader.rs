//! [`FlvReader`]: an incremental FLV tag reader over bytes that arrive in pieces (file reads
//! completing one after another), with a bound on how large a tag it will buffer.
//!
//! It never reads a clock or a file: the caller pushes the bytes at [`FlvReader::wanted_offset`]
//! and takes whole tags out. Hostile input gives an [`FlvError`], never a panic, and never makes
//! the reader hold more than one tag of at most `max_tag_body` bytes plus what was pushed.

use bytes::{Buf, Bytes, BytesMut};

use super::tag::{FileHeader, FlvError, TagHeader, PREVIOUS_TAG_SIZE_LEN, TAG_HEADER_LEN};

/// One tag read from a file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FlvTag {
    /// File offset of the tag header.
    pub offset: u64,
    /// [`super::tag::tag_type`].
    pub tag_type: u8,
    /// Timestamp in milliseconds.
    pub timestamp: u32,
    /// The body (an RTMP message payload).
    pub body: Bytes,
}

/// Reads FLV tags from bytes pushed in file order.
///
/// ```
/// use siprtmp_core::flv::reader::FlvReader;
/// use siprtmp_core::flv::tag::{encode_tag, tag_type, FileHeader};
/// let mut file = FileHeader { audio: true, video: false, data_offset: 9 }.encode().to_vec();
/// file.extend_from_slice(&encode_tag(tag_type::AUDIO, 20, &[0xB2, 1, 2]));
/// let mut reader = FlvReader::new(1 << 20);
/// reader.push(&file[..10]); // pieces of any size
/// assert_eq!(reader.next_tag().unwrap(), None);
/// reader.push(&file[10..]);
/// let tag = reader.next_tag().unwrap().unwrap();
/// assert_eq!((tag.offset, tag.timestamp, &tag.body[..]), (13, 20, &[0xB2, 1, 2][..]));
/// ```
#[derive(Debug)]
pub struct FlvReader {
    buf: BytesMut,
    /// File offset of `buf[0]`.
    cursor: u64,
    /// Bytes still to drop before the next tag (a previous-tag-size, or header padding).
    skip: u64,
    header: Option<FileHeader>,
    expect_header: bool,
    max_tag_body: usize,
}

impl FlvReader {
    /// A reader at the start of a file: it expects the file header first.
    pub fn new(max_tag_body: usize) -> Self {
        Self {
            buf: BytesMut::new(),
            cursor: 0,
            skip: 0,
            header: None,
            expect_header: true,
            max_tag_body,
        }
    }

    /// A reader positioned at `offset`, the start of a tag header (from a keyframe index).
    pub fn at(offset: u64, max_tag_body: usize) -> Self {
        Self {
            buf: BytesMut::new(),
            cursor: offset,
            skip: 0,
            header: None,
            expect_header: false,
            max_tag_body,
        }
    }

    /// The file header, once read (only for readers made with [`FlvReader::new`]).
    pub fn header(&self) -> Option<FileHeader> {
        self.header
    }

    /// The file offset the next pushed bytes must start at.
    pub fn wanted_offset(&self) -> u64 {
        self.cursor + self.buf.len() as u64 + self.skip
    }

    /// Bytes pushed and not yet returned as tags.
    pub fn buffered(&self) -> usize {
        self.buf.len()
    }

    /// Appends bytes read at [`Self::wanted_offset`].
    pub fn push(&mut self, data: &[u8]) {
        let mut data = data;
        if self.buf.is_empty() && self.skip > 0 {
            let n = self.skip.min(data.len() as u64);
            self.skip -= n;
            self.cursor += n;
            data = &data[n as usize..];
        }
        self.buf.extend_from_slice(data);
    }

    fn drop_front(&mut self, n: u64) {
        let have = (self.buf.len() as u64).min(n);
        self.buf.advance(have as usize);
        self.cursor += have;
        self.skip = n - have;
    }

    /// The next whole tag, `Ok(None)` until enough bytes have been pushed.
    pub fn next_tag(&mut self) -> Result<Option<FlvTag>, FlvError> {
        if self.skip > 0 {
            return Ok(None);
        }
        if self.expect_header {
            let Some(header) = FileHeader::parse(&self.buf)? else {
                return Ok(None);
            };
            self.header = Some(header);
            self.expect_header = false;
            // Any header padding, then the first previous-tag-size (always 0).
            let skip = u64::from(header.data_offset) + PREVIOUS_TAG_SIZE_LEN as u64;
            self.drop_front(skip);
            if self.skip > 0 {
                return Ok(None);
            }
        }
        let Some(head) = self.buf.first_chunk::<TAG_HEADER_LEN>() else {
            return Ok(None);
        };
        let header = TagHeader::parse(head)?;
        let size = header.data_size as usize;
        if size > self.max_tag_body {
            return Err(FlvError::TagTooLarge(size));
        }
        if self.buf.len() < TAG_HEADER_LEN + size {
            return Ok(None);
        }
        let offset = self.cursor;
        self.buf.advance(TAG_HEADER_LEN);
        let body = self.buf.split_to(size).freeze();
        self.cursor += (TAG_HEADER_LEN + size) as u64;
        self.drop_front(PREVIOUS_TAG_SIZE_LEN as u64);
        Ok(Some(FlvTag {
            offset,
            tag_type: header.tag_type,
            timestamp: header.timestamp,
            body,
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::flv::tag::{encode_tag, tag_type};
    use proptest::prelude::*;

    fn sample_file() -> Vec<u8> {
        let mut file = FileHeader {
            audio: true,
            video: true,
            data_offset: 9,
        }
        .encode()
        .to_vec();
        file.extend_from_slice(&encode_tag(tag_type::SCRIPT, 0, b"\x02\x00\x0aonMetaData"));
        file.extend_from_slice(&encode_tag(tag_type::VIDEO, 0, &[0x17, 0, 0, 0, 0]));
        file.extend_from_slice(&encode_tag(tag_type::AUDIO, 23, &[0xAF, 1, 9]));
        file
    }

    #[test]
    fn reads_a_file_header_padding_and_tags() {
        // A data offset of 12: three bytes of padding before the first previous-tag-size.
        let mut file = b"FLV\x01\x05\x00\x00\x00\x0c\xaa\xbb\xcc\x00\x00\x00\x00".to_vec();
        file.extend_from_slice(&encode_tag(tag_type::AUDIO, 7, &[1]));
        let mut r = FlvReader::new(100);
        r.push(&file);
        let tag = r.next_tag().unwrap().unwrap();
        assert_eq!(
            (tag.offset, tag.timestamp, &tag.body[..]),
            (16, 7, &[1][..])
        );
        assert_eq!(r.next_tag().unwrap(), None);
        assert_eq!(r.wanted_offset(), file.len() as u64);
    }

    #[test]
    fn a_reader_at_an_offset_starts_mid_file() {
        let file = sample_file();
        let second = 13 + 11 + 13 + 4;
        let mut r = FlvReader::at(second as u64, 100);
        r.push(&file[second..]);
        let tag = r.next_tag().unwrap().unwrap();
        assert_eq!(tag.tag_type, tag_type::VIDEO);
        assert_eq!(tag.offset, second as u64);
    }

    #[test]
    fn oversized_and_foreign_input_is_an_error() {
        let mut r = FlvReader::new(4);
        r.push(&sample_file());
        assert_eq!(r.next_tag(), Err(FlvError::TagTooLarge(13)));
        let mut r = FlvReader::new(4);
        r.push(b"GIF89a..........");
        assert_eq!(r.next_tag(), Err(FlvError::NotFlv));
    }

    #[test]
    fn a_huge_data_offset_is_skipped_without_buffering() {
        let mut r = FlvReader::new(100);
        r.push(b"FLV\x01\x05\xff\xff\xff\xff");
        assert_eq!(r.next_tag(), Ok(None));
        assert_eq!(r.wanted_offset(), 0xFFFF_FFFF + 4);
        assert_eq!(r.buffered(), 0);
    }

    fn read_all(pieces: &[&[u8]], max: usize) -> Result<Vec<FlvTag>, FlvError> {
        let mut r = FlvReader::new(max);
        let mut tags = Vec::new();
        for piece in pieces {
            r.push(piece);
            while let Some(tag) = r.next_tag()? {
                tags.push(tag);
            }
        }
        Ok(tags)
    }

    proptest! {
        #[test]
        fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..512), split in 0usize..512) {
            let split = split.min(bytes.len());
            let _ = read_all(&[&bytes[..split], &bytes[split..]], 256);
            // With a valid header in front too, so the tag parser sees the arbitrary bytes.
            let mut file = sample_file()[..13].to_vec();
            file.extend_from_slice(&bytes);
            let _ = read_all(&[&file], 256);
        }

        #[test]
        fn tags_round_trip_whatever_the_read_sizes(
            tags in proptest::collection::vec((prop_oneof![Just(8u8), Just(9u8), Just(18u8)], any::<u32>(), proptest::collection::vec(any::<u8>(), 0..64)), 0..8),
            piece in 1usize..40,
        ) {
            let mut file = FileHeader { audio: true, video: true, data_offset: 9 }.encode().to_vec();
            for (t, ts, body) in &tags {
                file.extend_from_slice(&encode_tag(*t, *ts, body));
            }
            let pieces: Vec<&[u8]> = file.chunks(piece).collect();
            let got = read_all(&pieces, 64).unwrap();
            prop_assert_eq!(got.len(), tags.len());
            for (g, (t, ts, body)) in got.iter().zip(&tags) {
                prop_assert_eq!((g.tag_type, g.timestamp, &g.body[..]), (*t, *ts, &body[..]));
            }
        }
    }
}
