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
use std::time::Duration;

use ferrocast_hub::{EndReason, Hub, HubEvent, StreamKey};
use md5::{Digest, Md5};
use serde_json::{Map, Value, json};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::{Notify, broadcast};

use crate::store::{Store, StoreError, unix_now_ms};
use crate::store_callbacks::{Attempt, DueOutbox, NewOutbox, OpenPush};

/// Seconds a signature stays valid after the attempt (`t = now + 600`, as in the samples).
pub const SIGN_VALIDITY: i64 = 600;
/// How often old delivery records are pruned.
const PRUNE_EVERY: Duration = Duration::from_secs(3600);
/// How long a claimed row stays leased beyond the attempt timeout.
const LEASE_MARGIN_MS: i64 = 10_000;
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
    /// Delivered and failed rows older than this are deleted (DescribeCallbackRecordsList covers 14 days).
    pub record_retention: Duration,
    /// Trust for `https://` callback URLs (see [`tls_client_config`]).
    pub tls: Arc<rustls::ClientConfig>,
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
            record_retention: Duration::from_secs(14 * 86_400),
            tls: Arc::new(tls_client_config(&[])),
        }
    }
}

/// A TLS client configuration trusting the public web PKI (Mozilla's roots, built in) plus `extra_roots`
/// (DER certificates, e.g. a private CA from `[callbacks] ca_file`).
pub fn tls_client_config(extra_roots: &[rustls::pki_types::CertificateDer<'static>]) -> rustls::ClientConfig {
    let mut roots = rustls::RootCertStore { roots: webpki_roots::TLS_SERVER_ROOTS.to_vec() };
    let (added, ignored) = roots.add_parsable_certificates(extra_roots.iter().cloned());
    if ignored > 0 {
        tracing::warn!(added, ignored, "callbacks: some CA certificates could not be used");
    }
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    match rustls::ClientConfig::builder_with_provider(provider).with_safe_default_protocol_versions() {
        Ok(b) => b.with_root_certificates(roots).with_no_client_auth(),
        // The built-in provider always supports the default versions; fall back to the process default.
        Err(_) => rustls::ClientConfig::builder()
            .with_root_certificates(Arc::new(rustls::RootCertStore::empty()))
            .with_no_client_auth(),
    }
}

/// Reads every PEM certificate in `path`, for [`tls_client_config`].
pub fn read_ca_file(path: &std::path::Path) -> std::io::Result<Vec<rustls::pki_types::CertificateDer<'static>>> {
    let mut reader = std::io::BufReader::new(std::fs::File::open(path)?);
    let certs: Vec<_> = rustls_pemfile::certs(&mut reader).collect::<Result<_, _>>()?;
    if certs.is_empty() {
        return Err(std::io::Error::new(std::io::ErrorKind::InvalidData, "no PEM certificate in the file"));
    }
    Ok(certs)
}

/// Why a delivery attempt failed before any HTTP status arrived.
#[derive(Debug, thiserror::Error)]
pub enum DeliveryError {
    /// The URL is not `http[s]://host[:port]/path`.
    #[error("unsupported callback url `{0}` (http:// or https:// with a host)")]
    BadUrl(String),
    /// The TLS handshake with an `https://` receiver failed (untrusted certificate, wrong name, ...).
    #[error("tls: {0}")]
    Tls(std::io::Error),
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
    /// Picture width, 0 when the push carried no video header in time.
    pub width: u32,
    /// Picture height, 0 when the push carried no video header in time.
    pub height: u32,
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
        "height": push.height,
        "idc_id": cfg.idc_id,
        "node": cfg.node,
        "sequence": push.sequence,
        "set_id": cfg.set_id,
        "stream_id": push.key.stream,
        "stream_param": push.stream_param,
        "user_ip": push.user_ip,
        "width": push.width,
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

/// The `stream_param` of callbacks: the push URL's query parameters, form-encoded again.
pub fn stream_param(params: &[(String, String)]) -> String {
    form_urlencoded::Serializer::new(String::new()).extend_pairs(params.iter()).finish()
}

/// After `attempts` failed attempts: `Some(next due ms)`, or `None` when the row has failed for good.
pub fn next_attempt(cfg: &CallbackConfig, attempts: i64, now_ms: i64) -> Option<i64> {
    if attempts > cfg.max_retries { None } else { Some(now_ms + cfg.retry_interval.as_millis() as i64) }
}

static SEQUENCE: AtomicU64 = AtomicU64::new(0);

fn new_sequence() -> String {
    let n = SEQUENCE.fetch_add(1, Ordering::Relaxed);
    let r: u64 = rand::random::<u64>() >> 1;
    (r ^ n).to_string()
}

/// Where a callback URL points.
#[derive(Debug, PartialEq, Eq)]
struct Target {
    tls: bool,
    /// `host:port` to connect to.
    addr: String,
    /// The host without the port (TLS server name).
    host: String,
    /// The `Host` header.
    authority: String,
    /// Path and query.
    path: String,
}

/// Splits `http[s]://host[:port]/path`.
fn parse_url(url: &str) -> Result<Target, DeliveryError> {
    let bad = || DeliveryError::BadUrl(url.to_string());
    let (tls, rest) = if let Some(r) = url.strip_prefix("http://") {
        (false, r)
    } else if let Some(r) = url.strip_prefix("https://") {
        (true, r)
    } else {
        return Err(bad());
    };
    let (authority, path) = match rest.find(['/', '?']) {
        Some(i) if rest[i..].starts_with('/') => (&rest[..i], rest[i..].to_string()),
        Some(i) => (&rest[..i], format!("/{}", &rest[i..])),
        None => (rest, "/".to_string()),
    };
    if authority.is_empty() || authority.contains('@') {
        return Err(bad());
    }
    let port = if tls { 443 } else { 80 };
    let (host, explicit_port) = if let Some(v6) = authority.strip_prefix('[') {
        let (h, after) = v6.split_once(']').ok_or_else(bad)?;
        match after.strip_prefix(':') {
            Some(p) => (h, Some(p.parse::<u16>().map_err(|_| bad())?)),
            None if after.is_empty() => (h, None),
            None => return Err(bad()),
        }
    } else {
        match authority.rsplit_once(':') {
            Some((h, p)) => (h, Some(p.parse::<u16>().map_err(|_| bad())?)),
            None => (authority, None),
        }
    };
    let host = host.to_string();
    let addr = match explicit_port {
        Some(_) => authority.to_string(),
        None => format!("{authority}:{port}"),
    };
    if host.is_empty() {
        return Err(bad());
    }
    Ok(Target { tls, addr, host, authority: authority.to_string(), path })
}

/// POSTs `body` as JSON over HTTP/1.1 (TLS for `https://`, trusting `tls`); returns (status, response body).
pub async fn post_json(
    url: &str,
    body: &str,
    timeout: Duration,
    tls: &Arc<rustls::ClientConfig>,
) -> Result<(u16, String), DeliveryError> {
    let target = parse_url(url)?;
    let req = format!(
        "POST {} HTTP/1.1\r\nHost: {}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\
         User-Agent: ferrocast\r\nConnection: close\r\n\r\n{body}",
        target.path,
        target.authority,
        body.len()
    );
    let work = async {
        let tcp = TcpStream::connect(&target.addr).await?;
        if target.tls {
            let name = rustls::pki_types::ServerName::try_from(target.host.clone())
                .map_err(|_| DeliveryError::BadUrl(url.to_string()))?;
            let connector = tokio_rustls::TlsConnector::from(tls.clone());
            let s = connector.connect(name, tcp).await.map_err(DeliveryError::Tls)?;
            exchange(s, req.as_bytes()).await
        } else {
            exchange(tcp, req.as_bytes()).await
        }
    };
    let buf = tokio::time::timeout(timeout, work).await.map_err(|_| DeliveryError::Timeout)??;
    parse_response(&buf)
}

/// Writes the request and reads the response until the receiver closes (`Connection: close`).
async fn exchange<S: AsyncRead + AsyncWrite + Unpin>(mut s: S, req: &[u8]) -> Result<Vec<u8>, DeliveryError> {
    s.write_all(req).await?;
    s.flush().await?;
    let mut buf = Vec::new();
    // Receivers that close without a TLS close_notify are common; what was read before still counts.
    match s.read_to_end(&mut buf).await {
        Ok(_) => Ok(buf),
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof && !buf.is_empty() => Ok(buf),
        Err(e) => Err(e.into()),
    }
}

/// The status code and (at most [`MAX_RESPONSE_BODY`] bytes of) the body of an HTTP/1.x response.
fn parse_response(buf: &[u8]) -> Result<(u16, String), DeliveryError> {
    let text = String::from_utf8_lossy(buf);
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

/// How long event 1 waits for the push's video header, so that `width`/`height` are filled in. RTMP encoders send
/// it right after `publish`; a push without video is sent after this wait (or after ~1 s of audio).
const START_WAIT: Duration = Duration::from_secs(3);
/// How often waiting pushes are checked for their header.
const START_POLL: Duration = Duration::from_millis(50);

/// A push whose event 1 waits for its video header.
struct PendingStart {
    push: PushInfo,
    event_time: i64,
    started_ms: i64,
    deadline: tokio::time::Instant,
    template: crate::store_callbacks::CallbackTemplate,
}

/// The picture size of a stream's video track, once its header has been parsed.
fn video_size(s: &ferrocast_hub::StreamSummary) -> Option<(u32, u32)> {
    s.tracks.video.as_ref().and_then(|v| v.video.as_ref()).map(|v| (v.width, v.height))
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

    /// The delivery settings (`appid` etc. for payloads built elsewhere).
    pub fn config(&self) -> &CallbackConfig {
        &self.config
    }

    /// Queues an event raised outside the push lifecycle (recording 100/332/341, screenshot 200) for the URL the
    /// stream's callback template has for that event type, and wakes the delivery worker. `sequence` groups the
    /// rows of one recording or screenshot job in DescribeCallbackRecordsList. For event 341 the template's
    /// `RecordExceptionLevels` filter applies (`alarm`, the SDK's word, matches `warning`). Returns whether a
    /// row was queued.
    #[allow(clippy::too_many_arguments)]
    pub async fn queue_event(
        &self,
        event_type: i64,
        domain: &str,
        app: &str,
        stream: &str,
        sequence: &str,
        level: &str,
        payload: Map<String, Value>,
    ) -> Result<bool, StoreError> {
        let Some(t) = self.store.callback_template_for(domain, app).await? else { return Ok(false) };
        let url = match event_type {
            100 => &t.record_url,
            200 => &t.snapshot_url,
            332 => &t.record_status_url,
            341 => {
                let levels: Vec<String> = serde_json::from_str(&t.record_exception_levels).unwrap_or_default();
                let wanted = levels.is_empty()
                    || levels.iter().any(|l| l.eq_ignore_ascii_case(level) || (l == "alarm" && level == "warning"));
                if !wanted {
                    return Ok(false);
                }
                &t.record_exception_url
            }
            _ => return Ok(false),
        };
        if url.is_empty() {
            return Ok(false);
        }
        let row = NewOutbox {
            event_type,
            url: url.clone(),
            callback_key: t.callback_key.clone(),
            payload: Value::Object(payload).to_string(),
            domain: domain.to_string(),
            app: app.to_string(),
            stream: stream.to_string(),
            sequence: sequence.to_string(),
            event_time: crate::store::unix_now(),
        };
        self.store.enqueue_callbacks(std::slice::from_ref(&row), None, None).await?;
        self.wake.notify_one();
        Ok(true)
    }

    /// Queues event 0 (errcode 5) for pushes left open by a previous run, then starts the event listener and the
    /// delivery worker.
    pub async fn start(self, hub: &Hub) -> Result<(), StoreError> {
        let events = hub.events();
        self.recover().await?;
        let listener = self.clone();
        let hub = hub.clone();
        tokio::spawn(async move { listener.listen(hub, events).await });
        tokio::spawn(async move { self.deliver_loop().await });
        Ok(())
    }

    async fn recover(&self) -> Result<(), StoreError> {
        let now = crate::store::unix_now();
        for open in self.store.open_pushes(&self.config.node).await? {
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

    async fn listen(self, hub: Hub, mut events: broadcast::Receiver<HubEvent>) {
        let mut sessions: HashMap<StreamKey, Session> = HashMap::new();
        let mut pending: HashMap<StreamKey, PendingStart> = HashMap::new();
        loop {
            let tick = if pending.is_empty() { Duration::from_secs(3600) } else { START_POLL };
            let received = tokio::select! {
                r = events.recv() => Some(r),
                _ = tokio::time::sleep(tick) => None,
            };
            let result = match received {
                None => self.start_ready(&hub, &mut sessions, &mut pending, false).await,
                Some(Err(broadcast::error::RecvError::Lagged(n))) => {
                    tracing::warn!(missed = n, "callbacks: hub events lagged");
                    continue;
                }
                Some(Err(broadcast::error::RecvError::Closed)) => return,
                Some(Ok(HubEvent::Published { key, client, params, .. })) => {
                    // A publisher that replaced one still waiting for its header: that push started too.
                    if let Some(p) = pending.remove(&key) {
                        self.commit_start(&mut sessions, p, None).await.ok();
                    }
                    self.on_published(&mut pending, key, client, &params).await
                }
                Some(Ok(HubEvent::PublisherLeft { key, reason })) => {
                    if let Some(p) = pending.remove(&key) {
                        let dims = hub.stream(&key).and_then(|s| video_size(&s));
                        self.commit_start(&mut sessions, p, dims).await.ok();
                    }
                    self.on_left(&mut sessions, &key, &reason).await
                }
                Some(Ok(_)) => Ok(()),
            };
            if let Err(e) = result {
                tracing::error!(error = %e, "callbacks: could not queue an event");
            }
            self.wake.notify_one();
        }
    }

    /// Queues event 1 for every waiting push whose video header has arrived (or whose wait is over).
    async fn start_ready(
        &self,
        hub: &Hub,
        sessions: &mut HashMap<StreamKey, Session>,
        pending: &mut HashMap<StreamKey, PendingStart>,
        all: bool,
    ) -> Result<(), StoreError> {
        let now = tokio::time::Instant::now();
        let ready: Vec<(StreamKey, Option<(u32, u32)>)> = pending
            .iter()
            .filter_map(|(key, p)| {
                let summary = hub.stream(key);
                let dims = summary.as_ref().and_then(video_size);
                let audio_only = summary.as_ref().is_some_and(|s| s.tracks.video.is_none() && s.audio_frames >= 50);
                (all || dims.is_some() || audio_only || now >= p.deadline).then(|| (key.clone(), dims))
            })
            .collect();
        for (key, dims) in ready {
            if let Some(p) = pending.remove(&key) {
                self.commit_start(sessions, p, dims).await?;
            }
        }
        Ok(())
    }

    async fn on_published(
        &self,
        pending: &mut HashMap<StreamKey, PendingStart>,
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
        let stream_param = stream_param(params);
        let push = PushInfo {
            key: key.clone(),
            sequence: new_sequence(),
            user_ip: client.map(|a| a.ip().to_string()).unwrap_or_default(),
            stream_param,
            width: 0,
            height: 0,
        };
        let start = PendingStart {
            push,
            event_time: crate::store::unix_now(),
            started_ms: unix_now_ms(),
            deadline: tokio::time::Instant::now() + START_WAIT,
            template,
        };
        pending.insert(key, start);
        Ok(())
    }

    /// Writes event 1 (if the template has a start URL) and the open-push record in one transaction.
    async fn commit_start(
        &self,
        sessions: &mut HashMap<StreamKey, Session>,
        start: PendingStart,
        dims: Option<(u32, u32)>,
    ) -> Result<(), StoreError> {
        let PendingStart { mut push, event_time, started_ms, template, .. } = start;
        if let Some((w, h)) = dims {
            (push.width, push.height) = (w, h);
        }
        let key = push.key.clone();
        let payload = start_payload(&self.config, &push, event_time);
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
            event_time,
        });
        let open = OpenPush {
            sequence: push.sequence.clone(),
            url: template.stream_end_url.clone(),
            callback_key: template.callback_key.clone(),
            payload: text,
            domain: key.domain.clone(),
            app: key.app.clone(),
            stream: key.stream.clone(),
            started_at_ms: started_ms,
            node: self.config.node.clone(),
        };
        // A publisher that replaced another without a PublisherLeft: close the old push first.
        let previous = sessions.remove(&key).map(|s| s.sequence);
        self.store.enqueue_callbacks(row.as_slice(), Some(&open), previous.as_deref()).await?;
        sessions.insert(
            key,
            Session {
                sequence: push.sequence,
                payload,
                started_ms,
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
        let body = end_payload(&s.payload, now, unix_now_ms() - s.started_ms, code, msg);
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
        let mut next_prune = tokio::time::Instant::now();
        loop {
            if tokio::time::Instant::now() >= next_prune {
                next_prune += PRUNE_EVERY;
                let before = crate::store::unix_now() - self.config.record_retention.as_secs() as i64;
                match self.store.prune_callbacks(before).await {
                    Ok(0) => {}
                    Ok(n) => tracing::info!(rows = n, "callbacks: pruned old delivery records"),
                    Err(e) => tracing::error!(error = %e, "callbacks: pruning failed"),
                }
            }
            let idle = match self.deliver_due().await {
                Ok(()) => match self.store.next_callback_due().await {
                    Ok(Some(due)) => Duration::from_millis((due - unix_now_ms()).clamp(10, 1000) as u64),
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
        let now = unix_now_ms();
        // The lease outlasts one attempt, so no other node takes the row while this one is still trying.
        let lease_until = now + self.config.timeout.as_millis() as i64 + LEASE_MARGIN_MS;
        let due = self.store.claim_due_callbacks(now, lease_until, 32).await?;
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
        let started = unix_now_ms();
        let body = signed_body(&row.payload, &row.callback_key, started / 1000);
        let result = post_json(&row.url, &body, self.config.timeout, &self.config.tls).await;
        let finished = unix_now_ms();
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
            width: 0,
            height: 0,
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
        let t = parse_url("http://127.0.0.1:9000/cb?x=1").expect("http");
        assert_eq!(
            (t.tls, t.addr.as_str(), t.authority.as_str(), t.path.as_str()),
            (false, "127.0.0.1:9000", "127.0.0.1:9000", "/cb?x=1")
        );
        let t = parse_url("http://example.com").expect("no path");
        assert_eq!((t.addr.as_str(), t.path.as_str()), ("example.com:80", "/"));
        assert!(parse_url("http://example.com:99999/").is_err());
        let t = parse_url("https://example.com/cb?x=1").expect("https");
        assert_eq!(
            (t.tls, t.addr.as_str(), t.host.as_str(), t.path.as_str()),
            (true, "example.com:443", "example.com", "/cb?x=1")
        );
        let t = parse_url("https://[::1]:8443/cb").expect("ipv6");
        assert_eq!((t.addr.as_str(), t.host.as_str(), t.authority.as_str()), ("[::1]:8443", "::1", "[::1]:8443"));
        assert!(parse_url("ftp://example.com/").is_err());
        assert!(parse_url("https:///x").is_err());
    }
}
