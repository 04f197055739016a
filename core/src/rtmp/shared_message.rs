//! [`SharedMessage`]: a message as published, with its chunk encodings, made once and shared
//! by every receiver that has the same chunk size and message stream id (the players of a live
//! stream, the workers it is relayed to).

use bytes::Bytes;
use smallvec::SmallVec;

use super::chunk_encoder::encode_fmt0;
use super::csid;
use super::message::{type_id, RtmpMessage};

/// A media or data message as published, with its chunk encodings shared by every player that
/// has the same chunk size and message stream id.
#[derive(Debug, Clone)]
pub(crate) struct SharedMessage {
    pub msg: RtmpMessage,
    encodings: SmallVec<[(u32, u32, Bytes); 1]>,
}

impl SharedMessage {
    pub(crate) fn new(msg: RtmpMessage) -> Self {
        Self {
            msg,
            encodings: SmallVec::new(),
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
        self.encodings.push((chunk_size, stream_id, bytes.clone()));
        bytes
    }

    pub(crate) fn len(&self) -> usize {
        self.msg.payload.len()
    }
}
