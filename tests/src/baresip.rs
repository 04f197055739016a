//! baresip (Debian's `baresip-core`) as an SRTP-capable far end, with SDES SRTP mandatory
//! (`mediaenc=srtp-mand`: RTP/SAVP and `a=crypto` in its SDP, SRTP/SRTCP on the wire): a SIP
//! user agent on loopback whose `echo` module answers every call and sends the audio it
//! decodes back (through its `aubridge` device), or one that dials a given URI and plays a
//! file. Its SIP trace (`-s`) and log go to a file
//! in the test's scratch directory; the process is killed on drop.

use std::fs::File;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use crate::ports::{free_udp_block, free_udp_port, LOOPBACK};

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
            "bob",
            "audio_player aubridge,echo\naudio_source aubridge,echo\naudio_alert aubridge,echo\n\
             audio_srate 8000\n",
            "module aubridge.so\nmodule_app echo.so\n",
            None,
        )
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
            "carol",
            &audio,
            "module aubridge.so\nmodule aufile.so\nmodule_app menu.so\n",
            Some(target),
        )
    }

    fn start(dir: &Path, user: &str, audio: &str, modules: &str, dial: Option<&str>) -> Self {
        let sip = SocketAddr::new(LOOPBACK, free_udp_port(LOOPBACK));
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
        std::fs::write(
            dir.join("accounts"),
            format!("<sip:{user}@{sip}>;regint=0;mediaenc=srtp-mand;audio_codecs=PCMU/8000/1\n"),
        )
        .expect("write baresip accounts");
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

    /// What baresip wrote so far (its log and SIP trace).
    pub fn log(&self) -> String {
        String::from_utf8_lossy(&std::fs::read(&self.log).unwrap_or_default()).into_owned()
    }
}

impl Drop for Baresip {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
