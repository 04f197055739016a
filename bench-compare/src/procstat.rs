//! Process accounting from `/proc`: CPU time (utime+stime and on-CPU nanoseconds), peak RSS,
//! the clock-tick rate and the core clock, for the server under test and for the loader itself.

use std::process::Command;

/// CPU consumed by a process so far.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct CpuSample {
    /// utime + stime in clock ticks (`/proc/PID/stat`, all threads).
    pub ticks: u64,
    /// On-CPU nanoseconds summed over the process's threads (`/proc/PID/task/*/schedstat`),
    /// a finer-grained cross-check of `ticks`.
    pub on_cpu_ns: u64,
}

/// utime + stime of `pid` (use "self" for this process), in clock ticks.
pub(crate) fn cpu_ticks(pid: &str) -> Result<u64, String> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .map_err(|e| format!("/proc/{pid}/stat: {e}"))?;
    parse_stat_ticks(&text).ok_or_else(|| format!("/proc/{pid}/stat: unexpected format"))
}

/// utime (field 14) + stime (field 15) from a `/proc/PID/stat` line. The command name (field 2)
/// may contain spaces and parentheses, so fields are counted after the last ')'.
fn parse_stat_ticks(text: &str) -> Option<u64> {
    let rest = &text[text.rfind(')')? + 1..];
    let mut fields = rest.split_whitespace().skip(11);
    let utime: u64 = fields.next()?.parse().ok()?;
    let stime: u64 = fields.next()?.parse().ok()?;
    Some(utime + stime)
}

/// Sum of the first field of every thread's schedstat (ns on CPU); 0 if unavailable.
fn on_cpu_ns(pid: &str) -> u64 {
    let Ok(dir) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return 0;
    };
    dir.filter_map(Result::ok)
        .filter_map(|t| std::fs::read_to_string(t.path().join("schedstat")).ok())
        .filter_map(|s| s.split_whitespace().next()?.parse::<u64>().ok())
        .sum()
}

/// Both CPU counters of `pid` at once.
pub(crate) fn sample(pid: &str) -> Result<CpuSample, String> {
    Ok(CpuSample {
        ticks: cpu_ticks(pid)?,
        on_cpu_ns: on_cpu_ns(pid),
    })
}

/// Peak resident set size (`VmHWM`) of `pid`, in KiB.
pub(crate) fn peak_rss_kib(pid: &str) -> Option<u64> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = text.lines().find(|l| l.starts_with("VmHWM:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

/// Resident set size now (`VmRSS`) of `pid`, in KiB.
pub(crate) fn rss_kib(pid: &str) -> Option<u64> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = text.lines().find(|l| l.starts_with("VmRSS:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

/// Open file descriptors of `pid` (entries of `/proc/PID/fd`).
pub(crate) fn open_fds(pid: &str) -> Option<u64> {
    let dir = std::fs::read_dir(format!("/proc/{pid}/fd")).ok()?;
    Some(dir.count() as u64)
}

/// Datagrams the kernel dropped on the UDP sockets `pid` holds because their receive buffer
/// was full (the `drops` column of `/proc/net/udp` for the sockets among `/proc/PID/fd`); the
/// count lives and dies with each socket, so read it while they are open.
pub(crate) fn udp_drops(pid: &str) -> Option<u64> {
    let inodes: std::collections::HashSet<String> = std::fs::read_dir(format!("/proc/{pid}/fd"))
        .ok()?
        .filter_map(Result::ok)
        .filter_map(|e| std::fs::read_link(e.path()).ok())
        .filter_map(|l| {
            let l = l.to_string_lossy();
            Some(l.strip_prefix("socket:[")?.strip_suffix(']')?.to_owned())
        })
        .collect();
    let table = std::fs::read_to_string("/proc/net/udp").ok()?;
    Some(udp_drops_of(&table, &inodes))
}

/// The drops of the sockets in `inodes` from a `/proc/net/udp` table (inode: field 10,
/// drops: the last).
fn udp_drops_of(table: &str, inodes: &std::collections::HashSet<String>) -> u64 {
    table
        .lines()
        .skip(1)
        .filter_map(|line| {
            let fields: Vec<&str> = line.split_whitespace().collect();
            let inode = fields.get(9)?;
            inodes
                .contains(*inode)
                .then(|| fields.last()?.parse::<u64>().ok())?
        })
        .sum()
}

/// The system's load averages (`/proc/loadavg`: 1, 5 and 15 minutes), as written there.
pub(crate) fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .ok()
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|| "unknown".into())
}

/// Clock ticks per second from `getconf CLK_TCK`; 100 (with a note) if that fails.
pub(crate) fn clock_ticks() -> (u64, Option<String>) {
    let out = Command::new("getconf").arg("CLK_TCK").output();
    match out
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .and_then(|s| s.trim().parse::<u64>().ok())
    {
        Some(hz) if hz > 0 => (hz, None),
        _ => (
            100,
            Some("`getconf CLK_TCK` failed; assumed 100 ticks/s".into()),
        ),
    }
}

/// The core clock in MHz (first "cpu MHz" in /proc/cpuinfo) and the CPU model name.
pub(crate) fn core_mhz() -> (Option<f64>, String) {
    let text = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let field = |name: &str| {
        text.lines()
            .find(|l| l.starts_with(name))
            .and_then(|l| l.split_once(':'))
            .map(|(_, v)| v.trim().to_owned())
    };
    let mhz = field("cpu MHz").and_then(|v| v.parse().ok());
    (mhz, field("model name").unwrap_or_else(|| "unknown".into()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stat_fields_after_the_command_name() {
        let line = "4242 (a) b (c)) S 1 4242 4242 0 -1 4194560 100 0 0 0 37 12 0 0 20 0 1 0";
        assert_eq!(parse_stat_ticks(line), Some(49));
        assert_eq!(parse_stat_ticks("1 (x) S 1"), None);
    }

    #[test]
    fn udp_drops_are_summed_over_the_process_sockets_only() {
        let table = "   sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode ref pointer drops\n\
            \x20 1: 0100007F:6590 00000000:0000 07 00000000:00000000 00:00000000 00000000     0        0 1001 2 0000000000000000 7\n\
            \x20 2: 0100007F:6594 00000000:0000 07 00000000:00000000 00:00000000 00000000     0        0 1002 2 0000000000000000 5\n\
            \x20 3: 0100007F:13C4 00000000:0000 07 00000000:00000000 00:00000000 00000000     0        0 2001 2 0000000000000000 100\n";
        let ours: std::collections::HashSet<String> = ["1001", "1002"].map(String::from).into();
        assert_eq!(udp_drops_of(table, &ours), 12);
        assert_eq!(udp_drops_of(table, &Default::default()), 0);
        // Our own process holds no UDP socket here: nothing dropped on it.
        assert_eq!(udp_drops("self"), Some(0));
    }

    #[test]
    fn own_process_is_readable() {
        assert!(cpu_ticks("self").is_ok());
        assert!(peak_rss_kib("self").unwrap() > 0);
        let rss = rss_kib("self").unwrap();
        assert!(rss > 0 && rss <= peak_rss_kib("self").unwrap());
        // Standard input, output and error at least (other tests open files meanwhile, so
        // no exact count).
        assert!(open_fds("self").unwrap() >= 3);
        assert_eq!(load_average().split(' ').count(), 3);
    }
}
