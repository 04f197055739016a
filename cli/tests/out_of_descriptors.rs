//! Out of descriptors on accept (`EMFILE`), as an operator meets it, under every runtime: the
//! `siprtmp` binary runs with a low descriptor limit (`prlimit --nofile`), an ffmpeg publisher
//! and player stream through it, and raw connections that complete the RTMP handshake and hold
//! take every descriptor left. Then:
//!
//! - connections that arrive now wait in the kernel's backlog; the server must neither spin
//!   (its CPU time over a window of the fault is measured from `/proc/PID/stat` and compared
//!   with a window of the stream alone) nor flood its log (one warning per episode);
//! - once some of the holders leave, the waiting connections must be served by themselves,
//!   within a short bounded time, without another connection arriving to wake the listener,
//!   and a new client must be served too;
//! - the stream's player must get every frame.

mod common;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use siprtmp_core::rtmp::client::ClientEvent;
use siprtmp_tests::hostile::open_descriptors;
use siprtmp_tests::peers::{ffmpeg_play, ffmpeg_publish};
use siprtmp_tests::probe::{count, packets};
use siprtmp_tests::tcp_client::TcpRtmpClient;
use siprtmp_tests::{media, scratch_dir};

/// The server's descriptor limit: about 15 for itself, the rest for connections.
const LIMIT: usize = 64;
/// Connections that arrive while the server is out of descriptors.
const WAITING: usize = 3;
/// Holders that leave to end the shortage.
const LEAVING: usize = 6;
/// How long CPU time is measured, with the stream alone and during the fault.
const WINDOW: Duration = Duration::from_secs(3);
/// How soon the waiting connections must be served once descriptors are free (the driver
/// retries every 100 ms at most; the rest is margin for a loaded machine).
const RESUME_WITHIN: Duration = Duration::from_secs(2);
/// The most CPU the fault may add to the stream's, as a share of one core (a spinning accept
/// loop takes a whole core).
const FAULT_CPU_MARGIN: f64 = 0.10;

/// The server under its descriptor limit, its log read line by line.
struct Server {
    child: Child,
    log: common::ChildLog,
}

impl Server {
    fn start(runtime: &str, root: &Path) -> Self {
        let mut child = Command::new("prlimit")
            .arg(format!("--nofile={LIMIT}:{LIMIT}"))
            .arg(env!("CARGO_BIN_EXE_siprtmp"))
            .args(["--runtime", runtime, "-i", "127.0.0.1", "-p", "0"])
            .args(["--no-gateway", "-r"])
            .arg(root)
            .env("RUST_LOG", "info")
            .stdin(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start siprtmp under prlimit");
        let log = common::ChildLog::of(&mut child);
        Self { child, log }
    }

    fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Takes in every log line written so far.
    fn read_log(&mut self) -> &[String] {
        self.log.read()
    }

    /// The first log line containing `needle` (waiting up to 30 s).
    fn line(&mut self, needle: &str) -> String {
        self.log.line(needle)
    }

    /// Log lines about failed accepts.
    fn accept_failures(&mut self) -> usize {
        self.read_log()
            .iter()
            .filter(|l| l.contains("accept: "))
            .count()
    }

    /// CPU time the server has used (user and system, every thread).
    fn cpu(&self) -> Duration {
        let stat = std::fs::read_to_string(format!("/proc/{}/stat", self.pid())).unwrap();
        // Fields after the command name (which is in parentheses): utime is the 12th, stime
        // the 13th.
        let fields: Vec<&str> = stat
            .rsplit_once(')')
            .unwrap()
            .1
            .split_whitespace()
            .collect();
        let ticks: u64 = fields[11].parse::<u64>().unwrap() + fields[12].parse::<u64>().unwrap();
        // SAFETY: sysconf only reads a configuration value.
        let per_second = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as u64;
        Duration::from_micros(ticks * 1_000_000 / per_second)
    }

    /// The share of one core the server used over `window` from now.
    fn cpu_share_over(&self, window: Duration) -> f64 {
        let (cpu, started) = (self.cpu(), Instant::now());
        // A measurement window, not a wait for something to happen.
        std::thread::sleep(window);
        (self.cpu() - cpu).as_secs_f64() / started.elapsed().as_secs_f64()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A raw connection that sends C0+C1 at once and, once answered, C2: a client that holds a
/// descriptor of the server's for as long as it stays (well inside the 60 s dead-peer limit).
struct Holder {
    socket: TcpStream,
}

impl Holder {
    fn connect(server: SocketAddr) -> Self {
        let mut socket = TcpStream::connect(server).expect("connect (the backlog takes it)");
        let mut c0c1 = vec![3u8];
        c0c1.resize(1 + 1536, 0x42);
        socket.write_all(&c0c1).unwrap();
        Self { socket }
    }

    /// Waits up to `limit` for S0+S1+S2 and completes the handshake; false if the server
    /// closed the connection or did not answer in time.
    fn served_within(&mut self, limit: Duration) -> bool {
        self.socket.set_read_timeout(Some(limit)).unwrap();
        let mut s0s1s2 = vec![0u8; 1 + 1536 + 1536];
        if self.socket.read_exact(&mut s0s1s2).is_err() {
            return false;
        }
        self.socket.write_all(&s0s1s2[1..1 + 1536]).is_ok()
    }
}

fn runs_out_of_descriptors_and_recovers(runtime: &str) {
    let dir = scratch_dir(&format!("cli_out_of_descriptors_{runtime}"));
    let mut server = Server::start(runtime, &dir);
    let listening = server.line("RTMP listening on ");
    let addr: SocketAddr = listening
        .split("RTMP listening on ")
        .nth(1)
        .and_then(|rest| rest.split_whitespace().next())
        .unwrap()
        .parse()
        .unwrap();
    let url = format!("rtmp://{addr}/live/show");
    let player = ffmpeg_play(&url, &dir.join("watched.flv"));
    server.line("play started");
    let source = media("h264_aac_320x240_12fps_20s.flv");
    let publisher = ffmpeg_publish(&source, &url);
    server.line("publish started");
    let stream_cpu = server.cpu_share_over(WINDOW);

    // Take every descriptor left, one served connection at a time.
    let mut holders = Vec::new();
    while open_descriptors(server.pid()) < LIMIT {
        let mut holder = Holder::connect(addr);
        assert!(
            holder.served_within(Duration::from_secs(10)),
            "connection {} not served with {} of {LIMIT} descriptors open",
            holders.len() + 1,
            open_descriptors(server.pid())
        );
        holders.push(holder);
        assert!(holders.len() < LIMIT, "the descriptor limit does not hold");
    }
    let mut waiting: Vec<Holder> = (0..WAITING).map(|_| Holder::connect(addr)).collect();
    server.line("Too many open files");

    let fault_cpu = server.cpu_share_over(WINDOW);
    let logged = server.accept_failures();
    eprintln!(
        "{runtime}: {} connections held; CPU {:.1}% of a core with the stream alone, \
         {:.1}% out of descriptors; {logged} log lines about accept",
        holders.len(),
        stream_cpu * 100.0,
        fault_cpu * 100.0
    );
    assert!(
        fault_cpu <= stream_cpu + FAULT_CPU_MARGIN,
        "{runtime}: out of descriptors the server used {:.1}% of a core, {:.1}% before",
        fault_cpu * 100.0,
        stream_cpu * 100.0
    );
    assert!(
        logged <= 2,
        "{runtime}: {logged} log lines about failed accepts in {WINDOW:?}: {:#?}",
        server.read_log()
    );

    // Room again: the waiting connections are served without anything new arriving.
    let freed = Instant::now();
    holders.drain(..LEAVING);
    for (i, holder) in waiting.iter_mut().enumerate() {
        let left = RESUME_WITHIN.saturating_sub(freed.elapsed());
        assert!(
            holder.served_within(left.max(Duration::from_millis(1))),
            "{runtime}: waiting connection {i} not served within {RESUME_WITHIN:?} of \
             descriptors being freed"
        );
    }
    eprintln!(
        "{runtime}: the waiting connections were served {:?} after holders left",
        freed.elapsed()
    );
    server.line("accepting again");
    let mut client = TcpRtmpClient::connect(addr, "live", None);
    assert!(
        client
            .until(Duration::from_secs(5), |e| *e == ClientEvent::Connected)
            .is_some(),
        "{runtime}: a new client was not served after the shortage"
    );

    publisher.finish(Duration::from_secs(40));
    player.finish(Duration::from_secs(20));
    let (watched, source) = (packets(&dir.join("watched.flv")), packets(&source));
    for kind in ["audio", "video"] {
        assert_eq!(
            count(&watched, kind),
            count(&source, kind),
            "{runtime}: {kind} frames the player got"
        );
    }
    drop((holders, waiting, client));
}

#[test]
fn mio_runs_out_of_descriptors_and_recovers() {
    runs_out_of_descriptors_and_recovers("mio");
}

#[test]
fn tokio_runs_out_of_descriptors_and_recovers() {
    runs_out_of_descriptors_and_recovers("tokio");
}

#[test]
fn threads_runs_out_of_descriptors_and_recovers() {
    runs_out_of_descriptors_and_recovers("threads");
}

#[test]
fn async_std_runs_out_of_descriptors_and_recovers() {
    runs_out_of_descriptors_and_recovers("async-std");
}
