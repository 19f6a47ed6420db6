//! Time-shift playback (HLS only).
//!
//! - `GET /{app}/{stream}.m3u8?txTimeshift=on&tsStart=..&tsEnd=..[&tsFormat=..]` — a VOD playlist of exactly the
//!   stored segments covering [tsStart, tsEnd) (window ≥ one segment, ≤ 6 h).
//! - `GET /{app}/{stream}.m3u8?txTimeshift=on&tsDelay=N` — a live playlist ending N seconds behind now.
//! - `GET /{app}/{stream}/timeshift/{sid}/{seq}.ts` — one stored segment.
//!
//! Every request passes the same access check as live playback (the stream need not be live), so segment URIs
//! carry the playlist's query string without the time-shift parameters. `tsCodecname` is accepted and ignored
//! (no transcoding yet: the original stream is served). Every segment has an `EXT-X-PROGRAM-DATE-TIME` (the wall
//! clock of its first frame); a new publisher session starts after `EXT-X-DISCONTINUITY`.

use std::net::SocketAddr;

use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use bytes::Bytes;
use ferrocast_hub::Protocol;
use ferrocast_timeshift::{TimeShiftError, query};

use crate::HttpState;
use crate::hls::{OWN_PARAMS, form_urlencoded_pairs, now_ms, plain, respond};
use crate::play_access as check;
use ferrocast_formats::hls::uri_component;

fn error_response(e: &TimeShiftError) -> Response {
    let status = match e {
        TimeShiftError::BadRequest(_) => StatusCode::BAD_REQUEST,
        TimeShiftError::NotFound(_) => StatusCode::NOT_FOUND,
        _ => StatusCode::INTERNAL_SERVER_ERROR,
    };
    plain(status, e.to_string())
}

/// The query passed on to segment URIs: the request's, minus the time-shift and HLS selectors.
fn passed_query(q: &[(String, String)]) -> String {
    let kept = q.iter().filter(|(k, _)| {
        !query::OWN_PARAMS.iter().any(|p| p.eq_ignore_ascii_case(k)) && !OWN_PARAMS.contains(&k.as_str())
    });
    form_urlencoded_pairs(kept)
}

/// `GET /{app}/{stream}.m3u8?txTimeshift=on&...`.
pub(crate) async fn playlist(
    state: HttpState,
    app: String,
    stream: String,
    q: Vec<(String, String)>,
    client: SocketAddr,
    headers: HeaderMap,
) -> Response {
    let Some(ts) = state.timeshift.clone() else {
        return plain(StatusCode::NOT_FOUND, "time shifting is turned off on this server");
    };
    let key = match check(&state, &app, &stream, Protocol::Hls, &q, client, &headers) {
        Ok(k) => k,
        Err(r) => return r,
    };
    let request = match query::parse_request(&q) {
        Ok(r) => r,
        Err(e) => return plain(StatusCode::BAD_REQUEST, e.0),
    };
    let base = format!("{}/timeshift/", uri_component(&stream));
    match ts.playlist(&key, request, &base, &passed_query(&q), now_ms()).await {
        Ok(text) => {
            respond(&state, Protocol::Hls, None, "application/vnd.apple.mpegurl", "no-cache", vec![Bytes::from(text)])
        }
        Err(e) => {
            tracing::debug!(stream = %key, %client, error = %e, "time-shift playlist not served");
            error_response(&e)
        }
    }
}

/// `GET /{app}/{stream}/timeshift/{sid}/{seq}.ts`.
pub(crate) async fn segment(
    state: HttpState,
    (app, stream, sid, file): (String, String, String, String),
    q: Vec<(String, String)>,
    client: SocketAddr,
    headers: HeaderMap,
) -> Response {
    let Some(ts) = state.timeshift.clone() else {
        return plain(StatusCode::NOT_FOUND, "time shifting is turned off on this server");
    };
    let Some(seq) = file.strip_suffix(".ts").and_then(|s| s.parse::<i64>().ok()) else {
        return plain(StatusCode::NOT_FOUND, "not found");
    };
    if sid.is_empty() || !sid.bytes().all(|b| b.is_ascii_alphanumeric()) {
        return plain(StatusCode::NOT_FOUND, "not found");
    }
    let key = match check(&state, &app, &stream, Protocol::Hls, &q, client, &headers) {
        Ok(k) => k,
        Err(r) => return r,
    };
    match ts.segment(&key, &sid, seq).await {
        // Stored segments never change.
        Ok(bytes) => respond(&state, Protocol::Hls, None, "video/mp2t", "max-age=3600", vec![bytes]),
        Err(e) => {
            tracing::debug!(stream = %key, %client, error = %e, "time-shift segment not served");
            error_response(&e)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn segment_uris_drop_the_time_shift_parameters() {
        let q: Vec<(String, String)> =
            [("txTimeShift", "on"), ("tsStart", "1"), ("TSEND", "2"), ("txSecret", "ab"), ("format", "ts")]
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect();
        assert_eq!(passed_query(&q), "txSecret=ab");
    }
}
