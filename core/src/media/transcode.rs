//! Transcoding for one gateway call: the RTMP client's audio codec ([`ClientCodec`]: Flash's
//! Speex at 16 or 8 kHz, or enhanced RTMP's Opus at 48 kHz) to the far end's ([`FarCodec`]:
//! PCMU or PCMA at 8 kHz, or Speex for an Opus client) and back, resampled with
//! [`super::resample`] where the rates differ.
//!
//! Core stays free of codec libraries: Speex and Opus are behind [`SpeexCodecs`] and
//! [`OpusCodecs`] (factories the binary provides, built on the system libspeex and libopus;
//! [`CodecLibraries`] holds what a host has) and [`SpeexCodec`] and [`OpusCodec`] (one call's
//! encoder and decoder). G.711 ([`super::g711`]) and the resampler are plain Rust here.
//! Everything is per call ([`Transcoder`]) and bounded: a Speex packet is walked with
//! [`super::speex::frames`] before the codec sees it, and the codec decodes only the
//! well-formed frames at its start (at most [`MAX_FRAMES`]; a packet with none is dropped);
//! an Opus packet longer than [`MAX_OPUS_PACKET`] is dropped unread and one decodes to at most
//! [`MAX_OPUS_SAMPLES`]; audio waiting for a whole frame of the codec it goes to is less than
//! one frame.
//!
//! Timing: each direction regroups the decoded audio, at the receiving side's rate, into that
//! side's frames (20 ms of Speex or Opus; G.711 takes any length, so a client message becomes
//! one G.711 payload as it comes), each timestamped from the message or packet its first
//! sample came from, in RTMP milliseconds; the caller turns them into RTP timestamps.

use std::fmt;

use bytes::Bytes;

use super::g711;
use super::opus;
use super::resample::Resampler;
use super::speex;
use crate::flv::media::audio_codec;

/// The most Speex frames taken from one packet (Flash sends one or two).
pub const MAX_FRAMES: usize = 8;

/// The longest Opus packet decoded: one datagram (a 20 ms frame is at most 1275 bytes).
pub const MAX_OPUS_PACKET: usize = 1500;

/// The most samples one Opus packet decodes to: 120 ms (RFC 6716's longest packet) at 48 kHz.
pub const MAX_OPUS_SAMPLES: usize = 5760;

/// Which Speex a side speaks.
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

    /// The sample rate in Hz.
    pub fn sample_rate(self) -> u32 {
        match self {
            SpeexBand::Narrowband => 8000,
            SpeexBand::Wideband => 16_000,
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

/// Makes [`SpeexCodec`]s. The binary provides one when built with its `speex` feature;
/// without one, a Speex client's calls to far ends that share no codec with it are refused
/// (488), and an Opus client is not offered to Speex far ends.
pub trait SpeexCodecs: Send + Sync + fmt::Debug {
    /// A codec for one call in `band`, or `None` if one cannot be made.
    fn open(&self, band: SpeexBand) -> Option<Box<dyn SpeexCodec>>;
}

/// One call's Opus encoder and decoder, mono at 48 kHz (see the module documentation).
pub trait OpusCodec: Send {
    /// Decodes one Opus packet (any channel count, mixed down to mono), appending its samples
    /// at 48 kHz to `pcm`; how many, 0 when it could not be decoded. At most
    /// [`MAX_OPUS_SAMPLES`]. Must not panic whatever the bytes.
    fn decode(&mut self, packet: &[u8], pcm: &mut Vec<i16>) -> usize;
    /// Encodes one 20 ms frame ([`opus::FRAME_SAMPLES`] samples at 48 kHz), appending the
    /// packet to `out`.
    fn encode(&mut self, frame: &[i16], out: &mut Vec<u8>);
}

/// Makes [`OpusCodec`]s. The binary provides one when built with its `opus` feature; without
/// one, an Opus client's calls to far ends without Opus are refused (488).
pub trait OpusCodecs: Send + Sync + fmt::Debug {
    /// A codec for one call, or `None` if one cannot be made.
    fn open(&self) -> Option<Box<dyn OpusCodec>>;
}

/// The codec libraries a host has: what [`Transcoder`]s are made with.
#[derive(Debug, Clone, Copy, Default)]
pub struct CodecLibraries<'a> {
    /// Speex, if the host has it.
    pub speex: Option<&'a dyn SpeexCodecs>,
    /// Opus, if the host has it.
    pub opus: Option<&'a dyn OpusCodecs>,
}

impl CodecLibraries<'_> {
    /// Whether a [`Transcoder`] between `client` and `far` can be made: both sides' libraries
    /// are there.
    pub fn can_transcode(&self, client: ClientCodec, far: FarCodec) -> bool {
        let speex = self.speex.is_some();
        let client_side = match client {
            ClientCodec::Speex(_) => speex,
            ClientCodec::Opus => self.opus.is_some(),
        };
        let far_side = match far {
            FarCodec::G711(_) => true,
            FarCodec::Speex(_) => speex,
        };
        client_side && far_side
    }
}

/// Which G.711 law the far end speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum G711Law {
    /// mu-law (PCMU).
    Ulaw,
    /// A-law (PCMA).
    Alaw,
}

/// The RTMP client's audio codec in a transcoded call.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ClientCodec {
    /// Flash's Speex (FLV sound format 11, header `0xB2`).
    Speex(SpeexBand),
    /// Opus in enhanced RTMP (see [`super::opus`]), 48 kHz.
    Opus,
}

impl ClientCodec {
    /// The FLV audio header the client's frames get: `0xB2` for Speex, as the original gateway
    /// wrote it; the CodedFrames header for Opus.
    pub fn flv_tag_header(self) -> &'static [u8] {
        match self {
            ClientCodec::Speex(_) => &[0xB2],
            ClientCodec::Opus => &opus::CODED_FRAMES_HEADER,
        }
    }

    /// The packet in a client's FLV audio body, when it is this codec's audio.
    fn packet(self, body: &[u8]) -> Option<&[u8]> {
        match self {
            ClientCodec::Speex(_) => match body.split_first() {
                Some((&header, packet)) if header >> 4 == audio_codec::SPEEX => Some(packet),
                _ => None,
            },
            ClientCodec::Opus => opus::coded_frame(body),
        }
    }
}

/// The far end's codec in a transcoded call.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum FarCodec {
    /// PCMU or PCMA, 8 kHz.
    G711(G711Law),
    /// Speex (for an Opus client; a Speex client's Speex far end is passed through).
    Speex(SpeexBand),
}

/// One side's codec, opened for the call.
enum Coder {
    G711(G711Law),
    Speex(SpeexBand, Box<dyn SpeexCodec>),
    Opus(Box<dyn OpusCodec>),
}

impl Coder {
    fn rate(&self) -> u32 {
        match self {
            Coder::G711(_) => 8000,
            Coder::Speex(band, _) => band.sample_rate(),
            Coder::Opus(_) => opus::SAMPLE_RATE,
        }
    }

    /// Samples per encoded frame; `None`: any number (G.711).
    fn frame(&self) -> Option<usize> {
        match self {
            Coder::G711(_) => None,
            Coder::Speex(band, _) => Some(band.frame_samples()),
            Coder::Opus(_) => Some(opus::FRAME_SAMPLES),
        }
    }

    /// Decodes `packet`, appending samples at [`Coder::rate`] (bounded, see the module
    /// documentation) to `pcm`, which is empty; false when nothing could be decoded.
    fn decode(&mut self, packet: &[u8], pcm: &mut Vec<i16>) -> bool {
        match self {
            Coder::G711(G711Law::Ulaw) => g711::decode_ulaw(packet, pcm),
            Coder::G711(G711Law::Alaw) => g711::decode_alaw(packet, pcm),
            Coder::Speex(band, codec) => {
                // Check the framing ourselves: libspeex would print a warning per malformed
                // frame. The well-formed frames before any error are decoded, as a decoder
                // would.
                let count = speex::frames(packet)
                    .take(MAX_FRAMES)
                    .take_while(Result::is_ok)
                    .count();
                if count == 0 || codec.decode(packet, count, pcm) == 0 {
                    pcm.clear();
                    return false;
                }
                pcm.truncate(MAX_FRAMES * band.frame_samples());
            }
            Coder::Opus(codec) => {
                if packet.len() > MAX_OPUS_PACKET || codec.decode(packet, pcm) == 0 {
                    pcm.clear();
                    return false;
                }
                pcm.truncate(MAX_OPUS_SAMPLES);
            }
        }
        !pcm.is_empty()
    }

    /// Encodes `pcm` (one frame, or any length for G.711), appending to `out`.
    fn encode(&mut self, pcm: &[i16], out: &mut Vec<u8>) {
        match self {
            Coder::G711(G711Law::Ulaw) => g711::encode_ulaw(pcm, out),
            Coder::G711(G711Law::Alaw) => g711::encode_alaw(pcm, out),
            Coder::Speex(_, codec) => codec.encode(pcm, out),
            Coder::Opus(codec) => codec.encode(pcm, out),
        }
    }
}

/// One direction: decoded audio resampled to the receiving side's rate and cut into its
/// frames.
struct Pipe {
    resampler: Resampler,
    /// Audio at the receiving side's rate not yet a whole frame, and the RTMP time of its
    /// first sample.
    pending: Vec<i16>,
    pending_ms: u32,
}

impl Pipe {
    fn new(from: u32, to: u32) -> Option<Self> {
        Some(Pipe {
            resampler: Resampler::new(from, to)?,
            pending: Vec::new(),
            pending_ms: 0,
        })
    }

    /// `pcm`, whose first sample is at `rtmp_ms`, to `target`: every frame it completes is
    /// encoded and goes to `emit` with the RTMP time of its first sample.
    fn push(
        &mut self,
        pcm: &[i16],
        rtmp_ms: u32,
        target: &mut Coder,
        bytes: &mut Vec<u8>,
        emit: &mut impl FnMut(u32, Bytes),
    ) {
        if self.pending.is_empty() {
            self.pending_ms = rtmp_ms;
        }
        self.resampler.process(pcm, &mut self.pending);
        let frame = target.frame().unwrap_or(self.pending.len()).max(1);
        let frame_ms = (frame as u64 * 1000 / u64::from(target.rate())) as u32;
        let whole = self.pending.len() / frame * frame;
        for chunk in self.pending[..whole].chunks_exact(frame) {
            bytes.clear();
            target.encode(chunk, bytes);
            emit(self.pending_ms, Bytes::copy_from_slice(bytes));
            self.pending_ms = self.pending_ms.wrapping_add(frame_ms);
        }
        self.pending.drain(..whole);
    }
}

/// One call's transcoder between the client's codec and the far end's. See the module
/// documentation.
pub struct Transcoder {
    client_codec: ClientCodec,
    far_codec: FarCodec,
    client: Coder,
    far: Coder,
    to_far: Pipe,
    to_client: Pipe,
    /// Decoded samples (scratch).
    pcm: Vec<i16>,
    /// Encoded bytes (scratch).
    bytes: Vec<u8>,
}

impl fmt::Debug for Transcoder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Transcoder")
            .field("client", &self.client_codec)
            .field("far", &self.far_codec)
            .finish()
    }
}

impl Transcoder {
    /// A transcoder between the client's `client` codec and the far end's `far`, its codecs
    /// opened from `libraries`; `None` when a library is missing or cannot open a codec.
    pub fn new(client: ClientCodec, far: FarCodec, libraries: CodecLibraries<'_>) -> Option<Self> {
        let client_coder = match client {
            ClientCodec::Speex(band) => Coder::Speex(band, libraries.speex?.open(band)?),
            ClientCodec::Opus => Coder::Opus(libraries.opus?.open()?),
        };
        let far_coder = match far {
            FarCodec::G711(law) => Coder::G711(law),
            FarCodec::Speex(band) => Coder::Speex(band, libraries.speex?.open(band)?),
        };
        let (client_rate, far_rate) = (client_coder.rate(), far_coder.rate());
        Some(Transcoder {
            client_codec: client,
            far_codec: far,
            client: client_coder,
            far: far_coder,
            to_far: Pipe::new(client_rate, far_rate)?,
            to_client: Pipe::new(far_rate, client_rate)?,
            pcm: Vec::with_capacity(MAX_OPUS_SAMPLES),
            bytes: Vec::with_capacity(1500),
        })
    }

    /// The client's codec.
    pub fn client_codec(&self) -> ClientCodec {
        self.client_codec
    }

    /// The far end's codec.
    pub fn far_codec(&self) -> FarCodec {
        self.far_codec
    }

    /// One client FLV audio body (its header included) at RTMP time `rtmp_ms`: each far-end
    /// payload it completes goes to `emit` (the RTMP time of its first sample, the payload).
    /// A body of another codec, a malformed packet or one without audio is dropped.
    pub fn client_to_far(&mut self, body: &[u8], rtmp_ms: u32, mut emit: impl FnMut(u32, Bytes)) {
        let Some(packet) = self.client_codec.packet(body) else {
            return;
        };
        self.pcm.clear();
        if !self.client.decode(packet, &mut self.pcm) {
            return;
        }
        self.to_far.push(
            &self.pcm,
            rtmp_ms,
            &mut self.far,
            &mut self.bytes,
            &mut emit,
        );
    }

    /// One far-end RTP payload whose first sample is at RTMP time `rtmp_ms`: each client frame
    /// it completes goes to `emit` (RTMP time, the packet without its FLV header, which is
    /// [`ClientCodec::flv_tag_header`]).
    pub fn far_to_client(
        &mut self,
        payload: &[u8],
        rtmp_ms: u32,
        mut emit: impl FnMut(u32, Bytes),
    ) {
        self.pcm.clear();
        if !self.far.decode(payload, &mut self.pcm) {
            return;
        }
        self.to_client.push(
            &self.pcm,
            rtmp_ms,
            &mut self.client,
            &mut self.bytes,
            &mut emit,
        );
    }

    /// The client restarted playback, or the far end's stream changed: drop the partial frame.
    pub fn reset(&mut self) {
        self.to_client.pending.clear();
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// A stand-in Speex codec for tests: a "packet" is the frame's samples, big-endian,
    /// behind valid Speex framing ([`PLAIN_FRAMING`]), so the transcoder's checks pass and the
    /// audio survives exactly.
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

    /// A stand-in Opus codec: a "packet" is a repeat count, then samples, big-endian, each
    /// standing for that many (so that a long steady packet fits the packet size limit); the
    /// encoder writes every sample once.
    #[derive(Debug, Default)]
    pub(crate) struct PlainOpus;

    struct PlainOpusCodec;

    impl OpusCodec for PlainOpusCodec {
        fn decode(&mut self, packet: &[u8], pcm: &mut Vec<i16>) -> usize {
            let Some((&repeat, samples)) = packet.split_first() else {
                return 0;
            };
            let n = samples.len() / 2 * usize::from(repeat);
            if samples.len() % 2 != 0 || n > MAX_OPUS_SAMPLES {
                return 0;
            }
            for b in samples.chunks_exact(2) {
                let s = i16::from_be_bytes([b[0], b[1]]);
                pcm.extend(std::iter::repeat_n(s, repeat.into()));
            }
            n
        }

        fn encode(&mut self, frame: &[i16], out: &mut Vec<u8>) {
            assert_eq!(frame.len(), opus::FRAME_SAMPLES);
            out.push(1);
            out.extend(frame.iter().flat_map(|s| s.to_be_bytes()));
        }
    }

    impl OpusCodecs for PlainOpus {
        fn open(&self) -> Option<Box<dyn OpusCodec>> {
            Some(Box::new(PlainOpusCodec))
        }
    }

    const LIBRARIES: CodecLibraries<'static> = CodecLibraries {
        speex: Some(&PlainCodecs),
        opus: Some(&PlainOpus),
    };

    fn speex_body(band: SpeexBand, level: i16) -> Vec<u8> {
        let mut body = vec![0xB2];
        Plain(band).encode(&vec![level; band.frame_samples()], &mut body);
        body
    }

    /// A client Opus message of `samples` samples at `level` (in [`PlainOpus`]'s packets).
    fn opus_body(level: i16, samples: usize) -> Vec<u8> {
        let mut body = opus::CODED_FRAMES_HEADER.to_vec();
        let repeat = samples.div_ceil(500);
        body.push(repeat as u8);
        for _ in 0..samples / repeat {
            body.extend(level.to_be_bytes());
        }
        body
    }

    fn collect(out: &mut Vec<(u32, Bytes)>) -> impl FnMut(u32, Bytes) + '_ {
        |ms, p| out.push((ms, p))
    }

    #[test]
    fn wideband_to_g711_and_back_is_regrouped_into_20ms_frames() {
        let mut t = Transcoder::new(
            ClientCodec::Speex(SpeexBand::Wideband),
            FarCodec::G711(G711Law::Ulaw),
            LIBRARIES,
        )
        .unwrap();
        let mut sent = Vec::new();
        t.client_to_far(
            &speex_body(SpeexBand::Wideband, 1000),
            40,
            collect(&mut sent),
        );
        assert_eq!(sent.len(), 1);
        assert_eq!((sent[0].0, sent[0].1.len()), (40, 160), "20 ms at 8 kHz");
        // 30 ms far-end packets become 20 ms frames, timed from their first sample.
        let mut got = Vec::new();
        for i in 0..4u32 {
            t.far_to_client(&[0xFF; 240], 1000 + 30 * i, |ms, p| got.push((ms, p.len())));
        }
        let times: Vec<u32> = got.iter().map(|g| g.0).collect();
        assert_eq!(times, [1000, 1020, 1040, 1060, 1080, 1100]);
        assert!(got.iter().all(|g| g.1 == 642));
    }

    #[test]
    fn opus_to_g711_is_resampled_from_48k_and_back() {
        let mut t =
            Transcoder::new(ClientCodec::Opus, FarCodec::G711(G711Law::Alaw), LIBRARIES).unwrap();
        // A steady level: after the filter's delay it comes out as the same level.
        let mut sent = Vec::new();
        for i in 0..5u32 {
            t.client_to_far(&opus_body(3000, 960), i * 20, collect(&mut sent));
        }
        assert_eq!(sent.len(), 5, "one G.711 payload per client message");
        assert!(sent.iter().all(|(_, p)| p.len() == 160));
        assert_eq!(sent[4].0, 80);
        let level = g711::alaw_to_linear(sent[4].1[80]);
        assert!((i32::from(level) - 3000).abs() < 100, "{level}");
        // A sequence start or a Speex body is not the client's audio.
        t.client_to_far(
            b"\x90OpusOpusHead\x01\x01\0\0\x80\xbb\0\0\0\0\0",
            0,
            collect(&mut sent),
        );
        t.client_to_far(&speex_body(SpeexBand::Wideband, 1), 0, collect(&mut sent));
        assert_eq!(sent.len(), 5);
        // Back: 8 kHz in 10 ms packets becomes 20 ms Opus frames at 48 kHz.
        let mut got = Vec::new();
        for i in 0..6u32 {
            let mut alaw = Vec::new();
            g711::encode_alaw(&[-2000; 80], &mut alaw);
            t.far_to_client(&alaw, 500 + 10 * i, collect(&mut got));
        }
        let times: Vec<u32> = got.iter().map(|g| g.0).collect();
        assert_eq!(times, [500, 520, 540]);
        let last: Vec<i16> = got[2].1[1..]
            .chunks_exact(2)
            .map(|b| i16::from_be_bytes([b[0], b[1]]))
            .collect();
        assert_eq!(last.len(), 960);
        assert!((i32::from(last[500]) + 2000).abs() < 100, "{}", last[500]);
    }

    #[test]
    fn opus_to_speex_makes_one_speex_frame_per_20ms_each_way() {
        for band in [SpeexBand::Wideband, SpeexBand::Narrowband] {
            let mut t =
                Transcoder::new(ClientCodec::Opus, FarCodec::Speex(band), LIBRARIES).unwrap();
            // 40 ms Opus packets: two Speex frames each, 20 ms apart.
            let mut sent = Vec::new();
            for i in 0..3u32 {
                t.client_to_far(&opus_body(500, 1920), i * 40, collect(&mut sent));
            }
            let times: Vec<u32> = sent.iter().map(|s| s.0).collect();
            assert_eq!(times, [0, 20, 40, 60, 80, 100], "{band:?}");
            assert!(sent
                .iter()
                .all(|(_, p)| p.len() == 2 + 2 * band.frame_samples()));
            let mut got = Vec::new();
            for (ms, p) in &sent {
                t.far_to_client(p, 1000 + ms, collect(&mut got));
            }
            assert_eq!(got.len(), 6, "{band:?}");
            assert!(got
                .iter()
                .all(|(_, p)| p.len() == 1 + 2 * opus::FRAME_SAMPLES));
        }
    }

    #[test]
    fn a_missing_library_makes_no_transcoder() {
        let speex_only = CodecLibraries {
            speex: Some(&PlainCodecs),
            opus: None,
        };
        let g711 = FarCodec::G711(G711Law::Ulaw);
        assert!(Transcoder::new(ClientCodec::Opus, g711, speex_only).is_none());
        assert!(!speex_only.can_transcode(ClientCodec::Opus, g711));
        let opus_only = CodecLibraries {
            speex: None,
            opus: Some(&PlainOpus),
        };
        assert!(opus_only.can_transcode(ClientCodec::Opus, g711));
        let speex = FarCodec::Speex(SpeexBand::Wideband);
        assert!(!opus_only.can_transcode(ClientCodec::Opus, speex));
        assert!(Transcoder::new(ClientCodec::Opus, speex, opus_only).is_none());
        assert!(LIBRARIES.can_transcode(ClientCodec::Opus, speex));
    }

    fn clients() -> [ClientCodec; 3] {
        [
            ClientCodec::Speex(SpeexBand::Wideband),
            ClientCodec::Speex(SpeexBand::Narrowband),
            ClientCodec::Opus,
        ]
    }

    fn fars() -> [FarCodec; 3] {
        [
            FarCodec::G711(G711Law::Alaw),
            FarCodec::Speex(SpeexBand::Wideband),
            FarCodec::Speex(SpeexBand::Narrowband),
        ]
    }

    proptest::proptest! {
        /// Hostile input both ways, every pairing: any client body, any far-end payload. No
        /// panic; what goes out is bounded, and audio is regrouped into whole frames with
        /// less than one frame left over.
        #[test]
        fn arbitrary_input_either_way_stays_bounded(
            client in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..1600),
            far in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..1500),
            client_codec in proptest::sample::select(clients().to_vec()),
            far_codec in proptest::sample::select(fars().to_vec()),
            header in proptest::prelude::any::<bool>(),
        ) {
            let mut t = Transcoder::new(client_codec, far_codec, LIBRARIES).unwrap();
            // Half the time the client's body starts with its codec's header.
            let mut body = if header { client_codec.flv_tag_header().to_vec() } else { Vec::new() };
            body.extend_from_slice(&client);
            let far_frame = t.far.frame();
            let mut sent = 0;
            t.client_to_far(&body, 0, |_, p| {
                sent += 1;
                match far_frame {
                    Some(n) => assert_eq!(p.len(), 2 + 2 * n),
                    None => assert!(p.len() <= MAX_FRAMES * 160),
                }
            });
            proptest::prop_assert!(sent <= MAX_OPUS_SAMPLES / 160);
            let n = t.client.frame().unwrap();
            let mut frames = 0;
            t.far_to_client(&far, 0, |_, _| frames += 1);
            proptest::prop_assert!(frames <= 1500 * 6 / n);
            proptest::prop_assert!(t.to_client.pending.len() < n);
            if let Some(m) = t.far.frame() {
                proptest::prop_assert!(t.to_far.pending.len() < m);
            }
        }
    }

    #[test]
    fn malformed_or_oversized_client_packets_are_dropped() {
        let mut t = Transcoder::new(
            ClientCodec::Speex(SpeexBand::Narrowband),
            FarCodec::G711(G711Law::Alaw),
            LIBRARIES,
        )
        .unwrap();
        let mut sent = Vec::new();
        t.client_to_far(&[], 0, collect(&mut sent));
        t.client_to_far(&[0xB2], 0, collect(&mut sent));
        // Mode 9 is invalid.
        t.client_to_far(&[0xB2, 0b0100_1000], 0, collect(&mut sent));
        // Valid framing but the codec finds nothing.
        t.client_to_far(
            &[0xB2, PLAIN_FRAMING[0], PLAIN_FRAMING[1], 1],
            0,
            collect(&mut sent),
        );
        assert!(sent.is_empty());
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
        #[derive(Debug)]
        struct Counting(std::sync::Arc<std::sync::atomic::AtomicUsize>);
        impl SpeexCodecs for Counting {
            fn open(&self, _: SpeexBand) -> Option<Box<dyn SpeexCodec>> {
                Some(Box::new(Count(self.0.clone())))
            }
        }
        let asked = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let counting = Counting(asked.clone());
        let libraries = CodecLibraries {
            speex: Some(&counting),
            opus: None,
        };
        let mut counted = Transcoder::new(
            ClientCodec::Speex(SpeexBand::Narrowband),
            FarCodec::G711(G711Law::Ulaw),
            libraries,
        )
        .unwrap();
        counted.client_to_far(&[0xB2, 0x00, 0x12], 0, collect(&mut sent));
        assert_eq!(asked.load(std::sync::atomic::Ordering::Relaxed), 2);
        assert_eq!(sent[0].1.len(), 320);
        // An Opus packet over the limit is not given to the codec.
        let mut t =
            Transcoder::new(ClientCodec::Opus, FarCodec::G711(G711Law::Ulaw), LIBRARIES).unwrap();
        sent.clear();
        let mut long = opus::CODED_FRAMES_HEADER.to_vec();
        long.push(1);
        long.extend([0; MAX_OPUS_PACKET + 1]);
        t.client_to_far(&long, 0, collect(&mut sent));
        assert!(sent.is_empty());
        long.truncate(5 + 1 + 2 * 480);
        t.client_to_far(&long, 0, collect(&mut sent));
        assert_eq!(sent.len(), 1, "the same, within the limit");
    }
}
