//! Stream history: a recorder task that persists the hub's lifecycle events as push sessions (start, stop, client
//! IP, errcode/errmsg) and samples every live stream's viewers and bytes out at a fixed interval, and the queries
//! the history actions (DescribeLiveStreamEventList, DescribeLiveStreamPublishedList, DescribeStreamPlayInfoList)
//! read. Tables: migration `0004_history.sql`.

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use ferrocast_hub::{EndReason, Hub, HubEvent, StreamKey};
use sqlx::Row;
use sqlx::any::AnyRow;
use tokio::sync::broadcast::error::RecvError;
use tokio::task::JoinHandle;

use crate::store::{Store, StoreError, unix_now};

/// How long sessions and samples are kept (the actions look at most 60 days back).
const RETENTION_SECS: i64 = 62 * 86_400;
/// How often old rows are deleted.
const CLEANUP_EVERY: Duration = Duration::from_secs(3600);

/// errcode/errmsg of a stream interruption (callbacks spec §2.2 mapping).
pub fn stop_code(reason: &EndReason) -> (i64, &'static str) {
    match reason {
        EndReason::PublisherClosed => (1, "The push client actively stopped the push"),
        EndReason::PublisherLost(why) => {
            let why = why.to_ascii_lowercase();
            if why.contains("idle") || why.contains("no data") {
                (8, "The system actively stopped the push with no data for a long time")
            } else {
                (12, "Abnormal stream pushing link network")
            }
        }
        EndReason::Stopped(why) if why.contains("shutting down") => {
            (5, "The live streaming system has an internal error")
        }
        EndReason::Stopped(_) => (10, "The proxy layer received an interruption command"),
    }
}

/// One push session: a publisher from its start to its stop (`ended_at` is `None` while it is pushing).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PushSession {
    /// The push domain.
    pub domain: String,
    /// The application.
    pub app: String,
    /// The stream name.
    pub stream: String,
    /// The publisher's protocol label (`rtmp`, ...).
    pub protocol: String,
    /// The publisher's IP address ("" when unknown).
    pub client_ip: String,
    /// `W*H` of the video track, "" when unknown.
    pub resolution: String,
    /// UNIX seconds.
    pub started_at: i64,
    /// UNIX seconds; `None` while pushing.
    pub ended_at: Option<i64>,
    /// Interruption errcode (0 while pushing).
    pub errcode: i64,
    /// Interruption errmsg ("" while pushing).
    pub errmsg: String,
}

/// One playback sample of one stream: viewers at `at_ms`, joins and bytes out over the `span_ms` before it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PlaySample {
    /// End of the sampled span, UNIX milliseconds.
    pub at_ms: i64,
    /// Length of the sampled span, milliseconds.
    pub span_ms: i64,
    /// Viewers at `at_ms`.
    pub viewers: i64,
    /// Viewers that joined during the span.
    pub requests: i64,
    /// Bytes written to viewers during the span.
    pub bytes_out: i64,
}

/// A [`PlaySample`] with its stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyedSample {
    /// The stream.
    pub key: StreamKey,
    /// The figures.
    pub sample: PlaySample,
}

fn session_from_row(row: &AnyRow) -> Result<PushSession, sqlx::Error> {
    Ok(PushSession {
        domain: row.try_get("domain")?,
        app: row.try_get("app")?,
        stream: row.try_get("stream")?,
        protocol: row.try_get("protocol")?,
        client_ip: row.try_get("client_ip")?,
        resolution: row.try_get("resolution")?,
        started_at: row.try_get("started_at")?,
        ended_at: row.try_get("ended_at")?,
        errcode: row.try_get("errcode")?,
        errmsg: row.try_get("errmsg")?,
    })
}

fn sample_from_row(row: &AnyRow) -> Result<KeyedSample, sqlx::Error> {
    Ok(KeyedSample {
        key: StreamKey { domain: row.try_get("domain")?, app: row.try_get("app")?, stream: row.try_get("stream")? },
        sample: PlaySample {
            at_ms: row.try_get("at_ms")?,
            span_ms: row.try_get("span_ms")?,
            viewers: row.try_get("viewers")?,
            requests: row.try_get("requests")?,
            bytes_out: row.try_get("bytes_out")?,
        },
    })
}

/// Records that a publisher started pushing `key` at `at`.
pub async fn session_started(
    store: &Store,
    key: &StreamKey,
    protocol: &str,
    client_ip: &str,
    at: i64,
) -> Result<(), StoreError> {
    // A publisher that replaced another without a stop event: close the older session first.
    session_ended(store, key, at, 10, "The proxy layer received an interruption command").await?;
    sqlx::query(
        "INSERT INTO push_sessions (domain, app, stream, protocol, client_ip, started_at) \
         VALUES ($1, $2, $3, $4, $5, $6)",
    )
    .bind(&key.domain)
    .bind(&key.app)
    .bind(&key.stream)
    .bind(protocol)
    .bind(client_ip)
    .bind(at)
    .execute(store.pool())
    .await?;
    Ok(())
}

/// Closes the open session of `key` (if any) at `at` with an errcode/errmsg.
pub async fn session_ended(
    store: &Store,
    key: &StreamKey,
    at: i64,
    errcode: i64,
    errmsg: &str,
) -> Result<bool, StoreError> {
    let r = sqlx::query(
        "UPDATE push_sessions SET ended_at = $1, errcode = $2, errmsg = $3 \
         WHERE domain = $4 AND app = $5 AND stream = $6 AND ended_at IS NULL",
    )
    .bind(at)
    .bind(errcode)
    .bind(errmsg)
    .bind(&key.domain)
    .bind(&key.app)
    .bind(&key.stream)
    .execute(store.pool())
    .await?;
    Ok(r.rows_affected() > 0)
}

/// Sets the resolution of the open session of `key` when it has none yet.
pub async fn session_resolution(store: &Store, key: &StreamKey, resolution: &str) -> Result<(), StoreError> {
    sqlx::query(
        "UPDATE push_sessions SET resolution = $1 \
         WHERE domain = $2 AND app = $3 AND stream = $4 AND ended_at IS NULL AND resolution = ''",
    )
    .bind(resolution)
    .bind(&key.domain)
    .bind(&key.app)
    .bind(&key.stream)
    .execute(store.pool())
    .await?;
    Ok(())
}

/// Closes sessions left open by a previous process (it stopped without recording their end).
pub async fn close_stale_sessions(store: &Store, at: i64) -> Result<u64, StoreError> {
    let r = sqlx::query(
        "UPDATE push_sessions SET ended_at = $1, errcode = 5, \
         errmsg = 'The live streaming system has an internal error' WHERE ended_at IS NULL",
    )
    .bind(at)
    .execute(store.pool())
    .await?;
    Ok(r.rows_affected())
}

/// Push sessions overlapping `[start, end]` (UNIX seconds), oldest start first.
pub async fn sessions_between(store: &Store, start: i64, end: i64) -> Result<Vec<PushSession>, StoreError> {
    let rows = sqlx::query(
        "SELECT domain, app, stream, protocol, client_ip, resolution, started_at, ended_at, errcode, errmsg \
         FROM push_sessions WHERE started_at <= $1 AND (ended_at IS NULL OR ended_at >= $2) \
         ORDER BY started_at, id",
    )
    .bind(end)
    .bind(start)
    .fetch_all(store.pool())
    .await?;
    Ok(rows.iter().map(session_from_row).collect::<Result<_, _>>()?)
}

/// Stores one playback sample.
pub async fn insert_sample(store: &Store, s: &KeyedSample) -> Result<(), StoreError> {
    sqlx::query(
        "INSERT INTO play_samples (at_ms, span_ms, domain, app, stream, viewers, requests, bytes_out) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
    )
    .bind(s.sample.at_ms)
    .bind(s.sample.span_ms)
    .bind(&s.key.domain)
    .bind(&s.key.app)
    .bind(&s.key.stream)
    .bind(s.sample.viewers)
    .bind(s.sample.requests)
    .bind(s.sample.bytes_out)
    .execute(store.pool())
    .await?;
    Ok(())
}

/// Playback samples taken in `(from_ms, to_ms]`, oldest first.
pub async fn samples_between(store: &Store, from_ms: i64, to_ms: i64) -> Result<Vec<KeyedSample>, StoreError> {
    let rows = sqlx::query(
        "SELECT at_ms, span_ms, domain, app, stream, viewers, requests, bytes_out FROM play_samples \
         WHERE at_ms > $1 AND at_ms <= $2 ORDER BY at_ms",
    )
    .bind(from_ms)
    .bind(to_ms)
    .fetch_all(store.pool())
    .await?;
    Ok(rows.iter().map(sample_from_row).collect::<Result<_, _>>()?)
}

/// Deletes sessions that ended and samples taken before `before` (UNIX seconds).
pub async fn delete_older_than(store: &Store, before: i64) -> Result<(), StoreError> {
    sqlx::query("DELETE FROM push_sessions WHERE ended_at IS NOT NULL AND ended_at < $1")
        .bind(before)
        .execute(store.pool())
        .await?;
    sqlx::query("DELETE FROM play_samples WHERE at_ms < $1")
        .bind(before.saturating_mul(1000))
        .execute(store.pool())
        .await?;
    Ok(())
}

/// The per-stream counters between two ticks of the sampler.
#[derive(Debug, Default)]
struct Sampler {
    /// Bytes-out counter of each stream at the last tick.
    last_bytes: HashMap<StreamKey, u64>,
    /// Viewers joined since the last tick.
    joins: HashMap<StreamKey, i64>,
    /// Streams whose open session has its resolution recorded.
    resolved: HashSet<StreamKey>,
    /// Time of the last tick, UNIX ms.
    last_at_ms: i64,
}

/// Starts the recorder: subscribes to the hub's events now (nothing published afterwards is missed), closes
/// sessions a previous process left open, then records sessions and samples playback every `sample_interval`.
pub fn spawn_recorder(store: Store, hub: Hub, sample_interval: Duration) -> JoinHandle<()> {
    let events = hub.events();
    let interval = sample_interval.max(Duration::from_millis(100));
    tokio::spawn(async move {
        match close_stale_sessions(&store, unix_now()).await {
            Ok(0) => {}
            Ok(n) => tracing::info!(sessions = n, "history: closed push sessions left open by the last run"),
            Err(e) => tracing::warn!(error = %e, "history: could not close stale push sessions"),
        }
        run(store, hub, events, interval).await;
    })
}

async fn run(store: Store, hub: Hub, mut events: tokio::sync::broadcast::Receiver<HubEvent>, interval: Duration) {
    let mut sampler = Sampler { last_at_ms: crate::store::unix_now_ms(), ..Sampler::default() };
    let mut ticker = tokio::time::interval_at(tokio::time::Instant::now() + interval, interval);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut last_cleanup: Option<tokio::time::Instant> = None;
    loop {
        tokio::select! {
            ev = events.recv() => match ev {
                Ok(ev) => {
                    if let Err(e) = record_event(&store, &mut sampler, ev).await {
                        tracing::warn!(error = %e, "history: could not record a stream event");
                    }
                }
                Err(RecvError::Lagged(n)) => tracing::warn!(missed = n, "history: missed hub events"),
                Err(RecvError::Closed) => break,
            },
            _ = ticker.tick() => {
                if let Err(e) = sample(&store, &hub, &mut sampler).await {
                    tracing::warn!(error = %e, "history: could not store playback samples");
                }
                if last_cleanup.is_none_or(|t| t.elapsed() >= CLEANUP_EVERY) {
                    last_cleanup = Some(tokio::time::Instant::now());
                    if let Err(e) = delete_older_than(&store, unix_now() - RETENTION_SECS).await {
                        tracing::warn!(error = %e, "history: could not delete old rows");
                    }
                }
            }
        }
    }
}

async fn record_event(store: &Store, sampler: &mut Sampler, ev: HubEvent) -> Result<(), StoreError> {
    match ev {
        HubEvent::Published { key, protocol, client, .. } => {
            let ip = client.map(|a| a.ip().to_string()).unwrap_or_default();
            sampler.resolved.remove(&key);
            session_started(store, &key, protocol.label(), &ip, unix_now()).await
        }
        HubEvent::PublisherLeft { key, reason } | HubEvent::Unpublished { key, reason } => {
            let (code, msg) = stop_code(&reason);
            session_ended(store, &key, unix_now(), code, msg).await.map(|_| ())
        }
        HubEvent::ViewerJoined { key, .. } => {
            *sampler.joins.entry(key).or_default() += 1;
            Ok(())
        }
        HubEvent::ViewerLeft { .. } => Ok(()),
    }
}

/// One sampler tick: a row per stream that had viewers, joins or bytes out since the last tick.
async fn sample(store: &Store, hub: &Hub, sampler: &mut Sampler) -> Result<(), StoreError> {
    let now_ms = crate::store::unix_now_ms();
    let span_ms = (now_ms - sampler.last_at_ms).max(1);
    sampler.last_at_ms = now_ms;
    let streams = hub.streams();
    let mut last_bytes = HashMap::new();
    let mut rows = Vec::new();
    for s in &streams {
        let prev = sampler.last_bytes.get(&s.key).copied().unwrap_or(0);
        // A counter that went down belongs to a new stream under the same key.
        let delta = if s.bytes_out >= prev { s.bytes_out - prev } else { s.bytes_out };
        last_bytes.insert(s.key.clone(), s.bytes_out);
        let requests = sampler.joins.remove(&s.key).unwrap_or(0);
        let viewers = i64::try_from(s.viewers).unwrap_or(i64::MAX);
        let bytes_out = i64::try_from(delta).unwrap_or(i64::MAX);
        if viewers > 0 || requests > 0 || bytes_out > 0 {
            rows.push(KeyedSample {
                key: s.key.clone(),
                sample: PlaySample { at_ms: now_ms, span_ms, viewers, requests, bytes_out },
            });
        }
        if s.publishing
            && !sampler.resolved.contains(&s.key)
            && let Some(v) = s.tracks.video.as_deref().and_then(|t| t.video.as_ref())
        {
            session_resolution(store, &s.key, &format!("{}*{}", v.width, v.height)).await?;
            sampler.resolved.insert(s.key.clone());
        }
    }
    // Joins of streams that ended before this tick.
    for (key, requests) in sampler.joins.drain() {
        rows.push(KeyedSample {
            key,
            sample: PlaySample { at_ms: now_ms, span_ms, viewers: 0, requests, bytes_out: 0 },
        });
    }
    sampler.last_bytes = last_bytes;
    sampler.resolved.retain(|k| streams.iter().any(|s| &s.key == k));
    for row in &rows {
        insert_sample(store, row).await?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(s: &str) -> StreamKey {
        StreamKey { domain: "d.test".into(), app: "live".into(), stream: s.into() }
    }

    #[test]
    fn stop_codes_follow_the_spec_mapping() {
        assert_eq!(stop_code(&EndReason::PublisherClosed).0, 1);
        assert_eq!(stop_code(&EndReason::PublisherLost("reset".into())).0, 12);
        assert_eq!(stop_code(&EndReason::PublisherLost("idle timeout".into())).0, 8);
        assert_eq!(stop_code(&EndReason::Stopped("dropped by DropLiveStream".into())).0, 10);
        assert_eq!(stop_code(&EndReason::Stopped("server shutting down".into())).0, 5);
    }

    /// SQLite in memory, plus PostgreSQL when `FERROCAST_TEST_PG_URL` is set (its history tables emptied first).
    async fn stores() -> Vec<Store> {
        let mut out = vec![Store::open("sqlite::memory:").await.expect("sqlite")];
        if let Ok(url) = std::env::var("FERROCAST_TEST_PG_URL") {
            let pg = Store::open(&url).await.expect("postgres");
            for t in ["push_sessions", "play_samples"] {
                sqlx::query(&format!("DELETE FROM {t}")).execute(pg.pool()).await.expect("clean");
            }
            out.push(pg);
        }
        out
    }

    #[tokio::test]
    async fn sessions_and_samples_round_trip() {
        for store in stores().await {
            round_trip(store).await;
        }
    }

    async fn round_trip(store: Store) {
        session_started(&store, &key("a"), "rtmp", "127.0.0.1", 1000).await.expect("start");
        session_resolution(&store, &key("a"), "640*360").await.expect("res");
        assert!(session_ended(&store, &key("a"), 1060, 1, "bye").await.expect("end"));
        assert!(!session_ended(&store, &key("a"), 1070, 1, "bye").await.expect("no open session"));
        session_started(&store, &key("b"), "rtmp", "10.0.0.1", 2000).await.expect("start b");
        let all = sessions_between(&store, 0, 3000).await.expect("list");
        assert_eq!(all.len(), 2);
        assert_eq!(all[0].ended_at, Some(1060));
        assert_eq!((all[0].resolution.as_str(), all[0].errcode), ("640*360", 1));
        assert_eq!(all[1].ended_at, None);
        assert_eq!(sessions_between(&store, 1100, 1900).await.expect("gap").len(), 0);
        assert_eq!(sessions_between(&store, 1050, 1100).await.expect("overlap").len(), 1);
        assert_eq!(close_stale_sessions(&store, 2500).await.expect("stale"), 1);

        let s = KeyedSample {
            key: key("a"),
            sample: PlaySample { at_ms: 5000, span_ms: 1000, viewers: 2, requests: 1, bytes_out: 12345 },
        };
        insert_sample(&store, &s).await.expect("sample");
        assert_eq!(samples_between(&store, 4000, 5000).await.expect("samples"), vec![s.clone()]);
        assert!(samples_between(&store, 5000, 6000).await.expect("samples").is_empty());
    }
}
