//! [`Codecs`]: libopus as the gateway's transcoding codec for Opus clients, core's
//! [`OpusCodecs`](siprtmp_core::media::transcode::OpusCodecs). One encoder and one decoder per
//! call, mono at 48 kHz, made when the call's media starts.

use siprtmp_core::media::opus::{FRAME_SAMPLES, SAMPLE_RATE};
use siprtmp_core::media::transcode::{OpusCodec, OpusCodecs};

use crate::{Application, Decoder, Encoder};

/// The bit rate of the client-bound direction, bit/s: what comes from the far end is 8 or
/// 16 kHz speech, which Opus codes at full quality well under this (ffmpeg's and OBS's Opus
/// publishers send 32 to 128 kbit/s for music).
pub const BITRATE: u32 = 32_000;

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

impl OpusCodecs for Codecs {
    fn open(&self) -> Option<Box<dyn OpusCodec>> {
        // Speech from a telephone: the VoIP application and the voice signal hint steer
        // libopus to its speech coder.
        let mut encoder = Encoder::new(SAMPLE_RATE, 1, Application::Voip)?;
        encoder.set_bitrate(BITRATE);
        encoder.set_voice();
        Some(Box::new(Pair {
            encoder,
            decoder: Decoder::new(SAMPLE_RATE, 1)?,
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
