//! nginx with the RTMP module as a reference server: one process on a free loopback port,
//! playing files from a directory (`application APP { play DIR; }`) or serving live
//! applications with an HTTP statistics page ([`Nginx::live`], restartable on the same ports),
//! killed when dropped.

use crate::ports::{free_tcp_port, LOOPBACK};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// How long nginx gets to start listening.
const STARTUP: Duration = Duration::from_secs(10);

/// nginx and its RTMP module: `dpkg -L libnginx-mod-rtmp`, then the usual paths.
fn find_nginx() -> (PathBuf, PathBuf) {
    let nginx = ["/usr/sbin/nginx", "/usr/bin/nginx", "/usr/local/sbin/nginx"]
        .iter()
        .map(PathBuf::from)
        .find(|p| p.exists())
        .expect("nginx is not installed (run scripts/test.sh to install peers)");
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
    let module =
        from_dpkg.unwrap_or_else(|| PathBuf::from("/usr/lib/nginx/modules/ngx_rtmp_module.so"));
    assert!(
        module.exists(),
        "the nginx RTMP module is not installed (libnginx-mod-rtmp)"
    );
    (nginx, module)
}

/// A running nginx-rtmp.
pub struct Nginx {
    child: Child,
    /// Its RTMP address.
    pub addr: SocketAddr,
    /// Its HTTP statistics page (`rtmp_stat all`), for [`Nginx::live`] ones.
    pub stat: Option<SocketAddr>,
    /// Its configuration, logs and pid file.
    dir: PathBuf,
}

/// Times nginx is started on fresh ports when it cannot bind the ones it was given.
const START_ATTEMPTS: u32 = 3;

/// Whether process `pid` holds a TCP socket listening on `port` (IPv4, from
/// `/proc/net/tcp`, whose inodes are matched against the process's descriptors).
fn listens(pid: u32, port: u16) -> bool {
    let table = std::fs::read_to_string("/proc/net/tcp").unwrap_or_default();
    let inodes: Vec<String> = table
        .lines()
        .skip(1)
        .filter_map(|line| {
            let fields: Vec<&str> = line.split_whitespace().collect();
            let local_port = fields.get(1)?.rsplit(':').next()?;
            let listening = fields.get(3) == Some(&"0A");
            let inode = fields.get(9)?;
            (listening && u16::from_str_radix(local_port, 16).ok()? == port)
                .then(|| format!("socket:[{inode}]"))
        })
        .collect();
    let Ok(fds) = std::fs::read_dir(format!("/proc/{pid}/fd")) else {
        return false;
    };
    fds.filter_map(Result::ok)
        .filter_map(|fd| std::fs::read_link(fd.path()).ok())
        .any(|link| {
            inodes
                .iter()
                .any(|inode| link.as_os_str() == inode.as_str())
        })
}

/// A free loopback address for nginx to bind itself.
fn free_loopback() -> SocketAddr {
    SocketAddr::new(LOOPBACK, free_tcp_port(LOOPBACK))
}

impl Nginx {
    /// Starts nginx-rtmp serving the `.flv` files of `media` as `rtmp://ADDR/APP/NAME`; its
    /// configuration, logs and pid file go to `dir`.
    pub fn play_files(app: &str, media: &Path, dir: &Path) -> Self {
        let apps = format!("application {app} {{ play {}; }}", media.display());
        Self::start(dir, false, &apps)
    }

    /// Starts nginx-rtmp with live applications, each `(name, directives)` becoming
    /// `application NAME { live on; DIRECTIVES }`, and a statistics page
    /// ([`Nginx::stream_clients`]).
    pub fn live(apps: &[(&str, &str)], dir: &Path) -> Self {
        let apps = apps
            .iter()
            .map(|(name, directives)| format!("application {name} {{ live on; {directives} }}"))
            .collect::<Vec<_>>()
            .join("\n    ");
        Self::start(dir, true, &apps)
    }

    /// Stops this nginx (as a crash would: killed) and starts it again with the same
    /// configuration on the same ports.
    pub fn restart(mut self) -> Self {
        self.kill();
        let conf = std::fs::read_to_string(self.dir.join("nginx.conf")).expect("nginx.conf");
        let (addr, stat, dir) = (self.addr, self.stat, self.dir.clone());
        let child = Self::spawn(&dir);
        std::mem::forget(self);
        let _ = conf;
        Self::wait_listening(child, addr, stat, dir).unwrap_or_else(|log| {
            panic!("nginx could not bind its ports again: {log}");
        })
    }

    /// Kills the process now (it is not restarted).
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Starts nginx on free loopback ports (with a statistics page if `with_stat`). The ports
    /// are found free, released, then bound by nginx, and another program can take one in
    /// between: nginx then cannot bind, and is started again on fresh ports, up to
    /// [`START_ATTEMPTS`] times.
    fn start(dir: &Path, with_stat: bool, apps: &str) -> Self {
        let mut attempt = 1;
        loop {
            let addr = free_loopback();
            let stat = with_stat.then(free_loopback);
            match Self::start_on(dir, addr, stat, apps) {
                Ok(nginx) => return nginx,
                Err(log) if attempt == START_ATTEMPTS => {
                    panic!("nginx could not bind its ports {START_ATTEMPTS} times: {log}")
                }
                Err(_) => attempt += 1,
            }
        }
    }

    fn start_on(
        dir: &Path,
        addr: SocketAddr,
        stat: Option<SocketAddr>,
        apps: &str,
    ) -> Result<Self, String> {
        let (_, module) = find_nginx();
        std::fs::create_dir_all(dir).expect("nginx dir");
        let http = match stat {
            Some(stat) => format!(
                "http {{ access_log off; server {{ listen {stat}; \
                 location /stat {{ rtmp_stat all; }} }} }}\n"
            ),
            None => String::new(),
        };
        let conf = format!(
            "load_module {module};\n\
             daemon off;\n\
             master_process off;\n\
             worker_processes 1;\n\
             pid {dir}/nginx.pid;\n\
             error_log {dir}/error.log info;\n\
             events {{ worker_connections 256; }}\n\
             rtmp {{ server {{ listen {addr}; chunk_size 4096;\n\
             \x20   {apps} }} }}\n{http}",
            module = module.display(),
            dir = dir.display(),
        );
        std::fs::write(dir.join("nginx.conf"), conf).expect("write nginx.conf");
        // A log from an earlier attempt would look like this one's.
        let _ = std::fs::remove_file(dir.join("error.log"));
        let child = Self::spawn(dir);
        Self::wait_listening(child, addr, stat, dir.to_path_buf())
    }

    fn spawn(dir: &Path) -> Child {
        let (nginx, _) = find_nginx();
        Command::new(nginx)
            .arg("-c")
            .arg(dir.join("nginx.conf"))
            .arg("-p")
            .arg(dir)
            .arg("-e")
            .arg(dir.join("error.log"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start nginx")
    }

    /// Waits until nginx itself listens on `addr` (and `stat`): a listener another program
    /// holds on the port does not count. `Err` with its log if nginx could not bind them.
    fn wait_listening(
        mut child: Child,
        addr: SocketAddr,
        stat: Option<SocketAddr>,
        dir: PathBuf,
    ) -> Result<Self, String> {
        let deadline = Instant::now() + STARTUP;
        let pid = child.id();
        loop {
            let log = || std::fs::read_to_string(dir.join("error.log")).unwrap_or_default();
            if log().contains("Address already in use") {
                // It would retry for 2.5 s, then exit.
                let _ = child.kill();
                let _ = child.wait();
                return Err(log());
            }
            if let Ok(Some(status)) = child.try_wait() {
                panic!("nginx exited ({status}): {}", log());
            }
            let up = |a: &SocketAddr| listens(pid, a.port());
            if up(&addr) && stat.as_ref().is_none_or(up) {
                return Ok(Self {
                    child,
                    addr,
                    stat,
                    dir,
                });
            }
            assert!(
                Instant::now() < deadline,
                "nginx did not listen on {addr} within {STARTUP:?}"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// `rtmp://127.0.0.1:PORT/path`.
    pub fn url(&self, path: &str) -> String {
        format!("rtmp://{}/{}", self.addr, path)
    }

    /// The statistics page's XML (`rtmp_stat all`).
    pub fn stat_xml(&self) -> String {
        let stat = self.stat.expect("a live nginx has a statistics page");
        let (status, body) = crate::scrape::curl(&stat.to_string(), "GET", "/stat", None);
        assert_eq!(status, 200, "{body}");
        body
    }

    /// The clients (publisher and players) of the live stream `app/name` on the statistics
    /// page; `None` when nginx has no such stream.
    pub fn stream_clients(&self, app: &str, name: &str) -> Option<usize> {
        let xml = self.stat_xml();
        let application = xml
            .split("<application>")
            .find(|a| a.trim_start().starts_with(&format!("<name>{app}</name>")))?;
        let stream = application
            .split("<stream>")
            .skip(1)
            .find(|s| s.trim_start().starts_with(&format!("<name>{name}</name>")))?;
        let count = stream.split("<nclients>").nth(1)?.split('<').next()?;
        count.trim().parse().ok()
    }

    /// The end of nginx's error log (`info` level: sessions, commands), for failure messages.
    pub fn log_tail(&self) -> String {
        let log = std::fs::read_to_string(self.dir.join("error.log")).unwrap_or_default();
        log[log.len().saturating_sub(4000)..].to_string()
    }
}

impl Drop for Nginx {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::TcpListener;

    #[test]
    fn a_listener_counts_only_for_the_process_that_holds_it() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        assert!(listens(std::process::id(), port), "ours");
        // pid 1 does not hold it.
        assert!(!listens(1, port), "another process's");
        drop(listener);
        assert!(!listens(std::process::id(), port), "closed");
    }
}
