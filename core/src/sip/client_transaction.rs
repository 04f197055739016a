//! The two client transaction machines of RFC 3261 17.1, as amended by RFC 6026:
//! [`InviteClientTransaction`] (figure 5 / RFC 6026 figure 5) and
//! [`NonInviteClientTransaction`] (figure 6), including the ACK the INVITE client
//! transaction generates for a non-2xx final response (17.1.1.3).
//!
//! Both are driven by the [`TransactionLayer`](super::TransactionLayer), which routes
//! responses and timer expiries to them; they never see a socket or a clock.

use std::time::Duration;

use bytes::Bytes;

use super::dialog::cancel_for;
use super::headers::{same_header, Headers};
use super::message::{Method, Request, Response, SipMessage};
use super::timers::{Armed, TimerKind};
use super::transaction::{Effects, Next, TransactionEvent, TransactionState, TxError};
use super::transport::{Destination, Transport};

/// RFC 3261 17.1.1 client transaction for INVITE.
#[derive(Debug)]
pub(crate) struct InviteClientTransaction {
    state: TransactionState,
    /// The INVITE as sent (its top Via is ours), kept for the ACK and for CANCEL.
    invite: SipMessage,
    bytes: Bytes,
    transport: Transport,
    destination: Destination,
    /// Current Timer A interval.
    interval: Duration,
    armed: Armed,
    /// The ACK sent for the non-2xx final, re-sent on each retransmission of that final.
    ack: Option<Bytes>,
}

impl InviteClientTransaction {
    /// Sends the INVITE and enters Calling: Timer A (UDP only) at T1, Timer B at 64*T1.
    pub(crate) fn start(
        fx: &mut Effects<'_>,
        invite: Request,
        transport: Transport,
        destination: Destination,
    ) -> Self {
        let invite = SipMessage::Request(invite);
        let bytes = invite.to_bytes();
        let mut t = InviteClientTransaction {
            state: TransactionState::Calling,
            invite,
            bytes,
            transport,
            destination,
            interval: fx.timers.t1,
            armed: Armed::default(),
            ack: None,
        };
        fx.send(t.transport, &t.destination, &t.bytes);
        if !transport.is_reliable() {
            fx.arm(&mut t.armed, TimerKind::A, t.interval);
        }
        let timeout = fx.timers.timeout();
        fx.arm(&mut t.armed, TimerKind::B, timeout);
        t
    }

    pub(crate) fn state(&self) -> TransactionState {
        self.state
    }

    pub(crate) fn armed(&self) -> &Armed {
        &self.armed
    }

    /// The INVITE as sent.
    pub(crate) fn request(&self) -> &Request {
        match &self.invite {
            SipMessage::Request(r) => r,
            SipMessage::Response(_) => unreachable!("an INVITE client transaction holds a request"),
        }
    }

    pub(crate) fn transport(&self) -> Transport {
        self.transport
    }

    pub(crate) fn destination(&self) -> &Destination {
        &self.destination
    }

    /// A response matched this transaction (17.1.1.2).
    pub(crate) fn on_response(&mut self, fx: &mut Effects<'_>, response: Response) -> Next {
        use TransactionState::*;
        let status = response.status;
        match (self.state, status) {
            (Calling | Proceeding, 100..=199) => {
                if self.state == Calling {
                    // A provisional response stops retransmissions and Timer B; bound the
                    // wait for a final response instead.
                    self.armed.clear(TimerKind::A);
                    self.armed.clear(TimerKind::B);
                    let bound = fx.timers.max_proceeding;
                    fx.arm(&mut self.armed, TimerKind::Proceeding, bound);
                    self.state = Proceeding;
                }
                fx.emit(TransactionEvent::Response {
                    id: fx.id,
                    response,
                });
                Next::Keep
            }
            (Calling | Proceeding, 200..=299) => {
                self.stop_request_timers();
                self.state = Accepted;
                let m = fx.timers.timeout();
                fx.arm(&mut self.armed, TimerKind::M, m);
                fx.emit(TransactionEvent::Response {
                    id: fx.id,
                    response,
                });
                Next::Keep
            }
            // RFC 6026 7.2: further 2xx (retransmissions, other forks) go to the TU.
            (Accepted, 200..=299) => {
                fx.emit(TransactionEvent::Response {
                    id: fx.id,
                    response,
                });
                Next::Keep
            }
            (Calling | Proceeding, 300..=699) => {
                self.stop_request_timers();
                self.state = Completed;
                let ack = SipMessage::Request(build_ack(self.request(), &response)).to_bytes();
                fx.send(self.transport, &self.destination, &ack);
                self.ack = Some(ack);
                fx.emit(TransactionEvent::Response {
                    id: fx.id,
                    response,
                });
                if self.transport.is_reliable() {
                    return Next::Terminate;
                }
                let d = fx.timers.timer_d;
                fx.arm(&mut self.armed, TimerKind::D, d);
                Next::Keep
            }
            // A retransmitted final: our ACK was lost, send it again; the TU heard it once.
            (Completed, 300..=699) => {
                if let Some(ack) = &self.ack {
                    fx.send(self.transport, &self.destination, ack);
                }
                Next::Keep
            }
            _ => Next::Keep,
        }
    }

    fn stop_request_timers(&mut self) {
        self.armed.clear(TimerKind::A);
        self.armed.clear(TimerKind::B);
        self.armed.clear(TimerKind::Proceeding);
    }

    /// A heap entry for this transaction popped; it only counts if still armed for `at`.
    pub(crate) fn on_timer(
        &mut self,
        fx: &mut Effects<'_>,
        kind: TimerKind,
        at: std::time::Instant,
    ) -> Next {
        if !self.armed.take(kind, at) {
            return Next::Keep;
        }
        match kind {
            TimerKind::A => {
                fx.send(self.transport, &self.destination, &self.bytes);
                // Timer A doubles without a cap; Timer B ends it.
                self.interval = self.interval.saturating_mul(2);
                let next = self.interval;
                fx.arm(&mut self.armed, TimerKind::A, next);
                Next::Keep
            }
            TimerKind::B | TimerKind::Proceeding => {
                fx.emit(TransactionEvent::Timeout { id: fx.id });
                Next::Terminate
            }
            TimerKind::D | TimerKind::M => Next::Terminate,
            _ => Next::Keep,
        }
    }

    /// Builds the CANCEL for this INVITE (RFC 3261 9.1): same Request-URI, Call-ID, To, From,
    /// CSeq number and top Via (so the same branch), Route copied, method CANCEL. Only once a
    /// provisional response has arrived, as 9.1 requires.
    pub(crate) fn build_cancel(&self) -> Result<Request, TxError> {
        if self.state != TransactionState::Proceeding {
            return Err(TxError::InvalidState);
        }
        cancel_for(self.request()).map_err(|_| TxError::BadMessage("INVITE"))
    }
}

/// The ACK for a non-2xx final response (RFC 3261 17.1.1.3): Request-URI, Call-ID, From and
/// CSeq number of the INVITE, To from the response (with its tag), the INVITE's top Via only
/// (so the same branch), and its Route set.
fn build_ack(invite: &Request, response: &Response) -> Request {
    let mut h = Headers::new();
    copy_top_via(&invite.headers, &mut h);
    h.push("Max-Forwards", "70");
    copy_all(&invite.headers, &mut h, "Route");
    copy_one(&invite.headers, &mut h, "From");
    match response.headers.get("To") {
        Some(to) => h.push("To", to),
        None => copy_one(&invite.headers, &mut h, "To"),
    }
    copy_one(&invite.headers, &mut h, "Call-ID");
    let seq = invite.headers.cseq().map(|c| c.seq).unwrap_or(0);
    h.push_owned("CSeq".into(), format!("{seq} ACK"));
    Request {
        method: Method::Ack,
        uri: invite.uri.clone(),
        version: "SIP/2.0".into(),
        headers: h,
        body: Bytes::new(),
        raw: None,
    }
}

fn copy_top_via(from: &Headers, to: &mut Headers) {
    if let Ok(v) = from.top_via() {
        to.push_owned("Via".into(), v.to_string());
    }
}

fn copy_one(from: &Headers, to: &mut Headers, name: &str) {
    if let Some(v) = from.get(name) {
        to.push(name, v);
    }
}

fn copy_all(from: &Headers, to: &mut Headers, name: &str) {
    for h in from.iter().filter(|h| same_header(&h.name, name)) {
        to.push(name, &h.value);
    }
}

/// RFC 3261 17.1.2 client transaction for any method but INVITE and ACK.
#[derive(Debug)]
pub(crate) struct NonInviteClientTransaction {
    state: TransactionState,
    bytes: Bytes,
    transport: Transport,
    destination: Destination,
    /// Current Timer E interval.
    interval: Duration,
    armed: Armed,
}

impl NonInviteClientTransaction {
    /// Sends the request and enters Trying: Timer E (UDP only) at T1, Timer F at 64*T1.
    pub(crate) fn start(
        fx: &mut Effects<'_>,
        request: Request,
        transport: Transport,
        destination: Destination,
    ) -> Self {
        let bytes = SipMessage::Request(request).to_bytes();
        let mut t = NonInviteClientTransaction {
            state: TransactionState::Trying,
            bytes,
            transport,
            destination,
            interval: fx.timers.t1,
            armed: Armed::default(),
        };
        fx.send(t.transport, &t.destination, &t.bytes);
        if !transport.is_reliable() {
            fx.arm(&mut t.armed, TimerKind::E, t.interval);
        }
        let timeout = fx.timers.timeout();
        fx.arm(&mut t.armed, TimerKind::F, timeout);
        t
    }

    pub(crate) fn state(&self) -> TransactionState {
        self.state
    }

    pub(crate) fn armed(&self) -> &Armed {
        &self.armed
    }

    /// A response matched this transaction (17.1.2.2).
    pub(crate) fn on_response(&mut self, fx: &mut Effects<'_>, response: Response) -> Next {
        use TransactionState::*;
        match (self.state, response.status) {
            (Trying | Proceeding, 100..=199) => {
                self.state = Proceeding;
                fx.emit(TransactionEvent::Response {
                    id: fx.id,
                    response,
                });
                Next::Keep
            }
            (Trying | Proceeding, 200..=699) => {
                self.state = Completed;
                self.armed.clear(TimerKind::E);
                self.armed.clear(TimerKind::F);
                fx.emit(TransactionEvent::Response {
                    id: fx.id,
                    response,
                });
                if self.transport.is_reliable() {
                    return Next::Terminate;
                }
                let k = fx.timers.t4;
                fx.arm(&mut self.armed, TimerKind::K, k);
                Next::Keep
            }
            // Completed: retransmitted finals are absorbed.
            _ => Next::Keep,
        }
    }

    /// A heap entry for this transaction popped; it only counts if still armed for `at`.
    pub(crate) fn on_timer(
        &mut self,
        fx: &mut Effects<'_>,
        kind: TimerKind,
        at: std::time::Instant,
    ) -> Next {
        if !self.armed.take(kind, at) {
            return Next::Keep;
        }
        match kind {
            TimerKind::E => {
                fx.send(self.transport, &self.destination, &self.bytes);
                // Trying: double up to T2. Proceeding: every T2.
                self.interval = if self.state == TransactionState::Proceeding {
                    fx.timers.t2
                } else {
                    self.interval.saturating_mul(2).min(fx.timers.t2)
                };
                let next = self.interval;
                fx.arm(&mut self.armed, TimerKind::E, next);
                Next::Keep
            }
            TimerKind::F => {
                fx.emit(TransactionEvent::Timeout { id: fx.id });
                Next::Terminate
            }
            TimerKind::K => Next::Terminate,
            _ => Next::Keep,
        }
    }
}
