//! The requests a [`UserAgent`] receives: a new INVITE becomes an
//! [`UaEvent::IncomingCall`] for the application to answer ([`UserAgent::ringing`],
//! [`UserAgent::answer`], [`UserAgent::reject`]); CANCEL, BYE, INFO, OPTIONS, re-INVITE,
//! and the refusals a UAS owes by itself: 405 with Allow, 481 for an unknown dialog, 482
//! for a merged request (RFC 3261 8.2.2.2), 486 when `max_calls` calls are alive, 491/500
//! for overlapping re-INVITEs (14.2).

use std::net::SocketAddr;
use std::time::Instant;

use bytes::Bytes;

use super::call::{Call, CallState};
use super::{CallId, Owner, UaError, UaEvent, UserAgent, ALLOW};
use crate::sip::dialog::{new_tag, Dialog, DialogState};
use crate::sip::message::{Method, Request, Response};
use crate::sip::transaction::TransactionId;

/// Is `method` one we implement (ACK and CANCEL never reach the TU as requests)?
fn allowed(method: &Method) -> bool {
    matches!(
        method,
        Method::Invite
            | Method::Ack
            | Method::Cancel
            | Method::Bye
            | Method::Options
            | Method::Info
    )
}

impl UserAgent {
    /// Sends 180 Ringing for an incoming call not yet answered.
    pub fn ringing(&mut self, now: Instant, call: CallId) -> Result<(), UaError> {
        let c = self.live_call(call)?;
        let (Some((tx, invite)), CallState::Incoming) = (c.server_tx.clone(), c.state) else {
            return Err(UaError::InvalidState);
        };
        let tag = c.local_tag.clone();
        let mut resp = crate::sip::make_response(&invite, 180, "Ringing", Some(&tag));
        resp.headers
            .push_owned("Contact".into(), self.contact().to_string());
        self.respond(now, tx, resp);
        self.pump(now);
        Ok(())
    }

    /// Accepts with the SDP `sdp`: the 200 to an incoming INVITE (the call is then
    /// established; no ACK within 64*T1 ends it with a BYE), or to the peer's pending
    /// re-INVITE.
    pub fn answer(&mut self, now: Instant, call: CallId, sdp: Bytes) -> Result<(), UaError> {
        let c = self.live_call(call)?;
        let (tx, request) = if let Some(pending) = c.reinvite_in.take() {
            pending
        } else if c.state == CallState::Incoming {
            c.server_tx.take().ok_or(UaError::InvalidState)?
        } else {
            return Err(UaError::InvalidState);
        };
        let tag = c.local_tag.clone();
        c.state = CallState::Established;
        if let Some(d) = c.dialog.as_mut() {
            d.confirm();
        }
        let mut resp = crate::sip::make_response(&request, 200, "OK", Some(&tag));
        resp.headers
            .push_owned("Contact".into(), self.contact().to_string());
        resp.headers.push("Allow", ALLOW);
        if !sdp.is_empty() {
            resp.headers.push("Content-Type", "application/sdp");
        }
        resp.body = sdp;
        self.respond(now, tx, resp);
        self.pump(now);
        Ok(())
    }

    /// Refuses an incoming INVITE not yet answered with `status` (300-699: 486 Busy Here,
    /// 488 Not Acceptable Here, 603 Decline ...; the call is over and [`UaEvent::Ended`]
    /// queued), or the peer's pending re-INVITE (typically 488; the call goes on).
    pub fn reject(
        &mut self,
        now: Instant,
        call: CallId,
        status: u16,
        reason: &str,
    ) -> Result<(), UaError> {
        if !(300..=699).contains(&status) {
            return Err(UaError::BadStatus(status));
        }
        let c = self.live_call(call)?;
        let tag = c.local_tag.clone();
        if let Some((tx, request)) = c.reinvite_in.take() {
            let resp = crate::sip::make_response(&request, status, reason, Some(&tag));
            self.respond(now, tx, resp);
        } else if c.state == CallState::Incoming {
            let (tx, request) = c.server_tx.take().ok_or(UaError::InvalidState)?;
            let resp = crate::sip::make_response(&request, status, reason, Some(&tag));
            self.respond(now, tx, resp);
            self.finish(call, UaEvent::Ended { call });
        } else {
            return Err(UaError::InvalidState);
        }
        self.pump(now);
        Ok(())
    }

    /// A new request created server transaction `id`.
    pub(super) fn on_request(
        &mut self,
        now: Instant,
        id: TransactionId,
        req: Request,
        source: SocketAddr,
    ) {
        let to_tag = req
            .headers
            .to()
            .ok()
            .and_then(|t| t.tag().map(str::to_string));
        if !allowed(&req.method) {
            let mut resp = self.simple_response(&req, 405, "Method Not Allowed");
            resp.headers.push("Allow", ALLOW);
            self.respond(now, id, resp);
            return;
        }
        match (&req.method, to_tag) {
            (Method::Invite, None) => self.on_new_invite(now, id, req, source),
            (Method::Options, None) => {
                let resp = self.options_response(&req);
                self.respond(now, id, resp);
            }
            (_, None) => {
                let resp = self.simple_response(&req, 481, "Call/Transaction Does Not Exist");
                self.respond(now, id, resp);
            }
            (_, Some(tag)) => self.on_in_dialog(now, id, req, tag),
        }
    }

    fn options_response(&mut self, req: &Request) -> Response {
        let mut resp = self.simple_response(req, 200, "OK");
        resp.headers.push("Allow", ALLOW);
        resp.headers.push("Accept", "application/sdp");
        resp
    }

    fn on_new_invite(&mut self, now: Instant, id: TransactionId, req: Request, source: SocketAddr) {
        let h = &req.headers;
        let (Ok(call_id), Ok(from), Ok(to), Ok(cseq)) = (h.call_id(), h.from(), h.to(), h.cseq())
        else {
            let resp = self.simple_response(&req, 400, "Bad Request");
            self.respond(now, id, resp);
            return;
        };
        let key = (
            call_id.to_string(),
            from.tag().unwrap_or("").to_string(),
            cseq.seq,
        );
        if self.merge.contains_key(&key) {
            // Same request arriving by a second path (8.2.2.2).
            let resp = self.simple_response(&req, 482, "Loop Detected");
            self.respond(now, id, resp);
            return;
        }
        if self.calls.len() >= self.config.max_calls {
            self.stats.busy += 1;
            let resp = self.simple_response(&req, 486, "Busy Here");
            self.respond(now, id, resp);
            return;
        }
        let tag = new_tag(&mut self.rng);
        let dialog = match Dialog::uas(&req, &tag, self.contact(), DialogState::Early) {
            Ok(d) => d,
            Err(e) => {
                let (status, reason) = e.status();
                let resp = self.simple_response(&req, status, reason);
                self.respond(now, id, resp);
                return;
            }
        };
        let call = self.allocate_call();
        let mut c = Call::new(
            CallState::Incoming,
            call_id.to_string(),
            tag.clone(),
            source,
        );
        c.dialog = Some(dialog);
        c.merge_key = Some(key.clone());
        let offer = (!req.body.is_empty()).then(|| req.body.clone());
        let event = UaEvent::IncomingCall {
            call,
            from: from.clone(),
            to: to.clone(),
            offer,
        };
        c.server_tx = Some((id, req));
        self.dialogs.insert((c.sip_call_id.clone(), tag), call);
        self.merge.insert(key, call);
        self.owners.insert(id, Owner::ServerInvite(call));
        self.calls.insert(call, c);
        self.events.push_back(event);
    }

    /// A request naming a dialog (To tag present).
    fn on_in_dialog(&mut self, now: Instant, id: TransactionId, req: Request, tag: String) {
        let call_id = req.headers.call_id().unwrap_or("").to_string();
        let found = self.dialogs.get(&(call_id, tag)).copied();
        let checked = match found.and_then(|k| self.calls.get_mut(&k)) {
            None => None,
            Some(c) => Some(match c.dialog.as_mut() {
                Some(d) => d.on_request(&req).map(|()| (c.state, c.reported)),
                None => Err(crate::sip::DialogError::Mismatch),
            }),
        };
        let (call, state, reported) = match (found, checked) {
            (Some(call), Some(Ok((state, reported)))) => (call, state, reported),
            (_, Some(Err(e))) => {
                let (status, reason) = e.status();
                let resp = self.simple_response(&req, status, reason);
                self.respond(now, id, resp);
                return;
            }
            _ => {
                let resp = self.simple_response(&req, 481, "Call/Transaction Does Not Exist");
                self.respond(now, id, resp);
                return;
            }
        };
        match req.method {
            Method::Bye => {
                let resp = self.simple_response(&req, 200, "OK");
                self.respond(now, id, resp);
                let pending = self
                    .calls
                    .get_mut(&call)
                    .map(|c| (c.server_tx.take(), c.reinvite_in.take()));
                if let Some((unanswered, reinvite)) = pending {
                    for (tx, request) in unanswered.into_iter().chain(reinvite) {
                        let resp = self.simple_response(&request, 487, "Request Terminated");
                        self.respond(now, tx, resp);
                    }
                }
                self.finish(call, UaEvent::Ended { call });
            }
            Method::Invite => {
                let (out, inc) = self
                    .calls
                    .get(&call)
                    .map(|c| (c.reinvite_out.is_some(), c.reinvite_in.is_some()))
                    .unwrap_or((false, false));
                if out {
                    // Glare (14.2): both sides re-INVITE at once.
                    let resp = self.simple_response(&req, 491, "Request Pending");
                    self.respond(now, id, resp);
                } else if inc || state != CallState::Established {
                    let mut resp = self.simple_response(&req, 500, "Server Internal Error");
                    resp.headers.push("Retry-After", "1");
                    self.respond(now, id, resp);
                } else {
                    let offer = req.body.clone();
                    if let Some(c) = self.calls.get_mut(&call) {
                        c.reinvite_in = Some((id, req));
                    }
                    self.owners.insert(id, Owner::ServerInvite(call));
                    self.events.push_back(UaEvent::ReInvite { call, offer });
                }
            }
            Method::Info => {
                let content_type = req.headers.content_type().unwrap_or("").to_string();
                let body = req.body.clone();
                let resp = self.simple_response(&req, 200, "OK");
                self.respond(now, id, resp);
                if !reported {
                    self.events.push_back(UaEvent::Info {
                        call,
                        content_type,
                        body,
                    });
                }
            }
            _ => {
                let resp = self.options_response(&req);
                self.respond(now, id, resp);
            }
        }
    }

    /// A CANCEL: 200 to it and 487 to the INVITE if still unanswered (9.2), else 481.
    pub(super) fn on_cancel(
        &mut self,
        now: Instant,
        id: TransactionId,
        invite: Option<TransactionId>,
        req: Request,
    ) {
        let owner = invite.and_then(|i| self.owners.get(&i).copied());
        let Some(Owner::ServerInvite(call)) = owner else {
            let resp = self.simple_response(&req, 481, "Call/Transaction Does Not Exist");
            self.respond(now, id, resp);
            return;
        };
        let resp = self.simple_response(&req, 200, "OK");
        self.respond(now, id, resp);
        let Some(c) = self.calls.get_mut(&call) else {
            return;
        };
        let tag = c.local_tag.clone();
        if let Some((tx, request)) = c.server_tx.take_if(|(t, _)| Some(*t) == invite) {
            let resp = crate::sip::make_response(&request, 487, "Request Terminated", Some(&tag));
            self.respond(now, tx, resp);
            self.finish(call, UaEvent::Cancelled { call });
        } else if let Some((tx, request)) = c.reinvite_in.take_if(|(t, _)| Some(*t) == invite) {
            let resp = crate::sip::make_response(&request, 487, "Request Terminated", None);
            self.respond(now, tx, resp);
        }
    }

    /// The ACK for a 2xx we sent: nothing more to do (the layer stopped retransmitting).
    pub(super) fn on_ack(&mut self, _invite: TransactionId) {}

    /// Our 2xx was never ACKed (13.3.1.4): BYE and end the call.
    pub(super) fn on_no_ack(&mut self, now: Instant, invite: TransactionId) {
        if let Some(Owner::ServerInvite(call)) = self.owners.get(&invite).copied() {
            if self.calls.contains_key(&call) {
                self.send_bye(now, call);
                self.finish(call, UaEvent::Ended { call });
            }
        }
    }
}
