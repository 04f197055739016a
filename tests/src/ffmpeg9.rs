//! ffmpeg 9 (imageio-ffmpeg's static build) as an enhanced-RTMP peer: publisher, player, and
//! the probe of what it saved (Debian's ffprobe 5.1 cannot read enhanced FLV). Packets are
//! listed with ffmpeg's `framecrc` muxer: stream, timestamp, size, CRC and key flag of every
//! packet, stream-copied with the file's own timestamps.

use std::path::Path;
use std::process::Command;

use crate::locate::ffmpeg9;
use crate::peers::Peer;

/// One packet of a file as ffmpeg 9 demuxes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Packet9 {
    /// The stream index.
    pub stream: usize,
    /// Presentation time in ms.
    pub pts: i64,
    /// Whether flagged a keyframe.
    pub keyframe: bool,
    /// Payload size and CRC, as `framecrc` prints them.
    pub size_crc: String,
}

/// What ffmpeg 9 finds in a file: the codec of each stream, and every packet in file order.
#[derive(Debug, Clone)]
pub struct Probe9 {
    /// `codec_id` per stream index ("hevc", "opus"...).
    pub codecs: Vec<String>,
    /// Every packet, in file order.
    pub packets: Vec<Packet9>,
}

impl Probe9 {
    /// The packets of `stream`.
    pub fn of(&self, stream: usize) -> Vec<&Packet9> {
        self.packets.iter().filter(|p| p.stream == stream).collect()
    }
}

/// Probes `file`, panicking when ffmpeg cannot read it.
pub fn probe(file: &Path) -> Probe9 {
    let output = Command::new(ffmpeg9())
        .args(["-nostdin", "-v", "error", "-i"])
        .arg(file)
        .args(["-map", "0", "-c", "copy", "-copyts", "-f", "framecrc", "-"])
        .output()
        .expect("run ffmpeg 9");
    assert!(
        output.status.success(),
        "ffmpeg 9 probe of {}: {}",
        file.display(),
        String::from_utf8_lossy(&output.stderr)
    );
    let mut codecs = Vec::new();
    let mut packets = Vec::new();
    for line in String::from_utf8_lossy(&output.stdout).lines() {
        if let Some(rest) = line.strip_prefix("#codec_id ") {
            if let Some((_, codec)) = rest.split_once(": ") {
                codecs.push(codec.trim().to_owned());
            }
            continue;
        }
        if line.starts_with('#') {
            continue;
        }
        let fields: Vec<&str> = line.split(',').map(str::trim).collect();
        if fields.len() < 6 {
            continue;
        }
        let (Ok(stream), Ok(pts)) = (fields[0].parse(), fields[2].parse()) else {
            continue;
        };
        packets.push(Packet9 {
            stream,
            pts,
            // framecrc prints the flags only when they are not exactly "key".
            keyframe: fields.get(6).is_none_or(|f| {
                f.strip_prefix("F=0x")
                    .and_then(|h| u32::from_str_radix(h, 16).ok())
                    .is_some_and(|flags| flags & 1 != 0)
            }),
            size_crc: format!("{} {}", fields[4], fields[5]),
        });
    }
    Probe9 { codecs, packets }
}

/// Decodes every stream of `file` with ffmpeg 9; the errors it printed, empty when clean.
pub fn decode_errors(file: &Path) -> String {
    let output = Command::new(ffmpeg9())
        .args(["-nostdin", "-v", "error", "-i"])
        .arg(file)
        .args(["-map", "0", "-f", "null", "-"])
        .output()
        .expect("run ffmpeg 9");
    let mut errors = String::from_utf8_lossy(&output.stderr).into_owned();
    if !output.status.success() {
        errors.push_str(&format!("exit {}", output.status));
    }
    errors
}

/// `ffmpeg9 -re -i FILE -map 0 -c copy -f flv URL`: publishes every track of a file in real
/// time.
pub fn publish(file: &Path, url: &str) -> Peer {
    Peer::spawn_command(
        "ffmpeg 9 publisher",
        Command::new(ffmpeg9())
            .args([
                "-nostdin",
                "-hide_banner",
                "-loglevel",
                "error",
                "-re",
                "-i",
            ])
            .arg(file)
            .args(["-map", "0", "-c", "copy", "-f", "flv", url]),
    )
}

/// `ffmpeg9 -i URL -map 0 -c copy -copyts -f flv OUT`: a player that saves every track it
/// receives.
pub fn play(url: &str, out: &Path) -> Peer {
    Peer::spawn_command(
        "ffmpeg 9 player",
        Command::new(ffmpeg9())
            .args([
                "-nostdin",
                "-hide_banner",
                "-loglevel",
                "error",
                "-y",
                "-i",
                url,
            ])
            .args(["-map", "0", "-c", "copy", "-copyts", "-f", "flv"])
            .arg(out),
    )
}
