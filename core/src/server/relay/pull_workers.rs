//! Pulls in a group of workers (`--workers N`): a name is pulled once per server, not once
//! per worker (see the protocol in [`crate::worker_relay`]). The worker that would open a
//! pull claims the name from the group's registry first, as a publish does; the one granted
//! it pulls, announces the stream to the other workers while the upstream's is live (so their
//! players subscribe to it as to a remote publication), counts the subscribed workers as
//! players when it decides to close the pull, and gives the name back when the pull is over,
//! saying so to the others ([`RelayMessage::PullEnded`]). A worker refused the name keeps its
//! players waiting for the owner's announce, and pulls for them itself once the owner's pull
//! is over, unless no upstream had the stream.

use std::sync::Arc;

use super::super::RtmpServer;
use crate::decision::RequestId;
use crate::io::{Output, RelayDirection};
use crate::worker_relay::{RelayMessage, RelayOut, RelayTarget};

/// How a pull ended, for what the other workers are told.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(in crate::server) enum PullEnd {
    /// Idle, failed with nobody waiting, refused...: the name is free for another pull.
    #[default]
    Over,
    /// No upstream has the stream.
    NotFound,
    /// A publisher on this worker takes the name over: it announces it itself.
    Taken,
}

impl RtmpServer {
    /// A player here wants `key`, which nobody publishes and no pull of this worker feeds,
    /// in an application that pulls: the registry is asked for the name (one claim at a
    /// time), and the player waits for the answer, or for the announce of the worker that
    /// pulls it already. (A player that comes while another worker holds the name asks again:
    /// the registry, not what this worker last heard, knows whether that is still so.)
    pub(super) fn pull_claim(&mut self, key: &Arc<str>) {
        let stream = self.live.entry(key.clone()).or_default();
        if stream.relay.claiming {
            return;
        }
        let Some(relay) = &mut self.relay else {
            return;
        };
        stream.relay.claiming = true;
        self.next_request += 1;
        let request = RequestId(self.next_request);
        relay.pull_claims.insert(request, key.clone());
        self.outputs.push_back(Output::Relay(RelayOut::Claim {
            request,
            stream: key.clone(),
        }));
    }

    /// The registry answered claim `request`: false if it was not a pull's (a publish's).
    /// Granted, the pull opens if players still wait for it (or the name goes back);
    /// refused, another worker pulls or publishes it, and the players here wait for its
    /// announce.
    pub(in crate::server) fn pull_claimed(&mut self, request: RequestId, granted: bool) -> bool {
        let Some(key) = self
            .relay
            .as_mut()
            .and_then(|r| r.pull_claims.remove(&request))
        else {
            return false;
        };
        let (waiting, taken) = match self.live.get_mut(&*key) {
            Some(stream) => {
                let waiting = stream.relay.claiming;
                stream.relay.claiming = false;
                (waiting, stream.is_live() || stream.relay.pull.is_some())
            }
            None => (false, false),
        };
        if !granted {
            return true; // the players wait for the announce of the worker that holds it
        }
        let targets = key
            .split_once('/')
            .and_then(|(app, _)| self.config.apps.get(app))
            .map(|app| app.pull.clone())
            .unwrap_or_default();
        if !waiting || taken || targets.is_empty() || !self.pull_has_players(&key) {
            self.release(key.clone());
            if self.live.get(&*key).is_some_and(|s| s.is_unused()) {
                self.live.remove(&*key);
            }
            return true;
        }
        let name = key.split_once('/').map_or("", |(_, n)| n).to_owned();
        match self.relay_open(&key, &name, RelayDirection::Pull, targets) {
            Some(id) => {
                if let Some(stream) = self.live.get_mut(&*key) {
                    stream.relay.pull = Some(id);
                }
            }
            None => {
                // Refused for the limits (said in an event): the players hear what a lone
                // node's would have, and the name goes back.
                self.release(key.clone());
                self.players_not_found(&key, &name);
            }
        }
        true
    }

    /// This worker's pull of `key` went live: the other workers hear of it as of a
    /// publication.
    pub(super) fn pull_announce(&mut self, key: &Arc<str>, name: &str) {
        self.announce(key, name);
    }

    /// This worker's pull of `key` lost its upstream's stream (it may come back): the other
    /// workers hear the publication ended; the name stays this worker's.
    pub(super) fn pull_unannounce(&mut self, key: &Arc<str>) {
        self.unannounce(key);
    }

    /// This worker's pull of `key` is over: the name goes back, and the other workers hear
    /// how it ended.
    pub(super) fn pull_release(&mut self, key: &Arc<str>, end: PullEnd) {
        if self.relay.is_none() {
            return;
        }
        self.release(key.clone());
        if end == PullEnd::Taken {
            return;
        }
        self.outputs.push_back(Output::Relay(RelayOut::Send {
            to: RelayTarget::All,
            message: RelayMessage::PullEnded {
                stream: key.clone(),
                not_found: end == PullEnd::NotFound,
            },
        }));
    }

    /// Another worker's pull of `key` is over: the players here waiting for it are told the
    /// stream does not exist, or this worker pulls it for them.
    pub(in crate::server) fn remote_pull_ended(&mut self, key: &Arc<str>, not_found: bool) {
        let Some(stream) = self.live.get(&**key) else {
            return;
        };
        // Whether the players here were refused the name or joined while the other worker's
        // pull was live, they wait for it now.
        if stream.is_live() || stream.relay.pull.is_some() || stream.relay.claiming {
            return;
        }
        let name = key.split_once('/').map_or("", |(_, n)| n).to_owned();
        if not_found {
            self.players_not_found(key, &name);
            if self.live.get(&**key).is_some_and(|s| s.is_unused()) {
                self.live.remove(&**key);
            }
        } else if self.pull_has_players(key) {
            self.pull_for_player(key);
        } else if self.live.get(&**key).is_some_and(|s| s.is_unused()) {
            self.live.remove(&**key);
        }
    }

    /// Another worker subscribed to the stream of this worker's pull `key`: the pull has a
    /// player again.
    pub(in crate::server) fn pull_subscribed(&mut self, key: &str) {
        if let Some(id) = self.live.get(key).and_then(|s| s.relay.pull) {
            self.pull_keep(id);
        }
    }
}
