//! FLV tags, including Enhanced RTMP (Veovera E-RTMP v1 and v2): parsing audio/video tag bodies into codec
//! configs and frames, writing tag bodies and whole tags for frames, and a sans-IO FLV stream reader.
//!
//! An RTMP audio/video message body is exactly an FLV tag body, so [`parse_video_tag`], [`parse_audio_tag`],
//! [`frame_body_header`], [`config_body`] and [`end_of_sequence_body`] serve RTMP as well as FLV files and
//! HTTP-FLV.
//!
//! Every parser here takes untrusted bytes: no input makes them panic, payloads are zero-copy slices of the
//! input, and malformed input is an [`FlvError`].

use bytes::{BufMut, Bytes, BytesMut};
use ferrocast_media::codec::{self, AudioParams, OpusConfig};
use ferrocast_media::{Codec, Frame, MediaType, TrackInfo};

/// FLV tag type (and RTMP message type) of audio.
pub const TAG_AUDIO: u8 = 8;
/// FLV tag type (and RTMP message type) of video.
pub const TAG_VIDEO: u8 = 9;
/// FLV tag type of script data (AMF0 `onMetaData`; RTMP message type 18 is AMF0 data too).
pub const TAG_SCRIPT: u8 = 18;

/// The default bound on a tag body read by [`FlvReader`] (the 24-bit size field allows just under 16 MiB).
pub const MAX_TAG_SIZE: u32 = 16 * 1024 * 1024;

/// The largest header [`FlvReader`] accepts (the header's DataOffset; 9 in every FLV written so far).
const MAX_HEADER_SIZE: u32 = 64 * 1024;

/// Why FLV bytes could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum FlvError {
    /// The named structure ends before it is complete.
    #[error("{0}: data ends early")]
    Truncated(&'static str),
    /// The stream does not start with `FLV`.
    #[error("not an FLV stream (bad signature)")]
    BadSignature,
    /// The FLV header's DataOffset is below 9 or implausibly large.
    #[error("invalid FLV header size {0}")]
    BadHeaderSize(u32),
    /// A tag header names a type other than audio, video or script data.
    #[error("invalid FLV tag type byte {0:#04x}")]
    BadTagType(u8),
    /// The tag is encrypted (its Filter bit is set), which is not supported.
    #[error("encrypted (filtered) FLV tags are not supported")]
    Encrypted,
    /// A tag is larger than the reader's bound.
    #[error("FLV tag of {size} bytes exceeds the limit of {max}")]
    TagTooLarge {
        /// The tag's DataSize.
        size: u32,
        /// The reader's bound.
        max: u32,
    },
    /// A field holds a value that the spec forbids.
    #[error("invalid {0}")]
    Invalid(&'static str),
}

/// A parsed video tag body (legacy FLV or Enhanced RTMP).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum VideoTag {
    /// A sequence header: the codec configuration record (avcC, hvcC, av1C or vpcC body).
    Config {
        /// The codec.
        codec: Codec,
        /// The configuration record, a slice of the input.
        config: Bytes,
    },
    /// A coded frame.
    Frame {
        /// The codec.
        codec: Codec,
        /// Frame type 1 (key frame) or 4 (generated key frame).
        keyframe: bool,
        /// `pts - dts` in milliseconds (signed).
        composition_ms: i32,
        /// The payload (AVCC/HVCC NAL units, AV1 OBUs, VP8/VP9 frame), a slice of the input.
        data: Bytes,
    },
    /// End of the sequence (legacy AVC packet type 2, Enhanced RTMP SequenceEnd).
    EndOfSequence {
        /// The codec.
        codec: Codec,
    },
    /// A valid tag that carries nothing for the hub (command frame, metadata, unsupported codec, ...).
    Ignored {
        /// Why, for logs.
        reason: &'static str,
    },
}

/// A parsed audio tag body (legacy FLV or Enhanced RTMP).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AudioTag {
    /// A sequence header: AudioSpecificConfig for AAC, OpusHead (RFC 7845 form, possibly empty) for Opus.
    Config {
        /// The codec.
        codec: Codec,
        /// The configuration, a slice of the input.
        config: Bytes,
    },
    /// A coded frame.
    Frame {
        /// The codec.
        codec: Codec,
        /// The payload, a slice of the input.
        data: Bytes,
        /// Sound parameters when the tag itself tells them (MP3 from its frame header or the legacy sound flags,
        /// G.711); `None` when they come from the codec config (AAC, Opus).
        params: Option<AudioParams>,
    },
    /// A valid tag that carries nothing for the hub (silence, sequence end, unsupported codec, ...).
    Ignored {
        /// Why, for logs.
        reason: &'static str,
    },
}

/// One tag read from an FLV stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FlvTag {
    /// [`TAG_AUDIO`], [`TAG_VIDEO`] or [`TAG_SCRIPT`].
    pub tag_type: u8,
    /// The tag's timestamp in milliseconds (24 bits plus the extended upper 8 bits).
    pub timestamp_ms: u32,
    /// The tag body, to be given to [`parse_audio_tag`] / [`parse_video_tag`] or an AMF0 reader.
    pub body: Bytes,
}

// ---------------------------------------------------------------------------------------------------------------
// Parsing tag bodies
// ---------------------------------------------------------------------------------------------------------------

/// A cursor over a tag body that hands out zero-copy slices.
struct Cursor<'a> {
    body: &'a Bytes,
    pos: usize,
    what: &'static str,
}

impl<'a> Cursor<'a> {
    fn new(body: &'a Bytes, what: &'static str) -> Self {
        Cursor { body, pos: 0, what }
    }

    fn u8(&mut self) -> Result<u8, FlvError> {
        let b = *self.body.get(self.pos).ok_or(FlvError::Truncated(self.what))?;
        self.pos += 1;
        Ok(b)
    }

    fn array<const N: usize>(&mut self) -> Result<[u8; N], FlvError> {
        let end = self.pos.checked_add(N).ok_or(FlvError::Truncated(self.what))?;
        let bytes = self.body.get(self.pos..end).ok_or(FlvError::Truncated(self.what))?;
        let mut out = [0u8; N];
        out.copy_from_slice(bytes);
        self.pos = end;
        Ok(out)
    }

    fn u16(&mut self) -> Result<u16, FlvError> {
        Ok(u16::from_be_bytes(self.array()?))
    }

    fn u24(&mut self) -> Result<u32, FlvError> {
        let [a, b, c] = self.array()?;
        Ok(u32::from_be_bytes([0, a, b, c]))
    }

    fn si24(&mut self) -> Result<i32, FlvError> {
        let [a, b, c] = self.array()?;
        // Sign-extend from 24 bits.
        Ok(i32::from_be_bytes([a, b, c, 0]) >> 8)
    }

    fn take(&mut self, n: usize) -> Result<Bytes, FlvError> {
        let end = self.pos.checked_add(n).filter(|&e| e <= self.body.len()).ok_or(FlvError::Truncated(self.what))?;
        let out = self.body.slice(self.pos..end);
        self.pos = end;
        Ok(out)
    }

    fn rest(&mut self) -> Bytes {
        let out = self.body.slice(self.pos.min(self.body.len())..);
        self.pos = self.body.len();
        out
    }

    fn is_empty(&self) -> bool {
        self.pos >= self.body.len()
    }

    /// Skips ModEx packets (E-RTMP v2) while `packet_type == modex`, returning the final packet type.
    fn skip_mod_ex(&mut self, mut packet_type: u8, modex: u8) -> Result<u8, FlvError> {
        while packet_type == modex {
            let mut size = usize::from(self.u8()?) + 1;
            if size == 256 {
                size = usize::from(self.u16()?) + 1;
            }
            self.take(size)?;
            // High nibble: the ModEx type (0 = TimestampOffsetNano; sub-millisecond, not carried).
            packet_type = self.u8()? & 0x0f;
        }
        Ok(packet_type)
    }
}

/// Multitrack layout (E-RTMP v2 AvMultitrackType).
#[derive(Clone, Copy, PartialEq, Eq)]
enum Multitrack {
    OneTrack,
    ManyTracks,
    ManyTracksManyCodecs,
}

impl Multitrack {
    fn from_nibble(n: u8) -> Result<Self, FlvError> {
        match n {
            0 => Ok(Multitrack::OneTrack),
            1 => Ok(Multitrack::ManyTracks),
            2 => Ok(Multitrack::ManyTracksManyCodecs),
            _ => Err(FlvError::Invalid("multitrack type")),
        }
    }
}

/// Finds track 0 (the default track) of a multitrack message, returning its FourCC and body.
fn default_track(
    c: &mut Cursor<'_>,
    kind: Multitrack,
    shared_fourcc: [u8; 4],
) -> Result<Option<([u8; 4], Bytes)>, FlvError> {
    while !c.is_empty() {
        let fourcc = if kind == Multitrack::ManyTracksManyCodecs { c.array()? } else { shared_fourcc };
        let track_id = c.u8()?;
        let body = if kind == Multitrack::OneTrack {
            c.rest()
        } else {
            let size = c.u24()? as usize;
            c.take(size)?
        };
        if track_id == 0 {
            return Ok(Some((fourcc, body)));
        }
    }
    Ok(None)
}

mod video_packet {
    pub const SEQUENCE_START: u8 = 0;
    pub const CODED_FRAMES: u8 = 1;
    pub const SEQUENCE_END: u8 = 2;
    pub const CODED_FRAMES_X: u8 = 3;
    pub const METADATA: u8 = 4;
    pub const MPEG2TS_SEQUENCE_START: u8 = 5;
    pub const MULTITRACK: u8 = 6;
    pub const MOD_EX: u8 = 7;
}

mod audio_packet {
    pub const SEQUENCE_START: u8 = 0;
    pub const CODED_FRAMES: u8 = 1;
    pub const SEQUENCE_END: u8 = 2;
    pub const MULTICHANNEL_CONFIG: u8 = 4;
    pub const MULTITRACK: u8 = 5;
    pub const MOD_EX: u8 = 7;
}

const FRAME_KEY: u8 = 1;
const FRAME_INTER: u8 = 2;
const FRAME_GENERATED_KEY: u8 = 4;
const FRAME_COMMAND: u8 = 5;

/// Legacy FLV video codec id of AVC.
const CODEC_ID_AVC: u8 = 7;
/// The non-standard legacy codec id of HEVC used by Chinese CDNs and their encoders.
const CODEC_ID_HEVC: u8 = 12;

fn video_fourcc(codec: Codec) -> Option<&'static [u8; 4]> {
    match codec {
        Codec::H264 => Some(b"avc1"),
        Codec::H265 => Some(b"hvc1"),
        Codec::Av1 => Some(b"av01"),
        Codec::Vp9 => Some(b"vp09"),
        Codec::Vp8 => Some(b"vp08"),
        _ => None,
    }
}

/// Parses a video tag body: legacy AVC (codec id 7), legacy HEVC (codec id 12), and Enhanced RTMP (`avc1`,
/// `hvc1`, `av01`, `vp09`, `vp08`; ModEx packets skipped; for multitrack messages, track 0 is returned).
pub fn parse_video_tag(body: &Bytes) -> Result<VideoTag, FlvError> {
    let mut c = Cursor::new(body, "video tag");
    let first = c.u8()?;
    if first & 0x80 == 0 {
        return parse_legacy_video(&mut c, first >> 4, first & 0x0f);
    }
    let frame_type = (first >> 4) & 0x07;
    let packet_type = c.skip_mod_ex(first & 0x0f, video_packet::MOD_EX)?;
    if packet_type != video_packet::METADATA && frame_type == FRAME_COMMAND {
        c.u8()?; // VideoCommand
        return Ok(VideoTag::Ignored { reason: "video command frame" });
    }
    if packet_type == video_packet::MULTITRACK {
        let b = c.u8()?;
        let kind = Multitrack::from_nibble(b >> 4)?;
        let packet_type = b & 0x0f;
        if packet_type == video_packet::MULTITRACK || packet_type == video_packet::MOD_EX {
            return Err(FlvError::Invalid("multitrack video packet type"));
        }
        let shared = if kind == Multitrack::ManyTracksManyCodecs { [0; 4] } else { c.array()? };
        return match default_track(&mut c, kind, shared)? {
            Some((fourcc, track)) => {
                let mut tc = Cursor::new(&track, "video track");
                parse_enhanced_video(&mut tc, frame_type, packet_type, fourcc)
            }
            None => Ok(VideoTag::Ignored { reason: "multitrack video without track 0" }),
        };
    }
    let fourcc = c.array()?;
    parse_enhanced_video(&mut c, frame_type, packet_type, fourcc)
}

fn parse_legacy_video(c: &mut Cursor<'_>, frame_type: u8, codec_id: u8) -> Result<VideoTag, FlvError> {
    if frame_type == FRAME_COMMAND {
        return Ok(VideoTag::Ignored { reason: "video info/command frame" });
    }
    let codec = match codec_id {
        CODEC_ID_AVC => Codec::H264,
        CODEC_ID_HEVC => Codec::H265,
        _ => {
            return Ok(VideoTag::Ignored { reason: "unsupported legacy video codec" });
        }
    };
    let packet_type = c.u8()?;
    let composition_ms = c.si24()?;
    match packet_type {
        0 => Ok(video_config(codec, c.rest())),
        1 => coded_frame(codec, frame_type, composition_ms, c.rest()),
        2 => Ok(VideoTag::EndOfSequence { codec }),
        _ => Ok(VideoTag::Ignored { reason: "unknown AVC packet type" }),
    }
}

/// A sequence header; an empty one (sent by some encoders as a placeholder before the real one) is ignored.
fn video_config(codec: Codec, config: Bytes) -> VideoTag {
    if config.is_empty() {
        VideoTag::Ignored { reason: "empty video sequence header" }
    } else {
        VideoTag::Config { codec, config }
    }
}

fn coded_frame(codec: Codec, frame_type: u8, composition_ms: i32, data: Bytes) -> Result<VideoTag, FlvError> {
    if data.is_empty() {
        return Ok(VideoTag::Ignored { reason: "empty video frame" });
    }
    let keyframe = frame_type == FRAME_KEY || frame_type == FRAME_GENERATED_KEY;
    Ok(VideoTag::Frame { codec, keyframe, composition_ms, data })
}

fn parse_enhanced_video(
    c: &mut Cursor<'_>,
    frame_type: u8,
    packet_type: u8,
    fourcc: [u8; 4],
) -> Result<VideoTag, FlvError> {
    let codec = match &fourcc {
        b"avc1" => Codec::H264,
        b"hvc1" => Codec::H265,
        b"av01" => Codec::Av1,
        b"vp09" => Codec::Vp9,
        b"vp08" => Codec::Vp8,
        _ => {
            return Ok(VideoTag::Ignored { reason: "unsupported video FourCC" });
        }
    };
    match packet_type {
        video_packet::SEQUENCE_START => Ok(video_config(codec, c.rest())),
        video_packet::CODED_FRAMES => {
            let composition_ms = if matches!(codec, Codec::H264 | Codec::H265) { c.si24()? } else { 0 };
            coded_frame(codec, frame_type, composition_ms, c.rest())
        }
        video_packet::CODED_FRAMES_X => coded_frame(codec, frame_type, 0, c.rest()),
        video_packet::SEQUENCE_END => Ok(VideoTag::EndOfSequence { codec }),
        video_packet::METADATA => Ok(VideoTag::Ignored { reason: "video metadata packet" }),
        video_packet::MPEG2TS_SEQUENCE_START => Ok(VideoTag::Ignored { reason: "MPEG-2 TS sequence start" }),
        _ => Ok(VideoTag::Ignored { reason: "unknown video packet type" }),
    }
}

/// Parses an audio tag body: legacy AAC (sound format 10; packet type 0 = AudioSpecificConfig), MP3 (2, and 14 =
/// MP3 8 kHz), G.711 A-law/µ-law (7/8), and Enhanced RTMP (sound format 9: `mp4a`, `Opus`, `.mp3`; `fLaC`,
/// `ac-3`, `ec-3` are recognised but ignored; ModEx packets skipped; for multitrack messages, track 0 is
/// returned). An empty body is the RTMP silence message.
pub fn parse_audio_tag(body: &Bytes) -> Result<AudioTag, FlvError> {
    let mut c = Cursor::new(body, "audio tag");
    let Ok(first) = c.u8() else {
        return Ok(AudioTag::Ignored { reason: "empty audio message (silence)" });
    };
    let format = first >> 4;
    let flag_params = AudioParams {
        sample_rate: match (first >> 2) & 3 {
            0 => 5512,
            1 => 11025,
            2 => 22050,
            _ => 44100,
        },
        channels: if first & 1 == 1 { 2 } else { 1 },
    };
    match format {
        10 => match c.u8()? {
            0 => Ok(audio_config(Codec::Aac, c.rest())),
            1 => audio_frame(Codec::Aac, c.rest(), None),
            _ => Ok(AudioTag::Ignored { reason: "unknown AAC packet type" }),
        },
        2 | 14 => {
            let data = c.rest();
            let params = codec::parse_mpeg_audio_header(&data).ok().or(Some(if format == 14 {
                AudioParams { sample_rate: 8000, channels: flag_params.channels }
            } else {
                flag_params
            }));
            audio_frame(Codec::Mp3, data, params)
        }
        7 | 8 => {
            let codec = if format == 7 { Codec::G711A } else { Codec::G711U };
            audio_frame(codec, c.rest(), Some(AudioParams { sample_rate: 8000, channels: flag_params.channels }))
        }
        9 => parse_enhanced_audio(&mut c, first & 0x0f),
        _ => Ok(AudioTag::Ignored { reason: "unsupported legacy sound format" }),
    }
}

/// A sequence header; an empty one is ignored except for Opus, where it means plain mono/stereo.
fn audio_config(codec: Codec, config: Bytes) -> AudioTag {
    if config.is_empty() && codec != Codec::Opus {
        AudioTag::Ignored { reason: "empty audio sequence header" }
    } else {
        AudioTag::Config { codec, config }
    }
}

fn audio_frame(codec: Codec, data: Bytes, params: Option<AudioParams>) -> Result<AudioTag, FlvError> {
    if data.is_empty() {
        return Ok(AudioTag::Ignored { reason: "empty audio frame" });
    }
    Ok(AudioTag::Frame { codec, data, params })
}

fn parse_enhanced_audio(c: &mut Cursor<'_>, packet_type: u8) -> Result<AudioTag, FlvError> {
    let packet_type = c.skip_mod_ex(packet_type, audio_packet::MOD_EX)?;
    if packet_type == audio_packet::MULTITRACK {
        let b = c.u8()?;
        let kind = Multitrack::from_nibble(b >> 4)?;
        let packet_type = b & 0x0f;
        if packet_type == audio_packet::MULTITRACK || packet_type == audio_packet::MOD_EX {
            return Err(FlvError::Invalid("multitrack audio packet type"));
        }
        let shared = if kind == Multitrack::ManyTracksManyCodecs { [0; 4] } else { c.array()? };
        return match default_track(c, kind, shared)? {
            Some((fourcc, track)) => {
                let mut tc = Cursor::new(&track, "audio track");
                enhanced_audio_body(&mut tc, packet_type, fourcc)
            }
            None => Ok(AudioTag::Ignored { reason: "multitrack audio without track 0" }),
        };
    }
    let fourcc = c.array()?;
    enhanced_audio_body(c, packet_type, fourcc)
}

fn enhanced_audio_body(c: &mut Cursor<'_>, packet_type: u8, fourcc: [u8; 4]) -> Result<AudioTag, FlvError> {
    let codec = match &fourcc {
        b"mp4a" => Codec::Aac,
        b"Opus" => Codec::Opus,
        b".mp3" => Codec::Mp3,
        b"fLaC" | b"ac-3" | b"ec-3" => {
            return Ok(AudioTag::Ignored { reason: "unsupported audio codec (FLAC/AC-3/E-AC-3)" });
        }
        _ => {
            return Ok(AudioTag::Ignored { reason: "unsupported audio FourCC" });
        }
    };
    match packet_type {
        audio_packet::SEQUENCE_START => Ok(audio_config(codec, c.rest())),
        audio_packet::CODED_FRAMES => {
            let data = c.rest();
            let params = if codec == Codec::Mp3 { codec::parse_mpeg_audio_header(&data).ok() } else { None };
            audio_frame(codec, data, params)
        }
        audio_packet::SEQUENCE_END => Ok(AudioTag::Ignored { reason: "audio sequence end" }),
        audio_packet::MULTICHANNEL_CONFIG => Ok(AudioTag::Ignored { reason: "audio multichannel config" }),
        _ => Ok(AudioTag::Ignored { reason: "unknown audio packet type" }),
    }
}

/// Turns a parsed video tag into a [`Frame`] (timebase 1000, `dts` = the tag timestamp, `pts = dts + cts`);
/// `None` for anything but [`VideoTag::Frame`].
pub fn video_frame_from_tag(tag: VideoTag, timestamp_ms: i64) -> Option<Frame> {
    match tag {
        VideoTag::Frame { codec, keyframe, composition_ms, data } => Some(Frame {
            media: MediaType::Video,
            codec,
            timebase: 1000,
            dts: timestamp_ms,
            pts: timestamp_ms + i64::from(composition_ms),
            keyframe,
            data,
        }),
        _ => None,
    }
}

/// Turns a parsed audio tag into a [`Frame`] (timebase 1000, `pts = dts` = the tag timestamp, every audio frame a
/// keyframe); `None` for anything but [`AudioTag::Frame`].
pub fn audio_frame_from_tag(tag: AudioTag, timestamp_ms: i64) -> Option<Frame> {
    match tag {
        AudioTag::Frame { codec, data, .. } => Some(Frame {
            media: MediaType::Audio,
            codec,
            timebase: 1000,
            dts: timestamp_ms,
            pts: timestamp_ms,
            keyframe: true,
            data,
        }),
        _ => None,
    }
}

// ---------------------------------------------------------------------------------------------------------------
// Writing tag bodies
// ---------------------------------------------------------------------------------------------------------------

/// Legacy sound flags for AAC (the spec requires 44 kHz, 16-bit, stereo whatever the stream is).
const AAC_FLAGS: u8 = 0xaf;
const MP3_FLAGS: u8 = 0x2f;
const G711A_FLAGS: u8 = 0x72;
const G711U_FLAGS: u8 = 0x82;
/// Sound format 9 (ExHeader) in the high nibble.
const AUDIO_EX_HEADER: u8 = 0x90;

fn si24_bytes(value: i64) -> [u8; 3] {
    let v = value.clamp(-(1 << 23), (1 << 23) - 1) as i32;
    let [_, a, b, c] = v.to_be_bytes();
    [a, b, c]
}

/// Writes the tag-body bytes that precede a frame's payload into `out` and returns their length (at most 16):
/// the legacy form for H.264 (with SI24 composition time), AAC, MP3 and G.711, the Enhanced RTMP form for H.265
/// (CodedFrames with composition time, or CodedFramesX when it is zero), AV1, VP9, VP8 and Opus.
pub fn frame_body_header(frame: &Frame, out: &mut [u8; 16]) -> usize {
    let frame_type = if frame.keyframe { FRAME_KEY } else { FRAME_INTER };
    let cts = frame.composition_ms();
    match frame.codec {
        Codec::H264 => {
            out[0] = frame_type << 4 | CODEC_ID_AVC;
            out[1] = 1;
            out[2..5].copy_from_slice(&si24_bytes(cts));
            5
        }
        Codec::H265 | Codec::Av1 | Codec::Vp9 | Codec::Vp8 => {
            let with_cts = frame.codec == Codec::H265 && cts != 0;
            let packet_type = if frame.codec == Codec::H265 && !with_cts {
                video_packet::CODED_FRAMES_X
            } else {
                video_packet::CODED_FRAMES
            };
            out[0] = 0x80 | frame_type << 4 | packet_type;
            out[1..5].copy_from_slice(video_fourcc(frame.codec).unwrap_or(b"    "));
            if with_cts {
                out[5..8].copy_from_slice(&si24_bytes(cts));
                8
            } else {
                5
            }
        }
        Codec::Aac => {
            out[0] = AAC_FLAGS;
            out[1] = 1;
            2
        }
        Codec::Opus => {
            out[0] = AUDIO_EX_HEADER | audio_packet::CODED_FRAMES;
            out[1..5].copy_from_slice(b"Opus");
            5
        }
        Codec::Mp3 => {
            out[0] = MP3_FLAGS;
            1
        }
        Codec::G711A => {
            out[0] = G711A_FLAGS;
            1
        }
        Codec::G711U => {
            out[0] = G711U_FLAGS;
            1
        }
    }
}

/// A complete tag body for a track's sequence header, or `None` if the codec has none in FLV (MP3, G.711, VP8).
/// For Opus the body carries the OpusHead in its RFC 7845 form, converted from `dOps` or made up from the track's
/// channel count when the track config is not an OpusHead.
pub fn config_body(track: &TrackInfo) -> Option<Bytes> {
    let mut out = BytesMut::with_capacity(8 + track.config.len());
    match track.codec {
        Codec::H264 => out.put_slice(&[0x10 | CODEC_ID_AVC, 0, 0, 0, 0]),
        Codec::H265 | Codec::Av1 | Codec::Vp9 => {
            out.put_u8(0x80 | FRAME_KEY << 4 | video_packet::SEQUENCE_START);
            out.put_slice(video_fourcc(track.codec)?);
        }
        Codec::Aac => out.put_slice(&[AAC_FLAGS, 0]),
        Codec::Opus => {
            out.put_u8(AUDIO_EX_HEADER | audio_packet::SEQUENCE_START);
            out.put_slice(b"Opus");
            let head = match codec::parse_opus_config(&track.config) {
                Ok(config) => config.to_opus_head(),
                Err(_) => {
                    let channels = track.audio.map_or(2, |a| a.channels.clamp(1, 2));
                    OpusConfig {
                        channels,
                        pre_skip: 0,
                        input_sample_rate: 48000,
                        output_gain: 0,
                        mapping_family: 0,
                        stream_count: 1,
                        coupled_count: channels - 1,
                        channel_mapping: Vec::new(),
                    }
                    .to_opus_head()
                }
            };
            out.put_slice(&head);
            return Some(out.freeze());
        }
        Codec::Vp8 | Codec::Mp3 | Codec::G711A | Codec::G711U => return None,
    }
    out.put_slice(&track.config);
    Some(out.freeze())
}

/// An end-of-sequence body for a video track (legacy AVC packet type 2, Enhanced RTMP SequenceEnd), or `None` for
/// audio tracks.
pub fn end_of_sequence_body(track: &TrackInfo) -> Option<Bytes> {
    match track.codec {
        Codec::H264 => Some(Bytes::from_static(&[0x10 | CODEC_ID_AVC, 2, 0, 0, 0])),
        Codec::H265 | Codec::Av1 | Codec::Vp9 | Codec::Vp8 => {
            let mut out = BytesMut::with_capacity(5);
            out.put_u8(0x80 | FRAME_KEY << 4 | video_packet::SEQUENCE_END);
            out.put_slice(video_fourcc(track.codec)?);
            Some(out.freeze())
        }
        _ => None,
    }
}

// ---------------------------------------------------------------------------------------------------------------
// Writing tags and files
// ---------------------------------------------------------------------------------------------------------------

/// An 11-byte FLV tag header. `body_len` must be below 16 MiB (only its low 24 bits are written); the timestamp
/// is written as 24 bits plus the extended upper 8 bits; the stream id is 0.
pub fn tag_header(tag_type: u8, body_len: u32, timestamp_ms: u32) -> [u8; 11] {
    let [_, l1, l2, l3] = body_len.to_be_bytes();
    let [t0, t1, t2, t3] = timestamp_ms.to_be_bytes();
    [tag_type, l1, l2, l3, t1, t2, t3, t0, 0, 0, 0]
}

/// The 9-byte FLV file header followed by PreviousTagSize0.
pub fn file_header(has_audio: bool, has_video: bool) -> [u8; 13] {
    let flags = if has_audio { 4 } else { 0 } | if has_video { 1 } else { 0 };
    [b'F', b'L', b'V', 1, flags, 0, 0, 0, 9, 0, 0, 0, 0]
}

/// The three parts of a whole FLV tag, for "mux once, send to many": tag header (plus the frame's body header),
/// the body or payload itself (zero-copy), and the 4-byte PreviousTagSize. Both small parts share one allocation.
fn tag_parts(tag_type: u8, head: &[u8], payload: Bytes, timestamp_ms: u32) -> [Bytes; 3] {
    let body_len = (head.len() + payload.len()) as u32;
    let mut buf = BytesMut::with_capacity(11 + head.len() + 4);
    buf.put_slice(&tag_header(tag_type, body_len, timestamp_ms));
    buf.put_slice(head);
    buf.put_u32(11 + body_len);
    let mut head_part = buf.freeze();
    let trailer = head_part.split_off(11 + head.len());
    [head_part, payload, trailer]
}

/// The bytes of one frame as a whole FLV tag: `[tag header + body header, payload, PreviousTagSize]`, with the
/// payload a clone of `frame.data` (no copy). The timestamp is usually the frame's `dts_ms()`.
pub fn frame_tag(frame: &Frame, timestamp_ms: u32) -> [Bytes; 3] {
    let mut head = [0u8; 16];
    let n = frame_body_header(frame, &mut head);
    let tag_type = match frame.media {
        MediaType::Audio => TAG_AUDIO,
        MediaType::Video => TAG_VIDEO,
    };
    tag_parts(tag_type, head.get(..n).unwrap_or_default(), frame.data.clone(), timestamp_ms)
}

/// The bytes of a prepared body (sequence header, end of sequence, script data) as a whole FLV tag:
/// `[tag header, body, PreviousTagSize]`.
pub fn body_tag(tag_type: u8, body: Bytes, timestamp_ms: u32) -> [Bytes; 3] {
    tag_parts(tag_type, &[], body, timestamp_ms)
}

// ---------------------------------------------------------------------------------------------------------------
// Reading FLV streams
// ---------------------------------------------------------------------------------------------------------------

/// The fields of an FLV file header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FlvHeader {
    /// The version byte (1).
    pub version: u8,
    /// The TypeFlagsAudio bit.
    pub has_audio: bool,
    /// The TypeFlagsVideo bit.
    pub has_video: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ReadState {
    /// Waiting for the 9-byte header.
    Header,
    /// Skipping the rest of a header longer than 9 bytes.
    SkipHeader(usize),
    /// Expecting a PreviousTagSize (or, tolerated, a tag header right away).
    PreviousTagSize,
    /// Expecting a tag header.
    Tag,
}

/// The tracks and frames of a whole FLV file.
#[derive(Debug, Clone, Default)]
pub struct FlvMedia {
    /// The video track, from the last video sequence header.
    pub video: Option<TrackInfo>,
    /// The audio track, from the last audio sequence header.
    pub audio: Option<TrackInfo>,
    /// Every audio and video frame, in file order, with millisecond timestamps.
    pub frames: Vec<Frame>,
}

/// Reads a whole FLV file (e.g. a `--file` source to loop, or a recording) into its tracks and frames.
pub fn demux(data: &[u8]) -> Result<FlvMedia, FlvError> {
    let mut reader = FlvReader::new();
    reader.push(data);
    let mut media = FlvMedia::default();
    while let Some(tag) = reader.next_tag()? {
        let ts = i64::from(tag.timestamp_ms);
        match tag.tag_type {
            TAG_VIDEO => match parse_video_tag(&tag.body)? {
                VideoTag::Config { codec, config } => {
                    media.video = Some(
                        TrackInfo::from_config(codec, 1000, config)
                            .map_err(|_| FlvError::Invalid("video sequence header"))?,
                    )
                }
                t => media.frames.extend(video_frame_from_tag(t, ts)),
            },
            TAG_AUDIO => match parse_audio_tag(&tag.body)? {
                AudioTag::Config { codec, config } => {
                    media.audio = Some(
                        TrackInfo::from_config(codec, 1000, config)
                            .map_err(|_| FlvError::Invalid("audio sequence header"))?,
                    )
                }
                t => media.frames.extend(audio_frame_from_tag(t, ts)),
            },
            _ => {}
        }
    }
    Ok(media)
}

/// A sans-IO FLV stream reader: [`push`](FlvReader::push) bytes as they arrive (file chunks, an HTTP body),
/// then call [`next_tag`](FlvReader::next_tag) until it returns `Ok(None)`.
///
/// It validates the header, ignores the value of PreviousTagSize fields and tolerates their absence, bounds tag
/// sizes, and reports garbage as an error (after which it keeps returning that error). Tag bodies are zero-copy
/// slices of the reader's buffer.
#[derive(Debug)]
pub struct FlvReader {
    buf: BytesMut,
    state: ReadState,
    max_tag_size: u32,
    header: Option<FlvHeader>,
    failed: Option<FlvError>,
}

impl Default for FlvReader {
    fn default() -> Self {
        FlvReader::new()
    }
}

impl FlvReader {
    /// A reader expecting an FLV header first, with the default tag bound [`MAX_TAG_SIZE`].
    pub fn new() -> Self {
        FlvReader::with_max_tag_size(MAX_TAG_SIZE)
    }

    /// A reader that refuses tags whose body is larger than `max_tag_size` bytes.
    pub fn with_max_tag_size(max_tag_size: u32) -> Self {
        FlvReader { buf: BytesMut::new(), state: ReadState::Header, max_tag_size, header: None, failed: None }
    }

    /// Appends received bytes.
    pub fn push(&mut self, data: &[u8]) {
        self.buf.extend_from_slice(data);
    }

    /// The file header, once it has been read.
    pub fn header(&self) -> Option<FlvHeader> {
        self.header
    }

    /// Bytes received but not yet returned as tags.
    pub fn buffered(&self) -> usize {
        self.buf.len()
    }

    /// The next complete tag, `Ok(None)` if more bytes are needed, or the error that stopped the stream.
    pub fn next_tag(&mut self) -> Result<Option<FlvTag>, FlvError> {
        if let Some(err) = &self.failed {
            return Err(err.clone());
        }
        let result = self.advance();
        if let Err(err) = &result {
            self.failed = Some(err.clone());
        }
        result
    }

    fn advance(&mut self) -> Result<Option<FlvTag>, FlvError> {
        loop {
            match self.state {
                ReadState::Header => {
                    let Some(h) = self.buf.first_chunk::<9>() else {
                        // Fail early on a wrong signature even before 9 bytes are there.
                        if !b"FLV".starts_with(self.buf.get(..self.buf.len().min(3)).unwrap_or_default()) {
                            return Err(FlvError::BadSignature);
                        }
                        return Ok(None);
                    };
                    if &h[..3] != b"FLV" {
                        return Err(FlvError::BadSignature);
                    }
                    let offset = u32::from_be_bytes([h[5], h[6], h[7], h[8]]);
                    if !(9..=MAX_HEADER_SIZE).contains(&offset) {
                        return Err(FlvError::BadHeaderSize(offset));
                    }
                    self.header = Some(FlvHeader { version: h[3], has_audio: h[4] & 4 != 0, has_video: h[4] & 1 != 0 });
                    let _ = self.buf.split_to(9);
                    self.state = ReadState::SkipHeader(offset as usize - 9);
                }
                ReadState::SkipHeader(remaining) => {
                    let n = remaining.min(self.buf.len());
                    let _ = self.buf.split_to(n);
                    if n < remaining {
                        self.state = ReadState::SkipHeader(remaining - n);
                        return Ok(None);
                    }
                    self.state = ReadState::PreviousTagSize;
                }
                ReadState::PreviousTagSize => {
                    let Some(&first) = self.buf.first() else {
                        return Ok(None);
                    };
                    // A PreviousTagSize is below 2^25, so its first byte is 0 or 1; a tag starts with its type
                    // (possibly with the Filter bit), so a missing PreviousTagSize is recognised.
                    let tag_start = first <= 0x3f && matches!(first & 0x1f, TAG_AUDIO | TAG_VIDEO | TAG_SCRIPT);
                    if !tag_start {
                        if first > 1 {
                            return Err(FlvError::Invalid("PreviousTagSize"));
                        }
                        if self.buf.len() < 4 {
                            return Ok(None);
                        }
                        let _ = self.buf.split_to(4);
                    }
                    self.state = ReadState::Tag;
                }
                ReadState::Tag => {
                    let Some(h) = self.buf.first_chunk::<11>() else {
                        return Ok(None);
                    };
                    let type_byte = h[0];
                    if type_byte & 0x20 != 0 {
                        return Err(FlvError::Encrypted);
                    }
                    let tag_type = type_byte & 0x1f;
                    if type_byte & 0xc0 != 0 || !matches!(tag_type, TAG_AUDIO | TAG_VIDEO | TAG_SCRIPT) {
                        return Err(FlvError::BadTagType(type_byte));
                    }
                    let size = u32::from_be_bytes([0, h[1], h[2], h[3]]);
                    if size > self.max_tag_size {
                        return Err(FlvError::TagTooLarge { size, max: self.max_tag_size });
                    }
                    let timestamp_ms = u32::from_be_bytes([h[7], h[4], h[5], h[6]]);
                    let total = 11 + size as usize;
                    if self.buf.len() < total {
                        // No eager reservation: memory grows with bytes received, not with sizes claimed.
                        return Ok(None);
                    }
                    let _ = self.buf.split_to(11);
                    let body = self.buf.split_to(size as usize).freeze();
                    self.state = ReadState::PreviousTagSize;
                    return Ok(Some(FlvTag { tag_type, timestamp_ms, body }));
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame(codec: Codec, keyframe: bool, dts: i64, pts: i64, data: &'static [u8]) -> Frame {
        Frame { media: codec.media_type(), codec, timebase: 1000, dts, pts, keyframe, data: Bytes::from_static(data) }
    }

    fn body_of(frame: &Frame) -> Bytes {
        let mut head = [0u8; 16];
        let n = frame_body_header(frame, &mut head);
        let mut body = head[..n].to_vec();
        body.extend_from_slice(&frame.data);
        Bytes::from(body)
    }

    #[test]
    fn video_frames_round_trip() {
        let cases = [
            (frame(Codec::H264, true, 1000, 1080, b"\0\0\0\x02\x65\x88"), 5),
            (frame(Codec::H264, false, 1000, 960, b"\0\0\0\x01\x41"), 5),
            (frame(Codec::H265, true, 40, 40, b"\0\0\0\x02\x26\x01"), 5),
            (frame(Codec::H265, false, 40, 120, b"\0\0\0\x02\x02\x01"), 8),
            (frame(Codec::H265, false, 400, 360, b"\0\0\0\x02\x02\x01"), 8),
            (frame(Codec::Av1, true, 0, 0, b"\x12\x00\x32\x01\x10"), 5),
            (frame(Codec::Vp9, false, 33, 33, b"\x86\x00"), 5),
            (frame(Codec::Vp8, true, 33, 33, b"\x10\x02\x00"), 5),
        ];
        for (f, header_len) in cases {
            let body = body_of(&f);
            assert_eq!(body.len(), header_len + f.data.len(), "{:?}", f.codec);
            let tag = parse_video_tag(&body).unwrap();
            let VideoTag::Frame { data, .. } = &tag else { panic!("{tag:?}") };
            // Zero-copy: the payload points into the body.
            assert_eq!(data.as_ptr(), body[header_len..].as_ptr());
            assert_eq!(video_frame_from_tag(tag, f.dts), Some(f));
        }
    }

    #[test]
    fn audio_frames_round_trip() {
        let cases = [
            (frame(Codec::Aac, true, 23, 23, b"\x21\x10\x04"), 2),
            (frame(Codec::Opus, true, 20, 20, b"\xfc\xff\xfe"), 5),
            (frame(Codec::Mp3, true, 26, 26, b"\xff\xfb\x90\x64\0\0"), 1),
            (frame(Codec::G711A, true, 20, 20, b"\xd5\xd5"), 1),
            (frame(Codec::G711U, true, 20, 20, b"\xff\x7f"), 1),
        ];
        for (f, header_len) in cases {
            let body = body_of(&f);
            assert_eq!(body.len(), header_len + f.data.len());
            let tag = parse_audio_tag(&body).unwrap();
            let AudioTag::Frame { data, .. } = &tag else { panic!("{tag:?}") };
            assert_eq!(data.as_ptr(), body[header_len..].as_ptr());
            assert_eq!(audio_frame_from_tag(tag, f.dts), Some(f));
        }
    }

    #[test]
    fn composition_time_is_signed_and_clamped() {
        let body = Bytes::from_static(&[0x27, 1, 0xff, 0xff, 0xd8, 0, 0, 0, 1, 0x41]);
        assert!(matches!(parse_video_tag(&body), Ok(VideoTag::Frame { composition_ms: -40, keyframe: false, .. })));
        let body = Bytes::from_static(&[0x17, 1, 0x7f, 0xff, 0xff, 0, 0, 0, 1, 0x65]);
        assert!(matches!(
            parse_video_tag(&body),
            Ok(VideoTag::Frame { composition_ms: 8_388_607, keyframe: true, .. })
        ));
        assert_eq!(si24_bytes(1 << 30), [0x7f, 0xff, 0xff]);
        assert_eq!(si24_bytes(-(1 << 30)), [0x80, 0, 0]);
        assert_eq!(si24_bytes(-1), [0xff, 0xff, 0xff]);
    }

    #[test]
    fn legacy_video_tags() {
        let config = Bytes::from_static(&[0x17, 0, 0, 0, 0, 1, 0x64, 0, 0x1f]);
        assert_eq!(
            parse_video_tag(&config),
            Ok(VideoTag::Config { codec: Codec::H264, config: Bytes::from_static(&[1, 0x64, 0, 0x1f]) })
        );
        let hevc = Bytes::from_static(&[0x1c, 0, 0, 0, 0, 1, 2, 3]);
        assert!(matches!(parse_video_tag(&hevc), Ok(VideoTag::Config { codec: Codec::H265, .. })));
        let hevc_frame = Bytes::from_static(&[0x2c, 1, 0, 0, 0x50, 0, 0, 0, 1, 2]);
        assert!(matches!(
            parse_video_tag(&hevc_frame),
            Ok(VideoTag::Frame { codec: Codec::H265, composition_ms: 80, keyframe: false, .. })
        ));
        let eos = Bytes::from_static(&[0x17, 2, 0, 0, 0]);
        assert_eq!(parse_video_tag(&eos), Ok(VideoTag::EndOfSequence { codec: Codec::H264 }));
        for ignored in [&[0x57, 0][..], &[0x12, 0, 0], &[0x17, 9, 0, 0, 0], &[0x17, 1, 0, 0, 0]] {
            assert!(
                matches!(parse_video_tag(&Bytes::copy_from_slice(ignored)), Ok(VideoTag::Ignored { .. })),
                "{ignored:?}"
            );
        }
        for truncated in [&[][..], &[0x17], &[0x17, 1, 0, 0]] {
            assert!(matches!(parse_video_tag(&Bytes::copy_from_slice(truncated)), Err(FlvError::Truncated(_))));
        }
    }

    #[test]
    fn enhanced_video_tags() {
        // SequenceStart for each FourCC.
        for (fourcc, codec) in
            [(b"hvc1", Codec::H265), (b"av01", Codec::Av1), (b"vp09", Codec::Vp9), (b"avc1", Codec::H264)]
        {
            let mut body = vec![0x90];
            body.extend_from_slice(fourcc);
            body.extend_from_slice(&[1, 2, 3]);
            let tag = parse_video_tag(&Bytes::from(body)).unwrap();
            assert_eq!(tag, VideoTag::Config { codec, config: Bytes::from_static(&[1, 2, 3]) });
        }
        // CodedFrames with cts for avc1; CodedFramesX; SequenceEnd; generated keyframe.
        let b = Bytes::from_static(b"\xa1avc1\x00\x00\x21\x00\x00\x00\x01\x41");
        assert!(matches!(
            parse_video_tag(&b),
            Ok(VideoTag::Frame { codec: Codec::H264, composition_ms: 33, keyframe: false, .. })
        ));
        let b = Bytes::from_static(b"\x93hvc1\x00\x00\x00\x01\x26");
        assert!(matches!(
            parse_video_tag(&b),
            Ok(VideoTag::Frame { codec: Codec::H265, composition_ms: 0, keyframe: true, .. })
        ));
        let b = Bytes::from_static(b"\x92av01");
        assert_eq!(parse_video_tag(&b), Ok(VideoTag::EndOfSequence { codec: Codec::Av1 }));
        let b = Bytes::from_static(b"\xc1vp09\x82");
        assert!(matches!(parse_video_tag(&b), Ok(VideoTag::Frame { keyframe: true, .. })));
        // Metadata, MPEG-2 TS sequence start, command frame, unknown FourCC, unknown packet type.
        for body in [&b"\x94av01\x02\x00"[..], b"\x95av01\x80", b"\xd0\x00", b"\xd1\x01", b"\x90vvc1\x01", b"\x98hvc1"]
        {
            assert!(matches!(parse_video_tag(&Bytes::from_static(body)), Ok(VideoTag::Ignored { .. })), "{body:?}");
        }
        // Truncated FourCC, cts, command byte.
        for body in [&b"\x90hv"[..], b"\x91hvc1\x00", b"\xd0"] {
            assert!(parse_video_tag(&Bytes::from_static(body)).is_err(), "{body:?}");
        }
    }

    #[test]
    fn enhanced_video_mod_ex() {
        // ModEx (TimestampOffsetNano, 3 bytes), then CodedFrames for hvc1 with cts 0x10.
        let b = Bytes::from_static(b"\x97\x02\x00\x01\x00\x01hvc1\x00\x00\x10\xAA");
        let tag = parse_video_tag(&b).unwrap();
        assert_eq!(
            tag,
            VideoTag::Frame {
                codec: Codec::H265,
                keyframe: true,
                composition_ms: 16,
                data: Bytes::from_static(b"\xAA")
            }
        );
        // A 300-byte ModEx payload (16-bit size), twice.
        let mut body = vec![0x97, 0xff, 0x01, 0x2b];
        body.extend(std::iter::repeat_n(0u8, 300));
        body.push(0x07);
        body.extend([0x00, 0x00]);
        body.extend(b"\x03av01\x12\x00");
        assert!(matches!(parse_video_tag(&Bytes::from(body)), Ok(VideoTag::Frame { codec: Codec::Av1, .. })));
        assert!(parse_video_tag(&Bytes::from_static(b"\x97\x05\x00\x01")).is_err());
    }

    #[test]
    fn enhanced_video_multitrack() {
        // OneTrack, track 0, hvc1 CodedFramesX.
        let b = Bytes::from_static(b"\x96\x03hvc1\x00\x00\x00\x00\x01\x26");
        assert!(matches!(parse_video_tag(&b), Ok(VideoTag::Frame { codec: Codec::H265, keyframe: true, .. })));
        // ManyTracks: track 1 then track 0, same codec (av01 SequenceStart).
        let b = Bytes::from_static(b"\x96\x10av01\x01\x00\x00\x02\xAA\xBB\x00\x00\x00\x01\xCC");
        assert_eq!(
            parse_video_tag(&b),
            Ok(VideoTag::Config { codec: Codec::Av1, config: Bytes::from_static(b"\xCC") })
        );
        // ManyTracksManyCodecs: vp09 track 2, then avc1 track 0 with cts.
        let b = Bytes::from_static(b"\x96\x21vp09\x02\x00\x00\x01\xAAavc1\x00\x00\x00\x04\x00\x00\x05\xDD");
        assert!(matches!(parse_video_tag(&b), Ok(VideoTag::Frame { codec: Codec::H264, composition_ms: 5, .. })));
        // No track 0.
        let b = Bytes::from_static(b"\x96\x10av01\x01\x00\x00\x01\xAA");
        assert!(matches!(parse_video_tag(&b), Ok(VideoTag::Ignored { .. })));
        // Track size beyond the body, nested multitrack, bad multitrack type.
        for body in [&b"\x96\x10av01\x00\x00\x00\x09\xAA"[..], b"\x96\x06av01", b"\x96\x33av01"] {
            assert!(parse_video_tag(&Bytes::from_static(body)).is_err(), "{body:?}");
        }
    }

    #[test]
    fn legacy_audio_tags() {
        let asc = Bytes::from_static(&[0xaf, 0, 0x12, 0x10]);
        assert_eq!(
            parse_audio_tag(&asc),
            Ok(AudioTag::Config { codec: Codec::Aac, config: Bytes::from_static(&[0x12, 0x10]) })
        );
        // MP3: 48 kHz mono from the frame header, though the flags say 44 kHz stereo.
        let mp3 = Bytes::from_static(&[0x2f, 0xff, 0xfb, 0x94, 0xc4, 0]);
        assert!(matches!(
            parse_audio_tag(&mp3),
            Ok(AudioTag::Frame {
                codec: Codec::Mp3,
                params: Some(AudioParams { sample_rate: 48000, channels: 1 }),
                ..
            })
        ));
        // MP3 without a valid header: the flags (22 kHz mono).
        let mp3 = Bytes::from_static(&[0x2a, 1, 2, 3, 4]);
        assert!(matches!(
            parse_audio_tag(&mp3),
            Ok(AudioTag::Frame { params: Some(AudioParams { sample_rate: 22050, channels: 1 }), .. })
        ));
        let mp3_8k = Bytes::from_static(&[0xe2, 1, 2, 3, 4]);
        assert!(matches!(
            parse_audio_tag(&mp3_8k),
            Ok(AudioTag::Frame { codec: Codec::Mp3, params: Some(AudioParams { sample_rate: 8000, channels: 1 }), .. })
        ));
        let alaw = Bytes::from_static(&[0x73, 0xd5]);
        assert!(matches!(
            parse_audio_tag(&alaw),
            Ok(AudioTag::Frame {
                codec: Codec::G711A,
                params: Some(AudioParams { sample_rate: 8000, channels: 2 }),
                ..
            })
        ));
        for ignored in [&[][..], &[0xaf, 5], &[0xaf, 1], &[0xaf, 0], &[0xb2, 0], &[0x82]] {
            assert!(
                matches!(parse_audio_tag(&Bytes::copy_from_slice(ignored)), Ok(AudioTag::Ignored { .. })),
                "{ignored:?}"
            );
        }
        assert_eq!(parse_audio_tag(&Bytes::from_static(&[0xaf])), Err(FlvError::Truncated("audio tag")));
    }

    #[test]
    fn empty_sequence_headers() {
        // ffmpeg's E-RTMP AV1 files start with an empty av01 SequenceStart before the real one.
        assert_eq!(
            parse_video_tag(&Bytes::from_static(b"\x90av01")),
            Ok(VideoTag::Ignored { reason: "empty video sequence header" })
        );
        assert!(matches!(parse_video_tag(&Bytes::from_static(&[0x17, 0, 0, 0, 0])), Ok(VideoTag::Ignored { .. })));
        assert!(matches!(parse_audio_tag(&Bytes::from_static(b"\x90mp4a")), Ok(AudioTag::Ignored { .. })));
        // An empty Opus sequence start means mono/stereo by default: kept.
        assert_eq!(
            parse_audio_tag(&Bytes::from_static(b"\x90Opus")),
            Ok(AudioTag::Config { codec: Codec::Opus, config: Bytes::new() })
        );
    }

    #[test]
    fn enhanced_audio_tags() {
        let b = Bytes::from_static(b"\x90OpusOpusHead\x01\x02\x38\x01\x80\xbb\x00\x00\x00\x00\x00");
        let AudioTag::Config { codec: Codec::Opus, config } = parse_audio_tag(&b).unwrap() else { panic!() };
        assert_eq!(codec::parse_opus_head(&config).unwrap().channels, 2);
        let b = Bytes::from_static(b"\x91mp4a\x21\x10");
        assert!(matches!(parse_audio_tag(&b), Ok(AudioTag::Frame { codec: Codec::Aac, params: None, .. })));
        let b = Bytes::from_static(b"\x91.mp3\xff\xfb\x90\x64");
        assert!(matches!(
            parse_audio_tag(&b),
            Ok(AudioTag::Frame {
                codec: Codec::Mp3,
                params: Some(AudioParams { sample_rate: 44100, channels: 2 }),
                ..
            })
        ));
        // ModEx then CodedFrames.
        let b = Bytes::from_static(b"\x97\x02\x00\x00\x01\x01Opus\xfc");
        assert!(matches!(parse_audio_tag(&b), Ok(AudioTag::Frame { codec: Codec::Opus, .. })));
        // Multitrack: ManyTracksManyCodecs, fLaC track 1 then Opus track 0.
        let b = Bytes::from_static(b"\x95\x21fLaC\x01\x00\x00\x01\xAAOpus\x00\x00\x00\x01\xfc");
        assert_eq!(
            parse_audio_tag(&b),
            Ok(AudioTag::Frame { codec: Codec::Opus, data: Bytes::from_static(b"\xfc"), params: None })
        );
        for body in [
            &b"\x90fLaC\x00"[..],
            b"\x91ac-3\x00",
            b"\x91ec-3\x00",
            b"\x91abcd",
            b"\x92Opus",
            b"\x94Opus\x00\x02",
            b"\x96Opus",
        ] {
            assert!(matches!(parse_audio_tag(&Bytes::from_static(body)), Ok(AudioTag::Ignored { .. })), "{body:?}");
        }
        for body in [&b"\x90Op"[..], b"\x95\x55Opus", b"\x97\x09\x00"] {
            assert!(parse_audio_tag(&Bytes::from_static(body)).is_err(), "{body:?}");
        }
    }

    fn track(codec: Codec, config: &[u8]) -> TrackInfo {
        TrackInfo {
            media: codec.media_type(),
            codec,
            timebase: 1000,
            config: Bytes::copy_from_slice(config),
            video: None,
            audio: None,
        }
    }

    #[test]
    fn config_bodies_round_trip() {
        for codec in [Codec::H264, Codec::H265, Codec::Av1, Codec::Vp9] {
            let t = track(codec, b"\x01\x02\x03");
            let body = config_body(&t).unwrap();
            assert_eq!(parse_video_tag(&body), Ok(VideoTag::Config { codec, config: t.config.clone() }));
            let eos = end_of_sequence_body(&t).unwrap();
            assert_eq!(parse_video_tag(&eos), Ok(VideoTag::EndOfSequence { codec }));
        }
        let t = track(Codec::Aac, b"\x12\x10");
        assert_eq!(
            parse_audio_tag(&config_body(&t).unwrap()),
            Ok(AudioTag::Config { codec: Codec::Aac, config: t.config.clone() })
        );
        assert_eq!(end_of_sequence_body(&t), None);
        for codec in [Codec::Mp3, Codec::G711A, Codec::G711U, Codec::Vp8] {
            assert_eq!(config_body(&track(codec, b"")), None);
        }
    }

    #[test]
    fn opus_config_body_is_an_opus_head() {
        let ogg: &[u8] = b"OpusHead\x01\x02\x38\x01\x80\xbb\x00\x00\x00\x00\x00";
        let dops: &[u8] = b"\x00\x02\x01\x38\x00\x00\xbb\x80\x00\x00\x00";
        for config in [ogg, dops] {
            let t = track(Codec::Opus, config);
            let AudioTag::Config { codec: Codec::Opus, config } = parse_audio_tag(&config_body(&t).unwrap()).unwrap()
            else {
                panic!()
            };
            assert_eq!(&config[..], ogg);
        }
        // No config: a mono/stereo head from the track's parameters.
        let mut t = track(Codec::Opus, b"");
        t.audio = Some(AudioParams { sample_rate: 48000, channels: 1 });
        let AudioTag::Config { config, .. } = parse_audio_tag(&config_body(&t).unwrap()).unwrap() else { panic!() };
        assert_eq!(codec::parse_opus_head(&config), Ok(AudioParams { sample_rate: 48000, channels: 1 }));
    }

    #[test]
    fn headers() {
        assert_eq!(
            tag_header(TAG_VIDEO, 0x012345, 0x1234_5678),
            [9, 0x01, 0x23, 0x45, 0x34, 0x56, 0x78, 0x12, 0, 0, 0]
        );
        assert_eq!(file_header(true, true), *b"FLV\x01\x05\x00\x00\x00\x09\x00\x00\x00\x00");
        assert_eq!(file_header(false, true)[4], 1);
        assert_eq!(file_header(true, false)[4], 4);
    }

    #[test]
    fn frame_tags_are_whole_tags() {
        let f = frame(Codec::H264, true, 5000, 5040, b"\0\0\0\x01\x65");
        let [head, payload, trailer] = frame_tag(&f, 5000);
        assert_eq!(head.len(), 11 + 5);
        assert_eq!(payload.as_ptr(), f.data.as_ptr());
        assert_eq!(&trailer[..], &(11 + 5 + 5u32).to_be_bytes());
        let mut reader = FlvReader::new();
        reader.push(&file_header(false, true));
        for part in [head, payload, trailer] {
            reader.push(&part);
        }
        let tag = reader.next_tag().unwrap().unwrap();
        assert_eq!((tag.tag_type, tag.timestamp_ms), (TAG_VIDEO, 5000));
        assert_eq!(video_frame_from_tag(parse_video_tag(&tag.body).unwrap(), 5000), Some(f));
        let [h, b, t] = body_tag(TAG_SCRIPT, Bytes::from_static(b"\x02\x00\x0aonMetaData"), 0);
        assert_eq!((h.len(), b.len(), &t[..]), (11, 13, &24u32.to_be_bytes()[..]));
    }

    /// An FLV stream with a header, a script tag, an AAC config, a video config and frames.
    /// (tag type, timestamp, body) of each tag.
    type Tags = Vec<(u8, u32, Vec<u8>)>;

    fn sample_stream() -> (Vec<u8>, Tags) {
        let tags: Tags = vec![
            (TAG_SCRIPT, 0, b"\x02\x00\x0aonMetaData\x08\x00\x00\x00\x00\x00\x00\x09".to_vec()),
            (TAG_AUDIO, 0, vec![0xaf, 0, 0x12, 0x10]),
            (TAG_VIDEO, 0, vec![0x17, 0, 0, 0, 0, 1, 0x64, 0, 0x1f]),
            (TAG_VIDEO, 0, vec![0x17, 1, 0, 0, 0x50, 0, 0, 0, 1, 0x65]),
            (TAG_AUDIO, 23, vec![0xaf, 1, 0x21]),
            (TAG_VIDEO, 0x0100_0020, vec![0x27, 1, 0, 0, 0, 0, 0, 0, 1, 0x41]),
        ];
        let mut out = file_header(true, true).to_vec();
        for (t, ts, body) in &tags {
            let [h, b, p] = body_tag(*t, Bytes::copy_from_slice(body), *ts);
            out.extend_from_slice(&h);
            out.extend_from_slice(&b);
            out.extend_from_slice(&p);
        }
        (out, tags)
    }

    fn read_all(reader: &mut FlvReader) -> Tags {
        let mut out = Vec::new();
        while let Some(tag) = reader.next_tag().unwrap() {
            out.push((tag.tag_type, tag.timestamp_ms, tag.body.to_vec()));
        }
        out
    }

    #[test]
    fn reader_reads_whole_stream() {
        let (stream, tags) = sample_stream();
        let mut reader = FlvReader::new();
        reader.push(&stream);
        assert_eq!(read_all(&mut reader), tags);
        assert_eq!(reader.header(), Some(FlvHeader { version: 1, has_audio: true, has_video: true }));
        assert_eq!(reader.buffered(), 0);
    }

    #[test]
    fn reader_handles_any_chunking() {
        let (stream, tags) = sample_stream();
        for chunk in [1, 2, 3, 7, 11, 13, 64] {
            let mut reader = FlvReader::new();
            let mut got = Vec::new();
            for part in stream.chunks(chunk) {
                reader.push(part);
                got.extend(read_all(&mut reader));
            }
            assert_eq!(got, tags, "chunk {chunk}");
        }
    }

    #[test]
    fn reader_tolerates_missing_and_odd_previous_tag_sizes() {
        let (_, tags) = sample_stream();
        // Header with DataOffset 12 (3 extra bytes), no PreviousTagSize0, odd sizes, one missing.
        let mut stream = b"FLV\x01\x05\x00\x00\x00\x0c\xAA\xBB\xCC".to_vec();
        for (i, (t, ts, body)) in tags.iter().enumerate() {
            stream.extend_from_slice(&tag_header(*t, body.len() as u32, *ts));
            stream.extend_from_slice(body);
            match i % 3 {
                0 => stream.extend_from_slice(&[0, 0, 0, 1]),
                1 => {}
                _ => stream.extend_from_slice(&[1, 0, 0, 0]),
            }
        }
        let mut reader = FlvReader::new();
        reader.push(&stream);
        assert_eq!(read_all(&mut reader), tags);
    }

    #[test]
    fn reader_rejects_garbage() {
        let mut reader = FlvReader::new();
        reader.push(b"FL");
        assert_eq!(reader.next_tag(), Ok(None));
        reader.push(b"X");
        assert_eq!(reader.next_tag(), Err(FlvError::BadSignature));
        let cases: [(&[u8], FlvError); 5] = [
            (b"GIF89a", FlvError::BadSignature),
            (b"FLV\x01\x05\x00\x00\x00\x05", FlvError::BadHeaderSize(5)),
            (
                b"FLV\x01\x05\x00\x00\x00\x09\x00\x00\x00\x00\x07\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00",
                FlvError::BadTagType(7),
            ),
            (
                b"FLV\x01\x05\x00\x00\x00\x09\x00\x00\x00\x00\x29\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00",
                FlvError::Encrypted,
            ),
            (
                b"FLV\x01\x05\x00\x00\x00\x09\x00\x00\x00\x00\x09\x00\x10\x00\x00\x00\x00\x00\x00\x00\x00",
                FlvError::TagTooLarge { size: 4096, max: 1024 },
            ),
        ];
        for (input, err) in cases {
            let mut reader = FlvReader::with_max_tag_size(1024);
            reader.push(input);
            assert_eq!(reader.next_tag(), Err(err.clone()));
            // The error sticks.
            reader.push(&[0; 100]);
            assert_eq!(reader.next_tag(), Err(err));
        }
        // Garbage where a PreviousTagSize should be.
        let mut reader = FlvReader::new();
        reader.push(b"FLV\x01\x05\x00\x00\x00\x09\x00\x00\x00\x00");
        reader.push(&tag_header(TAG_AUDIO, 1, 0));
        reader.push(&[0xaf, 0x55, 0x55, 0x55, 0x55]);
        assert!(reader.next_tag().unwrap().is_some());
        assert_eq!(reader.next_tag(), Err(FlvError::Invalid("PreviousTagSize")));
    }

    #[test]
    fn parsers_never_panic_on_arbitrary_bytes() {
        // A cheap deterministic fuzz: every prefix and single-byte mutation of valid bodies and streams.
        let (stream, tags) = sample_stream();
        let mut inputs: Vec<Vec<u8>> = tags.iter().map(|(_, _, b)| b.clone()).collect();
        inputs.push(b"\x96\x21vp09\x02\x00\x00\x01\xAAavc1\x00\x00\x00\x04\x00\x00\x05\xDD".to_vec());
        inputs.push(b"\x95\x21fLaC\x01\x00\x00\x01\xAAOpus\x00\x00\x00\x01\xfc".to_vec());
        inputs.push(b"\x97\x02\x00\x01\x00\x01hvc1\x00\x00\x10\xAA".to_vec());
        inputs.push(stream);
        let mut seed = 0x2545_f491_4f6c_dd1du64;
        for input in &inputs {
            for cut in 0..=input.len() {
                exercise(&input[..cut]);
            }
            for i in 0..input.len() {
                for _ in 0..8 {
                    seed ^= seed << 13;
                    seed ^= seed >> 7;
                    seed ^= seed << 17;
                    let mut m = input.clone();
                    m[i] = seed as u8;
                    exercise(&m);
                }
            }
        }
    }

    fn exercise(data: &[u8]) {
        let bytes = Bytes::copy_from_slice(data);
        let _ = parse_video_tag(&bytes);
        let _ = parse_audio_tag(&bytes);
        let mut reader = FlvReader::with_max_tag_size(4096);
        reader.push(data);
        while let Ok(Some(tag)) = reader.next_tag() {
            let _ = parse_video_tag(&tag.body);
            let _ = parse_audio_tag(&tag.body);
        }
    }
}
