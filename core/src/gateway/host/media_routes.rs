//! [`MediaRoutes`]: which call a datagram on a shared RTP port belongs to.
//!
//! With `shared_rtp_ports`, every call's media uses the same four sockets (audio RTP/RTCP,
//! video RTP/RTCP) instead of four of its own, so that one `recvmmsg` or `sendmmsg` carries
//! many calls' packets and a thousand calls do not need four thousand ports. The price is
//! demultiplexing: a datagram is matched to a call by where it came from, the far end's RTP
//! address for that leg (from its SDP, RTCP from the port above it). Far ends that share an
//! address (a media relay, a test rig answering every call from one port) are told apart by
//! SSRC: a packet carrying the SSRC a call sends with (an echo of our own stream) or the one
//! learned from that far end's first packet goes to that call; an SSRC nobody knows goes to
//! the first call at that address that has not learned one yet, which learns it.
//!
//! A call between two clients of this gateway (hairpin) sends its media to the shared port
//! itself, so both calls expect media from the same address, our own; there the call's own
//! SSRC means the packet came from it, not back to it. Such a route is pinned to the SSRC of
//! the peer call (found by the SDP session ids the two calls exchanged): only that SSRC
//! reaches it, and it never learns another.
//!
//! What no call expects is dropped: unlike a call's own port, a shared port cannot latch onto
//! an unknown source (symmetric RTP for far ends behind NAT), because nothing says whose it
//! is. The per-call ports (the default) keep that.

use std::net::SocketAddr;

use smallvec::SmallVec;

use crate::gateway::media_bridge::Leg;
use crate::ids::ConnId;
use crate::wire_hash::WireHashMap;

/// What a call expects from an address.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Expect {
    /// A far end: its own SSRC echoed back, or whatever SSRC it learns.
    FarEnd {
        /// The SSRC the call sends the leg with.
        own_ssrc: Option<u32>,
    },
    /// Another call of this gateway (hairpin): only the SSRC that call sends with (unknown
    /// until its media starts).
    Peer {
        /// The peer call's SSRC for the leg.
        ssrc: Option<u32>,
    },
}

/// A call listening at an address: the SSRC it sends with, and the one learned from that
/// address for it (or, pinned, the only one it takes).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Route {
    conn: ConnId,
    own_ssrc: Option<u32>,
    learned_ssrc: Option<u32>,
    pinned: bool,
}

/// The calls expecting media from one address, and which of them each known SSRC is for
/// (so that a busy relay address costs one lookup per packet, not a scan of its calls).
#[derive(Debug, Default)]
struct Group {
    routes: SmallVec<[Route; 2]>,
    by_ssrc: WireHashMap<u32, ConnId>,
}

impl Group {
    fn forget_ssrc(&mut self, ssrc: Option<u32>, conn: ConnId) {
        if let Some(ssrc) = ssrc {
            if self.by_ssrc.get(&ssrc) == Some(&conn) {
                self.by_ssrc.remove(&ssrc);
            }
        }
    }

    fn learn(&mut self, index: usize, ssrc: u32) {
        let route = &mut self.routes[index];
        let (conn, old) = (route.conn, route.learned_ssrc.replace(ssrc));
        self.forget_ssrc(old, conn);
        self.by_ssrc.entry(ssrc).or_insert(conn);
    }
}

/// A far end's address for one leg: the key of [`MediaRoutes`], looked up for every datagram
/// on a shared port.
///
/// It hashes as one or two integers (the address, the port and the leg packed) rather than
/// field by field as `(Leg, SocketAddr)` does: one round of [`WireHasher`] for an IPv4
/// source.
///
/// [`WireHasher`]: crate::wire_hash::WireHasher
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct SourceKey {
    leg: Leg,
    addr: SocketAddr,
}

impl std::hash::Hash for SourceKey {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        // Equal keys hash equal: every field hashed here is part of equality (a V6 address's
        // flow info and scope, also compared, are left out, which only widens a bucket).
        let leg = u64::from(self.leg == Leg::Video);
        match self.addr {
            SocketAddr::V4(v4) => state
                .write_u64(u64::from(v4.ip().to_bits()) << 32 | u64::from(v4.port()) << 1 | leg),
            SocketAddr::V6(v6) => {
                state.write_u128(v6.ip().to_bits());
                state.write_u64(1 << 32 | u64::from(v6.port()) << 1 | leg);
            }
        }
    }
}

/// The calls expecting media from each far-end address, per leg. See the module documentation.
///
/// Keys come off the wire (SDP, RTP), so the maps hash with secrets drawn per map
/// ([`WireHashMap`]): two rounds of a multiply per datagram, a fraction of what SipHash
/// costs (figures in `bench-compare/results/design-figures.md`).
#[derive(Debug, Default)]
pub(crate) struct MediaRoutes {
    by_source: WireHashMap<SourceKey, Group>,
}

impl MediaRoutes {
    /// `conn` expects `leg`'s media from `remote`, as `expect` says.
    pub(crate) fn insert(&mut self, leg: Leg, remote: SocketAddr, conn: ConnId, expect: Expect) {
        let group = self
            .by_source
            .entry(SourceKey { leg, addr: remote })
            .or_default();
        if group.routes.iter().any(|r| r.conn == conn) {
            return;
        }
        let route = match expect {
            Expect::FarEnd { own_ssrc } => Route {
                conn,
                own_ssrc,
                learned_ssrc: None,
                pinned: false,
            },
            Expect::Peer { ssrc } => Route {
                conn,
                own_ssrc: None,
                learned_ssrc: ssrc,
                pinned: true,
            },
        };
        group.routes.push(route);
        for ssrc in [route.own_ssrc, route.learned_ssrc].into_iter().flatten() {
            group.by_ssrc.entry(ssrc).or_insert(conn);
        }
    }

    /// `conn` no longer expects `leg`'s media from `remote`.
    pub(crate) fn remove(&mut self, leg: Leg, remote: SocketAddr, conn: ConnId) {
        let key = SourceKey { leg, addr: remote };
        let Some(group) = self.by_source.get_mut(&key) else {
            return;
        };
        if let Some(i) = group.routes.iter().position(|r| r.conn == conn) {
            let route = group.routes.remove(i);
            group.forget_ssrc(route.own_ssrc, conn);
            group.forget_ssrc(route.learned_ssrc, conn);
        }
        if group.routes.is_empty() {
            self.by_source.remove(&key);
        }
    }

    /// Addresses with at least one call.
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.by_source.len()
    }

    /// The call a datagram from `source` on `leg`'s RTP (or RTCP) port is for, if any.
    pub(crate) fn route(
        &mut self,
        leg: Leg,
        rtcp: bool,
        source: SocketAddr,
        data: &[u8],
    ) -> Option<ConnId> {
        let addr = if rtcp {
            // RTCP comes from the port above the far end's RTP port.
            SocketAddr::new(source.ip(), source.port().checked_sub(1)?)
        } else {
            source
        };
        let key = SourceKey { leg, addr };
        let group = self.by_source.get_mut(&key)?;
        // The sender's SSRC: RTP's fixed header has it at bytes 8..12, RTCP's SR and RR
        // (the first report of a compound packet) at 4..8.
        let at = if rtcp { 4 } else { 8 };
        let ssrc = data
            .get(at..at + 4)
            .map(|b| u32::from_be_bytes([b[0], b[1], b[2], b[3]]));
        if let [only @ Route { pinned: false, .. }] = group.routes.as_slice() {
            // One call at this address: it is the call's, whatever the SSRC; learn it so
            // that a second call at the same address can be told apart.
            let conn = only.conn;
            let new = ssrc
                .filter(|s| !rtcp && only.own_ssrc != Some(*s) && only.learned_ssrc != Some(*s));
            if let Some(ssrc) = new {
                group.learn(0, ssrc);
            }
            return Some(conn);
        }
        let ssrc = ssrc?;
        if let Some(conn) = group.by_ssrc.get(&ssrc) {
            return Some(*conn);
        }
        if rtcp {
            return None;
        }
        // A new SSRC: the first call here without one learns it (once per call).
        let fresh = group
            .routes
            .iter()
            .position(|r| r.learned_ssrc.is_none() && !r.pinned)?;
        group.learn(fresh, ssrc);
        Some(group.routes[fresh].conn)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        /// Whatever arrives, from wherever, routing answers without panicking, and only
        /// with a call that was routed.
        #[test]
        fn arbitrary_datagrams_route_to_a_routed_call_or_nowhere(
            data in proptest::collection::vec(any::<u8>(), 0..64),
            port in any::<u16>(),
            rtcp in any::<bool>(),
            calls in 0u64..4,
        ) {
            let mut routes = MediaRoutes::default();
            let far = SocketAddr::new([10, 0, 0, 1].into(), port);
            for conn in 0..calls {
                routes.insert(Leg::Audio, far, ConnId(conn), far_end(conn as u32));
            }
            for source in [far, SocketAddr::new(far.ip(), port.wrapping_add(1))] {
                if let Some(conn) = routes.route(Leg::Audio, rtcp, source, &data) {
                    prop_assert!(conn.0 < calls);
                }
            }
        }
    }

    fn rtp(ssrc: u32) -> Vec<u8> {
        let mut p = vec![0x80, 96, 0, 1, 0, 0, 0, 0];
        p.extend_from_slice(&ssrc.to_be_bytes());
        p
    }

    /// A receiver report from `ssrc`, no report blocks.
    fn rtcp(ssrc: u32) -> Vec<u8> {
        let mut p = vec![0x80, 201, 0, 1];
        p.extend_from_slice(&ssrc.to_be_bytes());
        p
    }

    fn addr(s: &str) -> SocketAddr {
        s.parse().unwrap()
    }

    fn far_end(own: u32) -> Expect {
        Expect::FarEnd {
            own_ssrc: Some(own),
        }
    }

    #[test]
    fn hairpin_calls_take_only_their_peers_ssrc() {
        // Alice (1) and bob (2) call each other through the gateway, carol (3) and dave (4)
        // too: all four expect media from the gateway's own shared port.
        let mut routes = MediaRoutes::default();
        let own = addr("10.0.0.1:16000");
        let peers = [(1, 22), (2, 11), (3, 44), (4, 33)];
        for (conn, peer_ssrc) in peers {
            let ssrc = Some(peer_ssrc);
            routes.insert(Leg::Audio, own, ConnId(conn), Expect::Peer { ssrc });
        }
        // Each call's packets (its own SSRC) reach its peer, whatever the order.
        for (sender, receiver) in [(44, 3), (11, 2), (22, 1), (33, 4)] {
            let to = routes.route(Leg::Audio, false, own, &rtp(sender));
            assert_eq!(to, Some(ConnId(receiver)), "SSRC {sender}");
        }
        // A stranger's SSRC is nobody's: pinned routes never learn.
        assert_eq!(routes.route(Leg::Audio, false, own, &rtp(99)), None);
        // Alone at the address, a pinned route still takes only its peer's SSRC.
        for conn in 2..=4 {
            routes.remove(Leg::Audio, own, ConnId(conn));
        }
        assert_eq!(routes.route(Leg::Audio, false, own, &rtp(11)), None);
        assert_eq!(
            routes.route(Leg::Audio, false, own, &rtp(22)),
            Some(ConnId(1))
        );
    }

    #[test]
    fn far_ends_at_different_addresses_get_their_own_calls_media() {
        let mut routes = MediaRoutes::default();
        routes.insert(Leg::Audio, addr("10.0.0.1:4000"), ConnId(1), far_end(1));
        routes.insert(Leg::Audio, addr("10.0.0.2:4000"), ConnId(2), far_end(2));
        let from = |r: &mut MediaRoutes, s| r.route(Leg::Audio, false, addr(s), &rtp(9));
        assert_eq!(from(&mut routes, "10.0.0.1:4000"), Some(ConnId(1)));
        assert_eq!(from(&mut routes, "10.0.0.2:4000"), Some(ConnId(2)));
        // An address nobody expects, and another leg of an expected one: nobody's.
        assert_eq!(from(&mut routes, "10.0.0.3:4000"), None);
        let video = routes.route(Leg::Video, false, addr("10.0.0.1:4000"), &rtp(9));
        assert_eq!(video, None);
        // RTCP from the port above.
        let report = routes.route(Leg::Audio, true, addr("10.0.0.2:4001"), &rtcp(9));
        assert_eq!(report, Some(ConnId(2)));
    }

    #[test]
    fn calls_sharing_a_far_end_address_are_told_apart_by_ssrc() {
        let mut routes = MediaRoutes::default();
        let relay = addr("10.0.0.9:5000");
        for conn in 1..=3 {
            routes.insert(Leg::Audio, relay, ConnId(conn), far_end(1000 + conn as u32));
        }
        // An echo of call 2's own stream goes to call 2.
        assert_eq!(
            routes.route(Leg::Audio, false, relay, &rtp(1002)),
            Some(ConnId(2))
        );
        // Unknown SSRCs are learned by the calls that have none, in order.
        assert_eq!(
            routes.route(Leg::Audio, false, relay, &rtp(77)),
            Some(ConnId(1))
        );
        assert_eq!(
            routes.route(Leg::Audio, false, relay, &rtp(88)),
            Some(ConnId(2))
        );
        assert_eq!(
            routes.route(Leg::Audio, false, relay, &rtp(77)),
            Some(ConnId(1))
        );
        assert_eq!(
            routes.route(Leg::Audio, false, relay, &rtp(99)),
            Some(ConnId(3))
        );
        // Every call has learned one: a fourth SSRC is nobody's, and so is a runt.
        assert_eq!(routes.route(Leg::Audio, false, relay, &rtp(55)), None);
        assert_eq!(routes.route(Leg::Audio, false, relay, &[0x80]), None);
        // RTCP never teaches an SSRC, but follows a learned one.
        assert_eq!(
            routes.route(Leg::Audio, true, addr("10.0.0.9:5001"), &rtcp(88)),
            Some(ConnId(2))
        );
    }

    #[test]
    fn a_removed_call_gets_nothing_and_the_last_removal_forgets_the_address() {
        let mut routes = MediaRoutes::default();
        let far = addr("[::1]:6000");
        routes.insert(Leg::Video, far, ConnId(1), far_end(11));
        routes.insert(Leg::Video, far, ConnId(1), far_end(11));
        routes.insert(Leg::Video, far, ConnId(2), far_end(22));
        routes.insert(Leg::Video, far, ConnId(3), far_end(33));
        // Call 1 learns SSRC 5, then leaves: its SSRCs are forgotten with it.
        assert_eq!(
            routes.route(Leg::Video, false, far, &rtp(5)),
            Some(ConnId(1))
        );
        routes.remove(Leg::Video, far, ConnId(1));
        assert_eq!(
            routes.route(Leg::Video, false, far, &rtp(11)),
            Some(ConnId(2))
        );
        assert_eq!(
            routes.route(Leg::Video, false, far, &rtp(5)),
            Some(ConnId(3))
        );
        routes.remove(Leg::Video, far, ConnId(3));
        // One call left: everything from the address is its.
        assert_eq!(
            routes.route(Leg::Video, false, far, &rtp(5)),
            Some(ConnId(2))
        );
        routes.remove(Leg::Video, far, ConnId(2));
        assert_eq!(routes.len(), 0);
        assert_eq!(routes.route(Leg::Video, false, far, &rtp(5)), None);
    }
}
