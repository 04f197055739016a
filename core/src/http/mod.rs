//! HTTP/1.1 as much as the node's own HTTP listener needs (`crate::admin`): a bounded request
//! parser ([`request`]), a path segment's percent-decoding ([`percent`]) and a response
//! writer ([`response`]). No sockets: bytes in, a parsed
//! request or an error out; a response in, bytes out.
//!
//! Only what a metrics scraper, `curl` or a small API client sends is accepted: a request line
//! in origin form, HTTP/1.0 or 1.1, a few KiB of headers, and a body only with a small
//! `Content-Length` (no chunked bodies).
//!
//! For the node's own HTTP client (the callbacks, `crate::admin::callbacks`): a bounded
//! response parser ([`response_parser`]) and the callbacks' settings ([`CallbacksConfig`]).

mod callback_config;
mod config;
pub mod percent;
pub mod request;
pub mod response;
pub mod response_parser;

pub use callback_config::{CallbackUrl, CallbacksConfig, FailurePolicy};
pub use config::HttpConfig;
