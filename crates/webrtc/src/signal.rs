//! WHIP/WHEP signalling over HTTP (RFC 9725 and the WHEP draft).
//!
//! | method | path | what |
//! | --- | --- | --- |
//! | `POST` | `/whep/{app}/{stream}` | SDP offer in, `201 Created` + `Location` + SDP answer out |
//! | `POST` | `/whip/{app}/{stream}` | the same for a publisher |
//! | `POST` | `/whip` | OBS form: the stream comes from the Bearer token `webrtc://domain/app/stream?txSecret=..` |
//! | `DELETE` | `/whip/{app}/{stream}/{session}`, `/whep/...` | ends the session |
//! | `PATCH` | the session URL | trickle ICE (`application/trickle-ice-sdpfrag`, RFC 8840): `204`; an ICE restart (another ufrag): `422` |
//! | `OPTIONS` | every path | CORS preflight |

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Instant;

use axum::Router;
use axum::extract::{ConnectInfo, Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{any, post};
use ferrocast_http::ClientAddr;
use ferrocast_hub::{
    AccessRequest, Direction, EntryKind, Protocol, PublishError, PublishRequest, StreamKey, SubscriberOptions,
};
use ferrocast_media::{Codec, MediaType};
use rand::Rng;
use str0m::change::SdpOffer;
use str0m::{Candidate, Rtc};
use tokio::sync::mpsc;

use crate::session::{self, Core, Play, Publish};
use crate::{OpusFeed, WebRtc};

/// The WHIP/WHEP routes, to merge into the HTTP router.
pub fn router(rtc: WebRtc) -> Router {
    Router::new()
        .route("/whep/{app}/{stream}", post(whep).options(preflight))
        .route("/whip/{app}/{stream}", post(whip).options(preflight))
        .route("/whip", post(whip_token).options(preflight))
        .route("/whep/{app}/{stream}/{session}", any(resource))
        .route("/whip/{app}/{stream}/{session}", any(resource))
        .with_state(rtc)
}

/// A refusal with its HTTP status.
#[derive(Debug, thiserror::Error)]
enum SignalError {
    #[error("{0}")]
    BadRequest(String),
    #[error("{0}")]
    Forbidden(String),
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    Conflict(String),
    #[error("{0}")]
    Unprocessable(String),
    #[error("{0}")]
    Unsupported(String),
    #[error("{0}")]
    Unavailable(String),
}

impl SignalError {
    fn status(&self) -> StatusCode {
        match self {
            SignalError::BadRequest(_) => StatusCode::BAD_REQUEST,
            SignalError::Forbidden(_) => StatusCode::FORBIDDEN,
            SignalError::NotFound(_) => StatusCode::NOT_FOUND,
            SignalError::Conflict(_) => StatusCode::CONFLICT,
            SignalError::Unprocessable(_) => StatusCode::UNPROCESSABLE_ENTITY,
            SignalError::Unsupported(_) => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            SignalError::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
        }
    }
}

fn cors(rtc: &WebRtc, h: &mut HeaderMap) {
    if let Ok(origin) = HeaderValue::from_str(&rtc.inner.config.cors_allow_origin) {
        h.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, origin);
    }
    h.insert(header::ACCESS_CONTROL_ALLOW_METHODS, HeaderValue::from_static("POST, DELETE, PATCH, OPTIONS"));
    h.insert(header::ACCESS_CONTROL_ALLOW_HEADERS, HeaderValue::from_static("Authorization, Content-Type, If-Match"));
    h.insert(header::ACCESS_CONTROL_EXPOSE_HEADERS, HeaderValue::from_static("Location, Accept-Patch, Link"));
}

fn text(rtc: &WebRtc, status: StatusCode, body: String) -> Response {
    let mut r = (status, body).into_response();
    cors(rtc, r.headers_mut());
    r
}

async fn preflight(State(rtc): State<WebRtc>) -> Response {
    text(&rtc, StatusCode::NO_CONTENT, String::new())
}

/// The stream, domain and parameters a Bearer token names: a full `webrtc://domain/app/stream?query` URL (how
/// OBS is configured for the service) or just a query string.
#[derive(Debug, Default, PartialEq)]
struct Token {
    host: Option<String>,
    app: Option<String>,
    stream: Option<String>,
    params: Vec<(String, String)>,
}

fn parse_token(headers: &HeaderMap) -> Token {
    let Some(value) = headers.get(header::AUTHORIZATION).and_then(|v| v.to_str().ok()) else {
        return Token::default();
    };
    let token = value.trim();
    let token = token.strip_prefix("Bearer ").or_else(|| token.strip_prefix("bearer ")).unwrap_or(token).trim();
    parse_token_str(token)
}

fn parse_token_str(token: &str) -> Token {
    let mut t = Token::default();
    let (before, query) = match token.split_once('?') {
        Some((b, q)) => (b, q),
        None if token.contains('=') && !token.contains("://") => ("", token),
        None => (token, ""),
    };
    t.params = form_urlencoded::parse(query.as_bytes()).map(|(k, v)| (k.into_owned(), v.into_owned())).collect();
    if let Some((_, rest)) = before.split_once("://") {
        let mut parts = rest.split('/');
        t.host = parts.next().filter(|h| !h.is_empty()).map(str::to_string);
        let path: Vec<&str> = parts.filter(|p| !p.is_empty()).collect();
        if path.len() >= 2 {
            t.app = Some(path[..path.len() - 1].join("/"));
            t.stream = Some(path[path.len() - 1].to_string());
        }
    }
    t
}

/// Everything an offer needs: who, which stream, the query.
struct Target {
    key: StreamKey,
    params: Vec<(String, String)>,
}

fn target(
    rtc: &WebRtc,
    app: Option<String>,
    stream: Option<String>,
    query: Vec<(String, String)>,
    headers: &HeaderMap,
) -> Result<Target, SignalError> {
    let token = parse_token(headers);
    let mut params = query;
    for (k, v) in token.params {
        if !params.iter().any(|(pk, _)| *pk == k) {
            params.push((k, v));
        }
    }
    let (app, stream) = match (app.or(token.app), stream.or(token.stream)) {
        (Some(a), Some(s)) => (a, s),
        _ => {
            return Err(SignalError::BadRequest(
                "no stream: POST to /whip/{app}/{stream}, or send the push URL webrtc://domain/app/stream?txSecret=..&txTime=.. as the Bearer token".into(),
            ));
        }
    };
    let tx_host = params.iter().find(|(k, _)| k == "txHost").map(|(_, v)| v.clone());
    let header_host = headers.get(header::HOST).and_then(|h| h.to_str().ok()).map(str::to_string);
    let host = tx_host.or(token.host).or(header_host);
    let domain = ferrocast_hub::resolve_domain(host.as_deref(), &rtc.inner.config.default_domain);
    Ok(Target { key: StreamKey::new(&domain, &app, &stream), params })
}

fn check(
    rtc: &WebRtc,
    direction: Direction,
    t: &Target,
    client: SocketAddr,
    headers: &HeaderMap,
) -> Result<(), SignalError> {
    let referer = headers.get(header::REFERER).and_then(|h| h.to_str().ok());
    let access = AccessRequest {
        direction,
        protocol: Protocol::WebRtc,
        key: &t.key,
        params: &t.params,
        client: Some(client),
        referer,
    };
    rtc.inner.hub.check_access(&access).map_err(|denied| {
        tracing::warn!(stream = %t.key, %client, protocol = "webrtc", direction = direction.label(), kind = ?denied.kind,
            reason = %denied.reason, "{} refused: {}", direction.label(), denied.reason);
        SignalError::Forbidden(denied.reason)
    })
}

/// A new `Rtc` with our candidates that accepted `offer`: the answer SDP and the local ICE ufrag. Opus, H.264
/// and, when `others`, H.265, AV1 and VP8 (str0m 0.25 packetizes and depacketizes all of them).
fn accept(rtc: &WebRtc, offer: &str, others: bool) -> Result<(Rtc, String, String), SignalError> {
    let offer = SdpOffer::from_sdp_string(offer).map_err(|e| SignalError::BadRequest(format!("bad SDP offer: {e}")))?;
    let mut r = Rtc::builder()
        .set_ice_lite(true)
        .clear_codecs()
        .enable_h264(true)
        .enable_h265(others)
        .enable_av1(others)
        .enable_vp8(others)
        .enable_opus(true, false)
        .build(Instant::now());
    for c in &rtc.inner.candidates {
        match Candidate::host(*c, "udp") {
            Ok(c) => {
                r.add_local_candidate(c);
            }
            Err(e) => tracing::warn!(candidate = %c, error = %e, "webrtc: unusable candidate"),
        }
    }
    for c in &rtc.inner.tcp_candidates {
        match Candidate::builder().tcp().host(*c).tcptype(str0m::net::TcpType::Passive).build() {
            Ok(c) => {
                r.add_local_candidate(c);
            }
            Err(e) => tracing::warn!(candidate = %c, error = %e, "webrtc: unusable ice-tcp candidate"),
        }
    }
    let answer =
        r.sdp_api().accept_offer(offer).map_err(|e| SignalError::BadRequest(format!("SDP offer refused: {e}")))?;
    let ufrag = r.direct_api().local_ice_credentials().ufrag;
    Ok((r, answer.to_sdp_string(), ufrag))
}

/// The SDP `rtpmap` encoding name of a video codec WebRTC can carry here.
fn rtpmap_name(codec: Codec) -> Option<&'static str> {
    match codec {
        Codec::H264 => Some("H264"),
        Codec::H265 => Some("H265"),
        Codec::Av1 => Some("AV1"),
        Codec::Vp8 => Some("VP8"),
        _ => None,
    }
}

fn codec_label(codec: Codec) -> &'static str {
    match codec {
        Codec::H264 => "H.264",
        Codec::H265 => "H.265",
        Codec::Av1 => "AV1",
        Codec::Vp8 => "VP8",
        other => other.name(),
    }
}

fn session_id() -> String {
    let v: u128 = rand::thread_rng().r#gen();
    format!("{v:032x}")
}

fn created(rtc: &WebRtc, location: String, answer: String) -> Response {
    let mut r = (StatusCode::CREATED, answer).into_response();
    let h = r.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static("application/sdp"));
    if let Ok(l) = HeaderValue::from_str(&location) {
        h.insert(header::LOCATION, l);
    }
    cors(rtc, h);
    r
}

fn refuse(rtc: &WebRtc, what: &str, key: Option<&StreamKey>, client: SocketAddr, e: SignalError) -> Response {
    rtc.inner.hub.metrics().protocol(Protocol::WebRtc).rejected.fetch_add(1, Ordering::Relaxed);
    let stream = key.map(|k| k.to_string()).unwrap_or_default();
    tracing::info!(%stream, %client, protocol = "webrtc", status = e.status().as_u16(), "{what} refused: {e}");
    text(rtc, e.status(), format!("{e}\n"))
}

async fn whep(
    State(rtc): State<WebRtc>,
    Path((app, stream)): Path<(String, String)>,
    Query(query): Query<Vec<(String, String)>>,
    ConnectInfo(ClientAddr(client)): ConnectInfo<ClientAddr>,
    headers: HeaderMap,
    body: String,
) -> Response {
    let t = match target(&rtc, Some(app), Some(stream), query, &headers) {
        Ok(t) => t,
        Err(e) => return refuse(&rtc, "whep play", None, client, e),
    };
    match start_play(&rtc, &t, client, &headers, &body) {
        Ok((location, answer)) => created(&rtc, location, answer),
        Err(e) => refuse(&rtc, "whep play", Some(&t.key), client, e),
    }
}

fn start_play(
    rtc: &WebRtc,
    t: &Target,
    client: SocketAddr,
    headers: &HeaderMap,
    offer: &str,
) -> Result<(String, String), SignalError> {
    check(rtc, Direction::Play, t, client, headers)?;
    let hub = &rtc.inner.hub;
    let key = hub.playback_key(&t.key);
    let mut sub = hub
        .subscribe(&key, Protocol::WebRtc, Some(client), SubscriberOptions::default())
        .map_err(|e| SignalError::NotFound(e.to_string()))?;
    // Read the GOP cache now: it decides the B-frame question before we answer, and is sent once connected.
    let mut pending = Vec::new();
    while let Some(ferrocast_hub::Batch::Entries { .. }) = sub.try_batch(&mut pending, 4096) {}
    let bframes = pending.iter().find_map(|e| match &e.kind {
        EntryKind::Frame(f)
            if f.media == MediaType::Video && matches!(f.codec, Codec::H264 | Codec::H265) && f.pts != f.dts =>
        {
            Some(f.codec)
        }
        _ => None,
    });
    if let Some(codec) = bframes {
        hub.metrics().webrtc_bframes_refused.fetch_add(1, Ordering::Relaxed);
        return Err(SignalError::Unprocessable(format!(
            "stream {key} is {} with B-frames, which WebRTC cannot carry; publish without B-frames (x264/x265: -bf 0 or -tune zerolatency; OBS: B-frames 0)",
            codec_label(codec)
        )));
    }
    let tracks = sub.current_tracks();
    let audio_codec = tracks.audio.as_ref().map(|a| a.codec);
    let feed = match audio_codec {
        Some(Codec::Aac) => rtc.inner.feed_or(&key, || crate::bridge::start(hub, &key)),
        // A WHIP publisher's Opus feed, if any (the hub then carries AAC for the other protocols).
        _ => rtc.inner.feed_or(&key, || None),
    };
    // Viewers may get H.265, AV1 (RTMP Enhanced or WHIP publishers) or VP8 (WHIP); the writer picks the payload
    // type per frame codec.
    let (r, answer, ufrag) = accept(rtc, offer, true)?;
    if let Some(video) = tracks.video.as_ref()
        && let Some(rtpmap) = rtpmap_name(video.codec)
        && !answer.to_ascii_uppercase().contains(&format!(" {rtpmap}/90000"))
    {
        return Err(SignalError::Unsupported(format!(
            "stream {key} is {} video and the offer has no {rtpmap} (or not in a form this server sends: H.264 needs packetization-mode=1); offer it, or play the stream over HTTP-FLV/HLS",
            codec_label(video.codec)
        )));
    }
    let id = session_id();
    let (tx, rx) = mpsc::channel(512);
    rtc.inner.register(&id, &ufrag, &ice_ufrag(offer), tx);
    let location = format!("/whep/{}/{}/{id}", t.key.app, t.key.stream);
    tracing::info!(stream = %key, %client, protocol = "webrtc", session = %id, viewer = sub.id(),
        video = ?tracks.video.as_ref().map(|v| v.codec.name()), audio = ?audio_codec.map(|c| c.name()),
        opus_feed = feed.is_some(), "whep play started");
    let core = Core::new(rtc.inner.clone(), r, rx, id, key, client);
    tokio::spawn(session::run_play(core, Play { sub, pending, feed }));
    Ok((location, answer))
}

async fn whip(
    State(rtc): State<WebRtc>,
    Path((app, stream)): Path<(String, String)>,
    Query(query): Query<Vec<(String, String)>>,
    ConnectInfo(ClientAddr(client)): ConnectInfo<ClientAddr>,
    headers: HeaderMap,
    body: String,
) -> Response {
    publish(rtc, Some(app), Some(stream), query, client, headers, body).await
}

async fn whip_token(
    State(rtc): State<WebRtc>,
    Query(query): Query<Vec<(String, String)>>,
    ConnectInfo(ClientAddr(client)): ConnectInfo<ClientAddr>,
    headers: HeaderMap,
    body: String,
) -> Response {
    publish(rtc, None, None, query, client, headers, body).await
}

async fn publish(
    rtc: WebRtc,
    app: Option<String>,
    stream: Option<String>,
    query: Vec<(String, String)>,
    client: SocketAddr,
    headers: HeaderMap,
    body: String,
) -> Response {
    let t = match target(&rtc, app, stream, query, &headers) {
        Ok(t) => t,
        Err(e) => return refuse(&rtc, "whip publish", None, client, e),
    };
    match start_publish(&rtc, &t, client, &headers, &body) {
        Ok((location, answer)) => created(&rtc, location, answer),
        Err(e) => refuse(&rtc, "whip publish", Some(&t.key), client, e),
    }
}

fn start_publish(
    rtc: &WebRtc,
    t: &Target,
    client: SocketAddr,
    headers: &HeaderMap,
    offer: &str,
) -> Result<(String, String), SignalError> {
    check(rtc, Direction::Publish, t, client, headers)?;
    // Publishers send H.264 whenever they offer it (every protocol plays it); H.265, AV1 and VP8 only from those
    // that offer no H.264 (H.265/AV1 then play everywhere as Enhanced RTMP `hvc1`/`av01` and fMP4 HLS; VP8 over
    // WHEP and Enhanced RTMP `vp08` FLV, HLS refuses it).
    let offers_h264 = offer.to_ascii_uppercase().contains("H264/90000");
    let (r, answer, ufrag) = accept(rtc, offer, !offers_h264)?;
    let hub = &rtc.inner.hub;
    let req = PublishRequest {
        key: t.key.clone(),
        protocol: Protocol::WebRtc,
        client: Some(client),
        server: rtc.inner.candidates.first().copied(),
        params: t.params.clone(),
    };
    let publisher = hub.publish(req).map_err(|e| match e {
        PublishError::AlreadyPublishing(_) => SignalError::Conflict(e.to_string()),
        PublishError::ShuttingDown => SignalError::Unavailable(e.to_string()),
        PublishError::BadParameter(_) => SignalError::BadRequest(e.to_string()),
    })?;
    hub.metrics().protocol(Protocol::WebRtc).publishers.fetch_add(1, Ordering::Relaxed);
    let id = session_id();
    let (tx, rx) = mpsc::channel(1024);
    rtc.inner.register(&id, &ufrag, &ice_ufrag(offer), tx.clone());
    let location = format!("/whip/{}/{}/{id}", t.key.app, t.key.stream);
    tracing::info!(stream = %t.key, %client, protocol = "webrtc", session = %id, "whip publish started");
    let core = Core::new(rtc.inner.clone(), r, rx, id, t.key.clone(), client);
    let feed: Arc<OpusFeed> = OpusFeed::new();
    tokio::spawn(session::run_publish(core, Publish { publisher, feed, tx }));
    Ok((location, answer))
}

/// The first `a=ice-ufrag` of an SDP (offer or fragment); empty when there is none.
fn ice_ufrag(sdp: &str) -> String {
    sdp.lines().find_map(|l| l.trim().strip_prefix("a=ice-ufrag:")).unwrap_or_default().trim().to_string()
}

/// What a trickle ICE `PATCH` body (an SDP fragment, RFC 8840) asks for.
#[derive(Debug, PartialEq)]
enum Trickle {
    /// Candidates to add (possibly none: `a=end-of-candidates` alone).
    Candidates(Vec<Candidate>),
    /// Another ufrag than the session's: an ICE restart.
    Restart,
}

/// Reads a trickle ICE fragment for a session whose client ufrag is `session_ufrag`.
fn parse_trickle(body: &str, session_ufrag: &str) -> Result<Trickle, String> {
    let ufrag = ice_ufrag(body);
    if !ufrag.is_empty() && !session_ufrag.is_empty() && ufrag != session_ufrag {
        return Ok(Trickle::Restart);
    }
    let mut candidates = Vec::new();
    for line in body.lines().map(str::trim) {
        if let Some(c) = line.strip_prefix("a=candidate:") {
            let c = Candidate::from_sdp_string(&format!("candidate:{c}"))
                .map_err(|e| format!("bad candidate `{line}`: {e}"))?;
            candidates.push(c);
        }
    }
    Ok(Trickle::Candidates(candidates))
}

/// `DELETE`, `PATCH` and `OPTIONS` on a session URL.
async fn resource(
    State(rtc): State<WebRtc>,
    Path((_app, _stream, session)): Path<(String, String, String)>,
    method: Method,
    headers: HeaderMap,
    body: String,
) -> Response {
    match method {
        Method::OPTIONS => text(&rtc, StatusCode::NO_CONTENT, String::new()),
        Method::DELETE => match rtc.inner.session(&session) {
            Some(tx) => {
                let _ = tx.try_send(crate::SessionMsg::Stop);
                text(&rtc, StatusCode::OK, String::new())
            }
            None => text(&rtc, StatusCode::NOT_FOUND, "no such session\n".into()),
        },
        Method::PATCH => {
            let content_type = headers.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or_default();
            if !content_type.to_ascii_lowercase().starts_with("application/trickle-ice-sdpfrag") {
                let why = format!("PATCH takes application/trickle-ice-sdpfrag (trickle ICE), not `{content_type}`\n");
                return text(&rtc, StatusCode::UNSUPPORTED_MEDIA_TYPE, why);
            }
            let Some((tx, remote_ufrag)) = rtc.inner.session_with_remote_ufrag(&session) else {
                return text(&rtc, StatusCode::NOT_FOUND, "no such session\n".into());
            };
            match parse_trickle(&body, &remote_ufrag) {
                Ok(Trickle::Candidates(candidates)) => {
                    // An ICE-lite server does not need them (it learns the client's addresses from its checks),
                    // but they are given to the ICE agent like any remote candidate.
                    for c in candidates {
                        let _ = tx.try_send(crate::SessionMsg::RemoteCandidate(c));
                    }
                    text(&rtc, StatusCode::NO_CONTENT, String::new())
                }
                Ok(Trickle::Restart) => text(
                    &rtc,
                    StatusCode::UNPROCESSABLE_ENTITY,
                    "ICE restart is not supported: DELETE this session and POST a new offer\n".into(),
                ),
                Err(e) => text(&rtc, StatusCode::BAD_REQUEST, format!("{e}\n")),
            }
        }
        _ => {
            let mut r = text(&rtc, StatusCode::METHOD_NOT_ALLOWED, "use DELETE to end the session\n".into());
            r.headers_mut().insert(header::ALLOW, HeaderValue::from_static("DELETE, PATCH, OPTIONS"));
            r
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn trickle_fragments_are_read() {
        let frag = "a=ice-ufrag:abcd\r\na=ice-pwd:xyz\r\nm=audio 9 UDP/TLS/RTP/SAVPF 0\r\na=mid:0\r\n\
                    a=candidate:1 1 udp 2130706431 192.0.2.1 50000 typ host\r\na=end-of-candidates\r\n";
        match parse_trickle(frag, "abcd") {
            Ok(Trickle::Candidates(c)) => assert_eq!(c.len(), 1),
            other => panic!("{other:?}"),
        }
        assert_eq!(parse_trickle(frag, "other"), Ok(Trickle::Restart));
        assert_eq!(parse_trickle("a=end-of-candidates\r\n", "abcd"), Ok(Trickle::Candidates(Vec::new())));
        assert!(parse_trickle("a=candidate:garbage", "abcd").is_err());
        assert_eq!(ice_ufrag("v=0\r\na=ice-ufrag:Q1w2\r\n"), "Q1w2");
    }

    #[test]
    fn tokens_are_parsed() {
        let t = parse_token_str("webrtc://push.example.com/live/cam1?txSecret=abc&txTime=65A0B1C2");
        assert_eq!(t.host.as_deref(), Some("push.example.com"));
        assert_eq!(t.app.as_deref(), Some("live"));
        assert_eq!(t.stream.as_deref(), Some("cam1"));
        assert_eq!(t.params, vec![("txSecret".into(), "abc".into()), ("txTime".into(), "65A0B1C2".into())]);
        let q = parse_token_str("txSecret=abc&txTime=1");
        assert_eq!(q.stream, None);
        assert_eq!(q.params.len(), 2);
        let q = parse_token_str("?txSecret=abc");
        assert_eq!(q.params.len(), 1);
        assert_eq!(parse_token_str("opaque"), Token::default());
    }
}
