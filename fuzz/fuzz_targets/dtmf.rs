//! RFC 4733 telephone-events on receive: a sequence of arbitrary packets through the
//! receiver never panics; an event is reported once per RTP timestamp; an event payload that
//! parses serialises back to the same bytes (bar the reserved bit).
#![no_main]

use libfuzzer_sys::fuzz_target;
use siprtmp_core::rtp::dtmf::{event_digit, DtmfReceiver, EventPayload};
use siprtmp_fuzz::frames::split;

fuzz_target!(|data: &[u8]| {
    let mut receiver = DtmfReceiver::default();
    let mut reported: Vec<u32> = Vec::new();
    for packet in split(data) {
        // The first four bytes are the RTP timestamp, the rest the payload.
        if packet.len() < 4 {
            continue;
        }
        let timestamp = u32::from_be_bytes([packet[0], packet[1], packet[2], packet[3]]);
        let payload = &packet[4..];
        if let Ok(p) = EventPayload::parse(payload) {
            let bytes = p.to_bytes();
            assert_eq!(bytes[0], payload[0]);
            assert_eq!(
                bytes[1],
                payload[1] & 0xbf,
                "only the reserved bit may change"
            );
            assert_eq!(bytes[2..], payload[2..4]);
            assert_eq!(EventPayload::parse(&bytes), Ok(p));
        }
        if let Ok(Some(event)) = receiver.receive(timestamp, payload) {
            assert_eq!(event.timestamp, timestamp);
            assert_eq!(event.digit, event_digit(event.event));
            // Reported again only once the receiver has forgotten it (it remembers the last 8).
            let recent = reported.iter().rev().take(8);
            assert!(
                !recent.clone().any(|&t| t == timestamp),
                "event at {timestamp} reported twice"
            );
            reported.push(timestamp);
        }
    }
});
