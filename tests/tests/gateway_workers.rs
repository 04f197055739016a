//! The gateway under `--workers 2`: each worker's node runs a gateway of its own on the same
//! address, and the kernel spreads the phones' connections over the workers. Eight phones
//! call a sipp UAS that echoes RTP, all at once; every call is answered and hears its echo,
//! whichever worker holds it. Each worker takes its own slice of the RTP ports (unit-tested
//! in core's `GatewayNodeConfig::worker_share`): before, two workers bound each other's
//! ports, and bench-compare's 300 calls on two workers saw `503 cannot bind RTP ports` when
//! one worker's turn through the range ran into a long run of the other's blocks (eight calls
//! are too few to meet that; this test proves calls work on workers at all).
use std::net::IpAddr;
use std::time::Duration;

use siprtmp_core::sip::Transport;
use siprtmp_tests::gateway::{assert_hears_its_echo, gateway_node_with_ports, s, EchoMedia, Phone};
use siprtmp_tests::ports::free_udp_range;
use siprtmp_tests::scratch_dir;
use siprtmp_tests::server::{Runtime, TestServer};
use siprtmp_tests::sipp::{self, Sipp};

const CALLS: usize = 8;
const T: Duration = Duration::from_secs(10);

#[test]
fn calls_on_two_workers_are_answered_and_hear_their_echo() {
    let dir = scratch_dir("gw-workers");
    let loopback = IpAddr::from([127, 0, 0, 1]);
    // 16 blocks of four ports: 8 per worker, enough for every call on either.
    let node = gateway_node_with_ports(Transport::Udp, free_udp_range(loopback, 64));
    let server = TestServer::start_workers(Runtime::Mio, node, 2);
    let sipp = Sipp::echo_uas(CALLS as u32).start("sipp uas (echo)", &dir);
    let target = sipp.uri("service");
    let addr = server.addr;
    let phones: Vec<_> = (0..CALLS)
        .map(|i| {
            let target = target.clone();
            std::thread::spawn(move || {
                let aor = format!("caller{i}@127.0.0.1");
                let mut phone = Phone::connect(addr, &aor, vec![])
                    .unwrap_or_else(|e| panic!("{aor}: connect refused: {e}"));
                let mut invite = vec![s(&target)];
                invite.extend(EchoMedia::Pcmu.tokens());
                phone.call("invite", invite);
                if phone.callback("accepted", T).is_none() {
                    panic!("{aor}: not answered: {:?}", phone.pending_callbacks());
                }
                phone.open_streams();
                assert_hears_its_echo(
                    &mut phone,
                    EchoMedia::Pcmu,
                    100,
                    Duration::from_millis(500),
                    &aor,
                );
                phone.call("bye", vec![]);
            })
        })
        .collect();
    for phone in phones {
        phone.join().expect("a phone's call");
    }
    sipp.finish(Duration::from_secs(20));
    assert_eq!(sipp::totals(&dir), (CALLS as u64, 0));
}
