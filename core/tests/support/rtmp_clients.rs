//! RTMP clients of a node in memory ([`MemoryNet`]), set up the way most tests need them:
//! connected to an application with a stream created, publishing or playing on it. A test's
//! fixture says where its node is and how it moves bytes by implementing [`Driven`]; the
//! set-up steps are that trait's provided methods. [`InMemory`] is the fixture of the tests
//! that need nothing more than a node and the time (they add their own methods to it).

use std::time::Instant;

use siprtmp_core::node::{Node, NodeConfig};
use siprtmp_core::rtmp::client::ClientEvent;
use siprtmp_core::testkit::MemoryNet;

/// A node in memory, with its clients, and the virtual time.
pub(crate) struct InMemory {
    pub net: MemoryNet,
    pub now: Instant,
}

impl InMemory {
    /// A node configured by `config`, its random choices seeded with `seed`, from now on.
    pub(crate) fn start(config: NodeConfig, seed: u64) -> Self {
        let now = Instant::now();
        Self {
            net: MemoryNet::new(Node::new(config, now, seed)),
            now,
        }
    }

    /// Everything client `c` has seen.
    pub(crate) fn events(&self, c: usize) -> &[ClientEvent] {
        self.net.events(c)
    }

    /// The status codes client `c` was sent, in order.
    pub(crate) fn statuses(&self, c: usize) -> Vec<String> {
        self.net.statuses(c)
    }

    /// The media client `c` received: (type, timestamp, payload).
    pub(crate) fn media(&self, c: usize) -> Vec<(u8, u32, Vec<u8>)> {
        self.net.media(c)
    }
}

impl Driven for InMemory {
    fn node(&mut self) -> (&mut MemoryNet, Instant) {
        (&mut self.net, self.now)
    }
}

/// A node in memory that a test drives.
pub(crate) trait Driven {
    /// The network of the node (and its clients) the set-up is for, and the virtual time now.
    fn node(&mut self) -> (&mut MemoryNet, Instant);

    /// Moves bytes until quiet: the node's network, unless the fixture carries more (other
    /// workers, arrival times).
    fn pump(&mut self) {
        let (net, now) = self.node();
        net.pump(now);
    }

    /// A client connected to `app` with one stream created: (client index, stream id).
    fn client_with_stream(&mut self, app: &str) -> (usize, u32) {
        let (net, now) = self.node();
        let c = net.connect(now, app);
        self.pump();
        let (net, _) = self.node();
        assert!(
            net.events(c).contains(&ClientEvent::Connected),
            "connected to {app}: {:?}",
            net.events(c)
        );
        net.clients[c].client.create_stream();
        self.pump();
        let (net, _) = self.node();
        let id = net
            .events(c)
            .iter()
            .find_map(|e| match e {
                ClientEvent::StreamCreated(id) => Some(*id),
                _ => None,
            })
            .expect("stream created at once");
        (c, id)
    }

    /// A client publishing `app/name`, told `NetStream.Publish.Start`: (index, stream id).
    fn publisher(&mut self, app: &str, name: &str) -> (usize, u32) {
        let (c, id) = self.client_with_stream(app);
        self.node().0.clients[c].client.publish(id, name);
        self.pump();
        let statuses = self.node().0.statuses(c);
        assert_eq!(
            statuses.last().map(String::as_str),
            Some("NetStream.Publish.Start"),
            "publish {app}/{name}: {statuses:?}"
        );
        (c, id)
    }

    /// A client playing `app/name` as Flash does by default (start -2: live if published,
    /// else the recording, else wait for a publisher): (index, stream id).
    fn player(&mut self, app: &str, name: &str) -> (usize, u32) {
        self.player_from(app, name, -2.0)
    }

    /// A client playing `app/name` from `start` (milliseconds on the wire: -2 and -2000 any,
    /// -1 and -1000 live only, else a position in the recording): (index, stream id).
    fn player_from(&mut self, app: &str, name: &str, start: f64) -> (usize, u32) {
        let (c, id) = self.client_with_stream(app);
        self.node().0.clients[c].client.play(id, name, start);
        self.pump();
        (c, id)
    }
}

/// A node's network and the virtual time, as the simplest tests hold them.
impl Driven for (&mut MemoryNet, Instant) {
    fn node(&mut self) -> (&mut MemoryNet, Instant) {
        (&mut *self.0, self.1)
    }
}
