//! [`LegSrtp`]: the SRTP state of one media leg of a call (RTP and RTCP, both directions),
//! sealing what the bridge sends and opening what the far end sends.
//!
//! Sealing writes each datagram once into a shared arena (header, payload, room for the tag),
//! protects it there and hands out the written part as the datagram's bytes: the arena's
//! allocation is shared by many packets, so a packet costs no allocation of its own. Opening
//! works on the received buffer itself when the datagram is its only owner (the drivers'
//! case), unprotecting in place.

use bytes::{Bytes, BytesMut};

use crate::rtp::session::RtpDatagram;
use crate::sdp::SrtpKeys;
use crate::srtp::{SrtcpContext, SrtpContext, SrtpError};

/// Bytes of arena reserved at a time: many packets' worth.
const ARENA: usize = 8 * 1024;

/// Why a datagram from the far end could not be opened.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum OpenError {
    /// Too short or not RTP/RTCP.
    Malformed,
    /// Wrong key or altered.
    Authentication,
    /// Already received, or older than the replay window.
    Replay,
}

/// One leg's SRTP and SRTCP contexts.
pub(crate) struct LegSrtp {
    keys: SrtpKeys,
    send: SrtpContext,
    receive: SrtpContext,
    send_rtcp: SrtcpContext,
    receive_rtcp: SrtcpContext,
    arena: BytesMut,
}

impl LegSrtp {
    /// Contexts for `keys`: ours protect what we send, the far end's unprotect what we get.
    pub(crate) fn new(keys: &SrtpKeys) -> Self {
        Self {
            send: SrtpContext::new(keys.suite, &keys.ours),
            receive: SrtpContext::new(keys.suite, &keys.theirs),
            send_rtcp: SrtcpContext::new(&keys.ours),
            receive_rtcp: SrtcpContext::new(&keys.theirs),
            keys: keys.clone(),
            arena: BytesMut::new(),
        }
    }

    /// The keys the contexts run with.
    pub(crate) fn keys(&self) -> &SrtpKeys {
        &self.keys
    }

    /// Protects `datagram` (RTP, or RTCP when `rtcp`): afterwards its payload holds the whole
    /// protected packet and its header is empty. `false` when it is not a packet that can be
    /// protected (it must not go out).
    pub(crate) fn seal(&mut self, rtcp: bool, datagram: &mut RtpDatagram) -> bool {
        let len = datagram.len();
        let room = len + SrtcpContext::OVERHEAD;
        if self.arena.capacity() < room {
            self.arena.reserve(ARENA.max(room));
        }
        self.arena.extend_from_slice(&datagram.header);
        self.arena.extend_from_slice(&datagram.payload);
        self.arena.resize(room, 0);
        let result = if rtcp {
            self.send_rtcp.protect(&mut self.arena, len)
        } else {
            self.send.protect(&mut self.arena, len)
        };
        match result {
            Ok(n) => {
                self.arena.truncate(n);
                datagram.header.clear();
                datagram.payload = self.arena.split().freeze();
                true
            }
            Err(_) => {
                self.arena.clear();
                false
            }
        }
    }

    /// The RTP (or RTCP) packet inside the protected `data`.
    pub(crate) fn open(&mut self, rtcp: bool, data: Bytes) -> Result<Bytes, OpenError> {
        // Without a copy when `data` is the buffer's only owner.
        let mut buf = BytesMut::from(data);
        let result = if rtcp {
            self.receive_rtcp.unprotect(&mut buf)
        } else {
            self.receive.unprotect(&mut buf)
        };
        match result {
            Ok(n) => {
                buf.truncate(n);
                Ok(buf.freeze())
            }
            Err(SrtpError::Authentication) => Err(OpenError::Authentication),
            Err(SrtpError::Replay) => Err(OpenError::Replay),
            Err(SrtpError::Malformed | SrtpError::NoRoom) => Err(OpenError::Malformed),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::srtp::{MasterKey, Suite};

    fn keys(a: u8, b: u8) -> SrtpKeys {
        SrtpKeys {
            suite: Suite::AesCm128HmacSha1_80,
            ours: MasterKey::from_concatenated(&[a; 30]).unwrap(),
            theirs: MasterKey::from_concatenated(&[b; 30]).unwrap(),
        }
    }

    fn datagram(sequence: u16) -> RtpDatagram {
        let mut header = smallvec::SmallVec::new();
        header.extend_from_slice(&[0x80, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 5]);
        header[2..4].copy_from_slice(&sequence.to_be_bytes());
        RtpDatagram {
            header,
            payload: Bytes::from_static(&[0xd5; 160]),
        }
    }

    #[test]
    fn sealed_packets_open_on_the_far_side_and_nowhere_else() {
        let (mut us, mut them) = (LegSrtp::new(&keys(1, 2)), LegSrtp::new(&keys(2, 1)));
        let mut sealed = Vec::new();
        for s in 0..200 {
            let mut d = datagram(s);
            assert!(us.seal(false, &mut d));
            assert!(d.header.is_empty());
            assert_eq!(d.payload.len(), 12 + 160 + 10);
            sealed.push(d.payload);
        }
        for (s, p) in sealed.iter().enumerate() {
            let opened = them.open(false, p.clone()).unwrap();
            assert_eq!(opened, datagram(s as u16).to_bytes());
        }
        assert_eq!(
            them.open(false, sealed[199].clone()),
            Err(OpenError::Replay)
        );
        // We cannot open what we sent: the far end's key is not ours.
        assert_eq!(
            us.open(false, sealed[0].clone()),
            Err(OpenError::Authentication)
        );
    }
}
