//! 16 kHz <-> 8 kHz resampling for the gateway's transcoding ([`super::transcode`]):
//! [`Downsampler`] (decimation by 2) and [`Upsampler`] (interpolation by 2), both polyphase
//! FIR filters over one windowed-sinc low-pass.
//!
//! The filter: [`TAPS`] taps, cutoff 3.7 kHz at 16 kHz (just under the 4 kHz Nyquist frequency
//! of the 8 kHz side, where telephony audio ends anyway), Blackman window (stop band about
//! -74 dB), unity gain at DC. Decimating filters then keeps every second output; interpolating
//! puts a zero between samples and filters with gain 2, computed as two phases of half the
//! taps each so no multiplication by an inserted zero is done. Each keeps the last input
//! samples of the previous call, so 20 ms frames join without a seam. The delay is
//! `(TAPS - 1) / 2` samples at 16 kHz (about 1.5 ms) each way.

use std::sync::OnceLock;

/// Filter length (even, so the two polyphase halves are equal).
pub const TAPS: usize = 48;

/// Cutoff over the 16 kHz sample rate.
const CUTOFF: f64 = 3700.0 / 16000.0;

/// The low-pass filter's coefficients, computed once.
fn coefficients() -> &'static [f32; TAPS] {
    static H: OnceLock<[f32; TAPS]> = OnceLock::new();
    H.get_or_init(|| {
        let mut h = [0f64; TAPS];
        let mid = (TAPS as f64 - 1.0) / 2.0;
        let n = TAPS as f64 - 1.0;
        for (i, c) in h.iter_mut().enumerate() {
            let t = i as f64 - mid;
            let sinc = if t == 0.0 {
                2.0 * CUTOFF
            } else {
                (2.0 * std::f64::consts::PI * CUTOFF * t).sin() / (std::f64::consts::PI * t)
            };
            let x = 2.0 * std::f64::consts::PI * i as f64 / n;
            let window = 0.42 - 0.5 * x.cos() + 0.08 * (2.0 * x).cos();
            *c = sinc * window;
        }
        let sum: f64 = h.iter().sum();
        let mut out = [0f32; TAPS];
        for (o, c) in out.iter_mut().zip(h) {
            *o = (c / sum) as f32;
        }
        out
    })
}

fn clamp16(x: f32) -> i16 {
    x.round().clamp(-32768.0, 32767.0) as i16
}

/// 16 kHz to 8 kHz. See the module documentation.
#[derive(Debug, Clone)]
pub struct Downsampler {
    /// The last `TAPS - 1` input samples, oldest first, then the current input.
    history: Vec<f32>,
    /// Whether the next output is at an odd input index (the input ended on an odd count).
    odd: bool,
}

impl Default for Downsampler {
    fn default() -> Self {
        Self::new()
    }
}

impl Downsampler {
    /// A decimator starting from silence.
    pub fn new() -> Self {
        Downsampler {
            history: vec![0.0; TAPS - 1],
            odd: false,
        }
    }

    /// Decimates `input` (16 kHz), appending half as many samples (8 kHz) to `out`.
    pub fn process(&mut self, input: &[i16], out: &mut Vec<i16>) {
        let h = coefficients();
        let keep = TAPS - 1;
        self.history.extend(input.iter().map(|&s| f32::from(s)));
        let mut i = usize::from(self.odd);
        // Output n uses inputs n-TAPS+1..=n: with the history first, input k sits at k+keep.
        while i < input.len() {
            let end = i + keep;
            let window = &self.history[end + 1 - TAPS..=end];
            let acc: f32 = window.iter().rev().zip(h).map(|(x, c)| x * c).sum();
            out.push(clamp16(acc));
            i += 2;
        }
        self.odd = i > input.len();
        let drain = self.history.len() - keep;
        self.history.drain(..drain);
    }
}

/// 8 kHz to 16 kHz. See the module documentation.
#[derive(Debug, Clone)]
pub struct Upsampler {
    /// The last `TAPS / 2 - 1` input samples, oldest first, then the current input.
    history: Vec<f32>,
}

impl Default for Upsampler {
    fn default() -> Self {
        Self::new()
    }
}

impl Upsampler {
    /// An interpolator starting from silence.
    pub fn new() -> Self {
        Upsampler {
            history: vec![0.0; TAPS / 2 - 1],
        }
    }

    /// Interpolates `input` (8 kHz), appending twice as many samples (16 kHz) to `out`.
    pub fn process(&mut self, input: &[i16], out: &mut Vec<i16>) {
        let h = coefficients();
        let half = TAPS / 2;
        let keep = half - 1;
        self.history.extend(input.iter().map(|&s| f32::from(s)));
        for n in 0..input.len() {
            let end = n + keep;
            let window = &self.history[end + 1 - half..=end];
            // Phase 0 uses the even taps, phase 1 the odd ones; x[n-k] pairs with h[2k(+1)].
            let (mut even, mut odd) = (0f32, 0f32);
            for (k, x) in window.iter().rev().enumerate() {
                even += x * h[2 * k];
                odd += x * h[2 * k + 1];
            }
            out.push(clamp16(2.0 * even));
            out.push(clamp16(2.0 * odd));
        }
        let drain = self.history.len() - keep;
        self.history.drain(..drain);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tone(freq: f64, rate: f64, n: usize) -> Vec<i16> {
        (0..n)
            .map(|i| (10000.0 * (2.0 * std::f64::consts::PI * freq * i as f64 / rate).sin()) as i16)
            .collect()
    }

    fn rms(x: &[i16]) -> f64 {
        (x.iter().map(|&s| f64::from(s).powi(2)).sum::<f64>() / x.len() as f64).sqrt()
    }

    /// Runs `f` over `input` in 20 ms chunks of `chunk` samples.
    fn chunked(input: &[i16], chunk: usize, mut f: impl FnMut(&[i16], &mut Vec<i16>)) -> Vec<i16> {
        let mut out = Vec::new();
        for c in input.chunks(chunk) {
            f(c, &mut out);
        }
        out
    }

    #[test]
    fn the_filter_has_unity_dc_gain() {
        let sum: f32 = coefficients().iter().sum();
        assert!((sum - 1.0).abs() < 1e-5, "{sum}");
    }

    #[test]
    fn downsampling_keeps_the_voice_band_and_removes_what_would_alias() {
        let mut d = Downsampler::new();
        // 1 kHz passes at (almost) full level.
        let out = chunked(&tone(1000.0, 16000.0, 16000), 320, |c, o| d.process(c, o));
        assert_eq!(out.len(), 8000);
        let level = rms(&out[400..]) / rms(&tone(1000.0, 16000.0, 16000));
        assert!((level - 1.0).abs() < 0.02, "1 kHz at {level}");
        // 6 kHz would alias to 2 kHz: it is attenuated by more than 50 dB.
        let mut d = Downsampler::new();
        let out = chunked(&tone(6000.0, 16000.0, 16000), 320, |c, o| d.process(c, o));
        let level = rms(&out[400..]) / rms(&tone(6000.0, 16000.0, 16000));
        assert!(level < 0.003, "6 kHz at {level}");
    }

    #[test]
    fn upsampling_keeps_the_tone_and_suppresses_the_image() {
        let mut u = Upsampler::new();
        let input = tone(1000.0, 8000.0, 8000);
        let out = chunked(&input, 160, |c, o| u.process(c, o));
        assert_eq!(out.len(), 16000);
        // Compare with the ideal 16 kHz tone, delayed by the filter's (TAPS-1)/2 samples:
        // what is left is the image at 7 kHz and the interpolation error.
        let ideal: Vec<f64> = (0..16000)
            .map(|i| {
                let t = (i as f64 - (TAPS as f64 - 1.0) / 2.0) / 16000.0;
                10000.0 * (2.0 * std::f64::consts::PI * 1000.0 * t).sin()
            })
            .collect();
        let err: f64 = out[400..]
            .iter()
            .zip(&ideal[400..])
            .map(|(&o, i)| (f64::from(o) - i).powi(2))
            .sum::<f64>()
            / (out.len() - 400) as f64;
        let snr = 10.0 * (rms(&out[400..]).powi(2) / err).log10();
        assert!(snr > 40.0, "SNR {snr:.1} dB");
    }

    #[test]
    fn odd_chunk_sizes_give_the_same_output_as_one_call() {
        let input = tone(440.0, 16000.0, 1001);
        let mut whole = Vec::new();
        Downsampler::new().process(&input, &mut whole);
        let mut d = Downsampler::new();
        let parts = chunked(&input, 7, |c, o| d.process(c, o));
        assert_eq!(whole, parts);
        let mut whole = Vec::new();
        Upsampler::new().process(&input, &mut whole);
        let mut u = Upsampler::new();
        assert_eq!(whole, chunked(&input, 13, |c, o| u.process(c, o)));
    }
}
