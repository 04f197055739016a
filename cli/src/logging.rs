//! Where and how log lines go: always to stderr (journald and container runtimes collect it),
//! as text or as one JSON object per line (`--log-format`, config key `log_format`). Text has
//! ANSI colours only when stderr is a terminal and `NO_COLOR` is unset, so a journal or a
//! file never holds escape codes.

use std::io::IsTerminal;

use serde::Deserialize;
use tracing_subscriber::EnvFilter;

/// How log lines are written.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub(crate) enum LogFormat {
    /// `TIMESTAMP LEVEL TARGET: message key=value`, for people.
    #[default]
    Text,
    /// One JSON object per line: `timestamp` (RFC 3339, UTC), `level`, `target`, `message`
    /// and the event's fields; for log collectors.
    Json,
}

/// Installs the global subscriber: `info` (or `debug` when `verbose`) unless `RUST_LOG`
/// says otherwise.
pub(crate) fn init(format: LogFormat, verbose: bool) {
    let default_level = if verbose { "debug" } else { "info" };
    let filter =
        EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default_level));
    // A log line that cannot be written (stderr closed: the collector went away) is dropped;
    // reporting it would print to that same stderr, which panics.
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .log_internal_errors(false);
    match format {
        LogFormat::Text => {
            let colour = std::io::stderr().is_terminal() && std::env::var_os("NO_COLOR").is_none();
            builder.with_ansi(colour).init();
        }
        // Fields at the top level of the object (not under "fields"), no span context: the
        // binary's events carry what they need as fields.
        LogFormat::Json => builder
            .json()
            .flatten_event(true)
            .with_current_span(false)
            .with_span_list(false)
            .init(),
    }
}
