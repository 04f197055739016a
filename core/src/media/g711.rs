//! G.711 (ITU-T G.711) mu-law and A-law: 8-bit log samples to 16-bit linear PCM and back,
//! for the gateway's transcoding ([`super::transcode`]).
//!
//! Decoding is a 256-entry table per law, built at compile time from the standard's
//! expansion (segment and mantissa); encoding finds the segment from the sample's magnitude.
//! The values are those of the ITU-T G.191 reference implementation: mu-law expands to
//! ±32124 at most and 0 for `0xFF`/`0x7F`; A-law to ±32256 at most and ±8 for `0xD5`/`0x55`.

/// mu-law byte to linear sample.
const ULAW_DECODE: [i16; 256] = {
    let mut table = [0i16; 256];
    let mut i = 0;
    while i < 256 {
        let u = !(i as u8);
        let exponent = ((u >> 4) & 0x07) as i32;
        let mantissa = (u & 0x0f) as i32;
        let magnitude = (((mantissa << 3) + 0x84) << exponent) - 0x84;
        table[i] = if u & 0x80 != 0 {
            -magnitude as i16
        } else {
            magnitude as i16
        };
        i += 1;
    }
    table
};

/// A-law byte to linear sample.
const ALAW_DECODE: [i16; 256] = {
    let mut table = [0i16; 256];
    let mut i = 0;
    while i < 256 {
        let a = (i as u8) ^ 0x55;
        let segment = ((a >> 4) & 0x07) as i32;
        let mantissa = (a & 0x0f) as i32;
        let magnitude = match segment {
            0 => (mantissa << 4) + 8,
            s => ((mantissa << 4) + 0x108) << (s - 1),
        };
        table[i] = if a & 0x80 != 0 {
            magnitude as i16
        } else {
            -magnitude as i16
        };
        i += 1;
    }
    table
};

/// A mu-law byte as a linear sample.
///
/// ```
/// use siprtmp_core::media::g711::{ulaw_to_linear, linear_to_ulaw};
/// assert_eq!(ulaw_to_linear(0xFF), 0);
/// assert_eq!(ulaw_to_linear(linear_to_ulaw(1000)), 988);
/// ```
pub fn ulaw_to_linear(byte: u8) -> i16 {
    ULAW_DECODE[byte as usize]
}

/// An A-law byte as a linear sample.
pub fn alaw_to_linear(byte: u8) -> i16 {
    ALAW_DECODE[byte as usize]
}

/// A linear sample as a mu-law byte (14-bit magnitude with the 0x84 bias, clipped).
pub fn linear_to_ulaw(sample: i16) -> u8 {
    const BIAS: i32 = 0x84;
    const CLIP: i32 = 32635;
    let s = i32::from(sample);
    let sign = if s < 0 { 0x80u8 } else { 0 };
    let magnitude = s.abs().min(CLIP) + BIAS;
    // The segment is the position of the highest set bit above bit 7.
    let exponent = (31 - magnitude.leading_zeros() as i32 - 7).clamp(0, 7);
    let mantissa = ((magnitude >> (exponent + 3)) & 0x0f) as u8;
    !(sign | ((exponent as u8) << 4) | mantissa)
}

/// A linear sample as an A-law byte (13-bit magnitude, clipped).
pub fn linear_to_alaw(sample: i16) -> u8 {
    let s = i32::from(sample);
    let (sign, magnitude) = if s >= 0 {
        (0x80u8, s >> 3)
    } else {
        // One's complement, as the reference does, so -1 encodes like 0.
        (0x00u8, (-s - 1) >> 3)
    };
    let magnitude = magnitude.min(0x0fff);
    let byte = if magnitude < 32 {
        (magnitude >> 1) as u8
    } else {
        let segment = (31 - magnitude.leading_zeros() as i32 - 4).clamp(1, 7);
        ((segment as u8) << 4) | ((magnitude >> segment) & 0x0f) as u8
    };
    (sign | byte) ^ 0x55
}

/// Decodes mu-law bytes, appending linear samples to `out`.
pub fn decode_ulaw(bytes: &[u8], out: &mut Vec<i16>) {
    out.extend(bytes.iter().map(|&b| ulaw_to_linear(b)));
}

/// Decodes A-law bytes, appending linear samples to `out`.
pub fn decode_alaw(bytes: &[u8], out: &mut Vec<i16>) {
    out.extend(bytes.iter().map(|&b| alaw_to_linear(b)));
}

/// Encodes linear samples as mu-law, appending to `out`.
pub fn encode_ulaw(pcm: &[i16], out: &mut Vec<u8>) {
    out.extend(pcm.iter().map(|&s| linear_to_ulaw(s)));
}

/// Encodes linear samples as A-law, appending to `out`.
pub fn encode_alaw(pcm: &[i16], out: &mut Vec<u8>) {
    out.extend(pcm.iter().map(|&s| linear_to_alaw(s)));
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn ulaw_matches_the_reference_values() {
        // Expansion (G.191): the extremes, the two zeros, and a few codes in between.
        assert_eq!(ulaw_to_linear(0x00), -32124);
        assert_eq!(ulaw_to_linear(0x80), 32124);
        assert_eq!(ulaw_to_linear(0xFF), 0);
        assert_eq!(ulaw_to_linear(0x7F), 0);
        assert_eq!(ulaw_to_linear(0xFE), 8);
        assert_eq!(ulaw_to_linear(0xF0), 120);
        assert_eq!(ulaw_to_linear(0xEF), 132);
        assert_eq!(ulaw_to_linear(0x70), -120);
        // Compression.
        assert_eq!(linear_to_ulaw(0), 0xFF);
        assert_eq!(linear_to_ulaw(-1), 0x7F);
        assert_eq!(linear_to_ulaw(32767), 0x80);
        assert_eq!(linear_to_ulaw(-32768), 0x00);
        assert_eq!(linear_to_ulaw(8), 0xFE);
        assert_eq!(linear_to_ulaw(132), 0xEF);
    }

    #[test]
    fn alaw_matches_the_reference_values() {
        assert_eq!(alaw_to_linear(0xD5), 8);
        assert_eq!(alaw_to_linear(0x55), -8);
        assert_eq!(alaw_to_linear(0xAA), 32256);
        assert_eq!(alaw_to_linear(0x2A), -32256);
        assert_eq!(alaw_to_linear(0xD4), 24);
        assert_eq!(alaw_to_linear(0xC5), 264);
        assert_eq!(linear_to_alaw(0), 0xD5);
        assert_eq!(linear_to_alaw(-1), 0x55);
        assert_eq!(linear_to_alaw(32767), 0xAA);
        assert_eq!(linear_to_alaw(-32768), 0x2A);
        assert_eq!(linear_to_alaw(24), 0xD4);
        assert_eq!(linear_to_alaw(264), 0xC5);
    }

    #[test]
    fn every_code_round_trips() {
        // Decoding then encoding gives the code back (the two mu-law zeros aside: 0x7F
        // decodes to 0, which encodes as the positive zero 0xFF).
        for code in 0..=255u8 {
            let back = linear_to_ulaw(ulaw_to_linear(code));
            assert!(back == code || (code == 0x7F && back == 0xFF), "{code:#x}");
            assert_eq!(linear_to_alaw(alaw_to_linear(code)), code, "{code:#x}");
        }
    }

    proptest! {
        /// The quantisation error stays within half a step of the sample's segment: under
        /// 1/32 of the magnitude (plus the smallest step near zero).
        #[test]
        fn quantisation_error_is_bounded(s in any::<i16>()) {
            let x = i32::from(s);
            for (law, back) in [
                ("ulaw", i32::from(ulaw_to_linear(linear_to_ulaw(s)))),
                ("alaw", i32::from(alaw_to_linear(linear_to_alaw(s)))),
            ] {
                let clipped = x.clamp(-32256, 32256);
                let err = (back - clipped).abs();
                prop_assert!(err <= clipped.abs() / 32 + 16, "{} {} -> {}", law, x, back);
            }
        }
    }
}
