//! Protocol control messages (types 1, 2, 3, 5, 6) and User Control events (type 4).
//!
//! Both travel on message stream 0, chunk stream 2. Their bodies are a few big-endian
//! integers; anything shorter than its type requires is an error, extra bytes are ignored (as
//! Flash Player and FMS do).

use std::fmt;

use bytes::{BufMut, Bytes, BytesMut};

use super::message::{type_id, RtmpMessage};

/// A control body too short for its type, or a message that is not a control message.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum ControlError {
    /// The body is shorter than the type requires.
    Truncated {
        /// The message type id.
        type_id: u8,
        /// The body length received.
        length: usize,
    },
    /// The message type is not a protocol control type.
    NotControl(u8),
}

impl fmt::Display for ControlError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ControlError::Truncated { type_id, length } => {
                write!(
                    f,
                    "control message type {type_id} truncated at {length} bytes"
                )
            }
            ControlError::NotControl(t) => write!(f, "message type {t} is not protocol control"),
        }
    }
}

impl std::error::Error for ControlError {}

/// A protocol control message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProtocolControl {
    /// The sender's new chunk size (type 1).
    SetChunkSize(u32),
    /// Drop the partial message on this chunk stream (type 2).
    Abort(u32),
    /// Bytes received so far, wrapping at 2^32 (type 3).
    Acknowledgement(u32),
    /// Send an Acknowledgement after every this many bytes (type 5).
    WindowAckSize(u32),
    /// Limit the peer's output bandwidth (type 6); limit type 0 hard, 1 soft, 2 dynamic.
    SetPeerBandwidth {
        /// The window size in bytes.
        size: u32,
        /// 0 hard, 1 soft, 2 dynamic.
        limit_type: u8,
    },
}

fn be32(payload: &[u8], type_id: u8) -> Result<u32, ControlError> {
    match payload.get(..4) {
        Some(b) => Ok(u32::from_be_bytes([b[0], b[1], b[2], b[3]])),
        None => Err(ControlError::Truncated {
            type_id,
            length: payload.len(),
        }),
    }
}

impl ProtocolControl {
    /// Parses a protocol control message.
    ///
    /// ```
    /// use siprtmp_core::rtmp::control::ProtocolControl;
    /// let msg = ProtocolControl::SetChunkSize(4096).to_message();
    /// assert_eq!(ProtocolControl::parse(&msg), Ok(ProtocolControl::SetChunkSize(4096)));
    /// ```
    pub fn parse(msg: &RtmpMessage) -> Result<Self, ControlError> {
        let p = &msg.payload[..];
        let t = msg.type_id;
        Ok(match t {
            // The top bit of a chunk size is reserved; the decoder rejects it.
            type_id::SET_CHUNK_SIZE => ProtocolControl::SetChunkSize(be32(p, t)?),
            type_id::ABORT => ProtocolControl::Abort(be32(p, t)?),
            type_id::ACKNOWLEDGEMENT => ProtocolControl::Acknowledgement(be32(p, t)?),
            type_id::WINDOW_ACK_SIZE => ProtocolControl::WindowAckSize(be32(p, t)?),
            type_id::SET_PEER_BANDWIDTH => ProtocolControl::SetPeerBandwidth {
                size: be32(p, t)?,
                // Some peers omit the limit type; treat it as dynamic.
                limit_type: p.get(4).copied().unwrap_or(2),
            },
            other => return Err(ControlError::NotControl(other)),
        })
    }

    /// The message carrying this control, on message stream 0.
    pub fn to_message(&self) -> RtmpMessage {
        let mut body = BytesMut::with_capacity(5);
        let t = match *self {
            ProtocolControl::SetChunkSize(n) => {
                body.put_u32(n & 0x7FFF_FFFF);
                type_id::SET_CHUNK_SIZE
            }
            ProtocolControl::Abort(n) => {
                body.put_u32(n);
                type_id::ABORT
            }
            ProtocolControl::Acknowledgement(n) => {
                body.put_u32(n);
                type_id::ACKNOWLEDGEMENT
            }
            ProtocolControl::WindowAckSize(n) => {
                body.put_u32(n);
                type_id::WINDOW_ACK_SIZE
            }
            ProtocolControl::SetPeerBandwidth { size, limit_type } => {
                body.put_u32(size);
                body.put_u8(limit_type);
                type_id::SET_PEER_BANDWIDTH
            }
        };
        RtmpMessage::new(t, 0, 0, body.freeze())
    }
}

/// A User Control event (message type 4).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum UserControl {
    /// Event 0: the stream became functional.
    StreamBegin(u32),
    /// Event 1: playback of the stream ended.
    StreamEof(u32),
    /// Event 2: no more data on the stream for now.
    StreamDry(u32),
    /// Event 3: the client's buffer length.
    SetBufferLength {
        /// The message stream.
        stream_id: u32,
        /// Buffer length in milliseconds.
        buffer_ms: u32,
    },
    /// Event 4: the stream is a recorded one.
    StreamIsRecorded(u32),
    /// Event 6: the server checks the client is alive; the value is a timestamp.
    PingRequest(u32),
    /// Event 7: the answer to a ping, echoing its timestamp.
    PingResponse(u32),
    /// Any other event, kept as it came.
    Unknown {
        /// The event type.
        event_type: u16,
        /// The event data.
        data: Bytes,
    },
}

impl UserControl {
    /// Parses a User Control message body.
    ///
    /// ```
    /// use siprtmp_core::rtmp::control::UserControl;
    /// assert_eq!(UserControl::parse(&[0, 6, 0, 0, 0, 42]), Ok(UserControl::PingRequest(42)));
    /// ```
    pub fn parse(payload: &[u8]) -> Result<Self, ControlError> {
        let truncated = || ControlError::Truncated {
            type_id: type_id::USER_CONTROL,
            length: payload.len(),
        };
        let event_type = match payload.get(..2) {
            Some(b) => u16::from_be_bytes([b[0], b[1]]),
            None => return Err(truncated()),
        };
        let data = &payload[2..];
        let word = |i: usize| {
            data.get(i..i + 4)
                .map(|b| u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
                .ok_or_else(truncated)
        };
        Ok(match event_type {
            0 => UserControl::StreamBegin(word(0)?),
            1 => UserControl::StreamEof(word(0)?),
            2 => UserControl::StreamDry(word(0)?),
            3 => UserControl::SetBufferLength {
                stream_id: word(0)?,
                buffer_ms: word(4)?,
            },
            4 => UserControl::StreamIsRecorded(word(0)?),
            6 => UserControl::PingRequest(word(0)?),
            7 => UserControl::PingResponse(word(0)?),
            other => UserControl::Unknown {
                event_type: other,
                data: Bytes::copy_from_slice(data),
            },
        })
    }

    /// The User Control message carrying this event, on message stream 0.
    pub fn to_message(&self) -> RtmpMessage {
        let mut body = BytesMut::with_capacity(10);
        match self {
            UserControl::StreamBegin(v) => put_event(&mut body, 0, *v),
            UserControl::StreamEof(v) => put_event(&mut body, 1, *v),
            UserControl::StreamDry(v) => put_event(&mut body, 2, *v),
            UserControl::SetBufferLength {
                stream_id,
                buffer_ms,
            } => {
                put_event(&mut body, 3, *stream_id);
                body.put_u32(*buffer_ms);
            }
            UserControl::StreamIsRecorded(v) => put_event(&mut body, 4, *v),
            UserControl::PingRequest(v) => put_event(&mut body, 6, *v),
            UserControl::PingResponse(v) => put_event(&mut body, 7, *v),
            UserControl::Unknown { event_type, data } => {
                body.put_u16(*event_type);
                body.extend_from_slice(data);
            }
        }
        RtmpMessage::new(type_id::USER_CONTROL, 0, 0, body.freeze())
    }
}

fn put_event(body: &mut BytesMut, event_type: u16, value: u32) {
    body.put_u16(event_type);
    body.put_u32(value);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn set_peer_bandwidth_wire_bytes() {
        let msg = ProtocolControl::SetPeerBandwidth {
            size: 2_500_000,
            limit_type: 2,
        }
        .to_message();
        assert_eq!(msg.type_id, 6);
        assert_eq!(&msg.payload[..], &[0x00, 0x26, 0x25, 0xa0, 0x02]);
        assert_eq!(
            ProtocolControl::parse(&msg),
            Ok(ProtocolControl::SetPeerBandwidth {
                size: 2_500_000,
                limit_type: 2
            })
        );
    }

    #[test]
    fn every_user_control_event_round_trips() {
        let events = [
            UserControl::StreamBegin(1),
            UserControl::StreamEof(2),
            UserControl::StreamDry(3),
            UserControl::SetBufferLength {
                stream_id: 1,
                buffer_ms: 3000,
            },
            UserControl::StreamIsRecorded(1),
            UserControl::PingRequest(123_456),
            UserControl::PingResponse(123_456),
            UserControl::Unknown {
                event_type: 31,
                data: Bytes::from_static(&[1, 2, 3]),
            },
        ];
        for event in events {
            let msg = event.to_message();
            assert_eq!((msg.type_id, msg.stream_id), (4, 0));
            assert_eq!(UserControl::parse(&msg.payload), Ok(event));
        }
    }

    #[test]
    fn short_bodies_are_errors_not_panics() {
        assert!(UserControl::parse(&[]).is_err());
        assert!(UserControl::parse(&[0, 3, 0, 0, 0, 1, 0, 0]).is_err());
        let short = RtmpMessage::new(type_id::WINDOW_ACK_SIZE, 0, 0, vec![0, 1]);
        assert!(ProtocolControl::parse(&short).is_err());
    }
}
