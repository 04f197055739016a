//! Helpers of core's integration tests, one concept a file: the generated test media, read from
//! disk here (the core library itself never touches files), and a minimal FLV tag splitter;
//! RTMP clients of a node in memory set up the way most tests need them
//! ([`rtmp_clients`]); the gateway in a world of far ends, with the SIP transport as a
//! parameter ([`gateway_world`]). Each test binary uses part of it.
#![allow(dead_code)]

use bytes::Bytes;

pub(crate) mod gateway_world;
pub(crate) mod rtmp_clients;

// Where the media lives is known in one file, the test crate's `locate` module. Core cannot
// depend on that crate (it depends on core), so the file is compiled here as a module too.
// Its functions are `pub` because they are the test crate's public API; here they are private.
#[allow(unreachable_pub)]
#[path = "../../../tests/src/locate.rs"]
mod locate;

/// The bytes of the generated test media file `name` (`scripts/make-test-media.sh`); panics,
/// saying how to make it, when it is missing.
pub(crate) fn media(name: &str) -> Bytes {
    let path = locate::media(name);
    let data = std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    Bytes::from(data)
}

/// (tag type, timestamp, body) of every tag of an FLV file.
pub(crate) fn flv_tags(file: &Bytes) -> Vec<(u8, u32, Bytes)> {
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
