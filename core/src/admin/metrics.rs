//! `GET /metrics`: the node's figures in the Prometheus text exposition format 0.0.4, named as
//! Prometheus's conventions say (`siprtmp_` prefix, `_total` counters, bytes and seconds).
//! Counters come from the server's plain integers; gauges are read off its state at the
//! scrape. The list, with what each means, is in the cli's `METRICS.md`.

use std::fmt::Write;

use crate::gateway::stats::Histogram;

use crate::io::ProcessStats;
use crate::server::CLOSE_KINDS;

use super::report::WorkerReport;

/// The content type of the exposition.
pub(crate) const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// Exposition text being written, one metric family at a time.
#[derive(Debug, Default)]
pub(crate) struct Exposition {
    out: String,
}

impl Exposition {
    /// Starts a family: its help line and type.
    pub(crate) fn family(&mut self, name: &str, kind: &str, help: &str) -> &mut Self {
        let _ = writeln!(self.out, "# HELP {name} {help}");
        let _ = writeln!(self.out, "# TYPE {name} {kind}");
        self
    }

    /// One sample of the current family, with labels (values escaped).
    pub(crate) fn sample(&mut self, name: &str, labels: &[(&str, &str)], value: u64) -> &mut Self {
        self.out.push_str(name);
        self.labels(labels);
        let _ = writeln!(self.out, " {value}");
        self
    }

    /// `{label="value",...}`, if there are labels.
    fn labels(&mut self, labels: &[(&str, &str)]) {
        if !labels.is_empty() {
            self.out.push('{');
            for (i, (label, value)) in labels.iter().enumerate() {
                if i > 0 {
                    self.out.push(',');
                }
                self.out.push_str(label);
                self.out.push_str("=\"");
                escape_label_value(&mut self.out, value);
                self.out.push('"');
            }
            self.out.push('}');
        }
    }

    /// One sample with a fractional value (a histogram's sum, in seconds).
    pub(crate) fn sample_f64(
        &mut self,
        name: &str,
        labels: &[(&str, &str)],
        value: f64,
    ) -> &mut Self {
        self.out.push_str(name);
        self.labels(labels);
        let _ = writeln!(self.out, " {value}");
        self
    }

    /// A histogram's samples under `name` (its family started): cumulative `_bucket`s up to
    /// `+Inf`, `_sum` in seconds and `_count`, each with `labels`.
    pub(crate) fn histogram(
        &mut self,
        name: &str,
        labels: &[(&str, &str)],
        bounds: &[f64],
        histogram: &Histogram,
    ) -> &mut Self {
        let bucket = format!("{name}_bucket");
        let mut cumulative = 0;
        for (i, bound) in bounds.iter().enumerate() {
            cumulative += histogram.counts[i];
            let le = bound.to_string();
            let mut with_le = labels.to_vec();
            with_le.push(("le", &le));
            self.sample(&bucket, &with_le, cumulative);
        }
        let mut with_le = labels.to_vec();
        with_le.push(("le", "+Inf"));
        self.sample(&bucket, &with_le, histogram.count);
        let sum = histogram.sum_micros as f64 / 1e6;
        self.sample_f64(&format!("{name}_sum"), labels, sum);
        self.sample(&format!("{name}_count"), labels, histogram.count)
    }

    /// A family of one unlabelled sample.
    pub(crate) fn single(&mut self, name: &str, kind: &str, help: &str, value: u64) -> &mut Self {
        self.family(name, kind, help).sample(name, &[], value)
    }

    pub(crate) fn finish(self) -> String {
        self.out
    }
}

/// A label value as the format wants it: backslash, double quote and line feed escaped.
fn escape_label_value(out: &mut String, value: &str) {
    for c in value.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
}

/// The RTMP server's families, from the whole server's report (the gateway's and the
/// process's follow, see `super::gateway_metrics` and [`render_process`]).
pub(crate) fn render_server(report: &WorkerReport, out: &mut Exposition) {
    let stats = &report.stats;
    let counters = &stats.counters;
    let states = &stats.states;
    out.family(
        "siprtmp_connections",
        "gauge",
        "RTMP connections open now, by state (handshake, rtmp, gateway client, closing).",
    );
    for (state, n) in [
        ("handshake", states.handshake),
        ("rtmp", states.rtmp),
        ("gateway", states.gateway),
        ("closing", states.closing),
    ] {
        out.sample("siprtmp_connections", &[("state", state)], n);
    }
    out.single(
        "siprtmp_connections_accepted_total",
        "counter",
        "RTMP connections accepted.",
        counters.accepted,
    );
    out.family(
        "siprtmp_connections_closed_total",
        "counter",
        "RTMP connections closed, by reason (peer: the peer closed first or its socket failed).",
    );
    for (kind, n) in CLOSE_KINDS.iter().zip(counters.closed) {
        out.sample("siprtmp_connections_closed_total", &[("reason", kind)], n);
    }
    let streams = &report.streams;
    let publishers = streams.iter().filter(|s| s.publisher.is_some()).count();
    let players: usize = streams.iter().map(|s| s.players).sum();
    out.single(
        "siprtmp_publishers",
        "gauge",
        "Live streams published now.",
        publishers as u64,
    );
    out.single(
        "siprtmp_players",
        "gauge",
        "Players of live streams now.",
        players as u64,
    );
    out.family(
        "siprtmp_stream_players",
        "gauge",
        "Players of each live stream now.",
    );
    for stream in streams {
        let (app, name) = stream.key.split_once('/').unwrap_or(("", &stream.key));
        out.sample(
            "siprtmp_stream_players",
            &[("app", app), ("stream", name)],
            stream.players as u64,
        );
    }
    out.single(
        "siprtmp_publishes_total",
        "counter",
        "Publishes that went live.",
        counters.publishes,
    );
    out.single(
        "siprtmp_plays_total",
        "counter",
        "Plays (live and files) that started.",
        counters.plays,
    );
    out.single(
        "siprtmp_received_bytes_total",
        "counter",
        "Bytes read from RTMP connections.",
        counters.bytes_received,
    );
    out.single(
        "siprtmp_reads_total",
        "counter",
        "Reads of RTMP connections (each brings one or more messages).",
        counters.reads,
    );
    out.single(
        "siprtmp_sent_bytes_total",
        "counter",
        "Bytes written to RTMP connections.",
        counters.bytes_sent,
    );
    out.single(
        "siprtmp_player_dropped_messages_total",
        "counter",
        "Live video messages not sent to a player whose backlog was past the soft limit.",
        counters.player_messages_dropped,
    );
    out.single(
        "siprtmp_players_backlog_disconnected_total",
        "counter",
        "Players disconnected because their backlog passed the hard limit.",
        counters.closed_by("player_backlog"),
    );
    out.single(
        "siprtmp_recordings",
        "gauge",
        "Recordings running now.",
        stats.recordings,
    );
    out.single(
        "siprtmp_recording_written_bytes_total",
        "counter",
        "Bytes written to recordings.",
        stats.record_bytes,
    );
    out.single(
        "siprtmp_recording_failures_total",
        "counter",
        "Recordings that stopped on an error (a full disk, a write error).",
        stats.record_failures,
    );
    let memory = &stats.memory;
    out.single(
        "siprtmp_memory_partial_message_bytes",
        "gauge",
        "Bytes of unfinished RTMP messages and of input held while decisions are pending.",
        memory.partial,
    );
    out.single(
        "siprtmp_memory_backlog_bytes",
        "gauge",
        "Bytes queued to connections and not yet written.",
        memory.backlog,
    );
    out.single(
        "siprtmp_memory_gop_cache_bytes",
        "gauge",
        "Bytes held by the live streams' GOP caches.",
        memory.gop_cache,
    );
}

/// The process's families, named as Prometheus's client libraries name them, from what the
/// driver read last (nothing when it reads nothing: another system than Linux, or a driver
/// that does not supply them).
pub(crate) fn render_process(process: Option<&ProcessStats>, out: &mut Exposition) {
    let Some(process) = process else {
        return;
    };
    let families = [
        (
            "process_open_fds",
            "Open file descriptors of the process.",
            process.open_fds,
        ),
        (
            "process_max_fds",
            "The process's limit of open file descriptors.",
            process.max_fds,
        ),
        (
            "process_resident_memory_bytes",
            "Resident memory of the process, in bytes.",
            process.resident_memory_bytes,
        ),
        (
            "process_virtual_memory_bytes",
            "Virtual memory of the process, in bytes.",
            process.virtual_memory_bytes,
        ),
    ];
    for (name, help, value) in families {
        if let Some(value) = value {
            out.single(name, "gauge", help, value);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn label_values_are_escaped() {
        let mut out = Exposition::default();
        out.family("m", "gauge", "h")
            .sample("m", &[("a", "x\"y\\z\nw"), ("b", "")], 3);
        assert_eq!(
            out.finish(),
            "# HELP m h\n# TYPE m gauge\nm{a=\"x\\\"y\\\\z\\nw\",b=\"\"} 3\n"
        );
    }
}
