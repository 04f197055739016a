//! The state the [`UserAgent`](super::UserAgent) keeps per call, on either side: where the
//! INVITE is, the dialog once there is one, pending re-INVITEs, and what the application
//! asked for (a hangup that still has to become a CANCEL).

use std::net::SocketAddr;

use super::MergeKey;
use crate::sip::dialog::Dialog;
use crate::sip::digest::DigestClient;
use crate::sip::message::Request;
use crate::sip::transaction::TransactionId;

/// Where a call is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum CallState {
    /// UAC: INVITE sent, no provisional response yet (a CANCEL must wait).
    Calling,
    /// UAC: a provisional response arrived.
    Proceeding,
    /// UAS: INVITE received, the application has not answered.
    Incoming,
    /// A 2xx was sent or received: the dialog is confirmed.
    Established,
}

/// One call.
#[derive(Debug)]
pub(super) struct Call {
    pub(super) state: CallState,
    /// The SIP Call-ID.
    pub(super) sip_call_id: String,
    /// Our tag (From tag as UAC, To tag as UAS).
    pub(super) local_tag: String,
    /// Where the peer is (UAS: the INVITE's source; UAC: where the INVITE went); used when
    /// a target names a host we cannot resolve.
    pub(super) peer: SocketAddr,
    /// The dialog once confirmed (UAC) or from the INVITE (UAS).
    pub(super) dialog: Option<Dialog>,
    /// The application ended the call and was told ([`super::UaEvent::Ended`] queued).
    pub(super) reported: bool,
    /// UAC: our INVITE as built (placeholder Via), for the dialog, CANCEL and auth retry.
    pub(super) invite: Option<Request>,
    /// UAC: its client transaction.
    pub(super) invite_tx: Option<TransactionId>,
    /// UAC: digest state for 401/407 to the INVITE.
    pub(super) digest: Option<DigestClient>,
    /// UAC: authentication retries done.
    pub(super) auth_retries: u8,
    /// UAC: Ringing already reported.
    pub(super) ringing_reported: bool,
    /// UAC: the application hung up before the answer: CANCEL at the first provisional,
    /// or ACK and BYE a 2xx.
    pub(super) hangup_pending: bool,
    /// UAC: the CANCEL went out.
    pub(super) cancel_sent: bool,
    /// UAS: the INVITE and its server transaction, until answered.
    pub(super) server_tx: Option<(TransactionId, Request)>,
    /// UAS: merge-detection key of the INVITE (RFC 3261 8.2.2.2).
    pub(super) merge_key: Option<MergeKey>,
    /// Our re-INVITE in flight.
    pub(super) reinvite_out: Option<TransactionId>,
    /// The peer's re-INVITE waiting for the application.
    pub(super) reinvite_in: Option<(TransactionId, Request)>,
}

impl Call {
    /// A call in `state` with nothing in flight yet.
    pub(super) fn new(
        state: CallState,
        sip_call_id: String,
        local_tag: String,
        peer: SocketAddr,
    ) -> Call {
        Call {
            state,
            sip_call_id,
            local_tag,
            peer,
            dialog: None,
            reported: false,
            invite: None,
            invite_tx: None,
            digest: None,
            auth_retries: 0,
            ringing_reported: false,
            hangup_pending: false,
            cancel_sent: false,
            server_tx: None,
            merge_key: None,
            reinvite_out: None,
            reinvite_in: None,
        }
    }
}
