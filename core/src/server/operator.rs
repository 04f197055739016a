//! What the HTTP API's operator actions (`crate::admin::routes`) do to the server: drop a
//! connection, end a gateway client's call, stop a live stream's recording. Each acts on this
//! node alone and says whether it found what it was asked about; the listener forwards what
//! belongs to another worker of the group (see `crate::admin`).

use std::time::Instant;

use crate::close_reason::CloseReason;
use crate::gateway::host::EndCall;
use crate::ids::{ConnId, WorkerId};

use super::RtmpServer;

/// What came of stopping a stream's recording ([`RtmpServer::stop_recording`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum StopRecording {
    /// The recording to `path` is closing (its file is closed when the writes in flight are
    /// done, and `RecordStopped` told then); `path` is `None` when only a failed recording's
    /// retry was waiting (`record = "all"`), which will not come now.
    Stopped { path: Option<String> },
    /// The stream is published here and not recorded.
    NotRecording,
    /// The stream is published on this other worker of the group.
    Elsewhere(WorkerId),
    /// No live stream of that name (or nobody publishes it).
    NoStream,
}

impl RtmpServer {
    /// Drops `conn` for the operator (the HTTP API's `drop`): an RTMP connection or an
    /// HTTP-FLV player of this node. False when it has none such.
    pub(crate) fn drop_conn(&mut self, conn: ConnId) -> bool {
        if self.has_conn(conn) {
            self.close(conn, CloseReason::DroppedByOperator);
            return true;
        }
        self.drop_flv(conn)
    }

    /// Whether `conn`'s id names another worker of this node's group (where the HTTP API's
    /// `drop` and `end` are forwarded).
    pub(crate) fn is_other_worker(&self, conn: ConnId) -> bool {
        self.worker()
            .is_some_and(|me| me != conn.worker() && usize::from(conn.worker().0) < 128)
    }

    /// Whether `conn` is a live connection (one the HTTP API may drop).
    pub(crate) fn has_conn(&self, conn: ConnId) -> bool {
        self.sessions.get(conn).is_some()
    }

    /// Ends the call of gateway client `conn` for the operator (the HTTP API's `end`; see
    /// `GatewayHost::end_call`). `NoClient` without a gateway.
    pub(crate) fn end_call(&mut self, now: Instant, conn: ConnId) -> EndCall {
        self.last_now = self.last_now.max(now);
        self.gateway_end_call(now, conn)
            .unwrap_or(EndCall::NoClient)
    }

    /// Stops the recording of the live stream `key` (`app/name`) for the operator, as its
    /// publisher's leaving would (the file is patched and closed, stays playable, and its end
    /// is told with `RecordStopped`, so `on_record_done` follows), while the stream and its
    /// players go on. A publisher that asked for the recording hears
    /// `NetStream.Record.Stop`. A failed application-chosen recording waiting to start again
    /// (`record = "all"`) is stopped too: it does not come back for this publish.
    pub(crate) fn stop_recording(&mut self, key: &str) -> StopRecording {
        let Some(stream) = self.live.get_mut(key) else {
            return StopRecording::NoStream;
        };
        if stream.publisher.is_none() {
            return match stream.remote {
                Some(remote) => StopRecording::Elsewhere(remote.worker),
                None => StopRecording::NoStream,
            };
        }
        let resume = stream.record_resume.take();
        let Some(file) = stream.recorder.take() else {
            return match resume {
                Some(_) => StopRecording::Stopped { path: None },
                None => StopRecording::NotRecording,
            };
        };
        let Some(recorder) = self.recorders.get_mut(&file) else {
            return StopRecording::NotRecording;
        };
        recorder.finish(&mut self.outputs);
        let (conn, stream_id, path) = (recorder.conn, recorder.stream_id, recorder.path.clone());
        if recorder.requested {
            let text = format!("Stopped recording {path}.");
            self.status(conn, stream_id, "status", "NetStream.Record.Stop", &text);
        }
        StopRecording::Stopped { path: Some(path) }
    }
}
