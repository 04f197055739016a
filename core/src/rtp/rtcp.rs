//! RTCP packets (RFC 3550 section 6): sender and receiver reports, source descriptions,
//! BYE and APP, read from and written to compound packets.
//!
//! Types the gateway does not act on (feedback messages, extended reports...) are kept
//! opaque so nothing is lost. Every count and length in the input is checked against the
//! bytes actually present before anything is allocated.

use std::fmt;

use bytes::{BufMut, Bytes, BytesMut};

/// Packet type of a sender report.
pub const PT_SR: u8 = 200;
/// Packet type of a receiver report.
pub const PT_RR: u8 = 201;
/// Packet type of a source description.
pub const PT_SDES: u8 = 202;
/// Packet type of a goodbye.
pub const PT_BYE: u8 = 203;
/// Packet type of an application-defined packet.
pub const PT_APP: u8 = 204;

/// Size of one report block.
const REPORT_BLOCK_LEN: usize = 24;
/// The 5-bit count field's maximum.
const MAX_COUNT: usize = 31;

/// Why bytes are not a valid RTCP compound packet, or packets cannot be written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum RtcpError {
    /// The input is empty or ends inside a header or a field.
    TooShort,
    /// A packet's version field is not 2.
    BadVersion(u8),
    /// A packet's length field runs past the end of the compound packet.
    BadLength,
    /// A padding count is zero or longer than its packet.
    BadPadding,
    /// An SDES chunk has no terminating null item.
    UnterminatedSdes,
    /// Writing: more than 31 report blocks, chunks or sources in one packet.
    TooMany,
    /// Writing: an SDES item of type 0 or longer than 255 bytes, or a BYE reason longer than
    /// 255 bytes.
    BadItem,
    /// Writing: opaque data (APP, profile extension, unknown body) not a whole number of
    /// 32-bit words, or a packet longer than the 16-bit length field allows.
    BadAlignment,
}

impl fmt::Display for RtcpError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let s = match self {
            RtcpError::TooShort => "RTCP input ends inside a packet",
            RtcpError::BadVersion(_) => "RTCP version is not 2",
            RtcpError::BadLength => "RTCP length runs past the compound packet",
            RtcpError::BadPadding => "RTCP padding length is invalid",
            RtcpError::UnterminatedSdes => "RTCP SDES chunk is not terminated",
            RtcpError::TooMany => "more than 31 entries in one RTCP packet",
            RtcpError::BadItem => "RTCP SDES item or BYE reason cannot be encoded",
            RtcpError::BadAlignment => "RTCP data is not whole 32-bit words",
        };
        f.write_str(s)
    }
}

impl std::error::Error for RtcpError {}

/// A reception report about one source (RFC 3550 section 6.4.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ReportBlock {
    /// The source reported on.
    pub ssrc: u32,
    /// Fraction of packets lost since the previous report, in 1/256.
    pub fraction_lost: u8,
    /// Cumulative number of packets lost (24-bit signed; duplicates can make it negative).
    pub cumulative_lost: i32,
    /// Extended highest sequence number received (cycles in the high 16 bits).
    pub highest_sequence: u32,
    /// Interarrival jitter, in timestamp units.
    pub jitter: u32,
    /// Middle 32 bits of the NTP timestamp of the last SR from this source (0 if none).
    pub last_sr: u32,
    /// Delay since that SR was received, in 1/65536 s.
    pub delay_since_last_sr: u32,
}

/// A sender report.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SenderReport {
    /// The sender.
    pub ssrc: u32,
    /// NTP timestamp of this report (seconds in the high 32 bits, fraction in the low).
    pub ntp_timestamp: u64,
    /// The RTP timestamp that corresponds to `ntp_timestamp`.
    pub rtp_timestamp: u32,
    /// Packets sent since the start.
    pub packet_count: u32,
    /// Payload octets sent since the start.
    pub octet_count: u32,
    /// Reports about the sources this sender receives.
    pub reports: Vec<ReportBlock>,
    /// Profile-specific extension, kept opaque (whole 32-bit words).
    pub profile_extension: Bytes,
}

/// A receiver report.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReceiverReport {
    /// The reporter.
    pub ssrc: u32,
    /// Reports about the sources it receives.
    pub reports: Vec<ReportBlock>,
    /// Profile-specific extension, kept opaque.
    pub profile_extension: Bytes,
}

/// SDES item type: canonical name.
pub const SDES_CNAME: u8 = 1;
/// SDES item type: user name.
pub const SDES_NAME: u8 = 2;
/// SDES item type: e-mail address.
pub const SDES_EMAIL: u8 = 3;
/// SDES item type: phone number.
pub const SDES_PHONE: u8 = 4;
/// SDES item type: location.
pub const SDES_LOC: u8 = 5;
/// SDES item type: application or tool name.
pub const SDES_TOOL: u8 = 6;
/// SDES item type: notice.
pub const SDES_NOTE: u8 = 7;
/// SDES item type: private extension (prefix inside the value).
pub const SDES_PRIV: u8 = 8;

/// One SDES item: a type and its value (UTF-8 text by the RFC, kept as bytes here).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SdesItem {
    /// Item type ([`SDES_CNAME`]...); never 0, which terminates a chunk.
    pub kind: u8,
    /// Item value, at most 255 bytes.
    pub value: Bytes,
}

/// The items describing one source.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SdesChunk {
    /// The source described.
    pub ssrc: u32,
    /// Its items, in order.
    pub items: Vec<SdesItem>,
}

impl SdesChunk {
    /// The chunk's CNAME, if it has one that is UTF-8.
    pub fn cname(&self) -> Option<&str> {
        let item = self.items.iter().find(|i| i.kind == SDES_CNAME)?;
        std::str::from_utf8(&item.value).ok()
    }
}

/// A goodbye: sources leaving, with an optional reason.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Goodbye {
    /// The sources leaving.
    pub sources: Vec<u32>,
    /// Why, at most 255 bytes.
    pub reason: Option<Bytes>,
}

/// An application-defined packet, kept opaque.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct App {
    /// The 5-bit subtype.
    pub subtype: u8,
    /// The sender.
    pub ssrc: u32,
    /// Four ASCII characters naming the application.
    pub name: [u8; 4],
    /// Application data (whole 32-bit words).
    pub data: Bytes,
}

/// One packet of a compound RTCP packet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RtcpPacket {
    /// Sender report (PT 200).
    SenderReport(SenderReport),
    /// Receiver report (PT 201).
    ReceiverReport(ReceiverReport),
    /// Source description (PT 202).
    SourceDescription(Vec<SdesChunk>),
    /// Goodbye (PT 203).
    Goodbye(Goodbye),
    /// Application-defined (PT 204).
    App(App),
    /// Any other packet type, body kept as received (padding removed).
    Unknown {
        /// Packet type.
        packet_type: u8,
        /// The 5-bit count / format field.
        count: u8,
        /// The body after the 4-byte header.
        body: Bytes,
    },
}

/// Parses a compound RTCP packet into its packets, in order.
///
/// ```
/// use bytes::Bytes;
/// use siprtmp_core::rtp::rtcp::{parse_compound, RtcpPacket};
/// // An empty receiver report from SSRC 0x01020304.
/// let wire = Bytes::from_static(&[0x80, 201, 0, 1, 1, 2, 3, 4]);
/// match &parse_compound(wire).unwrap()[..] {
///     [RtcpPacket::ReceiverReport(rr)] => assert_eq!(rr.ssrc, 0x0102_0304),
///     other => panic!("{other:?}"),
/// }
/// ```
pub fn parse_compound(data: Bytes) -> Result<Vec<RtcpPacket>, RtcpError> {
    if data.is_empty() {
        return Err(RtcpError::TooShort);
    }
    let mut packets = Vec::new();
    let mut rest = data;
    while !rest.is_empty() {
        if rest.len() < 4 {
            return Err(RtcpError::TooShort);
        }
        let version = rest[0] >> 6;
        if version != 2 {
            return Err(RtcpError::BadVersion(version));
        }
        let len = (usize::from(u16::from_be_bytes([rest[2], rest[3]])) + 1) * 4;
        if len > rest.len() {
            return Err(RtcpError::BadLength);
        }
        let packet = rest.split_to(len);
        packets.push(parse_packet(packet)?);
    }
    Ok(packets)
}

/// A cursor over one packet body; every read checks the remaining length.
struct Reader {
    data: Bytes,
    pos: usize,
}

impl Reader {
    fn remaining(&self) -> usize {
        self.data.len() - self.pos
    }
    fn take(&mut self, n: usize) -> Result<Bytes, RtcpError> {
        if self.remaining() < n {
            return Err(RtcpError::TooShort);
        }
        let b = self.data.slice(self.pos..self.pos + n);
        self.pos += n;
        Ok(b)
    }
    fn u8(&mut self) -> Result<u8, RtcpError> {
        Ok(self.take(1)?[0])
    }
    fn u32(&mut self) -> Result<u32, RtcpError> {
        let b = self.take(4)?;
        Ok(u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
    }
    fn rest(&mut self) -> Bytes {
        let b = self.data.slice(self.pos..);
        self.pos = self.data.len();
        b
    }
    fn align4(&mut self) {
        self.pos = (self.pos + 3) & !3;
        self.pos = self.pos.min(self.data.len());
    }
}

fn parse_packet(packet: Bytes) -> Result<RtcpPacket, RtcpError> {
    let padded = packet[0] & 0x20 != 0;
    let count = packet[0] & 0x1f;
    let packet_type = packet[1];
    let mut body = packet.slice(4..);
    if padded {
        let pad = usize::from(*body.last().ok_or(RtcpError::BadPadding)?);
        if pad == 0 || pad > body.len() {
            return Err(RtcpError::BadPadding);
        }
        body.truncate(body.len() - pad);
    }
    let mut r = Reader { data: body, pos: 0 };
    let n = usize::from(count);
    Ok(match packet_type {
        PT_SR => {
            let ssrc = r.u32()?;
            let ntp_timestamp = u64::from(r.u32()?) << 32 | u64::from(r.u32()?);
            let rtp_timestamp = r.u32()?;
            let packet_count = r.u32()?;
            let octet_count = r.u32()?;
            let reports = read_reports(&mut r, n)?;
            RtcpPacket::SenderReport(SenderReport {
                ssrc,
                ntp_timestamp,
                rtp_timestamp,
                packet_count,
                octet_count,
                reports,
                profile_extension: r.rest(),
            })
        }
        PT_RR => {
            let ssrc = r.u32()?;
            let reports = read_reports(&mut r, n)?;
            RtcpPacket::ReceiverReport(ReceiverReport {
                ssrc,
                reports,
                profile_extension: r.rest(),
            })
        }
        PT_SDES => {
            // Each chunk is at least 8 bytes (SSRC and a padded null item).
            if r.remaining() < n * 8 {
                return Err(RtcpError::TooShort);
            }
            let mut chunks = Vec::with_capacity(n);
            for _ in 0..n {
                let ssrc = r.u32()?;
                let mut items = Vec::new();
                loop {
                    let kind = r.u8().map_err(|_| RtcpError::UnterminatedSdes)?;
                    if kind == 0 {
                        r.align4();
                        break;
                    }
                    let len = usize::from(r.u8()?);
                    items.push(SdesItem {
                        kind,
                        value: r.take(len)?,
                    });
                }
                chunks.push(SdesChunk { ssrc, items });
            }
            RtcpPacket::SourceDescription(chunks)
        }
        PT_BYE => {
            if r.remaining() < n * 4 {
                return Err(RtcpError::TooShort);
            }
            let sources = (0..n).map(|_| r.u32()).collect::<Result<Vec<_>, _>>()?;
            let reason = if r.remaining() > 0 {
                let len = usize::from(r.u8()?);
                Some(r.take(len)?)
            } else {
                None
            };
            RtcpPacket::Goodbye(Goodbye { sources, reason })
        }
        PT_APP => {
            let ssrc = r.u32()?;
            let n = r.take(4)?;
            RtcpPacket::App(App {
                subtype: count,
                ssrc,
                name: [n[0], n[1], n[2], n[3]],
                data: r.rest(),
            })
        }
        _ => RtcpPacket::Unknown {
            packet_type,
            count,
            body: r.rest(),
        },
    })
}

fn read_reports(r: &mut Reader, n: usize) -> Result<Vec<ReportBlock>, RtcpError> {
    if r.remaining() < n * REPORT_BLOCK_LEN {
        return Err(RtcpError::TooShort);
    }
    let mut reports = Vec::with_capacity(n);
    for _ in 0..n {
        let ssrc = r.u32()?;
        let lost = r.u32()?;
        // Sign-extend the 24-bit cumulative loss.
        let cumulative_lost = ((lost << 8) as i32) >> 8;
        reports.push(ReportBlock {
            ssrc,
            fraction_lost: (lost >> 24) as u8,
            cumulative_lost,
            highest_sequence: r.u32()?,
            jitter: r.u32()?,
            last_sr: r.u32()?,
            delay_since_last_sr: r.u32()?,
        });
    }
    Ok(reports)
}

fn write_reports(out: &mut BytesMut, reports: &[ReportBlock]) {
    for b in reports {
        out.put_u32(b.ssrc);
        let lost = (b.cumulative_lost.clamp(-0x80_0000, 0x7f_ffff) as u32) & 0x00ff_ffff;
        out.put_u32(u32::from(b.fraction_lost) << 24 | lost);
        out.put_u32(b.highest_sequence);
        out.put_u32(b.jitter);
        out.put_u32(b.last_sr);
        out.put_u32(b.delay_since_last_sr);
    }
}

fn check_count(n: usize) -> Result<u8, RtcpError> {
    if n > MAX_COUNT {
        return Err(RtcpError::TooMany);
    }
    Ok(n as u8)
}

fn check_words(b: &Bytes) -> Result<(), RtcpError> {
    // Whole 32-bit words (written as a mask: the crate's MSRV predates is_multiple_of).
    if b.len() & 3 != 0 {
        return Err(RtcpError::BadAlignment);
    }
    Ok(())
}

fn pad4(out: &mut BytesMut, start: usize) {
    let len = out.len() - start;
    out.put_bytes(0, (4 - len % 4) % 4);
}

impl RtcpPacket {
    /// Appends this packet (header included, never padded) to `out`.
    pub fn write(&self, out: &mut BytesMut) -> Result<(), RtcpError> {
        let start = out.len();
        let (count, packet_type) = match self {
            RtcpPacket::SenderReport(sr) => (check_count(sr.reports.len())?, PT_SR),
            RtcpPacket::ReceiverReport(rr) => (check_count(rr.reports.len())?, PT_RR),
            RtcpPacket::SourceDescription(chunks) => (check_count(chunks.len())?, PT_SDES),
            RtcpPacket::Goodbye(bye) => (check_count(bye.sources.len())?, PT_BYE),
            RtcpPacket::App(app) => (check_count(usize::from(app.subtype))?, PT_APP),
            RtcpPacket::Unknown {
                packet_type, count, ..
            } => (check_count(usize::from(*count))?, *packet_type),
        };
        out.put_u8(0x80 | count);
        out.put_u8(packet_type);
        out.put_u16(0); // length, patched below
        let result = self.write_body(out);
        if let Err(e) = result {
            out.truncate(start);
            return Err(e);
        }
        let words = (out.len() - start) / 4 - 1;
        if words > usize::from(u16::MAX) {
            out.truncate(start);
            return Err(RtcpError::BadAlignment);
        }
        out[start + 2..start + 4].copy_from_slice(&(words as u16).to_be_bytes());
        Ok(())
    }

    fn write_body(&self, out: &mut BytesMut) -> Result<(), RtcpError> {
        match self {
            RtcpPacket::SenderReport(sr) => {
                check_words(&sr.profile_extension)?;
                out.put_u32(sr.ssrc);
                out.put_u64(sr.ntp_timestamp);
                out.put_u32(sr.rtp_timestamp);
                out.put_u32(sr.packet_count);
                out.put_u32(sr.octet_count);
                write_reports(out, &sr.reports);
                out.put_slice(&sr.profile_extension);
            }
            RtcpPacket::ReceiverReport(rr) => {
                check_words(&rr.profile_extension)?;
                out.put_u32(rr.ssrc);
                write_reports(out, &rr.reports);
                out.put_slice(&rr.profile_extension);
            }
            RtcpPacket::SourceDescription(chunks) => {
                for chunk in chunks {
                    let chunk_start = out.len();
                    out.put_u32(chunk.ssrc);
                    for item in &chunk.items {
                        if item.kind == 0 || item.value.len() > 255 {
                            return Err(RtcpError::BadItem);
                        }
                        out.put_u8(item.kind);
                        out.put_u8(item.value.len() as u8);
                        out.put_slice(&item.value);
                    }
                    // The null item, then zeros up to the next 32-bit boundary.
                    out.put_u8(0);
                    pad4(out, chunk_start);
                }
            }
            RtcpPacket::Goodbye(bye) => {
                let body_start = out.len();
                for &s in &bye.sources {
                    out.put_u32(s);
                }
                if let Some(reason) = &bye.reason {
                    if reason.len() > 255 {
                        return Err(RtcpError::BadItem);
                    }
                    out.put_u8(reason.len() as u8);
                    out.put_slice(reason);
                    pad4(out, body_start);
                }
            }
            RtcpPacket::App(app) => {
                check_words(&app.data)?;
                out.put_u32(app.ssrc);
                out.put_slice(&app.name);
                out.put_slice(&app.data);
            }
            RtcpPacket::Unknown { body, .. } => {
                check_words(body)?;
                out.put_slice(body);
            }
        }
        Ok(())
    }
}

/// Writes packets as one compound packet.
pub fn serialize_compound(packets: &[RtcpPacket]) -> Result<Bytes, RtcpError> {
    let mut out = BytesMut::with_capacity(128);
    for p in packets {
        p.write(&mut out)?;
    }
    Ok(out.freeze())
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// An SR with one report block followed by an SDES CNAME, as an audio endpoint sends it
    /// every few seconds; laid out field by field from RFC 3550 sections 6.4.1 and 6.5.
    const SR_SDES: [u8; 76] = [
        0x81, 0xc8, 0x00, 0x0c, // V=2 RC=1 PT=SR length=12 words
        0x3a, 0x1b, 0x2c, 0x4d, // SSRC of sender
        0xe8, 0x6f, 0x2b, 0x3c, // NTP seconds
        0x80, 0x00, 0x00, 0x00, // NTP fraction (0.5 s)
        0x00, 0x01, 0xe2, 0x40, // RTP timestamp 123456
        0x00, 0x00, 0x01, 0xf4, // packet count 500
        0x00, 0x01, 0x38, 0x80, // octet count 80000
        0x5e, 0x6f, 0x70, 0x81, // report block: SSRC
        0x19, 0xff, 0xff, 0xfe, // fraction 25/256, cumulative lost -2
        0x00, 0x01, 0x00, 0x10, // extended highest seq: 1 cycle, seq 16
        0x00, 0x00, 0x00, 0x2a, // jitter 42
        0x6f, 0x2b, 0x3c, 0x80, // LSR
        0x00, 0x00, 0x80, 0x00, // DLSR 0.5 s
        0x81, 0xca, 0x00, 0x05, // V=2 SC=1 PT=SDES length=5 words
        0x3a, 0x1b, 0x2c, 0x4d, // chunk SSRC
        0x01, 0x0a, b'u', b's', // CNAME, 10 bytes
        b'e', b'r', b'@', b'h', //
        b'o', b's', b't', b'1', //
        0x00, 0x00, 0x00, 0x00, // null item + padding to the boundary
    ];

    #[test]
    fn parses_sender_report_and_sdes() {
        let packets = parse_compound(Bytes::from_static(&SR_SDES)).unwrap();
        assert_eq!(packets.len(), 2);
        let RtcpPacket::SenderReport(sr) = &packets[0] else {
            panic!("{packets:?}")
        };
        assert_eq!(sr.ssrc, 0x3a1b_2c4d);
        assert_eq!(sr.ntp_timestamp, 0xe86f_2b3c_8000_0000);
        assert_eq!(
            (sr.rtp_timestamp, sr.packet_count, sr.octet_count),
            (123_456, 500, 80_000)
        );
        assert_eq!(
            sr.reports,
            [ReportBlock {
                ssrc: 0x5e6f_7081,
                fraction_lost: 25,
                cumulative_lost: -2,
                highest_sequence: 0x0001_0010,
                jitter: 42,
                last_sr: 0x6f2b_3c80,
                delay_since_last_sr: 0x8000,
            }]
        );
        let RtcpPacket::SourceDescription(chunks) = &packets[1] else {
            panic!()
        };
        assert_eq!(chunks[0].cname(), Some("user@host1"));
        assert_eq!(&serialize_compound(&packets).unwrap()[..], &SR_SDES[..]);
    }

    #[test]
    fn bye_app_and_unknown() {
        let wire: &[u8] = &[
            0x82, 0xcb, 0x00, 0x04, 0, 0, 0, 1, 0, 0, 0, 2, 4, b'h', b'u', b'n', b'g', 0, 0,
            0, // BYE
            0x83, 0xcc, 0x00, 0x03, 0, 0, 0, 9, b'T', b'E', b'S', b'T', 1, 2, 3, 4, // APP
            0x81, 0xcd, 0x00, 0x01, 0xaa, 0xbb, 0xcc, 0xdd, // RTPFB, opaque
        ];
        let packets = parse_compound(Bytes::copy_from_slice(wire)).unwrap();
        assert_eq!(
            packets[0],
            RtcpPacket::Goodbye(Goodbye {
                sources: vec![1, 2],
                reason: Some(Bytes::from_static(b"hung"))
            })
        );
        assert_eq!(
            packets[1],
            RtcpPacket::App(App {
                subtype: 3,
                ssrc: 9,
                name: *b"TEST",
                data: Bytes::from_static(&[1, 2, 3, 4])
            })
        );
        assert_eq!(
            packets[2],
            RtcpPacket::Unknown {
                packet_type: 205,
                count: 1,
                body: Bytes::from_static(&[0xaa, 0xbb, 0xcc, 0xdd])
            }
        );
        assert_eq!(&serialize_compound(&packets).unwrap()[..], wire);
    }

    #[test]
    fn padding_on_the_last_packet_is_removed() {
        // RR with a 4-byte padding tail.
        let wire = [0xa0, 0xc9, 0x00, 0x02, 0, 0, 0, 7, 0, 0, 0, 4];
        let packets = parse_compound(Bytes::copy_from_slice(&wire)).unwrap();
        let RtcpPacket::ReceiverReport(rr) = &packets[0] else {
            panic!()
        };
        assert!(rr.profile_extension.is_empty() && rr.ssrc == 7);
        let bad = [0xa0, 0xc9, 0x00, 0x02, 0, 0, 0, 7, 0, 0, 0, 9];
        assert_eq!(
            parse_compound(Bytes::copy_from_slice(&bad)),
            Err(RtcpError::BadPadding)
        );
    }

    #[test]
    fn rejects_lies() {
        let p = |v: &[u8]| parse_compound(Bytes::copy_from_slice(v));
        assert_eq!(p(&[]), Err(RtcpError::TooShort));
        assert_eq!(p(&[0x80, 0xc9, 0x00]), Err(RtcpError::TooShort));
        assert_eq!(p(&[0x40, 0xc9, 0x00, 0x00]), Err(RtcpError::BadVersion(1)));
        assert_eq!(
            p(&[0x80, 0xc9, 0x00, 0x05, 0, 0, 0, 0]),
            Err(RtcpError::BadLength)
        );
        // RR claiming 31 report blocks in 4 bytes.
        assert_eq!(
            p(&[0x9f, 0xc9, 0x00, 0x01, 0, 0, 0, 0]),
            Err(RtcpError::TooShort)
        );
        // SDES chunk whose item runs to the end with no null item.
        assert_eq!(
            p(&[0x81, 0xca, 0x00, 0x02, 0, 0, 0, 1, 1, 1, b'x', 2]),
            Err(RtcpError::TooShort)
        );
        assert_eq!(
            p(&[0x81, 0xca, 0x00, 0x02, 0, 0, 0, 1, 1, 0, 2, 0]),
            Err(RtcpError::UnterminatedSdes)
        );
        // BYE reason longer than the packet.
        assert_eq!(
            p(&[0x81, 0xcb, 0x00, 0x02, 0, 0, 0, 1, 9, b'a', 0, 0]),
            Err(RtcpError::TooShort)
        );
    }

    #[test]
    fn write_refuses_what_cannot_be_encoded() {
        let rr = |n| {
            RtcpPacket::ReceiverReport(ReceiverReport {
                ssrc: 1,
                reports: vec![ReportBlock::default(); n],
                profile_extension: Bytes::new(),
            })
        };
        assert!(serialize_compound(&[rr(31)]).is_ok());
        assert_eq!(serialize_compound(&[rr(32)]), Err(RtcpError::TooMany));
        let sdes = RtcpPacket::SourceDescription(vec![SdesChunk {
            ssrc: 1,
            items: vec![SdesItem {
                kind: 0,
                value: Bytes::new(),
            }],
        }]);
        assert_eq!(serialize_compound(&[sdes]), Err(RtcpError::BadItem));
        let app = RtcpPacket::App(App {
            subtype: 0,
            ssrc: 0,
            name: *b"abcd",
            data: Bytes::from_static(b"x"),
        });
        assert_eq!(serialize_compound(&[app]), Err(RtcpError::BadAlignment));
    }

    fn words(max: usize) -> impl Strategy<Value = Bytes> {
        proptest::collection::vec(any::<[u8; 4]>(), 0..max).prop_map(|w| Bytes::from(w.concat()))
    }
    fn block() -> impl Strategy<Value = ReportBlock> {
        (
            any::<u32>(),
            any::<u8>(),
            -0x80_0000i32..0x80_0000,
            any::<[u32; 4]>(),
        )
            .prop_map(
                |(
                    ssrc,
                    fraction_lost,
                    cumulative_lost,
                    [highest_sequence, jitter, last_sr, dlsr],
                )| {
                    ReportBlock {
                        ssrc,
                        fraction_lost,
                        cumulative_lost,
                        highest_sequence,
                        jitter,
                        last_sr,
                        delay_since_last_sr: dlsr,
                    }
                },
            )
    }
    fn small_bytes(max: usize) -> impl Strategy<Value = Bytes> {
        proptest::collection::vec(any::<u8>(), 0..max).prop_map(Bytes::from)
    }
    fn packet() -> impl Strategy<Value = RtcpPacket> {
        prop_oneof![
            (
                any::<u32>(),
                any::<u64>(),
                any::<[u32; 3]>(),
                proptest::collection::vec(block(), 0..4),
                words(3)
            )
                .prop_map(
                    |(
                        ssrc,
                        ntp_timestamp,
                        [rtp_timestamp, packet_count, octet_count],
                        reports,
                        profile_extension,
                    )| {
                        RtcpPacket::SenderReport(SenderReport {
                            ssrc,
                            ntp_timestamp,
                            rtp_timestamp,
                            packet_count,
                            octet_count,
                            reports,
                            profile_extension,
                        })
                    }
                ),
            (
                any::<u32>(),
                proptest::collection::vec(block(), 0..4),
                words(3)
            )
                .prop_map(|(ssrc, reports, profile_extension)| {
                    RtcpPacket::ReceiverReport(ReceiverReport {
                        ssrc,
                        reports,
                        profile_extension,
                    })
                }),
            proptest::collection::vec(
                (
                    any::<u32>(),
                    proptest::collection::vec(
                        (1u8..=255, small_bytes(20))
                            .prop_map(|(kind, value)| SdesItem { kind, value }),
                        0..4
                    )
                )
                    .prop_map(|(ssrc, items)| SdesChunk { ssrc, items }),
                0..4
            )
            .prop_map(RtcpPacket::SourceDescription),
            (
                proptest::collection::vec(any::<u32>(), 0..5),
                proptest::option::of(small_bytes(30))
            )
                .prop_map(|(sources, reason)| RtcpPacket::Goodbye(Goodbye { sources, reason })),
            (0u8..32, any::<u32>(), any::<[u8; 4]>(), words(4)).prop_map(
                |(subtype, ssrc, name, data)| RtcpPacket::App(App {
                    subtype,
                    ssrc,
                    name,
                    data
                })
            ),
            (prop_oneof![192u8..200, 205u8..=255], 0u8..32, words(4)).prop_map(
                |(packet_type, count, body)| RtcpPacket::Unknown {
                    packet_type,
                    count,
                    body
                }
            ),
        ]
    }

    proptest! {
        #[test]
        fn arbitrary_bytes_never_panic(mut data in proptest::collection::vec(any::<u8>(), 0..160), fix in any::<bool>()) {
            if fix && !data.is_empty() {
                // Mostly-valid headers reach deeper into the parser.
                data[0] = (data[0] & 0x3f) | 0x80;
            }
            let _ = parse_compound(Bytes::from(data));
        }

        #[test]
        fn serialize_then_parse_round_trips(packets in proptest::collection::vec(packet(), 1..5)) {
            let wire = serialize_compound(&packets).unwrap();
            prop_assert_eq!(wire.len() % 4, 0);
            prop_assert_eq!(parse_compound(wire), Ok(packets));
        }
    }
}
