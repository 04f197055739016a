//! The example systemd unit (`contrib/systemd/siprtmp.service`) and its config
//! (`contrib/systemd/siprtmp.toml`): the unit has what a server needs, `systemd-analyze
//! verify` finds nothing to say about it, and the binary starts with the config and the flags
//! the unit gives it.

mod common;

use std::collections::HashMap;
use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::Duration;

use common::{sigterm, siprtmp, wait_exit};

fn contrib(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../contrib/systemd")
        .join(name)
}

/// The unit's `[Section]` -> key -> values (a key may repeat), comments and blank lines
/// skipped, as systemd reads it.
fn parse_unit(text: &str) -> HashMap<String, HashMap<String, Vec<String>>> {
    let mut sections: HashMap<String, HashMap<String, Vec<String>>> = HashMap::new();
    let mut current = None;
    for (n, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') || line.starts_with(';') {
            continue;
        }
        if let Some(name) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
            current = Some(name.to_owned());
            sections.entry(name.to_owned()).or_default();
            continue;
        }
        let section = current
            .as_ref()
            .unwrap_or_else(|| panic!("line {}: a key before any section", n + 1));
        let (key, value) = line
            .split_once('=')
            .unwrap_or_else(|| panic!("line {}: not KEY=VALUE: {line}", n + 1));
        sections
            .get_mut(section)
            .unwrap()
            .entry(key.trim().to_owned())
            .or_default()
            .push(value.trim().to_owned());
    }
    sections
}

#[test]
fn the_unit_has_what_a_server_needs() {
    let text = std::fs::read_to_string(contrib("siprtmp.service")).unwrap();
    let unit = parse_unit(&text);
    let service = &unit["Service"];
    let one = |key: &str| -> &str {
        let values = service
            .get(key)
            .unwrap_or_else(|| panic!("[Service] has no {key}"));
        assert_eq!(values.len(), 1, "{key} given more than once");
        &values[0]
    };
    let exec: Vec<&str> = one("ExecStart").split_whitespace().collect();
    assert!(exec[0].ends_with("/siprtmp"), "{exec:?}");
    assert_eq!(&exec[1..], ["--config", "/etc/siprtmp/siprtmp.toml"]);
    // `systemctl reload`: SIGHUP rereads the RTMPS certificate (and is harmless without one).
    assert_eq!(one("ExecReload"), "/bin/kill -HUP $MAINPID");
    // A user of its own, never root.
    assert!(
        one("DynamicUser") == "yes" || service.get("User").is_some_and(|u| u[0] != "root"),
        "a dedicated user"
    );
    let files: u64 = one("LimitNOFILE").parse().expect("a number");
    assert!(files >= 65_536, "LimitNOFILE={files}");
    // The media root in the state directory, writable under ProtectSystem=strict.
    assert_eq!(one("StateDirectory"), "siprtmp");
    assert_eq!(one("WorkingDirectory"), "/var/lib/siprtmp");
    for (key, value) in [
        ("NoNewPrivileges", "yes"),
        ("ProtectSystem", "strict"),
        ("PrivateTmp", "yes"),
        ("Restart", "on-failure"),
        ("KillSignal", "SIGTERM"),
        ("Type", "simple"),
    ] {
        assert_eq!(one(key), value, "{key}");
    }
    // SIGTERM finishes recordings: there is time for it before SIGKILL.
    let stop: u64 = one("TimeoutStopSec").parse().unwrap();
    assert!(stop >= 10, "TimeoutStopSec={stop}");
    // No capability by default: the default ports are above 1024.
    assert_eq!(one("CapabilityBoundingSet"), "");
    assert!(!service.contains_key("AmbientCapabilities"));
    assert_eq!(unit["Install"]["WantedBy"], ["multi-user.target"]);
    assert!(unit["Unit"]["After"][0].contains("network-online.target"));
}

/// What `systemd-analyze verify` says about the unit with its binary at a path that exists:
/// nothing (it prints warnings for unknown keys or values and still exits 0). Where the
/// machine has no systemd-analyze, only the parse above checks the unit.
#[test]
fn systemd_analyze_verify_has_nothing_to_say() {
    if Command::new("systemd-analyze")
        .arg("--version")
        .output()
        .is_err()
    {
        eprintln!("systemd-analyze is not installed: unit not verified by systemd");
        return;
    }
    let text = std::fs::read_to_string(contrib("siprtmp.service")).unwrap();
    let binary = env!("CARGO_BIN_EXE_siprtmp");
    let dir = siprtmp_tests::scratch_dir("cli_systemd_unit");
    let unit = dir.join("siprtmp.service");
    std::fs::write(&unit, text.replace("/usr/local/bin/siprtmp", binary)).unwrap();
    let output = Command::new("systemd-analyze")
        .arg("verify")
        .arg(&unit)
        .output()
        .unwrap();
    let said = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{said}");
    assert!(said.trim().is_empty(), "systemd-analyze verify: {said}");
}

/// The service's config starts the server (with the root moved to a scratch directory and a
/// free port), and it stops cleanly on SIGTERM, as `systemctl stop` asks.
#[test]
fn the_service_config_starts_the_server() {
    let config = std::fs::read_to_string(contrib("siprtmp.toml")).unwrap();
    assert!(config.contains("root = \"/var/lib/siprtmp/media\""));
    let dir = siprtmp_tests::scratch_dir("cli_service_config");
    let mut child = siprtmp()
        .arg("--config")
        .arg(contrib("siprtmp.toml"))
        .args(["-i", "127.0.0.1", "-p", "0", "--int-ip", "127.0.0.1", "-r"])
        .arg(&dir)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start siprtmp");
    let stderr = child.stderr.take().unwrap();
    let (tx, lines) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    let mut seen = Vec::new();
    while !seen
        .iter()
        .any(|l: &String| l.contains("SIP-RTMP gateway on"))
    {
        let line = lines
            .recv_timeout(Duration::from_secs(20))
            .unwrap_or_else(|_| panic!("no startup in {seen:?}"));
        seen.push(line);
    }
    assert!(
        seen.iter()
            .any(|l| l.contains("RTMP listening on 127.0.0.1:")),
        "{seen:?}"
    );
    sigterm(&child);
    let output = wait_exit(child, Duration::from_secs(10), "siprtmp after SIGTERM");
    assert!(output.status.success(), "{}", output.status);
}
