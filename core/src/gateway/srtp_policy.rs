//! The gateway's SRTP policy (`srtp = "off" | "offer" | "require"`) and the rule on where keys
//! may travel.
//!
//! SDES puts the master keys in the SDP, in the clear for anyone who can read the SIP
//! signalling: keys go out only when the signalling is confidential (SIP over TLS), unless
//! the operator says otherwise ([`super::call_session::GatewayConfig::srtp_over_plain_sip`]).
//! Where they may not travel, `offer` falls back to plain RTP and `require` refuses calls.
//!
//! - `off`: plain RTP as before; an incoming offer with only RTP/SAVP lines gets 488 (the
//!   plain answerer rejects the secure profile), crypto lines on an RTP/AVP offer are ignored.
//! - `offer`: outgoing INVITEs offer RTP/AVP with crypto lines (best-effort SRTP: a plain far
//!   end ignores them and answers plain RTP, which is accepted); incoming offers with a usable
//!   crypto line are answered with SRTP, plain ones with plain RTP.
//! - `require`: outgoing INVITEs offer RTP/SAVP only; a far end that answers without crypto
//!   gets a BYE and the client `rejected`; an incoming INVITE without usable crypto gets 488.

use std::fmt;
use std::str::FromStr;

use crate::sip::Transport;

/// What the gateway does about SRTP (see the module documentation).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum SrtpMode {
    /// Plain RTP only.
    #[default]
    Off,
    /// SRTP when the far end takes it, plain RTP otherwise.
    Offer,
    /// SRTP or no call.
    Require,
}

impl FromStr for SrtpMode {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        match s.trim().to_ascii_lowercase().as_str() {
            "off" => Ok(SrtpMode::Off),
            "offer" => Ok(SrtpMode::Offer),
            "require" => Ok(SrtpMode::Require),
            other => Err(format!(
                "unknown srtp mode '{other}' (expected off, offer or require)"
            )),
        }
    }
}

impl fmt::Display for SrtpMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            SrtpMode::Off => "off",
            SrtpMode::Offer => "offer",
            SrtpMode::Require => "require",
        })
    }
}

/// Whether SIP carried over `transport` is confidential (encrypted on the wire), so that SDES
/// keys in its SDP are not readable by whoever sees the packets. UDP and TCP are not; any
/// transport added later (SIP over TLS) is taken to be: a new transport either is TLS or must
/// be listed here.
pub fn signalling_is_confidential(transport: Transport) -> bool {
    !matches!(transport, Transport::Udp | Transport::Tcp)
}

/// Whether SDES keys may be put in SDP sent over `transport`: over confidential signalling,
/// or anywhere when the operator allows plain SIP (`over_plain_sip`).
pub fn keys_may_travel(transport: Transport, over_plain_sip: bool) -> bool {
    over_plain_sip || signalling_is_confidential(transport)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn modes_parse_and_print() {
        for mode in [SrtpMode::Off, SrtpMode::Offer, SrtpMode::Require] {
            assert_eq!(mode.to_string().parse::<SrtpMode>(), Ok(mode));
        }
        assert_eq!(" Require ".parse::<SrtpMode>(), Ok(SrtpMode::Require));
        assert!("on".parse::<SrtpMode>().is_err());
    }

    #[test]
    fn keys_stay_off_plain_signalling_unless_allowed() {
        assert!(!keys_may_travel(Transport::Udp, false));
        assert!(!keys_may_travel(Transport::Tcp, false));
        assert!(keys_may_travel(Transport::Udp, true));
    }
}
