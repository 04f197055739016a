//! Delivery of the node's application [`Event`]s: one log line each, and a copy to the
//! embedding application's channel when it gave one.

use std::sync::mpsc::Sender;

use siprtmp_core::node::Event;

/// Logs `event` and forwards it to `sink` if there is one.
///
/// ```
/// use siprtmp_core::node::{ConnId, Event};
/// use siprtmp_driver_common::deliver_event;
/// let (tx, rx) = std::sync::mpsc::channel();
/// let event = Event::Closing { conn: ConnId(1), reason: "test".into() };
/// deliver_event(Some(&tx), event.clone());
/// assert_eq!(rx.recv().unwrap(), event);
/// ```
pub fn deliver_event(sink: Option<&Sender<Event>>, event: Event) {
    log_event(&event);
    if let Some(sink) = sink {
        // A dropped receiver only means nobody listens any more.
        let _ = sink.send(event);
    }
}

/// One `info` log line for `event`.
pub fn log_event(event: &Event) {
    match event {
        Event::Connected { conn, app, peer } => {
            tracing::info!("{conn}: {peer} connected to app '{app}'")
        }
        Event::PublishStarted { conn, stream } => {
            tracing::info!("{conn}: publish started: {stream}")
        }
        Event::PublishStopped { conn, stream } => {
            tracing::info!("{conn}: publish stopped: {stream}")
        }
        Event::PlayStarted { conn, stream } => tracing::info!("{conn}: play started: {stream}"),
        Event::Closing { conn, reason } => tracing::info!("{conn}: closing: {reason}"),
    }
}
