//! Seeking in FLV files: the [`KeyframeIndex`] of (timestamp, file offset) pairs, built while a
//! file is written and, for files from elsewhere, by a [`FileScanner`] that walks the tag
//! headers of a file in large reads (skipping the bodies it does not need) and also collects
//! what playback needs up front: `onMetaData`, the decoder configurations, the duration.

use super::enhanced::TrackSet;
use super::media::{classify_audio, classify_video};
use super::reader::FlvTag;
use super::tag::{
    tag_type, FileHeader, FlvError, TagHeader, PREVIOUS_TAG_SIZE_LEN, TAG_HEADER_LEN,
};
use bytes::Bytes;

/// Most entries an index keeps; past it every other entry is dropped (seeking then lands on
/// an earlier keyframe than the nearest, never a wrong one), so a hostile file of tiny
/// keyframes cannot make the index grow without bound.
pub const MAX_INDEX_ENTRIES: usize = 1 << 16;

/// Keyframes of a file in file order: (timestamp in ms, offset of the tag header).
///
/// ```
/// use siprtmp_core::flv::index::KeyframeIndex;
/// let mut index = KeyframeIndex::default();
/// index.push(0, 13);
/// index.push(2000, 90_000);
/// index.push(4000, 180_000);
/// assert_eq!(index.seek(3999), Some((2000, 90_000)));
/// assert_eq!(index.seek(4000), Some((4000, 180_000)));
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct KeyframeIndex {
    entries: Vec<(u32, u64)>,
    /// Every `stride`-th keyframe is kept (grows when the index is thinned).
    stride: u32,
    skipped: u32,
}

impl KeyframeIndex {
    /// Records a keyframe. Entries must come in file order; an entry at or before the last
    /// offset, or with an earlier timestamp, is ignored (it would break the binary search).
    pub fn push(&mut self, timestamp: u32, offset: u64) {
        if let Some(&(last_ts, last_offset)) = self.entries.last() {
            if offset <= last_offset || timestamp < last_ts {
                return;
            }
        }
        if self.stride > 1 {
            self.skipped += 1;
            if self.skipped < self.stride {
                return;
            }
            self.skipped = 0;
        }
        self.entries.push((timestamp, offset));
        if self.entries.len() >= MAX_INDEX_ENTRIES {
            let mut i = 0;
            self.entries.retain(|_| {
                i += 1;
                i % 2 == 1
            });
            self.stride = self.stride.max(1) * 2;
        }
    }

    /// The keyframe at or before `target` ms, else the first one; `None` for an empty index.
    pub fn seek(&self, target: u32) -> Option<(u32, u64)> {
        let after = self.entries.partition_point(|&(ts, _)| ts <= target);
        self.entries.get(after.saturating_sub(1)).copied()
    }

    /// Number of entries.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// True when no keyframe is known.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// The entries, in file order.
    pub fn entries(&self) -> &[(u32, u64)] {
        &self.entries
    }
}

/// What playback needs to know about a file before sending its first tag.
#[derive(Debug, Clone, Default)]
pub struct FileSummary {
    /// Where the first tag starts.
    pub first_tag: u64,
    /// Where the last complete tag (with its previous-tag-size) ends: where an appended tag
    /// goes. A torn tag at the end of a file (a crash while recording) is not counted.
    pub end: u64,
    /// The largest audio or video timestamp, in ms.
    pub last_timestamp: u32,
    /// Whether any audio or video tag was seen.
    pub has_media: bool,
    /// The first script tag (normally `onMetaData`), when it fits the scanner's limit.
    pub metadata: Option<FlvTag>,
    /// What a decoder needs before a frame it may start at: the first decoder configuration
    /// (AVC/AAC sequence header, enhanced SequenceStart) and the first side information
    /// (enhanced video Metadata, audio MultichannelConfig) of every track of both media, in
    /// file order, at most [`MAX_CONFIGS`].
    pub configs: Vec<FlvTag>,
    /// The video track whose keyframes the index holds: the lowest track with a decoder
    /// configuration (0 before any, and for codecs without one).
    pub primary_video_track: u8,
    /// Keyframes.
    pub index: KeyframeIndex,
}

/// Most configuration tags a summary keeps (a file could hold one for every track id).
pub const MAX_CONFIGS: usize = 32;

/// Bytes of a tag body enough to classify it: a first byte, a ModEx prefix with a nanosecond
/// offset, a multitrack header, a FourCC and a track id. (A longer ModEx prefix hides a tag
/// from the index, never makes it misread.)
pub const CLASSIFY_BYTES: usize = 32;

/// What configuration a tag is: its media, whether a decoder configuration (else side
/// information), and its tracks; `None` for a frame.
fn config_slot(tag_type: u8, head: &[u8]) -> Option<(u8, bool, TrackSet)> {
    match tag_type {
        tag_type::VIDEO => classify_video(head)
            .filter(|v| v.sequence_header || v.metadata)
            .map(|v| (tag_type, v.sequence_header, v.tracks)),
        tag_type::AUDIO => classify_audio(head)
            .filter(|a| a.sequence_header || a.multichannel_config)
            .map(|a| (tag_type, a.sequence_header, a.tracks)),
        _ => None,
    }
}

impl FileSummary {
    /// Whether a tag starting with `head` is a configuration the summary does not hold yet
    /// (and has room for).
    pub fn wants_config(&self, tag_type: u8, head: &[u8]) -> bool {
        let Some(slot) = config_slot(tag_type, head) else {
            return false;
        };
        self.configs.len() < MAX_CONFIGS
            && !self
                .configs
                .iter()
                .any(|c| config_slot(c.tag_type, &c.body) == Some(slot))
    }

    /// Keeps a configuration tag (one [`Self::wants_config`] asked for).
    pub fn keep_config(&mut self, tag: FlvTag) {
        if let Some((tag_type::VIDEO, true, tracks)) = config_slot(tag.tag_type, &tag.body) {
            let first = tracks.first().unwrap_or(0);
            let had_one = self.configs.iter().any(|c| {
                matches!(
                    config_slot(c.tag_type, &c.body),
                    Some((tag_type::VIDEO, true, _))
                )
            });
            if !had_one || first < self.primary_video_track {
                self.primary_video_track = first;
            }
        }
        self.configs.push(tag);
    }

    /// Whether a video tag starting with `head` is a keyframe of the primary track: where
    /// playback may start.
    pub fn is_keyframe(&self, head: &[u8]) -> bool {
        classify_video(head).is_some_and(|v| {
            v.keyframe && !v.sequence_header && v.tracks.contains(self.primary_video_track)
        })
    }
}

/// Walks a file's tags with large reads to build a [`FileSummary`].
///
/// Drive it by reading `len` bytes at `offset` for each [`FileScanner::wanted`] and passing
/// them to [`FileScanner::feed`] until `wanted` is `None`.
///
/// ```
/// use siprtmp_core::flv::index::FileScanner;
/// use siprtmp_core::flv::tag::{encode_tag, tag_type, FileHeader};
/// let mut file = FileHeader { audio: false, video: true, data_offset: 9 }.encode().to_vec();
/// file.extend_from_slice(&encode_tag(tag_type::VIDEO, 0, &[0x17, 0x01, 0, 0, 0]));
/// file.extend_from_slice(&encode_tag(tag_type::VIDEO, 40, &[0x27, 0x01, 0, 0, 0]));
/// let mut scanner = FileScanner::new(file.len() as u64, 1 << 20);
/// while let Some((offset, len)) = scanner.wanted() {
///     let end = (offset as usize + len).min(file.len());
///     scanner.feed(offset, &file[offset as usize..end]).unwrap();
/// }
/// let summary = scanner.finish();
/// assert_eq!(summary.index.entries(), &[(0, 13)]);
/// assert_eq!((summary.last_timestamp, summary.end), (40, file.len() as u64));
/// ```
#[derive(Debug)]
pub struct FileScanner {
    size: u64,
    max_tag_body: usize,
    header_done: bool,
    /// Offset of the next tag header.
    next: u64,
    /// Bytes wanted at `next` to make progress.
    need: usize,
    done: bool,
    summary: FileSummary,
}

/// Size of one scanning read.
pub const SCAN_BLOCK: usize = 256 * 1024;

impl FileScanner {
    /// A scanner of a file of `size` bytes that keeps script and configuration tags of at most
    /// `max_tag_body` bytes.
    pub fn new(size: u64, max_tag_body: usize) -> Self {
        Self {
            size,
            max_tag_body,
            header_done: false,
            next: 0,
            need: 0,
            done: false,
            summary: FileSummary::default(),
        }
    }

    /// The next read to make: (offset, length); `None` when the scan is complete.
    pub fn wanted(&self) -> Option<(u64, usize)> {
        (!self.done).then_some((self.next, SCAN_BLOCK.max(self.need)))
    }

    /// Is the tag body needed in full (a config or metadata tag not yet seen)?
    fn wants_body(&self, header: &TagHeader, first: Option<&[u8]>) -> bool {
        if header.data_size as usize > self.max_tag_body {
            return false;
        }
        match header.tag_type {
            tag_type::SCRIPT => self.summary.metadata.is_none(),
            kind => first.is_some_and(|head| self.summary.wants_config(kind, head)),
        }
    }

    /// Bytes read at `offset` (which must be the offset [`Self::wanted`] gave). A short read
    /// means the end of the file.
    pub fn feed(&mut self, offset: u64, data: &[u8]) -> Result<(), FlvError> {
        if self.done || offset != self.next {
            return Ok(());
        }
        let at_eof =
            offset + data.len() as u64 >= self.size || data.len() < SCAN_BLOCK.max(self.need);
        if !self.header_done {
            let Some(header) = FileHeader::parse(data)? else {
                self.done = true;
                return Err(FlvError::NotFlv);
            };
            self.header_done = true;
            self.next = u64::from(header.data_offset) + PREVIOUS_TAG_SIZE_LEN as u64;
            // A header whose tags would start past the end of the file is corrupt: taken at
            // its word, `end` (where an append writes) would lie up to 4 GiB past the file.
            if self.next > self.size {
                self.done = true;
                return Err(FlvError::BadDataOffset(header.data_offset));
            }
            self.summary.first_tag = self.next;
            self.summary.end = self.next;
            self.need = 0;
            if self.next >= self.size {
                self.done = true;
                return Ok(());
            }
            if self.next > offset + data.len() as u64 {
                return Ok(());
            }
        }
        loop {
            let pos = (self.next - offset) as usize;
            let rest = &data[pos.min(data.len())..];
            let Some(head) = rest.first_chunk::<TAG_HEADER_LEN>() else {
                self.need = TAG_HEADER_LEN + 2;
                break;
            };
            let header = TagHeader::parse(head)?;
            let body_len = header.data_size as usize;
            let tag_end = self.next + header.total_len();
            if self.next + (TAG_HEADER_LEN + body_len) as u64 > self.size {
                // A torn last tag.
                self.done = true;
                return Ok(());
            }
            let body_in_data = rest.get(TAG_HEADER_LEN..TAG_HEADER_LEN + body_len);
            let head_len = body_len.min(CLASSIFY_BYTES);
            let head = rest.get(TAG_HEADER_LEN..TAG_HEADER_LEN + head_len);
            if head.is_none() {
                self.need = TAG_HEADER_LEN + head_len;
                break;
            }
            let wants_body = self.wants_body(&header, head);
            if wants_body && body_in_data.is_none() {
                self.need = TAG_HEADER_LEN + body_len;
                break;
            }
            self.note(&header, head.unwrap_or(&[]), body_in_data, wants_body);
            self.next = tag_end;
            if tag_end <= self.size {
                self.summary.end = tag_end;
            }
            self.need = 0;
            if tag_end >= self.size {
                self.done = true;
                return Ok(());
            }
        }
        if at_eof && (self.next - offset) as usize + self.need > data.len() {
            self.done = true;
        }
        Ok(())
    }

    fn note(&mut self, header: &TagHeader, first: &[u8], body: Option<&[u8]>, keep: bool) {
        let offset = self.next;
        let tag = || FlvTag {
            offset,
            tag_type: header.tag_type,
            timestamp: header.timestamp,
            body: Bytes::copy_from_slice(body.unwrap_or(&[])),
        };
        match header.tag_type {
            tag_type::SCRIPT if keep => self.summary.metadata = Some(tag()),
            tag_type::VIDEO => {
                self.media(header.timestamp);
                if keep {
                    self.summary.keep_config(tag());
                } else if self.summary.is_keyframe(first) {
                    self.summary.index.push(header.timestamp, self.next);
                }
            }
            tag_type::AUDIO => {
                self.media(header.timestamp);
                if keep {
                    self.summary.keep_config(tag());
                }
            }
            _ => {}
        }
    }

    fn media(&mut self, timestamp: u32) {
        self.summary.has_media = true;
        self.summary.last_timestamp = self.summary.last_timestamp.max(timestamp);
    }

    /// True once nothing more is wanted.
    pub fn is_done(&self) -> bool {
        self.done
    }

    /// What the scan found.
    pub fn finish(self) -> FileSummary {
        self.summary
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::flv::tag::encode_tag;
    use proptest::prelude::*;

    fn scan(file: &[u8], max: usize) -> Result<FileSummary, FlvError> {
        let mut scanner = FileScanner::new(file.len() as u64, max);
        let mut reads = 0;
        while let Some((offset, len)) = scanner.wanted() {
            reads += 1;
            assert!(reads < 10_000, "scanner does not progress");
            let start = (offset as usize).min(file.len());
            let end = (offset as usize).saturating_add(len).min(file.len());
            scanner.feed(offset, &file[start..end])?;
        }
        Ok(scanner.finish())
    }

    fn header() -> Vec<u8> {
        FileHeader {
            audio: true,
            video: true,
            data_offset: 9,
        }
        .encode()
        .to_vec()
    }

    #[test]
    fn finds_metadata_configs_keyframes_and_the_end() {
        let mut file = header();
        let meta = encode_tag(tag_type::SCRIPT, 0, b"meta");
        let avc = encode_tag(tag_type::VIDEO, 0, &[0x17, 0x00, 1, 2]);
        let aac = encode_tag(tag_type::AUDIO, 0, &[0xAF, 0x00, 0x12, 0x10]);
        for t in [&meta, &avc, &aac] {
            file.extend_from_slice(t);
        }
        let key1 = file.len() as u64;
        file.extend_from_slice(&encode_tag(tag_type::VIDEO, 0, &[0x17, 0x01, 9]));
        file.extend_from_slice(&encode_tag(tag_type::VIDEO, 40, &[0x27, 0x01, 9]));
        file.extend_from_slice(&encode_tag(tag_type::AUDIO, 46, &[0xAF, 0x01, 9]));
        let key2 = file.len() as u64;
        file.extend_from_slice(&encode_tag(tag_type::VIDEO, 80, &[0x17, 0x01, 9]));
        let end = file.len() as u64;
        // A torn tag: the header promises more than the file holds.
        file.extend_from_slice(&encode_tag(tag_type::AUDIO, 99, &[0xAF, 0x01, 9, 9, 9])[..14]);
        let s = scan(&file, 1024).unwrap();
        assert_eq!(s.first_tag, 13);
        assert_eq!(&s.metadata.unwrap().body[..], b"meta");
        assert_eq!(s.configs.len(), 2);
        assert_eq!(&s.configs[0].body[..], &[0x17, 0x00, 1, 2]);
        assert_eq!(
            s.configs[1].offset,
            13 + meta.len() as u64 + avc.len() as u64
        );
        assert_eq!(s.index.entries(), &[(0, key1), (80, key2)]);
        assert_eq!(s.last_timestamp, 80);
        assert_eq!(s.end, end);
    }

    #[test]
    fn enhanced_configurations_of_every_track_and_primary_keyframes() {
        let mut file = header();
        let hevc = [0x90, b'h', b'v', b'c', b'1', 1, 2];
        let opus = [0x90, b'O', b'p', b'u', b's', 1, 2];
        // Multitrack OneTrack SequenceStart "avc1" track 1, as ffmpeg writes a second track.
        let second = [0x96, 0x00, b'a', b'v', b'c', b'1', 1, 1, 0x64];
        for (kind, body) in [
            (tag_type::VIDEO, &hevc[..]),
            (tag_type::AUDIO, &opus[..]),
            (tag_type::VIDEO, &second[..]),
            (tag_type::VIDEO, &hevc[..]), // a repeat: the first is kept
        ] {
            file.extend_from_slice(&encode_tag(kind, 0, body));
        }
        let key = file.len() as u64;
        file.extend_from_slice(&encode_tag(
            tag_type::VIDEO,
            0,
            &[0x93, b'h', b'v', b'c', b'1', 9],
        ));
        // A keyframe of track 1 only: no place to start the primary track.
        file.extend_from_slice(&encode_tag(
            tag_type::VIDEO,
            40,
            &[0x96, 0x03, b'a', b'v', b'c', b'1', 1, 9],
        ));
        file.extend_from_slice(&encode_tag(
            tag_type::VIDEO,
            40,
            &[0xA3, b'h', b'v', b'c', b'1', 9],
        ));
        // Keyframe behind a ModEx prefix (3 bytes of nanosecond offset).
        let key2 = file.len() as u64;
        file.extend_from_slice(&encode_tag(
            tag_type::VIDEO,
            80,
            &[0x97, 2, 0, 0, 1, 0x03, b'h', b'v', b'c', b'1', 9],
        ));
        let s = scan(&file, 1024).unwrap();
        let bodies: Vec<&[u8]> = s.configs.iter().map(|c| &c.body[..]).collect();
        assert_eq!(bodies, vec![&hevc[..], &opus[..], &second[..]]);
        assert_eq!(s.primary_video_track, 0);
        assert_eq!(s.index.entries(), &[(0, key), (80, key2)]);
    }

    #[test]
    fn a_data_offset_past_the_end_of_the_file_is_an_error() {
        // Found by the flv_index fuzz target: the header's data offset (0xffff0009) put
        // `end`, where the recorder appends, 4 GiB past this 13-byte file.
        let file = b"FLV\x01\x05\xff\xff\x00\x09\x00\x00\x00\x00";
        let mut scanner = FileScanner::new(file.len() as u64, 1 << 20);
        assert_eq!(scanner.wanted().map(|w| w.0), Some(0));
        assert_eq!(
            scanner.feed(0, file),
            Err(FlvError::BadDataOffset(0xffff_0009))
        );
        assert!(scanner.is_done());
        // A file that is only a header still scans, with its end at its size.
        let mut scanner = FileScanner::new(13, 1 << 20);
        scanner.feed(0, &header()).unwrap();
        assert!(scanner.is_done());
        assert_eq!(scanner.finish().end, 13);
    }

    #[test]
    fn large_bodies_are_skipped_not_read() {
        let mut file = header();
        for i in 0..8u32 {
            let mut body = vec![if i % 4 == 0 { 0x17 } else { 0x27 }, 1];
            body.resize(200_000, 0);
            file.extend_from_slice(&encode_tag(tag_type::VIDEO, i * 40, &body));
        }
        let mut scanner = FileScanner::new(file.len() as u64, 1024);
        let mut bytes_read = 0;
        while let Some((offset, len)) = scanner.wanted() {
            let start = offset as usize;
            let end = (start + len).min(file.len());
            bytes_read += end - start;
            scanner.feed(offset, &file[start..end]).unwrap();
        }
        let s = scanner.finish();
        assert_eq!(s.index.len(), 2);
        assert_eq!(s.end, file.len() as u64);
        assert!(bytes_read <= file.len() + SCAN_BLOCK, "{bytes_read}");
    }

    #[test]
    fn the_index_thins_itself_at_its_limit() {
        let mut index = KeyframeIndex::default();
        for i in 0..(MAX_INDEX_ENTRIES as u64 * 3) {
            index.push(i as u32, 100 + i * 10);
        }
        assert!(index.len() < MAX_INDEX_ENTRIES);
        let (ts, offset) = index.seek(150_000).unwrap();
        assert!(ts <= 150_000 && ts > 150_000 - 8);
        assert_eq!(offset, 100 + u64::from(ts) * 10);
        assert_eq!(index.seek(0), Some((0, 100)));
    }

    proptest! {
        #[test]
        fn arbitrary_files_never_panic_or_loop(bytes in proptest::collection::vec(any::<u8>(), 0..2048)) {
            let _ = scan(&bytes, 64);
            let mut file = header();
            file.extend_from_slice(&bytes);
            let _ = scan(&file, 64);
        }
    }
}
