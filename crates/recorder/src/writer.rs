//! Recording files from hub frames, one format each, no re-encoding: FLV, MP4 (fragmented while it is written,
//! made seekable on close) and AAC (ADTS). Every file starts at time 0 and with its codec configurations, so it
//! plays on its own from its first byte.

use std::fs::File;
use std::io::{BufWriter, Write};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use ferrocast_formats::{flv, fmp4, mp4file, ts};
use ferrocast_media::{Frame, MediaType, TrackInfo, rescale};

/// A recording file format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RecordFormat {
    /// FLV (`.flv`).
    Flv,
    /// MP4 (`.mp4`), fragmented while recording and rewritten with `moov` first on close.
    Mp4,
    /// Audio only, AAC in ADTS (`.aac`).
    Aac,
}

impl RecordFormat {
    /// The file name extension.
    pub fn extension(self) -> &'static str {
        match self {
            RecordFormat::Flv => "flv",
            RecordFormat::Mp4 => "mp4",
            RecordFormat::Aac => "aac",
        }
    }
}

/// Why a recording file could not be written.
#[derive(Debug, thiserror::Error)]
pub enum WriteError {
    /// Disk I/O failed.
    #[error("io: {0}")]
    Io(#[from] std::io::Error),
    /// The stream cannot be recorded in this format (e.g. AAC recording of Opus audio).
    #[error("{0}")]
    Unsupported(String),
    /// The fragmented MP4 could not be rewritten.
    #[error("mp4: {0}")]
    Mp4(#[from] mp4file::Mp4FileError),
}

/// A finished recording file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileInfo {
    /// Where it is.
    pub path: PathBuf,
    /// Its format.
    pub format: RecordFormat,
    /// Stream time (ms) of its first frame.
    pub start_ms: i64,
    /// Stream time (ms) where it ends.
    pub end_ms: i64,
    /// Bytes.
    pub size: u64,
}

/// The tracks a file is written with.
#[derive(Debug, Clone, Default)]
pub struct FileTracks {
    /// Video, if recorded.
    pub video: Option<TrackInfo>,
    /// Audio, if recorded.
    pub audio: Option<TrackInfo>,
}

/// One file being written.
pub struct FileWriter {
    format: RecordFormat,
    path: PathBuf,
    /// Stream time (ms) of the first frame: the file's time 0.
    origin_ms: i64,
    last_ms: i64,
    inner: Inner,
}

enum Inner {
    Flv(BufWriter<File>),
    Aac { out: BufWriter<File>, adts: (u8, u8, u8) },
    Mp4(Box<Mp4State>),
}

struct Mp4State {
    part_path: PathBuf,
    out: BufWriter<File>,
    tracks: FileTracks,
    video: Vec<Frame>,
    audio: Vec<Frame>,
    sequence: u32,
}

impl FileWriter {
    /// Creates `path` (the MP4 writer writes `path` + `.part` until [`FileWriter::finish`]) for a stream whose
    /// first recorded frame is at stream time `origin_ms`.
    pub fn create(
        format: RecordFormat,
        path: &Path,
        tracks: &FileTracks,
        origin_ms: i64,
    ) -> Result<FileWriter, WriteError> {
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir)?;
        }
        let inner = match format {
            RecordFormat::Flv => {
                let mut out = BufWriter::new(File::create(path)?);
                out.write_all(&flv::file_header(tracks.audio.is_some(), tracks.video.is_some()))?;
                for (track, tag) in [(&tracks.video, flv::TAG_VIDEO), (&tracks.audio, flv::TAG_AUDIO)] {
                    if let Some(body) = track.as_ref().and_then(flv::config_body) {
                        for chunk in flv::body_tag(tag, body, 0) {
                            out.write_all(&chunk)?;
                        }
                    }
                }
                Inner::Flv(out)
            }
            RecordFormat::Aac => {
                let audio = tracks.audio.as_ref().ok_or_else(|| WriteError::Unsupported("no audio track".into()))?;
                let adts = ts::adts_fields(audio)
                    .map_err(|e| WriteError::Unsupported(format!("AAC recording needs AAC audio: {e}")))?;
                Inner::Aac { out: BufWriter::new(File::create(path)?), adts }
            }
            RecordFormat::Mp4 => {
                let part_path = part_path(path);
                let mut out = BufWriter::new(File::create(&part_path)?);
                let init = fmp4::init_segment(tracks.video.as_ref(), tracks.audio.as_ref())
                    .map_err(|e| WriteError::Unsupported(format!("MP4: {e}")))?;
                out.write_all(&init)?;
                Inner::Mp4(Box::new(Mp4State {
                    part_path,
                    out,
                    tracks: tracks.clone(),
                    video: Vec::new(),
                    audio: Vec::new(),
                    sequence: 0,
                }))
            }
        };
        Ok(FileWriter { format, path: path.to_path_buf(), origin_ms, last_ms: origin_ms, inner })
    }

    /// Appends a frame (its stream time is rebased to the file's origin). Frames of a track the file does not
    /// record are ignored.
    pub fn write(&mut self, frame: &Frame) -> Result<(), WriteError> {
        let shift = rescale(self.origin_ms, 1000, frame.timebase);
        let mut f = frame.clone();
        f.dts -= shift;
        f.pts -= shift;
        if f.dts < 0 {
            // Audio that arrived just before the first keyframe of the file: not part of it.
            return Ok(());
        }
        self.last_ms = self.last_ms.max(frame.dts_ms());
        match &mut self.inner {
            Inner::Flv(out) => {
                for chunk in flv::frame_tag(&f, f.dts_ms() as u32) {
                    out.write_all(&chunk)?;
                }
            }
            Inner::Aac { out, adts } => {
                if f.media == MediaType::Audio {
                    let (profile, sfi, chan) = *adts;
                    out.write_all(&ts::adts_header(profile, sfi, chan, f.data.len() + 7))?;
                    out.write_all(&f.data)?;
                }
            }
            Inner::Mp4(state) => {
                let has_video = state.tracks.video.is_some();
                // A fragment per GOP (per second of audio for audio-only files): a crash loses at most that.
                let cut = match f.media {
                    MediaType::Video => f.keyframe && !state.video.is_empty(),
                    MediaType::Audio => {
                        !has_video && state.audio.first().is_some_and(|a| f.dts_ms() - a.dts_ms() >= 1000)
                    }
                };
                if cut {
                    state.flush(Some(&f))?;
                }
                match f.media {
                    MediaType::Video if has_video => state.video.push(f),
                    MediaType::Audio if state.tracks.audio.is_some() => state.audio.push(f),
                    _ => {}
                }
            }
        }
        Ok(())
    }

    /// Where the file is written (for MP4, the final path; the data is in `path` + `.part` until finished).
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Stream time (ms) of the file's first frame.
    pub fn start_ms(&self) -> i64 {
        self.origin_ms
    }

    /// Media written so far, in ms.
    pub fn duration_ms(&self) -> i64 {
        self.last_ms - self.origin_ms
    }

    /// Completes the file: flushes it and, for MP4, rewrites the fragments as a seekable file.
    pub fn finish(self) -> Result<FileInfo, WriteError> {
        match self.inner {
            Inner::Flv(mut out) | Inner::Aac { mut out, .. } => {
                out.flush()?;
                out.get_ref().sync_data()?;
            }
            Inner::Mp4(mut state) => {
                state.flush(None)?;
                state.out.flush()?;
                drop(state.out);
                finalize_mp4(&state.part_path, &self.path)?;
            }
        }
        let size = std::fs::metadata(&self.path)?.len();
        Ok(FileInfo { path: self.path, format: self.format, start_ms: self.origin_ms, end_ms: self.last_ms, size })
    }
}

fn part_path(path: &Path) -> PathBuf {
    let mut p = path.as_os_str().to_owned();
    p.push(".part");
    PathBuf::from(p)
}

impl Mp4State {
    /// Writes the buffered frames as one fragment; `next` is the first frame after them (for the durations).
    fn flush(&mut self, next: Option<&Frame>) -> Result<(), WriteError> {
        let mut runs_samples = Vec::new();
        if let Some(v) = self.tracks.video.as_ref().filter(|_| !self.video.is_empty()) {
            let next_dts = next.filter(|f| f.media == MediaType::Video).map(|f| f.dts);
            runs_samples.push((fmp4::VIDEO_TRACK_ID, fmp4::samples_from_frames(v, &self.video, next_dts)));
        }
        if let Some(a) = self.tracks.audio.as_ref().filter(|_| !self.audio.is_empty()) {
            runs_samples.push((fmp4::AUDIO_TRACK_ID, fmp4::samples_from_frames(a, &self.audio, None)));
        }
        if runs_samples.is_empty() {
            return Ok(());
        }
        let runs: Vec<fmp4::TrackRun<'_>> =
            runs_samples.iter().map(|(id, s)| fmp4::TrackRun { track_id: *id, samples: s }).collect();
        self.sequence += 1;
        let chunks =
            fmp4::media_fragment(self.sequence, &runs).map_err(|e| WriteError::Unsupported(format!("MP4: {e}")))?;
        for c in chunks {
            self.out.write_all(&c)?;
        }
        self.video.clear();
        self.audio.clear();
        Ok(())
    }
}

struct FileSource<'a>(&'a File);

impl mp4file::ReadAt for FileSource<'_> {
    fn read_at(&mut self, offset: u64, buf: &mut [u8]) -> Result<usize, String> {
        self.0.read_at(buf, offset).map_err(|e| e.to_string())
    }
}

/// Rewrites the fragmented MP4 at `part` as a seekable MP4 at `path` and removes `part`. Also the recovery path
/// of a recording cut off by a crash: only its complete fragments are kept.
pub fn finalize_mp4(part: &Path, path: &Path) -> Result<u64, WriteError> {
    let src = File::open(part)?;
    let len = src.metadata()?.len();
    let scan = mp4file::scan(&mut FileSource(&src), len)?;
    let layout = mp4file::progressive_layout(&scan)?;
    let tmp = part_path(&path.with_extension("tmp"));
    let mut out = BufWriter::new(File::create(&tmp)?);
    out.write_all(&layout.header)?;
    let mut buf = vec![0u8; 1 << 20];
    for r in &layout.ranges {
        let mut at = r.start;
        while at < r.end {
            let n = ((r.end - at) as usize).min(buf.len());
            src.read_exact_at(&mut buf[..n], at)?;
            out.write_all(&buf[..n])?;
            at += n as u64;
        }
    }
    out.flush()?;
    out.get_ref().sync_data()?;
    drop(out);
    std::fs::rename(&tmp, path)?;
    std::fs::remove_file(part)?;
    Ok(layout.duration_ms)
}
