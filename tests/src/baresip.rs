//! baresip (Debian's `baresip-core`) as an SRTP-capable far end, with SDES SRTP mandatory
//! (`mediaenc=srtp-mand`: RTP/SAVP and `a=crypto` in its SDP, SRTP/SRTCP on the wire): a SIP
//! user agent on loopback whose `echo` module answers every call and sends the audio it
//! decodes back (through its `aubridge` device), or one that dials a given URI and plays a
//! file. The echo can also register (digest auth) at a registrar over SIP over TLS and be
//! reached through it. Its SIP trace (`-s`) and log go to a file
//! in the test's scratch directory; the process is killed on drop.

use std::fs::File;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use crate::ports::{free_udp_block, LOOPBACK};

/// A running baresip echo user agent.
pub struct Baresip {
    child: Child,
    /// Its SIP address (UDP).
    pub sip: SocketAddr,
    log: PathBuf,
}

impl Baresip {
    /// Starts baresip in `dir` answering calls to `bob` with an echo, SRTP required (SDES,
    /// PCMU only), and waits (10 s at most) until it is ready.
    pub fn srtp_echo(dir: &Path) -> Self {
        Self::start(
            dir,
            "audio_player aubridge,echo\naudio_source aubridge,echo\naudio_alert aubridge,echo\n\
             audio_srate 8000\n",
            "module aubridge.so\nmodule_app echo.so\n",
            &direct_account("bob"),
            None,
        )
    }

    /// [`Baresip::srtp_echo`] registered as `bob` (digest password `password`, at most 10 s
    /// to the registrar's 200 OK) at the SIP-over-TLS registrar `registrar`, whose
    /// certificate is signed by the CA in `ca` (PEM). baresip also listens for TLS itself with
    /// the certificate and key `cert_and_key` (one PEM file), where a proxy that does not
    /// reuse its connection reaches it.
    pub fn srtp_echo_registered_tls(
        dir: &Path,
        registrar: SocketAddr,
        password: &str,
        ca: &Path,
        cert_and_key: &Path,
    ) -> Self {
        let audio = format!(
            "audio_player aubridge,echo\naudio_source aubridge,echo\naudio_alert aubridge,echo\n\
             audio_srate 8000\nsip_cafile {}\nsip_certificate {}\n",
            ca.display(),
            cert_and_key.display()
        );
        // regint: baresip registers at once and refreshes well after the test is over.
        let account = format!(
            "<sip:bob@{registrar};transport=tls>;auth_pass={password};regint=600;\
             mediaenc=srtp-mand;audio_codecs=PCMU/8000/1\n"
        );
        let peer = Self::start(
            dir,
            &audio,
            "module aubridge.so\nmodule_app echo.so\n",
            &account,
            None,
        );
        // What baresip logs of its registration's final answer.
        let ok = format!("bob@{}: {{0/TLS/v4}} 200 OK", registrar.ip());
        let registered = crate::wait::until(Duration::from_secs(10), || peer.log().contains(&ok));
        assert!(registered, "baresip did not register:\n{}", peer.log());
        peer
    }

    /// Starts baresip in `dir` as `carol`, SRTP required (SDES, PCMU only), and has it dial
    /// `target` (a SIP URI) once ready; what it says is the 8 kHz WAV file `wav` (`aufile`),
    /// what it hears goes nowhere.
    pub fn srtp_caller(dir: &Path, target: &str, wav: &Path) -> Self {
        let audio = format!(
            "audio_player aubridge,sink\naudio_source aufile,{}\naudio_alert aubridge,sink\n\
             audio_srate 8000\n",
            wav.display()
        );
        Self::start(
            dir,
            &audio,
            "module aubridge.so\nmodule aufile.so\nmodule_app menu.so\n",
            &direct_account("carol"),
            Some(target),
        )
    }

    /// Starts baresip in `dir` with `audio` (and other) config lines, `modules` and the
    /// account line `account`, dialling `dial` if given; waits until it is ready.
    fn start(dir: &Path, audio: &str, modules: &str, account: &str, dial: Option<&str>) -> Self {
        // baresip listens on its SIP port over UDP and TCP, and for TLS on the port above:
        // two ports from below the ephemeral range, where no connection's local port (and
        // no TIME_WAIT left by one) can be in the way, as the port above a port from the
        // kernel's ephemeral range often was.
        let sip = SocketAddr::new(LOOPBACK, free_udp_block(LOOPBACK, 2));
        let rtp = free_udp_block(LOOPBACK, 20);
        let config = format!(
            "poll_method epoll\n\
             sip_listen {sip}\n\
             sip_trans_def udp\n\
             net_interface 127.0.0.1\n\
             {audio}\
             audio_channels 1\n\
             rtp_ports {}-{}\n\
             module_path /usr/lib/baresip/modules\n\
             module g711.so\n\
             module srtp.so\n\
             {modules}\
             module_app account.so\n",
            rtp,
            rtp + 19
        );
        std::fs::write(dir.join("config"), config).expect("write baresip config");
        let account = account.replace(SIP_LISTEN, &sip.to_string());
        std::fs::write(dir.join("accounts"), account).expect("write baresip accounts");
        let log = dir.join("baresip.log");
        let out = File::create(&log).expect("create baresip log");
        let err = out.try_clone().expect("clone log handle");
        let mut command = Command::new("baresip");
        command.arg("-f").arg(dir).arg("-s");
        if let Some(target) = dial {
            command.arg("-e").arg(format!("/dial {target}"));
        }
        let child = command
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .spawn()
            .unwrap_or_else(|e| {
                panic!("cannot start baresip: {e} (scripts/test.sh installs baresip-core)")
            });
        let peer = Self { child, sip, log };
        let ready = crate::wait::until(Duration::from_secs(10), || {
            peer.log().contains("baresip is ready")
        });
        assert!(ready, "baresip did not start:\n{}", peer.log());
        peer
    }

    /// The destination a gateway client invites: `bob@127.0.0.1:PORT`.
    pub fn uri(&self) -> String {
        format!("bob@{}", self.sip)
    }

    /// The audio port of the first SDP in baresip's SIP trace: a caller's RTP port, when the
    /// first SDP is the INVITE that called baresip.
    pub fn offered_audio_port(&self) -> u16 {
        let log = self.log();
        let line = log
            .lines()
            .find(|l| l.starts_with("m=audio "))
            .expect("an m=audio line");
        line.split(' ')
            .nth(1)
            .and_then(|p| p.parse().ok())
            .expect("its port")
    }

    /// The `a=crypto` value (after `a=crypto:`) of baresip's SDP answer to the last INVITE
    /// in its trace (the first one after that INVITE's 200, `200 Answering` from the echo):
    /// the key it sends with.
    pub fn answered_crypto(&self) -> Option<String> {
        let log = self.log();
        let invite = log.rfind("\nINVITE sip:")?;
        let ok = invite + log[invite..].find("\nSIP/2.0 200 ")?;
        log[ok..]
            .lines()
            .find_map(|l| l.trim_end().strip_prefix("a=crypto:"))
            .map(str::to_owned)
    }

    /// What baresip wrote so far (its log and SIP trace).
    pub fn log(&self) -> String {
        String::from_utf8_lossy(&std::fs::read(&self.log).unwrap_or_default()).into_owned()
    }
}

/// In an account line, where baresip's own SIP address goes (known once its port is chosen).
const SIP_LISTEN: &str = "{sip_listen}";

/// The account of a user agent that registers nowhere and is called at its own address.
fn direct_account(user: &str) -> String {
    format!("<sip:{user}@{SIP_LISTEN}>;regint=0;mediaenc=srtp-mand;audio_codecs=PCMU/8000/1\n")
}

impl Drop for Baresip {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// How G.711 frames sent to baresip's echo came back, matched by content (the test tone
/// repeats frames, so position says nothing).
#[derive(Debug, Clone, Copy)]
pub struct EchoTally {
    /// Frames sent that were never heard.
    pub missing: usize,
    /// Frames heard that are neither one sent nor baresip's silence (what its bridge plays
    /// when it has nothing to echo: before the first frame and after the last).
    pub strays: usize,
    /// Frames heard in the order sent ([`crate::gateway::echo_matches`]).
    pub in_order: usize,
}

/// Tallies `heard` (FLV audio payloads, mu-law) against `sent`.
pub fn tally_echo(sent: &[bytes::Bytes], heard: &[bytes::Bytes]) -> EchoTally {
    let silence =
        |p: &bytes::Bytes| p.len() == 161 && p[1..].iter().all(|&b| b == 0xff || b == 0x7f);
    EchoTally {
        missing: sent.iter().filter(|f| !heard.contains(f)).count(),
        strays: heard
            .iter()
            .filter(|g| !sent.contains(g) && !silence(g))
            .count(),
        in_order: crate::gateway::echo_matches(sent, heard, 1).0,
    }
}
