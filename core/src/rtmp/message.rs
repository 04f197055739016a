//! [`RtmpMessage`]: one whole RTMP message, as reassembled from (or split into) chunks.

use bytes::Bytes;

/// RTMP message type ids (the `type id` field of a chunk message header).
pub mod type_id {
    /// Protocol control: Set Chunk Size.
    pub const SET_CHUNK_SIZE: u8 = 1;
    /// Protocol control: Abort Message.
    pub const ABORT: u8 = 2;
    /// Protocol control: Acknowledgement.
    pub const ACKNOWLEDGEMENT: u8 = 3;
    /// User Control Message (stream begin, ping...).
    pub const USER_CONTROL: u8 = 4;
    /// Protocol control: Window Acknowledgement Size.
    pub const WINDOW_ACK_SIZE: u8 = 5;
    /// Protocol control: Set Peer Bandwidth.
    pub const SET_PEER_BANDWIDTH: u8 = 6;
    /// Audio data (an FLV audio tag body).
    pub const AUDIO: u8 = 8;
    /// Video data (an FLV video tag body).
    pub const VIDEO: u8 = 9;
    /// Data message in AMF3.
    pub const DATA_AMF3: u8 = 15;
    /// Shared object in AMF3.
    pub const SHARED_OBJECT_AMF3: u8 = 16;
    /// Command message in AMF3 (a 0x00 byte, then AMF0 values that may switch to AMF3).
    pub const COMMAND_AMF3: u8 = 17;
    /// Data message in AMF0 (`@setDataFrame`, `onMetaData`...).
    pub const DATA_AMF0: u8 = 18;
    /// Shared object in AMF0.
    pub const SHARED_OBJECT_AMF0: u8 = 19;
    /// Command message in AMF0 (`connect`, `publish`, `_result`...).
    pub const COMMAND_AMF0: u8 = 20;
    /// Aggregate message: a sequence of FLV-tag-like sub-messages.
    pub const AGGREGATE: u8 = 22;
}

/// A complete RTMP message. The payload is a shared, immutable buffer: cloning a message never
/// copies media.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RtmpMessage {
    /// Message type id (see [`type_id`]).
    pub type_id: u8,
    /// Message stream id (0 for the connection's control stream).
    pub stream_id: u32,
    /// Absolute timestamp in milliseconds (wrapping at 2^32).
    pub timestamp: u32,
    /// The message body.
    pub payload: Bytes,
}

impl RtmpMessage {
    /// A message from its parts.
    pub fn new(type_id: u8, stream_id: u32, timestamp: u32, payload: impl Into<Bytes>) -> Self {
        Self {
            type_id,
            stream_id,
            timestamp,
            payload: payload.into(),
        }
    }
}
