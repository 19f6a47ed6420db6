//! Push start (event 1) and push interruption (event 0) callbacks (brief §4): payloads, signatures and a durable
//! outbox worker.
//!
//! Event 1 is queued on every accepted publish (`HubEvent::Published`, resumes included), event 0 when that
//! publisher's session ends (`HubEvent::PublisherLeft`, brief §4.2 "Event timing"): the callback reports the *push*,
//! not the stream, and a stream kept alive through its grace period still had its push interrupted. Rows are written
//! to the outbox before any delivery; a worker POSTs them (only HTTP 200 counts), retrying `max_retries` times
//! `retry_interval` apart, and recomputes `t`/`sign` on each attempt. Pushes open at a crash get their event 0
//! (errcode 5) on the next start.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use ferrocast_hub::{EndReason, Hub, HubEvent, StreamKey};
use md5::{Digest, Md5};
use serde_json::{Map, Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::{Notify, broadcast};

use crate::store::{Store, StoreError};
use crate::store_callbacks::{Attempt, DueOutbox, NewOutbox, OpenPush};

/// Seconds a signature stays valid after the attempt (`t = now + 600`, as in the samples).
pub const SIGN_VALIDITY: i64 = 600;
/// Longest response body kept in an attempt record.
pub const MAX_RESPONSE_BODY: usize = 4096;

/// Delivery settings (`[callbacks]` in the server config).
#[derive(Debug, Clone)]
pub struct CallbackConfig {
    /// `appid` in payloads.
    pub appid: i64,
    /// `set_id` in payloads.
    pub set_id: i64,
    /// `idc_id` in payloads.
    pub idc_id: i64,
    /// `node` in payloads: the access point's IP.
    pub node: String,
    /// Per-attempt timeout.
    pub timeout: Duration,
    /// Time between attempts.
    pub retry_interval: Duration,
    /// Retries after the first attempt.
    pub max_retries: i64,
}

impl Default for CallbackConfig {
    fn default() -> Self {
        CallbackConfig {
            appid: 0,
            set_id: 1,
            idc_id: 0,
            node: "127.0.0.1".to_string(),
            timeout: Duration::from_secs(20),
            retry_interval: Duration::from_secs(60),
            max_retries: 12,
        }
    }
}

/// Why a delivery attempt failed before any HTTP status arrived.
#[derive(Debug, thiserror::Error)]
pub enum DeliveryError {
    /// The URL is not `http://host[:port]/path`.
    #[error("unsupported callback url `{0}` (only http:// is supported)")]
    BadUrl(String),
    /// Connecting, sending or reading failed.
    #[error("io: {0}")]
    Io(#[from] std::io::Error),
    /// No complete response within the timeout.
    #[error("timed out")]
    Timeout,
    /// The response was not HTTP.
    #[error("malformed response")]
    Malformed,
}

/// `lowerhex(MD5(key + decimal(t)))`.
pub fn sign(key: &str, t: i64) -> String {
    let digest = Md5::digest(format!("{key}{t}").as_bytes());
    digest.iter().map(|b| format!("{b:02x}")).collect()
}

/// The errcode and errmsg of event 0 for why a push ended (brief §4.1 table).
pub fn end_code(reason: &EndReason) -> (i64, &'static str) {
    const CLIENT: &str = "The push client actively stopped the push";
    const INTERNAL: &str = "The live streaming system has an internal error";
    const IDLE: &str = "The system actively stopped the push with no data for a long time";
    const NETWORK: &str = "Abnormal stream pushing link network";
    const RTMP: &str = "Abnormal RTMP protocol content";
    match reason {
        EndReason::PublisherClosed => (1, CLIENT),
        EndReason::PublisherLost(why) => {
            let why = why.to_ascii_lowercase();
            if why.contains("idle") || why.contains("no data") {
                (8, IDLE)
            } else if why.contains("protocol") || why.contains("malformed") {
                (6, RTMP)
            } else {
                (12, NETWORK)
            }
        }
        EndReason::Stopped(why) => {
            let why = why.to_ascii_lowercase();
            if why.contains("shutdown") || why.contains("shutting down") || why.contains("restart") {
                (5, INTERNAL)
            } else {
                (10, INTERNAL)
            }
        }
    }
}

/// The fields of a push known when it starts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PushInfo {
    /// The stream.
    pub key: StreamKey,
    /// Decimal u64, one per push.
    pub sequence: String,
    /// Pusher IP.
    pub user_ip: String,
    /// The push URL's query string.
    pub stream_param: String,
}

/// The event 1 body without `t` and `sign`.
pub fn start_payload(cfg: &CallbackConfig, push: &PushInfo, event_time: i64) -> Map<String, Value> {
    let v = json!({
        "app": push.key.domain,
        "appid": cfg.appid,
        "appname": push.key.app,
        "channel_id": push.key.stream,
        "errcode": 0,
        "errmsg": "ok",
        "event_time": event_time,
        "event_type": 1,
        "height": 0,
        "idc_id": cfg.idc_id,
        "node": cfg.node,
        "sequence": push.sequence,
        "set_id": cfg.set_id,
        "stream_id": push.key.stream,
        "stream_param": push.stream_param,
        "user_ip": push.user_ip,
        "width": 0,
    });
    match v {
        Value::Object(m) => m,
        _ => Map::new(),
    }
}

/// The event 0 body derived from the event 1 body.
pub fn end_payload(
    start: &Map<String, Value>,
    event_time: i64,
    duration_ms: i64,
    errcode: i64,
    errmsg: &str,
) -> Map<String, Value> {
    let mut m = start.clone();
    m.insert("event_type".into(), json!(0));
    m.insert("event_time".into(), json!(event_time));
    m.insert("errcode".into(), json!(errcode));
    m.insert("errmsg".into(), json!(errmsg));
    m.insert("push_duration".into(), json!(duration_ms.max(0).to_string()));
    m
}

/// The body of one attempt: the stored payload plus `t = now + 600` and its `sign`.
pub fn signed_body(payload: &str, key: &str, now: i64) -> String {
    let mut m: Map<String, Value> = serde_json::from_str(payload).unwrap_or_default();
    let t = now + SIGN_VALIDITY;
    m.insert("t".into(), json!(t));
    m.insert("sign".into(), json!(sign(key, t)));
    Value::Object(m).to_string()
}

/// After `attempts` failed attempts: `Some(next due ms)`, or `None` when the row has failed for good.
pub fn next_attempt(cfg: &CallbackConfig, attempts: i64, now_ms: i64) -> Option<i64> {
    if attempts > cfg.max_retries { None } else { Some(now_ms + cfg.retry_interval.as_millis() as i64) }
}

fn now_ms() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_millis() as i64).unwrap_or(0)
}

static SEQUENCE: AtomicU64 = AtomicU64::new(0);

fn new_sequence() -> String {
    let n = SEQUENCE.fetch_add(1, Ordering::Relaxed);
    let r: u64 = rand::random::<u64>() >> 1;
    (r ^ n).to_string()
}

/// Splits `http://host[:port]/path` into (host:port, host header, path).
fn parse_url(url: &str) -> Result<(String, String, String), DeliveryError> {
    let rest = url.strip_prefix("http://").ok_or_else(|| DeliveryError::BadUrl(url.to_string()))?;
    let (authority, path) = match rest.find(['/', '?']) {
        Some(i) if rest[i..].starts_with('/') => (&rest[..i], rest[i..].to_string()),
        Some(i) => (&rest[..i], format!("/{}", &rest[i..])),
        None => (rest, "/".to_string()),
    };
    if authority.is_empty() || authority.contains('@') {
        return Err(DeliveryError::BadUrl(url.to_string()));
    }
    let addr = if authority.rsplit_once(':').is_some_and(|(_, p)| p.parse::<u16>().is_ok()) {
        authority.to_string()
    } else {
        format!("{authority}:80")
    };
    Ok((addr, authority.to_string(), path))
}

/// POSTs `body` as JSON; returns (status, response body).
pub async fn post_json(url: &str, body: &str, timeout: Duration) -> Result<(u16, String), DeliveryError> {
    let (addr, host, path) = parse_url(url)?;
    let work = async {
        let mut s = TcpStream::connect(&addr).await?;
        let req = format!(
            "POST {path} HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\
             User-Agent: ferrocast\r\nConnection: close\r\n\r\n{body}",
            body.len()
        );
        s.write_all(req.as_bytes()).await?;
        let mut buf = Vec::new();
        s.read_to_end(&mut buf).await?;
        Ok::<_, DeliveryError>(buf)
    };
    let buf = tokio::time::timeout(timeout, work).await.map_err(|_| DeliveryError::Timeout)??;
    let text = String::from_utf8_lossy(&buf);
    let status = text
        .strip_prefix("HTTP/1.")
        .and_then(|r| r.get(2..5))
        .and_then(|c| c.parse::<u16>().ok())
        .ok_or(DeliveryError::Malformed)?;
    let body = text.split_once("\r\n\r\n").map(|(_, b)| b).unwrap_or("");
    let mut end = body.len().min(MAX_RESPONSE_BODY);
    while !body.is_char_boundary(end) {
        end -= 1;
    }
    Ok((status, body[..end].to_string()))
}

struct Session {
    sequence: String,
    payload: Map<String, Value>,
    started_ms: i64,
    end_url: String,
    key: String,
}

/// The callback service: turns hub events into outbox rows and delivers them.
#[derive(Debug, Clone)]
pub struct Callbacks {
    store: Store,
    config: Arc<CallbackConfig>,
    wake: Arc<Notify>,
}

impl Callbacks {
    /// A service on `store` with `config`.
    pub fn new(store: Store, config: CallbackConfig) -> Callbacks {
        Callbacks { store, config: Arc::new(config), wake: Arc::new(Notify::new()) }
    }

    /// Queues event 0 (errcode 5) for pushes left open by a previous run, then starts the event listener and the
    /// delivery worker.
    pub async fn start(self, hub: &Hub) -> Result<(), StoreError> {
        let events = hub.events();
        self.recover().await?;
        let listener = self.clone();
        tokio::spawn(async move { listener.listen(events).await });
        tokio::spawn(async move { self.deliver_loop().await });
        Ok(())
    }

    async fn recover(&self) -> Result<(), StoreError> {
        let now = crate::store::unix_now();
        for open in self.store.open_pushes().await? {
            let start: Map<String, Value> = serde_json::from_str(&open.payload).unwrap_or_default();
            let body = end_payload(
                &start,
                now,
                now * 1000 - open.started_at_ms,
                5,
                "The live streaming system has an internal error",
            );
            let row = (!open.url.is_empty()).then(|| NewOutbox {
                event_type: 0,
                url: open.url.clone(),
                callback_key: open.callback_key.clone(),
                payload: Value::Object(body).to_string(),
                domain: open.domain.clone(),
                app: open.app.clone(),
                stream: open.stream.clone(),
                sequence: open.sequence.clone(),
                event_time: now,
            });
            self.store.enqueue_callbacks(row.as_slice(), None, Some(&open.sequence)).await?;
        }
        Ok(())
    }

    async fn listen(self, mut events: broadcast::Receiver<HubEvent>) {
        let mut sessions: HashMap<StreamKey, Session> = HashMap::new();
        loop {
            let event = match events.recv().await {
                Ok(e) => e,
                Err(broadcast::error::RecvError::Lagged(n)) => {
                    tracing::warn!(missed = n, "callbacks: hub events lagged");
                    continue;
                }
                Err(broadcast::error::RecvError::Closed) => return,
            };
            let result = match event {
                HubEvent::Published { key, client, params, .. } => {
                    self.on_published(&mut sessions, key, client, &params).await
                }
                HubEvent::PublisherLeft { key, reason } => self.on_left(&mut sessions, &key, &reason).await,
                _ => Ok(()),
            };
            if let Err(e) = result {
                tracing::error!(error = %e, "callbacks: could not queue an event");
            }
            self.wake.notify_one();
        }
    }

    async fn on_published(
        &self,
        sessions: &mut HashMap<StreamKey, Session>,
        key: StreamKey,
        client: Option<std::net::SocketAddr>,
        params: &[(String, String)],
    ) -> Result<(), StoreError> {
        let Some(template) = self.store.callback_template_for(&key.domain, &key.app).await? else {
            return Ok(());
        };
        if template.stream_begin_url.is_empty() && template.stream_end_url.is_empty() {
            return Ok(());
        }
        let now = crate::store::unix_now();
        let stream_param = form_urlencoded::Serializer::new(String::new()).extend_pairs(params.iter()).finish();
        let push = PushInfo {
            key: key.clone(),
            sequence: new_sequence(),
            user_ip: client.map(|a| a.ip().to_string()).unwrap_or_default(),
            stream_param,
        };
        let payload = start_payload(&self.config, &push, now);
        let text = Value::Object(payload.clone()).to_string();
        let row = (!template.stream_begin_url.is_empty()).then(|| NewOutbox {
            event_type: 1,
            url: template.stream_begin_url.clone(),
            callback_key: template.callback_key.clone(),
            payload: text.clone(),
            domain: key.domain.clone(),
            app: key.app.clone(),
            stream: key.stream.clone(),
            sequence: push.sequence.clone(),
            event_time: now,
        });
        let open = OpenPush {
            sequence: push.sequence.clone(),
            url: template.stream_end_url.clone(),
            callback_key: template.callback_key.clone(),
            payload: text,
            domain: key.domain.clone(),
            app: key.app.clone(),
            stream: key.stream.clone(),
            started_at_ms: now_ms(),
        };
        // A publisher that replaced another without a PublisherLeft: close the old push first.
        let previous = sessions.remove(&key).map(|s| s.sequence);
        self.store.enqueue_callbacks(row.as_slice(), Some(&open), previous.as_deref()).await?;
        sessions.insert(
            key,
            Session {
                sequence: push.sequence,
                payload,
                started_ms: open.started_at_ms,
                end_url: template.stream_end_url,
                key: template.callback_key,
            },
        );
        Ok(())
    }

    async fn on_left(
        &self,
        sessions: &mut HashMap<StreamKey, Session>,
        key: &StreamKey,
        reason: &EndReason,
    ) -> Result<(), StoreError> {
        let Some(s) = sessions.remove(key) else {
            return Ok(());
        };
        let now = crate::store::unix_now();
        let (code, msg) = end_code(reason);
        let body = end_payload(&s.payload, now, now_ms() - s.started_ms, code, msg);
        let row = (!s.end_url.is_empty()).then(|| NewOutbox {
            event_type: 0,
            url: s.end_url.clone(),
            callback_key: s.key.clone(),
            payload: Value::Object(body).to_string(),
            domain: key.domain.clone(),
            app: key.app.clone(),
            stream: key.stream.clone(),
            sequence: s.sequence.clone(),
            event_time: now,
        });
        self.store.enqueue_callbacks(row.as_slice(), None, Some(&s.sequence)).await
    }

    async fn deliver_loop(self) {
        loop {
            let idle = match self.deliver_due().await {
                Ok(()) => match self.store.next_callback_due().await {
                    Ok(Some(due)) => Duration::from_millis((due - now_ms()).clamp(10, 1000) as u64),
                    Ok(None) => Duration::from_secs(1),
                    Err(_) => Duration::from_secs(1),
                },
                Err(e) => {
                    tracing::error!(error = %e, "callbacks: delivery pass failed");
                    Duration::from_secs(1)
                }
            };
            let _ = tokio::time::timeout(idle, self.wake.notified()).await;
        }
    }

    async fn deliver_due(&self) -> Result<(), StoreError> {
        let due = self.store.due_callbacks(now_ms(), 32).await?;
        let mut tasks = Vec::with_capacity(due.len());
        for row in due {
            let me = self.clone();
            tasks.push(tokio::spawn(async move { me.attempt(row).await }));
        }
        for t in tasks {
            match t.await {
                Ok(r) => r?,
                Err(e) => tracing::error!(error = %e, "callbacks: attempt task failed"),
            }
        }
        Ok(())
    }

    async fn attempt(&self, row: DueOutbox) -> Result<(), StoreError> {
        let started = now_ms();
        let body = signed_body(&row.payload, &row.callback_key, started / 1000);
        let result = post_json(&row.url, &body, self.config.timeout).await;
        let finished = now_ms();
        let attempt_no = row.attempts + 1;
        let (http_status, response_body, result_code, error) = match result {
            Ok((200, b)) => (Some(200), b, 0, None),
            Ok((s, b)) => (Some(i64::from(s)), b, i64::from(s), None),
            Err(e) => (None, String::new(), -1, Some(e.to_string())),
        };
        let (status, next) = if result_code == 0 {
            ("delivered", finished)
        } else {
            match next_attempt(&self.config, attempt_no, finished) {
                Some(n) => ("pending", n),
                None => ("failed", finished),
            }
        };
        tracing::info!(url = %row.url, attempt = attempt_no, result_code, status, "callback attempt");
        let a = Attempt {
            outbox_id: row.id,
            attempt: attempt_no,
            started_at_ms: started,
            finished_at_ms: finished,
            request_body: body,
            http_status,
            response_body,
            result_code,
            error,
        };
        self.store.record_callback_attempt(&a, status, next).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sign_vectors_from_the_brief() {
        assert_eq!(sign("mykey", 1703732078), "4dc3bb81ef31c26baf09d7e2f50a894c");
        assert_eq!(sign("5d41402abc4b2a76b9719d911017c592", 1626839220), "5ee8ca6c28cbe415b40352969cdf8249");
        assert_eq!(sign("", 1703732078), "24dbd6275672e05b8eec2338f7db9a82");
    }

    fn sample() -> (CallbackConfig, PushInfo) {
        let cfg = CallbackConfig {
            appid: 12345678,
            set_id: 2,
            idc_id: 34,
            node: "42.81.194.37".into(),
            ..CallbackConfig::default()
        };
        let push = PushInfo {
            key: StreamKey::new("test.domain.com", "live", "test_stream"),
            sequence: "2210464508206756938".into(),
            user_ip: "1.1.1.1".into(),
            stream_param: "stream_param=test".into(),
        };
        (cfg, push)
    }

    #[test]
    fn payloads_match_the_samples_field_for_field() {
        let (cfg, push) = sample();
        let start = start_payload(&cfg, &push, 1703731478);
        let body = signed_body(&Value::Object(start.clone()).to_string(), "mykey", 1703731478);
        let expected = "{\"app\":\"test.domain.com\",\"appid\":12345678,\"appname\":\"live\",\"channel_id\":\"test_stream\",\
            \"errcode\":0,\"errmsg\":\"ok\",\"event_time\":1703731478,\"event_type\":1,\"height\":0,\"idc_id\":34,\
            \"node\":\"42.81.194.37\",\"sequence\":\"2210464508206756938\",\"set_id\":2,\
            \"sign\":\"4dc3bb81ef31c26baf09d7e2f50a894c\",\"stream_id\":\"test_stream\",\
            \"stream_param\":\"stream_param=test\",\"t\":1703732078,\"user_ip\":\"1.1.1.1\",\"width\":0}";
        assert_eq!(body, expected);
        let (code, msg) = end_code(&EndReason::PublisherClosed);
        let end = end_payload(&start, 1703731606, 128581, code, msg);
        let v: Value =
            serde_json::from_str(&signed_body(&Value::Object(end).to_string(), "", 1703731606)).unwrap_or_default();
        assert_eq!(v["event_type"], 0);
        assert_eq!(v["errcode"], 1);
        assert_eq!(v["errmsg"], "The push client actively stopped the push");
        assert_eq!(v["push_duration"], "128581");
        assert_eq!(v["t"], 1703732206);
        assert_eq!(v["sequence"], "2210464508206756938");
        assert_eq!(v["sign"], sign("", 1703732206));
    }

    #[test]
    fn end_codes_follow_the_table() {
        assert_eq!(end_code(&EndReason::PublisherLost("connection reset".into())).0, 12);
        assert_eq!(end_code(&EndReason::PublisherLost("idle timeout".into())).0, 8);
        assert_eq!(end_code(&EndReason::Stopped("dropped by the API".into())).0, 10);
        assert_eq!(end_code(&EndReason::Stopped("server shutting down".into())).0, 5);
        assert_eq!(end_code(&EndReason::PublisherLost("no data for 10s".into())).0, 8);
    }

    #[test]
    fn retries_are_scheduled_until_the_limit() {
        let cfg = CallbackConfig::default();
        assert_eq!(next_attempt(&cfg, 1, 1000), Some(61_000));
        assert_eq!(next_attempt(&cfg, 12, 0), Some(60_000));
        assert_eq!(next_attempt(&cfg, 13, 0), None, "13 attempts = 1 + 12 retries");
    }

    #[test]
    fn urls_are_parsed() {
        let (a, h, p) = parse_url("http://127.0.0.1:9000/cb?x=1").unwrap_or_default();
        assert_eq!((a.as_str(), h.as_str(), p.as_str()), ("127.0.0.1:9000", "127.0.0.1:9000", "/cb?x=1"));
        let (a, _, p) = parse_url("http://example.com").unwrap_or_default();
        assert_eq!((a.as_str(), p.as_str()), ("example.com:80", "/"));
        assert!(parse_url("https://example.com/").is_err());
    }
}
