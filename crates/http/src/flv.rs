//! HTTP-FLV playback: `GET /{app}/{stream}.flv`.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use axum::body::Body;
use axum::extract::{ConnectInfo, Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use ferrocast_formats::flv;
use ferrocast_hub::{Batch, Entry, EntryKind, MuxSlot, Muxed, Protocol, Subscriber, SubscriberOptions, Tracks};
use ferrocast_media::MediaType;
use futures::StreamExt;

use crate::{ClientAddr, HttpState};

/// Serves one HTTP-FLV viewer.
pub async fn play(
    State(state): State<HttpState>,
    Path((app, file)): Path<(String, String)>,
    Query(query): Query<Vec<(String, String)>>,
    ConnectInfo(ClientAddr(client)): ConnectInfo<ClientAddr>,
    headers: HeaderMap,
) -> Response {
    let Some(stream_name) = file.strip_suffix(".flv") else {
        return (StatusCode::NOT_FOUND, "not found\n").into_response();
    };
    let key = match crate::play_access(&state, &app, stream_name, Protocol::HttpFlv, &query, client, &headers) {
        Ok(key) => key,
        Err(refused) => return refused,
    };
    let sub = match state.hub.subscribe(&key, Protocol::HttpFlv, Some(client), SubscriberOptions::default()) {
        Ok(sub) => sub,
        Err(e) => {
            tracing::info!(stream = %key, %client, protocol = "http-flv", "play refused: {e}");
            state.hub.metrics().protocol(Protocol::HttpFlv).rejected.fetch_add(1, Ordering::Relaxed);
            return (StatusCode::NOT_FOUND, format!("{e}\n")).into_response();
        }
    };
    let only = match query.iter().find(|(k, _)| k == "only").map(|(_, v)| v.as_str()) {
        None | Some("") => None,
        Some("audio") => Some(MediaType::Audio),
        Some("video") => Some(MediaType::Video),
        Some(other) => {
            return (StatusCode::BAD_REQUEST, format!("only={other}: expected audio or video\n")).into_response();
        }
    };
    tracing::info!(stream = %key, %client, protocol = "http-flv", viewer = sub.id(), only = ?only, "play started");
    let prelude = prelude(&sub, only);
    let viewer = Viewer { sub, batch: Vec::new(), prelude: Some(prelude), state: state.clone(), client, only };
    let body = futures::stream::unfold(viewer, Viewer::next)
        .flat_map(|chunks| futures::stream::iter(chunks.into_iter().map(Ok::<Bytes, Infallible>)));
    let mut response = Response::new(Body::from_stream(body));
    let h = response.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static("video/x-flv"));
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache, no-store"));
    if let Ok(origin) = HeaderValue::from_str(&state.options.cors_allow_origin) {
        h.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, origin);
        h.insert(header::ACCESS_CONTROL_EXPOSE_HEADERS, HeaderValue::from_static("Content-Length, Content-Type"));
    }
    response
}

struct Viewer {
    sub: Subscriber,
    batch: Vec<Arc<Entry>>,
    prelude: Option<Vec<Bytes>>,
    state: HttpState,
    client: SocketAddr,
    /// The audio-only or video-only output (`?only=audio|video`).
    only: Option<MediaType>,
}

/// The media type of an entry, for the audio-only and video-only outputs (metadata goes to both).
fn entry_media(kind: &EntryKind) -> Option<MediaType> {
    match kind {
        EntryKind::Frame(f) => Some(f.media),
        EntryKind::Track(t) => Some(t.media),
        EntryKind::Metadata(_) => None,
    }
}

impl Viewer {
    async fn next(mut self) -> Option<(Vec<Bytes>, Viewer)> {
        if let Some(prelude) = self.prelude.take() {
            self.count(&prelude);
            return Some((prelude, self));
        }
        let merge = self.state.options.merge_window;
        if !merge.is_zero() {
            tokio::time::sleep(merge).await;
        }
        self.batch.clear();
        match self.sub.next_batch(&mut self.batch, self.state.options.max_batch).await {
            Batch::Ended => {
                tracing::info!(stream = %self.sub.key(), client = %self.client, protocol = "http-flv", "stream ended; closing response");
                None
            }
            Batch::Entries { skipped } => {
                let mut out = Vec::with_capacity(self.batch.len() * 3 + 6);
                if skipped > 0 {
                    tracing::debug!(stream = %self.sub.key(), client = %self.client, skipped, "slow http-flv viewer skipped frames");
                    out.extend(config_tags(&self.sub.current_tracks(), 0, self.only));
                }
                for entry in &self.batch {
                    if self.only.is_some_and(|m| entry_media(&entry.kind).is_some_and(|e| e != m)) {
                        continue;
                    }
                    out.extend(entry.muxed(MuxSlot::Flv, |kind| mux_entry(kind, entry.time_ms)).iter().cloned());
                }
                self.count(&out);
                Some((out, self))
            }
        }
    }

    fn count(&self, chunks: &[Bytes]) {
        let n: usize = chunks.iter().map(|c| c.len()).sum();
        self.state.hub.metrics().protocol(Protocol::HttpFlv).bytes_out.fetch_add(n as u64, Ordering::Relaxed);
        self.sub.count_out(n as u64);
    }
}

/// The FLV header, metadata and sequence headers a viewer needs before the first frame.
fn prelude(sub: &Subscriber, only: Option<MediaType>) -> Vec<Bytes> {
    let tracks = sub.start_tracks();
    let known = tracks.video.is_some() || tracks.audio.is_some();
    let has_video = (!known || tracks.video.is_some()) && only != Some(MediaType::Audio);
    let has_audio = (!known || tracks.audio.is_some()) && only != Some(MediaType::Video);
    let mut out = vec![Bytes::copy_from_slice(&flv::file_header(has_audio, has_video))];
    if let Some(meta) = sub.start_metadata() {
        out.extend(flv::body_tag(flv::TAG_SCRIPT, meta.clone(), 0));
    }
    out.extend(config_tags(tracks, 0, only));
    out
}

fn config_tags(tracks: &Tracks, time_ms: u32, only: Option<MediaType>) -> Vec<Bytes> {
    let mut out = Vec::new();
    for (track, tag_type) in [(&tracks.video, flv::TAG_VIDEO), (&tracks.audio, flv::TAG_AUDIO)] {
        if only.is_some_and(|m| track.as_ref().is_some_and(|t| t.media != m)) {
            continue;
        }
        if let Some(body) = track.as_deref().and_then(flv::config_body) {
            out.extend(flv::body_tag(tag_type, body, time_ms));
        }
    }
    out
}

/// FLV tag bytes of one ring entry; computed once per entry and shared by every HTTP-FLV viewer.
pub fn mux_entry(kind: &EntryKind, time_ms: i64) -> Muxed {
    let ts = time_ms as u32;
    match kind {
        EntryKind::Frame(frame) => flv::frame_tag(frame, frame.dts_ms() as u32).to_vec(),
        EntryKind::Track(track) => {
            let tag_type = match track.media {
                MediaType::Video => flv::TAG_VIDEO,
                MediaType::Audio => flv::TAG_AUDIO,
            };
            flv::config_body(track).map(|b| flv::body_tag(tag_type, b, ts).to_vec()).unwrap_or_default()
        }
        EntryKind::Metadata(body) => flv::body_tag(flv::TAG_SCRIPT, body.clone(), ts).to_vec(),
    }
}
