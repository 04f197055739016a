//! AMF0: the encoder and decoder of the original Flash serialization format, the one RTMP
//! command (type 20) and data (type 18) messages carry, with its object reference table and its
//! AVM+ switch into AMF3.
//!
//! Mapping between the wire and [`Value`]:
//!
//! | AMF0 marker                 | `Value`                                                   |
//! |-----------------------------|-----------------------------------------------------------|
//! | 0x00 number                 | `Number` (`Integer` is written as a number)               |
//! | 0x01 boolean                | `Boolean`                                                 |
//! | 0x02 string, 0x0C long string | `String` (long string when over 65535 bytes)            |
//! | 0x03 object                 | `Object { class_name: None, .. }`                         |
//! | 0x05 null / 0x06 undefined  | `Null` / `Undefined`                                      |
//! | 0x07 reference              | a copy of the earlier object or array it names            |
//! | 0x08 ECMA array             | `EcmaArray`                                               |
//! | 0x0A strict array           | `StrictArray`                                             |
//! | 0x0B date                   | `Date` (with its time zone)                               |
//! | 0x0D unsupported            | `Unsupported`                                             |
//! | 0x0F XML document           | `XmlDocument` (`Xml` is written as an XML document)       |
//! | 0x10 typed object           | `Object { class_name: Some(..), .. }`                     |
//! | 0x11 AVM+ (switch to AMF3)  | whatever the AMF3 value is; written for `MixedArray`, `ByteArray`, vectors and `Dictionary` |
//!
//! 0x04 movieclip and 0x0E recordset are reserved and 0x09 object-end only closes an object:
//! decoding them as a value is [`AmfError::UnexpectedMarker`].

use super::amf3::{Amf3Decoder, Amf3Encoder};
use super::reader::{
    check_count, enter, read_f64, read_u16, read_u32, read_u8, read_utf8, take, Budget, RefTable,
};
use super::{AmfError, Value};

const NUMBER: u8 = 0x00;
const BOOLEAN: u8 = 0x01;
const STRING: u8 = 0x02;
const OBJECT: u8 = 0x03;
const MOVIECLIP: u8 = 0x04;
const NULL: u8 = 0x05;
const UNDEFINED: u8 = 0x06;
const REFERENCE: u8 = 0x07;
const ECMA_ARRAY: u8 = 0x08;
const OBJECT_END: u8 = 0x09;
const STRICT_ARRAY: u8 = 0x0A;
const DATE: u8 = 0x0B;
const LONG_STRING: u8 = 0x0C;
const UNSUPPORTED: u8 = 0x0D;
const RECORDSET: u8 = 0x0E;
const XML_DOCUMENT: u8 = 0x0F;
const TYPED_OBJECT: u8 = 0x10;
const AVMPLUS: u8 = 0x11;

/// An AMF0 decoder: reads [`Value`]s and keeps, across calls, the table of objects and arrays
/// that reference markers point into, and the AMF3 state used after AVM+ switches, so every
/// value of one message can refer to the ones before it.
///
/// Errors leave the tables in an unspecified (but safe) state: drop the decoder with the
/// message.
///
/// ```
/// use siprtmp_core::amf::{amf0::Amf0Decoder, Value};
/// // An object {a: true}, then reference 0 (that same object).
/// let mut input: &[u8] = &[0x03, 0x00, 0x01, b'a', 0x01, 0x01, 0x00, 0x00, 0x09, 0x07, 0x00, 0x00];
/// let mut decoder = Amf0Decoder::new();
/// let first = decoder.decode(&mut input)?;
/// assert_eq!(first, Value::object([("a", Value::Boolean(true))]));
/// assert_eq!(decoder.decode(&mut input)?, first);
/// assert!(input.is_empty());
/// # Ok::<(), siprtmp_core::amf::AmfError>(())
/// ```
#[derive(Debug, Default, Clone)]
pub struct Amf0Decoder {
    objects: RefTable,
    budget: Budget,
    amf3: Amf3Decoder,
}

impl Amf0Decoder {
    /// A decoder with an empty reference table (the start of a message).
    pub fn new() -> Self {
        Self::default()
    }

    /// Decodes one value from the front of `input` and advances `input` past it.
    pub fn decode(&mut self, input: &mut &[u8]) -> Result<Value, AmfError> {
        self.decode_at(input, 0)
    }

    /// Decodes one value enclosed by `level` containers.
    fn decode_at(&mut self, input: &mut &[u8], level: usize) -> Result<Value, AmfError> {
        let marker = read_u8(input)?;
        Ok(match marker {
            NUMBER => Value::Number(read_f64(input)?),
            BOOLEAN => Value::Boolean(read_u8(input)? != 0),
            STRING => Value::String(read_short_string(input)?),
            LONG_STRING => {
                let len = read_u32(input)?;
                Value::String(read_utf8(input, u64::from(len))?)
            }
            XML_DOCUMENT => {
                let len = read_u32(input)?;
                Value::XmlDocument(read_utf8(input, u64::from(len))?)
            }
            NULL => Value::Null,
            UNDEFINED => Value::Undefined,
            UNSUPPORTED => Value::Unsupported,
            DATE => {
                let millis = read_f64(input)?;
                let timezone = i16::from_be_bytes([read_u8(input)?, read_u8(input)?]);
                Value::Date { millis, timezone }
            }
            REFERENCE => {
                let index = read_u16(input)?;
                self.objects
                    .get(u32::from(index), level, &mut self.budget)?
            }
            OBJECT | TYPED_OBJECT => {
                let child = enter(level)?;
                let slot = self.objects.reserve();
                let class_name = if marker == TYPED_OBJECT {
                    Some(read_short_string(input)?)
                } else {
                    None
                };
                let properties = self.read_properties(input, child)?;
                self.finish(
                    slot,
                    Value::Object {
                        class_name,
                        properties,
                    },
                )?
            }
            ECMA_ARRAY => {
                let child = enter(level)?;
                let slot = self.objects.reserve();
                // The count is only a hint (writers get it wrong); the end marker decides.
                let _count = read_u32(input)?;
                let properties = self.read_properties(input, child)?;
                self.finish(slot, Value::EcmaArray(properties))?
            }
            STRICT_ARRAY => {
                let child = enter(level)?;
                let slot = self.objects.reserve();
                let count = read_u32(input)?;
                let mut items = Vec::with_capacity(check_count(input, count.into(), 1)?);
                for _ in 0..count {
                    items.push(self.decode_at(input, child)?);
                }
                self.finish(slot, Value::StrictArray(items))?
            }
            AVMPLUS => self.amf3.decode_at(input, level)?,
            MOVIECLIP | RECORDSET | OBJECT_END => return Err(AmfError::UnexpectedMarker(marker)),
            other => return Err(AmfError::UnknownMarker(other)),
        })
    }

    /// Stores a completed object or array in its reference-table slot and hands it back.
    fn finish(&mut self, slot: usize, value: Value) -> Result<Value, AmfError> {
        self.objects.fill(slot, &value, &mut self.budget)?;
        Ok(value)
    }

    /// Reads `name, value` pairs up to the object-end marker (an empty name followed by 0x09).
    fn read_properties(
        &mut self,
        input: &mut &[u8],
        level: usize,
    ) -> Result<Vec<(String, Value)>, AmfError> {
        let mut properties = Vec::new();
        loop {
            let name = read_short_string(input)?;
            if name.is_empty() && input.first() == Some(&OBJECT_END) {
                take(input, 1)?;
                return Ok(properties);
            }
            let value = self.decode_at(input, level)?;
            properties.push((name, value));
        }
    }
}

/// Reads a string with a 16-bit length (a string value, a property name, a class name).
fn read_short_string(input: &mut &[u8]) -> Result<String, AmfError> {
    let len = read_u16(input)?;
    read_utf8(input, u64::from(len))
}

/// Decodes every value in `bytes` with one [`Amf0Decoder`] (one message: references may span
/// values), for example the command name, transaction id, command object and arguments of an
/// RTMP command message.
///
/// ```
/// use siprtmp_core::amf::{amf0, Value};
/// let bytes = [
///     0x02, 0x00, 0x04, b'p', b'l', b'a', b'y', // "play"
///     0x00, 0, 0, 0, 0, 0, 0, 0, 0, // 0.0
///     0x05, // null
/// ];
/// let values = amf0::decode_all(&bytes)?;
/// assert_eq!(values, vec![Value::string("play"), Value::Number(0.0), Value::Null]);
/// # Ok::<(), siprtmp_core::amf::AmfError>(())
/// ```
pub fn decode_all(bytes: &[u8]) -> Result<Vec<Value>, AmfError> {
    let mut input = bytes;
    let mut decoder = Amf0Decoder::new();
    let mut values = Vec::new();
    while !input.is_empty() {
        values.push(decoder.decode(&mut input)?);
    }
    Ok(values)
}

/// Encodes `values` one after another.
///
/// ```
/// use siprtmp_core::amf::{amf0, Value};
/// let bytes = amf0::encode_all(&[Value::string("_result"), Value::Integer(1), Value::Null]);
/// assert_eq!(&bytes[..10], &[0x02, 0x00, 0x07, b'_', b'r', b'e', b's', b'u', b'l', b't']);
/// assert_eq!(
///     amf0::decode_all(&bytes)?,
///     vec![Value::string("_result"), Value::Number(1.0), Value::Null],
/// );
/// # Ok::<(), siprtmp_core::amf::AmfError>(())
/// ```
pub fn encode_all(values: &[Value]) -> Vec<u8> {
    let mut out = Vec::new();
    for v in values {
        encode(v, &mut out);
    }
    out
}

/// Appends the AMF0 encoding of `value` to `out`.
///
/// Encoding never fails; [`Value`]s AMF0 lacks are written as their closest equivalent:
/// - `Integer` as a number; `Xml` as an XML document.
/// - `MixedArray`, `ByteArray`, the vectors and `Dictionary` switch to AMF3 (the AVM+ marker
///   0x11 followed by their AMF3 encoding). So do objects and ECMA arrays with a property
///   name, and typed objects with a class name, longer than AMF0's 65535-byte limit. The AMF3
///   part never uses string or traits references, so it reads back the same whatever AMF3
///   values came before it in the message (see [`super::amf3::Amf3Encoder`] for how AMF3
///   itself approximates).
/// - Strings over 65535 bytes are long strings.
/// - The AMF0 reference marker is never written: [`Value`] has no object identity.
/// - Strings, XML and strict arrays beyond 2^32 - 1 bytes or items are cut to that size.
///
/// ```
/// use siprtmp_core::amf::{amf0, Value};
/// let mut out = Vec::new();
/// amf0::encode(&Value::object([("app", Value::string("live"))]), &mut out);
/// assert_eq!(
///     out,
///     [0x03, 0x00, 0x03, b'a', b'p', b'p', 0x02, 0x00, 0x04, b'l', b'i', b'v', b'e', 0x00, 0x00, 0x09]
/// );
/// ```
pub fn encode(value: &Value, out: &mut Vec<u8>) {
    match value {
        Value::Number(n) => write_number(*n, out),
        Value::Integer(i) => write_number(f64::from(*i), out),
        Value::Boolean(b) => out.extend_from_slice(&[BOOLEAN, u8::from(*b)]),
        Value::String(s) => match u16::try_from(s.len()) {
            Ok(len) => {
                out.push(STRING);
                out.extend_from_slice(&len.to_be_bytes());
                out.extend_from_slice(s.as_bytes());
            }
            Err(_) => write_long_text(LONG_STRING, s, out),
        },
        Value::Null => out.push(NULL),
        Value::Undefined => out.push(UNDEFINED),
        Value::Unsupported => out.push(UNSUPPORTED),
        Value::Object {
            class_name: None,
            properties,
        } if names_fit(properties) => {
            out.push(OBJECT);
            write_properties(properties, out);
        }
        Value::Object {
            class_name: Some(class_name),
            properties,
        } if class_name.len() <= usize::from(u16::MAX) && names_fit(properties) => {
            out.push(TYPED_OBJECT);
            write_short_string(class_name, out);
            write_properties(properties, out);
        }
        Value::EcmaArray(pairs) if names_fit(pairs) => {
            out.push(ECMA_ARRAY);
            out.extend_from_slice(&u32::try_from(pairs.len()).unwrap_or(u32::MAX).to_be_bytes());
            write_properties(pairs, out);
        }
        Value::StrictArray(items) => {
            let count = u32::try_from(items.len()).unwrap_or(u32::MAX);
            out.push(STRICT_ARRAY);
            out.extend_from_slice(&count.to_be_bytes());
            for item in items.iter().take(count as usize) {
                encode(item, out);
            }
        }
        Value::Date { millis, timezone } => {
            out.push(DATE);
            out.extend_from_slice(&millis.to_be_bytes());
            out.extend_from_slice(&timezone.to_be_bytes());
        }
        Value::XmlDocument(s) | Value::Xml(s) => write_long_text(XML_DOCUMENT, s, out),
        // AMF3-only values, and objects whose names AMF0 cannot hold.
        Value::Object { .. }
        | Value::EcmaArray(_)
        | Value::MixedArray { .. }
        | Value::ByteArray(_)
        | Value::VectorInt(..)
        | Value::VectorUint(..)
        | Value::VectorDouble(..)
        | Value::VectorObject(..)
        | Value::Dictionary(..) => {
            out.push(AVMPLUS);
            Amf3Encoder::without_references().encode(value, out);
        }
    }
}

fn write_number(n: f64, out: &mut Vec<u8>) {
    out.push(NUMBER);
    out.extend_from_slice(&n.to_be_bytes());
}

/// True when every property name fits AMF0's 16-bit name length.
fn names_fit(properties: &[(String, Value)]) -> bool {
    properties
        .iter()
        .all(|(name, _)| name.len() <= usize::from(u16::MAX))
}

/// Writes a string whose length the caller has checked fits 16 bits.
fn write_short_string(s: &str, out: &mut Vec<u8>) {
    let len = u16::try_from(s.len()).unwrap_or(u16::MAX);
    out.extend_from_slice(&len.to_be_bytes());
    out.extend_from_slice(&s.as_bytes()[..usize::from(len)]);
}

/// Writes a marker, a 32-bit length and the text (cut, on a character boundary, to 2^32 - 1
/// bytes).
fn write_long_text(marker: u8, s: &str, out: &mut Vec<u8>) {
    let mut end = s.len().min(u32::MAX as usize);
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    out.push(marker);
    out.extend_from_slice(&(end as u32).to_be_bytes());
    out.extend_from_slice(&s.as_bytes()[..end]);
}

/// Writes `name, value` pairs and the object-end marker.
fn write_properties(properties: &[(String, Value)], out: &mut Vec<u8>) {
    for (name, value) in properties {
        write_short_string(name, out);
        encode(value, out);
    }
    out.extend_from_slice(&[0x00, 0x00, OBJECT_END]);
}
