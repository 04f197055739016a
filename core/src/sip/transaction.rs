//! The vocabulary shared by the four transaction machines and the [`TransactionLayer`]
//! (RFC 3261 17): transaction ids, what goes out ([`Transmit`]), what the TU hears
//! ([`TransactionEvent`]), states, errors, and the per-call context ([`Effects`]) through
//! which a machine sends bytes, arms timers and raises events.
//!
//! [`TransactionLayer`]: super::TransactionLayer

use std::collections::VecDeque;
use std::fmt;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use bytes::Bytes;

use super::message::{Request, Response};
use super::timers::{Armed, TimerConfig, TimerHeap, TimerKind};
use super::transport::{Destination, Transport};

/// Identifies one transaction for as long as the layer lives; ids are never reused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct TransactionId(pub u64);

impl fmt::Display for TransactionId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "tx{}", self.0)
    }
}

/// Bytes for the driver to send.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Transmit {
    /// UDP datagram or TCP connection.
    pub transport: Transport,
    /// Where to (for TCP, the connection's peer address).
    pub destination: Destination,
    /// One whole SIP message.
    pub bytes: Bytes,
    /// The transaction that sent it (`None` for stateless sends), so that a send failure can
    /// be reported with [`TransactionLayer::handle_transport_error`].
    ///
    /// [`TransactionLayer::handle_transport_error`]: super::TransactionLayer::handle_transport_error
    pub transaction: Option<TransactionId>,
}

/// What the transaction layer tells the transaction user (the UA core).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TransactionEvent {
    /// A new request created server transaction `id`; answer it with `send_response`.
    Request {
        /// The new server transaction.
        id: TransactionId,
        /// The request, its top Via completed with `received`/`rport`.
        request: Request,
        /// Transport it arrived on.
        transport: Transport,
        /// Its source address.
        source: SocketAddr,
    },
    /// A CANCEL created server transaction `id` (answer it: 200, or 481 when `invite` is
    /// `None`); `invite` is the INVITE server transaction it cancels, which the TU answers
    /// with 487 if it has not sent a final response yet (RFC 3261 9.2).
    Cancel {
        /// The CANCEL's own (non-INVITE) server transaction.
        id: TransactionId,
        /// The INVITE server transaction it matches, if any.
        invite: Option<TransactionId>,
        /// The CANCEL request.
        request: Request,
    },
    /// A response for client transaction `id`: provisional, final, or a 2xx retransmission
    /// (or a 2xx from another fork) while the INVITE is Accepted.
    Response {
        /// The client transaction.
        id: TransactionId,
        /// The response.
        response: Response,
    },
    /// The ACK for a 2xx that INVITE server transaction `invite` sent: the dialog is
    /// confirmed. 2xx retransmissions stop at the first one; later copies are reported too.
    AckFor2xx {
        /// The INVITE server transaction.
        invite: TransactionId,
        /// The ACK.
        request: Request,
    },
    /// An ACK that matched no transaction and no 2xx (RFC 6026: passed to the TU).
    StrayAck {
        /// The ACK.
        request: Request,
        /// Its source address.
        source: SocketAddr,
    },
    /// The 2xx to `invite` was retransmitted for 64*T1 without an ACK (RFC 3261 13.3.1.4):
    /// the UA should send BYE.
    NoAck {
        /// The INVITE server transaction.
        invite: TransactionId,
    },
    /// Timer B, F or H fired (or the Proceeding bound): no (final) response / no ACK.
    Timeout {
        /// The transaction.
        id: TransactionId,
    },
    /// The driver reported that a send for transaction `id` failed; it is terminated.
    TransportError {
        /// The transaction.
        id: TransactionId,
    },
    /// Transaction `id` is gone; its id will never appear again.
    Terminated {
        /// The transaction.
        id: TransactionId,
    },
}

/// The state of a transaction (RFC 3261 figures 5-8, RFC 6026 figures 5 and 7).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TransactionState {
    /// INVITE client: request sent, nothing heard.
    Calling,
    /// Non-INVITE client or server: request sent / received, no response yet.
    Trying,
    /// A provisional response has been received / sent.
    Proceeding,
    /// RFC 6026: a 2xx to INVITE has been received / sent.
    Accepted,
    /// A final (non-2xx for INVITE) response has been received / sent.
    Completed,
    /// INVITE server: the ACK for the non-2xx final arrived.
    Confirmed,
}

/// Misuse of the layer's API (never caused by a peer).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum TxError {
    /// No live transaction has this id.
    UnknownTransaction,
    /// The operation needs another kind of transaction (e.g. a response on a client one).
    WrongKind,
    /// Not allowed in the transaction's current state (a second final response, a CANCEL
    /// before any provisional response, ...).
    InvalidState,
    /// The message lacks or has an unparseable mandatory header.
    BadMessage(&'static str),
    /// The method is wrong for this call (ACK through `send_request`, say).
    WrongMethod,
    /// The layer already holds its maximum number of transactions.
    TooManyTransactions,
}

impl fmt::Display for TxError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TxError::UnknownTransaction => f.write_str("unknown transaction"),
            TxError::WrongKind => f.write_str("wrong kind of transaction"),
            TxError::InvalidState => f.write_str("not allowed in this transaction state"),
            TxError::BadMessage(h) => write!(f, "missing or bad {h} header"),
            TxError::WrongMethod => f.write_str("wrong method for this call"),
            TxError::TooManyTransactions => f.write_str("too many transactions"),
        }
    }
}

impl std::error::Error for TxError {}

/// Whether a machine lives on after handling an input.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Next {
    Keep,
    Terminate,
}

/// Everything a machine may touch while handling one input: the clock reading, the timer
/// heap and the output queues of the layer.
pub(crate) struct Effects<'a> {
    pub(crate) id: TransactionId,
    pub(crate) now: Instant,
    pub(crate) timers: &'a TimerConfig,
    pub(crate) heap: &'a mut TimerHeap,
    pub(crate) transmits: &'a mut VecDeque<Transmit>,
    pub(crate) events: &'a mut VecDeque<TransactionEvent>,
}

impl Effects<'_> {
    /// Arms `kind` to fire `after` from now, replacing any earlier deadline for it.
    pub(crate) fn arm(&mut self, armed: &mut Armed, kind: TimerKind, after: Duration) {
        let at = self.now + after;
        self.heap.push(at, self.id, kind);
        armed.set(kind, at);
    }

    /// Queues bytes for the driver.
    pub(crate) fn send(&mut self, transport: Transport, destination: &Destination, bytes: &Bytes) {
        self.transmits.push_back(Transmit {
            transport,
            destination: destination.clone(),
            bytes: bytes.clone(),
            transaction: Some(self.id),
        });
    }

    /// Raises an event for the TU.
    pub(crate) fn emit(&mut self, event: TransactionEvent) {
        self.events.push_back(event);
    }
}
