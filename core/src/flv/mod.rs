//! FLV: the tag bodies that RTMP audio and video messages carry, and (later) FLV files.
//!
//! [`media`] classifies audio/video tag bodies (keyframe, sequence header, codec), which is all
//! the live server needs to cache decoder configuration and start players on a keyframe.

pub mod media;
