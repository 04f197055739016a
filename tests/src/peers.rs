//! Real peers as child processes: ffmpeg publishers, players and clip cutters, rtmpdump
//! players. Every child has a deadline and is killed on drop, so a hung peer fails a test
//! instead of hanging it.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

/// A child process that is killed when dropped.
pub struct Peer {
    /// What the peer is ("ffmpeg publisher", "rtmpdump player"), for its panic messages.
    pub name: String,
    child: Child,
    /// A log the peer writes that explains its failures (sipp's `-trace_err` file), quoted in
    /// the panic when it fails.
    log_on_failure: Option<PathBuf>,
}

/// How much of the end of a peer's failure log goes into the panic message.
const FAILURE_LOG_TAIL: usize = 6000;

impl Peer {
    /// Starts `command` as a peer named `name` (stderr captured for failure messages).
    pub fn spawn_command(name: &str, command: &mut Command) -> Self {
        let child = command
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| {
                panic!("cannot start {name}: {e} (run scripts/test.sh to install peers)")
            });
        Self {
            name: name.to_owned(),
            child,
            log_on_failure: None,
        }
    }

    /// Quotes the end of `log` in the panic if the peer fails: the stderr of some peers says
    /// only that there were errors, their log says which.
    pub fn with_log_on_failure(mut self, log: PathBuf) -> Self {
        self.log_on_failure = Some(log);
        self
    }

    /// The last [`FAILURE_LOG_TAIL`] bytes of the failure log, if there is one.
    fn failure_log(&self) -> String {
        let Some(path) = &self.log_on_failure else {
            return String::new();
        };
        match std::fs::read(path) {
            Ok(bytes) => {
                let tail = &bytes[bytes.len().saturating_sub(FAILURE_LOG_TAIL)..];
                format!(
                    "\n--- end of {} ---\n{}",
                    path.display(),
                    String::from_utf8_lossy(tail)
                )
            }
            Err(e) => format!("\n({}: {e})", path.display()),
        }
    }

    /// Waits for exit up to `timeout`; `None` if it is still running.
    pub fn wait(&mut self, timeout: Duration) -> Option<ExitStatus> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                return Some(status);
            }
            if Instant::now() >= deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Waits for exit and returns its stderr, panicking with it if the peer failed or hung.
    pub fn finish(mut self, timeout: Duration) -> String {
        let status = self.wait(timeout);
        if status.is_none() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
        let mut err = String::new();
        if let Some(mut stderr) = self.child.stderr.take() {
            use std::io::Read;
            let _ = stderr.read_to_string(&mut err);
        }
        match status {
            Some(s) if s.success() => err,
            Some(s) => panic!("{} exited with {s}: {err}{}", self.name, self.failure_log()),
            None => panic!(
                "{} did not finish within {timeout:?}: {err}{}",
                self.name,
                self.failure_log()
            ),
        }
    }

    /// Waits for the peer to exit within `timeout`: its status and stderr; panics if it is
    /// still running (a play that should have ended, or been refused, hangs).
    pub fn exits_within(mut self, timeout: Duration) -> (ExitStatus, String) {
        let Some(status) = self.wait(timeout) else {
            panic!("{} still runs after {timeout:?}", self.name);
        };
        let mut err = String::new();
        if let Some(mut stderr) = self.child.stderr.take() {
            use std::io::Read;
            let _ = stderr.read_to_string(&mut err);
        }
        (status, err)
    }

    /// Waits for the peer to fail (exit unsuccessfully) within `timeout`, and returns its
    /// stderr; panics if it succeeded or was still running.
    pub fn fails_within(self, timeout: Duration) -> String {
        let name = self.name.clone();
        match self.exits_within(timeout) {
            (s, err) if !s.success() => err,
            (s, err) => panic!("{name} exited with {s}, expected a failure: {err}"),
        }
    }

    /// Stops (SIGSTOP) or resumes (SIGCONT) the process: a player that stops reading.
    pub fn signal(&self, signal: &str) {
        let status = Command::new("kill")
            .args([signal, &self.child.id().to_string()])
            .status()
            .expect("kill");
        assert!(status.success());
    }

    /// The process id of the child.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }
}

impl Drop for Peer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// How long ffmpeg may take to cut a clip.
const CLIP_WITHIN: Duration = Duration::from_secs(15);

/// Stream-copies the first `seconds` of the generated test media file `file` to `out` with
/// ffmpeg (waiting for it, up to 15 s); returns `out`.
pub fn ffmpeg_clip(file: &str, seconds: u32, out: &Path) -> PathBuf {
    Peer::spawn_command(
        "ffmpeg clip",
        Command::new("ffmpeg")
            .args(["-hide_banner", "-loglevel", "error", "-y", "-i"])
            .arg(crate::media(file))
            .args(["-t", &seconds.to_string(), "-c", "copy", "-f", "flv"])
            .arg(out),
    )
    .finish(CLIP_WITHIN);
    out.to_path_buf()
}

/// `ffmpeg -re -i FILE -c copy -f flv URL`: publishes a file in real time.
pub fn ffmpeg_publish(file: &Path, url: &str) -> Peer {
    Peer::spawn_command(
        "ffmpeg publisher",
        Command::new("ffmpeg")
            .args(["-hide_banner", "-loglevel", "error", "-re", "-i"])
            .arg(file)
            .args(["-c", "copy", "-f", "flv", url]),
    )
}

/// `ffmpeg -i URL -c copy -copyts -f flv OUT`: a player that saves what it receives.
pub fn ffmpeg_play(url: &str, out: &Path) -> Peer {
    Peer::spawn_command(
        "ffmpeg player",
        Command::new("ffmpeg")
            .args(["-hide_banner", "-loglevel", "error", "-y", "-i", url])
            .args(["-c", "copy", "-copyts", "-f", "flv"])
            .arg(out),
    )
}

/// `ffmpeg -i URL -t SECONDS -c copy -copyts -f flv OUT`: a player that saves `seconds` of
/// what it receives, then leaves on its own.
pub fn ffmpeg_play_for(url: &str, out: &Path, seconds: u32) -> Peer {
    Peer::spawn_command(
        "ffmpeg player",
        Command::new("ffmpeg")
            .args(["-hide_banner", "-loglevel", "error", "-y", "-i", url])
            .args([
                "-t",
                &seconds.to_string(),
                "-c",
                "copy",
                "-copyts",
                "-f",
                "flv",
            ])
            .arg(out),
    )
}

/// `rtmpdump --live -r URL -o OUT`: another client stack that saves what it receives.
pub fn rtmpdump_play(url: &str, out: &Path) -> Peer {
    Peer::spawn_command(
        "rtmpdump player",
        Command::new("rtmpdump")
            .args(["-q", "--live", "-r", url, "-o"])
            .arg(out),
    )
}
