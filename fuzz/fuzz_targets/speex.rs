//! Speex framing: the frame walker and the wideband-to-narrowband layer stripper on
//! arbitrary packets never panic; stripped output walks as narrowband frames, as many as the
//! input had; the RTP audio translators in both directions take any payload.
#![no_main]

use bytes::{Bytes, BytesMut};
use libfuzzer_sys::fuzz_target;
use siprtmp_core::media::speex::{frames, wideband_to_narrowband};
use siprtmp_core::media::{RtmpToRtpAudio, RtpAudioCodec, RtpAudioFormat, RtpToRtmpAudio};
use siprtmp_core::rtp::RtpPacket;

fuzz_target!(|data: &[u8]| {
    let walked: Vec<_> = frames(data).collect();
    let ok = walked.iter().take_while(|f| f.is_ok()).count();
    assert!(
        walked.iter().skip(ok).count() <= 1,
        "an error is yielded once, then the walk stops"
    );
    let mut out = BytesMut::new();
    match wideband_to_narrowband(data, &mut out) {
        Ok(n) => {
            assert_eq!(n, ok, "frames stripped differ from frames walked");
            let nb: Vec<_> = frames(&out)
                .collect::<Result<_, _>>()
                .expect("narrowband output walks");
            assert_eq!(nb.len(), n);
            assert!(nb.iter().all(|f| f.wb_layers == 0), "a wideband layer left");
            assert!(out.len() <= data.len(), "stripping made the packet longer");
        }
        Err(_) => assert!(out.is_empty(), "a refused packet wrote output"),
    }
    for codec in [
        RtpAudioCodec::SpeexWideband,
        RtpAudioCodec::SpeexNarrowband,
        RtpAudioCodec::Pcmu,
        RtpAudioCodec::Pcma,
    ] {
        let format = RtpAudioFormat {
            codec,
            payload_type: 96,
        };
        let mut to_rtp = RtmpToRtpAudio::new(format, 0);
        let _ = to_rtp.translate(&Bytes::copy_from_slice(data), 1000);
        let mut to_rtmp = RtpToRtmpAudio::new(format);
        let packet = RtpPacket::new(96, 1, 160, 5, Bytes::copy_from_slice(data));
        if let Some(frame) = to_rtmp.translate(packet, 20) {
            assert_eq!(frame.header[..], [codec.flv_header()]);
        }
    }
});
