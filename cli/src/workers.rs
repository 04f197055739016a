//! `--workers N`: N nodes, one per thread, on one port (`SO_REUSEPORT`), sharing their live
//! streams through the relay between workers. Only the mio and tokio drivers run as workers;
//! the access rules are one [`Authorizer`] shared by every worker (behind a mutex: it is asked
//! once per connect, publish and play, never per packet), so connection limits count the
//! whole server.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex, PoisonError};

use siprtmp_core::node::{Event, NodeConfig, WorkerId};
use siprtmp_driver_common::{Decider, DriverConfig, Stopper, Workers};

use crate::auth::{Authorizer, Rules};
use crate::flags::Runtime;

/// Runs `count` workers of `runtime` until `serve`'s signal handler stops them.
pub(crate) fn run(
    runtime: Runtime,
    count: usize,
    config: DriverConfig,
    node: NodeConfig,
    rules: Rules,
    serve: impl FnOnce(SocketAddr, Stopper) -> Result<(), String>,
) -> Result<(), String> {
    let authorizer = rules
        .is_active()
        .then(|| Arc::new(Mutex::new(Authorizer::new(rules))));
    let decider = |_: WorkerId, _: &mut DriverConfig| -> Option<Decider> {
        let shared = authorizer.clone()?;
        Some(Box::new(move |event: &Event| {
            shared
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .on_event(event)
        }))
    };
    let listen = config.listen;
    let started = match runtime {
        Runtime::Mio => Workers::start::<siprtmp_mio::MioDriver>(config, node, count, decider),
        Runtime::Tokio => {
            Workers::start::<siprtmp_tokio::TokioDriver>(config, node, count, decider)
        }
        Runtime::Threads | Runtime::AsyncStd => {
            return Err(format!(
                "--workers {count} needs --runtime mio or tokio (the {} driver runs one node)",
                runtime.name()
            ))
        }
    };
    let workers =
        started.map_err(|e| format!("cannot listen on {listen} with {count} workers: {e}"))?;
    tracing::info!("{count} workers share the port and their live streams");
    serve(workers.local_addr(), workers.stopper())?;
    workers.join().map_err(|e| format!("event loop: {e}"))
}
