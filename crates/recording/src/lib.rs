//! Recording service: turns record rules and record tasks into files in the user's storage, with their callbacks.
//!
//! - **What starts a recording.** A new publisher (not a resume) of a stream matching a record rule (priority
//!   D+A+S > D+S > D+A > D, see [`ferrocast_control::store_record`]) whose template enables a format; and every
//!   record task whose window contains now while its stream is live (checked on each publish and every
//!   `task_poll`). Tasks and rules do not conflict: each runs its own job. A running job is not reconfigured;
//!   changes apply to the next push.
//! - **A job** is an internal hub subscriber writing FLV/MP4/AAC files through [`ferrocast_recorder::Recording`]
//!   (split by `RecordInterval` at keyframes) and an HLS recording ([`ferrocast_recorder::HlsRecording`]) into a
//!   per-session spool directory. Finished files, and HLS segments as they close (upload while recording), go to
//!   the durable upload queue of [`ferrocast_storage::Uploader`]; event 100 is queued when a file is stored.
//! - **HLS resumption.** When the stream ends and the template has `FlowContinueDuration`, the HLS recording waits
//!   that long for a new publisher of the same stream and job; it then continues after `EXT-X-DISCONTINUITY`.
//!   Its event 100 fires once, when the recording is finished.
//! - **Crash safety.** MP4 is fragmented while written and finalized on close; FLV, AAC and TS are appendable.
//!   After `kill -9`, [`RecordingService::start`] recovers what the spool holds (see [`spool::recover_file`]),
//!   uploads it and reports it. [`RecordingService::shutdown`] finalizes every recording (SIGTERM).
//! - **Errors never stop the stream**: a format that cannot record the stream, a disk error or a failing upload is
//!   logged with the stream and reported as event 341 (and 332 `record_error`), and the live stream goes on.

pub mod events;
mod job;
pub mod snapshots;
pub mod spool;

use std::collections::{HashMap, HashSet};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use ferrocast_control::callbacks::Callbacks;
use ferrocast_control::store::{Store, unix_now_ms};
use ferrocast_hub::{Hub, HubEvent, StreamKey};
use ferrocast_storage::{Storage, UploadHandler, UploadJob, Uploaded, Uploader};
use serde_json::{Map, Value};
use tokio::sync::{Notify, broadcast, watch};

use crate::events::{FileEvent, PictureEvent, RecordStatus};

/// Recording settings (`[record]` in the server config).
#[derive(Debug, Clone)]
pub struct RecordingConfig {
    /// Where recordings are written before upload (a `rec` subdirectory holds one directory per session).
    pub spool_dir: PathBuf,
    /// Length of the TS segments of HLS recordings, in ms (the service's default: 10 s).
    pub hls_segment_ms: i64,
    /// A file with less media than this is not kept; event 332 `record_error` says so.
    pub min_duration_ms: i64,
    /// The object folder template when a format's `CosBucketPath` is empty.
    pub folder_template: String,
    /// The object file name template (without extension).
    pub file_template: String,
    /// Offset of the time in object names from UTC, in seconds (0, or 28800 for UTC+8).
    pub utc_offset_s: i64,
    /// How often record and screenshot tasks are checked.
    pub task_poll: Duration,
    /// The ffmpeg executable for screenshots.
    pub ffmpeg: PathBuf,
}

impl Default for RecordingConfig {
    fn default() -> Self {
        RecordingConfig {
            spool_dir: PathBuf::from("./data/spool"),
            hls_segment_ms: 10_000,
            min_duration_ms: 1000,
            folder_template: DEFAULT_FOLDER.to_string(),
            file_template: "{StreamID}".to_string(),
            utc_offset_s: 8 * 3600,
            task_poll: Duration::from_secs(1),
            ffmpeg: PathBuf::from("ffmpeg"),
        }
    }
}

/// The documented default folder of recordings in third-party storage.
pub const DEFAULT_FOLDER: &str = "{RecordSource}/{Domain}/{AppName}/{StreamID}/{RecordId}/{StartYear}-{StartMonth}-{StartDay}-{StartHour}-{StartMinute}-{StartSecond}";

/// Why the service could not start.
#[derive(Debug, thiserror::Error)]
pub enum RecordingError {
    /// The spool directory could not be created or read.
    #[error("recording spool {0}: {1}")]
    Spool(String, std::io::Error),
    /// The upload queue could not start.
    #[error("upload queue: {0}")]
    Storage(#[from] ferrocast_storage::StorageError),
}

/// A unique, sortable id: ms since the epoch and 32 random bits, in hex.
pub(crate) fn new_id() -> String {
    format!("{:x}{:08x}", unix_now_ms(), rand::random::<u32>())
}

/// What made a job: a rule (by its template) or a task.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(crate) enum Source {
    Rule(i64),
    Task(String),
}

/// Recording and screenshot jobs are keyed by stream, source and kind.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(crate) struct JobKey {
    pub stream: StreamKey,
    pub source: Source,
    pub snapshot: bool,
}

/// Why a job is asked to stop.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Stop {
    Running,
    /// The task's window ended, or it was stopped or deleted.
    TaskOver,
    /// The server is shutting down: finalize everything now.
    Shutdown,
}

struct RunningJob {
    id: u64,
    stop: watch::Sender<Stop>,
    handle: tokio::task::JoinHandle<()>,
}

pub(crate) struct Inner {
    pub hub: Hub,
    pub store: Store,
    pub storage: Storage,
    pub uploader: OnceLock<Uploader>,
    pub callbacks: Callbacks,
    pub config: RecordingConfig,
    jobs: parking_lot::Mutex<HashMap<JobKey, RunningJob>>,
    next_job: AtomicU64,
    /// HLS recordings waiting for their stream to come back.
    pub parked: parking_lot::Mutex<HashMap<JobKey, job::Parked>>,
    /// Segment uploads not yet done, per HLS recording (so its playlist goes after them).
    pub hls_uploads: parking_lot::Mutex<HashMap<String, usize>>,
    pub hls_uploaded: Notify,
    pub shutting_down: AtomicBool,
    status_seq: AtomicU64,
}

/// The recording (and screenshot) service.
#[derive(Clone)]
pub struct RecordingService {
    pub(crate) inner: Arc<Inner>,
}

impl std::fmt::Debug for RecordingService {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RecordingService")
            .field("spool", &self.inner.config.spool_dir)
            .field("jobs", &self.inner.jobs.lock().len())
            .finish()
    }
}

struct Handler(RecordingService);

impl UploadHandler for Handler {
    fn uploaded(
        &self,
        done: Uploaded,
    ) -> std::pin::Pin<Box<dyn std::future::Future<Output = Result<(), String>> + Send + '_>> {
        Box::pin(async move { self.0.on_uploaded(done).await })
    }

    fn failed(
        &self,
        job: &UploadJob,
        attempts: u32,
        error: &str,
        retry_in: Duration,
    ) -> std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send + '_>> {
        let (job, error) = (job.clone(), error.to_string());
        Box::pin(async move { self.0.on_upload_failed(&job, attempts, &error, retry_in).await })
    }
}

/// Upload failures reported by event 341 once a job has failed this many times.
const REPORT_UPLOAD_FAILURES_AFTER: u32 = 3;

impl RecordingService {
    /// Starts the upload queue, recovers what a previous run left in the spool, and starts recording streams
    /// under rules and tasks, and taking screenshots.
    pub async fn start(
        hub: Hub,
        store: Store,
        storage: Storage,
        callbacks: Callbacks,
        config: RecordingConfig,
    ) -> Result<RecordingService, RecordingError> {
        let rec_dir = config.spool_dir.join("rec");
        std::fs::create_dir_all(&rec_dir).map_err(|e| RecordingError::Spool(rec_dir.display().to_string(), e))?;
        let svc = RecordingService {
            inner: Arc::new(Inner {
                hub: hub.clone(),
                store,
                storage: storage.clone(),
                uploader: OnceLock::new(),
                callbacks,
                config,
                jobs: parking_lot::Mutex::new(HashMap::new()),
                next_job: AtomicU64::new(1),
                parked: parking_lot::Mutex::new(HashMap::new()),
                hls_uploads: parking_lot::Mutex::new(HashMap::new()),
                hls_uploaded: Notify::new(),
                shutting_down: AtomicBool::new(false),
                status_seq: AtomicU64::new(unix_now_ms() as u64),
            }),
        };
        let uploader = Uploader::start(storage, Arc::new(Handler(svc.clone()))).await?;
        let _ = svc.inner.uploader.set(uploader);
        svc.recover().await;
        let events = hub.events();
        let me = svc.clone();
        tokio::spawn(async move {
            for s in me.inner.hub.streams() {
                me.on_published(&s.key, &s.params.params).await;
            }
            me.listen(events).await
        });
        let me = svc.clone();
        tokio::spawn(async move { me.poll_tasks().await });
        Ok(svc)
    }

    /// The directory of recording sessions.
    pub(crate) fn rec_dir(&self) -> PathBuf {
        self.inner.config.spool_dir.join("rec")
    }

    /// The directory screenshots are written to before upload.
    pub(crate) fn pictures_dir(&self) -> PathBuf {
        self.inner.config.spool_dir.join("pictures")
    }

    pub(crate) fn uploader(&self) -> Option<&Uploader> {
        self.inner.uploader.get()
    }

    /// Recording and screenshot jobs running now.
    pub fn running_jobs(&self) -> usize {
        self.inner.jobs.lock().len()
    }

    async fn listen(self, mut events: broadcast::Receiver<HubEvent>) {
        loop {
            match events.recv().await {
                Ok(HubEvent::Published { key, params, resumed: false, .. }) => self.on_published(&key, &params).await,
                Ok(_) => {}
                Err(broadcast::error::RecvError::Lagged(n)) => {
                    tracing::warn!(missed = n, "recording: hub events lagged; catching up from the registry");
                    for s in self.inner.hub.streams() {
                        self.on_published(&s.key, &s.params.params).await;
                    }
                }
                Err(broadcast::error::RecvError::Closed) => return,
            }
        }
    }

    /// Starts the rule-bound recording and screenshots of a new push, and the tasks already due for it.
    async fn on_published(&self, key: &StreamKey, params: &[(String, String)]) {
        if self.inner.shutting_down.load(Ordering::Relaxed) {
            return;
        }
        let stream_param = ferrocast_control::callbacks::stream_param(params);
        match self.inner.store.record_rule_for(&key.domain, &key.app, &key.stream).await {
            Ok(Some((_, template))) if !template.records_nothing() => {
                let plan = job::Plan {
                    record_id: template.id.to_string(),
                    template,
                    task_id: String::new(),
                    start_model: 1,
                    stream_param: stream_param.clone(),
                };
                self.start_record_job(key, Source::Rule(plan.template.id), plan);
            }
            Ok(_) => {}
            Err(e) => tracing::warn!(stream = %key, error = %e, "recording: rule lookup failed; stream not recorded"),
        }
        match self.inner.store.snapshot_rule_for(&key.domain, &key.app, &key.stream).await {
            Ok(Some((_, template))) => {
                self.start_snapshot_job(key, Source::Rule(template.id), template, String::new(), stream_param)
            }
            Ok(None) => {}
            Err(e) => tracing::warn!(stream = %key, error = %e, "screenshots: rule lookup failed"),
        }
        self.check_tasks(Some(key)).await;
    }

    /// Starts due tasks whose stream is live (only `only`'s, when given) and stops jobs of tasks that are over.
    async fn check_tasks(&self, only: Option<&StreamKey>) {
        let now_s = unix_now_ms() / 1000;
        let mut active: HashSet<(bool, String)> = HashSet::new();
        match self.inner.store.active_record_tasks(now_s).await {
            Ok(tasks) => {
                for (task, template) in tasks {
                    active.insert((false, task.id.clone()));
                    let key = StreamKey::new(&task.domain, &task.app, &task.stream);
                    if only.is_some_and(|o| *o != key) || !self.inner.hub.is_live(&key) || template.records_nothing() {
                        continue;
                    }
                    let source = Source::Task(task.id.clone());
                    if self.has_job(&key, &source, false) {
                        continue;
                    }
                    let plan = job::Plan {
                        record_id: task.id.clone(),
                        template,
                        task_id: task.id,
                        start_model: 5,
                        // Documented: recordings of CreateRecordTask tasks do not carry the push parameters.
                        stream_param: String::new(),
                    };
                    self.start_record_job(&key, source, plan);
                }
            }
            Err(e) => {
                tracing::warn!(error = %e, "recording: task lookup failed");
                return;
            }
        }
        match self.inner.store.active_screenshot_tasks(now_s).await {
            Ok(tasks) => {
                for (task, template) in tasks {
                    active.insert((true, task.id.clone()));
                    let key = StreamKey::new(&task.domain, &task.app, &task.stream);
                    if only.is_some_and(|o| *o != key) || !self.inner.hub.is_live(&key) {
                        continue;
                    }
                    let source = Source::Task(task.id.clone());
                    if self.has_job(&key, &source, true) {
                        continue;
                    }
                    let param = self
                        .inner
                        .hub
                        .stream(&key)
                        .map(|s| ferrocast_control::callbacks::stream_param(&s.params.params))
                        .unwrap_or_default();
                    self.start_snapshot_job(&key, source, template, task.id, param);
                }
            }
            Err(e) => {
                tracing::warn!(error = %e, "screenshots: task lookup failed");
                return;
            }
        }
        if only.is_none() {
            let over: Vec<(JobKey, watch::Sender<Stop>)> = self
                .inner
                .jobs
                .lock()
                .iter()
                .filter(|(k, _)| matches!(&k.source, Source::Task(id) if !active.contains(&(k.snapshot, id.clone()))))
                .map(|(k, j)| (k.clone(), j.stop.clone()))
                .collect();
            for (k, stop) in over {
                tracing::info!(stream = %k.stream, source = ?k.source, "recording: task over; stopping its job");
                let _ = stop.send(Stop::TaskOver);
            }
        }
    }

    async fn poll_tasks(self) {
        let mut tick = tokio::time::interval(self.inner.config.task_poll.max(Duration::from_millis(100)));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            if self.inner.shutting_down.load(Ordering::Relaxed) {
                return;
            }
            self.check_tasks(None).await;
        }
    }

    fn has_job(&self, stream: &StreamKey, source: &Source, snapshot: bool) -> bool {
        let key = JobKey { stream: stream.clone(), source: source.clone(), snapshot };
        self.inner.jobs.lock().contains_key(&key)
    }

    /// Registers a job under `key` unless one runs; `run` gets the job's stop signal.
    fn spawn_job<F>(&self, key: JobKey, run: impl FnOnce(watch::Receiver<Stop>) -> F)
    where
        F: std::future::Future<Output = ()> + Send + 'static,
    {
        let mut jobs = self.inner.jobs.lock();
        if jobs.contains_key(&key) {
            return;
        }
        let id = self.inner.next_job.fetch_add(1, Ordering::Relaxed);
        let (stop, stop_rx) = watch::channel(Stop::Running);
        let fut = run(stop_rx);
        let me = self.clone();
        let job_key = key.clone();
        let metrics = self.inner.hub.metrics().clone();
        metrics.record_jobs.fetch_add(1, Ordering::Relaxed);
        let handle = tokio::spawn(async move {
            fut.await;
            metrics.record_jobs.fetch_sub(1, Ordering::Relaxed);
            let mut jobs = me.inner.jobs.lock();
            if jobs.get(&job_key).is_some_and(|j| j.id == id) {
                jobs.remove(&job_key);
            }
        });
        jobs.insert(key, RunningJob { id, stop, handle });
    }

    fn start_record_job(&self, stream: &StreamKey, source: Source, plan: job::Plan) {
        let sub = match self.inner.hub.subscribe_internal(stream) {
            Ok(s) => s,
            Err(e) => {
                tracing::debug!(stream = %stream, error = %e, "recording: stream ended before recording started");
                return;
            }
        };
        tracing::info!(stream = %stream, source = ?source, template = plan.template.id, "recording: started");
        let key = JobKey { stream: stream.clone(), source, snapshot: false };
        let me = self.clone();
        let job_key = key.clone();
        self.spawn_job(key, move |stop| job::run(me, job_key, plan, sub, stop));
    }

    fn start_snapshot_job(
        &self,
        stream: &StreamKey,
        source: Source,
        template: ferrocast_control::store_snapshot::SnapshotTemplate,
        task_id: String,
        stream_param: String,
    ) {
        let key = JobKey { stream: stream.clone(), source, snapshot: true };
        let me = self.clone();
        let stream = stream.clone();
        self.spawn_job(key, move |stop| snapshots::run(me, stream, template, task_id, stream_param, stop));
    }

    /// Finalizes every recording (SIGTERM): jobs stop and hand their files over, waiting HLS recordings are
    /// finished, and the upload queue gets up to `timeout` to empty (what is left is uploaded on the next start).
    pub async fn shutdown(&self, timeout: Duration) {
        self.inner.shutting_down.store(true, Ordering::Relaxed);
        let jobs: Vec<RunningJob> = self.inner.jobs.lock().drain().map(|(_, j)| j).collect();
        for j in &jobs {
            let _ = j.stop.send(Stop::Shutdown);
        }
        let deadline = tokio::time::Instant::now() + timeout;
        for j in jobs {
            if tokio::time::timeout_at(deadline, j.handle).await.is_err() {
                tracing::warn!("recording: a job did not finish in time at shutdown");
            }
        }
        let parked: Vec<job::Parked> = self.inner.parked.lock().drain().map(|(_, p)| p).collect();
        for p in parked {
            job::finish_parked(self, p).await;
        }
        if let Some(u) = self.uploader() {
            let left = u.drain(deadline.saturating_duration_since(tokio::time::Instant::now())).await;
            if left > 0 {
                tracing::warn!(pending = left, "recording: uploads left for the next start");
            }
        }
    }

    /// Queues an event for the stream's callback template (which decides the URL by event type).
    pub(crate) async fn callback(
        &self,
        event_type: i64,
        domain: &str,
        app: &str,
        stream: &str,
        payload: Map<String, Value>,
    ) {
        let session = payload.get("session_id").and_then(Value::as_str).unwrap_or_default().to_string();
        let level = payload.get("exception_level").and_then(Value::as_str).unwrap_or_default().to_string();
        if let Err(e) =
            self.inner.callbacks.queue_event(event_type, domain, app, stream, &session, &level, payload).await
        {
            tracing::warn!(stream, event_type, error = %e, "recording: callback not queued");
        }
    }

    /// Event 332.
    #[allow(clippy::too_many_arguments)]
    pub(crate) async fn status(
        &self,
        key: &StreamKey,
        session_id: &str,
        format: &str,
        start_model: i64,
        status: RecordStatus,
        message: &str,
    ) {
        let seq = self.inner.status_seq.fetch_add(1, Ordering::Relaxed);
        let body = events::status_payload(
            self.inner.callbacks.config().appid,
            &key.domain,
            &key.app,
            &key.stream,
            session_id,
            format,
            start_model,
            status,
            seq,
            unix_now_ms() / 1000,
            message,
        );
        self.callback(332, &key.domain, &key.app, &key.stream, body).await;
    }

    /// Event 341.
    #[allow(clippy::too_many_arguments)]
    pub(crate) async fn exception(
        &self,
        key: &StreamKey,
        session_id: &str,
        format: &str,
        level: &str,
        kind: i64,
        occurs: u64,
        desc: &str,
    ) {
        let body = events::exception_payload(
            self.inner.callbacks.config().appid,
            &key.domain,
            &key.app,
            &key.stream,
            session_id,
            format,
            level,
            kind,
            occurs,
            desc,
            unix_now_ms() / 1000,
        );
        self.callback(341, &key.domain, &key.app, &key.stream, body).await;
    }

    pub(crate) async fn on_uploaded(&self, done: Uploaded) -> Result<(), String> {
        let kind = done.job.meta.get("kind").and_then(Value::as_str).unwrap_or_default();
        match kind {
            "file" => {
                let ev: FileEvent = serde_json::from_value(done.job.meta.get("event").cloned().unwrap_or_default())
                    .map_err(|e| format!("upload metadata: {e}"))?;
                tracing::info!(stream = %format!("{}/{}/{}", ev.domain, ev.app, ev.stream), format = %ev.format,
                    url = %done.url, bytes = done.size, "recording: file stored");
                self.inner.hub.metrics().record_files_stored.fetch_add(1, Ordering::Relaxed);
                let file_id = done.job.key.clone();
                let body = events::file_payload(self.inner.callbacks.config().appid, &ev, &done.url, &file_id);
                self.inner
                    .callbacks
                    .queue_event(100, &ev.domain, &ev.app, &ev.stream, &ev.session_id, "", body)
                    .await
                    .map_err(|e| e.to_string())?;
            }
            "segment" => {
                let rec = done.job.meta.get("recording").and_then(Value::as_str).unwrap_or_default();
                let mut pending = self.inner.hls_uploads.lock();
                if let Some(n) = pending.get_mut(rec) {
                    *n = n.saturating_sub(1);
                }
                drop(pending);
                self.inner.hls_uploaded.notify_waiters();
            }
            "picture" => {
                let ev: PictureEvent = serde_json::from_value(done.job.meta.get("event").cloned().unwrap_or_default())
                    .map_err(|e| format!("upload metadata: {e}"))?;
                self.inner.hub.metrics().screenshots_stored.fetch_add(1, Ordering::Relaxed);
                let body = events::picture_payload(&ev, &done.url);
                self.inner
                    .callbacks
                    .queue_event(200, &ev.domain, &ev.app, &ev.stream, &ev.task_id, "", body)
                    .await
                    .map_err(|e| e.to_string())?;
            }
            other => tracing::warn!(kind = other, key = %done.job.key, "recording: upload of an unknown kind"),
        }
        Ok(())
    }

    async fn on_upload_failed(&self, job: &UploadJob, attempts: u32, error: &str, retry_in: Duration) {
        tracing::warn!(target_name = %job.target, key = %job.key, attempts, retry_in_s = retry_in.as_secs(),
            error, "recording: upload failed; will retry");
        self.inner.hub.metrics().record_upload_failures.fetch_add(1, Ordering::Relaxed);
        if attempts != REPORT_UPLOAD_FAILURES_AFTER {
            return;
        }
        let meta = &job.meta;
        let field = |name: &str| -> String {
            meta.get("event").and_then(|e| e.get(name)).and_then(Value::as_str).unwrap_or_default().to_string()
        };
        let (domain, app, stream) = (field("domain"), field("app"), field("stream"));
        if domain.is_empty() {
            return;
        }
        let key = StreamKey::new(&domain, &app, &stream);
        let desc = format!(
            "upload of {} to storage target {} failed {attempts} times: {error}; retrying",
            job.key, job.target
        );
        self.exception(
            &key,
            &field("session_id"),
            &field("format"),
            "error",
            events::exception::WRITE_FAILED,
            u64::from(attempts),
            &desc,
        )
        .await;
    }

    /// Recovers the sessions a previous run left in the spool (see [`job::recover_session`]).
    async fn recover(&self) {
        let dir = self.rec_dir();
        let entries = match std::fs::read_dir(&dir) {
            Ok(e) => e,
            Err(e) => {
                tracing::error!(dir = %dir.display(), error = %e, "recording: spool not readable; nothing recovered");
                return;
            }
        };
        for entry in entries.flatten() {
            let path = entry.path();
            if path.is_dir() {
                job::recover_session(self, &path).await;
            }
        }
    }
}
