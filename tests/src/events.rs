//! What the suites look up in a [`TestServer`]'s application events.

use std::net::SocketAddr;
use std::time::Duration;

use siprtmp_core::node::{ConnId, Event};

use crate::server::TestServer;

/// How long [`conn_of`] waits for the connection's event.
const WITHIN: Duration = Duration::from_secs(15);

/// The connection the server gave the client whose local address is `client` (from its
/// `Event::Connected`, waited for up to 15 s).
pub fn conn_of(server: &mut TestServer, client: SocketAddr) -> ConnId {
    let is_it = |e: &Event| matches!(e, Event::Connected { peer, .. } if *peer == client);
    assert!(
        server.wait_for(1, WITHIN, is_it),
        "no Connected event for {client}"
    );
    server
        .events()
        .iter()
        .find_map(|e| match e {
            Event::Connected { conn, peer, .. } if *peer == client => Some(*conn),
            _ => None,
        })
        .unwrap()
}
