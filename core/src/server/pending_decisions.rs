//! Two-phase decisions in the server: asking ([`crate::node::Event::Decide`]) while the
//! connection's input waits, and carrying out the answer from [`RtmpServer::decide`], or a
//! refusal once [`ServerConfig::decision_timeout`](super::ServerConfig::decision_timeout) has
//! passed without one. The input held meanwhile counts in the server's budget for unfinished
//! messages (`RtmpServer::count_held_input`).

use std::time::Instant;

use super::RtmpServer;
use crate::amf::Value;
use crate::close_reason::CloseReason;
use crate::decision::{DecideError, Decision, Question, RequestId};
use crate::ids::ConnId;
use crate::io::{Event, Output};
use crate::rtmp::command::{status_object, Command};

/// A question asked and not yet answered, with what is needed to carry on.
#[derive(Debug)]
pub(crate) enum Pending {
    Connect {
        conn: ConnId,
        cmd: Command,
    },
    Publish {
        conn: ConnId,
        stream_id: u32,
        cmd: Command,
    },
    Play {
        conn: ConnId,
        stream_id: u32,
        cmd: Command,
    },
    /// An HTTP-FLV play (the connection is the HTTP stream's, not an RTMP session).
    FlvPlay {
        stream: crate::tcp::StreamId,
    },
}

impl Pending {
    fn conn(&self) -> ConnId {
        match self {
            Pending::Connect { conn, .. }
            | Pending::Publish { conn, .. }
            | Pending::Play { conn, .. } => *conn,
            Pending::FlvPlay { stream } => super::http_flv::flv_conn_id(*stream),
        }
    }
}

impl RtmpServer {
    /// Asks the application; the connection's messages wait until it answers, or until the
    /// decision timeout.
    pub(super) fn ask(&mut self, question: Question, pending: Pending) {
        let conn = pending.conn();
        self.next_request += 1;
        let request = RequestId(self.next_request);
        match self.sessions.get_mut(conn) {
            Some(session) => session.awaiting = Some(request),
            // An HTTP-FLV play has no session: its HTTP connection reads nothing meanwhile.
            None if matches!(pending, Pending::FlvPlay { .. }) => {}
            None => return,
        }
        // Asked while an input is handled, whose time is the latest: deadlines grow with the
        // request ids.
        let deadline = self.last_now + self.config.decision_timeout;
        self.pending.insert(request, (deadline, pending));
        self.outputs
            .push_back(Output::Event(Event::Decide { request, question }));
    }

    /// The application's answer to `request`.
    pub(crate) fn decide(
        &mut self,
        now: Instant,
        request: RequestId,
        decision: Decision,
    ) -> Result<(), DecideError> {
        self.last_now = self.last_now.max(now);
        let is_connect = match self.pending.get(&request) {
            Some((_, pending)) => matches!(pending, Pending::Connect { .. }),
            None => return Err(DecideError::UnknownRequest(request)),
        };
        let misfit = match decision {
            Decision::Redirect(_) => !is_connect,
            Decision::Rename(_) => is_connect,
            Decision::Accept | Decision::Reject(_) => false,
        };
        if misfit {
            return Err(DecideError::RedirectNotAllowed(request));
        }
        let Some((_, pending)) = self.pending.remove(&request) else {
            return Err(DecideError::UnknownRequest(request));
        };
        let conn = pending.conn();
        if let Some(session) = self.sessions.get_mut(conn) {
            session.awaiting = None;
        }
        match (pending, decision) {
            (Pending::FlvPlay { stream }, Decision::Accept) => {
                self.begin_flv_play(stream);
                return Ok(());
            }
            (Pending::FlvPlay { stream }, _) => {
                self.flv_refuse(stream, 403, "play refused\n");
                return Ok(());
            }
            (Pending::Connect { conn, cmd }, Decision::Accept) => self.accept_connect(conn, cmd),
            (Pending::Connect { conn, cmd }, Decision::Reject(reason)) => {
                self.reject_connect(conn, &cmd, &reason, None)
            }
            (Pending::Connect { conn, cmd }, Decision::Redirect(url)) => {
                self.reject_connect(conn, &cmd, "Redirected.", Some(&url))
            }
            // Refused above.
            (Pending::Connect { .. }, Decision::Rename(_)) => {}
            (
                Pending::Publish {
                    conn,
                    stream_id,
                    cmd,
                },
                Decision::Rename(name),
            ) => self.begin_publish(now, conn, stream_id, &renamed(cmd, name)),
            (
                Pending::Play {
                    conn,
                    stream_id,
                    cmd,
                },
                Decision::Rename(name),
            ) => self.begin_play(now, conn, stream_id, &renamed(cmd, name)),
            (
                Pending::Publish {
                    conn,
                    stream_id,
                    cmd,
                },
                Decision::Accept,
            ) => self.begin_publish(now, conn, stream_id, &cmd),
            (
                Pending::Publish {
                    conn, stream_id, ..
                },
                refusal,
            ) => {
                let reason = reason_of(refusal);
                self.status(
                    conn,
                    stream_id,
                    "error",
                    "NetStream.Publish.Denied",
                    &reason,
                );
            }
            (
                Pending::Play {
                    conn,
                    stream_id,
                    cmd,
                },
                Decision::Accept,
            ) => self.begin_play(now, conn, stream_id, &cmd),
            (
                Pending::Play {
                    conn, stream_id, ..
                },
                refusal,
            ) => {
                let reason = reason_of(refusal);
                self.status(conn, stream_id, "error", "NetStream.Play.Failed", &reason);
            }
        }
        // Messages that arrived meanwhile are read now (and what they leave unfinished, or
        // hold for another question, is counted).
        self.decode_messages(now, conn);
        self.count_partial(conn);
        self.count_held_input(conn);
        self.acknowledge(conn);
        Ok(())
    }

    /// Refuses every question unanswered at its deadline (see [`Self::decision_timed_out`]).
    pub(super) fn expire_decisions(&mut self, now: Instant) {
        while let Some((&request, &(deadline, _))) = self.pending.first_key_value() {
            if deadline > now {
                break;
            }
            self.decision_timed_out(request);
        }
    }

    /// The application has not answered `request` within the decision timeout: the client is
    /// told as for a refusal and the connection closed.
    fn decision_timed_out(&mut self, request: RequestId) {
        let Some((_, pending)) = self.pending.remove(&request) else {
            return;
        };
        let reason = CloseReason::DecisionTimeout {
            after: self.config.decision_timeout,
        };
        let description = reason.to_string();
        let conn = pending.conn();
        if let Some(session) = self.sessions.get_mut(conn) {
            session.awaiting = None;
        }
        match pending {
            Pending::FlvPlay { stream } => {
                self.counters.count_close(&reason);
                return self.flv_refuse(stream, 503, "no decision in time\n");
            }
            Pending::Connect { conn, cmd } => {
                self.send_connect_rejected(conn, &cmd, &description, None)
            }
            Pending::Publish {
                conn, stream_id, ..
            } => self.status(
                conn,
                stream_id,
                "error",
                "NetStream.Publish.Denied",
                &description,
            ),
            Pending::Play {
                conn, stream_id, ..
            } => self.status(
                conn,
                stream_id,
                "error",
                "NetStream.Play.Failed",
                &description,
            ),
        }
        self.close(conn, reason);
    }

    /// `_error` with `NetConnection.Connect.Rejected` (and a redirect target), then close.
    pub(super) fn reject_connect(
        &mut self,
        conn: ConnId,
        cmd: &Command,
        reason: &str,
        redirect: Option<&str>,
    ) {
        self.send_connect_rejected(conn, cmd, reason, redirect);
        let why = match redirect {
            Some(url) => CloseReason::ConnectRedirected { url: url.into() },
            None => CloseReason::ConnectRejected {
                reason: reason.into(),
            },
        };
        self.close(conn, why);
    }

    /// `_error` with `NetConnection.Connect.Rejected`, `reason` as its description (and a
    /// redirect target).
    fn send_connect_rejected(
        &mut self,
        conn: ConnId,
        cmd: &Command,
        reason: &str,
        redirect: Option<&str>,
    ) {
        let Some(session) = self.sessions.get_mut(conn) else {
            return;
        };
        let mut info = status_object("error", "NetConnection.Connect.Rejected", reason);
        if let (Some(url), Value::Object { properties, .. }) = (redirect, &mut info) {
            properties.push((
                "ex".into(),
                Value::object([
                    ("code", Value::Number(302.0)),
                    ("redirect", Value::string(url)),
                ]),
            ));
        }
        let error = Command::new("_error", cmd.transaction_id, Value::Null, vec![info]);
        let notify = session.send_command(0, error, cmd.amf3);
        self.transmit_if(conn, notify);
    }
}

fn reason_of(decision: Decision) -> String {
    match decision {
        Decision::Reject(reason) => reason,
        Decision::Accept | Decision::Redirect(_) | Decision::Rename(_) => String::new(),
    }
}

/// A `publish` or `play` with its stream name (the first argument) replaced.
fn renamed(mut cmd: Command, name: String) -> Command {
    match cmd.args.first_mut() {
        Some(first) => *first = Value::string(name),
        None => cmd.args.push(Value::string(name)),
    }
    cmd
}
