//! [`AmfError`]: why AMF bytes could not be decoded (or a value could not be encoded).

use std::fmt;

/// A decoding or encoding failure. Decoders never panic on hostile bytes; they return one of
/// these.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum AmfError {
    /// The input ended inside a value.
    UnexpectedEof,
    /// A type marker this format does not define.
    UnknownMarker(u8),
    /// A string was not valid UTF-8.
    InvalidUtf8,
    /// A reference index pointed outside its table, or at a value still being decoded (a cycle,
    /// which the tree-shaped [`Value`](super::Value) cannot hold).
    BadReference(u32),
    /// Nesting deeper than the decoder allows.
    TooDeep,
    /// A length or count larger than the remaining input could possibly hold.
    LengthTooLarge(u64),
    /// A value that cannot be represented in the target format.
    Unrepresentable(&'static str),
    /// A marker the format defines but that cannot appear where it was found: AMF0's
    /// object-end outside an object, or its reserved movieclip and recordset markers.
    UnexpectedMarker(u8),
    /// An AMF3 externalizable object of this class: its body is written by the class itself,
    /// so nothing can be decoded without knowing that class.
    Externalizable(String),
    /// References (which cost a byte or two on the wire) would copy more data than a decoder
    /// allows for one message: a "billion laughs" expansion.
    ExpansionTooLarge,
}

impl fmt::Display for AmfError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            AmfError::UnexpectedEof => write!(f, "AMF input ended inside a value"),
            AmfError::UnknownMarker(m) => write!(f, "unknown AMF type marker 0x{m:02x}"),
            AmfError::InvalidUtf8 => write!(f, "AMF string is not valid UTF-8"),
            AmfError::BadReference(i) => write!(f, "AMF reference {i} is out of range"),
            AmfError::TooDeep => write!(f, "AMF values nested too deeply"),
            AmfError::LengthTooLarge(n) => write!(f, "AMF length {n} exceeds the input"),
            AmfError::Unrepresentable(what) => write!(f, "cannot encode {what} in this AMF format"),
            AmfError::UnexpectedMarker(m) => {
                write!(f, "AMF type marker 0x{m:02x} is not allowed here")
            }
            AmfError::Externalizable(class) => {
                write!(
                    f,
                    "AMF3 externalizable object of class {class:?} cannot be decoded"
                )
            }
            AmfError::ExpansionTooLarge => {
                write!(f, "AMF references expand beyond the allowed size")
            }
        }
    }
}

impl std::error::Error for AmfError {}
