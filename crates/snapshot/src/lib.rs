//! Screenshots of live streams (reference doc 000, "Live Screencapture"; spec
//! `features-processing-security.md` §2).
//!
//! A snapshot job ([`run_job`]) watches one live stream as an internal hub consumer, keeps only the latest video
//! keyframe, and every `interval` turns it into a JPEG with an ffmpeg child process ([`keyframe_to_jpeg`]). The
//! picture, its size ([`output_size`]) and its object key ([`picture_key`]) go to a [`PictureSink`], which the
//! server implements (storage upload and callback event 200).
//!
//! Codecs: H.264 and H.265 are fed to ffmpeg as an Annex B elementary stream; AV1, VP9 and VP8 as a one-frame IVF
//! file. Audio-only streams end the job with [`SnapshotError::NoVideo`].

mod decode;
mod job;
mod key;
mod size;

use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

use bytes::Bytes;
use ferrocast_hub::StreamKey;

pub use decode::{keyframe_to_jpeg, source_size};
pub use job::{FFMPEG_TIMEOUT, NO_VIDEO_AFTER, run_job};
pub use key::{DEFAULT_FILE_NAME, DEFAULT_PREFIX, EXT, picture_key};
pub use size::{MAX_SIDE, output_size};

/// The settings of one snapshot job (from a snapshot template).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SnapshotSpec {
    /// Time between two pictures (`SnapshotInterval`, 2–300 s in the API; any non-zero value works here).
    pub interval: Duration,
    /// Configured picture width (`Width`); 0 = derived from the source, see [`output_size`].
    pub width: u32,
    /// Configured picture height (`Height`); 0 = derived from the source, see [`output_size`].
    pub height: u32,
    /// The folder template (`CosPrefix`); empty = [`DEFAULT_PREFIX`].
    pub prefix: String,
    /// The file name template (`CosFileName`); empty = [`DEFAULT_FILE_NAME`].
    pub file_name: String,
    /// Seconds east of UTC for the date and time variables of the templates (0 = UTC, 28800 = UTC+8).
    pub utc_offset_s: i64,
}

impl SnapshotSpec {
    /// A spec with the documented defaults: source size, default path templates, UTC.
    pub fn new(interval: Duration) -> SnapshotSpec {
        SnapshotSpec { interval, width: 0, height: 0, prefix: String::new(), file_name: String::new(), utc_offset_s: 0 }
    }
}

/// One picture taken.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Picture {
    /// The JPEG file (starts with `FF D8`, ends with `FF D9`).
    pub jpeg: Bytes,
    /// Its width in pixels.
    pub width: u32,
    /// Its height in pixels.
    pub height: u32,
    /// When it was taken (UNIX milliseconds); the templates' time variables are expanded from this.
    pub taken_unix_ms: i64,
    /// The object key: prefix and file name expanded, without a leading `/`
    /// (e.g. `2026-11-22/s1-screenshot-10-12-05-640x360.jpg`); the callback's `pic_url` is `/` + key.
    pub key: String,
}

/// Where pictures go (implemented by the server: upload, then event 200).
pub trait PictureSink: Send + Sync + 'static {
    /// Takes one picture of `stream`. The job starts no other picture until this returns, so a slow sink makes
    /// the job skip ticks rather than pile up work.
    fn picture(&self, stream: &StreamKey, picture: Picture) -> Pin<Box<dyn Future<Output = ()> + Send + '_>>;
}

/// Why a picture (or a whole job) failed.
#[derive(Debug, thiserror::Error)]
pub enum SnapshotError {
    /// A path template names a variable that does not exist.
    #[error("unknown variable {{{0}}} in the snapshot path template")]
    UnknownVariable(String),
    /// A path template has a `{` without its `}`.
    #[error("unterminated variable in the snapshot path template {0:?}")]
    BadTemplate(String),
    /// The job's settings cannot work (zero interval, absurd size).
    #[error("bad snapshot settings: {0}")]
    BadSpec(String),
    /// The codec cannot be turned into pictures.
    #[error("snapshots of {0} video are not supported")]
    Unsupported(&'static str),
    /// The keyframe or its track configuration is malformed.
    #[error("bad video data: {0}")]
    BadMedia(String),
    /// The source picture size is not known (no parsable configuration or keyframe header) and the configured
    /// size does not fix both sides.
    #[error("the picture size of the source is unknown")]
    UnknownSourceSize,
    /// ffmpeg could not be started.
    #[error("could not start {path}: {source}")]
    Spawn {
        /// The ffmpeg binary.
        path: String,
        /// The operating system's error.
        source: std::io::Error,
    },
    /// Talking to the ffmpeg child failed.
    #[error("I/O with ffmpeg: {0}")]
    Io(#[from] std::io::Error),
    /// ffmpeg did not finish in time; it was killed.
    #[error("ffmpeg did not finish within {0:?}")]
    Timeout(Duration),
    /// ffmpeg exited with an error.
    #[error("ffmpeg failed ({status}): {stderr}")]
    Ffmpeg {
        /// Its exit status.
        status: String,
        /// The tail of its standard error.
        stderr: String,
    },
    /// ffmpeg exited successfully but wrote no complete JPEG.
    #[error("ffmpeg wrote no JPEG ({len} bytes of output): {stderr}")]
    NoPicture {
        /// How many bytes it wrote.
        len: usize,
        /// The tail of its standard error.
        stderr: String,
    },
    /// The stream is not live (job start).
    #[error("stream {0} is not live")]
    NotLive(String),
    /// The stream carries no video.
    #[error("stream {0} has no video; no screenshots can be taken")]
    NoVideo(String),
}
