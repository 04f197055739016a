//! The gateway farm of `deploy/`: two gateways behind one Kamailio, which runs the repository's
//! own `deploy/kamailio/kamailio.cfg` (its addresses and files given on the command line, see
//! `siprtmp_tests::kamailio`). On loopback, each gateway on an address of its own (127.0.0.2
//! and 127.0.0.3, as `--int-ip` would set; Linux routes all of 127/8 to `lo`):
//!
//! - their RTMP clients register with Kamailio (Digest);
//! - a client of gateway A calls a client of gateway B by address of record, through
//!   Kamailio, and both hear each other;
//! - a sipp caller reaches each client through Kamailio, at whichever gateway holds its
//!   registration;
//! - calls to outbound numbers (`9...`) are spread by Kamailio's dispatcher over two sipp far
//!   ends; once one of them is gone, new calls go to the other;
//! - gateway B is stopped (what SIGTERM does) in the middle of a call: its far end gets a
//!   BYE, its client is unregistered (Kamailio's location table no longer has it, and a call
//!   to it gets 404 from Kamailio), and it stops within its shutdown grace, without waiting
//!   the grace out (every goodbye was answered). Gateway A and its client carry on.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::Path;
use std::time::{Duration, Instant};

use siprtmp_core::rtmp::client::ClientEvent;
use siprtmp_core::sip::Transport;
use siprtmp_tests::gateway::{
    accept_pcmu, assert_phones_hear_each_other, gateway_node_with_ports, s, Phone,
};
use siprtmp_tests::kamailio_deployed::{Kamailio, KamailioSetup};
use siprtmp_tests::ports::{free_udp_port, free_udp_range, LOOPBACK};
use siprtmp_tests::scratch_dir;
use siprtmp_tests::server::TestServer;
use siprtmp_tests::sipp::{Sipp, SippPeer};
use siprtmp_tests::wait;

const T: Duration = Duration::from_secs(10);

/// The gateways' shutdown grace.
const GRACE: Duration = Duration::from_secs(4);

const GATEWAY_A: IpAddr = IpAddr::V4(Ipv4Addr::new(127, 0, 0, 2));
const GATEWAY_B: IpAddr = IpAddr::V4(Ipv4Addr::new(127, 0, 0, 3));

/// Every user's Digest password (Kamailio's subscriber table and the clients' connects).
fn password(user: &str) -> String {
    format!("{user}-farm-secret")
}

/// A gateway binding its SIP and RTP on `ip`, registering its clients at `kamailio`, which is
/// also its outbound proxy; it stops gracefully, within [`GRACE`].
fn gateway(ip: IpAddr, kamailio: SocketAddr) -> TestServer {
    let mut node = gateway_node_with_ports(Transport::Udp, free_udp_range(ip, 40));
    let g = node.server.gateway.as_mut().expect("a gateway node");
    g.bind_ip = ip;
    g.session.registrar = Some(kamailio);
    g.session.outbound_proxy = Some(kamailio);
    g.session.register_expires = 300;
    node.server.shutdown_grace = GRACE;
    TestServer::start_graceful(node, |_| {})
}

/// `user@127.0.0.1` connects to `gateway` with its credentials: registered with Kamailio once
/// this returns.
fn registered_phone(gateway: &TestServer, user: &str) -> Phone {
    let args = vec![s(user), s(&password(user)), s(user)];
    Phone::connect(gateway.addr, &format!("{user}@127.0.0.1"), args)
        .unwrap_or_else(|e| panic!("{user} is not registered: {e}"))
}

/// Calls the sipp far end started in `dir` has completed (its statistics, written every
/// second); 0 before the first write.
fn completed_calls(dir: &Path) -> u64 {
    let Ok(text) = std::fs::read_to_string(dir.join("stats.csv")) else {
        return 0;
    };
    let mut lines = text.lines().filter(|l| !l.trim().is_empty());
    let (Some(header), Some(last)) = (lines.next(), lines.next_back()) else {
        return 0;
    };
    let column = header
        .split(';')
        .position(|h| h == "SuccessfulCall(C)")
        .expect("sipp's statistics name their columns");
    last.split(';')
        .nth(column)
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0)
}

/// A far end for the dispatcher: answers calls and echoes RTP, and answers Kamailio's
/// OPTIONS probes (`-aa`).
fn far_end(name: &str, dir: &Path) -> SippPeer {
    std::fs::create_dir_all(dir).unwrap();
    Sipp::echo_uas(100).args(&["-aa"]).start(name, dir)
}

/// ACKs the far ends in `dirs` have received so far (sipp's message trace).
fn acks_received(dirs: &[&Path]) -> usize {
    dirs.iter()
        .filter_map(|dir| std::fs::read_to_string(dir.join("messages.log")).ok())
        .map(|log| log.lines().filter(|l| l.starts_with("ACK ")).count())
        .sum()
}

/// `phone` calls the outbound number `number` (Kamailio asks for its credentials, then its
/// dispatcher picks a far end among `far_ends`), is answered, and hangs up once the far end
/// has the ACK: Kamailio's several UDP workers may forward an ACK and a BYE that follows at
/// once in either order, and a far end that gets the BYE first fails the call.
fn call_outbound(phone: &mut Phone, number: &str, far_ends: &[&Path]) {
    let acks = acks_received(far_ends);
    phone.call(
        "invite",
        vec![s(&format!("sip:{number}@127.0.0.1")), s("pcmu")],
    );
    phone
        .callback("accepted", T)
        .unwrap_or_else(|| panic!("the call to {number} was not answered"));
    assert!(
        wait::until(T, || acks_received(far_ends) > acks),
        "the far end of {number} never got the ACK"
    );
    phone.call("bye", vec![]);
}

#[test]
fn a_gateway_farm_behind_kamailio() {
    let dir = scratch_dir("gateway-farm");
    let kamailio_sip = SocketAddr::new(LOOPBACK, free_udp_port(LOOPBACK));
    let (far1_dir, far2_dir) = (dir.join("far1"), dir.join("far2"));
    let far1 = far_end("far end 1", &far1_dir);
    let far2 = far_end("far end 2", &far2_dir);
    let kamailio = Kamailio::start(
        &dir,
        &KamailioSetup {
            sip: kamailio_sip,
            users: ["alice", "carol"]
                .into_iter()
                .map(|u| (u.to_owned(), password(u)))
                .collect(),
            far_ends: vec![far1.sip, far2.sip],
            probe_interval_secs: 1,
            fr_timer_ms: 1000,
        },
    );
    let gateway_a = gateway(GATEWAY_A, kamailio_sip);
    let mut gateway_b = gateway(GATEWAY_B, kamailio_sip);
    let mut alice = registered_phone(&gateway_a, "alice");
    let mut carol = registered_phone(&gateway_b, "carol");
    for user in ["alice", "carol"] {
        assert!(
            kamailio.is_registered(user),
            "Kamailio's location table has {user}"
        );
    }

    // A client of gateway A calls a client of gateway B by address of record.
    alice.call("invite", vec![s("sip:carol@127.0.0.1"), s("pcmu")]);
    let invited = carol.callback("invited", T).expect("carol is invited");
    assert!(
        format!("{invited:?}").contains("alice@127.0.0.1"),
        "the caller is alice: {invited:?}"
    );
    accept_pcmu(&mut alice, &mut carol);
    assert_phones_hear_each_other(&mut alice, &mut carol);
    alice.call("bye", vec![]);
    carol
        .callback("byed", T)
        .expect("carol is told the call ended");

    // A caller from outside reaches each user at the gateway that holds its registration.
    for (user, phone) in [("alice", &mut alice), ("carol", &mut carol)] {
        let caller_dir = dir.join(format!("caller-of-{user}"));
        std::fs::create_dir_all(&caller_dir).unwrap();
        let caller = Sipp::uac("uac_proxied_pcmu.xml", kamailio_sip)
            .user(user)
            .pause_ms(500)
            .start(&format!("caller of {user}"), &caller_dir);
        phone
            .callback("invited", T)
            .unwrap_or_else(|| panic!("{user}'s gateway got the call"));
        phone.call("accept", vec![s("pcmu")]);
        phone.callback("accepted", T).expect("the call is up");
        phone
            .callback("byed", T)
            .expect("the caller's BYE reached the client");
        caller.finish(T);
    }

    // Outbound calls are spread over both far ends.
    call_outbound(&mut alice, "9001", &[&far1_dir, &far2_dir]);
    call_outbound(&mut alice, "9002", &[&far1_dir, &far2_dir]);
    assert!(
        wait::until(T, || completed_calls(&far1_dir) == 1
            && completed_calls(&far2_dir) == 1),
        "one call each: {} and {}",
        completed_calls(&far1_dir),
        completed_calls(&far2_dir)
    );
    // Far end 1 goes away: the next calls all go to far end 2 (the dispatcher skips it once
    // a probe or a call to it has gone unanswered).
    drop(far1);
    let start = Instant::now();
    call_outbound(&mut alice, "9003", &[&far1_dir, &far2_dir]);
    call_outbound(&mut alice, "9004", &[&far1_dir, &far2_dir]);
    assert!(
        wait::until(T, || completed_calls(&far2_dir) == 3),
        "both calls answered by far end 2: {}",
        completed_calls(&far2_dir)
    );
    assert!(start.elapsed() < 2 * T);

    // Gateway B is stopped (SIGTERM) in the middle of a call of carol's.
    let caller_dir = dir.join("caller-hung-up-on");
    std::fs::create_dir_all(&caller_dir).unwrap();
    let caller = Sipp::uac("uac_proxied_expect_bye.xml", kamailio_sip)
        .user("carol")
        .start("caller of carol, hung up on", &caller_dir);
    carol.callback("invited", T).expect("carol is called");
    carol.call("accept", vec![s("pcmu")]);
    carol.callback("accepted", T).expect("the call is up");
    let took = gateway_b
        .stop_within(GRACE + Duration::from_secs(2))
        .expect("gateway B stopped within its grace");
    eprintln!("gateway B stopped in {took:?} (grace {GRACE:?})");
    assert!(
        took < GRACE,
        "every goodbye was answered: no need to wait the grace out ({took:?})"
    );
    caller.finish(T); // it got its BYE
    assert!(
        carol
            .wait(T, |e| matches!(
                e,
                ClientEvent::Status(0, code) if code == "NetConnection.Connect.Closed"
            ))
            .is_some(),
        "carol's client was told the connection closed"
    );
    assert!(
        !kamailio.is_registered("carol"),
        "gateway B unregistered carol"
    );
    let late_dir = dir.join("late-caller");
    std::fs::create_dir_all(&late_dir).unwrap();
    Sipp::uac("uac_expect_404.xml", kamailio_sip)
        .user("carol")
        .start("late caller of carol", &late_dir)
        .finish(T);

    // Gateway A was not concerned.
    assert!(kamailio.is_registered("alice"));
    call_outbound(&mut alice, "9005", &[&far1_dir, &far2_dir]);
    assert!(
        wait::until(T, || completed_calls(&far2_dir) == 4),
        "alice still calls out"
    );
    drop(far2);
}
