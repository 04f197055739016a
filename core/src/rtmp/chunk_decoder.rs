//! [`ChunkDecoder`]: reassembles RTMP messages from the chunk stream a peer sends.
//!
//! The chunk stream interleaves messages cut into chunks of the peer's chunk size. Each chunk
//! starts with a basic header (format 0-3 and a chunk stream id of 1, 2 or 3 bytes) and a
//! message header whose size depends on the format: format 0 carries everything, 1 omits the
//! stream id, 2 carries only a timestamp delta, 3 nothing (it repeats the previous header of its
//! chunk stream). A 24-bit timestamp field of `0xFFFFFF` means a 32-bit extended timestamp
//! follows, also on format-3 chunks whose chunk stream last used one (as ffmpeg and FMS do).
//!
//! The decoder keeps per-chunk-stream state and the partial message of each chunk stream. All
//! of it is bounded by [`ChunkLimits`], because every number in a chunk header comes from the
//! peer: a hostile header can only make the decoder return a [`ChunkError`]. Memory is taken
//! as bytes arrive, never for what a header announces: a partial message grows (at most
//! doubling, never past its length) with the bytes received, and a chunk longer than
//! [`STREAMED_CHUNK`] (a peer may announce chunks of up to 16 MiB) is taken in as it arrives
//! instead of waiting whole in the input buffer.

use std::fmt;

use bytes::{Buf, BytesMut};
use smallvec::SmallVec;

use super::message::RtmpMessage;

/// The chunk size both sides use until a Set Chunk Size message says otherwise.
pub const DEFAULT_CHUNK_SIZE: u32 = 128;

/// The largest chunk size either side may announce; a message cannot be longer than this
/// (its length field has 24 bits), so larger chunks are never needed.
pub const MAX_CHUNK_SIZE: u32 = 0x00FF_FFFF;

/// Chunks longer than this are taken into their message as their bytes arrive; shorter ones
/// wait whole in the input, so that a message in one chunk (most audio and video at the
/// usual chunk sizes) is split off the input without a copy.
pub const STREAMED_CHUNK: usize = 64 * 1024;

/// Bounds on what one peer can make the decoder hold.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ChunkLimits {
    /// The longest message accepted, in bytes (the wire format allows up to 16 MiB - 1).
    pub max_message_size: u32,
    /// How many distinct chunk stream ids one peer may use.
    pub max_chunk_streams: usize,
    /// Bytes of unfinished messages held at once, over all chunk streams (the buffers'
    /// capacity, which is what they cost).
    pub max_partial_bytes: usize,
}

impl Default for ChunkLimits {
    /// 8 MiB messages (a 4K keyframe at 50 Mbit/s is 1-3 MiB), 64 chunk streams, and 9 MiB of
    /// partial messages: one message of the largest size on one chunk stream (an encoder
    /// interleaves one video message with audio, whose messages are small) and 1 MiB more.
    fn default() -> Self {
        Self {
            max_message_size: 8 * 1024 * 1024,
            max_chunk_streams: 64,
            max_partial_bytes: 9 * 1024 * 1024,
        }
    }
}

/// Why the chunk stream cannot be decoded. The connection should be closed.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum ChunkError {
    /// A message header announced a message longer than [`ChunkLimits::max_message_size`].
    MessageTooLarge {
        /// The announced length.
        length: u32,
        /// The configured limit.
        max: u32,
    },
    /// The peer used more chunk streams than [`ChunkLimits::max_chunk_streams`].
    TooManyChunkStreams(usize),
    /// Unfinished messages would exceed [`ChunkLimits::max_partial_bytes`].
    PartialBytesExceeded(usize),
    /// A format 1, 2 or 3 chunk on a chunk stream that never had a format 0 header.
    NoPreviousHeader(u32),
    /// A format 0, 1 or 2 header arrived while a message on that chunk stream was unfinished.
    HeaderInsideMessage(u32),
    /// Set Chunk Size with 0 or the reserved top bit set.
    InvalidChunkSize(u32),
}

impl fmt::Display for ChunkError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ChunkError::MessageTooLarge { length, max } => {
                write!(f, "message of {length} bytes exceeds the limit of {max}")
            }
            ChunkError::TooManyChunkStreams(max) => {
                write!(f, "more than {max} chunk streams in use")
            }
            ChunkError::PartialBytesExceeded(max) => {
                write!(f, "more than {max} bytes of unfinished messages")
            }
            ChunkError::NoPreviousHeader(csid) => {
                write!(f, "chunk stream {csid} continues a header it never sent")
            }
            ChunkError::HeaderInsideMessage(csid) => {
                write!(
                    f,
                    "new message header on chunk stream {csid} before its message ended"
                )
            }
            ChunkError::InvalidChunkSize(size) => write!(f, "invalid chunk size {size}"),
        }
    }
}

impl std::error::Error for ChunkError {}

/// What the decoder remembers about one chunk stream.
#[derive(Debug)]
struct ChunkStream {
    csid: u32,
    /// Absolute timestamp of the current (or last) message.
    timestamp: u32,
    /// The last timestamp field (absolute for format 0, a delta otherwise); a format-3 chunk
    /// that starts a new message adds it again.
    timestamp_field: u32,
    /// Whether the last header used an extended timestamp, so format-3 chunks carry one too.
    extended: bool,
    length: u32,
    type_id: u8,
    stream_id: u32,
    /// The unfinished message, if a chunk of it arrived.
    partial: Option<BytesMut>,
}

/// A parsed chunk header, before its payload is consumed.
struct ChunkHeader {
    fmt: u8,
    csid: u32,
    /// Header bytes, payload not included.
    header_len: usize,
    timestamp_field: u32,
    length: u32,
    type_id: u8,
    stream_id: u32,
    extended: bool,
}

/// Reassembles messages from a peer's chunk stream.
///
/// ```
/// use bytes::BytesMut;
/// use siprtmp_core::rtmp::chunk_decoder::{ChunkDecoder, ChunkLimits};
/// use siprtmp_core::rtmp::chunk_encoder::encode_fmt0;
/// use siprtmp_core::rtmp::message::RtmpMessage;
///
/// let msg = RtmpMessage::new(9, 1, 40, vec![0x17; 300]);
/// let mut wire = BytesMut::from(&encode_fmt0(6, &msg, 128)[..]);
/// let mut decoder = ChunkDecoder::new(ChunkLimits::default());
/// assert_eq!(decoder.decode(&mut wire).unwrap(), Some(msg));
/// assert!(wire.is_empty());
/// ```
///
/// The fields every chunk reads come first, in the order written (`repr(C)`), before the
/// chunk streams' states: one cache line of the decoder per chunk.
#[derive(Debug)]
#[repr(C)]
pub struct ChunkDecoder {
    chunk_size: u32,
    /// A long chunk being taken in as it arrives: the payload bytes still to come (0: none),
    /// and its chunk stream's index.
    in_chunk: u32,
    in_chunk_stream: u32,
    /// The index in `streams` of the chunk stream of the last chunk, looked at first: a
    /// media publisher's chunks mostly follow one another on one chunk stream, which is then
    /// found without walking the others (one cache line each, cold when many sessions take
    /// turns).
    last: usize,
    partial_bytes: usize,
    /// `partial_bytes` when [`ChunkDecoder::take_partial_change`] was last called.
    partial_reported: usize,
    limits: ChunkLimits,
    streams: SmallVec<[ChunkStream; 8]>,
}

impl ChunkDecoder {
    /// A decoder at the default chunk size of 128.
    pub fn new(limits: ChunkLimits) -> Self {
        Self {
            limits,
            chunk_size: DEFAULT_CHUNK_SIZE,
            streams: SmallVec::new(),
            last: 0,
            partial_bytes: 0,
            partial_reported: 0,
            in_chunk: 0,
            in_chunk_stream: 0,
        }
    }

    /// The peer's current chunk size.
    pub fn chunk_size(&self) -> u32 {
        self.chunk_size
    }

    /// Applies the peer's Set Chunk Size. Sizes above 16 MiB - 1 are clamped (no message is
    /// longer); 0 and sizes with the reserved top bit are errors.
    pub fn set_chunk_size(&mut self, size: u32) -> Result<(), ChunkError> {
        if size == 0 || size & 0x8000_0000 != 0 {
            return Err(ChunkError::InvalidChunkSize(size));
        }
        self.chunk_size = size.min(MAX_CHUNK_SIZE);
        Ok(())
    }

    /// Applies an Abort Message: drops the unfinished message of chunk stream `csid`.
    pub fn abort(&mut self, csid: u32) {
        // (An abort cannot arrive in the middle of a chunk being taken in: that chunk's bytes
        // come first on the wire.)
        if let Some(stream) = self.streams.iter_mut().find(|s| s.csid == csid) {
            if let Some(partial) = stream.partial.take() {
                self.partial_bytes -= partial.capacity();
            }
        }
    }

    /// Bytes of unfinished messages currently held.
    pub fn partial_bytes(&self) -> usize {
        self.partial_bytes
    }

    /// The bytes of unfinished messages held now and when this was last called (for a budget
    /// over many decoders, kept up to date after each input).
    ///
    /// ```
    /// use siprtmp_core::rtmp::chunk_decoder::{ChunkDecoder, ChunkLimits};
    /// let mut decoder = ChunkDecoder::new(ChunkLimits::default());
    /// assert_eq!(decoder.take_partial_change(), (0, 0));
    /// ```
    #[inline]
    pub fn take_partial_change(&mut self) -> (usize, usize) {
        let before = std::mem::replace(&mut self.partial_reported, self.partial_bytes);
        (before, self.partial_bytes)
    }

    /// Consumes whole chunks from `input` until one message is complete (returned), or the
    /// input holds no further whole chunk (`Ok(None)`; the rest stays in `input`).
    pub fn decode(&mut self, input: &mut BytesMut) -> Result<Option<RtmpMessage>, ChunkError> {
        loop {
            if self.in_chunk > 0 {
                match self.continue_chunk(input)? {
                    Some(message) => return Ok(Some(message)),
                    None if self.in_chunk > 0 => return Ok(None),
                    None => continue,
                }
            }
            let Some(header) = self.parse_header(input)? else {
                return Ok(None);
            };
            let index = self.stream_index(header.csid)?;
            let stream = &mut self.streams[index];
            let starts_message = stream.partial.is_none();
            if header.fmt < 3 && !starts_message {
                return Err(ChunkError::HeaderInsideMessage(header.csid));
            }
            let length = if header.fmt < 2 {
                header.length
            } else {
                stream.length
            };
            if starts_message && length > self.limits.max_message_size {
                return Err(ChunkError::MessageTooLarge {
                    length,
                    max: self.limits.max_message_size,
                });
            }
            let held = stream.partial.as_ref().map_or(0, BytesMut::len);
            let chunk_len = (length as usize - held).min(self.chunk_size as usize);
            let whole = input.len() >= header.header_len + chunk_len;
            // A long chunk starts being taken in once its header and a first byte are here.
            if !whole && (chunk_len <= STREAMED_CHUNK || input.len() <= header.header_len) {
                return Ok(None);
            }
            // The whole chunk is here: commit the header to the chunk stream's state.
            if starts_message {
                match header.fmt {
                    0 => {
                        stream.timestamp = header.timestamp_field;
                        stream.stream_id = header.stream_id;
                    }
                    _ => stream.timestamp = stream.timestamp.wrapping_add(header.timestamp_field),
                }
                if header.fmt < 2 {
                    stream.length = header.length;
                    stream.type_id = header.type_id;
                }
                stream.timestamp_field = header.timestamp_field;
                stream.extended = header.extended;
            }
            input.advance(header.header_len);
            let whole_in_one_chunk = starts_message && chunk_len == length as usize;
            if whole_in_one_chunk && whole {
                // The common case for audio and small video: no reassembly, no copy. When the
                // chunk is all the input holds (a read of one message, the usual case for a
                // client's audio), the buffer itself becomes the payload: no split, whose
                // bookkeeping (and the remainder's reference) costs on every message.
                let payload = if input.len() == chunk_len {
                    std::mem::take(input).freeze()
                } else {
                    input.split_to(chunk_len).freeze()
                };
                return Ok(Some(stream.message(payload)));
            }
            let take = chunk_len.min(input.len());
            self.append(index, &input[..take])?;
            input.advance(take);
            if take < chunk_len {
                // At most 16 MiB - 1 (the chunk size's bound).
                self.in_chunk = (chunk_len - take) as u32;
                self.in_chunk_stream = index as u32;
                continue;
            }
            if let Some(message) = self.complete(index) {
                return Ok(Some(message));
            }
        }
    }

    /// Takes in more of a long chunk being received: the message, if this completed it.
    #[cold]
    fn continue_chunk(&mut self, input: &mut BytesMut) -> Result<Option<RtmpMessage>, ChunkError> {
        let index = self.in_chunk_stream as usize;
        let take = (self.in_chunk as usize).min(input.len());
        self.append(index, &input[..take])?;
        input.advance(take);
        self.in_chunk -= take as u32;
        if self.in_chunk > 0 {
            return Ok(None);
        }
        Ok(self.complete(index))
    }

    /// Appends `bytes` to the partial message of chunk stream `index`, growing its buffer by
    /// at most doubling and never past the message's length, within the partial-bytes limit.
    fn append(&mut self, index: usize, bytes: &[u8]) -> Result<(), ChunkError> {
        let stream = &mut self.streams[index];
        let length = stream.length as usize;
        let partial = stream.partial.get_or_insert_with(BytesMut::new);
        let (len, capacity) = (partial.len(), partial.capacity());
        if capacity - len < bytes.len() {
            // Grow with the data actually received, not with the peer's claim.
            let target = (capacity * 2).max(len + bytes.len()).max(4096).min(length);
            if self.partial_bytes - capacity + target > self.limits.max_partial_bytes {
                return Err(ChunkError::PartialBytesExceeded(
                    self.limits.max_partial_bytes,
                ));
            }
            let mut bigger = BytesMut::with_capacity(target);
            bigger.extend_from_slice(partial);
            // `with_capacity` may round up: account for what was really taken.
            self.partial_bytes = self.partial_bytes - capacity + bigger.capacity();
            *partial = bigger;
        }
        partial.extend_from_slice(bytes);
        Ok(())
    }

    /// The message of chunk stream `index`, if its partial message is now complete.
    fn complete(&mut self, index: usize) -> Option<RtmpMessage> {
        let stream = &mut self.streams[index];
        if stream.partial.as_ref()?.len() < stream.length as usize {
            return None;
        }
        let payload = stream.partial.take()?;
        self.partial_bytes -= payload.capacity();
        Some(stream.message(payload.freeze()))
    }

    /// The index of `csid`'s state, if it has one.
    fn find(&self, csid: u32) -> Option<usize> {
        if self.streams.get(self.last).is_some_and(|s| s.csid == csid) {
            return Some(self.last);
        }
        self.streams.iter().position(|s| s.csid == csid)
    }

    /// The index of `csid`'s state, creating it (within the limit) on first use.
    fn stream_index(&mut self, csid: u32) -> Result<usize, ChunkError> {
        if let Some(i) = self.find(csid) {
            self.last = i;
            return Ok(i);
        }
        if self.streams.len() >= self.limits.max_chunk_streams {
            return Err(ChunkError::TooManyChunkStreams(
                self.limits.max_chunk_streams,
            ));
        }
        self.streams.push(ChunkStream {
            csid,
            timestamp: 0,
            timestamp_field: 0,
            extended: false,
            length: 0,
            type_id: 0,
            stream_id: 0,
            partial: None,
        });
        Ok(self.streams.len() - 1)
    }

    /// Parses the basic and message headers at the front of `input` without consuming them;
    /// `Ok(None)` when they are not all here yet.
    fn parse_header(&self, input: &[u8]) -> Result<Option<ChunkHeader>, ChunkError> {
        let Some(&first) = input.first() else {
            return Ok(None);
        };
        let fmt = first >> 6;
        let (csid, mut pos) = match first & 0x3f {
            0 => match input.get(1) {
                Some(&b) => (64 + u32::from(b), 2),
                None => return Ok(None),
            },
            1 => match input.get(1..3) {
                Some(b) => (64 + u32::from(b[0]) + 256 * u32::from(b[1]), 3),
                None => return Ok(None),
            },
            id => (u32::from(id), 1),
        };
        let previous = self.find(csid).map(|i| &self.streams[i]);
        if fmt != 0 && previous.is_none() {
            return Err(ChunkError::NoPreviousHeader(csid));
        }
        let message_header_len = [11, 7, 3, 0][usize::from(fmt)];
        let Some(h) = input.get(pos..pos + message_header_len) else {
            return Ok(None);
        };
        pos += message_header_len;
        let be24 = |b: &[u8]| u32::from(b[0]) << 16 | u32::from(b[1]) << 8 | u32::from(b[2]);
        let mut header = ChunkHeader {
            fmt,
            csid,
            header_len: 0,
            timestamp_field: 0,
            length: 0,
            type_id: 0,
            stream_id: 0,
            extended: false,
        };
        let timestamp_field = match (fmt, previous) {
            (3, Some(p)) => {
                header.extended = p.extended;
                p.timestamp_field
            }
            _ => {
                let t = be24(&h[0..3]);
                header.extended = t == 0xFF_FFFF;
                t
            }
        };
        header.timestamp_field = timestamp_field;
        if fmt < 2 {
            header.length = be24(&h[3..6]);
            header.type_id = h[6];
        }
        if fmt == 0 {
            header.stream_id = u32::from_le_bytes([h[7], h[8], h[9], h[10]]);
        }
        if header.extended {
            let Some(e) = input.get(pos..pos + 4) else {
                return Ok(None);
            };
            pos += 4;
            // A format-3 chunk that starts a new message takes its delta from here (as ffmpeg
            // writes it); on a continuation chunk the value is not used.
            header.timestamp_field = u32::from_be_bytes([e[0], e[1], e[2], e[3]]);
        }
        header.header_len = pos;
        Ok(Some(header))
    }
}

impl ChunkStream {
    fn message(&self, payload: bytes::Bytes) -> RtmpMessage {
        RtmpMessage {
            type_id: self.type_id,
            stream_id: self.stream_id,
            timestamp: self.timestamp,
            payload,
        }
    }
}
