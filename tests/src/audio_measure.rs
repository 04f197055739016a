//! How the transcoding suites tell what came back from what was sent: a logarithmic tone
//! sweep as the test signal, and the normalised cross-correlation at the best lag as the
//! measure (codecs that match the waveform keep a sweep's shape; silence, noise, a wrong rate
//! or law, frames out of order do not).

/// A logarithmic sweep from `f0` to `f1` Hz over `samples` samples at `rate` Hz, amplitude 8000
/// (-12 dBFS). The same sweep at another rate is the same signal sampled differently.
pub fn sweep(f0: f64, f1: f64, rate: u32, samples: usize) -> Vec<i16> {
    let rate = f64::from(rate);
    let duration = samples as f64 / rate;
    let k = (f1 / f0).ln() / duration;
    (0..samples)
        .map(|i| {
            let t = i as f64 / rate;
            let phase = 2.0 * std::f64::consts::PI * f0 * ((k * t).exp() - 1.0) / k;
            (8000.0 * phase.sin()) as i16
        })
        .collect()
}

/// The best normalised cross-correlation of `got` against `sent` over lags 0 to `max_lag`
/// samples (`got` late), and that lag. Lags that would leave less than half of `sent` to
/// compare are not tried.
pub fn best_correlation(sent: &[i16], got: &[i16], max_lag: usize) -> (f64, usize) {
    let mut best = (f64::MIN, 0);
    for lag in 0..=max_lag.min(got.len()) {
        let n = sent.len().min(got.len() - lag);
        if n < sent.len() / 2 {
            break;
        }
        let (mut xy, mut xx, mut yy) = (0f64, 0f64, 0f64);
        for (&x, &y) in sent[..n].iter().zip(&got[lag..lag + n]) {
            let (x, y) = (f64::from(x), f64::from(y));
            xy += x * y;
            xx += x * x;
            yy += y * y;
        }
        let c = xy / (xx * yy).sqrt().max(1.0);
        if c > best.0 {
            best = (c, lag);
        }
    }
    best
}
