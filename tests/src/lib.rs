//! Test harness for the black-box suites: a server on loopback in this process, real peers
//! (ffmpeg, ffprobe, rtmpdump) as child processes with deadlines, nginx-rtmp as a reference
//! server, and a blocking RTMP client
//! built on the core's client machine; the SIP-RTMP gateway's
//! phone and sipp as its far end, Kamailio with the deployment's configuration, the gateway
//! scenarios several suites run, free ports from
//! the OS and waits with deadlines.

pub mod audio_measure;
pub mod baresip;
pub mod callback_backend;
pub mod devtools;
pub mod events;
pub mod ffmpeg9;
pub mod gateway;
pub mod gateway_scenarios;
pub mod hostile;
pub mod kamailio;
pub mod kamailio_deployed;
pub mod locate;
pub mod nginx;
pub mod nodes;
pub mod peers;
pub mod ports;
pub mod probe;
pub mod rtmps;
pub mod runtimes;
pub mod scrape;
pub mod server;
pub mod sip_runner;
pub mod sipp;
pub mod tcp_client;
pub mod wait;

/// The generated test media file `name` (see [`locate::media`]).
pub use locate::media;

/// A fresh scratch directory for one test's output files.
pub fn scratch_dir(test: &str) -> std::path::PathBuf {
    // Under this checkout's target directory: a clean clone starts empty, and two checkouts
    // testing on one machine do not share (and delete) each other's files.
    let root = locate::target_dir().join("tmp/siprtmp-tests");
    let dir = root.join(test);
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("create scratch dir");
    dir
}
