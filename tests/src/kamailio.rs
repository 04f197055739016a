//! Kamailio (Debian `kamailio`, with `kamailio-tls-modules` for SIP over TLS) as a child
//! process with a configuration the test writes: started in the foreground with its runtime
//! files in the test's scratch directory, stopped (SIGTERM, which it passes to its worker
//! processes) when dropped; and the configuration the suites give it: a registrar with digest
//! authentication and a record-routing proxy, on the listeners a test names.

use std::net::{TcpStream, UdpSocket};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// How long Kamailio has to start answering.
const READY: Duration = Duration::from_secs(10);

/// A running Kamailio.
pub struct Kamailio {
    child: Child,
}

/// Kamailio's module directory (Debian's multiarch path, or the plain one).
pub fn modules_dir() -> &'static str {
    [
        "/usr/lib/x86_64-linux-gnu/kamailio/modules/",
        "/usr/lib/aarch64-linux-gnu/kamailio/modules/",
        "/usr/lib/kamailio/modules/",
    ]
    .into_iter()
    .find(|m| Path::new(m).join("tm.so").exists())
    .expect("Kamailio's modules (scripts/test.sh installs the kamailio package)")
}

/// Registrar with digest authentication (every REGISTER checked against `password`, whatever
/// the user) and record-routing proxy to the registered contacts, listening on `listen`
/// (Kamailio's `proto:ip:port` spelling, e.g. `tls:127.0.0.1:5061`). With `tls_cfg` (see
/// [`tls_cfg`]) the tls module is loaded; connections the clients opened are reused for
/// requests to them (`tcp_accept_aliases`: the Via's `alias` of RFC 5923).
pub fn registrar_config(
    modules: &str,
    listen: &[String],
    tls_cfg: Option<&Path>,
    password: &str,
) -> String {
    let listen: String = listen.iter().map(|l| format!("listen={l}\n")).collect();
    let tls = match tls_cfg {
        Some(cfg) => format!(
            "loadmodule \"tls.so\"\nmodparam(\"tls\", \"config\", \"{}\")\n",
            cfg.display()
        ),
        None => String::new(),
    };
    let enable_tls = if tls_cfg.is_some() { "yes" } else { "no" };
    format!(
        r#"#!KAMAILIO
debug=2
log_stderror=yes
fork=yes
children=1
tcp_children=2
enable_tls={enable_tls}
tcp_accept_aliases=yes
auto_aliases=no
{listen}mpath="{modules}"
{tls}loadmodule "tm.so"
loadmodule "sl.so"
loadmodule "rr.so"
loadmodule "pv.so"
loadmodule "maxfwd.so"
loadmodule "usrloc.so"
loadmodule "registrar.so"
loadmodule "textops.so"
loadmodule "siputils.so"
loadmodule "auth.so"
request_route {{
    if (!mf_process_maxfwd_header("10")) {{ sl_send_reply("483", "Too Many Hops"); exit; }}
    if (has_totag()) {{
        if (loose_route()) {{ t_relay(); exit; }}
        if (is_method("ACK")) {{ if (t_check_trans()) {{ t_relay(); }} exit; }}
        sl_send_reply("404", "Not here");
        exit;
    }}
    if (is_method("CANCEL")) {{ if (t_check_trans()) {{ t_relay(); }} exit; }}
    if (is_method("REGISTER")) {{
        if (!pv_www_authenticate("$td", "{password}", "0")) {{
            www_challenge("$td", "0");
            exit;
        }}
        save("location");
        exit;
    }}
    if (!lookup("location")) {{ sl_send_reply("404", "Not Found"); exit; }}
    record_route();
    t_relay();
}}
"#
    )
}

/// Kamailio's tls.cfg: its certificate and key, no client certificate asked for (and none
/// verified when it connects out).
pub fn tls_cfg(cert: &Path, key: &Path) -> String {
    format!(
        "[server:default]\nmethod = TLSv1.2+\nverify_certificate = no\nrequire_certificate = no\n\
         certificate = {}\nprivate_key = {}\n\n[client:default]\nverify_certificate = no\n\
         require_certificate = no\n",
        cert.display(),
        key.display()
    )
}

impl Kamailio {
    /// Starts Kamailio with `config` (written to `dir/kamailio.cfg`), its runtime files in
    /// `dir`. Not yet known to be ready: see [`Self::wait_udp`] and [`Self::wait_tcp`].
    pub fn start(dir: &Path, config: &str) -> Self {
        let path = dir.join("kamailio.cfg");
        std::fs::write(&path, config).expect("write config");
        let log = std::fs::File::create(dir.join("kamailio.log")).expect("kamailio log");
        let child = Command::new("kamailio")
            .arg("-f")
            .arg(&path)
            .args(["-DD", "-E", "-Y"])
            .arg(dir)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("kamailio (scripts/test.sh installs it)");
        Self { child }
    }

    /// Whether the process is still running (it did not exit or crash).
    pub fn running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    /// Until Kamailio answers a request on UDP `port` (any final response), at most 10 s.
    pub fn wait_udp(&mut self, port: u16) {
        let probe = UdpSocket::bind("127.0.0.1:0").unwrap();
        probe
            .set_read_timeout(Some(Duration::from_millis(200)))
            .unwrap();
        let me = probe.local_addr().unwrap();
        let options = format!(
            "OPTIONS sip:nobody@127.0.0.1:{port} SIP/2.0\r\n\
             Via: SIP/2.0/UDP {me};branch=z9hG4bKprobe{}\r\n\
             Max-Forwards: 70\r\nFrom: <sip:probe@{me}>;tag=p\r\nTo: <sip:nobody@127.0.0.1>\r\n\
             Call-ID: probe@{me}\r\nCSeq: 1 OPTIONS\r\nContent-Length: 0\r\n\r\n",
            std::process::id()
        );
        let deadline = Instant::now() + READY;
        let mut buf = [0u8; 2048];
        while Instant::now() < deadline && self.running() {
            let _ = probe.send_to(options.as_bytes(), ("127.0.0.1", port));
            if let Ok(n) = probe.recv(&mut buf) {
                if buf[..n].starts_with(b"SIP/2.0 ") {
                    return;
                }
            }
        }
        panic!("Kamailio did not answer on UDP port {port}");
    }

    /// Until Kamailio accepts TCP connections on `port` (its TLS listener), at most 10 s.
    pub fn wait_tcp(&mut self, port: u16) {
        let deadline = Instant::now() + READY;
        while Instant::now() < deadline && self.running() {
            let addr = ([127, 0, 0, 1], port).into();
            if TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok() {
                return;
            }
            // Nothing to wait on but the listener's appearance: poll it.
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!("Kamailio did not listen on TCP port {port}");
    }
}

impl Drop for Kamailio {
    fn drop(&mut self) {
        let pid = self.child.id().to_string();
        let _ = Command::new("kill").args(["-TERM", &pid]).status();
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
