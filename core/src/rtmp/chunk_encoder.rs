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

use bytes::{BufMut, Bytes, BytesMut};
use smallvec::SmallVec;

use super::chunk_decoder::{DEFAULT_CHUNK_SIZE, MAX_CHUNK_SIZE};
use super::message::RtmpMessage;

/// The largest header a chunk can have: 3-byte basic header, 11-byte message header and a
/// 4-byte extended timestamp.
pub const MAX_CHUNK_HEADER: usize = 18;

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
        let previous = self.last.iter().position(|l| l.csid == csid);
        let (fmt, field) = match previous.map(|i| self.last[i]) {
            Some(last) if last.stream_id == msg.stream_id && msg.timestamp >= last.timestamp => {
                let delta = msg.timestamp - last.timestamp;
                if last.type_id != msg.type_id || last.length != length {
                    (1, delta)
                } else if last.field_is_delta && last.timestamp_field == delta {
                    (3, delta)
                } else {
                    (2, delta)
                }
            }
            _ => (0, msg.timestamp),
        };
        let record = LastHeader {
            csid,
            type_id: msg.type_id,
            stream_id: msg.stream_id,
            length,
            timestamp: msg.timestamp,
            timestamp_field: field,
            field_is_delta: fmt != 0,
        };
        match previous {
            Some(i) => self.last[i] = record,
            None => self.last.push(record),
        }
        write_chunks(fmt, csid, field, msg, self.chunk_size, out);
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

fn write_chunks(
    fmt: u8,
    csid: u32,
    timestamp_field: u32,
    msg: &RtmpMessage,
    chunk_size: u32,
    out: &mut BytesMut,
) {
    let extended = timestamp_field >= 0xFF_FFFF;
    let field24 = timestamp_field.min(0xFF_FFFF);
    write_basic_header(fmt, csid, out);
    if fmt < 3 {
        out.put_uint(u64::from(field24), 3);
    }
    if fmt < 2 {
        out.put_uint(msg.payload.len() as u64, 3);
        out.put_u8(msg.type_id);
    }
    if fmt == 0 {
        out.put_u32_le(msg.stream_id);
    }
    if extended {
        out.put_u32(timestamp_field);
    }
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
