//! Enhanced RTMP's capability exchange in `connect`: a client that declares enhanced codecs or
//! capabilities (`fourCcList`, `videoFourCcInfoMap`, `audioFourCcInfoMap`, `capsEx`) is told in
//! the `_result` what the server can do with them. The server never decodes media, only
//! forwards and records it, so it can forward every FourCC (the `"*"` wildcard with
//! `CanForward`) and understands multitrack messages and ModEx prefixes. A legacy client, which
//! sends none of these, gets the legacy answer unchanged.

use crate::amf::Value;

/// The connect properties by which a client declares enhanced-RTMP support.
const CLIENT_FIELDS: [&str; 4] = [
    "fourCcList",
    "videoFourCcInfoMap",
    "audioFourCcInfoMap",
    "capsEx",
];

/// FourCcInfoMask.CanForward.
pub(crate) const CAN_FORWARD: f64 = 4.0;
/// CapsExMask.Multitrack.
pub(crate) const CAPS_EX_MULTITRACK: u8 = 0x02;
/// CapsExMask.ModEx.
pub(crate) const CAPS_EX_MOD_EX: u8 = 0x04;

/// Whether `connect`'s command object declares enhanced-RTMP support.
pub(crate) fn declares_enhanced(command_object: &Value) -> bool {
    CLIENT_FIELDS
        .iter()
        .any(|field| command_object.get(field).is_some())
}

/// The properties the server adds to its `_result` for an enhanced client: every FourCC can
/// be forwarded (both as the older `fourCcList` and as the info maps the spec now recommends),
/// and the extended capabilities it implements.
pub(crate) fn server_properties() -> [(String, Value); 4] {
    let forward_any = || Value::object([("*", Value::Number(CAN_FORWARD))]);
    [
        (
            "fourCcList".into(),
            Value::StrictArray(vec![Value::string("*")]),
        ),
        ("videoFourCcInfoMap".into(), forward_any()),
        ("audioFourCcInfoMap".into(), forward_any()),
        (
            "capsEx".into(),
            Value::Number(f64::from(CAPS_EX_MULTITRACK | CAPS_EX_MOD_EX)),
        ),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn any_one_field_declares_enhanced_support() {
        let legacy = Value::object([("app", Value::string("live"))]);
        assert!(!declares_enhanced(&legacy));
        assert!(!declares_enhanced(&Value::Null));
        for field in CLIENT_FIELDS {
            let object = Value::object([("app", Value::string("live")), (field, Value::Null)]);
            assert!(declares_enhanced(&object), "{field}");
        }
    }

    #[test]
    fn the_server_forwards_every_fourcc_and_parses_multitrack_and_mod_ex() {
        let props = Value::Object {
            class_name: None,
            properties: server_properties().to_vec(),
        };
        let star = |map: &str| props.get(map).and_then(|m| m.get("*")).cloned();
        assert_eq!(star("videoFourCcInfoMap"), Some(Value::Number(4.0)));
        assert_eq!(star("audioFourCcInfoMap"), Some(Value::Number(4.0)));
        assert_eq!(props.get("capsEx"), Some(&Value::Number(6.0)));
        assert_eq!(
            props.get("fourCcList"),
            Some(&Value::StrictArray(vec![Value::string("*")]))
        );
    }
}
