//! [`ConnWakers`]: the two wakers a waker-based runtime (tokio, async-std) holds for one
//! connection, each posting a [`SocketReady`] to the node task when the runtime calls it.
//!
//! The node task never awaits a single socket: it polls a read or write with the connection's
//! waker, and on `Pending` the runtime keeps that waker until the socket is ready again. The
//! waker then only says which connection is ready for what; the driver supplies how to tell
//! the node task (a channel send), and the node task reads ([`crate::NodeReads`]) or resumes
//! the write ([`crate::NodeHost::writable`]).

use std::sync::Arc;
use std::task::{Wake, Waker};

use siprtmp_core::node::ConnId;

/// A connection the runtime found ready.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SocketReady {
    /// The connection's socket may have bytes to read (or EOF, or an error): the node task
    /// reads from it again.
    Readable(ConnId),
    /// The connection's socket may take more bytes: the node task resumes the write that
    /// stopped on `Pending`.
    Writable(ConnId),
}

/// A connection's readable and writable wakers.
#[derive(Debug, Clone)]
pub struct ConnWakers {
    /// The waker to poll reads with; wakes with [`SocketReady::Readable`].
    pub readable: Waker,
    /// The waker to poll writes with; wakes with [`SocketReady::Writable`].
    pub writable: Waker,
}

impl ConnWakers {
    /// Wakers for `conn` that call `post` with what became ready. `post` must not block (it
    /// runs wherever the runtime wakes tasks); a closed channel behind it is to be ignored:
    /// the node task is gone.
    pub fn new<F>(conn: ConnId, post: F) -> Self
    where
        F: Fn(SocketReady) + Clone + Send + Sync + 'static,
    {
        let waker = |ready| {
            Waker::from(Arc::new(PostReady {
                ready,
                post: post.clone(),
            }))
        };
        Self {
            readable: waker(SocketReady::Readable(conn)),
            writable: waker(SocketReady::Writable(conn)),
        }
    }
}

/// One waker: posts `ready` each time it is woken.
struct PostReady<F> {
    ready: SocketReady,
    post: F,
}

impl<F: Fn(SocketReady) + Send + Sync + 'static> Wake for PostReady<F> {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        (self.post)(self.ready);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::mpsc;

    #[test]
    fn each_waker_posts_its_connection_and_what_became_ready() {
        let (tx, rx) = mpsc::channel();
        let wakers = ConnWakers::new(ConnId(7), move |ready| {
            let _ = tx.send(ready);
        });
        let ConnWakers { readable, writable } = wakers;
        writable.wake_by_ref();
        readable.wake_by_ref();
        readable.wake();
        let posted: Vec<SocketReady> = rx.try_iter().collect();
        assert_eq!(
            posted,
            vec![
                SocketReady::Writable(ConnId(7)),
                SocketReady::Readable(ConnId(7)),
                SocketReady::Readable(ConnId(7)),
            ]
        );
    }
}
