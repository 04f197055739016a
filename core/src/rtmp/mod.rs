//! RTMP: the handshake, the chunk stream, protocol-control messages, commands, and the client
//! machine.

pub mod aggregate;
pub mod chunk_decoder;
pub mod chunk_encoder;
pub mod client;
pub mod command;
pub mod control;
pub mod handshake;
pub mod message;
