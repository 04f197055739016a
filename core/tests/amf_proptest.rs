//! Property tests for the AMF0 and AMF3 codecs: every value each format represents exactly
//! survives encode-then-decode, and no byte string makes a decoder panic.

use proptest::collection::vec;
use proptest::prelude::*;
use siprtmp_core::amf::{amf0, amf3, Value};

/// Finite doubles: NaN != NaN would fail equality for reasons that are not the codec's.
fn finite() -> impl Strategy<Value = f64> {
    any::<f64>().prop_filter("finite", |f| f.is_finite())
}

fn text() -> impl Strategy<Value = String> {
    // Short strings that repeat often (so references get exercised), plus arbitrary Unicode.
    prop_oneof![
        prop::sample::select(vec!["", "a", "app", "code", "level", "é€"]).prop_map(String::from),
        ".{0,12}",
    ]
}

fn name() -> impl Strategy<Value = String> {
    text().prop_filter("non-empty", |s| !s.is_empty())
}

/// Values AMF3 (and AMF0 after an AVM+ switch) reads back exactly: 29-bit integers, dates
/// without time zones, non-empty class names, arrays whose shape matches their variant.
fn amf3_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        finite().prop_map(Value::Number),
        ((-(1 << 28))..(1 << 28)).prop_map(Value::Integer),
        any::<bool>().prop_map(Value::Boolean),
        text().prop_map(Value::String),
        Just(Value::Null),
        Just(Value::Undefined),
        finite().prop_map(|millis| Value::Date {
            millis,
            timezone: 0
        }),
        text().prop_map(Value::XmlDocument),
        text().prop_map(Value::Xml),
        vec(any::<u8>(), 0..16).prop_map(Value::ByteArray),
        (vec(any::<i32>(), 0..6), any::<bool>()).prop_map(|(v, f)| Value::VectorInt(v, f)),
        (vec(any::<u32>(), 0..6), any::<bool>()).prop_map(|(v, f)| Value::VectorUint(v, f)),
        (vec(finite(), 0..6), any::<bool>()).prop_map(|(v, f)| Value::VectorDouble(v, f)),
    ];
    leaf.prop_recursive(4, 48, 5, |inner| {
        prop_oneof![
            // Anonymous objects may use the empty name (written with sealed traits).
            vec((text(), inner.clone()), 0..5).prop_map(|properties| Value::Object {
                class_name: None,
                properties
            }),
            (name(), vec((text(), inner.clone()), 0..5)).prop_map(|(c, properties)| {
                Value::Object {
                    class_name: Some(c),
                    properties,
                }
            }),
            vec(inner.clone(), 0..5).prop_map(Value::StrictArray),
            vec((name(), inner.clone()), 1..5).prop_map(Value::EcmaArray),
            (vec((name(), inner.clone()), 1..4), vec(inner.clone(), 1..4))
                .prop_map(|(associative, dense)| Value::MixedArray { associative, dense }),
            (text(), vec(inner.clone(), 0..4), any::<bool>())
                .prop_map(|(t, items, f)| Value::VectorObject(t, items, f)),
            (vec((inner.clone(), inner), 0..4), any::<bool>())
                .prop_map(|(pairs, weak)| Value::Dictionary(pairs, weak)),
        ]
    })
}

/// Values AMF0 reads back exactly: its own types (numbers, not integers; XML documents, not
/// XML; dates with time zones; any names), plus AMF3-only values (through the AVM+ switch).
fn amf0_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        finite().prop_map(Value::Number),
        any::<bool>().prop_map(Value::Boolean),
        text().prop_map(Value::String),
        Just(Value::Null),
        Just(Value::Undefined),
        Just(Value::Unsupported),
        (finite(), any::<i16>()).prop_map(|(millis, timezone)| Value::Date { millis, timezone }),
        text().prop_map(Value::XmlDocument),
        vec(any::<u8>(), 0..16).prop_map(Value::ByteArray),
        (vec(any::<i32>(), 0..6), any::<bool>()).prop_map(|(v, f)| Value::VectorInt(v, f)),
        // Any AMF3 value that needs the switch, with its own AMF3 children.
        amf3_value().prop_filter("AMF3-only", |v| matches!(
            v,
            Value::MixedArray { .. } | Value::VectorObject(..) | Value::Dictionary(..)
        )),
    ];
    leaf.prop_recursive(4, 48, 5, |inner| {
        prop_oneof![
            (
                proptest::option::of(text()),
                vec((text(), inner.clone()), 0..5)
            )
                .prop_map(|(class_name, properties)| Value::Object {
                    class_name,
                    properties
                }),
            vec(inner.clone(), 0..5).prop_map(Value::StrictArray),
            vec((text(), inner), 0..5).prop_map(Value::EcmaArray),
        ]
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn amf0_round_trip(values in vec(amf0_value(), 0..4)) {
        let bytes = amf0::encode_all(&values);
        prop_assert_eq!(amf0::decode_all(&bytes), Ok(values));
    }

    #[test]
    fn amf3_round_trip(values in vec(amf3_value(), 0..4)) {
        // One encoder for all values: later ones use string and traits references.
        let bytes = amf3::encode_all(&values);
        prop_assert_eq!(amf3::decode_all(&bytes), Ok(values));
    }

    #[test]
    fn amf3_round_trip_through_amf0(value in amf3_value()) {
        // Integers become numbers and XML becomes XML documents in AMF0, unless they sit
        // inside an AMF3-only container; compare with what AMF0 promises for the top level.
        let bytes = amf0::encode_all(std::slice::from_ref(&value));
        let decoded = amf0::decode_all(&bytes);
        prop_assert!(decoded.is_ok(), "{:?}", decoded);
        let decoded = decoded.unwrap();
        prop_assert_eq!(decoded.len(), 1);
        match (&value, &decoded[0]) {
            (Value::Integer(i), Value::Number(n)) => prop_assert_eq!(f64::from(*i), *n),
            (Value::Xml(a), Value::XmlDocument(b)) => prop_assert_eq!(a, b),
            (Value::Object { .. } | Value::StrictArray(_) | Value::EcmaArray(_), _) => {}
            (a, b) => prop_assert_eq!(a, b),
        }
    }

    #[test]
    fn amf0_arbitrary_bytes_never_panic(bytes in vec(any::<u8>(), 0..512)) {
        let _ = amf0::decode_all(&bytes);
    }

    #[test]
    fn amf3_arbitrary_bytes_never_panic(bytes in vec(any::<u8>(), 0..512)) {
        let _ = amf3::decode_all(&bytes);
    }

    /// Random bytes rarely get past the first marker; corrupting valid encodings reaches the
    /// deep paths (references, traits, nested lengths).
    #[test]
    fn corrupted_encodings_never_panic(
        values in vec(amf3_value(), 1..3),
        edits in vec((any::<prop::sample::Index>(), any::<u8>()), 1..6),
    ) {
        for mut bytes in [amf3::encode_all(&values), amf0::encode_all(&values)] {
            for (at, byte) in &edits {
                let i = at.index(bytes.len());
                bytes[i] = *byte;
            }
            let _ = amf3::decode_all(&bytes);
            let _ = amf0::decode_all(&bytes);
            let cut = &bytes[..bytes.len() / 2];
            let _ = amf3::decode_all(cut);
            let _ = amf0::decode_all(cut);
        }
    }
}
