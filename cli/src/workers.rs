//! `--workers N`: N nodes, one per thread, on one port (`SO_REUSEPORT`), sharing their live
//! streams through the relay between workers. Only the mio, tokio and io-uring drivers run as
//! workers ([`Runtime::runs_workers`]); the access rules are one [`Authorizer`] shared by
//! every worker (behind a mutex: it is asked once per connect, publish and play, never per
//! packet), so connection limits count the whole server.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex, PoisonError};

use siprtmp_core::node::{Event, NodeConfig, WorkerId};
use siprtmp_runtime_drivers::{Decider, DriverConfig, Runtime, Stopper};

use crate::auth::{Authorizer, Rules};

/// Runs `count` workers of `runtime` until `serve`'s signal handler stops them.
pub(crate) fn run(
    runtime: Runtime,
    count: usize,
    config: DriverConfig,
    node: NodeConfig,
    rules: Rules,
    serve: impl FnOnce(SocketAddr, Option<SocketAddr>, Stopper) -> Result<(), String>,
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
    let workers = runtime
        .start_workers(config, node, count, decider)
        .map_err(|e| format!("cannot listen on {listen} with {count} workers: {e}"))?;
    tracing::info!("{count} workers share the port and their live streams");
    serve(
        workers.local_addr(),
        workers.tls_local_addr(),
        workers.stopper(),
    )?;
    workers.join().map_err(|e| format!("event loop: {e}"))
}
