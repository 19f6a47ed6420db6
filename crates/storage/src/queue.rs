//! The durable upload queue.
//!
//! Every job is a JSON file in `spool_dir/jobs`, written to a temporary name, fsynced and renamed before
//! [`Uploader::enqueue`] returns, so a job survives a crash as soon as its producer has been told it is queued.
//! File names start with the enqueue time and a sequence number, so sorting them gives the enqueue order back after
//! a restart. A job file is deleted only after the [`UploadHandler`] accepted the result (at-least-once delivery);
//! once the object is stored the file also records that, so a retry after a handler failure or a crash does not
//! upload again.

use std::collections::{BTreeMap, HashMap};
use std::future::Future;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use parking_lot::Mutex;
use serde::{Deserialize, Serialize};
use tokio::sync::{Notify, watch};
use tokio::task::JoinSet;
use tokio::time::Instant;

use crate::path::sanitize_key;
use crate::store::sync_dir;
use crate::{Storage, StorageError};

/// Uploads in flight at once, over all targets.
const MAX_IN_FLIGHT: usize = 3;
/// Uploads in flight at once to one target, so that a slow target leaves room for the others.
const MAX_IN_FLIGHT_PER_TARGET: usize = 2;
/// The first retry delay; it doubles with every failed attempt up to the configured maximum.
const FIRST_BACKOFF: Duration = Duration::from_secs(1);
/// How long [`Uploader::start`] waits for a previous uploader on the same spool to let go of it.
const LOCK_WAIT: Duration = Duration::from_secs(5);
/// Format version of job files.
const JOB_FILE_VERSION: u32 = 1;

/// One file to upload.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct UploadJob {
    /// The target's name (see [`Storage::target_for`]).
    pub target: String,
    /// The file to upload.
    pub local_path: PathBuf,
    /// The object key (relative to the target's prefix); sanitized on enqueue.
    pub key: String,
    /// The object's MIME type; empty means guessed from the file extension.
    pub content_type: String,
    /// Delete the local file once it is stored.
    pub remove_local: bool,
    /// Opaque to the queue, given back on completion.
    pub meta: serde_json::Value,
}

/// A finished upload.
#[derive(Debug, Clone, PartialEq)]
pub struct Uploaded {
    /// The job as queued.
    pub job: UploadJob,
    /// The object's URL (see [`Storage::url`]).
    pub url: String,
    /// The stored size in bytes.
    pub size: u64,
    /// Attempts made, this one included.
    pub attempts: u32,
}

/// What the owner of the queue is told. Implemented by the recording engine.
pub trait UploadHandler: Send + Sync + 'static {
    /// The object is stored. The job is forgotten (its spool entry deleted) only after this returns Ok, so a crash
    /// between the upload and the handler repeats the handler (at-least-once). An `Err` counts as a failed attempt:
    /// the handler is called again after the backoff, without uploading again.
    fn uploaded(&self, done: Uploaded) -> Pin<Box<dyn Future<Output = Result<(), String>> + Send + '_>>;
    /// An attempt failed; the job will be retried after `retry_in`.
    fn failed(
        &self,
        job: &UploadJob,
        attempts: u32,
        error: &str,
        retry_in: Duration,
    ) -> Pin<Box<dyn Future<Output = ()> + Send + '_>>;
}

/// A job as kept in its spool file.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct JobRecord {
    version: u32,
    id: String,
    job: UploadJob,
    /// Attempts made so far.
    attempts: u32,
    /// When the next attempt may start (Unix ms); 0 = at once.
    next_attempt_unix_ms: i64,
    /// Set once the object is stored: only the handler remains to be told.
    stored: Option<StoredObject>,
    /// The last error, for whoever looks into the spool.
    last_error: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct StoredObject {
    size: u64,
    url: String,
}

struct Entry {
    record: JobRecord,
    path: PathBuf,
    in_flight: bool,
    ready_at: Instant,
}

#[derive(Default)]
struct State {
    /// By job ID, which sorts in enqueue order.
    jobs: BTreeMap<String, Entry>,
    in_flight: usize,
    in_flight_per_target: HashMap<String, usize>,
}

struct Shared {
    storage: Storage,
    handler: Arc<dyn UploadHandler>,
    jobs_dir: PathBuf,
    state: Mutex<State>,
    /// Wakes the dispatcher: a job was added or became ready.
    wake: Notify,
    /// Number of jobs queued or in flight, for [`Uploader::drain`].
    pending: watch::Sender<usize>,
    /// Held for the queue's lifetime so that two uploaders never work on one spool.
    _lock: std::fs::File,
}

/// The upload queue and its workers. Cheap to clone; the workers stop when the last clone is dropped
/// (in-flight uploads are abandoned and resumed by the next [`Uploader::start`] on the same spool).
#[derive(Clone)]
pub struct Uploader {
    handle: Arc<Handle>,
}

struct Handle {
    shared: Arc<Shared>,
    seq: AtomicU64,
    shutdown: watch::Sender<bool>,
}

impl Drop for Handle {
    fn drop(&mut self) {
        // Nobody may be listening any more; nothing to do then.
        let _ = self.shutdown.send(true);
    }
}

impl Uploader {
    /// Starts the worker(s); first re-queues every job left in `spool_dir/jobs` by a previous run.
    ///
    /// A job file that cannot be read is renamed to `*.corrupt` and logged, never silently dropped.
    pub async fn start(storage: Storage, handler: Arc<dyn UploadHandler>) -> Result<Uploader, StorageError> {
        let jobs_dir = storage.spool_dir().join("jobs");
        let dir = jobs_dir.clone();
        let max_backoff = storage.max_backoff();
        let (lock, records) = tokio::task::spawn_blocking(move || -> Result<_, StorageError> {
            std::fs::create_dir_all(&dir).map_err(|e| StorageError::io("create directory", &dir, e))?;
            let lock = lock_spool(&dir)?;
            Ok((lock, load_jobs(&dir)?))
        })
        .await
        .map_err(|e| StorageError::io("load jobs", &jobs_dir, std::io::Error::other(e.to_string())))??;

        let now_ms = unix_ms();
        let now = Instant::now();
        let mut state = State::default();
        for (path, record) in records {
            let wait_ms = (record.next_attempt_unix_ms - now_ms).max(0) as u64;
            let wait = Duration::from_millis(wait_ms).min(max_backoff);
            tracing::info!(target_name = %record.job.target, key = %record.job.key, attempts = record.attempts,
                retry_in_ms = wait.as_millis() as u64, "resuming upload job");
            state.jobs.insert(record.id.clone(), Entry { record, path, in_flight: false, ready_at: now + wait });
        }
        let (pending, _) = watch::channel(state.jobs.len());
        let shared = Arc::new(Shared {
            storage,
            handler,
            jobs_dir,
            state: Mutex::new(state),
            wake: Notify::new(),
            pending,
            _lock: lock,
        });
        let (shutdown, shutdown_rx) = watch::channel(false);
        tokio::spawn(dispatch(shared.clone(), shutdown_rx));
        Ok(Uploader { handle: Arc::new(Handle { shared, seq: AtomicU64::new(0), shutdown }) })
    }

    /// Durably queues a job (a JSON file in `spool_dir/jobs`, written+fsynced+renamed) before returning.
    ///
    /// Refused: an unknown target, an unusable key, a `local_path` that is not a readable regular file.
    pub async fn enqueue(&self, mut job: UploadJob) -> Result<(), StorageError> {
        let shared = &self.handle.shared;
        if !shared.storage.target_names().contains(&job.target) {
            return Err(StorageError::UnknownTarget(job.target));
        }
        job.key = sanitize_key(&job.key)?;
        let meta =
            tokio::fs::metadata(&job.local_path).await.map_err(|e| StorageError::io("stat", &job.local_path, e))?;
        if !meta.is_file() {
            return Err(StorageError::io("upload", &job.local_path, std::io::Error::other("not a regular file")));
        }
        if job.content_type.is_empty() {
            job.content_type = content_type_for(&job.key).to_string();
        }
        let seq = self.handle.seq.fetch_add(1, Ordering::Relaxed);
        let id = format!("{:013}-{seq:08}-{:08x}", unix_ms(), rand::random::<u32>());
        let record = JobRecord {
            version: JOB_FILE_VERSION,
            id: id.clone(),
            job,
            attempts: 0,
            next_attempt_unix_ms: 0,
            stored: None,
            last_error: String::new(),
        };
        let path = shared.jobs_dir.join(format!("{id}.json"));
        write_record(&path, &record).await?;
        tracing::debug!(target_name = %record.job.target, key = %record.job.key, "upload queued");
        {
            let mut state = shared.state.lock();
            state.jobs.insert(id, Entry { record, path, in_flight: false, ready_at: Instant::now() });
            shared.pending.send_replace(state.jobs.len());
        }
        shared.wake.notify_one();
        Ok(())
    }

    /// Whether a queued or in-flight job uploads `local` (crash recovery uses it so that a file queued just
    /// before a crash is not queued twice).
    pub fn is_queued(&self, local: &Path) -> bool {
        self.handle.shared.state.lock().jobs.values().any(|e| e.record.job.local_path == local)
    }

    /// Jobs queued or in flight.
    pub fn pending(&self) -> usize {
        self.handle.shared.state.lock().jobs.len()
    }

    /// Waits until the queue is empty or `timeout` passes (used on SIGTERM); returns what is still pending.
    pub async fn drain(&self, timeout: Duration) -> usize {
        let mut rx = self.handle.shared.pending.subscribe();
        // A timeout is an answer here, not an error: the caller gets the count.
        let _ = tokio::time::timeout(timeout, rx.wait_for(|n| *n == 0)).await;
        self.pending()
    }

    /// The storage the queue uploads to.
    pub fn storage(&self) -> &Storage {
        &self.handle.shared.storage
    }
}

/// The MIME type for a key's extension (recording and screenshot formats; else `application/octet-stream`).
pub fn content_type_for(key: &str) -> &'static str {
    let ext = key.rsplit_once('.').map(|(_, e)| e.to_ascii_lowercase()).unwrap_or_default();
    match ext.as_str() {
        "flv" => "video/x-flv",
        "m3u8" => "application/vnd.apple.mpegurl",
        "ts" => "video/mp2t",
        "mp4" | "m4s" => "video/mp4",
        "aac" => "audio/aac",
        "mp3" => "audio/mpeg",
        "jpg" | "jpeg" => "image/jpeg",
        "png" => "image/png",
        "json" => "application/json",
        _ => "application/octet-stream",
    }
}

/// The backoff after `attempts` failed attempts: 1 s, 2 s, 4 s, … up to `max`.
fn backoff(attempts: u32, max: Duration) -> Duration {
    let exp = attempts.saturating_sub(1).min(31);
    FIRST_BACKOFF.saturating_mul(1u32 << exp).min(max)
}

fn unix_ms() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_millis() as i64).unwrap_or(0)
}

/// Takes the spool's lock file, waiting a little for an uploader that is shutting down.
fn lock_spool(dir: &Path) -> Result<std::fs::File, StorageError> {
    let path = dir.join(".lock");
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .map_err(|e| StorageError::io("open", &path, e))?;
    let deadline = std::time::Instant::now() + LOCK_WAIT;
    loop {
        match file.try_lock() {
            Ok(()) => return Ok(file),
            Err(std::fs::TryLockError::WouldBlock) if std::time::Instant::now() < deadline => {
                std::thread::sleep(Duration::from_millis(20));
            }
            Err(std::fs::TryLockError::WouldBlock) => {
                return Err(StorageError::config(
                    "",
                    format!("the spool {} is in use by another uploader", dir.display()),
                ));
            }
            Err(std::fs::TryLockError::Error(e)) => return Err(StorageError::io("lock", &path, e)),
        }
    }
}

/// Reads every job file, in enqueue order. Leftover temporary files are removed, unreadable job files set aside.
fn load_jobs(dir: &Path) -> Result<Vec<(PathBuf, JobRecord)>, StorageError> {
    let mut names = Vec::new();
    for entry in std::fs::read_dir(dir).map_err(|e| StorageError::io("list", dir, e))? {
        let entry = entry.map_err(|e| StorageError::io("list", dir, e))?;
        let name = entry.file_name().to_string_lossy().into_owned();
        if name.starts_with('.') && name.ends_with(".tmp") {
            // A job whose enqueue never returned: its producer was not told it was queued.
            if let Err(e) = std::fs::remove_file(entry.path()) {
                tracing::warn!(file = %entry.path().display(), error = %e, "cannot remove a temporary job file");
            }
        } else if name.ends_with(".json") {
            names.push(name);
        }
    }
    names.sort();
    let mut records = Vec::with_capacity(names.len());
    for name in names {
        let path = dir.join(&name);
        let parsed = std::fs::read(&path)
            .map_err(|e| e.to_string())
            .and_then(|bytes| serde_json::from_slice::<JobRecord>(&bytes).map_err(|e| e.to_string()))
            .and_then(|r| {
                if r.version == JOB_FILE_VERSION { Ok(r) } else { Err(format!("unsupported version {}", r.version)) }
            });
        match parsed {
            Ok(record) => records.push((path, record)),
            Err(reason) => {
                let aside = dir.join(format!("{name}.corrupt"));
                tracing::error!(file = %path.display(), moved_to = %aside.display(), %reason,
                    "unreadable upload job file set aside");
                std::fs::rename(&path, &aside).map_err(|e| StorageError::io("rename", &path, e))?;
            }
        }
    }
    Ok(records)
}

/// Writes a job file atomically and durably.
async fn write_record(path: &Path, record: &JobRecord) -> Result<(), StorageError> {
    let bytes = serde_json::to_vec_pretty(record)
        .map_err(|e| StorageError::JobFile { path: path.to_path_buf(), reason: e.to_string() })?;
    let path = path.to_path_buf();
    let path2 = path.clone();
    tokio::task::spawn_blocking(move || {
        let dir = path
            .parent()
            .ok_or_else(|| StorageError::io("write", &path, std::io::Error::other("no parent directory")))?;
        let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
        let tmp = dir.join(format!(".{name}.tmp"));
        let result = (|| {
            let mut f = std::fs::File::create(&tmp).map_err(|e| StorageError::io("create", &tmp, e))?;
            f.write_all(&bytes).map_err(|e| StorageError::io("write", &tmp, e))?;
            f.sync_all().map_err(|e| StorageError::io("fsync", &tmp, e))?;
            std::fs::rename(&tmp, &path).map_err(|e| StorageError::io("rename", &tmp, e))?;
            sync_dir(dir)
        })();
        if result.is_err() {
            let _ = std::fs::remove_file(&tmp);
        }
        result
    })
    .await
    .map_err(|e| StorageError::io("write", path2, std::io::Error::other(e.to_string())))?
}

async fn remove_record(path: &Path) -> Result<(), StorageError> {
    let path = path.to_path_buf();
    let path2 = path.clone();
    tokio::task::spawn_blocking(move || {
        match std::fs::remove_file(&path) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(StorageError::io("remove", &path, e)),
        }
        match path.parent() {
            Some(dir) => sync_dir(dir),
            None => Ok(()),
        }
    })
    .await
    .map_err(|e| StorageError::io("remove", path2, std::io::Error::other(e.to_string())))?
}

/// Starts ready jobs, oldest first, within the concurrency limits, and sleeps until the next one is due.
async fn dispatch(shared: Arc<Shared>, mut shutdown: watch::Receiver<bool>) {
    let mut workers = JoinSet::new();
    loop {
        while let Some(done) = workers.try_join_next() {
            if let Err(e) = done {
                tracing::error!(error = %e, "upload worker ended abnormally");
            }
        }
        let (start, next_due) = pick_ready(&shared);
        for id in start {
            workers.spawn(attempt(shared.clone(), id));
        }
        let sleep = match next_due {
            Some(at) => tokio::time::sleep_until(at),
            None => tokio::time::sleep(Duration::from_secs(3600)),
        };
        tokio::select! {
            changed = shutdown.changed() => {
                if changed.is_err() || *shutdown.borrow() {
                    break;
                }
            }
            _ = shared.wake.notified() => {}
            _ = sleep => {}
            Some(done) = workers.join_next(), if !workers.is_empty() => {
                if let Err(e) = done {
                    tracing::error!(error = %e, "upload worker ended abnormally");
                }
            }
        }
    }
    workers.abort_all();
    while workers.join_next().await.is_some() {}
    tracing::debug!("upload queue stopped");
}

/// Marks the jobs to start now as in flight; also returns when the earliest waiting job becomes ready.
fn pick_ready(shared: &Shared) -> (Vec<String>, Option<Instant>) {
    let now = Instant::now();
    let mut guard = shared.state.lock();
    let state = &mut *guard;
    let mut start = Vec::new();
    let mut next_due: Option<Instant> = None;
    for (id, entry) in state.jobs.iter_mut() {
        if entry.in_flight {
            continue;
        }
        if entry.ready_at > now {
            next_due = Some(next_due.map_or(entry.ready_at, |d| d.min(entry.ready_at)));
            continue;
        }
        if state.in_flight >= MAX_IN_FLIGHT {
            continue;
        }
        let per_target = state.in_flight_per_target.entry(entry.record.job.target.clone()).or_default();
        if *per_target >= MAX_IN_FLIGHT_PER_TARGET {
            continue;
        }
        *per_target += 1;
        state.in_flight += 1;
        entry.in_flight = true;
        start.push(id.clone());
    }
    (start, next_due)
}

/// Releases a job's in-flight slot.
fn release(state: &mut State, target: &str) {
    state.in_flight = state.in_flight.saturating_sub(1);
    if let Some(n) = state.in_flight_per_target.get_mut(target) {
        *n = n.saturating_sub(1);
    }
}

/// One attempt at a job: upload (unless already stored), then tell the handler.
async fn attempt(shared: Arc<Shared>, id: String) {
    let Some((mut record, path)) = shared.state.lock().jobs.get(&id).map(|e| (e.record.clone(), e.path.clone())) else {
        return;
    };
    record.attempts = record.attempts.saturating_add(1);
    let job = record.job.clone();
    let outcome = match record.stored.clone() {
        Some(stored) => Ok(stored),
        None => match store(&shared.storage, &job).await {
            Ok(stored) => {
                record.stored = Some(stored.clone());
                if let Err(e) = write_record(&path, &record).await {
                    // The handler is told anyway; after a crash the upload is recognised or repeated.
                    tracing::warn!(target_name = %job.target, key = %job.key, error = %e, "cannot record a finished upload");
                }
                Ok(stored)
            }
            Err(e) => Err(e.to_string()),
        },
    };
    let error = match outcome {
        Ok(stored) => {
            let done = Uploaded { job: job.clone(), url: stored.url, size: stored.size, attempts: record.attempts };
            match shared.handler.uploaded(done).await {
                Ok(()) => {
                    if let Err(e) = remove_record(&path).await {
                        // The job would be reported again after a restart (at-least-once); nothing is lost.
                        tracing::warn!(target_name = %job.target, key = %job.key, error = %e, "cannot remove a finished job file");
                    }
                    tracing::info!(target_name = %job.target, key = %job.key, size = stored.size, attempts = record.attempts, "uploaded");
                    let mut state = shared.state.lock();
                    state.jobs.remove(&id);
                    release(&mut state, &job.target);
                    shared.pending.send_replace(state.jobs.len());
                    drop(state);
                    shared.wake.notify_one();
                    return;
                }
                Err(e) => format!("upload handler: {e}"),
            }
        }
        Err(e) => e,
    };
    let retry_in = backoff(record.attempts, shared.storage.max_backoff());
    record.next_attempt_unix_ms = unix_ms().saturating_add(retry_in.as_millis() as i64);
    record.last_error = error.clone();
    tracing::warn!(target_name = %job.target, key = %job.key, attempts = record.attempts, error = %error,
        retry_in_s = retry_in.as_secs(), "upload attempt failed");
    if let Err(e) = write_record(&path, &record).await {
        tracing::warn!(target_name = %job.target, key = %job.key, error = %e, "cannot record a failed attempt");
    }
    shared.handler.failed(&job, record.attempts, &error, retry_in).await;
    {
        let mut state = shared.state.lock();
        if let Some(entry) = state.jobs.get_mut(&id) {
            entry.record = record;
            entry.in_flight = false;
            entry.ready_at = Instant::now() + retry_in;
        }
        release(&mut state, &job.target);
    }
    shared.wake.notify_one();
}

/// Stores the job's file; recognises a job whose file was already stored and removed before a crash.
async fn store(storage: &Storage, job: &UploadJob) -> Result<StoredObject, StorageError> {
    let url = storage.url(&job.target, &job.key);
    let exists = tokio::fs::try_exists(&job.local_path).await.unwrap_or(true);
    if !exists
        && job.remove_local
        && let Some(size) = storage.stored_size(&job.target, &job.key).await?
    {
        tracing::info!(target_name = %job.target, key = %job.key, "local file gone and object present: stored before a restart");
        return Ok(StoredObject { size, url });
    }
    let size = storage.put_file(&job.target, &job.local_path, &job.key, &job.content_type, job.remove_local).await?;
    Ok(StoredObject { size, url })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_to_the_cap() {
        let max = Duration::from_secs(300);
        let got: Vec<u64> = (1..=11).map(|a| backoff(a, max).as_secs()).collect();
        assert_eq!(got, [1, 2, 4, 8, 16, 32, 64, 128, 256, 300, 300]);
        assert_eq!(backoff(u32::MAX, max), max);
        assert_eq!(backoff(0, max), Duration::from_secs(1));
    }

    #[test]
    fn content_types() {
        assert_eq!(content_type_for("a/b.FLV"), "video/x-flv");
        assert_eq!(content_type_for("a/b.m3u8"), "application/vnd.apple.mpegurl");
        assert_eq!(content_type_for("a/b.jpg"), "image/jpeg");
        assert_eq!(content_type_for("a/b"), "application/octet-stream");
    }
}
