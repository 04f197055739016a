//! The chunk stream ids a server sends on. Control and commands use a session's stateful
//! encoder; audio, video and data use self-contained format-0 chunks shared between players
//! ([`super::shared_message`]).

/// Protocol control and user control messages.
pub(crate) const CONTROL: u32 = 2;
/// Commands (`_result`, callbacks).
pub(crate) const COMMAND: u32 = 3;
/// Audio.
pub(crate) const AUDIO: u32 = 4;
/// `onStatus` and access messages.
pub(crate) const STATUS: u32 = 5;
/// Video.
pub(crate) const VIDEO: u32 = 6;
/// Data messages (`onMetaData`).
pub(crate) const DATA: u32 = 8;
