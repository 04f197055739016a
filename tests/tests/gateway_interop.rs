//! The SIP-RTMP gateway end to end with real peers: the node on the mio driver (real UDP
//! sockets through the driver's `UdpExecutor`), the project's own RTMP client as the Flash
//! VideoPhone ([`Phone`]), and sipp (Debian `sip-tester`) as the SIP far end, all on loopback.
//!
//! Every wait has a deadline; sipp runs with a global timeout that fails it and is killed on
//! drop. Ports: each test has its own sipp SIP/media ports and gateway RTP range (31xxx-39xxx),
//! so the tests run in parallel.

use std::time::Duration;

use siprtmp_tests::gateway::{echo_call, EchoMedia};
use siprtmp_tests::server::Runtime;

#[test]
fn a_call_to_sipp_echoes_speex_wideband_byte_for_byte() {
    // 5 s of Speex 16 kHz (250 frames).
    echo_call(
        Runtime::Mio,
        "gw-echo-wideband",
        EchoMedia::Wideband,
        250,
        (31060, 31100, 31200),
    );
    let _ = Duration::ZERO;
}
