//! The requests a [`UserAgent`] sends for calls and what their responses do: INVITE (with
//! one Digest retry, ACK for 2xx, CANCEL after a provisional), re-INVITE, INFO and BYE, and
//! [`UserAgent::hangup`], which picks among CANCEL, a rejection and BYE.

use std::net::SocketAddr;
use std::time::Instant;

use bytes::Bytes;

use super::call::{Call, CallState};
use super::{uri_addr, CallId, Owner, UaError, UaEvent, UserAgent};
use crate::sip::dialog::{new_request, Dialog, NewRequest};
use crate::sip::digest::{apply_credentials, AuthAction, DigestClient};
use crate::sip::message::{Method, Request, Response};
use crate::sip::name_addr::NameAddr;
use crate::sip::transaction::TransactionId;
use crate::sip::uri::Uri;

impl UserAgent {
    /// Calls `target` with the SDP `offer`: an INVITE sent to the outbound proxy if one is
    /// configured, else to the target's address. Progress comes as [`UaEvent::Ringing`],
    /// then [`UaEvent::Answered`] (the ACK is sent for you) or [`UaEvent::Rejected`]
    /// (408 when nothing answers). A 401/407 is answered once with the configured
    /// credentials.
    ///
    /// Errors: [`UaError::TooManyCalls`], [`UaError::Unroutable`] (a host name and no
    /// proxy), [`UaError::Transaction`].
    pub fn invite(&mut self, now: Instant, target: Uri, offer: Bytes) -> Result<CallId, UaError> {
        if self.calls.len() >= self.config.max_calls {
            return Err(UaError::TooManyCalls);
        }
        let destination = self
            .config
            .outbound_proxy
            .or_else(|| uri_addr(&target))
            .ok_or(UaError::Unroutable)?;
        let to = NameAddr::new(target.clone());
        let mut spec = NewRequest::new(Method::Invite, target, self.our_from(), to, 1);
        spec.contact = Some(self.contact());
        spec.route = self.proxy_route().into_iter().collect();
        let sent_by = self.sent_by();
        let mut req = new_request(spec, &sent_by, &mut self.rng);
        req.headers.push("Allow", super::ALLOW);
        req.headers
            .push("User-Agent", &self.config.user_agent.clone());
        if !offer.is_empty() {
            req.headers.push("Content-Type", "application/sdp");
        }
        req.body = offer;
        let sip_call_id = req.headers.call_id().unwrap_or_default().to_string();
        let local_tag = req
            .headers
            .from()
            .ok()
            .and_then(|f| f.tag().map(str::to_string))
            .unwrap_or_default();
        let id = self.allocate_call();
        let tx = self.start(now, req.clone(), destination, Owner::Invite(id))?;
        let mut call = Call::new(CallState::Calling, sip_call_id, local_tag, destination);
        call.invite = Some(req);
        call.invite_tx = Some(tx);
        if self.config.credentials.is_some() {
            call.digest = Some(DigestClient::new(self.store.clone()));
        }
        self.dialogs
            .insert((call.sip_call_id.clone(), call.local_tag.clone()), id);
        self.calls.insert(id, call);
        self.pump(now);
        Ok(id)
    }

    /// Ends `call`, whatever its state: an outgoing call not yet answered is cancelled
    /// (CANCEL once a provisional response has arrived, as RFC 3261 9.1 requires; a 2xx
    /// that wins the race is ACKed and BYEd), an incoming one not yet answered is declined
    /// with 603, an established one gets a BYE. [`UaEvent::Ended`] is queued at once.
    pub fn hangup(&mut self, now: Instant, call: CallId) -> Result<(), UaError> {
        let state = self.live_call(call)?.state;
        match state {
            CallState::Calling => {
                // 9.1: no CANCEL before a provisional; do it when the first one arrives.
                if let Some(c) = self.calls.get_mut(&call) {
                    c.hangup_pending = true;
                }
                self.report_end(call);
            }
            CallState::Proceeding => {
                if let Some(c) = self.calls.get_mut(&call) {
                    c.hangup_pending = true;
                }
                self.send_cancel(now, call);
                self.report_end(call);
            }
            CallState::Incoming => {
                self.reject(now, call, 603, "Decline")?;
            }
            CallState::Established => {
                self.send_bye(now, call);
                self.finish(call, UaEvent::Ended { call });
            }
        }
        self.pump(now);
        Ok(())
    }

    /// Sends a re-INVITE with `offer` on an established call (hold: an offer from
    /// [`reoffer`](crate::sdp::offer_answer::reoffer) with `hold = true`; resume: `false`).
    /// The answer comes as [`UaEvent::Answered`], a refusal as [`UaEvent::ReInviteFailed`].
    ///
    /// Errors: [`UaError::InvalidState`] before the call is established or while another
    /// re-INVITE is pending either way.
    pub fn reinvite(&mut self, now: Instant, call: CallId, offer: Bytes) -> Result<(), UaError> {
        let c = self.live_call(call)?;
        if c.state != CallState::Established || c.reinvite_out.is_some() || c.reinvite_in.is_some()
        {
            return Err(UaError::InvalidState);
        }
        let mut dialog = c.dialog.take().ok_or(UaError::InvalidState)?;
        let peer = c.peer;
        let built = self.dialog_request(&mut dialog, Method::Invite);
        let destination = self.dialog_destination(&dialog, peer);
        if let Some(c) = self.calls.get_mut(&call) {
            c.dialog = Some(dialog);
        }
        let mut req = built?;
        req.headers.push("Allow", super::ALLOW);
        req.headers.push("Content-Type", "application/sdp");
        req.body = offer;
        let tx = self.start(now, req, destination, Owner::Reinvite(call))?;
        if let Some(c) = self.calls.get_mut(&call) {
            c.reinvite_out = Some(tx);
        }
        self.pump(now);
        Ok(())
    }

    /// Sends INFO with `body` of `content_type` (DTMF relay: `application/dtmf-relay`).
    /// A 481 or 408 to it ends the call.
    pub fn send_info(
        &mut self,
        now: Instant,
        call: CallId,
        content_type: &str,
        body: Bytes,
    ) -> Result<(), UaError> {
        let c = self.live_call(call)?;
        if c.state != CallState::Established {
            return Err(UaError::InvalidState);
        }
        let mut dialog = c.dialog.take().ok_or(UaError::InvalidState)?;
        let peer = c.peer;
        let built = self.dialog_request(&mut dialog, Method::Info);
        let destination = self.dialog_destination(&dialog, peer);
        if let Some(c) = self.calls.get_mut(&call) {
            c.dialog = Some(dialog);
        }
        let mut req = built?;
        if !body.is_empty() {
            req.headers.push("Content-Type", content_type);
        }
        req.body = body;
        self.start(now, req, destination, Owner::Info(call))?;
        self.pump(now);
        Ok(())
    }

    /// Sends BYE on `call`'s dialog (errors are ignored: the call is ending anyway).
    pub(super) fn send_bye(&mut self, now: Instant, call: CallId) {
        let Some(c) = self.calls.get_mut(&call) else {
            return;
        };
        let Some(mut dialog) = c.dialog.take() else {
            return;
        };
        let peer = c.peer;
        let built = self.dialog_request(&mut dialog, Method::Bye);
        let destination = self.dialog_destination(&dialog, peer);
        dialog.terminate();
        if let Some(c) = self.calls.get_mut(&call) {
            c.dialog = Some(dialog);
        }
        if let Ok(req) = built {
            let _ = self.start(now, req, destination, Owner::Bye(call));
        }
    }

    /// Sends the CANCEL for `call`'s INVITE (once).
    fn send_cancel(&mut self, now: Instant, call: CallId) {
        let Some(c) = self.calls.get_mut(&call) else {
            return;
        };
        let Some(tx) = c.invite_tx else {
            return;
        };
        if c.cancel_sent {
            return;
        }
        c.cancel_sent = true;
        if let Ok(id) = self.layer.send_cancel(now, tx) {
            self.owners.insert(id, Owner::Cancel(call));
        }
    }

    /// A response to our INVITE.
    pub(super) fn on_invite_response(
        &mut self,
        now: Instant,
        id: TransactionId,
        call: CallId,
        resp: Response,
    ) {
        let Some(c) = self.calls.get_mut(&call) else {
            // The call is gone; a 2xx retransmission still needs its ACK.
            self.resend_ack(now, id);
            return;
        };
        if c.invite_tx != Some(id) {
            return;
        }
        let status = resp.status;
        if status < 200 {
            if c.state == CallState::Calling {
                c.state = CallState::Proceeding;
            }
            let ring = matches!(status, 180 | 183) && !c.ringing_reported && !c.reported;
            c.ringing_reported |= ring;
            let cancel = c.hangup_pending;
            if ring {
                self.events.push_back(UaEvent::Ringing { call });
            }
            if cancel {
                self.send_cancel(now, call);
            }
            return;
        }
        if status < 300 {
            self.on_invite_2xx(now, id, call, resp);
            return;
        }
        if matches!(status, 401 | 407) && c.auth_retries == 0 && !c.hangup_pending {
            if let (Some(digest), Some(invite)) = (c.digest.as_mut(), c.invite.clone()) {
                if let AuthAction::Retry(headers) =
                    digest.on_response(&invite, &resp, &mut self.rng)
                {
                    c.auth_retries += 1;
                    let mut retry = invite;
                    let seq = retry.headers.cseq().map(|s| s.seq).unwrap_or(1);
                    retry
                        .headers
                        .set("CSeq", &format!("{} INVITE", seq.wrapping_add(1)));
                    apply_credentials(&mut retry, headers);
                    let destination = c.peer;
                    if let Ok(tx) = self.start(now, retry.clone(), destination, Owner::Invite(call))
                    {
                        if let Some(c) = self.calls.get_mut(&call) {
                            c.invite = Some(retry);
                            c.invite_tx = Some(tx);
                            c.state = CallState::Calling;
                        }
                        return;
                    }
                }
            }
        }
        self.invite_failed(call, id, status, &resp.reason);
    }

    /// Our INVITE failed (final >= 300, timeout, transport error).
    pub(super) fn invite_failed(
        &mut self,
        call: CallId,
        id: TransactionId,
        status: u16,
        reason: &str,
    ) {
        let Some(c) = self.calls.get(&call) else {
            return;
        };
        if c.invite_tx != Some(id) || c.state == CallState::Established {
            return;
        }
        self.finish(
            call,
            UaEvent::Rejected {
                call,
                status,
                reason: reason.to_string(),
            },
        );
    }

    fn on_invite_2xx(&mut self, now: Instant, id: TransactionId, call: CallId, resp: Response) {
        let Some(c) = self.calls.get_mut(&call) else {
            return;
        };
        if let Some(d) = &c.dialog {
            if d.matches_response(&resp) {
                // A retransmission: the ACK got lost.
                self.resend_ack(now, id);
            } else {
                // Another fork answered too (13.2.2.4): ACK it and hang it up.
                let fallback = c.peer;
                if let Some(invite) = c.invite.clone() {
                    if let Ok(mut fork) = Dialog::uac(&invite, &resp) {
                        let seq = invite.headers.cseq().map(|s| s.seq).unwrap_or(1);
                        self.ack_2xx(now, None, &fork, seq, fallback, &invite);
                        let destination = self.dialog_destination(&fork, fallback);
                        if let Ok(bye) = self.dialog_request(&mut fork, Method::Bye) {
                            let _ = self.layer.send_request(
                                now,
                                bye,
                                self.config.transport,
                                destination,
                            );
                        }
                    }
                }
            }
            return;
        }
        let Some(invite) = c.invite.clone() else {
            return;
        };
        let dialog = match Dialog::uac(&invite, &resp) {
            Ok(d) => d,
            Err(_) => {
                // Without a usable Contact or tag we cannot even ACK: give up the call.
                self.finish(
                    call,
                    UaEvent::Rejected {
                        call,
                        status: 502,
                        reason: "Bad Gateway (unusable 2xx)".into(),
                    },
                );
                return;
            }
        };
        let fallback = c.peer;
        let hangup = c.hangup_pending;
        let seq = invite.headers.cseq().map(|s| s.seq).unwrap_or(1);
        self.ack_2xx(now, Some(id), &dialog, seq, fallback, &invite);
        if let Some(c) = self.calls.get_mut(&call) {
            c.dialog = Some(dialog);
            c.state = CallState::Established;
        }
        if hangup {
            self.send_bye(now, call);
            self.finish(call, UaEvent::Ended { call });
        } else {
            self.events.push_back(UaEvent::Answered {
                call,
                answer: resp.body,
            });
        }
    }

    /// Builds and sends the ACK for a 2xx on `dialog`, remembering it under `tx` for
    /// retransmitted 2xx. Credentials the INVITE carried are copied (22.1).
    fn ack_2xx(
        &mut self,
        now: Instant,
        tx: Option<TransactionId>,
        dialog: &Dialog,
        seq: u32,
        fallback: SocketAddr,
        invite: &Request,
    ) {
        let sent_by = self.sent_by();
        let mut ack = dialog.ack_for_2xx(seq, None, &sent_by, &mut self.rng);
        if dialog.route_set().is_empty() {
            if let Some(r) = self.proxy_route() {
                ack.headers.push_owned("Route".into(), format!("<{r}>"));
            }
        }
        for name in ["Authorization", "Proxy-Authorization"] {
            for v in invite.headers.get_all(name) {
                ack.headers.push(name, v);
            }
        }
        let destination = self.dialog_destination(dialog, fallback);
        if self
            .layer
            .send_ack(now, &mut ack, self.config.transport, destination)
            .is_ok()
        {
            if let Some(tx) = tx {
                self.acks.insert(tx, (ack, destination));
            }
        }
    }

    /// Re-sends the ACK remembered for INVITE client transaction `id`.
    fn resend_ack(&mut self, now: Instant, id: TransactionId) {
        if let Some((mut ack, destination)) = self.acks.get(&id).cloned() {
            let _ = self
                .layer
                .send_ack(now, &mut ack, self.config.transport, destination);
        }
    }

    /// A response to our re-INVITE.
    pub(super) fn on_reinvite_response(
        &mut self,
        now: Instant,
        id: TransactionId,
        call: CallId,
        resp: Response,
    ) {
        let status = resp.status;
        if status < 200 {
            return;
        }
        let Some(c) = self.calls.get_mut(&call) else {
            self.resend_ack(now, id);
            return;
        };
        if c.reinvite_out != Some(id) {
            // A retransmitted 2xx to an earlier re-INVITE.
            self.resend_ack(now, id);
            return;
        }
        c.reinvite_out = None;
        let fallback = c.peer;
        let Some(mut dialog) = c.dialog.take() else {
            return;
        };
        let _ = dialog.on_response(&resp);
        if status < 300 {
            let seq = resp.headers.cseq().map(|s| s.seq).unwrap_or(0);
            // An empty "invite" stands in: re-INVITEs carry no credentials here.
            let none = Request {
                method: Method::Invite,
                uri: dialog.remote_target().clone(),
                version: "SIP/2.0".into(),
                headers: Default::default(),
                body: Bytes::new(),
                raw: None,
            };
            self.ack_2xx(now, Some(id), &dialog, seq, fallback, &none);
        }
        if let Some(c) = self.calls.get_mut(&call) {
            c.dialog = Some(dialog);
        }
        match status {
            200..=299 => self.events.push_back(UaEvent::Answered {
                call,
                answer: resp.body,
            }),
            408 | 481 => self.finish(call, UaEvent::Ended { call }),
            _ => self.events.push_back(UaEvent::ReInviteFailed {
                call,
                status,
                reason: resp.reason.clone(),
            }),
        }
    }
}
