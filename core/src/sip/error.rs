//! [`SipError`]: why bytes could not be parsed as a SIP message, or why a header value could
//! not be read as the type its accessor promises.

use std::fmt;

/// Which [`ParseLimits`](super::ParseLimits) bound a peer exceeded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Limit {
    /// More header fields than `max_headers`.
    Headers,
    /// A physical line longer than `max_line`.
    Line,
    /// A declared body longer than `max_body`.
    Body,
    /// Start line plus headers plus body longer than `max_message`.
    Message,
}

/// A parse or typed-access failure. The parser never panics on hostile bytes; it returns one of
/// these, and the caller decides whether to answer 400, 505 or simply drop the datagram.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum SipError {
    /// The input ended before the blank line that terminates the header section.
    Incomplete,
    /// The start line is neither a valid Request-Line nor a valid Status-Line.
    BadStartLine(&'static str),
    /// A well-formed `SIP/x.y` version other than 2.0 (a UAS answers 505).
    UnsupportedVersion(String),
    /// The header section is not valid UTF-8.
    InvalidUtf8,
    /// A header line without a colon, with an empty or non-token name, or a continuation line
    /// with no header before it.
    BadHeaderLine,
    /// A header value that does not match its grammar.
    BadHeader {
        /// The header name as it appeared in the message.
        name: String,
        /// What was wrong with it.
        reason: &'static str,
    },
    /// A URI that does not match the SIP-URI grammar (or no scheme at all).
    BadUri(&'static str),
    /// A header that the caller asked for is absent.
    MissingHeader(&'static str),
    /// Content-Length is not a non-negative decimal integer.
    InvalidContentLength,
    /// Several Content-Length headers disagree, so the body cannot be framed.
    ConflictingContentLength,
    /// A message on a stream transport without Content-Length (RFC 3261 18.3 makes it
    /// mandatory there).
    MissingContentLength,
    /// Content-Length announces more bytes than the datagram holds.
    TruncatedBody {
        /// Declared Content-Length.
        declared: usize,
        /// Bytes actually present after the header section.
        available: usize,
    },
    /// The CSeq method differs from the Request-Line method.
    CSeqMethodMismatch,
    /// A configured bound was exceeded.
    LimitExceeded(Limit),
}

impl fmt::Display for SipError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SipError::Incomplete => write!(f, "SIP message ends inside its header section"),
            SipError::BadStartLine(why) => write!(f, "bad SIP start line: {why}"),
            SipError::UnsupportedVersion(v) => write!(f, "unsupported SIP version {v:?}"),
            SipError::InvalidUtf8 => write!(f, "SIP header section is not valid UTF-8"),
            SipError::BadHeaderLine => write!(f, "malformed SIP header line"),
            SipError::BadHeader { name, reason } => {
                write!(f, "bad SIP header {name:?}: {reason}")
            }
            SipError::BadUri(why) => write!(f, "bad SIP URI: {why}"),
            SipError::MissingHeader(name) => write!(f, "SIP header {name} is missing"),
            SipError::InvalidContentLength => write!(f, "Content-Length is not a valid length"),
            SipError::ConflictingContentLength => {
                write!(f, "several Content-Length headers disagree")
            }
            SipError::MissingContentLength => {
                write!(f, "Content-Length is mandatory on stream transports")
            }
            SipError::TruncatedBody {
                declared,
                available,
            } => write!(
                f,
                "Content-Length {declared} exceeds the {available} body bytes present"
            ),
            SipError::CSeqMethodMismatch => {
                write!(f, "CSeq method does not match the request method")
            }
            SipError::LimitExceeded(limit) => write!(f, "SIP parse limit exceeded: {limit:?}"),
        }
    }
}

impl std::error::Error for SipError {}

impl SipError {
    /// Shorthand for [`SipError::BadHeader`].
    pub(crate) fn header(name: &str, reason: &'static str) -> SipError {
        SipError::BadHeader {
            name: name.to_string(),
            reason,
        }
    }
}
