//! HLS recording: MPEG-TS segments cut at the first keyframe after the segment length, and a VOD playlist that
//! is rewritten (atomically) after every segment, so the files on disk are a playable recording at any moment.
//!
//! A recording can be resumed by a later publisher of the same stream (the service's "HLS resumption"): the open
//! segment is closed, and the next one starts after an `EXT-X-DISCONTINUITY` with the new publisher's tracks.
//! Segments are written to disk frame by frame (bounded memory; a crash loses only the unflushed tail of the open
//! segment, see [`recover_segment`]).

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

use bytes::BytesMut;
use ferrocast_formats::hls::{MediaPlaylist, Segment};
use ferrocast_formats::ts::TsMuxer;
use ferrocast_media::{Frame, MediaType};

use crate::writer::{FileTracks, WriteError};

/// A finished segment of an HLS recording.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HlsSegment {
    /// File name, relative to the playlist.
    pub file_name: String,
    /// Where it is.
    pub path: PathBuf,
    /// Stream time (ms) of its first frame.
    pub start_ms: i64,
    /// Its length in ms (up to the next segment's start, or its last frame).
    pub duration_ms: i64,
    /// An `EXT-X-DISCONTINUITY` comes before it.
    pub discontinuity: bool,
    /// Bytes.
    pub size: u64,
}

struct OpenSegment {
    file_name: String,
    path: PathBuf,
    out: BufWriter<File>,
    start_ms: i64,
    last_ms: i64,
    /// Time between the last two frames of the clock track (video, else audio): the last frame's duration.
    frame_ms: i64,
    /// DTS of the last frame of the clock track.
    clock_ms: Option<i64>,
    discontinuity: bool,
    size: u64,
}

/// One HLS recording: `{dir}/{name}.m3u8` and `{dir}/{name}_{n}.ts`.
pub struct HlsRecording {
    dir: PathBuf,
    name: String,
    segment_ms: i64,
    tracks: FileTracks,
    muxer: TsMuxer,
    counters: Option<[u8; 4]>,
    open: Option<OpenSegment>,
    segments: Vec<HlsSegment>,
    next_index: u32,
    discontinuity_next: bool,
    /// After a resume: the first frame written is moved to where the recording ended.
    rebase_next: bool,
    /// Added to every frame's times (ms): keeps the recording's timeline increasing across resumptions, whose
    /// publishers usually start again at 0 (players, ffmpeg among them, mishandle timestamps going back even
    /// after `EXT-X-DISCONTINUITY`).
    shift_ms: i64,
    /// DTS (ms, shifted) of the last video and audio frame written: a frame at or before it (around a resume,
    /// where the new publisher's audio may start a little before its first keyframe) is dropped, so that each
    /// track's timeline only goes forward.
    last_dts: [Option<i64>; 2],
    buf: BytesMut,
}

impl HlsRecording {
    /// A recording of a stream with `tracks`, cutting segments of about `segment_ms`.
    pub fn new(dir: &Path, name: &str, tracks: FileTracks, segment_ms: i64) -> Result<HlsRecording, WriteError> {
        std::fs::create_dir_all(dir)?;
        let muxer = muxer_for(&tracks)?;
        Ok(HlsRecording {
            dir: dir.to_path_buf(),
            name: name.to_string(),
            segment_ms: segment_ms.max(1000),
            tracks,
            muxer,
            counters: None,
            open: None,
            segments: Vec::new(),
            next_index: 0,
            discontinuity_next: false,
            rebase_next: false,
            shift_ms: 0,
            last_dts: [None, None],
            buf: BytesMut::with_capacity(64 * 1024),
        })
    }

    /// The playlist's path.
    pub fn playlist_path(&self) -> PathBuf {
        self.dir.join(format!("{}.m3u8", self.name))
    }

    /// The segments finished so far.
    pub fn segments(&self) -> &[HlsSegment] {
        &self.segments
    }

    /// Media recorded in finished segments, in ms.
    pub fn duration_ms(&self) -> i64 {
        self.segments.iter().map(|s| s.duration_ms).sum()
    }

    /// Bytes of the finished segments.
    pub fn size(&self) -> u64 {
        self.segments.iter().map(|s| s.size).sum()
    }

    /// Writes a frame; returns the segment it closed, if any. Frames before the first segment start (a keyframe,
    /// or any audio frame for audio-only streams) are dropped: a segment must be decodable from its start.
    pub fn write(&mut self, frame: &Frame) -> Result<Option<HlsSegment>, WriteError> {
        let wanted = match frame.media {
            MediaType::Video => self.tracks.video.is_some(),
            MediaType::Audio => self.tracks.audio.is_some(),
        };
        if !wanted {
            return Ok(None);
        }
        let start_point =
            if self.tracks.video.is_some() { frame.media == MediaType::Video && frame.keyframe } else { true };
        if self.rebase_next && start_point && self.open.is_none() {
            self.rebase_next = false;
            let end = self.segments.last().map_or(frame.dts_ms(), |s| s.start_ms + s.duration_ms);
            self.shift_ms = end - frame.dts_ms();
        }
        let shifted;
        let frame = if self.shift_ms != 0 {
            let mut f = frame.clone();
            let shift = ferrocast_media::rescale(self.shift_ms, 1000, f.timebase);
            f.dts += shift;
            f.pts += shift;
            shifted = f;
            &shifted
        } else {
            frame
        };
        let time = frame.dts_ms();
        let track = usize::from(frame.media == MediaType::Audio);
        if self.last_dts[track].is_some_and(|last| time <= last) {
            return Ok(None);
        }
        let mut closed = None;
        if start_point && self.open.as_ref().is_some_and(|s| time - s.start_ms >= self.segment_ms) {
            closed = self.close_segment_at(Some(time))?;
        }
        if self.open.is_none() {
            if !start_point {
                return Ok(closed);
            }
            self.open_segment(time)?;
        }
        self.buf.clear();
        if let Err(e) = self.muxer.write_frame(frame, &mut self.buf) {
            return Err(WriteError::Unsupported(format!("MPEG-TS: {e}")));
        }
        self.last_dts[track] = Some(time);
        let clock = match frame.media {
            MediaType::Video => true,
            MediaType::Audio => self.tracks.video.is_none(),
        };
        if let Some(seg) = self.open.as_mut() {
            seg.out.write_all(&self.buf)?;
            seg.size += self.buf.len() as u64;
            seg.last_ms = seg.last_ms.max(time);
            if clock {
                if let Some(prev) = seg.clock_ms.filter(|p| time > *p) {
                    seg.frame_ms = time - prev;
                }
                seg.clock_ms = Some(time);
            }
        }
        Ok(closed)
    }

    fn open_segment(&mut self, time: i64) -> Result<(), WriteError> {
        let file_name = format!("{}_{}.ts", self.name, self.next_index);
        self.next_index += 1;
        let path = self.dir.join(&file_name);
        let mut out = BufWriter::new(File::create(&path)?);
        if let Some(c) = self.counters {
            self.muxer.set_continuity_counters(c);
        }
        self.buf.clear();
        self.muxer.write_tables(&mut self.buf);
        out.write_all(&self.buf)?;
        self.open = Some(OpenSegment {
            file_name,
            path,
            out,
            start_ms: time,
            last_ms: time,
            frame_ms: 0,
            clock_ms: None,
            discontinuity: std::mem::take(&mut self.discontinuity_next),
            size: self.buf.len() as u64,
        });
        Ok(())
    }

    /// Closes the open segment (its length runs to `next_start` when given, else to its last frame), and
    /// rewrites the playlist.
    fn close_segment_at(&mut self, next_start: Option<i64>) -> Result<Option<HlsSegment>, WriteError> {
        let Some(mut seg) = self.open.take() else { return Ok(None) };
        seg.out.flush()?;
        seg.out.get_ref().sync_data()?;
        self.counters = Some(self.muxer.continuity_counters());
        let end =
            next_start.filter(|n| *n > seg.start_ms).unwrap_or(seg.clock_ms.map_or(seg.last_ms, |c| c + seg.frame_ms));
        // A single-frame segment still lasts a frame, not 0 s.
        let duration_ms = (end - seg.start_ms).max(1);
        let done = HlsSegment {
            file_name: seg.file_name,
            path: seg.path,
            start_ms: seg.start_ms,
            duration_ms,
            discontinuity: seg.discontinuity,
            size: seg.size,
        };
        self.segments.push(done.clone());
        self.write_playlist(false)?;
        Ok(Some(done))
    }

    /// Closes the open segment (at a publisher's end); returns it.
    pub fn close_segment(&mut self) -> Result<Option<HlsSegment>, WriteError> {
        self.close_segment_at(None)
    }

    /// Continues the recording with a new publisher: the open segment is closed and returned, and the next
    /// segment starts after an `EXT-X-DISCONTINUITY`, muxed for `tracks`.
    pub fn resume(&mut self, tracks: FileTracks) -> Result<Option<HlsSegment>, WriteError> {
        let closed = self.close_segment()?;
        self.muxer = muxer_for(&tracks)?;
        self.tracks = tracks;
        // The new muxer continues the counters so players see no continuity error within the PIDs.
        self.discontinuity_next = !self.segments.is_empty();
        self.rebase_next = !self.segments.is_empty();
        Ok(closed)
    }

    /// The playlist text (`ended`: with `EXT-X-ENDLIST`).
    pub fn playlist(&self, ended: bool) -> String {
        playlist_text(&self.segments, ended)
    }

    /// Writes the playlist next to the segments (write to a temporary file, then rename).
    pub fn write_playlist(&self, ended: bool) -> Result<PathBuf, WriteError> {
        let path = self.playlist_path();
        let tmp = self.dir.join(format!(".{}.m3u8.tmp", self.name));
        std::fs::write(&tmp, self.playlist(ended))?;
        std::fs::rename(&tmp, &path)?;
        Ok(path)
    }

    /// Closes the open segment and writes the final playlist; returns the closed segment.
    pub fn finish(&mut self) -> Result<Option<HlsSegment>, WriteError> {
        let closed = self.close_segment()?;
        self.write_playlist(true)?;
        Ok(closed)
    }
}

fn muxer_for(tracks: &FileTracks) -> Result<TsMuxer, WriteError> {
    TsMuxer::new(tracks.video.as_ref(), tracks.audio.as_ref())
        .map_err(|e| WriteError::Unsupported(format!("HLS (MPEG-TS) cannot carry this stream: {e}")))
}

/// A VOD playlist of `segments`.
pub fn playlist_text(segments: &[HlsSegment], ended: bool) -> String {
    let target = segments.iter().map(|s| s.duration_ms).max().unwrap_or(1000);
    let playlist = MediaPlaylist {
        target_duration: u32::try_from((target + 999) / 1000).unwrap_or(u32::MAX),
        media_sequence: 0,
        discontinuity_sequence: 0,
        segments: segments
            .iter()
            .map(|s| Segment {
                duration: s.duration_ms as f64 / 1000.0,
                uri: s.file_name.clone(),
                discontinuity: s.discontinuity,
                program_date_time_ms: None,
                map_uri: None,
                key: None,
                parts: Vec::new(),
            })
            .collect(),
        low_latency: None,
        ended,
        uri_query: String::new(),
    };
    playlist.render()
}

/// Makes a segment cut off by a crash usable: truncates it to whole 188-byte packets and returns its length in
/// bytes. (Its duration is estimated by the caller from the time it was written.)
pub fn recover_segment(path: &Path) -> Result<u64, WriteError> {
    let len = std::fs::metadata(path)?.len();
    let whole = len - len % 188;
    if whole != len {
        let f = std::fs::OpenOptions::new().write(true).open(path)?;
        f.set_len(whole)?;
        f.sync_data()?;
    }
    Ok(whole)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tests::{decode_errors, test_media};

    /// 6 s of media in 2 s segments, "resumed" after 3 s by a publisher whose timeline starts again at 0: the
    /// playlist has every segment, one discontinuity before the first segment of the second publisher, and
    /// ffmpeg decodes it end to end without errors.
    #[test]
    fn segments_playlist_and_resumption_with_a_discontinuity() {
        let dir = std::env::temp_dir().join(format!("ferrocast-recorder-hls-{}", std::process::id()));
        let Some((tracks, frames)) = test_media(&dir, 6) else { return };
        let out = dir.join("out");
        let mut rec = HlsRecording::new(&out, "rec", tracks.clone(), 2000).expect("new");
        let mut closed = Vec::new();
        let (first, second): (Vec<&Frame>, Vec<&Frame>) = frames.iter().partition(|f| f.dts_ms() < 3000);
        for f in first {
            closed.extend(rec.write(f).expect("write"));
        }
        closed.extend(rec.resume(tracks).expect("resume"));
        for f in second {
            let mut f = f.clone();
            let shift = ferrocast_media::rescale(3000, 1000, f.timebase);
            f.dts -= shift;
            f.pts -= shift;
            closed.extend(rec.write(&f).expect("write"));
        }
        closed.extend(rec.finish().expect("finish"));
        assert_eq!(closed.len(), rec.segments().len());
        // 0-2, 2-3 | 0-2, 2-3 (the resume cuts the segment at 3 s).
        assert_eq!(closed.len(), 4, "{closed:?}");
        let disc: Vec<bool> = closed.iter().map(|s| s.discontinuity).collect();
        assert_eq!(disc, [false, false, true, false]);
        let text = std::fs::read_to_string(rec.playlist_path()).expect("playlist");
        assert_eq!(text.matches("#EXT-X-DISCONTINUITY\n").count(), 1, "{text}");
        assert!(text.ends_with("#EXT-X-ENDLIST\n"), "{text}");
        assert!((rec.duration_ms() - 6000).abs() <= 100, "{}", rec.duration_ms());
        for s in &closed {
            assert_eq!(s.size % 188, 0);
            assert_eq!(std::fs::metadata(&s.path).expect("segment").len(), s.size);
        }
        let errors = decode_errors(&rec.playlist_path());
        assert!(errors.is_empty(), "{errors}");
        // The second publisher's timeline (starting again at 0) continues where the first one ended.
        let probe = std::process::Command::new("/usr/bin/ffprobe")
            .args(["-v", "error", "-show_entries", "format=duration", "-of", "csv=p=0"])
            .arg(rec.playlist_path())
            .output()
            .expect("ffprobe");
        let seconds: f64 = String::from_utf8_lossy(&probe.stdout).trim().parse().unwrap_or(0.0);
        assert!((seconds - 6.0).abs() < 0.3, "the playlist lasts {seconds} s");
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn a_torn_segment_is_cut_to_whole_packets() {
        let dir = std::env::temp_dir().join(format!("ferrocast-recorder-torn-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("dir");
        let path = dir.join("x.ts");
        std::fs::write(&path, vec![0x47u8; 188 * 3 + 100]).expect("write");
        assert_eq!(recover_segment(&path).expect("recover"), 188 * 3);
        assert_eq!(std::fs::metadata(&path).expect("meta").len(), 188 * 3);
        let _ = std::fs::remove_dir_all(&dir);
    }
}
