//! [`RecordError`]: why a recording ended early, as a value an application can match on (a
//! full disk is an operator's problem, a file that is not FLV a naming one) and print.

use std::fmt;

use crate::storage::FileError;

/// Why a recording ended before its publisher stopped; carried by
/// [`Event::RecordStopped`](crate::node::Event::RecordStopped).
///
/// ```
/// use siprtmp_core::node::RecordError;
/// use siprtmp_core::storage::{FileError, FileErrorKind};
/// let full = RecordError::File(FileError::new(FileErrorKind::NoSpace, "No space left on device"));
/// assert_eq!(full.to_string(), "No space left on device");
/// assert!(matches!(full, RecordError::File(FileError { kind: FileErrorKind::NoSpace, .. })));
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum RecordError {
    /// The file did not open before the media held for it reached the recorder's backlog limit.
    OpenTimedOut,
    /// The disk did not keep up: more than the backlog limit was waiting to be written.
    DiskTooSlow {
        /// Bytes waiting to be written when the recording gave up.
        waiting: u64,
    },
    /// The file to append to exists and is not FLV.
    NotFlv,
    /// A file operation failed (the driver's error: a full disk, no permission...).
    File(FileError),
}

impl fmt::Display for RecordError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::OpenTimedOut => f.write_str("the file could not be opened in time"),
            Self::DiskTooSlow { waiting } => write!(
                f,
                "the disk does not keep up ({waiting} bytes waiting to be written)"
            ),
            Self::NotFlv => f.write_str("the existing file is not FLV"),
            Self::File(e) => write!(f, "{e}"),
        }
    }
}

impl std::error::Error for RecordError {}
