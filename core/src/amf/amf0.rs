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
/// Limits against hostile input: values nest at most 64 containers deep
/// ([`AmfError::TooDeep`]); declared lengths and counts larger than the bytes left are
/// [`AmfError::LengthTooLarge`] before anything is allocated; and the copies references make
/// (into and out of the reference tables) may total about 32 MiB of decoded values per decoder
/// ([`AmfError::ExpansionTooLarge`]). A reference to a value still being decoded (a cycle) is
/// [`AmfError::BadReference`].
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

#[cfg(test)]
mod tests {
    use super::*;

    fn decode_one(bytes: &[u8]) -> Result<Value, AmfError> {
        let mut input = bytes;
        let v = Amf0Decoder::new().decode(&mut input)?;
        assert!(input.is_empty(), "trailing bytes: {input:?}");
        Ok(v)
    }

    fn enc(v: &Value) -> Vec<u8> {
        encode_all(std::slice::from_ref(v))
    }

    /// The command an RTMP encoder (FMLE, ffmpeg) sends first, byte for byte.
    #[test]
    fn rtmp_connect_command() {
        let bytes = [
            &[0x02, 0x00, 0x07][..],
            b"connect",
            &[0x00, 0x3F, 0xF0, 0, 0, 0, 0, 0, 0], // transaction id 1
            &[0x03],
            &[0x00, 0x03],
            b"app",
            &[0x02, 0x00, 0x04],
            b"live",
            &[0x00, 0x04],
            b"type",
            &[0x02, 0x00, 0x0A],
            b"nonprivate",
            &[0x00, 0x08],
            b"flashVer",
            &[0x02, 0x00, 0x1F],
            b"FMLE/3.0 (compatible; FMSc/1.0)",
            &[0x00, 0x05],
            b"tcUrl",
            &[0x02, 0x00, 0x15],
            b"rtmp://localhost/live",
            &[0x00, 0x00, 0x09],
        ]
        .concat();
        let values = vec![
            Value::string("connect"),
            Value::Number(1.0),
            Value::object([
                ("app", Value::string("live")),
                ("type", Value::string("nonprivate")),
                ("flashVer", Value::string("FMLE/3.0 (compatible; FMSc/1.0)")),
                ("tcUrl", Value::string("rtmp://localhost/live")),
            ]),
        ];
        assert_eq!(decode_all(&bytes), Ok(values.clone()));
        assert_eq!(encode_all(&values), bytes);
        // The transaction id is usually built as an integer: same bytes.
        assert_eq!(enc(&Value::Integer(1)), enc(&Value::Number(1.0)));
    }

    #[test]
    fn scalars() {
        assert_eq!(decode_one(&[0x01, 0x00]), Ok(Value::Boolean(false)));
        assert_eq!(decode_one(&[0x01, 0x02]), Ok(Value::Boolean(true)));
        assert_eq!(enc(&Value::Boolean(true)), [0x01, 0x01]);
        assert_eq!(
            decode_all(&[0x05, 0x06, 0x0D]),
            Ok(vec![Value::Null, Value::Undefined, Value::Unsupported])
        );
        let date = Value::Date {
            millis: 1_000.0,
            timezone: -60,
        };
        let bytes = [0x0B, 0x40, 0x8F, 0x40, 0, 0, 0, 0, 0, 0xFF, 0xC4];
        assert_eq!(enc(&date), bytes);
        assert_eq!(decode_one(&bytes), Ok(date));
        let xml = [0x0F, 0, 0, 0, 4, b'<', b'a', b'/', b'>'];
        assert_eq!(decode_one(&xml), Ok(Value::XmlDocument("<a/>".into())));
        assert_eq!(enc(&Value::Xml("<a/>".into())), xml);
        assert_eq!(
            decode_one(&[0x0C, 0, 0, 0, 2, b'h', b'i']),
            Ok(Value::string("hi"))
        );
    }

    #[test]
    fn long_strings_switch_marker() {
        let short = "x".repeat(65_535);
        let long = "x".repeat(65_536);
        let b = enc(&Value::string(short.clone()));
        assert_eq!(&b[..3], [0x02, 0xFF, 0xFF]);
        assert_eq!(decode_one(&b), Ok(Value::string(short)));
        let b = enc(&Value::string(long.clone()));
        assert_eq!(&b[..5], [0x0C, 0x00, 0x01, 0x00, 0x00]);
        assert_eq!(decode_one(&b), Ok(Value::string(long)));
    }

    #[test]
    fn typed_object_and_arrays() {
        let typed = Value::Object {
            class_name: Some("C".into()),
            properties: vec![("a".into(), Value::Null)],
        };
        let bytes = [
            0x10, 0x00, 0x01, b'C', 0x00, 0x01, b'a', 0x05, 0x00, 0x00, 0x09,
        ];
        assert_eq!(enc(&typed), bytes);
        assert_eq!(decode_one(&bytes), Ok(typed));
        let strict = Value::StrictArray(vec![Value::Boolean(true), Value::Null]);
        let bytes = [0x0A, 0, 0, 0, 2, 0x01, 0x01, 0x05];
        assert_eq!(enc(&strict), bytes);
        assert_eq!(decode_one(&bytes), Ok(strict));
        let ecma = Value::EcmaArray(vec![("duration".into(), Value::Number(0.0))]);
        let bytes = [
            &[0x08, 0, 0, 0, 1, 0x00, 0x08][..],
            b"duration",
            &[0x00, 0, 0, 0, 0, 0, 0, 0, 0, 0x00, 0x00, 0x09],
        ]
        .concat();
        assert_eq!(enc(&ecma), bytes);
        assert_eq!(decode_one(&bytes), Ok(ecma));
    }

    #[test]
    fn ecma_count_is_only_a_hint() {
        // Count 0 (ffmpeg-style metadata with a wrong count) and count 2^32 - 1: the end
        // marker decides, and nothing is allocated for the count.
        for count in [[0, 0, 0, 0], [0xFF, 0xFF, 0xFF, 0xFF]] {
            let mut b = vec![0x08];
            b.extend(count);
            b.extend([
                0x00, 0x01, b'a', 0x05, 0x00, 0x01, b'b', 0x06, 0x00, 0x00, 0x09,
            ]);
            assert_eq!(
                decode_one(&b),
                Ok(Value::EcmaArray(vec![
                    ("a".into(), Value::Null),
                    ("b".into(), Value::Undefined)
                ]))
            );
        }
        // Without its end marker the array is cut short.
        assert_eq!(
            decode_one(&[0x08, 0, 0, 0, 1, 0x00, 0x01, b'a', 0x05]),
            Err(AmfError::UnexpectedEof)
        );
    }

    #[test]
    fn empty_property_name_is_not_the_end() {
        // "" followed by a value other than object-end is an ordinary property.
        let v = Value::object([("", Value::Null)]);
        let bytes = [0x03, 0x00, 0x00, 0x05, 0x00, 0x00, 0x09];
        assert_eq!(enc(&v), bytes);
        assert_eq!(decode_one(&bytes), Ok(v));
    }

    #[test]
    fn references() {
        // [{a: true}, ref 1]: index 0 is the strict array itself, which began first.
        let bytes = [
            0x0A, 0, 0, 0, 2, 0x03, 0x00, 0x01, b'a', 0x01, 0x01, 0x00, 0x00, 0x09, 0x07, 0x00,
            0x01,
        ];
        let inner = Value::object([("a", Value::Boolean(true))]);
        assert_eq!(
            decode_one(&bytes),
            Ok(Value::StrictArray(vec![inner.clone(), inner]))
        );
        // Self-reference (a cycle) and a reference past the table.
        assert_eq!(
            decode_one(&[0x0A, 0, 0, 0, 1, 0x07, 0x00, 0x00]),
            Err(AmfError::BadReference(0))
        );
        assert_eq!(
            decode_one(&[0x07, 0x00, 0x05]),
            Err(AmfError::BadReference(5))
        );
        // Strings and dates are not in the table: the ECMA array after them is index 0.
        assert_eq!(
            decode_all(&[0x02, 0x00, 0x00, 0x08, 0, 0, 0, 0, 0x00, 0x00, 0x09, 0x07, 0x00, 0x00]),
            Ok(vec![
                Value::string(""),
                Value::EcmaArray(vec![]),
                Value::EcmaArray(vec![])
            ])
        );
    }

    #[test]
    fn reserved_and_unknown_markers() {
        for m in [0x04, 0x09, 0x0E] {
            assert_eq!(decode_one(&[m]), Err(AmfError::UnexpectedMarker(m)));
        }
        assert_eq!(decode_one(&[0x12]), Err(AmfError::UnknownMarker(0x12)));
        assert_eq!(decode_one(&[]), Err(AmfError::UnexpectedEof));
    }

    #[test]
    fn hostile_lengths() {
        assert_eq!(
            decode_one(&[0x0A, 0xFF, 0xFF, 0xFF, 0xFF, 0x05]),
            Err(AmfError::LengthTooLarge(0xFFFF_FFFF))
        );
        assert_eq!(
            decode_one(&[0x0C, 0x7F, 0, 0, 0, b'a']),
            Err(AmfError::LengthTooLarge(0x7F00_0000))
        );
        assert_eq!(
            decode_one(&[0x02, 0x00, 0x02, 0xC3, 0x28]),
            Err(AmfError::InvalidUtf8)
        );
        let nested = |n: usize| {
            let mut b = [0x0A, 0, 0, 0, 1].repeat(n);
            b.push(0x05);
            b
        };
        assert!(decode_one(&nested(64)).is_ok());
        assert_eq!(decode_one(&nested(65)), Err(AmfError::TooDeep));
    }

    #[test]
    fn reference_expansion_is_capped() {
        // Arrays that each hold two references to the previous one: 2^40 copies of null
        // from about 450 bytes.
        let mut b = vec![0x0A, 0, 0, 0, 41, 0x0A, 0, 0, 0, 2, 0x05, 0x05];
        for k in 1..=40u16 {
            b.extend([0x0A, 0, 0, 0, 2, 0x07]);
            b.extend(k.to_be_bytes());
            b.push(0x07);
            b.extend(k.to_be_bytes());
        }
        assert_eq!(decode_one(&b), Err(AmfError::ExpansionTooLarge));
    }

    #[test]
    fn avmplus_switch() {
        assert_eq!(
            decode_one(&[0x11, 0x04, 0x81, 0x00]),
            Ok(Value::Integer(128))
        );
        // The AMF3 tables persist across switches of one message: the second switch refers
        // to the string the first one read.
        assert_eq!(
            decode_all(&[0x11, 0x06, 0x03, b'a', 0x11, 0x06, 0x00]),
            Ok(vec![Value::string("a"), Value::string("a")])
        );
        // A switch inside an AMF0 object.
        let v = Value::object([("data", Value::ByteArray(vec![7]))]);
        let bytes = [
            &[0x03, 0x00, 0x04][..],
            b"data",
            &[0x11, 0x0C, 0x03, 0x07, 0x00, 0x00, 0x09],
        ]
        .concat();
        assert_eq!(enc(&v), bytes);
        assert_eq!(decode_one(&bytes), Ok(v));
        // Nesting counts across the switch.
        let mut deep = [0x0A, 0, 0, 0, 1].repeat(64);
        deep.extend([0x11, 0x09, 0x03, 0x01, 0x01]);
        assert_eq!(decode_one(&deep), Err(AmfError::TooDeep));
    }

    #[test]
    fn amf3_only_values_switch_without_references() {
        let values = [
            Value::MixedArray {
                associative: vec![("k".into(), Value::string("k"))],
                dense: vec![Value::Integer(-5)],
            },
            Value::VectorObject("k".into(), vec![Value::string("k")], true),
            Value::Dictionary(vec![(Value::string("k"), Value::Number(1.5))], false),
            Value::VectorInt(vec![i32::MIN], false),
            Value::VectorUint(vec![u32::MAX], true),
            Value::VectorDouble(vec![-0.25], false),
        ];
        let bytes = encode_all(&values);
        assert_eq!(bytes[0], AVMPLUS);
        // Every "k" is written inline, so each switch decodes on its own, too.
        assert_eq!(bytes.windows(2).filter(|w| w == &[0x03, b'k']).count(), 5);
        assert_eq!(decode_all(&bytes), Ok(values.to_vec()));
        for v in &values {
            assert_eq!(decode_one(&enc(v)).as_ref(), Ok(v));
        }
    }

    #[test]
    fn long_names_switch_to_amf3() {
        let v = Value::object([("n".repeat(70_000), Value::Null)]);
        let b = enc(&v);
        assert_eq!(b[0], AVMPLUS);
        assert_eq!(decode_one(&b), Ok(v));
    }
}
