//! NetConnection and NetStream calls from clients: `connect`, `createStream`, `publish`,
//! `play`, `pause`, `deleteStream` and the rest, answered with `_result`, `_error` and
//! `onStatus` as Flash Media Server does.

use std::sync::Arc;
use std::time::Instant;

use smallvec::SmallVec;

use super::live_stream::Player;
use super::pending_decisions::Pending;
use super::player_backpressure::PlayerBackpressure;
use super::record_resume::RecordResume;
use super::recorder::Recorder;
use super::session::{Session, StreamRole};
use super::vod::PlayRequest;
use super::{RecordPolicy, RtmpServer};
use crate::amf::Value;
use crate::close_reason::CloseReason;
use crate::decision::{PublishMode, Question};
use crate::ids::ConnId;
use crate::io::{Event, Output};
use crate::rtmp::command::{data_message, status_object, Command};
use crate::rtmp::control::{ProtocolControl, UserControl};
use crate::storage::media_path;

/// Most NetStreams one connection may create.
const MAX_STREAMS_PER_CONNECTION: usize = 64;
/// Longest stream or application name accepted.
const MAX_NAME_LEN: usize = 1024;

/// Longest part (between `/`) of a published stream's name, in bytes: a file name (at most
/// [`crate::storage::MAX_COMPONENT_LEN`] bytes) less `.flv`.
const MAX_STREAM_NAME_PART: usize = crate::storage::MAX_COMPONENT_LEN - ".flv".len();

/// The stream name without its query string (`name?token=...`).
pub(crate) fn bare_stream_name(name: &str) -> &str {
    name.split('?').next().unwrap_or("")
}

/// The query string of a stream name (after the first `?`), or "".
fn stream_query(name: &str) -> &str {
    name.split_once('?').map_or("", |(_, query)| query)
}

/// The first argument of a command as a string (the stream name of publish and play).
pub(super) fn first_string(cmd: &Command) -> String {
    cmd.args
        .first()
        .and_then(Value::as_str)
        .unwrap_or("")
        .to_owned()
}

/// The publishing type: `live` (or anything else), `record` or `append`.
pub(super) fn publish_mode(cmd: &Command) -> PublishMode {
    match cmd.args.get(1).and_then(Value::as_str) {
        Some("record") => PublishMode::Record,
        Some("append") => PublishMode::Append,
        _ => PublishMode::Live,
    }
}

/// Which kind of stream `play`'s start argument asks for. On the wire it is in milliseconds
/// (Flash Player, ffmpeg and rtmpdump all send milliseconds; -2000 and -1000 are how librtmp
/// and ffmpeg spell -2 and -1).
#[derive(Debug, Clone, Copy, PartialEq)]
enum PlayStart {
    /// -2 (the default): live if published, else the file, else wait for a publisher.
    Any,
    /// -1: live only.
    LiveOnly,
    /// A position in ms: the file only.
    Recorded(u32),
}

fn play_start(cmd: &Command) -> PlayStart {
    match cmd.args.get(1).and_then(Value::as_f64) {
        Some(s) if s == -1.0 || s == -1000.0 => PlayStart::LiveOnly,
        Some(s) if s >= 0.0 => PlayStart::Recorded(s.min(f64::from(u32::MAX)) as u32),
        _ => PlayStart::Any,
    }
}

/// The application from `connect`: its `app` field, else the path of `tcUrl`; no query
/// string, no trailing slash.
fn application_name(command_object: &Value) -> Option<String> {
    let from_app = command_object.get("app").and_then(Value::as_str);
    let from_url = || {
        let url = command_object.get("tcUrl").and_then(Value::as_str)?;
        let after_scheme = url.split_once("://").map_or(url, |(_, rest)| rest);
        after_scheme.split_once('/').map(|(_, path)| path)
    };
    let raw = from_app.filter(|a| !a.is_empty()).or_else(from_url)?;
    let app = raw.split('?').next().unwrap_or("").trim_end_matches('/');
    (!app.is_empty() && app.len() <= MAX_NAME_LEN).then(|| app.to_owned())
}

fn result(transaction_id: f64, args: Vec<Value>) -> Command {
    Command::new("_result", transaction_id, Value::Null, args)
}

impl RtmpServer {
    pub(super) fn handle_command(
        &mut self,
        now: Instant,
        conn: ConnId,
        stream_id: u32,
        cmd: Command,
    ) {
        let Some(session) = self.sessions.get(conn) else {
            return;
        };
        let connected = session.app.is_some();
        if !connected && cmd.name != "connect" {
            let command = cmd.name;
            return self.close(conn, CloseReason::CommandBeforeConnect { command });
        }
        if self.gateway_command(now, conn, &cmd) {
            return;
        }
        match cmd.name.as_str() {
            "connect" => self.connect(conn, cmd),
            "createStream" => self.create_stream(conn, cmd),
            "releaseStream" | "FCSubscribe" | "_checkbw" => self.answer(conn, &cmd, vec![]),
            "FCPublish" => self.fc_publish(conn, &cmd, "onFCPublish", "NetStream.Publish.Start"),
            "FCUnpublish" => {
                self.fc_publish(conn, &cmd, "onFCUnpublish", "NetStream.Unpublish.Success")
            }
            "publish" if self.is_gateway_conn(conn) => {
                self.gateway_publish(conn, stream_id, &first_string(&cmd));
            }
            "play" if self.is_gateway_conn(conn) => {
                self.gateway_play(now, conn, stream_id, &first_string(&cmd));
            }
            "publish" => self.publish(now, conn, stream_id, cmd),
            "play" => self.play(now, conn, stream_id, cmd),
            "pause" | "pauseRaw" => self.pause(now, conn, stream_id, cmd),
            "seek" => {
                let target = cmd.args.first().and_then(Value::as_f64).unwrap_or(0.0);
                self.vod_seek(now, conn, stream_id, target);
            }
            "receiveAudio" | "receiveVideo" => self.receive_media(conn, stream_id, cmd),
            "closeStream" => self.close_stream(conn, stream_id, false),
            "deleteStream" => {
                let id = cmd.args.first().and_then(Value::as_f64).unwrap_or(0.0);
                if id >= 1.0 && id <= f64::from(u32::MAX) {
                    self.close_stream(conn, id as u32, true);
                }
            }
            "getStreamLength" => {
                let seconds = self.stream_length(conn, &first_string(&cmd));
                self.answer(conn, &cmd, vec![Value::Number(seconds)]);
            }
            // Answers to calls we made (none that need handling) and keep-alives.
            "_result" | "_error" | "onBWDone" | "_checkbwDone" => {}
            _ => self.call_failed(conn, &cmd),
        }
    }

    /// `_result(txn, null, args...)` in the encoding the call came in.
    fn answer(&mut self, conn: ConnId, cmd: &Command, args: Vec<Value>) {
        if let Some(session) = self.sessions.get_mut(conn) {
            let notify = session.send_command(0, result(cmd.transaction_id, args), cmd.amf3);
            self.transmit_if(conn, notify);
        }
    }

    pub(super) fn call_failed(&mut self, conn: ConnId, cmd: &Command) {
        if let Some(session) = self.sessions.get_mut(conn) {
            let info = status_object(
                "error",
                "NetConnection.Call.Failed",
                &format!("Method not found ({}).", cmd.name),
            );
            let error = Command::new("_error", cmd.transaction_id, Value::Null, vec![info]);
            let notify = session.send_command(0, error, cmd.amf3);
            self.transmit_if(conn, notify);
        }
    }

    /// Duration in seconds of the file `name` would play, when known (0 otherwise).
    fn stream_length(&self, conn: ConnId, name: &str) -> f64 {
        let Some(app) = self.sessions.get(conn).and_then(|s| s.app.as_deref()) else {
            return 0.0;
        };
        media_path(app, bare_stream_name(name))
            .ok()
            .and_then(|path| self.file_cache.get(&path))
            .map_or(0.0, |(_, summary)| {
                f64::from(summary.last_timestamp) / 1000.0
            })
    }

    fn connect(&mut self, conn: ConnId, cmd: Command) {
        let Some(session) = self.sessions.get_mut(conn) else {
            return;
        };
        if session.app.is_some() {
            return self.call_failed(conn, &cmd);
        }
        let Some(app) = application_name(&cmd.command_object) else {
            return self.reject_connect(conn, &cmd, "No application.", None);
        };
        if self.decisions {
            let question = Question::Connect {
                conn,
                peer: session.peer,
                app,
                tc_url: cmd
                    .command_object
                    .get("tcUrl")
                    .and_then(Value::as_str)
                    .map(str::to_owned),
                args: std::iter::once(cmd.command_object.clone())
                    .chain(cmd.args.iter().cloned())
                    .collect(),
            };
            return self.ask(question, Pending::Connect { conn, cmd });
        }
        self.accept_connect(conn, cmd);
    }

    /// `connect` accepted: window, bandwidth and chunk size, then `_result`.
    pub(super) fn accept_connect(&mut self, conn: ConnId, cmd: Command) {
        // The gateway holds its connects until its sockets (and REGISTER) are ready, then
        // comes back here.
        if !self.is_gateway_conn(conn) {
            if let Some(app) = application_name(&cmd.command_object) {
                if self.gateway_connect(conn, &app, cmd.clone()) {
                    return;
                }
            }
        }
        let config = &self.config;
        let Some(session) = self.sessions.get_mut(conn) else {
            return;
        };
        let Some(app) = application_name(&cmd.command_object) else {
            return;
        };
        let encoding = cmd
            .command_object
            .get("objectEncoding")
            .and_then(Value::as_f64)
            .unwrap_or(0.0);
        session.object_encoding = if encoding == 3.0 { 3.0 } else { 0.0 };
        session.app = Some(app.clone());
        let mut notify =
            session.send_control(ProtocolControl::WindowAckSize(config.window_ack_size));
        notify |= session.send_control(ProtocolControl::SetPeerBandwidth {
            size: config.peer_bandwidth,
            limit_type: 2,
        });
        notify |= session.send_control(ProtocolControl::SetChunkSize(config.chunk_size));
        let mut properties = Value::object([
            ("fmsVer", Value::string("FMS/3,5,7,7009")),
            ("capabilities", Value::Number(31.0)),
            ("mode", Value::Number(1.0)),
        ]);
        if super::enhanced_caps::declares_enhanced(&cmd.command_object) {
            if let Value::Object { properties, .. } = &mut properties {
                properties.extend(super::enhanced_caps::server_properties());
            }
        }
        let mut info = status_object(
            "status",
            "NetConnection.Connect.Success",
            "Connection succeeded.",
        );
        if let Value::Object { properties, .. } = &mut info {
            properties.push((
                "objectEncoding".into(),
                Value::Number(session.object_encoding),
            ));
        }
        let answer = Command::new("_result", cmd.transaction_id, properties, vec![info]);
        notify |= session.send_command(0, answer, cmd.amf3);
        let peer = session.peer;
        self.transmit_if(conn, notify);
        self.outputs
            .push_back(Output::Event(Event::Connected { conn, app, peer }));
    }

    fn create_stream(&mut self, conn: ConnId, cmd: Command) {
        let Some(session) = self.sessions.get_mut(conn) else {
            return;
        };
        if session.streams.len() >= MAX_STREAMS_PER_CONNECTION {
            return self.call_failed(conn, &cmd);
        }
        // Ids are never reused, so a client that creates and deletes streams four billion
        // times runs out rather than wrap to 0, the control stream's.
        let id = session.next_stream_id;
        let Some(next) = id.checked_add(1) else {
            return self.call_failed(conn, &cmd);
        };
        session.next_stream_id = next;
        session.set_role(id, StreamRole::Idle);
        self.answer(conn, &cmd, vec![Value::Number(f64::from(id))]);
    }

    fn fc_publish(&mut self, conn: ConnId, cmd: &Command, callback: &str, code: &str) {
        let name = cmd.args.first().and_then(Value::as_str).unwrap_or("");
        if let Some(session) = self.sessions.get_mut(conn) {
            let info = status_object("status", code, name);
            let notify = session.send_command(
                0,
                Command::new(callback, 0.0, Value::Null, vec![info]),
                cmd.amf3,
            );
            self.transmit_if(conn, notify);
        }
        self.answer(conn, cmd, vec![]);
    }

    /// The live stream key for `name` in the connection's application, or `None` for a bad name.
    pub(super) fn stream_key(session: &Session, name: &str) -> Option<Arc<str>> {
        let app = session.app.as_deref()?;
        let name = bare_stream_name(name);
        if name.is_empty() || name.len() > MAX_NAME_LEN {
            return None;
        }
        Some(Arc::from(format!("{app}/{name}")))
    }

    /// Sends `onStatus` on `stream_id` and tells the driver.
    pub(super) fn status(
        &mut self,
        conn: ConnId,
        stream_id: u32,
        level: &str,
        code: &str,
        description: &str,
    ) {
        if let Some(session) = self.sessions.get_mut(conn) {
            let notify = session.send_status(stream_id, level, code, description);
            self.transmit_if(conn, notify);
        }
    }

    /// Why `conn` may not publish `name` on `stream_id` (the `Publish.BadName` description).
    pub(super) fn publish_problem(
        &self,
        conn: ConnId,
        stream_id: u32,
        name: &str,
        mode: PublishMode,
    ) -> Option<String> {
        let session = self.sessions.get(conn)?;
        if session.role(stream_id) != Some(&StreamRole::Idle) {
            return Some("Stream is busy or not created.".into());
        }
        let Some(key) = Self::stream_key(session, name) else {
            return Some("Invalid stream name.".into());
        };
        if self.recording_path(session, name, mode).is_err() {
            return Some("Invalid stream name for a file.".into());
        }
        // Refused whether or not this publish is recorded, so that a name is valid or not
        // whatever the application's settings (a file name is at most 255 bytes).
        if let Some(part) = bare_stream_name(name)
            .split('/')
            .find(|part| part.len() > MAX_STREAM_NAME_PART)
        {
            return Some(format!(
                "Stream name too long: each part is at most {MAX_STREAM_NAME_PART} bytes, \
                 one is {}.",
                part.len()
            ));
        }
        if self.live.get(&*key).is_some_and(|s| s.publisher.is_some()) {
            return Some(format!("{name} is already being published."));
        }
        None
    }

    /// The file a publish records to, whether it appends, and whether the publisher asked
    /// for it (`record`, `append`) rather than the application (`record-all`): `Ok(None)` when
    /// it is not recorded.
    fn recording_path(
        &self,
        session: &Session,
        name: &str,
        mode: PublishMode,
    ) -> Result<Option<(String, bool, bool)>, ()> {
        let app = session.app.as_deref().ok_or(())?;
        let record = self
            .config
            .apps
            .get(app)
            .map_or(RecordPolicy::Off, |a| a.record);
        let append = match (mode, record) {
            (PublishMode::Live, RecordPolicy::Off) => return Ok(None),
            (PublishMode::Append, _) => true,
            _ => false,
        };
        let path = media_path(app, bare_stream_name(name)).map_err(|_| ())?;
        Ok(Some((path, append, mode != PublishMode::Live)))
    }

    fn publish(&mut self, now: Instant, conn: ConnId, stream_id: u32, cmd: Command) {
        let name = first_string(&cmd);
        let mode = publish_mode(&cmd);
        if let Some(problem) = self.publish_problem(conn, stream_id, &name, mode) {
            return self.status(
                conn,
                stream_id,
                "error",
                "NetStream.Publish.BadName",
                &problem,
            );
        }
        if self.decisions {
            let Some(session) = self.sessions.get(conn) else {
                return;
            };
            let question = Question::Publish {
                conn,
                peer: session.peer,
                app: session.app.clone().unwrap_or_default(),
                name: bare_stream_name(&name).to_owned(),
                query: stream_query(&name).to_owned(),
                mode,
            };
            return self.ask(
                question,
                Pending::Publish {
                    conn,
                    stream_id,
                    cmd,
                },
            );
        }
        self.begin_publish(now, conn, stream_id, &cmd);
    }

    /// `publish` accepted: the stream goes live (and is recorded when asked or configured).
    /// In a group of workers, once the group's registry has given this worker the name.
    pub(super) fn begin_publish(
        &mut self,
        _now: Instant,
        conn: ConnId,
        stream_id: u32,
        cmd: &Command,
    ) {
        let name = first_string(cmd);
        let mode = publish_mode(cmd);
        // Checked again: the name may have been taken while the application decided.
        if let Some(problem) = self.publish_problem(conn, stream_id, &name, mode) {
            return self.status(
                conn,
                stream_id,
                "error",
                "NetStream.Publish.BadName",
                &problem,
            );
        }
        if self.relay.is_some() {
            return self.claim_publish(conn, stream_id, cmd);
        }
        self.go_live(conn, stream_id, cmd);
    }

    /// The publish goes live: players waiting for it are told, it is recorded if asked, and
    /// (in a group of workers) announced to the other workers.
    pub(super) fn go_live(&mut self, conn: ConnId, stream_id: u32, cmd: &Command) {
        let name = first_string(cmd);
        let mode = publish_mode(cmd);
        let Some(session) = self.sessions.get(conn) else {
            return;
        };
        let Some(key) = Self::stream_key(session, &name) else {
            return;
        };
        let recording = self.recording_path(session, &name, mode).ok().flatten();
        // A publisher here takes the name from a pull that fed it.
        self.end_pull(&key);
        let stream = self.live.entry(key.clone()).or_default();
        stream.publisher = Some((conn, stream_id));
        stream.since = Some(self.last_now);
        if let Some(session) = self.sessions.get_mut(conn) {
            session.set_role(stream_id, StreamRole::Publishing(key.clone()));
            let mut notify = session.send_user_control(UserControl::StreamBegin(stream_id));
            notify |= session.send_status(
                stream_id,
                "status",
                "NetStream.Publish.Start",
                &format!("{name} is now published."),
            );
            self.transmit_if(conn, notify);
        }
        self.pace_publisher_reads(conn, &key);
        self.notify_published(&key, &name);
        self.counters.publishes += 1;
        self.outputs.push_back(Output::Event(Event::PublishStarted {
            conn,
            stream: key.to_string(),
        }));
        self.announce(&key, bare_stream_name(&name));
        self.start_pushes(&key);
        if let Some((path, append, requested)) = recording {
            self.start_recording(conn, stream_id, key, path, append, requested);
        }
    }

    /// Tells the players waiting for `key` that it is published (here or on another worker);
    /// they start at its next keyframe.
    pub(super) fn notify_published(&mut self, key: &Arc<str>, name: &str) {
        let Some(stream) = self.live.get_mut(&**key) else {
            return;
        };
        let mut waiting: SmallVec<[(ConnId, u32); 8]> = SmallVec::new();
        for player in &mut stream.players {
            player.backpressure.need_keyframe = true;
            player.flush_next = true;
            waiting.push((player.conn, player.stream_id));
        }
        for (player, player_stream) in waiting {
            self.status(
                player,
                player_stream,
                "status",
                "NetStream.Play.PublishNotify",
                &format!("{name} is now published."),
            );
        }
    }

    /// Starts recording `key` to `path`; `requested` when the publisher asked for it (and so
    /// hears how it goes), not the application.
    pub(super) fn start_recording(
        &mut self,
        conn: ConnId,
        stream_id: u32,
        key: Arc<str>,
        path: String,
        append: bool,
        requested: bool,
    ) {
        if self.recorders.values().any(|r| r.path == path) {
            let text = format!("{path} is still being written.");
            if requested {
                self.status(conn, stream_id, "error", "NetStream.Record.NoAccess", &text);
            }
            return;
        }
        let file = self.next_file_id();
        self.file_cache.remove(&path);
        let recorder = Recorder::start(
            file,
            conn,
            stream_id,
            key.clone(),
            path.clone(),
            append,
            requested,
            self.config.max_record_backlog,
            self.config.chunk_limits.max_message_size as usize,
            &mut self.outputs,
        );
        self.recorders.insert(file, recorder);
        if let Some(stream) = self.live.get_mut(&*key) {
            stream.recorder = Some(file);
        }
        if requested {
            self.status(
                conn,
                stream_id,
                "status",
                "NetStream.Record.Start",
                &format!("Recording {path}."),
            );
        }
        self.outputs.push_back(Output::Event(Event::RecordStarted {
            conn,
            stream: key.to_string(),
            path,
        }));
    }

    /// A recording stopped early; the live stream goes on unrecorded. A publisher that asked
    /// for the recording is told; one the application records (`record-all`) is not (an
    /// encoder may end its stream on an error status), and the recording resumes in a new file
    /// later ([`RecordResume`]). Either way the failure is counted, and logged with the
    /// recording's `RecordStopped` event.
    pub(super) fn recording_failed(
        &mut self,
        file: crate::storage::FileId,
        code: &str,
        error: &crate::record_error::RecordError,
    ) {
        let Some(recorder) = self.recorders.get(&file) else {
            return;
        };
        self.recordings_failed += 1;
        let (conn, stream_id, key) = (recorder.conn, recorder.stream_id, recorder.stream.clone());
        let requested = recorder.requested;
        if let Some(stream) = self.live.get_mut(&*key) {
            if stream.recorder == Some(file) {
                stream.recorder = None;
                if !requested {
                    stream.record_resume = Some(RecordResume::after_failure(
                        stream.record_resume.take(),
                        (conn, stream_id),
                    ));
                }
            }
        }
        if !requested {
            return;
        }
        let publishing = self
            .sessions
            .get(conn)
            .and_then(|s| s.role(stream_id))
            .is_some_and(|role| *role == StreamRole::Publishing(key.clone()));
        if publishing {
            self.status(conn, stream_id, "error", code, &error.to_string());
        }
    }

    fn play(&mut self, now: Instant, conn: ConnId, stream_id: u32, cmd: Command) {
        let Some(session) = self.sessions.get(conn) else {
            return;
        };
        let name = first_string(&cmd);
        if session.role(stream_id).is_none() {
            return self.status(
                conn,
                stream_id,
                "error",
                "NetStream.Play.Failed",
                "Stream not created.",
            );
        }
        if Self::stream_key(session, &name).is_none() {
            return self.status(
                conn,
                stream_id,
                "error",
                "NetStream.Play.StreamNotFound",
                "Invalid stream name.",
            );
        }
        if self.decisions {
            let question = Question::Play {
                conn,
                peer: session.peer,
                app: session.app.clone().unwrap_or_default(),
                name: bare_stream_name(&name).to_owned(),
                query: stream_query(&name).to_owned(),
            };
            return self.ask(
                question,
                Pending::Play {
                    conn,
                    stream_id,
                    cmd,
                },
            );
        }
        self.begin_play(now, conn, stream_id, &cmd);
    }

    /// `play` accepted: the live stream, or the file, or waiting for a publisher.
    pub(super) fn begin_play(&mut self, now: Instant, conn: ConnId, stream_id: u32, cmd: &Command) {
        let Some(session) = self.sessions.get(conn) else {
            return;
        };
        let name = first_string(cmd);
        let start = play_start(cmd);
        let len = cmd
            .args
            .get(2)
            .and_then(Value::as_f64)
            .filter(|l| *l >= 0.0)
            .map(|l| l.min(f64::from(u32::MAX)) as u32);
        let reset = cmd.args.get(3).and_then(Value::as_bool).unwrap_or(true);
        let Some(role) = session.role(stream_id).cloned() else {
            return;
        };
        let Some(key) = Self::stream_key(session, &name) else {
            return;
        };
        let path = session
            .app
            .as_deref()
            .and_then(|app| media_path(app, bare_stream_name(&name)).ok());
        if role != StreamRole::Idle {
            // A new play on the same NetStream replaces what it was doing.
            if let Some(session) = self.sessions.get_mut(conn) {
                session.set_role(stream_id, StreamRole::Idle);
            }
            self.end_role(conn, stream_id, role);
        }
        let live = self.live.get(&*key).is_some_and(|s| s.is_live());
        let (from, fall_back_to_live) = match start {
            PlayStart::LiveOnly => {
                return self.begin_live_play(conn, stream_id, &key, &name, reset)
            }
            PlayStart::Any if live => {
                return self.begin_live_play(conn, stream_id, &key, &name, reset)
            }
            PlayStart::Any => (0, true),
            PlayStart::Recorded(from) => (from, false),
        };
        let Some(path) = path else {
            if fall_back_to_live {
                return self.begin_live_play(conn, stream_id, &key, &name, reset);
            }
            return self.status(
                conn,
                stream_id,
                "error",
                "NetStream.Play.StreamNotFound",
                &format!("{name} not found."),
            );
        };
        let request = PlayRequest {
            name: bare_stream_name(&name).to_owned(),
            key,
            path,
            start: from,
            len,
            reset,
            fall_back_to_live,
        };
        self.start_vod(now, conn, stream_id, request);
    }

    /// Joins (or waits for) the live stream `key`.
    pub(super) fn begin_live_play(
        &mut self,
        conn: ConnId,
        stream_id: u32,
        key: &Arc<str>,
        name: &str,
        reset: bool,
    ) {
        let live = self.live.get(&**key).is_some_and(|s| s.is_live());
        // Nobody publishes it here: a pull may play it from upstream, or the application may
        // refuse to wait for a publisher.
        let pulled = self.pull_for_player(key);
        if !live && !pulled && !self.waits_for_publishers(key) {
            return self.status(
                conn,
                stream_id,
                "error",
                "NetStream.Play.StreamNotFound",
                &format!("{name} not found."),
            );
        }
        let Some(session) = self.sessions.get_mut(conn) else {
            return;
        };
        let chunk_size = session.encoder.chunk_size();
        session.set_role(stream_id, StreamRole::Playing(key.clone()));
        let mut notify = session.send_user_control(UserControl::StreamBegin(stream_id));
        if reset {
            notify |= session.send_status(
                stream_id,
                "status",
                "NetStream.Play.Reset",
                &format!("Playing and resetting {name}."),
            );
        }
        notify |= session.send_status(
            stream_id,
            "status",
            "NetStream.Play.Start",
            &format!("Started playing {name}."),
        );
        let access = data_message(
            stream_id,
            0,
            &[
                Value::string("|RtmpSampleAccess"),
                Value::Boolean(true),
                Value::Boolean(true),
            ],
        );
        notify |= session.send_message(super::session::csid::STATUS, &access);
        self.transmit_if(conn, notify);
        self.live
            .entry(key.clone())
            .or_default()
            .players
            .push(Player {
                conn,
                stream_id,
                chunk_size,
                paused: false,
                receive_audio: true,
                receive_video: true,
                backpressure: PlayerBackpressure::waiting_for_keyframe(),
                flush_next: true,
            });
        self.audience_joined(key);
        self.subscribe_if_remote(key);
        if live {
            self.status(
                conn,
                stream_id,
                "status",
                "NetStream.Play.PublishNotify",
                &format!("{name} is now published."),
            );
            self.start_player(conn, stream_id, key);
        }
        self.counters.plays += 1;
        self.outputs.push_back(Output::Event(Event::PlayStarted {
            conn,
            stream: key.to_string(),
        }));
    }

    /// Whether a play of `key` (`app/name`) that nobody publishes waits for a publisher
    /// ([`super::AppConfig::idle_streams`]).
    fn waits_for_publishers(&self, key: &str) -> bool {
        let app = key.split_once('/').map_or(key, |(app, _)| app);
        self.config.apps.get(app).is_none_or(|a| a.idle_streams)
    }

    /// The live stream a player plays on `stream_id`, if any.
    fn played_key(&self, conn: ConnId, stream_id: u32) -> Option<Arc<str>> {
        match self.sessions.get(conn)?.role(stream_id)? {
            StreamRole::Playing(key) => Some(key.clone()),
            _ => None,
        }
    }

    fn pause(&mut self, now: Instant, conn: ConnId, stream_id: u32, cmd: Command) {
        let pause = cmd.args.first().and_then(Value::as_bool).unwrap_or(true);
        if let Some(StreamRole::Vod(file)) = self.sessions.get(conn).and_then(|s| s.role(stream_id))
        {
            let file = *file;
            return self.vod_pause(now, conn, stream_id, file, pause);
        }
        let Some(key) = self.played_key(conn, stream_id) else {
            return self.status(
                conn,
                stream_id,
                "error",
                "NetStream.Pause.Failed",
                "Not playing.",
            );
        };
        if let Some(player) = self
            .live
            .get_mut(&*key)
            .and_then(|s| s.player_mut(conn, stream_id))
        {
            player.paused = pause;
            // Live resumes at the next keyframe: the frames in between were never sent.
            player.backpressure.need_keyframe |= !pause;
            player.flush_next |= !pause;
        }
        let (code, what) = if pause {
            ("NetStream.Pause.Notify", "Paused")
        } else {
            ("NetStream.Unpause.Notify", "Unpaused")
        };
        self.status(
            conn,
            stream_id,
            "status",
            code,
            &format!("{what} live stream."),
        );
    }

    fn receive_media(&mut self, conn: ConnId, stream_id: u32, cmd: Command) {
        let on = cmd.args.first().and_then(Value::as_bool).unwrap_or(true);
        let Some(key) = self.played_key(conn, stream_id) else {
            return;
        };
        if let Some(player) = self
            .live
            .get_mut(&*key)
            .and_then(|s| s.player_mut(conn, stream_id))
        {
            if cmd.name == "receiveAudio" {
                player.receive_audio = on;
            } else {
                player.backpressure.need_keyframe |= on && !player.receive_video;
                player.receive_video = on;
            }
        }
    }

    /// `closeStream` (the stream stays created) or `deleteStream` (it is gone).
    fn close_stream(&mut self, conn: ConnId, stream_id: u32, delete: bool) {
        let Some(session) = self.sessions.get_mut(conn) else {
            return;
        };
        let Some(role) = session.role(stream_id).cloned() else {
            return;
        };
        if delete {
            session.streams.retain(|(id, _)| *id != stream_id);
        } else {
            session.set_role(stream_id, StreamRole::Idle);
        }
        let was_publishing = matches!(role, StreamRole::Publishing(_));
        let was_playing = matches!(role, StreamRole::Playing(_));
        self.end_role(conn, stream_id, role);
        if was_playing && !delete {
            self.status(
                conn,
                stream_id,
                "status",
                "NetStream.Play.Stop",
                "Stopped playing.",
            );
        }
        if was_publishing {
            self.status(
                conn,
                stream_id,
                "status",
                "NetStream.Unpublish.Success",
                "Stream is now unpublished.",
            );
        }
    }
}
