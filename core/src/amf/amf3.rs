//! AMF3: the encoder and decoder of ActionScript 3's serialization format, with its three
//! reference tables (strings, object traits, objects).
//!
//! AMF3 is what Flash Player 9+ sends when a `NetConnection` uses `objectEncoding = 3`, inside
//! AMF0 after the AVM+ marker (see [`super::amf0`]), and in RTMP's AMF3 shared-object and
//! command messages.
//!
//! Both tables live as long as the [`Amf3Decoder`] / [`Amf3Encoder`]: one per message.
//!
//! Mapping between the wire and [`Value`]:
//!
//! | AMF3 type            | `Value`                                                          |
//! |----------------------|------------------------------------------------------------------|
//! | undefined / null     | `Undefined` / `Null` (`Unsupported` is written as undefined)     |
//! | false / true         | `Boolean`                                                        |
//! | integer (U29)        | `Integer`; an `Integer` outside 29 bits is written as a double   |
//! | double               | `Number`                                                         |
//! | String               | `String`                                                         |
//! | XMLDocument / XML    | `XmlDocument` / `Xml`                                            |
//! | Date                 | `Date` (time zone 0: AMF3 has none)                              |
//! | Array                | `StrictArray` (no named part, including `[]`), `EcmaArray` (no dense part), `MixedArray` (both) |
//! | Object               | `Object`: `class_name` is `None` for the empty class name       |
//! | ByteArray            | `ByteArray`                                                      |
//! | `Vector.<int/uint/Number/Object>` | `VectorInt` / `VectorUint` / `VectorDouble` / `VectorObject` |
//! | Dictionary           | `Dictionary`                                                     |

use std::collections::HashMap;

use super::reader::{
    check_count, enter, read_f64, read_u8, read_utf8, take_declared, Budget, RefTable,
};
use super::{AmfError, Value};

const UNDEFINED: u8 = 0x00;
const NULL: u8 = 0x01;
const FALSE: u8 = 0x02;
const TRUE: u8 = 0x03;
const INTEGER: u8 = 0x04;
const DOUBLE: u8 = 0x05;
const STRING: u8 = 0x06;
const XML_DOC: u8 = 0x07;
const DATE: u8 = 0x08;
const ARRAY: u8 = 0x09;
const OBJECT: u8 = 0x0A;
const XML: u8 = 0x0B;
const BYTE_ARRAY: u8 = 0x0C;
const VECTOR_INT: u8 = 0x0D;
const VECTOR_UINT: u8 = 0x0E;
const VECTOR_DOUBLE: u8 = 0x0F;
const VECTOR_OBJECT: u8 = 0x10;
const DICTIONARY: u8 = 0x11;

/// The largest value a U29 holds.
const U29_MAX: u32 = 0x1FFF_FFFF;
/// The range of AMF3 integers (29-bit two's complement).
const INT_MIN: i32 = -(1 << 28);
const INT_MAX: i32 = (1 << 28) - 1;
/// The longest length or count a U29 header holds once its low flag bit is added (and so also
/// the number of string references an encoder can ever write).
const MAX_LEN: usize = (1 << 28) - 1;
/// The most sealed members (or traits references) a U29 traits header holds above its flags.
const MAX_SEALED: usize = (1 << 25) - 1;
const MAX_TRAITS: usize = (1 << 27) - 1;

/// Reads a U29: 1 to 4 bytes, 7 bits per byte with a continuation flag, all 8 bits of the
/// fourth byte.
fn read_u29(input: &mut &[u8]) -> Result<u32, AmfError> {
    let mut value = 0u32;
    for _ in 0..3 {
        let b = read_u8(input)?;
        if b & 0x80 == 0 {
            return Ok((value << 7) | u32::from(b));
        }
        value = (value << 7) | u32::from(b & 0x7F);
    }
    Ok((value << 8) | u32::from(read_u8(input)?))
}

/// Writes a U29 in its shortest form; `value` must not exceed [`U29_MAX`].
fn write_u29(value: u32, out: &mut Vec<u8>) {
    debug_assert!(value <= U29_MAX);
    let v = value & U29_MAX;
    if v < 0x80 {
        out.push(v as u8);
    } else if v < 0x4000 {
        out.extend_from_slice(&[(v >> 7) as u8 | 0x80, (v & 0x7F) as u8]);
    } else if v < 0x20_0000 {
        out.extend_from_slice(&[
            (v >> 14) as u8 | 0x80,
            ((v >> 7) & 0x7F) as u8 | 0x80,
            (v & 0x7F) as u8,
        ]);
    } else {
        out.extend_from_slice(&[
            (v >> 22) as u8 | 0x80,
            ((v >> 15) & 0x7F) as u8 | 0x80,
            ((v >> 8) & 0x7F) as u8 | 0x80,
            v as u8,
        ]);
    }
}

/// Writes an inline length or count: `len << 1 | 1`.
fn write_inline_len(len: usize, out: &mut Vec<u8>) {
    // Callers cap `len` at MAX_LEN, so the shifted value fits 29 bits.
    write_u29(((len.min(MAX_LEN) as u32) << 1) | 1, out);
}

/// `s` cut to the longest prefix (on a character boundary) an AMF3 length can describe.
fn fit_str(s: &str) -> &str {
    if s.len() <= MAX_LEN {
        return s;
    }
    let mut end = MAX_LEN;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

/// `items` cut to the most elements an AMF3 count can describe.
fn fit<T>(items: &[T]) -> &[T] {
    &items[..items.len().min(MAX_LEN)]
}

/// The traits of a class as the decoder remembers them for trait references.
#[derive(Debug, Clone)]
struct Traits {
    class_name: String,
    dynamic: bool,
    sealed: Vec<String>,
}

/// Either a reference to an earlier complex value, already resolved, or the payload bits of
/// an inline one (the header with its low flag bit removed).
enum Header {
    Reference(Value),
    Inline(u32),
}

/// An AMF3 decoder: reads [`Value`]s and keeps the string, traits and object reference tables
/// across calls, so every value of one message can refer to the ones before it.
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
/// use siprtmp_core::amf::{amf3::Amf3Decoder, Value};
/// // "hi", then a reference to string 0 ("hi") again.
/// let mut input: &[u8] = &[0x06, 0x05, b'h', b'i', 0x06, 0x00];
/// let mut decoder = Amf3Decoder::new();
/// assert_eq!(decoder.decode(&mut input)?, Value::string("hi"));
/// assert_eq!(decoder.decode(&mut input)?, Value::string("hi"));
/// assert!(input.is_empty());
/// # Ok::<(), siprtmp_core::amf::AmfError>(())
/// ```
#[derive(Debug, Default, Clone)]
pub struct Amf3Decoder {
    strings: Vec<String>,
    traits: Vec<Traits>,
    objects: RefTable,
    budget: Budget,
}

impl Amf3Decoder {
    /// A decoder with empty reference tables (the start of a message).
    pub fn new() -> Self {
        Self::default()
    }

    /// Decodes one value from the front of `input` and advances `input` past it.
    pub fn decode(&mut self, input: &mut &[u8]) -> Result<Value, AmfError> {
        self.decode_at(input, 0)
    }

    /// Decodes one value enclosed by `level` containers (AMF0 calls this for the AVM+ switch,
    /// which does not add a level of its own).
    pub(crate) fn decode_at(&mut self, input: &mut &[u8], level: usize) -> Result<Value, AmfError> {
        let marker = read_u8(input)?;
        Ok(match marker {
            UNDEFINED => Value::Undefined,
            NULL => Value::Null,
            FALSE => Value::Boolean(false),
            TRUE => Value::Boolean(true),
            INTEGER => {
                let v = read_u29(input)?;
                // Sign-extend from 29 bits.
                Value::Integer(((v << 3) as i32) >> 3)
            }
            DOUBLE => Value::Number(read_f64(input)?),
            STRING => Value::String(self.read_string(input)?),
            XML_DOC | XML => match self.header(input, level)? {
                Header::Reference(v) => v,
                Header::Inline(len) => {
                    let slot = self.objects.reserve();
                    let text = read_utf8(input, u64::from(len))?;
                    let v = if marker == XML {
                        Value::Xml(text)
                    } else {
                        Value::XmlDocument(text)
                    };
                    self.finish(slot, v)?
                }
            },
            DATE => match self.header(input, level)? {
                Header::Reference(v) => v,
                Header::Inline(_) => {
                    let slot = self.objects.reserve();
                    let millis = read_f64(input)?;
                    self.finish(
                        slot,
                        Value::Date {
                            millis,
                            timezone: 0,
                        },
                    )?
                }
            },
            ARRAY => match self.header(input, level)? {
                Header::Reference(v) => v,
                Header::Inline(count) => self.read_array(input, level, count)?,
            },
            OBJECT => match self.header(input, level)? {
                Header::Reference(v) => v,
                Header::Inline(bits) => self.read_object(input, level, bits)?,
            },
            BYTE_ARRAY => match self.header(input, level)? {
                Header::Reference(v) => v,
                Header::Inline(len) => {
                    let slot = self.objects.reserve();
                    let bytes = take_declared(input, u64::from(len))?.to_vec();
                    self.finish(slot, Value::ByteArray(bytes))?
                }
            },
            VECTOR_INT | VECTOR_UINT | VECTOR_DOUBLE | VECTOR_OBJECT => {
                match self.header(input, level)? {
                    Header::Reference(v) => v,
                    Header::Inline(count) => self.read_vector(input, level, marker, count)?,
                }
            }
            DICTIONARY => match self.header(input, level)? {
                Header::Reference(v) => v,
                Header::Inline(count) => {
                    let child = enter(level)?;
                    let slot = self.objects.reserve();
                    let weak = read_u8(input)? != 0;
                    let mut pairs = Vec::with_capacity(check_count(input, count.into(), 2)?);
                    for _ in 0..count {
                        let key = self.decode_at(input, child)?;
                        let value = self.decode_at(input, child)?;
                        pairs.push((key, value));
                    }
                    self.finish(slot, Value::Dictionary(pairs, weak))?
                }
            },
            other => return Err(AmfError::UnknownMarker(other)),
        })
    }

    /// Stores a completed complex value in its object-table slot and hands it back.
    fn finish(&mut self, slot: usize, value: Value) -> Result<Value, AmfError> {
        self.objects.fill(slot, &value, &mut self.budget)?;
        Ok(value)
    }

    /// Reads the U29 header shared by every complex type: low bit 0 is a reference into the
    /// object table (resolved here), low bit 1 an inline value with 28 bits of payload.
    fn header(&mut self, input: &mut &[u8], level: usize) -> Result<Header, AmfError> {
        let h = read_u29(input)?;
        if h & 1 == 0 {
            Ok(Header::Reference(self.objects.get(
                h >> 1,
                level,
                &mut self.budget,
            )?))
        } else {
            Ok(Header::Inline(h >> 1))
        }
    }

    /// Reads a string (a value, a member name, a class name): a reference into the string
    /// table or an inline string, which joins the table unless it is empty.
    fn read_string(&mut self, input: &mut &[u8]) -> Result<String, AmfError> {
        let h = read_u29(input)?;
        if h & 1 == 0 {
            let index = h >> 1;
            let s = self
                .strings
                .get(index as usize)
                .ok_or(AmfError::BadReference(index))?;
            self.budget.charge(s.len())?;
            return Ok(s.clone());
        }
        let s = read_utf8(input, u64::from(h >> 1))?;
        if !s.is_empty() {
            self.strings.push(s.clone());
        }
        Ok(s)
    }

    /// Reads an array's body: named members up to the empty name, then `count` dense items.
    fn read_array(
        &mut self,
        input: &mut &[u8],
        level: usize,
        count: u32,
    ) -> Result<Value, AmfError> {
        let child = enter(level)?;
        let slot = self.objects.reserve();
        let mut associative = Vec::new();
        loop {
            let key = self.read_string(input)?;
            if key.is_empty() {
                break;
            }
            let value = self.decode_at(input, child)?;
            associative.push((key, value));
        }
        let mut dense = Vec::with_capacity(check_count(input, count.into(), 1)?);
        for _ in 0..count {
            dense.push(self.decode_at(input, child)?);
        }
        let value = match (associative.is_empty(), dense.is_empty()) {
            (true, _) => Value::StrictArray(dense),
            (false, true) => Value::EcmaArray(associative),
            (false, false) => Value::MixedArray { associative, dense },
        };
        self.finish(slot, value)
    }

    /// Reads an object's traits (inline or by reference) and its members. `bits` is the U29O
    /// header without its low (inline object) bit.
    fn read_object(
        &mut self,
        input: &mut &[u8],
        level: usize,
        bits: u32,
    ) -> Result<Value, AmfError> {
        let child = enter(level)?;
        let slot = self.objects.reserve();
        let traits = if bits & 1 == 0 {
            let index = bits >> 1;
            let t = self
                .traits
                .get(index as usize)
                .ok_or(AmfError::BadReference(index))?;
            // The names are copied into every object that uses these traits.
            let cost = t.class_name.len() + t.sealed.iter().map(String::len).sum::<usize>();
            self.budget.charge(cost)?;
            t.clone()
        } else if bits & 2 != 0 {
            let class_name = self.read_string(input)?;
            return Err(AmfError::Externalizable(class_name));
        } else {
            let dynamic = bits & 4 != 0;
            let count = bits >> 3;
            let class_name = self.read_string(input)?;
            let mut sealed = Vec::with_capacity(check_count(input, count.into(), 1)?);
            for _ in 0..count {
                sealed.push(self.read_string(input)?);
            }
            let t = Traits {
                class_name,
                dynamic,
                sealed,
            };
            self.traits.push(t.clone());
            t
        };
        let mut properties = Vec::with_capacity(check_count(input, traits.sealed.len() as u64, 1)?);
        for name in traits.sealed {
            let value = self.decode_at(input, child)?;
            properties.push((name, value));
        }
        if traits.dynamic {
            loop {
                let key = self.read_string(input)?;
                if key.is_empty() {
                    break;
                }
                let value = self.decode_at(input, child)?;
                properties.push((key, value));
            }
        }
        let class_name = Some(traits.class_name).filter(|c| !c.is_empty());
        self.finish(
            slot,
            Value::Object {
                class_name,
                properties,
            },
        )
    }

    /// Reads a vector's fixed flag and `count` items of the type `marker` names.
    fn read_vector(
        &mut self,
        input: &mut &[u8],
        level: usize,
        marker: u8,
        count: u32,
    ) -> Result<Value, AmfError> {
        let count64 = u64::from(count);
        if marker == VECTOR_OBJECT {
            let child = enter(level)?;
            let slot = self.objects.reserve();
            let fixed = read_u8(input)? != 0;
            let type_name = self.read_string(input)?;
            let mut items = Vec::with_capacity(check_count(input, count64, 1)?);
            for _ in 0..count {
                items.push(self.decode_at(input, child)?);
            }
            return self.finish(slot, Value::VectorObject(type_name, items, fixed));
        }
        let slot = self.objects.reserve();
        let fixed = read_u8(input)? != 0;
        let width = if marker == VECTOR_DOUBLE { 8 } else { 4 };
        check_count(input, count64, width)?;
        // The whole body is present (checked above), so reading it cannot fail half-way.
        let body = take_declared(input, count64 * width)?;
        let value = match marker {
            VECTOR_INT => Value::VectorInt(
                body.chunks_exact(4)
                    .map(|c| i32::from_be_bytes([c[0], c[1], c[2], c[3]]))
                    .collect(),
                fixed,
            ),
            VECTOR_UINT => Value::VectorUint(
                body.chunks_exact(4)
                    .map(|c| u32::from_be_bytes([c[0], c[1], c[2], c[3]]))
                    .collect(),
                fixed,
            ),
            _ => Value::VectorDouble(
                body.chunks_exact(8)
                    .map(|mut c| read_f64(&mut c).unwrap_or_default())
                    .collect(),
                fixed,
            ),
        };
        self.finish(slot, value)
    }
}

/// Decodes every value in `bytes` with one [`Amf3Decoder`] (so references may span values).
///
/// ```
/// use siprtmp_core::amf::{amf3, Value};
/// let values = amf3::decode_all(&[0x04, 0x81, 0x00, 0x01])?;
/// assert_eq!(values, vec![Value::Integer(128), Value::Null]);
/// # Ok::<(), siprtmp_core::amf::AmfError>(())
/// ```
pub fn decode_all(bytes: &[u8]) -> Result<Vec<Value>, AmfError> {
    let mut input = bytes;
    let mut decoder = Amf3Decoder::new();
    let mut values = Vec::new();
    while !input.is_empty() {
        values.push(decoder.decode(&mut input)?);
    }
    Ok(values)
}

/// Encodes `values` one after another with one [`Amf3Encoder`] (so later values reference
/// strings and traits of earlier ones).
///
/// ```
/// use siprtmp_core::amf::{amf3, Value};
/// let bytes = amf3::encode_all(&[Value::string("a"), Value::string("a")]);
/// assert_eq!(bytes, [0x06, 0x03, b'a', 0x06, 0x00]); // the second "a" is string reference 0
/// assert_eq!(amf3::decode_all(&bytes)?, vec![Value::string("a"), Value::string("a")]);
/// # Ok::<(), siprtmp_core::amf::AmfError>(())
/// ```
pub fn encode_all(values: &[Value]) -> Vec<u8> {
    let mut out = Vec::new();
    let mut encoder = Amf3Encoder::new();
    for v in values {
        encoder.encode(v, &mut out);
    }
    out
}

/// An AMF3 encoder: writes [`Value`]s, referring back to strings and object traits it has
/// already written (in this or an earlier call) instead of repeating them.
///
/// Encoding never fails. [`Value`] has no object identity, so objects are always written
/// inline (never as object references). Closest equivalents are written where AMF3 lacks
/// an exact one:
/// - `Unsupported` as undefined; `Integer` outside the 29-bit range as a double.
/// - An anonymous `Object` is a dynamic object with no sealed members, unless one of its
///   property names is empty (the empty name ends dynamic members), in which case it is an
///   anonymous object with every property sealed. A typed `Object` has all its properties as
///   sealed members. `Object { class_name: Some("") }` is written (and read back) as anonymous.
/// - `EcmaArray` / `MixedArray` entries with an empty name are skipped (the empty name ends
///   the associative part). An `EcmaArray` or `MixedArray` with an empty associative part
///   reads back as `StrictArray`, a `MixedArray` with an empty dense part as `EcmaArray`.
/// - `Date`'s time zone is dropped (AMF3 dates are UTC).
/// - Strings beyond 2^28 - 1 bytes and collections beyond 2^28 - 1 items (which no U29
///   length can describe) are cut to that size.
///
/// ```
/// use siprtmp_core::amf::{amf3::{Amf3Decoder, Amf3Encoder}, Value};
/// let point = Value::Object {
///     class_name: Some("Point".into()),
///     properties: vec![("x".into(), Value::Integer(1)), ("y".into(), Value::Integer(2))],
/// };
/// let mut out = Vec::new();
/// let mut encoder = Amf3Encoder::new();
/// encoder.encode(&point, &mut out);
/// let first = out.len();
/// encoder.encode(&point, &mut out); // traits reference 0, no names repeated
/// assert_eq!(out.len() - first, 6);
///
/// let mut input = &out[..];
/// let mut decoder = Amf3Decoder::new();
/// assert_eq!(decoder.decode(&mut input)?, point);
/// assert_eq!(decoder.decode(&mut input)?, point);
/// # Ok::<(), siprtmp_core::amf::AmfError>(())
/// ```
#[derive(Debug, Clone)]
pub struct Amf3Encoder {
    /// Index of each non-empty string written inline so far.
    strings: HashMap<String, u32>,
    /// Index of each set of traits (class name, dynamic flag, sealed names) written so far.
    traits: HashMap<(String, bool, Vec<String>), u32>,
    /// False for a reference-free encoding (see [`Amf3Encoder::without_references`]).
    references: bool,
}

impl Default for Amf3Encoder {
    fn default() -> Self {
        Self {
            strings: HashMap::new(),
            traits: HashMap::new(),
            references: true,
        }
    }
}

impl Amf3Encoder {
    /// An encoder with empty reference tables (the start of a message).
    pub fn new() -> Self {
        Self::default()
    }

    /// An encoder that never writes string or traits references. Its output decodes the same
    /// whatever the reader's tables already hold, which is what AMF0's AVM+ switch needs: a
    /// stateless AMF0 encoder cannot know which AMF3 strings an earlier switch in the same
    /// message left in the reader's tables.
    pub(crate) fn without_references() -> Self {
        Self {
            references: false,
            ..Self::default()
        }
    }

    /// Appends the AMF3 encoding of `value` to `out`.
    pub fn encode(&mut self, value: &Value, out: &mut Vec<u8>) {
        match value {
            Value::Undefined | Value::Unsupported => out.push(UNDEFINED),
            Value::Null => out.push(NULL),
            Value::Boolean(false) => out.push(FALSE),
            Value::Boolean(true) => out.push(TRUE),
            Value::Integer(i) if (INT_MIN..=INT_MAX).contains(i) => {
                out.push(INTEGER);
                write_u29(*i as u32 & U29_MAX, out);
            }
            Value::Integer(i) => {
                out.push(DOUBLE);
                out.extend_from_slice(&f64::from(*i).to_be_bytes());
            }
            Value::Number(n) => {
                out.push(DOUBLE);
                out.extend_from_slice(&n.to_be_bytes());
            }
            Value::String(s) => {
                out.push(STRING);
                self.write_string(s, out);
            }
            Value::XmlDocument(s) => write_text(XML_DOC, s, out),
            Value::Xml(s) => write_text(XML, s, out),
            Value::Date { millis, .. } => {
                out.extend_from_slice(&[DATE, 0x01]);
                out.extend_from_slice(&millis.to_be_bytes());
            }
            Value::StrictArray(items) => self.write_array(&[], items, out),
            Value::EcmaArray(pairs) => self.write_array(pairs, &[], out),
            Value::MixedArray { associative, dense } => self.write_array(associative, dense, out),
            Value::Object {
                class_name,
                properties,
            } => self.write_object(class_name.as_deref().unwrap_or(""), properties, out),
            Value::ByteArray(bytes) => {
                let bytes = fit(bytes);
                out.push(BYTE_ARRAY);
                write_inline_len(bytes.len(), out);
                out.extend_from_slice(bytes);
            }
            Value::VectorInt(items, fixed) => {
                let items = fit(items);
                write_vector_header(VECTOR_INT, items.len(), *fixed, out);
                items
                    .iter()
                    .for_each(|i| out.extend_from_slice(&i.to_be_bytes()));
            }
            Value::VectorUint(items, fixed) => {
                let items = fit(items);
                write_vector_header(VECTOR_UINT, items.len(), *fixed, out);
                items
                    .iter()
                    .for_each(|u| out.extend_from_slice(&u.to_be_bytes()));
            }
            Value::VectorDouble(items, fixed) => {
                let items = fit(items);
                write_vector_header(VECTOR_DOUBLE, items.len(), *fixed, out);
                items
                    .iter()
                    .for_each(|d| out.extend_from_slice(&d.to_be_bytes()));
            }
            Value::VectorObject(type_name, items, fixed) => {
                let items = fit(items);
                write_vector_header(VECTOR_OBJECT, items.len(), *fixed, out);
                self.write_string(type_name, out);
                for item in items {
                    self.encode(item, out);
                }
            }
            Value::Dictionary(pairs, weak) => {
                let pairs = fit(pairs);
                out.push(DICTIONARY);
                write_inline_len(pairs.len(), out);
                out.push(u8::from(*weak));
                for (key, value) in pairs {
                    self.encode(key, out);
                    self.encode(value, out);
                }
            }
        }
    }

    /// Writes a string as a reference if it was written before, else inline (and remembers
    /// it, mirroring the decoder's table, which never holds the empty string).
    fn write_string(&mut self, s: &str, out: &mut Vec<u8>) {
        let s = fit_str(s);
        if self.references && !s.is_empty() {
            if let Some(&index) = self.strings.get(s) {
                write_u29(index << 1, out);
                return;
            }
            let next = self.strings.len() as u32;
            // Past 2^28 entries an index no longer fits a reference; just stop remembering.
            if (next as usize) < MAX_LEN {
                self.strings.insert(s.to_owned(), next);
            }
        }
        write_inline_len(s.len(), out);
        out.extend_from_slice(s.as_bytes());
    }

    /// Writes an array: named part (empty names skipped), the empty-name terminator, then the
    /// dense part.
    fn write_array(&mut self, associative: &[(String, Value)], dense: &[Value], out: &mut Vec<u8>) {
        let dense = fit(dense);
        out.push(ARRAY);
        write_inline_len(dense.len(), out);
        for (key, value) in associative.iter().filter(|(k, _)| !k.is_empty()) {
            self.write_string(key, out);
            self.encode(value, out);
        }
        out.push(0x01); // the empty string ends the associative part
        for item in dense {
            self.encode(item, out);
        }
    }

    /// Writes an object: typed objects (and anonymous ones with an empty property name) seal
    /// every property; other anonymous objects are dynamic with no sealed members.
    fn write_object(
        &mut self,
        class_name: &str,
        properties: &[(String, Value)],
        out: &mut Vec<u8>,
    ) {
        let dynamic = class_name.is_empty() && properties.iter().all(|(k, _)| !k.is_empty());
        let limit = if dynamic { MAX_LEN } else { MAX_SEALED };
        let properties = &properties[..properties.len().min(limit)];
        let sealed: Vec<&str> = if dynamic {
            Vec::new()
        } else {
            properties.iter().map(|(k, _)| fit_str(k)).collect()
        };
        out.push(OBJECT);
        let key = (
            class_name.to_owned(),
            dynamic,
            sealed.iter().map(|s| (*s).to_owned()).collect::<Vec<_>>(),
        );
        match self.traits.get(&key) {
            Some(&index) if self.references => write_u29((index << 2) | 0b01, out),
            _ => {
                // Inline traits: the flags are 0b011 (object, inline traits), plus 0b1000 when
                // dynamic; the sealed-member count sits above them.
                let flags = if dynamic { 0b1011 } else { 0b0011 };
                write_u29(((sealed.len() as u32) << 4) | flags, out);
                self.write_string(class_name, out);
                for name in &sealed {
                    self.write_string(name, out);
                }
                let next = self.traits.len() as u32;
                if self.references && (next as usize) < MAX_TRAITS {
                    self.traits.insert(key, next);
                }
            }
        }
        for (name, value) in properties {
            if dynamic {
                self.write_string(name, out);
            }
            self.encode(value, out);
        }
        if dynamic {
            out.push(0x01); // the empty string ends the dynamic members
        }
    }
}

/// Writes XML or an XMLDocument: inline text, outside the string table.
fn write_text(marker: u8, s: &str, out: &mut Vec<u8>) {
    let s = fit_str(s);
    out.push(marker);
    write_inline_len(s.len(), out);
    out.extend_from_slice(s.as_bytes());
}

/// Writes a vector's marker, inline count and fixed flag.
fn write_vector_header(marker: u8, len: usize, fixed: bool, out: &mut Vec<u8>) {
    out.push(marker);
    write_inline_len(len, out);
    out.push(u8::from(fixed));
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decode_one(bytes: &[u8]) -> Result<Value, AmfError> {
        let mut input = bytes;
        let v = Amf3Decoder::new().decode(&mut input)?;
        assert!(input.is_empty(), "trailing bytes: {input:?}");
        Ok(v)
    }

    fn enc(v: &Value) -> Vec<u8> {
        encode_all(std::slice::from_ref(v))
    }

    fn obj(class: Option<&str>, props: &[(&str, Value)]) -> Value {
        Value::Object {
            class_name: class.map(str::to_owned),
            properties: props
                .iter()
                .map(|(k, v)| ((*k).to_owned(), v.clone()))
                .collect(),
        }
    }

    /// The U29 boundaries of the AMF3 specification (section 1.3.1) with their exact bytes.
    #[test]
    fn u29_integer_boundaries() {
        let cases: &[(i32, &[u8])] = &[
            (0, &[0x00]),
            (127, &[0x7F]),
            (128, &[0x81, 0x00]),
            (16383, &[0xFF, 0x7F]),
            (16384, &[0x81, 0x80, 0x00]),
            ((1 << 21) - 1, &[0xFF, 0xFF, 0x7F]),
            (1 << 21, &[0x80, 0xC0, 0x80, 0x00]),
            ((1 << 28) - 1, &[0xBF, 0xFF, 0xFF, 0xFF]),
            (-1, &[0xFF, 0xFF, 0xFF, 0xFF]),
            (-(1 << 28), &[0xC0, 0x80, 0x80, 0x00]),
        ];
        for &(n, bytes) in cases {
            let mut expected = vec![INTEGER];
            expected.extend_from_slice(bytes);
            assert_eq!(enc(&Value::Integer(n)), expected, "encoding {n}");
            assert_eq!(decode_one(&expected), Ok(Value::Integer(n)), "decoding {n}");
        }
    }

    #[test]
    fn integers_outside_29_bits_become_doubles() {
        for n in [1 << 28, -(1 << 28) - 1, i32::MAX, i32::MIN] {
            let mut expected = vec![DOUBLE];
            expected.extend_from_slice(&f64::from(n).to_be_bytes());
            assert_eq!(enc(&Value::Integer(n)), expected);
            assert_eq!(decode_one(&expected), Ok(Value::Number(f64::from(n))));
        }
    }

    #[test]
    fn scalars() {
        assert_eq!(
            decode_all(&[0x00, 0x01, 0x02, 0x03]).unwrap(),
            [
                Value::Undefined,
                Value::Null,
                Value::Boolean(false),
                Value::Boolean(true)
            ]
        );
        let bytes = [0x05, 0x40, 0x09, 0x21, 0xFB, 0x54, 0x44, 0x2D, 0x18];
        assert_eq!(decode_one(&bytes), Ok(Value::Number(std::f64::consts::PI)));
        assert_eq!(enc(&Value::Number(std::f64::consts::PI)), bytes);
        // A whole number stays a double: Number and Integer are distinct values.
        assert_eq!(enc(&Value::Number(1.0))[0], DOUBLE);
        assert_eq!(enc(&Value::Unsupported), [UNDEFINED]);
    }

    #[test]
    fn string_references() {
        // ["abc", ref 0, "", ""]: the empty string is always inline and never enters the table.
        let bytes = [
            0x09, 0x09, 0x01, 0x06, 0x07, b'a', b'b', b'c', 0x06, 0x00, 0x06, 0x01, 0x06, 0x01,
        ];
        let v = Value::StrictArray(vec![
            Value::string("abc"),
            Value::string("abc"),
            Value::string(""),
            Value::string(""),
        ]);
        assert_eq!(decode_one(&bytes), Ok(v.clone()));
        assert_eq!(enc(&v), bytes);
        // Reference 1 when only one string has been seen.
        assert_eq!(
            decode_one(&[0x09, 0x05, 0x01, 0x06, 0x03, b'x', 0x06, 0x02]),
            Err(AmfError::BadReference(1))
        );
    }

    #[test]
    fn member_names_share_the_string_table() {
        // {a: "a"}: the value "a" is string reference 0 (the member name came first).
        let v = obj(None, &[("a", Value::string("a"))]);
        let bytes = [0x0A, 0x0B, 0x01, 0x03, b'a', 0x06, 0x00, 0x01];
        assert_eq!(enc(&v), bytes);
        assert_eq!(decode_one(&bytes), Ok(v));
    }

    #[test]
    fn typed_objects_and_trait_references() {
        // [Foo{x: 1}, Foo{x: 2}]: sealed traits with one member, then traits reference 0.
        let bytes = [
            0x09, 0x05, 0x01, // dense array of 2, no associative part
            0x0A, 0x13, 0x07, b'F', b'o', b'o', 0x03, b'x', 0x04, 0x01, // Foo{x: 1}
            0x0A, 0x01, 0x04, 0x02, // traits ref 0, x: 2
        ];
        let v = Value::StrictArray(vec![
            obj(Some("Foo"), &[("x", Value::Integer(1))]),
            obj(Some("Foo"), &[("x", Value::Integer(2))]),
        ]);
        assert_eq!(decode_one(&bytes), Ok(v.clone()));
        assert_eq!(enc(&v), bytes);
        // A different member list is a different set of traits: written inline (its names are
        // string references), and it becomes traits 1.
        let other = Value::StrictArray(vec![
            obj(Some("Foo"), &[("x", Value::Integer(1))]),
            obj(Some("Foo"), &[("y", Value::Null), ("x", Value::Null)]),
            obj(Some("Foo"), &[("y", Value::Null), ("x", Value::Null)]),
        ]);
        let bytes = enc(&other);
        assert_eq!(
            &bytes[13..],
            [0x0A, 0x23, 0x00, 0x03, b'y', 0x02, 0x01, 0x01, 0x0A, 0x05, 0x01, 0x01]
        );
        assert_eq!(decode_one(&bytes), Ok(other));
        assert_eq!(
            decode_one(&[0x0A, 0x05, 0x01]),
            Err(AmfError::BadReference(1))
        );
    }

    #[test]
    fn dynamic_object_with_sealed_and_dynamic_members() {
        // Traits: dynamic, one sealed member "s", class "C"; then s=true; dynamic d=false.
        let bytes = [
            0x0A, 0x1B, 0x03, b'C', 0x03, b's', 0x03, 0x03, b'd', 0x02, 0x01,
        ];
        let v = obj(
            Some("C"),
            &[("s", Value::Boolean(true)), ("d", Value::Boolean(false))],
        );
        assert_eq!(decode_one(&bytes), Ok(v));
    }

    #[test]
    fn anonymous_object_with_an_empty_name_is_sealed() {
        let v = obj(None, &[("", Value::Null), ("a", Value::Null)]);
        let bytes = enc(&v);
        assert_eq!(bytes, [0x0A, 0x23, 0x01, 0x01, 0x03, b'a', 0x01, 0x01]);
        assert_eq!(decode_one(&bytes), Ok(v));
    }

    #[test]
    fn object_references_and_cycles() {
        // [{a: null}, ref 1]: index 0 is the array itself, which began first.
        let bytes = [
            0x09, 0x05, 0x01, 0x0A, 0x0B, 0x01, 0x03, b'a', 0x01, 0x01, 0x0A, 0x02,
        ];
        let inner = obj(None, &[("a", Value::Null)]);
        assert_eq!(
            decode_one(&bytes),
            Ok(Value::StrictArray(vec![inner.clone(), inner]))
        );
        // [ref 0]: the array refers to itself, which a tree cannot hold.
        assert_eq!(
            decode_one(&[0x09, 0x03, 0x01, 0x09, 0x00]),
            Err(AmfError::BadReference(0))
        );
        // Dates, byte arrays and XML share the object table.
        let bytes = [
            0x09, 0x0B, 0x01, // 5 dense items
            0x08, 0x01, 0, 0, 0, 0, 0, 0, 0, 0, // date 0 (object 1)
            0x0C, 0x03, 0xAB, // byte array [0xAB] (object 2)
            0x0B, 0x03, b'x', // XML "x" (object 3)
            0x0C, 0x04, // reference 2
            0x08, 0x02, // reference 1
        ];
        let date = Value::Date {
            millis: 0.0,
            timezone: 0,
        };
        assert_eq!(
            decode_one(&bytes),
            Ok(Value::StrictArray(vec![
                date.clone(),
                Value::ByteArray(vec![0xAB]),
                Value::Xml("x".into()),
                Value::ByteArray(vec![0xAB]),
                date,
            ]))
        );
    }

    #[test]
    fn array_shapes() {
        assert_eq!(
            decode_one(&[0x09, 0x01, 0x01]),
            Ok(Value::StrictArray(vec![]))
        );
        assert_eq!(enc(&Value::StrictArray(vec![])), [0x09, 0x01, 0x01]);
        let ecma = Value::EcmaArray(vec![("k".into(), Value::Integer(5))]);
        let bytes = [0x09, 0x01, 0x03, b'k', 0x04, 0x05, 0x01];
        assert_eq!(enc(&ecma), bytes);
        assert_eq!(decode_one(&bytes), Ok(ecma));
        let mixed = Value::MixedArray {
            associative: vec![("k".into(), Value::Null)],
            dense: vec![Value::Boolean(true)],
        };
        let bytes = [0x09, 0x03, 0x03, b'k', 0x01, 0x01, 0x03];
        assert_eq!(enc(&mixed), bytes);
        assert_eq!(decode_one(&bytes), Ok(mixed));
        // Empty names cannot be written in the associative part: they are skipped.
        let skipped = Value::EcmaArray(vec![("".into(), Value::Null), ("k".into(), Value::Null)]);
        assert_eq!(
            decode_one(&enc(&skipped)),
            Ok(Value::EcmaArray(vec![("k".into(), Value::Null)]))
        );
    }

    #[test]
    fn date_xml_bytearray() {
        let date = Value::Date {
            millis: 1_700_000_000_000.0,
            timezone: 0,
        };
        let mut bytes = vec![0x08, 0x01];
        bytes.extend_from_slice(&1_700_000_000_000f64.to_be_bytes());
        assert_eq!(enc(&date), bytes);
        assert_eq!(decode_one(&bytes), Ok(date));
        // The time zone is not part of AMF3.
        let zoned = Value::Date {
            millis: 1.0,
            timezone: 60,
        };
        assert_eq!(
            decode_one(&enc(&zoned)),
            Ok(Value::Date {
                millis: 1.0,
                timezone: 0
            })
        );
        let doc = Value::XmlDocument("<a/>".into());
        assert_eq!(enc(&doc), [0x07, 0x09, b'<', b'a', b'/', b'>']);
        assert_eq!(decode_one(&enc(&doc)), Ok(doc));
        let ba = Value::ByteArray(vec![1, 2, 3]);
        assert_eq!(enc(&ba), [0x0C, 0x07, 1, 2, 3]);
        assert_eq!(decode_one(&enc(&ba)), Ok(ba));
    }

    #[test]
    fn vectors_and_dictionary() {
        let bytes = [0x0D, 0x05, 0x00, 0, 0, 0, 1, 0xFF, 0xFF, 0xFF, 0xFF];
        let v = Value::VectorInt(vec![1, -1], false);
        assert_eq!(decode_one(&bytes), Ok(v.clone()));
        assert_eq!(enc(&v), bytes);
        let v = Value::VectorUint(vec![0xFFFF_FFFF], true);
        assert_eq!(enc(&v), [0x0E, 0x03, 0x01, 0xFF, 0xFF, 0xFF, 0xFF]);
        assert_eq!(decode_one(&enc(&v)), Ok(v));
        let v = Value::VectorDouble(vec![0.5], false);
        assert_eq!(enc(&v), [0x0F, 0x03, 0x00, 0x3F, 0xE0, 0, 0, 0, 0, 0, 0]);
        assert_eq!(decode_one(&enc(&v)), Ok(v));
        let v = Value::VectorObject("*".into(), vec![Value::Null, Value::string("*")], false);
        // The second "*" is a reference to the type name.
        assert_eq!(enc(&v), [0x10, 0x05, 0x00, 0x03, b'*', 0x01, 0x06, 0x00]);
        assert_eq!(decode_one(&enc(&v)), Ok(v));
        let v = Value::Dictionary(
            vec![
                (Value::Integer(1), Value::string("one")),
                (Value::Null, Value::Null),
            ],
            true,
        );
        assert_eq!(
            enc(&v),
            [0x11, 0x05, 0x01, 0x04, 0x01, 0x06, 0x07, b'o', b'n', b'e', 0x01, 0x01]
        );
        assert_eq!(decode_one(&enc(&v)), Ok(v));
    }

    #[test]
    fn externalizable_is_an_error() {
        // Inline traits with the externalizable bit (0b0111), class "Foo".
        assert_eq!(
            decode_one(&[0x0A, 0x07, 0x07, b'F', b'o', b'o', 0x00]),
            Err(AmfError::Externalizable("Foo".into()))
        );
    }

    #[test]
    fn hostile_lengths_and_encodings() {
        // String of 2^28 - 1 bytes declared, 1 present.
        assert_eq!(
            decode_one(&[0x06, 0xFF, 0xFF, 0xFF, 0xFF, b'a']),
            Err(AmfError::LengthTooLarge((1 << 28) - 1))
        );
        // Array of 2^27 items declared, none present.
        assert_eq!(
            decode_one(&[0x09, 0xC0, 0x80, 0x80, 0x01, 0x01]),
            Err(AmfError::LengthTooLarge(1 << 27))
        );
        // Vector.<Number> of 2 declared, 8 bytes present.
        assert_eq!(
            decode_one(&[0x0F, 0x05, 0x00, 0, 0, 0, 0, 0, 0, 0, 0]),
            Err(AmfError::LengthTooLarge(2))
        );
        // Dictionary of 3 pairs declared, 4 bytes present.
        assert_eq!(
            decode_one(&[0x11, 0x07, 0x00, 1, 1, 1, 1]),
            Err(AmfError::LengthTooLarge(3))
        );
        assert_eq!(
            decode_one(&[0x06, 0x05, 0xC3, 0x28]),
            Err(AmfError::InvalidUtf8)
        );
        assert_eq!(decode_one(&[0x12]), Err(AmfError::UnknownMarker(0x12)));
        assert_eq!(decode_one(&[0x04, 0x80]), Err(AmfError::UnexpectedEof));
    }

    #[test]
    fn nesting_is_capped() {
        // 64 nested one-item arrays around null decode; 65 do not.
        let nested = |n: usize| {
            let mut b = [0x09, 0x03, 0x01].repeat(n);
            b.push(0x01);
            b
        };
        assert!(decode_one(&nested(64)).is_ok());
        assert_eq!(decode_one(&nested(65)), Err(AmfError::TooDeep));
    }

    #[test]
    fn references_cannot_deepen_past_the_cap() {
        // An outer array whose item 0 is 63 nested arrays (objects 1..=63), then an item that
        // wraps a reference to object 1: the copy would sit one level deeper than the cap.
        let mut b = vec![0x09, 0x05, 0x01]; // 2 dense items
        b.extend([0x09, 0x03, 0x01].repeat(63));
        b.push(0x01);
        // Object 64: [ref 1] is 1 (outer) + 1 + 63 = 65 levels.
        b.extend([0x09, 0x03, 0x01, 0x09, 0x02]);
        assert_eq!(decode_one(&b), Err(AmfError::TooDeep));
    }

    #[test]
    fn reference_expansion_is_capped() {
        // A 60000-byte string, then 1000 references to it: 60 MB from 62 kB.
        let mut b = vec![0x09];
        write_u29((1001 << 1) | 1, &mut b);
        b.push(0x01);
        b.push(STRING);
        write_u29((60_000 << 1) | 1, &mut b);
        b.extend(vec![b'x'; 60_000]);
        for _ in 0..1000 {
            b.extend([STRING, 0x00]);
        }
        assert_eq!(decode_one(&b), Err(AmfError::ExpansionTooLarge));

        // Arrays that each hold two references to the previous one: doubling per 7 bytes.
        let mut b = vec![0x09];
        write_u29((40 << 1) | 1, &mut b);
        b.extend([0x01, 0x09, 0x05, 0x01, 0x01, 0x01, 0x01]); // object 1: [null, null]
        for k in 1..40u32 {
            b.extend([0x09, 0x05, 0x01]);
            for _ in 0..2 {
                b.push(ARRAY);
                write_u29(k << 1, &mut b);
            }
        }
        assert_eq!(decode_one(&b), Err(AmfError::ExpansionTooLarge));
    }

    #[test]
    fn tables_persist_across_calls() {
        let bytes = encode_all(&[
            obj(Some("P"), &[("n", Value::string("a"))]),
            obj(Some("P"), &[("n", Value::string("a"))]),
        ]);
        // Second value: object, traits ref 0, string ref 2 ("a" after "P" and "n").
        assert_eq!(&bytes[bytes.len() - 4..], [0x0A, 0x01, 0x06, 0x04]);
        let mut input = &bytes[..];
        let mut d = Amf3Decoder::new();
        d.decode(&mut input).unwrap();
        assert_eq!(input, [0x0A, 0x01, 0x06, 0x04]);
        assert_eq!(
            d.decode(&mut input),
            Ok(obj(Some("P"), &[("n", Value::string("a"))]))
        );
        // A fresh decoder cannot resolve those references.
        assert_eq!(
            Amf3Decoder::new().decode(&mut &bytes[bytes.len() - 4..]),
            Err(AmfError::BadReference(0))
        );
    }

    #[test]
    fn reference_free_encoder() {
        let mut out = Vec::new();
        let mut e = Amf3Encoder::without_references();
        let v = Value::StrictArray(vec![
            obj(Some("P"), &[("n", Value::string("n"))]),
            obj(Some("P"), &[("n", Value::string("n"))]),
        ]);
        e.encode(&v, &mut out);
        assert_eq!(
            out,
            [
                0x09, 0x05, 0x01, //
                0x0A, 0x13, 0x03, b'P', 0x03, b'n', 0x06, 0x03, b'n', //
                0x0A, 0x13, 0x03, b'P', 0x03, b'n', 0x06, 0x03, b'n',
            ]
        );
        assert_eq!(decode_one(&out), Ok(v));
    }
}
