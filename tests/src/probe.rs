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
    /// Whether ffprobe flags the packet as a keyframe (`K`).
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

/// Asserts that `got` is the whole of `source`, frame for frame: as many audio and video
/// frames, and every one from the start on (see [`assert_receives_all_from_join`]).
pub fn assert_receives_everything(who: &str, source: &[Packet], got: &[Packet]) {
    for kind in ["audio", "video"] {
        assert_eq!(
            count(got, kind),
            count(source, kind),
            "{who}: {kind} frames"
        );
    }
    assert_receives_all_from_join(who, source, got);
}

/// Asserts that `got` holds every packet of `source` from its first packet's timestamp on,
/// in order, with identical payloads, starting on a keyframe (a player that joined live).
pub fn assert_receives_all_from_join(who: &str, source: &[Packet], got: &[Packet]) {
    let first_video = got
        .iter()
        .find(|p| p.kind == "video")
        .unwrap_or_else(|| panic!("{who}: no video"));
    assert!(
        first_video.keyframe,
        "{who}: first video frame is not a keyframe: {first_video:?}"
    );
    let join = got.first().map_or(0, |p| p.pts);
    for kind in ["audio", "video"] {
        let expected: Vec<(&i64, &String)> = source
            .iter()
            .filter(|p| p.kind == kind && p.pts >= join)
            .map(|p| (&p.pts, &p.hash))
            .collect();
        let received: Vec<(&i64, &String)> = got
            .iter()
            .filter(|p| p.kind == kind)
            .map(|p| (&p.pts, &p.hash))
            .collect();
        assert_eq!(
            expected.len(),
            received.len(),
            "{who}: {kind} packet count from {join} ms on"
        );
        assert!(
            expected == received,
            "{who}: {kind} packets differ from the source"
        );
    }
}

/// Asserts that `got` holds every packet of `source` from the first keyframe it received on,
/// in order, with identical payloads: up to the end of `source` (`to_end`), or up to the last
/// packet of each kind it has (a player that left, or was cut off, before the end). What it
/// received before that keyframe (audio a server let through while the picture waited for a
/// keyframe) is not counted: the join point is where the picture starts.
pub fn assert_receives_from_keyframe(who: &str, source: &[Packet], got: &[Packet], to_end: bool) {
    let join = got
        .iter()
        .find(|p| p.kind == "video" && p.keyframe)
        .unwrap_or_else(|| panic!("{who}: no keyframe"))
        .pts;
    let first_video = got.iter().find(|p| p.kind == "video").unwrap();
    assert!(
        first_video.keyframe,
        "{who}: first video frame is not a keyframe: {first_video:?}"
    );
    for kind in ["audio", "video"] {
        let received: Vec<(&i64, &String)> = got
            .iter()
            .filter(|p| p.kind == kind && p.pts >= join)
            .map(|p| (&p.pts, &p.hash))
            .collect();
        let last = match (to_end, received.last()) {
            (false, Some((pts, _))) => **pts,
            _ => i64::MAX,
        };
        let expected: Vec<(&i64, &String)> = source
            .iter()
            .filter(|p| p.kind == kind && p.pts >= join && p.pts <= last)
            .map(|p| (&p.pts, &p.hash))
            .collect();
        assert!(
            received.len() > 10,
            "{who}: only {} {kind} packets from {join} ms",
            received.len()
        );
        assert_eq!(
            expected.len(),
            received.len(),
            "{who}: {kind} packet count from {join} ms{}",
            if to_end { " to the end" } else { "" }
        );
        assert!(
            expected == received,
            "{who}: {kind} packets differ from the source"
        );
    }
}
