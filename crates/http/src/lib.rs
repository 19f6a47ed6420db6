//! The HTTP side of ferrocast: HTTP-FLV playback, `/healthz`, `/metrics`. Later issues add HLS, DASH,
//! WHIP/WHEP, the management API and the console to the same router.

mod flv;
mod hls;
mod listener;
mod sessions;
mod timeshift;

pub use listener::{ClientAddr, StallTimeoutListener};
pub use sessions::{DEFAULT_IDLE as SESSION_IDLE, SessionTracker};

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use axum::Router;
use axum::extract::{ConnectInfo, Path, Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use std::net::SocketAddr;

use ferrocast_hub::{AccessRequest, Direction, Hub, Protocol, StreamKey};

/// Options of the HTTP playback endpoints.
#[derive(Debug, Clone)]
pub struct HttpOptions {
    /// Domain used when the request names none (no `txHost`, and a Host that is an IP address or absent).
    pub default_domain: String,
    /// Value of `Access-Control-Allow-Origin` on playback responses (browser players such as mpegts.js).
    pub cors_allow_origin: String,
    /// Wait this long between writes to gather more frames per write (like SRS `mw_latency`); zero = every frame
    /// as soon as it arrives.
    pub merge_window: Duration,
    /// Most ring entries taken per write.
    pub max_batch: usize,
    /// Segment container of `.m3u8` requests that do not ask for one (`?format=ts|fmp4`).
    pub hls_default_container: ferrocast_packager::Container,
}

/// Shared state of the HTTP router.
#[derive(Clone)]
pub struct HttpState {
    /// The stream registry.
    pub hub: Hub,
    /// Endpoint options.
    pub options: Arc<HttpOptions>,
    /// Set once every listener of the process is up; `/healthz` answers 200 from then on.
    pub ready: Arc<AtomicBool>,
    /// The HLS/DASH packages; `None` when HLS is turned off.
    pub packager: Option<ferrocast_packager::Packager>,
    /// HLS/DASH players seen recently (the viewer figures of sessionless protocols).
    pub sessions: SessionTracker,
    /// Time-shift recording and playback; `None` when time shifting is turned off.
    pub timeshift: Option<ferrocast_timeshift::TimeShift>,
}

/// The router with every HTTP endpoint of this scope.
pub fn router(state: HttpState) -> Router {
    Router::new()
        .route("/healthz", get(healthz))
        .route("/metrics", get(metrics))
        .route("/{app}/{file}", get(playback))
        .route("/{app}/{stream}/hls/{variant}/{resource}", get(hls_resource))
        .route("/{app}/{stream}/timeshift/{sid}/{file}", get(timeshift_segment))
        .with_state(state)
}

/// The access check of a playback request (hotlink signature, referer, play domain); returns the stream's key
/// (the push domain's, for a play domain). The stream need not be live.
#[allow(clippy::result_large_err)]
pub(crate) fn play_access(
    state: &HttpState,
    app: &str,
    stream: &str,
    protocol: Protocol,
    query: &[(String, String)],
    client: SocketAddr,
    headers: &HeaderMap,
) -> Result<StreamKey, Response> {
    let host = query
        .iter()
        .find(|(k, _)| k == "txHost")
        .map(|(_, v)| v.as_str())
        .or_else(|| headers.get(header::HOST).and_then(|h| h.to_str().ok()));
    let domain = ferrocast_hub::resolve_domain(host, &state.options.default_domain);
    let key = StreamKey::new(&domain, app, stream);
    let referer = headers.get(header::REFERER).and_then(|h| h.to_str().ok());
    let access =
        AccessRequest { direction: Direction::Play, protocol, key: &key, params: query, client: Some(client), referer };
    if let Err(denied) = state.hub.check_access(&access) {
        tracing::warn!(
            stream = %key,
            %client,
            protocol = protocol.label(),
            kind = ?denied.kind,
            reason = %denied.reason,
            referer = referer.unwrap_or(""),
            "play refused: {}",
            denied.reason
        );
        state.hub.metrics().protocol(protocol).rejected.fetch_add(1, Ordering::Relaxed);
        return Err((StatusCode::FORBIDDEN, format!("{}\n", denied.reason)).into_response());
    }
    Ok(state.hub.playback_key(&key))
}

/// `GET /{app}/{stream}.flv|.m3u8|.mpd`.
async fn playback(
    State(state): State<HttpState>,
    Path((app, file)): Path<(String, String)>,
    Query(query): Query<Vec<(String, String)>>,
    ConnectInfo(ClientAddr(client)): ConnectInfo<ClientAddr>,
    headers: HeaderMap,
) -> Response {
    if let Some(stream) = file.strip_suffix(".m3u8") {
        return hls::playlist(state, app, stream.to_string(), query, client, headers).await;
    }
    if let Some(stream) = file.strip_suffix(".mpd") {
        return hls::mpd(state, app, stream.to_string(), query, client, headers).await;
    }
    flv::play(State(state), Path((app, file)), Query(query), ConnectInfo(ClientAddr(client)), headers).await
}

async fn hls_resource(
    State(state): State<HttpState>,
    Path(path): Path<(String, String, String, String)>,
    Query(query): Query<Vec<(String, String)>>,
    ConnectInfo(ClientAddr(client)): ConnectInfo<ClientAddr>,
    headers: HeaderMap,
) -> Response {
    hls::resource(state, path, query, client, headers).await
}

async fn timeshift_segment(
    State(state): State<HttpState>,
    Path(path): Path<(String, String, String, String)>,
    Query(query): Query<Vec<(String, String)>>,
    ConnectInfo(ClientAddr(client)): ConnectInfo<ClientAddr>,
    headers: HeaderMap,
) -> Response {
    timeshift::segment(state, path, query, client, headers).await
}

async fn healthz(State(state): State<HttpState>) -> impl IntoResponse {
    if state.ready.load(Ordering::Acquire) {
        (StatusCode::OK, "ok\n")
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, "starting\n")
    }
}

async fn metrics(State(state): State<HttpState>) -> impl IntoResponse {
    let mut out = String::with_capacity(4096);
    state.hub.metrics().render(&mut out);
    if let Some(rss) = resident_memory_bytes() {
        out.push_str("# HELP process_resident_memory_bytes Resident memory size in bytes.\n");
        out.push_str("# TYPE process_resident_memory_bytes gauge\n");
        out.push_str(&format!("process_resident_memory_bytes {rss}\n"));
    }
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], out)
}

/// The process's resident set size, from `/proc/self/statm` (Linux only).
fn resident_memory_bytes() -> Option<u64> {
    let statm = std::fs::read_to_string("/proc/self/statm").ok()?;
    let pages: u64 = statm.split_whitespace().nth(1)?.parse().ok()?;
    Some(pages * 4096)
}
