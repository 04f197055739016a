//! The servers under test as child processes: `siprtmp --runtime R` (named `R`: the binary's
//! defaults, players' merged writes of 40 ms among them; `R-merged` for `--merge-writes 100
//! --gateway-merge-writes 100`, `R-merged0` for neither, `R-shared` for the gateway's
//! `--shared-rtp-ports`, `R-tls` for every load connection over RTMPS), nginx with the RTMP
//! module (one
//! process: `master_process off`, so the measured PID is the one doing the work), and
//! rtmplite3, the Python 3 port of the original project's RTMP server (one process on the
//! original's generator-based `multitask` scheduler).
//! Each point gets a fresh process on a fresh port, so peak RSS belongs to that point.

use std::fs::File;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// Ending of a server name that runs siprtmp with merged writes: `mio-merged` is
/// `siprtmp --runtime mio --merge-writes MERGED_WINDOW_MS`, `mio-merged20` the same with a
/// 20 ms window.
pub(crate) const MERGED_SUFFIX: &str = "-merged";

/// The merge window of a `-merged` server, in milliseconds (SRS's default `mw_latency`).
pub(crate) const MERGED_WINDOW_MS: u64 = 100;

/// Ending of a server name that runs siprtmp with `--tcp-nodelay` (after `-merged` if both:
/// `mio-merged-nodelay`).
pub(crate) const NODELAY_SUFFIX: &str = "-nodelay";

/// Ending of a server name that runs siprtmp with `--shared-rtp-ports` (every gateway call's
/// media on four shared ports; last if combined: `mio-merged-shared`, `mio-nodelay-shared`).
pub(crate) const SHARED_SUFFIX: &str = "-shared";

/// Ending of a floor's name that sends its RTP with UDP GSO (before `-tickN`, last
/// otherwise); siprtmp does by default.
pub(crate) const GSO_SUFFIX: &str = "-gso";

/// Ending of a server name that runs siprtmp with `--no-udp-gso` (before `-tickN`, last
/// otherwise: `mio-merged-shared-nogso-tick20`).
pub(crate) const NOGSO_SUFFIX: &str = "-nogso";

/// Ending of a server name that runs siprtmp with an RTMPS listener (a certificate made for
/// the run) and puts every load connection on it (after `-nogso` and `-workersN`, before
/// `-tickN`: `mio-tls`, `mio-merged0-tls`, `mio-workers2-tls`).
pub(crate) const TLS_SUFFIX: &str = "-tls";

/// Start of a server name that runs the `--baseline-bin` binary instead of `--server-bin`
/// with the options the rest of the name asks for (`base:mio-merged-shared-tick20`): the
/// build before a change, measured in the same run as the build after it.
pub(crate) const BASELINE_PREFIX: &str = "base:";

/// Ending of a server name that runs siprtmp with `--poll-interval N` (wake-up moderation,
/// mio and io-uring; last of all: `mio-merged-shared-tick20`). The gateway floor takes it too.
pub(crate) const TICK_SUFFIX: &str = "-tick";

/// Ending of a server name that runs siprtmp with `--workers N` (N nodes on N threads sharing
/// the port; before `-tickN`, last otherwise: `mio-workers2`, `mio-merged-workers2-tick20`).
pub(crate) const WORKERS_SUFFIX: &str = "-workers";

/// `name` without a `-workersN` ending, and N; `None` when the ending is malformed.
pub(crate) fn strip_workers(name: &str) -> Option<(&str, Option<u16>)> {
    match name.rfind(WORKERS_SUFFIX) {
        Some(at) => Some((
            &name[..at],
            Some(name[at + WORKERS_SUFFIX.len()..].parse().ok()?),
        )),
        None => Some((name, None)),
    }
}

/// `name` without a `-tickN` ending, and N; `None` when the ending is malformed.
pub(crate) fn strip_tick(name: &str) -> Option<(&str, Option<u64>)> {
    match name.rfind(TICK_SUFFIX) {
        Some(at) => Some((
            &name[..at],
            Some(name[at + TICK_SUFFIX.len()..].parse().ok()?),
        )),
        None => Some((name, None)),
    }
}

/// How a siprtmp server under test runs, from its name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct SiprtmpOptions<'a> {
    /// `--runtime`.
    pub runtime: &'a str,
    /// `--merge-writes`, when merged.
    pub merge_ms: Option<u64>,
    /// `--tcp-nodelay`.
    pub nodelay: bool,
    /// `--shared-rtp-ports`.
    pub shared_rtp_ports: bool,
    /// `--poll-interval`.
    pub poll_interval_ms: Option<u64>,
    /// Not `--no-udp-gso`.
    pub udp_gso: bool,
    /// `--workers`, when more than the binary's default of one.
    pub workers: Option<u16>,
    /// `--rtmps-port`, the load over RTMPS.
    pub tls: bool,
    /// Runs [`Binaries::baseline`] (the name starts with [`BASELINE_PREFIX`]).
    pub baseline: bool,
}

/// A server implementation to measure.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum ServerKind {
    /// `siprtmp --runtime <name>`, with merged writes and/or `TCP_NODELAY` when the name ends
    /// in [`MERGED_SUFFIX`] and/or [`NODELAY_SUFFIX`].
    Siprtmp(String),
    /// nginx with ngx_rtmp_module.
    Nginx,
    /// rtmplite3 (PyPI), the original RTMP server ported to Python 3.
    Rtmplite,
}

impl ServerKind {
    /// The name used in flags, tables and plots.
    pub(crate) fn label(&self) -> String {
        match self {
            ServerKind::Siprtmp(r) => r.clone(),
            ServerKind::Nginx => "nginx-rtmp".into(),
            ServerKind::Rtmplite => "rtmplite3".into(),
        }
    }

    /// For siprtmp: the runtime and options its name asks for.
    pub(crate) fn siprtmp_options(&self) -> Option<SiprtmpOptions<'_>> {
        let ServerKind::Siprtmp(name) = self else {
            return None;
        };
        let (name, baseline) = match name.strip_prefix(BASELINE_PREFIX) {
            Some(rest) => (rest, true),
            None => (name.as_str(), false),
        };
        let (rest, poll_interval_ms) = strip_tick(name)?;
        let (rest, tls) = match rest.strip_suffix(TLS_SUFFIX) {
            Some(rest) => (rest, true),
            None => (rest, false),
        };
        let (rest, workers) = strip_workers(rest)?;
        let (rest, udp_gso) = match rest.strip_suffix(NOGSO_SUFFIX) {
            Some(rest) => (rest, false),
            None => (rest, true),
        };
        let (rest, shared_rtp_ports) = match rest.strip_suffix(SHARED_SUFFIX) {
            Some(rest) => (rest, true),
            None => (rest, false),
        };
        let (rest, nodelay) = match rest.strip_suffix(NODELAY_SUFFIX) {
            Some(rest) => (rest, true),
            None => (rest, false),
        };
        let merged = rest.rfind(MERGED_SUFFIX).and_then(|at| {
            let window = &rest[at + MERGED_SUFFIX.len()..];
            let ms = match window {
                "" => MERGED_WINDOW_MS,
                digits => digits.parse().ok()?,
            };
            Some((&rest[..at], ms))
        });
        let (runtime, merge_ms) = match merged {
            Some((runtime, ms)) => (runtime, Some(ms)),
            None => (rest, None),
        };
        Some(SiprtmpOptions {
            runtime,
            merge_ms,
            nodelay,
            shared_rtp_ports,
            poll_interval_ms,
            udp_gso,
            workers,
            tls,
            baseline,
        })
    }
}

/// Where the binaries are.
#[derive(Debug, Clone)]
pub(crate) struct Binaries {
    /// The `siprtmp` binary.
    pub siprtmp: PathBuf,
    /// The siprtmp binary of the `base:` servers (`--baseline-bin`), if given.
    pub baseline: Option<PathBuf>,
    /// nginx and the RTMP module, if installed.
    pub nginx: Option<(PathBuf, PathBuf)>,
    /// The `rtmplite3` script, if installed.
    pub rtmplite: Option<PathBuf>,
}

/// The binary a siprtmp server runs: `--baseline-bin`'s for a `base:` name.
fn siprtmp_binary<'a>(
    options: &SiprtmpOptions<'_>,
    bins: &'a Binaries,
) -> Result<&'a PathBuf, String> {
    if options.baseline {
        bins.baseline
            .as_ref()
            .ok_or_else(|| format!("a {BASELINE_PREFIX} server needs --baseline-bin"))
    } else {
        Ok(&bins.siprtmp)
    }
}

/// The config file of a measured siprtmp: its per-address limits off, since every client of a
/// benchmark comes from one address.
const UNLIMITED_PER_ADDRESS: &str = "[rtmp]\nmax_connections_per_ip = 0\nmax_connections = 0\n\n[gateway]\nmax_clients_per_ip = 0\nmax_clients = 0\n";

/// A running server; killed when dropped.
pub(crate) struct Running {
    child: Child,
    /// Its RTMP address.
    pub addr: SocketAddr,
    /// Its RTMPS address, for an `R-tls` server: the players and publishers of the load
    /// connect there (the gateway's calls stay on RTMP).
    pub tls_addr: Option<SocketAddr>,
    dir: PathBuf,
}

impl Running {
    /// The PID to measure.
    pub(crate) fn pid(&self) -> String {
        self.child.id().to_string()
    }

    /// Stops the server with SIGTERM (SIGKILL after 3 s) and removes its directory.
    pub(crate) fn stop(mut self) {
        self.terminate();
    }

    fn terminate(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let pid = self.child.id() as libc::pid_t;
            // SAFETY: kill(2) on our own child's pid; no memory is involved.
            unsafe { libc::kill(pid, libc::SIGTERM) };
            let deadline = Instant::now() + Duration::from_secs(3);
            while Instant::now() < deadline {
                if let Ok(Some(_)) = self.child.try_wait() {
                    break;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            let _ = self.child.kill();
        }
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        self.terminate();
    }
}

/// Finds nginx and its RTMP module (`dpkg -L libnginx-mod-rtmp`, then the usual path).
pub(crate) fn find_nginx() -> Option<(PathBuf, PathBuf)> {
    let nginx = ["/usr/sbin/nginx", "/usr/bin/nginx", "/usr/local/sbin/nginx"]
        .iter()
        .map(PathBuf::from)
        .find(|p| p.exists())?;
    let from_dpkg = Command::new("dpkg")
        .args(["-L", "libnginx-mod-rtmp"])
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .and_then(|s| {
            s.lines()
                .find(|l| l.ends_with("/ngx_rtmp_module.so"))
                .map(PathBuf::from)
        });
    let module = from_dpkg
        .or_else(|| Some(PathBuf::from("/usr/lib/nginx/modules/ngx_rtmp_module.so")))
        .filter(|p| p.exists())?;
    Some((nginx, module))
}

/// Finds the `rtmplite3` script: `$RTMPLITE3`, then `PATH`, then the virtualenv that
/// scripts/test.sh installs it into (`${XDG_CACHE_HOME:-~/.cache}/siprtmp/rtmplite3`).
pub(crate) fn find_rtmplite() -> Option<PathBuf> {
    let from_env = std::env::var_os("RTMPLITE3").map(PathBuf::from);
    let on_path = std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|d| d.join("rtmplite3"))
            .find(|p| p.exists())
    });
    let cache = std::env::var_os("XDG_CACHE_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache")));
    let venv = cache.map(|c| c.join("siprtmp/rtmplite3/bin/rtmplite3"));
    [from_env, on_path, venv]
        .into_iter()
        .flatten()
        .find(|p| p.exists())
}

fn free_port() -> Result<u16, String> {
    let listener = TcpListener::bind("127.0.0.1:0").map_err(|e| e.to_string())?;
    Ok(listener.local_addr().map_err(|e| e.to_string())?.port())
}

fn scratch_dir(label: &str) -> Result<PathBuf, String> {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let dir = std::env::temp_dir().join(format!(
        "bench-compare-{}-{label}-{}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    ));
    std::fs::create_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    Ok(dir)
}

/// Starts `kind` on a free loopback port and waits until it accepts connections.
pub(crate) fn start(kind: &ServerKind, bins: &Binaries) -> Result<Running, String> {
    start_with(kind, bins, &[])
}

/// [`start`] with extra command-line arguments for siprtmp (the gateway's flags).
pub(crate) fn start_with(
    kind: &ServerKind,
    bins: &Binaries,
    extra: &[String],
) -> Result<Running, String> {
    start_configured(kind, bins, extra, "")
}

/// [`start_with`] with `config` appended to siprtmp's config file (TOML sections of its
/// own, such as a relay edge's `[apps.live]`); ignored for the other servers.
pub(crate) fn start_configured(
    kind: &ServerKind,
    bins: &Binaries,
    extra: &[String],
    config: &str,
) -> Result<Running, String> {
    let extra_config = config;
    if let Some(options) = kind.siprtmp_options() {
        siprtmp_binary(&options, bins)?;
    }
    let port = free_port()?;
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    let mut tls_addr = None;
    let dir = scratch_dir(&kind.label())?;
    let log_path = dir.join("server.log");
    let log = File::create(&log_path).map_err(|e| e.to_string())?;
    let mut command = match kind {
        ServerKind::Siprtmp(_) => {
            let options = kind.siprtmp_options().expect("a siprtmp server");
            let mut c = Command::new(siprtmp_binary(&options, bins)?);
            c.args(["-i", "127.0.0.1", "-p", &port.to_string(), "-r"])
                .arg(&dir)
                .args(["--runtime", options.runtime]);
            if let Some(ms) = options.merge_ms {
                // Since the players' and the calls' windows were split, a merged server merges
                // both, a `base:` one too: leaving the calls' flag out for it measured calls
                // written as they arrive against held ones, under the same name. A baseline
                // build from before the split refuses the flag, and its points fail, loudly.
                c.args(["--merge-writes", &ms.to_string()]);
                c.args(["--gateway-merge-writes", &ms.to_string()]);
            }
            if options.shared_rtp_ports {
                c.arg("--shared-rtp-ports");
            }
            if options.nodelay {
                c.arg("--tcp-nodelay");
            }
            if let Some(ms) = options.poll_interval_ms {
                c.args(["--poll-interval", &ms.to_string()]);
            }
            if !options.udp_gso {
                c.arg("--no-udp-gso");
            }
            if options.tls {
                let tls_port = free_port()?;
                let (cert, key) = crate::load::tls::server_files(&dir)?;
                c.args(["--rtmps-port", &tls_port.to_string(), "--tls-cert"])
                    .arg(cert)
                    .arg("--tls-key")
                    .arg(key);
                tls_addr = Some(SocketAddr::from(([127, 0, 0, 1], tls_port)));
            }
            if let Some(n) = options.workers {
                c.args(["--workers", &n.to_string()]);
            }
            {
                // Every load generator connects from 127.0.0.1: no per-address limits, for a
                // baseline build too (one from before the limits' keys existed, aa80097,
                // refuses them and fails its points with a clear error).
                let config = dir.join("siprtmp.toml");
                std::fs::write(&config, format!("{UNLIMITED_PER_ADDRESS}{extra_config}"))
                    .map_err(|e| e.to_string())?;
                c.arg("--config").arg(config);
            }
            c.args(extra).env("RUST_LOG", "warn");
            c
        }
        ServerKind::Rtmplite => {
            let script = bins.rtmplite.clone().ok_or("rtmplite3 is not installed")?;
            let mut c = Command::new(script);
            // -r: where it would write recordings (none: nothing asks it to record).
            c.args(["-i", "127.0.0.1", "-p", &port.to_string(), "-r"])
                .arg(format!("{}/", dir.display()));
            c
        }
        ServerKind::Nginx => {
            let (nginx, module) = bins.nginx.clone().ok_or("nginx is not installed")?;
            let conf = dir.join("nginx.conf");
            std::fs::write(&conf, nginx_conf(&module, &dir, port)).map_err(|e| e.to_string())?;
            let mut c = Command::new(nginx);
            c.arg("-c")
                .arg(&conf)
                .arg("-p")
                .arg(&dir)
                .arg("-e")
                .arg(dir.join("error.log"));
            c
        }
    };
    let child = command
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .map_err(|e| format!("cannot start {}: {e}", kind.label()))?;
    let mut running = Running {
        child,
        addr,
        tls_addr,
        dir,
    };
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        if let Ok(Some(status)) = running.child.try_wait() {
            let log = std::fs::read_to_string(&log_path).unwrap_or_default();
            let first = log.lines().find(|l| !l.trim().is_empty()).unwrap_or("");
            return Err(format!("{} exited ({status}): {first}", kind.label()));
        }
        if TcpStream::connect_timeout(&addr, Duration::from_millis(100)).is_ok() {
            return Ok(running);
        }
        if Instant::now() >= deadline {
            return Err(format!(
                "{} did not listen on {addr} within 5 s",
                kind.label()
            ));
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// A minimal nginx-rtmp configuration: one process in the foreground (the one whose CPU is
/// measured), a live application that records nothing.
fn nginx_conf(module: &Path, dir: &Path, port: u16) -> String {
    format!(
        "load_module {module};\n\
         daemon off;\n\
         master_process off;\n\
         worker_processes 1;\n\
         worker_rlimit_nofile 20000;\n\
         pid {dir}/nginx.pid;\n\
         error_log {dir}/error.log warn;\n\
         events {{ worker_connections 16384; }}\n\
         rtmp {{ server {{ listen 127.0.0.1:{port}; chunk_size 4096;\n\
         \x20   application live {{ live on; record off; }} }} }}\n",
        module = module.display(),
        dir = dir.display(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_merged_name_runs_its_runtime_with_merged_writes() {
        let options = |name: &str| {
            let kind = ServerKind::Siprtmp(name.into());
            kind.siprtmp_options()
                .map(|o| (o.runtime.to_owned(), o.merge_ms, o.nodelay))
        };
        let shared = |name: &str| {
            let kind = ServerKind::Siprtmp(name.into());
            kind.siprtmp_options()
                .map(|o| (o.runtime.to_owned(), o.merge_ms, o.shared_rtp_ports))
        };
        assert_eq!(
            options("mio-merged"),
            Some(("mio".into(), Some(100), false))
        );
        assert_eq!(
            options("tokio-merged20"),
            Some(("tokio".into(), Some(20), false))
        );
        assert_eq!(options("tokio"), Some(("tokio".into(), None, false)));
        assert_eq!(options("mio-nodelay"), Some(("mio".into(), None, true)));
        assert_eq!(
            options("mio-merged-nodelay"),
            Some(("mio".into(), Some(100), true))
        );
        assert_eq!(shared("mio-shared"), Some(("mio".into(), None, true)));
        assert_eq!(
            shared("tokio-merged-shared"),
            Some(("tokio".into(), Some(100), true))
        );
        assert_eq!(shared("mio-merged"), Some(("mio".into(), Some(100), false)));
        let tick = |name: &str| {
            let kind = ServerKind::Siprtmp(name.into());
            kind.siprtmp_options()
                .map(|o| (o.runtime.to_owned(), o.shared_rtp_ports, o.poll_interval_ms))
        };
        assert_eq!(
            tick("mio-merged-shared-tick20"),
            Some(("mio".into(), true, Some(20)))
        );
        assert_eq!(tick("mio-tick5"), Some(("mio".into(), false, Some(5))));
        let gso = |name: &str| {
            let kind = ServerKind::Siprtmp(name.into());
            kind.siprtmp_options()
                .map(|o| (o.runtime.to_owned(), o.shared_rtp_ports, o.udp_gso))
        };
        assert_eq!(gso("mio-shared"), Some(("mio".into(), true, true)));
        assert_eq!(
            gso("mio-merged-shared-nogso-tick20"),
            Some(("mio".into(), true, false))
        );
        assert_eq!(tick("mio-tickx"), None);
        assert_eq!(ServerKind::Nginx.siprtmp_options(), None);
        let base = |name: &str| {
            let kind = ServerKind::Siprtmp(name.into());
            kind.siprtmp_options()
                .map(|o| (o.runtime.to_owned(), o.poll_interval_ms, o.baseline))
        };
        assert_eq!(
            base("base:mio-merged-shared-tick20"),
            Some(("mio".into(), Some(20), true))
        );
        assert_eq!(base("mio-tick20"), Some(("mio".into(), Some(20), false)));
        let workers = |name: &str| {
            let kind = ServerKind::Siprtmp(name.into());
            kind.siprtmp_options().map(|o| {
                (
                    o.runtime.to_owned(),
                    o.merge_ms,
                    o.workers,
                    o.poll_interval_ms,
                )
            })
        };
        assert_eq!(
            workers("mio-workers2"),
            Some(("mio".into(), None, Some(2), None))
        );
        assert_eq!(
            workers("mio-merged-workers2-tick20"),
            Some(("mio".into(), Some(100), Some(2), Some(20)))
        );
        assert_eq!(workers("mio"), Some(("mio".into(), None, None, None)));
        assert_eq!(workers("mio-workersx"), None);
    }

    #[test]
    fn a_tls_name_runs_rtmps_with_the_rest_of_its_options() {
        let tls = |name: &str| {
            let kind = ServerKind::Siprtmp(name.into());
            kind.siprtmp_options()
                .map(|o| (o.runtime.to_owned(), o.merge_ms, o.tls, o.poll_interval_ms))
        };
        assert_eq!(tls("mio-tls"), Some(("mio".into(), None, true, None)));
        assert_eq!(tls("mio"), Some(("mio".into(), None, false, None)));
        assert_eq!(
            tls("tokio-merged0-tls-tick20"),
            Some(("tokio".into(), Some(0), true, Some(20)))
        );
    }

    #[test]
    fn a_base_server_runs_the_baseline_binary_and_needs_one() {
        let mut bins = Binaries {
            siprtmp: "/new/siprtmp".into(),
            baseline: None,
            nginx: None,
            rtmplite: None,
        };
        let base = ServerKind::Siprtmp("base:mio-shared".into());
        let options = base.siprtmp_options().unwrap();
        let missing = siprtmp_binary(&options, &bins).unwrap_err();
        assert!(missing.contains("--baseline-bin"), "{missing}");
        assert!(start(&base, &bins).is_err());
        bins.baseline = Some("/old/siprtmp".into());
        assert_eq!(
            siprtmp_binary(&options, &bins).unwrap(),
            &PathBuf::from("/old/siprtmp")
        );
        let new = ServerKind::Siprtmp("mio-shared".into());
        assert_eq!(
            siprtmp_binary(&new.siprtmp_options().unwrap(), &bins).unwrap(),
            &PathBuf::from("/new/siprtmp")
        );
    }
}
