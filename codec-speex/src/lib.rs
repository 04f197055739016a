//! A safe wrapper over the system libspeex: [`Encoder`] and [`Decoder`] for narrowband (8 kHz)
//! and wideband (16 kHz) Speex, 20 ms frames. The crate owns the FFI declarations (the
//! private `ffi` module) and the rules that keep hostile packets inside bounds (see the
//! README). With the `gateway` feature, `gateway::Codecs` is the gateway's transcoding codec.

use std::fmt;

mod ffi;
#[cfg(feature = "gateway")]
pub mod gateway;

/// Whether this build links libspeex. Without it (the build found no `libspeex-dev`) no
/// [`Encoder`] or [`Decoder`] can be made: their `new` answers `None`.
///
/// ```
/// use siprtmp_codec_speex::{is_available, Band, Decoder};
/// assert_eq!(Decoder::new(Band::Wideband).is_some(), is_available());
/// ```
pub fn is_available() -> bool {
    cfg!(speex_linked)
}

/// The longest packet a [`Decoder`] accepts, in bytes: a 20 ms wideband frame at the highest
/// quality is 106 bytes, so this allows several frames and refuses datagram-sized garbage.
pub const MAX_PACKET: usize = 1500;

/// The most frames decoded from one packet (Flash sends one or two per message).
pub const MAX_FRAMES_PER_PACKET: usize = 16;

/// Speex's band: which rate the codec runs at.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Band {
    /// 8 kHz, 160 samples per 20 ms frame.
    Narrowband,
    /// 16 kHz, 320 samples per 20 ms frame.
    Wideband,
}

impl Band {
    /// Samples per frame at this band's rate.
    pub fn frame_samples(self) -> usize {
        match self {
            Band::Narrowband => 160,
            Band::Wideband => 320,
        }
    }

    /// The sample rate in Hz.
    pub fn sample_rate(self) -> u32 {
        match self {
            Band::Narrowband => 8000,
            Band::Wideband => 16_000,
        }
    }

    fn mode(self) -> *const ffi::SpeexMode {
        let id = match self {
            Band::Narrowband => ffi::SPEEX_MODEID_NB,
            Band::Wideband => ffi::SPEEX_MODEID_WB,
        };
        // SAFETY: the mode ids 0 and 1 always exist; the function returns a pointer to a
        // static table of the library.
        unsafe { ffi::speex_lib_get_mode(id) }
    }
}

/// Why a packet could not be decoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum DecodeError {
    /// Empty, or longer than [`MAX_PACKET`].
    BadLength(usize),
    /// libspeex found no valid frame in it.
    Corrupt,
}

impl fmt::Display for DecodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DecodeError::BadLength(n) => write!(f, "a {n}-byte Speex packet"),
            DecodeError::Corrupt => f.write_str("no valid Speex frame in the packet"),
        }
    }
}

impl std::error::Error for DecodeError {}

/// A `SpeexBits` owned by Rust, initialised and destroyed with the library's functions.
struct Bits(Box<ffi::SpeexBits>);

impl Bits {
    fn new() -> Self {
        let mut bits = Box::new(ffi::SpeexBits::zeroed());
        // SAFETY: `bits` is a valid, exclusively owned SpeexBits; init allocates its buffer.
        unsafe { ffi::speex_bits_init(&mut *bits) };
        Bits(bits)
    }
}

impl Drop for Bits {
    fn drop(&mut self) {
        // SAFETY: initialised in `new`, destroyed once.
        unsafe { ffi::speex_bits_destroy(&mut *self.0) };
    }
}

/// A Speex decoder: packets in, 16-bit PCM out (see [`Decoder::decode`]).
pub struct Decoder {
    state: *mut std::ffi::c_void,
    bits: Bits,
    band: Band,
}

// SAFETY: the decoder state and bits are owned by this value alone and libspeex keeps no
// thread-affine or global mutable state: moving them to another thread is sound.
unsafe impl Send for Decoder {}

impl fmt::Debug for Decoder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Decoder").field("band", &self.band).finish()
    }
}

impl Decoder {
    /// A decoder for `band` (perceptual enhancement on, the library's default). `None` if
    /// libspeex could not allocate one.
    pub fn new(band: Band) -> Option<Self> {
        // SAFETY: `band.mode()` is a valid mode pointer.
        let state = unsafe { ffi::speex_decoder_init(band.mode()) };
        if state.is_null() {
            return None;
        }
        Some(Decoder {
            state,
            bits: Bits::new(),
            band,
        })
    }

    /// The band it decodes to.
    pub fn band(&self) -> Band {
        self.band
    }

    /// Decodes every frame of `packet` (at most [`MAX_FRAMES_PER_PACKET`]) and appends their
    /// samples to `pcm`; returns how many frames. A wideband decoder also decodes narrowband
    /// frames (the high band is silent) and a narrowband one skips wideband layers. Stops at
    /// the packet's end, its terminator, or the first corrupt frame: an error only if no frame
    /// at all was good.
    pub fn decode(&mut self, packet: &[u8], pcm: &mut Vec<i16>) -> Result<usize, DecodeError> {
        self.decode_at_most(packet, MAX_FRAMES_PER_PACKET, pcm)
    }

    /// [`Decoder::decode`] of the first `max_frames` frames only (never more than
    /// [`MAX_FRAMES_PER_PACKET`]): libspeex does not read what follows them. A caller that
    /// has walked the packet's framing passes the number of well-formed frames, so a corrupt
    /// tail is never decoded (libspeex prints a warning on stderr for each corrupt frame).
    pub fn decode_at_most(
        &mut self,
        packet: &[u8],
        max_frames: usize,
        pcm: &mut Vec<i16>,
    ) -> Result<usize, DecodeError> {
        if packet.is_empty() || packet.len() > MAX_PACKET {
            return Err(DecodeError::BadLength(packet.len()));
        }
        let samples = self.band.frame_samples();
        let bits: *mut ffi::SpeexBits = &mut *self.bits.0;
        // SAFETY: `bits` is initialised; read_from copies `packet.len()` bytes (bounded
        // above, so the length fits a C int) into the bits' own buffer.
        unsafe {
            ffi::speex_bits_read_from(
                bits,
                packet.as_ptr().cast(),
                packet.len() as std::ffi::c_int,
            )
        };
        let mut frames = 0;
        while frames < max_frames.min(MAX_FRAMES_PER_PACKET) {
            // Fewer than 5 bits cannot hold a frame: it is the padding of the last byte.
            // SAFETY: `bits` is initialised.
            if unsafe { ffi::speex_bits_remaining(bits) } < 5 {
                break;
            }
            let start = pcm.len();
            pcm.resize(start + samples, 0);
            // SAFETY: the state is a live decoder of `band`, which writes exactly
            // `frame_samples()` samples, and `pcm[start..]` has that many.
            let status =
                unsafe { ffi::speex_decode_int(self.state, bits, pcm[start..].as_mut_ptr()) };
            if status != 0 {
                pcm.truncate(start);
                break;
            }
            frames += 1;
        }
        if frames == 0 {
            return Err(DecodeError::Corrupt);
        }
        Ok(frames)
    }
}

impl Drop for Decoder {
    fn drop(&mut self) {
        // SAFETY: created by speex_decoder_init, destroyed once.
        unsafe { ffi::speex_decoder_destroy(self.state) };
    }
}

/// A Speex encoder: one frame of 16-bit PCM in, one packet out (see [`Encoder::encode`]).
pub struct Encoder {
    state: *mut std::ffi::c_void,
    bits: Bits,
    band: Band,
    scratch: Vec<i16>,
}

// SAFETY: as for `Decoder`.
unsafe impl Send for Encoder {}

impl fmt::Debug for Encoder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Encoder").field("band", &self.band).finish()
    }
}

impl Encoder {
    /// An encoder for `band` at `quality` (0 to 10, clamped; libspeex's default is 8:
    /// 15 kbit/s narrowband, 27.8 kbit/s wideband). `None` if libspeex could not allocate one.
    pub fn new(band: Band, quality: u8) -> Option<Self> {
        // SAFETY: `band.mode()` is a valid mode pointer.
        let state = unsafe { ffi::speex_encoder_init(band.mode()) };
        if state.is_null() {
            return None;
        }
        let mut q: std::ffi::c_int = quality.min(10).into();
        // SAFETY: SET_QUALITY reads one C int through the pointer.
        unsafe {
            ffi::speex_encoder_ctl(state, ffi::SPEEX_SET_QUALITY, (&mut q as *mut i32).cast())
        };
        Some(Encoder {
            state,
            bits: Bits::new(),
            band,
            scratch: vec![0; band.frame_samples()],
        })
    }

    /// The band it encodes.
    pub fn band(&self) -> Band {
        self.band
    }

    /// Encodes one frame: `pcm` is [`Band::frame_samples`] samples (fewer are padded with
    /// silence, more are cut). The packet (terminated the way `speexenc` terminates one) is
    /// appended to `out`; returns its length.
    pub fn encode(&mut self, pcm: &[i16], out: &mut Vec<u8>) -> usize {
        let n = pcm.len().min(self.scratch.len());
        self.scratch[..n].copy_from_slice(&pcm[..n]);
        self.scratch[n..].fill(0);
        let bits: *mut ffi::SpeexBits = &mut *self.bits.0;
        // SAFETY: `bits` is initialised; the encoder reads exactly `frame_samples()` samples
        // from `scratch` (its own copy: the C signature takes a mutable pointer).
        unsafe {
            ffi::speex_bits_reset(bits);
            ffi::speex_encode_int(self.state, self.scratch.as_mut_ptr(), bits);
            ffi::speex_bits_insert_terminator(bits);
        }
        // SAFETY: `bits` is initialised.
        let len = unsafe { ffi::speex_bits_nbytes(bits) }.max(0) as usize;
        let start = out.len();
        out.resize(start + len, 0);
        // SAFETY: `out[start..]` has `len` writable bytes, the most write copies.
        let written = unsafe {
            ffi::speex_bits_write(
                bits,
                out[start..].as_mut_ptr().cast(),
                len as std::ffi::c_int,
            )
        }
        .clamp(0, len as std::ffi::c_int) as usize;
        out.truncate(start + written);
        written
    }
}

impl Drop for Encoder {
    fn drop(&mut self) {
        // SAFETY: created by speex_encoder_init, destroyed once.
        unsafe { ffi::speex_encoder_destroy(self.state) };
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// A tone of `freq` Hz at `rate`, `frames` frames of `samples`.
    fn tone(freq: f64, rate: u32, samples: usize, frames: usize) -> Vec<i16> {
        (0..samples * frames)
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
    fn a_tone_survives_encode_and_decode_in_both_bands() {
        for band in [Band::Narrowband, Band::Wideband] {
            let mut enc = Encoder::new(band, 8).unwrap();
            let mut dec = Decoder::new(band).unwrap();
            let n = band.frame_samples();
            let input = tone(440.0, band.sample_rate(), n, 50);
            let mut output = Vec::new();
            for frame in input.chunks(n) {
                let mut packet = Vec::new();
                let len = enc.encode(frame, &mut packet);
                assert!(len > 10 && len < 110, "{band:?}: {len}-byte packet");
                assert_eq!(dec.decode(&packet, &mut output), Ok(1));
            }
            assert_eq!(output.len(), input.len());
            // After the codec's start-up, the tone's energy is kept within a factor of 2.
            let (a, b) = (energy(&input[n * 10..]), energy(&output[n * 10..]));
            assert!(b > a / 2.0 && b < a * 2.0, "{band:?}: {a} in, {b} out");
        }
    }

    #[test]
    fn a_wideband_decoder_reads_narrowband_frames() {
        let mut enc = Encoder::new(Band::Narrowband, 8).unwrap();
        let mut dec = Decoder::new(Band::Wideband).unwrap();
        let mut packet = Vec::new();
        enc.encode(&tone(300.0, 8000, 160, 1), &mut packet);
        let mut pcm = Vec::new();
        assert_eq!(dec.decode(&packet, &mut pcm), Ok(1));
        assert_eq!(pcm.len(), 320);
    }

    #[test]
    fn bad_lengths_are_refused_before_libspeex() {
        let mut dec = Decoder::new(Band::Wideband).unwrap();
        let mut pcm = Vec::new();
        assert_eq!(dec.decode(&[], &mut pcm), Err(DecodeError::BadLength(0)));
        let big = vec![0u8; MAX_PACKET + 1];
        assert_eq!(
            dec.decode(&big, &mut pcm),
            Err(DecodeError::BadLength(MAX_PACKET + 1))
        );
        // A terminator alone (mode 15) holds no frame.
        assert_eq!(dec.decode(&[0x7f], &mut pcm), Err(DecodeError::Corrupt));
        assert!(pcm.is_empty());
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(2000))]
        /// Hostile packets: any bytes, any length up to a datagram. Never a panic or a
        /// crash, whole frames only, never more than the frame limit.
        #[test]
        fn arbitrary_packets_decode_or_fail_within_bounds(
            data in proptest::collection::vec(any::<u8>(), 0..1600),
            wide in any::<bool>(),
        ) {
            let band = if wide { Band::Wideband } else { Band::Narrowband };
            let mut dec = Decoder::new(band).unwrap();
            let mut pcm = Vec::new();
            match dec.decode(&data, &mut pcm) {
                Ok(frames) => {
                    prop_assert!((1..=MAX_FRAMES_PER_PACKET).contains(&frames));
                    prop_assert_eq!(pcm.len(), frames * band.frame_samples());
                }
                Err(_) => prop_assert!(pcm.is_empty()),
            }
            // The decoder is still usable afterwards.
            let mut enc = Encoder::new(band, 4).unwrap();
            let mut packet = Vec::new();
            enc.encode(&[0; 320], &mut packet);
            prop_assert_eq!(dec.decode(&packet, &mut Vec::new()), Ok(1));
        }
    }
}
