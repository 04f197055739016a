//! The RTMP client API of the gateway (app `sip`), as the Flash VideoPhone and clients built on
//! its API call it: what `connect` carries, the calls a client may make, and the callbacks the
//! gateway makes on the client.
//!
//! Only the calls listed in [`ClientCall`] are callable; anything else is refused, so a client
//! cannot reach any other method of the gateway.

use crate::amf::Value;

use super::codecs::{parse_tokens, CodecToken};

/// What a client's `connect` to `rtmp://host/sip/<user@domain>` says.
#[derive(Debug, Clone, PartialEq)]
pub struct ConnectRequest {
    /// The address of record, `user@domain`, from the connect URL's path after `sip/`.
    pub aor: String,
    /// Authentication name (defaults to the AOR's user part).
    pub auth_name: Option<String>,
    /// Password; a REGISTER is sent only when one is given.
    pub auth_pass: Option<String>,
    /// Display name for From headers.
    pub display_name: Option<String>,
    /// `narrowband` asks for Speex at 8 kHz in the legacy offer; `wideband` (the default) 16 kHz.
    pub narrowband: bool,
}

/// Why a `connect` to the gateway is refused before any SIP is sent.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum ConnectError {
    /// The URL does not name `user@domain` after the application.
    MissingAddress,
}

impl std::fmt::Display for ConnectError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ConnectError::MissingAddress => write!(f, "connect URL must be sip/<user@domain>"),
        }
    }
}

fn non_empty_string(v: Option<&Value>) -> Option<String> {
    v.and_then(Value::as_str)
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
}

impl ConnectRequest {
    /// Reads the connect's `app` (e.g. `sip/alice@example.net`) and its extra arguments
    /// (authName, authPass, displayName[, rate]).
    ///
    /// ```
    /// use siprtmp_core::amf::Value;
    /// use siprtmp_core::gateway::client_api::ConnectRequest;
    /// let args = [Value::string("alice"), Value::string("secret"), Value::string("Alice")];
    /// let req = ConnectRequest::parse("sip/alice@example.net", &args).unwrap();
    /// assert_eq!(req.aor, "alice@example.net");
    /// assert_eq!(req.auth_pass.as_deref(), Some("secret"));
    /// assert!(!req.narrowband);
    /// ```
    pub fn parse(app: &str, args: &[Value]) -> Result<Self, ConnectError> {
        let aor = app
            .split_once('/')
            .map(|(_, rest)| rest.trim_matches('/'))
            .filter(|a| a.contains('@') && !a.starts_with('@') && !a.ends_with('@'))
            .ok_or(ConnectError::MissingAddress)?;
        Ok(Self {
            aor: aor.to_owned(),
            auth_name: non_empty_string(args.first()),
            auth_pass: non_empty_string(args.get(1)),
            display_name: non_empty_string(args.get(2)),
            narrowband: args
                .get(3)
                .and_then(Value::as_str)
                .is_some_and(|r| r.eq_ignore_ascii_case("narrowband")),
        })
    }
}

/// A call the client makes on the gateway.
#[derive(Debug, Clone, PartialEq)]
pub enum ClientCall {
    /// `invite(dest, codecs...)`: place a call.
    Invite {
        /// The destination (`sip:bob@example.net` or `bob@example.net`).
        dest: String,
        /// Codec tokens, most preferred first (empty: the legacy offer).
        codecs: Vec<CodecToken>,
    },
    /// `accept(codecs...)`: answer the incoming call.
    Accept {
        /// Codec tokens (empty: the legacy set).
        codecs: Vec<CodecToken>,
    },
    /// `reject(reason)`: refuse the incoming call.
    Reject {
        /// SIP status (a leading 3-digit code of the reason, else 603).
        status: u16,
        /// Reason phrase.
        reason: String,
    },
    /// `bye()`: CANCEL a pending call, BYE an established one.
    Bye,
    /// `sendDTMF(digit)`.
    SendDtmf(char),
    /// `hold(true|false)`.
    Hold(bool),
}

/// Why a client call is refused (answered with `_error`).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum CallError {
    /// Not one of the gateway's calls.
    NotCallable(String),
    /// A required argument is missing or of the wrong type.
    BadArgument(&'static str),
}

impl std::fmt::Display for CallError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            CallError::NotCallable(name) => write!(f, "'{name}' is not callable on the gateway"),
            CallError::BadArgument(what) => write!(f, "bad argument: {what}"),
        }
    }
}

/// Splits a reject reason: `"486 Busy Here"` is status 486 with reason `Busy Here`; anything
/// without a leading 3-digit code in 300..=699 is `603` with the whole text as reason.
///
/// ```
/// use siprtmp_core::gateway::client_api::reject_status;
/// assert_eq!(reject_status("486 Busy Here"), (486, "Busy Here".to_string()));
/// assert_eq!(reject_status("not now"), (603, "not now".to_string()));
/// ```
pub fn reject_status(reason: &str) -> (u16, String) {
    let reason = reason.trim();
    let code = reason
        .get(..3)
        .filter(|c| c.bytes().all(|b| b.is_ascii_digit()))
        .and_then(|c| c.parse::<u16>().ok())
        .filter(|c| (300..=699).contains(c))
        .filter(|_| reason.len() == 3 || reason.as_bytes()[3] == b' ');
    match code {
        Some(code) => {
            let rest = reason[3..].trim();
            let phrase = if rest.is_empty() { "Declined" } else { rest };
            (code, phrase.to_owned())
        }
        None if reason.is_empty() => (603, "Decline".to_owned()),
        None => (603, reason.to_owned()),
    }
}

fn tokens(args: &[Value]) -> Vec<CodecToken> {
    parse_tokens(args.iter().filter_map(Value::as_str))
}

impl ClientCall {
    /// Parses a call by name and arguments (after the command object).
    ///
    /// ```
    /// use siprtmp_core::amf::Value;
    /// use siprtmp_core::gateway::client_api::ClientCall;
    /// let call = ClientCall::parse("invite", &[Value::string("sip:bob@example.net"), Value::string("pcmu")]).unwrap();
    /// assert!(matches!(call, ClientCall::Invite { .. }));
    /// assert!(ClientCall::parse("deleteEverything", &[]).is_err());
    /// ```
    pub fn parse(name: &str, args: &[Value]) -> Result<Self, CallError> {
        Ok(match name {
            "invite" => ClientCall::Invite {
                dest: args
                    .first()
                    .and_then(Value::as_str)
                    .filter(|d| !d.is_empty())
                    .ok_or(CallError::BadArgument("invite needs a destination"))?
                    .to_owned(),
                codecs: tokens(args.get(1..).unwrap_or(&[])),
            },
            "accept" => ClientCall::Accept {
                codecs: tokens(args),
            },
            "reject" => {
                let text = args.first().and_then(Value::as_str).unwrap_or("");
                let (status, reason) = reject_status(text);
                ClientCall::Reject { status, reason }
            }
            "bye" => ClientCall::Bye,
            "sendDTMF" => {
                let digit = args
                    .first()
                    .and_then(Value::as_str)
                    .and_then(|s| s.chars().next())
                    .filter(|c| c.is_ascii_digit() || "*#ABCDabcd".contains(*c))
                    .ok_or(CallError::BadArgument(
                        "sendDTMF needs a digit 0-9, *, #, A-D",
                    ))?;
                ClientCall::SendDtmf(digit.to_ascii_uppercase())
            }
            "hold" => ClientCall::Hold(args.first().and_then(Value::as_bool).unwrap_or(true)),
            other => return Err(CallError::NotCallable(other.to_owned())),
        })
    }
}

/// A callback the gateway makes on the client (an RTMP command with transaction id 0).
#[derive(Debug, Clone, PartialEq)]
pub enum ClientCallback {
    /// `invited(from, to)`: an incoming call.
    Invited {
        /// The caller's From, as a SIP address string.
        from: String,
        /// The To.
        to: String,
    },
    /// `cancelled(from, to)`: the caller gave up before we answered.
    Cancelled {
        /// The caller's From.
        from: String,
        /// The To.
        to: String,
    },
    /// `ringing(reason)`: the far end is alerting.
    Ringing(String),
    /// `accepted()` or `accepted(audioCodec, videoCodec)` when codec tokens were used.
    Accepted {
        /// The negotiated audio and video codec names, when the client used tokens.
        codecs: Option<(Option<CodecToken>, Option<CodecToken>)>,
    },
    /// `rejected(reason)`: the call failed or was refused, e.g. `486 Busy Here`.
    Rejected(String),
    /// `byed()`: the call ended.
    Byed,
    /// `holded(bool)`: the far end put us on hold (true) or resumed (false).
    Holded(bool),
    /// `dtmf(digit)`: a telephone-event arrived.
    Dtmf(char),
    /// `registrationFailed(reason)`: a registration refresh failed (e.g. `408 Request
    /// Timeout`); incoming calls no longer reach the client.
    RegistrationFailed(String),
}

impl ClientCallback {
    /// The command name and arguments to send.
    pub fn to_call(&self) -> (&'static str, Vec<Value>) {
        match self {
            ClientCallback::Invited { from, to } => (
                "invited",
                vec![Value::string(from.clone()), Value::string(to.clone())],
            ),
            ClientCallback::Cancelled { from, to } => (
                "cancelled",
                vec![Value::string(from.clone()), Value::string(to.clone())],
            ),
            ClientCallback::Ringing(reason) => ("ringing", vec![Value::string(reason.clone())]),
            ClientCallback::Accepted { codecs: None } => ("accepted", vec![]),
            ClientCallback::Accepted {
                codecs: Some((audio, video)),
            } => {
                let name = |t: &Option<CodecToken>| match t {
                    Some(t) => Value::string(t.name()),
                    None => Value::Null,
                };
                ("accepted", vec![name(audio), name(video)])
            }
            ClientCallback::Rejected(reason) => ("rejected", vec![Value::string(reason.clone())]),
            ClientCallback::Byed => ("byed", vec![]),
            ClientCallback::Holded(on) => ("holded", vec![Value::Boolean(*on)]),
            ClientCallback::Dtmf(digit) => ("dtmf", vec![Value::string(digit.to_string())]),
            ClientCallback::RegistrationFailed(reason) => {
                ("registrationFailed", vec![Value::string(reason.clone())])
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn connect_needs_an_address_of_record() {
        assert_eq!(
            ConnectRequest::parse("sip", &[]),
            Err(ConnectError::MissingAddress)
        );
        assert_eq!(
            ConnectRequest::parse("sip/alice", &[]),
            Err(ConnectError::MissingAddress)
        );
        let r = ConnectRequest::parse(
            "sip/bob@example.net",
            &[
                Value::Null,
                Value::string(""),
                Value::Null,
                Value::string("narrowband"),
            ],
        )
        .unwrap();
        assert_eq!(r.auth_pass, None, "an empty password means no REGISTER");
        assert!(r.narrowband);
    }

    #[test]
    fn reject_reasons() {
        assert_eq!(reject_status("486"), (486, "Declined".into()));
        assert_eq!(reject_status("4860 nope"), (603, "4860 nope".into()));
        assert_eq!(
            reject_status("200 OK"),
            (603, "200 OK".into()),
            "not a failure code"
        );
        assert_eq!(reject_status(""), (603, "Decline".into()));
    }

    #[test]
    fn only_the_gateway_calls_are_callable() {
        for name in ["invite", "accept", "reject", "bye", "sendDTMF", "hold"] {
            let args = [Value::string("1")];
            assert!(ClientCall::parse(name, &args).is_ok(), "{name}");
        }
        for name in ["register", "__init__", "close", "publish"] {
            assert_eq!(
                ClientCall::parse(name, &[]),
                Err(CallError::NotCallable(name.into()))
            );
        }
        assert!(ClientCall::parse("sendDTMF", &[Value::string("x")]).is_err());
        assert!(ClientCall::parse("invite", &[]).is_err());
    }

    #[test]
    fn accepted_reports_token_names() {
        let cb = ClientCallback::Accepted {
            codecs: Some((Some(CodecToken::Pcmu), None)),
        };
        assert_eq!(
            cb.to_call(),
            ("accepted", vec![Value::string("pcmu"), Value::Null])
        );
    }
}
