//! SDP (RFC 4566) and offer/answer (RFC 3264): arbitrary bytes parse or give a typed error,
//! never a panic; a parsed description serialises to text that parses to the same
//! description; the typed attributes and the offer/answer functions run on what parses.
#![no_main]

use libfuzzer_sys::fuzz_target;
use siprtmp_core::sdp::{
    answer, negotiated_media, process_answer, reoffer, Codec, LocalCapabilities, MediaCapability,
    Origin, SessionDescription,
};

fn local() -> LocalCapabilities {
    LocalCapabilities {
        address: "10.0.0.1".parse().unwrap(),
        session_name: "fuzz".into(),
        media: vec![
            MediaCapability::new(
                "audio",
                4000,
                vec![
                    Codec::new(96, "speex", 16000, None),
                    Codec::new(0, "PCMU", 8000, None),
                    Codec::new(101, "telephone-event", 8000, None).with_param("0-15", None),
                ],
            ),
            MediaCapability::new(
                "video",
                4002,
                vec![
                    Codec::new(97, "H264", 90000, None).with_param("packetization-mode", Some("1"))
                ],
            ),
        ],
    }
}

fn origin() -> Origin {
    Origin {
        username: "-".into(),
        session_id: 7,
        session_version: 1,
        nettype: "IN".into(),
        addrtype: "IP4".into(),
        address: "10.0.0.1".into(),
    }
}

fuzz_target!(|data: &[u8]| {
    let Ok(sdp) = SessionDescription::parse(data) else {
        return;
    };
    let text = sdp.serialize();
    let again = SessionDescription::parse(text.as_bytes())
        .unwrap_or_else(|e| panic!("serialised SDP does not parse: {e:?}\n{text}"));
    assert_eq!(again, sdp, "round trip changed the description:\n{text}");
    for (i, m) in sdp.media.iter().enumerate() {
        let _ = m.codecs();
        let _ = m.direction();
        let _ = m.ptime();
        let _ = sdp.media_connection(i);
        for pt in m.formats.iter().filter_map(|f| f.parse::<u8>().ok()) {
            if let Some(f) = m.fmtp(pt) {
                let _ = f.telephone_events();
            }
            let _ = m.rtpmap(pt);
        }
    }
    let caps = local();
    if let Ok(ans) = answer(&sdp, &caps, &origin()) {
        let ans_text = ans.serialize();
        assert!(
            SessionDescription::parse(ans_text.as_bytes()).is_ok(),
            "our answer does not parse"
        );
        let _ = negotiated_media(&ans, &sdp, true);
    }
    // As an answer to our own offer.
    let offer = siprtmp_core::sdp::create_offer(&caps, &origin());
    let _ = process_answer(&offer, &sdp);
    let _ = reoffer(&sdp, true);
});
