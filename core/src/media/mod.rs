//! Media translation between the RTMP side (FLV audio/video tag bodies) and the SIP side (RTP
//! payloads) of the gateway. Payloads are passed through, re-framed, or (for Speex wideband
//! to narrowband) trimmed at the bit level; only a call whose far end shares no codec with
//! the client is transcoded ([`transcode`]).
//!
//! - [`payload`]: [`RtpPayload`], what every RTMP→RTP translator produces (a small header
//!   buffer plus a zero-copy body).
//! - [`timestamp`]: RTMP milliseconds to RTP clock units and back ([`RtpTimeline`]).
//! - [`frame`]: [`MediaFrame`], what every RTP→RTMP translator produces (a tag header plus
//!   a zero-copy body).
//! - [`speex`]: the Speex bit-stream walker and the wideband→narrowband layer stripper.
//! - [`opus`]: Opus in enhanced RTMP (the ExAudioTagHeader with FourCC `Opus`).
//! - [`audio`]: Speex, G.711 and Opus audio in both directions, passed through.
//! - [`avc_config`]: the AVCDecoderConfigurationRecord (FLV AVC sequence header).
//! - [`h264_packetizer`]: FLV AVC tags to RFC 6184 RTP payloads.
//! - [`h264_depacketizer`]: RFC 6184 RTP packets back to FLV AVC tags.
//! - [`g711`]: G.711 mu-law and A-law to linear PCM and back.
//! - [`resample`]: polyphase FIR resampling by a whole factor (8, 16 and 48 kHz).
//! - [`transcode`]: one call's transcoder (Speex or Opus <-> G.711, Opus <-> Speex), the
//!   codec libraries behind traits.
//! - [`flv_tunnel`]: whole RTMP media messages carried over RTP between two gateways.

pub mod audio;
pub mod avc_config;
pub mod flv_tunnel;
pub mod frame;
pub mod g711;
pub mod h264_depacketizer;
pub mod h264_packetizer;
pub mod opus;
pub mod payload;
pub mod resample;
pub mod speex;
pub mod timestamp;
pub mod transcode;

pub use audio::{AudioError, RtmpToRtpAudio, RtpAudioCodec, RtpAudioFormat, RtpToRtmpAudio};
pub use avc_config::{AvcConfigError, AvcDecoderConfig};
pub use flv_tunnel::{FlvTunnelError, FlvTunnelReceiver, FlvTunnelSender};
pub use frame::MediaFrame;
pub use h264_depacketizer::{H264Depacketizer, H264DepacketizerConfig};
pub use h264_packetizer::{H264Error, H264Packetizer, H264PacketizerConfig};
pub use payload::RtpPayload;
pub use timestamp::{rtmp_to_rtp, RtpTimeline};
pub use transcode::{
    ClientCodec, CodecLibraries, FarCodec, G711Law, OpusCodec, OpusCodecs, SpeexBand, SpeexCodec,
    SpeexCodecs, Transcoder,
};
