//! `onMetaData` bodies: locating `duration`/`filesize` in arbitrary bodies never panics and
//! only finds eight-byte numbers inside the body; rebuilding metadata from what a publisher
//! sent gives patchable positions that patching actually changes.
#![no_main]

use libfuzzer_sys::fuzz_target;
use siprtmp_core::amf::amf0::decode_all;
use siprtmp_core::amf::Value;
use siprtmp_core::flv::metadata::{build, locate, patch_number, properties_of};

fuzz_target!(|body: &[u8]| {
    let found = locate(body);
    assert_eq!(&found.body[..], body);
    for at in [found.duration_at, found.filesize_at].into_iter().flatten() {
        assert!(
            at >= 1 && at + 8 <= body.len(),
            "number at {at} outside the body"
        );
        assert_eq!(body[at - 1], 0, "not an AMF0 number marker before {at}");
    }
    let Ok(values) = decode_all(body) else {
        return;
    };
    // As the recorder does with `@setDataFrame`'s value.
    let properties = properties_of(values.get(1).or(values.first()));
    let built = build(&properties);
    let d = built.duration_at.expect("duration is always written");
    let f = built.filesize_at.expect("filesize is always written");
    let mut patched = built.body.to_vec();
    patched[d..d + 8].copy_from_slice(&patch_number(12.5));
    patched[f..f + 8].copy_from_slice(&patch_number(4096.0));
    let back = decode_all(&patched).expect("built metadata decodes");
    assert_eq!(back[0], Value::string("onMetaData"));
    assert_eq!(back[1].get("duration"), Some(&Value::Number(12.5)));
    assert_eq!(back[1].get("filesize"), Some(&Value::Number(4096.0)));
});
