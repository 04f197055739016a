//! Kamailio (Debian `kamailio`) with the repository's own deployment configuration,
//! `deploy/kamailio/kamailio.cfg`, for the farm suite: the file is used as shipped, its
//! addresses, ports and paths given as preprocessor defines (`-A NAME=VALUE`) pointing into
//! the test's scratch directory (the Digest users as a db_text `subscriber` table, the
//! dispatcher's far ends, kamcmd's socket). Stopped (SIGTERM, which it passes to its
//! workers) when dropped.

use std::net::{SocketAddr, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::kamailio::modules_dir;
use crate::locate::workspace_root;

/// How long Kamailio may take to answer its first request.
const READY_WITHIN: Duration = Duration::from_secs(10);

/// What the test gives the shipped configuration.
#[derive(Debug, Clone)]
pub struct KamailioSetup {
    /// Where it listens for SIP over UDP.
    pub sip: SocketAddr,
    /// Digest users: (username, password).
    pub users: Vec<(String, String)>,
    /// The far ends of dispatcher set 1.
    pub far_ends: Vec<SocketAddr>,
    /// Seconds between OPTIONS probes of the far ends.
    pub probe_interval_secs: u32,
    /// Milliseconds a relayed request waits for a first answer.
    pub fr_timer_ms: u32,
}

/// A running Kamailio (see the module documentation).
pub struct Kamailio {
    child: Child,
    /// Its kamcmd socket.
    pub ctl: PathBuf,
}

/// The deployment configuration of the repository.
pub fn deployed_config() -> PathBuf {
    workspace_root().join("deploy/kamailio/kamailio.cfg")
}

impl Kamailio {
    /// Starts Kamailio with [`deployed_config`] and `setup`, its files in `dir`; returns once
    /// it answers requests (10 s at most).
    pub fn start(dir: &Path, setup: &KamailioSetup) -> Self {
        let db = dir.join("dbtext");
        std::fs::create_dir_all(&db).expect("db_text directory");
        std::fs::write(
            db.join("version"),
            "id(int,auto) table_name(string) table_version(int) \n0:subscriber:7\n",
        )
        .expect("write version table");
        let mut subscribers =
            "id(int,auto) username(string) domain(string) password(string) ha1(string,null) ha1b(string,null) \n"
                .to_owned();
        for (i, (user, password)) in setup.users.iter().enumerate() {
            subscribers.push_str(&format!(
                "{}:{user}:{}:{password}::\n",
                i + 1,
                setup.sip.ip()
            ));
        }
        std::fs::write(db.join("subscriber"), subscribers).expect("write subscriber table");
        let list = dir.join("dispatcher.list");
        let lines: String = setup
            .far_ends
            .iter()
            .map(|far| format!("1 sip:{far}\n"))
            .collect();
        std::fs::write(&list, lines).expect("write dispatcher list");
        let ctl = dir.join("kamailio_ctl");
        let define = |name: &str, value: String| ["-A".to_owned(), format!("{name}={value}")];
        let quoted = |s: &Path| format!("\"{}\"", s.display());
        let mut command = Command::new("kamailio");
        command
            .arg("-f")
            .arg(deployed_config())
            .args(["-DD", "-E", "-Y"])
            .arg(dir)
            .args(define("SIP_IP", setup.sip.ip().to_string()))
            .args(define("SIP_PORT", setup.sip.port().to_string()))
            .args(define("MODULES_DIR", format!("\"{}\"", modules_dir())))
            .args(define("DB_URL", format!("\"text://{}\"", db.display())))
            .args(define("DISPATCHER_LIST", quoted(&list)))
            .args(define("CTL_SOCKET", format!("\"unix:{}\"", ctl.display())))
            .args(define(
                "PROBE_INTERVAL",
                setup.probe_interval_secs.to_string(),
            ))
            .args(define("FR_TIMER", setup.fr_timer_ms.to_string()))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(
                std::fs::File::create(dir.join("kamailio.log"))
                    .map(Stdio::from)
                    .unwrap_or_else(|_| Stdio::null()),
            );
        let child = command
            .spawn()
            .expect("kamailio (scripts/test.sh installs it)");
        let kamailio = Self { child, ctl };
        kamailio.wait_ready(setup.sip, dir);
        kamailio
    }

    /// Until Kamailio answers an OPTIONS on `sip` (any response).
    fn wait_ready(&self, sip: SocketAddr, dir: &Path) {
        let probe = UdpSocket::bind(SocketAddr::new(sip.ip(), 0)).unwrap();
        probe
            .set_read_timeout(Some(Duration::from_millis(200)))
            .unwrap();
        let me = probe.local_addr().unwrap();
        let options = format!(
            "OPTIONS sip:{sip} SIP/2.0\r\n\
             Via: SIP/2.0/UDP {me};branch=z9hG4bKready{}\r\n\
             Max-Forwards: 70\r\nFrom: <sip:probe@{me}>;tag=p\r\nTo: <sip:{sip}>\r\n\
             Call-ID: ready@{me}\r\nCSeq: 1 OPTIONS\r\nContent-Length: 0\r\n\r\n",
            std::process::id()
        );
        let deadline = Instant::now() + READY_WITHIN;
        let mut buf = [0u8; 2048];
        while Instant::now() < deadline {
            let _ = probe.send_to(options.as_bytes(), sip);
            if let Ok(n) = probe.recv(&mut buf) {
                if buf[..n].starts_with(b"SIP/2.0 ") {
                    return;
                }
            }
        }
        let log = std::fs::read_to_string(dir.join("kamailio.log")).unwrap_or_default();
        panic!("Kamailio did not answer on {sip}; its log:\n{log}");
    }

    /// `kamcmd ul.lookup location USER` through the control socket: whether the location
    /// table has a binding for `user`.
    pub fn is_registered(&self, user: &str) -> bool {
        let output = Command::new("kamcmd")
            .arg("-s")
            .arg(format!("unix:{}", self.ctl.display()))
            .args(["ul.lookup", "location", user])
            .stdin(Stdio::null())
            .output()
            .expect("kamcmd (in the kamailio package)");
        let text = String::from_utf8_lossy(&output.stdout);
        output.status.success() && text.contains("Contact")
    }
}

impl Drop for Kamailio {
    fn drop(&mut self) {
        let pid = self.child.id().to_string();
        let _ = Command::new("kill").args(["-TERM", &pid]).status();
        let stopped = crate::wait::until(Duration::from_secs(5), || {
            matches!(self.child.try_wait(), Ok(Some(_)))
        });
        if !stopped {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}
