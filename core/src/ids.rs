//! The ids the node hands out and the driver hands back: connections, decisions, files,
//! sockets, TCP streams and listeners, and workers. A leaf module: every other module may
//! name them without depending on the one that uses them.

/// Identifies one connection for the life of the node (never reused).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ConnId(pub u64);

impl ConnId {
    /// The worker whose node made this id (always worker 0 for a node that is not one of a
    /// group; see [`Node::with_relay`](crate::node::Node::with_relay)).
    ///
    /// ```
    /// use siprtmp_core::ids::ConnId;
    /// use siprtmp_core::ids::WorkerId;
    /// assert_eq!(ConnId(1).worker(), WorkerId(0));
    /// assert_eq!(ConnId((3 << 56) | 1).worker(), WorkerId(3));
    /// ```
    pub fn worker(self) -> WorkerId {
        WorkerId((self.0 >> 56) as u8)
    }
}

impl std::fmt::Display for ConnId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.worker() {
            WorkerId(0) => write!(f, "c{}", self.0),
            worker => write!(f, "{worker}c{}", self.0 & ((1 << 56) - 1)),
        }
    }
}

/// One worker (one node) of a group that shares live streams; at most 256 per group.
///
/// A worker's [`ConnId`]s carry its id in their top byte, so connection
/// ids are unique across the group (see [`ConnId::worker`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct WorkerId(pub u8);

impl std::fmt::Display for WorkerId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "w{}", self.0)
    }
}

/// Identifies one pending decision (never reused).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct RequestId(pub u64);

impl std::fmt::Display for RequestId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "r{}", self.0)
    }
}

/// Identifies one open file of the node (never reused).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct FileId(pub u64);

impl std::fmt::Display for FileId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "f{}", self.0)
    }
}

/// One UDP socket the node asked for, unique for the life of the node.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SocketId(pub u64);

impl std::fmt::Display for SocketId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "u{}", self.0)
    }
}

/// One TCP stream: chosen by the node for its connects, by the driver (top bit set) for
/// accepted connections. Unique for the life of the node.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct StreamId(pub u64);

impl StreamId {
    const ACCEPTED: u64 = 1 << 63;

    /// The id of the `n`th connection a driver accepted.
    pub fn accepted(n: u64) -> StreamId {
        StreamId(n | Self::ACCEPTED)
    }

    /// Whether the driver chose this id (an accepted connection).
    pub fn is_accepted(self) -> bool {
        self.0 & Self::ACCEPTED != 0
    }
}

impl std::fmt::Display for StreamId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.is_accepted() {
            write!(f, "a{}", self.0 & !Self::ACCEPTED)
        } else {
            write!(f, "t{}", self.0)
        }
    }
}

/// One TCP listener the node asked for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ListenerId(pub u64);

impl std::fmt::Display for ListenerId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "l{}", self.0)
    }
}
