//! [`CallEcho`]: what the echo far end does to each packet of one call. Plain, it sends the
//! packet back as it came (as sipp's `-rtp_echo`); with SRTP it unprotects it with the
//! gateway's key and protects it again with its own (each call its own pair of contexts, so
//! each call's streams are new SSRCs to both), so the gateway gets back the very RTP it sent,
//! under the far end's key.

use siprtmp_core::sdp::SrtpKeys;
use siprtmp_core::srtp::{SrtpContext, SrtpError};

/// Receive buffer size: an RTP audio packet with its SRTP tag, with room to spare.
pub(crate) const PACKET_BUF: usize = 2048;

/// One call's echo. See the module documentation.
#[derive(Debug)]
pub(crate) struct CallEcho {
    /// Unprotects with the gateway's key, protects with ours; `None`: plain RTP.
    srtp: Option<(SrtpContext, SrtpContext)>,
}

impl CallEcho {
    /// An echo with the call's negotiated keys (`None`: plain RTP).
    pub(crate) fn new(keys: Option<&SrtpKeys>) -> Self {
        Self {
            srtp: keys.map(|k| {
                (
                    SrtpContext::new(k.suite, &k.theirs),
                    SrtpContext::new(k.suite, &k.ours),
                )
            }),
        }
    }

    /// Turns the packet received in `buf[..len]` into the one to send back, in place; returns
    /// its length. `buf` has [`PACKET_BUF`] bytes. A packet that fails to unprotect (a wrong
    /// key, a replay, not RTP) is dropped with the reason.
    pub(crate) fn echo(&mut self, buf: &mut [u8], len: usize) -> Result<usize, SrtpError> {
        match &mut self.srtp {
            None => Ok(len),
            Some((rx, tx)) => {
                let plain = rx.unprotect(&mut buf[..len])?;
                tx.protect(buf, plain)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use siprtmp_core::srtp::{MasterKey, Suite};

    fn key(fill: u8) -> MasterKey {
        MasterKey::from_concatenated(&[fill; MasterKey::LEN]).unwrap()
    }

    fn rtp(seq: u16, payload: &[u8]) -> Vec<u8> {
        let mut p = vec![
            0x80,
            96,
            (seq >> 8) as u8,
            seq as u8,
            0,
            0,
            1,
            0,
            0xaa,
            0xbb,
            0xcc,
            1,
        ];
        p.extend_from_slice(payload);
        p
    }

    #[test]
    fn plain_packets_come_back_unchanged() {
        let mut echo = CallEcho::new(None);
        let mut buf = [0u8; PACKET_BUF];
        let p = rtp(1, b"SQN1abcd");
        buf[..p.len()].copy_from_slice(&p);
        assert_eq!(echo.echo(&mut buf, p.len()), Ok(p.len()));
        assert_eq!(&buf[..p.len()], &p[..]);
    }

    #[test]
    fn srtp_packets_come_back_under_the_far_ends_key_with_the_same_rtp() {
        let suite = Suite::ALL[0];
        // The gateway protects with its key; the far end's `theirs` is that key.
        let (gateway_key, far_key) = (key(1), key(2));
        let far = SrtpKeys {
            suite,
            ours: far_key.clone(),
            theirs: gateway_key.clone(),
        };
        let mut echo = CallEcho::new(Some(&far));
        let mut gateway_tx = SrtpContext::new(suite, &gateway_key);
        let mut gateway_rx = SrtpContext::new(suite, &far_key);
        for seq in [1u16, 2, 3, 5, 4] {
            let p = rtp(seq, &[seq as u8; 40]);
            let mut buf = [0u8; PACKET_BUF];
            buf[..p.len()].copy_from_slice(&p);
            let sent = gateway_tx.protect(&mut buf, p.len()).unwrap();
            assert_ne!(&buf[12..p.len()], &p[12..], "encrypted");
            let back = echo.echo(&mut buf, sent).unwrap();
            assert_eq!(back, sent);
            let plain = gateway_rx.unprotect(&mut buf[..back]).unwrap();
            assert_eq!(&buf[..plain], &p[..], "seq {seq}");
        }
        // A packet under another key is refused, not echoed.
        let p = rtp(9, &[9; 40]);
        let mut buf = [0u8; PACKET_BUF];
        buf[..p.len()].copy_from_slice(&p);
        let sent = SrtpContext::new(suite, &key(3))
            .protect(&mut buf, p.len())
            .unwrap();
        assert_eq!(echo.echo(&mut buf, sent), Err(SrtpError::Authentication));
    }
}
