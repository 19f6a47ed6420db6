//! The media vocabulary of ferrocast: one [`Frame`] type for every access unit that crosses the hub, and
//! [`TrackInfo`] for the codec parameters that travel beside the frames rather than inside them.
//!
//! Conventions (DESIGN §1): H.264/H.265 payloads are length-prefixed (AVCC/HVCC, 4-byte lengths), AAC is raw
//! (no ADTS), Opus is raw, AV1 is a sequence of OBUs (low-overhead format). Timestamps are integers in the
//! track's timebase, never floats.

pub mod codec;

pub use codec::{AudioParams, CodecError, VideoParams};

use bytes::Bytes;

/// Whether a track carries pictures or sound.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum MediaType {
    /// Pictures.
    Video,
    /// Sound.
    Audio,
}

/// The codecs ferrocast knows by name. Anything else is refused at ingest with a log line.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Codec {
    /// H.264 / AVC, AVCC payloads, config = AVCDecoderConfigurationRecord.
    H264,
    /// H.265 / HEVC, HVCC payloads, config = HEVCDecoderConfigurationRecord.
    H265,
    /// AV1, OBU payloads, config = AV1CodecConfigurationRecord (av1C).
    Av1,
    /// VP9 frames, config = VPCodecConfigurationRecord (vpcC).
    Vp9,
    /// VP8 frames (WebRTC only), no config.
    Vp8,
    /// AAC raw frames, config = AudioSpecificConfig.
    Aac,
    /// Opus packets, config = OpusHead (dOps layout) or empty.
    Opus,
    /// MP3 frames (legacy FLV sound format 2), no config.
    Mp3,
    /// G.711 A-law (legacy FLV sound format 7).
    G711A,
    /// G.711 µ-law (legacy FLV sound format 8).
    G711U,
}

impl Codec {
    /// The media type this codec belongs to.
    pub fn media_type(self) -> MediaType {
        match self {
            Codec::H264 | Codec::H265 | Codec::Av1 | Codec::Vp9 | Codec::Vp8 => MediaType::Video,
            Codec::Aac | Codec::Opus | Codec::Mp3 | Codec::G711A | Codec::G711U => MediaType::Audio,
        }
    }

    /// A short lowercase name for logs, metrics and API answers (`h264`, `aac`, ...).
    pub fn name(self) -> &'static str {
        match self {
            Codec::H264 => "h264",
            Codec::H265 => "h265",
            Codec::Av1 => "av1",
            Codec::Vp9 => "vp9",
            Codec::Vp8 => "vp8",
            Codec::Aac => "aac",
            Codec::Opus => "opus",
            Codec::Mp3 => "mp3",
            Codec::G711A => "pcma",
            Codec::G711U => "pcmu",
        }
    }

    /// Whether frames of this codec need a configuration record before they can be decoded.
    pub fn needs_config(self) -> bool {
        matches!(self, Codec::H264 | Codec::H265 | Codec::Av1 | Codec::Aac)
    }
}

/// One access unit: a whole picture or one audio frame, as it travels through the hub.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Frame {
    /// Video or audio; a stream has at most one track of each.
    pub media: MediaType,
    /// The codec of the payload.
    pub codec: Codec,
    /// Units per second of `dts` and `pts` (1000 for RTMP/FLV, 90000 for MPEG-TS video, ...).
    pub timebase: u32,
    /// Decode timestamp in `timebase` units.
    pub dts: i64,
    /// Presentation timestamp in `timebase` units (equal to `dts` for audio and for video without B-frames).
    pub pts: i64,
    /// A random access point: a decoder can start here given the track's config.
    pub keyframe: bool,
    /// The payload in the codec's canonical form (see the crate docs). Never copied between ingest and egress.
    pub data: Bytes,
}

impl Frame {
    /// Decode timestamp in milliseconds (rounded down).
    pub fn dts_ms(&self) -> i64 {
        rescale(self.dts, self.timebase, 1000)
    }

    /// Presentation timestamp in milliseconds (rounded down).
    pub fn pts_ms(&self) -> i64 {
        rescale(self.pts, self.timebase, 1000)
    }

    /// `pts - dts` in milliseconds: the FLV/RTMP composition time offset.
    pub fn composition_ms(&self) -> i64 {
        self.pts_ms() - self.dts_ms()
    }
}

/// Converts a timestamp between timebases with integer arithmetic (floor division, no overflow for
/// timestamps that fit in 2^40 units).
pub fn rescale(value: i64, from: u32, to: u32) -> i64 {
    if from == to || from == 0 {
        return value;
    }
    let v = value as i128 * to as i128;
    v.div_euclid(from as i128) as i64
}

/// The parameters of one track: what a muxer needs to write a header and a decoder needs to start.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TrackInfo {
    /// Video or audio.
    pub media: MediaType,
    /// The codec of the track's frames.
    pub codec: Codec,
    /// Units per second of the frames' timestamps.
    pub timebase: u32,
    /// The codec configuration record (see [`Codec`] for its form per codec); empty when the codec has none.
    pub config: Bytes,
    /// Picture parameters parsed from `config`, when this is a video track and they could be read.
    pub video: Option<VideoParams>,
    /// Sound parameters parsed from `config` (or from the container), when this is an audio track.
    pub audio: Option<AudioParams>,
}

impl TrackInfo {
    /// Builds a track info from a codec and its configuration record, parsing what can be parsed.
    /// A configuration that cannot be parsed is an error: a stream with it could not be decoded downstream.
    pub fn from_config(codec: Codec, timebase: u32, config: Bytes) -> Result<TrackInfo, CodecError> {
        let media = codec.media_type();
        let (video, audio) = match codec {
            Codec::H264 => (Some(codec::parse_avc_config(&config)?), None),
            Codec::H265 => (Some(codec::parse_hevc_config(&config)?), None),
            Codec::Av1 => (codec::parse_av1_config(&config).ok(), None),
            Codec::Aac => (None, Some(codec::parse_audio_specific_config(&config)?)),
            Codec::Opus => {
                (None, Some(codec::parse_opus_head(&config).unwrap_or(AudioParams { sample_rate: 48000, channels: 2 })))
            }
            _ => (None, None),
        };
        Ok(TrackInfo { media, codec, timebase, config, video, audio })
    }
}
