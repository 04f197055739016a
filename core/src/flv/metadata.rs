//! `onMetaData` in recorded files: built from what a publisher sent with `@setDataFrame`, with
//! `duration` and `filesize` written as placeholders whose byte positions are known, so the
//! recorder can patch them in place (eight bytes each, no rewrite of the file) when the stream
//! ends.

use bytes::Bytes;

use crate::amf::amf0::{self, Amf0Decoder};
use crate::amf::Value;

/// An encoded `onMetaData` script-tag body and where its patchable numbers are.
#[derive(Debug, Clone, PartialEq)]
pub struct MetadataBody {
    /// `"onMetaData"` followed by an ECMA array.
    pub body: Bytes,
    /// Offset in `body` of the 8-byte big-endian double holding `duration` (seconds).
    pub duration_at: Option<usize>,
    /// Offset in `body` of the 8-byte big-endian double holding `filesize` (bytes).
    pub filesize_at: Option<usize>,
}

/// The properties of a publisher's metadata value (an object or ECMA array), or none.
pub fn properties_of(value: Option<&Value>) -> Vec<(String, Value)> {
    match value {
        Some(Value::Object { properties, .. }) | Some(Value::EcmaArray(properties)) => {
            properties.clone()
        }
        _ => Vec::new(),
    }
}

/// Builds `onMetaData` from `properties`, forcing `duration` and `filesize` to be numbers
/// (0 until patched) so that they can be patched in place.
///
/// ```
/// use siprtmp_core::amf::Value;
/// use siprtmp_core::flv::metadata::{build, patch_number};
/// let mut meta = build(&[("width".to_string(), Value::Number(320.0))]);
/// let mut body = meta.body.to_vec();
/// let at = meta.duration_at.unwrap();
/// body[at..at + 8].copy_from_slice(&patch_number(12.5));
/// let values = siprtmp_core::amf::amf0::decode_all(&body).unwrap();
/// assert_eq!(values[1].get("duration"), Some(&Value::Number(12.5)));
/// assert_eq!(values[1].get("width"), Some(&Value::Number(320.0)));
/// ```
pub fn build(properties: &[(String, Value)]) -> MetadataBody {
    let mut pairs: Vec<(String, Value)> = vec![
        ("duration".into(), Value::Number(0.0)),
        ("filesize".into(), Value::Number(0.0)),
    ];
    pairs.extend(
        properties
            .iter()
            .filter(|(k, _)| k != "duration" && k != "filesize")
            .cloned(),
    );
    let mut body = Vec::with_capacity(256);
    amf0::encode(&Value::string("onMetaData"), &mut body);
    amf0::encode(&Value::EcmaArray(pairs), &mut body);
    let located = locate(&body);
    MetadataBody {
        body: Bytes::from(body),
        ..located
    }
}

/// Finds `duration` and `filesize` numbers among the top-level properties of an
/// `onMetaData` body (from any writer); fields that are absent or not numbers are `None`.
/// Malformed bodies give `None`s, never a panic.
pub fn locate(body: &[u8]) -> MetadataBody {
    let mut found = MetadataBody {
        body: Bytes::copy_from_slice(body),
        duration_at: None,
        filesize_at: None,
    };
    let mut input = body;
    let mut decoder = Amf0Decoder::new();
    if decoder
        .decode(&mut input)
        .ok()
        .and_then(|v| v.as_str().map(str::to_owned))
        != Some("onMetaData".to_owned())
    {
        return found;
    }
    // An ECMA array (count then pairs) or an object (pairs).
    match input.first() {
        Some(0x08) if input.len() >= 5 => input = &input[5..],
        Some(0x03) => input = &input[1..],
        _ => return found,
    }
    loop {
        let Some(len) = input
            .get(..2)
            .map(|b| usize::from(u16::from_be_bytes([b[0], b[1]])))
        else {
            return found;
        };
        let Some(name) = input.get(2..2 + len) else {
            return found;
        };
        let name = name.to_vec();
        input = &input[2 + len..];
        if name.is_empty() {
            return found;
        }
        let value_at = body.len() - input.len();
        if input.first() == Some(&0x00) && input.len() >= 9 {
            match &name[..] {
                b"duration" => found.duration_at = Some(value_at + 1),
                b"filesize" => found.filesize_at = Some(value_at + 1),
                _ => {}
            }
        }
        if decoder.decode(&mut input).is_err() {
            return found;
        }
    }
}

/// The eight bytes of an AMF0 number's value (without the marker).
pub fn patch_number(value: f64) -> [u8; 8] {
    value.to_be_bytes()
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn locates_numbers_in_a_foreign_object_style_body() {
        // "onMetaData", then an object {width: 2, duration: 1.5}: the style some tools write.
        let body = amf0::encode_all(&[
            Value::string("onMetaData"),
            Value::object([
                ("width", Value::Number(2.0)),
                ("duration", Value::Number(1.5)),
            ]),
        ]);
        let found = locate(&body);
        let at = found.duration_at.unwrap();
        assert_eq!(&body[at..at + 8], &1.5f64.to_be_bytes());
        assert_eq!(found.filesize_at, None);
    }

    #[test]
    fn publisher_values_are_replaced_by_patchable_placeholders() {
        let meta = build(&[
            ("duration".to_string(), Value::string("oops")),
            ("filesize".to_string(), Value::Number(9.0)),
            ("encoder".to_string(), Value::string("Lavf")),
        ]);
        let values = amf0::decode_all(&meta.body).unwrap();
        assert_eq!(values[0], Value::string("onMetaData"));
        assert_eq!(values[1].get("duration"), Some(&Value::Number(0.0)));
        assert_eq!(values[1].get("filesize"), Some(&Value::Number(0.0)));
        assert_eq!(values[1].get("encoder"), Some(&Value::string("Lavf")));
        // "onMetaData" (13 bytes), array marker + count (5), "duration" key (10), marker (1).
        assert_eq!(meta.duration_at, Some(13 + 5 + 10 + 1));
        assert_eq!(meta.filesize_at, Some(29 + 8 + 10 + 1));
    }

    proptest! {
        #[test]
        fn arbitrary_bodies_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..256)) {
            let mut body = amf0::encode_all(&[Value::string("onMetaData")]);
            body.extend_from_slice(&bytes);
            let found = locate(&body);
            for at in [found.duration_at, found.filesize_at].into_iter().flatten() {
                prop_assert!(at + 8 <= body.len());
            }
            let _ = locate(&bytes);
        }
    }
}
