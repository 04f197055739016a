//! [`RelayLink`]: one worker's end of the relay between the nodes of a group
//! ([`siprtmp_core::worker_relay`]): a channel per worker, the group's registry of published names,
//! and a wake-up per worker.
//!
//! The node's relay outputs are carried out on the worker's own thread: a claim or release
//! locks the registry (once per publish, never per packet), a message is one channel send per
//! receiving worker. A relayed media message moves as it is (its payload `Bytes` and chunk
//! encodings are reference-counted, never copied). A receiver is woken at most once per batch:
//! the first message that finds its `pending` flag clear sets it and wakes the worker, which
//! clears the flag before it drains its channel, so no message is left waiting unseen.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{channel, Receiver, Sender};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Instant;

use siprtmp_core::node::{Input, Node, RelayIn, RelayOut, WorkerId};
use siprtmp_core::worker_relay::{RelayMessage, RelayTarget};

/// Relay messages fed to the node per turn; past this the worker wakes itself to take another
/// turn (so a flood from other workers cannot starve its own sockets).
const FEED_BATCH: usize = 4096;

type Wake = Box<dyn Fn() + Send + Sync>;

/// What a worker's link shares with the others: where to send to each worker, and the names
/// published in the group.
struct Hub {
    registry: Mutex<HashMap<Arc<str>, WorkerId>>,
    workers: Vec<Mailbox>,
}

/// The way into one worker.
struct Mailbox {
    tx: Sender<(WorkerId, RelayMessage)>,
    /// Set once a message waits and the worker has been woken for it.
    pending: AtomicBool,
    /// Wakes the worker's event loop (set when its driver is built).
    wake: OnceLock<Wake>,
}

impl Mailbox {
    fn deliver(&self, from: WorkerId, message: RelayMessage) {
        // A closed channel is a worker that has stopped: nobody left to tell.
        if self.tx.send((from, message)).is_ok() && !self.pending.swap(true, Ordering::AcqRel) {
            if let Some(wake) = self.wake.get() {
                wake();
            }
        }
    }
}

/// One worker's end of the relay of a group.
///
/// ```
/// use std::time::Instant;
/// use siprtmp_core::node::{Node, NodeConfig};
/// use siprtmp_runtime_common::RelayLink;
/// let mut links = RelayLink::group(2);
/// let now = Instant::now();
/// let mut node = Node::new(NodeConfig::default(), now, 1).with_relay(links[0].worker());
/// links[0].set_waker(|| {});
/// assert_eq!(links[0].feed(&mut node, now), 0); // nothing sent to worker 0 yet
/// ```
pub struct RelayLink {
    me: WorkerId,
    hub: Arc<Hub>,
    inbox: Receiver<(WorkerId, RelayMessage)>,
}

impl RelayLink {
    /// The links of a group of `count` workers (at most 256), worker `i` at index `i`.
    pub fn group(count: usize) -> Vec<RelayLink> {
        assert!(count <= 256, "a group has at most 256 workers");
        let (txs, rxs): (Vec<_>, Vec<_>) = (0..count).map(|_| channel()).unzip();
        let hub = Arc::new(Hub {
            registry: Mutex::new(HashMap::new()),
            workers: txs
                .into_iter()
                .map(|tx| Mailbox {
                    tx,
                    pending: AtomicBool::new(false),
                    wake: OnceLock::new(),
                })
                .collect(),
        });
        rxs.into_iter()
            .enumerate()
            .map(|(i, inbox)| RelayLink {
                me: WorkerId(i as u8),
                hub: hub.clone(),
                inbox,
            })
            .collect()
    }

    /// How many workers the group has.
    pub fn workers(&self) -> usize {
        self.hub.workers.len()
    }

    /// This worker's id (give it to [`Node::with_relay`]).
    pub fn worker(&self) -> WorkerId {
        self.me
    }

    /// How other workers wake this one's event loop when they send it something; it must not
    /// block and must tolerate being called after the loop has gone. Set once, before the
    /// loop runs (later calls are ignored).
    pub fn set_waker(&self, wake: impl Fn() + Send + Sync + 'static) {
        let mailbox = &self.hub.workers[self.me.0 as usize];
        let _ = mailbox.wake.set(Box::new(wake));
        // Messages may have arrived before the waker existed: look at once.
        if mailbox.pending.load(Ordering::Acquire) {
            if let Some(wake) = mailbox.wake.get() {
                wake();
            }
        }
    }

    /// Feeds the messages other workers sent into `node`; returns how many.
    pub fn feed(&mut self, node: &mut Node, now: Instant) -> usize {
        let mailbox = &self.hub.workers[self.me.0 as usize];
        // Cleared before draining: a message sent after the drain wakes the loop again.
        mailbox.pending.store(false, Ordering::Release);
        let mut fed = 0;
        while fed < FEED_BATCH {
            let Ok((from, message)) = self.inbox.try_recv() else {
                return fed;
            };
            node.handle(now, Input::Relay(RelayIn::Received { from, message }));
            fed += 1;
        }
        // More may wait: come back for them on the next turn.
        if !mailbox.pending.swap(true, Ordering::AcqRel) {
            if let Some(wake) = mailbox.wake.get() {
                wake();
            }
        }
        fed
    }

    /// Carries out one of the node's relay outputs (a claim is answered at once).
    pub fn execute(&mut self, node: &mut Node, now: Instant, out: RelayOut) {
        match out {
            RelayOut::Claim { request, stream } => {
                let granted = {
                    let mut registry = self.registry();
                    let free = !registry.contains_key(&stream);
                    if free {
                        registry.insert(stream, self.me);
                    }
                    free
                };
                node.handle(now, Input::Relay(RelayIn::Claimed { request, granted }));
            }
            RelayOut::Release { stream } => {
                let mut registry = self.registry();
                if registry.get(&stream) == Some(&self.me) {
                    registry.remove(&stream);
                }
            }
            RelayOut::Send {
                to: RelayTarget::Worker(worker),
                message,
            } => {
                if let Some(mailbox) = self.hub.workers.get(worker.0 as usize) {
                    mailbox.deliver(self.me, message);
                }
            }
            RelayOut::Send {
                to: RelayTarget::All,
                message,
            } => {
                for (i, mailbox) in self.hub.workers.iter().enumerate() {
                    if i != self.me.0 as usize {
                        mailbox.deliver(self.me, message.clone());
                    }
                }
            }
        }
    }

    fn registry(&self) -> std::sync::MutexGuard<'_, HashMap<Arc<str>, WorkerId>> {
        // A worker that panicked while holding the lock left the map consistent (every
        // update is a single insert or remove).
        self.hub
            .registry
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

/// What a host without a link does with a relay output: a claim is granted (a lone node owns
/// every name), anything else is dropped.
pub(crate) fn without_link(node: &mut Node, now: Instant, out: RelayOut) {
    if let RelayOut::Claim { request, .. } = out {
        node.handle(
            now,
            Input::Relay(RelayIn::Claimed {
                request,
                granted: true,
            }),
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use siprtmp_core::node::{NodeConfig, Output};
    use std::sync::atomic::AtomicUsize;

    #[test]
    fn a_message_wakes_the_receiver_once_per_batch_and_is_fed_in_order() {
        let mut links = RelayLink::group(2);
        let wakes = Arc::new(AtomicUsize::new(0));
        let counter = wakes.clone();
        links[1].set_waker(move || {
            counter.fetch_add(1, Ordering::SeqCst);
        });
        let now = Instant::now();
        let mut a = Node::new(NodeConfig::default(), now, 1).with_relay(WorkerId(0));
        let mut b = Node::new(NodeConfig::default(), now, 2).with_relay(WorkerId(1));
        for i in 0..3 {
            let message = RelayMessage::Withdraw {
                stream: format!("live/{i}").into(),
            };
            let out = RelayOut::Send {
                to: RelayTarget::All,
                message,
            };
            links[0].execute(&mut a, now, out);
        }
        assert_eq!(wakes.load(Ordering::SeqCst), 1, "one wake for the batch");
        assert_eq!(links[1].feed(&mut b, now), 3);
        assert_eq!(links[0].feed(&mut a, now), 0, "not sent to the sender");
        let out = RelayOut::Send {
            to: RelayTarget::Worker(WorkerId(1)),
            message: RelayMessage::Withdraw {
                stream: "live/x".into(),
            },
        };
        links[0].execute(&mut a, now, out);
        assert_eq!(
            wakes.load(Ordering::SeqCst),
            2,
            "woken again after draining"
        );
    }

    #[test]
    fn the_registry_grants_a_name_once_until_its_holder_releases_it() {
        let mut links = RelayLink::group(2);
        let now = Instant::now();
        let mut nodes: Vec<Node> = (0..2)
            .map(|w| Node::new(NodeConfig::default(), now, w).with_relay(WorkerId(w as u8)))
            .collect();
        let claim = |request| RelayOut::Claim {
            request: siprtmp_core::node::RequestId(request),
            stream: "live/cam".into(),
        };
        // The nodes ignore answers to claims they never made; the registry's state is what
        // is checked here.
        links[0].execute(&mut nodes[0], now, claim(1));
        links[1].execute(&mut nodes[1], now, claim(2));
        let holder = links[0].registry().get("live/cam").copied();
        assert_eq!(holder, Some(WorkerId(0)));
        // Only the holder's release frees it.
        let release = || RelayOut::Release {
            stream: "live/cam".into(),
        };
        links[1].execute(&mut nodes[1], now, release());
        assert!(links[0].registry().contains_key("live/cam"));
        links[0].execute(&mut nodes[0], now, release());
        assert!(links[0].registry().is_empty());
        links[1].execute(&mut nodes[1], now, claim(3));
        assert_eq!(links[1].registry().get("live/cam"), Some(&WorkerId(1)));
        for node in &mut nodes {
            while let Some(out) = node.poll_output() {
                assert!(!matches!(out, Output::Relay(_)));
            }
        }
    }
}
