//! Action Message Format: the value model shared by both encodings, AMF0 and AMF3.
//!
//! RTMP commands (`connect`, `publish`, `onStatus`...) and data messages (`@setDataFrame`,
//! `onMetaData`) are sequences of AMF values. [`Value`] is the one in-memory model; [`amf0`] and
//! [`amf3`] read and write it, each with the reference tables its format defines.

pub mod amf0;
pub mod amf3;
mod error;
mod reader;
mod value;

pub use error::AmfError;
pub use value::Value;
