//! [`RtpSession`]: one RTP stream pair as a sans-IO machine (RFC 3550): numbering what we
//! send, keeping reception statistics on what we receive, and producing the RTCP reports
//! on the randomised RTCP schedule.
//!
//! Time always comes in as an [`Instant`] argument; randomness (SSRC, initial sequence number,
//! timestamp base, RTCP interval jitter) comes from a [`SeededRng`], so a run is reproducible.
//! Reception statistics follow RFC 3550 appendix A.1 (sequence validation and probation),
//! A.3 (loss) and A.8 (jitter); the schedule follows section 6.3 and appendix A.7 for the
//! two-party case a gateway call is (no BYE reconsideration, no member timeouts).

use std::time::{Duration, Instant};

use bytes::{BufMut, Bytes, BytesMut};
use smallvec::SmallVec;

use super::packet::{FixedHeader, RtpError, RtpPacket};
use super::rtcp::{
    Goodbye, ReceiverReport, ReportBlock, RtcpError, RtcpPacket, SdesChunk, SdesItem, SenderReport,
    SDES_CNAME,
};
use crate::rng::SeededRng;

/// A source is valid after this many packets in sequence (RFC 3550 A.1 `MIN_SEQUENTIAL`).
pub const DEFAULT_MIN_SEQUENTIAL: u16 = 2;
/// A sequence jump smaller than this counts as packets lost, not a restart.
const MAX_DROPOUT: u16 = 3000;
/// A sequence number this far behind counts as reordered, not a restart.
const MAX_MISORDER: u32 = 100;
const RTP_SEQ_MOD: u32 = 1 << 16;
/// Remote sources tracked per session; a gateway call has one, a conference a handful.
pub const MAX_SOURCES: usize = 32;
/// Report blocks fit in one RR/SR (5-bit count).
const MAX_REPORT_BLOCKS: usize = 31;
/// UDP + IPv4 header bytes, counted in the average RTCP packet size (RFC 3550 6.2).
const UDP_IP_OVERHEAD: usize = 28;

/// Minimum RTCP interval (RFC 3550 6.2).
pub const RTCP_MIN_INTERVAL: Duration = Duration::from_secs(5);
/// Cap on the deterministic interval in seconds, against absurd parameters (one day).
const MAX_DETERMINISTIC_INTERVAL: f64 = 86_400.0;
/// e - 3/2: compensates the randomisation's bias towards shorter intervals (RFC 3550 A.7).
const COMPENSATION: f64 = std::f64::consts::E - 1.5;

/// How an [`RtpSession`] is set up.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RtpSessionConfig {
    /// RTP clock rate of the media (8000 for G.711, 90000 for video).
    pub clock_rate: u32,
    /// Our SDES CNAME.
    pub cname: String,
    /// Session bandwidth in bit/s; RTCP gets 5 % of it.
    pub session_bandwidth: u32,
    /// Packets in sequence before a new source is believed (1 believes the first packet).
    pub min_sequential: u16,
    /// NTP timestamp (RFC 3550 format) of the `now` given at creation. Leave 0 when the
    /// wall clock is unknown: LSR/DLSR round-trip times still work, only absolute sender
    /// times are meaningless.
    pub ntp_origin: u64,
}

impl RtpSessionConfig {
    /// Defaults for a 64 kbit/s stream at `clock_rate`.
    pub fn new(clock_rate: u32, cname: impl Into<String>) -> Self {
        RtpSessionConfig {
            clock_rate,
            cname: cname.into(),
            session_bandwidth: 64_000,
            min_sequential: DEFAULT_MIN_SEQUENTIAL,
            ntp_origin: 0,
        }
    }
}

/// An RTP packet ready for the socket: the header in a small inline buffer and the payload
/// `Bytes` untouched, to be sent with one vectored write.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RtpDatagram {
    /// The 12-byte RTP header.
    pub header: SmallVec<[u8; 16]>,
    /// The payload, shared with the caller.
    pub payload: Bytes,
}

impl RtpDatagram {
    /// Total length on the wire.
    pub fn len(&self) -> usize {
        self.header.len() + self.payload.len()
    }

    /// Whether the datagram is empty (never, a header is always present).
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Header and payload in one buffer, for drivers without vectored sends.
    pub fn to_bytes(&self) -> Bytes {
        let mut out = BytesMut::with_capacity(self.len());
        out.put_slice(&self.header);
        out.put_slice(&self.payload);
        out.freeze()
    }
}

/// What [`RtpSession::receive`] made of a packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReceiveOutcome {
    /// A valid packet from a valid source: hand it to the decoder.
    Accepted,
    /// The source is new and not yet believed (RFC 3550 A.1 probation); drop the packet.
    Probation,
    /// A sequence jump too large to be loss; dropped until the source confirms the new
    /// numbering with the next packet in sequence.
    BadSequence,
    /// The packet carries our own SSRC: we picked a new one (the old one is said goodbye to
    /// in the next report). Drop the packet.
    SsrcCollision {
        /// The SSRC we gave up.
        old: u32,
    },
    /// Too many sources are already tracked; dropped.
    TooManySources,
}

/// Reception statistics of one remote source (RFC 3550 A.1, A.3, A.8).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SourceStats {
    max_seq: u16,
    cycles: u32,
    base_seq: u32,
    bad_seq: u32,
    probation: u16,
    received: u32,
    expected_prior: u32,
    received_prior: u32,
    transit: Option<u32>,
    /// Jitter scaled by 16, as in A.8.
    jitter: u32,
    received_since_report: bool,
    last_sr: u32,
    last_sr_arrival: Option<Instant>,
    cname: Option<String>,
}

impl SourceStats {
    fn new(seq: u16, min_sequential: u16) -> Self {
        let mut s = SourceStats {
            max_seq: 0,
            cycles: 0,
            base_seq: 0,
            bad_seq: 0,
            probation: min_sequential.max(1),
            received: 0,
            expected_prior: 0,
            received_prior: 0,
            transit: None,
            jitter: 0,
            received_since_report: false,
            last_sr: 0,
            last_sr_arrival: None,
            cname: None,
        };
        s.init_seq(seq);
        s.max_seq = seq.wrapping_sub(1);
        s
    }

    fn init_seq(&mut self, seq: u16) {
        self.base_seq = u32::from(seq);
        self.max_seq = seq;
        self.bad_seq = RTP_SEQ_MOD + 1; // so seq == bad_seq is false
        self.cycles = 0;
        self.received = 0;
        self.received_prior = 0;
        self.expected_prior = 0;
    }

    /// RFC 3550 A.1 `update_seq`: whether the packet counts.
    fn update_seq(&mut self, seq: u16, min_sequential: u16) -> ReceiveOutcome {
        let udelta = seq.wrapping_sub(self.max_seq);
        if self.probation > 0 {
            if seq == self.max_seq.wrapping_add(1) {
                self.probation -= 1;
                self.max_seq = seq;
                if self.probation == 0 {
                    self.init_seq(seq);
                    self.received += 1;
                    return ReceiveOutcome::Accepted;
                }
            } else {
                self.probation = min_sequential.max(1) - 1;
                self.max_seq = seq;
                if self.probation == 0 {
                    // With a probation of one, any packet makes the source valid again.
                    self.init_seq(seq);
                    self.received += 1;
                    return ReceiveOutcome::Accepted;
                }
            }
            return ReceiveOutcome::Probation;
        } else if udelta < MAX_DROPOUT {
            if seq < self.max_seq {
                // Wrapped around: one more cycle of 2^16.
                self.cycles = self.cycles.wrapping_add(RTP_SEQ_MOD);
            }
            self.max_seq = seq;
        } else if u32::from(udelta) <= RTP_SEQ_MOD - MAX_MISORDER {
            if u32::from(seq) == self.bad_seq {
                // Two sequential packets after a big jump: the source restarted.
                self.init_seq(seq);
            } else {
                self.bad_seq = (u32::from(seq) + 1) & (RTP_SEQ_MOD - 1);
                return ReceiveOutcome::BadSequence;
            }
        }
        // else: duplicate or reordered packet, counted as received.
        self.received = self.received.wrapping_add(1);
        ReceiveOutcome::Accepted
    }

    /// RFC 3550 A.8: `arrival` is the arrival time in timestamp units.
    fn update_jitter(&mut self, arrival: u32, timestamp: u32) {
        let transit = arrival.wrapping_sub(timestamp);
        if let Some(prev) = self.transit {
            let d = (transit.wrapping_sub(prev) as i32).unsigned_abs();
            // jitter += |d| - jitter/16, in 1/16 units with rounding.
            self.jitter = self
                .jitter
                .wrapping_add(d)
                .wrapping_sub((self.jitter + 8) >> 4);
        }
        self.transit = Some(transit);
    }

    /// Whether the source has passed probation.
    pub fn is_valid(&self) -> bool {
        self.probation == 0
    }

    /// Extended highest sequence number received (cycles in the high 16 bits).
    pub fn extended_max_sequence(&self) -> u32 {
        self.cycles.wrapping_add(u32::from(self.max_seq))
    }

    /// Packets expected since the source became valid.
    pub fn expected(&self) -> u32 {
        self.extended_max_sequence()
            .wrapping_sub(self.base_seq)
            .wrapping_add(1)
    }

    /// Packets received since the source became valid (duplicates included).
    pub fn received(&self) -> u32 {
        self.received
    }

    /// Cumulative packets lost, clamped to the 24-bit signed range of a report block.
    pub fn cumulative_lost(&self) -> i32 {
        let lost = i64::from(self.expected()) - i64::from(self.received);
        lost.clamp(-0x80_0000, 0x7f_ffff) as i32
    }

    /// Interarrival jitter in timestamp units.
    pub fn jitter(&self) -> u32 {
        self.jitter >> 4
    }

    /// The CNAME the source announced in SDES, if any.
    pub fn cname(&self) -> Option<&str> {
        self.cname.as_deref()
    }

    /// A report block for this source; starts a new "since last report" interval (A.3).
    fn report_block(&mut self, ssrc: u32, now: Instant) -> ReportBlock {
        let expected = self.expected();
        let expected_interval = expected.wrapping_sub(self.expected_prior);
        self.expected_prior = expected;
        let received_interval = self.received.wrapping_sub(self.received_prior);
        self.received_prior = self.received;
        let lost_interval = i64::from(expected_interval) - i64::from(received_interval);
        let fraction_lost = if expected_interval == 0 || lost_interval <= 0 {
            0
        } else {
            ((lost_interval << 8) / i64::from(expected_interval)).min(255) as u8
        };
        self.received_since_report = false;
        let delay_since_last_sr = self.last_sr_arrival.map_or(0, |at| {
            let d = now.saturating_duration_since(at);
            // 1/65536 s units.
            ((d.as_secs() << 16) | ((u64::from(d.subsec_nanos()) << 16) / 1_000_000_000)) as u32
        });
        ReportBlock {
            ssrc,
            fraction_lost,
            cumulative_lost: self.cumulative_lost(),
            highest_sequence: self.extended_max_sequence(),
            jitter: self.jitter(),
            last_sr: self.last_sr,
            delay_since_last_sr,
        }
    }
}

/// Inputs of the RTCP interval computation (RFC 3550 A.7 `rtcp_interval`).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct IntervalParams {
    /// Current members (us included).
    pub members: usize,
    /// Current senders (us included if we sent).
    pub senders: usize,
    /// RTCP bandwidth in octets per second (5 % of the session bandwidth).
    pub rtcp_bandwidth: f64,
    /// Whether we sent data since the last report.
    pub we_sent: bool,
    /// Average compound RTCP packet size in octets, UDP/IP headers included.
    pub avg_rtcp_size: f64,
    /// Whether no report has been sent yet (halves the minimum).
    pub initial: bool,
}

/// The randomised interval until the next RTCP report (RFC 3550 6.3.1, A.7): the
/// deterministic interval (5 s minimum, halved before the first report; senders share a
/// quarter of the bandwidth when they are at most a quarter of the members), times a random
/// factor in [0.5, 1.5), divided by e - 3/2.
///
/// ```
/// use siprtmp_core::rng::SeededRng;
/// use siprtmp_core::rtp::session::{rtcp_interval, IntervalParams};
/// let p = IntervalParams { members: 2, senders: 2, rtcp_bandwidth: 400.0, we_sent: true,
///                          avg_rtcp_size: 100.0, initial: false };
/// let t = rtcp_interval(&p, &mut SeededRng::new(1)).as_secs_f64();
/// assert!((2.05..6.16).contains(&t));
/// ```
pub fn rtcp_interval(p: &IntervalParams, rng: &mut SeededRng) -> Duration {
    let min = if p.initial {
        RTCP_MIN_INTERVAL.as_secs_f64() / 2.0
    } else {
        RTCP_MIN_INTERVAL.as_secs_f64()
    };
    let mut bw = p.rtcp_bandwidth;
    let mut n = p.members as f64;
    let senders = p.senders as f64;
    if senders <= n * 0.25 {
        if p.we_sent {
            bw *= 0.25;
            n = senders;
        } else {
            bw *= 0.75;
            n -= senders;
        }
    }
    let mut t = if bw > 0.0 {
        p.avg_rtcp_size * n.max(1.0) / bw
    } else {
        min
    };
    if t.is_nan() || t < min {
        t = min;
    }
    // Absurd inputs (an infinite average size) must not overflow the Duration below.
    t = t.min(MAX_DETERMINISTIC_INTERVAL);
    // A uniform factor in [0.5, 1.5) from 53 random bits.
    let factor = 0.5 + (rng.next_u64() >> 11) as f64 / (1u64 << 53) as f64;
    Duration::from_secs_f64(t * factor / COMPENSATION)
}

/// Converts a duration to the 64-bit NTP format (32.32 fixed point seconds).
fn to_ntp(d: Duration) -> u64 {
    (d.as_secs() << 32).wrapping_add((u64::from(d.subsec_nanos()) << 32) / 1_000_000_000)
}

/// One RTP session (one SSRC of ours, any number of remote sources up to [`MAX_SOURCES`]).
///
/// ```
/// use std::time::{Duration, Instant};
/// use bytes::Bytes;
/// use siprtmp_core::rng::SeededRng;
/// use siprtmp_core::rtp::session::{RtpSession, RtpSessionConfig};
/// let t0 = Instant::now();
/// let mut rng = SeededRng::new(7);
/// let mut s = RtpSession::new(RtpSessionConfig::new(8000, "gw@example"), &mut rng, t0);
/// let dgram = s.send(t0, 0, 0, true, Bytes::from_static(&[0xff; 160])).unwrap();
/// assert_eq!(dgram.header.len(), 12);
/// // The first report is due within 0.5..1.5 times 2.5 s, compensated.
/// let due = s.poll_timeout().unwrap();
/// assert!(due > t0 && due <= t0 + Duration::from_secs(4));
/// // The driver calls handle_timeout whenever poll_timeout's deadline passes; timer
/// // reconsideration may push the report back a little.
/// let report = loop {
///     let due = s.poll_timeout().unwrap();
///     if let Some(report) = s.handle_timeout(due) {
///         break report;
///     }
/// };
/// assert_eq!(report[1], 200); // a sender report, since we sent
/// ```
#[derive(Debug, Clone)]
// In the order written, what each packet sent and received touches first: one or two cache
// lines per packet instead of fields spread over three (a gateway keeps hundreds of sessions
// and each packet comes after the others' have gone through the cache).
#[repr(C)]
pub struct RtpSession {
    ssrc: u32,
    sequence: u16,
    sent_since_report: bool,
    timestamp_base: u32,
    packets_sent: u32,
    octets_sent: u32,
    last_sent: Option<(Instant, u32)>,
    epoch: Instant,
    sources: Vec<(u32, SourceStats)>,
    config: RtpSessionConfig,
    rng: SeededRng,
    pending_bye: Option<u32>,
    // RTCP schedule (A.7).
    tp: Instant,
    tn: Instant,
    initial: bool,
    avg_rtcp_size: f64,
    closed: bool,
}

impl RtpSession {
    /// A session starting at `now`, drawing its SSRC, first sequence number and timestamp
    /// base from `rng` (and a private generator for the RTCP schedule, seeded from it).
    pub fn new(config: RtpSessionConfig, rng: &mut SeededRng, now: Instant) -> Self {
        let ssrc = rng.next_u32();
        let sequence = rng.next_u32() as u16;
        let timestamp_base = rng.next_u32();
        let rng = SeededRng::new(rng.next_u64());
        // The probable size of our first report: RR + SDES CNAME + UDP/IP (A.7).
        let sdes = 4 + (4 + 2 + config.cname.len() + 4) / 4 * 4;
        let avg_rtcp_size = (UDP_IP_OVERHEAD + 8 + sdes) as f64;
        let mut s = RtpSession {
            config,
            rng,
            epoch: now,
            ssrc,
            sequence,
            timestamp_base,
            packets_sent: 0,
            octets_sent: 0,
            last_sent: None,
            sent_since_report: false,
            sources: Vec::new(),
            pending_bye: None,
            tp: now,
            tn: now,
            initial: true,
            avg_rtcp_size,
            closed: false,
        };
        let t = s.next_interval();
        s.tn = now + t;
        s
    }

    /// Our SSRC.
    pub fn ssrc(&self) -> u32 {
        self.ssrc
    }

    /// The sequence number the next packet will carry.
    pub fn next_sequence(&self) -> u16 {
        self.sequence
    }

    /// The random timestamp base added to media times.
    pub fn timestamp_base(&self) -> u32 {
        self.timestamp_base
    }

    /// Packets and payload octets sent so far.
    pub fn sent(&self) -> (u32, u32) {
        (self.packets_sent, self.octets_sent)
    }

    /// Our reception of the far end, summed over the valid remote sources: packets lost
    /// (RFC 3550's cumulative count) and the largest interarrival jitter, in timestamp units.
    /// `None` before any source is valid.
    pub fn reception(&self) -> Option<(i64, u32)> {
        self.sources
            .iter()
            .filter(|(_, s)| s.is_valid())
            .fold(None, |acc, (_, s)| {
                let (lost, jitter) = acc.unwrap_or((0, 0));
                Some((
                    lost + i64::from(s.cumulative_lost()),
                    jitter.max(s.jitter()),
                ))
            })
    }

    /// The clock rate of the session's timestamps (jitter's unit).
    pub fn clock_rate(&self) -> u32 {
        self.config.clock_rate
    }

    /// The round-trip time a report block received at `now` gives (RFC 3550 6.4.1: arrival
    /// minus the LSR and DLSR it carries), when it is about one of our sender reports; `None`
    /// when it is not about us, names no SR, or the figures make no sense (a negative time).
    pub fn round_trip(&self, now: Instant, block: &ReportBlock) -> Option<Duration> {
        if block.ssrc != self.ssrc || block.last_sr == 0 {
            return None;
        }
        let ntp = self
            .config
            .ntp_origin
            .wrapping_add(to_ntp(now.saturating_duration_since(self.epoch)));
        let arrival = (ntp >> 16) as u32;
        let rtt = arrival
            .wrapping_sub(block.last_sr)
            .wrapping_sub(block.delay_since_last_sr);
        // A "negative" time (a wrong LSR, clocks moved) is no figure.
        (rtt < 1 << 31).then(|| Duration::from_nanos(u64::from(rtt) * 1_000_000_000 / 65536))
    }

    /// Statistics of remote source `ssrc`, if tracked.
    pub fn source(&self, ssrc: u32) -> Option<&SourceStats> {
        self.sources
            .iter()
            .find(|(s, _)| *s == ssrc)
            .map(|(_, st)| st)
    }

    /// Builds the next packet: `media_time` is in clock-rate units from the start of the
    /// stream (the session adds its random base). The payload is not copied.
    // Once per packet: inlined into its caller (no call, no copy of its result).
    #[inline]
    pub fn send(
        &mut self,
        now: Instant,
        payload_type: u8,
        media_time: u32,
        marker: bool,
        payload: Bytes,
    ) -> Result<RtpDatagram, RtpError> {
        let timestamp = self.timestamp_base.wrapping_add(media_time);
        // No CSRCs or extension: the header is exactly the fixed 12 bytes.
        let fixed = FixedHeader {
            marker,
            payload_type,
            sequence: self.sequence,
            timestamp,
            ssrc: self.ssrc,
        }
        .encode()?;
        // Into the inline buffer as a fixed-size copy (a few moves, where `from_slice` calls
        // memcpy for 12 bytes on every packet).
        let mut inline = [0u8; 16];
        inline[..fixed.len()].copy_from_slice(&fixed);
        let header = SmallVec::from_buf_and_len(inline, fixed.len());
        self.sequence = self.sequence.wrapping_add(1);
        self.packets_sent = self.packets_sent.wrapping_add(1);
        self.octets_sent = self.octets_sent.wrapping_add(payload.len() as u32);
        self.last_sent = Some((now, timestamp));
        self.sent_since_report = true;
        Ok(RtpDatagram { header, payload })
    }

    /// Arrival time of `now` in timestamp units (wrapping), for jitter.
    fn arrival_units(&self, now: Instant) -> u32 {
        let d = now.saturating_duration_since(self.epoch);
        (d.as_nanos() * u128::from(self.config.clock_rate) / 1_000_000_000) as u32
    }

    /// Accounts for a received RTP packet and says whether to use it.
    pub fn receive(&mut self, now: Instant, packet: &RtpPacket) -> ReceiveOutcome {
        if packet.ssrc == self.ssrc {
            // RFC 3550 8.2: someone else uses our SSRC; we move and say goodbye to the old one.
            let old = self.ssrc;
            self.ssrc = self.rng.next_u32();
            self.pending_bye = Some(old);
            return ReceiveOutcome::SsrcCollision { old };
        }
        let arrival = self.arrival_units(now);
        let min_sequential = self.config.min_sequential;
        let index = match self.sources.iter().position(|(s, _)| *s == packet.ssrc) {
            Some(i) => i,
            None => {
                if self.sources.len() >= MAX_SOURCES {
                    return ReceiveOutcome::TooManySources;
                }
                self.sources.push((
                    packet.ssrc,
                    SourceStats::new(packet.sequence, min_sequential),
                ));
                self.sources.len() - 1
            }
        };
        let stats = &mut self.sources[index].1;
        let outcome = stats.update_seq(packet.sequence, min_sequential);
        if outcome == ReceiveOutcome::Accepted {
            stats.update_jitter(arrival, packet.timestamp);
            stats.received_since_report = true;
        }
        outcome
    }

    /// Accounts for a received compound RTCP packet (SR times for LSR/DLSR, CNAMEs, BYE)
    /// and returns its packets.
    pub fn receive_rtcp(
        &mut self,
        now: Instant,
        data: Bytes,
    ) -> Result<Vec<RtcpPacket>, RtcpError> {
        let size = data.len() + UDP_IP_OVERHEAD;
        let packets = super::rtcp::parse_compound(data)?;
        self.avg_rtcp_size = size as f64 / 16.0 + self.avg_rtcp_size * 15.0 / 16.0;
        for p in &packets {
            match p {
                RtcpPacket::SenderReport(sr) => {
                    if let Some(st) = self.source_mut(sr.ssrc) {
                        st.last_sr = (sr.ntp_timestamp >> 16) as u32;
                        st.last_sr_arrival = Some(now);
                    }
                }
                RtcpPacket::SourceDescription(chunks) => {
                    for chunk in chunks {
                        if let (Some(cname), Some(st)) =
                            (chunk.cname(), self.source_mut(chunk.ssrc))
                        {
                            st.cname = Some(cname.to_owned());
                        }
                    }
                }
                RtcpPacket::Goodbye(bye) => {
                    self.sources.retain(|(s, _)| !bye.sources.contains(s));
                }
                _ => {}
            }
        }
        Ok(packets)
    }

    fn source_mut(&mut self, ssrc: u32) -> Option<&mut SourceStats> {
        self.sources
            .iter_mut()
            .find(|(s, _)| *s == ssrc)
            .map(|(_, st)| st)
    }

    fn interval_params(&self) -> IntervalParams {
        let valid = self.sources.iter().filter(|(_, s)| s.is_valid()).count();
        let remote_senders = self
            .sources
            .iter()
            .filter(|(_, s)| s.is_valid() && s.received_since_report)
            .count();
        IntervalParams {
            members: 1 + valid,
            senders: remote_senders + usize::from(self.sent_since_report),
            rtcp_bandwidth: f64::from(self.config.session_bandwidth) / 8.0 * 0.05,
            we_sent: self.sent_since_report,
            avg_rtcp_size: self.avg_rtcp_size,
            initial: self.initial,
        }
    }

    fn next_interval(&mut self) -> Duration {
        let p = self.interval_params();
        rtcp_interval(&p, &mut self.rng)
    }

    /// When the next RTCP report is due (`None` once closed).
    pub fn poll_timeout(&self) -> Option<Instant> {
        (!self.closed).then_some(self.tn)
    }

    /// Runs the RTCP timer (A.7 `OnExpire`): returns a compound report when one is due now,
    /// and reschedules either way.
    pub fn handle_timeout(&mut self, now: Instant) -> Option<Bytes> {
        if self.closed || now < self.tn {
            return None;
        }
        let t = self.next_interval();
        if self.tp + t > now {
            // Timer reconsideration: the group or our average size changed; wait longer.
            self.tn = self.tp + t;
            return None;
        }
        let report = self.build_report(now, None);
        self.avg_rtcp_size =
            (report.len() + UDP_IP_OVERHEAD) as f64 / 16.0 + self.avg_rtcp_size * 15.0 / 16.0;
        self.tp = now;
        self.initial = false;
        let t = self.next_interval();
        self.tn = now + t;
        Some(report)
    }

    /// Ends the session: the final report with a BYE (and `reason`, at most 255 bytes). No
    /// further timeouts.
    pub fn close(&mut self, now: Instant, reason: Option<&str>) -> Bytes {
        self.closed = true;
        self.build_report(now, Some(reason.unwrap_or("")))
    }

    /// An SR if we sent since the last report, else an RR; then SDES CNAME; then a BYE when
    /// closing or after an SSRC collision.
    fn build_report(&mut self, now: Instant, bye_reason: Option<&str>) -> Bytes {
        let mut reports = Vec::new();
        for (ssrc, st) in self.sources.iter_mut() {
            if reports.len() < MAX_REPORT_BLOCKS && st.is_valid() && st.received_since_report {
                reports.push(st.report_block(*ssrc, now));
            }
        }
        let mut packets: SmallVec<[RtcpPacket; 3]> = SmallVec::new();
        if self.sent_since_report {
            let (last_at, last_ts) = self.last_sent.unwrap_or((self.epoch, self.timestamp_base));
            let since = now.saturating_duration_since(last_at);
            let units = since.as_nanos() * u128::from(self.config.clock_rate) / 1_000_000_000;
            packets.push(RtcpPacket::SenderReport(SenderReport {
                ssrc: self.ssrc,
                ntp_timestamp: self
                    .config
                    .ntp_origin
                    .wrapping_add(to_ntp(now.saturating_duration_since(self.epoch))),
                rtp_timestamp: last_ts.wrapping_add(units as u32),
                packet_count: self.packets_sent,
                octet_count: self.octets_sent,
                reports,
                profile_extension: Bytes::new(),
            }));
        } else {
            packets.push(RtcpPacket::ReceiverReport(ReceiverReport {
                ssrc: self.ssrc,
                reports,
                profile_extension: Bytes::new(),
            }));
        }
        self.sent_since_report = false;
        let mut cname = self.config.cname.as_bytes();
        cname = &cname[..cname.len().min(255)];
        packets.push(RtcpPacket::SourceDescription(vec![SdesChunk {
            ssrc: self.ssrc,
            items: vec![SdesItem {
                kind: SDES_CNAME,
                value: Bytes::copy_from_slice(cname),
            }],
        }]));
        let mut sources = Vec::new();
        if let Some(old) = self.pending_bye.take() {
            sources.push(old);
        }
        let reason = bye_reason.map(|r| {
            sources.push(self.ssrc);
            &r.as_bytes()[..r.len().min(255)]
        });
        if !sources.is_empty() {
            packets.push(RtcpPacket::Goodbye(Goodbye {
                sources,
                reason: reason.filter(|r| !r.is_empty()).map(Bytes::copy_from_slice),
            }));
        }
        let mut out = BytesMut::with_capacity(128);
        for p in &packets {
            // Counts and lengths are bounded above, so writing cannot fail.
            let written = p.write(&mut out);
            debug_assert!(written.is_ok());
        }
        out.freeze()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rtp::rtcp::parse_compound;

    fn session(min_sequential: u16) -> (RtpSession, Instant) {
        let t0 = Instant::now();
        let mut config = RtpSessionConfig::new(8000, "gw@test");
        config.min_sequential = min_sequential;
        (RtpSession::new(config, &mut SeededRng::new(3), t0), t0)
    }

    /// Drives the RTCP timer like a driver would until a report comes out.
    fn next_report(s: &mut RtpSession) -> (Instant, Bytes) {
        for _ in 0..100 {
            let due = s.poll_timeout().unwrap();
            if let Some(report) = s.handle_timeout(due) {
                return (due, report);
            }
        }
        panic!("no report after 100 timeouts");
    }

    fn pkt(seq: u16, ts: u32) -> RtpPacket {
        RtpPacket::new(0, seq, ts, 0xabcd, Bytes::new())
    }

    #[test]
    fn identifiers_come_from_the_rng() {
        let (a, _) = session(2);
        let (b, _) = session(2);
        assert_eq!(
            (a.ssrc(), a.next_sequence(), a.timestamp_base()),
            (b.ssrc(), b.next_sequence(), b.timestamp_base())
        );
        let mut rng = SeededRng::new(3);
        assert_eq!(a.ssrc(), rng.next_u32());
    }

    #[test]
    fn send_numbers_packets_without_copying_the_payload() {
        let (mut s, t0) = session(2);
        let payload = Bytes::from_static(&[1, 2, 3]);
        let seq0 = s.next_sequence();
        let d1 = s.send(t0, 8, 0, true, payload.clone()).unwrap();
        let d2 = s.send(t0, 8, 160, false, payload.clone()).unwrap();
        assert_eq!(d1.payload.as_ptr(), payload.as_ptr());
        let p1 = RtpPacket::parse(d1.to_bytes()).unwrap();
        let p2 = RtpPacket::parse(d2.to_bytes()).unwrap();
        assert!(p1.marker && !p2.marker);
        assert_eq!((p1.sequence, p2.sequence), (seq0, seq0.wrapping_add(1)));
        assert_eq!(p1.timestamp, s.timestamp_base());
        assert_eq!(p2.timestamp, s.timestamp_base().wrapping_add(160));
        assert_eq!(p1.ssrc, s.ssrc());
        assert_eq!(s.sent(), (2, 6));
        assert!(s.send(t0, 128, 0, false, Bytes::new()).is_err());
    }

    #[test]
    fn probation_then_sequence_wraparound() {
        let (mut s, t0) = session(2);
        assert_eq!(s.receive(t0, &pkt(65534, 0)), ReceiveOutcome::Probation);
        assert_eq!(s.receive(t0, &pkt(65535, 160)), ReceiveOutcome::Accepted);
        for (i, seq) in [0u16, 1, 2].into_iter().enumerate() {
            assert_eq!(
                s.receive(t0, &pkt(seq, 320 + 160 * i as u32)),
                ReceiveOutcome::Accepted
            );
        }
        let st = s.source(0xabcd).unwrap();
        assert_eq!(st.extended_max_sequence(), 65536 + 2);
        assert_eq!(st.expected(), 4);
        assert_eq!(st.received(), 4);
        assert_eq!(st.cumulative_lost(), 0);
        // A probation broken by a gap restarts it.
        let mut other = pkt(100, 0);
        other.ssrc = 1;
        assert_eq!(s.receive(t0, &other), ReceiveOutcome::Probation);
        other.sequence = 300;
        assert_eq!(s.receive(t0, &other), ReceiveOutcome::Probation);
        other.sequence = 301;
        assert_eq!(s.receive(t0, &other), ReceiveOutcome::Accepted);
    }

    #[test]
    fn big_jump_needs_confirmation() {
        let (mut s, t0) = session(1);
        assert_eq!(s.receive(t0, &pkt(10, 0)), ReceiveOutcome::Accepted);
        assert_eq!(s.receive(t0, &pkt(20_000, 0)), ReceiveOutcome::BadSequence);
        assert_eq!(s.receive(t0, &pkt(20_001, 0)), ReceiveOutcome::Accepted);
        let st = s.source(0xabcd).unwrap();
        assert_eq!((st.expected(), st.received()), (1, 1));
        // A late (reordered) packet is counted, not a restart.
        assert_eq!(s.receive(t0, &pkt(19_990, 0)), ReceiveOutcome::Accepted);
    }

    #[test]
    fn loss_and_fraction_on_a_known_sequence() {
        let (mut s, t0) = session(1);
        for seq in (1u16..=10).filter(|s| *s != 4 && *s != 7) {
            assert_eq!(
                s.receive(t0, &pkt(seq, u32::from(seq) * 160)),
                ReceiveOutcome::Accepted
            );
        }
        let st = s.source(0xabcd).unwrap();
        assert_eq!(
            (st.expected(), st.received(), st.cumulative_lost()),
            (10, 8, 2)
        );
        let packets = parse_compound(next_report(&mut s).1).unwrap();
        let RtcpPacket::ReceiverReport(rr) = &packets[0] else {
            panic!("{packets:?}")
        };
        let block = rr.reports[0];
        assert_eq!(block.ssrc, 0xabcd);
        assert_eq!(block.fraction_lost, (2 * 256 / 10) as u8);
        assert_eq!(block.cumulative_lost, 2);
        assert_eq!(block.highest_sequence, 10);
        // Next interval: 11..=20 all arrive, so no new loss.
        for seq in 11u16..=20 {
            s.receive(t0, &pkt(seq, u32::from(seq) * 160));
        }
        let packets = parse_compound(next_report(&mut s).1).unwrap();
        let RtcpPacket::ReceiverReport(rr) = &packets[0] else {
            panic!()
        };
        assert_eq!(
            (rr.reports[0].fraction_lost, rr.reports[0].cumulative_lost),
            (0, 2)
        );
        // Duplicates make the interval loss negative: fraction stays 0.
        for _ in 0..3 {
            s.receive(t0, &pkt(20, 20 * 160));
        }
        assert_eq!(s.source(0xabcd).unwrap().cumulative_lost(), -1);
    }

    #[test]
    fn jitter_on_a_known_sequence() {
        let (mut s, t0) = session(1);
        // 20 ms packets at 8 kHz; the third arrives 5 ms late (40 units of transit change).
        let arrivals_ms = [0u64, 20, 45, 60, 80];
        for (i, ms) in arrivals_ms.into_iter().enumerate() {
            let now = t0 + Duration::from_millis(ms);
            s.receive(now, &pkt(i as u16, 1000 + 160 * i as u32));
        }
        // J(16x): 0 -> 0 -> 40 -> 40+40-3=77 -> 77-5=72; 72/16 = 4 units.
        assert_eq!(s.source(0xabcd).unwrap().jitter(), 4);
    }

    #[test]
    fn sender_report_after_sending_then_receiver_report() {
        let (mut s, t0) = session(1);
        s.receive(t0, &pkt(1, 0));
        let sr_ntp = 0x0000_0005_8000_0000u64; // 5.5 s
        let mut sr = BytesMut::new();
        RtcpPacket::SenderReport(SenderReport {
            ssrc: 0xabcd,
            ntp_timestamp: sr_ntp,
            rtp_timestamp: 0,
            packet_count: 1,
            octet_count: 0,
            reports: vec![],
            profile_extension: Bytes::new(),
        })
        .write(&mut sr)
        .unwrap();
        let sdes = RtcpPacket::SourceDescription(vec![SdesChunk {
            ssrc: 0xabcd,
            items: vec![SdesItem {
                kind: SDES_CNAME,
                value: Bytes::from_static(b"peer@x"),
            }],
        }]);
        sdes.write(&mut sr).unwrap();
        s.receive_rtcp(t0, sr.freeze()).unwrap();
        assert_eq!(s.source(0xabcd).unwrap().cname(), Some("peer@x"));
        s.send(t0, 0, 0, false, Bytes::from_static(&[0; 160]))
            .unwrap();
        let (due, report) = next_report(&mut s);
        let packets = parse_compound(report).unwrap();
        let RtcpPacket::SenderReport(ours) = &packets[0] else {
            panic!("{packets:?}")
        };
        assert_eq!((ours.packet_count, ours.octet_count), (1, 160));
        assert_eq!(ours.ntp_timestamp, to_ntp(due - t0));
        let elapsed_units = ((due - t0).as_nanos() * 8000 / 1_000_000_000) as u32;
        assert_eq!(
            ours.rtp_timestamp,
            s.timestamp_base().wrapping_add(elapsed_units)
        );
        assert_eq!(ours.reports[0].last_sr, 0x0005_8000);
        let dlsr = ours.reports[0].delay_since_last_sr;
        let expect = ((due - t0).as_secs_f64() * 65536.0) as u32;
        assert!(dlsr.abs_diff(expect) <= 1, "{dlsr} vs {expect}");
        let RtcpPacket::SourceDescription(chunks) = &packets[1] else {
            panic!()
        };
        assert_eq!(chunks[0].cname(), Some("gw@test"));
        // Nothing sent since: an RR next time (with no blocks: nothing received either).
        let (due, report) = next_report(&mut s);
        let packets = parse_compound(report).unwrap();
        let RtcpPacket::ReceiverReport(rr) = &packets[0] else {
            panic!()
        };
        assert!(rr.reports.is_empty());
        // A BYE from the peer forgets it.
        let bye = serialize_bye(0xabcd);
        s.receive_rtcp(due, bye).unwrap();
        assert!(s.source(0xabcd).is_none());
    }

    fn serialize_bye(ssrc: u32) -> Bytes {
        let mut b = BytesMut::new();
        RtcpPacket::Goodbye(Goodbye {
            sources: vec![ssrc],
            reason: None,
        })
        .write(&mut b)
        .unwrap();
        b.freeze()
    }

    #[test]
    fn close_sends_bye_and_collision_changes_ssrc() {
        let (mut s, t0) = session(1);
        let first = s.ssrc();
        let mut evil = pkt(1, 0);
        evil.ssrc = first;
        assert_eq!(
            s.receive(t0, &evil),
            ReceiveOutcome::SsrcCollision { old: first }
        );
        assert_ne!(s.ssrc(), first);
        let packets = parse_compound(s.close(t0, Some("done"))).unwrap();
        assert_eq!(packets.len(), 3);
        assert_eq!(
            packets[2],
            RtcpPacket::Goodbye(Goodbye {
                sources: vec![first, s.ssrc()],
                reason: Some(Bytes::from_static(b"done"))
            })
        );
        assert_eq!(s.poll_timeout(), None);
        assert_eq!(s.handle_timeout(t0 + Duration::from_secs(60)), None);
    }

    #[test]
    fn rtcp_interval_bounds() {
        let mut rng = SeededRng::new(11);
        let mut p = IntervalParams {
            members: 2,
            senders: 2,
            rtcp_bandwidth: 400.0,
            we_sent: true,
            avg_rtcp_size: 90.0,
            initial: true,
        };
        let (lo, hi) = (0.5 / COMPENSATION, 1.5 / COMPENSATION);
        let (mut min, mut max) = (f64::MAX, 0f64);
        for _ in 0..2000 {
            let t = rtcp_interval(&p, &mut rng).as_secs_f64();
            assert!(t >= 2.5 * lo - 1e-9 && t < 2.5 * hi, "{t}");
            min = min.min(t);
            max = max.max(t);
        }
        // The randomisation really spreads over the range.
        assert!(min < 2.5 * lo * 1.05 && max > 2.5 * hi * 0.95);
        p.initial = false;
        for _ in 0..2000 {
            let t = rtcp_interval(&p, &mut rng).as_secs_f64();
            assert!(t >= 5.0 * lo - 1e-9 && t < 5.0 * hi, "{t}");
        }
        // A big group on little bandwidth: 100 members, 1 sender that is not us, so the 99
        // receivers share 75 % of 400 B/s: 99 * 100 / 300 = 33 s before randomisation.
        p = IntervalParams {
            members: 100,
            senders: 1,
            rtcp_bandwidth: 400.0,
            we_sent: false,
            avg_rtcp_size: 100.0,
            initial: false,
        };
        for _ in 0..100 {
            let t = rtcp_interval(&p, &mut rng).as_secs_f64();
            assert!(t >= 33.0 * lo - 1e-6 && t < 33.0 * hi, "{t}");
        }
        // If we are that sender, the one sender gets 25 %: 1 * 100 / 100 = 1 s -> the 5 s minimum.
        p.we_sent = true;
        for _ in 0..100 {
            let t = rtcp_interval(&p, &mut rng).as_secs_f64();
            assert!(t >= 5.0 * lo - 1e-9 && t < 5.0 * hi, "{t}");
        }
        // Deterministic given the rng.
        let a = rtcp_interval(&p, &mut SeededRng::new(5));
        let b = rtcp_interval(&p, &mut SeededRng::new(5));
        assert_eq!(a, b);
        // Zero bandwidth falls back to the minimum instead of dividing by zero; infinite or
        // NaN sizes do not panic.
        p.rtcp_bandwidth = 0.0;
        let t = rtcp_interval(&p, &mut rng).as_secs_f64();
        assert!(t < 5.0 * hi);
        p.rtcp_bandwidth = 400.0;
        p.avg_rtcp_size = f64::INFINITY;
        assert!(rtcp_interval(&p, &mut rng).as_secs_f64() < 86_400.0 * hi);
        p.avg_rtcp_size = f64::NAN;
        assert!(rtcp_interval(&p, &mut rng).as_secs_f64() < 5.0 * hi);
    }

    #[test]
    fn schedule_first_report_is_early_then_regular() {
        let (mut s, t0) = session(1);
        let first = s.poll_timeout().unwrap() - t0;
        assert!(first.as_secs_f64() < 2.5 * 1.5 / COMPENSATION);
        assert_eq!(
            s.handle_timeout(t0 + first - Duration::from_millis(1)),
            None
        );
        let (mut at, _) = next_report(&mut s);
        for _ in 0..20 {
            let (next, _) = next_report(&mut s);
            // Reconsideration only ever moves the deadline to tp + a fresh interval, so the
            // gap between reports stays inside one interval's range.
            let gap = (next - at).as_secs_f64();
            assert!(
                (5.0 * 0.5 / COMPENSATION - 1e-9..5.0 * 1.5 / COMPENSATION).contains(&gap),
                "{gap}"
            );
            at = next;
        }
    }
}
