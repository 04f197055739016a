//! What an operator sees when a setting is wrong: the binary refuses to start with exit status
//! 1 and one message on stderr that says where (file, line, column and key, or the flag) and
//! what was expected. One test per class: a type error, an unknown key, a value out of range
//! (from the file and from a flag), a bad combination of flags, a missing file; and `--help`.

mod common;

use common::{config_file, refused, siprtmp};

/// The checks every refusal shares: status 1, one `siprtmp: ` message (the only other lines
/// are the quoted source line and its underline), no panic, no Rust debug formatting.
fn one_message(code: i32, stderr: &str) -> &str {
    assert_eq!(code, 1, "exit status; stderr: {stderr}");
    let mut lines = stderr.lines();
    let first = lines.next().unwrap_or_default();
    assert!(first.starts_with("siprtmp: "), "{stderr}");
    for line in lines {
        let gutter = line.split('|').next().unwrap_or_default().trim();
        assert!(
            line.contains(" |") && gutter.chars().all(|c| c.is_ascii_digit()),
            "only the quoted line may follow the message: {line:?} in {stderr}"
        );
    }
    for bad in ["panicked", "Error {", "Os {", "kind:", "RUST_BACKTRACE"] {
        assert!(!stderr.contains(bad), "{bad:?} in {stderr}");
    }
    first
}

#[test]
fn a_type_error_names_file_line_column_and_key_and_quotes_the_line() {
    let path = config_file(
        "cli_type_error",
        "site.toml",
        "# comment\nhost = \"127.0.0.1\"\nport = \"abc\"\n",
    );
    let (code, stderr) = refused(&[], Some(&path));
    let first = one_message(code, &stderr);
    assert_eq!(
        first,
        format!(
            "siprtmp: {}:3:8: port: expected an integer from 0 to 65535, found string \"abc\"",
            path.display()
        )
    );
    assert!(stderr.contains("3 | port = \"abc\"\n"), "{stderr}");
    assert!(stderr.ends_with("  |        ^^^^^\n"), "{stderr}");

    // A nested key is named by its dotted path.
    let path = config_file(
        "cli_type_error_nested",
        "site.toml",
        "[rtmp]\nchunk_size = 4096\nping_interval_secs = \"soon\"\n",
    );
    let (code, stderr) = refused(&[], Some(&path));
    let first = one_message(code, &stderr);
    assert_eq!(
        first,
        format!(
            "siprtmp: {}:3:22: rtmp.ping_interval_secs: expected a number, found string \"soon\"",
            path.display()
        )
    );
}

#[test]
fn an_unknown_key_is_named_with_a_suggestion() {
    let path = config_file("cli_unknown_key", "site.toml", "prot = 1935\n");
    let (code, stderr) = refused(&[], Some(&path));
    let first = one_message(code, &stderr);
    assert!(
        first.starts_with(&format!(
            "siprtmp: {}:1:1: unknown key `prot` (did you mean `port`?); the top level takes \
             host, port,",
            path.display()
        )),
        "{stderr}"
    );
    let path = config_file(
        "cli_unknown_key_nested",
        "site.toml",
        "[gateway]\nenabled = true\nrtp_port = \"16000-17999\"\n",
    );
    let (code, stderr) = refused(&[], Some(&path));
    let first = one_message(code, &stderr);
    assert!(
        first.starts_with(&format!(
            "siprtmp: {}:3:1: unknown key `gateway.rtp_port` (did you mean `rtp_ports`?); \
             [gateway] takes enabled,",
            path.display()
        )),
        "{stderr}"
    );
    // A top-level key written under a section belongs to that section in TOML.
    let path = config_file(
        "cli_misplaced_key",
        "site.toml",
        "[rtmp]\nchunk_size = 4096\nport = 1\n",
    );
    let (code, stderr) = refused(&[], Some(&path));
    let first = one_message(code, &stderr);
    assert!(
        first.contains("3:1: unknown key `rtmp.port` (`port` is a top-level key"),
        "{stderr}"
    );
}

#[test]
fn values_out_of_range_name_the_key_or_the_flag_and_the_range() {
    let path = config_file(
        "cli_out_of_range",
        "site.toml",
        "[rtmp]\nmerge_writes_ms = 5000\n",
    );
    let (code, stderr) = refused(&[], Some(&path));
    assert_eq!(
        one_message(code, &stderr),
        format!(
            "siprtmp: {}:2:19: rtmp.merge_writes_ms = 5000: out of range: expected 0 (off) to \
             1000 milliseconds (flag --merge-writes)",
            path.display()
        )
    );
    let (code, stderr) = refused(&["--merge-writes", "5000"], None);
    assert_eq!(
        one_message(code, &stderr),
        "siprtmp: --merge-writes 5000: out of range: expected 0 (off) to 1000 milliseconds \
         (config key rtmp.merge_writes_ms)"
    );
    let (code, stderr) = refused(&["--poll-interval", "500"], None);
    assert_eq!(
        one_message(code, &stderr),
        "siprtmp: --poll-interval 500: out of range: expected 0 (off) to 100 milliseconds \
         (config key poll_interval_ms)"
    );
    let (code, stderr) = refused(&["--rtp-ports", "17000-16000"], None);
    assert!(
        one_message(code, &stderr)
            .starts_with("siprtmp: --rtp-ports 17000-16000: reversed: LO must not exceed HI"),
        "{stderr}"
    );
    let (code, stderr) = refused(&["--rtp-ports", "16000-16002"], None);
    assert!(
        one_message(code, &stderr)
            .starts_with("siprtmp: --rtp-ports 16000-16002: too small: a client takes four ports"),
        "{stderr}"
    );
    let path = config_file(
        "cli_out_of_range_gateway",
        "site.toml",
        "[gateway]\nregistrar = \"127.0.0.1:0\"\n",
    );
    let (code, stderr) = refused(&[], Some(&path));
    assert_eq!(
        one_message(code, &stderr),
        format!(
            "siprtmp: {}:2:13: gateway.registrar = \"127.0.0.1:0\": port 0 is out of range: \
             expected 1 to 65535 (without a port: 5060) (flag --registrar)",
            path.display()
        )
    );
    let path = config_file(
        "cli_out_of_range_allow",
        "site.toml",
        "[apps.live]\npublish_allow = [\"10.0.0.0/8\", \"10.0.0.0/40\"]\n",
    );
    let (code, stderr) = refused(&[], Some(&path));
    assert!(
        one_message(code, &stderr).starts_with(&format!(
            "siprtmp: {}:2:32: apps.live.publish_allow[1] = \"10.0.0.0/40\": prefix longer \
             than 32",
            path.display()
        )),
        "{stderr}"
    );
    // A relay's upstream is named by its place in the application's list.
    let path = config_file(
        "cli_out_of_range_push",
        "site.toml",
        "[apps.live]\npush = [\"rtmp://127.0.0.1/live\", \"rtmp://127.0.0.1:99999/live\"]\n",
    );
    let (code, stderr) = refused(&[], Some(&path));
    assert!(
        one_message(code, &stderr).starts_with(&format!(
            "siprtmp: {}:2:34: apps.live.push[1] = \"rtmp://127.0.0.1:99999/live\": \"99999\" \
             is not a port (1 to 65535): expected rtmp[s]://host[:port]/app[/name][?query]",
            path.display()
        )),
        "{stderr}"
    );
}

#[test]
fn a_bad_flag_combination_names_the_flags_and_keys() {
    let (code, stderr) = refused(&["--runtime", "tokio", "--poll-interval", "20"], None);
    assert_eq!(
        one_message(code, &stderr),
        "siprtmp: --poll-interval 20: needs --runtime mio or io-uring, not --runtime tokio (the \
         tokio driver has no wake-up moderation); drop --runtime, or 0 turns it off (config \
         key poll_interval_ms)"
    );
    let path = config_file("cli_combination", "site.toml", "poll_interval_ms = 20\n");
    let (code, stderr) = refused(&["--runtime", "threads"], Some(&path));
    assert!(
        one_message(code, &stderr).starts_with(&format!(
            "siprtmp: {}:1:20: poll_interval_ms = 20: needs --runtime mio or io-uring, not \
             --runtime threads",
            path.display()
        )),
        "{stderr}"
    );
    for runtime in ["threads", "async-std"] {
        let (code, stderr) = refused(&["--workers", "2", "--runtime", runtime], None);
        assert_eq!(
            one_message(code, &stderr),
            format!(
                "siprtmp: --workers 2 needs --runtime mio, tokio or io-uring, not --runtime {runtime} \
                 (the {runtime} driver runs one node): drop --workers, or pick --runtime mio"
            )
        );
    }
    let (code, stderr) = refused(&["--gateway", "--no-gateway"], None);
    assert!(
        one_message(code, &stderr)
            .starts_with("siprtmp: --gateway and --no-gateway contradict each other")
            && stderr.contains("gateway.enabled"),
        "{stderr}"
    );
}

#[test]
fn a_missing_config_file_is_named_with_its_full_path() {
    let dir = siprtmp_tests::scratch_dir("cli_missing_file");
    let path = dir.join("absent.toml");
    let (code, stderr) = refused(&[], Some(&path));
    assert_eq!(
        one_message(code, &stderr),
        format!("siprtmp: config file {} does not exist", path.display())
    );
    // A relative path is shown as given and as the absolute path it resolved to.
    let mut command = siprtmp();
    let output = command
        .current_dir(&dir)
        .args(["-p", "0", "-c", "absent.toml"])
        .output()
        .expect("run siprtmp");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(
        one_message(output.status.code().unwrap(), &stderr),
        format!(
            "siprtmp: config file absent.toml ({}) does not exist",
            path.display()
        )
    );
}

/// `--help` says what the binary is, and each flag with a config key names it.
#[test]
fn help_describes_the_server_and_names_each_flags_config_key() {
    let output = siprtmp()
        .arg("--help")
        .output()
        .expect("run siprtmp --help");
    assert!(output.status.success());
    let help = String::from_utf8(output.stdout).unwrap();
    let first = help.lines().next().unwrap();
    assert!(
        first.starts_with("RTMP media server") && first.contains("SIP-RTMP gateway"),
        "{first}"
    );
    assert!(!help.contains("later"), "{help}");
    let keys = [
        ("--host", "config: host]"),
        ("--port", "config: port]"),
        ("--root", "config: root]"),
        ("--record-all", "in [apps.APP]]"),
        ("--log-format", "config: log_format]"),
        ("--gateway", "config: gateway.enabled]"),
        ("--no-gateway", "config: gateway.enabled = false]"),
        ("--int-ip", "config: gateway.int_ip]"),
        ("--ext-ip", "config: gateway.ext_ip]"),
        ("--registrar", "config: gateway.registrar]"),
        ("--proxy", "config: gateway.proxy]"),
        ("--rtp-ports", "config: gateway.rtp_ports]"),
        ("--shared-rtp-ports", "config: gateway.shared_rtp_ports]"),
        ("--sip-transport", "config: gateway.transport]"),
        ("--merge-writes", "config: rtmp.merge_writes_ms]"),
        ("--gateway-merge-writes", "config: gateway.merge_writes_ms]"),
        ("--tcp-nodelay", "config: rtmp.tcp_nodelay]"),
        ("--poll-interval", "config: poll_interval_ms]"),
        ("--no-udp-gso", "config: gateway.udp_gso = false]"),
    ];
    // Each option's help runs from its own line to the next option's.
    let blocks: Vec<String> = help
        .split("\n  -")
        .map(|b| b.split_whitespace().collect::<Vec<_>>().join(" "))
        .collect();
    for (flag, key) in keys {
        let block = blocks
            .iter()
            .find(|b| {
                b.split([' ', ','])
                    .any(|w| w == flag || w.starts_with(&format!("{flag}=")))
            })
            .unwrap_or_else(|| panic!("{flag} in {help}"));
        assert!(block.contains(key), "{flag}: {block}");
    }
}
