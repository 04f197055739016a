//! Speex <-> G.711 transcoding for one gateway call: the Flash client's Speex (wideband 16 kHz
//! or narrowband 8 kHz) to the far end's PCMU or PCMA (8 kHz) and back, resampled with
//! [`super::resample`] where the rates differ.
//!
//! Core stays free of codec libraries: the Speex codec itself is behind [`SpeexCodecs`] (a
//! factory the binary provides, built on the system libspeex) and [`SpeexCodec`] (one call's
//! encoder and decoder). G.711 ([`super::g711`]) and the resampler are plain Rust here.
//! Everything is per call ([`SpeexG711`]) and bounded: a client packet is walked with
//! [`super::speex::frames`] before the codec sees it, and the codec decodes only the
//! well-formed frames at its start (at most [`MAX_FRAMES`]; a packet with none is dropped);
//! far-end audio waiting for a whole Speex frame is less than one frame.
//!
//! Timing: client -> far end, one RTP packet per client message, its RTP timestamp the RTMP
//! timestamp at 8 kHz. Far end -> client, one RTMP message per 20 ms Speex frame, timestamped
//! from the far-end packet its first sample came from (packets of any ptime are regrouped).

use std::fmt;

use bytes::Bytes;

use super::g711;
use super::resample::{Downsampler, Upsampler};
use super::speex;

/// The most Speex frames taken from one client message (Flash sends one or two).
pub const MAX_FRAMES: usize = 8;

/// Which Speex the client side speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SpeexBand {
    /// 8 kHz, 160-sample frames.
    Narrowband,
    /// 16 kHz, 320-sample frames.
    Wideband,
}

impl SpeexBand {
    /// Samples in one 20 ms frame.
    pub fn frame_samples(self) -> usize {
        match self {
            SpeexBand::Narrowband => 160,
            SpeexBand::Wideband => 320,
        }
    }
}

/// One call's Speex encoder and decoder (see the module documentation).
pub trait SpeexCodec: Send {
    /// Decodes the first `frames` frames of one Speex packet (the caller has checked their
    /// framing; what follows them may be corrupt and must not be read), appending their
    /// samples (at the band's rate) to `pcm`; the number of frames decoded, 0 when none could
    /// be. Must not panic whatever the bytes.
    fn decode(&mut self, packet: &[u8], frames: usize, pcm: &mut Vec<i16>) -> usize;
    /// Encodes one frame of [`SpeexBand::frame_samples`] samples, appending the packet to
    /// `out`.
    fn encode(&mut self, frame: &[i16], out: &mut Vec<u8>);
}

/// Makes [`SpeexCodec`]s: what the gateway needs to transcode. The binary provides one when
/// built with its `speex` feature; without one, calls whose far end has no codec in common
/// with the client are refused (488), as before.
pub trait SpeexCodecs: Send + Sync + fmt::Debug {
    /// A codec for one call in `band`, or `None` if one cannot be made.
    fn open(&self, band: SpeexBand) -> Option<Box<dyn SpeexCodec>>;
}

/// Which G.711 law the far end speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum G711Law {
    /// mu-law (PCMU).
    Ulaw,
    /// A-law (PCMA).
    Alaw,
}

/// One call's transcoder between the client's Speex and the far end's G.711.
pub struct SpeexG711 {
    band: SpeexBand,
    law: G711Law,
    codec: Box<dyn SpeexCodec>,
    down: Downsampler,
    up: Upsampler,
    /// Decoded samples at the codec's rate (scratch).
    pcm: Vec<i16>,
    /// Samples at 8 kHz (scratch).
    narrow: Vec<i16>,
    /// Far-end audio at the client's rate not yet a whole frame, and the RTMP time of its
    /// first sample.
    pending: Vec<i16>,
    pending_ms: u32,
    /// Encoded bytes (scratch).
    bytes: Vec<u8>,
}

impl fmt::Debug for SpeexG711 {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SpeexG711")
            .field("band", &self.band)
            .field("law", &self.law)
            .finish()
    }
}

impl SpeexG711 {
    /// A transcoder between the client's `band` Speex, coded by `codec`, and G.711 `law`.
    pub fn new(band: SpeexBand, law: G711Law, codec: Box<dyn SpeexCodec>) -> Self {
        SpeexG711 {
            band,
            law,
            codec,
            down: Downsampler::new(),
            up: Upsampler::new(),
            pcm: Vec::with_capacity(MAX_FRAMES * 320),
            narrow: Vec::with_capacity(MAX_FRAMES * 160),
            pending: Vec::with_capacity(320),
            pending_ms: 0,
            bytes: Vec::with_capacity(MAX_FRAMES * 160),
        }
    }

    /// The client's Speex band.
    pub fn band(&self) -> SpeexBand {
        self.band
    }

    /// The far end's G.711 law.
    pub fn law(&self) -> G711Law {
        self.law
    }

    /// One client Speex packet (the FLV body after its header byte) as a G.711 payload, or
    /// `None` when it is malformed or holds no frame.
    pub fn client_to_far(&mut self, packet: &[u8]) -> Option<Bytes> {
        // Check the framing ourselves: libspeex would print a warning per malformed frame.
        // The well-formed frames before any error are decoded, as a decoder would.
        let count = speex::frames(packet)
            .take(MAX_FRAMES)
            .take_while(Result::is_ok)
            .count();
        if count == 0 {
            return None;
        }
        self.pcm.clear();
        if self.codec.decode(packet, count, &mut self.pcm) == 0 {
            return None;
        }
        let pcm = &self.pcm[..self.pcm.len().min(MAX_FRAMES * self.band.frame_samples())];
        self.narrow.clear();
        let narrow = match self.band {
            SpeexBand::Wideband => {
                self.down.process(pcm, &mut self.narrow);
                &self.narrow[..]
            }
            SpeexBand::Narrowband => pcm,
        };
        self.bytes.clear();
        match self.law {
            G711Law::Ulaw => g711::encode_ulaw(narrow, &mut self.bytes),
            G711Law::Alaw => g711::encode_alaw(narrow, &mut self.bytes),
        }
        Some(Bytes::copy_from_slice(&self.bytes))
    }

    /// One far-end G.711 payload whose first sample is at RTMP time `rtmp_ms`: every Speex
    /// frame it completes goes to `emit` (RTMP time, packet).
    pub fn far_to_client(&mut self, g711: &[u8], rtmp_ms: u32, mut emit: impl FnMut(u32, Bytes)) {
        self.narrow.clear();
        match self.law {
            G711Law::Ulaw => g711::decode_ulaw(g711, &mut self.narrow),
            G711Law::Alaw => g711::decode_alaw(g711, &mut self.narrow),
        }
        if self.pending.is_empty() {
            self.pending_ms = rtmp_ms;
        }
        match self.band {
            SpeexBand::Wideband => self.up.process(&self.narrow, &mut self.pending),
            SpeexBand::Narrowband => self.pending.extend_from_slice(&self.narrow),
        }
        let n = self.band.frame_samples();
        let whole = self.pending.len() / n * n;
        for frame in self.pending[..whole].chunks_exact(n) {
            self.bytes.clear();
            self.codec.encode(frame, &mut self.bytes);
            emit(self.pending_ms, Bytes::copy_from_slice(&self.bytes));
            self.pending_ms = self.pending_ms.wrapping_add(20);
        }
        self.pending.drain(..whole);
    }

    /// The client restarted playback, or the far end's stream changed: drop the partial frame.
    pub fn reset(&mut self) {
        self.pending.clear();
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// A stand-in codec for tests: a "packet" is the frame's samples, big-endian, behind
    /// valid Speex framing ([`PLAIN_FRAMING`]), so the transcoder's checks pass and the audio
    /// survives exactly.
    #[derive(Debug, Default)]
    pub(crate) struct PlainCodecs;

    struct Plain(SpeexBand);

    impl SpeexCodec for Plain {
        fn decode(&mut self, packet: &[u8], _frames: usize, pcm: &mut Vec<i16>) -> usize {
            let Some(body) = packet.get(PLAIN_FRAMING.len()..) else {
                return 0;
            };
            let n = self.0.frame_samples();
            if body.len() != 2 * n {
                return 0;
            }
            pcm.extend(
                body.chunks_exact(2)
                    .map(|b| i16::from_be_bytes([b[0], b[1]])),
            );
            1
        }

        fn encode(&mut self, frame: &[i16], out: &mut Vec<u8>) {
            out.extend_from_slice(&PLAIN_FRAMING);
            for s in frame {
                out.extend_from_slice(&s.to_be_bytes());
            }
        }
    }

    /// One mode-0 NB frame ("0 0000") then the terminator ("0 1111"), which ends the walk:
    /// one frame, whatever follows.
    pub(crate) const PLAIN_FRAMING: [u8; 2] = [0b0000_0011, 0b1100_0000];

    impl SpeexCodecs for PlainCodecs {
        fn open(&self, band: SpeexBand) -> Option<Box<dyn SpeexCodec>> {
            Some(Box::new(Plain(band)))
        }
    }

    #[test]
    fn wideband_to_g711_and_back_is_regrouped_into_20ms_frames() {
        let mut t = SpeexG711::new(
            SpeexBand::Wideband,
            G711Law::Ulaw,
            PlainCodecs.open(SpeexBand::Wideband).unwrap(),
        );
        let mut packet = Vec::new();
        Plain(SpeexBand::Wideband).encode(&[1000; 320], &mut packet);
        let g711 = t.client_to_far(&packet).unwrap();
        assert_eq!(g711.len(), 160, "20 ms at 8 kHz");
        // 30 ms far-end packets become 20 ms frames, timed from their first sample.
        let mut got = Vec::new();
        for i in 0..4u32 {
            t.far_to_client(&[0xFF; 240], 1000 + 30 * i, |ms, p| got.push((ms, p.len())));
        }
        let times: Vec<u32> = got.iter().map(|g| g.0).collect();
        assert_eq!(times, [1000, 1020, 1040, 1060, 1080, 1100]);
        assert!(got.iter().all(|g| g.1 == 642));
    }

    proptest::proptest! {
        /// Hostile input both ways: any client packet, any far-end payload. No panic; what
        /// goes out is bounded by the frame limit, and the far end's audio is regrouped into
        /// whole frames with less than one frame left over.
        #[test]
        fn arbitrary_input_either_way_stays_bounded(
            client in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..1600),
            far in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..1500),
            wide in proptest::prelude::any::<bool>(),
        ) {
            let band = if wide { SpeexBand::Wideband } else { SpeexBand::Narrowband };
            let mut t = SpeexG711::new(band, G711Law::Alaw, PlainCodecs.open(band).unwrap());
            if let Some(g711) = t.client_to_far(&client) {
                proptest::prop_assert!(g711.len() <= MAX_FRAMES * 160);
            }
            let mut frames = 0;
            t.far_to_client(&far, 0, |_, p| {
                frames += 1;
                assert_eq!(p.len(), 2 + 2 * band.frame_samples());
            });
            let samples = far.len() * if wide { 2 } else { 1 };
            proptest::prop_assert_eq!(frames, samples / band.frame_samples());
            proptest::prop_assert!(t.pending.len() < band.frame_samples());
        }
    }

    #[test]
    fn malformed_or_oversized_client_packets_are_dropped() {
        let mut t = SpeexG711::new(
            SpeexBand::Narrowband,
            G711Law::Alaw,
            PlainCodecs.open(SpeexBand::Narrowband).unwrap(),
        );
        assert!(t.client_to_far(&[]).is_none());
        // Mode 9 is invalid.
        assert!(t.client_to_far(&[0b0100_1000]).is_none());
        // Two mode-0 frames ("0 0000" twice), then an invalid mode 9 ("0 1001"): the codec
        // is asked for the two frames only.
        struct Count(std::sync::Arc<std::sync::atomic::AtomicUsize>);
        impl SpeexCodec for Count {
            fn decode(&mut self, _: &[u8], frames: usize, pcm: &mut Vec<i16>) -> usize {
                self.0.store(frames, std::sync::atomic::Ordering::Relaxed);
                pcm.extend(std::iter::repeat_n(0, 160 * frames));
                frames
            }
            fn encode(&mut self, _: &[i16], _: &mut Vec<u8>) {}
        }
        let asked = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let mut counted = SpeexG711::new(
            SpeexBand::Narrowband,
            G711Law::Ulaw,
            Box::new(Count(asked.clone())),
        );
        let g711 = counted.client_to_far(&[0x00, 0x12]).unwrap();
        assert_eq!(asked.load(std::sync::atomic::Ordering::Relaxed), 2);
        assert_eq!(g711.len(), 320);
        // Valid framing but the codec finds nothing.
        assert!(t
            .client_to_far(&[PLAIN_FRAMING[0], PLAIN_FRAMING[1], 1])
            .is_none());
    }
}
