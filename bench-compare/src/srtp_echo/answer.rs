//! How the echo far end answers an offer: as the sipp scenario of the plain points does (the
//! first payload type of the audio m-line, any video m-line refused with port 0), and, when
//! the offer carries a usable `a=crypto` line, with RTP/SAVP and a fresh key of its own
//! (SDES, core's `answer_secure`). The keys the exchange settled on are read back from the
//! pair, as the gateway reads them.

use std::net::{IpAddr, Ipv4Addr};

use siprtmp_core::rng::SeededRng;
use siprtmp_core::sdp::offer_answer::{Codec, LocalCapabilities, MediaCapability};
use siprtmp_core::sdp::sdes::{answer_secure, negotiated_keys};
use siprtmp_core::sdp::{Origin, SessionDescription, SrtpKeys};

/// What the far end says to one offer.
#[derive(Debug)]
pub(crate) struct Answer {
    /// The answer's SDP text.
    pub sdp: String,
    /// The audio line's keys (`None`: plain RTP).
    pub keys: Option<SrtpKeys>,
}

/// Answers the SDP `offer` with audio on 127.0.0.1:`port`, keys (if any) from `rng`.
/// `Err` with the reason when the offer has no audio codec the answerer can take.
pub(crate) fn answer(offer: &[u8], port: u16, rng: &mut SeededRng) -> Result<Answer, String> {
    let offer = SessionDescription::parse(offer).map_err(|e| format!("bad SDP offer: {e}"))?;
    let (index, audio) = offer
        .media
        .iter()
        .enumerate()
        .find(|(_, m)| m.media == "audio" && m.port != 0)
        .ok_or("the offer has no audio line")?;
    // Like the sipp scenario: the first codec offered, nothing else (no video capability, so
    // a video line is refused).
    let first = audio
        .codecs()
        .into_iter()
        .next()
        .ok_or("the audio line has no known codec")?;
    let codec = Codec::new(
        first.payload_type,
        &first.encoding_name,
        first.clock_rate,
        first.channels,
    );
    let local = LocalCapabilities {
        address: IpAddr::V4(Ipv4Addr::LOCALHOST),
        session_name: "echo".into(),
        media: vec![MediaCapability::new("audio", port, vec![codec])],
    };
    let origin = Origin {
        username: "-".into(),
        session_id: u64::from(port),
        session_version: 1,
        nettype: "IN".into(),
        addrtype: "IP4".into(),
        address: "127.0.0.1".into(),
    };
    let sdp = answer_secure(&offer, &local, &origin, rng).map_err(|e| e.to_string())?;
    let keys = negotiated_keys(&offer, &sdp, true, index).map_err(|e| e.to_string())?;
    Ok(Answer {
        sdp: sdp.serialize(),
        keys,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use siprtmp_core::sdp::sdes::secure_offer;

    const PLAIN_OFFER: &str = "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\n\
        t=0 0\r\nm=audio 26000 RTP/AVP 96 0 101\r\na=rtpmap:96 speex/16000\r\n\
        a=rtpmap:101 telephone-event/8000\r\nm=video 26002 RTP/AVP 97\r\n\
        a=rtpmap:97 H264/90000\r\n";

    #[test]
    fn a_plain_offer_gets_the_first_codec_plain_and_video_refused() {
        let a = answer(PLAIN_OFFER.as_bytes(), 4000, &mut SeededRng::new(1)).unwrap();
        assert!(a.keys.is_none());
        let sdp = SessionDescription::parse(a.sdp.as_bytes()).unwrap();
        assert_eq!(sdp.media[0].port, 4000);
        assert_eq!(sdp.media[0].proto, "RTP/AVP");
        assert_eq!(sdp.media[0].formats, ["96"]);
        assert_eq!(sdp.media[1].port, 0);
        assert_eq!(sdp.media[0].crypto().count(), 0);
    }

    #[test]
    fn a_secure_offer_gets_savp_and_a_fresh_key_of_our_own() {
        let mut offer = SessionDescription::parse(PLAIN_OFFER.as_bytes()).unwrap();
        let mut gateway_rng = SeededRng::new(7);
        secure_offer(&mut offer, &mut gateway_rng, true);
        let a = answer(offer.serialize().as_bytes(), 4000, &mut SeededRng::new(2)).unwrap();
        let keys = a.keys.expect("keys");
        let sdp = SessionDescription::parse(a.sdp.as_bytes()).unwrap();
        assert_eq!(sdp.media[0].proto, "RTP/SAVP");
        // The gateway's view of the same exchange: its theirs is our ours, and back.
        let gateway = negotiated_keys(&offer, &sdp, false, 0).unwrap().unwrap();
        assert_eq!(gateway.ours, keys.theirs);
        assert_eq!(gateway.theirs, keys.ours);
        assert_ne!(keys.ours, keys.theirs);
    }

    #[test]
    fn offers_without_audio_are_refused() {
        let video_only = "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\n\
            t=0 0\r\nm=video 26002 RTP/AVP 97\r\na=rtpmap:97 H264/90000\r\n";
        assert!(answer(video_only.as_bytes(), 4000, &mut SeededRng::new(1)).is_err());
        assert!(answer(b"", 4000, &mut SeededRng::new(1)).is_err());
    }

    proptest! {
        /// Hostile offers (arbitrary bytes, or a real offer cut or with bytes flipped) give an
        /// answer or an error, never a panic.
        #[test]
        fn hostile_offers_never_panic(
            bytes in proptest::collection::vec(any::<u8>(), 0..600),
            cut in 0usize..PLAIN_OFFER.len(),
            flip in proptest::collection::vec((0usize..PLAIN_OFFER.len(), any::<u8>()), 0..8),
        ) {
            let _ = answer(&bytes, 4000, &mut SeededRng::new(3));
            let _ = answer(&PLAIN_OFFER.as_bytes()[..cut], 4000, &mut SeededRng::new(3));
            let mut mangled = PLAIN_OFFER.as_bytes().to_vec();
            for (at, b) in flip {
                mangled[at] = b;
            }
            let _ = answer(&mangled, 4000, &mut SeededRng::new(3));
        }
    }
}
