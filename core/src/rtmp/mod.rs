//! RTMP: the handshake, the chunk stream, protocol-control messages and the message model.

pub mod handshake;
pub mod message;
