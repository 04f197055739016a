//! ffmpeg 9 (imageio-ffmpeg's static build) as an enhanced-RTMP peer: publisher, player, and
//! the probe of what it saved (Debian's ffprobe 5.1 cannot read enhanced FLV). Packets are
//! listed with ffmpeg's `framecrc` muxer: stream, timestamp, size, CRC and key flag of every
//! packet, stream-copied with the file's own timestamps. Also its Opus, with its libopus, as
//! an enhanced-RTMP client's microphone ([`opus_flv`]) and ear ([`decode_audio_tags`]).

use std::path::Path;
use std::process::Command;

use bytes::Bytes;

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

/// `pcm` (mono at `rate` Hz) encoded by ffmpeg 9's libopus at `bitrate` (`"32k"`) into an FLV
/// in `dir`: its audio tags (timestamp in ms, body), as ffmpeg publishes them over RTMP (a
/// SequenceStart with the Opus ID header, a MultichannelConfig, then one 20 ms CodedFrames
/// message per packet).
pub fn opus_flv(pcm: &[i16], rate: u32, bitrate: &str, dir: &Path) -> Vec<(u32, Bytes)> {
    let raw = dir.join("opus-input.s16");
    let flv = dir.join("opus-input.flv");
    let bytes: Vec<u8> = pcm.iter().flat_map(|s| s.to_le_bytes()).collect();
    std::fs::write(&raw, bytes).expect("write PCM");
    let output = Command::new(ffmpeg9())
        .args(["-nostdin", "-v", "error", "-y", "-f", "s16le", "-ar"])
        .arg(rate.to_string())
        .args(["-ac", "1", "-i"])
        .arg(&raw)
        .args(["-c:a", "libopus", "-b:a", bitrate, "-f", "flv"])
        .arg(&flv)
        .output()
        .expect("run ffmpeg 9");
    assert!(
        output.status.success(),
        "ffmpeg 9 Opus encode: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    crate::gateway::flv_audio(&flv)
}

/// Audio tag bodies with their timestamps (in ms) as an FLV file at `path`.
pub fn write_audio_flv(path: &Path, tags: &[(u32, Bytes)]) {
    // Header: "FLV", version 1, audio only, header size 9; then the first PreviousTagSize.
    let mut out = b"FLV\x01\x04\x00\x00\x00\x09\x00\x00\x00\x00".to_vec();
    for (ts, body) in tags {
        let size = body.len() as u32;
        out.push(8);
        out.extend_from_slice(&size.to_be_bytes()[1..]);
        out.extend_from_slice(&ts.to_be_bytes()[1..]);
        out.push((ts >> 24) as u8);
        out.extend_from_slice(&[0, 0, 0]);
        out.extend_from_slice(body);
        out.extend_from_slice(&(size + 11).to_be_bytes());
    }
    std::fs::write(path, out).expect("write FLV");
}

/// Decodes audio tags (timestamp in ms, body: what a client received) with ffmpeg 9, written
/// as an FLV in `dir`, to mono PCM at `rate` Hz; the samples, and the errors ffmpeg printed
/// (empty when it decoded cleanly).
pub fn decode_audio_tags(tags: &[(u32, Bytes)], rate: u32, dir: &Path) -> (Vec<i16>, String) {
    let flv = dir.join("received.flv");
    write_audio_flv(&flv, tags);
    let output = Command::new(ffmpeg9())
        .args(["-nostdin", "-v", "error", "-i"])
        .arg(&flv)
        .args(["-f", "s16le", "-ac", "1", "-ar"])
        .arg(rate.to_string())
        .arg("-")
        .output()
        .expect("run ffmpeg 9");
    let mut errors = String::from_utf8_lossy(&output.stderr).into_owned();
    if !output.status.success() {
        errors.push_str(&format!("exit {}", output.status));
    }
    let pcm = output
        .stdout
        .chunks_exact(2)
        .map(|b| i16::from_le_bytes([b[0], b[1]]))
        .collect();
    (pcm, errors)
}
