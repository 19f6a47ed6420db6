//! Recording (issue 6, first part): a stream's frames into files of each enabled format, split every
//! `interval` at the first keyframe after it (any audio frame for audio-only streams and AAC files), each file
//! independently playable from its start. Storage targets, templates and callbacks build on this.

pub mod hls;
pub mod writer;

use std::path::PathBuf;

use ferrocast_media::{Frame, MediaType};

pub use hls::{HlsRecording, HlsSegment, recover_segment};
pub use writer::{FileInfo, FileTracks, FileWriter, RecordFormat, WriteError, finalize_mp4};

/// One format of a recording and how often its files are split.
#[derive(Debug, Clone)]
pub struct FormatSpec {
    /// The format.
    pub format: RecordFormat,
    /// A new file at the first keyframe after this much media, in ms.
    pub interval_ms: i64,
}

/// Records one stream into files of several formats.
pub struct Recording {
    dir: PathBuf,
    name: String,
    tracks: FileTracks,
    formats: Vec<(FormatSpec, Option<FileWriter>, u32)>,
    finished: Vec<FileInfo>,
}

impl Recording {
    /// A recording writing `{dir}/{name}_{n}.{ext}` files of `formats` for a stream with `tracks`.
    pub fn new(dir: PathBuf, name: &str, tracks: FileTracks, formats: Vec<FormatSpec>) -> Recording {
        Recording {
            dir,
            name: name.to_string(),
            tracks,
            formats: formats.into_iter().map(|f| (f, None, 0)).collect(),
            finished: Vec::new(),
        }
    }

    /// Writes a frame to every format, starting or splitting files as needed; returns the errors with their formats.
    /// A format that cannot record this stream (e.g. AAC of Opus audio) reports its error once and stops.
    pub fn write(&mut self, frame: &Frame) -> Vec<(RecordFormat, WriteError)> {
        let mut errors = Vec::new();
        let has_video = self.tracks.video.is_some();
        let time = frame.dts_ms();
        for (spec, current, count) in &mut self.formats {
            let audio_only_file = spec.format == RecordFormat::Aac || !has_video;
            // Files start (and split) where a decoder can start: a video keyframe, or any audio frame.
            let start_point = if audio_only_file {
                frame.media == MediaType::Audio
            } else {
                frame.media == MediaType::Video && frame.keyframe
            };
            let split = current.as_ref().is_some_and(|w| start_point && time - w.start_ms() >= spec.interval_ms);
            if split && let Some(w) = current.take() {
                match w.finish() {
                    Ok(info) => self.finished.push(info),
                    Err(e) => errors.push((spec.format, e)),
                }
            }
            if current.is_none() && start_point && *count != u32::MAX {
                *count += 1;
                let path = self.dir.join(format!("{}_{}.{}", self.name, count, spec.format.extension()));
                match FileWriter::create(spec.format, &path, &self.tracks, time) {
                    Ok(w) => *current = Some(w),
                    Err(e) => {
                        *count = u32::MAX;
                        errors.push((spec.format, e));
                    }
                }
            }
            if let Some(w) = current.as_mut()
                && let Err(e) = w.write(frame)
            {
                errors.push((spec.format, e));
            }
        }
        errors
    }

    /// The files being written now: their format, path and stream time (ms) of their first frame.
    pub fn open_files(&self) -> Vec<(RecordFormat, &std::path::Path, i64)> {
        self.formats
            .iter()
            .filter_map(|(spec, current, _)| current.as_ref().map(|w| (spec.format, w.path(), w.start_ms())))
            .collect()
    }

    /// Files completed since the last call.
    pub fn take_finished(&mut self) -> Vec<FileInfo> {
        std::mem::take(&mut self.finished)
    }

    /// Completes every open file.
    pub fn finish(mut self) -> (Vec<FileInfo>, Vec<(RecordFormat, WriteError)>) {
        let mut errors = Vec::new();
        for (spec, current, _) in &mut self.formats {
            if let Some(w) = current.take() {
                match w.finish() {
                    Ok(info) => self.finished.push(info),
                    Err(e) => errors.push((spec.format, e)),
                }
            }
        }
        (self.finished, errors)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ferrocast_formats::flv;
    use std::process::Command;

    fn ffprobe(path: &std::path::Path, args: &[&str]) -> String {
        let out =
            Command::new("/usr/bin/ffprobe").args(["-v", "error"]).args(args).arg(path).output().expect("ffprobe");
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// `seconds` of 320x240 H.264 (keyframe every second, B-frames) + AAC made by ffmpeg in `dir`, demuxed; None
    /// (the test is skipped) without ffmpeg.
    pub(crate) fn test_media(dir: &std::path::Path, seconds: u32) -> Option<(FileTracks, Vec<Frame>)> {
        if !std::path::Path::new("/usr/bin/ffmpeg").exists() {
            eprintln!("ffmpeg not installed: skipping");
            return None;
        }
        let _ = std::fs::remove_dir_all(dir);
        std::fs::create_dir_all(dir).expect("dir");
        let made = Command::new("/usr/bin/ffmpeg")
            .current_dir(dir)
            .args(["-v", "error", "-y", "-f", "lavfi", "-i", "testsrc2=size=320x240:rate=25", "-f", "lavfi", "-i"])
            .args(["sine", "-t", &seconds.to_string(), "-c:v", "libx264", "-g", "25", "-bf", "2", "-c:a", "aac"])
            .args(["-f", "flv", "in.flv"])
            .status()
            .expect("ffmpeg");
        assert!(made.success());
        let m = flv::demux(&std::fs::read(dir.join("in.flv")).expect("read")).expect("flv");
        let mut frames = m.frames;
        frames.sort_by_key(|f| f.dts_ms());
        Some((FileTracks { video: m.video, audio: m.audio }, frames))
    }

    /// Decodes `path` with ffmpeg; the error output, empty when it decoded cleanly.
    pub(crate) fn decode_errors(path: &std::path::Path) -> String {
        let decode =
            Command::new("/usr/bin/ffmpeg").args(["-v", "error", "-i"]).arg(path).args(["-f", "null", "-"]).output();
        match decode {
            Ok(d) if d.status.success() => String::from_utf8_lossy(&d.stderr).into_owned(),
            Ok(d) => format!("exit {:?}: {}", d.status, String::from_utf8_lossy(&d.stderr)),
            Err(e) => e.to_string(),
        }
    }

    /// 5 s of H.264 (keyframe every second, B-frames) + AAC from ffmpeg, through the recorder with 2 s files.
    #[test]
    fn files_split_on_keyframes_and_each_plays_from_its_start() {
        let dir = std::env::temp_dir().join(format!("ferrocast-recorder-{}", std::process::id()));
        let Some((tracks, frames)) = test_media(&dir, 5) else { return };
        let specs = [RecordFormat::Flv, RecordFormat::Mp4, RecordFormat::Aac]
            .map(|format| FormatSpec { format, interval_ms: 2000 })
            .to_vec();
        let mut rec = Recording::new(dir.join("out"), "s", tracks, specs);
        for f in &frames {
            assert!(rec.write(f).is_empty());
        }
        let (files, errors) = rec.finish();
        assert!(errors.is_empty(), "{errors:?}");
        for format in [RecordFormat::Flv, RecordFormat::Mp4, RecordFormat::Aac] {
            let mine: Vec<&FileInfo> = files.iter().filter(|f| f.format == format).collect();
            assert_eq!(mine.len(), 3, "{format:?}: 2 s + 2 s + 1 s");
            for (i, f) in mine.iter().enumerate() {
                let errors = decode_errors(&f.path);
                assert!(errors.is_empty(), "{:?}: {errors}", f.path);
                let duration: f64 = ffprobe(&f.path, &["-show_entries", "format=duration", "-of", "csv=p=0"])
                    .trim()
                    .parse()
                    .unwrap_or(0.0);
                let want = if i < 2 { 2.0 } else { 1.0 };
                assert!((duration - want).abs() < 0.15, "{:?} lasts {duration} s, want {want}", f.path);
                if format != RecordFormat::Aac {
                    let first = ffprobe(
                        &f.path,
                        &[
                            "-select_streams",
                            "v",
                            "-show_entries",
                            "packet=flags",
                            "-of",
                            "csv=p=0",
                            "-read_intervals",
                            "%+#1",
                        ],
                    );
                    assert!(first.trim().starts_with('K'), "{:?} starts with a keyframe: {first}", f.path);
                }
            }
        }
        assert!(
            !std::fs::read_dir(dir.join("out"))
                .expect("dir")
                .any(|e| e.is_ok_and(|e| e.path().to_string_lossy().ends_with(".part"))),
            "no .part files left"
        );
        let _ = std::fs::remove_dir_all(&dir);
    }
}
