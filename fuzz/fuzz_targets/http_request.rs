//! HTTP/1.x requests (the metrics and API listener): arbitrary bytes parse, ask for more, or
//! give a typed error with a status to answer, never a panic; a parsed request never claims
//! more bytes than it was given or a body past the limit, and the same bytes split at any
//! point parse to the same request once whole.
#![no_main]

use libfuzzer_sys::fuzz_target;
use siprtmp_core::http::request::{parse, Limits};

fuzz_target!(|data: &[u8]| {
    let limits = Limits {
        max_head: 512,
        max_headers: 16,
        max_body: 256,
    };
    let whole = parse(data, &limits);
    match &whole {
        Ok(Some((request, used))) => {
            assert!(*used <= data.len(), "claimed {used} of {} bytes", data.len());
            assert!(request.body.len() <= limits.max_body);
            assert!(request.headers.len() <= limits.max_headers);
            let _ = request.keep_alive();
            // A request is complete only at `used`: its prefix is not one.
            if let Ok(Some((_, shorter))) = parse(&data[..*used - 1], &limits) {
                panic!("a prefix of {shorter} bytes already parsed as a request");
            }
        }
        Ok(None) => assert!(data.len() < limits.max_head + limits.max_body),
        Err(e) => assert!(e.status() >= 400),
    }
});
