//! The RTMP server's side of the gateway ([`GatewayHost`]): the hooks through which the
//! server hands the gateway what concerns its clients, and the server carrying out what the
//! gateway asks of a connection ([`ToServer`]) as soon as each hook returns.

use std::cmp::Reverse;
use std::time::Instant;

use crate::gateway::host::{EndCall, GatewayHost, RemoteMediaSink, ToServer};
use crate::ids::ConnId;
use crate::media::frame::MediaFrame;
use crate::rtmp::command::Command;
use crate::rtmp::control::UserControl;
use crate::rtmp::message::{type_id, RtmpMessage};
use crate::tcp::TcpEvent;
use crate::udp::UdpEvent;

use super::session::csid;
use super::{MediaSender, RtmpServer, Timer};

impl RtmpServer {
    /// Runs `hook` on the gateway (when there is one), then what it asked of the server; the
    /// hook's answer, or `None` without a gateway.
    #[inline]
    fn with_gateway<R>(&mut self, hook: impl FnOnce(&mut GatewayHost) -> R) -> Option<R> {
        let answer = hook(self.gateway.as_mut()?);
        self.gateway_requests();
        Some(answer)
    }

    pub(super) fn is_gateway_conn(&self, conn: ConnId) -> bool {
        self.gateway.as_ref().is_some_and(|g| g.is_client(conn))
    }

    /// A `connect` to an application: true when it is the gateway's (which answers it later).
    pub(super) fn gateway_connect(&mut self, conn: ConnId, app: &str, cmd: Command) -> bool {
        let Some(peer) = self.sessions.get(conn).map(|s| s.peer.ip()) else {
            return false;
        };
        self.with_gateway(|g| g.connect(conn, peer, app, cmd))
            .unwrap_or(false)
    }

    /// A call on a gateway client's connection: true when it is one of the gateway's.
    pub(super) fn gateway_command(&mut self, now: Instant, conn: ConnId, cmd: &Command) -> bool {
        self.with_gateway(|g| g.command(now, conn, cmd))
            .unwrap_or(false)
    }

    /// `publish` on a gateway client's connection.
    pub(super) fn gateway_publish(&mut self, conn: ConnId, stream_id: u32, name: &str) -> bool {
        self.with_gateway(|g| g.publish(conn, stream_id, name))
            .unwrap_or(false)
    }

    /// `play` on a gateway client's connection.
    pub(super) fn gateway_play(
        &mut self,
        now: Instant,
        conn: ConnId,
        stream_id: u32,
        name: &str,
    ) -> bool {
        self.with_gateway(|g| g.play(now, conn, stream_id, name))
            .unwrap_or(false)
    }

    /// Audio or video from a connection: true when it is a gateway client's (for its call).
    pub(super) fn gateway_media(&mut self, now: Instant, conn: ConnId, msg: &RtmpMessage) -> bool {
        self.with_gateway(|g| g.client_media(now, conn, msg))
            .unwrap_or(false)
    }

    /// A connection is gone or going.
    pub(super) fn gateway_closed(&mut self, now: Instant, conn: ConnId) {
        self.with_gateway(|g| g.closed(now, conn));
    }

    /// The operator ends a gateway client's call (`None` without a gateway).
    pub(super) fn gateway_end_call(&mut self, now: Instant, conn: ConnId) -> Option<EndCall> {
        self.with_gateway(|g| g.end_call(now, conn))
    }

    /// A gateway client's timer fired.
    pub(super) fn gateway_timer(&mut self, now: Instant, conn: ConnId, deadline: Instant) {
        self.with_gateway(|g| g.timer(now, conn, deadline));
    }

    /// Input from the driver about a UDP socket (the gateway's): the far end's media goes to
    /// the connections as the gateway makes it.
    pub(crate) fn udp(&mut self, now: Instant, event: UdpEvent) {
        self.last_now = self.last_now.max(now);
        // The connections' send side and the gateway are borrowed apart.
        let mut sender = MediaSender {
            sessions: &mut self.sessions,
            frame_headers: &mut self.frame_headers,
            merge: &mut self.gateway_merge,
            transmits: &mut self.transmits,
            last_now: self.last_now,
            backlog: &mut self.client_backlog,
        };
        let Some(gateway) = self.gateway.as_mut() else {
            return;
        };
        gateway.udp(now, event, &mut sender);
        self.gateway_requests();
    }

    /// Input from the driver about a TCP stream or listener of the node's (the gateway's SIP
    /// over TCP).
    pub(crate) fn tcp(&mut self, now: Instant, event: TcpEvent) {
        self.last_now = self.last_now.max(now);
        self.with_gateway(|g| g.tcp_event(now, event));
    }

    /// Carries out what the gateway asked of its clients' connections (a request that closes
    /// a connection may come back in here: the queue stays the gateway's, so whatever is left
    /// is carried out by whichever loop comes first), then closes the clients its far-end
    /// media found past the hard backlog.
    fn gateway_requests(&mut self) {
        while let Some(request) = self.gateway.as_mut().and_then(GatewayHost::pop_request) {
            self.gateway_request(request);
        }
        self.close_backlogged();
    }

    fn gateway_request(&mut self, request: ToServer) {
        match request {
            ToServer::Command { conn, cmd, amf3 } => {
                if let Some(session) = self.sessions.get_mut(conn) {
                    let notify = session.send_command(0, *cmd, amf3);
                    self.transmit_if(conn, notify);
                    // Callbacks (a far end's DTMF...) must not pile up on a client that does
                    // not read either.
                    self.check_backlog(conn);
                }
            }
            ToServer::Status {
                conn,
                stream_id,
                begin,
                level,
                codes,
                description,
            } => {
                if let Some(session) = self.sessions.get_mut(conn) {
                    let mut notify = false;
                    if begin {
                        notify |= session.send_user_control(UserControl::StreamBegin(stream_id));
                    }
                    for code in codes {
                        notify |= session.send_status(stream_id, level, code, &description);
                    }
                    self.transmit_if(conn, notify);
                    self.check_backlog(conn);
                }
            }
            ToServer::Media {
                conn,
                stream_id,
                frame,
            } => self.media_sender().remote_media(conn, stream_id, frame),
            ToServer::AcceptConnect { conn, cmd } => self.accept_connect(conn, *cmd),
            ToServer::RejectConnect { conn, cmd, reason } => {
                self.reject_connect(conn, &cmd, &reason, None)
            }
            ToServer::Close { conn, reason } => self.close(conn, reason),
            ToServer::Timer { conn, at } => {
                self.timers.push(Reverse((at, Timer::Gateway(conn.0))));
            }
        }
    }
}

impl RemoteMediaSink for MediaSender<'_> {
    fn remote_media(&mut self, conn: ConnId, stream_id: u32, frame: MediaFrame) {
        let channel = if frame.type_id == type_id::VIDEO {
            csid::VIDEO
        } else {
            csid::AUDIO
        };
        self.send(conn, channel, stream_id, frame);
    }
}
