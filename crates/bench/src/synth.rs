//! The stream the benchmark publishes: FLV tag bodies at a chosen bitrate, every video frame carrying the wall
//! clock time it was sent (a SEI "user data unregistered" NAL), so players can measure end-to-end latency.

use std::time::{SystemTime, UNIX_EPOCH};

use bytes::{BufMut, Bytes, BytesMut};
use ferrocast_formats::flv::{self, FlvReader};

/// The UUID that marks a latency stamp. ASCII without zero bytes, so no emulation prevention is ever needed.
pub const STAMP_UUID: &[u8; 16] = b"ferrocast-bench!";

/// A real x264 SPS (High, 1280x720) and PPS, so servers that parse the configuration accept the stream.
const SPS: &[u8] = &[
    0x67, 0x64, 0x00, 0x1f, 0xac, 0xd9, 0x40, 0x50, 0x05, 0xbb, 0x01, 0x10, 0x00, 0x00, 0x03, 0x00, 0x10, 0x00, 0x00,
    0x03, 0x03, 0xc0, 0xf1, 0x83, 0x19, 0x60,
];
const PPS: &[u8] = &[0x68, 0xeb, 0xe3, 0xcb, 0x22, 0xc0];
/// AAC-LC, 44.1 kHz, stereo.
const AAC_ASC: &[u8] = &[0x12, 0x10];

/// Microseconds since the Unix epoch.
pub fn now_micros() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_micros() as u64)
}

/// One FLV tag to send: type, millisecond timestamp, body.
#[derive(Debug, Clone)]
pub struct Tag {
    /// `flv::TAG_AUDIO`, `flv::TAG_VIDEO` or `flv::TAG_SCRIPT`.
    pub tag_type: u8,
    /// Milliseconds from the start of the stream.
    pub timestamp_ms: u32,
    /// The tag body (also the RTMP message body).
    pub body: Bytes,
}

/// The SEI NAL (AVCC, with its 4-byte length) carrying a send time.
pub fn stamp_nal(sent_micros: u64, seq: u64) -> [u8; 4 + 3 + 48 + 1] {
    let mut nal = [0u8; 56];
    nal[..4].copy_from_slice(&52u32.to_be_bytes());
    nal[4] = 0x06; // SEI
    nal[5] = 0x05; // user data unregistered
    nal[6] = 48; // payload size
    nal[7..23].copy_from_slice(STAMP_UUID);
    nal[23..39].copy_from_slice(format!("{sent_micros:016x}").as_bytes());
    nal[39..55].copy_from_slice(format!("{seq:016x}").as_bytes());
    nal[55] = 0x80; // rbsp trailing bits
    nal
}

/// Finds a latency stamp in a video tag body and returns the send time in microseconds.
pub fn find_stamp(body: &[u8]) -> Option<u64> {
    let at = body.windows(STAMP_UUID.len()).take(256).position(|w| w == STAMP_UUID)?;
    let hex = body.get(at + 16..at + 32)?;
    u64::from_str_radix(std::str::from_utf8(hex).ok()?, 16).ok()
}

/// Where the published frames come from.
pub enum Source {
    /// Synthetic H.264 + AAC at a target bitrate.
    Synthetic(Synthetic),
    /// An FLV file, looped, with stamps inserted into its H.264 frames.
    File(FileLoop),
}

impl Source {
    /// The configuration tags (metadata, sequence headers) sent once after publish starts.
    pub fn headers(&self) -> Vec<Tag> {
        match self {
            Source::Synthetic(s) => s.headers(),
            Source::File(f) => f.headers.clone(),
        }
    }

    /// The next media tag, stamped with the current wall clock time.
    pub fn next_tag(&mut self) -> Tag {
        match self {
            Source::Synthetic(s) => s.next_tag(),
            Source::File(f) => f.next_tag(),
        }
    }
}

/// Synthetic H.264 + AAC: frame sizes chosen so the stream averages the requested bitrate, keyframes
/// three times the size of other frames.
pub struct Synthetic {
    fps: u32,
    gop_frames: u32,
    video_frame_bytes: usize,
    key_frame_bytes: usize,
    audio_frame_bytes: usize,
    video_index: u64,
    audio_index: u64,
    filler: Bytes,
}

/// AAC frames per second at 44.1 kHz (1024 samples per frame).
const AUDIO_FPS: f64 = 44100.0 / 1024.0;

impl Synthetic {
    /// A stream of `kbps` (video + 128 kbps of audio included), `fps` frames per second, a keyframe every
    /// `gop_frames` frames.
    pub fn new(kbps: u32, fps: u32, gop_frames: u32) -> Synthetic {
        let fps = fps.max(1);
        let gop = gop_frames.max(1);
        let audio_kbps = 128.min(kbps / 4);
        let video_bytes_per_sec = (kbps.saturating_sub(audio_kbps) as usize * 1000) / 8;
        // A GOP has one keyframe of weight 3 and gop-1 frames of weight 1.
        let unit = video_bytes_per_sec * gop as usize / fps as usize / (gop as usize + 2);
        let audio_frame_bytes = ((audio_kbps as f64 * 1000.0 / 8.0) / AUDIO_FPS) as usize;
        Synthetic {
            fps,
            gop_frames: gop,
            video_frame_bytes: unit.max(64),
            key_frame_bytes: (unit * 3).max(64),
            audio_frame_bytes: audio_frame_bytes.max(8),
            video_index: 0,
            audio_index: 0,
            filler: Bytes::from(vec![0x5a; (unit * 3).max(64) + 16]),
        }
    }

    fn headers(&self) -> Vec<Tag> {
        let mut avc = BytesMut::new();
        avc.put_slice(&[0x17, 0, 0, 0, 0]);
        avc.put_slice(&[1, SPS[1], SPS[2], SPS[3], 0xff, 0xe1]);
        avc.put_u16(SPS.len() as u16);
        avc.put_slice(SPS);
        avc.put_u8(1);
        avc.put_u16(PPS.len() as u16);
        avc.put_slice(PPS);
        let mut aac = BytesMut::new();
        aac.put_slice(&[0xaf, 0x00]);
        aac.put_slice(AAC_ASC);
        vec![
            Tag { tag_type: flv::TAG_VIDEO, timestamp_ms: 0, body: avc.freeze() },
            Tag { tag_type: flv::TAG_AUDIO, timestamp_ms: 0, body: aac.freeze() },
        ]
    }

    fn video_time_ms(&self, index: u64) -> u32 {
        (index * 1000 / self.fps as u64) as u32
    }

    fn audio_time_ms(&self, index: u64) -> u32 {
        (index as f64 * 1000.0 / AUDIO_FPS) as u32
    }

    /// The next tag in timestamp order.
    fn next_tag(&mut self) -> Tag {
        let v = self.video_time_ms(self.video_index);
        let a = self.audio_time_ms(self.audio_index);
        if a < v {
            let ts = a;
            self.audio_index += 1;
            let mut body = BytesMut::with_capacity(2 + self.audio_frame_bytes);
            body.put_slice(&[0xaf, 0x01]);
            body.put_slice(&self.filler[..self.audio_frame_bytes]);
            return Tag { tag_type: flv::TAG_AUDIO, timestamp_ms: ts, body: body.freeze() };
        }
        let index = self.video_index;
        self.video_index += 1;
        let keyframe = index.is_multiple_of(self.gop_frames as u64);
        let size = if keyframe { self.key_frame_bytes } else { self.video_frame_bytes };
        let mut body = BytesMut::with_capacity(5 + 56 + 5 + size);
        body.put_slice(&[if keyframe { 0x17 } else { 0x27 }, 1, 0, 0, 0]);
        body.put_slice(&stamp_nal(now_micros(), index));
        body.put_u32(size as u32 + 1);
        body.put_u8(if keyframe { 0x65 } else { 0x41 });
        body.put_slice(&self.filler[..size]);
        Tag { tag_type: flv::TAG_VIDEO, timestamp_ms: v, body: body.freeze() }
    }
}

/// Why a file cannot be used as a source.
#[derive(Debug, thiserror::Error)]
pub enum SourceError {
    /// The file could not be read.
    #[error("cannot read {0}: {1}")]
    Read(String, std::io::Error),
    /// The file is not usable FLV.
    #[error("{0}: {1}")]
    Flv(String, String),
}

/// An FLV file played in a loop with continuous timestamps.
pub struct FileLoop {
    headers: Vec<Tag>,
    media: Vec<Tag>,
    position: usize,
    loop_offset_ms: u32,
    duration_ms: u32,
    seq: u64,
}

impl FileLoop {
    /// Reads the whole file: sequence headers and metadata go to `headers`, everything else is replayed.
    pub fn open(path: &str) -> Result<FileLoop, SourceError> {
        let data = std::fs::read(path).map_err(|e| SourceError::Read(path.to_string(), e))?;
        let mut reader = FlvReader::new();
        reader.push(&data);
        let (mut headers, mut media) = (Vec::new(), Vec::new());
        loop {
            match reader.next_tag() {
                Ok(Some(tag)) => {
                    let is_config = match tag.tag_type {
                        flv::TAG_VIDEO => matches!(flv::parse_video_tag(&tag.body), Ok(flv::VideoTag::Config { .. })),
                        flv::TAG_AUDIO => matches!(flv::parse_audio_tag(&tag.body), Ok(flv::AudioTag::Config { .. })),
                        _ => true,
                    };
                    let t = Tag { tag_type: tag.tag_type, timestamp_ms: tag.timestamp_ms, body: tag.body };
                    if is_config { headers.push(t) } else { media.push(t) }
                }
                Ok(None) => break,
                Err(e) => return Err(SourceError::Flv(path.to_string(), e.to_string())),
            }
        }
        if media.is_empty() {
            return Err(SourceError::Flv(path.to_string(), "no audio or video tags".into()));
        }
        let first = media.first().map_or(0, |t| t.timestamp_ms);
        for t in &mut media {
            t.timestamp_ms = t.timestamp_ms.saturating_sub(first);
        }
        let duration_ms = media.iter().map(|t| t.timestamp_ms).max().unwrap_or(0) + 40;
        Ok(FileLoop { headers, media, position: 0, loop_offset_ms: 0, duration_ms, seq: 0 })
    }

    fn next_tag(&mut self) -> Tag {
        if self.position >= self.media.len() {
            self.position = 0;
            self.loop_offset_ms += self.duration_ms;
        }
        let mut tag = self.media[self.position].clone();
        self.position += 1;
        tag.timestamp_ms += self.loop_offset_ms;
        // Legacy AVC frames get a stamp NAL in front of their NAL units (after the 5-byte tag-body header).
        if tag.tag_type == flv::TAG_VIDEO && tag.body.len() > 5 && tag.body[0] & 0x0f == 7 && tag.body[1] == 1 {
            let mut body = BytesMut::with_capacity(tag.body.len() + 56);
            body.put_slice(&tag.body[..5]);
            body.put_slice(&stamp_nal(now_micros(), self.seq));
            body.put_slice(&tag.body[5..]);
            tag.body = body.freeze();
            self.seq += 1;
        }
        tag
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stamps_round_trip() {
        let nal = stamp_nal(1_700_000_000_123_456, 42);
        let mut body = vec![0x27, 1, 0, 0, 0];
        body.extend_from_slice(&nal);
        assert_eq!(find_stamp(&body), Some(1_700_000_000_123_456));
        assert!(!nal[4..].windows(3).any(|w| w[0] == 0 && w[1] == 0 && w[2] <= 3), "no emulation prevention needed");
    }

    #[test]
    fn synthetic_stream_has_the_requested_bitrate_and_gop() {
        let mut s = Synthetic::new(2000, 30, 60);
        let headers = s.headers();
        assert!(matches!(flv::parse_video_tag(&headers[0].body), Ok(flv::VideoTag::Config { .. })));
        let mut bytes = 0usize;
        let mut keyframes = 0;
        loop {
            let t = s.next_tag();
            if t.timestamp_ms >= 10_000 {
                break;
            }
            bytes += t.body.len();
            keyframes += (t.tag_type == flv::TAG_VIDEO && t.body[0] >> 4 == 1) as usize;
            if t.tag_type == flv::TAG_VIDEO {
                assert!(matches!(flv::parse_video_tag(&t.body), Ok(flv::VideoTag::Frame { .. })));
            }
        }
        let kbps = bytes * 8 / 10 / 1000;
        assert!((1900..=2100).contains(&kbps), "{kbps} kbps");
        assert_eq!(keyframes, 5);
    }
}
