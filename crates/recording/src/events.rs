//! Callback payloads of recording and screenshots: event 100 (a recording file), 332 (recording status), 341
//! (recording exception) and 200 (a screenshot), as documented in `spec/callbacks-global-clients.md` §3–§5, §9.
//! They are queued in the control plane's outbox, which signs and retries them like events 0 and 1.

use serde_json::{Map, Value, json};

/// The fields of a JSON object built with `json!({..})`.
fn into_map(body: Value) -> Map<String, Value> {
    match body {
        Value::Object(m) => m,
        _ => Map::new(),
    }
}

/// `file_format` of event 332 (an integer there, a string in event 100).
pub fn status_format_code(format: &str) -> i64 {
    match format {
        "flv" => 1,
        "hls" => 2,
        "mp4" => 3,
        "aac" => 4,
        "mp3" => 5,
        _ => 0,
    }
}

/// What event 100 says about a finished, uploaded file (the URL is added when the upload is done).
#[derive(Debug, Clone, Default, serde::Serialize, serde::Deserialize, PartialEq, Eq)]
pub struct FileEvent {
    /// Push domain.
    pub domain: String,
    /// App name.
    pub app: String,
    /// Stream name.
    pub stream: String,
    /// `flv`, `hls`, `mp4` or `aac`.
    pub format: String,
    /// Template ID (a template-bound recording) as a string, empty otherwise.
    pub template_id: String,
    /// CreateRecordTask's TaskId, empty for rule recordings.
    pub task_id: String,
    /// The recording session (one per job run).
    pub session_id: String,
    /// Wall clock of the file's first frame, UNIX ms.
    pub start_ms: i64,
    /// Wall clock of its end, UNIX ms.
    pub end_ms: i64,
    /// Media duration in ms.
    pub duration_ms: i64,
    /// Bytes (for HLS: the playlist and all its segments).
    pub size: u64,
    /// The push URL's query string (empty for API tasks, as documented).
    pub stream_param: String,
    /// Stream time (ms) when the recording first pulled the stream.
    pub media_start_ms: i64,
    /// `h264`, `h265`, ... or empty.
    pub video_codec: String,
    /// `WxH` or empty.
    pub resolution: String,
}

/// Event 100's body (without `t`/`sign`, which the outbox adds per attempt).
pub fn file_payload(appid: i64, f: &FileEvent, url: &str, file_id: &str) -> Map<String, Value> {
    let ext = json!({ "video_codec": f.video_codec, "resolution": f.resolution, "session_id": f.session_id });
    let body = json!({
        "event_type": 100,
        "appid": appid,
        "app": f.domain,
        "appname": f.app,
        "stream_id": f.stream,
        "channel_id": f.stream,
        "file_id": file_id,
        "record_file_id": file_id,
        "file_format": f.format,
        "task_id": f.task_id,
        "record_temp_id": f.template_id,
        "start_time": f.start_ms.div_euclid(1000),
        "end_time": f.end_ms.div_euclid(1000),
        "start_time_usec": f.start_ms.rem_euclid(1000) * 1000,
        "end_time_usec": f.end_ms.rem_euclid(1000) * 1000,
        "duration": (f.duration_ms + 500) / 1000,
        "file_size": f.size,
        "stream_param": f.stream_param,
        "video_url": url,
        "media_start_time": f.media_start_ms,
        "record_bps": 0,
        "callback_ext": ext.to_string(),
    });
    into_map(body)
}

/// A recording status change (event 332).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RecordStatus {
    /// `record_start_succeeded`.
    Started,
    /// `record_start_failed`.
    StartFailed,
    /// `record_paused`: the publisher left and an HLS recording waits for it (resumption).
    Paused,
    /// `record_resumed`.
    Resumed,
    /// `record_error`.
    Error,
    /// `record_ended`.
    Ended,
}

impl RecordStatus {
    /// The `record_event` string.
    pub fn name(self) -> &'static str {
        match self {
            RecordStatus::Started => "record_start_succeeded",
            RecordStatus::StartFailed => "record_start_failed",
            RecordStatus::Paused => "record_paused",
            RecordStatus::Resumed => "record_resumed",
            RecordStatus::Error => "record_error",
            RecordStatus::Ended => "record_ended",
        }
    }
}

/// Event 332's body. `start_model` is 1 for rules and 5 for API tasks; `message` (not in the documented fields,
/// receivers ignore unknown ones) says what went wrong for `record_error`/`record_start_failed`.
#[allow(clippy::too_many_arguments)]
pub fn status_payload(
    appid: i64,
    domain: &str,
    app: &str,
    stream: &str,
    session_id: &str,
    format: &str,
    start_model: i64,
    status: RecordStatus,
    seq: u64,
    now_s: i64,
    message: &str,
) -> Map<String, Value> {
    let detail = json!({
        "file_format": status_format_code(format),
        "record_bps": 0,
        "start_model": start_model,
        "record_content": 1,
        "source_type": 1,
        "codec_temp_id": 0,
    });
    let mut body = json!({
        "event_type": 332,
        "appid": appid,
        "appname": app,
        "domain": domain,
        "event_time": now_s,
        "record_detail": detail.to_string(),
        "record_event": status.name(),
        "seq": seq.to_string(),
        "session_id": session_id,
        "stream_id": stream,
    });
    if !message.is_empty()
        && let Value::Object(m) = &mut body
    {
        m.insert("message".into(), Value::from(message));
    }
    into_map(body)
}

/// Exception types of event 341 that ferrocast raises.
pub mod exception {
    /// "An error occurred while writing audio/video frames to containers (files)": disk or muxing errors, and
    /// uploads to storage that keep failing.
    pub const WRITE_FAILED: i64 = -104;
    /// "The recording file is truncated due to a video encoding method change."
    pub const CODEC_CHANGED: i64 = -120;
    /// "Abnormal video frames are dropped": the recorder fell behind the stream and skipped frames.
    pub const FRAMES_DROPPED: i64 = -130;
}

/// Event 341's body.
#[allow(clippy::too_many_arguments)]
pub fn exception_payload(
    appid: i64,
    domain: &str,
    app: &str,
    stream: &str,
    session_id: &str,
    format: &str,
    level: &str,
    kind: i64,
    occurs: u64,
    desc: &str,
    now_s: i64,
) -> Map<String, Value> {
    // Event 341 names HLS recordings by their segments' format.
    let format = if format == "hls" { "ts" } else { format };
    let body = json!({
        "interface": "general_callback",
        "event_type": 341,
        "appid": appid,
        "domain": domain,
        "path": app,
        "stream_id": stream,
        "session_id": session_id,
        "file_format": format,
        "timestamp": now_s,
        "exception_level": level,
        "exception": { "type": kind, "desc": desc, "occurs": occurs },
    });
    into_map(body)
}

/// What event 200 says about an uploaded screenshot.
#[derive(Debug, Clone, Default, serde::Serialize, serde::Deserialize, PartialEq, Eq)]
pub struct PictureEvent {
    /// Push domain.
    pub domain: String,
    /// App name.
    pub app: String,
    /// Stream name.
    pub stream: String,
    /// The push URL's query string.
    pub stream_param: String,
    /// UNIX seconds when it was taken.
    pub create_time: i64,
    /// Bytes.
    pub size: u64,
    /// Pixels.
    pub width: u32,
    /// Pixels.
    pub height: u32,
    /// `/` + the object key.
    pub pic_url: String,
    /// CreateScreenshotTask's TaskId, empty for rule screenshots.
    pub task_id: String,
}

/// Event 200's body.
pub fn picture_payload(p: &PictureEvent, full_url: &str) -> Map<String, Value> {
    let body = json!({
        "event_type": 200,
        "app": p.domain,
        "appname": p.app,
        "stream_id": p.stream,
        "channel_id": p.stream,
        "stream_param": p.stream_param,
        "create_time": p.create_time,
        "file_size": p.size,
        "width": p.width,
        "height": p.height,
        "pic_url": p.pic_url,
        "pic_full_url": full_url,
        "task_id": p.task_id,
    });
    into_map(body)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn file_event_has_the_documented_fields_and_types() {
        let f = FileEvent {
            domain: "push.example.com".into(),
            app: "live".into(),
            stream: "s1".into(),
            format: "mp4".into(),
            start_ms: 1_642_089_445_316,
            end_ms: 1_642_089_598_618,
            duration_ms: 153_400,
            size: 1234,
            session_id: "abc".into(),
            video_codec: "h264".into(),
            resolution: "640x360".into(),
            ..FileEvent::default()
        };
        let p = file_payload(7, &f, "http://x/y.mp4", "id1");
        assert_eq!(p["event_type"], 100);
        assert_eq!(p["app"], "push.example.com");
        assert_eq!(p["start_time"], 1_642_089_445);
        assert_eq!(p["start_time_usec"], 316_000);
        assert_eq!(p["end_time_usec"], 618_000);
        assert_eq!(p["duration"], 153);
        assert_eq!(p["file_size"], 1234);
        assert_eq!(p["video_url"], "http://x/y.mp4");
        let ext: Value = serde_json::from_str(p["callback_ext"].as_str().expect("a string")).expect("JSON inside");
        assert_eq!(ext["resolution"], "640x360");
    }

    #[test]
    fn status_and_exception_payloads() {
        let p = status_payload(1, "d", "live", "s", "sid", "hls", 1, RecordStatus::Paused, 9, 100, "");
        assert_eq!(p["record_event"], "record_paused");
        assert_eq!(p["seq"], "9");
        let detail: Value = serde_json::from_str(p["record_detail"].as_str().expect("string")).expect("json");
        assert_eq!(detail["file_format"], 2);
        assert!(!p.contains_key("message"));
        let e = exception_payload(1, "d", "live", "s", "sid", "hls", "error", exception::WRITE_FAILED, 2, "x", 5);
        assert_eq!(e["file_format"], "ts");
        assert_eq!(e["exception"]["type"], -104);
    }
}
