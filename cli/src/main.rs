//! The `siprtmp` binary: parses flags and the optional config file, sets up logging, and runs
//! the node on the chosen driver until SIGINT or SIGTERM.

mod auth;
mod config;

use std::net::IpAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, ValueEnum};
use config::FileConfig;
use siprtmp_mio::{DriverConfig, MioDriver};

/// Which event loop runs the node.
#[derive(Debug, Clone, Copy, ValueEnum)]
enum Runtime {
    /// One thread, one mio Poll.
    Mio,
}

/// RTMP media server (live publish/play) with a sans-IO core.
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
    let node_config = file.node_config(&flags.record_all)?;
    let rules = file.rules()?;
    let driver_config = DriverConfig {
        listen,
        send_buffer: file.rtmp.send_buffer,
        seed: file.seed.unwrap_or_else(seed_from_os),
        events: None,
        root: root.clone(),
    };
    match flags.runtime {
        Runtime::Mio => {
            let mut driver = MioDriver::bind(driver_config, node_config)
                .map_err(|e| format!("cannot listen on {listen}: {e}"))?;
            if rules.is_active() {
                let mut authorizer = auth::Authorizer::new(rules);
                driver = driver.with_decider(Box::new(move |event| authorizer.on_event(event)));
            }
            let bound = driver.local_addr().map_err(|e| e.to_string())?;
            tracing::info!(
                "RTMP listening on {bound} (runtime mio, root {})",
                root.display()
            );
            let stopper = driver.stopper();
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
            driver.run().map_err(|e| format!("event loop: {e}"))
        }
    }
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
