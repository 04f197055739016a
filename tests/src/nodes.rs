//! Node settings that several suites start servers with (the gateway's are in
//! [`crate::gateway`]).

use siprtmp_core::node::NodeConfig;
use siprtmp_core::node::{AppConfig, RecordPolicy, ServerConfig};

/// Application `vod` records every publish; `decisions`: the application is asked about every
/// connect, publish and play (a decider answers).
pub fn recording_node(decisions: bool) -> NodeConfig {
    let mut server = ServerConfig::default();
    server.apps.insert(
        "vod".into(),
        AppConfig {
            record: RecordPolicy::All,
            ..AppConfig::default()
        },
    );
    NodeConfig { server, decisions }
}
