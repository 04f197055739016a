//! [`Codecs`]: libspeex as the gateway's transcoding codec, core's
//! [`SpeexCodecs`](siprtmp_core::media::transcode::SpeexCodecs). One encoder and one decoder
//! per call, made when the call's media starts.

use siprtmp_core::media::transcode::{SpeexBand, SpeexCodec, SpeexCodecs};

use crate::{Band, Decoder, Encoder};

/// The encoder quality for the client-bound direction: libspeex's default (8), 27.8 kbit/s
/// wideband, 15 kbit/s narrowband, well under what Flash players receive from their peers.
pub const QUALITY: u8 = 8;

/// Makes a libspeex encoder and decoder pair per call.
#[derive(Debug, Default, Clone, Copy)]
pub struct Codecs;

/// One call's pair.
struct Pair {
    encoder: Encoder,
    decoder: Decoder,
}

impl SpeexCodec for Pair {
    fn decode(&mut self, packet: &[u8], frames: usize, pcm: &mut Vec<i16>) -> usize {
        self.decoder
            .decode_at_most(packet, frames, pcm)
            .unwrap_or(0)
    }

    fn encode(&mut self, frame: &[i16], out: &mut Vec<u8>) {
        self.encoder.encode(frame, out);
    }
}

impl SpeexCodecs for Codecs {
    fn open(&self, band: SpeexBand) -> Option<Box<dyn SpeexCodec>> {
        let band = match band {
            SpeexBand::Narrowband => Band::Narrowband,
            SpeexBand::Wideband => Band::Wideband,
        };
        Some(Box::new(Pair {
            encoder: Encoder::new(band, QUALITY)?,
            decoder: Decoder::new(band)?,
        }))
    }
}
