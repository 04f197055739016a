//! The enhanced-RTMP (E-RTMP v2) extended headers of audio and video tag bodies: the walk from
//! the first byte's packet type through any ModEx prefixes and a multitrack header to the
//! packet type, FourCC and track ids that the server acts on.
//!
//! Layout (after the first byte, whose low nibble is the packet type):
//!
//! - ModEx (packet type 7 for both audio and video): a size (`UI8 + 1`, or `UI16 + 1` when the
//!   byte gives 256), that many bytes of data, then a byte whose low nibble is the next packet
//!   type (high nibble: the ModEx type). Repeats while the packet type is ModEx.
//! - Multitrack (video 6, audio 5): a byte `[AvMultitrackType:4][PacketType:4]`; unless the
//!   type is ManyTracksManyCodecs, one FourCC for every track; then per track: its FourCC (many
//!   codecs only), its track id (`UI8`) and, unless OneTrack, the size of the rest of the track
//!   (`UI24`) by which the next track is found.
//! - Otherwise: the FourCC, then the codec's data (the default track, id 0).
//!
//! Only reads, never copies: a walk over a hostile body costs at most one step per four bytes
//! of it and never panics.

/// Audio packet types (the low nibble after SoundFormat 9, `ExHeader`).
pub mod audio_packet {
    /// Decoder configuration (AAC AudioSpecificConfig, Opus ID header, FLAC STREAMINFO...).
    pub const SEQUENCE_START: u8 = 0;
    /// Coded audio frames.
    pub const CODED_FRAMES: u8 = 1;
    /// End of the sequence.
    pub const SEQUENCE_END: u8 = 2;
    /// The channel order and count.
    pub const MULTICHANNEL_CONFIG: u8 = 4;
    /// A multitrack message follows.
    pub const MULTITRACK: u8 = 5;
    /// A ModEx prefix follows.
    pub const MOD_EX: u8 = 7;
}

/// Video packet types (the low nibble of an ExVideoTagHeader's first byte).
pub mod video_packet {
    /// Decoder configuration (HEVC/AVC decoder configuration record, AV1/VP9 codec config).
    pub const SEQUENCE_START: u8 = 0;
    /// Coded frames with a composition time offset.
    pub const CODED_FRAMES: u8 = 1;
    /// End of the sequence.
    pub const SEQUENCE_END: u8 = 2;
    /// Coded frames with an implicit composition time offset of 0.
    pub const CODED_FRAMES_X: u8 = 3;
    /// AMF-encoded video metadata (HDR `colorInfo`), valid until replaced.
    pub const METADATA: u8 = 4;
    /// Decoder configuration for a bitstream carried as MPEG-2 TS.
    pub const MPEG2TS_SEQUENCE_START: u8 = 5;
    /// A multitrack message follows.
    pub const MULTITRACK: u8 = 6;
    /// A ModEx prefix follows.
    pub const MOD_EX: u8 = 7;
}

/// AvMultitrackType: how the tracks of a multitrack message are laid out.
pub mod multitrack_type {
    /// One track, no track size.
    pub const ONE_TRACK: u8 = 0;
    /// Several tracks of one codec, each with its size.
    pub const MANY_TRACKS: u8 = 1;
    /// Several tracks, each with its own FourCC and size.
    pub const MANY_TRACKS_MANY_CODECS: u8 = 2;
}

/// The enhanced sound format (SoundFormat 9): an ExAudioTagHeader follows.
pub const AUDIO_EX_HEADER: u8 = 9;

/// A FourCC as the big-endian number `onMetaData` carries it (`"hvc1"` is 0x68766331).
pub fn fourcc_number(fourcc: [u8; 4]) -> f64 {
    f64::from(u32::from_be_bytes(fourcc))
}

/// A set of track ids (0..=255).
///
/// ```
/// use siprtmp_core::flv::enhanced::TrackSet;
/// let mut both = TrackSet::single(0);
/// both.insert(7);
/// assert!(TrackSet::single(7).is_subset_of(&both));
/// assert_eq!(both.first(), Some(0));
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Hash)]
pub struct TrackSet([u64; 4]);

impl TrackSet {
    /// The set of one track.
    pub fn single(id: u8) -> Self {
        let mut set = Self::default();
        set.insert(id);
        set
    }

    /// Adds a track.
    pub fn insert(&mut self, id: u8) {
        self.0[usize::from(id >> 6)] |= 1 << (id & 63);
    }

    /// Whether the set holds `id`.
    pub fn contains(&self, id: u8) -> bool {
        self.0[usize::from(id >> 6)] & (1 << (id & 63)) != 0
    }

    /// Whether every track of `self` is in `other`.
    pub fn is_subset_of(&self, other: &TrackSet) -> bool {
        self.0.iter().zip(other.0.iter()).all(|(a, b)| a & !b == 0)
    }

    /// The lowest track id, if any.
    pub fn first(&self) -> Option<u8> {
        self.0
            .iter()
            .enumerate()
            .find(|(_, word)| **word != 0)
            .map(|(i, word)| (i as u32 * 64 + word.trailing_zeros()) as u8)
    }

    /// True for the empty set.
    pub fn is_empty(&self) -> bool {
        self.0.iter().all(|word| *word == 0)
    }
}

/// What an extended header says, once ModEx prefixes and the multitrack header are walked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ExHeader {
    /// The packet type that applies to every track of the message (never ModEx; Multitrack
    /// only in a malformed message).
    pub packet_type: u8,
    /// The FourCC of the first track, when the body is long enough to hold it.
    pub fourcc: Option<[u8; 4]>,
    /// Whether the message is a multitrack one.
    pub multitrack: bool,
    /// The tracks it carries: track 0 for a single-track message.
    pub tracks: TrackSet,
}

/// Walks an extended header. `first_packet_type` is the low nibble of the body's first byte,
/// `rest` the body after it, `multitrack` the packet type that announces multitrack for this
/// kind of media (video 6, audio 5). `None` when the body ends inside a ModEx prefix or the
/// multitrack byte: nothing can be said of it.
///
/// ```
/// use siprtmp_core::flv::enhanced::{walk, video_packet};
/// // Multitrack (6), OneTrack, CodedFramesX (3), "avc1", track 1.
/// let body = [0x03, b'a', b'v', b'c', b'1', 1, 0xAA];
/// let h = walk(video_packet::MULTITRACK, &body, video_packet::MULTITRACK).unwrap();
/// assert_eq!(h.packet_type, video_packet::CODED_FRAMES_X);
/// assert_eq!(h.tracks.first(), Some(1));
/// assert_eq!(h.fourcc, Some(*b"avc1"));
/// ```
pub fn walk(first_packet_type: u8, rest: &[u8], multitrack: u8) -> Option<ExHeader> {
    let mut packet_type = first_packet_type;
    let mut rest = rest;
    // ModEx: both media use 7. Each round consumes at least two bytes.
    while packet_type == video_packet::MOD_EX {
        let (&size, after) = rest.split_first()?;
        let (size, after) = if size == 255 {
            let (two, after) = after.split_first_chunk::<2>()?;
            (usize::from(u16::from_be_bytes(*two)) + 1, after)
        } else {
            (usize::from(size) + 1, after)
        };
        let after = after.get(size..)?;
        let (&next, after) = after.split_first()?;
        packet_type = next & 0x0F;
        rest = after;
    }
    if packet_type != multitrack {
        return Some(ExHeader {
            packet_type,
            fourcc: rest.first_chunk::<4>().copied(),
            multitrack: false,
            tracks: TrackSet::single(0),
        });
    }
    let (&byte, mut rest) = rest.split_first()?;
    let layout = byte >> 4;
    let packet_type = byte & 0x0F;
    let mut fourcc = None;
    if layout != multitrack_type::MANY_TRACKS_MANY_CODECS {
        fourcc = rest.first_chunk::<4>().copied();
        rest = rest.get(4..).unwrap_or(&[]);
    }
    let mut tracks = TrackSet::default();
    // Each round consumes at least one byte (OneTrack stops after the first).
    loop {
        if layout == multitrack_type::MANY_TRACKS_MANY_CODECS {
            let Some((codec, after)) = rest.split_first_chunk::<4>() else {
                break;
            };
            fourcc = fourcc.or(Some(*codec));
            rest = after;
        }
        let Some((&id, after)) = rest.split_first() else {
            break;
        };
        tracks.insert(id);
        if layout == multitrack_type::ONE_TRACK {
            break;
        }
        let Some((size, after)) = after.split_first_chunk::<3>() else {
            break;
        };
        let size = u32::from_be_bytes([0, size[0], size[1], size[2]]) as usize;
        let Some(next) = after.get(size..) else {
            break;
        };
        rest = next;
        if rest.is_empty() {
            break;
        }
    }
    Some(ExHeader {
        packet_type,
        fourcc,
        multitrack: true,
        tracks,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn mod_ex_prefixes_are_skipped_short_and_long() {
        // ModEx with 3 bytes of data (size byte 2), then [type 0 | CodedFrames], "hvc1".
        let short = [2, 0xAA, 0xBB, 0xCC, 0x01, b'h', b'v', b'c', b'1'];
        let h = walk(video_packet::MOD_EX, &short, video_packet::MULTITRACK).unwrap();
        assert_eq!(h.packet_type, video_packet::CODED_FRAMES);
        assert_eq!(h.fourcc, Some(*b"hvc1"));
        // Size byte 255 means a 16-bit size follows: 299 + 1 bytes of data.
        let mut long = vec![255, 0x01, 0x2B];
        long.extend_from_slice(&[0; 300]);
        long.push(0x07); // another ModEx
        long.extend_from_slice(&[0, 0x11, 0x00]);
        long.extend_from_slice(b"Opus");
        let h = walk(audio_packet::MOD_EX, &long, audio_packet::MULTITRACK).unwrap();
        assert_eq!(h.packet_type, audio_packet::SEQUENCE_START);
        assert_eq!(h.fourcc, Some(*b"Opus"));
        // Cut inside the data: nothing to say.
        assert_eq!(walk(7, &long[..100], 5), None);
    }

    #[test]
    fn many_tracks_are_found_by_their_sizes() {
        // ManyTracks (1) of SequenceStart (0), "av01": track 0 (2 bytes), track 5 (1 byte).
        let body = [
            0x10, b'a', b'v', b'0', b'1', 0, 0, 0, 2, 9, 9, 5, 0, 0, 1, 9,
        ];
        let h = walk(6, &body, 6).unwrap();
        assert!(h.multitrack);
        assert_eq!(h.packet_type, video_packet::SEQUENCE_START);
        assert!(h.tracks.contains(0) && h.tracks.contains(5) && !h.tracks.contains(1));
        // ManyTracksManyCodecs (2) of CodedFrames: each track its FourCC.
        let body = [
            0x21, b'O', b'p', b'u', b's', 3, 0, 0, 1, 9, b'f', b'L', b'a', b'C', 4, 0, 0, 0,
        ];
        let h = walk(5, &body, 5).unwrap();
        assert_eq!(h.fourcc, Some(*b"Opus"));
        assert_eq!(h.tracks.first(), Some(3));
        assert!(h.tracks.contains(4));
    }

    #[test]
    fn track_sets() {
        let mut set = TrackSet::default();
        assert!(set.is_empty() && set.first().is_none());
        set.insert(255);
        set.insert(64);
        assert_eq!(set.first(), Some(64));
        assert!(set.contains(255) && !set.contains(63));
        assert!(TrackSet::single(64).is_subset_of(&set));
        assert!(!set.is_subset_of(&TrackSet::single(64)));
    }

    proptest! {
        #[test]
        fn hostile_headers_never_panic(
            first in 0u8..16,
            kind in prop::sample::select(vec![5u8, 6]),
            body in prop::collection::vec(any::<u8>(), 0..600),
        ) {
            if let Some(h) = walk(first, &body, kind) {
                if !h.multitrack {
                    prop_assert_ne!(h.packet_type, video_packet::MOD_EX);
                    prop_assert_eq!(h.tracks, TrackSet::single(0));
                }
            }
        }
    }
}
