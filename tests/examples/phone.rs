//! A phone in the terminal: the gateway's RTMP client role (the Flash VideoPhone's), to try a
//! gateway by hand. It connects to `rtmp://SERVER/sip/AOR`, calls `TARGET` offering G.711
//! (PCMU), plays SECONDS of the test tone into the call in real time, says how many of its
//! frames came back (an echoing far end sends them all back), and hangs up.
//!
//! ```sh
//! ./scripts/make-test-media.sh        # the tone it plays (target/test-media/pcmu_8k_20s.ul)
//! sipp -sf tests/sipp/uas_echo_any.xml -rtp_echo -p 5070 -m 1 &
//! cargo run -p siprtmp-tests --example phone -- 127.0.0.1:1935 alice@127.0.0.1 sip:echo@127.0.0.1:5070 5
//! ```

use std::net::SocketAddr;
use std::process::ExitCode;
use std::time::Duration;

use bytes::Bytes;
use siprtmp_core::rtmp::client::ClientEvent;
use siprtmp_tests::gateway::{echo_matches, g711_frames, s, Phone};

const USAGE: &str = "usage: phone SERVER:PORT USER@DOMAIN sip:TARGET [SECONDS]";

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let (Some(server), Some(aor), Some(target)) = (args.first(), args.get(1), args.get(2)) else {
        eprintln!("{USAGE}");
        return ExitCode::FAILURE;
    };
    let Ok(server) = server.parse::<SocketAddr>() else {
        eprintln!("{server:?} is not an address and port, e.g. 127.0.0.1:1935\n{USAGE}");
        return ExitCode::FAILURE;
    };
    let seconds: usize = args.get(3).and_then(|s| s.parse().ok()).unwrap_or(5);
    match call(server, aor, target, seconds.clamp(1, 20)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("phone: {e}");
            ExitCode::FAILURE
        }
    }
}

fn call(server: SocketAddr, aor: &str, target: &str, seconds: usize) -> Result<(), String> {
    let wait = Duration::from_secs(15);
    let mut phone = Phone::connect(server, aor, vec![])
        .map_err(|why| format!("the gateway refused the connect: {why}"))?;
    println!("connected to rtmp://{server}/sip/{aor}; calling {target}");
    phone.call("invite", vec![s(target), s("pcmu")]);
    let outcome = |e: &ClientEvent| matches!(e, ClientEvent::Command(c) if ["ringing", "accepted", "rejected"].contains(&c.name.as_str()));
    loop {
        match phone.wait(wait, outcome) {
            Some(ClientEvent::Command(c)) if c.name == "ringing" => println!("ringing"),
            Some(ClientEvent::Command(c)) if c.name == "accepted" => break,
            Some(ClientEvent::Command(c)) => {
                let reason = c.args.first().and_then(|v| v.as_str()).unwrap_or("");
                return Err(format!("the call was rejected: {reason}"));
            }
            _ => return Err(format!("no answer within {wait:?}")),
        }
    }
    println!("answered: playing {seconds} s of tone");
    phone.open_streams();
    let tone = siprtmp_tests::media("pcmu_8k_20s.ul");
    let frames = g711_frames(&tone, 0x82, seconds * 50);
    phone.stream_audio(&frames, Duration::from_millis(500));
    let sent: Vec<Bytes> = frames.into_iter().map(|f| f.1).collect();
    let heard = phone.remote_audio();
    let (echoed, other) = echo_matches(&sent, &heard, 0);
    println!(
        "sent {} frames; heard {} back: {echoed} of ours, {other} others",
        sent.len(),
        heard.len()
    );
    phone.call("bye", vec![]);
    println!("hung up");
    Ok(())
}
