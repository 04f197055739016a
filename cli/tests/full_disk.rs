//! A full disk under `--record-all`, as an operator meets it: the `siprtmp` binary records
//! every publish to a media root on a file system of its own (a tmpfs, mounted in a user and
//! mount namespace of the test's own, so no privilege is needed) that a ballast file leaves
//! 96 KiB of room, ffmpeg publishes a 20 s clip, and an ffmpeg player watches. The disk fills
//! a few seconds in: ffmpeg must keep publishing to the end (it aborts on an error status),
//! the player must get the whole stream, the file must be playable up to the failure, and
//! once the test makes room (removes the ballast) the recording must go on in a new file.
//! The same under each runtime (`--runtime`): the file requests run on the driver-independent
//! file thread, but what reaches the publisher and the player goes through each driver.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use siprtmp_tests::peers::{ffmpeg_play, ffmpeg_publish};
use siprtmp_tests::probe::{count, packets};
use siprtmp_tests::{media, scratch_dir};

/// The log of a server in its own namespaces, line by line.
struct Server {
    child: std::process::Child,
    log: common::ChildLog,
}

impl Server {
    /// `siprtmp` on `runtime` with its media root `root` on a 4 MiB tmpfs of its own,
    /// `free_kib` of it free (the rest is the file `ballast`).
    fn start_on_tmpfs(root: &Path, free_kib: u32, runtime: &str) -> Self {
        let ballast = 4096 - free_kib;
        let script = format!(
            "mount -t tmpfs -o size=4m tmpfs \"$1\" && \
             dd if=/dev/zero of=\"$1/ballast\" bs=1k count={ballast} 2>/dev/null && \
             exec \"$2\" -i 127.0.0.1 -p 0 -r \"$1\" --record-all live --no-gateway \
             --runtime {runtime}"
        );
        let mut child = Command::new("unshare")
            .args([
                "--user",
                "--map-root-user",
                "--mount",
                "sh",
                "-c",
                &script,
                "sh",
            ])
            .arg(root)
            .arg(env!("CARGO_BIN_EXE_siprtmp"))
            .env("RUST_LOG", "info")
            .stderr(Stdio::piped())
            .spawn()
            .expect("start siprtmp under unshare");
        let log = common::ChildLog::of(&mut child);
        Self { child, log }
    }

    /// The first log line containing `needle` (waiting up to 30 s).
    fn line(&mut self, needle: &str) -> String {
        self.log.line(needle)
    }

    /// `path` inside the server's mount namespace (its tmpfs), seen from here.
    fn inside(&self, path: &Path) -> PathBuf {
        let relative = path.strip_prefix("/").unwrap_or(path);
        PathBuf::from(format!("/proc/{}/root", self.child.id())).join(relative)
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn with_record_all_a_full_disk_ends_neither_the_stream_nor_the_recording() {
    a_full_disk_ends_neither_the_stream_nor_the_recording("mio");
}

#[test]
fn under_tokio_a_full_disk_ends_neither_the_stream_nor_the_recording() {
    a_full_disk_ends_neither_the_stream_nor_the_recording("tokio");
}

#[test]
fn under_threads_a_full_disk_ends_neither_the_stream_nor_the_recording() {
    a_full_disk_ends_neither_the_stream_nor_the_recording("threads");
}

#[test]
fn under_async_std_a_full_disk_ends_neither_the_stream_nor_the_recording() {
    a_full_disk_ends_neither_the_stream_nor_the_recording("async-std");
}

fn a_full_disk_ends_neither_the_stream_nor_the_recording(runtime: &str) {
    let dir = scratch_dir(&format!("full-disk-{runtime}"));
    let root = dir.join("media");
    std::fs::create_dir_all(&root).unwrap();
    let mut server = Server::start_on_tmpfs(&root, 96, runtime);
    let listening = server.line("RTMP listening on ");
    let addr = listening
        .split("RTMP listening on ")
        .nth(1)
        .and_then(|rest| rest.split_whitespace().next())
        .unwrap()
        .to_owned();
    let url = format!("rtmp://{addr}/live/show");

    let player = ffmpeg_play(&url, &dir.join("watched.flv"));
    server.line("play started");
    // 20 s at about 27 KB/s: the 96 KiB disk is full after about 3 s.
    let publisher = ffmpeg_publish(&media("h264_aac_320x240_12fps_20s.flv"), &url);
    server.line("recording of live/show to live/show.flv failed");
    let failed = dir.join("failed.flv");
    std::fs::copy(server.inside(&root.join("live/show.flv")), &failed)
        .expect("the failed recording is kept");
    // Room again: the recording resumes on a keyframe at least 10 s of stream time later,
    // in live/show-1.flv.
    std::fs::remove_file(server.inside(&root.join("ballast"))).unwrap();
    server.line("recording live/show to live/show-1.flv");
    let resumed = server.inside(&root.join("live/show-1.flv"));

    let published = publisher.finish(Duration::from_secs(40));
    assert!(
        published.trim().is_empty(),
        "ffmpeg's publish went to the end without an error: {published}"
    );
    server.line("publish stopped");
    server.line("recording of live/show ended: live/show-1.flv");
    let saved = dir.join("resumed.flv");
    std::fs::copy(&resumed, &saved).expect("copy the resumed recording out");
    player.finish(Duration::from_secs(20));

    // The player watched the whole clip.
    let source = packets(&media("h264_aac_320x240_12fps_20s.flv"));
    let watched = packets(&dir.join("watched.flv"));
    assert_eq!(count(&watched, "video"), count(&source, "video"));
    // The first file plays up to where the disk filled.
    let before = packets(&failed);
    assert!(
        count(&before, "video") >= 24,
        "two seconds or more before the disk filled: {}",
        count(&before, "video")
    );
    // The resumed file plays, starts on a keyframe and holds the stream's last seconds.
    let recorded = packets(&saved);
    let video: Vec<_> = recorded.iter().filter(|p| p.kind == "video").collect();
    assert!(
        video.first().is_some_and(|p| p.keyframe),
        "starts on a keyframe"
    );
    assert!(
        video.len() >= 24,
        "at least two seconds of video recorded after the disk had room: {}",
        video.len()
    );
}
