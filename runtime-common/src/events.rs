//! Delivery of the node's application [`Event`]s: one log line each, an answer to every
//! [`Event::Decide`] (from the embedding application's [`Decider`], or "accept" without one),
//! and a copy to the embedding application's channel when it gave one.

use std::sync::mpsc::Sender;
use std::time::Instant;

use siprtmp_core::node::{Decision, Event, Node, RelayPhase, RequestId};

/// Answers [`Event::Decide`] events: it sees every event (to count connections, say) and
/// returns an answer for the decisions it can make at once. It runs on the driver's node
/// thread, so it must not block; it answers by return value, never by calling into the node.
///
/// ```
/// use siprtmp_core::node::{Decision, Event, Question};
/// use siprtmp_runtime_common::Decider;
/// // Refuse every publish, accept everything else.
/// let decider: Decider = Box::new(|event| match event {
///     Event::Decide { request, question: Question::Publish { .. } } => {
///         Some((*request, Decision::Reject("read-only server".into())))
///     }
///     Event::Decide { request, .. } => Some((*request, Decision::Accept)),
///     _ => None,
/// });
/// # drop(decider);
/// ```
pub type Decider = Box<dyn FnMut(&Event) -> Option<(RequestId, Decision)> + Send>;

/// Where a driver sends each [`Event`] the node emits: the log, the [`Decider`] (whose answer
/// goes straight back to the node with [`Node::decide`]), and the embedding application's
/// channel.
///
/// ```
/// use std::time::Instant;
/// use siprtmp_core::node::{CloseReason, ConnId, Event, Node, NodeConfig};
/// use siprtmp_runtime_common::EventRouter;
/// let (tx, rx) = std::sync::mpsc::channel();
/// let mut router = EventRouter::new(Some(tx), None);
/// let mut node = Node::new(NodeConfig::default(), Instant::now(), 1);
/// let event = Event::Closing { conn: ConnId(1), reason: CloseReason::HandshakeTimeout };
/// router.route(&mut node, Instant::now(), event.clone());
/// assert_eq!(rx.recv().unwrap(), event);
/// ```
pub struct EventRouter {
    sink: Option<Sender<Event>>,
    decider: Option<Decider>,
}

impl EventRouter {
    /// Events go to `sink` (if any); decisions to `decider` (everything is accepted without
    /// one).
    pub fn new(sink: Option<Sender<Event>>, decider: Option<Decider>) -> Self {
        Self { sink, decider }
    }

    /// Installs (or replaces) the decider.
    pub fn set_decider(&mut self, decider: Decider) {
        self.decider = Some(decider);
    }

    /// Logs `event`, answers it if it is a decision the decider (or the default) can make
    /// now, and forwards it to the sink.
    pub fn route(&mut self, node: &mut Node, now: Instant, event: Event) {
        log_event(&event);
        let answer = match (&mut self.decider, &event) {
            (Some(decider), _) => decider(&event),
            (None, Event::Decide { request, .. }) => Some((*request, Decision::Accept)),
            (None, _) => None,
        };
        if let Some((request, decision)) = answer {
            if decision != Decision::Accept {
                tracing::info!("{request}: {decision:?}");
            }
            if let Err(e) = node.decide(now, request, decision) {
                tracing::warn!("decision {request}: {e}");
            }
        }
        if let Some(sink) = &self.sink {
            // A dropped receiver only means nobody listens any more.
            let _ = sink.send(event);
        }
    }
}

impl std::fmt::Debug for EventRouter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EventRouter")
            .field("sink", &self.sink.is_some())
            .field("decider", &self.decider.is_some())
            .finish()
    }
}

/// One log line for `event` (`info`, `debug` for the chatty ones, `warn` for failures).
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
        Event::Gateway { conn, message } => tracing::info!("{conn}: gateway: {message}"),
        Event::GatewayCall { conn, phase } => tracing::info!("{conn}: gateway call: {phase:?}"),
        Event::UnroutedMedia {
            dropped,
            last_source,
        } => tracing::warn!(
            "gateway: dropped {dropped} datagram(s) on the shared RTP ports from no call's far \
             end (last from {last_source})"
        ),
        Event::GatewayBound {
            conn,
            aor,
            sip,
            rtp_port,
        } => match rtp_port {
            Some(port) => {
                tracing::info!("{conn}: gateway client {aor}: SIP on {sip}, RTP on port {port}")
            }
            None => tracing::info!("{conn}: gateway client {aor}: SIP on {sip}"),
        },
        Event::Disconnected { conn } => tracing::debug!("{conn}: disconnected"),
        Event::Decide { request, question } => {
            tracing::debug!("{request}: asking the application: {question:?}")
        }
        Event::RecordStarted { conn, stream, path } => {
            tracing::info!("{conn}: recording {stream} to {path}")
        }
        Event::RecordStopped {
            stream,
            path,
            bytes,
            duration_ms,
            error,
        } => match error {
            None => tracing::info!(
                "recording of {stream} ended: {path}, {bytes} bytes, {} s",
                f64::from(*duration_ms) / 1000.0
            ),
            Some(e) => tracing::warn!("recording of {stream} to {path} failed: {e}"),
        },
        Event::HttpListening { result } => match result {
            Ok(addr) => tracing::info!("HTTP listening on {addr} (metrics and API)"),
            Err(e) => tracing::error!("HTTP listener failed: {e}"),
        },
        Event::Relay {
            stream,
            direction,
            upstream,
            phase,
        } => {
            let direction = direction.as_str();
            match phase {
                RelayPhase::Connecting => {
                    tracing::debug!("{direction} {stream}: connecting to {upstream}")
                }
                RelayPhase::Live => tracing::info!("{direction} {stream}: live with {upstream}"),
                RelayPhase::Failed {
                    error,
                    retry_in: Some(wait),
                } => tracing::warn!(
                    "{direction} {stream}: {upstream}: {error}; trying again in {} s",
                    wait.as_secs_f64()
                ),
                RelayPhase::Failed {
                    error,
                    retry_in: None,
                } => tracing::warn!("{direction} {stream}: {upstream}: {error}"),
                RelayPhase::Ended { reason } => {
                    tracing::info!("{direction} {stream}: {upstream}: ended: {reason}")
                }
                other => tracing::info!("{direction} {stream}: {upstream}: {other:?}"),
            }
        }
        other => tracing::info!("{other:?}"),
    }
}
