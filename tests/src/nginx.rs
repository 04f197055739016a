//! nginx with the RTMP module as a reference server: one process on a free loopback port,
//! playing files from a directory (`application APP { play DIR; }`), killed when dropped.

use std::net::{SocketAddr, TcpListener, TcpStream};
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
}

impl Nginx {
    /// Starts nginx-rtmp serving the `.flv` files of `media` as `rtmp://ADDR/APP/NAME`; its
    /// configuration, logs and pid file go to `dir`.
    pub fn play_files(app: &str, media: &Path, dir: &Path) -> Self {
        let (nginx, module) = find_nginx();
        std::fs::create_dir_all(dir).expect("nginx dir");
        // nginx binds the port itself; the OS picks one that is free now.
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("free port")
            .port();
        let addr = SocketAddr::from(([127, 0, 0, 1], port));
        let conf = format!(
            "load_module {module};\n\
             daemon off;\n\
             master_process off;\n\
             worker_processes 1;\n\
             pid {dir}/nginx.pid;\n\
             error_log {dir}/error.log warn;\n\
             events {{ worker_connections 64; }}\n\
             rtmp {{ server {{ listen {addr}; chunk_size 4096;\n\
             \x20   application {app} {{ play {media}; }} }} }}\n",
            module = module.display(),
            dir = dir.display(),
            media = media.display(),
        );
        let conf_path = dir.join("nginx.conf");
        std::fs::write(&conf_path, conf).expect("write nginx.conf");
        let mut child = Command::new(nginx)
            .arg("-c")
            .arg(&conf_path)
            .arg("-p")
            .arg(dir)
            .arg("-e")
            .arg(dir.join("error.log"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start nginx");
        let deadline = Instant::now() + STARTUP;
        loop {
            if let Ok(Some(status)) = child.try_wait() {
                let log = std::fs::read_to_string(dir.join("error.log")).unwrap_or_default();
                panic!("nginx exited ({status}): {log}");
            }
            if TcpStream::connect_timeout(&addr, Duration::from_millis(100)).is_ok() {
                return Self { child, addr };
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
}

impl Drop for Nginx {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
