//! A snapshot job on one live stream.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use ferrocast_hub::{Batch, EntryKind, Hub, StreamKey};
use ferrocast_media::{Frame, MediaType, TrackInfo};
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio::time::MissedTickBehavior;

use crate::decode::{keyframe_to_jpeg, source_size};
use crate::key::picture_key;
use crate::size::output_size;
use crate::{Picture, PictureSink, SnapshotError, SnapshotSpec};

/// How long one ffmpeg run may take before it is killed (the picture is then skipped).
pub const FFMPEG_TIMEOUT: Duration = Duration::from_secs(15);
/// How much audio (stream time) a job waits through for a video track before it gives up on the stream.
pub const NO_VIDEO_AFTER: Duration = Duration::from_secs(5);

/// The newest video keyframe seen, with the track it belongs to.
struct Latest {
    track: Arc<TrackInfo>,
    frame: Frame,
    seq: u64,
}

/// Runs a snapshot job on one live stream until the stream ends or `stop` turns true (or its sender is dropped).
///
/// An internal hub subscriber keeps only the latest video keyframe (memory per job: one keyframe). Every
/// `spec.interval` the latest keyframe becomes a JPEG and goes to `sink`; the first picture is taken as soon as a
/// keyframe is there. A keyframe is pictured once: when the stream's GOP is longer than the interval, the job
/// waits for the next keyframe rather than storing the same picture again, so pictures come every
/// max(interval, GOP). At most one picture (ffmpeg run plus sink call) is in progress per job; a tick that comes
/// while one is still running is skipped. A failed picture is logged and the job goes on.
///
/// Returns the number of pictures handed to the sink. Errors: the stream is not live, the spec is unusable
/// (checked before anything runs), or the stream has no video (no video track after [`NO_VIDEO_AFTER`] of
/// audio, or the stream ended without a video frame).
pub async fn run_job(
    hub: Hub,
    key: StreamKey,
    spec: SnapshotSpec,
    ffmpeg: PathBuf,
    sink: Arc<dyn PictureSink>,
    mut stop: watch::Receiver<bool>,
) -> Result<u64, SnapshotError> {
    if spec.interval.is_zero() {
        return Err(SnapshotError::BadSpec("the snapshot interval is 0".into()));
    }
    // Template errors are the user's and permanent: report them now, not once per picture.
    picture_key(&spec, &key.stream, 0, (2, 2))?;
    let mut sub = hub.subscribe_internal(&key).map_err(|_| SnapshotError::NotLive(key.to_string()))?;
    let spec = Arc::new(spec);
    let ffmpeg = Arc::new(ffmpeg);
    let mut video: Option<Arc<TrackInfo>> = sub.start_tracks().video.clone();
    let mut latest: Option<Latest> = None;
    let mut pictured_seq: Option<u64> = None;
    let mut seen_video = false;
    let mut first_audio_ms: Option<i64> = None;
    let mut due = true;
    let mut in_flight = InFlight(None);
    let mut taken = 0u64;
    let mut failing = false;
    let mut ticker = tokio::time::interval_at(tokio::time::Instant::now() + spec.interval, spec.interval);
    ticker.set_missed_tick_behavior(MissedTickBehavior::Skip);
    let mut batch = Vec::new();
    tracing::debug!(stream = %key, interval = ?spec.interval, "snapshot job started");

    loop {
        if due
            && in_flight.0.is_none()
            && let Some(l) = latest.as_ref().filter(|l| pictured_seq != Some(l.seq))
        {
            pictured_seq = Some(l.seq);
            due = false;
            in_flight.0 = Some(tokio::spawn(take_picture(
                key.clone(),
                l.track.clone(),
                l.frame.clone(),
                spec.clone(),
                ffmpeg.clone(),
                sink.clone(),
            )));
        }
        tokio::select! {
            biased;
            // The borrow `wait_for` returns is not Send; drop it inside.
            () = async { drop(stop.wait_for(|s| *s).await) } => {
                in_flight.abort();
                tracing::debug!(stream = %key, taken, "snapshot job stopped");
                return Ok(taken);
            }
            done = join(&mut in_flight.0) => {
                in_flight.0 = None;
                record(&key, done, &mut taken, &mut failing);
            }
            _ = ticker.tick() => {
                if in_flight.0.is_some() {
                    tracing::debug!(stream = %key, "previous picture still in progress; skipping this snapshot tick");
                } else {
                    due = true;
                }
            }
            b = sub.next_batch(&mut batch, 256) => {
                if let Batch::Entries { skipped } = b
                    && skipped > 0
                {
                    // Track entries may have been among the skipped ones.
                    video = sub.current_tracks().video.or(video);
                }
                if b == Batch::Ended {
                    if in_flight.0.is_some() {
                        let done = join(&mut in_flight.0).await;
                        in_flight.0 = None;
                        record(&key, done, &mut taken, &mut failing);
                    }
                    if !seen_video {
                        return no_video(&key);
                    }
                    tracing::debug!(stream = %key, taken, "stream ended; snapshot job done");
                    return Ok(taken);
                }
                for entry in batch.drain(..) {
                    match &entry.kind {
                        EntryKind::Track(t) if t.media == MediaType::Video => video = Some(t.clone()),
                        EntryKind::Frame(f) if f.media == MediaType::Video => {
                            seen_video = true;
                            if f.keyframe {
                                // VP8 may arrive without a track announcement: it needs no configuration.
                                let track = video.clone().unwrap_or_else(|| Arc::new(bare_track(f)));
                                latest = Some(Latest { track, frame: f.clone(), seq: entry.seq });
                            }
                        }
                        EntryKind::Frame(f) if !seen_video && video.is_none() => {
                            let first = *first_audio_ms.get_or_insert(f.dts_ms());
                            if f.dts_ms().saturating_sub(first) >= NO_VIDEO_AFTER.as_millis() as i64 {
                                in_flight.abort();
                                return no_video(&key);
                            }
                        }
                        _ => {}
                    }
                }
            }
        }
    }
}

/// The picture in progress, if any; aborted (which kills its ffmpeg) when the job goes away, however it goes.
struct InFlight(Option<JoinHandle<Result<(), SnapshotError>>>);

impl InFlight {
    fn abort(&mut self) {
        if let Some(task) = self.0.take() {
            task.abort();
        }
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.abort();
    }
}

fn no_video(key: &StreamKey) -> Result<u64, SnapshotError> {
    let err = SnapshotError::NoVideo(key.to_string());
    tracing::warn!(stream = %key, "{err}");
    Err(err)
}

/// Waits for the picture in progress; never completes when there is none.
async fn join(task: &mut Option<JoinHandle<Result<(), SnapshotError>>>) -> Result<(), String> {
    match task {
        Some(t) => match t.await {
            Ok(r) => r.map_err(|e| e.to_string()),
            Err(e) => Err(format!("the picture task failed: {e}")),
        },
        None => std::future::pending().await,
    }
}

/// Counts a delivered picture; logs a failure at warn the first time in a row, at debug after, so a stream that
/// ffmpeg cannot decode does not fill the log at every tick.
fn record(key: &StreamKey, done: Result<(), String>, taken: &mut u64, failing: &mut bool) {
    match done {
        Ok(()) => {
            *taken += 1;
            if std::mem::take(failing) {
                tracing::info!(stream = %key, "screenshots work again");
            }
        }
        Err(e) if !*failing => {
            *failing = true;
            tracing::warn!(stream = %key, error = %e, "screenshot failed; retrying at the next interval");
        }
        Err(e) => tracing::debug!(stream = %key, error = %e, "screenshot failed again"),
    }
}

fn bare_track(f: &Frame) -> TrackInfo {
    TrackInfo {
        media: MediaType::Video,
        codec: f.codec,
        timebase: f.timebase,
        config: bytes::Bytes::new(),
        video: None,
        audio: None,
    }
}

async fn take_picture(
    key: StreamKey,
    track: Arc<TrackInfo>,
    frame: Frame,
    spec: Arc<SnapshotSpec>,
    ffmpeg: Arc<PathBuf>,
    sink: Arc<dyn PictureSink>,
) -> Result<(), SnapshotError> {
    let taken_unix_ms = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis() as i64);
    let configured = (spec.width, spec.height);
    let size = match source_size(&track, &frame) {
        Some(source) => output_size(source, configured),
        // Both sides configured: the rule needs the source only for the swap, which is then left out.
        None if spec.width > 0 && spec.height > 0 => output_size(configured, configured),
        None => return Err(SnapshotError::UnknownSourceSize),
    };
    let jpeg = keyframe_to_jpeg(&ffmpeg, &track, &frame, size, FFMPEG_TIMEOUT).await?;
    let object_key = picture_key(&spec, &key.stream, taken_unix_ms, size)?;
    let picture = Picture { jpeg, width: size.0, height: size.1, taken_unix_ms, key: object_key };
    sink.picture(&key, picture).await;
    Ok(())
}
