//! [`ProcessReader`]: the process's own figures for `/metrics` (open descriptors, their
//! limit, resident and virtual memory), read from `/proc/self` on Linux for the node, which
//! reads no system state itself.
//!
//! When: the node says which TCP events bring the bytes of an HTTP request
//! (`Node::process_stats_wanted`), and the executor that feeds them reads just before, at
//! most once per [`MIN_INTERVAL`]. Reading on request rather than on a timer costs nothing
//! while nobody scrapes (a timer would wake every driver's loop for figures nobody reads),
//! and a scrape gets figures as fresh as the request; the interval bounds what a client
//! trickling bytes could make the loop spend on `/proc`.

use std::time::{Duration, Instant};

use siprtmp_core::node::ProcessStats;

/// The least time between two reads.
pub(crate) const MIN_INTERVAL: Duration = Duration::from_secs(1);

/// Reads the process's figures, at most once per [`MIN_INTERVAL`].
#[derive(Debug, Default)]
pub(crate) struct ProcessReader {
    last: Option<Instant>,
}

impl ProcessReader {
    /// The figures, unless they were read less than [`MIN_INTERVAL`] before `now`.
    pub(crate) fn read_if_due(&mut self, now: Instant) -> Option<ProcessStats> {
        if self.last.is_some_and(|last| now < last + MIN_INTERVAL) {
            return None;
        }
        self.last = Some(now);
        Some(read())
    }
}

/// The process's figures now (all `None` where `/proc` is not Linux's).
pub fn read() -> ProcessStats {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let (resident, virtual_size) = memory(&status);
    ProcessStats {
        open_fds: open_fds(),
        max_fds: std::fs::read_to_string("/proc/self/limits")
            .ok()
            .and_then(|text| max_open_files(&text)),
        resident_memory_bytes: resident,
        virtual_memory_bytes: virtual_size,
    }
}

/// Entries of `/proc/self/fd`, less the one the listing itself holds open.
fn open_fds() -> Option<u64> {
    let entries = std::fs::read_dir("/proc/self/fd").ok()?;
    Some((entries.count() as u64).saturating_sub(1))
}

/// The soft limit of "Max open files" in `/proc/self/limits` text.
fn max_open_files(limits: &str) -> Option<u64> {
    let line = limits.lines().find(|l| l.starts_with("Max open files"))?;
    line["Max open files".len()..]
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

/// `VmRSS` and `VmSize` of `/proc/self/status` text, in bytes (the file says kB).
fn memory(status: &str) -> (Option<u64>, Option<u64>) {
    let field = |name: &str| {
        let line = status.lines().find(|l| l.starts_with(name))?;
        let kb: u64 = line[name.len()..].split_whitespace().next()?.parse().ok()?;
        Some(kb * 1024)
    };
    (field("VmRSS:"), field("VmSize:"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limits_and_status_text_parse() {
        let limits = "Limit                     Soft Limit           Hard Limit           Units     \n\
                      Max cpu time              unlimited            unlimited            seconds   \n\
                      Max open files            1024                 524288               files     \n";
        assert_eq!(max_open_files(limits), Some(1024));
        assert_eq!(max_open_files("nothing"), None);
        let status = "Name:\tsiprtmp\nVmSize:\t  123456 kB\nVmRSS:\t    2048 kB\n";
        assert_eq!(memory(status), (Some(2048 * 1024), Some(123456 * 1024)));
        assert_eq!(memory(""), (None, None));
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn this_process_has_descriptors_and_memory() {
        // Other tests open and close descriptors in parallel: no exact count, only what
        // must hold (stdin, stdout, stderr at least; memory; a limit above the count).
        let stats = read();
        assert!(stats.open_fds.unwrap() >= 3, "{stats:?}");
        assert!(stats.max_fds.unwrap() >= stats.open_fds.unwrap());
        assert!(stats.resident_memory_bytes.unwrap() > 0);
        assert!(stats.virtual_memory_bytes.unwrap() >= stats.resident_memory_bytes.unwrap());
    }

    #[test]
    fn reads_at_most_once_per_interval() {
        let mut reader = ProcessReader::default();
        let now = Instant::now();
        assert!(reader.read_if_due(now).is_some());
        assert!(reader.read_if_due(now + MIN_INTERVAL / 2).is_none());
        assert!(reader.read_if_due(now + MIN_INTERVAL).is_some());
    }
}
