//! The gateway against a real SIP registrar and proxy: Kamailio (Debian `kamailio`), on
//! loopback with a minimal configuration written here (in-memory location table, record-
//! routing proxy, no authentication). Two RTMP clients connect with credentials, so the
//! gateway REGISTERs each with Kamailio; one calls the other by address of record through the
//! proxy (lookup, Record-Route, ACK and BYE routed back through it), both hear each other, and
//! the hang-up reaches the other side; once with per-client RTP ports, once with shared ones.
//! sipp plays registrar and far end elsewhere; this is the one test where a SIP server nobody
//! here wrote routes the calls.

use std::net::{SocketAddr, UdpSocket};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use siprtmp_core::sip::Transport;
use siprtmp_tests::gateway::{
    accept_pcmu, assert_phones_hear_each_other, gateway_node_with_ports, s, Phone,
};
use siprtmp_tests::ports::{free_udp_port, free_udp_range, LOOPBACK};
use siprtmp_tests::scratch_dir;
use siprtmp_tests::server::TestServer;

const T: Duration = Duration::from_secs(10);

/// Kamailio as registrar and record-routing proxy on `port`; stopped (SIGTERM, which it
/// passes to its worker processes) when dropped.
struct Kamailio {
    child: Child,
}

impl Kamailio {
    fn start(dir: &Path, port: u16) -> Self {
        let modules = [
            "/usr/lib/x86_64-linux-gnu/kamailio/modules/",
            "/usr/lib/kamailio/modules/",
        ]
        .into_iter()
        .find(|m| Path::new(m).join("tm.so").exists())
        .expect("Kamailio's modules (scripts/test.sh installs the kamailio package)");
        let config = dir.join("kamailio.cfg");
        std::fs::write(&config, kamailio_config(modules, port)).expect("write config");
        let child = Command::new("kamailio")
            .arg("-f")
            .arg(&config)
            .args(["-DD", "-E", "-Y"])
            .arg(dir)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("kamailio (scripts/test.sh installs it)");
        let kamailio = Self { child };
        kamailio.wait_ready(port);
        kamailio
    }

    /// Until Kamailio answers a request on `port` (any final response), at most 10 s.
    fn wait_ready(&self, port: u16) {
        let probe = UdpSocket::bind("127.0.0.1:0").unwrap();
        probe
            .set_read_timeout(Some(Duration::from_millis(200)))
            .unwrap();
        let me = probe.local_addr().unwrap();
        let options = format!(
            "OPTIONS sip:nobody@127.0.0.1:{port} SIP/2.0\r\n\
             Via: SIP/2.0/UDP {me};branch=z9hG4bKprobe{}\r\n\
             Max-Forwards: 70\r\nFrom: <sip:probe@{me}>;tag=p\r\nTo: <sip:nobody@127.0.0.1>\r\n\
             Call-ID: probe@{me}\r\nCSeq: 1 OPTIONS\r\nContent-Length: 0\r\n\r\n",
            std::process::id()
        );
        let deadline = Instant::now() + T;
        let mut buf = [0u8; 2048];
        while Instant::now() < deadline {
            let _ = probe.send_to(options.as_bytes(), ("127.0.0.1", port));
            if let Ok(n) = probe.recv(&mut buf) {
                if buf[..n].starts_with(b"SIP/2.0 ") {
                    return;
                }
            }
        }
        panic!("Kamailio did not answer on port {port}");
    }
}

impl Drop for Kamailio {
    fn drop(&mut self) {
        let pid = self.child.id().to_string();
        let _ = Command::new("kill").args(["-TERM", &pid]).status();
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Registrar (location in memory) and stateful proxy that record-routes, so that requests
/// inside the dialog (ACK, BYE) come back through it.
fn kamailio_config(modules: &str, port: u16) -> String {
    format!(
        r#"#!KAMAILIO
debug=2
log_stderror=yes
fork=yes
children=1
tcp_children=1
disable_tcp=yes
listen=udp:127.0.0.1:{port}
mpath="{modules}"
loadmodule "tm.so"
loadmodule "sl.so"
loadmodule "rr.so"
loadmodule "pv.so"
loadmodule "maxfwd.so"
loadmodule "usrloc.so"
loadmodule "registrar.so"
loadmodule "textops.so"
loadmodule "siputils.so"
request_route {{
    if (!mf_process_maxfwd_header("10")) {{ sl_send_reply("483", "Too Many Hops"); exit; }}
    if (has_totag()) {{
        if (loose_route()) {{ t_relay(); exit; }}
        if (is_method("ACK")) {{ if (t_check_trans()) {{ t_relay(); }} exit; }}
        sl_send_reply("404", "Not here");
        exit;
    }}
    if (is_method("CANCEL")) {{ if (t_check_trans()) {{ t_relay(); }} exit; }}
    if (is_method("REGISTER")) {{ save("location"); exit; }}
    if (!lookup("location")) {{ sl_send_reply("404", "Not Found"); exit; }}
    record_route();
    t_relay();
}}
"#
    )
}

#[test]
fn two_clients_registered_with_kamailio_call_each_other_through_it() {
    let dir = scratch_dir("gw-kamailio");
    let port = free_udp_port(LOOPBACK);
    let kamailio = Kamailio::start(&dir, port);
    let proxy = SocketAddr::new(LOOPBACK, port);
    // Per-client RTP ports, then every call on the shared ones (the two calls' media then
    // meets on the gateway's own port, paired by the SDP that crossed Kamailio).
    for (shared, rtp_ports) in [(false, 50), (true, 4)] {
        call_through_kamailio(proxy, shared, free_udp_range(LOOPBACK, rtp_ports));
    }
    drop(kamailio);
}

/// Alice and carol (`aliceN`, `carolN`: fresh names per gateway, so Kamailio's location table
/// holds one contact each) register with the Kamailio at `proxy`, call, talk and hang up.
fn call_through_kamailio(proxy: SocketAddr, shared_rtp_ports: bool, rtp_ports: (u16, u16)) {
    let mut node = gateway_node_with_ports(Transport::Udp, rtp_ports);
    if let Some(g) = node.server.gateway.as_mut() {
        g.session.registrar = Some(proxy);
        g.session.outbound_proxy = Some(proxy);
        g.shared_rtp_ports = shared_rtp_ports;
    }
    let server = TestServer::start(node, None);
    let n = u8::from(shared_rtp_ports);
    let (alice_aor, carol_aor) = (format!("alice{n}@127.0.0.1"), format!("carol{n}@127.0.0.1"));
    // With credentials the connect waits for the REGISTER's answer (Kamailio's 200 OK).
    let credentials = |user: &str| vec![s(user), s("secret"), s(user)];
    let mut alice =
        Phone::connect(server.addr, &alice_aor, credentials("alice")).expect("alice registered");
    let mut carol =
        Phone::connect(server.addr, &carol_aor, credentials("carol")).expect("carol registered");

    // By address of record: only Kamailio's location table knows where carol is.
    alice.call("invite", vec![s(&format!("sip:{carol_aor}")), s("pcmu")]);
    let invited = carol.callback("invited", T).expect("carol is invited");
    assert!(
        format!("{invited:?}").contains(&alice_aor),
        "the caller is alice: {invited:?}"
    );
    accept_pcmu(&mut alice, &mut carol);

    assert_phones_hear_each_other(&mut alice, &mut carol);

    // Alice hangs up: the BYE follows the recorded route through Kamailio to carol.
    alice.call("bye", vec![]);
    carol
        .callback("byed", T)
        .expect("carol is told the call ended");
}
