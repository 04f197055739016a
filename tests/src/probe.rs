//! ffprobe: the packets of a media file (stream kind, timestamp, keyframe flag, payload hash),
//! to compare what a player saved with what was published.

use std::path::Path;
use std::process::Command;

/// One packet as ffprobe sees it.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Packet {
    /// "audio" or "video".
    pub kind: String,
    /// Timestamp in milliseconds (FLV time base).
    pub pts: i64,
    pub keyframe: bool,
    /// MD5 of the payload as ffprobe computes it.
    pub hash: String,
}

/// Every audio and video packet of `file`, in file order.
pub fn packets(file: &Path) -> Vec<Packet> {
    let output = Command::new("ffprobe")
        .args(["-v", "error", "-show_data_hash", "md5", "-show_entries"])
        .args(["packet=codec_type,pts,flags,data_hash", "-of", "csv=p=0"])
        .arg(file)
        .output()
        .expect("run ffprobe");
    assert!(
        output.status.success(),
        "ffprobe {}: {}",
        file.display(),
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout)
        .lines()
        .filter_map(|line| {
            let fields: Vec<&str> = line.split(',').collect();
            if fields.len() < 4 {
                return None;
            }
            Some(Packet {
                kind: fields[0].to_owned(),
                pts: fields[1].parse().ok()?,
                keyframe: fields[2].contains('K'),
                hash: fields[3].to_owned(),
            })
        })
        .collect()
}

/// Count of packets of `kind`.
pub fn count(packets: &[Packet], kind: &str) -> usize {
    packets.iter().filter(|p| p.kind == kind).count()
}

/// The container duration ffprobe reports for `file`, in seconds.
pub fn duration(file: &Path) -> f64 {
    let output = Command::new("ffprobe")
        .args([
            "-v",
            "error",
            "-show_entries",
            "format=duration",
            "-of",
            "csv=p=0",
        ])
        .arg(file)
        .output()
        .expect("run ffprobe");
    String::from_utf8_lossy(&output.stdout)
        .trim()
        .parse()
        .unwrap_or_else(|_| panic!("no duration for {}", file.display()))
}
