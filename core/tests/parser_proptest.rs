//! Hostile input for the parsers that had no property test of their own: RTMP protocol and
//! user control messages, commands and aggregates; FLV file and tag headers and the tag
//! classifiers; SIP header values parsed alone (URI, name-addr, Via, CSeq, host); SDP's typed
//! attributes. Arbitrary input gives a value or an error, never a panic, and what parses
//! survives its own encoder.

use bytes::Bytes;
use proptest::prelude::*;
use siprtmp_core::flv::media::{classify_audio, classify_video};
use siprtmp_core::flv::tag::{FileHeader, TagHeader};
use siprtmp_core::rtmp::aggregate::split_aggregate;
use siprtmp_core::rtmp::command::Command;
use siprtmp_core::rtmp::control::{ProtocolControl, UserControl};
use siprtmp_core::rtmp::message::{type_id, RtmpMessage};
use siprtmp_core::sdp::{Fmtp, RtpMap, TelephoneEvents};
use siprtmp_core::sip::{CSeq, Host, NameAddr, Uri, Via};

/// Text made of the characters SIP header values are made of, and some others.
fn sip_text() -> impl Strategy<Value = String> {
    prop::collection::vec(
        prop_oneof![
            Just("sip:".to_string()),
            Just("sips:".to_string()),
            Just("SIP/2.0/UDP ".to_string()),
            Just("alice@".to_string()),
            Just("[::1]".to_string()),
            Just("10.0.0.1".to_string()),
            Just(":5060".to_string()),
            Just(";tag=1".to_string()),
            Just(";branch=z9hG4bK".to_string()),
            Just("\"Al \\\"ice\"".to_string()),
            "[<>;,:@%=?&\"\\\\ \\[\\]]{1,3}",
            "[a-zA-Z0-9.-]{0,6}",
            any::<String>(),
        ],
        0..10,
    )
    .prop_map(|p| p.concat())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn control_messages_parse_or_fail(t in 0u8..32, payload in prop::collection::vec(any::<u8>(), 0..24)) {
        let msg = RtmpMessage::new(t, 0, 0, payload.clone());
        match ProtocolControl::parse(&msg) {
            // The reserved top bit of a chunk size is kept for the decoder to refuse, and
            // never written.
            Ok(ProtocolControl::SetChunkSize(n)) if n & 0x8000_0000 != 0 => {
                let written = ProtocolControl::SetChunkSize(n).to_message();
                prop_assert_eq!(
                    ProtocolControl::parse(&written),
                    Ok(ProtocolControl::SetChunkSize(n & 0x7fff_ffff))
                );
            }
            Ok(c) => prop_assert_eq!(ProtocolControl::parse(&c.to_message()), Ok(c)),
            Err(_) => {}
        }
        if let Ok(event) = UserControl::parse(&payload) {
            prop_assert_eq!(UserControl::parse(&event.to_message().payload), Ok(event));
        }
    }

    #[test]
    fn commands_parse_or_fail(amf3 in any::<bool>(), payload in prop::collection::vec(any::<u8>(), 0..256)) {
        let t = if amf3 { type_id::COMMAND_AMF3 } else { type_id::COMMAND_AMF0 };
        let _ = Command::parse(&RtmpMessage::new(t, 1, 0, payload));
    }

    #[test]
    fn aggregates_split_inside_themselves(payload in prop::collection::vec(any::<u8>(), 0..512)) {
        let len = payload.len();
        if let Ok(parts) = split_aggregate(&RtmpMessage::new(type_id::AGGREGATE, 3, 9, payload)) {
            let total: usize = parts.iter().map(|p| 11 + p.payload.len()).sum();
            prop_assert!(total <= len);
            prop_assert!(parts.iter().all(|p| p.stream_id == 3));
        }
    }

    #[test]
    fn flv_headers_parse_or_fail(bytes in prop::collection::vec(any::<u8>(), 0..16)) {
        let _ = FileHeader::parse(&bytes);
        if let Some(head) = bytes.get(..11) {
            if let Ok(h) = TagHeader::parse(head.try_into().unwrap()) {
                prop_assert_eq!(TagHeader::parse(&h.encode()), Ok(h));
            }
        }
        let _ = classify_video(&bytes);
        let _ = classify_audio(&bytes);
    }

    #[test]
    fn sip_values_parse_or_fail(s in sip_text()) {
        if let Ok(u) = Uri::parse(&s) {
            prop_assert_eq!(Uri::parse(&u.to_string()), Ok(u));
        }
        if let Ok(n) = NameAddr::parse(&s) {
            prop_assert_eq!(NameAddr::parse(&n.to_string()), Ok(n));
        }
        if let Ok(v) = Via::parse(&s) {
            prop_assert_eq!(Via::parse(&v.to_string()), Ok(v));
        }
        if let Ok(h) = Host::parse(&s) {
            prop_assert_eq!(Host::parse(&h.to_string()), Ok(h));
        }
        let _ = CSeq::parse(&s);
    }

    #[test]
    fn sdp_attributes_parse_or_fail(s in "[ -~]{0,40}") {
        if let Some(m) = RtpMap::parse(&s) {
            prop_assert_eq!(RtpMap::parse(&m.to_string()), Some(m));
        }
        if let Some(f) = Fmtp::parse(&s) {
            let _ = f.telephone_events();
            let _ = f.to_string();
        }
        if let Some(t) = TelephoneEvents::parse(&s) {
            prop_assert_eq!(TelephoneEvents::parse(&t.to_string()), Some(t));
        }
    }
}

#[test]
fn a_payload_too_short_for_its_control_message_is_an_error() {
    let set_chunk_size =
        RtmpMessage::new(type_id::SET_CHUNK_SIZE, 0, 0, Bytes::from_static(&[0, 0]));
    assert!(ProtocolControl::parse(&set_chunk_size).is_err());
    assert!(UserControl::parse(&[0]).is_err());
}
