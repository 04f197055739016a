//! The FLV file scanner (keyframe index, metadata and decoder configuration found before
//! playback): arbitrary files give a summary or an error, never a panic; the scan asks only
//! for reads inside the file and moves forward; the summary points inside the file.
#![no_main]

use libfuzzer_sys::fuzz_target;
use siprtmp_core::flv::index::FileScanner;
use siprtmp_core::flv::metadata::locate;

fuzz_target!(|data: &[u8]| {
    let Some((&mode, file)) = data.split_first() else {
        return;
    };
    let max_tag_body = usize::from(mode) * 64;
    let mut scanner = FileScanner::new(file.len() as u64, max_tag_body);
    let mut last = None;
    let mut reads = 0;
    while let Some((offset, len)) = scanner.wanted() {
        reads += 1;
        assert!(reads <= file.len() + 2, "the scan does not move forward");
        // Forward only: a later offset, or the same one with a longer read (a tag larger
        // than one scanning block).
        if let Some(prev) = last {
            assert!(
                (offset, len) > prev,
                "the scan read {offset}+{len} after {prev:?}"
            );
        }
        last = Some((offset, len));
        let start = (offset as usize).min(file.len());
        let end = start.saturating_add(len).min(file.len());
        if scanner.feed(offset, &file[start..end]).is_err() {
            break;
        }
        if offset as usize >= file.len() {
            break;
        }
    }
    let done = scanner.is_done();
    let summary = scanner.finish();
    let size = file.len() as u64;
    if done {
        assert!(
            summary.end <= size,
            "end {} past the file ({size})",
            summary.end
        );
        assert!(summary.first_tag <= size.max(13));
    }
    let entries = summary.index.entries();
    for w in entries.windows(2) {
        assert!(w[0].1 < w[1].1 && w[0].0 <= w[1].0, "index out of order");
    }
    for &(_, offset) in entries {
        assert!(offset < size, "keyframe at {offset} outside the file");
    }
    if let Some(&(ts, _)) = entries.first() {
        assert!(summary.index.seek(ts).is_some());
        assert!(summary.index.seek(u32::MAX).is_some());
    }
    assert!(summary.configs.len() <= siprtmp_core::flv::index::MAX_CONFIGS);
    for tag in summary.metadata.iter().chain(summary.configs.iter()) {
        assert!(tag.body.len() <= max_tag_body);
        assert!(tag.offset < size);
    }
    if let Some(meta) = &summary.metadata {
        let _ = locate(&meta.body);
    }
});
