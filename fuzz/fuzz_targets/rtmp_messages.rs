//! RTMP message bodies: protocol control, user control, commands (AMF0 and AMF3) and
//! aggregates. Arbitrary payloads parse or fail, never panic; what parses re-encodes to a
//! message that parses the same; an aggregate's parts lie inside it.
#![no_main]

use bytes::Bytes;
use libfuzzer_sys::fuzz_target;
use siprtmp_core::rtmp::aggregate::split_aggregate;
use siprtmp_core::rtmp::command::{message_values, Command};
use siprtmp_core::rtmp::control::{ProtocolControl, UserControl};
use siprtmp_core::rtmp::message::{type_id, RtmpMessage};
use siprtmp_fuzz::amf_eq::{same, same_all};

fuzz_target!(|data: &[u8]| {
    let Some((&t, rest)) = data.split_first() else {
        return;
    };
    let payload = Bytes::copy_from_slice(rest);
    let msg = RtmpMessage::new(t % 32, 1, 1000, payload.clone());

    if let Ok(control) = ProtocolControl::parse(&msg) {
        let again = ProtocolControl::parse(&control.to_message()).expect("re-encoded control");
        match control {
            // The reserved top bit of a chunk size is kept for the decoder to refuse, and never
            // written.
            ProtocolControl::SetChunkSize(n) => {
                assert_eq!(again, ProtocolControl::SetChunkSize(n & 0x7fff_ffff))
            }
            _ => assert_eq!(again, control),
        }
    }
    if let Ok(event) = UserControl::parse(&payload) {
        let m = event.to_message();
        assert_eq!(m.type_id, type_id::USER_CONTROL);
        assert_eq!(UserControl::parse(&m.payload), Ok(event));
    }
    let _ = message_values(&msg);
    for type_id in [type_id::COMMAND_AMF0, type_id::COMMAND_AMF3] {
        let m = RtmpMessage::new(type_id, 1, 0, payload.clone());
        if let Ok(cmd) = Command::parse(&m) {
            // AMF0 writes AMF3-only values (an integer, a byte array) as their closest
            // equivalent, so the first re-encoding may normalise; from then on it is exact.
            let once = Command::parse(&cmd.to_message(1)).expect("re-encoded command parses");
            assert_eq!(once.name, cmd.name);
            assert_eq!(once.amf3, cmd.amf3);
            let wire = once.to_message(1);
            let twice = Command::parse(&wire).expect("parses");
            assert_eq!(
                twice.to_message(1).payload,
                wire.payload,
                "not a fixed point"
            );
            assert!(
                twice.transaction_id.to_bits() == once.transaction_id.to_bits()
                    || (twice.transaction_id.is_nan() && once.transaction_id.is_nan())
            );
            assert!(same(&twice.command_object, &once.command_object));
            assert!(same_all(&twice.args, &once.args));
        }
    }
    let aggregate = RtmpMessage::new(type_id::AGGREGATE, 5, 77, payload.clone());
    if let Ok(parts) = split_aggregate(&aggregate) {
        let total: usize = parts.iter().map(|p| p.payload.len() + 11).sum();
        assert!(total <= payload.len(), "parts larger than the aggregate");
        assert!(parts.iter().all(|p| p.stream_id == 5 && p.type_id < 32));
    }
});
