//! What the node says about a connection once the driver has reported it closed: nothing
//! but its `Disconnected`. (Found by the `node` fuzz target: a recording publisher that
//! disconnected got a `Transmit` after its `Disconnected`, for the status its unpublish
//! queued on the session being removed.)

use std::time::Instant;

use siprtmp_core::node::{AppConfig, RecordPolicy};
use siprtmp_core::node::{Event, Input, Node, NodeConfig, Output};
use siprtmp_core::rtmp::message::{type_id, RtmpMessage};
use siprtmp_core::testkit::MemoryNet;

#[test]
fn a_recording_publisher_that_disconnects_gets_no_output_after_it() {
    let now = Instant::now();
    let mut config = NodeConfig::default();
    config.server.apps.insert(
        "live".into(),
        AppConfig {
            record: RecordPolicy::All,
            ..AppConfig::default()
        },
    );
    let mut net = MemoryNet::new(Node::new(config, now, 1));
    let publisher = net.connect(now, "live");
    net.pump(now);
    net.clients[publisher].client.create_stream();
    net.clients[publisher].client.publish(1, "cam");
    net.pump(now);
    let video = RtmpMessage::new(type_id::VIDEO, 1, 0, vec![0x17, 1, 0, 0, 0, 0xaa]);
    net.clients[publisher].client.send_media(&video);
    net.pump(now);
    assert!(
        net.node_events
            .iter()
            .any(|e| matches!(e, Event::RecordStarted { .. })),
        "the publish is recorded"
    );

    let conn = net.clients[publisher].conn;
    net.node.handle(now, Input::Closed { conn });
    let mut after = Vec::new();
    while let Some(out) = net.node.poll_output() {
        after.push(out);
    }
    let about_conn: Vec<&Output> = after
        .iter()
        .filter(|o| match o {
            Output::Transmit { conn: c } | Output::Close { conn: c } => *c == conn,
            _ => false,
        })
        .collect();
    assert!(
        about_conn.is_empty(),
        "output for a closed connection: {about_conn:?}"
    );
    assert!(after.contains(&Output::Event(Event::Disconnected { conn })));
    assert_eq!(net.node.connection_count(), 0);
}
