//! [`MemoryFs`]: an in-memory file system that runs a node's file requests, with a capacity (a
//! disk that fills up) and a hold (a disk that is slow).

use std::collections::{HashMap, VecDeque};

use bytes::Bytes;

use crate::storage::{
    is_safe_relative_path, FileError, FileErrorKind, FileId, FileOp, FileReply, FileRequest,
    OpenMode,
};

/// An in-memory file system that executes a node's file requests, with an optional capacity
/// (a disk that fills up) and an optional hold on requests (a disk that is slow).
#[derive(Debug, Default)]
pub struct MemoryFs {
    /// The files, by relative path.
    pub files: HashMap<String, Vec<u8>>,
    /// Total bytes the disk holds; a write past it stores what fits and fails with
    /// [`FileErrorKind::NoSpace`], as a real full disk does.
    pub capacity: Option<usize>,
    /// Keep requests in [`MemoryFs::held`] instead of running them at once.
    pub hold: bool,
    /// Requests waiting while [`MemoryFs::hold`] is set.
    pub held: VecDeque<FileRequest>,
    /// Every request executed so far, in order.
    pub log: Vec<FileRequest>,
    open: HashMap<FileId, (String, OpenMode)>,
}

impl MemoryFs {
    /// Bytes stored over all files.
    pub fn used(&self) -> usize {
        self.files.values().map(Vec::len).sum()
    }

    /// Runs one request.
    pub fn execute(&mut self, request: &FileRequest) -> Result<FileReply, FileError> {
        self.log.push(request.clone());
        let file = request.file;
        let not_open = || FileError::new(FileErrorKind::Other, "file not open");
        match &request.op {
            FileOp::Open { path, mode } => {
                if !is_safe_relative_path(path) {
                    return Err(FileError::new(FileErrorKind::Denied, "unsafe path"));
                }
                match mode {
                    OpenMode::Read if !self.files.contains_key(path) => {
                        return Err(FileError::new(FileErrorKind::NotFound, "no such file"));
                    }
                    OpenMode::Read => {}
                    OpenMode::Create => {
                        self.files.insert(path.clone(), Vec::new());
                    }
                    OpenMode::Append => {
                        self.files.entry(path.clone()).or_default();
                    }
                }
                self.open.insert(file, (path.clone(), *mode));
                let size = self.files[path].len() as u64;
                Ok(FileReply::Opened { size })
            }
            FileOp::Read { offset, len } => {
                let (path, _) = self.open.get(&file).ok_or_else(not_open)?;
                let data = &self.files[path];
                let start = (*offset as usize).min(data.len());
                let end = start.saturating_add(*len).min(data.len());
                Ok(FileReply::Read(Bytes::copy_from_slice(&data[start..end])))
            }
            FileOp::Write { offset, data } => {
                let used = self.used();
                let (path, mode) = self.open.get(&file).ok_or_else(not_open)?;
                if *mode == OpenMode::Read {
                    return Err(FileError::new(FileErrorKind::Denied, "opened read-only"));
                }
                let contents = self.files.get_mut(path).ok_or_else(not_open)?;
                let offset = *offset as usize;
                let end = offset + data.len();
                let growth = end.saturating_sub(contents.len());
                let room = self.capacity.map_or(usize::MAX, |c| c.saturating_sub(used));
                let fits = if growth > room {
                    (contents.len() + room)
                        .saturating_sub(offset)
                        .min(data.len())
                } else {
                    data.len()
                };
                if contents.len() < offset + fits {
                    contents.resize(offset + fits, 0);
                }
                contents[offset..offset + fits].copy_from_slice(&data[..fits]);
                if fits < data.len() {
                    return Err(FileError::new(
                        FileErrorKind::NoSpace,
                        "No space left on device",
                    ));
                }
                Ok(FileReply::Done)
            }
            FileOp::Truncate { len } => {
                let (path, _) = self.open.get(&file).ok_or_else(not_open)?;
                let contents = self.files.get_mut(path).ok_or_else(not_open)?;
                contents.truncate(*len as usize);
                Ok(FileReply::Done)
            }
            FileOp::Close => {
                self.open.remove(&file);
                Ok(FileReply::Done)
            }
            FileOp::Remove => {
                let (path, _) = self.open.remove(&file).ok_or_else(not_open)?;
                self.files.remove(&path);
                Ok(FileReply::Done)
            }
        }
    }
}
