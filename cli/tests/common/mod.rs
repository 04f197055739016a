//! Running the `siprtmp` binary as an operator would, for the tests of this directory: with
//! flags and an optional config file, bounded in time.

#![allow(dead_code)] // Each test file uses its own part.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

/// The binary under test.
pub(crate) fn siprtmp() -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_siprtmp"));
    command.stdin(Stdio::null()).env_remove("RUST_LOG");
    command
}

/// Writes `text` as `name` in a fresh scratch directory for `test`; returns its path.
pub(crate) fn config_file(test: &str, name: &str, text: &str) -> PathBuf {
    let path = siprtmp_tests::scratch_dir(test).join(name);
    std::fs::write(&path, text).expect("write config");
    path
}

/// Waits for `child` to exit, at most `limit`; kills it and panics if it does not.
pub(crate) fn wait_exit(mut child: Child, limit: Duration, what: &str) -> Output {
    let deadline = Instant::now() + limit;
    loop {
        if child.try_wait().expect("wait").is_some() {
            return child.wait_with_output().expect("output");
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            let output = child.wait_with_output().expect("output");
            panic!(
                "{what}: still running after {limit:?}; stderr: {}",
                String::from_utf8_lossy(&output.stderr)
            );
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Runs the binary with `args` (and `-c config` when given) expecting it to refuse to start:
/// its exit status and stderr.
pub(crate) fn refused(args: &[&str], config: Option<&Path>) -> (i32, String) {
    let mut command = siprtmp();
    command
        .args(["-i", "127.0.0.1", "-p", "0"])
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    if let Some(path) = config {
        command.arg("-c").arg(path);
    }
    let child = command.spawn().expect("start siprtmp");
    let output = wait_exit(child, Duration::from_secs(20), &format!("{args:?}"));
    let stderr = String::from_utf8(output.stderr).expect("UTF-8 stderr");
    let code = output.status.code().expect("an exit status, not a signal");
    (code, stderr)
}

/// Sends SIGTERM to `child`.
pub(crate) fn sigterm(child: &Child) {
    let status = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .expect("run kill");
    assert!(status.success());
}
