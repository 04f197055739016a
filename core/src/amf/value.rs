//! [`Value`]: one in-memory model for every AMF0 and AMF3 value.

/// An AMF value. AMF0 and AMF3 both decode into and encode from this type; variants that exist
/// in only one format are written in the other as their closest equivalent (documented on each
/// encoder).
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    /// AMF0 number, AMF3 double.
    Number(f64),
    /// AMF3 integer (29-bit signed). AMF0 writes it as a number.
    Integer(i32),
    /// Boolean (AMF3 true/false markers).
    Boolean(bool),
    /// UTF-8 string; AMF0 chooses string or long string by length.
    String(String),
    /// null.
    Null,
    /// undefined.
    Undefined,
    /// An anonymous (`class_name: None`) or typed object with its properties in order.
    /// AMF3 dynamic objects keep sealed members first, then dynamic ones.
    Object {
        /// The class alias of a typed object, or `None` for an anonymous one.
        class_name: Option<String>,
        /// The members, in wire order.
        properties: Vec<(String, Value)>,
    },
    /// AMF0 ECMA (associative) array; AMF3 array with only associative members.
    EcmaArray(Vec<(String, Value)>),
    /// AMF0 strict array; AMF3 array with only dense members.
    StrictArray(Vec<Value>),
    /// AMF3 array with both an associative and a dense part.
    MixedArray {
        /// The associative (named) part, in wire order.
        associative: Vec<(String, Value)>,
        /// The dense (indexed) part.
        dense: Vec<Value>,
    },
    /// Date: milliseconds since the Unix epoch (UTC); AMF0 also carries a time zone, kept here.
    Date {
        /// Milliseconds since 1970-01-01T00:00:00Z.
        millis: f64,
        /// AMF0's time-zone field (minutes), 0 when absent (AMF3).
        timezone: i16,
    },
    /// AMF0 XML document, AMF3 legacy XMLDocument.
    XmlDocument(String),
    /// AMF3 E4X XML.
    Xml(String),
    /// AMF3 ByteArray.
    ByteArray(Vec<u8>),
    /// AMF3 `Vector.<int>`, with its fixed flag.
    VectorInt(Vec<i32>, bool),
    /// AMF3 `Vector.<uint>`, with its fixed flag.
    VectorUint(Vec<u32>, bool),
    /// AMF3 `Vector.<Number>`, with its fixed flag.
    VectorDouble(Vec<f64>, bool),
    /// AMF3 `Vector.<Object>`: type name, fixed flag, items.
    VectorObject(String, Vec<Value>, bool),
    /// AMF3 Dictionary: weak-keys flag and key/value pairs.
    Dictionary(Vec<(Value, Value)>, bool),
    /// AMF0 unsupported marker.
    Unsupported,
}

impl Value {
    /// A string value.
    pub fn string(s: impl Into<String>) -> Self {
        Value::String(s.into())
    }

    /// An anonymous object built from `(key, value)` pairs.
    ///
    /// ```
    /// use siprtmp_core::amf::Value;
    /// let v = Value::object([("level", Value::string("status")), ("code", Value::string("X"))]);
    /// assert_eq!(v.get("code").and_then(Value::as_str), Some("X"));
    /// ```
    pub fn object<K: Into<String>>(pairs: impl IntoIterator<Item = (K, Value)>) -> Self {
        Value::Object {
            class_name: None,
            properties: pairs.into_iter().map(|(k, v)| (k.into(), v)).collect(),
        }
    }

    /// The member `key` of an object or associative array, if this is one and has it.
    pub fn get(&self, key: &str) -> Option<&Value> {
        let props = match self {
            Value::Object { properties, .. } => properties,
            Value::EcmaArray(p) => p,
            Value::MixedArray { associative, .. } => associative,
            _ => return None,
        };
        props.iter().find(|(k, _)| k == key).map(|(_, v)| v)
    }

    /// The string, if this is a string (or XML).
    pub fn as_str(&self) -> Option<&str> {
        match self {
            Value::String(s) | Value::XmlDocument(s) | Value::Xml(s) => Some(s),
            _ => None,
        }
    }

    /// The number, if this is a number or integer.
    pub fn as_f64(&self) -> Option<f64> {
        match self {
            Value::Number(n) => Some(*n),
            Value::Integer(i) => Some(f64::from(*i)),
            _ => None,
        }
    }

    /// The boolean, if this is one.
    pub fn as_bool(&self) -> Option<bool> {
        match self {
            Value::Boolean(b) => Some(*b),
            _ => None,
        }
    }

    /// True for `null` and `undefined`.
    pub fn is_null(&self) -> bool {
        matches!(self, Value::Null | Value::Undefined)
    }
}
