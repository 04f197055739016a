//! System calls of the server under test during a measurement window, counted by the kernel's
//! `raw_syscalls:sys_enter` tracepoint through `perf stat` attached to the server's PID (every
//! thread). Counting at a tracepoint costs the traced process a few tens of nanoseconds per
//! call, nothing like strace's stop per call, so the window's CPU figures stay comparable; it
//! is still opt-in (`--syscalls`), because it is not free.

use std::io::Read;
use std::process::{Child, Command, Stdio};

/// A running `perf stat` attached to one process.
pub(crate) struct SyscallCounter {
    child: Child,
}

impl SyscallCounter {
    /// Starts counting the system calls of `pid` (all its threads); `Err` when perf is not
    /// installed or the kernel refuses the tracepoint (no tracefs, perf_event_paranoid).
    pub(crate) fn start(pid: &str) -> Result<Self, String> {
        let child = Command::new("perf")
            .args(["stat", "-x", ",", "-e", "raw_syscalls:sys_enter", "-p", pid])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| format!("perf stat: {e} (install linux-perf, or drop --syscalls)"))?;
        Ok(Self { child })
    }

    /// Stops counting (SIGINT, which makes perf print its count) and returns the number of
    /// system calls since [`SyscallCounter::start`].
    pub(crate) fn finish(mut self) -> Result<u64, String> {
        let pid = self.child.id() as libc::pid_t;
        // SAFETY: kill(2) on our own child's pid; no memory is involved.
        unsafe { libc::kill(pid, libc::SIGINT) };
        let mut err = String::new();
        if let Some(mut stderr) = self.child.stderr.take() {
            let _ = stderr.read_to_string(&mut err);
        }
        let _ = self.child.wait();
        parse_count(&err).ok_or_else(|| format!("perf stat printed no count: {}", err.trim()))
    }
}

impl Drop for SyscallCounter {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The count from `perf stat -x ,` output: the line `COUNT,,raw_syscalls:sys_enter,...`
/// (`<not counted>` or `<not supported>` in the first field when the event did not run).
fn parse_count(output: &str) -> Option<u64> {
    output.lines().map(|l| l.split(',')).find_map(|mut fields| {
        let count = fields.next()?;
        fields
            .nth(1)
            .filter(|e| e.starts_with("raw_syscalls:sys_enter"))?;
        count.trim().parse().ok()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_count_is_read_from_perfs_csv_line() {
        let out = "12345,,raw_syscalls:sys_enter,5003114312,100.00,,\n";
        assert_eq!(parse_count(out), Some(12345));
        assert_eq!(
            parse_count("<not counted>,,raw_syscalls:sys_enter,0,0.00,,\n"),
            None
        );
        assert_eq!(parse_count("perf: command not found\n"), None);
    }
}
