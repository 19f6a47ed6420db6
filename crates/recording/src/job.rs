//! One recording job: an internal hub subscriber writing the template's formats into a spool session, handing
//! finished files to the upload queue, and (HLS) waiting for the stream to come back.

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use ferrocast_control::store_record::RecordTemplate;
use ferrocast_hub::{Batch, EntryKind, StreamKey, Subscriber, Tracks};
use ferrocast_media::{Frame, MediaType};
use ferrocast_recorder::{FileInfo, FileTracks, FormatSpec, HlsRecording, HlsSegment, RecordFormat, Recording};
use ferrocast_storage::{PathVars, UploadJob, Uploaded, content_type_for, render_path, sanitize_key};
use serde_json::json;
use tokio::sync::watch;

use crate::events::{FileEvent, RecordStatus, exception};
use crate::spool::{HlsMeta, META_FILE, SessionMeta, parse_playlist, recover_file};
use crate::{JobKey, RecordingService, Stop, new_id};
use ferrocast_control::store::unix_now_ms;

/// What a job records and why.
pub(crate) struct Plan {
    pub template: RecordTemplate,
    pub task_id: String,
    pub record_id: String,
    /// 1: a rule, 5: an API task.
    pub start_model: i64,
    pub stream_param: String,
}

/// How long the job waits for the second track before it starts files with the tracks it has.
const TRACK_WAIT_MS: i64 = 1500;
/// How long a finished HLS recording waits for its segment uploads before its playlist is queued anyway.
const PLAYLIST_WAIT: Duration = Duration::from_secs(120);

/// A recording session's spool directory and sidecar, shared by its job and its HLS recordings (which may
/// outlive the job while they wait for the stream to come back).
#[derive(Clone)]
pub(crate) struct Session {
    dir: PathBuf,
    meta: Arc<parking_lot::Mutex<SessionMeta>>,
}

impl Session {
    fn save(&self) {
        let meta = self.meta.lock().clone();
        if let Err(e) = meta.save(&self.dir) {
            tracing::warn!(dir = %self.dir.display(), error = %e, "recording: session sidecar not written");
        }
    }

    fn relative(&self, path: &Path) -> String {
        path.strip_prefix(&self.dir).unwrap_or(path).to_string_lossy().into_owned()
    }

    fn id(&self) -> String {
        self.meta.lock().session_id.clone()
    }

    /// The object key of a file of `format` spanning the given wall clock times.
    fn object_key(&self, format: &str, start_ms: i64, end_ms: i64, ext: &str) -> Result<String, String> {
        let m = self.meta.lock();
        let vars = path_vars(&m, start_ms, end_ms);
        let folder = m.folders.get(format).cloned().unwrap_or_default();
        let folder = render_path(&folder, &vars).map_err(|e| e.to_string())?;
        let file = render_path(&m.file_template, &vars).map_err(|e| e.to_string())?;
        sanitize_key(&format!("{folder}/{file}.{ext}")).map_err(|e| e.to_string())
    }

    fn file_event(&self, format: &str, start_ms: i64, end_ms: i64, duration_ms: i64, size: u64) -> FileEvent {
        let m = self.meta.lock();
        FileEvent {
            domain: m.domain.clone(),
            app: m.app.clone(),
            stream: m.stream.clone(),
            format: format.to_string(),
            template_id: m.template_id.to_string(),
            task_id: m.task_id.clone(),
            session_id: m.session_id.clone(),
            start_ms,
            end_ms,
            duration_ms,
            size,
            stream_param: m.stream_param.clone(),
            media_start_ms: m.media_start_ms,
            video_codec: m.video_codec.clone(),
            resolution: m.resolution.clone(),
        }
    }

    fn target(&self, format: &str) -> String {
        self.meta.lock().targets.get(format).cloned().unwrap_or_default()
    }

    fn key(&self) -> StreamKey {
        let m = self.meta.lock();
        StreamKey::new(&m.domain, &m.app, &m.stream)
    }
}

fn path_vars(m: &SessionMeta, start_ms: i64, end_ms: i64) -> PathVars {
    PathVars {
        record_source: "origin".into(),
        domain: m.domain.clone(),
        app: m.app.clone(),
        stream: m.stream.clone(),
        record_id: m.record_id.clone(),
        start_unix_ms: start_ms,
        end_unix_ms: end_ms,
        utc_offset_s: m.utc_offset_s,
        random_id: format!("{:08}", rand::random::<u32>() % 100_000_000),
    }
}

/// An HLS recording and where it goes.
pub(crate) struct HlsRun {
    session: Session,
    rec: HlsRecording,
    /// Stream time where its current part (since the last resume) started.
    media_start_ms: i64,
    /// Wall clock of its first frame.
    start_wall_ms: i64,
    folder: String,
    /// The playlist's file name stem.
    stem: String,
    /// Unique id for the segment upload counter.
    id: String,
    start_model: i64,
}

/// An HLS recording waiting for its stream to come back.
pub(crate) struct Parked {
    hls: HlsRun,
    token: u64,
}

struct Job {
    svc: RecordingService,
    key: StreamKey,
    job_key: JobKey,
    plan: Plan,
    session: Session,
    formats: Vec<FormatSpec>,
    /// `flv`/`mp4`/`aac`/`hls` that are on for this job (valid storage target).
    enabled: Vec<&'static str>,
    rec: Option<Recording>,
    generation: u32,
    hls: Option<HlsRun>,
    hls_count: u32,
    tracks: Tracks,
    file_tracks: Option<FileTracks>,
    pending: Vec<Frame>,
    /// Least (arrival wall clock − DTS) seen: maps stream time to wall clock.
    offset: Option<i64>,
    reported: HashSet<String>,
    /// FLV files are uploaded while they grow: `FlvSpecialParam.UploadInRecording`, FLV recorded, remote target.
    stream_flv: bool,
    /// FLV files being uploaded while they grow.
    growing: HashMap<PathBuf, Growing>,
}

/// An FLV file uploaded while it is written.
struct Growing {
    /// Set when the file is complete.
    done: watch::Sender<bool>,
    upload: tokio::task::JoinHandle<Result<u64, ferrocast_storage::StorageError>>,
    key: String,
}

fn format_name(f: RecordFormat) -> &'static str {
    match f {
        RecordFormat::Flv => "flv",
        RecordFormat::Mp4 => "mp4",
        RecordFormat::Aac => "aac",
    }
}

fn to_file_tracks(t: &Tracks) -> FileTracks {
    FileTracks { video: t.video.as_deref().cloned(), audio: t.audio.as_deref().cloned() }
}

/// Runs a job until its stream ends or it is stopped.
pub(crate) async fn run(
    svc: RecordingService,
    job_key: JobKey,
    plan: Plan,
    mut sub: Subscriber,
    mut stop: watch::Receiver<Stop>,
) {
    let key = job_key.stream.clone();
    let Some(mut job) = Job::new(svc, job_key, plan, &sub).await else { return };
    let mut batch = Vec::with_capacity(64);
    let reason = loop {
        batch.clear();
        tokio::select! {
            b = sub.next_batch(&mut batch, 64) => match b {
                Batch::Ended => break Stop::Running,
                Batch::Entries { skipped } if skipped > 0 => job.on_skipped(skipped).await,
                Batch::Entries { .. } => {}
            },
            changed = stop.changed() => {
                let why = if changed.is_ok() { current(&stop) } else { Stop::Shutdown };
                if why != Stop::Running {
                    break why;
                }
                continue;
            }
        }
        let now = unix_now_ms();
        for entry in &batch {
            match &entry.kind {
                EntryKind::Frame(f) => {
                    let offset = now - f.dts_ms();
                    job.offset = Some(job.offset.map_or(offset, |o| o.min(offset)));
                    job.on_frame(f).await;
                }
                EntryKind::Track(t) => job.on_track(t).await,
                EntryKind::Metadata(_) => {}
            }
        }
    };
    tracing::info!(stream = %key, why = ?reason, "recording: job ending");
    job.finish(reason).await;
}

/// The stop signal's value (the borrow guard must not live across an await).
fn current(stop: &watch::Receiver<Stop>) -> Stop {
    *stop.borrow()
}

impl Job {
    async fn new(svc: RecordingService, job_key: JobKey, plan: Plan, sub: &Subscriber) -> Option<Job> {
        let key = job_key.stream.clone();
        let session_id = new_id();
        let dir = svc.rec_dir().join(&session_id);
        let cfg = &svc.inner.config;
        let tracks = sub.start_tracks().clone();
        let mut meta = SessionMeta {
            domain: key.domain.clone(),
            app: key.app.clone(),
            stream: key.stream.clone(),
            session_id: session_id.clone(),
            template_id: plan.template.id,
            task_id: plan.task_id.clone(),
            record_id: plan.record_id.clone(),
            start_model: plan.start_model,
            stream_param: plan.stream_param.clone(),
            file_template: cfg.file_template.clone(),
            utc_offset_s: cfg.utc_offset_s,
            ..SessionMeta::default()
        };
        let t = &plan.template;
        let mut enabled = Vec::new();
        let mut failed = Vec::new();
        for (name, param) in [("flv", &t.flv), ("hls", &t.hls), ("mp4", &t.mp4), ("aac", &t.aac)] {
            if !param.enable {
                continue;
            }
            match svc.inner.storage.target_for(&param.bucket) {
                Some(target) => {
                    meta.targets.insert(name.to_string(), target);
                    let folder =
                        if param.path.trim().is_empty() { cfg.folder_template.clone() } else { param.path.clone() };
                    meta.folders.insert(name.to_string(), folder);
                    enabled.push(name);
                }
                None => failed.push((name, format!("no storage target is configured for bucket `{}`", param.bucket))),
            }
        }
        for (name, why) in &failed {
            tracing::error!(stream = %key, format = name, "recording: {why}; this format is not recorded");
            svc.status(&key, &session_id, name, plan.start_model, RecordStatus::StartFailed, why).await;
        }
        if enabled.is_empty() {
            return None;
        }
        if let Err(e) = std::fs::create_dir_all(&dir) {
            let why = format!("spool directory {}: {e}", dir.display());
            tracing::error!(stream = %key, "recording: {why}; not recorded");
            for name in &enabled {
                svc.status(&key, &session_id, name, plan.start_model, RecordStatus::StartFailed, &why).await;
            }
            return None;
        }
        let stream_flv = t.flv_upload_in_recording
            && meta.targets.get("flv").is_some_and(|target| svc.inner.storage.is_remote(target));
        let session = Session { dir, meta: Arc::new(parking_lot::Mutex::new(meta)) };
        session.save();
        let formats = [(RecordFormat::Flv, &t.flv), (RecordFormat::Mp4, &t.mp4), (RecordFormat::Aac, &t.aac)]
            .into_iter()
            .filter(|(f, _)| enabled.contains(&format_name(*f)))
            // Interval 0 (or absent) = one file for the whole push.
            .map(|(format, p)| FormatSpec {
                format,
                interval_ms: if p.interval_s > 0 { p.interval_s * 1000 } else { i64::MAX },
            })
            .collect();
        Some(Job {
            svc,
            key,
            job_key,
            plan,
            session,
            formats,
            enabled,
            rec: None,
            generation: 0,
            hls: None,
            hls_count: 0,
            tracks,
            file_tracks: None,
            pending: Vec::new(),
            offset: None,
            reported: HashSet::new(),
            stream_flv,
            growing: HashMap::new(),
        })
    }

    fn wall(&self, stream_ms: i64) -> i64 {
        stream_ms + self.offset.unwrap_or_else(|| unix_now_ms() - stream_ms)
    }

    async fn on_track(&mut self, t: &Arc<ferrocast_media::TrackInfo>) {
        match t.media {
            MediaType::Video => self.tracks.video = Some(t.clone()),
            MediaType::Audio => self.tracks.audio = Some(t.clone()),
        }
        let Some(current) = &self.file_tracks else { return };
        let recorded = match t.media {
            MediaType::Video => current.video.as_ref(),
            MediaType::Audio => current.audio.as_ref(),
        };
        if recorded.is_some_and(|r| r.codec == t.codec && r.config == t.config) {
            return;
        }
        // New codec parameters: the files written so far end here, new ones start at the next keyframe.
        let codec_changed = recorded.is_some_and(|r| r.codec != t.codec);
        tracing::info!(stream = %self.key, media = ?t.media, codec = t.codec.name(), "recording: track changed; new files");
        self.close_files().await;
        if let Some(hls) = self.hls.as_mut() {
            match hls.rec.resume(to_file_tracks(&self.tracks)) {
                Ok(seg) => {
                    if let Some(seg) = seg {
                        hand_over_segment(&self.svc, hls, seg).await;
                    }
                }
                Err(e) => self.report_write_error("hls", &e.to_string()).await,
            }
        }
        self.file_tracks = Some(to_file_tracks(&self.tracks));
        self.start_recording();
        if codec_changed {
            let desc = format!("the {:?} codec changed to {}; files were split", t.media, t.codec.name());
            for f in self.enabled.clone() {
                self.svc.exception(&self.key, &self.session.id(), f, "info", exception::CODEC_CHANGED, 1, &desc).await;
            }
        }
    }

    /// Starts files once the tracks are known (both, or the only one after [`TRACK_WAIT_MS`] of media).
    async fn maybe_start(&mut self, force: bool) -> bool {
        if self.file_tracks.is_some() {
            return true;
        }
        let both = self.tracks.video.is_some() && self.tracks.audio.is_some();
        let span = match (self.pending.first(), self.pending.last()) {
            (Some(a), Some(b)) => b.dts_ms() - a.dts_ms(),
            _ => 0,
        };
        if !both && span < TRACK_WAIT_MS && !force {
            return false;
        }
        if self.tracks.video.is_none() && self.tracks.audio.is_none() {
            return false;
        }
        let ft = to_file_tracks(&self.tracks);
        let first = self.pending.first().map(|f| f.dts_ms()).unwrap_or(0);
        {
            let mut m = self.session.meta.lock();
            if let Some(v) = &ft.video {
                m.video_codec = v.codec.name().to_ascii_lowercase();
                if let Some(p) = &v.video {
                    m.resolution = format!("{}x{}", p.width, p.height);
                }
            }
            m.media_start_ms = first;
        }
        self.session.save();
        self.file_tracks = Some(ft);
        self.start_recording();
        let parked = self.svc.inner.parked.lock().remove(&self.job_key);
        if self.enabled.contains(&"hls") {
            match parked {
                Some(mut p) => match p.hls.rec.resume(to_file_tracks(&self.tracks)) {
                    Ok(_) => {
                        tracing::info!(stream = %self.key, "recording: HLS recording resumed after a discontinuity");
                        self.svc
                            .status(&self.key, &p.hls.session.id(), "hls", p.hls.start_model, RecordStatus::Resumed, "")
                            .await;
                        p.hls.media_start_ms = first;
                        self.hls = Some(p.hls);
                    }
                    Err(e) => {
                        self.report_write_error("hls", &e.to_string()).await;
                        finish_hls(&self.svc, p.hls).await;
                    }
                },
                None => self.start_hls(first).await,
            }
        } else if let Some(p) = parked {
            finish_hls(&self.svc, p.hls).await;
        }
        let session_id = self.session.id();
        for f in self.enabled.clone() {
            self.svc.status(&self.key, &session_id, f, self.plan.start_model, RecordStatus::Started, "").await;
        }
        let pending = std::mem::take(&mut self.pending);
        for f in &pending {
            self.write(f).await;
        }
        true
    }

    fn start_recording(&mut self) {
        let Some(ft) = self.file_tracks.clone() else { return };
        if self.formats.is_empty() {
            return;
        }
        self.generation += 1;
        let name = format!("rec{}", self.generation);
        self.rec = Some(Recording::new(self.session.dir.clone(), &name, ft, self.formats.clone()));
    }

    /// Starts a new HLS recording whose first frame is at stream time `first_ms`; a stream HLS cannot carry
    /// (AV1 in MPEG-TS) is reported, and only HLS is not recorded.
    async fn start_hls(&mut self, first_ms: i64) {
        if let Err(e) = self.try_start_hls(first_ms) {
            self.report_write_error("hls", &e).await;
        }
    }

    fn try_start_hls(&mut self, first_ms: i64) -> Result<(), String> {
        let Some(ft) = self.file_tracks.clone() else { return Ok(()) };
        self.hls_count += 1;
        let sub = format!("hls{}", self.hls_count);
        let start_wall = self.wall(first_ms);
        let stem = {
            let m = self.session.meta.lock();
            render_path(&m.file_template, &path_vars(&m, start_wall, start_wall)).unwrap_or_else(|_| m.stream.clone())
        };
        let key = self.session.object_key("hls", start_wall, start_wall, "m3u8")?;
        let folder = key.rsplit_once('/').map(|(f, _)| f.to_string()).unwrap_or_default();
        let dir = self.session.dir.join(&sub);
        match HlsRecording::new(&dir, &stem, ft, self.svc.inner.config.hls_segment_ms) {
            Ok(rec) => {
                self.session
                    .meta
                    .lock()
                    .hls
                    .insert(sub.clone(), HlsMeta { start_ms: start_wall, folder: folder.clone(), stem: stem.clone() });
                self.session.save();
                self.hls = Some(HlsRun {
                    session: self.session.clone(),
                    id: format!("{}/{sub}", self.session.id()),
                    rec,
                    media_start_ms: first_ms,
                    start_wall_ms: start_wall,
                    folder,
                    stem,
                    start_model: self.plan.start_model,
                });
                Ok(())
            }
            Err(e) => Err(e.to_string()),
        }
    }

    async fn on_frame(&mut self, f: &Frame) {
        if self.file_tracks.is_none() {
            self.pending.push(f.clone());
            // Bounded: the wait ends after TRACK_WAIT_MS of media.
            self.maybe_start(false).await;
            return;
        }
        self.write(f).await;
    }

    async fn write(&mut self, f: &Frame) {
        // Files start only here: a keyframe, or any audio frame of an audio-only stream.
        let start_point = f.keyframe || (self.tracks.video.is_none() && f.media == MediaType::Audio);
        if let Some(rec) = self.rec.as_mut() {
            let errors = rec.write(f);
            let finished = rec.take_finished();
            for (format, e) in errors {
                self.report_write_error(format_name(format), &e.to_string()).await;
            }
            for info in finished {
                self.hand_over_file(info).await;
            }
            if start_point && self.stream_flv {
                self.start_growing_uploads();
            }
        }
        let interval = self.plan.template.hls.interval_s * 1000;
        if let Some(hls) = self.hls.as_mut() {
            // HLS files are split only when the template asks for it (RecordInterval of HlsParam > 0).
            if interval > 0 && start_point && f.dts_ms() - hls.media_start_ms >= interval {
                if let Some(done) = self.hls.take() {
                    finish_hls(&self.svc, done).await;
                }
                self.start_hls(f.dts_ms()).await;
            }
        }
        let mut closed = None;
        let mut error = None;
        if let Some(hls) = self.hls.as_mut() {
            match hls.rec.write(f) {
                Ok(seg) => closed = seg,
                Err(e) => error = Some(e.to_string()),
            }
        }
        if let Some(e) = error {
            self.report_write_error("hls", &e).await;
        }
        if let (Some(seg), Some(hls)) = (closed, self.hls.as_ref()) {
            hand_over_segment(&self.svc, hls, seg).await;
        }
    }

    /// The job fell behind the hub's ring (the disk is too slow) and frames were lost from the recording: never
    /// silently.
    async fn on_skipped(&mut self, skipped: u64) {
        tracing::warn!(stream = %self.key, frames = skipped, "recording: fell behind the stream; frames skipped");
        self.svc.inner.hub.metrics().record_frames_skipped.fetch_add(skipped, Ordering::Relaxed);
        let session_id = self.session.id();
        let desc = format!("the recorder fell behind and skipped {skipped} frames");
        for f in self.enabled.clone() {
            self.svc.exception(&self.key, &session_id, f, "warning", exception::FRAMES_DROPPED, skipped, &desc).await;
        }
    }

    /// Logs and reports (event 341, once per distinct error) a write error; the stream goes on.
    async fn report_write_error(&mut self, format: &str, error: &str) {
        if !self.reported.insert(format!("{format}:{error}")) {
            return;
        }
        tracing::error!(stream = %self.key, format, error, "recording: write failed");
        let session_id = self.session.id();
        self.svc.exception(&self.key, &session_id, format, "error", exception::WRITE_FAILED, 1, error).await;
        self.svc.status(&self.key, &session_id, format, self.plan.start_model, RecordStatus::Error, error).await;
    }

    /// Starts uploading the FLV files that have just started while they grow (see [`Job::stream_flv`]).
    fn start_growing_uploads(&mut self) {
        let target = self.session.target("flv");
        let storage = &self.svc.inner.storage;
        let Some(rec) = self.rec.as_ref() else { return };
        let new: Vec<(PathBuf, i64)> = rec
            .open_files()
            .into_iter()
            .filter(|(f, path, _)| *f == RecordFormat::Flv && !self.growing.contains_key(*path))
            .map(|(_, path, start)| (path.to_path_buf(), start))
            .collect();
        for (path, start) in new {
            let wall = self.wall(start);
            let key = match self.session.object_key("flv", wall, wall, "flv") {
                Ok(k) => k,
                Err(e) => {
                    tracing::warn!(stream = %self.key, error = %e, "recording: FLV not uploaded while recording");
                    continue;
                }
            };
            let (done, finished) = watch::channel(false);
            let (storage, local, k, t) = (storage.clone(), path.clone(), key.clone(), target.clone());
            let upload =
                tokio::spawn(
                    async move { storage.put_growing_file(&t, &local, &k, content_type_for(&k), finished).await },
                );
            tracing::info!(stream = %self.key, key = %key, "recording: FLV file uploaded while it is recorded");
            self.growing.insert(path, Growing { done, upload, key });
        }
    }

    async fn hand_over_file(&mut self, info: FileInfo) {
        let format = format_name(info.format);
        let duration = info.end_ms - info.start_ms;
        // Dropping the sender aborts an upload while recording that is not wanted (a file too short).
        let growing = self.growing.remove(&info.path);
        if duration < self.svc.inner.config.min_duration_ms {
            let why = format!(
                "no file: the {format} recording has {duration} ms of media, less than the minimum of {} ms",
                self.svc.inner.config.min_duration_ms
            );
            tracing::info!(stream = %self.key, "recording: {why}");
            let _ = std::fs::remove_file(&info.path);
            self.svc
                .status(&self.key, &self.session.id(), format, self.plan.start_model, RecordStatus::Error, &why)
                .await;
            return;
        }
        let (start, end) = (self.wall(info.start_ms), self.wall(info.end_ms));
        let event = self.session.file_event(format, start, end, duration, info.size);
        match growing {
            Some(g) => finish_growing(&self.svc, &self.session, g, info.path, event),
            None => enqueue_file(&self.svc, &self.session, format, &info.path, event).await,
        }
    }

    /// Completes the FLV/MP4/AAC files.
    async fn close_files(&mut self) {
        if let Some(rec) = self.rec.take() {
            let (files, errors) = rec.finish();
            for (format, e) in errors {
                self.report_write_error(format_name(format), &e.to_string()).await;
            }
            for info in files {
                self.hand_over_file(info).await;
            }
        }
    }

    async fn finish(mut self, reason: Stop) {
        if self.file_tracks.is_none() && !self.pending.is_empty() {
            // The stream ended while the job waited for its second track: record what there is.
            self.maybe_start(true).await;
        }
        if self.file_tracks.is_none() {
            let why = "no file: the stream ended before any media arrived";
            tracing::info!(stream = %self.key, "recording: {why}");
            for f in self.enabled.clone() {
                self.svc
                    .status(&self.key, &self.session.id(), f, self.plan.start_model, RecordStatus::Error, why)
                    .await;
            }
        }
        self.close_files().await;
        let resume_s = self.plan.template.hls_resume_timeout_s;
        let park = reason == Stop::Running && resume_s > 0 && !self.svc.inner.shutting_down.load(Ordering::Relaxed);
        if let Some(mut hls) = self.hls.take() {
            if park {
                match hls.rec.close_segment() {
                    Ok(Some(seg)) => hand_over_segment(&self.svc, &hls, seg).await,
                    Ok(None) => {}
                    Err(e) => self.report_write_error("hls", &e.to_string()).await,
                }
                let token = rand::random::<u64>();
                tracing::info!(stream = %self.key, wait_s = resume_s, "recording: HLS recording waits for the stream to come back");
                self.svc.status(&self.key, &hls.session.id(), "hls", hls.start_model, RecordStatus::Paused, "").await;
                self.svc.inner.parked.lock().insert(self.job_key.clone(), Parked { hls, token });
                let svc = self.svc.clone();
                let job_key = self.job_key.clone();
                tokio::spawn(async move {
                    tokio::time::sleep(Duration::from_secs(resume_s as u64)).await;
                    let parked = {
                        let mut all = svc.inner.parked.lock();
                        if all.get(&job_key).is_some_and(|p| p.token == token) { all.remove(&job_key) } else { None }
                    };
                    if let Some(p) = parked {
                        tracing::info!(stream = %job_key.stream, "recording: resumption timeout over; HLS recording finished");
                        finish_parked(&svc, p).await;
                    }
                });
            } else {
                finish_hls(&self.svc, hls).await;
            }
        }
        let session_id = self.session.id();
        for f in self.enabled.clone() {
            if f == "hls" && park {
                continue;
            }
            self.svc.status(&self.key, &session_id, f, self.plan.start_model, RecordStatus::Ended, "").await;
        }
        let mut m = self.session.meta.lock();
        m.ended = !park;
        drop(m);
        self.session.save();
    }
}

/// Completes an upload while recording beside the job; on success the file is reported like any upload, on failure
/// it goes through the durable queue as a whole.
fn finish_growing(svc: &RecordingService, session: &Session, g: Growing, path: PathBuf, event: FileEvent) {
    let _ = g.done.send(true);
    let (svc, session) = (svc.clone(), session.clone());
    tokio::spawn(async move {
        let target = session.target("flv");
        match g.upload.await {
            Ok(Ok(size)) => {
                let url = svc.inner.storage.url(&target, &g.key);
                let job = upload_job(&session, "flv", path.clone(), g.key, file_meta(&event));
                // The event first: a crash before the file is removed repeats the upload (and the event) at the next
                // start rather than losing the event.
                if let Err(e) = svc.on_uploaded(Uploaded { job, url, size, attempts: 1 }).await {
                    tracing::warn!(file = %path.display(), error = %e, "recording: event of an FLV uploaded while recorded not queued");
                }
                session.meta.lock().enqueued.push(session.relative(&path));
                session.save();
                let _ = std::fs::remove_file(&path);
            }
            Ok(Err(e)) => {
                tracing::warn!(file = %path.display(), error = %e, "recording: upload while recording failed; uploading the whole file");
                enqueue_file(&svc, &session, "flv", &path, event).await;
            }
            Err(e) => {
                tracing::warn!(file = %path.display(), error = %e, "recording: upload while recording stopped; uploading the whole file");
                enqueue_file(&svc, &session, "flv", &path, event).await;
            }
        }
    });
}

/// The upload of a spool file to `key` on the target of `format`; the spool file goes once it is stored.
fn upload_job(session: &Session, format: &str, local_path: PathBuf, key: String, meta: serde_json::Value) -> UploadJob {
    UploadJob {
        target: session.target(format),
        local_path,
        content_type: content_type_for(&key).to_string(),
        key,
        remove_local: true,
        meta,
    }
}

/// Upload metadata of a file that raises event 100 once stored.
fn file_meta(event: &FileEvent) -> serde_json::Value {
    json!({ "kind": "file", "event": event })
}

/// The upload of an HLS segment into its recording's `folder`; counted for the recording `id`.
fn segment_job(session: &Session, folder: &str, id: &str, seg: &HlsSegment) -> UploadJob {
    let key = format!("{folder}/{}", seg.file_name);
    upload_job(session, "hls", seg.path.clone(), key, json!({ "kind": "segment", "recording": id }))
}

/// The upload of an HLS recording's playlist, which raises event 100.
fn playlist_job(session: &Session, folder: &str, stem: &str, playlist: PathBuf, event: &FileEvent) -> UploadJob {
    upload_job(session, "hls", playlist, format!("{folder}/{stem}.m3u8"), file_meta(event))
}

/// Queues a finished file for upload and records that in the session sidecar.
async fn enqueue_file(svc: &RecordingService, session: &Session, format: &str, path: &Path, event: FileEvent) {
    let ext = path.extension().map(|e| e.to_string_lossy().into_owned()).unwrap_or_default();
    let key = match session.object_key(format, event.start_ms, event.end_ms, &ext) {
        Ok(k) => k,
        Err(e) => {
            tracing::error!(file = %path.display(), error = %e, "recording: bad path template; file kept in the spool");
            return;
        }
    };
    enqueue(svc, session, upload_job(session, format, path.to_path_buf(), key, file_meta(&event))).await;
}

async fn enqueue(svc: &RecordingService, session: &Session, job: UploadJob) {
    let rel = session.relative(&job.local_path);
    let Some(uploader) = svc.uploader() else { return };
    match uploader.enqueue(job).await {
        Ok(()) => {
            session.meta.lock().enqueued.push(rel);
            session.save();
        }
        Err(e) => {
            tracing::error!(file = %rel, error = %e, "recording: could not queue an upload; the file stays in the spool");
            let key = session.key();
            svc.exception(&key, &session.id(), "", "error", exception::WRITE_FAILED, 1, &e.to_string()).await;
        }
    }
}

async fn hand_over_segment(svc: &RecordingService, hls: &HlsRun, seg: HlsSegment) {
    *svc.inner.hls_uploads.lock().entry(hls.id.clone()).or_insert(0) += 1;
    let job = segment_job(&hls.session, &hls.folder, &hls.id, &seg);
    enqueue(svc, &hls.session, job).await;
}

/// Finishes a parked HLS recording (its stream did not come back in time, or the server stops).
pub(crate) async fn finish_parked(svc: &RecordingService, p: Parked) {
    let key = p.hls.session.key();
    let (session_id, start_model) = (p.hls.session.id(), p.hls.start_model);
    let session = p.hls.session.clone();
    finish_hls(svc, p.hls).await;
    svc.status(&key, &session_id, "hls", start_model, RecordStatus::Ended, "").await;
    session.meta.lock().ended = true;
    session.save();
}

/// Closes an HLS recording and queues its playlist (with event 100) after its segments are stored.
async fn finish_hls(svc: &RecordingService, mut hls: HlsRun) {
    let key = hls.session.key();
    match hls.rec.finish() {
        Ok(Some(seg)) => hand_over_segment(svc, &hls, seg).await,
        Ok(None) => {}
        Err(e) => tracing::error!(stream = %key, error = %e, "recording: HLS recording not closed cleanly"),
    }
    let duration = hls.rec.duration_ms();
    if hls.rec.segments().is_empty() || duration < svc.inner.config.min_duration_ms {
        let why = format!(
            "no file: the hls recording has {duration} ms of media, less than the minimum of {} ms",
            svc.inner.config.min_duration_ms
        );
        tracing::info!(stream = %key, "recording: {why}");
        svc.status(&key, &hls.session.id(), "hls", hls.start_model, RecordStatus::Error, &why).await;
        return;
    }
    let playlist = hls.rec.playlist_path();
    let size = hls.rec.size() + std::fs::metadata(&playlist).map(|m| m.len()).unwrap_or(0);
    let event = hls.session.file_event("hls", hls.start_wall_ms, hls.start_wall_ms + duration, duration, size);
    let job = playlist_job(&hls.session, &hls.folder, &hls.stem, playlist, &event);
    // The playlist goes after its segments so that event 100 never names a playlist with missing segments;
    // the wait happens beside the job, which must not block on storage.
    let svc = svc.clone();
    tokio::spawn(async move {
        let deadline = tokio::time::Instant::now() + PLAYLIST_WAIT;
        loop {
            let notified = svc.inner.hls_uploaded.notified();
            let left = svc.inner.hls_uploads.lock().get(&hls.id).copied().unwrap_or(0);
            if left == 0 || svc.inner.shutting_down.load(Ordering::Relaxed) {
                break;
            }
            if tokio::time::timeout_at(deadline, notified).await.is_err() {
                tracing::warn!(recording = %hls.id, segments_left = left, "recording: queuing the HLS playlist before all its segments are stored");
                break;
            }
        }
        svc.inner.hls_uploads.lock().remove(&hls.id);
        enqueue(&svc, &hls.session, job).await;
    });
}

/// Recovers a session a previous run left: files not handed to the uploader are made playable and queued with
/// their events; HLS recordings get their cut-off segment and a final playlist. Empty finished sessions are
/// removed.
pub(crate) async fn recover_session(svc: &RecordingService, dir: &Path) {
    let meta = match SessionMeta::load(dir) {
        Ok(m) => m,
        Err(e) => {
            tracing::warn!(dir = %dir.display(), error = %e, "recording: spool session without a readable sidecar; left alone");
            return;
        }
    };
    let session = Session { dir: dir.to_path_buf(), meta: Arc::new(parking_lot::Mutex::new(meta.clone())) };
    let enqueued: HashSet<String> = meta.enqueued.iter().cloned().collect();
    let mut data_files = 0usize;
    let Ok(entries) = std::fs::read_dir(dir) else { return };
    let mut paths: Vec<PathBuf> = entries.flatten().map(|e| e.path()).collect();
    paths.sort();
    for path in paths {
        let rel = session.relative(&path);
        if path.is_dir() {
            data_files += recover_hls(svc, &session, &rel).await;
            continue;
        }
        if rel == META_FILE || rel.starts_with('.') {
            continue;
        }
        data_files += 1;
        if enqueued.contains(&rel) {
            continue;
        }
        // Queued just before the crash, before the sidecar said so.
        if svc.uploader().is_some_and(|u| u.is_queued(&path)) {
            continue;
        }
        let mtime = file_mtime_ms(&path);
        match recover_file(&path) {
            Ok(Some(r)) if r.duration_ms >= svc.inner.config.min_duration_ms => {
                tracing::info!(file = %r.path.display(), duration_ms = r.duration_ms, "recording: recovered after a crash");
                let event = session.file_event(r.format, mtime - r.duration_ms, mtime, r.duration_ms, r.size);
                enqueue_file(svc, &session, r.format, &r.path, event).await;
            }
            Ok(Some(r)) => {
                tracing::info!(file = %r.path.display(), duration_ms = r.duration_ms, "recording: recovered file too short; removed");
                let _ = std::fs::remove_file(&r.path);
            }
            Ok(None) => {}
            Err(e) => {
                tracing::warn!(file = %path.display(), error = %e, "recording: file could not be recovered; left in the spool")
            }
        }
    }
    if data_files == 0 && (meta.ended || meta.enqueued.is_empty() && meta.hls.is_empty()) {
        let _ = std::fs::remove_dir_all(dir);
    } else {
        let mut m = session.meta.lock();
        m.ended = true;
        drop(m);
        session.save();
    }
}

/// Recovers one HLS recording of a session; returns how many of its files still exist.
async fn recover_hls(svc: &RecordingService, session: &Session, sub: &str) -> usize {
    let Some(h) = session.meta.lock().hls.get(sub).cloned() else { return 0 };
    let dir = session.dir.join(sub);
    let playlist_rel = format!("{sub}/{}.m3u8", h.stem);
    let enqueued: HashSet<String> = session.meta.lock().enqueued.iter().cloned().collect();
    let playlist_path = dir.join(format!("{}.m3u8", h.stem));
    let listed = std::fs::read_to_string(&playlist_path).map(|t| parse_playlist(&t)).unwrap_or_default();
    let mut segments: Vec<HlsSegment> = listed
        .iter()
        .map(|e| HlsSegment {
            file_name: e.uri.clone(),
            path: dir.join(&e.uri),
            start_ms: 0,
            duration_ms: (e.duration * 1000.0).round() as i64,
            discontinuity: e.discontinuity,
            size: std::fs::metadata(dir.join(&e.uri)).map(|m| m.len()).unwrap_or(0),
        })
        .collect();
    let present = std::fs::read_dir(&dir).map(|d| d.flatten().count()).unwrap_or(0);
    if enqueued.contains(&playlist_rel) || present == 0 || svc.uploader().is_some_and(|u| u.is_queued(&playlist_path)) {
        return present;
    }
    // The segment being written at the crash is on disk but not in the playlist yet.
    let mut names: Vec<String> = std::fs::read_dir(&dir)
        .map(|d| d.flatten().map(|e| e.file_name().to_string_lossy().into_owned()).collect())
        .unwrap_or_default();
    names.sort_by_key(|n| n.rsplit_once('_').and_then(|(_, i)| i.trim_end_matches(".ts").parse::<u32>().ok()));
    for name in names.iter().filter(|n| n.ends_with(".ts")) {
        if segments.iter().any(|s| s.file_name == *name) {
            continue;
        }
        match recover_file(&dir.join(name)) {
            Ok(Some(r)) if r.duration_ms > 0 => segments.push(HlsSegment {
                file_name: name.clone(),
                path: r.path,
                start_ms: 0,
                duration_ms: r.duration_ms,
                discontinuity: false,
                size: r.size,
            }),
            _ => {
                let _ = std::fs::remove_file(dir.join(name));
            }
        }
    }
    let id = format!("{}/{sub}", session.id());
    for seg in &segments {
        let rel = format!("{sub}/{}", seg.file_name);
        if enqueued.contains(&rel) || !seg.path.exists() || svc.uploader().is_some_and(|u| u.is_queued(&seg.path)) {
            continue;
        }
        enqueue(svc, session, segment_job(session, &h.folder, &id, seg)).await;
    }
    let duration: i64 = segments.iter().map(|s| s.duration_ms).sum();
    if segments.is_empty() || duration < svc.inner.config.min_duration_ms {
        let _ = std::fs::remove_dir_all(&dir);
        return 0;
    }
    let text = ferrocast_recorder::hls::playlist_text(&segments, true);
    if let Err(e) = std::fs::write(&playlist_path, text) {
        tracing::warn!(file = %playlist_path.display(), error = %e, "recording: recovered playlist not written");
        return present;
    }
    tracing::info!(playlist = %playlist_path.display(), segments = segments.len(), duration_ms = duration, "recording: HLS recording recovered after a crash");
    let size =
        segments.iter().map(|s| s.size).sum::<u64>() + std::fs::metadata(&playlist_path).map(|m| m.len()).unwrap_or(0);
    let event = session.file_event("hls", h.start_ms, h.start_ms + duration, duration, size);
    enqueue(svc, session, playlist_job(session, &h.folder, &h.stem, playlist_path, &event)).await;
    present
}

fn file_mtime_ms(path: &Path) -> i64 {
    std::fs::metadata(path)
        .and_then(|m| m.modified())
        .ok()
        .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
        .map(|d| d.as_millis() as i64)
        .unwrap_or_else(unix_now_ms)
}
