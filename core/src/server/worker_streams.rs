//! The server's side of the relay between workers ([`crate::worker_relay`]): claiming a name before
//! a publish goes live, announcing and withdrawing local publications, serving subscriptions
//! (catch-up, then every message) to the workers that have players, and playing streams
//! published on other workers as if they were local.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Instant;

use super::commands::{bare_stream_name, first_string, publish_mode};
use super::live_stream::{RemotePublisher, Subscription};
use super::RtmpServer;
use crate::decision::RequestId;
use crate::ids::ConnId;
use crate::io::Output;
use crate::rtmp::command::Command;
use crate::rtmp::shared_message::SharedMessage;
use crate::worker_relay::{RelayIn, RelayMessage, RelayOut, RelayTarget, RelayedMedia, WorkerId};

/// A publish waiting for the registry's answer.
#[derive(Debug)]
struct Claim {
    conn: ConnId,
    stream_id: u32,
    cmd: Command,
    key: Arc<str>,
}

/// The relay state of a node that is one worker of a group.
#[derive(Debug, Default)]
pub(crate) struct RelayState {
    /// This worker's id (0 when not set: [`RtmpServer::enable_relay`] sets it).
    worker: u8,
    claims: HashMap<RequestId, Claim>,
    /// The names this worker asked for to pull them (see `relay::pull_workers`).
    pub(in crate::server) pull_claims: HashMap<RequestId, Arc<str>>,
    /// Numbers this worker's publications and subscriptions (never reused).
    next_number: u64,
}

impl RelayState {
    fn next(&mut self) -> u64 {
        self.next_number += 1;
        self.next_number
    }
}

impl RtmpServer {
    /// Makes the server worker `worker` of a group sharing streams through a relay.
    pub(crate) fn enable_relay(&mut self, worker: WorkerId) {
        self.sessions.set_worker(worker.0);
        self.relay = Some(RelayState {
            worker: worker.0,
            ..RelayState::default()
        });
    }

    /// This node's worker id, when it is a worker of a group.
    pub(crate) fn worker(&self) -> Option<WorkerId> {
        self.relay.as_ref().map(|r| WorkerId(r.worker))
    }

    fn relay_send(&mut self, to: RelayTarget, message: RelayMessage) {
        self.outputs
            .push_back(Output::Relay(RelayOut::Send { to, message }));
    }

    /// Something from the driver's relay.
    pub(crate) fn relay_input(&mut self, now: Instant, input: RelayIn) {
        self.last_now = self.last_now.max(now);
        if self.relay.is_none() {
            return; // not a worker of a group: nothing was asked, nothing is shared
        }
        match input {
            RelayIn::Claimed { request, granted } => {
                if !self.pull_claimed(request, granted) {
                    self.claimed(now, request, granted);
                }
            }
            RelayIn::Received { from, message } => match message {
                RelayMessage::Announce {
                    stream,
                    name,
                    publication,
                } => self.remote_announced(from, stream, &name, publication),
                RelayMessage::Withdraw { stream } => self.remote_withdrawn(from, &stream),
                RelayMessage::PullEnded { stream, not_found } => {
                    self.remote_pull_ended(&stream, not_found)
                }
                RelayMessage::Subscribe {
                    stream,
                    publication,
                    subscription,
                } => self.subscribed_by(from, &stream, publication, subscription),
                RelayMessage::Unsubscribe {
                    stream,
                    publication,
                } => self.unsubscribed_by(from, &stream, publication),
                RelayMessage::Subscribed {
                    stream,
                    subscription,
                } => self.subscription_started(from, &stream, subscription),
                RelayMessage::Media { stream, media } => self.remote_media(from, &stream, media),
                // The node hands these to its HTTP listener before the server sees them.
                RelayMessage::Report { .. }
                | RelayMessage::Reported { .. }
                | RelayMessage::Drop { .. }
                | RelayMessage::EndCall { .. }
                | RelayMessage::StopRecording { .. } => {}
            },
        }
    }

    // --- The publishing side -------------------------------------------------------------

    /// Asks the registry for the name of a publish; the connection's input waits meanwhile.
    pub(super) fn claim_publish(&mut self, conn: ConnId, stream_id: u32, cmd: &Command) {
        let Some(session) = self.sessions.get_mut(conn) else {
            return;
        };
        let Some(key) = Self::stream_key(session, &first_string(cmd)) else {
            return;
        };
        // This worker's pull of the name holds it in the registry: the publisher here takes
        // it over, as on a lone node (the pull gives the name back before the claim).
        if self.live.get(&*key).is_some_and(|s| s.relay.pull.is_some()) {
            self.end_pull(&key);
        }
        let Some(session) = self.sessions.get_mut(conn) else {
            return;
        };
        let Some(relay) = &mut self.relay else {
            return;
        };
        self.next_request += 1;
        let request = RequestId(self.next_request);
        session.awaiting = Some(request);
        relay.claims.insert(
            request,
            Claim {
                conn,
                stream_id,
                cmd: cmd.clone(),
                key: key.clone(),
            },
        );
        self.outputs.push_back(Output::Relay(RelayOut::Claim {
            request,
            stream: key,
        }));
    }

    /// The registry answered a claim.
    fn claimed(&mut self, now: Instant, request: RequestId, granted: bool) {
        let Some(claim) = self.relay.as_mut().and_then(|r| r.claims.remove(&request)) else {
            return;
        };
        let Claim {
            conn,
            stream_id,
            cmd,
            key,
        } = claim;
        let waiting = self
            .sessions
            .get(conn)
            .is_some_and(|s| s.awaiting == Some(request));
        if !waiting {
            // The publisher left meanwhile: the name goes back at once.
            if granted {
                self.release(key);
            }
            return;
        }
        if let Some(session) = self.sessions.get_mut(conn) {
            session.awaiting = None;
        }
        let name = first_string(&cmd);
        let problem = if granted {
            // Checked again: another publish here may have taken the name meanwhile.
            self.publish_problem(conn, stream_id, &name, publish_mode(&cmd))
        } else {
            Some(format!("{name} is already being published."))
        };
        match problem {
            Some(problem) => {
                if granted {
                    self.release(key);
                }
                self.status(
                    conn,
                    stream_id,
                    "error",
                    "NetStream.Publish.BadName",
                    &problem,
                );
            }
            None => {
                // The registry says the name is ours: a remote publisher we still know of has
                // withdrawn, and its withdraw is on its way.
                if self.live.get(&*key).is_some_and(|s| s.remote.is_some()) {
                    self.end_remote(&key);
                }
                self.go_live(conn, stream_id, &cmd);
            }
        }
        // Messages that arrived meanwhile are read now.
        self.decode_messages(now, conn);
        self.acknowledge(conn);
    }

    /// Gives the name `key` back to the registry.
    pub(in crate::server) fn release(&mut self, key: Arc<str>) {
        self.outputs
            .push_back(Output::Relay(RelayOut::Release { stream: key }));
    }

    /// A local publication went live: the other workers hear of it.
    pub(super) fn announce(&mut self, key: &Arc<str>, name: &str) {
        let Some(relay) = &mut self.relay else {
            return;
        };
        let publication = relay.next();
        if let Some(stream) = self.live.get_mut(&**key) {
            stream.publication = publication;
            stream.subscribers.clear();
        }
        self.relay_send(
            RelayTarget::All,
            RelayMessage::Announce {
                stream: key.clone(),
                name: name.to_owned(),
                publication,
            },
        );
    }

    /// A local publication ended: the other workers hear of it, and the name goes back to the
    /// registry.
    pub(super) fn withdraw(&mut self, key: &Arc<str>) {
        if self.relay.is_none() {
            return;
        }
        self.unannounce(key);
        self.release(key.clone());
    }

    /// A publication here (a local publisher's, or a pull's) ended: the other workers hear of
    /// it, and the subscriptions to it are over.
    pub(in crate::server) fn unannounce(&mut self, key: &Arc<str>) {
        if self.relay.is_none() {
            return;
        }
        if let Some(stream) = self.live.get_mut(&**key) {
            stream.subscribers.clear();
        }
        self.relay_send(
            RelayTarget::All,
            RelayMessage::Withdraw {
                stream: key.clone(),
            },
        );
    }

    /// A published message goes to every subscribed worker: one relay message each, sharing
    /// the payload and the encodings made so far.
    pub(super) fn relay_media(&mut self, key: &Arc<str>, shared: &SharedMessage, metadata: bool) {
        if self.relay.is_none() {
            return; // a lone node: no second lookup on the hot path
        }
        let Some(stream) = self.live.get(&**key) else {
            return;
        };
        for &worker in &stream.subscribers {
            self.outputs.push_back(Output::Relay(RelayOut::Send {
                to: RelayTarget::Worker(worker),
                message: RelayMessage::Media {
                    stream: key.clone(),
                    media: RelayedMedia::from_shared(shared, metadata),
                },
            }));
        }
    }

    /// Another worker has players of a local publication: it gets the marker, the catch-up
    /// (metadata, configurations, GOP), then every message.
    fn subscribed_by(
        &mut self,
        from: WorkerId,
        key: &Arc<str>,
        publication: u64,
        subscription: u64,
    ) {
        let Some(stream) = self.live.get_mut(&**key) else {
            return;
        };
        // A local publisher's publication, or the stream of this worker's pull.
        let published = stream.publisher.is_some() || stream.relay.pulled;
        if !published || stream.publication != publication || stream.subscribers.contains(&from) {
            return; // a publication that is over, or a repeat
        }
        stream.subscribers.push(from);
        self.audience_joined(key);
        self.pull_subscribed(key);
        let Some(stream) = self.live.get(&**key) else {
            return;
        };
        let to = RelayTarget::Worker(from);
        self.outputs.push_back(Output::Relay(RelayOut::Send {
            to,
            message: RelayMessage::Subscribed {
                stream: key.clone(),
                subscription,
            },
        }));
        let metadata = stream.metadata.iter().map(|m| (m, true));
        let rest = stream
            .configs
            .iter()
            .map(|c| &c.message)
            .chain(stream.gop.iter())
            .map(|m| (m, false));
        for (shared, metadata) in metadata.chain(rest) {
            self.outputs.push_back(Output::Relay(RelayOut::Send {
                to,
                message: RelayMessage::Media {
                    stream: key.clone(),
                    media: RelayedMedia::from_shared(shared, metadata),
                },
            }));
        }
    }

    fn unsubscribed_by(&mut self, from: WorkerId, key: &Arc<str>, publication: u64) {
        if let Some(stream) = self.live.get_mut(&**key) {
            let published = stream.publisher.is_some() || stream.relay.pulled;
            if published && stream.publication == publication {
                stream.subscribers.retain(|w| *w != from);
                // The other worker's players counted as the pull's: the idle time may start.
                self.pull_player_left(key);
            }
        }
    }

    // --- The playing side ----------------------------------------------------------------

    /// Another worker's publication went live: the stream is live here, with a remote
    /// publisher.
    fn remote_announced(&mut self, from: WorkerId, key: Arc<str>, name: &str, publication: u64) {
        match self.live.get(&*key) {
            // The registry never grants a name twice; a local publisher keeps it regardless.
            Some(stream) if stream.publisher.is_some() => return,
            // A newer publication than the one known (its withdraw may still be on its way
            // from another worker): that one is over.
            Some(stream) if stream.remote.is_some() => self.end_remote(&key),
            _ => {}
        }
        // The other worker's publisher takes the name from a pull that fed it here.
        self.end_pull(&key);
        let stream = self.live.entry(key.clone()).or_default();
        stream.remote = Some(RemotePublisher {
            worker: from,
            publication,
            subscription: Subscription::None,
        });
        self.notify_published(&key, bare_stream_name(name));
        self.subscribe_if_remote(&key);
    }

    fn remote_withdrawn(&mut self, from: WorkerId, key: &Arc<str>) {
        let ours = self
            .live
            .get(&**key)
            .and_then(|s| s.remote)
            .is_some_and(|r| r.worker == from);
        if ours {
            self.end_remote(key);
        }
    }

    /// The remote publication of `key` is over (withdrawn or replaced).
    fn end_remote(&mut self, key: &Arc<str>) {
        if let Some(stream) = self.live.get_mut(&**key) {
            stream.remote = None;
        }
        self.end_publication(key);
    }

    /// A player joined `key`: if it is published on another worker and this worker is not
    /// subscribed yet, it subscribes.
    pub(super) fn subscribe_if_remote(&mut self, key: &Arc<str>) {
        let Some(relay) = &mut self.relay else {
            return;
        };
        let Some(stream) = self.live.get_mut(&**key) else {
            return;
        };
        let Some(remote) = &mut stream.remote else {
            return;
        };
        if (stream.players.is_empty() && stream.flv_players.is_empty())
            || remote.subscription != Subscription::None
        {
            return;
        }
        let subscription = relay.next();
        remote.subscription = Subscription::Pending(subscription);
        let (worker, publication) = (remote.worker, remote.publication);
        self.relay_send(
            RelayTarget::Worker(worker),
            RelayMessage::Subscribe {
                stream: key.clone(),
                publication,
                subscription,
            },
        );
    }

    /// The last player of `key` left: if it is published on another worker, this worker
    /// unsubscribes and forgets the cache (a later subscription brings a fresh catch-up).
    pub(super) fn unsubscribe_if_remote(&mut self, key: &Arc<str>) {
        let Some(stream) = self.live.get_mut(&**key) else {
            return;
        };
        let Some(remote) = &mut stream.remote else {
            return;
        };
        if !stream.players.is_empty()
            || !stream.flv_players.is_empty()
            || remote.subscription == Subscription::None
        {
            return;
        }
        remote.subscription = Subscription::None;
        let (worker, publication) = (remote.worker, remote.publication);
        self.gop_total -= stream.clear_cache();
        self.relay_send(
            RelayTarget::Worker(worker),
            RelayMessage::Unsubscribe {
                stream: key.clone(),
                publication,
            },
        );
    }

    fn subscription_started(&mut self, from: WorkerId, key: &Arc<str>, subscription: u64) {
        if let Some(remote) = self.live.get_mut(&**key).and_then(|s| s.remote.as_mut()) {
            if remote.worker == from && remote.subscription == Subscription::Pending(subscription) {
                remote.subscription = Subscription::Active;
            }
        }
    }

    /// A message of a remote publication: delivered to the players here as if it had been
    /// published here (and cached for late players).
    fn remote_media(&mut self, from: WorkerId, key: &Arc<str>, media: RelayedMedia) {
        let active = self
            .live
            .get(&**key)
            .and_then(|s| s.remote)
            .is_some_and(|r| r.worker == from && r.subscription == Subscription::Active);
        if !active {
            return; // raced an unsubscription, or from a publication that is over
        }
        let RelayedMedia {
            mut shared,
            metadata,
        } = media;
        self.deliver(key, &mut shared, metadata);
    }
}
