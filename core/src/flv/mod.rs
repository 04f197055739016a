//! FLV: the tag bodies that RTMP audio and video messages carry, and FLV files.
//!
//! [`media`] classifies audio/video tag bodies (keyframe, sequence header, codec), which is all
//! the live server needs to cache decoder configuration and start players on a keyframe;
//! [`enhanced`] walks the enhanced-RTMP extended headers (ModEx, multitrack, FourCC) for it.
//! [`tag`], [`reader`], [`index`] and [`metadata`] are the pure codecs of FLV files that
//! recording and playback (video on demand) are built from; none of them touches a file.

pub mod enhanced;
pub mod index;
pub mod media;
pub mod metadata;
pub mod reader;
pub mod tag;
