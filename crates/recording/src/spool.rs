//! The local spool of recordings: one directory per recording session, holding the files being written and a
//! `session.json` that says what the session is (stream, template, task, storage targets) and which files were
//! already handed to the uploader. After a crash, [`recover_file`] turns what a session left into playable files.

use std::collections::BTreeMap;
use std::fs::OpenOptions;
use std::io::Read;
use std::path::{Path, PathBuf};

use ferrocast_recorder::{WriteError, finalize_mp4, recover_segment};

/// The sidecar of a recording session.
#[derive(Debug, Clone, Default, serde::Serialize, serde::Deserialize)]
pub struct SessionMeta {
    /// Push domain.
    pub domain: String,
    /// App name.
    pub app: String,
    /// Stream name.
    pub stream: String,
    /// Unique per session; names the directory.
    pub session_id: String,
    /// The template.
    pub template_id: i64,
    /// CreateRecordTask's TaskId, empty for rules.
    pub task_id: String,
    /// `{RecordId}` of the path template: the task ID, or the template ID for rules.
    pub record_id: String,
    /// 1: a rule, 5: an API task (event 332).
    pub start_model: i64,
    /// The push URL's query string (empty for tasks).
    pub stream_param: String,
    /// Storage target per format.
    pub targets: BTreeMap<String, String>,
    /// Folder template per format.
    pub folders: BTreeMap<String, String>,
    /// File name template (without extension).
    pub file_template: String,
    /// Offset of local time in path names (0 or 28800).
    pub utc_offset_s: i64,
    /// Video codec name, for event 100's `callback_ext`.
    pub video_codec: String,
    /// `WxH`, for event 100's `callback_ext`.
    pub resolution: String,
    /// Stream time when the session first pulled the stream.
    pub media_start_ms: i64,
    /// HLS recordings of the session: subdirectory → (wall clock start in UNIX ms, rendered object folder).
    pub hls: BTreeMap<String, HlsMeta>,
    /// Files (paths relative to the session directory) handed to the uploader.
    pub enqueued: Vec<String>,
    /// The session is over: every file was handed over.
    pub ended: bool,
}

/// One HLS recording of a session.
#[derive(Debug, Clone, Default, serde::Serialize, serde::Deserialize)]
pub struct HlsMeta {
    /// UNIX ms of its first frame.
    pub start_ms: i64,
    /// The object folder its playlist and segments go to.
    pub folder: String,
    /// The playlist's file name stem (`{stem}.m3u8`).
    pub stem: String,
}

/// File name of the sidecar.
pub const META_FILE: &str = "session.json";

impl SessionMeta {
    /// Reads a session's sidecar.
    pub fn load(dir: &Path) -> Result<SessionMeta, String> {
        let text = std::fs::read_to_string(dir.join(META_FILE)).map_err(|e| e.to_string())?;
        serde_json::from_str(&text).map_err(|e| e.to_string())
    }

    /// Writes the sidecar atomically.
    pub fn save(&self, dir: &Path) -> std::io::Result<()> {
        let tmp = dir.join(format!(".{META_FILE}.tmp"));
        let text = serde_json::to_string_pretty(self).map_err(std::io::Error::other)?;
        std::fs::write(&tmp, text)?;
        std::fs::rename(&tmp, dir.join(META_FILE))
    }
}

/// A file made playable after a crash.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Recovered {
    /// The playable file (for MP4, the finalized file next to the `.part`).
    pub path: PathBuf,
    /// `flv`, `mp4`, `aac` or `ts`.
    pub format: &'static str,
    /// Media duration in ms.
    pub duration_ms: i64,
    /// Bytes.
    pub size: u64,
}

/// Makes a file left by a crash playable: an MP4 `.part` is rewritten as a seekable MP4 from its complete
/// fragments; an FLV, AAC or TS file is cut after its last complete tag, frame or packet. `None` for files that
/// are not recording data.
pub fn recover_file(path: &Path) -> Result<Option<Recovered>, WriteError> {
    let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    if let Some(stem) = name.strip_suffix(".mp4.part") {
        let out = path.with_file_name(format!("{stem}.mp4"));
        let duration_ms = i64::try_from(finalize_mp4(path, &out)?).unwrap_or(i64::MAX);
        let size = std::fs::metadata(&out)?.len();
        return Ok(Some(Recovered { path: out, format: "mp4", duration_ms, size }));
    }
    let (format, (size, duration_ms)) = if name.ends_with(".flv") {
        ("flv", truncate_flv(path)?)
    } else if name.ends_with(".aac") {
        ("aac", truncate_adts(path)?)
    } else if name.ends_with(".ts") {
        let size = recover_segment(path)?;
        ("ts", (size, ts_duration_ms(&std::fs::read(path)?)))
    } else {
        return Ok(None);
    };
    Ok(Some(Recovered { path: path.to_path_buf(), format, duration_ms, size }))
}

fn truncate_to(path: &Path, len: u64) -> std::io::Result<()> {
    let f = OpenOptions::new().write(true).open(path)?;
    if f.metadata()?.len() != len {
        f.set_len(len)?;
        f.sync_data()?;
    }
    Ok(())
}

/// Cuts an FLV file after its last complete tag; returns (bytes, ms of the last tag's timestamp).
pub fn truncate_flv(path: &Path) -> std::io::Result<(u64, i64)> {
    let mut data = Vec::new();
    std::fs::File::open(path)?.read_to_end(&mut data)?;
    let (len, last_ms) = flv_complete_len(&data);
    truncate_to(path, len as u64)?;
    Ok((len as u64, last_ms))
}

/// The length of the complete tags of an FLV file (header included) and the last tag's timestamp.
pub fn flv_complete_len(data: &[u8]) -> (usize, i64) {
    if data.len() < 13 || &data[..3] != b"FLV" {
        return (0, 0);
    }
    let header = u32::from_be_bytes([data[5], data[6], data[7], data[8]]) as usize;
    let mut at = header + 4; // the header, then PreviousTagSize0
    let mut last_ms = 0i64;
    while at + 11 <= data.len() {
        let size = u32::from_be_bytes([0, data[at + 1], data[at + 2], data[at + 3]]) as usize;
        let ts = u32::from_be_bytes([data[at + 7], data[at + 4], data[at + 5], data[at + 6]]);
        let end = at + 11 + size + 4;
        if end > data.len() {
            break;
        }
        last_ms = i64::from(ts);
        at = end;
    }
    (at.min(data.len()), last_ms)
}

/// Cuts an ADTS file after its last complete frame; returns (bytes, ms of audio).
pub fn truncate_adts(path: &Path) -> std::io::Result<(u64, i64)> {
    let mut data = Vec::new();
    std::fs::File::open(path)?.read_to_end(&mut data)?;
    let (len, ms) = adts_complete_len(&data);
    truncate_to(path, len as u64)?;
    Ok((len as u64, ms))
}

/// The length of the complete ADTS frames at the start of `data` and their duration in ms.
pub fn adts_complete_len(data: &[u8]) -> (usize, i64) {
    const RATES: [i64; 13] = [96000, 88200, 64000, 48000, 44100, 32000, 24000, 22050, 16000, 12000, 11025, 8000, 7350];
    let mut at = 0usize;
    let mut samples = 0i64;
    let mut rate = 0i64;
    while at + 7 <= data.len() {
        if data[at] != 0xff || data[at + 1] & 0xf0 != 0xf0 {
            break;
        }
        let len =
            (((data[at + 3] & 0x03) as usize) << 11) | ((data[at + 4] as usize) << 3) | (data[at + 5] as usize >> 5);
        if len < 7 || at + len > data.len() {
            break;
        }
        rate = RATES.get(usize::from((data[at + 2] >> 2) & 0x0f)).copied().unwrap_or(0);
        samples += 1024 * (i64::from(data[at + 6] & 0x03) + 1);
        at += len;
    }
    let ms = if rate > 0 { samples * 1000 / rate } else { 0 };
    (at, ms)
}

/// The media time an MPEG-TS file spans (first to last frame, plus one frame of 40 ms), 0 if it has no frames.
pub fn ts_duration_ms(data: &[u8]) -> i64 {
    let mut demux = ferrocast_formats::ts_demux::TsDemuxer::new();
    demux.push(data);
    demux.flush();
    let (mut first, mut last) = (i64::MAX, i64::MIN);
    while let Some(event) = demux.next_event() {
        if let Ok(ferrocast_formats::ts_demux::DemuxEvent::Frame(f)) = event {
            first = first.min(f.dts_ms());
            last = last.max(f.dts_ms());
        }
    }
    if first > last { 0 } else { last - first + 40 }
}

/// One entry of a recording playlist written by [`ferrocast_recorder::HlsRecording`].
#[derive(Debug, Clone, PartialEq)]
pub struct PlaylistEntry {
    /// Segment file name.
    pub uri: String,
    /// Seconds.
    pub duration: f64,
    /// Preceded by `EXT-X-DISCONTINUITY`.
    pub discontinuity: bool,
}

/// Reads back the segments of a playlist we wrote.
pub fn parse_playlist(text: &str) -> Vec<PlaylistEntry> {
    let mut out = Vec::new();
    let mut duration = None;
    let mut discontinuity = false;
    for line in text.lines().map(str::trim) {
        if line == "#EXT-X-DISCONTINUITY" {
            discontinuity = true;
        } else if let Some(rest) = line.strip_prefix("#EXTINF:") {
            duration = rest.split(',').next().and_then(|d| d.trim().parse::<f64>().ok());
        } else if !line.is_empty() && !line.starts_with('#') {
            if let Some(d) = duration.take() {
                out.push(PlaylistEntry { uri: line.to_string(), duration: d, discontinuity });
            }
            discontinuity = false;
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flv_is_cut_after_the_last_whole_tag() {
        let mut f = b"FLV\x01\x05\x00\x00\x00\x09\x00\x00\x00\x00".to_vec();
        // Two 3-byte tags at 40 and 80 ms, then half a tag.
        for ts in [40u8, 80] {
            f.extend_from_slice(&[9, 0, 0, 3, 0, 0, ts, 0, 0, 0, 0, 1, 2, 3, 0, 0, 0, 14]);
        }
        let whole = f.len();
        f.extend_from_slice(&[9, 0, 0, 50, 0, 0, 120, 0, 0, 0, 0, 1]);
        assert_eq!(flv_complete_len(&f), (whole, 80));
        assert_eq!(flv_complete_len(b"nope"), (0, 0));
    }

    #[test]
    fn adts_is_cut_after_the_last_whole_frame() {
        // 44.1 kHz (index 4) frames of 10 bytes.
        let frame = [0xff, 0xf1, 0x50, 0x80, 0x01, 0x40, 0xfc, 0, 0, 0];
        let mut data = Vec::new();
        for _ in 0..43 {
            data.extend_from_slice(&frame);
        }
        data.extend_from_slice(&frame[..6]);
        assert_eq!(adts_complete_len(&data), (430, 43 * 1024 * 1000 / 44100));
    }

    #[test]
    fn playlists_read_back() {
        let text = "#EXTM3U\n#EXT-X-TARGETDURATION:10\n#EXTINF:10.000,\na_0.ts\n#EXT-X-DISCONTINUITY\n\
                    #EXTINF:4.500,\na_1.ts\n#EXT-X-ENDLIST\n";
        let p = parse_playlist(text);
        assert_eq!(p.len(), 2);
        assert!(!p[0].discontinuity && p[1].discontinuity);
        assert_eq!(p[1].duration, 4.5);
    }
}
