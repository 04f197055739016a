//! The per-connection threads and the messages they exchange with the node thread: a reader
//! that blocks in `read` and forwards the bytes, and a writer that blocks in `write` on the
//! batches the node thread hands it and reports how many bytes the kernel took.

use std::io::{self, IoSlice, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::mpsc::{Receiver, SyncSender};
use std::sync::Arc;
use std::thread::{self, JoinHandle};

use bytes::{Bytes, BytesMut};
use siprtmp_core::node::ConnId;
use smallvec::SmallVec;

use crate::read_pace::{PacedSocket, ReadPace};

/// Read buffer granularity: one allocation serves many reads. Each connection's reader thread
/// keeps one such block resident (zeroed, so touched), unlike mio's one buffer per node: 16 KiB
/// rather than 64 keeps an idle call or player 48 KiB smaller, at one allocation per 16 KiB
/// received and at most 16 KiB per read.
const READ_CHUNK: usize = 16 * 1024;
/// Stack of a reader or writer thread: their buffers live on the heap, so a small stack keeps
/// thousands of connections affordable.
const WORKER_STACK: usize = 256 * 1024;

/// What the other threads tell the node thread.
pub(crate) enum Message {
    /// An acceptor thread accepted a connection (on the RTMPS listener if the flag says so).
    Accepted(TcpStream, SocketAddr, bool),
    /// A reader thread read bytes.
    Received(ConnId, BytesMut),
    /// A reader thread saw end of stream or an error.
    Closed(ConnId),
    /// A writer thread wrote a whole batch of this many bytes.
    Drained(ConnId, usize),
    /// A writer thread failed to write (the peer is gone).
    WriteFailed(ConnId),
    /// Wake up and look at the stop flag.
    Stop,
    /// An executor (files, UDP, the node's TCP) has completions or data: take a turn to feed
    /// them in.
    Executors,
}

/// What the node thread asks a writer thread to do.
pub(crate) enum Job {
    /// Write all of it (blocking), then report [`Message::Drained`].
    Write(Batch),
    /// Write what goes without blocking, then shut the connection down and exit.
    Close(Batch),
}

/// Segments from the front of a connection's queue, shared with the node (each one a
/// reference-count increment, never a copy of the bytes), and their total length.
#[derive(Default)]
pub(crate) struct Batch {
    segments: SmallVec<[Bytes; BATCH_INLINE]>,
    len: usize,
}

/// Segments a batch holds without a heap allocation: a turn's worth of media messages for one
/// player at steady state.
const BATCH_INLINE: usize = 32;

impl Batch {
    /// Appends a segment.
    pub(crate) fn push(&mut self, segment: Bytes) {
        self.len += segment.len();
        self.segments.push(segment);
    }

    /// Total bytes.
    pub(crate) fn len(&self) -> usize {
        self.len
    }

    /// The segments, front first.
    #[cfg(test)]
    pub(crate) fn segments(&self) -> impl Iterator<Item = &Bytes> {
        self.segments.iter()
    }

    /// True when it holds no bytes.
    pub(crate) fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Writes every byte (blocking), one `writev` per call of the kernel.
    fn write_all(&self, mut stream: &TcpStream) -> io::Result<()> {
        let mut slices: SmallVec<[IoSlice<'_>; BATCH_INLINE]> =
            self.segments.iter().map(|s| IoSlice::new(s)).collect();
        let mut rest = &mut slices[..];
        while !rest.is_empty() {
            match stream.write_vectored(rest) {
                Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                Ok(n) => IoSlice::advance_slices(&mut rest, n),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }

    /// One vectored write of what goes without blocking (the caller made the socket
    /// non-blocking).
    fn write_once(&self, mut stream: &TcpStream) {
        let slices: SmallVec<[IoSlice<'_>; BATCH_INLINE]> =
            self.segments.iter().map(|s| IoSlice::new(s)).collect();
        let _ = stream.write_vectored(&slices);
    }
}

/// Starts the reader thread of `conn`. The reader, the writer and the node thread share one
/// socket (`&TcpStream` reads and writes), so a connection costs one descriptor, not a
/// duplicate for each thread: a server short of descriptors either accepts a connection whole
/// or leaves it in the backlog, never accepts it and then drops it for want of a duplicate.
/// The reader waits in each read as `pace` says (see [`ReadPace`]).
pub(crate) fn spawn_reader(
    conn: ConnId,
    stream: Arc<TcpStream>,
    tx: SyncSender<Message>,
    pace: Arc<ReadPace>,
) -> io::Result<JoinHandle<()>> {
    thread::Builder::new()
        .name(format!("rtmp-read-{conn}"))
        .stack_size(WORKER_STACK)
        .spawn(move || read_loop(conn, stream, tx, &pace))
}

/// Starts the writer thread of `conn`.
pub(crate) fn spawn_writer(
    conn: ConnId,
    stream: Arc<TcpStream>,
    jobs: Receiver<Job>,
    tx: SyncSender<Message>,
) -> io::Result<JoinHandle<()>> {
    thread::Builder::new()
        .name(format!("rtmp-write-{conn}"))
        .stack_size(WORKER_STACK)
        .spawn(move || write_loop(conn, stream, jobs, tx))
}

fn read_loop(conn: ConnId, stream: Arc<TcpStream>, tx: SyncSender<Message>, pace: &ReadPace) {
    // Kept initialised to its full length, so it is zeroed once per READ_CHUNK received, not
    // once per read.
    let mut buf = BytesMut::zeroed(READ_CHUNK);
    let mut socket = PacedSocket::new();
    loop {
        if buf.len() < READ_CHUNK / 4 {
            buf = BytesMut::zeroed(READ_CHUNK);
        }
        // A paced publisher's read waits for its tick (or much data): see `read_pace`.
        if let Err(e) = socket.prepare(&stream, pace) {
            tracing::debug!("{conn}: socket options for a paced read: {e}");
        }
        match (&*stream).read(&mut buf) {
            Ok(0) => break,
            Ok(n) => {
                socket.read(true);
                // Blocks while the node thread is behind: a fast publisher waits here, so the
                // channel, not memory, absorbs the difference.
                if tx.send(Message::Received(conn, buf.split_to(n))).is_err() {
                    return;
                }
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) if socket.timed_out(&e) => socket.read(false),
            Err(e) => {
                tracing::debug!("{conn}: read error: {e}");
                break;
            }
        }
    }
    let _ = tx.send(Message::Closed(conn));
}

fn write_loop(conn: ConnId, stream: Arc<TcpStream>, jobs: Receiver<Job>, tx: SyncSender<Message>) {
    // Ends when the node thread drops the job sender (connection removed or shutdown).
    while let Ok(job) = jobs.recv() {
        match job {
            Job::Write(batch) => match batch.write_all(&stream) {
                Ok(()) => {
                    if tx.send(Message::Drained(conn, batch.len())).is_err() {
                        return;
                    }
                }
                Err(e) => {
                    tracing::debug!("{conn}: write error: {e}");
                    let _ = tx.send(Message::WriteFailed(conn));
                    return;
                }
            },
            Job::Close(last) => {
                // Non-blocking for this last write only: a closing peer that does not read
                // must not keep the thread. The reader is about to be shut down anyway.
                if !last.is_empty() && stream.set_nonblocking(true).is_ok() {
                    last.write_once(&stream);
                }
                let _ = stream.shutdown(std::net::Shutdown::Both);
                return;
            }
        }
    }
}
