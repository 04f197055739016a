//! Running the `siprtmp` binary as an operator would, for the tests of this directory: with
//! flags and an optional config file, bounded in time.

#![allow(dead_code)] // Each test file uses its own part.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

/// The binary under test.
pub(crate) fn siprtmp() -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_siprtmp"));
    command.stdin(Stdio::null()).env_remove("RUST_LOG");
    command
}

/// Writes `text` as `name` in a fresh scratch directory for `test`; returns its path.
pub(crate) fn config_file(test: &str, name: &str, text: &str) -> PathBuf {
    let path = siprtmp_tests::scratch_dir(test).join(name);
    std::fs::write(&path, text).expect("write config");
    path
}

/// Waits for `child` to exit, at most `limit`; kills it and panics if it does not.
pub(crate) fn wait_exit(mut child: Child, limit: Duration, what: &str) -> Output {
    let deadline = Instant::now() + limit;
    loop {
        if child.try_wait().expect("wait").is_some() {
            return child.wait_with_output().expect("output");
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            let output = child.wait_with_output().expect("output");
            panic!(
                "{what}: still running after {limit:?}; stderr: {}",
                String::from_utf8_lossy(&output.stderr)
            );
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Runs the binary with `args` (and `-c config` when given) expecting it to refuse to start:
/// its exit status and stderr.
pub(crate) fn refused(args: &[&str], config: Option<&Path>) -> (i32, String) {
    let mut command = siprtmp();
    command
        .args(["-i", "127.0.0.1", "-p", "0"])
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    if let Some(path) = config {
        command.arg("-c").arg(path);
    }
    let child = command.spawn().expect("start siprtmp");
    let output = wait_exit(child, Duration::from_secs(20), &format!("{args:?}"));
    let stderr = String::from_utf8(output.stderr).expect("UTF-8 stderr");
    let code = output.status.code().expect("an exit status, not a signal");
    (code, stderr)
}

/// Sends SIGTERM to `child`.
pub(crate) fn sigterm(child: &Child) {
    let status = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .expect("run kill");
    assert!(status.success());
}

/// A `siprtmp` serving live streams into a scratch directory, logging at info level; the test
/// waits on its log lines. Killed when dropped.
pub(crate) struct LoggingServer {
    child: Child,
    lines: std::sync::mpsc::Receiver<String>,
}

impl LoggingServer {
    /// Starts `siprtmp -i 127.0.0.1 -p 0 --no-gateway -r ROOT` (a port from the OS).
    pub(crate) fn start(root: &Path) -> Self {
        Self::start_with(root, &[])
    }

    /// [`Self::start`] with more flags (`--config FILE`...).
    pub(crate) fn start_with(root: &Path, args: &[&str]) -> Self {
        let mut child = Command::new(env!("CARGO_BIN_EXE_siprtmp"))
            .args(["-i", "127.0.0.1", "-p", "0", "--no-gateway"])
            .args(args)
            .arg("-r")
            .arg(root)
            .stdin(Stdio::null())
            .env("RUST_LOG", "info")
            .stderr(Stdio::piped())
            .spawn()
            .expect("start siprtmp");
        let lines = log_lines(&mut child);
        Self { child, lines }
    }

    /// The server's process id.
    pub(crate) fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Waits (30 s at most) for a log line containing `needle`; returns it.
    pub(crate) fn wait_line(&self, needle: &str) -> String {
        loop {
            let line = self
                .lines
                .recv_timeout(Duration::from_secs(30))
                .unwrap_or_else(|_| panic!("no log line with {needle:?} within 30 s"));
            if line.contains(needle) {
                return line;
            }
        }
    }

    /// Waits for the RTMP listener's log line; returns its address.
    pub(crate) fn rtmp_addr(&self) -> std::net::SocketAddr {
        let marker = "RTMP listening on ";
        let line = self.wait_line(marker);
        line.split(marker)
            .nth(1)
            .and_then(|rest| rest.split_whitespace().next())
            .and_then(|addr| addr.parse().ok())
            .unwrap_or_else(|| panic!("no address in {line:?}"))
    }
}

impl Drop for LoggingServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The lines `child` writes to its (piped) stderr, as they come, read by a thread of their own.
pub(crate) fn log_lines(child: &mut Child) -> std::sync::mpsc::Receiver<String> {
    let (tx, lines) = std::sync::mpsc::channel();
    let stderr = child.stderr.take().expect("piped stderr");
    std::thread::spawn(move || {
        use std::io::BufRead;
        for line in std::io::BufReader::new(stderr)
            .lines()
            .map_while(Result::ok)
        {
            let _ = tx.send(line);
        }
    });
    lines
}

/// A live stream beside an attack: ffmpeg publishes a 20 s H.264 + AAC file to `live/show` on
/// a [`LoggingServer`] and ffmpeg watches it into the scratch directory; at the end the
/// player must have received every video frame, so the attack harmed no one else.
pub(crate) struct WatchedStream {
    publisher: siprtmp_tests::peers::Peer,
    player: siprtmp_tests::peers::Peer,
    source: PathBuf,
    watched: PathBuf,
}

impl WatchedStream {
    /// Starts the player, then the publisher, each once the server logged it.
    pub(crate) fn start(server: &LoggingServer, addr: std::net::SocketAddr, dir: &Path) -> Self {
        use siprtmp_tests::peers::{ffmpeg_play, ffmpeg_publish};
        let url = format!("rtmp://{addr}/live/show");
        let watched = dir.join("watched.flv");
        let player = ffmpeg_play(&url, &watched);
        server.wait_line("play started");
        let source = siprtmp_tests::media("h264_aac_320x240_12fps_20s.flv");
        let publisher = ffmpeg_publish(&source, &url);
        server.wait_line("publish started");
        Self {
            publisher,
            player,
            source,
            watched,
        }
    }

    /// Waits for both ends and asserts that the player got every video frame of the file.
    pub(crate) fn assert_whole(self) {
        use siprtmp_tests::probe::{count, packets};
        self.publisher.finish(Duration::from_secs(40));
        self.player.finish(Duration::from_secs(20));
        assert_eq!(
            count(&packets(&self.watched), "video"),
            count(&packets(&self.source), "video"),
            "the legitimate stream reached its player whole"
        );
    }
}

/// A child's log: the lines of its stderr as they come, kept, so a test can wait for one and
/// look back over all of them.
pub(crate) struct ChildLog {
    lines: std::sync::mpsc::Receiver<String>,
    seen: Vec<String>,
}

impl ChildLog {
    /// Starts reading `child`'s (piped) stderr.
    pub(crate) fn of(child: &mut Child) -> Self {
        Self {
            lines: log_lines(child),
            seen: Vec::new(),
        }
    }

    /// Every line written so far.
    pub(crate) fn read(&mut self) -> &[String] {
        while let Ok(line) = self.lines.try_recv() {
            self.seen.push(line);
        }
        &self.seen
    }

    /// The first line containing `needle` (waiting up to 30 s).
    pub(crate) fn line(&mut self, needle: &str) -> String {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(line) = self.seen.iter().find(|l| l.contains(needle)) {
                return line.clone();
            }
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) => self.seen.push(line),
                Err(_) => panic!("no log line with {needle:?} in {:#?}", self.seen),
            }
        }
    }
}
