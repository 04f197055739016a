//! Chunk encoding: cutting RTMP messages into chunks for the wire.
//!
//! Two ways in. [`ChunkEncoder`] is stateful, one per connection: it compresses headers
//! against the previous message of each chunk stream (formats 1-3), which suits commands and
//! control messages. [`encode_fmt0`] is stateless: every message gets a full format-0 header,
//! so the same bytes are valid for any receiver whatever it received before on that chunk
//! stream. The live fan-out uses it to encode a published message once and hand the same
//! buffer to every player.
//!
//! Header compression follows the rule ffmpeg's reader applies: a format-3 header that starts
//! a new message repeats the previous *timestamp field* of its chunk stream, so this encoder
//! only emits one when that field (a delta, never the absolute timestamp of a format-0 header)
//! is unchanged.

use bytes::{Buf, BufMut, Bytes, BytesMut};
use smallvec::SmallVec;

use super::chunk_decoder::{DEFAULT_CHUNK_SIZE, MAX_CHUNK_SIZE};
use super::message::RtmpMessage;

/// The largest header a chunk can have: 3-byte basic header, 11-byte message header and a
/// 4-byte extended timestamp.
pub const MAX_CHUNK_HEADER: usize = 18;

/// Room [`ChunkEncoder::encode_parts`] reserves in its scratch buffer at a time: the headers
/// of a few hundred audio messages per allocation.
const SCRATCH_BLOCK: usize = 4096;

/// What the encoder remembers of the last message on one chunk stream.
#[derive(Debug, Clone, Copy)]
struct LastHeader {
    csid: u32,
    type_id: u8,
    stream_id: u32,
    length: u32,
    timestamp: u32,
    /// The timestamp field last written: absolute after format 0, a delta after 1 or 2.
    timestamp_field: u32,
    /// Whether that field was a delta (format 1 or 2), so format 3 may repeat it.
    field_is_delta: bool,
}

/// A per-connection chunk encoder with header compression.
///
/// ```
/// use bytes::BytesMut;
/// use siprtmp_core::rtmp::chunk_decoder::{ChunkDecoder, ChunkLimits};
/// use siprtmp_core::rtmp::chunk_encoder::ChunkEncoder;
/// use siprtmp_core::rtmp::message::RtmpMessage;
///
/// let mut encoder = ChunkEncoder::new();
/// let mut wire = BytesMut::new();
/// for t in [0, 20, 40] {
///     encoder.encode(4, &RtmpMessage::new(8, 1, t, vec![0xaf; 10]), &mut wire);
/// }
/// let mut decoder = ChunkDecoder::new(ChunkLimits::default());
/// for t in [0, 20, 40] {
///     assert_eq!(decoder.decode(&mut wire).unwrap().unwrap().timestamp, t);
/// }
/// ```
#[derive(Debug, Clone)]
pub struct ChunkEncoder {
    chunk_size: u32,
    last: SmallVec<[LastHeader; 4]>,
}

impl Default for ChunkEncoder {
    fn default() -> Self {
        Self::new()
    }
}

impl ChunkEncoder {
    /// An encoder at the default chunk size of 128.
    pub fn new() -> Self {
        Self {
            chunk_size: DEFAULT_CHUNK_SIZE,
            last: SmallVec::new(),
        }
    }

    /// The chunk size this side writes with.
    pub fn chunk_size(&self) -> u32 {
        self.chunk_size
    }

    /// Changes the chunk size for the following messages. Call it right after queueing the
    /// Set Chunk Size message that announces it. Clamped to 1..=16 MiB - 1.
    pub fn set_chunk_size(&mut self, size: u32) {
        self.chunk_size = size.clamp(1, MAX_CHUNK_SIZE);
    }

    /// Appends `msg`, cut into chunks on chunk stream `csid`, to `out`.
    pub fn encode(&mut self, csid: u32, msg: &RtmpMessage, out: &mut BytesMut) {
        let length = msg.payload.len() as u32;
        let (fmt, field) = self.header(csid, msg.type_id, msg.stream_id, msg.timestamp, length);
        write_chunks(fmt, csid, field, msg, self.chunk_size, out);
    }

    /// Encodes a message whose payload is `prefix` followed by `body` (a media tag's header
    /// and the media it carries) without copying `body`: the chunk headers and `prefix` are
    /// written into `scratch` and split off it, and `emit` gets the wire segments in order
    /// (those header bytes, then slices of `body`, alternating when the message spans
    /// several chunks; the last is `body` itself, advanced, so a one-chunk message takes no
    /// reference count of its own). `scratch` is a reusable buffer: it allocates only when it
    /// runs out of room, not per message.
    ///
    /// ```
    /// use bytes::{Bytes, BytesMut};
    /// use siprtmp_core::rtmp::chunk_decoder::{ChunkDecoder, ChunkLimits};
    /// use siprtmp_core::rtmp::chunk_encoder::ChunkEncoder;
    ///
    /// let mut encoder = ChunkEncoder::new();
    /// let (mut scratch, mut wire) = (BytesMut::new(), BytesMut::new());
    /// let body = Bytes::from(vec![7u8; 300]);
    /// let mut segments = 0;
    /// encoder.encode_parts(4, 8, 1, 20, &[0xb2], body, &mut scratch, |segment| {
    ///     wire.extend_from_slice(&segment);
    ///     segments += 1;
    /// });
    /// assert_eq!(segments, 6); // 128-byte chunks: 3 headers, 3 slices of `body`
    /// let msg = ChunkDecoder::new(ChunkLimits::default()).decode(&mut wire).unwrap().unwrap();
    /// assert_eq!((msg.timestamp, msg.payload.len(), msg.payload[0]), (20, 301, 0xb2));
    /// ```
    #[allow(clippy::too_many_arguments)]
    pub fn encode_parts(
        &mut self,
        csid: u32,
        type_id: u8,
        stream_id: u32,
        timestamp: u32,
        prefix: &[u8],
        mut body: Bytes,
        scratch: &mut BytesMut,
        mut emit: impl FnMut(Bytes),
    ) {
        let length = (prefix.len() + body.len()) as u32;
        let (fmt, field) = self.header(csid, type_id, stream_id, timestamp, length);
        let extended = field >= 0xFF_FFFF;
        if scratch.capacity() - scratch.len() < MAX_CHUNK_HEADER + prefix.len() {
            // A fresh block for many messages' headers (the old one lives on in the segments
            // already split off it).
            scratch.reserve(SCRATCH_BLOCK.max(MAX_CHUNK_HEADER + prefix.len()));
        }
        write_message_header(fmt, csid, field, length, type_id, stream_id, scratch);
        let chunk = self.chunk_size as usize;
        // Offsets into the message's payload, `prefix` then `body`.
        let mut at = 0;
        let total = length as usize;
        loop {
            let end = (at + chunk).min(total);
            if at < prefix.len() {
                scratch.extend_from_slice(&prefix[at..end.min(prefix.len())]);
            }
            let (from, to) = (at.max(prefix.len()), end.max(prefix.len()));
            if from < to {
                emit(scratch.split().freeze());
                let (from, to) = (from - prefix.len(), to - prefix.len());
                if to == body.len() {
                    // The rest of the body: handed over rather than shared once more.
                    let mut rest = std::mem::take(&mut body);
                    rest.advance(from);
                    emit(rest);
                } else {
                    emit(body.slice(from..to));
                }
            }
            at = end;
            if at >= total {
                break;
            }
            if scratch.capacity() - scratch.len() < MAX_CHUNK_HEADER + prefix.len() {
                scratch.reserve(SCRATCH_BLOCK);
            }
            write_basic_header(3, csid, scratch);
            if extended {
                scratch.put_u32(field);
            }
        }
        if !scratch.is_empty() {
            emit(scratch.split().freeze());
        }
    }

    /// The header format and timestamp field for the next message on `csid`, remembered for
    /// the one after.
    // Once per packet: inlined into its caller (no call, no copy of its result).
    #[inline]
    fn header(
        &mut self,
        csid: u32,
        type_id: u8,
        stream_id: u32,
        timestamp: u32,
        length: u32,
    ) -> (u8, u32) {
        let previous = self.last.iter().position(|l| l.csid == csid);
        let (fmt, field) = match previous.map(|i| self.last[i]) {
            Some(last) if last.stream_id == stream_id && timestamp >= last.timestamp => {
                let delta = timestamp - last.timestamp;
                if last.type_id != type_id || last.length != length {
                    (1, delta)
                } else if last.field_is_delta && last.timestamp_field == delta {
                    (3, delta)
                } else {
                    (2, delta)
                }
            }
            _ => (0, timestamp),
        };
        let record = LastHeader {
            csid,
            type_id,
            stream_id,
            length,
            timestamp,
            timestamp_field: field,
            field_is_delta: fmt != 0,
        };
        match previous {
            Some(i) => self.last[i] = record,
            None => self.last.push(record),
        }
        (fmt, field)
    }
}

/// `msg` as a self-contained chunk sequence: a format-0 header, then format-3 continuation
/// chunks every `chunk_size` bytes.
///
/// ```
/// use siprtmp_core::rtmp::chunk_encoder::encode_fmt0;
/// use siprtmp_core::rtmp::message::RtmpMessage;
///
/// let bytes = encode_fmt0(6, &RtmpMessage::new(9, 1, 0, vec![0u8; 200]), 128);
/// // 12-byte header + 128 bytes + 1-byte continuation header + 72 bytes.
/// assert_eq!(bytes.len(), 12 + 128 + 1 + 72);
/// ```
pub fn encode_fmt0(csid: u32, msg: &RtmpMessage, chunk_size: u32) -> Bytes {
    let chunk_size = chunk_size.clamp(1, MAX_CHUNK_SIZE);
    let chunks = msg.payload.len().div_ceil(chunk_size as usize).max(1);
    let mut out = BytesMut::with_capacity(msg.payload.len() + MAX_CHUNK_HEADER + 8 * chunks);
    write_chunks(0, csid, msg.timestamp, msg, chunk_size, &mut out);
    out.freeze()
}

// Once per packet: inlined into its caller (no call, no copy of its result).
#[inline]
fn write_basic_header(fmt: u8, csid: u32, out: &mut BytesMut) {
    let fmt = fmt << 6;
    match csid {
        2..=63 => out.put_u8(fmt | csid as u8),
        64..=319 => {
            out.put_u8(fmt);
            out.put_u8((csid - 64) as u8);
        }
        _ => {
            // Ids below 2 are reserved and above 65599 unrepresentable: callers use constants
            // in range, so clamp rather than emit something a peer would misread.
            let id = csid.clamp(320, 65599) - 64;
            out.put_u8(fmt | 1);
            out.put_u16_le(id as u16);
        }
    }
}

/// A message's first chunk header: basic header, the format's message header fields and the
/// extended timestamp when the field needs one.
// Once per packet: inlined into its caller (no call, no copy of its result).
#[inline]
fn write_message_header(
    fmt: u8,
    csid: u32,
    timestamp_field: u32,
    length: u32,
    type_id: u8,
    stream_id: u32,
    out: &mut BytesMut,
) {
    write_basic_header(fmt, csid, out);
    if fmt < 3 {
        out.put_uint(u64::from(timestamp_field.min(0xFF_FFFF)), 3);
    }
    if fmt < 2 {
        out.put_uint(u64::from(length), 3);
        out.put_u8(type_id);
    }
    if fmt == 0 {
        out.put_u32_le(stream_id);
    }
    if timestamp_field >= 0xFF_FFFF {
        out.put_u32(timestamp_field);
    }
}

fn write_chunks(
    fmt: u8,
    csid: u32,
    timestamp_field: u32,
    msg: &RtmpMessage,
    chunk_size: u32,
    out: &mut BytesMut,
) {
    let extended = timestamp_field >= 0xFF_FFFF;
    write_message_header(
        fmt,
        csid,
        timestamp_field,
        msg.payload.len() as u32,
        msg.type_id,
        msg.stream_id,
        out,
    );
    let mut chunks = msg.payload.chunks(chunk_size as usize);
    if let Some(first) = chunks.next() {
        out.extend_from_slice(first);
    }
    for chunk in chunks {
        write_basic_header(3, csid, out);
        if extended {
            out.put_u32(timestamp_field);
        }
        out.extend_from_slice(chunk);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        /// `encode_parts` puts exactly `encode`'s bytes on the wire (same header compression,
        /// same chunking), for any split of the payload into prefix and body, any chunk size
        /// and any run of messages on one chunk stream.
        #[test]
        fn parts_encode_to_the_same_bytes_as_a_whole_message(
            chunk_size in 1u32..300,
            messages in proptest::collection::vec(
                (0usize..4, proptest::collection::vec(any::<u8>(), 0..700), 0u32..3, any::<bool>()),
                1..6,
            ),
        ) {
            let (mut whole, mut parts) = (ChunkEncoder::new(), ChunkEncoder::new());
            whole.set_chunk_size(chunk_size);
            parts.set_chunk_size(chunk_size);
            let (mut expected, mut wire, mut scratch) =
                (BytesMut::new(), BytesMut::new(), BytesMut::new());
            let mut timestamp = 0u32;
            for (prefix_len, payload, step, huge) in messages {
                timestamp += step * 20;
                let stamp = if huge { timestamp + 0xFF_FFFF } else { timestamp };
                let split = prefix_len.min(payload.len());
                let msg = RtmpMessage::new(8, 1, stamp, payload.clone());
                whole.encode(4, &msg, &mut expected);
                let body = Bytes::copy_from_slice(&payload[split..]);
                parts.encode_parts(4, 8, 1, stamp, &payload[..split], body, &mut scratch, |s| {
                    wire.extend_from_slice(&s)
                });
            }
            prop_assert_eq!(wire, expected);
        }
    }

    /// The body is never copied: every segment holding media bytes is a slice of `body`.
    #[test]
    fn body_segments_share_the_bodys_memory() {
        let mut encoder = ChunkEncoder::new();
        let mut scratch = BytesMut::new();
        let body = Bytes::from(vec![1u8; 1000]);
        let range = body.as_ptr() as usize..body.as_ptr() as usize + body.len();
        let mut from_body = 0;
        encoder.encode_parts(4, 8, 1, 0, &[0xb2], body, &mut scratch, |segment| {
            if range.contains(&(segment.as_ptr() as usize)) {
                from_body += segment.len();
            }
        });
        assert_eq!(from_body, range.len());
    }
}
