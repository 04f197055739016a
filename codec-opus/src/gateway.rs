//! [`Codecs`]: libopus as the gateway's transcoding codec for Opus clients, core's
//! [`OpusCodecs`](siprtmp_core::media::transcode::OpusCodecs). One encoder and one decoder per
//! call, mono at 48 kHz, made when the call's media starts.

use siprtmp_core::media::opus::{FRAME_SAMPLES, SAMPLE_RATE};
use siprtmp_core::media::transcode::{OpusCodec, OpusCodecs};

use crate::{Application, Bandwidth, Decoder, Encoder};

/// The bit rate of the client-bound direction, bit/s: what comes from the far end is 8 or
/// 16 kHz speech, which Opus codes at full quality well under this (ffmpeg's and OBS's Opus
/// publishers send 32 to 128 kbit/s for music).
pub const BITRATE: u32 = 32_000;

/// The encoder complexity (libopus: 0 to 10, default 9): see [`encoder`].
pub const COMPLEXITY: u8 = 5;

/// Makes a libopus encoder and decoder pair per call.
#[derive(Debug, Default, Clone, Copy)]
pub struct Codecs;

/// One call's pair.
struct Pair {
    encoder: Encoder,
    decoder: Decoder,
}

impl OpusCodec for Pair {
    fn decode(&mut self, packet: &[u8], pcm: &mut Vec<i16>) -> usize {
        self.decoder.decode(packet, pcm).unwrap_or(0)
    }

    fn encode(&mut self, frame: &[i16], out: &mut Vec<u8>) {
        // Only a frame of another length fails, which the transcoder never passes.
        let _ = self
            .encoder
            .encode(&frame[..frame.len().min(FRAME_SAMPLES)], out);
    }
}

/// The encoder the gateway codes a call's client-bound audio with, for input at `rate` Hz
/// (the gateway's is 48 kHz; tests compare against the same settings at other rates).
///
/// Speech from a telephone: the VoIP application and the voice signal hint steer libopus to
/// its speech coder, and nothing the far end sends (8 or 16 kHz) has sound above 8 kHz, so
/// wideband is all there is to code. Complexity [`COMPLEXITY`] halves libopus's default CPU
/// (about 120 against 245 us a frame here) for a small loss: in the gateway's echo tests
/// (`tests/tests/gateway_opus.rs`) the PCMU call's correlation goes from 0.958 to 0.934, the
/// PCMA and Speex ones stay at 0.96 and 0.89.
pub fn encoder(rate: u32) -> Option<Encoder> {
    let mut encoder = Encoder::new(rate, 1, Application::Voip)?;
    encoder.set_bitrate(BITRATE);
    encoder.set_voice();
    encoder.set_max_bandwidth(Bandwidth::Wideband);
    encoder.set_complexity(COMPLEXITY);
    Some(encoder)
}

impl OpusCodecs for Codecs {
    fn open(&self) -> Option<Box<dyn OpusCodec>> {
        Some(Box::new(Pair {
            encoder: encoder(SAMPLE_RATE)?,
            decoder: Decoder::new(SAMPLE_RATE, 1)?,
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use siprtmp_core::media::opus::CODED_FRAMES_HEADER;
    use siprtmp_core::media::transcode::{
        ClientCodec, CodecLibraries, FarCodec, G711Law, SpeexBand, Transcoder, MAX_OPUS_SAMPLES,
    };

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(500))]
        /// A hostile Opus client and far end through a real call's transcoder (libopus, and
        /// libspeex for a Speex far end): any bytes behind the client's Opus header, any
        /// far-end payload. No panic; what comes out is bounded by what went in.
        #[test]
        fn arbitrary_input_through_a_real_transcoder_stays_bounded(
            client in proptest::collection::vec(any::<u8>(), 0..1600),
            far in proptest::collection::vec(any::<u8>(), 0..1500),
            speex in any::<bool>(),
        ) {
            let far_codec = if speex {
                FarCodec::Speex(SpeexBand::Wideband)
            } else {
                FarCodec::G711(G711Law::Ulaw)
            };
            let libraries = CodecLibraries {
                speex: Some(&siprtmp_codec_speex::gateway::Codecs),
                opus: Some(&Codecs),
            };
            let mut t = Transcoder::new(ClientCodec::Opus, far_codec, libraries).unwrap();
            let mut body = CODED_FRAMES_HEADER.to_vec();
            body.extend_from_slice(&client);
            let mut sent = 0;
            t.client_to_far(&body, 0, |_, p| {
                sent += 1;
                assert!(!p.is_empty() && p.len() <= MAX_OPUS_SAMPLES / 6);
            });
            // At most 120 ms: six 20 ms frames for Speex, one G.711 payload.
            prop_assert!(sent <= 6);
            let mut frames = 0;
            t.far_to_client(&far, 0, |_, p| {
                frames += 1;
                assert!(!p.is_empty() && p.len() < 1500);
            });
            // G.711: one sample a byte; Speex: at most 8 frames of 20 ms a packet.
            let most = if speex { 8 } else { far.len() / 160 };
            prop_assert!(frames <= most, "{} frames from {} bytes", frames, far.len());
        }
    }

    #[test]
    fn a_call_pair_codes_20ms_frames_at_48k() {
        let mut pair = Codecs.open().unwrap();
        let frame: Vec<i16> = (0..FRAME_SAMPLES)
            .map(|i| ((i as f64 * 0.05).sin() * 6000.0) as i16)
            .collect();
        let mut packet = Vec::new();
        pair.encode(&frame, &mut packet);
        assert!(!packet.is_empty() && packet.len() < 200, "{}", packet.len());
        let mut pcm = Vec::new();
        assert_eq!(pair.decode(&packet, &mut pcm), FRAME_SAMPLES);
        assert_eq!(pair.decode(&[0x03, 0x00], &mut pcm), 0, "an invalid packet");
        assert_eq!(pcm.len(), FRAME_SAMPLES);
    }
}
