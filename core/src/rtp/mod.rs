//! RTP and RTCP (RFC 3550) and RFC 4733 telephone-events for the media side of the gateway.
//!
//! [`packet`] owns the RTP packet format, [`rtcp`] the RTCP compound packet, [`session`] the
//! sans-IO [`RtpSession`] (sequence numbering, reception statistics, the RTCP schedule and
//! reports), [`source_filter`] which address a call's media is accepted from, and [`dtmf`] DTMF
//! digits as telephone-event packets.

pub mod dtmf;
pub mod packet;
pub mod rtcp;
pub mod session;
pub mod source_filter;

pub use packet::{FixedHeader, HeaderExtension, RtpError, RtpPacket};
pub use rtcp::{RtcpError, RtcpPacket};
pub use session::{ReceiveOutcome, RtpDatagram, RtpSession, RtpSessionConfig};
pub use source_filter::{SourceFilter, SourcePolicy};
