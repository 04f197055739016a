//! The binary's logs as a log collector reads them: on stderr, without ANSI colours when
//! stderr is not a terminal, and with `--log-format json` (or `log_format = "json"`) one JSON
//! object per line with the timestamp, level, target, message and the event's fields.

mod common;

use std::io::{BufRead, BufReader};
use std::net::TcpStream;
use std::process::{Child, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use common::{config_file, refused, sigterm, siprtmp, wait_exit};

/// Starts the binary with `args` on a free loopback port, its stderr read line by line.
fn start(args: &[&str]) -> (Child, mpsc::Receiver<String>) {
    let mut child = siprtmp()
        .args(["-i", "127.0.0.1", "-p", "0", "--no-gateway"])
        .args(args)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start siprtmp");
    let (tx, lines) = mpsc::channel();
    let stderr = child.stderr.take().unwrap();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    (child, lines)
}

/// Lines up to and including the first that holds `needle` (20 s at most).
fn until(lines: &mpsc::Receiver<String>, needle: &str) -> Vec<String> {
    let mut seen = Vec::new();
    loop {
        let line = lines
            .recv_timeout(Duration::from_secs(20))
            .unwrap_or_else(|_| panic!("no {needle:?} in {seen:?}"));
        let done = line.contains(needle);
        seen.push(line);
        if done {
            return seen;
        }
    }
}

/// Stops the server with SIGTERM; the rest of its log, after a clean exit.
fn stop(child: Child, lines: &mpsc::Receiver<String>) -> Vec<String> {
    sigterm(&child);
    let output = wait_exit(child, Duration::from_secs(10), "siprtmp after SIGTERM");
    assert!(output.status.success(), "exit status {}", output.status);
    // The reader thread ends at EOF, which the exit brought.
    lines.iter().collect()
}

/// Parses a log line as one JSON object with the fields every line carries.
fn json_line(line: &str) -> serde_json::Map<String, serde_json::Value> {
    let value: serde_json::Value =
        serde_json::from_str(line).unwrap_or_else(|e| panic!("not JSON ({e}): {line}"));
    let object = value
        .as_object()
        .unwrap_or_else(|| panic!("not an object: {line}"))
        .clone();
    let text = |key: &str| {
        object
            .get(key)
            .and_then(|v| v.as_str())
            .unwrap_or_else(|| panic!("no string {key:?} in {line}"))
            .to_owned()
    };
    // RFC 3339 in UTC: 2024-05-01T12:34:56.123456Z.
    let timestamp = text("timestamp");
    let bytes = timestamp.as_bytes();
    assert!(
        timestamp.len() >= 20
            && bytes[4] == b'-'
            && bytes[10] == b'T'
            && bytes[13] == b':'
            && timestamp.ends_with('Z'),
        "timestamp {timestamp:?}"
    );
    assert!(
        ["TRACE", "DEBUG", "INFO", "WARN", "ERROR"].contains(&text("level").as_str()),
        "{line}"
    );
    assert!(text("target").starts_with("siprtmp"), "{line}");
    assert!(!text("message").is_empty(), "{line}");
    object
}

#[test]
fn json_logs_are_one_object_per_line_with_the_bound_port() {
    let (child, lines) = start(&["--log-format", "json"]);
    let startup = until(&lines, "RTMP listening on");
    let listening = json_line(startup.last().unwrap());
    for line in &startup {
        json_line(line);
    }
    assert_eq!(listening["level"], "INFO");
    assert_eq!(listening["target"], "siprtmp");
    let port = listening["port"].as_u64().expect("a numeric port field");
    assert_ne!(port, 0, "the bound port, not the one asked for");
    let message = listening["message"].as_str().unwrap();
    assert!(
        message.starts_with(&format!("RTMP listening on 127.0.0.1:{port} (runtime mio")),
        "{message}"
    );
    // The port is the one the server listens on.
    let port = u16::try_from(port).unwrap();
    TcpStream::connect(("127.0.0.1", port)).expect("connect to the logged port");
    let rest = stop(child, &lines);
    assert!(!rest.is_empty(), "the shutdown is logged");
    let signal = rest
        .iter()
        .map(|l| json_line(l))
        .find(|o| {
            o["message"]
                .as_str()
                .is_some_and(|m| m.contains("signal 15"))
        })
        .unwrap_or_else(|| panic!("no signal line in {rest:?}"));
    assert_eq!(signal["level"], "INFO");
}

#[test]
fn the_config_key_log_format_turns_json_on_and_errors_stay_json() {
    let path = config_file("cli_log_format_key", "site.toml", "log_format = \"json\"\n");
    let config = path.to_str().unwrap();
    let (child, lines) = start(&["-c", config]);
    let startup = until(&lines, "RTMP listening on");
    let listening = json_line(startup.last().unwrap());
    let port = listening["port"].as_u64().unwrap().to_string();
    // A second server on the same port fails after logging started: its one error is JSON.
    let (code, stderr) = {
        let output = siprtmp()
            .args(["-i", "127.0.0.1", "-p", &port, "--no-gateway", "-c", config])
            .output()
            .expect("run siprtmp");
        (
            output.status.code(),
            String::from_utf8(output.stderr).unwrap(),
        )
    };
    assert_eq!(code, Some(1), "{stderr}");
    let line = stderr.trim_end();
    assert_eq!(line.lines().count(), 1, "{stderr}");
    let error = json_line(line);
    assert_eq!(error["level"], "ERROR");
    assert!(
        error["message"]
            .as_str()
            .unwrap()
            .starts_with(&format!("cannot listen on 127.0.0.1:{port}: ")),
        "{line}"
    );
    stop(child, &lines);
    // A config error comes before logging, as a plain message whatever the format.
    let (code, stderr) = refused(&["--log-format", "json", "--merge-writes", "2000"], None);
    assert_eq!(code, 1);
    assert!(
        stderr.starts_with("siprtmp: --merge-writes 2000: "),
        "{stderr}"
    );
}

#[test]
fn text_logs_off_a_terminal_have_no_colours() {
    let (child, lines) = start(&[]);
    let mut log = until(&lines, "RTMP listening on");
    log.extend(stop(child, &lines));
    let listening = log
        .iter()
        .find(|l| l.contains("RTMP listening on"))
        .unwrap();
    assert!(
        listening.contains(" INFO siprtmp: RTMP listening on 127.0.0.1:"),
        "{listening}"
    );
    assert!(listening.contains(" port="), "{listening}");
    for line in &log {
        assert!(!line.contains('\u{1b}'), "an escape code in {line:?}");
    }
}

/// A merge window the poll interval rounds up is said at startup, with what it becomes, as a
/// warning; whole numbers of intervals pass without one.
#[test]
fn a_merge_window_the_poll_interval_rounds_up_is_warned_of() {
    let (child, lines) = start(&["--poll-interval", "40", "--merge-writes", "100"]);
    let mut log = until(&lines, "RTMP listening on");
    log.extend(stop(child, &lines));
    let warning = log
        .iter()
        .find(|l| l.contains("--merge-writes 100 ms"))
        .unwrap_or_else(|| panic!("no warning in {log:?}"));
    assert!(
        warning.contains(" WARN ")
            && warning.contains("under --poll-interval 40 ms holds writes up to 120 ms"),
        "{warning}"
    );

    let (child, lines) = start(&["--poll-interval", "40", "--merge-writes", "80"]);
    let mut log = until(&lines, "RTMP listening on");
    log.extend(stop(child, &lines));
    assert!(!log.iter().any(|l| l.contains(" WARN ")), "{log:?}");
}
