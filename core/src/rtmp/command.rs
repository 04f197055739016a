//! RTMP command and data messages: the AMF-encoded remote calls (`connect`, `play`, `_result`,
//! `onStatus`, `@setDataFrame`...) carried by message types 20/17 and 18/15.

use bytes::Bytes;

use super::message::{type_id, RtmpMessage};
use crate::amf::{amf0, AmfError, Value};

/// A decoded command message: `name`, transaction id, command object, then the arguments.
#[derive(Debug, Clone, PartialEq)]
pub struct Command {
    /// The procedure name (`connect`, `publish`, `_result`...).
    pub name: String,
    /// The transaction id the answer must carry (0 when no answer is expected).
    pub transaction_id: f64,
    /// The command object (often `null`).
    pub command_object: Value,
    /// The remaining arguments.
    pub args: Vec<Value>,
    /// Whether it arrived as an AMF3 command (type 17), so the answer goes the same way.
    pub amf3: bool,
}

/// Why a command or data message could not be decoded.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum CommandError {
    /// The message is not a command (or data) message.
    NotACommand(u8),
    /// The AMF body is malformed.
    Amf(AmfError),
    /// The body does not start with a string name and a numeric transaction id.
    BadShape,
}

impl std::fmt::Display for CommandError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            CommandError::NotACommand(t) => write!(f, "message type {t} is not a command"),
            CommandError::Amf(e) => write!(f, "malformed command: {e}"),
            CommandError::BadShape => write!(f, "command lacks a name or transaction id"),
        }
    }
}

impl std::error::Error for CommandError {}

impl From<AmfError> for CommandError {
    fn from(e: AmfError) -> Self {
        CommandError::Amf(e)
    }
}

/// The AMF0 values of a command (17/20) or data (15/18) message body. Type 17 and 15 bodies
/// start with a format byte (0 = AMF0 with optional AVM+ switches).
pub fn message_values(msg: &RtmpMessage) -> Result<Vec<Value>, CommandError> {
    let body: &[u8] = match msg.type_id {
        type_id::COMMAND_AMF0 | type_id::DATA_AMF0 => &msg.payload,
        type_id::COMMAND_AMF3 | type_id::DATA_AMF3 => match msg.payload.split_first() {
            Some((_, rest)) => rest,
            None => return Err(CommandError::BadShape),
        },
        other => return Err(CommandError::NotACommand(other)),
    };
    Ok(amf0::decode_all(body)?)
}

impl Command {
    /// Decodes a command message (type 20 or 17).
    ///
    /// ```
    /// use siprtmp_core::amf::Value;
    /// use siprtmp_core::rtmp::command::Command;
    /// let cmd = Command::new("createStream", 2.0, Value::Null, vec![]);
    /// let back = Command::parse(&cmd.to_message(0)).unwrap();
    /// assert_eq!(back.name, "createStream");
    /// assert_eq!(back.transaction_id, 2.0);
    /// ```
    pub fn parse(msg: &RtmpMessage) -> Result<Self, CommandError> {
        if !matches!(msg.type_id, type_id::COMMAND_AMF0 | type_id::COMMAND_AMF3) {
            return Err(CommandError::NotACommand(msg.type_id));
        }
        let mut values = message_values(msg)?.into_iter();
        let name = match values.next() {
            Some(Value::String(s)) => s,
            _ => return Err(CommandError::BadShape),
        };
        let transaction_id = values.next().and_then(|v| v.as_f64()).unwrap_or(0.0);
        let command_object = values.next().unwrap_or(Value::Null);
        Ok(Command {
            name,
            transaction_id,
            command_object,
            args: values.collect(),
            amf3: msg.type_id == type_id::COMMAND_AMF3,
        })
    }

    /// A command to send (AMF0).
    pub fn new(name: &str, transaction_id: f64, command_object: Value, args: Vec<Value>) -> Self {
        Command {
            name: name.to_owned(),
            transaction_id,
            command_object,
            args,
            amf3: false,
        }
    }

    /// Encodes the command as a message on `stream_id` (type 17 when `amf3` is set).
    pub fn to_message(&self, stream_id: u32) -> RtmpMessage {
        let mut body = Vec::with_capacity(128);
        if self.amf3 {
            body.push(0);
        }
        amf0::encode(&Value::String(self.name.clone()), &mut body);
        amf0::encode(&Value::Number(self.transaction_id), &mut body);
        amf0::encode(&self.command_object, &mut body);
        for arg in &self.args {
            amf0::encode(arg, &mut body);
        }
        let type_id = if self.amf3 {
            type_id::COMMAND_AMF3
        } else {
            type_id::COMMAND_AMF0
        };
        RtmpMessage::new(type_id, stream_id, 0, Bytes::from(body))
    }
}

/// An AMF0 data message (type 18) from its values, e.g. `onMetaData` or `|RtmpSampleAccess`.
pub fn data_message(stream_id: u32, timestamp: u32, values: &[Value]) -> RtmpMessage {
    RtmpMessage::new(
        type_id::DATA_AMF0,
        stream_id,
        timestamp,
        Bytes::from(amf0::encode_all(values)),
    )
}

/// The info object of an `onStatus` call or a `_result`/`_error` answer.
pub fn status_object(level: &str, code: &str, description: &str) -> Value {
    Value::object([
        ("level", Value::string(level)),
        ("code", Value::string(code)),
        ("description", Value::string(description)),
    ])
}
