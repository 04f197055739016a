//! The command line: every flag, its help line (which names the config key that sets the same
//! thing, and the default). `--runtime` chooses from `siprtmp_runtime_drivers::Runtime` (names and
//! help lines are that crate's). Flags override the config file; the names follow the
//! original Python server's (`-i`, `-p`, `-r`, `-d`).

use std::net::IpAddr;
use std::path::PathBuf;

use clap::Parser;
use siprtmp_runtime_drivers::Runtime;

use crate::logging::LogFormat;

/// RTMP media server and SIP-RTMP gateway.
///
/// Live publish and play, recording and video on demand over RTMP, and RTMP clients calling
/// SIP phones through the gateway (application `sip`). Every flag overrides the config file
/// key named in its help; an error in the file names its line and key.
#[derive(Debug, Parser)]
#[command(name = "siprtmp", version)]
pub(crate) struct Flags {
    /// Address to listen on for RTMP [default: 0.0.0.0; config: host].
    #[arg(short = 'i', long = "host", value_name = "IP")]
    pub host: Option<IpAddr>,
    /// RTMP port; 0 picks a free one (the log says which) [default: 1935; config: port].
    #[arg(short = 'p', long = "port")]
    pub port: Option<u16>,
    /// RTMPS port: a TLS listener beside the RTMP one, on the same address (needs --tls-cert
    /// and --tls-key); 0 picks a free one [default: off; config: rtmps_port].
    #[arg(long = "rtmps-port", value_name = "PORT")]
    pub rtmps_port: Option<u16>,
    /// PEM certificate chain of the RTMPS listener, the server's certificate first; reread
    /// on SIGHUP [config: tls_cert].
    #[arg(long = "tls-cert", value_name = "FILE")]
    pub tls_cert: Option<PathBuf>,
    /// PEM private key of that certificate (PKCS#8, PKCS#1 or SEC1); reread on SIGHUP
    /// [config: tls_key].
    #[arg(long = "tls-key", value_name = "FILE")]
    pub tls_key: Option<PathBuf>,
    /// Directory of recorded and played files, as APP/NAME.flv [default: ./media; config:
    /// root].
    #[arg(short = 'r', long = "root", value_name = "DIR")]
    pub root: Option<PathBuf>,
    /// Debug-level logs (RUST_LOG overrides either) [default: info; no config key].
    #[arg(short = 'd', long = "verbose")]
    pub verbose: bool,
    /// TOML config file with any of the keys named here (see siprtmp.example.toml); flags
    /// override it [default: none].
    #[arg(short = 'c', long = "config", value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Record every publish to APP as ROOT/APP/NAME.flv; repeatable [config: record = "all"
    /// in [apps.APP]].
    #[arg(long = "record-all", value_name = "APP")]
    pub record_all: Vec<String>,
    /// Event loop to run on [no config key].
    #[arg(long, value_enum, default_value_t = Runtime::Mio)]
    pub runtime: Runtime,
    /// Nodes to run, 1-256, one per thread, sharing the port (SO_REUSEPORT) and their live
    /// streams; mio and tokio only [no config key].
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u16).range(1..=256))]
    pub workers: u16,
    /// Log lines on stderr: text (coloured only on a terminal) or json (one object per line)
    /// [default: text; config: log_format].
    #[arg(long = "log-format", value_enum, value_name = "FORMAT")]
    pub log_format: Option<LogFormat>,
    /// Run the SIP-RTMP gateway (app `sip`) even if the config file turns it off
    /// [default: on; config: gateway.enabled].
    #[arg(long)]
    pub gateway: bool,
    /// Turn the SIP-RTMP gateway off [config: gateway.enabled = false].
    #[arg(long)]
    pub no_gateway: bool,
    /// Local address of the gateway's SIP and RTP sockets; 0.0.0.0 binds every address (then
    /// --ext-ip, or the routed address, is advertised) [default: the address that routes to
    /// the proxy or registrar, else the primary one, else 127.0.0.1; config: gateway.int_ip].
    #[arg(long = "int-ip", value_name = "IP")]
    pub int_ip: Option<IpAddr>,
    /// Address to advertise in SIP and SDP instead of --int-ip (behind NAT) [default: none;
    /// config: gateway.ext_ip].
    #[arg(long = "ext-ip", value_name = "IP")]
    pub ext_ip: Option<IpAddr>,
    /// SIP registrar for clients that connect with a password [default: the AOR's domain;
    /// config: gateway.registrar].
    #[arg(long, value_name = "HOST[:PORT]")]
    pub registrar: Option<String>,
    /// Outbound proxy for the gateway's SIP requests [default: none; config: gateway.proxy].
    #[arg(long, value_name = "HOST[:PORT]")]
    pub proxy: Option<String>,
    /// RTP port range of the gateway, four ports per client [default: 16000-17999; config:
    /// gateway.rtp_ports].
    #[arg(long = "rtp-ports", value_name = "LO-HI")]
    pub rtp_ports: Option<String>,
    /// Every call's media on the same four ports (the first free block of --rtp-ports), told
    /// apart by the far end's address and SSRC: fewer system calls per packet, no limit on
    /// clients from the range; far ends must send from the address their SDP gives
    /// [default: four ports per client; config: gateway.shared_rtp_ports].
    #[arg(long = "shared-rtp-ports")]
    pub shared_rtp_ports: bool,
    /// What the gateway's SIP goes over: udp, tcp (each client listens on a TCP port of its
    /// own; RTP stays UDP) or tls (TCP with TLS, port 5061 by default; the server's
    /// certificate verified against the system's roots or --sip-tls-ca)
    /// [default: udp, tls for a sips: registrar; config: gateway.transport].
    #[arg(long = "sip-transport", value_name = "udp|tcp|tls")]
    pub sip_transport: Option<String>,
    /// SIP over TLS: verify the registrar's and proxy's certificates against the CA
    /// certificates in FILE (PEM) instead of the system's roots [config: gateway.sip_tls_ca].
    #[arg(long = "sip-tls-ca", value_name = "FILE")]
    pub sip_tls_ca: Option<std::path::PathBuf>,
    /// SIP over TLS: the name the registrar's or proxy's certificate must be for [default:
    /// the host of --proxy as written, else of --registrar; config:
    /// gateway.sip_tls_server_name].
    #[arg(long = "sip-tls-server-name", value_name = "NAME")]
    pub sip_tls_server_name: Option<String>,
    /// Where a call's media is accepted from besides the address the far end's SDP gives:
    /// strict (nowhere else), learn-port (another port of that IP, learned from 4 packets in
    /// sequence in the call's first 5 s: port-translating NATs), learn-any (any address so
    /// learned: far ends whose SDP carries a private address; a stranger who wins that race
    /// gets the call's media). Everything else is dropped and logged [default: learn-port;
    /// config: gateway.rtp_source].
    #[arg(long = "rtp-source", value_name = "strict|learn-port|learn-any")]
    pub rtp_source: Option<String>,
    /// SRTP (SDES keys, AES_CM_128_HMAC_SHA1_80/32) to the far ends: off (plain RTP; an offer
    /// of SRTP only gets 488), offer (RTP/AVP with crypto lines: SRTP when the far end takes
    /// it, plain RTP otherwise), require (RTP/SAVP only: a plain answer is ended with a BYE,
    /// a plain offer gets 488). Keys travel only over SIP over TLS unless
    /// --srtp-over-plain-sip [default: off; config: gateway.srtp].
    #[arg(long = "srtp", value_name = "off|offer|require")]
    pub srtp: Option<String>,
    /// Let SDES keys go in SDP over plain (UDP or TCP) SIP, where anyone who sees the
    /// signalling can read them [default: false; config: gateway.srtp_over_plain_sip].
    #[arg(long = "srtp-over-plain-sip")]
    pub srtp_over_plain_sip: bool,
    /// Merged writes: hold each player's live media up to MS milliseconds, 1-1000, so several
    /// messages leave in one write, for far less CPU per player at up to MS more delay; 0 is
    /// off [default: 40; config: rtmp.merge_writes_ms]. Under the mio runtime (Linux), the
    /// wait moves to the publisher's socket instead: publishers are read once per MS and
    /// their players written right after, one read per window instead of one per message;
    /// a publisher nobody watches is read every tenth window (400 ms at the default).
    #[arg(long = "merge-writes", value_name = "MS")]
    pub merge_writes: Option<u64>,
    /// Merged writes that adapt: a player whose application reads late anyway (a buffering
    /// player that reads 16 KiB at a time) is held longer, up to MS milliseconds, 1-1000, on
    /// windows doubling from --merge-writes, and never longer than its own read lag, measured
    /// with RTMP pings; players that read each message keep --merge-writes. 0 is off
    /// [default: 400; config: rtmp.merge_writes_max_ms].
    #[arg(long = "merge-writes-max", value_name = "MS")]
    pub merge_writes_max: Option<u64>,
    /// Merged writes for gateway calls: hold the far end's media for a client up to MS
    /// milliseconds, 1-1000; every hop of a call's audio waits up to MS more; 0 is off
    /// [default: off; config: gateway.merge_writes_ms].
    #[arg(long = "gateway-merge-writes", value_name = "MS")]
    pub gateway_merge_writes: Option<u64>,
    /// TCP_NODELAY on client sockets: each write leaves at once (no Nagle); lower latency for
    /// small messages, more CPU with bulk readers unless merged writes are on [default: off;
    /// config: rtmp.tcp_nodelay].
    #[arg(long = "tcp-nodelay")]
    pub tcp_nodelay: bool,
    /// Wake-up moderation, mio and io-uring only: take socket events at most once per MS milliseconds,
    /// 1-100, so one wake-up serves many busy connections; every hop waits up to MS more;
    /// 0 is off [default: off; config: poll_interval_ms].
    #[arg(long = "poll-interval", value_name = "MS")]
    pub poll_interval: Option<u64>,
    /// Serve Prometheus metrics (/metrics) and the JSON API (/api/v1/...) over HTTP on
    /// ADDR, e.g. 127.0.0.1:8080; an address other than loopback needs --http-token
    /// [default: off; config: http_listen].
    #[arg(long = "http-listen", value_name = "ADDR")]
    pub http_listen: Option<std::net::SocketAddr>,
    /// Every HTTP request must carry `Authorization: Bearer TOKEN` [default: none;
    /// config: http_token].
    #[arg(long = "http-token", value_name = "TOKEN")]
    pub http_token: Option<String>,
    /// Send the gateway's UDP one datagram at a time, without UDP GSO (which sends a burst of
    /// equal datagrams as one segmented message; the far end gets the same datagrams)
    /// [default: GSO on where the kernel has it; config: gateway.udp_gso = false].
    #[arg(long = "no-udp-gso")]
    pub no_udp_gso: bool,
    /// On SIGTERM or SIGINT, wait up to SECS seconds (0-60) for the gateway's goodbyes to be
    /// answered (each call's BYE or CANCEL, each client's un-REGISTER) before exiting; RTMP
    /// clients are closed at once [default: 5; config: shutdown_grace_secs].
    #[arg(long = "shutdown-grace", value_name = "SECS")]
    pub shutdown_grace: Option<f64>,
    /// Check the flags and the config file as a start would, then exit without serving:
    /// status 0 and "configuration ok" when the server would start with them, else the
    /// error a start would give.
    #[arg(long = "check-config")]
    pub check_config: bool,
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::ValueEnum;

    /// The names `--runtime` takes are the ones the error messages and the log use.
    #[test]
    fn the_runtime_flag_takes_each_runtimes_name() {
        for runtime in Runtime::ALL {
            let value = runtime.to_possible_value().expect("not hidden");
            assert_eq!(value.get_name(), runtime.name());
            let flags = Flags::try_parse_from(["siprtmp", "--runtime", runtime.name()]).unwrap();
            assert_eq!(flags.runtime, runtime);
        }
    }
}
