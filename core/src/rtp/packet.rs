//! The RTP data packet (RFC 3550 section 5.1): zero-copy parsing from [`Bytes`] and writing.
//!
//! Parsing validates everything a hostile datagram can lie about (version, CSRC count,
//! extension length, padding length) against the bytes actually present, and slices the
//! payload out of the input instead of copying it.

use std::fmt;

use bytes::{Buf, BufMut, Bytes, BytesMut};
use smallvec::SmallVec;

/// The RTP version this code speaks.
pub const RTP_VERSION: u8 = 2;
/// Size of the fixed RTP header.
pub const RTP_HEADER_LEN: usize = 12;
/// The most contributing sources a header can list (4-bit count).
pub const MAX_CSRCS: usize = 15;

/// Why bytes are not a valid RTP packet, or a packet cannot be written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum RtpError {
    /// Shorter than the header it declares.
    TooShort,
    /// The version field is not 2.
    BadVersion(u8),
    /// The padding count is zero or longer than the packet body.
    BadPadding,
    /// The header extension runs past the end of the packet.
    TruncatedExtension,
    /// Writing: more than [`MAX_CSRCS`] CSRCs.
    TooManyCsrcs,
    /// Writing: payload type above 127.
    BadPayloadType,
    /// Writing: extension data not a whole number of 32-bit words, or too long.
    BadExtension,
}

impl fmt::Display for RtpError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let s = match self {
            RtpError::TooShort => "RTP packet shorter than its header",
            RtpError::BadVersion(_) => "RTP version is not 2",
            RtpError::BadPadding => "RTP padding length is invalid",
            RtpError::TruncatedExtension => "RTP header extension runs past the packet",
            RtpError::TooManyCsrcs => "more than 15 CSRCs",
            RtpError::BadPayloadType => "RTP payload type above 127",
            RtpError::BadExtension => "RTP extension is not whole 32-bit words",
        };
        f.write_str(s)
    }
}

impl std::error::Error for RtpError {}

/// An RTP header extension (RFC 3550 section 5.3.1): a profile-defined 16-bit identifier and
/// data that is a whole number of 32-bit words.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HeaderExtension {
    /// Profile-defined identifier (for example `0xBEDE` for RFC 8285 one-byte headers).
    pub profile: u16,
    /// Extension data, a multiple of 4 bytes long.
    pub data: Bytes,
}

/// An RTP packet.
///
/// ```
/// use bytes::Bytes;
/// use siprtmp_core::rtp::RtpPacket;
/// let pkt = RtpPacket::new(0, 1000, 160, 0x1234_5678, Bytes::from_static(&[0xff; 160]));
/// let wire = pkt.serialize().unwrap();
/// assert_eq!(&wire[..4], &[0x80, 0x00, 0x03, 0xe8]);
/// assert_eq!(RtpPacket::parse(wire).unwrap(), pkt);
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RtpPacket {
    /// Marker bit (start of a talkspurt for audio, last packet of a frame for video).
    pub marker: bool,
    /// Payload type (0..=127).
    pub payload_type: u8,
    /// Sequence number.
    pub sequence: u16,
    /// Media timestamp in clock-rate units.
    pub timestamp: u32,
    /// Synchronization source.
    pub ssrc: u32,
    /// Contributing sources (at most 15).
    pub csrcs: SmallVec<[u32; 4]>,
    /// Header extension, when the X bit is set.
    pub extension: Option<HeaderExtension>,
    /// The payload, without padding.
    pub payload: Bytes,
    /// Number of padding bytes after the payload (0 = no padding), counting the final count
    /// byte itself.
    pub padding: u8,
}

impl RtpPacket {
    /// A packet with no CSRCs, extension, padding or marker.
    pub fn new(payload_type: u8, sequence: u16, timestamp: u32, ssrc: u32, payload: Bytes) -> Self {
        RtpPacket {
            marker: false,
            payload_type,
            sequence,
            timestamp,
            ssrc,
            csrcs: SmallVec::new(),
            extension: None,
            payload,
            padding: 0,
        }
    }

    /// Parses a packet; the payload and extension data are slices of `data` (no copy).
    // Once per packet: inlined into its caller (no call, no copy of its result).
    #[inline]
    pub fn parse(data: Bytes) -> Result<Self, RtpError> {
        if data.len() < RTP_HEADER_LEN {
            return Err(RtpError::TooShort);
        }
        let b0 = data[0];
        let version = b0 >> 6;
        if version != RTP_VERSION {
            return Err(RtpError::BadVersion(version));
        }
        let has_padding = b0 & 0x20 != 0;
        let has_extension = b0 & 0x10 != 0;
        let csrc_count = usize::from(b0 & 0x0f);
        let b1 = data[1];
        let be32 =
            |at: usize| u32::from_be_bytes([data[at], data[at + 1], data[at + 2], data[at + 3]]);
        let mut offset = RTP_HEADER_LEN + 4 * csrc_count;
        if data.len() < offset {
            return Err(RtpError::TooShort);
        }
        // Almost every packet has none: no iterator set up for nothing.
        let csrcs = if csrc_count == 0 {
            SmallVec::new()
        } else {
            (0..csrc_count)
                .map(|i| be32(RTP_HEADER_LEN + 4 * i))
                .collect()
        };
        let extension = if has_extension {
            if data.len() < offset + 4 {
                return Err(RtpError::TruncatedExtension);
            }
            let profile = u16::from_be_bytes([data[offset], data[offset + 1]]);
            let words = usize::from(u16::from_be_bytes([data[offset + 2], data[offset + 3]]));
            let start = offset + 4;
            let end = start + 4 * words;
            if data.len() < end {
                return Err(RtpError::TruncatedExtension);
            }
            offset = end;
            Some(HeaderExtension {
                profile,
                data: data.slice(start..end),
            })
        } else {
            None
        };
        let mut end = data.len();
        let mut padding = 0;
        if has_padding {
            padding = data[end - 1];
            if padding == 0 || end - offset < usize::from(padding) {
                return Err(RtpError::BadPadding);
            }
            end -= usize::from(padding);
        }
        let (sequence, timestamp, ssrc) =
            (u16::from_be_bytes([data[2], data[3]]), be32(4), be32(8));
        // The datagram becomes the payload in place: no reference count taken and dropped.
        let mut payload = data;
        payload.truncate(end);
        payload.advance(offset);
        Ok(RtpPacket {
            marker: b1 & 0x80 != 0,
            payload_type: b1 & 0x7f,
            sequence,
            timestamp,
            ssrc,
            csrcs,
            extension,
            payload,
            padding,
        })
    }

    /// Length of the header: fixed part, CSRCs and extension.
    pub fn header_len(&self) -> usize {
        RTP_HEADER_LEN
            + 4 * self.csrcs.len()
            + self.extension.as_ref().map_or(0, |e| 4 + e.data.len())
    }

    /// Length of the whole packet on the wire.
    pub fn len(&self) -> usize {
        self.header_len() + self.payload.len() + usize::from(self.padding)
    }

    /// Whether the packet has neither payload nor padding.
    pub fn is_empty(&self) -> bool {
        self.payload.is_empty() && self.padding == 0
    }

    fn validate(&self) -> Result<(), RtpError> {
        if self.csrcs.len() > MAX_CSRCS {
            return Err(RtpError::TooManyCsrcs);
        }
        if self.payload_type > 127 {
            return Err(RtpError::BadPayloadType);
        }
        if let Some(ext) = &self.extension {
            if ext.data.len() % 4 != 0 || ext.data.len() / 4 > usize::from(u16::MAX) {
                return Err(RtpError::BadExtension);
            }
        }
        Ok(())
    }

    /// Writes the header (fixed part, CSRCs, extension) to `out`; the payload and padding
    /// follow separately, so a sender can hand the payload `Bytes` to the socket uncopied.
    pub fn write_header(&self, out: &mut impl BufMut) -> Result<(), RtpError> {
        self.validate()?;
        let mut b0 = RTP_VERSION << 6 | self.csrcs.len() as u8;
        if self.padding > 0 {
            b0 |= 0x20;
        }
        if self.extension.is_some() {
            b0 |= 0x10;
        }
        out.put_u8(b0);
        out.put_u8(u8::from(self.marker) << 7 | self.payload_type);
        out.put_u16(self.sequence);
        out.put_u32(self.timestamp);
        out.put_u32(self.ssrc);
        for &c in &self.csrcs {
            out.put_u32(c);
        }
        if let Some(ext) = &self.extension {
            out.put_u16(ext.profile);
            out.put_u16((ext.data.len() / 4) as u16);
            out.put_slice(&ext.data);
        }
        Ok(())
    }

    /// Writes the padding that follows the payload (nothing when `padding` is 0).
    pub fn write_padding(&self, out: &mut impl BufMut) {
        if self.padding > 0 {
            out.put_bytes(0, usize::from(self.padding) - 1);
            out.put_u8(self.padding);
        }
    }

    /// The whole packet in one buffer (copies the payload; senders on the hot path use
    /// [`write_header`](Self::write_header) and send the payload alongside).
    pub fn serialize(&self) -> Result<Bytes, RtpError> {
        let mut out = BytesMut::with_capacity(self.len());
        self.write_header(&mut out)?;
        out.put_slice(&self.payload);
        self.write_padding(&mut out);
        Ok(out.freeze())
    }
}

/// The fixed 12-byte header of a packet with no CSRCs, extension or padding, which is what a
/// sender of its own media writes for every packet: what
/// [`RtpPacket::write_header`] would write, without a packet to build.
///
/// ```
/// use bytes::Bytes;
/// use siprtmp_core::rtp::{FixedHeader, RtpPacket};
/// let header = FixedHeader { marker: true, payload_type: 97, sequence: 7, timestamp: 320, ssrc: 0xfeed };
/// let mut packet = RtpPacket::new(97, 7, 320, 0xfeed, Bytes::new());
/// packet.marker = true;
/// let mut written = Vec::new();
/// packet.write_header(&mut written).unwrap();
/// assert_eq!(&header.encode().unwrap()[..], &written[..]);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FixedHeader {
    /// The marker bit (the first packet of a talkspurt, the last of a video frame).
    pub marker: bool,
    /// The payload type, 0 to 127.
    pub payload_type: u8,
    /// The sequence number.
    pub sequence: u16,
    /// The media timestamp.
    pub timestamp: u32,
    /// The synchronisation source.
    pub ssrc: u32,
}

impl FixedHeader {
    /// The header's 12 bytes; a payload type above 127 is an error.
    pub fn encode(&self) -> Result<[u8; RTP_HEADER_LEN], RtpError> {
        if self.payload_type > 127 {
            return Err(RtpError::BadPayloadType);
        }
        let mut h = [0u8; RTP_HEADER_LEN];
        h[0] = RTP_VERSION << 6;
        h[1] = u8::from(self.marker) << 7 | self.payload_type;
        h[2..4].copy_from_slice(&self.sequence.to_be_bytes());
        h[4..8].copy_from_slice(&self.timestamp.to_be_bytes());
        h[8..12].copy_from_slice(&self.ssrc.to_be_bytes());
        Ok(h)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// A packet with two CSRCs, an RFC 8285 one-byte extension, marker set and padding,
    /// laid out by hand from RFC 3550 figure 5.1.
    const VECTOR: [u8; 40] = [
        0xb2, 0xe0, 0x12, 0x34, // V=2 P=1 X=1 CC=2, M=1 PT=96, seq 0x1234
        0xde, 0xad, 0xbe, 0xef, // timestamp
        0x11, 0x22, 0x33, 0x44, // SSRC
        0x00, 0x00, 0x00, 0x01, // CSRC 1
        0x00, 0x00, 0x00, 0x02, // CSRC 2
        0xbe, 0xde, 0x00, 0x02, // extension profile 0xBEDE, 2 words
        0x10, 0xaa, 0x21, 0xbb, // id 1 len 1; id 2 len 2
        0xcc, 0x00, 0x00, 0x00, //
        0x01, 0x02, 0x03, 0x04, // payload
        0x05, 0x00, 0x00, 0x03, // payload byte, 3 padding bytes
    ];

    #[test]
    fn parses_known_vector() {
        let pkt = RtpPacket::parse(Bytes::from_static(&VECTOR)).unwrap();
        assert!(pkt.marker);
        assert_eq!(pkt.payload_type, 96);
        assert_eq!(pkt.sequence, 0x1234);
        assert_eq!(pkt.timestamp, 0xdead_beef);
        assert_eq!(pkt.ssrc, 0x1122_3344);
        assert_eq!(pkt.csrcs.as_slice(), &[1, 2]);
        let ext = pkt.extension.as_ref().unwrap();
        assert_eq!(ext.profile, 0xbede);
        assert_eq!(&ext.data[..], &[0x10, 0xaa, 0x21, 0xbb, 0xcc, 0, 0, 0]);
        assert_eq!(&pkt.payload[..], &[1, 2, 3, 4, 5]);
        assert_eq!(pkt.padding, 3);
        assert_eq!(pkt.len(), VECTOR.len());
        assert_eq!(&pkt.serialize().unwrap()[..], &VECTOR[..]);
    }

    #[test]
    fn payload_is_a_slice_of_the_input() {
        let input = Bytes::from_static(&VECTOR);
        let pkt = RtpPacket::parse(input.clone()).unwrap();
        assert_eq!(pkt.payload.as_ptr(), input[32..].as_ptr());
    }

    #[test]
    fn rejects_lies() {
        let parse = |v: &[u8]| RtpPacket::parse(Bytes::copy_from_slice(v));
        assert_eq!(parse(&VECTOR[..11]), Err(RtpError::TooShort));
        let mut v = VECTOR;
        v[0] = 0x72;
        assert_eq!(parse(&v), Err(RtpError::BadVersion(1)));
        let mut v = VECTOR;
        v[0] = 0x8f; // 15 CSRCs but only 28 bytes after the fixed header
        assert_eq!(parse(&v), Err(RtpError::TooShort));
        let mut v = VECTOR;
        v[23] = 0x40; // extension of 64 words
        assert_eq!(parse(&v), Err(RtpError::TruncatedExtension));
        let mut v = VECTOR;
        v[39] = 0;
        assert_eq!(parse(&v), Err(RtpError::BadPadding));
        v[39] = 9; // more than the 8 bytes after the header
        assert_eq!(parse(&v), Err(RtpError::BadPadding));
        v[39] = 8; // exactly the body: empty payload
        assert_eq!(parse(&v).unwrap().payload.len(), 0);
    }

    #[test]
    fn write_refuses_invalid_packets() {
        let mut p = RtpPacket::new(200, 0, 0, 0, Bytes::new());
        assert_eq!(p.serialize(), Err(RtpError::BadPayloadType));
        p.payload_type = 0;
        p.csrcs = (0..16).collect();
        assert_eq!(p.serialize(), Err(RtpError::TooManyCsrcs));
        p.csrcs.clear();
        p.extension = Some(HeaderExtension {
            profile: 1,
            data: Bytes::from_static(&[1, 2, 3]),
        });
        assert_eq!(p.serialize(), Err(RtpError::BadExtension));
    }

    fn packet() -> impl Strategy<Value = RtpPacket> {
        (
            (
                any::<bool>(),
                0u8..128,
                any::<u16>(),
                any::<u32>(),
                any::<u32>(),
            ),
            proptest::collection::vec(any::<u32>(), 0..=MAX_CSRCS),
            proptest::option::of((
                any::<u16>(),
                proptest::collection::vec(any::<[u8; 4]>(), 0..4),
            )),
            proptest::collection::vec(any::<u8>(), 0..64),
            any::<u8>(),
        )
            .prop_map(
                |(
                    (marker, payload_type, sequence, timestamp, ssrc),
                    csrcs,
                    ext,
                    payload,
                    padding,
                )| {
                    RtpPacket {
                        marker,
                        payload_type,
                        sequence,
                        timestamp,
                        ssrc,
                        csrcs: csrcs.into_iter().collect(),
                        extension: ext.map(|(profile, words)| HeaderExtension {
                            profile,
                            data: Bytes::from(words.concat()),
                        }),
                        payload: Bytes::from(payload),
                        padding,
                    }
                },
            )
    }

    proptest! {
        #[test]
        fn arbitrary_bytes_never_panic(mut data in proptest::collection::vec(any::<u8>(), 0..128), fix in any::<bool>()) {
            if fix && !data.is_empty() {
                // Force version 2 so the rest of the header is exercised too.
                data[0] = (data[0] & 0x3f) | 0x80;
            }
            let _ = RtpPacket::parse(Bytes::from(data));
        }

        #[test]
        fn the_fixed_header_is_what_a_plain_packet_writes(
            marker in any::<bool>(), pt in 0u8..=255, seq in any::<u16>(),
            ts in any::<u32>(), ssrc in any::<u32>(),
        ) {
            let mut packet = RtpPacket::new(pt, seq, ts, ssrc, Bytes::new());
            packet.marker = marker;
            let mut written = Vec::new();
            let fixed = FixedHeader { marker, payload_type: pt, sequence: seq, timestamp: ts, ssrc };
            match (fixed.encode(), packet.write_header(&mut written)) {
                (Ok(fixed), Ok(())) => prop_assert_eq!(&fixed[..], &written[..]),
                (Err(a), Err(b)) => prop_assert_eq!(a, b),
                (a, b) => prop_assert!(false, "fixed {:?}, written {:?}", a, b),
            }
        }

        #[test]
        fn serialize_then_parse_round_trips(pkt in packet()) {
            let wire = pkt.serialize().unwrap();
            prop_assert_eq!(wire.len(), pkt.len());
            prop_assert_eq!(RtpPacket::parse(wire), Ok(pkt));
        }
    }
}
