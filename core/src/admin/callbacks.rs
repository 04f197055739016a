//! [`Callbacks`]: nginx-rtmp-style HTTP callbacks made by the node itself, sans-IO.
//!
//! Each callback is one HTTP/1.1 `POST` (`application/x-www-form-urlencoded`, nginx-rtmp's
//! field names) on a connection of its own that the node opens with `TcpCommand::Connect`,
//! sends with `Connection: close`, and reads back with the bounded response parser
//! ([`crate::http::response_parser`]); the driver needs nothing new.
//!
//! Deciding callbacks (`on_connect`, `on_publish`, `on_play`) answer the server's two-phase
//! decisions: the node turns decisions on whenever callbacks are configured, takes each
//! question here (after the embedding application's own answer, when it decides too), and
//! answers the server when the backend has: 2xx accepts, a 3xx with `Location` renames a
//! publish or play (redirects a connect), anything else refuses. A backend that cannot be
//! reached, answers malformed bytes or takes longer than [`CallbacksConfig::timeout`] gets
//! [`CallbacksConfig::on_failure`], and so does a decision beyond
//! [`CallbacksConfig::max_in_flight`] (a notification beyond it is dropped and counted).
//!
//! Notifications (`on_done`, `on_publish_done`, `on_play_done`, `on_record_done`,
//! `on_update`, `on_register`) follow the node's events; their answers are not waited for,
//! except `on_update`'s: a non-2xx ends the connection, as nginx-rtmp does.

use std::collections::{BTreeMap, VecDeque};
use std::fmt::Write as _;
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};

use crate::amf::Value;
use crate::decision::{Decision, PublishMode, Question, RequestId};
use crate::http::response_parser::{parse_response, ParsedResponse, ResponseLimits};
use crate::http::{CallbackUrl, CallbacksConfig, FailurePolicy};
use crate::id_hash::IdHashMap;
use crate::ids::ConnId;
use crate::io::{Event, Output};
use crate::tcp::{StreamId, TcpCommand, TcpEvent};

/// The bit that marks the streams of callbacks (the gateway numbers its own connects from 1,
/// accepted streams carry the top bit).
const CALLBACK_STREAM: u64 = 1 << 62;

/// A question taken from the server and not yet answered to it.
#[derive(Debug)]
enum Asked {
    /// Waiting for the embedding application's answer.
    WaitingForApp(Question),
    /// Its callback is in flight.
    Consulting,
}

/// What a callback in flight is for.
#[derive(Debug, Clone, Copy)]
enum Purpose {
    /// Answers a decision.
    Decide {
        request: RequestId,
        /// A connect (a 3xx redirects it rather than renaming a stream).
        connect: bool,
    },
    /// `on_update`: a refusal ends the connection.
    Update(ConnId),
    /// The answer does not matter.
    Notify,
}

/// One HTTP exchange in flight.
#[derive(Debug)]
struct Call {
    purpose: Purpose,
    buf: BytesMut,
    deadline: Instant,
}

/// Who a recording belongs to, taken when it starts: its file is closed after the publish
/// has ended (the publisher may be gone), and `on_record_done` still carries the publisher's
/// session fields, name and query, as nginx-rtmp's does.
#[derive(Debug)]
struct RecordingOrigin {
    /// The session's fields (`app` ... `clientid`).
    session: Form,
    name: String,
    args: String,
}

/// A live publish or play of a client.
#[derive(Debug, Clone)]
struct Activity {
    name: String,
    args: String,
    since: Instant,
}

/// What nginx-rtmp calls the session: the connect's fields, then what the client does.
#[derive(Debug, Default)]
struct Client {
    addr: String,
    app: String,
    flashver: String,
    swfurl: String,
    tcurl: String,
    pageurl: String,
    /// The connect's query string.
    args: String,
    /// Name and query of the last publish or play asked, until it starts.
    asked: Option<(String, String)>,
    publishing: Option<Activity>,
    playing: Option<Activity>,
    /// A gateway call: the caller and callee of an incoming one (empty for an outgoing one)
    /// and, once established, since when.
    call: Option<GatewayCall>,
}

/// A gateway client's call, from its invitation or establishment to its end.
#[derive(Debug, Clone, Default)]
struct GatewayCall {
    from: String,
    to: String,
    incoming: bool,
    established: Option<Instant>,
}

/// What the node must do to the server after a callback.
#[derive(Debug, PartialEq)]
pub(crate) enum Verdict {
    /// Answer a pending decision.
    Decide(RequestId, Decision),
    /// End a connection (`on_update` refused).
    Close(ConnId),
}

/// The node's HTTP callbacks; see the module documentation.
#[derive(Debug)]
pub(crate) struct Callbacks {
    config: CallbacksConfig,
    limits: ResponseLimits,
    calls: IdHashMap<StreamId, Call>,
    next_stream: u64,
    asked: BTreeMap<RequestId, Asked>,
    clients: IdHashMap<ConnId, Client>,
    /// Recordings running, by stream key (one per published stream at most), while
    /// `on_record_done` is set.
    recordings: BTreeMap<String, RecordingOrigin>,
    outputs: VecDeque<Output>,
    verdicts: VecDeque<Verdict>,
    next_update: Option<Instant>,
    /// Notifications dropped at the cap.
    dropped: u64,
}

impl Callbacks {
    /// Callbacks per `config`; `on_update` first fires one interval after `now`.
    pub(crate) fn new(config: CallbacksConfig, now: Instant) -> Self {
        let next_update = config
            .on_update
            .as_ref()
            .map(|_| now + config.update_interval);
        Self {
            config,
            limits: ResponseLimits::default(),
            calls: IdHashMap::default(),
            next_stream: 0,
            asked: BTreeMap::new(),
            clients: IdHashMap::default(),
            recordings: BTreeMap::new(),
            outputs: VecDeque::new(),
            verdicts: VecDeque::new(),
            next_update,
            dropped: 0,
        }
    }

    /// Whether `event` is about a callback's connection.
    pub(crate) fn owns(event: &TcpEvent) -> bool {
        event
            .opened_stream()
            .is_some_and(|stream| stream.0 & CALLBACK_STREAM != 0)
    }

    /// Notifications dropped because [`CallbacksConfig::max_in_flight`] were in flight.
    pub(crate) fn dropped(&self) -> u64 {
        self.dropped
    }

    /// The server asked `question` as `request`. With `app_decides`, the embedding
    /// application answers first ([`Self::app_accepted`]); otherwise the callback is
    /// consulted at once.
    pub(crate) fn asked(
        &mut self,
        now: Instant,
        request: RequestId,
        question: Question,
        app_decides: bool,
    ) {
        self.remember(&question);
        if app_decides {
            self.asked.insert(request, Asked::WaitingForApp(question));
        } else {
            self.consult(now, request, &question);
        }
    }

    /// Whether `request` is one of the questions held here (its answer goes through
    /// [`Self::app_accepted`] or [`Self::app_refused`]).
    pub(crate) fn holds(&self, request: RequestId) -> bool {
        self.asked.contains_key(&request)
    }

    /// Whether the application has already answered `request` (its callback is in flight).
    pub(crate) fn consulting(&self, request: RequestId) -> bool {
        matches!(self.asked.get(&request), Some(Asked::Consulting))
    }

    /// The application accepted `request`: now the callback decides.
    pub(crate) fn app_accepted(&mut self, now: Instant, request: RequestId) {
        if let Some(Asked::WaitingForApp(question)) = self.asked.remove(&request) {
            self.consult(now, request, &question);
        }
    }

    /// The application refused `request` (or redirected a connect): no callback is made.
    pub(crate) fn app_refused(&mut self, request: RequestId) {
        self.asked.remove(&request);
    }

    /// Keeps what later callbacks of the connection tell about it.
    fn remember(&mut self, question: &Question) {
        match question {
            Question::Connect {
                conn,
                peer,
                app,
                tc_url,
                args,
            } => {
                let object = args.first();
                let field = |key: &str| {
                    object
                        .and_then(|o| o.get(key))
                        .and_then(Value::as_str)
                        .unwrap_or("")
                        .to_string()
                };
                let tcurl = tc_url.clone().unwrap_or_default();
                let (app, app_query) = app.split_once('?').unwrap_or((app, ""));
                let query = if app_query.is_empty() {
                    tcurl.split_once('?').map_or("", |(_, q)| q)
                } else {
                    app_query
                };
                let client = Client {
                    addr: peer.ip().to_canonical().to_string(),
                    app: app.to_string(),
                    flashver: field("flashVer"),
                    swfurl: field("swfUrl"),
                    tcurl: tcurl.clone(),
                    pageurl: field("pageUrl"),
                    args: query.to_string(),
                    ..Client::default()
                };
                self.clients.insert(*conn, client);
            }
            Question::Publish {
                conn, name, query, ..
            }
            | Question::Play {
                conn, name, query, ..
            } => {
                if let Some(client) = self.clients.get_mut(conn) {
                    client.asked = Some((name.clone(), query.clone()));
                }
            }
        }
    }

    /// Starts the callback that answers `request`, or answers it at once when none is
    /// configured for the question (or the cap is reached).
    fn consult(&mut self, now: Instant, request: RequestId, question: &Question) {
        let (url, connect) = match question {
            Question::Connect { .. } => (self.config.on_connect.clone(), true),
            Question::Publish { .. } => (self.config.on_publish.clone(), false),
            Question::Play { .. } => (self.config.on_play.clone(), false),
        };
        let Some(url) = url else {
            self.verdicts
                .push_back(Verdict::Decide(request, Decision::Accept));
            return;
        };
        if self.calls.len() >= self.config.max_in_flight {
            let decision = self.failure("too many callbacks in flight");
            self.verdicts.push_back(Verdict::Decide(request, decision));
            return;
        }
        let conn = question.conn();
        let mut form = Form::default();
        match question {
            Question::Connect { .. } => {
                let client = self.clients.get(&conn);
                let get = |f: fn(&Client) -> &str| client.map_or("", f);
                form.field("app", get(|c| &c.app));
                form.field("flashver", get(|c| &c.flashver));
                form.field("swfurl", get(|c| &c.swfurl));
                form.field("tcurl", get(|c| &c.tcurl));
                form.field("pageurl", get(|c| &c.pageurl));
                form.field("addr", get(|c| &c.addr));
                form.field("epoch", "0");
                form.field("call", "connect");
                form.raw(get(|c| &c.args));
            }
            Question::Publish {
                name, query, mode, ..
            } => {
                self.session(&mut form, conn);
                form.field("call", "publish");
                form.field("name", name);
                let kind = match mode {
                    PublishMode::Live => "live",
                    PublishMode::Record => "record",
                    PublishMode::Append => "append",
                };
                form.field("type", kind);
                form.raw(query);
            }
            Question::Play { name, query, .. } => {
                self.session(&mut form, conn);
                form.field("call", "play");
                form.field("name", name);
                form.field("start", "0");
                form.field("duration", "0");
                form.field("reset", "0");
                form.raw(query);
            }
        }
        self.asked.insert(request, Asked::Consulting);
        self.send(now, &url, form, Purpose::Decide { request, connect });
    }

    /// The session's fields, first in every callback but `connect`'s (nginx-rtmp's order).
    fn session(&self, form: &mut Form, conn: ConnId) {
        let client = self.clients.get(&conn);
        let get = |f: fn(&Client) -> &str| client.map_or("", f);
        form.field("app", get(|c| &c.app));
        form.field("flashver", get(|c| &c.flashver));
        form.field("swfurl", get(|c| &c.swfurl));
        form.field("tcurl", get(|c| &c.tcurl));
        form.field("pageurl", get(|c| &c.pageurl));
        form.field("addr", get(|c| &c.addr));
        form.field("clientid", &conn.to_string());
    }

    /// The decision a deciding callback that could not answer stands for.
    fn failure(&self, why: &str) -> Decision {
        match self.config.on_failure {
            FailurePolicy::Allow => Decision::Accept,
            FailurePolicy::Refuse => {
                Decision::Reject(format!("Authorization unavailable ({why})."))
            }
        }
    }

    /// Opens a callback's connection and queues its request.
    fn send(&mut self, now: Instant, url: &CallbackUrl, form: Form, purpose: Purpose) {
        self.next_stream += 1;
        let stream = StreamId(CALLBACK_STREAM | self.next_stream);
        let body = form.0;
        let mut request = String::with_capacity(200 + body.len());
        let _ = write!(
            request,
            "POST {} HTTP/1.1\r\nHost: {}\r\nUser-Agent: siprtmp\r\n\
             Content-Type: application/x-www-form-urlencoded\r\nContent-Length: {}\r\n\
             Connection: close\r\n\r\n{body}",
            url.target,
            url.host,
            body.len()
        );
        self.outputs.push_back(Output::Tcp(TcpCommand::Connect {
            stream,
            remote: url.addr,
            local_ip: None,
        }));
        self.outputs.push_back(Output::Tcp(TcpCommand::Send {
            stream,
            data: Bytes::from(request),
        }));
        self.calls.insert(
            stream,
            Call {
                purpose,
                buf: BytesMut::new(),
                deadline: now + self.config.timeout,
            },
        );
    }

    /// A notification, unless its URL is unset; dropped at the cap.
    fn notify(&mut self, now: Instant, url: Option<CallbackUrl>, form: Form, purpose: Purpose) {
        let Some(url) = url else {
            return;
        };
        if self.calls.len() >= self.config.max_in_flight {
            self.dropped += 1;
            return;
        }
        self.send(now, &url, form, purpose);
    }

    /// The end of a publish or play: `on_publish_done` or `on_play_done`, then `on_done`.
    fn done(&mut self, now: Instant, conn: ConnId, activity: &Activity, publish: bool) {
        let (url, call) = if publish {
            (self.config.on_publish_done.clone(), "publish_done")
        } else {
            (self.config.on_play_done.clone(), "play_done")
        };
        for (url, call) in [(url, call), (self.config.on_done.clone(), "done")] {
            let mut form = Form::default();
            self.session(&mut form, conn);
            form.field("call", call);
            form.field("name", &activity.name);
            form.raw(&activity.args);
            self.notify(now, url, form, Purpose::Notify);
        }
    }

    /// An event the node emits: starts and ends of publishes and plays, recordings, gateway
    /// registrations.
    pub(crate) fn observe(&mut self, now: Instant, event: &Event) {
        match event {
            Event::PublishStarted { conn, stream } | Event::PlayStarted { conn, stream } => {
                let publish = matches!(event, Event::PublishStarted { .. });
                let Some(client) = self.clients.get_mut(conn) else {
                    return;
                };
                let name = stream
                    .strip_prefix(&client.app)
                    .and_then(|n| n.strip_prefix('/'))
                    .unwrap_or(stream)
                    .to_string();
                let args = client.asked.take().map(|(_, q)| q).unwrap_or_default();
                let activity = Activity {
                    name,
                    args,
                    since: now,
                };
                let previous = if publish {
                    client.publishing.replace(activity)
                } else {
                    client.playing.replace(activity)
                };
                if let Some(previous) = previous {
                    self.done(now, *conn, &previous, publish);
                }
            }
            Event::PublishStopped { conn, .. } => {
                let ended = self.clients.get_mut(conn).and_then(|c| c.publishing.take());
                if let Some(activity) = ended {
                    self.done(now, *conn, &activity, true);
                }
            }
            Event::Disconnected { conn } => {
                let ended_call = crate::io::CallPhase::Ended {
                    reason: "disconnected".into(),
                };
                self.call_phase(now, *conn, &ended_call);
                let ended = self
                    .clients
                    .get(conn)
                    .map(|c| (c.publishing.clone(), c.playing.clone()));
                if let Some((publishing, playing)) = ended {
                    if let Some(activity) = publishing {
                        self.done(now, *conn, &activity, true);
                    }
                    if let Some(activity) = playing {
                        self.done(now, *conn, &activity, false);
                    }
                    self.clients.remove(conn);
                }
                self.asked.retain(|_, asked| match asked {
                    Asked::WaitingForApp(q) => q.conn() != *conn,
                    Asked::Consulting => true,
                });
            }
            Event::RecordStarted { conn, stream, .. } => {
                if self.config.on_record_done.is_none() {
                    return;
                }
                let activity = self.clients.get(conn).and_then(|c| c.publishing.clone());
                if let Some(activity) = activity {
                    let mut session = Form::default();
                    self.session(&mut session, *conn);
                    let origin = RecordingOrigin {
                        session,
                        name: activity.name,
                        args: activity.args,
                    };
                    self.recordings.insert(stream.clone(), origin);
                }
            }
            Event::RecordStopped { stream, path, .. } => {
                let (mut form, name, args) = match self.recordings.remove(stream) {
                    Some(origin) => (origin.session, origin.name, origin.args),
                    None => {
                        let mut form = Form::default();
                        let (app, name) = stream.split_once('/').unwrap_or(("", stream));
                        form.field("app", app);
                        (form, name.to_string(), String::new())
                    }
                };
                form.field("call", "record_done");
                form.field("recorder", "");
                form.field("name", &name);
                form.field("path", path);
                form.raw(&args);
                let url = self.config.on_record_done.clone();
                self.notify(now, url, form, Purpose::Notify);
            }
            Event::GatewayCall { conn, phase } => self.call_phase(now, *conn, phase),
            Event::GatewayBound { conn, aor, sip, .. } => {
                let mut form = Form::default();
                self.session(&mut form, *conn);
                form.field("call", "register");
                form.field("aor", aor);
                form.field("sip", &sip.to_string());
                let url = self.config.on_register.clone();
                self.notify(now, url, form, Purpose::Notify);
            }
            _ => {}
        }
    }

    /// A gateway call's phase: `on_call` once established, `on_call_done` once it ends
    /// (after an invitation or an establishment; an end without either is not told).
    fn call_phase(&mut self, now: Instant, conn: ConnId, phase: &crate::io::CallPhase) {
        use crate::io::CallPhase;
        let Some(client) = self.clients.get_mut(&conn) else {
            return;
        };
        match phase {
            CallPhase::Invited { from, to } => {
                client.call = Some(GatewayCall {
                    from: from.clone(),
                    to: to.clone(),
                    incoming: true,
                    established: None,
                });
            }
            CallPhase::Established => {
                let call = client.call.get_or_insert_with(GatewayCall::default);
                call.established = Some(now);
                let call = call.clone();
                let mut form = Form::default();
                self.session(&mut form, conn);
                form.field("call", "call");
                call_fields(&mut form, &call);
                let url = self.config.on_call.clone();
                self.notify(now, url, form, Purpose::Notify);
            }
            CallPhase::Ended { reason } => {
                let Some(call) = client.call.take() else {
                    return;
                };
                let mut form = Form::default();
                self.session(&mut form, conn);
                form.field("call", "call_done");
                call_fields(&mut form, &call);
                form.field("reason", reason);
                let duration = call
                    .established
                    .map_or(0, |at| now.saturating_duration_since(at).as_secs());
                form.field("duration", &duration.to_string());
                let url = self.config.on_call_done.clone();
                self.notify(now, url, form, Purpose::Notify);
            }
        }
    }

    /// Input about a callback's connection ([`Self::owns`]).
    pub(crate) fn tcp(&mut self, event: TcpEvent) {
        match event {
            // A request is small and sent once: what the socket took says nothing here.
            TcpEvent::Connected { .. }
            | TcpEvent::Listening { .. }
            | TcpEvent::Accepted { .. }
            | TcpEvent::Sent { .. } => {}
            TcpEvent::ConnectFailed { stream, error } => {
                self.finish(stream, Err(format!("cannot connect: {error}")));
            }
            TcpEvent::Received { stream, data } => {
                let Some(call) = self.calls.get_mut(&stream) else {
                    return;
                };
                call.buf.extend_from_slice(&data);
                match parse_response(&call.buf, false, &self.limits) {
                    Ok(None) => {}
                    Ok(Some(response)) => self.finish(stream, Ok(response)),
                    Err(e) => self.finish(stream, Err(e.to_string())),
                }
            }
            TcpEvent::Closed { stream, error } => {
                let Some(call) = self.calls.get(&stream) else {
                    return;
                };
                let result = match (error, parse_response(&call.buf, true, &self.limits)) {
                    (_, Ok(Some(response))) => Ok(response),
                    (Some(error), _) => Err(error),
                    (None, Err(e)) => Err(e.to_string()),
                    (None, Ok(None)) => Err("closed early".to_string()),
                };
                self.finish(stream, result);
            }
        }
    }

    /// A callback has its answer (or none): the verdict, and its connection closed.
    fn finish(&mut self, stream: StreamId, result: Result<ParsedResponse, String>) {
        let Some(call) = self.calls.remove(&stream) else {
            return;
        };
        self.outputs
            .push_back(Output::Tcp(TcpCommand::Close { stream }));
        match call.purpose {
            Purpose::Decide { request, connect } => {
                self.asked.remove(&request);
                let decision = match result {
                    Err(why) => self.failure(&why),
                    Ok(response) => answer(&response, connect),
                };
                self.verdicts.push_back(Verdict::Decide(request, decision));
            }
            Purpose::Update(conn) => {
                let refused = match result {
                    Ok(response) => !(200..300).contains(&response.status),
                    Err(_) => self.config.on_failure == FailurePolicy::Refuse,
                };
                if refused {
                    self.verdicts.push_back(Verdict::Close(conn));
                }
            }
            Purpose::Notify => {}
        }
    }

    /// Abandons the callbacks past their deadline and sends the updates that are due.
    pub(crate) fn timeout(&mut self, now: Instant) {
        let expired: Vec<StreamId> = self
            .calls
            .iter()
            .filter(|(_, c)| c.deadline <= now)
            .map(|(s, _)| *s)
            .collect();
        for stream in expired {
            self.finish(stream, Err("timed out".to_string()));
        }
        let Some(due) = self.next_update else {
            return;
        };
        if due > now {
            return;
        }
        let interval = self.config.update_interval.max(Duration::from_millis(100));
        let mut next = due + interval;
        while next <= now {
            next += interval;
        }
        self.next_update = Some(next);
        let mut active: Vec<(ConnId, &'static str, Activity)> = Vec::new();
        for (conn, client) in &self.clients {
            if let Some(a) = &client.publishing {
                active.push((*conn, "update_publish", a.clone()));
            } else if let Some(a) = &client.playing {
                active.push((*conn, "update_play", a.clone()));
            }
        }
        active.sort_by_key(|(conn, ..)| *conn);
        for (conn, call, activity) in active {
            let mut form = Form::default();
            self.session(&mut form, conn);
            form.field("call", call);
            let time = now.saturating_duration_since(activity.since);
            form.field("time", &time.as_secs().to_string());
            form.field("timestamp", &time.as_millis().to_string());
            form.field("name", &activity.name);
            form.raw(&activity.args);
            let url = self.config.on_update.clone();
            self.notify(now, url, form, Purpose::Update(conn));
        }
    }

    /// The earliest deadline: a callback's, or the next update.
    pub(crate) fn poll_timeout(&self) -> Option<Instant> {
        let calls = self.calls.values().map(|c| c.deadline).min();
        match (calls, self.next_update) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// The next command for the driver.
    pub(crate) fn poll_output(&mut self) -> Option<Output> {
        self.outputs.pop_front()
    }

    /// The next thing the node must do to the server.
    pub(crate) fn poll_verdict(&mut self) -> Option<Verdict> {
        self.verdicts.pop_front()
    }
}

/// Longest stream name a redirect may give.
const MAX_NAME: usize = 1024;

/// A deciding callback's answer: 2xx accepts; 3xx with `Location` renames a publish or play
/// (a location that is an `rtmp://` URL keeps its last path segment) or redirects a connect,
/// and without one accepts (as nginx-rtmp does); anything else refuses.
fn answer(response: &ParsedResponse, connect: bool) -> Decision {
    let status = response.status;
    match status {
        200..=299 => Decision::Accept,
        300..=399 => match response.header("location").filter(|l| !l.is_empty()) {
            None => Decision::Accept,
            Some(location) if connect => Decision::Redirect(location.to_string()),
            Some(location) => {
                let name = if location.len() > 7 && location[..7].eq_ignore_ascii_case("rtmp://") {
                    location.rsplit('/').next().unwrap_or(location)
                } else {
                    location
                };
                // The server checks the name as any other; this keeps out what no client
                // could have sent.
                if name.is_empty() || name.len() > MAX_NAME || name.bytes().any(|b| b < b' ') {
                    return Decision::Reject("Bad redirect from the authorization backend.".into());
                }
                Decision::Rename(name.to_string())
            }
        },
        _ => Decision::Reject(format!("Refused by the authorization backend ({status}).")),
    }
}

/// A gateway call's fields: direction, and the caller and callee of an incoming call.
fn call_fields(form: &mut Form, call: &GatewayCall) {
    form.field("direction", if call.incoming { "in" } else { "out" });
    form.field("from", &call.from);
    form.field("to", &call.to);
}

/// A form body being built: `name=value` pairs joined by `&`.
#[derive(Debug, Default, Clone)]
struct Form(String);

impl Form {
    /// One field, both sides percent-encoded (everything but unreserved characters).
    fn field(&mut self, name: &str, value: &str) {
        if !self.0.is_empty() {
            self.0.push('&');
        }
        encode_into(&mut self.0, name);
        self.0.push('=');
        encode_into(&mut self.0, value);
    }

    /// A query string appended as it came (its own `name=value` pairs become fields, as
    /// nginx-rtmp sends them); bytes that may not appear in a query are percent-encoded.
    fn raw(&mut self, query: &str) {
        if query.is_empty() {
            return;
        }
        if !self.0.is_empty() {
            self.0.push('&');
        }
        for b in query.bytes() {
            if b.is_ascii_graphic() && b != b'#' {
                self.0.push(char::from(b));
            } else {
                let _ = write!(self.0, "%{b:02X}");
            }
        }
    }
}

/// Percent-encodes `value` into `out` (RFC 3986 unreserved characters stay).
fn encode_into(out: &mut String, value: &str) {
    for b in value.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(char::from(b));
        } else {
            let _ = write!(out, "%{b:02X}");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::io::CallPhase;

    /// The form bodies the callbacks sent, by target.
    fn sent(callbacks: &mut Callbacks) -> Vec<(String, String)> {
        std::iter::from_fn(|| callbacks.poll_output())
            .filter_map(|o| match o {
                Output::Tcp(TcpCommand::Send { data, .. }) => {
                    let text = String::from_utf8(data.to_vec()).unwrap();
                    let target = text.split(' ').nth(1).unwrap().to_string();
                    let body = text.split_once("\r\n\r\n").unwrap().1.to_string();
                    Some((target, body))
                }
                _ => None,
            })
            .collect()
    }

    #[test]
    fn gateway_registrations_and_calls_are_told_in_the_same_style() {
        let url = |p: &str| Some(CallbackUrl::parse(&format!("http://127.0.0.1:9/{p}")).unwrap());
        let config = CallbacksConfig {
            on_register: url("register"),
            on_call: url("call"),
            on_call_done: url("call_done"),
            ..CallbacksConfig::default()
        };
        let start = Instant::now();
        let mut callbacks = Callbacks::new(config, start);
        let conn = ConnId(4);
        let question = Question::Connect {
            conn,
            peer: "192.0.2.1:5000".parse().unwrap(),
            app: "sip".into(),
            tc_url: Some("rtmp://h/sip/alice@example.net".into()),
            args: vec![Value::object([("flashVer", Value::string("LNX 9,0"))])],
        };
        callbacks.asked(start, RequestId(1), question, false);
        assert_eq!(
            callbacks.poll_verdict(),
            Some(Verdict::Decide(RequestId(1), Decision::Accept)),
            "no on_connect: accepted at once"
        );
        callbacks.observe(
            start,
            &Event::GatewayBound {
                conn,
                aor: "alice@example.net".into(),
                sip: "127.0.0.1:5070".parse().unwrap(),
                rtp_port: None,
            },
        );
        let phases = [
            CallPhase::Invited {
                from: "<sip:bob@example.net>".into(),
                to: "<sip:alice@example.net>".into(),
            },
            CallPhase::Established,
        ];
        for phase in phases {
            callbacks.observe(start, &Event::GatewayCall { conn, phase });
        }
        callbacks.observe(
            start + Duration::from_secs(7),
            &Event::GatewayCall {
                conn,
                phase: CallPhase::Ended {
                    reason: "bye".into(),
                },
            },
        );
        // An end with no call (a second `bye`) is not told.
        callbacks.observe(
            start + Duration::from_secs(8),
            &Event::Disconnected { conn },
        );
        let session = "app=sip&flashver=LNX%209%2C0&swfurl=&tcurl=rtmp%3A%2F%2Fh%2Fsip%2Falice%40example.net&pageurl=&addr=192.0.2.1&clientid=c4";
        assert_eq!(
            sent(&mut callbacks),
            [
                (
                    "/register".to_string(),
                    format!("{session}&call=register&aor=alice%40example.net&sip=127.0.0.1%3A5070")
                ),
                (
                    "/call".to_string(),
                    format!("{session}&call=call&direction=in&from=%3Csip%3Abob%40example.net%3E&to=%3Csip%3Aalice%40example.net%3E")
                ),
                (
                    "/call_done".to_string(),
                    format!("{session}&call=call_done&direction=in&from=%3Csip%3Abob%40example.net%3E&to=%3Csip%3Aalice%40example.net%3E&reason=bye&duration=7")
                ),
            ]
        );
    }

    #[test]
    fn answers_map_to_decisions_as_nginx_rtmp_reads_them() {
        let response = |status: u16, location: Option<&str>| ParsedResponse {
            status,
            headers: location
                .map(|l| ("Location".to_string(), l.to_string()))
                .into_iter()
                .collect(),
            body: Bytes::new(),
        };
        let rename = |s: &str| Decision::Rename(s.into());
        assert_eq!(answer(&response(204, None), false), Decision::Accept);
        assert_eq!(answer(&response(302, None), false), Decision::Accept);
        assert_eq!(answer(&response(302, Some("b")), false), rename("b"));
        assert_eq!(
            answer(&response(307, Some("rtmp://10.0.0.1/live/c")), false),
            rename("c")
        );
        assert_eq!(
            answer(&response(302, Some("rtmp://10.0.0.1/live")), true),
            Decision::Redirect("rtmp://10.0.0.1/live".into())
        );
        for refused in [
            response(101, None),
            response(403, None),
            response(500, Some("b")),
            response(302, Some("rtmp://10.0.0.1/live/")),
            response(302, Some("a\u{1}b")),
        ] {
            assert!(
                matches!(answer(&refused, false), Decision::Reject(_)),
                "{refused:?}"
            );
        }
    }

    #[test]
    fn form_values_are_percent_encoded_and_raw_queries_kept_well_formed() {
        let mut form = Form::default();
        form.field("name", "a b&c=d/é");
        form.raw("token=x y#z&k=v");
        assert_eq!(form.0, "name=a%20b%26c%3Dd%2F%C3%A9&token=x%20y%23z&k=v");
    }
}
