//! [`SourceFilter`]: which address one media line of a call accepts RTP and RTCP from.
//!
//! A call's far end names its media address in SDP. A gateway that takes media from whoever
//! sends first to its ports ("latching") lets a stranger who guesses the ports take over the
//! call's audio before the far end's first packet, and one that takes media from any address
//! lets a stranger inject audio mid-call (the "RTP Bleed" class of attacks, CVE-2017-14099).
//! Asterisk's answer (`strictrtp`) and rtpengine's (strict source) are followed here:
//!
//! - A packet from the exact address the SDP gives is always believed; the line latches onto
//!   it at once.
//! - Far ends behind NAT send from another address than their SDP says, and want their media
//!   sent back to where they send from (symmetric RTP). For that there is a bounded learning
//!   phase: during [`LEARNING_WINDOW`] after the media line is set up (or moved by a
//!   re-INVITE), a source that sends [`PROBATION`] packets in sequence (one SSRC, consecutive
//!   sequence numbers, nothing from anyone else in between) is learned, and the line's media
//!   goes to it from then on. By default only sources on the SDP's IP address (another port)
//!   may be learned ([`SourcePolicy::LearnPort`]); [`SourcePolicy::LearnAnyAddress`] also
//!   accepts another IP (a far end whose SDP carries a private address), and
//!   [`SourcePolicy::Strict`] learns nothing.
//! - Once latched, only that address is accepted: everything else is dropped and counted.
//!
//! RTCP is accepted from the latched (or, before, the expected) RTP address's IP, on the port
//! above its RTP port or on the RTP port itself (RFC 5761 multiplexing); after learning from a
//! NAT, from any port of that IP (a NAT maps the RTCP port independently).

use std::net::SocketAddr;
use std::time::{Duration, Instant};

/// How long after a media line is set up a source other than the SDP's may be learned.
pub const LEARNING_WINDOW: Duration = Duration::from_secs(5);

/// Packets in sequence a source other than the SDP's must send to be learned.
pub const PROBATION: u8 = 4;

/// Where a call's media may come from besides the address its SDP gives (see the module
/// documentation).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum SourcePolicy {
    /// Only the SDP's address and port: far ends behind NAT whose SDP is wrong get no media.
    Strict,
    /// The SDP's address, or during the learning phase another port of the SDP's IP address
    /// (a port-translating NAT, a far end that sends from another socket). The default.
    #[default]
    LearnPort,
    /// The SDP's address, or during the learning phase any address (a far end behind a NAT
    /// whose SDP carries its private address). A stranger who wins the race during the
    /// learning phase gets the call's media: use only where far ends need it.
    LearnAnyAddress,
}

impl SourcePolicy {
    /// Parses the configuration spelling: `strict`, `learn-port`, `learn-any`.
    ///
    /// ```
    /// use siprtmp_core::rtp::source_filter::SourcePolicy;
    /// assert_eq!(SourcePolicy::parse("strict"), Some(SourcePolicy::Strict));
    /// assert_eq!(SourcePolicy::parse("learn-any"), Some(SourcePolicy::LearnAnyAddress));
    /// assert_eq!(SourcePolicy::parse("anything"), None);
    /// ```
    pub fn parse(text: &str) -> Option<Self> {
        match text {
            "strict" => Some(Self::Strict),
            "learn-port" => Some(Self::LearnPort),
            "learn-any" => Some(Self::LearnAnyAddress),
            _ => None,
        }
    }

    /// The configuration spelling ([`SourcePolicy::parse`]'s inverse).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Strict => "strict",
            Self::LearnPort => "learn-port",
            Self::LearnAnyAddress => "learn-any",
        }
    }
}

/// What to do with one RTP packet (see [`SourceFilter::check_rtp`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SourceVerdict {
    /// From the latched source: use it.
    Accept,
    /// The line has just latched onto this source, which is not where it sent media until
    /// now: use the packet, and send the line's media to the source from now on.
    Learned(SocketAddr),
    /// Not (yet) a source of this line: drop it.
    Drop,
}

/// A source being learned: its address, SSRC, last sequence number and packets so far.
#[derive(Debug, Clone, Copy)]
struct Candidate {
    source: SocketAddr,
    ssrc: u32,
    sequence: u16,
    count: u8,
}

/// One media line's source check. See the module documentation.
///
/// ```
/// use std::time::Instant;
/// use siprtmp_core::rtp::source_filter::{SourceFilter, SourcePolicy, SourceVerdict};
///
/// let now = Instant::now();
/// let sdp = "192.0.2.10:4000".parse().unwrap();
/// let mut filter = SourceFilter::new(SourcePolicy::LearnPort, sdp, now);
/// let stranger = "198.51.100.7:4000".parse().unwrap();
/// assert_eq!(filter.check_rtp(now, stranger, 1, 1), SourceVerdict::Drop);
/// assert_eq!(filter.check_rtp(now, sdp, 2, 1), SourceVerdict::Accept);
/// assert_eq!(filter.check_rtp(now, stranger, 1, 2), SourceVerdict::Drop);
/// assert_eq!(filter.dropped(), 2);
/// ```
#[derive(Debug, Clone)]
pub struct SourceFilter {
    /// The latched source, or `None` while none has been.
    latched: Option<SocketAddr>,
    /// Whether the latched source was learned rather than given by SDP.
    learned: bool,
    policy: SourcePolicy,
    /// The address the SDP gives.
    expected: SocketAddr,
    learn_until: Instant,
    candidate: Option<Candidate>,
    dropped: u64,
}

impl SourceFilter {
    /// A filter for a line whose SDP names `expected`, set up at `now`.
    pub fn new(policy: SourcePolicy, expected: SocketAddr, now: Instant) -> Self {
        Self {
            latched: None,
            learned: false,
            policy,
            expected,
            learn_until: now + LEARNING_WINDOW,
            candidate: None,
            dropped: 0,
        }
    }

    /// The far end's SDP moved the line to `expected` (a re-INVITE): the latch is released and
    /// a new learning phase starts.
    pub fn reset(&mut self, expected: SocketAddr, now: Instant) {
        *self = Self {
            dropped: self.dropped,
            ..Self::new(self.policy, expected, now)
        };
    }

    /// The address the SDP gives.
    pub fn expected(&self) -> SocketAddr {
        self.expected
    }

    /// The source the line has latched onto, if any.
    pub fn latched(&self) -> Option<SocketAddr> {
        self.latched
    }

    /// Packets dropped since the filter was made (RTP and RTCP).
    pub fn dropped(&self) -> u64 {
        self.dropped
    }

    /// Whether an RTP packet from `source` carrying `ssrc` and `sequence` belongs to the line.
    #[inline]
    pub fn check_rtp(
        &mut self,
        now: Instant,
        source: SocketAddr,
        ssrc: u32,
        sequence: u16,
    ) -> SourceVerdict {
        if self.latched == Some(source) {
            return SourceVerdict::Accept;
        }
        self.check_new_rtp(now, source, ssrc, sequence)
    }

    /// [`Self::check_rtp`] for a packet from another source than the latched one: the cold
    /// path, out of line.
    #[inline(never)]
    fn check_new_rtp(
        &mut self,
        now: Instant,
        source: SocketAddr,
        ssrc: u32,
        sequence: u16,
    ) -> SourceVerdict {
        if self.latched.is_some() {
            return self.reject();
        }
        if source == self.expected {
            self.latched = Some(source);
            self.candidate = None;
            return SourceVerdict::Accept;
        }
        let may_learn = match self.policy {
            SourcePolicy::Strict => false,
            SourcePolicy::LearnPort => source.ip() == self.expected.ip(),
            SourcePolicy::LearnAnyAddress => true,
        };
        if !may_learn || now >= self.learn_until {
            return self.reject();
        }
        let count = match self.candidate {
            Some(c)
                if c.source == source
                    && c.ssrc == ssrc
                    && c.sequence.wrapping_add(1) == sequence =>
            {
                c.count + 1
            }
            // Anyone else (or the same source out of sequence) starts the count again.
            _ => 1,
        };
        if count >= PROBATION {
            self.latched = Some(source);
            self.learned = true;
            self.candidate = None;
            return SourceVerdict::Learned(source);
        }
        self.candidate = Some(Candidate {
            source,
            ssrc,
            sequence,
            count,
        });
        self.reject()
    }

    /// Whether an RTCP packet from `source` belongs to the line.
    pub fn check_rtcp(&mut self, source: SocketAddr) -> bool {
        let rtp = self.latched.unwrap_or(self.expected);
        let ok = source.ip() == rtp.ip()
            && (self.learned
                || source.port() == rtp.port().wrapping_add(1)
                || source.port() == rtp.port());
        if !ok {
            self.dropped += 1;
        }
        ok
    }

    fn reject(&mut self) -> SourceVerdict {
        self.dropped += 1;
        SourceVerdict::Drop
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn addr(s: &str) -> SocketAddr {
        s.parse().unwrap()
    }

    /// Feeds `n` packets in sequence from `source` starting at `seq`; the last verdict.
    fn burst(
        f: &mut SourceFilter,
        now: Instant,
        source: SocketAddr,
        ssrc: u32,
        seq: u16,
        n: u16,
    ) -> SourceVerdict {
        let mut last = SourceVerdict::Drop;
        for i in 0..n {
            last = f.check_rtp(now, source, ssrc, seq.wrapping_add(i));
        }
        last
    }

    #[test]
    fn the_sdp_address_latches_at_once_and_then_nobody_else_gets_in() {
        let now = Instant::now();
        let sdp = addr("10.0.0.1:4000");
        let mut f = SourceFilter::new(SourcePolicy::LearnAnyAddress, sdp, now);
        assert_eq!(f.check_rtp(now, sdp, 7, 100), SourceVerdict::Accept);
        assert_eq!(f.latched(), Some(sdp));
        // Mid-call injection, however well sequenced, from anywhere else.
        let stranger = addr("10.0.0.1:4002");
        assert_eq!(burst(&mut f, now, stranger, 9, 1, 50), SourceVerdict::Drop);
        assert_eq!(f.dropped(), 50);
        assert_eq!(f.check_rtp(now, sdp, 7, 101), SourceVerdict::Accept);
    }

    #[test]
    fn a_port_of_the_sdp_ip_is_learned_after_probation_by_default() {
        let now = Instant::now();
        let mut f = SourceFilter::new(SourcePolicy::default(), addr("10.0.0.1:4000"), now);
        let nat = addr("10.0.0.1:61000");
        assert_eq!(burst(&mut f, now, nat, 5, 10, 3), SourceVerdict::Drop);
        assert_eq!(
            f.check_rtp(now, nat, 5, 13),
            SourceVerdict::Learned(nat),
            "the fourth packet in sequence is learned"
        );
        assert_eq!(f.check_rtp(now, nat, 5, 14), SourceVerdict::Accept);
        // The SDP address itself is now a stranger: the line is strict.
        assert_eq!(
            f.check_rtp(now, addr("10.0.0.1:4000"), 5, 15),
            SourceVerdict::Drop
        );
    }

    #[test]
    fn another_ip_is_learned_only_when_configured() {
        let now = Instant::now();
        let sdp = addr("192.168.1.20:4000");
        let public = addr("203.0.113.9:40000");
        let mut default = SourceFilter::new(SourcePolicy::LearnPort, sdp, now);
        assert_eq!(
            burst(&mut default, now, public, 1, 0, 20),
            SourceVerdict::Drop
        );
        let mut any = SourceFilter::new(SourcePolicy::LearnAnyAddress, sdp, now);
        assert_eq!(
            burst(&mut any, now, public, 1, 0, 4),
            SourceVerdict::Learned(public)
        );
        let mut strict = SourceFilter::new(SourcePolicy::Strict, sdp, now);
        assert_eq!(
            burst(&mut strict, now, addr("192.168.1.20:4002"), 1, 0, 20),
            SourceVerdict::Drop
        );
    }

    #[test]
    fn learning_ends_with_its_window() {
        let now = Instant::now();
        let sdp = addr("10.0.0.1:4000");
        let mut f = SourceFilter::new(SourcePolicy::LearnAnyAddress, sdp, now);
        let late = now + LEARNING_WINDOW;
        assert_eq!(
            burst(&mut f, late, addr("10.0.0.2:4000"), 1, 0, 10),
            SourceVerdict::Drop
        );
        // The SDP's address is still believed after the window.
        assert_eq!(f.check_rtp(late, sdp, 3, 0), SourceVerdict::Accept);
    }

    #[test]
    fn interleaved_sources_never_finish_probation() {
        // Two senders taking turns (an attacker racing the far end) reset each other's count.
        let now = Instant::now();
        let mut f = SourceFilter::new(SourcePolicy::LearnAnyAddress, addr("10.0.0.1:4000"), now);
        let (a, b) = (addr("10.0.0.2:5000"), addr("10.0.0.3:5000"));
        for seq in 0..40u16 {
            assert_eq!(f.check_rtp(now, a, 1, seq), SourceVerdict::Drop);
            assert_eq!(f.check_rtp(now, b, 2, seq), SourceVerdict::Drop);
        }
        assert_eq!(f.latched(), None);
    }

    #[test]
    fn a_new_ssrc_or_a_gap_restarts_probation() {
        let now = Instant::now();
        let mut f = SourceFilter::new(SourcePolicy::LearnPort, addr("10.0.0.1:4000"), now);
        let s = addr("10.0.0.1:5000");
        burst(&mut f, now, s, 1, 0, 3);
        assert_eq!(f.check_rtp(now, s, 2, 3), SourceVerdict::Drop, "new SSRC");
        burst(&mut f, now, s, 2, 4, 2);
        assert_eq!(f.check_rtp(now, s, 2, 9), SourceVerdict::Drop, "gap");
        assert_eq!(burst(&mut f, now, s, 2, 10, 3), SourceVerdict::Learned(s));
    }

    #[test]
    fn a_reinvite_moves_the_line_and_learning_starts_again() {
        let now = Instant::now();
        let old = addr("10.0.0.1:4000");
        let mut f = SourceFilter::new(SourcePolicy::LearnPort, old, now);
        assert_eq!(f.check_rtp(now, old, 1, 0), SourceVerdict::Accept);
        let later = now + Duration::from_secs(60);
        let new = addr("10.0.0.5:6000");
        f.reset(new, later);
        assert_eq!(f.check_rtp(later, old, 1, 1), SourceVerdict::Drop);
        assert_eq!(f.check_rtp(later, new, 8, 0), SourceVerdict::Accept);
        assert_eq!(f.dropped(), 1);
    }

    #[test]
    fn rtcp_comes_from_the_rtp_peer() {
        let now = Instant::now();
        let sdp = addr("10.0.0.1:4000");
        let mut f = SourceFilter::new(SourcePolicy::LearnPort, sdp, now);
        assert!(f.check_rtcp(addr("10.0.0.1:4001")));
        assert!(f.check_rtcp(addr("10.0.0.1:4000")), "rtcp-mux");
        assert!(!f.check_rtcp(addr("10.0.0.1:4005")));
        assert!(!f.check_rtcp(addr("10.0.0.9:4001")));
        // After learning a NAT's port, its RTCP may come from any port of that IP.
        let nat = addr("10.0.0.1:62000");
        burst(&mut f, now, nat, 1, 0, PROBATION as u16);
        assert!(f.check_rtcp(addr("10.0.0.1:62011")));
        assert!(!f.check_rtcp(addr("10.0.0.2:62001")));
    }

    proptest! {
        /// Whatever a stranger sends, in any order and timing, a strict line never accepts
        /// it, and a line latched onto its SDP address accepts only that address.
        #[test]
        fn strangers_never_get_in_once_latched(
            packets in proptest::collection::vec((0u8..4, any::<u32>(), any::<u16>(), 0u64..10_000), 0..200),
            policy in prop_oneof![Just(SourcePolicy::Strict), Just(SourcePolicy::LearnPort), Just(SourcePolicy::LearnAnyAddress)],
        ) {
            let start = Instant::now();
            let sdp = addr("10.0.0.1:4000");
            let mut f = SourceFilter::new(policy, sdp, start);
            prop_assert_eq!(f.check_rtp(start, sdp, 1, 0), SourceVerdict::Accept);
            let strangers = [addr("10.0.0.1:4002"), addr("10.0.0.2:4000"), addr("[::1]:4000"), addr("10.0.0.1:1")];
            for (who, ssrc, seq, ms) in packets {
                let now = start + Duration::from_millis(ms);
                prop_assert_eq!(f.check_rtp(now, strangers[who as usize], ssrc, seq), SourceVerdict::Drop);
            }
            prop_assert_eq!(f.check_rtp(start, sdp, 1, 1), SourceVerdict::Accept);
        }

        /// Under the strict policy nothing but the SDP address is ever accepted, latched or not.
        #[test]
        fn strict_accepts_only_the_sdp_address(
            packets in proptest::collection::vec((any::<[u8; 4]>(), any::<u16>(), any::<u32>(), any::<u16>()), 0..200),
        ) {
            let now = Instant::now();
            let sdp = addr("10.0.0.1:4000");
            let mut f = SourceFilter::new(SourcePolicy::Strict, sdp, now);
            for (ip, port, ssrc, seq) in packets {
                let source = SocketAddr::from((ip, port));
                let verdict = f.check_rtp(now, source, ssrc, seq);
                prop_assert_eq!(verdict == SourceVerdict::Accept, source == sdp);
            }
        }
    }
}
