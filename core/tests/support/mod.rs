//! Helpers shared by core's integration tests: the shared test media, read from disk here
//! (the core library itself never touches files), and a minimal FLV tag splitter.

use std::path::PathBuf;

use bytes::Bytes;

/// The bytes of a file from the shared test media (`../shared/media`).
pub fn media(name: &str) -> Bytes {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    for dir in ["../../shared/media", "../shared/media"] {
        let p = root.join(dir).join(name);
        if let Ok(data) = std::fs::read(&p) {
            return Bytes::from(data);
        }
    }
    panic!("test media {name} not found under ../../shared/media");
}

/// (tag type, timestamp, body) of every tag of an FLV file.
pub fn flv_tags(file: &Bytes) -> Vec<(u8, u32, Bytes)> {
    assert_eq!(&file[..3], b"FLV");
    let mut at = u32::from_be_bytes(file[5..9].try_into().unwrap()) as usize + 4;
    let mut tags = Vec::new();
    while at + 11 <= file.len() {
        let kind = file[at];
        let size = u32::from_be_bytes([0, file[at + 1], file[at + 2], file[at + 3]]) as usize;
        let ts = u32::from_be_bytes([file[at + 7], file[at + 4], file[at + 5], file[at + 6]]);
        let body = file.slice(at + 11..at + 11 + size);
        tags.push((kind, ts, body));
        at += 11 + size + 4;
    }
    tags
}
