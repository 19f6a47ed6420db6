//! HLS, LL-HLS and DASH playback over the packager's shared segments.
//!
//! - `GET /{app}/{stream}.m3u8` — media playlist. `?format=ts|fmp4` picks the container (default from the
//!   config); `?only=audio|video` the audio-only or video-only output; `_HLS_msn`/`_HLS_part` block until that
//!   segment or part exists (LL-HLS, fMP4 only).
//! - `GET /{app}/{stream}.mpd` — dynamic DASH manifest (video and audio adaptation sets).
//! - `GET /{app}/{stream}/hls/{av|a|v}/{resource}` — `init-{gen}.mp4`, `{msn}.ts`, `{msn}.m4s`,
//!   `{msn}.{part}.m4s`, `key-{id}.key`. A part or segment that is announced but not complete yet is waited for.
//!
//! Every request passes the same access check as the playlist (hotlink signature, referer, play domain), so
//! segment, part and key URLs carry the playlist's query string.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::body::Body;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use ferrocast_formats::hls::uri_component;
use ferrocast_hub::{Protocol, StreamKey};
use ferrocast_packager::{Container, Package, PackageError, Resource, Variant};

use crate::HttpState;

/// Query parameters that select what is served and are not passed on to segment URLs.
pub(crate) const OWN_PARAMS: [&str; 5] = ["format", "only", "_HLS_msn", "_HLS_part", "_HLS_skip"];

pub(crate) fn param<'a>(query: &'a [(String, String)], name: &str) -> Option<&'a str> {
    query.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str())
}

pub(crate) fn plain(status: StatusCode, text: impl Into<String>) -> Response {
    let mut text = text.into();
    text.push('\n');
    (status, text).into_response()
}

fn error_response(e: &PackageError) -> Response {
    let status = match e {
        PackageError::Gone(_) => StatusCode::NOT_FOUND,
        PackageError::TooFar(_) | PackageError::Unsupported(_) => StatusCode::BAD_REQUEST,
        PackageError::Timeout(_) | PackageError::NotReady => StatusCode::SERVICE_UNAVAILABLE,
    };
    plain(status, e.to_string())
}

/// The request's stream, checked against the access policy, and its package.
pub(crate) struct Target {
    package: Arc<Package>,
    key: StreamKey,
    client: SocketAddr,
    protocol: Protocol,
}

#[allow(clippy::result_large_err)]
pub(crate) fn target(
    state: &HttpState,
    app: &str,
    stream: &str,
    protocol: Protocol,
    query: &[(String, String)],
    client: SocketAddr,
    headers: &HeaderMap,
) -> Result<Target, Response> {
    let key = crate::play_access(state, app, stream, protocol, query, client, headers)?;
    let Some(package) = state.packager.as_ref().and_then(|p| p.get(&key)) else {
        state.hub.metrics().protocol(protocol).rejected.fetch_add(1, Ordering::Relaxed);
        return Err(plain(StatusCode::NOT_FOUND, format!("stream {key} is not live")));
    };
    Ok(Target { package, key, client, protocol })
}

impl Target {
    /// Counts the requester as a player of the stream (playlist and manifest requests: every player refreshes
    /// them, and segment requests could not tell HLS from DASH players).
    fn count_player(&self, state: &HttpState, headers: &HeaderMap) {
        let ua = headers.get(header::USER_AGENT).and_then(|v| v.to_str().ok()).unwrap_or("");
        state.sessions.touch(&self.key, self.protocol, self.client.ip(), ua);
    }

    fn respond(
        &self,
        state: &HttpState,
        content_type: &'static str,
        cache: &'static str,
        chunks: Vec<Bytes>,
    ) -> Response {
        respond(state, self.protocol, Some(&self.key), content_type, cache, chunks)
    }
}

/// A 200 response of `chunks` (one body, written without copying), counted in the protocol's and the stream's
/// bytes-out figures.
pub(crate) fn respond(
    state: &HttpState,
    protocol: Protocol,
    key: Option<&StreamKey>,
    content_type: &'static str,
    cache: &'static str,
    chunks: Vec<Bytes>,
) -> Response {
    let n: u64 = chunks.iter().map(|c| c.len() as u64).sum();
    state.hub.metrics().protocol(protocol).bytes_out.fetch_add(n, Ordering::Relaxed);
    if let Some(key) = key {
        state.hub.count_bytes_out(key, n);
    }
    let body = if chunks.len() == 1 {
        Body::from(chunks.into_iter().next().unwrap_or_default())
    } else {
        Body::from_stream(futures::stream::iter(chunks.into_iter().map(Ok::<Bytes, Infallible>)))
    };
    let mut response = Response::new(body);
    let h = response.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static(cache));
    if let Ok(v) = HeaderValue::from_str(&n.to_string()) {
        h.insert(header::CONTENT_LENGTH, v);
    }
    if let Ok(origin) = HeaderValue::from_str(&state.options.cors_allow_origin) {
        h.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, origin);
    }
    response
}

/// The query string passed on to every URI of a playlist or manifest: the request's, minus our own selectors.
fn passed_query(query: &[(String, String)]) -> String {
    let kept = query.iter().filter(|(k, _)| !OWN_PARAMS.contains(&k.as_str()));
    form_urlencoded_pairs(kept)
}

pub(crate) fn form_urlencoded_pairs<'a>(pairs: impl Iterator<Item = &'a (String, String)>) -> String {
    let mut out = String::new();
    for (k, v) in pairs {
        if !out.is_empty() {
            out.push('&');
        }
        out.push_str(&uri_component(k));
        out.push('=');
        out.push_str(&uri_component(v));
    }
    out
}

fn variant_of(query: &[(String, String)]) -> Result<Variant, String> {
    match param(query, "only") {
        None | Some("") => Ok(Variant::Both),
        Some("audio") => Ok(Variant::Audio),
        Some("video") => Ok(Variant::Video),
        Some(other) => Err(format!("only={other}: expected audio or video")),
    }
}

fn block_timeout(package: &Package) -> Duration {
    Duration::from_secs(u64::from(package.target_duration_secs()) * 3)
}

pub(crate) fn now_ms() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_millis() as i64).unwrap_or(0)
}

/// Waits (up to the blocking timeout) for a package that has no segment yet, so that a player opening a stream
/// right after the publisher started gets a playlist rather than an error.
async fn wait_first<T>(
    package: &Package,
    mut render: impl FnMut() -> Result<T, PackageError>,
) -> Result<T, PackageError> {
    let deadline = tokio::time::Instant::now() + block_timeout(package);
    // Subscribed before the first render, so a change between a render and the wait is not missed.
    let mut changes = package.changes();
    loop {
        match render() {
            Err(PackageError::NotReady) if tokio::time::Instant::now() < deadline => {
                if !matches!(tokio::time::timeout_at(deadline, changes.changed()).await, Ok(Ok(()))) {
                    return render();
                }
            }
            other => return other,
        }
    }
}

/// `GET /{app}/{stream}.m3u8`.
pub(crate) async fn playlist(
    state: HttpState,
    app: String,
    stream: String,
    query: Vec<(String, String)>,
    client: SocketAddr,
    headers: HeaderMap,
) -> Response {
    if ferrocast_timeshift::query::is_timeshift(&query) {
        return crate::timeshift::playlist(state, app, stream, query, client, headers).await;
    }
    let t = match target(&state, &app, &stream, Protocol::Hls, &query, client, &headers) {
        Ok(t) => t,
        Err(r) => return r,
    };
    let variant = match variant_of(&query) {
        Ok(v) => v,
        Err(why) => return plain(StatusCode::BAD_REQUEST, why),
    };
    let container = match param(&query, "format") {
        Some("ts") => Container::Ts,
        Some("fmp4") | Some("cmaf") => Container::Fmp4,
        None | Some("") => state.options.hls_default_container,
        Some(other) => return plain(StatusCode::BAD_REQUEST, format!("format={other}: expected ts or fmp4")),
    };
    if container == Container::Fmp4 && t.package.encrypted() {
        return plain(StatusCode::BAD_REQUEST, "this stream is AES-128 encrypted and served as TS only (format=ts)");
    }
    if let Some(msn) = param(&query, "_HLS_msn") {
        let Ok(msn) = msn.parse::<u64>() else {
            return plain(StatusCode::BAD_REQUEST, "_HLS_msn must be an integer");
        };
        let part = match param(&query, "_HLS_part").map(str::parse::<u32>) {
            None => None,
            Some(Ok(p)) => Some(p),
            Some(Err(_)) => return plain(StatusCode::BAD_REQUEST, "_HLS_part must be an integer"),
        };
        if container != Container::Fmp4 || !state.packager.as_ref().is_some_and(|p| p.config().low_latency) {
            return plain(StatusCode::BAD_REQUEST, "blocking playlist reload needs a low-latency (fmp4) playlist");
        }
        if let Err(e) = t.package.wait_for(msn, part, block_timeout(&t.package)).await {
            return error_response(&e);
        }
    }
    t.count_player(&state, &headers);
    let q = passed_query(&query);
    match wait_first(&t.package, || t.package.playlist(variant, container, &q)).await {
        Ok(text) => t.respond(&state, "application/vnd.apple.mpegurl", "no-cache", vec![Bytes::from(text)]),
        Err(e) => {
            tracing::debug!(stream = %t.key, client = %t.client, error = %e, "hls playlist not served");
            error_response(&e)
        }
    }
}

/// `GET /{app}/{stream}.mpd`.
pub(crate) async fn mpd(
    state: HttpState,
    app: String,
    stream: String,
    query: Vec<(String, String)>,
    client: SocketAddr,
    headers: HeaderMap,
) -> Response {
    let t = match target(&state, &app, &stream, Protocol::Dash, &query, client, &headers) {
        Ok(t) => t,
        Err(r) => return r,
    };
    if t.package.encrypted() {
        return plain(StatusCode::BAD_REQUEST, "this stream is AES-128 encrypted and served as HLS (TS) only");
    }
    let variant = match variant_of(&query) {
        Ok(v) => v,
        Err(why) => return plain(StatusCode::BAD_REQUEST, why),
    };
    t.count_player(&state, &headers);
    let q = passed_query(&query);
    match wait_first(&t.package, || t.package.mpd(&q, now_ms(), variant)).await {
        Ok(text) => t.respond(&state, "application/dash+xml", "no-cache", vec![Bytes::from(text)]),
        Err(e) => error_response(&e),
    }
}

/// `GET /{app}/{stream}/hls/{variant}/{resource}`.
pub(crate) async fn resource(
    state: HttpState,
    (app, stream, variant, name): (String, String, String, String),
    query: Vec<(String, String)>,
    client: SocketAddr,
    headers: HeaderMap,
) -> Response {
    let Some(variant) = Variant::from_path(&variant) else {
        return plain(StatusCode::NOT_FOUND, "not found");
    };
    let t = match target(&state, &app, &stream, Protocol::Hls, &query, client, &headers) {
        Ok(t) => t,
        Err(r) => return r,
    };
    let Some(res) = t.package.resource(&name) else {
        return plain(StatusCode::NOT_FOUND, "not found");
    };
    let p = &t.package;
    let wait = block_timeout(p);
    let result = match res {
        Resource::Init(g) => p.init(g, variant).map(|b| ("video/mp4", vec![b])),
        Resource::Ts(msn) => p.segment_ts(msn, variant).map(|b| ("video/mp2t", vec![b])),
        Resource::Segment(msn) => match p.wait_for(msn, None, wait).await {
            Ok(()) => match p.segment(msn) {
                Some(seg) => seg.fmp4(variant).map(|c| ("video/iso.segment", c)),
                None => Err(PackageError::Gone(format!("segment {msn}"))),
            },
            Err(e) => Err(e),
        },
        Resource::Part(msn, i) => match p.wait_for(msn, Some(i), wait).await {
            Ok(()) => match p.part(msn, i) {
                Some(part) => part.fmp4(variant).map(|c| ("video/iso.segment", c.to_vec())),
                None => Err(PackageError::Gone(format!("part {msn}.{i}"))),
            },
            Err(e) => Err(e),
        },
        Resource::Key(id) => match p.key_by_id(id) {
            Some(k) => Ok(("application/octet-stream", vec![Bytes::copy_from_slice(&k.key)])),
            None => Err(PackageError::Gone(format!("key {id}"))),
        },
    };
    match result {
        // Segments never change once made; keys and parts neither. Players may cache them.
        Ok((content_type, chunks)) => t.respond(&state, content_type, "max-age=60", chunks),
        Err(e) => {
            tracing::debug!(stream = %t.key, client = %t.client, resource = %name, error = %e, "hls resource not served");
            error_response(&e)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn own_parameters_are_not_passed_on() {
        let q: Vec<(String, String)> = [("txSecret", "ab"), ("_HLS_msn", "3"), ("format", "fmp4"), ("txTime", "6 7")]
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        assert_eq!(passed_query(&q), "txSecret=ab&txTime=6%207");
    }
}
