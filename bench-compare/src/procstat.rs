//! Process accounting from `/proc`: CPU time (utime+stime and on-CPU nanoseconds), resident
//! memory, open descriptors, UDP drops, load averages, the clock-tick rate and the core clock,
//! for the server under test and for the loader itself.
//!
//! The reads go through the `procfs` crate; only the `drops` column of `/proc/net/udp`, which
//! procfs does not parse, is read by hand here.

use std::collections::HashSet;

use procfs::process::{FDTarget, Process};
use procfs::Current;

/// CPU consumed by a process so far.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct CpuSample {
    /// utime + stime in clock ticks (`/proc/PID/stat`, all threads).
    pub ticks: u64,
    /// stime alone: the part spent in the kernel on the process's behalf.
    pub sys_ticks: u64,
    /// On-CPU nanoseconds summed over the process's threads (`/proc/PID/task/*/schedstat`),
    /// a finer-grained cross-check of `ticks`.
    pub on_cpu_ns: u64,
}

/// Turns what two CPU samples `secs` apart differ by into % of one core.
#[derive(Debug, Clone, Copy)]
pub(crate) struct CoreShare {
    /// Clock ticks per second (`clock_ticks`).
    pub clk_tck: u64,
    pub secs: f64,
}

impl CoreShare {
    /// From clock ticks (utime, stime).
    pub(crate) fn ticks(&self, before: u64, after: u64) -> f64 {
        after.saturating_sub(before) as f64 / self.clk_tck as f64 / self.secs * 100.0
    }

    /// From on-CPU nanoseconds.
    pub(crate) fn ns(&self, before: u64, after: u64) -> f64 {
        after.saturating_sub(before) as f64 / 1e9 / self.secs * 100.0
    }
}

/// The process `pid` names: a number, or "self" for this process.
fn process(pid: &str) -> Result<Process, String> {
    let found = if pid == "self" {
        Process::myself()
    } else {
        let n: i32 = pid.parse().map_err(|_| format!("bad pid {pid:?}"))?;
        Process::new(n)
    };
    found.map_err(|e| format!("/proc/{pid}: {e}"))
}

/// utime + stime of `proc`, in clock ticks.
fn ticks_of(proc: &Process, pid: &str) -> Result<u64, String> {
    let stat = proc.stat().map_err(|e| format!("/proc/{pid}/stat: {e}"))?;
    Ok(stat.utime + stat.stime)
}

/// utime + stime of `pid` (use "self" for this process), in clock ticks.
pub(crate) fn cpu_ticks(pid: &str) -> Result<u64, String> {
    ticks_of(&process(pid)?, pid)
}

/// Sum of every thread's on-CPU nanoseconds (schedstat); 0 if unavailable (a kernel without
/// CONFIG_SCHED_INFO). A thread that ends while the list is read is left out.
fn on_cpu_ns(proc: &Process) -> u64 {
    let Ok(tasks) = proc.tasks() else {
        return 0;
    };
    tasks
        .filter_map(Result::ok)
        .filter_map(|t| t.schedstat().ok())
        .map(|s| s.sum_exec_runtime)
        .sum()
}

/// Both CPU counters of `pid` at once.
pub(crate) fn sample(pid: &str) -> Result<CpuSample, String> {
    let proc = process(pid)?;
    let stat = proc.stat().map_err(|e| format!("/proc/{pid}/stat: {e}"))?;
    Ok(CpuSample {
        ticks: stat.utime + stat.stime,
        sys_ticks: stat.stime,
        on_cpu_ns: on_cpu_ns(&proc),
    })
}

/// Peak resident set size (`VmHWM`) of `pid`, in KiB.
pub(crate) fn peak_rss_kib(pid: &str) -> Option<u64> {
    process(pid).ok()?.status().ok()?.vmhwm
}

/// Resident set size now (`VmRSS`) of `pid`, in KiB.
pub(crate) fn rss_kib(pid: &str) -> Option<u64> {
    process(pid).ok()?.status().ok()?.vmrss
}

/// Open file descriptors of `pid` (entries of `/proc/PID/fd`).
pub(crate) fn open_fds(pid: &str) -> Option<u64> {
    Some(process(pid).ok()?.fd_count().ok()? as u64)
}

/// Datagrams the kernel dropped on the UDP sockets `pid` holds because their receive buffer
/// was full (the `drops` column of `/proc/net/udp` for the sockets among `/proc/PID/fd`); the
/// count lives and dies with each socket, so read it while they are open.
pub(crate) fn udp_drops(pid: &str) -> Option<u64> {
    let inodes: HashSet<u64> = process(pid)
        .ok()?
        .fd()
        .ok()?
        .filter_map(Result::ok)
        .filter_map(|fd| match fd.target {
            FDTarget::Socket(inode) => Some(inode),
            _ => None,
        })
        .collect();
    // procfs reads /proc/net/udp too, but leaves out the `drops` column.
    let table = std::fs::read_to_string("/proc/net/udp").ok()?;
    Some(udp_drops_of(&table, &inodes))
}

/// The drops of the sockets in `inodes` from a `/proc/net/udp` table (inode: field 10,
/// drops: the last).
fn udp_drops_of(table: &str, inodes: &HashSet<u64>) -> u64 {
    table
        .lines()
        .skip(1)
        .filter_map(|line| {
            let fields: Vec<&str> = line.split_whitespace().collect();
            let inode: u64 = fields.get(9)?.parse().ok()?;
            inodes
                .contains(&inode)
                .then(|| fields.last()?.parse::<u64>().ok())?
        })
        .sum()
}

/// The system's load averages (`/proc/loadavg`: 1, 5 and 15 minutes) with two decimals, as
/// written there.
pub(crate) fn load_average() -> String {
    procfs::LoadAverage::current()
        .map(|l| format!("{:.2} {:.2} {:.2}", l.one, l.five, l.fifteen))
        .unwrap_or_else(|_| "unknown".into())
}

/// Clock ticks per second (`sysconf(_SC_CLK_TCK)`); 100, with a note, if that gives 0.
pub(crate) fn clock_ticks() -> (u64, Option<String>) {
    match procfs::ticks_per_second() {
        0 => (
            100,
            Some("sysconf(_SC_CLK_TCK) gave 0; assumed 100 ticks/s".into()),
        ),
        hz => (hz, None),
    }
}

/// The core clock in MHz (first "cpu MHz" in /proc/cpuinfo) and the CPU model name.
pub(crate) fn core_mhz() -> (Option<f64>, String) {
    let Ok(info) = procfs::CpuInfo::current() else {
        return (None, "unknown".into());
    };
    let mhz = info
        .get_field(0, "cpu MHz")
        .and_then(|v| v.trim().parse().ok());
    let model = info.model_name(0).map_or("unknown".into(), str::to_owned);
    (mhz, model)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn udp_drops_are_summed_over_the_process_sockets_only() {
        let table = "   sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode ref pointer drops\n\
            \x20 1: 0100007F:6590 00000000:0000 07 00000000:00000000 00:00000000 00000000     0        0 1001 2 0000000000000000 7\n\
            \x20 2: 0100007F:6594 00000000:0000 07 00000000:00000000 00:00000000 00000000     0        0 1002 2 0000000000000000 5\n\
            \x20 3: 0100007F:13C4 00000000:0000 07 00000000:00000000 00:00000000 00000000     0        0 2001 2 0000000000000000 100\n";
        let ours: HashSet<u64> = [1001, 1002].into();
        assert_eq!(udp_drops_of(table, &ours), 12);
        assert_eq!(udp_drops_of(table, &Default::default()), 0);
        // Our own process holds no UDP socket here: nothing dropped on it.
        assert_eq!(udp_drops("self"), Some(0));
    }

    /// CPU time of the calling thread.
    fn thread_cpu() -> std::time::Duration {
        let mut ts = libc::timespec {
            tv_sec: 0,
            tv_nsec: 0,
        };
        // SAFETY: `ts` is a valid, writable timespec.
        let rc = unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
        assert_eq!(rc, 0);
        std::time::Duration::new(ts.tv_sec as u64, ts.tv_nsec as u32)
    }

    #[test]
    fn a_busy_thread_shows_in_both_cpu_counters() {
        let before = sample("self").unwrap();
        let (spent, spent_rx) = std::sync::mpsc::channel();
        let (done, done_rx) = std::sync::mpsc::channel::<()>();
        // A thread burns 300 ms of CPU (its own clock, so a busy machine only makes it
        // take longer), then stays alive until sampled: schedstat is read per living thread.
        let spinner = std::thread::spawn(move || {
            let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
            let mut x = 0u64;
            while thread_cpu() < std::time::Duration::from_millis(300) {
                assert!(std::time::Instant::now() < deadline, "no CPU in 60 s");
                for _ in 0..10_000 {
                    x = std::hint::black_box(x.wrapping_add(1));
                }
            }
            spent.send(()).unwrap();
            let _ = done_rx.recv();
        });
        spent_rx.recv().unwrap();
        let after = sample("self").unwrap();
        done.send(()).unwrap();
        spinner.join().unwrap();
        let on_cpu_ms = (after.on_cpu_ns - before.on_cpu_ns) / 1_000_000;
        // schedstat is brought up to date at ticks and switches, so it can trail the thread's
        // own clock by the slice still running when it is read (296 ms seen under load).
        assert!(on_cpu_ms >= 250, "{before:?} {after:?}");
        // utime+stime is tick-sampled: allow a third off.
        let (hz, note) = clock_ticks();
        assert!(hz >= 100 && note.is_none(), "{hz}");
        let ticks_ms = (after.ticks - before.ticks) * 1000 / hz;
        assert!(
            ticks_ms >= 200,
            "{ticks_ms} ms in ticks, {on_cpu_ms} ms on CPU"
        );
        assert!(sample("99999999").is_err());
        assert!(sample("not-a-pid").is_err());
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
        let load = load_average();
        assert_eq!(load.split(' ').count(), 3, "{load}");
        assert!(load.split(' ').all(|v| v.parse::<f64>().is_ok()), "{load}");
    }
}
