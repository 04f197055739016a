//! The `siprtmp` binary: parses flags and the optional config file, sets up logging, and runs
//! the node on the chosen driver until SIGINT or SIGTERM.

mod auth;
mod config;
mod gateway;
mod workers;

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, ValueEnum};
use config::FileConfig;
use siprtmp_driver_common::{Decider, DriverConfig, Stopper};

/// Which event loop runs the node.
#[derive(Debug, Clone, Copy, ValueEnum)]
enum Runtime {
    /// One thread, one mio Poll.
    Mio,
    /// A current-thread tokio runtime.
    Tokio,
    /// Blocking sockets: a reader and a writer thread per connection, one node thread.
    Threads,
    /// async-std (discontinued upstream; kept for the runtime comparison).
    AsyncStd,
}

impl Runtime {
    /// The name the `--runtime` flag takes.
    fn name(self) -> String {
        self.to_possible_value()
            .map_or_else(|| format!("{self:?}"), |v| v.get_name().to_owned())
    }
}

/// RTMP media server (live publish/play, recording, video on demand) and SIP-RTMP gateway,
/// with a sans-IO core.
#[derive(Debug, Parser)]
#[command(name = "siprtmp", version, about)]
struct Flags {
    /// Address to listen on [default: 0.0.0.0].
    #[arg(short = 'i', long = "host")]
    host: Option<IpAddr>,
    /// RTMP port [default: 1935]; 0 picks a free port (the log says which).
    #[arg(short = 'p', long = "port")]
    port: Option<u16>,
    /// Root directory for recorded and played files [default: ./media].
    #[arg(short = 'r', long = "root")]
    root: Option<PathBuf>,
    /// Verbose logs (debug level); RUST_LOG overrides.
    #[arg(short = 'd', long = "verbose")]
    verbose: bool,
    /// TOML configuration file; flags override it.
    #[arg(short = 'c', long = "config")]
    config: Option<PathBuf>,
    /// Record every publish to this application to ROOT/APP/NAME.flv (repeatable; the same
    /// as `record = "all"` in `[apps.APP]`).
    #[arg(long = "record-all", value_name = "APP")]
    record_all: Vec<String>,
    /// Event loop to run on.
    #[arg(long, value_enum, default_value_t = Runtime::Mio)]
    runtime: Runtime,
    /// Nodes to run, one per thread, sharing the port (SO_REUSEPORT) and their live streams
    /// (mio and tokio only).
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u16).range(1..=256))]
    workers: u16,
    /// Run the SIP-RTMP gateway (app `sip`) even if the config file turns it off; it is on by
    /// default.
    #[arg(long, conflicts_with = "no_gateway")]
    gateway: bool,
    /// Turn the SIP-RTMP gateway off.
    #[arg(long)]
    no_gateway: bool,
    /// Local address for the gateway's SIP and RTP sockets [default: the address used to reach
    /// the proxy or registrar, else the machine's primary address, else 127.0.0.1]; 0.0.0.0
    /// binds every address (then --ext-ip, or that routed address, is advertised).
    #[arg(long = "int-ip", value_name = "IP")]
    int_ip: Option<IpAddr>,
    /// Address to advertise in SIP and SDP instead of --int-ip (behind NAT).
    #[arg(long = "ext-ip", value_name = "IP")]
    ext_ip: Option<IpAddr>,
    /// SIP registrar for clients that connect with a password [default: the AOR's domain].
    #[arg(long, value_name = "HOST:PORT")]
    registrar: Option<String>,
    /// Outbound proxy for the gateway's SIP requests.
    #[arg(long, value_name = "HOST:PORT")]
    proxy: Option<String>,
    /// RTP port range of the gateway, four ports per client [default: 16000-17999].
    #[arg(long = "rtp-ports", value_name = "LO-HI")]
    rtp_ports: Option<String>,
    /// Every call's media on the same four ports (the first free block of --rtp-ports),
    /// told apart by the far end's address and SSRC: fewer system calls per packet and no
    /// limit on clients from the port range. Far ends must send media from the address their
    /// SDP gives (no latching onto NATed sources) [default: four ports per client].
    #[arg(long = "shared-rtp-ports")]
    shared_rtp_ports: bool,
    /// What the gateway's SIP goes over: udp, or tcp (each client listens on a TCP port of its
    /// own and connects to its registrar, proxy and call targets; RTP stays UDP)
    /// [default: udp].
    #[arg(long = "sip-transport", value_name = "udp|tcp")]
    sip_transport: Option<String>,
    /// Where a call's media is accepted from besides the address the far end's SDP gives:
    /// strict (nowhere else), learn-port (another port of that IP, learned from 4 packets in
    /// sequence in the call's first 5 s: port-translating NATs), learn-any (any address so
    /// learned: far ends whose SDP carries a private address; a stranger who wins that race
    /// gets the call's media). Everything else is dropped and logged [default: learn-port].
    #[arg(long = "rtp-source", value_name = "strict|learn-port|learn-any")]
    rtp_source: Option<String>,
    /// Merged writes: hold each player's live media (and a gateway call's far-end media) up to
    /// MS milliseconds (1-1000; 100 is SRS's default) so that several messages leave in one
    /// write, for far less CPU per player; 0 turns it off [default: `merge_writes_ms` in the
    /// config file, else off].
    #[arg(long = "merge-writes", value_name = "MS")]
    merge_writes: Option<u64>,
    /// TCP_NODELAY on client sockets: each write leaves at once instead of waiting for the
    /// previous one's acknowledgement (Nagle). Lower latency for small messages; costs more
    /// CPU with players that read in bulk unless merged writes are on [default: off, or
    /// `tcp_nodelay` in `[rtmp]`].
    #[arg(long = "tcp-nodelay")]
    tcp_nodelay: bool,
    /// Wake-up moderation (mio only): take socket events at most once per MS milliseconds
    /// (1-100) and sleep in between, so one wake-up serves many busy connections. Every hop
    /// (RTMP to RTP, RTP to RTMP, timers) waits up to MS more; markedly less CPU per gateway
    /// call with many calls; 0 turns it off [default: `poll_interval_ms`, else off].
    #[arg(long = "poll-interval", value_name = "MS")]
    poll_interval: Option<u64>,
    /// Send the gateway's UDP one datagram at a time, without UDP GSO. GSO (on by default
    /// where the kernel has it) sends datagrams of equal length to one destination, queued in
    /// one turn, as one segmented message the kernel walks through its stack once; the far
    /// end receives the same datagrams [default: GSO on, or `udp_gso` in `[gateway]`].
    #[arg(long = "no-udp-gso")]
    no_udp_gso: bool,
}

fn main() -> ExitCode {
    let flags = Flags::parse();
    let default_level = if flags.verbose { "debug" } else { "info" };
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default_level));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .init();
    match run(flags) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("siprtmp: {e}");
            ExitCode::FAILURE
        }
    }
}

fn run(flags: Flags) -> Result<(), String> {
    let file = match &flags.config {
        Some(path) => FileConfig::load(path)?,
        None => FileConfig::default(),
    };
    let listen = config::listen_addr(flags.host, flags.port, &file);
    let root = flags
        .root
        .clone()
        .or_else(|| file.root.clone())
        .unwrap_or_else(|| PathBuf::from("media"));
    let mut node_config = file.node_config(&flags.record_all)?;
    if let Some(ms) = flags.merge_writes {
        node_config.server.merge_writes = config::merge_window(ms)?;
    }
    let gateway_flags = gateway::GatewayFlags {
        on: flags.gateway,
        off: flags.no_gateway,
        int_ip: flags.int_ip,
        ext_ip: flags.ext_ip,
        registrar: flags.registrar.clone(),
        proxy: flags.proxy.clone(),
        rtp_ports: flags.rtp_ports.clone(),
        shared_rtp_ports: flags.shared_rtp_ports,
        transport: flags.sip_transport.clone(),
        rtp_source: flags.rtp_source.clone(),
    };
    node_config.server.gateway = gateway::node_config(&file.gateway, &gateway_flags)?;
    let gateway_line = node_config.server.gateway.as_ref().map(|g| {
        let show = |a: Option<SocketAddr>| a.map_or_else(|| "none".to_owned(), |a| a.to_string());
        format!(
            "SIP-RTMP gateway on rtmp://host/{}/<user@domain>: SIP over {} and RTP on {} (advertised {}), RTP ports {}-{}{}, UDP GSO {}, registrar {}, proxy {}",
            g.app,
            g.session.transport.as_str(),
            g.bind_ip,
            g.session.advertised_ip.unwrap_or(g.bind_ip),
            g.rtp_ports.0,
            g.rtp_ports.1,
            if g.shared_rtp_ports { " (shared by every call)" } else { "" },
            if gateway::udp_gso(&file.gateway, flags.no_udp_gso) { "on" } else { "off" },
            show(g.session.registrar),
            show(g.session.outbound_proxy),
        )
    });
    let rules = file.rules()?;
    let worker_rules = rules.clone();
    // The access rules answer the node's decisions, under every runtime alike.
    let decider: Option<Decider> = rules.is_active().then(|| {
        let mut authorizer = auth::Authorizer::new(rules);
        Box::new(move |event: &siprtmp_core::node::Event| authorizer.on_event(event)) as Decider
    });
    let poll_interval =
        config::poll_interval(flags.poll_interval.or(file.poll_interval_ms).unwrap_or(0))?;
    if poll_interval.is_some() && !matches!(flags.runtime, Runtime::Mio) {
        return Err(format!(
            "--poll-interval (poll_interval_ms) needs --runtime mio, not {}",
            flags.runtime.name()
        ));
    }
    let driver_config = DriverConfig {
        listen,
        send_buffer: file.rtmp.send_buffer,
        tcp_nodelay: flags.tcp_nodelay || file.rtmp.tcp_nodelay.unwrap_or(false),
        seed: file.seed.unwrap_or_else(seed_from_os),
        events: None,
        root: root.clone(),
        poll_interval,
        udp_gso: gateway::udp_gso(&file.gateway, flags.no_udp_gso),
    };
    let runtime = flags.runtime;
    let merge_line = node_config
        .server
        .merge_writes
        .map_or_else(|| "off".to_owned(), |w| format!("{} ms", w.as_millis()));
    let serve = |bound: SocketAddr, stopper: Stopper| -> Result<(), String> {
        tracing::info!(
            "RTMP listening on {bound} (runtime {}, root {}, merged writes {}, poll interval {})",
            runtime.name(),
            root.display(),
            merge_line,
            poll_interval.map_or_else(|| "off".to_owned(), |i| format!("{} ms", i.as_millis())),
        );
        if let Some(line) = &gateway_line {
            tracing::info!("{line}");
        }
        stop_on_signals(stopper)
    };
    if flags.workers > 1 {
        let count = usize::from(flags.workers);
        return workers::run(
            runtime,
            count,
            driver_config,
            node_config,
            worker_rules,
            serve,
        );
    }
    // Each driver has the same shape: bind, report, run until a signal stops it.
    macro_rules! run_driver {
        ($driver:ty) => {{
            let mut driver = <$driver>::bind(driver_config, node_config)
                .map_err(|e| format!("cannot listen on {listen}: {e}"))?;
            if let Some(decider) = decider {
                driver = driver.with_decider(decider);
            }
            let bound = driver.local_addr().map_err(|e| e.to_string())?;
            serve(bound, driver.stopper())?;
            driver.run().map_err(|e| format!("event loop: {e}"))
        }};
    }
    match runtime {
        Runtime::Mio => run_driver!(siprtmp_mio::MioDriver),
        Runtime::Tokio => run_driver!(siprtmp_tokio::TokioDriver),
        Runtime::Threads => run_driver!(siprtmp_threads::ThreadsDriver),
        Runtime::AsyncStd => run_driver!(siprtmp_async_std::AsyncStdDriver),
    }
}

/// Stops the driver on the first SIGINT or SIGTERM (from a thread of its own).
fn stop_on_signals(stopper: Stopper) -> Result<(), String> {
    let mut signals = signal_hook::iterator::Signals::new([
        signal_hook::consts::SIGINT,
        signal_hook::consts::SIGTERM,
    ])
    .map_err(|e| format!("signal handlers: {e}"))?;
    std::thread::spawn(move || {
        if let Some(signal) = signals.forever().next() {
            tracing::info!("signal {signal}: shutting down");
            stopper.stop();
        }
    });
    Ok(())
}

/// A seed for identifiers and handshake bytes that differs per run.
fn seed_from_os() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    // RandomState is seeded from the OS's entropy source; hashing the time adds more.
    let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
    hasher.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos()),
    );
    hasher.finish()
}
