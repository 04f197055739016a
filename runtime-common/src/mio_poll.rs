//! The one part of this crate's public API that names mio types: how a driver's `mio::Poll`
//! tells its connections, the node's UDP sockets and its own wake-ups apart ([`PollTokens`]),
//! and the [`UdpExecutor`] whose sockets live in such a poll ([`udp_executor`]).
//!
//! Why mio shows here at all: the mio driver registers the node's UDP sockets in its own poll,
//! so a datagram is read in the same wake-up that reports it, with no thread hop and no second
//! epoll instance in the way. Registering needs a `mio::Registry`, and the readiness events
//! come back as `mio::Token`s; everything else in this crate (the executors' own threads and
//! polls included) keeps mio to itself. The tokio and async-std drivers use the same executor
//! through [`crate::UdpPoll`], which exposes only a descriptor.
//!
//! # The token space
//!
//! A token is a `usize`; its top two bits say what it names:
//!
//! | top bits | names | low bits |
//! | --- | --- | --- |
//! | `00` | a connection | its [`ConnId`] without the worker byte |
//! | `01` | a UDP socket of the node ([`UdpSlot`]) | the socket's slot in the executor |
//! | `1x` | the driver's own sources ([`PollTokens::control`]: listener, waker...) | any |
//!
//! A `ConnId` carries its node's worker number in its top 8 bits (see
//! [`ConnId::worker`]), so a connection of worker 64 or above used as a token as it stands
//! would have one of the top two bits set and be taken for a UDP socket or a control token.
//! Every connection of one poll belongs to one node, hence one worker: [`PollTokens`] knows
//! that worker, leaves its byte out of the token and puts it back when decoding. What is left
//! of an id (generation and slot, 56 bits) fits below the UDP range of a 64-bit `usize`; on a
//! narrower one [`PollTokens::conn`] refuses an id that does not fit rather than truncate it.

use std::io;

use mio::{Registry, Token};
use siprtmp_core::node::ConnId;
use siprtmp_core::worker_relay::WorkerId;

use crate::udp_executor::{UdpExecutor, UdpSlot};

/// Bits of a token below its two kind bits.
const PAYLOAD_BITS: u32 = usize::BITS - 2;
/// The payload of a token: everything below the kind bits.
const PAYLOAD: usize = (1 << PAYLOAD_BITS) - 1;
/// The kind bits of a connection's token.
const CONN_KIND: usize = 0;
/// The kind bits of a UDP socket's token.
const UDP_KIND: usize = 1 << PAYLOAD_BITS;
/// Where a `ConnId` keeps its worker number.
const WORKER_SHIFT: u32 = 56;
/// A `ConnId` without its worker byte.
const CONN_LOCAL: u64 = (1 << WORKER_SHIFT) - 1;

/// UDP sockets one executor can name in a poll (slots `0..UDP_SLOTS`).
pub const UDP_SLOTS: usize = PAYLOAD + 1;

/// What a token of a driver's poll names; see [`PollTokens::decode`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Watched {
    /// One of the node's connections.
    Conn(ConnId),
    /// One of the node's UDP sockets: hand it to [`crate::NodeHost::udp_readable`].
    Udp(UdpSlot),
    /// Neither: one of the driver's own sources, named with [`PollTokens::control`] (or a
    /// token nothing here hands out).
    Other(Token),
}

/// The mapping between what a driver's poll watches and the poll's tokens, for the
/// connections of one node (one worker); see the module documentation.
///
/// ```
/// use siprtmp_core::node::ConnId;
/// use siprtmp_core::worker_relay::WorkerId;
/// use siprtmp_runtime_common::mio_poll::{PollTokens, Watched};
/// let tokens = PollTokens::new(WorkerId(200));
/// let conn = ConnId((200 << 56) | 7);
/// let token = tokens.conn(conn).unwrap();
/// assert_eq!(tokens.decode(token), Watched::Conn(conn));
/// // Not this node's connection: no token.
/// assert_eq!(tokens.conn(ConnId(7)), None);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PollTokens {
    /// The node's worker number in place (the top byte of each of its `ConnId`s).
    worker: u64,
}

impl PollTokens {
    /// The tokens of a poll whose connections are `worker`'s (worker 0 for a node that is not
    /// one of a group).
    pub fn new(worker: WorkerId) -> Self {
        Self {
            worker: u64::from(worker.0) << WORKER_SHIFT,
        }
    }

    /// The token of `conn`; `None` if it is another worker's connection or does not fit the
    /// connection range (only possible where `usize` is narrower than 64 bits).
    #[inline]
    pub fn conn(&self, conn: ConnId) -> Option<Token> {
        if conn.0 & !CONN_LOCAL != self.worker {
            return None;
        }
        let local = usize::try_from(conn.0 & CONN_LOCAL).ok()?;
        (local <= PAYLOAD).then_some(Token(local))
    }

    /// The token of the UDP socket in `slot`.
    ///
    /// # Panics
    ///
    /// If `slot` is not below [`UDP_SLOTS`] (2^62 sockets on 64 bits: never, in practice).
    #[inline]
    pub fn udp(slot: UdpSlot) -> Token {
        assert!(
            slot.0 < UDP_SLOTS,
            "UDP slot {} out of the token range",
            slot.0
        );
        Token(UDP_KIND | slot.0)
    }

    /// The driver's own token number `n` (counted from the top of the token space, so `n` is
    /// a small number): for the listener, the waker and the like.
    pub const fn control(n: u8) -> Token {
        Token(usize::MAX - n as usize)
    }

    /// What `token` names. Every token decodes to exactly one thing: the kinds do not overlap.
    #[inline]
    pub fn decode(&self, token: Token) -> Watched {
        let payload = token.0 & PAYLOAD;
        match token.0 & !PAYLOAD {
            // A payload past a `ConnId`'s low 56 bits is no connection's (64-bit only).
            CONN_KIND if payload as u64 <= CONN_LOCAL => {
                Watched::Conn(ConnId(self.worker | payload as u64))
            }
            UDP_KIND => Watched::Udp(UdpSlot(payload)),
            _ => Watched::Other(token),
        }
    }
}

/// A UDP executor whose sockets are registered in `registry` (a driver's poll) under
/// [`PollTokens::udp`] tokens; the driver hands each readable one to
/// [`crate::NodeHost::udp_readable`] (or [`UdpExecutor::readable`]).
pub fn udp_executor(registry: &Registry) -> io::Result<UdpExecutor> {
    Ok(UdpExecutor::in_poll(registry.try_clone()?))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// The connection ids a node of `worker` hands out: its worker byte, any generation
    /// (24 bits) and slot (32 bits).
    fn conn_of(worker: u8) -> impl Strategy<Value = ConnId> {
        (0u64..1 << 24, any::<u32>()).prop_map(move |(generation, slot)| {
            ConnId((u64::from(worker) << 56) | (generation << 32) | u64::from(slot))
        })
    }

    /// The bug this mapping fixes: worker 64's ids, taken as tokens as they stand, landed in
    /// the UDP range. Now every worker's connections decode as connections.
    #[test]
    fn a_worker_numbered_conn_never_collides_with_a_udp_token() {
        for worker in [0u8, 1, 63, 64, 127, 128, 191, 192, 255] {
            let tokens = PollTokens::new(WorkerId(worker));
            for local in [0, 1, 0xFFFF_FFFF, CONN_LOCAL] {
                let conn = ConnId((u64::from(worker) << 56) | local);
                let token = tokens.conn(conn).expect("fits on 64 bits");
                assert_eq!(tokens.decode(token), Watched::Conn(conn), "{conn}");
                assert_ne!(token.0 & !PAYLOAD, UDP_KIND, "{conn} in the UDP range");
            }
        }
    }

    #[test]
    fn control_tokens_are_neither_connections_nor_udp() {
        let tokens = PollTokens::new(WorkerId(255));
        for n in [0, 1, 2, 255] {
            let token = PollTokens::control(n);
            assert_eq!(tokens.decode(token), Watched::Other(token));
        }
    }

    #[test]
    #[should_panic(expected = "out of the token range")]
    fn a_udp_slot_past_the_range_is_refused() {
        PollTokens::udp(UdpSlot(UDP_SLOTS));
    }

    proptest! {
        #[test]
        fn a_connection_token_decodes_to_the_same_connection(
            (worker, conn) in any::<u8>().prop_flat_map(|w| (Just(w), conn_of(w)))
        ) {
            let tokens = PollTokens::new(WorkerId(worker));
            let token = tokens.conn(conn).expect("fits on 64 bits");
            prop_assert_eq!(tokens.decode(token), Watched::Conn(conn));
        }

        #[test]
        fn another_workers_connection_has_no_token(
            (mine, conn) in (any::<u8>(), any::<u8>())
                .prop_filter("two workers", |(a, b)| a != b)
                .prop_flat_map(|(mine, theirs)| (Just(mine), conn_of(theirs)))
        ) {
            prop_assert_eq!(PollTokens::new(WorkerId(mine)).conn(conn), None);
        }

        #[test]
        fn a_udp_token_decodes_to_the_same_slot(slot in 0..UDP_SLOTS, worker in any::<u8>()) {
            let token = PollTokens::udp(UdpSlot(slot));
            prop_assert_eq!(
                PollTokens::new(WorkerId(worker)).decode(token),
                Watched::Udp(UdpSlot(slot))
            );
        }

        /// Any token at all, a stray one included, names one thing, and encoding that thing
        /// again gives the token back.
        #[test]
        fn every_token_decodes_to_one_thing_that_encodes_back(raw in any::<usize>(), worker in any::<u8>()) {
            let tokens = PollTokens::new(WorkerId(worker));
            let token = Token(raw);
            match tokens.decode(token) {
                Watched::Conn(conn) => {
                    prop_assert_eq!(conn.worker(), WorkerId(worker));
                    prop_assert_eq!(tokens.conn(conn), Some(token));
                }
                Watched::Udp(slot) => prop_assert_eq!(PollTokens::udp(slot), token),
                Watched::Other(t) => {
                    prop_assert_eq!(t, token);
                    prop_assert!(raw > CONN_LOCAL as usize && raw & !PAYLOAD != UDP_KIND);
                }
            }
        }
    }
}
