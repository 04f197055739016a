//! Sample-rate conversion by a whole factor for the gateway's transcoding
//! ([`super::transcode`]): [`Downsampler`] (decimation) and [`Upsampler`] (interpolation),
//! both polyphase FIR filters over one windowed-sinc low-pass, and [`Resampler`], the one a
//! pair of rates needs. The rates met are 8, 16 and 48 kHz (G.711, Speex, Opus): factors 2, 3
//! and 6.
//!
//! The filter for factor `f`: [`TAPS_PER_PHASE`]` * f` taps at the higher rate, cutoff at
//! 92.5 % of the lower rate's Nyquist frequency (3.7 kHz for an 8 kHz side, 7.4 kHz for a
//! 16 kHz one: telephony audio ends there anyway), Blackman window (stop band about -74 dB),
//! unity gain at DC. Decimating filters then keeps every `f`-th output; interpolating puts
//! `f - 1` zeros between samples and filters with gain `f`, computed as `f` phases of
//! [`TAPS_PER_PHASE`] taps each so no multiplication by an inserted zero is done. Each keeps
//! the last input samples of the previous call, so 20 ms frames join without a seam. The
//! delay is `(taps - 1) / 2` samples at the higher rate each way (about 1.5 ms).

use std::sync::OnceLock;

/// Filter taps per polyphase branch: the filter for factor `f` has `f` times as many.
pub const TAPS_PER_PHASE: usize = 24;

/// The largest factor (48 kHz to 8 kHz).
pub const MAX_FACTOR: usize = 6;

/// The cutoff as a fraction of the lower rate's Nyquist frequency.
const CUTOFF_OF_NYQUIST: f64 = 0.925;

/// The low-pass filter for `factor` (2 to [`MAX_FACTOR`]), computed once, its taps in reverse
/// order (the newest input sample meets `h[0]` last), so that a window of input samples in
/// time order multiplies it element by element.
fn coefficients(factor: usize) -> &'static [f32] {
    static H: [OnceLock<Vec<f32>>; MAX_FACTOR + 1] = [const { OnceLock::new() }; MAX_FACTOR + 1];
    H[factor].get_or_init(|| {
        let taps = TAPS_PER_PHASE * factor;
        // Over the higher rate: the lower rate's Nyquist frequency is 1 / (2 * factor) of it.
        let cutoff = CUTOFF_OF_NYQUIST / (2.0 * factor as f64);
        let mid = (taps as f64 - 1.0) / 2.0;
        let n = taps as f64 - 1.0;
        let h: Vec<f64> = (0..taps)
            .map(|i| {
                let t = i as f64 - mid;
                let sinc = if t == 0.0 {
                    2.0 * cutoff
                } else {
                    (2.0 * std::f64::consts::PI * cutoff * t).sin() / (std::f64::consts::PI * t)
                };
                let x = 2.0 * std::f64::consts::PI * i as f64 / n;
                sinc * (0.42 - 0.5 * x.cos() + 0.08 * (2.0 * x).cos())
            })
            .collect();
        let sum: f64 = h.iter().sum();
        h.iter().rev().map(|c| (c / sum) as f32).collect()
    })
}

fn clamp16(x: f32) -> i16 {
    x.round().clamp(-32768.0, 32767.0) as i16
}

/// The dot product of two equal-length slices, in eight independent sums (which the
/// compiler turns into vector instructions; one running sum would be a chain of dependent
/// additions).
fn dot(x: &[f32], h: &[f32]) -> f32 {
    let mut lanes = [0f32; 8];
    let (xc, hc) = (x.chunks_exact(8), h.chunks_exact(8));
    let tail: f32 = xc
        .remainder()
        .iter()
        .zip(hc.remainder())
        .map(|(a, b)| a * b)
        .sum();
    for (a, b) in xc.zip(hc) {
        for k in 0..8 {
            lanes[k] += a[k] * b[k];
        }
    }
    lanes.iter().sum::<f32>() + tail
}

/// Decimation by a whole factor. See the module documentation.
#[derive(Debug, Clone)]
pub struct Downsampler {
    factor: usize,
    h: &'static [f32],
    /// The last `taps - 1` input samples, oldest first, then the current input.
    history: Vec<f32>,
    /// Where in the next input the next output falls (the input ended mid-step).
    phase: usize,
}

impl Downsampler {
    /// A decimator by `factor` (2 to [`MAX_FACTOR`], else `None`) starting from silence.
    pub fn new(factor: usize) -> Option<Self> {
        if !(2..=MAX_FACTOR).contains(&factor) {
            return None;
        }
        let h = coefficients(factor);
        Some(Downsampler {
            factor,
            h,
            history: vec![0.0; h.len() - 1],
            phase: 0,
        })
    }

    /// Decimates `input`, appending one sample per `factor` input samples to `out` (the
    /// remainder is carried over to the next call).
    pub fn process(&mut self, input: &[i16], out: &mut Vec<i16>) {
        let taps = self.h.len();
        let keep = taps - 1;
        self.history.extend(input.iter().map(|&s| f32::from(s)));
        let mut i = self.phase;
        // Output at input i uses inputs i-taps+1..=i: with the history first, input k sits at
        // k + keep.
        while i < input.len() {
            out.push(clamp16(dot(&self.history[i..i + taps], self.h)));
            i += self.factor;
        }
        self.phase = i - input.len();
        let drain = self.history.len() - keep;
        self.history.drain(..drain);
    }
}

/// Interpolation by a whole factor. See the module documentation.
#[derive(Debug, Clone)]
pub struct Upsampler {
    factor: usize,
    /// Per phase, its taps in the order of [`coefficients`] (reversed).
    phases: Vec<Vec<f32>>,
    /// The last `TAPS_PER_PHASE - 1` input samples, oldest first, then the current input.
    history: Vec<f32>,
}

impl Upsampler {
    /// An interpolator by `factor` (2 to [`MAX_FACTOR`], else `None`) starting from silence.
    pub fn new(factor: usize) -> Option<Self> {
        if !(2..=MAX_FACTOR).contains(&factor) {
            return None;
        }
        let h = coefficients(factor);
        // Output n*factor + p is factor * sum_k x[n-k] * h[factor*k + p]. In the reversed
        // taps, h[j] sits at len-1-j; taking every factor-th from there keeps x's time order.
        let phases = (0..factor)
            .map(|p| {
                (0..TAPS_PER_PHASE)
                    .rev()
                    .map(|k| factor as f32 * h[h.len() - 1 - (factor * k + p)])
                    .collect()
            })
            .collect();
        Some(Upsampler {
            factor,
            phases,
            history: vec![0.0; TAPS_PER_PHASE - 1],
        })
    }

    /// Interpolates `input`, appending `factor` samples per input sample to `out`.
    pub fn process(&mut self, input: &[i16], out: &mut Vec<i16>) {
        let keep = TAPS_PER_PHASE - 1;
        self.history.extend(input.iter().map(|&s| f32::from(s)));
        out.reserve(input.len() * self.factor);
        for n in 0..input.len() {
            let window = &self.history[n..n + TAPS_PER_PHASE];
            for phase in &self.phases {
                out.push(clamp16(dot(window, phase)));
            }
        }
        let drain = self.history.len() - keep;
        self.history.drain(..drain);
    }
}

/// What one direction of a transcoded call needs between two rates: nothing, a decimator or
/// an interpolator.
#[derive(Debug, Clone)]
pub enum Resampler {
    /// The rates are equal: samples are copied.
    Same,
    /// From a rate `f` times the other.
    Down(Downsampler),
    /// To a rate `f` times the other.
    Up(Upsampler),
}

impl Resampler {
    /// The resampler from `from` Hz to `to` Hz, or `None` when one is not a whole multiple
    /// (up to [`MAX_FACTOR`]) of the other.
    ///
    /// ```
    /// use siprtmp_core::media::resample::Resampler;
    /// let mut r = Resampler::new(48_000, 8000).unwrap();
    /// let mut out = Vec::new();
    /// r.process(&[0; 960], &mut out); // 20 ms
    /// assert_eq!(out.len(), 160);
    /// assert!(Resampler::new(44_100, 8000).is_none());
    /// ```
    pub fn new(from: u32, to: u32) -> Option<Self> {
        if from == 0 || to == 0 {
            return None;
        }
        if from == to {
            return Some(Resampler::Same);
        }
        let (high, low) = (from.max(to), from.min(to));
        if high % low != 0 {
            return None;
        }
        let factor = (high / low) as usize;
        if from > to {
            Downsampler::new(factor).map(Resampler::Down)
        } else {
            Upsampler::new(factor).map(Resampler::Up)
        }
    }

    /// Converts `input`, appending the result to `out`.
    pub fn process(&mut self, input: &[i16], out: &mut Vec<i16>) {
        match self {
            Resampler::Same => out.extend_from_slice(input),
            Resampler::Down(d) => d.process(input, out),
            Resampler::Up(u) => u.process(input, out),
        }
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

    /// Runs `f` over `input` in chunks of `chunk` samples.
    fn chunked(input: &[i16], chunk: usize, mut f: impl FnMut(&[i16], &mut Vec<i16>)) -> Vec<i16> {
        let mut out = Vec::new();
        for c in input.chunks(chunk) {
            f(c, &mut out);
        }
        out
    }

    /// (low rate, high rate) of every factor the gateway uses.
    const PAIRS: [(f64, f64); 3] = [(8000.0, 16000.0), (16000.0, 48000.0), (8000.0, 48000.0)];

    #[test]
    fn every_filter_has_unity_dc_gain() {
        for factor in 2..=MAX_FACTOR {
            let sum: f32 = coefficients(factor).iter().sum();
            assert!((sum - 1.0).abs() < 1e-5, "{factor}: {sum}");
            assert_eq!(coefficients(factor).len(), TAPS_PER_PHASE * factor);
        }
    }

    #[test]
    fn downsampling_keeps_the_voice_band_and_removes_what_would_alias() {
        for (low, high) in PAIRS {
            let mut r = Resampler::new(high as u32, low as u32).unwrap();
            let n = high as usize;
            let chunk = n / 50;
            // 1 kHz passes at (almost) full level.
            let input = tone(1000.0, high, n);
            let out = chunked(&input, chunk, |c, o| r.process(c, o));
            assert_eq!(out.len(), low as usize);
            let level = rms(&out[400..]) / rms(&input);
            assert!(
                (level - 1.0).abs() < 0.02,
                "{high}->{low}: 1 kHz at {level}"
            );
            // Three quarters of the low rate would alias to a quarter of it: attenuated by
            // more than 50 dB.
            let mut r = Resampler::new(high as u32, low as u32).unwrap();
            let input = tone(0.75 * low, high, n);
            let out = chunked(&input, chunk, |c, o| r.process(c, o));
            let level = rms(&out[400..]) / rms(&input);
            assert!(level < 0.003, "{high}->{low}: {} Hz at {level}", 0.75 * low);
        }
    }

    #[test]
    fn upsampling_keeps_the_tone_and_suppresses_the_images() {
        for (low, high) in PAIRS {
            let mut r = Resampler::new(low as u32, high as u32).unwrap();
            let input = tone(1000.0, low, low as usize);
            let out = chunked(&input, low as usize / 50, |c, o| r.process(c, o));
            assert_eq!(out.len(), high as usize);
            // Compare with the ideal tone at the high rate, delayed by the filter's
            // (taps-1)/2 samples: what is left is the images and the interpolation error.
            let taps = TAPS_PER_PHASE as f64 * high / low;
            let ideal: Vec<f64> = (0..out.len())
                .map(|i| {
                    let t = (i as f64 - (taps - 1.0) / 2.0) / high;
                    10000.0 * (2.0 * std::f64::consts::PI * 1000.0 * t).sin()
                })
                .collect();
            let skip = high as usize / 40;
            let err: f64 = out[skip..]
                .iter()
                .zip(&ideal[skip..])
                .map(|(&o, i)| (f64::from(o) - i).powi(2))
                .sum::<f64>()
                / (out.len() - skip) as f64;
            let snr = 10.0 * (rms(&out[skip..]).powi(2) / err).log10();
            assert!(snr > 40.0, "{low}->{high}: SNR {snr:.1} dB");
        }
    }

    #[test]
    fn odd_chunk_sizes_give_the_same_output_as_one_call() {
        let input = tone(440.0, 48000.0, 1001);
        for (from, to) in [(16000, 8000), (48000, 16000), (48000, 8000)] {
            let mut whole = Vec::new();
            Resampler::new(from, to)
                .unwrap()
                .process(&input, &mut whole);
            let mut d = Resampler::new(from, to).unwrap();
            assert_eq!(
                whole,
                chunked(&input, 7, |c, o| d.process(c, o)),
                "{from}->{to}"
            );
            let mut whole = Vec::new();
            Resampler::new(to, from)
                .unwrap()
                .process(&input, &mut whole);
            let mut u = Resampler::new(to, from).unwrap();
            assert_eq!(
                whole,
                chunked(&input, 13, |c, o| u.process(c, o)),
                "{to}->{from}"
            );
        }
    }

    #[test]
    fn only_whole_factors_are_resampled() {
        assert!(matches!(Resampler::new(8000, 8000), Some(Resampler::Same)));
        assert!(Resampler::new(48_000, 16_000).is_some());
        assert!(Resampler::new(44_100, 8000).is_none());
        assert!(Resampler::new(8000, 64_000).is_none(), "factor 8");
        assert!(Resampler::new(0, 8000).is_none());
        assert!(Downsampler::new(1).is_none() && Upsampler::new(7).is_none());
    }
}
