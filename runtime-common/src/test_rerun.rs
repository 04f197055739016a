//! Tests only: running one test of this binary again in a process of its own, under a wrapper
//! that sets up a fault the whole process would feel (a network namespace with a congested
//! loopback, a low descriptor limit), so that the other tests, running in parallel in this
//! process, are not touched by it.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// Set in the environment of the copy that runs under the wrapper.
const RERUN: &str = "SIPRTMP_TEST_RERUN";

/// The path of test `function` in module `module` (what `module_path!()` gives there) as the
/// test harness names it: without the crate's name, so that renaming a module cannot leave
/// the rerun pointing at a test that no longer exists.
pub(crate) fn test_path(module: &str, function: &str) -> String {
    let in_crate = module.split_once("::").map_or("", |(_, rest)| rest);
    format!("{in_crate}::{function}")
}

/// Whether the calling test is the copy under its wrapper (then it runs its body). If not,
/// runs the test `name` (its path in this crate, `module::function`) of this binary again,
/// alone, as `wrapper... THIS_BINARY --exact name ...`, asserts that it passed (within a
/// minute), and returns false. A wrapper that runs a shell script gets the binary as `$0` and
/// its arguments as `"$@"`.
pub(crate) fn rerun_under(wrapper: &[&str], name: &str) -> bool {
    if std::env::var_os(RERUN).is_some() {
        return true;
    }
    let mut child = Command::new(wrapper[0])
        .args(&wrapper[1..])
        .arg(std::env::current_exe().expect("this test binary"))
        .args(["--exact", name, "--nocapture", "--test-threads=1"])
        .env(RERUN, "1")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("run {}: {e}", wrapper[0]));
    let deadline = Instant::now() + Duration::from_secs(60);
    while child.try_wait().expect("wait").is_none() {
        if Instant::now() >= deadline {
            let _ = child.kill();
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let output = child.wait_with_output().expect("output");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success() && stdout.contains("1 passed"),
        "{name} under {wrapper:?}: {}\n{stdout}\n{stderr}",
        output.status
    );
    // What the copy measured, for whoever runs the test with --nocapture.
    eprint!("{stderr}");
    false
}
