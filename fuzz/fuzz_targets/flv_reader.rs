//! FLV files: the reader (file header, tag headers, bodies) and the tag classifiers. Arbitrary
//! bytes give tags or an error, never a panic; the tags do not depend on how the bytes were
//! split into reads; the tags re-encoded into a file read back the same.
#![no_main]

use libfuzzer_sys::fuzz_target;
use siprtmp_core::flv::media::{classify_audio, classify_video};
use siprtmp_core::flv::reader::{FlvReader, FlvTag};
use siprtmp_core::flv::tag::{encode_tag, tag_type, FileHeader, TagHeader, TAG_HEADER_LEN};

const MAX_BODY: usize = 1 << 20;

/// Every tag the reader gives for `data` pushed in pieces of `piece` bytes, and whether it
/// stopped on an error.
fn read(data: &[u8], piece: usize) -> (Vec<FlvTag>, bool) {
    let mut reader = FlvReader::new(MAX_BODY);
    let mut tags = Vec::new();
    for chunk in data.chunks(piece) {
        reader.push(chunk);
        loop {
            match reader.next_tag() {
                Ok(Some(tag)) => tags.push(tag),
                Ok(None) => break,
                Err(_) => return (tags, true),
            }
        }
    }
    (tags, false)
}

fuzz_target!(|data: &[u8]| {
    let Some((&mode, file)) = data.split_first() else {
        return;
    };
    let _ = FileHeader::parse(file);
    if let Some(head) = file.get(..TAG_HEADER_LEN) {
        if let Ok(h) = TagHeader::parse(head.try_into().unwrap()) {
            assert_eq!(TagHeader::parse(&h.encode()), Ok(h));
        }
    }
    let (whole, whole_err) = read(file, file.len().max(1));
    let (pieces, pieces_err) = read(file, usize::from(mode) + 1);
    assert_eq!(
        whole, pieces,
        "tags depend on how the file was split into reads"
    );
    assert_eq!(whole_err, pieces_err);
    for tag in &whole {
        match tag.tag_type {
            tag_type::VIDEO => {
                let _ = classify_video(&tag.body);
            }
            tag_type::AUDIO => {
                let _ = classify_audio(&tag.body);
            }
            _ => {}
        }
    }
    // Re-encoded with a plain header, the same tags come back.
    let mut rebuilt = FileHeader {
        audio: true,
        video: true,
        data_offset: 9,
    }
    .encode()
    .to_vec();
    for tag in &whole {
        rebuilt.extend_from_slice(&encode_tag(tag.tag_type, tag.timestamp, &tag.body));
    }
    let (again, err) = read(&rebuilt, rebuilt.len());
    assert!(!err, "a re-encoded file fails to read");
    assert_eq!(again.len(), whole.len());
    for (a, b) in again.iter().zip(&whole) {
        assert_eq!(
            (a.tag_type, a.timestamp, &a.body),
            (b.tag_type, b.timestamp, &b.body)
        );
    }
});
