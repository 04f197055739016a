//! [`RtmpClient`]: the client side of one RTMP connection as a sans-IO machine.
//!
//! Used by the load generators, the benchmarks, the simulation harness and the gateway's
//! tests (the VideoPhone role). It does the handshake, `connect`, `createStream`, `publish` and
//! `play`, sends media, acknowledges and answers pings, and reports what the server sends as
//! [`ClientEvent`]s.

use std::collections::VecDeque;

use bytes::{Bytes, BytesMut};

use super::aggregate::{split_aggregate, AggregateError};
use super::chunk_decoder::{ChunkDecoder, ChunkError, ChunkLimits};
use super::chunk_encoder::ChunkEncoder;
use super::command::{Command, CommandError};
use super::control::{ProtocolControl, UserControl};
use super::handshake::{ClientHandshake, HandshakeError};
use super::message::{type_id, RtmpMessage};
use crate::amf::Value;
use crate::rng::SeededRng;

/// What the server told the client.
#[derive(Debug, Clone, PartialEq)]
pub enum ClientEvent {
    /// The handshake finished; `connect` has been sent.
    HandshakeDone,
    /// `connect` was answered with `_result`.
    Connected,
    /// `connect` was refused (`_error`), with the info object's code.
    ConnectRejected(String),
    /// `createStream` returned this message stream id.
    StreamCreated(u32),
    /// `onStatus` on a stream: (stream id, code).
    Status(u32, String),
    /// Audio, video or data on a stream.
    Media(RtmpMessage),
    /// Any other command from the server.
    Command(Command),
    /// User control Stream EOF for a stream: the server has no more data for it (only after
    /// [`RtmpClient::report_stream_eof`]; nginx-rtmp says a publisher left this way only).
    StreamEof(u32),
}

/// Why the client gave up on the connection.
#[derive(Debug)]
#[non_exhaustive]
pub enum ClientError {
    /// The handshake failed.
    Handshake(HandshakeError),
    /// The chunk stream was malformed.
    Chunk(ChunkError),
    /// An aggregate message did not split into whole messages.
    Aggregate(AggregateError),
    /// A command could not be decoded.
    Command(CommandError),
}

impl std::fmt::Display for ClientError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ClientError::Handshake(e) => write!(f, "handshake: {e}"),
            ClientError::Chunk(e) => write!(f, "chunk stream: {e}"),
            ClientError::Command(e) => write!(f, "command: {e}"),
            ClientError::Aggregate(e) => write!(f, "aggregate message: {e}"),
        }
    }
}

impl std::error::Error for ClientError {}

/// Chunk stream ids the client sends on.
const CSID_CONTROL: u32 = 2;
const CSID_COMMAND: u32 = 3;
const CSID_AUDIO: u32 = 4;
const CSID_VIDEO: u32 = 6;
const CSID_DATA: u32 = 5;

/// The client side of an RTMP connection.
///
/// ```
/// use siprtmp_core::rtmp::client::RtmpClient;
/// use siprtmp_core::rng::SeededRng;
/// let mut client = RtmpClient::new(&mut SeededRng::new(1), "live", "rtmp://127.0.0.1/live");
/// let c0c1 = client.take_output().unwrap();
/// assert_eq!(c0c1.len(), 1 + 1536);
/// ```
#[derive(Debug)]
pub struct RtmpClient {
    handshake: Option<ClientHandshake>,
    decoder: ChunkDecoder,
    encoder: ChunkEncoder,
    out: VecDeque<Bytes>,
    events: VecDeque<ClientEvent>,
    app: String,
    tc_url: String,
    next_transaction: f64,
    connect_transaction: f64,
    object_encoding: f64,
    connect_info: Option<(bool, Value)>,
    connect_args: Vec<Value>,
    connect_properties: Vec<(String, Value)>,
    server_properties: Option<Value>,
    pending_create: VecDeque<f64>,
    rx_bytes: u64,
    /// Bytes left in the caller's buffer by the previous [`Self::received`] (an unfinished
    /// chunk), counted then: a caller that keeps its buffer hands them in again.
    unread: usize,
    acked: u64,
    window: u32,
    chunk_size: u32,
    report_stream_eof: bool,
}

impl RtmpClient {
    /// A client for `app` at `tc_url`; C0+C1 are queued at once.
    pub fn new(rng: &mut SeededRng, app: &str, tc_url: &str) -> Self {
        Self::with_limits(rng, app, tc_url, ChunkLimits::default())
    }

    /// [`Self::new`] whose chunk decoder holds what the server sends within `limits` (a
    /// server's own relays use its configured limits, as its clients' connections do).
    pub fn with_limits(rng: &mut SeededRng, app: &str, tc_url: &str, limits: ChunkLimits) -> Self {
        let (handshake, c0c1) = ClientHandshake::new(rng, 0, false);
        let mut out = VecDeque::new();
        out.push_back(c0c1);
        Self {
            handshake: Some(handshake),
            decoder: ChunkDecoder::new(limits),
            encoder: ChunkEncoder::new(),
            out,
            events: VecDeque::new(),
            app: app.to_owned(),
            tc_url: tc_url.to_owned(),
            next_transaction: 2.0,
            connect_transaction: 1.0,
            object_encoding: 0.0,
            connect_info: None,
            connect_args: Vec::new(),
            connect_properties: Vec::new(),
            server_properties: None,
            pending_create: VecDeque::new(),
            rx_bytes: 0,
            unread: 0,
            acked: 0,
            window: 0,
            chunk_size: 128,
            report_stream_eof: false,
        }
    }

    /// Reports Stream EOF user control events ([`ClientEvent::StreamEof`]); by default they
    /// are not reported.
    pub fn report_stream_eof(&mut self) {
        self.report_stream_eof = true;
    }

    /// Asks for a larger outgoing chunk size (sent as Set Chunk Size).
    pub fn set_chunk_size(&mut self, size: u32) {
        self.chunk_size = size;
        self.send(
            CSID_CONTROL,
            &ProtocolControl::SetChunkSize(size).to_message(),
        );
        self.encoder.set_chunk_size(size);
    }

    /// Asks for AMF3 (`3.0`) or AMF0 (`0.0`, the default) in `connect`; call before the
    /// handshake completes. With 3, `connect` itself goes out as an AMF3 command (type 17).
    pub fn set_object_encoding(&mut self, encoding: f64) {
        self.object_encoding = encoding;
    }

    /// Arguments sent after `connect`'s command object (the gateway's authName, authPass,
    /// displayName, rate); call before the handshake completes.
    ///
    /// ```
    /// use siprtmp_core::amf::Value;
    /// use siprtmp_core::rtmp::client::RtmpClient;
    /// use siprtmp_core::rng::SeededRng;
    /// let mut client = RtmpClient::new(&mut SeededRng::new(1), "sip/alice@example.net", "rtmp://h/sip/alice@example.net");
    /// client.set_connect_args(vec![Value::string("alice"), Value::string("secret")]);
    /// ```
    pub fn set_connect_args(&mut self, args: Vec<Value>) {
        self.connect_args = args;
    }

    /// Properties added to `connect`'s command object (an enhanced-RTMP client's `fourCcList`,
    /// `capsEx`...); call before the handshake completes.
    pub fn set_connect_properties(&mut self, properties: Vec<(String, Value)>) {
        self.connect_properties = properties;
    }

    /// The properties object of the server's `_result` to `connect` (`fmsVer`,
    /// `capabilities`...), once accepted.
    pub fn server_properties(&self) -> Option<&Value> {
        self.server_properties.as_ref()
    }

    /// The server's answer to `connect`, accepted (`_result`) or refused (`_error`): whether
    /// it came as an AMF3 command, and its info object (`code`, `description`,
    /// `objectEncoding`...).
    pub fn connect_info(&self) -> Option<&(bool, Value)> {
        self.connect_info.as_ref()
    }

    /// The bytes of unfinished messages the decoder held after the previous call, and now
    /// (see [`ChunkDecoder::take_partial_change`]): for a server that budgets them.
    pub fn take_partial_change(&mut self) -> (usize, usize) {
        self.decoder.take_partial_change()
    }

    /// The chunk size the client sends with (128 until [`Self::set_chunk_size`]).
    pub fn chunk_size(&self) -> u32 {
        self.encoder.chunk_size()
    }

    /// Bytes to send, in order.
    pub fn take_output(&mut self) -> Option<Bytes> {
        self.out.pop_front()
    }

    /// The next event.
    pub fn poll_event(&mut self) -> Option<ClientEvent> {
        self.events.pop_front()
    }

    fn send(&mut self, csid: u32, msg: &RtmpMessage) {
        let mut buf = BytesMut::with_capacity(msg.payload.len() + 16);
        self.encoder.encode(csid, msg, &mut buf);
        self.out.push_back(buf.freeze());
    }

    fn send_command(&mut self, stream_id: u32, cmd: Command) {
        let csid = if stream_id == 0 {
            CSID_COMMAND
        } else {
            CSID_DATA
        };
        self.send(csid, &cmd.to_message(stream_id));
    }

    fn transaction(&mut self) -> f64 {
        let t = self.next_transaction;
        self.next_transaction += 1.0;
        t
    }

    /// Sends `createStream`; [`ClientEvent::StreamCreated`] follows.
    pub fn create_stream(&mut self) {
        let t = self.transaction();
        self.pending_create.push_back(t);
        self.send_command(0, Command::new("createStream", t, Value::Null, vec![]));
    }

    /// Sends `publish(name, "live")` on `stream_id`.
    pub fn publish(&mut self, stream_id: u32, name: &str) {
        self.publish_as(stream_id, name, "live");
    }

    /// Sends `publish(name, kind)` on `stream_id`: `kind` is `live`, `record` (the server
    /// records it, and says how that goes) or `append`.
    pub fn publish_as(&mut self, stream_id: u32, name: &str, kind: &str) {
        let t = self.transaction();
        let args = vec![Value::string(name), Value::string(kind)];
        self.send_command(stream_id, Command::new("publish", t, Value::Null, args));
    }

    /// Sends `play(name, start)` on `stream_id`.
    pub fn play(&mut self, stream_id: u32, name: &str, start: f64) {
        let t = self.transaction();
        let args = vec![Value::string(name), Value::Number(start)];
        self.send_command(stream_id, Command::new("play", t, Value::Null, args));
    }

    /// Sends any command on `stream_id` (with a fresh transaction id).
    pub fn call(&mut self, stream_id: u32, name: &str, args: Vec<Value>) {
        let t = self.transaction();
        self.send_command(stream_id, Command::new(name, t, Value::Null, args));
    }

    /// Sends an audio, video or data message (its stream id and timestamp as given).
    pub fn send_media(&mut self, msg: &RtmpMessage) {
        let csid = match msg.type_id {
            type_id::AUDIO => CSID_AUDIO,
            type_id::VIDEO => CSID_VIDEO,
            _ => CSID_DATA,
        };
        self.send(csid, msg);
    }

    /// Feeds bytes from the server. What it cannot use yet (an unfinished chunk) stays in
    /// `buf`: hand it in again with the bytes that follow appended (those are the only ones
    /// counted toward acknowledgements the second time).
    pub fn received(&mut self, buf: &mut BytesMut) -> Result<(), ClientError> {
        self.rx_bytes += buf.len().saturating_sub(self.unread) as u64;
        let result = self.receive_all(buf);
        self.unread = buf.len();
        result
    }

    fn receive_all(&mut self, buf: &mut BytesMut) -> Result<(), ClientError> {
        if let Some(handshake) = &mut self.handshake {
            if let Some(c2) = handshake.receive(buf).map_err(ClientError::Handshake)? {
                self.out.push_back(c2);
            }
            if !handshake.is_complete() {
                return Ok(());
            }
            self.handshake = None;
            self.events.push_back(ClientEvent::HandshakeDone);
            let mut object = Value::object([
                ("app", Value::string(self.app.clone())),
                ("flashVer", Value::string("LNX 9,0,124,2")),
                ("tcUrl", Value::string(self.tc_url.clone())),
                ("fpad", Value::Boolean(false)),
                ("capabilities", Value::Number(15.0)),
                ("audioCodecs", Value::Number(4071.0)),
                ("videoCodecs", Value::Number(252.0)),
                ("videoFunction", Value::Number(1.0)),
                ("objectEncoding", Value::Number(self.object_encoding)),
            ]);
            if let Value::Object { properties, .. } = &mut object {
                properties.extend(self.connect_properties.iter().cloned());
            }
            let t = self.connect_transaction;
            let mut connect = Command::new("connect", t, object, self.connect_args.clone());
            // Flash Player sends connect as an AMF3 command when it asks for AMF3.
            connect.amf3 = self.object_encoding == 3.0;
            self.send_command(0, connect);
        }
        while let Some(msg) = self.decoder.decode(buf).map_err(ClientError::Chunk)? {
            self.handle(msg)?;
        }
        if self.window > 0 && self.rx_bytes - self.acked >= u64::from(self.window) {
            self.acked = self.rx_bytes;
            let ack = ProtocolControl::Acknowledgement(self.rx_bytes as u32).to_message();
            self.send(CSID_CONTROL, &ack);
        }
        Ok(())
    }

    fn handle(&mut self, msg: RtmpMessage) -> Result<(), ClientError> {
        match msg.type_id {
            type_id::SET_CHUNK_SIZE | type_id::WINDOW_ACK_SIZE | type_id::ABORT => {
                match ProtocolControl::parse(&msg) {
                    Ok(ProtocolControl::SetChunkSize(n)) => {
                        self.decoder.set_chunk_size(n).map_err(ClientError::Chunk)?
                    }
                    Ok(ProtocolControl::WindowAckSize(n)) => self.window = n,
                    Ok(ProtocolControl::Abort(csid)) => self.decoder.abort(csid),
                    _ => {}
                }
            }
            type_id::USER_CONTROL => match UserControl::parse(&msg.payload) {
                Ok(UserControl::PingRequest(stamp)) => {
                    self.send(CSID_CONTROL, &UserControl::PingResponse(stamp).to_message());
                }
                Ok(UserControl::StreamEof(stream)) if self.report_stream_eof => {
                    self.events.push_back(ClientEvent::StreamEof(stream));
                }
                _ => {}
            },
            type_id::AUDIO | type_id::VIDEO | type_id::DATA_AMF0 | type_id::DATA_AMF3 => {
                self.events.push_back(ClientEvent::Media(msg))
            }
            type_id::COMMAND_AMF0 | type_id::COMMAND_AMF3 => {
                let cmd = Command::parse(&msg).map_err(ClientError::Command)?;
                self.handle_command(msg.stream_id, cmd);
            }
            // Servers that batch media (Flash Media Server, Wowza) send audio, video and data
            // as aggregates: each part is delivered as the message it would have been. Parts
            // that are themselves aggregates are not opened, so nesting cannot recurse.
            type_id::AGGREGATE => {
                for part in split_aggregate(&msg).map_err(ClientError::Aggregate)? {
                    if matches!(
                        part.type_id,
                        type_id::AUDIO | type_id::VIDEO | type_id::DATA_AMF0 | type_id::DATA_AMF3
                    ) {
                        self.events.push_back(ClientEvent::Media(part));
                    }
                }
            }
            _ => {}
        }
        Ok(())
    }

    fn handle_command(&mut self, stream_id: u32, cmd: Command) {
        let code = |v: Option<&Value>| {
            v.and_then(|o| o.get("code"))
                .and_then(Value::as_str)
                .unwrap_or("")
                .to_owned()
        };
        match cmd.name.as_str() {
            "_result" if cmd.transaction_id == self.connect_transaction => {
                let info = cmd.args.first().cloned().unwrap_or(Value::Null);
                self.connect_info = Some((cmd.amf3, info));
                self.server_properties = Some(cmd.command_object);
                self.events.push_back(ClientEvent::Connected)
            }
            "_error" if cmd.transaction_id == self.connect_transaction => {
                let info = cmd.args.first().cloned().unwrap_or(Value::Null);
                self.events
                    .push_back(ClientEvent::ConnectRejected(code(Some(&info))));
                self.connect_info = Some((cmd.amf3, info));
            }
            "_result" if self.pending_create.front() == Some(&cmd.transaction_id) => {
                self.pending_create.pop_front();
                let id = cmd.args.first().and_then(Value::as_f64).unwrap_or(0.0);
                self.events.push_back(ClientEvent::StreamCreated(id as u32));
            }
            "onStatus" => {
                let code = code(cmd.args.first());
                self.events.push_back(ClientEvent::Status(stream_id, code));
            }
            _ => self.events.push_back(ClientEvent::Command(cmd)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rtmp::aggregate::tests::tag;
    use crate::rtmp::handshake::ServerHandshake;

    /// A client past its handshake with the core's own server handshake.
    fn handshaken() -> RtmpClient {
        let mut rng = SeededRng::new(7);
        let mut client = RtmpClient::new(&mut rng, "live", "rtmp://127.0.0.1/live");
        let mut server = ServerHandshake::new(&mut rng, 0);
        let mut to_server = BytesMut::new();
        while let Some(bytes) = client.take_output() {
            to_server.extend_from_slice(&bytes);
        }
        let s0s1s2 = server.receive(&mut to_server).unwrap().expect("S0+S1+S2");
        client
            .received(&mut BytesMut::from(&s0s1s2[..]))
            .expect("handshake");
        while client.take_output().is_some() {}
        client
    }

    fn media_events(client: &mut RtmpClient) -> Vec<(u8, u32, Vec<u8>)> {
        let mut media = Vec::new();
        while let Some(event) = client.poll_event() {
            if let ClientEvent::Media(m) = event {
                media.push((m.type_id, m.timestamp, m.payload.to_vec()));
            }
        }
        media
    }

    #[test]
    fn an_aggregate_from_the_server_is_delivered_as_its_messages() {
        let mut client = handshaken();
        let mut body = tag(type_id::AUDIO, 1000, &[0xaf, 0x01, 7]);
        body.extend(tag(type_id::VIDEO, 1040, &[0x17, 0x01, 9, 9]));
        // A nested aggregate is not opened (no recursion on hostile nesting).
        body.extend(tag(type_id::AGGREGATE, 1050, &tag(type_id::AUDIO, 0, &[1])));
        let aggregate = RtmpMessage::new(type_id::AGGREGATE, 1, 5000, body);
        let mut wire = BytesMut::new();
        ChunkEncoder::new().encode(6, &aggregate, &mut wire);
        client.received(&mut wire).unwrap();
        assert_eq!(
            media_events(&mut client),
            vec![
                (type_id::AUDIO, 5000, vec![0xaf, 0x01, 7]),
                (type_id::VIDEO, 5040, vec![0x17, 0x01, 9, 9]),
            ]
        );
    }

    #[test]
    fn a_truncated_aggregate_is_an_error() {
        let mut client = handshaken();
        let mut body = tag(type_id::AUDIO, 0, &[0xaf, 0x01, 7]);
        body.truncate(body.len() - 6);
        let mut wire = BytesMut::new();
        let aggregate = RtmpMessage::new(type_id::AGGREGATE, 1, 0, body);
        ChunkEncoder::new().encode(6, &aggregate, &mut wire);
        assert!(matches!(
            client.received(&mut wire),
            Err(ClientError::Aggregate(_))
        ));
    }
}
