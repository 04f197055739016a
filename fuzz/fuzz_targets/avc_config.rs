//! The AVCDecoderConfigurationRecord (FLV AVC sequence header, ISO 14496-15): arbitrary bytes
//! parse or give a typed error, never a panic; a parsed record that can configure a decoder
//! (at least one SPS and one PPS) writes bytes that parse to the same record, and the writer
//! refuses the others (the parser is lenient, the writer is not).
#![no_main]

use bytes::Bytes;
use libfuzzer_sys::fuzz_target;
use siprtmp_core::media::AvcDecoderConfig;

fuzz_target!(|data: &[u8]| {
    let Ok(config) = AvcDecoderConfig::parse(&Bytes::copy_from_slice(data)) else {
        return;
    };
    if config.sps.is_empty() || config.pps.is_empty() {
        assert!(
            config.to_bytes().is_err(),
            "a record without parameter sets written"
        );
        return;
    }
    let wire = config.to_bytes().expect("a parsed record writes");
    let again = AvcDecoderConfig::parse(&wire).expect("a written record parses");
    assert_eq!(again, config);
});
