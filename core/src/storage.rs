//! File access as data: the requests the node makes of a driver's file executor (open, read,
//! write, truncate, close, remove) and the replies it expects back, plus the validation of the paths
//! it asks for. The core never touches a file system; recording and video on demand are built
//! on these requests only.
//!
//! # The executor's contract
//!
//! - Paths are relative to a root the driver chooses, `/`-separated, and already checked with
//!   [`is_safe_relative_path`]; an executor should check them again before joining them to
//!   its root (defence in depth).
//! - Requests for one [`FileId`] are executed in the order they were emitted, and each one is
//!   answered by exactly one [`crate::node::Input::FileDone`], in that order. Requests for
//!   different files may run concurrently. After a failed `Open`, later requests for that id
//!   fail too; `Close` always succeeds.
//! - An executor must never run file operations on the thread that drives the node: a slow
//!   disk delays completions, never the event loop.
//!
//! ```
//! use siprtmp_core::storage::{media_path, is_safe_relative_path};
//! assert_eq!(media_path("live", "cam1").unwrap(), "live/cam1.flv");
//! assert!(media_path("live", "../../etc/passwd").is_err());
//! assert!(!is_safe_relative_path("/etc/passwd"));
//! ```

pub use crate::ids::FileId;
use bytes::Bytes;

/// How to open a file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OpenMode {
    /// Read only; the file must exist.
    Read,
    /// Write: created (with missing parent directories) or truncated.
    Create,
    /// Read and write: created (with missing parent directories) if missing, kept otherwise.
    Append,
}

/// One file operation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FileOp {
    /// Opens `path` (relative to the executor's root); answered with [`FileReply::Opened`].
    Open {
        /// The relative path, `/`-separated.
        path: String,
        /// How to open it.
        mode: OpenMode,
    },
    /// Reads up to `len` bytes at `offset`; fewer only at the end of the file.
    Read {
        /// Where to read.
        offset: u64,
        /// How much to read at most.
        len: usize,
    },
    /// Writes all of `data` at `offset`.
    Write {
        /// Where to write.
        offset: u64,
        /// What to write.
        data: Bytes,
    },
    /// Sets the file's length (cuts a torn tail after a failed write).
    Truncate {
        /// The new length.
        len: u64,
    },
    /// Closes the file.
    Close,
    /// Closes the file and deletes it (a recording that failed before any media reached it:
    /// an empty file is worth nothing to anyone). Answered with [`FileReply::Done`].
    Remove,
}

/// A file request: which file, and what to do with it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileRequest {
    /// The file.
    pub file: FileId,
    /// The operation.
    pub op: FileOp,
}

/// A successful completion.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FileReply {
    /// The file is open and has `size` bytes.
    Opened {
        /// Its size in bytes.
        size: u64,
    },
    /// Bytes read (shorter than asked only at the end of the file).
    Read(Bytes),
    /// A write, truncate, close or remove completed.
    Done,
}

/// What went wrong, as far as the node cares.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FileErrorKind {
    /// The file (or a directory on its path) does not exist.
    NotFound,
    /// The disk (or a quota) is full.
    NoSpace,
    /// Permission denied.
    Denied,
    /// Anything else.
    Other,
}

/// A failed file operation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileError {
    /// The kind of failure.
    pub kind: FileErrorKind,
    /// A human-readable description (the OS error text).
    pub message: String,
}

impl FileError {
    /// An error of `kind` with `message`.
    pub fn new(kind: FileErrorKind, message: impl Into<String>) -> Self {
        Self {
            kind,
            message: message.into(),
        }
    }
}

impl std::fmt::Display for FileError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for FileError {}

/// Why a stream name cannot name a file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BadPath(pub String);

impl std::fmt::Display for BadPath {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "unsafe file name: {}", self.0)
    }
}

/// Longest relative path the node asks for.
pub const MAX_PATH_LEN: usize = 512;

/// Longest component of a path the node asks for, in bytes: the file-name limit of the
/// common file systems (ext4, XFS, btrfs, NTFS, APFS). A stream name's last part is at most
/// this less `.flv`.
pub const MAX_COMPONENT_LEN: usize = 255;

/// True for a relative `/`-separated path whose every component is a plain name: not empty,
/// not `.` or `..`, not hidden (leading `.`), without `\`, `:`, control characters or
/// the characters Windows forbids (`*?"<>|`), at most [`MAX_COMPONENT_LEN`] bytes; and at
/// most [`MAX_PATH_LEN`] bytes in all.
pub fn is_safe_relative_path(path: &str) -> bool {
    !path.is_empty()
        && path.len() <= MAX_PATH_LEN
        && path.split('/').all(|component| {
            !component.is_empty()
                && component.len() <= MAX_COMPONENT_LEN
                && !component.starts_with('.')
                && component.chars().all(|c| {
                    !c.is_control() && !matches!(c, '\\' | ':' | '*' | '?' | '"' | '<' | '>' | '|')
                })
        })
}

/// The file of stream `name` in application `app`: `<app>/<name>.flv`. An `flv:` prefix and
/// a `.flv` suffix on the name are accepted and not doubled; names that would leave the root
/// (absolute, `..`, hidden components, drive letters) are refused.
pub fn media_path(app: &str, name: &str) -> Result<String, BadPath> {
    let name = name.strip_prefix("flv:").unwrap_or(name);
    let name = name.strip_suffix(".flv").unwrap_or(name);
    let path = format!("{app}/{name}.flv");
    if is_safe_relative_path(&path) {
        Ok(path)
    } else {
        Err(BadPath(format!("{app}/{name}")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn traversal_and_absolute_names_are_refused() {
        for bad in [
            "../x",
            "a/../../x",
            "/etc/passwd",
            "..",
            ".hidden",
            "a//b",
            "c:\\x",
            "a\\..\\b",
            "x\0y",
            "",
            "q?",
        ] {
            assert!(media_path("live", bad).is_err(), "{bad:?}");
        }
        assert!(media_path("..", "x").is_err());
        assert!(media_path("/abs", "x").is_err());
        assert!(media_path("live", &"n".repeat(600)).is_err());
        // A file name is at most 255 bytes, `.flv` included.
        assert!(media_path("live", &"n".repeat(251)).is_ok());
        assert!(media_path("live", &"n".repeat(252)).is_err());
        assert!(media_path("live", &format!("{}/x", "n".repeat(256))).is_err());
    }

    #[test]
    fn plain_and_nested_names_map_into_the_app_directory() {
        assert_eq!(media_path("live", "cam").unwrap(), "live/cam.flv");
        assert_eq!(media_path("vod/hd", "a/b").unwrap(), "vod/hd/a/b.flv");
        assert_eq!(media_path("live", "flv:cam.flv").unwrap(), "live/cam.flv");
        assert_eq!(
            media_path("live", "my show 1").unwrap(),
            "live/my show 1.flv"
        );
    }
}
