//! The `siprtmp` binary: reads flags and the optional config file, checks every setting
//! before anything starts (an error names its flag, or its file, line and key), sets up
//! logging, and runs the node on the chosen driver until SIGINT or SIGTERM (SIGHUP reloads
//! the RTMPS certificate).

mod allocator;
mod auth;
mod callbacks;
mod config;
mod diagnostics;
mod flags;
mod gateway;
mod logging;
mod relay;
mod rtmps;
mod workers;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;
use config::FileConfig;
use diagnostics::{pick, ConfigError};
use flags::Flags;
use logging::LogFormat;
use siprtmp_core::node::NodeConfig;
use siprtmp_runtime_drivers::{Decider, DriverConfig, Runtime, Stopper};

fn main() -> ExitCode {
    allocator::configure();
    let flags = Flags::parse();
    let source = match flags.config.as_deref().map(FileConfig::read).transpose() {
        Ok(source) => source,
        Err(e) => return fail(&e.render(None)),
    };
    let setup = source
        .as_ref()
        .map_or_else(|| Ok(FileConfig::default()), FileConfig::parse)
        .and_then(|file| Setup::new(&flags, &file));
    let setup = match setup {
        Ok(setup) => setup,
        Err(e) => return fail(&e.render(source.as_ref())),
    };
    if flags.check_config {
        println!("siprtmp: configuration ok");
        return ExitCode::SUCCESS;
    }
    let json = setup.log_format == LogFormat::Json;
    logging::init(setup.log_format, flags.verbose);
    match serve(setup) {
        Ok(()) => ExitCode::SUCCESS,
        // Once logging runs, a JSON log stays all JSON.
        Err(e) if json => {
            tracing::error!("{e}");
            ExitCode::FAILURE
        }
        Err(e) => fail(&e),
    }
}

/// Prints the one error message and gives the failing exit status (also when stderr is
/// closed, where `eprintln!` would panic).
fn fail(message: &str) -> ExitCode {
    use std::io::Write as _;
    let _ = writeln!(std::io::stderr(), "siprtmp: {message}");
    ExitCode::FAILURE
}

/// Everything checked and ready to start.
struct Setup {
    runtime: Runtime,
    workers: u16,
    log_format: LogFormat,
    driver: DriverConfig,
    node: NodeConfig,
    rules: auth::Rules,
    /// The startup log's description of the gateway, when it is on.
    gateway_line: Option<String>,
    /// The RTMPS listener, when `rtmps_port` asks for one.
    rtmps: Option<rtmps::Rtmps>,
    /// The startup log's description of each application's relays.
    relay_lines: Vec<String>,
}

impl Setup {
    /// Checks flags and file together; the first bad setting is the error.
    fn new(flags: &Flags, file: &FileConfig) -> Result<Self, ConfigError> {
        let listen = config::listen_addr(flags.host, flags.port, file);
        let root = flags
            .root
            .clone()
            .or_else(|| file.root.clone())
            .unwrap_or_else(|| PathBuf::from("media"));
        let mut node = file.node_config(&flags.record_all)?;
        let rtmps = rtmps::setup(flags, file, listen.ip())?;
        node.server.tls = rtmps.as_ref().map(|r| r.config.clone());
        if let Some(ms) = flags.merge_writes {
            node.server.merge_writes = config::merge_window(
                ms,
                diagnostics::Origin::flag("--merge-writes", "rtmp.merge_writes_ms"),
            )?;
        }
        if let Some(ms) = flags.merge_writes_max {
            node.server.merge_writes_max = config::merge_window(
                ms,
                diagnostics::Origin::flag("--merge-writes-max", "rtmp.merge_writes_max_ms"),
            )?;
        }
        node.server.gateway_merge_writes = match flags.gateway_merge_writes {
            Some(ms) => config::merge_window(
                ms,
                diagnostics::Origin::flag("--gateway-merge-writes", "gateway.merge_writes_ms"),
            )?,
            None => config::merge_window(
                file.gateway.merge_writes_ms.unwrap_or(0),
                diagnostics::Origin::key("gateway.merge_writes_ms", Some("--gateway-merge-writes")),
            )?,
        };
        if let Some((secs, origin)) = pick(
            flags.shutdown_grace,
            "--shutdown-grace",
            file.shutdown_grace_secs,
            "shutdown_grace_secs",
        ) {
            node.server.shutdown_grace = config::shutdown_grace(secs, origin)?;
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
            sip_tls_ca: flags.sip_tls_ca.clone(),
            sip_tls_server_name: flags.sip_tls_server_name.clone(),
            rtp_source: flags.rtp_source.clone(),
            srtp: flags.srtp.clone(),
            srtp_over_plain_sip: flags.srtp_over_plain_sip,
        };
        node.server.gateway = gateway::node_config(&file.gateway, &gateway_flags)?;
        let udp_gso = gateway::udp_gso(&file.gateway, flags.no_udp_gso);
        node.server.http = config::http_config(
            pick(
                flags.http_listen,
                "--http-listen",
                file.http_listen,
                "http_listen",
            ),
            pick(
                flags.http_token.clone(),
                "--http-token",
                file.http_token.clone(),
                "http_token",
            ),
        )?;
        node.server.callbacks = file.callbacks.node_config(&callbacks::resolve)?;
        relay::apply(
            &file.relay,
            &file.apps,
            &mut node.server,
            &callbacks::resolve,
        )?;
        let relay_lines = relay::startup_lines(&node.server);
        let gateway_line = node.server.gateway.as_ref().map(|g| {
            let show =
                |a: Option<SocketAddr>| a.map_or_else(|| "none".to_owned(), |a| a.to_string());
            format!(
                "SIP-RTMP gateway on rtmp://host/{}/<user@domain>: SIP over {} and RTP on {} (advertised {}), RTP ports {}-{}{}, UDP GSO {}, registrar {}, proxy {}",
                g.app,
                g.session.transport.as_str(),
                g.bind_ip,
                g.session.advertised_ip.unwrap_or(g.bind_ip),
                g.rtp_ports.0,
                g.rtp_ports.1,
                if g.shared_rtp_ports { " (shared by every call)" } else { "" },
                if udp_gso { "on" } else { "off" },
                show(g.session.registrar),
                show(g.session.outbound_proxy),
            )
        });
        let rules = file.rules()?;
        let poll = pick(
            flags.poll_interval,
            "--poll-interval",
            file.poll_interval_ms,
            "poll_interval_ms",
        );
        let poll_interval = match &poll {
            Some((ms, origin)) => config::poll_interval(*ms, origin.clone())?,
            None => None,
        };
        if let (Some(_), Some((ms, origin))) = (poll_interval, poll) {
            if !flags.runtime.moderates_wakeups() {
                return Err(ConfigError::value(
                    origin,
                    ms,
                    format!(
                        "needs --runtime mio or io-uring, not --runtime {runtime} (the {runtime} \
                         driver has no wake-up moderation); drop --runtime, or 0 turns it off",
                        runtime = flags.runtime.name()
                    ),
                ));
            }
        }
        if flags.workers > 1 && !flags.runtime.runs_workers() {
            return Err(ConfigError::Combination(format!(
                "--workers {} needs --runtime mio, tokio or io-uring, not --runtime {runtime} (the \
                 {runtime} driver runs one node): drop --workers, or pick --runtime mio",
                flags.workers,
                runtime = flags.runtime.name()
            )));
        }
        let driver = DriverConfig {
            listen,
            tls_listen: rtmps.as_ref().map(|r| r.listen),
            send_buffer: file.rtmp.send_buffer,
            tcp_nodelay: flags.tcp_nodelay || file.rtmp.tcp_nodelay.unwrap_or(false),
            seed: file.seed.unwrap_or_else(seed_from_os),
            events: None,
            root,
            poll_interval,
            udp_gso,
        };
        Ok(Self {
            runtime: flags.runtime,
            workers: flags.workers,
            log_format: flags.log_format.or(file.log_format).unwrap_or_default(),
            driver,
            node,
            rules,
            gateway_line,
            rtmps,
            relay_lines,
        })
    }
}

/// Binds, logs where, and runs until a signal stops the node.
fn serve(setup: Setup) -> Result<(), String> {
    let Setup {
        runtime,
        workers,
        driver: driver_config,
        node: node_config,
        rules,
        gateway_line,
        rtmps,
        relay_lines,
        ..
    } = setup;
    let listen = driver_config.listen;
    let tls_listen = driver_config.tls_listen;
    let root = driver_config.root.clone();
    let poll_interval = driver_config.poll_interval;
    let worker_rules = rules.clone();
    // The access rules answer the node's decisions, under every runtime alike.
    let decider: Option<Decider> = rules.is_active().then(|| {
        let mut authorizer = auth::Authorizer::new(rules);
        Box::new(move |event: &siprtmp_core::node::Event| authorizer.on_event(event)) as Decider
    });
    let window = |w: Option<std::time::Duration>| {
        w.map_or_else(|| "off".to_owned(), |w| format!("{} ms", w.as_millis()))
    };
    let merge_line = format!(
        "{} (calls: {})",
        window(node_config.server.merge_writes),
        window(node_config.server.gateway_merge_writes)
    );
    let gateway_window = gateway_line
        .is_some()
        .then_some(node_config.server.gateway_merge_writes)
        .flatten();
    let rounded_windows = config::merge_windows_rounded_up(
        poll_interval,
        &[
            ("--merge-writes", node_config.server.merge_writes),
            ("--gateway-merge-writes", gateway_window),
        ],
    );
    let serve = |bound: SocketAddr,
                 tls_bound: Option<SocketAddr>,
                 stopper: Stopper|
     -> Result<(), String> {
        // Handlers first: a SIGTERM sent once the log says "listening" must stop it cleanly
        // (and a SIGHUP must reload, not kill).
        stop_on_signals(stopper)?;
        rtmps::reload_on_sighup(rtmps.as_ref().map(|r| r.cert.clone()))?;
        tracing::info!(
            port = bound.port(),
            "RTMP listening on {bound} (runtime {}, root {}, merged writes {}, poll interval {})",
            runtime.name(),
            root.display(),
            merge_line,
            poll_interval.map_or_else(|| "off".to_owned(), |i| format!("{} ms", i.as_millis())),
        );
        for warning in &rounded_windows {
            tracing::warn!("{warning}");
        }
        if let (Some(rtmps), Some(tls_bound)) = (&rtmps, tls_bound) {
            tracing::info!(
                tls_port = tls_bound.port(),
                "RTMPS listening on {tls_bound} (certificate {}, reloaded on SIGHUP)",
                rtmps::cert_path(rtmps).display()
            );
        }
        if let Some(line) = &gateway_line {
            tracing::info!("{line}");
        }
        for line in &relay_lines {
            tracing::info!("{line}");
        }
        Ok(())
    };
    if workers > 1 {
        let count = usize::from(workers);
        return workers::run(
            runtime,
            count,
            driver_config,
            node_config,
            worker_rules,
            serve,
        );
    }
    // Bind, report, run until a signal stops it.
    let mut driver = runtime
        .bind(driver_config, node_config)
        .map_err(|e| match tls_listen {
            Some(tls) => format!("cannot listen on {listen} and {tls}: {e}"),
            None => format!("cannot listen on {listen}: {e}"),
        })?;
    if let Some(decider) = decider {
        driver.set_decider(decider);
    }
    let bound = driver.local_addr().map_err(|e| e.to_string())?;
    serve(bound, driver.tls_local_addr(), driver.stopper())?;
    driver.run().map_err(|e| format!("event loop: {e}"))
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
            // Stop first: nothing that logging does (a closed stderr) may keep the server up.
            stopper.stop();
            tracing::info!("signal {signal}: shutting down");
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
