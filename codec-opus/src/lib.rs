//! A safe wrapper over the system libopus: [`Encoder`] and [`Decoder`] for 16-bit PCM at any
//! rate libopus supports (the gateway uses 48 kHz mono, 20 ms frames). The crate owns the FFI
//! declarations (the private `ffi` module) and the rules that keep hostile packets inside
//! bounds (see the README). With the `gateway` feature, `gateway::Codecs` is the gateway's
//! transcoding codec.

use std::ffi::c_int;
use std::fmt;
use std::ptr::NonNull;

mod ffi;
#[cfg(feature = "gateway")]
pub mod gateway;

/// Whether this build links libopus. Without it (the build found no `libopus-dev`) no
/// [`Encoder`] or [`Decoder`] can be made: their `new` answers `None`.
///
/// ```
/// use siprtmp_codec_opus::{is_available, Decoder};
/// assert_eq!(Decoder::new(48_000, 1).is_some(), is_available());
/// ```
pub fn is_available() -> bool {
    cfg!(opus_linked)
}

/// The linked library's version string (`libopus 1.3.1`), or `none` without one.
pub fn version() -> String {
    // SAFETY: the function returns a pointer to a static, NUL-terminated string.
    let text = unsafe { std::ffi::CStr::from_ptr(ffi::opus_get_version_string()) };
    text.to_string_lossy().into_owned()
}

/// The sample rates libopus codes at (it resamples internally to and from 48 kHz).
pub const SAMPLE_RATES: [u32; 5] = [8000, 12_000, 16_000, 24_000, 48_000];

/// The longest packet a [`Decoder`] accepts, in bytes: one datagram. A 20 ms frame at the
/// highest bit rate is 1275 bytes; RTMP clients and RTP peers send a few hundred at most.
pub const MAX_PACKET: usize = 1500;

/// The longest audio one packet holds (RFC 6716: 120 ms), the bound of what one decode writes.
pub const MAX_PACKET_MS: u32 = 120;

/// The output buffer an encode gets: what libopus's documentation recommends, enough for
/// any frame at any bit rate.
const MAX_ENCODED: usize = 4000;

/// What the encoder is tuned for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Application {
    /// Speech: favours intelligibility (`OPUS_APPLICATION_VOIP`).
    Voip,
    /// Music and mixed content: favours fidelity to the input (`OPUS_APPLICATION_AUDIO`).
    Audio,
}

/// An audio bandwidth Opus codes (`OPUS_BANDWIDTH_*`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Bandwidth {
    /// 4 kHz (8 kHz sampling).
    Narrowband,
    /// 6 kHz (12 kHz sampling).
    Mediumband,
    /// 8 kHz (16 kHz sampling).
    Wideband,
    /// 12 kHz (24 kHz sampling).
    SuperWideband,
    /// 20 kHz (48 kHz sampling).
    Fullband,
}

impl Bandwidth {
    fn code(self) -> i32 {
        match self {
            Bandwidth::Narrowband => 1101,
            Bandwidth::Mediumband => 1102,
            Bandwidth::Wideband => 1103,
            Bandwidth::SuperWideband => 1104,
            Bandwidth::Fullband => 1105,
        }
    }
}

/// Why a packet could not be decoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum DecodeError {
    /// Empty, or longer than [`MAX_PACKET`].
    BadLength(usize),
    /// libopus refused it (its error code: `OPUS_INVALID_PACKET` is -4).
    Invalid(i32),
}

impl fmt::Display for DecodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DecodeError::BadLength(n) => write!(f, "a {n}-byte Opus packet"),
            DecodeError::Invalid(code) => write!(f, "libopus refused the packet ({code})"),
        }
    }
}

impl std::error::Error for DecodeError {}

/// Why a frame could not be encoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum EncodeError {
    /// Not a frame duration Opus codes (2.5, 5, 10, 20, 40 or 60 ms of every channel): the
    /// number of samples given.
    FrameSize(usize),
    /// libopus failed (its error code).
    Failed(i32),
}

impl fmt::Display for EncodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            EncodeError::FrameSize(n) => write!(f, "{n} samples are not an Opus frame"),
            EncodeError::Failed(code) => write!(f, "libopus could not encode ({code})"),
        }
    }
}

impl std::error::Error for EncodeError {}

fn valid_rate(rate: u32) -> bool {
    SAMPLE_RATES.contains(&rate)
}

/// An Opus decoder: packets in, interleaved 16-bit PCM out (see [`Decoder::decode`]).
pub struct Decoder {
    state: NonNull<ffi::OpusDecoder>,
    rate: u32,
    channels: u8,
}

// SAFETY: the decoder state is owned by this value alone and libopus keeps no thread-affine or
// global mutable state: moving it to another thread is sound.
unsafe impl Send for Decoder {}

impl fmt::Debug for Decoder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Decoder")
            .field("rate", &self.rate)
            .field("channels", &self.channels)
            .finish()
    }
}

impl Decoder {
    /// A decoder to `rate` Hz (one of [`SAMPLE_RATES`]) and `channels` (1 or 2; a stereo
    /// stream decodes to mono and the reverse). `None` for other values, or when libopus is
    /// missing or cannot allocate one.
    pub fn new(rate: u32, channels: u8) -> Option<Self> {
        if !valid_rate(rate) || !(1..=2).contains(&channels) {
            return None;
        }
        let mut error: c_int = 0;
        // SAFETY: the rate and channel count are ones libopus accepts; `error` is writable.
        let state = unsafe { ffi::opus_decoder_create(rate as i32, channels.into(), &mut error) };
        let state = NonNull::new(state)?;
        if error != ffi::OPUS_OK {
            // SAFETY: created above, destroyed once.
            unsafe { ffi::opus_decoder_destroy(state.as_ptr()) };
            return None;
        }
        Some(Decoder {
            state,
            rate,
            channels,
        })
    }

    /// The rate it decodes to.
    pub fn rate(&self) -> u32 {
        self.rate
    }

    /// The most samples of each channel one packet can give: [`MAX_PACKET_MS`] at the rate.
    pub fn max_samples(&self) -> usize {
        (self.rate * MAX_PACKET_MS / 1000) as usize
    }

    /// Decodes one packet and appends its samples (interleaved when stereo) to `pcm`; returns
    /// how many samples of each channel, at most [`Decoder::max_samples`]. On an error
    /// nothing is appended and the decoder stays usable.
    pub fn decode(&mut self, packet: &[u8], pcm: &mut Vec<i16>) -> Result<usize, DecodeError> {
        // An empty packet means "lost" to libopus (it would conceal): refuse it here.
        if packet.is_empty() || packet.len() > MAX_PACKET {
            return Err(DecodeError::BadLength(packet.len()));
        }
        let max = self.max_samples();
        let channels = usize::from(self.channels);
        let start = pcm.len();
        pcm.resize(start + max * channels, 0);
        // SAFETY: the state is a live decoder; `packet` is `packet.len()` readable bytes
        // (bounded above, so it fits an i32); `pcm[start..]` has room for `max` samples of
        // every channel, the most libopus writes when told `frame_size = max` (it refuses a
        // packet that would need more).
        let n = unsafe {
            ffi::opus_decode(
                self.state.as_ptr(),
                packet.as_ptr(),
                packet.len() as i32,
                pcm[start..].as_mut_ptr(),
                max as c_int,
                0,
            )
        };
        if n < 0 {
            pcm.truncate(start);
            return Err(DecodeError::Invalid(n));
        }
        let n = (n as usize).min(max);
        pcm.truncate(start + n * channels);
        Ok(n)
    }
}

impl Drop for Decoder {
    fn drop(&mut self) {
        // SAFETY: created by opus_decoder_create, destroyed once.
        unsafe { ffi::opus_decoder_destroy(self.state.as_ptr()) };
    }
}

/// An Opus encoder: one frame of interleaved 16-bit PCM in, one packet out (see
/// [`Encoder::encode`]).
pub struct Encoder {
    state: NonNull<ffi::OpusEncoder>,
    rate: u32,
    channels: u8,
}

// SAFETY: as for `Decoder`.
unsafe impl Send for Encoder {}

impl fmt::Debug for Encoder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Encoder")
            .field("rate", &self.rate)
            .field("channels", &self.channels)
            .finish()
    }
}

impl Encoder {
    /// An encoder of `channels` (1 or 2) at `rate` Hz (one of [`SAMPLE_RATES`]), tuned for
    /// `application`, at libopus's default bit rate. `None` for other values, or when libopus
    /// is missing or cannot allocate one.
    pub fn new(rate: u32, channels: u8, application: Application) -> Option<Self> {
        if !valid_rate(rate) || !(1..=2).contains(&channels) {
            return None;
        }
        let application = match application {
            Application::Voip => ffi::OPUS_APPLICATION_VOIP,
            Application::Audio => ffi::OPUS_APPLICATION_AUDIO,
        };
        let mut error: c_int = 0;
        // SAFETY: valid rate, channel count and application; `error` is writable.
        let state = unsafe {
            ffi::opus_encoder_create(rate as i32, channels.into(), application, &mut error)
        };
        let state = NonNull::new(state)?;
        let encoder = Encoder {
            state,
            rate,
            channels,
        };
        (error == ffi::OPUS_OK).then_some(encoder)
    }

    fn set(&mut self, request: c_int, value: i32) -> bool {
        // SAFETY: a live encoder, and every request passed here reads one opus_int32.
        unsafe { ffi::encoder_set(self.state.as_ptr(), request, value) == ffi::OPUS_OK }
    }

    /// Sets the target bit rate in bit/s (libopus takes 500 to 512,000); false if refused.
    pub fn set_bitrate(&mut self, bits_per_second: u32) -> bool {
        let value = bits_per_second.min(512_000) as i32;
        self.set(ffi::OPUS_SET_BITRATE_REQUEST, value)
    }

    /// Sets the complexity, 0 (cheapest) to 10 (best; clamped); false if refused.
    pub fn set_complexity(&mut self, complexity: u8) -> bool {
        self.set(ffi::OPUS_SET_COMPLEXITY_REQUEST, complexity.min(10).into())
    }

    /// Caps the audio bandwidth coded: for input that has nothing above it (audio that was
    /// 8 or 16 kHz before), a narrower band lets libopus use its speech coder alone, at a
    /// fraction of the CPU of its full-band modes.
    pub fn set_max_bandwidth(&mut self, bandwidth: Bandwidth) -> bool {
        self.set(ffi::OPUS_SET_MAX_BANDWIDTH_REQUEST, bandwidth.code())
    }

    /// Tells the encoder its input is speech (it then favours its speech mode).
    pub fn set_voice(&mut self) -> bool {
        self.set(ffi::OPUS_SET_SIGNAL_REQUEST, ffi::OPUS_SIGNAL_VOICE)
    }

    /// The samples of each channel in a frame of `tenths_ms` tenths of a millisecond.
    fn samples_in(&self, tenths_ms: u32) -> usize {
        (self.rate / 100 * tenths_ms / 100) as usize
    }

    /// Encodes one frame: `pcm` holds 2.5, 5, 10, 20, 40 or 60 ms of every channel,
    /// interleaved. The packet is appended to `out`; returns its length.
    pub fn encode(&mut self, pcm: &[i16], out: &mut Vec<u8>) -> Result<usize, EncodeError> {
        let channels = usize::from(self.channels);
        let per_channel = pcm.len() / channels;
        let valid = [25, 50, 100, 200, 400, 600]
            .iter()
            .any(|&t| self.samples_in(t) == per_channel);
        if per_channel * channels != pcm.len() || !valid {
            return Err(EncodeError::FrameSize(pcm.len()));
        }
        let start = out.len();
        out.resize(start + MAX_ENCODED, 0);
        // SAFETY: a live encoder; `pcm` holds `per_channel` samples of every channel (checked
        // above), which is what libopus reads; `out[start..]` has MAX_ENCODED writable bytes,
        // the most it writes when told so.
        let n = unsafe {
            ffi::opus_encode(
                self.state.as_ptr(),
                pcm.as_ptr(),
                per_channel as c_int,
                out[start..].as_mut_ptr(),
                MAX_ENCODED as i32,
            )
        };
        if n < 0 {
            out.truncate(start);
            return Err(EncodeError::Failed(n));
        }
        let n = (n as usize).min(MAX_ENCODED);
        out.truncate(start + n);
        Ok(n)
    }
}

impl Drop for Encoder {
    fn drop(&mut self) {
        // SAFETY: created by opus_encoder_create, destroyed once.
        unsafe { ffi::opus_encoder_destroy(self.state.as_ptr()) };
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// A tone of `freq` Hz at `rate`, `n` samples.
    fn tone(freq: f64, rate: u32, n: usize) -> Vec<i16> {
        (0..n)
            .map(|i| {
                let t = i as f64 / f64::from(rate);
                (8000.0 * (2.0 * std::f64::consts::PI * freq * t).sin()) as i16
            })
            .collect()
    }

    fn energy(x: &[i16]) -> f64 {
        x.iter().map(|&s| f64::from(s).powi(2)).sum::<f64>() / x.len().max(1) as f64
    }

    #[test]
    fn the_library_is_linked_here() {
        // The test machines install libopus-dev (scripts/test.sh): a build without it would
        // pass every other test here vacuously.
        assert!(is_available(), "built without libopus");
        assert!(version().starts_with("libopus "), "{}", version());
    }

    #[test]
    fn a_tone_survives_encode_and_decode_at_every_rate() {
        for rate in SAMPLE_RATES {
            let mut enc = Encoder::new(rate, 1, Application::Voip).unwrap();
            assert!(enc.set_bitrate(32_000));
            let mut dec = Decoder::new(rate, 1).unwrap();
            let n = rate as usize / 50;
            let input = tone(440.0, rate, n * 50);
            let mut output = Vec::new();
            for frame in input.chunks(n) {
                let mut packet = Vec::new();
                let len = enc.encode(frame, &mut packet).unwrap();
                assert!(len > 2 && len < 400, "{rate}: {len}-byte packet");
                assert_eq!(dec.decode(&packet, &mut output), Ok(n));
            }
            assert_eq!(output.len(), input.len());
            // After the codec's start-up, the tone's energy is kept within a factor of 2.
            let (a, b) = (energy(&input[n * 10..]), energy(&output[n * 10..]));
            assert!(b > a / 2.0 && b < a * 2.0, "{rate}: {a} in, {b} out");
        }
    }

    #[test]
    fn a_mono_decoder_reads_a_stereo_stream() {
        let mut enc = Encoder::new(48_000, 2, Application::Audio).unwrap();
        let mut dec = Decoder::new(48_000, 1).unwrap();
        let mono = tone(1000.0, 48_000, 960);
        let stereo: Vec<i16> = mono.iter().flat_map(|&s| [s, s]).collect();
        let mut packet = Vec::new();
        enc.encode(&stereo, &mut packet).unwrap();
        let mut pcm = Vec::new();
        assert_eq!(dec.decode(&packet, &mut pcm), Ok(960));
        assert_eq!(pcm.len(), 960);
    }

    #[test]
    fn only_opus_frame_durations_are_encoded() {
        let mut enc = Encoder::new(48_000, 1, Application::Voip).unwrap();
        let mut out = Vec::new();
        for ok in [120, 240, 480, 960, 1920, 2880] {
            assert!(enc.encode(&vec![0; ok], &mut out).is_ok(), "{ok}");
        }
        for bad in [0, 1, 959, 961, 3000] {
            out.clear();
            assert_eq!(
                enc.encode(&vec![0; bad], &mut out),
                Err(EncodeError::FrameSize(bad))
            );
            assert!(out.is_empty());
        }
        let mut stereo = Encoder::new(48_000, 2, Application::Voip).unwrap();
        assert!(stereo.encode(&[0; 1921], &mut out).is_err());
        assert!(Encoder::new(44_100, 1, Application::Voip).is_none());
        assert!(Decoder::new(48_000, 3).is_none());
    }

    #[test]
    fn bad_packets_are_refused_and_leave_nothing() {
        let mut dec = Decoder::new(48_000, 1).unwrap();
        let mut pcm = vec![7];
        assert_eq!(dec.decode(&[], &mut pcm), Err(DecodeError::BadLength(0)));
        let big = vec![0u8; MAX_PACKET + 1];
        assert_eq!(
            dec.decode(&big, &mut pcm),
            Err(DecodeError::BadLength(MAX_PACKET + 1))
        );
        // Code 3 (an arbitrary number of frames) announcing 0 frames: invalid (RFC 6716 3.2.5).
        assert_eq!(
            dec.decode(&[0x03, 0x00], &mut pcm),
            Err(DecodeError::Invalid(-4))
        );
        assert_eq!(pcm, [7], "nothing appended");
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(2000))]
        /// Hostile packets: any bytes, any length up to past a datagram, any rate and channel
        /// count. Never a panic or a crash; what is written is at most 120 ms of whole
        /// 2.5 ms steps, and the decoder is usable afterwards.
        #[test]
        fn arbitrary_packets_decode_or_fail_within_bounds(
            data in proptest::collection::vec(any::<u8>(), 0..1600),
            rate in proptest::sample::select(SAMPLE_RATES.to_vec()),
            stereo in any::<bool>(),
        ) {
            let channels = if stereo { 2 } else { 1 };
            let mut dec = Decoder::new(rate, channels).unwrap();
            let mut pcm = Vec::new();
            match dec.decode(&data, &mut pcm) {
                Ok(n) => {
                    prop_assert!(n <= dec.max_samples());
                    prop_assert_eq!(n % (rate as usize / 400), 0);
                    prop_assert_eq!(pcm.len(), n * usize::from(channels));
                }
                Err(_) => prop_assert!(pcm.is_empty()),
            }
            let mut enc = Encoder::new(rate, channels, Application::Voip).unwrap();
            let mut packet = Vec::new();
            let frame = vec![0; rate as usize / 50 * usize::from(channels)];
            enc.encode(&frame, &mut packet).unwrap();
            prop_assert_eq!(dec.decode(&packet, &mut Vec::new()), Ok(rate as usize / 50));
        }
    }
}
