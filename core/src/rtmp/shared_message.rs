//! [`SharedMessage`]: a message as published, with its chunk encodings, made once and shared
//! by every receiver that has the same chunk size and message stream id (the players of a live
//! stream, the workers it is relayed to), and its FLV tag for HTTP-FLV players, made once on
//! first use and shared by all of them.

use bytes::{BufMut, Bytes, BytesMut};
use smallvec::SmallVec;

use super::chunk_encoder::encode_fmt0;
use super::csid;
use super::message::{type_id, RtmpMessage};
use crate::byte_blocks::ByteBlocks;

/// A media or data message as published, with its chunk encodings shared by every player that
/// has the same chunk size and message stream id.
#[derive(Debug, Clone)]
pub(crate) struct SharedMessage {
    pub msg: RtmpMessage,
    encodings: SmallVec<[(u32, u32, Bytes); 1]>,
    /// The FLV tag (header, body, previous tag size) framed as one HTTP/1.1 chunk, once an
    /// HTTP-FLV player has asked for it; `None` before, or for a message FLV cannot carry.
    flv: Option<Bytes>,
}

/// At most this many chunk encodings are kept with a message; a receiver whose (chunk size,
/// stream id) pair finds none of them gets an encoding of its own, dropped once written. The
/// pair is partly the player's choice (each `createStream` gives a new stream id), so without
/// a bound every play of a stream would keep one more copy of every message its group of
/// pictures caches, for as long as it caches it.
const MAX_KEPT_ENCODINGS: usize = 4;

/// The longest payload that can be a slice of a read buffer shared with other bytes: the
/// largest read any driver makes (mio's and the others' 64 KiB).
const MAX_SHARED_READ: usize = 64 * 1024;

/// Bytes of the HTTP chunk-size line in front of an FLV tag: the size in hexadecimal, padded
/// with zeros to a fixed width (a chunk can be at most 16 + 2^24 + 4 bytes, seven digits), so
/// the tag starts at the same offset in every encoding.
const CHUNK_HEAD: usize = 7 + 2;

impl SharedMessage {
    pub(crate) fn new(msg: RtmpMessage) -> Self {
        Self {
            msg,
            encodings: SmallVec::new(),
            flv: None,
        }
    }

    /// The chunk stream id this kind of message travels on.
    fn csid(&self) -> u32 {
        match self.msg.type_id {
            type_id::AUDIO => csid::AUDIO,
            type_id::VIDEO => csid::VIDEO,
            _ => csid::DATA,
        }
    }

    /// The message chunk-encoded for (chunk size, stream id), encoding it on first use only.
    pub(crate) fn encoded(&mut self, chunk_size: u32, stream_id: u32) -> Bytes {
        if let Some((_, _, bytes)) = self
            .encodings
            .iter()
            .find(|(c, s, _)| *c == chunk_size && *s == stream_id)
        {
            return bytes.clone();
        }
        let mut msg = self.msg.clone();
        msg.stream_id = stream_id;
        let bytes = encode_fmt0(self.csid(), &msg, chunk_size);
        if self.encodings.len() < MAX_KEPT_ENCODINGS {
            self.encodings.push((chunk_size, stream_id, bytes.clone()));
        }
        bytes
    }

    /// Makes the payload hold no bytes but its own, before the message is kept (cached for
    /// late players, or as the stream's configuration or metadata).
    ///
    /// A message that came in one chunk is a slice of the buffer its bytes were read into,
    /// which the driver shares with the bytes read before and after it, other peers' among
    /// them; kept as it is, a message of a few bytes would keep the whole buffer (64 KiB
    /// under mio), and a publisher could make the server keep what everyone sends. An encoding
    /// that carries the message in one chunk ends with the payload, which then becomes a slice
    /// of it (no copy); otherwise the payload is copied into `kept`. A payload longer than a
    /// driver's read was put together from several reads in a buffer of its own, and is kept
    /// as it is.
    pub(crate) fn own_payload(&mut self, kept: &mut ByteBlocks) {
        let len = self.msg.payload.len();
        if len > MAX_SHARED_READ {
            return;
        }
        let whole = self
            .encodings
            .iter()
            .find(|(chunk_size, _, _)| len <= *chunk_size as usize);
        self.msg.payload = match whole {
            Some((_, _, encoding)) => encoding.slice(encoding.len() - len..),
            None => kept.keep(&self.msg.payload),
        };
    }

    /// The message as an FLV tag for HTTP-FLV players (`chunked`: framed as one HTTP/1.1
    /// chunk; else the bare tag, for a close-delimited HTTP/1.0 response), encoded on first
    /// use only: every player gets the same bytes (the bare tag is a slice of the chunk).
    /// `None` for a message FLV has no tag type for (only audio, video and AMF0 data do).
    pub(crate) fn flv_tag(&mut self, chunked: bool) -> Option<Bytes> {
        if self.flv.is_none() {
            self.flv = Some(self.encode_flv()?);
        }
        let framed = self.flv.as_ref()?;
        if chunked {
            Some(framed.clone())
        } else {
            Some(framed.slice(CHUNK_HEAD..framed.len() - 2))
        }
    }

    #[cold]
    fn encode_flv(&self) -> Option<Bytes> {
        use crate::flv::tag::{tag_type, PREVIOUS_TAG_SIZE_LEN, TAG_HEADER_LEN};
        let tag_type = match self.msg.type_id {
            type_id::AUDIO => tag_type::AUDIO,
            type_id::VIDEO => tag_type::VIDEO,
            type_id::DATA_AMF0 => tag_type::SCRIPT,
            _ => return None,
        };
        let body = &self.msg.payload;
        if body.len() > crate::flv::tag::MAX_TAG_BODY {
            return None;
        }
        let tag_len = TAG_HEADER_LEN + body.len();
        let chunk_len = tag_len + PREVIOUS_TAG_SIZE_LEN;
        let mut out = BytesMut::with_capacity(CHUNK_HEAD + chunk_len + 2);
        out.put_slice(format!("{chunk_len:07x}\r\n").as_bytes());
        out.put_u8(tag_type);
        out.put_uint(body.len() as u64, 3);
        let ts = self.msg.timestamp;
        out.put_uint(u64::from(ts & 0x00FF_FFFF), 3);
        out.put_u8((ts >> 24) as u8);
        out.put_uint(0, 3);
        out.put_slice(body);
        out.put_u32(tag_len as u32);
        out.put_slice(b"\r\n");
        Some(out.freeze())
    }

    pub(crate) fn len(&self) -> usize {
        self.msg.payload.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_flv_tag_is_encoded_once_and_the_bare_tag_is_a_slice_of_the_chunk() {
        let payload = Bytes::from_static(b"\x17\x01\x00\x00\x00frame");
        let mut shared =
            SharedMessage::new(RtmpMessage::new(type_id::VIDEO, 1, 0x0102_0304, payload));
        let chunk = shared.flv_tag(true).unwrap();
        let text = std::str::from_utf8(&chunk[..CHUNK_HEAD]).unwrap();
        assert_eq!(text, "0000019\r\n"); // 11 + 10 + 4 = 25
        assert!(chunk.ends_with(b"\r\n"));
        let tag = shared.flv_tag(false).unwrap();
        assert_eq!(&tag[..11], b"\x09\x00\x00\x0a\x02\x03\x04\x01\x00\x00\x00");
        assert_eq!(&tag[11..21], b"\x17\x01\x00\x00\x00frame");
        assert_eq!(&tag[21..], 21u32.to_be_bytes());
        // Shared: the same memory for every player.
        assert_eq!(shared.flv_tag(true).unwrap().as_ptr(), chunk.as_ptr());
        assert_eq!(tag.as_ptr(), chunk[CHUNK_HEAD..].as_ptr());
        let mut control =
            SharedMessage::new(RtmpMessage::new(type_id::DATA_AMF3, 1, 0, Bytes::new()));
        assert!(control.flv_tag(true).is_none());
    }

    /// Decodes one chunk-encoded message (the receiving side announcing `chunk_size`).
    fn decode(bytes: &Bytes, chunk_size: u32) -> RtmpMessage {
        use crate::rtmp::chunk_decoder::{ChunkDecoder, ChunkLimits};
        let mut decoder = ChunkDecoder::new(ChunkLimits::default());
        decoder.set_chunk_size(chunk_size).unwrap();
        let mut input = BytesMut::from(&bytes[..]);
        let msg = decoder
            .decode(&mut input)
            .unwrap()
            .expect("a whole message");
        assert!(input.is_empty());
        msg
    }

    #[test]
    fn a_message_keeps_a_few_encodings_and_encodes_for_everyone_else_afresh() {
        let payload = Bytes::from(vec![0xaf; 300]);
        let mut shared = SharedMessage::new(RtmpMessage::new(type_id::AUDIO, 1, 40, payload));
        // A player that plays on stream 1, 2, 3, ... (each createStream a new id).
        for stream_id in 1..=20 {
            let bytes = shared.encoded(128, stream_id);
            let msg = decode(&bytes, 128);
            assert_eq!((msg.stream_id, msg.timestamp), (stream_id, 40));
            assert_eq!(msg.payload, shared.msg.payload);
        }
        assert_eq!(shared.encodings.len(), MAX_KEPT_ENCODINGS);
        // The kept ones are shared: the same memory again.
        let first = shared.encoded(128, 1);
        assert_eq!(first.as_ptr(), shared.encoded(128, 1).as_ptr());
        assert_ne!(
            shared.encoded(128, 20).as_ptr(),
            shared.encoded(128, 20).as_ptr()
        );
    }

    #[test]
    fn a_kept_payload_is_a_slice_of_a_one_chunk_encoding_or_else_a_copy() {
        // As a driver hands reads over: a slice of a larger buffer.
        let read = Bytes::from(vec![7u8; 4096]);
        let payload = read.slice(100..160);
        let mut shared = SharedMessage::new(RtmpMessage::new(type_id::AUDIO, 1, 0, payload));
        let one_chunk = shared.encoded(4096, 1);
        let mut kept = ByteBlocks::default();
        shared.own_payload(&mut kept);
        assert_eq!(shared.msg.payload, read.slice(100..160));
        let at = shared.msg.payload.as_ptr() as usize - one_chunk.as_ptr() as usize;
        assert_eq!(at, one_chunk.len() - 60, "the encoding's last 60 bytes");

        // Only an encoding in several chunks: copied, out of the read.
        let mut shared =
            SharedMessage::new(RtmpMessage::new(type_id::AUDIO, 1, 0, read.slice(0..300)));
        shared.encoded(128, 1);
        shared.own_payload(&mut kept);
        assert_eq!(shared.msg.payload, read.slice(0..300));
        let (start, end) = (read.as_ptr() as usize, read.as_ptr() as usize + read.len());
        let kept = shared.msg.payload.as_ptr() as usize;
        assert!(
            !(start..end).contains(&kept),
            "no longer in the read buffer"
        );
        assert_eq!(
            decode(&shared.encoded(128, 1), 128).payload,
            read.slice(0..300)
        );
    }
}
