//! [`FileExecutor`]: runs the node's file requests ([`siprtmp_core::storage`]) on one
//! background thread per driver instance, never on the event-loop thread, and hands
//! completions back through a channel plus a wake-up callback that each driver supplies in
//! its own terms (the mio driver's `Waker`, a tokio `Notify`, a message on the async-std
//! control channel, a message on the thread driver's node channel).
//!
//! The pattern: a request channel in, one worker thread holding the open files, positional
//! reads and writes (`pread`/`pwrite`), a completion channel out, and one wake per batch of
//! completions. One worker runs every file's requests in order, which meets the contract (in
//! order per file) with room to spare; a slow or full disk only delays completions.

use std::collections::HashMap;
use std::fs::{File, OpenOptions};
use std::io;
use std::path::{Component, Path, PathBuf};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, Sender};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use bytes::Bytes;
use siprtmp_core::node::{Input, Node, Output};
use siprtmp_core::storage::{
    is_safe_relative_path, FileError, FileErrorKind, FileId, FileOp, FileReply, FileRequest,
    OpenMode,
};

use crate::events::EventRouter;

/// Largest single read the executor performs (a request for more is cut to this).
const MAX_READ: usize = 16 * 1024 * 1024;
/// How long a stopping driver waits for file requests (recordings being finished) to
/// complete ([`FileExecutor::finish`]).
pub const SHUTDOWN_FILE_GRACE: Duration = Duration::from_secs(5);
/// Completions sent before one wake-up is forced even if more requests are queued.
const WAKE_BATCH: usize = 64;

/// A completed request.
pub type Completion = (FileId, Result<FileReply, FileError>);

/// The background file executor.
///
/// ```
/// use siprtmp_runtime_common::FileExecutor;
/// use siprtmp_core::storage::{FileId, FileOp, FileReply, FileRequest, OpenMode};
/// let root = std::env::temp_dir().join(format!("siprtmp-doc-{}", std::process::id()));
/// let mut files = FileExecutor::start(root.clone(), || {}).unwrap();
/// let file = FileId(1);
/// files.submit(FileRequest { file, op: FileOp::Open { path: "a/b.flv".into(), mode: OpenMode::Create } });
/// files.submit(FileRequest { file, op: FileOp::Write { offset: 0, data: "FLV".into() } });
/// files.submit(FileRequest { file, op: FileOp::Close });
/// assert!(files.wait_idle(std::time::Duration::from_secs(5)));
/// let done: Vec<_> = std::iter::from_fn(|| files.try_completion()).collect();
/// assert_eq!(done.len(), 3);
/// assert_eq!(done[0].1, Ok(FileReply::Opened { size: 0 }));
/// assert_eq!(std::fs::read(root.join("a/b.flv")).unwrap(), b"FLV");
/// # std::fs::remove_dir_all(root).unwrap();
/// ```
pub struct FileExecutor {
    requests: Option<Sender<FileRequest>>,
    completions: Receiver<Completion>,
    /// Completions received by [`Self::wait_idle`] and not yet taken.
    early: std::collections::VecDeque<Completion>,
    outstanding: usize,
    thread: Option<JoinHandle<()>>,
}

impl FileExecutor {
    /// Starts the worker thread; paths are resolved under `root`; `wake` is called after each
    /// batch of completions.
    pub fn start(root: PathBuf, wake: impl Fn() + Send + 'static) -> io::Result<Self> {
        let (requests, inbox) = mpsc::channel::<FileRequest>();
        let (done, completions) = mpsc::channel();
        let thread = std::thread::Builder::new()
            .name("siprtmp-files".into())
            .spawn(move || worker(root, inbox, done, wake))?;
        Ok(Self {
            requests: Some(requests),
            completions,
            early: Default::default(),
            outstanding: 0,
            thread: Some(thread),
        })
    }

    /// Queues a request (never blocks).
    pub fn submit(&mut self, request: FileRequest) {
        let Some(requests) = &self.requests else {
            return;
        };
        if requests.send(request).is_ok() {
            self.outstanding += 1;
        }
    }

    /// A completion, if one is ready.
    pub fn try_completion(&mut self) -> Option<Completion> {
        let next = self
            .early
            .pop_front()
            .or_else(|| self.completions.try_recv().ok());
        if next.is_some() {
            self.outstanding = self.outstanding.saturating_sub(1);
        }
        next
    }

    /// Requests submitted whose completions have not been taken.
    pub fn outstanding(&self) -> usize {
        self.outstanding
    }

    /// Waits (up to `timeout`) until every submitted request has completed; the completions
    /// stay available to [`Self::try_completion`]. Returns false on timeout.
    pub fn wait_idle(&mut self, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        while self.early.len() < self.outstanding {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.completions.recv_timeout(left) {
                Ok(c) => self.early.push_back(c),
                Err(RecvTimeoutError::Timeout) | Err(RecvTimeoutError::Disconnected) => {
                    return false
                }
            }
        }
        true
    }

    /// Feeds every completion that is ready into `node` as [`Input::FileDone`] (a driver
    /// calls this on each turn of its loop, after the executor's wake-up or any other).
    pub fn feed(&mut self, node: &mut Node, now: Instant) {
        while let Some((file, result)) = self.try_completion() {
            node.handle(now, Input::FileDone { file, result });
        }
    }

    /// On shutdown, after the driver told the node every connection closed: runs the file
    /// requests that follow (recordings are finished: metadata patched, files closed), routing
    /// the node's events, for up to `grace`. Connection outputs are ignored (every connection
    /// is gone). Blocks the calling thread, which is no longer serving anyone.
    pub fn finish(&mut self, node: &mut Node, router: &mut EventRouter, grace: Duration) {
        let deadline = Instant::now() + grace;
        loop {
            let now = Instant::now();
            while let Some(output) = node.poll_output() {
                match output {
                    Output::File(request) => self.submit(request),
                    Output::Event(event) => router.route(node, now, event),
                    // Relay messages at shutdown are dropped: the whole group of workers is stopping.
                    Output::Transmit { .. }
                    | Output::Close { .. }
                    | Output::Udp(_)
                    | Output::Tcp(_)
                    | Output::Relay(_) => {}
                    // Whatever a newer core asks at shutdown waits for nobody either.
                    _ => {}
                }
            }
            if self.outstanding() == 0 {
                return;
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if !self.wait_idle(left) {
                tracing::warn!("{} file requests unfinished at exit", self.outstanding());
                return;
            }
            self.feed(node, Instant::now());
        }
    }
}

impl Drop for FileExecutor {
    fn drop(&mut self) {
        // Closing the request channel ends the worker once it has run what is queued.
        self.requests = None;
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

fn worker(root: PathBuf, inbox: Receiver<FileRequest>, done: Sender<Completion>, wake: impl Fn()) {
    let mut files: HashMap<FileId, (File, PathBuf)> = HashMap::new();
    while let Ok(first) = inbox.recv() {
        let mut next = Some(first);
        let mut batch = 0;
        while let Some(request) = next {
            let result = execute(&root, &mut files, request.file, request.op);
            if done.send((request.file, result)).is_err() {
                return;
            }
            batch += 1;
            if batch >= WAKE_BATCH {
                wake();
                batch = 0;
            }
            next = inbox.try_recv().ok();
        }
        if batch > 0 {
            wake();
        }
    }
}

fn error(e: io::Error) -> FileError {
    let kind = match e.kind() {
        io::ErrorKind::NotFound => FileErrorKind::NotFound,
        io::ErrorKind::PermissionDenied => FileErrorKind::Denied,
        io::ErrorKind::StorageFull | io::ErrorKind::QuotaExceeded => FileErrorKind::NoSpace,
        _ => FileErrorKind::Other,
    };
    FileError::new(kind, e.to_string())
}

/// `root/path`, refusing anything but plain relative components (again: the node checked).
fn resolve(root: &Path, path: &str) -> Result<PathBuf, FileError> {
    let relative = Path::new(path);
    let plain = relative
        .components()
        .all(|c| matches!(c, Component::Normal(_)));
    if !is_safe_relative_path(path) || !plain {
        return Err(FileError::new(
            FileErrorKind::Denied,
            format!("unsafe path {path:?}"),
        ));
    }
    Ok(root.join(relative))
}

fn execute(
    root: &Path,
    files: &mut HashMap<FileId, (File, PathBuf)>,
    id: FileId,
    op: FileOp,
) -> Result<FileReply, FileError> {
    let not_open = || FileError::new(FileErrorKind::Other, "file not open");
    match op {
        FileOp::Open { path, mode } => {
            let full = resolve(root, &path)?;
            if mode != OpenMode::Read {
                if let Some(parent) = full.parent() {
                    std::fs::create_dir_all(parent).map_err(error)?;
                }
            }
            let file = match mode {
                OpenMode::Read => File::open(&full),
                OpenMode::Create => OpenOptions::new()
                    .write(true)
                    .create(true)
                    .truncate(true)
                    .open(&full),
                OpenMode::Append => OpenOptions::new()
                    .read(true)
                    .write(true)
                    .create(true)
                    .truncate(false)
                    .open(&full),
            }
            .map_err(error)?;
            let size = file.metadata().map_err(error)?.len();
            files.insert(id, (file, full));
            Ok(FileReply::Opened { size })
        }
        FileOp::Read { offset, len } => {
            let (file, _) = files.get(&id).ok_or_else(not_open)?;
            let mut buf = vec![0u8; len.min(MAX_READ)];
            let mut filled = 0;
            while filled < buf.len() {
                match read_at(file, &mut buf[filled..], offset + filled as u64) {
                    Ok(0) => break,
                    Ok(n) => filled += n,
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                    Err(e) => return Err(error(e)),
                }
            }
            buf.truncate(filled);
            Ok(FileReply::Read(Bytes::from(buf)))
        }
        FileOp::Write { offset, data } => {
            let (file, _) = files.get(&id).ok_or_else(not_open)?;
            write_all_at(file, &data, offset).map_err(error)?;
            Ok(FileReply::Done)
        }
        FileOp::Truncate { len } => {
            let (file, _) = files.get(&id).ok_or_else(not_open)?;
            file.set_len(len).map_err(error)?;
            Ok(FileReply::Done)
        }
        FileOp::Close => {
            files.remove(&id);
            Ok(FileReply::Done)
        }
        FileOp::Remove => {
            let (file, path) = files.remove(&id).ok_or_else(not_open)?;
            drop(file);
            std::fs::remove_file(path).map_err(error)?;
            Ok(FileReply::Done)
        }
    }
}

#[cfg(unix)]
fn read_at(file: &File, buf: &mut [u8], offset: u64) -> io::Result<usize> {
    std::os::unix::fs::FileExt::read_at(file, buf, offset)
}

#[cfg(unix)]
fn write_all_at(file: &File, data: &[u8], offset: u64) -> io::Result<()> {
    std::os::unix::fs::FileExt::write_all_at(file, data, offset)
}

#[cfg(not(unix))]
fn read_at(mut file: &File, buf: &mut [u8], offset: u64) -> io::Result<usize> {
    use std::io::{Read, Seek, SeekFrom};
    file.seek(SeekFrom::Start(offset))?;
    file.read(buf)
}

#[cfg(not(unix))]
fn write_all_at(mut file: &File, data: &[u8], offset: u64) -> io::Result<()> {
    use std::io::{Seek, SeekFrom, Write};
    file.seek(SeekFrom::Start(offset))?;
    file.write_all(data)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn root(test: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("siprtmp-files-{test}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        dir
    }

    fn run(files: &mut FileExecutor, requests: Vec<FileRequest>) -> Vec<Completion> {
        for r in requests {
            files.submit(r);
        }
        assert!(files.wait_idle(Duration::from_secs(5)));
        std::iter::from_fn(|| files.try_completion()).collect()
    }

    #[test]
    fn traversal_is_refused_even_if_the_node_asked_for_it() {
        let dir = root("traversal");
        let mut files = FileExecutor::start(dir.clone(), || {}).unwrap();
        let open = |path: &str| FileRequest {
            file: FileId(1),
            op: FileOp::Open {
                path: path.into(),
                mode: OpenMode::Create,
            },
        };
        for (_, result) in run(&mut files, vec![open("../x.flv"), open("/tmp/x.flv")]) {
            assert_eq!(result.unwrap_err().kind, FileErrorKind::Denied);
        }
        assert!(!dir.exists());
    }

    #[test]
    fn positional_writes_reads_truncate_and_a_missing_file() {
        let dir = root("rw");
        let mut files = FileExecutor::start(dir.clone(), || {}).unwrap();
        let f = FileId(7);
        let req = |op| FileRequest { file: f, op };
        let done = run(
            &mut files,
            vec![
                req(FileOp::Open {
                    path: "live/x.flv".into(),
                    mode: OpenMode::Append,
                }),
                req(FileOp::Write {
                    offset: 0,
                    data: Bytes::from_static(b"hello world"),
                }),
                req(FileOp::Write {
                    offset: 6,
                    data: Bytes::from_static(b"W"),
                }),
                req(FileOp::Truncate { len: 9 }),
                req(FileOp::Read {
                    offset: 4,
                    len: 100,
                }),
                req(FileOp::Close),
                FileRequest {
                    file: FileId(8),
                    op: FileOp::Open {
                        path: "live/none.flv".into(),
                        mode: OpenMode::Read,
                    },
                },
            ],
        );
        assert_eq!(done[4].1, Ok(FileReply::Read(Bytes::from_static(b"o Wor"))));
        assert_eq!(
            done[6].1.as_ref().unwrap_err().kind,
            FileErrorKind::NotFound
        );
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn remove_closes_and_deletes_the_file() {
        let dir = root("remove");
        let mut files = FileExecutor::start(dir.clone(), || {}).unwrap();
        let req = |op| FileRequest {
            file: FileId(3),
            op,
        };
        let done = run(
            &mut files,
            vec![
                req(FileOp::Open {
                    path: "live/empty.flv".into(),
                    mode: OpenMode::Create,
                }),
                req(FileOp::Remove),
                req(FileOp::Remove),
            ],
        );
        assert_eq!(done[1].1, Ok(FileReply::Done));
        assert!(!dir.join("live/empty.flv").exists());
        assert!(done[2].1.is_err(), "no longer open");
        std::fs::remove_dir_all(dir).unwrap();
    }
}
