//! The AVCDecoderConfigurationRecord (ISO/IEC 14496-15 section 5.2.4.1): the body of an FLV
//! AVC sequence header after its 5-byte video header. It carries the SPS and PPS parameter
//! sets and the size of the NAL unit length prefixes used by the frames that follow.
//!
//! ```text
//! version=1 | profile | compatibility | level | 111111 lengthSizeMinusOne:2
//! 111 numSPS:5 | numSPS × (len:16, SPS) | numPPS:8 | numPPS × (len:16, PPS) | [ext...]
//! ```
//!
//! Parsing slices the parameter sets out of the input (no copy) and ignores trailing bytes
//! (the high-profile chroma/bit-depth extension). Writing emits the basic record without
//! that extension, which is what Flash-era encoders produced.

use std::fmt;

use bytes::{BufMut, Bytes, BytesMut};

/// Why bytes are not an AVCDecoderConfigurationRecord.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum AvcConfigError {
    /// The record ends before a field or parameter set it declares.
    Truncated,
    /// The configuration version is not 1.
    BadVersion(u8),
    /// The length size is 3 bytes (lengthSizeMinusOne = 2), which the format forbids.
    BadLengthSize,
    /// Writing: no SPS or no PPS, more than 31 SPS / 255 PPS, or one over 65535 bytes.
    BadParameterSets,
}

impl fmt::Display for AvcConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            AvcConfigError::Truncated => f.write_str("AVC decoder configuration is truncated"),
            AvcConfigError::BadVersion(v) => write!(f, "AVC configuration version {v}"),
            AvcConfigError::BadLengthSize => f.write_str("AVC NAL length size of 3 bytes"),
            AvcConfigError::BadParameterSets => f.write_str("invalid AVC parameter sets"),
        }
    }
}

impl std::error::Error for AvcConfigError {}

/// A parsed AVCDecoderConfigurationRecord.
///
/// ```
/// use bytes::Bytes;
/// use siprtmp_core::media::AvcDecoderConfig;
/// let sps = Bytes::from_static(&[0x67, 0x42, 0xc0, 0x0c, 0xda]);
/// let pps = Bytes::from_static(&[0x68, 0xce, 0x3c, 0x80]);
/// let cfg = AvcDecoderConfig::from_parameter_sets(vec![sps], vec![pps]).unwrap();
/// let record = cfg.to_bytes().unwrap();
/// assert_eq!(&record[..6], &[1, 0x42, 0xc0, 0x0c, 0xff, 0xe1]);
/// assert_eq!(AvcDecoderConfig::parse(&record).unwrap(), cfg);
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AvcDecoderConfig {
    /// AVCProfileIndication (profile_idc of the SPS).
    pub profile: u8,
    /// profile_compatibility (the constraint flags byte of the SPS).
    pub compatibility: u8,
    /// AVCLevelIndication (level_idc of the SPS).
    pub level: u8,
    /// Bytes in each NAL unit length prefix of the frames: 1, 2 or 4.
    pub nal_length_size: u8,
    /// Sequence parameter sets (NAL units including their header byte).
    pub sps: Vec<Bytes>,
    /// Picture parameter sets (NAL units including their header byte).
    pub pps: Vec<Bytes>,
}

/// A bounds-checked cursor over a `Bytes`.
struct Cursor<'a> {
    data: &'a Bytes,
    at: usize,
}

impl Cursor<'_> {
    fn take(&mut self, n: usize) -> Result<Bytes, AvcConfigError> {
        let end = self.at.checked_add(n).ok_or(AvcConfigError::Truncated)?;
        if end > self.data.len() {
            return Err(AvcConfigError::Truncated);
        }
        let out = self.data.slice(self.at..end);
        self.at = end;
        Ok(out)
    }

    fn u8(&mut self) -> Result<u8, AvcConfigError> {
        Ok(self.take(1)?[0])
    }

    /// `count` parameter sets, each with a 16-bit length. Growing the vector one set at a
    /// time (counts are at most 255) never allocates more than the input backs.
    fn sets(&mut self, count: u8) -> Result<Vec<Bytes>, AvcConfigError> {
        let mut sets = Vec::new();
        for _ in 0..count {
            let len = self.take(2)?;
            let len = usize::from(u16::from_be_bytes([len[0], len[1]]));
            sets.push(self.take(len)?);
        }
        Ok(sets)
    }
}

impl AvcDecoderConfig {
    /// Parses a record; the parameter sets are slices of `data`.
    pub fn parse(data: &Bytes) -> Result<Self, AvcConfigError> {
        let mut c = Cursor { data, at: 0 };
        let version = c.u8()?;
        if version != 1 {
            return Err(AvcConfigError::BadVersion(version));
        }
        let profile = c.u8()?;
        let compatibility = c.u8()?;
        let level = c.u8()?;
        let nal_length_size = (c.u8()? & 0x03) + 1;
        if nal_length_size == 3 {
            return Err(AvcConfigError::BadLengthSize);
        }
        let n_sps = c.u8()? & 0x1f;
        let sps = c.sets(n_sps)?;
        let n_pps = c.u8()?;
        let pps = c.sets(n_pps)?;
        Ok(AvcDecoderConfig {
            profile,
            compatibility,
            level,
            nal_length_size,
            sps,
            pps,
        })
    }

    /// A record for these parameter sets with 4-byte NAL lengths; profile, compatibility and
    /// level are read from the first SPS (bytes 1 to 3). `None` without an SPS of at least
    /// 4 bytes or without a PPS.
    pub fn from_parameter_sets(sps: Vec<Bytes>, pps: Vec<Bytes>) -> Option<Self> {
        let first = sps.first()?;
        if first.len() < 4 || pps.is_empty() {
            return None;
        }
        Some(AvcDecoderConfig {
            profile: first[1],
            compatibility: first[2],
            level: first[3],
            nal_length_size: 4,
            sps,
            pps,
        })
    }

    /// Appends the record to `out`.
    pub fn write(&self, out: &mut BytesMut) -> Result<(), AvcConfigError> {
        let too_long = |s: &Bytes| s.len() > usize::from(u16::MAX);
        if self.sps.is_empty()
            || self.pps.is_empty()
            || self.sps.len() > 31
            || self.pps.len() > 255
            || self.sps.iter().chain(&self.pps).any(too_long)
            || !matches!(self.nal_length_size, 1 | 2 | 4)
        {
            return Err(AvcConfigError::BadParameterSets);
        }
        out.reserve(self.encoded_len());
        out.put_slice(&[
            1,
            self.profile,
            self.compatibility,
            self.level,
            0xfc | (self.nal_length_size - 1),
            0xe0 | self.sps.len() as u8,
        ]);
        for s in &self.sps {
            out.put_u16(s.len() as u16);
            out.put_slice(s);
        }
        out.put_u8(self.pps.len() as u8);
        for p in &self.pps {
            out.put_u16(p.len() as u16);
            out.put_slice(p);
        }
        Ok(())
    }

    /// The record as a new buffer.
    pub fn to_bytes(&self) -> Result<Bytes, AvcConfigError> {
        let mut out = BytesMut::new();
        self.write(&mut out)?;
        Ok(out.freeze())
    }

    fn encoded_len(&self) -> usize {
        7 + self
            .sps
            .iter()
            .chain(&self.pps)
            .map(|s| 2 + s.len())
            .sum::<usize>()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// The sequence header of a real x264 baseline stream (320x240, the shared test media),
    /// after its 5-byte FLV video header.
    const RECORD: &[u8] = &[
        0x01, 0x42, 0xc0, 0x0c, 0xff, 0xe1, 0x00, 0x16, 0x67, 0x42, 0xc0, 0x0c, 0xda, 0x05, 0x07,
        0xec, 0x04, 0x40, 0x00, 0x00, 0x03, 0x00, 0x40, 0x00, 0x00, 0x06, 0x23, 0xc5, 0x0a, 0xa8,
        0x01, 0x00, 0x04, 0x68, 0xce, 0x3c, 0x80,
    ];

    #[test]
    fn parses_a_real_record_and_writes_it_back() {
        let data = Bytes::from_static(RECORD);
        let cfg = AvcDecoderConfig::parse(&data).unwrap();
        assert_eq!(
            (cfg.profile, cfg.compatibility, cfg.level),
            (0x42, 0xc0, 0x0c)
        );
        assert_eq!(cfg.nal_length_size, 4);
        assert_eq!(cfg.sps.len(), 1);
        assert_eq!(cfg.sps[0].len(), 0x16);
        assert_eq!(cfg.sps[0][0] & 0x1f, 7);
        assert_eq!(&cfg.pps[0][..], &[0x68, 0xce, 0x3c, 0x80]);
        assert_eq!(&cfg.to_bytes().unwrap()[..], RECORD);
        let rebuilt =
            AvcDecoderConfig::from_parameter_sets(cfg.sps.clone(), cfg.pps.clone()).unwrap();
        assert_eq!(rebuilt, cfg);
    }

    #[test]
    fn rejects_bad_records() {
        let mut bad = RECORD.to_vec();
        bad[0] = 0;
        assert_eq!(
            AvcDecoderConfig::parse(&Bytes::from(bad)),
            Err(AvcConfigError::BadVersion(0))
        );
        let mut bad = RECORD.to_vec();
        bad[4] = 0xfe;
        assert_eq!(
            AvcDecoderConfig::parse(&Bytes::from(bad)),
            Err(AvcConfigError::BadLengthSize)
        );
        for cut in 0..RECORD.len() {
            assert_eq!(
                AvcDecoderConfig::parse(&Bytes::copy_from_slice(&RECORD[..cut])),
                Err(AvcConfigError::Truncated),
                "cut at {cut}"
            );
        }
        assert!(AvcDecoderConfig::from_parameter_sets(vec![], vec![]).is_none());
    }

    proptest! {
        #[test]
        fn arbitrary_bytes_never_panic(data in proptest::collection::vec(any::<u8>(), 0..300)) {
            if let Ok(cfg) = AvcDecoderConfig::parse(&Bytes::from(data)) {
                if !cfg.sps.is_empty() && !cfg.pps.is_empty() {
                    let again = AvcDecoderConfig::parse(&cfg.to_bytes().unwrap()).unwrap();
                    prop_assert_eq!(again, cfg);
                }
            }
        }
    }
}
