//! The Speex bit-stream, as far as a gateway needs it: find the frames of a packet and strip
//! the wideband (and ultra-wideband) layers so a narrowband-only peer can decode 16 kHz
//! Speex from Flash as 8 kHz Speex, without decoding audio.
//!
//! A Speex packet is a bit string (MSB first) of one or more frames. Each frame is a
//! narrowband (NB) frame, optionally followed by up to two higher-band layers:
//!
//! ```text
//! NB frame:  [0][mode:4][... NB_MODE_BITS[mode] − 5 more bits]
//! WB layer:  [1][submode:3][... WB_SUBMODE_BITS[submode] − 4 more bits]
//! ```
//!
//! In front of an NB frame there may be in-band signalling, which a narrowband decoder reads
//! and which therefore is kept: mode 14 (a Speex request: a 4-bit id and 1 to 64 bits of
//! data, sized by id) and mode 13 (a user request: a 4-bit length `n`, then `5 + 8n` bits).
//! Mode 15 is the terminator: the rest of the packet is ignored. Modes 9 to 12 are invalid.
//! Fewer than 5 bits left means the packet has ended (it is padding).
//!
//! Handled: any number of frames per packet, NB frames of modes 0 to 8, in-band requests
//! (kept with the frame they precede), one or two WB layers after each NB frame (submodes 0
//! to 4; the second one is the ultra-wideband layer) and WB layers placed before an NB frame
//! (skipped like the reference decoder does, dropping in-band requests seen before them).
//! Errors: invalid NB modes, WB submodes 5 to 7, a third higher-band layer, and frames cut
//! short by the end of the packet.
//!
//! The narrowband output is each frame's NB bits back to back, then padded to a byte boundary
//! the way the reference encoder terminates a packet: a `0` bit followed by `1` bits, which a
//! decoder reads as a terminator (or as too few bits to be a frame).

use std::fmt;

use bytes::{BufMut, BytesMut};

/// Bits of a narrowband frame by mode (0 to 8), counting its wideband flag and mode id.
pub const NB_MODE_BITS: [u16; 9] = [5, 43, 119, 160, 220, 300, 364, 492, 79];
/// Bits of a wideband layer by submode (0 to 4), counting its wideband flag and submode id.
pub const WB_SUBMODE_BITS: [u16; 5] = [4, 36, 112, 192, 352];

/// Why a Speex packet cannot be walked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum SpeexError {
    /// A frame, layer or request runs past the end of the packet (bit offset of its start).
    Truncated(usize),
    /// A narrowband mode id of 9 to 12.
    InvalidMode(u8),
    /// A wideband submode of 5 to 7.
    InvalidSubmode(u8),
    /// More than two higher-band layers in a row.
    TooManyLayers,
    /// The packet holds no frame at all.
    NoFrames,
}

impl fmt::Display for SpeexError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SpeexError::Truncated(at) => write!(f, "Speex frame at bit {at} is truncated"),
            SpeexError::InvalidMode(m) => write!(f, "invalid Speex narrowband mode {m}"),
            SpeexError::InvalidSubmode(m) => write!(f, "invalid Speex wideband submode {m}"),
            SpeexError::TooManyLayers => f.write_str("more than two Speex wideband layers"),
            SpeexError::NoFrames => f.write_str("Speex packet holds no frame"),
        }
    }
}

impl std::error::Error for SpeexError {}

/// Where one frame sits in a packet, in bits from the start of the packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SpeexFrame {
    /// First bit of the narrowband part (its in-band requests, if any, else the NB frame).
    pub start: usize,
    /// Bits of in-band requests in front of the NB frame (kept in narrowband output).
    pub inband_bits: usize,
    /// Narrowband mode (0 to 8).
    pub mode: u8,
    /// Bits of the NB frame itself, `NB_MODE_BITS[mode]`.
    pub nb_bits: usize,
    /// Higher-band layers after the NB frame (0 to 2).
    pub wb_layers: u8,
    /// Bits of all higher-band layers of this frame, including any placed before it.
    pub wb_bits: usize,
}

impl SpeexFrame {
    /// Bits copied into narrowband output: in-band requests plus the NB frame.
    pub fn narrowband_bits(&self) -> usize {
        self.inband_bits + self.nb_bits
    }
}

/// An MSB-first bit reader that never reads past its slice.
struct Bits<'a> {
    data: &'a [u8],
    pos: usize,
}

impl<'a> Bits<'a> {
    fn remaining(&self) -> usize {
        (self.data.len() * 8).saturating_sub(self.pos)
    }

    /// Reads `n` (at most 32) bits, or `None` if fewer remain.
    fn read(&mut self, n: usize) -> Option<u32> {
        if n > self.remaining() {
            return None;
        }
        let mut v = 0u32;
        for _ in 0..n {
            let byte = self.data[self.pos / 8];
            let bit = (byte >> (7 - self.pos % 8)) & 1;
            v = (v << 1) | u32::from(bit);
            self.pos += 1;
        }
        Some(v)
    }

    fn peek_bit(&self) -> Option<bool> {
        (self.remaining() > 0).then(|| (self.data[self.pos / 8] >> (7 - self.pos % 8)) & 1 == 1)
    }

    fn skip(&mut self, n: usize) -> Option<()> {
        if n > self.remaining() {
            return None;
        }
        self.pos += n;
        Some(())
    }
}

/// Bits of data after a Speex in-band request id (the reference decoder's skip sizes).
fn inband_data_bits(id: u32) -> usize {
    match id {
        0..=1 => 1,
        2..=7 => 4,
        8..=9 => 8,
        10..=11 => 16,
        12..=13 => 32,
        _ => 64,
    }
}

/// Iterator over the frames of a Speex packet; see [`frames`].
pub struct Frames<'a> {
    bits: Bits<'a>,
    done: bool,
}

/// Walks the frames of a Speex packet (the FLV audio body after its 1-byte header).
///
/// Stops at the terminator or when fewer than 5 bits remain; yields an error (once, then
/// stops) on a malformed frame.
///
/// ```
/// use siprtmp_core::media::speex::frames;
/// // One mode-0 (silence) NB frame "0 0000", a 4-bit WB submode-0 layer "1 000",
/// // then the terminator padding "0 111111".
/// let packet = [0b0000_0100, 0b0011_1111];
/// let f: Vec<_> = frames(&packet).collect::<Result<_, _>>().unwrap();
/// assert_eq!(f.len(), 1);
/// assert_eq!((f[0].mode, f[0].nb_bits, f[0].wb_bits), (0, 5, 4));
/// ```
pub fn frames(packet: &[u8]) -> Frames<'_> {
    Frames {
        bits: Bits {
            data: packet,
            pos: 0,
        },
        done: false,
    }
}

impl Frames<'_> {
    /// Skips one higher-band layer whose flag bit was just read.
    fn skip_layer(&mut self, at: usize) -> Result<usize, SpeexError> {
        let sub = self.bits.read(3).ok_or(SpeexError::Truncated(at))?;
        let total = *WB_SUBMODE_BITS
            .get(sub as usize)
            .ok_or(SpeexError::InvalidSubmode(sub as u8))?;
        let total = usize::from(total);
        self.bits.skip(total - 4).ok_or(SpeexError::Truncated(at))?;
        Ok(total)
    }

    fn next_frame(&mut self) -> Result<Option<SpeexFrame>, SpeexError> {
        let mut start = self.bits.pos;
        let mut wb_bits = 0;
        let mut leading_layers = 0u8;
        // In-band requests and stray WB layers until the NB frame (the NB decoder's loop).
        let mode = loop {
            if self.bits.remaining() < 5 {
                if start == self.bits.pos && wb_bits == 0 {
                    return Ok(None); // end of packet: padding
                }
                return Err(SpeexError::Truncated(start));
            }
            let at = self.bits.pos;
            if self.bits.read(1) == Some(1) {
                leading_layers += 1;
                if leading_layers > 2 {
                    return Err(SpeexError::TooManyLayers);
                }
                wb_bits += self.skip_layer(at)?;
                start = self.bits.pos;
                continue;
            }
            let m = self.bits.read(4).ok_or(SpeexError::Truncated(at))?;
            match m {
                15 => {
                    if start != at {
                        // In-band requests with no frame after them.
                        return Err(SpeexError::Truncated(start));
                    }
                    return Ok(None);
                }
                14 => {
                    let id = self.bits.read(4).ok_or(SpeexError::Truncated(at))?;
                    self.bits
                        .skip(inband_data_bits(id))
                        .ok_or(SpeexError::Truncated(at))?;
                }
                13 => {
                    let len = self.bits.read(4).ok_or(SpeexError::Truncated(at))? as usize;
                    self.bits
                        .skip(5 + 8 * len)
                        .ok_or(SpeexError::Truncated(at))?;
                }
                9..=12 => return Err(SpeexError::InvalidMode(m as u8)),
                m => break m as u8,
            }
        };
        // `mode` was read as bits pos-5..pos.
        let nb_start = self.bits.pos - 5;
        let nb_bits = usize::from(NB_MODE_BITS[usize::from(mode)]);
        self.bits
            .skip(nb_bits - 5)
            .ok_or(SpeexError::Truncated(nb_start))?;
        // Higher-band layers follow while the next bit is a 1 (the WB decoder peeks it).
        let mut wb_layers = 0u8;
        while self.bits.peek_bit() == Some(true) {
            if wb_layers == 2 {
                return Err(SpeexError::TooManyLayers);
            }
            let at = self.bits.pos;
            self.bits.read(1);
            wb_bits += self.skip_layer(at)?;
            wb_layers += 1;
        }
        Ok(Some(SpeexFrame {
            start,
            inband_bits: nb_start - start,
            mode,
            nb_bits,
            wb_layers,
            wb_bits,
        }))
    }
}

impl Iterator for Frames<'_> {
    type Item = Result<SpeexFrame, SpeexError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.done {
            return None;
        }
        match self.next_frame() {
            Ok(Some(f)) => Some(Ok(f)),
            Ok(None) => {
                self.done = true;
                None
            }
            Err(e) => {
                self.done = true;
                Some(Err(e))
            }
        }
    }
}

/// An MSB-first bit writer appending to a `BytesMut`.
struct BitWriter<'a> {
    out: &'a mut BytesMut,
    acc: u8,
    used: u8,
}

impl BitWriter<'_> {
    fn put(&mut self, value: u32, n: usize) {
        for i in (0..n).rev() {
            self.acc = (self.acc << 1) | ((value >> i) & 1) as u8;
            self.used += 1;
            if self.used == 8 {
                self.out.put_u8(self.acc);
                self.acc = 0;
                self.used = 0;
            }
        }
    }

    /// Pads to a byte boundary with the terminator convention: `0` then `1`s.
    fn finish(mut self) {
        if self.used != 0 {
            self.put(0, 1);
            while self.used != 0 {
                self.put(1, 1);
            }
        }
    }
}

/// Appends the narrowband version of Speex `packet` to `out`: every frame's in-band requests
/// and NB frame, without the wideband layers, padded to a byte with the terminator
/// convention. Returns the number of frames. Narrowband input comes out unchanged apart from
/// the padding. On error nothing is appended.
///
/// ```
/// use bytes::BytesMut;
/// use siprtmp_core::media::speex::wideband_to_narrowband;
/// // NB mode 0 "0 0000" + WB submode 0 "1 000" + padding "0 111111".
/// let mut out = BytesMut::new();
/// let n = wideband_to_narrowband(&[0b0000_0100, 0b0011_1111], &mut out).unwrap();
/// assert_eq!(n, 1);
/// assert_eq!(&out[..], &[0b0000_0011]); // "0 0000" + "0 11"
/// ```
pub fn wideband_to_narrowband(packet: &[u8], out: &mut BytesMut) -> Result<usize, SpeexError> {
    // Validate first so a bad packet leaves `out` untouched.
    let mut count = 0;
    let mut nb_total = 0;
    for f in frames(packet) {
        nb_total += f?.narrowband_bits();
        count += 1;
    }
    if count == 0 {
        return Err(SpeexError::NoFrames);
    }
    out.reserve(nb_total.div_ceil(8));
    let mut w = BitWriter {
        out,
        acc: 0,
        used: 0,
    };
    for f in frames(packet).flatten() {
        let mut r = Bits {
            data: packet,
            pos: f.start,
        };
        let mut left = f.narrowband_bits();
        while left > 0 {
            let n = left.min(32);
            // In range: the walk above proved these bits exist.
            let v = r.read(n).unwrap_or(0);
            w.put(v, n);
            left -= n;
        }
    }
    w.finish();
    Ok(count)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// Builds a bit string from (value, width) pairs, padded with the terminator.
    fn build(parts: &[(u32, usize)]) -> Vec<u8> {
        let mut out = BytesMut::new();
        let mut w = BitWriter {
            out: &mut out,
            acc: 0,
            used: 0,
        };
        for &(v, n) in parts {
            w.put(v, n);
        }
        w.finish();
        out.to_vec()
    }

    /// An NB frame header of `mode` followed by `bits − 5` zero bits.
    fn nb(mode: u8) -> Vec<(u32, usize)> {
        let mut v = vec![(u32::from(mode), 5)];
        let mut rest = usize::from(NB_MODE_BITS[usize::from(mode)]) - 5;
        while rest > 0 {
            let n = rest.min(32);
            v.push((0, n));
            rest -= n;
        }
        v
    }

    fn wb(sub: u8) -> Vec<(u32, usize)> {
        let mut v = vec![(0b1000 | u32::from(sub), 4)];
        let mut rest = usize::from(WB_SUBMODE_BITS[usize::from(sub)]) - 4;
        while rest > 0 {
            let n = rest.min(32);
            v.push((u32::MAX >> (32 - n), n)); // ones, to tell WB bits apart in output
            rest -= n;
        }
        v
    }

    #[test]
    fn every_mode_and_submode_combination() {
        for mode in 0..=8u8 {
            for sub in 0..=4u8 {
                let parts: Vec<_> = nb(mode).into_iter().chain(wb(sub)).collect();
                let packet = build(&parts);
                let f: Vec<_> = frames(&packet).collect::<Result<_, _>>().unwrap();
                assert_eq!(f.len(), 1, "mode {mode} sub {sub}");
                assert_eq!(f[0].mode, mode);
                assert_eq!(f[0].nb_bits, usize::from(NB_MODE_BITS[usize::from(mode)]));
                assert_eq!(f[0].wb_bits, usize::from(WB_SUBMODE_BITS[usize::from(sub)]));
                let mut out = BytesMut::new();
                assert_eq!(wideband_to_narrowband(&packet, &mut out).unwrap(), 1);
                assert_eq!(out.len(), f[0].nb_bits.div_ceil(8));
                // The NB frame was all zeros after its header; the padding is 0 then 1s.
                let expect = build(&nb(mode));
                assert_eq!(&out[..], &expect[..]);
                let back: Vec<_> = frames(&out).collect::<Result<_, _>>().unwrap();
                assert_eq!(back.len(), 1);
                assert_eq!((back[0].mode, back[0].wb_bits), (mode, 0));
            }
        }
    }

    #[test]
    fn known_padding_bytes() {
        // Mode 1 (43 bits) alone: 5 bits of padding "0 1111" (a terminator) after it.
        let out = build(&nb(1));
        assert_eq!(out.len(), 6);
        assert_eq!(out[0], 0b0000_1000);
        assert_eq!(out[5], 0b0000_1111);
    }

    #[test]
    fn two_frames_two_layers_and_inband() {
        let mut parts = vec![(14, 5), (0, 4), (1, 1)]; // in-band enhancer request: 5 + 4 + 1 bits
        parts.extend(nb(3));
        parts.extend(wb(2));
        parts.extend(wb(1)); // ultra-wideband layer
        parts.push((13, 5)); // user in-band: 1 byte
        parts.push((1, 4));
        parts.push((0x1f, 5));
        parts.push((0xAB, 8));
        parts.extend(nb(8));
        parts.extend(wb(4));
        let packet = build(&parts);
        let f: Vec<_> = frames(&packet).collect::<Result<_, _>>().unwrap();
        assert_eq!(f.len(), 2);
        assert_eq!((f[0].inband_bits, f[0].mode, f[0].wb_layers), (10, 3, 2));
        assert_eq!(f[0].wb_bits, 112 + 36);
        assert_eq!((f[1].inband_bits, f[1].mode, f[1].wb_layers), (22, 8, 1));
        let mut out = BytesMut::new();
        assert_eq!(wideband_to_narrowband(&packet, &mut out).unwrap(), 2);
        let back: Vec<_> = frames(&out).collect::<Result<_, _>>().unwrap();
        assert_eq!(back.len(), 2);
        assert_eq!((back[0].inband_bits, back[0].mode), (10, 3));
        assert_eq!((back[1].inband_bits, back[1].mode), (22, 8));
        assert_eq!(out.len(), (10 + 160 + 22 + 79usize).div_ceil(8));
    }

    #[test]
    fn malformed_packets_are_errors() {
        let mut out = BytesMut::new();
        // Mode 9.
        let p = build(&[(9, 5), (0, 8)]);
        assert_eq!(
            wideband_to_narrowband(&p, &mut out),
            Err(SpeexError::InvalidMode(9))
        );
        // WB submode 6.
        let mut parts = nb(0);
        parts.push((0b1110, 4));
        assert_eq!(
            wideband_to_narrowband(&build(&parts), &mut out),
            Err(SpeexError::InvalidSubmode(6))
        );
        // Three layers.
        let parts: Vec<_> = nb(0)
            .into_iter()
            .chain(wb(0))
            .chain(wb(0))
            .chain(wb(0))
            .collect();
        assert_eq!(
            wideband_to_narrowband(&build(&parts), &mut out),
            Err(SpeexError::TooManyLayers)
        );
        // Mode 5 cut short.
        assert_eq!(
            wideband_to_narrowband(&[0b0010_1000, 0, 0], &mut out),
            Err(SpeexError::Truncated(0))
        );
        // Only a terminator.
        assert_eq!(
            wideband_to_narrowband(&[0b0111_1111], &mut out),
            Err(SpeexError::NoFrames)
        );
        assert_eq!(
            wideband_to_narrowband(&[], &mut out),
            Err(SpeexError::NoFrames)
        );
        assert!(out.is_empty());
    }

    proptest! {
        #[test]
        fn arbitrary_bytes_never_panic(data in proptest::collection::vec(any::<u8>(), 0..200)) {
            let mut out = BytesMut::new();
            if let Ok(n) = wideband_to_narrowband(&data, &mut out) {
                // The output re-parses to as many frames, none with higher-band layers.
                let back: Vec<_> = frames(&out).collect::<Result<_, _>>().unwrap();
                prop_assert_eq!(back.len(), n);
                prop_assert!(back.iter().all(|f| f.wb_bits == 0));
                prop_assert!(out.len() <= data.len());
            }
        }
    }
}
