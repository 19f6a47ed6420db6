//! Time shifting: every stream under a time-shift rule is recorded as MPEG-TS segments in object storage, with
//! a time index in the control store, and served back as HLS (`txTimeshift=on`).
//!
//! - Recording: on every new publisher (not a resume) whose stream matches a rule (see
//!   [`ferrocast_control::store_timeshift`] for the precedence), an internal hub subscriber feeds a
//!   [`Segmenter`] cut at the template's `ItemDuration`. Each closed segment is muxed to TS (continuity counters
//!   continue across segments), written to the object store at `{domain}/{app}/{stream}/{sid}/{seq}.ts` and then
//!   recorded in the index with the wall clock of its first frame. A new publisher is a new session (`Sid`);
//!   sequence numbers continue across the sessions of a stream.
//! - Retention: a periodic task deletes segments (object, then index row) whose template `Duration` has passed,
//!   and sessions left without segments.
//! - Playback: [`TimeShift::playlist`] answers a [`query::Request`] from the index alone; [`TimeShift::segment`]
//!   reads one segment back from the object store.
//!
//! Storage is a local directory (`object_store::local::LocalFileSystem`); any other `ObjectStore` (S3, ...) can
//! be passed to [`TimeShift::with_object_store`].

pub mod query;

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use ferrocast_control::store::{Store, StoreError, unix_now_ms};
use ferrocast_control::store_timeshift::{TimeShiftSegment, TimeShiftSession, TimeShiftTemplate};
use ferrocast_formats::ts::TsMuxer;
use ferrocast_hub::{Batch, EntryKind, Hub, HubEvent, StreamKey};
use ferrocast_media::MediaType;
use ferrocast_packager::segmenter::{Cut, SegmentData, Segmenter, SegmenterConfig};
use object_store::ObjectStore;
use object_store::path::Path as ObjectPath;
use tokio::sync::broadcast;

pub use query::{ParseError, Request};

/// Time-shift settings (`[timeshift]` in the server config).
#[derive(Debug, Clone)]
pub struct TimeShiftConfig {
    /// Directory of the local object store.
    pub root: PathBuf,
    /// How often retention runs.
    pub cleanup_interval: Duration,
    /// A session that never stored a segment is dropped this long after it started.
    pub stale_session: Duration,
}

/// Why a time-shift operation failed.
#[derive(Debug, thiserror::Error)]
pub enum TimeShiftError {
    /// The request is malformed or out of range (HTTP 400).
    #[error(transparent)]
    BadRequest(#[from] ParseError),
    /// Nothing recorded matches (HTTP 404).
    #[error("{0}")]
    NotFound(String),
    /// The index could not be read or written.
    #[error("time-shift index: {0}")]
    Store(#[from] StoreError),
    /// The object store failed.
    #[error("time-shift storage: {0}")]
    Object(#[from] object_store::Error),
    /// The local storage directory could not be created.
    #[error("time-shift storage directory: {0}")]
    Io(#[from] std::io::Error),
    /// A segment could not be muxed.
    #[error("MPEG-TS: {0}")]
    Mux(String),
}

/// The time-shift recorder and its playback side.
#[derive(Clone)]
pub struct TimeShift {
    inner: Arc<Inner>,
}

struct Inner {
    hub: Hub,
    store: Store,
    objects: Arc<dyn ObjectStore>,
    config: TimeShiftConfig,
    /// The session recording each stream.
    recording: parking_lot::Mutex<HashMap<StreamKey, String>>,
}

impl std::fmt::Debug for TimeShift {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TimeShift")
            .field("root", &self.inner.config.root)
            .field("recording", &self.inner.recording.lock().len())
            .finish()
    }
}

fn object_path(key: &StreamKey, sid: &str, seq: i64) -> ObjectPath {
    let file = format!("{seq}.ts");
    ObjectPath::from_iter([key.domain.as_str(), key.app.as_str(), key.stream.as_str(), sid, file.as_str()])
}

/// Muxes one segment to MPEG-TS, continuing `counters`; returns the bytes and the counters to continue from.
fn mux(seg: &SegmentData, counters: Option<[u8; 4]>) -> Result<(Bytes, [u8; 4]), TimeShiftError> {
    let g = &seg.generation;
    let (v, a) = (g.video.as_deref(), g.audio.as_deref());
    let mut muxer = TsMuxer::new(v, a).map_err(|e| TimeShiftError::Mux(e.to_string()))?;
    if let Some(c) = counters {
        muxer.set_continuity_counters(c);
    }
    let size: usize = seg.parts.iter().flat_map(|p| p.frames.iter()).map(|f| f.data.len()).sum();
    let mut out = BytesMut::with_capacity(size + size / 16 + 1024);
    muxer.write_tables(&mut out);
    for f in seg.parts.iter().flat_map(|p| p.frames.iter()) {
        let wanted = match f.media {
            MediaType::Video => v.is_some(),
            MediaType::Audio => a.is_some(),
        };
        if wanted && let Err(e) = muxer.write_frame(f, &mut out) {
            tracing::debug!(seq = seg.msn, error = %e, "time shift: frame skipped");
        }
    }
    Ok((out.freeze(), muxer.continuity_counters()))
}

/// One session being recorded.
struct Recording {
    key: StreamKey,
    session: TimeShiftSession,
    counters: Option<[u8; 4]>,
    /// The least (arrival wall clock − DTS) of the open segment's frames: its first frame's wall clock is its
    /// start DTS plus this (frames replayed from the GOP cache arrive late; the least-delayed frame is the best
    /// estimate of when the media was live).
    open_offset: Option<i64>,
    /// Wall clock of the end of the last stored segment: the next one starts there unless the estimate from its
    /// frames disagrees by more than [`REANCHOR_MS`] (a gap, or clock drift). The estimate alone is thrown off by
    /// bursts, such as an encoder flushing its lookahead when the publisher stops.
    last_end: Option<i64>,
}

/// See [`Recording::last_end`].
const REANCHOR_MS: i64 = 2000;

impl TimeShift {
    /// Starts recording into a local directory (`config.root`, created if missing), and retention.
    pub fn start(hub: Hub, store: Store, config: TimeShiftConfig) -> Result<TimeShift, TimeShiftError> {
        std::fs::create_dir_all(&config.root)?;
        let local = object_store::local::LocalFileSystem::new_with_prefix(&config.root)?.with_automatic_cleanup(true);
        Ok(TimeShift::with_object_store(hub, store, Arc::new(local), config))
    }

    /// Starts recording into any object store, and retention.
    pub fn with_object_store(
        hub: Hub,
        store: Store,
        objects: Arc<dyn ObjectStore>,
        config: TimeShiftConfig,
    ) -> TimeShift {
        let ts = TimeShift {
            inner: Arc::new(Inner {
                hub: hub.clone(),
                store,
                objects,
                config,
                recording: parking_lot::Mutex::new(HashMap::new()),
            }),
        };
        let events = hub.events();
        let me = ts.clone();
        tokio::spawn(async move {
            for s in me.inner.hub.streams() {
                me.on_published(s.key).await;
            }
            me.listen(events).await
        });
        let me = ts.clone();
        tokio::spawn(async move { me.retention_loop().await });
        ts
    }

    async fn listen(self, mut events: broadcast::Receiver<HubEvent>) {
        loop {
            match events.recv().await {
                Ok(HubEvent::Published { key, resumed: false, .. }) => self.on_published(key).await,
                Ok(_) => {}
                Err(broadcast::error::RecvError::Lagged(n)) => {
                    tracing::warn!(missed = n, "time shift: hub events lagged; catching up from the registry");
                    for s in self.inner.hub.streams() {
                        if !self.inner.recording.lock().contains_key(&s.key) {
                            self.on_published(s.key).await;
                        }
                    }
                }
                Err(broadcast::error::RecvError::Closed) => return,
            }
        }
    }

    async fn on_published(&self, key: StreamKey) {
        let template = match self.inner.store.timeshift_template_for(&key.domain, &key.app, &key.stream).await {
            Ok(Some(t)) => t,
            Ok(None) => return,
            Err(e) => {
                tracing::warn!(stream = %key, error = %e, "time shift: rule lookup failed; stream not recorded");
                return;
            }
        };
        let sub = match self.inner.hub.subscribe_internal(&key) {
            Ok(s) => s,
            Err(e) => {
                tracing::debug!(stream = %key, error = %e, "time shift: stream ended before recording started");
                return;
            }
        };
        match self.new_session(&key, &template).await {
            Ok((session, first_seq)) => {
                self.inner.recording.lock().insert(key.clone(), session.sid.clone());
                tracing::info!(stream = %key, sid = %session.sid, template = template.id, "time shift: recording");
                let me = self.clone();
                let rec = Recording { key, session, counters: None, open_offset: None, last_end: None };
                tokio::spawn(async move { me.record(sub, rec, first_seq).await });
            }
            Err(e) => tracing::warn!(stream = %key, error = %e, "time shift: session not created"),
        }
    }

    async fn new_session(
        &self,
        key: &StreamKey,
        template: &TimeShiftTemplate,
    ) -> Result<(TimeShiftSession, i64), TimeShiftError> {
        let store = &self.inner.store;
        let first_seq = store.timeshift_next_seq(&key.domain, &key.app, &key.stream).await?;
        let start_ms = unix_now_ms();
        let session = TimeShiftSession {
            sid: format!("{start_ms:x}{:08x}", rand::random::<u32>()),
            domain: key.domain.clone(),
            app: key.app.clone(),
            stream: key.stream.clone(),
            template_id: template.id,
            retention_s: template.duration,
            item_duration: template.item_duration,
            start_ms,
            end_ms: None,
        };
        store.create_timeshift_session(&session).await?;
        Ok((session, first_seq))
    }

    async fn record(self, mut sub: ferrocast_hub::Subscriber, mut rec: Recording, first_seq: i64) {
        let target = rec.session.item_duration.max(1) * 1000;
        let config = SegmenterConfig { segment_target_ms: target, part_target_ms: target };
        let mut seg = Segmenter::new(config, u64::try_from(first_seq).unwrap_or(0));
        let start = sub.start_tracks().clone();
        let cuts = seg.set_tracks(start.video.clone(), start.audio.clone());
        self.store_cuts(&mut rec, cuts).await;
        let mut batch = Vec::with_capacity(64);
        loop {
            batch.clear();
            match sub.next_batch(&mut batch, 64).await {
                Batch::Ended => break,
                Batch::Entries { .. } => {}
            }
            let now = unix_now_ms();
            for entry in &batch {
                let cuts = seg.push_entry(&entry.kind, now);
                self.store_cuts(&mut rec, cuts).await;
                // After the cuts: the frame belongs to the segment that is open now.
                if let EntryKind::Frame(f) = &entry.kind {
                    let offset = now - f.dts_ms();
                    rec.open_offset = Some(rec.open_offset.map_or(offset, |o| o.min(offset)));
                }
            }
        }
        let cuts = seg.flush();
        self.store_cuts(&mut rec, cuts).await;
        let mut recording = self.inner.recording.lock();
        if recording.get(&rec.key).is_some_and(|sid| *sid == rec.session.sid) {
            recording.remove(&rec.key);
        }
        tracing::info!(stream = %rec.key, sid = %rec.session.sid, "time shift: publisher gone; session closed");
    }

    async fn store_cuts(&self, rec: &mut Recording, cuts: Vec<Cut>) {
        for cut in cuts {
            let Cut::Segment(data) = cut else { continue };
            let offset = rec.open_offset.take().unwrap_or_else(|| unix_now_ms() - data.start_ms);
            let estimate = data.start_ms + offset;
            let wall_ms = match rec.last_end {
                Some(end) if (estimate - end).abs() <= REANCHOR_MS => end,
                _ => estimate,
            };
            rec.last_end = Some(wall_ms + data.duration_ms);
            if let Err(e) = self.store_segment(rec, &data, wall_ms).await {
                tracing::warn!(stream = %rec.key, seq = data.msn, error = %e, "time shift: segment not stored");
            }
        }
    }

    async fn store_segment(&self, rec: &mut Recording, data: &SegmentData, wall_ms: i64) -> Result<(), TimeShiftError> {
        let (bytes, counters) = mux(data, rec.counters)?;
        rec.counters = Some(counters);
        let seq = i64::try_from(data.msn).unwrap_or(i64::MAX);
        let path = object_path(&rec.key, &rec.session.sid, seq);
        let len = bytes.len() as i64;
        self.inner.objects.put(&path, bytes.into()).await?;
        let row = TimeShiftSegment {
            sid: rec.session.sid.clone(),
            seq,
            domain: rec.key.domain.clone(),
            app: rec.key.app.clone(),
            stream: rec.key.stream.clone(),
            wall_ms,
            duration_ms: data.duration_ms,
            path: path.to_string(),
            discontinuity: data.discontinuity,
            bytes: len,
            expires_at_ms: wall_ms + data.duration_ms + rec.session.retention_s * 1000,
        };
        self.inner.store.add_timeshift_segment(&row).await?;
        Ok(())
    }

    async fn retention_loop(self) {
        let mut tick = tokio::time::interval(self.inner.config.cleanup_interval.max(Duration::from_millis(100)));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            match self.cleanup(unix_now_ms()).await {
                Ok((0, 0)) => {}
                Ok((segments, sessions)) => tracing::info!(segments, sessions, "time shift: expired data deleted"),
                Err(e) => tracing::warn!(error = %e, "time shift: retention failed"),
            }
        }
    }

    /// Deletes every segment (object and index row) expired at `now_ms`, and sessions left empty. Returns the
    /// numbers of segments and sessions deleted.
    pub async fn cleanup(&self, now_ms: i64) -> Result<(u64, u64), TimeShiftError> {
        const BATCH: i64 = 500;
        let store = &self.inner.store;
        let mut segments = 0;
        loop {
            let expired = store.expired_timeshift_segments(now_ms, BATCH).await?;
            for s in &expired {
                match ObjectPath::parse(&s.path) {
                    Ok(path) => match self.inner.objects.delete(&path).await {
                        Ok(()) | Err(object_store::Error::NotFound { .. }) => {}
                        Err(e) => return Err(e.into()),
                    },
                    Err(e) => tracing::warn!(path = %s.path, error = %e, "time shift: bad object path in the index"),
                }
                if store.delete_timeshift_segment(&s.sid, s.seq).await? {
                    segments += 1;
                }
            }
            if (expired.len() as i64) < BATCH {
                break;
            }
        }
        let stale = i64::try_from(self.inner.config.stale_session.as_millis()).unwrap_or(i64::MAX);
        let sessions = store.delete_empty_timeshift_sessions(now_ms, stale).await?;
        Ok((segments, sessions))
    }

    /// The playlist of a time-shift request for stream `key`. Segment URIs are `{base}{sid}/{seq}.ts?{query}`.
    pub async fn playlist(
        &self,
        key: &StreamKey,
        request: Request,
        base: &str,
        query: &str,
        now_ms: i64,
    ) -> Result<String, TimeShiftError> {
        let store = &self.inner.store;
        let (d, a, s) = (&key.domain, &key.app, &key.stream);
        match request {
            Request::Window { start_ms, end_ms } => {
                let index = store.timeshift_segments_between(d, a, s, start_ms, end_ms).await?;
                let segments = query::select_window(&index, start_ms, end_ms);
                let Some(first) = segments.first() else {
                    return Err(TimeShiftError::NotFound(format!("no time-shift data of {key} in that window")));
                };
                let item_s = match store.timeshift_session(&first.sid).await? {
                    Some(session) => session.item_duration,
                    None => (first.duration_ms + 999) / 1000,
                };
                if end_ms - start_ms < item_s * 1000 {
                    return Err(ParseError(format!(
                        "the window is {} ms; it must be at least one segment ({item_s} s)",
                        end_ms - start_ms
                    ))
                    .into());
                }
                Ok(query::render(&segments, true, base, query, item_s))
            }
            Request::Delay { delay_ms } => {
                let segments =
                    store.timeshift_segments_until(d, a, s, now_ms - delay_ms, query::DELAY_WINDOW_SEGMENTS).await?;
                if segments.is_empty() {
                    return Err(TimeShiftError::NotFound(format!(
                        "no time-shift data of {key} {} s behind live",
                        delay_ms / 1000
                    )));
                }
                Ok(query::render(&segments, false, base, query, 1))
            }
        }
    }

    /// The bytes of one stored segment of stream `key`.
    pub async fn segment(&self, key: &StreamKey, sid: &str, seq: i64) -> Result<Bytes, TimeShiftError> {
        let missing = || TimeShiftError::NotFound(format!("time-shift segment {sid}/{seq} of {key}"));
        let row = self.inner.store.timeshift_segment(sid, seq).await?.ok_or_else(missing)?;
        if row.domain != key.domain || row.app != key.app || row.stream != key.stream {
            return Err(missing());
        }
        let path = ObjectPath::parse(&row.path).map_err(|_| missing())?;
        match self.inner.objects.get(&path).await {
            Ok(r) => Ok(r.bytes().await?),
            Err(object_store::Error::NotFound { .. }) => Err(missing()),
            Err(e) => Err(e.into()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ferrocast_hub::HubConfig;

    #[tokio::test]
    async fn retention_deletes_expired_objects_and_rows() {
        let dir = std::env::temp_dir().join(format!("ferrocast-ts-test-{}", rand::random::<u64>()));
        let store = Store::open("sqlite::memory:").await.expect("store");
        let config = TimeShiftConfig {
            root: dir.clone(),
            cleanup_interval: Duration::from_secs(3600),
            stale_session: Duration::from_secs(600),
        };
        let ts = TimeShift::start(
            Hub::new(HubConfig::default(), Arc::new(ferrocast_hub::Metrics::default())),
            store.clone(),
            config,
        )
        .expect("start");
        let key = StreamKey::new("d.com", "live", "s");
        // Recent enough that the retention task's first (immediate) run finds nothing expired.
        let t0 = unix_now_ms() - 1000;
        let session = TimeShiftSession {
            sid: "a1".into(),
            domain: key.domain.clone(),
            app: key.app.clone(),
            stream: key.stream.clone(),
            template_id: 1,
            retention_s: 10,
            item_duration: 3,
            start_ms: t0,
            end_ms: None,
        };
        store.create_timeshift_session(&session).await.expect("session");
        for seq in 0..3 {
            let path = object_path(&key, "a1", seq);
            ts.inner.objects.put(&path, Bytes::from_static(b"ts").into()).await.expect("put");
            let wall_ms = t0 + seq * 3000;
            let row = TimeShiftSegment {
                sid: "a1".into(),
                seq,
                domain: key.domain.clone(),
                app: key.app.clone(),
                stream: key.stream.clone(),
                wall_ms,
                duration_ms: 3000,
                path: path.to_string(),
                discontinuity: false,
                bytes: 2,
                expires_at_ms: wall_ms + 3000 + 10_000,
            };
            store.add_timeshift_segment(&row).await.expect("row");
        }
        let file = dir.join("d.com/live/s/a1/0.ts");
        assert!(file.exists());
        assert_eq!(ts.segment(&key, "a1", 1).await.expect("read"), Bytes::from_static(b"ts"));
        // At t0 + 16 s, segments 0 (ends 3 s, expires 13 s) and 1 (expires 16 s... not before) are checked.
        assert_eq!(ts.cleanup(t0 + 16_000).await.expect("cleanup"), (1, 0));
        assert!(!file.exists());
        assert!(matches!(ts.segment(&key, "a1", 0).await, Err(TimeShiftError::NotFound(_))));
        let p = ts.playlist(&key, Request::Delay { delay_ms: 0 }, "", "", t0 + 16_000).await.expect("playlist");
        assert!(p.contains("a1/1.ts") && p.contains("a1/2.ts") && !p.contains("a1/0.ts"));
        assert_eq!(ts.cleanup(t0 + 60_000).await.expect("cleanup"), (2, 1));
        assert!(store.timeshift_session("a1").await.expect("get").is_none());
        assert!(!dir.join("d.com/live/s/a1").exists(), "empty directories are removed too");
        let _ = std::fs::remove_dir_all(&dir);
    }
}
