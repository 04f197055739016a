//! RTMP: the handshake, the chunk stream, protocol-control messages, commands, the client
//! machine, a message's chunk encodings shared between receivers, and `rtmp://` URLs.

pub mod aggregate;
pub mod chunk_decoder;
pub mod chunk_encoder;
pub mod client;
pub mod command;
pub mod control;
pub(crate) mod csid;
pub mod handshake;
pub mod message;
pub(crate) mod shared_message;
pub mod url;
