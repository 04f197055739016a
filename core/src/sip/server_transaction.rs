//! The two server transaction machines of RFC 3261 17.2, as amended by RFC 6026:
//! [`InviteServerTransaction`] (RFC 6026 figure 7: Proceeding, Completed, Confirmed and the
//! new Accepted state) and [`NonInviteServerTransaction`] (figure 8).
//!
//! The INVITE server transaction also carries the UAS core's duty of retransmitting a 2xx
//! until the ACK arrives (RFC 3261 13.3.1.4: T1, 2T1, ... capped at T2, for 64*T1), because
//! its lifetime in Accepted (Timer L) is exactly that window: one timer heap, one place.

use std::time::{Duration, Instant};

use bytes::Bytes;

use super::dialog::make_response;
use super::message::{Request, Response, SipMessage};
use super::timers::{Armed, TimerKind};
use super::transaction::{Effects, Next, TransactionEvent, TransactionState, TxError};
use super::transport::{Destination, Transport};

/// RFC 3261 17.2.1 / RFC 6026 8.5 server transaction for INVITE.
#[derive(Debug)]
pub(crate) struct InviteServerTransaction {
    state: TransactionState,
    /// The INVITE, kept to build 100 Trying if the TU is slow.
    invite: Request,
    transport: Transport,
    destination: Destination,
    /// The most recent response sent, re-sent on INVITE retransmissions and timers G/2xx.
    last: Option<Bytes>,
    /// Current Timer G or 2xx retransmission interval.
    interval: Duration,
    /// The ACK for our 2xx has arrived.
    acked: bool,
    armed: Armed,
}

impl InviteServerTransaction {
    /// A new INVITE arrived: Proceeding, with the 200 ms "send 100 Trying ourselves" timer.
    pub(crate) fn start(
        fx: &mut Effects<'_>,
        invite: Request,
        transport: Transport,
        destination: Destination,
    ) -> Self {
        let mut t = InviteServerTransaction {
            state: TransactionState::Proceeding,
            invite,
            transport,
            destination,
            last: None,
            interval: fx.timers.t1,
            acked: false,
            armed: Armed::default(),
        };
        let delay = fx.timers.trying_delay;
        fx.arm(&mut t.armed, TimerKind::Trying, delay);
        t
    }

    pub(crate) fn state(&self) -> TransactionState {
        self.state
    }

    pub(crate) fn armed(&self) -> &Armed {
        &self.armed
    }

    /// A retransmission of the INVITE (17.2.1): re-send the most recent response, except in
    /// Accepted (RFC 6026: absorbed; the 2xx retransmission timer covers it) and Confirmed.
    pub(crate) fn on_invite(&mut self, fx: &mut Effects<'_>) -> Next {
        if matches!(
            self.state,
            TransactionState::Proceeding | TransactionState::Completed
        ) {
            if let Some(last) = &self.last {
                fx.send(self.transport, &self.destination, last);
            }
        }
        Next::Keep
    }

    /// An ACK matched this transaction.
    pub(crate) fn on_ack(&mut self, fx: &mut Effects<'_>, ack: Request) -> Next {
        match self.state {
            TransactionState::Completed => {
                self.state = TransactionState::Confirmed;
                self.armed.clear(TimerKind::G);
                self.armed.clear(TimerKind::H);
                if self.transport.is_reliable() {
                    return Next::Terminate;
                }
                let i = fx.timers.t4;
                fx.arm(&mut self.armed, TimerKind::I, i);
                Next::Keep
            }
            // RFC 6026 8.5: ACKs in Accepted go to the TU; the first stops 2xx retransmits.
            TransactionState::Accepted => {
                self.acked = true;
                self.armed.clear(TimerKind::TwoXx);
                fx.emit(TransactionEvent::AckFor2xx {
                    invite: fx.id,
                    request: ack,
                });
                Next::Keep
            }
            _ => Next::Keep,
        }
    }

    /// The ACK for our 2xx was matched by dialog rather than by branch (the usual case: it is
    /// a new transaction with its own branch).
    pub(crate) fn is_awaiting_2xx_ack(&self) -> bool {
        self.state == TransactionState::Accepted
    }

    /// The TU sends a response.
    pub(crate) fn send_response(
        &mut self,
        fx: &mut Effects<'_>,
        response: Response,
    ) -> Result<Next, TxError> {
        use TransactionState::*;
        let status = response.status;
        match (self.state, status) {
            (Proceeding, 100..=199) => {
                self.armed.clear(TimerKind::Trying);
                self.transmit(fx, response);
            }
            (Proceeding, 200..=299) => {
                self.armed.clear(TimerKind::Trying);
                self.transmit(fx, response);
                self.state = Accepted;
                let (t1, timeout) = (fx.timers.t1, fx.timers.timeout());
                self.interval = t1;
                // 13.3.1.4: retransmit "independent of whatever transport": a reliable
                // first hop does not make the path to the UAC reliable.
                fx.arm(&mut self.armed, TimerKind::TwoXx, t1);
                fx.arm(&mut self.armed, TimerKind::L, timeout);
            }
            // RFC 6026: a 2xx the TU passes down in Accepted goes out.
            (Accepted, 200..=299) => self.transmit(fx, response),
            (Proceeding, 300..=699) => {
                self.armed.clear(TimerKind::Trying);
                self.transmit(fx, response);
                self.state = Completed;
                let (t1, timeout) = (fx.timers.t1, fx.timers.timeout());
                if !self.transport.is_reliable() {
                    self.interval = t1;
                    fx.arm(&mut self.armed, TimerKind::G, t1);
                }
                fx.arm(&mut self.armed, TimerKind::H, timeout);
            }
            _ => return Err(TxError::InvalidState),
        }
        Ok(Next::Keep)
    }

    fn transmit(&mut self, fx: &mut Effects<'_>, response: Response) {
        let bytes = SipMessage::Response(response).to_bytes();
        fx.send(self.transport, &self.destination, &bytes);
        self.last = Some(bytes);
    }

    /// A heap entry for this transaction popped; it only counts if still armed for `at`.
    pub(crate) fn on_timer(&mut self, fx: &mut Effects<'_>, kind: TimerKind, at: Instant) -> Next {
        if !self.armed.take(kind, at) {
            return Next::Keep;
        }
        match kind {
            TimerKind::Trying => {
                if self.last.is_none() {
                    let trying = make_response(&self.invite, 100, "Trying", None);
                    self.transmit(fx, trying);
                }
                Next::Keep
            }
            TimerKind::G | TimerKind::TwoXx => {
                if let Some(last) = &self.last {
                    fx.send(self.transport, &self.destination, last);
                }
                self.interval = self.interval.saturating_mul(2).min(fx.timers.t2);
                let next = self.interval;
                fx.arm(&mut self.armed, kind, next);
                Next::Keep
            }
            TimerKind::H => {
                fx.emit(TransactionEvent::Timeout { id: fx.id });
                Next::Terminate
            }
            TimerKind::I => Next::Terminate,
            TimerKind::L => {
                if !self.acked {
                    fx.emit(TransactionEvent::NoAck { invite: fx.id });
                }
                Next::Terminate
            }
            _ => Next::Keep,
        }
    }
}

/// RFC 3261 17.2.2 server transaction for any method but INVITE and ACK.
#[derive(Debug)]
pub(crate) struct NonInviteServerTransaction {
    state: TransactionState,
    transport: Transport,
    destination: Destination,
    last: Option<Bytes>,
    armed: Armed,
}

impl NonInviteServerTransaction {
    /// A new request arrived: Trying.
    pub(crate) fn start(transport: Transport, destination: Destination) -> Self {
        NonInviteServerTransaction {
            state: TransactionState::Trying,
            transport,
            destination,
            last: None,
            armed: Armed::default(),
        }
    }

    pub(crate) fn state(&self) -> TransactionState {
        self.state
    }

    pub(crate) fn armed(&self) -> &Armed {
        &self.armed
    }

    /// A retransmission of the request: absorbed in Trying, answered with the last response
    /// in Proceeding and Completed.
    pub(crate) fn on_request(&mut self, fx: &mut Effects<'_>) -> Next {
        if let Some(last) = &self.last {
            fx.send(self.transport, &self.destination, last);
        }
        Next::Keep
    }

    /// The TU sends a response.
    pub(crate) fn send_response(
        &mut self,
        fx: &mut Effects<'_>,
        response: Response,
    ) -> Result<Next, TxError> {
        if self.state == TransactionState::Completed {
            return Err(TxError::InvalidState);
        }
        let final_ = response.status >= 200;
        let bytes = SipMessage::Response(response).to_bytes();
        fx.send(self.transport, &self.destination, &bytes);
        self.last = Some(bytes);
        if !final_ {
            self.state = TransactionState::Proceeding;
            return Ok(Next::Keep);
        }
        self.state = TransactionState::Completed;
        if self.transport.is_reliable() {
            return Ok(Next::Terminate);
        }
        let j = fx.timers.timeout();
        fx.arm(&mut self.armed, TimerKind::J, j);
        Ok(Next::Keep)
    }

    /// A heap entry for this transaction popped; it only counts if still armed for `at`.
    pub(crate) fn on_timer(&mut self, kind: TimerKind, at: Instant) -> Next {
        if self.armed.take(kind, at) && kind == TimerKind::J {
            Next::Terminate
        } else {
            Next::Keep
        }
    }
}
